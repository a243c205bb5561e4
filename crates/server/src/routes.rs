//! Every route of the API, declared once: the router, the OpenAPI document and the
//! authorization matrix are all built from [`all`].

use axum::Router;
use axum::handler::Handler;
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::error::ApiError;
use crate::{AppState, access, api, auth, identity, sinks, trace};
use meshplane_core::{Error, ErrorCode};

/// What a route does; the router maps each to its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
    Metrics,
    OpenApi,
    Apply,
    List,
    Get,
    Delete,
    History,
    Events,
    Lineage,
    RunTests,
    TestRuns,
    Blocks,
    Orphans,
    Purge,
    WhoAmI,
    AccessRequest,
    AccessList,
    AccessGet,
    AccessApprove,
    AccessReject,
    AccessRevoke,
    TokenCreate,
    TokenList,
    TokenRevoke,
    Claims,
    ClaimRelease,
    Principals,
    PrincipalPut,
    PrincipalLogin,
    Audit,
    Sinks,
    DeadLetters,
    Redeliver,
}

/// A query or path parameter.
pub struct Param {
    pub name: &'static str,
    pub path: bool,
    pub description: &'static str,
    /// JSON Schema type: `string` or `integer` or `boolean`.
    pub kind: &'static str,
}

/// One route: method, path (OpenAPI and axum share the `{param}` syntax), documentation.
pub struct Route {
    pub endpoint: Endpoint,
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// The schema (in `components/schemas`) of the request body, when the route takes one.
    pub body: Option<&'static str>,
    /// The schema (in `components/schemas`) of a 200 answer.
    pub answer: &'static str,
    /// The error statuses the route may answer.
    pub errors: &'static [u16],
}

const KIND: Param = Param { name: "kind", path: true, description: "`contracts` or `products`", kind: "string" };
const LIMIT: Param =
    Param { name: "limit", path: false, description: "at most this many (1 to 1000, default 100)", kind: "integer" };
const NAME: Param = Param {
    name: "name",
    path: true,
    description: "the resource's key: `id@vMAJOR` for a contract, `id` for a product",
    kind: "string",
};

const SINK: Param = Param { name: "name", path: true, description: "the sink's block name", kind: "string" };

pub const ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::Orphans,
        method: "get",
        path: "/api/v1/orphans",
        summary: "What blocks left in place when resources went (data, or what a deletion policy keeps)",
        params: &[
            Param { name: "all", path: false, description: "also those already purged", kind: "boolean" },
            Param { name: "after", path: false, description: "the last orphan id already read", kind: "integer" },
            LIMIT,
        ],
        body: None,
        answer: "Orphans",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::Purge,
        method: "post",
        path: "/api/v1/orphans/purge",
        summary: "Remove orphans, data and all, through their blocks (every purgeable orphan, or one)",
        params: &[
            Param { name: "id", path: false, description: "only this orphan", kind: "integer" },
            Param {
                name: "dryRun",
                path: false,
                description: "say what would be purged, remove nothing",
                kind: "boolean",
            },
        ],
        body: None,
        answer: "Purged",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::Blocks,
        method: "get",
        path: "/api/v1/blocks",
        summary: "The platform's building blocks: type, configuration (secrets only as references) and health",
        params: &[],
        body: None,
        answer: "Blocks",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::Claims,
        method: "get",
        path: "/api/v1/claims",
        summary: "Which domain each contract and product id belongs to (an id stays with its domain after deletion)",
        params: &[
            Param { name: "domain", path: false, description: "only this domain's ids", kind: "string" },
            Param { name: "after", path: false, description: "the `next` of the previous page", kind: "string" },
            LIMIT,
        ],
        body: None,
        answer: "Claims",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::ClaimRelease,
        method: "delete",
        path: "/api/v1/claims/{kind}/{id}",
        summary: "Release an id no resource uses any more, so that any domain may register it again",
        params: &[
            KIND,
            Param { name: "id", path: true, description: "the contract's or product's id", kind: "string" },
        ],
        body: None,
        answer: "Claim",
        errors: &[404, 409],
    },
    Route {
        endpoint: Endpoint::Health,
        method: "get",
        path: "/healthz",
        summary: "The process is up",
        params: &[],
        body: None,
        answer: "Health",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::Ready,
        method: "get",
        path: "/readyz",
        summary: "The store answers and the reconcilers are running",
        params: &[],
        body: None,
        answer: "Health",
        errors: &[503],
    },
    Route {
        endpoint: Endpoint::Metrics,
        method: "get",
        path: "/metrics",
        summary: "The server's metrics in the Prometheus text format (docs/metrics.md)",
        params: &[],
        body: None,
        answer: "Metrics",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::OpenApi,
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        params: &[],
        body: None,
        answer: "OpenApi",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::Apply,
        method: "post",
        path: "/api/v1/apply",
        summary: "Apply ODCS contracts and ODPS products (YAML or JSON; several YAML documents separated by ---), all or nothing",
        params: &[
            Param { name: "dryRun", path: false, description: "check and report, keep nothing", kind: "boolean" },
            Param {
                name: "prune",
                path: false,
                description: "also delete every resource of the documents' domains that the body does not hold",
                kind: "boolean",
            },
            Param {
                name: "expectGeneration",
                path: false,
                description: "the generation the (single) document's resource is expected to be at; 0 when it must not exist",
                kind: "integer",
            },
        ],
        body: Some("Documents"),
        answer: "ApplyResult",
        errors: &[400, 409, 413, 422],
    },
    Route {
        endpoint: Endpoint::Events,
        method: "get",
        path: "/api/v1/events",
        summary: "The change feed: every change of a contract or product after a sequence number, in order (with `Accept: application/cloudevents-batch+json`, as the CloudEvents the notification sinks deliver)",
        params: &[
            Param { name: "after", path: false, description: "the last sequence number already read", kind: "integer" },
            Param {
                name: "limit",
                path: false,
                description: "at most this many (1 to 1000, default 100)",
                kind: "integer",
            },
        ],
        body: None,
        answer: "Changes",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::Lineage,
        method: "get",
        path: "/api/v1/lineage/{name}",
        summary: "A product's upstream and downstream products, transitively, from input ports to the output ports they consume",
        params: &[Param { name: "name", path: true, description: "the product's id", kind: "string" }],
        body: None,
        answer: "Lineage",
        errors: &[404],
    },
    Route {
        endpoint: Endpoint::List,
        method: "get",
        path: "/api/v1/{kind}",
        summary: "List resources of a kind, filtered and paged",
        params: &[
            KIND,
            Param { name: "domain", path: false, description: "only this domain", kind: "string" },
            Param { name: "status", path: false, description: "only this status", kind: "string" },
            Param { name: "tag", path: false, description: "only resources with this tag", kind: "string" },
            Param { name: "after", path: false, description: "the `next` of the previous page", kind: "string" },
            Param { name: "limit", path: false, description: "page size (1 to 1000, default 100)", kind: "integer" },
        ],
        body: None,
        answer: "Page",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::Get,
        method: "get",
        path: "/api/v1/{kind}/{name}",
        summary: "One resource as it is now, with its owner and generation",
        params: &[KIND, NAME],
        body: None,
        answer: "Record",
        errors: &[404],
    },
    Route {
        endpoint: Endpoint::Delete,
        method: "delete",
        path: "/api/v1/{kind}/{name}",
        summary: "Ask for a resource's deletion: it goes once every block that provisioned it has cleaned up (data in stores follows the block's deletion policy)",
        params: &[
            KIND,
            NAME,
            Param { name: "dryRun", path: false, description: "check and report, keep nothing", kind: "boolean" },
        ],
        body: None,
        answer: "Record",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::History,
        method: "get",
        path: "/api/v1/{kind}/{name}/history",
        summary: "The changes of one resource, oldest first, a page at a time",
        params: &[
            KIND,
            NAME,
            Param { name: "after", path: false, description: "the last sequence number already read", kind: "integer" },
            LIMIT,
        ],
        body: None,
        answer: "Changes",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::RunTests,
        method: "post",
        path: "/api/v1/{kind}/{name}/tests",
        summary: "Run a contract's checks on the data of one of its servers now, and keep the report",
        params: &[
            KIND,
            NAME,
            Param {
                name: "server",
                path: false,
                description: "the contract's server to test (needed when it has several)",
                kind: "string",
            },
            Param { name: "object", path: false, description: "test one schema object only", kind: "string" },
            Param {
                name: "samples",
                path: false,
                description: "keep up to this many offending values per failed check",
                kind: "integer",
            },
        ],
        body: None,
        answer: "TestRun",
        errors: &[400, 404, 422, 502, 504],
    },
    Route {
        endpoint: Endpoint::TestRuns,
        method: "get",
        path: "/api/v1/{kind}/{name}/tests",
        summary: "A contract's test reports, newest first",
        params: &[
            KIND,
            NAME,
            Param { name: "limit", path: false, description: "at most this many (default 20)", kind: "integer" },
        ],
        body: None,
        answer: "TestRuns",
        errors: &[400, 404],
    },
];

const ID: Param = Param { name: "id", path: true, description: "the access request's id", kind: "integer" };

/// The routes of identities, tokens, access requests and the audit log.
const ACCESS_ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::WhoAmI,
        method: "get",
        path: "/api/v1/whoami",
        summary: "The principal the request's credentials stand for",
        params: &[],
        body: None,
        answer: "Principal",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::AccessRequest,
        method: "post",
        path: "/api/v1/access",
        summary: "Ask for access to a product's output port, for yourself or a group you belong to",
        params: &[],
        body: Some("NewAccessRequest"),
        answer: "AccessRequest",
        errors: &[400, 404, 422],
    },
    Route {
        endpoint: Endpoint::AccessList,
        method: "get",
        path: "/api/v1/access",
        summary: "Access requests and grants you may see: yours, your groups', those you own or approve (all, for platform admins)",
        params: &[
            Param {
                name: "state",
                path: false,
                description: "pending, active, rejected, revoked or expired",
                kind: "string",
            },
            Param { name: "product", path: false, description: "only this product's ports", kind: "string" },
            Param { name: "contract", path: false, description: "only this contract (`id@vMAJOR`)", kind: "string" },
            Param { name: "consumer", path: false, description: "only this consumer", kind: "string" },
            Param { name: "after", path: false, description: "the last request id already read", kind: "integer" },
            LIMIT,
        ],
        body: None,
        answer: "AccessRequests",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::AccessGet,
        method: "get",
        path: "/api/v1/access/{id}",
        summary: "One access request or grant",
        params: &[ID],
        body: None,
        answer: "AccessRequest",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::AccessApprove,
        method: "post",
        path: "/api/v1/access/{id}/approve",
        summary: "Approve at the level awaited (first, then second when the role has one); the last approval makes it an active grant",
        params: &[ID],
        body: Some("Decision"),
        answer: "AccessRequest",
        errors: &[400, 404, 409],
    },
    Route {
        endpoint: Endpoint::AccessReject,
        method: "post",
        path: "/api/v1/access/{id}/reject",
        summary: "Reject a pending request, with a comment",
        params: &[ID],
        body: Some("Decision"),
        answer: "AccessRequest",
        errors: &[400, 404, 409],
    },
    Route {
        endpoint: Endpoint::AccessRevoke,
        method: "post",
        path: "/api/v1/access/{id}/revoke",
        summary: "Revoke an active grant (its owners, admins, or the consumer giving it up)",
        params: &[ID],
        body: Some("Decision"),
        answer: "AccessRequest",
        errors: &[400, 404, 409],
    },
    Route {
        endpoint: Endpoint::TokenCreate,
        method: "post",
        path: "/api/v1/tokens",
        summary: "Create an API token (for yourself; platform admins for anyone); its text is in this answer only",
        params: &[],
        body: Some("NewToken"),
        answer: "CreatedToken",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::TokenList,
        method: "get",
        path: "/api/v1/tokens",
        summary: "Your tokens (everyone's, for platform admins), never their secrets",
        params: &[
            Param { name: "principal", path: false, description: "only this principal's", kind: "string" },
            Param { name: "after", path: false, description: "the last token id already read", kind: "string" },
            LIMIT,
        ],
        body: None,
        answer: "Tokens",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::TokenRevoke,
        method: "delete",
        path: "/api/v1/tokens/{id}",
        summary: "Revoke a token (yours; platform admins any)",
        params: &[Param { name: "id", path: true, description: "the token's id", kind: "string" }],
        body: None,
        answer: "Token",
        errors: &[404],
    },
    Route {
        endpoint: Endpoint::Principals,
        method: "get",
        path: "/api/v1/principals",
        summary: "Users, groups and service accounts, by name, a page at a time",
        params: &[
            Param { name: "after", path: false, description: "the last name already read", kind: "string" },
            LIMIT,
        ],
        body: None,
        answer: "Principals",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::PrincipalPut,
        method: "put",
        path: "/api/v1/principals/{name}",
        summary: "Create or replace a user, group or service account",
        params: &[Param { name: "name", path: true, description: "the principal's name", kind: "string" }],
        body: Some("Principal"),
        answer: "Principal",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::PrincipalLogin,
        method: "post",
        path: "/api/v1/principals/{name}/login",
        summary: "Create (or give a new password to) a service account's login role in a block's store; the password is in this answer only, and the role becomes the account's databaseRole",
        params: &[
            Param { name: "name", path: true, description: "the service account", kind: "string" },
            Param { name: "block", path: false, description: "the block whose store gets the login", kind: "string" },
        ],
        body: None,
        answer: "CreatedLogin",
        errors: &[400, 404, 422, 502],
    },
    Route {
        endpoint: Endpoint::Audit,
        method: "get",
        path: "/api/v1/audit",
        summary: "The audit log: every change and decision, who made it, when and from where, with before and after",
        params: &[
            Param { name: "actor", path: false, description: "only this actor's", kind: "string" },
            Param {
                name: "kind",
                path: false,
                description: "only this kind (DataContract, DataProduct, AccessRequest, Token, Principal)",
                kind: "string",
            },
            Param { name: "name", path: false, description: "only this resource", kind: "string" },
            Param {
                name: "action",
                path: false,
                description: "only this action (created, approved, revoked, ...)",
                kind: "string",
            },
            Param { name: "since", path: false, description: "at or after this time (RFC 3339)", kind: "string" },
            Param { name: "until", path: false, description: "before this time (RFC 3339)", kind: "string" },
            Param { name: "after", path: false, description: "the last sequence number already read", kind: "integer" },
            Param {
                name: "limit",
                path: false,
                description: "at most this many (1 to 1000, default 100)",
                kind: "integer",
            },
        ],
        body: None,
        answer: "Changes",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::Sinks,
        method: "get",
        path: "/api/v1/sinks",
        summary: "The notification sinks: configuration (secrets only as references), the last change each is done with, how far behind the feed it is, its dead letters",
        params: &[],
        body: None,
        answer: "Sinks",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::DeadLetters,
        method: "get",
        path: "/api/v1/sinks/{name}/dead-letters",
        summary: "The events a sink gave up on, oldest first, each with its attempts and last error",
        params: &[
            SINK,
            Param { name: "state", path: false, description: "dead, redeliver or redelivered", kind: "string" },
            Param { name: "after", path: false, description: "the `next` of the previous page", kind: "integer" },
            LIMIT,
        ],
        body: None,
        answer: "DeadLetters",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::Redeliver,
        method: "post",
        path: "/api/v1/sinks/{name}/redeliver",
        summary: "Send a dead letter (or every dead one) again, at the sink's next round",
        params: &[SINK, Param { name: "id", path: false, description: "only this dead letter", kind: "integer" }],
        body: None,
        answer: "Redelivering",
        errors: &[400, 404, 409],
    },
];

/// Every route: the registry's, then access management's.
pub fn all() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().chain(ACCESS_ROUTES)
}

fn handler(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::Health => get(api::health),
        Endpoint::Ready => get(api::ready),
        Endpoint::Metrics => get(api::metrics),
        Endpoint::OpenApi => get(api::openapi),
        Endpoint::Apply => post(api::apply),
        Endpoint::List => get(api::list),
        Endpoint::Get => get(api::get_one),
        Endpoint::Delete => delete(api::delete),
        Endpoint::History => get(api::history),
        Endpoint::Events => get(api::events),
        Endpoint::Lineage => get(api::lineage),
        Endpoint::RunTests => post(api::run_tests),
        Endpoint::TestRuns => get(api::test_runs),
        Endpoint::Blocks => get(api::blocks),
        Endpoint::Orphans => get(api::orphans),
        Endpoint::Claims => get(api::claims),
        Endpoint::ClaimRelease => delete(api::release_claim),
        Endpoint::Purge => post(api::purge),
        Endpoint::WhoAmI => get(identity::whoami),
        Endpoint::AccessRequest => post(access::request),
        Endpoint::AccessList => get(access::list),
        Endpoint::AccessGet => get(access::get_one),
        Endpoint::AccessApprove => post(access::approve),
        Endpoint::AccessReject => post(access::reject),
        Endpoint::AccessRevoke => post(access::revoke),
        Endpoint::TokenCreate => post(identity::create_token),
        Endpoint::TokenList => get(identity::tokens),
        Endpoint::TokenRevoke => delete(identity::revoke_token),
        Endpoint::Principals => get(identity::principals),
        Endpoint::PrincipalPut => put(identity::put_principal),
        Endpoint::PrincipalLogin => post(identity::create_login),
        Endpoint::Audit => get(identity::audit),
        Endpoint::Sinks => get(sinks::list),
        Endpoint::DeadLetters => get(sinks::dead_letters),
        Endpoint::Redeliver => post(sinks::redeliver),
    }
}

/// The router of every route, each in its request span ([`trace`]) and behind the
/// authentication gate with its rule.
pub fn router(state: AppState) -> Router {
    all()
        .fold(Router::new(), |r, route| {
            let gate = from_fn_with_state((state.clone(), route.endpoint), auth::gate);
            let traced = from_fn_with_state((state.config.reconciler.metrics.clone(), route.path), trace::request);
            r.route(route.path, handler(route.endpoint).layer(gate).layer(traced))
        })
        .fallback(
            unknown_route
                .layer(from_fn_with_state((state.config.reconciler.metrics.clone(), "(no route)"), trace::request)),
        )
        .method_not_allowed_fallback(
            wrong_method
                .layer(from_fn_with_state((state.config.reconciler.metrics.clone(), "(wrong method)"), trace::request)),
        )
        .with_state(state)
}

/// How much of a path an error message quotes back.
const QUOTED_PATH_CHARS: usize = 200;

fn quoted(uri: &Uri) -> String {
    uri.path().chars().take(QUOTED_PATH_CHARS).collect()
}

/// A path the API does not have: the documented error body, not an empty answer.
async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    let route = format!("route `{method} {}` (the routes are in /api/v1/openapi.json)", quoted(&uri));
    ApiError(Error::NotFound(route))
}

/// A path the API has, with a method it does not take there (the answer's `Allow` lists those
/// it takes).
async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let message = format!("`{}` does not take {method} (the `Allow` header lists what it takes)", quoted(&uri));
    ApiError(Error::invalid(ErrorCode::MethodNotAllowed, message))
}

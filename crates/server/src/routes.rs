//! Every route of the API, declared once: the router and the OpenAPI document are both built
//! from [`ROUTES`].

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post};

use crate::{AppState, api};

/// What a route does; the router maps each to its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Ready,
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
    /// The schema (in `components/schemas`) of a 200 answer.
    pub answer: &'static str,
    /// The error statuses the route may answer.
    pub errors: &'static [u16],
}

const KIND: Param = Param { name: "kind", path: true, description: "`contracts` or `products`", kind: "string" };
const NAME: Param = Param {
    name: "name",
    path: true,
    description: "the resource's key: `id@vMAJOR` for a contract, `id` for a product",
    kind: "string",
};

pub const ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::Orphans,
        method: "get",
        path: "/api/v1/orphans",
        summary: "What blocks left in place when resources went (data, or what a deletion policy keeps)",
        params: &[Param { name: "all", path: false, description: "also those already purged", kind: "boolean" }],
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
        answer: "Purged",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::Blocks,
        method: "get",
        path: "/api/v1/blocks",
        summary: "The platform's building blocks: type, configuration (secrets only as references) and health",
        params: &[],
        answer: "Blocks",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::Health,
        method: "get",
        path: "/healthz",
        summary: "The process is up",
        params: &[],
        answer: "Health",
        errors: &[],
    },
    Route {
        endpoint: Endpoint::Ready,
        method: "get",
        path: "/readyz",
        summary: "The store answers and the reconcilers are running",
        params: &[],
        answer: "Health",
        errors: &[503],
    },
    Route {
        endpoint: Endpoint::OpenApi,
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        params: &[],
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
        answer: "ApplyResult",
        errors: &[400, 409, 413, 422],
    },
    Route {
        endpoint: Endpoint::Events,
        method: "get",
        path: "/api/v1/events",
        summary: "The change feed: every change after a sequence number, in order",
        params: &[
            Param { name: "after", path: false, description: "the last sequence number already read", kind: "integer" },
            Param {
                name: "limit",
                path: false,
                description: "at most this many (1 to 1000, default 100)",
                kind: "integer",
            },
        ],
        answer: "Changes",
        errors: &[400],
    },
    Route {
        endpoint: Endpoint::Lineage,
        method: "get",
        path: "/api/v1/lineage/{name}",
        summary: "A product's upstream and downstream products, transitively, from input ports to the output ports they consume",
        params: &[Param { name: "name", path: true, description: "the product's id", kind: "string" }],
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
        answer: "Page",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::Get,
        method: "get",
        path: "/api/v1/{kind}/{name}",
        summary: "One resource as it is now, with its owner and generation",
        params: &[KIND, NAME],
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
        answer: "Record",
        errors: &[400, 404],
    },
    Route {
        endpoint: Endpoint::History,
        method: "get",
        path: "/api/v1/{kind}/{name}/history",
        summary: "Every change of one resource, oldest first",
        params: &[KIND, NAME],
        answer: "Changes",
        errors: &[404],
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
        answer: "TestRun",
        errors: &[400, 404, 422, 502],
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
        answer: "TestRuns",
        errors: &[400, 404],
    },
];

fn handler(endpoint: Endpoint) -> MethodRouter<AppState> {
    match endpoint {
        Endpoint::Health => get(api::health),
        Endpoint::Ready => get(api::ready),
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
        Endpoint::Purge => post(api::purge),
    }
}

/// The router of every route in [`ROUTES`].
pub fn router(state: AppState) -> Router {
    ROUTES.iter().fold(Router::new(), |r, route| r.route(route.path, handler(route.endpoint))).with_state(state)
}

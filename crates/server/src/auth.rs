//! Authentication and the first gate of authorization, for every route.
//!
//! Each request's caller is found from its `Authorization: Bearer` header — an API token of
//! the store, or (when the platform configures OIDC) a JWT — and checked against the route's
//! [`Rule`]: deny by default, so a route is open to anonymous callers only when its rule says
//! so. Decisions that depend on what a request touches (who owns a product, who approves a
//! request) are the handlers', through [`meshplane_core::authz::Caller`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, ToStrError};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meshplane_core::authz::Caller;
use meshplane_core::{Error, ErrorCode};

use crate::routes::Endpoint;
use crate::{ApiError, AppState};

/// Who may reach a route at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, authenticated or not (the liveness probe only).
    Anyone,
    /// Any authenticated principal; the handler may decide further by what the request touches.
    Authenticated,
    /// Platform admins only.
    PlatformAdmin,
}

/// The rule of each endpoint: a new endpoint does not compile until it has one.
pub fn rule(endpoint: Endpoint) -> Rule {
    use Endpoint::*;
    match endpoint {
        // Probes (a load balancer's, Kubernetes') carry no credentials.
        Health | Ready => Rule::Anyone,
        OpenApi | List | Get | History | Lineage | TestRuns | Events | WhoAmI | Claims => Rule::Authenticated,
        Apply | Delete | RunTests => Rule::Authenticated,
        AccessRequest | AccessList | AccessGet | AccessApprove | AccessReject | AccessRevoke => Rule::Authenticated,
        TokenCreate | TokenList | TokenRevoke => Rule::Authenticated,
        Blocks | Orphans | Purge | ClaimRelease | Principals | PrincipalPut | PrincipalLogin | Audit => {
            Rule::PlatformAdmin
        }
    }
}

/// Finds the caller, applies the route's rule, and hands the caller to the handler.
pub async fn gate(State((state, endpoint)): State<(AppState, Endpoint)>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
    let origin = format!("api {}", peer.as_deref().unwrap_or("local"));
    // Only the header is kept: the request's body may not be held across an await.
    let header = request.headers().get(AUTHORIZATION).map(|h| h.to_str().map(str::to_string));
    let caller = match authenticate(&state, header, origin).await {
        Ok(caller) => caller,
        Err(e) => return ApiError(e).into_response(),
    };
    let allowed = match rule(endpoint) {
        Rule::Anyone => true,
        Rule::Authenticated => caller.principal.is_some(),
        Rule::PlatformAdmin => caller.is_platform_admin(),
    };
    if let Err(e) = caller.require(allowed, "use this route") {
        return ApiError(e).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller a request's credentials name: anonymous without any; refused when they are
/// malformed, unknown, revoked or expired.
async fn authenticate(
    state: &AppState,
    header: Option<Result<String, ToStrError>>,
    origin: String,
) -> Result<Caller, Error> {
    let Some(header) = header else { return Ok(Caller::anonymous(origin)) };
    let unauthenticated = |why: &str| Error::denied(ErrorCode::Unauthenticated, why.to_string());
    let text = header.map_err(|_| unauthenticated("the Authorization header is not text"))?;
    let token = text
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer TOKEN`"))?;
    if let Some(principal) = state.store.authenticate(token).await? {
        return Ok(Caller::of(principal, origin));
    }
    if let Some(oidc) = &state.config.oidc {
        let name =
            oidc.verify(token).await.map_err(|why| unauthenticated(&format!("the token is not accepted: {why}")))?;
        let principal = state
            .store
            .principal(&name)
            .await
            .map_err(|_| unauthenticated(&format!("the token names `{name}`, who is not a known principal")))?;
        return Ok(Caller::of(principal, origin));
    }
    Err(unauthenticated("the token is unknown, revoked or expired"))
}

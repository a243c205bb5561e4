//! Authentication and the first gate of authorization, for every route.
//!
//! Each request's caller is found from its `Authorization: Bearer` header — an API token of
//! the store, or (when the platform configures OIDC) a JWT, which signs in as a user or a
//! service account, never a group — and checked against the route's [`Rule`]: deny by
//! default, so a route is open to anonymous callers only when its rule says so. Decisions
//! that depend on what a request touches (who owns a product, who approves a request) are the
//! handlers', through [`meshplane_core::authz::Caller`].
//!
//! An address that fails to authenticate too often ([`Failures`]) is answered 429 without its
//! credentials being looked at, until its window ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, ToStrError};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meshplane_core::authz::Caller;
use meshplane_core::store::identity::PrincipalKind;
use meshplane_core::{Error, ErrorCode};

use crate::oidc::Identity;

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
        // The metrics count everyone's activity (requests by route and status, tests, policy
        // verdicts): the platform's to watch; scrapers use `--metrics-listen`.
        Metrics | Blocks | Orphans | Purge | ClaimRelease | Principals | PrincipalPut | PrincipalLogin | Audit => {
            Rule::PlatformAdmin
        }
        // Sinks' events carry every domain's changes.
        Sinks | DeadLetters | Redeliver => Rule::PlatformAdmin,
    }
}

/// Failed authentications by address, within a window: at `limit` failures, the address is
/// refused until its window ends. An IPv6 address counts by its /64 network (one host holds
/// a whole one). Memory is bounded: at most [`Failures::ADDRESSES`] are remembered one by one;
/// when that many have live windows, every further address shares one window, so a flood from
/// many addresses is limited as one and never frees an address already remembered.
pub struct Failures {
    limit: u32,
    window: Duration,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_address: HashMap<IpAddr, (Instant, u32)>,
    /// The window the addresses not remembered one by one share.
    overflow: Option<(Instant, u32)>,
}

impl Failures {
    const ADDRESSES: usize = 10_000;

    pub fn new(limit: u32, window: Duration) -> Failures {
        Failures { limit, window, seen: Mutex::new(Seen::default()) }
    }

    /// What failures are counted under: the address, or an IPv6 address's /64 network.
    fn key(address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        }
    }

    /// How long `address` must wait before it is listened to again, when it must.
    fn waiting(&self, address: IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().ok()?;
        let (since, count) = seen.by_address.get(&Self::key(address)).or(seen.overflow.as_ref())?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*count >= self.limit).then_some(left)
    }

    fn failed(&self, address: IpAddr) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let key = Self::key(address);
        let window = self.window;
        if seen.by_address.len() >= Self::ADDRESSES && !seen.by_address.contains_key(&key) {
            seen.by_address.retain(|_, (since, _)| since.elapsed() < window);
        }
        let room = seen.by_address.len() < Self::ADDRESSES || seen.by_address.contains_key(&key);
        let entry = if room {
            seen.by_address.entry(key).or_insert((Instant::now(), 0))
        } else {
            seen.overflow.get_or_insert((Instant::now(), 0))
        };
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Finds the caller, applies the route's rule, and hands the caller to the handler.
pub async fn gate(State((state, endpoint)): State<(AppState, Endpoint)>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let origin = format!("api {}", peer.map_or("local".to_string(), |p| p.to_string()));
    let address = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    // Only the header is kept: the request's body may not be held across an await.
    let header = request.headers().get(AUTHORIZATION).map(|h| h.to_str().map(str::to_string));
    if header.is_some()
        && let Some(wait) = state.failures.waiting(address)
    {
        let message = format!("too many failed authentications from {address}: try again in {} s", wait.as_secs() + 1);
        let mut refused = ApiError(Error::denied(ErrorCode::TooManyAttempts, message)).into_response();
        if let Ok(value) = (wait.as_secs() + 1).to_string().parse() {
            refused.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        return refused;
    }
    let caller = match authenticate(&state, header, origin).await {
        Ok(caller) => caller,
        Err(e) => {
            if e.code() == ErrorCode::Unauthenticated {
                state.failures.failed(address);
            }
            return ApiError(e).into_response();
        }
    };
    let allowed = match rule(endpoint) {
        Rule::Anyone => true,
        Rule::Authenticated => caller.principal.is_some(),
        Rule::PlatformAdmin => caller.is_platform_admin(),
    };
    if let Err(e) = caller.require(allowed, "use this route") {
        return ApiError(e).into_response();
    }
    tracing::Span::current().record("principal", caller.name());
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
    if let Some(found) = state.store.authenticate(token).await? {
        return Ok(Caller { good_until: found.expires_at, ..Caller::of(found.principal, origin) });
    }
    if let Some(oidc) = &state.config.oidc {
        let identity =
            oidc.verify(token).await.map_err(|why| unauthenticated(&format!("the token is not accepted: {why}")))?;
        let principal = match &identity {
            Identity::Account { issuer, subject } => {
                state.store.principal_by_oidc(issuer, subject).await.map_err(|_| {
                    unauthenticated(&format!("the token's account `{subject}` of {issuer} is no known principal's"))
                })?
            }
            Identity::Named(name) => state
                .store
                .principal(name)
                .await
                .map_err(|_| unauthenticated(&format!("the token names `{name}`, who is not a known principal")))?,
        };
        if principal.kind == PrincipalKind::Group {
            return Err(unauthenticated(&format!("`{}` is a group: nobody signs in as a group", principal.name)));
        }
        // Tokens made with a JWT last no longer than the platform allows.
        let horizon = time::OffsetDateTime::now_utc() + state.config.jwt_token_lifetime;
        let good_until = meshplane_core::store::canonical_time(
            &horizon.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        );
        return Ok(Caller { good_until, ..Caller::of(principal, origin) });
    }
    Err(unauthenticated("the token is unknown, revoked or expired"))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};
    use std::time::Duration;

    use super::Failures;

    /// Host `host` of the /64 network `net`.
    fn network(net: u64, host: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from((u128::from(net) << 64) | u128::from(host)))
    }

    #[test]
    fn a_flood_from_many_addresses_never_frees_a_refused_one() {
        let failures = Failures::new(3, Duration::from_secs(600));
        let attacker = network(u64::MAX, 1);
        for _ in 0..3 {
            failures.failed(attacker);
        }
        assert!(failures.waiting(attacker).is_some());
        assert!(failures.waiting(network(u64::MAX, 2)).is_some(), "the whole /64 waits");
        let remembered = network(0, 1);
        failures.failed(remembered);
        for n in 1..(Failures::ADDRESSES as u64 + 1000) {
            failures.failed(network(n, 1));
        }
        assert!(failures.waiting(attacker).is_some(), "still refused after the flood");
        assert!(failures.seen.lock().unwrap().by_address.len() <= Failures::ADDRESSES, "memory stays bounded");
        // Past the table, the flood is counted as one: a newcomer waits with it, while an
        // address remembered before keeps its own count.
        assert!(failures.waiting(network(u64::MAX - 1, 1)).is_some());
        assert!(failures.waiting(remembered).is_none());
        assert!(failures.waiting(IpAddr::from([10, 0, 0, 1])).is_some(), "newcomers of any family");
    }
}

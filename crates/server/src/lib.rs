//! `meshplane serve`: the REST API under `/api/v1` over the registry's store.
//!
//! Every route is declared once, in [`routes::all`]: the router is built from that table
//! and so is the OpenAPI 3.1 document at `/api/v1/openapi.json`, so the document covers every
//! route by construction; each route passes the authentication gate with its rule
//! ([`auth::rule`]) first. Errors are `{code, message, details}` with the status of the
//! registry's one error table ([`meshplane_core::ErrorCode::status`]).

// The OpenAPI schemas are one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

mod access;
mod alerts;
mod api;
pub mod auth;
pub mod checks;
pub mod error;
mod identity;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod reconciler;
pub mod routes;
pub mod schedules;
mod sinks;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use meshplane_core::block::Blocks;
use meshplane_core::store::Store;

pub use error::ApiError;

/// How the server is configured.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The OIDC provider whose JWTs are accepted besides API tokens, when one is configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
    /// How the reconcile loop runs.
    pub reconciler: reconciler::Settings,
    /// The platform's blocks as configured, secrets shown only as references
    /// (`GET /api/v1/blocks`): one JSON object per block, by name.
    pub platform: serde_json::Value,
    /// The longest an API token made by a caller signed in with a JWT may last.
    pub jwt_token_lifetime: std::time::Duration,
    /// Failed authentications an address may make within `failed_auth_window` before it is
    /// refused (429) until the window ends.
    pub failed_auth_limit: u32,
    pub failed_auth_window: std::time::Duration,
    /// Where `/metrics` is served as well, without authentication, when set.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_limit: 10 * 1024 * 1024,
            oidc: None,
            reconciler: reconciler::Settings::default(),
            platform: serde_json::Value::Null,
            jwt_token_lifetime: std::time::Duration::from_secs(30 * 24 * 3600),
            failed_auth_limit: 20,
            failed_auth_window: std::time::Duration::from_secs(60),
            metrics_listen: None,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Config,
    /// The reconcile loop's heartbeat, when it runs (`/readyz`).
    pub heartbeat: Option<Arc<AtomicU64>>,
    /// The platform's blocks (`GET /api/v1/blocks` asks each for its health).
    pub blocks: Blocks,
    /// Failed authentications by address.
    pub failures: Arc<auth::Failures>,
}

/// The whole HTTP application; `heartbeat` is the reconcile loop's, when one runs.
pub fn app(store: Store, config: Config, heartbeat: Option<Arc<AtomicU64>>, blocks: Blocks) -> Router {
    let limit = config.body_limit;
    let failures = Arc::new(auth::Failures::new(config.failed_auth_limit, config.failed_auth_window));
    routes::router(AppState { store, config, heartbeat, blocks, failures }).layer(DefaultBodyLimit::max(limit))
}

/// Serves, with the reconcilers running (provisioning through `blocks`), until Ctrl-C or
/// SIGTERM; then stops taking requests and work, finishes the requests and the reconciles in
/// flight (each gives its lease back), leaves the replicas' membership, hands back the test
/// runs in flight, closes the store, and returns.
pub async fn serve(listen: SocketAddr, store: Store, config: Config, blocks: Blocks) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let scrapes = match config.metrics_listen {
        None => None,
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                std::io::Error::other(format!("cannot serve the metrics on {address} (--metrics-listen): {e}"))
            })?;
            let app = metrics::app(store.clone(), Arc::clone(&config.reconciler.metrics));
            Some(tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown()).await }))
        }
    };
    let replica = reconciler::replica_name();
    let reconcilers = reconciler::spawn(store.clone(), blocks.clone(), config.reconciler.clone(), replica.clone());
    let deliveries = notify::spawn(
        store.clone(),
        &blocks,
        notify::Settings {
            owner: replica,
            lease_ms: config.reconciler.lease_ms,
            poll_ms: config.reconciler.feed_poll_ms,
            metrics: Arc::clone(&config.reconciler.metrics),
        },
    );
    let router = app(store.clone(), config, Some(Arc::clone(&reconcilers.heartbeat)), blocks);
    let router = router.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown()).await;
    if let Some(mut scrapes) = scrapes {
        // It stops on the same signal: let a scrape in flight finish before the store closes.
        match tokio::time::timeout(std::time::Duration::from_secs(5), &mut scrapes).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the metrics address stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "the metrics address's task failed"),
            Err(_) => scrapes.abort(),
        }
    }
    reconcilers.stop().await;
    deliveries.stop().await;
    store.close().await;
    served
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or_default(),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}

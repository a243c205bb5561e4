//! One `tracing` span per request: `request{method, route, id, principal}`, around the
//! authentication gate and the handler, closed by one event with the status and the latency.
//! The route is the template (`/api/v1/{kind}/{name}`), never the path a caller sent; the id
//! is the caller's `x-request-id` when it is a plain token (letters, digits, `-`, `_`, `.`;
//! at most 64), a new one otherwise, and is echoed in the answer's `x-request-id`. What the
//! spans are written as (JSON or text, where) is the binary's business.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use meshplane_core::store::identity::random_hex;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The id the caller sent, when it is one we may repeat (in logs and headers).
fn sent_id(request: &Request) -> Option<String> {
    let id = request.headers().get(REQUEST_ID)?.to_str().ok()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    (!id.is_empty() && id.len() <= 64 && id.chars().all(plain)).then(|| id.to_string())
}

/// Runs `next` in the request's span, and counts it in `metrics`; `route` is its template, or
/// what stands for one (a path the API does not have is logged as `(no route)`, never as the
/// path sent).
pub async fn request(
    State((metrics, route)): State<(Arc<Metrics>, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let id = sent_id(&request).unwrap_or_else(|| random_hex(8));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        id = %id,
        principal = tracing::field::Empty,
    );
    let started = Instant::now();
    let method = request.method().clone();
    let mut response = async {
        let response = next.run(request).await;
        let took = started.elapsed();
        let status = response.status().as_u16();
        tracing::info!(status, latency_ms = took.as_secs_f64() * 1000.0, "answered");
        metrics.request(&method, route, status, took);
        response
    }
    .instrument(span)
    .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

//! Access requests over HTTP: each handler reads the body or query, calls the access
//! workflow of [`meshplane_core::service::access`] (where who may do what is decided), and
//! answers the request as JSON.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use meshplane_core::authz::Caller;
use meshplane_core::service::access::{self, NewAccess};
use meshplane_core::store::grants::{AccessQuery, AccessState};
use meshplane_core::{Error, ErrorCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Any;

use crate::api::{Answer, query};
use crate::{ApiError, AppState};

/// A JSON body of type `T`, or where and what is wrong with it; an empty body is `T`'s
/// default when `T` has one (`{}`).
pub(crate) fn body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body?;
    let text = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed("the body must be a JSON object ({...})".into()));
    }
    serde_json::from_slice(text).map_err(|e| malformed(format!("the body is not accepted: {e}")))
}

fn malformed(message: String) -> ApiError {
    ApiError(Error::invalid(ErrorCode::MalformedRequest, message))
}

/// Asks for access to a product's output port.
pub async fn request(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let ask: NewAccess = body(raw)?;
    Ok(Json(access::request(&state.store, &caller, ask).await?.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    product: Option<String>,
    contract: Option<String>,
    consumer: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let wanted = match p.state.as_deref() {
        None => None,
        Some(s) => Some(AccessState::parse(s).ok_or_else(|| {
            malformed(format!("`state={s}`: the states are pending, active, rejected, revoked and expired"))
        })?),
    };
    let query = AccessQuery {
        state: wanted,
        product: p.product,
        contract: p.contract,
        consumer: p.consumer,
        after: p.after.unwrap_or(0),
        limit: Some(crate::api::page_size(p.limit)),
    };
    let page = access::list(&state.store, &caller, query).await?;
    Ok(Json(Any::Array(page.iter().map(|r| r.to_json()).collect())))
}

fn id_of(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| malformed(format!("`{id}` is not an access request id (a number)")))
}

pub async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    Ok(Json(access::get(&state.store, &caller, id_of(&id)?).await?.to_json()))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[serde(default)]
    comment: String,
}

async fn decision(
    state: AppState,
    caller: Caller,
    id: String,
    raw: Result<Bytes, BytesRejection>,
    approve: bool,
) -> Answer {
    let Comment { comment } = body(raw)?;
    Ok(Json(access::decide(&state.store, &caller, id_of(&id)?, approve, comment).await?.to_json()))
}

pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    decision(state, caller, id, raw, true).await
}

pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    decision(state, caller, id, raw, false).await
}

/// Ends an active grant.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let Comment { comment } = body(raw)?;
    Ok(Json(access::revoke(&state.store, &caller, id_of(&id)?, comment).await?.to_json()))
}

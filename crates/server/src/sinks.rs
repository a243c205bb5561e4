//! The routes of the notification sinks (platform admins only: their events carry every
//! domain's changes): each sink's configuration and place in the feed, its dead letters, and
//! redelivery of those.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use meshplane_core::Error;
use meshplane_core::store::sinks::LetterState;
use serde::Deserialize;
use serde_json::{Value as Any, json};

use crate::api::{Answer, page_size, query, to_json};
use crate::{ApiError, AppState};

/// The sink `name` of the platform, or not found.
fn configured(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.blocks.sinks.iter().any(|s| s.name() == name) {
        Ok(())
    } else {
        Err(ApiError(Error::NotFound(format!("sink `{name}` (the platform's sinks are listed at /api/v1/sinks)"))))
    }
}

/// Every sink: its configuration (secrets only as references), the last change it is done
/// with, how many changes the feed holds after that, and its dead letters not sent again.
pub async fn list(State(state): State<AppState>) -> Answer {
    let cursors = state.store.sink_cursors().await?;
    let position = state.store.feed_position().await?;
    let mut out = Vec::new();
    for sink in &state.blocks.sinks {
        let config = state.config.platform.get(sink.name()).cloned().unwrap_or(Any::Null);
        let cursor = cursors.iter().find(|c| c.sink == sink.name());
        out.push(json!({
            "name": sink.name(),
            "type": config.get("type").cloned().unwrap_or(Any::Null),
            "config": config,
            "position": cursor.map(|c| c.position),
            "changesBehind": cursor.map(|c| (position - c.position).max(0)),
            "deadLetters": cursor.map_or(0, |c| c.dead),
            "updatedAt": cursor.map(|c| c.updated_at.clone()),
        }));
    }
    to_json(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterParams {
    state: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// The sink's dead letters, oldest first: `{items, next}`.
pub async fn dead_letters(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<LetterParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    configured(&state, &name)?;
    let wanted = match p.state.as_deref() {
        None => None,
        Some(text) => Some(LetterState::parse(text).ok_or_else(|| {
            let quoted: String = text.chars().take(40).collect();
            let message = format!("`state={quoted}` is not dead, redeliver or redelivered");
            ApiError(Error::invalid(meshplane_core::ErrorCode::MalformedRequest, message))
        })?),
    };
    let limit = page_size(p.limit);
    let items = state.store.dead_letters(&name, wanted, p.after.unwrap_or(0), limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|l| l.id)).flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverParams {
    id: Option<i64>,
}

/// Asks for a dead letter (or every dead one) to be sent again by the sink's next round.
pub async fn redeliver(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<RedeliverParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    configured(&state, &name)?;
    if let Some(id) = p.id.filter(|id| *id <= 0) {
        let message = format!("`id={id}` is no dead letter's id (leave it out to send every dead one again)");
        return Err(ApiError(Error::invalid(meshplane_core::ErrorCode::MalformedRequest, message)));
    }
    let count = state.store.redeliver(&name, p.id).await?;
    tracing::info!(sink = %name, count, "dead letters to be sent again");
    Ok(Json(json!({ "redelivering": count })))
}

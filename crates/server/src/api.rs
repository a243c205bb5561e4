//! The handlers: thin translations between HTTP and the domain services
//! ([`meshplane_core::service`]) or, for reads, the store.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use meshplane_core::authz::{Authorizer, Caller};
use meshplane_core::resource::{Kind, PortLink, port_links};
use meshplane_core::service::catalog::{self, ApplyAsk};
use meshplane_core::store::{self, Record};
use meshplane_core::{Error, ErrorCode};
use serde::Deserialize;
use serde_json::{Value as Any, json};

use crate::{ApiError, AppState, openapi as document};

pub(crate) type Answer = Result<Json<Any>, ApiError>;

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|r| ApiError(Error::invalid(ErrorCode::MalformedRequest, r.body_text())))
}

/// The kind a path names; one it does not is answered with the one meant (`contrats` →
/// `contracts`), or with both kinds.
fn kind(name: &str) -> Result<Kind, ApiError> {
    Kind::parse(name).ok_or_else(|| {
        let kinds = ["contracts", "products", "policies"];
        let meant = meshplane_spec::suggest::closest(name, kinds).map_or(kinds.to_vec(), |k| vec![k]);
        let meant = meant.into_iter().map(str::to_string).collect();
        ApiError(Error::NotFoundMeant { what: format!("kind `{name}`"), meant })
    })
}

/// A page size asked for: 100 by default, at most 1000.
pub(crate) fn page_size(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 1000)
}

pub(crate) fn to_json(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value).map(Json).map_err(|e| ApiError(Error::Store(e.to_string())))
}

pub async fn health() -> Json<Any> {
    Json(json!({ "status": "ok" }))
}

/// The server's metrics ([`crate::metrics`]), in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    crate::metrics::answer(&state.config.reconciler.metrics, &state.store).await
}

/// Ready when the store answers and the reconcile loop went round in the last 5 seconds.
pub async fn ready(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Answer {
    let not_ready = |why: String| ApiError(Error::invalid(ErrorCode::NotReady, why));
    // Anyone may ask (probes carry no credentials); the store's own error, which may name
    // hosts and users, only a signed-in caller is told.
    if let Err(e) = state.store.schema_version().await {
        let why = match caller.principal {
            Some(_) => format!("the store does not answer: {e}"),
            None => "the store does not answer".to_string(),
        };
        return Err(not_ready(why));
    }
    let beat = state.heartbeat.as_ref().map_or(0, |h| h.load(std::sync::atomic::Ordering::Relaxed));
    if crate::reconciler::epoch_ms().saturating_sub(beat) > 5_000 {
        return Err(not_ready("the reconcilers are not running".into()));
    }
    Ok(Json(json!({ "status": "ready" })))
}

/// Every block with its configuration (secrets as references only) and its health now.
pub async fn blocks(State(state): State<AppState>) -> Answer {
    let mut out = Vec::new();
    for block in &state.blocks.provisioners {
        let health = match block.health().await {
            None => "unknown".to_string(),
            Some(Ok(())) => "ok".to_string(),
            Some(Err(why)) => why,
        };
        let config = state.config.platform.get(block.name()).cloned().unwrap_or(Any::Null);
        let kind = config.get("type").cloned().unwrap_or(Any::Null);
        out.push(json!({ "name": block.name(), "type": kind, "config": config, "health": health }));
    }
    to_json(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphansParams {
    all: Option<bool>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn orphans(State(state): State<AppState>, params: Result<Query<OrphansParams>, QueryRejection>) -> Answer {
    let p = query(params)?;
    to_json(state.store.orphans_page(p.all.unwrap_or(false), p.after.unwrap_or(0), page_size(p.limit)).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeParams {
    id: Option<i64>,
    dry_run: Option<bool>,
}

/// Purges orphans through their blocks; each answer says what happened to one orphan.
pub async fn purge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<PurgeParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let mut orphans = state.store.orphans(false).await?;
    if let Some(id) = p.id {
        orphans.retain(|o| o.id == id);
        if orphans.is_empty() {
            return Err(ApiError(Error::NotFound(format!("orphan {id} (or it is purged already)"))));
        }
    }
    let call = meshplane_core::block::Call::unfenced(state.store.installation().await?);
    let mut out = Vec::new();
    for orphan in orphans {
        let block = state.blocks.provisioners.iter().find(|b| b.name() == orphan.block);
        let (outcome, reason) = match block {
            _ if !orphan.purgeable => {
                ("refused", Some("its block does not purge what meshplane did not create".into()))
            }
            None => ("refused", Some(format!("block `{}` is not configured", orphan.block))),
            Some(_) if p.dry_run.unwrap_or(false) => ("wouldPurge", None),
            Some(block) => match state.blocks.call(block.as_ref(), block.purge(&orphan.place, &call)).await {
                Ok(()) => {
                    state.store.mark_purged(&orphan, &caller.who()).await?;
                    ("purged", None)
                }
                Err(why) => ("failed", Some(why.to_string())),
            },
        };
        out.push(json!({ "id": orphan.id, "block": orphan.block, "note": orphan.note, "outcome": outcome, "reason": reason }));
    }
    to_json(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsParams {
    domain: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn claims(State(state): State<AppState>, params: Result<Query<ClaimsParams>, QueryRejection>) -> Answer {
    let p = query(params)?;
    let after = match &p.after {
        Some(a) => Some(a.split_once('/').ok_or_else(|| {
            Error::invalid(ErrorCode::MalformedRequest, "`after` is the `next` of a previous page (Kind/id)")
        })?),
        None => None,
    };
    to_json(state.store.claims(p.domain.as_deref(), after, p.limit.unwrap_or(100)).await?)
}

/// Releases a claim (platform admins): the id may be registered again by any domain.
pub async fn release_claim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, id)): Path<(String, String)>,
) -> Answer {
    to_json(state.store.release_claim(kind(&k)?, &id, &caller.who()).await?)
}

pub async fn openapi() -> Json<Any> {
    Json(document::document())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyParams {
    dry_run: Option<bool>,
    prune: Option<bool>,
    expect_generation: Option<i64>,
}

/// Applies the body's documents, all or nothing ([`catalog::apply`]).
pub async fn apply(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<ApplyParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = query(params)?;
    let ask = ApplyAsk {
        dry_run: params.dry_run.unwrap_or(false),
        prune: params.prune.unwrap_or(false),
        expect_generation: params.expect_generation,
    };
    let applied = catalog::apply(&state.store, &caller, body?, ask).await?;
    // A resource the apply left as it was keeps its status: say it (a failing provisioning
    // shows in the apply's own answer, not only in the resource's).
    let unchanged = |kind: Kind| -> Vec<String> {
        let left = applied.iter().filter(|i| !ask.dry_run && i.kind == kind && i.outcome == store::Outcome::Unchanged);
        left.map(|i| i.name.clone()).collect()
    };
    let mut statuses = BTreeMap::new();
    for kind in [Kind::DataContract, Kind::DataProduct] {
        for (name, status) in state.store.statuses(kind, &unchanged(kind)).await? {
            statuses.insert((kind, name), status);
        }
    }
    let mut items = Vec::with_capacity(applied.len());
    for item in applied {
        let status = statuses.remove(&(item.kind, item.name.clone()));
        let mut body = serde_json::to_value(item).map_err(|e| Error::Store(e.to_string()))?;
        if let Some(status) = status {
            body["reconciled"] = serde_json::to_value(status).map_err(|e| Error::Store(e.to_string()))?;
        }
        items.push(body);
    }
    to_json(json!({ "dryRun": ask.dry_run, "applied": items }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    dry_run: Option<bool>,
}

/// Marks the resource for deletion; the reconciler removes it once its blocks cleaned up.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, name)): Path<(String, String)>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let kind = kind(&k)?;
    let deleted = catalog::delete(&state.store, &caller, kind, &name, p.dry_run.unwrap_or(false)).await;
    to_json(meant(&state, kind, &name, deleted).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    domain: Option<String>,
    status: Option<String>,
    tag: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Path(k): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let after = match p.after {
        Some(a) => Some(a.split_once('/').map(|(k, n)| (k.to_string(), n.to_string())).ok_or_else(|| {
            Error::invalid(ErrorCode::MalformedRequest, "`after` is the `next` of a previous page (Kind/name)")
        })?),
        None => None,
    };
    let kind = kind(&k)?;
    let q = store::Query {
        kind: Some(kind),
        domain: p.domain,
        status: p.status,
        tag: p.tag,
        after,
        limit: p.limit.unwrap_or(100),
    };
    // Read before the listing: every change up to it is in what the listing shows.
    let watch_from = state.store.feed_position().await?;
    let page = state.store.list(&q).await?;
    let names: Vec<String> = page.items.iter().map(|r| r.name.clone()).collect();
    let mut statuses = state.store.statuses(kind, &names).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for record in page.items {
        let status = statuses.remove(&record.name);
        items.push(with_status(record, status)?);
    }
    Ok(Json(json!({ "items": items, "next": page.next, "watchFrom": watch_from })))
}

/// A resource as the API shows it: the record with what the reconcilers last observed
/// (`reconciled`, null until they ran; `status` is the document's own lifecycle status).
fn with_status(record: Record, status: Option<store::Status>) -> Result<Any, ApiError> {
    let mut body = serde_json::to_value(record).map_err(|e| Error::Store(e.to_string()))?;
    body["reconciled"] = serde_json::to_value(status).map_err(|e| Error::Store(e.to_string()))?;
    Ok(body)
}

/// The resource with what the reconcilers last observed (`reconciled`, null until they ran;
/// `status` is the document's own lifecycle status).
pub async fn get_one(State(state): State<AppState>, Path((k, name)): Path<(String, String)>) -> Answer {
    let kind = kind(&k)?;
    let record = meant(&state, kind, &name, state.store.get(kind, &name).await).await?;
    let status = state.store.status(kind, &name).await?;
    let tests = if kind == Kind::DataProduct { latest_tests(&state, &record).await? } else { Any::Null };
    let mut body = with_status(record, status)?;
    if !tests.is_null() {
        body["latestTests"] = tests;
    }
    Ok(Json(body))
}

/// `result`, where a contract that is not found comes with the names the caller probably
/// meant: the stored major versions of the id given (`orders` → `orders@v2 or orders@v3`),
/// which any caller who may read contracts may list anyway.
pub(crate) async fn meant<T>(
    state: &AppState,
    kind: Kind,
    name: &str,
    result: Result<T, Error>,
) -> Result<T, ApiError> {
    match result {
        Err(Error::NotFound(what)) if kind == Kind::DataContract => {
            let id = name.split_once('@').map_or(name, |(id, _)| id);
            let meant = state.store.contract_names(id).await?;
            Err(ApiError(if meant.is_empty() { Error::NotFound(what) } else { Error::NotFoundMeant { what, meant } }))
        }
        other => Ok(other?),
    }
}

/// For each contract a product's output ports provide (every major version stored), the
/// summary of its latest test run, or null when it was never tested.
async fn latest_tests(state: &AppState, product: &Record) -> Result<Any, ApiError> {
    let (_, provided) = contracts(product);
    let mut out = Vec::new();
    for id in provided {
        for name in state.store.contract_names(&id).await? {
            // A product provides only its own domain's contracts.
            if state.store.get(Kind::DataContract, &name).await?.domain != product.domain {
                continue;
            }
            let run = state.store.test_runs(Kind::DataContract, &name, 1).await?.into_iter().next();
            out.push(json!({
                "contract": name,
                "run": run.map(|r| json!({ "seq": r.seq, "at": r.at, "server": r.server, "failed": r.failed,
                                           "generation": r.generation, "summary": r.report["summary"] })),
            }));
        }
    }
    Ok(Any::Array(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn history(
    State(state): State<AppState>,
    Path((k, name)): Path<(String, String)>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    to_json(state.store.history_page(kind(&k)?, &name, p.after.unwrap_or(0), page_size(p.limit)).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    after: Option<i64>,
    limit: Option<i64>,
}

/// The content type of a JSON array of CloudEvents (the CloudEvents HTTP binding's batch mode).
const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// The catalog's change feed (contracts and products); platform admins read every change
/// (access decisions, tokens, principals) in the audit log. Asked for as
/// `application/cloudevents-batch+json`, the same changes as the CloudEvents the notification
/// sinks deliver.
pub async fn events(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let p = query(params)?;
    let changes = state.store.catalog_events(p.after.unwrap_or(0), p.limit.unwrap_or(100)).await?;
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.split(',').any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(CLOUDEVENTS_BATCH)))
    {
        let events: Vec<Any> = changes.iter().map(store::Change::cloud_event).collect();
        return Ok(([(axum::http::header::CONTENT_TYPE, CLOUDEVENTS_BATCH)], Json(events)).into_response());
    }
    Ok(to_json(changes)?.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    server: Option<String>,
    object: Option<String>,
    samples: Option<usize>,
}

fn contract_kind(k: &str) -> Result<Kind, ApiError> {
    match kind(k)? {
        Kind::DataContract => Ok(Kind::DataContract),
        other => Err(ApiError(Error::invalid(
            ErrorCode::UnsupportedKind,
            format!("a {} has no tests of its own; its contracts do", other.as_str()),
        ))),
    }
}

/// Runs the stored contract's checks now (as `meshplane test` does) and keeps the report
/// with the contract generation it tested.
pub async fn run_tests(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, name)): Path<(String, String)>,
    params: Result<Query<RunParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let kind = contract_kind(&k)?;
    let record = state.store.get(kind, &name).await?;
    let allowed = Authorizer::new(&state.store).manages(&caller, &record).await?;
    caller.require(allowed, &format!("run the tests of contract `{name}` (its owners may)"))?;
    let ask = crate::checks::Ask {
        server: p.server.as_deref(),
        object: p.object.as_deref(),
        samples: p.samples.unwrap_or(0),
        schedule: None,
        trigger: json!({ "by": "api", "actor": caller.name() }),
    };
    let run = crate::checks::run(&state.store, &state.blocks, &state.config.reconciler, &name, ask);
    to_json(run.await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsParams {
    limit: Option<i64>,
}

/// The kept reports; failed-row samples and the checks' detail texts (which may quote values,
/// in a SQL error say) are data, so only those who manage the contract see them; everyone
/// else reads the verdicts and measured values.
pub async fn test_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((k, name)): Path<(String, String)>,
    params: Result<Query<RunsParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let kind = contract_kind(&k)?;
    let record = state.store.get(kind, &name).await?;
    let mut runs = state.store.test_runs(kind, &name, p.limit.unwrap_or(20)).await?;
    if !Authorizer::new(&state.store).manages(&caller, &record).await? {
        for run in &mut runs {
            let results = run.report.get_mut("results").and_then(Any::as_array_mut);
            for result in results.into_iter().flatten().filter_map(Any::as_object_mut) {
                result.remove("samples");
                result.remove("detail");
            }
        }
    }
    to_json(runs)
}

/// The contract ids a product's ports name: (consumed by input ports, provided by output ports).
fn contracts(record: &Record) -> (BTreeSet<String>, BTreeSet<String>) {
    let (inputs, outputs): (Vec<PortLink>, Vec<PortLink>) = port_links(&record.spec).into_iter().partition(|l| l.input);
    let ids = |links: Vec<PortLink>| links.into_iter().map(|l| l.contract_id).collect();
    (ids(inputs), ids(outputs))
}

/// Upstream: the products providing the contracts a product consumes, and theirs, and so
/// on; downstream: the products consuming what it provides, transitively.
pub async fn lineage(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    state.store.get(Kind::DataProduct, &name).await?;
    let products: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> =
        state.store.list_all(Kind::DataProduct).await?.iter().map(|r| (r.name.clone(), contracts(r))).collect();
    let walk = |upstream: bool| {
        let mut found: Vec<Any> = Vec::new();
        let mut seen = BTreeSet::from([name.clone()]);
        let mut frontier = vec![name.clone()];
        while let Some(current) = frontier.pop() {
            let (inputs, outputs) = &products[&current];
            for (other, (their_in, their_out)) in &products {
                let via: Vec<&String> = if upstream {
                    inputs.intersection(their_out).collect()
                } else {
                    outputs.intersection(their_in).collect()
                };
                if !via.is_empty() && seen.insert(other.clone()) {
                    found.push(json!({ "product": other, "via": via, "from": current }));
                    frontier.push(other.clone());
                }
            }
        }
        found
    };
    to_json(json!({ "product": name, "upstream": walk(true), "downstream": walk(false) }))
}

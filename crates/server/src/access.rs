//! Access requests over HTTP: ask for an output port, approve or reject at each approver
//! level, revoke, list. Who may do what is decided from the store's records — the contract's
//! recorded owners and domain (the data's owners), the request's recorded approvers — never
//! from the body. A request is recorded under its contract's domain; its approvers are the
//! contract's owners (or the approvers its ODCS role names), never the one who asked.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use meshplane_core::authz::{Caller, approver_names};
use meshplane_core::resource::{Kind, contract_name};
use meshplane_core::store::Record;
use meshplane_core::store::grants::{AccessQuery, AccessRequest, AccessState, Approvers, Decision, NewRequest};
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
    serde_json::from_slice(text)
        .map_err(|e| ApiError(Error::invalid(ErrorCode::MalformedRequest, format!("the body is not accepted: {e}"))))
}

fn malformed(message: String) -> ApiError {
    ApiError(Error::invalid(ErrorCode::MalformedRequest, message))
}

fn invalid(message: String) -> ApiError {
    ApiError(Error::invalid(ErrorCode::InvalidDocument, message))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccess {
    product: String,
    output_port: String,
    contract: Option<String>,
    consumer: Option<String>,
    /// With `consumer` naming a data product: its input port that reads this port.
    input_port: Option<String>,
    role: Option<String>,
    purpose: String,
    until: Option<String>,
}

/// Asks for access to a product's output port.
pub async fn request(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let ask: NewAccess = body(raw)?;
    if ask.purpose.trim().is_empty() {
        return Err(malformed("`purpose` must say why the access is needed".into()));
    }
    let product = state.store.get(Kind::DataProduct, &ask.product).await?;
    let ports = product.spec.get("outputPorts").and_then(Any::as_array).cloned().unwrap_or_default();
    let port_name = |p: &Any| p.get("name").and_then(Any::as_str).unwrap_or_default().to_string();
    let Some(port) = ports.iter().find(|p| port_name(p) == ask.output_port) else {
        let names: Vec<String> = ports.iter().map(port_name).collect();
        return Err(ApiError(Error::NotFound(format!(
            "output port `{}` of product `{}` (its output ports: {})",
            ask.output_port,
            ask.product,
            names.join(", ")
        ))));
    };
    let contract_id = port.get("contractId").and_then(Any::as_str).ok_or_else(|| {
        invalid(format!("output port `{}` names no contractId: there is nothing to grant", ask.output_port))
    })?;
    let names = state.store.contract_names(contract_id).await?;
    let by_version = port.get("version").and_then(Any::as_str).map(|v| contract_name(contract_id, v));
    let chosen = match &ask.contract {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) => {
            return Err(invalid(format!("`{c}` is not a contract of this port (its contracts: {})", names.join(", "))));
        }
        None if names.len() == 1 => names[0].clone(),
        None => by_version.filter(|n| names.contains(n)).ok_or_else(|| {
            invalid(format!(
                "the port's contract `{contract_id}` has {} stored majors ({}): name one in `contract`",
                names.len(),
                names.join(", ")
            ))
        })?,
    };
    let contract = state.store.get(Kind::DataContract, &chosen).await?;
    if contract.domain != product.domain {
        return Err(ApiError(Error::conflict(
            ErrorCode::CrossDomainPort,
            format!(
                "output port `{}` of product `{}` (domain `{}`) names contract {} of domain `{}`: it is not the product's \
                 to offer; ask through a product of domain `{}`",
                ask.output_port, product.name, product.domain, contract.name, contract.domain, contract.domain
            ),
        )));
    }
    let consumer = ask.consumer.clone().unwrap_or_else(|| caller.name().to_string());
    match &ask.input_port {
        Some(input) => consuming_product(&state, &caller, &consumer, input, contract_id).await?,
        None => {
            let for_self = consumer == caller.name();
            caller.require(
                for_self || caller.is_one_of(std::slice::from_ref(&consumer)) || caller.administers(&product.domain),
                &format!("ask for access on behalf of `{consumer}` (only for yourself or a group you belong to)"),
            )?;
            state.store.principal(&consumer).await?;
        }
    }
    let (write, approvers) = role_terms(&state, &contract, &product, ask.role.as_deref()).await?;
    let new = NewRequest {
        contract: chosen,
        product: product.name.clone(),
        port: ask.output_port,
        domain: contract.domain.clone(),
        consumer,
        input_port: ask.input_port,
        role: ask.role,
        write,
        purpose: ask.purpose,
        until: ask.until,
        approvers,
    };
    Ok(Json(state.store.request_access(new, &caller.who()).await?.to_json()))
}

/// A data product as the consumer: the caller manages it, its input port `input` reads the
/// contract `contract_id`, and it has a service account of its own name (the identity that
/// holds its grants in the stores).
async fn consuming_product(
    state: &AppState,
    caller: &Caller,
    product: &str,
    input: &str,
    contract_id: &str,
) -> Result<(), ApiError> {
    let consumer = state.store.get(Kind::DataProduct, product).await?;
    let allowed = crate::ownership::manages(state, caller, &consumer).await?;
    caller.require(allowed, &format!("ask for access for product `{product}` (its owners may)"))?;
    let reads = meshplane_core::resource::port_links(&consumer.spec)
        .into_iter()
        .any(|l| l.input && l.port == input && l.contract_id == contract_id);
    if !reads {
        return Err(invalid(format!(
            "product `{product}` has no input port `{input}` with contractId `{contract_id}`"
        )));
    }
    match state.store.principal(product).await {
        Ok(p) if p.kind == meshplane_core::store::identity::PrincipalKind::Service => Ok(()),
        _ => Err(invalid(format!(
            "product `{product}` has no service account to hold the grant: a platform admin creates it with \
             `meshplane principal put {product} --kind service --database-role ROLE`"
        ))),
    }
}

/// What the asked role gives (write or read) and who approves it: the role's approvers at
/// each level that resolve to known principals, else the contract's owning team (or, for a
/// contract with no team, the owners of the product offering it, which is of its domain).
async fn role_terms(
    state: &AppState,
    contract: &Record,
    product: &Record,
    role: Option<&str>,
) -> Result<(bool, Approvers), ApiError> {
    let team = if contract.owners.is_empty() { product.owners.clone() } else { contract.owners.clone() };
    let Some(asked) = role else { return Ok((false, Approvers { first: team, second: Vec::new() })) };
    let roles = contract.spec.get("roles").and_then(Any::as_array).cloned().unwrap_or_default();
    let name = |r: &Any| r.get("role").and_then(Any::as_str).unwrap_or_default().to_string();
    let Some(found) = roles.iter().find(|r| name(r) == asked) else {
        let known: Vec<String> = roles.iter().map(name).collect();
        return Err(invalid(format!(
            "contract {} has no role `{asked}` (its roles: {})",
            contract.name,
            if known.is_empty() { "none".into() } else { known.join(", ") }
        )));
    };
    let write = found.get("access").and_then(Any::as_str).is_some_and(|a| a.eq_ignore_ascii_case("write"));
    let principals: Vec<String> = state.store.principals().await?.into_iter().map(|p| p.name).collect();
    let level = |field: &str| {
        let named = approver_names(found.get(field));
        let known: Vec<String> = named.iter().filter(|n| principals.contains(n)).cloned().collect();
        match (named.is_empty(), known.is_empty()) {
            (true, _) => None,
            (false, true) => Some(team.clone()),
            (false, false) => Some(known),
        }
    };
    let first = level("firstLevelApprovers").unwrap_or_else(|| team.clone());
    Ok((write, Approvers { first, second: level("secondLevelApprovers").unwrap_or_default() }))
}

/// The records a request is about, as far as they are still stored: its contract, and the
/// product it came through (when that is of the contract's domain).
#[derive(Default)]
struct About {
    contract: Option<Record>,
    product: Option<Record>,
}

impl About {
    async fn of(state: &AppState, r: &AccessRequest) -> Result<About, ApiError> {
        let contract = Self::of_domain(state, Kind::DataContract, &r.contract, &r.domain).await?;
        let product = Self::of_domain(state, Kind::DataProduct, &r.product, &r.domain).await?;
        Ok(About { contract, product })
    }

    /// The stored record `kind/name` when it is of `domain`.
    async fn of_domain(state: &AppState, kind: Kind, name: &str, domain: &str) -> Result<Option<Record>, ApiError> {
        match state.store.get(kind, name).await {
            Ok(record) if record.domain == domain => Ok(Some(record)),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(ApiError(e)),
        }
    }

    /// Whether the caller owns the data the request is for: an admin of its domain, an owner
    /// of its contract, or an owner of the product (of the same domain) it came through.
    fn owned_by(&self, caller: &Caller, r: &AccessRequest) -> bool {
        caller.administers(&r.domain)
            || self.contract.as_ref().is_some_and(|c| caller.owns(c))
            || self.product.as_ref().is_some_and(|p| caller.owns(p))
    }
}

/// Whether the caller may see a request: it is theirs (or their group's), they decide on it,
/// or they own the data it is for.
fn may_see(caller: &Caller, r: &AccessRequest, about: &About) -> bool {
    caller.is_one_of(std::slice::from_ref(&r.consumer))
        || r.requested_by == caller.name()
        || caller.is_one_of(&r.approvers.first)
        || caller.is_one_of(&r.approvers.second)
        || about.owned_by(caller, r)
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
    let limit = crate::api::page_size(p.limit);
    let mut q = AccessQuery {
        contract: p.contract,
        product: p.product,
        consumer: p.consumer,
        state: wanted,
        after: p.after.unwrap_or(0),
        limit: Some(limit),
    };
    let mut seen: BTreeMap<(String, String), About> = BTreeMap::new();
    let mut out = Vec::new();
    // Pages of the store are read until a page of what the caller may see is full, or none is left.
    loop {
        let page = state.store.access_requests(&q).await?;
        let Some(last) = page.last().map(|r| r.id) else { break };
        for r in &page {
            let key = (r.contract.clone(), r.product.clone());
            if !seen.contains_key(&key) {
                seen.insert(key.clone(), About::of(&state, r).await?);
            }
            if may_see(&caller, r, &seen[&key]) && (out.len() as i64) < limit {
                out.push(r.to_json());
            }
        }
        if out.len() as i64 >= limit || (page.len() as i64) < limit {
            break;
        }
        q.after = last;
    }
    Ok(Json(Any::Array(out)))
}

/// The request `id` when the caller may see it; not found otherwise (its existence is not
/// disclosed).
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<(AccessRequest, About), ApiError> {
    let id: i64 = id.parse().map_err(|_| malformed(format!("`{id}` is not an access request id (a number)")))?;
    let r = state.store.access_request(id).await?;
    let about = About::of(state, &r).await?;
    if !may_see(caller, &r, &about) {
        return Err(ApiError(Error::NotFound(format!("access request {id}"))));
    }
    Ok((r, about))
}

pub async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    Ok(Json(visible(&state, &caller, &id).await?.0.to_json()))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[serde(default)]
    comment: String,
}

fn wrong_state(r: &AccessRequest, what: &str) -> Error {
    Error::conflict(
        ErrorCode::WrongState,
        format!("access request {} is {}: it cannot be {what}", r.id, r.state.as_str()),
    )
}

/// A decision at the awaited level, by one of its approvers (or an admin of the data's
/// domain). Nobody approves a request they made or that gives them access (they may reject
/// it: a withdrawal); at the second level, whoever approved the first may not approve again.
fn decide(caller: &Caller, r: &mut AccessRequest, approve: bool, comment: String) -> Result<&'static str, Error> {
    if r.state != AccessState::Pending {
        return Err(wrong_state(r, if approve { "approved" } else { "rejected" }));
    }
    let level = r.awaited_level();
    let approvers = if level == 1 { &r.approvers.first } else { &r.approvers.second };
    let approved_first = r.decisions.iter().any(|d| d.level == 1 && d.approved && d.by == caller.name());
    let own = r.requested_by == caller.name() || caller.is_one_of(std::slice::from_ref(&r.consumer));
    if approve && own {
        return Err(Error::denied(
            ErrorCode::Forbidden,
            format!(
                "`{}` may not approve access request {}: it is their own; another approver decides",
                caller.name(),
                r.id
            ),
        ));
    }
    let withdrawal = !approve && own;
    caller.require(
        withdrawal
            || (caller.is_one_of(approvers) || caller.administers(&r.domain)) && !(approve && level == 2 && approved_first),
        &format!(
            "decide on access request {} at level {level} (its approvers: {}; whoever approved level 1 cannot approve level 2)",
            r.id,
            approvers.join(", ")
        ),
    )?;
    let by = caller.name().to_string();
    r.decisions.push(Decision { by, level, approved: approve, comment, at: meshplane_core::store::now() });
    let last = level == 2 || r.approvers.second.is_empty();
    Ok(match (approve, last) {
        (false, _) => {
            r.state = AccessState::Rejected;
            "rejected"
        }
        (true, false) => "approved-first-level",
        (true, true) => {
            r.state = AccessState::Active;
            "approved"
        }
    })
}

async fn decision(
    state: AppState,
    caller: Caller,
    id: String,
    raw: Result<Bytes, BytesRejection>,
    approve: bool,
) -> Answer {
    let Comment { comment } = body(raw)?;
    let (r, _) = visible(&state, &caller, &id).await?;
    let who = caller.who();
    let decided = state.store.update_access(r.id, move |r| decide(&caller, r, approve, comment), &who).await?;
    Ok(Json(decided.to_json()))
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

/// Ends an active grant: the data's owners (its contract's, the offering product's, admins of
/// its domain), or the consumer itself.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let Comment { comment } = body(raw)?;
    let (r, about) = visible(&state, &caller, &id).await?;
    let allowed = about.owned_by(&caller, &r) || r.consumer == caller.name();
    caller
        .require(allowed, &format!("revoke grant {} (the data's owners, its domain's admins or its consumer)", r.id))?;
    let by = caller.name().to_string();
    let revoked = state
        .store
        .update_access(
            r.id,
            move |g| {
                if g.state != AccessState::Active {
                    return Err(wrong_state(g, "revoked"));
                }
                g.state = AccessState::Revoked;
                g.decisions.push(Decision { by, level: 0, approved: false, comment, at: meshplane_core::store::now() });
                Ok("revoked")
            },
            &caller.who(),
        )
        .await?;
    Ok(Json(revoked.to_json()))
}

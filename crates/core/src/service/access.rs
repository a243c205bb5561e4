//! The access workflow: ask for an output port, approve or reject at each approver level,
//! revoke, list. Who may do what is decided from the store's records — the contract's
//! recorded owners and domain (the data's owners), the request's recorded approvers — never
//! from what the caller sends. A request is recorded under its contract's domain; its
//! approvers are the contract's owners (or the approvers its ODCS role names), never the one
//! who asked.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value as Any, json};

use crate::authz::{APPROVER_LEVELS, ApproverLevel, Authorizer, Caller, DataOf};
use crate::error::{Error, ErrorCode};
use crate::governance::{self, access::AccessChange, access::AccessVerdict};
use crate::resource::{Kind, contract_name, port_links};
use crate::store::grants::{
    AccessQuery, AccessRequest, AccessState, Approvers, Decision, MAX_POLICY_LEVELS, NewRequest, Outcome, PolicyTerms,
};
use crate::store::identity::PrincipalKind;
use crate::store::{Record, Store, now, now_ms};

/// What a caller asks for.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccess {
    pub product: String,
    pub output_port: String,
    /// Which stored major of the port's contract (`orders@v2`), when it has several.
    pub contract: Option<String>,
    /// Who is to read: the caller (by default), a group of theirs, or a data product.
    pub consumer: Option<String>,
    /// With `consumer` naming a data product: its input port that reads this port.
    pub input_port: Option<String>,
    /// An ODCS role of the contract.
    pub role: Option<String>,
    pub purpose: String,
    /// When the grant ends (RFC 3339).
    pub until: Option<String>,
}

fn invalid(message: String) -> Error {
    Error::invalid(ErrorCode::InvalidDocument, message)
}

/// Asks for access to a product's output port.
pub async fn request(store: &Store, caller: &Caller, ask: NewAccess) -> Result<AccessRequest, Error> {
    if ask.purpose.trim().is_empty() {
        return Err(Error::invalid(ErrorCode::MalformedRequest, "`purpose` must say why the access is needed"));
    }
    let product = store.get(Kind::DataProduct, &ask.product).await?;
    let ports = product.spec.get("outputPorts").and_then(Any::as_array).cloned().unwrap_or_default();
    let port_name = |p: &Any| p.get("name").and_then(Any::as_str).unwrap_or_default().to_string();
    let Some(port) = ports.iter().find(|p| port_name(p) == ask.output_port) else {
        let names: Vec<String> = ports.iter().map(port_name).collect();
        return Err(Error::NotFound(format!(
            "output port `{}` of product `{}` (its output ports: {})",
            ask.output_port,
            ask.product,
            names.join(", ")
        )));
    };
    let contract_id = port.get("contractId").and_then(Any::as_str).ok_or_else(|| {
        invalid(format!("output port `{}` names no contractId: there is nothing to grant", ask.output_port))
    })?;
    let names = store.contract_names(contract_id).await?;
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
    let contract = store.get(Kind::DataContract, &chosen).await?;
    if contract.domain != product.domain {
        return Err(Error::conflict(
            ErrorCode::CrossDomainPort,
            format!(
                "output port `{}` of product `{}` (domain `{}`) names contract {} of domain `{}`: it is not the product's \
                 to offer; ask through a product of domain `{}`",
                ask.output_port, product.name, product.domain, contract.name, contract.domain, contract.domain
            ),
        ));
    }
    let consumer = ask.consumer.clone().unwrap_or_else(|| caller.name().to_string());
    match &ask.input_port {
        Some(input) => consuming_product(store, caller, &consumer, input, contract_id).await?,
        None => {
            caller.require(
                caller.may_request_for(&consumer, &product.domain),
                &format!("ask for access on behalf of `{consumer}` (only for yourself or a group you belong to)"),
            )?;
            store.principal(&consumer).await?;
        }
    }
    let (write, mut approvers) = role_terms(store, &contract, &product, ask.role.as_deref()).await?;
    let asked = json!({
        "product": product.name, "outputPort": ask.output_port, "contract": chosen, "consumer": consumer,
        "inputPort": ask.input_port, "role": ask.role, "access": if write { "write" } else { "read" },
        "purpose": ask.purpose, "until": ask.until, "requestedBy": caller.name(),
    });
    let policies = governance::in_force(store).await?;
    let change = AccessChange {
        action: "access-request",
        contract: &contract,
        product: &product,
        port,
        request: asked,
        consumer: &consumer,
        decision: None,
        caller,
    };
    let mut verdict = governance::access::judge(store, &policies, &change).await?;
    if let Some(by) = verdict.approved_by.clone() {
        // A policy's approval is an approval like any other: the policies on decisions are
        // asked about it. Their denial leaves the request to its human approvers.
        let decision = json!({ "by": by, "level": 1, "comment": "approved by policy" });
        let decided = decision_verdict(store, &policies, caller, &change, decision).await?;
        if decided.denials.is_empty() {
            verdict = verdict.and(decided);
        } else {
            verdict.approved_by = None;
            verdict.answers.extend(decided.answers);
        }
    }
    for required in std::mem::take(&mut verdict.approvers) {
        if !approvers.require(required) {
            verdict.denials.push(too_many_levels());
        }
    }
    let outcome = match (verdict.denials.first(), verdict.approved_by) {
        (Some(first), _) => Outcome::RejectedBy {
            by: format!("policy/{}@{}", first.policy, first.version),
            why: verdict.denials.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; "),
        },
        (None, Some(policy)) => Outcome::ApprovedBy(policy),
        (None, None) => Outcome::Pending,
    };
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
        policy: PolicyTerms { max_days: verdict.max_days, answers: verdict.answers },
        outcome,
    };
    let made = store.request_access(new, &caller.who()).await?;
    if verdict.denials.is_empty() {
        Ok(made)
    } else {
        let what = format!("access request {} (it is recorded as rejected)", made.id);
        Err(governance::access::refusal(&what, &verdict.denials))
    }
}

/// A data product as the consumer: the caller manages it, its input port `input` reads the
/// contract `contract_id`, and it has a service account of its own name (the identity that
/// holds its grants in the stores).
async fn consuming_product(
    store: &Store,
    caller: &Caller,
    product: &str,
    input: &str,
    contract_id: &str,
) -> Result<(), Error> {
    let consumer = store.get(Kind::DataProduct, product).await?;
    let allowed = Authorizer::new(store).manages(caller, &consumer).await?;
    caller.require(allowed, &format!("ask for access for product `{product}` (its owners may)"))?;
    let reads =
        port_links(&consumer.spec).into_iter().any(|l| l.input && l.port == input && l.contract_id == contract_id);
    if !reads {
        return Err(invalid(format!(
            "product `{product}` has no input port `{input}` with contractId `{contract_id}`"
        )));
    }
    match store.principal(product).await {
        Ok(p) if p.kind == PrincipalKind::Service => Ok(()),
        _ => Err(invalid(format!(
            "product `{product}` has no service account to hold the grant: a platform admin creates it with \
             `meshplane principal put {product} --kind service --database-role ROLE`"
        ))),
    }
}

/// What the asked role gives (write or read) and who approves it: at each level the role's
/// approvers ([`ApproverLevel::deciders`]), the first level falling back to the contract's
/// owning team (or, for a contract with no team, the owners of the product offering it,
/// which is of its domain).
async fn role_terms(
    store: &Store,
    contract: &Record,
    product: &Record,
    role: Option<&str>,
) -> Result<(bool, Approvers), Error> {
    let team = if contract.owners.is_empty() { product.owners.clone() } else { contract.owners.clone() };
    let Some(asked) = role else { return Ok((false, Approvers { first: team, ..Approvers::default() })) };
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
    let principals: Vec<String> = store.principals().await?.into_iter().map(|p| p.name).collect();
    let [first, second] = APPROVER_LEVELS.map(|level| ApproverLevel::of(found, level, &principals).deciders(&team));
    let (first, second) = (first.unwrap_or_else(|| team.clone()), second.unwrap_or_default());
    Ok((write, Approvers { first, second, policy: Vec::new() }))
}

/// A page of the requests the caller may see ([`Caller::may_see_request`]): pages of the
/// store are read until a page of what the caller may see is full (`query.limit`, 100 when
/// not given), or none is left.
pub async fn list(store: &Store, caller: &Caller, query: AccessQuery) -> Result<Vec<AccessRequest>, Error> {
    let authz = Authorizer::new(store);
    let limit = query.limit.unwrap_or(100);
    let mut q = AccessQuery { limit: Some(limit), ..query };
    let mut data: BTreeMap<(String, String), DataOf> = BTreeMap::new();
    let mut out = Vec::new();
    loop {
        let page = store.access_requests(&q).await?;
        let Some(last) = page.last().map(|r| r.id) else { break };
        let last_page = (page.len() as i64) < limit;
        for r in page {
            let key = (r.contract.clone(), r.product.clone());
            if !data.contains_key(&key) {
                data.insert(key.clone(), authz.data_of(&r).await?);
            }
            if caller.may_see_request(&r, &data[&key]) && (out.len() as i64) < limit {
                out.push(r);
            }
        }
        if out.len() as i64 >= limit || last_page {
            break;
        }
        q.after = last;
    }
    Ok(out)
}

/// The request `id` when the caller may see it; not found otherwise (its existence is not
/// disclosed).
pub async fn get(store: &Store, caller: &Caller, id: i64) -> Result<AccessRequest, Error> {
    Ok(visible(store, caller, id).await?.0)
}

async fn visible(store: &Store, caller: &Caller, id: i64) -> Result<(AccessRequest, DataOf), Error> {
    let r = store.access_request(id).await?;
    let data = Authorizer::new(store).data_of(&r).await?;
    if !caller.may_see_request(&r, &data) {
        return Err(Error::NotFound(format!("access request {id}")));
    }
    Ok((r, data))
}

fn wrong_state(r: &AccessRequest, what: &str) -> Error {
    Error::conflict(
        ErrorCode::WrongState,
        format!("access request {} is {}: it cannot be {what}", r.id, r.state.as_str()),
    )
}

/// A decision (`approve` or reject) at the awaited level ([`Caller::may_decide`]); the last
/// approval makes the request an active grant.
pub async fn decide(
    store: &Store,
    caller: &Caller,
    id: i64,
    approve: bool,
    comment: String,
) -> Result<AccessRequest, Error> {
    let (r, _) = visible(store, caller, id).await?;
    let asked_at = r.awaited_level();
    let verdict = if approve && r.state == AccessState::Pending {
        caller.may_decide(&r, approve)?;
        approval_verdict(store, caller, &r, &comment).await?
    } else {
        AccessVerdict::default()
    };
    if !verdict.denials.is_empty() {
        let what = format!("approving access request {} (it stays pending)", r.id);
        return Err(governance::access::refusal(&what, &verdict.denials));
    }
    let by = caller.clone();
    let transition = move |r: &mut AccessRequest| {
        if r.state != AccessState::Pending {
            return Err(wrong_state(r, if approve { "approved" } else { "rejected" }));
        }
        by.may_decide(r, approve)?;
        let level = r.awaited_level();
        if approve && level != asked_at {
            // The policies were asked about an approval at another level.
            return Err(Error::conflict(
                ErrorCode::WrongState,
                format!("access request {} moved on to level {level} meanwhile: decide again", r.id),
            ));
        }
        r.decisions.push(Decision { by: by.name().to_string(), level, approved: approve, comment, at: now() });
        for required in verdict.approvers {
            if !r.approvers.require(required) {
                let why = too_many_levels();
                return Err(Error::conflict(
                    ErrorCode::PolicyDenied,
                    format!("approving access request {}: {}", r.id, why.message),
                ));
            }
        }
        r.policy.answers.extend(verdict.answers);
        r.policy.max_days = match (r.policy.max_days, verdict.max_days) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(match (approve, r.is_last_level(level)) {
            (false, _) => {
                r.state = AccessState::Rejected;
                "rejected"
            }
            (true, false) if level == 1 => "approved-first-level",
            (true, false) if level == 2 => "approved-second-level",
            (true, false) => "approved-policy-level",
            (true, true) => {
                r.activate(now_ms());
                "approved"
            }
        })
    };
    store.update_access(r.id, transition, &caller.who()).await
}

/// The denial of a request to which policies would add more approver levels than one may have.
fn too_many_levels() -> governance::Finding {
    governance::Finding {
        policy: "meshplane".into(),
        version: String::new(),
        enforcement: "deny".into(),
        rule: "approvers".into(),
        message: format!("policies require more than {MAX_POLICY_LEVELS} levels of approvers"),
        path: None,
    }
}

/// What the policies on access decisions say about the caller approving `r` now.
async fn approval_verdict(
    store: &Store,
    caller: &Caller,
    r: &AccessRequest,
    comment: &str,
) -> Result<AccessVerdict, Error> {
    let policies = governance::in_force(store).await?;
    if !policies.ask_about("access-decision", &r.domain) {
        return Ok(AccessVerdict::default());
    }
    let contract = store.get(Kind::DataContract, &r.contract).await?;
    let product = store.get(Kind::DataProduct, &r.product).await?;
    let ports = product.spec.get("outputPorts").and_then(Any::as_array).cloned().unwrap_or_default();
    let port = ports.into_iter().find(|p| p.get("name").and_then(Any::as_str) == Some(r.port.as_str()));
    let port = port.unwrap_or(Any::Null);
    let change = AccessChange {
        action: "access-request",
        contract: &contract,
        product: &product,
        port: &port,
        request: r.to_json(),
        consumer: &r.consumer,
        decision: None,
        caller,
    };
    let decision = json!({ "by": caller.name(), "level": r.awaited_level(), "comment": comment });
    decision_verdict(store, &policies, caller, &change, decision).await
}

/// What the policies on access decisions say about `decision` on the request `asked`.
async fn decision_verdict(
    store: &Store,
    policies: &governance::Policies,
    caller: &Caller,
    asked: &AccessChange<'_>,
    decision: Any,
) -> Result<AccessVerdict, Error> {
    let change = AccessChange {
        action: "access-decision",
        contract: asked.contract,
        product: asked.product,
        port: asked.port,
        request: asked.request.clone(),
        consumer: asked.consumer,
        decision: Some(decision),
        caller,
    };
    governance::access::judge(store, policies, &change).await
}

/// Ends an active grant ([`Caller::may_revoke`]).
pub async fn revoke(store: &Store, caller: &Caller, id: i64, comment: String) -> Result<AccessRequest, Error> {
    let (r, data) = visible(store, caller, id).await?;
    caller.require(
        caller.may_revoke(&r, &data),
        &format!("revoke grant {} (the data's owners, its domain's admins or its consumer)", r.id),
    )?;
    let by = caller.name().to_string();
    let transition = move |g: &mut AccessRequest| {
        if g.state != AccessState::Active {
            return Err(wrong_state(g, "revoked"));
        }
        g.state = AccessState::Revoked;
        g.decisions.push(Decision { by, level: 0, approved: false, comment, at: now() });
        Ok("revoked")
    };
    store.update_access(r.id, transition, &caller.who()).await
}

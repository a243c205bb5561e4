//! Policies on access: asked when a request is made (`access-request`) and when an approver
//! approves it (`access-decision`), about the request, the output port, the classification
//! of its contract's properties, the consumer and the consumer's grants in force.
//!
//! Their answers combine in one order ([`AccessVerdict`]): a denial (a `deny` policy's
//! violation, a failed evaluation, an approver nobody can be) wins over an extra approver,
//! which wins over auto-approval; the shortest `max_days` caps the grant whatever else is
//! answered. Each answer is kept on the request with the policy's version
//! ([`PolicyAnswer`]), so the audit log has them with every transition.

use serde_json::{Value as Any, json};

use super::{Finding, InForce, Policies, caller_view};
use crate::authz::Caller;
use crate::error::Error;
use crate::resource::Kind;
use crate::store::grants::{AccessQuery, AccessState, PolicyAnswer, PolicyApprovers};
use crate::store::identity::Principal;
use crate::store::{Record, Store, now_ms};

/// What the policies on access are asked about.
pub struct AccessChange<'a> {
    /// `access-request` or `access-decision`.
    pub action: &'static str,
    pub contract: &'a Record,
    pub product: &'a Record,
    /// The output port, as the product's document declares it.
    pub port: &'a Any,
    /// The request: as asked, or as stored (for a decision).
    pub request: Any,
    /// The principal who is to read.
    pub consumer: &'a str,
    /// For a decision: who decides, at which level, and the comment.
    pub decision: Option<Any>,
    pub caller: &'a Caller,
}

/// What the policies on access answered, combined.
#[derive(Debug, Default)]
pub struct AccessVerdict {
    /// Violations of `deny` policies, and evaluations that failed: the request (or the
    /// approval) is refused.
    pub denials: Vec<Finding>,
    /// The policy that approves the request without a human (`policy/NAME@VERSION`), when
    /// nothing denies it and no policy requires an approver.
    pub approved_by: Option<String>,
    /// The approvers each policy requires: a level of its own after the request's levels.
    pub approvers: Vec<PolicyApprovers>,
    /// The shortest cap on the grant's duration, in days.
    pub max_days: Option<f64>,
    /// Every answer, for the request's record.
    pub answers: Vec<PolicyAnswer>,
}

impl AccessVerdict {
    /// Both verdicts as one (a request's and the decision policies' on its auto-approval):
    /// every denial, approver and answer, the shorter cap; approved only when both approve.
    pub fn and(mut self, other: AccessVerdict) -> AccessVerdict {
        self.denials.extend(other.denials);
        self.approvers.extend(other.approvers);
        self.answers.extend(other.answers);
        self.max_days = match (self.max_days, other.max_days) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !self.denials.is_empty() || !self.approvers.is_empty() {
            self.approved_by = None;
        }
        self
    }
}

/// Asks every policy on `change.action` whose scope covers the contract's domain.
pub async fn judge(store: &Store, policies: &Policies, change: &AccessChange<'_>) -> Result<AccessVerdict, Error> {
    let (kind, domain) = (Kind::DataContract, change.contract.domain.as_str());
    let covering: Vec<&InForce> =
        policies.list.iter().filter(|p| p.covers(change.action, kind, domain)).map(AsRef::as_ref).collect();
    let mut verdict = AccessVerdict::default();
    if covering.is_empty() {
        return Ok(verdict);
    }
    // A policy confined to its domain (which a domain's admins may write) sees the consumer's
    // grants on that domain only, of the consumer its name, kind and whether it is a member of
    // that domain, and of the caller its name; a platform policy sees them all.
    let whole = input(store, change).await?;
    let mut confined = whole.clone();
    if let Some(grants) = confined["grants"].as_array_mut() {
        grants.retain(|g| g["domain"] == domain);
    }
    if let Some(caller) = whole["caller"].as_object() {
        confined["caller"] = json!({ "name": caller.get("name") });
    }
    if let Some(consumer) = whole["consumer"].as_object() {
        let member = consumer.get("memberOf").and_then(Any::as_array).is_some_and(|m| m.iter().any(|d| d == domain));
        let member_of: Vec<&str> = if member { vec![domain] } else { Vec::new() };
        confined["consumer"] =
            json!({ "name": consumer.get("name"), "kind": consumer.get("kind"), "memberOf": member_of });
    }
    let (whole, confined) = (meshplane_policy::Input::new(&whole), meshplane_policy::Input::new(&confined));
    let data = super::data(store, policies).await?;
    let principals = store.principals().await?;
    let known: Vec<String> = principals.iter().map(|p| p.name.clone()).collect();
    let readers = readers(store, &principals, change.consumer).await?;
    let now = now_ms();
    let exempt: Vec<_> = policies.exempting(kind, &change.contract.name, now).collect();
    let exempted = |policy: &str, rule: &str| {
        exempt.iter().any(|e| e.policy == policy && e.rule.as_deref().is_none_or(|r| r == rule))
    };
    let input_of = |entry: &InForce| if entry.policy.reaches_beyond_its_domain() { &whole } else { &confined };
    let replies = super::ask_all(policies, &covering, input_of, data.as_ref(), true);
    let mut approving = None;
    for (entry, (said, answer)) in covering.into_iter().zip(replies) {
        let answered = |effect: &str, message: String| PolicyAnswer {
            policy: entry.name.clone(),
            version: entry.version.clone(),
            action: change.action.to_string(),
            effect: effect.to_string(),
            message,
        };
        for finding in entry.findings(said).into_iter().filter(|f| !exempted(&f.policy, &f.rule)) {
            let effect = if finding.denies() { "deny" } else { "warn" };
            verdict.answers.push(answered(effect, finding.message.clone()));
            if finding.denies() {
                verdict.denials.push(finding);
            }
        }
        if !answer.approvers.is_empty() && !exempted(&entry.name, "approvers") {
            let unknown: Vec<&String> = answer.approvers.iter().filter(|n| !known.contains(n)).collect();
            if let Some(name) = unknown.first() {
                let message = format!("it requires approval by `{name}`, who is no known principal or group");
                verdict.answers.push(answered("deny", message.clone()));
                verdict.denials.push(finding_of(entry, "approvers", message));
            } else {
                let names = answer.approvers.join(", ");
                verdict.answers.push(answered("approvers", format!("requires approval by one of: {names}")));
                let policy = format!("{}@{}", entry.name, entry.version);
                verdict.approvers.push(PolicyApprovers { policy, names: answer.approvers });
            }
        }
        if let Some(days) = answer.max_days.filter(|_| !exempted(&entry.name, "max_days")) {
            verdict.answers.push(answered("cap", format!("the grant lasts at most {days} days")));
            verdict.max_days = Some(verdict.max_days.map_or(days, |d: f64| d.min(days)));
        }
        if answer.approve && change.action == "access-request" && !exempted(&entry.name, "approve") {
            if let Some(why) = own_approval(entry, change, &readers) {
                verdict.answers.push(answered("approve", format!("its approval does not count: {why}")));
            } else {
                verdict.answers.push(answered("approve", "approves the request without a human decision".into()));
                approving = approving.or(Some(format!("policy/{}@{}", entry.name, entry.version)));
            }
        }
    }
    if verdict.denials.is_empty() && verdict.approvers.is_empty() {
        verdict.approved_by = approving;
    }
    Ok(verdict)
}

/// One who would read through a grant: a name, the groups it is in, the domains it
/// administers (nothing for a name that is no principal).
struct Reader {
    name: String,
    groups: Vec<String>,
    domains: Vec<String>,
}

/// Who would read through a grant to `consumer`: the consumer, the members of a consumer
/// group, and the recorded owners of a consumer product (with the members of its team).
async fn readers(store: &Store, principals: &[Principal], consumer: &str) -> Result<Vec<Reader>, Error> {
    let mut names = vec![consumer.to_string()];
    if let Ok(product) = store.get(Kind::DataProduct, consumer).await {
        names.extend(product.owners);
    }
    let groups = names.clone();
    names.extend(principals.iter().filter(|p| p.groups.iter().any(|g| groups.contains(g))).map(|p| p.name.clone()));
    names.sort_unstable();
    names.dedup();
    let reader = |name: String| {
        let known = principals.iter().find(|p| p.name == name);
        let (groups, domains) = known.map(|p| (p.groups.clone(), p.domains.clone())).unwrap_or_default();
        Reader { name, groups, domains }
    };
    Ok(names.into_iter().map(reader).collect())
}

/// Why a policy confined to its domain may not approve this request itself: nobody approves
/// their own request, and such a policy is written by the domain's admins or its owners — so
/// it does not approve a request made by one of them, or for one (as a consumer, a member of
/// the consumer group, or an owner of the consumer product).
fn own_approval(entry: &InForce, change: &AccessChange<'_>, readers: &[Reader]) -> Option<String> {
    if entry.policy.reaches_beyond_its_domain() {
        return None;
    }
    let domain = &change.contract.domain;
    let caller = change.caller;
    let by_writer = caller.administers(domain) || caller.is_one_of(&entry.owners);
    let for_writer = readers.iter().any(|r| {
        entry.owners.contains(&r.name)
            || r.domains.contains(domain)
            || r.groups.iter().any(|g| entry.owners.contains(g))
    });
    (by_writer || for_writer).then(|| {
        format!(
            "the request is made by or for one who may write the policy (an admin of domain `{domain}` or its \
             owner); another approver decides"
        )
    })
}

/// The error that refuses `what` (`the access request 12`, `the approval`) for `denials`.
pub fn refusal(what: &str, denials: &[Finding]) -> Error {
    super::refusal(what, denials.iter().map(|f| (None, f.clone())).collect())
}

fn finding_of(entry: &InForce, rule: &str, message: String) -> Finding {
    Finding {
        policy: entry.name.clone(),
        version: entry.version.clone(),
        enforcement: "deny".into(),
        rule: rule.into(),
        message,
        path: None,
    }
}

/// The `input` of a policy on access.
async fn input(store: &Store, change: &AccessChange<'_>) -> Result<Any, Error> {
    let consumer = store.principal(change.consumer).await.ok();
    let mut names = vec![change.consumer.to_string()];
    names.extend(consumer.iter().flat_map(|p| p.groups.iter().cloned()));
    let member_of = store.owner_domains(&names).await?;
    let consumer = consumer.map(|p| {
        json!({
            "name": p.name, "kind": p.kind, "groups": p.groups, "platformAdmin": p.platform_admin,
            "domains": p.domains, "memberOf": member_of,
        })
    });
    let now = now_ms();
    let query = AccessQuery {
        consumer: Some(change.consumer.to_string()),
        state: Some(AccessState::Active),
        ..AccessQuery::default()
    };
    let grants: Vec<Any> = store
        .access_requests(&query)
        .await?
        .into_iter()
        .filter(|g| g.in_force(now))
        .map(|g| {
            json!({
                "id": g.id, "contract": g.contract, "product": g.product, "outputPort": g.port, "domain": g.domain,
                "access": if g.write { "write" } else { "read" }, "until": g.until,
            })
        })
        .collect();
    Ok(json!({
        "action": change.action,
        "kind": Kind::DataContract.as_str(),
        "name": change.contract.name,
        "domain": change.contract.domain,
        "owners": change.contract.owners,
        "request": change.request,
        "consumer": consumer,
        "grants": grants,
        "product": { "id": change.product.name, "domain": change.product.domain, "owners": change.product.owners },
        "port": change.port,
        "contract": change.contract.spec,
        "properties": properties(&change.contract.spec),
        "decision": change.decision,
        "caller": caller_view(Some(change.caller)),
    }))
}

/// Every property of a contract's schema, nested ones too: `object`, `name`, `path` (in the
/// document), `classification`, `tags`, `logicalType`, `physicalType`.
pub fn properties(contract: &Any) -> Vec<Any> {
    fn walk(object: &str, at: &str, list: &Any, out: &mut Vec<Any>) {
        for (i, p) in list.as_array().into_iter().flatten().enumerate() {
            let path = format!("{at}.properties[{i}]");
            out.push(json!({
                "object": object,
                "name": p.get("name"),
                "path": path,
                "classification": p.get("classification"),
                "tags": p.get("tags"),
                "logicalType": p.get("logicalType"),
                "physicalType": p.get("physicalType"),
            }));
            if let Some(nested) = p.get("properties") {
                walk(object, &path, nested, out);
            }
            if let Some(nested) = p.get("items").and_then(|items| items.get("properties")) {
                walk(object, &format!("{path}.items"), nested, out);
            }
        }
    }
    let mut out = Vec::new();
    for (i, object) in contract.get("schema").and_then(Any::as_array).into_iter().flatten().enumerate() {
        let name = object.get("name").and_then(Any::as_str).unwrap_or_default();
        if let Some(list) = object.get("properties") {
            walk(name, &format!("schema[{i}]"), list, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn properties_are_listed_with_their_paths_nested_ones_too() {
        let contract = json!({ "schema": [
            { "name": "orders", "properties": [
                { "name": "id" },
                { "name": "buyer", "properties": [{ "name": "email", "classification": "pii" }] },
            ]},
            { "name": "lines", "properties": [
                { "name": "tags", "items": { "properties": [{ "name": "label", "tags": ["x"] }] } },
            ]},
        ]});
        let listed: Vec<(String, String, Option<String>)> = super::properties(&contract)
            .iter()
            .map(|p| {
                let text = |k: &str| p[k].as_str().map(str::to_string);
                (text("object").unwrap(), text("path").unwrap(), text("classification"))
            })
            .collect();
        let expected = [
            ("orders", "schema[0].properties[0]", None),
            ("orders", "schema[0].properties[1]", None),
            ("orders", "schema[0].properties[1].properties[0]", Some("pii")),
            ("lines", "schema[1].properties[0]", None),
            ("lines", "schema[1].properties[0].items.properties[0]", None),
        ];
        let expected: Vec<(String, String, Option<String>)> =
            expected.iter().map(|(o, p, c)| (o.to_string(), p.to_string(), c.map(str::to_string))).collect();
        assert_eq!(listed, expected);
    }
}

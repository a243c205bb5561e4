//! Governance: the stored `Policy` resources asked about every change of the catalog.
//!
//! - On **apply** and **delete** ([`judge`]), every policy whose scope covers the resource and
//!   whose actions name the change is evaluated; a `deny` policy's violation refuses the whole
//!   change (nothing is written, every violation listed), a `warn` policy's is answered with
//!   the change. A policy whose evaluation fails or runs past its budget counts as a denial,
//!   whatever its enforcement: a policy never fails open.
//! - **Continuous compliance** ([`compliance`]): the reconciler of a contract or product asks
//!   the `apply` policies about the stored document and writes the `PolicyCompliant`
//!   condition (nothing else about the resource changes); a change of a policy requeues every
//!   resource, so a new policy marks the existing violators within one reconcile.
//!
//! - On **access** ([`access`]): policies on access requests and decisions approve, require an
//!   approver, cap the grant's duration or deny.
//!
//! A policy is compiled once per generation and kept in the store handle's cache, beside what
//! the platform decides ([`configure`]): the default pack's policies, when chosen, and the
//! time budget of one evaluation.

pub mod access;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshplane_policy::worker::{Answer, Job, Runner};
use meshplane_policy::{Compiled, DEFAULT_BUDGET, Verdict};
use meshplane_spec::Document;
use meshplane_spec::model::policy::Policy;
use serde::Serialize;
use serde_json::{Value as Any, json};

use crate::authz::Caller;
use crate::error::{Error, ErrorCode};
use crate::resource::{Kind, ObjectRef};
use crate::store::{Record, Store, now_ms};

/// One policy in force: its document and its compiled module (or why the module no longer
/// compiles: then every evaluation of it is a denial).
pub struct InForce {
    pub name: String,
    pub version: String,
    pub policy: Policy,
    /// Its recorded owners (none for a built-in).
    owners: Vec<String>,
    compiled: Result<Compiled, String>,
    /// How long one evaluation may take.
    budget: Duration,
    /// Whether its module may read `data` (the mesh's domains, teams and principals): any
    /// mention of `data` counts, however it is written.
    needs_data: bool,
}

impl InForce {
    fn new(
        (name, version, owners): (String, String, Vec<String>),
        policy: Policy,
        compiled: Result<Compiled, String>,
        budget: Duration,
    ) -> InForce {
        let needs_data = policy.rego.contains("data");
        InForce { name, version, policy, owners, compiled, budget, needs_data }
    }

    /// Whether it is asked about `action` on a resource of `kind` in `domain`.
    fn covers(&self, action: &str, kind: Kind, domain: &str) -> bool {
        self.policy.actions().contains(&action) && self.policy.covers(kind.as_str(), domain)
    }

    /// Its evaluation on `input`, reading its part of `data` (none when its module does not
    /// compile).
    fn job<'a>(&'a self, input: &'a meshplane_policy::Input, data: Option<&'a Data>, access: bool) -> Option<Job<'a>> {
        let compiled = self.compiled.as_ref().ok()?;
        Some(Job { compiled, input, data: self.data(data), budget: self.budget, access, trial: false })
    }

    /// What it may read as `data`, of what [`data`] read.
    fn data<'d>(&self, data: Option<&'d Data>) -> Option<&'d Any> {
        data.filter(|_| self.needs_data)
            .map(|d| if self.policy.reaches_beyond_its_domain() { &d.with_principals } else { &d.catalog })
    }

    /// Its verdict as findings: its violations with its enforcement; a failed evaluation is a
    /// denial.
    fn findings(&self, verdict: Verdict) -> Vec<Finding> {
        let finding = |enforcement: &str, rule: String, message: String, path: Option<String>| Finding {
            policy: self.name.clone(),
            version: self.version.clone(),
            enforcement: enforcement.to_string(),
            rule,
            message,
            path,
        };
        match verdict {
            Verdict::Pass => Vec::new(),
            Verdict::Violated(violations) => {
                violations.into_iter().map(|v| finding(&self.policy.enforcement, v.rule, v.message, v.path)).collect()
            }
            Verdict::Failed(why) => {
                let message = format!("the policy could not be evaluated, which counts as a denial: {why}");
                vec![finding("deny", self.name.clone(), message, None)]
            }
        }
    }
}

/// Whether a change of a policy or an exemption (its documents `before` and `after`, as
/// stored) may change the compliance of the resource `candidate` of `domain` (`None`: not
/// known, so it may): for an exemption, when it names the resource; for a policy, when one of
/// the two is asked about applies (policies on delete or access do not judge compliance) and
/// its scope covers the resource's kind and domain.
pub fn touches(
    kind: Kind,
    before: Option<&Any>,
    after: Option<&Any>,
    candidate: &ObjectRef,
    domain: Option<&str>,
) -> bool {
    let documents = [before, after].into_iter().flatten();
    let listed = |value: &Any, field: &str| -> Option<Vec<String>> {
        value.get(field).and_then(Any::as_array).map(|a| a.iter().filter_map(Any::as_str).map(str::to_string).collect())
    };
    match kind {
        Kind::PolicyExemption => {
            let target = candidate.to_string();
            documents.into_iter().any(|e| listed(e, "resources").is_some_and(|r| r.contains(&target)))
        }
        Kind::Policy => documents.into_iter().any(|p| {
            let on_apply = listed(p, "actions").is_none_or(|a| a.iter().any(|a| a == "apply"));
            let scope = p.get("scope").cloned().unwrap_or(Any::Null);
            let kind_in = listed(&scope, "kinds").is_none_or(|k| k.iter().any(|k| k == candidate.kind.as_str()));
            let domains = listed(&scope, "domains")
                .unwrap_or_else(|| p.get("domain").and_then(Any::as_str).map(str::to_string).into_iter().collect());
            let domain_in = domain.is_none_or(|d| domains.iter().any(|x| x == "*" || x == d));
            on_apply && kind_in && domain_in
        }),
        _ => false,
    }
}

/// What evaluations may read as `data.meshplane`, read from the store when a policy in force
/// asks for it: `domains` (every domain of a stored resource or administered by a principal)
/// and `teams` (`{name, domain}` of the stored resources' teams), which the catalog shows
/// every signed-in principal anyway; and, for policies whose scope reaches past their own
/// domain only (a platform admin's, who may list the principals), `principals` (`name`,
/// `kind`, `groups`, `platformAdmin`, `domains`: no credential, no database role).
pub struct Data {
    catalog: Any,
    with_principals: Any,
}

pub async fn data(store: &Store, policies: &Policies) -> Result<Option<Data>, Error> {
    if !policies.list.iter().any(|p| p.needs_data) {
        return Ok(None);
    }
    let pairs = store.domains_and_teams().await?;
    let principals = store.principals().await?;
    let mut domains: Vec<&str> = pairs.iter().map(|(d, _)| d.as_str()).collect();
    domains.extend(principals.iter().flat_map(|p| p.domains.iter().map(String::as_str)));
    domains.sort_unstable();
    domains.dedup();
    let teams: Vec<Any> =
        pairs.iter().filter(|(_, t)| !t.is_empty()).map(|(d, t)| json!({ "name": t, "domain": d })).collect();
    let principals: Vec<Any> = principals
        .iter()
        .map(|p| {
            json!({ "name": p.name, "kind": p.kind, "groups": p.groups, "platformAdmin": p.platform_admin, "domains": p.domains })
        })
        .collect();
    let catalog = json!({ "meshplane": { "domains": domains, "teams": teams } });
    let mut with_principals = catalog.clone();
    with_principals["meshplane"]["principals"] = Any::Array(principals);
    Ok(Some(Data { catalog, with_principals }))
}

/// The compiled policies of a store, by name, each with the generation it was compiled from,
/// and what the platform set: the built-in policies in force (the default pack, when chosen)
/// and the evaluation budget.
pub struct Cache {
    stored: Mutex<HashMap<String, (i64, Arc<InForce>)>>,
    platform: Mutex<Platform>,
    domain_policies: std::sync::atomic::AtomicBool,
    evaluations: Arc<Evaluations>,
}

/// How many policy evaluations ran through a store's handles, by verdict (read by the
/// server's metrics).
#[derive(Debug, Default)]
pub struct Evaluations {
    passed: AtomicU64,
    violated: AtomicU64,
    failed: AtomicU64,
}

impl Evaluations {
    fn count(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Pass => &self.passed,
            Verdict::Violated(_) => &self.violated,
            Verdict::Failed(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Each verdict (`pass`, `violation`, `failed`) with how many evaluations answered it.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        [
            ("pass", self.passed.load(Ordering::Relaxed)),
            ("violation", self.violated.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
        ]
    }
}

/// The evaluations counted through `store` (and its clones).
pub fn evaluations(store: &Store) -> Arc<Evaluations> {
    Arc::clone(&store.policy_cache().evaluations)
}

/// What the platform set: the built-in policies in force, the budget of one evaluation, and
/// where evaluations run.
#[derive(Clone)]
struct Platform {
    builtin: Vec<Arc<InForce>>,
    budget: Duration,
    runner: Arc<Runner>,
}

impl Default for Cache {
    /// No built-in policy, the default budget, evaluations in this process (a server
    /// configures workers: [`configure`]).
    fn default() -> Self {
        let platform = Platform { builtin: Vec::new(), budget: DEFAULT_BUDGET, runner: Arc::new(Runner::InProcess) };
        Cache {
            stored: Mutex::default(),
            platform: Mutex::new(platform),
            domain_policies: std::sync::atomic::AtomicBool::new(false),
            evaluations: Arc::default(),
        }
    }
}

/// Whether the platform lets domain admins write their domain's policies (off by default:
/// a policy is code the server runs, and a hostile one can still take its time).
pub fn domain_policies(store: &Store) -> bool {
    store.policy_cache().domain_policies.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets what the platform decides for every evaluation through `store` (and its clones):
/// `builtin` policies in force besides the stored ones (named `default-pack/ID`), the
/// `budget` of one evaluation, whether domain admins may write their domain's policies, and
/// where evaluations run (a server's: in limited worker processes).
/// Returns the problems of a built-in that does not compile.
pub fn configure(
    store: &Store,
    builtin: Vec<Policy>,
    budget: Duration,
    domain_policies: bool,
    runner: Runner,
) -> Result<(), String> {
    let mut compiled = Vec::new();
    for policy in builtin {
        let module =
            meshplane_policy::compile(&policy).map_err(|p| format!("built-in policy `{}`: {p:?}", policy.id))?;
        let (name, version) = (format!("default-pack/{}", policy.id), policy.version.clone());
        compiled.push(Arc::new(InForce::new((name, version, Vec::new()), policy, Ok(module), budget)));
    }
    let cache = store.policy_cache();
    cache.domain_policies.store(domain_policies, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut platform) = cache.platform.lock() {
        *platform = Platform { builtin: compiled, budget, runner: Arc::new(runner) };
    }
    if let Ok(mut stored) = cache.stored.lock() {
        stored.clear();
    }
    Ok(())
}

/// What a policy found about one change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The policy (its name) and the version that made the finding.
    pub policy: String,
    pub version: String,
    /// `deny` or `warn`; an evaluation that failed is a `deny`.
    pub enforcement: String,
    pub rule: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Finding {
    pub fn denies(&self) -> bool {
        self.enforcement == "deny"
    }
}

/// What a change is, as the policies see it (`input`).
pub struct Change<'a> {
    pub action: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    pub domain: &'a str,
    pub owners: &'a [String],
    pub before: Option<&'a Any>,
    pub after: Option<&'a Any>,
    /// `meshplane diff`'s classification of `before` → `after` (contracts only).
    pub diff: Option<Any>,
    /// Who asks (`None` for a re-evaluation by the reconciler).
    pub caller: Option<&'a Caller>,
}

/// `meshplane diff`'s report of two versions of a contract, with `breaking` (whether any
/// change is); `None` unless both are contracts.
pub fn classify(before: Option<&Document>, after: Option<&Document>) -> Option<Any> {
    let (Some(Document::Contract(old)), Some(Document::Contract(new))) = (before, after) else { return None };
    let report = meshplane_spec::diff::diff(old, new);
    let mut value = serde_json::to_value(&report).ok()?;
    value["breaking"] = json!(report.has_breaking());
    Some(value)
}

/// Who asks, as policies see it (`null` for the reconciler's re-evaluation).
fn caller_view(caller: Option<&Caller>) -> Any {
    let principal = caller.and_then(|c| c.principal.as_ref());
    principal.map_or(
        Any::Null,
        |p| json!({ "name": p.name, "groups": p.groups, "platformAdmin": p.platform_admin, "domains": p.domains }),
    )
}

impl Change<'_> {
    fn input(&self) -> Any {
        let caller = caller_view(self.caller);
        json!({
            "action": self.action,
            "kind": self.kind.as_str(),
            "name": self.name,
            "domain": self.domain,
            "owners": self.owners,
            "before": self.before,
            "after": self.after,
            "diff": self.diff,
            "caller": caller,
        })
    }
}

/// The policies in force and the exemptions from them, as stored now, and where they are
/// evaluated.
pub struct Policies {
    list: Vec<Arc<InForce>>,
    exemptions: Vec<Exempt>,
    runner: Arc<Runner>,
    evaluations: Arc<Evaluations>,
}

/// One stored exemption: findings of `policy` (of `rule` only, when it names one) about the
/// `resources` (`KIND/NAME`) do not count until `expires_ms`.
struct Exempt {
    policy: String,
    rule: Option<String>,
    resources: Vec<String>,
    expires_ms: i64,
}

impl Policies {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a policy in force is asked about `action` on the contracts of `domain`.
    pub fn ask_about(&self, action: &str, domain: &str) -> bool {
        self.list.iter().any(|p| p.covers(action, Kind::DataContract, domain))
    }

    /// The exemptions that apply now to the resource `kind/name`.
    fn exempting<'a>(&'a self, kind: Kind, name: &'a str, now_ms: i64) -> impl Iterator<Item = &'a Exempt> + 'a {
        let target = format!("{kind}/{name}");
        self.exemptions.iter().filter(move |e| e.expires_ms > now_ms && e.resources.contains(&target))
    }

    /// In how many milliseconds the first exemption that applies now to `kind/name` ends.
    fn first_expiry_in_ms(&self, kind: Kind, name: &str) -> Option<u64> {
        let now = now_ms();
        self.exempting(kind, name, now).map(|e| e.expires_ms).min().map(|end| (end - now) as u64 + 1)
    }
}

/// The stored policies, compiled (from the cache when their generation was seen before),
/// beside the platform's, and the stored exemptions.
pub async fn in_force(store: &Store) -> Result<Policies, Error> {
    let (list, runner) = compiled_policies(store).await?;
    let mut exemptions = Vec::new();
    if !list.is_empty() {
        for record in store.list_all(Kind::PolicyExemption).await? {
            let Some(Document::Exemption(e)) = record.document() else { continue };
            let Some(expires_ms) = crate::store::epoch_ms(&e.expires) else { continue };
            if record.deletion_requested.is_none() {
                let (policy, rule, resources) = (e.policy.clone(), e.rule.clone(), e.resources.clone());
                exemptions.push(Exempt { policy, rule, resources, expires_ms });
            }
        }
    }
    Ok(Policies { list, exemptions, runner, evaluations: evaluations(store) })
}

fn platform(store: &Store) -> Platform {
    let platform = store.policy_cache().platform.lock();
    platform.map(|p| p.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

async fn compiled_policies(store: &Store) -> Result<(Vec<Arc<InForce>>, Arc<Runner>), Error> {
    let records = store.list_all(Kind::Policy).await?;
    let cache = store.policy_cache();
    let Platform { builtin, budget, runner } = platform(store);
    let mut all = builtin;
    for record in records.into_iter().filter(|r| r.deletion_requested.is_none()) {
        let cached = cache.stored.lock().ok().and_then(|c| c.get(&record.name).cloned());
        match cached {
            Some((generation, entry)) if generation == record.generation => all.push(entry),
            _ => {
                let Some(entry) = compile(&record, budget, &runner) else { continue };
                let entry = Arc::new(entry);
                if let Ok(mut c) = cache.stored.lock() {
                    c.insert(record.name.clone(), (record.generation, Arc::clone(&entry)));
                }
                all.push(entry);
            }
        }
    }
    Ok((all, runner))
}

fn compile(record: &Record, budget: Duration, runner: &Runner) -> Option<InForce> {
    let names = (record.name.clone(), record.version.clone(), record.owners.clone());
    let Some(Document::Policy(policy)) = record.document() else {
        // A stored policy whose document no longer reads stays in force over what it said it
        // covers, and denies (never fails open).
        let listed = |value: Option<&Any>| -> Option<Vec<String>> {
            let items = value?.as_array()?;
            Some(items.iter().filter_map(Any::as_str).map(str::to_string).collect())
        };
        let spec = &record.spec;
        let scope = meshplane_spec::model::policy::Scope {
            domains: listed(spec.pointer("/scope/domains")),
            kinds: listed(spec.pointer("/scope/kinds")),
            ..Default::default()
        };
        let all = meshplane_spec::model::policy::ACTIONS.iter().map(|a| a.to_string()).collect();
        let policy = Policy {
            id: record.name.clone(),
            domain: Some(record.domain.clone()),
            scope: Some(scope),
            actions: Some(listed(spec.get("actions")).unwrap_or(all)),
            enforcement: "deny".into(),
            ..Policy::default()
        };
        let why = "its document does not read on this release".to_string();
        return Some(InForce::new(names, policy, Err(why), budget));
    };
    // Stored policies compiled when they were applied; one that no longer does (a newer
    // release refusing a built-in) stays in force and denies what it covers (never fails
    // open), and its reconcile says why.
    let compiled = runner.prepare(policy).map_err(|problems| {
        let why: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        format!("its module does not compile on this release: {}", why.join("; "))
    });
    Some(InForce::new(names, (**policy).clone(), compiled, budget))
}

/// Asks `entries` (each about the input `input_of` gives it) where evaluations run: an answer
/// per entry, in order; an entry whose module does not compile answers a failure.
fn ask_all<'a>(
    policies: &Policies,
    entries: &[&'a InForce],
    input_of: impl Fn(&InForce) -> &'a meshplane_policy::Input,
    data: Option<&'a Data>,
    access: bool,
) -> Vec<Answer> {
    let jobs: Vec<Job<'a>> = entries.iter().filter_map(|e| e.job(input_of(e), data, access)).collect();
    let mut answers = blocking(|| policies.runner.run(&jobs)).into_iter();
    let failed = |why: String| (Verdict::Failed(why), meshplane_policy::AccessAnswer::default());
    let answers: Vec<Answer> = entries
        .iter()
        .map(|e| match &e.compiled {
            Ok(_) => answers.next().unwrap_or_else(|| failed("no answer".into())),
            Err(why) => failed(why.clone()),
        })
        .collect();
    answers.iter().for_each(|(verdict, _)| policies.evaluations.count(verdict));
    answers
}

/// Runs `evaluations` (which wait for a policy worker, or evaluate in this thread) so that the
/// other tasks of a multi-threaded runtime move to other threads meanwhile.
fn blocking<T>(evaluations: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(evaluations),
        _ => evaluations(),
    }
}

/// Runs a policy document's module once on an empty input, where evaluations run (a server's
/// policy workers), to find what only running finds (unsafe variables, unknown functions):
/// its problems refuse the document, at their lines.
pub fn trial(store: &Store, policy: &Policy) -> Result<(), Error> {
    blocking(|| meshplane_policy::check(policy, &platform(store).runner)).map(|_| ()).map_err(|problems| {
        let details = Any::Array(problems.iter().map(|d| d.to_json()).collect());
        let message = format!("the policy's Rego module does not compile ({} problem(s))", problems.len());
        Error::Invalid { code: ErrorCode::InvalidDocument, message, details }
    })
}

/// Asks every policy in force that covers the change; `data` is what [`data`] read.
/// A finding an exemption covers does not count (it is left out).
pub fn judge(policies: &Policies, change: &Change<'_>, data: Option<&Data>) -> Vec<Finding> {
    let covering: Vec<&Arc<InForce>> =
        policies.list.iter().filter(|p| p.covers(change.action, change.kind, change.domain)).collect();
    if covering.is_empty() {
        return Vec::new();
    }
    let input = meshplane_policy::Input::new(&change.input());
    let covering: Vec<&InForce> = covering.into_iter().map(AsRef::as_ref).collect();
    let answers = ask_all(policies, &covering, |_| &input, data, false);
    let mut findings = Vec::new();
    for (entry, (verdict, _)) in covering.iter().zip(answers) {
        findings.extend(entry.findings(verdict));
    }
    let exempt: Vec<&Exempt> = policies.exempting(change.kind, change.name, now_ms()).collect();
    findings.retain(|f| !exempt.iter().any(|e| e.policy == f.policy && e.rule.as_ref().is_none_or(|r| *r == f.rule)));
    findings
}

/// The error that refuses `what` (`the change`, `the access request`, ...) some policy
/// denied: every denial in `details`, each with the document it is about (numbered from 1 in
/// the body) when there are several.
pub fn refusal(what: &str, denials: Vec<(Option<usize>, Finding)>) -> Error {
    let first = &denials[0].1;
    let message = match denials.len() {
        1 => format!("policy `{}` denies {what}: {}", first.policy, first.message),
        n => format!("{n} policy violations deny {what}; the first, policy `{}`: {}", first.policy, first.message),
    };
    let details = denials
        .iter()
        .map(|(document, f)| {
            let mut item = serde_json::to_value(f).unwrap_or_default();
            if let Some(document) = document {
                item["document"] = json!(document + 1);
            }
            item
        })
        .collect();
    Error::Invalid { code: ErrorCode::PolicyDenied, message, details: Any::Array(details) }
}

type Condition = (&'static str, bool, &'static str, String);

/// The `Ready` condition of a policy or an exemption, and in how many milliseconds to look
/// again (an active exemption, when it expires).
pub fn readiness(store: &Store, record: &Record) -> (Condition, Option<u64>) {
    match record.document() {
        Some(Document::Policy(policy)) => match blocking(|| meshplane_policy::check(policy, &platform(store).runner)) {
            Ok(_) => {
                let message = "the module compiles; the policy is asked about every change in its scope";
                (("Ready", true, "InForce", message.into()), None)
            }
            Err(problems) => {
                let why: Vec<String> =
                    problems.iter().map(|p| format!("line {}: {}", p.span.start.line, p.message)).collect();
                (("Ready", false, "CompileFailed", why.join("; ")), None)
            }
        },
        Some(Document::Exemption(e)) => {
            let left = crate::store::epoch_ms(&e.expires).map_or(0, |end| end - now_ms());
            if left > 0 {
                let message = format!(
                    "exempts {} from policy {} until {}: {}",
                    e.resources.join(", "),
                    e.policy,
                    e.expires,
                    e.reason
                );
                (("Ready", true, "Active", message), Some(left as u64 + 1))
            } else {
                (("Ready", false, "Expired", format!("expired at {}; it exempts nothing", e.expires)), None)
            }
        }
        _ => (("Ready", false, "NotGovernance", "the stored document is not a policy or an exemption".into()), None),
    }
}

/// The `PolicyCompliant` condition of a stored contract or product (`None` when no policy
/// covers it and it never had the condition), and in how many milliseconds an exemption that
/// applies to it ends.
pub async fn compliance(
    store: &Store,
    record: &Record,
    had_condition: bool,
) -> Result<(Option<Condition>, Option<u64>), Error> {
    let policies = in_force(store).await?;
    let ends = policies.first_expiry_in_ms(record.kind, &record.name);
    let change = Change {
        action: "apply",
        kind: record.kind,
        name: &record.name,
        domain: &record.domain,
        owners: &record.owners,
        before: None,
        after: Some(&record.spec),
        diff: None,
        caller: None,
    };
    let covered = policies.list.iter().any(|p| p.covers("apply", record.kind, &record.domain));
    if !covered && !had_condition {
        return Ok((None, ends));
    }
    let data = data(store, &policies).await?;
    let findings = judge(&policies, &change, data.as_ref());
    let condition = if findings.is_empty() {
        let message = if covered { "every policy that covers it passes" } else { "no policy covers it" };
        ("PolicyCompliant", true, if covered { "Compliant" } else { "NoPolicy" }, message.to_string())
    } else {
        let reason = if findings.iter().any(Finding::denies) { "Violation" } else { "Warning" };
        let message = findings
            .iter()
            .map(|f| format!("{} ({}, rule {}): {}", f.policy, f.enforcement, f.rule, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        ("PolicyCompliant", false, reason, message)
    };
    Ok((Some(condition), ends))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::touches;
    use crate::resource::{Kind, ObjectRef};

    #[test]
    fn a_policy_change_touches_what_its_scope_covers_before_or_after_and_an_exemption_what_it_names() {
        let orders = ObjectRef::new(Kind::DataContract, "orders@v1");
        let shop = ObjectRef::new(Kind::DataProduct, "shop");
        let sales = Some("sales");
        let own = json!({ "domain": "sales" });
        let elsewhere = json!({ "domain": "finance" });
        let contracts_everywhere =
            json!({ "domain": "platform", "scope": { "domains": ["*"], "kinds": ["DataContract"] } });
        let on_access = json!({ "domain": "sales", "actions": ["access-request"] });
        let policy = |before: Option<&serde_json::Value>, after: Option<&serde_json::Value>, r: &ObjectRef, d| {
            touches(Kind::Policy, before, after, r, d)
        };
        assert!(policy(None, Some(&own), &orders, sales), "a policy of its domain, on apply by default");
        assert!(!policy(None, Some(&elsewhere), &orders, sales));
        assert!(policy(Some(&own), Some(&elsewhere), &orders, sales), "what it covered before counts");
        assert!(policy(None, Some(&contracts_everywhere), &orders, sales));
        assert!(!policy(None, Some(&contracts_everywhere), &shop, sales), "not a kind it covers");
        assert!(!policy(None, Some(&on_access), &orders, sales), "policies on access judge no compliance");
        assert!(policy(None, Some(&elsewhere), &orders, None), "a resource of unknown domain is looked at");
        let exemption = json!({ "resources": ["DataContract/orders@v1"] });
        assert!(touches(Kind::PolicyExemption, Some(&exemption), None, &orders, sales));
        assert!(!touches(Kind::PolicyExemption, Some(&exemption), None, &shop, sales));
    }
}

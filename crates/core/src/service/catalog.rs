//! The catalog's changes: a body of YAML or JSON documents becomes resources (every problem
//! of every document, or nothing), is judged by the policies in force ([`governance`]) and
//! applied on behalf of a caller all or nothing, and a resource is marked for deletion (when
//! no policy denies it).

use meshplane_spec::{Document, load};
use serde_json::{Value as Any, json};

use crate::authz::{Authorizer, Caller};
use crate::error::{Error, ErrorCode};
use crate::governance::{self, Change, Finding};
use crate::resource::{Kind, Resource};
use crate::store::{Applied, ApplyOptions, Record, Store};

/// How to apply a body.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyAsk {
    /// Check and report, write nothing.
    pub dry_run: bool,
    /// Delete what the body's domains hold and the body does not name (their admins only).
    pub prune: bool,
    /// For a body of one document: the generation it must have now (0: it must not exist).
    pub expect_generation: Option<i64>,
}

/// Applies the documents of `body` on behalf of `caller`: every document is checked before
/// anything is written, and one bad document refuses the whole body, listing every problem of
/// every document.
pub async fn apply(
    store: &Store,
    caller: &Caller,
    body: impl AsRef<[u8]> + Send + 'static,
    ask: ApplyAsk,
) -> Result<Vec<Applied>, Error> {
    // Reading a large body costs; a caller who may change nothing is refused first.
    let may = Authorizer::new(store).may_apply_anything(caller).await?;
    caller.require(may, "apply anything (no domain or resource is theirs)")?;
    // Reading YAML is CPU work proportional to the body: off the threads that serve requests.
    let resources = tokio::task::spawn_blocking(move || resources_of(body.as_ref()))
        .await
        .map_err(|e| Error::Store(format!("reading the body failed: {e}")))??;
    if ask.expect_generation.is_some() && resources.len() != 1 {
        return Err(Error::invalid(ErrorCode::MalformedRequest, "expectGeneration applies to a body of one document"));
    }
    for (index, resource) in resources.iter().enumerate() {
        match &resource.document {
            Document::Policy(policy) => {
                let may = caller.may_govern(policy, governance::domain_policies(store));
                let what = if policy.reaches_beyond_its_domain() {
                    format!("apply policy `{}`, whose scope reaches past its own domain", resource.name)
                } else {
                    format!("apply policy `{}` (this platform lets only platform admins write policies)", resource.name)
                };
                caller.require(may, &what)?;
                // Its trial runs the module (in a policy worker): only for one who may write it
                // (the store decides again as it writes).
                let stored = store.get(Kind::Policy, &resource.name).await.ok();
                let writes = caller.administers(&resource.domain) || stored.as_ref().is_some_and(|r| caller.owns(r));
                let what = format!("apply policy `{}` (its domain's admins and its owners manage it)", resource.name);
                caller.require(writes, &what)?;
                governance::trial(store, policy).map_err(|e| {
                    let details = json!([{ "document": index + 1, "code": e.code(), "message": e.to_string(), "details": e.details() }]);
                    Error::Invalid { code: e.code(), message: format!("document {}: {e}", index + 1), details }
                })?;
            }
            Document::Exemption(_) => {
                let what = format!("apply exemption `{}` (only platform admins exempt from policies)", resource.name);
                caller.require(caller.is_platform_admin(), &what)?;
            }
            _ => {}
        }
    }
    let warnings = judge_apply(store, caller, &resources).await?;
    let options = ApplyOptions { dry_run: ask.dry_run, prune: ask.prune, ..caller.who() };
    let mut applied = store.apply_as(caller, &resources, &[ask.expect_generation], &options).await?;
    for (index, finding) in warnings {
        let resource = &resources[index];
        if let Some(item) = applied.iter_mut().find(|a| a.kind == resource.kind && a.name == resource.name) {
            item.warnings.push(finding);
        }
    }
    Ok(applied)
}

/// Asks the policies in force about each resource of an apply: refuses the whole body when
/// one denies any of them; otherwise answers the warnings, by the resource's place in it.
async fn judge_apply(store: &Store, caller: &Caller, resources: &[Resource]) -> Result<Vec<(usize, Finding)>, Error> {
    let policies = governance::in_force(store).await?;
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let data = governance::data(store, &policies).await?;
    let (mut denials, mut warnings) = (Vec::new(), Vec::new());
    for (index, resource) in resources.iter().enumerate() {
        let stored = match store.get(resource.kind, &resource.name).await {
            Ok(record) => Some(record),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let owners = stored.as_ref().map_or_else(|| crate::resource::owners(&resource.spec), |s| s.owners.clone());
        let change = Change {
            action: "apply",
            kind: resource.kind,
            name: &resource.name,
            domain: stored.as_ref().map_or(&resource.domain, |s| &s.domain),
            owners: &owners,
            before: stored.as_ref().map(|s| &s.spec),
            after: Some(&resource.spec),
            diff: governance::classify(stored.as_ref().and_then(Record::document), Some(&resource.document)),
            caller: Some(caller),
        };
        for finding in governance::judge(&policies, &change, data.as_ref()) {
            if finding.denies() { denials.push((Some(index), finding)) } else { warnings.push((index, finding)) }
        }
    }
    if denials.is_empty() { Ok(warnings) } else { Err(governance::refusal("the change", denials)) }
}

/// Marks a resource for deletion on behalf of `caller`, who must manage it; its reconciler
/// removes it once its blocks cleaned up.
pub async fn delete(store: &Store, caller: &Caller, kind: Kind, name: &str, dry_run: bool) -> Result<Record, Error> {
    let policies = governance::in_force(store).await?;
    if !policies.is_empty() {
        // The caller's right to delete first (a dry run checks it), so that no one else
        // learns what a policy says about it.
        let stored = store.delete_as(caller, kind, name, &ApplyOptions { dry_run: true, ..caller.who() }).await?;
        let change = Change {
            action: "delete",
            kind,
            name,
            domain: &stored.domain,
            owners: &stored.owners,
            before: Some(&stored.spec),
            after: None,
            diff: None,
            caller: Some(caller),
        };
        let data = governance::data(store, &policies).await?;
        let found = governance::judge(&policies, &change, data.as_ref());
        let denials: Vec<_> = found.into_iter().filter(Finding::denies).collect();
        if !denials.is_empty() {
            return Err(governance::refusal("the change", denials.into_iter().map(|f| (None, f)).collect()));
        }
    }
    store.delete_as(caller, kind, name, &ApplyOptions { dry_run, ..caller.who() }).await
}

/// The resources a body of YAML or JSON documents describes, or every problem of every
/// document (`details`: one entry per refused document, numbered from 1).
pub fn resources_of(body: &[u8]) -> Result<Vec<Resource>, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Error::invalid(ErrorCode::MalformedRequest, format!("the body is not UTF-8 text: {e}")))?;
    let loaded = load(text);
    if !loaded.diagnostics.is_empty() {
        let details = Any::Array(loaded.diagnostics.iter().map(|d| d.to_json()).collect());
        let message = "the body cannot be read".into();
        return Err(Error::Invalid { code: ErrorCode::InvalidDocument, message, details });
    }
    if loaded.documents.is_empty() {
        return Err(Error::invalid(ErrorCode::InvalidDocument, "the body holds no document"));
    }
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in loaded.documents.iter().enumerate() {
        match Resource::from_loaded(doc) {
            Ok(r) => resources.push(r),
            Err(e) => problems.push((i, e)),
        }
    }
    if let Some((_, first)) = problems.first() {
        let code = first.code();
        let message = match problems.len() {
            1 => format!("document {}: {first}", problems[0].0 + 1),
            n => format!("{n} documents are refused; the first, document {}: {first}", problems[0].0 + 1),
        };
        let details = problems
            .iter()
            .map(|(i, e)| json!({ "document": i + 1, "code": e.code(), "message": e.to_string(), "details": e.details() }))
            .collect();
        return Err(Error::Invalid { code, message, details: Any::Array(details) });
    }
    Ok(resources)
}

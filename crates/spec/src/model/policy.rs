//! meshplane's own `Policy` kind (`apiVersion: meshplane/v1`): a Rego module, the resources
//! and actions it is asked about, and what a violation does (`deny` refuses the change,
//! `warn` lets it through with the warnings kept on the resource).
//!
//! This model reads the document's fields; whether the Rego compiles is checked by the policy
//! engine (`meshplane-policy`), which also maps its errors to the document's lines.

use serde::Serialize;
use serde_with::skip_serializing_none;

use super::common::Team;
use crate::decode::{At, Cx, Decode, Obj};
use crate::diag::{Code, Diagnostic};
use crate::tree::{Node, Span};

/// The actions a policy can be asked about.
pub const ACTIONS: &[&str] = &["apply", "delete", "access-request", "access-decision"];
/// What a violation does.
pub const ENFORCEMENTS: &[&str] = &["deny", "warn"];
/// The kinds a policy's scope can name.
pub const KINDS: &[&str] = &["DataContract", "DataProduct"];

#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub api_version: String,
    pub kind: String,
    pub id: String,
    pub version: String,
    pub domain: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub team: Option<Team>,
    pub scope: Option<Scope>,
    pub actions: Option<Vec<String>>,
    pub enforcement: String,
    pub rego: String,
    #[serde(skip)]
    pub at: At,
}

/// Which resources a policy is asked about: those of `domains` (`["*"]`: every domain; when
/// absent, the policy's own domain) and of `kinds` (when absent, every kind).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub domains: Option<Vec<String>>,
    pub kinds: Option<Vec<String>>,
    #[serde(skip)]
    pub at: At,
}

impl Policy {
    /// The actions it is asked about (`apply` when the document names none).
    pub fn actions(&self) -> Vec<&str> {
        match &self.actions {
            Some(actions) => actions.iter().map(String::as_str).collect(),
            None => vec!["apply"],
        }
    }

    /// Whether a resource of `kind` in `domain` is in its scope.
    pub fn covers(&self, kind: &str, domain: &str) -> bool {
        let scope = self.scope.as_ref();
        let kinds = scope.and_then(|s| s.kinds.as_ref());
        let domains = scope.and_then(|s| s.domains.as_ref());
        // Policies judge the catalog's resources, never policies or their exemptions.
        let kind_in = KINDS.contains(&kind) && kinds.is_none_or(|k| k.iter().any(|k| k == kind));
        let domain_in = match domains {
            Some(d) => d.iter().any(|d| d == "*" || d == domain),
            None => self.domain.as_deref() == Some(domain),
        };
        kind_in && domain_in
    }

    /// Whether its scope reaches past its own domain (every domain, or another one): only a
    /// platform admin may apply such a policy.
    pub fn reaches_beyond_its_domain(&self) -> bool {
        let own = self.domain.as_deref().unwrap_or_default();
        let domains = self.scope.as_ref().and_then(|s| s.domains.as_ref());
        domains.is_some_and(|d| d.iter().any(|d| d != own))
    }

    /// The line of the document where the Rego text's first line is.
    pub fn rego_line(&self) -> u32 {
        self.at.field("rego").start.line
    }
}

/// Reports each of `values` that is not one of `allowed`, at `span`: "`x` is not WHAT".
fn each_allowed<'v>(
    cx: &mut Cx,
    span: Span,
    values: impl IntoIterator<Item = &'v String>,
    allowed: &[&str],
    what: &str,
) {
    for value in values.into_iter().filter(|v| !allowed.contains(&v.as_str())) {
        let message = format!("`{value}` is not {what}");
        cx.report(
            Diagnostic::new(Code::InvalidValue, span, message).hint(format!("use one of: {}", allowed.join(", "))),
        );
    }
}

impl Decode for Scope {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let mut o = Obj::new(cx, node, "policy scope")?;
        let scope = Scope { domains: o.opt("domains"), kinds: o.opt("kinds"), at: At::default() };
        let at = o.finish();
        each_allowed(cx, at.field("kinds"), scope.kinds.iter().flatten(), KINDS, "a kind a policy can cover");
        Some(Scope { at, ..scope })
    }
}

pub(crate) fn decode_policy(node: &Node, cx: &mut Cx) -> Option<Policy> {
    let mut o = Obj::new(cx, node, "policy")?;
    let policy = Policy {
        api_version: o.opt("apiVersion").unwrap_or_default(),
        kind: o.opt("kind").unwrap_or_default(),
        id: o.req("id"),
        version: o.req("version"),
        domain: o.opt("domain"),
        description: o.opt("description"),
        tags: o.opt("tags"),
        team: o.opt("team"),
        scope: o.opt("scope"),
        actions: o.opt("actions"),
        enforcement: o.req("enforcement"),
        rego: o.req("rego"),
        at: At::default(),
    };
    let at = o.finish();
    let enforcement = Some(&policy.enforcement).filter(|e| !e.is_empty());
    each_allowed(cx, at.field("enforcement"), enforcement, ENFORCEMENTS, "an enforcement");
    each_allowed(
        cx,
        at.field("actions"),
        policy.actions.iter().flatten(),
        ACTIONS,
        "an action a policy is asked about",
    );
    Some(Policy { at, ..policy })
}

/// meshplane's `PolicyExemption` kind: resources a policy (or one of its rules) does not
/// judge, for a reason, until a time. Only a platform admin applies one.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    pub api_version: String,
    pub kind: String,
    pub id: String,
    pub version: String,
    pub domain: Option<String>,
    /// The policy's name on the server (`default-pack/ID` for the default pack's).
    pub policy: String,
    /// One rule of the policy; every rule when absent.
    pub rule: Option<String>,
    /// What is exempt: `KIND/NAME` (`DataContract/orders@v2`).
    pub resources: Vec<String>,
    pub reason: String,
    /// When it stops applying (RFC 3339).
    pub expires: String,
    #[serde(skip)]
    pub at: At,
}

pub(crate) fn decode_exemption(node: &Node, cx: &mut Cx) -> Option<Exemption> {
    let mut o = Obj::new(cx, node, "policy exemption")?;
    let exemption = Exemption {
        api_version: o.opt("apiVersion").unwrap_or_default(),
        kind: o.opt("kind").unwrap_or_default(),
        id: o.req("id"),
        version: o.req("version"),
        domain: o.opt("domain"),
        policy: o.req("policy"),
        rule: o.opt("rule"),
        resources: o.req("resources"),
        reason: o.req("reason"),
        expires: o.req("expires"),
        at: At::default(),
    };
    let at = o.finish();
    for resource in &exemption.resources {
        let fine = resource.split_once('/').is_some_and(|(kind, name)| KINDS.contains(&kind) && !name.is_empty());
        if !fine {
            cx.report(
                Diagnostic::new(Code::InvalidValue, at.field("resources"), format!("`{resource}` is not KIND/NAME"))
                    .hint(format!("write e.g. `DataContract/orders@v2`; the kinds are {}", KINDS.join(", "))),
            );
        }
    }
    if exemption.reason.trim().is_empty() && at.fields.iter().any(|(k, _)| *k == "reason") {
        cx.report(Diagnostic::new(Code::InvalidValue, at.field("reason"), "an exemption says why: `reason` is empty"));
    }
    Some(Exemption { at, ..exemption })
}

//! Who may do what: deny by default.
//!
//! A [`Caller`] is whoever sent a request: a principal (authenticated by a token or an OIDC
//! token) or anonymous. Roles, from most to least powerful: platform admins; domain admins
//! (of the domains their identity lists); owners of a resource (its team's name, as a group,
//! and the team's members, recorded in the store when the resource was created — never what
//! a later document claims); any authenticated principal (a consumer: reads the catalog,
//! requests access); anonymous (nothing but the probes).
//!
//! The ownership rule, one for every route that changes the catalog, is decided from what
//! the store holds — read by the store in the transaction that writes ([`Caller::manages`],
//! [`Caller::may_create`]):
//! - a stored resource is managed by its recorded owners and the admins of its recorded
//!   domain; a contract also by the owners of a product **of the same domain** whose output
//!   port provides it, when the contract has no recorded owners or shares one with the
//!   product — and a port naming a stored contract is only added by one of its managers, so
//!   a port is never the way to become one;
//! - a new resource may be created by an admin of its domain; a new contract also by an owner
//!   of another major of its id (in the same domain), or of a product of its domain whose
//!   output port names it;
//! - every id belongs to the domain that first registered it, for good (until a platform
//!   admin releases it), so no other domain can create any major of it, even after deletion.

use serde_json::Value as Any;

use crate::error::{Error, ErrorCode};
use crate::resource::{Kind, Resource};
use crate::store::identity::Principal;
use crate::store::{ApplyOptions, Record};

/// A contract one of the caller's products provides: the output port's contract id, and the
/// product's domain and recorded owners.
#[derive(Clone, Debug)]
pub struct Provision {
    pub contract_id: String,
    pub domain: String,
    pub owners: Vec<String>,
}

/// Whoever sent a request, and from where.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Option<Principal>,
    /// Where the request came from, for the audit log (`api 127.0.0.1:50312`).
    pub origin: String,
    /// When the credential of the request stops being good (RFC 3339; `None`: never): a token
    /// the caller makes with it expires no later.
    pub good_until: Option<String>,
}

impl Caller {
    pub fn anonymous(origin: impl Into<String>) -> Caller {
        Caller { principal: None, origin: origin.into(), good_until: None }
    }

    pub fn of(principal: Principal, origin: impl Into<String>) -> Caller {
        Caller { principal: Some(principal), origin: origin.into(), good_until: None }
    }

    /// The principal's name, or `anonymous`.
    pub fn name(&self) -> &str {
        self.principal.as_ref().map_or("anonymous", |p| p.name.as_str())
    }

    /// The names the caller answers to: its own and its groups'.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.principal.iter().flat_map(|p| std::iter::once(p.name.as_str()).chain(p.groups.iter().map(String::as_str)))
    }

    /// Whether the caller is any of `names` (itself or one of its groups).
    pub fn is_one_of(&self, names: &[String]) -> bool {
        self.names().any(|n| names.iter().any(|m| m == n))
    }

    pub fn is_platform_admin(&self) -> bool {
        self.principal.as_ref().is_some_and(|p| p.platform_admin)
    }

    /// A platform admin, or an admin of `domain`.
    pub fn administers(&self, domain: &str) -> bool {
        self.is_platform_admin() || self.principal.as_ref().is_some_and(|p| p.domains.iter().any(|d| d == domain))
    }

    /// Whether the caller may manage a stored resource: it administers its recorded domain,
    /// or is one of its recorded owners.
    pub fn owns(&self, record: &Record) -> bool {
        self.administers(&record.domain) || self.is_one_of(&record.owners)
    }

    /// Whether the caller manages a stored resource: it owns it, or (a contract) it owns a
    /// product of the contract's domain whose output port provides it, and the contract has
    /// no recorded owners or shares one with that product (a port alone never hands one
    /// team's contract to another). `provided` is what the caller's products provide.
    pub fn manages(&self, record: &Record, provided: &[Provision]) -> bool {
        self.owns(record)
            || (record.kind == Kind::DataContract.as_str()
                && provided.iter().any(|p| {
                    p.contract_id == record.id
                        && p.domain == record.domain
                        && (record.owners.is_empty() || p.owners.iter().any(|o| record.owners.contains(o)))
                }))
    }

    /// Whether the caller may create `resource`, of which nothing is stored: an admin of its
    /// domain; for a contract also an owner of another of its majors (`majors`, those of its
    /// domain count) or of a product of its domain whose output port names it (`provided`).
    pub fn may_create(&self, resource: &Resource, majors: &[Record], provided: &[Provision]) -> bool {
        if self.administers(&resource.domain) {
            return true;
        }
        resource.kind == Kind::DataContract
            && (majors.iter().any(|m| m.domain == resource.domain && self.owns(m))
                || provided.iter().any(|p| p.contract_id == resource.id && p.domain == resource.domain))
    }

    /// How the caller's changes are recorded.
    pub fn who(&self) -> ApplyOptions {
        ApplyOptions { actor: self.name().to_string(), origin: self.origin.clone(), dry_run: false, prune: false }
    }

    /// `Ok` when `allowed`; otherwise why not: not authenticated (401), or not allowed (403)
    /// to do `what`.
    pub fn require(&self, allowed: bool, what: &str) -> Result<(), Error> {
        match (allowed, &self.principal) {
            (true, _) => Ok(()),
            (false, None) => Err(Error::denied(
                ErrorCode::Unauthenticated,
                format!("authentication is needed to {what}: send `Authorization: Bearer TOKEN`"),
            )),
            (false, Some(p)) => Err(Error::denied(ErrorCode::Forbidden, format!("`{}` may not {what}", p.name))),
        }
    }
}

/// The names an ODCS role's approvers field gives: free text, split on commas and semicolons;
/// `na`, `n/a`, `none` and `-` (the standard's examples write `na`) name nobody.
pub fn approver_names(field: Option<&Any>) -> Vec<String> {
    let text = field.and_then(Any::as_str).unwrap_or_default();
    text.split([',', ';'])
        .map(str::trim)
        .filter(|n| !n.is_empty() && !matches!(n.to_ascii_lowercase().as_str(), "na" | "n/a" | "none" | "-"))
        .map(str::to_string)
        .collect()
}

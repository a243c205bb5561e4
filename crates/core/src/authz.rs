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
//!
//! The rules of the access workflow (who sees, decides on or revokes a request) are
//! [`Caller`] methods over what the [`Authorizer`] read from the store about the request's
//! data; the domain services ([`crate::service`]) ask them, whatever the entry point.

use serde_json::Value as Any;

use crate::error::{Error, ErrorCode};
use crate::resource::{Kind, Resource};
use crate::store::grants::{AccessRequest, POLICY_LEVEL};
use crate::store::identity::Principal;
use crate::store::{ApplyOptions, Record, Store};

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
            || (record.kind == Kind::DataContract
                && provided.iter().any(|p| {
                    p.contract_id == record.id
                        && p.domain == record.domain
                        && (record.owners.is_empty() || p.owners.iter().any(|o| record.owners.contains(o)))
                }))
    }

    /// Whether the caller may apply `policy` at all (managing it as a resource is decided
    /// like for every other): a policy whose scope reaches past its own domain governs
    /// others, so only a platform admin may apply it; a domain's own policy, only where the
    /// platform lets domains write policies (`domain_policies`), since a policy is code the
    /// server runs.
    pub fn may_govern(&self, policy: &meshplane_spec::model::policy::Policy, domain_policies: bool) -> bool {
        self.is_platform_admin() || (domain_policies && !policy.reaches_beyond_its_domain())
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

/// The two approver levels of an ODCS role, as its fields are named.
pub const APPROVER_LEVELS: [&str; 2] = ["firstLevelApprovers", "secondLevelApprovers"];

/// One approver level of an ODCS role (`firstLevelApprovers` or `secondLevelApprovers`),
/// resolved against the principals the platform knows. The field is free text: names split
/// on commas and semicolons; `na`, `n/a`, `none` and `-` (the standard's examples write `na`)
/// name nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApproverLevel {
    /// The names that are known users or groups.
    pub known: Vec<String>,
    /// The names nobody answers to.
    pub unknown: Vec<String>,
}

impl ApproverLevel {
    /// Level `field` of `role`, against the names of the known principals.
    pub fn of(role: &Any, field: &str, principals: &[String]) -> ApproverLevel {
        let text = role.get(field).and_then(Any::as_str).unwrap_or_default();
        let (known, unknown) = text
            .split([',', ';'])
            .map(str::trim)
            .filter(|n| !n.is_empty() && !matches!(n.to_ascii_lowercase().as_str(), "na" | "n/a" | "none" | "-"))
            .map(str::to_string)
            .partition(|n| principals.contains(n));
        ApproverLevel { known, unknown }
    }

    /// Who decides at this level: its known approvers; the owning `team` when it names only
    /// unknown ones (a typo never leaves a request without approvers); nobody (`None`) when it
    /// names nobody.
    pub fn deciders(self, team: &[String]) -> Option<Vec<String>> {
        match (self.known.is_empty(), self.unknown.is_empty()) {
            (true, true) => None,
            (true, false) => Some(team.to_vec()),
            (false, _) => Some(self.known),
        }
    }
}

/// The rules that read the store: whether a caller manages a stored resource, and what data
/// an access request is about. Changes (apply, delete) are also authorized by the store
/// itself, in the transaction that writes; these rules serve reads with a manager's rights
/// (running tests, samples in reports) and the access workflow.
pub struct Authorizer<'a> {
    store: &'a Store,
}

impl<'a> Authorizer<'a> {
    pub fn new(store: &'a Store) -> Authorizer<'a> {
        Authorizer { store }
    }

    /// Whether the caller manages a stored resource ([`Caller::manages`], with what the
    /// caller's products provide as the store recorded it).
    pub async fn manages(&self, caller: &Caller, record: &Record) -> Result<bool, Error> {
        if caller.owns(record) {
            return Ok(true);
        }
        Ok(caller.manages(record, &self.store.provided_by(caller).await?))
    }

    /// Whether the caller may apply anything at all: it administers a domain, or owns or
    /// provides something (checked before a body is read).
    pub async fn may_apply_anything(&self, caller: &Caller) -> Result<bool, Error> {
        self.store.may_apply_anything(caller).await
    }

    /// The records an access request is about, as far as they are still stored and of the
    /// request's domain.
    pub async fn data_of(&self, request: &AccessRequest) -> Result<DataOf, Error> {
        let contract = self.of_domain(Kind::DataContract, &request.contract, &request.domain).await?;
        let product = self.of_domain(Kind::DataProduct, &request.product, &request.domain).await?;
        Ok(DataOf { contract, product })
    }

    /// The stored record `kind/name` when it is of `domain`.
    async fn of_domain(&self, kind: Kind, name: &str, domain: &str) -> Result<Option<Record>, Error> {
        match self.store.get(kind, name).await {
            Ok(record) if record.domain == domain => Ok(Some(record)),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The data an access request is for: its contract, and the product it came through (when
/// that is of the contract's domain).
#[derive(Clone, Debug, Default)]
pub struct DataOf {
    pub contract: Option<Record>,
    pub product: Option<Record>,
}

impl Caller {
    /// Whether the caller owns the data a request is for: an admin of its domain, an owner of
    /// its contract, or an owner of the product (of the same domain) it came through.
    pub fn owns_data(&self, request: &AccessRequest, data: &DataOf) -> bool {
        self.administers(&request.domain)
            || data.contract.as_ref().is_some_and(|c| self.owns(c))
            || data.product.as_ref().is_some_and(|p| self.owns(p))
    }

    /// Whether the caller may see a request: it is theirs (or their group's), they decide on
    /// it, or they own the data it is for.
    pub fn may_see_request(&self, request: &AccessRequest, data: &DataOf) -> bool {
        self.is_one_of(std::slice::from_ref(&request.consumer))
            || request.requested_by == self.name()
            || self.is_one_of(&request.approvers.first)
            || self.is_one_of(&request.approvers.second)
            || request.approvers.policy.iter().any(|p| self.is_one_of(&p.names))
            || self.owns_data(request, data)
    }

    /// Whether the caller may end a grant: the data's owners, or its consumer.
    pub fn may_revoke(&self, request: &AccessRequest, data: &DataOf) -> bool {
        self.owns_data(request, data) || request.consumer == self.name()
    }

    /// Whether the caller may ask for access on behalf of `consumer` (a principal, not a
    /// product) to data of `domain`: for itself, for a group it belongs to, or as an admin
    /// of the domain.
    pub fn may_request_for(&self, consumer: &str, domain: &str) -> bool {
        consumer == self.name() || self.is_one_of(&[consumer.to_string()]) || self.administers(domain)
    }

    /// `Ok` when the caller may decide (`approve` or reject) a pending request at its awaited
    /// level: one of that level's approvers or an admin of the data's domain. Nobody approves
    /// a request they made or that gives them access (they may reject it: a withdrawal); at
    /// the second level, whoever approved the first may not approve again.
    pub fn may_decide(&self, request: &AccessRequest, approve: bool) -> Result<(), Error> {
        let level = request.awaited_level();
        let approvers = request.approvers_at(level);
        // Nobody approves two levels of one request.
        let approved_earlier =
            request.decisions.iter().any(|d| d.approved && d.level > 0 && d.level < level && d.by == self.name());
        let own = request.requested_by == self.name() || self.is_one_of(std::slice::from_ref(&request.consumer));
        if approve && own {
            return Err(Error::denied(
                ErrorCode::Forbidden,
                format!(
                    "`{}` may not approve access request {}: it is their own; another approver decides",
                    self.name(),
                    request.id
                ),
            ));
        }
        let withdrawal = !approve && own;
        // The approvers a policy requires stand for the policy: the data's domain admins do not
        // stand in for them (platform admins do).
        let stands_in =
            if level >= POLICY_LEVEL { self.is_platform_admin() } else { self.administers(&request.domain) };
        let approver = self.is_one_of(approvers) || stands_in;
        self.require(
            withdrawal || (approver && !(approve && approved_earlier)),
            &format!(
                "decide on access request {} at level {level} (its approvers: {}; whoever approved an earlier level \
                 cannot approve a later one)",
                request.id,
                approvers.join(", ")
            ),
        )
    }

    /// Whether the caller may create, list or revoke the tokens of `principal`: its own, or
    /// (platform admins) anyone's.
    pub fn may_manage_tokens_of(&self, principal: &str) -> bool {
        principal == self.name() || self.is_platform_admin()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ApproverLevel;

    #[test]
    fn an_approver_level_keeps_the_known_names_and_falls_back_to_the_team_only_when_none_is_known() {
        let principals = vec!["lead".to_string(), "dpo".to_string()];
        let team = vec!["sales-team".to_string()];
        let role = json!({ "first": "lead; ghost , dpo", "typo": "ghost", "nobody": " na , - ", "list": ["lead"] });
        let level = |field: &str| ApproverLevel::of(&role, field, &principals);
        assert_eq!(level("first").known, ["lead", "dpo"]);
        assert_eq!(level("first").unknown, ["ghost"]);
        assert_eq!(level("first").deciders(&team), Some(vec!["lead".to_string(), "dpo".to_string()]));
        assert_eq!(level("typo").deciders(&team), Some(team.clone()), "a typo never leaves the level to nobody");
        assert_eq!(level("nobody").deciders(&team), None, "`na` and `-` name nobody");
        assert_eq!(level("missing").deciders(&team), None);
        assert_eq!(level("list"), ApproverLevel::default(), "the field is text; anything else names nobody");
    }
}

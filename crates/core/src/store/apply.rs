//! Applying documents: all or nothing, with the identity and immutability rules of the
//! standards, optimistic concurrency, and one change record per change.
//!
//! For each resource, against what is stored:
//! - new: created at generation 1, its domain and team recorded as its owner;
//! - same version, same content: unchanged (nothing is written);
//! - same version, new content: allowed only while the stored version is a draft
//!   (`draft` or `proposed`); an active version is immutable;
//! - new version: must not be lower; a contract's changes must not be breaking without a
//!   new major version (which is a different resource), and the refusal names the products
//!   that depend on the contract;
//! - a different domain: refused; ownership changes are a separate, privileged operation;
//! - an id that another domain registered (even if all its resources were deleted since):
//!   refused; a new id is registered to the resource's domain in the same transaction;
//! - a product whose output port names another domain's contract: refused.
//!
//! A caller may state the generation it expects; a stale one is refused. An apply on behalf
//! of a caller ([`Store::apply_as`]) is authorized by the ownership rule
//! ([`crate::authz`]) inside the transaction that writes, from what it reads there.

use serde::Serialize;
use serde_json::{Value as Any, json};
use sqlx::{AnyConnection, Row};

use meshplane_spec::diff::diff;
use meshplane_spec::version::{SemVer, canonical};
use meshplane_spec::{Document, load};

use super::claims::{domain_of, register};
use super::{Durability, RECORD_COLUMNS, Record, Store, now, record};
use crate::authz::{Caller, Provision};
use crate::error::{Error, ErrorCode};
use crate::resource::{Kind, Resource, port_links};

/// Who applies, from where, and whether to keep the result.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub actor: String,
    /// Where the change came from: `cli`, `api`, `git:<repo>@<commit>`, ...
    pub origin: String,
    /// Check and report, then roll back.
    pub dry_run: bool,
    /// Also ask for the deletion of every stored resource of the applied documents' domains
    /// that the set does not contain (the set is the whole desired state of those domains).
    pub prune: bool,
}

impl ApplyOptions {
    /// The reconcilers' own changes: status transitions, grants that expired.
    pub fn reconciler() -> ApplyOptions {
        ApplyOptions { actor: "meshplane".into(), origin: "reconciler".into(), dry_run: false, prune: false }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// Deletion asked for (by `prune`); the record goes once every block has cleaned up.
    Deleting,
}

/// What happened to one applied resource.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub generation: i64,
    pub outcome: Outcome,
    /// What `warn` policies found about the change (it went through).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::governance::Finding>,
}

/// What a change record is about.
pub(super) struct Subject<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub domain: &'a str,
}

impl<'a> From<&'a Resource> for Subject<'a> {
    fn from(r: &'a Resource) -> Self {
        Subject { kind: r.kind.as_str(), name: &r.name, version: &r.version, domain: &r.domain }
    }
}

fn document(spec: &str) -> Option<Document> {
    load(spec).documents.pop()?.document
}

/// What the caller's products provide, read once per transaction when first needed.
#[derive(Default)]
struct Provided(Option<Vec<Provision>>);

impl Provided {
    async fn of(&mut self, tx: &mut AnyConnection, caller: &Caller) -> Result<&[Provision], Error> {
        if self.0.is_none() {
            self.0 = Some(provided_in(tx, caller).await?);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
}

/// The contracts the caller's products provide, with each product's domain and owners: the
/// output ports of every product the caller is a recorded owner of.
pub(super) async fn provided_in(tx: &mut AnyConnection, caller: &Caller) -> Result<Vec<Provision>, Error> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE kind = $1");
    let rows = sqlx::query(&sql).bind(Kind::DataProduct.as_str()).fetch_all(&mut *tx).await?;
    let mut out = Vec::new();
    for row in &rows {
        let product = record(row)?;
        if caller.is_one_of(&product.owners) {
            let links = port_links(&product.spec).into_iter().filter(|l| !l.input);
            out.extend(links.map(|l| Provision {
                contract_id: l.contract_id,
                domain: product.domain.clone(),
                owners: product.owners.clone(),
            }));
        }
    }
    Ok(out)
}

fn claimed(kind: Kind, id: &str, owner: &str, wanted: &str) -> Error {
    let what = if kind == Kind::DataContract { "contract id" } else { "product id" };
    Error::conflict(
        ErrorCode::IdClaimed,
        format!(
            "{what} `{id}` belongs to domain `{owner}`, which registered it; domain `{wanted}` cannot use it \
             (an id stays with its domain after deletion, until a platform admin releases it)"
        ),
    )
}

impl Store {
    /// Applies every resource in one transaction: either all are stored, or none is and the
    /// first refusal is returned. `expected[i]` is the generation the caller expects for
    /// `resources[i]` (0: it must not exist yet). No authorization: for direct access to the
    /// store (bootstrap, tests); the API applies with [`Store::apply_as`].
    pub async fn apply(
        &self,
        resources: &[Resource],
        expected: &[Option<i64>],
        options: &ApplyOptions,
    ) -> Result<Vec<Applied>, Error> {
        self.apply_checked(resources, expected, options, None).await
    }

    /// Applies on behalf of `caller`, as [`Store::apply`] does, refusing (before anything is
    /// written) unless the ownership rule lets the caller create or change every resource,
    /// and, when pruning, administer every domain the resources belong to.
    pub async fn apply_as(
        &self,
        caller: &Caller,
        resources: &[Resource],
        expected: &[Option<i64>],
        options: &ApplyOptions,
    ) -> Result<Vec<Applied>, Error> {
        self.apply_checked(resources, expected, options, Some(caller)).await
    }

    async fn apply_checked(
        &self,
        resources: &[Resource],
        expected: &[Option<i64>],
        options: &ApplyOptions,
        caller: Option<&Caller>,
    ) -> Result<Vec<Applied>, Error> {
        if let Some(caller) = caller.filter(|_| options.prune) {
            for r in resources {
                caller.require(caller.administers(&r.domain), &format!("prune domain `{}`", r.domain))?;
            }
        }
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let mut applied = Vec::new();
        let mut provided = Provided::default();
        for (i, resource) in resources.iter().enumerate() {
            let expect = expected.get(i).copied().flatten();
            applied.push(self.apply_one(&mut tx, resource, expect, options, caller, &mut provided).await?);
        }
        if options.prune {
            applied.extend(self.prune(&mut tx, resources, options).await?);
        }
        if options.dry_run {
            tx.rollback().await?;
        } else {
            self.commit(tx).await?;
        }
        Ok(applied)
    }

    /// Refuses a product whose output port names a contract another domain registered, or
    /// a stored contract of its domain the caller does not manage: through a port, a
    /// product's owners come to manage the contract, so a port is only added by someone who
    /// manages it already (its owners, its domain's admins, the owners of a product that
    /// provides it). A contract nobody stored yet may be named: it is created under the port.
    async fn check_output_ports(
        &self,
        tx: &mut AnyConnection,
        r: &Resource,
        caller: Option<&Caller>,
        provided: &mut Provided,
    ) -> Result<(), Error> {
        if r.kind != Kind::DataProduct {
            return Ok(());
        }
        for link in port_links(&r.spec).into_iter().filter(|l| !l.input) {
            if let Some(owner) = domain_of(tx, Kind::DataContract, &link.contract_id).await?.filter(|d| *d != r.domain)
            {
                return Err(Error::conflict(
                    ErrorCode::CrossDomainPort,
                    format!(
                        "product `{}` (domain `{}`): output port `{}` names contract `{}` of domain `{owner}`; a product \
                         provides only its own domain's contracts (read another domain's through an input port and an \
                         access request)",
                        r.id, r.domain, link.port, link.contract_id
                    ),
                ));
            }
            let Some(caller) = caller else { continue };
            let majors = self.majors(tx, &link.contract_id).await?;
            if majors.is_empty() || caller.administers(&r.domain) {
                continue;
            }
            let provided = provided.of(tx, caller).await?;
            if !majors.iter().any(|m| caller.manages(m, provided)) {
                let mut owners = majors.iter().flat_map(|m| m.owners.iter().map(String::as_str)).collect::<Vec<_>>();
                owners.sort_unstable();
                owners.dedup();
                return Err(Error::denied(
                    ErrorCode::Forbidden,
                    format!(
                        "`{}` may not make product `{}` provide contract `{}` (output port `{}`): the contract is \
                         managed by its owners ({}) and the admins of domain `{}`; one of them adds the port",
                        caller.name(),
                        r.id,
                        link.contract_id,
                        link.port,
                        if owners.is_empty() { "none recorded".to_string() } else { owners.join(", ") },
                        r.domain
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn apply_one(
        &self,
        tx: &mut AnyConnection,
        r: &Resource,
        expected: Option<i64>,
        options: &ApplyOptions,
        caller: Option<&Caller>,
        provided: &mut Provided,
    ) -> Result<Applied, Error> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND name = $2");
        let row = sqlx::query(&sql).bind(r.kind.as_str()).bind(&r.name).fetch_optional(&mut *tx).await?;
        let stored = row.as_ref().map(record).transpose()?;
        let what = || format!("apply {} `{}` (domain `{}`)", r.kind.as_str(), r.name, r.domain);
        match (&stored, caller) {
            (Some(stored), Some(caller)) => {
                let allowed = caller.owns(stored) || caller.manages(stored, provided.of(tx, caller).await?);
                caller.require(allowed, &what())?;
            }
            (None, caller) => {
                if let Some(owner) = domain_of(tx, r.kind, &r.id).await?.filter(|d| *d != r.domain) {
                    return Err(claimed(r.kind, &r.id, &owner, &r.domain));
                }
                if let Some(caller) = caller {
                    let majors = if r.kind == Kind::DataContract { self.majors(tx, &r.id).await? } else { Vec::new() };
                    let allowed =
                        caller.administers(&r.domain) || caller.may_create(r, &majors, provided.of(tx, caller).await?);
                    caller.require(allowed, &what())?;
                }
            }
            (Some(_), None) => {}
        }
        let current = stored.as_ref().map_or(0, |s| s.generation);
        if let Some(want) = expected
            && want != current
        {
            return Err(Error::conflict(
                ErrorCode::StaleGeneration,
                format!(
                    "{} `{}` is at generation {current}, not {want}: it changed since you read it",
                    r.kind.as_str(),
                    r.name
                ),
            ));
        }
        let spec = r.spec.to_string();
        let at = now();
        let Some(stored) = stored else {
            self.check_output_ports(tx, r, caller, provided).await?;
            sqlx::query(
                "INSERT INTO resources (kind, name, uid, id, version, status, domain, team, tags, generation, spec, created_at, updated_at, owners) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $11, $12)",
            )
            .bind(r.kind.as_str())
            .bind(&r.name)
            .bind(super::identity::random_hex(16))
            .bind(&r.id)
            .bind(&r.version)
            .bind(&r.status)
            .bind(&r.domain)
            .bind(&r.team)
            .bind(serde_json::to_string(&r.tags).unwrap_or_default())
            .bind(&spec)
            .bind(&at)
            .bind(serde_json::to_string(&crate::resource::owners(&r.spec)).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            register(tx, r.kind.as_str(), &r.id, &r.domain, &at).await?;
            self.record_change(tx, &r.into(), "created", 1, None, Some(&spec), options, &at, None).await?;
            return Ok(Applied {
                kind: r.kind,
                name: r.name.clone(),
                version: r.version.clone(),
                generation: 1,
                outcome: Outcome::Created,
                warnings: Vec::new(),
            });
        };
        stored.managed_by_api()?;
        if let Some(since) = &stored.deletion_requested {
            return Err(Error::conflict(
                ErrorCode::BeingDeleted,
                format!(
                    "{} `{}` is being deleted (asked for at {since}); apply it again once it is gone",
                    r.kind.as_str(),
                    r.name
                ),
            ));
        }
        if stored.domain != r.domain {
            return Err(Error::conflict(
                ErrorCode::OwnerChange,
                format!(
                    "{} `{}` belongs to domain `{}`; an apply cannot move it to `{}` (changing the owner is a separate, privileged operation)",
                    r.kind.as_str(),
                    r.name,
                    stored.domain,
                    r.domain
                ),
            ));
        }
        let same_version = canonical(&stored.version) == canonical(&r.version);
        if same_version {
            if stored.spec == r.spec {
                return Ok(Applied {
                    kind: r.kind,
                    name: r.name.clone(),
                    version: r.version.clone(),
                    generation: stored.generation,
                    outcome: Outcome::Unchanged,
                    warnings: Vec::new(),
                });
            }
            if !Resource::is_draft(&stored.status) {
                return Err(Error::conflict(
                    ErrorCode::ImmutableVersion,
                    format!(
                        "{} `{}` version {} is {}, so it cannot change; publish the change as a new version",
                        r.kind.as_str(),
                        r.name,
                        stored.version,
                        stored.status
                    ),
                ));
            }
        } else {
            self.check_new_version(tx, r, &stored).await?;
        }
        self.check_output_ports(tx, r, caller, provided).await?;
        let before = stored.spec.to_string();
        let generation = stored.generation + 1;
        let updated = sqlx::query(
            "UPDATE resources SET version = $1, status = $2, tags = $3, generation = $4, spec = $5, updated_at = $6 \
             WHERE kind = $7 AND name = $8 AND generation = $9",
        )
        .bind(&r.version)
        .bind(&r.status)
        .bind(serde_json::to_string(&r.tags).unwrap_or_default())
        .bind(generation)
        .bind(&spec)
        .bind(&at)
        .bind(r.kind.as_str())
        .bind(&r.name)
        .bind(stored.generation)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(Error::conflict(
                ErrorCode::ConcurrentChange,
                "another change to the same resource was applied first; retry",
            ));
        }
        self.record_change(tx, &r.into(), "updated", generation, Some(&before), Some(&spec), options, &at, None)
            .await?;
        Ok(Applied {
            kind: r.kind,
            name: r.name.clone(),
            version: r.version.clone(),
            generation,
            outcome: Outcome::Updated,
            warnings: Vec::new(),
        })
    }

    /// The stored majors of a contract id.
    async fn majors(&self, tx: &mut AnyConnection, id: &str) -> Result<Vec<Record>, Error> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND id = $2");
        let rows = sqlx::query(&sql).bind(Kind::DataContract.as_str()).bind(id).fetch_all(&mut *tx).await?;
        rows.iter().map(record).collect()
    }

    /// A new version must not go back, and a contract's must not break its consumers
    /// without a new major version.
    async fn check_new_version(&self, tx: &mut AnyConnection, r: &Resource, stored: &Record) -> Result<(), Error> {
        if let (Some(old), Some(new)) = (SemVer::parse(&stored.version), SemVer::parse(&r.version))
            && new < old
        {
            return Err(Error::conflict(
                ErrorCode::VersionDowngrade,
                format!("{} `{}` is at version {}; {} is older", r.kind.as_str(), r.name, stored.version, r.version),
            ));
        }
        let (Some(Document::Contract(old)), Document::Contract(new)) =
            (document(&stored.spec.to_string()), &r.document)
        else {
            return Ok(());
        };
        let report = diff(&old, new);
        let Some(problem) = report.problem.clone() else { return Ok(()) };
        let dependents = self.dependents(tx, &r.id).await?;
        let breaking: Vec<_> = report.breaking().collect();
        Err(Error::Conflict {
            code: ErrorCode::BreakingChange,
            message: format!("contract `{}` {} → {}: {problem}", r.id, stored.version, r.version),
            details: json!({ "changes": breaking, "dependents": dependents }),
        })
    }

    /// The products that provide or consume a contract, by their ports' `contractId`.
    async fn dependents(&self, tx: &mut AnyConnection, contract_id: &str) -> Result<Vec<Any>, Error> {
        let rows = sqlx::query("SELECT name, domain, spec FROM resources WHERE kind = $1 ORDER BY name")
            .bind(Kind::DataProduct.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let (name, domain, spec): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let links = port_links(&serde_json::from_str(&spec).unwrap_or(Any::Null));
            let ports = |input: bool| -> Vec<&str> {
                links
                    .iter()
                    .filter(|l| l.input == input && l.contract_id == contract_id)
                    .map(|l| l.port.as_str())
                    .collect()
            };
            let (provides, consumes) = (ports(false), ports(true));
            if !provides.is_empty() || !consumes.is_empty() {
                out.push(json!({ "product": name, "domain": domain, "outputPorts": provides, "inputPorts": consumes }));
            }
        }
        Ok(out)
    }

    /// Writes the change record and its CloudEvents envelope, with `note` added to the
    /// event's data (what a deletion left in place, ...).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_change(
        &self,
        tx: &mut AnyConnection,
        r: &Subject<'_>,
        action: &str,
        generation: i64,
        before: Option<&str>,
        after: Option<&str>,
        options: &ApplyOptions,
        at: &str,
        note: Option<(&str, Any)>,
    ) -> Result<i64, Error> {
        // The envelope's `id` and `data.seq` are the change number, which the row gets on
        // insert: they are added where change records are read (one statement per record).
        let mut event = json!({
            "specversion": "1.0",
            "source": "/meshplane/registry",
            "type": format!("io.meshplane.{}.{action}", r.kind.to_ascii_lowercase()),
            "subject": format!("{}/{}", r.kind, r.name),
            "time": at,
            "datacontenttype": "application/json",
            "data": { "kind": r.kind, "name": r.name, "version": r.version, "generation": generation,
                      "domain": r.domain, "actor": options.actor, "origin": options.origin },
        });
        if let Some((key, value)) = note {
            event["data"][key] = value;
        }
        self.mark_writing(tx).await?;
        let row = sqlx::query(
            "INSERT INTO changes (at, actor, origin, kind, name, action, generation, version, before, after, event) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
        )
        .bind(at)
        .bind(&options.actor)
        .bind(&options.origin)
        .bind(r.kind)
        .bind(r.name)
        .bind(action)
        .bind(generation)
        .bind(r.version)
        .bind(before)
        .bind(after)
        .bind(event.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let seq: i64 = row.try_get(0)?;
        Ok(seq)
    }
}

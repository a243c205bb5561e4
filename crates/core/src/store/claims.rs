//! Claims: which domain each contract or product id belongs to. An id is claimed by the
//! domain of its first resource, in the transaction that creates it, and stays claimed when
//! every resource of it is deleted, so no other domain can take the id over (and with it the
//! products that name it, or what its blocks left in place). Only a platform admin releases a
//! claim, once nothing of the id is stored.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::apply::{Subject, provided_in};
use super::{ApplyOptions, Durability, Store, now};
use crate::authz::{Caller, Provision};
use crate::error::{Error, ErrorCode};
use crate::resource::Kind;

/// One id and the domain it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub kind: String,
    pub id: String,
    pub domain: String,
    pub claimed_at: String,
}

/// One page of claims, by kind and id.
#[derive(Clone, Debug, Serialize)]
pub struct Claims {
    pub items: Vec<Claim>,
    /// Where the next page starts (`kind/id`), when there is one.
    pub next: Option<String>,
}

fn claim(row: &sqlx::any::AnyRow) -> Result<Claim, Error> {
    Ok(Claim {
        kind: row.try_get("kind")?,
        id: row.try_get("id")?,
        domain: row.try_get("domain")?,
        claimed_at: row.try_get("claimed_at")?,
    })
}

impl Store {
    /// Claims after `after` (`kind/id`), of `domain` when given, at most `limit` (1 to 1000).
    pub async fn claims(&self, domain: Option<&str>, after: Option<(&str, &str)>, limit: i64) -> Result<Claims, Error> {
        let limit = limit.clamp(1, 1000);
        let (kind, id) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT kind, id, domain, claimed_at FROM claims WHERE (kind > $1 OR (kind = $1 AND id > $2)) \
             AND ($3 = '' OR domain = $3) ORDER BY kind, id LIMIT $4",
        )
        .bind(kind)
        .bind(id)
        .bind(domain.unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(&self.reads)
        .await?;
        let mut items = rows.iter().map(claim).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|c| format!("{}/{}", c.kind, c.id))
        } else {
            None
        };
        Ok(Claims { items, next })
    }

    /// Releases the claim on an id, so any domain may register it again; refused while a
    /// resource of the id is stored (delete them first). Recorded in the audit log.
    pub async fn release_claim(&self, kind: Kind, id: &str, who: &ApplyOptions) -> Result<Claim, Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let row = sqlx::query("SELECT kind, id, domain, claimed_at FROM claims WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let found = row.as_ref().map(claim).transpose()?;
        let found = found.ok_or_else(|| Error::NotFound(format!("claim on {} id `{id}`", kind.as_str())))?;
        let stored: Vec<String> = sqlx::query("SELECT name FROM resources WHERE kind = $1 AND id = $2 ORDER BY name")
            .bind(kind.as_str())
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if !stored.is_empty() {
            return Err(Error::conflict(
                ErrorCode::WrongState,
                format!("{} id `{id}` is still in use by {}: delete them first", kind.as_str(), stored.join(", ")),
            ));
        }
        sqlx::query("DELETE FROM claims WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let name = format!("{}/{id}", kind.as_str());
        let before = serde_json::to_string(&found).unwrap_or_default();
        let subject = Subject { kind: "Claim", name: &name, version: "", domain: &found.domain };
        self.record_change(&mut tx, &subject, "released", 0, Some(&before), None, who, &now(), None).await?;
        self.commit(tx).await?;
        Ok(found)
    }

    /// The contracts `caller`'s products provide.
    pub async fn provided_by(&self, caller: &Caller) -> Result<Vec<Provision>, Error> {
        let mut conn = self.reads.acquire().await?;
        provided_in(&mut conn, caller).await
    }

    /// Whether `caller` could change anything at all: a platform or domain admin, or a
    /// recorded owner of some resource. Asked before reading a large body, so that a caller
    /// who may apply nothing costs the server no parsing.
    pub async fn may_apply_anything(&self, caller: &Caller) -> Result<bool, Error> {
        let Some(principal) = &caller.principal else { return Ok(false) };
        if principal.platform_admin || !principal.domains.is_empty() {
            return Ok(true);
        }
        for name in caller.names() {
            // Owners are stored as a JSON array of names: look for the quoted name.
            let quoted = serde_json::to_string(name).unwrap_or_default();
            let pattern = format!("%{}%", quoted.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            let found = sqlx::query("SELECT 1 FROM resources WHERE owners LIKE $1 ESCAPE '\\' LIMIT 1")
                .bind(pattern)
                .fetch_optional(&self.reads)
                .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Registers `kind/id` to `domain` (at `at`), unless it is registered already.
pub(super) async fn register(
    tx: &mut AnyConnection,
    kind: &str,
    id: &str,
    domain: &str,
    at: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO claims (kind, id, domain, claimed_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, id) DO NOTHING",
    )
    .bind(kind)
    .bind(id)
    .bind(domain)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Reads one claim in a transaction (used by apply).
pub(super) async fn domain_of(tx: &mut AnyConnection, kind: Kind, id: &str) -> Result<Option<String>, Error> {
    let row = sqlx::query("SELECT domain FROM claims WHERE kind = $1 AND id = $2")
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

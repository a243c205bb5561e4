//! Orphans: what blocks left in place when a resource went (data, or what a deletion policy
//! keeps), recorded in the transaction that removes the resource, listed until purged.

use serde::Serialize;
use sqlx::Row;

use super::apply::Subject;
use super::{ApplyOptions, Durability, Store, now};
use crate::block::Leftover;
use crate::error::Error;

/// One orphan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub id: i64,
    pub block: String,
    pub place: String,
    pub note: String,
    pub purgeable: bool,
    /// The resource it was provisioned for.
    pub kind: String,
    pub name: String,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
}

impl Store {
    /// Records what `block` left in place for `kind/name`, inside the removing transaction.
    pub(super) async fn record_orphans(
        &self,
        tx: &mut sqlx::AnyConnection,
        kind: &str,
        name: &str,
        left: &[(String, Leftover)],
    ) -> Result<(), Error> {
        for (block, leftover) in left {
            // A place already listed (and not purged) is listed once.
            let listed = sqlx::query("SELECT 1 FROM orphans WHERE block = $1 AND place = $2 AND purged_at IS NULL")
                .bind(block)
                .bind(&leftover.place)
                .fetch_optional(&mut *tx)
                .await?;
            if listed.is_some() {
                continue;
            }
            sqlx::query(
                "INSERT INTO orphans (block, place, note, purgeable, kind, name, since) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(block)
            .bind(&leftover.place)
            .bind(&leftover.note)
            .bind(i64::from(leftover.purgeable))
            .bind(kind)
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Records what `left` in place for `kind/name` while the resource stays (a port moved
    /// to another block).
    pub async fn add_orphans(&self, kind: &str, name: &str, left: &[(String, Leftover)]) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.record_orphans(&mut tx, kind, name, left).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// The orphans not purged yet (with `purged`, also those purged), oldest first.
    pub async fn orphans(&self, purged: bool) -> Result<Vec<Orphan>, Error> {
        self.orphans_page(purged, 0, i64::MAX).await
    }

    /// The orphans after id `after`, oldest first, at most `limit`.
    pub async fn orphans_page(&self, purged: bool, after: i64, limit: i64) -> Result<Vec<Orphan>, Error> {
        let filter = if purged { "" } else { " AND purged_at IS NULL" };
        let rows = sqlx::query(&format!("SELECT * FROM orphans WHERE id > $1{filter} ORDER BY id LIMIT $2"))
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Orphan {
                    id: r.try_get("id")?,
                    block: r.try_get("block")?,
                    place: r.try_get("place")?,
                    note: r.try_get("note")?,
                    purgeable: r.try_get::<i64, _>("purgeable")? != 0,
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    since: r.try_get("since")?,
                    purged_at: r.try_get("purged_at")?,
                })
            })
            .collect()
    }

    /// Marks an orphan purged (its block removed it).
    /// Records that orphan `id` was purged, data and all, with a change record (kind `Orphan`)
    /// for the audit log.
    pub async fn mark_purged(&self, orphan: &Orphan, who: &ApplyOptions) -> Result<(), Error> {
        let at = now();
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let updated = sqlx::query("UPDATE orphans SET purged_at = $1 WHERE id = $2 AND purged_at IS NULL")
            .bind(&at)
            .bind(orphan.id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 1 {
            let before = serde_json::to_string(orphan).unwrap_or_default();
            let id = orphan.id.to_string();
            let subject = Subject { kind: "Orphan", name: &id, version: "", domain: "" };
            self.record_change(&mut tx, &subject, "purged", 0, Some(&before), None, who, &at, None).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}

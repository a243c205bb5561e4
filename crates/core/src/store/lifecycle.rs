//! The way out of the registry, finalizer style (as Kubernetes does it):
//! 1. deletion is asked for (`delete`, or `apply --prune`): the record is marked, with a
//!    change record, and cannot change any more;
//! 2. the reconciler asks every block named in the record's finalizers to clean up, and takes
//!    each finalizer off once its block is done (a block adds its finalizer before it
//!    provisions anything, so nothing provisioned is ever forgotten);
//! 3. with no finalizer left, the record goes, with a last change record.
//!
//! Steps 2 and 3 write only under the resource's lease. A record that nothing provisioned has
//! no finalizer and goes at the first reconcile.

use std::collections::BTreeSet;

use sqlx::AnyConnection;

use super::apply::{Subject, provided_in};
use super::{Applied, ApplyOptions, Backend, Durability, Outcome, Record, Store, now};
use crate::authz::Caller;
use crate::block::Leftover;
use crate::error::Error;
use crate::resource::{Kind, Resource};

impl Store {
    /// Asks for the deletion of a resource, and returns it as it is now. Asking again changes
    /// nothing; the record goes once its blocks have cleaned up. No authorization: for direct
    /// access to the store; the API deletes with [`Store::delete_as`].
    pub async fn delete(&self, kind: Kind, name: &str, options: &ApplyOptions) -> Result<Record, Error> {
        self.delete_checked(kind, name, options, None).await
    }

    /// Asks for the deletion of a resource on behalf of `caller`, who must manage it (decided
    /// in the transaction that marks it).
    pub async fn delete_as(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        options: &ApplyOptions,
    ) -> Result<Record, Error> {
        self.delete_checked(kind, name, options, Some(caller)).await
    }

    async fn delete_checked(
        &self,
        kind: Kind,
        name: &str,
        options: &ApplyOptions,
        caller: Option<&Caller>,
    ) -> Result<Record, Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let record = self.get_in(&mut tx, kind, name).await?;
        record.managed_by_api()?;
        if let Some(caller) = caller {
            let allowed = caller.owns(&record) || caller.manages(&record, &provided_in(&mut tx, caller).await?);
            caller.require(allowed, &format!("delete {} `{name}`", kind.as_str()))?;
        }
        if record.deletion_requested.is_none() {
            self.mark_deleting(&mut tx, &record, options).await?;
        }
        let record = self.get_in(&mut tx, kind, name).await?;
        if options.dry_run {
            tx.rollback().await?;
        } else {
            self.commit(tx).await?;
        }
        Ok(record)
    }

    /// Within an apply: asks for the deletion of every resource of the applied domains that
    /// the applied set does not contain (of those the API manages: another source's are
    /// that source's to prune).
    pub(super) async fn prune(
        &self,
        tx: &mut AnyConnection,
        applied: &[Resource],
        options: &ApplyOptions,
    ) -> Result<Vec<Applied>, Error> {
        let keep: BTreeSet<(Kind, &str)> = applied.iter().map(|r| (r.kind, r.name.as_str())).collect();
        let domains: BTreeSet<&str> = applied.iter().map(|r| r.domain.as_str()).collect();
        let mut pruned = Vec::new();
        for domain in domains {
            let sql = format!(
                "SELECT {} FROM resources WHERE domain = $1 AND deleting IS NULL AND manager = 'api' ORDER BY kind, name",
                super::RECORD_COLUMNS
            );
            let rows = sqlx::query(&sql).bind(domain).fetch_all(&mut *tx).await?;
            for row in &rows {
                let record = super::record(row)?;
                if keep.contains(&(record.kind, record.name.as_str())) {
                    continue;
                }
                self.mark_deleting(tx, &record, options).await?;
                pruned.push(Applied {
                    kind: record.kind,
                    name: record.name,
                    version: record.version,
                    generation: record.generation,
                    outcome: Outcome::Deleting,
                    warnings: Vec::new(),
                });
            }
        }
        Ok(pruned)
    }

    async fn mark_deleting(
        &self,
        tx: &mut AnyConnection,
        record: &Record,
        options: &ApplyOptions,
    ) -> Result<(), Error> {
        let at = now();
        sqlx::query("UPDATE resources SET deleting = $1 WHERE kind = $2 AND name = $3")
            .bind(&at)
            .bind(record.kind.as_str())
            .bind(&record.name)
            .execute(&mut *tx)
            .await?;
        let spec = record.spec.to_string();
        self.record_change(
            tx,
            &subject(record),
            "deleting",
            record.generation,
            Some(&spec),
            Some(&spec),
            options,
            &at,
            None,
        )
        .await?;
        Ok(())
    }

    /// Adds `finalizer` to a resource's record (no change when it is there), under its lease.
    pub async fn add_finalizer(
        &self,
        kind: Kind,
        name: &str,
        finalizer: &str,
        fence: (&str, i64),
    ) -> Result<(), Error> {
        self.edit_finalizers(kind, name, fence, |set| set.insert(finalizer.to_string())).await
    }

    /// Takes `finalizer` off a resource's record (no change when it is not there), under its lease.
    pub async fn remove_finalizer(
        &self,
        kind: Kind,
        name: &str,
        finalizer: &str,
        fence: (&str, i64),
    ) -> Result<(), Error> {
        self.edit_finalizers(kind, name, fence, |set| set.remove(finalizer)).await
    }

    async fn edit_finalizers(
        &self,
        kind: Kind,
        name: &str,
        fence: (&str, i64),
        edit: impl FnOnce(&mut BTreeSet<String>) -> bool,
    ) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.check_fence(&mut tx, kind.as_str(), name, fence).await?;
        let record = self.get_in(&mut tx, kind, name).await?;
        let mut set: BTreeSet<String> = record.finalizers.into_iter().collect();
        if edit(&mut set) {
            let list: Vec<&String> = set.iter().collect();
            sqlx::query("UPDATE resources SET finalizers = $1 WHERE kind = $2 AND name = $3")
                .bind(serde_json::to_string(&list).unwrap_or_default())
                .bind(kind.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Removes a record whose deletion was asked for and whose finalizers are all done, with
    /// its status and a last change record (naming what the blocks `left` in place, which become
    /// orphans), under its lease. Returns whether it went.
    pub async fn remove(
        &self,
        kind: Kind,
        name: &str,
        fence: (&str, i64),
        left: &[(String, Leftover)],
    ) -> Result<bool, Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        self.check_fence(&mut tx, kind.as_str(), name, fence).await?;
        let record = match self.get_in(&mut tx, kind, name).await {
            Err(Error::NotFound(_)) => return Ok(false),
            other => other?,
        };
        if record.deletion_requested.is_none() || !record.finalizers.is_empty() {
            return Ok(false);
        }
        for table in ["resources", "statuses", "check_states"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE kind = $1 AND name = $2"))
                .bind(kind.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let spec = record.spec.to_string();
        // The reconciler removes the record, on behalf of whoever asked (the `deleting` record).
        let by = ApplyOptions { actor: "meshplane".into(), origin: "reconciler".into(), dry_run: false, prune: false };
        self.record_orphans(&mut tx, kind.as_str(), name, left).await?;
        let notes: Vec<String> = left.iter().map(|(block, l)| format!("{block}: {}", l.note)).collect();
        let note = (!left.is_empty()).then(|| ("leftInPlace", serde_json::json!(notes)));
        let subject = subject(&record);
        self.record_change(&mut tx, &subject, "deleted", record.generation, Some(&spec), None, &by, &now(), note)
            .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// One writer of documents, claims, grants, principals, tokens and orphans at a time on
    /// PostgreSQL: what such a write reads and checks in its transaction (a claim, a state, a
    /// generation) does not change under it before it commits. (Change numbers need no lock
    /// to be read in order: see the feed's horizon; status writes do not take this one.)
    pub(super) async fn lock_writes(&self, tx: &mut AnyConnection) -> Result<(), Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7074611)").execute(&mut *tx).await?;
        }
        Ok(())
    }

    async fn get_in(&self, tx: &mut AnyConnection, kind: Kind, name: &str) -> Result<Record, Error> {
        let sql = format!("SELECT {} FROM resources WHERE kind = $1 AND name = $2", super::RECORD_COLUMNS);
        let row = sqlx::query(&sql).bind(kind.as_str()).bind(name).fetch_optional(&mut *tx).await?;
        let found = row.as_ref().map(super::record).transpose()?;
        found.ok_or_else(|| Error::NotFound(format!("{} `{name}`", kind.as_str())))
    }
}

fn subject(record: &Record) -> Subject<'_> {
    Subject { kind: record.kind.as_str(), name: &record.name, version: &record.version, domain: &record.domain }
}

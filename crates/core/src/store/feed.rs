//! How far a reader of the change feed may read without stepping over a change that commits
//! later under a lower number.
//!
//! A change record takes its number when it is written and becomes visible when its
//! transaction commits. On PostgreSQL writers commit side by side, so number 41 may be visible
//! while 40 is still in flight (or never will be: its transaction rolled back); a reader that
//! went on from 41 would miss 40 for good. So every transaction that writes a change record
//! first takes a shared advisory lock, [`WRITING`], and holds it until it ends (commit or
//! rollback); the mark costs the writers nothing among themselves. A reader reads the last
//! number handed out (L), then the transactions that hold the mark (W): a number up to L was
//! taken by a transaction that has ended or is in W (it took the mark before its number, and
//! its number before L was read). Once none of W holds the mark, every number up to L is
//! settled: committed, or never to be.
//!
//! Readers never wait for that: the store keeps the last capture (L, W) and settles it at the
//! next read, which may read up to the highest settled L — and further along numbers that
//! follow the reader's position without a gap, since no number in flight hides in such a run.
//!
//! A status transition commits only once it is on disk, so a reader never sees a record that a
//! crash could take back (and whose number the database could then hand out again).
//!
//! On SQLite one connection writes, and its transactions commit in number order: whatever is
//! visible is settled.

use sqlx::Row;

use super::{Backend, Change, Store};
use crate::error::Error;

/// The key of the shared advisory lock every writer of change records holds on PostgreSQL.
pub(super) const WRITING: i64 = 7_074_613;

/// What the advisory lock [`WRITING`] is in `pg_locks`, for this database.
const HOLDERS: &str = "FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = 7074613 \
     AND objsubid = 1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// The feed's horizon as far as this store handle knows it.
#[derive(Debug, Default)]
pub(super) struct Horizon {
    /// Every change number up to this one is settled.
    settled: i64,
    /// The last number handed out when the capture was taken, and the transactions (virtual
    /// ids, comma-separated) that held the mark then.
    pending: Option<(i64, String)>,
}

impl Store {
    /// Marks the transaction `tx` as a writer of change records until it ends (PostgreSQL).
    pub(super) async fn mark_writing(&self, tx: &mut sqlx::AnyConnection) -> Result<(), Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(WRITING).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// How far a reader may read (see [`settled`]); asked before the query of the rows, so
    /// that everything settled by then is among what the query finds.
    pub(super) async fn readable(&self) -> Result<i64, Error> {
        match self.backend {
            Backend::Postgres => self.horizon().await,
            Backend::Sqlite => Ok(i64::MAX),
        }
    }

    /// Settles the last capture if its writers have ended, takes a new one, and returns the
    /// highest number up to which everything is settled.
    async fn horizon(&self) -> Result<i64, Error> {
        let mut horizon = self.horizon.lock().await;
        if let Some((last, writers)) = &horizon.pending {
            let still = sqlx::query(&format!(
                "SELECT count(*) {HOLDERS} AND virtualtransaction = ANY(string_to_array($1, ','))"
            ))
            .bind(writers.as_str())
            .fetch_one(&self.reads)
            .await?;
            if still.try_get::<i64, _>(0)? == 0 {
                horizon.settled = horizon.settled.max(*last);
                horizon.pending = None;
            }
        }
        if horizon.pending.is_none() {
            // The holders are read in a subquery of the row that holds the last number: after it.
            let row = sqlx::query(&format!(
                "SELECT last.value, (SELECT coalesce(string_agg(virtualtransaction, ','), '') {HOLDERS} \
                 AND last.value IS NOT NULL) FROM (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value \
                 FROM changes_seq_seq) AS last"
            ))
            .fetch_one(&self.reads)
            .await?;
            let (last, writers): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            if writers.is_empty() {
                horizon.settled = horizon.settled.max(last);
            } else {
                horizon.pending = Some((last, writers));
            }
        }
        Ok(horizon.settled)
    }
}

/// Of `rows` (change records after `after`, in number order, found by a query made after
/// [`Store::readable`] answered `horizon`), those a reader at `after` may take: none that a
/// change still in flight may precede.
pub(super) fn settled(after: i64, horizon: i64, rows: Vec<Change>) -> Vec<Change> {
    let mut next = after + 1;
    let readable = |c: &Change| {
        let take = c.seq <= horizon || c.seq == next;
        next = c.seq + 1;
        take
    };
    rows.into_iter().take_while(readable).collect()
}

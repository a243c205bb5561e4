//! How far a reader of the change feed may read without stepping over a change that commits
//! later under a lower number.
//!
//! A change record takes its number when it is written and becomes visible when its
//! transaction commits. On PostgreSQL writers commit side by side, so number 41 may be visible
//! while 40 is still in flight (or never will be: its transaction rolled back); a reader that
//! went on from 41 would miss 40 for good. So every transaction that writes a change record
//! first takes a shared advisory lock, [`WRITING`], and holds it until it ends (commit or
//! rollback); writers do not wait for each other on it. A reader reads the last number handed
//! out (L), then tries to take the lock exclusively, without waiting: when that succeeds, no
//! transaction holds the mark, so every number up to L is settled (a writer took the mark
//! before its number, and its number before L was read), committed or never to be. The try
//! costs no scan of the lock table, and holds the lock only for its own statement.
//!
//! When writers are busy the try fails; a reader then reads up to the highest L settled before,
//! and further along numbers that follow its position without a gap, since no number in flight
//! hides in such a run.
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

/// The highest change number known to be settled, shared by a store handle's clones.
#[derive(Debug, Default)]
pub(super) struct Horizon(std::sync::atomic::AtomicI64);

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

    /// Where a watcher of the feed starts, asked before it lists what it watches: every change
    /// up to this number is settled and was committed before the listing's query.
    pub async fn feed_position(&self) -> Result<i64, Error> {
        if self.backend == Backend::Sqlite {
            let row = sqlx::query("SELECT coalesce(max(seq), 0) FROM changes").fetch_one(&self.reads).await?;
            return Ok(row.try_get(0)?);
        }
        // A handle that has settled nothing yet tries again for a while (its writers'
        // transactions are short), rather than have the watcher read from 0.
        for _ in 0..400 {
            let settled = self.horizon().await?;
            if settled > 0 {
                return Ok(settled);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.horizon().await
    }

    /// The highest number up to which the feed is settled, as of now when no writer holds the
    /// mark, as of the last time none did otherwise.
    async fn horizon(&self) -> Result<i64, Error> {
        use std::sync::atomic::Ordering;
        // The try is in the row of the subquery that read the last number: after that read.
        let row = sqlx::query(
            "SELECT last.value, pg_try_advisory_xact_lock($1) FROM \
             (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value FROM changes_seq_seq) AS last",
        )
        .bind(WRITING)
        .fetch_one(&self.reads)
        .await?;
        let (last, quiet): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
        if quiet {
            self.horizon.0.fetch_max(last, Ordering::Relaxed);
        }
        Ok(self.horizon.0.load(Ordering::Relaxed))
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

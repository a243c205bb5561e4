//! How far a reader of the change feed may read without stepping over a change that commits
//! later under a lower number.
//!
//! A change record takes its number when it is written and becomes visible when its
//! transaction commits. On PostgreSQL writers commit side by side, so number 41 may be visible
//! while 40 is still in flight (or never will be: its transaction rolled back); a reader that
//! went on from 41 would miss 40 for good. So every transaction that writes a change record
//! first takes a shared advisory lock, [`WRITING`], and holds it until it ends (commit or
//! rollback); writers do not wait for each other on it. A reader reads the last number handed
//! out (L), then tries to take the lock exclusively without waiting: when that succeeds, no
//! transaction holds the mark, and every number up to L is settled (a writer took the mark
//! before its number, and its number before L was read), committed or never to be. When the
//! try fails, the reader notes the transactions that hold the mark (W, from `pg_locks`), and a
//! later read finds L settled once none of W holds it any more: writers that came after W do
//! not hold it back, so a busy feed still moves.
//!
//! Readers never wait for that: a read goes up to the highest L settled so far, and further
//! along numbers that follow without a gap, since no number in flight hides in such a run.
//! This relies on the sequence handing out numbers one at a time (`CACHE 1`, the default of
//! the `BIGSERIAL` the store creates), so that its last value covers every number taken.
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

/// The key of [`WRITING`] in `pg_locks`, for this database.
const HOLDERS: &str = "FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = 7074613 \
     AND objsubid = 1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// How far the feed is settled as far as a store handle (and its clones) knows.
#[derive(Debug, Default)]
pub(super) struct Horizon(tokio::sync::Mutex<Settling>);

#[derive(Debug, Default)]
struct Settling {
    /// Every change number up to this one is settled; `None` until a first capture settled.
    settled: Option<i64>,
    /// A capture that waits for its writers: the last number handed out, and the transactions
    /// (virtual ids, comma-separated) that held the mark just after it was read.
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
            Backend::Postgres => Ok(self.horizon().await?.unwrap_or(0)),
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
        // A handle that has settled nothing yet waits for its first capture to settle (the
        // writers it waits for are transactions of their own, short).
        for _ in 0..2000 {
            if let Some(settled) = self.horizon().await? {
                return Ok(settled);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Err(Error::Store("the change feed did not settle within 10 s: a transaction that writes it is stuck".into()))
    }

    /// Settles the pending capture if its writers have ended, takes a new one when none is
    /// pending, and answers how far the feed is settled (`None`: not known yet).
    async fn horizon(&self) -> Result<Option<i64>, Error> {
        let mut h = self.horizon.0.lock().await;
        if let Some((last, writers)) = &h.pending {
            let still = sqlx::query(&format!(
                "SELECT count(*) {HOLDERS} AND virtualtransaction = ANY(string_to_array($1, ','))"
            ))
            .bind(writers.as_str())
            .fetch_one(&self.reads)
            .await?;
            if still.try_get::<i64, _>(0)? == 0 {
                h.settled = Some(h.settled.unwrap_or(0).max(*last));
                h.pending = None;
            }
        }
        if h.pending.is_none() {
            // The try is in the row of the subquery that read the last number: after that read.
            let row = sqlx::query(
                "SELECT last.value, pg_try_advisory_xact_lock($1) FROM \
                 (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS value FROM changes_seq_seq) AS last",
            )
            .bind(WRITING)
            .fetch_one(&self.reads)
            .await?;
            let (last, quiet): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
            let writers: String = if quiet {
                String::new()
            } else {
                let row = sqlx::query(&format!("SELECT coalesce(string_agg(virtualtransaction, ','), '') {HOLDERS}"))
                    .fetch_one(&self.reads)
                    .await?;
                row.try_get(0)?
            };
            if writers.is_empty() {
                h.settled = Some(h.settled.unwrap_or(0).max(last));
            } else {
                h.pending = Some((last, writers));
            }
        }
        Ok(h.settled)
    }
}

/// Of `rows` (change records after `after`, in number order, found by a query made after
/// [`Store::readable`] answered `horizon`), those a reader at `after` may take: none that a
/// change still in flight may precede.
pub(super) fn settled(after: i64, horizon: i64, rows: Vec<Change>) -> Vec<Change> {
    // The next number that may follow without a gap: nothing up to the horizon is in flight.
    let mut next = after.max(horizon).saturating_add(1);
    let readable = |c: &Change| {
        let take = c.seq <= horizon || c.seq == next;
        next = c.seq.max(horizon).saturating_add(1);
        take
    };
    rows.into_iter().take_while(readable).collect()
}

//! What the store keeps for the notification sinks: each sink's cursor in the change feed
//! (the last change it is done with: delivered, filtered out, or dead-lettered) and its dead
//! letters (events it gave up on, which an admin may send again). Every write is made under
//! the sink's lease, so a replica that lost it cannot move the cursor its successor moves.

use serde::Serialize;
use sqlx::Row;

use super::{Change, Durability, Store, change, now};
use crate::error::{Error, ErrorCode};

/// The scope of notification sinks' leases.
pub const SINK: super::Scope<'static> = "Sink";

/// Where a dead letter stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LetterState {
    /// Given up on.
    Dead,
    /// An admin asked for it to be sent again; the sink's next round does.
    Redeliver,
    /// Sent again, and acknowledged.
    Redelivered,
}

impl LetterState {
    fn as_str(self) -> &'static str {
        match self {
            LetterState::Dead => "dead",
            LetterState::Redeliver => "redeliver",
            LetterState::Redelivered => "redelivered",
        }
    }

    /// The state a text names (`dead`, `redeliver`, `redelivered`).
    pub fn parse(text: &str) -> Option<LetterState> {
        [LetterState::Dead, LetterState::Redeliver, LetterState::Redelivered].into_iter().find(|s| s.as_str() == text)
    }
}

/// An event a sink gave up on, with why.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub sink: String,
    /// The change number of the event.
    pub seq: i64,
    /// How many times delivery was tried.
    pub attempts: i64,
    /// The last failure.
    pub error: String,
    /// When the sink gave up (or, once redelivered, when that happened).
    pub at: String,
    pub state: LetterState,
    /// The event as the sink delivers it.
    pub event: serde_json::Value,
}

/// A sink's place in the feed, for people.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkCursor {
    pub sink: String,
    /// The last change the sink is done with.
    pub position: i64,
    pub updated_at: String,
    /// Dead letters not (yet) sent again.
    pub dead: i64,
}

impl Store {
    /// The sink's cursor; a sink the store has not seen yet starts at `start` (where the
    /// feed is now: a new sink is told what happens from now on, not the whole history).
    pub async fn sink_cursor(&self, sink: &str, start: i64) -> Result<i64, Error> {
        sqlx::query(
            "INSERT INTO sink_cursors (sink, position, updated_at) VALUES ($1, $2, $3) ON CONFLICT (sink) DO NOTHING",
        )
        .bind(sink)
        .bind(start)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let row =
            sqlx::query("SELECT position FROM sink_cursors WHERE sink = $1").bind(sink).fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }

    /// Moves the sink's cursor forward to `position` while `fence` holds its lease (never
    /// backwards). A lost move costs a second delivery with the same id, never a missed one.
    pub async fn advance_sink(&self, sink: &str, position: i64, fence: (&str, i64)) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Observation).await?;
        self.check_fence(&mut tx, SINK, sink, fence).await?;
        move_cursor(&mut tx, sink, position).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives up on the event of change `seq` after `attempts` tries that ended in `error`:
    /// keeps it as a dead letter and moves the cursor past it, in one transaction.
    pub async fn dead_letter(
        &self,
        sink: &str,
        seq: i64,
        attempts: i64,
        error: &str,
        fence: (&str, i64),
    ) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.check_fence(&mut tx, SINK, sink, fence).await?;
        sqlx::query(
            "INSERT INTO dead_letters (sink, seq, attempts, error, at, state) VALUES ($1, $2, $3, $4, $5, 'dead')",
        )
        .bind(sink)
        .bind(seq)
        .bind(attempts)
        .bind(error)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        move_cursor(&mut tx, sink, seq).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sink's dead letters after `after`, oldest first, at most `limit`; only those in
    /// `state` when one is given.
    pub async fn dead_letters(
        &self,
        sink: &str,
        state: Option<LetterState>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, Error> {
        let rows = sqlx::query(
            "SELECT d.id, d.sink, d.attempts, d.error, d.at AS dead_at, d.state, c.* FROM dead_letters d \
             JOIN changes c ON c.seq = d.seq WHERE d.sink = $1 AND d.id > $2 AND ($3 = '' OR d.state = $3) \
             ORDER BY d.id LIMIT $4",
        )
        .bind(sink)
        .bind(after)
        .bind(state.map_or("", LetterState::as_str))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let change: Change = change(row)?;
                Ok(DeadLetter {
                    id: row.try_get("id")?,
                    sink: row.try_get("sink")?,
                    seq: change.seq,
                    attempts: row.try_get("attempts")?,
                    error: row.try_get("error")?,
                    at: row.try_get("dead_at")?,
                    state: LetterState::parse(&row.try_get::<String, _>("state")?).unwrap_or(LetterState::Dead),
                    event: change.cloud_event(),
                })
            })
            .collect()
    }

    /// The change of each dead letter of `sink` an admin asked to send again, oldest first.
    pub async fn redeliveries(&self, sink: &str) -> Result<Vec<(i64, Change)>, Error> {
        let rows = sqlx::query(
            "SELECT d.id AS letter, c.* FROM dead_letters d JOIN changes c ON c.seq = d.seq \
             WHERE d.sink = $1 AND d.state = 'redeliver' ORDER BY d.id LIMIT 100",
        )
        .bind(sink)
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("letter")?, change(row)?))).collect()
    }

    /// Asks for dead letter `id` of `sink` (every dead one when `None`) to be sent again;
    /// answers how many were.
    pub async fn redeliver(&self, sink: &str, id: Option<i64>) -> Result<u64, Error> {
        let done = sqlx::query(
            "UPDATE dead_letters SET state = 'redeliver' WHERE sink = $1 AND state = 'dead' AND ($2 = 0 OR id = $2)",
        )
        .bind(sink)
        .bind(id.unwrap_or(0))
        .execute(&self.pool)
        .await?;
        if let Some(id) = id
            && done.rows_affected() == 0
        {
            let row = sqlx::query("SELECT state FROM dead_letters WHERE sink = $1 AND id = $2")
                .bind(sink)
                .bind(id)
                .fetch_optional(&self.reads)
                .await?;
            return match row {
                None => Err(Error::NotFound(format!("dead letter {id} of sink `{sink}`"))),
                Some(row) => Err(Error::conflict(
                    ErrorCode::WrongState,
                    format!("dead letter {id} of sink `{sink}` is {}, not dead", row.try_get::<String, _>(0)?),
                )),
            };
        }
        Ok(done.rows_affected())
    }

    /// Records how a redelivery of dead letter `id` ended: acknowledged, or failed again
    /// (`error`, back to dead with one more attempt).
    pub async fn redelivered(&self, id: i64, error: Option<&str>, fence: (&str, i64), sink: &str) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.check_fence(&mut tx, SINK, sink, fence).await?;
        // Acknowledged: redelivered. Failed again: dead, one attempt more, with the new error.
        let (state, more) = if error.is_some() { ("dead", 1_i64) } else { ("redelivered", 0) };
        sqlx::query(
            "UPDATE dead_letters SET state = $1, at = $2, attempts = attempts + $3, error = coalesce($4, error) \
             WHERE id = $5 AND sink = $6",
        )
        .bind(state)
        .bind(now())
        .bind(more)
        .bind(error)
        .bind(id)
        .bind(sink)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every sink the store has a cursor for, with its count of dead letters.
    pub async fn sink_cursors(&self) -> Result<Vec<SinkCursor>, Error> {
        let rows = sqlx::query(
            "SELECT s.sink, s.position, s.updated_at, \
             (SELECT count(*) FROM dead_letters d WHERE d.sink = s.sink AND d.state = 'dead') AS dead \
             FROM sink_cursors s ORDER BY s.sink",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SinkCursor {
                    sink: row.try_get(0)?,
                    position: row.try_get(1)?,
                    updated_at: row.try_get(2)?,
                    dead: row.try_get(3)?,
                })
            })
            .collect()
    }
}

/// Moves the sink's cursor forward to `position` inside `tx` (never backwards).
async fn move_cursor(tx: &mut sqlx::AnyConnection, sink: &str, position: i64) -> Result<(), Error> {
    sqlx::query("UPDATE sink_cursors SET position = $1, updated_at = $2 WHERE sink = $3 AND position < $1")
        .bind(position)
        .bind(now())
        .bind(sink)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

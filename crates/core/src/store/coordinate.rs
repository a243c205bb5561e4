//! Coordination between replicas that share one PostgreSQL, with the store as the only
//! coordinator (no consensus of our own):
//! - leases: who works on what (a resource, a scheduled job), until when, with a fencing token
//!   that grows each time a lease changes hands, so a replica that stalled past its lease
//!   cannot write over its successor;
//! - membership: each replica renews a row while it runs, so the live replicas can split the
//!   work between them and take over a dead one's share when its row expires;
//! - schedules: the last due time each scheduled job completed, so a run missed by a replica
//!   that died is run by another one.
//!
//! Lease and membership expiry is measured on the database's clock (milliseconds since the
//! Unix epoch), never a replica's own: replicas whose clocks disagree still agree on who
//! holds what. Tests move that clock forward with `Store::advance_clock` (the `testing`
//! feature). Schedules' due times are the caller's (they are when to work, not who may).

use sqlx::{AnyConnection, Row};

use super::{Backend, Durability, Store};
use crate::error::{Error, ErrorCode};

/// Gives the lease on `$1/$2` back when `$3` holds it with token `$4`: it expires now, and
/// its row stays so that the next owner's token is still larger.
pub(super) const RELEASE_LEASE: &str =
    "UPDATE leases SET expires_at = 0 WHERE kind = $1 AND name = $2 AND owner = $3 AND token = $4";

/// What a lease is on: a resource kind's name (`DataProduct`), or `Schedule` for a job.
pub type Scope<'a> = &'a str;

/// The scope of scheduled jobs' leases.
pub const SCHEDULE: Scope<'static> = "Schedule";

impl Store {
    /// The database's clock, in milliseconds since the Unix epoch, as an SQL expression (with
    /// the tests' advance added, an integer).
    fn db_now(&self) -> String {
        let clock = match self.backend {
            Backend::Postgres => "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        };
        format!("({clock} + {})", self.advanced.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The database's clock now, in milliseconds since the Unix epoch.
    pub async fn clock_ms(&self) -> Result<i64, Error> {
        let row = sqlx::query(&format!("SELECT {}", self.db_now())).fetch_one(&self.reads).await?;
        Ok(row.try_get(0)?)
    }

    /// Moves the clock leases and memberships expire by `ms` forward (tests).
    #[cfg(feature = "testing")]
    pub fn advance_clock(&self, ms: i64) {
        self.advanced.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes (or renews) the lease on `scope/name` for `owner` for `ttl_ms` on the database's
    /// clock, when it is free, expired or already `owner`'s. Returns the fencing token;
    /// `None` while another owner holds it.
    pub async fn acquire_lease(
        &self,
        scope: Scope<'_>,
        name: &str,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, Error> {
        let now = self.db_now();
        let row = sqlx::query(&format!(
            "INSERT INTO leases (kind, name, owner, expires_at, token) VALUES ($1, $2, $3, {now} + $4, 1) \
             ON CONFLICT (kind, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, \
             token = CASE WHEN leases.owner = excluded.owner THEN leases.token ELSE leases.token + 1 END \
             WHERE leases.owner = excluded.owner OR leases.expires_at < {now} RETURNING token"
        ))
        .bind(scope)
        .bind(name)
        .bind(owner)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Extends the lease `fence` (owner, token) holds by `ttl_ms` from now; `false` when it is
    /// no longer that lease (it expired and changed hands, perhaps back to the same owner
    /// under a new token): the work begun under the old token has lost it, and must stop.
    /// Like the fence check, an expired lease nobody took yet still counts as held; one given
    /// back (its work wrote its status while the renewal was on its way) stays given back.
    pub async fn renew_lease(
        &self,
        scope: Scope<'_>,
        name: &str,
        fence: (&str, i64),
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let now = self.db_now();
        let renewed = sqlx::query(&format!(
            "UPDATE leases SET expires_at = CASE WHEN expires_at = 0 THEN 0 ELSE {now} + $1 END \
             WHERE kind = $2 AND name = $3 AND owner = $4 AND token = $5"
        ))
        .bind(ttl_ms)
        .bind(scope)
        .bind(name)
        .bind(fence.0)
        .bind(fence.1)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives a lease back, if `owner` still holds it with `token`: it expires now, and its
    /// row stays so that the next owner's token is still larger.
    pub async fn release_lease(&self, scope: Scope<'_>, name: &str, owner: &str, token: i64) -> Result<(), Error> {
        sqlx::query(RELEASE_LEASE).bind(scope).bind(name).bind(owner).bind(token).execute(&self.pool).await?;
        Ok(())
    }

    /// Inside a write transaction: refuses unless `fence` (owner, token) still holds the lease
    /// on `scope/name`; on PostgreSQL the lease row stays locked until the transaction ends,
    /// so it cannot change hands halfway.
    pub(super) async fn check_fence(
        &self,
        tx: &mut AnyConnection,
        scope: Scope<'_>,
        name: &str,
        fence: (&str, i64),
    ) -> Result<(), Error> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let holder = sqlx::query(&format!("SELECT owner, token FROM leases WHERE kind = $1 AND name = $2{lock}"))
            .bind(scope)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let holds = holder.is_some_and(|r| {
            r.try_get::<String, _>(0).is_ok_and(|o| o == fence.0) && r.try_get::<i64, _>(1).is_ok_and(|t| t == fence.1)
        });
        if holds { Ok(()) } else { Err(stale_lease(scope, name, fence)) }
    }

    /// Renews `owner`'s membership for `ttl_ms` on the database's clock and returns the live
    /// replicas, sorted, `owner` among them.
    pub async fn heartbeat(&self, owner: &str, ttl_ms: i64) -> Result<Vec<String>, Error> {
        let now = self.db_now();
        sqlx::query(&format!(
            "INSERT INTO replicas (owner, expires_at) VALUES ($1, {now} + $2) \
             ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at"
        ))
        .bind(owner)
        .bind(ttl_ms)
        .execute(&self.pool)
        .await?;
        sqlx::query(&format!("DELETE FROM replicas WHERE expires_at < {now} - $1"))
            .bind(ttl_ms)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(&format!("SELECT owner FROM replicas WHERE expires_at >= {now} ORDER BY owner"))
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Ends `owner`'s membership at once (a clean shutdown), so the others take its share now.
    pub async fn leave(&self, owner: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM replicas WHERE owner = $1").bind(owner).execute(&self.pool).await?;
        Ok(())
    }

    /// The due time of the last completed run of a scheduled job (0: never ran).
    pub async fn schedule_done(&self, job: &str) -> Result<i64, Error> {
        let row =
            sqlx::query("SELECT last_due FROM schedules WHERE name = $1").bind(job).fetch_optional(&self.reads).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Records that the run of `job` due at `due_ms` completed, while `fence` holds the job's
    /// lease; never moves backwards.
    pub async fn complete_schedule(&self, job: &str, due_ms: i64, fence: (&str, i64)) -> Result<(), Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.check_fence(&mut tx, SCHEDULE, job, fence).await?;
        sqlx::query(
            "INSERT INTO schedules (name, last_due) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET last_due = excluded.last_due WHERE schedules.last_due < excluded.last_due",
        )
        .bind(job)
        .bind(due_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The refusal of a write under a lease `fence` (owner, token) no longer holds.
pub(super) fn stale_lease(scope: Scope<'_>, name: &str, fence: (&str, i64)) -> Error {
    Error::conflict(
        ErrorCode::StaleLease,
        format!("the lease on {scope} `{name}` is no longer {}'s with token {}", fence.0, fence.1),
    )
}

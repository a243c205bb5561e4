//! Versioned, forward-only schema migrations for both backends.
//!
//! The store records its schema version in `meshplane_schema`. On open, every migration
//! above it runs, each in its own transaction with the version bump, so a crash leaves the
//! store at a whole version. A store whose version is above what this binary knows was
//! written by a newer release and is refused: an older binary must not write to it.

use sqlx::{AnyConnection, Connection, Executor, Row};

use super::Backend;
use crate::error::{Error, ErrorCode};

/// One step. `{serial}` stands for each backend's auto-incrementing key.
struct Migration {
    version: i64,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "CREATE TABLE resources (
            kind TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL,
            status TEXT NOT NULL, domain TEXT NOT NULL, team TEXT, generation BIGINT NOT NULL,
            spec TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, name));
          CREATE TABLE changes (
            seq {serial}, at TEXT NOT NULL, actor TEXT NOT NULL,
            origin TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL,
            generation BIGINT NOT NULL, version TEXT NOT NULL, before TEXT, after TEXT, event TEXT NOT NULL);",
    },
    // Tags become filterable, and listing by domain and reading a resource's history use indexes.
    Migration {
        version: 2,
        sql: "ALTER TABLE resources ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
          CREATE INDEX resources_domain ON resources (domain, kind, name);
          CREATE INDEX changes_resource ON changes (kind, name, seq);",
    },
    // Contract test results, kept with their history.
    Migration {
        version: 3,
        sql: "CREATE TABLE test_runs (
            seq {serial}, kind TEXT NOT NULL, name TEXT NOT NULL, generation BIGINT NOT NULL,
            server TEXT NOT NULL, at TEXT NOT NULL, failed BIGINT NOT NULL, report TEXT NOT NULL);
          CREATE INDEX test_runs_resource ON test_runs (kind, name, seq);",
    },
    // What the reconcilers observed: conditions and the generation they describe.
    Migration {
        version: 4,
        sql: "CREATE TABLE statuses (
            kind TEXT NOT NULL, name TEXT NOT NULL, observed_generation BIGINT NOT NULL,
            conditions TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (kind, name));",
    },
    // Leases: who reconciles what, until when, with a fencing token that grows with each new owner.
    Migration {
        version: 5,
        sql: "CREATE TABLE leases (
            kind TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires_at BIGINT NOT NULL,
            token BIGINT NOT NULL, PRIMARY KEY (kind, name));",
    },
    // Deletion through finalizers: when deletion was asked for and which blocks still have to
    // clean up; the replicas alive (to split the work); when each scheduled job last ran.
    Migration {
        version: 6,
        sql: "ALTER TABLE resources ADD COLUMN deleting TEXT;
          ALTER TABLE resources ADD COLUMN finalizers TEXT NOT NULL DEFAULT '[]';
          CREATE TABLE replicas (owner TEXT NOT NULL PRIMARY KEY, expires_at BIGINT NOT NULL);
          CREATE TABLE schedules (name TEXT NOT NULL PRIMARY KEY, last_due BIGINT NOT NULL);",
    },
    // Orphans: what blocks left in place when a resource went, until it is purged.
    Migration {
        version: 7,
        sql: "CREATE TABLE orphans (
            id {serial}, block TEXT NOT NULL, place TEXT NOT NULL, note TEXT NOT NULL,
            purgeable BIGINT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, since TEXT NOT NULL,
            purged_at TEXT);",
    },
    // Access management: who owns each resource (recorded at creation), the installation's id
    // (it names what meshplane creates in shared stores), identities, API tokens (hashed),
    // and access requests with the grants they become.
    Migration {
        version: 8,
        sql: "ALTER TABLE resources ADD COLUMN owners TEXT NOT NULL DEFAULT '[]';
          CREATE TABLE meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
          CREATE TABLE principals (
            name TEXT NOT NULL PRIMARY KEY, kind TEXT NOT NULL, database_role TEXT,
            groups TEXT NOT NULL, platform_admin BIGINT NOT NULL, domains TEXT NOT NULL,
            created_at TEXT NOT NULL);
          CREATE TABLE tokens (
            id TEXT NOT NULL PRIMARY KEY, principal TEXT NOT NULL, hash TEXT NOT NULL,
            description TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT);
          CREATE TABLE access (
            id {serial}, contract TEXT NOT NULL, product TEXT NOT NULL, port TEXT NOT NULL,
            domain TEXT NOT NULL, consumer TEXT NOT NULL, input_port TEXT, role TEXT, write BIGINT NOT NULL,
            purpose TEXT NOT NULL, until TEXT, state TEXT NOT NULL, approvers TEXT NOT NULL,
            approvals TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at TEXT NOT NULL,
            updated_at TEXT NOT NULL, enforcement TEXT);
          CREATE INDEX access_contract ON access (contract, state);",
    },
    // The domain boundary: each resource's incarnation (`uid`); the domain each id belongs
    // to, kept after its resources are deleted (`claims`); the OIDC identity a principal
    // signs in with. Backfilled: uids, claims from the earliest record of each id, access
    // requests' domain from their contract, and change times in the fixed-width format.
    Migration {
        version: 9,
        sql: "ALTER TABLE resources ADD COLUMN uid TEXT NOT NULL DEFAULT '';
          CREATE TABLE claims (
            kind TEXT NOT NULL, id TEXT NOT NULL, domain TEXT NOT NULL, claimed_at TEXT NOT NULL,
            PRIMARY KEY (kind, id));
          ALTER TABLE principals ADD COLUMN oidc_issuer TEXT;
          ALTER TABLE principals ADD COLUMN oidc_subject TEXT;
          CREATE UNIQUE INDEX principals_oidc ON principals (oidc_issuer, oidc_subject);",
    },
    Migration { version: 10, sql: "ALTER TABLE resources ADD COLUMN manager TEXT NOT NULL DEFAULT 'api';" },
    // The majors of a contract id (every apply of a contract, every product's reconcile):
    // without it, each was a scan of every resource.
    Migration { version: 11, sql: "CREATE INDEX resources_id ON resources (kind, id);" },
    // What the policies on access said about each request: their answers and the cap they set.
    Migration { version: 12, sql: "ALTER TABLE access ADD COLUMN policy TEXT;" },
    // Notification sinks: each one's cursor in the change feed, and the events it gave up on.
    Migration {
        version: 13,
        sql: "CREATE TABLE sink_cursors (sink TEXT NOT NULL PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL);
          CREATE TABLE dead_letters (
            id {serial}, sink TEXT NOT NULL, seq BIGINT NOT NULL, attempts BIGINT NOT NULL, error TEXT NOT NULL,
            at TEXT NOT NULL, state TEXT NOT NULL);
          CREATE INDEX dead_letters_sink ON dead_letters (sink, state, id);",
    },
    // The latest verdict of each check of each contract on each server, and since when it
    // holds (what alerts say is failing now).
    Migration {
        version: 14,
        sql: "CREATE TABLE check_states (
            kind TEXT NOT NULL, name TEXT NOT NULL, server TEXT NOT NULL, check_key TEXT NOT NULL,
            schedule TEXT, category TEXT, outcome TEXT NOT NULL, severity TEXT, rule_id TEXT, description TEXT NOT NULL,
            since TEXT NOT NULL, at TEXT NOT NULL, run BIGINT NOT NULL,
            PRIMARY KEY (kind, name, server, check_key));
          CREATE INDEX check_states_failing ON check_states (kind, name) WHERE outcome <> 'pass';",
    },
];

/// The schema version this binary writes.
pub const LATEST: i64 = 14;

async fn current(conn: &mut AnyConnection) -> Result<i64, Error> {
    conn.execute("CREATE TABLE IF NOT EXISTS meshplane_schema (version BIGINT NOT NULL)").await?;
    let row = conn.fetch_optional("SELECT max(version) AS v FROM meshplane_schema").await?;
    Ok(row.and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten()).unwrap_or(0))
}

/// The PostgreSQL advisory lock that replicas opening one store at once migrate under.
const MIGRATING: i64 = 7_074_612;

/// Brings the store up to `target` (at most [`LATEST`]); refuses a store newer than this binary.
/// On PostgreSQL, replicas that start at once migrate one after the other: the second finds
/// the schema the first made.
pub async fn migrate(conn: &mut AnyConnection, backend: Backend, target: i64) -> Result<i64, Error> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATING).execute(&mut *conn).await?;
    }
    let migrated = migrate_locked(conn, backend, target).await;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATING).execute(&mut *conn).await?;
    }
    migrated
}

async fn migrate_locked(conn: &mut AnyConnection, backend: Backend, target: i64) -> Result<i64, Error> {
    let mut version = current(conn).await?;
    if version > LATEST {
        return Err(Error::Conflict {
            code: ErrorCode::StoreTooNew,
            message: format!(
                "the store has schema version {version}, newer than this meshplane knows ({LATEST}); \
                 it was written by a newer release: upgrade meshplane, do not downgrade the store"
            ),
            details: serde_json::Value::Null,
        });
    }
    let from = version;
    for m in MIGRATIONS.iter().filter(|m| m.version > from && m.version <= target) {
        let mut tx = conn.begin().await?;
        let serial = match backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        tx.execute(m.sql.replace("{serial}", serial).as_str()).await?;
        if m.version == 2 {
            backfill_tags(&mut tx).await?;
        }
        if m.version == 9 {
            backfill_boundary(&mut tx).await?;
        }
        if m.version == 8 {
            backfill_owners(&mut tx).await?;
            let installation = super::identity::random_hex(4);
            sqlx::query("INSERT INTO meta (key, value) VALUES ('installation', $1)")
                .bind(installation)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO meshplane_schema (version) VALUES ($1)").bind(m.version).execute(&mut *tx).await?;
        tx.commit().await?;
        version = m.version;
    }
    Ok(version)
}

/// Version 9: a uid for every resource, a claim for every id, access requests under their
/// contract's domain, and change times in the fixed-width format. An id still stored goes to
/// the domain of its earliest stored record (creation times compared as instants, whatever
/// format they were written in), so a live resource always keeps its id; an id of which
/// nothing is stored any more goes to the domain of the change feed's first `created` change.
async fn backfill_boundary(tx: &mut AnyConnection) -> Result<(), Error> {
    let rows = sqlx::query("SELECT kind, name, id, domain, created_at FROM resources").fetch_all(&mut *tx).await?;
    let mut resources = Vec::with_capacity(rows.len());
    for row in rows {
        let created: String = row.try_get(4)?;
        let fields: (String, String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        resources.push((super::epoch_ms(&created).unwrap_or(i64::MAX), created, fields));
    }
    resources.sort();
    for (_, created, (kind, name, id, domain)) in resources {
        sqlx::query("UPDATE resources SET uid = $1 WHERE kind = $2 AND name = $3")
            .bind(super::identity::random_hex(16))
            .bind(&kind)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        let at = super::canonical_time(&created).unwrap_or(created);
        super::claims::register(tx, &kind, &id, &domain, &at).await?;
    }
    let created = sqlx::query("SELECT kind, name, at, event, after FROM changes WHERE action = 'created' ORDER BY seq")
        .fetch_all(&mut *tx)
        .await?;
    for row in created {
        let (kind, name, at): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (event, after): (String, Option<String>) = (row.try_get(3)?, row.try_get(4)?);
        let domain_in = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).ok()?;
            let domain = value.pointer("/data/domain").or_else(|| value.get("domain"))?.as_str()?;
            Some(domain.to_string()).filter(|d| !d.is_empty())
        };
        let Some(domain) = domain_in(&event).or_else(|| after.as_deref().and_then(domain_in)) else { continue };
        let at = super::canonical_time(&at).unwrap_or(at);
        super::claims::register(tx, &kind, claimed_id(&kind, &name), &domain, &at).await?;
    }
    sqlx::query(
        "UPDATE access SET domain = (SELECT r.domain FROM resources r WHERE r.kind = 'DataContract' AND r.name = access.contract) \
         WHERE EXISTS (SELECT 1 FROM resources r WHERE r.kind = 'DataContract' AND r.name = access.contract)",
    )
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query("SELECT seq, at FROM changes").fetch_all(&mut *tx).await?;
    for row in rows {
        let (seq, at): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(fixed) = super::canonical_time(&at).filter(|fixed| *fixed != at) {
            sqlx::query("UPDATE changes SET at = $1 WHERE seq = $2").bind(fixed).bind(seq).execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// The id a resource's name stands for: a contract's name is `ID@vMAJOR`.
fn claimed_id<'a>(kind: &str, name: &'a str) -> &'a str {
    match name.rsplit_once("@v") {
        Some((id, _)) if kind == "DataContract" => id,
        _ => name,
    }
}

/// Version 8 records the owners of every stored resource from its team, as creation does.
async fn backfill_owners(tx: &mut AnyConnection) -> Result<(), Error> {
    let rows = sqlx::query("SELECT kind, name, spec FROM resources").fetch_all(&mut *tx).await?;
    for row in rows {
        let (kind, name, spec): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let spec: serde_json::Value = serde_json::from_str(&spec).map_err(|e| Error::Store(e.to_string()))?;
        let owners = serde_json::to_string(&crate::resource::owners(&spec)).unwrap_or_default();
        sqlx::query("UPDATE resources SET owners = $1 WHERE kind = $2 AND name = $3")
            .bind(owners)
            .bind(kind)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Version 2 reads the tags of every stored document into their own column.
async fn backfill_tags(tx: &mut AnyConnection) -> Result<(), Error> {
    let rows = sqlx::query("SELECT kind, name, spec FROM resources").fetch_all(&mut *tx).await?;
    for row in rows {
        let (kind, name, spec): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let spec: serde_json::Value = serde_json::from_str(&spec).map_err(|e| Error::Store(e.to_string()))?;
        let tags = spec.get("tags").cloned().unwrap_or_else(|| serde_json::json!([]));
        sqlx::query("UPDATE resources SET tags = $1 WHERE kind = $2 AND name = $3")
            .bind(tags.to_string())
            .bind(kind)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

//! The login a contract test reads a port as. The block's own user is trusted infrastructure
//! and runs nothing of a test: every statement of a run — meshplane's metrics statement, its
//! sample queries, the contract's SQL rules — runs on a connection of its own that logs in
//! as a role the block makes for that run alone:
//!
//! - `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS`, a
//!   member of no role, `CONNECTION LIMIT 1`, `VALID UNTIL` the run's deadline, read-only by
//!   default, its statements bounded a little past the same deadline (the run is stopped at
//!   its deadline; the bound ends what the database would still be doing for it);
//! - `search_path` set to `pg_catalog`, the port's schema, `pg_temp`: a name resolves in the
//!   catalog or the port, never in `public` (where, before PostgreSQL 15, any login could
//!   plant a function or operator that a run's statement would then call);
//! - `USAGE` on the port's schema and `SELECT` on the port's declared relations, nothing
//!   else (what PUBLIC holds in every database aside: the contract's SQL is also checked
//!   against an allow-list of relations and functions before it is sent);
//! - its password is random, made here, and reaches PostgreSQL only as a SCRAM-SHA-256
//!   verifier computed here, never as text;
//! - named `mp_<installation>_q<random>` and commented with its deadline: it is dropped when
//!   the run ends, and the next run drops every one of this installation's whose deadline
//!   passed (a run that crashed leaves none behind for long).

use std::time::Duration;

use sqlx::{PgConnection, Row};

use super::sql::run;

/// How the comment of a test login begins, before its installation and deadline.
const COMMENT: &str = "meshplane test login of installation ";

/// The prefix of an installation's test logins.
pub(super) fn prefix(installation: &str) -> String {
    format!("mp_{installation}_q")
}

/// Makes the login of one run: (role, password).
pub(super) async fn create(
    conn: &mut PgConnection,
    installation: &str,
    schema: &str,
    relations: &[String],
    valid_for: Duration,
) -> Result<(String, String), String> {
    sweep(conn, installation).await?;
    let role = format!("{}{}", prefix(installation), meshplane_core::store::identity::random_hex(8));
    let password = meshplane_core::store::identity::random_hex(32);
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // The deadline on the database's clock: as text for VALID UNTIL, in ms for the comment.
    let deadline = sqlx::query(
        "SELECT d::text, (extract(epoch FROM d) * 1000)::bigint FROM (SELECT now() + make_interval(secs => $1) AS d) t",
    )
    .bind(valid_for.as_secs().max(1) as f64)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let (until, until_ms): (String, i64) = (deadline.get(0), deadline.get(1));
    run(
        conn,
        "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS \
         CONNECTION LIMIT 1 VALID UNTIL %L PASSWORD %L', $1, $2, $3)",
        &[&role, &until, &verifier],
    )
    .await?;
    let comment = format!("{COMMENT}{installation} until {until_ms}");
    run(conn, "SELECT format('COMMENT ON ROLE %I IS %L', $1, $2)", &[&role, &comment]).await?;
    let limit = format!("{}s", valid_for.as_secs().max(1) + 10);
    for (setting, value) in [
        ("default_transaction_read_only", "on"),
        ("statement_timeout", limit.as_str()),
        ("idle_in_transaction_session_timeout", limit.as_str()),
    ] {
        let sql = format!("SELECT format('ALTER ROLE %I SET {setting} = %L', $1, $2)");
        run(conn, &sql, &[&role, value]).await?;
    }
    // Names resolve in the catalog first, then the port: never in `public` or any schema
    // another login may create functions or operators in.
    let path = "SELECT format('ALTER ROLE %I SET search_path = pg_catalog, %I, pg_temp', $1, $2)";
    run(conn, path, &[&role, schema]).await?;
    run(conn, "SELECT format('GRANT USAGE ON SCHEMA %I TO %I', $1, $2)", &[schema, &role]).await?;
    for relation in relations {
        run(conn, "SELECT format('GRANT SELECT ON %I.%I TO %I', $1, $2, $3)", &[schema, relation, &role]).await?;
    }
    Ok((role, password))
}

/// Ends a run's login: its sessions, its privileges, the role.
pub(super) async fn drop(conn: &mut PgConnection, role: &str) -> Result<(), String> {
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(role)
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    let exists = "WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";
    run(conn, &format!("SELECT format('DROP OWNED BY %I', $1) {exists}"), &[role]).await?;
    run(conn, "SELECT format('DROP ROLE IF EXISTS %I', $1)", &[role]).await
}

/// Drops the logins of this installation whose deadline passed.
async fn sweep(conn: &mut PgConnection, installation: &str) -> Result<(), String> {
    // Deadlines are on the database's clock, so "passed" is too.
    let rows = sqlx::query(
        "SELECT rolname::text, shobj_description(oid, 'pg_authid'), (extract(epoch FROM now()) * 1000)::bigint          FROM pg_roles WHERE left(rolname, length($1)) = $1",
    )
    .bind(prefix(installation))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let mine = format!("{COMMENT}{installation} until ");
    for row in rows {
        let (role, comment, now_ms): (String, Option<String>, i64) = (row.get(0), row.get(1), row.get(2));
        let until = comment.as_deref().and_then(|c| c.strip_prefix(&mine)).and_then(|t| t.parse::<i64>().ok());
        if until.is_some_and(|until| until < now_ms) {
            drop(conn, &role).await?;
        }
    }
    Ok(())
}

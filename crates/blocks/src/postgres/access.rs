//! Grants in PostgreSQL, enforced by the server itself: one NOLOGIN role per grant, named
//! `mp_<installation>_g<grant id>` (so meshplane knows its own, and two installations on one
//! server never touch each other's roles), holding USAGE on the port's schema and SELECT —
//! with `write`, also INSERT, UPDATE and DELETE — on exactly the port's declared tables and
//! views; the role is granted to the consumer's own login role.
//!
//! Every sync reads the privileges on the port (the schema and every relation in it) from
//! `pg_catalog` and makes them what the grants say: missing privileges and memberships are
//! added, extra ones of meshplane's roles taken away, and the roles of grants no longer in
//! force lose their privileges here and are dropped. A privilege of any other role (PUBLIC
//! included) is drift: reported, and revoked when the block is configured to
//! (`revokeUnexplained`). The block syncs only schemas it made for the contract (see
//! [`super::mark`]). Roles meshplane did not create are never altered or dropped.

use std::collections::{BTreeMap, BTreeSet};

use meshplane_core::access::{AccessReport, AccessSync, Enforcement, Grant};
use sqlx::{PgConnection, Row};

use super::sql::{run, schema_exists};

/// The privileges the catalog may report, the only words ever pasted into a REVOKE.
const PRIVILEGES: &[&str] =
    &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "MAINTAIN"];

/// One privilege on the port: (object, grantee, privilege). The object is `None` for the
/// schema itself; the grantee `PUBLIC` for everyone.
type Privilege = (Option<String>, String, String);

/// What one sync is about.
pub(super) struct Port<'a> {
    pub schema: &'a str,
    /// The port's declared tables and views.
    pub objects: Vec<String>,
    /// The contract's key, written in each role's comment.
    pub contract: &'a str,
    pub revoke_unexplained: bool,
}

/// The role of a grant.
pub fn role_name(installation: &str, id: i64) -> String {
    format!("mp_{installation}_g{id}")
}

/// Makes the port's privileges what `access` says, in one transaction.
pub(super) async fn sync(
    conn: &mut PgConnection,
    port: &Port<'_>,
    access: &AccessSync,
) -> Result<AccessReport, String> {
    if !access.installation.chars().all(|c| c.is_ascii_alphanumeric()) || access.installation.is_empty() {
        return Err(format!("installation id `{}` must be letters and digits", access.installation));
    }
    let mut report = AccessReport::of(Enforcement::Enforced);
    if !schema_exists(conn, port.schema).await? {
        return Ok(report);
    }
    let prefix = format!("mp_{}_g", access.installation);
    let wanted: BTreeMap<String, &Grant> = if access.releasing {
        BTreeMap::new()
    } else {
        access.grants.iter().map(|g| (role_name(&access.installation, g.id), g)).collect()
    };
    let in_force: BTreeSet<String> = access.grants.iter().map(|g| role_name(&access.installation, g.id)).collect();
    let found = privileges(conn, port.schema).await?;
    let existing: BTreeSet<&str> = port.objects.iter().map(String::as_str).collect();
    let existing = relations(conn, port.schema, &existing).await?;

    for (role, grant) in &wanted {
        ensure_role(conn, role, port.contract).await?;
        let mut want: BTreeSet<Privilege> = BTreeSet::new();
        want.insert((None, role.clone(), "USAGE".into()));
        let kinds: &[&str] = if grant.write { &["SELECT", "INSERT", "UPDATE", "DELETE"] } else { &["SELECT"] };
        for object in &existing {
            want.extend(kinds.iter().map(|k| (Some(object.clone()), role.clone(), k.to_string())));
        }
        for missing in want.iter().filter(|p| !found.contains(p)) {
            change(conn, "GRANT", port.schema, missing).await?;
        }
        for extra in found.iter().filter(|p| p.1 == *role && !want.contains(p)) {
            change(conn, "REVOKE", port.schema, extra).await?;
        }
        membership(conn, role, grant, &mut report).await?;
    }

    for stale in found.iter().filter(|p| p.1.starts_with(&prefix) && !wanted.contains_key(&p.1)) {
        change(conn, "REVOKE", port.schema, stale).await?;
    }
    for role in ended_roles(conn, &prefix, port.contract).await? {
        if !in_force.contains(&role) {
            run(
                conn,
                "SELECT format('DROP OWNED BY %I', $1) WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                &[&role],
            )
            .await?;
            run(conn, "SELECT format('DROP ROLE IF EXISTS %I', $1)", &[&role]).await?;
        }
    }

    for other in found.iter().filter(|p| !p.1.starts_with(&prefix)) {
        let what = describe(port.schema, other);
        if port.revoke_unexplained {
            change(conn, "REVOKE", port.schema, other).await?;
            report.removed.push(what);
        } else {
            report.drift.push(format!("{what} (no grant explains it)"));
        }
    }
    Ok(report)
}

/// Every privilege on the schema and its relations held by a role other than the object's
/// owner.
async fn privileges(conn: &mut PgConnection, schema: &str) -> Result<BTreeSet<Privilege>, String> {
    let rows = sqlx::query(
        "SELECT NULL::text AS object, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type \
         FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee \
         WHERE n.nspname = $1 AND a.grantee <> n.nspowner \
         UNION ALL \
         SELECT c.relname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee \
         WHERE n.nspname = $1 AND a.grantee <> c.relowner",
    )
    .bind(schema.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| e.to_string())
}

/// Which of the declared objects exist in the schema.
async fn relations(conn: &mut PgConnection, schema: &str, declared: &BTreeSet<&str>) -> Result<Vec<String>, String> {
    let names = super::sql::relations(conn, schema).await?;
    Ok(names.into_iter().filter(|n| declared.contains(n.as_str())).collect())
}

/// Creates the grant's role when it does not exist yet; its comment names the contract.
async fn ensure_role(conn: &mut PgConnection, role: &str, contract: &str) -> Result<(), String> {
    let create =
        "SELECT format('CREATE ROLE %I NOLOGIN', $1) WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";
    run(conn, create, &[role]).await?;
    let comment = format!("meshplane grant on contract {contract}");
    run(conn, "SELECT format('COMMENT ON ROLE %I IS %L', $1, $2)", &[role, &comment]).await
}

/// The roles of this installation whose comment names the contract: grants on it that may
/// have ended.
async fn ended_roles(conn: &mut PgConnection, prefix: &str, contract: &str) -> Result<Vec<String>, String> {
    let rows = sqlx::query(
        "SELECT rolname FROM pg_roles WHERE left(rolname, length($1)) = $1 \
         AND shobj_description(oid, 'pg_authid') = $2",
    )
    .bind(prefix.to_string())
    .bind(format!("meshplane grant on contract {contract}"))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// The grant's role is held by the consumer's login role, and by no other role.
async fn membership(
    conn: &mut PgConnection,
    role: &str,
    grant: &Grant,
    report: &mut AccessReport,
) -> Result<(), String> {
    let members: Vec<String> = sqlx::query(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
         JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = $1",
    )
    .bind(role.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()
    .map_err(|e| e.to_string())?;
    let login = match &grant.database_role {
        None => {
            report.problems.push(format!(
                "grant {}: consumer `{}` has no database role, so nobody holds the grant",
                grant.id, grant.consumer
            ));
            None
        }
        Some(login) => {
            let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
                .bind(login.clone())
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| e.to_string())?
                .is_some();
            if !exists {
                report.problems.push(format!(
                    "grant {}: consumer `{}`'s database role `{login}` does not exist",
                    grant.id, grant.consumer
                ));
            }
            exists.then_some(login.as_str())
        }
    };
    if let Some(login) = login
        && !members.iter().any(|m| m == login)
    {
        run(conn, "SELECT format('GRANT %I TO %I', $1, $2)", &[role, login]).await?;
    }
    for other in members.iter().filter(|m| Some(m.as_str()) != login) {
        run(conn, "SELECT format('REVOKE %I FROM %I', $1, $2)", &[role, other]).await?;
    }
    Ok(())
}

/// The login role of service account `account`: `mp_<installation>_s_<account>` (letters,
/// digits and `_`, lower case, at most 63 bytes).
pub fn login_name(installation: &str, account: &str) -> String {
    let cleaned: String =
        account.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("mp_{installation}_s_{cleaned}").chars().take(63).collect()
}

/// Creates the service account's login role with a new random password, or gives the one
/// meshplane made before a new password; a role of that name meshplane did not make is refused.
pub(super) async fn create_login(
    conn: &mut PgConnection,
    installation: &str,
    account: &str,
) -> Result<meshplane_core::access::Login, String> {
    let role = login_name(installation, account);
    let comment = format!("meshplane service account {account}");
    let existing: Option<Option<String>> =
        sqlx::query("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.get(0));
    let password = meshplane_core::store::identity::random_hex(32);
    // PostgreSQL is sent the SCRAM-SHA-256 verifier of the password, never the password.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    match existing {
        None => run(conn, "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1, $2)", &[&role, &verifier]).await?,
        Some(Some(c)) if c == comment => {
            run(conn, "SELECT format('ALTER ROLE %I PASSWORD %L', $1, $2)", &[&role, &verifier]).await?
        }
        Some(_) => return Err(format!("role `{role}` exists and meshplane did not create it; it is left alone")),
    }
    run(conn, "SELECT format('COMMENT ON ROLE %I IS %L', $1, $2)", &[&role, &comment]).await?;
    Ok(meshplane_core::access::Login { role, password })
}

/// GRANTs or REVOKEs one privilege; the privilege word only from the allow-list.
async fn change(conn: &mut PgConnection, verb: &str, schema: &str, p: &Privilege) -> Result<(), String> {
    let (object, grantee, privilege) = p;
    let privilege =
        PRIVILEGES.iter().find(|k| **k == privilege).ok_or_else(|| format!("unknown privilege {privilege}"))?;
    let to = if verb == "GRANT" { "TO" } else { "FROM" };
    let (on, mut args) = match object {
        None => ("SCHEMA %I", vec![schema]),
        Some(table) => ("TABLE %I.%I", vec![schema, table.as_str()]),
    };
    let who = if grantee == "PUBLIC" { "PUBLIC" } else { "%I" };
    if grantee != "PUBLIC" {
        args.push(grantee);
    }
    let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("${i}")).collect();
    let template = format!("SELECT format('{verb} {privilege} ON {on} {to} {who}', {})", placeholders.join(", "));
    run(conn, &template, &args).await
}

/// For people: `role bob has SELECT on ledger_v1.entries`.
fn describe(schema: &str, (object, grantee, privilege): &Privilege) -> String {
    let on = object.as_ref().map_or(format!("schema {schema}"), |o| format!("{schema}.{o}"));
    let who = if grantee == "PUBLIC" { "PUBLIC".to_string() } else { format!("role `{grantee}`") };
    format!("{who} has {privilege} on {on}")
}

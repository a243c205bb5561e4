//! Grants enforced by PostgreSQL itself, through the PostgreSQL block: the consumer's own
//! login role cannot read a port before its grant, reads exactly the granted port after (and
//! writes only with a write grant), never a neighbouring port, and nothing once the grant is
//! gone; privileges made by hand are drift, removed only when so configured; and what one
//! installation creates, another never touches.

use std::sync::Arc;

use meshplane_blocks::platform::Platform;
use meshplane_blocks::postgres::{PostgresBlock, role_name};
use meshplane_blocks::storage::Storage;
use meshplane_core::access::{AccessReport, AccessSync, Enforcement, Grant};
use meshplane_core::block::{Call, Provisioner};
use meshplane_core::store::Record;
use meshplane_core::testing::{Logins, Place, postgres};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::postgres::record;

fn database(place: &Place) -> String {
    place.url.rsplit('/').next().unwrap().to_string()
}

fn block(place: &Place, revoke_unexplained: bool) -> Storage<PostgresBlock> {
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: warehouse\n    type: postgres\n\
         \x20   host: 127.0.0.1\n    database: {}\n    user: postgres\n    revokeUnexplained: {revoke_unexplained}\n",
        database(place)
    );
    let platform = Arc::new(Platform::from_yaml(&text).unwrap());
    let config = platform.blocks[0].typed::<meshplane_blocks::platform::PostgresConfig>().unwrap();
    Storage(PostgresBlock::new("warehouse", config, Arc::clone(&platform)).unwrap())
}

/// A contract `id` whose server is `schema` on the test database, with tables `tables`.
fn contract(place: &Place, id: &str, schema: &str, tables: &[&str]) -> Record {
    let objects: String = tables
        .iter()
        .map(|t| format!("  - name: {t}\n    properties:\n      - {{ name: id, logicalType: integer }}\n"))
        .collect();
    record(&format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: finance\n\
         servers:\n  - {{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, database: {}, schema: {schema} }}\n\
         schema:\n{objects}",
        database(place)
    ))
}

fn sync(installation: &str, grants: Vec<Grant>, releasing: bool) -> AccessSync {
    AccessSync { installation: installation.into(), grants, releasing }
}

/// The grants of `access` made real on `record`'s port, by a call of its installation.
async fn enforce(block: &Storage<PostgresBlock>, record: &Record, access: AccessSync) -> Result<AccessReport, String> {
    block.sync_access(record, &access, &Call::unfenced(access.installation.clone())).await.map_err(|e| e.to_string())
}

fn grant(id: i64, consumer: &str, write: bool) -> Grant {
    Grant { id, consumer: consumer.into(), database_role: Some(consumer.into()), write }
}

/// Connects as `role` (trust authentication on the local server).
async fn as_role(place: &Place, role: &str) -> PgConnection {
    PgConnection::connect(&format!("postgres://{role}@127.0.0.1:5432/{}", database(place))).await.unwrap()
}

/// The rows `role` reads from `table`, or the server's refusal.
async fn read(place: &Place, role: &str, table: &str) -> Result<i64, String> {
    let mut conn = as_role(place, role).await;
    let sql = format!("SELECT count(*) FROM {table}");
    conn.fetch_one(sql.as_str()).await.map(|r| r.get::<i64, _>(0)).map_err(|e| e.to_string())
}

async fn write(place: &Place, role: &str, table: &str) -> Result<(), String> {
    let mut conn = as_role(place, role).await;
    conn.execute(format!("INSERT INTO {table} (id) VALUES (99)").as_str()).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn role_exists(place: &Place, role: &str) -> bool {
    let mut conn = PgConnection::connect(&place.url).await.unwrap();
    sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .is_some()
}

fn denied(result: Result<impl std::fmt::Debug, String>) -> bool {
    result.as_ref().is_err_and(|e| e.contains("permission denied"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_enforced_by_postgres_itself() {
    let roles = Logins::new();
    let place = postgres().await;
    let (alice, bob) = (roles.create("alice").await, roles.create("bob").await);
    let (ours, theirs) = (roles.installation("a"), roles.installation("b"));
    let mut admin = PgConnection::connect(&place.url).await.unwrap();
    let warehouse = block(&place, false);
    let ledger = contract(&place, "ledger", "ledger_v1", &["entries", "accounts"]);
    let neighbour = contract(&place, "payroll", "payroll_v1", &["salaries"]);
    warehouse.provision(&ledger, &Call::unfenced(ours.clone())).await.unwrap();
    // The neighbouring port is another installation's.
    warehouse.provision(&neighbour, &Call::unfenced(theirs.clone())).await.unwrap();
    admin
        .execute("INSERT INTO ledger_v1.entries VALUES (1), (2); INSERT INTO ledger_v1.accounts VALUES (1); INSERT INTO payroll_v1.salaries VALUES (1)")
        .await
        .unwrap();

    // Before any grant: the schema itself is closed to the consumer.
    assert!(denied(read(&place, &alice, "ledger_v1.entries").await));

    let report = enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false)], false)).await.unwrap();
    assert_eq!(report, AccessReport::of(Enforcement::Enforced));
    assert_eq!(read(&place, &alice, "ledger_v1.entries").await, Ok(2));
    assert_eq!(read(&place, &alice, "ledger_v1.accounts").await, Ok(1));
    assert!(denied(write(&place, &alice, "ledger_v1.entries").await), "a read grant does not write");
    assert!(denied(read(&place, &alice, "payroll_v1.salaries").await), "the neighbouring port stays closed");
    assert!(denied(read(&place, &bob, "ledger_v1.entries").await), "nobody else gains anything");
    // The same grants again change nothing.
    let again = enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false)], false)).await.unwrap();
    assert_eq!(again, report);

    // A write grant writes; taking write away leaves read.
    enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false), grant(2, &bob, true)], false))
        .await
        .unwrap();
    assert_eq!(write(&place, &bob, "ledger_v1.entries").await, Ok(()));
    enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false), grant(2, &bob, false)], false))
        .await
        .unwrap();
    assert!(denied(write(&place, &bob, "ledger_v1.entries").await));
    assert_eq!(read(&place, &bob, "ledger_v1.entries").await, Ok(3));

    // Another installation's grant on another port: never touched by ours.
    let payroll_role = role_name(&theirs, 1);
    enforce(&warehouse, &neighbour, sync(&theirs, vec![grant(1, &bob, false)], false)).await.unwrap();
    enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false)], false)).await.unwrap();
    assert!(role_exists(&place, &payroll_role).await);
    assert_eq!(read(&place, &bob, "payroll_v1.salaries").await, Ok(1));

    // Bob's grant ended: its role lost its privileges and is gone.
    assert!(denied(read(&place, &bob, "ledger_v1.entries").await));
    assert!(!role_exists(&place, &role_name(&ours, 2)).await);

    // A port that moves away keeps the role of a grant still in force, with nothing here.
    enforce(&warehouse, &ledger, sync(&ours, vec![grant(1, &alice, false)], true)).await.unwrap();
    assert!(denied(read(&place, &alice, "ledger_v1.entries").await));
    assert!(role_exists(&place, &role_name(&ours, 1)).await);

    // Revoked: nothing left, and the role is dropped.
    enforce(&warehouse, &ledger, sync(&ours, vec![], false)).await.unwrap();
    assert!(denied(read(&place, &alice, "ledger_v1.entries").await));
    assert!(!role_exists(&place, &role_name(&ours, 1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_made_by_hand_are_drift_and_removed_only_when_configured() {
    let roles = Logins::new();
    let place = postgres().await;
    let (alice, bob) = (roles.create("alice").await, roles.create("bob").await);
    let ours = roles.installation("a");
    let mut admin = PgConnection::connect(&place.url).await.unwrap();
    let reporting = block(&place, false);
    let ledger = contract(&place, "ledger", "ledger_v1", &["entries"]);
    reporting.provision(&ledger, &Call::unfenced(ours.clone())).await.unwrap();
    let grants = || sync(&ours, vec![grant(1, &alice, false)], false);
    enforce(&reporting, &ledger, grants()).await.unwrap();
    admin
        .execute(
            format!("GRANT USAGE ON SCHEMA ledger_v1 TO \"{bob}\"; GRANT SELECT ON ledger_v1.entries TO \"{bob}\"")
                .as_str(),
        )
        .await
        .unwrap();
    let found = enforce(&reporting, &ledger, grants()).await.unwrap();
    assert_eq!(
        found.drift,
        [
            format!("role `{bob}` has USAGE on schema ledger_v1 (no grant explains it)"),
            format!("role `{bob}` has SELECT on ledger_v1.entries (no grant explains it)"),
        ]
    );
    assert_eq!(read(&place, &bob, "ledger_v1.entries").await, Ok(0), "only reported");

    let enforcing = block(&place, true);
    let fixed = enforce(&enforcing, &ledger, grants()).await.unwrap();
    assert!(fixed.drift.is_empty(), "{fixed:?}");
    assert_eq!(fixed.removed.len(), 2);
    assert!(denied(read(&place, &bob, "ledger_v1.entries").await));
    assert_eq!(read(&place, &alice, "ledger_v1.entries").await, Ok(0), "the grant stays");
    assert!(role_exists(&place, &bob).await, "a role meshplane did not create is never dropped");
    assert!(enforce(&enforcing, &ledger, grants()).await.unwrap().removed.is_empty());

    // A consumer whose identity names no database role, or one that does not exist: the grant
    // is ready, and the problem is said.
    let lost = Grant { id: 3, consumer: "carol".into(), database_role: None, write: false };
    let ghost = Grant { id: 4, consumer: "dave".into(), database_role: Some("nobody_here".into()), write: false };
    let report = enforce(&enforcing, &ledger, sync(&ours, vec![lost, ghost], false)).await.unwrap();
    assert_eq!(
        report.problems,
        [
            "grant 3: consumer `carol` has no database role, so nobody holds the grant",
            "grant 4: consumer `dave`'s database role `nobody_here` does not exist",
        ]
    );
}

/// The login a contract test reads a port as: the port's relations and nothing else, even
/// for SQL that never went through meshplane's reader (the sandbox holds if the attacker
/// knows the code); read-only; gone when the run ends. Its password reaches PostgreSQL only
/// as a SCRAM verifier, as does a service account's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_login_reads_its_port_and_nothing_else() {
    let roles = Logins::new();
    let place = postgres().await;
    let ours = roles.installation("a");
    roles.own(&format!("mp_{ours}_"));
    let mut admin = PgConnection::connect(&place.url).await.unwrap();
    // Had meshplane sent a password as text, PostgreSQL would now keep an MD5 hash of it.
    admin
        .execute(format!("ALTER DATABASE \"{}\" SET password_encryption = 'md5'", database(&place)).as_str())
        .await
        .unwrap();
    let warehouse = block(&place, false);
    let call = Call::unfenced(ours.clone());
    let ledger = contract(&place, "ledger", "ledger_v1", &["entries"]);
    let payroll = contract(&place, "payroll", "payroll_v1", &["salaries"]);
    for c in [&ledger, &payroll] {
        warehouse.provision(c, &call).await.unwrap();
    }
    admin
        .execute("INSERT INTO ledger_v1.entries VALUES (1); INSERT INTO payroll_v1.salaries VALUES (7)")
        .await
        .unwrap();
    let target = warehouse.test_target(&ledger, "warehouse", std::time::Duration::from_secs(60), &call).await.unwrap();
    let meshplane_core::checking::TestTarget::Postgres { user, password, schema, .. } = &target else {
        panic!("{target:?}")
    };
    assert_eq!(schema, "ledger_v1");
    let url = format!("postgres://{user}:{password}@127.0.0.1:5432/{}", database(&place));
    let mut login = PgConnection::connect(&url).await.unwrap();
    let count: i64 = login.fetch_one("SELECT count(*) FROM ledger_v1.entries").await.unwrap().get(0);
    assert_eq!(count, 1);
    // Unqualified names resolve in the catalog and the port, never in `public`: a function
    // planted there (as any login could before PostgreSQL 15), a closer match than the
    // catalog's, is not what a run calls.
    admin
        .execute("CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql AS $$ SELECT 'planted' $$")
        .await
        .unwrap();
    let count: i64 = login.fetch_one("SELECT count(*) FROM entries").await.unwrap().get(0);
    assert_eq!(count, 1, "the port's tables by their own names");
    let lowered: String = login.fetch_one("SELECT lower('ABC'::varchar)").await.unwrap().get(0);
    assert_eq!(lowered, "abc");
    for attack in [
        "SELECT count(*) FROM payroll_v1.salaries",
        "SELECT set_config('role', 'postgres', false)",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT query_to_xml('SELECT * FROM payroll_v1.salaries', true, false, '')",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT pg_ls_dir('.')",
        "SELECT count(*) FROM pg_authid",
        "INSERT INTO ledger_v1.entries VALUES (2)",
        "CREATE TABLE ledger_v1.planted (x int)",
        "CREATE ROLE planted",
        "COPY ledger_v1.entries TO PROGRAM 'id'",
    ] {
        let refused = login.execute(attack).await;
        assert!(refused.is_err(), "{attack} was let through");
    }
    let facts = sqlx::query(
        "SELECT a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolinherit, a.rolbypassrls, a.rolconnlimit, \
         (SELECT count(*) FROM pg_auth_members WHERE member = a.oid), left(a.rolpassword, 14) \
         FROM pg_authid a WHERE a.rolname = $1",
    )
    .bind(user)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let (sup, create_role, create_db, inherit, bypass): (bool, bool, bool, bool, bool) =
        (facts.get(0), facts.get(1), facts.get(2), facts.get(3), facts.get(4));
    assert!(!(sup || create_role || create_db || inherit || bypass));
    assert_eq!((facts.get::<i32, _>(5), facts.get::<i64, _>(6)), (1, 0), "one connection, member of no role");
    assert_eq!(facts.get::<String, _>(7), "SCRAM-SHA-256$", "only a verifier was sent");
    drop(login);
    warehouse.end_test(&target, &call).await.unwrap();
    assert!(!role_exists(&place, user).await, "the login is gone with the run");
    assert!(PgConnection::connect(&url).await.is_err());
    // A port another contract owns is not handed out, nor one not provisioned.
    let elsewhere = contract(&place, "grab", "payroll_v1", &["salaries"]);
    let refused = warehouse.test_target(&elsewhere, "warehouse", std::time::Duration::from_secs(60), &call).await;
    assert!(refused.unwrap_err().to_string().contains("was not created by meshplane for DataContract grab@v1"));
    let fresh = contract(&place, "fresh", "fresh_v1", &["t"]);
    let refused = warehouse.test_target(&fresh, "warehouse", std::time::Duration::from_secs(60), &call).await;
    assert!(refused.unwrap_err().to_string().contains("the port is not provisioned"));

    // A service account's login: the same, only the verifier is sent.
    let service = warehouse.create_login(&ours, "reporting").await.unwrap();
    let stored: String = sqlx::query("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = $1")
        .bind(&service.role)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "SCRAM-SHA-256$");
}

//! Access end to end, on the real PostgreSQL: requests through the API, approval by the
//! product's owners, the reconciler handing grants to the PostgreSQL block — and the
//! consumer's own login role reading exactly the granted port, then nothing once the grant
//! is revoked or expires. And 100 requests approved and revoked at once leave grants and
//! database privileges exactly consistent.

use std::collections::BTreeSet;

use meshplane_blocks::platform::Platform;
use meshplane_core::store::ApplyOptions;
use meshplane_core::testing::{Logins, Place};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::*;

fn who() -> ApplyOptions {
    ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false }
}

fn database(place: &Place) -> String {
    place.url.rsplit('/').next().unwrap().to_string()
}

/// A server with reconcilers and a PostgreSQL block on `data`'s database; the ledger product
/// (owned by olga) and its contract applied, and the contract Ready. The grant roles of the
/// store's installation are dropped with `logins`.
async fn warehouse(store_place: &Place, data: &Place, logins: &Logins) -> Server {
    let platform = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: warehouse\n    type: postgres\n\
         \x20   host: 127.0.0.1\n    database: {}\n    user: postgres\n",
        database(data)
    );
    let blocks = meshplane_blocks::build(Platform::from_yaml(&platform).unwrap(), &std::env::temp_dir()).unwrap();
    let store = Store::open(&store_place.url).await.unwrap();
    logins.own(&format!("mp_{}_", store.installation().await.unwrap()));
    let settings = Settings { workers: 4, ..settings() };
    let reconcilers = reconciler::spawn(store.clone(), blocks.clone(), settings, "one".into());
    let s = serve_with_blocks(store, Some(reconcilers.heartbeat), blocks).await;
    let team = "team:\n  name: ledger-team\n  members:\n    - { username: olga }\n";
    let server = format!(
        "servers:\n  - {{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, \
         database: {}, schema: ledger_v1 }}\n",
        database(data)
    );
    let ledger = contract("ledger", "1.0.0", "finance", &format!("{server}{team}"));
    let neighbour = contract("payroll", "1.0.0", "finance", &server.replace("ledger_v1", "payroll_v1"));
    let docs = [ledger, neighbour, format!("{}{team}", product("ledger", "finance", &[], &["ledger"]))];
    let (status, body) = s.apply(docs.join("---\n"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for c in ["ledger@v1", "payroll@v1"] {
        eventually(&s, &format!("/api/v1/contracts/{c}"), |b| condition(b, "Ready")["status"] == "True").await;
    }
    s
}

async fn user(s: &Server, name: &str, database_role: Option<&str>) -> reqwest::Client {
    let p = Principal {
        name: name.into(),
        kind: PrincipalKind::User,
        database_role: database_role.map(str::to_string),
        groups: vec![],
        platform_admin: false,
        domains: vec![],
        oidc: None,
    };
    s.store.put_principal(&p, &who()).await.unwrap();
    client(&s.store.create_token(name, "grants", None, &who()).await.unwrap().token)
}

async fn post(http: &reqwest::Client, url: String, body: &str) -> (u16, Any) {
    let res = http.post(url).body(body.to_string()).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Any::Null))
}

/// What `login` (`role` or `role:password`) reads of `table`: the row count, or the server's
/// refusal.
async fn read(data: &Place, login: &str, table: &str) -> Result<i64, String> {
    let url = format!("postgres://{login}@127.0.0.1:5432/{}", database(data));
    let mut conn = PgConnection::connect(&url).await.map_err(|e| e.to_string())?;
    let sql = format!("SELECT count(*) FROM {table}");
    conn.fetch_one(sql.as_str()).await.map(|r| r.get::<i64, _>(0)).map_err(|e| e.to_string())
}

/// Waits until `login`'s read of `table` is allowed (`Ok`) or denied (`Err`).
async fn until_read(data: &Place, login: &str, table: &str, allowed: bool) {
    for _ in 0..200 {
        if read(data, login, table).await.is_ok() == allowed {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{login} reading {table}: never {}", if allowed { "allowed" } else { "denied" });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reads_exactly_the_granted_port_until_revoked_or_expired() {
    let logins = Logins::new();
    let (store_place, data) = (sqlite().await, meshplane_core::testing::postgres().await);
    let s = warehouse(&store_place, &data, &logins).await;
    let carol_login = logins.create("carol").await;
    // Carol's identity does not say her database role yet.
    let carol = user(&s, "carol", None).await;
    let olga = user(&s, "olga", None).await;
    let entries = "ledger_v1.ledger";
    let denied = read(&data, &carol_login, entries).await.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");

    let ask = r#"{"product":"ledger","outputPort":"ledger","purpose":"month-end close"}"#;
    let (status, request) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!((status, request["state"].as_str()), (200, Some("pending")), "{request}");
    assert_eq!(request["approvers"]["first"], serde_json::json!(["ledger-team", "olga"]));
    let id = request["id"].as_i64().unwrap();
    let approve = |http: reqwest::Client, id: i64| {
        let url = format!("{}/api/v1/access/{id}/approve", s.base);
        async move { post(&http, url, r#"{"comment":"ok"}"#).await }
    };
    assert_eq!(approve(carol.clone(), id).await.0, 403, "a consumer does not approve her own request");
    let (status, granted) = approve(olga.clone(), id).await;
    assert_eq!((status, granted["kind"].as_str(), granted["state"].as_str()), (200, Some("Grant"), Some("active")));

    let waiting =
        eventually(&s, "/api/v1/contracts/ledger@v1", |b| condition(b, "AccessInSync")["reason"] == "GrantProblem")
            .await;
    let message = condition(&waiting, "AccessInSync")["message"].as_str().unwrap();
    assert!(message.contains("consumer `carol` has no database role"), "{message}");
    assert!(read(&data, &carol_login, entries).await.is_err());
    // Recording it is enough: the grant follows the identity.
    user(&s, "carol", Some(&carol_login)).await;
    until_read(&data, &carol_login, entries, true).await;
    let payroll = read(&data, &carol_login, "payroll_v1.payroll").await.unwrap_err();
    assert!(payroll.contains("permission denied"), "the neighbouring port stays closed: {payroll}");
    let contract = eventually(&s, "/api/v1/contracts/ledger@v1", |b| {
        condition(b, "AccessInSync")["message"] == "1 grant(s) in force, enforced"
    })
    .await;
    assert_eq!(condition(&contract, "AccessInSync")["status"], "True");
    let (_, grant) = s.get(&format!("/api/v1/access/{id}")).await;
    assert_eq!(grant["enforcement"], "enforced");

    let (status, revoked) = post(&olga, format!("{}/api/v1/access/{id}/revoke", s.base), "").await;
    assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")));
    until_read(&data, &carol_login, entries, false).await;

    // A grant with an end date ends by itself.
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
    let ask = format!(r#"{{"product":"ledger","outputPort":"ledger","purpose":"audit","until":"{until}"}}"#);
    let (_, request) = post(&carol, format!("{}/api/v1/access", s.base), &ask).await;
    let id = request["id"].as_i64().unwrap();
    assert_eq!(approve(olga.clone(), id).await.0, 200);
    until_read(&data, &carol_login, entries, true).await;
    until_read(&data, &carol_login, entries, false).await;
    let expired = eventually(&s, &format!("/api/v1/access/{id}"), |g| g["state"] == "expired").await;
    assert_eq!(expired["kind"], "Grant");
    let (_, audit) = s.get(&format!("/api/v1/audit?kind=AccessRequest&name={id}")).await;
    let trail: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(trail, [("requested", "carol"), ("approved", "olga"), ("expired", "meshplane")]);
}

/// The grant roles of installation `inst` that hold SELECT on the table, each with its members.
async fn granted(data: &Place, inst: &str, table: &str) -> BTreeSet<(String, String)> {
    let mut conn = PgConnection::connect(&data.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT r.rolname, coalesce(m.rolname, '') FROM pg_class c \
         CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee \
         LEFT JOIN pg_auth_members am ON am.roleid = r.oid LEFT JOIN pg_roles m ON m.oid = am.member \
         WHERE c.oid = $1::regclass AND a.privilege_type = 'SELECT' AND left(r.rolname, length($2)) = $2",
    )
    .bind(table)
    .bind(format!("mp_{inst}_g"))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_requests_approved_and_revoked_at_once_stay_consistent() {
    let logins = Logins::new();
    let (store_place, data) = (meshplane_core::testing::postgres().await, meshplane_core::testing::postgres().await);
    let s = warehouse(&store_place, &data, &logins).await;
    let olga = user(&s, "olga", None).await;
    let mut ids = Vec::new();
    let mut consumers = std::collections::BTreeMap::new();
    for i in 0..100 {
        let login = logins.create(&format!("c{i}")).await;
        let http = user(&s, &format!("c{i}"), Some(&login)).await;
        let (status, r) = post(
            &http,
            format!("{}/api/v1/access", s.base),
            r#"{"product":"ledger","outputPort":"ledger","purpose":"load"}"#,
        )
        .await;
        assert_eq!(status, 200, "{r}");
        consumers.insert(r["id"].as_i64().unwrap(), login);
        ids.push(r["id"].as_i64().unwrap());
    }
    let act = |verb: &'static str, id: i64| {
        let (http, url) = (olga.clone(), format!("{}/api/v1/access/{id}/{verb}", s.base));
        tokio::spawn(async move { post(&http, url, "").await.0 })
    };
    let approvals: Vec<_> = ids.iter().map(|id| act("approve", *id)).collect();
    for a in approvals {
        assert_eq!(a.await.unwrap(), 200);
    }
    // Every other grant is revoked while the reconciler is still making the approvals real.
    let revocations: Vec<_> = ids.iter().step_by(2).map(|id| act("revoke", *id)).collect();
    for r in revocations {
        assert_eq!(r.await.unwrap(), 200);
    }
    let installation = s.store.installation().await.unwrap();
    let expected: BTreeSet<(String, String)> =
        ids.iter().skip(1).step_by(2).map(|id| (format!("mp_{installation}_g{id}"), consumers[id].clone())).collect();
    let mut found = BTreeSet::new();
    for _ in 0..300 {
        found = granted(&data, &installation, "ledger_v1.ledger").await;
        if found == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found, expected, "exactly the active grants hold SELECT, each held by its consumer alone");
    let (_, active) = s.get("/api/v1/access?state=active").await;
    assert_eq!(active.as_array().unwrap().len(), 50);
    for id in ids.iter().step_by(2).take(3) {
        assert!(read(&data, &consumers[id], "ledger_v1.ledger").await.is_err());
    }
    assert_eq!(read(&data, &consumers[&ids[1]], "ledger_v1.ledger").await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_reads_through_its_service_accounts_own_login() {
    let logins = Logins::new();
    let (store_place, data) = (sqlite().await, meshplane_core::testing::postgres().await);
    let s = warehouse(&store_place, &data, &logins).await;
    let olga = user(&s, "olga", None).await;
    let team = "team:\n  name: ledger-team\n  members:\n    - { username: olga }\n";
    let reporting = format!("{}{team}", product("reporting", "finance", &["ledger"], &[]));
    assert_eq!(s.apply(reporting, "").await.0, StatusCode::OK);
    let account = r#"{"kind":"service"}"#;
    let res = s.http.put(format!("{}/api/v1/principals/reporting", s.base)).body(account).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (status, login) =
        post(&s.http, format!("{}/api/v1/principals/reporting/login?block=warehouse", s.base), "").await;
    assert_eq!(status, 200, "{login}");
    let (role, password) = (login["role"].as_str().unwrap(), login["password"].as_str().unwrap());
    let installation = s.store.installation().await.unwrap();
    assert_eq!(role, format!("mp_{installation}_s_reporting"));
    assert!(password.len() >= 32);
    let (_, me) = s.get("/api/v1/principals").await;
    let recorded = me.as_array().unwrap().iter().find(|p| p["name"] == "reporting").unwrap().clone();
    assert_eq!(recorded["databaseRole"], role);

    let ask = r#"{"product":"ledger","outputPort":"ledger","consumer":"reporting","inputPort":"ledger","purpose":"dashboards"}"#;
    let (status, request) = post(&olga, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!(status, 200, "{request}");
    let id = request["id"].as_i64().unwrap();
    let (status, refused) = post(&olga, format!("{}/api/v1/access/{id}/approve", s.base), "").await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")), "her own request: another approves it");
    assert_eq!(post(&s.http, format!("{}/api/v1/access/{id}/approve", s.base), "").await.0, 200);
    let login = format!("{role}:{password}");
    until_read(&data, &login, "ledger_v1.ledger", true).await;
    assert!(read(&data, &login, "payroll_v1.payroll").await.is_err());

    // A new password replaces the old; the password is nowhere but in the answers.
    let (_, again) = post(&s.http, format!("{}/api/v1/principals/reporting/login?block=warehouse", s.base), "").await;
    assert_ne!(again["password"], login.split(':').nth(1).unwrap());
    let (_, audit) = s.get("/api/v1/audit?limit=1000").await;
    assert!(!audit.to_string().contains(password), "the password is not in the audit log");
    let (status, refused) = post(&s.http, format!("{}/api/v1/principals/olga/login?block=warehouse", s.base), "").await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("invalid-document")));
    let (status, _) = post(&s.http, format!("{}/api/v1/principals/reporting/login?block=nowhere", s.base), "").await;
    assert_eq!(status, 404);
}

/// Issue #24's access policies on the real thing: a policy approves members of the data's
/// domain without a human and caps the grant at 30 days; the PostgreSQL block makes the
/// grant real at once, with the capped end date; a consumer the policy does not cover waits
/// for the owners as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_approves_a_member_of_the_domain_with_a_capped_grant_and_no_human() {
    let logins = Logins::new();
    let (store_place, data) = (sqlite().await, meshplane_core::testing::postgres().await);
    let s = warehouse(&store_place, &data, &logins).await;
    let policy = "apiVersion: meshplane/v1\nkind: Policy\nid: finance-self-service\nversion: 1.2.0\ndomain: platform\n\
                  scope: { domains: [finance] }\nactions: [access-request]\nenforcement: deny\nrego: |\n  \
                  package meshplane.self_service\n  \
                  sensitive if { some p in input.properties; p.classification in {\"pii\", \"restricted\"} }\n  \
                  approve if { not sensitive; input.request.access == \"read\"; \"finance\" in input.consumer.memberOf }\n  \
                  max_days := 30\n";
    // Carol is a member of the finance domain: her team owns one of its contracts.
    let budget =
        contract("budget", "1.0.0", "finance", "team:\n  name: analysts\n  members:\n    - { username: carol }\n");
    let (status, body) = s.apply(format!("{policy}---\n{budget}"), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let carol_login = logins.create("carol").await;
    let carol = user(&s, "carol", Some(&carol_login)).await;
    let dave = user(&s, "dave", None).await;
    let entries = "ledger_v1.ledger";
    assert!(read(&data, &carol_login, entries).await.is_err());

    let asked_at = time::OffsetDateTime::now_utc();
    let ask =
        r#"{"product":"ledger","outputPort":"ledger","purpose":"month-end close","until":"2099-01-01T00:00:00Z"}"#;
    let (status, grant) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!(
        (status, grant["kind"].as_str(), grant["state"].as_str()),
        (200, Some("Grant"), Some("active")),
        "{grant}"
    );
    assert_eq!(grant["decisions"][0]["by"], "policy/finance-self-service@1.2.0");
    let until =
        time::OffsetDateTime::parse(grant["until"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    let answered_at = time::OffsetDateTime::now_utc();
    let month = time::Duration::days(30);
    // 30 days from the approval, which came between the ask and the answer (kept to the ms).
    let in_time = until >= asked_at + month - time::Duration::milliseconds(1) && until <= answered_at + month;
    assert!(in_time, "{grant}");
    until_read(&data, &carol_login, entries, true).await;
    let id = grant["id"].as_i64().unwrap();
    let enforced = eventually(&s, &format!("/api/v1/access/{id}"), |g| g["enforcement"] == "enforced").await;
    assert_eq!(enforced["until"], grant["until"], "the capped end date is the grant's");
    let (_, audit) = s.get(&format!("/api/v1/audit?kind=AccessRequest&name={id}")).await;
    let trail: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(trail, [("requested", "carol"), ("approved", "policy/finance-self-service@1.2.0")]);
    let answers = &audit[1]["after"]["policy"]["answers"];
    assert!(answers.as_array().unwrap().iter().any(|a| a["effect"] == "cap" && a["version"] == "1.2.0"), "{audit}");

    // Dave is no member of finance: his request waits for the owners, capped all the same.
    let (status, waiting) = post(&dave, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!((status, waiting["state"].as_str()), (200, Some("pending")), "{waiting}");
    assert_eq!(waiting["policy"]["maxDays"], 30.0);
}

//! The domain boundary, attacked: a plain member of `sales` tries, against a running server
//! with real PostgreSQL (the block's user a superuser, as in `examples/platform.yaml`) and a
//! lake on a local folder, every way found to read or change `finance`'s data. Each test is
//! one attack of docs/security.md's list and asserts that it fails and changes nothing.

use meshplane_blocks::platform::Platform;
use meshplane_core::store::ApplyOptions;
use meshplane_core::testing::{Logins, Place};
use sqlx::{Connection, Executor, PgConnection, Row};

use crate::*;

fn who() -> ApplyOptions {
    ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false }
}

/// Finance's secret: it must never reach anyone outside finance.
const SECRET: &str = "TOPSECRET-LEDGER-7731";

/// A platform with a lake (on a folder of its own) and a PostgreSQL block (on a database of
/// its own, reached as the superuser `postgres`), reconcilers, and finance's ledger: a
/// contract with a PostgreSQL port holding one secret row, owned by fiona, and its product.
pub(crate) struct Mesh {
    pub s: Server,
    pub data: Place,
    pub lake: std::path::PathBuf,
    // Dropped after `data`: the roles the test made go once nothing uses them.
    pub logins: Logins,
    _store: Place,
}

impl Mesh {
    pub async fn new() -> Mesh {
        let logins = Logins::new();
        let (store_place, data) = (sqlite().await, meshplane_core::testing::postgres().await);
        let lake = std::env::temp_dir().join(format!("mplake-{}", logins.suffix));
        std::fs::create_dir_all(&lake).unwrap();
        let platform = format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: warehouse\n    type: postgres\n\
             \x20   host: 127.0.0.1\n    database: {}\n    user: postgres\n  - name: lake\n    type: lake\n    root: {}\n",
            db(&data),
            lake.display()
        );
        let blocks = meshplane_blocks::build(Platform::from_yaml(&platform).unwrap(), &lake).unwrap();
        let store = Store::open(&store_place.url).await.unwrap();
        logins.own(&format!("mp_{}_", store.installation().await.unwrap()));
        let settings = Settings { workers: 4, ..settings() };
        let reconcilers = reconciler::spawn(store.clone(), blocks.clone(), settings, "one".into());
        let s = serve_with_blocks(store, Some(reconcilers.heartbeat), blocks).await;
        let mesh = Mesh { s, data, lake, logins, _store: store_place };
        let (status, body) = mesh.s.apply(mesh.ledger(""), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        mesh.ready("ledger@v1").await;
        mesh.sql(&format!("INSERT INTO ledger_v1.ledger VALUES ('1', '{SECRET}')")).await;
        mesh
    }

    /// Finance's ledger contract and product, owned by fiona; `extra` is added to the contract.
    pub fn ledger(&self, extra: &str) -> String {
        let team = "team:\n  name: finance-team\n  members:\n    - { username: fiona }\n";
        let contract = format!(
            "apiVersion: v3.1.0\nkind: DataContract\nid: ledger\nversion: 1.0.0\nstatus: active\ndomain: finance\n\
             servers:\n  - {}\nschema:\n  - name: ledger\n    properties:\n      - {{ name: id, logicalType: string }}\n\
             \x20     - {{ name: secret, logicalType: string }}\n{team}{extra}",
            self.pg_server("ledger_v1")
        );
        format!("{contract}---\n{}{team}", product("ledger", "finance", &[], &["ledger"]))
    }

    /// A PostgreSQL server on the block's database, in `schema`.
    pub fn pg_server(&self, schema: &str) -> String {
        format!(
            "{{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, database: {}, schema: {schema} }}",
            db(&self.data)
        )
    }

    /// A user with a token, in no domain's admins; with a database login role of its own.
    pub async fn user(&self, name: &str, admin_of: &[&str]) -> (reqwest::Client, String) {
        let login = self.logins.create(name).await;
        let p = Principal {
            name: name.into(),
            kind: PrincipalKind::User,
            database_role: Some(login.clone()),
            groups: vec![],
            platform_admin: false,
            domains: admin_of.iter().map(|d| d.to_string()).collect(),
            oidc: None,
        };
        self.s.store.put_principal(&p, &who()).await.unwrap();
        (client(&self.s.store.create_token(name, "attack", None, &who()).await.unwrap().token), login)
    }

    pub async fn ready(&self, contract: &str) -> Any {
        eventually(&self.s, &format!("/api/v1/contracts/{contract}"), |b| condition(b, "Ready")["status"] == "True")
            .await
    }

    /// Runs `sql` on the block's database as the superuser; the rows' first columns as text.
    pub async fn sql(&self, sql: &str) -> Vec<String> {
        let mut conn = PgConnection::connect(&self.data.url).await.unwrap();
        let rows = conn.fetch_all(sql).await.unwrap();
        rows.iter().map(|r| r.try_get::<Option<String>, _>(0).ok().flatten().unwrap_or_default()).collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base)
    }
}

fn db(place: &Place) -> String {
    place.url.rsplit('/').next().unwrap().to_string()
}

async fn send(call: reqwest::RequestBuilder) -> (u16, Any) {
    let res = call.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Any::String(text)))
}

/// What `login` reads of `table` (the number of rows), or the server's refusal.
async fn read_as(mesh: &Mesh, login: &str, table: &str) -> Result<i64, String> {
    let url = format!("postgres://{login}@127.0.0.1:5432/{}", db(&mesh.data));
    let mut conn = PgConnection::connect(&url).await.map_err(|e| e.to_string())?;
    let sql = format!("SELECT count(*) FROM {table}");
    conn.fetch_one(sql.as_str()).await.map(|r| r.get::<i64, _>(0)).map_err(|e| e.to_string())
}

/// Sam's shop: a sales product (owned by sam) providing his own `orders` contract.
fn shop(extra_ports: &str) -> String {
    shop_at("1.0.0", extra_ports)
}

fn shop_at(version: &str, extra_ports: &str) -> String {
    let team = "team:\n  name: shop-team\n  members:\n    - { username: sam }\n";
    format!(
        "apiVersion: v1.0.0\nkind: DataProduct\nid: shop\nstatus: active\ndomain: sales\nversion: {version}\n\
         outputPorts:\n  - {{ name: orders, version: 1.0.0, contractId: orders }}\n{extra_ports}{team}"
    )
}

/// A sales contract of sam's, with `servers` and `schema` as given.
fn sams_contract(id: &str, version: &str, servers: &str, schema: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: {version}\nstatus: active\ndomain: sales\n\
         servers:\n{servers}{}team:\n  name: shop-team\n  members:\n    - {{ username: sam }}\n",
        if schema.is_empty() { String::new() } else { format!("schema:\n{schema}") }
    )
}

/// Item 1: an output port of sam's own product names finance's contract. From there, old
/// releases let him apply, delete and test it, ask for access through his own port and
/// approve it himself, and the PostgreSQL block granted him finance's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_cannot_provide_another_domains_contract() {
    let mesh = Mesh::new().await;
    let (sam, sam_login) = mesh.user("sam", &["sales"]).await;
    let orders = sams_contract("orders", "1.0.0", &format!("  - {}\n", mesh.pg_server("orders_v1")), "");
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(format!("{orders}---\n{}", shop("")))).await;
    assert_eq!(status, 200, "{body}");
    let stolen = shop_at("1.1.0", "  - { name: books, version: 1.0.0, contractId: ledger }\n");
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(stolen)).await;
    assert_eq!(status, 409, "an output port of a sales product names finance's contract: {body}");
    assert_eq!(body["code"], "cross-domain-port", "{body}");
    // Nothing of the ledger is his to manage, through any route.
    let edited = mesh.ledger("tags: [mine]\n").replace("version: 1.0.0\nstatus", "version: 1.1.0\nstatus");
    let (status, _) = send(sam.post(mesh.url("/api/v1/apply")).body(edited)).await;
    assert_eq!(status, 403);
    let (status, _) = send(sam.delete(mesh.url("/api/v1/contracts/ledger@v1"))).await;
    assert_eq!(status, 403);
    let (status, _) = send(sam.post(mesh.url("/api/v1/contracts/ledger@v1/tests?samples=5"))).await;
    assert_eq!(status, 403);
    // Asking through finance's own product: the approvers are the contract's owners, not him.
    let ask = r#"{"product":"ledger","outputPort":"ledger","purpose":"curiosity"}"#;
    let (status, request) = send(sam.post(mesh.url("/api/v1/access")).body(ask)).await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["approvers"]["first"], serde_json::json!(["finance-team", "fiona"]));
    let id = request["id"].as_i64().unwrap();
    let (status, _) = send(sam.post(mesh.url(&format!("/api/v1/access/{id}/approve")))).await;
    assert_eq!(status, 403, "a requester never approves his own request");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let denied = read_as(&mesh, &sam_login, "ledger_v1.ledger").await.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
}

/// Item 2: a contract whose server names another contract's schema. Old releases adopted it:
/// they added columns to finance's table, granted on it and revoked finance's grant roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_cannot_provision_into_a_schema_it_did_not_create() {
    let mesh = Mesh::new().await;
    let (sam, sam_login) = mesh.user("sam", &["sales"]).await;
    let schema = "  - name: ledger\n    properties:\n      - { name: id, logicalType: string }\n\
                  \x20     - { name: secret, logicalType: string }\n      - { name: hijacked, logicalType: string }\n";
    let grab = sams_contract("grab", "1.0.0", &format!("  - {}\n", mesh.pg_server("ledger_v1")), schema);
    let product = shop("  - { name: grab, version: 1.0.0, contractId: grab }\n");
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(format!("{grab}---\n{product}"))).await;
    assert_eq!(status, 200, "{body}");
    let refused = eventually(&mesh.s, "/api/v1/contracts/grab@v1", |b| {
        condition(b, "Provisioned")["reason"] == "ProvisioningRefused"
    })
    .await;
    let message = condition(&refused, "Provisioned")["message"].as_str().unwrap();
    assert!(message.contains("was not created by meshplane for DataContract grab@v1"), "{message}");
    let columns = mesh
        .sql("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'ledger_v1' ORDER BY 1")
        .await;
    assert_eq!(columns, ["id", "secret"], "finance's table is as finance declared it");
    // Asking for his own port and approving it himself gets him nothing of finance's.
    let ask = r#"{"product":"shop","outputPort":"grab","purpose":"mine"}"#;
    let (status, request) = send(sam.post(mesh.url("/api/v1/access")).body(ask)).await;
    if status == 200 {
        let id = request["id"].as_i64().unwrap();
        send(sam.post(mesh.url(&format!("/api/v1/access/{id}/approve")))).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(read_as(&mesh, &sam_login, "ledger_v1.ledger").await.is_err());
}

/// Item 3: a view over any relation of the database (here the catalog of passwords), owned by
/// the block's user and granted to whoever asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_made_only_over_the_contracts_own_tables() {
    let mesh = Mesh::new().await;
    let (sam, sam_login) = mesh.user("sam", &["sales"]).await;
    let schema = "  - name: peek\n    physicalName: ledger_v1.ledger\n    properties:\n      - { name: secret, logicalType: string }\n\
                  \x20 - name: roles\n    physicalName: pg_catalog.pg_authid\n    properties:\n      - { name: rolname, logicalType: string }\n\
                  \x20     - { name: rolpassword, logicalType: string }\n";
    let peek = sams_contract("peek", "1.0.0", &format!("  - {}\n", mesh.pg_server("peek_v1")), schema);
    let product = shop("  - { name: peek, version: 1.0.0, contractId: peek }\n");
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(format!("{peek}---\n{product}"))).await;
    assert_eq!(status, 200, "{body}");
    let refused = eventually(&mesh.s, "/api/v1/contracts/peek@v1", |b| {
        condition(b, "Provisioned")["reason"] == "ProvisioningRefused"
    })
    .await;
    let message = condition(&refused, "Provisioned")["message"].as_str().unwrap();
    assert!(message.contains("not a table of this contract"), "{message}");
    let views = mesh.sql("SELECT viewname::text FROM pg_views WHERE schemaname = 'peek_v1'").await;
    assert!(views.is_empty(), "no view was made: {views:?}");
    assert!(read_as(&mesh, &sam_login, "peek_v1.roles").await.is_err());
}

/// Item 4: a contract SQL rule that leaves the sandbox (`set_config('role', ...)` undoes the
/// run's role when the session user is a superuser), reads finance's table, the catalogs and
/// the server's files, and carries what it read back in its error text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_sql_cannot_leave_its_sandbox() {
    let mesh = Mesh::new().await;
    let (sam, _) = mesh.user("sam", &["sales"]).await;
    let escapes = [
        "SELECT CAST(set_config('role', 'postgres', true) || query_to_xml('SELECT secret FROM ledger_v1.ledger', true, false, '')::text AS int)",
        "SELECT CAST(set_config('role', 'postgres', true) || query_to_xml('SELECT pg_read_file(''/etc/hostname'')', true, false, '')::text AS int)",
        "SELECT CAST(set_config('role', 'postgres', true) || query_to_xml('SELECT string_agg(rolname, '','') FROM pg_authid', true, false, '')::text AS int)",
        "SELECT CAST((SELECT string_agg(secret, ',') FROM ledger_v1.ledger) AS int)",
    ];
    let rules: String =
        escapes.iter().map(|q| format!("      - {{ type: sql, query: \"{q}\", mustBe: 0 }}\n")).collect();
    let schema = format!(
        "  - name: orders\n    properties:\n      - {{ name: id, logicalType: string }}\n    quality:\n{rules}"
    );
    let orders = sams_contract("orders", "1.0.0", &format!("  - {}\n", mesh.pg_server("orders_v1")), &schema);
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(format!("{orders}---\n{}", shop("")))).await;
    assert_eq!(status, 200, "{body}");
    mesh.ready("orders@v1").await;
    let (status, run) = send(sam.post(mesh.url("/api/v1/contracts/orders@v1/tests?samples=5"))).await;
    assert_eq!(status, 200, "{run}");
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let text = run.to_string();
    assert!(!text.contains(SECRET), "finance's data came back: {text}");
    assert!(!text.contains("postgres,"), "the catalog of roles came back: {text}");
    assert!(hostname.trim().is_empty() || !text.contains(hostname.trim()), "a server file came back: {text}");
    let sql: Vec<&Any> = run["report"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"].as_str().unwrap().contains("sql"))
        .collect();
    assert_eq!(sql.len(), escapes.len());
    assert!(sql.iter().all(|r| r["outcome"] == "error"), "{sql:?}");
}

/// Item 9: contract ids belong to the domain that registered them, even after deletion.
/// Old releases let another domain squat a new major of finance's id, or take the id over
/// once finance deleted it and re-adopt its schema with the data in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_id_stays_with_its_domain() {
    let mesh = Mesh::new().await;
    let (sam, _) = mesh.user("sam", &["sales"]).await;
    let squat = |version: &str, schema: &str| {
        sams_contract("ledger", version, &format!("  - {}\n", mesh.pg_server(schema)), "")
    };
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(squat("2.0.0", "ledger_v2"))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("id-claimed")), "{body}");
    // Finance deletes its ledger; the id still is finance's.
    let (fiona, _) = mesh.user("fiona", &[]).await;
    for path in ["/api/v1/products/ledger", "/api/v1/contracts/ledger@v1"] {
        let (status, body) = send(fiona.delete(mesh.url(path))).await;
        assert_eq!(status, 200, "{body}");
    }
    eventually(&mesh.s, "/api/v1/contracts/ledger@v1", |b| b["code"] == "not-found").await;
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(squat("1.0.0", "ledger_v1"))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("id-claimed")), "{body}");
    assert_eq!(mesh.sql("SELECT secret FROM ledger_v1.ledger").await, [SECRET], "the retained data is untouched");
}

/// Item 10: the data's owners see and decide every request for their contract, whichever
/// product of their domain it came through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_datas_owners_see_approve_and_revoke_requests_for_it() {
    let mesh = Mesh::new().await;
    // Paul owns another finance product that also provides the ledger.
    let team = "team:\n  name: paul-team\n  members:\n    - { username: paul }\n";
    let reports = format!("{}{team}", product("reports", "finance", &[], &["ledger"]));
    assert_eq!(mesh.s.apply(reports, "").await.0, StatusCode::OK);
    let (carol, carol_login) = mesh.user("carol", &[]).await;
    let (fiona, _) = mesh.user("fiona", &[]).await;
    let ask = r#"{"product":"reports","outputPort":"ledger","purpose":"month-end"}"#;
    let (status, request) = send(carol.post(mesh.url("/api/v1/access")).body(ask)).await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["domain"], "finance");
    let id = request["id"].as_i64().unwrap();
    let (status, seen) = send(fiona.get(mesh.url(&format!("/api/v1/access/{id}")))).await;
    assert_eq!(status, 200, "the contract's owner sees it: {seen}");
    let (status, body) = send(fiona.post(mesh.url(&format!("/api/v1/access/{id}/approve")))).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("active")), "{body}");
    let mut read = Err(String::new());
    for _ in 0..100 {
        read = read_as(&mesh, &carol_login, "ledger_v1.ledger").await;
        if read.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(read, Ok(1));
    let (status, body) = send(fiona.post(mesh.url(&format!("/api/v1/access/{id}/revoke")))).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
}

/// Item 15: a test report's texts are data too; readers who do not manage the contract get
/// the verdicts, and nobody gets samples of columns classified as restricted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_show_data_only_to_its_managers_and_never_classified_columns() {
    let mesh = Mesh::new().await;
    let (fiona, _) = mesh.user("fiona", &[]).await;
    let (carol, _) = mesh.user("carol", &[]).await;
    let journal = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: journal\nversion: 1.0.0\nstatus: active\ndomain: finance\n\
         servers:\n  - {}\nschema:\n  - name: journal\n    properties:\n\
         \x20     - {{ name: id, logicalType: string, logicalTypeOptions: {{ pattern: \"^[0-9]+$\" }} }}\n\
         \x20     - {{ name: secret, logicalType: string, classification: restricted, logicalTypeOptions: {{ pattern: \"^public-\" }} }}\n\
         \x20   quality:\n      - {{ type: sql, query: \"SELECT CAST(max(secret) AS int) FROM journal\", mustBe: 0 }}\n\
         team:\n  name: finance-team\n  members:\n    - {{ username: fiona }}\n",
        mesh.pg_server("journal_v1")
    );
    assert_eq!(mesh.s.apply(journal, "").await.0, StatusCode::OK);
    mesh.ready("journal@v1").await;
    mesh.sql(&format!("INSERT INTO journal_v1.journal VALUES ('A', '{SECRET}')")).await;
    let (status, run) = send(fiona.post(mesh.url("/api/v1/contracts/journal@v1/tests?samples=5"))).await;
    assert_eq!(status, 200, "{run}");
    let results = run["report"]["results"].as_array().unwrap().clone();
    let result = |key: &str| results.iter().find(|r| r["key"] == key).cloned().unwrap_or(Any::Null);
    assert_eq!(result("journal.id.pattern")["samples"], serde_json::json!(["A"]), "unclassified: sampled: {run}");
    assert_eq!(result("journal.secret.pattern")["outcome"], "fail");
    assert!(result("journal.secret.pattern")["samples"].is_null(), "restricted: never sampled: {run}");
    // The SQL rule ran on the port (its table named as the contract names it), and its error
    // quotes the value: that is the detail readers who do not manage the contract never get.
    assert!(result("journal.sql")["detail"].as_str().is_some_and(|d| d.contains(SECRET)), "{run}");
    let (_, theirs) = send(carol.get(mesh.url("/api/v1/contracts/journal@v1/tests"))).await;
    let text = theirs.to_string();
    assert!(!text.contains(SECRET), "a reader who does not manage it sees the data: {text}");
    assert!(!text.contains("\"detail\"") && !text.contains("\"samples\""), "{text}");
}

/// A sales contract of sam's on the lake, at `path`, with `schema`.
fn lake_contract(id: &str, path: &str, schema: &str) -> String {
    let server = format!("  - {{ server: lake, type: local, environment: dev, path: \"{path}\", format: csv }}\n");
    sams_contract(id, "1.0.0", &server, schema)
}

/// Item 5: the server read any local path a contract named (absolute, `..`, or `..`
/// smuggled in through `{object}`), on demand and on schedule, and showed what it read in
/// samples and drift messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reads_no_file_outside_the_ports_prefix() {
    let mesh = Mesh::new().await;
    let (sam, _) = mesh.user("sam", &["sales"]).await;
    let outside = mesh.lake.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.csv"), format!("id,hidden_column\n{SECRET},1\n{SECRET},2\n")).unwrap();
    let schema = "  - name: secret\n    properties:\n      - { name: id, logicalType: string, unique: true }\n";
    let absolute = lake_contract("orders", &format!("{}/secret.csv", outside.display()), schema);
    let dir = outside.file_name().unwrap().to_string_lossy().to_string();
    let smuggled = lake_contract(
        "returns",
        &format!("{}/sales/{{object}}.csv", mesh.lake.display()),
        &format!(
            "  - name: secret\n    physicalName: ../../{dir}/secret\n    properties:\n      - {{ name: id, logicalType: string, unique: true }}\n"
        ),
    );
    let product = shop("  - { name: returns, version: 1.0.0, contractId: returns }\n");
    let (status, body) =
        send(sam.post(mesh.url("/api/v1/apply")).body(format!("{absolute}---\n{smuggled}---\n{product}"))).await;
    assert_eq!(status, 200, "{body}");
    for contract in ["orders@v1", "returns@v1"] {
        let refused = eventually(&mesh.s, &format!("/api/v1/contracts/{contract}"), |b| {
            condition(b, "Provisioned")["reason"] == "ProvisioningRefused"
        })
        .await;
        assert!(!refused.to_string().contains("hidden_column"), "a drift message shows the file: {refused}");
        let (status, run) = send(sam.post(mesh.url(&format!("/api/v1/contracts/{contract}/tests?samples=5")))).await;
        assert!(!run.to_string().contains(SECRET), "{contract}: the file came back: {run}");
        assert_eq!(status, 422, "{contract}: {run}");
        assert!(run["message"].as_str().unwrap().contains("not under"), "{run}");
    }
    std::fs::remove_dir_all(outside).unwrap();
}

/// A listener that counts the connections it is sent and never answers.
async fn trap() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, hits)
}

/// Item 6: a contract's PostgreSQL host and port, or its S3 `endpointUrl`, were contacted
/// with the server's credentials. The server only ever connects where its blocks say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_never_chooses_where_the_server_connects() {
    let mesh = Mesh::new().await;
    let (sam, _) = mesh.user("sam", &["sales"]).await;
    let (port, hits) = trap().await;
    let pg = format!(
        "  - {{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: {port}, database: {}, schema: orders_v1 }}\n",
        db(&mesh.data)
    );
    let s3 = format!(
        "  - {{ server: lake, type: s3, environment: dev, location: \"s3://bucket/x/\", endpointUrl: \"http://127.0.0.1:{port}\", format: csv }}\n"
    );
    let schema = "  - name: orders\n    properties:\n      - { name: id, logicalType: string }\n";
    let docs = [
        sams_contract("orders", "1.0.0", &pg, schema),
        sams_contract("returns", "1.0.0", &s3, schema),
        shop("  - { name: returns, version: 1.0.0, contractId: returns }\n"),
    ];
    let (status, body) = send(sam.post(mesh.url("/api/v1/apply")).body(docs.join("---\n"))).await;
    assert_eq!(status, 200, "{body}");
    for contract in ["orders@v1", "returns@v1"] {
        let call = sam.post(mesh.url(&format!("/api/v1/contracts/{contract}/tests")));
        let (status, run) = send(call.timeout(std::time::Duration::from_secs(30))).await;
        assert_eq!(status, 422, "{contract}: {run}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the server connected where a contract said");
}

/// Item 11: lake prefixes are exclusive per port. Old releases let another domain claim a
/// port's folder; the purge of the resulting orphan then deleted the live data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_prefix_belongs_to_one_port() {
    let mesh = Mesh::new().await;
    let (sam, _) = mesh.user("sam", &["sales"]).await;
    let folder = mesh.lake.join("finance/journal");
    let journal = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: journal\nversion: 1.0.0\nstatus: active\ndomain: finance\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: \"{}/\", format: csv }}\n\
         schema:\n  - name: journal\n    properties:\n      - {{ name: id, logicalType: string }}\n",
        folder.display()
    );
    assert_eq!(mesh.s.apply(journal, "").await.0, StatusCode::OK);
    mesh.ready("journal@v1").await;
    std::fs::write(folder.join("journal.csv"), "id\n1\n").unwrap();
    let schema = "  - name: journal\n    properties:\n      - { name: id, logicalType: string }\n";
    let same = lake_contract("orders", &format!("{}/", folder.display()), schema);
    let above = lake_contract("returns", &format!("{}/", mesh.lake.join("finance").display()), schema);
    let product = shop("  - { name: returns, version: 1.0.0, contractId: returns }\n");
    let (status, body) =
        send(sam.post(mesh.url("/api/v1/apply")).body(format!("{same}---\n{above}---\n{product}"))).await;
    assert_eq!(status, 200, "{body}");
    for (contract, why) in [
        ("orders@v1", "is the port of DataContract journal@v1"),
        ("returns@v1", "holds the port of DataContract journal@v1"),
    ] {
        let refused = eventually(&mesh.s, &format!("/api/v1/contracts/{contract}"), |b| {
            condition(b, "Provisioned")["reason"] == "ProvisioningRefused"
        })
        .await;
        let message = condition(&refused, "Provisioned")["message"].as_str().unwrap();
        assert!(message.contains(why), "{contract}: {message}");
    }
    // Deleted, they leave nothing to purge; a purge of everything leaves the journal's data.
    for contract in ["orders@v1", "returns@v1"] {
        assert_eq!(send(sam.delete(mesh.url(&format!("/api/v1/contracts/{contract}")))).await.0, 200);
        eventually(&mesh.s, &format!("/api/v1/contracts/{contract}"), |b| b["code"] == "not-found").await;
    }
    let (status, purged) = send(mesh.s.http.post(mesh.url("/api/v1/orphans/purge"))).await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(std::fs::read_to_string(folder.join("journal.csv")).unwrap(), "id\n1\n");
    let marker = std::fs::read_to_string(folder.join(".meshplane-port")).unwrap();
    assert!(marker.contains("journal@v1"), "{marker}");
}

/// Item 16: ids, domains and versions are keys everywhere (names in the stores, markers,
/// paths): NUL, `/`, `..` and quotes are refused, saying where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_cannot_be_keys_are_refused_with_their_place() {
    let place = sqlite().await;
    let s = start(&place).await;
    for (field, bad) in [
        ("id", "\"a\\u0000b\""),
        ("id", "../etc"),
        ("id", "a/b"),
        ("id", "\"o'rders\""),
        ("id", "\"x\\\"y\""),
        ("domain", "sales/../finance"),
        ("version", "\"1.0.0'; DROP\""),
    ] {
        let text = match field {
            "id" => contract(bad, "1.0.0", "sales", ""),
            "domain" => contract("orders", "1.0.0", bad, ""),
            _ => contract("orders", bad, "sales", ""),
        };
        let (status, body) = s.apply(text, "").await;
        assert_eq!((status.as_u16(), body["code"].as_str()), (422, Some("invalid-document")), "{field}: {bad}: {body}");
        let detail = &body["details"][0]["details"][0];
        assert_eq!(detail["field"], field, "{body}");
        assert!(detail["line"].as_u64().is_some(), "{body}");
    }
    let (_, page) = s.get("/api/v1/contracts").await;
    assert_eq!(page["items"], serde_json::json!([]), "nothing was stored");
}

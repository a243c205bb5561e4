//! The API through real HTTP, on SQLite and on PostgreSQL: applying, reading, lineage, the
//! change feed, every refusal as a clear 4xx, the OpenAPI document, request ids.

use std::net::SocketAddr;

use std::sync::Arc;

use meshplane_core::block::{BlockFuture, BlockResult, Blocks, Call, Leftover, Provisioned, Provisioner};
use meshplane_core::controller::{Clock, SystemClock};
use meshplane_core::resource::Kind;
use meshplane_core::store::identity::{Principal, PrincipalKind};
use meshplane_core::store::{Record, Store};
use meshplane_core::testing::{Place, postgres, sqlite};
use meshplane_server::checks::Sandbox;
use meshplane_server::reconciler::{self, Settings};
use meshplane_server::{Config, app, routes};
use reqwest::StatusCode;
use serde_json::Value as Any;

mod attacks;
mod authz;
mod controller;
mod errors;
mod grants;
mod oidc;
mod request_ids;
mod requests;

struct Server {
    base: String,
    /// A client that authenticates as a platform admin.
    http: reqwest::Client,
    store: Store,
}

/// A client that sends `token` with every request.
fn client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// A platform admin's token, made directly in the store (as `meshplane bootstrap` does).
async fn admin_token(store: &Store) -> String {
    let who = meshplane_core::store::ApplyOptions {
        actor: "test".into(),
        origin: "test".into(),
        dry_run: false,
        prune: false,
    };
    let admin = Principal {
        name: "admin".into(),
        kind: PrincipalKind::User,
        database_role: None,
        groups: vec![],
        platform_admin: true,
        domains: vec![],
        oidc: None,
    };
    store.put_principal(&admin, &who).await.unwrap();
    store.create_token("admin", "tests", None, &who).await.unwrap().token
}

/// Contract tests run in the test worker built for these tests.
fn sandbox() -> Sandbox {
    Sandbox { program: env!("CARGO_BIN_EXE_test-worker").into(), args: vec![], ..Sandbox::default() }
}

/// The reconcile loop's settings for tests: default, with contract tests in [`sandbox`].
fn settings() -> Settings {
    Settings { tests: Arc::new(sandbox()), ..Settings::default() }
}

/// A server on `place`'s store, with its reconcilers; the caller keeps `place` (and so the
/// store) alive.
async fn start(place: &Place) -> Server {
    let store = Store::open(&place.url).await.unwrap();
    let reconcilers = reconciler::spawn(store.clone(), Blocks::default(), settings(), "one".into());
    serve_api(store, Some(reconcilers.heartbeat)).await
}

/// The API alone on `store`; `heartbeat` is the reconcile loop's, when one runs.
async fn serve_api(store: Store, heartbeat: Option<Arc<std::sync::atomic::AtomicU64>>) -> Server {
    serve_with_blocks(store, heartbeat, Blocks::default()).await
}

/// The API on `store` with the platform's `blocks`.
async fn serve_with_blocks(
    store: Store,
    heartbeat: Option<Arc<std::sync::atomic::AtomicU64>>,
    blocks: Blocks,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let config = Config { body_limit: 64 * 1024, reconciler: settings(), ..Config::default() };
    let token = admin_token(&store).await;
    let served = store.clone();
    tokio::spawn(async move { axum::serve(listener, app(served, config, heartbeat, blocks)).await });
    Server { base: format!("http://{addr}"), http: client(&token), store }
}

impl Server {
    async fn apply(&self, body: impl Into<reqwest::Body>, query: &str) -> (StatusCode, Any) {
        let res = self.http.post(format!("{}/api/v1/apply{query}", self.base)).body(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Any::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Any) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Any::Null))
    }
}

fn contract(id: &str, version: &str, domain: &str, extra: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: {version}\nstatus: active\ndomain: {domain}\n\
         schema:\n  - name: {id}\n    properties:\n      - {{ name: id, logicalType: string }}\n{extra}"
    )
}

fn product(id: &str, domain: &str, inputs: &[&str], outputs: &[&str]) -> String {
    let ports = |list: &[&str], field: &str| {
        if list.is_empty() {
            return String::new();
        }
        let items: String =
            list.iter().map(|c| format!("  - {{ name: {c}, version: 1.0.0, contractId: {c} }}\n")).collect();
        format!("{field}:\n{items}")
    };
    format!(
        "apiVersion: v1.0.0\nkind: DataProduct\nid: {id}\nstatus: active\ndomain: {domain}\nversion: 1.0.0\n{}{}",
        ports(inputs, "inputPorts"),
        ports(outputs, "outputPorts")
    )
}

macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let place = super::sqlite().await;
                ($body)(start(&place).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let place = super::postgres().await;
                ($body)(start(&place).await).await;
            }
        }
    };
}

on_both!(apply_read_list_history_events_and_lineage, |s: Server| async move {
    let mesh = [
        contract("orders", "1.0.0", "sales", ""),
        contract("invoices", "1.0.0", "finance", ""),
        product("shop", "sales", &[], &["orders"]),
        product("billing", "finance", &["orders"], &["invoices"]),
        product("reporting", "finance", &["invoices"], &[]),
    ]
    .join("---\n");
    let (status, body) = s.apply(mesh.clone(), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcomes: Vec<&str> =
        body["applied"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["created"; 5]);
    let (_, again) = s.apply(mesh, "").await;
    assert!(again["applied"].as_array().unwrap().iter().all(|a| a["outcome"] == "unchanged"));

    let (status, record) = s.get("/api/v1/contracts/orders@v1").await;
    assert_eq!(
        (status, record["domain"].as_str(), record["generation"].as_i64()),
        (StatusCode::OK, Some("sales"), Some(1))
    );
    let (_, page) = s.get("/api/v1/products?domain=finance").await;
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["billing", "reporting"]);
    let (_, history) = s.get("/api/v1/products/shop/history").await;
    assert_eq!(history[0]["event"]["type"], "io.meshplane.dataproduct.created");
    assert_eq!((history[0]["origin"].as_str(), history[0]["actor"].as_str()), (Some("api local"), Some("admin")));
    let (_, events) = s.get("/api/v1/events?after=2&limit=2").await;
    let seqs: Vec<i64> = events.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4]);

    let (status, lineage) = s.get("/api/v1/lineage/billing").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lineage["upstream"][0]["product"], "shop");
    assert_eq!(lineage["downstream"][0]["product"], "reporting");
    let (_, shop) = s.get("/api/v1/lineage/shop").await;
    let downstream: Vec<&str> =
        shop["downstream"].as_array().unwrap().iter().map(|d| d["product"].as_str().unwrap()).collect();
    assert_eq!(downstream, ["billing", "reporting"], "lineage is transitive");
});

on_both!(bad_requests_get_a_clear_4xx, |s: Server| async move {
    s.apply(contract("orders", "1.0.0", "sales", ""), "").await;
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (vec![0xff, 0xfe], "", 400, "malformed-request"),
        (b"kind: DataContract\n  bad: [".to_vec(), "", 422, "invalid-document"),
        (b"".to_vec(), "", 422, "invalid-document"),
        (b"apiVersion: v1\nkind: Pipeline\nid: x\n".to_vec(), "", 422, "invalid-document"),
        (
            contract("orders", "1.0.0", "sales", "").replace("domain: sales\n", "").into_bytes(),
            "",
            422,
            "missing-domain",
        ),
        (
            contract("orders", "1.0.0", "sales", "").replace("logicalType: string", "logicalType: text").into_bytes(),
            "",
            422,
            "invalid-document",
        ),
        (contract("orders", "1.0.0", "sales", "tags: [changed]\n").into_bytes(), "", 409, "immutable-version"),
        (contract("orders", "1.1.0", "sales", "").into_bytes(), "?expectGeneration=5", 409, "stale-generation"),
        (contract("orders", "1.1.0", "finance", "").into_bytes(), "", 409, "owner-change"),
        (contract("orders", "1.1.0", "sales", "").into_bytes(), "?dryRun=perhaps", 400, "malformed-request"),
        (contract("orders", "1.1.0", "sales", "").into_bytes(), "?force=true", 400, "malformed-request"),
        (vec![b'#'; 100 * 1024], "", 413, "body-too-large"),
    ];
    for (body, query, status, code) in cases {
        let (got, answer) = s.apply(body.clone(), query).await;
        assert_eq!(
            (got.as_u16(), answer["code"].as_str()),
            (status, Some(code)),
            "{query} {}: {answer}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, answer) =
        s.apply(contract("x", "1.0.0", "sales", "").replace("logicalType: string", "logicalType: text"), "").await;
    let diagnostic = &answer["details"][0]["details"][0];
    assert_eq!((diagnostic["line"].as_u64(), diagnostic["column"].as_u64()), (Some(10), Some(34)), "{answer}");
    for (path, status) in [
        ("/api/v1/contracts/nothing@v1", 404),
        ("/api/v1/pipelines", 404),
        ("/api/v1/lineage/nothing", 404),
        ("/api/v1/events?after=x", 400),
        ("/api/v1/orphans?all=maybe", 400),
        ("/api/v1/orphans?everything=true", 400),
    ] {
        let (got, answer) = s.get(path).await;
        assert_eq!(got.as_u16(), status, "{path}: {answer}");
        assert!(answer["code"].is_string(), "{path}: {answer}");
    }
    for (query, status) in [("id=abc", 400), ("dryRun=soon", 400), ("id=4242", 404)] {
        let res = s.http.post(format!("{}/api/v1/orphans/purge?{query}", s.base)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "purge?{query}");
        assert!(res.json::<Any>().await.unwrap()["code"].is_string());
    }
    let (_, record) = s.get("/api/v1/contracts/orders@v1").await;
    assert_eq!(record["generation"], 1, "no refused request changed anything");
});

on_both!(concurrent_applies_of_one_id_have_one_winner, |s: Server| async move {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (http, base) = (s.http.clone(), s.base.clone());
        let body = contract("race", "1.0.0", "sales", &format!("tags: [t{i}]\n"));
        tasks.push(tokio::spawn(async move {
            let res = http.post(format!("{base}/api/v1/apply")).body(body).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(status != 500, "{body}");
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
});

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let place = sqlite().await;
    let s = start(&place).await;
    let (status, doc) = s.get("/api/v1/openapi.json").await;
    assert_eq!((status, doc["openapi"].as_str()), (StatusCode::OK, Some("3.1.0")));
    for route in routes::all() {
        let op = &doc["paths"][route.path][route.method];
        assert!(op["summary"].is_string() && op["responses"]["200"].is_object(), "{} {}", route.method, route.path);
        for r in op["responses"].as_object().unwrap().values() {
            let (media, content) = r["content"].as_object().unwrap().iter().next().unwrap();
            assert_eq!(media == "text/plain", route.answer == "Metrics" && r == &op["responses"]["200"], "{media}");
            let schema = content["schema"]["$ref"].as_str().unwrap();
            let name = schema.rsplit('/').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{schema} is defined");
        }
    }
    // And every documented path is served (a GET of an unknown resource is a 404 with a body,
    // not the router's bare 404 or 405).
    for route in routes::all().filter(|r| r.method == "get") {
        let path = route.path.replace("{kind}", "contracts").replace("{name}", "nothing@v1").replace("{id}", "999");
        let res = s.http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_ne!(res.status().as_u16(), 405, "{path}");
        if res.status() == StatusCode::NOT_FOUND {
            let body: Any = res.json().await.unwrap();
            assert_eq!(body["code"], "not-found", "{path}");
        }
    }
}

/// A server with reconcilers and the platform's blocks built from `platform` (YAML).
async fn start_on(place: &Place, platform: &str) -> Server {
    let platform = meshplane_blocks::platform::Platform::from_yaml(platform).unwrap();
    let blocks = meshplane_blocks::build(platform, std::path::Path::new("/")).unwrap();
    let store = Store::open(&place.url).await.unwrap();
    let reconcilers = reconciler::spawn(store.clone(), blocks.clone(), settings(), "one".into());
    serve_with_blocks(store, Some(reconcilers.heartbeat), blocks).await
}

/// A platform of one lake block on `root`.
fn lake(root: &std::path::Path) -> String {
    format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: {} }}\n",
        root.display()
    )
}

/// Contract tests on demand, on a lake port: the report is kept with the contract generation
/// it tested; samples of failed rows only for those who manage the contract.
async fn contract_tests_run_on_demand_and_are_kept_with_their_history(place: Place) {
    let dir = std::env::temp_dir().join(format!("mpserver-{}-{}", std::process::id(), place.url.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = start_on(&place, &lake(&dir)).await;
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: \"{}/orders/orders.csv\", format: csv }}\n\
         schema:\n  - name: orders\n    properties:\n      - {{ name: id, logicalType: integer, unique: true }}\n\
         \x20     - {{ name: amount, logicalType: number, logicalTypeOptions: {{ minimum: 0 }} }}\n",
        dir.display()
    );
    assert_eq!(s.apply(text, "").await.0, StatusCode::OK);
    eventually(&s, "/api/v1/contracts/orders@v1", |b| condition(b, "Ready")["status"] == "True").await;
    std::fs::write(dir.join("orders/orders.csv"), "id,amount\n1,10\n2,-5\n2,7\n").unwrap();
    let run = s.http.post(format!("{}/api/v1/contracts/orders@v1/tests?samples=1", s.base)).send().await.unwrap();
    assert_eq!(run.status(), StatusCode::OK);
    let run: Any = run.json().await.unwrap();
    assert_eq!((run["failed"].as_bool(), run["generation"].as_i64()), (Some(true), Some(1)), "{run}");
    let results = run["report"]["results"].as_array().unwrap();
    let unique = results.iter().find(|r| r["key"] == "orders.id.unique").unwrap();
    assert_eq!(
        (unique["outcome"].as_str(), unique["value"].as_f64(), &unique["samples"][0]),
        (Some("fail"), Some(1.0), &Any::from("2"))
    );
    let minimum = results.iter().find(|r| r["key"] == "orders.amount.minimum").unwrap();
    assert_eq!(minimum["value"].as_f64(), Some(1.0));

    std::fs::write(dir.join("orders/orders.csv"), "id,amount\n1,10\n2,5\n").unwrap();
    let again: Any =
        s.http.post(format!("{}/api/v1/contracts/orders@v1/tests", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["failed"], false, "{again}");
    let (status, runs) = s.get("/api/v1/contracts/orders@v1/tests").await;
    assert_eq!(status, StatusCode::OK);
    let failed: Vec<bool> = runs.as_array().unwrap().iter().map(|r| r["failed"].as_bool().unwrap()).collect();
    assert_eq!(failed, [false, true], "newest first");
    assert!(runs[1]["report"]["results"].to_string().contains("\"samples\""), "the admin sees samples");
    // A consumer reads the verdicts, not the offending values (they are data).
    let consumer = crate::authz::principal(&s.store, "carol", &[]).await;
    let theirs: Any = client(&consumer)
        .get(format!("{}/api/v1/contracts/orders@v1/tests", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs[1]["failed"], true);
    assert!(!theirs.to_string().contains("\"samples\""), "{theirs}");

    let wrong_server =
        s.http.post(format!("{}/api/v1/contracts/orders@v1/tests?server=prod", s.base)).send().await.unwrap();
    assert_eq!(wrong_server.status().as_u16(), 400);
    let (status, _) = s.get("/api/v1/products/orders/tests").await;
    assert_eq!(status.as_u16(), 422, "products have no tests of their own");
    let (status, _) = s.get("/api/v1/contracts/nothing@v1/tests").await;
    assert_eq!(status.as_u16(), 404);
    std::fs::remove_dir_all(dir).unwrap();
}

mod contract_tests_on_demand {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::contract_tests_run_on_demand_and_are_kept_with_their_history(super::sqlite().await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::contract_tests_run_on_demand_and_are_kept_with_their_history(super::postgres().await).await;
    }
}

/// Reads `path` until `check` holds, again after each commit to the server's store (its
/// change feed signal); reconcilers on another connection to the same database commit
/// unseen, so it also reads every half second. Gives up after 20 s.
async fn eventually(s: &Server, path: &str, check: impl Fn(&Any) -> bool) -> Any {
    let mut feed = s.store.watch_feed();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        feed.mark_unchanged();
        let (_, body) = s.get(path).await;
        if check(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never got there: {body}");
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), feed.changed()).await;
    }
}

fn condition<'a>(body: &'a Any, kind: &str) -> &'a Any {
    body["reconciled"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Any::Null)
}

on_both!(reconcilers_report_missing_links_and_readiness, |s: Server| async move {
    // The product first: its input port's contract is not there yet — a condition, not a refusal.
    assert_eq!(s.apply(product("billing", "finance", &["orders"], &[]), "").await.0, StatusCode::OK);
    let waiting =
        eventually(&s, "/api/v1/products/billing", |b| condition(b, "LinksResolved")["status"] == "False").await;
    assert!(
        condition(&waiting, "LinksResolved")["message"]
            .as_str()
            .unwrap()
            .contains("contract `orders` is not registered")
    );
    assert_eq!(condition(&waiting, "Ready")["status"], "False");
    assert_eq!(condition(&waiting, "Provisioned")["reason"], "NoBlockConfigured");
    assert_eq!(waiting["reconciled"]["observedGeneration"], 1);
    // The contract arrives: the product becomes Ready without being applied again.
    assert_eq!(s.apply(contract("orders", "1.0.0", "sales", ""), "").await.0, StatusCode::OK);
    let ready = eventually(&s, "/api/v1/products/billing", |b| condition(b, "Ready")["status"] == "True").await;
    assert_eq!(condition(&ready, "LinksResolved")["reason"], "ContractsFound");
    assert_eq!(ready["status"], "active", "the document's own status is untouched");
    let contract = eventually(&s, "/api/v1/contracts/orders@v1", |b| condition(b, "Ready")["status"] == "True").await;
    assert_eq!(condition(&contract, "Valid")["status"], "True");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_the_store_and_running_reconcilers() {
    let place = sqlite().await;
    let s = start(&place).await;
    // A probe carries no credentials.
    let probe = reqwest::Client::new();
    let ready = probe.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(ready.json::<Any>().await.unwrap()["status"], "ready");
    // The same application with no reconcile loop is up (healthz) but not ready.
    let alone = serve_api(Store::open(&place.url).await.unwrap(), None).await;
    let ready = probe.get(format!("{}/readyz", alone.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body: Any = ready.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["message"].as_str()),
        (Some("not-ready"), Some("the reconcilers are not running"))
    );
    assert_eq!(alone.get("/healthz").await.0, StatusCode::OK);
}

/// Watches provisioning across replicas: which replica provisioned what, and whether one
/// product was ever provisioned by two at once.
#[derive(Default)]
struct Witness {
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    by: std::sync::Mutex<Vec<(String, String)>>,
    overlaps: std::sync::Mutex<Vec<String>>,
    /// How long a provisioning takes, in milliseconds (5 when 0).
    slow_ms: u64,
}

/// One replica's view of the witness, as its provisioning block.
struct Watched(Arc<Witness>, String);

impl Provisioner for Watched {
    fn name(&self) -> &str {
        "witness"
    }
    fn concerns(&self, record: &Record) -> bool {
        record.kind == Kind::DataProduct
    }
    fn provision<'a>(&'a self, record: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            if !self.0.in_flight.lock().unwrap().insert(record.name.clone()) {
                self.0.overlaps.lock().unwrap().push(record.name.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(self.0.slow_ms.max(5))).await;
            self.0.in_flight.lock().unwrap().remove(&record.name);
            self.0.by.lock().unwrap().push((self.1.clone(), record.name.clone()));
            Ok(Provisioned::done("seen"))
        })
    }
    fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Two replicas (two reconcile loops, each with its own connections) on one PostgreSQL:
/// every product is provisioned, never by both at once, and the work is split between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_split_the_work_and_never_overlap() {
    let place = postgres().await;
    let s = serve_api(Store::open(&place.url).await.unwrap(), None).await;
    let witness = Arc::new(Witness::default());
    let settings = Settings { membership_ms: 1_500, ..settings() };
    let mut replicas = Vec::new();
    for name in ["r1", "r2"] {
        let store = Store::open(&place.url).await.unwrap();
        let blocks = Blocks::of(vec![Arc::new(Watched(Arc::clone(&witness), name.into()))]);
        replicas.push(reconciler::spawn(store, blocks, settings.clone(), name.into()));
    }
    let mut docs = vec![contract("orders", "1.0.0", "sales", "")];
    for i in 0..60 {
        docs.push(product(&format!("p{i:02}"), "sales", &["orders"], &[]));
    }
    assert_eq!(s.apply(docs.join("---\n"), "").await.0, StatusCode::OK);
    for i in 0..60 {
        let path = format!("/api/v1/products/p{i:02}");
        let body = eventually(&s, &path, |b| condition(b, "Provisioned")["reason"] == "Provisioned").await;
        assert_eq!(condition(&body, "Ready")["status"], "True");
    }
    assert_eq!(*witness.overlaps.lock().unwrap(), Vec::<String>::new(), "no product provisioned twice at once");
    let by = witness.by.lock().unwrap().clone();
    for replica in ["r1", "r2"] {
        assert!(by.iter().any(|(r, _)| r == replica), "{replica} took a share: {by:?}");
    }
    for replica in replicas {
        replica.stop().await;
    }
}

/// Item 13: a block call that takes longer than the lease does not let another replica
/// reconcile the same resource meanwhile — the lease is renewed while the call runs, and
/// expiry is measured on the database's clock, so a replica whose own clock runs an hour
/// ahead takes nothing early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_call_longer_than_the_lease_is_never_overlapped() {
    let place = postgres().await;
    let s = serve_api(Store::open(&place.url).await.unwrap(), None).await;
    let witness = Arc::new(Witness { slow_ms: 2_500, ..Witness::default() });
    let blocks = |name: &str| Blocks::of(vec![Arc::new(Watched(Arc::clone(&witness), name.into()))]);
    let settings = Settings { lease_ms: 600, membership_ms: 600, workers: 8, ..settings() };
    let mut docs = vec![contract("orders", "1.0.0", "sales", "")];
    for i in 0..8 {
        docs.push(product(&format!("p{i}"), "sales", &["orders"], &[]));
    }
    assert_eq!(s.apply(docs.join("---\n"), "").await.0, StatusCode::OK);
    let first = reconciler::spawn(Store::open(&place.url).await.unwrap(), blocks("r1"), settings.clone(), "r1".into());
    // The second replica joins while the first is in its slow calls; its own clock is ahead.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let ahead = Settings { clock: Arc::new(Ahead::by(3_600_000)), ..settings.clone() };
    let second = reconciler::spawn(Store::open(&place.url).await.unwrap(), blocks("r2"), ahead, "r2".into());
    for i in 0..8 {
        let path = format!("/api/v1/products/p{i}");
        for _ in 0..200 {
            if condition(&s.get(&path).await.1, "Provisioned")["reason"] == "Provisioned" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(*witness.overlaps.lock().unwrap(), Vec::<String>::new(), "no product provisioned by two at once");
    let provisioned: std::collections::BTreeSet<String> =
        witness.by.lock().unwrap().iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(provisioned.len(), 8, "every product was provisioned: {provisioned:?}");
    first.stop().await;
    second.stop().await;
}

/// A replica's own clock, some way ahead of the machine's (and movable further).
#[derive(Debug)]
struct Ahead(std::sync::atomic::AtomicI64);

impl Ahead {
    fn by(ms: i64) -> Ahead {
        Ahead(std::sync::atomic::AtomicI64::new(ms))
    }

    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for Ahead {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: i64) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

on_both!(delete_and_prune_go_through_the_reconciler, |s: Server| async move {
    let docs = [
        contract("orders", "1.0.0", "sales", ""),
        product("shop", "sales", &[], &["orders"]),
        product("returns", "sales", &["orders"], &[]),
    ];
    assert_eq!(s.apply(docs.join("---\n"), "").await.0, StatusCode::OK);
    let url = |path: &str| format!("{}{path}", s.base);
    for (path, status, code) in [
        ("/api/v1/products/nothing", 404, "not-found"),
        ("/api/v1/pipelines/shop", 404, "not-found"),
        ("/api/v1/products/shop?dryRun=soon", 400, "malformed-request"),
        ("/api/v1/products/shop?cascade=true", 400, "malformed-request"),
    ] {
        let res = s.http.delete(url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        assert_eq!(res.json::<Any>().await.unwrap()["code"], code, "{path}");
    }
    let res = s.http.delete(url("/api/v1/products/shop")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let marked: Any = res.json().await.unwrap();
    assert!(marked["deletionRequested"].is_string(), "{marked}");
    // No block provisioned it: the reconciler removes it at once.
    eventually(&s, "/api/v1/products/shop", |b| b["code"] == "not-found").await;
    let (_, history) = s.get("/api/v1/products/shop/history").await;
    let actions: Vec<&str> = history.as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "deleting", "deleted"]);
    let (_, events) = s.get("/api/v1/events").await;
    let last = events.as_array().unwrap().iter().rfind(|e| e["name"] == "shop").unwrap().clone();
    assert_eq!(last["event"]["type"], "io.meshplane.dataproduct.deleted");

    // Prune: the body is the whole desired state of the sales domain.
    let (status, answer) = s.apply(contract("orders", "1.0.0", "sales", ""), "?prune=true").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let outcomes: Vec<(&str, &str)> = answer["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("orders@v1", "unchanged"), ("returns", "deleting")]);
    eventually(&s, "/api/v1/products/returns", |b| b["code"] == "not-found").await;
    assert_eq!(s.get("/api/v1/contracts/orders@v1").await.0, StatusCode::OK);
});

/// Polls the contract's test runs until there are `n`.
async fn runs(s: &Server, n: usize) -> Vec<Any> {
    let path = "/api/v1/contracts/orders@v1/tests";
    eventually(s, path, |b| b.as_array().is_some_and(|r| r.len() >= n)).await.as_array().unwrap().clone()
}

/// The rules that share a schedule run together, once per firing across two replicas, with
/// only that schedule's checks; a firing the clock skipped over runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tests_run_once_per_firing_across_replicas() {
    let place = postgres().await;
    let s = serve_api(Store::open(&place.url).await.unwrap(), None).await;
    let clock = Arc::new(Ahead::by(0));
    let settings = Settings { membership_ms: 1_500, clock: clock.clone(), ..settings() };
    let dir = std::env::temp_dir().join(format!("mpschedule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut replicas = Vec::new();
    for name in ["r1", "r2"] {
        let store = Store::open(&place.url).await.unwrap();
        let platform = meshplane_blocks::platform::Platform::from_yaml(&lake(&dir)).unwrap();
        let blocks = meshplane_blocks::build(platform, std::path::Path::new("/")).unwrap();
        replicas.push(reconciler::spawn(store, blocks, settings.clone(), name.into()));
    }
    let hourly = "scheduler: cron, schedule: '0 * * * *'";
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: local, type: local, environment: dev, path: \"{}/orders/orders.csv\", format: csv }}\n\
         \x20 - {{ server: prod, type: local, environment: prod, path: /nonexistent/orders.csv, format: csv }}\n\
         schema:\n  - name: orders\n    properties:\n      - name: id\n        logicalType: integer\n        unique: true\n\
         \x20       quality:\n          - {{ metric: duplicateValues, mustBe: 0, {hourly} }}\n\
         \x20     - name: amount\n        logicalType: number\n        quality:\n\
         \x20         - {{ metric: nullValues, mustBe: 0, {hourly} }}\n\
         \x20         - {{ metric: nullValues, mustBeLessThan: 5, scheduler: cron, schedule: '0 0 1 1 *' }}\n",
        dir.display()
    );
    assert_eq!(s.apply(text, "").await.0, StatusCode::OK);
    eventually(&s, "/api/v1/contracts/orders@v1", |b| condition(b, "Ready")["status"] == "True").await;
    std::fs::write(dir.join("orders/orders.csv"), "id,amount\n1,10\n2,\n2,7\n").unwrap();
    let (_, none) = s.get("/api/v1/contracts/orders@v1/tests").await;
    assert_eq!(none, Any::Array(vec![]), "nothing is due yet");

    // An hour later: the hourly rules run, in one run, and only they.
    clock.advance(3_600_000);
    let first = runs(&s, 1).await;
    let report = &first[0]["report"];
    assert_eq!(
        (report["trigger"]["by"].as_str(), report["trigger"]["schedule"].as_str()),
        (Some("schedule"), Some("0 * * * *"))
    );
    let mut checks: Vec<(&str, f64)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), r["value"].as_f64().unwrap()))
        .collect();
    checks.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(checks, [("orders.amount.nullValues", 1.0), ("orders.id.duplicateValues", 1.0)]);
    assert_eq!(first[0]["failed"], true);

    // Three hours on: one more run (the latest firing), not three, and never one per replica.
    clock.advance(3 * 3_600_000);
    let second = runs(&s, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, all) = s.get("/api/v1/contracts/orders@v1/tests").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "one run per firing, on the dev server only: {all}");
    let due = |run: &Any| run["report"]["trigger"]["due"].as_i64().unwrap();
    assert!(due(&second[0]) - due(&first[0]) >= 3 * 3_600_000, "the latest firing ran, not the ones between");
    for replica in replicas {
        replica.stop().await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A block that never answers.
struct Hangs;

impl Provisioner for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    fn concerns(&self, record: &Record) -> bool {
        record.name.starts_with("slow")
    }
    fn provision<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(std::future::pending())
    }
    fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(std::future::pending())
    }
}

/// A PostgreSQL block whose server does not answer, and a block that hangs: each contract
/// gets a condition with the reason and is retried with backoff, while the API keeps
/// answering and the other resources get Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_block_is_a_condition_and_everything_else_goes_on() {
    let place = sqlite().await;
    let platform = meshplane_blocks::platform::Platform::from_yaml(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
         \x20 - { name: warehouse, type: postgres, host: 127.0.0.1, port: 1, database: d, user: u }\n",
    )
    .unwrap();
    let mut blocks = meshplane_blocks::build(platform, std::path::Path::new("/")).unwrap();
    blocks.provisioners.push(Arc::new(Hangs));
    blocks.timeout = std::time::Duration::from_millis(500);
    let store = Store::open(&place.url).await.unwrap();
    let settings = Settings {
        timing: meshplane_core::controller::Timing { backoff_base: 200, backoff_max: 1_000, resync: 600_000 },
        ..settings()
    };
    let reconcilers = reconciler::spawn(store.clone(), blocks, settings, "one".into());
    let s = serve_api(store, Some(reconcilers.heartbeat)).await;
    let server = "servers:\n  - { server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 1, \
                  database: d, schema: s }\n";
    let docs = [
        contract("unreachable", "1.0.0", "sales", server),
        contract("slow", "1.0.0", "sales", ""),
        contract("plain", "1.0.0", "sales", ""),
    ];
    assert_eq!(s.apply(docs.join("---\n"), "").await.0, StatusCode::OK);
    let failed = eventually(&s, "/api/v1/contracts/unreachable@v1", |b| {
        condition(b, "Provisioned")["reason"] == "ProvisioningFailed"
    })
    .await;
    let message = condition(&failed, "Provisioned")["message"].as_str().unwrap().to_string();
    // Refused connections are retried by the pool until its own limit; the block's limit
    // (500 ms here) comes first.
    let reasons = ["warehouse: cannot reach 127.0.0.1", "warehouse: block `warehouse` did not answer within"];
    assert!(reasons.iter().any(|r| message.starts_with(r)), "{message}");
    assert_eq!(condition(&failed, "Ready")["status"], "False");
    let hung =
        eventually(&s, "/api/v1/contracts/slow@v1", |b| condition(b, "Provisioned")["reason"] == "ProvisioningFailed")
            .await;
    assert_eq!(condition(&hung, "Provisioned")["message"], "hangs: block `hangs` did not answer within 0.5 s");
    eventually(&s, "/api/v1/contracts/plain@v1", |b| condition(b, "Ready")["status"] == "True").await;
    // Retried with backoff: the failure's transition time stays, the status is rewritten.
    let first = condition(&hung, "Provisioned")["lastTransitionTime"].clone();
    let updated = hung["reconciled"]["updatedAt"].clone();
    let later = eventually(&s, "/api/v1/contracts/slow@v1", |b| b["reconciled"]["updatedAt"] != updated).await;
    assert_eq!(condition(&later, "Provisioned")["lastTransitionTime"], first);
    let (status, _) = s.get("/api/v1/contracts").await;
    assert_eq!(status, StatusCode::OK, "the API kept answering");
}

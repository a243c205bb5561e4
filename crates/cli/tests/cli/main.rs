//! The `meshplane` binary end to end: exit codes, human and JSON output (snapshots),
//! directory search, cross-file checks and usage errors.

mod access;
mod governance;
mod init;
mod login;
mod messages;
mod metrics;
mod notify;
mod output;
mod paths;
mod project;
mod quickstart;
mod readiness;
mod replicas;
mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The admin token of each server the tests started, by URL: `meshplane bootstrap` made it
/// in the server's store before the server started.
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// The token of the latest server on `url`: a port an earlier test's server had may be
/// handed out again.
fn token_for(url: &str) -> Option<String> {
    TOKENS.lock().unwrap().iter().rev().find(|(u, _)| u == url).map(|(_, t)| t.clone())
}

/// The repository's root, where the README runs every command: the contracts under
/// `fixtures/test` name their data from here (a relative path is read from the working
/// directory).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture contracts whose data `meshplane test` reads, as named from [`repo`].
const FAILING: &str = "crates/cli/tests/fixtures/test/customers.odcs.yaml";
const PASSING: &str = "crates/cli/tests/fixtures/test/passing.odcs.yaml";
const TWO_SERVERS: &str = "crates/cli/tests/fixtures/test/two-servers.odcs.yaml";

/// Runs meshplane in the fixtures directory, so paths in output are stable.
fn meshplane(args: &[&str]) -> Output {
    meshplane_in(&fixtures(), args)
}

/// Runs meshplane in `cwd`; a command sent to a server the tests started carries that
/// server's admin token (`MESHPLANE_TOKEN`).
fn meshplane_in(cwd: &Path, args: &[&str]) -> Output {
    let server = args.iter().position(|a| *a == "--server").and_then(|i| args.get(i + 1));
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshplane"));
    if let Some(token) = server.and_then(|url| token_for(url)) {
        command.env("MESHPLANE_TOKEN", token);
    }
    command.args(args).current_dir(cwd).output().expect("run meshplane")
}

/// The first admin's token of the store `database_url` (relative to `cwd`), as the README's
/// quick start makes it.
fn bootstrap(database_url: &str, cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["bootstrap", "--database-url", database_url])
        .current_dir(cwd)
        .output()
        .expect("run meshplane bootstrap");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn lint_reports_every_problem_with_code_place_line_and_hint() {
    let out = meshplane(&["lint", "bad/orders.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn lint_json_is_for_machines() {
    let out = meshplane(&["lint", "-o", "json", "bad/orders.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_json_snapshot!(report);
}

#[test]
fn warnings_pass_unless_strict() {
    let out = meshplane(&["lint", "warn/legacy.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("warning[deprecated]"));
    assert!(stdout(&out).contains("warning[not-semver]"));
    let strict = meshplane(&["lint", "--strict", "warn/legacy.odcs.yaml"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stdout(&strict).contains("error[deprecated]"));
}

#[test]
fn directories_are_searched_for_contracts_and_products_across_files() {
    let out = meshplane(&["lint", "-o", "json", "mesh"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = report["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    // The CI workflow is not a contract and is left alone; the product is found by its kind.
    assert_eq!(paths, ["mesh/ops/copy.odcs.json", "mesh/sales/orders.odcs.yaml", "mesh/sales/product.yaml"]);
    let codes: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["diagnostics"].as_array().unwrap())
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    // `v1.0.0` and `1.0.0` are one version: the two `orders` contracts collide.
    assert!(codes.contains(&"duplicate-document"), "{codes:?}");
    assert!(codes.contains(&"port-unknown-contract"), "{codes:?}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn clean_files_exit_zero() {
    let out = meshplane(&["lint", "mesh/sales"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("2 file(s) checked: 0 error(s), 1 warning(s)"), "{}", stdout(&out));
}

#[test]
fn usage_and_io_errors_exit_two() {
    let missing = meshplane(&["lint", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.yaml"));
    assert_eq!(meshplane(&["lint"]).status.code(), Some(2));
    assert_eq!(meshplane(&["lint", "-o", "xml", "mesh"]).status.code(), Some(2));
    assert_eq!(meshplane(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn diff_refuses_breaking_changes_without_a_major_bump() {
    let out = meshplane(&["diff", "diff/v1.odcs.yaml", "diff/v1.1.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn diff_accepts_breaking_changes_with_a_major_bump() {
    let out = meshplane(&["diff", "-o", "json", "diff/v1.odcs.yaml", "diff/v2.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bump"], "major");
    assert!(
        report["changes"].as_array().unwrap().iter().any(|c| c["code"] == "server-removed" && c["breaking"] == true)
    );
}

#[test]
fn diff_of_an_invalid_contract_is_a_usage_error() {
    let out = meshplane(&["diff", "bad/orders.odcs.yaml", "diff/v1.odcs.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has errors"));
    let other = meshplane(&["diff", "diff/v1.odcs.yaml", "warn/legacy.odcs.yaml"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("different contracts"));
}

#[test]
fn the_example_mesh_lints_without_errors() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let out = meshplane(&["lint", "-o", "json", examples.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["files"], 14, "the mesh and the warehouse, six and one products with their contracts");
    assert_eq!(report["summary"]["errors"], 0);
}

#[test]
fn the_lint_reference_documents_every_code() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/lint.md")).unwrap();
    for code in meshplane_spec::Code::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "docs/lint.md does not document `{}`",
            code.as_str()
        );
    }
}

#[test]
fn a_file_that_is_not_text_is_reported_not_fatal() {
    let dir = std::env::temp_dir().join(format!("meshplane-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("latin1.odcs.yaml");
    std::fs::write(&bad, b"apiVersion: v3.2.0\nname: caf\xe9\n").unwrap();
    let out = meshplane(&["lint", bad.to_str().unwrap(), "mesh/sales/orders.odcs.yaml"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("error[io]: the file is not UTF-8 text"), "{text}");
    assert!(text.contains("2 file(s) checked"), "{text}");
}

#[test]
fn test_prints_every_check_with_value_threshold_and_rule_id() {
    let out = meshplane_in(&repo(), &["test", FAILING, "--samples", "2"]);
    assert_eq!(out.status.code(), Some(1), "a failing check exits 1");
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn test_json_and_junit_are_for_machines() {
    let out = meshplane_in(&repo(), &["test", FAILING, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_json_snapshot!(report);
    let out = meshplane_in(&repo(), &["test", FAILING, "-o", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out));
}

/// `meshplane test failing.yaml | head -0` under `pipefail`: the reader has gone before
/// anything is printed, and the command still exits with its verdict (1), not 0.
#[test]
fn a_closed_pipe_keeps_the_commands_own_exit_status() {
    for (args, verdict) in [(&["test", FAILING][..], 1), (&["test", PASSING, "--object", "customers"][..], 0)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshplane"))
            .args(args)
            .current_dir(repo())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(verdict), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn test_exits_zero_when_every_check_passes() {
    let out = meshplane_in(&repo(), &["test", PASSING, "--object", "customers"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("4 passed, 0 failed"), "{}", stdout(&out));
}

#[test]
fn test_refuses_bad_input_with_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["test", "nothing.odcs.yaml"], "cannot read nothing.odcs.yaml"),
        (&["test", "crates/cli/tests/fixtures/bad/orders.odcs.yaml"], "has errors; fix them before testing"),
        (&["test", TWO_SERVERS], "several servers; pick one with --contract-server (a, b)"),
        (&["test", TWO_SERVERS, "--contract-server", "c"], "no server `c` (it has: a, b)"),
        (&["test", TWO_SERVERS, "--contract-server", "b"], "of type snowflake"),
        (&["test", PASSING, "--object", "orders"], "no schema object `orders`"),
        (&["test", PASSING, "-o", "xml"], "invalid value 'xml'"),
    ];
    for (args, message) in cases {
        let out = meshplane_in(&repo(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A `meshplane serve` on a free port (and, for SQLite, a store file of its own, removed
/// unless `keep_db`); killed when dropped.
struct Served {
    child: std::process::Child,
    url: String,
    db: Option<PathBuf>,
    keep_db: bool,
    /// The server's working directory (where the embedded lake keeps ./data, and serve.log its
    /// standard error), removed on drop.
    cwd: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.cwd);
        let Some(db) = self.db.as_ref().filter(|_| !self.keep_db) else { return };
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
}

fn serve() -> Served {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    serve_on(std::env::temp_dir().join(format!("mpcli-{}-{nanos}.db", std::process::id())))
}

/// A `meshplane serve` on a free port and the store file `db`.
fn serve_on(db: PathBuf) -> Served {
    let mut served = serve_with(&format!("sqlite://{}", db.display()), &[]);
    served.db = Some(db);
    served
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `meshplane serve` on a free port and the store `database_url`, with `extra` arguments.
pub(crate) fn serve_with(database_url: &str, extra: &[&str]) -> Served {
    let port = free_port();
    let cwd = std::env::temp_dir().join(format!("mpcli-serve-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let token = bootstrap(database_url, &cwd);
    let child = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database-url", database_url])
        .args(extra)
        .current_dir(&cwd)
        .stderr(std::fs::File::create(cwd.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    TOKENS.lock().unwrap().push((url.clone(), token));
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Served { child, url, db: None, keep_db: false, cwd }
}

#[test]
fn the_cli_applies_the_example_mesh_and_reads_it_back() {
    let s = serve();
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    let mesh = mesh.to_str().unwrap();
    let dry = meshplane(&["apply", "--server", &s.url, "-f", mesh, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(stdout(&dry).contains("created (dry run)"), "{}", stdout(&dry));
    let empty = meshplane(&["get", "products", "--server", &s.url, "-o", "json"]);
    let page: serde_json::Value = serde_json::from_slice(&empty.stdout).unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "a dry run keeps nothing");

    let applied = meshplane(&["apply", "--server", &s.url, "-f", mesh]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    let again = meshplane(&["apply", "--server", &s.url, "-f", mesh]);
    assert!(stdout(&again).lines().all(|l| l.ends_with("unchanged")), "{}", stdout(&again));

    let list = meshplane(&["get", "contracts", "--server", &s.url]);
    assert!(stdout(&list).starts_with("NAME"), "{}", stdout(&list));
    assert_eq!(stdout(&list).lines().count(), 7, "a header and six contracts: {}", stdout(&list));
    let one = meshplane(&["get", "products", "--server", &s.url, "-o", "yaml", "--domain", "finance"]);
    assert!(stdout(&one).contains("domain: finance"), "{}", stdout(&one));
    let events = meshplane(&["events", "--server", &s.url, "-o", "json"]);
    let events: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    // Twelve documents created; beside them, the reconcilers' status transitions so far.
    assert_eq!(actions.iter().filter(|a| **a == "created").count(), 12, "{actions:?}");
    assert!(actions.iter().all(|a| ["created", "status"].contains(a)), "{actions:?}");
    let described = stdout(&meshplane(&["describe", "products", "finance-forecast", "--server", &s.url]));
    assert!(described.contains("inputPorts  revenue-daily, segments") && described.contains("created"), "{described}");
    let history = meshplane(&["history", "contracts", "orders@v2", "--server", &s.url]);
    assert!(stdout(&history).contains("created"), "{}", stdout(&history));
    let lineage = meshplane(&["lineage", "finance-revenue", "--server", &s.url]);
    assert_eq!(lineage.status.code(), Some(0), "{}", String::from_utf8_lossy(&lineage.stderr));
    let upstream = stdout(&lineage);
    assert!(
        upstream.contains("sales-orders (via orders") && upstream.contains("customer-360 (via customers"),
        "{upstream}"
    );

    let missing = meshplane(&["delete", "products", "nothing", "--server", &s.url]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("error[not-found]"));
    let dry = meshplane(&["delete", "products", "finance-forecast", "--dry-run", "--server", &s.url]);
    assert!(stdout(&dry).contains("deletion requested (dry run: nothing changed)"), "{}", stdout(&dry));
    let deleted = meshplane(&["delete", "products", "finance-forecast", "--server", &s.url]);
    assert_eq!(deleted.status.code(), Some(0), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert_eq!(stdout(&deleted), "DataProduct finance-forecast: deletion requested; it goes at its next reconcile\n");
    for _ in 0..100 {
        if meshplane(&["get", "products", "finance-forecast", "--server", &s.url]).status.code() == Some(1) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the deleted product was never removed");
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let mut s = serve();
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    let applied = meshplane(&["apply", "--server", &s.url, "-f", mesh.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    // One resource reconciled (under a lease) before the signal; the others may be in flight.
    wait_ready(&s.url, "contracts", "orders@v2");
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for _ in 0..100 {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
            // The store was closed: SQLite's last connection moved the WAL into the file.
            let db = s.db.clone().unwrap();
            assert!(db.exists());
            let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
            assert!(!wal.exists(), "the store was left open: {} is still there", wal.display());
            // Every lease on a resource was given back, and the replica left the membership.
            let (taken, held, members): (i64, i64, i64) =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                    use sqlx::{Connection, Row};
                    let mut conn =
                        sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
                    let count = async |conn: &mut sqlx::SqliteConnection, sql: &str| -> i64 {
                        sqlx::query(sql).fetch_one(conn).await.unwrap().get(0)
                    };
                    let leases = "SELECT count(*) FROM leases WHERE kind IN ('DataContract', 'DataProduct')";
                    let held = format!("{leases} AND expires_at > 0");
                    let members = "SELECT count(*) FROM replicas";
                    (count(&mut conn, leases).await, count(&mut conn, &held).await, count(&mut conn, members).await)
                });
            assert!(taken > 0, "the applied resources were reconciled under leases");
            assert_eq!((held, members), (0, 0), "leases held and replicas left behind");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("meshplane serve did not stop within 5 s of SIGTERM");
}

/// `--log-format json`: every line one JSON object; each request's line carries the route
/// template, the status, the latency and the id echoed in `x-request-id`; no credential is
/// ever written, whether it was accepted or refused.
#[test]
fn serve_logs_every_request_as_json_and_never_a_credential() {
    let db = std::env::temp_dir().join(format!("mpcli-log-{}.db", std::process::id()));
    let mut s = serve_with(&format!("sqlite://{}", db.display()), &["--log-format", "json"]);
    s.db = Some(db);
    let token = token_for(&s.url).unwrap();
    let http = reqwest::blocking::Client::new();
    let listed = http
        .get(format!("{}/api/v1/contracts", s.url))
        .bearer_auth(&token)
        .header("x-request-id", "ci-job-7")
        .send()
        .unwrap();
    assert_eq!(listed.headers()["x-request-id"], "ci-job-7");
    let contract =
        "apiVersion: v3.1.0\nkind: DataContract\nid: logged\nversion: 1.0.0\nstatus: active\ndomain: sales\n";
    let applied = http.post(format!("{}/api/v1/apply", s.url)).bearer_auth(&token).body(contract).send().unwrap();
    assert_eq!(applied.status().as_u16(), 200);
    wait_ready(&s.url, "contracts", "logged@v1");
    let nowhere = http.get(format!("{}/no/such/path/xyzzy", s.url)).bearer_auth(&token).send().unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);
    let forged = "mp_0123456789abcdef_notarealsecretvalue";
    let refused = http.get(format!("{}/api/v1/contracts/orders@v1", s.url)).bearer_auth(forged).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(s.child.wait().unwrap().success());

    let log = std::fs::read_to_string(s.cwd.join("serve.log")).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    let answered =
        |id: &str| lines.iter().find(|l| l["fields"]["message"] == "answered" && l["span"]["id"] == id).cloned();
    let line = answered("ci-job-7").unwrap_or_else(|| panic!("no line for the request: {log}"));
    assert_eq!(line["span"]["route"], "/api/v1/{kind}", "{line}");
    assert_eq!(line["span"]["method"], "GET", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "answered" && l["fields"]["status"] == 401),
        "the refused request has its line: {log}"
    );
    assert!(lines.iter().any(|l| l["fields"]["message"] == "meshplane serving"), "{log}");
    // A path the API does not have has its line too, under a stand-in, never the path sent.
    let unknown = lines.iter().find(|l| l["span"]["route"] == "(no route)").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(unknown["fields"]["status"], 404, "{unknown}");
    assert!(!log.contains("xyzzy"), "the path sent is not logged");
    // A reconcile that changed a status says what moved, in the span naming the resource.
    let moved = lines
        .iter()
        .find(|l| l["fields"]["message"] == "status changed" && l["span"]["object"] == "DataContract/logged@v1")
        .unwrap_or_else(|| panic!("no line for the status change: {log}"));
    let transitions = moved["fields"]["transitions"].as_str().unwrap();
    assert!(transitions.contains("Ready: -→True (Reconciled)"), "{moved}");
    assert!(
        lines.last().is_some_and(|l| l["fields"]["message"].as_str().unwrap_or("").starts_with("stopped")),
        "{log}"
    );
    for secret in [token.rsplit('_').next().unwrap(), forged.rsplit('_').next().unwrap()] {
        assert!(!log.contains(secret), "a credential is in the log");
    }
}

#[test]
fn a_call_without_a_token_says_where_one_comes_from() {
    let s = serve();
    let out = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["get", "contracts", "--server", &s.url])
        .env_remove("MESHPLANE_TOKEN")
        .output()
        .unwrap();
    let empty = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["get", "contracts", "--server", &s.url])
        .env("MESHPLANE_TOKEN", "")
        .output()
        .unwrap();
    for out in [out, empty] {
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "error[unauthenticated]: no token: set MESHPLANE_TOKEN or pass --token (the first admin token comes \
             from meshplane bootstrap), or sign in with meshplane login\n"
        );
    }
}

#[test]
fn a_server_that_never_answers_is_given_up_on_with_the_time_waited() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let out = meshplane(&["get", "contracts", "--server", &url, "--request-timeout", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let expected = format!("error: the meshplane server at {url} did not answer within 1 s (--request-timeout)\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    drop(silent);
}

#[test]
fn the_cli_reports_refusals_and_unreachable_servers() {
    let s = serve();
    let missing = meshplane(&["get", "contracts", "nothing@v1", "--server", &s.url]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("error[not-found]"));
    let broken = meshplane(&["apply", "--server", &s.url, "-f", "bad/orders.odcs.yaml"]);
    assert_eq!(broken.status.code(), Some(2), "lint errors are shown locally and nothing is sent");
    assert!(String::from_utf8_lossy(&broken.stderr).contains("nothing was sent"));
    let down = meshplane(&["get", "contracts", "--server", "http://127.0.0.1:9"]);
    assert_eq!(down.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the meshplane server"));
}

#[test]
fn serve_refuses_a_bad_store_or_address_with_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let db = std::env::temp_dir().join(format!("mpcli-busy-{}.db", std::process::id()));
    let db_url = format!("sqlite://{}", db.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--database-url".into(), "mysql://db/x".into()], "neither sqlite://PATH nor postgres://"),
        (vec!["--database-url".into(), "sqlite:///nonexistent-dir/x/meshplane.db".into()], "cannot open the store"),
        (
            vec!["--listen".into(), format!("127.0.0.1:{port}"), "--database-url".into(), db_url],
            "is in use: is another meshplane serve running? use --listen",
        ),
        (vec!["--listen".into(), "not-an-address".into()], "invalid value 'not-an-address'"),
    ];
    for (args, message) in cases {
        let mut all = vec!["serve".to_string()];
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = meshplane(&refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

#[test]
fn serve_refuses_a_store_a_newer_release_wrote() {
    use sqlx::Connection;
    let db = std::env::temp_dir().join(format!("mpcli-newer-{}.db", std::process::id()));
    let url = format!("sqlite://{}", db.display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        drop(meshplane_core::store::Store::open(&url).await.unwrap());
        // What a newer release's migration leaves behind.
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO meshplane_schema (version) VALUES (9999)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = meshplane(&["serve", "--listen", &format!("127.0.0.1:{port}"), "--database-url", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("schema version 9999, newer than this meshplane knows"), "{err}");
    assert!(err.contains("upgrade meshplane, do not downgrade the store"), "{err}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// The names of every stored contract, page by page.
fn all_contracts(url: &str) -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["get", "contracts", "--server", url, "-o", "json", "--limit", "1000"];
        let page_after;
        if let Some(a) = &after {
            page_after = a.clone();
            args.extend(["--after", &page_after]);
        }
        let out = meshplane(&args);
        let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        names.extend(page["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return names,
        }
    }
}

/// POSTs `body` to `/api/v1/apply` with a bare HTTP/1.1 request; the status, or None when the
/// connection broke (the server died).
fn post_apply(url: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    let token = token_for(url).unwrap_or_default();
    let request = format!(
        "POST /api/v1/apply HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// Eight clients apply pairs of contracts while the server is killed with SIGKILL and
/// restarted on the same store: every acknowledged pair is there, no pair is half there.
#[test]
fn a_killed_server_keeps_every_acknowledged_apply_and_no_half_of_one() {
    let first = serve();
    let db = first.db.clone().unwrap();
    let url = first.url.clone();
    let doc = |id: String| {
        format!("apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: d\n")
    };
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (url, doc) = (url.clone(), doc);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut sent = Vec::new();
                for i in 0.. {
                    let pair = (format!("c{c}-{i}-a"), format!("c{c}-{i}-b"));
                    let body = format!("{}---\n{}", doc(pair.0.clone()), doc(pair.1.clone()));
                    sent.push(pair.clone());
                    match post_apply(&url, &body) {
                        Some(200) => acknowledged.push(pair),
                        Some(other) => panic!("an apply was refused: {other}"),
                        None => break,
                    }
                }
                (acknowledged, sent)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let pid = first.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let mut first = first;
    first.keep_db = true; // the store stays for the restart; the second server cleans it up
    let second = serve_on(db);
    let stored = all_contracts(&second.url);
    let present = |id: &str| stored.contains(&format!("{id}@v1"));
    let mut acknowledged_total = 0;
    for (acknowledged, sent) in &results {
        acknowledged_total += acknowledged.len();
        for (a, b) in acknowledged {
            assert!(present(a) && present(b), "acknowledged {a} and {b} are kept");
        }
        // The pairs sent but not acknowledged: all or nothing.
        for (a, b) in sent.iter().filter(|p| !acknowledged.contains(p)) {
            assert_eq!(present(a), present(b), "{a} and {b} were one apply");
        }
    }
    assert!(acknowledged_total > 8, "the clients got work done before the kill: {acknowledged_total}");
    // Reconciles resume: the last acknowledged contract of every client becomes Ready.
    for (acknowledged, _) in &results {
        let Some((last, _)) = acknowledged.last() else { continue };
        let name = format!("{last}@v1");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = meshplane(&["get", "contracts", &name, "--server", &second.url, "-o", "json"]);
            let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let conditions = record["reconciled"]["conditions"].as_array().cloned().unwrap_or_default();
            if conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name} was never reconciled after the restart: {record}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Polls `meshplane get KIND NAME -o json` until its Ready condition is True.
fn wait_ready(url: &str, kind: &str, name: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = meshplane(&["get", kind, name, "--server", url, "-o", "json"]);
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let conditions = record["reconciled"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True") {
            return record;
        }
        assert!(std::time::Instant::now() < deadline, "{kind} {name} never got Ready: {record}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_embedded_platform_provisions_the_example_mesh_in_a_local_lake() {
    let s = serve();
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    let applied = meshplane(&["apply", "--server", &s.url, "-f", mesh.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    for product in
        ["sales-orders", "sales-returns", "customer-360", "customer-segments", "finance-revenue", "finance-forecast"]
    {
        wait_ready(&s.url, "products", product);
    }
    let orders = wait_ready(&s.url, "contracts", "orders@v2");
    let provisioned =
        orders["reconciled"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Provisioned");
    assert_eq!(provisioned.unwrap()["status"], "True", "{orders}");
    assert!(s.cwd.join("data/orders/.meshplane-port").is_file(), "the port's prefix holds its schema");
    let blocks = meshplane(&["blocks", "--server", &s.url]);
    assert_eq!(stdout(&blocks), "NAME                 TYPE       HEALTH\nlake                 lake       ok\n");
}

#[test]
fn serve_refuses_a_bad_platform_with_every_problem_and_starts_nothing() {
    let dir = std::env::temp_dir().join(format!("mpcli-platform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("platform.yaml");
    std::fs::write(
        &file,
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - { name: w, type: postgress }\n\
         \x20 - { name: l, type: lake, root: ./data, password: x }\n",
    )
    .unwrap();
    let out = meshplane(&["serve", "--platform", file.to_str().unwrap(), "--listen", "127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
    assert!(err.contains(&format!("{}:5:22: unknown block type `postgress`", file.display())), "{err}");
    assert!(err.contains("6:42: unknown field `password`"), "{err}");
    let secret = "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
                  \x20 - { name: w, type: postgres, host: h, database: d, user: u, password: { env: MESHPLANE_UNSET_SECRET } }\n";
    std::fs::write(&file, secret).unwrap();
    let out = meshplane(&["serve", "--platform", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("block `w`: password: the environment variable MESHPLANE_UNSET_SECRET is not set"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// examples/platform.yaml (both storage blocks) serving examples/mesh and examples/warehouse,
/// on a PostgreSQL database of the test's own: every product Ready, the warehouse port a
/// real table, the lake ports real prefixes.
#[test]
fn the_example_platform_provisions_both_blocks_and_every_product_gets_ready() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let place = runtime.block_on(meshplane_core::testing::postgres());
    let database = place.url.rsplit('/').next().unwrap().to_string();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let ours =
        |file: &str| std::fs::read_to_string(examples.join(file)).unwrap().replace("meshplane_examples", &database);
    let dir = std::env::temp_dir().join(format!("mpcli-examples-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("warehouse")).unwrap();
    // A password inline (trust authentication ignores it): it must never be shown.
    let platform =
        ours("platform.yaml").replace("    user: postgres\n", "    user: postgres\n    password: hunter2-inline\n");
    std::fs::write(dir.join("platform.yaml"), platform).unwrap();
    for file in ["ledger.odcs.yaml", "ledger.odps.yaml"] {
        std::fs::write(dir.join("warehouse").join(file), ours(&format!("warehouse/{file}"))).unwrap();
    }
    let platform = dir.join("platform.yaml");
    let s = serve_with("sqlite://store.db", &["--platform", platform.to_str().unwrap()]);
    let mesh = examples.join("mesh");
    let applied = meshplane(&[
        "apply",
        "--server",
        &s.url,
        "-f",
        mesh.to_str().unwrap(),
        "-f",
        dir.join("warehouse").to_str().unwrap(),
    ]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    for product in ["sales-orders", "customer-360", "finance-revenue", "finance-forecast", "finance-ledger"] {
        wait_ready(&s.url, "products", product);
    }
    let ledger = wait_ready(&s.url, "contracts", "ledger@v1");
    let conditions = ledger["reconciled"]["conditions"].as_array().unwrap();
    let provisioned = conditions.iter().find(|c| c["type"] == "Provisioned").unwrap();
    assert_eq!(
        provisioned["message"], "warehouse: created schema ledger_v1, created table ledger_v1.entries",
        "{ledger}"
    );
    let psql = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &database, "-XAtc"])
        .arg("SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'ledger_v1'")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "day date, account character varying, country text, amount numeric"
    );
    assert!(s.cwd.join("data/revenue/.meshplane-port").is_file());
    let blocks = stdout(&meshplane(&["blocks", "--server", &s.url]));
    assert!(
        blocks.contains("lake                 lake       ok") && blocks.contains("warehouse            postgres   ok"),
        "{blocks}"
    );
    let described = stdout(&meshplane(&["blocks", "--server", &s.url, "-o", "json"]));
    assert!(!described.contains("hunter2") && described.contains("\"password\": \"***\""), "{described}");
    drop(s);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Deleting a contract whose port holds data leaves the data in place, listed as an orphan;
/// only `meshplane purge` removes it (a dry run first).
#[test]
fn deleted_data_stays_an_orphan_until_purged() {
    let s = serve();
    let orders = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh/sales/orders.odcs.yaml");
    let applied = meshplane(&["apply", "--server", &s.url, "-f", orders.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", String::from_utf8_lossy(&applied.stderr));
    wait_ready(&s.url, "contracts", "orders@v2");
    let port = s.cwd.join("data/orders");
    std::fs::write(port.join("part-0.parquet"), b"not really parquet").unwrap();
    assert_eq!(meshplane(&["delete", "contracts", "orders@v2", "--server", &s.url]).status.code(), Some(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while meshplane(&["get", "contracts", "orders@v2", "--server", &s.url]).status.code() != Some(1) {
        assert!(std::time::Instant::now() < deadline, "the contract never went");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(port.join("part-0.parquet").exists(), "deleting never drops data");
    let listed = stdout(&meshplane(&["orphans", "--server", &s.url]));
    assert!(listed.contains("DataContract/orders@v2") && listed.contains("(the retain policy keeps it)"), "{listed}");
    let dry = stdout(&meshplane(&["purge", "--dry-run", "--server", &s.url]));
    assert!(dry.ends_with(": wouldPurge\n"), "{dry}");
    assert!(port.join("part-0.parquet").exists(), "a dry run removes nothing");
    let purged = meshplane(&["purge", "--server", &s.url]);
    assert_eq!(purged.status.code(), Some(0), "{}", String::from_utf8_lossy(&purged.stderr));
    assert!(stdout(&purged).ends_with(": purged\n"), "{}", stdout(&purged));
    assert!(!port.exists(), "purged");
    assert_eq!(stdout(&meshplane(&["orphans", "--server", &s.url])).lines().count(), 1, "only the header is left");
    let missing = meshplane(&["purge", "--id", "999", "--server", &s.url]);
    assert_eq!(missing.status.code(), Some(1));
}

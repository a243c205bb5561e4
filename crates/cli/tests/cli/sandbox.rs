//! Contract tests run by `meshplane serve` are sandboxed: each in a child process with a
//! memory and CPU limit and a deadline. A run that goes past them is stopped and reported,
//! while the server keeps answering; and a YAML anchor bomb is refused without the server's
//! memory growing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use super::{Served, serve_with, token_for};

/// `rows` distinct keys of about 1 KB each (alike but for their ends, so the file is small
/// and what a scan holds of it is large), in a Parquet file at `path`.
fn keys(path: &Path, rows: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None).unwrap();
    let prefix = "k".repeat(1000);
    for start in (0..rows).step_by(50_000) {
        let ids: Vec<String> =
            (start..(start + 50_000).min(rows)).map(|i| format!("{prefix}{}", (i * 7919) % rows)).collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(ids))]).unwrap();
        writer.write(&batch).unwrap();
    }
    writer.close().unwrap();
}

/// A call to the server as its admin: (status, body).
fn call(s: &Served, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let token = token_for(&s.url).unwrap();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let request = match method {
        "post" => client.post(format!("{}{path}", s.url)).body(body.to_string()),
        _ => client.get(format!("{}{path}", s.url)),
    };
    let res = request.bearer_auth(token).send().unwrap();
    let status = res.status().as_u16();
    (status, res.json().unwrap_or(serde_json::Value::Null))
}

fn contract(id: &str, path: &str, rules: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: ops\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: {path}, format: parquet }}\n\
         schema:\n  - name: rows\n    properties:\n      - {{ name: id, logicalType: string{rules} }}\n"
    )
}

fn ready(s: &Served, name: &str) {
    for _ in 0..200 {
        let (_, body) = call(s, "get", &format!("/api/v1/contracts/{name}"), "");
        let conditions = body["reconciled"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never got Ready");
}

/// Polls /readyz while `work` runs; returns what `work` returned and every status seen.
fn while_probed<T>(s: &Served, work: impl FnOnce() -> T) -> (T, Vec<u16>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (url, stopping) = (s.url.clone(), Arc::clone(&stop));
    let probe = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut seen = Vec::new();
        while !stopping.load(Ordering::Relaxed) {
            seen.push(client.get(format!("{url}/readyz")).send().map_or(0, |r| r.status().as_u16()));
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    });
    let out = work();
    stop.store(true, Ordering::Relaxed);
    (out, probe.join().unwrap())
}

/// A contract of a port in PostgreSQL, on `block`.
fn pg_contract(id: &str, block: &str, port: u16, database: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: ops\n\
         servers:\n  - {{ server: {block}, type: postgres, environment: dev, host: 127.0.0.1, port: {port}, \
         database: {database}, schema: {id}_v1 }}\n\
         schema:\n  - name: rows\n    properties:\n      - {{ name: id, logicalType: string }}\n"
    )
}

/// One line of `psql` as postgres on `database`.
fn psql(database: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-XAtc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Someone holding `table` of `database` locked (for a minute, or until its session is
/// terminated).
fn hold(database: &str, table: &str) -> std::process::Child {
    let holder = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Xqc"])
        .arg(format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"))
        .spawn()
        .unwrap();
    let relation = table.rsplit('.').next().unwrap();
    let held = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{relation}' AND l.mode = 'AccessExclusiveLock' AND l.granted"
    );
    while psql(database, &held) != "1" {
        std::thread::sleep(Duration::from_millis(50));
    }
    holder
}

/// Item 8: a duplicate count and a SQL rule that need more memory than a run may have are
/// stopped, reported as such, and the server keeps answering its probes meanwhile; a run
/// within the limits still passes.
#[test]
fn contract_tests_past_their_memory_limit_are_stopped_and_the_server_goes_on() {
    let db = std::env::temp_dir().join(format!("mpsandbox-{}.db", std::process::id()));
    let s = serve_with(
        &format!("sqlite://{}", db.display()),
        &["--test-memory-mib", "512", "--test-deadline-seconds", "300"],
    );
    let docs = [
        contract("dups", "data/dups/", ", unique: true"),
        contract("hungry", "data/hungry/", "")
            .replace("    properties:", "    quality:\n      - { type: sql, query: \"SELECT length(string_agg(a.id, ',')) FROM rows a, rows b\", mustBe: 0 }\n    properties:"),
        contract("small", "data/small/", ", unique: true"),
    ];
    let (status, body) = call(&s, "post", "/api/v1/apply", &docs.join("---\n"));
    assert_eq!(status, 200, "{body}");
    for name in ["dups@v1", "hungry@v1", "small@v1"] {
        ready(&s, name);
    }
    keys(&s.cwd.join("data/dups/rows.parquet"), 600_000);
    keys(&s.cwd.join("data/hungry/rows.parquet"), 2_000);
    keys(&s.cwd.join("data/small/rows.parquet"), 2_000);
    for name in ["dups@v1", "hungry@v1"] {
        let ((status, body), probes) =
            while_probed(&s, || call(&s, "post", &format!("/api/v1/contracts/{name}/tests"), ""));
        assert_eq!((status, body["code"].as_str()), (422, Some("test-limit")), "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains("needed more than its 512 MiB of memory"), "{body}");
        assert!(!probes.is_empty() && probes.iter().all(|p| *p == 200), "{name}: /readyz answered {probes:?}");
    }
    let (status, run) = call(&s, "post", "/api/v1/contracts/small@v1/tests", "");
    assert_eq!((status, run["failed"].as_bool()), (200, Some(false)), "{run}");
    let log = std::fs::read_to_string(s.cwd.join("serve.log")).unwrap();
    let kept = format!("run={}", run["seq"]);
    let line = log.lines().find(|l| l.contains("test run kept") && l.contains(&kept));
    let line = line.unwrap_or_else(|| panic!("no line for the run ({kept}): {log}"));
    assert!(line.contains("contract=small@v1") && line.contains("failed=false"), "{line}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// Item 12: runs that never get an answer are stopped at their deadline — one whose query
/// waits forever (its table locked by someone else), and one whose block's host accepts and
/// never answers — while another run and the probes go on.
#[test]
fn contract_tests_that_never_get_an_answer_are_stopped_at_their_deadline() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let warehouse = runtime.block_on(meshplane_core::testing::postgres());
    let database = warehouse.url.rsplit('/').next().unwrap().to_string();
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let platform = std::env::temp_dir().join(format!("mpdeadline-{}.yaml", std::process::id()));
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: ./data }}\n\
             \x20 - {{ name: warehouse, type: postgres, host: 127.0.0.1, database: {database}, user: postgres }}\n\
             \x20 - {{ name: silent, type: postgres, host: 127.0.0.1, port: {trap_port}, database: x, user: postgres }}\n"
        ),
    )
    .unwrap();
    let db = std::env::temp_dir().join(format!("mpdeadline-{}.db", std::process::id()));
    let s = serve_with(
        &format!("sqlite://{}", db.display()),
        &["--platform", platform.to_str().unwrap(), "--test-deadline-seconds", "3"],
    );
    let docs = [
        pg_contract("stuck", "warehouse", 5432, &database),
        pg_contract("unanswered", "silent", trap_port, "x"),
        contract("fine", "data/fine/", ", unique: true"),
    ];
    let (status, body) = call(&s, "post", "/api/v1/apply", &docs.join("---\n"));
    assert_eq!(status, 200, "{body}");
    ready(&s, "stuck@v1");
    ready(&s, "fine@v1");
    keys(&s.cwd.join("data/fine/rows.parquet"), 100);
    // Someone holds the stuck port's table, and does not let go.
    let mut holder = hold(&database, "stuck_v1.rows");
    let url = s.url.clone();
    let fine = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let token = token_for(&url).unwrap();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let res = client.post(format!("{url}/api/v1/contracts/fine@v1/tests")).bearer_auth(token).send().unwrap();
        res.json::<serde_json::Value>().unwrap()
    });
    for name in ["stuck@v1", "unanswered@v1"] {
        let ((status, body), probes) =
            while_probed(&s, || call(&s, "post", &format!("/api/v1/contracts/{name}/tests"), ""));
        assert_eq!((status, body["code"].as_str()), (504, Some("test-deadline")), "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains("did not finish within its deadline of 3 s"), "{body}");
        assert!(probes.len() > 5 && probes.iter().all(|p| *p == 200), "{name}: /readyz answered {probes:?}");
    }
    let other = fine.join().unwrap();
    assert_eq!(other["failed"], false, "a run beside the stuck ones went through: {other}");
    let _ = holder.kill();
    let _ = holder.wait();
    drop(trap);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let _ = std::fs::remove_file(platform);
}

/// The peak resident memory of a process, in bytes.
fn peak(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Item 7: a 1.9 MB YAML anchor bomb (a 1 KiB text repeated by 470,000 aliases: half a
/// gigabyte once expanded) is refused with where it went past its budget, and the server's
/// peak memory hardly moves; it keeps answering.
#[test]
fn an_anchor_bomb_is_refused_without_the_servers_memory_growing() {
    let db = std::env::temp_dir().join(format!("mpbomb-{}.db", std::process::id()));
    let s = serve_with(&format!("sqlite://{}", db.display()), &[]);
    let (status, _) = call(&s, "get", "/healthz", "");
    assert_eq!(status, 200);
    let before = peak(s.child.id());
    let mut bomb = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: bomb\nversion: 1.0.0\ndomain: ops\ndescription: &a \"{}\"\ntags: [",
        "x".repeat(1024)
    );
    bomb.push_str(&"*a, ".repeat(470_000));
    bomb.push_str("*a]\n");
    assert!(bomb.len() > 1_800_000 && bomb.len() < 2_000_000);
    let (status, body) = call(&s, "post", "/api/v1/apply", &bomb);
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid-document")), "{body}");
    let message = body["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("alias bomb"), "{body}");
    let grown = peak(s.child.id()).saturating_sub(before);
    assert!(grown < 64 << 20, "the server's peak memory grew by {} MiB", grown >> 20);
    assert_eq!(call(&s, "get", "/healthz", "").0, 200);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// A run whose error quotes a value as long as the data (a 40 MB text that is not a
/// number) answers with that text cut short: the report stays small, and so does what the
/// server holds of it.
#[test]
fn a_runs_texts_are_cut_short_before_they_reach_the_server() {
    let db = std::env::temp_dir().join(format!("mplong-{}.db", std::process::id()));
    let s = serve_with(&format!("sqlite://{}", db.display()), &[]);
    let long = contract("long", "data/long/", "").replace(
        "    properties:",
        "    quality:\n      - { type: sql, query: \"SELECT repeat('y', 40000000) FROM rows\", mustBe: 0 }\n    properties:",
    );
    let (status, body) = call(&s, "post", "/api/v1/apply", &long);
    assert_eq!(status, 200, "{body}");
    ready(&s, "long@v1");
    keys(&s.cwd.join("data/long/rows.parquet"), 1);
    let before = peak(s.child.id());
    let (status, run) = call(&s, "post", "/api/v1/contracts/long@v1/tests", "");
    assert_eq!(status, 200, "{run}");
    let results = run["report"]["results"].as_array().unwrap();
    let sql = results.iter().find(|r| r["key"] == "rows.sql").unwrap_or_else(|| panic!("{run}"));
    let detail = sql["detail"].as_str().unwrap_or_default();
    assert!(
        detail.ends_with("more characters)") && detail.chars().count() < 2_100,
        "{}",
        detail.chars().take(200).collect::<String>()
    );
    assert!(run.to_string().len() < 64 << 10, "the report is {} bytes", run.to_string().len());
    let grown = peak(s.child.id()).saturating_sub(before);
    assert!(grown < 32 << 20, "the server's peak memory grew by {} MiB", grown >> 20);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// A run whose client goes away goes on to its end: its report is kept and its test login
/// dropped, so disconnecting cannot pile up logins, sessions or runs.
#[test]
fn a_run_whose_client_goes_away_ends_its_login_and_keeps_its_report() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let warehouse = runtime.block_on(meshplane_core::testing::postgres());
    let database = warehouse.url.rsplit('/').next().unwrap().to_string();
    let platform = std::env::temp_dir().join(format!("mpgone-{}.yaml", std::process::id()));
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
             \x20 - {{ name: warehouse, type: postgres, host: 127.0.0.1, database: {database}, user: postgres }}\n"
        ),
    )
    .unwrap();
    let db = std::env::temp_dir().join(format!("mpgone-{}.db", std::process::id()));
    let s = serve_with(&format!("sqlite://{}", db.display()), &["--platform", platform.to_str().unwrap()]);
    let (status, body) = call(&s, "post", "/api/v1/apply", &pg_contract("waits", "warehouse", 5432, &database));
    assert_eq!(status, 200, "{body}");
    ready(&s, "waits@v1");
    let mut holder = hold(&database, "waits_v1.rows");
    let token = token_for(&s.url).unwrap();
    let impatient = reqwest::blocking::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let gone = impatient.post(format!("{}/api/v1/contracts/waits@v1/tests", s.url)).bearer_auth(token).send();
    assert!(gone.is_err(), "the client gave up before the run could end");
    let waiting = "SELECT usename FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename LIKE 'mp\\_%'";
    let mut login = String::new();
    for _ in 0..100 {
        login = psql(&database, waiting);
        if !login.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!login.is_empty(), "the run waits on the lock as its own login");
    let _ = holder.kill();
    let _ = holder.wait();
    psql(&database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'");
    // Waited for generously: on a loaded machine the run needs a while to end and report.
    let mut runs = serde_json::Value::Null;
    for _ in 0..1200 {
        runs = call(&s, "get", "/api/v1/contracts/waits@v1/tests", "").1;
        if runs.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(runs[0]["failed"], false, "the run went on to its end: {runs}");
    let exists = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{login}'");
    assert_eq!(psql(&database, &exists), "0", "the run's login {login} is gone");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let _ = std::fs::remove_file(platform);
}

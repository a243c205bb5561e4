//! Readiness at a glance, against a real `meshplane serve` with its embedded lake block: the
//! READY and REASON columns of `get`, `describe`'s conditions, `apply --wait` that ends as soon
//! as everything is Ready or failed for good (exit 1, the holding condition printed), and
//! `get -w`, which prints a resource again when it changes.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::{meshplane, serve, stdout, token_for};

fn contract(id: &str, path: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: {path}, format: parquet }}\n\
         schema:\n  - name: t\n    properties:\n      - {{ name: id, logicalType: string }}\n"
    )
}

fn product(id: &str, contract: &str) -> String {
    format!(
        "apiVersion: v1.0.0\nkind: DataProduct\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         outputPorts:\n  - {{ name: out, version: 1.0.0, contractId: {contract} }}\n"
    )
}

/// Writes `documents` into a file of their own and returns its path.
fn file(dir: &std::path::Path, name: &str, documents: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, documents.join("---\n")).unwrap();
    path.display().to_string()
}

#[test]
fn apply_wait_ends_on_ready_or_on_a_failure_for_good_and_get_shows_why() {
    let s = serve();
    let dir = s.cwd.join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    let good = file(&dir, "good.yaml", &[contract("fine", "./data/fine/"), product("fine-product", "fine")]);
    let bad = file(&dir, "bad.yaml", &[contract("astray", "/etc/"), product("astray-product", "astray")]);

    let applied = meshplane(&["apply", "--server", &s.url, "-f", &good, "--wait=2m"]);
    assert_eq!(applied.status.code(), Some(0), "{}{}", stdout(&applied), String::from_utf8_lossy(&applied.stderr));
    let out = stdout(&applied);
    assert!(out.contains("DataContract fine@v1 1.0.0 generation 1: created"), "{out}");
    assert!(out.contains("DataContract fine@v1: Ready") && out.contains("DataProduct fine-product: Ready"), "{out}");

    // The contract's port is refused by the block (its path is not under the lake's root): the
    // wait ends with it, and with the product that waits only for it, long before 2 minutes.
    let applied = meshplane(&["apply", "--server", &s.url, "-f", &bad, "--wait=2m"]);
    assert_eq!(applied.status.code(), Some(1), "{}{}", stdout(&applied), String::from_utf8_lossy(&applied.stderr));
    let out = stdout(&applied);
    let refused = "DataContract astray@v1: not Ready (for good): Provisioned ProvisioningRefused: lake: server `lake`: \
                   /etc/ is not under block `lake`'s root";
    assert!(out.contains(refused), "{out}");
    assert!(out.contains("DataProduct astray-product: not Ready (yet): PortsReady ContractsNotReady"), "{out}");
    assert!(!out.contains("after 2m"), "the wait did not run out: {out}");

    // Applied again without waiting, the unchanged contract says why it is not Ready.
    let plain = stdout(&meshplane(&["apply", "--server", &s.url, "-f", &bad]));
    let line = plain.lines().find(|l| l.starts_with("DataContract astray@v1")).unwrap_or_default();
    assert!(
        line.contains("unchanged; not Ready: Provisioned ProvisioningRefused: lake: server `lake`: /etc/"),
        "{plain}"
    );

    let again = meshplane(&["apply", "--server", &s.url, "-f", &bad, "--wait", "-o", "json"]);
    assert_eq!(again.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let waited = body["waited"].as_array().unwrap();
    let astray = waited.iter().find(|w| w["name"] == "astray@v1").unwrap();
    assert_eq!(astray["ready"], false);
    assert_eq!(astray["condition"]["reason"], "ProvisioningRefused");
    assert_eq!(astray["condition"]["forGood"], true);
    assert_eq!(body["applied"][0]["outcome"], "unchanged");

    let table = stdout(&meshplane(&["get", "contracts", "--server", &s.url]));
    let header = table.lines().next().unwrap();
    assert!(header.contains("READY") && header.contains("REASON"), "{table}");
    let row = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    let (astray, fine) = (row("astray@v1"), row("fine@v1"));
    assert!(astray.contains(" False ") && astray.contains("ProvisioningRefused"), "{table}");
    assert!(fine.contains(" True "), "{table}");
    let one = stdout(&meshplane(&["get", "contracts", "astray@v1", "--server", &s.url]));
    assert!(one.contains("ready       False (Provisioned ProvisioningRefused: lake: server `lake`: /etc/"), "{one}");
    let products = stdout(&meshplane(&["get", "products", "--server", &s.url]));
    assert!(products.lines().any(|l| l.starts_with("astray-product") && l.contains("ContractsNotReady")), "{products}");

    let described = stdout(&meshplane(&["describe", "contracts", "astray@v1", "--server", &s.url]));
    assert!(described.contains("conditions:") && described.contains("tests:\n  (none)"), "{described}");
    let provisioned = described.lines().find(|l| l.trim_start().starts_with("Provisioned")).unwrap_or_default();
    assert!(provisioned.contains("False") && provisioned.contains("ProvisioningRefused"), "{described}");
    assert!(provisioned.contains("is not under block `lake`'s root"), "{described}");
}

#[test]
fn get_watch_prints_a_resource_again_when_it_changes() {
    let s = serve();
    let dir = s.cwd.join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    let first = file(&dir, "first.yaml", &[contract("first", "./data/first/")]);
    assert_eq!(meshplane(&["apply", "--server", &s.url, "-f", &first, "--wait"]).status.code(), Some(0));

    let mut watch = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["get", "contracts", "-w", "-o", "json", "--server", &s.url])
        .env("MESHPLANE_TOKEN", token_for(&s.url).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::io::BufReader::new(watch.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = sender.send(serde_json::from_str(&line).expect("one JSON object per line"));
        }
    });
    let next = || lines.recv_timeout(std::time::Duration::from_secs(30)).expect("the watch printed nothing more");
    assert_eq!(next()["name"], "first@v1", "the listing comes first");

    let second = file(&dir, "second.yaml", &[contract("second", "./data/second/")]);
    assert_eq!(meshplane(&["apply", "--server", &s.url, "-f", &second]).status.code(), Some(0));
    // The watch shows the new contract as it is applied, then as it becomes Ready.
    let mut seen = Vec::new();
    while !seen.iter().any(|r: &serde_json::Value| {
        r["name"] == "second@v1"
            && r["reconciled"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    }) {
        seen.push(next());
    }
    assert!(seen.iter().all(|r| r["name"] == "second@v1"), "only what changed is printed again: {seen:?}");
    let _ = watch.kill();
    let _ = watch.wait();
}

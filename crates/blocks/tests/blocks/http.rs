//! The remote block against examples/blocks/folder_block.py, a block written in Python with
//! the standard library only, started by the test on loopback: provision (a long-running
//! operation), idempotence, cleanup, purge, a wrong credential, and a killed block.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use meshplane_blocks::http::HttpBlock;
use meshplane_blocks::platform::Platform;
use meshplane_core::access::{AccessReport, AccessSync, Enforcement, Grant};
use meshplane_core::block::Provisioner;

use crate::postgres::{call, notes, record};

/// The Python block, killed and its folder removed when dropped.
struct Remote {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn start() -> Remote {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = std::env::temp_dir().join(format!("mpremote-{}-{port}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blocks/folder_block.py");
    let child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--root", root.to_str().unwrap(), "--credential-env", "FOLDER_TOKEN"])
        .env("FOLDER_TOKEN", "the-right-token")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Remote { child, port, root }
}

fn block(port: u16, token: &str) -> HttpBlock {
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: folder\n    type: http\n\
         \x20   url: http://127.0.0.1:{port}\n    credential: {token}\n    serverTypes: [custom]\n"
    );
    let platform = Arc::new(Platform::from_yaml(&text).unwrap());
    let config = platform.blocks[0].typed::<meshplane_blocks::platform::HttpConfig>().unwrap();
    HttpBlock::new("folder", config, Arc::clone(&platform)).unwrap()
}

const CONTRACT: &str = "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\n\
    domain: sales\nservers:\n  - { server: folder, type: custom, environment: dev, location: topic-orders }\n\
    schema:\n  - name: orders\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_written_in_python_provisions_cleans_up_and_purges() {
    let remote = start();
    let folder = block(remote.port, "the-right-token");
    let orders = record(CONTRACT);
    assert!(folder.concerns(&orders));
    assert_eq!(folder.health().await, Some(Ok(())));
    assert_eq!(folder.provision(&orders, &call()).await.unwrap().summary, "wrote orders@v1.json");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(remote.root.join("orders@v1.json")).unwrap()).unwrap();
    assert_eq!(written["servers"][0]["location"], "topic-orders");
    assert_eq!(folder.provision(&orders, &call()).await.unwrap().summary, "orders@v1.json is as declared");

    // update-access: the grants in force reach the block, which records them (advisory).
    let grant = Grant { id: 7, consumer: "carol".into(), database_role: Some("carol_db".into()), write: false };
    let access = AccessSync { installation: "inst1".into(), grants: vec![grant], releasing: false };
    let report = folder.sync_access(&orders, &access, &call()).await.unwrap();
    assert_eq!(report, AccessReport::of(Enforcement::Advisory));
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(remote.root.join("orders@v1.grants.json")).unwrap()).unwrap();
    assert_eq!(kept, serde_json::json!([{ "id": 7, "consumer": "carol", "databaseRole": "carol_db", "write": false }]));
    let releasing = AccessSync { releasing: true, ..access };
    folder.sync_access(&orders, &releasing, &call()).await.unwrap();
    assert!(!remote.root.join("orders@v1.grants.json").exists());

    let left = folder.cleanup(&orders, &call()).await.unwrap();
    assert_eq!(notes(left.clone()), ["entry orders@v1.json (kept until purged)"]);
    folder.purge(&left[0].place, &call()).await.unwrap();
    assert!(!remote.root.join("orders@v1.json").exists());

    let nowhere = record(&CONTRACT.replace(", location: topic-orders", ""));
    let invalid = folder.provision(&nowhere, &call()).await.unwrap_err().to_string();
    assert_eq!(invalid, "the block cannot take it: server `folder` has no location (the folder entry's address)");
    assert!(!remote.root.join("orders@v1.json").exists(), "nothing was provisioned");

    let refused = block(remote.port, "a-wrong-token").provision(&orders, &call()).await.unwrap_err().to_string();
    assert!(refused.starts_with("the block refused meshplane's credential (401"), "{refused}");
}

/// Calls carry the installation and the lease's fencing token; the block refuses a call
/// under an older lease than one it has seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_block_refuses_a_call_under_a_stale_lease() {
    let remote = start();
    let folder = block(remote.port, "the-right-token");
    let orders = record(CONTRACT);
    let lease = |token| meshplane_core::block::Call {
        installation: "t1".into(),
        fence: Some(meshplane_core::block::Fence { owner: "replica".into(), token }),
    };
    folder.provision(&orders, &lease(5)).await.unwrap();
    let refused = folder.provision(&orders, &lease(4)).await.unwrap_err().to_string();
    assert_eq!(refused, "the block answered 409 Conflict: lease token 4 is older than 5, already seen");
    folder.provision(&orders, &lease(6)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_block_is_a_clear_failure() {
    let mut remote = start();
    let folder = block(remote.port, "the-right-token");
    remote.child.kill().unwrap();
    remote.child.wait().unwrap();
    let err = folder.provision(&record(CONTRACT), &call()).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("cannot reach http://127.0.0.1:{}", remote.port)), "{err}");
    assert!(matches!(folder.health().await, Some(Err(_))));
}

#[test]
fn the_published_protocol_holds_every_call_the_client_makes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/block-protocol.openapi.json");
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let source = include_str!("../../src/http.rs");
    for call in [
        "/v1/health",
        "/v1/validate",
        "/v1/provision",
        "/v1/cleanup",
        "/v1/purge",
        "/v1/operations/{operation}",
        "/v1/access",
    ] {
        assert!(source.contains(call), "the client calls {call}");
        let documented = call.replace("{operation}", "{id}");
        assert!(document["paths"].get(&documented).is_some(), "{documented} is documented");
    }
}

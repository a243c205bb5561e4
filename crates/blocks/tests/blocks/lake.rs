//! The lake block on a local root: provision, observe the files' schema, drift, and cleanup
//! by deletion policy; every step idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshplane_blocks::lake::LakeBlock;
use meshplane_blocks::platform::Platform;
use meshplane_blocks::storage::Storage;
use meshplane_core::block::{BlockError, Call, Provisioner};
use meshplane_core::store::Record;

use crate::postgres::{call, notes, record};

/// A lake root of its own, removed when dropped.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root(name: &str) -> Root {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("mplake-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Root(dir)
}

fn block(root: &Path, policy: &str) -> Storage<LakeBlock> {
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: lake\n    type: lake\n\
         \x20   root: {}\n    deletionPolicy: {policy}\n",
        root.display()
    );
    let platform = Arc::new(Platform::from_yaml(&text).unwrap());
    let config = platform.blocks[0].typed::<meshplane_blocks::platform::LakeConfig>().unwrap();
    Storage(LakeBlock::new("lake", config, Arc::clone(&platform), Path::new("/")).unwrap())
}

fn contract(path: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: \"{path}\", format: csv }}\n\
         schema:\n  - name: orders\n    properties:\n      - {{ name: id, logicalType: integer }}\n\
         \x20     - {{ name: email, logicalType: string }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_is_a_prefix_with_its_schema_and_the_files_are_observed() {
    let root = root("observe");
    let block = block(&root.0, "retain");
    let port = root.0.join("orders");
    let orders = record(&contract(&format!("{}/*.csv", port.display())));
    assert!(block.concerns(&orders));
    let first = block.provision(&orders, &call()).await.unwrap();
    assert_eq!(first.summary, format!("recorded the schema in {}", port.display()));
    assert!(first.drift.is_empty(), "no file yet, no drift: {:?}", first.drift);
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(port.join(".meshplane-port")).unwrap()).unwrap();
    assert_eq!(recorded["declared"]["schema"][0]["properties"][1]["name"], "email");
    assert_eq!((recorded["installation"].as_str(), recorded["contract"].as_str()), (Some("t1"), Some("orders@v1")));
    assert_eq!(
        block.provision(&orders, &call()).await.unwrap().summary,
        format!("prefix {} is as declared", port.display())
    );

    std::fs::write(port.join("part-1.csv"), "id,email\n1,a@example.com\n").unwrap();
    assert!(block.provision(&orders, &call()).await.unwrap().drift.is_empty());
    std::fs::write(port.join("part-1.csv"), "id,mail,extra\nx,a@example.com,1\n").unwrap();
    let drift = block.provision(&orders, &call()).await.unwrap().drift;
    assert_eq!(
        drift,
        [
            "orders: column `id` is Utf8, declared integer",
            "orders: column `email` is missing from the files",
            "orders: column `mail` is not declared",
            "orders: column `extra` is not declared",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_outside_the_root_is_refused() {
    let root = root("outside");
    let block = block(&root.0, "retain");
    for path in ["/etc/orders/", &format!("{}/../elsewhere/", root.0.display())] {
        let err = block.provision(&record(&contract(path)), &call()).await.unwrap_err();
        assert!(matches!(err, BlockError::Permanent(_)), "a refusal, not retried: {err:?}");
        assert!(err.to_string().contains("is not under block `lake`'s root"), "{path}: {err}");
    }
    assert!(!root.0.join("../elsewhere").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_keeps_the_files_and_removes_only_what_it_made() {
    let root = root("cleanup");
    let port = root.0.join("orders");
    let orders = record(&contract(&format!("{}/", port.display())));
    assert_eq!(block(&root.0, "delete").cleanup(&orders, &call()).await.unwrap(), [], "never provisioned");
    let retain = block(&root.0, "retain");
    retain.provision(&orders, &call()).await.unwrap();
    std::fs::write(port.join("part-1.csv"), "id,email\n1,a@example.com\n").unwrap();
    assert_eq!(
        notes(retain.cleanup(&orders, &call()).await.unwrap()),
        [format!("prefix {} (the retain policy keeps it)", port.display())]
    );
    let delete = block(&root.0, "delete");
    let kept = delete.cleanup(&orders, &call()).await.unwrap();
    assert_eq!(
        notes(kept.clone()),
        [format!("prefix {} (1 file(s) of data: purge them to drop them)", port.display())]
    );
    assert!(port.join("part-1.csv").exists(), "data is never removed by a cleanup");
    assert!(port.join(".meshplane-port").exists(), "the mark stays with the data, for the purge to check");
    delete.purge(&kept[0].place, &call()).await.unwrap();
    assert!(!port.exists(), "purged: the files and the prefix are gone");
    delete.purge(&kept[0].place, &call()).await.unwrap();
    delete.provision(&orders, &call()).await.unwrap();
    assert_eq!(delete.cleanup(&orders, &call()).await.unwrap(), []);
    assert!(!port.exists(), "the empty prefix is gone");
}

/// The same block on an S3-protocol server (on loopback, credentials checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_on_s3_provisions_observes_and_purges_the_same_way() {
    use meshplane_quality::testing::{KEY, SECRET, start_s3};
    let root = root("s3");
    let bucket = root.0.join("lake");
    std::fs::create_dir_all(&bucket).unwrap();
    let addr = start_s3(&root.0).await;
    let lake = |secret: &str| {
        let text = format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - name: lake\n    type: lake\n\
             \x20   root: s3://lake/ports\n    endpoint: http://{addr}\n    accessKeyId: {KEY}\n    secretAccessKey: {secret}\n"
        );
        let platform = Arc::new(Platform::from_yaml(&text).unwrap());
        let config = platform.blocks[0].typed::<meshplane_blocks::platform::LakeConfig>().unwrap();
        Storage(LakeBlock::new("lake", config, Arc::clone(&platform), Path::new("/")).unwrap())
    };
    let text = contract("unused").replace(
        "{ server: lake, type: local, environment: dev, path: \"unused\", format: csv }",
        "{ server: lake, type: s3, environment: dev, location: \"s3://lake/ports/orders/\", format: csv }",
    );
    let orders = record(&text);
    let block = lake(SECRET);
    assert_eq!(block.health().await, Some(Ok(())));
    assert_eq!(
        block.provision(&orders, &call()).await.unwrap().summary,
        "recorded the schema in s3://lake/ports/orders"
    );
    assert!(bucket.join("ports/orders/.meshplane-port").is_file());
    std::fs::write(bucket.join("ports/orders/part-0.csv"), "id,mail\n1,a@example.com\n").unwrap();
    let drift = block.provision(&orders, &call()).await.unwrap().drift;
    assert_eq!(drift, ["orders: column `email` is missing from the files", "orders: column `mail` is not declared"]);
    let denied = lake("wrong").provision(&orders, &call()).await.unwrap_err().to_string();
    assert!(denied.starts_with("cannot reach s3://lake/ports/orders"), "{denied}");
    let kept = block.cleanup(&orders, &call()).await.unwrap();
    assert_eq!(notes(kept.clone()), ["prefix s3://lake/ports/orders (the retain policy keeps it)"]);
    block.purge(&kept[0].place, &call()).await.unwrap();
    assert!(!bucket.join("ports/orders/part-0.csv").exists(), "purged");
    // A key that only starts like the root is outside it; so is another bucket.
    for location in ["s3://lake/ports-old/orders/", "s3://other/ports/orders/"] {
        let elsewhere = record(&text.replace("s3://lake/ports/orders/", location));
        let err = block.provision(&elsewhere, &call()).await.unwrap_err().to_string();
        assert!(err.contains("is not under block `lake`'s root"), "{location}: {err}");
    }
    assert!(!bucket.join("ports-old").exists());
}

/// A contract of `id` in `domain` at `path`.
fn port(id: &str, domain: &str, path: &str) -> Record {
    record(
        &contract(path)
            .replace("id: orders", &format!("id: {id}"))
            .replace("domain: sales", &format!("domain: {domain}")),
    )
}

/// A prefix is one port's: the same prefix, one inside it or one around it, and a prefix
/// holding files that are no port's, are refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_belongs_to_one_port() {
    let root = root("exclusive");
    let block = block(&root.0, "delete");
    let journal = root.0.join("finance/journal");
    let theirs = port("journal", "finance", &format!("{}/", journal.display()));
    block.provision(&theirs, &call()).await.unwrap();
    std::fs::write(journal.join("part-0.csv"), "id,email\n1,a@b\n").unwrap();
    std::fs::create_dir_all(root.0.join("raw")).unwrap();
    std::fs::write(root.0.join("raw/dump.csv"), "id\n1\n").unwrap();
    let shown = journal.display().to_string();
    for (path, why) in [
        (format!("{shown}/"), format!("prefix {shown} is the port of DataContract journal@v1 of domain `finance`")),
        (format!("{shown}/inner/"), "lies inside the port of DataContract journal@v1 of domain `finance`".to_string()),
        (
            format!("{}/", root.0.join("finance").display()),
            "holds the port of DataContract journal@v1 of domain `finance`".into(),
        ),
        (format!("{}/", root.0.join("raw").display()), "holds 1 file(s) that are no port's".into()),
    ] {
        let grab = port("grab", "sales", &path);
        let err = block.provision(&grab, &call()).await.unwrap_err().to_string();
        assert!(err.contains(&why), "{path}: {err}");
        assert_eq!(block.cleanup(&grab, &call()).await.unwrap(), [], "{path}: nothing of it is left");
    }
    assert!(!journal.join("inner").exists());
    // Another installation cannot take it either, and a forged place is not purged.
    let err = block.provision(&theirs, &Call::unfenced("t2")).await.unwrap_err().to_string();
    assert!(err.contains("is the port of another meshplane installation"), "{err}");
    let forged = serde_json::json!({ "key": journal.strip_prefix("/").unwrap().display().to_string(), "dir": journal,
                                     "domain": "sales", "contract": "grab@v1", "uid": "u1" });
    assert!(block.purge(&forged.to_string(), &call()).await.unwrap_err().to_string().contains("it is not purged"));
    assert_eq!(std::fs::read_to_string(journal.join("part-0.csv")).unwrap(), "id,email\n1,a@b\n");
}

/// A `..` in a template or a physical name, or a link inside the root, cannot lead a port's
/// reads out of its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_leave_the_ports_prefix() {
    let root = root("confined");
    let block = block(&root.0, "retain");
    let outside = root.0.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.csv"), "id,hidden\n1,2\n").unwrap();
    let dir = outside.file_name().unwrap().to_string_lossy().to_string();
    let templated = record(
        &contract(&format!("{}/sales/{{object}}.csv", root.0.display()))
            .replace("  - name: orders\n", &format!("  - name: orders\n    physicalName: ../../{dir}/secret\n")),
    );
    let err = block.provision(&templated, &call()).await.unwrap_err().to_string();
    assert!(err.contains("which is not under the port's prefix"), "{err}");
    std::fs::create_dir_all(root.0.join("sales")).unwrap();
    std::os::unix::fs::symlink(&outside, root.0.join("sales/link")).unwrap();
    let linked = record(&contract(&format!("{}/sales/link/", root.0.display())));
    let err = block.provision(&linked, &call()).await.unwrap_err().to_string();
    assert!(err.contains("is not under block `lake`'s root"), "{err}");
    assert!(!outside.join(".meshplane-port").exists());
    std::fs::remove_dir_all(outside).unwrap();
}

/// A `..` after a glob cannot widen a port's reads to a neighbour, and a glob's partial
/// segment (`orders*` also matches `orders-old`) makes the folder around it the prefix, which
/// must then be the port's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_cannot_widen_the_prefix() {
    let root = root("globs");
    let block = block(&root.0, "retain");
    std::fs::create_dir_all(root.0.join("sales/orders-old")).unwrap();
    std::fs::write(root.0.join("sales/orders-old/dump.csv"), "id\n1\n").unwrap();
    let path = format!("{}/sales/orders/*/../../orders-old/*.csv", root.0.display());
    let err = block.provision(&record(&contract(&path)), &call()).await.unwrap_err().to_string();
    assert!(err.contains("which is not under the port's prefix") && err.contains("may not contain `..`"), "{err}");
    let path = format!("{}/sales/orders*", root.0.display());
    let err = block.provision(&record(&contract(&path)), &call()).await.unwrap_err().to_string();
    assert!(err.contains(&format!("prefix {}/sales holds 1 file(s) that are no port's", root.0.display())), "{err}");
    assert!(!root.0.join("sales/.meshplane-port").exists() && !root.0.join("sales/orders").exists());
}

/// A link inside a port's prefix (to a file or a folder) is refused by provisioning, by a
/// test run and by a purge: none of them reads, lists or removes what it points to. Files
/// whose names the object store would skip still count as files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_inside_a_prefix_are_refused_and_never_followed() {
    let root = root("inner-links");
    let block = block(&root.0, "delete");
    let ledger = root.0.join("finance/ledger");
    std::fs::create_dir_all(&ledger).unwrap();
    std::fs::write(
        ledger.join("part-0.csv"),
        "id,amount
1,100
",
    )
    .unwrap();
    let dir = root.0.join("sales/orders");
    let orders = record(&contract(&format!("{}/*.csv", dir.display())));
    block.provision(&orders, &call()).await.unwrap();
    for (link, target) in [("part-9.csv", ledger.join("part-0.csv")), ("year=2024", ledger.clone())] {
        std::os::unix::fs::symlink(&target, dir.join(link)).unwrap();
        let err = block.provision(&orders, &call()).await.unwrap_err().to_string();
        assert!(err.contains("holds a symbolic link") && err.contains(link), "{link}: {err}");
        let err = block
            .test_target(&orders, "lake", std::time::Duration::from_secs(60), &call())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds a symbolic link"), "{link}: {err}");
        std::fs::remove_file(dir.join(link)).unwrap();
    }
    std::fs::write(
        dir.join("part-0.csv"),
        "id,email
1,a@b
",
    )
    .unwrap();
    let left = block.cleanup(&orders, &call()).await.unwrap();
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::os::unix::fs::symlink(&ledger, dir.join("nested/ledger")).unwrap();
    let err = block.purge(&left[0].place, &call()).await.unwrap_err().to_string();
    assert!(err.contains("holds a symbolic link"), "{err}");
    assert!(ledger.join("part-0.csv").exists() && dir.join("part-0.csv").exists());
    std::fs::remove_file(dir.join("nested/ledger")).unwrap();
    block.purge(&left[0].place, &call()).await.unwrap();
    assert!(!dir.exists() && ledger.join("part-0.csv").exists());
    // A name the object store skips (`#` and a number) is still a file that is no port's.
    std::fs::create_dir_all(root.0.join("raw")).unwrap();
    std::fs::write(root.0.join("raw/dump#1"), "x").unwrap();
    let raw = record(&contract(&format!("{}/", root.0.join("raw").display())));
    let err = block.provision(&raw, &call()).await.unwrap_err().to_string();
    assert!(err.contains("holds 1 file(s) that are no port's"), "{err}");
}

/// The same contract made again takes its retained prefix back; the purge of what the earlier
/// one left is then refused, and a stale lease changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_port_takes_its_prefix_back_and_stale_calls_are_refused() {
    let root = root("again");
    let block = block(&root.0, "retain");
    let dir = root.0.join("orders");
    let first = record(&contract(&format!("{}/", dir.display())));
    block.provision(&first, &call()).await.unwrap();
    std::fs::write(dir.join("part-0.csv"), "id,email\n1,a@b\n").unwrap();
    let left = block.cleanup(&first, &call()).await.unwrap();
    let mut again = first.clone();
    again.uid = "u2".into();
    let lease = |token| Call {
        installation: "t1".into(),
        fence: Some(meshplane_core::block::Fence { owner: "r".into(), token }),
    };
    block.provision(&again, &lease(3)).await.unwrap();
    assert!(block.purge(&left[0].place, &call()).await.unwrap_err().to_string().contains("it is not purged"));
    assert!(dir.join("part-0.csv").exists());
    let err = block.provision(&again, &lease(2)).await.unwrap_err().to_string();
    assert!(err.contains("a newer reconcile (lease token 3)"), "{err}");
}

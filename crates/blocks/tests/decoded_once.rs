//! A contract's document is decoded into the typed model once when it is applied and once
//! each time its record is loaded from the store, never once per block call: the record
//! keeps its decoding, and every block a reconcile asks shares it. Alone in its own test
//! binary, because it reads the process-wide count of decoded documents.

use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::{Kind, Resource};
use meshplane_core::store::{ApplyOptions, Store};
use meshplane_core::testing::sqlite;
use meshplane_spec::decoded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_is_decoded_once_per_apply_and_once_per_load() {
    let place = sqlite().await;
    let store = Store::open(&place.url).await.unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let root = std::env::temp_dir().join(format!("mpdecoded-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let platform = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: {} }}\n",
        root.display()
    );
    let platform = meshplane_blocks::platform::Platform::from_yaml(&platform).unwrap();
    let blocks = meshplane_blocks::build(platform, std::path::Path::new("/")).unwrap();
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\ndomain: sales\n\
         servers:\n  - {{ server: lake, type: local, environment: dev, path: \"{}/orders/\", format: csv }}\n\
         schema:\n  - name: orders\n    properties:\n      - {{ name: id, logicalType: integer }}\n",
        root.display()
    );

    let start = decoded();
    let resource = Resource::from_loaded(&meshplane_spec::load(&text).documents[0]).unwrap();
    let by = ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false };
    store.apply(&[resource], &[], &by).await.unwrap();
    assert_eq!(decoded() - start, 1, "an apply decodes the text once");

    // A reconcile: binding, provisioning and the access sync of the lake block, each of which
    // reads the contract, on one load of the record.
    let start = decoded();
    let token = store.acquire_lease("DataContract", "orders@v1", "test", 60_000).await.unwrap().unwrap();
    reconcile(&store, &blocks, Kind::DataContract, "orders@v1", ("test", token)).await.unwrap();
    let status = store.status(Kind::DataContract, "orders@v1").await.unwrap().unwrap();
    let reasons: Vec<(&str, &str)> = status.conditions.iter().map(|c| (c.kind.as_str(), c.reason.as_str())).collect();
    assert!(reasons.contains(&("Provisioned", "Provisioned")), "the lake block provisioned it: {reasons:?}");
    assert!(root.join("orders").is_dir(), "the port's prefix is there");
    assert_eq!(decoded() - start, 1, "one load, one decoding, however many block calls");

    // Each further load decodes once; the record's clones share their decoding.
    let start = decoded();
    let record = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    let copy = record.clone();
    for _ in 0..3 {
        assert!(blocks.concerned(&record).next().is_some() && blocks.concerned(&copy).next().is_some());
        assert_eq!(record.contract().map(|c| c.id.as_str()), Some("orders"));
    }
    assert_eq!(decoded() - start, 1);
    std::fs::remove_dir_all(root).unwrap();
}

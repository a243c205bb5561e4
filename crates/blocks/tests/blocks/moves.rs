//! Moving a port from the lake to PostgreSQL is a change to the contract's server only: the
//! reconciler provisions the new place, and the old one stays, listed as an orphan.

use std::path::Path;

use meshplane_blocks::platform::Platform;
use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::{Kind, Resource};
use meshplane_core::store::{ApplyOptions, ConditionStatus, Store};
use meshplane_core::testing::{postgres, sqlite};

fn contract(server: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 0.1.0\nstatus: draft\ndomain: sales\n\
         servers:\n  - {server}\n\
         schema:\n  - name: orders\n    properties:\n      - {{ name: id, logicalType: integer }}\n"
    )
}

async fn apply(store: &Store, text: &str) {
    let resource = Resource::from_loaded(&meshplane_spec::load(text).documents.remove(0)).unwrap();
    let options = ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false };
    store.apply(&[resource], &[], &options).await.unwrap();
}

async fn run(store: &Store, blocks: &meshplane_core::block::Blocks) {
    let token = store.acquire_lease("DataContract", "orders@v0", "test", 60_000).await.unwrap().unwrap();
    reconcile(store, blocks, Kind::DataContract, "orders@v0", ("test", token)).await.unwrap();
    store.release_lease("DataContract", "orders@v0", "test", token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_moves_from_the_lake_to_postgres_and_the_old_place_is_an_orphan() {
    let (registry, warehouse) = (sqlite().await, postgres().await);
    let database = warehouse.url.rsplit('/').next().unwrap().to_string();
    let root = std::env::temp_dir().join(format!("mpmove-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let platform = Platform::from_yaml(&format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
         \x20 - {{ name: lake, type: lake, root: {} }}\n\
         \x20 - {{ name: warehouse, type: postgres, host: 127.0.0.1, database: {database}, user: postgres }}\n",
        root.display()
    ))
    .unwrap();
    let blocks = meshplane_blocks::build(platform, Path::new("/")).unwrap();
    let store = Store::open(&registry.url).await.unwrap();

    let port = root.join("orders");
    apply(
        &store,
        &contract(&format!(
            "{{ server: lake, type: local, environment: dev, path: \"{}/\", format: csv }}",
            port.display()
        )),
    )
    .await;
    run(&store, &blocks).await;
    assert_eq!(store.get(Kind::DataContract, "orders@v0").await.unwrap().finalizers, ["block/lake"]);
    std::fs::write(port.join("part-0.csv"), "id\n1\n").unwrap();

    let pg = format!(
        "{{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, database: {database}, schema: orders_v0 }}"
    );
    apply(&store, &contract(&pg)).await;
    run(&store, &blocks).await;
    let record = store.get(Kind::DataContract, "orders@v0").await.unwrap();
    assert_eq!(record.finalizers, ["block/warehouse"], "the lake let go");
    let status = store.status(Kind::DataContract, "orders@v0").await.unwrap().unwrap();
    let ready = status.conditions.iter().find(|c| c.kind == "Ready").unwrap();
    assert_eq!(ready.status, ConditionStatus::True, "{:?}", status.conditions);
    let orphans = store.orphans(false).await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].block, "lake");
    assert_eq!(orphans[0].note, format!("moved away: prefix {} (the retain policy keeps it)", port.display()));
    assert!(port.join("part-0.csv").exists(), "the old place keeps its data until purged");
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_moved_within_a_block_leaves_its_old_schema_as_an_orphan() {
    let (registry, warehouse) = (sqlite().await, postgres().await);
    let database = warehouse.url.rsplit('/').next().unwrap().to_string();
    let platform = Platform::from_yaml(&format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
         \x20 - {{ name: warehouse, type: postgres, host: 127.0.0.1, database: {database}, user: postgres }}\n"
    ))
    .unwrap();
    let blocks = meshplane_blocks::build(platform, Path::new("/")).unwrap();
    let store = Store::open(&registry.url).await.unwrap();
    let server = |schema: &str, description: &str| {
        format!(
            "{{ server: warehouse, type: postgres, environment: dev, host: 127.0.0.1, port: 5432, database: {database}, \
             schema: {schema}, description: {description} }}"
        )
    };
    apply(&store, &contract(&server("first", "one"))).await;
    run(&store, &blocks).await;
    // Only the description changes: nothing moved, nothing is orphaned.
    apply(&store, &contract(&server("first", "two"))).await;
    run(&store, &blocks).await;
    assert!(store.orphans(false).await.unwrap().is_empty());
    apply(&store, &contract(&server("second", "two"))).await;
    run(&store, &blocks).await;
    run(&store, &blocks).await;
    let orphans = store.orphans(false).await.unwrap();
    assert_eq!(orphans.len(), 1, "listed once, however often it is reconciled: {orphans:?}");
    assert_eq!(
        orphans[0].note,
        format!("moved away: schema first on 127.0.0.1/{database} (the retain policy keeps it)")
    );
    let status = store.status(Kind::DataContract, "orders@v0").await.unwrap().unwrap();
    let provisioned = status.conditions.iter().find(|c| c.kind == "Provisioned").unwrap();
    assert!(provisioned.message.contains("schema second"), "the new place is provisioned: {}", provisioned.message);
}

//! Adding a block type, as docs/architecture.md's recipe says: one configuration struct (its
//! fields, its checks, the servers it takes, its factory) and one line in the registry. The
//! type here holds `kafka` servers as topics; the platform file, the binding and a reconcile
//! treat it like the built-in types.

use std::path::Path;
use std::sync::Arc;

use meshplane_blocks::platform::Platform;
use meshplane_blocks::registry::{BlockType, Built, Registry, describe};
use meshplane_core::block::{BlockFuture, BlockResult, Call, Leftover, Provisioned, Provisioner};
use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::{Kind, Resource};
use meshplane_core::store::{ApplyOptions, Record, Store};
use meshplane_spec::model::server::Server;
use serde::{Deserialize, Serialize};

/// The configuration of a `topics` block: its broker, and how many partitions a topic gets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TopicsConfig {
    broker: String,
    #[serde(default = "one")]
    partitions: u32,
}

fn one() -> u32 {
    1
}

impl BlockType for TopicsConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let few = self.partitions == 0;
        few.then(|| ("partitions", "`partitions` must be at least 1".to_string())).into_iter().collect()
    }

    fn takes(&self, server_type: &str) -> bool {
        server_type == "kafka"
    }

    fn foreign_endpoint(&self, server: &Server) -> Option<(&'static str, String, String)> {
        let host = server.host.as_ref().filter(|h| **h != self.broker)?;
        Some(("host", host.clone(), self.broker.clone()))
    }

    fn build(&self, name: &str, _: &Arc<Platform>, _: &Path) -> Result<Built, String> {
        Ok(Built::Storage(Arc::new(Topics { name: name.to_string(), partitions: self.partitions })))
    }

    fn describe(&self) -> serde_json::Value {
        describe(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The block: a topic per contract with a `kafka` server.
struct Topics {
    name: String,
    partitions: u32,
}

impl Provisioner for Topics {
    fn name(&self) -> &str {
        &self.name
    }
    fn concerns(&self, record: &Record) -> bool {
        record.contract().is_some_and(|c| c.servers.iter().flatten().any(|s| s.kind == "kafka"))
    }
    fn provision<'a>(&'a self, record: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move { Ok(Provisioned::done(format!("topic {} ({} partitions)", record.id, self.partitions))) })
    }
    fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn registry() -> Registry {
    Registry::builtin().with::<TopicsConfig>("topics")
}

const PLATFORM: &str = "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
                        \x20 - { name: events, type: topics, broker: kafka.internal, partitions: 6 }\n";

fn contract(host: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: clicks\nversion: 1.0.0\nstatus: active\ndomain: web\n\
         servers:\n  - {{ server: events, type: kafka, environment: dev, host: {host} }}\n\
         schema:\n  - name: clicks\n    properties:\n      - {{ name: id, logicalType: string }}\n"
    )
}

#[test]
fn a_registered_type_is_read_checked_and_described_like_the_built_in_ones() {
    let platform = Platform::read(PLATFORM, &registry()).unwrap();
    assert_eq!(platform.blocks[0].typed::<TopicsConfig>().map(|c| c.partitions), Some(6));
    let described = serde_json::to_value(&platform.blocks[0]).unwrap();
    assert_eq!(
        described,
        serde_json::json!({ "name": "events", "type": "topics", "broker": "kafka.internal", "partitions": 6 })
    );

    let bad = "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n\
               \x20 - name: events\n    type: topics\n    broker: kafka.internal\n    partitions: 0\n\
               \x20 - name: more\n    type: topics\n    broker: kafka.internal\n    replicas: 3\n";
    let problems: Vec<String> = Platform::read(bad, &registry()).unwrap_err().0.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0], "8:17: `partitions` must be at least 1");
    assert!(problems[1].starts_with("12:5: unknown field `replicas`"), "{problems:?}");

    let unknown = Platform::from_yaml(PLATFORM).unwrap_err().to_string();
    assert_eq!(
        unknown,
        "5:27: unknown block type `topics`; the types are postgres, lake, http, webhook, nats, alertmanager"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_type_binds_its_servers_and_provisions_them() {
    let platform = Platform::read(PLATFORM, &registry()).unwrap();
    let foreign = Record::created(resource(&contract("elsewhere.example")), "u0");
    let problems = meshplane_blocks::binding::problems(&platform, foreign.contract().unwrap());
    assert_eq!(
        problems,
        ["server `events` (type kafka): host elsewhere.example is not block `events`'s (kafka.internal)"]
    );

    let blocks = meshplane_blocks::build(platform, Path::new("/")).unwrap();
    let place = meshplane_core::testing::sqlite().await;
    let store = Store::open(&place.url).await.unwrap();
    let by = ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false };
    store.apply(&[resource(&contract("kafka.internal"))], &[], &by).await.unwrap();
    let token = store.acquire_lease("DataContract", "clicks@v1", "test", 60_000).await.unwrap().unwrap();
    reconcile(&store, &blocks, Kind::DataContract, "clicks@v1", ("test", token)).await.unwrap();
    let status = store.status(Kind::DataContract, "clicks@v1").await.unwrap().unwrap();
    let of = |kind: &str| status.conditions.iter().find(|c| c.kind == kind).unwrap();
    assert_eq!(
        (of("Bound").status.as_str(), of("Provisioned").message.as_str()),
        ("True", "events: topic clicks (6 partitions)")
    );
}

fn resource(text: &str) -> Resource {
    Resource::from_loaded(&meshplane_spec::load(text).documents[0]).unwrap()
}

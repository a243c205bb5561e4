//! The backends every test runs on, and documents to apply.

use meshplane_core::resource::Resource;
use meshplane_core::store::{ApplyOptions, Store};
pub use meshplane_core::testing::{Place, postgres, sqlite};
use meshplane_spec::load;

/// Runs `test` on a fresh SQLite store and on a fresh PostgreSQL store.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let place = $crate::backends::sqlite().await;
                ($body)(place).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let place = $crate::backends::postgres().await;
                ($body)(place).await;
            }
        }
    };
}

pub fn options() -> ApplyOptions {
    ApplyOptions { actor: "local".into(), origin: "test".into(), dry_run: false, prune: false }
}

/// A resource from YAML text; panics when the text is not a valid, storable document.
pub fn resource(text: &str) -> Resource {
    Resource::from_loaded(&load(text).documents.remove(0)).unwrap()
}

pub fn contract(id: &str, version: &str, status: &str, extra: &str) -> String {
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: {version}\nstatus: {status}\ndomain: sales\n\
         schema:\n  - name: orders\n    properties:\n      - {{ name: order_id, logicalType: string }}\n{extra}"
    )
}

pub fn product(id: &str, domain: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1.0.0\nkind: DataProduct\nid: {id}\nstatus: active\ndomain: {domain}\nversion: 1.0.0\n{ports}"
    )
}

pub async fn open(place: &Place) -> Store {
    Store::open(&place.url).await.unwrap()
}

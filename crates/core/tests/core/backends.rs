//! A fresh store per test on each backend, removed when the test ends (also on panic).

use meshplane_core::resource::Resource;
use meshplane_core::store::{ApplyOptions, Store};
use meshplane_spec::load;
use sqlx::{Connection, Executor, PgConnection};

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where a test store lives; dropping it deletes the file or database.
pub struct Place {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database(String),
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

pub async fn sqlite() -> Place {
    let path = std::env::temp_dir().join(format!("{}.db", unique("mpcore")));
    Place { url: format!("sqlite://{}", path.display()), cleanup: Cleanup::File(path) }
}

pub async fn postgres() -> Place {
    let name = unique("mpcore");
    let mut admin = PgConnection::connect(ADMIN).await.expect("PostgreSQL on 127.0.0.1:5432 (user postgres) is needed");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    Place { url: format!("postgres://postgres@127.0.0.1:5432/{name}"), cleanup: Cleanup::Database(name) }
}

impl Drop for Place {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Database(name) => {
                let name = name.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        if let Ok(mut admin) = PgConnection::connect(ADMIN).await {
                            let _ =
                                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                        }
                    });
                })
                .join()
                .unwrap();
            }
        }
    }
}

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
    ApplyOptions { actor: "local".into(), origin: "test".into(), dry_run: false }
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

//! Stores for tests: a fresh SQLite file or PostgreSQL database (on the local server,
//! 127.0.0.1:5432, user postgres), removed when the [`Place`] is dropped — also when the test
//! panics. Compiled for this crate's tests and, with the `testing` feature, for other crates'.

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

/// A store file of its own in the temporary directory.
pub async fn sqlite() -> Place {
    let path = std::env::temp_dir().join(format!("{}.db", unique("mpcore")));
    Place { url: format!("sqlite://{}", path.display()), cleanup: Cleanup::File(path) }
}

/// A database of its own on the local PostgreSQL server.
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

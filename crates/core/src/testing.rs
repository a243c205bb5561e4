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

/// Login roles and installation ids of one test on the local PostgreSQL server: every role
/// whose name carries the test's suffix is dropped when this is dropped (declare it before
/// the test's [`Place`], so the database goes first and nothing holds the roles).
pub struct Logins {
    pub suffix: String,
    /// More roles to drop: those whose names start with one of these (the grant roles of a
    /// store's own installation id).
    prefixes: std::sync::Mutex<Vec<String>>,
}

impl Logins {
    pub fn new() -> Logins {
        Logins { suffix: unique("t").replace('_', ""), prefixes: std::sync::Mutex::new(Vec::new()) }
    }

    /// Also drops, at the end, every role whose name starts with `prefix`.
    pub fn own(&self, prefix: &str) {
        self.prefixes.lock().unwrap().push(prefix.to_string());
    }

    /// A role name of this test: `who_<suffix>`.
    pub fn login(&self, who: &str) -> String {
        format!("{who}_{}", self.suffix)
    }

    /// An installation id of this test (letters and digits).
    pub fn installation(&self, which: &str) -> String {
        format!("{which}{}", self.suffix)
    }

    /// Creates the login role `who_<suffix>` and returns its name.
    pub async fn create(&self, who: &str) -> String {
        let name = self.login(who);
        let mut admin = PgConnection::connect(ADMIN).await.expect("PostgreSQL on 127.0.0.1:5432 is needed");
        admin.execute(format!("CREATE ROLE \"{name}\" LOGIN").as_str()).await.unwrap();
        name
    }
}

impl Default for Logins {
    fn default() -> Self {
        Logins::new()
    }
}

impl Drop for Logins {
    fn drop(&mut self) {
        let suffix = self.suffix.clone();
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let Ok(mut admin) = PgConnection::connect(ADMIN).await else { return };
                let rows = sqlx::query(
                    "SELECT rolname FROM pg_roles WHERE strpos(rolname, $1) > 0 \
                     OR EXISTS (SELECT 1 FROM unnest($2::text[]) p WHERE left(rolname, length(p)) = p)",
                )
                .bind(&suffix)
                .bind(&prefixes)
                .fetch_all(&mut admin)
                .await
                .unwrap_or_default();
                for row in rows {
                    let name: String = sqlx::Row::get(&row, 0);
                    let _ = admin.execute(format!("DROP ROLE IF EXISTS \"{name}\"").as_str()).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// Base64url without padding, as JSON Web Keys write key material.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        (0..=chunk.len()).for_each(|i| out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char));
    }
    out
}

//! A database of its own per test on the local PostgreSQL, dropped when the test ends
//! (also when it panics).

use tokio_postgres::{Client, NoTls};

pub const HOST: &str = "127.0.0.1";

pub struct TestDb {
    pub name: String,
    pub client: Client,
}

async fn connect(db: &str) -> Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(HOST)
        .port(5432)
        .user("postgres")
        .dbname(db)
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL on {HOST}:5432 (user postgres) is needed: {e}"));
    tokio::spawn(conn);
    client
}

impl TestDb {
    pub async fn create(prefix: &str) -> TestDb {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("mpq_{prefix}_{}_{nanos}", std::process::id());
        connect("postgres").await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let client = connect(&name).await;
        TestDb { name, client }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: Drop may run inside (or after) the test's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let admin = connect("postgres").await;
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join()
        .unwrap();
    }
}

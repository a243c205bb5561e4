//! Contract SQL is read-only and sees only the contract's own objects, on files and on
//! PostgreSQL: hostile queries are refused or stopped, and the data is untouched.

use std::path::PathBuf;
use std::time::Duration;

use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::target;
use meshplane_spec::{Document, load};

use crate::data;
use crate::pg::{HOST, TestDb};
use crate::stores::temp_dir;

fn contract(server: &str, queries: &[&str]) -> String {
    let rules: String = queries
        .iter()
        .map(|q| {
            format!("      - type: sql\n        query: {}\n        mustBe: 0\n", serde_json::to_string(q).unwrap())
        })
        .collect();
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: h\nversion: 1.0.0\nstatus: active\nservers:\n  - {server}\n\
         schema:\n  - name: items\n    quality:\n{rules}"
    )
}

async fn outcomes(text: &str) -> Vec<(Outcome, String)> {
    let Some(Document::Contract(c)) = load(text).documents.remove(0).document else { panic!("not a contract") };
    let server = target::pick_server(&c, None).unwrap();
    let options = Options { sql_timeout: Duration::from_secs(1), ..Options::now(0) };
    let report = target::test(&c, server, None, &PathBuf::from("."), &options).await.unwrap();
    report
        .results
        .into_iter()
        .filter(|r| r.key.contains(".sql"))
        .map(|r| (r.outcome, r.detail.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_on_files_is_refused() {
    let rows = data::rows();
    let dir = temp_dir("hostile");
    let items = dir.join("items.parquet");
    data::write_parquet(&items, &rows);
    data::write_parquet(&dir.join("other.parquet"), &rows);
    let before = std::fs::read(&items).unwrap();
    let copy_target = dir.join("stolen.csv");
    let queries = [
        "DROP TABLE items".to_string(),
        "INSERT INTO items SELECT * FROM items".to_string(),
        "SELECT 1; SELECT 2".to_string(),
        format!("COPY items TO '{}'", copy_target.display()),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'", dir.join("other.parquet").display()),
        format!("SELECT count(*) FROM '{}'", dir.join("other.parquet").display()),
        "SELECT count(*) FROM other".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ];
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let server = format!("{{ server: f, type: local, path: \"{}\" }}", items.display());
    let results = outcomes(&contract(&server, &refs)).await;
    assert_eq!(results.len(), queries.len());
    for (query, (outcome, detail)) in queries.iter().zip(&results) {
        assert_eq!(*outcome, Outcome::Error, "{query} must be refused, got {detail}");
    }
    assert_eq!(std::fs::read(&items).unwrap(), before, "the data is untouched");
    assert!(!copy_target.exists(), "COPY TO wrote nothing");
    // The same session still answers an honest query.
    let honest = outcomes(&contract(&server, &["SELECT count(*) FROM items WHERE qty < 0"])).await;
    assert_eq!(honest, [(Outcome::Pass, String::new())]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_on_postgres_is_refused_or_stopped() {
    let rows = data::rows();
    let db = TestDb::create("hostile").await;
    db.client.batch_execute(&data::postgres_sql("items", &rows)).await.unwrap();
    db.client.batch_execute("CREATE TABLE other (secret text); INSERT INTO other VALUES ('s3cr3t');").await.unwrap();
    let queries = [
        "DROP TABLE items",
        "INSERT INTO items SELECT * FROM items",
        "DELETE FROM items",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE items",
        "SELECT pg_sleep(5)",
        "SELECT count(*) FROM other",
        "SELECT count(*) FROM public.other",
        "COPY items TO '/tmp/meshplane-stolen.csv'",
        "WITH gone AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM gone",
        "SELECT pg_read_file('/etc/passwd')",
        // Allowed, and too long: stopped by the statement timeout (1,000 rows, cubed).
        "SELECT count(*) FROM items a, items b, items c",
    ];
    let server =
        format!("{{ server: pg, type: postgres, host: {HOST}, port: 5432, database: {}, schema: public }}", db.name);
    let results = outcomes(&contract(&server, &queries)).await;
    for (query, (outcome, detail)) in queries.iter().zip(&results) {
        assert_eq!(*outcome, Outcome::Error, "{query} must be refused, got {detail}");
    }
    // Refused before they are sent: a function not on the allow-list, a table not the contract's.
    let sleep = &results[5].1;
    assert!(sleep.contains("function `pg_sleep` is not one a contract's SQL may call"), "{sleep}");
    assert!(results[6].1.contains("`other` is not one of the contract's own tables"), "{}", results[6].1);
    let long = &results[11].1;
    assert!(long.contains("statement timeout"), "a query the reader lets through is stopped by the timeout: {long}");
    let count: i64 = db.client.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(count, rows.len() as i64, "the data is untouched");
    let secret: String = db.client.query_one("SELECT secret FROM other", &[]).await.unwrap().get(0);
    assert_eq!(secret, "s3cr3t");
    let leftover: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'meshplane_sql_%' AND pg_has_role(current_user, oid, 'MEMBER')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftover, 0, "the sandbox role is dropped after the run");
    let honest = outcomes(&contract(&server, &["SELECT count(*) FROM {object} WHERE qty < 0"])).await;
    assert_eq!(honest, [(Outcome::Pass, String::new())]);
}

//! The same contract on the same data in Parquet, CSV, NDJSON and PostgreSQL: every kind of
//! check gives the exact count and the same verdict in every store.

use std::path::PathBuf;
use std::time::Duration;

use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::target::{self, Report};
use meshplane_spec::{Document, load};

use crate::data::{self, NEWEST_MICROS};
use crate::pg::{HOST, TestDb};

/// One day after the newest row.
const NOW: i64 = NEWEST_MICROS + 86_400_000_000;

pub fn contract(dir: &str, database: &str) -> String {
    format!(
        r#"apiVersion: v3.2.0
kind: DataContract
id: items
version: 1.0.0
status: active
servers:
  - {{ server: parquet, type: local, path: "{dir}/items.parquet", format: parquet }}
  - {{ server: csv, type: local, path: "{dir}/items.csv", format: csv }}
  - {{ server: json, type: local, path: "{dir}/items.json", format: json }}
  - {{ server: pg, type: postgres, host: {HOST}, port: 5432, database: {database}, schema: public }}
  - {{ server: s3, type: s3, location: "s3://lake/sales/items/*.parquet", endpointUrl: "{{endpoint}}", format: parquet }}
schema:
  - name: items
    properties:
      - {{ name: id, logicalType: integer, required: true, unique: true }}
      - name: code
        logicalType: string
        logicalTypeOptions: {{ pattern: '^C-\d{{4}}$' }}
        quality:
          - {{ id: code_no_nulls, metric: nullValues, mustBe: 0 }}
          - {{ id: code_few_nulls, metric: nullValues, mustBeLessThan: 1, unit: percent }}
      - name: status
        logicalType: string
        enum: [{{ value: a }}, {{ value: b }}, {{ value: c }}]
      - {{ name: amount, logicalType: number, logicalTypeOptions: {{ minimum: 0 }} }}
      - {{ name: qty, logicalType: integer, logicalTypeOptions: {{ exclusiveMinimum: 0, maximum: 10 }} }}
      - name: email
        logicalType: string
        quality:
          - {{ id: email_missing, metric: missingValues, arguments: {{ missingValues: [null, '', n/a] }}, mustBeLessThan: 10 }}
          - {{ id: email_at, metric: invalidValues, arguments: {{ pattern: '@' }}, mustBe: 0, severity: warning }}
      - {{ name: ts, logicalType: timestamp, required: true }}
    quality:
      - {{ metric: rowCount, mustBeBetween: [999, 1001] }}
      - {{ metric: rowCount, mustBeBetween: [1000, 1001] }}
      - {{ id: id_code_unique, metric: duplicateValues, arguments: {{ properties: [id, code] }}, mustBe: 0 }}
      - {{ id: negative, type: sql, query: "SELECT COUNT(*) FROM {{object}} WHERE amount < 0", mustBe: 10 }}
      - {{ type: text, description: Amounts are in euros }}
      - {{ type: custom, engine: soda, implementation: "type: row_count" }}
slaProperties:
  - {{ id: fresh, property: latency, value: 2, unit: d, element: items.ts }}
  - {{ property: freshness, value: 1, unit: days, element: ts }}
  - {{ property: RETENTION, value: 1, unit: yr, element: items.ts }}
  - {{ property: availability, value: 99.9, unit: percent }}
"#
    )
}

/// (key, outcome, value) expected in every store.
const EXPECTED: &[(&str, Outcome, Option<f64>)] = &[
    ("items.exists", Outcome::Pass, Some(1.0)),
    ("items.id.present", Outcome::Pass, Some(1.0)),
    ("items.id.type", Outcome::Pass, Some(0.0)),
    ("items.id.required", Outcome::Pass, Some(0.0)),
    ("items.id.unique", Outcome::Fail, Some(1.0)),
    ("items.code.present", Outcome::Pass, Some(1.0)),
    ("items.code.type", Outcome::Pass, Some(0.0)),
    ("items.code.pattern", Outcome::Fail, Some(10.0)),
    ("items.code.nullValues", Outcome::Fail, Some(4.0)),
    ("items.code.nullValues#2", Outcome::Pass, Some(0.4)),
    ("items.status.present", Outcome::Pass, Some(1.0)),
    ("items.status.type", Outcome::Pass, Some(0.0)),
    ("items.status.enum", Outcome::Fail, Some(5.0)),
    ("items.amount.present", Outcome::Pass, Some(1.0)),
    ("items.amount.type", Outcome::Pass, Some(0.0)),
    ("items.amount.minimum", Outcome::Fail, Some(10.0)),
    ("items.qty.present", Outcome::Pass, Some(1.0)),
    ("items.qty.type", Outcome::Pass, Some(0.0)),
    ("items.qty.maximum", Outcome::Pass, Some(0.0)),
    ("items.qty.exclusiveMinimum", Outcome::Fail, Some(8.0)),
    ("items.email.present", Outcome::Pass, Some(1.0)),
    ("items.email.type", Outcome::Pass, Some(0.0)),
    ("items.email.missingValues", Outcome::Fail, Some(23.0)),
    ("items.email.invalidValues", Outcome::Warn, Some(20.0)),
    ("items.ts.present", Outcome::Pass, Some(1.0)),
    ("items.ts.type", Outcome::Pass, Some(0.0)),
    ("items.ts.required", Outcome::Pass, Some(0.0)),
    ("items.rowCount", Outcome::Pass, Some(1000.0)),
    ("items.rowCount#2", Outcome::Fail, Some(1000.0)),
    ("items.duplicateValues", Outcome::Fail, Some(1.0)),
    ("items.sql", Outcome::Pass, Some(10.0)),
    ("items.text", Outcome::Skipped, None),
    ("items.custom", Outcome::Skipped, None),
    ("items.ts.latency", Outcome::Pass, Some(86_400.0)),
    ("items.ts.latency#2", Outcome::Fail, Some(86_400.0)),
    ("items.ts.retention", Outcome::Pass, Some(86_400.0 + 999.0 * 60.0)),
    ("sla.availability", Outcome::Skipped, None),
];

pub fn options() -> Options {
    Options { samples: 2, now_micros: NOW, sql_timeout: Duration::from_secs(10), ..Options::now(0) }
}

async fn run(text: &str, server: &str) -> Report {
    run_with(text, server, options()).await
}

pub async fn run_with(text: &str, server: &str, options: Options) -> Report {
    let Some(Document::Contract(c)) = load(text).documents.remove(0).document else { panic!("not a contract") };
    let server = target::pick_server(&c, Some(server)).unwrap();
    target::test(&c, server, None, &PathBuf::from("."), &options).await.unwrap()
}

pub fn assert_expected(store: &str, report: &Report) {
    let got: Vec<(&str, Outcome, Option<f64>)> =
        report.results.iter().map(|r| (r.key.as_str(), r.outcome, r.value)).collect();
    for (want, have) in EXPECTED.iter().zip(&got) {
        assert_eq!(want, have, "{store}: {:#?}", report.results.iter().find(|r| r.key == have.0));
    }
    assert_eq!(got.len(), EXPECTED.len(), "{store}: {got:#?}");
}

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("mpq-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_gives_the_same_counts_and_verdicts() {
    let rows = data::rows();
    let dir = temp_dir("stores");
    data::write_parquet(&dir.join("items.parquet"), &rows);
    data::write_csv(&dir.join("items.csv"), &rows);
    data::write_ndjson(&dir.join("items.json"), &rows);
    let db = TestDb::create("stores").await;
    db.client.batch_execute(&data::postgres_sql("items", &rows)).await.unwrap();
    let text = contract(&dir.to_string_lossy(), &db.name);
    for store in ["parquet", "csv", "json", "pg"] {
        let report = run(&text, store).await;
        assert_expected(store, &report);
        let unique = report.results.iter().find(|r| r.key == "items.id.unique").unwrap();
        assert_eq!(unique.samples, ["998"], "{store}: the duplicated id is the sample");
        assert_eq!(report.results.iter().find(|r| r.key == "items.code.nullValues#2").unwrap().count, Some(4.0));
        let rule = report.results.iter().find(|r| r.key == "items.sql").unwrap();
        assert_eq!(rule.rule_id.as_deref(), Some("negative"), "{store}: results carry the rule id");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A SQL rule whose answer is a text that reads as no number is an error in every store,
/// saying what the query returned (never a pass, as if it had answered 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_answer_that_is_no_number_is_an_error_in_every_store() {
    let rows = data::rows();
    let dir = temp_dir("textanswer");
    data::write_parquet(&dir.join("items.parquet"), &rows);
    data::write_csv(&dir.join("items.csv"), &rows);
    data::write_ndjson(&dir.join("items.json"), &rows);
    let db = TestDb::create("textanswer").await;
    db.client.batch_execute(&data::postgres_sql("items", &rows)).await.unwrap();
    let text = contract(&dir.to_string_lossy(), &db.name).replace(
        "SELECT COUNT(*) FROM {object} WHERE amount < 0\", mustBe: 10",
        "SELECT 'many' FROM {object} LIMIT 1\", mustBe: 0",
    );
    for store in ["parquet", "csv", "json", "pg"] {
        let report = run(&text, store).await;
        let rule = report.results.iter().find(|r| r.key == "items.sql").unwrap();
        assert_eq!(rule.outcome, Outcome::Error, "{store}: {rule:?}");
        assert_eq!(rule.detail.as_deref(), Some("the query returned `many`, not a number"), "{store}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_mismatch_in_parquet_is_detected() {
    let rows = data::rows();
    let dir = temp_dir("types");
    data::write_parquet(&dir.join("items.parquet"), &rows);
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: t\nversion: 1.0.0\nstatus: active\nservers:\n  - {{ server: p, type: local, path: \"{}/items.parquet\" }}\n\
         schema:\n  - name: items\n    properties:\n      - {{ name: qty, logicalType: string }}\n      - {{ name: amount, physicalType: 'decimal(10,2)' }}\n      - {{ name: id, physicalType: int }}\n",
        dir.display()
    );
    let report = run(&text, "p").await;
    let by_key = |k: &str| report.results.iter().find(|r| r.key == k).unwrap();
    let qty = by_key("items.qty.type");
    assert_eq!((qty.outcome, qty.value), (Outcome::Fail, Some(1.0)));
    assert!(qty.detail.as_deref().unwrap().contains("Int32"), "{qty:?}");
    assert_eq!(by_key("items.amount.type").outcome, Outcome::Pass);
    let id = by_key("items.id.type");
    assert_eq!(id.outcome, Outcome::Fail, "an int64 column is not physicalType int (int32): {id:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_values_in_a_csv_column_are_counted_by_the_type_check() {
    let dir = temp_dir("csvtypes");
    let mut text = String::from("id,qty,ts\n");
    for i in 0..2000 {
        let qty = if i % 700 == 699 { "many".to_string() } else { i.to_string() };
        let ts = if i == 1500 { "yesterday" } else { "2026-01-01T00:00:00Z" };
        text.push_str(&format!("{i},{qty},{ts}\n"));
    }
    std::fs::write(dir.join("t.csv"), text).unwrap();
    let contract = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: t\nversion: 1.0.0\nstatus: active\nservers:\n  - {{ server: c, type: local, path: \"{}/t.csv\" }}\n\
         schema:\n  - name: t\n    properties:\n      - {{ name: id, logicalType: integer }}\n      - {{ name: qty, logicalType: integer }}\n      - {{ name: ts, logicalType: timestamp }}\n",
        dir.display()
    );
    let report = run(&contract, "c").await;
    let by_key = |k: &str| report.results.iter().find(|r| r.key == k).unwrap();
    assert_eq!((by_key("t.id.type").outcome, by_key("t.id.type").value), (Outcome::Pass, Some(0.0)));
    let qty = by_key("t.qty.type");
    assert_eq!((qty.outcome, qty.value), (Outcome::Fail, Some(2.0)), "{qty:?}");
    assert_eq!(qty.samples, ["many", "many"]);
    let ts = by_key("t.ts.type");
    assert_eq!((ts.outcome, ts.value), (Outcome::Fail, Some(1.0)), "{ts:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_missing_object_fails_its_existence_and_errors_the_rest() {
    let dir = temp_dir("missing");
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: t\nversion: 1.0.0\nstatus: active\nservers:\n  - {{ server: p, type: local, path: \"{}/nothing.parquet\" }}\n\
         schema:\n  - name: t\n    properties:\n      - {{ name: id, required: true }}\n",
        dir.display()
    );
    let report = run(&text, "p").await;
    let outcomes: Vec<(&str, Outcome)> = report.results.iter().map(|r| (r.key.as_str(), r.outcome)).collect();
    assert_eq!(
        outcomes,
        [("t.exists", Outcome::Fail), ("t.id.present", Outcome::Error), ("t.id.required", Outcome::Error)]
    );
    assert!(report.failed());
    std::fs::remove_dir_all(dir).unwrap();
}

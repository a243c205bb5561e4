//! SQL rules that count the object's rows under a condition are measured inside the scan on
//! files; every other rule runs on its own. Either way each rule's value is what DataFusion
//! answers for the same query on its own.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use meshplane_quality::files::{FileSource, Format, Location};
use meshplane_quality::run::{CheckResult, Outcome};
use meshplane_quality::source::Source;

use crate::data;
use crate::stores::{options, run_with, temp_dir};

/// Rules measured in the scan: every shape of a row count, and conditions with nulls,
/// functions, casts and several columns.
const IN_SCAN: &[&str] = &[
    "SELECT COUNT(*) FROM items",
    "SELECT count(1) AS n FROM items WHERE amount < 0",
    "SELECT COUNT(*) FROM items WHERE code IS NULL OR email = ''",
    "SELECT COUNT(*) FROM items WHERE email LIKE '%@%' AND qty BETWEEN 2 AND 5",
    "SELECT COUNT(*) FROM items WHERE length(code) <> 6",
    "SELECT COUNT(*) FROM items WHERE status IN ('a', 'x') AND CAST(amount AS DOUBLE) > 1.5",
    "SELECT COUNT(*) FROM items WHERE email > 'm'",
];

/// Rules that are not a plain row count of the object: they run as queries of their own.
const ON_THEIR_OWN: &[&str] = &[
    "SELECT COUNT(DISTINCT status) FROM items",
    "SELECT COUNT(*) FROM items WHERE id IN (SELECT id FROM items WHERE qty > 5)",
    "SELECT COUNT(*) FROM items i WHERE i.qty > 5",
    "SELECT COUNT(*) FROM items GROUP BY status ORDER BY 1 DESC LIMIT 1",
    "SELECT COUNT(*) FILTER (WHERE qty > 5) FROM items",
    "SELECT SUM(qty) FROM items",
    "SELECT COUNT(*) + 1 FROM items",
];

/// A files source over one Parquet file, the object `items` registered.
async fn source_over(path: &std::path::Path) -> FileSource {
    let location = Location { path: path.display().to_string(), format: Format::Parquet };
    let mut source = FileSource::new(vec![("items".into(), location)], b',', None).unwrap();
    source.columns("items").await.unwrap().unwrap();
    source
}

/// The results of a contract on the Parquet file at `path` whose object `items` has one SQL
/// rule per query, each expecting `must_be`, in the queries' order.
async fn sql_results(path: &std::path::Path, queries: &[&str], must_be: i64) -> Vec<CheckResult> {
    let rules: String = queries
        .iter()
        .map(|q| format!("      - {{ type: sql, query: {}, mustBe: {must_be} }}\n", serde_json::to_string(q).unwrap()))
        .collect();
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: active\n\
         servers:\n  - {{ server: f, type: local, path: \"{}\" }}\nschema:\n  - name: items\n    quality:\n{rules}",
        path.display()
    );
    let report = run_with(&text, "f", options()).await;
    let results: Vec<CheckResult> = report.results.into_iter().filter(|r| r.key.contains(".sql")).collect();
    assert_eq!(results.len(), queries.len());
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_count_rules_join_the_scan_and_agree_with_the_query() {
    let rows = data::rows();
    let dir = temp_dir("counted");
    let path = dir.join("items.parquet");
    data::write_parquet(&path, &rows);

    let mut source = source_over(&path).await;
    for query in IN_SCAN {
        assert!(source.scans_sql("items", query).await, "{query} is measured in the scan");
    }
    for query in ON_THEIR_OWN {
        assert!(!source.scans_sql("items", query).await, "{query} runs on its own");
    }

    let reference = SessionContext::new();
    reference.register_parquet("items", path.display().to_string(), ParquetReadOptions::default()).await.unwrap();
    let queries: Vec<&str> = IN_SCAN.iter().chain(ON_THEIR_OWN).copied().collect();
    let results = sql_results(&path, &queries, -1).await;
    for (query, result) in IN_SCAN.iter().chain(ON_THEIR_OWN).zip(results) {
        let batches = reference.sql(query).await.unwrap().collect().await.unwrap();
        let expected = batches[0].column(0).as_primitive::<Int64Type>().value(0) as f64;
        assert_eq!(result.value, Some(expected), "{query}: {:?}", result.detail);
        assert_eq!(result.outcome, Outcome::Fail, "{query}: no count is -1");
        if query.contains("WHERE") && IN_SCAN.contains(query) {
            assert!(expected > 0.0 && expected < rows.len() as f64, "{query} tells rows apart ({expected})");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_count_rule_that_cannot_be_evaluated_is_an_error_not_a_count() {
    let rows = data::rows();
    let dir = temp_dir("counted-bad");
    let path = dir.join("items.parquet");
    data::write_parquet(&path, &rows);
    // Planned and measured in the scan, but the cast fails on the first email.
    let failing = "SELECT COUNT(*) FROM items WHERE CAST(email AS INT) > 0";
    let mut source = source_over(&path).await;
    assert!(source.scans_sql("items", failing).await);
    let queries = [failing, "SELECT COUNT(*) FROM items WHERE qty", "SELECT COUNT(*) FROM items WHERE nothing > 1"];
    for r in sql_results(&path, &queries, 0).await {
        assert_eq!(r.outcome, Outcome::Error, "{:?}", r.detail);
        assert!(r.detail.as_deref().is_some_and(|d| !d.is_empty()));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

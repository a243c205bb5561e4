//! Keys that come in order for many batches and then do not: the duplicate counts stay
//! exact (the scan counts those keys again, by hash), on a real Parquet file; and keys that
//! share their lead with a unique id, on Parquet and on PostgreSQL.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use meshplane_quality::run::Outcome;

use crate::data::write_batch;
use crate::pg::{HOST, TestDb};
use crate::stores::{options, run_with, temp_dir};

/// Distinct keys seen more than once.
fn naive_dups<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> f64 {
    let mut counts = HashMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0u32) += 1;
    }
    counts.values().filter(|&&n| n > 1).count() as f64
}

/// Writes one Parquet file of `id` and `name` columns.
fn write_keys(path: &Path, ids: &[i64], names: &[Option<String>]) {
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
        ("name", Arc::new(StringArray::from(names.to_vec())) as ArrayRef),
    ])
    .unwrap();
    write_batch(path, &batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_order_then_out_of_order_are_counted_exactly() {
    // 50,000 ids in order (several of DataFusion's 8,192-row batches), then 500 earlier ids
    // again, out of order; every other late row has the name of the first, so half repeat the pair.
    let ids: Vec<i64> = (0..50_000).chain((0..500).map(|i| (i * 97 * 7) % 50_000)).collect();
    let late = |row: usize| i64::from(row >= 50_000 && row % 2 == 1);
    let names: Vec<String> = ids.iter().enumerate().map(|(row, id)| format!("n{}", (id + late(row)) % 3)).collect();
    let dir = temp_dir("order");
    let path = dir.join("keys.parquet");
    write_keys(&path, &ids, &names.iter().cloned().map(Some).collect::<Vec<_>>());

    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: k\nversion: 1.0.0\nstatus: active\n\
         servers:\n  - {{ server: f, type: local, path: \"{}\" }}\n\
         schema:\n  - name: keys\n    properties:\n      - {{ name: id, unique: true }}\n      - {{ name: name }}\n\
         \x20   quality:\n      - {{ metric: duplicateValues, arguments: {{ properties: [id, name] }}, mustBe: 0 }}\n",
        path.display()
    );
    let report = run_with(&text, "f", options()).await;
    let value = |key: &str| report.results.iter().find(|r| r.key == key).and_then(|r| r.value);
    let want_ids = naive_dups(ids.iter());
    let want_pairs = naive_dups(ids.iter().zip(&names));
    assert_eq!(want_ids, 500.0);
    assert!(want_pairs > 0.0 && want_pairs < want_ids, "some repeated ids repeat the pair ({want_pairs})");
    assert_eq!(value("keys.id.unique"), Some(want_ids));
    assert_eq!(value("keys.duplicateValues"), Some(want_pairs));
    assert!(report.results.iter().all(|r| r.outcome != Outcome::Error), "{:?}", report.results);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A directory of many files becomes more partitions than the scan reads at once (one more
/// than the cores), so most partitions wait for a turn; ids of one file repeat ids of an
/// earlier one, so partitions' in-order counts are joined or replayed into the shared table.
/// Every count is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_read_a_few_at_a_time_count_exactly() {
    let dir = temp_dir("partitions");
    let (mut ids, mut names): (Vec<i64>, Vec<Option<String>>) = (Vec::new(), Vec::new());
    for file in 0..12i64 {
        // File 7 repeats 50 ids of file 2 before its own.
        let repeated = if file == 7 { 4_000..4_050 } else { 0..0 };
        let file_ids: Vec<i64> = repeated.chain(file * 2_000..file * 2_000 + 2_000).collect();
        let file_names: Vec<Option<String>> =
            file_ids.iter().map(|id| (id % 13 != 0).then(|| format!("n{}", id % 5))).collect();
        write_keys(&dir.join(format!("part-{file:02}.parquet")), &file_ids, &file_names);
        ids.extend(file_ids);
        names.extend(file_names);
    }
    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: k\nversion: 1.0.0\nstatus: active\n\
         servers:\n  - {{ server: f, type: local, path: \"{}\", format: parquet }}\n\
         schema:\n  - name: keys\n    properties:\n      - {{ name: id, unique: true }}\n\
         \x20     - {{ name: name, logicalType: string, required: true, logicalTypeOptions: {{ pattern: '^n[0-3]$' }} }}\n\
         \x20   quality:\n      - {{ metric: duplicateValues, arguments: {{ properties: [id, name] }}, mustBe: 0 }}\n\
         \x20     - {{ metric: rowCount, mustBeGreaterThan: 0 }}\n",
        dir.display()
    );
    let report = run_with(&text, "f", options()).await;
    let value = |key: &str| report.results.iter().find(|r| r.key == key).and_then(|r| r.value);
    assert_eq!(value("keys.rowCount"), Some(ids.len() as f64));
    assert_eq!(value("keys.id.unique"), Some(naive_dups(ids.iter())));
    assert_eq!(value("keys.id.unique"), Some(50.0));
    // A pair with a null name is no key.
    let pairs = ids.iter().zip(&names).filter(|(_, name)| name.is_some());
    assert_eq!(value("keys.duplicateValues"), Some(naive_dups(pairs)));
    assert_eq!(value("keys.name.required"), Some(names.iter().filter(|n| n.is_none()).count() as f64));
    let off_pattern = names.iter().flatten().filter(|n| n.as_str() == "n4").count();
    assert!(off_pattern > 0);
    assert_eq!(value("keys.name.pattern"), Some(off_pattern as f64));
    assert!(report.results.iter().all(|r| r.outcome != Outcome::Error), "{:?}", report.results);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A unique id and a composite key led by it are counted together (one walk of the id on
/// files; the id's repeated values shared by both counts on PostgreSQL): both counts stay
/// exact in both stores, also when the rest of a repeated key is null (no key), or repeated
/// ids have different rests (no repeated key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_id_and_a_key_led_by_it_count_alike_on_files_and_postgres() {
    // 5,000 ids, then 900 earlier ones again: a third with the same name, a third with another
    // name, a third with no name; and a tenth of all names are null to begin with.
    let ids: Vec<i64> = (0..5_000).chain((0..900).map(|i| (i * 37) % 5_000)).collect();
    let name = |row: usize, id: i64| -> Option<String> {
        let late = row >= 5_000;
        match (late, row % 3) {
            (true, 2) => None,
            _ if id % 10 == 3 => None,
            (true, 1) => Some(format!("other{id}")),
            _ => Some(format!("n{id}")),
        }
    };
    let names: Vec<Option<String>> = ids.iter().enumerate().map(|(row, &id)| name(row, id)).collect();
    let dir = temp_dir("leads");
    let path = dir.join("keys.parquet");
    write_keys(&path, &ids, &names);
    let db = TestDb::create("leads").await;
    db.client.batch_execute("CREATE TABLE keys (id bigint, name text)").await.unwrap();
    db.client
        .execute("INSERT INTO keys SELECT * FROM unnest($1::bigint[], $2::text[])", &[&ids, &names])
        .await
        .unwrap();
    db.client.batch_execute("ANALYZE keys").await.unwrap();

    let text = format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: k\nversion: 1.0.0\nstatus: active\n\
         servers:\n  - {{ server: f, type: local, path: \"{}\" }}\n\
         \x20 - {{ server: pg, type: postgres, host: {HOST}, port: 5432, database: {}, schema: public }}\n\
         schema:\n  - name: keys\n    properties:\n      - {{ name: id, unique: true }}\n      - {{ name: name }}\n\
         \x20   quality:\n      - {{ metric: duplicateValues, arguments: {{ properties: [id, name] }}, mustBe: 0 }}\n",
        path.display(),
        db.name
    );
    let want_ids = naive_dups(ids.iter());
    let want_pairs = naive_dups(ids.iter().zip(&names).filter(|(_, name)| name.is_some()));
    assert_eq!(want_ids, 900.0);
    assert!(want_pairs > 0.0 && want_pairs < want_ids / 2.0, "a third of the repeated ids repeat the pair");
    for server in ["f", "pg"] {
        let report = run_with(&text, server, options()).await;
        let value = |key: &str| report.results.iter().find(|r| r.key == key).and_then(|r| r.value);
        assert_eq!(value("keys.id.unique"), Some(want_ids), "{server}");
        assert_eq!(value("keys.duplicateValues"), Some(want_pairs), "{server}");
        assert!(report.results.iter().all(|r| r.outcome != Outcome::Error), "{server}: {:?}", report.results);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

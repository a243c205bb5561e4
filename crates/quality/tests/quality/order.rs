//! Keys that come in order for many batches and then do not: the duplicate counts stay
//! exact (the scan counts those keys again, by hash), on a real Parquet file.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use meshplane_quality::run::Outcome;

use crate::stores::{options, run_with, temp_dir};

/// Distinct keys seen more than once.
fn naive_dups<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> f64 {
    let mut counts = HashMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0u32) += 1;
    }
    counts.values().filter(|&&n| n > 1).count() as f64
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
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        ("name", Arc::new(StringArray::from(names.clone())) as ArrayRef),
    ])
    .unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

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

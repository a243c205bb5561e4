//! Files on an S3-compatible object store: an S3 server (s3s-fs, the S3 protocol over a
//! local directory) runs on loopback for the test, with credentials checked.

use std::sync::Arc;

use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::testing::{KEY, SECRET, start_s3};

use crate::data;
use crate::stores::{assert_expected, contract, options, run_with, temp_dir};

fn with_keys(key: &'static str, secret: &'static str) -> Options {
    let env = Arc::new(move |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some(key.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(secret.to_string()),
        _ => None,
    });
    Options { env, ..options() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_s3_give_the_same_counts_and_verdicts() {
    let root = temp_dir("s3");
    let objects = root.join("lake/sales/items");
    std::fs::create_dir_all(&objects).unwrap();
    let rows = data::rows();
    // Two files under the prefix, read as one object.
    data::write_parquet(&objects.join("part-0.parquet"), &rows[..400]);
    data::write_parquet(&objects.join("part-1.parquet"), &rows[400..]);
    let addr = start_s3(&root).await;
    let text = contract("unused", "unused").replace("{endpoint}", &format!("http://{addr}"));
    let report = run_with(&text, "s3", with_keys(KEY, SECRET)).await;
    assert_expected("s3", &report);

    let denied = run_with(&text, "s3", with_keys(KEY, "wrong")).await;
    let exists = &denied.results[0];
    assert_eq!((exists.key.as_str(), exists.outcome), ("items.exists", Outcome::Error), "{exists:?}");
    assert!(exists.detail.as_deref().unwrap().contains("cannot list"), "{exists:?}");
    std::fs::remove_dir_all(root).unwrap();
}

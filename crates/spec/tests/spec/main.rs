//! The spec crate's integration tests, in one binary: the official examples, our own
//! invalid documents, round trips, and the diff.

mod diff;
mod examples;
mod invalid;
mod roundtrip;

use std::path::{Path, PathBuf};

/// The repository's own fixtures.
pub fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir)
}

/// Every file under `dir` with one of the extensions, sorted.
pub fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if extensions.iter().any(|ext| path.to_string_lossy().ends_with(ext)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The standards' folder next to the repository, when this checkout has one. Where `CI` is
/// set the folder is always there, so a test can never pass there by skipping: it fails.
pub fn shared_specs() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI is set but {} is missing", dir.display());
    eprintln!("../shared/specs not present: skipped");
    None
}

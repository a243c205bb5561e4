//! A relative server path is one place to `meshplane test` and to `meshplane serve`: both
//! read it from their working directory, never from the contract file's (docs/test.md,
//! "Relative paths"), so the files the CLI tests are the ones the server provisioned and tests.

use crate::{Served, meshplane_in, serve, stdout, token_for};

/// A lake contract on `./data/visits/` (CSV) that wants three rows.
const CONTRACT: &str = "apiVersion: v3.1.0\nkind: DataContract\nid: visits\nversion: 1.0.0\nstatus: active\n\
                        domain: web\nservers:\n  - { server: lake, type: local, environment: dev, path: ./data/visits/, format: csv }\n\
                        schema:\n  - name: visits\n    properties:\n      - { name: id, logicalType: integer, required: true }\n\
                        \x20   quality:\n      - { metric: rowCount, mustBe: 3 }\n";

/// The measured value of the row count check of a test report.
fn rows(report: &serde_json::Value) -> Option<f64> {
    let results = report["results"].as_array()?;
    results.iter().find(|r| r["key"].as_str().is_some_and(|k| k.ends_with("rowCount")))?["value"].as_f64()
}

/// Applies [`CONTRACT`] from `contracts/visits.odcs.yaml` under the server's working
/// directory with the CLI, waiting until it is Ready; returns that `contracts` directory.
pub(crate) fn apply_visits(s: &Served) -> std::path::PathBuf {
    let contracts = s.cwd.join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(contracts.join("visits.odcs.yaml"), CONTRACT).unwrap();
    let applied = meshplane_in(&s.cwd, &["apply", "--server", &s.url, "-f", "contracts/visits.odcs.yaml", "--wait=2m"]);
    assert_eq!(applied.status.code(), Some(0), "{}{}", stdout(&applied), String::from_utf8_lossy(&applied.stderr));
    contracts
}

#[test]
fn a_relative_path_is_the_same_place_to_the_cli_and_to_the_server() {
    let s = serve();
    let contracts = apply_visits(&s);

    // The server provisioned ./data/visits/ under its working directory (not under contracts/,
    // where the file is); the pipeline writes the port's data there.
    let port = s.cwd.join("data/visits");
    assert!(port.join(".meshplane-port").is_file(), "the port's mark is where the server runs");
    std::fs::write(port.join("part-0.csv"), "id\n1\n2\n3\n").unwrap();

    // The CLI, run where the server runs, reads those files.
    let cli = meshplane_in(&s.cwd, &["test", "contracts/visits.odcs.yaml", "-o", "json"]);
    assert_eq!(cli.status.code(), Some(0), "{}{}", stdout(&cli), String::from_utf8_lossy(&cli.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(rows(&cli), Some(3.0), "{cli}");

    // The server's run of the stored contract reads the same files.
    let token = token_for(&s.url).unwrap();
    let res = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/contracts/visits@v1/tests", s.url))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let run: serde_json::Value = res.json().unwrap();
    assert_eq!(run["failed"].as_bool(), Some(false), "{run}");
    assert_eq!(rows(&run["report"]), rows(&cli), "{run}");

    // From the contract's own directory the same path is another place, where nothing is.
    let elsewhere = meshplane_in(&contracts, &["test", "visits.odcs.yaml", "-o", "json"]);
    assert_ne!(elsewhere.status.code(), Some(0), "{}", stdout(&elsewhere));
    assert!(!contracts.join("data").exists());
}

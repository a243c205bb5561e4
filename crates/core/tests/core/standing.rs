//! The checks' standing: each check's latest verdict, and since when it holds, kept with the
//! test runs — what alerts read as failing now.

use meshplane_core::resource::Kind;
use meshplane_core::store::Store;
use meshplane_core::store::checks::Covered;
use serde_json::{Value, json};

use crate::backends::{Place, contract, open, options, product, resource};
use crate::on_both;

/// `orders@v1` on servers prod and test, with rules on the hourly and daily schedules (what
/// the standing may hold of it).
fn orders(servers: &[&str], schedules: &[&str]) -> String {
    let servers: String = servers
        .iter()
        .map(|s| format!("  - {{ server: {s}, type: local, path: /data/{s}/, format: csv }}\n"))
        .collect();
    let rules: String = schedules
        .iter()
        .map(|s| format!("      - {{ metric: rowCount, mustBeGreaterThan: 0, scheduler: cron, schedule: '{s}' }}\n"))
        .collect();
    let quality = if rules.is_empty() { String::new() } else { format!("    quality:\n{rules}") };
    contract("orders", "1.0.0", "draft", &format!("{quality}servers:\n{servers}"))
}

fn report(results: &[(&str, Option<&str>, &str)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(key, schedule, outcome)| json!({ "key": key, "schedule": schedule, "outcome": outcome, "description": key }))
        .collect();
    json!({ "results": results })
}

async fn run(store: &Store, server: &str, results: &[(&str, Option<&str>, &str)], covered: Covered<'_>) {
    let failed = results.iter().any(|(_, _, o)| *o != "pass");
    store.record_test(Kind::DataContract, "orders@v1", 1, server, failed, report(results), covered).await.unwrap();
}

/// (server, key, outcome, since) of every check that does not pass.
async fn failing(store: &Store) -> Vec<(String, String, String, String)> {
    let all = store.failing_checks().await.unwrap();
    all.into_iter().map(|f| (f.server, f.key, f.outcome, f.since)).collect()
}

on_both!(a_check_fails_until_a_run_that_covers_it_says_otherwise, |place: Place| async move {
    let store = open(&place).await;
    store.apply(&[resource(&orders(&["prod", "test"], &["0 * * * *", " @daily "]))], &[], &options()).await.unwrap();
    let hourly = Some("0 * * * *");
    run(&store, "prod", &[("a", None, "fail"), ("b", hourly, "warn"), ("c", None, "pass")], Covered::Every).await;
    let first = failing(&store).await;
    assert_eq!(first.iter().map(|f| (f.1.as_str(), f.2.as_str())).collect::<Vec<_>>(), [("a", "fail"), ("b", "warn")]);

    // Still failing: it keeps the time it started failing. Another server stands apart.
    run(&store, "prod", &[("a", None, "fail")], Covered::InRun).await;
    run(&store, "test", &[("a", None, "error")], Covered::Every).await;
    let second = failing(&store).await;
    assert_eq!(second[0], first[0]);
    assert_eq!(second.iter().filter(|f| f.0 == "test").count(), 1);

    // A scheduled run drops the checks of its schedule it no longer has, and no others.
    run(&store, "prod", &[], Covered::Schedule("0 * * * *")).await;
    let keys: Vec<String> = failing(&store).await.into_iter().filter(|f| f.0 == "prod").map(|f| f.1).collect();
    assert_eq!(keys, ["a"]);

    // A run that could not happen fails the run check, and leaves the others as they were.
    let unreachable = json!({ "error": { "code": "data-unreachable", "message": "cannot reach the lake" } });
    store.record_test(Kind::DataContract, "orders@v1", 1, "prod", true, unreachable, Covered::InRun).await.unwrap();
    let all = store.failing_checks().await.unwrap();
    let run_check = all.iter().find(|f| f.server == "prod" && f.key == "run").unwrap();
    assert_eq!(run_check.description, "the tests could not run: cannot reach the lake");
    assert!(all.iter().any(|f| f.server == "prod" && f.key == "a"));

    // The test server and the hourly schedule leave the contract: their standing goes with
    // the next run.
    store.apply(&[resource(&orders(&["prod"], &["@daily"]))], &[], &options()).await.unwrap();
    run(&store, "prod", &[("b", Some("0 * * * *"), "fail")], Covered::InRun).await;
    run(&store, "prod", &[("c", Some("@daily"), "fail")], Covered::InRun).await;
    let left: Vec<(String, String)> = failing(&store).await.into_iter().map(|f| (f.0, f.1)).collect();
    let left: Vec<(&str, &str)> = left.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
    assert_eq!(left, [("prod", "a"), ("prod", "c")], "and the runs that happened pass the run check");

    // A whole run that passes clears the server; a deleted contract has no standing.
    run(&store, "prod", &[("a", None, "pass")], Covered::Every).await;
    assert!(failing(&store).await.is_empty());
    store.delete(Kind::DataContract, "orders@v1", &options()).await.unwrap();
    let record = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    let fence = ("test", store.acquire_lease("DataContract", "orders@v1", "test", 10_000).await.unwrap().unwrap());
    assert!(store.remove(Kind::DataContract, &record.name, fence, &[]).await.unwrap());
    assert!(failing(&store).await.is_empty());
});

on_both!(runs_stand_per_schedule_and_a_repeated_key_counts_once, |place: Place| async move {
    let store = open(&place).await;
    store.apply(&[resource(&orders(&["prod", "test"], &["0 * * * *", " @daily "]))], &[], &options()).await.unwrap();
    let scheduled = |schedule: &str, error: bool| {
        let mut report = if error {
            json!({ "error": { "code": "data-unreachable", "message": "cannot reach the lake" } })
        } else {
            report(&[("a", Some(" @daily "), "fail"), ("a", Some(" @daily "), "pass")])
        };
        report["trigger"] = json!({ "by": "schedule", "schedule": schedule });
        report
    };
    let record = |report: Value, covered| {
        let store = store.clone();
        async move { store.record_test(Kind::DataContract, "orders@v1", 1, "prod", true, report, covered).await.unwrap() }
    };
    // The hourly schedule's run cannot happen; the daily one's can, and its key repeated in a
    // report counts once, as its last verdict.
    record(scheduled("0 * * * *", true), Covered::InRun).await;
    record(scheduled("@daily", false), Covered::Schedule("@daily")).await;
    let keys: Vec<(String, String)> =
        store.failing_checks().await.unwrap().into_iter().map(|f| (f.key, f.outcome)).collect();
    assert_eq!(keys, [("run 0 * * * *".to_string(), "error".to_string())]);
    // The daily schedule's checks are its own even when the contract pads the schedule.
    record(report(&[]), Covered::Schedule("@daily")).await;
    let standing = store.standing_of("orders@v1").await.unwrap();
    assert!(standing.iter().all(|s| s.key != "a"), "{standing:?}");
});

async fn tests_passing(store: &Store, kind: Kind, name: &str) -> Option<(String, String)> {
    crate::cleanup::condition(store, kind, name, "TestsPassing").await
}

on_both!(tests_passing_follows_the_standing_and_goes_with_the_last_tested_port, |place: Place| async move {
    let store = open(&place).await;
    let blocks = meshplane_core::block::Blocks::default();
    let offering = "outputPorts:\n  - { name: out, version: 1.0.0, contractId: orders }\n";
    let product = |ports: &str| product("shop", "sales", ports).replace("status: active", "status: draft");
    store.apply(&[resource(&orders(&["prod"], &[])), resource(&product(offering))], &[], &options()).await.unwrap();
    let reconcile = async |kind, name| crate::cleanup::run(&store, &blocks, kind, name).await.unwrap();
    reconcile(Kind::DataContract, "orders@v1").await;
    assert_eq!(tests_passing(&store, Kind::DataContract, "orders@v1").await, None, "never tested");

    run(&store, "prod", &[("a", None, "fail")], Covered::Every).await;
    reconcile(Kind::DataContract, "orders@v1").await;
    reconcile(Kind::DataProduct, "shop").await;
    let failing = Some(("False".to_string(), "ChecksFailing".to_string()));
    assert_eq!(tests_passing(&store, Kind::DataContract, "orders@v1").await, failing);
    assert_eq!(tests_passing(&store, Kind::DataProduct, "shop").await, failing);

    // The product no longer offers the contract: it has nothing tested to say.
    store.apply(&[resource(&product(""))], &[], &options()).await.unwrap();
    reconcile(Kind::DataProduct, "shop").await;
    assert_eq!(tests_passing(&store, Kind::DataProduct, "shop").await, None);
});

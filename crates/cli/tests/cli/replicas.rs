//! Two `meshplane serve` processes on one PostgreSQL: one is killed with SIGKILL while it
//! holds leases mid-reconcile, and the other takes its resources over once those leases
//! expire, with larger fencing tokens, until everything is reconciled.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{post_apply, serve_with};

/// Answers of `sql` on the test database, one line per row.
fn psql(database: &str, sql: &str) -> Vec<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-XAtc", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

fn signal(pid: u32, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap().success());
}

#[test]
fn a_replica_killed_mid_reconcile_is_taken_over_when_its_leases_expire() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let place = runtime.block_on(meshplane_core::testing::postgres());
    let database = place.url.rsplit('/').next().unwrap().to_string();
    let settings = ["--lease-seconds", "3", "--workers", "2"];
    let mut first = serve_with(&place.url, &settings);
    let contracts = 1_500;
    let body: Vec<String> = (0..contracts)
        .map(|i| {
            format!("apiVersion: v3.1.0\nkind: DataContract\nid: c{i}\nversion: 1.0.0\nstatus: active\ndomain: d\n")
        })
        .collect();
    assert_eq!(post_apply(&first.url, &body.join("---\n")), Some(200));
    let second = serve_with(&place.url, &settings);
    let owner = |pid: u32| format!("meshplane-{pid}-%");
    let (a, b) = (first.child.id(), second.child.id());
    let held_by_a =
        format!("SELECT name || ' ' || token FROM leases WHERE owner LIKE '{}' AND expires_at > 0", owner(a));

    // Freeze the first replica until it is caught holding a lease it has not given back,
    // with both replicas members; then kill it there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        assert!(Instant::now() < deadline, "the first replica never held a lease while both were members");
        signal(a, "STOP");
        let held = psql(&database, &held_by_a);
        let members = psql(&database, "SELECT count(*) FROM replicas")[0].parse::<u32>().unwrap();
        if !held.is_empty() && members == 2 {
            break held;
        }
        signal(a, "CONT");
        std::thread::sleep(Duration::from_millis(20));
    };
    signal(a, "KILL");
    let _ = first.child.wait();
    let killed = Instant::now();

    // The second replica takes every one of them over, with a larger token.
    let names: BTreeSet<(String, i64)> = held
        .iter()
        .map(|line| {
            let (name, token) = line.rsplit_once(' ').unwrap();
            (name.to_string(), token.parse().unwrap())
        })
        .collect();
    let taken_over = |names: &BTreeSet<(String, i64)>| {
        names.iter().all(|(name, token)| {
            let now = psql(&database, &format!("SELECT owner, token FROM leases WHERE name = '{name}'"));
            let (holder, new_token) = now[0].split_once('|').unwrap();
            holder.starts_with(&format!("meshplane-{b}-")) && new_token.parse::<i64>().unwrap() > *token
        })
    };
    let ready = "SELECT count(*) FROM statuses WHERE kind = 'DataContract' \
                 AND conditions LIKE '%\"type\":\"Ready\",\"status\":\"True\"%'";
    while !(taken_over(&names) && psql(&database, ready)[0] == contracts.to_string()) {
        assert!(killed.elapsed() < Duration::from_secs(120), "the second replica did not take over: {names:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{} leases taken over; everything Ready {:?} after the kill", names.len(), killed.elapsed());
    let live = "SELECT count(*) FROM replicas WHERE expires_at >= (extract(epoch FROM now()) * 1000)::bigint";
    assert_eq!(psql(&database, live), ["1"], "the dead replica's membership expired");
    // The survivor said when its share grew back to the whole.
    let log = std::fs::read_to_string(second.cwd.join("serve.log")).unwrap();
    let shares: Vec<&str> = log.lines().filter(|l| l.contains("this replica's share of the work changed")).collect();
    assert!(shares.last().is_some_and(|l| l.contains("place=0 replicas=1")), "{shares:?}");
    drop(second);
}

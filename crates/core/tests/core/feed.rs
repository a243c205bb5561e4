//! The change feed is read by number (`seq > last`): every writer of change records commits
//! in number order, so a reader polling while applies, status transitions and test runs
//! commit together misses none of them (on PostgreSQL, with a pool of connections, a record
//! numbered lower that committed later would be skipped for good).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meshplane_core::resource::Kind;
use meshplane_core::store::{Condition, ConditionStatus, Store};

use crate::backends::{Place, contract, open, options, product, resource};
use crate::on_both;

fn ready(holds: bool) -> Vec<Condition> {
    vec![Condition {
        kind: "Ready".into(),
        status: ConditionStatus::of(holds),
        reason: "Test".into(),
        message: String::new(),
        observed_generation: 1,
        last_transition_time: "2026-01-01T00:00:00Z".into(),
    }]
}

async fn all_after(store: &Store, mut after: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let page = store.events(after, 1000).await.unwrap();
        let Some(last) = page.last() else { return seqs };
        after = last.seq;
        seqs.extend(page.iter().map(|c| c.seq));
    }
}

on_both!(a_reader_misses_no_change_while_writers_commit_together, |place: Place| async move {
    let store = open(&place).await;
    let contracts: Vec<_> = (0..24).map(|i| resource(&contract(&format!("c{i}"), "1.0.0", "draft", ""))).collect();
    store.apply(&contracts, &[], &options()).await.unwrap();
    let start = all_after(&store, 0).await.last().copied().unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        async move {
            let (mut seen, mut after) = (Vec::new(), start);
            while !stop.load(Ordering::Relaxed) {
                for change in store.events(after, 1000).await.unwrap() {
                    after = change.seq;
                    seen.push(change.seq);
                }
                tokio::task::yield_now().await;
            }
            (seen, after)
        }
    });
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let store = store.clone();
        writers.spawn(async move {
            let name = format!("c{w}@v1");
            let token =
                store.acquire_lease(Kind::DataContract.as_str(), &name, "test", 600_000).await.unwrap().unwrap();
            for round in 0..40 {
                // Every write flips Ready: each is a status transition with its change record.
                let fence = ("test", token);
                store.set_status(Kind::DataContract, &name, 1, &ready(round % 2 == 0), fence).await.unwrap();
            }
        });
    }
    for w in 0..2 {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0..40 {
                let shop = product(&format!("p{w}x{i}"), "sales", "");
                store.apply(&[resource(&shop)], &[], &options()).await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (mut seen, after) = reader.await.unwrap();
    // What the reader would read next is not missed: only what it stepped over is.
    let committed = all_after(&store, start).await;
    seen.extend(committed.iter().filter(|s| **s > after));
    assert_eq!(committed.len(), 6 * 40 + 2 * 40, "every write made a change record");
    let missed: Vec<&i64> = committed.iter().filter(|s| !seen.contains(s)).collect();
    assert!(missed.is_empty(), "the reader stepped over {} change(s): {missed:?}", missed.len());
});

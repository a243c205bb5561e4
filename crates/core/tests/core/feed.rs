//! The change feed is read by number (`seq > last`): a reader polling while applies, status
//! transitions and test runs commit together misses none of them. On PostgreSQL writers commit
//! side by side, so a record numbered lower may commit later; the feed's readers stop before a
//! number still in flight instead of stepping over it for good.

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
            let record = store.get(Kind::DataContract, &name).await.unwrap();
            for round in 0..40 {
                // Every write flips Ready: each is a status transition with its change record.
                let (fence, before) = (("test", token), if round == 0 { Vec::new() } else { ready(round % 2 == 1) });
                store.set_status(&record, &before, &ready(round % 2 == 0), fence).await.unwrap();
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

/// A change record written by a transaction that is still open, as a writer of change records
/// writes it (the mark first, then the number); returns the open transaction and the number.
async fn in_flight(url: &str) -> (sqlx::AnyConnection, i64) {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared(7074613)").execute(&mut conn).await.unwrap();
    let row = sqlx::query(
        "INSERT INTO changes (at, actor, origin, kind, name, action, generation, version, event) \
         VALUES ('2026-01-01T00:00:00.000000Z', 'test', 'test', 'DataContract', 'c0@v1', 'status', 1, '1.0.0', '{}') \
         RETURNING seq",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    (conn, row.try_get(0).unwrap())
}

/// A PostgreSQL store with one change, and the feed's position after it.
async fn with_a_change() -> (Place, Store, i64) {
    let place = crate::backends::postgres().await;
    let store = open(&place).await;
    store.apply(&[resource(&contract("c0", "1.0.0", "draft", ""))], &[], &options()).await.unwrap();
    let start = all_after(&store, 0).await.last().copied().unwrap();
    (place, store, start)
}

/// The highest change number committed, as the database has it.
async fn last_number(url: &str) -> i64 {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query("SELECT max(seq) FROM changes").fetch_one(&mut conn).await.unwrap().get(0)
}

/// On PostgreSQL a change may commit after one numbered higher: the feed's readers stop before
/// a number still in flight, and go on once it committed or rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waits_for_a_number_still_in_flight() {
    let (place, store, start) = with_a_change().await;
    for ends in ["COMMIT", "ROLLBACK"] {
        let (mut open_tx, held) = in_flight(&place.url).await;
        let shop = product(&format!("after-{ends}"), "sales", "");
        store.apply(&[resource(&shop)], &[], &options()).await.unwrap();
        let later = last_number(&place.url).await;
        assert!(later > held, "the apply committed under a higher number ({later}) than the open one ({held})");
        for _ in 0..3 {
            let read: Vec<i64> = store.events(start, 1000).await.unwrap().iter().map(|c| c.seq).collect();
            assert!(!read.contains(&later), "{later} was read while {held} was in flight: {read:?}");
        }
        sqlx::query(ends).execute(&mut open_tx).await.unwrap();
        let read = all_after(&store, start).await;
        assert!(read.contains(&later), "{later} is read once {held} ended ({ends}): {read:?}");
        assert_eq!(read.contains(&held), ends == "COMMIT", "{held} is read only if it committed: {read:?}");
    }
}

/// Writers that overlap without end do not hold the feed back: a number that rolled back is
/// stepped over once the writers that were in flight when it was seen have ended, though new
/// ones keep coming (the lock is never free all at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_feed_moves_past_a_number_that_rolled_back() {
    use sqlx::Connection;
    let (place, store, start) = with_a_change().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4u64 {
        let (url, stop) = (place.url.clone(), Arc::clone(&stop));
        writers.spawn(async move {
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10 * w)).await;
            while !stop.load(Ordering::Relaxed) {
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT pg_advisory_xact_lock_shared(7074613)").execute(&mut conn).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
        });
    }
    let (mut gap, held) = in_flight(&place.url).await;
    sqlx::query("ROLLBACK").execute(&mut gap).await.unwrap();
    store.apply(&[resource(&product("after-the-gap", "sales", ""))], &[], &options()).await.unwrap();
    let later = last_number(&place.url).await;
    assert!(later > held);
    let mut read = Vec::new();
    for _ in 0..200 {
        read = all_after(&store, start).await;
        if read.contains(&later) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let busy = writers.len();
    stop.store(true, Ordering::Relaxed);
    while writers.join_next().await.is_some() {}
    assert_eq!(busy, 4, "the writers were still at it");
    assert!(read.contains(&later), "{later} was never read past the rolled-back {held}: {read:?}");
}

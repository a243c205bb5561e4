//! The controller runtime on a clock that stands still: what happens without a timer (a
//! product follows its contract's status at once) and what waits for the clock (a transient
//! failure's backoff retry), and that a permanent failure is not retried at all.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshplane_core::block::BlockError;
use meshplane_core::controller::{ManualClock, Timing};
use tokio::sync::Semaphore;

use super::*;

/// A block for the contracts whose names start with its prefix: each provisioning first waits
/// for a permit of `gate` (when there is one), then fails with the next planned error, and
/// succeeds once none is left.
struct Scripted {
    prefix: &'static str,
    gate: Option<Arc<Semaphore>>,
    failures: Mutex<Vec<BlockError>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(prefix: &'static str, gate: Option<Arc<Semaphore>>, failures: Vec<BlockError>) -> Arc<Scripted> {
        Arc::new(Scripted { prefix, gate, failures: Mutex::new(failures), calls: AtomicUsize::new(0) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Provisioner for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn concerns(&self, record: &Record) -> bool {
        record.kind == Kind::DataContract && record.name.starts_with(self.prefix)
    }
    fn provision<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            let planned = self.failures.lock().unwrap().pop();
            match planned {
                Some(error) => Err(error),
                None => Ok(Provisioned::done("provisioned")),
            }
        })
    }
    fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A server whose `workers` reconcilers run on `clock` with `block`, and never read the
/// change feed on a timer (an hour of a clock that does not move): only this process's
/// commits wake them.
async fn on_clock(place: &Place, clock: &Arc<ManualClock>, block: Arc<Scripted>, workers: usize) -> Server {
    let store = Store::open(&place.url).await.unwrap();
    let settings = Settings {
        clock: clock.clone(),
        feed_poll_ms: 3_600_000,
        timing: Timing { backoff_base: 1_000, backoff_max: 60_000, resync: 600_000 },
        workers,
        ..settings()
    };
    let reconcilers = reconciler::spawn(store.clone(), Blocks::of(vec![block]), settings, "one".into());
    serve_api(store, Some(reconcilers.heartbeat)).await
}

/// Applies a contract nothing provisions and waits until it is Ready: with one worker, proof
/// that the loop went round, taking everything that was due before it.
async fn loop_went_round(s: &Server, id: &str) {
    assert_eq!(s.apply(contract(id, "1.0.0", "sales", ""), "").await.0, StatusCode::OK);
    eventually(s, &format!("/api/v1/contracts/{id}@v1"), |b| condition(b, "Ready")["status"] == "True").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_follows_its_contracts_status_without_the_clock_moving() {
    let place = sqlite().await;
    let clock = Arc::new(ManualClock::at(1_000_000));
    let gate = Arc::new(Semaphore::new(0));
    let block = Scripted::new("orders", Some(gate.clone()), vec![]);
    // Two workers: one stays with the contract at the gate.
    let s = on_clock(&place, &clock, block.clone(), 2).await;
    let docs = [product("shop", "sales", &[], &["orders"]), contract("orders", "1.0.0", "sales", "")];
    assert_eq!(s.apply(docs.join("---\n"), "").await.0, StatusCode::OK);
    // The contract's provisioning is held at the gate: the product waits for it.
    let waiting = eventually(&s, "/api/v1/products/shop", |b| condition(b, "PortsReady")["status"] == "False").await;
    assert_eq!(condition(&waiting, "Ready")["reason"], "PortsNotReady");
    gate.add_permits(1);
    let ready = eventually(&s, "/api/v1/products/shop", |b| condition(b, "Ready")["status"] == "True").await;
    assert_eq!(condition(&ready, "PortsReady")["status"], "True");
    assert_eq!((clock.now_ms(), block.calls()), (1_000_000, 1), "no time passed; one provisioning");
    // The contract's status change is in the feed, as the reconciler's.
    let (_, events) = s.get("/api/v1/events?limit=1000").await;
    let status = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "status" && e["name"] == "orders@v1" && e["event"]["data"]["ready"] == "True");
    let status = status.unwrap_or_else(|| panic!("no status change of orders@v1 in {events}"));
    assert_eq!((status["actor"].as_str(), status["origin"].as_str()), (Some("meshplane"), Some("reconciler")));
    assert_eq!(status["event"]["type"], "io.meshplane.datacontract.status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_with_backoff_until_the_block_recovers() {
    let place = sqlite().await;
    let clock = Arc::new(ManualClock::at(1_000_000));
    let down = || BlockError::Transient("the store does not answer".into());
    let block = Scripted::new("orders", None, vec![down(), down()]);
    let s = on_clock(&place, &clock, block.clone(), 1).await;
    assert_eq!(s.apply(contract("orders", "1.0.0", "sales", ""), "").await.0, StatusCode::OK);
    let path = "/api/v1/contracts/orders@v1";
    let failed = eventually(&s, path, |b| condition(b, "Provisioned")["reason"] == "ProvisioningFailed").await;
    assert_eq!(condition(&failed, "Provisioned")["message"], "scripted: the store does not answer");
    // Not retried while the clock stands; the first retry after 1 s (plus up to a quarter).
    loop_went_round(&s, "first").await;
    assert_eq!(block.calls(), 1);
    clock.advance(1_250);
    eventually(&s, path, |_| block.calls() == 2).await;
    // The second retry waits twice as long: 1.25 s more is not enough, 2.5 s in all is.
    loop_went_round(&s, "second").await;
    clock.advance(1_250);
    loop_went_round(&s, "third").await;
    assert_eq!(block.calls(), 2, "the backoff doubled");
    clock.advance(1_250);
    let ready = eventually(&s, path, |b| condition(b, "Ready")["status"] == "True").await;
    assert_eq!(condition(&ready, "Provisioned")["reason"], "Provisioned");
    assert_eq!(block.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_shows_its_reason_and_waits_for_a_change() {
    let place = sqlite().await;
    let clock = Arc::new(ManualClock::at(1_000_000));
    let refusal = BlockError::Permanent("schema `s` is not this block's to manage".into());
    let block = Scripted::new("orders", None, vec![refusal]);
    let s = on_clock(&place, &clock, block.clone(), 1).await;
    assert_eq!(s.apply(contract("orders", "1.0.0", "sales", ""), "").await.0, StatusCode::OK);
    let path = "/api/v1/contracts/orders@v1";
    let refused = eventually(&s, path, |b| condition(b, "Provisioned")["reason"] == "ProvisioningRefused").await;
    assert_eq!(condition(&refused, "Provisioned")["message"], "scripted: schema `s` is not this block's to manage");
    assert_eq!(condition(&refused, "Ready")["status"], "False");
    // Longer than any backoff, shorter than the resync: no retry.
    clock.advance(120_000);
    loop_went_round(&s, "later").await;
    assert_eq!(block.calls(), 1, "a permanent failure is not retried");
    // The document changes: reconciled again (and this time the block takes it).
    let changed = contract("orders", "1.0.1", "sales", "description: { purpose: orders of the shop }\n");
    assert_eq!(s.apply(changed, "").await.0, StatusCode::OK);
    eventually(&s, path, |b| condition(b, "Ready")["status"] == "True").await;
    assert_eq!(block.calls(), 2);
}

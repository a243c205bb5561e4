//! Runs the reconcilers inside `meshplane serve`: every stored resource once at start, then
//! each resource whose change record appears in the change feed, on the runtime queue
//! (exclusive per resource, backoff on error, periodic resync). A contract's change also
//! requeues the products whose ports name it.
//!
//! Each reconcile runs under the resource's lease (owner, expiry, fencing token) in the store,
//! so two replicas on one PostgreSQL never reconcile one resource at once, and a replica that
//! stalled past its lease cannot write its status over its successor's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::{Kind, port_links};
use meshplane_core::runtime::{Action, Queue, Timing};
use meshplane_core::store::Store;
use serde_json::Value as Any;

/// How often the change feed is read when nothing is due sooner.
const POLL_MS: u64 = 200;
/// How long a reconcile may hold its resource's lease.
const LEASE_MS: i64 = 30_000;
/// When another replica holds a resource's lease, look again after this long.
const BUSY_RETRY_MS: u64 = 1_000;

/// Which products name each contract id in their ports, so a contract's change requeues only
/// the products that link to it.
#[derive(Default)]
struct Links {
    by_contract: HashMap<String, BTreeSet<String>>,
    of_product: HashMap<String, Vec<String>>,
}

impl Links {
    fn set(&mut self, product: &str, spec: Option<&Any>) {
        for id in self.of_product.remove(product).unwrap_or_default() {
            if let Some(products) = self.by_contract.get_mut(&id) {
                products.remove(product);
            }
        }
        let ids: Vec<String> = spec.map(port_links).unwrap_or_default().into_iter().map(|l| l.contract_id).collect();
        for id in &ids {
            self.by_contract.entry(id.clone()).or_default().insert(product.to_string());
        }
        self.of_product.insert(product.to_string(), ids);
    }

    fn products(&self, contract_id: &str) -> impl Iterator<Item = &String> {
        self.by_contract.get(contract_id).into_iter().flatten()
    }
}

/// Every stored resource of a kind: its key and document (none when the store fails; the
/// change feed and resyncs bring them later).
async fn keys(store: &Store, kind: Kind) -> Vec<(String, Any)> {
    let all = store.list_all(kind).await.unwrap_or_default();
    all.into_iter().map(|r| (format!("{}/{}", r.kind, r.name), r.spec)).collect()
}

/// The running reconcile loop.
pub struct Reconcilers {
    pub task: tokio::task::JoinHandle<()>,
    /// When the loop last went round, in milliseconds since the Unix epoch (`/readyz`).
    pub heartbeat: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Reconcilers {
    /// Stops taking work, lets the reconcile in flight finish (its lease is released), and
    /// waits for the loop to end.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Starts the reconcile loop; it runs until the process ends or the task is aborted.
pub fn spawn(store: Store, timing: Timing) -> Reconcilers {
    let heartbeat = Arc::new(AtomicU64::new(0));
    let beat = Arc::clone(&heartbeat);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    // Who this loop is, in the store's leases: unique per process and per loop.
    static LOOPS: AtomicU64 = AtomicU64::new(0);
    let owner = format!("meshplane-{}-{}-{}", std::process::id(), epoch_ms(), LOOPS.fetch_add(1, Ordering::Relaxed));
    let task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let ms = || start.elapsed().as_millis() as u64;
        let mut queue = Queue::new(timing);
        let mut seen = 0;
        while let Ok(changes) = store.events(seen, 1000).await {
            match changes.last() {
                Some(last) => seen = last.seq,
                None => break,
            }
        }
        let mut links = Links::default();
        for (key, spec) in keys(&store, Kind::DataProduct).await {
            links.set(&key, Some(&spec));
            queue.changed(&key, ms());
        }
        for (key, _) in keys(&store, Kind::DataContract).await {
            queue.changed(&key, ms());
        }
        while !stopping.load(Ordering::Relaxed) {
            beat.store(epoch_ms(), Ordering::Relaxed);
            if let Ok(changes) = store.events(seen, 1000).await {
                for change in changes {
                    seen = change.seq;
                    let key = format!("{}/{}", change.kind, change.name);
                    if change.kind == Kind::DataProduct.as_str() {
                        links.set(&key, change.after.as_ref());
                    } else {
                        let id = change.name.split('@').next().unwrap_or_default();
                        let linked: Vec<String> = links.products(id).cloned().collect();
                        linked.iter().for_each(|p| queue.changed(p, ms()));
                    }
                    queue.changed(&key, ms());
                }
            }
            while !stopping.load(Ordering::Relaxed)
                && let Some(key) = queue.take(ms())
            {
                let Some((kind, name)) = key.split_once('/').and_then(|(k, n)| Some((Kind::parse(k)?, n))) else {
                    queue.forget(&key);
                    continue;
                };
                let outcome = match store.acquire_lease(kind, name, &owner, epoch_ms() as i64, LEASE_MS).await {
                    Ok(Some(token)) => {
                        let result = reconcile(&store, kind, name, (&owner, token)).await.map_err(|_| ());
                        let _ = store.release_lease(kind, name, &owner, token).await;
                        result
                    }
                    // Another replica is on it: look again shortly, level-triggered.
                    Ok(None) => Ok(Action::RequeueAfter(BUSY_RETRY_MS)),
                    Err(_) => Err(()),
                };
                queue.done(&key, ms(), outcome);
            }
            let wait = queue.next_due().map_or(POLL_MS, |due| due.saturating_sub(ms()).min(POLL_MS));
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    });
    Reconcilers { task, heartbeat, stop }
}

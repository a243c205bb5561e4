//! Runs the reconcilers inside `meshplane serve`: every stored resource once at start, then
//! each resource whose change record appears in the change feed, on the controller's queue
//! (exclusive per resource, backoff on a transient error, periodic resync), several at a
//! time. A contract's change, and a change of its status, also requeues the products whose
//! ports name it.
//!
//! The change feed is read by a task of its own ([`read_feed`]): when this process commits to
//! the store (the store's feed signal), and every `feed_poll_ms` for what other replicas
//! wrote; it hands the loop what it read, so that the loop never waits on a read of the feed
//! while reconciles could be handed out. The loop wakes when changes arrive, when a reconcile
//! or test run ends, and when the queue's next object is due on the injected clock. Nothing
//! else waits on a timer: with a clock that stands still, a product still becomes Ready as
//! soon as its contract does.
//!
//! Replicas on one PostgreSQL split the work with the store as the only coordinator:
//! - each replica renews its membership row; a resource belongs to the live replica whose
//!   place in the sorted membership equals the resource's hash modulo their number, so every
//!   replica takes its own share, and when a replica dies (its row expires) or leaves, the
//!   others requeue the share that became theirs;
//! - whatever the membership says, a reconcile runs only under the resource's lease (owner,
//!   expiry on the database's clock, fencing token), renewed while it runs (however long a
//!   block takes): never two reconciles of one resource at once; a replica that stalled past
//!   its lease stops, and cannot write over its successor — neither in the store nor in a
//!   block, which is handed the token.
//!
//! The same loop starts the scheduled contract tests ([`crate::schedules`]) of the contracts
//! in its share, each under its job's lease.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meshplane_core::block::Blocks;
use meshplane_core::controller::{Action, Clock, Failure, Queue, SystemClock, Timing};
use meshplane_core::governance;
use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::{Kind, ObjectRef, port_links};
use meshplane_core::store::grants::{AccessQuery, AccessState};
use meshplane_core::store::{Change, Store};
use serde_json::Value as Any;

use crate::metrics::{Metrics, Reconciled};
use crate::schedules::{self, Job, Jobs};
use tokio::sync::{Notify, mpsc};
use tokio::task::{Id, JoinError, JoinSet};
use tracing::Instrument;

/// When another replica holds a resource's lease, look again after this long.
const BUSY_RETRY_MS: u64 = 1_000;

/// How often the loop tells the metrics how long its queue is, at most.
const QUEUE_PUBLISH_MS: u64 = 1_000;

/// How the reconcile loop runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub timing: Timing,
    /// Reconciles in flight at once.
    pub workers: usize,
    /// How long a reconcile may hold its resource's lease, in milliseconds.
    pub lease_ms: i64,
    /// How long a replica's membership lasts without renewal, in milliseconds: a dead
    /// replica's share is taken over after this long.
    pub membership_ms: i64,
    /// Scheduled contract tests run at once by this replica.
    pub test_workers: usize,
    /// The controller's clock: when queued objects and scheduled tests are due, and when
    /// the membership is renewed (leases themselves expire on the database's clock).
    pub clock: Arc<dyn Clock>,
    /// How often the change feed is read for what other replicas wrote, in milliseconds
    /// (this process's own commits wake the loop at once).
    pub feed_poll_ms: u64,
    /// How contract test runs are sandboxed (scheduled and on demand alike).
    pub tests: Arc<crate::checks::Sandbox>,
    /// Where the server counts what it does (reconciles, requests, test runs).
    pub metrics: Arc<Metrics>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timing: Timing::default(),
            workers: 8,
            lease_ms: 30_000,
            membership_ms: 10_000,
            test_workers: 2,
            clock: Arc::new(SystemClock),
            feed_poll_ms: 200,
            tests: Arc::default(),
            metrics: Arc::default(),
        }
    }
}

/// Which products name each contract id in their ports, so a contract's change requeues only
/// the products that link to it.
#[derive(Default)]
struct Links {
    by_contract: HashMap<String, BTreeSet<ObjectRef>>,
    of_product: HashMap<ObjectRef, Vec<String>>,
}

impl Links {
    fn set(&mut self, product: &ObjectRef, spec: Option<&Any>) {
        for id in self.of_product.remove(product).unwrap_or_default() {
            if let Some(products) = self.by_contract.get_mut(&id) {
                products.remove(product);
            }
        }
        let ids: Vec<String> = spec.map(port_links).unwrap_or_default().into_iter().map(|l| l.contract_id).collect();
        for id in &ids {
            self.by_contract.entry(id.clone()).or_default().insert(product.clone());
        }
        self.of_product.insert(product.clone(), ids);
    }

    fn products(&self, contract_id: &str) -> impl Iterator<Item = &ObjectRef> {
        self.by_contract.get(contract_id).into_iter().flatten()
    }
}

/// A stable hash of a resource key (FNV-1a of `Kind/name`), the same in every replica and
/// release.
fn shard(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// This replica's place among the live ones: (index, count).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share(pub(crate) u64, pub(crate) u64);

impl Share {
    fn of(members: &[String], me: &str) -> Share {
        let index = members.iter().position(|m| m == me).unwrap_or(0);
        Share(index as u64, members.len().max(1) as u64)
    }

    pub(crate) fn holds(self, key: &ObjectRef) -> bool {
        shard(&key.to_string()) % self.1 == self.0
    }
}

/// The running reconcile loop.
pub struct Reconcilers {
    pub task: tokio::task::JoinHandle<()>,
    /// When the loop last went round, in milliseconds since the Unix epoch (`/readyz`).
    pub heartbeat: Arc<AtomicU64>,
    stop: Arc<(AtomicBool, Notify)>,
}

impl Reconcilers {
    /// Stops taking work, lets the reconciles in flight finish (their leases are released),
    /// leaves the membership so the other replicas take this one's share at once, and waits
    /// for the loop to end.
    pub async fn stop(self) {
        self.stop.0.store(true, Ordering::Relaxed);
        self.stop.1.notify_one();
        let _ = self.task.await;
    }
}

pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A name for this replica in the store's leases and membership: unique per process and loop.
pub fn replica_name() -> String {
    static LOOPS: AtomicU64 = AtomicU64::new(0);
    format!("meshplane-{}-{}-{}", std::process::id(), epoch_ms(), LOOPS.fetch_add(1, Ordering::Relaxed))
}

/// The loop's state: the queue of every known resource and what decides which are ours.
struct Loop {
    store: Store,
    blocks: Blocks,
    settings: Settings,
    owner: Arc<str>,
    queue: Queue<ObjectRef>,
    links: Links,
    /// Every resource known (from the start listing and the change feed).
    known: BTreeSet<ObjectRef>,
    /// Their domains, as recorded or as their documents say: which a policy's change touches.
    domains: HashMap<ObjectRef, String>,
    share: Share,
    /// The reconciles in flight, and the resource of each task.
    running: JoinSet<Result<Action, Failure>>,
    running_keys: HashMap<Id, ObjectRef>,
    /// Scheduled contract tests: what is due when, and the runs in flight.
    jobs: Jobs,
    tests: JoinSet<Option<i64>>,
    test_jobs: HashMap<Id, Job>,
}

impl Loop {
    /// Now on the controller's clock, as the queue counts time.
    fn ms(&self) -> u64 {
        self.settings.clock.now_ms().max(0) as u64
    }

    /// What a page of change records means for the queue.
    async fn take_all(&mut self, changes: &[Change]) {
        for change in changes {
            self.take(change).await;
        }
    }

    /// What one change record means for the queue.
    async fn take(&mut self, change: &Change) {
        let now = self.ms();
        let Some(kind) = Kind::parse(&change.kind) else {
            // Not a resource: an access decision changes what its contract's blocks must
            // enforce, and so may a principal's database role; tokens need no reconcile.
            for contract in self.access_contracts(change).await {
                self.queue.changed(&ObjectRef::new(Kind::DataContract, contract), now);
            }
            return;
        };
        let key = ObjectRef::new(kind, change.name.clone());
        match change.action.as_str() {
            // Observations, not changes of the document: a contract's new status may let the
            // products linking to it become Ready; the resource itself has nothing new to do.
            "status" => {
                if kind == Kind::DataContract {
                    self.requeue_linked(&key, now);
                }
                return;
            }
            // A test run changes the contract's TestsPassing (and so, through its status, its
            // products'): the contract is reconciled again.
            "tested" => {
                self.queue.changed(&key, now);
                return;
            }
            _ => {}
        }
        if kind.governs() {
            // A policy's or an exemption's change may change the compliance of what it covers.
            let (before, after) = (change.before.as_ref(), change.after.as_ref());
            let governed: Vec<ObjectRef> = self
                .known
                .iter()
                .filter(|k| !k.kind.governs())
                .filter(|k| governance::touches(kind, before, after, k, self.domains.get(*k).map(String::as_str)))
                .cloned()
                .collect();
            governed.iter().for_each(|k| self.queue.changed(k, now));
        } else if kind == Kind::DataProduct {
            self.links.set(&key, change.after.as_ref());
        } else {
            self.jobs.set(&change.name, change.after.as_ref(), schedules::applied_ms(&change.at));
            self.requeue_linked(&key, now);
        }
        if change.action == "deleted" {
            // Gone and cleaned up: nothing left to reconcile or resync.
            self.known.remove(&key);
            self.domains.remove(&key);
            self.queue.forget(&key);
        } else {
            if let Some(domain) = change.after.as_ref().and_then(|a| a.get("domain")).and_then(Any::as_str) {
                self.domains.insert(key.clone(), domain.to_string());
            }
            self.known.insert(key.clone());
            self.queue.changed(&key, now);
        }
    }

    /// Requeues the products whose ports name `contract`'s id.
    fn requeue_linked(&mut self, contract: &ObjectRef, now: u64) {
        let linked: Vec<ObjectRef> = self.links.products(contract.id()).cloned().collect();
        linked.iter().for_each(|p| self.queue.changed(p, now));
    }

    /// The contracts whose grants a change of access touches: an access request's, or those a
    /// principal holds active grants on.
    async fn access_contracts(&self, change: &Change) -> Vec<String> {
        match change.kind.as_str() {
            "AccessRequest" => {
                let contract = change.after.as_ref().and_then(|a| a.get("contract")).and_then(Any::as_str);
                contract.map(str::to_string).into_iter().collect()
            }
            "Principal" => {
                let query = AccessQuery {
                    consumer: Some(change.name.clone()),
                    state: Some(AccessState::Active),
                    ..AccessQuery::default()
                };
                let grants = self.store.access_requests(&query).await.unwrap_or_default();
                grants.into_iter().map(|g| g.contract).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Renews the membership; when this replica's share changed, requeues all it now holds.
    async fn renew(&mut self) {
        let Ok(members) = self.store.heartbeat(&self.owner, self.settings.membership_ms).await else {
            return;
        };
        let share = Share::of(&members, &self.owner);
        self.settings.metrics.share(share.0, share.1);
        if share != self.share {
            tracing::info!(place = share.0, replicas = share.1, "this replica's share of the work changed");
            self.share = share;
            let now = self.ms();
            for key in self.known.iter().filter(|k| share.holds(k)) {
                self.queue.changed(key, now);
            }
        }
    }

    /// Starts reconciles of the due resources of this replica's share, up to the worker limit.
    fn dispatch(&mut self) {
        while self.running.len() < self.settings.workers
            && let Some(key) = self.queue.take(self.ms())
        {
            if !self.share.holds(&key) {
                // Another replica's: it resyncs it; this one looks again at its own resync.
                self.queue.done(&key, self.ms(), Ok(Action::AwaitChange));
                continue;
            }
            let (store, blocks, owner, settings) =
                (self.store.clone(), self.blocks.clone(), Arc::clone(&self.owner), self.settings.clone());
            let object = key.clone();
            let task = self
                .running
                .spawn(async move { reconcile_under_lease(&store, &blocks, &object, &owner, settings).await });
            self.running_keys.insert(task.id(), key);
        }
        let free = self.settings.test_workers.saturating_sub(self.tests.len());
        let share = self.share;
        let mine = |contract: &str| share.holds(&ObjectRef::new(Kind::DataContract, contract));
        let due = self.jobs.take_due(self.settings.clock.now_ms(), free, mine);
        for job in due {
            let (store, owner, settings) = (self.store.clone(), Arc::clone(&self.owner), self.settings.clone());
            let blocks = self.blocks.clone();
            let run = job.clone();
            let task = self.tests.spawn(async move { schedules::run(&store, &blocks, &run, &owner, &settings).await });
            self.test_jobs.insert(task.id(), job);
        }
    }

    /// Tells the metrics how long the queue is: the due resources of this replica's share
    /// (another replica's are only passed over here).
    fn publish_queue(&self) {
        let now = self.ms();
        let share = self.share;
        let (due, oldest) = self.queue.backlog(now, |key| share.holds(key));
        let waited = Duration::from_millis(oldest.map_or(0, |at| now.saturating_sub(at)));
        self.settings.metrics.queue(due, waited, self.running.len());
    }

    /// A reconcile ended: schedules what comes after it (a task that panicked still frees
    /// its key, with a transient error's backoff).
    fn reconciled(&mut self, joined: Result<(Id, Result<Action, Failure>), JoinError>) {
        let (id, outcome) = joined.unwrap_or_else(|panicked| {
            if let Some(key) = self.running_keys.get(&panicked.id()) {
                self.settings.metrics.panicked(key.kind);
            }
            (panicked.id(), Err(Failure::Transient))
        });
        if let Some(key) = self.running_keys.remove(&id) {
            self.queue.done(&key, self.ms(), outcome);
            if !self.known.contains(&key) {
                self.queue.forget(&key);
            }
        }
    }

    /// A scheduled test run ended: its job is next due when the run says.
    fn tested(&mut self, joined: Result<(Id, Option<i64>), JoinError>) {
        let retry = Some(self.settings.clock.now_ms() + 60_000);
        let (id, next) = joined.unwrap_or_else(|panicked| (panicked.id(), retry));
        if let Some(job) = self.test_jobs.remove(&id) {
            self.jobs.done(&job, next);
        }
    }
}

/// Reads the change feed after `seen` in a task of its own and sends each page read to the
/// loop: whenever this process committed a change record, and every `poll_ms` on `clock` for
/// what other replicas wrote. It ends when the loop no longer listens.
fn read_feed(
    store: Store,
    mut seen: i64,
    clock: Arc<dyn Clock>,
    poll_ms: u64,
    pages: mpsc::UnboundedSender<Vec<Change>>,
) -> tokio::task::JoinHandle<()> {
    const PAGE: i64 = 1000;
    tokio::spawn(async move {
        let mut feed = store.watch_feed();
        loop {
            feed.mark_unchanged();
            while let Ok(changes) = store.events(seen, PAGE).await {
                let Some(last) = changes.last().map(|c| c.seq) else { break };
                seen = last;
                let full = changes.len() as i64 == PAGE;
                if pages.send(changes).is_err() {
                    return;
                }
                // A page that is not full was the last: no read to learn that nothing follows.
                if !full {
                    break;
                }
            }
            let poll_at = clock.now_ms().saturating_add(poll_ms.min(i64::MAX as u64) as i64);
            tokio::select! {
                Ok(()) = feed.changed() => {}
                () = clock.sleep_until(poll_at) => {}
                () = pages.closed() => return,
            }
        }
    })
}

/// Runs `work` while renewing the lease `fence` holds on `scope/name` every third of its time;
/// when the lease is lost (another replica took it: this one stalled; a lease taken back
/// under a new token counts as lost too), gives up with `None`, dropping
/// `work` and whatever it had in flight (a block's transaction rolls back; a late write is
/// refused by its fencing token anyway).
pub(crate) async fn renewing<T>(
    store: &Store,
    scope: &str,
    name: &str,
    fence: (&str, i64),
    lease_ms: i64,
    work: impl Future<Output = T>,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let every = Duration::from_millis((lease_ms / 3).max(1) as u64);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            () = tokio::time::sleep(every) => {
                if !matches!(store.renew_lease(scope, name, fence, lease_ms).await, Ok(true)) {
                    return None;
                }
            }
        }
    }
}

/// One reconcile, under the resource's lease, renewed while it runs, in a span naming the
/// resource (and its generation, once read). The error policy classes its error.
async fn reconcile_under_lease(
    store: &Store,
    blocks: &Blocks,
    object: &ObjectRef,
    owner: &str,
    settings: Settings,
) -> Result<Action, Failure> {
    let (kind, name) = (object.kind, object.name.as_str());
    let span = tracing::info_span!("reconcile", object = %object, generation = tracing::field::Empty);
    let started = std::time::Instant::now();
    let counted = |outcome: Reconciled| settings.metrics.reconciled(kind, outcome, started.elapsed());
    let outcome = async {
        match store.acquire_lease(kind.as_str(), name, owner, settings.lease_ms).await {
            Ok(Some(token)) => {
                let work = reconcile(store, blocks, kind, name, (owner, token));
                let done = renewing(store, kind.as_str(), name, (owner, token), settings.lease_ms, work).await;
                // A reconcile that ended well gave the lease back itself.
                if !matches!(done, Some(Ok(_))) {
                    let _ = store.release_lease(kind.as_str(), name, owner, token).await;
                }
                match done {
                    Some(Ok(action)) => {
                        counted(Reconciled::Ok);
                        Ok(action)
                    }
                    Some(Err(error)) => {
                        let failure = Failure::of(&error);
                        tracing::warn!(%error, ?failure, "reconcile failed");
                        counted(match failure {
                            Failure::Transient => Reconciled::Transient,
                            Failure::Permanent => Reconciled::Permanent,
                        });
                        Err(failure)
                    }
                    None => {
                        tracing::warn!("lease lost while reconciling: another replica took over");
                        counted(Reconciled::LeaseLost);
                        Err(Failure::Transient)
                    }
                }
            }
            // Another replica is on it: look again shortly, level-triggered.
            Ok(None) => {
                counted(Reconciled::Busy);
                Ok(Action::RequeueAfter(BUSY_RETRY_MS))
            }
            Err(error) => {
                tracing::warn!(%error, "the lease could not be taken");
                counted(Reconciled::Transient);
                Err(Failure::Transient)
            }
        }
    };
    outcome.instrument(span).await
}

/// Starts the reconcile loop under the replica name `owner`; it runs until stopped.
pub fn spawn(store: Store, blocks: Blocks, settings: Settings, owner: String) -> Reconcilers {
    let heartbeat = Arc::new(AtomicU64::new(0));
    let beat = Arc::clone(&heartbeat);
    let stop = Arc::new((AtomicBool::new(false), Notify::new()));
    let stopping = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let renew_every = (settings.membership_ms / 3).max(1) as u64;
        let clock = Arc::clone(&settings.clock);
        let mut state = Loop {
            store: store.clone(),
            blocks,
            settings: settings.clone(),
            owner: owner.into(),
            queue: Queue::new(settings.timing),
            links: Links::default(),
            known: BTreeSet::new(),
            domains: HashMap::new(),
            share: Share(0, 1),
            running: JoinSet::new(),
            running_keys: HashMap::new(),
            jobs: Jobs::default(),
            tests: JoinSet::new(),
            test_jobs: HashMap::new(),
        };
        // Skip the history: the start listing below is the state as it is now, and every
        // change up to this position is in it.
        let seen = store.feed_position().await.unwrap_or(0);
        // Policies first, then contracts: products wait for their output ports' contracts.
        let now = state.ms();
        for kind in Kind::ALL {
            for record in store.list_all(kind).await.unwrap_or_default() {
                let key = ObjectRef::new(kind, record.name.clone());
                if kind == Kind::DataProduct {
                    state.links.set(&key, Some(&record.spec));
                } else if kind == Kind::DataContract {
                    state.jobs.set(&record.name, Some(&record.spec), schedules::applied_ms(&record.updated_at));
                }
                state.queue.changed(&key, now);
                state.domains.insert(key.clone(), record.domain.clone());
                state.known.insert(key);
            }
        }
        let (pages_in, mut pages) = mpsc::unbounded_channel();
        let reader = read_feed(store.clone(), seen, Arc::clone(&clock), settings.feed_poll_ms, pages_in);
        let (mut renew_at, mut publish_at) = (0, 0);
        while !stopping.0.load(Ordering::Relaxed) {
            beat.store(epoch_ms(), Ordering::Relaxed);
            let now = state.ms();
            if now >= renew_at {
                renew_at = now + renew_every;
                state.renew().await;
            }
            // Whatever the reader has sent meanwhile, before handing out work.
            while let Ok(changes) = pages.try_recv() {
                state.take_all(&changes).await;
            }
            state.dispatch();
            if now >= publish_at {
                publish_at = now + QUEUE_PUBLISH_MS;
                state.publish_queue();
            }
            let wake = state.queue.next_due().unwrap_or(u64::MAX).min(renew_at).min(publish_at);
            tokio::select! {
                Some(joined) = state.running.join_next_with_id(), if !state.running.is_empty() => state.reconciled(joined),
                Some(joined) = state.tests.join_next_with_id(), if !state.tests.is_empty() => state.tested(joined),
                Some(changes) = pages.recv() => state.take_all(&changes).await,
                () = clock.sleep_until(wake.min(i64::MAX as u64) as i64) => {}
                () = stopping.1.notified() => {}
            }
        }
        reader.abort();
        // Test runs in flight are handed back: their firings stay due, and their leases
        // expire for another replica to run them.
        state.tests.shutdown().await;
        while let Some(joined) = state.running.join_next_with_id().await {
            state.reconciled(joined);
        }
        let _ = store.leave(&state.owner).await;
    });
    Reconcilers { task, heartbeat, stop }
}

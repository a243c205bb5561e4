//! Delivers the change feed to the platform's notification sinks, at least once and in feed
//! order. Each sink is served by one task per replica; only the replica holding the sink's
//! lease delivers, so replicas on one store deliver each event once between them (twice only
//! when a lease changes hands mid-delivery, and then with the same id).
//!
//! A round reads the changes after the sink's cursor, delivers those the sink's filter takes,
//! one after the other, and moves the cursor (at most every [`SAVE_EVERY_MS`] and at the end
//! of a page; a crash in between repeats a few deliveries, with their ids, and loses none). A
//! delivery that fails transiently is tried again with backoff and jitter until the sink's
//! retry period has passed; the events behind it wait, so that a subject's events arrive in
//! order. An event given up on (or refused outright) becomes a dead letter, and the cursor
//! moves past it in the same transaction. Dead letters an admin asked to send again are sent
//! at the start of a round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshplane_core::block::{BlockError, BlockResult, Blocks};
use meshplane_core::notify::Sink;
use meshplane_core::store::sinks::SINK;
use meshplane_core::store::{Change, Store, epoch_ms, now_ms};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::metrics::{Metrics, Notified};
use crate::reconciler::renewing;
use serde_json::Value as Any;

/// Changes read from the feed at a time.
const PAGE: i64 = 500;

/// The cursor is saved at least this often while a page is delivered.
const SAVE_EVERY_MS: u128 = 200;

/// How often a replica that does not hold a sink's lease asks for it again.
const STANDBY_MS: u64 = 1_000;

/// How the delivery tasks run.
#[derive(Clone)]
pub struct Settings {
    /// The replica's name (the sinks' leases are held under it).
    pub owner: String,
    /// How long a sink's lease lasts without renewal: a dead replica's sinks are taken over
    /// after this long.
    pub lease_ms: i64,
    /// How often the feed is read for what other replicas wrote (this process's own commits
    /// wake the tasks at once).
    pub poll_ms: u64,
    pub metrics: Arc<Metrics>,
}

/// The delivery tasks of every sink and alerter; [`Deliveries::stop`] ends them.
pub struct Deliveries {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Starts a delivery task for each sink, and an alerting task for each alerter
/// ([`crate::alerts`]).
pub fn spawn(store: Store, blocks: &Blocks, settings: Settings) -> Deliveries {
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for sink in blocks.sinks.iter().cloned() {
        let span = tracing::info_span!("sink", sink = %sink.name());
        tasks.spawn(deliver_forever(store.clone(), sink, settings.clone(), stopping.clone()).instrument(span));
    }
    for alerter in blocks.alerters.iter().cloned() {
        let span = tracing::info_span!("alerter", alerter = %alerter.name());
        let task = crate::alerts::alert_forever(store.clone(), alerter, settings.clone(), stopping.clone());
        tasks.spawn(task.instrument(span));
    }
    Deliveries { stop, tasks }
}

impl Deliveries {
    /// Stops every task: a delivery in flight or waiting to be retried is dropped (its event
    /// is sent again by whoever holds the lease next), and the leases are given back.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Why a round ended early.
enum Halt {
    /// The server is stopping.
    Stopping,
    Store(meshplane_core::Error),
}

impl From<meshplane_core::Error> for Halt {
    fn from(e: meshplane_core::Error) -> Self {
        Halt::Store(e)
    }
}

/// The sink's lease as this replica holds it: its token, when it was last taken, and the
/// sink's cursor (only the holder moves it, so the copy here is the store's, or ahead of it
/// by what is delivered and not saved yet).
struct Held {
    token: i64,
    taken: Instant,
    cursor: i64,
}

/// Takes or renews the sink's lease when a third of it has passed since it was last taken
/// (rounds renew it themselves while they run); reads the cursor when the lease is new.
async fn hold(
    store: &Store,
    name: &str,
    settings: &Settings,
    held: &mut Option<Held>,
) -> Result<(), meshplane_core::Error> {
    let renew_every = Duration::from_millis((settings.lease_ms / 3).max(1) as u64);
    if held.as_ref().is_some_and(|h| h.taken.elapsed() < renew_every) {
        return Ok(());
    }
    let Some(token) = store.acquire_lease(SINK, name, &settings.owner, settings.lease_ms).await? else {
        *held = None;
        return Ok(());
    };
    let cursor = match held.take() {
        Some(h) if h.token == token => h.cursor,
        _ => {
            tracing::info!(token, "delivering to this sink");
            store.sink_cursor(name, store.feed_position().await?).await?
        }
    };
    *held = Some(Held { token, taken: Instant::now(), cursor });
    Ok(())
}

/// One sink's task: holds the sink's lease when it can and delivers, until stopped. A round
/// runs with the lease renewed every third of its time (however long a receiver takes, or a
/// retry waits), and is dropped when the lease is lost.
async fn deliver_forever(store: Store, sink: Arc<dyn Sink>, settings: Settings, mut stopping: watch::Receiver<bool>) {
    let name = sink.name().to_string();
    let mut feed = store.watch_feed();
    let mut held: Option<Held> = None;
    while !*stopping.borrow() {
        if let Err(error) = hold(&store, &name, &settings, &mut held).await {
            tracing::warn!(%error, "the sink's lease could not be taken");
        }
        let wait_ms = match held.as_mut() {
            None => STANDBY_MS,
            Some(lease) => {
                feed.mark_unchanged();
                let fence = (settings.owner.as_str(), lease.token);
                let sinking = Sinking { store: &store, sink: &*sink, settings: &settings, token: lease.token };
                let round = sinking.round(&mut lease.cursor, &mut stopping);
                match renewing(&store, SINK, &name, fence, settings.lease_ms, round).await {
                    Some(Ok(true)) => continue,
                    Some(Ok(false)) => settings.poll_ms,
                    Some(Err(Halt::Stopping)) => break,
                    Some(Err(Halt::Store(error))) => {
                        tracing::warn!(%error, "the store failed while delivering; trying again");
                        STANDBY_MS
                    }
                    None => {
                        tracing::warn!("the sink's lease was lost: another replica delivers now");
                        held = None;
                        STANDBY_MS
                    }
                }
            }
        };
        tokio::select! {
            Ok(()) = feed.changed(), if held.is_some() => {}
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = stopping.changed() => {}
        }
    }
    if let Some(lease) = held {
        let _ = store.release_lease(SINK, &name, &settings.owner, lease.token).await;
    }
}

/// A round of one sink under its lease's `token`.
struct Sinking<'a> {
    store: &'a Store,
    sink: &'a dyn Sink,
    settings: &'a Settings,
    token: i64,
}

/// How delivering one event ended.
enum Outcome {
    Delivered,
    /// Given up on, after this many attempts, for this reason.
    GaveUp(i64, String),
}

impl Sinking<'_> {
    fn fence(&self) -> (&str, i64) {
        (self.settings.owner.as_str(), self.token)
    }

    /// One call to the sink, dropped when the server stops.
    async fn call(&self, event: &Any, stopping: &mut watch::Receiver<bool>) -> Result<BlockResult<()>, Halt> {
        tokio::select! {
            done = self.sink.deliver(event) => Ok(done),
            _ = stopping.changed() => Err(Halt::Stopping),
        }
    }

    /// Sends the dead letters asked for again, then delivers a page of the feed after
    /// `cursor`, moving it; `true` when the page was full (more may follow at once).
    async fn round(&self, cursor: &mut i64, stopping: &mut watch::Receiver<bool>) -> Result<bool, Halt> {
        let name = self.sink.name();
        for (letter, change) in self.store.redeliveries(name).await? {
            let event = change.cloud_event();
            let error = match self.call(&event, stopping).await? {
                Ok(()) => {
                    self.settings.metrics.notified(name, Notified::Redelivered, None);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            self.store.redelivered(letter, error.as_deref(), self.fence(), name).await?;
        }
        let page = self.store.events(*cursor, PAGE).await?;
        let Some(last) = page.last().map(|c| c.seq) else { return Ok(false) };
        let mut saved = Instant::now();
        for change in &page {
            if *stopping.borrow() {
                return Err(Halt::Stopping);
            }
            if self.sink.filter().takes(change)
                && let Outcome::GaveUp(attempts, error) = self.deliver(change, *cursor, stopping).await?
            {
                tracing::warn!(seq = change.seq, attempts, %error, "event given up on: kept as a dead letter");
                self.settings.metrics.notified(name, Notified::Failed, None);
                self.store.dead_letter(name, change.seq, attempts, &error, self.fence()).await?;
                saved = Instant::now();
            }
            *cursor = change.seq;
            if saved.elapsed().as_millis() >= SAVE_EVERY_MS {
                self.store.advance_sink(name, *cursor, self.fence()).await?;
                saved = Instant::now();
            }
        }
        self.store.advance_sink(name, last, self.fence()).await?;
        Ok(page.len() as i64 == PAGE)
    }

    /// Delivers one change's event, trying again while it fails transiently and the retry
    /// period lasts; before the first wait, saves the cursor at `done` (the change before).
    async fn deliver(&self, change: &Change, done: i64, stopping: &mut watch::Receiver<bool>) -> Result<Outcome, Halt> {
        let (name, retry) = (self.sink.name(), self.sink.retry());
        let event = change.cloud_event();
        let first = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let error = match self.call(&event, stopping).await? {
                Ok(()) => {
                    let lag =
                        epoch_ms(&change.at).map(|at| Duration::from_millis(now_ms().saturating_sub(at).max(0) as u64));
                    self.settings.metrics.notified(name, Notified::Sent, lag);
                    return Ok(Outcome::Delivered);
                }
                Err(BlockError::Transient(error)) => error,
                Err(refused) => return Ok(Outcome::GaveUp(i64::from(attempts), refused.to_string())),
            };
            let wait = retry.backoff(attempts, fastrand::f64());
            if first.elapsed() + wait > Duration::from_secs(retry.for_seconds) {
                return Ok(Outcome::GaveUp(i64::from(attempts), error));
            }
            self.settings.metrics.notified(name, Notified::Retried, None);
            if attempts == 1 {
                tracing::warn!(seq = change.seq, %error, "delivery failed; trying again with backoff");
                self.store.advance_sink(name, done, self.fence()).await?;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => return Err(Halt::Stopping),
            }
        }
    }
}

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

use meshplane_core::block::{BlockError, BlockResult};
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

/// The delivery tasks of every sink; [`Deliveries::stop`] ends them.
pub struct Deliveries {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Starts a delivery task for each sink.
pub fn spawn(store: Store, sinks: Vec<Arc<dyn Sink>>, settings: Settings) -> Deliveries {
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for sink in sinks {
        let span = tracing::info_span!("sink", sink = %sink.name());
        tasks.spawn(deliver_forever(store.clone(), sink, settings.clone(), stopping.clone()).instrument(span));
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
    /// Another replica holds the sink's lease now.
    LeaseLost,
    Store(meshplane_core::Error),
}

impl From<meshplane_core::Error> for Halt {
    fn from(e: meshplane_core::Error) -> Self {
        Halt::Store(e)
    }
}

/// One sink's task: holds the sink's lease when it can and delivers, until stopped.
async fn deliver_forever(store: Store, sink: Arc<dyn Sink>, settings: Settings, mut stopping: watch::Receiver<bool>) {
    let name = sink.name().to_string();
    let mut feed = store.watch_feed();
    let mut held: Option<i64> = None;
    while !*stopping.borrow() {
        let wait_ms = match store.acquire_lease(SINK, &name, &settings.owner, settings.lease_ms).await {
            Ok(Some(token)) => {
                if held != Some(token) {
                    tracing::info!(token, "delivering to this sink");
                }
                held = Some(token);
                feed.mark_unchanged();
                let sinking = Sinking { store: &store, sink: &*sink, settings: &settings, token };
                match sinking.round(&mut stopping).await {
                    Ok(true) => continue,
                    Ok(false) => settings.poll_ms,
                    Err(Halt::Stopping) => break,
                    Err(Halt::LeaseLost) => {
                        tracing::warn!("the sink's lease was lost: another replica delivers now");
                        held = None;
                        STANDBY_MS
                    }
                    Err(Halt::Store(error)) => {
                        tracing::warn!(%error, "the store failed while delivering; trying again");
                        STANDBY_MS
                    }
                }
            }
            Ok(None) => {
                held = None;
                STANDBY_MS
            }
            Err(error) => {
                tracing::warn!(%error, "the sink's lease could not be taken");
                STANDBY_MS
            }
        };
        tokio::select! {
            Ok(()) = feed.changed(), if held.is_some() => {}
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = stopping.changed() => {}
        }
    }
    if let Some(token) = held {
        let _ = store.release_lease(SINK, &name, &settings.owner, token).await;
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

    /// One call to the sink, with the lease renewed while it runs (a slow receiver must not
    /// let another replica start on the events behind it) and dropped when the server stops.
    async fn call(&self, event: &Any, stopping: &mut watch::Receiver<bool>) -> Result<BlockResult<()>, Halt> {
        let work = self.sink.deliver(event);
        let renewed = renewing(self.store, SINK, self.sink.name(), self.fence(), self.settings.lease_ms, work);
        tokio::select! {
            done = renewed => done.ok_or(Halt::LeaseLost),
            _ = stopping.changed() => Err(Halt::Stopping),
        }
    }

    /// Sends the dead letters asked for again, then delivers a page of the feed; `true` when
    /// the page was full (more may follow at once).
    async fn round(&self, stopping: &mut watch::Receiver<bool>) -> Result<bool, Halt> {
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
        let start = self.store.feed_position().await?;
        let mut cursor = self.store.sink_cursor(name, start).await?;
        let page = self.store.events(cursor, PAGE).await?;
        let Some(last) = page.last().map(|c| c.seq) else { return Ok(false) };
        let (mut saved, mut renewed) = (Instant::now(), Instant::now());
        let renew_every = Duration::from_millis((self.settings.lease_ms / 3).max(1) as u64);
        for change in &page {
            if *stopping.borrow() {
                return Err(Halt::Stopping);
            }
            if renewed.elapsed() >= renew_every {
                if !self.store.renew_lease(SINK, name, self.fence(), self.settings.lease_ms).await? {
                    return Err(Halt::LeaseLost);
                }
                renewed = Instant::now();
            }
            if self.sink.filter().takes(change)
                && let Outcome::GaveUp(attempts, error) = self.deliver(change, cursor, stopping).await?
            {
                tracing::warn!(seq = change.seq, attempts, %error, "event given up on: kept as a dead letter");
                self.settings.metrics.notified(name, Notified::Failed, None);
                self.store.dead_letter(name, change.seq, attempts, &error, self.fence()).await?;
                saved = Instant::now();
            }
            cursor = change.seq;
            if saved.elapsed().as_millis() >= SAVE_EVERY_MS {
                self.store.advance_sink(name, cursor, self.fence()).await?;
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
            let waited =
                renewing(self.store, SINK, name, self.fence(), self.settings.lease_ms, tokio::time::sleep(wait));
            tokio::select! {
                done = waited => done.ok_or(Halt::LeaseLost)?,
                _ = stopping.changed() => return Err(Halt::Stopping),
            }
        }
    }
}

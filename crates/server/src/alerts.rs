//! Keeps each alerter (Alertmanager) told of what fails now. One replica at a time serves an
//! alerter, under its lease. A round reads the failing checks' standing from the store, posts
//! every alert that fires, and posts the end of each alert that fired in the last round and
//! fires no more. A round runs when the feed moved (a test run, a contract changed or went) and
//! at least every [`Alerter::repost_every`] (so that the receiver does not resolve a firing
//! alert on its own); rounds that the feed sets off are at least [`MIN_ROUND_GAP`] apart.
//!
//! What fired before is known from the last round; a replica that just took the lease (after
//! a restart or a handover) asks the receiver which of the alerter's alerts it holds as
//! firing, so an alert that cleared meanwhile is still ended.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshplane_core::alerting::{self, Alerter, Labels};
use meshplane_core::resource::{Kind, port_links};
use meshplane_core::store::sinks::SINK;
use meshplane_core::store::{Store, now};
use tokio::sync::watch;

use crate::metrics::Notified;
use crate::notify::Settings;
use crate::reconciler::renewing;

/// Rounds that changes set off are at least this far apart (changes come in bursts).
const MIN_ROUND_GAP: Duration = Duration::from_secs(1);

/// How long to wait for a lease held elsewhere, or after a failed round (doubled after each
/// further one).
const STANDBY: Duration = Duration::from_secs(1);

/// One alerter's task: holds the alerter's lease when it can and keeps the receiver told,
/// until stopped; then gives the lease back.
pub(crate) async fn alert_forever(
    store: Store,
    alerter: Arc<dyn Alerter>,
    settings: Settings,
    mut stopping: watch::Receiver<bool>,
) {
    let name = alerter.name().to_string();
    let mut feed = store.watch_feed();
    let renew_every = Duration::from_millis((settings.lease_ms / 3).max(1) as u64);
    let mut lease: Option<(i64, Instant)> = None;
    // What fired at the last round (`None`: ask the receiver), when it was, and at which
    // position of the feed.
    let mut fired: Option<BTreeSet<Labels>> = None;
    let mut last: Option<(Instant, i64)> = None;
    // Rounds that failed in a row: the next waits twice as long, up to a repost period.
    let mut failed: u32 = 0;
    while !*stopping.borrow() {
        if lease.is_none_or(|(_, taken)| taken.elapsed() >= renew_every) {
            match store.acquire_lease(SINK, &name, &settings.owner, settings.lease_ms).await {
                Ok(Some(token)) => {
                    if lease.is_none_or(|(held, _)| held != token) {
                        tracing::info!(token, "alerting through this alerter");
                        (fired, last) = (None, None);
                    }
                    lease = Some((token, Instant::now()));
                }
                Ok(None) => (lease, fired, last) = (None, None, None),
                Err(error) => tracing::warn!(%error, "the alerter's lease could not be taken"),
            }
        }
        let mut wait = Duration::from_millis(settings.poll_ms);
        if let Some((token, _)) = lease {
            match due(&store, &*alerter, last).await {
                Ok(Some(position)) => {
                    let fence = (settings.owner.as_str(), token);
                    let round = round(&store, &*alerter, fired.as_ref());
                    match renewing(&store, SINK, &name, fence, settings.lease_ms, round).await {
                        Some(Ok(firing)) => {
                            settings.metrics.alerting(&name, firing.len());
                            settings.metrics.notified(&name, Notified::Sent, None);
                            fired = Some(firing);
                            last = Some((Instant::now(), position));
                            failed = 0;
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "the alerts could not be posted; trying again");
                            settings.metrics.notified(&name, Notified::Retried, None);
                            wait = STANDBY.saturating_mul(1 << failed.min(16)).min(alerter.repost_every());
                            failed += 1;
                        }
                        None => {
                            tracing::warn!("the alerter's lease was lost: another replica alerts now");
                            (lease, fired, last) = (None, None, None);
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "the store failed while alerting; trying again");
                    wait = STANDBY;
                }
            }
        } else {
            wait = STANDBY;
        }
        tokio::select! {
            Ok(()) = feed.changed(), if lease.is_some() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stopping.changed() => {}
        }
    }
    if let Some((token, _)) = lease {
        let _ = store.release_lease(SINK, &name, &settings.owner, token).await;
    }
}

/// The feed's position when a round is due: the first one, a repost, or the feed moved at
/// least [`MIN_ROUND_GAP`] after the last round.
async fn due(
    store: &Store,
    alerter: &dyn Alerter,
    last: Option<(Instant, i64)>,
) -> Result<Option<i64>, meshplane_core::Error> {
    let position = store.feed_position().await?;
    let due = match last {
        None => true,
        Some((at, seen)) => {
            at.elapsed() >= alerter.repost_every() || (seen != position && at.elapsed() >= MIN_ROUND_GAP)
        }
    };
    Ok(due.then_some(position))
}

/// One round: posts what fires and the end of what `fired` and fires no more (`None`: what the
/// receiver holds as firing); returns what fires.
async fn round(
    store: &Store,
    alerter: &dyn Alerter,
    fired: Option<&BTreeSet<Labels>>,
) -> Result<BTreeSet<Labels>, String> {
    let failing = store.failing_checks().await.map_err(|e| e.to_string())?;
    let offered = if failing.is_empty() { HashMap::new() } else { offered(store).await.map_err(|e| e.to_string())? };
    let firing = alerting::alerts_for(alerter, &failing, |id, domain| {
        offered.get(&(domain.to_string(), id.to_string())).cloned().unwrap_or_default()
    });
    let fired = match fired {
        Some(fired) => fired.clone(),
        None => alerter.firing().await.map_err(|e| e.to_string())?.into_iter().collect(),
    };
    let posted = alerting::round(&firing, &fired, &now());
    if !posted.is_empty() {
        alerter.post(&posted).await.map_err(|e| e.to_string())?;
    }
    Ok(firing.into_iter().map(|a| a.labels).collect())
}

/// The products offering each contract id through an output port, by (domain, contract id):
/// a contract's ports are offered by products of its own domain.
async fn offered(store: &Store) -> Result<HashMap<(String, String), Vec<String>>, meshplane_core::Error> {
    let mut offered: HashMap<(String, String), Vec<String>> = HashMap::new();
    for product in store.list_all(Kind::DataProduct).await? {
        for link in port_links(&product.spec).into_iter().filter(|l| !l.input) {
            let names = offered.entry((product.domain.clone(), link.contract_id)).or_default();
            if !names.contains(&product.name) {
                names.push(product.name.clone());
            }
        }
    }
    Ok(offered)
}

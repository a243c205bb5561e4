//! The server's metrics: one prometheus-client registry per server (no global state), served
//! at `/metrics` in the Prometheus text format (version 0.0.4): on the API port to platform
//! admins, and with `meshplane serve --metrics-listen` on an address of its own without
//! authentication. docs/metrics.md says what every series means.
//!
//! Two sources. What this process counts as it works: requests, reconciles, its queue, its
//! share of the work, test runs. And what the store says when scraped: each contract's and
//! product's readiness and its latest test verdict, the grants in force, the policy
//! evaluations. A resource's series come from the replica whose share holds it, so the
//! replicas together export each exactly once; labels are names the store keeps (kind,
//! domain, name), never a value read from the data.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshplane_core::Error;
use meshplane_core::resource::{Kind, ObjectRef};
use meshplane_core::store::Store;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ApiError;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to a scrape.
pub async fn answer(metrics: &Metrics, store: &Store) -> Result<Response, ApiError> {
    let text = metrics.render(store).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// The metrics alone, for an address of their own (`--metrics-listen`): no authentication,
/// so it belongs on an interface only the scrapers reach.
pub fn app(store: Store, metrics: Arc<Metrics>) -> Router {
    let scrape = move || async move { answer(&metrics, &store).await };
    Router::new().route("/metrics", get(scrape))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reconcile {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfKind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Notification {
    sink: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfSink {
    sink: String,
}

/// What became of one attempt to deliver an event, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notified {
    /// Acknowledged by the sink.
    Sent,
    /// Failed; to be tried again.
    Retried,
    /// Given up on: now a dead letter.
    Failed,
    /// A dead letter sent again and acknowledged.
    Redelivered,
}

impl Notified {
    fn label(self) -> &'static str {
        match self {
            Notified::Sent => "sent",
            Notified::Retried => "retried",
            Notified::Failed => "failed",
            Notified::Redelivered => "redelivered",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Resource {
    kind: &'static str,
    domain: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfContract {
    domain: String,
    contract: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Quality {
    domain: String,
    contract: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Enforcement {
    enforcement: String,
}

/// How a reconcile ended, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    Ok,
    /// Failed; retried with backoff.
    Transient,
    /// Failed; waits for a change.
    Permanent,
    /// Another replica holds the resource's lease.
    Busy,
    /// The lease was lost while it ran.
    LeaseLost,
}

impl Reconciled {
    fn label(self) -> &'static str {
        match self {
            Reconciled::Ok => "ok",
            Reconciled::Transient => "transient",
            Reconciled::Permanent => "permanent",
            Reconciled::Busy => "busy",
            Reconciled::LeaseLost => "lease-lost",
        }
    }
}

/// How a grant in force can be enforced (docs/access.md), each exported even at 0.
const ENFORCEMENTS: [&str; 4] = ["enforced", "advisory", "unsupported", "pending"];

/// The check verdicts of a test report's summary.
const VERDICTS: [&str; 5] = ["pass", "fail", "warn", "error", "skipped"];

/// The per-resource part of the last scrape, and what it was read at.
#[derive(Debug)]
struct Kept {
    position: i64,
    share: (i64, i64),
    text: Arc<String>,
}

/// This server's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Held while a scrape is answered: one at a time.
    kept: tokio::sync::Mutex<Option<Kept>>,
    registry: Registry,
    requests: Histograms<Request>,
    reconciles: Family<Reconcile, Counter>,
    reconcile_seconds: Histograms<OfKind>,
    queue_depth: Gauge,
    queue_oldest_seconds: Gauge<f64, AtomicU64>,
    in_flight: Gauge,
    replicas: Gauge,
    replica_place: Gauge,
    test_runs: Histograms<Outcome>,
    checks: Family<Verdict, Counter>,
    notifications: Family<Notification, Counter>,
    notification_lag: Histograms<OfSink>,
    alerts_firing: Family<OfSink, Gauge>,
}

/// Buckets from 1 ms to about 33 s, each twice the last.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Buckets from 10 ms to about 11 minutes, each twice the last.
fn run_time() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Histograms::<Request>::new_with_constructor(latency as fn() -> Histogram);
        let reconciles = Family::<Reconcile, Counter>::default();
        let reconcile_seconds = Histograms::<OfKind>::new_with_constructor(latency as fn() -> Histogram);
        let test_runs = Histograms::<Outcome>::new_with_constructor(run_time as fn() -> Histogram);
        let checks = Family::<Verdict, Counter>::default();
        let notifications = Family::<Notification, Counter>::default();
        let notification_lag = Histograms::<OfSink>::new_with_constructor(run_time as fn() -> Histogram);
        let alerts_firing = Family::<OfSink, Gauge>::default();
        let (queue_depth, in_flight, replicas, replica_place) =
            (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        let queue_oldest_seconds = Gauge::<f64, AtomicU64>::default();
        let r = &mut registry;
        r.register(
            "meshplane_http_request_duration_seconds",
            "Requests answered, by method, route template and status",
            requests.clone(),
        );
        r.register("meshplane_reconciles", "Reconciles ended, by kind and outcome", reconciles.clone());
        r.register(
            "meshplane_reconcile_duration_seconds",
            "How long reconciles took, by kind",
            reconcile_seconds.clone(),
        );
        r.register("meshplane_queue_depth", "Resources due for a reconcile, waiting for a worker", queue_depth.clone());
        r.register(
            "meshplane_queue_oldest_seconds",
            "How long the longest-waiting due resource has waited",
            queue_oldest_seconds.clone(),
        );
        r.register("meshplane_reconciles_in_flight", "Reconciles running now", in_flight.clone());
        r.register("meshplane_replicas", "Live replicas sharing the work, as this one sees them", replicas.clone());
        r.register(
            "meshplane_replica_place",
            "This replica's place among the live ones (0-based): its share of the resources",
            replica_place.clone(),
        );
        r.register("meshplane_test_run_duration_seconds", "Contract test runs, by outcome", test_runs.clone());
        r.register("meshplane_test_checks", "Checks run by contract tests, by verdict", checks.clone());
        r.register(
            "meshplane_notifications",
            "Deliveries of events to notification sinks, by sink and outcome (sent, retried, failed, redelivered)",
            notifications.clone(),
        );
        r.register(
            "meshplane_notification_lag_seconds",
            "From a change's commit to its event's acknowledged delivery, by sink",
            notification_lag.clone(),
        );
        r.register(
            "meshplane_alerts_firing",
            "Alerts firing at each alerter (Alertmanager) as of its last round, by alerter",
            alerts_firing.clone(),
        );
        Metrics {
            kept: tokio::sync::Mutex::default(),
            registry,
            requests,
            reconciles,
            reconcile_seconds,
            queue_depth,
            queue_oldest_seconds,
            in_flight,
            replicas,
            replica_place,
            test_runs,
            checks,
            notifications,
            notification_lag,
            alerts_firing,
        }
    }
}

impl Metrics {
    /// A request answered with `status` after `took`; `route` is the template, never the path.
    /// A method outside the standard ones counts as `other`: a caller who sends made-up
    /// methods makes no new series.
    pub fn request(&self, method: &Method, route: &'static str, status: u16, took: Duration) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        let labels = Request { method, route, status };
        self.requests.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A reconcile of a `kind` resource ended as `outcome` after `took`.
    pub fn reconciled(&self, kind: Kind, outcome: Reconciled, took: Duration) {
        let kind = kind.as_str();
        self.reconciles.get_or_create(&Reconcile { kind, outcome: outcome.label() }).inc();
        self.reconcile_seconds.get_or_create(&OfKind { kind }).observe(took.as_secs_f64());
    }

    /// A reconcile of a `kind` resource panicked (its task ended; it is retried with backoff).
    pub fn panicked(&self, kind: Kind) {
        self.reconciles.get_or_create(&Reconcile { kind: kind.as_str(), outcome: "panicked" }).inc();
    }

    /// The queue as the reconcile loop last saw it.
    pub fn queue(&self, due: usize, oldest_waited: Duration, in_flight: usize) {
        self.queue_depth.set(due as i64);
        self.queue_oldest_seconds.set(oldest_waited.as_secs_f64());
        self.in_flight.set(in_flight as i64);
    }

    /// An attempt to deliver an event to `sink` ended as `outcome`; `lag` is how long after its
    /// change's commit it was acknowledged, when it was.
    pub fn notified(&self, sink: &str, outcome: Notified, lag: Option<Duration>) {
        self.notifications.get_or_create(&Notification { sink: sink.to_string(), outcome: outcome.label() }).inc();
        if let Some(lag) = lag {
            self.notification_lag.get_or_create(&OfSink { sink: sink.to_string() }).observe(lag.as_secs_f64());
        }
    }

    /// `alerter` was told of `firing` alerts in its last round.
    pub fn alerting(&self, alerter: &str, firing: usize) {
        self.alerts_firing.get_or_create(&OfSink { sink: alerter.to_string() }).set(firing as i64);
    }

    /// This replica's share: its place among `replicas` live ones.
    pub fn share(&self, place: u64, replicas: u64) {
        self.replica_place.set(place as i64);
        self.replicas.set(replicas.max(1) as i64);
    }

    /// Whether this replica's share holds `key` (how the reconcile loop splits the work).
    /// No key before the first heartbeat (0 replicas known).
    fn holds(&self, key: &ObjectRef) -> bool {
        let (place, replicas) = (self.replica_place.get(), self.replicas.get());
        replicas > 0 && crate::reconciler::Share(place.max(0) as u64, replicas as u64).holds(key)
    }

    /// The series of each contract and product this replica's share holds (none before its
    /// first heartbeat told it its share).
    async fn resources(&self, store: &Store) -> Result<String, Error> {
        let health = store.health().await?;
        let ready = Family::<Resource, Gauge>::default();
        let quality = Family::<Quality, Gauge>::default();
        let sla = Family::<OfContract, Gauge<f64, AtomicU64>>::default();
        for resource in health.iter().filter(|r| self.holds(&ObjectRef::new(r.kind, r.name.clone()))) {
            let labels =
                Resource { kind: resource.kind.as_str(), domain: resource.domain.clone(), name: resource.name.clone() };
            ready.get_or_create(&labels).set(i64::from(resource.ready == Some(true)));
            if resource.kind == Kind::DataContract {
                let verdict = match resource.last_test_failed {
                    None => "untested",
                    Some(true) => "failing",
                    Some(false) => "passing",
                };
                let labels = Quality { domain: resource.domain.clone(), contract: resource.name.clone(), verdict };
                quality.get_or_create(&labels).set(1);
                if let Some((passing, measured)) = resource.sla {
                    let labels = OfContract { domain: resource.domain.clone(), contract: resource.name.clone() };
                    sla.get_or_create(&labels).set(passing as f64 / measured as f64);
                }
            }
        }
        let mut registry = Registry::default();
        registry.register(
            "meshplane_resource_ready",
            "1 when the contract or product is Ready, else 0 (exported by the replica whose share holds it)",
            ready,
        );
        registry.register(
            "meshplane_contract_quality",
            "1 for the verdict of the contract's latest test run: passing, failing or untested",
            quality,
        );
        registry.register(
            "meshplane_contract_sla_compliance",
            "The share of the contract's SLA checks (latency, retention) that pass as of their latest runs",
            sla,
        );
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)
            .map_err(|e| Error::Store(format!("cannot write the metrics: {e}")))?;
        end_line(&mut text);
        Ok(text)
    }

    /// A contract test run ended: `report` when it produced one (its summary counts the
    /// checks by verdict), after `took`.
    pub fn tested(&self, report: Option<&serde_json::Value>, took: Duration) {
        let summary = report.map(|r| &r["summary"]);
        let failed = summary.is_some_and(|s| ["fail", "error"].iter().any(|v| s[v].as_u64().unwrap_or(0) > 0));
        let outcome = match summary {
            None => "error",
            Some(_) if failed => "failed",
            Some(_) => "passed",
        };
        self.test_runs.get_or_create(&Outcome { outcome }).observe(took.as_secs_f64());
        for verdict in VERDICTS {
            let n = summary.and_then(|s| s[verdict].as_u64()).unwrap_or(0);
            if n > 0 {
                self.checks.get_or_create(&Verdict { verdict }).inc_by(n);
            }
        }
    }

    /// The whole exposition: what this process counted, then what the store says now. One
    /// scrape is answered at a time; the per-resource series are read again only when the
    /// change feed moved (every status transition, test run and document change writes a
    /// change record) or this replica's share changed, so scrapes that follow each other cost
    /// one small query each.
    pub async fn render(&self, store: &Store) -> Result<String, Error> {
        let mut kept = self.kept.lock().await;
        let position = store.feed_position().await?;
        let share = (self.replica_place.get(), self.replicas.get());
        let resources = match kept.as_ref().filter(|k| k.position == position && k.share == share) {
            Some(k) => Arc::clone(&k.text),
            None => {
                let text = Arc::new(self.resources(store).await?);
                *kept = Some(Kept { position, share, text: Arc::clone(&text) });
                text
            }
        };
        let grants = store.active_grants().await?;
        let evaluations = meshplane_core::governance::evaluations(store);
        let mut scraped = Registry::default();
        let active = Family::<Enforcement, Gauge>::default();
        for enforcement in ENFORCEMENTS {
            active.get_or_create(&Enforcement { enforcement: enforcement.to_string() }).set(0);
        }
        for (enforcement, n) in grants {
            active.get_or_create(&Enforcement { enforcement }).set(n);
        }
        let evaluated = Family::<Verdict, Counter>::default();
        for (verdict, n) in evaluations.counts() {
            evaluated.get_or_create(&Verdict { verdict }).inc_by(n);
        }
        scraped.register("meshplane_grants_active", "Access grants in force, by how the store enforces them", active);
        scraped.register("meshplane_policy_evaluations", "Policy evaluations by this process, by verdict", evaluated);
        let mut text = String::new();
        let encoded = prometheus_text::encode(&mut text, &self.registry)
            .and_then(|()| prometheus_text::encode(&mut text, &scraped));
        encoded.map_err(|e| Error::Store(format!("cannot write the metrics: {e}")))?;
        end_line(&mut text);
        text.push_str(&resources);
        Ok(text)
    }
}

/// Ends the last line of an exposition (the encoder leaves it open; the format ends every line).
fn end_line(text: &mut String) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

//! Notification sinks: blocks that deliver the change feed's CloudEvents elsewhere (a
//! webhook, NATS JetStream, ...). The change records are the one source: each sink reads the
//! feed with a durable cursor of its own (the server's delivery loop moves it once the sink
//! acknowledged), so there is no outbox that could disagree with the feed. A sink says which
//! events it takes ([`Filter`]) and how long a failing delivery is retried ([`Retry`]) before
//! the event goes to the sink's dead letters.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Any;

use crate::block::{BlockFuture, BlockResult};
use crate::store::Change;

/// Where events go. A delivery that fails with [`crate::block::BlockError::Transient`] is
/// retried with backoff; any other error sends the event to the dead letters at once (the
/// receiver refused it, and would refuse it again).
pub trait Sink: Send + Sync {
    /// The block's name, unique on the platform (it names the sink's cursor).
    fn name(&self) -> &str;

    /// Which events the sink takes.
    fn filter(&self) -> &Filter;

    /// How long and how often a failing delivery is tried again.
    fn retry(&self) -> &Retry;

    /// Delivers one CloudEvent (structured JSON, as [`Change::cloud_event`] builds it);
    /// returns once the receiver acknowledged it.
    fn deliver<'a>(&'a self, event: &'a Any) -> BlockFuture<'a, BlockResult<()>>;
}

/// Which events a sink takes: all of them, unless a list says otherwise (each list that is
/// given must match).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// Event types, exactly (`io.meshplane.datacontract.tested`) or by a prefix ending in `*`
    /// (`io.meshplane.accessrequest.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// The domains whose resources' events the sink takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Data products (by name): their own events, and those of access requests to their ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    /// Data contracts (by name, `orders@v2`): their own events (test runs, status, ...) and
    /// those of access requests to ports they describe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<String>,
}

impl Filter {
    /// Whether the sink takes the change's event.
    pub fn takes(&self, change: &Change) -> bool {
        let of_request = |field: &str| {
            (change.kind == "AccessRequest")
                .then(|| change.after.as_ref().or(change.before.as_ref()))
                .flatten()
                .and_then(|request| request.get(field)?.as_str())
        };
        let named = |kind: &str, field: &str, names: &[String]| {
            names.is_empty()
                || (change.kind == kind && names.contains(&change.name))
                || of_request(field).is_some_and(|n| names.iter().any(|x| x == n))
        };
        let kind_type = change.event.get("type").and_then(Any::as_str).unwrap_or_default();
        let domain = change.event.pointer("/data/domain").and_then(Any::as_str).unwrap_or_default();
        (self.types.is_empty() || self.types.iter().any(|t| type_matches(t, kind_type)))
            && (self.domains.is_empty() || self.domains.iter().any(|d| d == domain))
            && named("DataProduct", "product", &self.products)
            && named("DataContract", "contract", &self.contracts)
    }

    /// The patterns that can never match an event type meshplane writes, for the platform's
    /// reader: each with why.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for t in &self.types {
            let fixed = t.strip_suffix('*').unwrap_or(t);
            if fixed.contains('*') {
                problems.push(format!("event type `{t}`: `*` may only end a pattern"));
            } else if !("io.meshplane.".starts_with(fixed) || fixed.starts_with("io.meshplane.")) {
                problems.push(format!("event type `{t}` never matches: every type starts with io.meshplane."));
            }
        }
        problems
    }
}

fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// How long and how often a failing delivery is tried again: exponential backoff from
/// `initialMs`, doubling up to `maxMs`, each wait with up to a fifth taken off at random (so
/// that sinks that failed together do not retry together), until `forSeconds` have passed
/// since the first attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_for_seconds")]
    pub for_seconds: u64,
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { for_seconds: default_for_seconds(), initial_ms: default_initial_ms(), max_ms: default_max_ms() }
    }
}

fn default_for_seconds() -> u64 {
    24 * 3600
}

fn default_initial_ms() -> u64 {
    1_000
}

fn default_max_ms() -> u64 {
    300_000
}

impl Retry {
    /// The wait after failed attempt number `attempt` (1 for the first), with `jitter` (0 to
    /// 1) of the fifth taken off.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let doubled = self.initial_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
        let wait = doubled.min(self.max_ms.max(self.initial_ms)) as f64;
        Duration::from_millis((wait * (1.0 - jitter.clamp(0.0, 1.0) / 5.0)) as u64)
    }

    /// What makes no sense in these numbers, by field.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.initial_ms == 0 {
            problems.push(("retry", "`retry.initialMs` must be at least 1".to_string()));
        }
        if self.max_ms < self.initial_ms {
            problems.push((
                "retry",
                format!("`retry.maxMs` ({}) is below `retry.initialMs` ({})", self.max_ms, self.initial_ms),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &str, name: &str, event_type: &str, domain: &str, after: Option<Any>) -> Change {
        Change {
            seq: 1,
            at: String::new(),
            actor: "local".into(),
            origin: "api".into(),
            kind: kind.into(),
            name: name.into(),
            action: "created".into(),
            generation: 1,
            version: String::new(),
            before: None,
            after,
            event: serde_json::json!({ "type": event_type, "data": { "domain": domain } }),
        }
    }

    #[test]
    fn a_filter_takes_what_every_given_list_matches() {
        let tested = change("DataContract", "orders@v2", "io.meshplane.datacontract.tested", "sales", None);
        let request = change(
            "AccessRequest",
            "7",
            "io.meshplane.accessrequest.requested",
            "sales",
            Some(serde_json::json!({ "product": "sales-orders", "contract": "orders@v2" })),
        );
        let product = change("DataProduct", "sales-orders", "io.meshplane.dataproduct.updated", "sales", None);
        let other = change("DataProduct", "hr-people", "io.meshplane.dataproduct.updated", "hr", None);
        let all = Filter::default();
        assert!([&tested, &request, &product, &other].iter().all(|c| all.takes(c)));

        let by_type = Filter { types: vec!["io.meshplane.accessrequest.*".into()], ..Filter::default() };
        assert_eq!([&tested, &request, &product].map(|c| by_type.takes(c)), [false, true, false]);
        let exact = Filter { types: vec!["io.meshplane.datacontract.tested".into()], ..Filter::default() };
        assert_eq!([&tested, &request].map(|c| exact.takes(c)), [true, false]);

        let by_domain = Filter { domains: vec!["sales".into()], ..Filter::default() };
        assert_eq!([&product, &other].map(|c| by_domain.takes(c)), [true, false]);

        let by_product = Filter { products: vec!["sales-orders".into()], ..Filter::default() };
        assert_eq!([&tested, &request, &product, &other].map(|c| by_product.takes(c)), [false, true, true, false]);
        let by_contract = Filter { contracts: vec!["orders@v2".into()], ..Filter::default() };
        assert_eq!([&tested, &request, &product].map(|c| by_contract.takes(c)), [true, true, false]);

        let both = Filter {
            types: vec!["io.meshplane.dataproduct.*".into()],
            domains: vec!["hr".into()],
            ..Filter::default()
        };
        assert_eq!([&product, &other].map(|c| both.takes(c)), [false, true]);
    }

    #[test]
    fn patterns_that_never_match_are_problems() {
        let f = Filter {
            types: vec!["io.*.tested".into(), "dataproduct.*".into(), "io.meshplane.*".into(), "io*".into()],
            ..Filter::default()
        };
        let problems = f.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("may only end") && problems[1].contains("never matches"), "{problems:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_takes_off_at_most_a_fifth() {
        let r = Retry { for_seconds: 60, initial_ms: 100, max_ms: 1_000 };
        let waits: Vec<u128> = (1..=6).map(|a| r.backoff(a, 0.0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.backoff(3, 1.0).as_millis(), 320);
        assert_eq!(r.backoff(u32::MAX, 0.5).as_millis(), 900);
    }
}

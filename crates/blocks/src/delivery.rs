//! What the sinks' configurations share, read and checked one way: how long one delivery may
//! take (`timeoutMs`), which events the sink takes (`events`) and how it retries (`retry`).

use meshplane_core::notify::{Filter, Retry};

/// How long one delivery may take by default, in milliseconds.
pub(crate) fn default_timeout_ms() -> u64 {
    10_000
}

/// The problems of the shared fields, each with the field it is about.
pub(crate) fn problems(timeout_ms: u64, events: &Filter, retry: &Retry) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if !(1..=60_000).contains(&timeout_ms) {
        problems.push(("timeoutMs", format!("`timeoutMs` must be 1 to 60000, not {timeout_ms}")));
    }
    problems.extend(events.problems().into_iter().map(|p| ("events", p)));
    problems.extend(retry.problems());
    problems
}

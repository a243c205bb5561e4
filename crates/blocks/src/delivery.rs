//! What the sinks' and alerters' configurations share, read and checked one way: how long one
//! delivery may take (`timeoutMs`), which events the sink takes (`events`) and how it retries
//! (`retry`); and how their URLs and request errors are shown without what may be secret.

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

/// An http:// or https:// URL's problem, if it is none.
pub(crate) fn url_problem(url: &str) -> Option<(&'static str, String)> {
    let fits = (url.starts_with("https://") || url.starts_with("http://")) && reqwest::Url::parse(url).is_ok();
    (!fits).then(|| ("url", format!("`url` must be an http:// or https:// URL, not `{url}`")))
}

/// The HTTP client a sink or an alerter sends with: redirects are never followed (a receiver
/// cannot send the server elsewhere), and each call ends after `timeout_ms`.
pub(crate) fn client(timeout_ms: u64) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .build()
        .map_err(|e| e.to_string())
}

/// A configuration as clients see it, its `url` without user, password and query.
pub(crate) fn described<T: serde::Serialize>(config: &T, url: &str) -> serde_json::Value {
    let mut described = crate::registry::describe(config);
    described["url"] = described_url(url).into();
    described
}

/// A URL as clients see it: without user, password and query, which may hold a token.
fn described_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => String::new(),
    }
}

/// A request error without the URL (it may hold a token in its query).
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut cause = String::new();
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    if cause.is_empty() { kind.to_string() } else { format!("{kind}: {cause}") }
}

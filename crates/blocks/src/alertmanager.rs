//! The `alertmanager` alerter: says what fails now to a Prometheus Alertmanager, through its v2
//! API (`POST /api/v2/alerts`), the way Prometheus does: each firing alert is posted again
//! every half of Alertmanager's `resolve_timeout` (so that it does not resolve on its own), and
//! posted with `endsAt` once it no longer fires. Who is paged, and how (OpsGenie, PagerDuty,
//! e-mail), is Alertmanager's own routing, on the alerts' labels.
//!
//! ```yaml
//! - name: alerts
//!   type: alertmanager
//!   url: http://alertmanager.example.com:9093
//!   resolveTimeoutSeconds: 300           # Alertmanager's resolve_timeout (its default)
//!   token: { env: ALERTMANAGER_TOKEN }   # optional: sent as a bearer token
//!   alerts: { domains: [sales] }         # optional: domains, products, contracts
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::alerting::{ALERTER_LABEL, Alert, Alerter, ENVIRONMENT_LABEL, Labels};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult};
use meshplane_core::notify::Filter;
use serde::{Deserialize, Serialize};

use crate::delivery;
use crate::platform::{Platform, Secret};
use crate::registry::{BlockType, Built};

/// An Alertmanager's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://` or `https://`); alerts go to `/api/v2/alerts` under it.
    pub url: String,
    /// Alertmanager's `resolve_timeout`: firing alerts are posted again every half of it.
    #[serde(default = "default_resolve_timeout_seconds")]
    pub resolve_timeout_seconds: u64,
    /// Sent as `Authorization: Bearer` (for an Alertmanager behind an authenticating proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// How long one call may take.
    #[serde(default = "delivery::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Which contracts' alerts it takes (`domains`, `products`, `contracts`; not `types`).
    #[serde(default)]
    pub alerts: Filter,
}

fn default_resolve_timeout_seconds() -> u64 {
    300
}

impl BlockType for AlertmanagerConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems: Vec<_> = delivery::url_problem(&self.url).into_iter().collect();
        if reqwest::Url::parse(&self.url).is_ok_and(|u| u.query().is_some() || u.fragment().is_some()) {
            problems.push((
                "url",
                "`url` is Alertmanager's base URL: no query or fragment (a token goes in `token`)".into(),
            ));
        }
        if !(2..=86_400).contains(&self.resolve_timeout_seconds) {
            let n = self.resolve_timeout_seconds;
            problems.push(("resolveTimeoutSeconds", format!("`resolveTimeoutSeconds` must be 2 to 86400, not {n}")));
        }
        if !self.alerts.types.is_empty() {
            problems
                .push(("alerts", "`alerts` picks domains, products and contracts; alerts have no event types".into()));
        }
        let retry = meshplane_core::notify::Retry::default();
        problems.extend(delivery::problems(self.timeout_ms, &self.alerts, &retry));
        problems
    }

    fn takes(&self, _server_type: &str) -> bool {
        false
    }

    fn build(&self, name: &str, platform: &Arc<Platform>, _base: &Path) -> Result<Built, String> {
        let token = self.token.as_ref().map(Secret::resolve).transpose();
        let token = token.map_err(|e| format!("alertmanager `{name}`: {e}"))?;
        let client = delivery::client(self.timeout_ms).map_err(|e| format!("alertmanager `{name}`: {e}"))?;
        let alerts = format!("{}/api/v2/alerts", self.url.trim_end_matches('/'));
        Ok(Built::Alerter(Arc::new(Alertmanager {
            name: name.to_string(),
            environment: platform.environment.clone(),
            config: self.clone(),
            alerts,
            token,
            client,
        })))
    }

    /// As configured, but the URL without user, password and query.
    fn describe(&self) -> serde_json::Value {
        delivery::described(self, &self.url)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Alertmanager {
    name: String,
    environment: String,
    config: AlertmanagerConfig,
    /// `URL/api/v2/alerts`.
    alerts: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// The part of an alert Alertmanager answers that the alerter reads.
#[derive(Deserialize)]
struct Held {
    labels: Labels,
}

impl Alertmanager {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let request = self.client.request(method, &self.alerts);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> BlockResult<reqwest::Response> {
        let answer = request.send().await.map_err(|e| {
            BlockError::Transient(format!("alertmanager `{}`: {}", self.name, delivery::without_url(&e)))
        })?;
        let status = answer.status();
        match status.as_u16() {
            200..=299 => Ok(answer),
            // Whatever it answered, the state is posted again next round.
            _ => Err(BlockError::Transient(format!("alertmanager `{}` answered {status}", self.name))),
        }
    }

    async fn post_all(&self, alerts: &[Alert]) -> BlockResult<()> {
        // Alertmanager takes any number at once; a bounded body per call is kinder to it. A
        // chunk it refuses does not keep the others from it; the round fails, and is posted
        // again.
        let mut first_error = None;
        for chunk in alerts.chunks(500) {
            if let Err(e) = self.send(self.request(reqwest::Method::POST).json(chunk)).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn held(&self) -> BlockResult<Vec<Labels>> {
        let (alerter, environment) =
            (format!("{ALERTER_LABEL}={:?}", self.name), format!("{ENVIRONMENT_LABEL}={:?}", self.environment));
        let filters = [("filter", alerter.as_str()), ("filter", environment.as_str()), ("silenced", "true")];
        let request = self.request(reqwest::Method::GET).query(&filters);
        let held: Vec<Held> = self
            .send(request)
            .await?
            .json()
            .await
            .map_err(|e| BlockError::Transient(format!("alertmanager `{}`: {e}", self.name)))?;
        let mine = |l: &Labels| {
            l.get(ALERTER_LABEL) == Some(&self.name) && l.get(ENVIRONMENT_LABEL) == Some(&self.environment)
        };
        Ok(held.into_iter().map(|h| h.labels).filter(mine).collect())
    }
}

impl Alerter for Alertmanager {
    fn name(&self) -> &str {
        &self.name
    }

    fn environment(&self) -> &str {
        &self.environment
    }

    fn filter(&self) -> &Filter {
        &self.config.alerts
    }

    fn repost_every(&self) -> Duration {
        Duration::from_millis(self.config.resolve_timeout_seconds * 500)
    }

    fn post<'a>(&'a self, alerts: &'a [Alert]) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(self.post_all(alerts))
    }

    fn firing(&self) -> BlockFuture<'_, BlockResult<Vec<Labels>>> {
        Box::pin(self.held())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn config(entry: serde_json::Value) -> AlertmanagerConfig {
        serde_json::from_value(entry).unwrap()
    }

    #[test]
    fn what_makes_no_sense_is_refused_with_its_field() {
        let bad = config(json!({
            "url": "ftp://am", "resolveTimeoutSeconds": 1, "alerts": { "types": ["io.meshplane.datacontract.tested"] }
        }));
        let fields: Vec<&str> = bad.problems().iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["url", "resolveTimeoutSeconds", "alerts"]);
        let with_query = config(json!({ "url": "https://am.example.com/?token=x" }));
        assert_eq!(with_query.problems().iter().map(|(field, _)| *field).collect::<Vec<_>>(), ["url"]);
        assert!(config(json!({ "url": "http://127.0.0.1:9093" })).problems().is_empty());
    }

    #[test]
    fn firing_alerts_are_posted_again_every_half_of_the_resolve_timeout() {
        let built = config(json!({ "url": "http://127.0.0.1:9", "resolveTimeoutSeconds": 300 }));
        let Ok(Built::Alerter(am)) = built.build("am", &Arc::new(Platform::embedded()), Path::new(".")) else {
            panic!("an alertmanager builds an alerter")
        };
        assert_eq!(am.repost_every(), Duration::from_secs(150));
    }

    #[test]
    fn the_url_is_described_without_credentials() {
        let described = config(json!({ "url": "https://user:pw@am.example.com:9093/" })).describe();
        assert_eq!(described["url"], "https://am.example.com:9093/");
    }
}

//! The `nats` sink: publishes each CloudEvent (structured JSON) to NATS JetStream and returns
//! only once the stream acknowledged it, so the sink's cursor never moves past an event the
//! stream does not hold. Each message carries `Nats-Msg-Id` (the event's id): the stream drops
//! a second publish of the same event within its duplicate window, so a redelivery after a
//! crash is stored once. The subject is `PREFIX.KIND.ACTION.DOMAIN`, e.g.
//! `meshplane.datacontract.tested.sales`; the domain, which a document names, is written with
//! every character outside letters, digits, `-` and `_` as `_` (`_` alone when empty), so no
//! document can reach another subject (a `.`, `*` or `>` of its own).
//!
//! ```yaml
//! - name: bus
//!   type: nats
//!   url: nats://127.0.0.1:4222
//!   subjectPrefix: meshplane             # the default
//!   stream: MESHPLANE                    # optional: made when missing, holding PREFIX.>
//!   token: { env: NATS_TOKEN }           # optional
//!   events: { types: [io.meshplane.datacontract.*] }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use meshplane_core::block::{BlockError, BlockFuture, BlockResult};
use meshplane_core::notify::{Filter, Retry, Sink};
use serde::{Deserialize, Serialize};
use serde_json::Value as Any;
use tokio::sync::OnceCell;

use crate::delivery;
use crate::platform::{Platform, Secret};
use crate::registry::{BlockType, Built, describe};

/// A NATS JetStream sink's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsConfig {
    /// The server: `nats://host:port` (or `tls://`).
    pub url: String,
    /// The first tokens of every subject.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// A stream to make, when it does not exist, holding `PREFIX.>`.
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub token: Option<Secret>,
    /// How long the stream may take to acknowledge a message.
    #[serde(default = "delivery::default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub events: Filter,
    #[serde(default)]
    pub retry: Retry,
}

fn default_prefix() -> String {
    "meshplane".into()
}

/// Whether `token` may stand in a subject as one token of its own.
fn subject_token(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl BlockType for NatsConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !["nats://", "tls://"].iter().any(|s| self.url.starts_with(s)) {
            problems.push(("url", format!("`url` must be nats://host:port or tls://host:port, not `{}`", self.url)));
        }
        if !self.subject_prefix.split('.').all(subject_token) {
            problems.push((
                "subjectPrefix",
                format!(
                    "`subjectPrefix` `{}` must be tokens of letters, digits, - and _ separated by dots",
                    self.subject_prefix
                ),
            ));
        }
        if let Some(stream) = self.stream.as_ref().filter(|s| !subject_token(s)) {
            problems.push(("stream", format!("`stream` `{stream}` may hold only letters, digits, - and _")));
        }
        problems.extend(delivery::problems(self.timeout_ms, &self.events, &self.retry));
        problems
    }

    fn takes(&self, _server_type: &str) -> bool {
        false
    }

    fn build(&self, name: &str, _platform: &Arc<Platform>, _base: &Path) -> Result<Built, String> {
        let token = self.token.as_ref().map(Secret::resolve).transpose().map_err(|e| format!("nats `{name}`: {e}"))?;
        let stream = OnceCell::new();
        Ok(Built::Sink(Arc::new(Nats { name: name.to_string(), config: self.clone(), token, stream })))
    }

    fn describe(&self) -> serde_json::Value {
        describe(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Nats {
    name: String,
    config: NatsConfig,
    token: Option<String>,
    /// The JetStream context, once connected (the client reconnects by itself after that).
    stream: OnceCell<jetstream::Context>,
}

impl Nats {
    async fn connect(&self) -> Result<jetstream::Context, String> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_millis(self.config.timeout_ms))
            .max_reconnects(None);
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        let client = options.connect(self.config.url.as_str()).await.map_err(|e| format!("cannot connect: {e}"))?;
        let mut context = jetstream::new(client);
        context.set_timeout(Duration::from_millis(self.config.timeout_ms));
        if let Some(stream) = &self.config.stream {
            let config = jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                ..Default::default()
            };
            context.get_or_create_stream(config).await.map_err(|e| format!("cannot make stream `{stream}`: {e}"))?;
        }
        Ok(context)
    }

    async fn publish(&self, event: &Any) -> BlockResult<()> {
        let failed = |e: String| BlockError::Transient(format!("nats `{}`: {e}", self.name));
        let context = self.stream.get_or_try_init(|| self.connect()).await.map_err(failed)?;
        let id = event.get("id").and_then(Any::as_str).unwrap_or_default();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        headers.insert("content-type", "application/cloudevents+json; charset=utf-8");
        let body = serde_json::to_vec(event).map_err(|e| BlockError::Permanent(e.to_string()))?;
        let subject = subject(&self.config.subject_prefix, event);
        let ack =
            context.publish_with_headers(subject, headers, body.into()).await.map_err(|e| failed(e.to_string()))?;
        ack.await.map_err(|e| failed(format!("not acknowledged: {e}")))?;
        Ok(())
    }
}

/// `PREFIX.KIND.ACTION.DOMAIN` of an event of type `io.meshplane.KIND.ACTION`.
fn subject(prefix: &str, event: &Any) -> String {
    let of_type = event.get("type").and_then(Any::as_str).unwrap_or_default();
    let kind_action = of_type.strip_prefix("io.meshplane.").unwrap_or(of_type);
    let domain = event.pointer("/data/domain").and_then(Any::as_str).unwrap_or_default();
    let token = |text: &str| -> String {
        let safe: String =
            text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        if safe.is_empty() { "_".into() } else { safe }
    };
    let kind_action: Vec<String> = kind_action.split('.').map(token).collect();
    format!("{prefix}.{}.{}", kind_action.join("."), token(domain))
}

impl Sink for Nats {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> &Filter {
        &self.config.events
    }

    fn retry(&self) -> &Retry {
        &self.config.retry
    }

    fn deliver<'a>(&'a self, event: &'a Any) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(self.publish(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_domain_cannot_reach_another_subject() {
        let event = |domain: &str| serde_json::json!({ "type": "io.meshplane.datacontract.tested", "data": { "domain": domain } });
        assert_eq!(subject("meshplane", &event("sales")), "meshplane.datacontract.tested.sales");
        for hostile in ["sales.>", "*", "a b", "x.y.z", "", "sälés\n"] {
            let s = subject("mp", &event(hostile));
            let tokens: Vec<&str> = s.split('.').collect();
            assert_eq!(tokens.len(), 4, "{hostile:?} gave {s}");
            assert!(tokens.iter().all(|t| subject_token(t)), "{hostile:?} gave {s}");
        }
    }
}

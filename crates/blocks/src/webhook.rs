//! The `webhook` sink: POSTs each CloudEvent, in structured mode (`application/cloudevents+json`),
//! to one URL of the platform's, signed as the Standard Webhooks scheme says: `webhook-id` (the
//! event's id, the same on every retry, so a receiver drops duplicates by it),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` and the base64 HMAC-SHA256
//! of `id.timestamp.body` under the secret). A 2xx answer acknowledges; 408, 429, 5xx and a
//! failed connection are tried again; any other answer (the receiver refused the event, e.g. a
//! 401 for a signature it rejects, or a redirect, which is never followed) sends the event to
//! the dead letters at once.
//!
//! ```yaml
//! - name: ops-hook
//!   type: webhook
//!   url: https://hooks.example.com/meshplane
//!   secret: { env: OPS_HOOK_SECRET }     # whsec_ and the base64 of 24 to 64 random bytes
//!   events: { types: [io.meshplane.datacontract.tested], domains: [sales] }
//!   retry: { forSeconds: 86400, initialMs: 1000, maxMs: 300000 }
//! ```

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult};
use meshplane_core::notify::{Filter, Retry, Sink};
use serde::{Deserialize, Serialize};
use serde_json::Value as Any;
use sha2::Sha256;

use crate::delivery;
use crate::platform::{Platform, Secret};
use crate::registry::{BlockType, Built};

/// A webhook's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed: `http://` or `https://`.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_...`).
    pub secret: Secret,
    /// How long one delivery may take before it counts as failed (and is tried again).
    #[serde(default = "delivery::default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub events: Filter,
    #[serde(default)]
    pub retry: Retry,
}

impl BlockType for WebhookConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems: Vec<_> = delivery::url_problem(&self.url).into_iter().collect();
        if let Secret::Inline(text) = &self.secret
            && let Err(e) = signing_key(text)
        {
            problems.push(("secret", e));
        }
        problems.extend(delivery::problems(self.timeout_ms, &self.events, &self.retry));
        problems
    }

    fn takes(&self, _server_type: &str) -> bool {
        false
    }

    fn build(&self, name: &str, _platform: &Arc<Platform>, _base: &Path) -> Result<Built, String> {
        let secret = self.secret.resolve().map_err(|e| format!("webhook `{name}`: {e}"))?;
        let key = signing_key(&secret).map_err(|e| format!("webhook `{name}`: {e}"))?;
        let client = delivery::client(self.timeout_ms).map_err(|e| format!("webhook `{name}`: {e}"))?;
        Ok(Built::Sink(Arc::new(Webhook { name: name.to_string(), config: self.clone(), key, client })))
    }

    /// As configured, but the URL without user, password and query, which may hold a token.
    fn describe(&self) -> serde_json::Value {
        delivery::described(self, &self.url)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The key a Standard Webhooks secret stands for: the base64 after `whsec_` (the prefix is
/// optional), 24 to 64 bytes. The error never quotes the secret.
fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
    let key = BASE64
        .decode(encoded)
        .map_err(|_| "the secret is not `whsec_` and base64 (the Standard Webhooks format)".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!("the secret holds {} bytes; a Standard Webhooks secret holds 24 to 64", key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header of `body` sent as `id` at `timestamp`.
fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

struct Webhook {
    name: String,
    config: WebhookConfig,
    key: Vec<u8>,
    client: reqwest::Client,
}

impl Webhook {
    async fn post(&self, event: &Any) -> BlockResult<()> {
        let body = serde_json::to_vec(event).map_err(|e| BlockError::Permanent(e.to_string()))?;
        let id = event.get("id").and_then(Any::as_str).unwrap_or_default();
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        let answer = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/cloudevents+json; charset=utf-8")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&self.key, id, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| BlockError::Transient(format!("webhook `{}`: {}", self.name, delivery::without_url(&e))))?;
        let status = answer.status();
        let said = |s: reqwest::StatusCode| format!("webhook `{}` answered {s}", self.name);
        match status.as_u16() {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(BlockError::Transient(said(status))),
            300..=399 => Err(BlockError::Permanent(format!("{} (redirects are not followed)", said(status)))),
            _ => Err(BlockError::Permanent(said(status))),
        }
    }
}

impl Sink for Webhook {
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
        Box::pin(self.post(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification: its secret, id, timestamp, body and
    /// the signature it gives for them.
    #[test]
    fn the_signature_is_the_specifications_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_outside_the_format_are_refused_without_being_quoted() {
        for bad in ["not base64 at all!", "whsec_c2hvcnQ="] {
            let e = signing_key(bad).unwrap_err();
            assert!(!e.contains(bad.trim_start_matches("whsec_")), "{e}");
        }
        assert!(signing_key("whsec_c2hvcnQ=").unwrap_err().contains("holds 5 bytes"));
    }
}

//! The remote block (`type: http`): a block that runs as its own service, in any language,
//! reached over the protocol published in `docs/block-protocol.openapi.json`. meshplane sends
//! each contract with its servers bound to the block, validated before it is provisioned,
//! with the installation's id and the reconcile's fencing token (`fence`: a block refuses a
//! token smaller than one it has seen for the resource); every call carries the configured
//! credential as a bearer token; a call answered with 202 is a long-running operation, polled
//! until it is done (the platform's limit on one block call bounds the wait).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::access::{AccessReport, AccessSync, Enforcement};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult, Call, Leftover, Provisioned, Provisioner};
use meshplane_core::resource::Kind;
use meshplane_core::store::Record;
use serde_json::{Value as Any, json};

use crate::platform::{HttpConfig, Platform};
use crate::registry::{BlockType, Built, describe};
use crate::storage::bound;

/// What `answer` says of a call the block does not implement (404 or 501).
const UNKNOWN_CALL: &str = "the block does not implement this call";

/// The record holds no contract: nothing a retry changes.
fn no_contract() -> BlockError {
    BlockError::Permanent("the record holds no contract".into())
}

/// How often a long-running operation is polled.
const POLL: Duration = Duration::from_millis(200);

pub struct HttpBlock {
    name: String,
    url: String,
    credential: String,
    platform: Arc<Platform>,
    client: reqwest::Client,
}

impl HttpBlock {
    /// Builds the block (resolving its credential); connects only when called.
    pub fn new(name: &str, config: &HttpConfig, platform: Arc<Platform>) -> Result<HttpBlock, String> {
        let credential = config.credential.resolve().map_err(|e| format!("block `{name}`: credential: {e}"))?;
        Ok(HttpBlock {
            name: name.into(),
            url: config.url.trim_end_matches('/').to_string(),
            credential,
            platform,
            client: reqwest::Client::new(),
        })
    }

    /// One call: `body` is POSTed (GET without one); a 202 is followed to its result.
    async fn call(&self, path: &str, body: Option<Any>) -> BlockResult<Any> {
        let url = format!("{}{path}", self.url);
        let request = match &body {
            Some(body) => self.client.post(&url).json(body),
            None => self.client.get(&url),
        };
        let answer = self.answer(request).await?;
        let Some(operation) = answer.get("operation").and_then(Any::as_str).filter(|_| answer.get("done").is_none())
        else {
            return Ok(answer);
        };
        let operation = operation.to_string();
        loop {
            let state = self.answer(self.client.get(format!("{}/v1/operations/{operation}", self.url))).await?;
            if state["done"] == true {
                return match state.get("error").and_then(Any::as_str) {
                    Some(error) => Err(BlockError::Transient(error.to_string())),
                    None => Ok(state.get("result").cloned().unwrap_or(Any::Null)),
                };
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends with the credential; 200 is the answer, 202 an operation to follow, anything
    /// else a failure with the block's message: a refused credential or request is
    /// permanent (the platform or the resource must change), a call the block does not
    /// know unsupported, a block out of reach or failing (5xx, 408, 429) transient.
    async fn answer(&self, request: reqwest::RequestBuilder) -> BlockResult<Any> {
        let response = request
            .bearer_auth(&self.credential)
            .send()
            .await
            .map_err(|e| BlockError::Transient(format!("cannot reach {}: {e}", self.url)))?;
        let status = response.status();
        let body: Any = response.json().await.unwrap_or(Any::Null);
        let message = body.get("message").and_then(Any::as_str).unwrap_or("no message").to_string();
        match status.as_u16() {
            200 | 202 => Ok(body),
            401 | 403 => {
                Err(BlockError::Permanent(format!("the block refused meshplane's credential ({status}): {message}")))
            }
            404 | 501 => Err(BlockError::Unsupported(UNKNOWN_CALL.into())),
            408 | 429 => Err(BlockError::Transient(format!("the block answered {status}: {message}"))),
            400..=499 => Err(BlockError::Permanent(format!("the block answered {status}: {message}"))),
            _ => Err(BlockError::Transient(format!("the block answered {status}: {message}"))),
        }
    }

    /// The request about one contract: its key, uid, generation, document and bound servers,
    /// and the call's installation and fencing token.
    fn request(&self, record: &Record, call: &Call) -> Option<Any> {
        let contract = record.contract()?;
        let servers = bound(&self.platform, &self.name, contract);
        Some(json!({
            "name": record.name, "uid": record.uid, "domain": record.domain, "generation": record.generation,
            "contract": record.spec, "servers": servers, "installation": call.installation, "fence": call.fence,
        }))
    }
}

/// The `http` block type: a block running as its own service.
impl BlockType for HttpConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(("url", format!("`url` must be http:// or https://, not `{}`", self.url)));
        }
        if self.server_types.is_empty() {
            problems.push(("serverTypes", "`serverTypes` must name at least one server type".into()));
        }
        problems
    }

    fn takes(&self, server_type: &str) -> bool {
        self.server_types.iter().any(|s| s.eq_ignore_ascii_case(server_type))
    }

    fn build(&self, name: &str, platform: &Arc<Platform>, _base: &Path) -> Result<Built, String> {
        Ok(Built::Storage(Arc::new(HttpBlock::new(name, self, Arc::clone(platform))?)))
    }

    fn describe(&self) -> serde_json::Value {
        describe(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Provisioner for HttpBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn concerns(&self, record: &Record) -> bool {
        record.kind == Kind::DataContract
            && record.contract().is_some_and(|c| !bound(&self.platform, &self.name, c).is_empty())
    }

    fn health(&self) -> BlockFuture<'_, Option<Result<(), String>>> {
        Box::pin(async { Some(self.call("/v1/health", None).await.map(|_| ()).map_err(|e| e.to_string())) })
    }

    fn provision<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            let request = self.request(record, call).ok_or_else(no_contract)?;
            let checked = self.call("/v1/validate", Some(request.clone())).await?;
            let problems: Vec<&str> =
                checked["problems"].as_array().into_iter().flatten().filter_map(Any::as_str).collect();
            if !problems.is_empty() {
                return Err(BlockError::Permanent(format!("the block cannot take it: {}", problems.join("; "))));
            }
            let answer = self.call("/v1/provision", Some(request)).await?;
            let summary = answer["summary"].as_str().ok_or("the block's answer has no summary")?.to_string();
            let drift = answer["drift"].as_array().into_iter().flatten().filter_map(Any::as_str).map(String::from);
            Ok(Provisioned { summary, drift: drift.collect() })
        })
    }

    fn cleanup<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async move {
            let Some(request) = self.request(record, call) else { return Ok(Vec::new()) };
            let answer = self.call("/v1/cleanup", Some(request)).await?;
            let leftovers = answer["leftovers"].as_array().into_iter().flatten().map(|l| Leftover {
                place: l["place"].as_str().unwrap_or_default().to_string(),
                note: l["note"].as_str().unwrap_or_default().to_string(),
                purgeable: l["purgeable"].as_bool().unwrap_or(true),
            });
            Ok(leftovers.collect())
        })
    }

    /// The update-access call; a block that does not know it enforces nothing.
    fn sync_access<'a>(
        &'a self,
        record: &'a Record,
        access: &'a AccessSync,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async move {
            let Some(mut request) = self.request(record, call) else { return Ok(AccessReport::default()) };
            request["access"] = serde_json::to_value(access).map_err(|e| e.to_string())?;
            match self.call("/v1/access", Some(request)).await {
                Ok(answer) => serde_json::from_value(answer).map_err(|e| {
                    BlockError::Permanent(format!("the block's answer to update-access is not an access report: {e}"))
                }),
                Err(BlockError::Unsupported(_)) => Ok(AccessReport::of(Enforcement::Unsupported)),
                Err(e) => Err(e),
            }
        })
    }

    fn purge<'a>(&'a self, place: &'a str, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async move {
            let request = json!({ "place": place, "installation": call.installation });
            self.call("/v1/purge", Some(request)).await.map(|_| ())
        })
    }
}

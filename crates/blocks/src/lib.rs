//! meshplane's building blocks: the platform's configuration (`platform.yaml`), the registry
//! of block types it may name, how a contract's servers bind to blocks, the storage blocks
//! that provision them in real stores, the remote block that reaches a block running as its
//! own service, the notification sinks the change feed's events are delivered to, and the
//! alerters that say what fails now.

pub mod alertmanager;
pub mod binding;
mod delivery;
pub mod http;
pub mod lake;
pub mod nats;
pub mod platform;
pub mod postgres;
pub mod registry;
pub mod storage;
pub mod webhook;

use std::sync::Arc;

use meshplane_core::alerting::Alerter;
use meshplane_core::block::{Binder, Blocks, Provisioner};
use meshplane_core::notify::Sink;
use meshplane_core::store::Record;

use crate::platform::Platform;
use crate::registry::Built;

/// The platform's binding check, for the reconcilers.
struct PlatformBinder(Arc<Platform>);

impl Binder for PlatformBinder {
    fn problems(&self, record: &Record) -> Vec<String> {
        match record.contract() {
            Some(contract) => binding::problems(&self.0, contract),
            None => Vec::new(),
        }
    }

    fn block_of(&self, record: &Record, server: &str) -> Result<String, String> {
        let contract = record.contract().ok_or("the record holds no contract")?;
        let bound = binding::bind(&self.0, contract).into_iter().find(|(s, _)| s.server == server);
        bound.map(|(_, block)| block).unwrap_or_else(|| {
            Err(format!(
                "server `{server}` is not of this platform's environment `{}`: only servers bound to the platform's \
                 blocks are tested by the server",
                self.0.environment
            ))
        })
    }
}

/// Builds every block of the platform (resolving secrets; connecting lazily), or says which
/// block cannot be built and why; nothing is half built. Local lake paths are relative to
/// `base`.
pub fn build(platform: Platform, base: &std::path::Path) -> Result<Blocks, String> {
    let platform = Arc::new(platform);
    let mut provisioners: Vec<Arc<dyn Provisioner>> = Vec::new();
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    let mut alerters: Vec<Arc<dyn Alerter>> = Vec::new();
    for block in &platform.blocks {
        match block.config.build(&block.name, &platform, base)? {
            Built::Storage(provisioner) => provisioners.push(provisioner),
            Built::Sink(sink) => sinks.push(sink),
            Built::Alerter(alerter) => alerters.push(alerter),
        }
    }
    let environment = Some(platform.environment.clone());
    let binder = Some(Arc::new(PlatformBinder(platform)) as Arc<dyn Binder>);
    Ok(Blocks { binder, environment, sinks, alerters, ..Blocks::of(provisioners) })
}

//! The block types a platform can name, each registered once (vector's component model): a
//! type is one configuration struct, read by serde from its entry in `platform.yaml`, whose
//! [`BlockType`] implementation holds what serde cannot check, which servers it takes and the
//! factory that builds the block; [`Registry::builtin`] lists the types meshplane ships, and a
//! program embedding meshplane adds its own with [`Registry::with`].

use std::any::Any;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use meshplane_core::alerting::Alerter;
use meshplane_core::block::Provisioner;
use meshplane_core::notify::Sink;
use meshplane_spec::model::server::Server;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::alertmanager::AlertmanagerConfig;
use crate::nats::NatsConfig;
use crate::platform::{HttpConfig, LakeConfig, Platform, PostgresConfig};
use crate::webhook::WebhookConfig;

/// One type of block, as its configuration.
pub trait BlockType: Debug + Send + Sync + 'static {
    /// What serde cannot check: values that parse but make no sense, each with the field it
    /// is about.
    fn problems(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Whether servers of this ODCS type (lower case) are this block's to hold.
    fn takes(&self, server_type: &str) -> bool;

    /// The first endpoint field of `server` that is not this block's own, as (field, the
    /// server's value, the block's): a contract never chooses where a block connects.
    fn foreign_endpoint(&self, _server: &Server) -> Option<(&'static str, String, String)> {
        None
    }

    /// The block itself, named `name` on `platform`; local paths are relative to `base`.
    fn build(&self, name: &str, platform: &Arc<Platform>, base: &Path) -> Result<Built, String>;

    /// The configuration as it is described to clients (secrets show only their reference).
    fn describe(&self) -> serde_json::Value;

    /// The configuration as its own type, for code that knows it (see
    /// [`crate::platform::BlockConfig::config`]).
    fn as_any(&self) -> &dyn Any;
}

/// What a block type builds: a block that provisions contracts' servers, a sink the change
/// feed's events are delivered to, or an alerter that is told what fails now.
pub enum Built {
    Storage(Arc<dyn Provisioner>),
    Sink(Arc<dyn Sink>),
    Alerter(Arc<dyn Alerter>),
}

/// Reads a block type's configuration from its entry (without `name` and `type`).
type Read = fn(serde_json::Value) -> Result<Arc<dyn BlockType>, serde_json::Error>;

fn read_as<T: BlockType + DeserializeOwned>(entry: serde_json::Value) -> Result<Arc<dyn BlockType>, serde_json::Error> {
    Ok(Arc::new(serde_json::from_value::<T>(entry)?))
}

/// The block types a platform file may name, by their `type:`.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: Vec<(&'static str, Read)>,
}

impl Registry {
    /// The types meshplane ships: `postgres`, `lake`, `http`, the sinks `webhook` and `nats`, and
    /// the alerter `alertmanager`.
    pub fn builtin() -> Registry {
        Registry::default()
            .with::<PostgresConfig>("postgres")
            .with::<LakeConfig>("lake")
            .with::<HttpConfig>("http")
            .with::<WebhookConfig>("webhook")
            .with::<NatsConfig>("nats")
            .with::<AlertmanagerConfig>("alertmanager")
    }

    /// Adds the type `name`, configured by `T` (a later registration of a name replaces the
    /// earlier one).
    pub fn with<T: BlockType + DeserializeOwned>(mut self, name: &'static str) -> Registry {
        self.types.retain(|(known, _)| *known != name);
        self.types.push((name, read_as::<T>));
        self
    }

    /// Reads the configuration of type `name`; `None` when no such type is registered.
    pub(crate) fn read(
        &self,
        name: &str,
        entry: serde_json::Value,
    ) -> Option<Result<Arc<dyn BlockType>, serde_json::Error>> {
        let (_, read) = self.types.iter().find(|(known, _)| *known == name)?;
        Some(read(entry))
    }

    /// The registered type names, for messages.
    pub(crate) fn names(&self) -> String {
        self.types.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

/// The description of a configuration that serializes (every registered one does).
pub fn describe<T: Serialize>(config: &T) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}

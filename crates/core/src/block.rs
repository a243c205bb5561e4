//! The building-block SPI as the reconcilers use it: a block provisions what a resource
//! declares in the store it manages, and cleans it up when the resource goes.
//!
//! A block says first, without I/O, whether a resource concerns it; the reconciler then puts
//! the block's finalizer on the record *before* the block provisions anything, so a record is
//! never removed while something provisioned for it may remain. Cleanup must be idempotent and
//! correct when provisioning never ran or ran halfway.
//!
//! ```
//! use meshplane_core::block::{BlockFuture, BlockResult, Call, Leftover, Provisioned, Provisioner};
//! use meshplane_core::resource::Kind;
//! use meshplane_core::store::Record;
//!
//! /// A block that keeps nothing anywhere: every resource is provisioned at once.
//! struct Nothing;
//!
//! impl Provisioner for Nothing {
//!     fn name(&self) -> &str {
//!         "nothing"
//!     }
//!     fn concerns(&self, record: &Record) -> bool {
//!         record.kind == Kind::DataProduct
//!     }
//!     fn provision<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
//!         Box::pin(async { Ok(Provisioned::done("nothing to provision")) })
//!     }
//!     fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
//!         Box::pin(async { Ok(Vec::new()) })
//!     }
//! }
//! assert_eq!(Nothing.finalizer(), "block/nothing");
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::access::{AccessReport, AccessSync, Enforcement, Login};
use crate::checking::TestTarget;
use crate::store::Record;

/// What a block's asynchronous operations return.
pub type BlockFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a block call failed, split by what the controller does about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// It may pass by itself (the store did not answer, a connection dropped, the call timed
    /// out): retried with backoff. A plain message is this.
    #[error("{0}")]
    Transient(String),
    /// It will not pass until the resource or the platform changes (the block refuses what
    /// the resource declares, or its own configuration is wrong): shown in the resource's
    /// conditions and not retried until something changes.
    #[error("{0}")]
    Permanent(String),
    /// The block does not have this ability.
    #[error("{0}")]
    Unsupported(String),
}

impl BlockError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BlockError::Transient(_))
    }
}

impl From<String> for BlockError {
    fn from(message: String) -> Self {
        BlockError::Transient(message)
    }
}

impl From<&str> for BlockError {
    fn from(message: &str) -> Self {
        BlockError::Transient(message.to_string())
    }
}

/// What block calls answer.
pub type BlockResult<T> = Result<T, BlockError>;

/// What a provisioning found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// What the block did or found, for people.
    pub summary: String,
    /// Where the store differs from what the resource declares and the block would not
    /// change it by itself (a column missing, of another type, or not declared).
    pub drift: Vec<String>,
}

impl Provisioned {
    /// A provisioning that found the store as declared.
    pub fn done(summary: impl Into<String>) -> Provisioned {
        Provisioned { summary: summary.into(), drift: Vec::new() }
    }
}

/// What every block call carries besides the resource: this installation's id (a block marks
/// what it makes with it, and never touches what another installation made) and, for a call
/// made under a reconcile's lease, that lease's fencing token, so that a block can refuse the
/// late call of a replica whose lease another has taken since (the token only grows).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub installation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
}

/// A lease's owner and fencing token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    pub owner: String,
    pub token: i64,
}

impl Call {
    /// A call outside any lease (an explicit purge, a test run, a login).
    pub fn unfenced(installation: impl Into<String>) -> Call {
        Call { installation: installation.into(), fence: None }
    }

    /// The token of the call's lease; 0 outside a lease (which no later reconcile's is below).
    pub fn token(&self) -> i64 {
        self.fence.as_ref().map_or(0, |f| f.token)
    }
}

/// Something a cleanup left in place (it holds data, or the deletion policy keeps it): an
/// orphan until it is purged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leftover {
    /// How the block finds it again to purge it (the block's own notation).
    pub place: String,
    /// For people: what it is and why it stayed.
    pub note: String,
    /// Whether the block would purge it (false for what meshplane did not create).
    pub purgeable: bool,
}

/// Storage and provisioning: makes real what a resource declares, and undoes it.
pub trait Provisioner: Send + Sync {
    /// The block's name, unique on the platform.
    fn name(&self) -> &str;

    /// Whether the resource declares anything this block provisions (no I/O).
    fn concerns(&self, record: &Record) -> bool;

    /// Brings the store in line with the resource, idempotently; says what it did and what
    /// drifted, or why it could not.
    fn provision<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>>;

    /// Undoes `provision` for a resource that goes, as the block's deletion policy says;
    /// idempotent. Returns what it left in place (data, or what the policy keeps).
    fn cleanup<'a>(&'a self, record: &'a Record, call: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>>;

    /// Removes, data and all, a place a cleanup left (an optional ability: explicit only,
    /// through `meshplane purge`); a block refuses when the place is no longer the one it left
    /// (a newer resource uses it).
    fn purge<'a>(&'a self, place: &'a str, _call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async move {
            Err(BlockError::Unsupported(format!("block `{}` cannot purge (asked for {place})", self.name())))
        })
    }

    /// Makes the grants on the resource's ports exactly `access.grants` (an optional ability:
    /// by default a block cannot enforce grants, and says so).
    fn sync_access<'a>(
        &'a self,
        _record: &'a Record,
        _access: &'a AccessSync,
        _call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async { Ok(AccessReport::of(Enforcement::Unsupported)) })
    }

    /// Creates (or, when it exists, gives a new password to) the login role of a service
    /// account in the block's store, named after `installation` and `account` (an optional
    /// ability: by default the block cannot).
    fn create_login<'a>(&'a self, _installation: &'a str, account: &'a str) -> BlockFuture<'a, BlockResult<Login>> {
        Box::pin(async move {
            let message = format!("block `{}` cannot create logins (asked for `{account}`)", self.name());
            Err(BlockError::Unsupported(message))
        })
    }

    /// Where a contract test reads the resource's server `server` (bound to this block), with
    /// the block's credentials for it, valid for `valid_for` (an optional ability). A block
    /// answers only for its own port of this resource — provisioned, every path confined to
    /// it — never for a place a contract merely names; [`Provisioner::end_test`] is called
    /// when the run is over.
    fn test_target<'a>(
        &'a self,
        _record: &'a Record,
        server: &'a str,
        _valid_for: std::time::Duration,
        _call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<TestTarget>> {
        Box::pin(async move {
            let message = format!("block `{}` cannot run contract tests on server `{server}`", self.name());
            Err(BlockError::Unsupported(message))
        })
    }

    /// A test run on `target` is over: take back what was made for it (a login).
    fn end_test<'a>(&'a self, _target: &'a TestTarget, _call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether the block's store answers; `None` when the block does not report its health
    /// (an optional ability).
    fn health(&self) -> BlockFuture<'_, Option<Result<(), String>>> {
        Box::pin(async { None })
    }

    /// The finalizer this block puts on the records it provisions for.
    fn finalizer(&self) -> String {
        format!("block/{}", self.name())
    }
}

/// Checks, for the whole platform, that each part of a resource can be handed to exactly one
/// block (a contract's servers, each to its block); problems make `Bound` False.
pub trait Binder: Send + Sync {
    fn problems(&self, record: &Record) -> Vec<String>;

    /// The block that holds a contract's server `server`, or why none does.
    fn block_of(&self, record: &Record, server: &str) -> Result<String, String>;
}

/// The blocks the reconcilers hand provisioning to, and the platform's binding check.
#[derive(Clone)]
pub struct Blocks {
    pub provisioners: Vec<Arc<dyn Provisioner>>,
    pub binder: Option<Arc<dyn Binder>>,
    /// How long one call to a block may take before it counts as failed (a block that hangs
    /// must not hold its resource's lease, or a reconcile slot, forever).
    pub timeout: std::time::Duration,
    /// The platform's environment: only contract servers of it are this platform's (`None`:
    /// no platform, every server).
    pub environment: Option<String>,
    /// Where the change feed's events are delivered (webhooks, NATS JetStream, ...).
    pub sinks: Vec<Arc<dyn crate::notify::Sink>>,
    /// Where what fails now is said as alerts (Alertmanager).
    pub alerters: Vec<Arc<dyn crate::alerting::Alerter>>,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks::of(Vec::new())
    }
}

impl Blocks {
    /// These blocks, with no binding check, and calls limited to 60 seconds.
    pub fn of(provisioners: Vec<Arc<dyn Provisioner>>) -> Blocks {
        Blocks {
            provisioners,
            binder: None,
            timeout: std::time::Duration::from_secs(60),
            environment: None,
            sinks: Vec::new(),
            alerters: Vec::new(),
        }
    }

    /// Runs a call to a block, or says that it took too long (transient: it may answer next
    /// time).
    pub async fn call<T>(&self, block: &dyn Provisioner, call: BlockFuture<'_, BlockResult<T>>) -> BlockResult<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(BlockError::Transient(format!(
                "block `{}` did not answer within {} s",
                block.name(),
                self.timeout.as_secs_f64()
            ))),
        }
    }

    /// The block whose finalizer this is.
    pub fn by_finalizer(&self, finalizer: &str) -> Option<&Arc<dyn Provisioner>> {
        self.provisioners.iter().find(|b| b.finalizer() == finalizer)
    }

    /// The blocks a resource concerns.
    pub fn concerned<'a>(&'a self, record: &'a Record) -> impl Iterator<Item = &'a Arc<dyn Provisioner>> {
        self.provisioners.iter().filter(move |b| b.concerns(record))
    }

    /// Why parts of the resource cannot be handed to a block (empty when all can).
    pub fn binding_problems(&self, record: &Record) -> Vec<String> {
        self.binder.as_ref().map(|b| b.problems(record)).unwrap_or_default()
    }

    /// The block that holds a contract's server, or why none does.
    pub fn holding(&self, record: &Record, server: &str) -> Result<&Arc<dyn Provisioner>, String> {
        let binder = self.binder.as_ref().ok_or("this platform binds no server to a block")?;
        let name = binder.block_of(record, server)?;
        self.provisioners.iter().find(|b| b.name() == name).ok_or_else(|| format!("block `{name}` is not configured"))
    }
}

//! The access SPI: how a block makes grants on a resource's ports real in its store.
//!
//! The reconciler of a contract hands each block that provisioned it the whole set of grants
//! in force on its ports ([`AccessSync`]); the block makes its store hold exactly those (a
//! role, a policy, an ACL per grant), takes back what belongs to grants no longer in force,
//! and reports how it enforces them and which privileges on the ports no grant explains.
//! Level-triggered like every reconcile: the same set twice changes nothing, and a lost call
//! is made good by the next one. A block that cannot enforce anything keeps the default:
//! [`Enforcement::Unsupported`].
//!
//! ```
//! use meshplane_core::access::{AccessReport, AccessSync, Enforcement};
//! use meshplane_core::block::{BlockFuture, BlockResult, Call, Leftover, Provisioned, Provisioner};
//! use meshplane_core::resource::Kind;
//! use meshplane_core::store::Record;
//!
//! /// A block over local folders: anyone who can read the disk can read a port, so grants
//! /// are recorded but not enforced.
//! struct Folders;
//!
//! impl Provisioner for Folders {
//!     fn name(&self) -> &str {
//!         "folders"
//!     }
//!     fn concerns(&self, record: &Record) -> bool {
//!         record.kind == Kind::DataContract
//!     }
//!     fn provision<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
//!         Box::pin(async { Ok(Provisioned::done("a folder")) })
//!     }
//!     fn cleanup<'a>(&'a self, _: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
//!         Box::pin(async { Ok(Vec::new()) })
//!     }
//!     fn sync_access<'a>(
//!         &'a self,
//!         _: &'a Record,
//!         _: &'a AccessSync,
//!         _: &'a Call,
//!     ) -> BlockFuture<'a, BlockResult<AccessReport>> {
//!         Box::pin(async { Ok(AccessReport::of(Enforcement::Advisory)) })
//!     }
//! }
//! ```

use serde::{Deserialize, Serialize};

/// How a block enforces grants on a resource's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// The block cannot say who may read.
    Unsupported,
    /// Recorded, not enforced (a folder on a local disk).
    Advisory,
    /// The store itself refuses everyone else (claimed only with an end-to-end denial test).
    Enforced,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Unsupported => "unsupported",
            Enforcement::Advisory => "advisory",
            Enforcement::Enforced => "enforced",
        }
    }
}

/// One grant in force, as a block needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The grant's id in the store: a block names what it creates for the grant after it.
    pub id: i64,
    /// The consumer (a principal's name).
    pub consumer: String,
    /// The consumer's own role in the databases, when its identity records one.
    pub database_role: Option<String>,
    /// Write access too (an ODCS role with `access: write`).
    pub write: bool,
}

/// What a block is asked to make true of a resource's ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessSync {
    /// This installation's id: what the block creates carries it, so the block recognises its
    /// own and never touches another installation's.
    pub installation: String,
    /// Every grant in force on the ports, and only those.
    pub grants: Vec<Grant>,
    /// The ports are going (the resource is deleted, or moved away from these places): take
    /// back every grant on them but keep what a grant may still need elsewhere.
    pub releasing: bool,
}

/// What a block did with the grants and found on the ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessReport {
    /// How the grants are enforced (the weakest of the resource's places).
    pub enforcement: Option<Enforcement>,
    /// Privileges on the ports that no grant explains (left alone, or removed: see `removed`).
    #[serde(default)]
    pub drift: Vec<String>,
    /// Privileges no grant explained that the block took away.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Grants the block could not make real, with why (a consumer with no database role).
    #[serde(default)]
    pub problems: Vec<String>,
}

/// A login made in a block's store for a service account: shown once, never kept by meshplane.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The role (user) name to log in as; the service account's `databaseRole`.
    pub role: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("role", &self.role).field("password", &"***").finish()
    }
}

impl AccessReport {
    pub fn of(enforcement: Enforcement) -> AccessReport {
        AccessReport { enforcement: Some(enforcement), ..AccessReport::default() }
    }

    /// Both reports as one: the weaker enforcement and every finding.
    pub fn merge(mut self, other: AccessReport) -> AccessReport {
        self.enforcement = match (self.enforcement, other.enforcement) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.drift.extend(other.drift);
        self.removed.extend(other.removed);
        self.problems.extend(other.problems);
        self
    }
}

//! The access SPI — a sketch, settled far enough for the storage blocks to be built against
//! it; the access-management work (requests, approvals, grants) finishes it.
//!
//! A block that holds ports says how it enforces a grant on them, and makes a grant real in
//! its store (a role, a policy, an ACL) or takes it back. Every ability defaults to "not
//! supported", so a block implements only what its store can do.
//!
//! ```
//! use meshplane_core::access::{Access, Enforcement, Grant};
//! use meshplane_core::block::BlockFuture;
//! use meshplane_core::store::Record;
//!
//! /// A block over local folders: anyone who can read the disk can read a port, so a grant
//! /// is recorded but not enforced.
//! struct Folders;
//!
//! impl Access for Folders {
//!     fn name(&self) -> &str {
//!         "folders"
//!     }
//!     fn enforcement(&self, _: &Record) -> Enforcement {
//!         Enforcement::Advisory
//!     }
//! }
//!
//! let grant = Grant { id: "g1".into(), port: "orders@v2".into(), consumer: "analyst".into(), write: false };
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let refused = runtime.block_on(Folders.grant(&grant)).unwrap_err();
//! assert_eq!(refused, "block `folders` does not enforce grants");
//! ```

use serde::Serialize;

use crate::block::BlockFuture;
use crate::store::Record;

/// How a block enforces grants on a resource's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// The store itself refuses everyone else (claimed only with an end-to-end denial test).
    Enforced,
    /// Recorded, not enforced (a folder on a local disk).
    Advisory,
    /// The block cannot say who may read.
    Unsupported,
}

/// One grant, as a block needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Stable across retries: the block names what it creates after it.
    pub id: String,
    /// The port: the contract's key (`orders@v2`).
    pub port: String,
    /// Who may read (the consumer's identity in the store: a database role, a principal).
    pub consumer: String,
    /// Write access too (an ODCS role with `access: write`).
    pub write: bool,
}

/// Access management in a block's store.
pub trait Access: Send + Sync {
    fn name(&self) -> &str;

    /// How grants on this resource's ports are enforced.
    fn enforcement(&self, _record: &Record) -> Enforcement {
        Enforcement::Unsupported
    }

    /// Makes the grant real in the store; idempotent.
    fn grant<'a>(&'a self, _grant: &'a Grant) -> BlockFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("block `{}` does not enforce grants", self.name())) })
    }

    /// Takes the grant back; idempotent, and correct when it was never made.
    fn revoke<'a>(&'a self, _grant: &'a Grant) -> BlockFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("block `{}` does not enforce grants", self.name())) })
    }
}

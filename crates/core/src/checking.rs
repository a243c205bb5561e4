//! The check-execution SPI — a sketch; the contract-test work finishes it. Today contract
//! tests run inside meshplane (the quality crate, on files and PostgreSQL); a block that
//! holds data meshplane cannot read itself (a warehouse behind its own engine) will run a
//! contract's checks where the data lives and answer the same report.
//!
//! ```
//! use meshplane_core::block::BlockFuture;
//! use meshplane_core::checking::CheckExecution;
//! use meshplane_core::store::Record;
//!
//! /// A block whose store meshplane reads itself: it runs no checks of its own.
//! struct Lake;
//!
//! impl CheckExecution for Lake {
//!     fn name(&self) -> &str {
//!         "lake"
//!     }
//! }
//!
//! let record = Record {
//!     kind: "DataContract".into(), name: "orders@v2".into(), uid: "1".into(), id: "orders".into(),
//!     version: "2.0.0".into(), status: "active".into(), domain: "sales".into(), team: None,
//!     tags: vec![], generation: 1, created_at: String::new(), updated_at: String::new(),
//!     deletion_requested: None, finalizers: vec![], owners: vec![], spec: serde_json::json!({}),
//! };
//! assert!(!Lake.runs(&record));
//! ```

use serde_json::Value as Any;

use crate::block::BlockFuture;
use crate::store::Record;

/// Running a contract's checks where the data lives.
pub trait CheckExecution: Send + Sync {
    fn name(&self) -> &str;

    /// Whether this block runs the checks of this contract (instead of meshplane itself).
    fn runs(&self, _record: &Record) -> bool {
        false
    }

    /// Runs the checks (those of one schedule, or all) and answers the report, in the shape
    /// of `meshplane test -o json`.
    fn run_checks<'a>(
        &'a self,
        _record: &'a Record,
        _schedule: Option<&'a str>,
    ) -> BlockFuture<'a, Result<Any, String>> {
        Box::pin(async move { Err(format!("block `{}` does not run checks", self.name())) })
    }
}

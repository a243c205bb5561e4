//! The registry of meshplane: what a resource is and how it is identified
//! ([`resource`]), and the [`store`] that keeps every applied version with one change record
//! per change, on SQLite (the embedded default) or PostgreSQL.
//!
//! ```
//! use meshplane_core::resource::{Kind, Resource};
//! use meshplane_spec::load;
//!
//! let text = "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 2.1.0\nstatus: active\ndomain: sales\n";
//! let loaded = load(text).documents.remove(0);
//! let resource = Resource::from_loaded(&loaded).unwrap();
//! assert_eq!((resource.kind, resource.name.as_str()), (Kind::DataContract, "orders@v2"));
//! ```

pub mod access;
pub mod alerting;
pub mod authz;
pub mod block;
pub mod checking;
pub mod controller;
pub mod cron;
mod enforce;
pub mod error;
pub mod governance;
pub mod notify;
pub mod reconcile;
pub mod resource;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, ErrorCode};

//! The spec layer of meshplane: typed models of ODCS data contracts and ODPS data products,
//! a YAML/JSON parser that keeps the position of every node, lint rules, and a diff that
//! classifies the changes between two versions of a contract.
//!
//! This crate is pure: it does no I/O, so the CLI, the server and the tests share it.

pub mod decode;
pub mod diag;
pub mod diff;
pub mod document;
pub mod json;
pub mod lint;
pub mod model;
pub mod render;
pub mod sla;
pub mod tree;
pub mod version;

pub use diag::{Code, Diagnostic, Severity};
pub use document::{Document, Loaded, Text, load};

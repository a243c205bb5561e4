//! The spec layer of meshplane: typed models of ODCS data contracts and ODPS data products,
//! a YAML/JSON parser that keeps the position of every node, lint rules, and a diff that
//! classifies the changes between two versions of a contract.
//!
//! This crate is pure: it does no I/O, so the CLI, the server and the tests share it.
//!
//! ```
//! use meshplane_spec::{Code, lint};
//!
//! let text = "apiVersion: v3.2.0\nkind: DataContract\nid: orders\nversion: 1.0.0\n\
//!             schema:\n  - name: orders\n    quality:\n      - metric: rowCount\n";
//! let linted = lint::lint_text("orders.odcs.yaml", text);
//! let problem = &linted.diagnostics[0];
//! assert_eq!(problem.code, Code::QualityNoOperator);
//! assert_eq!((problem.span.start.line, problem.span.start.col), (8, 9));
//! ```

pub mod decode;
pub mod diag;
pub mod diff;
pub mod document;
pub mod json;
pub mod lint;
pub mod model;
pub mod render;
pub mod sla;
pub mod suggest;
pub mod tree;
pub mod version;

pub use diag::{Code, Diagnostic, Severity};
pub use document::{Document, Loaded, Text, decode_json, decoded, load};

//! Contract tests: an ODCS contract compiled into a plan of checks ([`plan`]) and run where
//! the data lives ([`files`] with Apache DataFusion, [`postgres`] by push-down), with one
//! pass per schema object and purpose-built kernels ([`kernel`]).
//!
//! ```
//! use meshplane_quality::plan::{compile, Measure};
//! use meshplane_spec::{Document, load};
//!
//! let text = "apiVersion: v3.1.0\nkind: DataContract\nid: orders\nversion: 1.0.0\nstatus: active\n\
//!             schema:\n  - name: orders\n    properties:\n      - name: id\n        required: true\n";
//! let Some(Document::Contract(contract)) = load(text).documents.remove(0).document else { panic!() };
//! let plan = compile(&contract, None);
//! let required = plan.objects[0].checks.iter().find(|c| c.key == "orders.id.required").unwrap();
//! assert_eq!(required.measure, Measure::Missing { column: "id".into(), values: vec![] });
//! ```

mod counted;
mod dictionary;
mod dups;
pub mod files;
pub mod guard;
pub mod kernel;
mod matcher;
pub mod plan;
pub mod postgres;
pub mod regex;
mod rules;
pub mod run;
pub mod samples;
pub mod source;
pub mod target;
#[cfg(feature = "testing")]
pub mod testing;
pub mod threshold;
pub mod types;

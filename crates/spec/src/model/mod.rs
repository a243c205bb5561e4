//! Typed models of the standards meshplane reads, and of its own kinds.

pub mod common;
pub mod odcs;
pub mod odps;
pub mod policy;
pub mod server;

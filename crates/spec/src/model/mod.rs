//! Typed models of the standards meshplane reads.

pub mod common;
pub mod odcs;
pub mod odps;
pub mod server;

//! The building blocks end to end: platform files (good and bad), and the storage blocks
//! against real stores.

mod access;
mod http;
mod lake;
mod moves;
mod platform;
mod postgres;
mod registry;
mod tls;

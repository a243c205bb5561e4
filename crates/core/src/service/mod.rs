//! The domain workflows, one function each, that every entry point calls: the HTTP API
//! today, the local CLI and the git sync as they come. A workflow takes the [`Caller`]
//! (whoever asked, from where), asks the authorization rules ([`crate::authz`]), and writes
//! through the [`Store`], whose transactions check the ownership rule once more. Nothing here
//! knows HTTP: a workflow returns the store's records or an [`Error`] whose code says what
//! went wrong (the API maps it to a status with one table).
//!
//! - [`catalog`]: reading a body of documents, applying it, deleting a resource;
//! - [`access`]: asking for access to an output port, deciding, revoking, listing;
//! - [`identity`]: API tokens and principals.
//!
//! [`Caller`]: crate::authz::Caller
//! [`Store`]: crate::store::Store
//! [`Error`]: crate::Error

pub mod access;
pub mod catalog;
pub mod identity;

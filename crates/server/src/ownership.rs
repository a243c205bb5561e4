//! Who manages what, for the routes that read with a manager's rights (running tests,
//! samples in reports, asking for a product's access): the ownership rule of
//! [`meshplane_core::authz`], from what the store recorded. Changes (apply, delete) are
//! authorized by the store itself, in the transaction that writes.

use meshplane_core::authz::Caller;
use meshplane_core::store::Record;

use crate::{ApiError, AppState};

/// Whether the caller manages a stored resource.
pub async fn manages(state: &AppState, caller: &Caller, record: &Record) -> Result<bool, ApiError> {
    if caller.owns(record) {
        return Ok(true);
    }
    Ok(caller.manages(record, &state.store.provided_by(caller).await?))
}

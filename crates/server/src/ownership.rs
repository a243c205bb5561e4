//! Who may change the catalog: the decisions behind apply, delete and on-demand tests, all
//! made from what the store recorded when each resource was created (its domain and owners),
//! never from what an incoming document claims.
//!
//! - Changing a stored resource: its owners, or an admin of its recorded domain. A contract is
//!   also managed by the owners of a product whose output port provides it.
//! - Creating one: an admin of its domain, an owner of another major version of it, or (a
//!   contract) an owner of a product of the same domain whose output port names it.
//! - Pruning: an admin of every domain the applied documents belong to.

use meshplane_core::Error;
use meshplane_core::authz::Caller;
use meshplane_core::resource::{Kind, Resource, port_links};
use meshplane_core::store::Record;

use crate::{ApiError, AppState};

/// Whether the caller manages a stored resource.
pub async fn manages(state: &AppState, caller: &Caller, record: &Record) -> Result<bool, ApiError> {
    manages_with(state, caller, record, &mut Provided::default()).await
}

async fn manages_with(
    state: &AppState,
    caller: &Caller,
    record: &Record,
    provided: &mut Provided,
) -> Result<bool, ApiError> {
    if caller.owns(record) {
        return Ok(true);
    }
    if record.kind != Kind::DataContract.as_str() {
        return Ok(false);
    }
    Ok(provided.of(state, caller).await?.iter().any(|(id, _)| *id == record.id))
}

/// The contracts that the caller's products provide, as (contract id, product domain): read
/// once, when first needed.
#[derive(Default)]
struct Provided(Option<Vec<(String, String)>>);

impl Provided {
    async fn of(&mut self, state: &AppState, caller: &Caller) -> Result<&[(String, String)], ApiError> {
        if self.0.is_none() {
            let products = state.store.list_all(Kind::DataProduct).await?;
            let mine = products.iter().filter(|p| caller.owns(p));
            let links = mine.flat_map(|p| {
                port_links(&p.spec).into_iter().filter(|l| !l.input).map(|l| (l.contract_id, p.domain.clone()))
            });
            self.0 = Some(links.collect());
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
}

/// Refuses an apply unless the caller may create or change every resource in it (and, when
/// pruning, administers every domain it touches).
pub async fn authorize_apply(
    state: &AppState,
    caller: &Caller,
    resources: &[Resource],
    prune: bool,
) -> Result<(), ApiError> {
    // Platform admins may apply anything: no record needs reading (an apply holds thousands).
    if caller.is_platform_admin() {
        return Ok(());
    }
    let mut provided = Provided::default();
    for r in resources {
        let allowed = match state.store.get(r.kind, &r.name).await {
            Ok(stored) => manages_with(state, caller, &stored, &mut provided).await?,
            Err(Error::NotFound(_)) => may_create(state, caller, r, &mut provided).await?,
            Err(e) => return Err(e.into()),
        };
        caller.require(allowed, &format!("apply {} `{}` (domain `{}`)", r.kind.as_str(), r.name, r.domain))?;
        if prune {
            caller.require(caller.administers(&r.domain), &format!("prune domain `{}`", r.domain))?;
        }
    }
    Ok(())
}

async fn may_create(
    state: &AppState,
    caller: &Caller,
    r: &Resource,
    provided: &mut Provided,
) -> Result<bool, ApiError> {
    if caller.administers(&r.domain) {
        return Ok(true);
    }
    if r.kind == Kind::DataProduct {
        return Ok(false);
    }
    for name in state.store.contract_names(&r.id).await? {
        if caller.owns(&state.store.get(Kind::DataContract, &name).await?) {
            return Ok(true);
        }
    }
    Ok(provided.of(state, caller).await?.iter().any(|(id, domain)| *id == r.id && *domain == r.domain))
}

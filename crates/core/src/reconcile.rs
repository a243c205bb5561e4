//! The reconcilers of contracts and products: they read what is stored (level-triggered,
//! never their own memory) and write the status conditions it implies.
//!
//! - `Valid`: the stored document lints without errors (the store only keeps such documents).
//! - `LinksResolved` (products): every port's `contractId` names a registered contract; a
//!   missing link is a condition, not a refusal, so products and contracts can be applied in
//!   any order.
//! - `Provisioned`: False, reason `NoBlockConfigured`, until building blocks exist (issue #5).
//! - `Ready`: valid and fully linked.
//!
//! A condition keeps its `lastTransitionTime` while its status does not change.

use crate::error::Error;
use crate::resource::{Kind, port_links};
use crate::runtime::Action;
use crate::store::{Condition, Store, now};

fn condition(kind: &str, ok: bool, reason: &str, message: String) -> (String, String, String, String) {
    (kind.to_string(), if ok { "True" } else { "False" }.to_string(), reason.to_string(), message)
}

/// Reconciles one resource under the lease `fence` (owner, token); a resource that is gone
/// needs nothing.
pub async fn reconcile(store: &Store, kind: Kind, name: &str, fence: (&str, i64)) -> Result<Action, Error> {
    let record = match store.get(kind, name).await {
        Err(Error::NotFound(_)) => return Ok(Action::AwaitChange),
        other => other?,
    };
    let mut wanted = vec![condition("Valid", true, "Stored", "the document lints without errors".into())];
    let mut linked = true;
    if kind == Kind::DataProduct {
        let mut missing = Vec::new();
        for link in port_links(&record.spec) {
            if store.contract_names(&link.contract_id).await?.is_empty() {
                let label = if link.input { "input port" } else { "output port" };
                missing.push(format!("{label} `{}`: contract `{}` is not registered", link.port, link.contract_id));
            }
        }
        linked = missing.is_empty();
        wanted.push(if linked {
            condition("LinksResolved", true, "ContractsFound", "every port's contract is registered".into())
        } else {
            condition("LinksResolved", false, "ContractMissing", missing.join("; "))
        });
    }
    wanted.push(condition(
        "Provisioned",
        false,
        "NoBlockConfigured",
        "no building block is configured; nothing is provisioned".into(),
    ));
    wanted.push(if linked {
        condition("Ready", true, "Reconciled", "valid and fully linked".into())
    } else {
        condition("Ready", false, "LinksMissing", "a port's contract is not registered".into())
    });
    let previous = store.status(kind, name).await?.map(|s| s.conditions).unwrap_or_default();
    let at = now();
    let conditions: Vec<Condition> = wanted
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let since = previous
                .iter()
                .find(|c| c.kind == kind && c.status == status)
                .map_or_else(|| at.clone(), |c| c.last_transition_time.clone());
            Condition { kind, status, reason, message, last_transition_time: since }
        })
        .collect();
    store.set_status(kind, name, record.generation, &conditions, fence).await?;
    Ok(Action::AwaitChange)
}

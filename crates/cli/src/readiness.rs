//! A resource's readiness at a glance, from what the reconcilers last observed (`reconciled`
//! in the API's answers): the READY and REASON columns of `get`, and when `apply --wait` is
//! done with a resource.

use serde_json::Value as Any;

/// Where a resource stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not reconciled at its current generation yet.
    Pending,
    Ready,
    /// Not Ready: the condition that holds it back (the one `Ready`'s reason points at, or
    /// `Ready` itself), and whether waiting would change that.
    NotReady(Cause),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub condition: String,
    pub reason: String,
    pub message: String,
    /// It stays so until someone changes something (the document, the platform, another
    /// resource): a refusal, a missing block or contract, drift. Otherwise the reconcilers
    /// are still at it (a retried failure, ports waiting for their contracts).
    pub for_good: bool,
}

/// The condition each reason of `Ready: False` points at.
const POINTS_AT: [(&str, &str); 5] = [
    ("BindingFailed", "Bound"),
    ("LinksMissing", "LinksResolved"),
    ("PortsNotReady", "PortsReady"),
    ("NotProvisioned", "Provisioned"),
    ("Drift", "InSync"),
];

/// The reasons that waiting does not change.
const FOR_GOOD: [&str; 6] =
    ["ProvisioningRefused", "BindingFailed", "ContractMissing", "Drift", "BlockMissing", "CleanupFailed"];

/// The readiness of `resource` (a record as the API answers it, with `reconciled`).
pub fn of(resource: &Any) -> Readiness {
    let conditions = resource["reconciled"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let find = |kind: &str| conditions.iter().find(|c| c["type"] == kind);
    let Some(ready) = find("Ready") else { return Readiness::Pending };
    if ready["observedGeneration"].as_i64() < resource["generation"].as_i64() {
        return Readiness::Pending;
    }
    if ready["status"] == "True" {
        return Readiness::Ready;
    }
    let reason = ready["reason"].as_str().unwrap_or_default();
    let pointed = POINTS_AT.iter().find(|(r, _)| *r == reason).and_then(|(_, c)| find(c));
    let cause = pointed.filter(|c| c["status"] == "False").unwrap_or(ready);
    let text = |key: &str| cause[key].as_str().unwrap_or_default().to_string();
    let reason = text("reason");
    Readiness::NotReady(Cause {
        condition: text("type"),
        for_good: FOR_GOOD.contains(&reason.as_str()),
        reason,
        message: text("message"),
    })
}

impl Readiness {
    /// The READY and REASON columns.
    pub fn columns(&self) -> (&str, &str) {
        match self {
            Readiness::Pending => ("Unknown", "Reconciling"),
            Readiness::Ready => ("True", ""),
            Readiness::NotReady(cause) => ("False", &cause.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(generation: i64, conditions: Any) -> Any {
        json!({ "generation": generation, "reconciled": { "conditions": conditions } })
    }

    fn condition(kind: &str, holds: bool, reason: &str, generation: i64) -> Any {
        let status = if holds { "True" } else { "False" };
        json!({ "type": kind, "status": status, "reason": reason, "message": format!("{kind} says {reason}"),
                "observedGeneration": generation })
    }

    #[test]
    fn a_resource_is_pending_until_reconciled_at_its_generation() {
        assert_eq!(of(&json!({ "generation": 1, "reconciled": null })), Readiness::Pending);
        let older = with(2, json!([condition("Ready", true, "Reconciled", 1)]));
        assert_eq!(of(&older), Readiness::Pending, "Ready of generation 1 says nothing of 2");
        assert_eq!(of(&with(2, json!([condition("Ready", true, "Reconciled", 2)]))), Readiness::Ready);
    }

    #[test]
    fn the_reason_is_the_condition_ready_points_at() {
        let refused = with(
            1,
            json!([
                condition("ApproversResolved", false, "UnknownApprovers", 1),
                condition("Provisioned", false, "ProvisioningRefused", 1),
                condition("Ready", false, "NotProvisioned", 1),
            ]),
        );
        let Readiness::NotReady(cause) = of(&refused) else { panic!("not ready") };
        assert_eq!((cause.condition.as_str(), cause.reason.as_str()), ("Provisioned", "ProvisioningRefused"));
        assert_eq!(cause.message, "Provisioned says ProvisioningRefused");
        assert!(cause.for_good, "a refusal does not pass by waiting");
        let retried = with(
            1,
            json!([
                condition("Provisioned", false, "ProvisioningFailed", 1),
                condition("Ready", false, "NotProvisioned", 1)
            ]),
        );
        assert_eq!(of(&retried).columns(), ("False", "ProvisioningFailed"));
        let Readiness::NotReady(cause) = of(&retried) else { panic!("not ready") };
        assert!(!cause.for_good, "a failure that is retried may pass");
        // A reason that points nowhere is Ready's own.
        let deleting = with(1, json!([condition("Ready", false, "Deleting", 1)]));
        assert_eq!(of(&deleting).columns(), ("False", "Deleting"));
    }
}

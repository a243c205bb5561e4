//! The access part of a contract's reconcile: grants whose end date passed expire (an event
//! each), the grants in force go to every block that provisioned the contract, each grant
//! records how it is enforced, and what the blocks found on the ports becomes the
//! `AccessInSync` condition. When a contract's place goes (deleted, or moved away), its
//! blocks take back every grant there first.

use std::sync::Arc;

use crate::access::{AccessReport, AccessSync, Grant};
use crate::authz::{APPROVER_LEVELS, ApproverLevel};
use crate::block::{BlockError, BlockResult, Blocks, Call, Provisioner};
use crate::error::Error;
use crate::reconcile::Wanted;
use crate::store::grants::{AccessQuery, AccessRequest, AccessState, Decision};
use crate::store::{ApplyOptions, Record, Store, epoch_ms, now, now_ms};

/// What the access part of a reconcile concluded.
pub(crate) struct Enforced {
    pub condition: Wanted,
    /// When the next grant ends: look again then.
    pub next_end_ms: Option<u64>,
    pub failure: Option<Error>,
}

/// Expires what is due, hands the grants in force on `record`'s ports to `provisioned`
/// (the blocks that hold them), and records each grant's enforcement.
pub(crate) async fn sync(
    store: &Store,
    blocks: &Blocks,
    record: &Record,
    provisioned: &[Arc<dyn Provisioner>],
    call: &Call,
) -> Result<Enforced, Error> {
    let now_ms = now_ms();
    let (in_force, ended) = active(store, record, now_ms).await?;
    for ended in ended {
        match store.update_access(ended.id, expire, &ApplyOptions::reconciler()).await {
            // Revoked meanwhile: nothing left to expire.
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let access = access(store, &in_force, false).await?;
    let mut report = AccessReport::default();
    for block in provisioned {
        match blocks.call(block.as_ref(), block.sync_access(record, &access, call)).await {
            Ok(found) => report = report.merge(found),
            Err(error) => {
                let condition = ("AccessInSync", false, "AccessFailed", format!("{}: {error}", block.name()));
                let failure = Some(Error::Block { block: block.name().to_string(), error });
                return Ok(Enforced { condition, next_end_ms: None, failure });
            }
        }
    }
    let enforcement = report.enforcement.map_or("unsupported", |e| e.as_str());
    for g in &in_force {
        store.set_enforcement(g.id, enforcement).await?;
    }
    let next_end_ms = in_force
        .iter()
        .filter_map(|g| g.until.as_deref().and_then(epoch_ms))
        .min()
        .map(|end| u64::try_from(end - now_ms).unwrap_or(0) + 1);
    Ok(Enforced { condition: condition(in_force.len(), enforcement, &report), next_end_ms, failure: None })
}

fn expire(g: &mut AccessRequest) -> Result<&'static str, Error> {
    if g.state != AccessState::Active {
        return Err(Error::conflict(crate::ErrorCode::ConcurrentChange, "the grant is no longer active"));
    }
    g.state = AccessState::Expired;
    Ok("expired")
}

fn condition(grants: usize, enforcement: &str, report: &AccessReport) -> Wanted {
    let mut found: Vec<String> = report.drift.iter().map(|d| format!("drift: {d}")).collect();
    found.extend(report.problems.iter().cloned());
    let removed = if report.removed.is_empty() {
        String::new()
    } else {
        format!("; removed privileges no grant explained: {}", report.removed.join("; "))
    };
    if found.is_empty() {
        let message = format!("{grants} grant(s) in force, {enforcement}{removed}");
        ("AccessInSync", true, "GrantsApplied", message)
    } else {
        let reason = if report.drift.is_empty() { "GrantProblem" } else { "AccessDrift" };
        ("AccessInSync", false, reason, format!("{}{removed}", found.join("; ")))
    }
}

/// Takes back every grant `block` made on the places `old` declares (they are going); the
/// grants still in force keep what they hold elsewhere.
pub(crate) async fn release(
    store: &Store,
    blocks: &Blocks,
    block: &dyn Provisioner,
    old: &Record,
    call: &Call,
) -> BlockResult<()> {
    let now_ms = now_ms();
    let prepared = async { access(store, &active(store, old, now_ms).await?.0, true).await };
    let access = prepared.await.map_err(|e| BlockError::Transient(e.to_string()))?;
    blocks.call(block, block.sync_access(old, &access, call)).await.map(|_| ())
}

/// The active grants on `record`'s ports: (those in force at `now_ms`, those whose end passed).
async fn active(
    store: &Store,
    record: &Record,
    now_ms: i64,
) -> Result<(Vec<AccessRequest>, Vec<AccessRequest>), Error> {
    let query =
        AccessQuery { contract: Some(record.name.clone()), state: Some(AccessState::Active), ..Default::default() };
    Ok(store.access_requests(&query).await?.into_iter().partition(|g| g.in_force(now_ms)))
}

/// What the blocks are told: the installation, and each grant in force with its consumer's
/// database role.
async fn access(store: &Store, in_force: &[AccessRequest], releasing: bool) -> Result<AccessSync, Error> {
    let mut grants = Vec::new();
    for g in in_force {
        let database_role = match store.principal(&g.consumer).await {
            Ok(p) => p.database_role,
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        grants.push(Grant { id: g.id, consumer: g.consumer.clone(), database_role, write: g.write });
    }
    Ok(AccessSync { installation: store.installation().await?, grants, releasing })
}

/// A contract that goes ends its requests and grants: pending ones are rejected, active ones
/// revoked, each with an event.
pub(crate) async fn end_all(store: &Store, record: &Record) -> Result<(), Error> {
    let query = AccessQuery { contract: Some(record.name.clone()), ..Default::default() };
    for request in store.access_requests(&query).await? {
        let end = |g: &mut AccessRequest| -> Result<&'static str, Error> {
            let (state, action) = match g.state {
                AccessState::Pending => (AccessState::Rejected, "rejected"),
                AccessState::Active => (AccessState::Revoked, "revoked"),
                _ => return Err(Error::conflict(crate::ErrorCode::ConcurrentChange, "already ended")),
            };
            g.state = state;
            g.decisions.push(Decision {
                by: "meshplane".into(),
                level: 0,
                approved: false,
                comment: format!("contract {} was deleted", record.name),
                at: now(),
            });
            Ok(action)
        };
        match store.update_access(request.id, end, &ApplyOptions::reconciler()).await {
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `ApproversResolved`, for a contract with roles: every approver its roles name is a known
/// user or group; otherwise the names that are not (requests for those roles fall back to the
/// owning team at that level).
pub(crate) async fn approvers(store: &Store, record: &Record) -> Result<Option<Wanted>, Error> {
    let Some(roles) = record.spec.get("roles").and_then(serde_json::Value::as_array) else { return Ok(None) };
    let known: Vec<String> = store.principals().await?.into_iter().map(|p| p.name).collect();
    let mut unresolved = Vec::new();
    for role in roles {
        for level in APPROVER_LEVELS {
            for name in ApproverLevel::of(role, level, &known).unknown {
                let role = role.get("role").and_then(serde_json::Value::as_str).unwrap_or("?");
                unresolved.push(format!("role `{role}` {level}: `{name}` is no known user or group"));
            }
        }
    }
    Ok(Some(if unresolved.is_empty() {
        ("ApproversResolved", true, "Resolved", "every role's approvers are known users or groups".into())
    } else {
        let message = format!("{} (its requests go to the owning team instead)", unresolved.join("; "));
        ("ApproversResolved", false, "UnknownApprovers", message)
    }))
}

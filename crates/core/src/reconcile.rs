//! The reconcilers of contracts and products: they read what is stored (level-triggered,
//! never their own memory), hand provisioning to the building blocks, and write the status
//! conditions it all implies.
//!
//! - `Valid`: the stored document lints without errors (the store only keeps such documents).
//! - `LinksResolved` (products): every port's `contractId` names a registered contract, and
//!   every output port's is of the product's own domain; a missing link is a condition, not a
//!   refusal, so products and contracts can be applied in any order.
//! - `PortsReady` (linked products): the contract of every output port is Ready (provisioned
//!   by its blocks); while one is not, the product is reconciled again when that contract's
//!   status changes (the change feed carries it).
//! - `Bound` (when the platform checks binding): every part of the resource has its block
//!   (each of a contract's servers of the platform's environment); False with the reasons.
//! - `Provisioned`: every block the resource concerns has provisioned it (each block's
//!   finalizer is put on the record first); reason `NoBlockConfigured` when no block is
//!   concerned, `WaitingForLinks` while a link is missing, `ProvisioningFailed` with the
//!   block's reason otherwise (and the reconcile backs off).
//! - `InSync` (when a block provisioned it): the stores hold what the resource declares;
//!   False with reason `Drift` and every difference the blocks found otherwise.
//! - `Ready`: valid, fully linked, its output ports' contracts Ready, provisioned by every
//!   concerned block, and without drift (a resource no block is concerned with is Ready once
//!   valid and linked).
//!
//! A server that an earlier version declared and the current one does not (the port moved,
//! within a block or to another) is cleaned up by its block; what stays becomes an orphan (the
//! old place is kept until purged), and a block no longer concerned loses its finalizer.
//!
//! A resource whose deletion was asked for is finalized instead: every finalizer's block
//! cleans up (by its deletion policy; what it leaves in place is named in the `deleted` change
//! record), its finalizer comes off, and the record goes when none is left. Until then
//! `Ready` is False with reason `Deleting` (or why the cleanup is stuck).
//!
//! - `PolicyCompliant` (when a policy covers it, or did): every `apply` policy in force that
//!   covers the resource passes on the stored document; False with reason `Violation` (a
//!   `deny` policy's) or `Warning` (only `warn` policies'), naming each policy and rule. It
//!   does not change `Ready`: a resource applied before a policy is marked, not stopped.
//!
//! A policy itself is Ready (`InForce`) once its module compiles; an exemption is Ready
//! (`Active`) until it expires (`Expired`), and the resources it names are reconciled again
//! when it does.
//!
//! A condition keeps its `lastTransitionTime` while its status does not change.

use serde_json::Value as Any;

use crate::block::{BlockError, BlockResult, Blocks, Call, Fence, Leftover, Provisioner};
use crate::controller::Action;
use crate::enforce;
use crate::error::Error;
use crate::governance;
use crate::resource::{Kind, port_links};
use crate::store::checks::Standing;
use crate::store::{Condition, ConditionStatus, Record, Status, Store, now};

/// The reason of `Provisioned` when no block is concerned: nothing to wait for.
const NO_BLOCK: &str = "NoBlockConfigured";

/// A condition as the reconciler wants it: (type, ok, reason, message).
pub(crate) type Wanted = (&'static str, bool, &'static str, String);

/// Reconciles one resource under the lease `fence` (owner, token); a resource that is gone
/// needs nothing. A reconcile that ends well has given the lease back (with its status
/// write, or once the record is gone); after an error the caller gives it back.
pub async fn reconcile(
    store: &Store,
    blocks: &Blocks,
    kind: Kind,
    name: &str,
    fence: (&str, i64),
) -> Result<Action, Error> {
    let (record, previous) = match store.get_observed(kind, name).await {
        Err(Error::NotFound(_)) => {
            store.release_lease(kind.as_str(), name, fence.0, fence.1).await?;
            return Ok(Action::AwaitChange);
        }
        other => other?,
    };
    tracing::Span::current().record("generation", record.generation);
    let call = Call {
        installation: store.installation().await?,
        fence: Some(Fence { owner: fence.0.to_string(), token: fence.1 }),
    };
    if record.deletion_requested.is_some() {
        return finalize(store, blocks, kind, &record, fence, &call).await;
    }
    let mut wanted: Vec<Wanted> = vec![("Valid", true, "Stored", "the document lints without errors".into())];
    if kind.governs() {
        // Nothing to provision: a policy is in force once its module compiles, an exemption
        // until it expires (and is reconciled again then).
        let (ready, recheck_ms) = governance::readiness(store, &record);
        wanted.push(ready);
        write_status(store, &record, previous, wanted, &[], fence).await?;
        return Ok(recheck_ms.map_or(Action::AwaitChange, Action::RequeueAfter));
    }
    let had_compliance = previous.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.kind == "PolicyCompliant"));
    let (compliant, exemption_ends_ms) = governance::compliance(store, &record, had_compliance).await?;
    wanted.extend(compliant);
    if kind == Kind::DataContract {
        wanted.extend(tests_passing(&store.standing_of(&record.name).await?));
    }
    let mut linked = true;
    let mut ports_waiting = Vec::new();
    let mut ports_failing = Vec::new();
    let mut ports_tested = false;
    if kind == Kind::DataProduct {
        let mut missing = Vec::new();
        for link in port_links(&record.spec) {
            let names = store.contract_names(&link.contract_id).await?;
            let label = if link.input { "input port" } else { "output port" };
            if names.is_empty() {
                missing.push(format!("{label} `{}`: contract `{}` is not registered", link.port, link.contract_id));
            }
            if !link.input
                && let Some(name) = names.first()
                && let Ok(contract) = store.get(Kind::DataContract, name).await
                && contract.domain != record.domain
            {
                missing.push(format!(
                    "{label} `{}`: contract `{}` belongs to domain `{}`; a product provides only its own domain's contracts",
                    link.port, link.contract_id, contract.domain
                ));
                continue;
            }
            for name in names.iter().filter(|_| !link.input) {
                let status = store.status(Kind::DataContract, name).await?;
                let tests = status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.kind == TESTS_PASSING));
                ports_tested |= tests.is_some();
                if let Some(failing) = tests.filter(|c| c.status == ConditionStatus::False) {
                    ports_failing.push(format!("output port `{}`: contract {name}: {}", link.port, failing.message));
                }
                let ready = status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.kind == "Ready"));
                if ready.is_none_or(|c| c.status != ConditionStatus::True) {
                    let why = ready.map_or("not reconciled yet".to_string(), |c| c.reason.clone());
                    ports_waiting.push(format!("{label} `{}`: contract {name} is not Ready ({why})", link.port));
                }
            }
        }
        linked = missing.is_empty();
        if ports_tested {
            wanted.push(if ports_failing.is_empty() {
                (TESTS_PASSING, true, "ChecksPassing", "every output port's contract passes its checks".into())
            } else {
                (TESTS_PASSING, false, "ChecksFailing", ports_failing.join("; "))
            });
        }
        wanted.push(if linked {
            ("LinksResolved", true, "ContractsFound", "every port's contract is registered".into())
        } else {
            ("LinksResolved", false, "ContractMissing", missing.join("; "))
        });
        if linked {
            wanted.push(if ports_waiting.is_empty() {
                ("PortsReady", true, "ContractsReady", "every output port's contract is Ready".into())
            } else {
                ("PortsReady", false, "ContractsNotReady", ports_waiting.join("; "))
            });
        }
    }
    let unbound = blocks.binding_problems(&record);
    if !unbound.is_empty() {
        wanted.push(("Bound", false, "BindingFailed", unbound.join("; ")));
    } else if blocks.binder.is_some() {
        wanted.push(("Bound", true, "Bound", "every part has its block".into()));
    }
    // What the last reconcile wrote (read with the record, under the lease, so still what is
    // stored): the generation it saw, and the conditions to carry over.
    let seen = previous.as_ref().map_or(0, |s| s.observed_generation);
    let released = release(store, blocks, kind, &record, seen, fence, &call).await?;
    let (provisioned, drift, failure) = provision(store, blocks, kind, &record, linked, fence, &call).await?;
    let in_place = provisioned.1 || provisioned.2 == NO_BLOCK;
    wanted.push(provisioned);
    let mut next_end_ms = None;
    let mut access_failure = None;
    if kind == Kind::DataContract {
        wanted.extend(enforce::approvers(store, &record).await?);
        if failure.is_none() {
            let holders: Vec<_> = blocks.concerned(&record).cloned().collect();
            let enforced = enforce::sync(store, blocks, &record, &holders, &call).await?;
            wanted.push(enforced.condition);
            (next_end_ms, access_failure) = (enforced.next_end_ms, enforced.failure);
        }
    }
    if let Some(drift) = &drift {
        wanted.push(if drift.is_empty() {
            ("InSync", true, "NoDrift", "the stores hold what the resource declares".into())
        } else {
            ("InSync", false, "Drift", drift.join("; "))
        });
    }
    let drifted = drift.as_ref().is_some_and(|d| !d.is_empty());
    wanted.push(match (linked, in_place, drifted) {
        _ if !unbound.is_empty() => ("Ready", false, "BindingFailed", "a part has no block (see Bound)".into()),
        (false, ..) => ("Ready", false, "LinksMissing", "a port's contract is not registered".into()),
        _ if !ports_waiting.is_empty() => {
            ("Ready", false, "PortsNotReady", "an output port's contract is not Ready (see PortsReady)".into())
        }
        (true, false, _) => ("Ready", false, "NotProvisioned", "a block has not provisioned it".into()),
        (true, true, true) => ("Ready", false, "Drift", "a store differs from what is declared (see InSync)".into()),
        (true, true, false) => ("Ready", true, "Reconciled", "valid, fully linked and provisioned".into()),
    });
    // TestsPassing is said here whenever there is something to say: when not, it goes (a
    // product whose last tested port went, a contract whose servers all went).
    write_status(store, &record, previous, wanted, &[TESTS_PASSING], fence).await?;
    match failure.or(released).or(access_failure) {
        Some(error) => Err(error),
        // A product waiting on its contracts is requeued by their status changes, which the
        // change feed carries; only a grant's end date needs a timer.
        // An exemption's end changes the resource's compliance: look again then.
        None => {
            Ok(next_end_ms.into_iter().chain(exemption_ends_ms).min().map_or(Action::AwaitChange, Action::RequeueAfter))
        }
    }
}

/// Hands the resource to every block it concerns, each one's finalizer first; returns the
/// `Provisioned` condition, the drift the blocks found (when they ran), and the first failure.
async fn provision(
    store: &Store,
    blocks: &Blocks,
    kind: Kind,
    record: &Record,
    linked: bool,
    fence: (&str, i64),
    call: &Call,
) -> Result<(Wanted, Option<Vec<String>>, Option<Error>), Error> {
    let concerned: Vec<_> = blocks.concerned(record).collect();
    if concerned.is_empty() {
        let message = "no building block is concerned with it; nothing is provisioned".into();
        return Ok((("Provisioned", false, NO_BLOCK, message), None, None));
    }
    if !linked {
        let message = "provisioning waits until every port's contract is registered".into();
        return Ok((("Provisioned", false, "WaitingForLinks", message), None, None));
    }
    let (mut done, mut drift) = (Vec::new(), Vec::new());
    for block in concerned {
        store.add_finalizer(kind, &record.name, &block.finalizer(), fence).await?;
        match blocks.call(block.as_ref(), block.provision(record, call)).await {
            Ok(found) => {
                done.push(format!("{}: {}", block.name(), found.summary));
                drift.extend(found.drift.into_iter().map(|d| format!("{}: {d}", block.name())));
            }
            Err(error) => {
                // A failure that may pass is retried; one that cannot waits for a change.
                let reason = if error.is_transient() { "ProvisioningFailed" } else { "ProvisioningRefused" };
                let condition = ("Provisioned", false, reason, format!("{}: {error}", block.name()));
                return Ok((condition, None, Some(Error::Block { block: block.name().to_string(), error })));
            }
        }
    }
    Ok((("Provisioned", true, "Provisioned", done.join("; ")), Some(drift), None))
}

/// Lets go of the places the resource no longer declares: a server an earlier version had
/// (since the last reconcile) and the current one has not — it moved to another place or
/// another block. Each block concerned cleans up what it made there, what stays becomes an
/// orphan noted `moved away`, and a block no longer concerned at all loses its finalizer.
/// Returns the first failure (the finalizer then stays, and the next reconcile tries again).
async fn release(
    store: &Store,
    blocks: &Blocks,
    kind: Kind,
    record: &Record,
    seen: i64,
    fence: (&str, i64),
    call: &Call,
) -> Result<Option<Error>, Error> {
    if record.finalizers.is_empty() {
        return Ok(None);
    }
    let earlier: Vec<Any> = if seen < record.generation {
        let history = store.history(kind, &record.name).await?;
        let between = history.into_iter().filter(|c| c.generation >= seen && c.generation < record.generation);
        between.filter_map(|c| c.after).collect()
    } else {
        Vec::new()
    };
    let gone = gone_servers(record, &earlier);
    for finalizer in &record.finalizers {
        let Some(block) = blocks.by_finalizer(finalizer) else { continue };
        let concerned = block.concerns(record);
        let left_behind = gone.clone().filter(|old| block.concerns(old));
        let old = match left_behind {
            Some(old) => Some(old),
            None if !concerned => held_by(store, kind, record, block.as_ref()).await?,
            None => None,
        };
        if let Some(old) = old {
            match cleanup(store, blocks, block.as_ref(), &old, call).await {
                Ok(kept) => {
                    let moved: Vec<(String, Leftover)> = kept
                        .into_iter()
                        .map(|mut l| {
                            l.note = format!("moved away: {}", l.note);
                            (block.name().to_string(), l)
                        })
                        .collect();
                    store.add_orphans(kind.as_str(), &record.name, &moved).await?;
                }
                Err(error) => return Ok(Some(Error::Block { block: block.name().to_string(), error })),
            }
        }
        if !concerned {
            store.remove_finalizer(kind, &record.name, finalizer, fence).await?;
        }
    }
    Ok(None)
}

/// Where a server's data is: its name, type and endpoint fields (a description or a role
/// may change without moving anything).
fn place_of(server: &Any) -> Vec<Any> {
    let fields = ["server", "type", "environment", "host", "port", "database", "schema", "location", "path"];
    fields.iter().map(|f| server.get(f).cloned().unwrap_or(Any::Null)).collect()
}

/// The latest earlier version with only the servers whose place the current one no longer
/// declares, if there are any.
fn gone_servers(record: &Record, earlier: &[Any]) -> Option<Record> {
    let servers = |spec: &Any| spec.get("servers").and_then(Any::as_array).cloned().unwrap_or_default();
    let current: Vec<Vec<Any>> = servers(&record.spec).iter().map(place_of).collect();
    let mut gone: Vec<Any> = Vec::new();
    for spec in earlier {
        for server in servers(spec) {
            let place = place_of(&server);
            if !current.contains(&place) && !gone.iter().any(|g| place_of(g) == place) {
                gone.push(server);
            }
        }
    }
    let mut spec = earlier.last()?.clone();
    if gone.is_empty() {
        return None;
    }
    spec["servers"] = Any::Array(gone);
    Some(record.with_spec(spec))
}

/// The latest version of the resource that `block` is concerned with: the record itself, or
/// an earlier version from its history (the block has not seen the move yet).
async fn held_by(store: &Store, kind: Kind, record: &Record, block: &dyn Provisioner) -> Result<Option<Record>, Error> {
    if block.concerns(record) {
        return Ok(Some(record.clone()));
    }
    let history = store.history(kind, &record.name).await?;
    let versions = history.into_iter().rev().filter_map(|change| change.after);
    Ok(versions.map(|spec| record.with_spec(spec)).find(|old| block.concerns(old)))
}

/// Cleans up through every finalizer's block, then removes the record.
async fn finalize(
    store: &Store,
    blocks: &Blocks,
    kind: Kind,
    record: &Record,
    fence: (&str, i64),
    call: &Call,
) -> Result<Action, Error> {
    let mut left = Vec::new();
    if kind == Kind::DataContract {
        enforce::end_all(store, record).await?;
    }
    for finalizer in &record.finalizers {
        let stuck = match blocks.by_finalizer(finalizer) {
            None => {
                let message = format!("`{finalizer}`: its block is not configured, so it cannot clean up");
                Some(("BlockMissing", BlockError::Permanent(message)))
            }
            Some(block) => match held_by(store, kind, record, block.as_ref()).await? {
                None => None,
                Some(held) => match cleanup(store, blocks, block.as_ref(), &held, call).await {
                    Ok(kept) => {
                        left.extend(kept.into_iter().map(|k| (block.name().to_string(), k)));
                        None
                    }
                    Err(e) => Some(("CleanupFailed", e)),
                },
            },
        };
        if let Some((reason, error)) = stuck {
            let message = if reason == "BlockMissing" { error.to_string() } else { format!("{finalizer}: {error}") };
            let previous = store.status(kind, &record.name).await?;
            write_status(store, record, previous, vec![("Ready", false, reason, message)], &[], fence).await?;
            return Err(Error::Block { block: finalizer.clone(), error });
        }
        store.remove_finalizer(kind, &record.name, finalizer, fence).await?;
    }
    store.remove(kind, &record.name, fence, &left).await?;
    store.release_lease(kind.as_str(), &record.name, fence.0, fence.1).await?;
    Ok(Action::AwaitChange)
}

/// The condition that says whether a contract's checks pass as of their latest runs (failing
/// checks and runs that could not happen; warnings do not fail it), on a product whether its
/// output ports' contracts' do. It does not change readiness.
const TESTS_PASSING: &str = "TestsPassing";

/// A contract's [`TESTS_PASSING`], from its checks' standing; none before its first run.
fn tests_passing(standing: &[Standing]) -> Option<Wanted> {
    let failing: Vec<String> = standing
        .iter()
        .filter(|s| s.outcome == "fail" || s.outcome == "error")
        .map(|s| format!("{} on {}", s.key, s.server))
        .collect();
    if standing.is_empty() {
        return None;
    }
    Some(match failing.len() {
        0 => (TESTS_PASSING, true, "ChecksPassing", "every check passed its latest run".into()),
        n => {
            let named = failing.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            let more = if n > 5 { format!(" and {} more", n - 5) } else { String::new() };
            (TESTS_PASSING, false, "ChecksFailing", format!("{n} check(s) fail: {named}{more}"))
        }
    })
}

/// Takes back the grants a block made on what `held` declares, then cleans it up.
async fn cleanup(
    store: &Store,
    blocks: &Blocks,
    block: &dyn Provisioner,
    held: &Record,
    call: &Call,
) -> BlockResult<Vec<Leftover>> {
    enforce::release(store, blocks, block, held, call).await?;
    blocks.call(block, block.cleanup(held, call)).await
}

/// Writes the wanted conditions over the `previous` status's: a condition type not wanted now
/// is kept as it was (unless it is one of `recomputed`, which this write says all there is
/// of: one it does not want goes), and a condition whose status did not change keeps its
/// transition time.
async fn write_status(
    store: &Store,
    record: &Record,
    previous: Option<Status>,
    wanted: Vec<Wanted>,
    recomputed: &[&str],
    fence: (&str, i64),
) -> Result<(), Error> {
    let previous = previous.map(|s| s.conditions).unwrap_or_default();
    let at = now();
    let kept = |c: &&Condition| !wanted.iter().any(|w| w.0 == c.kind) && !recomputed.contains(&c.kind.as_str());
    let mut conditions: Vec<Condition> = previous.iter().filter(kept).cloned().collect();
    for (type_, ok, reason, message) in wanted {
        let status = ConditionStatus::of(ok);
        let since = previous
            .iter()
            .find(|c| c.kind == type_ && c.status == status)
            .map_or_else(|| at.clone(), |c| c.last_transition_time.clone());
        conditions.push(Condition {
            kind: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: record.generation,
            last_transition_time: since,
        });
    }
    store.set_status(record, &previous, &conditions, fence).await?;
    // Only what changed its status is worth a line; the rest is in the status.
    let moved: Vec<String> = Condition::transitions(&previous, &conditions)
        .map(|(was, c)| {
            let from = was.map_or("-", ConditionStatus::as_str);
            format!("{}: {from}→{} ({})", c.kind, c.status.as_str(), c.reason)
        })
        .collect();
    if !moved.is_empty() {
        tracing::info!(transitions = %moved.join(", "), "status changed");
    }
    Ok(())
}

//! Deletion, finalizer style: the record goes only once every block that provisioned it has
//! cleaned up; a record nothing provisioned goes at once; `prune` asks for the deletion of
//! what a domain's applied set no longer holds.

use std::sync::{Arc, Mutex};

use meshplane_core::block::{BlockError, BlockFuture, BlockResult, Blocks, Call, Leftover, Provisioned, Provisioner};
use meshplane_core::reconcile::reconcile;
use meshplane_core::resource::Kind;
use meshplane_core::store::{ApplyOptions, AuditQuery, Outcome, Record, Store};
use meshplane_core::{Error, ErrorCode};

use crate::backends::{Place, contract, open, options, product, resource};
use crate::on_both;

/// A block that keeps what it provisioned in memory, and fails while told to: enough to watch
/// the reconciler's side of the SPI (the real stores' blocks have their own tests).
#[derive(Default)]
struct Ledger {
    provisioned: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
    failing: Mutex<bool>,
    drift: Mutex<Vec<String>>,
}

impl Provisioner for Ledger {
    fn name(&self) -> &str {
        "ledger"
    }
    fn concerns(&self, record: &Record) -> bool {
        record.kind == Kind::DataProduct
    }
    fn provision<'a>(&'a self, record: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("provision {}", record.name));
            if *self.failing.lock().unwrap() {
                return Err(BlockError::Transient("the store does not answer".into()));
            }
            let mut provisioned = self.provisioned.lock().unwrap();
            if !provisioned.contains(&record.name) {
                provisioned.push(record.name.clone());
            }
            Ok(Provisioned { summary: "provisioned".into(), drift: self.drift.lock().unwrap().clone() })
        })
    }
    fn cleanup<'a>(&'a self, record: &'a Record, _: &'a Call) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("cleanup {}", record.name));
            if *self.failing.lock().unwrap() {
                return Err(BlockError::Transient("the store does not answer".into()));
            }
            self.provisioned.lock().unwrap().retain(|n| n != &record.name);
            Ok(vec![Leftover { place: record.name.clone(), note: format!("{}'s data", record.name), purgeable: true }])
        })
    }
}

/// One reconcile under a fresh lease, as the server's loop runs it.
pub(crate) async fn run(store: &Store, blocks: &Blocks, kind: Kind, name: &str) -> Result<(), Error> {
    let token = store.acquire_lease(kind.as_str(), name, "test", 60_000).await.unwrap().unwrap();
    let result = reconcile(store, blocks, kind, name, ("test", token)).await;
    store.release_lease(kind.as_str(), name, "test", token).await.unwrap();
    result.map(|_| ())
}

/// The condition `type_` of a resource, as (status, reason), if it has one.
pub(crate) async fn condition(store: &Store, kind: Kind, name: &str, type_: &str) -> Option<(String, String)> {
    let status = store.status(kind, name).await.unwrap()?;
    let c = status.conditions.into_iter().find(|c| c.kind == type_)?;
    Some((c.status.as_str().to_string(), c.reason))
}

async fn ready(store: &Store, kind: Kind, name: &str) -> (String, String) {
    condition(store, kind, name, "Ready").await.unwrap()
}

fn shop() -> String {
    product("shop", "sales", "outputPorts:\n  - { name: orders, version: 1.0.0, contractId: orders }\n")
}

on_both!(a_record_goes_only_after_its_blocks_cleaned_up, |place: Place| async move {
    let store = open(&place).await;
    let ledger = Arc::new(Ledger::default());
    let blocks = Blocks::of(vec![ledger.clone()]);
    let docs = [resource(&contract("orders", "1.0.0", "active", "")), resource(&shop())];
    store.apply(&docs, &[], &options()).await.unwrap();
    // The product waits for its output port's contract to be Ready.
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("False".into(), "PortsNotReady".into()));
    run(&store, &blocks, Kind::DataContract, "orders@v1").await.unwrap();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("True".into(), "Reconciled".into()));
    let observed = store.status(Kind::DataProduct, "shop").await.unwrap().unwrap().conditions;
    assert!(observed.iter().all(|c| c.observed_generation == 1), "each condition names its generation: {observed:?}");
    assert_eq!(store.get(Kind::DataProduct, "shop").await.unwrap().finalizers, ["block/ledger"]);
    assert_eq!(*ledger.provisioned.lock().unwrap(), ["shop"]);
    // The store drifts from what is declared: not Ready, and every difference is named.
    *ledger.drift.lock().unwrap() = vec!["column `x` is missing".into()];
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("False".into(), "Drift".into()));
    let status = store.status(Kind::DataProduct, "shop").await.unwrap().unwrap();
    let in_sync = status.conditions.iter().find(|c| c.kind == "InSync").unwrap();
    assert_eq!((in_sync.status.as_str(), in_sync.message.as_str()), ("False", "ledger: column `x` is missing"));
    ledger.drift.lock().unwrap().clear();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("True".into(), "Reconciled".into()));

    let marked = store.delete(Kind::DataProduct, "shop", &options()).await.unwrap();
    assert!(marked.deletion_requested.is_some());
    let again = store.delete(Kind::DataProduct, "shop", &options()).await.unwrap();
    assert_eq!(again.deletion_requested, marked.deletion_requested, "asking again changes nothing");
    let refused = store.apply(&[resource(&shop())], &[], &options()).await.unwrap_err();
    assert_eq!((refused.code(), refused.code().status()), (ErrorCode::BeingDeleted, 409), "{refused}");

    // The block fails: the record stays, and says why.
    *ledger.failing.lock().unwrap() = true;
    let failed = run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap_err();
    assert_eq!(failed.code(), ErrorCode::BlockFailed, "{failed}");
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("False".into(), "CleanupFailed".into()));
    assert_eq!(store.get(Kind::DataProduct, "shop").await.unwrap().finalizers, ["block/ledger"]);

    // It recovers: cleaned up, then the record goes, with its last change record.
    *ledger.failing.lock().unwrap() = false;
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert!(ledger.provisioned.lock().unwrap().is_empty());
    assert!(matches!(store.get(Kind::DataProduct, "shop").await, Err(Error::NotFound(_))));
    assert!(store.status(Kind::DataProduct, "shop").await.unwrap().is_none());
    let history = store.history(Kind::DataProduct, "shop").await.unwrap();
    let actions: Vec<&str> = history.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["created", "deleting", "deleted"]);
    assert_eq!(history[2].event["data"]["leftInPlace"], serde_json::json!(["ledger: shop's data"]));
    let orphans = store.orphans(false).await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(
        (orphans[0].block.as_str(), orphans[0].place.as_str(), orphans[0].name.as_str()),
        ("ledger", "shop", "shop")
    );
    store.mark_purged(&orphans[0], &options()).await.unwrap();
    store.mark_purged(&orphans[0], &options()).await.unwrap();
    assert!(store.orphans(false).await.unwrap().is_empty());
    let audit = AuditQuery { kind: Some("Orphan".into()), limit: 10, ..AuditQuery::default() };
    let purged = store.audit(&audit).await.unwrap();
    assert_eq!(purged.len(), 1, "one purge, one change record");
    assert_eq!(
        (purged[0].action.as_str(), purged[0].before.as_ref().map(|b| b["place"].clone())),
        ("purged", Some("shop".into()))
    );
    assert!(store.orphans(true).await.unwrap()[0].purged_at.is_some(), "the purge is remembered");
    // Gone, it can be created anew.
    let anew = store.apply(&[resource(&shop())], &[], &options()).await.unwrap();
    assert_eq!((anew[0].outcome, anew[0].generation), (Outcome::Created, 1));
});

on_both!(cleanup_is_right_when_provisioning_never_ran_or_failed, |place: Place| async move {
    let store = open(&place).await;
    let ledger = Arc::new(Ledger::default());
    let blocks = Blocks::of(vec![ledger.clone()]);
    // No contract: the links are missing, so nothing is provisioned and no finalizer is set.
    store.apply(&[resource(&shop())], &[], &options()).await.unwrap();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert!(store.get(Kind::DataProduct, "shop").await.unwrap().finalizers.is_empty());
    store.delete(Kind::DataProduct, "shop", &options()).await.unwrap();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert!(matches!(store.get(Kind::DataProduct, "shop").await, Err(Error::NotFound(_))));
    assert_eq!(*ledger.calls.lock().unwrap(), Vec::<String>::new(), "no block was asked anything");

    // Provisioning fails halfway: the finalizer was set first, so cleanup still runs.
    store
        .apply(&[resource(&contract("orders", "1.0.0", "active", "")), resource(&shop())], &[], &options())
        .await
        .unwrap();
    *ledger.failing.lock().unwrap() = true;
    assert_eq!(run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap_err().code(), ErrorCode::BlockFailed);
    let status = store.status(Kind::DataProduct, "shop").await.unwrap().unwrap();
    let provisioned = status.conditions.iter().find(|c| c.kind == "Provisioned").unwrap();
    assert_eq!((provisioned.status.as_str(), provisioned.reason.as_str()), ("False", "ProvisioningFailed"));
    assert!(provisioned.message.contains("the store does not answer"), "{}", provisioned.message);
    *ledger.failing.lock().unwrap() = false;
    store.delete(Kind::DataProduct, "shop", &options()).await.unwrap();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    assert_eq!(*ledger.calls.lock().unwrap(), ["provision shop", "cleanup shop"]);
    assert!(matches!(store.get(Kind::DataProduct, "shop").await, Err(Error::NotFound(_))));
});

on_both!(a_block_that_is_gone_holds_the_record_and_says_so, |place: Place| async move {
    let store = open(&place).await;
    let blocks = Blocks::of(vec![Arc::new(Ledger::default())]);
    store
        .apply(&[resource(&contract("orders", "1.0.0", "active", "")), resource(&shop())], &[], &options())
        .await
        .unwrap();
    run(&store, &blocks, Kind::DataProduct, "shop").await.unwrap();
    store.delete(Kind::DataProduct, "shop", &options()).await.unwrap();
    let err = run(&store, &Blocks::default(), Kind::DataProduct, "shop").await.unwrap_err();
    assert!(err.to_string().contains("block/ledger"), "{err}");
    assert_eq!(ready(&store, Kind::DataProduct, "shop").await, ("False".into(), "BlockMissing".into()));
    assert!(store.get(Kind::DataProduct, "shop").await.is_ok(), "the record stays");
    // A remove under a lease that is not held is refused.
    let stale = store.remove(Kind::DataProduct, "shop", ("nobody", 99), &[]).await.unwrap_err();
    assert_eq!(stale.code(), ErrorCode::StaleLease);
});

on_both!(deletes_are_checked_and_can_be_dry_runs, |place: Place| async move {
    let store = open(&place).await;
    let missing = store.delete(Kind::DataProduct, "nothing", &options()).await.unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    store.apply(&[resource(&shop())], &[], &options()).await.unwrap();
    let dry = ApplyOptions { dry_run: true, ..options() };
    assert!(store.delete(Kind::DataProduct, "shop", &dry).await.unwrap().deletion_requested.is_some());
    assert!(
        store.get(Kind::DataProduct, "shop").await.unwrap().deletion_requested.is_none(),
        "a dry run keeps nothing"
    );
    assert_eq!(store.history(Kind::DataProduct, "shop").await.unwrap().len(), 1);
});

on_both!(prune_deletes_what_a_domain_no_longer_declares, |place: Place| async move {
    let store = open(&place).await;
    let sales = [
        resource(&contract("orders", "1.0.0", "active", "")),
        resource(&shop()),
        resource(&product("returns", "sales", "")),
    ];
    store.apply(&sales, &[], &options()).await.unwrap();
    store.apply(&[resource(&product("ledger", "finance", ""))], &[], &options()).await.unwrap();
    let pruning = ApplyOptions { prune: true, ..options() };
    let kept = [resource(&contract("orders", "1.0.0", "active", "")), resource(&shop())];

    let dry = store.apply(&kept, &[], &ApplyOptions { dry_run: true, ..pruning.clone() }).await.unwrap();
    let deleting: Vec<&str> = dry.iter().filter(|a| a.outcome == Outcome::Deleting).map(|a| a.name.as_str()).collect();
    assert_eq!(deleting, ["returns"]);
    assert!(store.get(Kind::DataProduct, "returns").await.unwrap().deletion_requested.is_none());

    let applied = store.apply(&kept, &[], &pruning).await.unwrap();
    let deleting: Vec<&str> =
        applied.iter().filter(|a| a.outcome == Outcome::Deleting).map(|a| a.name.as_str()).collect();
    assert_eq!(deleting, ["returns"], "only the applied domain is pruned");
    assert!(store.get(Kind::DataProduct, "returns").await.unwrap().deletion_requested.is_some());
    assert!(store.get(Kind::DataProduct, "ledger").await.unwrap().deletion_requested.is_none());
    // A refused apply prunes nothing either.
    let bad = [resource(&contract("orders", "1.0.0", "active", "tags: [x]\n"))];
    assert!(store.apply(&bad, &[], &pruning).await.is_err());
    assert!(store.get(Kind::DataProduct, "shop").await.unwrap().deletion_requested.is_none());
});

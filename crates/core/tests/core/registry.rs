//! Applying, reading and listing resources.

use meshplane_core::resource::{Kind, Resource};
use meshplane_core::store::{Outcome, Query};
use meshplane_core::{Error, ErrorCode};
use meshplane_spec::load;

use crate::backends::{Place, contract, open, options, product, resource};
use crate::on_both;

on_both!(create_read_and_record_every_change, |place: Place| async move {
    let store = open(&place).await;
    let r = resource(&contract("orders", "1.0.0", "active", ""));
    let applied = store.apply(std::slice::from_ref(&r), &[], &options()).await.unwrap();
    assert_eq!(
        (applied[0].outcome, applied[0].generation, applied[0].name.as_str()),
        (Outcome::Created, 1, "orders@v1")
    );
    let again = store.apply(&[r], &[], &options()).await.unwrap();
    assert_eq!(again[0].outcome, Outcome::Unchanged, "the same content writes nothing");
    let record = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!((record.domain.as_str(), record.generation, record.spec["id"].as_str()), ("sales", 1, Some("orders")));
    let history = store.history(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!(history.len(), 1);
    let event = &history[0].event;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "io.meshplane.datacontract.created");
    assert_eq!(event["subject"], "DataContract/orders@v1");
    assert_eq!(event["id"], format!("meshplane-change-{}", history[0].seq));
    assert_eq!((history[0].actor.as_str(), history[0].origin.as_str()), ("local", "test"));
    assert!(history[0].before.is_none() && history[0].after.as_ref().unwrap()["version"] == "1.0.0");
    assert!(matches!(store.get(Kind::DataContract, "nothing@v1").await, Err(Error::NotFound(_))));
});

on_both!(active_versions_are_immutable_and_drafts_change_in_place, |place: Place| async move {
    let store = open(&place).await;
    store.apply(&[resource(&contract("orders", "1.0.0", "active", ""))], &[], &options()).await.unwrap();
    let changed = resource(&contract("orders", "1.0.0", "active", "tags: [finance]\n"));
    let err = store.apply(&[changed], &[], &options()).await.unwrap_err();
    assert_eq!((err.code(), err.code().status()), (ErrorCode::ImmutableVersion, 409), "{err}");

    store.apply(&[resource(&contract("draft", "0.1.0", "draft", ""))], &[], &options()).await.unwrap();
    let edited =
        store.apply(&[resource(&contract("draft", "0.1.0", "draft", "tags: [wip]\n"))], &[], &options()).await.unwrap();
    assert_eq!((edited[0].outcome, edited[0].generation), (Outcome::Updated, 2));
    let history = store.history(Kind::DataContract, "draft@v0").await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[1].before.is_some(), "an update keeps what it replaced");
});

on_both!(stale_generations_and_owner_changes_are_refused, |place: Place| async move {
    let store = open(&place).await;
    let v1 = resource(&contract("orders", "1.0.0", "active", ""));
    store.apply(&[v1], &[], &options()).await.unwrap();
    let v11 = resource(&contract("orders", "1.1.0", "active", ""));
    let err = store.apply(std::slice::from_ref(&v11), &[Some(7)], &options()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::StaleGeneration, "{err}");
    let ok = store.apply(&[v11], &[Some(1)], &options()).await.unwrap();
    assert_eq!((ok[0].outcome, ok[0].generation), (Outcome::Updated, 2));
    let moved = resource(&contract("orders", "1.2.0", "active", "").replace("domain: sales", "domain: finance"));
    let err = store.apply(&[moved], &[], &options()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::OwnerChange, "{err}");
    let older = resource(&contract("orders", "1.0.5", "active", ""));
    assert_eq!(store.apply(&[older], &[], &options()).await.unwrap_err().code(), ErrorCode::VersionDowngrade);
});

on_both!(breaking_changes_need_a_new_major_which_coexists, |place: Place| async move {
    let store = open(&place).await;
    let with_amount = "      - { name: amount, logicalType: number }\n";
    let v1 = resource(
        &contract("orders", "1.0.0", "active", "")
            .replace("logicalType: string }\n", &format!("logicalType: string }}\n{with_amount}")),
    );
    let shop = product("shop", "sales", "outputPorts:\n  - { name: orders, version: 1.0.0, contractId: orders }\n");
    let billing =
        product("billing", "finance", "inputPorts:\n  - { name: orders, version: 1.0.0, contractId: orders }\n");
    store.apply(&[v1, resource(&shop), resource(&billing)], &[], &options()).await.unwrap();
    // 1.1.0 drops `amount`: breaking under the same major.
    let err = store.apply(&[resource(&contract("orders", "1.1.0", "active", ""))], &[], &options()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BreakingChange, "{err}");
    let details = err.details();
    assert!(details["changes"].as_array().is_some_and(|c| !c.is_empty()), "{details}");
    let dependents: Vec<&str> =
        details["dependents"].as_array().unwrap().iter().map(|d| d["product"].as_str().unwrap()).collect();
    assert_eq!(dependents, ["billing", "shop"]);
    // As 2.0.0 it is another resource, and 1.0.0 stays.
    let v2 = store.apply(&[resource(&contract("orders", "2.0.0", "active", ""))], &[], &options()).await.unwrap();
    assert_eq!((v2[0].name.as_str(), v2[0].outcome), ("orders@v2", Outcome::Created));
    assert_eq!(store.get(Kind::DataContract, "orders@v1").await.unwrap().version, "1.0.0");
});

on_both!(a_batch_is_all_or_nothing, |place: Place| async move {
    let store = open(&place).await;
    store.apply(&[resource(&contract("orders", "1.0.0", "active", ""))], &[], &options()).await.unwrap();
    let before = store.events(0, 100).await.unwrap().len();
    let good = resource(&contract("customers", "1.0.0", "active", ""));
    let bad = resource(&contract("orders", "1.0.0", "active", "tags: [changed]\n"));
    assert!(store.apply(&[good.clone(), bad], &[], &options()).await.is_err());
    assert!(
        matches!(store.get(Kind::DataContract, "customers@v1").await, Err(Error::NotFound(_))),
        "nothing of the batch is kept"
    );
    assert_eq!(store.events(0, 100).await.unwrap().len(), before, "no change record either");
    let dry = meshplane_core::store::ApplyOptions { dry_run: true, ..options() };
    assert_eq!(store.apply(&[good], &[], &dry).await.unwrap()[0].outcome, Outcome::Created);
    assert!(store.get(Kind::DataContract, "customers@v1").await.is_err(), "a dry run keeps nothing");
});

on_both!(lists_filter_and_page, |place: Place| async move {
    let store = open(&place).await;
    let mut batch = Vec::new();
    for i in 0..25 {
        let status = if i % 5 == 0 { "draft" } else { "active" };
        let tags = if i % 2 == 0 { "tags: [gold, pii]\n" } else { "tags: [silver]\n" };
        batch.push(resource(&contract(&format!("c{i:02}"), "1.0.0", status, tags)));
    }
    batch.push(resource(&product("shop", "retail", "")));
    store.apply(&batch, &[], &options()).await.unwrap();
    let mut q = Query { kind: Some(Kind::DataContract), limit: 10, ..Query::default() };
    let mut seen = Vec::new();
    loop {
        let page = store.list(&q).await.unwrap();
        seen.extend(page.items.iter().map(|r| r.name.clone()));
        let Some(next) = page.next else { break };
        let (kind, name) = next.split_once('/').unwrap();
        q.after = Some((kind.to_string(), name.to_string()));
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages follow each other in order");
    let drafts = store.list(&Query { status: Some("draft".into()), limit: 100, ..Query::default() }).await.unwrap();
    assert_eq!(drafts.items.len(), 5);
    let pii = store.list(&Query { tag: Some("pii".into()), limit: 100, ..Query::default() }).await.unwrap();
    assert_eq!(pii.items.len(), 13);
    let retail = store.list(&Query { domain: Some("retail".into()), limit: 100, ..Query::default() }).await.unwrap();
    assert_eq!(retail.items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["shop"]);
});

on_both!(concurrent_applies_of_one_version_give_one_winner, |place: Place| async move {
    let store = open(&place).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let r = resource(&contract("race", "1.0.0", "active", &format!("tags: [t{i}]\n")));
        tasks.push(tokio::spawn(async move { store.apply(&[r], &[], &options()).await }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(applied) => {
                assert_eq!(applied[0].outcome, Outcome::Created);
                created += 1;
            }
            Err(e) => assert!(matches!(e.code(), ErrorCode::ImmutableVersion | ErrorCode::ConcurrentChange), "{e}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.history(Kind::DataContract, "race@v1").await.unwrap().len(), 1);
});

#[test]
fn documents_without_a_domain_or_with_errors_are_refused_with_the_reason() {
    let no_domain = contract("orders", "1.0.0", "active", "").replace("domain: sales\n", "");
    let err = Resource::from_loaded(&load(&no_domain).documents.remove(0)).unwrap_err();
    assert_eq!((err.code(), err.code().status()), (ErrorCode::MissingDomain, 422));
    assert!(err.to_string().contains("names no `domain`"));
    let broken = contract("orders", "1.0.0", "active", "").replace("logicalType: string", "logicalType: strnig");
    let err = Resource::from_loaded(&load(&broken).documents.remove(0)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidDocument);
    let first = &err.details()[0];
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64(), first["code"].as_str()),
        (Some(10), Some(40), Some("invalid-value")),
        "{first}"
    );
}

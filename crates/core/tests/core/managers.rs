//! Each resource names its source of truth: the API's resources change through the API; a
//! resource another source manages (a git source, say) is neither changed, deleted nor
//! pruned through it, and nothing of such a refused apply is kept.

use meshplane_core::ErrorCode;
use meshplane_core::resource::Kind;
use meshplane_core::store::{ApplyOptions, Outcome};
use sqlx::{AnyConnection, Connection};

use crate::backends::{Place, contract, open, options, resource};
use crate::on_both;

on_both!(a_resource_another_source_manages_is_not_changed_through_the_api, |place: Place| async move {
    let store = open(&place).await;
    let draft = |extra: &str| resource(&contract("orders", "1.0.0", "draft", extra));
    let others = resource(&contract("returns", "1.0.0", "draft", ""));
    store.apply(&[draft(""), others.clone()], &[], &options()).await.unwrap();
    let applied = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!(applied.manager, "api", "applied through the API");

    // What a git source's sync will record; written directly here, as that source does not exist yet.
    let mut conn = AnyConnection::connect(&place.url).await.unwrap();
    sqlx::query("UPDATE resources SET manager = 'gitsource/sales-repo' WHERE name = 'orders@v1'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let changes = store.events(0, 1000).await.unwrap().len();

    let edit = store.apply(&[draft("tags: [edited]\n"), others.clone()], &[], &options()).await.unwrap_err();
    assert_eq!(edit.code(), ErrorCode::ManagedElsewhere);
    assert_eq!(
        edit.to_string(),
        "DataContract `orders@v1` is managed by `gitsource/sales-repo`: change it there, its source of truth, not through the API"
    );
    let deleted = store.delete(Kind::DataContract, "orders@v1", &options()).await.unwrap_err();
    assert_eq!(deleted.code(), ErrorCode::ManagedElsewhere);
    // A prune of the domain through the API leaves it: it is its source's to prune.
    let prune = ApplyOptions { prune: true, ..options() };
    let pruned = store.apply(&[others], &[], &prune).await.unwrap();
    assert!(pruned.iter().all(|a| a.outcome == Outcome::Unchanged), "{pruned:?}");
    let kept = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!((kept.generation, kept.deletion_requested.is_none()), (1, true), "unchanged and not deleting");
    assert_eq!(store.events(0, 1000).await.unwrap().len(), changes, "nothing was recorded");
});

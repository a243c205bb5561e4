//! Forward-only migrations: an older store is upgraded with nothing lost; a newer one is
//! refused.

use meshplane_core::ErrorCode;
use meshplane_core::resource::Kind;
use meshplane_core::store::{Store, migrate};
use sqlx::{AnyConnection, Connection};

use crate::backends::Place;
use crate::on_both;

on_both!(a_store_of_the_first_schema_is_upgraded_with_nothing_lost, |place: Place| async move {
    let old = Store::open_at(&place.url, 1).await.unwrap();
    assert_eq!(old.schema_version().await.unwrap(), 1);
    drop(old);
    // What the first release wrote: a resource and its change record, without the v2 columns.
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&place.url).await.unwrap();
    let spec = r#"{"apiVersion":"v3.1.0","kind":"DataContract","id":"orders","version":"1.0.0","status":"active","domain":"sales","tags":["gold"]}"#;
    sqlx::query(
        "INSERT INTO resources (kind, name, id, version, status, domain, team, generation, spec, created_at, updated_at) \
         VALUES ('DataContract', 'orders@v1', 'orders', '1.0.0', 'active', 'sales', NULL, 1, $1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    )
    .bind(spec)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = Store::open(&place.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), migrate::LATEST);
    let record = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!((record.version.as_str(), record.created_at.as_str()), ("1.0.0", "2026-01-01T00:00:00Z"));
    assert_eq!(record.tags, ["gold"], "the upgrade fills the new column from the stored document");
});

on_both!(a_store_newer_than_the_binary_is_refused, |place: Place| async move {
    let store = Store::open(&place.url).await.unwrap();
    drop(store);
    let mut conn = AnyConnection::connect(&place.url).await.unwrap();
    sqlx::query("INSERT INTO meshplane_schema (version) VALUES (99)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let err = Store::open(&place.url).await.err().expect("a newer store is refused");
    assert_eq!(err.code(), ErrorCode::StoreTooNew);
    assert!(err.to_string().contains("schema version 99"), "{err}");
});

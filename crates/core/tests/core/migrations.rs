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
    assert_eq!(record.manager, "api", "what an older release stored was applied through the API");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_opening_an_empty_postgresql_store_at_once_both_start() {
    for _ in 0..4 {
        let place = crate::backends::postgres().await;
        let opens: Vec<_> = (0..3)
            .map(|_| {
                let url = place.url.clone();
                tokio::spawn(async move { Store::open(&url).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            open.await.unwrap().expect("every replica starts on the store the first one migrated");
        }
        let store = Store::open(&place.url).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), migrate::LATEST);
    }
}

on_both!(an_upgrade_registers_every_id_to_its_first_domain, |place: Place| async move {
    let old = Store::open_at(&place.url, 8).await.unwrap();
    drop(old);
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&place.url).await.unwrap();
    // Two majors of one id in two domains (a squat an older release allowed): the id goes to
    // the domain that registered it first. Two majors of `payments` the feed does not show,
    // created at times that sort the wrong way as text: 10:00 at +09:00 is 01:00 UTC, before
    // 05:00 UTC.
    for (id, name, domain, at) in [
        ("orders", "orders@v2", "squatters", "2026-03-01T00:00:00Z"),
        ("orders", "orders@v1", "sales", "2026-01-01T00:00:00Z"),
        ("payments", "payments@v2", "squatters", "2026-01-01T05:00:00Z"),
        ("payments", "payments@v1", "finance", "2026-01-01T10:00:00+09:00"),
    ] {
        sqlx::query(
            "INSERT INTO resources (kind, name, id, version, status, domain, team, generation, spec, created_at, updated_at) \
             VALUES ('DataContract', $1, $2, '1.0.0', 'active', $3, NULL, 1, '{}', $4, $4)",
        )
        .bind(name)
        .bind(id)
        .bind(domain)
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // The feed: orders@v1 created (sales), and a contract of finance's since deleted, whose id
    // stays finance's; its domain is in the event of newer releases, in the document of older.
    // Stored records come first: an id in use stays with the records that use it.
    for (name, action, event, after) in [
        ("orders@v1", "created", r#"{"data":{"domain":"sales"}}"#, None),
        ("invoices@v1", "created", "{}", Some(r#"{"id":"invoices","domain":"finance"}"#)),
        ("invoices@v1", "deleted", r#"{"data":{"domain":"finance"}}"#, None),
        // payments was sales' once, deleted, then made again by finance and squatters: it
        // goes with the live records.
        ("payments@v1", "created", r#"{"data":{"domain":"sales"}}"#, None),
        ("payments@v1", "deleted", r#"{"data":{"domain":"sales"}}"#, None),
    ] {
        sqlx::query(
            "INSERT INTO changes (at, actor, origin, kind, name, action, generation, version, after, event) \
             VALUES ('2026-01-01T00:00:00.5+01:00', 'a', 'o', 'DataContract', $1, $2, 1, '1.0.0', $3, $4)",
        )
        .bind(name)
        .bind(action)
        .bind(after)
        .bind(event)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    let store = Store::open(&place.url).await.unwrap();
    let claims = store.claims(None, None, 10).await.unwrap().items;
    let found: Vec<(&str, &str, &str)> =
        claims.iter().map(|c| (c.id.as_str(), c.domain.as_str(), c.claimed_at.as_str())).collect();
    assert_eq!(
        found,
        [
            ("invoices", "finance", "2025-12-31T23:00:00.500000Z"),
            ("orders", "sales", "2026-01-01T00:00:00.000000Z"),
            ("payments", "finance", "2026-01-01T01:00:00.000000Z"),
        ]
    );
    let v1 = store.get(Kind::DataContract, "orders@v1").await.unwrap();
    let v2 = store.get(Kind::DataContract, "orders@v2").await.unwrap();
    assert!(v1.uid.len() == 32 && v1.uid != v2.uid, "each resource gets a uid of its own");
    let history = store.history(Kind::DataContract, "orders@v1").await.unwrap();
    assert_eq!(history[0].at, "2025-12-31T23:00:00.500000Z", "change times are rewritten in the fixed-width format");
});

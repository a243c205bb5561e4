//! Leases: one owner at a time, takeover after expiry (on the database's clock, moved
//! forward by the test) with a larger fencing token, no status written under a lease that
//! changed hands, and a status write that gives its lease back.

use meshplane_core::ErrorCode;
use meshplane_core::resource::Kind;
use meshplane_core::store::{Condition, ConditionStatus, SCHEDULE};
use sqlx::Connection;

use crate::backends::{Place, open, options, product, resource};
use crate::on_both;

fn ready() -> Vec<Condition> {
    vec![Condition {
        kind: "Ready".into(),
        status: ConditionStatus::True,
        reason: "Reconciled".into(),
        message: String::new(),
        observed_generation: 1,
        last_transition_time: "2026-01-01T00:00:00Z".into(),
    }]
}

on_both!(one_owner_at_a_time_and_fenced_writes, |place: Place| async move {
    let store = open(&place).await;
    let k = Kind::DataProduct;
    store.apply(&[resource(&product("shop", "sales", ""))], &[], &options()).await.unwrap();
    let shop = store.get(k, "shop").await.unwrap();
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "a", 60_000).await.unwrap(), Some(1));
    store.advance_clock(20_000);
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "b", 60_000).await.unwrap(), None, "a holds it");
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "a", 60_000).await.unwrap(), Some(1), "a renews: same token");
    assert_eq!(
        store.acquire_lease(k.as_str(), "other", "b", 60_000).await.unwrap(),
        Some(1),
        "leases are per resource"
    );
    // a stalls past its lease; b takes over with a larger token.
    store.advance_clock(61_000);
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "b", 60_000).await.unwrap(), Some(2));
    let stale = store.set_status(&shop, &[], &ready(), ("a", 1)).await.unwrap_err();
    assert_eq!(stale.code(), ErrorCode::StaleLease, "{stale}");
    assert!(store.status(k, "shop").await.unwrap().is_none(), "the stale write left nothing");
    store.set_status(&shop, &[], &ready(), ("b", 2)).await.unwrap();
    assert_eq!(store.status(k, "shop").await.unwrap().unwrap().conditions, ready());
    // The status write gave the lease back: a renewal on its way does not take it again,
    // and the next owner gets it at once with a larger token.
    assert!(store.renew_lease(k.as_str(), "shop", ("b", 2), 60_000).await.unwrap(), "still b's token");
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "c", 60_000).await.unwrap(), Some(3));
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "b", 60_000).await.unwrap(), None, "c holds it now");
    store.advance_clock(61_000);
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "b", 60_000).await.unwrap(), Some(4));
    // A status an earlier release wrote, without a generation per condition, reads with the
    // status's own.
    let mut conn = sqlx::AnyConnection::connect(&place.url).await.unwrap();
    let old = r#"[{"type":"Ready","status":"True","reason":"Reconciled","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]"#;
    sqlx::query("UPDATE statuses SET conditions = $1, observed_generation = 7 WHERE name = 'shop'")
        .bind(old)
        .execute(&mut conn)
        .await
        .unwrap();
    let read = store.status(k, "shop").await.unwrap().unwrap().conditions;
    assert_eq!(read, vec![Condition { observed_generation: 7, ..ready().remove(0) }]);
    // Released, the lease is free at once, and tokens keep growing.
    store.release_lease(k.as_str(), "shop", "b", 4).await.unwrap();
    assert_eq!(store.acquire_lease(k.as_str(), "shop", "c", 60_000).await.unwrap(), Some(5));
});

on_both!(a_renewal_holds_only_the_lease_it_was_given, |place: Place| async move {
    let store = open(&place).await;
    let k = Kind::DataContract.as_str();
    let first = store.acquire_lease(k, "orders@v1", "a", 60_000).await.unwrap().unwrap();
    store.advance_clock(50_000);
    assert!(store.renew_lease(k, "orders@v1", ("a", first), 60_000).await.unwrap());
    store.advance_clock(50_000);
    assert_eq!(store.acquire_lease(k, "orders@v1", "b", 60_000).await.unwrap(), None, "the renewal counted");
    assert!(!store.renew_lease(k, "orders@v1", ("b", first), 60_000).await.unwrap(), "not b's lease");
    // a stalls; b takes over and lets go; a takes it back under a new token. The work a began
    // under its first token has lost the lease, though a holds it again.
    store.advance_clock(61_000);
    let b = store.acquire_lease(k, "orders@v1", "b", 60_000).await.unwrap().unwrap();
    store.release_lease(k, "orders@v1", "b", b).await.unwrap();
    let again = store.acquire_lease(k, "orders@v1", "a", 60_000).await.unwrap().unwrap();
    assert!(again > first);
    assert!(!store.renew_lease(k, "orders@v1", ("a", first), 60_000).await.unwrap());
    assert!(store.renew_lease(k, "orders@v1", ("a", again), 60_000).await.unwrap());
});

on_both!(replicas_see_each_other_until_their_membership_expires, |place: Place| async move {
    let store = open(&place).await;
    assert_eq!(store.heartbeat("r1", 60_000).await.unwrap(), ["r1"]);
    store.advance_clock(10_000);
    assert_eq!(store.heartbeat("r2", 60_000).await.unwrap(), ["r1", "r2"]);
    // r1 stops renewing (killed): past its expiry it is no longer counted.
    store.advance_clock(55_000);
    assert_eq!(store.heartbeat("r2", 60_000).await.unwrap(), ["r2"]);
    assert_eq!(store.heartbeat("r1", 60_000).await.unwrap(), ["r1", "r2"], "it can come back");
    store.leave("r1").await.unwrap();
    assert_eq!(store.heartbeat("r2", 60_000).await.unwrap(), ["r2"], "a clean leave counts at once");
});

on_both!(a_scheduled_run_completes_once_and_only_under_its_lease, |place: Place| async move {
    let store = open(&place).await;
    let job = "test/orders@v1/0 20 * * *";
    assert_eq!(store.schedule_done(job).await.unwrap(), 0, "never ran");
    let token = store.acquire_lease(SCHEDULE, job, "a", 60_000).await.unwrap().unwrap();
    assert_eq!(store.acquire_lease(SCHEDULE, job, "b", 60_000).await.unwrap(), None, "one runner at a time");
    // a stalls past its lease: b takes the job over, and a's late completion is refused.
    store.advance_clock(61_000);
    let b = store.acquire_lease(SCHEDULE, job, "b", 60_000).await.unwrap().unwrap();
    let stale = store.complete_schedule(job, 72_000, ("a", token)).await.unwrap_err();
    assert_eq!(stale.code(), ErrorCode::StaleLease);
    assert_eq!(store.schedule_done(job).await.unwrap(), 0);
    store.complete_schedule(job, 72_000, ("b", b)).await.unwrap();
    assert_eq!(store.schedule_done(job).await.unwrap(), 72_000);
    store.complete_schedule(job, 36_000, ("b", b)).await.unwrap();
    assert_eq!(store.schedule_done(job).await.unwrap(), 72_000, "never moves backwards");
});

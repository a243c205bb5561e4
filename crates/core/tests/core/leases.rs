//! Leases: one owner at a time, takeover after expiry with a larger fencing token, and no
//! status written under a lease that changed hands.

use meshplane_core::ErrorCode;
use meshplane_core::resource::Kind;
use meshplane_core::store::Condition;

use crate::backends::{Place, open};
use crate::on_both;

fn ready() -> Vec<Condition> {
    vec![Condition {
        kind: "Ready".into(),
        status: "True".into(),
        reason: "Reconciled".into(),
        message: String::new(),
        last_transition_time: "2026-01-01T00:00:00Z".into(),
    }]
}

on_both!(one_owner_at_a_time_and_fenced_writes, |place: Place| async move {
    let store = open(&place).await;
    let k = Kind::DataProduct;
    assert_eq!(store.acquire_lease(k, "shop", "a", 1_000, 500).await.unwrap(), Some(1));
    assert_eq!(store.acquire_lease(k, "shop", "b", 1_200, 500).await.unwrap(), None, "a holds it");
    assert_eq!(store.acquire_lease(k, "shop", "a", 1_400, 500).await.unwrap(), Some(1), "a renews: same token");
    assert_eq!(store.acquire_lease(k, "other", "b", 1_400, 500).await.unwrap(), Some(1), "leases are per resource");
    // a stalls past its lease; b takes over with a larger token.
    assert_eq!(store.acquire_lease(k, "shop", "b", 2_000, 500).await.unwrap(), Some(2));
    let stale = store.set_status(k, "shop", 1, &ready(), ("a", 1)).await.unwrap_err();
    assert_eq!(stale.code(), ErrorCode::StaleLease, "{stale}");
    assert!(store.status(k, "shop").await.unwrap().is_none(), "the stale write left nothing");
    store.set_status(k, "shop", 1, &ready(), ("b", 2)).await.unwrap();
    assert_eq!(store.status(k, "shop").await.unwrap().unwrap().conditions, ready());
    // Released, the lease is free at once, and tokens keep growing.
    store.release_lease(k, "shop", "b", 2).await.unwrap();
    assert_eq!(store.acquire_lease(k, "shop", "c", 2_100, 500).await.unwrap(), Some(3));
});

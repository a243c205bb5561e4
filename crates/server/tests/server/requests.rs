//! The approval rules of access requests: the ODCS role's approvers at two levels, in order,
//! by two different people; unknown approvers fall back to the owning team, and the contract
//! says which names are unknown.

use crate::authz::{owned, principal};
use crate::*;

/// The orders contract with `roles`, and the shop that provides it (both owned by olga).
fn shop_with_roles(roles: &str) -> String {
    format!(
        "{}---\n{}",
        owned(contract("orders", "1.0.0", "sales", &format!("roles:\n{roles}")), "olga"),
        owned(product("shop", "sales", &[], &["orders"]), "olga")
    )
}

async fn post(http: &reqwest::Client, url: String, body: &'static str) -> (u16, Any) {
    let res = http.post(url).body(body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Any::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_levels_approve_in_order_and_not_the_same_person_twice() {
    let place = sqlite().await;
    let s = start(&place).await;
    let roles = "  - { role: auditor, access: write, firstLevelApprovers: 'lead, dpo', secondLevelApprovers: dpo }\n";
    assert_eq!(s.apply(shop_with_roles(roles), "").await.0, StatusCode::OK);
    let mut users = Vec::new();
    for name in ["carol", "lead", "dpo"] {
        users.push(client(&principal(&s.store, name, &[]).await));
    }
    let [carol, lead, dpo] = <[reqwest::Client; 3]>::try_from(users).unwrap();
    let ask = r#"{"product":"shop","outputPort":"orders","role":"auditor","purpose":"audit 2026"}"#;
    let (status, request) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["access"], "write");
    assert_eq!(request["approvers"], serde_json::json!({ "first": ["lead", "dpo"], "second": ["dpo"] }));
    let id = request["id"].as_i64().unwrap();
    let url = |verb: &str| format!("{}/api/v1/access/{id}/{verb}", s.base);

    // The second level cannot go first: dpo approving now approves the first level.
    let (status, first) = post(&dpo, url("approve"), r#"{"comment":"first"}"#).await;
    assert_eq!((status, first["state"].as_str()), (200, Some("pending")));
    let (status, again) = post(&dpo, url("approve"), "").await;
    assert_eq!(status, 403, "whoever approved level 1 cannot approve level 2: {again}");
    assert!(again["message"].as_str().unwrap().contains("at level 2"), "{again}");
    let (status, _) = post(&lead, url("approve"), "").await;
    assert_eq!(status, 403, "lead is no second-level approver");

    // A second request: lead approves the first level, dpo the second.
    let (_, request) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    let second = request["id"].as_i64().unwrap();
    let url = |verb: &str| format!("{}/api/v1/access/{second}/{verb}", s.base);
    assert_eq!(post(&lead, url("approve"), "").await.0, 200);
    let (status, granted) = post(&dpo, url("approve"), r#"{"comment":"second"}"#).await;
    assert_eq!((status, granted["state"].as_str()), (200, Some("active")));
    let levels: Vec<(i64, &str)> = granted["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["level"].as_i64().unwrap(), d["by"].as_str().unwrap()))
        .collect();
    assert_eq!(levels, [(1, "lead"), (2, "dpo")]);
    let (_, events) = s.get(&format!("/api/v1/audit?kind=AccessRequest&name={second}")).await;
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["requested", "approved-first-level", "approved"]);

    // A rejection at the second level ends a request.
    let (_, request) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    let third = request["id"].as_i64().unwrap();
    let url = |verb: &str| format!("{}/api/v1/access/{third}/{verb}", s.base);
    assert_eq!(post(&lead, url("approve"), "").await.0, 200);
    let (_, rejected) = post(&dpo, url("reject"), r#"{"comment":"not this year"}"#).await;
    assert_eq!((rejected["kind"].as_str(), rejected["state"].as_str()), (Some("AccessRequest"), Some("rejected")));
    let (status, body) = post(&dpo, url("approve"), "").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("wrong-state")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_approvers_fall_back_to_the_owning_team_with_a_warning() {
    let place = sqlite().await;
    let s = start(&place).await;
    let carol = client(&principal(&s.store, "carol", &[]).await);
    let roles =
        "  - { role: analyst, access: read, firstLevelApprovers: Reporting Manager, secondLevelApprovers: na }\n";
    assert_eq!(s.apply(shop_with_roles(roles), "").await.0, StatusCode::OK);
    let warned =
        eventually(&s, "/api/v1/contracts/orders@v1", |b| condition(b, "ApproversResolved")["status"] == "False").await;
    let message = condition(&warned, "ApproversResolved")["message"].as_str().unwrap();
    assert!(
        message.contains("role `analyst` firstLevelApprovers: `Reporting Manager` is no known user or group"),
        "{message}"
    );
    let ask = r#"{"product":"shop","outputPort":"orders","role":"analyst","purpose":"reports"}"#;
    let (_, request) = post(&carol, format!("{}/api/v1/access", s.base), ask).await;
    assert_eq!(request["approvers"], serde_json::json!({ "first": ["olga", "olga-team"] }), "`na` names nobody");
}

//! The one table from error to code to HTTP status: the API's answers, docs/api.md's table
//! and the error bodies (snapshotted) say the same thing; and the OpenAPI document, whose
//! every change is reviewed through its snapshot.

use axum::response::IntoResponse;
use meshplane_core::{Error, ErrorCode};
use meshplane_server::error::ApiError;

use super::*;

/// docs/api.md's error table: each code with its status.
fn documented() -> Vec<(String, u16)> {
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let table = api.split("| code | status | when |").nth(1).expect("docs/api.md has the error table");
    let rows = table.lines().skip(2).take_while(|l| l.starts_with('|'));
    let mut codes = Vec::new();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let status: u16 = cells[2].parse().unwrap_or_else(|_| panic!("a status in {row}"));
        for code in cells[1].split(", ") {
            codes.push((code.trim_matches('`').to_string(), status));
        }
    }
    codes
}

fn name(code: ErrorCode) -> String {
    serde_json::to_value(code).unwrap().as_str().unwrap().to_string()
}

#[test]
fn every_error_code_is_documented_with_the_status_the_api_answers() {
    let answered: Vec<(String, u16)> = ErrorCode::ALL.iter().map(|c| (name(*c), c.status())).collect();
    assert_eq!(documented(), answered, "docs/api.md's table, in order, is the code's");
}

#[tokio::test]
async fn every_error_body_is_code_message_and_details() {
    let mut bodies = Vec::new();
    for code in ErrorCode::ALL {
        let error =
            Error::Invalid { code: *code, message: format!("what went wrong ({})", name(*code)), details: Any::Null };
        let response = ApiError(error).into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: Any = serde_json::from_slice(&bytes).unwrap();
        bodies.push(serde_json::json!({ "status": status, "body": body }));
    }
    insta::assert_json_snapshot!(bodies);
}

/// The error bodies of real refusals, one of each family, through HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_refusals_answer_their_documented_bodies() {
    let place = sqlite().await;
    let s = start(&place).await;
    s.apply(contract("orders", "1.0.0", "sales", ""), "").await;
    let mut answers = Vec::new();
    let invalid = s.apply("kind: DataContract\n  bad: [", "").await;
    let breaking = s
        .apply(contract("orders", "1.1.0", "sales", "").replace("logicalType: string", "logicalType: integer"), "")
        .await;
    let missing = s.get("/api/v1/contracts/nothing@v1").await;
    let malformed = s.get("/api/v1/events?after=x").await;
    let anonymous = reqwest::get(format!("{}/api/v1/contracts", s.base)).await.unwrap();
    let anonymous = (anonymous.status(), anonymous.json::<Any>().await.unwrap());
    for (status, body) in [invalid, breaking, missing, malformed, anonymous] {
        answers.push(serde_json::json!({ "status": status.as_u16(), "body": body }));
    }
    insta::assert_json_snapshot!(answers);
}

/// A path the API lacks and a method a path does not take answer the error body too, with
/// or without credentials, and a 405 says which methods the path takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_answer_the_error_body() {
    let place = sqlite().await;
    let s = start(&place).await;
    let long = format!("/api/v2/{}", "x".repeat(5000));
    let mut answers = Vec::new();
    for res in [
        s.http.get(format!("{}/nowhere", s.base)).send().await.unwrap(),
        reqwest::get(format!("{}/api/v2/contracts", s.base)).await.unwrap(),
        s.http.get(format!("{}{long}", s.base)).send().await.unwrap(),
        s.http.delete(format!("{}/api/v1/apply", s.base)).send().await.unwrap(),
        s.http.put(format!("{}/api/v1/contracts", s.base)).send().await.unwrap(),
        reqwest::Client::new().delete(format!("{}/api/v1/apply", s.base)).send().await.unwrap(),
    ] {
        let status = res.status().as_u16();
        let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let body: Any = res.json().await.unwrap();
        answers.push(serde_json::json!({ "status": status, "allow": allow, "body": body }));
    }
    insta::assert_json_snapshot!(answers);
}

#[tokio::test]
async fn the_openapi_document_is_the_reviewed_one() {
    let place = sqlite().await;
    let s = start(&place).await;
    let (_, doc) = s.get("/api/v1/openapi.json").await;
    insta::assert_json_snapshot!(doc);
}

//! Every answer carries its request's id (the `x-request-id` of the request's span): the
//! caller's own when it is a plain token, a fresh one otherwise, on refusals too.

use crate::*;

async fn id_of(request: reqwest::RequestBuilder) -> (u16, String) {
    let res = request.send().await.unwrap();
    let id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (res.status().as_u16(), id)
}

fn fresh(id: &str) -> bool {
    id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_request() {
    let place = sqlite().await;
    let s = start(&place).await;
    let health = format!("{}/healthz", s.base);
    let (status, first) = id_of(s.http.get(&health)).await;
    let (_, second) = id_of(s.http.get(&health)).await;
    assert_eq!(status, 200);
    assert!(fresh(&first) && fresh(&second) && first != second, "{first} {second}");

    let (_, echoed) = id_of(s.http.get(&health).header("x-request-id", "ci-run-42.step_3")).await;
    assert_eq!(echoed, "ci-run-42.step_3", "a plain id the caller sent is kept");
    for hostile in ["<script>alert(1)</script>", "id with spaces", "a\tb", &"x".repeat(65)] {
        let sent = reqwest::header::HeaderValue::from_bytes(hostile.as_bytes()).unwrap();
        let (_, id) = id_of(s.http.get(&health).header("x-request-id", sent)).await;
        assert!(fresh(&id), "`{hostile}` is replaced, not repeated: {id}");
    }

    // A refusal by the authentication gate is answered in the request's span too.
    let anonymous = reqwest::Client::new().get(format!("{}/api/v1/contracts", s.base));
    let (status, id) = id_of(anonymous.header("x-request-id", "anon-1")).await;
    assert_eq!((status, id.as_str()), (401, "anon-1"));
}

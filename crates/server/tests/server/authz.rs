//! The authorization matrix: every route of the API, called by each kind of caller, answers
//! what its row says. A route without a row fails the test, so no route is added without
//! deciding who may use it.

use meshplane_core::store::grants::NewRequest;
use meshplane_core::store::{ApplyOptions, Store};

use crate::*;

/// The callers, in the order of a row's letters. olga owns the shop and its contract (sales);
/// sam owns another sales product; dana administers sales; otto owns a finance product and
/// fred administers finance (a foreign domain).
const CALLERS: [&str; 8] = [
    "anonymous",
    "consumer",
    "other-owner",
    "owner",
    "domain-admin",
    "foreign-member",
    "foreign-admin",
    "platform-admin",
];

/// Per caller: `A` allowed (2xx), `R` allowed but refused for what the request asks (a 4xx
/// other than 401, 403 and 404: the contract here has no server to test, the claim is in
/// use), `U` 401, `F` 403, `H` 404 (the thing is not disclosed to this caller).
const MATRIX: &[(&str, &str, &str)] = &[
    ("get", "/healthz", "AAAAAAAA"),
    ("get", "/readyz", "AAAAAAAA"),
    ("get", "/metrics", "UFFFFFFA"),
    ("get", "/api/v1/openapi.json", "UAAAAAAA"),
    ("post", "/api/v1/apply", "UFFAAFFA"),
    ("get", "/api/v1/events", "UAAAAAAA"),
    ("get", "/api/v1/lineage/{name}", "UAAAAAAA"),
    ("get", "/api/v1/{kind}", "UAAAAAAA"),
    ("get", "/api/v1/{kind}/{name}", "UAAAAAAA"),
    ("delete", "/api/v1/{kind}/{name}", "UFFAAFFA"),
    ("get", "/api/v1/{kind}/{name}/history", "UAAAAAAA"),
    ("post", "/api/v1/{kind}/{name}/tests", "UFFRRFFR"),
    ("get", "/api/v1/{kind}/{name}/tests", "UAAAAAAA"),
    ("get", "/api/v1/blocks", "UFFFFFFA"),
    ("get", "/api/v1/orphans", "UFFFFFFA"),
    ("post", "/api/v1/orphans/purge", "UFFFFFFA"),
    ("get", "/api/v1/claims", "UAAAAAAA"),
    ("delete", "/api/v1/claims/{kind}/{id}", "UFFFFFFR"),
    ("get", "/api/v1/whoami", "UAAAAAAA"),
    ("post", "/api/v1/access", "UAAAAAAA"),
    ("get", "/api/v1/access", "UAAAAAAA"),
    ("get", "/api/v1/access/{id}", "UAHAAHHA"),
    ("post", "/api/v1/access/{id}/approve", "UFHAAHHA"),
    ("post", "/api/v1/access/{id}/reject", "UAHAAHHA"),
    ("post", "/api/v1/access/{id}/revoke", "UAHAAHHA"),
    ("post", "/api/v1/tokens", "UAAAAAAA"),
    ("get", "/api/v1/tokens", "UAAAAAAA"),
    ("delete", "/api/v1/tokens/{id}", "UAFFFFFA"),
    ("get", "/api/v1/principals", "UFFFFFFA"),
    ("put", "/api/v1/principals/{name}", "UFFFFFFA"),
    ("post", "/api/v1/principals/{name}/login", "UFFFFFFR"),
    ("get", "/api/v1/audit", "UFFFFFFA"),
    // This server has no sinks: an admin is told that `shop` is none (the CLI's notification
    // tests call them on a server that has).
    ("get", "/api/v1/sinks", "UFFFFFFA"),
    ("get", "/api/v1/sinks/{name}/dead-letters", "UFFFFFFH"),
    ("post", "/api/v1/sinks/{name}/redeliver", "UFFFFFFH"),
];

fn who() -> ApplyOptions {
    ApplyOptions { actor: "test".into(), origin: "test".into(), dry_run: false, prune: false }
}

pub(crate) async fn principal(store: &Store, name: &str, domains: &[&str]) -> String {
    let p = Principal {
        name: name.into(),
        kind: PrincipalKind::User,
        database_role: None,
        groups: vec![],
        platform_admin: false,
        domains: domains.iter().map(|d| d.to_string()).collect(),
        oidc: None,
    };
    store.put_principal(&p, &who()).await.unwrap();
    store.create_token(name, "matrix", None, &who()).await.unwrap().token
}

/// A new request by the consumer for the shop's port: pending, or (`active`) approved.
async fn request(store: &Store, active: bool) -> i64 {
    let new = NewRequest {
        contract: "orders@v1".into(),
        product: "shop".into(),
        port: "orders".into(),
        domain: "sales".into(),
        consumer: "carol".into(),
        input_port: None,
        role: None,
        write: false,
        purpose: "matrix".into(),
        until: None,
        approvers: meshplane_core::store::grants::Approvers { first: vec!["olga".into()], ..Default::default() },
        policy: Default::default(),
        outcome: meshplane_core::store::grants::Outcome::Pending,
    };
    let r = store.request_access(new, &who()).await.unwrap();
    if active {
        store
            .update_access(
                r.id,
                |g| {
                    g.state = meshplane_core::store::grants::AccessState::Active;
                    Ok("approved")
                },
                &who(),
            )
            .await
            .unwrap();
    }
    r.id
}

/// The orders contract and the shop product that provides it, both owned by olga (sales).
fn shop() -> String {
    format!(
        "{}---\n{}",
        owned(contract("orders", "1.0.0", "sales", ""), "olga"),
        owned(product("shop", "sales", &[], &["orders"]), "olga")
    )
}

/// `document` with a team of one member, `owner`.
pub(crate) fn owned(document: String, owner: &str) -> String {
    format!("{document}team:\n  name: {owner}-team\n  members:\n    - {{ username: {owner} }}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_caller_as_its_row_says() {
    let place = sqlite().await;
    let s = start(&place).await;
    // olga owns the shop and its contract; sam owns the outlet, another sales product; otto
    // owns billing, a finance product which consumes the shop's orders.
    let shop = shop();
    let outlet = owned(product("outlet", "sales", &[], &[]), "sam");
    let billing = owned(product("billing", "finance", &["orders"], &[]), "otto");
    for doc in [&shop, &outlet, &billing] {
        let (status, body) = s.apply(doc.clone(), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let tokens = [
        None,
        Some(principal(&s.store, "carol", &[]).await),
        Some(principal(&s.store, "sam", &[]).await),
        Some(principal(&s.store, "olga", &[]).await),
        Some(principal(&s.store, "dana", &["sales"]).await),
        Some(principal(&s.store, "otto", &[]).await),
        Some(principal(&s.store, "fred", &["finance"]).await),
        Some(admin_token(&s.store).await),
    ];
    for route in routes::all() {
        let row = MATRIX.iter().find(|(m, p, _)| *m == route.method && *p == route.path);
        let Some((_, _, expected)) = row else {
            panic!("{} {} has no row in the authorization matrix", route.method, route.path);
        };
        for (i, want) in expected.chars().enumerate() {
            let path = route.path.replace("{kind}", "products").replace("{name}", "shop");
            let path = match route.endpoint {
                // The id is in use: allowed callers are told so (409).
                routes::Endpoint::ClaimRelease => route.path.replace("{kind}", "contracts").replace("{id}", "orders"),
                routes::Endpoint::RunTests | routes::Endpoint::TestRuns => {
                    path.replace("products/shop", "contracts/orders@v1")
                }
                routes::Endpoint::Lineage => path,
                routes::Endpoint::PrincipalPut => route.path.replace("{name}", "newbie"),
                // `admin` is no service account: allowed callers are told so (422).
                routes::Endpoint::PrincipalLogin => route.path.replace("{name}", "admin") + "?block=warehouse",
                routes::Endpoint::TokenRevoke => {
                    let carols = s.store.create_token("carol", "to revoke", None, &who()).await.unwrap();
                    route.path.replace("{id}", &carols.info.id)
                }
                routes::Endpoint::AccessRevoke => path.replace("{id}", &request(&s.store, true).await.to_string()),
                _ => path.replace("{id}", &request(&s.store, false).await.to_string()),
            };
            let http = reqwest::Client::new();
            let url = format!("{}{path}", s.base);
            let mut call = match route.method {
                "get" => http.get(&url),
                "delete" if route.endpoint == routes::Endpoint::Delete => http.delete(format!("{url}?dryRun=true")),
                "delete" => http.delete(&url),
                "put" => http.put(&url).body(r#"{"kind":"user"}"#),
                _ => http.post(&url),
            };
            call = match route.endpoint {
                routes::Endpoint::Apply => call.body(shop.clone()),
                routes::Endpoint::Purge => http.post(format!("{url}?dryRun=true")),
                routes::Endpoint::AccessRequest => {
                    call.body(r#"{"product":"shop","outputPort":"orders","purpose":"matrix"}"#)
                }
                _ => call,
            };
            if let Some(token) = &tokens[i] {
                call = call.bearer_auth(token);
            }
            let res = call.send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            let ok = match want {
                'U' => status == 401,
                'F' => status == 403,
                'H' => status == 404,
                'R' => (400..500).contains(&status) && ![401, 403, 404].contains(&status),
                _ => (200..300).contains(&status),
            };
            assert!(ok, "{} {path} as {}: expected {want}, got {status}: {body}", route.method, CALLERS[i]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_cannot_claim_ownership_or_another_domain() {
    let place = sqlite().await;
    let s = start(&place).await;
    let orders = owned(contract("orders", "1.0.0", "sales", "status: draft\n").replace("status: active\n", ""), "olga");
    assert_eq!(s.apply(orders.clone(), "").await.0, StatusCode::OK);
    let otto = client(&principal(&s.store, "otto", &["finance"]).await);
    let apply = |body: String| {
        let (otto, base) = (otto.clone(), s.base.clone());
        async move {
            let res = otto.post(format!("{base}/api/v1/apply")).body(body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Any>().await.unwrap())
        }
    };
    // Adding himself to the team changes nothing: ownership is what was recorded at creation.
    let claimed = orders.replace("username: olga }", "username: olga }\n    - { username: otto }");
    let (status, body) = apply(claimed).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    // Naming his own domain does not move the contract into it.
    let (status, body) = apply(orders.replace("domain: sales", "domain: finance")).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    // In his own domain he may create.
    let (status, body) = apply(owned(contract("ledger", "1.0.0", "finance", ""), "otto")).await;
    assert_eq!(status, 200, "{body}");
    // Pruning another domain needs its admin.
    let (status, _) = apply(owned(contract("ledger", "1.0.0", "finance", ""), "otto") + "---\n" + &orders).await;
    assert_eq!(status, 403);
    let (_, record) = s.get("/api/v1/contracts/orders@v1").await;
    assert_eq!(
        (record["generation"].as_i64(), record["owners"].clone()),
        (Some(1), serde_json::json!(["olga", "olga-team"]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_appear_only_in_the_answer_that_creates_them() {
    let place = sqlite().await;
    let s = start(&place).await;
    let res = s.http.post(format!("{}/api/v1/tokens", s.base)).body(r#"{"description":"ci"}"#).send().await.unwrap();
    let created: Any = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let secret = token.rsplit('_').next().unwrap().to_string();
    assert!(secret.len() >= 32);
    // The new token works, and is then revoked.
    let mine = client(&token);
    let me: Any = mine.get(format!("{}/api/v1/whoami", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["name"], "admin");
    let id = created["info"]["id"].as_str().unwrap();
    assert_eq!(s.http.delete(format!("{}/api/v1/tokens/{id}", s.base)).send().await.unwrap().status(), 200);
    let refused = mine.get(format!("{}/api/v1/whoami", s.base)).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    for path in ["/api/v1/audit?limit=1000", "/api/v1/events", "/api/v1/tokens", "/api/v1/principals", "/api/v1/whoami"]
    {
        let text = s.http.get(format!("{}{path}", s.base)).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(&secret), "{path} shows a token's secret");
    }
    let audit: Any =
        s.http.get(format!("{}/api/v1/audit?kind=Token", s.base)).send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "created", "revoked"], "the tests' own token, then this one");
    // Malformed credentials are refused, not taken for anonymous.
    for header in ["Basic abc", "Bearer ", "Bearer mp_nothing_here", "Bearer mp_"] {
        let res = reqwest::Client::new()
            .get(format!("{}/api/v1/contracts", s.base))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Any = res.json().await.unwrap();
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{header}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_asks_through_its_input_port_with_its_service_account() {
    let place = sqlite().await;
    let s = start(&place).await;
    let billing = owned(product("billing", "finance", &["orders"], &[]), "otto");
    assert_eq!(s.apply(format!("{}---\n{billing}", shop()), "").await.0, StatusCode::OK);
    let otto = client(&principal(&s.store, "otto", &[]).await);
    let carol = client(&principal(&s.store, "carol", &[]).await);
    let ask = |http: reqwest::Client, body: &'static str| {
        let url = format!("{}/api/v1/access", s.base);
        async move {
            let res = http.post(url).body(body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Any>().await.unwrap())
        }
    };
    let through =
        r#"{"product":"shop","outputPort":"orders","consumer":"billing","inputPort":"orders","purpose":"invoicing"}"#;
    let (status, body) = ask(otto.clone(), through).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().contains("has no service account"), "{body}");
    let account = r#"{"kind":"service","databaseRole":"billing_app"}"#;
    let res = s.http.put(format!("{}/api/v1/principals/billing", s.base)).body(account).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = ask(otto.clone(), through).await;
    assert_eq!((status, body["consumer"].as_str(), body["inputPort"].as_str()), (200, Some("billing"), Some("orders")));
    let (status, _) = ask(carol, through).await;
    assert_eq!(status, 403, "only the consuming product's owners ask for it");
    let wrong = r#"{"product":"shop","outputPort":"orders","consumer":"billing","inputPort":"invoices","purpose":"x"}"#;
    let (status, body) = ask(otto, wrong).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().contains("no input port `invoices`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_access_and_identity_requests_get_clear_answers_and_change_nothing() {
    let place = sqlite().await;
    let s = start(&place).await;
    assert_eq!(s.apply(shop(), "").await.0, StatusCode::OK);
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("post", "/api/v1/access", "{", 400, "EOF while parsing"),
        ("post", "/api/v1/access", "[]", 400, "must be a JSON object"),
        ("post", "/api/v1/access", r#"{"product":"shop"}"#, 400, "missing field `outputPort`"),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"orders","purpose":"x","colour":1}"#,
            400,
            "unknown field `colour`",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"orders","purpose":"  "}"#,
            400,
            "`purpose` must say why",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"nope","outputPort":"orders","purpose":"x"}"#,
            404,
            "DataProduct `nope`",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"nope","purpose":"x"}"#,
            404,
            "its output ports: orders",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"orders","purpose":"x","role":"boss"}"#,
            422,
            "has no role `boss`",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"orders","purpose":"x","until":"soon"}"#,
            400,
            "not an RFC 3339 time",
        ),
        (
            "post",
            "/api/v1/access",
            r#"{"product":"shop","outputPort":"orders","purpose":"x","consumer":"ghost"}"#,
            404,
            "principal `ghost`",
        ),
        ("get", "/api/v1/access/abc", "", 400, "not an access request id"),
        ("get", "/api/v1/access?state=maybe", "", 400, "the states are pending"),
        ("post", "/api/v1/access/77/approve", "", 404, "access request 77"),
        ("post", "/api/v1/access/1/approve", "{\"comment\": 5}", 400, "invalid type: integer"),
        ("post", "/api/v1/tokens", r#"{"principal":"ghost"}"#, 404, "principal `ghost`"),
        ("post", "/api/v1/tokens", r#"{"expiresAt":"tomorrow"}"#, 400, "not an RFC 3339 time"),
        ("delete", "/api/v1/tokens/nope", "", 404, "token `nope`"),
        ("put", "/api/v1/principals/bad%20name", r#"{"kind":"user"}"#, 400, "is not a valid principal name"),
        ("put", "/api/v1/principals/ok", r#"{"kind":"robot"}"#, 400, "unknown variant `robot`"),
        ("put", "/api/v1/principals/ok", r#"{"kind":"user","groups":["a b"]}"#, 400, "not a valid group name"),
        ("get", "/api/v1/audit?since=yesterday", "", 400, "not an RFC 3339 time"),
        ("get", "/api/v1/audit?limit=x", "", 400, "limit"),
    ];
    // One pending request exists for the approve case above.
    let res = s
        .http
        .post(format!("{}/api/v1/access", s.base))
        .body(r#"{"product":"shop","outputPort":"orders","purpose":"x"}"#);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let (_, before) = s.get("/api/v1/audit?limit=1000").await;
    for (method, path, body, status, needle) in cases {
        let url = format!("{}{path}", s.base);
        let call = match *method {
            "get" => s.http.get(url),
            "put" => s.http.put(url),
            "delete" => s.http.delete(url),
            _ => s.http.post(url),
        };
        let res = call.body(body.to_string()).send().await.unwrap();
        let got = res.status().as_u16();
        let answer: Any = res.json().await.unwrap_or(Any::Null);
        let message = answer["message"].as_str().unwrap_or_default();
        assert_eq!(got, *status, "{method} {path} {body}: {answer}");
        assert!(message.contains(needle), "{method} {path} {body}: {message}");
    }
    let (_, after) = s.get("/api/v1/audit?limit=1000").await;
    assert_eq!(requested(&before), requested(&after), "no refused request changed anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_products_owners_manage_the_contracts_its_output_ports_provide() {
    let place = sqlite().await;
    let s = start(&place).await;
    // pia's product provides `returns` (a contract with no team of its own) and `refunds`
    // (not applied yet).
    let draft = |id: &str| contract(id, "1.0.0", "sales", "").replace("status: active", "status: draft");
    let products = owned(product("aftersales", "sales", &[], &["returns", "refunds"]), "pia");
    assert_eq!(s.apply(format!("{}---\n{products}", draft("returns")), "").await.0, StatusCode::OK);
    let pia = client(&principal(&s.store, "pia", &[]).await);
    let apply = |body: String| {
        let (pia, base) = (pia.clone(), s.base.clone());
        async move { pia.post(format!("{base}/api/v1/apply")).body(body).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(apply(draft("returns") + "tags: [edited]\n").await, 200, "a contract her product provides");
    assert_eq!(apply(draft("refunds")).await, 200, "a contract her product names, in its domain");
    assert_eq!(apply(draft("coupons")).await, 403, "a contract no product of hers names");
    assert_eq!(
        apply(draft("refunds").replace("domain: sales", "domain: finance")).await,
        409,
        "it stays in its domain"
    );
    // olga's contract, in the same domain: pia cannot make her product provide it, and so
    // cannot come to manage it.
    assert_eq!(s.apply(owned(draft("orders"), "olga"), "").await.0, StatusCode::OK);
    let (_, before) = s.get("/api/v1/products/aftersales").await;
    let grab = owned(product("aftersales", "sales", &[], &["returns", "refunds", "orders"]), "pia")
        .replace("version: 1.0.0\noutputPorts", "version: 1.1.0\noutputPorts");
    let res = pia.post(format!("{}/api/v1/apply", s.base)).body(grab).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let message = res.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("contract `orders`") && message.contains("olga"), "{message}");
    let document = |record: &Any| (record["generation"].clone(), record["spec"].clone());
    let now = s.get("/api/v1/products/aftersales").await.1;
    assert_eq!(document(&now), document(&before), "the product is unchanged");
    assert_eq!(apply(draft("orders") + "tags: [taken]\n").await, 403, "nor can she edit the contract");
    // Her products' own ports keep working when she applies the product again.
    assert_eq!(apply(products.clone()).await, 200);
    // A port named before the contract exists gives her nothing over the one another team
    // then makes (its recorded owners share none with her product).
    let early = owned(product("aftersales", "sales", &[], &["returns", "refunds", "gifts"]), "pia")
        .replace("version: 1.0.0\noutputPorts", "version: 1.2.0\noutputPorts");
    assert_eq!(apply(early).await, 200, "a contract nobody stored yet may be named");
    assert_eq!(s.apply(owned(draft("gifts"), "olga"), "").await.0, StatusCode::OK);
    assert_eq!(apply(draft("gifts") + "tags: [taken]\n").await, 403, "olga's gifts stay olga's");
}

/// Item 16: every list is answered a page at a time (`limit`, at most 1000, and `after`),
/// and reading page after page gives each item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_answered_a_page_at_a_time() {
    let place = sqlite().await;
    let s = start(&place).await;
    assert_eq!(s.apply(shop(), "").await.0, StatusCode::OK);
    for name in ["p1", "p2", "p3", "p4"] {
        principal(&s.store, name, &[]).await;
    }
    for _ in 0..3 {
        request(&s.store, false).await;
    }
    let pages = |path: &'static str, cursor: &'static str| {
        let s = &s;
        async move {
            let mut seen = Vec::new();
            let mut after = String::new();
            loop {
                let sep = if path.contains('?') { '&' } else { '?' };
                let (status, page) = s.get(&format!("{path}{sep}limit=2{after}")).await;
                assert_eq!(status, StatusCode::OK, "{path}: {page}");
                let items = page.as_array().unwrap().clone();
                assert!(items.len() <= 2, "{path}: a page holds at most `limit`");
                let Some(last) = items.last() else { return seen };
                after = format!("&after={}", last[cursor].as_str().map_or(last[cursor].to_string(), str::to_string));
                seen.extend(items.iter().map(|i| i[cursor].to_string()));
            }
        }
    };
    let names = pages("/api/v1/principals", "name").await;
    assert_eq!(names.len(), 5, "the admin and four users: {names:?}");
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
    assert_eq!(pages("/api/v1/access", "id").await.len(), 3);
    assert_eq!(pages("/api/v1/tokens", "id").await.len(), 5);
    assert_eq!(pages("/api/v1/contracts/orders@v1/history", "seq").await.len(), 1);
    let (status, body) = s.get("/api/v1/principals?limit=5000").await;
    assert_eq!((status, body.as_array().map(Vec::len)), (StatusCode::OK, Some(5)), "the limit is capped, not refused");
}

/// The audit records of what callers asked for, without the reconcilers' own (status
/// transitions arrive whenever the reconcilers get to them).
fn requested(audit: &Any) -> Vec<&Any> {
    audit.as_array().unwrap().iter().filter(|c| c["origin"] != "reconciler").collect()
}

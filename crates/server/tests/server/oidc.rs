//! OIDC bearer tokens: a JWT of the configured provider is accepted when its signature, issuer,
//! audience and expiry check out, and stands for the principal its claim names; every other
//! JWT is refused with the reason.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use meshplane_server::oidc::Oidc;
use serde_json::json;

use crate::*;

const SECRET: &[u8] = b"a shared secret the identity provider signs with";
const ISSUER: &str = "https://idp.example.test/realms/data";

fn jwks() -> String {
    let k = jsonwebtoken::jwk::Jwk {
        common: jsonwebtoken::jwk::CommonParameters {
            key_id: Some("k1".into()),
            key_algorithm: Some(jsonwebtoken::jwk::KeyAlgorithm::HS256),
            ..Default::default()
        },
        algorithm: jsonwebtoken::jwk::AlgorithmParameters::OctetKey(jsonwebtoken::jwk::OctetKeyParameters {
            key_type: jsonwebtoken::jwk::OctetKeyType::Octet,
            value: meshplane_core::testing::base64url(SECRET),
        }),
    };
    json!({ "keys": [k] }).to_string()
}

fn jwt(kid: &str, claims: Any) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::HS256) };
    encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn claims(iss: &str, aud: &str, exp_in: i64, user: &str) -> Any {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    json!({ "iss": iss, "aud": aud, "exp": now + exp_in, "preferred_username": user })
}

/// A server whose platform accepts this test's JWTs (claim: `None` maps accounts by `iss`
/// and `sub`), with erin (a user in the analysts group, account `u-erin`) and the analysts
/// group; its URL and store.
async fn provider(claim: Option<&str>) -> (String, Store, Place) {
    let place = sqlite().await;
    let store = Store::open(&place.url).await.unwrap();
    let oidc = Oidc::new(ISSUER, "meshplane", claim, &jwks()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config { oidc: Some(Arc::new(oidc)), ..Config::default() };
    let served = store.clone();
    tokio::spawn(async move { axum::serve(listener, app(served, config, None, Blocks::default())).await });
    let who = meshplane_core::store::ApplyOptions {
        actor: "test".into(),
        origin: "test".into(),
        dry_run: false,
        prune: false,
    };
    let erin = Principal {
        name: "erin".into(),
        kind: PrincipalKind::User,
        database_role: None,
        groups: vec!["analysts".into()],
        platform_admin: false,
        domains: vec![],
        oidc: Some(meshplane_core::store::identity::OidcIdentity { issuer: ISSUER.into(), subject: "u-erin".into() }),
    };
    store.put_principal(&erin, &who).await.unwrap();
    let analysts =
        Principal { name: "analysts".into(), kind: PrincipalKind::Group, groups: vec![], oidc: None, ..erin };
    store.put_principal(&analysts, &who).await.unwrap();
    (base, store, place)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn send(call: reqwest::RequestBuilder) -> (u16, Any) {
    let res = call.send().await.unwrap();
    (res.status().as_u16(), res.json::<Any>().await.unwrap_or(Any::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_of_the_configured_provider_stand_for_known_principals() {
    let (base, _store, _place) = provider(Some("preferred_username")).await;
    let whoami = |token: String| send(reqwest::Client::new().get(format!("{base}/api/v1/whoami")).bearer_auth(token));
    let (status, me) = whoami(jwt("k1", claims(ISSUER, "meshplane", 60, "erin"))).await;
    assert_eq!((status, me["name"].as_str(), me["groups"][0].as_str()), (200, Some("erin"), Some("analysts")));

    let refused = [
        (jwt("k1", claims("https://elsewhere", "meshplane", 60, "erin")), "InvalidIssuer"),
        (jwt("k1", claims(ISSUER, "another-app", 60, "erin")), "InvalidAudience"),
        (jwt("k1", claims(ISSUER, "meshplane", -600, "erin")), "ExpiredSignature"),
        (jwt("k2", claims(ISSUER, "meshplane", 60, "erin")), "no key `k2` in the JWKS"),
        (jwt("k1", claims(ISSUER, "meshplane", 60, "mallory")), "`mallory`, who is not a known principal"),
        (
            jwt("k1", json!({ "iss": ISSUER, "aud": "meshplane", "exp": 4_000_000_000u64 })),
            "no `preferred_username` claim",
        ),
        (format!("{}x", jwt("k1", claims(ISSUER, "meshplane", 60, "erin"))), "InvalidSignature"),
        ("not.a.jwt".into(), "not a JWT"),
        // Item 14: nobody signs in as a group, and a token is not good before its `nbf`.
        (jwt("k1", claims(ISSUER, "meshplane", 60, "analysts")), "`analysts` is a group"),
        (
            jwt(
                "k1",
                json!({ "iss": ISSUER, "aud": "meshplane", "exp": now() + 3600, "nbf": now() + 1800,
                              "preferred_username": "erin" }),
            ),
            "ImmatureSignature",
        ),
    ];
    for (token, why) in refused {
        let (status, body) = whoami(token).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert_eq!(status, 401, "{why}: {body}");
        assert!(message.contains(why), "{why}: {message}");
    }
}

/// Item 14: by default a JWT stands for the principal recorded with its account (`iss` and
/// `sub`); a username claim, which many providers let users edit, names nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_jwt_signs_in_by_its_account_not_a_username_it_claims() {
    let (base, _store, _place) = provider(None).await;
    let whoami = |token: String| send(reqwest::Client::new().get(format!("{base}/api/v1/whoami")).bearer_auth(token));
    let as_admin = json!({ "iss": ISSUER, "aud": "meshplane", "exp": now() + 60, "sub": "u-erin",
                           "preferred_username": "admin" });
    let (status, me) = whoami(jwt("k1", as_admin)).await;
    assert_eq!((status, me["name"].as_str(), me["platformAdmin"].as_bool()), (200, Some("erin"), Some(false)));
    let stranger = json!({ "iss": ISSUER, "aud": "meshplane", "exp": now() + 60, "sub": "u-mallory",
                           "preferred_username": "erin" });
    let (status, body) = whoami(jwt("k1", stranger)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("account `u-mallory`"), "{body}");
}

/// Item 14: an API token made with a JWT expires no later than the platform allows, and a
/// token made with an expiring token no later than that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_made_with_a_short_lived_credential_do_not_outlive_it() {
    let (base, _store, _place) = provider(None).await;
    let erin = jwt("k1", json!({ "iss": ISSUER, "aud": "meshplane", "exp": now() + 60, "sub": "u-erin" }));
    let mint = |credential: String, body: &str| {
        send(
            reqwest::Client::new().post(format!("{base}/api/v1/tokens")).bearer_auth(credential).body(body.to_string()),
        )
    };
    let (status, made) = mint(erin.clone(), "{}").await;
    assert_eq!(status, 200, "{made}");
    let expires = made["info"]["expiresAt"].as_str().expect("a token made with a JWT expires");
    let in_31_days = time::OffsetDateTime::now_utc() + time::Duration::days(31);
    let limit = in_31_days.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        meshplane_core::store::canonical_time(expires) < meshplane_core::store::canonical_time(&limit),
        "{expires}"
    );
    let (status, body) = mint(erin.clone(), r#"{"expiresAt":"2099-01-01T00:00:00Z"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expires no later than"), "{body}");
    // A token that expires makes only tokens that expire no later.
    let in_10_days = (time::OffsetDateTime::now_utc() + time::Duration::days(10)).replace_nanosecond(0).unwrap();
    let end = in_10_days.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (status, made) = mint(erin, &format!(r#"{{"expiresAt":"{end}"}}"#)).await;
    assert_eq!(status, 200, "{made}");
    let short = made["token"].as_str().unwrap().to_string();
    let (status, _) = mint(short.clone(), r#"{"expiresAt":"2099-01-01T00:00:00Z"}"#).await;
    assert_eq!(status, 400);
    let (status, later) = mint(short, "{}").await;
    let end = meshplane_core::store::canonical_time(&end);
    assert_eq!((status, later["info"]["expiresAt"].as_str()), (200, end.as_deref()));
}

/// Item 16: an address that fails to authenticate again and again is refused for a while
/// (429, with when to come back), even with a good credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentications_are_refused_for_a_while() {
    let place = sqlite().await;
    let store = Store::open(&place.url).await.unwrap();
    let good = admin_token(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config { failed_auth_limit: 5, ..Config::default() };
    let app = app(store, config, None, Blocks::default()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let whoami = |token: &str| {
        let call = reqwest::Client::new().get(format!("{base}/api/v1/whoami")).bearer_auth(token.to_string());
        async move { call.send().await.unwrap() }
    };
    for guess in 0..5 {
        assert_eq!(whoami(&format!("mp_guess{guess}_x")).await.status().as_u16(), 401);
    }
    let refused = whoami("mp_guess5_x").await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Any = refused.json().await.unwrap();
    assert_eq!(body["code"], "too-many-attempts");
    assert_eq!(whoami(&good).await.status().as_u16(), 429, "the address waits, whatever it sends");
    let anonymous = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 200, "probes carry no credentials and are not refused");
}

#[test]
fn a_jwks_that_is_not_one_is_refused() {
    for bad in ["", "{}", r#"{"keys": []}"#, r#"{"keys": [{"kty": "RSA"}]}"#] {
        assert!(Oidc::new(ISSUER, "meshplane", None, bad).is_err(), "{bad}");
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_of_the_configured_provider_stand_for_known_principals() {
    let place = sqlite().await;
    let store = Store::open(&place.url).await.unwrap();
    let oidc = Oidc::new(ISSUER, "meshplane", "preferred_username", &jwks()).unwrap();
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
    };
    store.put_principal(&erin, &who).await.unwrap();
    let whoami = |token: String| {
        let url = format!("{base}/api/v1/whoami");
        async move {
            let res = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
            (res.status().as_u16(), res.json::<Any>().await.unwrap())
        }
    };
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
    ];
    for (token, why) in refused {
        let (status, body) = whoami(token).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert_eq!(status, 401, "{why}: {body}");
        assert!(message.contains(why), "{why}: {message}");
    }
}

#[test]
fn a_jwks_that_is_not_one_is_refused() {
    for bad in ["", "{}", r#"{"keys": []}"#, r#"{"keys": [{"kty": "RSA"}]}"#] {
        assert!(Oidc::new(ISSUER, "meshplane", "sub", bad).is_err(), "{bad}");
    }
}

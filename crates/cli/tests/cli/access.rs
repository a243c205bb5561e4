//! Access management through the CLI against a real `meshplane serve` (embedded platform: the
//! lake block, which records grants without enforcing them): principals, tokens, a request
//! for a role, its approval by the role's approver, revocation, and the audit trail.

use std::path::Path;
use std::process::{Command, Output};

use super::{fixtures, serve, stdout};

/// Runs meshplane as the holder of `token` (none: anonymous).
fn as_(token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshplane"));
    command.env_remove("MESHPLANE_TOKEN");
    if let Some(token) = token {
        command.env("MESHPLANE_TOKEN", token);
    }
    command.args(args).current_dir(fixtures()).output().expect("run meshplane")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}{}", stdout(out), stderr(out)))
}

#[test]
fn a_consumer_asks_the_roles_approver_and_every_step_is_audited() {
    let s = serve();
    let admin_token = super::token_for(&s.url).unwrap();
    let admin = Some(admin_token.as_str());
    let url = s.url.as_str();
    let mesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    let applied = as_(admin, &["apply", "--server", url, "-f", mesh.to_str().unwrap()]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));

    let anonymous = as_(None, &["get", "contracts", "--server", url]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(stderr(&anonymous).contains("error[unauthenticated]"), "{}", stderr(&anonymous));

    for (name, role) in [("sam", "sam_db"), ("carol", "carol_db")] {
        let put = as_(admin, &["principal", "put", name, "--database-role", role, "--server", url]);
        assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    }
    let service = as_(admin, &["principal", "put", "reporting", "--kind", "service", "--server", url]);
    assert_eq!(service.status.code(), Some(0), "{}", stderr(&service));
    let login = as_(admin, &["principal", "login", "reporting", "--block", "lake", "--server", url]);
    assert_eq!(login.status.code(), Some(1));
    assert!(stderr(&login).contains("block `lake` cannot create logins"), "{}", stderr(&login));
    let listed = stdout(&as_(admin, &["principal", "list", "--server", url]));
    assert!(listed.lines().any(|l| l.starts_with("carol") && l.contains("carol_db")), "{listed}");
    let token = |who: &str| {
        let out = as_(admin, &["token", "create", "--principal", who, "--description", "cli test", "--server", url]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("shown only now"), "{}", stderr(&out));
        let printed = stdout(&out);
        assert!(printed.starts_with("mp_") && printed.lines().count() == 1, "only the token on stdout: {printed}");
        printed.trim_end().to_string()
    };
    let (sam, carol) = (token("sam"), token("carol"));

    let ask = [
        "access",
        "request",
        "sales-orders",
        "orders",
        "--role",
        "analyst",
        "--purpose",
        "weekly sales report",
        "--server",
        url,
        "-o",
        "json",
    ];
    let request = json(&as_(Some(&carol), &ask));
    assert_eq!((request["state"].as_str(), request["approvers"]["first"][0].as_str()), (Some("pending"), Some("sam")));
    let id = request["id"].to_string();
    let bad_until = as_(Some(&carol), &[&ask[..10], &["--until", "next tuesday"]].concat());
    assert_eq!(bad_until.status.code(), Some(1));
    assert!(stderr(&bad_until).contains("`until: next tuesday` is not an RFC 3339 time"), "{}", stderr(&bad_until));
    assert_eq!(as_(Some(&carol), &["access", "approve", "first", "--server", url]).status.code(), Some(2), "usage");

    let own = as_(Some(&carol), &["access", "approve", &id, "--server", url]);
    assert_eq!(own.status.code(), Some(1));
    assert!(stderr(&own).contains("error[forbidden]"), "{}", stderr(&own));
    let approved =
        json(&as_(Some(&sam), &["access", "approve", &id, "--comment", "fine", "--server", url, "-o", "json"]));
    assert_eq!((approved["kind"].as_str(), approved["state"].as_str()), (Some("Grant"), Some("active")));

    // The lake block records the grant without enforcing it, and says so.
    let mut enforcement = String::new();
    for _ in 0..100 {
        let grants = json(&as_(Some(&carol), &["access", "list", "--state", "active", "--server", url, "-o", "json"]));
        enforcement = grants[0]["enforcement"].as_str().unwrap_or_default().to_string();
        if !enforcement.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(enforcement, "advisory");
    let table = stdout(&as_(Some(&carol), &["access", "list", "--server", url]));
    assert!(table.contains("sales-orders/orders") && table.contains("advisory"), "{table}");

    let revoked = json(&as_(Some(&sam), &["access", "revoke", &id, "--server", url, "-o", "json"]));
    assert_eq!(revoked["state"], "revoked");
    let again = as_(Some(&sam), &["access", "revoke", &id, "--server", url]);
    assert!(stderr(&again).contains("error[wrong-state]"), "{}", stderr(&again));

    let audit = json(&as_(admin, &["audit", "--kind", "AccessRequest", "--name", &id, "--server", url, "-o", "json"]));
    let trail: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(trail, [("requested", "carol"), ("approved", "sam"), ("revoked", "sam")]);
    // The server's log has a line for each decision, with who made it.
    let log = std::fs::read_to_string(s.cwd.join("serve.log")).unwrap();
    for (action, actor) in trail {
        let line =
            log.lines().find(|l| l.contains(&format!("access {action}")) && l.contains(&format!("request={id}")));
        let line = line.unwrap_or_else(|| panic!("no line for `access {action}`: {log}"));
        assert!(line.contains(&format!("actor={actor}")), "{line}");
    }
    let table = stdout(&as_(admin, &["audit", "--actor", "carol", "--server", url]));
    assert!(table.contains("requested") && table.contains("api 127.0.0.1:"), "{table}");
    let consumers = as_(Some(&carol), &["audit", "--server", url]);
    assert!(stderr(&consumers).contains("error[forbidden]"), "only platform admins read the audit log");

    // Carol's own tokens; revoking the one in use ends her access.
    let mine = json(&as_(Some(&carol), &["token", "list", "--server", url, "-o", "json"]));
    assert_eq!(mine.as_array().map(Vec::len), Some(1));
    let token_id = mine[0]["id"].as_str().unwrap();
    let me = stdout(&as_(Some(&carol), &["whoami", "--server", url]));
    assert!(me.lines().nth(1).is_some_and(|l| l.starts_with("carol") && l.contains("carol_db")), "{me}");
    assert_eq!(as_(Some(&carol), &["token", "revoke", token_id, "--server", url]).status.code(), Some(0));
    let locked = as_(Some(&carol), &["access", "list", "--server", url]);
    assert!(stderr(&locked).contains("error[unauthenticated]"), "{}", stderr(&locked));

    // No token shows in what the server wrote, nor in the audit log or the change feed.
    let log = std::fs::read_to_string(s.cwd.join("serve.log")).unwrap();
    assert!(log.contains("meshplane serving"), "{log}");
    let everything = format!(
        "{log}{}{}",
        stdout(&as_(admin, &["audit", "--limit", "1000", "--server", url, "-o", "json"])),
        stdout(&as_(admin, &["events", "--limit", "1000", "--server", url, "-o", "json"]))
    );
    for token in [admin_token.as_str(), sam.as_str(), carol.as_str()] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(!everything.contains(secret), "a token's secret was shown");
    }
}

#[test]
fn bootstrap_makes_a_working_admin_token_and_says_where_it_goes() {
    let dir = std::env::temp_dir().join(format!("mpcli-bootstrap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = || Command::new(env!("CARGO_BIN_EXE_meshplane")).args(["bootstrap"]).current_dir(&dir).output().unwrap();
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let token = stdout(&first).trim().to_string();
    assert!(token.starts_with("mp_") && stdout(&first).lines().count() == 1, "only the token on stdout");
    assert!(stderr(&first).contains("platform admin `admin`") && !stderr(&first).contains(&token));
    let second = run();
    assert_ne!(stdout(&second).trim(), token, "each bootstrap makes a new token; the old one stays valid");
    let broken = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["bootstrap", "--database-url", "mysql://nowhere"])
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(2));
    assert!(stderr(&broken).contains("cannot open the store"), "{}", stderr(&broken));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An identity provider's JWKS endpoint on loopback: every request is answered with what
/// `body` holds then. Returns its URL.
fn jwks_endpoint(body: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = body.lock().unwrap().clone();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

/// A JWKS of one HS256 key.
fn key_set(kid: &str, secret: &[u8]) -> String {
    let k = meshplane_core::testing::base64url(secret);
    serde_json::json!({ "keys": [{ "kty": "oct", "kid": kid, "alg": "HS256", "k": k }] }).to_string()
}

#[test]
fn serve_accepts_the_jwts_of_the_identity_provider_the_platform_names() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let keys = std::sync::Arc::new(std::sync::Mutex::new(key_set("main", b"the first key")));
    let certs = jwks_endpoint(std::sync::Arc::clone(&keys));
    let dir = std::env::temp_dir().join(format!("mpcli-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let platform = dir.join("platform.yaml");
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\noidc:\n  issuer: https://idp.test\n  \
         audience: meshplane\n  claim: email\n  jwks: {{ url: '{certs}' }}\n"
    );
    std::fs::write(&platform, &text).unwrap();
    let db = dir.join("store.db");
    let s = super::serve_with(&format!("sqlite://{}", db.display()), &["--platform", platform.to_str().unwrap()]);
    let url = s.url.as_str();
    let admin = super::token_for(url).unwrap();
    let put = as_(Some(&admin), &["principal", "put", "erin@example.test", "--server", url]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({ "iss": "https://idp.test", "aud": "meshplane", "exp": now + 300, "email": "erin@example.test" });
    let jwt = |kid: &str, secret: &[u8]| {
        let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::HS256) };
        encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let whoami = |token: String| as_(Some(&token), &["whoami", "--server", url, "-o", "json"]);
    let me = whoami(jwt("main", b"the first key"));
    assert_eq!(json(&me)["name"], "erin@example.test", "{}", stderr(&me));
    // The provider rotates its key: the new key is fetched when a token first names it; a
    // name unknown even then is refused, and the keys are not fetched again at once.
    *keys.lock().unwrap() = key_set("next", b"the second key");
    let me = whoami(jwt("next", b"the second key"));
    assert_eq!(json(&me)["name"], "erin@example.test", "{}", stderr(&me));
    let unknown = whoami(jwt("later", b"a third key"));
    assert!(stderr(&unknown).contains("no key `later` in the JWKS"), "{}", stderr(&unknown));

    // Keys that cannot be read: nothing starts.
    std::fs::write(&platform, text.replace(&format!("{{ url: '{certs}' }}"), "{ file: ./no-such-jwks.json }")).unwrap();
    let out = as_(None, &["serve", "--platform", platform.to_str().unwrap(), "--listen", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read the OIDC keys ./no-such-jwks.json; nothing was started"),
        "{}",
        stderr(&out)
    );
    drop(s);
    std::fs::remove_dir_all(dir).unwrap();
}

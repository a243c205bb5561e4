//! `meshplane login` against a real OpenID provider on loopback (panva's oidc-provider,
//! installed by ./test.sh from npm): the device authorization grant, completed the way a
//! person does in a browser (the code page, the confirmation, the provider's login form and
//! consent), the token kept for the context (0600), sent to a `meshplane serve` whose platform
//! trusts the provider, refreshed when it is about to expire, and gone after `logout`; and
//! contexts (`meshplane config`) that choose the server and where the token comes from.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{meshplane, serve_with, stdout, token_for};

/// Where ./test.sh installed oidc-provider; `None` (the test is skipped, outside CI) when it
/// did not.
fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("MESHPLANE_NPM_MODULES")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshplane-npm/node_modules")))?;
    if dir.join("oidc-provider").is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "oidc-provider is not installed in {}: run ./test.sh", dir.display());
    eprintln!("skipped: oidc-provider is not installed (./test.sh installs it)");
    None
}

/// The provider, killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider; its ID tokens last `ttl` seconds.
fn provider(modules: &Path, ttl: u64) -> Provider {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(port.to_string())
        .arg(modules)
        .env("ID_TOKEN_TTL", ttl.to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(std::env::temp_dir().join(format!("mpcli-oidc-{port}.log"))).unwrap())
        .spawn()
        .expect("run node");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "the provider did not start: {line}");
    // What it prints later goes nowhere, but to a pipe that stays open.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Provider { child, issuer: format!("http://127.0.0.1:{port}") }
}

/// The CLI as a user runs it: with a configuration directory of its own and no token or
/// server in the environment.
fn user(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().expect("run meshplane")
}

fn command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshplane"));
    command.args(args).env("XDG_CONFIG_HOME", home);
    for var in ["MESHPLANE_TOKEN", "MESHPLANE_SERVER", "MESHPLANE_CONTEXT", "MESHPLANE_CONFIG"] {
        command.env_remove(var);
    }
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A browser, as far as the provider's pages need one: cookies kept, redirects seen.
struct Browser {
    http: reqwest::blocking::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    /// (status, Location, body) of a GET (no form) or a form POST.
    fn go(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> (u16, Option<String>, String) {
        let request = match form {
            Some(form) => self.http.post(url).form(form),
            None => self.http.get(url),
        };
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let res = request.header("cookie", cookie).send().unwrap();
        for set in res.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            self.cookies.push((name.to_string(), value.to_string()));
        }
        let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        (res.status().as_u16(), location, res.text().unwrap())
    }
}

/// The value of the hidden `xsrf` field of a page's form.
fn xsrf(page: &str) -> String {
    let start = page.find("name=\"xsrf\" value=\"").expect("a form with xsrf") + 19;
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

/// Does in a "browser" what the person at the terminal does with the page and code `login`
/// printed: opens the page, confirms the code, signs in as `account`, and consents.
fn sign_in(issuer: &str, page: &str, user_code: &str, account: &str) {
    let mut browser = Browser {
        http: reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        cookies: Vec::new(),
    };
    let absolute =
        |location: &str| if location.starts_with('/') { format!("{issuer}{location}") } else { location.into() };
    let (_, _, entry) = browser.go(page, None);
    let device = format!("{issuer}/device");
    let (_, _, confirm) = browser.go(&device, Some(&[("xsrf", &xsrf(&entry)), ("user_code", user_code)]));
    assert!(confirm.contains(user_code), "the confirmation shows the code: {confirm}");
    let form = [("xsrf", xsrf(&confirm)), ("user_code", user_code.into()), ("confirm", "yes".into())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, interaction, _) = browser.go(&device, Some(&form));
    assert_eq!(status, 303);
    let interaction = absolute(&interaction.unwrap());
    let (_, resume, _) =
        browser.go(&interaction, Some(&[("prompt", "login"), ("login", account), ("password", "any")]));
    let (_, consent, _) = browser.go(&absolute(&resume.unwrap()), None);
    let (_, resume, _) = browser.go(&absolute(&consent.unwrap()), Some(&[("prompt", "consent")]));
    let (status, _, done) = browser.go(&absolute(&resume.unwrap()), None);
    assert_eq!(status, 200);
    assert!(done.contains("Sign-in Success"), "{done}");
}

/// Runs `meshplane login` and signs in as `account` when it shows the code.
fn login(home: &Path, issuer: &str, account: &str) -> Output {
    let mut child = command(home, &["login"]).stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("To sign in to dev, open ") {
            let (page, code) = rest.trim().split_once(" and enter the code ").expect("the page and the code");
            sign_in(issuer, page, code, account);
        }
        line.clear();
    }
    let out = child.wait_with_output().unwrap();
    Output { stderr: said.into_bytes(), ..out }
}

#[test]
fn login_signs_in_with_the_device_grant_and_the_registry_takes_the_token() {
    let Some(modules) = node_modules() else { return };
    let idp = provider(&modules, 30);
    let dir = std::env::temp_dir().join(format!("mpcli-login-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let platform = dir.join("platform.yaml");
    std::fs::write(
        &platform,
        format!(
            "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\nblocks:\n  - {{ name: lake, type: lake, root: ./data }}\n\
             oidc:\n  issuer: {0}\n  audience: meshplane-cli\n  jwks: {{ url: {0}/jwks }}\n",
            idp.issuer
        ),
    )
    .unwrap();
    let db = dir.join("login.db");
    let s = serve_with(&format!("sqlite://{}", db.display()), &["--platform", platform.to_str().unwrap()]);
    let put = meshplane(&[
        "principal",
        "put",
        "alice",
        "--oidc-subject",
        "alice",
        "--oidc-issuer",
        &idp.issuer,
        "--server",
        &s.url,
    ]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));

    // An issuer reached in the clear is refused; the provider on loopback is not.
    let clear = user(
        &home,
        &["config", "set-context", "x", "--server", &s.url, "--issuer", "http://idp.example.com", "--client-id", "c"],
    );
    assert_eq!(clear.status.code(), Some(2));
    assert!(stderr(&clear).contains("is reached over https"), "{}", stderr(&clear));
    let set = user(
        &home,
        &[
            "config",
            "set-context",
            "dev",
            "--server",
            &s.url,
            "--issuer",
            &idp.issuer,
            "--client-id",
            "meshplane-cli",
            "--use",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let config = home.join("meshplane/config.yaml");
    assert!(std::fs::read_to_string(&config).unwrap().contains("currentContext: dev"));

    // Not signed in yet: the registry is asked for nothing, and the error says what to do.
    let before = user(&home, &["whoami"]);
    assert_eq!(before.status.code(), Some(2));
    assert!(
        stderr(&before).contains("context dev is not signed in: run meshplane login --context dev"),
        "{}",
        stderr(&before)
    );

    let signed = login(&home, &idp.issuer, "alice");
    assert_eq!(signed.status.code(), Some(0), "{}", stderr(&signed));
    assert!(stderr(&signed).contains("signed in to dev as alice"), "{}", stderr(&signed));
    let kept = home.join("meshplane/tokens/dev.json");
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(kept.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let first: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    let id_token = first["idToken"].as_str().unwrap();
    assert!(!stderr(&signed).contains(id_token), "the token is never printed");

    // The registry takes the provider's token for alice. It lasts 30 s, under the minute
    // before expiry when the CLI renews it: so each use renews it with the refresh token.
    let me = user(&home, &["whoami", "-o", "json"]);
    assert_eq!(me.status.code(), Some(0), "{}", stderr(&me));
    let me: serde_json::Value = serde_json::from_slice(&me.stdout).unwrap();
    assert_eq!(me["name"], "alice", "{me}");
    let renewed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    // (The provider turns a public client's refresh token over at each use.)
    assert_ne!(renewed["refreshToken"], first["refreshToken"], "renewed before use");
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);

    // Commands started at once renew in turn, each with the refresh token the one before
    // kept: the provider ends a sign-in whose turned-over refresh token comes back, so a
    // second use of one would fail this command or the next.
    let at_once: Vec<_> = (0..4)
        .map(|_| command(&home, &["whoami"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for child in at_once {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let after = user(&home, &["whoami"]);
    assert_eq!(after.status.code(), Some(0), "still signed in: {}", stderr(&after));

    // The context's token goes to its own server only, never to another one --server names.
    let other = s.url.replace("127.0.0.1", "localhost");
    let elsewhere = user(&home, &["whoami", "--server", &other]);
    assert_eq!(elsewhere.status.code(), Some(1), "{}", stderr(&elsewhere));
    assert!(stderr(&elsewhere).contains("no token"), "{}", stderr(&elsewhere));
    let same = user(&home, &["whoami", "--server", &format!("{}/api/v1", s.url)]);
    assert_eq!(same.status.code(), Some(0), "the same server, spelled otherwise: {}", stderr(&same));

    // A second context takes its token from a variable; --context picks it.
    let admin = token_for(&s.url).unwrap();
    let ci = user(&home, &["config", "set-context", "ci", "--server", &s.url, "--token-env", "CI_MESHPLANE_TOKEN"]);
    assert_eq!(ci.status.code(), Some(0), "{}", stderr(&ci));
    let as_ci = command(&home, &["whoami", "--context", "ci", "-o", "json"])
        .env("CI_MESHPLANE_TOKEN", &admin)
        .output()
        .unwrap();
    let as_ci: serde_json::Value = serde_json::from_slice(&as_ci.stdout).unwrap();
    assert_ne!(as_ci["name"], "alice", "{as_ci}");
    let listed = stdout(&user(&home, &["config", "get-contexts"]));
    let current = listed.lines().find(|l| l.starts_with('*')).unwrap_or_default();
    assert!(current.contains("dev") && current.contains(&format!("login {}", idp.issuer)), "{listed}");
    assert!(listed.contains("env CI_MESHPLANE_TOKEN"), "{listed}");
    assert_eq!(stdout(&user(&home, &["config", "current-context"])), "dev\n");
    let unknown = user(&home, &["whoami", "--context", "nope"]);
    assert!(stderr(&unknown).contains("no context `nope` (there are: dev, ci)"), "{}", stderr(&unknown));

    // A context whose name would lead out of the token directory is refused as read.
    let hostile = dir.join("hostile.yaml");
    std::fs::write(
        &hostile,
        format!("currentContext: ../../x\ncontexts:\n  - {{ name: ../../x, server: '{}' }}\n", s.url),
    )
    .unwrap();
    let refused = command(&home, &["whoami"]).env("MESHPLANE_CONFIG", &hostile).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("context `../../x`: use letters, digits"), "{}", stderr(&refused));

    // Signed out, the token is gone.
    let out = user(&home, &["logout"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!kept.exists());
    assert_eq!(user(&home, &["whoami"]).status.code(), Some(2));
    drop(s);
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&dir);
}

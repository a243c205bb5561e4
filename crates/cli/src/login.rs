//! `meshplane login` and `logout`: signing in with an OpenID provider by the device
//! authorization grant (RFC 8628), as a user of a terminal does — the CLI shows a code and a
//! page to enter it on, and waits while the user signs in there in any browser — and the
//! token kept for the context, refreshed when it is about to expire.
//!
//! The bearer sent to the registry is the provider's ID token (its audience is the client id,
//! which the platform's `oidc.audience` names), as kubectl's OIDC sign-in does. The provider
//! is reached over https only (http to a loopback address, for development); its discovery
//! document must name the issuer it was asked for. Nothing the provider answers is printed
//! but the user code and the page.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value as Any;

use crate::config::{self, Context};

/// What `meshplane login` keeps for a context.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    issuer: String,
    client_id: String,
    id_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// A token this close to its expiry is refreshed before it is sent.
const EARLY: i64 = 60;

/// How long one call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  meshplane config set-context prod --server https://meshplane.example.com \
                        --issuer https://idp.example.com --client-id meshplane-cli --use\n  meshplane login")]
pub struct LoginArgs {
    /// The context to sign in for (default: --context, MESHPLANE_CONTEXT, or the current one).
    #[arg(long)]
    context: Option<String>,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane logout")]
pub struct LogoutArgs {
    /// The context whose token goes (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

/// Refuses an issuer the token would travel to in the clear.
pub fn check_issuer(issuer: &str) -> Result<()> {
    let url = reqwest::Url::parse(issuer).map_err(|e| anyhow!("--issuer `{issuer}` is not a URL ({e})"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => bail!("--issuer `{issuer}`: an OpenID provider is reached over https (http only on a loopback address)"),
    }
}

fn context_for(chosen: Option<&str>) -> Result<(Context, config::Login)> {
    let config = config::load()?;
    let env = std::env::var("MESHPLANE_CONTEXT").ok();
    let context = config.context(chosen.or(env.as_deref()))?.cloned().ok_or_else(|| {
        anyhow!("no context to sign in for: meshplane config set-context NAME --server URL --issuer URL --client-id ID --use")
    })?;
    let login = context.login.clone().ok_or_else(|| {
        anyhow!("context {} signs in with no OpenID provider (set one with --issuer and --client-id)", context.name)
    })?;
    Ok((context, login))
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot make the HTTP client")
}

/// The most of an answer of the provider that is read.
const MOST: usize = 1 << 20;

/// An answer's body as JSON, read up to [`MOST`] bytes.
async fn json_of(mut res: reqwest::Response, what: &str) -> Result<Any> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.with_context(|| format!("cannot read {what}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MOST {
            bail!("{what} is larger than {MOST} bytes: refused");
        }
    }
    serde_json::from_slice(&body).with_context(|| format!("{what} is not JSON"))
}

/// Text of the provider's, without control characters, to print on a terminal.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The provider's endpoints, from its discovery document.
struct Endpoints {
    device: String,
    token: String,
}

async fn discover(http: &reqwest::Client, login: &config::Login) -> Result<Endpoints> {
    check_issuer(&login.issuer)?;
    let issuer = login.issuer.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot read the provider's discovery document {url}"))?;
    let doc = json_of(doc, &url).await?;
    if doc["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(issuer) {
        bail!("the provider at {issuer} names another issuer ({}): refused", doc["issuer"]);
    }
    let endpoint = |key: &str| -> Result<String> {
        let url = doc[key].as_str().ok_or_else(|| anyhow!("the provider at {issuer} has no {key}"))?;
        // https, or http on a loopback address when the issuer is too.
        if check_issuer(url).is_err() || (!url.starts_with("https://") && !issuer.starts_with("http://")) {
            bail!("the provider's {key} {} is not https", printable(url));
        }
        Ok(url.to_string())
    };
    Ok(Endpoints { device: endpoint("device_authorization_endpoint")?, token: endpoint("token_endpoint")? })
}

/// Why the token endpoint refused, from its OAuth error body.
fn oauth_error(body: &Any) -> (&str, &str) {
    (body["error"].as_str().unwrap_or("unknown"), body["error_description"].as_str().unwrap_or(""))
}

/// The refusal of the provider, printable.
fn refusal(body: &Any) -> String {
    let (error, why) = oauth_error(body);
    printable(&format!("{error} {why}")).trim().to_string()
}

pub fn login(args: &LoginArgs) -> Result<ExitCode> {
    let (context, login) = context_for(args.context.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let kept = runtime.block_on(async {
        let http = client()?;
        let endpoints = discover(&http, &login).await?;
        let scopes = if login.scopes.is_empty() { "openid offline_access".to_string() } else { login.scopes.join(" ") };
        let grant = http
            .post(&endpoints.device)
            .form(&[("client_id", login.client_id.as_str()), ("scope", scopes.as_str())])
            .send()
            .await
            .context("cannot reach the provider's device authorization endpoint")?;
        let grant = json_of(grant, "the device authorization endpoint's answer").await?;
        let (Some(device_code), Some(user_code), Some(page)) =
            (grant["device_code"].as_str(), grant["user_code"].as_str(), grant["verification_uri"].as_str())
        else {
            bail!("the provider refused to start a sign-in: {}", refusal(&grant));
        };
        let (page, user_code) = (printable(page), printable(user_code));
        let complete = grant["verification_uri_complete"].as_str().map(printable);
        let mut err = std::io::stderr().lock();
        writeln!(err, "To sign in to {}, open {page} and enter the code {user_code}", context.name)?;
        if let Some(complete) = complete {
            writeln!(err, "(or open {complete})")?;
        }
        writeln!(err, "waiting for the sign-in; Ctrl-C stops")?;
        drop(err);
        let mut every = Duration::from_secs(grant["interval"].as_u64().unwrap_or(5).clamp(1, 60));
        // The code's lifetime as the provider says, within an hour.
        let lifetime = grant["expires_in"].as_u64().unwrap_or(600).min(3600);
        let deadline = std::time::Instant::now() + Duration::from_secs(lifetime);
        loop {
            tokio::time::sleep(every).await;
            if std::time::Instant::now() > deadline {
                bail!("the code expired before anyone signed in: run meshplane login again");
            }
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code),
                ("client_id", login.client_id.as_str()),
            ];
            let res =
                http.post(&endpoints.token).form(&form).send().await.context("cannot reach the token endpoint")?;
            let body = json_of(res, "the token endpoint's answer").await?;
            match oauth_error(&body) {
                ("authorization_pending", _) if body["id_token"].is_null() => continue,
                ("slow_down", _) if body["id_token"].is_null() => every += Duration::from_secs(5),
                _ if body["id_token"].is_string() => break kept_of(&login, &body, None),
                ("access_denied", _) => bail!("the sign-in was refused at the provider"),
                ("expired_token", _) => bail!("the code expired before anyone signed in: run meshplane login again"),
                _ => bail!("the provider refused the sign-in: {}", refusal(&body)),
            }
        }
    })?;
    let file = config::token_path(&context.name)?;
    config::write_private(&file, serde_json::to_string(&kept)?.as_bytes(), true)?;
    let subject = claims(&kept.id_token).map(|c| printable(c["sub"].as_str().unwrap_or("?"))).unwrap_or_default();
    eprintln!(
        "signed in to {} as {subject} (at {}); the token is kept in {}",
        context.name,
        kept.issuer,
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What to keep of a token answer (a refresh answer may carry no new refresh token).
fn kept_of(login: &config::Login, body: &Any, refresh: Option<&str>) -> Result<Kept> {
    let id_token = body["id_token"].as_str().ok_or_else(|| anyhow!("the provider answered without an ID token"))?;
    Ok(Kept {
        issuer: login.issuer.clone(),
        client_id: login.client_id.clone(),
        id_token: id_token.to_string(),
        refresh_token: body["refresh_token"].as_str().or(refresh).map(str::to_string),
    })
}

pub fn logout(args: &LogoutArgs) -> Result<ExitCode> {
    let (context, _) = context_for(args.context.as_deref())?;
    let file = config::token_path(&context.name)?;
    match std::fs::remove_file(&file) {
        Ok(()) => eprintln!("signed out of {}: {} removed", context.name, file.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("{} holds no token to remove", context.name),
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
    }
    Ok(ExitCode::SUCCESS)
}

/// The claims of a JWT, read without verifying it (the registry verifies it; the CLI only
/// wants its expiry and subject).
fn claims(jwt: &str) -> Option<Any> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token `meshplane login` kept for `context`, refreshed first when it is about to
/// expire; an error saying to sign in again when there is none or it cannot be refreshed.
///
/// Renewals of one context take turns, under a lock on a file beside its token: a provider
/// that turns refresh tokens over takes each only once (and may end the sign-in when one
/// comes back), so whoever comes second reads what the first kept and renews with that.
pub fn token(context: &Context, login: &config::Login) -> Result<String> {
    let file = config::token_path(&context.name)?;
    if let Some(token) = fresh(&read_kept(&file, context, login)?)? {
        return Ok(token);
    }
    let lock_file = file.with_extension("lock");
    let lock = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&lock_file)
    };
    let lock = lock.with_context(|| format!("cannot open {}", lock_file.display()))?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_file.display()))?;
    let kept = read_kept(&file, context, login)?;
    if let Some(token) = fresh(&kept)? {
        return Ok(token);
    }
    let again = || sign_in_again(context);
    let Some(refresh) = kept.refresh_token.as_deref() else {
        bail!("the sign-in of {} has expired: {}", context.name, again());
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let renewed = runtime.block_on(async {
        let http = client()?;
        let endpoints = discover(&http, login).await?;
        let form =
            [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", login.client_id.as_str())];
        let res = http.post(&endpoints.token).form(&form).send().await.context("cannot reach the token endpoint")?;
        let body = json_of(res, "the token endpoint's answer").await?;
        if body["id_token"].is_string() {
            kept_of(login, &body, Some(refresh))
        } else {
            bail!(
                "the sign-in of {} has expired and could not be renewed ({}): {}",
                context.name,
                refusal(&body),
                again()
            )
        }
    })?;
    config::write_private(&file, serde_json::to_string(&renewed)?.as_bytes(), true)?;
    drop(lock);
    Ok(renewed.id_token)
}

/// What `meshplane login` kept for `context`, checked to be from its provider.
fn read_kept(file: &std::path::Path, context: &Context, login: &config::Login) -> Result<Kept> {
    let again = || sign_in_again(context);
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("context {} is not signed in: {}", context.name, again())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let kept: Kept = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not what meshplane login keeps ({e}): {}", file.display(), again()))?;
    if kept.issuer != login.issuer || kept.client_id != login.client_id {
        bail!("the token kept for {} is from another provider: {}", context.name, again());
    }
    Ok(kept)
}

/// What to do when a context's sign-in cannot be used.
fn sign_in_again(context: &Context) -> String {
    format!("run meshplane login --context {}", context.name)
}

/// The kept token, unless it is about to expire.
fn fresh(kept: &Kept) -> Result<Option<String>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let expires = claims(&kept.id_token).and_then(|c| c["exp"].as_f64()).map_or(0, |e| e as i64);
    Ok((expires.saturating_sub(EARLY) > now).then(|| kept.id_token.clone()))
}

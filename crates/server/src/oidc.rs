//! OIDC bearer tokens: a JWT from the platform's identity provider is accepted when its
//! signature verifies against a key of the configured JWKS (chosen by the token's `kid`), its
//! issuer and audience are the configured ones, it has not expired and is not used before
//! its `nbf`. It stands for the principal recorded with its account (`iss` and `sub`, which
//! the user cannot change) — or, when the platform names a claim, for the principal of that
//! name (only for a claim the provider does not let users edit).
//!
//! Keys read from a URL follow the provider's rotations: a token naming a key the set does not
//! hold makes the set be read again (at most once every [`REFRESH_EVERY`], by one request at
//! a time, each read bounded by [`FETCH_TIMEOUT`]).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value as Any;

/// The least time between two reads of a JWKS URL.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The longest a read of a JWKS URL may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom a verified token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The account `subject` at `issuer` (the default).
    Account { issuer: String, subject: String },
    /// The principal of this name (a platform that names a claim).
    Named(String),
}

/// A configured identity provider.
pub struct Oidc {
    keys: RwLock<(JwkSet, Instant)>,
    /// Where the keys are read again from, when they came from a URL.
    url: Option<String>,
    /// One refresh at a time; the others wait for it and use what it read.
    refreshing: tokio::sync::Mutex<()>,
    issuer: String,
    audience: String,
    /// The claim that names the principal, when the platform says one; else `iss` and `sub`.
    claim: Option<String>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.issuer).field("audience", &self.audience).finish_non_exhaustive()
    }
}

fn key_set(jwks: &str) -> Result<JwkSet, String> {
    let keys: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("the JWKS is not a JSON Web Key Set: {e}"))?;
    if keys.keys.is_empty() {
        return Err("the JWKS holds no key".into());
    }
    Ok(keys)
}

async fn fetch(url: &str) -> Result<JwkSet, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let fetched = async { client.get(url).send().await?.error_for_status()?.text().await };
    key_set(&fetched.await.map_err(|e| format!("cannot fetch the keys from {url}: {e}"))?)
}

impl Oidc {
    /// The provider with issuer, audience and claim (`None`: accounts by `iss` and `sub`),
    /// whose keys are the JWKS document `jwks`.
    pub fn new(issuer: &str, audience: &str, claim: Option<&str>, jwks: &str) -> Result<Oidc, String> {
        Ok(Oidc {
            keys: RwLock::new((key_set(jwks)?, Instant::now())),
            url: None,
            refreshing: tokio::sync::Mutex::new(()),
            issuer: issuer.into(),
            audience: audience.into(),
            claim: claim.map(str::to_string),
        })
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider whose keys are read from `url` now, and again when they rotate (the
    /// first time as soon as a token names a new key, then at most every [`REFRESH_EVERY`]).
    pub async fn from_url(issuer: &str, audience: &str, claim: Option<&str>, url: &str) -> Result<Oidc, String> {
        let keys = fetch(url).await?;
        let long_ago = Instant::now().checked_sub(REFRESH_EVERY).unwrap_or_else(Instant::now);
        Ok(Oidc {
            keys: RwLock::new((keys, long_ago)),
            url: Some(url.into()),
            refreshing: tokio::sync::Mutex::new(()),
            issuer: issuer.into(),
            audience: audience.into(),
            claim: claim.map(str::to_string),
        })
    }

    /// Whom a token stands for, or why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, String> {
        let header = decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
        let jwk = match self.key(header.kid.as_deref())? {
            Some(jwk) => jwk,
            None => {
                self.refresh().await?;
                let kid = header.kid.as_deref().unwrap_or_default();
                self.key(header.kid.as_deref())?.ok_or_else(|| format!("no key `{kid}` in the JWKS"))?
            }
        };
        // A key that says which algorithm it is for is used for that one only.
        if let Some(alg) = &jwk.common.key_algorithm
            && format!("{alg:?}") != format!("{:?}", header.alg)
        {
            return Err(format!("the token is signed with {:?}, its key is for {alg:?}", header.alg));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("the JWKS key cannot verify: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let claims = decode::<Any>(token, &key, &validation).map_err(|e| e.to_string())?.claims;
        let text = |claim: &str| {
            let found = claims.get(claim).and_then(Any::as_str).filter(|n| !n.is_empty());
            found.map(str::to_string).ok_or_else(|| format!("the token has no `{claim}` claim"))
        };
        match &self.claim {
            Some(claim) => Ok(Identity::Named(text(claim)?)),
            None => Ok(Identity::Account { issuer: self.issuer.clone(), subject: text("sub")? }),
        }
    }

    /// The key a token names (`None`: not in the set); a token that names none is accepted only
    /// when the set holds one key.
    fn key(&self, kid: Option<&str>) -> Result<Option<Jwk>, String> {
        let keys = &self.keys.read().map_err(|_| "the key set is unavailable")?.0;
        match kid {
            Some(kid) => Ok(keys.find(kid).cloned()),
            None if keys.keys.len() == 1 => Ok(Some(keys.keys[0].clone())),
            None => Err("the token names no key (`kid`) and the JWKS holds several".into()),
        }
    }

    /// Reads the keys again from the URL, unless they came from a file or were read lately
    /// (by this request or one that held the refresh while this one waited).
    async fn refresh(&self) -> Result<(), String> {
        let Some(url) = &self.url else { return Ok(()) };
        let _one_at_a_time = self.refreshing.lock().await;
        let recent = self.keys.read().map_err(|_| "the key set is unavailable")?.1.elapsed() < REFRESH_EVERY;
        if recent {
            return Ok(());
        }
        let keys = fetch(url).await?;
        *self.keys.write().map_err(|_| "the key set is unavailable")? = (keys, Instant::now());
        Ok(())
    }
}

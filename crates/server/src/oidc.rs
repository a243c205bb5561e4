//! OIDC bearer tokens: a JWT from the platform's identity provider is accepted when its
//! signature verifies against a key of the configured JWKS (chosen by the token's `kid`), its
//! issuer and audience are the configured ones, and it has not expired; the configured claim
//! (`preferred_username`, `email`, ...) names the principal it stands for.
//!
//! Keys read from a URL follow the provider's rotations: a token naming a key the set does not
//! hold makes the set be read again (at most once every [`REFRESH_EVERY`]).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value as Any;

/// The least time between two reads of a JWKS URL.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A configured identity provider.
pub struct Oidc {
    keys: RwLock<(JwkSet, Instant)>,
    /// Where the keys are read again from, when they came from a URL.
    url: Option<String>,
    issuer: String,
    audience: String,
    claim: String,
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
    let fetched = async { reqwest::get(url).await?.error_for_status()?.text().await };
    key_set(&fetched.await.map_err(|e| format!("cannot fetch the keys from {url}: {e}"))?)
}

impl Oidc {
    /// The provider with issuer, audience and claim, whose keys are the JWKS document `jwks`.
    pub fn new(issuer: &str, audience: &str, claim: &str, jwks: &str) -> Result<Oidc, String> {
        Ok(Oidc {
            keys: RwLock::new((key_set(jwks)?, Instant::now())),
            url: None,
            issuer: issuer.into(),
            audience: audience.into(),
            claim: claim.into(),
        })
    }

    /// The provider whose keys are read from `url` now, and again when they rotate (the
    /// first time as soon as a token names a new key, then at most every [`REFRESH_EVERY`]).
    pub async fn from_url(issuer: &str, audience: &str, claim: &str, url: &str) -> Result<Oidc, String> {
        let keys = fetch(url).await?;
        let long_ago = Instant::now().checked_sub(REFRESH_EVERY).unwrap_or_else(Instant::now);
        Ok(Oidc {
            keys: RwLock::new((keys, long_ago)),
            url: Some(url.into()),
            issuer: issuer.into(),
            audience: audience.into(),
            claim: claim.into(),
        })
    }

    /// The principal's name a token carries, or why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<String, String> {
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
        let claims = decode::<Any>(token, &key, &validation).map_err(|e| e.to_string())?.claims;
        let name = claims.get(&self.claim).and_then(Any::as_str).filter(|n| !n.is_empty());
        name.map(str::to_string).ok_or_else(|| format!("the token has no `{}` claim", self.claim))
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

    /// Reads the keys again from the URL, unless they came from a file or were read lately.
    async fn refresh(&self) -> Result<(), String> {
        let Some(url) = &self.url else { return Ok(()) };
        let recent = self.keys.read().map_err(|_| "the key set is unavailable")?.1.elapsed() < REFRESH_EVERY;
        if recent {
            return Ok(());
        }
        let keys = fetch(url).await?;
        *self.keys.write().map_err(|_| "the key set is unavailable")? = (keys, Instant::now());
        Ok(())
    }
}

//! OIDC bearer tokens: a JWT from the platform's identity provider is accepted when its
//! signature verifies against a key of the configured JWKS (chosen by the token's `kid`), its
//! issuer and audience are the configured ones, and it has not expired; the configured claim
//! (`preferred_username`, `email`, ...) names the principal it stands for.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value as Any;

/// A configured identity provider.
pub struct Oidc {
    keys: JwkSet,
    issuer: String,
    audience: String,
    claim: String,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.issuer).field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl Oidc {
    /// The provider with issuer, audience and claim, whose keys are the JWKS document `jwks`.
    pub fn new(issuer: &str, audience: &str, claim: &str, jwks: &str) -> Result<Oidc, String> {
        let keys: JwkSet =
            serde_json::from_str(jwks).map_err(|e| format!("the JWKS is not a JSON Web Key Set: {e}"))?;
        if keys.keys.is_empty() {
            return Err("the JWKS holds no key".into());
        }
        Ok(Oidc { keys, issuer: issuer.into(), audience: audience.into(), claim: claim.into() })
    }

    /// The principal's name a token carries, or why the token is refused.
    pub fn verify(&self, token: &str) -> Result<String, String> {
        let header = decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid).ok_or_else(|| format!("no key `{kid}` in the JWKS"))?,
            None if self.keys.keys.len() == 1 => &self.keys.keys[0],
            None => return Err("the token names no key (`kid`) and the JWKS holds several".into()),
        };
        // A key that says which algorithm it is for is used for that one only.
        if let Some(alg) = &jwk.common.key_algorithm
            && format!("{alg:?}") != format!("{:?}", header.alg)
        {
            return Err(format!("the token is signed with {:?}, its key is for {alg:?}", header.alg));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("the JWKS key cannot verify: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<Any>(token, &key, &validation).map_err(|e| e.to_string())?.claims;
        let name = claims.get(&self.claim).and_then(Any::as_str).filter(|n| !n.is_empty());
        name.map(str::to_string).ok_or_else(|| format!("the token has no `{}` claim", self.claim))
    }
}

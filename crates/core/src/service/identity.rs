//! Identities: API tokens — a caller makes, lists and revokes its own; platform admins
//! anyone's ([`Caller::may_manage_tokens_of`]); a token's text is in the answer that creates
//! it and nowhere else — and principals, which platform admins declare.

use crate::authz::Caller;
use crate::error::{Error, ErrorCode};
use crate::store::identity::{NewToken, Principal, PrincipalKind, TokenInfo};
use crate::store::{Store, canonical_time};

/// A new token for `principal` (the caller when `None`), ending at `expires_at` — no later
/// than the caller's own credential ([`lasting`]).
pub async fn create_token(
    store: &Store,
    caller: &Caller,
    principal: Option<String>,
    description: &str,
    expires_at: Option<String>,
) -> Result<NewToken, Error> {
    let principal = principal.unwrap_or_else(|| caller.name().to_string());
    caller.require(caller.may_manage_tokens_of(&principal), "create tokens for others")?;
    let expires = lasting(caller, expires_at)?;
    store.create_token(&principal, description, expires.as_deref(), &caller.who()).await
}

/// When a token the caller asks for expires: no later than the caller's own credential (a
/// token made with a token that expires, or with a JWT, whose tokens last at most the
/// platform's limit); when the caller names no end, that end.
fn lasting(caller: &Caller, asked: Option<String>) -> Result<Option<String>, Error> {
    let Some(until) = caller.good_until.as_deref().and_then(canonical_time) else {
        return Ok(asked);
    };
    let Some(asked) = asked else { return Ok(Some(until)) };
    match canonical_time(&asked) {
        Some(wanted) if wanted <= until => Ok(Some(wanted)),
        Some(_) => Err(Error::invalid(
            ErrorCode::MalformedRequest,
            format!("a token made with this credential expires no later than {until} (asked: {asked})"),
        )),
        // The store says what is wrong with it.
        None => Ok(Some(asked)),
    }
}

/// A page of tokens (their descriptions, never their texts): the caller's own, those of
/// `principal`, or (platform admins, naming nobody) everyone's.
pub async fn tokens(
    store: &Store,
    caller: &Caller,
    principal: Option<String>,
    after: &str,
    limit: i64,
) -> Result<Vec<TokenInfo>, Error> {
    let whose = match principal {
        Some(other) => {
            caller.require(caller.may_manage_tokens_of(&other), "list others' tokens")?;
            Some(other)
        }
        None if caller.is_platform_admin() => None,
        None => Some(caller.name().to_string()),
    };
    store.tokens(whose.as_deref(), after, limit).await
}

/// Revokes a token; revoking it again changes nothing.
pub async fn revoke_token(store: &Store, caller: &Caller, id: &str) -> Result<TokenInfo, Error> {
    let token = store.token(id).await?;
    caller.require(caller.may_manage_tokens_of(&token.principal), "revoke others' tokens")?;
    store.revoke_token(id, &caller.who()).await
}

/// Declares a principal (platform admins): a user, group or service account, its groups, the
/// domains it administers and the account it signs in as. Nobody signs in as a group.
pub async fn put_principal(store: &Store, caller: &Caller, principal: Principal) -> Result<Principal, Error> {
    caller.require(caller.is_platform_admin(), "declare principals (platform admins may)")?;
    if principal.kind == PrincipalKind::Group && principal.oidc.is_some() {
        return Err(Error::invalid(ErrorCode::MalformedRequest, "nobody signs in as a group"));
    }
    store.put_principal(&principal, &caller.who()).await
}

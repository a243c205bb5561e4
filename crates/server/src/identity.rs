//! Identities over HTTP: who am I, API tokens, principals (platform admins), and the audit
//! log. A token's text is in the answer that creates it and nowhere else.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use meshplane_core::authz::Caller;
use meshplane_core::store::AuditQuery;
use meshplane_core::store::identity::{Principal, PrincipalKind};
use meshplane_core::{Error, ErrorCode};
use serde::Deserialize;
use serde_json::json;

use crate::access::body;
use crate::api::{Answer, page_size, query, to_json};
use crate::{ApiError, AppState};

pub async fn whoami(Extension(caller): Extension<Caller>) -> Answer {
    to_json(caller.principal)
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewToken {
    principal: Option<String>,
    #[serde(default)]
    description: String,
    expires_at: Option<String>,
}

/// When a token the caller asks for expires: no later than the caller's own credential (a
/// token made with a token that expires, or with a JWT, whose tokens last at most the
/// platform's limit); when the caller names no end, that end.
fn lasting(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(until) = caller.good_until.as_deref().and_then(meshplane_core::store::canonical_time) else {
        return Ok(asked);
    };
    let Some(asked) = asked else { return Ok(Some(until)) };
    match meshplane_core::store::canonical_time(&asked) {
        Some(wanted) if wanted <= until => Ok(Some(wanted)),
        Some(_) => Err(ApiError(Error::invalid(
            ErrorCode::MalformedRequest,
            format!("a token made with this credential expires no later than {until} (asked: {asked})"),
        ))),
        // The store says what is wrong with it.
        None => Ok(Some(asked)),
    }
}

/// A token for the caller, or (platform admins) for anyone.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let asked: NewToken = body(raw)?;
    let principal = asked.principal.unwrap_or_else(|| caller.name().to_string());
    caller.require(principal == caller.name() || caller.is_platform_admin(), "create tokens for others")?;
    let expires = lasting(&caller, asked.expires_at)?;
    let created = state.store.create_token(&principal, &asked.description, expires.as_deref(), &caller.who()).await?;
    to_json(json!({ "token": created.token, "info": created.info }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    principal: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<TokenParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let whose = match p.principal {
        Some(other) => {
            caller.require(other == caller.name() || caller.is_platform_admin(), "list others' tokens")?;
            Some(other)
        }
        None if caller.is_platform_admin() => None,
        None => Some(caller.name().to_string()),
    };
    to_json(state.store.tokens(whose.as_deref(), p.after.as_deref().unwrap_or_default(), page_size(p.limit)).await?)
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let token = state.store.token(&id).await?;
    caller.require(token.principal == caller.name() || caller.is_platform_admin(), "revoke others' tokens")?;
    to_json(state.store.revoke_token(&id, &caller.who()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalsParams {
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn principals(
    State(state): State<AppState>,
    params: Result<Query<PrincipalsParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    to_json(state.store.principals_page(p.after.as_deref().unwrap_or_default(), page_size(p.limit)).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalBody {
    kind: PrincipalKind,
    database_role: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    platform_admin: bool,
    #[serde(default)]
    domains: Vec<String>,
    oidc: Option<OidcBody>,
}

/// The account a principal signs in as: `subject` at `issuer` (the platform's provider when
/// not given).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcBody {
    issuer: Option<String>,
    subject: String,
}

pub async fn put_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let b: PrincipalBody = body(raw)?;
    let oidc = match b.oidc {
        None => None,
        Some(OidcBody { issuer, subject }) => {
            let issuer =
                issuer.or_else(|| state.config.oidc.as_ref().map(|o| o.issuer().to_string())).ok_or_else(|| {
                    ApiError(Error::invalid(
                        ErrorCode::MalformedRequest,
                        "`oidc.issuer` is needed: this platform configures no identity provider",
                    ))
                })?;
            if b.kind == PrincipalKind::Group {
                return Err(ApiError(Error::invalid(ErrorCode::MalformedRequest, "nobody signs in as a group")));
            }
            Some(meshplane_core::store::identity::OidcIdentity { issuer, subject })
        }
    };
    let principal = Principal {
        name,
        kind: b.kind,
        database_role: b.database_role,
        groups: b.groups,
        platform_admin: b.platform_admin,
        domains: b.domains,
        oidc,
    };
    to_json(state.store.put_principal(&principal, &caller.who()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    block: String,
}

/// A service account's login role in a block's store, with a new password shown only here.
pub async fn create_login(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    params: Result<Query<LoginParams>, QueryRejection>,
) -> Answer {
    let p = query(params)?;
    let account = state.store.principal(&name).await?;
    if account.kind != PrincipalKind::Service {
        return Err(ApiError(Error::invalid(
            ErrorCode::InvalidDocument,
            format!(
                "`{name}` is a {:?}, not a service account: people log in with their own database roles",
                account.kind
            )
            .to_lowercase(),
        )));
    }
    let block = state.blocks.provisioners.iter().find(|b| b.name() == p.block);
    let block = block.ok_or_else(|| ApiError(Error::NotFound(format!("block `{}`", p.block))))?;
    let installation = state.store.installation().await?;
    let login = state
        .blocks
        .call(block.as_ref(), block.create_login(&installation, &name))
        .await
        .map_err(|error| ApiError(Error::Block { block: p.block.clone(), error }))?;
    let updated = Principal { database_role: Some(login.role.clone()), ..account };
    state.store.put_principal(&updated, &caller.who()).await?;
    to_json(json!({ "block": p.block, "role": login.role, "password": login.password }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    actor: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn audit(State(state): State<AppState>, params: Result<Query<AuditParams>, QueryRejection>) -> Answer {
    let p = query(params)?;
    let q = AuditQuery {
        actor: p.actor,
        kind: p.kind,
        name: p.name,
        action: p.action,
        since: p.since,
        until: p.until,
        after: p.after.unwrap_or(0),
        limit: p.limit.unwrap_or(100),
    };
    to_json(state.store.audit(&q).await?)
}

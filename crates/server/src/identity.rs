//! Identities over HTTP: who am I, API tokens (the workflows of
//! [`meshplane_core::service::identity`]), principals (platform admins), and the audit log.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use meshplane_core::authz::Caller;
use meshplane_core::service::identity;
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

/// A token for the caller, or (platform admins) for anyone.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let asked: NewToken = body(raw)?;
    let created =
        identity::create_token(&state.store, &caller, asked.principal, &asked.description, asked.expires_at).await?;
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
    let after = p.after.as_deref().unwrap_or_default();
    to_json(identity::tokens(&state.store, &caller, p.principal, after, page_size(p.limit)).await?)
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    to_json(identity::revoke_token(&state.store, &caller, &id).await?)
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
    to_json(identity::put_principal(&state.store, &caller, principal).await?)
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

//! Identities and API tokens.
//!
//! A principal is a user, a group or a service account; it may record the database role it
//! is in the stores (what a grant is given to), the groups it belongs to, and what it
//! administers (the whole platform, or some domains). A token is `mp_<id>_<secret>`: the
//! store keeps the id and the SHA-256 of the secret, never the secret, so a token is shown
//! once, when it is created. Every change is a change record whose before and after carry no
//! secret.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::apply::Subject;
use super::{ApplyOptions, Durability, Store, now};
use crate::error::{Error, ErrorCode};

/// What a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    User,
    Group,
    Service,
}

impl PrincipalKind {
    fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Group => "group",
            PrincipalKind::Service => "service",
        }
    }

    fn parse(text: &str) -> PrincipalKind {
        match text {
            "group" => PrincipalKind::Group,
            "service" => PrincipalKind::Service,
            _ => PrincipalKind::User,
        }
    }
}

/// A user, group or service account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    /// The role it logs in as in the databases (what grants are given to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_role: Option<String>,
    /// The groups it is a member of.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Administers the whole platform.
    #[serde(default)]
    pub platform_admin: bool,
    /// The domains it administers.
    #[serde(default)]
    pub domains: Vec<String>,
    /// The identity provider's account it signs in as with a JWT: the token's `iss` and
    /// `sub` (which a user cannot change, unlike a username or an email in many providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcIdentity>,
}

/// An account at an OIDC identity provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcIdentity {
    /// The provider (a token's `iss`).
    pub issuer: String,
    /// The account (a token's `sub`).
    pub subject: String,
}

/// A principal an API token stands for, and when that token expires.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub principal: Principal,
    pub expires_at: Option<String>,
}

/// What the store keeps of a token: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub description: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A token just created: the only time its whole text is known.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub info: TokenInfo,
    pub token: String,
}

/// `bytes` random bytes from the operating system, as lowercase hex (secrets, ids).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn principal(row: &AnyRow) -> Result<Principal, Error> {
    let groups: String = row.try_get("groups")?;
    let domains: String = row.try_get("domains")?;
    Ok(Principal {
        name: row.try_get("name")?,
        kind: PrincipalKind::parse(&row.try_get::<String, _>("kind")?),
        database_role: row.try_get("database_role")?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        platform_admin: row.try_get::<i64, _>("platform_admin")? != 0,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
        oidc: match (
            row.try_get::<Option<String>, _>("oidc_issuer")?,
            row.try_get::<Option<String>, _>("oidc_subject")?,
        ) {
            (Some(issuer), Some(subject)) => Some(OidcIdentity { issuer, subject }),
            _ => None,
        },
    })
}

fn token_info(row: &AnyRow) -> Result<TokenInfo, Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A name principals and tokens may use: letters, digits and `._@-`, 1 to 128 of them.
fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let fine = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if fine {
        Ok(())
    } else {
        Err(Error::invalid(
            ErrorCode::MalformedRequest,
            format!("`{name}` is not a valid {what} name: use 1 to 128 letters, digits, `.`, `_`, `@` or `-`"),
        ))
    }
}

impl Store {
    /// This installation's id: what it names the things it creates in shared stores after
    /// (so two installations on one server never touch each other's).
    pub async fn installation(&self) -> Result<String, Error> {
        // Made once with the store and never changed: read once per process.
        let read = || async {
            let row = sqlx::query("SELECT value FROM meta WHERE key = 'installation'").fetch_one(&self.reads).await?;
            Ok::<String, Error>(row.try_get(0)?)
        };
        self.installation.get_or_try_init(read).await.cloned()
    }

    /// Creates or replaces a principal.
    pub async fn put_principal(&self, p: &Principal, who: &ApplyOptions) -> Result<Principal, Error> {
        check_name("principal", &p.name)?;
        for group in &p.groups {
            check_name("group", group)?;
        }
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let before = sqlx::query("SELECT * FROM principals WHERE name = $1")
            .bind(&p.name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| principal(&row))
            .transpose()?;
        if let Some(oidc) = &p.oidc {
            let taken =
                sqlx::query("SELECT name FROM principals WHERE oidc_issuer = $1 AND oidc_subject = $2 AND name <> $3")
                    .bind(&oidc.issuer)
                    .bind(&oidc.subject)
                    .bind(&p.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = taken {
                let other: String = row.try_get(0)?;
                return Err(Error::conflict(
                    ErrorCode::WrongState,
                    format!("the account `{}` of {} already signs in as `{other}`", oidc.subject, oidc.issuer),
                ));
            }
        }
        let (issuer, subject) = p.oidc.as_ref().map(|o| (o.issuer.clone(), o.subject.clone())).unzip();
        sqlx::query(
            "INSERT INTO principals (name, kind, database_role, groups, platform_admin, domains, created_at, oidc_issuer, oidc_subject) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, \
             database_role = excluded.database_role, groups = excluded.groups, \
             platform_admin = excluded.platform_admin, domains = excluded.domains, \
             oidc_issuer = excluded.oidc_issuer, oidc_subject = excluded.oidc_subject",
        )
        .bind(&p.name)
        .bind(p.kind.as_str())
        .bind(&p.database_role)
        .bind(to_json(&p.groups))
        .bind(i64::from(p.platform_admin))
        .bind(to_json(&p.domains))
        .bind(now())
        .bind(issuer)
        .bind(subject)
        .execute(&mut *tx)
        .await?;
        let action = if before.is_some() { "updated" } else { "created" };
        let subject = Subject { kind: "Principal", name: &p.name, version: "", domain: "" };
        let before = before.map(|b| to_json(&b));
        self.record_change(&mut tx, &subject, action, 0, before.as_deref(), Some(&to_json(p)), who, &now(), None)
            .await?;
        self.commit(tx).await?;
        Ok(p.clone())
    }

    pub async fn principal(&self, name: &str) -> Result<Principal, Error> {
        let row =
            sqlx::query("SELECT * FROM principals WHERE name = $1").bind(name).fetch_optional(&self.reads).await?;
        row.as_ref().map(principal).transpose()?.ok_or_else(|| Error::NotFound(format!("principal `{name}`")))
    }

    /// The principal that signs in as `subject` at `issuer`.
    pub async fn principal_by_oidc(&self, issuer: &str, subject: &str) -> Result<Principal, Error> {
        let row = sqlx::query("SELECT * FROM principals WHERE oidc_issuer = $1 AND oidc_subject = $2")
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref()
            .map(principal)
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("principal for the account `{subject}` of {issuer}")))
    }

    pub async fn principals(&self) -> Result<Vec<Principal>, Error> {
        self.principals_page("", i64::MAX).await
    }

    /// The principals named after `after`, by name, at most `limit`.
    pub async fn principals_page(&self, after: &str, limit: i64) -> Result<Vec<Principal>, Error> {
        let rows = sqlx::query("SELECT * FROM principals WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(principal).collect()
    }

    /// Creates a token for `principal`, valid until `expires_at` (RFC 3339) when given.
    pub async fn create_token(
        &self,
        principal: &str,
        description: &str,
        expires_at: Option<&str>,
        who: &ApplyOptions,
    ) -> Result<NewToken, Error> {
        self.principal(principal).await?;
        if let Some(at) = expires_at
            && super::epoch_ms(at).is_none()
        {
            return Err(Error::invalid(
                ErrorCode::MalformedRequest,
                format!("`{at}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
            ));
        }
        let (id, secret) = (random_hex(6), random_hex(32));
        let info = TokenInfo {
            id: id.clone(),
            principal: principal.to_string(),
            description: description.to_string(),
            created_at: now(),
            expires_at: expires_at.map(str::to_string),
            revoked_at: None,
        };
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        sqlx::query(
            "INSERT INTO tokens (id, principal, hash, description, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(principal)
        .bind(digest(&secret))
        .bind(description)
        .bind(&info.created_at)
        .bind(&info.expires_at)
        .execute(&mut *tx)
        .await?;
        let subject = Subject { kind: "Token", name: &id, version: "", domain: "" };
        self.record_change(&mut tx, &subject, "created", 0, None, Some(&to_json(&info)), who, &info.created_at, None)
            .await?;
        self.commit(tx).await?;
        Ok(NewToken { info, token: format!("mp_{id}_{secret}") })
    }

    /// The tokens (of one principal, or all) whose id is after `after`, by id, at most `limit`,
    /// without their secrets.
    pub async fn tokens(&self, principal: Option<&str>, after: &str, limit: i64) -> Result<Vec<TokenInfo>, Error> {
        let rows =
            sqlx::query("SELECT * FROM tokens WHERE ($1 = '' OR principal = $1) AND id > $2 ORDER BY id LIMIT $3")
                .bind(principal.unwrap_or_default())
                .bind(after)
                .bind(limit.max(1))
                .fetch_all(&self.reads)
                .await?;
        rows.iter().map(token_info).collect()
    }

    pub async fn token(&self, id: &str) -> Result<TokenInfo, Error> {
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1").bind(id).fetch_optional(&self.reads).await?;
        row.as_ref().map(token_info).transpose()?.ok_or_else(|| Error::NotFound(format!("token `{id}`")))
    }

    /// Revokes a token; revoking it again changes nothing.
    pub async fn revoke_token(&self, id: &str, who: &ApplyOptions) -> Result<TokenInfo, Error> {
        let before = self.token(id).await?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        let at = now();
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2").bind(&at).bind(id).execute(&mut *tx).await?;
        let after = TokenInfo { revoked_at: Some(at.clone()), ..before.clone() };
        let subject = Subject { kind: "Token", name: id, version: "", domain: "" };
        let (b, a) = (to_json(&before), to_json(&after));
        self.record_change(&mut tx, &subject, "revoked", 0, Some(&b), Some(&a), who, &at, None).await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// The principal a token stands for, when the token is known, not revoked and not
    /// expired, with when the token expires. The secret's hash is compared in constant time.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Authenticated>, Error> {
        let Some((id, secret)) = token.strip_prefix("mp_").and_then(|t| t.split_once('_')) else { return Ok(None) };
        let row = sqlx::query("SELECT hash, expires_at, revoked_at, principal FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (hash, expires, revoked, name): (String, Option<String>, Option<String>, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        let expired = expires.as_deref().and_then(super::epoch_ms).is_some_and(|e| e <= super::now_ms());
        if revoked.is_some() || expired || !same(hash.as_bytes(), digest(secret).as_bytes()) {
            return Ok(None);
        }
        match self.principal(&name).await {
            Ok(principal) => Ok(Some(Authenticated { principal, expires_at: expires })),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether two byte strings are equal, in a time that depends on their lengths only (a token
/// check must not tell how much of a guess was right).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_compare_by_every_byte() {
        let a = super::digest("secret");
        assert!(super::same(a.as_bytes(), super::digest("secret").as_bytes()));
        assert!(!super::same(a.as_bytes(), super::digest("secreT").as_bytes()));
        let mut last = a.clone().into_bytes();
        *last.last_mut().unwrap() ^= 1;
        assert!(!super::same(a.as_bytes(), &last), "a difference in the last byte counts");
        assert!(!super::same(a.as_bytes(), &a.as_bytes()[..10]), "a prefix is not equal");
        assert!(super::same(b"", b""));
    }
}

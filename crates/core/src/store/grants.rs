//! Access requests and the grants they become (`meshplane/v1` kinds `AccessRequest` and
//! `Grant`): one row per request, whose state moves `pending` → `active` (the grant) →
//! `revoked` or `expired`, or `pending` → `rejected`. Every transition runs in one locked
//! transaction that reads the row, applies the transition and writes a change record with
//! the row before and after, so concurrent approvals and revocations serialize and each is an
//! event. Who may make a transition is decided before ([`crate::authz`]).

use serde::{Deserialize, Serialize};
use serde_json::Value as Any;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::apply::Subject;
use super::{ApplyOptions, Durability, Store, epoch_ms, now};
use crate::error::{Error, ErrorCode};

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessState {
    /// Waiting for its approvers.
    Pending,
    /// Approved: an active grant.
    Active,
    Rejected,
    Revoked,
    /// Its end date passed.
    Expired,
}

impl AccessState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessState::Pending => "pending",
            AccessState::Active => "active",
            AccessState::Rejected => "rejected",
            AccessState::Revoked => "revoked",
            AccessState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<AccessState> {
        [Self::Pending, Self::Active, Self::Rejected, Self::Revoked, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Who decides on a request: the first level, then (when given) the second, then a level for
/// each policy on access that requires approvers. Each entry is a principal (a user or a
/// group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    pub first: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub second: Vec<String>,
    /// Required by policies on access, each its own level after the ones above: one of each
    /// policy's names approves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyApprovers>,
}

/// The approvers one policy on access requires.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyApprovers {
    /// The policy (`NAME@VERSION`) that requires them.
    pub policy: String,
    pub names: Vec<String>,
}

impl Approvers {
    /// Adds the approvers a policy requires as a level of their own, unless a level already
    /// asks for exactly these names (nobody approves two levels); false when the request
    /// would have more than [`MAX_POLICY_LEVELS`] of them.
    pub fn require(&mut self, required: PolicyApprovers) -> bool {
        if !self.policy.iter().any(|p| p.names == required.names) {
            if self.policy.len() >= MAX_POLICY_LEVELS {
                return false;
            }
            self.policy.push(required);
        }
        true
    }
}

/// The first approver level a policy on access requires: `POLICY_LEVEL + i` is the `i`th
/// policy's.
pub const POLICY_LEVEL: u8 = 3;

/// The most levels policies may add to one request.
pub const MAX_POLICY_LEVELS: usize = 10;

/// What the policies on access said about a request, kept with it (so the audit log has the
/// policies and their versions with every transition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTerms {
    /// The longest the grant may last once active, in days: the shortest cap a policy set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days: Option<f64>,
    /// What each policy that answered said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<PolicyAnswer>,
}

impl PolicyTerms {
    pub fn is_empty(&self) -> bool {
        self.max_days.is_none() && self.answers.is_empty()
    }
}

/// One policy's answer about a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyAnswer {
    /// The policy (its name) and the version that answered.
    pub policy: String,
    pub version: String,
    /// `access-request` or `access-decision`.
    pub action: String,
    /// `approve`, `approvers`, `cap` or `warn` (a denial refuses the request or the approval).
    pub effect: String,
    pub message: String,
}

/// One decision on a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided: a principal, or `policy/NAME@VERSION` for a policy's approval or denial.
    pub by: String,
    /// 1 or 2: the approver level it was made at; from 3 ([`POLICY_LEVEL`]): the approvers a
    /// policy requires, a level per policy; 0: a revocation.
    pub level: u8,
    pub approved: bool,
    pub comment: String,
    pub at: String,
}

/// A request for an output port, and the grant it becomes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequest {
    pub id: i64,
    /// The port's contract (its key, `orders@v2`), the product and its output port.
    pub contract: String,
    pub product: String,
    pub port: String,
    /// The product's domain, recorded when the request was made.
    pub domain: String,
    /// The principal who is to read: a user, a group, or a product's service account.
    pub consumer: String,
    /// When the consumer is a data product: its input port that reads the port.
    pub input_port: Option<String>,
    /// The ODCS role asked for, when one was.
    pub role: Option<String>,
    pub write: bool,
    pub purpose: String,
    /// When the grant ends by itself (RFC 3339).
    pub until: Option<String>,
    pub state: AccessState,
    pub approvers: Approvers,
    pub decisions: Vec<Decision>,
    pub requested_by: String,
    pub requested_at: String,
    pub updated_at: String,
    /// How the block holding the port enforces the grant, once it has been told.
    pub enforcement: Option<String>,
    /// What the policies on access said about it.
    #[serde(skip_serializing_if = "PolicyTerms::is_empty")]
    pub policy: PolicyTerms,
}

impl AccessRequest {
    /// The level whose decision is awaited: 1, then 2 when second-level approvers exist.
    pub fn awaited_level(&self) -> u8 {
        let approved = |level: u8| self.decisions.iter().any(|d| d.level == level && d.approved);
        let levels = [1, 2].into_iter().chain((0..self.approvers.policy.len()).map(|i| POLICY_LEVEL + i as u8));
        levels.filter(|&l| l == 1 || !self.approvers_at(l).is_empty()).find(|&l| !approved(l)).unwrap_or(1)
    }

    /// The approvers of `level`.
    pub fn approvers_at(&self, level: u8) -> &[String] {
        match level {
            1 => &self.approvers.first,
            2 => &self.approvers.second,
            _ => self.approvers.policy.get(usize::from(level.saturating_sub(POLICY_LEVEL))).map_or(&[], |p| &p.names),
        }
    }

    /// Whether an approval at `level` is the last one the request needs.
    pub fn is_last_level(&self, level: u8) -> bool {
        let end = POLICY_LEVEL + self.approvers.policy.len() as u8;
        (level + 1..end).all(|later| self.approvers_at(later).is_empty())
    }

    /// Makes the request an active grant at `at_ms`, its end date capped by the policies'
    /// `max_days`.
    pub fn activate(&mut self, at_ms: i64) {
        self.state = AccessState::Active;
        if let Some(days) = self.policy.max_days {
            let cap = at_ms.saturating_add((days * 86_400_000.0) as i64);
            if self.until.as_deref().and_then(epoch_ms).is_none_or(|end| end > cap) {
                self.until = Some(super::stamp_ms(cap));
            }
        }
    }

    /// Whether the grant is in force at `now_ms`: active and its end date not passed.
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.state == AccessState::Active && self.until.as_deref().and_then(epoch_ms).is_none_or(|end| end > now_ms)
    }

    /// As the API shows it: an `AccessRequest` while undecided or rejected, a `Grant` once
    /// approved.
    pub fn to_json(&self) -> Any {
        let kind = match self.state {
            AccessState::Pending | AccessState::Rejected => "AccessRequest",
            _ => "Grant",
        };
        let mut value = serde_json::to_value(self).unwrap_or(Any::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert("apiVersion".into(), "meshplane/v1".into());
            object.insert("kind".into(), kind.into());
            object.insert("access".into(), if self.write { "write" } else { "read" }.into());
        }
        value
    }
}

/// A new request, as checked by the caller.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub contract: String,
    pub product: String,
    pub port: String,
    pub domain: String,
    pub consumer: String,
    pub input_port: Option<String>,
    pub role: Option<String>,
    pub write: bool,
    pub purpose: String,
    pub until: Option<String>,
    pub approvers: Approvers,
    pub policy: PolicyTerms,
    pub outcome: Outcome,
}

/// What a request becomes as it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It waits for its approvers.
    Pending,
    /// A policy (`policy/NAME@VERSION`) approves it without a human.
    ApprovedBy(String),
    /// A policy denies it: it is recorded as rejected, with why.
    RejectedBy { by: String, why: String },
}

/// Which requests to list; every field given must match.
#[derive(Clone, Debug, Default)]
pub struct AccessQuery {
    pub contract: Option<String>,
    pub product: Option<String>,
    pub consumer: Option<String>,
    pub state: Option<AccessState>,
    /// Only requests whose id is larger.
    pub after: i64,
    /// At most this many (all when `None`).
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, contract, product, port, domain, consumer, input_port, role, write, purpose, until, state, \
                       approvers, approvals, requested_by, requested_at, updated_at, enforcement, policy";

fn request(row: &AnyRow) -> Result<AccessRequest, Error> {
    let corrupt = |e: serde_json::Error| Error::Store(format!("stored access request is corrupt: {e}"));
    let state: String = row.try_get("state")?;
    Ok(AccessRequest {
        id: row.try_get("id")?,
        contract: row.try_get("contract")?,
        product: row.try_get("product")?,
        port: row.try_get("port")?,
        domain: row.try_get("domain")?,
        consumer: row.try_get("consumer")?,
        input_port: row.try_get("input_port")?,
        role: row.try_get("role")?,
        write: row.try_get::<i64, _>("write")? != 0,
        purpose: row.try_get("purpose")?,
        until: row.try_get("until")?,
        state: AccessState::parse(&state).ok_or_else(|| Error::Store(format!("unknown access state `{state}`")))?,
        approvers: serde_json::from_str(&row.try_get::<String, _>("approvers")?).map_err(corrupt)?,
        decisions: serde_json::from_str(&row.try_get::<String, _>("approvals")?).map_err(corrupt)?,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
        updated_at: row.try_get("updated_at")?,
        enforcement: row.try_get("enforcement")?,
        policy: match row.try_get::<Option<String>, _>("policy")? {
            Some(text) => serde_json::from_str(&text).map_err(corrupt)?,
            None => PolicyTerms::default(),
        },
    })
}

/// The server log's line for an access decision (the audit log keeps the whole record).
fn access_logged(r: &AccessRequest, action: &str, who: &ApplyOptions) {
    let (request, state) = (r.id, r.state.as_str());
    tracing::info!(request, contract = %r.contract, consumer = %r.consumer, state, actor = %who.actor, "access {action}");
}

fn subject<'a>(r: &'a AccessRequest, id: &'a str) -> Subject<'a> {
    Subject { kind: "AccessRequest", name: id, version: "", domain: &r.domain }
}

impl Store {
    /// Records a new, pending request.
    pub async fn request_access(&self, new: NewRequest, who: &ApplyOptions) -> Result<AccessRequest, Error> {
        if let Some(until) = &new.until
            && epoch_ms(until).is_none()
        {
            return Err(Error::invalid(
                ErrorCode::MalformedRequest,
                format!("`until: {until}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
            ));
        }
        let at = now();
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let policy = Some(&new.policy).filter(|p| !p.is_empty()).map(|p| serde_json::to_string(p).unwrap_or_default());
        let row = sqlx::query(
            "INSERT INTO access (contract, product, port, domain, consumer, input_port, role, write, purpose, until, \
             state, approvers, approvals, requested_by, requested_at, updated_at, policy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, '[]', $12, $13, $13, $14) RETURNING id",
        )
        .bind(&new.contract)
        .bind(&new.product)
        .bind(&new.port)
        .bind(&new.domain)
        .bind(&new.consumer)
        .bind(&new.input_port)
        .bind(&new.role)
        .bind(i64::from(new.write))
        .bind(&new.purpose)
        .bind(&new.until)
        .bind(serde_json::to_string(&new.approvers).unwrap_or_default())
        .bind(&who.actor)
        .bind(&at)
        .bind(policy)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get(0)?;
        let created = self.access_in(&mut tx, id).await?;
        let after = created.to_json().to_string();
        let key = id.to_string();
        self.record_change(&mut tx, &subject(&created, &key), "requested", 0, None, Some(&after), who, &at, None)
            .await?;
        let (by, approved, comment) = match new.outcome {
            Outcome::Pending => {
                self.commit(tx).await?;
                access_logged(&created, "requested", who);
                return Ok(created);
            }
            Outcome::ApprovedBy(by) => (by, true, "approved by policy, without a human decision".to_string()),
            Outcome::RejectedBy { by, why } => (by, false, why),
        };
        // Decided by a policy as it is made: both transitions in one transaction, the
        // decision's actor the policy.
        let decide = |r: &mut AccessRequest| {
            r.decisions.push(Decision { by: by.clone(), level: 1, approved, comment, at: now() });
            if approved {
                r.activate(super::now_ms());
                Ok("approved")
            } else {
                r.state = AccessState::Rejected;
                Ok("rejected")
            }
        };
        let policy_actor = ApplyOptions { actor: by.clone(), ..who.clone() };
        let (decided, action) = self.transition_in(&mut tx, id, decide, &policy_actor).await?;
        self.commit(tx).await?;
        access_logged(&created, "requested", who);
        access_logged(&decided, action, &policy_actor);
        Ok(decided)
    }

    async fn access_in(&self, conn: &mut sqlx::AnyConnection, id: i64) -> Result<AccessRequest, Error> {
        let sql = format!("SELECT {COLUMNS} FROM access WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await?;
        row.as_ref().map(request).transpose()?.ok_or_else(|| Error::NotFound(format!("access request {id}")))
    }

    pub async fn access_request(&self, id: i64) -> Result<AccessRequest, Error> {
        let mut conn = self.reads.acquire().await?;
        self.access_in(&mut conn, id).await
    }

    /// Requests matching the query, oldest first.
    pub async fn access_requests(&self, q: &AccessQuery) -> Result<Vec<AccessRequest>, Error> {
        let mut sql = format!("SELECT {COLUMNS} FROM access WHERE 1 = 1");
        let filters = [
            ("contract", q.contract.clone()),
            ("product", q.product.clone()),
            ("consumer", q.consumer.clone()),
            ("state", q.state.map(|s| s.as_str().to_string())),
        ];
        let mut binds = Vec::new();
        for (column, value) in filters {
            if let Some(value) = value {
                binds.push(value);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(" AND id > {} ORDER BY id", q.after));
        if let Some(limit) = q.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(1)));
        }
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        query.fetch_all(&self.reads).await?.iter().map(request).collect()
    }

    /// Applies `transition` to request `id` under the write lock, and records the change (its
    /// action is what `transition` answers). A transition that refuses changes nothing.
    pub async fn update_access(
        &self,
        id: i64,
        transition: impl FnOnce(&mut AccessRequest) -> Result<&'static str, Error> + Send,
        who: &ApplyOptions,
    ) -> Result<AccessRequest, Error> {
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let (after, action) = self.transition_in(&mut tx, id, transition, who).await?;
        self.commit(tx).await?;
        access_logged(&after, action, who);
        Ok(after)
    }

    /// [`Store::update_access`] inside a transaction that holds the write lock.
    async fn transition_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: i64,
        transition: impl FnOnce(&mut AccessRequest) -> Result<&'static str, Error> + Send,
        who: &ApplyOptions,
    ) -> Result<(AccessRequest, &'static str), Error> {
        let before = self.access_in(tx, id).await?;
        let mut after = before.clone();
        let action = transition(&mut after)?;
        after.updated_at = now();
        let policy =
            Some(&after.policy).filter(|p| !p.is_empty()).map(|p| serde_json::to_string(p).unwrap_or_default());
        sqlx::query(
            "UPDATE access SET state = $1, approvals = $2, updated_at = $3, until = $4, policy = $5, approvers = $6 \
             WHERE id = $7",
        )
        .bind(after.state.as_str())
        .bind(serde_json::to_string(&after.decisions).unwrap_or_default())
        .bind(&after.updated_at)
        .bind(&after.until)
        .bind(policy)
        .bind(serde_json::to_string(&after.approvers).unwrap_or_default())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let (b, a, key) = (before.to_json().to_string(), after.to_json().to_string(), id.to_string());
        self.record_change(tx, &subject(&after, &key), action, 0, Some(&b), Some(&a), who, &after.updated_at, None)
            .await?;
        Ok((after, action))
    }

    /// Records how the block holding the port enforces grant `id` (a status, not a change).
    pub async fn set_enforcement(&self, id: i64, enforcement: &str) -> Result<(), Error> {
        sqlx::query("UPDATE access SET enforcement = $1 WHERE id = $2 AND (enforcement IS NULL OR enforcement <> $1)")
            .bind(enforcement)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

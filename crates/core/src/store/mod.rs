//! The store: every applied version of every resource, and one change record per change,
//! written in the same transaction. SQLite (one file, the embedded default) or PostgreSQL
//! (shared by replicas), through one implementation: the SQL is the common subset, and only
//! the schema migrations differ per backend.
//!
//! Writes are serialized (one connection on SQLite; a transaction-scoped advisory lock on
//! PostgreSQL), so change sequence numbers are committed in order and readers of the change
//! feed never see a later number before an earlier one.

mod apply;
pub mod checks;
pub mod claims;
mod coordinate;
mod feed;
pub mod grants;
pub mod health;
pub mod identity;
mod lifecycle;
pub mod migrate;
mod orphans;
pub mod sinks;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use meshplane_spec::Document;
use meshplane_spec::model::odcs::DataContract;
use serde::Serialize;
use serde_json::Value as Any;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

pub use apply::{Applied, ApplyOptions, Outcome};
pub use coordinate::{SCHEDULE, Scope};
pub use orphans::Orphan;

use crate::error::{Error, ErrorCode};
use crate::resource::{Kind, Resource};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The registry's storage.
#[derive(Clone)]
pub struct Store {
    /// Where every write goes (on SQLite, the one connection that writes).
    pool: AnyPool,
    /// Where reads outside a write's transaction go: on SQLite, `query_only` connections that
    /// read the WAL's last commit while the writer writes, so reads neither wait for writes
    /// nor for each other; on PostgreSQL, the same pool.
    reads: AnyPool,
    backend: Backend,
    /// How far tests moved the lease clock forward, in milliseconds (0 otherwise).
    advanced: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Counts the commits that wrote change records through this handle (and its clones):
    /// watchers of the change feed in this process wake on it instead of polling.
    feed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// The installation's id, once read (every reconcile needs it; it never changes).
    installation: std::sync::Arc<tokio::sync::OnceCell<String>>,
    /// How far the change feed is settled, as far as this handle (and its clones) know.
    horizon: std::sync::Arc<feed::Horizon>,
    /// The stored policies, compiled once per generation.
    policies: std::sync::Arc<crate::governance::Cache>,
}

/// The actions of change records that are not a document's change (its history is the
/// document's versions): a status transition and a test run.
pub(crate) const OBSERVATIONS: &str = "'status', 'tested'";

/// What a committed write must survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A change someone asked for (a document, a decision, a token, a finalizer before its
    /// block acts): on the disk before the commit returns.
    Durable,
    /// What a reconcile observed (a status): the commit need not wait for the disk. On
    /// SQLite (WAL, `synchronous = NORMAL`) it survives the process and is lost only if the
    /// machine stops; on PostgreSQL a crash of the database may lose the last such commits.
    /// Never a durable write: the log is written in order, so a durable commit takes every
    /// earlier one to the disk with it. Every resource is reconciled again when the server
    /// starts, which observes it all again.
    Observation,
}

/// A stored resource as it is now.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub kind: Kind,
    pub name: String,
    /// This incarnation of the resource: made when it is created, never reused, so what a
    /// block made for an earlier resource of the same name is told apart from its own.
    pub uid: String,
    pub id: String,
    pub version: String,
    pub status: String,
    /// The owning domain and team, recorded when the resource was created.
    pub domain: String,
    pub team: Option<String>,
    pub tags: Vec<String>,
    pub generation: i64,
    pub created_at: String,
    pub updated_at: String,
    /// When deletion was asked for: the record stays until every finalizer is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_requested: Option<String>,
    /// The blocks that provisioned something for this resource and must clean it up first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Who owns it: its team's name and members, recorded when it was created.
    pub owners: Vec<String>,
    /// Its source of truth, the only one that may change or delete it: `api` (applied through
    /// the API or the CLI), later `gitsource/NAME` (a git repository the server follows).
    pub manager: String,
    /// The document as stored (JSON).
    pub spec: Any,
    /// The typed document, decoded from `spec` the first time it is asked for and shared by
    /// the record's clones: once per load, not once per block call. Private, so that a record
    /// with another `spec` is made by [`Record::with_spec`] and never keeps a stale decoding.
    #[serde(skip)]
    typed: Arc<OnceLock<Option<Document>>>,
}

impl Record {
    /// A record as the store keeps a resource that was just created (generation 1, no
    /// finalizers, no recorded owners), under `uid`.
    pub fn created(resource: Resource, uid: &str) -> Record {
        Record {
            kind: resource.kind,
            name: resource.name,
            uid: uid.into(),
            id: resource.id,
            version: resource.version,
            status: resource.status,
            domain: resource.domain,
            team: resource.team,
            tags: resource.tags,
            generation: 1,
            created_at: String::new(),
            updated_at: String::new(),
            deletion_requested: None,
            finalizers: Vec::new(),
            owners: Vec::new(),
            manager: API_MANAGER.into(),
            spec: resource.spec,
            typed: Arc::default(),
        }
    }

    /// `Ok` when the API is this resource's source of truth; otherwise the refusal that names
    /// the one that is (a change made beside it would be overwritten, or fight it).
    pub fn managed_by_api(&self) -> Result<(), Error> {
        if self.manager == API_MANAGER {
            return Ok(());
        }
        Err(Error::conflict(
            ErrorCode::ManagedElsewhere,
            format!(
                "{} `{}` is managed by `{}`: change it there, its source of truth, not through the API",
                self.kind, self.name, self.manager
            ),
        ))
    }

    /// The same record holding another document (an earlier version of it, say).
    pub fn with_spec(&self, spec: Any) -> Record {
        Record { spec, typed: Arc::default(), ..self.clone() }
    }

    /// The typed document (`None` when the stored one does not decode, which the store's
    /// linting on apply rules out).
    pub fn document(&self) -> Option<&Document> {
        self.typed.get_or_init(|| meshplane_spec::decode_json(&self.spec)).as_ref()
    }

    /// The contract this record holds, if it is one.
    pub fn contract(&self) -> Option<&DataContract> {
        match self.document()? {
            Document::Contract(contract) => Some(contract),
            Document::Product(_) | Document::Policy(_) | Document::Exemption(_) => None,
        }
    }
}

/// One change record: who changed what, from what, to what; with its CloudEvents envelope.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub origin: String,
    pub kind: String,
    pub name: String,
    pub action: String,
    pub generation: i64,
    pub version: String,
    pub before: Option<Any>,
    pub after: Option<Any>,
    pub event: Any,
}

impl Change {
    /// The change as the CloudEvent every reader gets (the pull feed in CloudEvents form and
    /// every notification sink): the stored envelope, its `data` with the document or record
    /// `before` and `after` the change where there is one.
    pub fn cloud_event(&self) -> Any {
        let mut event = self.event.clone();
        if let Some(data) = event.get_mut("data").and_then(Any::as_object_mut) {
            for (key, value) in [("before", &self.before), ("after", &self.after)] {
                if let Some(value) = value {
                    data.insert(key.into(), value.clone());
                }
            }
        }
        event
    }
}

/// One stored run of a contract's tests.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestRun {
    pub seq: i64,
    pub name: String,
    /// The generation of the contract the run tested.
    pub generation: i64,
    pub server: String,
    pub at: String,
    /// Whether a check failed or could not run.
    pub failed: bool,
    pub report: Any,
}

/// One condition of a resource's status, as Kubernetes writes them.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about: `Ready`, `Provisioned`, `AccessInSync`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ConditionStatus,
    /// Why, in one CamelCase word (`GrantsApplied`, `ProvisioningRefused`).
    pub reason: String,
    pub message: String,
    /// The generation of the document this condition was observed on: a condition a later
    /// reconcile did not write again keeps the generation it is about. (Statuses written
    /// before it was recorded read as the status's `observedGeneration`.)
    #[serde(default)]
    pub observed_generation: i64,
    /// When `status` last changed.
    pub last_transition_time: String,
}

impl Condition {
    /// The conditions of `after` that appeared or changed their status since `before`, each
    /// with its status before (`None`: it is new): a status's transitions.
    pub fn transitions<'a>(
        before: &'a [Condition],
        after: &'a [Condition],
    ) -> impl Iterator<Item = (Option<ConditionStatus>, &'a Condition)> {
        after.iter().filter_map(move |c| {
            let was = before.iter().find(|p| p.kind == c.kind).map(|p| p.status);
            (was != Some(c.status)).then_some((was, c))
        })
    }
}

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn of(holds: bool) -> ConditionStatus {
        if holds { ConditionStatus::True } else { ConditionStatus::False }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// What the reconcilers last observed of a resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
    pub updated_at: String,
}

/// A filter for listing resources; every field given must match.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub kind: Option<Kind>,
    pub domain: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    /// Resources after this `kind/name` (the previous page's `next`).
    pub after: Option<(String, String)>,
    pub limit: i64,
}

/// A filter on the audit log; every field given must match.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub action: Option<String>,
    /// At or after this time (RFC 3339).
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    pub until: Option<String>,
    /// Changes after this sequence number.
    pub after: i64,
    pub limit: i64,
}

/// One page of a listing.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub items: Vec<Record>,
    /// Where the next page starts, when there is one.
    pub next: Option<String>,
}

fn json(text: Option<String>) -> Result<Option<Any>, Error> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| Error::Store(format!("stored JSON is corrupt: {e}")))).transpose()
}

const RECORD_COLUMNS: &str = "kind, name, uid, id, version, status, domain, team, tags, generation, created_at, updated_at, deleting, finalizers, owners, manager, spec";

/// The manager of the resources applied through the API (and the CLI's local paths).
pub const API_MANAGER: &str = "api";

fn record(row: &AnyRow) -> Result<Record, Error> {
    let tags: String = row.try_get("tags")?;
    let finalizers: String = row.try_get("finalizers")?;
    let owners: String = row.try_get("owners")?;
    let kind: String = row.try_get("kind")?;
    Ok(Record {
        kind: Kind::parse(&kind)
            .ok_or_else(|| Error::Store(format!("a stored resource has the unknown kind `{kind}`")))?,
        name: row.try_get("name")?,
        uid: row.try_get("uid")?,
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        domain: row.try_get("domain")?,
        team: row.try_get("team")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deletion_requested: row.try_get("deleting")?,
        finalizers: serde_json::from_str(&finalizers).unwrap_or_default(),
        owners: serde_json::from_str(&owners).unwrap_or_default(),
        manager: row.try_get("manager")?,
        spec: json(Some(row.try_get("spec")?))?.unwrap_or(Any::Null),
        typed: Arc::default(),
    })
}

fn status(row: &AnyRow) -> Result<Status, Error> {
    status_of(row.try_get("observed_generation")?, &row.try_get::<String, _>("conditions")?, row.try_get("updated_at")?)
}

fn status_of(observed_generation: i64, conditions: &str, updated_at: String) -> Result<Status, Error> {
    let mut conditions: Vec<Condition> = serde_json::from_str(conditions).map_err(|e| Error::Store(e.to_string()))?;
    // A status an earlier release wrote has no generation per condition: the status's own.
    for c in conditions.iter_mut().filter(|c| c.observed_generation == 0) {
        c.observed_generation = observed_generation;
    }
    Ok(Status { observed_generation, conditions, updated_at })
}

fn change(row: &AnyRow) -> Result<Change, Error> {
    let seq: i64 = row.try_get("seq")?;
    let mut event = json(Some(row.try_get("event")?))?.unwrap_or(Any::Null);
    if event.is_object() {
        // The change number, which the envelope is written without (see `record_change`).
        event["id"] = Any::from(format!("meshplane-change-{seq}"));
        event["data"]["seq"] = Any::from(seq);
    }
    Ok(Change {
        seq,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        origin: row.try_get("origin")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        action: row.try_get("action")?,
        generation: row.try_get("generation")?,
        version: row.try_get("version")?,
        before: json(row.try_get("before")?)?,
        after: json(row.try_get("after")?)?,
        event,
    })
}

/// How the store writes times: RFC 3339 in UTC to the microsecond, always 27 characters, so
/// that two times compare as their texts do (the audit log's `since` and `until` rely on it).
const STAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Now, as the store writes times.
pub fn now() -> String {
    stamp(time::OffsetDateTime::now_utc())
}

fn stamp(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(STAMP).unwrap_or_default()
}

/// An RFC 3339 time (any offset, any precision) as the store writes times, or `None` when
/// it is not one.
pub fn canonical_time(rfc3339: &str) -> Option<String> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok().map(stamp)
}

/// Milliseconds since the Unix epoch as the store writes times (the epoch itself when out of
/// range).
pub fn stamp_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    stamp(at.unwrap_or(time::OffsetDateTime::UNIX_EPOCH))
}

/// Now, in milliseconds since the Unix epoch (as [`epoch_ms`] reads times).
pub fn now_ms() -> i64 {
    epoch_ms(&now()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (as the store writes them).
pub fn epoch_ms(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Connections of a SQLite store that only read, beside its writer: reconcilers and requests
/// read this many at once.
const SQLITE_READERS: u32 = 4;

/// The statements that set up each SQLite connection: up to 64 MiB of pages in its cache and
/// up to 1 GiB of the file mapped, so that a reconcile's reads are not reads of the file (the
/// default cache holds 2 MiB).
const SQLITE_SETUP: &str = "PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824";

/// How a store's connections are made; `readers` refuse to write. A SQLite reader is opened
/// for writing and then made `query_only`, not opened read-only: whichever connection closes
/// last must be able to move the WAL into the file and remove it.
fn pool_options(backend: Backend, connections: u32, readers: bool) -> AnyPoolOptions {
    let options =
        AnyPoolOptions::new().max_connections(connections).acquire_timeout(std::time::Duration::from_secs(10));
    if backend == Backend::Postgres {
        // Every statement planned for its own values and the tables as they are now. A
        // connection's prepared statements otherwise keep the generic plan made after their
        // fifth run, which for a store that started empty looked a resource up by kind alone
        // (the `(kind, id)` index, every resource of the kind read) until an autovacuum's
        // ANALYZE came round: the registry bench's applies took twice as long.
        return options.after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET plan_cache_mode = force_custom_plan").execute(&mut *conn).await?;
                Ok(())
            })
        });
    }
    let setup = if readers { format!("{SQLITE_SETUP}; PRAGMA query_only = ON") } else { SQLITE_SETUP.to_string() };
    options.after_connect(move |conn, _| {
        let setup = setup.clone();
        Box::pin(async move {
            sqlx::query(&setup).execute(&mut *conn).await?;
            Ok(())
        })
    })
}

impl Store {
    /// Opens (creating when needed) the store at `url` — `sqlite://PATH` or
    /// `postgres://...` — and migrates it to the latest schema.
    pub async fn open(url: &str) -> Result<Store, Error> {
        Self::open_at(url, migrate::LATEST).await
    }

    /// Opens the store migrated only up to `version`: how an older release left it (for
    /// upgrade tests).
    pub async fn open_at(url: &str, version: i64) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let (backend, url, connections) = if let Some(path) = url.strip_prefix("sqlite://") {
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"), 1)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), 8)
        } else {
            return Err(Error::Store(format!("`{url}` is neither sqlite://PATH nor postgres://...")));
        };
        let pool = pool_options(backend, connections, false).connect(&url).await?;
        let mut conn = pool.acquire().await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
        }
        migrate::migrate(&mut conn, backend, version).await?;
        drop(conn);
        let reads = match backend {
            Backend::Sqlite => pool_options(backend, SQLITE_READERS, true).connect(&url).await?,
            Backend::Postgres => pool.clone(),
        };
        let feed = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        let (advanced, installation, horizon, policies) = Default::default();
        Ok(Store { pool, reads, backend, advanced, feed, installation, horizon, policies })
    }

    /// Closes every connection, once the ones in use are given back: on SQLite the last to
    /// close moves the WAL into the database file and removes it. Every handle of this store
    /// (its clones) is closed with it.
    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    /// The compiled policies of this store, shared by its clones.
    pub(crate) fn policy_cache(&self) -> &crate::governance::Cache {
        &self.policies
    }

    /// Wakes when a change record was committed through this store (in this process; other
    /// replicas' changes are found by reading the feed).
    pub fn watch_feed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// Begins a write transaction that must survive what `durability` says, set with the
    /// transaction's own begin statement. The writes of one statement outside a transaction
    /// are the replicas' coordination (leases, heartbeats, how a grant is enforced): on
    /// PostgreSQL they wait for the disk, on SQLite they commit at the level the last
    /// transaction set; either is at least what an observation needs.
    pub(crate) async fn begin(&self, durability: Durability) -> Result<sqlx::Transaction<'static, sqlx::Any>, Error> {
        let statement = match (self.backend, durability) {
            (Backend::Sqlite, Durability::Durable) => "PRAGMA synchronous = FULL; BEGIN",
            (Backend::Sqlite, Durability::Observation) => "PRAGMA synchronous = NORMAL; BEGIN",
            (Backend::Postgres, Durability::Durable) => "BEGIN",
            (Backend::Postgres, Durability::Observation) => "BEGIN; SET LOCAL synchronous_commit = off",
        };
        Ok(self.pool.begin_with(statement).await?)
    }

    /// Commits a transaction that wrote change records, and wakes the feed's watchers.
    pub(crate) async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<(), Error> {
        tx.commit().await?;
        self.feed.send_modify(|commits| *commits += 1);
        Ok(())
    }

    /// The schema version the store is at.
    pub async fn schema_version(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT max(version) FROM meshplane_schema").fetch_one(&self.reads).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<Record, Error> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND name = $2");
        let row = sqlx::query(&sql).bind(kind.as_str()).bind(name).fetch_optional(&self.reads).await?;
        row.as_ref().map(record).transpose()?.ok_or_else(|| Error::NotFound(format!("{} `{name}`", kind.as_str())))
    }

    /// A resource with what the reconcilers last wrote for it, in one query (a reconcile's
    /// first read).
    pub async fn get_observed(&self, kind: Kind, name: &str) -> Result<(Record, Option<Status>), Error> {
        let columns: Vec<String> = RECORD_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
        let sql = format!(
            "SELECT {}, s.observed_generation, s.conditions, s.updated_at AS observed_at FROM resources r \
             LEFT JOIN statuses s ON s.kind = r.kind AND s.name = r.name WHERE r.kind = $1 AND r.name = $2",
            columns.join(", ")
        );
        let row = sqlx::query(&sql).bind(kind.as_str()).bind(name).fetch_optional(&self.reads).await?;
        let row = row.ok_or_else(|| Error::NotFound(format!("{} `{name}`", kind.as_str())))?;
        let observed = match row.try_get::<Option<String>, _>("conditions")? {
            None => None,
            Some(conditions) => {
                Some(status_of(row.try_get("observed_generation")?, &conditions, row.try_get("observed_at")?)?)
            }
        };
        Ok((record(&row)?, observed))
    }

    /// Resources matching the query, ordered by kind and name, one page at a time.
    pub async fn list(&self, q: &Query) -> Result<Page, Error> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut filter = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(kind) = q.kind {
            filter(&mut sql, " AND kind = ?", kind.as_str().to_string());
        }
        if let Some(domain) = &q.domain {
            filter(&mut sql, " AND domain = ?", domain.clone());
        }
        if let Some(status) = &q.status {
            filter(&mut sql, " AND status = ?", status.clone());
        }
        if let Some(tag) = &q.tag {
            // Tags are stored as a JSON array of strings: match the quoted element.
            filter(
                &mut sql,
                " AND tags LIKE ?",
                format!("%{}%", serde_json::to_string(tag).unwrap_or_default().replace(['%', '_'], "")),
            );
        }
        if let Some((kind, name)) = &q.after {
            binds.push(kind.clone());
            binds.push(name.clone());
            let (a, b) = (binds.len() - 1, binds.len());
            sql.push_str(&format!(" AND (kind > ${a} OR (kind = ${a} AND name > ${b}))"));
        }
        let limit = q.limit.clamp(1, 1000);
        sql.push_str(&format!(" ORDER BY kind, name LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.reads).await?;
        let mut items = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|r| format!("{}/{}", r.kind, r.name))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Every resource of a kind, page after page.
    pub async fn list_all(&self, kind: Kind) -> Result<Vec<Record>, Error> {
        let mut all = Vec::new();
        let mut q = Query { kind: Some(kind), limit: 1000, ..Query::default() };
        loop {
            let page = self.list(&q).await?;
            all.extend(page.items);
            q.after = all.last().map(|r| (r.kind.to_string(), r.name.clone()));
            if page.next.is_none() {
                return Ok(all);
            }
        }
    }

    /// Every change of one resource, oldest first: its whole history.
    pub async fn history(&self, kind: Kind, name: &str) -> Result<Vec<Change>, Error> {
        self.history_page(kind, name, 0, i64::MAX).await
    }

    /// The changes of one resource's document after sequence number `after`, oldest first,
    /// at most `limit` (its status transitions and test runs are in the change feed, not
    /// here); not found when the resource never had any.
    pub async fn history_page(&self, kind: Kind, name: &str, after: i64, limit: i64) -> Result<Vec<Change>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM changes WHERE kind = $1 AND name = $2 AND seq > $3 AND action NOT IN ({OBSERVATIONS}) \
                 ORDER BY seq LIMIT $4"
        ))
        .bind(kind.as_str())
        .bind(name)
        .bind(after)
        .bind(limit.max(1))
        .fetch_all(&self.reads)
        .await?;
        if rows.is_empty() {
            let any = sqlx::query("SELECT 1 FROM changes WHERE kind = $1 AND name = $2 LIMIT 1")
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&self.reads)
                .await?;
            if any.is_none() {
                return Err(Error::NotFound(format!("{} `{name}`", kind.as_str())));
            }
        }
        rows.iter().map(change).collect()
    }

    /// What the reconcilers last wrote for a resource, if anything.
    pub async fn status(&self, kind: Kind, name: &str) -> Result<Option<Status>, Error> {
        let row = sqlx::query(
            "SELECT name, observed_generation, conditions, updated_at FROM statuses WHERE kind = $1 AND name = $2",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(status).transpose()
    }

    /// What the reconcilers last wrote for each of `names` (of one kind) that they reconciled,
    /// by name: in one query, for a page of a listing.
    pub async fn statuses(&self, kind: Kind, names: &[String]) -> Result<HashMap<String, Status>, Error> {
        let mut found = HashMap::new();
        for chunk in names.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT name, observed_generation, conditions, updated_at FROM statuses WHERE kind = $1 AND name IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(kind.as_str());
            for name in chunk {
                query = query.bind(name);
            }
            for row in query.fetch_all(&self.reads).await? {
                found.insert(row.try_get("name")?, status(&row)?);
            }
        }
        Ok(found)
    }

    /// Replaces the status of `record` with `conditions` observed at its generation, only while
    /// `fence.0` holds its lease with token `fence.1`: a replica that stalled past its lease
    /// cannot write over its successor. `before` is the status the caller read while holding
    /// that lease (only a lease's holder writes a status, so it is still the stored one). When
    /// a condition appears or changes its status, the change feed gets a `status` record
    /// (before and after: the conditions; the version and domain: the record's, of the
    /// generation observed), in the same transaction.
    ///
    /// The status is the last thing a reconcile writes: the same transaction gives the lease
    /// back (as [`Store::release_lease`] does), so that a reconcile costs one write less.
    pub async fn set_status(
        &self,
        record: &Record,
        before: &[Condition],
        conditions: &[Condition],
        fence: (&str, i64),
    ) -> Result<(), Error> {
        let (kind, name) = (record.kind.as_str(), record.name.as_str());
        let to_text = |c: &[Condition]| serde_json::to_string(c).map_err(|e| Error::Store(e.to_string()));
        let after = to_text(conditions)?;
        let moved = Condition::transitions(before, conditions).next().is_some();
        let mut tx = self.begin(Durability::Observation).await?;
        if moved && self.backend == Backend::Postgres {
            // A change record follows, which must not be lost while the feed's readers live
            // on: PostgreSQL, when it alone crashed, could hand its change number out again to
            // a later change, which a reader that saw this one would step over. (On SQLite the
            // readers stop with the machine that loses it.)
            sqlx::query("SET LOCAL synchronous_commit = on").execute(&mut *tx).await?;
        }
        // The fence and the write in one statement; on PostgreSQL the lease row stays locked
        // until the transaction ends, so it cannot change hands halfway. SQLite takes the
        // lease's release in the same call (statements sharing their numbered parameters; it
        // changes a row only when the fence held, so no row changed means a stale fence);
        // PostgreSQL takes no more than one statement per call with parameters.
        let (lock, give_back) = match self.backend {
            Backend::Postgres => (" FOR UPDATE", ""),
            Backend::Sqlite => {
                ("", "; UPDATE leases SET expires_at = 0 WHERE kind = $1 AND name = $2 AND owner = $6 AND token = $7")
            }
        };
        let written = sqlx::query(&format!(
            "INSERT INTO statuses (kind, name, observed_generation, conditions, updated_at) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
             (SELECT 1 FROM leases WHERE kind = $1 AND name = $2 AND owner = $6 AND token = $7{lock}) \
             ON CONFLICT (kind, name) DO UPDATE SET observed_generation = excluded.observed_generation, \
             conditions = excluded.conditions, updated_at = excluded.updated_at{give_back}"
        ))
        .bind(kind)
        .bind(name)
        .bind(record.generation)
        .bind(&after)
        .bind(now())
        .bind(fence.0)
        .bind(fence.1)
        .execute(&mut *tx)
        .await?;
        if written.rows_affected() == 0 {
            return Err(coordinate::stale_lease(kind, name, fence));
        }
        if self.backend == Backend::Postgres {
            let release = sqlx::query(coordinate::RELEASE_LEASE).bind(kind).bind(name).bind(fence.0).bind(fence.1);
            release.execute(&mut *tx).await?;
        }
        if !moved {
            tx.commit().await?;
            return Ok(());
        }
        let subject = apply::Subject { kind, name, version: &record.version, domain: &record.domain };
        let by = ApplyOptions::reconciler();
        let ready = conditions.iter().find(|c| c.kind == "Ready").map(|c| Any::from(c.status.as_str()));
        let note = ready.map(|r| ("ready", r));
        let before = if before.is_empty() { None } else { Some(to_text(before)?) };
        let (at, after) = (now(), Some(after.as_str()));
        let generation = record.generation;
        self.record_change(&mut tx, &subject, "status", generation, before.as_deref(), after, &by, &at, note).await?;
        self.commit(tx).await
    }

    /// The version and domain of a stored resource, for a change record about it (empty
    /// when it is gone).
    async fn subject_of(&self, tx: &mut AnyConnection, kind: Kind, name: &str) -> Result<(String, String), Error> {
        let row = sqlx::query("SELECT version, domain FROM resources WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(match row {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (String::new(), String::new()),
        })
    }

    /// The keys of the contracts with this `id` (one per major version).
    /// Every (domain, team) pair of the stored resources (the team empty when a resource names
    /// none), sorted: what policies read as the mesh's domains and teams.
    pub async fn domains_and_teams(&self) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query("SELECT DISTINCT domain, COALESCE(team, '') FROM resources ORDER BY 1, 2")
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// The domains of which one of `names` (a principal and its groups) is a recorded owner
    /// of some contract or product, sorted.
    pub async fn owner_domains(&self, names: &[String]) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT DISTINCT domain, owners FROM resources WHERE kind IN ($1, $2)")
            .bind(Kind::DataContract.as_str())
            .bind(Kind::DataProduct.as_str())
            .fetch_all(&self.reads)
            .await?;
        let mut domains = Vec::new();
        for row in &rows {
            let owners: Vec<String> = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
            let domain: String = row.try_get(0)?;
            if owners.iter().any(|o| names.contains(o)) && !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        domains.sort_unstable();
        Ok(domains)
    }

    pub async fn contract_names(&self, id: &str) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT name FROM resources WHERE kind = $1 AND id = $2 ORDER BY name")
            .bind(Kind::DataContract.as_str())
            .bind(id)
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Keeps the report of a test run of a resource at `generation`, and returns it as stored.
    /// The change feed gets a `tested` record in the same transaction (after: the server, the
    /// verdict and the run's number; the report's details stay behind the test-runs API), and
    /// the checks' standing the run's verdicts, for what the run `covered`.
    #[expect(clippy::too_many_arguments)]
    pub async fn record_test(
        &self,
        kind: Kind,
        name: &str,
        generation: i64,
        server: &str,
        failed: bool,
        report: Any,
        covered: checks::Covered<'_>,
    ) -> Result<TestRun, Error> {
        let at = now();
        let mut tx = self.begin(Durability::Durable).await?;
        self.lock_writes(&mut tx).await?;
        let row = sqlx::query(
            "INSERT INTO test_runs (kind, name, generation, server, at, failed, report) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(generation)
        .bind(server)
        .bind(&at)
        .bind(i64::from(failed))
        .bind(report.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let seq = row.try_get(0)?;
        self.keep_standing(&mut tx, kind, name, server, covered, &report, seq, &at).await?;
        let (version, domain) = self.subject_of(&mut tx, kind, name).await?;
        let subject = apply::Subject { kind: kind.as_str(), name, version: &version, domain: &domain };
        let after = serde_json::json!({ "server": server, "failed": failed, "run": seq }).to_string();
        let by = ApplyOptions::reconciler();
        let note = Some(("failed", Any::Bool(failed)));
        self.record_change(&mut tx, &subject, "tested", generation, None, Some(&after), &by, &at, note).await?;
        self.commit(tx).await?;
        tracing::info!(contract = %name, server = %server, failed, run = seq, "test run kept");
        Ok(TestRun { seq, name: name.to_string(), generation, server: server.to_string(), at, failed, report })
    }

    /// The test runs of a resource, newest first.
    pub async fn test_runs(&self, kind: Kind, name: &str, limit: i64) -> Result<Vec<TestRun>, Error> {
        let rows = sqlx::query("SELECT * FROM test_runs WHERE kind = $1 AND name = $2 ORDER BY seq DESC LIMIT $3")
            .bind(kind.as_str())
            .bind(name)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TestRun {
                    seq: row.try_get("seq")?,
                    name: row.try_get("name")?,
                    generation: row.try_get("generation")?,
                    server: row.try_get("server")?,
                    at: row.try_get("at")?,
                    failed: row.try_get::<i64, _>("failed")? != 0,
                    report: json(Some(row.try_get("report")?))?.unwrap_or(Any::Null),
                })
            })
            .collect()
    }

    /// The audit log: the change records the query matches, in order, as far as the feed is
    /// settled.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<Change>, Error> {
        let mut sql = String::from("SELECT * FROM changes WHERE seq > $1");
        let mut binds: Vec<String> = Vec::new();
        let time = |t: &String| {
            canonical_time(t).ok_or_else(|| {
                Error::invalid(
                    ErrorCode::MalformedRequest,
                    format!("`{t}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
                )
            })
        };
        let filters = [
            ("actor = ", q.actor.clone()),
            ("kind = ", q.kind.clone()),
            ("name = ", q.name.clone()),
            ("action = ", q.action.clone()),
            // Times compare as texts: both are in the store's fixed-width format.
            ("at >= ", q.since.as_ref().map(time).transpose()?),
            ("at < ", q.until.as_ref().map(time).transpose()?),
        ];
        for (clause, value) in filters {
            if let Some(value) = value {
                binds.push(value);
                sql.push_str(&format!(" AND {clause}${}", binds.len() + 1));
            }
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", q.limit.clamp(1, 1000)));
        let mut query = sqlx::query(&sql).bind(q.after);
        for b in &binds {
            query = query.bind(b);
        }
        let horizon = self.readable().await?;
        let rows = query.fetch_all(&self.reads).await?.iter().map(change).collect::<Result<_, _>>()?;
        Ok(feed::settled(q.after, horizon, rows))
    }

    /// The catalog's change feed: changes of contracts and products after sequence number
    /// `after`, in order, as far as the feed is settled.
    pub async fn catalog_events(&self, after: i64, limit: i64) -> Result<Vec<Change>, Error> {
        let horizon = self.readable().await?;
        let rows = sqlx::query(
            "SELECT * FROM changes WHERE seq > $1 AND kind IN ('DataContract', 'DataProduct') ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.reads)
        .await?;
        Ok(feed::settled(after, horizon, rows.iter().map(change).collect::<Result<_, _>>()?))
    }

    /// The change feed: changes after sequence number `after`, in order, up to the first one
    /// that a change still in flight precedes (see [`feed`]).
    pub async fn events(&self, after: i64, limit: i64) -> Result<Vec<Change>, Error> {
        let horizon = self.readable().await?;
        let rows = sqlx::query("SELECT * FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.reads)
            .await?;
        Ok(feed::settled(after, horizon, rows.iter().map(change).collect::<Result<_, _>>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_time;
    use sqlx::Row;

    /// On SQLite the level is the connection's (the pool has one): it is what the last write
    /// transaction set for itself.
    #[tokio::test]
    async fn on_sqlite_only_durable_writes_wait_for_the_disk() {
        let place = crate::testing::sqlite().await;
        let store = super::Store::open(&place.url).await.unwrap();
        let level = async |store: &super::Store| -> i64 {
            let row = sqlx::query("PRAGMA synchronous").fetch_one(&store.pool).await.unwrap();
            row.try_get(0).unwrap()
        };
        let (full, normal) = (2, 1);
        let text = "apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: draft\ndomain: d\n";
        let loaded = meshplane_spec::load(text).documents.remove(0);
        let record = super::Record::created(crate::resource::Resource::from_loaded(&loaded).unwrap(), "u");
        let token = store.acquire_lease("DataContract", &record.name, "me", 60_000).await.unwrap().unwrap();
        store.add_orphans("DataContract", "c", &[]).await.unwrap();
        assert_eq!(level(&store).await, full, "what a block left in place is kept durably");
        store.set_status(&record, &[], &[], ("me", token)).await.unwrap();
        assert_eq!(level(&store).await, normal, "a status is an observation");
        store.add_orphans("DataContract", "c", &[]).await.unwrap();
        assert_eq!(level(&store).await, full, "no durable write inherits an observation's level");
    }

    #[tokio::test]
    async fn on_sqlite_the_readers_cannot_write() {
        let place = crate::testing::sqlite().await;
        let store = super::Store::open(&place.url).await.unwrap();
        let refused = sqlx::query("DELETE FROM meta").execute(&store.reads).await.unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        sqlx::query("SELECT count(*) FROM meta").fetch_one(&store.reads).await.unwrap();
    }

    #[test]
    fn times_of_any_offset_and_precision_compare_as_their_canonical_texts() {
        let times = [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T01:00:00.75+01:00",
            "2026-01-01T00:00:01.000001Z",
            "2026-01-01T00:30:00.2+00:30",
        ];
        let canonical: Vec<String> = times.iter().map(|t| canonical_time(t).unwrap()).collect();
        assert_eq!(canonical[0], "2026-01-01T00:00:00.000000Z");
        assert_eq!(canonical[2], "2026-01-01T00:00:00.750000Z");
        assert!(canonical.iter().all(|c| c.len() == 27));
        // The texts sort as the instants do; the raw texts do not ("00Z" > "00.5Z").
        let mut by_text = canonical.clone();
        by_text.sort();
        let expected = [0, 4, 1, 2, 3].map(|i| canonical[i].clone());
        assert_eq!(by_text, expected);
        assert!(times[0] > times[1], "the raw texts would compare the wrong way");
        assert_eq!(canonical_time("yesterday"), None);
    }
}

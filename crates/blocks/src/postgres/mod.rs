//! The PostgreSQL storage block: each contract server bound to it becomes a schema of its own
//! (the server's `schema`, or `ID_vMAJOR`, so major versions coexist) holding one table per
//! schema object, or a view when the object's `physicalName` names an existing table
//! (`schema.table`).
//!
//! - Columns: the property's physical name; its type from `physicalType` through an
//!   allow-list of PostgreSQL types, or from `logicalType`; NOT NULL for required and primary
//!   keys; PRIMARY KEY (in `primaryKeyPosition` order); UNIQUE; comments from descriptions.
//! - Every identifier and literal reaches PostgreSQL through `format('%I', '%L')`, so no text
//!   from a contract is ever pasted into SQL; a type is pasted only from the allow-list.
//! - Provisioning is one transaction per server and idempotent. On an existing table it reads
//!   the live catalog: a declared optional column that is missing is added (a compatible
//!   evolution); anything else that differs (a required column missing, another type, a
//!   column not declared, a nullable required column) is drift, reported and never altered.
//! - The block works only in schemas it made for the resource at hand: each carries a mark
//!   (its comment: installation, domain, contract, uid, fencing token, see [`mark`]). A
//!   server naming any other schema — someone's own, another contract's — is refused with a
//!   condition before anything is read or changed in it; a view is made only over the
//!   contract's own tables, in its own schema.
//! - Cleanup follows the deletion policy: `retain` leaves everything and reports it; `delete`
//!   drops the declared views and the declared tables that hold no rows, then the schema if
//!   nothing else is in it. A table that holds data is never dropped by a cleanup: it is
//!   reported as left in place, and a purge drops it only while the schema is still the one
//!   that resource left.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::access::{AccessReport, AccessSync, Login};
use meshplane_core::block::{BlockError, BlockFuture, BlockResult, Call, Leftover, Provisioned};
use meshplane_core::checking::{TestTarget, Tls};
use meshplane_core::store::Record;
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Executor, Row};

use crate::platform::{DeletionPolicy, Platform, PostgresConfig, TlsMode};
use crate::registry::{BlockType, Built, describe};
use crate::storage::{ServerStorage, Storage};
use mark::{Mark, Standing};
use model::Object;
use sql::{columns, create_table, create_view, evolve, has_rows, is_table, run, schema_exists};

mod access;
mod mark;
mod model;
mod sandbox;
mod sql;

pub use access::{login_name, role_name};

/// The block, with its (lazily connecting) pool.
pub struct PostgresBlock {
    name: String,
    config: PostgresConfig,
    platform: Arc<Platform>,
    pool: PgPool,
}

/// The longest identifier PostgreSQL keeps whole.
const MAX_IDENTIFIER: usize = 63;

impl PostgresBlock {
    /// Builds the block (resolving its password); connects only when first used.
    pub fn new(name: &str, config: &PostgresConfig, platform: Arc<Platform>) -> Result<PostgresBlock, String> {
        let mut options = PgConnectOptions::new()
            .host(&config.host)
            .port(config.port)
            .database(&config.database)
            .username(&config.user);
        options = match config.tls.mode {
            TlsMode::Disable => options.ssl_mode(PgSslMode::Disable),
            TlsMode::VerifyFull => {
                let options = options.ssl_mode(PgSslMode::VerifyFull);
                match &config.tls.root_cert {
                    Some(path) => options.ssl_root_cert(path),
                    None => options,
                }
            }
        };
        if let Some(secret) = &config.password {
            options = options.password(&secret.resolve().map_err(|e| format!("block `{name}`: password: {e}"))?);
        }
        let pool =
            PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(options);
        Ok(PostgresBlock { name: name.to_string(), config: config.clone(), platform, pool })
    }

    /// A transaction on the block's database, or why it cannot be reached.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, String> {
        self.pool.begin().await.map_err(|e| format!("cannot reach {}: {e}", self.config.host))
    }

    /// The schema of a server bound to this block (binding already checked that its endpoint
    /// fields are the block's): the server's, or meshplane's default.
    fn schema_of(&self, server: &Server, record: &Record) -> BlockResult<String> {
        let schema = server.schema.clone().unwrap_or_else(|| default_schema(&record.name));
        identifier(&schema).map_err(BlockError::Permanent)?;
        Ok(schema)
    }

    /// The declared objects, tables first; a view only over a table the contract declares
    /// in the same schema. What cannot be made is refused for good (until the contract changes).
    fn objects(contract: &DataContract, schema: &str) -> BlockResult<Vec<Object>> {
        let mut objects = declared(contract)?;
        for view in objects.iter().filter(|o| o.source.is_some()) {
            let (from_schema, from_table) =
                view.source.as_ref().map(|(s, t)| (s.as_str(), t.as_str())).unwrap_or_default();
            let own_table = from_schema == schema && objects.iter().any(|o| o.source.is_none() && o.name == from_table);
            if !own_table {
                return Err(BlockError::Permanent(format!(
                    "{}: physicalName `{from_schema}.{from_table}` is not a table of this contract (a view is made only \
                     over a table the contract declares, in its own schema {schema})",
                    view.name
                )));
            }
        }
        objects.sort_by_key(|o| o.source.is_some());
        Ok(objects)
    }

    fn provision_one<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Provisioned>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let objects = Self::objects(contract, &schema)?;
            let mut tx = self.begin().await?;
            mark::lock(&mut tx, &call.installation, &schema).await?;
            let mut done = Vec::new();
            let mut drift = Vec::new();
            let found = match mark::standing(&mut tx, &schema, record, call).await? {
                Standing::Foreign(why) => return Err(BlockError::Permanent(why)),
                Standing::Absent => {
                    run(&mut tx, "SELECT format('CREATE SCHEMA %I', $1)", &[&schema]).await?;
                    done.push(format!("created schema {schema}"));
                    None
                }
                Standing::Ours(found) => found,
            };
            mark::fenced(found.as_ref(), &schema, call)?;
            mark::write(&mut tx, &schema, record, call, found.as_ref()).await?;
            for object in &objects {
                let found = columns(&mut tx, &schema, &object.name).await?;
                match (&object.source, found.is_empty()) {
                    (Some(source), true) => {
                        create_view(&mut tx, &schema, object, source).await?;
                        done.push(format!("created view {schema}.{}", object.name));
                    }
                    (None, true) => {
                        create_table(&mut tx, &schema, object).await?;
                        done.push(format!("created table {schema}.{}", object.name));
                    }
                    (_, false) => {
                        let (added, differs) = evolve(&mut tx, &schema, object, &found).await?;
                        done.extend(added);
                        drift.extend(differs);
                    }
                }
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            let summary = if done.is_empty() { format!("schema {schema} is as declared") } else { done.join(", ") };
            Ok(Provisioned { summary, drift })
        })
    }

    fn cleanup_one<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let mut tx = self.begin().await?;
            mark::lock(&mut tx, &call.installation, &schema).await?;
            // What is not this resource's port was never touched: nothing of it is left.
            let Standing::Ours(found) = mark::standing(&mut tx, &schema, record, call).await? else {
                return Ok(Vec::new());
            };
            mark::fenced(found.as_ref(), &schema, call)?;
            mark::write(&mut tx, &schema, record, call, found.as_ref()).await?;
            let place = |table: Option<&str>| place(&schema, table, record, call);
            if self.config.deletion_policy == DeletionPolicy::Retain {
                tx.commit().await.map_err(|e| e.to_string())?;
                let note = format!(
                    "schema {schema} on {}/{} (the retain policy keeps it)",
                    self.config.host, self.config.database
                );
                return Ok(vec![Leftover { place: place(None), note, purgeable: true }]);
            }
            let mut kept = Vec::new();
            for object in contract.objects() {
                let name =
                    object.physical_name.clone().filter(|p| !p.contains('.')).unwrap_or_else(|| object.name.clone());
                let view = "SELECT format('DROP VIEW %I.%I', $1, $2) \
                            WHERE EXISTS (SELECT 1 FROM pg_views WHERE schemaname = $1 AND viewname = $2)";
                run(&mut tx, view, &[&schema, &name]).await?;
            }
            for object in contract.objects() {
                let name =
                    object.physical_name.clone().filter(|p| !p.contains('.')).unwrap_or_else(|| object.name.clone());
                if !is_table(&mut tx, &schema, &name).await? {
                    continue;
                }
                if has_rows(&mut tx, &schema, &name).await? {
                    let note = format!("table {schema}.{name} (it holds data: purge it to drop it)");
                    kept.push(Leftover { place: place(Some(&name)), note, purgeable: true });
                } else {
                    run(&mut tx, "SELECT format('DROP TABLE %I.%I', $1, $2)", &[&schema, &name]).await?;
                }
            }
            let left = relations_in(&mut tx, &schema).await?;
            if left == 0 {
                run(&mut tx, "SELECT format('DROP SCHEMA %I', $1)", &[&schema]).await?;
            } else if kept.is_empty() {
                let note = format!("schema {schema} (it holds {left} object(s) the contract does not declare)");
                kept.push(Leftover { place: place(None), note, purgeable: true });
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(kept)
        })
    }
}

/// How many relations `schema` holds.
async fn relations_in(conn: &mut sqlx::PgConnection, schema: &str) -> Result<i64, String> {
    sqlx::query("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1")
        .bind(schema.to_string())
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())
}

/// The `postgres` block type.
impl BlockType for PostgresConfig {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems: Vec<(&'static str, String)> =
            [("host", &self.host), ("database", &self.database), ("user", &self.user)]
                .into_iter()
                .filter(|(_, value)| value.trim().is_empty())
                .map(|(key, _)| (key, format!("`{key}` must not be empty")))
                .collect();
        if self.port == 0 {
            problems.push(("port", "`port` must be between 1 and 65535".into()));
        }
        problems
    }

    fn takes(&self, server_type: &str) -> bool {
        matches!(server_type, "postgres" | "postgresql")
    }

    fn foreign_endpoint(&self, server: &Server) -> Option<(&'static str, String, String)> {
        if let Some(host) = server.host.as_ref().filter(|h| **h != self.host) {
            return Some(("host", host.clone(), self.host.clone()));
        }
        if let Some(port) = server.port.filter(|p| *p != i64::from(self.port)) {
            return Some(("port", port.to_string(), self.port.to_string()));
        }
        let database = server.database.as_ref().filter(|d| **d != self.database)?;
        Some(("database", database.clone(), self.database.clone()))
    }

    fn build(&self, name: &str, platform: &Arc<Platform>, _base: &Path) -> Result<Built, String> {
        Ok(Built::Storage(Arc::new(Storage(PostgresBlock::new(name, self, Arc::clone(platform))?))))
    }

    fn describe(&self) -> serde_json::Value {
        describe(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl ServerStorage for PostgresBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn provision_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Provisioned>> {
        self.provision_one(record, contract, server, call)
    }

    fn cleanup_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<Vec<Leftover>>> {
        self.cleanup_one(record, contract, server, call)
    }

    fn sync_server_access<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        access: &'a AccessSync,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<AccessReport>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let objects = declared(contract)?;
            let port = access::Port {
                schema: &schema,
                objects: objects.into_iter().map(|o| o.name).collect(),
                contract: &record.name,
                revoke_unexplained: self.config.revoke_unexplained,
            };
            let mut tx = self.begin().await?;
            mark::lock(&mut tx, &call.installation, &schema).await?;
            let found = match mark::standing(&mut tx, &schema, record, call).await? {
                // Not provisioned (yet): no privilege of this port can exist.
                Standing::Absent => return Ok(AccessReport::of(meshplane_core::access::Enforcement::Enforced)),
                Standing::Foreign(why) => return Err(BlockError::Permanent(why)),
                Standing::Ours(found) => found,
            };
            mark::fenced(found.as_ref(), &schema, call)?;
            mark::write(&mut tx, &schema, record, call, found.as_ref()).await?;
            let report = access::sync(&mut tx, &port, access).await?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(report)
        })
    }

    fn test_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
        valid_for: Duration,
        call: &'a Call,
    ) -> BlockFuture<'a, BlockResult<TestTarget>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let objects = Self::objects(contract, &schema)?;
            let mut tx = self.begin().await?;
            mark::lock(&mut tx, &call.installation, &schema).await?;
            match mark::standing(&mut tx, &schema, record, call).await? {
                Standing::Ours(_) => {}
                Standing::Foreign(why) => return Err(BlockError::Permanent(why)),
                Standing::Absent => {
                    return Err(format!("schema {schema} does not exist yet: the port is not provisioned").into());
                }
            }
            let existing = sql::relations(&mut tx, &schema).await?;
            let relations: Vec<String> = objects.into_iter().map(|o| o.name).filter(|n| existing.contains(n)).collect();
            let (user, password) = sandbox::create(&mut tx, &call.installation, &schema, &relations, valid_for).await?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(TestTarget::Postgres {
                host: self.config.host.clone(),
                port: self.config.port,
                database: self.config.database.clone(),
                schema,
                user,
                password,
                tls: Tls {
                    mode: match self.config.tls.mode {
                        TlsMode::Disable => "disable".into(),
                        TlsMode::VerifyFull => "verify-full".into(),
                    },
                    root_cert: self.config.tls.root_cert.as_ref().map(|p| p.display().to_string()),
                },
            })
        })
    }

    fn end_test_server<'a>(&'a self, target: &'a TestTarget, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async move {
            let TestTarget::Postgres { user, .. } = target else { return Ok(()) };
            if !user.starts_with(&sandbox::prefix(&call.installation)) {
                let why = format!("`{user}` is not a test login of this installation; it is left alone");
                return Err(BlockError::Permanent(why));
            }
            let mut conn = self.pool.acquire().await.map_err(|e| format!("cannot reach {}: {e}", self.config.host))?;
            Ok(sandbox::drop(&mut conn, user).await?)
        })
    }

    fn create_login<'a>(&'a self, installation: &'a str, account: &'a str) -> BlockFuture<'a, BlockResult<Login>> {
        Box::pin(async move {
            let mut tx = self.begin().await?;
            let login = access::create_login(&mut tx, installation, account).await?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(login)
        })
    }

    fn health_check(&self) -> BlockFuture<'_, Result<(), String>> {
        Box::pin(async { self.pool.execute("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn purge_place<'a>(&'a self, place: &'a str, call: &'a Call) -> BlockFuture<'a, BlockResult<()>> {
        Box::pin(async move {
            let at: serde_json::Value = serde_json::from_str(place)
                .map_err(|e| BlockError::Permanent(format!("`{place}` is not a place of this block: {e}")))?;
            let schema = at["schema"].as_str().ok_or_else(|| format!("`{place}` names no schema"))?.to_string();
            let mut tx = self.begin().await?;
            mark::lock(&mut tx, &call.installation, &schema).await?;
            if !schema_exists(&mut tx, &schema).await? {
                return Ok(());
            }
            let comment = sql::schema_comment(&mut tx, &schema).await?.unwrap_or_default();
            let left_by = |key: &str| at[key].as_str().unwrap_or_default().to_string();
            let still_left = match Mark::parse(&comment) {
                Some(mark) => {
                    mark.installation == call.installation
                        && mark.domain == left_by("domain")
                        && mark.contract == left_by("contract")
                        && mark.uid == left_by("uid")
                }
                // A place an earlier release left: purged while the schema still has that release's mark.
                None => at.get("uid").is_none() && comment.starts_with("meshplane: output port of contract "),
            };
            if !still_left {
                return Err(BlockError::Permanent(format!(
                    "schema {schema} is not what was left there (meshplane did not create it, or a newer resource \
                     uses it now); it is not purged"
                )));
            }
            match at["table"].as_str() {
                Some(table) => {
                    run(&mut tx, "SELECT format('DROP TABLE IF EXISTS %I.%I', $1, $2)", &[&schema, table]).await?;
                    if relations_in(&mut tx, &schema).await? == 0 {
                        run(&mut tx, "SELECT format('DROP SCHEMA %I', $1)", &[&schema]).await?;
                    }
                }
                None => run(&mut tx, "SELECT format('DROP SCHEMA %I CASCADE', $1)", &[&schema]).await?,
            }
            tx.commit().await.map_err(|e| BlockError::Transient(e.to_string()))
        })
    }
}

/// The tables and views a contract declares, or why one of them cannot be made (for good).
fn declared(contract: &DataContract) -> BlockResult<Vec<Object>> {
    contract.objects().iter().map(|o| Object::of(o).map_err(BlockError::Permanent)).collect()
}

/// How a cleanup names what it left, for a purge to find it again and make sure it is still
/// what this resource left.
fn place(schema: &str, table: Option<&str>, record: &Record, call: &Call) -> String {
    let mark = Mark::of(record, call);
    serde_json::json!({ "schema": schema, "table": table, "domain": mark.domain, "contract": mark.contract, "uid": mark.uid })
        .to_string()
}

/// `orders@v2` → `orders_v2`: lower case letters, digits and `_`, at most 63 bytes.
pub fn default_schema(name: &str) -> String {
    let cleaned: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    cleaned.chars().take(MAX_IDENTIFIER).collect()
}

fn identifier(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER || name.contains('\0') {
        return Err(format!(
            "`{}` cannot be a PostgreSQL name (1 to {MAX_IDENTIFIER} bytes, no NUL)",
            name.escape_debug()
        ));
    }
    Ok(())
}

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
//! - A schema meshplane creates carries a comment naming the contract. Cleanup follows the
//!   deletion policy: `retain` leaves everything and reports it; `delete` drops, in a schema
//!   meshplane created, the declared views and the declared tables that hold no rows, then the
//!   schema if nothing else is in it. A table that holds data is never dropped by a cleanup:
//!   it is reported as left in place.

use std::sync::Arc;
use std::time::Duration;

use meshplane_core::block::{BlockFuture, Leftover, Provisioned};
use meshplane_core::store::Record;
use meshplane_spec::model::odcs::{DataContract, Property, SchemaObject};
use meshplane_spec::model::server::Server;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, PgConnection, Row};

use crate::platform::{DeletionPolicy, Platform, PostgresConfig};
use crate::storage::ServerStorage;

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
        if let Some(secret) = &config.password {
            options = options.password(&secret.resolve().map_err(|e| format!("block `{name}`: password: {e}"))?);
        }
        let pool =
            PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(5)).connect_lazy_with(options);
        Ok(PostgresBlock { name: name.to_string(), config: config.clone(), platform, pool })
    }

    /// The server's endpoint must be this block's; the schema is the server's or meshplane's.
    fn schema_of(&self, server: &Server, record: &Record) -> Result<String, String> {
        let differs = |field: &str, theirs: String, ours: String| {
            format!("server `{}`: {field} {theirs} is not block `{}`'s ({ours})", server.server, self.name)
        };
        if let Some(host) = server.host.as_ref().filter(|h| **h != self.config.host) {
            return Err(differs("host", host.clone(), self.config.host.clone()));
        }
        if let Some(port) = server.port.filter(|p| *p != i64::from(self.config.port)) {
            return Err(differs("port", port.to_string(), self.config.port.to_string()));
        }
        if let Some(db) = server.database.as_ref().filter(|d| **d != self.config.database) {
            return Err(differs("database", db.clone(), self.config.database.clone()));
        }
        let schema = server.schema.clone().unwrap_or_else(|| default_schema(&record.name));
        identifier(&schema)?;
        Ok(schema)
    }

    fn provision_one<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
    ) -> BlockFuture<'a, Result<Provisioned, String>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let objects: Vec<Object> = contract.objects().iter().map(Object::of).collect::<Result<_, _>>()?;
            let mut tx = self.pool.begin().await.map_err(|e| format!("cannot reach {}: {e}", self.config.host))?;
            let mut done = Vec::new();
            let mut drift = Vec::new();
            if !schema_exists(&mut tx, &schema).await? {
                run(&mut tx, "SELECT format('CREATE SCHEMA %I', $1)", &[&schema]).await?;
                run(&mut tx, "SELECT format('COMMENT ON SCHEMA %I IS %L', $1, $2)", &[&schema, &marker(record)])
                    .await?;
                done.push(format!("created schema {schema}"));
            }
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
    ) -> BlockFuture<'a, Result<Vec<Leftover>, String>> {
        Box::pin(async move {
            let schema = self.schema_of(server, record)?;
            let mut conn = self.pool.acquire().await.map_err(|e| format!("cannot reach {}: {e}", self.config.host))?;
            if !schema_exists(&mut conn, &schema).await? {
                return Ok(Vec::new());
            }
            let ours = schema_comment(&mut conn, &schema).await?.as_deref() == Some(marker(record).as_str());
            if self.config.deletion_policy == DeletionPolicy::Retain || !ours {
                let why = if ours { "the retain policy keeps it" } else { "meshplane did not create it" };
                let note = format!("schema {schema} on {}/{} ({why})", self.config.host, self.config.database);
                return Ok(vec![Leftover { place: place(&schema, None), note, purgeable: ours }]);
            }
            let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
            let mut kept = Vec::new();
            for object in contract.objects() {
                let name =
                    object.physical_name.clone().filter(|p| !p.contains('.')).unwrap_or_else(|| object.name.clone());
                let view = "SELECT format('DROP VIEW %I.%I', $1, $2) \
                            WHERE EXISTS (SELECT 1 FROM pg_views WHERE schemaname = $1 AND viewname = $2)";
                run(&mut tx, view, &[&schema, &name]).await?;
                if !is_table(&mut tx, &schema, &name).await? {
                    continue;
                }
                if has_rows(&mut tx, &schema, &name).await? {
                    let note = format!("table {schema}.{name} (it holds data: purge it to drop it)");
                    kept.push(Leftover { place: place(&schema, Some(&name)), note, purgeable: true });
                } else {
                    run(&mut tx, "SELECT format('DROP TABLE %I.%I', $1, $2)", &[&schema, &name]).await?;
                }
            }
            let left: i64 = sqlx::query(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            )
            .bind(schema.clone())
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| e.to_string())?;
            if left == 0 {
                run(&mut tx, "SELECT format('DROP SCHEMA %I', $1)", &[&schema]).await?;
            } else if kept.is_empty() {
                let note = format!("schema {schema} (it holds {left} object(s) the contract does not declare)");
                kept.push(Leftover { place: place(&schema, None), note, purgeable: true });
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(kept)
        })
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
    ) -> BlockFuture<'a, Result<Provisioned, String>> {
        self.provision_one(record, contract, server)
    }

    fn cleanup_server<'a>(
        &'a self,
        record: &'a Record,
        contract: &'a DataContract,
        server: &'a Server,
    ) -> BlockFuture<'a, Result<Vec<Leftover>, String>> {
        self.cleanup_one(record, contract, server)
    }

    fn health_check(&self) -> BlockFuture<'_, Result<(), String>> {
        Box::pin(async { self.pool.execute("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn purge_place<'a>(&'a self, place: &'a str) -> BlockFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let at: serde_json::Value =
                serde_json::from_str(place).map_err(|e| format!("`{place}` is not a place of this block: {e}"))?;
            let schema = at["schema"].as_str().ok_or_else(|| format!("`{place}` names no schema"))?.to_string();
            let mut tx = self.pool.begin().await.map_err(|e| format!("cannot reach {}: {e}", self.config.host))?;
            if !schema_exists(&mut tx, &schema).await? {
                return Ok(());
            }
            let comment = schema_comment(&mut tx, &schema).await?.unwrap_or_default();
            if !comment.starts_with(MARKER) {
                return Err(format!("schema {schema} was not created by meshplane; it is not purged"));
            }
            match at["table"].as_str() {
                Some(table) => {
                    run(&mut tx, "SELECT format('DROP TABLE IF EXISTS %I.%I', $1, $2)", &[&schema, table]).await?;
                    let empty = "SELECT format('DROP SCHEMA %I', $1) WHERE NOT EXISTS (SELECT 1 FROM pg_class c \
                                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)";
                    run(&mut tx, empty, &[&schema]).await?;
                }
                None => run(&mut tx, "SELECT format('DROP SCHEMA %I CASCADE', $1)", &[&schema]).await?,
            }
            tx.commit().await.map_err(|e| e.to_string())
        })
    }
}

/// How a cleanup names what it left, for a purge to find it again.
fn place(schema: &str, table: Option<&str>) -> String {
    serde_json::json!({ "schema": schema, "table": table }).to_string()
}

/// `orders@v2` → `orders_v2`: lower case letters, digits and `_`, at most 63 bytes.
pub fn default_schema(name: &str) -> String {
    let cleaned: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    cleaned.chars().take(MAX_IDENTIFIER).collect()
}

/// How the comment of a schema meshplane created begins.
const MARKER: &str = "meshplane: output port of contract ";

fn marker(record: &Record) -> String {
    format!("{MARKER}{}", record.name)
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

/// One declared column.
struct Column {
    name: String,
    /// The type as PostgreSQL's `format_type` writes it (from the allow-list only).
    sql_type: String,
    not_null: bool,
    unique: bool,
    comment: Option<String>,
}

/// One declared table, or view over `source` (`schema.table`).
struct Object {
    name: String,
    source: Option<(String, String)>,
    columns: Vec<Column>,
    primary_key: Vec<String>,
    comment: Option<String>,
}

impl Object {
    fn of(object: &SchemaObject) -> Result<Object, String> {
        let (name, source) = match object.physical_name.as_deref().and_then(|p| p.split_once('.')) {
            Some((schema, table)) => (object.name.clone(), Some((schema.to_string(), table.to_string()))),
            None => (object.physical_name.clone().unwrap_or_else(|| object.name.clone()), None),
        };
        identifier(&name)?;
        let mut keyed: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        for p in object.properties() {
            let column = p.physical_name.clone().unwrap_or_else(|| p.name.clone());
            identifier(&column)?;
            let primary = p.primary_key == Some(true);
            if primary {
                keyed.push((p.primary_key_position.unwrap_or(i64::MAX), column.clone()));
            }
            columns.push(Column {
                sql_type: sql_type(p).map_err(|e| format!("{}.{}: {e}", object.name, p.name))?,
                not_null: primary || p.required == Some(true),
                unique: p.unique == Some(true) && !primary,
                comment: p.description.clone(),
                name: column,
            });
        }
        keyed.sort();
        Ok(Object {
            name,
            source,
            columns,
            primary_key: keyed.into_iter().map(|(_, c)| c).collect(),
            comment: object.description.clone(),
        })
    }
}

/// The PostgreSQL types meshplane creates from a `physicalType`, by spelling; each maps to
/// how `format_type` writes it. A length or precision in parentheses is kept.
const PHYSICAL: &[(&str, &str)] = &[
    ("smallint", "smallint"),
    ("int2", "smallint"),
    ("integer", "integer"),
    ("int", "integer"),
    ("int4", "integer"),
    ("bigint", "bigint"),
    ("int8", "bigint"),
    ("real", "real"),
    ("float4", "real"),
    ("double precision", "double precision"),
    ("float8", "double precision"),
    ("numeric", "numeric"),
    ("decimal", "numeric"),
    ("boolean", "boolean"),
    ("bool", "boolean"),
    ("text", "text"),
    ("varchar", "character varying"),
    ("character varying", "character varying"),
    ("char", "character"),
    ("character", "character"),
    ("date", "date"),
    ("time", "time without time zone"),
    ("timestamp", "timestamp without time zone"),
    ("timestamp without time zone", "timestamp without time zone"),
    ("timestamptz", "timestamp with time zone"),
    ("timestamp with time zone", "timestamp with time zone"),
    ("uuid", "uuid"),
    ("json", "json"),
    ("jsonb", "jsonb"),
    ("bytea", "bytea"),
];

/// The column type of a property, as `format_type` writes it.
fn sql_type(p: &Property) -> Result<String, String> {
    if let Some(physical) = &p.physical_type {
        let text = physical.trim().to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        let (base, args) = match text.split_once('(') {
            Some((base, rest)) => (base.trim(), Some(rest.strip_suffix(')').unwrap_or("x"))),
            None => (text.as_str(), None),
        };
        let allowed: Vec<&str> = PHYSICAL.iter().map(|(spelling, _)| *spelling).collect();
        let unknown =
            || format!("physicalType `{physical}` is not one meshplane creates in PostgreSQL ({})", allowed.join(", "));
        let canonical = PHYSICAL.iter().find(|(spelling, _)| *spelling == base).map(|(_, c)| *c).ok_or_else(unknown)?;
        return match args {
            None => Ok(canonical.to_string()),
            Some(args) => {
                let numbers: Vec<u32> = args
                    .split(',')
                    .map(|a| a.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| unknown())?;
                match (canonical, numbers.as_slice()) {
                    ("numeric", [p]) => Ok(format!("numeric({p},0)")),
                    ("numeric", [p, s]) => Ok(format!("numeric({p},{s})")),
                    ("character varying" | "character", [n]) => Ok(format!("{canonical}({n})")),
                    _ => Err(unknown()),
                }
            }
        };
    }
    Ok(match p.logical_type.as_deref().unwrap_or("string") {
        "integer" => "bigint",
        "number" => "numeric",
        "boolean" => "boolean",
        "date" => "date",
        "timestamp" => "timestamp with time zone",
        "time" => "time without time zone",
        "object" | "array" => "jsonb",
        _ => "text",
    }
    .to_string())
}

/// Runs the statement that `format_sql` (a `SELECT format(...)` over `args`) builds; a
/// `format_sql` that selects no row runs nothing.
fn run<'a>(
    conn: &'a mut PgConnection,
    format_sql: &'a str,
    args: &'a [&'a str],
) -> BlockFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let mut query = sqlx::query(format_sql);
        for a in args {
            query = query.bind(a.to_string());
        }
        let Some(row) = conn.fetch_optional(query).await.map_err(|e| e.to_string())? else { return Ok(()) };
        let statement: String = row.try_get(0).map_err(|e| e.to_string())?;
        conn.execute(sqlx::raw_sql(&statement)).await.map_err(|e| format!("{e} (in: {statement})"))?;
        Ok(())
    })
}

async fn is_table(conn: &mut PgConnection, schema: &str, table: &str) -> Result<bool, String> {
    sqlx::query("SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2")
        .bind(schema.to_string())
        .bind(table.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(|e| e.to_string())
}

/// Whether `schema.table` holds at least one row.
async fn has_rows(conn: &mut PgConnection, schema: &str, table: &str) -> Result<bool, String> {
    let probe: String = sqlx::query("SELECT format('SELECT EXISTS (SELECT 1 FROM %I.%I)', $1, $2)")
        .bind(schema.to_string())
        .bind(table.to_string())
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())?;
    conn.fetch_one(sqlx::raw_sql(&probe)).await.and_then(|r| r.try_get(0)).map_err(|e| e.to_string())
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, String> {
    sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(|e| e.to_string())
}

async fn schema_comment(conn: &mut PgConnection, schema: &str) -> Result<Option<String>, String> {
    sqlx::query("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1")
        .bind(schema.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| e.to_string())?
        .map(|r| r.try_get::<Option<String>, _>(0).map_err(|e| e.to_string()))
        .transpose()
        .map(Option::flatten)
}

/// A live column: name, type as `format_type` writes it, NOT NULL.
type Live = (String, String, bool);

/// The live columns of `schema.table` (none when it does not exist).
async fn columns(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Vec<Live>, String> {
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(schema.to_string())
    .bind(table.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| e.to_string())
}

async fn create_table(conn: &mut PgConnection, schema: &str, object: &Object) -> Result<(), String> {
    let mut names = vec![schema.to_string(), object.name.clone()];
    let mut parts = Vec::new();
    for c in &object.columns {
        names.push(c.name.clone());
        let mut part = format!("%{}$I {}", names.len(), c.sql_type);
        if c.not_null {
            part.push_str(" NOT NULL");
        }
        if c.unique {
            part.push_str(" UNIQUE");
        }
        parts.push(part);
    }
    if !object.primary_key.is_empty() {
        let keys: Vec<String> = object
            .primary_key
            .iter()
            .map(|k| {
                names.push(k.clone());
                format!("%{}$I", names.len())
            })
            .collect();
        parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    let template = format!("CREATE TABLE %1$I.%2$I ({})", parts.join(", "));
    let binds: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT format('{}', {})", template.replace('\'', "''"), binds.join(", "));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    run(conn, &sql, &refs).await?;
    comments(conn, schema, object, "TABLE").await
}

async fn create_view(
    conn: &mut PgConnection,
    schema: &str,
    object: &Object,
    source: &(String, String),
) -> Result<(), String> {
    if columns(conn, &source.0, &source.1).await?.is_empty() {
        return Err(format!("{}: physicalName `{}.{}` names no existing table", object.name, source.0, source.1));
    }
    let mut names = vec![schema.to_string(), object.name.clone(), source.0.clone(), source.1.clone()];
    let mut selected = Vec::new();
    for c in &object.columns {
        names.push(c.name.clone());
        selected.push(format!("%{}$I", names.len()));
    }
    let template = format!("CREATE VIEW %1$I.%2$I AS SELECT {} FROM %3$I.%4$I", selected.join(", "));
    let binds: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT format('{}', {})", template, binds.join(", "));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    run(conn, &sql, &refs).await?;
    comments(conn, schema, object, "VIEW").await
}

async fn comments(conn: &mut PgConnection, schema: &str, object: &Object, what: &str) -> Result<(), String> {
    if let Some(text) = &object.comment {
        let sql = format!("SELECT format('COMMENT ON {what} %I.%I IS %L', $1, $2, $3)");
        run(conn, &sql, &[schema, &object.name, text]).await?;
    }
    for c in &object.columns {
        if let Some(text) = &c.comment {
            run(
                conn,
                "SELECT format('COMMENT ON COLUMN %I.%I.%I IS %L', $1, $2, $3, $4)",
                &[schema, &object.name, &c.name, text],
            )
            .await?;
        }
    }
    Ok(())
}

/// Adds the declared optional columns that are missing; returns what it added and the drift.
async fn evolve(
    conn: &mut PgConnection,
    schema: &str,
    object: &Object,
    live: &[Live],
) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut added, mut drift) = (Vec::new(), Vec::new());
    let at = format!("{schema}.{}", object.name);
    for c in &object.columns {
        match live.iter().find(|(name, ..)| *name == c.name) {
            None if object.source.is_none() && !c.not_null && !c.unique => {
                let sql = format!("SELECT format('ALTER TABLE %I.%I ADD COLUMN %I {}', $1, $2, $3)", c.sql_type);
                run(conn, &sql, &[schema, &object.name, &c.name]).await?;
                added.push(format!("added column {at}.{}", c.name));
            }
            None => drift
                .push(format!("{at}: column `{}` is missing (not added: it is required, unique or in a view)", c.name)),
            Some((_, live_type, _)) if *live_type != c.sql_type => {
                drift.push(format!("{at}: column `{}` is {live_type}, declared {}", c.name, c.sql_type));
            }
            Some((_, _, false)) if c.not_null && object.source.is_none() => {
                drift.push(format!("{at}: column `{}` accepts nulls, declared required", c.name));
            }
            Some(_) => {}
        }
    }
    for (name, ..) in live {
        if !object.columns.iter().any(|c| c.name == *name) {
            drift.push(format!("{at}: column `{name}` is not declared"));
        }
    }
    Ok((added, drift))
}

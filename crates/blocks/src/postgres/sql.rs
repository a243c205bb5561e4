//! The statements of the PostgreSQL block and its reads of the live catalog. Every name and
//! literal reaches PostgreSQL through `format('%I', '%L')`; a type only from the allow-list.

use meshplane_core::block::BlockFuture;
use sqlx::{Executor, PgConnection, Row};

use super::model::Object;

/// Runs the statement that `format_sql` (a `SELECT format(...)` over `args`) builds; a
/// `format_sql` that selects no row runs nothing.
pub(super) fn run<'a>(
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

pub(super) async fn is_table(conn: &mut PgConnection, schema: &str, table: &str) -> Result<bool, String> {
    sqlx::query("SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2")
        .bind(schema.to_string())
        .bind(table.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(|e| e.to_string())
}

/// Whether `schema.table` holds at least one row.
pub(super) async fn has_rows(conn: &mut PgConnection, schema: &str, table: &str) -> Result<bool, String> {
    let probe: String = sqlx::query("SELECT format('SELECT EXISTS (SELECT 1 FROM %I.%I)', $1, $2)")
        .bind(schema.to_string())
        .bind(table.to_string())
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())?;
    conn.fetch_one(sqlx::raw_sql(&probe)).await.and_then(|r| r.try_get(0)).map_err(|e| e.to_string())
}

pub(super) async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, String> {
    sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(|e| e.to_string())
}

pub(super) async fn schema_comment(conn: &mut PgConnection, schema: &str) -> Result<Option<String>, String> {
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
pub(super) type Live = (String, String, bool);

/// The live columns of `schema.table` (none when it does not exist).
pub(super) async fn columns(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Vec<Live>, String> {
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

pub(super) async fn create_table(conn: &mut PgConnection, schema: &str, object: &Object) -> Result<(), String> {
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

pub(super) async fn create_view(
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

pub(super) async fn comments(conn: &mut PgConnection, schema: &str, object: &Object, what: &str) -> Result<(), String> {
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
pub(super) async fn evolve(
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

/// The relations (tables, views, materialized views, partitioned and foreign tables) of
/// `schema`, by name.
pub(super) async fn relations(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, String> {
    let rows = sqlx::query(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
    )
    .bind(schema.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(|e| e.to_string())
}

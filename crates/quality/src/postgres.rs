//! The PostgreSQL executor: every metric of one object in one pushed-down statement, and a
//! contract's SQL sandboxed.
//!
//! The metrics statement is built by meshplane: identifiers are quoted, literals escaped,
//! patterns translated to PostgreSQL's dialect. Duplicates are scalar subqueries of the same
//! statement, so the database answers everything about an object in one round trip.
//!
//! A contract's SQL is first read by [`crate::guard`] (one query over the contract's own
//! tables, allowed functions only), then runs in a read-only transaction with a statement
//! timeout, through the extended protocol (one statement only), wrapped as a subquery. In
//! the server the whole connection logs in as a role the PostgreSQL block made for the run,
//! which may read the port and nothing else (`sandboxed`); the standalone `meshplane test`,
//! connected with the user's own credentials, runs the SQL as a role made for the run that
//! may read the contract's own tables and nothing else, dropped when the source is closed.
//! Sample queries run read-only under the same timeout.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::Value as Any;
use tokio_postgres::{Client, NoTls, Row};

use crate::kernel::Measured;
use crate::plan::{Measure, Validity, lead_partners};
use crate::regex::{Dialect, translate};
use crate::source::{Ask, ColumnKind, Scan, Source};

/// How a PostgreSQL connection is protected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Not encrypted.
    #[default]
    Disable,
    /// Encrypted; the server's certificate is verified against `root_cert` (a PEM file; the
    /// system's roots when none is given) and its name against the host.
    VerifyFull { root_cert: Option<std::path::PathBuf> },
}

/// The client TLS configuration that verifies a server fully.
fn verifying(root_cert: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match root_cert {
        Some(path) => CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the root certificate {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read the root certificate {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    for certificate in certificates {
        roots.add(certificate).map_err(|e| format!("a root certificate is not usable: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connection settings of a `postgres` server.
#[derive(Clone, Debug)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    pub schema: String,
    /// The login itself is the run's sandbox (made by the PostgreSQL block): SQL runs as it.
    pub sandboxed: bool,
    pub tls: Tls,
}

pub struct PgSource {
    client: Client,
    schema: String,
    /// Columns and types of each table read so far.
    types: HashMap<String, Vec<(String, String)>>,
    /// The rows PostgreSQL estimates each table read so far holds (`reltuples` of a table or
    /// materialized view; negative when never analyzed, or for a view).
    estimates: HashMap<String, f64>,
    /// The tables SQL rules may read.
    tables: Vec<String>,
    /// The role SQL rules run as: made for the run (`Some` once made), or the login itself.
    sandbox: Option<String>,
    sandboxed: bool,
    pub sql_timeout: Duration,
}

/// Tables estimated to hold fewer rows are measured with PostgreSQL's JIT off.
const JIT_PAYS_FROM_ROWS: f64 = 5_000_000.0;

/// `"name"`, with inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with inner quotes doubled (standard_conforming_strings is on since 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn number(x: f64) -> Result<String, String> {
    if x.is_finite() { Ok(format!("{x}")) } else { Err(format!("{x} is not a finite number")) }
}

impl PgSource {
    /// Connects; `tables` are the contract's objects, the only ones its SQL may read.
    pub async fn connect(c: &Connection, tables: Vec<String>) -> Result<PgSource, String> {
        let mut config = tokio_postgres::Config::new();
        config.host(&c.host).port(c.port).dbname(&c.database).user(&c.user).application_name("meshplane test");
        if let Some(p) = &c.password {
            config.password(p);
        }
        config.connect_timeout(Duration::from_secs(10));
        let failed = |e: tokio_postgres::Error| {
            // The server's own message, or the error with its causes (a TLS handshake's).
            let why = match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => {
                    let mut why = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(inner) = cause {
                        why.push_str(&format!(": {inner}"));
                        cause = inner.source();
                    }
                    why
                }
            };
            format!("cannot connect to postgres://{}:{}/{}: {why}", c.host, c.port, c.database)
        };
        let client = match &c.tls {
            Tls::Disable => {
                let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(connection);
                client
            }
            Tls::VerifyFull { root_cert } => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(verifying(root_cert.as_deref())?);
                let (client, connection) = config.connect(tls).await.map_err(failed)?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(PgSource {
            client,
            schema: c.schema.clone(),
            types: HashMap::new(),
            estimates: HashMap::new(),
            tables,
            sandbox: None,
            sandboxed: c.sandboxed,
            sql_timeout: Duration::from_secs(30),
        })
    }

    fn relation(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(table))
    }

    fn column_type(&self, table: &str, column: &str) -> &str {
        self.types.get(table).and_then(|cols| cols.iter().find(|(c, _)| c == column)).map_or("text", |(_, t)| t)
    }

    fn is_numeric(&self, table: &str, column: &str) -> bool {
        let t = self.column_type(table, column);
        ["smallint", "integer", "bigint", "numeric", "real", "double precision"].iter().any(|n| t.starts_with(n))
    }

    /// The SQL of one value set membership on a column.
    fn one_of(&self, table: &str, column: &str, values: &[Any]) -> Result<String, String> {
        let col = ident(column);
        if self.is_numeric(table, column) {
            let nums: Vec<String> = values
                .iter()
                .filter_map(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
                .map(number)
                .collect::<Result<_, _>>()?;
            return Ok(if nums.is_empty() { "false".into() } else { format!("{col} IN ({})", nums.join(", ")) });
        }
        let texts: Vec<String> = values
            .iter()
            .map(|v| {
                literal(&match v {
                    Any::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })
            .collect();
        Ok(if texts.is_empty() { "false".into() } else { format!("{col}::text IN ({})", texts.join(", ")) })
    }

    /// The predicate that selects the rows a counting measure counts.
    fn predicate(&self, table: &str, m: &Measure) -> Result<String, String> {
        match m {
            Measure::Missing { column, values } if values.is_empty() => Ok(format!("{} IS NULL", ident(column))),
            Measure::Missing { column, values } => {
                Ok(format!("({} IS NULL OR {})", ident(column), self.one_of(table, column, values)?))
            }
            Measure::Invalid { column, rules } => {
                let col = ident(column);
                let mut valid = Vec::new();
                for rule in rules {
                    let numeric = || {
                        if self.is_numeric(table, column) {
                            Ok(())
                        } else {
                            Err("a numeric bound applies to a numeric column".to_string())
                        }
                    };
                    valid.push(match rule {
                        Validity::OneOf(values) => self.one_of(table, column, values)?,
                        Validity::Pattern(p) => format!("{col}::text ~ {}", literal(&translate(p, Dialect::Postgres)?)),
                        Validity::MinLength(n) => format!("char_length({col}::text) >= {n}"),
                        Validity::MaxLength(n) => format!("char_length({col}::text) <= {n}"),
                        Validity::Minimum(x) => numeric().and_then(|_| Ok(format!("{col} >= {}", number(*x)?)))?,
                        Validity::Maximum(x) => numeric().and_then(|_| Ok(format!("{col} <= {}", number(*x)?)))?,
                        Validity::ExclusiveMinimum(x) => {
                            numeric().and_then(|_| Ok(format!("{col} > {}", number(*x)?)))?
                        }
                        Validity::ExclusiveMaximum(x) => {
                            numeric().and_then(|_| Ok(format!("{col} < {}", number(*x)?)))?
                        }
                    });
                }
                Ok(format!("({col} IS NOT NULL AND NOT ({}))", valid.join(" AND ")))
            }
            other => Err(format!("{other:?} is not a row predicate")),
        }
    }

    /// The duplicated keys of `columns` (rows with a null in the key hold no key). With
    /// `repeated_leads` (a query naming the key's first column), only among the rows whose
    /// lead it lists: only those rows can repeat a composite key whose lead repeats, and
    /// grouping them is far cheaper than grouping every row again.
    fn duplicates(&self, table: &str, columns: &[String], repeated_leads: Option<&str>) -> String {
        let cols: Vec<String> = columns.iter().map(|c| format!("t.{}", ident(c))).collect();
        let mut filters: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        if let Some(leads) = repeated_leads {
            filters.push(format!("{} IN (SELECT {} FROM {leads})", cols[0], ident(&columns[0])));
        }
        format!(
            "SELECT {} FROM {} AS t WHERE {} GROUP BY {} HAVING count(*) > 1",
            cols.join(", "),
            self.relation(table),
            filters.join(" AND "),
            cols.join(", ")
        )
    }

    /// The SQL expression of one measure in the metrics statement.
    fn expression(&self, table: &str, m: &Measure) -> Result<String, String> {
        match m {
            Measure::Missing { .. } | Measure::Invalid { .. } => {
                Ok(format!("count(*) FILTER (WHERE {})::float8", self.predicate(table, m)?))
            }
            Measure::Duplicates { columns } => {
                Ok(format!("(SELECT count(*) FROM ({}) AS d)::float8", self.duplicates(table, columns, None)))
            }
            Measure::NewestAge { column } | Measure::OldestAge { column } => {
                let t = self.column_type(table, column);
                if !(t.starts_with("timestamp") || t == "date") {
                    return Err(format!("the column is {t}, not a date or timestamp"));
                }
                let f = if matches!(m, Measure::NewestAge { .. }) { "max" } else { "min" };
                // A zoned timestamp is an instant; a timestamp without a zone (or a date) is read as UTC.
                let cast = if t == "timestamp with time zone" { "" } else { "::timestamp" };
                Ok(format!("(extract(epoch FROM {f}({}{cast})) * 1000000)::float8", ident(column)))
            }
            other => Err(format!("{other:?} is not measured by a scan")),
        }
    }

    async fn samples(&mut self, table: &str, m: &Measure, n: usize) -> Vec<String> {
        let sql = match m {
            Measure::Missing { column, .. } | Measure::Invalid { column, .. } => match self.predicate(table, m) {
                Ok(p) => format!("SELECT {}::text FROM {} WHERE {p} LIMIT {n}", ident(column), self.relation(table)),
                Err(_) => return vec![],
            },
            Measure::Duplicates { columns } => {
                let key: Vec<String> = columns.iter().map(|c| format!("{}::text", ident(c))).collect();
                format!(
                    "SELECT concat_ws(', ', {}) FROM ({}) AS d LIMIT {n}",
                    key.join(", "),
                    self.duplicates(table, columns, None)
                )
            }
            _ => return vec![],
        };
        let settings = format!("SET LOCAL statement_timeout = {};", self.sql_timeout.as_millis());
        match self.read_only(&settings, &sql).await {
            Ok(rows) => rows.iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "null".into())).collect(),
            Err(_) => vec![],
        }
    }

    /// Creates the run's sandbox role: it may read the contract's tables and nothing else.
    async fn sandbox(&mut self) -> Result<String, String> {
        if let Some(role) = &self.sandbox {
            return Ok(role.clone());
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let role = format!("meshplane_sql_{:x}_{}", nanos, std::process::id());
        let mut sql = format!("CREATE ROLE {} NOLOGIN; GRANT {} TO CURRENT_USER;", ident(&role), ident(&role));
        let _ = write!(sql, "GRANT USAGE ON SCHEMA {} TO {};", ident(&self.schema), ident(&role));
        for table in &self.tables {
            if self.types.contains_key(table) {
                let _ = write!(sql, "GRANT SELECT ON {} TO {};", self.relation(table), ident(&role));
            }
        }
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("cannot create the role SQL rules run as (it needs CREATEROLE): {e}"))?;
        self.sandbox = Some(role.clone());
        Ok(role)
    }

    /// Runs one query in a read-only transaction after `settings` (`SET LOCAL` statements),
    /// and rolls the transaction back.
    async fn read_only(&mut self, settings: &str, query: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        tx.batch_execute(&format!("SET TRANSACTION READ ONLY; {settings}")).await?;
        let rows = tx.query(query, &[]).await;
        let _ = tx.rollback().await;
        rows
    }

    /// Drops the sandbox role, if one was made.
    pub async fn close(mut self) -> Result<(), String> {
        if let Some(role) = self.sandbox.take() {
            let r = ident(&role);
            self.client
                .batch_execute(&format!("DROP OWNED BY {r}; DROP ROLE {r};"))
                .await
                .map_err(|e| format!("cannot drop the role {role}: {e}"))?;
        }
        Ok(())
    }
}

impl Source for PgSource {
    async fn columns(&mut self, table: &str) -> Result<Option<Vec<(String, ColumnKind)>>, String> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 CASE WHEN c.relkind IN ('r', 'm') THEN c.reltuples ELSE -1 END::float8 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','v','m','p','f') \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&self.schema, &table],
            )
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(None);
        }
        let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        self.estimates.insert(table.to_string(), rows[0].get(2));
        let out = cols.iter().map(|(n, t)| (n.clone(), ColumnKind::Postgres(t.clone()))).collect();
        self.types.insert(table.to_string(), cols);
        Ok(Some(out))
    }

    async fn scan(&mut self, table: &str, measures: &[Measure], ask: &Ask<'_>) -> Result<Scan, String> {
        // A lead counted alone and a composite key led by it: the lead's repeated values are
        // a common table expression, which the composite key joins.
        let leads = lead_partners(measures, &vec![true; measures.len()]);
        let mut with = Vec::new();
        let mut exprs: Vec<Result<String, String>> = measures.iter().map(|m| self.expression(table, m)).collect();
        for (i, j) in leads.iter().enumerate().filter_map(|(i, j)| Some((i, (*j)?))) {
            let Measure::Duplicates { columns } = &measures[i] else { continue };
            let cte = ident(&format!("repeated_leads_{j}"));
            with.push(format!("{cte} AS ({})", self.duplicates(table, &columns[..1], None)));
            exprs[j] = Ok(format!("(SELECT count(*) FROM {cte})::float8"));
            exprs[i] =
                Ok(format!("(SELECT count(*) FROM ({}) AS d)::float8", self.duplicates(table, columns, Some(&cte))));
        }
        let mut select = if with.is_empty() { String::new() } else { format!("WITH {} ", with.join(", ")) };
        select.push_str("SELECT count(*)::float8");
        for e in exprs.iter().flatten() {
            let _ = write!(select, ", {e}");
        }
        let _ = write!(select, " FROM {}", self.relation(table));
        // Below a few million rows, compiling the statement's hundred-odd expressions
        // (PostgreSQL's JIT, which its default costs turn on from about a hundred thousand
        // rows) costs more than it saves: 0.7 s of 3.8 s at a million rows, measured. Larger
        // tables keep the server's setting.
        let small = self.estimates.get(table).is_some_and(|&rows| (0.0..JIT_PAYS_FROM_ROWS).contains(&rows));
        let settings = if small { "SET LOCAL jit = off;" } else { "" };
        let found = self.read_only(settings, &select).await.map_err(|e| e.to_string())?;
        let row = found.first().ok_or("the metrics statement returned no row")?;
        let rows = row.get::<_, f64>(0) as u64;
        let mut column = 1;
        let mut results = Vec::new();
        for (m, e) in measures.iter().zip(exprs) {
            let value = match e {
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
                Ok(_) => {
                    column += 1;
                    row.get::<_, Option<f64>>(column - 1)
                }
            };
            let measured = match m {
                Measure::NewestAge { .. } | Measure::OldestAge { .. } => match value {
                    Some(ts) => Measured {
                        value: Some(((ask.now_micros as f64 - ts) / 1e6).floor()),
                        detail: Some(format!(
                            "{} value at {} s since the epoch",
                            if matches!(m, Measure::NewestAge { .. }) { "newest" } else { "oldest" },
                            (ts / 1e6).floor()
                        )),
                        samples: vec![],
                    },
                    None => {
                        Measured { value: None, detail: Some("the column holds no timestamp".into()), samples: vec![] }
                    }
                },
                _ => {
                    let samples = if ask.samples > 0 && value.is_some_and(|v| v > 0.0) {
                        self.samples(table, m, ask.samples).await
                    } else {
                        vec![]
                    };
                    let detail = None;
                    Measured { value, detail, samples }
                }
            };
            results.push(Ok(measured));
        }
        ask.progress.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        Ok(Scan { rows, results })
    }

    async fn sql(&mut self, query: &str) -> Result<f64, String> {
        let body = query.trim().trim_end_matches(';').trim_end();
        crate::guard::check(body, &self.tables, &self.schema)?;
        let timeout_ms = self.sql_timeout.as_millis();
        // The contract's tables are named as the contract names them: in the server's schema
        // (after the catalog, and never in `public`).
        let path = format!("SET LOCAL search_path = pg_catalog, {}, pg_temp;", ident(&self.schema));
        let settings = if self.sandboxed {
            format!("SET LOCAL statement_timeout = {timeout_ms}; {path}")
        } else {
            let role = self.sandbox().await?;
            format!("SET LOCAL statement_timeout = {timeout_ms}; {path} SET LOCAL ROLE {};", ident(&role))
        };
        // The extended protocol takes exactly one statement, and the subquery only a query.
        let wrapped = format!("SELECT to_jsonb(q.*)::text FROM ({body}\n) AS q LIMIT 1");
        let rows = self.read_only(&settings, &wrapped).await.map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        })?;
        let row = rows.first().ok_or("the query returned no rows")?;
        let json: Any = serde_json::from_str(&row.get::<_, String>(0)).map_err(|e| e.to_string())?;
        let first = json.as_object().and_then(|o| o.values().next().cloned()).unwrap_or(Any::Null);
        match first {
            Any::Number(n) => n.as_f64().ok_or_else(|| "the query returned a number out of range".into()),
            Any::Bool(b) => Ok(f64::from(u8::from(b))),
            Any::String(s) => s.trim().parse().map_err(|_| format!("the query returned `{s}`, not a number")),
            Any::Null => Err("the query returned null".into()),
            other => Err(format!("the query returned {other}, not a number")),
        }
    }

    fn quote(&self, identifier: &str) -> String {
        if self.tables.iter().any(|t| t == identifier) { self.relation(identifier) } else { ident(identifier) }
    }
}

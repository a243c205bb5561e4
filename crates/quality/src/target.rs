//! Binds a contract's server to an executor and runs a whole test: the one entry point the
//! CLI (and later the server) calls.
//!
//! A `local` server's `path` (or an `s3` server's `location`) may name one file, a directory
//! or a glob, and may hold `{object}` (or dcli's `{model}`), replaced by each object's
//! physical name. Without a placeholder, one object reads the path itself and several read
//! `<path>/<object>` (a directory) or `<path>/<object>.<format>`. A relative path is read from
//! `base` (the working directory, in the CLI and in the server alike). S3 credentials and region come from the usual
//! `AWS_*` environment variables, the endpoint from the server's `endpointUrl`.

use std::path::Path;

use serde::Serialize;

use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::model::server::Server;

use crate::files::{FileSource, Format, Location, S3Config};
use crate::plan::{Plan, compile};
use crate::postgres::{Connection, PgSource, Tls};
use crate::run::{CheckResult, Options, Outcome, run};
use crate::source::{ColumnKind, Source};

/// Why a test could not run at all (a check that fails is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{0}")]
    Server(String),
    #[error("the contract has no schema object `{0}`")]
    NoObject(String),
    #[error("{0}")]
    Connect(String),
}

/// Counts of each outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub error: usize,
    pub skipped: usize,
}

/// Everything a test run found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub contract: String,
    pub version: String,
    pub server: String,
    pub server_type: String,
    pub summary: Summary,
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Whether any check failed or could not run.
    pub fn failed(&self) -> bool {
        self.summary.fail > 0 || self.summary.error > 0
    }
}

/// The server to test: the one named, or the only one.
pub fn pick_server<'c>(contract: &'c DataContract, name: Option<&str>) -> Result<&'c Server, TestError> {
    let servers = contract.servers.as_deref().unwrap_or_default();
    let names = || servers.iter().map(|s| s.server.as_str()).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => servers
            .iter()
            .find(|s| s.server == n)
            .ok_or_else(|| TestError::Server(format!("the contract has no server `{n}` (it has: {})", names()))),
        None => match servers {
            [] => Err(TestError::Server("the contract names no server; add one to `servers`".into())),
            [only] => Ok(only),
            _ => Err(TestError::Server(format!(
                "the contract has several servers; pick one with --contract-server ({})",
                names()
            ))),
        },
    }
}

/// Where each object of `plan` is read from on a file server: (its table, its location).
/// Paths are as the contract gives them (templated, relative ones joined to `base`): whoever
/// reads them for someone else confines them first (the lake block does).
pub fn file_locations(server: &Server, plan: &Plan, base: &Path) -> Result<Vec<(String, Location)>, TestError> {
    let path = server.path.as_deref().or(server.location.as_deref()).ok_or_else(|| {
        TestError::Server(format!("server `{}` has no `path` or `location` for its files", server.server))
    })?;
    if path.contains("://") && !path.starts_with("s3://") {
        return Err(TestError::Server(format!("server `{}`: {path} is neither a local path nor s3://", server.server)));
    }
    let declared = server.format.as_deref().map(|f| {
        Format::parse(f).ok_or_else(|| TestError::Server(format!("format `{f}` is not one of parquet, csv, json")))
    });
    let declared = declared.transpose()?;
    let resolve = |p: String| {
        if Path::new(&p).is_absolute() || p.starts_with("s3://") {
            p
        } else {
            base.join(p).to_string_lossy().into_owned()
        }
    };
    let mut out = Vec::new();
    for object in &plan.objects {
        let templated = ["{object}", "{model}"].iter().any(|t| path.contains(t));
        let raw = if templated {
            path.replace("{object}", &object.table).replace("{model}", &object.table)
        } else if plan.objects.len() == 1 {
            path.to_string()
        } else {
            let dir = resolve(path.trim_end_matches('/').to_string());
            let as_dir = format!("{dir}/{}", object.table);
            if Path::new(&as_dir).is_dir() || dir.starts_with("s3://") {
                format!("{as_dir}/")
            } else {
                let ext = declared.map_or("parquet", |f| match f {
                    Format::Parquet => "parquet",
                    Format::Csv => "csv",
                    Format::NdJson => "json",
                });
                format!("{dir}/{}.{ext}", object.table)
            }
        };
        let raw = resolve(raw);
        let format = declared
            .or_else(|| Path::new(&raw).extension().and_then(|e| Format::parse(&e.to_string_lossy())))
            .ok_or_else(|| {
                TestError::Server(format!(
                    "server `{}` names no `format` and {raw} has no known extension",
                    server.server
                ))
            })?;
        out.push((object.table.clone(), Location { path: raw, format }));
    }
    Ok(out)
}

/// How many CSV or NDJSON records an observation reads to infer the files' columns (a test
/// reads them all, in its limited process).
pub const OBSERVED_RECORDS: usize = 10_000;

/// The columns of each located table as its files have them (`None`: no file yet), their
/// types inferred from the first [`OBSERVED_RECORDS`] records; how a storage block observes
/// what a port holds.
pub async fn file_columns(
    locations: Vec<(String, Location)>,
    delimiter: u8,
    s3: &S3Config,
) -> Result<Vec<(String, Option<Vec<(String, ColumnKind)>>)>, TestError> {
    let tables: Vec<String> = locations.iter().map(|(t, _)| t.clone()).collect();
    let mut source = FileSource::new(locations, delimiter, Some(s3)).map_err(TestError::Connect)?;
    source.infer_records = OBSERVED_RECORDS;
    let mut out = Vec::new();
    for table in tables {
        let columns = source.columns(&table).await.map_err(TestError::Connect)?;
        out.push((table, columns));
    }
    Ok(out)
}

/// The field delimiter of a CSV server.
pub fn delimiter(server: &Server) -> Result<u8, TestError> {
    match server.delimiter.as_deref() {
        None | Some(",") => Ok(b','),
        Some("\\t" | "tab" | "\t") => Ok(b'\t'),
        Some(d) if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
        Some(d) => Err(TestError::Server(format!("delimiter `{d}` must be one character"))),
    }
}

/// Where a test reads a server's data.
pub enum Target {
    /// Files: each table's location, the CSV delimiter, and how to reach S3.
    Files { locations: Vec<(String, Location)>, delimiter: u8, s3: S3Config },
    /// A PostgreSQL connection.
    Postgres(Connection),
}

/// The target a contract's own server names, with the user's own credentials, for the
/// standalone `meshplane test`. PostgreSQL credentials come from the environment:
/// `MESHPLANE_POSTGRES_USER` and `MESHPLANE_POSTGRES_PASSWORD` (or libpq's `PGUSER` and
/// `PGPASSWORD`), TLS from `MESHPLANE_POSTGRES_SSLMODE` and `..._SSLROOTCERT` (or `PGSSLMODE`
/// and `PGSSLROOTCERT`); S3 credentials and region from the usual `AWS_*` variables; never from
/// the contract.
pub fn server_target(server: &Server, plan: &Plan, base: &Path, options: &Options) -> Result<Target, TestError> {
    let env = |a: &str, b: &str| (options.env)(a).or_else(|| (options.env)(b));
    match server.kind.as_str() {
        "local" | "s3" => Ok(Target::Files {
            locations: file_locations(server, plan, base)?,
            delimiter: delimiter(server)?,
            s3: S3Config {
                endpoint: server.endpoint_url.clone(),
                region: env("AWS_REGION", "AWS_DEFAULT_REGION"),
                access_key_id: (options.env)("AWS_ACCESS_KEY_ID"),
                secret_access_key: (options.env)("AWS_SECRET_ACCESS_KEY"),
            },
        }),
        "postgres" | "postgresql" => {
            let port = server.port.unwrap_or(5432);
            Ok(Target::Postgres(Connection {
                host: server
                    .host
                    .clone()
                    .ok_or_else(|| TestError::Server(format!("server `{}` has no host", server.server)))?,
                port: u16::try_from(port).map_err(|_| TestError::Server(format!("port {port} is out of range")))?,
                database: server.database.clone().unwrap_or_else(|| "postgres".into()),
                user: env("MESHPLANE_POSTGRES_USER", "PGUSER").unwrap_or_else(|| "postgres".into()),
                password: env("MESHPLANE_POSTGRES_PASSWORD", "PGPASSWORD"),
                schema: server.schema.clone().unwrap_or_else(|| "public".into()),
                sandboxed: false,
                tls: match env("MESHPLANE_POSTGRES_SSLMODE", "PGSSLMODE").as_deref() {
                    None | Some("disable" | "allow" | "prefer") => Tls::Disable,
                    Some("verify-full") => Tls::VerifyFull {
                        root_cert: env("MESHPLANE_POSTGRES_SSLROOTCERT", "PGSSLROOTCERT").map(Into::into),
                    },
                    Some(other) => {
                        return Err(TestError::Server(format!(
                            "sslmode `{other}`: meshplane connects with disable or verify-full"
                        )));
                    }
                },
            }))
        }
        other => Err(TestError::Server(format!(
            "server `{}` is of type {other}; meshplane test reads local files and postgres",
            server.server
        ))),
    }
}

/// The plan of a run: the contract's checks (of one object, of one schedule).
pub fn plan_of(contract: &DataContract, object: Option<&str>, options: &Options) -> Result<Plan, TestError> {
    if let Some(name) = object
        && contract.object(name).is_none()
    {
        return Err(TestError::NoObject(name.to_string()));
    }
    let mut plan = compile(contract, object);
    if let Some(schedule) = &options.schedule {
        plan.retain_schedule(schedule);
    }
    Ok(plan)
}

/// Runs the contract's checks on `server` (or one object of it), where the server says.
pub async fn test(
    contract: &DataContract,
    server: &Server,
    object: Option<&str>,
    base: &Path,
    options: &Options,
) -> Result<Report, TestError> {
    let plan = plan_of(contract, object, options)?;
    let target = server_target(server, &plan, base, options)?;
    test_on(contract, (&server.server, &server.kind), &plan, target, options).await
}

/// Runs `plan` (of `contract`) on `target`; `server` is the (name, type) the report names.
pub async fn test_on(
    contract: &DataContract,
    server: (&str, &str),
    plan: &Plan,
    target: Target,
    options: &Options,
) -> Result<Report, TestError> {
    let results = match target {
        Target::Files { locations, delimiter, s3 } => {
            let mut source = FileSource::new(locations, delimiter, Some(&s3)).map_err(TestError::Connect)?;
            source.sql_timeout = options.sql_timeout;
            run(&mut source, plan, options).await
        }
        Target::Postgres(connection) => {
            let tables = plan.objects.iter().map(|o| o.table.clone()).collect();
            let mut source = PgSource::connect(&connection, tables).await.map_err(TestError::Connect)?;
            source.sql_timeout = options.sql_timeout;
            let results = run(&mut source, plan, options).await;
            source.close().await.map_err(TestError::Connect)?;
            results
        }
    };
    let mut summary = Summary::default();
    for r in &results {
        *match r.outcome {
            Outcome::Pass => &mut summary.pass,
            Outcome::Fail => &mut summary.fail,
            Outcome::Warn => &mut summary.warn,
            Outcome::Error => &mut summary.error,
            Outcome::Skipped => &mut summary.skipped,
        } += 1;
    }
    Ok(Report {
        contract: contract.id.clone(),
        version: contract.version.clone(),
        server: server.0.to_string(),
        server_type: server.1.to_string(),
        summary,
        results,
    })
}

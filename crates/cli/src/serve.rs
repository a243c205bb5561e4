//! `meshplane serve`: the registry's REST API on the embedded SQLite store (`./meshplane.db`)
//! or on PostgreSQL (`--database-url postgres://...`), with the platform's building blocks
//! (`./platform.yaml` when present, `--platform FILE`, or the embedded platform: a lake on
//! `./data`). A platform with any problem is refused before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use meshplane_blocks::platform::{Jwks, OidcConfig, Platform};
use meshplane_core::store::Store;
use meshplane_server::Config;
use meshplane_server::checks::Sandbox;
use meshplane_server::oidc::Oidc;
use meshplane_server::reconciler::Settings;

/// How many policy workers evaluate at once, and the address space each may use: a worker
/// holds the compiled modules and one evaluation's values.
const POLICY_WORKERS: usize = 2;
const POLICY_WORKER_MEMORY_MIB: u64 = 512;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane serve\n  meshplane serve --listen 0.0.0.0:8080 --database-url postgres://meshplane@db/meshplane --platform platform.yaml\n  meshplane serve --metrics-listen 10.0.0.5:9464"
)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also serve `/metrics` here, without authentication (on the API port it needs a token):
    /// an address only the Prometheus servers reach.
    #[arg(long, value_name = "ADDRESS")]
    metrics_listen: Option<SocketAddr>,
    /// The store: `sqlite://PATH` or `postgres://USER@HOST:PORT/DATABASE`.
    #[arg(long, env = "MESHPLANE_DATABASE_URL", default_value = "sqlite://meshplane.db")]
    database_url: String,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    body_limit: usize,
    /// Reconciles run at once by this replica.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// How long a reconcile may hold its resource's lease, in seconds; a replica that dies is
    /// taken over within about this long (its membership lasts a third of it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    lease_seconds: u32,
    /// The platform file (blocks and environment); default ./platform.yaml when it exists,
    /// else the embedded platform (environment dev, a lake block on ./data).
    #[arg(long)]
    platform: Option<PathBuf>,
    /// The memory (address space) one contract test run may use, in MiB; a run that needs
    /// more is stopped and reported.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(64..))]
    test_memory_mib: u64,
    /// The CPU time one contract test run may use, in seconds (all its threads together).
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u64).range(1..))]
    test_cpu_seconds: u64,
    /// When a contract test run is stopped however far it got, in seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    test_deadline_seconds: u64,
    /// Contract test runs at once (scheduled and on demand); the others wait.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    test_runs: u16,
    /// How the server's log lines (on standard error) are written: `pretty` for a terminal,
    /// `json` (one object per line) for a log collector. Which lines: `RUST_LOG` (default
    /// `info`), e.g. `RUST_LOG=warn,meshplane_server=debug`.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

/// Writes the server's spans and events to standard error, filtered by `RUST_LOG`.
fn start_logging(format: LogFormat) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => tracing_subscriber::EnvFilter::try_new(&spec).with_context(|| format!("RUST_LOG `{spec}`"))?,
        Err(_) => tracing_subscriber::EnvFilter::new("info"),
    };
    let lines = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    let installed = match format {
        LogFormat::Pretty => lines.try_init(),
        LogFormat::Json => lines.json().with_current_span(true).with_span_list(true).try_init(),
    };
    installed.map_err(|e| anyhow!("cannot start the log: {e}"))
}

/// The platform to serve with, or every problem of its file.
fn platform(args: &Args) -> Result<Platform> {
    let default = Path::new("platform.yaml");
    let path = args.platform.clone().or_else(|| default.exists().then(|| default.to_path_buf()));
    let Some(path) = path else { return Ok(Platform::embedded()) };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read the platform {}", path.display()))?;
    Platform::from_yaml(&text).map_err(|problems| {
        let lines: Vec<String> = problems.0.iter().map(|p| format!("{}:{p}", path.display())).collect();
        anyhow!("the platform {} is not valid; nothing was started:\n{}", path.display(), lines.join("\n"))
    })
}

pub fn run(args: &Args) -> Result<ExitCode> {
    start_logging(args.log_format)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let platform = platform(args)?;
    let described: serde_json::Map<String, serde_json::Value> =
        platform.blocks.iter().map(|b| (b.name.clone(), serde_json::to_value(b).unwrap_or_default())).collect();
    let environment = platform.environment.clone();
    let oidc_config = platform.oidc.clone();
    let policies = platform.policies.clone();
    let base = std::env::current_dir().context("cannot read the working directory")?;
    // Blocks keep connection pools, which belong to the runtime.
    let _inside = runtime.enter();
    let blocks = meshplane_blocks::build(platform, &base).map_err(|e| anyhow!("{e}; nothing was started"))?;
    runtime.block_on(async {
        let oidc = match &oidc_config {
            Some(config) => Some(std::sync::Arc::new(oidc(config).await?)),
            None => None,
        };
        let store = Store::open(&args.database_url)
            .await
            .with_context(|| format!("cannot open the store {}", redact(&args.database_url)))?;
        let pack = match policies.pack {
            meshplane_blocks::platform::Pack::Off => Vec::new(),
            meshplane_blocks::platform::Pack::Warn => meshplane_policy::pack("warn"),
            meshplane_blocks::platform::Pack::Deny => meshplane_policy::pack("deny"),
        };
        let budget = std::time::Duration::from_millis(policies.budget_ms);
        let program = std::env::current_exe().context("cannot find this program, which evaluates the policies")?;
        let workers = meshplane_policy::worker::Pool::new(
            program,
            vec!["policy-worker".into()],
            POLICY_WORKERS,
            POLICY_WORKER_MEMORY_MIB << 20,
        );
        let runner = meshplane_policy::worker::Runner::Workers(Box::new(workers));
        meshplane_core::governance::configure(&store, pack, budget, policies.domain_policies, runner)
            .map_err(|e| anyhow!("{e}; nothing was started"))?;
        let names: Vec<&String> = described.keys().collect();
        tracing::info!(
            url = %format!("http://{}", args.listen),
            store = %redact(&args.database_url),
            %environment,
            blocks = ?names,
            "meshplane serving"
        );
        let lease_ms = i64::from(args.lease_seconds) * 1000;
        let tests = Sandbox {
            program: std::env::current_exe().context("cannot find this program, which runs the contract tests")?,
            args: vec!["test-worker".into()],
            memory_bytes: args.test_memory_mib << 20,
            cpu_seconds: args.test_cpu_seconds,
            deadline: std::time::Duration::from_secs(args.test_deadline_seconds),
            runs: std::sync::Arc::new(tokio::sync::Semaphore::new(usize::from(args.test_runs))),
        };
        let reconciler = Settings {
            workers: usize::from(args.workers),
            lease_ms,
            membership_ms: lease_ms / 3,
            tests: std::sync::Arc::new(tests),
            ..Settings::default()
        };
        let token_days = oidc_config.as_ref().map_or(30, |o| u64::from(o.max_token_days));
        let config = Config {
            body_limit: args.body_limit,
            reconciler,
            platform: serde_json::Value::Object(described.clone()),
            oidc,
            jwt_token_lifetime: std::time::Duration::from_secs(token_days * 24 * 3600),
            metrics_listen: args.metrics_listen,
            ..Config::default()
        };
        meshplane_server::serve(args.listen, store, config, blocks).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow!(
                "address {} is in use: is another meshplane serve running? use --listen; nothing was started",
                args.listen
            ),
            _ => anyhow::Error::new(e).context(format!("cannot serve on {}", args.listen)),
        })?;
        tracing::info!("stopped: requests and reconciles finished, leases given back, store closed");
        Ok(ExitCode::SUCCESS)
    })
}

/// The identity provider of the platform, with its keys read now; any problem refuses to start.
async fn oidc(config: &OidcConfig) -> Result<Oidc> {
    let (issuer, audience, claim) = (&config.issuer, &config.audience, config.claim.as_deref());
    let provider = match &config.jwks {
        Jwks::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the OIDC keys {}; nothing was started", path.display()))?;
            Oidc::new(issuer, audience, claim, &text)
        }
        Jwks::Url(url) => Oidc::from_url(issuer, audience, claim, url).await,
    };
    provider.map_err(|e| anyhow!("oidc: {e}; nothing was started"))
}

/// The URL without its password (in its user part or as a `password`/`sslpassword` query
/// parameter), for messages.
fn redact(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &base[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") => {
                    format!("{key}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{out}?{}", pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(super::redact("postgres://me:secret@db:5432/x"), "postgres://me:***@db:5432/x");
        assert_eq!(super::redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(super::redact("sqlite://meshplane.db"), "sqlite://meshplane.db");
        assert_eq!(
            super::redact("postgres://me@db/x?sslmode=require&password=secret&PASSWORD=s2"),
            "postgres://me@db/x?sslmode=require&password=***&PASSWORD=***"
        );
        assert_eq!(super::redact("postgres://me:p@ss@db/x?sslpassword=k"), "postgres://me:***@db/x?sslpassword=***");
    }
}

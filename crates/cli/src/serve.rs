//! `meshplane serve`: the registry's REST API on the embedded SQLite store (`./meshplane.db`)
//! or on PostgreSQL (`--database-url postgres://...`).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use meshplane_core::block::Blocks;
use meshplane_core::store::Store;
use meshplane_server::Config;
use meshplane_server::reconciler::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
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
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let store = Store::open(&args.database_url)
            .await
            .with_context(|| format!("cannot open the store {}", redact(&args.database_url)))?;
        eprintln!("meshplane serving http://{} (store {})", args.listen, redact(&args.database_url));
        let lease_ms = i64::from(args.lease_seconds) * 1000;
        let reconciler = Settings {
            workers: usize::from(args.workers),
            lease_ms,
            membership_ms: lease_ms / 3,
            ..Settings::default()
        };
        let config = Config { body_limit: args.body_limit, reconciler, ..Config::default() };
        meshplane_server::serve(args.listen, store, config, Blocks::default())
            .await
            .with_context(|| format!("cannot serve on {}", args.listen))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(super::redact("postgres://me:secret@db:5432/x"), "postgres://me:***@db:5432/x");
        assert_eq!(super::redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(super::redact("sqlite://meshplane.db"), "sqlite://meshplane.db");
    }
}

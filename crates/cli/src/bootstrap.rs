//! `meshplane bootstrap`: the first platform admin and its token, created with direct access
//! to the store — never through an unauthenticated network call. Whoever can open the store
//! already holds everything in it; this command only makes that usable through the API.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use meshplane_core::store::identity::{Principal, PrincipalKind};
use meshplane_core::store::{ApplyOptions, Store};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  export MESHPLANE_TOKEN=$(meshplane bootstrap)\n  meshplane bootstrap --database-url postgres://meshplane@db/meshplane"
)]
pub struct Args {
    /// The store: `sqlite://PATH` or `postgres://USER@HOST:PORT/DATABASE`.
    #[arg(long, env = "MESHPLANE_DATABASE_URL", default_value = "sqlite://meshplane.db")]
    database_url: String,
    /// The admin's name.
    #[arg(long, default_value = "admin")]
    name: String,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(&args.database_url).await.context("cannot open the store")?;
        let who = ApplyOptions {
            actor: format!("bootstrap ({})", whoami()),
            origin: "cli bootstrap".into(),
            dry_run: false,
            prune: false,
        };
        let admin = match store.principal(&args.name).await {
            Ok(existing) => Principal { platform_admin: true, ..existing },
            Err(_) => Principal {
                name: args.name.clone(),
                kind: PrincipalKind::User,
                database_role: None,
                groups: Vec::new(),
                platform_admin: true,
                domains: Vec::new(),
                oidc: None,
            },
        };
        store.put_principal(&admin, &who).await?;
        let created = store.create_token(&admin.name, "created by meshplane bootstrap", None, &who).await?;
        writeln!(crate::output::stdout(), "{}", created.token)?;
        eprintln!(
            "platform admin `{}` can now use the API: export MESHPLANE_TOKEN=<the token above> (shown only now; meshplane keeps only its hash)",
            admin.name
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The operating system user running the command, for the audit log.
fn whoami() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into())
}

//! The `meshplane` binary: parses the command line and hands each command to its module.
//! Exit codes: 0 success, 1 the command found problems, 2 usage or I/O error.

mod access;
mod bootstrap;
mod diff;
mod files;
mod lint;
mod output;
mod readiness;
mod remote;
mod serve;
mod test;
mod watch;
mod yaml;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "meshplane", version, about = "A composable control plane for a data mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For machines.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check ODCS contracts and ODPS products: every problem at once, each with a code.
    Lint(lint::Args),
    /// Compare two versions of a contract and classify every change.
    Diff(diff::Args),
    /// Test the data of a contract's server against the contract.
    Test(test::Args),
    /// Serve the registry's REST API (on ./meshplane.db unless --database-url says otherwise).
    Serve(serve::Args),
    /// Apply contracts and products to a meshplane server, all or nothing.
    Apply(remote::ApplyArgs),
    /// Delete a contract or product: it goes once every block that provisioned it has cleaned up.
    Delete(remote::DeleteArgs),
    /// List resources of a kind (contracts, products), or show one.
    Get(remote::GetArgs),
    /// One resource: what it is, what it holds, and every change it went through.
    Describe(remote::HistoryArgs),
    /// Every change of one resource.
    History(remote::HistoryArgs),
    /// The change feed of the whole registry.
    Events(remote::EventsArgs),
    /// A product's upstream and downstream products.
    Lineage(remote::LineageArgs),
    /// The platform's building blocks, their configuration (secrets as references) and health.
    Blocks(remote::BlocksArgs),
    /// What blocks left in place (data) when contracts or products went.
    Orphans(remote::OrphansArgs),
    /// Remove left-in-place data through its blocks: the only command that drops data.
    Purge(remote::PurgeArgs),
    /// Ask for, approve, reject, revoke and list access to output ports.
    Access(access::AccessArgs),
    /// Create, list and revoke API tokens.
    Token(access::TokenArgs),
    /// Users, groups and service accounts (platform admins).
    Principal(access::PrincipalArgs),
    /// The audit log: every change and decision, with who, when and from where.
    Audit(access::AuditArgs),
    /// Who the token stands for: name, kind, database role, groups, what it administers.
    Whoami(access::WhoAmIArgs),
    /// Create the first platform admin and its token, directly in the store.
    Bootstrap(bootstrap::Args),
    /// Run one contract test sandboxed, as `serve` starts it (a job on standard input).
    #[command(hide = true)]
    TestWorker,
}

/// Scans allocate and free large buffers (decompressed Parquet pages) all the time, which the
/// system allocator hands back to the kernel and faults in again, page by page. mimalloc
/// reuses them; it is built without transparent huge pages, whose compaction stalls made
/// the same scan take anywhere from 1 to 1.6 s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lint(args) => lint::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Apply(args) => remote::apply(&args),
        Command::Delete(args) => remote::delete(&args),
        Command::Get(args) => remote::get(&args),
        Command::Describe(args) => remote::describe(&args),
        Command::History(args) => remote::history(&args),
        Command::Events(args) => remote::events(&args),
        Command::Lineage(args) => remote::lineage(&args),
        Command::Blocks(args) => remote::blocks(&args),
        Command::Orphans(args) => remote::orphans(&args),
        Command::Purge(args) => remote::purge(&args),
        Command::Access(args) => access::access(&args),
        Command::Token(args) => access::token(&args),
        Command::Principal(args) => access::principal(&args),
        Command::Audit(args) => access::audit(&args),
        Command::Whoami(args) => access::whoami(&args),
        Command::Bootstrap(args) => bootstrap::run(&args),
        Command::TestWorker => return meshplane_server::checks::worker_main(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

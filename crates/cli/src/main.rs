//! The `meshplane` binary: parses the command line and hands each command to its module.
//! Exit codes: 0 success, 1 the command found problems, 2 usage or I/O error.

mod access;
mod bootstrap;
mod config;
mod diff;
mod files;
mod init;
mod lint;
mod login;
mod output;
mod policy;
mod readiness;
mod remote;
mod sample_data;
mod serve;
mod test;
mod watch;
mod yaml;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(name = "meshplane", version, about = "A composable control plane for a data mesh")]
struct Cli {
    /// Output format: table (for people), json, yaml; junit for `test`. Accepted before or
    /// after the subcommand; with json or yaml, errors are JSON or YAML on standard error.
    #[arg(short = 'o', long = "output", value_enum, default_value_t, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check ODCS contracts and ODPS products: every problem at once, each with a code.
    Lint(lint::Args),
    /// Compare two versions of a contract, or a file with what the registry stores, and
    /// classify every change.
    Diff(diff::Args),
    /// Write a valid, commented contract or product to start from.
    Init(init::Args),
    /// Test the data of a contract's server against the contract.
    Test(test::Args),
    /// Serve the registry's REST API (on ./meshplane.db unless --database-url says otherwise).
    Serve(serve::Args),
    /// Apply contracts and products to a meshplane server, all or nothing.
    Apply(remote::ApplyArgs),
    /// Delete a contract or product: it goes once every block that provisioned it has cleaned up.
    Delete(remote::DeleteArgs),
    /// List resources of a kind (contracts, products, policies), or show one.
    Get(remote::GetArgs),
    /// One resource: what it is, what it holds, and every change it went through.
    Describe(remote::DescribeArgs),
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
    /// Sign in with the context's OpenID provider (device authorization: a code to enter in
    /// any browser); the token is kept for the context.
    Login(login::LoginArgs),
    /// Remove the token `meshplane login` kept for a context.
    Logout(login::LogoutArgs),
    /// Contexts, like kubectl's: named registries and where their tokens come from.
    Config(config::ConfigArgs),
    /// Create the first platform admin and its token, directly in the store.
    Bootstrap(bootstrap::Args),
    /// Rego policies without a server: what one says about a document.
    Policy(policy::PolicyArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Example:\n  meshplane completions bash > ~/.local/share/bash-completion/completions/meshplane"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run one contract test sandboxed, as `serve` starts it (a job on standard input).
    #[command(hide = true)]
    TestWorker,
    /// Evaluate policies in a limited process, as `serve` starts it (batches on standard input).
    #[command(hide = true)]
    PolicyWorker,
}

/// Scans allocate and free large buffers (decompressed Parquet pages) all the time, which the
/// system allocator hands back to the kernel and faults in again, page by page. mimalloc
/// reuses them; it is built without transparent huge pages, whose compaction stalls made
/// the same scan take anywhere from 1 to 1.6 s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

impl Command {
    /// Where the command keeps the output format; `None` for those that print no result
    /// (`serve` logs, `bootstrap` prints a token).
    fn output_mut(&mut self) -> Option<&mut Format> {
        Some(match self {
            Command::Lint(args) => &mut args.output,
            Command::Diff(args) => &mut args.output,
            Command::Test(args) => &mut args.output,
            Command::Apply(args) => &mut args.server.output,
            Command::Delete(args) => &mut args.server.output,
            Command::Get(args) => &mut args.server.output,
            Command::Describe(args) => &mut args.server.output,
            Command::History(args) => &mut args.server.output,
            Command::Events(args) => &mut args.server.output,
            Command::Lineage(args) => &mut args.server.output,
            Command::Blocks(args) => &mut args.server.output,
            Command::Orphans(args) => &mut args.server.output,
            Command::Purge(args) => &mut args.server.output,
            Command::Access(args) => &mut args.server.output,
            Command::Token(args) => &mut args.server.output,
            Command::Principal(args) => &mut args.server.output,
            Command::Audit(args) => &mut args.server.output,
            Command::Whoami(args) => &mut args.server.output,
            Command::Config(args) => &mut args.output,
            Command::Policy(args) => &mut args.output,
            Command::Serve(_)
            | Command::Login(_)
            | Command::Logout(_)
            | Command::Init(_)
            | Command::Bootstrap(_)
            | Command::Completions { .. }
            | Command::TestWorker
            | Command::PolicyWorker => return None,
        })
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let output = cli.output;
    // JUnit is a report of test cases: only `test` has them.
    if output == Format::Junit && !matches!(cli.command, Command::Test(_)) {
        let command = matches.subcommand_name().unwrap_or_default();
        eprintln!("error: `-o junit` is for `meshplane test`; `meshplane {command}` prints table, json or yaml");
        return ExitCode::from(2);
    }
    if let Some(field) = cli.command.output_mut() {
        *field = output;
    }
    let result = match cli.command {
        Command::Lint(args) => lint::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Init(args) => init::run(&args, output),
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
        Command::Login(args) => login::login(&args),
        Command::Logout(args) => login::logout(&args),
        Command::Config(args) => config::run(&args),
        Command::Bootstrap(args) => bootstrap::run(&args),
        Command::Policy(args) => policy::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "meshplane", &mut output::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::TestWorker => return meshplane_server::checks::worker_main(),
        Command::PolicyWorker => return meshplane_policy::worker::serve(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::error(output, "client-error", &format!("{err:#}"), &serde_json::Value::Null);
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every visible command, with its path (`meshplane access request`).
    fn commands(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let here = format!("{path} {}", sub.get_name());
            out.push((here.clone(), sub.clone()));
            commands(sub, here, out);
        }
    }

    #[test]
    fn every_argument_is_described_and_every_command_has_an_example() {
        let mut all = Vec::new();
        commands(&Cli::command(), "meshplane".into(), &mut all);
        assert!(all.len() > 20, "{}", all.len());
        let mut missing = Vec::new();
        for (path, command) in &all {
            if command.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for arg in command.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set()) {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str()) {
                    missing.push(format!("{path}: argument `{}` has no description", arg.get_id()));
                }
            }
            let leaf = command.get_subcommands().next().is_none();
            let example = command.get_after_help().is_some_and(|h| h.to_string().contains("Example"));
            if leaf && !example {
                missing.push(format!("{path}: no example"));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}

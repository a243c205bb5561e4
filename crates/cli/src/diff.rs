//! `meshplane diff OLD NEW`: every change between two versions of a contract, classified
//! breaking or not; exits 1 when breaking changes come without a major version bump.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use meshplane_spec::diff::{self, Bump};

use crate::Format;
use crate::files::read_contract;

#[derive(clap::Args)]
pub struct Args {
    /// The earlier version of the contract.
    old: PathBuf,
    /// The later version of the contract.
    new: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "human")]
    format: Format,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let (Some(old), Some(new)) = (read_contract(&args.old, "comparing")?, read_contract(&args.new, "comparing")?)
    else {
        return Ok(ExitCode::from(2));
    };
    if old.id != new.id {
        bail!(
            "{} and {} are different contracts (ids `{}` and `{}`)",
            args.old.display(),
            args.new.display(),
            old.id,
            new.id
        );
    }
    let report = diff::diff(&old, &new);
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => {
            writeln!(
                out,
                "contract `{}`: {} → {} ({})",
                old.id,
                report.old_version,
                report.new_version,
                bump_name(report.bump)
            )?;
            if report.changes.is_empty() {
                writeln!(out, "no changes")?;
            }
            for change in &report.changes {
                let label = if change.breaking { "BREAKING" } else { "ok      " };
                writeln!(out, "  {label} {:<24} {}: {}", change.code, change.path, change.message)?;
            }
            let breaking = report.breaking().count();
            writeln!(out, "{} change(s), {breaking} breaking", report.changes.len())?;
            if let Some(problem) = &report.problem {
                writeln!(out, "error: {problem}")?;
            }
        }
    }
    Ok(if report.problem.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn bump_name(bump: Bump) -> &'static str {
    match bump {
        Bump::Major => "major bump",
        Bump::Minor => "minor bump",
        Bump::Patch => "patch bump",
        Bump::PreRelease => "pre-release change",
        Bump::Same => "same version",
        Bump::Downgrade => "downgrade",
        Bump::Unknown => "versions not comparable",
    }
}

//! `meshplane diff OLD NEW`: every change between two versions of a contract, classified
//! breaking or not; exits 1 when breaking changes come without a major version bump.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use meshplane_spec::diff::{self, Bump};
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::{Document, lint, render};

use crate::Format;

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
    let (Some(old), Some(new)) = (read_contract(&args.old)?, read_contract(&args.new)?) else {
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
    let mut out = std::io::stdout().lock();
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

/// Reads one contract; prints its errors and returns `None` when it cannot be trusted.
fn read_contract(path: &Path) -> Result<Option<DataContract>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let linted = lint::lint_text(path.display().to_string(), text);
    let errors: Vec<_> = linted.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        let mut err = std::io::stderr().lock();
        for d in errors {
            write!(err, "{}", render::human(&linted.path, &linted.text, d))?;
        }
        writeln!(err, "error: {} has errors; fix them before comparing", path.display())?;
        return Ok(None);
    }
    let mut contracts = linted.documents.into_iter().filter_map(|d| match d.document {
        Some(Document::Contract(c)) => Some(*c),
        _ => None,
    });
    match (contracts.next(), contracts.next()) {
        (Some(c), None) => Ok(Some(c)),
        (None, _) => bail!("{} holds no data contract", path.display()),
        (Some(_), Some(_)) => bail!("{} holds more than one data contract; diff compares one with one", path.display()),
    }
}

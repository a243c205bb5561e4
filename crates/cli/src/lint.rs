//! `meshplane lint`: reads every file, reports every problem, exits 1 when any is an error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use meshplane_spec::lint::{self, Linted};
use meshplane_spec::tree::Span;
use meshplane_spec::{Code, Diagnostic, Severity, render};
use serde_json::json;

use crate::Format;
use crate::files;

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for *.odcs.yaml, *.odps.yaml, and any
    /// .yaml/.yml/.json file whose kind is DataContract or DataProduct).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "human")]
    format: Format,
    /// Treat every warning as an error.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let found = files::collect(&args.paths)?;
    let mut linted: Vec<Linted> = lint_all(&found)?.into_iter().flatten().collect();
    lint::lint_across(&mut linted);
    if args.strict {
        lint::make_strict(&mut linted);
    }
    let errors: usize = linted.iter().map(|f| f.count(Severity::Error)).sum();
    let warnings: usize = linted.iter().map(|f| f.count(Severity::Warning)).sum();
    let mut out = crate::output::stdout();
    match args.format {
        Format::Human => {
            for file in &linted {
                for d in &file.diagnostics {
                    writeln!(out, "{}", render::human(&file.path, &file.text, d))?;
                }
            }
            writeln!(out, "{} file(s) checked: {errors} error(s), {warnings} warning(s)", linted.len())?;
        }
        Format::Json => {
            let report = json!({
                "files": linted.iter().map(|f| json!({
                    "path": f.path,
                    "diagnostics": f.diagnostics.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "summary": { "files": linted.len(), "errors": errors, "warnings": warnings },
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Reads and lints every file, on all cores; results keep the order of `found`.
fn lint_all(found: &[files::Found]) -> Result<Vec<Option<Linted>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(found.len().max(1));
    let chunk = found.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = found
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(lint_one).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for worker in workers {
            out.extend(worker.join().map_err(|_| anyhow::anyhow!("a lint worker panicked"))??);
        }
        Ok(out)
    })
}

/// Lints one file; `None` when a file found in a directory is not a contract or product.
fn lint_one(found: &files::Found) -> Result<Option<Linted>> {
    let path = found.path.display().to_string();
    let bytes = std::fs::read(&found.path).with_context(|| format!("cannot read {path}"))?;
    let Ok(text) = String::from_utf8(bytes) else {
        // Not text: a problem of this file, reported like any other.
        let d = Diagnostic::new(Code::Io, Span::at(1, 1), "the file is not UTF-8 text").hint("save the file as UTF-8");
        return Ok(Some(Linted { path, text: String::new(), documents: Vec::new(), diagnostics: vec![d] }));
    };
    let file = lint::lint_text(path, text);
    let wanted = found.explicit || files::named_as_document(&found.path) || declares_known_kind(&file);
    Ok(wanted.then_some(file))
}

/// A file found in a directory is linted only when one of its documents says it is a
/// contract or a product; other YAML (CI workflows, configuration) is left alone.
fn declares_known_kind(file: &Linted) -> bool {
    file.documents
        .iter()
        .any(|d| matches!(d.node.get("kind").and_then(|k| k.as_str()), Some("DataContract" | "DataProduct")))
}

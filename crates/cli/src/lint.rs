//! `meshplane lint`: reads every file, reports every problem, exits 1 when any is an error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use meshplane_spec::lint::{self, Linted};
use meshplane_spec::tree::Span;
use meshplane_spec::{Code, Diagnostic, Severity, render};
use serde_json::json;

use crate::files;
use crate::output::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane lint examples/\n  meshplane lint -o json --strict contracts/ > lint.json"
)]
pub struct Args {
    /// Files or directories (searched recursively for *.odcs.yaml, *.odps.yaml, and any
    /// .yaml/.yml/.json file whose kind is DataContract or DataProduct).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The output format (`-o`, given to the whole command).
    #[arg(skip)]
    pub(crate) output: Format,
    /// Treat every warning as an error.
    #[arg(long)]
    strict: bool,
}

/// A file found in a directory that lint left alone, and why.
struct Skipped {
    path: String,
    why: String,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let found = files::collect(&args.paths)?;
    let (mut linted, mut skipped) = (Vec::new(), Vec::new());
    for read in lint_all(&found)? {
        match read {
            Ok(file) => linted.push(file),
            Err(skip) => skipped.push(skip),
        }
    }
    lint::lint_across(&mut linted);
    if args.strict {
        lint::make_strict(&mut linted);
    }
    let errors: usize = linted.iter().map(|f| f.count(Severity::Error)).sum();
    let warnings: usize = linted.iter().map(|f| f.count(Severity::Warning)).sum();
    let mut out = crate::output::stdout();
    match args.output {
        Format::Table | Format::Junit => {
            for file in &linted {
                for d in &file.diagnostics {
                    writeln!(out, "{}", render::human(&file.path, &file.text, d))?;
                }
            }
            for skip in &skipped {
                writeln!(out, "note: skipped {}: {}", skip.path, skip.why)?;
            }
            writeln!(out, "{} file(s) checked: {errors} error(s), {warnings} warning(s)", linted.len())?;
        }
        machine => {
            let report = json!({
                "files": linted.iter().map(|f| json!({
                    "path": f.path,
                    "diagnostics": f.diagnostics.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "skipped": skipped.iter().map(|s| json!({ "path": s.path, "reason": s.why })).collect::<Vec<_>>(),
                "summary": { "files": linted.len(), "errors": errors, "warnings": warnings, "skipped": skipped.len() },
            });
            crate::output::structured(&mut out, machine, &report)?;
        }
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Reads and lints every file, on all cores; results keep the order of `found`.
fn lint_all(found: &[files::Found]) -> Result<Vec<Result<Linted, Skipped>>> {
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

/// Lints one file; a file found in a directory that is not a contract or product is
/// skipped, with why.
fn lint_one(found: &files::Found) -> Result<Result<Linted, Skipped>> {
    let path = found.path.display().to_string();
    let bytes = std::fs::read(&found.path).with_context(|| format!("cannot read {path}"))?;
    let Ok(text) = String::from_utf8(bytes) else {
        // Not text: a problem of this file, reported like any other.
        let d = Diagnostic::new(Code::Io, Span::at(1, 1), "the file is not UTF-8 text").hint("save the file as UTF-8");
        return Ok(Ok(Linted { path, text: String::new(), documents: Vec::new(), diagnostics: vec![d] }));
    };
    let file = files::lint_text(path, text);
    if found.explicit || files::named_as_document(&found.path) {
        return Ok(Ok(file));
    }
    Ok(match not_a_document(&file) {
        Some(why) => Err(Skipped { path: file.path, why }),
        None => Ok(file),
    })
}

/// Why a file found in a directory is left alone: none of its documents says it is a
/// contract or a product (CI workflows, configuration); `None` when one does.
fn not_a_document(file: &Linted) -> Option<String> {
    let kinds: Vec<Option<&str>> = file.documents.iter().map(|d| d.node.get("kind").and_then(|k| k.as_str())).collect();
    if kinds.iter().any(|k| matches!(k, Some("DataContract" | "DataProduct"))) {
        return None;
    }
    let dcs = file.diagnostics.iter().find(|d| d.code == Code::DataContractSpecification);
    Some(if let Some(d) = dcs {
        format!("{} ({})", d.message, d.hint.as_deref().unwrap_or_default())
    } else if file.diagnostics.iter().any(|d| d.code == Code::Syntax) {
        "not valid YAML or JSON, so not known to be a contract or product (name it *.odcs.yaml or *.odps.yaml to have it checked)".to_string()
    } else if let Some(kind) = kinds.iter().flatten().next() {
        format!("`kind: {kind}` is neither DataContract nor DataProduct")
    } else {
        "no `kind: DataContract` or `kind: DataProduct`".to_string()
    })
}

//! Finding the documents a command works on: files named on the command line, and
//! directories searched recursively for contracts and products; reading one contract whole.

use std::path::{Path, PathBuf};

use std::io::Write;

use anyhow::{Context, Result, bail};
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::{Document, lint, render};

/// Lints one text as `meshplane lint` does: the spec layer's rules, and for a policy also
/// whether its Rego module compiles (each problem at its line in the document).
pub fn lint_text(path: String, text: String) -> lint::Linted {
    let mut linted = lint::lint_text(path, text);
    let policies = linted.documents.iter().filter_map(|d| match &d.document {
        Some(Document::Policy(policy)) if !d.has_errors() => Some(policy),
        _ => None,
    });
    let problems: Vec<_> =
        policies.filter_map(|p| meshplane_policy::check(p, crate::policy::runner()).err()).flatten().collect();
    if !problems.is_empty() {
        linted.diagnostics.extend(problems);
        meshplane_spec::diag::sort(&mut linted.diagnostics);
    }
    linted
}

/// A file to read, and whether it was named explicitly (explicit files are always read;
/// files found in a directory only when they are contracts or products).
pub struct Found {
    pub path: PathBuf,
    pub explicit: bool,
}

/// Expands the paths into files, in a stable order.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found.into_iter().map(|path| Found { path, explicit: false }));
        } else {
            out.push(Found { path: path.clone(), explicit: true });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        let kind = entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if is_candidate(&name) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_candidate(name: &str) -> bool {
    [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext))
}

/// True for file names that declare their standard (`x.odcs.yaml`, `x.odps.json`, ...).
pub fn named_as_document(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.contains(".odcs.") || name.contains(".odps.")
}

/// Reads the contracts of one file; prints its errors and returns `None` when it cannot be
/// trusted (lint errors), `purpose` saying what waits for the fix.
pub fn read_contracts(path: &Path, purpose: &str) -> Result<Option<Vec<DataContract>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let linted = lint::lint_text(path.display().to_string(), text);
    let errors: Vec<_> = linted.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        let mut err = std::io::stderr().lock();
        for d in errors {
            write!(err, "{}", render::human(&linted.path, &linted.text, d))?;
        }
        writeln!(err, "error: {} has errors; fix them before {purpose}", path.display())?;
        return Ok(None);
    }
    let contracts = linted.documents.into_iter().filter_map(|d| match d.document {
        Some(Document::Contract(c)) => Some(*c),
        _ => None,
    });
    Ok(Some(contracts.collect()))
}

/// Reads one contract; prints its errors and returns `None` when it cannot be trusted.
pub fn read_contract(path: &Path, purpose: &str) -> Result<Option<DataContract>> {
    let Some(contracts) = read_contracts(path, purpose)? else {
        return Ok(None);
    };
    let mut contracts = contracts.into_iter();
    match (contracts.next(), contracts.next()) {
        (Some(c), None) => Ok(Some(c)),
        (None, _) => bail!("{} holds no data contract", path.display()),
        (Some(_), Some(_)) => bail!("{} holds more than one data contract; give one per file", path.display()),
    }
}

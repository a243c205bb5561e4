//! Finding the documents a command works on: files named on the command line, and
//! directories searched recursively for contracts and products.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

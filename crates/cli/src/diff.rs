//! `meshplane diff OLD NEW`: every change between two versions of a contract, classified
//! breaking or not; exits 1 when breaking changes come without a major version bump.
//! `meshplane diff -f FILE` compares each contract of FILE with the version the registry
//! stores (the one `apply` would replace), as `apply --dry-run` does for what it would change.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use meshplane_core::resource::contract_name;
use meshplane_spec::diff::{self, Bump, Report};
use meshplane_spec::model::odcs::DataContract;
use meshplane_spec::{Document, lint};
use serde_json::{Value as Any, json};

use crate::files::{read_contract, read_contracts};
use crate::output::Format;
use crate::remote::{Answer, Server, call, refused};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane diff v1.odcs.yaml v2.odcs.yaml\n  meshplane diff -f orders.odcs.yaml    # against what the registry stores"
)]
pub struct Args {
    /// The earlier version of the contract.
    #[arg(required_unless_present = "file", requires = "new")]
    old: Option<PathBuf>,
    /// The later version of the contract.
    new: Option<PathBuf>,
    /// Compare every contract of this file with the version the registry (--server) stores.
    #[arg(short = 'f', long = "file", conflicts_with_all = ["old", "new"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    server: Server,
    /// The output format (`-o`, given to the whole command).
    #[arg(skip)]
    pub(crate) output: Format,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let format = args.output;
    let (old_path, new_path) = match (&args.file, &args.old, &args.new) {
        (Some(file), ..) => return against_registry(&args.server, file, format),
        (None, Some(old), Some(new)) => (old, new),
        _ => bail!("give OLD and NEW, or --file FILE"),
    };
    let (Some(old), Some(new)) = (read_contract(old_path, "comparing")?, read_contract(new_path, "comparing")?) else {
        return Ok(ExitCode::from(2));
    };
    if old.id != new.id {
        bail!(
            "{} and {} are different contracts (ids `{}` and `{}`)",
            old_path.display(),
            new_path.display(),
            old.id,
            new.id
        );
    }
    let report = diff::diff(&old, &new);
    let mut out = crate::output::stdout();
    match format {
        Format::Table | Format::Junit => report_lines(&mut out, &old.id, &report)?,
        machine => crate::output::structured(&mut out, machine, &report)?,
    }
    Ok(if report.problem.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// A report for people: the versions and the bump, every change, and the verdict.
pub(crate) fn report_lines(out: &mut dyn Write, id: &str, report: &Report) -> std::io::Result<()> {
    writeln!(out, "contract `{id}`: {} → {} ({})", report.old_version, report.new_version, bump_name(report.bump))?;
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
    Ok(())
}

/// What the registry stores of `contract`: the same major version, else the latest major
/// version of its id (a new major version replaces nothing, but is compared with the last);
/// `Ok(None)` when the id is not stored. The stored name comes with it.
pub(crate) fn stored(server: &Server, contract: &DataContract) -> Result<Result<Option<(String, DataContract)>, Any>> {
    let mut name = contract_name(&contract.id, &contract.version);
    let record = loop {
        match call(server, |c, base| c.get(format!("{base}/api/v1/contracts/{name}")))? {
            Answer::Ok(record) => break record,
            Answer::Refused(body) if body["code"] == "not-found" => {
                let meant = body["details"]["didYouMean"].as_array().cloned().unwrap_or_default();
                let major =
                    |n: &Any| n.as_str().and_then(|n| n.rsplit_once("@v")).and_then(|(_, m)| m.parse::<u64>().ok());
                match meant.iter().filter(|n| n.as_str() != Some(name.as_str())).max_by_key(|n| major(n)) {
                    Some(latest) => name = latest.as_str().unwrap_or_default().to_string(),
                    None => return Ok(Ok(None)),
                }
            }
            Answer::Refused(body) => return Ok(Err(body)),
        }
    };
    let linted = lint::lint_text(format!("the registry's {name}"), record["spec"].to_string());
    let decoded = linted.documents.into_iter().find_map(|d| match d.document {
        Some(Document::Contract(c)) => Some(*c),
        _ => None,
    });
    match decoded {
        Some(c) => Ok(Ok(Some((name, c)))),
        None => bail!("the registry's {name} cannot be read as a contract"),
    }
}

/// `diff -f FILE`: each contract of the file against what the registry stores.
fn against_registry(server: &Server, file: &std::path::Path, format: Format) -> Result<ExitCode> {
    let Some(contracts) = read_contracts(file, "comparing")? else {
        return Ok(ExitCode::from(2));
    };
    if contracts.is_empty() {
        bail!("{} holds no data contract", file.display());
    }
    let (mut out, mut reports, mut failed) = (crate::output::stdout(), Vec::new(), false);
    for contract in &contracts {
        let found = match stored(server, contract)? {
            Ok(found) => found,
            Err(body) => return refused(&body, format),
        };
        let Some((name, old)) = found else {
            if format == Format::Table {
                writeln!(out, "contract `{}`: not in the registry (apply creates it)", contract.id)?;
            }
            reports.push(json!({ "id": contract.id, "stored": null, "report": null }));
            continue;
        };
        let report = diff::diff(&old, contract);
        failed |= report.problem.is_some();
        if format == Format::Table {
            writeln!(out, "{name} (stored) → {}", file.display())?;
            report_lines(&mut out, &contract.id, &report)?;
        }
        reports.push(json!({ "id": contract.id, "stored": name, "report": report }));
    }
    if format != Format::Table {
        crate::output::structured(&mut out, format, &reports)?;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
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

/// For `apply --dry-run`: what each document the apply would update changes, by the stored
/// name: a contract's classified changes (as `diff` prints them), a product's changed fields.
pub(crate) fn dry_run_changes(server: &Server, applied: &Any, documents: &[Document]) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for item in applied["applied"].as_array().into_iter().flatten().filter(|i| i["outcome"] == "updated") {
        let name = item["name"].as_str().unwrap_or_default();
        let kind = item["kind"].as_str().unwrap_or_default();
        let local = documents.iter().find(|d| match d {
            Document::Contract(c) => contract_name(&c.id, &c.version) == name,
            other => other.kind() == kind && other.id() == name,
        });
        let mut lines = Vec::new();
        match local {
            Some(Document::Contract(contract)) => {
                if let Ok(Some((_, old))) = stored(server, contract)? {
                    report_lines(&mut lines, &contract.id, &diff::diff(&old, contract))?;
                }
            }
            Some(document) => {
                let plural = match document {
                    Document::Policy(_) => "policies",
                    Document::Exemption(_) => "exemptions",
                    _ => "products",
                };
                if let Answer::Ok(record) = call(server, |c, base| c.get(format!("{base}/api/v1/{plural}/{name}")))? {
                    for change in field_changes(&record["spec"], &serde_json::to_value(document)?, "") {
                        writeln!(lines, "  {change}")?;
                    }
                }
            }
            None => continue,
        }
        found.push((name.to_string(), String::from_utf8_lossy(&lines).into_owned()));
    }
    Ok(found)
}

/// Every field that differs between two JSON documents, by its path: `~ path: old → new`,
/// `+ path: new`, `- path` (lists compared element by element).
pub(crate) fn field_changes(old: &Any, new: &Any, path: &str) -> Vec<String> {
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (old, new) {
        (Any::Object(a), Any::Object(b)) => {
            let mut out = Vec::new();
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => out.extend(field_changes(value, other, &at(key))),
                    None => out.push(format!("- {}", at(key))),
                }
            }
            for (key, value) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                out.push(format!("+ {}: {value}", at(key)));
            }
            out
        }
        (Any::Array(a), Any::Array(b)) => {
            let mut out = Vec::new();
            for i in 0..a.len().max(b.len()) {
                let here = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => out.extend(field_changes(x, y, &here)),
                    (Some(_), None) => out.push(format!("- {here}")),
                    (None, Some(y)) => out.push(format!("+ {here}: {y}")),
                    (None, None) => {}
                }
            }
            out
        }
        _ if old == new => Vec::new(),
        _ => vec![format!("~ {path}: {old} → {new}")],
    }
}

#[cfg(test)]
mod tests {
    use super::field_changes;
    use serde_json::json;

    #[test]
    fn every_changed_field_is_named_by_its_path() {
        let old = json!({ "id": "p", "tags": ["a", "b"], "description": { "purpose": "x" }, "gone": 1 });
        let new = json!({ "id": "p", "tags": ["a"], "description": { "purpose": "y" }, "added": true });
        let mut changes = field_changes(&old, &new, "");
        changes.sort();
        assert_eq!(changes, ["+ added: true", "- gone", "- tags[1]", "~ description.purpose: \"x\" → \"y\""]);
        assert!(field_changes(&old, &old, "").is_empty());
    }
}

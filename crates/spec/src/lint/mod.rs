//! Linting: every problem of every document at once, each with a stable code.
//!
//! [`lint_text`] reads one text (parse, decode, then the rules of [`contract`] and the
//! product rules below); [`lint_across`] adds the problems only a set of files shows
//! (two documents with one id and version, ports naming contracts nobody linted).

mod contract;
pub mod pattern;

use std::collections::HashMap;

use crate::diag::{self, Code, Diagnostic, Severity};
use crate::document::{self, Document, Loaded};
use crate::model::odps::DataProduct;
use crate::tree::Span;
use crate::version::{self, SemVer};

/// One linted text: its documents and every problem found in it.
#[derive(Clone, Debug)]
pub struct Linted {
    pub path: String,
    pub text: String,
    pub documents: Vec<Loaded>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Linted {
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

/// Lints one text on its own; `path` names it in messages, and a `*.json` path makes it
/// strict JSON.
pub fn lint_text(path: impl Into<String>, text: impl Into<String>) -> Linted {
    let (path, text) = (path.into(), text.into());
    let loaded = document::load_file(&path, &text);
    let mut diagnostics = loaded.diagnostics;
    for doc in &loaded.documents {
        diagnostics.extend(doc.diagnostics.iter().cloned());
        match &doc.document {
            Some(Document::Contract(c)) => contract::check(c, &doc.node, &mut diagnostics),
            Some(Document::Product(p)) => check_product(p, &mut diagnostics),
            Some(Document::Policy(_) | Document::Exemption(_)) | None => {}
        }
    }
    diag::sort(&mut diagnostics);
    Linted { path, text, documents: loaded.documents, diagnostics }
}

/// Adds the problems that only the set of files shows.
pub fn lint_across(files: &mut [Linted]) {
    let mut seen: HashMap<(String, String, String), (String, Span)> = HashMap::new();
    let mut contract_ids = std::collections::HashSet::new();
    let mut found: Vec<(usize, Diagnostic)> = Vec::new();
    for (index, file) in files.iter().enumerate() {
        for doc in file.documents.iter().filter_map(|d| d.document.as_ref()) {
            if let Document::Contract(c) = doc {
                contract_ids.insert(c.id.clone());
            }
            let version = doc.version().map(version::canonical);
            let key = (doc.kind().to_string(), doc.id().to_string(), version.unwrap_or_default());
            let span = match doc {
                Document::Contract(c) => c.at.field("id"),
                Document::Product(p) => p.at.field("id"),
                Document::Policy(p) => p.at.field("id"),
                Document::Exemption(e) => e.at.field("id"),
            };
            match seen.get(&key) {
                Some((path, first)) => found.push((
                    index,
                    Diagnostic::new(
                        Code::DuplicateDocument,
                        span,
                        format!(
                            "{} `{}` version `{}` is also defined in {path}:{}",
                            key.0, key.1, key.2, first.start.line
                        ),
                    )
                    .hint("give one of them a new id or a new version"),
                )),
                None => {
                    seen.insert(key, (file.path.clone(), span));
                }
            }
        }
    }
    for (index, file) in files.iter().enumerate() {
        for doc in file.documents.iter().filter_map(|d| d.document.as_ref()) {
            let Document::Product(product) = doc else {
                continue;
            };
            let inputs = product.input_ports().iter().map(|p| (Some(&p.contract_id), &p.at, "input"));
            let outputs = product.output_ports().iter().map(|p| (p.contract_id.as_ref(), &p.at, "output"));
            for (contract_id, at, side) in inputs.chain(outputs) {
                if let Some(id) = contract_id
                    && !contract_ids.contains(id)
                {
                    found.push((
                        index,
                        Diagnostic::new(Code::PortUnknownContract, at.field("contractId"), format!("{side} port names contract `{id}`, which no linted file defines"))
                            .hint("fine when the contract lives elsewhere; lint it together with this product to check the link"),
                    ));
                }
            }
        }
    }
    for (index, d) in found {
        files[index].diagnostics.push(d);
    }
    for file in files {
        diag::sort(&mut file.diagnostics);
    }
}

/// Applies `--strict`: every warning becomes an error.
pub fn make_strict(files: &mut [Linted]) {
    for d in files.iter_mut().flat_map(|f| f.diagnostics.iter_mut()) {
        d.severity = Severity::Error;
    }
}

pub(crate) fn check_version(version: &str, span: Span, what: &str, out: &mut Vec<Diagnostic>) {
    if !version.is_empty() && SemVer::parse(version).is_none() {
        out.push(
            Diagnostic::new(Code::NotSemver, span, format!("{what} version `{version}` is not a semantic version"))
                .hint("write MAJOR.MINOR.PATCH, e.g. 1.0.0; without it, breaking-change checks cannot compare major versions"),
        );
    }
}

fn check_product(product: &DataProduct, out: &mut Vec<Diagnostic>) {
    if let Some(version) = &product.version {
        check_version(version, product.at.field("version"), "product", out);
    }
    let mut ports: HashMap<(String, String), Span> = HashMap::new();
    for port in product.output_ports() {
        check_version(&port.version, port.at.field("version"), "output port", out);
        let version = version::canonical(&port.version);
        let span = port.at.field("name");
        if let Some(first) = ports.insert((port.name.clone(), version), span) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateId,
                    span,
                    format!("output port `{}` version `{}` is declared twice", port.name, port.version),
                )
                .hint(format!(
                    "an output port is identified by name and version; the first is at line {}",
                    first.start.line
                )),
            );
        }
    }
    for port in product.input_ports() {
        check_version(&port.version, port.at.field("version"), "input port", out);
    }
}

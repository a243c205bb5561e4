//! From text to typed documents: recognise the kind and version, then decode.
//!
//! A text may hold several YAML documents (`---`); each is recognised on its own by its
//! `kind` and `apiVersion`. When `kind` or `apiVersion` is missing the document is still
//! decoded, against the newest version of the standard its other fields suggest, so the
//! user sees every other problem too.

use serde::Serialize;

use crate::decode::{Cx, DocVersion};
use crate::diag::{Code, Diagnostic};
use crate::model::odcs::{DataContract, decode_contract};
use crate::model::odps::{DataProduct, decode_product};
use crate::model::policy::{Exemption, Policy, decode_exemption, decode_policy};
use crate::tree::{self, Node, Span};

/// A typed document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Document {
    Contract(Box<DataContract>),
    Product(Box<DataProduct>),
    Policy(Box<Policy>),
    Exemption(Box<Exemption>),
}

impl Document {
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Contract(_) => "DataContract",
            Document::Product(_) => "DataProduct",
            Document::Policy(_) => "Policy",
            Document::Exemption(_) => "PolicyExemption",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Document::Contract(c) => &c.id,
            Document::Product(p) => &p.id,
            Document::Policy(p) => &p.id,
            Document::Exemption(e) => &e.id,
        }
    }

    pub fn version(&self) -> Option<&str> {
        match self {
            Document::Contract(c) => Some(&c.version),
            Document::Product(p) => p.version.as_deref(),
            Document::Policy(p) => Some(&p.version),
            Document::Exemption(e) => Some(&e.version),
        }
    }
}

/// One document of a text: the model (when its kind was recognised), the version it was
/// read against, and every problem found.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub document: Option<Document>,
    pub version: Option<DocVersion>,
    pub node: Node,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Everything read from one text.
#[derive(Clone, Debug, Default)]
pub struct Text {
    pub documents: Vec<Loaded>,
    /// Problems of the text as a whole (syntax errors, duplicate keys).
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and decodes every document of a text.
pub fn load(text: &str) -> Text {
    decode_all(read(text))
}

/// Parses and decodes every document of the file `path` holds: as [`load`] does, except that
/// a file named `*.json` is strict JSON (a YAML text there is a syntax error, not YAML).
pub fn load_file(path: &str, text: &str) -> Text {
    if path.to_ascii_lowercase().ends_with(".json") {
        decode_all(crate::json::parse(text.trim_start_matches('\u{feff}')))
    } else {
        load(text)
    }
}

fn decode_all(read: Result<tree::Parsed, tree::SyntaxError>) -> Text {
    let parsed = match read {
        Ok(parsed) => parsed,
        Err(err) => {
            return Text {
                documents: Vec::new(),
                diagnostics: vec![Diagnostic::new(Code::Syntax, err.span, err.message)],
            };
        }
    };
    let diagnostics = parsed
        .duplicate_keys
        .iter()
        .map(|d| {
            Diagnostic::new(Code::DuplicateKey, d.again, format!("key `{}` appears twice in one mapping", d.key))
                .hint(format!("the first `{}` is at line {}; only that one is read", d.key, d.first.start.line))
        })
        .collect();
    Text { documents: parsed.documents.into_iter().map(load_node).collect(), diagnostics }
}

/// Reads a text as JSON when it looks like JSON (YAML parsers refuse some valid JSON), as
/// YAML otherwise. A YAML flow mapping also starts with `{`, so a text that fails as JSON
/// but reads as YAML is YAML; when both fail, the JSON error is the precise one.
pub fn read(text: &str) -> Result<tree::Parsed, tree::SyntaxError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with(['{', '[']) {
        return crate::json::parse(text.trim_start_matches('\u{feff}'))
            .or_else(|json_error| tree::parse(text).map_err(|_| json_error));
    }
    tree::parse(text)
}

/// How many documents this process has decoded into the typed model (for tests that prove a
/// document is decoded once, not once per use).
static DECODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of documents decoded so far by this process.
pub fn decoded() -> u64 {
    DECODED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The typed document a stored document (its JSON form) holds, if it holds one.
pub fn decode_json(value: &serde_json::Value) -> Option<Document> {
    load(&value.to_string()).documents.pop()?.document
}

/// Recognises and decodes one document node.
pub fn load_node(node: Node) -> Loaded {
    DECODED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut early = Vec::new();
    let Some(version) = recognise(&node, &mut early) else {
        return Loaded { document: None, version: None, node, diagnostics: early };
    };
    let mut cx = Cx::new(version);
    cx.diagnostics = early;
    let document = match version {
        DocVersion::Meshplane1 if node.get("kind").and_then(Node::as_str) == Some("PolicyExemption") => {
            decode_exemption(&node, &mut cx).map(|e| Document::Exemption(Box::new(e)))
        }
        DocVersion::Meshplane1 => decode_policy(&node, &mut cx).map(|p| Document::Policy(Box::new(p))),
        v if v.is_odcs() => decode_contract(&node, &mut cx).map(|c| Document::Contract(Box::new(c))),
        _ => decode_product(&node, &mut cx).map(|p| Document::Product(Box::new(p))),
    };
    Loaded { document, version: Some(version), node, diagnostics: cx.diagnostics }
}

const ODCS_VERSIONS: &[DocVersion] =
    &[DocVersion::Odcs300, DocVersion::Odcs301, DocVersion::Odcs302, DocVersion::Odcs310, DocVersion::Odcs320];
const ODPS_VERSIONS: &[DocVersion] = &[DocVersion::Odps090, DocVersion::Odps100];

/// The version of a document of meshplane's own kinds: `meshplane/v1`, the only one.
fn recognise_own(
    api: Option<(Option<&str>, Span)>,
    node: &Node,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<DocVersion> {
    let own = DocVersion::Meshplane1.api_version();
    match api {
        Some((Some(text), _)) if text == own => {}
        Some((_, span)) => diagnostics.push(
            Diagnostic::new(Code::UnsupportedApiVersion, span, "meshplane's own kinds have `apiVersion: meshplane/v1`")
                .hint(format!("write `apiVersion: {own}`")),
        ),
        None => diagnostics.push(
            Diagnostic::new(
                Code::MissingField,
                Span::at(node.span.start.line, node.span.start.col),
                "the document has no `apiVersion`",
            )
            .hint(format!("add `apiVersion: {own}`; the document was checked against it")),
        ),
    }
    Some(DocVersion::Meshplane1)
}

/// Decides which standard and version a document is read against.
fn recognise(node: &Node, diagnostics: &mut Vec<Diagnostic>) -> Option<DocVersion> {
    if node.entries().is_none() {
        diagnostics.push(Diagnostic::new(
            Code::WrongType,
            node.span,
            format!("a document must be a mapping with `kind` and `apiVersion`, found {}", node.value.type_name()),
        ));
        return None;
    }
    let field = |key: &str| node.get(key).map(|n| (n.as_str(), n.span));
    if let Some(dcs) = node.get("dataContractSpecification") {
        // datacontract-cli's first format: another layout altogether, so nothing else of it
        // is checked against ODCS.
        let version = dcs.as_str().map_or(String::new(), |v| format!(" {v}"));
        diagnostics.push(
            Diagnostic::new(
                Code::DataContractSpecification,
                dcs.span,
                format!("this is a Data Contract Specification{version} document (datacontract-cli's first format), not ODCS"),
            )
            .hint("meshplane reads ODCS v3 (`apiVersion: v3.1.0`, `kind: DataContract`): convert it, e.g. with `datacontract export --format odcs`"),
        );
        return None;
    }
    let api = field("apiVersion");
    let kind = match field("kind") {
        Some((Some(kind), span)) => Some((kind, span)),
        Some((None, span)) => {
            diagnostics.push(Diagnostic::new(Code::WrongType, span, "`kind` must be a string"));
            return None;
        }
        None => None,
    };
    let is_contract = match kind {
        Some(("DataContract", _)) => true,
        Some(("DataProduct", _)) => false,
        Some(("Policy" | "PolicyExemption", _)) => return recognise_own(api, node, diagnostics),
        Some((other, span)) => {
            diagnostics.push(
                Diagnostic::new(Code::UnknownKind, span, format!("`{other}` is not a kind meshplane reads")).hint(
                    "use `kind: DataContract` (ODCS), `kind: DataProduct` (ODPS) or `kind: Policy` (meshplane/v1)",
                ),
            );
            return None;
        }
        None => {
            // Guess from the apiVersion so the rest of the document is still checked.
            let guess = !matches!(api, Some((Some("v0.9.0" | "v1.0.0"), _)));
            diagnostics.push(
                Diagnostic::new(Code::MissingField, node.span, "the document has no `kind`")
                    .hint("add `kind: DataContract` (ODCS) or `kind: DataProduct` (ODPS)"),
            );
            guess
        }
    };
    let (known, latest, standard) = if is_contract {
        (ODCS_VERSIONS, DocVersion::Odcs320, "ODCS")
    } else {
        (ODPS_VERSIONS, DocVersion::Odps100, "ODPS")
    };
    let names = || known.iter().map(|v| v.api_version()).collect::<Vec<_>>().join(", ");
    match api {
        Some((Some(text), span)) => match known.iter().find(|v| v.api_version() == text) {
            Some(v) => Some(*v),
            None => {
                let mut d = Diagnostic::new(
                    Code::UnsupportedApiVersion,
                    span,
                    format!("`{text}` is not a version of {standard} that meshplane reads"),
                )
                .hint(format!("use one of: {}", names()));
                if text.starts_with("v2.") {
                    d = d.hint(format!(
                        "ODCS v2 documents have another layout: convert them to v3 (one of: {})",
                        names()
                    ));
                } else if !text.starts_with('v') && known.iter().any(|v| &v.api_version()[1..] == text) {
                    d = d.hint(format!("write `apiVersion: v{text}`"));
                }
                diagnostics.push(d);
                None
            }
        },
        Some((None, span)) => {
            diagnostics.push(
                Diagnostic::new(Code::WrongType, span, "`apiVersion` must be a string")
                    .hint(format!("use one of: {}", names())),
            );
            None
        }
        None => {
            diagnostics.push(
                Diagnostic::new(
                    Code::MissingField,
                    Span::at(node.span.start.line, node.span.start.col),
                    "the document has no `apiVersion`",
                )
                .hint(format!("add `apiVersion: {}`; the document was checked against it", latest.api_version())),
            );
            Some(latest)
        }
    }
}

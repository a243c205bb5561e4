//! Decoding the document tree into typed models, collecting every problem on the way.
//!
//! Decoding never stops at the first problem: a missing required field is reported and
//! replaced by its default, a value of the wrong type is reported and skipped, an unknown
//! field is reported when its object is finished. The result is a best-effort model that
//! the lint rules can still inspect, plus the full list of diagnostics. Callers that need a
//! trustworthy model (the server) refuse it when any diagnostic is an error.

use serde_json::Value as Any;

use crate::diag::{Code, Diagnostic};
use crate::tree::{Node, Span, Value};

/// The standard and version a document declares; fields are allowed or not by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocVersion {
    Odcs300,
    Odcs301,
    Odcs302,
    Odcs310,
    Odcs320,
    Odps090,
    Odps100,
    /// meshplane's own kinds (`apiVersion: meshplane/v1`).
    Meshplane1,
}

impl DocVersion {
    pub fn is_odcs(self) -> bool {
        self <= DocVersion::Odcs320
    }

    pub fn api_version(self) -> &'static str {
        match self {
            DocVersion::Odcs300 => "v3.0.0",
            DocVersion::Odcs301 => "v3.0.1",
            DocVersion::Odcs302 => "v3.0.2",
            DocVersion::Odcs310 => "v3.1.0",
            DocVersion::Odcs320 => "v3.2.0",
            DocVersion::Odps090 => "v0.9.0",
            DocVersion::Odps100 => "v1.0.0",
            DocVersion::Meshplane1 => "meshplane/v1",
        }
    }

    fn standard(self) -> &'static str {
        match self {
            DocVersion::Meshplane1 => "meshplane",
            v if v.is_odcs() => "ODCS",
            _ => "ODPS",
        }
    }

    /// True when `self` is `min` or a later version of the same standard.
    pub fn at_least(self, min: DocVersion) -> bool {
        self.is_odcs() == min.is_odcs() && self >= min
    }
}

/// Where a model element came from: its own span and the spans of its fields' values.
/// Always equal to any other `At`, so models compare by content.
#[derive(Clone, Debug, Default)]
pub struct At {
    pub span: Span,
    pub fields: Vec<(&'static str, Span)>,
}

impl PartialEq for At {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl At {
    /// The span of a field's value, or of the whole element when the field is absent.
    pub fn field(&self, key: &str) -> Span {
        self.fields.iter().find(|(k, _)| *k == key).map_or(self.span, |(_, s)| *s)
    }
}

/// The decoding context: the document's version and the problems found so far.
pub struct Cx {
    pub version: DocVersion,
    pub diagnostics: Vec<Diagnostic>,
}

impl Cx {
    pub fn new(version: DocVersion) -> Cx {
        Cx { version, diagnostics: Vec::new() }
    }

    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn wrong_type(&mut self, node: &Node, expected: &str) {
        let mut d = Diagnostic::new(
            Code::WrongType,
            node.span,
            format!("expected {expected}, found {}", node.value.type_name()),
        );
        if expected == "a string" && matches!(node.value, Value::Int(_) | Value::Float(_) | Value::Bool(_)) {
            d = d.hint("YAML reads this unquoted value as a number or boolean: put it in quotes");
        }
        self.report(d);
    }
}

/// A type that can be decoded from a node.
pub trait Decode: Sized {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self>;
}

impl Decode for String {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                cx.wrong_type(node, "a string");
                None
            }
        }
    }
}

impl Decode for bool {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                cx.wrong_type(node, "a boolean (true or false)");
                None
            }
        }
    }
}

impl Decode for i64 {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match node.value {
            Value::Int(i) => Some(i),
            _ => {
                cx.wrong_type(node, "an integer");
                None
            }
        }
    }
}

impl Decode for f64 {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => {
                cx.wrong_type(node, "a number");
                None
            }
        }
    }
}

impl Decode for Any {
    fn decode(node: &Node, _: &mut Cx) -> Option<Self> {
        Some(node.to_json())
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match &node.value {
            Value::Seq(items) => Some(items.iter().filter_map(|item| T::decode(item, cx)).collect()),
            _ => {
                cx.wrong_type(node, "a list");
                None
            }
        }
    }
}

impl<T: Decode> Decode for Box<T> {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        T::decode(node, cx).map(Box::new)
    }
}

/// A JSON-like mapping kept as it was written (e.g. a quality rule's `arguments`).
pub type AnyMap = serde_json::Map<String, Any>;

impl Decode for AnyMap {
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match node.to_json() {
            Any::Object(map) => Some(map),
            _ => {
                cx.wrong_type(node, "a mapping");
                None
            }
        }
    }
}

/// A scalar that is not a collection (string, number, boolean or null).
pub fn scalar(node: &Node, cx: &mut Cx) -> Option<Any> {
    if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
        cx.wrong_type(node, "a string, number, boolean or null");
        return None;
    }
    Some(node.to_json())
}

/// Reads the fields of one mapping. Every field read is marked; [`Obj::finish`] reports
/// those that were not, as unknown at this place.
pub struct Obj<'n, 'c> {
    pub cx: &'c mut Cx,
    node: &'n Node,
    what: &'static str,
    used: Vec<bool>,
    /// Every field asked for, present or not: the names an unknown field is compared with.
    asked: Vec<&'static str>,
    at: At,
}

impl<'n, 'c> Obj<'n, 'c> {
    /// Starts reading `node` as the mapping `what` (used in messages); reports and returns
    /// `None` when it is not a mapping.
    pub fn new(cx: &'c mut Cx, node: &'n Node, what: &'static str) -> Option<Obj<'n, 'c>> {
        let Some(entries) = node.entries() else {
            cx.wrong_type(node, &format!("a mapping ({what})"));
            return None;
        };
        let used = vec![false; entries.len()];
        Some(Obj { cx, node, what, used, asked: Vec::new(), at: At { span: node.span, fields: Vec::new() } })
    }

    pub fn version(&self) -> DocVersion {
        self.cx.version
    }

    /// The raw node of a field, marking it read.
    pub fn node(&mut self, key: &'static str) -> Option<&'n Node> {
        self.asked.push(key);
        let entries = self.node.entries()?;
        let index = entries.iter().position(|e| e.key == key)?;
        self.used[index] = true;
        // A collection is pointed at by its key: its own span starts on the next line.
        let entry = &entries[index];
        let span =
            if matches!(entry.value.value, Value::Map(_) | Value::Seq(_)) { entry.key_span } else { entry.value.span };
        self.at.fields.push((key, span));
        Some(&entries[index].value)
    }

    /// An optional field.
    pub fn opt<T: Decode>(&mut self, key: &'static str) -> Option<T> {
        let node = self.node(key)?;
        T::decode(node, self.cx)
    }

    /// An optional field decoded by a function instead of a [`Decode`] impl.
    pub fn opt_with<T>(&mut self, key: &'static str, decode: impl FnOnce(&Node, &mut Cx) -> Option<T>) -> Option<T> {
        let node = self.node(key)?;
        decode(node, self.cx)
    }

    /// A required field; reported and defaulted when missing.
    pub fn req<T: Decode + Default>(&mut self, key: &'static str) -> T {
        if !self.has(key) {
            self.missing(key);
            return T::default();
        }
        self.opt(key).unwrap_or_default()
    }

    /// An optional field that exists only from version `since` of the standard on. Under an
    /// earlier version of the same standard it is a warning (the field is understood and
    /// kept); under the other standard it is an unknown field.
    pub fn since<T: Decode>(&mut self, key: &'static str, since: DocVersion) -> Option<T> {
        if self.has(key) && !self.version().at_least(since) {
            let span = self.key_span(key);
            let version = self.version();
            let diagnostic = if since.is_odcs() == version.is_odcs() {
                Diagnostic::new(
                    Code::NotInVersion,
                    span,
                    format!("`{key}` is not part of {} {}", version.standard(), version.api_version()),
                )
                .hint(format!("set `apiVersion: {}` or later", since.api_version()))
            } else {
                unknown_field(key, span, self.what, &[]).hint(format!("only {} defines `{key}` here", since.standard()))
            };
            self.cx.report(diagnostic);
        }
        self.opt(key)
    }

    /// An optional string field whose value must be one of `allowed`.
    pub fn one_of(&mut self, key: &'static str, allowed: &[&str]) -> Option<String> {
        let value: String = self.opt(key)?;
        if !allowed.contains(&value.as_str()) {
            let span = self.at.field(key);
            self.cx.report(
                Diagnostic::new(Code::InvalidValue, span, format!("`{value}` is not a valid {key}"))
                    .hint(format!("use one of: {}", allowed.join(", "))),
            );
        }
        Some(value)
    }

    /// The span of a field's value once read (its key for collections).
    pub fn span_of(&self, key: &str) -> Span {
        self.at.field(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.node.get(key).is_some()
    }

    /// The span of a key itself (or of the whole mapping when the key is absent).
    pub fn key_span(&self, key: &str) -> Span {
        self.node
            .entries()
            .and_then(|entries| entries.iter().find(|e| e.key == key))
            .map_or(self.node.span, |e| e.key_span)
    }

    pub fn missing(&mut self, key: &str) {
        let what = self.what;
        self.cx.report(Diagnostic::new(
            Code::MissingField,
            self.node.span,
            format!("{what} is missing required field `{key}`"),
        ));
    }

    /// Reports the field as deprecated when present, with a hint on what to use instead.
    pub fn deprecated(&mut self, key: &str, instead: &str) {
        if self.has(key) {
            let span = self.key_span(key);
            let version = self.version();
            self.cx.report(
                Diagnostic::new(
                    Code::Deprecated,
                    span,
                    format!("`{key}` is deprecated in {} {}", version.standard(), version.api_version()),
                )
                .hint(instead.to_string()),
            );
        }
    }

    /// Reports every field that was not read, and returns where the element came from.
    pub fn finish(self) -> At {
        if let Some(entries) = self.node.entries() {
            for (entry, used) in entries.iter().zip(&self.used) {
                if !used {
                    self.cx.report(unknown_field(&entry.key, entry.key_span, self.what, &self.asked));
                }
            }
        }
        self.at
    }

    /// Marks a field as read without decoding it, e.g. when another rule reports it.
    pub fn skip(&mut self, key: &'static str) {
        self.node(key);
    }
}

fn unknown_field(key: &str, span: Span, what: &str, known: &[&str]) -> Diagnostic {
    let custom = "custom fields go in `customProperties` as `- property: name` / `value: ...`";
    let hint = match crate::suggest::closest(key, known.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? ({custom})"),
        None => custom.to_string(),
    };
    Diagnostic::new(Code::UnknownField, span, format!("unknown field `{key}` in {what}")).hint(hint)
}

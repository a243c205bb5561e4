//! The document tree: every node of a YAML or JSON document with the span it came from.
//!
//! Everything meshplane reads starts here, so that every later diagnostic can point at a
//! line and column. Scalars are resolved with the YAML 1.2 core schema, never YAML 1.1:
//! an unquoted `2024-05-01` or `09:00-08:00` stays a string (an official ODCS example relies
//! on that), and only `true`/`false` are booleans. JSON is read by the same parser, since JSON
//! is a subset of YAML 1.2; this keeps one code path and one notion of position.
//!
//! Invariants: keys of a mapping are strings (a scalar key is kept as its text; a collection
//! used as a key is a syntax error); aliases are expanded, within a budget of nodes and of
//! bytes of text that grows with the text's own length ([`Budget`]), and every expansion is
//! counted — an alias by the size of what it stands for, an anchor by the copy kept of it —
//! *before* it is made, so a hostile document (an "anchor bomb") is refused having allocated
//! no more than a few times its own size.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as RawSpan};

/// A position in a source text: 1-based line, 1-based column counted in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A range of a source text. Two spans always compare equal, so that models carrying spans
/// compare by content only (a re-parsed document has other positions but the same meaning).
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl PartialEq for Span {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Span {
    /// A span covering a single position.
    pub fn at(line: u32, col: u32) -> Span {
        let pos = Pos { line, col };
        Span { start: pos, end: pos }
    }

    fn from_raw(raw: RawSpan) -> Span {
        Span { start: pos(raw.start.line(), raw.start.col()), end: pos(raw.end.line(), raw.end.col()) }
    }
}

fn pos(line: usize, col0: usize) -> Pos {
    Pos { line: u32::try_from(line).unwrap_or(u32::MAX), col: u32::try_from(col0 + 1).unwrap_or(u32::MAX) }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One node of the tree with the span of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// One `key: value` pair of a mapping, in document order.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

/// The value of a node after YAML 1.2 core-schema resolution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Value {
    /// A short name of the node's type, as a user would say it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to a JSON value. Non-finite floats, which JSON cannot hold, become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(J::Number).unwrap_or_else(|| J::String(f.to_string()))
            }
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }
}

/// A problem that stops a text from being read as a tree at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

/// A mapping key that appears twice; the first occurrence wins, the others are reported.
#[derive(Clone, Debug, PartialEq)]
pub struct DuplicateKey {
    pub key: String,
    pub first: Span,
    pub again: Span,
}

/// The documents of one source text plus the duplicate keys found while reading them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub documents: Vec<Node>,
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// How many nodes one text may expand to (aliases included) before it is refused, at most.
pub const MAX_NODES: usize = 1_000_000;
/// How deep collections may nest before the text is refused.
pub const MAX_DEPTH: usize = 256;

/// What one text may expand to, aliases included: nodes and bytes of scalar text (keys and
/// values). A text without aliases never comes near it; with aliases, it may grow to about
/// four times its length in text and twice its length in nodes (and at least 1 MiB and
/// 10,000 nodes, for small documents that reuse anchors a lot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub nodes: usize,
    pub bytes: usize,
}

impl Budget {
    /// The budget of a text of `len` bytes.
    pub fn of(len: usize) -> Budget {
        Budget { nodes: len.saturating_mul(2).clamp(10_000, MAX_NODES), bytes: len.saturating_mul(4).max(1 << 20) }
    }
}

/// The size of a node and everything under it, as the budget counts it.
#[derive(Clone, Copy, Debug, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn of(node: &Node) -> Size {
        let own = match &node.value {
            Value::Str(s) => s.len(),
            _ => 0,
        };
        let mut size = Size { nodes: 1, bytes: own };
        match &node.value {
            Value::Seq(items) => items.iter().for_each(|n| size.add(Size::of(n))),
            Value::Map(entries) => {
                for e in entries {
                    size.add(Size { nodes: 1, bytes: e.key.len() });
                    size.add(Size::of(&e.value));
                }
            }
            _ => {}
        }
        size
    }

    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Reads every document of a YAML (or JSON) text.
pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut builder = Builder { budget: Budget::of(text.len()), ..Builder::default() };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(item)) => item,
            Some(Err(err)) => return Err(scan_error(&err)),
        };
        let span = Span::from_raw(span);
        if !builder.event(event, span)? {
            break;
        }
    }
    Ok(Parsed { documents: builder.documents, duplicate_keys: builder.duplicate_keys })
}

fn scan_error(err: &ScanError) -> SyntaxError {
    let mark = err.marker();
    SyntaxError {
        message: err.info().to_string(),
        span: Span { start: pos(mark.line(), mark.col()), end: pos(mark.line(), mark.col()) },
    }
}

enum Open {
    Seq(Vec<Node>, Span, usize),
    Map(OpenMap, Span, usize),
}

/// A mapping being read: its entries, where each key is among them (so that a repeated key
/// is found at once, however many there are), and the key waiting for its value.
#[derive(Default)]
struct OpenMap {
    entries: Vec<Entry>,
    keys: HashMap<String, usize>,
    pending: Option<(String, Span)>,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Each anchor's node and its size (counted once when the anchor is kept), by the
    /// parser's anchor id.
    anchors: HashMap<usize, (Node, Size)>,
    documents: Vec<Node>,
    duplicate_keys: Vec<DuplicateKey>,
    budget: Budget,
    spent: Size,
}

impl Builder {
    /// Feeds one event; returns false at the end of the stream.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, SyntaxError> {
        match event {
            Event::StreamEnd => return Ok(false),
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {}
            Event::Alias(id) => {
                let size = self
                    .anchors
                    .get(&id)
                    .map(|(_, size)| *size)
                    .ok_or_else(|| SyntaxError { message: "alias refers to an unknown anchor".into(), span })?;
                // Counted before the copy is made.
                self.count(size, span)?;
                let value = self.anchors.get(&id).map(|(node, _)| node.value.clone()).unwrap_or(Value::Null);
                self.push(Node { value, span }, 0)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(Size { nodes: 1, bytes: text.len() }, span)?;
                let core_tag = tag.as_ref().filter(|t| t.is_yaml_core_schema()).map(|t| t.suffix.clone());
                let value = resolve_scalar(&text, style, core_tag.as_deref(), span)?;
                self.push(Node { value, span }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.count(Size { nodes: 1, bytes: 0 }, span)?;
                self.check_depth(span)?;
                self.stack.push(Open::Seq(Vec::new(), span, anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.count(Size { nodes: 1, bytes: 0 }, span)?;
                self.check_depth(span)?;
                self.stack.push(Open::Map(OpenMap::default(), span, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, start, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, start, anchor)) => (Value::Seq(items), start, anchor),
                    Some(Open::Map(map, start, anchor)) => (Value::Map(map.entries), start, anchor),
                    None => {
                        return Err(SyntaxError { message: "unbalanced collection".into(), span });
                    }
                };
                let span = Span { start: start.start, end: span.end };
                self.push(Node { value, span }, anchor)?;
            }
        }
        Ok(true)
    }

    /// Spends `size` of the budget, or refuses the text when it would go past it.
    fn count(&mut self, size: Size, span: Span) -> Result<(), SyntaxError> {
        self.spent.add(size);
        let Budget { nodes, bytes } = self.budget;
        if self.spent.nodes > nodes || self.spent.bytes > bytes {
            return Err(SyntaxError {
                message: format!(
                    "the text expands to more than {nodes} nodes or {} KiB of text (its aliases repeat too much: \
                     an alias bomb?)",
                    bytes / 1024
                ),
                span,
            });
        }
        Ok(())
    }

    fn check_depth(&self, span: Span) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError { message: format!("collections nest deeper than {MAX_DEPTH} levels"), span });
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            // The copy kept for later aliases is counted like any other.
            let size = Size::of(&node);
            self.count(size, node.span)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(map, ..)) => match map.pending.take() {
                None => {
                    let key = match node.value {
                        Value::Str(s) => s,
                        Value::Null => String::new(),
                        Value::Bool(b) => b.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(SyntaxError {
                                message: "a mapping key must be a plain value, not a collection".into(),
                                span: node.span,
                            });
                        }
                    };
                    map.pending = Some((key, node.span));
                }
                Some((key, key_span)) => {
                    if let Some(&first) = map.keys.get(&key) {
                        let first = map.entries[first].key_span;
                        self.duplicate_keys.push(DuplicateKey { key, first, again: key_span });
                    } else {
                        map.keys.insert(key.clone(), map.entries.len());
                        map.entries.push(Entry { key, key_span, value: node });
                    }
                }
            },
        }
        Ok(())
    }
}

/// Resolves a scalar by the YAML 1.2 core schema; quoted scalars are always strings.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>, span: Span) -> Result<Value, SyntaxError> {
    let bad_tag = |what: &str| SyntaxError { message: format!("`{text}` is not a valid {what}"), span };
    match tag {
        Some("str") => return Ok(Value::Str(text.to_string())),
        Some("null") => return Ok(Value::Null),
        Some("bool") => {
            return resolve_plain(text).filter(|v| matches!(v, Value::Bool(_))).ok_or_else(|| bad_tag("boolean"));
        }
        Some("int") => {
            return resolve_plain(text).filter(|v| matches!(v, Value::Int(_))).ok_or_else(|| bad_tag("integer"));
        }
        Some("float") => {
            return match resolve_plain(text) {
                Some(Value::Int(i)) => Ok(Value::Float(i as f64)),
                Some(v @ Value::Float(_)) => Ok(v),
                _ => Err(bad_tag("number")),
            };
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    Ok(resolve_plain(text).unwrap_or_else(|| Value::Str(text.to_string())))
}

/// The non-string meaning of a plain scalar, if it has one.
fn resolve_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Value::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Value::Int);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(Value::Int);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(text.parse().ok()?),
        });
    }
    is_core_float(digits).then(|| text.parse().ok().map(Value::Float)).flatten()
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && (!int.is_empty() || !f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        parse(text).unwrap().documents.remove(0)
    }

    #[test]
    fn unquoted_dates_and_times_stay_strings() {
        let doc = one("a: 2022-10-03\nb: 09:00-08:00\nc: 1.0.0\n");
        assert_eq!(doc.get("a").unwrap().value, Value::Str("2022-10-03".into()));
        assert_eq!(doc.get("b").unwrap().value, Value::Str("09:00-08:00".into()));
        assert_eq!(doc.get("c").unwrap().value, Value::Str("1.0.0".into()));
    }

    #[test]
    fn core_schema_scalars() {
        let doc = one("a: yes\nb: true\nc: 12\nd: 1.5\ne: ~\nf: '12'\ng: 1e3\nh: 0x1F\ni: .5\n");
        let v = |k| doc.get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::Str("yes".into()));
        assert_eq!(v("b"), Value::Bool(true));
        assert_eq!(v("c"), Value::Int(12));
        assert_eq!(v("d"), Value::Float(1.5));
        assert_eq!(v("e"), Value::Null);
        assert_eq!(v("f"), Value::Str("12".into()));
        assert_eq!(v("g"), Value::Float(1000.0));
        assert_eq!(v("h"), Value::Int(31));
        assert_eq!(v("i"), Value::Float(0.5));
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let doc = one("kind: X\nschema:\n  - name: orders\n");
        let name = doc.get("schema").unwrap();
        let Value::Seq(items) = &name.value else { panic!("not a list") };
        let span = items[0].get("name").unwrap().span;
        assert_eq!((span.start.line, span.start.col), (3, 11));
    }

    #[test]
    fn json_is_read_with_positions() {
        let doc = one("{\n  \"kind\": \"DataContract\",\n  \"n\": [1, 2.5, null]\n}\n");
        assert_eq!(doc.get("kind").unwrap().span.start.line, 2);
        assert_eq!(doc.get("n").unwrap().to_json(), serde_json::json!([1, 2.5, null]));
    }

    #[test]
    fn duplicate_keys_are_reported_and_first_wins() {
        let parsed = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(parsed.duplicate_keys.len(), 1);
        assert_eq!(parsed.duplicate_keys[0].again.start.line, 3);
        assert_eq!(parsed.documents[0].get("a").unwrap().value, Value::Int(1));
    }

    #[test]
    fn many_keys_and_many_anchors_are_read_in_one_pass() {
        // 100,000 keys in one mapping, each repeated once, and 50,000 anchors each aliased:
        // compared with every earlier key or anchor, this would take billions of steps.
        let keys = 100_000;
        let mut text = String::with_capacity(keys * 40);
        for i in 0..keys {
            text.push_str(&format!("k{i}: &a{i} {i}\n"));
        }
        for i in 0..keys {
            text.push_str(&format!("k{i}: *a{}\n", keys - 1 - i));
        }
        text.push_str("last: [");
        for i in 0..keys / 2 {
            text.push_str(&format!("*a{i}, "));
        }
        text.push_str("x]\n");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.duplicate_keys.len(), keys);
        let again = &parsed.duplicate_keys[keys - 1];
        assert_eq!(
            (again.key.as_str(), again.first.start.line, again.again.start.line),
            ("k99999", keys as u32, 2 * keys as u32)
        );
        let doc = &parsed.documents[0];
        assert_eq!(doc.get("k7").unwrap().value, Value::Int(7), "the first value stands");
        let Value::Seq(last) = &doc.get("last").unwrap().value else { panic!("not a list") };
        assert_eq!(last[12_345].value, Value::Int(12_345), "each alias is its own anchor's value");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn long_texts_repeated_by_aliases_are_refused_before_they_are_copied() {
        // One anchor of 1 KiB, repeated by 600,000 aliases of 4 bytes each: 2.3 MiB of text
        // that would expand to 600 MB.
        let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(1024));
        text.push_str(&"*a, ".repeat(600_000));
        text.push_str("*a]\n");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
        assert!(err.span.start.line == 2, "it points at the alias that went past: {:?}", err.span);
    }

    #[test]
    fn anchors_within_the_budget_expand() {
        let text = "base: &base { type: string, required: true }\na: *base\nb: *base\n";
        let doc = one(text);
        assert_eq!(doc.get("a").unwrap().to_json(), doc.get("base").unwrap().to_json());
        let budget = Budget::of(text.len());
        assert_eq!(budget, Budget { nodes: 10_000, bytes: 1 << 20 });
        assert_eq!(Budget::of(10 << 20), Budget { nodes: MAX_NODES, bytes: 40 << 20 });
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.start.line >= 1);
    }

    #[test]
    fn collection_keys_are_refused() {
        assert!(parse("? [a, b]\n: 1\n").is_err());
    }
}

//! The changes between two versions of one contract, each classified as breaking or not,
//! and whether the version bump fits them.
//!
//! The two contracts are compared as JSON trees. Lists whose elements have a natural key
//! (objects and properties by name, servers by `server`, roles by `role`, ...) are matched by
//! that key, so reordering is not a change. Each raw change is then classified by where it
//! happened. Quality rules and SLA properties are compared as wholes: a rule's thresholds
//! become the interval of values it accepts, so "stricter" and "looser" are decided by
//! interval containment, not by guessing from operator names.
//!
//! The classification is written from the side of everyone who depends on the contract: a
//! change is breaking when data or a consumer that was fine before may stop being fine —
//! something removed, renamed, retyped or narrowed, a guarantee dropped (a property made
//! optional, an SLA weakened) or a check made stricter.

use serde::Serialize;
use serde_json::Value as Any;

use crate::model::odcs::{DataContract, OPERATORS};
use crate::model::server::ENDPOINT_FIELDS;
use crate::sla::{self, Better};
use crate::version::SemVer;

/// One change between the two versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// A stable name for the class of change, e.g. `property-removed`.
    pub code: &'static str,
    pub breaking: bool,
    /// Where, e.g. `schema[orders].properties[amount].logicalType`.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Any>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Any>,
}

/// How the version moved from the old contract to the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bump {
    Major,
    Minor,
    Patch,
    /// Only the pre-release or build part changed.
    PreRelease,
    Same,
    Downgrade,
    /// One of the versions is not a semantic version.
    Unknown,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub old_version: String,
    pub new_version: String,
    pub bump: Bump,
    pub changes: Vec<Change>,
    /// Why the bump does not fit the changes, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Report {
    pub fn breaking(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.breaking)
    }

    pub fn has_breaking(&self) -> bool {
        self.changes.iter().any(|c| c.breaking)
    }
}

/// Compares two versions of one contract.
pub fn diff(old: &DataContract, new: &DataContract) -> Report {
    let old_json = serde_json::to_value(old).unwrap_or(Any::Null);
    let new_json = serde_json::to_value(new).unwrap_or(Any::Null);
    let mut changes = Vec::new();
    walk(&mut Vec::new(), &old_json, &new_json, &mut changes);
    let bump = bump(&old.version, &new.version);
    let breaking = changes.iter().any(|c| c.breaking);
    let problem = match bump {
        Bump::Major => None,
        Bump::Unknown if breaking => Some(format!(
            "breaking changes need a new major version, but `{}` → `{}` cannot be compared: one of them is not a semantic version",
            old.version, new.version
        )),
        Bump::Downgrade => Some(format!("the new version `{}` is lower than the old `{}`", new.version, old.version)),
        _ if breaking => Some(format!(
            "{} breaking change(s) need a new major version, but `{}` → `{}` is a {} bump",
            changes.iter().filter(|c| c.breaking).count(),
            old.version,
            new.version,
            match bump {
                Bump::Minor => "minor",
                Bump::Patch => "patch",
                Bump::PreRelease => "pre-release",
                _ => "zero",
            }
        )),
        _ => None,
    };
    Report { old_version: old.version.clone(), new_version: new.version.clone(), bump, changes, problem }
}

fn bump(old: &str, new: &str) -> Bump {
    let (Some(a), Some(b)) = (SemVer::parse(old), SemVer::parse(new)) else {
        return if old.trim() == new.trim() { Bump::Same } else { Bump::Unknown };
    };
    if b < a {
        Bump::Downgrade
    } else if b.major > a.major {
        Bump::Major
    } else if b.minor > a.minor {
        Bump::Minor
    } else if b.patch > a.patch {
        Bump::Patch
    } else if a == b {
        Bump::Same
    } else {
        Bump::PreRelease
    }
}

/// One step of a path: a field, and for keyed list elements the element's key.
#[derive(Clone)]
struct Seg {
    field: String,
    key: Option<String>,
}

fn render(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match &s.key {
            Some(k) => format!("{}[{k}]", s.field),
            None => s.field.clone(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The field that identifies elements of the list `field`, if any.
fn list_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "schema" | "properties" => "name",
        "servers" => "server",
        "roles" => "role",
        "customProperties" => "property",
        "members" | "team" => "username",
        "enum" => "value",
        "support" => "channel",
        "authoritativeDefinitions" => "url",
        "synonyms" => "synonym",
        _ => return None,
    })
}

fn element_key(item: &Any, key_field: Option<&str>, index: usize) -> String {
    match key_field.and_then(|k| item.get(k)) {
        Some(Any::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => match item {
            // Plain values (tags, examples) are their own key.
            Any::String(s) => s.clone(),
            Any::Number(_) | Any::Bool(_) => item.to_string(),
            _ => format!("#{index}"),
        },
    }
}

fn walk(path: &mut Vec<Seg>, old: &Any, new: &Any, out: &mut Vec<Change>) {
    match (old, new) {
        (Any::Object(a), Any::Object(b)) => {
            let empty = Any::Array(Vec::new());
            for (field, old_value) in a {
                path.push(Seg { field: field.clone(), key: None });
                match b.get(field) {
                    Some(new_value) => field_changed(path, field, old_value, new_value, out),
                    // A whole list removed is every element removed.
                    None if old_value.is_array() => field_changed(path, field, old_value, &empty, out),
                    None => out.push(classify(path, Some(old_value), None)),
                }
                path.pop();
            }
            for (field, new_value) in b {
                if !a.contains_key(field) {
                    path.push(Seg { field: field.clone(), key: None });
                    if new_value.is_array() {
                        field_changed(path, field, &empty, new_value, out);
                    } else {
                        out.push(classify(path, None, Some(new_value)));
                    }
                    path.pop();
                }
            }
        }
        _ if old == new => {}
        _ => out.push(classify(path, Some(old), Some(new))),
    }
}

fn field_changed(path: &mut Vec<Seg>, field: &str, old: &Any, new: &Any, out: &mut Vec<Change>) {
    if old == new {
        return;
    }
    match (field, old, new) {
        ("quality", Any::Array(a), Any::Array(b)) => quality(path, a, b, out),
        ("slaProperties", Any::Array(a), Any::Array(b)) => sla_properties(path, a, b, out),
        (_, Any::Array(a), Any::Array(b)) => {
            let key_field = list_key(field);
            let keyed = |items: &[Any]| -> Vec<(String, Any)> {
                items.iter().enumerate().map(|(i, item)| (element_key(item, key_field, i), item.clone())).collect()
            };
            let (a, b) = (keyed(a), keyed(b));
            let parent = path.pop().map(|s| s.field).unwrap_or_default();
            for (key, old_item) in &a {
                path.push(Seg { field: parent.clone(), key: Some(key.clone()) });
                match b.iter().find(|(k, _)| k == key) {
                    Some((_, new_item)) => walk(path, old_item, new_item, out),
                    None => out.push(classify(path, Some(old_item), None)),
                }
                path.pop();
            }
            for (key, new_item) in &b {
                if !a.iter().any(|(k, _)| k == key) {
                    path.push(Seg { field: parent.clone(), key: Some(key.clone()) });
                    out.push(classify(path, None, Some(new_item)));
                    path.pop();
                }
            }
            path.push(Seg { field: parent, key: None });
        }
        _ => walk(path, old, new, out),
    }
}

fn change(
    path: &[Seg],
    code: &'static str,
    breaking: bool,
    message: String,
    old: Option<&Any>,
    new: Option<&Any>,
) -> Change {
    Change { code, breaking, path: render(path), message, old: old.cloned(), new: new.cloned() }
}

/// Decides what a raw change means, from where it happened.
fn classify(path: &[Seg], old: Option<&Any>, new: Option<&Any>) -> Change {
    let last = path.last().map(|s| (s.field.as_str(), s.key.as_deref())).unwrap_or(("", None));
    let parent = path.len().checked_sub(2).map(|i| path[i].field.as_str()).unwrap_or("");
    let in_schema = path.first().is_some_and(|s| s.field == "schema");
    let name = last.1.unwrap_or(last.0);
    let c = |code, breaking, message: String| change(path, code, breaking, message, old, new);
    match (last, old.is_some(), new.is_some()) {
        (("schema", Some(_)), true, false) => c("object-removed", true, format!("object `{name}` was removed")),
        (("schema", Some(_)), false, true) => c("object-added", false, format!("object `{name}` was added")),
        (("properties", Some(_)), true, false) if in_schema => {
            c("property-removed", true, format!("property `{name}` was removed"))
        }
        (("properties", Some(_)), false, true) if in_schema => {
            let required = new.and_then(|n| n.get("required")) == Some(&Any::Bool(true));
            if required {
                c(
                    "required-property-added",
                    true,
                    format!("required property `{name}` was added: data without it no longer conforms"),
                )
            } else {
                c("property-added", false, format!("optional property `{name}` was added"))
            }
        }
        (("logicalType" | "physicalType", None), ..) if in_schema => {
            let both = old.is_some() && new.is_some();
            if both || last.0 == "logicalType" {
                c("type-changed", true, format!("{} changed from {} to {}", last.0, show(old), show(new)))
            } else {
                c(
                    "type-changed",
                    false,
                    format!("{} {}", last.0, if new.is_some() { "was specified" } else { "is no longer specified" }),
                )
            }
        }
        ((option, None), ..) if parent == "logicalTypeOptions" => type_option(path, option, old, new),
        (("required", None), ..) if in_schema => {
            if new == Some(&Any::Bool(true)) {
                c("made-required", true, "the property was made required: data with nulls no longer conforms".into())
            } else if old == Some(&Any::Bool(true)) {
                c("made-optional", true, "the property is no longer required: consumers may now see nulls".into())
            } else {
                c("metadata-changed", false, "`required` was written differently".into())
            }
        }
        ((field @ ("unique" | "primaryKey"), None), ..) if in_schema => {
            if new == Some(&Any::Bool(true)) {
                c("constraint-added", true, format!("`{field}` was added: data with duplicates no longer conforms"))
            } else if old == Some(&Any::Bool(true)) {
                c("constraint-removed", true, format!("`{field}` was removed: consumers may now see duplicates"))
            } else {
                c("metadata-changed", false, format!("`{field}` was written differently"))
            }
        }
        (("enum", Some(_)), true, false) => c("enum-value-removed", true, format!("enum value {name} was removed")),
        (("enum", Some(_)), false, true) => c("enum-value-added", false, format!("enum value {name} was added")),
        (("enum", None), ..) => c("enum-changed", true, "the property's enum was added or removed".into()),
        (("physicalName", None), ..) if in_schema => {
            c("renamed", true, format!("physicalName changed from {} to {}", show(old), show(new)))
        }
        (("items" | "map", None), ..) if in_schema => {
            c("type-changed", true, format!("the `{}` definition was added or removed", last.0))
        }
        (("servers", Some(_)), true, false) => c("server-removed", true, format!("server `{name}` was removed")),
        (("servers", Some(_)), false, true) => c("server-added", false, format!("server `{name}` was added")),
        ((field, None), ..) if parent == "servers" && (field == "type" || ENDPOINT_FIELDS.contains(&field)) => {
            c("server-changed", true, format!("server endpoint `{field}` changed from {} to {}", show(old), show(new)))
        }
        (("roles", Some(_)), true, false) => {
            c("role-removed", true, format!("role `{name}` was removed: its grants lose their meaning"))
        }
        (("access", None), ..) if parent == "roles" => {
            c("role-changed", true, format!("role access changed from {} to {}", show(old), show(new)))
        }
        (("id", None), ..) if path.len() == 1 => {
            c("id-changed", true, "the contract id changed: this is another contract, not a new version".into())
        }
        _ => c(
            "metadata-changed",
            false,
            match (old, new) {
                (Some(_), Some(_)) => format!("changed from {} to {}", short(old), short(new)),
                (None, _) => "added".to_string(),
                (_, None) => "removed".to_string(),
            },
        ),
    }
}

/// A value for a one-line message: long values are cut.
fn short(value: Option<&Any>) -> String {
    let text = show(value);
    if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text }
}

fn show(value: Option<&Any>) -> String {
    value.map_or_else(|| "(none)".to_string(), |v| v.to_string())
}

/// logicalTypeOptions: a lower bound raised or an upper bound lowered narrows the values.
fn type_option(path: &[Seg], option: &str, old: Option<&Any>, new: Option<&Any>) -> Change {
    let lower = matches!(option, "minLength" | "minimum" | "exclusiveMinimum" | "minItems" | "minProperties");
    let upper = matches!(option, "maxLength" | "maximum" | "exclusiveMaximum" | "maxItems" | "maxProperties");
    let narrowed = match (old, new) {
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if lower => y > x,
            (Some(x), Some(y)) if upper => y < x,
            _ => match (a.as_str(), b.as_str()) {
                (Some(x), Some(y)) if lower => y > x,
                (Some(x), Some(y)) if upper => y < x,
                _ => true,
            },
        },
        (None, None) => false,
    };
    let (code, what) = if narrowed { ("type-narrowed", "narrowed") } else { ("type-widened", "widened") };
    change(path, code, narrowed, format!("logicalTypeOptions.{option} {what}: {} → {}", show(old), show(new)), old, new)
}

/// The values a threshold accepts, as an interval; `None` for the negated operators.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Interval {
    lo: f64,
    lo_open: bool,
    hi: f64,
    hi_open: bool,
}

impl Interval {
    fn contains(&self, other: &Interval) -> bool {
        let lo_ok = self.lo < other.lo || (self.lo == other.lo && (!self.lo_open || other.lo_open));
        let hi_ok = self.hi > other.hi || (self.hi == other.hi && (!self.hi_open || other.hi_open));
        lo_ok && hi_ok
    }
}

fn threshold(rule: &Any) -> Option<(&'static str, &Any)> {
    OPERATORS.iter().find_map(|op| rule.get(*op).map(|v| (*op, v)))
}

fn interval(op: &str, value: &Any) -> Option<Interval> {
    let inf = f64::INFINITY;
    let pair = || {
        let a = value.as_array()?;
        Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?))
    };
    let n = value.as_f64();
    Some(match op {
        "mustBe" => Interval { lo: n?, lo_open: false, hi: n?, hi_open: false },
        "mustBeGreaterThan" => Interval { lo: n?, lo_open: true, hi: inf, hi_open: true },
        "mustBeGreaterOrEqualTo" => Interval { lo: n?, lo_open: false, hi: inf, hi_open: true },
        "mustBeLessThan" => Interval { lo: -inf, lo_open: true, hi: n?, hi_open: true },
        "mustBeLessOrEqualTo" => Interval { lo: -inf, lo_open: true, hi: n?, hi_open: false },
        // The standard: mustBeBetween "is the equivalent to mustBeGreaterThan and mustBeLessThan".
        "mustBeBetween" => {
            let (lo, hi) = pair()?;
            Interval { lo, lo_open: true, hi, hi_open: true }
        }
        _ => return None,
    })
}

/// How the accepted values moved: `Some(true)` stricter, `Some(false)` looser, `None` when
/// neither contains the other.
fn strictness(old: &Any, new: &Any) -> Option<bool> {
    let (old_op, old_value) = threshold(old)?;
    let (new_op, new_value) = threshold(new)?;
    match (interval(old_op, old_value), interval(new_op, new_value)) {
        (Some(a), Some(b)) if a.contains(&b) => Some(true),
        (Some(a), Some(b)) if b.contains(&a) => Some(false),
        (Some(_), Some(_)) => None,
        // Negated operators: compare the forbidden intervals the other way round.
        _ if old_op == new_op && old_op == "mustNotBeBetween" => {
            let forbidden = |v: &Any| interval("mustBeBetween", v);
            match (forbidden(old_value), forbidden(new_value)) {
                (Some(a), Some(b)) if b.contains(&a) => Some(true),
                (Some(a), Some(b)) if a.contains(&b) => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A quality rule's identity: its id, or what it checks (type, metric or query, unit),
/// numbered when one list holds several such rules.
fn rule_keys(rules: &[Any]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for rule in rules {
        let text = |f: &str| rule.get(f).and_then(Any::as_str).unwrap_or("");
        let base = match rule.get("id").and_then(Any::as_str) {
            Some(id) => id.to_string(),
            None => {
                let what = [text("metric"), text("rule"), text("query"), text("engine"), text("description")]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or("");
                let args = rule.get("arguments").map(Any::to_string).unwrap_or_default();
                format!("{}:{what}{args}:{}", text("type"), text("unit"))
            }
        };
        let n = keys.iter().filter(|k| k.split('#').next() == Some(base.as_str())).count();
        keys.push(if n == 0 { base } else { format!("{base}#{n}") });
    }
    keys
}

fn rule_label(rule: &Any, key: &str) -> String {
    let metric = rule.get("metric").or_else(|| rule.get("rule")).and_then(Any::as_str);
    match (rule.get("id").and_then(Any::as_str), metric) {
        (Some(id), _) => id.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => key.split(':').nth(1).unwrap_or(key).chars().take(40).collect(),
    }
}

fn quality(path: &mut [Seg], old: &[Any], new: &[Any], out: &mut Vec<Change>) {
    let (old_keys, new_keys) = (rule_keys(old), rule_keys(new));
    for (key, rule) in old_keys.iter().zip(old) {
        let label = rule_label(rule, key);
        path.last_mut().expect("quality path").key = Some(label.clone());
        match new_keys.iter().position(|k| k == key) {
            None => out.push(change(
                path,
                "quality-rule-removed",
                false,
                format!("quality rule `{label}` was removed"),
                Some(rule),
                None,
            )),
            Some(i) => {
                let other = &new[i];
                if rule == other {
                    continue;
                }
                let what = |r: &Any| {
                    ["type", "metric", "rule", "query", "engine", "implementation", "arguments", "unit"]
                        .map(|f| r.get(f).cloned())
                };
                let (code, breaking, message) = if what(rule) != what(other) {
                    ("quality-rule-changed", true, format!("quality rule `{label}` now checks something else"))
                } else if threshold(rule) == threshold(other) {
                    ("metadata-changed", false, format!("quality rule `{label}` changed its description or schedule"))
                } else {
                    match strictness(rule, other) {
                        Some(true) => (
                            "quality-stricter",
                            true,
                            format!("quality rule `{label}` is stricter: data that passed may now fail"),
                        ),
                        Some(false) => ("quality-looser", false, format!("quality rule `{label}` is looser")),
                        None => ("quality-rule-changed", true, format!("quality rule `{label}` changed its threshold")),
                    }
                };
                out.push(change(path, code, breaking, message, Some(rule), Some(other)));
            }
        }
    }
    for (key, rule) in new_keys.iter().zip(new) {
        if !old_keys.contains(key) {
            let label = rule_label(rule, key);
            path.last_mut().expect("quality path").key = Some(label.clone());
            out.push(change(
                path,
                "quality-rule-added",
                true,
                format!("quality rule `{label}` was added: data that passed may now fail"),
                None,
                Some(rule),
            ));
        }
    }
    path.last_mut().expect("quality path").key = None;
}

fn sla_key(item: &Any) -> String {
    let property = item.get("property").and_then(Any::as_str).unwrap_or("");
    let name = sla::canonical(property).map_or_else(|| property.to_ascii_lowercase(), str::to_string);
    let element = item.get("element").and_then(Any::as_str).unwrap_or("");
    if element.is_empty() { name } else { format!("{name}@{element}") }
}

/// Two SLA values in comparable form: durations in seconds, other numbers as they are
/// (when both use the same unit), text as text (ISO dates order as text).
fn sla_values(a: &Any, b: &Any) -> Option<(Result<f64, String>, Result<f64, String>)> {
    let unit = |x: &Any| x.get("unit").and_then(Any::as_str).map(str::to_string);
    let same_unit = unit(a) == unit(b);
    let value = |x: &Any| -> Option<Result<f64, String>> {
        let v = x.get("value")?;
        match (v.as_f64(), unit(x)) {
            (Some(n), Some(u)) => match sla::unit_seconds(&u) {
                Some(seconds) => Some(Ok(n * seconds)),
                None if same_unit => Some(Ok(n)),
                None => None,
            },
            (Some(n), None) => Some(Ok(n)),
            (None, _) => v.as_str().map(|s| Err(s.to_string())),
        }
    };
    Some((value(a)?, value(b)?))
}

fn sla_properties(path: &mut [Seg], old: &[Any], new: &[Any], out: &mut Vec<Change>) {
    for item in old {
        let key = sla_key(item);
        path.last_mut().expect("sla path").key = Some(key.clone());
        match new.iter().find(|n| sla_key(n) == key) {
            None => out.push(change(path, "sla-removed", true, format!("SLA `{key}` was removed"), Some(item), None)),
            Some(other) if other == item => {}
            Some(other) => {
                let property = item.get("property").and_then(Any::as_str).unwrap_or("");
                let same_value = item.get("value") == other.get("value")
                    && item.get("unit") == other.get("unit")
                    && item.get("valueExt") == other.get("valueExt");
                let weaker = if same_value {
                    Some(false)
                } else {
                    let better = sla::better(property);
                    match sla_values(item, other) {
                        _ if better == Better::Unordered => None,
                        Some((Ok(a), Ok(b))) => Some(if better == Better::Higher { b < a } else { b > a }),
                        Some((Err(a), Err(b))) => Some(if better == Better::Higher { b < a } else { b > a }),
                        _ => None,
                    }
                };
                let (code, breaking, message) = match weaker {
                    Some(true) => ("sla-weaker", true, format!("SLA `{key}` is weaker")),
                    Some(false) if same_value => {
                        ("metadata-changed", false, format!("SLA `{key}` changed its description or schedule"))
                    }
                    Some(false) => ("sla-stronger", false, format!("SLA `{key}` is stronger")),
                    None => {
                        ("sla-changed", true, format!("SLA `{key}` changed and cannot be ranked stronger or weaker"))
                    }
                };
                out.push(change(path, code, breaking, message, Some(item), Some(other)));
            }
        }
    }
    for item in new {
        let key = sla_key(item);
        if !old.iter().any(|o| sla_key(o) == key) {
            path.last_mut().expect("sla path").key = Some(key.clone());
            out.push(change(path, "sla-added", false, format!("SLA `{key}` was added"), None, Some(item)));
        }
    }
    path.last_mut().expect("sla path").key = None;
}

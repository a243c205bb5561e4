//! Rules for data contracts that a JSON Schema cannot express: what makes a contract wrong
//! in practice even when every field has the right shape.

use std::collections::HashMap;

use serde_json::Value as Any;

use super::pattern;
use crate::decode::At;
use crate::diag::{Code, Diagnostic, Severity};
use crate::model::odcs::{DataContract, Property, Quality, Refs, SchemaObject};
use crate::tree::{Node, Span, Value};

pub(super) fn check(contract: &DataContract, node: &Node, out: &mut Vec<Diagnostic>) {
    super::check_version(&contract.version, contract.at.field("version"), "contract", out);
    stable_ids(node, out);
    duplicate_names(
        contract.objects().iter().map(|o| (o.name.as_str(), o.at.field("name"))),
        Code::DuplicateObject,
        "object",
        "the contract",
        out,
    );
    for object in contract.objects() {
        check_object(contract, object, out);
    }
    sla_elements(contract, out);
}

/// Every `id` below the root must be unique in the document and a valid stable id.
fn stable_ids(root: &Node, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut stack: Vec<&Node> = match &root.value {
        Value::Map(entries) => entries.iter().filter(|e| e.key != "id").map(|e| &e.value).collect(),
        _ => return,
    };
    while let Some(node) = stack.pop() {
        match &node.value {
            Value::Seq(items) => stack.extend(items),
            Value::Map(entries) => {
                for entry in entries {
                    // Values of custom properties, examples and arguments are free-form.
                    if matches!(entry.key.as_str(), "value" | "examples" | "arguments" | "implementation") {
                        continue;
                    }
                    if entry.key == "id"
                        && let Some(id) = entry.value.as_str()
                    {
                        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') || id.is_empty() {
                            out.push(
                                Diagnostic::new(
                                    Code::InvalidValue,
                                    entry.value.span,
                                    format!("`{id}` is not a valid id"),
                                )
                                .hint("ids may contain only letters, digits, `_` and `-`"),
                            );
                        }
                        if let Some(first) = seen.get(id) {
                            out.push(
                                Diagnostic::new(
                                    Code::DuplicateId,
                                    entry.value.span,
                                    format!("id `{id}` is used twice in this document"),
                                )
                                .hint(format!("ids must be unique; `{id}` is first used at line {}", first.start.line)),
                            );
                        } else {
                            seen.insert(id.to_string(), entry.value.span);
                        }
                    }
                    stack.push(&entry.value);
                }
            }
            _ => {}
        }
    }
}

fn duplicate_names<'a>(
    names: impl Iterator<Item = (&'a str, Span)>,
    code: Code,
    what: &str,
    owner: &str,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for (name, span) in names {
        if name.is_empty() {
            continue;
        }
        if let Some(first) = seen.get(name) {
            out.push(
                Diagnostic::new(code, span, format!("{what} `{name}` is declared twice in {owner}"))
                    .hint(format!("the first `{name}` is at line {}; rename or remove one of them", first.start.line)),
            );
        } else {
            seen.insert(name, span);
        }
    }
}

fn check_object(contract: &DataContract, object: &SchemaObject, out: &mut Vec<Diagnostic>) {
    let owner = format!("object `{}`", object.name);
    check_properties(contract, object, object.properties(), &owner, out);
    for rule in object.rules() {
        check_rule(rule, Level::Object(object), out);
    }
    for relationship in object.relationships.as_deref().unwrap_or_default() {
        check_relationship(contract, None, relationship.from.as_ref(), relationship.to.as_ref(), &relationship.at, out);
    }
}

fn check_properties(
    contract: &DataContract,
    object: &SchemaObject,
    properties: &[Property],
    owner: &str,
    out: &mut Vec<Diagnostic>,
) {
    duplicate_names(
        properties.iter().map(|p| (p.name.as_str(), p.at.field("name"))),
        Code::DuplicateProperty,
        "property",
        owner,
        out,
    );
    for property in properties {
        check_property(contract, object, property, out);
        if let Some(nested) = &property.properties {
            check_properties(contract, object, nested, &format!("property `{}`", property.name), out);
        }
    }
}

fn check_property(contract: &DataContract, object: &SchemaObject, property: &Property, out: &mut Vec<Diagnostic>) {
    if property.logical_type.as_deref() == Some("map") && property.map.is_none() {
        out.push(
            Diagnostic::new(
                Code::MapWithoutDefinition,
                property.at.field("logicalType"),
                format!("property `{}` is a map without a `map` block", property.name),
            )
            .hint("add `map:` with `key:` and `value:` definitions"),
        );
    }
    if let Some(values) = &property.enum_values {
        let span = property.at.field("enum");
        if values.is_empty() {
            out.push(
                Diagnostic::new(Code::EnumEmpty, span, format!("the enum of `{}` has no values", property.name))
                    .hint("list at least one `- value: ...`, or remove `enum`"),
            );
        }
        let mut seen: Vec<&Any> = Vec::new();
        for value in values {
            if seen.contains(&&value.value) {
                out.push(Diagnostic::new(
                    Code::EnumDuplicate,
                    value.at.field("value"),
                    format!("enum value {} is listed twice", value.value),
                ));
            } else {
                seen.push(&value.value);
            }
        }
    }
    if let Some(Any::String(p)) = property.option("pattern") {
        check_pattern(p, property.at.field("logicalTypeOptions"), out);
    }
    for rule in property.rules() {
        check_rule(rule, Level::Property(property), out);
    }
    for relationship in property.relationships.as_deref().unwrap_or_default() {
        check_relationship(contract, Some((object, property)), None, relationship.to.as_ref(), &relationship.at, out);
    }
    if let Some(items) = &property.items {
        check_property(contract, object, items, out);
    }
}

fn check_pattern(pattern: &str, span: Span, out: &mut Vec<Diagnostic>) {
    if let Err(refusal) = pattern::check(pattern) {
        out.push(
            Diagnostic::new(Code::InvalidPattern, span, format!("pattern `{pattern}`: {}", refusal.message))
                .hint(refusal.hint),
        );
    }
}

/// Where a quality rule is attached.
enum Level<'a> {
    Object(&'a SchemaObject),
    Property(&'a Property),
}

fn check_rule(rule: &Quality, level: Level, out: &mut Vec<Diagnostic>) {
    let at = &rule.at;
    match rule.kind() {
        "sql" => {
            if rule.query.is_none() {
                out.push(
                    Diagnostic::new(Code::QualitySqlWithoutQuery, at.span, "a sql quality rule needs a `query`")
                        .hint("add `query: SELECT COUNT(*) FROM {object} WHERE ...`"),
                );
            }
            check_operators(rule, false, out);
        }
        "custom" => {
            let missing: Vec<&str> =
                [("engine", rule.engine.is_none()), ("implementation", rule.implementation.is_none())]
                    .into_iter()
                    .filter_map(|(f, m)| m.then_some(f))
                    .collect();
            if !missing.is_empty() {
                out.push(
                    Diagnostic::new(
                        Code::QualityCustomIncomplete,
                        at.span,
                        format!(
                            "a custom quality rule needs `engine` and `implementation`; missing: {}",
                            missing.join(", ")
                        ),
                    )
                    .hint("name the engine (soda, great-expectations, ...) and give its check as `implementation`"),
                );
            }
        }
        "library" => {
            let Some(metric) = rule.metric() else {
                out.push(
                    Diagnostic::new(Code::MissingField, at.span, "a library quality rule needs a `metric`")
                        .hint("use one of: nullValues, missingValues, invalidValues, duplicateValues, rowCount (or set `type: text` for a rule in words)"),
                );
                return;
            };
            check_operators(rule, true, out);
            check_metric_level(rule, metric, &level, out);
            if metric == "invalidValues" {
                let args = rule.arguments.as_ref();
                let has = |key: &str| args.is_some_and(|a| a.contains_key(key));
                let has_enum =
                    matches!(&level, Level::Property(p) if p.enum_values.as_ref().is_some_and(|e| !e.is_empty()));
                if !has("validValues") && !has("pattern") && !has_enum {
                    out.push(
                        Diagnostic::new(Code::QualityInvalidValuesWithoutRule, at.field("metric"), "invalidValues needs something that says what is valid")
                            .hint("add `arguments: {validValues: [...]}` or `arguments: {pattern: '...'}`, or give the property an `enum` (v3.2.0)"),
                    );
                }
                if let Some(Any::String(p)) = args.and_then(|a| a.get("pattern")) {
                    check_pattern(p, at.field("arguments"), out);
                }
            }
        }
        _ => {}
    }
}

fn check_metric_level(rule: &Quality, metric: &str, level: &Level, out: &mut Vec<Diagnostic>) {
    let span = rule.at.field("metric");
    match (level, metric) {
        (Level::Property(p), "rowCount") => out.push(
            Diagnostic::new(
                Code::QualityWrongLevel,
                span,
                format!("rowCount counts the rows of an object, but this rule is on property `{}`", p.name),
            )
            .hint("move the rule to the object's `quality` list"),
        ),
        (Level::Object(o), "duplicateValues") => {
            let names = rule.arguments.as_ref().and_then(|a| a.get("properties"));
            match names {
                Some(Any::Array(names)) if !names.is_empty() => {
                    for name in names {
                        let name = name.as_str().unwrap_or_default();
                        if o.property(name).is_none() {
                            out.push(
                                Diagnostic::new(Code::QualityUnknownProperty, rule.at.field("arguments"), format!("duplicateValues names `{name}`, which object `{}` does not have", o.name))
                                    .hint(format!("properties of `{}`: {}", o.name, o.properties().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "))),
                            );
                        }
                    }
                }
                _ => out.push(
                    Diagnostic::new(Code::QualityWrongLevel, span, format!("duplicateValues on object `{}` needs `arguments.properties`: the properties whose combination must be unique", o.name))
                        .hint("add `arguments: {properties: [a, b]}`, or move the rule to a property"),
                ),
            }
        }
        (Level::Object(o), "nullValues" | "missingValues" | "invalidValues") => out.push(
            Diagnostic::new(
                Code::QualityWrongLevel,
                span,
                format!("{metric} measures one property, but this rule is on object `{}`", o.name),
            )
            .hint("move the rule to the `quality` list of the property it checks"),
        ),
        _ => {}
    }
}

fn check_operators(rule: &Quality, numeric: bool, out: &mut Vec<Diagnostic>) {
    let at = &rule.at;
    let operators = rule.operators();
    match operators.len() {
        0 => {
            out.push(
                Diagnostic::new(Code::QualityNoOperator, at.span, "the rule has no comparison operator, so nothing can pass or fail")
                    .hint("add one of mustBe, mustNotBe, mustBeGreaterThan, mustBeGreaterOrEqualTo, mustBeLessThan, mustBeLessOrEqualTo, mustBeBetween, mustNotBeBetween"),
            );
            return;
        }
        1 => {}
        _ => {
            let names: Vec<&str> = operators.iter().map(|(n, _)| *n).collect();
            out.push(
                Diagnostic::new(Code::QualityManyOperators, at.field(names[1]), format!("the rule has {} operators ({}); the standard's schema allows exactly one", names.len(), names.join(", ")))
                    .hint("the standard's prose shows mustBeGreaterThan with mustBeLessThan in one rule, but its schema refuses it: use mustBeBetween [low, high] or write two rules"),
            );
        }
    }
    let percent = rule.unit.as_deref() == Some("percent");
    for (name, value) in operators {
        let span = at.field(name);
        let bounds: Vec<f64> = match name {
            "mustBeBetween" | "mustNotBeBetween" => {
                let pair =
                    value.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
                match pair {
                    None => {
                        out.push(
                            Diagnostic::new(
                                Code::QualityBadRange,
                                span,
                                format!("{name} needs exactly two numbers, found {value}"),
                            )
                            .hint(format!("write `{name}: [low, high]`")),
                        );
                        continue;
                    }
                    Some((low, high)) if low >= high => {
                        out.push(
                            Diagnostic::new(
                                Code::QualityBadRange,
                                span,
                                format!("{name} [{low}, {high}]: the first number must be smaller than the second"),
                            )
                            .hint(if low > high {
                                format!("write `{name}: [{high}, {low}]`")
                            } else {
                                "the bounds are exclusive: two equal numbers leave no room".to_string()
                            }),
                        );
                        vec![low, high]
                    }
                    Some((low, high)) => vec![low, high],
                }
            }
            "mustBe" | "mustNotBe" if !numeric => continue,
            _ => match value.as_f64() {
                Some(n) => vec![n],
                None => {
                    out.push(Diagnostic::new(
                        Code::QualityOperatorType,
                        span,
                        format!("{name} must be a number, found {value}"),
                    ));
                    continue;
                }
            },
        };
        if percent && bounds.iter().any(|b| !(0.0..=100.0).contains(b)) {
            out.push(
                Diagnostic::new(
                    Code::QualityPercentRange,
                    span,
                    format!("{name} {value} is outside 0..100, but the rule's unit is percent"),
                )
                .hint("a percent threshold lies between 0 and 100; use `unit: rows` for counts"),
            );
        }
    }
}

/// Resolves a relationship end: `object.property` (shorthand) or
/// `[file.yaml#]/schema-section/object-id/properties/property-id` (fully qualified).
enum Resolved<'a> {
    Found,
    MissingProperty(&'a SchemaObject, String),
    External(String),
}

fn resolve<'a>(contract: &'a DataContract, reference: &str) -> Resolved<'a> {
    if reference.contains('#') {
        return Resolved::External(reference.to_string());
    }
    if reference.contains('/') {
        // schema/<object id>/properties/<property id>[/properties/<property id>...]
        let parts: Vec<&str> = reference.trim_start_matches('/').split('/').collect();
        let Some(object) = parts.get(1).and_then(|id| contract.objects().iter().find(|o| o.id.as_deref() == Some(id)))
        else {
            return Resolved::External(reference.to_string());
        };
        let mut properties = object.properties();
        for id in parts.iter().skip(3).step_by(2) {
            match properties.iter().find(|p| p.id.as_deref() == Some(id)) {
                Some(p) => properties = p.properties.as_deref().unwrap_or_default(),
                None => return Resolved::MissingProperty(object, (*id).to_string()),
            }
        }
        return Resolved::Found;
    }
    let Some((object, property)) = reference.split_once('.') else {
        return Resolved::External(reference.to_string());
    };
    match contract.object(object) {
        None => Resolved::External(object.to_string()),
        Some(o) if property_path_exists(o.properties(), property) => Resolved::Found,
        Some(o) => Resolved::MissingProperty(o, property.to_string()),
    }
}

fn property_path_exists(properties: &[Property], path: &str) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match (properties.iter().find(|p| p.name == head), rest) {
        (Some(_), None) => true,
        (Some(p), Some(rest)) => property_path_exists(p.properties.as_deref().unwrap_or_default(), rest),
        (None, _) => false,
    }
}

fn check_relationship(
    contract: &DataContract,
    owner: Option<(&SchemaObject, &Property)>,
    from: Option<&Refs>,
    to: Option<&Refs>,
    at: &At,
    out: &mut Vec<Diagnostic>,
) {
    if let (Some(from), Some(to)) = (from, to) {
        let shape_ok = match (from, to) {
            (Refs::One(_), Refs::One(_)) => true,
            (Refs::Many(a), Refs::Many(b)) => a.len() == b.len(),
            _ => false,
        };
        if !shape_ok {
            out.push(
                Diagnostic::new(
                    Code::RelationshipShape,
                    at.field("to"),
                    format!("`from` has {} reference(s) but `to` has {}", from.as_slice().len(), to.as_slice().len()),
                )
                .hint("a composite key lists the same number of properties on both sides, as lists"),
            );
        }
    }
    let ends = [("from", from), ("to", to)];
    for (field, refs) in ends {
        for reference in refs.map(Refs::as_slice).unwrap_or_default() {
            match resolve(contract, reference) {
                Resolved::Found => {}
                Resolved::MissingProperty(object, property) => out.push(
                    Diagnostic::new(
                        Code::RelationshipUnknownProperty,
                        at.field(field),
                        format!(
                            "`{reference}` names property `{property}`, which object `{}` does not have",
                            object.name
                        ),
                    )
                    .hint(format!(
                        "properties of `{}`: {}",
                        object.name,
                        object.properties().iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                ),
                Resolved::External(object) => {
                    let from_self = owner.is_some_and(|(o, _)| o.name == object);
                    if !from_self {
                        out.push(
                            Diagnostic::new(
                                Code::RelationshipExternal,
                                at.field(field),
                                format!("`{reference}` refers to `{object}`, which this contract does not define"),
                            )
                            .hint("fine when it lives in another contract; otherwise add the object or fix the name"),
                        );
                    }
                }
            }
        }
    }
}

/// SLA `element`s name `object.property`, an object, or (with one object) a property; an
/// SLA that `meshplane test` measures (latency, retention) has a duration it can read and an
/// element to measure it on.
fn sla_elements(contract: &DataContract, out: &mut Vec<Diagnostic>) {
    let objects = contract.objects();
    for sla in contract.sla_properties.as_deref().unwrap_or_default() {
        if matches!(crate::sla::canonical(&sla.property), Some("latency" | "retention")) {
            let measured = if sla.value.is_null() {
                Ok(0.0)
            } else {
                crate::sla::duration_seconds(&sla.value, sla.unit.as_deref())
            };
            if let Err(why) = measured {
                let field = if sla.unit.is_some()
                    && crate::sla::unit_seconds(sla.unit.as_deref().unwrap_or_default()).is_none()
                {
                    "unit"
                } else {
                    "value"
                };
                out.push(
                    Diagnostic::new(Code::SlaNotMeasurable, sla.at.field(field), format!("SLA `{}`: {why}", sla.property))
                        .hint("give a number with a unit of time (`unit: d`, `h`, `m`, `s`, `y`, ...) or an ISO-8601 duration such as `P1DT12H`"),
                );
            }
            if sla.element.is_none() && contract.sla_default_element.is_none() {
                out.push(
                    Diagnostic::new(Code::SlaNotMeasurable, sla.at.span, format!("SLA `{}` names no `element` to measure it on", sla.property))
                        .hint("add `element: object.property` (the timestamp column it is measured on); until then `meshplane test` skips it")
                        .severity(Severity::Warning),
                );
            }
        }
        let Some(element) = &sla.element else {
            continue;
        };
        for part in element.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let known = match part.split_once('.') {
                Some((object, property)) => {
                    contract.object(object).is_some_and(|o| property_path_exists(o.properties(), property))
                }
                None => contract.object(part).is_some() || (objects.len() == 1 && objects[0].property(part).is_some()),
            };
            if !known {
                out.push(
                    Diagnostic::new(
                        Code::SlaUnknownElement,
                        sla.at.field("element"),
                        format!("SLA element `{part}` names no object or property of this contract"),
                    )
                    .hint("write `object.property`; the object may be left out when the contract has one object")
                    .severity(Severity::Warning),
                );
            }
        }
    }
}

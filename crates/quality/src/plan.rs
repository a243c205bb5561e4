//! The check compiler: an ODCS contract becomes a plan of checks, grouped by schema object.
//!
//! The plan is pure data; executors decide how to measure it. Each check says what to measure
//! (a [`Measure`]), the threshold the measured value must satisfy, and where it came from
//! (the ODCS rule `id`, category, schedule). Checks that cannot run on data (text and custom
//! rules, SLA properties that are not about the data's age) are kept in the plan as
//! [`Measure::Skipped`] with the reason, so a report lists every rule of the contract.

use serde::Serialize;
use serde_json::Value as Any;

use meshplane_spec::model::odcs::{DataContract, Property, Quality, SchemaObject, SlaProperty};
use meshplane_spec::sla;

use crate::threshold::{Bound, Threshold};

/// Every check of a contract.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub objects: Vec<ObjectPlan>,
    /// Checks tied to no object: SLA properties that cannot be measured on data, or whose
    /// element names no object.
    pub unbound: Vec<Check>,
}

/// The checks of one schema object, measured together.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectPlan {
    /// The object's logical name (`schema[].name`).
    pub name: String,
    /// Where the data lives: `physicalName`, or the name.
    pub table: String,
    pub checks: Vec<Check>,
    /// The columns whose values are not to be shown (samples), with why: their
    /// classification (anything but `public` or `internal`), or a `pii` tag.
    pub classified: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Schema,
    Quality,
    Sla,
}

/// What a measured value counts: rows, a percent of the object's rows, or (for the ages of
/// SLA checks) seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Rows,
    Percent,
    Seconds,
}

/// One check.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Unique within the plan: `object.property.kind`, with `#n` for repeats.
    pub key: String,
    /// The ODCS `id` of the rule or SLA property, when the contract gives one.
    pub rule_id: Option<String>,
    pub category: Category,
    pub description: String,
    pub object: Option<String>,
    /// The column the check reads (its physical name).
    pub property: Option<String>,
    pub measure: Measure,
    pub threshold: Threshold,
    pub unit: Unit,
    /// A failing check only warns (ODCS `severity` info, warning, low, ...).
    pub warn_only: bool,
    /// The rule's ODCS `severity`, as the contract gives it (alerts carry it).
    pub severity: Option<String>,
    pub schedule: Option<String>,
}

/// What a check measures.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Measure {
    /// The object's table or files exist (1 when they do).
    ObjectExists,
    /// The column exists (1 when it does).
    ColumnPresent {
        column: String,
    },
    /// How far the column's type is from the contract: 0 when it fits; in a typed store 1
    /// when it does not, in a text format (CSV, NDJSON) the number of values that do not
    /// parse as the declared type.
    ColumnType {
        column: String,
        logical: Option<String>,
        physical: Option<String>,
    },
    /// Values of a text-format column that do not parse as `logical` (added by the runner
    /// to measure a type check; never compiled from a contract).
    Unparseable {
        column: String,
        logical: String,
    },
    RowCount,
    /// Rows whose value is null or one of `values`.
    Missing {
        column: String,
        values: Vec<Any>,
    },
    /// Non-null rows that break any of `rules`.
    Invalid {
        column: String,
        rules: Vec<Validity>,
    },
    /// Distinct non-null keys that occur more than once.
    Duplicates {
        columns: Vec<String>,
    },
    /// Seconds since the newest value.
    NewestAge {
        column: String,
    },
    /// Seconds since the oldest value.
    OldestAge {
        column: String,
    },
    /// The first column of the first row of a contract's SQL; `{object}` and `{property}`
    /// are substituted by the executor, quoted for its dialect.
    Sql {
        query: String,
    },
    /// Not executed; the reason says why.
    Skipped {
        reason: String,
    },
    /// The rule cannot be run as written; the reason says what is wrong.
    Unrunnable {
        reason: String,
    },
}

/// A constraint a non-null value must meet.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Validity {
    OneOf(Vec<Any>),
    /// ECMA-262, searched (not anchored), as JSON Schema reads `pattern`.
    Pattern(String),
    MinLength(u64),
    MaxLength(u64),
    Minimum(f64),
    Maximum(f64),
    ExclusiveMinimum(f64),
    ExclusiveMaximum(f64),
}

impl Measure {
    /// The columns a data-reading measure reads (none for the others).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Measure::Missing { column, .. }
            | Measure::Invalid { column, .. }
            | Measure::NewestAge { column }
            | Measure::OldestAge { column }
            | Measure::Unparseable { column, .. } => vec![column.as_str()],
            Measure::Duplicates { columns } => columns.iter().map(String::as_str).collect(),
            _ => vec![],
        }
    }

    /// Whether the measure counts rows, so a percent unit applies to it.
    pub fn counts_rows(&self) -> bool {
        matches!(self, Measure::Missing { .. } | Measure::Invalid { .. } | Measure::Duplicates { .. })
    }
}

const WARN_SEVERITIES: &[&str] = &["info", "warning", "warn", "low", "minor", "trivial"];

/// Compiles a contract into its plan. `only` restricts it to one schema object by name.
pub fn compile(contract: &DataContract, only: Option<&str>) -> Plan {
    let mut plan = Plan::default();
    for object in contract.objects() {
        if only.is_some_and(|name| name != object.name) {
            continue;
        }
        plan.objects.push(ObjectPlan {
            name: object.name.clone(),
            table: object.physical_name.clone().unwrap_or_else(|| object.name.clone()),
            checks: object_checks(object),
            classified: object.properties().iter().filter_map(|p| Some((column(p), classified(p)?))).collect(),
        });
    }
    for sla in contract.sla_properties.as_deref().unwrap_or_default() {
        sla_checks(contract, sla, &mut plan, only);
    }
    dedupe_keys(&mut plan);
    plan
}

/// The schedules meshplane runs for this contract: each distinct `schedule` of a quality rule
/// or SLA property whose `scheduler` is `cron` or not given (other schedulers are other tools').
pub fn schedules(contract: &DataContract) -> Vec<String> {
    let is_cron = |scheduler: &Option<String>| scheduler.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("cron"));
    let rules = contract
        .objects()
        .iter()
        .flat_map(|o| o.rules().iter().chain(o.properties().iter().flat_map(|p| p.rules())))
        .filter(|r| is_cron(&r.scheduler))
        .filter_map(|r| r.schedule.clone());
    let slas = contract
        .sla_properties
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|s| is_cron(&s.scheduler))
        .filter_map(|s| s.schedule.clone());
    let mut all: Vec<String> = rules.chain(slas).map(|s| s.trim().to_string()).collect();
    all.sort();
    all.dedup();
    all
}

impl Plan {
    /// Keeps only the checks of one schedule (so the rules that share a schedule share a scan).
    pub fn retain_schedule(&mut self, schedule: &str) {
        let ours = |c: &Check| c.schedule.as_deref().map(str::trim) == Some(schedule);
        for object in &mut self.objects {
            object.checks.retain(ours);
        }
        self.objects.retain(|o| !o.checks.is_empty());
        self.unbound.retain(ours);
    }
}

/// Why a property's values are not to be shown, if they are not: its classification, when it
/// is anything but `public` or `internal` (ODCS leaves the field free text, so any other word
/// counts), or a `pii` tag.
pub fn classified(p: &Property) -> Option<String> {
    let class = p.classification.as_deref().map(str::trim).filter(|c| !c.is_empty());
    match class {
        Some(c) if !c.eq_ignore_ascii_case("public") && !c.eq_ignore_ascii_case("internal") => {
            Some(format!("classified {c}"))
        }
        _ => p.tags.iter().flatten().any(|t| t.eq_ignore_ascii_case("pii")).then(|| "tagged pii".to_string()),
    }
}

impl Plan {
    /// Why the samples of check `key` are not to be shown, if they are not (a column it reads
    /// is classified).
    pub fn withheld(&self, key: &str) -> Option<&str> {
        self.objects.iter().find_map(|o| {
            let check = o.checks.iter().find(|c| c.key == key)?;
            let columns = check.measure.columns();
            o.classified.iter().find(|(c, _)| columns.contains(&c.as_str())).map(|(_, why)| why.as_str())
        })
    }
}

fn column(p: &Property) -> String {
    p.physical_name.clone().unwrap_or_else(|| p.name.clone())
}

fn object_checks(object: &SchemaObject) -> Vec<Check> {
    let name = &object.name;
    let schema = |key: String, description: String, property: Option<String>, measure: Measure, threshold| Check {
        key,
        rule_id: None,
        category: Category::Schema,
        description,
        object: Some(name.clone()),
        property,
        measure,
        threshold,
        unit: Unit::Rows,
        warn_only: false,
        severity: None,
        schedule: None,
    };
    let present = Threshold(vec![Bound::Eq(1.0)]);
    let mut checks =
        vec![schema(format!("{name}.exists"), format!("{name} exists"), None, Measure::ObjectExists, present.clone())];
    let mut keys: Vec<(i64, String)> = Vec::new();
    for p in object.properties() {
        let col = column(p);
        let base = format!("{name}.{}", p.name);
        let at = |kind: &str| format!("{base}.{kind}");
        let with = |key: String, description: String, measure: Measure, threshold: Threshold| {
            schema(key, description, Some(col.clone()), measure, threshold)
        };
        checks.push(with(
            at("present"),
            format!("{} is present", p.name),
            Measure::ColumnPresent { column: col.clone() },
            present.clone(),
        ));
        if p.logical_type.is_some() || p.physical_type.is_some() {
            let expected = p.physical_type.as_deref().or(p.logical_type.as_deref()).unwrap_or_default();
            checks.push(with(
                at("type"),
                format!("{} has type {expected}", p.name),
                Measure::ColumnType {
                    column: col.clone(),
                    logical: p.logical_type.clone(),
                    physical: p.physical_type.clone(),
                },
                Threshold::zero(),
            ));
        }
        let primary = p.primary_key == Some(true);
        if p.required == Some(true) || primary {
            let what = if primary { "primary key" } else { "required" };
            checks.push(with(
                at("required"),
                format!("{} ({what}) has no nulls", p.name),
                Measure::Missing { column: col.clone(), values: vec![] },
                Threshold::zero(),
            ));
        }
        if primary {
            keys.push((p.primary_key_position.unwrap_or(0), col.clone()));
        }
        if p.unique == Some(true) {
            checks.push(with(
                at("unique"),
                format!("{} has no duplicates", p.name),
                Measure::Duplicates { columns: vec![col.clone()] },
                Threshold::zero(),
            ));
        }
        for (kind, rule) in option_rules(p) {
            let description = format!("{} meets {kind}", p.name);
            let measure = match rule {
                Ok(rule) => Measure::Invalid { column: col.clone(), rules: vec![rule] },
                Err(reason) => Measure::Unrunnable { reason },
            };
            checks.push(with(at(kind), description, measure, Threshold::zero()));
        }
        if let Some(values) = &p.enum_values {
            let values = values.iter().map(|v| v.value.clone()).collect();
            checks.push(with(
                at("enum"),
                format!("{} holds only its enum values", p.name),
                Measure::Invalid { column: col.clone(), rules: vec![Validity::OneOf(values)] },
                Threshold::zero(),
            ));
        }
        if p.properties.is_some() || p.items.is_some() {
            let nested = p.properties.iter().flatten().chain(p.items.as_deref()).filter(|n| has_checks(n)).count();
            if nested > 0 {
                checks.push(with(
                    at("nested"),
                    format!("checks on the nested properties of {}", p.name),
                    Measure::Skipped { reason: "checks on nested properties are not run yet".into() },
                    Threshold::default(),
                ));
            }
        }
        for rule in p.rules() {
            checks.push(rule_check(name, Some(p), rule));
        }
    }
    if keys.len() > 1 {
        keys.sort_by_key(|(position, _)| *position);
        let columns: Vec<String> = keys.into_iter().map(|(_, c)| c).collect();
        checks.push(schema(
            format!("{name}.primaryKey"),
            format!("primary key ({}) has no duplicates", columns.join(", ")),
            None,
            Measure::Duplicates { columns },
            Threshold::zero(),
        ));
    } else if let Some((_, col)) = keys.pop() {
        checks.push(schema(
            format!("{name}.{col}.primaryKey"),
            format!("primary key {col} has no duplicates"),
            Some(col.clone()),
            Measure::Duplicates { columns: vec![col] },
            Threshold::zero(),
        ));
    }
    for rule in object.rules() {
        checks.push(rule_check(name, None, rule));
    }
    checks
}

fn has_checks(p: &Property) -> bool {
    p.required == Some(true)
        || p.unique == Some(true)
        || p.logical_type_options.is_some()
        || p.enum_values.is_some()
        || !p.rules().is_empty()
}

/// The logicalTypeOptions that constrain values, each as its own check.
fn option_rules(p: &Property) -> Vec<(&'static str, Result<Validity, String>)> {
    let number = |key: &'static str, make: fn(f64) -> Validity| {
        p.option(key).map(|v| (key, v.as_f64().map(make).ok_or_else(|| format!("`{key}` must be a number"))))
    };
    let length = |key: &'static str, make: fn(u64) -> Validity| {
        p.option(key).map(|v| (key, v.as_u64().map(make).ok_or_else(|| format!("`{key}` must be a whole number"))))
    };
    let pattern = p.option("pattern").map(|v| {
        let rule = v.as_str().map(|s| Validity::Pattern(s.to_string())).ok_or("`pattern` must be a string".into());
        ("pattern", rule)
    });
    let format = p.option("format").and_then(|v| v.as_str()).and_then(format_pattern).map(|re| ("format", Ok(re)));
    [
        length("minLength", Validity::MinLength),
        length("maxLength", Validity::MaxLength),
        pattern,
        format,
        number("minimum", Validity::Minimum),
        number("maximum", Validity::Maximum),
        number("exclusiveMinimum", Validity::ExclusiveMinimum),
        number("exclusiveMaximum", Validity::ExclusiveMaximum),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `format` values meshplane checks, as portable patterns; other formats are descriptive.
fn format_pattern(format: &str) -> Option<Validity> {
    let re = match format {
        "email" => r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        "uuid" => r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "ipv4" => {
            r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
        }
        "uri" => r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$",
        _ => return None,
    };
    Some(Validity::Pattern(re.to_string()))
}

fn percent_unit(rule: &Quality) -> Unit {
    match rule.unit.as_deref().map(|u| u.trim().to_ascii_lowercase()) {
        Some(u) if matches!(u.as_str(), "percent" | "percentage" | "%") => Unit::Percent,
        _ => Unit::Rows,
    }
}

/// One quality rule on an object (`property` is None) or a property.
fn rule_check(object: &str, property: Option<&Property>, rule: &Quality) -> Check {
    let col = property.map(column);
    let base = match property {
        Some(p) => format!("{object}.{}", p.name),
        None => object.to_string(),
    };
    let args = rule.arguments.as_ref();
    let arg = |key: &str| args.and_then(|a| a.get(key));
    let non_null = |v: Option<&Any>| -> Vec<Any> {
        v.and_then(Any::as_array).map(|a| a.iter().filter(|x| !x.is_null()).cloned().collect()).unwrap_or_default()
    };
    let need_property = |metric: &str| Measure::Unrunnable { reason: format!("{metric} applies to a property") };
    let (kind, measure) = match rule.kind() {
        "text" => {
            ("text", Measure::Skipped { reason: "text rules describe quality in words; they are not executed".into() })
        }
        "custom" => {
            let engine = rule.engine.as_deref().unwrap_or("an unnamed engine");
            ("custom", Measure::Skipped { reason: format!("custom rules for {engine} are not executed by meshplane") })
        }
        "sql" => match &rule.query {
            Some(query) => ("sql", Measure::Sql { query: query.clone() }),
            None => ("sql", Measure::Unrunnable { reason: "the sql rule has no query".into() }),
        },
        _ => match (rule.metric(), &col) {
            (Some("rowCount"), _) => ("rowCount", Measure::RowCount),
            (Some("nullValues"), Some(c)) => ("nullValues", Measure::Missing { column: c.clone(), values: vec![] }),
            (Some("missingValues"), Some(c)) => {
                ("missingValues", Measure::Missing { column: c.clone(), values: non_null(arg("missingValues")) })
            }
            (Some("invalidValues"), Some(c)) => {
                let mut rules = Vec::new();
                if let Some(values) = arg("validValues") {
                    rules.push(Validity::OneOf(non_null(Some(values))));
                }
                if let Some(p) = arg("pattern").and_then(Any::as_str) {
                    rules.push(Validity::Pattern(p.to_string()));
                }
                // Without arguments, the property's `enum` (v3.2.0) says what is valid, as lint
                // reads it.
                let listed = property.and_then(|p| p.enum_values.as_ref()).filter(|e| !e.is_empty());
                if let (true, Some(values)) = (rules.is_empty(), listed) {
                    rules.push(Validity::OneOf(values.iter().map(|v| v.value.clone()).collect()));
                }
                if rules.is_empty() {
                    let reason =
                        "invalidValues needs `validValues` or `pattern` in its arguments, or the property's `enum`"
                            .to_string();
                    ("invalidValues", Measure::Unrunnable { reason })
                } else {
                    ("invalidValues", Measure::Invalid { column: c.clone(), rules })
                }
            }
            (Some("duplicateValues"), Some(c)) => ("duplicateValues", Measure::Duplicates { columns: vec![c.clone()] }),
            (Some("duplicateValues"), None) => {
                let names: Vec<String> =
                    non_null(arg("properties")).iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
                if names.is_empty() {
                    let reason = "duplicateValues on an object needs `arguments.properties`".to_string();
                    ("duplicateValues", Measure::Unrunnable { reason })
                } else {
                    ("duplicateValues", Measure::Duplicates { columns: names })
                }
            }
            (Some(m @ ("nullValues" | "missingValues" | "invalidValues")), None) => (m, need_property(m)),
            (Some(other), _) => {
                ("metric", Measure::Unrunnable { reason: format!("`{other}` is not a library metric") })
            }
            (None, _) => ("library", Measure::Unrunnable { reason: "the library rule names no metric".into() }),
        },
    };
    let runs = !matches!(measure, Measure::Skipped { .. } | Measure::Unrunnable { .. });
    let (measure, threshold) = match Threshold::from_operators(&rule.operators()) {
        Ok(t) => (measure, t),
        Err(reason) if runs => (Measure::Unrunnable { reason }, Threshold::default()),
        Err(_) => (measure, Threshold::default()),
    };
    let description = rule
        .name
        .clone()
        .or_else(|| rule.description.clone())
        .unwrap_or_else(|| format!("{kind} of {}", base.rsplit_once('.').map_or(base.as_str(), |(_, p)| p)));
    Check {
        key: format!("{base}.{kind}"),
        rule_id: rule.id.clone(),
        category: Category::Quality,
        description,
        object: Some(object.to_string()),
        property: col,
        measure,
        threshold,
        unit: percent_unit(rule),
        warn_only: rule
            .severity
            .as_deref()
            .is_some_and(|s| WARN_SEVERITIES.contains(&s.trim().to_ascii_lowercase().as_str())),
        severity: rule.severity.clone(),
        schedule: rule.schedule.clone(),
    }
}

fn sla_checks(contract: &DataContract, sla: &SlaProperty, plan: &mut Plan, only: Option<&str>) {
    let canonical = sla::canonical(&sla.property);
    let name = canonical.unwrap_or(&sla.property);
    let mut check = Check {
        key: format!("sla.{name}"),
        rule_id: sla.id.clone(),
        category: Category::Sla,
        description: format!(
            "{} {}{}",
            sla.property,
            display(&sla.value),
            sla.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default()
        ),
        object: None,
        property: None,
        measure: Measure::Skipped { reason: format!("`{}` is not measurable on the data", sla.property) },
        threshold: Threshold::default(),
        unit: Unit::Seconds,
        warn_only: false,
        severity: None,
        schedule: sla.schedule.clone(),
    };
    let measurable = matches!(canonical, Some("latency" | "retention"));
    if !measurable {
        if only.is_none() {
            plan.unbound.push(check);
        }
        return;
    }
    let element = sla.element.as_deref().or(contract.sla_default_element.as_deref());
    let seconds = sla::duration_seconds(&sla.value, sla.unit.as_deref());
    let Some(element) = element else {
        check.measure =
            Measure::Skipped { reason: format!("{name} names no `element` (object.property) to measure it on") };
        plan.unbound.push(check);
        return;
    };
    for target in element.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mut check = check.clone();
        let resolved = resolve_element(contract, target);
        let seconds = seconds.clone();
        match (resolved, seconds) {
            (Ok((object, property)), Ok(seconds)) => {
                if only.is_some_and(|o| o != object.name) {
                    continue;
                }
                let col = column(property);
                check.key = format!("{}.{}.{name}", object.name, property.name);
                check.object = Some(object.name.clone());
                check.property = Some(col.clone());
                check.threshold = Threshold(vec![Bound::Lt(seconds)]);
                check.measure = if name == "latency" {
                    Measure::NewestAge { column: col }
                } else {
                    Measure::OldestAge { column: col }
                };
                if let Some(o) = plan.objects.iter_mut().find(|o| o.name == object.name) {
                    o.checks.push(check);
                }
            }
            (Err(reason), _) | (_, Err(reason)) => {
                check.measure = Measure::Unrunnable { reason };
                if only.is_none() {
                    plan.unbound.push(check);
                }
            }
        }
    }
}

fn display(value: &Any) -> String {
    match value {
        Any::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `object.property`, or `property` when the contract has one object.
fn resolve_element<'c>(contract: &'c DataContract, element: &str) -> Result<(&'c SchemaObject, &'c Property), String> {
    let (object, property) = match element.split_once('.') {
        Some((o, p)) => {
            (contract.object(o).ok_or_else(|| format!("the element `{element}` names no schema object `{o}`"))?, p)
        }
        None => match contract.objects() {
            [only] => (only, element),
            _ => {
                return Err(format!(
                    "the element `{element}` must name its object (object.property): the contract has several"
                ));
            }
        },
    };
    let property = object
        .property(property)
        .ok_or_else(|| format!("the element `{element}` names no property `{property}` of {}", object.name))?;
    Ok((object, property))
}

/// Makes every key unique by numbering repeats (`#2`, `#3`, ...).
fn dedupe_keys(plan: &mut Plan) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let checks = plan.objects.iter_mut().flat_map(|o| o.checks.iter_mut()).chain(plan.unbound.iter_mut());
    for check in checks {
        let n = seen.entry(check.key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            check.key = format!("{}#{n}", check.key);
        }
    }
}

/// Per measure, the duplicate count of its first column alone that a composite key's
/// measurement also answers (a table's unique id and a composite key led by it): composite
/// duplicates can only be among the rows whose lead repeats, so the executors count both from
/// one pass over the lead. Each such count is answered by one composite key; only `wanted`
/// measures pair.
pub fn lead_partners(measures: &[Measure], wanted: &[bool]) -> Vec<Option<usize>> {
    let mut answered = vec![false; measures.len()];
    let mut leads = vec![None; measures.len()];
    for (i, m) in measures.iter().enumerate() {
        let Measure::Duplicates { columns } = m else { continue };
        if columns.len() < 2 || !wanted[i] {
            continue;
        }
        let alone = measures.iter().enumerate().position(|(j, other)| {
            !answered[j] && wanted[j] && matches!(other, Measure::Duplicates { columns: c } if c[..] == columns[..1])
        });
        if let Some(j) = alone {
            answered[j] = true;
            leads[i] = Some(j);
        }
    }
    leads
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_spec::{Document, load};

    fn plan(yaml: &str) -> Plan {
        let text = format!("apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: active\n{yaml}");
        let Some(Document::Contract(c)) = load(&text).documents.remove(0).document else { panic!("not a contract") };
        compile(&c, None)
    }

    fn measures(plan: &Plan) -> Vec<(String, Measure)> {
        plan.objects
            .iter()
            .flat_map(|o| &o.checks)
            .chain(&plan.unbound)
            .map(|c| (c.key.clone(), c.measure.clone()))
            .collect()
    }

    #[test]
    fn cron_schedules_are_collected_and_a_plan_keeps_one_schedule() {
        let yaml = "schema:\n  - name: t\n    properties:\n      - name: a\n        quality:\n\
                    \x20         - { metric: nullValues, mustBe: 0, scheduler: cron, schedule: '0 * * * *' }\n\
                    \x20         - { metric: duplicateValues, mustBe: 0, schedule: '0 * * * *' }\n\
                    \x20         - { metric: missingValues, mustBe: 0, scheduler: airflow, schedule: '@daily' }\n\
                    \x20   quality:\n      - { metric: rowCount, mustBeGreaterThan: 0, schedule: ' @daily ' }\n\
                    slaProperties:\n  - { property: latency, value: 1, unit: d, element: t.a, schedule: '0 * * * *' }\n";
        let text = format!("apiVersion: v3.1.0\nkind: DataContract\nid: c\nversion: 1.0.0\nstatus: active\n{yaml}");
        let Some(Document::Contract(c)) = load(&text).documents.remove(0).document else { panic!("not a contract") };
        assert_eq!(schedules(&c), ["0 * * * *", "@daily"], "airflow's schedule is airflow's");
        let mut hourly = compile(&c, None);
        hourly.retain_schedule("0 * * * *");
        let keys: Vec<String> = measures(&hourly).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["t.a.nullValues", "t.a.duplicateValues", "t.a.latency"]);
    }

    #[test]
    fn malformed_rules_become_errors_with_the_reason() {
        let p = plan(
            "schema:\n  - name: t\n    properties:\n      - name: a\n        quality:\n\
             \x20         - { metric: nullValues, mustBeBetween: [1] }\n\
             \x20         - { metric: invalidValues, mustBe: 0 }\n\
             \x20         - { type: sql, mustBe: 0 }\n    quality:\n      - { metric: nullValues, mustBe: 0 }\n",
        );
        let reasons: Vec<String> = measures(&p)
            .into_iter()
            .filter_map(|(_, m)| match m {
                Measure::Unrunnable { reason } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "`mustBeBetween` needs a list of two numbers",
                "invalidValues needs `validValues` or `pattern` in its arguments, or the property's `enum`",
                "the sql rule has no query",
                "nullValues applies to a property",
            ]
        );
    }

    #[test]
    fn invalid_values_without_arguments_reads_the_propertys_enum() {
        let p = plan(
            "schema:\n  - name: t\n    properties:\n      - name: a\n        enum: [{ value: x }, { value: y }]\n\
             \x20       quality:\n          - { metric: invalidValues, mustBeLessThan: 1, unit: percent }\n",
        );
        let invalid = p.objects[0].checks.iter().find(|c| c.key == "t.a.invalidValues").unwrap();
        let rules = vec![Validity::OneOf(vec![Any::from("x"), Any::from("y")])];
        assert_eq!(invalid.measure, Measure::Invalid { column: "a".into(), rules });
    }

    #[test]
    fn sla_elements_resolve_to_physical_columns() {
        let p = plan(
            "schema:\n  - name: t\n    physicalName: t_v1\n    properties:\n      - { name: at, physicalName: created_at }\n\
             slaProperties:\n  - { property: ly, value: 2, unit: h, element: at }\n\
             \x20 - { property: retention, value: P1Y, element: 't.at, t.nope' }\n\
             \x20 - { property: latency, value: 1, element: u.at }\n  - { property: frequency, value: 1 }\n",
        );
        assert_eq!(p.objects[0].table, "t_v1");
        let all = measures(&p);
        let latency = p.objects[0].checks.iter().find(|c| c.key == "t.at.latency").unwrap();
        assert_eq!(latency.measure, Measure::NewestAge { column: "created_at".into() });
        assert_eq!(latency.threshold, Threshold(vec![Bound::Lt(7200.0)]));
        assert_eq!(latency.unit, Unit::Seconds, "an age is reported in seconds, not rows");
        let retention = p.objects[0].checks.iter().find(|c| c.key == "t.at.retention").unwrap();
        assert_eq!(retention.threshold, Threshold(vec![Bound::Lt(365.0 * 86_400.0)]));
        let unbound: Vec<&Measure> = all.iter().filter(|(k, _)| k.starts_with("sla.")).map(|(_, m)| m).collect();
        assert_eq!(unbound.len(), 3, "{unbound:?}");
        assert!(matches!(unbound[0], Measure::Unrunnable { reason } if reason.contains("no property `nope`")));
        assert!(matches!(unbound[1], Measure::Unrunnable { reason } if reason.contains("no schema object `u`")));
        assert!(matches!(unbound[2], Measure::Skipped { .. }));
    }

    #[test]
    fn composite_keys_and_repeated_rules_get_their_own_checks() {
        let p = plan(
            "schema:\n  - name: t\n    properties:\n      - { name: b, primaryKey: true, primaryKeyPosition: 2 }\n\
             \x20     - name: a\n        primaryKey: true\n        primaryKeyPosition: 1\n        quality:\n\
             \x20         - { metric: nullValues, mustBe: 0 }\n          - { metric: nullValues, mustBeLessThan: 5, unit: percent, severity: Warning }\n",
        );
        let keys: Vec<String> = measures(&p).into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&"t.a.nullValues#2".to_string()), "{keys:?}");
        let pk = p.objects[0].checks.iter().find(|c| c.key == "t.primaryKey").unwrap();
        assert_eq!(pk.measure, Measure::Duplicates { columns: vec!["a".into(), "b".into()] });
        let lenient = p.objects[0].checks.iter().find(|c| c.key == "t.a.nullValues#2").unwrap();
        assert!(lenient.warn_only && lenient.unit == Unit::Percent);
    }
}

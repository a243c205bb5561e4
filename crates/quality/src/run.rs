//! The runner: measures a plan on a source and turns every measurement into a verdict.
//!
//! Per object: read its columns (existence, presence and type checks need nothing else),
//! gather every data-reading measure into one scan, run the SQL rules, then compare each
//! value with its threshold. A check whose column is missing, or whose rule cannot run, is an
//! `error` with the reason; it never silently passes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;

use crate::kernel::Measured;
use crate::plan::{Category, Check, Measure, Plan, Unit};
use crate::source::{Ask, ColumnKind, Source};

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Warn => "warn",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub category: Category,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    pub outcome: Outcome,
    /// The measured value, in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The count behind a percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<f64>,
    pub unit: Unit,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub threshold: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The rule's ODCS `severity`, when the contract gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// How a run behaves.
pub struct Options {
    pub samples: usize,
    /// The clock for ages, in microseconds since the epoch.
    pub now_micros: i64,
    pub progress: Arc<AtomicU64>,
    /// How long a contract's SQL may run.
    pub sql_timeout: Duration,
    /// Reads the environment (credentials); replaceable so tests need not change the process's.
    pub env: Env,
    /// Run only the checks of this schedule (a scheduled run); all checks when `None`.
    pub schedule: Option<String>,
    /// Keep no samples of columns the contract classifies (the server, whose reports many
    /// read); the standalone `meshplane test`, run with the user's own access, shows them.
    pub withhold_classified: bool,
}

/// The longest sample kept, in characters (longer values are cut, with `…`).
pub const SAMPLE_CHARS: usize = 200;

/// A lookup of environment variables.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Options {
    /// Options on the system clock, with a 30-second limit on contract SQL.
    pub fn now(samples: usize) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Options {
            samples,
            now_micros: now.as_micros() as i64,
            progress: Arc::default(),
            sql_timeout: Duration::from_secs(30),
            env: Arc::new(|name| std::env::var(name).ok()),
            schedule: None,
            withhold_classified: false,
        }
    }
}

fn result(check: &Check, outcome: Outcome, value: Option<f64>, detail: Option<String>) -> CheckResult {
    CheckResult {
        key: check.key.clone(),
        rule_id: check.rule_id.clone(),
        category: check.category,
        description: check.description.clone(),
        object: check.object.clone(),
        property: check.property.clone(),
        outcome,
        value,
        count: None,
        unit: check.unit,
        threshold: check.threshold.to_string(),
        detail,
        samples: vec![],
        schedule: check.schedule.clone(),
        severity: check.severity.clone(),
    }
}

/// Compares a value with the check's threshold, in the check's unit.
fn verdict(check: &Check, measured: Measured, rows: u64) -> CheckResult {
    let Some(count) = measured.value else {
        return result(check, Outcome::Fail, None, measured.detail);
    };
    let percent = check.unit == Unit::Percent && check.measure.counts_rows();
    let value =
        if percent { if rows == 0 { 0.0 } else { (count / rows as f64 * 100.0 * 1e6).round() / 1e6 } } else { count };
    let outcome = match (check.threshold.holds(value), check.warn_only) {
        (true, _) => Outcome::Pass,
        (false, true) => Outcome::Warn,
        (false, false) => Outcome::Fail,
    };
    let mut r = result(check, outcome, Some(value), measured.detail);
    r.count = percent.then_some(count);
    if outcome != Outcome::Pass {
        r.samples = measured.samples;
    }
    r
}

/// Keeps a sample short, and none of a classified column when `options` says so.
fn bound_samples(plan: &Plan, options: &Options, r: &mut CheckResult) {
    if r.samples.is_empty() {
        return;
    }
    if let Some(why) = plan.withheld(&r.key).filter(|_| options.withhold_classified) {
        r.samples.clear();
        let note = format!("samples withheld: the column is {why}");
        r.detail = Some(r.detail.take().map_or(note.clone(), |d| format!("{d}; {note}")));
        return;
    }
    for sample in &mut r.samples {
        if sample.chars().count() > SAMPLE_CHARS {
            *sample = sample.chars().take(SAMPLE_CHARS).chain(['…']).collect();
        }
    }
}

/// Runs every check of the plan on `source`.
pub async fn run<S: Source>(source: &mut S, plan: &Plan, options: &Options) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for object in &plan.objects {
        run_object(source, object, options, &mut results).await;
    }
    for r in &mut results {
        bound_samples(plan, options, r);
    }
    for check in &plan.unbound {
        results.push(unrun(check).unwrap_or_else(|| result(check, Outcome::Error, None, Some("no object".into()))));
    }
    results
}

/// The result of a check that is not executed, if it is one.
fn unrun(check: &Check) -> Option<CheckResult> {
    match &check.measure {
        Measure::Skipped { reason } => Some(result(check, Outcome::Skipped, None, Some(reason.clone()))),
        Measure::Unrunnable { reason } => Some(result(check, Outcome::Error, None, Some(reason.clone()))),
        _ => None,
    }
}

async fn run_object<S: Source>(
    source: &mut S,
    object: &crate::plan::ObjectPlan,
    options: &Options,
    results: &mut Vec<CheckResult>,
) {
    let columns = match source.columns(&object.table).await {
        Ok(columns) => columns,
        Err(e) => {
            for check in &object.checks {
                results.push(unrun(check).unwrap_or_else(|| result(check, Outcome::Error, None, Some(e.clone()))));
            }
            return;
        }
    };
    let Some(columns) = columns else {
        for check in &object.checks {
            let r = match (&check.measure, unrun(check)) {
                (_, Some(r)) => r,
                (Measure::ObjectExists, None) => {
                    result(check, Outcome::Fail, Some(0.0), Some(format!("{} not found", object.table)))
                }
                _ => result(check, Outcome::Error, None, Some(format!("{} not found", object.table))),
            };
            results.push(r);
        }
        return;
    };
    let kind = |name: &str| columns.iter().find(|(c, _)| c == name).map(|(_, k)| k);
    // Measures for the scan, deduplicated; each check remembers its slot.
    let mut measures: Vec<Measure> = Vec::new();
    let mut slot = |m: Measure| match measures.iter().position(|x| *x == m) {
        Some(i) => i,
        None => {
            measures.push(m);
            measures.len() - 1
        }
    };
    let mut pending = Vec::new();
    for check in &object.checks {
        let missing = check.measure.columns().into_iter().find(|c| kind(c).is_none());
        let p = match (&check.measure, missing) {
            _ if let Some(r) = unrun(check) => Pending::Done(Box::new(r)),
            (_, Some(col)) => {
                Pending::Done(Box::new(result(check, Outcome::Error, None, Some(format!("column `{col}` is missing")))))
            }
            (Measure::ObjectExists, _) => {
                Pending::Done(Box::new(verdict(check, Measured { value: Some(1.0), ..Default::default() }, 0)))
            }
            (Measure::ColumnPresent { column }, _) => {
                let present = kind(column).is_some();
                let detail = (!present).then(|| format!("column `{column}` is missing"));
                Pending::Done(Box::new(verdict(
                    check,
                    Measured { value: Some(f64::from(u8::from(present))), detail, samples: vec![] },
                    0,
                )))
            }
            (Measure::ColumnType { column, logical, physical }, _) => match kind(column) {
                None => Pending::Done(Box::new(result(
                    check,
                    Outcome::Error,
                    None,
                    Some(format!("column `{column}` is missing")),
                ))),
                Some(k) => type_check(check, k, column, logical.as_deref(), physical.as_deref(), &mut slot),
            },
            (Measure::RowCount, _) => Pending::Rows,
            (Measure::Sql { query }, _) => {
                let query = substitute(query, &object.table, check.property.as_deref(), source);
                if source.scans_sql(&object.table, &query).await {
                    Pending::Scan(slot(Measure::Sql { query }))
                } else {
                    Pending::Sql(query)
                }
            }
            (m, None) => Pending::Scan(slot(m.clone())),
        };
        pending.push(p);
    }
    let ask = Ask { samples: options.samples, now_micros: options.now_micros, progress: &options.progress };
    let scan = source.scan(&object.table, &measures, &ask).await;
    let (rows, scanned) = match scan {
        Ok(s) => (Ok(s.rows), s.results),
        Err(e) => (Err(e), vec![]),
    };
    for (check, p) in object.checks.iter().zip(pending) {
        let r = match (p, &rows) {
            (Pending::Done(r), _) => *r,
            (_, Err(e)) => result(check, Outcome::Error, None, Some(e.clone())),
            (Pending::Rows, Ok(n)) => verdict(check, Measured { value: Some(*n as f64), ..Default::default() }, *n),
            // Checks that share a measure (required and nullValues) share its result.
            (Pending::Scan(i), Ok(n)) => match scanned.get(i).cloned().unwrap_or(Err("not measured".into())) {
                Ok(m) => verdict(check, m, *n),
                Err(e) => result(check, Outcome::Error, None, Some(e)),
            },
            (Pending::Sql(query), Ok(n)) => match source.sql(&query).await {
                Ok(v) => verdict(check, Measured { value: Some(v), ..Default::default() }, *n),
                Err(e) => result(check, Outcome::Error, None, Some(e)),
            },
        };
        results.push(r);
    }
}

/// What is left to do for a check once the columns are known.
enum Pending {
    Done(Box<CheckResult>),
    Scan(usize),
    Rows,
    Sql(String),
}

fn type_check(
    check: &Check,
    kind: &ColumnKind,
    column: &str,
    logical: Option<&str>,
    physical: Option<&str>,
    slot: &mut impl FnMut(Measure) -> usize,
) -> Pending {
    // Text formats carry no types: a text column declared as something else is measured by
    // parsing its values, and the check counts those that do not parse.
    if let Some(l @ ("integer" | "number" | "boolean" | "date" | "timestamp")) = logical
        && kind.is_inferred_text()
    {
        return Pending::Scan(slot(Measure::Unparseable { column: column.to_string(), logical: l.to_string() }));
    }
    let fit = kind.fit(logical, physical);
    let detail = fit.reason.unwrap_or_else(|| format!("the column is {}", fit.actual));
    let measured = Measured { value: Some(if fit.fits { 0.0 } else { 1.0 }), detail: Some(detail), samples: vec![] };
    Pending::Done(Box::new(verdict(check, measured, 0)))
}

/// `{object}` and `{property}` (and the older `{model}`, `{field}`, `{table}`, `{column}`)
/// replaced by quoted identifiers.
fn substitute<S: Source>(query: &str, table: &str, property: Option<&str>, source: &S) -> String {
    let mut out = query.to_string();
    for name in ["{object}", "{model}", "{table}"] {
        out = out.replace(name, &source.quote(table));
    }
    if let Some(p) = property {
        for name in ["{property}", "{field}", "{column}"] {
            out = out.replace(name, &source.quote(p));
        }
    }
    out
}

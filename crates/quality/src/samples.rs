//! Sample rows a contract accepts, and writing them as a Parquet, CSV or NDJSON file: what
//! `meshplane init data` puts into a port so that its tests have something true to read.
//!
//! The rows are made from the object's compiled checks, so they meet what `meshplane test`
//! checks: every column of the schema, of a type that fits its `logicalType` (and
//! `physicalType`); no nulls and no missing values; unique columns and composite keys
//! without duplicates; values from the allowed list, matching the pattern or format, within
//! the lengths and the range; as many rows as the row count rule asks. Timestamps are the
//! seconds before `now` and dates the days up to today, so latency and retention hold while
//! the rows are new. SQL rules are not read: they are named as not considered.
//!
//! Values are made deterministically (the same contract, row count and `now` give the same
//! rows); a column whose rules cannot all be met (a unique column of two allowed values over
//! ten rows, a pattern no made value matches) is an error naming it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json::Value as Any;

use crate::files::Format;
use crate::plan::{Measure, ObjectPlan, Validity};
use crate::regex::{Dialect, translate};
use crate::types::arrow_fit;

/// Rows made when the caller and the row count rule ask for no other number.
pub const DEFAULT_ROWS: usize = 100;

/// The most rows made for one object.
pub const MAX_ROWS: usize = 1_000_000;

/// The rows made for one object.
#[derive(Debug)]
pub struct Sample {
    pub batch: RecordBatch,
    /// The checks the rows were not made for (SQL rules), by key.
    pub not_considered: Vec<String>,
}

/// What one column must hold.
#[derive(Default)]
struct Column {
    name: String,
    logical: Option<String>,
    physical: Option<String>,
    rules: Vec<Validity>,
    missing: Vec<Any>,
    unique: bool,
    /// Part of a composite key: unique when it can be.
    keyed: bool,
}

/// One made value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Days since the Unix epoch.
    Date(i32),
    /// Microseconds since the Unix epoch, or since midnight for a time.
    Micros(i64),
}

impl Value {
    /// The value as the text comparisons of the checks read it.
    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Date(d) => d.to_string(),
            Value::Micros(m) => m.to_string(),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Makes rows for `object` as of `now_ms` (milliseconds since the Unix epoch): `rows` of them,
/// or [`DEFAULT_ROWS`], or the fewest its row count rule accepts.
pub fn generate(object: &ObjectPlan, rows: Option<usize>, now_ms: i64) -> Result<Sample, String> {
    let mut columns: Vec<Column> = Vec::new();
    let mut count_rules = Vec::new();
    let mut not_considered = Vec::new();
    let mut keys: Vec<Vec<String>> = Vec::new();
    for check in &object.checks {
        let column = |columns: &mut Vec<Column>, name: &str| -> usize {
            if let Some(i) = columns.iter().position(|c| c.name == name) {
                return i;
            }
            columns.push(Column { name: name.to_string(), ..Column::default() });
            columns.len() - 1
        };
        match &check.measure {
            Measure::ColumnPresent { column: name } => {
                column(&mut columns, name);
            }
            Measure::ColumnType { column: name, logical, physical } => {
                let i = column(&mut columns, name);
                columns[i].logical = logical.clone();
                columns[i].physical = physical.clone();
            }
            Measure::Missing { column: name, values } => {
                let i = column(&mut columns, name);
                columns[i].missing.extend(values.iter().cloned());
            }
            Measure::Invalid { column: name, rules } => {
                let i = column(&mut columns, name);
                columns[i].rules.extend(rules.iter().cloned());
            }
            Measure::Duplicates { columns: key } if key.len() == 1 => {
                let i = column(&mut columns, &key[0]);
                columns[i].unique = true;
            }
            Measure::Duplicates { columns: key } => keys.push(key.clone()),
            Measure::RowCount => count_rules.push(&check.threshold),
            Measure::Sql { .. } => not_considered.push(check.key.clone()),
            _ => {}
        }
    }
    for key in &keys {
        for name in key {
            if let Some(c) = columns.iter_mut().find(|c| &c.name == name) {
                c.keyed = true;
            }
        }
    }
    let accepted = |n: usize| count_rules.iter().all(|t| t.holds(n as f64));
    let rows = match rows {
        Some(n) if !accepted(n) => return Err(format!("{n} rows break the row count rule of `{}`", object.name)),
        Some(n) => n,
        None if accepted(DEFAULT_ROWS) => DEFAULT_ROWS,
        None => (1..=MAX_ROWS).find(|n| accepted(*n)).ok_or_else(|| {
            format!("no number of rows up to {MAX_ROWS} meets the row count rule of `{}`", object.name)
        })?,
    };
    if rows > MAX_ROWS {
        return Err(format!("at most {MAX_ROWS} rows are made"));
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut made: Vec<Vec<Value>> = Vec::new();
    for column in &columns {
        let kind = arrow_type(column)?;
        let values = values_of(column, &kind, rows, now_ms)?;
        fields.push(Field::new(&column.name, kind.clone(), false));
        arrays.push(array(&kind, &values));
        made.push(values);
    }
    for key in &keys {
        let at: Vec<usize> = key.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
        let mut seen = HashSet::new();
        let tuples = (0..rows).map(|row| at.iter().map(|&c| made[c][row].text()).collect::<Vec<_>>());
        for tuple in tuples {
            if !seen.insert(tuple) {
                return Err(format!("the key ({}) of `{}` cannot be made unique", key.join(", "), object.name));
            }
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())?;
    Ok(Sample { batch, not_considered })
}

/// The Arrow type of a column: the first of meshplane's usual types that fits what the
/// contract declares.
fn arrow_type(column: &Column) -> Result<DataType, String> {
    let utc = Some(Arc::<str>::from("UTC"));
    let natural = match column.logical.as_deref() {
        Some("integer") => DataType::Int64,
        Some("number") => DataType::Float64,
        Some("boolean") => DataType::Boolean,
        Some("date") => DataType::Date32,
        Some("timestamp") => DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
        Some("time") => DataType::Time64(TimeUnit::Microsecond),
        _ => DataType::Utf8,
    };
    let candidates = [
        natural,
        DataType::Utf8,
        DataType::Int64,
        DataType::Int32,
        DataType::Int16,
        DataType::Float64,
        DataType::Float32,
        DataType::Boolean,
        DataType::Date32,
        DataType::Timestamp(TimeUnit::Microsecond, utc),
        DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Time64(TimeUnit::Microsecond),
    ];
    let (logical, physical) = (column.logical.as_deref(), column.physical.as_deref());
    if logical.is_none() && physical.is_none() {
        return Ok(DataType::Utf8);
    }
    // The natural type of the logical one first: a `number` is made of floats, not integers.
    candidates.into_iter().find(|t| arrow_fit(t, logical, physical, false).fits).ok_or_else(|| {
        let declared = [logical.map(|l| format!("logicalType {l}")), physical.map(|p| format!("physicalType {p}"))];
        let declared: Vec<String> = declared.into_iter().flatten().collect();
        format!("column `{}`: no sample values are made for {} yet", column.name, declared.join(" and "))
    })
}

/// A small deterministic generator (splitmix64), so the same call makes the same rows.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The values of one column, each checked against its rules.
fn values_of(column: &Column, kind: &DataType, rows: usize, now_ms: i64) -> Result<Vec<Value>, String> {
    let name = &column.name;
    let allowed: Option<&Vec<Any>> = column.rules.iter().find_map(|r| match r {
        Validity::OneOf(values) => Some(values),
        _ => None,
    });
    let checker = Checker::new(column)?;
    let unique = column.unique || column.keyed;
    if let Some(values) = allowed {
        let fitting: Vec<Value> =
            values.iter().filter_map(|v| from_json(v, kind)).filter(|v| checker.accepts(v)).collect();
        if fitting.is_empty() {
            return Err(format!("column `{name}`: none of its allowed values fits its type and rules"));
        }
        if column.unique && fitting.len() < rows {
            return Err(format!(
                "column `{name}` is unique and has {} allowed value(s): ask for at most that many rows (--rows)",
                fitting.len()
            ));
        }
        return Ok((0..rows).map(|i| fitting[i % fitting.len()].clone()).collect());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rows);
    let mut dice = Dice(name.bytes().fold(rows as u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    for row in 0..rows {
        let mut made = None;
        for attempt in 0..64 {
            let candidate = candidate(column, kind, row, attempt, now_ms, &mut dice)?;
            if checker.accepts(&candidate) && (!unique || !seen.contains(&candidate.text())) {
                made = Some(candidate);
                break;
            }
        }
        let value = match made {
            Some(v) => v,
            // A key column that cannot be unique on its own may still be part of a unique key.
            None if !column.unique && column.keyed => candidate(column, kind, row, 0, now_ms, &mut dice)?,
            None => {
                let why = if unique { "unique values that meet its rules" } else { "value that meets its rules" };
                return Err(format!("column `{name}`: no {why} could be made for row {}", row + 1));
            }
        };
        if !checker.accepts(&value) {
            return Err(format!("column `{name}`: no value that meets its rules could be made"));
        }
        seen.insert(value.text());
        out.push(value);
    }
    Ok(out)
}

/// A value for `row` (the `attempt`-th try at it) of the column's type.
fn candidate(
    column: &Column,
    kind: &DataType,
    row: usize,
    attempt: usize,
    now_ms: i64,
    dice: &mut Dice,
) -> Result<Value, String> {
    let n = (row + attempt * 7919) as i64;
    let integer = matches!(kind, DataType::Int64 | DataType::Int32 | DataType::Int16);
    let (low, high) = range(&column.rules, integer);
    Ok(match kind {
        DataType::Utf8 => Value::Text(text(column, row, attempt, dice)?),
        DataType::Int64 | DataType::Int32 | DataType::Int16 => {
            let low = low.map_or_else(|| high.map_or(1, |h| (h as i64).saturating_sub(999).min(1)), |l| l as i64);
            let span = high.map_or(i64::MAX, |h| (h.floor() as i64).saturating_sub(low).saturating_add(1)).max(1);
            Value::Int(low.saturating_add(n % span))
        }
        DataType::Float64 | DataType::Float32 => {
            let low = low.unwrap_or_else(|| high.map_or(0.0, |h| (h - 1000.0).min(0.0)));
            // Within a range, a thousand evenly spaced values inside it; above a bound alone, n + ½.
            Value::Float(match high {
                Some(h) => low + (h - low) * ((n % 1000) as f64 + 0.5) / 1000.0,
                None => low + n as f64 + 0.5,
            })
        }
        DataType::Boolean => Value::Bool(n % 2 == 0),
        DataType::Date32 => {
            let today = now_ms.div_euclid(86_400_000) as i32;
            Value::Date(if column.unique || column.keyed { today - n as i32 } else { today })
        }
        DataType::Timestamp(..) => Value::Micros(now_ms * 1000 - n * 1_000_000),
        DataType::Time64(_) => Value::Micros((n % 86_400) * 1_000_000),
        other => return Err(format!("column `{}`: no sample values are made for {other} yet", column.name)),
    })
}

/// The bounds a number must stay within: for an integer, the integers inside them; for a
/// float, the bounds themselves (the values made lie strictly between them).
fn range(rules: &[Validity], integer: bool) -> (Option<f64>, Option<f64>) {
    let (mut low, mut high): (Option<f64>, Option<f64>) = (None, None);
    for rule in rules {
        let (is_low, bound) = match *rule {
            Validity::Minimum(x) => (true, if integer { x.ceil() } else { x }),
            Validity::ExclusiveMinimum(x) => (true, if integer { x.floor() + 1.0 } else { x }),
            Validity::Maximum(x) => (false, if integer { x.floor() } else { x }),
            Validity::ExclusiveMaximum(x) => (false, if integer { x.ceil() - 1.0 } else { x }),
            _ => continue,
        };
        if is_low {
            low = Some(low.map_or(bound, |l| l.max(bound)));
        } else {
            high = Some(high.map_or(bound, |h| h.min(bound)));
        }
    }
    (low, high)
}

/// A text value: made from the column's pattern when it has one, else the column's name and
/// the row's number, padded or cut to its lengths.
fn text(column: &Column, row: usize, attempt: usize, dice: &mut Dice) -> Result<String, String> {
    let (mut min_len, mut max_len) = (0usize, usize::MAX);
    let mut pattern = None;
    for rule in &column.rules {
        match rule {
            Validity::MinLength(n) => min_len = min_len.max(*n as usize),
            Validity::MaxLength(n) => max_len = max_len.min(*n as usize),
            Validity::Pattern(p) => pattern = Some(p),
            _ => {}
        }
    }
    if let Some(p) = pattern {
        let rust = translate(p, Dialect::Rust)?;
        let hir = regex_syntax::Parser::new().parse(&rust).map_err(|e| format!("pattern {p}: {e}"))?;
        let mut out = String::new();
        sample(&hir, dice, &mut out);
        return Ok(out);
    }
    let number = row + attempt * 1_000_003;
    let mut out = format!("{}-{number}", column.name);
    if out.chars().count() > max_len {
        // Letters, not digits: a text format would read a column of digits as numbers.
        out = letters(number);
    }
    while out.chars().count() < min_len {
        out.insert(0, 'a');
    }
    Ok(out)
}

/// `n` in base 26 with the digits `a` to `z` (so `a`s in front change nothing, as zeros).
fn letters(mut n: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a string `hir` matches; characters are letters and digits where the class has them.
fn sample(hir: &Hir, dice: &mut Dice, out: &mut String) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(literal) => out.push_str(&String::from_utf8_lossy(&literal.0)),
        HirKind::Class(Class::Unicode(class)) => {
            let ranges: Vec<(char, char)> = class.ranges().iter().map(|r| (r.start(), r.end())).collect();
            out.push(pick(&ranges, dice));
        }
        HirKind::Class(Class::Bytes(class)) => {
            let ranges: Vec<(char, char)> =
                class.ranges().iter().map(|r| (char::from(r.start()), char::from(r.end().min(0x7f)))).collect();
            out.push(pick(&ranges, dice));
        }
        HirKind::Repetition(repetition) => {
            let extra = repetition.max.map_or(3, |max| (max - repetition.min).min(3));
            let times = repetition.min + dice.below(u64::from(extra) + 1) as u32;
            for _ in 0..times {
                sample(&repetition.sub, dice, out);
            }
        }
        HirKind::Capture(capture) => sample(&capture.sub, dice, out),
        HirKind::Concat(parts) => parts.iter().for_each(|p| sample(p, dice, out)),
        HirKind::Alternation(options) => sample(&options[dice.below(options.len() as u64) as usize], dice, out),
    }
}

/// A character of the class: a letter or digit when it holds one, else another printable
/// ASCII character, else its first.
fn pick(ranges: &[(char, char)], dice: &mut Dice) -> char {
    let within = |c: char| ranges.iter().any(|(a, b)| (*a..=*b).contains(&c));
    for wanted in [char::is_ascii_alphanumeric as fn(&char) -> bool, char::is_ascii_graphic] {
        let chars: Vec<char> = (0u8..0x80).map(char::from).filter(|c| wanted(c) && within(*c)).collect();
        if !chars.is_empty() {
            return chars[dice.below(chars.len() as u64) as usize];
        }
    }
    ranges.first().map_or('x', |r| r.0)
}

/// An allowed value of the list as a value of the column's type.
fn from_json(value: &Any, kind: &DataType) -> Option<Value> {
    match kind {
        DataType::Utf8 => Some(Value::Text(value.as_str().map_or_else(|| value.to_string(), str::to_string))),
        DataType::Int64 | DataType::Int32 | DataType::Int16 => value.as_i64().map(Value::Int),
        DataType::Float64 | DataType::Float32 => value.as_f64().map(Value::Float),
        DataType::Boolean => value.as_bool().map(Value::Bool),
        _ => None,
    }
}

/// Whether a made value meets the column's rules and is none of its missing values.
struct Checker<'c> {
    column: &'c Column,
    patterns: Vec<regex::Regex>,
}

impl<'c> Checker<'c> {
    fn new(column: &'c Column) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for rule in &column.rules {
            if let Validity::Pattern(p) = rule {
                let rust = translate(p, Dialect::Rust)?;
                patterns.push(regex::Regex::new(&rust).map_err(|e| format!("pattern {p}: {e}"))?);
            }
        }
        Ok(Checker { column, patterns })
    }

    fn accepts(&self, value: &Value) -> bool {
        let text = value.text();
        if self.column.missing.iter().any(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string) == text) {
            return false;
        }
        let length = text.chars().count() as u64;
        self.column.rules.iter().all(|rule| match rule {
            Validity::OneOf(_) | Validity::Pattern(_) => true,
            Validity::MinLength(n) => !matches!(value, Value::Text(_)) || length >= *n,
            Validity::MaxLength(n) => !matches!(value, Value::Text(_)) || length <= *n,
            Validity::Minimum(x) => value.number().is_none_or(|v| v >= *x),
            Validity::Maximum(x) => value.number().is_none_or(|v| v <= *x),
            Validity::ExclusiveMinimum(x) => value.number().is_none_or(|v| v > *x),
            Validity::ExclusiveMaximum(x) => value.number().is_none_or(|v| v < *x),
        }) && (!matches!(value, Value::Text(_)) || self.patterns.iter().all(|p| p.is_match(&text)))
    }
}

/// The Arrow array of `values`, all of type `kind`.
fn array(kind: &DataType, values: &[Value]) -> ArrayRef {
    let texts = || values.iter().map(|v| if let Value::Text(s) = v { s.as_str() } else { "" });
    let ints = || values.iter().map(|v| if let Value::Int(i) = v { *i } else { 0 });
    let floats = || values.iter().map(|v| v.number().unwrap_or(0.0));
    let micros = || values.iter().map(|v| if let Value::Micros(m) = v { *m } else { 0 });
    match kind {
        DataType::Int64 => Arc::new(Int64Array::from_iter_values(ints())),
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(ints().map(|i| i as i32))),
        DataType::Int16 => Arc::new(Int16Array::from_iter_values(ints().map(|i| i as i16))),
        DataType::Float64 => Arc::new(Float64Array::from_iter_values(floats())),
        DataType::Float32 => Arc::new(Float32Array::from_iter_values(floats().map(|f| f as f32))),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(values.iter().map(|v| Some(*v == Value::Bool(true))))),
        DataType::Date32 => {
            Arc::new(Date32Array::from_iter_values(values.iter().map(|v| if let Value::Date(d) = v { *d } else { 0 })))
        }
        DataType::Timestamp(_, zone) => {
            Arc::new(TimestampMicrosecondArray::from_iter_values(micros()).with_timezone_opt(zone.clone()))
        }
        DataType::Time64(_) => Arc::new(Time64MicrosecondArray::from_iter_values(micros())),
        _ => Arc::new(StringArray::from_iter_values(texts())),
    }
}

/// Writes `batch` to a new file at `path` (never over an existing one) in `format`, with
/// `delimiter` between CSV fields.
pub fn write(batch: &RecordBatch, format: Format, path: &Path, delimiter: u8) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    match format {
        Format::Parquet => {
            let mut writer =
                datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| failed(&e))?;
            writer.write(batch).map_err(|e| failed(&e))?;
            writer.close().map_err(|e| failed(&e))?;
        }
        Format::Csv => {
            let builder = datafusion::arrow::csv::WriterBuilder::new().with_header(true).with_delimiter(delimiter);
            builder.build(file).write(batch).map_err(|e| failed(&e))?;
        }
        Format::NdJson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(file);
            writer.write(batch).map_err(|e| failed(&e))?;
            writer.finish().map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}

//! Purpose-built kernels that measure a schema object in one pass over Arrow batches.
//!
//! A general engine answers "how many invalid values, how many duplicated keys, what is the
//! newest timestamp" with one aggregate per question and generic expression evaluation.
//! These kernels answer each question with a tight loop over the column it reads: counts
//! are summed, extremes compared, and duplicates counted exactly in an arena-backed hash
//! table (no per-key allocation). Every kernel can be fed batches from any partition and
//! merged with its twin from another partition, so a scan runs on every core.
//!
//! Semantics (docs/test.md): nulls are missing, never invalid; a duplicate is a distinct
//! non-null key that occurs more than once; lengths count characters.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{self, CastOptions};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use hashbrown::HashTable;
use serde_json::Value as Any;

use crate::plan::{Measure, Validity};
use crate::regex::{Dialect, translate};
use crate::types::micros_per;

/// One measurement in progress.
pub enum Kernel {
    Count(CountKernel),
    Dups(DupKernel),
    Extreme(ExtremeKernel),
}

/// The result of a kernel: the value, what else is worth saying, and sample values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub value: Option<f64>,
    pub detail: Option<String>,
    pub samples: Vec<String>,
}

fn column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    schema.index_of(name).map_err(|_| format!("column `{name}` is missing"))
}

impl Kernel {
    /// A kernel for a data-reading measure; `samples` is how many offending values to keep.
    pub fn new(measure: &Measure, schema: &Schema, samples: usize) -> Result<Kernel, String> {
        Ok(match measure {
            Measure::Missing { column, values } => {
                let col = column_index(schema, column)?;
                let test = if values.is_empty() { RowTest::Null } else { RowTest::Missing(ValueSet::new(values)) };
                Kernel::Count(CountKernel::new(col, test, samples))
            }
            Measure::Invalid { column, rules } => {
                let col = column_index(schema, column)?;
                let rules = rules.iter().map(Rule::new).collect::<Result<Vec<_>, _>>()?;
                Kernel::Count(CountKernel::new(col, RowTest::Invalid(rules), samples))
            }
            Measure::Duplicates { columns } => {
                let cols = columns.iter().map(|c| column_index(schema, c)).collect::<Result<Vec<_>, _>>()?;
                Kernel::Dups(DupKernel::new(cols, schema, samples)?)
            }
            Measure::NewestAge { column } | Measure::OldestAge { column } => {
                let col = column_index(schema, column)?;
                let newest = matches!(measure, Measure::NewestAge { .. });
                Kernel::Extreme(ExtremeKernel { col, newest, micros: None })
            }
            Measure::Unparseable { column, logical } => {
                let col = column_index(schema, column)?;
                let target = match logical.as_str() {
                    "integer" => DataType::Int64,
                    "number" => DataType::Float64,
                    "boolean" => DataType::Boolean,
                    "date" => DataType::Date32,
                    _ => DataType::Timestamp(TimeUnit::Microsecond, None),
                };
                Kernel::Count(CountKernel::new(col, RowTest::Unparseable(target), samples))
            }
            other => return Err(format!("{other:?} is not measured by a scan")),
        })
    }

    /// An empty twin for another partition of the same scan (duplicate kernels share their
    /// table with it).
    pub fn fork(&self, measure: &Measure, schema: &Schema, samples: usize) -> Result<Kernel, String> {
        match self {
            Kernel::Dups(k) => k.fork(schema).map(Kernel::Dups),
            _ => Kernel::new(measure, schema, samples),
        }
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match self {
            Kernel::Count(k) => k.update(batch),
            Kernel::Dups(k) => k.update(batch),
            Kernel::Extreme(k) => k.update(batch),
        }
    }

    /// Adds what `other` (the same kernel, fed other batches) has seen.
    pub fn merge(&mut self, other: Kernel) {
        match (self, other) {
            (Kernel::Count(a), Kernel::Count(b)) => {
                a.count += b.count;
                a.samples.extend(b.samples);
                a.samples.truncate(a.max_samples);
            }
            (Kernel::Dups(a), Kernel::Dups(b)) => a.merge(b),
            (Kernel::Extreme(a), Kernel::Extreme(b)) => a.micros = a.pick(a.micros, b.micros),
            _ => unreachable!("kernels are merged with their twins only"),
        }
    }

    /// The measured value; `now_micros` is the clock for ages.
    pub fn finish(self, now_micros: i64) -> Measured {
        match self {
            Kernel::Count(k) => {
                let detail = match &k.test {
                    RowTest::Unparseable(t) if k.count > 0 => Some(format!("{} values do not parse as {t}", k.count)),
                    RowTest::Unparseable(t) => Some(format!("every value parses as {t}")),
                    _ => None,
                };
                Measured { value: Some(k.count as f64), detail, samples: k.samples }
            }
            Kernel::Dups(k) => k.finish(),
            Kernel::Extreme(k) => match k.micros {
                Some(ts) => Measured {
                    value: Some(((now_micros - ts) as f64 / 1e6).floor()),
                    detail: Some(format!("{} value {}", if k.newest { "newest" } else { "oldest" }, format_micros(ts))),
                    samples: vec![],
                },
                None => Measured { value: None, detail: Some("the column holds no timestamp".into()), samples: vec![] },
            },
        }
    }
}

fn format_micros(micros: i64) -> String {
    let array = datafusion::arrow::array::TimestampMicrosecondArray::from(vec![micros]);
    ArrayFormatter::try_new(&array, &FormatOptions::default()).map(|f| f.value(0).to_string()).unwrap_or_default()
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Dictionary(_, v) if v.is_numeric())
}

/// Values of a `validValues` or `missingValues` list, compared as text or as numbers.
/// A short list is searched in order (faster than hashing for a handful of values).
struct ValueSet {
    short: Vec<String>,
    long: hashbrown::HashSet<String, foldhash::fast::FixedState>,
    numbers: Vec<f64>,
}

const SHORT_LIST: usize = 16;

impl ValueSet {
    fn new(values: &[Any]) -> Self {
        let text: Vec<String> = values.iter().filter(|v| !v.is_null()).map(any_text).collect();
        let numbers = values.iter().filter_map(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())).collect();
        if text.len() <= SHORT_LIST {
            ValueSet { short: text, long: Default::default(), numbers }
        } else {
            ValueSet { short: vec![], long: text.into_iter().collect(), numbers }
        }
    }

    fn has_text(&self, s: &str) -> bool {
        self.short.iter().any(|v| v == s) || (!self.long.is_empty() && self.long.contains(s))
    }

    fn has_number(&self, x: f64) -> bool {
        self.numbers.contains(&x)
    }
}

fn any_text(v: &Any) -> String {
    match v {
        Any::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A compiled validity rule.
enum Rule {
    OneOf(ValueSet),
    Pattern(Box<Matcher>, Memo),
    MinLength(u64),
    MaxLength(u64),
    /// A numeric bound: `value OP limit` must hold.
    Number(fn(f64, f64) -> bool, f64),
}

/// A pattern, compiled to a fully built DFA when one fits in a few megabytes (a table walk
/// per byte, nothing shared between threads), else run by the `regex` crate.
struct Matcher {
    dfa: Option<regex_automata::dfa::dense::DFA<Vec<u32>>>,
    regex: ::regex::Regex,
}

impl Matcher {
    fn new(pattern: &str) -> Result<Matcher, String> {
        use regex_automata::dfa::dense;
        let regex = ::regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let config = dense::Config::new().dfa_size_limit(Some(4 << 20)).determinize_size_limit(Some(8 << 20));
        let dfa = dense::Builder::new().configure(config).build(pattern).ok();
        Ok(Matcher { dfa, regex })
    }

    fn is_match(&self, s: &str) -> bool {
        use regex_automata::dfa::Automaton;
        let found = self.dfa.as_ref().map(|dfa| dfa.try_search_fwd(&regex_automata::Input::new(s).earliest(true)));
        match found {
            Some(Ok(half)) => half.is_some(),
            // No DFA, or it gave up on this input (a heuristic it cannot decide): the regex
            // crate decides.
            _ => self.regex.is_match(s),
        }
    }
}

/// Verdicts of a pattern per distinct value, while the column looks low-cardinality.
#[derive(Default)]
struct Memo {
    seen: hashbrown::HashMap<Box<str>, bool>,
    off: bool,
}

const MEMO_LIMIT: usize = 256;

impl Rule {
    /// A numeric bound on a text column parses each value; one that is not a number breaks it.
    fn new(v: &Validity) -> Result<Rule, String> {
        let number = |op: fn(f64, f64) -> bool, x: f64| Ok(Rule::Number(op, x));
        match v {
            Validity::OneOf(values) => Ok(Rule::OneOf(ValueSet::new(values))),
            Validity::Pattern(p) => {
                Ok(Rule::Pattern(Box::new(Matcher::new(&translate(p, Dialect::Rust)?)?), Memo::default()))
            }
            Validity::MinLength(n) => Ok(Rule::MinLength(*n)),
            Validity::MaxLength(n) => Ok(Rule::MaxLength(*n)),
            Validity::Minimum(x) => number(|v, x| v >= x, *x),
            Validity::Maximum(x) => number(|v, x| v <= x, *x),
            Validity::ExclusiveMinimum(x) => number(|v, x| v > x, *x),
            Validity::ExclusiveMaximum(x) => number(|v, x| v < x, *x),
        }
    }

    /// Whether the rule reads the value as text.
    fn on_text(&self) -> bool {
        matches!(self, Rule::Pattern(..) | Rule::MinLength(_) | Rule::MaxLength(_))
    }

    fn ok_text(&mut self, s: &str) -> bool {
        match self {
            Rule::OneOf(set) => set.has_text(s),
            Rule::Pattern(re, memo) => {
                if memo.off {
                    return re.is_match(s);
                }
                if let Some(ok) = memo.seen.get(s) {
                    return *ok;
                }
                let ok = re.is_match(s);
                if memo.seen.len() < MEMO_LIMIT {
                    memo.seen.insert(s.into(), ok);
                } else {
                    memo.off = true;
                }
                ok
            }
            Rule::MinLength(n) => char_len(s) >= *n,
            Rule::MaxLength(n) => char_len(s) <= *n,
            Rule::Number(op, x) => s.trim().parse::<f64>().is_ok_and(|v| op(v, *x)),
        }
    }

    fn ok_number(&self, v: f64) -> bool {
        match self {
            Rule::OneOf(set) => set.has_number(v),
            Rule::Number(op, x) => op(v, *x),
            _ => true,
        }
    }
}

fn char_len(s: &str) -> u64 {
    if s.is_ascii() { s.len() as u64 } else { s.chars().count() as u64 }
}

/// What a counting kernel counts.
enum RowTest {
    Null,
    Missing(ValueSet),
    Invalid(Vec<Rule>),
    Unparseable(DataType),
}

pub struct CountKernel {
    col: usize,
    test: RowTest,
    count: u64,
    samples: Vec<String>,
    max_samples: usize,
}

/// Calls `f` with every value of a column as text (null as None), whatever its string layout.
fn for_each_text(array: &ArrayRef, mut f: impl FnMut(Option<&str>)) -> Result<(), String> {
    let array = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => array.clone(),
        _ => compute::cast(array, &DataType::Utf8View).map_err(|e| e.to_string())?,
    };
    if let Some(a) = array.as_string_view_opt() {
        a.iter().for_each(&mut f);
    } else if let Some(a) = array.as_string_opt::<i32>() {
        a.iter().for_each(&mut f);
    } else if let Some(a) = array.as_string_opt::<i64>() {
        a.iter().for_each(&mut f);
    }
    Ok(())
}

impl CountKernel {
    fn new(col: usize, test: RowTest, max_samples: usize) -> Self {
        CountKernel { col, test, count: 0, samples: Vec::new(), max_samples }
    }

    fn sample(&mut self, value: impl FnOnce() -> String) {
        if self.samples.len() < self.max_samples {
            self.samples.push(value());
        }
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let array = batch.column(self.col);
        match &mut self.test {
            RowTest::Null => {
                let nulls = array.null_count();
                self.count += nulls as u64;
                for _ in 0..nulls.min(self.max_samples - self.samples.len().min(self.max_samples)) {
                    self.samples.push("null".into());
                }
            }
            RowTest::Missing(set) => {
                let mut hits = 0u64;
                let mut found = Vec::new();
                let numeric = is_numeric(array.data_type());
                if numeric {
                    let values = compute::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
                    for v in values.as_primitive::<Float64Type>().iter() {
                        if v.is_none_or(|v| set.has_number(v)) {
                            hits += 1;
                            if found.len() < self.max_samples {
                                found.push(v.map_or("null".to_string(), |v| v.to_string()));
                            }
                        }
                    }
                } else {
                    for_each_text(array, |v| {
                        if v.is_none_or(|s| set.has_text(s)) {
                            hits += 1;
                            if found.len() < self.max_samples {
                                found.push(v.unwrap_or("null").to_string());
                            }
                        }
                    })?;
                }
                self.count += hits;
                found.into_iter().for_each(|s| self.sample(|| s));
            }
            RowTest::Invalid(rules) => {
                let mut bad = 0u64;
                let mut found = Vec::new();
                let keep = self.max_samples;
                if is_numeric(array.data_type()) && !rules.iter().any(Rule::on_text) {
                    let values = compute::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
                    for v in values.as_primitive::<Float64Type>().iter().flatten() {
                        if !rules.iter().all(|r| r.ok_number(v)) {
                            bad += 1;
                            if found.len() < keep {
                                found.push(v.to_string());
                            }
                        }
                    }
                } else {
                    for_each_text(array, |v| {
                        if let Some(s) = v
                            && !rules.iter_mut().all(|r| r.ok_text(s))
                        {
                            bad += 1;
                            if found.len() < keep {
                                found.push(s.to_string());
                            }
                        }
                    })?;
                }
                self.count += bad;
                found.into_iter().for_each(|s| self.sample(|| s));
            }
            RowTest::Unparseable(target) => {
                let options = CastOptions { safe: true, ..Default::default() };
                let parsed = compute::cast_with_options(array, target, &options).map_err(|e| e.to_string())?;
                let failed = parsed.null_count() - array.null_count();
                self.count += failed as u64;
                if failed > 0 && self.samples.len() < self.max_samples {
                    let text = compute::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
                    let text = text.as_string::<i32>();
                    for i in (0..array.len()).filter(|&i| array.is_valid(i) && parsed.is_null(i)) {
                        self.sample(|| text.value(i).to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The newest or oldest timestamp of a column, in microseconds since the epoch (UTC; a
/// timestamp without a zone is read as UTC).
pub struct ExtremeKernel {
    col: usize,
    newest: bool,
    micros: Option<i64>,
}

impl ExtremeKernel {
    fn pick(&self, a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if self.newest { a.max(b) } else { a.min(b) }),
            (a, b) => a.or(b),
        }
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let array = batch.column(self.col);
        let (scaled, mul, div) = match array.data_type() {
            DataType::Timestamp(unit, _) => {
                let (mul, div) = micros_per(unit);
                (compute::cast(array, &DataType::Int64).map_err(|e| e.to_string())?, mul, div)
            }
            DataType::Date32 => (compute::cast(array, &DataType::Int64).map_err(|e| e.to_string())?, 86_400_000_000, 1),
            DataType::Date64 => (compute::cast(array, &DataType::Int64).map_err(|e| e.to_string())?, 1_000, 1),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let options = CastOptions { safe: true, ..Default::default() };
                let ts = compute::cast_with_options(array, &DataType::Timestamp(TimeUnit::Microsecond, None), &options)
                    .map_err(|e| e.to_string())?;
                let ts = ts.as_primitive::<TimestampMicrosecondType>().reinterpret_cast::<Int64Type>();
                (Arc::new(ts) as ArrayRef, 1, 1)
            }
            other => return Err(format!("the column is {other}, not a date or timestamp")),
        };
        let values = scaled.as_primitive::<Int64Type>();
        let extreme = if self.newest { compute::max(values) } else { compute::min(values) };
        self.micros = self.pick(self.micros, extreme.map(|v| v.saturating_mul(mul) / div));
        Ok(())
    }
}

/// Exact duplicate counting, two ways.
///
/// While a partition's keys arrive in order of their *lead* (the key itself, or the first
/// column of a composite key: ids and timestamps often come in order), duplicates can only
/// be among the keys of one lead: each key is compared with those of the current run of equal
/// leads (usually one), with no hashing. The distinct keys are kept (bytes and counts) so
/// that, when the order breaks or two partitions' lead ranges overlap, they are replayed into
/// the table, and the count stays exact.
///
/// Otherwise each distinct key is kept once, in a table sharded by hash and shared by every
/// partition of a scan, so partitions insert in parallel and nothing is merged at the end.
/// Keys live in per-shard arenas (no allocation per key); a partition groups a batch's keys
/// by shard first and takes each shard's lock once per batch.
///
/// Key bytes sort as their values do (integers big-endian with the sign flipped, text as
/// UTF-8, Arrow's row format for the rest), so "in order" means "bytes non-decreasing".
pub struct DupKernel {
    cols: Vec<usize>,
    key: KeyKind,
    shared: Arc<DupTable>,
    max_samples: usize,
    /// Keys bound for the table: their bytes, and (shard, hash, start, len, times) of each.
    bytes: Vec<u8>,
    keys: Vec<(u32, u64, u32, u32, u32)>,
    /// Some while this partition's keys have come in order.
    sorted: Option<SortedKeys>,
    /// Scratch: the keys of a chunk by hash, to count repeats before the shared table.
    local: HashTable<usize>,
}

/// Distinct keys seen in non-decreasing order of their leads, each with how often it occurred.
#[derive(Default)]
struct SortedKeys {
    arena: Vec<u8>,
    /// Where each key ends in the arena.
    ends: Vec<usize>,
    counts: Vec<u32>,
    /// The lead of the first and of the last run, and where the last run starts (an index
    /// into `ends`); how many keys the first run has.
    first_lead: Option<Vec<u8>>,
    last_lead: Vec<u8>,
    run_start: usize,
    first_run_len: usize,
    dup_keys: u64,
    dup_rows: u64,
    samples: Vec<Vec<u8>>,
}

impl SortedKeys {
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.arena[start..self.ends[i]]
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Counts one more occurrence of key `i`.
    fn again(&mut self, i: usize, times: u32, max_samples: usize) {
        let before = self.counts[i];
        let after = before.saturating_add(times);
        self.counts[i] = after;
        if before > 1 {
            self.dup_rows += u64::from(times);
        } else {
            self.dup_keys += 1;
            self.dup_rows += u64::from(after);
            if self.samples.len() < max_samples {
                self.samples.push(self.key(i).to_vec());
            }
        }
    }

    fn add(&mut self, key: &[u8], times: u32) {
        self.arena.extend_from_slice(key);
        self.ends.push(self.arena.len());
        self.counts.push(times);
    }

    /// Adds a key of lead `lead`; false (and nothing added) when the lead is smaller than the
    /// last one.
    fn push(&mut self, lead: &[u8], key: &[u8], max_samples: usize) -> bool {
        let order = if self.is_empty() { std::cmp::Ordering::Greater } else { lead.cmp(&self.last_lead) };
        match order {
            std::cmp::Ordering::Less => return false,
            std::cmp::Ordering::Equal => match (self.run_start..self.ends.len()).find(|&i| self.key(i) == key) {
                Some(i) => self.again(i, 1, max_samples),
                None => self.add(key, 1),
            },
            std::cmp::Ordering::Greater => {
                if self.first_lead.is_none() {
                    self.first_lead = Some(lead.to_vec());
                }
                self.last_lead.clear();
                self.last_lead.extend_from_slice(lead);
                self.run_start = self.ends.len();
                self.add(key, 1);
            }
        }
        if self.run_start == 0 {
            self.first_run_len = self.ends.len();
        }
        true
    }

    /// Appends `later`, whose leads all come at or after this one's last: a first run of
    /// `later` that continues this one's last run is merged into it.
    fn append(&mut self, later: SortedKeys, max_samples: usize) {
        if self.is_empty() {
            *self = later;
            return;
        }
        let joins = later.first_lead.as_deref() == Some(self.last_lead.as_slice());
        let skip = if joins { later.first_run_len } else { 0 };
        let run_end = self.ends.len();
        self.dup_keys += later.dup_keys;
        self.dup_rows += later.dup_rows;
        for j in 0..skip {
            let key = later.key(j);
            match (self.run_start..run_end).find(|&i| self.key(i) == key) {
                Some(i) => {
                    // `later` counted this key on its own (its totals are in ours now): count
                    // the two as one.
                    let theirs = later.counts[j];
                    if theirs > 1 {
                        self.dup_keys -= 1;
                        self.dup_rows -= u64::from(theirs);
                        if self.counts[i] > 1 {
                            self.dup_rows += u64::from(theirs);
                            self.counts[i] = self.counts[i].saturating_add(theirs);
                        } else {
                            self.dup_keys += 1;
                            self.counts[i] = self.counts[i].saturating_add(theirs);
                            self.dup_rows += u64::from(self.counts[i]);
                        }
                    } else {
                        self.again(i, theirs, max_samples);
                    }
                }
                None => self.add(key, later.counts[j]),
            }
        }
        if self.run_start == 0 {
            self.first_run_len = self.ends.len();
        }
        let (offset, base) = (self.ends.len(), self.arena.len());
        let start = if skip == 0 { 0 } else { later.ends[skip - 1] };
        self.arena.extend_from_slice(&later.arena[start..]);
        self.ends.extend(later.ends[skip..].iter().map(|e| e - start + base));
        self.counts.extend_from_slice(&later.counts[skip..]);
        self.samples.extend(later.samples);
        self.samples.truncate(max_samples);
        if skip < later.ends.len() {
            self.run_start = offset + (later.run_start - skip);
            self.last_lead = later.last_lead;
        }
    }

    /// Whether every lead of this one is at or before every lead of `later`.
    fn precedes(&self, later: &SortedKeys) -> bool {
        later.first_lead.as_deref().is_some_and(|first| self.last_lead.as_slice() <= first)
    }
}

const SHARDS: usize = 64;

/// The shared table: shards of distinct keys with how often each occurs.
pub struct DupTable {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::fast::FixedState,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    arena: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    offset: u64,
    len: u32,
    count: u32,
}

impl Shard {
    fn key(&self, e: &Entry) -> &[u8] {
        &self.arena[e.offset as usize..e.offset as usize + e.len as usize]
    }

    fn insert(&mut self, hash: u64, key: &[u8], times: u32) {
        let arena = &self.arena;
        let found = self
            .table
            .find_mut(hash, |e| e.hash == hash && &arena[e.offset as usize..e.offset as usize + e.len as usize] == key);
        match found {
            Some(e) => e.count = e.count.saturating_add(times),
            None => {
                let offset = self.arena.len() as u64;
                self.arena.extend_from_slice(key);
                self.table.insert_unique(hash, Entry { hash, offset, len: key.len() as u32, count: times }, |e| e.hash);
            }
        }
    }
}

enum KeyKind {
    /// One integer column: the key is its 8 bytes, ordered.
    Integer,
    /// One text column: the key is its bytes.
    Text,
    /// Anything else, or several columns: Arrow's row format.
    Rows(RowConverter),
}

/// The leads of a composite key: its first column's values as ordered bytes, when that
/// column is an integer or text (otherwise the whole key leads).
enum Leads {
    Ints(ArrayRef),
    Texts(ArrayRef),
    None,
}

impl Leads {
    fn of(first: &ArrayRef) -> Result<Leads, String> {
        Ok(match first.data_type() {
            t if t.is_integer() => Leads::Ints(compute::cast(first, &DataType::Int64).map_err(|e| e.to_string())?),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Leads::Texts(compute::cast(first, &DataType::Utf8View).map_err(|e| e.to_string())?)
            }
            _ => Leads::None,
        })
    }

    fn get(&self, i: usize) -> Option<Lead<'_>> {
        match self {
            Leads::Ints(a) => Some(Lead::Int(ordered_int(a.as_primitive::<Int64Type>().value(i)))),
            Leads::Texts(a) => Some(Lead::Text(a.as_string_view().value(i).as_bytes())),
            Leads::None => None,
        }
    }
}

/// One lead's bytes, without an allocation.
enum Lead<'a> {
    Int([u8; 8]),
    Text(&'a [u8]),
}

impl std::ops::Deref for Lead<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Lead::Int(bytes) => bytes,
            Lead::Text(bytes) => bytes,
        }
    }
}

/// An integer's bytes in an order that sorts as the integers do.
fn ordered_int(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn dup_result(keys: u64, rows: u64, samples: Vec<String>) -> Measured {
    Measured {
        value: Some(keys as f64),
        detail: (keys > 0).then(|| format!("{keys} duplicated keys over {rows} rows")),
        samples,
    }
}

/// Keys gathered for the table are inserted in chunks of at most this many keys, or bytes
/// (which also keeps offsets within the chunk in 32 bits).
const FLUSH_AT: usize = 65_536;
const FLUSH_BYTES: usize = 64 << 20;

impl DupKernel {
    fn new(cols: Vec<usize>, schema: &Schema, max_samples: usize) -> Result<Self, String> {
        let shared = Arc::new(DupTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_7368),
        });
        Self::sharing(cols, schema, max_samples, shared)
    }

    fn sharing(cols: Vec<usize>, schema: &Schema, max_samples: usize, shared: Arc<DupTable>) -> Result<Self, String> {
        let types: Vec<&DataType> = cols.iter().map(|&c| schema.field(c).data_type()).collect();
        let key = match types.as_slice() {
            [t] if t.is_integer() => KeyKind::Integer,
            [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View] => KeyKind::Text,
            _ => KeyKind::Rows(
                RowConverter::new(types.iter().map(|t| SortField::new((*t).clone())).collect())
                    .map_err(|e| e.to_string())?,
            ),
        };
        let sorted = Some(SortedKeys::default());
        Ok(DupKernel {
            cols,
            key,
            shared,
            max_samples,
            bytes: Vec::new(),
            keys: Vec::new(),
            sorted,
            local: HashTable::new(),
        })
    }

    /// A twin for another partition: its own key encoder, the same table.
    fn fork(&self, schema: &Schema) -> Result<Self, String> {
        Self::sharing(self.cols.clone(), schema, self.max_samples, Arc::clone(&self.shared))
    }

    fn push(&mut self, lead: &[u8], key: &[u8]) {
        if let Some(sorted) = &mut self.sorted {
            if sorted.push(lead, key, self.max_samples) {
                return;
            }
            // The order broke: what was counted by adjacency goes to the table.
            self.spill();
        }
        self.push_table(key, 1);
    }

    fn push_table(&mut self, key: &[u8], times: u32) {
        let hash = self.shared.hasher.hash_one(key);
        // Shards by bits the shard tables use neither for their buckets (low) nor their tags (high).
        let shard = ((hash >> 32) as usize % SHARDS) as u32;
        self.keys.push((shard, hash, self.bytes.len() as u32, key.len() as u32, times));
        self.bytes.extend_from_slice(key);
        if self.keys.len() >= FLUSH_AT || self.bytes.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Moves the keys counted in order into the shared table, with their counts, and leaves
    /// sorted mode for good.
    fn spill(&mut self) {
        let Some(sorted) = self.sorted.take() else { return };
        for (i, &times) in sorted.counts.iter().enumerate() {
            self.push_table(sorted.key(i), times);
        }
        self.flush();
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let arrays: Vec<ArrayRef> = self.cols.iter().map(|&c| batch.column(c).clone()).collect();
        match &self.key {
            KeyKind::Integer => {
                let ints = compute::cast(&arrays[0], &DataType::Int64).map_err(|e| e.to_string())?;
                for v in ints.as_primitive::<Int64Type>().iter().flatten() {
                    let key = ordered_int(v);
                    self.push(&key, &key);
                }
            }
            KeyKind::Text => {
                for_each_text(&arrays[0], |v| v.into_iter().for_each(|s| self.push(s.as_bytes(), s.as_bytes())))?
            }
            KeyKind::Rows(converter) => {
                let rows = converter.convert_columns(&arrays).map_err(|e| e.to_string())?;
                let leads = Leads::of(&arrays[0])?;
                for (i, row) in rows.iter().enumerate() {
                    if arrays.iter().all(|a| a.is_valid(i)) {
                        let lead = leads.get(i);
                        self.push(lead.as_deref().unwrap_or(row.as_ref()), row.as_ref());
                    }
                }
            }
        }
        self.flush();
        Ok(())
    }

    /// Inserts the keys gathered for the table, shard by shard.
    ///
    /// Keys repeated within the chunk are counted here first, so a column of few distinct
    /// values touches the shared table a few times per chunk instead of once per row.
    fn flush(&mut self) {
        let (keys, bytes) = (&mut self.keys, &self.bytes);
        let key = |k: &(u32, u64, u32, u32, u32)| &bytes[k.2 as usize..(k.2 + k.3) as usize];
        self.local.clear();
        for i in 0..keys.len() {
            let (hash, times) = (keys[i].1, keys[i].4);
            let found = self.local.find(hash, |&j| keys[j].1 == hash && key(&keys[j]) == key(&keys[i])).copied();
            match found {
                Some(j) => {
                    keys[j].4 = keys[j].4.saturating_add(times);
                    keys[i].4 = 0;
                }
                None => {
                    self.local.insert_unique(hash, i, |&j| keys[j].1);
                }
            }
        }
        keys.retain(|k| k.4 > 0);
        keys.sort_unstable_by_key(|k| k.0);
        for group in keys.chunk_by(|a, b| a.0 == b.0) {
            // A poisoned lock means another scan task panicked; its panic is reported.
            let mut shard = self.shared.shards[group[0].0 as usize].lock().unwrap_or_else(|e| e.into_inner());
            for k in group {
                shard.insert(k.1, key(k), k.4);
            }
        }
        self.keys.clear();
        self.bytes.clear();
    }

    /// Adds what a twin saw. Two runs in order whose key ranges do not overlap stay in order;
    /// anything else goes to the shared table.
    fn merge(&mut self, mut other: DupKernel) {
        let keep = match (self.sorted.take(), other.sorted.take()) {
            (Some(a), Some(b)) if b.is_empty() => Some(a),
            (Some(a), Some(b)) if a.is_empty() => Some(b),
            (Some(mut a), Some(b)) if a.precedes(&b) => {
                a.append(b, self.max_samples);
                Some(a)
            }
            (Some(a), Some(mut b)) if b.precedes(&a) => {
                b.append(a, self.max_samples);
                Some(b)
            }
            (a, b) => {
                self.sorted = a;
                self.spill();
                other.sorted = b;
                other.spill();
                None
            }
        };
        self.sorted = keep;
    }

    fn finish(self) -> Measured {
        if let Some(sorted) = &self.sorted {
            let samples = sorted.samples.iter().map(|k| self.describe_key(k)).collect();
            return dup_result(sorted.dup_keys, sorted.dup_rows, samples);
        }
        let (mut keys, mut rows) = (0u64, 0u64);
        let mut samples = Vec::new();
        for shard in &self.shared.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for e in shard.table.iter().filter(|e| e.count > 1) {
                keys += 1;
                rows += u64::from(e.count);
                if samples.len() < self.max_samples {
                    samples.push(self.describe_key(shard.key(e)));
                }
            }
        }
        dup_result(keys, rows, samples)
    }

    fn describe_key(&self, bytes: &[u8]) -> String {
        match &self.key {
            KeyKind::Integer => bytes
                .try_into()
                .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            KeyKind::Text => String::from_utf8_lossy(bytes).into_owned(),
            KeyKind::Rows(converter) => {
                let parser = converter.parser();
                let row = parser.parse(bytes);
                let Ok(cols) = converter.convert_rows([row]) else { return String::new() };
                let text = |c: &ArrayRef| {
                    ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())
                        .map(|f| f.value(0).to_string())
                        .unwrap_or_default()
                };
                cols.iter().map(text).collect::<Vec<_>>().join(", ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn batch(ids: &[Option<i64>], names: &[Option<String>]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            ("name", Arc::new(StringArray::from(names.to_vec())) as ArrayRef),
        ])
        .unwrap()
    }

    fn schema() -> Schema {
        Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)])
    }

    /// Feeds the rows in two halves to two kernels and merges them, as two partitions would.
    fn measure(measure: &Measure, ids: &[Option<i64>], names: &[Option<String>]) -> f64 {
        let half = ids.len() / 2;
        let mut a = Kernel::new(measure, &schema(), 0).unwrap();
        let mut b = a.fork(measure, &schema(), 0).unwrap();
        a.update(&batch(&ids[..half], &names[..half])).unwrap();
        b.update(&batch(&ids[half..], &names[half..])).unwrap();
        a.merge(b);
        a.finish(0).value.unwrap()
    }

    /// Distinct non-null keys seen more than once, counted the slow way.
    fn naive_dups<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = Option<K>>) -> f64 {
        let mut counts = HashMap::new();
        for k in keys.flatten() {
            *counts.entry(k).or_insert(0) += 1;
        }
        counts.values().filter(|&&n| n > 1).count() as f64
    }

    fn rows() -> impl Strategy<Value = Vec<(Option<i64>, Option<String>)>> {
        prop::collection::vec((prop::option::of(0i64..40), prop::option::of("[a-c]{0,3}")), 0..200)
    }

    #[test]
    fn long_and_short_value_lists_agree() {
        let values: Vec<Any> = (0..40).map(|i| Any::from(format!("v{i}"))).collect();
        let (long, short) = (ValueSet::new(&values), ValueSet::new(&values[..3]));
        assert!(long.short.is_empty() && long.has_text("v39") && !long.has_text("v40"));
        assert!(short.long.is_empty() && short.has_text("v2") && !short.has_text("v3"));
    }

    proptest! {
        #[test]
        fn duplicate_counts_match_a_naive_count(rows in rows()) {
            let (ids, names): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            let one = |c: &str| Measure::Duplicates { columns: vec![c.into()] };
            prop_assert_eq!(measure(&one("id"), &ids, &names), naive_dups(ids.iter().copied()));
            prop_assert_eq!(measure(&one("name"), &ids, &names), naive_dups(names.iter().cloned()));
            let both = Measure::Duplicates { columns: vec!["id".into(), "name".into()] };
            let pairs = ids.iter().zip(&names).map(|(i, n)| Some(((*i)?, n.clone()?)));
            prop_assert_eq!(measure(&both, &ids, &names), naive_dups(pairs));
        }

        /// Keys in order take the path without hashing; halves in either order, with ranges
        /// apart or touching, must give the same exact counts.
        #[test]
        fn ordered_keys_count_the_same(mut ids in prop::collection::vec(prop::option::of(0i64..60), 0..200), swap: bool) {
            ids.sort();
            let want = naive_dups(ids.iter().copied());
            let names: Vec<Option<String>> = ids.iter().map(|i| i.map(|v| format!("k{v:03}"))).collect();
            let (mut ids2, mut names2) = (ids.clone(), names.clone());
            if swap {
                let half = ids.len() / 2;
                ids2.rotate_left(half);
                names2.rotate_left(half);
            }
            let one = |c: &str| Measure::Duplicates { columns: vec![c.into()] };
            prop_assert_eq!(measure(&one("id"), &ids2, &names2), want);
            prop_assert_eq!(measure(&one("name"), &ids2, &names2), want);
        }

        /// Composite keys whose first column comes in order (the second in any order) are
        /// counted run by run, without hashing, however the rows are cut into partitions and
        /// in whatever order the partitions are merged.
        #[test]
        fn keys_led_by_an_ordered_column_count_the_same(
            mut rows in prop::collection::vec((0i64..30, prop::option::of("[a-c]{0,2}")), 0..200),
            cuts in prop::collection::vec(0usize..200, 0..4),
            reverse: bool,
        ) {
            rows.sort_by_key(|r| r.0);
            let (ids, names): (Vec<Option<i64>>, Vec<Option<String>>) = rows.into_iter().map(|(i, n)| (Some(i), n)).unzip();
            let pairs = ids.iter().zip(&names).map(|(i, n)| Some(((*i)?, n.clone()?)));
            let want = naive_dups(pairs);
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(ids.len())).collect();
            bounds.extend([0, ids.len()]);
            bounds.sort();
            let both = Measure::Duplicates { columns: vec!["id".into(), "name".into()] };
            let mut parts: Vec<Kernel> = bounds.windows(2).map(|w| {
                let mut k = Kernel::new(&both, &schema(), 0).unwrap();
                k.update(&batch(&ids[w[0]..w[1]], &names[w[0]..w[1]])).unwrap();
                k
            }).collect();
            if reverse {
                parts.reverse();
            }
            let mut all = parts.remove(0);
            let in_order = !reverse;
            for part in parts {
                all.merge(part);
            }
            if in_order && let Kernel::Dups(d) = &all {
                prop_assert!(d.sorted.is_some(), "merged in order, the run-by-run count holds");
            }
            prop_assert_eq!(all.finish(0).value.unwrap(), want);
        }

        /// The DFA answers as the regex crate does, on texts made to nearly match.
        #[test]
        fn the_dfa_agrees_with_the_regex_crate(text in "(ORD-)?[0-9a-z@. \u{e9}\u{2028}-]{0,16}") {
            for ecma in [r"^ORD-\d{9}$", r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", r"\d{3}", r"^a|b$", r"^.{2,4}$", r"\bx"] {
                let rust = translate(ecma, Dialect::Rust).unwrap();
                let matcher = Matcher::new(&rust).unwrap();
                prop_assert!(matcher.dfa.is_some() || ecma.contains("\\b"), "{ecma} has its DFA");
                prop_assert_eq!(matcher.is_match(&text), ::regex::Regex::new(&rust).unwrap().is_match(&text), "{} on {:?}", ecma, text);
            }
        }

        #[test]
        fn counts_match_a_naive_count(rows in rows()) {
            let (ids, names): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            let nulls = Measure::Missing { column: "name".into(), values: vec![] };
            prop_assert_eq!(measure(&nulls, &ids, &names), names.iter().filter(|n| n.is_none()).count() as f64);
            let missing = Measure::Missing { column: "name".into(), values: vec![Any::from(""), Any::from("ab")] };
            let want = names.iter().filter(|n| n.as_deref().is_none_or(|s| s.is_empty() || s == "ab")).count();
            prop_assert_eq!(measure(&missing, &ids, &names), want as f64);
            let invalid = Measure::Invalid { column: "name".into(), rules: vec![Validity::Pattern("^a".into()), Validity::MaxLength(2)] };
            let want = names.iter().flatten().filter(|s| !(s.starts_with('a') && s.len() <= 2)).count();
            prop_assert_eq!(measure(&invalid, &ids, &names), want as f64);
            let bounded = Measure::Invalid { column: "id".into(), rules: vec![Validity::ExclusiveMinimum(3.0), Validity::OneOf(vec![Any::from(4), Any::from(9), Any::from(30)])] };
            let want = ids.iter().flatten().filter(|&&v| !(v > 3 && [4, 9, 30].contains(&v))).count();
            prop_assert_eq!(measure(&bounded, &ids, &names), want as f64);
        }
    }
}

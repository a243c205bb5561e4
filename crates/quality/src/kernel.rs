//! Purpose-built kernels that measure a schema object in one pass over Arrow batches.
//!
//! A general engine answers "how many invalid values, how many duplicated keys, what is the
//! newest timestamp" with one aggregate per question and generic expression evaluation.
//! These kernels answer each question with a tight loop over the column it reads: counts
//! are summed, extremes compared, and duplicates counted exactly ([`crate::dups`]). Every kernel can be fed batches from any partition and
//! merged with its twin from another partition, so a scan runs on every core.
//!
//! Semantics (docs/test.md): nulls are missing, never invalid; a duplicate is a distinct
//! non-null key that occurs more than once; lengths count characters.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{self, CastOptions};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use datafusion::common::stats::{ColumnStatistics, Precision};

use crate::counted::CountedKernel;
use crate::dups::DupKernel;
use crate::plan::Measure;
use crate::rules::{Broken, Rules, Texts, ValueSet, as_text, flagged_rows, format_value, is_numeric};
use crate::types::micros_per;

/// One measurement in progress.
pub enum Kernel {
    Count(CountKernel),
    Dups(Box<DupKernel>),
    Extreme(ExtremeKernel),
    /// A contract SQL rule that counts rows under a condition (built by the files executor).
    Counted(CountedKernel),
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
        Self::build(measure, schema, samples, true, false)
    }

    /// The kernel for a second pass over a measure whose kernel [`Kernel::needs_rescan`]:
    /// duplicates are counted by hash from the first row.
    pub fn rescan(measure: &Measure, schema: &Schema, samples: usize) -> Result<Kernel, String> {
        Self::build(measure, schema, samples, false, false)
    }

    /// The kernel of a composite key's duplicates that also counts the duplicates of its
    /// first column alone ([`Kernel::finish_lead`]), so the two share one walk; `ordered`
    /// false for a rescan.
    pub fn with_lead(measure: &Measure, schema: &Schema, samples: usize, ordered: bool) -> Result<Kernel, String> {
        Self::build(measure, schema, samples, ordered, true)
    }

    /// Whether the kernel cannot finish exactly (keys counted in order whose order broke
    /// after their batches were let go) and the scan must feed a [`Kernel::rescan`] again.
    pub fn needs_rescan(&self) -> bool {
        matches!(self, Kernel::Dups(k) if k.needs_rescan())
    }

    fn build(measure: &Measure, schema: &Schema, samples: usize, ordered: bool, lead: bool) -> Result<Kernel, String> {
        Ok(match measure {
            Measure::Missing { column, values } => {
                let col = column_index(schema, column)?;
                let test = if values.is_empty() { RowTest::Null } else { RowTest::Missing(ValueSet::new(values)) };
                Kernel::Count(CountKernel::new(col, test, samples))
            }
            Measure::Invalid { column, rules } => {
                let col = column_index(schema, column)?;
                let rules = Rules::new(rules)?;
                Kernel::Count(CountKernel::new(col, RowTest::Invalid(rules), samples))
            }
            Measure::Duplicates { columns } => {
                let cols = columns.iter().map(|c| column_index(schema, c)).collect::<Result<Vec<_>, _>>()?;
                let kernel = match lead {
                    true => DupKernel::with_lead(cols, schema, samples, ordered)?,
                    false => DupKernel::new(cols, schema, samples, ordered)?,
                };
                Kernel::Dups(Box::new(kernel))
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

    /// The finished kernel of a measure that a table's exact statistics answer without
    /// reading a row: a null count, or the newest or oldest value of a date or timestamp
    /// column (whose minimum and maximum are values, not a text's byte order).
    pub fn from_statistics(
        measure: &Measure,
        schema: &Schema,
        stats: &ColumnStatistics,
        samples: usize,
    ) -> Option<Kernel> {
        let mut kernel = Kernel::new(measure, schema, samples).ok()?;
        match (&mut kernel, measure) {
            (Kernel::Count(k), Measure::Missing { values, .. }) if values.is_empty() => {
                let Precision::Exact(nulls) = stats.null_count else { return None };
                k.add_nulls(nulls);
            }
            (Kernel::Extreme(k), _)
                if matches!(
                    schema.field(k.col).data_type(),
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                ) =>
            {
                let Precision::Exact(value) = (if k.newest { &stats.max_value } else { &stats.min_value }) else {
                    return None;
                };
                if value.is_null() {
                    return None;
                }
                k.observe(&value.to_array().ok()?).ok()?;
            }
            _ => return None,
        }
        Some(kernel)
    }

    /// An empty twin for another partition of the same scan (duplicate kernels share their
    /// table with it).
    pub fn fork(&self, measure: &Measure, schema: &Schema, samples: usize) -> Result<Kernel, String> {
        match self {
            Kernel::Dups(k) => Ok(Kernel::Dups(Box::new(k.fork(schema)?))),
            // Compiled rules (patterns) are shared, not compiled again.
            Kernel::Count(k) => Ok(Kernel::Count(CountKernel::new(k.col, k.test.clone(), samples))),
            Kernel::Counted(k) => Ok(Kernel::Counted(k.fork())),
            Kernel::Extreme(_) => Kernel::new(measure, schema, samples),
        }
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match self {
            Kernel::Count(k) => k.update(batch),
            Kernel::Dups(k) => k.update(batch),
            Kernel::Extreme(k) => k.update(batch),
            Kernel::Counted(k) => k.update(batch),
        }
    }

    /// Adds what `other` (the same kernel, fed other batches) has seen.
    pub fn merge(&mut self, other: Kernel) -> Result<(), String> {
        match (self, other) {
            (Kernel::Count(a), Kernel::Count(b)) => {
                a.count += b.count;
                a.samples.extend(b.samples);
                a.samples.truncate(a.max_samples);
            }
            (Kernel::Dups(a), Kernel::Dups(b)) => a.merge(*b)?,
            (Kernel::Extreme(a), Kernel::Extreme(b)) => a.micros = a.pick(a.micros, b.micros),
            (Kernel::Counted(a), Kernel::Counted(b)) => a.count += b.count,
            _ => unreachable!("kernels are merged with their twins only"),
        }
        Ok(())
    }

    /// The duplicates of the lead alone, of a kernel made [`Kernel::with_lead`]; call before
    /// [`Kernel::finish`].
    pub fn finish_lead(&mut self) -> Option<Measured> {
        match self {
            Kernel::Dups(k) => k.finish_lead(),
            _ => None,
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
            Kernel::Dups(k) => (*k).finish(),
            Kernel::Counted(k) => Measured { value: Some(k.count as f64), ..Default::default() },
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

/// What a counting kernel counts.
#[derive(Clone)]
enum RowTest {
    Null,
    Missing(ValueSet),
    Invalid(Rules),
    Unparseable(DataType),
}

pub struct CountKernel {
    col: usize,
    test: RowTest,
    count: u64,
    samples: Vec<String>,
    max_samples: usize,
}

impl CountKernel {
    fn new(col: usize, test: RowTest, max_samples: usize) -> Self {
        CountKernel { col, test, count: 0, samples: Vec::new(), max_samples }
    }

    fn add_nulls(&mut self, nulls: usize) {
        self.count += nulls as u64;
        for _ in 0..nulls.min(self.max_samples.saturating_sub(self.samples.len())) {
            self.samples.push("null".into());
        }
    }

    /// Counts the rows a batch found, keeping the first as samples.
    fn add(&mut self, found: Broken, array: &ArrayRef) {
        self.count += found.count;
        for i in found.rows {
            self.sample(|| format_value(array, i));
        }
    }

    fn sample(&mut self, value: impl FnOnce() -> String) {
        if self.samples.len() < self.max_samples {
            self.samples.push(value());
        }
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let array = batch.column(self.col);
        match &mut self.test {
            RowTest::Null => self.add_nulls(array.null_count()),
            RowTest::Missing(set) => {
                let keep = self.max_samples;
                let found = if is_numeric(array.data_type()) {
                    let values = compute::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
                    let values = values.as_primitive::<Float64Type>();
                    Broken::of(
                        (0..values.len()).filter(|&i| values.is_null(i) || set.has_number(values.value(i))),
                        keep,
                    )
                } else {
                    let missing = |values: &ArrayRef| Ok(set.missing(&Texts::of(&as_text(values)?)));
                    match flagged_rows(array, true, missing, keep) {
                        Some(found) => found?,
                        None => {
                            let hits = missing(array)?;
                            Broken::of(hits.iter().enumerate().filter(|(_, hit)| **hit).map(|(i, _)| i), keep)
                        }
                    }
                };
                self.add(found, array);
            }
            RowTest::Invalid(rules) => {
                let found = rules.broken(array, self.max_samples)?;
                self.add(found, array);
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
        self.observe(batch.column(self.col))
    }

    fn observe(&mut self, array: &ArrayRef) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Validity;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use proptest::prelude::*;
    use serde_json::Value as Any;
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
        a.merge(b).unwrap();
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

    /// Exact statistics answer null counts and the newest or oldest timestamp; inexact ones,
    /// or extremes of text (byte order, not time order), leave the measure to the scan.
    #[test]
    fn exact_statistics_answer_null_counts_and_ages() {
        use datafusion::common::ScalarValue;
        let schema = Schema::new(vec![
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let stats = |nulls: Precision<usize>, max: Precision<ScalarValue>| ColumnStatistics {
            null_count: nulls,
            max_value: max,
            ..ColumnStatistics::new_unknown()
        };
        let ts = ScalarValue::TimestampMicrosecond(Some(5_000_000), None);
        let nulls = Measure::Missing { column: "at".into(), values: vec![] };
        let newest = Measure::NewestAge { column: "at".into() };
        let known =
            Kernel::from_statistics(&nulls, &schema, &stats(Precision::Exact(3), Precision::Absent), 2).unwrap();
        assert_eq!(known.finish(0), Measured { value: Some(3.0), detail: None, samples: vec!["null".into(); 2] });
        let known =
            Kernel::from_statistics(&newest, &schema, &stats(Precision::Absent, Precision::Exact(ts.clone())), 0);
        assert_eq!(known.unwrap().finish(65_000_000).value, Some(60.0));
        assert!(
            Kernel::from_statistics(&nulls, &schema, &stats(Precision::Inexact(3), Precision::Absent), 0).is_none()
        );
        assert!(
            Kernel::from_statistics(&newest, &schema, &stats(Precision::Absent, Precision::Inexact(ts)), 0).is_none()
        );
        let text = Measure::NewestAge { column: "name".into() };
        let max = Precision::Exact(ScalarValue::Utf8(Some("2026-01-01".into())));
        assert!(Kernel::from_statistics(&text, &schema, &stats(Precision::Absent, max), 0).is_none());
    }

    /// A run of one lead with more distinct keys than are searched one by one goes to the
    /// hash table, and the count stays exact.
    #[test]
    fn a_long_run_of_one_lead_is_counted_by_hash() {
        let ids = vec![Some(7); 300];
        let names: Vec<Option<String>> = (0..300).map(|i| Some(format!("n{}", i % 100))).collect();
        let both = Measure::Duplicates { columns: vec!["id".into(), "name".into()] };
        let mut kernel = Kernel::new(&both, &schema(), 0).unwrap();
        kernel.update(&batch(&ids, &names)).unwrap();
        let Kernel::Dups(dups) = &kernel else { panic!("a duplicate kernel") };
        assert!(!dups.in_order(), "the run is too long to search");
        assert_eq!(kernel.finish(0).value, Some(100.0));
        assert_eq!(measure(&both, &ids, &names), 100.0);
    }

    /// Keys that do not come in order are counted by hash, exactly, whether they repeat
    /// within a batch, across batches, or across twins.
    #[test]
    fn keys_out_of_order_are_counted_exactly_by_hash() {
        let one = Measure::Duplicates { columns: vec!["id".into()] };
        let descending: Vec<Option<i64>> = (0..4000).rev().map(Some).collect();
        let repeats: Vec<Option<i64>> = (0..3000).chain(0..10).map(Some).collect();
        let names = |n: usize| vec![None; n];
        let want = naive_dups(descending.iter().chain(&repeats).copied());
        assert_eq!(want, 3000.0);
        let mut kernel = Kernel::new(&one, &schema(), 0).unwrap();
        kernel.update(&batch(&descending, &names(4000))).unwrap();
        let mut twin = kernel.fork(&one, &schema(), 0).unwrap();
        twin.update(&batch(&repeats, &names(3010))).unwrap();
        kernel.merge(twin).unwrap();
        assert_eq!(kernel.finish(0).value, Some(want));
    }

    /// Keys that come in order keep only the batches a run points into; when the order
    /// breaks after others were let go, the kernel asks for a rescan instead of guessing, and
    /// the rescan kernel counts the same batches exactly. Before anything is let go, a break
    /// is replayed without a rescan.
    #[test]
    fn a_late_break_in_the_order_asks_for_a_rescan_that_counts_exactly() {
        let one = Measure::Duplicates { columns: vec!["id".into()] };
        let both = Measure::Duplicates { columns: vec!["id".into(), "name".into()] };
        let ordered: Vec<Vec<Option<i64>>> = (0..3).map(|b| (b * 100..b * 100 + 100).map(Some).collect()).collect();
        let late: Vec<Option<i64>> = vec![Some(5), Some(150), Some(299), Some(7000)];
        let batches: Vec<&Vec<Option<i64>>> = ordered.iter().chain([&late]).collect();
        let name = |ids: &[Option<i64>]| ids.iter().map(|i| i.map(|v| format!("n{}", v % 2))).collect::<Vec<_>>();
        let want_one = naive_dups(batches.iter().flat_map(|b| b.iter().copied()));
        let pairs = batches.iter().flat_map(|b| b.iter().map(|i| i.map(|v| (v, v % 2))));
        let want_both = naive_dups(pairs);
        assert_eq!(want_one, 3.0);
        for (measure, want) in [(&one, want_one), (&both, want_both)] {
            let mut kernel = Kernel::new(measure, &schema(), 1).unwrap();
            for ids in &batches {
                kernel.update(&batch(ids, &name(ids))).unwrap();
            }
            assert!(kernel.needs_rescan(), "batches were let go before the order broke");
            let mut again = Kernel::rescan(measure, &schema(), 1).unwrap();
            for ids in &batches {
                again.update(&batch(ids, &name(ids))).unwrap();
            }
            assert!(!again.needs_rescan());
            let measured = again.finish(0);
            assert_eq!(measured.value, Some(want));
            assert_eq!(measured.samples.len(), 1);
        }
        // The break in the first batch: replayed from the kept batch, no rescan.
        let mut early = Kernel::new(&one, &schema(), 0).unwrap();
        early.update(&batch(&[Some(3), Some(1), Some(3)], &name(&[None, None, None]))).unwrap();
        assert!(!early.needs_rescan());
        assert_eq!(early.finish(0).value, Some(1.0));
    }

    /// A run of one repeated lead cut between two partitions, each of which counted it: one
    /// repeated lead, sampled once (found by the property test below).
    #[test]
    fn a_repeated_lead_across_two_partitions_is_sampled_once() {
        let both = Measure::Duplicates { columns: vec!["name".into(), "id".into()] };
        let names: Vec<Option<String>> = (0..13).map(|i| (i >= 9).then(String::new)).collect();
        let ids = vec![None; names.len()];
        let mut first = Kernel::with_lead(&both, &schema(), 3, true).unwrap();
        first.update(&batch(&ids[..11], &names[..11])).unwrap();
        let mut second = Kernel::with_lead(&both, &schema(), 3, true).unwrap();
        second.update(&batch(&ids[11..], &names[11..])).unwrap();
        first.merge(second).unwrap();
        let lead = first.finish_lead().unwrap();
        assert_eq!(lead.value, Some(1.0));
        assert_eq!(lead.samples, vec![String::new()]);
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
                all.merge(part).unwrap();
            }
            if in_order && let Kernel::Dups(d) = &all {
                prop_assert!(d.in_order(), "merged in order, the run-by-run count holds");
            }
            prop_assert_eq!(all.finish(0).value.unwrap(), want);
        }

        /// A composite key's kernel that also counts its lead alone gives both naive counts,
        /// with the lead an integer or a text, in order or not, nulls in either column, cut
        /// into partitions merged in either order, walked in order or counted by hash; its
        /// lead samples are leads that repeat.
        #[test]
        fn a_composite_key_counts_its_lead_alone_too(
            mut rows in prop::collection::vec((prop::option::of(0i64..40), prop::option::of("[a-c]{0,2}")), 0..200),
            sorted: bool,
            text_lead: bool,
            cuts in prop::collection::vec(0usize..200, 0..4),
            reverse: bool,
            ordered: bool,
        ) {
            if sorted && text_lead {
                rows.sort_by(|a, b| a.1.cmp(&b.1));
            } else if sorted {
                rows.sort_by_key(|r| r.0);
            }
            let (ids, names): (Vec<Option<i64>>, Vec<Option<String>>) = rows.into_iter().unzip();
            let columns = if text_lead { vec!["name".into(), "id".into()] } else { vec!["id".into(), "name".into()] };
            let both = Measure::Duplicates { columns };
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(ids.len())).collect();
            bounds.extend([0, ids.len()]);
            bounds.sort();
            let mut parts: Vec<Kernel> = bounds.windows(2).map(|w| {
                let mut k = Kernel::with_lead(&both, &schema(), 3, ordered).unwrap();
                k.update(&batch(&ids[w[0]..w[1]], &names[w[0]..w[1]])).unwrap();
                k
            }).collect();
            if reverse {
                parts.reverse();
            }
            let mut all = parts.remove(0);
            for part in parts {
                all.merge(part).unwrap();
            }
            prop_assume!(!all.needs_rescan());
            let pairs = ids.iter().zip(&names).map(|(i, n)| Some(((*i)?, n.clone()?)));
            let (want_lead, repeated): (f64, Vec<String>) = if text_lead {
                let repeated = names.iter().flatten().filter(|n| names.iter().flatten().filter(|m| m == n).count() > 1);
                (naive_dups(names.iter().cloned()), repeated.cloned().collect())
            } else {
                let repeated = ids.iter().flatten().filter(|i| ids.iter().flatten().filter(|j| j == i).count() > 1);
                (naive_dups(ids.iter().copied()), repeated.map(|i| i.to_string()).collect())
            };
            let lead = all.finish_lead().unwrap();
            prop_assert_eq!(lead.value, Some(want_lead));
            prop_assert_eq!(lead.samples.len() as f64, want_lead.min(3.0));
            for sample in &lead.samples {
                prop_assert!(repeated.contains(sample), "{} does not repeat", sample);
            }
            prop_assert_eq!(all.finish(0).value, Some(naive_dups(pairs)));
        }

        /// Texts read as string views are counted per distinct inline view first; short and
        /// long texts, nulls, and batches whose keys look unique (which stop that) all give
        /// the naive count.
        #[test]
        fn string_view_keys_count_the_same(
            mut batches in prop::collection::vec(prop::collection::vec(prop::option::of("[a-c]{0,2}|[a-c]{13,14}|u[0-9]{4}"), 0..600), 1..4),
            unique_first: bool,
        ) {
            if unique_first {
                batches.insert(0, (0..1100).map(|i| Some(format!("u{i:04}"))).collect());
            }
            use datafusion::arrow::array::StringViewArray;
            let schema = Schema::new(vec![Field::new("name", DataType::Utf8View, true)]);
            let name = Measure::Duplicates { columns: vec!["name".into()] };
            let mut kernel = Kernel::rescan(&name, &schema, 0).unwrap();
            for texts in &batches {
                let array: ArrayRef = Arc::new(StringViewArray::from(texts.iter().map(|t| t.as_deref()).collect::<Vec<_>>()));
                kernel.update(&RecordBatch::try_new(Arc::new(schema.clone()), vec![array]).unwrap()).unwrap();
            }
            prop_assert_eq!(kernel.finish(0).value.unwrap(), naive_dups(batches.iter().flatten().cloned()));
        }

        /// A column read as a dictionary (Parquet dictionary pages) gives the counts its
        /// texts give: missing values, duplicates, and (in `rules`) validity.
        #[test]
        fn dictionary_columns_count_the_same(batches in prop::collection::vec(prop::collection::vec(prop::option::of("[a-c]{0,2}"), 0..80), 1..4)) {
            use datafusion::arrow::array::DictionaryArray;
            use datafusion::arrow::datatypes::Int32Type;
            let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let schema = Arc::new(Schema::new(vec![Field::new("name", dictionary, true)]));
            let missing = Measure::Missing { column: "name".into(), values: vec![Any::from(""), Any::from("ab")] };
            let dups = Measure::Duplicates { columns: vec!["name".into()] };
            let mut kernels = [Kernel::new(&missing, &schema, 1).unwrap(), Kernel::new(&dups, &schema, 1).unwrap()];
            for names in &batches {
                let array: DictionaryArray<Int32Type> = names.iter().map(|n| n.as_deref()).collect();
                let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(array)]).unwrap();
                kernels.iter_mut().for_each(|k| k.update(&batch).unwrap());
            }
            let names: Vec<&Option<String>> = batches.iter().flatten().collect();
            let is_missing = |n: &&&Option<String>| n.as_deref().is_none_or(|s| s.is_empty() || s == "ab");
            let want_missing = names.iter().filter(is_missing).count();
            // The sample is the first missing row's value, as its text would give it.
            let want_sample = names.iter().find(is_missing).map(|n| n.as_deref().unwrap_or("null").to_string());
            let [missing, dups] = kernels;
            let missing = missing.finish(0);
            prop_assert_eq!(missing.value, Some(want_missing as f64));
            prop_assert_eq!(missing.samples.first().cloned(), want_sample);
            prop_assert_eq!(dups.finish(0).value, Some(naive_dups(names.into_iter().cloned())));
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

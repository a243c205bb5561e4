//! Validity rules (value lists, patterns, lengths, numeric bounds) compiled for a column and
//! evaluated a whole batch at a time.
//!
//! Per-row cost is what a scan of ten million rows pays for, so each rule has the loop that
//! suits its column: numeric bounds on integers and decimals compare integers (a decimal's
//! unscaled value against the bound scaled once); text rules read Arrow's string-view layout
//! by its 16-byte views, where a string of up to 12 bytes is its view, so a value list is a
//! handful of integer comparisons and a length is read without touching the bytes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, LargeStringArray, StringArray, StringViewArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value as Any;

use crate::matcher::Matcher;
use crate::plan::Validity;
use crate::regex::{Dialect, translate};

/// A column in one of Arrow's string layouts, read row by row.
pub enum Texts<'a> {
    View(&'a StringViewArray),
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
}

/// The longest string a view holds inline.
pub(crate) const INLINE: u32 = 12;

impl<'a> Texts<'a> {
    /// The layout of `array`, which must be one of the string types (see [`as_text`]).
    pub fn of(array: &'a ArrayRef) -> Texts<'a> {
        match array.data_type() {
            DataType::Utf8View => Texts::View(array.as_string_view()),
            DataType::LargeUtf8 => Texts::Large(array.as_string::<i64>()),
            _ => Texts::Utf8(array.as_string::<i32>()),
        }
    }

    #[inline]
    pub fn value(&self, i: usize) -> &'a str {
        match self {
            Texts::View(a) => a.value(i),
            Texts::Utf8(a) => a.value(i),
            Texts::Large(a) => a.value(i),
        }
    }

    fn len(&self) -> usize {
        match self {
            Texts::View(a) => a.len(),
            Texts::Utf8(a) => a.len(),
            Texts::Large(a) => a.len(),
        }
    }

    fn byte_len(&self, i: usize) -> usize {
        match self {
            Texts::View(a) => a.views()[i] as u32 as usize,
            Texts::Utf8(a) => a.value_length(i) as usize,
            Texts::Large(a) => a.value_length(i) as usize,
        }
    }

    fn nulls(&self) -> Option<&NullBuffer> {
        match self {
            Texts::View(a) => a.nulls(),
            Texts::Utf8(a) => a.nulls(),
            Texts::Large(a) => a.nulls(),
        }
    }
}

/// The column in one of Arrow's string layouts (cast to one when it holds something else).
pub fn as_text(array: &ArrayRef) -> Result<ArrayRef, String> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(array.clone()),
        _ => compute::cast(array, &DataType::Utf8View).map_err(|e| e.to_string()),
    }
}

/// The rows of a dictionary-encoded column whose value `flags` marks (computed once per
/// dictionary value, given the dictionary's values), and its null rows when `flag_nulls`;
/// `keep` of them are returned. Nothing is done per row when no value is marked. `None`
/// when `array` is not a dictionary.
pub fn flagged_rows(
    array: &ArrayRef,
    flag_nulls: bool,
    flags: impl FnOnce(&ArrayRef) -> Result<Vec<bool>, String>,
    keep: usize,
) -> Option<Result<Broken, String>> {
    let flags = match flags(array.as_any_dictionary_opt()?.values()) {
        Ok(flags) => flags,
        Err(e) => return Some(Err(e)),
    };
    let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
    let mut found = Broken::default();
    if flags.contains(&true) || (flag_nulls && nulls.is_some()) {
        each_key(array, |row, key| {
            let flagged = match &nulls {
                Some(n) if n.is_null(row) => flag_nulls,
                _ => flags.get(key).copied().unwrap_or(false),
            };
            if flagged {
                found.add(row, keep);
            }
        });
    }
    Some(Ok(found))
}

/// Calls `f(row, key)` for each row of a dictionary-encoded column (`key` indexes its
/// values); false when `array` is not a dictionary. The `Int32` keys the Parquet reader
/// makes are read in place; other key types are converted first.
pub fn each_key(array: &ArrayRef, mut f: impl FnMut(usize, usize)) -> bool {
    let Some(dictionary) = array.as_any_dictionary_opt() else { return false };
    match array.as_dictionary_opt::<Int32Type>() {
        Some(d) => d.keys().values().iter().enumerate().for_each(|(row, &key)| f(row, key as usize)),
        None => dictionary.normalized_keys().into_iter().enumerate().for_each(|(row, key)| f(row, key)),
    }
    true
}

/// The view of an inline string: its length, then its bytes, zero-padded.
fn inline_view(s: &str) -> Option<u128> {
    let len = u32::try_from(s.len()).ok().filter(|&n| n <= INLINE)?;
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    bytes[4..4 + s.len()].copy_from_slice(s.as_bytes());
    Some(u128::from_le_bytes(bytes))
}

/// Values of a `validValues` or `missingValues` list, compared as text or as numbers.
/// A short list is searched in order (faster than hashing for a handful of values).
#[derive(Clone)]
pub struct ValueSet {
    short: Vec<String>,
    /// The views of the short list's values that fit inline.
    views: Vec<u128>,
    long: hashbrown::HashSet<String, foldhash::fast::FixedState>,
    numbers: Vec<f64>,
}

const SHORT_LIST: usize = 16;

impl ValueSet {
    pub fn new(values: &[Any]) -> Self {
        let text: Vec<String> = values.iter().filter(|v| !v.is_null()).map(any_text).collect();
        let numbers = values.iter().filter_map(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())).collect();
        if text.len() <= SHORT_LIST {
            let views = text.iter().filter_map(|s| inline_view(s)).collect();
            ValueSet { short: text, views, long: Default::default(), numbers }
        } else {
            ValueSet { short: vec![], views: vec![], long: text.into_iter().collect(), numbers }
        }
    }

    pub fn has_text(&self, s: &str) -> bool {
        self.short.iter().any(|v| v == s) || (!self.long.is_empty() && self.long.contains(s))
    }

    /// Whether an inline view is one of the list's, comparing with all of them: in random
    /// data an early exit is a mispredicted branch per row, dearer than a few more compares.
    fn has_view(&self, view: u128) -> bool {
        self.views.iter().fold(false, |hit, &v| hit | (v == view))
    }

    pub fn has_number(&self, x: f64) -> bool {
        self.numbers.contains(&x)
    }

    /// Clears `ok[i]` for every row whose value is not in the list.
    fn keep_members(&self, texts: &Texts, ok: &mut [bool]) {
        match texts {
            Texts::View(a) if self.long.is_empty() => {
                // When every listed value is inline, a longer text is in no list.
                let all_inline = self.views.len() == self.short.len();
                for ((ok, &view), i) in ok.iter_mut().zip(a.views()).zip(0..) {
                    *ok &= if view as u32 <= INLINE {
                        self.has_view(view)
                    } else {
                        !all_inline && self.has_text(a.value(i))
                    };
                }
            }
            _ => {
                for (i, ok) in ok.iter_mut().enumerate() {
                    *ok &= self.has_text(texts.value(i));
                }
            }
        }
    }

    /// Per row: whether it is null or holds a value of the list.
    pub fn missing(&self, texts: &Texts) -> Vec<bool> {
        let mut hits = vec![true; texts.len()];
        self.keep_members(texts, &mut hits);
        if let Some(nulls) = texts.nulls() {
            for (hit, valid) in hits.iter_mut().zip(nulls.iter()) {
                *hit |= !valid;
            }
        }
        hits
    }
}

fn any_text(v: &Any) -> String {
    match v {
        Any::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A comparison a numeric value must pass against a bound.
#[derive(Clone, Copy, Debug)]
enum Op {
    AtLeast,
    Above,
    AtMost,
    Below,
}

impl Op {
    fn holds(self, v: f64, bound: f64) -> bool {
        match self {
            Op::AtLeast => v >= bound,
            Op::Above => v > bound,
            Op::AtMost => v <= bound,
            Op::Below => v < bound,
        }
    }
}

/// A compiled validity rule.
#[derive(Clone)]
enum Rule {
    OneOf(ValueSet),
    Pattern(Arc<Matcher>),
    MinLength(usize),
    MaxLength(usize),
    Number(Op, f64),
}

impl Rule {
    fn new(v: &Validity) -> Result<Rule, String> {
        Ok(match v {
            Validity::OneOf(values) => Rule::OneOf(ValueSet::new(values)),
            Validity::Pattern(p) => Rule::Pattern(Arc::new(Matcher::new(&translate(p, Dialect::Rust)?)?)),
            Validity::MinLength(n) => Rule::MinLength(usize::try_from(*n).unwrap_or(usize::MAX)),
            Validity::MaxLength(n) => Rule::MaxLength(usize::try_from(*n).unwrap_or(usize::MAX)),
            Validity::Minimum(x) => Rule::Number(Op::AtLeast, *x),
            Validity::Maximum(x) => Rule::Number(Op::AtMost, *x),
            Validity::ExclusiveMinimum(x) => Rule::Number(Op::Above, *x),
            Validity::ExclusiveMaximum(x) => Rule::Number(Op::Below, *x),
        })
    }

    /// Whether the rule reads the value as text.
    fn on_text(&self) -> bool {
        matches!(self, Rule::Pattern(..) | Rule::MinLength(_) | Rule::MaxLength(_))
    }

    fn ok_number(&self, v: f64) -> bool {
        match self {
            Rule::OneOf(set) => set.has_number(v),
            Rule::Number(op, bound) => op.holds(v, *bound),
            _ => true,
        }
    }

    /// Whether row `i` (not null) passes, its value read as text.
    fn ok_at(&self, texts: &Texts, i: usize) -> bool {
        match self {
            Rule::OneOf(set) => set.has_text(texts.value(i)),
            Rule::Pattern(re) => re.is_match(texts.value(i)),
            // A character takes one to four bytes: the byte length often decides alone.
            Rule::MinLength(n) => {
                let bytes = texts.byte_len(i);
                bytes >= *n && (bytes / 4 >= *n || char_len(texts.value(i)) >= *n)
            }
            Rule::MaxLength(n) => texts.byte_len(i) <= *n || char_len(texts.value(i)) <= *n,
            Rule::Number(op, bound) => texts.value(i).trim().parse::<f64>().is_ok_and(|v| op.holds(v, *bound)),
        }
    }

    /// Clears `ok[i]` for every row the rule rejects. Null rows are looked at too (their
    /// value reads as empty) and left out by the caller.
    fn check(&self, texts: &Texts, ok: &mut [bool]) {
        match (self, texts) {
            (Rule::Pattern(re), _) => re.keep_matching(ok, |i| texts.value(i)),
            (Rule::OneOf(set), _) => set.keep_members(texts, ok),
            // The string-view layout, where the loops read the 16-byte views.
            (Rule::MaxLength(n), Texts::View(a)) => {
                for ((ok, &view), i) in ok.iter_mut().zip(a.views()).zip(0..) {
                    *ok &= view as u32 as usize <= *n || char_len(a.value(i)) <= *n;
                }
            }
            (Rule::MinLength(n), Texts::View(a)) => {
                for ((ok, &view), i) in ok.iter_mut().zip(a.views()).zip(0..) {
                    let bytes = view as u32 as usize;
                    *ok &= bytes >= *n && (bytes / 4 >= *n || char_len(a.value(i)) >= *n);
                }
            }
            _ => {
                for (i, ok) in ok.iter_mut().enumerate() {
                    if *ok {
                        *ok = self.ok_at(texts, i);
                    }
                }
            }
        }
    }
}

fn char_len(s: &str) -> usize {
    if s.is_ascii() { s.len() } else { s.chars().count() }
}

/// The rules of one check.
#[derive(Clone)]
pub struct Rules(Vec<Rule>);

/// What a check found in a batch: how many rows broke it, and the first few of them.
#[derive(Default)]
pub struct Broken {
    pub count: u64,
    pub rows: Vec<usize>,
}

impl Broken {
    pub fn of(bad: impl Iterator<Item = usize>, keep: usize) -> Broken {
        let mut broken = Broken::default();
        for row in bad {
            broken.add(row, keep);
        }
        broken
    }

    /// Counts one more row, kept while fewer than `keep` are.
    fn add(&mut self, row: usize, keep: usize) {
        self.count += 1;
        if self.rows.len() < keep {
            self.rows.push(row);
        }
    }
}

pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Dictionary(_, v) if v.is_numeric())
}

impl Rules {
    pub fn new(rules: &[Validity]) -> Result<Rules, String> {
        rules.iter().map(Rule::new).collect::<Result<_, _>>().map(Rules)
    }

    /// The rows (not null) of `array` that break any rule; `keep` of them are returned.
    pub fn broken(&self, array: &ArrayRef, keep: usize) -> Result<Broken, String> {
        let numeric = is_numeric(array.data_type()) && !self.0.iter().any(Rule::on_text);
        if numeric {
            if let Some(broken) = self.broken_integers(array, keep) {
                return Ok(broken);
            }
            let values = compute::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
            let values = values.as_primitive::<Float64Type>();
            let bad = (0..values.len())
                .filter(|&i| values.is_valid(i) && !self.0.iter().all(|r| r.ok_number(values.value(i))));
            return Ok(Broken::of(bad, keep));
        }
        let broken_values = |values: &ArrayRef| Ok(self.texts_ok(values)?.into_iter().map(|ok| !ok).collect());
        if let Some(broken) = flagged_rows(array, false, broken_values, keep) {
            return broken;
        }
        let ok = self.texts_ok(array)?;
        let nulls = array.logical_nulls();
        Ok(Broken::of((0..ok.len()).filter(|&i| !ok[i] && nulls.as_ref().is_none_or(|n| n.is_valid(i))), keep))
    }

    /// Per row of a text column (null rows included): whether it keeps every rule.
    fn texts_ok(&self, array: &ArrayRef) -> Result<Vec<bool>, String> {
        let text = as_text(array)?;
        let texts = Texts::of(&text);
        let mut ok = vec![true; text.len()];
        for rule in &self.0 {
            rule.check(&texts, &mut ok);
        }
        Ok(ok)
    }

    /// Numeric bounds on integers or decimals, compared as integers: `None` when the column
    /// or the rules need the general path.
    fn broken_integers(&self, array: &ArrayRef, keep: usize) -> Option<Broken> {
        let scale = match array.data_type() {
            DataType::Int32 | DataType::Int64 => 0,
            DataType::Decimal128(_, s) => i32::from(*s),
            _ => return None,
        };
        let (lo, hi) = self.integer_interval(scale)?;
        let nulls = array.nulls();
        Some(match array.data_type() {
            DataType::Int32 => outside(array.as_primitive::<Int32Type>().values(), i128::from, (lo, hi), nulls, keep),
            DataType::Int64 => outside(array.as_primitive::<Int64Type>().values(), i128::from, (lo, hi), nulls, keep),
            _ => outside(array.as_primitive::<Decimal128Type>().values(), |v| v, (lo, hi), nulls, keep),
        })
    }

    /// The bounds as one inclusive interval of unscaled integers (value × 10^scale), when
    /// every rule is a bound.
    fn integer_interval(&self, scale: i32) -> Option<(i128, i128)> {
        let (mut lo, mut hi) = (i128::MIN, i128::MAX);
        for rule in &self.0 {
            let Rule::Number(op, bound) = rule else { return None };
            let scaled = bound * 10f64.powi(scale);
            if !scaled.is_finite() || scaled.abs() > 1e30 {
                return None;
            }
            // A bound written as a decimal (0.1) is not exact in binary: within rounding
            // error of an integer, it is that integer, as the f64 comparison would find.
            let near = scaled.round();
            let exact = (scaled - near).abs() <= 1e-9 * near.abs().max(1.0);
            let (floor, ceil) = if exact { (near, near) } else { (scaled.floor(), scaled.ceil()) };
            match op {
                Op::AtLeast => lo = lo.max(ceil as i128),
                Op::Above => lo = lo.max(floor as i128 + 1),
                Op::AtMost => hi = hi.min(floor as i128),
                Op::Below => hi = hi.min(ceil as i128 - 1),
            }
        }
        Some((lo, hi))
    }
}

/// The rows (not null) whose value lies outside `lo..=hi`.
fn outside<T: Copy>(
    values: &[T],
    wide: impl Fn(T) -> i128,
    (lo, hi): (i128, i128),
    nulls: Option<&NullBuffer>,
    keep: usize,
) -> Broken {
    let bad = (0..values.len()).filter(|&i| {
        let v = wide(values[i]);
        (v < lo || v > hi) && nulls.is_none_or(|n| n.is_valid(i))
    });
    Broken::of(bad, keep)
}

/// Row `i` of a column as text, for a sample.
pub fn format_value(array: &ArrayRef, i: usize) -> String {
    let options = FormatOptions::default().with_null("null");
    ArrayFormatter::try_new(array.as_ref(), &options).map(|f| f.value(i).to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Decimal128Array, DictionaryArray, Int32Array};
    use proptest::prelude::*;

    fn broken(rules: &[Validity], array: ArrayRef) -> u64 {
        Rules::new(rules).unwrap().broken(&array, 0).unwrap().count
    }

    /// The count and the first three rows that break `rules`.
    fn broken_rows(rules: &[Validity], array: ArrayRef) -> (u64, Vec<usize>) {
        let found = Rules::new(rules).unwrap().broken(&array, 3).unwrap();
        (found.count, found.rows)
    }

    #[test]
    fn long_and_short_value_lists_agree() {
        let values: Vec<Any> = (0..40).map(|i| Any::from(format!("v{i}"))).collect();
        let (long, short) = (ValueSet::new(&values), ValueSet::new(&values[..3]));
        assert!(long.short.is_empty() && long.has_text("v39") && !long.has_text("v40"));
        assert!(short.long.is_empty() && short.has_text("v2") && !short.has_text("v3"));
    }

    #[test]
    fn views_of_short_values_compare_as_the_texts_do() {
        let set = ValueSet::new(&[Any::from("EUR"), Any::from("a long currency name"), Any::from("")]);
        let values =
            vec![Some("EUR"), Some("EURO"), None, Some(""), Some("a long currency name"), Some("a long currency nam")];
        let array: ArrayRef = Arc::new(StringViewArray::from(values));
        assert_eq!(set.missing(&Texts::of(&array)), [true, false, true, true, true, false]);
    }

    proptest! {
        /// Bounds compared as integers (unscaled decimals, integers) agree with the same
        /// bounds compared as floats.
        #[test]
        fn integer_bounds_agree_with_float_bounds(
            cents in prop::collection::vec(prop::option::of(-2_000i64..2_000), 0..60),
            bounds in prop::collection::vec((0usize..4, -2_100i64..2_100, 0u32..3), 1..3),
        ) {
            let rules: Vec<Validity> = bounds.iter().map(|&(op, x, digits)| {
                let x = x as f64 / 10f64.powi(digits as i32);
                [Validity::Minimum(x), Validity::Maximum(x), Validity::ExclusiveMinimum(x), Validity::ExclusiveMaximum(x)][op].clone()
            }).collect();
            let decimals: ArrayRef = Arc::new(
                Decimal128Array::from(cents.iter().map(|c| c.map(i128::from)).collect::<Vec<_>>()).with_precision_and_scale(12, 2).unwrap(),
            );
            let as_float = |v: f64| rules.iter().all(|r| Rule::new(r).unwrap().ok_number(v));
            let want = cents.iter().flatten().filter(|&&c| !as_float(c as f64 / 100.0)).count() as u64;
            prop_assert_eq!(broken(&rules, decimals), want);
            let ints: ArrayRef = Arc::new(Int32Array::from(cents.iter().map(|c| c.map(|c| c as i32)).collect::<Vec<_>>()));
            let want = cents.iter().flatten().filter(|&&c| !as_float(c as f64)).count() as u64;
            prop_assert_eq!(broken(&rules, ints), want);
        }

        /// Lengths and value lists read from views agree with the same rules read from text
        /// (with a listed value too long to be inline, and with every listed value inline.)
        #[test]
        fn text_rules_agree_across_layouts(
            values in prop::collection::vec(prop::option::of("[a-c\u{e9}]{0,14}"), 0..40),
            n in 0u64..15,
            long_listed in any::<bool>(),
        ) {
            let other = if long_listed { "abcabcabcabcab" } else { "abcabcabcabc" };
            let rules = [Validity::MinLength(n), Validity::MaxLength(n + 2), Validity::OneOf(vec![Any::from("ab"), Any::from(other)])];
            let view: ArrayRef = Arc::new(StringViewArray::from(values.iter().map(|v| v.as_deref()).collect::<Vec<_>>()));
            let utf8: ArrayRef = Arc::new(StringArray::from(values.iter().map(|v| v.as_deref()).collect::<Vec<_>>()));
            let bad: Vec<usize> = (0..values.len()).filter(|&i| values[i].as_ref().is_some_and(|s| {
                let chars = s.chars().count() as u64;
                !(chars >= n && chars <= n + 2 && (s.as_str() == "ab" || s.as_str() == other))
            })).collect();
            let want = (bad.len() as u64, bad.iter().copied().take(3).collect::<Vec<_>>());
            prop_assert_eq!(broken_rows(&rules, view), want.clone());
            prop_assert_eq!(broken_rows(&rules, utf8), want.clone());
            let dictionary: DictionaryArray<Int32Type> = values.iter().map(|v| v.as_deref()).collect();
            prop_assert_eq!(broken_rows(&rules, Arc::new(dictionary)), want);
        }
    }
}

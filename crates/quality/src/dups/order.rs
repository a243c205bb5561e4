//! Duplicates counted in order: while a partition's keys arrive in order of their *lead*
//! (the key itself, or the first column of a composite key: ids and timestamps often come in
//! order), duplicates can only be among the rows of one run of equal leads. Each row is
//! compared with the row before it, and only a row that repeats a lead is compared further,
//! with the (usually one) keys of its run. Nothing is copied per row, and only the batches a
//! run still points into are kept.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringViewArray, make_comparator};
use datafusion::arrow::buffer::{Buffer, NullBuffer};
use datafusion::arrow::compute::{self, SortOptions};
use datafusion::arrow::datatypes::DataType;

use crate::rules::{INLINE, Texts, format_value};
/// A row of the batches kept in order: (batch, row).
type At = (u32, u32);

/// A distinct key of a run and how often it occurred.
#[derive(Clone, Copy)]
struct Key {
    at: At,
    count: u32,
}

/// Repeated keys found so far: how many distinct ones, over how many rows, and the first few.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) keys: u64,
    pub(super) rows: u64,
    pub(super) samples: Vec<String>,
}

/// The lead counted alone, alongside the whole key (a composite key and the unique check of
/// its first column share one walk): its tally, and the rows of the first and current runs.
#[derive(Default)]
struct LeadRuns {
    tally: Tally,
    /// Rows of the current run.
    run_rows: u64,
    /// Rows of the first run, once a second one has started.
    first_rows: Option<u64>,
}

impl Tally {
    fn add(&mut self, other: Tally, max_samples: usize) {
        self.keys += other.keys;
        self.rows += other.rows;
        self.samples.extend(other.samples);
        self.samples.truncate(max_samples);
    }
}

impl LeadRuns {
    fn first_rows(&self) -> u64 {
        self.first_rows.unwrap_or(self.run_rows)
    }

    /// Counts one more row of the current run.
    fn again(&mut self, lead: impl FnOnce() -> String, max_samples: usize) {
        self.run_rows += 1;
        self.tally.rows += if self.run_rows == 2 { 2 } else { 1 };
        if self.run_rows == 2 {
            self.tally.keys += 1;
            if self.tally.samples.len() < max_samples {
                self.tally.samples.push(lead());
            }
        }
    }

    /// Takes in a later partition's runs: their tally, and where its first run (of `first`
    /// rows) goes on this one's current run, when they share a lead (`joins`: each was
    /// counted on its own, the two are one run). `last`: the rows of its current run, which
    /// is its first when it has one run only (`single_run`). True when the joined run is a
    /// repeated lead that neither counted.
    fn append(&mut self, mut later: LeadRuns, joins: bool, single_run: bool, max_samples: usize) -> bool {
        let (b, last) = (later.first_rows(), later.run_rows);
        if joins && self.run_rows > 1 && b > 1 && !later.tally.samples.is_empty() {
            // Both counted the joined run, and each sampled its lead (the later one first of
            // all its samples; this one unless its samples were full): it is one lead, sampled once.
            later.tally.samples.remove(0);
        }
        self.tally.add(later.tally, max_samples);
        if !joins {
            self.first_rows.get_or_insert(self.run_rows);
            self.run_rows = last;
            return false;
        }
        let a = self.run_rows;
        let alone = |n: u64| if n > 1 { (1, n) } else { (0, 0) };
        let ((ka, ra), (kb, rb)) = (alone(a), alone(b));
        self.tally.keys = self.tally.keys + 1 - ka - kb;
        self.tally.rows = self.tally.rows + a + b - ra - rb;
        self.run_rows = if single_run { a + b } else { last };
        if self.first_rows.is_none() && !single_run {
            self.first_rows = Some(a + b);
        }
        ka + kb == 0
    }
}

/// The keys counted in order so far.
#[derive(Default)]
pub(super) struct InOrder {
    /// The key columns of each batch, to compare composite keys and to replay; `None` once
    /// no key points into it any more.
    pub(super) batches: Vec<Option<Vec<ArrayRef>>>,
    /// Batches before this one have been let go, or are kept for the first run.
    released_to: usize,
    /// Whether any batch was let go (the batches can no longer be replayed).
    pub(super) released: bool,
    /// The lead of the last counted row, once its batch is done.
    last_lead: Option<Vec<u8>>,
    /// The first run, once a second one has started (needed to join with an earlier partition).
    first: Option<Vec<Key>>,
    /// The keys of the current run of equal leads (its first key holds the lead).
    run: Vec<Key>,
    /// Whether the key is its lead (one column), so a repeated lead is a repeated key.
    single: bool,
    pub(super) tally: Tally,
    /// The lead counted alone too: rows whose lead is valid are walked even when the rest of
    /// their key is null (they count for the lead, not for the key).
    lead: Option<LeadRuns>,
}

/// A run with more distinct keys than this is counted by hash instead.
const LONG_RUN: usize = 64;

/// The leads of a batch, comparable in order: integers (and dates and times) as i64, text
/// as bytes.
enum Leads<'a> {
    Ints(Int64Array),
    Texts(Texts<'a>),
}

/// An integer type whose every value fits an i64.
pub(super) fn fits_i64(t: &DataType) -> bool {
    use DataType::*;
    matches!(t, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32)
}

impl<'a> Leads<'a> {
    /// The leads of a key's first column, when its values have an order meshplane follows.
    fn of(first: &'a ArrayRef) -> Result<Option<Leads<'a>>, String> {
        use DataType::*;
        let t = first.data_type();
        Ok(Some(match t {
            _ if fits_i64(t) || matches!(t, Date32 | Date64 | Timestamp(..) | Time32(_) | Time64(_)) => {
                Leads::Ints(compute::cast(first, &Int64).map_err(|e| e.to_string())?.as_primitive().clone())
            }
            Utf8View | Utf8 | LargeUtf8 => Leads::Texts(Texts::of(first)),
            _ => return Ok(None),
        }))
    }

    fn text(texts: &Texts<'a>, i: usize) -> &'a [u8] {
        texts.value(i).as_bytes()
    }

    fn cmp_rows(&self, i: usize, j: usize) -> Ordering {
        match self {
            Leads::Ints(a) => a.value(i).cmp(&a.value(j)),
            Leads::Texts(Texts::View(views)) => Views::of(views).cmp(i, j),
            Leads::Texts(t) => Self::text(t, i).cmp(Self::text(t, j)),
        }
    }

    /// From row `from` on, skips the valid rows whose lead is greater than the valid row's
    /// before it (the first such row is compared with `last`): the first row that is not,
    /// or `rows`, and the last valid row before it.
    fn skip_increasing(&self, valid: Option<&NullBuffer>, last: usize, from: usize, rows: usize) -> (usize, usize) {
        match self {
            Leads::Ints(a) => {
                let values = a.values();
                skip_greater(valid, last, from, rows, |i, j| values[i] > values[j])
            }
            Leads::Texts(Texts::View(views)) => {
                let views = Views::of(views);
                skip_greater(valid, last, from, rows, |i, j| views.cmp(i, j).is_gt())
            }
            Leads::Texts(t) => skip_greater(valid, last, from, rows, |i, j| Self::text(t, i) > Self::text(t, j)),
        }
    }

    /// The lead of row `i` as bytes that sort as the values do.
    fn bytes(&self, i: usize) -> Vec<u8> {
        match self {
            Leads::Ints(a) => ordered_int(a.value(i)).to_vec(),
            Leads::Texts(t) => Self::text(t, i).to_vec(),
        }
    }

    fn cmp_bytes(&self, i: usize, other: &[u8]) -> Ordering {
        match self {
            Leads::Ints(a) => ordered_int(a.value(i)).as_slice().cmp(other),
            Leads::Texts(t) => Self::text(t, i).cmp(other),
        }
    }
}

/// The skipping loop of [`Leads::skip_increasing`], for one way of comparing rows.
#[inline]
fn skip_greater(
    valid: Option<&NullBuffer>,
    mut last: usize,
    from: usize,
    rows: usize,
    greater: impl Fn(usize, usize) -> bool,
) -> (usize, usize) {
    for i in from..rows {
        if valid.is_some_and(|v| v.is_null(i)) {
            continue;
        }
        if !greater(i, last) {
            return (i, last);
        }
        last = i;
    }
    (rows, last)
}

/// The parts of a string-view column, to compare its texts from their views directly.
struct Views<'a> {
    views: &'a [u128],
    /// The views as bytes: where inline texts are.
    raw: &'a [u8],
    buffers: &'a [Buffer],
}

impl<'a> Views<'a> {
    fn of(array: &'a StringViewArray) -> Self {
        Views { views: array.views(), raw: array.views().inner().as_slice(), buffers: array.data_buffers() }
    }

    /// Two texts in byte order: the first four bytes of a text are in its view whatever its
    /// length, and a text of up to 12 bytes is all there (zero-padded, so its length breaks
    /// ties).
    #[inline]
    fn cmp(&self, i: usize, j: usize) -> Ordering {
        let (x, y) = (self.views[i], self.views[j]);
        let prefix = |v: u128| ((v >> 32) as u32).swap_bytes();
        match prefix(x).cmp(&prefix(y)) {
            Ordering::Equal => {}
            other => return other,
        }
        match (x as u32 <= INLINE, y as u32 <= INLINE) {
            (true, true) => (x >> 32).swap_bytes().cmp(&(y >> 32).swap_bytes()).then((x as u32).cmp(&(y as u32))),
            // The first four bytes are equal: compare what follows.
            (false, false) => {
                cmp_bytes(self.outside(x).get(4..).unwrap_or_default(), self.outside(y).get(4..).unwrap_or_default())
            }
            _ => cmp_bytes(self.bytes(i, x), self.bytes(j, y)),
        }
    }

    /// The bytes of a text longer than its view holds.
    #[inline]
    fn outside(&self, view: u128) -> &'a [u8] {
        let (len, buffer, offset) = (view as u32 as usize, (view >> 64) as u32 as usize, (view >> 96) as u32 as usize);
        self.buffers.get(buffer).and_then(|b| b.as_slice().get(offset..offset + len)).unwrap_or_default()
    }

    /// The bytes of text `i`, whose view is `view`.
    #[inline]
    fn bytes(&self, i: usize, view: u128) -> &'a [u8] {
        let len = view as u32 as usize;
        if len > INLINE as usize {
            return self.outside(view);
        }
        self.raw.get(i * 16 + 4..i * 16 + 4 + len).unwrap_or_default()
    }
}

/// Byte order of two byte strings; two of one length from 8 to 16 bytes (ids) compare as two
/// words each, the first eight bytes and the last eight.
#[inline]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len();
    if n == b.len() && (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| s[at..].first_chunk::<8>().map_or(0, |w| u64::from_be_bytes(*w));
        return (word(a, 0), word(a, n - 8)).cmp(&(word(b, 0), word(b, n - 8)));
    }
    a.cmp(b)
}

/// An integer's bytes in an order that sorts as the integers do.
pub(super) fn ordered_int(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

impl InOrder {
    /// `single`: the key is one column; `with_lead`: a composite key whose lead is also
    /// counted alone.
    pub(super) fn new(single: bool, with_lead: bool) -> Self {
        InOrder { single, lead: with_lead.then(LeadRuns::default), ..Default::default() }
    }

    /// What the lead alone repeats, when it is counted.
    pub(super) fn lead_tally(&mut self) -> Option<Tally> {
        self.lead.take().map(|l| l.tally)
    }

    fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Counts a batch's keys; false when they are not in order (after this partition's
    /// earlier keys), and the batch is then kept to be replayed with the rest.
    pub(super) fn add(&mut self, arrays: Vec<ArrayRef>, max_samples: usize) -> Result<bool, String> {
        let first = arrays[0].clone();
        let leads = Leads::of(&first)?;
        let nulls = |columns: &[ArrayRef]| {
            columns
                .iter()
                .fold(None, |all: Option<NullBuffer>, a| NullBuffer::union(all.as_ref(), a.logical_nulls().as_ref()))
        };
        // The rows walked, and (with the lead counted alone) the rows whose whole key is valid.
        let (valid, whole) = match self.lead {
            Some(_) => (first.logical_nulls(), nulls(&arrays[1..])),
            None => (nulls(&arrays), None),
        };
        let batch = self.batches.len() as u32;
        let rows = arrays[0].len();
        self.batches.push(Some(arrays));
        let Some(leads) = leads else { return Ok(false) };
        let mut prev: Option<usize> = None;
        // A run is recorded once its lead repeats (or the batch ends): most leads never
        // repeat, and their rows are skipped by one tight loop that compares each lead with
        // the one before. The partition's first run is recorded at once (it may have to join
        // an earlier partition's last).
        let mut recorded = true;
        let mut i = 0;
        while i < rows {
            if let Some(p) = prev {
                let (next, last) = leads.skip_increasing(valid.as_ref(), p, i, rows);
                if last != p {
                    recorded = false;
                    prev = Some(last);
                }
                i = next;
                if i == rows {
                    break;
                }
            } else if valid.as_ref().is_some_and(|v| v.is_null(i)) {
                i += 1;
                continue;
            }
            let order = match (prev, &self.last_lead) {
                (Some(p), _) => leads.cmp_rows(i, p),
                (None, Some(last)) => leads.cmp_bytes(i, last),
                (None, None) => Ordering::Greater,
            };
            let at = (batch, i as u32);
            match order {
                Ordering::Less => return Ok(false),
                Ordering::Greater if self.run.is_empty() => self.start_run(at),
                Ordering::Greater => recorded = false,
                Ordering::Equal => {
                    if let (false, Some(p)) = (recorded, prev) {
                        self.start_run((batch, p as u32));
                        recorded = true;
                    }
                    if let Some(lead) = &mut self.lead {
                        lead.again(|| format_value(&first, i), max_samples);
                    }
                    let keyed = whole.as_ref().is_none_or(|w| w.is_valid(i));
                    if keyed && !self.again(at, max_samples) {
                        return Ok(false);
                    }
                }
            }
            prev = Some(i);
            i += 1;
        }
        match prev {
            Some(p) => {
                if !recorded {
                    self.start_run((batch, p as u32));
                }
                self.last_lead = Some(leads.bytes(p));
            }
            // No key in the batch: nothing to compare or replay.
            None => self.batches[batch as usize] = None,
        }
        self.release();
        Ok(true)
    }

    /// Lets go of the batches no key of the first or the current run points into.
    fn release(&mut self) {
        let needed = self.run.iter().map(|k| k.at.0 as usize).min().unwrap_or(usize::MAX).min(self.batches.len());
        for b in self.released_to..needed {
            let in_first = self.first.iter().flatten().any(|k| k.at.0 as usize == b);
            if !in_first && self.batches[b].take().is_some() {
                self.released = true;
            }
        }
        self.released_to = self.released_to.max(needed);
    }

    /// The key columns of a kept batch.
    fn columns(&self, batch: u32) -> &[ArrayRef] {
        // Batches a run points into are never let go (`release`).
        self.batches[batch as usize].as_deref().expect("a batch a key points into is kept")
    }

    fn start_run(&mut self, at: At) {
        if !self.run.is_empty() && self.first.is_none() {
            self.first = Some(std::mem::take(&mut self.run));
            if let Some(lead) = &mut self.lead {
                lead.first_rows = Some(lead.run_rows);
            }
        }
        self.run.clear();
        self.run.push(Key { at, count: 1 });
        if let Some(lead) = &mut self.lead {
            lead.run_rows = 1;
        }
    }

    /// Counts a row whose lead is the run's; false when the run grew too long to search.
    fn again(&mut self, at: At, max_samples: usize) -> bool {
        let found = if self.single { Some(0) } else { self.run.iter().position(|k| self.same_key(k.at, at)) };
        match found {
            Some(k) => self.count(k, 1, max_samples),
            None if self.run.len() >= LONG_RUN => return false,
            None => self.run.push(Key { at, count: 1 }),
        }
        true
    }

    /// Whether two rows (with equal leads) have equal keys; a key with a null is no key.
    fn same_key(&self, a: At, b: At) -> bool {
        let (x, y) = (self.columns(a.0), self.columns(b.0));
        let (i, j) = (a.1 as usize, b.1 as usize);
        x.iter().zip(y).skip(1).all(|(x, y)| {
            x.is_valid(i)
                && y.is_valid(j)
                && make_comparator(x.as_ref(), y.as_ref(), SortOptions::default()).is_ok_and(|cmp| cmp(i, j).is_eq())
        })
    }

    /// Adds `times` occurrences to key `k` of the run.
    fn count(&mut self, k: usize, times: u32, max_samples: usize) {
        let key = &mut self.run[k];
        let (before, at) = (key.count, key.at);
        key.count = before.saturating_add(times);
        if before > 1 {
            self.tally.rows += u64::from(times);
        } else {
            self.tally.keys += 1;
            self.tally.rows += u64::from(key.count);
            if self.tally.samples.len() < max_samples {
                self.tally.samples.push(self.describe(at));
            }
        }
    }

    fn lead_bytes(&self, at: At) -> Result<Vec<u8>, String> {
        let first = &self.columns(at.0)[0];
        let leads = Leads::of(first)?.ok_or("the lead has no order")?;
        Ok(leads.bytes(at.1 as usize))
    }

    fn first_run(&self) -> &[Key] {
        self.first.as_deref().unwrap_or(&self.run)
    }

    /// Whether every lead of this one is at or before every lead of `later`.
    pub(super) fn precedes(&self, later: &InOrder) -> bool {
        match (self.run.first(), later.first_run().first()) {
            (Some(last), Some(first)) => {
                matches!((self.lead_bytes(last.at), later.lead_bytes(first.at)), (Ok(a), Ok(b)) if a <= b)
            }
            _ => true,
        }
    }

    /// Appends `later`, whose leads all come at or after this one's: its first run joins
    /// this one's last run when they share a lead.
    pub(super) fn append(&mut self, later: InOrder, max_samples: usize) {
        if later.is_empty() {
            self.batches.extend(later.batches);
            self.released |= later.released;
            return;
        }
        if self.is_empty() {
            let offset = self.batches.len() as u32;
            let mut batches = std::mem::take(&mut self.batches);
            let released = self.released;
            *self = later.shifted(offset);
            batches.append(&mut self.batches);
            self.batches = batches;
            self.released |= released;
            return;
        }
        let joins = matches!(
            (self.run.first().map(|k| self.lead_bytes(k.at)), later.lead_bytes(later.first_run()[0].at)),
            (Some(Ok(a)), Ok(b)) if a == b
        );
        let later = later.shifted(self.batches.len() as u32);
        let InOrder { batches, first, run, tally, released, lead, .. } = later;
        self.batches.extend(batches);
        self.released |= released;
        let single_run = first.is_none();
        // The lead of this one's current run, as a sample should the join repeat it.
        let joined = (joins && self.lead.is_some())
            .then(|| self.run.first().map(|k| format_value(&self.columns(k.at.0)[0], k.at.1 as usize)))
            .flatten();
        if let (Some(mine), Some(theirs)) = (&mut self.lead, lead)
            && mine.append(theirs, joins, single_run, max_samples)
            && mine.tally.samples.len() < max_samples
            && let Some(sample) = joined
        {
            mine.tally.samples.push(sample);
        }
        self.tally.add(tally, max_samples);
        if joins {
            for key in first.as_deref().unwrap_or(&run) {
                self.join(*key, max_samples);
            }
        }
        if joins && single_run {
            return;
        }
        if self.first.is_none() {
            self.first = Some(std::mem::take(&mut self.run));
        }
        self.run = run;
    }

    /// Counts a key of a later partition's first run into this one's last run, whose lead
    /// it shares. Its own occurrences are already in this one's totals.
    fn join(&mut self, key: Key, max_samples: usize) {
        let found = if self.single { Some(0) } else { self.run.iter().position(|k| self.same_key(k.at, key.at)) };
        let Some(k) = found else {
            self.run.push(key);
            return;
        };
        if key.count > 1 {
            // Counted as a duplicate on its own: count the two as one key.
            self.tally.keys -= 1;
            self.tally.rows -= u64::from(key.count);
            if self.run[k].count > 1 {
                self.tally.rows += u64::from(key.count);
                self.run[k].count = self.run[k].count.saturating_add(key.count);
            } else {
                self.tally.keys += 1;
                self.run[k].count = self.run[k].count.saturating_add(key.count);
                self.tally.rows += u64::from(self.run[k].count);
            }
        } else {
            self.count(k, key.count, max_samples);
        }
    }

    /// The same, with its batches numbered from `offset`.
    fn shifted(mut self, offset: u32) -> InOrder {
        let shift = |k: &mut Key| k.at.0 += offset;
        self.run.iter_mut().for_each(shift);
        self.first.iter_mut().flatten().for_each(shift);
        self.released_to += offset as usize;
        self
    }

    /// A sample key as text: its columns' values, comma-separated.
    fn describe(&self, at: At) -> String {
        self.columns(at.0).iter().map(|c| format_value(c, at.1 as usize)).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Texts of a string-view column (inline and not, sharing prefixes, with zero and
        /// non-ASCII bytes) compare as their bytes do.
        #[test]
        fn views_compare_as_their_bytes(texts in prop::collection::vec("(ab|\u{0}|a|é|ÿ|ORD-0){0,7}", 2..30)) {
            let views = StringViewArray::from(texts.iter().map(String::as_str).collect::<Vec<_>>());
            for i in 0..texts.len() {
                for j in 0..texts.len() {
                    let want = texts[i].as_bytes().cmp(texts[j].as_bytes());
                    prop_assert_eq!(Views::of(&views).cmp(i, j), want, "{:?} against {:?}", &texts[i], &texts[j]);
                    prop_assert_eq!(cmp_bytes(texts[i].as_bytes(), texts[j].as_bytes()), want);
                }
            }
        }
    }
}

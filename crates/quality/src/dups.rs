//! Exact duplicate counting: how many distinct non-null keys (one column, or several) occur
//! more than once, counted two ways.
//!
//! **In order.** While a partition's keys arrive in order of their *lead* (the key itself, or
//! the first column of a composite key: ids and timestamps often come in order), duplicates
//! can only be among the rows of one run of equal leads. Each row is compared with the row
//! before it, and only a row that repeats a lead is compared further, with the (usually one)
//! keys of its run. Nothing is copied per row, and only the batches a run still points into
//! are kept. While nothing has been let go, a break in the order (or two partitions whose
//! lead ranges overlap) replays the kept batches into the table. Once batches are gone, the
//! kernel says it *needs a rescan* and the scan feeds a fresh, hash-only kernel every row
//! again: the count stays exact and memory stays a few batches, for the price of a second
//! pass over the key columns in the rare table whose keys come in order and then do not.
//!
//! **By hash.** Otherwise each distinct key is kept once, in a table sharded by hash and
//! shared by every partition of a scan, so partitions insert in parallel and nothing is
//! merged at the end. Keys live in per-shard arenas (no allocation per key); a partition
//! groups a chunk's keys by shard first and takes each shard's lock once per chunk.

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, Once};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray, make_comparator};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{self, SortOptions};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;

use crate::kernel::Measured;
use crate::rules::{INLINE, Texts, as_text, each_key, format_value};

/// A duplicate count in progress, for one partition of a scan.
pub struct DupKernel {
    cols: Vec<usize>,
    key: KeyKind,
    shared: Arc<DupTable>,
    max_samples: usize,
    /// Keys bound for the table: their bytes, and (shard, hash, start, len, times) of each.
    bytes: Vec<u8>,
    keys: Vec<(u32, u64, u32, u32, u32)>,
    /// Some while this partition's keys have come in order.
    in_order: Option<InOrder>,
    /// Scratch: the keys of a chunk by hash, to count repeats before the shared table.
    local: HashTable<usize>,
    /// Scratch: a batch's inline texts (by view) with their count and first row.
    inline: hashbrown::HashMap<u128, (u32, u32), foldhash::fast::FixedState>,
    /// Scratch: the keys of a chunk bucketed by shard.
    by_shard: Vec<(u32, u64, u32, u32, u32)>,
    /// Whether repeats are counted within a chunk first (until the keys look unique).
    count_chunks: bool,
    /// Whether keys are first counted in order (false for a rescan: by hash from the start).
    ordered: bool,
    /// Whether the order broke after batches were let go: the count needs a rescan.
    lost: bool,
}

/// How a key is written into the table.
enum KeyKind {
    /// One integer column (that fits an i64): its 8 bytes.
    Integer,
    /// One text column: its bytes.
    Text,
    /// Anything else, or several columns: Arrow's row format.
    Rows(RowConverter),
}

/// A row of the batches kept in order: (batch, row).
type At = (u32, u32);

/// A distinct key of a run and how often it occurred.
#[derive(Clone, Copy)]
struct Key {
    at: At,
    count: u32,
}

/// The keys counted in order so far.
#[derive(Default)]
struct InOrder {
    /// The key columns of each batch, to compare composite keys and to replay; `None` once
    /// no key points into it any more.
    batches: Vec<Option<Vec<ArrayRef>>>,
    /// Batches before this one have been let go, or are kept for the first run.
    released_to: usize,
    /// Whether any batch was let go (the batches can no longer be replayed).
    released: bool,
    /// The lead of the last counted row, once its batch is done.
    last_lead: Option<Vec<u8>>,
    /// The first run, once a second one has started (needed to join with an earlier partition).
    first: Option<Vec<Key>>,
    /// The keys of the current run of equal leads (its first key holds the lead).
    run: Vec<Key>,
    /// Whether the key is its lead (one column), so a repeated lead is a repeated key.
    single: bool,
    dup_keys: u64,
    dup_rows: u64,
    samples: Vec<String>,
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
fn fits_i64(t: &DataType) -> bool {
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
            Leads::Texts(t) => Self::text(t, i).cmp(Self::text(t, j)),
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

/// An integer's bytes in an order that sorts as the integers do.
fn ordered_int(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

impl InOrder {
    fn new(single: bool) -> Self {
        InOrder { single, ..Default::default() }
    }

    fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Counts a batch's keys; false when they are not in order (after this partition's
    /// earlier keys), and the batch is then kept to be replayed with the rest.
    fn add(&mut self, arrays: Vec<ArrayRef>, max_samples: usize) -> Result<bool, String> {
        let first = arrays[0].clone();
        let leads = Leads::of(&first)?;
        let valid = arrays
            .iter()
            .fold(None, |all: Option<NullBuffer>, a| NullBuffer::union(all.as_ref(), a.logical_nulls().as_ref()));
        let batch = self.batches.len() as u32;
        let rows = arrays[0].len();
        self.batches.push(Some(arrays));
        let Some(leads) = leads else { return Ok(false) };
        let mut prev: Option<usize> = None;
        for i in (0..rows).filter(|&i| valid.as_ref().is_none_or(|v| v.is_valid(i))) {
            let order = match (prev, &self.last_lead) {
                (Some(p), _) => leads.cmp_rows(i, p),
                (None, Some(last)) => leads.cmp_bytes(i, last),
                (None, None) => Ordering::Greater,
            };
            let at = (batch, i as u32);
            match order {
                Ordering::Less => return Ok(false),
                Ordering::Greater => self.start_run(at),
                Ordering::Equal if !self.again(at, max_samples) => return Ok(false),
                Ordering::Equal => {}
            }
            prev = Some(i);
        }
        match prev {
            Some(p) => self.last_lead = Some(leads.bytes(p)),
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
        }
        self.run.clear();
        self.run.push(Key { at, count: 1 });
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

    /// Whether two rows (with equal leads) have equal keys.
    fn same_key(&self, a: At, b: At) -> bool {
        let (x, y) = (self.columns(a.0), self.columns(b.0));
        x.iter().zip(y).skip(1).all(|(x, y)| {
            make_comparator(x.as_ref(), y.as_ref(), SortOptions::default())
                .is_ok_and(|cmp| cmp(a.1 as usize, b.1 as usize).is_eq())
        })
    }

    /// Adds `times` occurrences to key `k` of the run.
    fn count(&mut self, k: usize, times: u32, max_samples: usize) {
        let key = &mut self.run[k];
        let (before, at) = (key.count, key.at);
        key.count = before.saturating_add(times);
        if before > 1 {
            self.dup_rows += u64::from(times);
        } else {
            self.dup_keys += 1;
            self.dup_rows += u64::from(key.count);
            if self.samples.len() < max_samples {
                self.samples.push(self.describe(at));
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
    fn precedes(&self, later: &InOrder) -> bool {
        match (self.run.first(), later.first_run().first()) {
            (Some(last), Some(first)) => {
                matches!((self.lead_bytes(last.at), later.lead_bytes(first.at)), (Ok(a), Ok(b)) if a <= b)
            }
            _ => true,
        }
    }

    /// Appends `later`, whose leads all come at or after this one's: its first run joins
    /// this one's last run when they share a lead.
    fn append(&mut self, later: InOrder, max_samples: usize) {
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
        let InOrder { batches, first, run, dup_keys, dup_rows, samples, released, .. } = later;
        self.batches.extend(batches);
        self.released |= released;
        self.dup_keys += dup_keys;
        self.dup_rows += dup_rows;
        self.samples.extend(samples);
        self.samples.truncate(max_samples);
        let single_run = first.is_none();
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
            self.dup_keys -= 1;
            self.dup_rows -= u64::from(key.count);
            if self.run[k].count > 1 {
                self.dup_rows += u64::from(key.count);
                self.run[k].count = self.run[k].count.saturating_add(key.count);
            } else {
                self.dup_keys += 1;
                self.run[k].count = self.run[k].count.saturating_add(key.count);
                self.dup_rows += u64::from(self.run[k].count);
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

const SHARDS: usize = 64;

/// The shared table: shards of distinct keys with how often each occurs.
pub struct DupTable {
    shards: Vec<Mutex<Shard>>,
    hasher: foldhash::fast::FixedState,
    /// The scan's rows, when the store knows them exactly (0: unknown).
    expected_rows: AtomicU64,
    /// Sizes the shards once, when the keys turn out to hardly repeat.
    sized: Once,
}

impl DupTable {
    /// Makes room in every shard for all the scan's rows as distinct keys of about
    /// `key_len` bytes, once: keys that hardly repeat would otherwise grow each table by
    /// doubling, rehashing and copying it several times over. Nothing is reserved when the
    /// row count is unknown, or for keys that repeat (few distinct values need little room).
    fn size_for_unique_keys(&self, key_len: usize) {
        let rows = self.expected_rows.load(AtomicOrdering::Relaxed) as usize;
        if rows == 0 {
            return;
        }
        self.sized.call_once(|| {
            // A shard's share varies by well under 2% at the sizes where this matters.
            let per_shard = rows / SHARDS + rows / SHARDS / 50 + 16;
            for shard in &self.shards {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                let Shard { table, arena } = &mut *shard;
                table.reserve(per_shard.saturating_sub(table.len()), |e| e.hash);
                arena.reserve((per_shard * key_len).saturating_sub(arena.len()));
            }
        });
    }
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
    /// A kernel that counts keys in order while they come in order; `ordered` false counts
    /// by hash from the first row (the rescan of a kernel that [`DupKernel::needs_rescan`]).
    pub fn new(cols: Vec<usize>, schema: &Schema, max_samples: usize, ordered: bool) -> Result<Self, String> {
        let shared = Arc::new(DupTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_7368),
            expected_rows: AtomicU64::new(0),
            sized: Once::new(),
        });
        Self::sharing(cols, schema, max_samples, shared, ordered)
    }

    fn sharing(
        cols: Vec<usize>,
        schema: &Schema,
        max_samples: usize,
        shared: Arc<DupTable>,
        ordered: bool,
    ) -> Result<Self, String> {
        use DataType::*;
        let types: Vec<&DataType> = cols.iter().map(|&c| schema.field(c).data_type()).collect();
        let key = match types.as_slice() {
            [t] if fits_i64(t) => KeyKind::Integer,
            [Utf8 | LargeUtf8 | Utf8View] => KeyKind::Text,
            [Dictionary(_, v)] if matches!(**v, Utf8 | LargeUtf8 | Utf8View) => KeyKind::Text,
            _ => KeyKind::Rows(
                RowConverter::new(types.iter().map(|t| SortField::new((*t).clone())).collect())
                    .map_err(|e| e.to_string())?,
            ),
        };
        let in_order = ordered.then(|| InOrder::new(cols.len() == 1));
        Ok(DupKernel {
            cols,
            key,
            shared,
            max_samples,
            bytes: Vec::new(),
            keys: Vec::new(),
            in_order,
            local: HashTable::new(),
            inline: Default::default(),
            by_shard: Vec::new(),
            count_chunks: true,
            ordered,
            lost: false,
        })
    }

    /// A twin for another partition: its own key encoder, the same table.
    pub fn fork(&self, schema: &Schema) -> Result<Self, String> {
        Self::sharing(self.cols.clone(), schema, self.max_samples, Arc::clone(&self.shared), self.ordered)
    }

    /// Tells the kernel (and its twins) how many rows the scan holds, when the store knows.
    pub fn expect_rows(&self, rows: u64) {
        self.shared.expected_rows.store(rows, AtomicOrdering::Relaxed);
    }

    /// Whether the keys' order broke after batches were let go, so this count cannot be
    /// finished: the scan must feed every row to a kernel made with `ordered` false.
    pub fn needs_rescan(&self) -> bool {
        self.lost
    }

    /// How many keys the shared table holds without growing.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.shared.shards.iter().map(|s| s.lock().map_or(0, |s| s.table.capacity())).sum()
    }

    /// Whether this partition's keys have all come in order so far.
    #[cfg(test)]
    pub fn in_order(&self) -> bool {
        self.in_order.is_some()
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if self.lost {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.cols.iter().map(|&c| batch.column(c).clone()).collect();
        match &mut self.in_order {
            Some(in_order) => {
                if !in_order.add(arrays, self.max_samples)? {
                    self.spill()?;
                }
                Ok(())
            }
            None => self.count_in_table(&arrays),
        }
    }

    /// Replays the batches counted in order into the table, and leaves that mode for good;
    /// when some were let go, the count is lost instead.
    fn spill(&mut self) -> Result<(), String> {
        let Some(in_order) = self.in_order.take() else { return Ok(()) };
        if in_order.released {
            self.lost = true;
            return Ok(());
        }
        for arrays in in_order.batches.iter().flatten() {
            self.count_in_table(arrays)?;
        }
        Ok(())
    }

    fn count_in_table(&mut self, arrays: &[ArrayRef]) -> Result<(), String> {
        match &self.key {
            KeyKind::Integer => {
                let ints = compute::cast(&arrays[0], &DataType::Int64).map_err(|e| e.to_string())?;
                for v in ints.as_primitive::<Int64Type>().iter().flatten() {
                    self.push_table(&ordered_int(v), 1);
                }
            }
            KeyKind::Text if arrays[0].as_any_dictionary_opt().is_some() => self.count_dictionary(&arrays[0])?,
            KeyKind::Text => {
                let text = as_text(&arrays[0])?;
                match Texts::of(&text) {
                    Texts::View(views) if self.count_chunks => self.count_views(views),
                    texts => {
                        for i in (0..text.len()).filter(|&i| text.is_valid(i)) {
                            self.push_table(texts.value(i).as_bytes(), 1);
                        }
                    }
                }
            }
            KeyKind::Rows(converter) => {
                let rows = converter.convert_columns(arrays).map_err(|e| e.to_string())?;
                for (i, row) in rows.iter().enumerate() {
                    if arrays.iter().all(|a| a.is_valid(i)) {
                        self.push_table(row.as_ref(), 1);
                    }
                }
            }
        }
        self.flush();
        Ok(())
    }

    /// Counts a dictionary-encoded batch per dictionary value, then pushes each value once
    /// with its count.
    fn count_dictionary(&mut self, array: &ArrayRef) -> Result<(), String> {
        let Some(dictionary) = array.as_any_dictionary_opt() else { return Ok(()) };
        let values = as_text(dictionary.values())?;
        let texts = Texts::of(&values);
        let mut counts = vec![0u32; values.len()];
        let nulls = array.logical_nulls();
        each_key(array, |row, key| {
            if nulls.as_ref().is_none_or(|n| n.is_valid(row))
                && let Some(count) = counts.get_mut(key)
            {
                *count += 1;
            }
        });
        for (value, &times) in counts.iter().enumerate().filter(|(_, t)| **t > 0) {
            self.push_table(texts.value(value).as_bytes(), times);
        }
        Ok(())
    }

    /// Counts a batch's string views: texts that fit in their view (up to 12 bytes: codes,
    /// flags, countries) are counted per distinct view first, so a column of few values
    /// pushes a few keys per batch instead of one per row; longer texts are pushed one by one.
    fn count_views(&mut self, views: &StringViewArray) {
        let valid = |i: usize| views.is_valid(i);
        let mut inline = std::mem::take(&mut self.inline);
        inline.clear();
        let mut rows = 0usize;
        for (i, &view) in views.views().iter().enumerate().filter(|&(i, _)| valid(i)) {
            rows += 1;
            if view as u32 <= INLINE {
                inline.entry(view).or_insert((0, i as u32)).0 += 1;
            } else {
                self.push_table(views.value(i).as_bytes(), 1);
            }
        }
        for &(times, row) in inline.values() {
            self.push_table(views.value(row as usize).as_bytes(), times);
        }
        self.judge_repeats(rows, inline.len());
        self.inline = inline;
    }

    /// Once `rows` keys hold `distinct` distinct ones and they hardly repeat (ids), stops
    /// counting repeats before the shared table (it would only cost) and sizes that table
    /// for keys of the length seen so far.
    fn judge_repeats(&mut self, rows: usize, distinct: usize) {
        if rows >= 1024 && distinct * 10 > rows * 9 {
            self.count_chunks = false;
            self.shared.size_for_unique_keys(self.bytes.len() / self.keys.len().max(1) + 1);
        }
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

    /// Inserts the keys gathered for the table, shard by shard.
    ///
    /// Keys repeated within the chunk are counted here first, so a column of few distinct
    /// values touches the shared table a few times per chunk instead of once per row. Once a
    /// chunk shows the keys hardly repeat (ids), this is skipped: it would only cost.
    fn flush(&mut self) {
        if self.count_chunks {
            self.count_chunk();
        }
        let bytes = &self.bytes;
        let key = |k: &(u32, u64, u32, u32, u32)| &bytes[k.2 as usize..(k.2 + k.3) as usize];
        // Bucketed by shard in one counting pass (a sort would compare).
        let mut starts = [0usize; SHARDS + 1];
        for k in &self.keys {
            starts[k.0 as usize + 1] += 1;
        }
        for s in 1..=SHARDS {
            starts[s] += starts[s - 1];
        }
        let mut next = starts;
        self.by_shard.clear();
        self.by_shard.resize(self.keys.len(), (0, 0, 0, 0, 0));
        for k in &self.keys {
            self.by_shard[next[k.0 as usize]] = *k;
            next[k.0 as usize] += 1;
        }
        for (s, bounds) in starts.windows(2).enumerate().filter(|(_, b)| b[0] < b[1]) {
            // A poisoned lock means another scan task panicked; its panic is reported.
            let mut shard = self.shared.shards[s].lock().unwrap_or_else(|e| e.into_inner());
            for k in &self.by_shard[bounds[0]..bounds[1]] {
                shard.insert(k.1, key(k), k.4);
            }
        }
        self.keys.clear();
        self.bytes.clear();
    }

    /// Counts the chunk's repeated keys into their first occurrence.
    fn count_chunk(&mut self) {
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
        let before = keys.len();
        keys.retain(|k| k.4 > 0);
        let distinct = keys.len();
        self.judge_repeats(before, distinct);
    }

    /// Adds what a twin saw. Two partitions in order whose lead ranges do not overlap stay
    /// in order; anything else goes to the shared table.
    pub fn merge(&mut self, mut other: DupKernel) -> Result<(), String> {
        if self.lost || other.lost {
            self.lost = true;
            return Ok(());
        }
        match (self.in_order.take(), other.in_order.take()) {
            (Some(mut a), Some(b)) if a.precedes(&b) => {
                a.append(b, self.max_samples);
                self.in_order = Some(a);
            }
            (Some(a), Some(mut b)) if b.precedes(&a) => {
                b.append(a, self.max_samples);
                self.in_order = Some(b);
            }
            (a, b) => {
                self.in_order = a;
                self.spill()?;
                other.in_order = b;
                other.spill()?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Measured {
        if self.lost {
            return Measured {
                detail: Some("the keys' order broke; they need a second pass".into()),
                ..Default::default()
            };
        }
        if let Some(in_order) = self.in_order {
            return dup_result(in_order.dup_keys, in_order.dup_rows, in_order.samples);
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
                cols.iter().map(|c| format_value(c, 0)).collect::<Vec<_>>().join(", ")
            }
        }
    }
}

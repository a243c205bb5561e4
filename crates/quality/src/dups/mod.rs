//! Exact duplicate counting: how many distinct non-null keys (one column, or several) occur
//! more than once, counted two ways.
//!
//! **In order** ([`order`]). While a partition's keys arrive in order of their lead, each row
//! is compared with the row before it and nothing is hashed. While nothing has been let go,
//! a break in the order (or two partitions whose lead ranges overlap) replays the kept
//! batches by hash. Once batches are gone, the kernel says it *needs a rescan* and the scan
//! feeds a fresh, hash-only kernel every row again: the count stays exact and memory stays a
//! few batches, for the price of a second pass over the key columns in the rare table whose
//! keys come in order and then do not.
//!
//! **By hash** ([`counts`]). Otherwise every key is appended to a log chosen by its hash,
//! each partition of the scan to its own logs (no lock, nothing shared), and the logs are
//! folded into distinct keys in cache-sized pieces: as they grow, and once at the end on
//! every core. Texts short enough to sit in their string view are counted per batch first,
//! so a column of few values (codes, flags) logs a few keys per batch, not one per row.
//!
//! A composite key can also count its first column alone ([`DupKernel::with_lead`]): a
//! table's unique id and a composite key led by it then share one walk of the id.

mod counts;
mod order;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringViewArray};
use datafusion::arrow::compute;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::kernel::Measured;
use crate::rules::{INLINE, Texts, as_text, each_key, format_value};
use counts::KeyCounts;
use order::{InOrder, Tally, fits_i64, ordered_int};

/// A duplicate count in progress, for one partition of a scan.
pub struct DupKernel {
    cols: Vec<usize>,
    max_samples: usize,
    /// The key counted by hash.
    key: ByHash,
    /// The lead (the key's first column) counted alone by hash, when it is counted too.
    lead: Option<ByHash>,
    /// Some while this partition's keys have come in order.
    in_order: Option<InOrder>,
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

/// Keys of some columns counted by hash.
struct ByHash {
    kind: KeyKind,
    counts: KeyCounts,
    /// Scratch: a batch's inline texts (by view) with their count and first row.
    inline: hashbrown::HashMap<u128, (u32, u32), foldhash::fast::FixedState>,
    /// Whether inline texts are counted per batch first (until they look unique).
    count_inline: bool,
}

fn dup_result(tally: Tally) -> Measured {
    let Tally { keys, rows, samples } = tally;
    Measured {
        value: Some(keys as f64),
        detail: (keys > 0).then(|| format!("{keys} duplicated keys over {rows} rows")),
        samples,
    }
}

impl DupKernel {
    /// A kernel that counts keys in order while they come in order; `ordered` false counts
    /// by hash from the first row (the rescan of a kernel that [`DupKernel::needs_rescan`]).
    pub fn new(cols: Vec<usize>, schema: &Schema, max_samples: usize, ordered: bool) -> Result<Self, String> {
        Self::build(cols, schema, max_samples, ordered, false)
    }

    /// The same for a composite key, which also counts its first column alone
    /// ([`DupKernel::finish_lead`]).
    pub fn with_lead(cols: Vec<usize>, schema: &Schema, max_samples: usize, ordered: bool) -> Result<Self, String> {
        let lead = cols.len() > 1;
        Self::build(cols, schema, max_samples, ordered, lead)
    }

    fn build(cols: Vec<usize>, schema: &Schema, max_samples: usize, ordered: bool, lead: bool) -> Result<Self, String> {
        let types: Vec<&DataType> = cols.iter().map(|&c| schema.field(c).data_type()).collect();
        let lead = match lead {
            true => Some(ByHash::new(&types[..1])?),
            false => None,
        };
        Ok(DupKernel {
            key: ByHash::new(&types)?,
            in_order: ordered.then(|| InOrder::new(cols.len() == 1, lead.is_some())),
            lead,
            cols,
            max_samples,
            ordered,
            lost: false,
        })
    }

    /// A twin for another partition, merged with this one at the end.
    pub fn fork(&self, schema: &Schema) -> Result<Self, String> {
        Self::build(self.cols.clone(), schema, self.max_samples, self.ordered, self.lead.is_some())
    }

    /// Whether the keys' order broke after batches were let go, so this count cannot be
    /// finished: the scan must feed every row to a kernel made with `ordered` false.
    pub fn needs_rescan(&self) -> bool {
        self.lost
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
            None => self.count_by_hash(&arrays),
        }
    }

    /// Replays the batches counted in order by hash, and leaves that mode for good; when
    /// some were let go, the count is lost instead.
    fn spill(&mut self) -> Result<(), String> {
        let Some(in_order) = self.in_order.take() else { return Ok(()) };
        if in_order.released {
            self.lost = true;
            return Ok(());
        }
        for arrays in in_order.batches.iter().flatten() {
            self.count_by_hash(arrays)?;
        }
        Ok(())
    }

    fn count_by_hash(&mut self, arrays: &[ArrayRef]) -> Result<(), String> {
        self.key.add(arrays)?;
        match &mut self.lead {
            Some(lead) => lead.add(&arrays[..1]),
            None => Ok(()),
        }
    }

    /// Adds what a twin saw. Two partitions in order whose lead ranges do not overlap stay
    /// in order; anything else is counted by hash.
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
        self.key.counts.absorb(other.key.counts);
        if let (Some(mine), Some(theirs)) = (&mut self.lead, other.lead) {
            mine.counts.absorb(theirs.counts);
        }
        Ok(())
    }

    /// The duplicates of the lead alone, for a kernel made [`DupKernel::with_lead`]; call
    /// before [`DupKernel::finish`].
    pub fn finish_lead(&mut self) -> Option<Measured> {
        if self.lost {
            return None;
        }
        if let Some(in_order) = &mut self.in_order {
            return in_order.lead_tally().map(dup_result);
        }
        self.lead.take().map(|lead| lead.finish(self.max_samples))
    }

    pub fn finish(self) -> Measured {
        if self.lost {
            return Measured {
                detail: Some("the keys' order broke; they need a second pass".into()),
                ..Default::default()
            };
        }
        match self.in_order {
            Some(in_order) => dup_result(in_order.tally),
            None => self.key.finish(self.max_samples),
        }
    }
}

impl ByHash {
    fn new(types: &[&DataType]) -> Result<Self, String> {
        use DataType::*;
        let kind = match types {
            [t] if fits_i64(t) => KeyKind::Integer,
            [Utf8 | LargeUtf8 | Utf8View] => KeyKind::Text,
            [Dictionary(_, v)] if matches!(**v, Utf8 | LargeUtf8 | Utf8View) => KeyKind::Text,
            _ => KeyKind::Rows(
                RowConverter::new(types.iter().map(|t| SortField::new((*t).clone())).collect())
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(ByHash { kind, counts: KeyCounts::default(), inline: Default::default(), count_inline: true })
    }

    /// Counts the keys of a batch's key columns whose every column is valid.
    fn add(&mut self, arrays: &[ArrayRef]) -> Result<(), String> {
        match &self.kind {
            KeyKind::Integer => {
                let ints = compute::cast(&arrays[0], &DataType::Int64).map_err(|e| e.to_string())?;
                for v in ints.as_primitive::<Int64Type>().iter().flatten() {
                    self.counts.add(&ordered_int(v), 1)?;
                }
            }
            KeyKind::Text if arrays[0].as_any_dictionary_opt().is_some() => self.add_dictionary(&arrays[0])?,
            KeyKind::Text => {
                let text = as_text(&arrays[0])?;
                match Texts::of(&text) {
                    Texts::View(views) if self.count_inline => self.add_views(views)?,
                    texts => {
                        for i in (0..text.len()).filter(|&i| text.is_valid(i)) {
                            self.counts.add(texts.value(i).as_bytes(), 1)?;
                        }
                    }
                }
            }
            KeyKind::Rows(converter) => {
                let rows = converter.convert_columns(arrays).map_err(|e| e.to_string())?;
                for (i, row) in rows.iter().enumerate() {
                    if arrays.iter().all(|a| a.is_valid(i)) {
                        self.counts.add(row.as_ref(), 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts a dictionary-encoded batch per dictionary value, then counts each value once
    /// with its number of rows.
    fn add_dictionary(&mut self, array: &ArrayRef) -> Result<(), String> {
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
            self.counts.add(texts.value(value).as_bytes(), times)?;
        }
        Ok(())
    }

    /// Counts a batch's string views: texts that fit in their view (up to 12 bytes: codes,
    /// flags, countries) are counted per distinct view first, so a column of few values logs
    /// a few keys per batch instead of one per row; longer texts are logged one by one. Once
    /// a batch's inline texts hardly repeat (short ids), that first count is given up: it
    /// would only cost.
    fn add_views(&mut self, views: &StringViewArray) -> Result<(), String> {
        let valid = |i: usize| views.is_valid(i);
        let mut inline = std::mem::take(&mut self.inline);
        inline.clear();
        let mut short = 0usize;
        for (i, &view) in views.views().iter().enumerate().filter(|&(i, _)| valid(i)) {
            if view as u32 <= INLINE {
                short += 1;
                inline.entry(view).or_insert((0, i as u32)).0 += 1;
            } else {
                self.counts.add(views.value(i).as_bytes(), 1)?;
            }
        }
        for &(times, row) in inline.values() {
            self.counts.add(views.value(row as usize).as_bytes(), times)?;
        }
        if short >= 1024 && inline.len() * 10 > short * 9 {
            self.count_inline = false;
        }
        self.inline = inline;
        Ok(())
    }

    fn finish(self, max_samples: usize) -> Measured {
        let found = self.counts.finish(max_samples);
        let samples = found.samples.iter().map(|bytes| self.kind.describe(bytes)).collect();
        dup_result(Tally { keys: found.keys, rows: found.rows, samples })
    }
}

impl KeyKind {
    /// A key's bytes as the values they stand for, comma-separated.
    fn describe(&self, bytes: &[u8]) -> String {
        match self {
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

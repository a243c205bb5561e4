//! Exact counts of distinct keys by hash, partitioned so that every count runs in cache.
//!
//! A table of ten million distinct keys fits no cache: inserting into it costs a cache miss
//! (often two) per key, and that was most of the time of a duplicate count over shuffled ids.
//! Here a key is hashed once and *appended* to one of [`PARTS`] logs, chosen by its hash, as
//! one record: its length, how often it was seen, its bytes. Appending is sequential, whatever
//! the number of distinct keys, and goes through a small stage per log that stays in cache
//! (copied to the log when full). A log is *folded*
//! into one record per distinct key, with a hash table the size of that one log, small
//! enough for a core's cache:
//!
//! - when it grows past its limit, so memory follows the distinct keys, not the rows (a log
//!   whose keys hardly repeat raises its limit eightfold instead, so a key is folded a
//!   bounded number of times on average);
//! - once at the end, together with the logs of the scan's other partitions, on every core.
//!
//! Equal keys have equal hashes, so they always meet in the same log; keys are compared
//! byte for byte, never by hash alone, so the counts are exact.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// How many logs the keys are spread over: at ten million distinct keys, the final count of
/// one log holds about 40,000, whose table and keys fit a core's L2 cache.
const PARTS: usize = 256;

/// How many keys a log takes before its first fold: low, so a column of few values holds
/// few records (a log of distinct keys grows its limit eightfold at each fold).
const FIRST_LIMIT: usize = 1024;

/// How much a log's limit grows when a fold finds its keys hardly repeat: a key that never
/// repeats is folded about 1/7 of a time on average before the end.
const GROWTH: usize = 8;

/// Keys counted so far, for one partition of a scan (and, once merged, for several).
pub struct KeyCounts {
    hasher: FixedState,
    parts: Vec<Part>,
    /// Scratch for folds during the scan.
    table: HashTable<u32>,
}

/// How many bytes of records a partition stages before they are copied to its log at once.
/// Appending a record straight to one of hundreds of logs writes to a cache line that the
/// log has not touched yet: a miss to memory per key, one after another. A stage stays in
/// cache, and copying a full one moves several lines in one burst whose misses overlap.
const STAGE: usize = 512;

/// The smallest segment a log starts once its first one is full.
const SEGMENT: usize = 8 * STAGE;

/// The keys of one hash partition: the log being appended to (with the records staged for
/// it, and its earlier segments), and logs merged from twins.
///
/// A log that outgrows its room is not reallocated (which copies it, from memory that has
/// left the cache): it is sealed and a segment twice its size takes its place.
struct Part {
    own: Log,
    staged: Vec<u8>,
    staged_keys: usize,
    sealed: Vec<Log>,
    merged: Vec<Log>,
    /// Keys in `own`, `sealed` and the stage.
    keys: usize,
    /// Fold `own` and `sealed` once they hold this many keys.
    limit: usize,
}

/// Keys with how often each was seen, one record after another: the key's length and its
/// count (u32, little-endian), then its bytes. A key may be in a log more than once until
/// the log is folded.
#[derive(Default)]
struct Log {
    bytes: Vec<u8>,
    keys: usize,
}

/// The keys seen more than once.
#[derive(Debug, Default, PartialEq)]
pub struct Repeats {
    /// How many distinct keys.
    pub keys: u64,
    /// How many rows hold them.
    pub rows: u64,
    /// The bytes of the first few, in a fixed order.
    pub samples: Vec<Vec<u8>>,
}

const HEADER: usize = 8;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The key of the record at `at`.
fn key_at(bytes: &[u8], at: usize) -> &[u8] {
    &bytes[at + HEADER..at + HEADER + u32_at(bytes, at) as usize]
}

/// Appends the record of `key` seen `times` times to `bytes`, which holds `before` bytes of
/// records ahead of it (a log, or a log and its stage), so no log outgrows its addresses.
fn append(bytes: &mut Vec<u8>, before: usize, key: &[u8], times: u32) -> Result<(), String> {
    let len = u32::try_from(key.len()).map_err(|_| "a key of a duplicate count exceeds 4 GiB")?;
    if before + HEADER + key.len() > u32::MAX as usize {
        return Err("the keys of one partition of a duplicate count exceed 4 GiB".into());
    }
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&times.to_le_bytes());
    bytes.extend_from_slice(key);
    Ok(())
}

impl Log {
    fn push(&mut self, key: &[u8], times: u32) -> Result<(), String> {
        let before = self.bytes.len();
        append(&mut self.bytes, before, key, times)?;
        self.keys += 1;
        Ok(())
    }

    /// Each record: where it starts, how often its key was seen, the key.
    fn records(&self) -> impl Iterator<Item = (usize, u32, &[u8])> {
        let bytes = &self.bytes;
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < bytes.len()).then(|| {
                let start = at;
                let key = key_at(bytes, start);
                at += HEADER + key.len();
                (start, u32_at(bytes, start + 4), key)
            })
        })
    }

    fn add_times(&mut self, at: usize, times: u32) {
        let total = u32_at(&self.bytes, at + 4).saturating_add(times);
        self.bytes[at + 4..at + HEADER].copy_from_slice(&total.to_le_bytes());
    }
}

/// Folds `logs` into one log holding each distinct key once, with its total count.
fn fold<'a>(
    logs: impl Iterator<Item = &'a Log> + Clone,
    hasher: &FixedState,
    table: &mut HashTable<u32>,
) -> Result<Log, String> {
    let keys: usize = logs.clone().map(|l| l.keys).sum();
    let bytes: usize = logs.clone().map(|l| l.bytes.len()).sum();
    let mut out = Log { bytes: Vec::with_capacity(bytes), keys: 0 };
    table.clear();
    // Room for every key: the table never grows, so it never rehashes.
    table.reserve(keys, |_| 0);
    for log in logs {
        for (_, times, key) in log.records() {
            let hash = hasher.hash_one(key);
            match table.find(hash, |&at| key_at(&out.bytes, at as usize) == key).copied() {
                Some(at) => out.add_times(at as usize, times),
                None => {
                    let at = out.bytes.len() as u32;
                    out.push(key, times)?;
                    table.insert_unique(hash, at, |&at| hasher.hash_one(key_at(&out.bytes, at as usize)));
                }
            }
        }
    }
    Ok(out)
}

impl Part {
    fn new() -> Self {
        Part {
            own: Log::default(),
            staged: Vec::with_capacity(STAGE),
            staged_keys: 0,
            sealed: Vec::new(),
            merged: Vec::new(),
            keys: 0,
            limit: FIRST_LIMIT,
        }
    }

    /// Appends a record to the stage, first copying a stage it would overflow to the log;
    /// a record larger than a stage goes to the log itself.
    fn add(&mut self, key: &[u8], times: u32) -> Result<(), String> {
        self.keys += 1;
        if self.staged.len() + HEADER + key.len() > STAGE {
            self.unstage();
            if HEADER + key.len() > STAGE {
                return self.own.push(key, times);
            }
        }
        let before = self.own.bytes.len() + self.staged.len();
        append(&mut self.staged, before, key, times)?;
        self.staged_keys += 1;
        Ok(())
    }

    /// Copies the staged records to the log, in a new segment when they do not fit.
    fn unstage(&mut self) {
        let room = self.own.bytes.capacity() - self.own.bytes.len();
        if room < self.staged.len() && !self.own.bytes.is_empty() {
            let segment = Log { bytes: Vec::with_capacity((self.own.bytes.capacity() * 2).max(SEGMENT)), keys: 0 };
            self.sealed.push(std::mem::replace(&mut self.own, segment));
        }
        self.own.bytes.extend_from_slice(&self.staged);
        self.own.keys += self.staged_keys;
        self.staged.clear();
        self.staged_keys = 0;
    }

    /// Folds the log being appended to (all its segments) into one; a log whose keys hardly
    /// repeat gets a higher limit.
    fn fold_own(&mut self, hasher: &FixedState, table: &mut HashTable<u32>) -> Result<(), String> {
        self.unstage();
        let before = self.keys;
        self.own = fold(self.sealed.iter().chain(std::iter::once(&self.own)), hasher, table)?;
        self.sealed.clear();
        self.keys = self.own.keys;
        if self.own.keys * 2 > before {
            self.limit = self.limit.saturating_mul(GROWTH);
        }
        Ok(())
    }

    /// Counts every log of the partition: its repeated keys, with up to `samples` of them.
    /// The table holds (log, record) of each distinct key and its count; keys are not copied.
    fn repeats(self, hasher: &FixedState, table: &mut HashTable<(u32, u32, u32)>, samples: usize) -> Repeats {
        let logs: Vec<&Log> = std::iter::once(&self.own).chain(&self.sealed).chain(&self.merged).collect();
        let key = |&(log, at, _): &(u32, u32, u32)| key_at(&logs[log as usize].bytes, at as usize);
        table.clear();
        table.reserve(logs.iter().map(|l| l.keys).sum(), |_| 0);
        for (l, log) in logs.iter().enumerate() {
            for (at, times, bytes) in log.records() {
                let hash = hasher.hash_one(bytes);
                match table.find_mut(hash, |e| key(e) == bytes) {
                    Some(e) => e.2 = e.2.saturating_add(times),
                    None => {
                        table.insert_unique(hash, (l as u32, at as u32, times), |e| hasher.hash_one(key(e)));
                    }
                }
            }
        }
        let mut repeats = Repeats::default();
        for e in table.iter().filter(|e| e.2 > 1) {
            repeats.keys += 1;
            repeats.rows += u64::from(e.2);
            if repeats.samples.len() < samples {
                repeats.samples.push(key(e).to_vec());
            }
        }
        repeats
    }
}

impl Default for KeyCounts {
    fn default() -> Self {
        KeyCounts {
            hasher: FixedState::with_seed(0x6d65_7368),
            parts: (0..PARTS).map(|_| Part::new()).collect(),
            table: HashTable::new(),
        }
    }
}

impl KeyCounts {
    /// Counts `times` occurrences of `key`.
    pub fn add(&mut self, key: &[u8], times: u32) -> Result<(), String> {
        let hash = self.hasher.hash_one(key);
        // Partitioned by bits the fold's table uses neither for its buckets (low) nor its tags (high).
        let part = &mut self.parts[(hash >> 32) as usize % PARTS];
        part.add(key, times)?;
        if part.keys >= part.limit {
            part.fold_own(&self.hasher, &mut self.table)?;
        }
        Ok(())
    }

    /// Takes in what a twin (fed other rows) counted.
    pub fn absorb(&mut self, other: KeyCounts) {
        for (mine, mut theirs) in self.parts.iter_mut().zip(other.parts) {
            theirs.unstage();
            for log in std::iter::once(theirs.own).chain(theirs.sealed).chain(theirs.merged).filter(|l| l.keys > 0) {
                mine.merged.push(log);
            }
        }
    }

    /// The keys seen more than once, folding the partitions on every core.
    pub fn finish(mut self, samples: usize) -> Repeats {
        self.parts.iter_mut().for_each(Part::unstage);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, PARTS);
        let mut groups: Vec<Vec<Part>> = Vec::new();
        let mut parts = self.parts.into_iter().peekable();
        while parts.peek().is_some() {
            groups.push(parts.by_ref().take(PARTS.div_ceil(threads)).collect());
        }
        let hasher = &self.hasher;
        let counted: Vec<Repeats> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        let mut table = HashTable::new();
                        let mut total = Repeats::default();
                        for part in group {
                            let found = part.repeats(hasher, &mut table, samples.saturating_sub(total.samples.len()));
                            total.keys += found.keys;
                            total.rows += found.rows;
                            total.samples.extend(found.samples);
                        }
                        total
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        let mut total = Repeats::default();
        for found in counted {
            total.keys += found.keys;
            total.rows += found.rows;
            total.samples.extend(found.samples);
        }
        total.samples.truncate(samples);
        total
    }

    /// How many key records the logs hold (each distinct key at least once).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.parts.iter().map(|p| p.keys + p.merged.iter().map(|l| l.keys).sum::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn naive(keys: &[(Vec<u8>, u32)]) -> (u64, u64) {
        let mut counts: HashMap<&[u8], u64> = HashMap::new();
        for (k, t) in keys {
            *counts.entry(k).or_default() += u64::from(*t);
        }
        let repeated = counts.values().filter(|&&n| n > 1);
        (repeated.clone().count() as u64, repeated.sum())
    }

    /// Few distinct keys seen over and over are folded as they come: memory follows the
    /// distinct keys, not the rows.
    #[test]
    fn repeated_keys_are_folded_as_they_come() {
        let mut counts = KeyCounts::default();
        for i in 0..2_000_000u32 {
            counts.add(&(i % 100).to_le_bytes(), 1).unwrap();
        }
        assert!(counts.held() <= 100 * FIRST_LIMIT, "holds {} records", counts.held());
        let repeats = counts.finish(3);
        assert_eq!((repeats.keys, repeats.rows), (100, 2_000_000));
        assert_eq!(repeats.samples.len(), 3);
    }

    /// Keys that never repeat raise their log's limit instead of being folded again and
    /// again (their logs grow by segments), and every one is kept.
    #[test]
    fn unique_keys_raise_the_limit_and_stay_exact() {
        let mut counts = KeyCounts::default();
        for i in 0..(PARTS * FIRST_LIMIT * 2) as u64 {
            counts.add(&i.to_be_bytes(), 1).unwrap();
        }
        counts.add(&7u64.to_be_bytes(), 2).unwrap();
        assert!(counts.parts.iter().any(|p| p.limit > FIRST_LIMIT), "some log outgrew its first limit");
        assert!(counts.parts.iter().any(|p| !p.sealed.is_empty()), "some log outgrew its first segments");
        assert_eq!(counts.finish(1), Repeats { keys: 1, rows: 3, samples: vec![7u64.to_be_bytes().to_vec()] });
    }

    /// A short key of few values, or one of four keys longer than a stage.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(0u8..4, 0..3),
            1 => (0u8..2, STAGE..STAGE + 2).prop_map(|(byte, len)| vec![byte; len]),
        ]
    }

    proptest! {
        /// Keys spread over twins in any way (with counts, so pre-counted keys too; short
        /// keys that wait in stages and keys longer than a stage) give the naive count once
        /// absorbed, with samples that are repeated keys.
        #[test]
        fn counts_match_a_naive_count(
            keys in prop::collection::vec((key(), 1u32..3, 0usize..3), 0..300),
        ) {
            let mut twins: Vec<KeyCounts> = (0..3).map(|_| KeyCounts::default()).collect();
            for (key, times, twin) in &keys {
                twins[*twin].add(key, *times).unwrap();
            }
            let mut all = twins.remove(0);
            for twin in twins {
                all.absorb(twin);
            }
            let plain: Vec<(Vec<u8>, u32)> = keys.iter().map(|(k, t, _)| (k.clone(), *t)).collect();
            let (want_keys, want_rows) = naive(&plain);
            let repeats = all.finish(2);
            prop_assert_eq!((repeats.keys, repeats.rows), (want_keys, want_rows));
            prop_assert_eq!(repeats.samples.len() as u64, want_keys.min(2));
            for sample in &repeats.samples {
                let seen: u32 = plain.iter().filter(|(k, _)| k == sample).map(|(_, t)| t).sum();
                prop_assert!(seen > 1);
            }
        }
    }
}

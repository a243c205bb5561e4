//! The work queue of the controller: which object to reconcile next, and when.
//!
//! It is pure data driven by the caller's clock (times are milliseconds on any monotonic
//! scale), so backoff, resync and exclusivity are tested without waiting. The rules, as in
//! a Kubernetes controller:
//! - an object is never handed out while its reconcile is in flight;
//! - a change that arrives during a reconcile schedules another one right after it
//!   (level-triggered: the next reconcile reads the state as it is then);
//! - a transient error requeues with exponential backoff (base, doubled per consecutive
//!   failure, capped, plus up to a quarter more of jitter so that objects that failed together
//!   do not retry together); a success resets it;
//! - a permanent error waits for a change (or the periodic resync): retrying cannot help;
//! - a reconcile that asks to wait for changes is still resynced periodically.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use super::{Action, Failure};

/// Timing of requeues, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub backoff_base: u64,
    pub backoff_max: u64,
    pub resync: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { backoff_base: 1_000, backoff_max: 300_000, resync: 600_000 }
    }
}

/// A key the queue can hold: an object's reference.
pub trait Key: Clone + Ord + Hash + std::fmt::Display {}

impl<K: Clone + Ord + Hash + std::fmt::Display> Key for K {}

/// The work queue of a controller, keyed by object.
#[derive(Debug)]
pub struct Queue<K: Key> {
    timing: Timing,
    /// (due time, key), earliest first.
    scheduled: BTreeSet<(u64, K)>,
    /// When each scheduled key is due (to move it earlier, never later).
    due_at: HashMap<K, u64>,
    in_flight: HashSet<K>,
    /// Keys changed while in flight: reconcile again as soon as the current one ends.
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

impl<K: Key> Queue<K> {
    pub fn new(timing: Timing) -> Self {
        Queue {
            timing,
            scheduled: BTreeSet::new(),
            due_at: HashMap::new(),
            in_flight: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
        }
    }

    /// How many objects that `counts` are due at `now` (waiting to be handed out), and since
    /// when the one that waited longest is due.
    pub fn backlog(&self, now: u64, counts: impl Fn(&K) -> bool) -> (usize, Option<u64>) {
        let mut due = self.scheduled.iter().take_while(|(at, _)| *at <= now).filter(|(_, key)| counts(key));
        let oldest = due.next().map(|(at, _)| *at);
        (oldest.map_or(0, |_| 1 + due.count()), oldest)
    }

    /// The object changed (or was found at start): reconcile it at `now`, or right after its
    /// reconcile in flight ends.
    pub fn changed(&mut self, key: &K, now: u64) {
        if self.in_flight.contains(key) {
            self.dirty.insert(key.clone());
        } else {
            self.schedule(key, now);
        }
    }

    /// Schedules `key` at `at`, unless it is already due earlier.
    fn schedule(&mut self, key: &K, at: u64) {
        if let Some(&current) = self.due_at.get(key) {
            if current <= at {
                return;
            }
            self.scheduled.remove(&(current, key.clone()));
        }
        self.scheduled.insert((at, key.clone()));
        self.due_at.insert(key.clone(), at);
    }

    /// The next key due at `now` that is not in flight; it is in flight until [`Queue::done`].
    pub fn take(&mut self, now: u64) -> Option<K> {
        let (at, key) = self.scheduled.iter().find(|(at, key)| *at <= now && !self.in_flight.contains(key))?.clone();
        self.scheduled.remove(&(at, key.clone()));
        self.due_at.remove(&key);
        self.in_flight.insert(key.clone());
        Some(key)
    }

    /// When the earliest scheduled key is due, for the caller to sleep until then.
    pub fn next_due(&self) -> Option<u64> {
        self.scheduled.iter().find(|(_, key)| !self.in_flight.contains(key)).map(|(at, _)| *at)
    }

    /// The reconcile of `key` ended at `now` with `outcome`; schedules what comes next.
    pub fn done(&mut self, key: &K, now: u64, outcome: Result<Action, Failure>) {
        self.in_flight.remove(key);
        let next = match outcome {
            Ok(action) => {
                self.failures.remove(key);
                match action {
                    Action::RequeueAfter(ms) => now + ms,
                    Action::AwaitChange => now + self.timing.resync,
                }
            }
            Err(Failure::Transient) => {
                let n = self.failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
                let delay = self.timing.backoff_base.saturating_mul(1u64 << (*n - 1).min(32));
                let delay = delay.min(self.timing.backoff_max);
                now + delay + jitter(key, *n, delay / 4)
            }
            // Retrying cannot help: wait for a change, or the resync.
            Err(Failure::Permanent) => {
                self.failures.remove(key);
                now + self.timing.resync
            }
        };
        let next = if self.dirty.remove(key) { now } else { next };
        self.schedule(key, next);
    }

    /// Forgets `key` (the object is gone and cleaned up).
    pub fn forget(&mut self, key: &K) {
        if let Some(at) = self.due_at.remove(key) {
            self.scheduled.remove(&(at, key.clone()));
        }
        self.failures.remove(key);
        self.dirty.remove(key);
    }
}

/// Up to `spread` milliseconds, the same for a key and attempt in every replica and run
/// (FNV-1a of both), different between keys.
fn jitter<K: Key>(key: &K, attempt: u32, spread: u64) -> u64 {
    if spread == 0 {
        return 0;
    }
    let text = format!("{key}#{attempt}");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % spread
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue<String> {
        Queue::new(Timing { backoff_base: 1_000, backoff_max: 8_000, resync: 60_000 })
    }

    fn key(name: &str) -> String {
        name.to_string()
    }

    #[test]
    fn transient_errors_back_off_exponentially_up_to_the_cap_with_jitter_and_success_resets() {
        let mut q = queue();
        q.changed(&key("a"), 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let key = q.take(now).expect("due");
            q.done(&key, now, Err(Failure::Transient));
            let next = q.next_due().unwrap();
            delays.push(next - now);
            assert_eq!(q.take(next - 1), None, "not before its time");
            now = next;
        }
        for (delay, base) in delays.iter().zip([1_000, 2_000, 4_000, 8_000, 8_000, 8_000]) {
            assert!((base..base + base / 4).contains(delay), "{delays:?}");
        }
        assert_ne!(delays[3], delays[4], "the jitter differs between attempts: {delays:?}");
        let a = q.take(now).unwrap();
        q.done(&a, now, Ok(Action::AwaitChange));
        q.changed(&a, now + 10);
        let a = q.take(now + 10).unwrap();
        q.done(&a, now + 10, Err(Failure::Transient));
        let next = q.next_due().unwrap() - (now + 10);
        assert!((1_000..1_250).contains(&next), "a success reset the backoff: {next}");
    }

    #[test]
    fn objects_failing_together_do_not_retry_together() {
        let mut q = queue();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        keys.iter().for_each(|k| q.changed(k, 0));
        while let Some(k) = q.take(0) {
            q.done(&k, 0, Err(Failure::Transient));
        }
        let due: BTreeSet<u64> = keys.iter().map(|k| q.due_at[k]).collect();
        assert!(due.len() > 10, "retries spread: {due:?}");
    }

    #[test]
    fn the_backlog_counts_what_is_due_of_the_keys_asked_about() {
        let mut q = queue();
        q.changed(&key("a"), 10);
        q.changed(&key("b"), 20);
        q.changed(&key("c"), 30);
        q.changed(&key("later"), 500);
        assert_eq!(q.backlog(100, |_| true), (3, Some(10)));
        assert_eq!(q.backlog(100, |k| k != "a"), (2, Some(20)), "the longest wait of those counted");
        assert_eq!(q.backlog(5, |_| true), (0, None), "nothing due yet");
        let a = q.take(100).unwrap();
        assert_eq!(q.backlog(100, |_| true), (2, Some(20)), "one handed out is no longer waiting: {a}");
    }

    #[test]
    fn a_permanent_error_waits_for_a_change_or_the_resync() {
        let mut q = queue();
        q.changed(&key("a"), 0);
        let a = q.take(0).unwrap();
        q.done(&a, 0, Err(Failure::Permanent));
        assert_eq!(q.next_due(), Some(60_000), "no backoff loop: the resync");
        q.changed(&a, 5);
        assert_eq!(q.take(5).as_deref(), Some("a"), "a change reconciles it at once");
    }

    #[test]
    fn waiting_objects_are_resynced_and_requeues_are_honoured() {
        let mut q = queue();
        q.changed(&key("a"), 0);
        q.changed(&key("b"), 0);
        let a = q.take(0).unwrap();
        let b = q.take(0).unwrap();
        q.done(&a, 5, Ok(Action::AwaitChange));
        q.done(&b, 5, Ok(Action::RequeueAfter(30)));
        assert_eq!(q.take(34), None);
        assert_eq!(q.take(35).as_deref(), Some("b"));
        assert_eq!(q.take(60_004), None);
        assert_eq!(q.take(60_005).as_deref(), Some("a"), "resync after the interval");
    }

    #[test]
    fn an_object_is_never_handed_out_twice_at_once_and_changes_in_flight_are_not_lost() {
        let mut q = queue();
        q.changed(&key("a"), 0);
        let first = q.take(0).unwrap();
        q.changed(&key("a"), 1);
        assert_eq!(q.take(1), None, "in flight: not handed out again");
        assert_eq!(q.next_due(), None);
        q.done(&first, 2, Ok(Action::AwaitChange));
        assert_eq!(q.take(2).as_deref(), Some("a"), "the change during the reconcile gets its own reconcile");
        q.done(&key("a"), 3, Ok(Action::AwaitChange));
        assert_eq!(q.take(3), None);
    }

    #[test]
    fn an_earlier_request_wins_and_forgotten_keys_stay_gone() {
        let mut q = queue();
        q.changed(&key("a"), 100);
        q.changed(&key("a"), 50);
        q.changed(&key("a"), 70);
        assert_eq!(q.next_due(), Some(50));
        q.forget(&key("a"));
        assert_eq!(q.take(1_000_000), None);
    }
}

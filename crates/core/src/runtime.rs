//! The scheduling core of the reconcile runtime: which object to reconcile next, and when.
//!
//! It is pure data driven by the caller's clock (times are milliseconds on any monotonic
//! scale), so backoff, resync and exclusivity are tested without waiting. The rules, as in
//! a Kubernetes controller:
//! - an object is never handed out while its reconcile is in flight;
//! - a change that arrives during a reconcile schedules another one right after it
//!   (level-triggered: the next reconcile reads the state as it is then);
//! - an error requeues with exponential backoff (base, doubled per consecutive failure, capped);
//!   a success resets it;
//! - a reconcile that asks to wait for changes is still resynced periodically.
//!
//! Leases across replicas (issue #4) wrap this: a replica takes an object's lease before
//! handing it out.

use std::collections::{BTreeSet, HashMap, HashSet};

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this many milliseconds.
    RequeueAfter(u64),
    /// Nothing to do until the object changes (or the periodic resync).
    AwaitChange,
}

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

/// The work queue of one kind.
#[derive(Debug, Default)]
pub struct Queue {
    timing: Timing,
    /// (due time, key), earliest first.
    scheduled: BTreeSet<(u64, String)>,
    /// When each scheduled key is due (to move it earlier, never later).
    due_at: HashMap<String, u64>,
    in_flight: HashSet<String>,
    /// Keys changed while in flight: reconcile again as soon as the current one ends.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

impl Queue {
    pub fn new(timing: Timing) -> Self {
        Queue { timing, ..Queue::default() }
    }

    /// The object changed (or was found at start): reconcile it at `now`, or right after its
    /// reconcile in flight ends.
    pub fn changed(&mut self, key: &str, now: u64) {
        if self.in_flight.contains(key) {
            self.dirty.insert(key.to_string());
        } else {
            self.schedule(key, now);
        }
    }

    /// Schedules `key` at `at`, unless it is already due earlier.
    fn schedule(&mut self, key: &str, at: u64) {
        if let Some(&current) = self.due_at.get(key) {
            if current <= at {
                return;
            }
            self.scheduled.remove(&(current, key.to_string()));
        }
        self.scheduled.insert((at, key.to_string()));
        self.due_at.insert(key.to_string(), at);
    }

    /// The next key due at `now` that is not in flight; it is in flight until [`Queue::done`].
    pub fn take(&mut self, now: u64) -> Option<String> {
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
    pub fn done(&mut self, key: &str, now: u64, outcome: Result<Action, ()>) {
        self.in_flight.remove(key);
        let next = match outcome {
            Ok(action) => {
                self.failures.remove(key);
                match action {
                    Action::RequeueAfter(ms) => now + ms,
                    Action::AwaitChange => now + self.timing.resync,
                }
            }
            Err(()) => {
                let n = self.failures.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                let delay = self.timing.backoff_base.saturating_mul(1u64 << (*n - 1).min(32));
                now + delay.min(self.timing.backoff_max)
            }
        };
        let next = if self.dirty.remove(key) { now } else { next };
        self.schedule(key, next);
    }

    /// Forgets `key` (the object is gone and cleaned up).
    pub fn forget(&mut self, key: &str) {
        if let Some(at) = self.due_at.remove(key) {
            self.scheduled.remove(&(at, key.to_string()));
        }
        self.failures.remove(key);
        self.dirty.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue {
        Queue::new(Timing { backoff_base: 1_000, backoff_max: 8_000, resync: 60_000 })
    }

    #[test]
    fn errors_back_off_exponentially_up_to_the_cap_and_success_resets() {
        let mut q = queue();
        q.changed("a", 0);
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let key = q.take(now).expect("due");
            q.done(&key, now, Err(()));
            let next = q.next_due().unwrap();
            delays.push(next - now);
            assert_eq!(q.take(next - 1), None, "not before its time");
            now = next;
        }
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        let key = q.take(now).unwrap();
        q.done(&key, now, Ok(Action::AwaitChange));
        q.changed("a", now + 10);
        let key = q.take(now + 10).unwrap();
        q.done(&key, now + 10, Err(()));
        assert_eq!(q.next_due(), Some(now + 10 + 1_000), "a success reset the backoff");
    }

    #[test]
    fn waiting_objects_are_resynced_and_requeues_are_honoured() {
        let mut q = queue();
        q.changed("a", 0);
        q.changed("b", 0);
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
        q.changed("a", 0);
        let first = q.take(0).unwrap();
        q.changed("a", 1);
        assert_eq!(q.take(1), None, "in flight: not handed out again");
        assert_eq!(q.next_due(), None);
        q.done(&first, 2, Ok(Action::AwaitChange));
        assert_eq!(q.take(2).as_deref(), Some("a"), "the change during the reconcile gets its own reconcile");
        q.done("a", 3, Ok(Action::AwaitChange));
        assert_eq!(q.take(3), None);
    }

    #[test]
    fn an_earlier_request_wins_and_forgotten_keys_stay_gone() {
        let mut q = queue();
        q.changed("a", 100);
        q.changed("a", 50);
        q.changed("a", 70);
        assert_eq!(q.next_due(), Some(50));
        q.forget("a");
        assert_eq!(q.take(1_000_000), None);
    }
}

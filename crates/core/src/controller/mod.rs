//! The controller runtime, in the style of kube-rs's: a reconcile reads an object's stored
//! state and answers an [`Action`] or an error; the error policy ([`Failure`], from the
//! error's own class) decides between a backoff retry and waiting for a change; the
//! [`Queue`] keeps one reconcile per object at a time; the [`Clock`] is injected, so tests
//! move time instead of sleeping.
//!
//! The loop that drives it inside `meshplane serve` (watching the change feed, leases across
//! replicas) is `meshplane_server::reconciler`; the reconcile of contracts and products is
//! [`crate::reconcile`].

mod clock;
mod queue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use queue::{Key, Queue, Timing};

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this many milliseconds.
    RequeueAfter(u64),
    /// Nothing to do until the object changes (or the periodic resync).
    AwaitChange,
}

/// How a failed reconcile is retried: the error policy's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It may pass by itself (a store or block that did not answer): back off and retry.
    Transient,
    /// Retrying cannot help until the object or the platform changes (a block refused the
    /// resource for good): the reason is in the object's conditions; wait for a change.
    Permanent,
}

impl Failure {
    /// The error policy: how a reconcile's error is retried.
    pub fn of(error: &crate::Error) -> Failure {
        if error.is_transient() { Failure::Transient } else { Failure::Permanent }
    }
}

//! The controller's time: what it is now and how to wait for a moment, behind one trait, so
//! that tests move time forward themselves instead of sleeping, and a test whose clock never
//! moves proves that nothing it checks waited for a timer.

use std::future::Future;
use std::pin::Pin;

/// Wall-clock time in milliseconds since the Unix epoch, and waiting for a moment of it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// Resolves once [`Clock::now_ms`] reaches `at_ms` (at once when it already has).
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock, waiting with tokio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// A clock that stands still until it is moved: for tests.
///
/// ```
/// use meshplane_core::controller::{Clock, ManualClock};
///
/// let clock = ManualClock::at(1_000);
/// clock.advance(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    pub fn at(now_ms: i64) -> ManualClock {
        ManualClock { now: tokio::sync::watch::Sender::new(now_ms) }
    }

    /// Moves the clock forward; whatever waits for a moment now past wakes up.
    pub fn advance(&self, ms: i64) {
        self.now.send_modify(|now| *now += ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut moved = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which outlives this borrow.
            let _ = moved.wait_for(|now| *now >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_moved_past_their_moment() {
        let clock = std::sync::Arc::new(ManualClock::at(0));
        let sleeper = {
            let clock = std::sync::Arc::clone(&clock);
            tokio::spawn(async move { clock.sleep_until(100).await })
        };
        tokio::task::yield_now().await;
        clock.advance(99);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "99 < 100: still asleep");
        clock.advance(1);
        sleeper.await.unwrap();
        clock.sleep_until(50).await;
    }
}

//! One retry pace for every wait that grows with failures in a row: the
//! delivery lanes' per-order backoff and outage probes
//! (`delivery/scheduler.rs`), the MQTT session's reconnects
//! (`pos/session.rs`), intake's failed commits (`pos/intake.rs`), and the
//! Zenchef Pay poll and acks (`pay/mod.rs`).
//!
//! The pace after the n-th failure in a row is `base · 2^(n−1)`, capped at
//! `cap`, times a jitter factor (then capped again). A server's
//! `Retry-After` wins when it is given and non-zero (a zero one falls back
//! to the growing backoff: never an immediate retry, no hot loop). A
//! success resets the count.

use std::time::Duration;

/// A backoff curve: `base · 2^(n−1)` after the n-th failure in a row
/// (n ≥ 1; 0 counts as 1), capped at `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait, jitter included.
    pub cap: Duration,
}

impl Backoff {
    /// The curve from `base` doubling up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The wait after the `n`-th failure in a row, without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        self.jittered(n, 1.0)
    }

    /// The wait after the `n`-th failure in a row, times `jitter` (e.g.
    /// 0.8–1.2, [`random_jitter`]), never above `cap`.
    pub fn jittered(&self, n: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        exp.min(self.cap).mul_f64(jitter).min(self.cap)
    }

    /// The wait after the `n`-th failure in a row when the server may have
    /// said when to come back: its `Retry-After` when given and non-zero,
    /// otherwise [`Backoff::jittered`].
    pub fn wait(&self, n: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        retry_after
            .filter(|a| !a.is_zero())
            .unwrap_or_else(|| self.jittered(n, jitter))
    }
}

/// A server's `Retry-After`, kept only when non-zero (a zero one means
/// "use your own backoff").
pub fn retry_after(after: Option<Duration>) -> Option<Duration> {
    after.filter(|a| !a.is_zero())
}

/// ±20 % jitter from the thread's random generator: a factor in
/// `0.8..1.2`, so that boxes and orders that failed together do not retry
/// together.
pub fn random_jitter() -> f64 {
    use rand::RngExt;
    rand::rng().random_range(0.8..1.2)
}

/// A loop's failures in a row and its [`Backoff`]: [`Retry::failed`]
/// counts one and gives the wait, [`Retry::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    failures: u32,
}

impl Retry {
    /// No failure yet.
    pub const fn new(backoff: Backoff) -> Retry {
        Retry {
            backoff,
            failures: 0,
        }
    }

    /// Counts a failure; the wait before the next try (no jitter; the
    /// server's non-zero `Retry-After` when given).
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.wait(self.failures, 1.0, retry_after)
    }

    /// Failures in a row so far (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(b.jittered(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.jittered(5, 1.0), Duration::from_secs(8));
        for n in [10, 20, 40, 1000, u32::MAX] {
            assert_eq!(b.jittered(n, 1.2), b.cap);
        }
        for _ in 0..100 {
            let d = b.jittered(1, random_jitter());
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(600));
        }
        assert_eq!(b.delay(0), b.delay(1), "0 counts as the first failure");
    }

    #[test]
    fn retry_after_wins_unless_zero() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            b.wait(3, 1.0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(b.wait(3, 1.0, Some(Duration::ZERO)), Duration::from_secs(4));
        assert_eq!(b.wait(3, 1.0, None), Duration::from_secs(4));
        assert_eq!(retry_after(Some(Duration::ZERO)), None);
    }

    #[test]
    fn retry_counts_and_resets() {
        // The MQTT session's pace: 0.5 s, 1 s, 2 s, 4 s, then 5 s.
        let mut r = Retry::new(Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(5),
        ));
        let waits: Vec<u64> = (0..6).map(|_| r.failed(None).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(r.failures(), 6);
        r.reset();
        assert_eq!(r.failed(None), Duration::from_millis(500));
    }
}

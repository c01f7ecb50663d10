//! Which lane of which order runs next: the pure part of delivery (no I/O,
//! no clock of its own: every method takes `now`), so it is tested with
//! tokio's paused time.
//!
//! Each lane (Zenchef, Zenchef Pay) has its own candidates, workers in
//! flight, per-order backoff and **its own pause** (sync rule 5: a Zenchef
//! outage or 401 never delays a check push, and the other way round):
//! - outage (a call answered 5xx, timed out, could not connect, or 429):
//!   the lane runs **one probe at a time** at the backoff pace (or the
//!   server's `Retry-After`) until a call succeeds, so a down service is
//!   not hammered by every order at once and recovery is noticed by the
//!   first probe;
//! - credentials refused (401/403): the lane waits `credentials_retry`
//!   between probes;
//! - a store error backs off only its order (the service is not to blame).
//!
//! Backoff (`crate::retry`): `base · 2^(n−1)`, capped, ±20 % jitter (the jitter function is
//! given, so tests can make it exact).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::outbox::Lane;
use crate::retry::{self, Backoff};

/// The scheduler's settings.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Orders delivered at once, per lane (`delivery.concurrency`).
    pub concurrency: usize,
    /// First retry delay.
    pub base: Duration,
    /// Cap of the backoff and of the outage probe interval
    /// (`delivery.retry_max_s`).
    pub cap: Duration,
    /// Delay between probes while credentials are refused
    /// (`delivery.credentials_retry_s`).
    pub credentials_retry: Duration,
}

/// How a lane worker of one order stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing more ready in this lane for the order.
    Idle,
    /// The order's head in this lane is a dead letter.
    Dead,
    /// The service is unreachable or rate limited; `after` is the server's
    /// `Retry-After` when it gave one.
    Retry {
        /// Wait at least this long.
        after: Option<Duration>,
    },
    /// The service refused the credentials.
    Credentials,
    /// The store could not be read or written.
    Store,
}

/// A lane-wide pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Outage or rate limit: one probe at `probe_at`.
    Outage {
        /// When the next probe may start.
        probe_at: Instant,
        /// Consecutive failed probes.
        failures: u32,
    },
    /// Credentials refused: one probe at `probe_at`.
    Credentials {
        /// When the next probe may start.
        probe_at: Instant,
    },
}

impl Pause {
    fn probe_at(&self) -> Instant {
        match *self {
            Pause::Outage { probe_at, .. } | Pause::Credentials { probe_at } => probe_at,
        }
    }
}

#[derive(Debug, Default)]
struct LaneSched {
    candidates: BTreeSet<String>,
    inflight: HashSet<String>,
    backoff: HashMap<String, (Instant, u32)>,
    pause: Option<Pause>,
}

/// The scheduler of both lanes.
#[derive(Debug)]
pub struct Scheduler {
    lanes: [LaneSched; 2],
    tuning: Tuning,
    jitter: fn() -> f64,
}

fn idx(lane: Lane) -> usize {
    match lane {
        Lane::Zenchef => 0,
        Lane::Pay => 1,
    }
}

impl Scheduler {
    /// A scheduler with nothing to do. `jitter` gives the factor applied to
    /// each backoff ([`retry::random_jitter`] in the daemon).
    pub fn new(tuning: Tuning, jitter: fn() -> f64) -> Scheduler {
        Scheduler {
            lanes: [LaneSched::default(), LaneSched::default()],
            tuning,
            jitter,
        }
    }

    /// The order has (or may have) something to deliver in `lane`.
    pub fn touch(&mut self, lane: Lane, order: &str) {
        self.lanes[idx(lane)].candidates.insert(order.to_string());
    }

    /// Takes the (lane, order) pairs that may start now, marking them in
    /// flight: per lane, up to `concurrency` orders, one probe while the
    /// lane is paused and its probe is due, none before; an order never
    /// has two workers in the same lane, and waits out its own backoff.
    /// Orders that never failed go first, then the least recently failed.
    pub fn start(&mut self, now: Instant) -> Vec<(Lane, String)> {
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let l = &mut self.lanes[idx(lane)];
            let limit = match l.pause {
                Some(p) if now < p.probe_at() => 0,
                Some(_) => 1,
                None => self.tuning.concurrency,
            };
            let room = limit.saturating_sub(l.inflight.len());
            let mut ready: Vec<&String> = l
                .candidates
                .iter()
                .filter(|o| !l.inflight.contains(*o))
                .filter(|o| l.backoff.get(*o).is_none_or(|(t, _)| *t <= now))
                .collect();
            // Orders that never failed first, then the one whose backoff ran
            // out longest ago: during an outage the single probe rotates, so
            // a failure confined to one order (a 5xx on its path) never
            // freezes the others.
            ready.sort_by_key(|o| l.backoff.get(*o).map(|(t, _)| *t));
            let ready: Vec<String> = ready.into_iter().take(room).cloned().collect();
            for o in ready {
                l.candidates.remove(&o);
                l.inflight.insert(o.clone());
                out.push((lane, o));
            }
        }
        out
    }

    /// A worker ended. `calls_ok`: calls of this lane that succeeded (they
    /// prove the service reachable and end its pause).
    pub fn finish(
        &mut self,
        lane: Lane,
        order: &str,
        calls_ok: usize,
        outcome: Outcome,
        now: Instant,
    ) {
        let curve = Backoff::new(self.tuning.base, self.tuning.cap);
        let cred = self.tuning.credentials_retry;
        let jitter = (self.jitter)();
        let l = &mut self.lanes[idx(lane)];
        l.inflight.remove(order);
        if calls_ok > 0 {
            l.pause = None;
        }
        let order_backoff = |l: &mut LaneSched, after: Option<Duration>| {
            let n = l.backoff.get(order).map_or(0, |(_, n)| *n) + 1;
            let wait = curve.wait(n, jitter, after);
            l.backoff.insert(order.to_string(), (now + wait, n));
            l.candidates.insert(order.to_string());
        };
        match outcome {
            Outcome::Idle | Outcome::Dead => {
                l.backoff.remove(order);
            }
            Outcome::Retry { after } => {
                // A zero `Retry-After` falls back to the growing backoff
                // (never an immediate retry: no hot loop).
                let after = retry::retry_after(after);
                order_backoff(l, after);
                let g = match l.pause {
                    Some(Pause::Outage { failures, .. }) => failures + 1,
                    _ => 1,
                };
                let wait = curve.wait(g, jitter, after);
                l.pause = Some(Pause::Outage {
                    probe_at: now + wait,
                    failures: g,
                });
            }
            Outcome::Credentials => {
                l.pause = Some(Pause::Credentials {
                    probe_at: now + cred,
                });
                l.candidates.insert(order.to_string());
            }
            Outcome::Store => order_backoff(l, None),
        }
    }

    /// The next moment something may start (a backoff ending, a probe
    /// due), strictly after `now`; `None` when only a new touch or a
    /// finished worker can change anything.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        for l in &self.lanes {
            if let Some(p) = l.pause {
                consider(p.probe_at());
            }
            for (o, (t, _)) in &l.backoff {
                if l.candidates.contains(o) {
                    consider(*t);
                }
            }
        }
        wake
    }

    /// The lane's pause, if any.
    pub fn pause(&self, lane: Lane) -> Option<Pause> {
        self.lanes[idx(lane)].pause
    }

    /// Workers in flight, both lanes.
    pub fn inflight(&self) -> usize {
        self.lanes.iter().map(|l| l.inflight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning = Tuning {
        concurrency: 2,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
        credentials_retry: Duration::from_secs(300),
    };

    fn exact() -> f64 {
        1.0
    }

    fn sched() -> Scheduler {
        Scheduler::new(T, exact)
    }

    fn names(v: &[(Lane, String)]) -> Vec<(Lane, &str)> {
        v.iter().map(|(l, o)| (*l, o.as_str())).collect()
    }

    /// Sync rule 5: a Zenchef outage pauses only the Zenchef lane.
    #[tokio::test(start_paused = true)]
    async fn a_zenchef_outage_never_delays_the_pay_lane() {
        let mut s = sched();
        let t0 = Instant::now();
        s.touch(Lane::Zenchef, "A");
        s.touch(Lane::Zenchef, "B");
        assert_eq!(s.start(t0).len(), 2);
        s.finish(Lane::Zenchef, "A", 0, Outcome::Retry { after: None }, t0);
        assert_eq!(
            s.pause(Lane::Zenchef),
            Some(Pause::Outage {
                probe_at: t0 + Duration::from_millis(500),
                failures: 1
            })
        );
        assert_eq!(s.pause(Lane::Pay), None);
        // Pay work of any order starts at once, at full concurrency.
        for o in ["A", "B", "C"] {
            s.touch(Lane::Pay, o);
        }
        assert_eq!(
            names(&s.start(t0)),
            vec![(Lane::Pay, "A"), (Lane::Pay, "B")]
        );
        s.finish(Lane::Zenchef, "B", 0, Outcome::Retry { after: None }, t0);
        // No Zenchef probe before it is due (and Pay is full).
        assert!(s.start(t0).is_empty());
        assert_eq!(
            s.pause(Lane::Zenchef),
            Some(Pause::Outage {
                probe_at: t0 + Duration::from_secs(1),
                failures: 2
            })
        );
        assert_eq!(s.next_wake(t0), Some(t0 + Duration::from_millis(500)));
        tokio::time::advance(Duration::from_secs(2)).await;
        let t1 = Instant::now();
        // One probe only, although A and B are both due.
        let probes: Vec<_> = s
            .start(t1)
            .into_iter()
            .filter(|(l, _)| *l == Lane::Zenchef)
            .collect();
        assert_eq!(probes.len(), 1);
        // The probe fails again: the pause grows (base · 2²).
        let (_, o) = &probes[0];
        s.finish(Lane::Zenchef, o, 0, Outcome::Retry { after: None }, t1);
        assert_eq!(
            s.pause(Lane::Zenchef),
            Some(Pause::Outage {
                probe_at: t1 + Duration::from_secs(2),
                failures: 3
            })
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        let t2 = Instant::now();
        let probe = s.start(t2);
        assert_eq!(probe.len(), 1);
        // It succeeds: full concurrency again.
        s.finish(Lane::Zenchef, &probe[0].1, 1, Outcome::Idle, t2);
        assert_eq!(s.pause(Lane::Zenchef), None);
        assert_eq!(s.start(t2).len(), 1, "the other order starts at once");
    }

    /// A failure confined to one order (a 5xx on its own path) must not
    /// freeze the lane: the outage probe rotates to another order, whose
    /// success ends the pause.
    #[tokio::test(start_paused = true)]
    async fn the_outage_probe_rotates_between_orders() {
        let mut s = sched();
        let t0 = Instant::now();
        s.touch(Lane::Pay, "A");
        assert_eq!(names(&s.start(t0)), vec![(Lane::Pay, "A")]);
        s.finish(Lane::Pay, "A", 0, Outcome::Retry { after: None }, t0);
        s.touch(Lane::Pay, "B");
        tokio::time::advance(Duration::from_secs(1)).await;
        let t1 = Instant::now();
        // A's own backoff ran out too, but B never failed: B is the probe.
        assert_eq!(names(&s.start(t1)), vec![(Lane::Pay, "B")]);
        s.finish(Lane::Pay, "B", 1, Outcome::Idle, t1);
        assert_eq!(s.pause(Lane::Pay), None, "B's success ends the outage");
        assert_eq!(names(&s.start(t1)), vec![(Lane::Pay, "A")]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_credentials_and_store_errors() {
        let mut s = sched();
        let t0 = Instant::now();
        s.touch(Lane::Pay, "A");
        s.start(t0);
        s.finish(
            Lane::Pay,
            "A",
            0,
            Outcome::Retry {
                after: Some(Duration::from_secs(7)),
            },
            t0,
        );
        assert_eq!(s.next_wake(t0), Some(t0 + Duration::from_secs(7)));
        tokio::time::advance(Duration::from_secs(7)).await;
        let t1 = Instant::now();
        assert_eq!(s.start(t1).len(), 1);
        s.finish(Lane::Pay, "A", 0, Outcome::Credentials, t1);
        assert_eq!(
            s.pause(Lane::Pay),
            Some(Pause::Credentials {
                probe_at: t1 + Duration::from_secs(300)
            })
        );
        assert_eq!(s.pause(Lane::Zenchef), None);
        // A store error holds only its order, not the lane.
        s.touch(Lane::Zenchef, "B");
        s.touch(Lane::Zenchef, "C");
        assert_eq!(s.start(t1).len(), 2);
        s.finish(Lane::Zenchef, "B", 0, Outcome::Store, t1);
        assert_eq!(s.pause(Lane::Zenchef), None);
        s.finish(Lane::Zenchef, "C", 0, Outcome::Idle, t1);
        s.touch(Lane::Zenchef, "C");
        assert_eq!(names(&s.start(t1)), vec![(Lane::Zenchef, "C")]);
        assert_eq!(
            s.next_wake(t1),
            Some(t1 + Duration::from_millis(500)),
            "B's own backoff"
        );
        // A dead head ends the order's worker with no retry and no pause.
        s.finish(Lane::Zenchef, "C", 0, Outcome::Dead, t1);
        assert_eq!(s.pause(Lane::Zenchef), None);
        // Zero Retry-After: the growing backoff, never a hot loop.
        tokio::time::advance(Duration::from_secs(1)).await;
        let t2 = Instant::now();
        assert_eq!(names(&s.start(t2)), vec![(Lane::Zenchef, "B")]);
        s.finish(
            Lane::Zenchef,
            "B",
            0,
            Outcome::Retry {
                after: Some(Duration::ZERO),
            },
            t2,
        );
        assert!(s.next_wake(t2).unwrap() > t2);
    }
}

//! Maps the service timeline onto wall time.

use std::time::Duration;

use zenchef_sim::scenario::Step;

/// A gap between two steps longer than this (service seconds) is
/// fast-forwarded: it takes the wall time of this much service time.
pub const IDLE_CAP_S: i64 = 20 * 60;

/// Maps the service timeline onto wall time: each gap between two steps
/// takes `min(gap, IDLE_CAP_S) / speed` (the quiet afternoon is
/// fast-forwarded), gaps inside the outage are stretched so that the outage
/// lasts `outage_s`. Waits for the agent shift the rest of the schedule.
pub struct Pacer {
    /// Wall offset of each step from the start of the playback.
    offsets: Vec<Duration>,
    /// Service seconds per wall second outside the outage.
    pub speed: f64,
    /// Wall time of the outage.
    pub outage: Duration,
    origin: tokio::time::Instant,
    /// Time spent waiting for the agent, not part of the service.
    paused: Duration,
}

impl Pacer {
    pub fn new(steps: &[Step], duration_s: f64, speed: Option<f64>, outage_s: f64) -> Pacer {
        let gaps = Self::gaps(steps);
        let outage_service: i64 = gaps.iter().filter(|g| g.1).map(|g| g.0).sum();
        let normal: i64 = gaps
            .iter()
            .filter(|g| !g.1)
            .map(|g| g.0.min(IDLE_CAP_S))
            .sum();
        let speed = speed.unwrap_or(normal as f64 / (duration_s - outage_s).max(0.1));
        let mut offsets = vec![Duration::ZERO];
        let mut t = 0.0f64;
        for (gap, in_outage) in gaps {
            t += if in_outage {
                gap as f64 * outage_s / outage_service.max(1) as f64
            } else {
                gap.min(IDLE_CAP_S) as f64 / speed
            };
            offsets.push(Duration::from_secs_f64(t));
        }
        Pacer {
            offsets,
            speed,
            outage: Duration::from_secs_f64(outage_s),
            origin: tokio::time::Instant::now(),
            paused: Duration::ZERO,
        }
    }

    /// `(service seconds, inside the outage)` between step i and i+1.
    fn gaps(steps: &[Step]) -> Vec<(i64, bool)> {
        let mut down = false;
        steps
            .windows(2)
            .map(|w| {
                match w[0] {
                    Step::OutageStart { .. } => down = true,
                    Step::OutageEnd { .. } => down = false,
                    _ => {}
                }
                ((w[1].at() - w[0].at()).num_seconds().max(0), down)
            })
            .collect()
    }

    pub fn start(&mut self) {
        self.origin = tokio::time::Instant::now();
    }

    /// When step `i` is due.
    pub fn due(&self, i: usize) -> tokio::time::Instant {
        self.origin + self.offsets[i] + self.paused
    }

    /// Excludes `d` (a wait for the agent) from the schedule.
    pub fn pause(&mut self, d: Duration) {
        self.paused += d;
    }

    /// Wall time of the playback without the pauses.
    pub fn total(&self) -> Duration {
        self.offsets.last().copied().unwrap_or_default()
    }
}

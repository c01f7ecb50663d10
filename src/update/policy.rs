//! The update rules as pure functions (no I/O, no clock): which release may
//! replace this one, and whether now is a good time. Tested with tables.
//!
//! - Versions: never downgrade; a release may replace the running version
//!   when it is newer, not blacklisted (rolled back before on this box), for
//!   our target triple, and `min_previous` ≤ running. A *rollback release*
//!   (older on purpose) is taken only by a box whose running version it
//!   lists in `rollback_of` — a signed claim, so an old release cannot be
//!   replayed to downgrade boxes.
//! - Time: inside the maintenance window (restaurant local time, may wrap
//!   midnight), in the staged rollout (`bucket(device id) < rollout_percent`),
//!   no order open on the POS (an order open for longer than a service day,
//!   `update.open_order_max_h`, is not counted: a table left open must not
//!   hold updates back for ever), outbox empty or idle for 10 minutes.
//! - Cadence: every 6 h ± 10 %, the first check one minute after start.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Version;
use crate::time::in_window;

/// Default time between two checks (6 h).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// The first check after start comes this long after start (or after one
/// interval when that is shorter).
pub const FIRST_CHECK: Duration = Duration::from_secs(60);
/// Jitter on every delay, as a fraction of it (± 10 %): boxes of a fleet do
/// not hit the server at the same second.
pub const JITTER: f64 = 0.10;
/// The outbox counts as idle when nothing in it changed for this long.
pub const OUTBOX_IDLE: Duration = Duration::from_secs(10 * 60);

/// What a release claims about itself (from the manifest before download,
/// from the signed `release.json` after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The release's version.
    pub version: Version,
    /// Target triple it was built for.
    pub target: String,
    /// The running version must be at least this (schema compatibility:
    /// the previous binary must still open the store after a rollback).
    pub min_previous: Option<Version>,
    /// Versions this release is a rollback for (may replace them although
    /// older); empty for a normal release.
    pub rollback_of: Vec<Version>,
}

/// How a release would replace the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Newer version.
    Upgrade,
    /// Older version, signed as a rollback of the running one.
    Rollback,
}

/// Why a release may not replace the running one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The manifest has no release for our target triple.
    NoReleaseForTarget(String),
    /// Built for another target.
    WrongTarget {
        /// The release's target.
        found: String,
        /// Ours.
        ours: String,
    },
    /// Same version: nothing to do.
    UpToDate(Version),
    /// Older and not a rollback of the running version: never downgrade.
    Downgrade {
        /// Offered.
        available: Version,
        /// Running.
        current: Version,
    },
    /// Installed before on this box and rolled back: never retried.
    FailedBefore(Version),
    /// The running version is older than the release's `min_previous`.
    TooOld {
        /// Required running version.
        min_previous: Version,
        /// Running.
        current: Version,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoReleaseForTarget(t) => write!(f, "the manifest has no release for {t}"),
            Refusal::WrongTarget { found, ours } => {
                write!(f, "built for {found}, this box runs {ours}")
            }
            Refusal::UpToDate(v) => write!(f, "up to date ({v})"),
            Refusal::Downgrade { available, current } => write!(
                f,
                "{available} is older than the running {current} and not a signed rollback of it: never downgrade"
            ),
            Refusal::FailedBefore(v) => write!(
                f,
                "{v} was installed before and rolled back (failed health check): not retried"
            ),
            Refusal::TooOld {
                min_previous,
                current,
            } => write!(
                f,
                "the release needs at least {min_previous} running (this box runs {current}); install an intermediate release first"
            ),
        }
    }
}

/// May `c` replace the running version `current`? `failed` are the versions
/// rolled back on this box (empty to ignore the blacklist).
pub fn release_allowed(
    current: Version,
    target: &str,
    failed: &[Version],
    c: &Claims,
) -> Result<Kind, Refusal> {
    if c.target != target {
        return Err(Refusal::WrongTarget {
            found: c.target.clone(),
            ours: target.to_string(),
        });
    }
    let kind = if c.version > current {
        Kind::Upgrade
    } else if c.version == current {
        return Err(Refusal::UpToDate(current));
    } else if c.rollback_of.contains(&current) {
        Kind::Rollback
    } else {
        return Err(Refusal::Downgrade {
            available: c.version,
            current,
        });
    };
    if failed.contains(&c.version) {
        return Err(Refusal::FailedBefore(c.version));
    }
    if kind == Kind::Upgrade
        && let Some(min) = c.min_previous
        && current < min
    {
        return Err(Refusal::TooOld {
            min_previous: min,
            current,
        });
    }
    Ok(kind)
}

/// Chooses among the releases of a manifest: a rollback of the running
/// version wins (the running version was withdrawn), else the newest allowed
/// upgrade. Without any, the refusal of the newest release for our target.
pub fn choose<'a>(
    current: Version,
    target: &str,
    failed: &[Version],
    releases: &'a [Claims],
) -> Result<(&'a Claims, Kind), Refusal> {
    let ours: Vec<&Claims> = releases.iter().filter(|c| c.target == target).collect();
    let mut best: Option<(&Claims, Kind)> = None;
    for c in &ours {
        if let Ok(kind) = release_allowed(current, target, failed, c) {
            best = match best {
                None => Some((c, kind)),
                Some((_, Kind::Upgrade)) if kind == Kind::Rollback => Some((c, kind)),
                Some((b, bk)) if bk == kind && c.version > b.version => Some((c, kind)),
                keep => keep,
            };
        }
    }
    if let Some(b) = best {
        return Ok(b);
    }
    let newest = ours
        .iter()
        .max_by_key(|c| c.version)
        .ok_or_else(|| Refusal::NoReleaseForTarget(target.to_string()))?;
    match release_allowed(current, target, failed, newest) {
        Err(r) => Err(r),
        Ok(_) => unreachable!("an allowed release would have been chosen"),
    }
}

/// The facts of the moment a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Restaurant local time, minutes after midnight.
    pub local_minute: u32,
    /// Maintenance window (start, end), minutes after midnight; may wrap.
    pub window: (u32, u32),
    /// This box's rollout bucket, 0–99 ([`bucket`]).
    pub bucket: u8,
    /// `update.rollout_percent`.
    pub rollout_percent: u8,
    /// Orders open on the POS that hold updates back (open for less than
    /// `update.open_order_max_h`; older ones are not counted).
    pub open_orders: i64,
    /// Outbox rows waiting for delivery.
    pub queued: i64,
    /// Time since anything in the outbox last changed (`None`: never).
    pub outbox_idle_for: Option<Duration>,
}

/// What a by-hand `update apply` skips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Ignore the window and the rollout (always true for `update apply`).
    pub window_and_rollout: bool,
    /// Ignore open orders and a busy outbox (`update apply --force`).
    pub activity: bool,
}

/// Why not now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The box is not in the staged rollout.
    NotInRollout {
        /// Its bucket.
        bucket: u8,
        /// `rollout_percent`.
        percent: u8,
    },
    /// Outside the maintenance window.
    OutsideWindow {
        /// Local time, minutes after midnight.
        now: u32,
        /// The window.
        window: (u32, u32),
    },
    /// Orders are open on the POS: service is running.
    OrdersOpen(i64),
    /// Events are waiting for delivery and the outbox moved recently.
    OutboxBusy {
        /// Rows waiting.
        queued: i64,
    },
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::NotInRollout { bucket, percent } => write!(
                f,
                "this box is not in the staged rollout (bucket {bucket} ≥ rollout_percent {percent})"
            ),
            Wait::OutsideWindow { now, window } => write!(
                f,
                "outside the maintenance window {}-{} (restaurant time {})",
                hhmm(window.0),
                hhmm(window.1),
                hhmm(*now)
            ),
            Wait::OrdersOpen(n) => write!(f, "{n} order(s) open on the POS"),
            Wait::OutboxBusy { queued } => write!(
                f,
                "{queued} event(s) waiting for delivery and the outbox moved in the last 10 minutes"
            ),
        }
    }
}

/// Is now a good time? Checked in order: rollout, window, open orders,
/// outbox.
pub fn good_time(f: &Facts, o: Overrides) -> Result<(), Wait> {
    if !o.window_and_rollout {
        if f.bucket >= f.rollout_percent {
            return Err(Wait::NotInRollout {
                bucket: f.bucket,
                percent: f.rollout_percent,
            });
        }
        if !in_window(f.local_minute, f.window) {
            return Err(Wait::OutsideWindow {
                now: f.local_minute,
                window: f.window,
            });
        }
    }
    if !o.activity {
        if f.open_orders > 0 {
            return Err(Wait::OrdersOpen(f.open_orders));
        }
        let idle = f.outbox_idle_for.is_none_or(|d| d >= OUTBOX_IDLE);
        if f.queued > 0 && !idle {
            return Err(Wait::OutboxBusy { queued: f.queued });
        }
    }
    Ok(())
}

/// The staged-rollout bucket of a device id, 0–99: the first 8 bytes of
/// its SHA-256, big-endian, modulo 100. Stable across versions and
/// platforms (unlike `DefaultHasher`).
pub fn bucket(device_id: &str) -> u8 {
    let digest = Sha256::digest(device_id.trim().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// The delay before the next check: `every` ± [`JITTER`], `r` uniform in
/// [0, 1).
pub fn next_delay(every: Duration, r: f64) -> Duration {
    let r = r.clamp(0.0, 1.0);
    every.mul_f64(1.0 - JITTER + 2.0 * JITTER * r)
}

/// The delay before the first check after start.
pub fn first_delay(every: Duration, r: f64) -> Duration {
    next_delay(every.min(FIRST_CHECK), r)
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    const T: &str = "x86_64-unknown-linux-gnu";

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn claims(ver: &str, min: Option<&str>, rollback_of: &[&str]) -> Claims {
        Claims {
            version: v(ver),
            target: T.into(),
            min_previous: min.map(v),
            rollback_of: rollback_of.iter().map(|s| v(s)).collect(),
        }
    }

    #[test]
    fn which_release_may_replace_the_running_one() {
        let cases: &[(&str, Claims, &[&str], Result<Kind, Refusal>)] = &[
            ("0.1.0", claims("0.2.0", None, &[]), &[], Ok(Kind::Upgrade)),
            (
                "0.1.0",
                claims("0.2.0", Some("0.1.0"), &[]),
                &[],
                Ok(Kind::Upgrade),
            ),
            (
                "0.1.0",
                claims("0.3.0", Some("0.2.0"), &[]),
                &[],
                Err(Refusal::TooOld {
                    min_previous: v("0.2.0"),
                    current: v("0.1.0"),
                }),
            ),
            (
                "0.2.0",
                claims("0.2.0", None, &[]),
                &[],
                Err(Refusal::UpToDate(v("0.2.0"))),
            ),
            (
                "0.2.0",
                claims("0.1.9", None, &[]),
                &[],
                Err(Refusal::Downgrade {
                    available: v("0.1.9"),
                    current: v("0.2.0"),
                }),
            ),
            // A signed rollback of the running version is taken…
            (
                "0.2.0",
                claims("0.1.9", None, &["0.2.0"]),
                &[],
                Ok(Kind::Rollback),
            ),
            // …but not by a box running another version (no replay).
            (
                "0.3.0",
                claims("0.1.9", None, &["0.2.0"]),
                &[],
                Err(Refusal::Downgrade {
                    available: v("0.1.9"),
                    current: v("0.3.0"),
                }),
            ),
            (
                "0.1.0",
                claims("0.2.0", None, &[]),
                &["0.2.0"],
                Err(Refusal::FailedBefore(v("0.2.0"))),
            ),
        ];
        for (current, c, failed, want) in cases {
            let failed: Vec<Version> = failed.iter().map(|s| v(s)).collect();
            assert_eq!(
                &release_allowed(v(current), T, &failed, c),
                want,
                "running {current}, offered {c:?}"
            );
        }
        let mut other = claims("9.0.0", None, &[]);
        other.target = "aarch64-unknown-linux-gnu".into();
        assert!(matches!(
            release_allowed(v("0.1.0"), T, &[], &other),
            Err(Refusal::WrongTarget { .. })
        ));
    }

    #[test]
    fn choose_prefers_a_rollback_then_the_newest_upgrade() {
        let rel = vec![
            claims("0.2.0", None, &[]),
            claims("0.3.0", None, &[]),
            claims("0.4.0", Some("0.3.0"), &[]),
        ];
        let (c, k) = choose(v("0.1.0"), T, &[], &rel).unwrap();
        assert_eq!((c.version, k), (v("0.3.0"), Kind::Upgrade));
        let (c, _) = choose(v("0.1.0"), T, &[v("0.3.0")], &rel).unwrap();
        assert_eq!(c.version, v("0.2.0"));
        let with_rb = vec![
            claims("0.5.0", None, &[]),
            claims("0.3.0", None, &["0.4.0"]),
        ];
        let (c, k) = choose(v("0.4.0"), T, &[], &with_rb).unwrap();
        assert_eq!((c.version, k), (v("0.3.0"), Kind::Rollback));
        assert_eq!(
            choose(v("0.4.0"), T, &[], &[claims("0.4.0", None, &[])]).unwrap_err(),
            Refusal::UpToDate(v("0.4.0"))
        );
        assert_eq!(
            choose(v("0.4.0"), "armv7-unknown-linux-gnueabihf", &[], &rel).unwrap_err(),
            Refusal::NoReleaseForTarget("armv7-unknown-linux-gnueabihf".into())
        );
    }

    fn facts() -> Facts {
        Facts {
            local_minute: 4 * 60,
            window: (180, 300),
            bucket: 42,
            rollout_percent: 100,
            open_orders: 0,
            queued: 0,
            outbox_idle_for: None,
        }
    }

    // One table of cases, one per rule of the window (long by design: a
    // case a line group, each named).
    #[test]
    fn when_an_install_may_happen() {
        type Case = (&'static str, fn(&mut Facts), Overrides, Result<(), Wait>);
        let cases: Vec<Case> = vec![
            (
                "inside the window, idle",
                |_| {},
                Overrides::default(),
                Ok(()),
            ),
            (
                "02:59 is before 03:00",
                |f| f.local_minute = 179,
                Overrides::default(),
                Err(Wait::OutsideWindow {
                    now: 179,
                    window: (180, 300),
                }),
            ),
            (
                "05:00 is the end (exclusive)",
                |f| f.local_minute = 300,
                Overrides::default(),
                Err(Wait::OutsideWindow {
                    now: 300,
                    window: (180, 300),
                }),
            ),
            (
                "wrapping window, 23:30",
                |f| {
                    f.window = (1380, 60);
                    f.local_minute = 1410;
                },
                Overrides::default(),
                Ok(()),
            ),
            (
                "wrapping window, 00:30",
                |f| {
                    f.window = (1380, 60);
                    f.local_minute = 30;
                },
                Overrides::default(),
                Ok(()),
            ),
            (
                "wrapping window, 12:00",
                |f| {
                    f.window = (1380, 60);
                    f.local_minute = 720;
                },
                Overrides::default(),
                Err(Wait::OutsideWindow {
                    now: 720,
                    window: (1380, 60),
                }),
            ),
            (
                "rollout 0 never takes part",
                |f| f.rollout_percent = 0,
                Overrides::default(),
                Err(Wait::NotInRollout {
                    bucket: 42,
                    percent: 0,
                }),
            ),
            (
                "bucket 42 is out of a 42 % rollout",
                |f| f.rollout_percent = 42,
                Overrides::default(),
                Err(Wait::NotInRollout {
                    bucket: 42,
                    percent: 42,
                }),
            ),
            (
                "bucket 42 is in a 43 % rollout",
                |f| f.rollout_percent = 43,
                Overrides::default(),
                Ok(()),
            ),
            (
                "an open order postpones",
                |f| f.open_orders = 1,
                Overrides::default(),
                Err(Wait::OrdersOpen(1)),
            ),
            (
                "queued and moving postpones",
                |f| {
                    f.queued = 3;
                    f.outbox_idle_for = Some(Duration::from_secs(30));
                },
                Overrides::default(),
                Err(Wait::OutboxBusy { queued: 3 }),
            ),
            (
                "queued but idle for 10 min is fine",
                |f| {
                    f.queued = 3;
                    f.outbox_idle_for = Some(OUTBOX_IDLE);
                },
                Overrides::default(),
                Ok(()),
            ),
            (
                "by hand ignores window and rollout…",
                |f| {
                    f.local_minute = 720;
                    f.rollout_percent = 0;
                },
                Overrides {
                    window_and_rollout: true,
                    activity: false,
                },
                Ok(()),
            ),
            (
                "…but not open orders",
                |f| {
                    f.local_minute = 720;
                    f.open_orders = 2;
                },
                Overrides {
                    window_and_rollout: true,
                    activity: false,
                },
                Err(Wait::OrdersOpen(2)),
            ),
            (
                "--force ignores open orders",
                |f| f.open_orders = 2,
                Overrides {
                    window_and_rollout: true,
                    activity: true,
                },
                Ok(()),
            ),
        ];
        for (name, change, o, want) in cases {
            let mut f = facts();
            change(&mut f);
            assert_eq!(good_time(&f, o), want, "{name}");
        }
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Stable: the same id always lands in the same bucket.
        assert_eq!(bucket("a1b2c3"), bucket("a1b2c3\n"));
        let b: Vec<u8> = (0..1000).map(|i| bucket(&format!("device-{i}"))).collect();
        assert!(b.iter().all(|&x| x < 100));
        let under_10 = b.iter().filter(|&&x| x < 10).count();
        assert!(
            (50..=150).contains(&under_10),
            "{under_10} of 1000 under 10"
        );
    }

    #[test]
    fn delays_stay_within_the_jitter() {
        let six = DEFAULT_CHECK_INTERVAL;
        assert_eq!(next_delay(six, 0.0), six.mul_f64(0.9));
        assert_eq!(next_delay(six, 0.5), six);
        assert!(next_delay(six, 0.999) < six.mul_f64(1.1));
        assert_eq!(first_delay(six, 0.5), FIRST_CHECK);
        assert_eq!(
            first_delay(Duration::from_secs(2), 0.5),
            Duration::from_secs(2)
        );
    }
}

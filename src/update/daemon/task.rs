//! The daemon's update task: confirm a pending version once healthy (or
//! roll it back at [`HEALTH_DEADLINE`]), then check periodically and
//! install when the policy allows.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::super::install;
use super::super::policy::{self, Overrides};
use super::boot::{BootAction, HEALTH_DEADLINE, roll_back};
use super::plan::{Outcome, Updater};
use super::records::{
    CheckFailures, FAILURES_KV_KEY, failure_text, record_check, record_last_check,
};
use crate::outbox::Store;

/// Calls `tick` after `first`, then every `every` ± jitter (`r()` uniform
/// in [0, 1)), until `stop` is cancelled or `tick` breaks.
pub async fn periodic<F, Fut>(
    first: Duration,
    every: Duration,
    stop: CancellationToken,
    mut r: impl FnMut() -> f64,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    let mut delay = policy::next_delay(first.min(every), r());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        // A check in progress (download, verification) is abandoned at
        // stop: nothing is installed before its last, short, blocking step.
        let flow = tokio::select! {
            _ = stop.cancelled() => return,
            flow = tick() => flow,
        };
        if flow.is_break() {
            return;
        }
        delay = policy::next_delay(every, r());
    }
}

/// The daemon's update task (see the module docs).
pub struct Task {
    /// The updater.
    pub updater: Updater,
    /// The store (health probe).
    pub store: Store,
    /// `Some(version)` when this start runs a pending version.
    pub pending: Option<String>,
    /// When `run()` started.
    pub started: Instant,
    /// Cancelled to stop the whole daemon (after an install or rollback).
    pub shutdown: CancellationToken,
    /// Cancelled when the daemon stops.
    pub stop: CancellationToken,
}

/// Runs the update task until `stop`.
pub async fn run(t: Task) {
    if let Some(p) = super::super::signing_key_problem(&t.updater.cfg) {
        warn!(
            "update: {p}: every release will be refused until update.public_key is set to the \
             release signing key (base64) in the configuration"
        );
    }
    if let Some(v) = t.pending.clone()
        && !confirm_health(&t, &v).await
    {
        return;
    }
    if !t.updater.cfg.enabled || t.updater.cfg.manifest_url.is_none() {
        info!("update: automatic updates off (update.enabled = false or no manifest_url)");
        return;
    }
    let updater = t.updater.clone();
    let shutdown = t.shutdown.clone();
    let store = t.store.clone();
    let failures = Arc::new(std::sync::Mutex::new(
        CheckFailures::parse(store.kv_value(FAILURES_KV_KEY).await).unwrap_or_default(),
    ));
    periodic(
        policy::FIRST_CHECK,
        t.updater.cfg.check_interval,
        t.stop.clone(),
        || {
            use rand::RngExt;
            rand::rng().random::<f64>()
        },
        move || {
            let updater = updater.clone();
            let shutdown = shutdown.clone();
            let store = store.clone();
            let failures = failures.clone();
            async move {
                let result = updater.check(Overrides::default()).await;
                let error = result
                    .as_ref()
                    .err()
                    .map(|e| failure_text(e, &updater.paths));
                record_check(&store, &failures, error).await;
                record_last_check(&store, &result).await;
                match result {
                    Ok(Outcome::Installed(i)) => {
                        info!(
                            message_id = crate::message_ids::UPDATE_INSTALLED,
                            "update: installed {} (was {}); restarting into it",
                            i.version,
                            i.previous
                        );
                        super::super::request_restart();
                        shutdown.cancel();
                        ControlFlow::Break(())
                    }
                    Ok(Outcome::NotNow { why, .. }) => {
                        info!("update: not installing: {why}");
                        ControlFlow::Continue(())
                    }
                    Ok(Outcome::NotConfigured) => ControlFlow::Break(()),
                    Err(e) => {
                        warn!("update: check failed: {}", failure_text(&e, &updater.paths));
                        ControlFlow::Continue(())
                    }
                }
            }
        },
    )
    .await;
}

/// Confirms the pending version once healthy; rolls back at the deadline.
/// Returns whether the daemon goes on.
async fn confirm_health(t: &Task, version: &str) -> bool {
    let deadline = t.started + HEALTH_DEADLINE;
    let first = t.started + t.updater.cfg.confirm_after;
    tokio::select! {
        _ = t.stop.cancelled() => return false,
        _ = tokio::time::sleep_until(first) => {}
    }
    loop {
        let probe = t
            .store
            .set_kv_value("update_health_probe", crate::time::now_utc());
        let healthy = matches!(
            tokio::time::timeout(Duration::from_secs(10), probe).await,
            Ok(Ok(()))
        );
        // The test build of the next release (tests/rollback.rs) fails its
        // health check by design.
        let healthy = healthy && !cfg!(feature = "test-next");
        if cfg!(feature = "test-next") {
            warn!("update: test-next build: the health check fails by design");
        }
        if healthy {
            crate::watchdog::ping();
            match install::confirm(&t.updater.paths.state_file(), version) {
                Ok(_) => {
                    info!("update: {version} confirmed healthy");
                    return true;
                }
                Err(e) => warn!("update: cannot record the confirmation: {e:#}"),
            }
        }
        if Instant::now() >= deadline {
            let file = t.updater.paths.state_file();
            let why = format!("not confirmed healthy within {HEALTH_DEADLINE:?}");
            if roll_back(&file, version, &why) == BootAction::Restart {
                super::super::request_restart();
                t.shutdown.cancel();
            }
            return false;
        }
        tokio::select! {
            _ = t.stop.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use chrono::{DateTime, Timelike, Utc};

    use super::super::super::policy::{Facts, Wait};

    /// Over three simulated days the loop checks every 6 h ± 10 %, first
    /// one minute after start.
    #[tokio::test(start_paused = true)]
    async fn checks_every_six_hours_with_jitter() {
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let stop = CancellationToken::new();
        let s2 = seen.clone();
        let mut i = 0u32;
        let task = tokio::spawn(periodic(
            policy::FIRST_CHECK,
            policy::DEFAULT_CHECK_INTERVAL,
            stop.clone(),
            move || {
                i += 1;
                f64::from(i % 10) / 10.0
            },
            move || {
                s2.lock().unwrap().push(start.elapsed());
                async { ControlFlow::Continue(()) }
            },
        ));
        tokio::time::sleep(Duration::from_secs(3 * 24 * 3600)).await;
        stop.cancel();
        task.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen[0] >= Duration::from_secs(54) && seen[0] <= Duration::from_secs(66),
            "{:?}",
            seen[0]
        );
        for w in seen.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_secs(6 * 3600 * 9 / 10)
                    && gap < Duration::from_secs(6 * 3600 * 11 / 10),
                "gap {gap:?}"
            );
        }
        assert!(
            (11..=14).contains(&seen.len()),
            "{} checks in 3 days",
            seen.len()
        );
        let distinct: std::collections::BTreeSet<_> =
            seen.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(distinct.len() > 3, "the gaps vary (jitter)");
    }

    /// The loop and the policy together, on a clock that follows tokio's
    /// paused time: a box started at 10:00 restaurant time with an open
    /// order until 03:30 installs in the window, after 03:30, before 05:00.
    #[tokio::test(start_paused = true)]
    async fn installs_only_inside_the_window_once_no_order_is_open() {
        let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let wall0 = chrono::NaiveDate::from_ymd_opt(2026, 11, 29)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap()
            .and_local_timezone(tz)
            .unwrap()
            .with_timezone(&Utc);
        let start = Instant::now();
        let clock = move || wall0 + chrono::Duration::from_std(start.elapsed()).unwrap();
        let order_closes = wall0 + chrono::Duration::minutes(17 * 60 + 30); // 03:30 next day
        let log = Arc::new(Mutex::new(Vec::<(DateTime<Utc>, Result<(), Wait>)>::new()));
        let l2 = log.clone();
        let stop = CancellationToken::new();
        periodic(
            policy::FIRST_CHECK,
            Duration::from_secs(15 * 60), // a short interval to land inside the window
            stop,
            || 0.5,
            move || {
                let now = clock();
                let local = now.with_timezone(&tz);
                let facts = Facts {
                    local_minute: local.hour() * 60 + local.minute(),
                    window: (180, 300),
                    bucket: 10,
                    rollout_percent: 100,
                    open_orders: i64::from(now < order_closes),
                    queued: 0,
                    outbox_idle_for: None,
                };
                let d = policy::good_time(&facts, Overrides::default());
                let done = d.is_ok();
                l2.lock().unwrap().push((now, d));
                async move {
                    if done {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
            },
        )
        .await;
        let log = log.lock().unwrap().clone();
        let (when, _) = log.last().unwrap();
        let local = when.with_timezone(&tz);
        assert_eq!(local.date_naive().to_string(), "2026-11-30");
        assert!(
            (210..300).contains(&(local.hour() * 60 + local.minute())),
            "{local}"
        );
        assert!(
            log.iter()
                .any(|(_, d)| matches!(d, Err(Wait::OutsideWindow { .. })))
        );
        assert!(
            log.iter()
                .any(|(_, d)| matches!(d, Err(Wait::OrdersOpen(1))))
        );
    }
}

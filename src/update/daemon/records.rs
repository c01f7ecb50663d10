//! The daemon's records of its update checks, kept in the store's `kv`:
//! the failures in a row ([`CheckFailures`]) and the last check
//! ([`LastCheck`]), read by `status`, `doctor` and the fleet report.

use tracing::{error, warn};

use super::super::{Paths, UpdateError};
use super::plan::Outcome;
use crate::outbox::{Store, StoreError};

/// `kv` key of the daemon's record of failed update checks
/// ([`CheckFailures`], JSON).
pub const FAILURES_KV_KEY: &str = "update_check_failures";
/// After this many failed checks in a row, `status`, `doctor` and the page
/// say that updates are failing.
pub const FAILING_AFTER: u32 = 3;

/// The daemon's record of update checks that failed in a row (an error,
/// not a "not now"), kept in the store (`kv` [`FAILURES_KV_KEY`]) so that
/// it survives restarts; reset by the next check that runs through.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckFailures {
    /// Failed checks in a row; 0 after a check that ran through.
    pub consecutive: u32,
    /// When the first of them failed (UTC, RFC 3339).
    pub since: Option<String>,
    /// When the last one failed (UTC, RFC 3339).
    pub last_at: Option<String>,
    /// Its error (no secret: update errors carry URLs and file names).
    pub last_error: Option<String>,
}

impl CheckFailures {
    /// `updates failing since <since>: <error>` once [`FAILING_AFTER`]
    /// checks in a row failed, else `None`.
    pub fn problem(&self) -> Option<String> {
        (self.consecutive >= FAILING_AFTER).then(|| {
            format!(
                "updates failing since {}: {} ({} failed checks in a row)",
                self.since.as_deref().unwrap_or("?"),
                self.last_error.as_deref().unwrap_or("?"),
                self.consecutive
            )
        })
    }

    /// The record from its stored JSON, the value of `kv` [`FAILURES_KV_KEY`]
    /// as the store read it (`None`: no record, or unreadable).
    pub fn parse(stored: Result<Option<String>, StoreError>) -> Option<CheckFailures> {
        stored
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
    }
}

/// What to tell a technician about a failed check: the error, and for a
/// permission error the command that gives the state directory back to
/// the agent (a command once run as root left files it cannot write).
pub(super) fn failure_text(e: &UpdateError, paths: &Paths) -> String {
    let text = format!("{e:#}");
    let denied = matches!(e, UpdateError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    if denied {
        let dir = paths.state_dir.display();
        let me = crate::privileges::user_name(crate::privileges::euid())
            .unwrap_or_else(|| "zenchef-edge".into());
        format!(
            "{text} (a file in {dir} is not the agent's, e.g. left by a command run as root: \
             sudo chown -R {me}: {dir})"
        )
    } else {
        text
    }
}

/// Records one check's result in the store: a failure adds to the run of
/// failures, a check that ran through resets it (written only when it
/// changes).
pub(super) async fn record_check(
    store: &Store,
    failures: &std::sync::Mutex<CheckFailures>,
    error: Option<String>,
) {
    let next = {
        let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None if f.consecutive == 0 => return,
            None => *f = CheckFailures::default(),
            Some(e) => {
                let now = crate::time::now_utc();
                if f.consecutive == 0 {
                    f.since = Some(now.clone());
                }
                f.consecutive += 1;
                f.last_at = Some(now);
                f.last_error = Some(e);
            }
        }
        f.clone()
    };
    if next.consecutive == FAILING_AFTER {
        error!(
            "update: {}; the box gets no update until this is fixed",
            next.problem().unwrap_or_default()
        );
    }
    let json = serde_json::to_string(&next).unwrap_or_default();
    if let Err(e) = store.set_kv_value(FAILURES_KV_KEY, json).await {
        warn!("update: cannot record the check's result: {e}");
    }
}

/// `kv` key of the daemon's last update check ([`LastCheck`], JSON).
pub const LAST_CHECK_KV_KEY: &str = "update_last_check";

/// The daemon's last update check, for `status` and the fleet report:
/// when, its result, and the release waiting for its time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastCheck {
    /// When it ran (box clock, UTC, RFC 3339).
    pub at: String,
    /// `installed`, `not_now` (checked; nothing installed now) or
    /// `failed` (see `update_problem` after a few in a row).
    pub result: String,
    /// The release the box would install when allowed; `None` when the
    /// box runs the newest it may.
    pub available: Option<String>,
}

impl LastCheck {
    /// The record from its stored JSON, the value of `kv` [`LAST_CHECK_KV_KEY`]
    /// as the store read it (`None`: no record, or unreadable).
    pub fn parse(stored: Result<Option<String>, StoreError>) -> Option<LastCheck> {
        stored
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
    }
}

/// Records the check's outcome ([`LastCheck`]); a failure keeps the
/// release known from the check before.
pub(super) async fn record_last_check(store: &Store, result: &Result<Outcome, UpdateError>) {
    let (outcome, available) = match result {
        Ok(Outcome::Installed(i)) => ("installed", Some(i.version.to_string())),
        Ok(Outcome::NotNow { available, .. }) => ("not_now", available.clone()),
        Ok(Outcome::NotConfigured) => return,
        Err(_) => ("failed", None),
    };
    let failed = result.is_err();
    let at = crate::time::now_utc();
    let r = store
        .replace_kv_value(LAST_CHECK_KV_KEY, move |before| {
            let before = LastCheck::parse(Ok(before)).and_then(|l| l.available);
            let last = LastCheck {
                at,
                result: outcome.into(),
                available: if failed { before } else { available },
            };
            serde_json::to_string(&last).unwrap_or_default()
        })
        .await;
    if let Err(e) = r {
        warn!("update: cannot record the check's result: {e}");
    }
}

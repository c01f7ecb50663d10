//! The start bookkeeping: roll back a version that never confirmed its
//! health, or note that this start runs a pending one; and `update
//! boot-check`, the same run by the previous binary before the new one.

use std::time::Duration;

use tracing::{error, info, warn};

use super::super::install;
use super::super::state::{self, Boot, UpdateState};
use super::super::{Paths, running_version_str};

/// A new version that has not confirmed its health this long after its
/// start is rolled back.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(120);

/// What [`boot`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootAction {
    /// Go on; `Some(version)` when this start runs a pending version that
    /// must confirm its health.
    Continue(Option<String>),
    /// The previous binary was put back: stop now with
    /// [`super::super::EX_RESTART`] so systemd starts it.
    Restart,
}

/// The start bookkeeping of the daemon (`run()` calls it first). Never
/// fails: a problem is logged and the daemon starts normally.
pub fn boot(paths: &Paths) -> BootAction {
    let file = paths.state_file();
    let mut st = match UpdateState::load(&file) {
        Ok(s) => s,
        Err(e) => {
            warn!("update: {e}; ignoring it");
            return BootAction::Continue(None);
        }
    };
    let before = st.clone();
    let decision = state::boot_step(
        &mut st,
        &state::invocation_id(),
        Some(running_version_str()),
    );
    match decision {
        Boot::Normal => BootAction::Continue(None),
        Boot::Pending(v) => {
            if st != before
                && let Err(e) = st.save(&file)
            {
                warn!("update: {e}");
            }
            info!(
                "update: first start of {v}; it must confirm its health within {HEALTH_DEADLINE:?}"
            );
            BootAction::Continue(Some(v))
        }
        Boot::DidNotTake(v) => {
            st.clear_pending();
            st.event(format!(
                "the install of {v} did not take effect; still running {}",
                running_version_str()
            ));
            if let Err(e) = st.save(&file) {
                warn!("update: {e}");
            }
            warn!(
                "update: {v} was recorded as installed but this binary is {}; forgetting it",
                running_version_str()
            );
            BootAction::Continue(None)
        }
        Boot::RollBack(v) => roll_back(
            &file,
            &v,
            "started again without having confirmed its health",
        ),
    }
}

pub(super) fn roll_back(file: &std::path::Path, v: &str, why: &str) -> BootAction {
    match install::rollback(file, why) {
        Ok(_) => {
            error!(
                message_id = crate::message_ids::UPDATE_ROLLED_BACK,
                "update: ROLLED BACK {v}: {why}; restarting on the previous binary; {v} will not be retried"
            );
            BootAction::Restart
        }
        Err(e) => {
            error!("update: {v} {why}, and the rollback failed: {e:#}; going on with {v}");
            if let Ok(mut st) = UpdateState::load(file) {
                if !st.failed_versions.iter().any(|f| f == v) {
                    st.failed_versions.push(v.to_string());
                }
                st.clear_pending();
                st.event(format!("{v} unhealthy but could not be rolled back: {e}"));
                let _ = st.save(file);
            }
            BootAction::Continue(None)
        }
    }
}

/// `update boot-check`: the bookkeeping run by the **previous** binary from
/// the unit's `ExecStartPre=`, so that a new binary that cannot even start
/// is rolled back too. Logs what it did (a rollback at ERROR with
/// `MESSAGE_ID=`[`crate::message_ids::UPDATE_ROLLED_BACK`]) and returns
/// the same line.
pub fn boot_check(paths: &Paths) -> String {
    let (line, rolled_back) = boot_check_step(paths);
    if rolled_back {
        error!(
            message_id = crate::message_ids::UPDATE_ROLLED_BACK,
            "{line}"
        );
    } else {
        info!("{line}");
    }
    line
}

/// [`boot_check`] without the logging: the line, and whether it rolled
/// back.
fn boot_check_step(paths: &Paths) -> (String, bool) {
    let file = paths.state_file();
    let mut st = match UpdateState::load(&file) {
        Ok(s) => s,
        Err(e) => return (format!("update boot-check: {e}; nothing done"), false),
    };
    let before = st.clone();
    match state::boot_step(&mut st, &state::invocation_id(), None) {
        Boot::Normal => ("update boot-check: nothing pending".into(), false),
        Boot::Pending(v) | Boot::DidNotTake(v) => {
            if st != before
                && let Err(e) = st.save(&file)
            {
                return (format!("update boot-check: {e}"), false);
            }
            (
                format!(
                    "update boot-check: first start of {v} (must confirm within {HEALTH_DEADLINE:?})"
                ),
                false,
            )
        }
        Boot::RollBack(v) => {
            match install::rollback(&file, "started again without having confirmed its health") {
                Ok(_) => (
                    format!(
                        "update boot-check: ROLLED BACK {v}: it started again without having \
                         confirmed its health; the previous binary is back and {v} will not be retried"
                    ),
                    true,
                ),
                Err(e) => (
                    format!("update boot-check: {v} is unhealthy but the rollback failed: {e}"),
                    false,
                ),
            }
        }
    }
}

//! The update side of the daemon, and the check/apply flow shared with the
//! CLI.
//!
//! - [`boot`]: the start bookkeeping `run()` calls first (before the store
//!   is opened): roll back an unconfirmed version, or note that this start
//!   runs one.
//! - [`run`]: one task of the daemon. If this start runs a pending version,
//!   it confirms it once healthy (after `update.confirm_after_s`: the store
//!   answers a write, discovery/session tasks are running) or rolls it back
//!   at [`HEALTH_DEADLINE`]. Then it checks every 6 h ± 10 % and installs
//!   when the policy allows; after an install (or rollback) it asks `main`
//!   to exit with [`super::EX_RESTART`] and cancels the daemon's shutdown
//!   token, so the daemon stops in its usual order and systemd starts the
//!   new binary.
//! - [`Updater`]: manifest → plan (policy) → download → verify → install.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use rusqlite::Connection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::install::{self, Installed};
use super::manifest::{self, Entry};
use super::policy::{self, Facts, Kind, Overrides, Refusal, Wait};
use super::state::{self, Boot, Lock, UpdateState};
use super::verify::{self, PublicKey};
use super::{Paths, UpdateError, running_version, running_version_str};
use crate::config::{UpdateConfig, Version};
use crate::outbox::{Store, StoreError, orders, queue};

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
    /// [`super::EX_RESTART`] so systemd starts it.
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

fn roll_back(file: &std::path::Path, v: &str, why: &str) -> BootAction {
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

/// Where the policy's activity facts come from.
#[derive(Clone)]
pub enum Activity {
    /// The daemon's store handle.
    Store(Store),
    /// The store file, opened read-only (CLI).
    File(PathBuf),
}

/// Open orders, queued events, time since the outbox last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityFacts {
    /// Orders in state `open` that hold updates back: open for less than
    /// `update.open_order_max_h`, or since an unknown time.
    pub open_orders: i64,
    /// Orders open for longer than `update.open_order_max_h` (a table
    /// left open on the POS): no longer counted.
    pub stale_orders: i64,
    /// Outbox rows `queued` in either lane (Zenchef, Zenchef Pay), plus
    /// Zenchef Pay payments whose settle command or ack is not done.
    pub queued: i64,
    /// Since the newest `outbox.updated_at` (`None`: empty outbox).
    pub idle_for: Option<Duration>,
}

/// An open order and since when, for `status` ("what holds the update
/// back") and the update log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenOrder {
    /// POS order id.
    pub order_id: String,
    /// Its table (as the Zenchef lane last applied it).
    pub table: String,
    /// When the agent stored its first event (box clock, UTC, RFC 3339);
    /// `None` when no event of it is stored.
    pub since: Option<String>,
    /// Open for longer than `update.open_order_max_h`: no longer holds
    /// updates back.
    pub stale: bool,
}

/// The open orders, oldest first (at most `limit`), each with whether it
/// still holds updates back at `now` (box clock). An order whose first
/// event is unknown holds them back: the safe side.
///
/// Errors: SQLite's.
pub fn open_orders(
    c: &Connection,
    now: DateTime<Utc>,
    max_open: Duration,
    limit: usize,
) -> Result<Vec<OpenOrder>, StoreError> {
    let rows = orders::open_orders(c, limit)?;
    let max = chrono::Duration::from_std(max_open).unwrap_or(chrono::Duration::MAX);
    Ok(rows
        .into_iter()
        .map(|r| {
            let stale = r
                .since
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .is_some_and(|t| now - t.with_timezone(&Utc) > max);
            OpenOrder {
                order_id: r.order_id,
                table: r.table,
                since: r.since,
                stale,
            }
        })
        .collect())
}

/// The open orders that hold an update back at `now` (not stale), oldest
/// first, at most `limit`.
///
/// Errors: SQLite's.
pub fn holding_orders(
    c: &Connection,
    now: DateTime<Utc>,
    max_open: Duration,
    limit: usize,
) -> Result<Vec<OpenOrder>, StoreError> {
    Ok(open_orders(c, now, max_open, usize::MAX)?
        .into_iter()
        .filter(|o| !o.stale)
        .take(limit)
        .collect())
}

fn read_activity(
    c: &Connection,
    now: DateTime<Utc>,
    max_open: Duration,
) -> Result<ActivityFacts, StoreError> {
    let open = open_orders(c, now, max_open, usize::MAX)?;
    let stale_orders = open.iter().filter(|o| o.stale).count() as i64;
    let open_orders = open.len() as i64 - stale_orders;
    let queued = queue::waiting_deliveries(c)?;
    let idle_for = queue::last_update(c)?
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| {
            (now - t.with_timezone(&Utc))
                .to_std()
                .unwrap_or(Duration::ZERO)
        });
    Ok(ActivityFacts {
        open_orders,
        stale_orders,
        queued,
        idle_for,
    })
}

impl Activity {
    /// Reads the facts now; orders open for longer than `max_open` are
    /// counted apart (they no longer hold updates back).
    ///
    /// Errors: the store cannot be read (a missing store file counts as no
    /// activity: the agent never ran).
    pub async fn read(
        &self,
        now: DateTime<Utc>,
        max_open: Duration,
    ) -> Result<ActivityFacts, UpdateError> {
        match self {
            Activity::Store(s) => Ok(s.read(move |c| read_activity(c, now, max_open)).await?),
            Activity::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || {
                    if !p.exists() {
                        return Ok(ActivityFacts {
                            open_orders: 0,
                            stale_orders: 0,
                            queued: 0,
                            idle_for: None,
                        });
                    }
                    let c = crate::outbox::store::open_read_only(&p)?;
                    Ok(read_activity(&c, now, max_open)?)
                })
                .await
                .map_err(|e| UpdateError::io("reading the store", std::io::Error::other(e)))?
            }
        }
    }
}

/// What one check found (and would do).
#[derive(Debug)]
pub struct Plan {
    /// The running version.
    pub current: Version,
    /// This box's rollout bucket.
    pub bucket: u8,
    /// The release to install, or why none.
    pub release: Result<(Entry, Kind), Refusal>,
    /// Whether now is a good time, or why not.
    pub when: Result<(), Wait>,
    /// The configured key, or why it is unusable.
    pub key: Result<PublicKey, UpdateError>,
    /// The update state at the time of the check.
    pub state: UpdateState,
}

impl Plan {
    /// `None` when the plan says install now, else the first reason not to.
    pub fn why_not(&self) -> Option<String> {
        if let Err(r) = &self.release {
            return Some(r.to_string());
        }
        if let Err(e) = &self.key {
            return Some(e.to_string());
        }
        if let Some(p) = &self.state.pending_version {
            return Some(format!("{p} is installed and not yet confirmed"));
        }
        self.when.as_ref().err().map(|w| w.to_string())
    }
}

/// Outcome of [`Updater::check`].
#[derive(Debug)]
pub enum Outcome {
    /// Nothing configured to check.
    NotConfigured,
    /// Checked; nothing installed, and why.
    NotNow {
        /// Why nothing was installed.
        why: String,
        /// The release this box would install when allowed (a newer
        /// version, or the rollback of a withdrawn one), `None` when none.
        available: Option<String>,
    },
    /// Installed; restart to run it.
    Installed(Installed),
}

/// Check → plan → download → verify → install, for the daemon and the CLI.
#[derive(Clone)]
pub struct Updater {
    /// `[update]`.
    pub cfg: UpdateConfig,
    /// Restaurant time zone (the window is local time).
    pub tz: chrono_tz::Tz,
    /// Files.
    pub paths: Paths,
    /// Activity facts.
    pub activity: Activity,
    /// Wall clock (tests move it with tokio's paused time).
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    client: reqwest::Client,
}

impl Updater {
    /// A new updater.
    ///
    /// Errors: the HTTP client cannot be built.
    pub fn new(
        cfg: UpdateConfig,
        tz: chrono_tz::Tz,
        paths: Paths,
        activity: Activity,
    ) -> Result<Updater, UpdateError> {
        crate::tls::install_crypto();
        let client = reqwest::Client::builder()
            .user_agent(concat!("zenchef-edge-update/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // The manifest and archive URLs passed the configuration's
            // check (https, http only to loopback); a redirect could lead
            // anywhere: never followed, reported with where it pointed.
            .redirect(crate::zenchef::client::no_redirects())
            .build()
            .map_err(|e| UpdateError::io("building the HTTP client", std::io::Error::other(e)))?;
        Ok(Updater {
            cfg,
            tz,
            paths,
            activity,
            clock: Arc::new(Utc::now),
            client,
        })
    }

    fn local_minute(&self, now: DateTime<Utc>) -> u32 {
        let local = now.with_timezone(&self.tz);
        local.hour() * 60 + local.minute()
    }

    /// Fetches the manifest and evaluates the policy.
    ///
    /// Errors: no manifest URL, manifest fetch or parse, state or store
    /// read, device id.
    pub async fn plan(&self, o: Overrides) -> Result<Plan, UpdateError> {
        let url = self
            .cfg
            .manifest_url
            .clone()
            .ok_or(UpdateError::NoManifestUrl)?;
        let state = UpdateState::load(&self.paths.state_file())?;
        let device = state::device_id(&self.paths.device_id_file())
            .map_err(|e| UpdateError::io("reading the device id", e))?;
        let bucket = policy::bucket(&device);
        let current = running_version();
        let manifest = manifest::fetch(&self.client, &url).await?;
        let failed = if o.activity {
            Vec::new()
        } else {
            state.failed()
        };
        let all = manifest.claims();
        let release = policy::choose(current, super::TARGET, &failed, &all).and_then(|(c, k)| {
            manifest
                .entry_for(c)
                .cloned()
                .map(|e| (e, k))
                .ok_or_else(|| Refusal::NoReleaseForTarget(super::TARGET.into()))
        });
        let now = (self.clock)();
        let act = self.activity.read(now, self.cfg.open_order_max).await?;
        if act.stale_orders > 0 {
            info!(
                "update: {} order(s) open on the POS for more than {} h no longer hold updates back",
                act.stale_orders,
                self.cfg.open_order_max.as_secs() / 3600
            );
        }
        let facts = Facts {
            local_minute: self.local_minute(now),
            window: self.cfg.window,
            bucket,
            rollout_percent: self.cfg.rollout_percent,
            open_orders: act.open_orders,
            queued: act.queued,
            outbox_idle_for: act.idle_for,
        };
        Ok(Plan {
            current,
            bucket,
            release,
            when: policy::good_time(&facts, o),
            key: PublicKey::from_config(&self.cfg),
            state,
        })
    }

    /// One full check: plan, then (when allowed) download, verify, re-check
    /// the activity, install.
    ///
    /// Errors: any step; the running binary is then unchanged.
    pub async fn check(&self, o: Overrides) -> Result<Outcome, UpdateError> {
        if self.cfg.manifest_url.is_none() {
            return Ok(Outcome::NotConfigured);
        }
        let plan = self.plan(o).await?;
        let available = plan
            .release
            .as_ref()
            .ok()
            .map(|(e, _)| e.claims.version.to_string());
        if let Some(why) = plan.why_not() {
            return Ok(Outcome::NotNow { why, available });
        }
        let (Ok((entry, _)), Ok(key)) = (plan.release, plan.key) else {
            return Ok(Outcome::NotNow {
                why: "no release".into(),
                available,
            });
        };
        let _lock = Lock::try_take(&self.paths.lock_file()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                UpdateError::Busy(self.paths.lock_file())
            } else {
                UpdateError::io("taking the update lock", e)
            }
        })?;
        info!(version = %entry.claims.version, url = %entry.url, "update: downloading");
        let downloaded = verify::download(&self.client, &entry, &self.paths.download_dir()).await?;
        let failed = if o.activity {
            Vec::new()
        } else {
            plan.state.failed()
        };
        let staging = self.paths.bin_dir();
        let current = plan.current;
        let verified = tokio::task::spawn_blocking(move || {
            verify::verify(downloaded, &key, &staging, current, &failed)
        })
        .await
        .map_err(|e| UpdateError::io("verifying", std::io::Error::other(e)))??;
        info!(version = %entry.claims.version, "update: signature verified");
        // The download took a while: is it still a good time?
        if !o.activity {
            let act = self
                .activity
                .read((self.clock)(), self.cfg.open_order_max)
                .await?;
            if act.open_orders > 0 {
                return Ok(Outcome::NotNow {
                    why: Wait::OrdersOpen(act.open_orders).to_string(),
                    available: Some(entry.claims.version.to_string()),
                });
            }
        }
        let paths = self.paths.clone();
        let installed =
            tokio::task::spawn_blocking(move || install::install(verified, &paths, current))
                .await
                .map_err(|e| UpdateError::io("installing", std::io::Error::other(e)))??;
        Ok(Outcome::Installed(installed))
    }
}

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

    /// Reads the record from the store (`None`: no record or unreadable).
    pub fn read(conn: &Connection) -> Option<CheckFailures> {
        crate::outbox::kv_get(conn, FAILURES_KV_KEY)
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
    }
}

/// What to tell a technician about a failed check: the error, and for a
/// permission error the command that gives the state directory back to
/// the agent (a command once run as root left files it cannot write).
fn failure_text(e: &UpdateError, paths: &Paths) -> String {
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
async fn record_check(
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
    if let Err(e) = store
        .write(move |c| crate::outbox::kv_set(c, FAILURES_KV_KEY, &json))
        .await
    {
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
    /// Reads the record from the store (`None`: no record or unreadable).
    pub fn read(conn: &Connection) -> Option<LastCheck> {
        crate::outbox::kv_get(conn, LAST_CHECK_KV_KEY)
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
    }
}

/// Records the check's outcome ([`LastCheck`]); a failure keeps the
/// release known from the check before.
async fn record_last_check(store: &Store, result: &Result<Outcome, UpdateError>) {
    let (outcome, available) = match result {
        Ok(Outcome::Installed(i)) => ("installed", Some(i.version.to_string())),
        Ok(Outcome::NotNow { available, .. }) => ("not_now", available.clone()),
        Ok(Outcome::NotConfigured) => return,
        Err(_) => ("failed", None),
    };
    let failed = result.is_err();
    let at = crate::time::now_utc();
    let r = store
        .write(move |c| {
            let before = LastCheck::read(c).and_then(|l| l.available);
            let last = LastCheck {
                at,
                result: outcome.into(),
                available: if failed { before } else { available },
            };
            let json = serde_json::to_string(&last).unwrap_or_default();
            crate::outbox::kv_set(c, LAST_CHECK_KV_KEY, &json)
        })
        .await;
    if let Err(e) = r {
        warn!("update: cannot record the check's result: {e}");
    }
}

/// Runs the update task until `stop`.
pub async fn run(t: Task) {
    if let Some(p) = super::signing_key_problem(&t.updater.cfg) {
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
        store
            .read(|c| Ok(CheckFailures::read(c)))
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
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
                        super::request_restart();
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
            .write(|c| crate::outbox::kv_set(c, "update_health_probe", &crate::time::now_utc()));
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
            crate::sd_status::watchdog_ping();
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
                super::request_restart();
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

    /// A table left open on the POS holds updates back for a service day,
    /// not for ever; an order whose first event is unknown always does.
    #[tokio::test]
    async fn an_order_open_longer_than_a_service_day_no_longer_holds_updates() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-02T03:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        store
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO orders(order_id, table_name, state, last_seq) VALUES
                        ('O-forgotten', '7', 'open', 1), ('O-late', '12', 'open', 2),
                        ('O-unknown', '3', 'open', 3), ('O-paid', '4', 'paid', 4);
                     INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
                     VALUES ('e1', 1, 'table.opened', 'O-forgotten', '2026-11-30T12:00:00+01:00', '{}', 1,
                             '2026-11-30T11:00:00.000Z'),
                            ('e2', 2, 'table.opened', 'O-late', '2026-12-01T23:40:00+01:00', '{}', 1,
                             '2026-12-01T22:40:00.000Z'),
                            ('e3', 3, 'order.items_sent', 'O-late', '2026-12-02T00:10:00+01:00', '{}', 1,
                             '2026-12-01T23:10:00.000Z');",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let sixteen = Duration::from_secs(16 * 3600);
        let a = Activity::Store(store.clone())
            .read(now, sixteen)
            .await
            .unwrap();
        assert_eq!((a.open_orders, a.stale_orders), (2, 1), "{a:?}");
        let held = store
            .read(move |c| holding_orders(c, now, sixteen, 10))
            .await
            .unwrap();
        assert_eq!(
            held,
            vec![
                OpenOrder {
                    order_id: "O-late".into(),
                    table: "12".into(),
                    since: Some("2026-12-01T22:40:00.000Z".into()),
                    stale: false
                },
                OpenOrder {
                    order_id: "O-unknown".into(),
                    table: "3".into(),
                    since: None,
                    stale: false
                },
            ]
        );
        // Once O-late is older than a service day too, only the unknown one
        // holds.
        let later = now + chrono::Duration::hours(14);
        let a = Activity::Store(store).read(later, sixteen).await.unwrap();
        assert_eq!((a.open_orders, a.stale_orders), (1, 2));
    }

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

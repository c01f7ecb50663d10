//! The updater: manifest → plan (policy) → download → verify → install,
//! for the daemon and the CLI.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tracing::info;

use super::super::install::{self, Installed};
use super::super::manifest::{self, Entry};
use super::super::policy::{self, Facts, Kind, Overrides, Refusal, Wait};
use super::super::state::{self, Lock, UpdateState};
use super::super::verify::{self, PublicKey};
use super::super::{Paths, TARGET, UpdateError, running_version};
use super::activity::Activity;
use crate::config::{UpdateConfig, Version};

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
        let release = policy::choose(current, TARGET, &failed, &all).and_then(|(c, k)| {
            manifest
                .entry_for(c)
                .cloned()
                .map(|e| (e, k))
                .ok_or_else(|| Refusal::NoReleaseForTarget(TARGET.into()))
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

//! What the running daemon knows about its links, kept current in memory
//! and written to the store's `kv` table (key [`KV_KEY`]) every few seconds
//! so that `zenchef-edge status` — another process, reading the store
//! read-only — can show it.
//!
//! Timestamps are the box clock in UTC (informational: the clock may be
//! wrong right after boot; nothing is ordered by them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::outbox::{self, Store, now_utc};

/// `kv` key holding the JSON of [`HealthState`].
pub const KV_KEY: &str = "daemon_state";

/// The daemon's view of its links (the `daemon` object of `status --json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthState {
    /// Agent version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// When the daemon started (UTC).
    pub started_at: String,
    /// When this record was written (UTC); `status` flags a stale one.
    pub updated_at: String,
    /// The POS side.
    pub pos: PosHealth,
    /// The Zenchef API.
    pub zenchef: ApiHealth,
    /// The Zenchef Pay API (all `None`/false when Pay is disabled).
    pub pay: ApiHealth,
    /// Last successful reservation sync (UTC).
    pub last_reservation_sync: Option<String>,
    /// Where an unreadable store was moved aside at a start (kept for a
    /// technician; its queued events are no longer delivered automatically).
    /// Stays shown until the file is dealt with (kv key [`MOVED_ASIDE_KEY`]).
    #[serde(default)]
    pub store_moved_aside: Option<String>,
}

/// `kv` key remembering a store moved aside, across restarts.
pub const MOVED_ASIDE_KEY: &str = "store_moved_aside";

/// The POS side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PosHealth {
    /// `discovery` or `static`.
    pub mode: String,
    /// A POS was chosen.
    pub found: bool,
    /// mDNS instance name.
    pub instance: Option<String>,
    /// `host:port` of its MQTT broker.
    pub address: Option<String>,
    /// Cashpad app version (TXT `app`).
    pub app_version: Option<String>,
    /// Cashpad Installation ID (TXT `iid`).
    pub installation_id: Option<String>,
    /// Cashpad Server (TXT `server`).
    pub server: Option<String>,
    /// MQTT session up.
    pub mqtt_connected: bool,
    /// Since when (UTC).
    pub connected_since: Option<String>,
    /// Why no POS is used, or the last MQTT error.
    pub problem: Option<String>,
}

/// One remote API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiHealth {
    /// Last successful call (UTC).
    pub last_success: Option<String>,
    /// Last error (UTC time and message).
    pub last_error: Option<String>,
    /// Deliveries paused because the credentials were refused.
    pub credentials_refused: bool,
    /// In an outage (retrying with backoff).
    pub outage: bool,
}

/// Shared handle.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<HealthState>>);

impl Health {
    /// A new record for this process.
    pub fn new(mode: &str) -> Self {
        let h = Health::default();
        h.update(|s| {
            s.version = crate::update::running_version_str().to_string();
            s.pid = std::process::id();
            s.started_at = now_utc();
            s.pos.mode = mode.to_string();
        });
        h
    }

    /// Changes the record.
    pub fn update(&self, f: impl FnOnce(&mut HealthState)) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> HealthState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a successful Zenchef call.
    pub fn zenchef_ok(&self) {
        self.update(|s| {
            s.zenchef.last_success = Some(now_utc());
            s.zenchef.credentials_refused = false;
            s.zenchef.outage = false;
        });
    }

    /// Records a failed Zenchef call.
    pub fn zenchef_error(&self, message: &str, credentials: bool, outage: bool) {
        self.update(|s| {
            s.zenchef.last_error = Some(format!("{} {message}", now_utc()));
            s.zenchef.credentials_refused = credentials;
            s.zenchef.outage = outage;
        });
    }

    /// Writes the record to the store every `every` until cancelled (and
    /// once more at the end).
    pub async fn persist_loop(self, store: Store, every: Duration, cancel: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(every) => false,
            };
            self.update(|s| s.updated_at = now_utc());
            let json = serde_json::to_string(&self.snapshot()).unwrap_or_default();
            if let Err(e) = store.write(move |c| outbox::kv_set(c, KV_KEY, &json)).await {
                tracing::debug!("cannot write the daemon state: {e}");
            }
            if stopping {
                return;
            }
        }
    }
}

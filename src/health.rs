//! What the running daemon knows about its links, kept current in memory
//! and written to the store's `kv` table (key [`KV_KEY`]) every few seconds
//! ([`crate::health_store`]) so that `zenchef-edge status` — another
//! process, reading the store read-only — can show it. Depends on no
//! module of the agent but the clock: the POS, Zenchef and Pay sides
//! write into it without a cycle through the store.
//!
//! Timestamps are the box clock in UTC (informational: the clock may be
//! wrong right after boot; nothing is ordered by them).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::now_utc;

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
    /// Why the daemon's last write to its store failed (`database or disk
    /// is full`, `attempt to write a readonly database`, …), `None` once
    /// one succeeds. Only ever seen live (the page, the fleet report): a
    /// store that cannot be written cannot hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_write_error: Option<String>,
    /// The fleet session (`[fleet]`, docs/fleet.md); left out when the
    /// daemon runs none.
    #[serde(default, skip_serializing_if = "FleetHealth::is_default")]
    pub fleet: FleetHealth,
    /// The outages seen since the history's last sample, however short
    /// (kept in memory only: not in the store, not in `status`).
    #[serde(skip)]
    pub outages_seen: OutagesSeen,
}

/// Which API was in an outage at some moment since the last sample of the
/// [`History`]: set by every [`Health::update`] that leaves an outage on,
/// cleared by the sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutagesSeen {
    /// Zenchef.
    pub zenchef: bool,
    /// Zenchef Pay.
    pub pay: bool,
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
    /// Whether the POS broker let in a client without a password at the
    /// last probe (`crate::pos::anonymous`); `None` before the first.
    pub anonymous_clients: Option<AnonymousClients>,
    /// When that probe answered (UTC).
    pub anonymous_checked_at: Option<String>,
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
            s.version = crate::version::running_version_str().to_string();
            s.pid = std::process::id();
            s.started_at = now_utc();
            s.pos.mode = mode.to_string();
        });
        h
    }

    /// Changes the record (and remembers an outage it leaves on, for the
    /// history: [`OutagesSeen`]).
    pub fn update(&self, f: impl FnOnce(&mut HealthState)) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
        g.outages_seen.zenchef |= g.zenchef.outage;
        g.outages_seen.pay |= g.pay.outage;
    }

    /// The outages seen since the last call (an outage still on counts
    /// for the next period too).
    pub fn take_outages_seen(&self) -> OutagesSeen {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let seen = g.outages_seen;
        g.outages_seen = OutagesSeen {
            zenchef: g.zenchef.outage,
            pay: g.pay.outage,
        };
        seen
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
}

/// `kv` key holding the JSON of [`History`] (the `history` object of
/// `status --json`).
pub const HISTORY_KEY: &str = "history";
/// Samples kept: 6 h of one-minute samples by default
/// (`http.history_sample_s`).
pub const HISTORY_SAMPLES: usize = 360;

/// The last hours of the box, one [`Sample`] per `sample_s` seconds, for
/// the status page's chart and `status --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct History {
    /// Seconds one sample covers (`http.history_sample_s`, default 60).
    pub sample_s: u64,
    /// Oldest first, at most [`HISTORY_SAMPLES`]; a gap in time means the
    /// daemon was not running.
    pub samples: Vec<Sample>,
}

/// One period of the [`History`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Sample {
    /// End of the period (UTC, RFC 3339): when the sample was taken.
    pub at: String,
    /// Events waiting at the end of the period, both lanes
    /// (`counts.queued` + `counts.pay_queued`).
    pub queued: i64,
    /// Deliveries finished during the period, both lanes (growth of
    /// `counts.delivered` + `counts.pay_checks_pushed`).
    pub delivered: i64,
    /// Zenchef was in an outage at some moment of the period.
    pub zenchef_outage: bool,
    /// Zenchef Pay was in an outage at some moment of the period.
    pub pay_outage: bool,
}

impl History {
    /// Adds `s` and drops what is older than [`HISTORY_SAMPLES`] samples
    /// before `now`.
    pub fn push(&mut self, s: Sample, now: DateTime<Utc>) {
        self.samples.push(s);
        self.trim(now);
    }

    /// Keeps the samples of the last [`HISTORY_SAMPLES`] periods before
    /// `now` (none from the future: the clock was set back), at most
    /// [`HISTORY_SAMPLES`] of them.
    pub fn trim(&mut self, now: DateTime<Utc>) {
        let span =
            chrono::Duration::seconds((self.sample_s.max(1) * HISTORY_SAMPLES as u64) as i64);
        let slack = chrono::Duration::seconds(self.sample_s.max(1) as i64);
        self.samples.retain(|s| {
            DateTime::parse_from_rfc3339(&s.at).is_ok_and(|t| {
                let t = t.with_timezone(&Utc);
                t > now - span && t <= now + slack
            })
        });
        let extra = self.samples.len().saturating_sub(HISTORY_SAMPLES);
        self.samples.drain(..extra);
    }
}

/// What a probe of the POS broker without a password found
/// (`crate::pos::anonymous`; `pos.anonymous_clients` of `status --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousClients {
    /// The broker accepted a client without a password: a problem.
    Accepted,
    /// The broker refused it (CONNACK "bad user name or password" or "not
    /// authorised", or it closed the connection during the login): as it
    /// must.
    Refused,
    /// No answer could tell (unreachable, timeout, TLS, another refusal):
    /// not a problem, nothing is known.
    Unknown,
}

impl AnonymousClients {
    /// `accepted`, `refused` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnonymousClients::Accepted => "accepted",
            AnonymousClients::Refused => "refused",
            AnonymousClients::Unknown => "unknown",
        }
    }
}

/// The fleet session (`crate::fleet`) as the daemon last saw it: the
/// `fleet` object of the daemon record, and (with `state` `disabled` or `unknown` filled in by
/// `status`) the `fleet` object of `status --json`.
///
/// `state`: `connecting` (no session yet), `connected`, `refused` (the
/// broker refused the login or the box's certificate), `tls_error` (the
/// broker's certificate is not trusted, or another TLS failure),
/// `unreachable` (DNS, TCP, timeout), `misconfigured` (a file of `[fleet]`
/// cannot be read or used); in `status` also `disabled` (no `[fleet]`)
/// and `unknown` (no fresh daemon record). Times are the box clock, UTC.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FleetHealth {
    /// See the type's documentation; empty in a record of a daemon that
    /// runs no fleet session.
    pub state: String,
    /// The broker, `mqtts://host:port` (no credential).
    pub broker: Option<String>,
    /// The topic the box publishes on (`PREFIX/<device_id>/status`).
    pub topic: Option<String>,
    /// Since when the session is up (UTC).
    pub connected_since: Option<String>,
    /// When the last report was handed to the broker (UTC).
    pub last_published_at: Option<String>,
    /// Reports published since the daemon started.
    pub published: u64,
    /// The last failure (no secret), `None` before any.
    pub last_error: Option<String>,
    /// When it happened (UTC).
    pub last_error_at: Option<String>,
}

impl FleetHealth {
    /// Whether this is the default record (a daemon without a fleet
    /// session): left out of the daemon record.
    pub fn is_default(&self) -> bool {
        *self == FleetHealth::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: DateTime<Utc>, ago_s: i64) -> String {
        (now - chrono::Duration::seconds(ago_s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn the_history_keeps_the_last_samples_and_none_from_the_future() {
        let now = Utc::now();
        let mut h = History {
            sample_s: 60,
            samples: Vec::new(),
        };
        for i in (0..400).rev() {
            h.push(
                Sample {
                    at: at(now, i * 60),
                    queued: i,
                    ..Default::default()
                },
                now,
            );
        }
        assert_eq!(h.samples.len(), HISTORY_SAMPLES);
        assert_eq!(h.samples.last().unwrap().queued, 0, "the newest kept");
        assert_eq!(h.samples[0].queued, HISTORY_SAMPLES as i64 - 1);
        h.samples.push(Sample {
            at: at(now, -3600),
            ..Default::default()
        });
        h.samples.push(Sample {
            at: "not a time".into(),
            ..Default::default()
        });
        h.trim(now);
        assert_eq!(h.samples.len(), HISTORY_SAMPLES, "the clock was set back");
    }
}

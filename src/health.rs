//! What the running daemon knows about its links, kept current in memory
//! and written to the store's `kv` table (key [`KV_KEY`]) every few seconds
//! so that `zenchef-edge status` — another process, reading the store
//! read-only — can show it.
//!
//! Timestamps are the box clock in UTC (informational: the clock may be
//! wrong right after boot; nothing is ordered by them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::outbox::{self, Store};
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
    fn take_outages_seen(&self) -> OutagesSeen {
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

    /// Writes the record to the store every `every` until cancelled (and
    /// once more at the end); in the same job, closes a [`Sample`] of the
    /// [`History`] every `sample` (the queue and counters read from the
    /// store, the outage flags seen at every write since the last sample)
    /// and writes the history beside the record (`kv` key
    /// [`HISTORY_KEY`]). The history left by a previous run is carried on
    /// when it has the same sample length.
    pub async fn persist_loop(
        self,
        store: Store,
        every: Duration,
        sample: Duration,
        cancel: CancellationToken,
    ) {
        let sample = sample.max(Duration::from_secs(1));
        let sample_s = sample.as_secs();
        let (previous, delivered) = store
            .kv_value_and_counts(HISTORY_KEY)
            .await
            .map(|(h, counts)| (h, Some(delivered_total(&counts))))
            .unwrap_or_default();
        let mut history = previous
            .and_then(|h| serde_json::from_str::<History>(&h).ok())
            .filter(|h| h.sample_s == sample_s)
            .unwrap_or(History {
                sample_s,
                samples: Vec::new(),
            });
        history.trim(Utc::now());
        let mut sampler = Sampler {
            delivered,
            zenchef_outage: false,
            pay_outage: false,
        };
        let mut next_sample = tokio::time::Instant::now() + sample;
        loop {
            let wait =
                every.min(next_sample.saturating_duration_since(tokio::time::Instant::now()));
            let stopping = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(wait) => false,
            };
            self.update(|s| s.updated_at = now_utc());
            let json = serde_json::to_string(&self.snapshot()).unwrap_or_default();
            let now = tokio::time::Instant::now();
            let sampling = !stopping && now >= next_sample;
            let r = if sampling {
                let seen = self.take_outages_seen();
                sampler.zenchef_outage = seen.zenchef;
                sampler.pay_outage = seen.pay;
                // Behind by more than a sample (a suspended box): start
                // the next one from now rather than catching up.
                next_sample = if now >= next_sample + sample {
                    now + sample
                } else {
                    next_sample + sample
                };
                let mut h = history.clone();
                let mut taken = sampler.clone();
                let r = store
                    .set_kv_then_from_counts(KV_KEY, json, HISTORY_KEY, move |counts| {
                        let s = taken.take(counts);
                        h.push(s, Utc::now());
                        (serde_json::to_string(&h).unwrap_or_default(), (h, taken))
                    })
                    .await;
                r.map(|(h, taken)| {
                    history = h;
                    sampler = taken;
                })
            } else {
                store.set_kv_value(KV_KEY, json).await
            };
            self.note_store_write(r.map(drop), &store);
            if stopping {
                return;
            }
        }
    }
}

impl Health {
    /// Keeps the outcome of the record's last write to the store in
    /// [`HealthState::store_write_error`]; a line when writes start
    /// failing, one when they work again.
    fn note_store_write(&self, r: Result<(), outbox::StoreError>, store: &Store) {
        let was = self.snapshot().store_write_error;
        match r {
            Err(e) => {
                let why = e.to_string();
                // INFO: intake's ERROR already says that events cannot be
                // stored; this line says why the record goes stale.
                if was.is_none() {
                    tracing::info!(
                        "cannot write to the store ({why}): is its disk full or read-only? df -h {}",
                        store
                            .path()
                            .parent()
                            .map_or_else(String::new, |d| d.display().to_string())
                    );
                }
                self.update(|s| s.store_write_error = Some(why));
            }
            Ok(()) if was.is_some() => {
                tracing::info!("the store can be written again");
                self.update(|s| s.store_write_error = None);
            }
            Ok(()) => {}
        }
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

/// What the sampler carries from one sample to the next.
#[derive(Debug, Clone)]
struct Sampler {
    /// Deliveries counted at the last sample (`None`: unknown).
    delivered: Option<i64>,
    zenchef_outage: bool,
    pay_outage: bool,
}

impl Sampler {
    /// Closes the period: reads the queue and the counters, answers the
    /// sample and starts the next period.
    fn take(&mut self, counts: &outbox::Counts) -> Sample {
        let total = delivered_total(counts);
        let delivered = self.delivered.map(|d| (total - d).max(0)).unwrap_or(0);
        let s = Sample {
            at: now_utc(),
            queued: counts.queued + counts.pay_queued,
            delivered,
            zenchef_outage: self.zenchef_outage,
            pay_outage: self.pay_outage,
        };
        self.delivered = Some(total);
        self.zenchef_outage = false;
        self.pay_outage = false;
        s
    }
}

/// Deliveries of both lanes so far.
fn delivered_total(counts: &outbox::Counts) -> i64 {
    counts.delivered + counts.pay_checks_pushed
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

    /// The real loop on a real store: samples every second, an outage
    /// seen between two ticks is in the next sample, deliveries are the
    /// counters' growth.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_persist_loop_samples_the_queue_deliveries_and_outages() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(|c| outbox::bump(c, "delivered", 5))
            .await
            .unwrap();
        let health = Health::new("static");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(health.clone().persist_loop(
            store.clone(),
            Duration::from_millis(200),
            Duration::from_secs(1),
            cancel.clone(),
        ));
        let read = |store: Store| async move {
            store
                .read(|c| outbox::kv_get(c, HISTORY_KEY))
                .await
                .unwrap()
                .and_then(|s| serde_json::from_str::<History>(&s).ok())
                .unwrap_or_default()
        };
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // An outage of 30 ms, shorter than the loop's tick, and 7
        // deliveries.
        health.update(|s| s.zenchef.outage = true);
        store
            .write(|c| {
                outbox::bump(c, "delivered", 4)?;
                outbox::bump(c, "pay_checks_pushed", 3)
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        health.update(|s| s.zenchef.outage = false);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let h = read(store.clone()).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(h.sample_s, 1);
        assert!(h.samples.len() >= 3, "{h:?}");
        assert_eq!(h.samples[0].delivered, 0, "counted from the start: {h:?}");
        assert!(!h.samples[0].zenchef_outage, "{h:?}");
        let out: Vec<&Sample> = h.samples.iter().filter(|s| s.zenchef_outage).collect();
        assert_eq!(out.len(), 1, "the outage is in one sample: {h:?}");
        assert_eq!(out[0].delivered, 7, "{h:?}");
        assert_eq!(h.samples.iter().map(|s| s.delivered).sum::<i64>(), 7);
        assert!(h.samples.iter().all(|s| !s.pay_outage && s.queued == 0));

        // A restart carries the history on.
        let before = h.samples.len();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Health::new("static").persist_loop(
            store.clone(),
            Duration::from_millis(200),
            Duration::from_secs(1),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let h2 = read(store.clone()).await;
        cancel.cancel();
        task.await.unwrap();
        assert!(h2.samples.len() > before, "{h2:?}");
        assert_eq!(h2.samples[..before], h.samples[..before]);
    }
}

//! The daemon's fleet session (docs/fleet.md "When a box reports"): a
//! second MQTT session, to the group's broker, that shares nothing with
//! the POS session — its own client, event loop, task and backoff.
//!
//! - On every CONNACK it publishes the latest report, `online: true`.
//! - Every [`CHECK_EVERY`] (more when the store is slow to read:
//!   `check_pause`) it builds a report from the store (read-only, on a
//!   blocking thread: intake and delivery never wait for it) and
//!   publishes it when something material changed, at most once per
//!   [`DEBOUNCE`], and at least every `[fleet] interval_s`.
//! - Disconnected, it keeps only the latest report: nothing is queued,
//!   and what rumqttc kept for a resend is dropped at each failure, so a
//!   broker that is slow or gone costs one report of memory.
//! - It subscribes to nothing: nothing is accepted from the fleet side.
//! - Its failures are recorded in the daemon record ([`FleetHealth`]) for
//!   `status` and `doctor`, and logged once per kind of failure.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::FleetHealth;
use super::connect::{self, FailureKind};
use super::report::{Report, Will};
use crate::config::{Config, FleetConfig};
use crate::health::Health;
use crate::retry::{Backoff, Retry};
use crate::time::now_utc;

/// How often a report is built and compared with the last one sent.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// At most one report per this much time for changes (the newest state
/// goes out once it has passed).
pub const DEBOUNCE: Duration = Duration::from_secs(10);
/// Reconnect backoff: 1 s doubling to 60 s, with jitter.
pub const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// The first connection waits this long after the start, so that the
/// first report reads the daemon record of this start (written every 2 s),
/// not the last one of the process before.
pub const FIRST_AFTER: Duration = Duration::from_secs(3);
/// The files of `[fleet]` are read again this often while they cannot be
/// used.
pub const SETUP_RETRY: Duration = Duration::from_secs(60);

/// The fleet task's parts.
pub struct Fleet {
    /// The whole configuration (the status facts need it).
    pub config: Arc<Config>,
    /// `[fleet]`.
    pub fleet: FleetConfig,
    /// The box's id in the topic.
    pub device_id: String,
    /// The daemon record, where the session's state is kept.
    pub health: Health,
}

/// The pause after a check that took `took`: [`CHECK_EVERY`], or ten
/// times the check on a store slow to read (an SD card, years of orders),
/// so that the report never takes more than a tenth of a core.
fn check_pause(took: Duration) -> Duration {
    CHECK_EVERY.max(took.saturating_mul(10))
}

/// What the loop knows about what it sent.
#[derive(Default)]
struct Sent {
    /// The latest report built (sent or not).
    latest: Option<Report>,
    /// `material()` of the last report handed to the client.
    material: Option<Report>,
    /// When.
    at: Option<Instant>,
}

impl Sent {
    /// Whether the latest report should go out now.
    fn due(&self, now: Instant, interval: Duration) -> bool {
        let Some(latest) = &self.latest else {
            return false;
        };
        match self.at {
            None => true,
            Some(at) => {
                let since = now.saturating_duration_since(at);
                since >= interval
                    || (since >= DEBOUNCE && self.material.as_ref() != Some(&latest.material()))
            }
        }
    }
}

impl Fleet {
    /// The topic: `PREFIX/<device_id>/status`.
    pub fn topic(&self) -> String {
        format!("{}/{}/status", self.fleet.topic_prefix, self.device_id)
    }

    fn record(&self, f: impl FnOnce(&mut FleetHealth)) {
        self.health.update(|s| f(&mut s.fleet));
    }

    /// Runs until `stop`; publishes `online: false` on the way out when
    /// the session is up.
    pub async fn run(self, stop: CancellationToken) {
        let topic = self.topic();
        let broker = self.fleet.broker.to_string();
        self.record(|f| {
            *f = FleetHealth {
                state: "connecting".into(),
                broker: Some(broker.clone()),
                topic: Some(topic.clone()),
                ..Default::default()
            }
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FIRST_AFTER) => {}
        }
        let client_id = format!("zenchef-edge-{}", self.device_id);
        let Some(mut opts) = self.readable_options(&client_id, &broker, &stop).await else {
            return;
        };
        let restaurant = self.config.zenchef.restaurant_id.clone();
        let mut will = Will::new(&self.device_id, &restaurant, Utc::now());
        opts.set_last_will(last_will(&topic, &will));
        info!("fleet: reporting to {broker} on {topic}");
        let (client, mut eventloop) = AsyncClient::new(opts, 4);
        let mut sent = Sent::default();
        let mut connected = false;
        let mut retry = Retry::new(RECONNECT);
        let mut last_kind: Option<FailureKind> = None;
        let mut next_check = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                // Only while connected: a connection attempt inside
                // poll() must never be cut by a check (dropping poll()
                // mid-handshake loses the attempt); the report is built
                // afresh at each CONNACK anyway.
                _ = tokio::time::sleep_until(next_check), if connected => {
                    let started = Instant::now();
                    sent.latest = self.build().await.or(sent.latest.take());
                    next_check = Instant::now() + check_pause(started.elapsed());
                    if connected && sent.due(Instant::now(), self.fleet.interval) {
                        self.publish(&client, &topic, &mut sent);
                    }
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        retry.reset();
                        if last_kind.take().is_some() {
                            info!("fleet: reporting to {broker} again");
                        }
                        let now = now_utc();
                        self.record(|f| {
                            f.state = "connected".into();
                            f.connected_since = Some(now);
                        });
                        sent.latest = self.build().await.or(sent.latest.take());
                        next_check = Instant::now() + CHECK_EVERY;
                        sent.at = None;
                        self.publish(&client, &topic, &mut sent);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let now = now_utc();
                        self.record(|f| {
                            f.last_published_at = Some(now);
                            f.published += 1;
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        connected = false;
                        // Latest state only: what rumqttc kept to resend
                        // is stale by the next connection.
                        eventloop.pending.clear();
                        self.said(&e, &mut last_kind, &broker);
                        let wait = retry.failed(None).mul_f64(crate::retry::random_jitter())
                            .min(RECONNECT.cap);
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        // A refusal or a TLS failure may be fixed by new
                        // files (a renewed certificate): read them again.
                        if matches!(last_kind, Some(FailureKind::Refused | FailureKind::TlsError))
                            && let Some(fresh) = self.options_now(&client_id).await
                        {
                            eventloop.mqtt_options = fresh;
                        }
                        // The next session's will says when it starts.
                        will = Will::new(&self.device_id, &restaurant, Utc::now());
                        eventloop.mqtt_options.set_last_will(last_will(&topic, &will));
                    }
                }
            }
        }
        if connected {
            goodbye(&client, &mut eventloop, &topic, &will).await;
        }
    }

    /// The connection's options once the `[fleet]` files can be used
    /// (read again every [`SETUP_RETRY`] until then); `None` at `stop`.
    async fn readable_options(
        &self,
        client_id: &str,
        broker: &str,
        stop: &CancellationToken,
    ) -> Option<rumqttc::MqttOptions> {
        loop {
            match self.options_result(client_id).await {
                Ok(o) => return Some(o),
                Err(e) => {
                    warn!(
                        "fleet: cannot report to {broker}: {e}; the restaurant is not affected \
                         (read again every {} s)",
                        SETUP_RETRY.as_secs()
                    );
                    self.failed("misconfigured", e);
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(SETUP_RETRY) => {}
                    }
                }
            }
        }
    }

    /// [`connect::options`] on a blocking thread (it reads files: a slow
    /// mount must not hold a runtime worker).
    async fn options_result(&self, client_id: &str) -> Result<rumqttc::MqttOptions, String> {
        let fleet = self.fleet.clone();
        let id = client_id.to_string();
        match tokio::task::spawn_blocking(move || connect::options(&fleet, &id)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reading the [fleet] files: {e}")),
        }
    }

    /// The options with the files as they are now; `None` (the old ones
    /// stay) when they cannot be used, said in the log.
    async fn options_now(&self, client_id: &str) -> Option<rumqttc::MqttOptions> {
        match self.options_result(client_id).await {
            Ok(o) => Some(o),
            Err(e) => {
                warn!("fleet: the [fleet] files cannot be used now: {e}");
                None
            }
        }
    }

    /// Records a failed connection, and logs it once per kind of failure
    /// in a row (then at debug).
    fn said(
        &self,
        e: &rumqttc::ConnectionError,
        last_kind: &mut Option<FailureKind>,
        broker: &str,
    ) {
        let kind = connect::classify(e);
        let text = connect::describe(e);
        if *last_kind != Some(kind) {
            warn!(
                "fleet: cannot report to {broker} ({}): {text}; the restaurant is not affected, \
                 retrying",
                kind.state()
            );
        } else {
            debug!("fleet: {text}");
        }
        *last_kind = Some(kind);
        self.failed(kind.state(), text);
    }

    fn failed(&self, state: &str, text: String) {
        let now = now_utc();
        self.record(|f| {
            f.state = state.into();
            f.connected_since = None;
            f.last_error = Some(text);
            f.last_error_at = Some(now);
        });
    }

    /// A fresh report from the status facts (`None` if the blocking
    /// thread could not run).
    async fn build(&self) -> Option<Report> {
        let config = self.config.clone();
        let device = self.device_id.clone();
        let interval_s = self.fleet.interval.as_secs();
        // The daemon's own record, live: it runs even when its store
        // cannot be written (the stored record then goes stale).
        let live = self.health.snapshot();
        tokio::task::spawn_blocking(move || {
            let now = Utc::now();
            let status = crate::status::read_live(&config, now, &live);
            let mut r = Report::from_status(&status, &device, &config.zenchef.restaurant_id, now);
            r.interval_s = interval_s;
            r
        })
        .await
        .ok()
    }

    /// Hands the latest report to the client, without waiting: when its
    /// small queue is full (a broker that stopped acknowledging) nothing
    /// is added, and the next check tries again with a newer report.
    fn publish(&self, client: &AsyncClient, topic: &str, sent: &mut Sent) {
        let Some(latest) = &sent.latest else {
            return;
        };
        match client.try_publish(topic, QoS::AtLeastOnce, true, latest.to_json()) {
            Ok(()) => {
                sent.material = Some(latest.material());
                sent.at = Some(Instant::now());
            }
            Err(e) => debug!("fleet: report not handed over now: {e}"),
        }
    }
}

/// The will of a session, retained, QoS 1.
fn last_will(topic: &str, will: &Will) -> LastWill {
    LastWill::new(topic, will.to_json(), QoS::AtLeastOnce, true)
}

/// A clean stop: the offline message (a DISCONNECT means the broker does
/// not publish the will), then the DISCONNECT, for at most 2 s.
async fn goodbye(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    topic: &str,
    will: &Will,
) {
    let _ = client.try_publish(topic, QoS::AtLeastOnce, true, will.to_json());
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(queued: i64, at: &str) -> Report {
        let s = crate::status::tests::sample(Utc::now());
        let mut r = Report::from_status(&s, "box-1", "r-1", Utc::now());
        r.queue.queued = queued;
        r.reported_at = at.into();
        r
    }

    #[test]
    fn a_slow_check_spaces_the_checks() {
        assert_eq!(check_pause(Duration::from_millis(20)), CHECK_EVERY);
        assert_eq!(check_pause(Duration::from_secs(2)), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_goes_out_after_the_debounce_and_the_rest_at_the_interval() {
        let interval = Duration::from_secs(300);
        let t0 = Instant::now();
        let mut sent = Sent::default();
        assert!(!sent.due(t0, interval), "nothing built yet");
        sent.latest = Some(report(1, "a"));
        assert!(sent.due(t0, interval), "the first report goes at once");
        sent.material = sent.latest.as_ref().map(Report::material);
        sent.at = Some(t0);
        // Only the time moved: not material.
        sent.latest = Some(report(1, "b"));
        assert!(!sent.due(t0 + Duration::from_secs(60), interval));
        // A change, before and after the debounce.
        sent.latest = Some(report(2, "c"));
        assert!(!sent.due(t0 + Duration::from_secs(9), interval));
        assert!(sent.due(t0 + DEBOUNCE, interval));
        // No change: only at the interval.
        sent.latest = Some(report(1, "d"));
        assert!(!sent.due(t0 + Duration::from_secs(299), interval));
        assert!(sent.due(t0 + interval, interval));
    }
}

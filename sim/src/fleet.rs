//! The fleet side of the agent (issue 16): boxes reporting their state to a
//! group's MQTT broker, written from the fleet reporting contract only (the
//! message `PREFIX/<device_id>/status`, schema 1), never from the agent's
//! types.
//!
//! - [`SimBox`]: one simulated box and the schema-1 messages it publishes
//!   (the full report with `"online": true`, and its last will with
//!   `"online": false`); [`varied_fleet`] makes many, in varied states
//!   (healthy, money problems, outages, queues, dead boxes whose will
//!   stays).
//! - [`publish_box`] / [`publish_fleet`]: MQTT clients (rumqttc, MQTT
//!   3.1.1, clean session) that publish one retained QoS 1 report each, the
//!   way a box does, and go away cleanly or die (the broker then publishes
//!   the will).
//! - [`FleetWatcher`]: a subscriber of `PREFIX/+/status` (a support
//!   client) that records every message, retained or live, and the latest
//!   per topic, for assertions.
//! - [`SilentListener`]: a TCP port that accepts and never answers: the
//!   worst broker for a client (a TLS handshake that never ends).
//!
//! TLS is rustls with the ring provider ([`install_crypto`]); everything
//! connects to `127.0.0.1` only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rumqttc::{
    AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::certs::CertPem;
use crate::util::LOOPBACK;

/// The problem names a report may carry, most important first (the order
/// `fleet-view` sorts by).
pub const PROBLEMS: &[&str] = &[
    "agent_not_running",
    "store_not_writable",
    "payments_need_person",
    "orders_need_attention",
    "zenchef_credentials",
    "zenchef_outage",
    "pos_not_found",
    "pos_disconnected",
    "table_names_differ",
    "dead_events",
    "old_queue",
    "pay_credentials",
    "pay_outage",
    "pay_dead",
    "store_missing",
    "store_unreadable",
    "store_incompatible",
    "store_replaced",
    "updates_refused",
    "updates_failing",
];

/// The default topic prefix of the contract.
pub const DEFAULT_PREFIX: &str = "zenchef-edge";

/// Largest MQTT packet the fleet clients take (a report is about 1 KiB;
/// a test publishes one over the 16 MiB `fleet-view` reads).
const MAX_PACKET_BYTES: usize = 64 * 1024 * 1024;

/// Installs rustls' ring provider as the process default (the fleet
/// clients' TLS). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// RFC 3339 UTC with a `Z` and whole seconds, as the reports carry times.
pub fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The status topic of `device_id` under `prefix`.
pub fn status_topic(prefix: &str, device_id: &str) -> String {
    format!("{prefix}/{device_id}/status")
}

/// One simulated box and what it reports. Every field maps to one key of
/// the schema-1 message.
#[derive(Debug, Clone, PartialEq)]
pub struct SimBox {
    /// `device_id` (also the topic level).
    pub device_id: String,
    /// `restaurant_id`.
    pub restaurant_id: String,
    /// `version` (and `update.current`).
    pub version: String,
    /// `started_at`.
    pub started_at: DateTime<Utc>,
    /// `reported_at`; `uptime_s` is `reported_at - started_at`.
    pub reported_at: DateTime<Utc>,
    /// `session_started_at` of the will: when its session began.
    pub session_started_at: DateTime<Utc>,
    /// `pos.state`: `connected` | `found` | `not_found` | `unknown`.
    pub pos_state: String,
    /// `zenchef.state`: `ok` | `outage` | `credentials_refused` | `unknown`.
    pub zenchef_state: String,
    /// `pay.state`: the same or `disabled`.
    pub pay_state: String,
    /// `queue.queued`.
    pub queued: u64,
    /// `queue.inflight`.
    pub inflight: u64,
    /// `queue.dead`.
    pub dead: u64,
    /// `queue.pay_queued`.
    pub pay_queued: u64,
    /// `queue.pay_dead`.
    pub pay_dead: u64,
    /// `queue.rejected`.
    pub rejected: u64,
    /// `queue.oldest_queued_age_s` (`None` with nothing queued).
    pub oldest_queued_age_s: Option<u64>,
    /// `payments_needing_person`.
    pub payments_needing_person: u64,
    /// `orders_needing_attention`.
    pub orders_needing_attention: u64,
    /// `problems`, most important first.
    pub problems: Vec<String>,
    /// `update.rolled_back`.
    pub rolled_back: Vec<String>,
    /// The box died after reporting: what stays retained is its will
    /// (`"online": false`).
    pub dead_box: bool,
}

impl SimBox {
    /// A healthy box: POS connected, Zenchef ok, Zenchef Pay disabled,
    /// nothing queued, no problem; reported at `reported_at`, up for an
    /// hour.
    pub fn healthy(device_id: &str, restaurant_id: &str, reported_at: DateTime<Utc>) -> SimBox {
        let started_at = reported_at - chrono::Duration::hours(1);
        SimBox {
            device_id: device_id.to_string(),
            restaurant_id: restaurant_id.to_string(),
            version: "0.1.0".into(),
            started_at,
            reported_at,
            session_started_at: started_at + chrono::Duration::seconds(2),
            pos_state: "connected".into(),
            zenchef_state: "ok".into(),
            pay_state: "disabled".into(),
            queued: 0,
            inflight: 0,
            dead: 0,
            pay_queued: 0,
            pay_dead: 0,
            rejected: 0,
            oldest_queued_age_s: None,
            payments_needing_person: 0,
            orders_needing_attention: 0,
            problems: Vec::new(),
            rolled_back: Vec::new(),
            dead_box: false,
        }
    }

    /// Its status topic under `prefix`.
    pub fn topic(&self, prefix: &str) -> String {
        status_topic(prefix, &self.device_id)
    }

    /// `queue.queued + queue.pay_queued`: the QUEUE column of `fleet-view`.
    pub fn queue_total(&self) -> u64 {
        self.queued + self.pay_queued
    }

    /// The full report (`"online": true`), every key of schema 1.
    pub fn message(&self) -> Value {
        let at = |ok: bool, t: DateTime<Utc>| if ok { json!(utc(t)) } else { Value::Null };
        let zenchef_ok = self.zenchef_state == "ok";
        let pay_on = self.pay_state != "disabled";
        json!({
            "schema": 1,
            "online": true,
            "device_id": self.device_id,
            "restaurant_id": self.restaurant_id,
            "version": self.version,
            "reported_at": utc(self.reported_at),
            "started_at": utc(self.started_at),
            "uptime_s": (self.reported_at - self.started_at).num_seconds().max(0),
            "pos": {
                "state": self.pos_state,
                "app_version": if self.pos_state == "connected" { json!("2.0.18") } else { Value::Null },
                "installation_id": if self.pos_state == "connected" || self.pos_state == "found" {
                    json!(format!("CP-{}", self.restaurant_id))
                } else {
                    Value::Null
                },
            },
            "zenchef": {
                "state": self.zenchef_state,
                "last_success": at(true, self.reported_at - chrono::Duration::seconds(if zenchef_ok { 3 } else { 900 })),
                "last_error_at": at(!zenchef_ok, self.reported_at - chrono::Duration::seconds(4)),
            },
            "pay": {
                "state": self.pay_state,
                "last_success": at(pay_on, self.reported_at - chrono::Duration::seconds(5)),
                "last_error_at": at(pay_on && self.pay_state != "ok", self.reported_at - chrono::Duration::seconds(6)),
            },
            "queue": {
                "queued": self.queued,
                "inflight": self.inflight,
                "dead": self.dead,
                "pay_queued": self.pay_queued,
                "pay_dead": self.pay_dead,
                "rejected": self.rejected,
                "oldest_queued_age_s": self.oldest_queued_age_s,
            },
            "payments_needing_person": self.payments_needing_person,
            "orders_needing_attention": self.orders_needing_attention,
            "store": {"state": "ok", "file_bytes": 4_096_000 + 4096 * self.queued, "wal_bytes": 0},
            "update": {
                "current": self.version,
                "pending": null,
                "available": null,
                "last_result": null,
                "rolled_back": self.rolled_back,
            },
            "problems": self.problems,
        })
    }

    /// Its last will (`"online": false`): the keys of the contract's will.
    pub fn will(&self) -> Value {
        json!({
            "schema": 1,
            "online": false,
            "device_id": self.device_id,
            "restaurant_id": self.restaurant_id,
            "version": self.version,
            "session_started_at": utc(self.session_started_at),
        })
    }

    /// The message that stays retained once it has published: the will for
    /// a dead box, else the report.
    pub fn retained(&self) -> Value {
        if self.dead_box {
            self.will()
        } else {
            self.message()
        }
    }
}

/// `n` boxes in varied states (deterministic from `seed`), device ids
/// `sim-<seed>-<i>` (`i` on 3 digits), restaurants `7<i>`, reported within
/// the last minutes before `now`:
/// - about 2 % need a person for a payment, 2 % have orders needing
///   attention (the money problems; their queues are small);
/// - about 10 % died (their will stays retained);
/// - about 10 % in a Zenchef outage (a queue), 5 % with the POS
///   disconnected, 5 % not found, 3 % with dead events and an old queue,
///   2 % with Zenchef's credentials refused, 3 % with Zenchef Pay in an
///   outage, 2 % with updates failing (a version rolled back);
/// - the rest healthy, some with a short queue.
///
/// Each box's problems are listed in the contract's order, its states
/// match its problems.
pub fn varied_fleet(n: usize, seed: u64, now: DateTime<Utc>) -> Vec<SimBox> {
    let mut rng = seed ^ 0xf1ee_7000_0000_0001;
    let mut next = move || {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| {
            let r = next();
            let reported = now - chrono::Duration::seconds((r % 240) as i64 + 5);
            let mut b =
                SimBox::healthy(&format!("sim-{seed}-{i:03}"), &format!("7{i:05}"), reported);
            if r % 3 == 0 {
                b.version = "0.0.9".into();
            }
            let queue = (next() % 40) + 1;
            match (next() % 100) as u32 {
                0..=1 => {
                    b.payments_needing_person = 1 + next() % 2;
                    b.pay_state = "ok".into();
                    b.problems = vec!["payments_need_person".into()];
                }
                2..=3 => {
                    b.orders_needing_attention = 1;
                    b.queued = 1;
                    b.oldest_queued_age_s = Some(300);
                    b.problems = vec!["orders_need_attention".into()];
                }
                4..=13 => b.dead_box = true,
                14..=23 => {
                    b.zenchef_state = "outage".into();
                    b.queued = queue;
                    b.oldest_queued_age_s = Some(60 + queue * 20);
                    b.problems = vec!["zenchef_outage".into()];
                }
                24..=28 => {
                    b.pos_state = "found".into();
                    b.problems = vec!["pos_disconnected".into()];
                }
                29..=33 => {
                    b.pos_state = "not_found".into();
                    b.problems = vec!["pos_not_found".into()];
                }
                34..=36 => {
                    b.dead = 1 + next() % 3;
                    b.queued = queue;
                    b.oldest_queued_age_s = Some(7200);
                    b.problems = vec!["dead_events".into(), "old_queue".into()];
                }
                37..=38 => {
                    b.zenchef_state = "credentials_refused".into();
                    b.queued = queue;
                    b.oldest_queued_age_s = Some(400);
                    b.problems = vec!["zenchef_credentials".into()];
                }
                39..=41 => {
                    b.pay_state = "outage".into();
                    b.pay_queued = queue;
                    b.problems = vec!["pay_outage".into()];
                }
                42..=43 => {
                    b.rolled_back = vec!["0.1.1".into()];
                    b.problems = vec!["updates_failing".into()];
                }
                44..=60 => {
                    b.queued = next() % 3;
                    if b.queued > 0 {
                        b.inflight = 1;
                        b.oldest_queued_age_s = Some(2);
                    }
                }
                _ => {}
            }
            b
        })
        .collect()
}

/// How a fleet client reaches the broker.
#[derive(Clone)]
pub struct FleetEndpoint {
    /// Port on `127.0.0.1`.
    pub port: u16,
    /// TLS: the CA(s) the broker's certificate must chain to, PEM, and the
    /// client's certificate; `None`: plain MQTT.
    pub tls: Option<ClientTls>,
    /// MQTT username and password.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for FleetEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("FleetEndpoint")
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// The TLS side of a [`FleetEndpoint`].
#[derive(Clone)]
pub struct ClientTls {
    /// PEM CA certificate(s) the broker's certificate must chain to.
    pub ca_pem: String,
    /// The client certificate and key, PEM.
    pub client: Option<CertPem>,
}

impl FleetEndpoint {
    /// Plain MQTT with a username and password.
    pub fn plain(port: u16, user: &str, password: &str) -> FleetEndpoint {
        FleetEndpoint {
            port,
            tls: None,
            credentials: Some((user.to_string(), password.to_string())),
        }
    }

    /// MQTT over TLS trusting `ca_pem`, with an optional client certificate.
    pub fn tls(port: u16, ca_pem: &str, client: Option<&CertPem>) -> FleetEndpoint {
        FleetEndpoint {
            port,
            tls: Some(ClientTls {
                ca_pem: ca_pem.to_string(),
                client: client.cloned(),
            }),
            credentials: None,
        }
    }

    fn options(&self, client_id: &str) -> MqttOptions {
        let mut opts = MqttOptions::new(client_id, LOOPBACK.to_string(), self.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some((u, p)) = &self.credentials {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = &self.tls {
            install_crypto();
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: tls.ca_pem.as_bytes().to_vec(),
                alpn: None,
                client_auth: tls
                    .client
                    .as_ref()
                    .map(|c| (c.cert.as_bytes().to_vec(), c.key.as_bytes().to_vec())),
            }));
        }
        opts
    }
}

/// How a one-shot publisher leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// DISCONNECT: the broker drops the will.
    Disconnect,
    /// The TCP connection just closes (a box losing power): the broker
    /// publishes the will.
    Die,
}

/// Connects as `client_id` (with `will`, retained QoS 1, when given),
/// publishes `payload` retained QoS 1 on `topic`, waits for the PUBACK,
/// then leaves as `leave` says. Fails on a refused connection, a TLS
/// failure or after 15 s.
///
/// A broker that denies the topic by its ACL drops the message; MQTT
/// 3.1.1 has no way to say so, and mosquitto 2.0 answers PUBACK and closes
/// the connection: this then fails or succeeds depending on which the
/// client reads first. Success means only that the broker took the packet.
pub async fn publish_retained(
    ep: &FleetEndpoint,
    client_id: &str,
    topic: &str,
    payload: &[u8],
    will: Option<(&str, &[u8])>,
    leave: Leave,
) -> anyhow::Result<()> {
    let mut opts = ep.options(client_id);
    if let Some((t, p)) = will {
        opts.set_last_will(LastWill::new(t, p.to_vec(), QoS::AtLeastOnce, true));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, true, payload.to_vec())
        .await?;
    let run = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => anyhow::bail!("{client_id}: {e}"),
            }
        }
        if leave == Leave::Disconnect {
            client.disconnect().await?;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .map_err(|_| anyhow::anyhow!("{client_id}: no PUBACK within 15 s"))??;
    // Dropping the event loop closes the socket (for `Die`, without
    // DISCONNECT).
    drop(eventloop);
    Ok(())
}

/// Publishes `b` as a box does: connects as `zenchef-edge-<device_id>`
/// with its will, publishes its report retained; a [`SimBox::dead_box`]
/// then dies (its will replaces the report), the others disconnect.
pub async fn publish_box(ep: &FleetEndpoint, prefix: &str, b: &SimBox) -> anyhow::Result<()> {
    let topic = b.topic(prefix);
    let will = b.will().to_string();
    publish_retained(
        ep,
        &format!("zenchef-edge-{}", b.device_id),
        &topic,
        b.message().to_string().as_bytes(),
        Some((&topic, will.as_bytes())),
        if b.dead_box {
            Leave::Die
        } else {
            Leave::Disconnect
        },
    )
    .await
}

/// [`publish_box`] for every box, `parallel` at a time; `endpoint(b)` gives
/// each box its credentials or certificate.
pub async fn publish_fleet(
    boxes: &[SimBox],
    prefix: &str,
    parallel: usize,
    endpoint: impl Fn(&SimBox) -> FleetEndpoint,
) -> anyhow::Result<()> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for b in boxes {
        let ep = endpoint(b);
        let b = b.clone();
        let prefix = prefix.to_string();
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            publish_box(&ep, &prefix, &b).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// One message a [`FleetWatcher`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its topic.
    pub topic: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The payload as JSON, when it is.
    pub json: Option<Value>,
    /// Delivered as a retained message (on subscribing), not live.
    pub retained: bool,
    /// The QoS it was delivered with (the lower of the publisher's and the
    /// subscription's, which is 1).
    pub qos: u8,
    /// When it arrived.
    pub at: Instant,
    /// The connection whose subscription delivered it (1 = the first).
    /// Counted by SUBACK, not CONNACK: rumqttc hands over packets read
    /// before a connection broke only after the next CONNACK, and a clean
    /// session delivers nothing before its SUBACK.
    pub connection: u32,
}

/// What a [`FleetWatcher`] has seen so far.
#[derive(Debug, Clone, Default)]
pub struct WatchState {
    /// Every message, in arrival order.
    pub all: Vec<Seen>,
    /// The latest message per topic.
    pub latest: BTreeMap<String, Seen>,
    /// Connected right now (SUBACK received on this connection).
    pub subscribed: bool,
    /// Connections made (CONNACK received).
    pub connections: u32,
    /// The connection of the last SUBACK (what [`Seen::connection`] says).
    pub subscribed_on: u32,
    /// The return codes of the last SUBACK.
    pub suback: Vec<String>,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

impl WatchState {
    /// The latest JSON on `topic`.
    pub fn latest_json(&self, topic: &str) -> Option<&Value> {
        self.latest.get(topic).and_then(|s| s.json.as_ref())
    }

    /// Every message on `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<&Seen> {
        self.all.iter().filter(|s| s.topic == topic).collect()
    }
}

struct WatcherInner {
    client: AsyncClient,
    state: Mutex<WatchState>,
    changed: watch::Sender<u64>,
}

/// A subscriber of a topic filter (e.g. `PREFIX/+/status`, QoS 1) that
/// records every message. Reconnects after a broker restart and subscribes
/// again (clean session). Cheap to clone; the connection ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct FleetWatcher {
    inner: Arc<WatcherInner>,
    /// Ends the event loop when the last handle goes.
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for FleetWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock().unwrap();
        f.debug_struct("FleetWatcher")
            .field("messages", &s.all.len())
            .field("connections", &s.connections)
            .finish()
    }
}

impl FleetWatcher {
    /// Connects as `client_id`, subscribes `filter` (QoS 1) and returns once
    /// the SUBACK arrived (the retained messages follow it). Fails when the
    /// first connection is refused or no SUBACK comes within 10 s.
    pub async fn connect(
        ep: &FleetEndpoint,
        client_id: &str,
        filter: &str,
    ) -> anyhow::Result<FleetWatcher> {
        let (client, mut eventloop) = AsyncClient::new(ep.options(client_id), 64);
        let (changed, _) = watch::channel(0u64);
        let inner = Arc::new(WatcherInner {
            client,
            state: Mutex::new(WatchState::default()),
            changed,
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let task_inner = inner.clone();
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        task_inner.update(|s| s.connections += 1);
                        let client = task_inner.client.clone();
                        let filter = filter.clone();
                        tokio::spawn(async move {
                            let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        task_inner.update(|s| {
                            s.subscribed = true;
                            s.subscribed_on = s.connections;
                            s.suback = ack.return_codes.iter().map(|c| format!("{c:?}")).collect();
                        });
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = p.payload.to_vec();
                        let json = serde_json::from_slice(&payload).ok();
                        task_inner.update(|s| {
                            let seen = Seen {
                                topic: p.topic.clone(),
                                payload,
                                json,
                                retained: p.retain,
                                qos: p.qos as u8,
                                at: Instant::now(),
                                connection: s.subscribed_on,
                            };
                            s.latest.insert(p.topic.clone(), seen.clone());
                            s.all.push(seen);
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        task_inner.update(|s| {
                            s.subscribed = false;
                            s.last_error = Some(e.to_string());
                        });
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(anyhow::anyhow!("fleet watcher: {e}")));
                            return;
                        }
                        if matches!(e, ConnectionError::RequestsDone) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let task = Arc::new(AbortOnDrop(task));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("fleet watcher: no SUBACK within 10 s"))?
            .map_err(|_| anyhow::anyhow!("fleet watcher: event loop ended"))??;
        Ok(FleetWatcher { inner, _task: task })
    }

    /// A copy of what it has seen.
    pub fn state(&self) -> WatchState {
        self.inner.state.lock().unwrap().clone()
    }

    /// The latest JSON on `topic`.
    pub fn latest(&self, topic: &str) -> Option<Value> {
        self.inner.state.lock().unwrap().latest_json(topic).cloned()
    }

    /// Every message on `topic` so far.
    pub fn messages(&self, topic: &str) -> Vec<Seen> {
        let s = self.inner.state.lock().unwrap();
        s.all.iter().filter(|m| m.topic == topic).cloned().collect()
    }

    /// How many messages it has received in all.
    pub fn count(&self) -> usize {
        self.inner.state.lock().unwrap().all.len()
    }

    /// Waits until `condition(state)` holds (checked now and after every
    /// change), or fails after `timeout` naming `what`, with the latest
    /// messages in the error.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&WatchState) -> bool,
    ) -> anyhow::Result<WatchState> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let s = self.inner.state.lock().unwrap();
                if condition(&s) {
                    return Ok(s.clone());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("fleet watcher closed"),
                Err(_) => {
                    let s = self.state();
                    let tail: Vec<String> = s
                        .all
                        .iter()
                        .rev()
                        .take(5)
                        .map(|m| format!("{}: {}", m.topic, String::from_utf8_lossy(&m.payload)))
                        .collect();
                    anyhow::bail!(
                        "timed out after {timeout:?} waiting for {what}; {} messages, {} connections, \
                         last error {:?}; latest: {tail:#?}",
                        s.all.len(),
                        s.connections,
                        s.last_error
                    )
                }
            }
        }
    }

    /// Waits for a message on `topic` whose JSON satisfies `condition`
    /// (the latest one, or one arriving later); answers it.
    pub async fn wait_message(
        &self,
        topic: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let s = self
            .wait_until(&format!("a matching message on {topic}"), timeout, |s| {
                s.latest_json(topic).is_some_and(&mut condition)
            })
            .await?;
        Ok(s.latest_json(topic).cloned().unwrap_or(Value::Null))
    }

    /// Disconnects cleanly.
    pub async fn disconnect(&self) {
        let _ = self.inner.client.disconnect().await;
    }
}

impl WatcherInner {
    fn update(&self, f: impl FnOnce(&mut WatchState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
    }
}

/// A TCP listener on `127.0.0.1` that accepts connections and never reads
/// or writes: a broker that hangs (the client's TLS handshake or CONNECT
/// waits forever). The connections close when it is dropped.
pub struct SilentListener {
    port: u16,
    accepted: Arc<Mutex<Vec<Instant>>>,
    task: AbortOnDrop,
}

impl std::fmt::Debug for SilentListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilentListener")
            .field("port", &self.port)
            .field("accepted", &self.accepted())
            .finish()
    }
}

impl SilentListener {
    /// Listens on `127.0.0.1:port` (`0`: a free port).
    pub async fn bind(port: u16) -> anyhow::Result<SilentListener> {
        let listener = tokio::net::TcpListener::bind((LOOPBACK, port)).await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let log = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                log.lock().unwrap().push(Instant::now());
                held.push(stream);
            }
        });
        Ok(SilentListener {
            port,
            accepted,
            task: AbortOnDrop(task),
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// When it accepted each connection.
    pub fn accepted_at(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }

    /// Stops listening and closes every held connection.
    pub fn close(self) {
        drop(self.task);
    }
}

//! The MQTT session with the POS's broker (docs/protocol/cashpad-local.md §2), with
//! rumqttc.
//!
//! - Client id `zenchef-edge-<iid>`, clean session **false**, keep-alive
//!   30 s, username `zenchef-edge`, password the Cashpad token, manual acks,
//!   last will `{"online":false}` retained on `R/zenchef/status`.
//! - The `EventLoop` has its own task and is polled without pause (polling
//!   is what reconnects). It never publishes: incoming messages go to
//!   intake with the connection *generation* they arrived on; subscriptions,
//!   status and reservation publishes are made by other tasks through
//!   [`PosLink`].
//! - rumqttc reaches the broker through the frame guard
//!   ([`super::guard`], cashpad §2a): a message over 1 MiB is read past
//!   and handed to intake as a small marker, so no message can break the
//!   connection; a failure on the broker's side of the guard is explained
//!   as if rumqttc had met it. At most [`INTAKE_BYTES`] of messages wait
//!   for intake.
//! - An ack is sent only by intake, after the store committed, and only if
//!   the connection it arrived on is still the current one: after a
//!   reconnect the broker redelivers unacked messages (persistent session)
//!   and intake recognises them by `event_id`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish,
    QoS, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::discovery::PosTarget;
use super::guard::{self, Guard, Upstream};
use crate::config::CashpadConfig;
use crate::health::Health;
use crate::outbox::Store;
use crate::pos::wire::AgentStatus;
use crate::retry::{Backoff, Retry};
use crate::time::now_utc;

/// MQTT username (cashpad §2).
pub const USERNAME: &str = "zenchef-edge";
/// Largest incoming packet accepted by rumqttc: the largest frame the
/// frame guard hands it ([`guard::MAX_FRAME_BYTES`]), so that a message
/// at the 1 MiB limit passes; a larger one never reaches rumqttc (the
/// guard reads past it), which would otherwise drop the connection and be
/// handed the message again at every reconnect.
pub const MAX_INCOMING_PACKET: usize = guard::MAX_FRAME_BYTES;
/// The pace of reconnects to the POS broker: 0.5 s after the first
/// failure, doubling up to 5 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

/// Most payload bytes on their way to intake (in the channel or in the
/// batch being stored): past it the event loop waits. Messages are at
/// most 1 MiB (cashpad §2a), but the channel holds thousands and QoS 0
/// messages are not held back by the broker's in-flight window: without
/// it a burst could keep gigabytes in memory.
pub const INTAKE_BYTES: usize = 16 * 1024 * 1024;

/// A message from the broker, with the connection generation it came on.
#[derive(Debug)]
pub struct Incoming {
    /// Generation of the connection (see [`PosLink::generation`]).
    pub generation: u64,
    /// The message (needed to ack it).
    pub publish: Publish,
    /// Its share of [`INTAKE_BYTES`], given back when intake drops it.
    _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Something the rest of the agent must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A connection was (re)established: subscribe, publish status, replay
    /// the reservations.
    Connected {
        /// The broker kept our session.
        session_present: bool,
    },
}

#[derive(Default)]
struct Inner {
    client: Mutex<Option<(AsyncClient, String)>>,
    generation: AtomicU64,
    connected: AtomicBool,
}

/// Handle to the current MQTT client, for every task but the event loop.
#[derive(Clone, Default)]
pub struct PosLink(Arc<Inner>);

impl PosLink {
    /// The connection generation: changes at every connect and disconnect.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }

    /// Is the session up?
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::SeqCst)
    }

    /// The Cashpad Installation ID of the current POS.
    pub fn iid(&self) -> Option<String> {
        self.root()
            .and_then(|r| r.strip_prefix("cashpad/").map(str::to_string))
            .filter(|i| !i.is_empty())
    }

    /// The topic root `cashpad/<iid>` of the current POS.
    pub fn root(&self) -> Option<String> {
        self.current().map(|(_, r)| r)
    }

    fn current(&self) -> Option<(AsyncClient, String)> {
        self.0
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Acknowledges a message **after** it is durable. Skipped (and left
    /// for the broker to redeliver) when the connection has changed since
    /// it arrived.
    pub async fn ack(&self, generation: u64, publish: &Publish) {
        if generation != self.generation() || !self.connected() {
            debug!(
                pkid = publish.pkid,
                "not acking a message of a previous connection"
            );
            return;
        }
        if let Some((client, _)) = self.current()
            && let Err(e) = client.ack(publish).await
        {
            debug!("ack not sent: {e}");
        }
    }

    /// Publishes under `cashpad/<iid>/<suffix>`, QoS 1. Answers `false`
    /// when no session is up (callers rely on the replay at connect).
    pub async fn publish(&self, suffix: &str, payload: Vec<u8>, retain: bool) -> bool {
        if !self.connected() {
            return false;
        }
        let Some((client, root)) = self.current() else {
            return false;
        };
        client
            .publish(
                format!("{root}/{suffix}"),
                QoS::AtLeastOnce,
                retain,
                payload,
            )
            .await
            .is_ok()
    }

    /// Subscribes to the POS topics (after every connect: harmless when the
    /// broker kept the session).
    pub async fn subscribe_all(&self) -> bool {
        let Some((client, root)) = self.current() else {
            return false;
        };
        client
            .subscribe(format!("{root}/events"), QoS::AtLeastOnce)
            .await
            .is_ok()
            && client
                .subscribe(format!("{root}/floorplan"), QoS::AtLeastOnce)
                .await
                .is_ok()
    }
}

/// The MQTT session task's context (spawned by `crate::daemon`).
pub struct Session {
    /// `[cashpad]`: the token, the static address or discovery rules.
    pub cfg: CashpadConfig,
    /// The POS to talk to, from discovery (`None`: not found yet).
    pub targets: watch::Receiver<Option<PosTarget>>,
    /// The shared link this session fills (publish, acknowledge).
    pub link: PosLink,
    /// POS messages, with their ack handles, to intake.
    pub intake: mpsc::Sender<Incoming>,
    /// Connects, to the status loop.
    pub events: mpsc::UnboundedSender<SessionEvent>,
    /// The daemon's view of the POS link.
    pub health: Health,
    /// Where the frame guard makes its private socket directory (the
    /// store's directory).
    pub guard_dir: std::path::PathBuf,
}

/// How one connection to a POS target ended.
enum Ended {
    /// Stopped (cancelled, or intake is gone): the task ends.
    Stop,
    /// The POS changed address or identity: connect to the new one.
    Retarget,
}

/// One connection's failures in a row, for the messages and the pace.
struct Failures {
    retry: Retry,
    ever_connected: bool,
}

impl Session {
    /// Runs the session until `cancel`: connects to the target of the
    /// watch, follows its changes, feeds intake.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let Some(target) = self.wait_for_target(&cancel).await else {
                return;
            };
            match self.connected_to(&target, &cancel).await {
                Ended::Stop => return,
                Ended::Retarget => {}
            }
        }
    }

    /// Waits until discovery names a POS; `None` when stopped first.
    async fn wait_for_target(&mut self, cancel: &CancellationToken) -> Option<PosTarget> {
        loop {
            if let Some(t) = self.targets.borrow_and_update().clone() {
                return Some(t);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                r = self.targets.changed() => if r.is_err() { return None },
            }
        }
    }

    /// The client options for `target`: persistent session, manual acks,
    /// the token, the retained `online:false` last will; through the frame
    /// guard's socket when it runs (it speaks TLS to the broker when
    /// announced), else straight to the broker.
    fn options(&self, target: &PosTarget, root: &str, guard: Option<&Guard>) -> MqttOptions {
        let (host, port) = match guard {
            Some(g) => (g.path().to_string_lossy().into_owned(), 0),
            None => (target.host.clone(), target.port),
        };
        let mut opts = MqttOptions::new(format!("zenchef-edge-{}", target.iid), host, port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_credentials(USERNAME, self.cfg.token.expose())
            .set_max_packet_size(MAX_INCOMING_PACKET, 1024 * 1024)
            .set_last_will(LastWill::new(
                format!("{root}/zenchef/status"),
                r#"{"online":false}"#,
                QoS::AtLeastOnce,
                true,
            ));
        if guard.is_some() {
            opts.set_transport(Transport::unix());
        } else if target.tls {
            opts.set_transport(Transport::tls_with_default_config());
        }
        opts
    }

    /// Starts the frame guard for `target`; `None` (an ERROR said) when it
    /// cannot: the session then talks to the broker directly, and one
    /// message over rumqttc's limit would stop intake.
    fn start_guard(&self, target: &PosTarget) -> Option<Guard> {
        let up = Upstream {
            host: target.host.clone(),
            port: target.port,
            tls: target.tls,
        };
        match Guard::start(&self.guard_dir, up) {
            Ok(g) => Some(g),
            Err(e) => {
                error!(
                    "cannot start the MQTT frame guard in {}: {e}. Connecting to the POS broker \
                     directly: a message over {} bytes would break the session",
                    self.guard_dir.display(),
                    MAX_INCOMING_PACKET
                );
                None
            }
        }
    }

    /// Talks to `target` until it changes or the session stops, connecting
    /// again after each failure at the [`RECONNECT`] pace.
    async fn connected_to(&mut self, target: &PosTarget, cancel: &CancellationToken) -> Ended {
        let root = format!("cashpad/{}", target.iid);
        // Dropped (stopped, its socket removed) when this function returns.
        let guard = self.start_guard(target);
        let (client, mut eventloop) =
            AsyncClient::new(self.options(target, &root, guard.as_ref()), 256);
        *self.link.0.client.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((client.clone(), root.clone()));
        info!(
            "connecting to the POS broker at {}:{}",
            target.host, target.port
        );
        let mut failures = Failures {
            retry: Retry::new(RECONNECT),
            ever_connected: false,
        };
        // The anonymous-client probe: at a (re)connection, at most once an
        // hour per POS address.
        let mut probed: Option<tokio::time::Instant> = None;
        let budget = Arc::new(tokio::sync::Semaphore::new(INTAKE_BYTES));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    goodbye(&self.link, &client, &mut eventloop).await;
                    return Ended::Stop;
                }
                r = self.targets.changed() => {
                    let next = if r.is_ok() { self.targets.borrow().clone() } else { None };
                    if next.as_ref() != Some(target) {
                        info!("the POS changed address or identity: reconnecting");
                        self.link.0.connected.store(false, Ordering::SeqCst);
                        self.link.0.generation.fetch_add(1, Ordering::SeqCst);
                        let _ = client.try_disconnect();
                        self.health.update(|s| s.pos.mqtt_connected = false);
                        return Ended::Retarget;
                    }
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        self.on_connack(ack.session_present, &mut failures);
                        if probed.is_none_or(|t| t.elapsed() >= super::anonymous::PROBE_EVERY) {
                            probed = Some(tokio::time::Instant::now());
                            tokio::spawn(probe_anonymous(target.clone(), self.health.clone()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let generation = self.link.generation();
                        let cost = (p.payload.len() + p.topic.len()).clamp(1, INTAKE_BYTES);
                        let Ok(_budget) = budget.clone().acquire_many_owned(cost as u32).await
                        else {
                            return Ended::Stop;
                        };
                        let m = Incoming { generation, publish: p, _budget };
                        if self.intake.send(m).await.is_err() {
                            return Ended::Stop;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // A failure on the broker's side of the guard is
                        // the real one (rumqttc only saw its socket close).
                        let upstream = guard
                            .as_ref()
                            .and_then(Guard::take_failure)
                            .map(guard::UpstreamFailure::into_connection_error);
                        let e = upstream.unwrap_or(e);
                        let wait = self.on_error(&e, target, &mut failures);
                        tokio::select! {
                            _ = cancel.cancelled() => return Ended::Stop,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }

    /// The broker accepted the session: say so (journal, health, the
    /// status loop).
    fn on_connack(&self, session_present: bool, failures: &mut Failures) {
        self.link.0.generation.fetch_add(1, Ordering::SeqCst);
        self.link.0.connected.store(true, Ordering::SeqCst);
        failures.retry.reset();
        failures.ever_connected = true;
        info!(session_present, "MQTT session up with the POS");
        self.health.update(|s| {
            s.pos.mqtt_connected = true;
            s.pos.connected_since = Some(now_utc());
        });
        let _ = self
            .events
            .send(SessionEvent::Connected { session_present });
    }

    /// A connection failed or broke: says why (an ERROR for what a
    /// technician must fix, a WARN otherwise; the 1st, then every 20th),
    /// records it in health, and gives the wait before the next attempt.
    fn on_error(
        &self,
        e: &ConnectionError,
        target: &PosTarget,
        failures: &mut Failures,
    ) -> Duration {
        let was = self.link.0.connected.swap(false, Ordering::SeqCst);
        self.link.0.generation.fetch_add(1, Ordering::SeqCst);
        let wait = failures.retry.failed(None);
        let n = failures.retry.failures();
        let kind = classify(e, was);
        let addr = format!("{}:{}", target.host, target.port);
        let (mut msg, hint) = explain(e, kind, &addr);
        if kind == MqttFailure::ClosedDuringLogin && !failures.ever_connected && n >= 3 {
            // Some brokers (rumqttd) close the connection after a bad
            // login instead of answering CONNACK 4/5: repeated, that is a
            // refusal.
            msg = format!(
                "the POS broker at {addr} closed the connection right after the MQTT login {n} \
                 times in a row: it most likely refuses the token"
            );
        }
        let msg = format!("{msg}: {hint}");
        if was || n == 1 || n.is_multiple_of(20) {
            match kind {
                MqttFailure::LoginRefused | MqttFailure::Tls => error!("{msg}"),
                _ => warn!("MQTT connection to the POS lost or refused ({msg}); retrying"),
            }
        }
        self.health.update(|s| {
            s.pos.mqtt_connected = false;
            s.pos.problem = Some(msg);
        });
        wait
    }
}

/// Probes whether the broker of `target` lets in a client without a
/// password (`super::anonymous`) and records the answer in `health`; a
/// WARN when it does (every probe, so at most once an hour).
async fn probe_anonymous(target: PosTarget, health: Health) {
    use super::anonymous::{AnonymousClients, probe};
    let p = probe(&target).await;
    match p.found {
        AnonymousClients::Accepted => warn!(
            "{}: the broker must refuse anonymous clients (docs/pos-broker.md)",
            p.detail
        ),
        _ => debug!("anonymous-client probe: {}", p.detail),
    }
    // A probe that could not tell keeps the last answer that did: a broker
    // found open stays reported through a moment of doubt.
    health.update(|s| {
        if p.found != AnonymousClients::Unknown || s.pos.anonymous_clients.is_none() {
            s.pos.anonymous_clients = Some(p.found);
            s.pos.anonymous_checked_at = Some(now_utc());
        }
    });
}

/// Why an MQTT connection to the POS broker failed, by what a technician
/// does about it ([`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttFailure {
    /// The TCP connection was refused: nothing listens on that port (the
    /// Cashpad server is stopped, or the port is wrong).
    PortClosed,
    /// No answer: no route to the host, a TCP or MQTT timeout, a name that
    /// does not resolve.
    Unreachable,
    /// The TLS handshake failed (the POS announces `tls=1`).
    Tls,
    /// The broker answered CONNACK "bad user name or password" or "not
    /// authorised": the Cashpad token is refused.
    LoginRefused,
    /// The broker answered CONNACK with another refusal (protocol version,
    /// client id, server unavailable).
    BrokerRefused,
    /// The broker closed the connection after CONNECT without answering:
    /// once, anything; repeatedly, most likely a refused token.
    ClosedDuringLogin,
    /// The port answered something that is not MQTT (a TLS port spoken to
    /// in clear text, another service).
    NotMqtt,
    /// An established session broke (keep-alive timeout, reset).
    Lost,
    /// Anything else.
    Other,
}

/// Classifies a rumqttc error; `connected` tells whether the session was
/// up when it happened (a failed connect attempt otherwise).
pub fn classify(e: &ConnectionError, connected: bool) -> MqttFailure {
    use rumqttc::StateError;
    use std::io::ErrorKind as K;
    let by_io = |io: &std::io::Error| match io.kind() {
        K::ConnectionRefused => MqttFailure::PortClosed,
        K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::NotFound => MqttFailure::Unreachable,
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe
            if connected =>
        {
            MqttFailure::Lost
        }
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
            MqttFailure::ClosedDuringLogin
        }
        // getaddrinfo failures have no kind of their own (std files them
        // under the unstable `Uncategorized`), so their text is the only
        // sign: the one error matched by its text, and only to word a hint.
        _ if io.to_string().contains("lookup") => MqttFailure::Unreachable,
        _ if connected => MqttFailure::Lost,
        _ => MqttFailure::Other,
    };
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => MqttFailure::LoginRefused,
        ConnectionError::ConnectionRefused(_) => MqttFailure::BrokerRefused,
        ConnectionError::Tls(_) => MqttFailure::Tls,
        ConnectionError::Io(io) => by_io(io),
        ConnectionError::MqttState(StateError::Io(io)) => by_io(io),
        ConnectionError::MqttState(StateError::ConnectionAborted) if connected => MqttFailure::Lost,
        ConnectionError::MqttState(StateError::ConnectionAborted) => MqttFailure::ClosedDuringLogin,
        ConnectionError::MqttState(StateError::Deserialization(_))
        | ConnectionError::NotConnAck(_)
            if !connected =>
        {
            MqttFailure::NotMqtt
        }
        ConnectionError::NetworkTimeout => MqttFailure::Unreachable,
        ConnectionError::MqttState(StateError::AwaitPingResp) | ConnectionError::FlushTimeout => {
            MqttFailure::Lost
        }
        _ if connected => MqttFailure::Lost,
        _ => MqttFailure::Other,
    }
}

/// What happened (naming `addr`, never the token) and what to do, for the
/// journal, `status` and `doctor`.
pub fn explain(e: &ConnectionError, kind: MqttFailure, addr: &str) -> (String, &'static str) {
    match kind {
        MqttFailure::PortClosed => (
            format!("nothing listens on the POS broker's port at {addr} (connection refused)"),
            "is the Cashpad server running? Is the MQTT port right (the POS's announcement, or \
             cashpad.port)?",
        ),
        MqttFailure::Unreachable => (
            format!("the POS broker at {addr} does not answer ({e})"),
            "is the POS on and on this network at that address? A firewall may drop its MQTT \
             port",
        ),
        MqttFailure::Tls => (
            format!("the TLS handshake with the POS broker at {addr} failed ({e})"),
            "the POS announces TLS: check the box's clock (timedatectl) and that the POS's \
             certificate is valid; a port that does not speak TLS fails this way too",
        ),
        MqttFailure::LoginRefused => (
            format!(
                "the POS broker at {addr} refused the MQTT login (user {USERNAME}): {}",
                match e {
                    ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                        "not authorised"
                    }
                    _ => "bad user name or password",
                }
            ),
            "check cashpad.token: it must be the token Cashpad provided for the Zenchef interface",
        ),
        MqttFailure::BrokerRefused => (
            format!("the POS broker at {addr} refused the connection ({e})"),
            "restart the Cashpad server; if it persists, call Cashpad support",
        ),
        MqttFailure::ClosedDuringLogin => (
            format!(
                "the POS broker at {addr} closed the connection during the MQTT login (user \
                 {USERNAME}) without accepting it"
            ),
            "if this repeats, check cashpad.token: it must be the token Cashpad provided for the \
             Zenchef interface",
        ),
        MqttFailure::NotMqtt => (
            format!("{addr} answered something that is not MQTT ({e})"),
            "is it the POS broker's port? Does it expect TLS?",
        ),
        MqttFailure::Lost => (
            format!("the MQTT session with the POS broker at {addr} was lost ({e})"),
            "the agent reconnects by itself; if it repeats, check the network to the POS",
        ),
        MqttFailure::Other => (
            format!("MQTT error with the POS broker at {addr}: {e}"),
            "is the Cashpad server running? Is its MQTT port reachable from the box?",
        ),
    }
}

/// Clean goodbye: `online:false` retained, then DISCONNECT, polling the
/// event loop (bounded) so both actually leave.
async fn goodbye(link: &PosLink, client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    if link.connected() {
        let _ = link
            .publish("zenchef/status", br#"{"online":false}"#.to_vec(), true)
            .await;
        let _ = client.disconnect().await;
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    _ => {}
                }
            }
        }
    }
    link.0.connected.store(false, Ordering::SeqCst);
    info!("MQTT session closed");
}

/// The status task's context (spawned by `crate::daemon`).
pub struct StatusLoop {
    /// The session the status is published on.
    pub link: PosLink,
    /// Read for the `pending` count.
    pub store: Store,
    /// Connects, from the session.
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    /// Asks the reservation poller to replay its mirror after a connect.
    pub replay: mpsc::UnboundedSender<()>,
    /// How often the status is refreshed.
    pub every: Duration,
}

impl StatusLoop {
    /// Reacts to [`SessionEvent`]s and keeps the retained status current:
    /// after each connect, subscribe, publish `{"online":true,...}` and ask
    /// the reservation poller to replay its mirror; then refresh the status
    /// every `every` (its `pending` count — queued outbox rows — changes).
    pub async fn run(self, cancel: CancellationToken) {
        let StatusLoop {
            link,
            store,
            mut events,
            replay,
            every,
        } = self;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.recv() => match ev {
                    Some(SessionEvent::Connected { .. }) => {
                        if !link.subscribe_all().await {
                            warn!("cannot subscribe to the POS topics");
                        }
                        publish_status(&link, &store).await;
                        let _ = replay.send(());
                    }
                    None => return,
                },
                _ = tick.tick() => publish_status(&link, &store).await,
            }
        }
    }
}

async fn publish_status(link: &PosLink, store: &Store) {
    let pending = store
        .read(|c| Ok(crate::outbox::counts(c)?.queued))
        .await
        .unwrap_or(0);
    let body = AgentStatus {
        online: true,
        pending,
        version: env!("CARGO_PKG_VERSION"),
    };
    link.publish("zenchef/status", body.to_json().into_bytes(), true)
        .await;
}

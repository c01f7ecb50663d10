//! The Cashpad POS simulator: an MQTT client of the broker that plays the
//! POS side of cashpad-local-v1 §2–7.
//!
//! It publishes events (`R/events`, QoS 1, not retained) and the floor plan
//! (`R/floorplan`, QoS 1, retained), and records everything the agent sends
//! under `R/zenchef/#`: reservations (retained per booking, a zero-length
//! payload withdraws), the agent status, and settle commands. Tests observe
//! that record through [`Pos::state`] and friends, and wait for conditions
//! with [`Pos::wait_until`].
//!
//! [`EventBuilder`] makes spec envelopes (§3) with increasing `seq`, unique
//! `event_id` and RFC 3339 `occurred_at`; its typed helpers make the `data`
//! of each event type of §4.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::util::{LOOPBACK, random_uuid};

/// How long [`Pos::publish_event`] waits for the broker's PUBACK.
pub const PUBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest MQTT packet the POS sends or accepts (16 MiB).
pub const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// Everything the POS received from the agent, in arrival order where it
/// matters.
#[derive(Debug, Clone, Default)]
pub struct PosState {
    /// Currently retained, non-withdrawn reservations by `booking_id`.
    pub reservations: BTreeMap<i64, Value>,
    /// Every publish per `booking_id`, in order; `None` is a withdrawal
    /// (zero-length payload).
    pub reservation_history: BTreeMap<i64, Vec<Option<Value>>>,
    /// Last `R/zenchef/status` payload (`None` until one arrives).
    pub status: Option<Value>,
    /// Every `R/zenchef/status` payload, in order.
    pub status_history: Vec<Value>,
    /// Every settle command received on `R/zenchef/commands`, in order.
    pub commands: Vec<Value>,
    /// Messages under `R/zenchef/#` the POS could not understand:
    /// `(topic, reason)` (bad JSON, bad booking id, unknown topic…).
    pub invalid: Vec<(String, String)>,
    /// Whether the MQTT session is currently up.
    pub connected: bool,
    /// Number of (re)connections so far.
    pub connections: u32,
}

#[derive(Default)]
struct AckTracker {
    /// Waiters for publishes handed to rumqttc but not yet given a pkid, in
    /// request order.
    unassigned: VecDeque<oneshot::Sender<()>>,
    /// Waiters by pkid, waiting for the broker's PUBACK.
    by_pkid: HashMap<u16, oneshot::Sender<()>>,
}

struct Inner {
    iid: String,
    client: AsyncClient,
    state: Mutex<PosState>,
    changed: watch::Sender<u64>,
    acks: Mutex<AckTracker>,
    /// Serialises "register waiter + hand to rumqttc" so that waiters are in
    /// the same order as rumqttc's requests.
    publish_order: tokio::sync::Mutex<()>,
}

/// A connected POS simulator. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Pos {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pos").field("iid", &self.inner.iid).finish()
    }
}

impl Pos {
    /// Connects to the broker at `127.0.0.1:broker_port` as client id
    /// `cashpad-pos-<iid>` with the given credentials, subscribes
    /// `cashpad/<iid>/zenchef/#` (QoS 1), and returns once the subscription
    /// is acknowledged. Fails if the broker refuses the connection.
    pub async fn connect(
        broker_port: u16,
        iid: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Pos> {
        let mut opts = MqttOptions::new(
            format!("cashpad-pos-{iid}"),
            LOOPBACK.to_string(),
            broker_port,
        );
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(200);
        if !username.is_empty() {
            opts.set_credentials(username, password);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let (changed, _) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            iid: iid.to_string(),
            client,
            state: Mutex::new(PosState::default()),
            changed,
            acks: Mutex::new(AckTracker::default()),
            publish_order: tokio::sync::Mutex::new(()),
        });
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<()>>();
        let task_inner = inner.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let root = format!("cashpad/{}/zenchef/", task_inner.iid);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        task_inner.update(|s| {
                            s.connected = true;
                            s.connections += 1;
                        });
                        // Clean session: subscribe again on every connection.
                        let client = task_inner.client.clone();
                        let filter = format!("{root}#");
                        tokio::spawn(async move {
                            let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        task_inner.on_message(&root, &p.topic, &p.payload);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let waiter = task_inner.acks.lock().unwrap().by_pkid.remove(&ack.pkid);
                        if let Some(w) = waiter {
                            let _ = w.send(());
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                        let mut acks = task_inner.acks.lock().unwrap();
                        // A retransmission after a reconnect reuses its pkid.
                        if !acks.by_pkid.contains_key(&pkid)
                            && let Some(w) = acks.unassigned.pop_front()
                        {
                            acks.by_pkid.insert(pkid, w);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        task_inner.update(|s| s.connected = false);
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(anyhow::anyhow!("POS MQTT connect failed: {e}")));
                            return;
                        }
                        if matches!(e, ConnectionError::RequestsDone) {
                            return;
                        }
                        tracing::debug!("POS {} MQTT error: {e}", task_inner.iid);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("POS MQTT connect timed out"))?
            .map_err(|_| anyhow::anyhow!("POS event loop ended"))??;
        Ok(Pos { inner })
    }

    /// The Installation ID this POS publishes under.
    pub fn iid(&self) -> &str {
        &self.inner.iid
    }

    /// Topic root `cashpad/<iid>`.
    pub fn root(&self) -> String {
        format!("cashpad/{}", self.inner.iid)
    }

    /// Publishes the floor plan (§5) retained, QoS 1, on `R/floorplan`;
    /// returns once the broker acknowledged it.
    pub async fn publish_floorplan(&self, floorplan: &Value) -> anyhow::Result<()> {
        let topic = format!("{}/floorplan", self.root());
        self.publish_qos1(topic, serde_json::to_vec(floorplan)?, true)
            .await
    }

    /// Publishes an event envelope (§3) QoS 1 on `R/events`; returns once
    /// the **broker** PUBACKed it.
    pub async fn publish_event(&self, event: &Value) -> anyhow::Result<()> {
        self.publish_raw(serde_json::to_vec(event)?).await
    }

    /// Publishes arbitrary bytes QoS 1 on `R/events` (non-JSON, invalid
    /// UTF-8, oversized…); returns once the broker PUBACKed it.
    pub async fn publish_raw(&self, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        let topic = format!("{}/events", self.root());
        self.publish_qos1(topic, payload.into(), false).await
    }

    /// Publishes arbitrary bytes QoS 1 on any topic; returns once the broker
    /// PUBACKed it.
    pub async fn publish_to(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> anyhow::Result<()> {
        self.publish_qos1(topic.to_string(), payload.into(), retain)
            .await
    }

    async fn publish_qos1(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.inner.publish_order.lock().await;
            self.inner.acks.lock().unwrap().unassigned.push_back(tx);
            self.inner
                .client
                .publish(topic.clone(), QoS::AtLeastOnce, retain, payload)
                .await?;
        }
        tokio::time::timeout(PUBACK_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow::anyhow!("no PUBACK for {topic} within {PUBACK_TIMEOUT:?}"))?
            .map_err(|_| anyhow::anyhow!("POS event loop ended before PUBACK on {topic}"))?;
        Ok(())
    }

    /// A snapshot of everything received so far.
    pub fn state(&self) -> PosState {
        self.inner.state.lock().unwrap().clone()
    }

    /// Currently retained, non-withdrawn reservations by `booking_id`.
    pub fn reservations(&self) -> BTreeMap<i64, Value> {
        self.inner.state.lock().unwrap().reservations.clone()
    }

    /// Every publish for `booking_id`, in order; `None` = withdrawal.
    pub fn reservation_history(&self, booking_id: i64) -> Vec<Option<Value>> {
        self.inner
            .state
            .lock()
            .unwrap()
            .reservation_history
            .get(&booking_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The last `R/zenchef/status` payload.
    pub fn status(&self) -> Option<Value> {
        self.inner.state.lock().unwrap().status.clone()
    }

    /// Every settle command received, in order.
    pub fn commands(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().commands.clone()
    }

    /// Waits until `condition(state)` holds (checked now and after every
    /// change), or fails after `timeout` with the last state in the error.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&PosState) -> bool,
    ) -> anyhow::Result<()> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(&self.inner.state.lock().unwrap()) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("POS state channel closed"),
                Err(_) => {
                    let s = self.state();
                    anyhow::bail!(
                        "timed out after {timeout:?}; POS has {} reservations {:?}, status {:?}, {} commands",
                        s.reservations.len(),
                        s.reservations.keys().collect::<Vec<_>>(),
                        s.status,
                        s.commands.len()
                    )
                }
            }
        }
    }

    /// Disconnects cleanly from the broker; the handle is unusable after.
    pub async fn disconnect(&self) -> anyhow::Result<()> {
        self.inner.client.disconnect().await?;
        Ok(())
    }
}

impl Inner {
    fn update(&self, f: impl FnOnce(&mut PosState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
    }

    fn on_message(&self, root: &str, topic: &str, payload: &[u8]) {
        let Some(rest) = topic.strip_prefix(root) else {
            return;
        };
        let parsed = || -> Result<Value, String> {
            serde_json::from_slice::<Value>(payload).map_err(|e| format!("bad JSON: {e}"))
        };
        self.update(|s| {
            if let Some(id) = rest.strip_prefix("reservations/") {
                let Ok(booking_id) = id.parse::<i64>() else {
                    s.invalid
                        .push((topic.to_string(), format!("bad booking id {id:?}")));
                    return;
                };
                if payload.is_empty() {
                    s.reservations.remove(&booking_id);
                    s.reservation_history
                        .entry(booking_id)
                        .or_default()
                        .push(None);
                    return;
                }
                match parsed() {
                    Ok(v) => {
                        s.reservations.insert(booking_id, v.clone());
                        s.reservation_history
                            .entry(booking_id)
                            .or_default()
                            .push(Some(v));
                    }
                    Err(e) => s.invalid.push((topic.to_string(), e)),
                }
            } else if rest == "status" {
                if payload.is_empty() {
                    s.status = None;
                    return;
                }
                match parsed() {
                    Ok(v) => {
                        s.status = Some(v.clone());
                        s.status_history.push(v);
                    }
                    Err(e) => s.invalid.push((topic.to_string(), e)),
                }
            } else if rest == "commands" {
                match parsed() {
                    // Settle handling (Zenchef Pay, cashpad §7) goes here: the
                    // POS records the payment on the order and answers with
                    // `payment.recorded` or `bill.paid` whose payment
                    // `reference` is the `payment_id`. For now commands are
                    // only recorded.
                    Ok(v) => s.commands.push(v),
                    Err(e) => s.invalid.push((topic.to_string(), e)),
                }
            } else {
                s.invalid
                    .push((topic.to_string(), "unexpected topic".to_string()));
            }
        });
    }
}

/// A bill line (§4), money in integer cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Line id within the order, e.g. `L1`.
    pub line_id: String,
    /// Item name as shown on the bill.
    pub name: String,
    /// Quantity, ≥ 1.
    pub quantity: i64,
    /// Unit price in cents.
    pub unit_price_cents: i64,
    /// `quantity × unit_price_cents`, in cents (the POS's own figure).
    pub total_cents: i64,
}

impl Line {
    /// A line whose total is `quantity × unit_price_cents`.
    pub fn new(line_id: &str, name: &str, quantity: i64, unit_price_cents: i64) -> Line {
        Line {
            line_id: line_id.into(),
            name: name.into(),
            quantity,
            unit_price_cents,
            total_cents: quantity * unit_price_cents,
        }
    }
}

/// A payment (§4): `method` is `card`, `cash`, `zenchef_pay` or `other`;
/// `reference` is the Zenchef Pay `payment_id` for `zenchef_pay`, a receipt
/// reference otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// `card|cash|zenchef_pay|other`.
    pub method: String,
    /// Amount in cents (tip included).
    pub amount_cents: i64,
    /// Free reference (Zenchef Pay `payment_id` for `zenchef_pay`).
    pub reference: String,
}

impl Payment {
    /// A payment of `amount_cents` by `method` with `reference`.
    pub fn new(method: &str, amount_cents: i64, reference: &str) -> Payment {
        Payment {
            method: method.into(),
            amount_cents,
            reference: reference.into(),
        }
    }
}

/// Makes event envelopes (§3): `seq` increases by one per event (use
/// [`EventBuilder::skip`] for gaps), `event_id` is a fresh random UUID-shaped
/// string, `occurred_at` is RFC 3339 with the builder's offset.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    next_seq: u64,
    offset: FixedOffset,
    clock: Option<DateTime<FixedOffset>>,
}

impl Default for EventBuilder {
    fn default() -> Self {
        EventBuilder::new(1)
    }
}

/// `+01:00`, Europe/Paris in winter: the offset the simulated POS uses.
pub fn paris_winter() -> FixedOffset {
    FixedOffset::east_opt(3600).expect("valid offset")
}

impl EventBuilder {
    /// A builder whose first event has `seq = first_seq`, offset `+01:00`,
    /// clock = the wall clock.
    pub fn new(first_seq: u64) -> EventBuilder {
        EventBuilder {
            next_seq: first_seq,
            offset: paris_winter(),
            clock: None,
        }
    }

    /// Uses `offset` for wall-clock `occurred_at` values.
    pub fn with_offset(mut self, offset: FixedOffset) -> EventBuilder {
        self.offset = offset;
        self
    }

    /// Fixes the POS clock used for `occurred_at` of events that carry no
    /// time of their own (`None` = wall clock).
    pub fn set_clock(&mut self, at: Option<DateTime<FixedOffset>>) {
        self.clock = at;
    }

    /// Skips `n` sequence numbers (events the restaurant did not tick).
    pub fn skip(&mut self, n: u64) {
        self.next_seq += n;
    }

    /// The `seq` the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn now(&self) -> DateTime<FixedOffset> {
        self.clock
            .unwrap_or_else(|| Utc::now().with_timezone(&self.offset))
    }

    /// A full envelope of `event_type` with `data`, at `occurred_at`.
    pub fn envelope_at(
        &mut self,
        event_type: &str,
        occurred_at: DateTime<FixedOffset>,
        data: Value,
    ) -> Value {
        let seq = self.next_seq;
        self.next_seq += 1;
        json!({
            "event_id": random_uuid(),
            "seq": seq,
            "type": event_type,
            "occurred_at": rfc3339(occurred_at),
            "data": data,
        })
    }

    /// A full envelope of `event_type` with `data`, at the builder's clock.
    pub fn envelope(&mut self, event_type: &str, data: Value) -> Value {
        let at = self.now();
        self.envelope_at(event_type, at, data)
    }

    /// `table.opened`; `occurred_at = opened_at`.
    pub fn table_opened(
        &mut self,
        order_id: &str,
        table: &str,
        covers: u32,
        opened_at: DateTime<FixedOffset>,
    ) -> Value {
        self.envelope_at(
            "table.opened",
            opened_at,
            json!({"order_id": order_id, "table": table, "covers": covers,
                   "opened_at": rfc3339(opened_at)}),
        )
    }

    /// `order.items_sent` with the whole current bill.
    pub fn items_sent(
        &mut self,
        order_id: &str,
        table: &str,
        lines: &[Line],
        total_cents: i64,
    ) -> Value {
        self.envelope(
            "order.items_sent",
            json!({"order_id": order_id, "table": table, "lines": lines,
                   "total_cents": total_cents}),
        )
    }

    /// `table.moved`.
    pub fn table_moved(&mut self, order_id: &str, from_table: &str, to_table: &str) -> Value {
        self.envelope(
            "table.moved",
            json!({"order_id": order_id, "from_table": from_table, "to_table": to_table}),
        )
    }

    /// `payment.recorded` (a partial payment).
    pub fn payment_recorded(
        &mut self,
        order_id: &str,
        amount_cents: i64,
        tip_cents: i64,
        method: &str,
        reference: &str,
    ) -> Value {
        self.envelope(
            "payment.recorded",
            json!({"order_id": order_id, "amount_cents": amount_cents,
                   "tip_cents": tip_cents, "method": method, "reference": reference}),
        )
    }

    /// `bill.paid`; `occurred_at = paid_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn bill_paid(
        &mut self,
        order_id: &str,
        table: &str,
        covers: u32,
        lines: &[Line],
        total_cents: i64,
        tip_cents: i64,
        payments: &[Payment],
        paid_at: DateTime<FixedOffset>,
    ) -> Value {
        self.envelope_at(
            "bill.paid",
            paid_at,
            json!({"order_id": order_id, "table": table, "covers": covers,
                   "lines": lines, "total_cents": total_cents, "tip_cents": tip_cents,
                   "payments": payments, "paid_at": rfc3339(paid_at)}),
        )
    }

    /// `order.voided`.
    pub fn order_voided(&mut self, order_id: &str, table: &str, reason: &str) -> Value {
        self.envelope(
            "order.voided",
            json!({"order_id": order_id, "table": table, "reason": reason}),
        )
    }
}

/// RFC 3339 with offset and whole seconds, e.g. `2026-11-29T19:42:05+01:00`.
pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

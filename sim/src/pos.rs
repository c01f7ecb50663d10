//! The Cashpad POS simulator: an MQTT client of the broker that plays the
//! POS side of docs/protocol/cashpad-local.md §2–7.
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
//!
//! # Settle commands (§7, Zenchef Pay)
//! The POS keeps its own bill per order ([`PosBill`]), built from the events
//! it publishes (or registered with [`Pos::track_bill`]). A settle command
//! on `R/zenchef/commands` is applied once per `command_id`: the payment is
//! added to the bill and the POS answers `payment.recorded` (still something
//! due) or `bill.paid` (fully paid) whose payment `reference` is the
//! `payment_id`. A `command_id` seen before is ignored and recorded in
//! [`PosState::duplicate_commands`]. A command the POS cannot apply (unknown
//! order, already paid or voided, amount above what is due) is refused:
//! recorded in [`PosState::refused_commands`], nothing published.
//!
//! The POS owns its event sequence: its answers take `seq` = 1 + the
//! largest `seq` it has published so far (scripted events included), and
//! are published one at a time in the order the commands were applied.
//! Scripted events keep the `seq` they carry, so a script that publishes
//! after answers must leave room (the Zenchef Pay scenario spaces its `seq`
//! by 100), or use [`Pos::publish_event_next_seq`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

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
    /// Every settle command received on `R/zenchef/commands`, in order
    /// (duplicates and refused ones included).
    pub commands: Vec<Value>,
    /// The POS's bills by `order_id` (from published events, settle
    /// commands and [`Pos::track_bill`]).
    pub bills: BTreeMap<String, PosBill>,
    /// Settle commands applied (payment recorded, answer sent or queued),
    /// in order.
    pub settled_commands: Vec<Value>,
    /// Settle commands ignored because their `command_id` was already
    /// applied or pending, in order.
    pub duplicate_commands: Vec<Value>,
    /// Settle commands the POS could not apply: `(command, reason)`; the
    /// reason says `unknown order`, `already paid`, `voided`, `exceeds` or
    /// names the bad field.
    pub refused_commands: Vec<(Value, String)>,
    /// Settle commands received while [`Pos::auto_settle`] is off, not yet
    /// answered, in order.
    pub pending_settles: Vec<Value>,
    /// `command_id`s applied or pending.
    pub known_command_ids: BTreeSet<String>,
    /// Events the POS published in answer to settle commands, with their
    /// final `seq`, once the broker acknowledged them, in order.
    pub answers: Vec<Value>,
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
    /// the same order as rumqttc's requests; holds the largest `seq`
    /// published on `R/events` so far (the POS's sequence).
    publish_order: tokio::sync::Mutex<u64>,
    /// Answer settle commands at once (default) or keep them pending.
    auto_settle: AtomicBool,
    /// Settle answers to publish, in order (one task publishes them).
    answer_tx: mpsc::UnboundedSender<Answer>,
    /// `event_id`s already applied to the bills (re-publishing the same
    /// event does not count a payment twice).
    tracked_events: Mutex<HashSet<String>>,
    /// Clock for the answers' `occurred_at`/`paid_at` (`None` = wall clock).
    clock: Mutex<Option<DateTime<FixedOffset>>>,
}

/// A settle answer waiting for its `seq`: event type and `data`.
struct Answer {
    event_type: &'static str,
    occurred_at: DateTime<FixedOffset>,
    data: Value,
}

/// Where a POS bill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillStatus {
    /// The table is open; payments may be taken.
    Open,
    /// Fully paid (`bill.paid` published), the table is closed.
    Paid,
    /// Cancelled without payment (`order.voided`).
    Voided,
}

/// The POS's own bill of an order (cashpad §4): what it must know to settle
/// a Zenchef Pay payment. Money in integer cents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosBill {
    /// The order.
    pub order_id: String,
    /// Current table name (follows `table.moved`).
    pub table: String,
    /// Covers, ≥ 1.
    pub covers: u32,
    /// The whole current bill.
    pub lines: Vec<Line>,
    /// Bill total in cents (tips excluded).
    pub total_cents: i64,
    /// Sum of the payments' amounts in cents, tips excluded.
    pub paid_cents: i64,
    /// Sum of the payments' tips in cents.
    pub tip_cents: i64,
    /// Payments taken so far; each `amount_cents` includes its tip (as in
    /// `bill.paid`).
    pub payments: Vec<Payment>,
    /// Open, paid or voided.
    pub status: BillStatus,
}

impl PosBill {
    fn new(order_id: &str, table: &str, covers: u32) -> PosBill {
        PosBill {
            order_id: order_id.into(),
            table: table.into(),
            covers: covers.max(1),
            lines: Vec::new(),
            total_cents: 0,
            paid_cents: 0,
            tip_cents: 0,
            payments: Vec::new(),
            status: BillStatus::Open,
        }
    }

    /// What is still due in cents: `total_cents − paid_cents`.
    pub fn due_cents(&self) -> i64 {
        self.total_cents - self.paid_cents
    }
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
        let (answer_tx, mut answer_rx) = mpsc::unbounded_channel::<Answer>();
        let inner = Arc::new(Inner {
            iid: iid.to_string(),
            client,
            state: Mutex::new(PosState::default()),
            changed,
            acks: Mutex::new(AckTracker::default()),
            publish_order: tokio::sync::Mutex::new(0),
            auto_settle: AtomicBool::new(true),
            answer_tx,
            tracked_events: Mutex::new(HashSet::new()),
            clock: Mutex::new(None),
        });
        // Settle answers, one at a time, in the order they were decided. A
        // weak handle so that dropping every `Pos` ends the task.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(answer) = answer_rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = inner.publish_answer(answer).await {
                    tracing::warn!("POS {} settle answer not published: {e:#}", inner.iid);
                }
            }
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
    ///
    /// The event also updates the POS's own bills (`table.opened`,
    /// `order.items_sent`, `table.moved`, `payment.recorded`, `bill.paid`,
    /// `order.voided`; once per `event_id`), and its `seq` raises the POS's
    /// sequence. The `seq` is published as given.
    pub async fn publish_event(&self, event: &Value) -> anyhow::Result<()> {
        self.inner.track_event(event);
        self.publish_events_topic(serde_json::to_vec(event)?).await
    }

    /// Like [`Pos::publish_event`], but the POS stamps the event with the
    /// next `seq` of its own sequence (1 + the largest published so far),
    /// so that it stays increasing with the POS's settle answers. Answers
    /// the `seq` given.
    pub async fn publish_event_next_seq(&self, event: &Value) -> anyhow::Result<u64> {
        self.inner.track_event(event);
        let mut event = event.clone();
        let topic = format!("{}/events", self.root());
        let mut given = 0;
        self.inner
            .publish_qos1(topic, false, |last| {
                *last += 1;
                given = *last;
                event["seq"] = json!(*last);
                serde_json::to_vec(&event).unwrap_or_default()
            })
            .await?;
        Ok(given)
    }

    /// Publishes arbitrary bytes QoS 1 on `R/events` (non-JSON, invalid
    /// UTF-8, oversized…); returns once the broker PUBACKed it.
    pub async fn publish_raw(&self, payload: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.publish_events_topic(payload.into()).await
    }

    /// Publishes on `R/events`; a JSON payload with a `seq` raises the POS's
    /// sequence.
    async fn publish_events_topic(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        let topic = format!("{}/events", self.root());
        let seq = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|v| v["seq"].as_u64());
        self.inner
            .publish_qos1(topic, false, |last| {
                if let Some(seq) = seq {
                    *last = (*last).max(seq);
                }
                payload
            })
            .await
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
        self.inner.publish_qos1(topic, retain, |_| payload).await
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

    /// Registers (or updates) the POS's bill of `order_id`: table, covers,
    /// the whole bill and its total in cents. Payments already taken are
    /// kept. Not needed for orders whose events go through
    /// [`Pos::publish_event`], which keeps the bills itself.
    pub fn track_bill(
        &self,
        order_id: &str,
        table: &str,
        covers: u32,
        lines: &[Line],
        total_cents: i64,
    ) {
        self.inner.update(|s| {
            let bill = s
                .bills
                .entry(order_id.to_string())
                .or_insert_with(|| PosBill::new(order_id, table, covers));
            bill.table = table.to_string();
            bill.covers = covers.max(1);
            bill.lines = lines.to_vec();
            bill.total_cents = total_cents;
        });
    }

    /// The POS's bill of `order_id`.
    pub fn bill(&self, order_id: &str) -> Option<PosBill> {
        self.inner
            .state
            .lock()
            .unwrap()
            .bills
            .get(order_id)
            .cloned()
    }

    /// Whether settle commands are answered as they arrive (`true`, the
    /// default) or kept pending until [`Pos::answer_pending_settles`]
    /// (`false`: "the agent is killed between the settle command and the
    /// POS's answer"). Duplicates and refusals are decided on arrival either
    /// way.
    pub fn auto_settle(&self, on: bool) {
        self.inner.auto_settle.store(on, Ordering::SeqCst);
    }

    /// Applies every pending settle command, in arrival order, and queues
    /// their answers; answers how many were applied (refused ones are
    /// recorded in [`PosState::refused_commands`] and not counted).
    pub fn answer_pending_settles(&self) -> usize {
        let mut applied = 0;
        self.inner.update(|s| {
            for cmd in std::mem::take(&mut s.pending_settles) {
                if self.inner.apply_settle(s, cmd) {
                    applied += 1;
                }
            }
        });
        applied
    }

    /// Settle commands applied, in order.
    pub fn settled_commands(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().settled_commands.clone()
    }

    /// Settle commands ignored as duplicates (same `command_id`), in order.
    pub fn duplicate_commands(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().duplicate_commands.clone()
    }

    /// Settle commands refused, with the reason, in order.
    pub fn refused_commands(&self) -> Vec<(Value, String)> {
        self.inner.state.lock().unwrap().refused_commands.clone()
    }

    /// Settle commands waiting for [`Pos::answer_pending_settles`].
    pub fn pending_settles(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().pending_settles.clone()
    }

    /// Events published in answer to settle commands (final `seq`), once
    /// acknowledged by the broker, in order.
    pub fn answers(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().answers.clone()
    }

    /// The largest `seq` the POS has published on `R/events` (0 before any).
    pub async fn last_seq(&self) -> u64 {
        *self.inner.publish_order.lock().await
    }

    /// Fixes the POS clock used for the `occurred_at` and `paid_at` of its
    /// settle answers (`None` = the wall clock at `+01:00`).
    pub fn set_clock(&self, at: Option<DateTime<FixedOffset>>) {
        *self.inner.clock.lock().unwrap() = at;
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

    /// Publishes QoS 1 and waits for the broker's PUBACK. `make` builds the
    /// payload under the publish lock, given the POS's sequence (the largest
    /// `seq` published on `R/events`) to read or raise.
    async fn publish_qos1(
        &self,
        topic: String,
        retain: bool,
        make: impl FnOnce(&mut u64) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut last_seq = self.publish_order.lock().await;
            let payload = make(&mut last_seq);
            self.acks.lock().unwrap().unassigned.push_back(tx);
            self.client
                .publish(topic.clone(), QoS::AtLeastOnce, retain, payload)
                .await?;
        }
        tokio::time::timeout(PUBACK_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow::anyhow!("no PUBACK for {topic} within {PUBACK_TIMEOUT:?}"))?
            .map_err(|_| anyhow::anyhow!("POS event loop ended before PUBACK on {topic}"))?;
        Ok(())
    }

    /// Publishes a settle answer with the next `seq` of the POS's sequence
    /// and records it once acknowledged.
    async fn publish_answer(&self, answer: Answer) -> anyhow::Result<()> {
        let topic = format!("cashpad/{}/events", self.iid);
        let mut envelope = Value::Null;
        self.publish_qos1(topic, false, |last| {
            *last += 1;
            envelope = json!({
                "event_id": random_uuid(),
                "seq": *last,
                "type": answer.event_type,
                "occurred_at": rfc3339(answer.occurred_at),
                "data": answer.data,
            });
            serde_json::to_vec(&envelope).unwrap_or_default()
        })
        .await?;
        self.update(|s| s.answers.push(envelope));
        Ok(())
    }

    /// Applies a published event (§4) to the POS's bills, once per
    /// `event_id`; anything unexpected is ignored (the POS publishes what
    /// tests tell it to).
    fn track_event(&self, event: &Value) {
        let Some(event_id) = event["event_id"].as_str() else {
            return;
        };
        if !self
            .tracked_events
            .lock()
            .unwrap()
            .insert(event_id.to_string())
        {
            return;
        }
        let d = &event["data"];
        let Some(order_id) = d["order_id"].as_str() else {
            return;
        };
        let text = |k: &str| d[k].as_str().unwrap_or("").to_string();
        let cents = |k: &str| d[k].as_i64().unwrap_or(0);
        let lines = || -> Option<Vec<Line>> { serde_json::from_value(d["lines"].clone()).ok() };
        self.update(|s| {
            let new = |table: &str, covers: u32| PosBill::new(order_id, table, covers);
            match event["type"].as_str().unwrap_or("") {
                "table.opened" => {
                    let covers = d["covers"].as_u64().unwrap_or(1) as u32;
                    s.bills
                        .insert(order_id.to_string(), new(&text("table"), covers));
                }
                "order.items_sent" => {
                    let bill = s
                        .bills
                        .entry(order_id.to_string())
                        .or_insert_with(|| new(&text("table"), 1));
                    if let Some(l) = lines() {
                        bill.lines = l;
                    }
                    bill.total_cents = cents("total_cents");
                    if d["table"].is_string() {
                        bill.table = text("table");
                    }
                }
                "table.moved" => {
                    if let Some(bill) = s.bills.get_mut(order_id) {
                        bill.table = text("to_table");
                    }
                }
                "payment.recorded" => {
                    if let Some(bill) = s.bills.get_mut(order_id) {
                        let (amount, tip) = (cents("amount_cents"), cents("tip_cents"));
                        bill.paid_cents += amount;
                        bill.tip_cents += tip;
                        bill.payments.push(Payment::new(
                            &text("method"),
                            amount + tip,
                            &text("reference"),
                        ));
                    }
                }
                "bill.paid" => {
                    let covers = d["covers"].as_u64().unwrap_or(1) as u32;
                    let bill = s
                        .bills
                        .entry(order_id.to_string())
                        .or_insert_with(|| new(&text("table"), covers));
                    if let Some(l) = lines() {
                        bill.lines = l;
                    }
                    bill.table = text("table");
                    bill.total_cents = cents("total_cents");
                    bill.paid_cents = bill.total_cents;
                    bill.tip_cents = cents("tip_cents");
                    if let Ok(p) = serde_json::from_value(d["payments"].clone()) {
                        bill.payments = p;
                    }
                    bill.status = BillStatus::Paid;
                }
                "order.voided" => {
                    if let Some(bill) = s.bills.get_mut(order_id) {
                        bill.status = BillStatus::Voided;
                    }
                }
                _ => {}
            }
        });
    }

    /// A settle command arrived (§7): checks its shape, ignores a known
    /// `command_id`, keeps it pending or applies it.
    fn on_settle(&self, s: &mut PosState, topic: &str, cmd: Value) {
        if let Err(why) = settle_shape(&cmd) {
            s.invalid.push((topic.to_string(), why));
            return;
        }
        let command_id = cmd["command_id"].as_str().expect("checked").to_string();
        if !s.known_command_ids.insert(command_id) {
            s.duplicate_commands.push(cmd);
            return;
        }
        if !self.auto_settle.load(Ordering::SeqCst) {
            s.pending_settles.push(cmd);
            return;
        }
        self.apply_settle(s, cmd);
    }

    /// Records the payment of a (well-formed, new) settle command on its
    /// bill and queues the answer; answers false when refused.
    fn apply_settle(&self, s: &mut PosState, cmd: Value) -> bool {
        let order_id = cmd["order_id"].as_str().unwrap_or("");
        let amount = cmd["amount_cents"].as_i64().unwrap_or(0);
        let tip = cmd["tip_cents"].as_i64().unwrap_or(0);
        let payment_id = cmd["payment_id"].as_str().unwrap_or("");
        let refusal = match s.bills.get(order_id) {
            None => Some(format!("unknown order {order_id}")),
            Some(b) if b.status == BillStatus::Paid => {
                Some(format!("order {order_id} already paid"))
            }
            Some(b) if b.status == BillStatus::Voided => Some(format!("order {order_id} voided")),
            Some(b) if amount > b.due_cents() => Some(format!(
                "amount {amount} exceeds what is due on order {order_id} ({})",
                b.due_cents()
            )),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            s.refused_commands.push((cmd, reason));
            return false;
        }
        let at = self
            .clock
            .lock()
            .unwrap()
            .unwrap_or_else(|| Utc::now().with_timezone(&paris_winter()));
        let bill = s.bills.get_mut(order_id).expect("checked above");
        bill.paid_cents += amount;
        bill.tip_cents += tip;
        bill.payments
            .push(Payment::new("zenchef_pay", amount + tip, payment_id));
        let answer = if bill.paid_cents >= bill.total_cents {
            bill.status = BillStatus::Paid;
            Answer {
                event_type: "bill.paid",
                occurred_at: at,
                data: json!({"order_id": order_id, "table": bill.table, "covers": bill.covers,
                    "lines": bill.lines, "total_cents": bill.total_cents,
                    "tip_cents": bill.tip_cents, "payments": bill.payments,
                    "paid_at": rfc3339(at)}),
            }
        } else {
            Answer {
                event_type: "payment.recorded",
                occurred_at: at,
                data: json!({"order_id": order_id, "amount_cents": amount, "tip_cents": tip,
                    "method": "zenchef_pay", "reference": payment_id}),
            }
        };
        s.settled_commands.push(cmd);
        // The answer task lives as long as the POS; a send error means the
        // runtime is going away.
        let _ = self.answer_tx.send(answer);
        true
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
                    Ok(v) => {
                        s.commands.push(v.clone());
                        self.on_settle(s, topic, v);
                    }
                    Err(e) => s.invalid.push((topic.to_string(), e)),
                }
            } else {
                s.invalid
                    .push((topic.to_string(), "unexpected topic".to_string()));
            }
        });
    }
}

/// Checks a settle command's fields (§7); the error names the bad field.
fn settle_shape(cmd: &Value) -> Result<(), String> {
    if cmd["type"] != "settle" {
        return Err(format!("command type {} is not settle", cmd["type"]));
    }
    for k in ["command_id", "order_id", "payment_id", "method"] {
        if cmd[k].as_str().is_none_or(str::is_empty) {
            return Err(format!("settle command: {k} must be a non-empty string"));
        }
    }
    if cmd["amount_cents"].as_i64().is_none_or(|a| a < 1) {
        return Err("settle command: amount_cents must be integer cents ≥ 1".into());
    }
    if cmd["tip_cents"].as_i64().is_none_or(|t| t < 0) {
        return Err("settle command: tip_cents must be integer cents ≥ 0".into());
    }
    Ok(())
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

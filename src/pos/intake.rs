//! Intake: MQTT messages → validated events → SQLite → PUBACK
//! (docs/architecture.md: acknowledge only what is durable).
//!
//! Messages are taken in batches (everything waiting, up to
//! [`MAX_BATCH`]): one store job, one commit, then the acks. While a batch
//! commits, the next one accumulates — that is the group commit. A bad
//! payload is quarantined (stored with its reason in `rejected`) and
//! acknowledged: it must not come back forever. A duplicate `event_id` is
//! acknowledged and changes nothing.
//!
//! Each committed batch bumps the counter `intake_batches` in its own
//! transaction, so `received / intake_batches` is the average batch size
//! (the benchmarks print it).
//!
//! If the commit fails (disk full, I/O error) nothing is acknowledged: the
//! broker keeps the messages. The batch is retried with a growing pause and
//! an ERROR at most once a minute, until it commits or the agent stops.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::event::{self, EventData};
use super::guard::{Marker, Why};
use super::scan;
use super::session::{Incoming, PosLink};
use crate::outbox::{self, IntakeItem, IntakeOutcome, PaymentChange, Store};
use crate::retry::{Backoff, Retry};

/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Minimum time between two ERROR lines about a failing commit.
const ERROR_EVERY: Duration = Duration::from_secs(60);
/// The pace of retries of a failed commit: 0.4 s after the first failure,
/// doubling up to 5 s (nothing is acknowledged meanwhile).
const COMMIT_RETRY: Backoff = Backoff::new(Duration::from_millis(400), Duration::from_secs(5));

/// Turns one MQTT message into what the store keeps. `root` is
/// `cashpad/<iid>`; `dup` is the message's MQTT DUP flag (a redelivery: a
/// quarantined copy already stored is not stored twice).
pub fn classify(root: &str, topic: &str, payload: &[u8], dup: bool) -> IntakeItem {
    if let Some(m) = Marker::decode(payload) {
        return read_past(topic, &m, dup);
    }
    if topic == format!("{root}/floorplan") {
        return match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(v) if v.get("tables").is_some_and(|t| t.is_array()) => IntakeItem::Floorplan {
                body: v.to_string(),
            },
            Ok(_) => rejected(
                topic,
                None,
                "floor plan: missing field `tables` (an array)".into(),
                payload,
                dup,
            ),
            Err(e) => rejected(
                topic,
                None,
                format!("floor plan is not JSON: {e}"),
                payload,
                dup,
            ),
        };
    }
    match event::parse(payload) {
        Ok(ev) => IntakeItem::Event {
            body: stored_body(&ev, payload),
            event: ev,
        },
        Err(r) => rejected(topic, r.event_id, r.reason, payload, dup),
    }
}

/// The text stored for a valid event: the payload as received, except for
/// a type this agent does not know whose payload is over
/// [`UNKNOWN_KEEP_BYTES`]: nothing reads its `data`, so it is stored as
/// its envelope without `data`, with the size it had (`data_omitted`,
/// bytes of the whole payload).
fn stored_body(ev: &event::PosEvent, payload: &[u8]) -> String {
    if ev.data != EventData::Unknown || payload.len() <= UNKNOWN_KEEP_BYTES {
        return String::from_utf8_lossy(payload).into_owned();
    }
    serde_json::json!({
        "event_id": ev.event_id,
        "seq": ev.seq,
        "type": ev.event_type,
        "occurred_at": ev.occurred_at.to_rfc3339(),
        "data_omitted": payload.len(),
    })
    .to_string()
}

/// Largest payload of an unknown type stored as received (see
/// [`stored_body`]).
pub const UNKNOWN_KEEP_BYTES: usize = 4096;

/// Longest reason stored (a serde message quotes the value it refused,
/// which may be a long string).
const MAX_REASON_CHARS: usize = 500;

/// A message the frame guard read past (`pos::guard`): quarantined with
/// its real size and what its first bytes tell of its id and order.
fn read_past(topic: &str, m: &Marker<'_>, dup: bool) -> IntakeItem {
    let reason = match m.why {
        Why::TooLarge => format!(
            "payload is {} bytes, more than the {} accepted (read past without being stored \
             whole; its first {} bytes are kept)",
            m.size,
            event::MAX_PAYLOAD_BYTES,
            m.head.len()
        ),
        Why::TopicNotUtf8 => format!(
            "topic is not UTF-8 (shown with U+FFFD in its place); payload of {} bytes",
            m.size
        ),
    };
    let scan = scan::Scan::of(m.head);
    IntakeItem::Rejected {
        topic: topic.to_string(),
        event_id: scan.event_id,
        order_id: scan.order_id,
        seq: scan.seq,
        reason,
        head: m.head[..m.head.len().min(outbox::REJECTED_KEEP_BYTES)].to_vec(),
        payload_len: m.size,
        dup,
    }
}

/// The `data.order_id` and `seq` of a payload that failed validation, when
/// they can be read (sync rule 9: a quarantined event of a known order
/// leaves that order in an unknown state).
fn readable_ids(payload: &[u8]) -> (Option<String>, Option<u64>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return (None, None);
    };
    let order = v["data"]["order_id"]
        .as_str()
        .filter(|s| !s.is_empty() && s.chars().count() <= event::MAX_NAME_CHARS)
        .map(str::to_string);
    (order, v["seq"].as_u64())
}

/// Only the first [`outbox::REJECTED_KEEP_BYTES`] of the payload go to the
/// store, **with its real length** (`payload_len`): a 10 MB payload must
/// not look like a 4 KiB one in the `rejected` table and in the journal.
fn rejected(
    topic: &str,
    event_id: Option<String>,
    reason: String,
    payload: &[u8],
    dup: bool,
) -> IntakeItem {
    let (order_id, seq) = if payload.len() <= event::MAX_PAYLOAD_BYTES {
        readable_ids(payload)
    } else {
        (None, None)
    };
    let reason = match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((i, _)) => format!("{}… (cut)", &reason[..i]),
        None => reason,
    };
    IntakeItem::Rejected {
        topic: topic.to_string(),
        event_id,
        order_id,
        seq,
        reason,
        head: payload[..payload.len().min(outbox::REJECTED_KEEP_BYTES)].to_vec(),
        payload_len: payload.len() as u64,
        dup,
    }
}

/// The intake task's context (spawned by `crate::daemon`).
pub struct Intake {
    /// Where every message is stored before it is acknowledged.
    pub store: Store,
    /// POS messages with their ack handles, from the MQTT session.
    pub rx: mpsc::Receiver<Incoming>,
    /// The session the acks go out on (only on the connection a message
    /// came on).
    pub link: PosLink,
    /// The orders a commit touched, to delivery.
    pub touched: mpsc::UnboundedSender<String>,
    /// Zenchef Pay is enabled: rows join its lane.
    pub pay: bool,
    /// Told when a stored event decided a Zenchef Pay payment (its ack is
    /// then sent at once).
    pub wake_pay: Arc<tokio::sync::Notify>,
}

impl Intake {
    /// Runs intake until `cancel`; the batch being committed when `cancel`
    /// fires is finished and acknowledged first.
    pub async fn run(self, cancel: CancellationToken) {
        let Intake {
            store,
            mut rx,
            link,
            touched,
            pay,
            wake_pay,
        } = self;
        let mut unknown_types = UnknownTypes::default();
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => break,
                m = rx.recv() => match m { Some(m) => m, None => break },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let root = link.root().unwrap_or_default();
            let items: Vec<IntakeItem> = batch
                .iter()
                .map(|m| classify(&root, &m.publish.topic, &m.publish.payload, m.publish.dup))
                .collect();
            for item in &items {
                match item {
                    IntakeItem::Rejected {
                        event_id,
                        reason,
                        topic,
                        payload_len,
                        ..
                    } => warn!(
                        event_id = event_id.as_deref().unwrap_or(""),
                        "quarantined a {payload_len}-byte payload from {topic}: {reason}. The POS \
                         sent something this agent cannot read; it is kept in the store \
                         (`rejected`, counted by `status`) and acknowledged so it does not come \
                         back"
                    ),
                    IntakeItem::Event { event, .. } if event.data == EventData::Unknown => {
                        unknown_types.warn_once(&event.event_type, &event.event_id);
                    }
                    _ => {}
                }
            }
            let Some(outcomes) = commit(&store, items, pay, &cancel).await else {
                // Stopping with an uncommitted batch: not acknowledged, the
                // broker redelivers it to the next run.
                return;
            };
            let mut payments_decided = false;
            for (m, outcome) in batch.iter().zip(&outcomes) {
                link.ack(m.generation, &m.publish).await;
                match outcome {
                    IntakeOutcome::Stored {
                        order: Some(order),
                        payments,
                    } => {
                        let _ = touched.send(order.clone());
                        payments_decided |= !payments.is_empty();
                        for change in payments {
                            log_payment_change(order, change);
                        }
                    }
                    IntakeOutcome::Quarantined {
                        attention: Some(order),
                    } => error!(
                        order_id = %order,
                        "order {order} NEEDS ATTENTION: one of its events could not be read (see the \
                         line above); no Zenchef Pay payment is settled on it until the POS sends its \
                         bill again (items sent, paid or voided)"
                    ),
                    IntakeOutcome::Duplicate => {
                        debug!("duplicate event acknowledged, nothing changed")
                    }
                    IntakeOutcome::Floorplan => info!("floor plan received from the POS"),
                    _ => {}
                }
            }
            if payments_decided {
                wake_pay.notify_one();
            }
            crate::watchdog::ping();
        }
        info!("intake stopped");
    }
}

/// Most unknown event types remembered for their once-per-type WARN: the
/// names come from the LAN, so the set is bounded.
pub const MAX_UNKNOWN_TYPES: usize = 64;

/// The unknown event types already logged (at most
/// [`MAX_UNKNOWN_TYPES`]; past that, one WARN says the next ones are not
/// logged one by one).
#[derive(Default)]
struct UnknownTypes {
    seen: HashSet<String>,
    full: bool,
}

impl UnknownTypes {
    /// The WARN of an unknown type, the first time it is seen.
    fn warn_once(&mut self, event_type: &str, event_id: &str) {
        if self.seen.contains(event_type) || self.full {
            return;
        }
        if self.seen.len() >= MAX_UNKNOWN_TYPES {
            self.full = true;
            warn!(
                event_id,
                "unknown event type \"{event_type}\": stored and skipped; {MAX_UNKNOWN_TYPES} \
                 unknown types seen already, the next ones are stored and skipped without a line \
                 each (counted by `status`: unknown_type)"
            );
            return;
        }
        self.seen.insert(event_type.to_string());
        warn!(
            event_id,
            "unknown event type \"{event_type}\": stored and skipped (logged once per type)"
        );
    }
}

/// The journal line of a Zenchef Pay payment decided by a POS event.
fn log_payment_change(order: &str, change: &PaymentChange) {
    match change {
        PaymentChange::Answered { payment_id } => info!(
            payment_id = %payment_id, order_id = %order,
            "the POS recorded Zenchef Pay payment {payment_id}: acknowledging it settled"
        ),
        PaymentChange::ClosedWithout {
            payment_id,
            amount_cents,
            reason,
        } => error!(
            payment_id = %payment_id, order_id = %order,
            message_id = crate::message_ids::PAYMENT_REFUSED,
            "Zenchef Pay payment {payment_id} of {amount_cents} cents REFUSED: {reason}; \
             Zenchef Pay refunds the guest (the bill was settled otherwise: nobody pays twice)"
        ),
        PaymentChange::Contradiction { payment_id } => error!(
            payment_id = %payment_id, order_id = %order,
            message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
            "NEEDS A PERSON: the POS recorded Zenchef Pay payment {payment_id} after closing or \
             voiding order {order} without it: neither settled nor refused; decide it in Zenchef Pay"
        ),
        PaymentChange::RecordedTwice { payment_id } => error!(
            payment_id = %payment_id, order_id = %order,
            message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
            "NEEDS A PERSON: the POS recorded Zenchef Pay payment {payment_id} twice: the bill of \
             order {order} counts it twice (the agent counts it once)"
        ),
        PaymentChange::ReportedAfterRefund { payment_id } => error!(
            payment_id = %payment_id, order_id = %order,
            message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
            "NEEDS A PERSON: the POS recorded Zenchef Pay payment {payment_id} after it was \
             refused and refunded: the bill of order {order} counts money the guest got back"
        ),
    }
}

/// Commits a batch, retrying until it lands or `cancel` fires (`None`).
async fn commit(
    store: &Store,
    items: Vec<IntakeItem>,
    pay: bool,
    cancel: &CancellationToken,
) -> Option<Vec<IntakeOutcome>> {
    let items = Arc::new(items);
    let mut retry = Retry::new(COMMIT_RETRY);
    let mut last_error: Option<tokio::time::Instant> = None;
    loop {
        let job = Arc::clone(&items);
        let stored = store.write(move |c| {
            let outcomes = outbox::insert_batch(c, &job, pay)?;
            // Same transaction: average batch = received / intake_batches.
            outbox::bump(c, "intake_batches", 1)?;
            Ok(outcomes)
        });
        match stored.await {
            Ok(outcomes) => {
                let failures = retry.failures();
                if failures > 0 {
                    info!(
                        "the store accepts writes again after {failures} failed commit(s); acknowledging"
                    );
                }
                return Some(outcomes);
            }
            Err(e) => {
                let wait = retry.failed(None);
                if last_error.is_none_or(|t| t.elapsed() >= ERROR_EVERY) {
                    error!(
                        "cannot store {} POS message(s): {e}. Nothing is acknowledged, so the POS \
                         broker keeps them; retrying",
                        items.len()
                    );
                    last_error = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_rejected_payload_keeps_its_real_length() {
        let payload = vec![b'x'; 2 * 1024 * 1024];
        let item = classify("cashpad/CP-1", "cashpad/CP-1/events", &payload, false);
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(move |c| outbox::insert_batch(c, &[item], false))
            .await
            .unwrap();
        let (kept, len, reason): (i64, i64, String) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT length(payload), payload_len, reason FROM rejected",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(kept as usize, outbox::REJECTED_KEEP_BYTES);
        assert_eq!(len, 2 * 1024 * 1024, "the real size, not the kept one");
        assert!(reason.contains("payload is 2097152 bytes"), "{reason}");
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        (dir, store)
    }

    /// A marker of the frame guard is quarantined with the real size and
    /// what its first bytes tell; its redelivery (DUP) is not stored twice,
    /// but a new message with the same bytes (no DUP) is.
    #[tokio::test]
    async fn a_read_past_message_is_quarantined_once_with_its_size() {
        let (_dir, store) = store().await;
        let head = br#"{"event_id":"e-big","seq":12,"type":"bill.paid","data":{"order_id":"O-1","lines":["#;
        let marker = Marker {
            why: Why::TooLarge,
            size: 17 * 1024 * 1024,
            head,
        }
        .encode();
        let item = |dup| classify("cashpad/CP-1", "cashpad/CP-1/events", &marker, dup);
        let IntakeItem::Rejected {
            event_id,
            order_id,
            seq,
            reason,
            payload_len,
            ..
        } = item(false)
        else {
            panic!("not quarantined")
        };
        assert_eq!(event_id.as_deref(), Some("e-big"));
        assert_eq!(order_id.as_deref(), Some("O-1"));
        assert_eq!(seq, Some(12));
        assert_eq!(payload_len, 17 * 1024 * 1024);
        assert!(
            reason.starts_with("payload is 17825792 bytes, more than the 1048576 accepted"),
            "{reason}"
        );
        let items = vec![item(false), item(true), item(false)];
        let outcomes = store
            .write(move |c| outbox::insert_batch(c, &items, false))
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            vec![
                IntakeOutcome::Quarantined { attention: None },
                IntakeOutcome::Duplicate,
                IntakeOutcome::Quarantined { attention: None },
            ]
        );
        let (rows, len, kept): (i64, i64, Vec<u8>) = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*), MAX(payload_len), MAX(payload) FROM rejected",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!((rows, len), (2, 17 * 1024 * 1024));
        assert_eq!(kept, head.to_vec(), "the first bytes are kept");
    }

    /// A payload that merely looks like a marker (another nonce: the LAN
    /// cannot know this process's) is a payload like any other.
    #[test]
    fn a_forged_marker_is_only_a_bad_payload() {
        let mut forged = Marker {
            why: Why::TooLarge,
            size: 5,
            head: b"{}",
        }
        .encode();
        let n = crate::pos::guard::MARKER_TAG.len();
        forged[n] ^= 0xff;
        let IntakeItem::Rejected {
            reason,
            payload_len,
            ..
        } = classify("cashpad/CP-1", "cashpad/CP-1/events", &forged, false)
        else {
            panic!("not quarantined")
        };
        assert_eq!(payload_len, forged.len() as u64);
        assert!(reason.starts_with("payload is not"), "{reason}");
    }

    /// An unknown type's large payload is stored as its envelope and size;
    /// a small one as received.
    #[test]
    fn an_unknown_type_stores_a_bounded_body() {
        let big = serde_json::json!({"event_id":"u-1","seq":3,"type":"kitchen.ready",
            "occurred_at":"2026-11-29T19:42:05+01:00","data":{"pad":"x".repeat(200_000)}})
        .to_string();
        let IntakeItem::Event { body, event } =
            classify("cashpad/CP-1", "cashpad/CP-1/events", big.as_bytes(), false)
        else {
            panic!("not an event")
        };
        assert_eq!(event.data, EventData::Unknown);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event_id"], "u-1");
        assert_eq!(v["data_omitted"], big.len());
        assert!(body.len() < 300, "{body}");
        let small = r#"{"event_id":"u-2","seq":4,"type":"kitchen.ready","occurred_at":"2026-11-29T19:42:05+01:00","data":{}}"#;
        let IntakeItem::Event { body, .. } = classify(
            "cashpad/CP-1",
            "cashpad/CP-1/events",
            small.as_bytes(),
            false,
        ) else {
            panic!("not an event")
        };
        assert_eq!(body, small);
    }

    #[test]
    fn unknown_types_are_remembered_up_to_a_bound() {
        let mut u = UnknownTypes::default();
        for i in 0..10 * MAX_UNKNOWN_TYPES {
            u.warn_once(&format!("t.{i}"), "e");
        }
        assert_eq!(u.seen.len(), MAX_UNKNOWN_TYPES);
        assert!(u.full);
    }
}

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
/// `cashpad/<iid>`.
pub fn classify(root: &str, topic: &str, payload: &[u8]) -> IntakeItem {
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
            ),
            Err(e) => rejected(topic, None, format!("floor plan is not JSON: {e}"), payload),
        };
    }
    match event::parse(payload) {
        Ok(ev) => IntakeItem::Event {
            body: String::from_utf8_lossy(payload).into_owned(),
            event: ev,
        },
        Err(r) => rejected(topic, r.event_id, r.reason, payload),
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

/// The whole payload goes to the store, which keeps its first
/// [`outbox::REJECTED_KEEP_BYTES`] **and its real length** (`payload_len`):
/// cutting it here made a 10 MB payload look like a 64 KiB one in the
/// `rejected` table and in the journal.
fn rejected(topic: &str, event_id: Option<String>, reason: String, payload: &[u8]) -> IntakeItem {
    let (order_id, seq) = if payload.len() <= event::MAX_PAYLOAD_BYTES {
        readable_ids(payload)
    } else {
        (None, None)
    };
    IntakeItem::Rejected {
        topic: topic.to_string(),
        event_id,
        order_id,
        seq,
        reason,
        payload: payload.to_vec(),
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
        let mut unknown_types: HashSet<String> = HashSet::new();
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
                .map(|m| classify(&root, &m.publish.topic, &m.publish.payload))
                .collect();
            for item in &items {
                match item {
                    IntakeItem::Rejected {
                        event_id,
                        reason,
                        topic,
                        payload,
                        ..
                    } => warn!(
                        event_id = event_id.as_deref().unwrap_or(""),
                        "quarantined a {}-byte payload from {topic}: {reason}. The POS sent something \
                     this agent cannot read; it is kept in the store (`rejected`, counted by \
                     `status`) and acknowledged so it does not come back",
                        payload.len()
                    ),
                    IntakeItem::Event { event, .. }
                        if event.data == EventData::Unknown
                            && unknown_types.insert(event.event_type.clone()) =>
                    {
                        warn!(
                            event_id = %event.event_id,
                            "unknown event type \"{}\": stored and skipped (logged once per type)",
                            event.event_type
                        );
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
            crate::sd_status::watchdog_ping();
        }
        info!("intake stopped");
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
        let item = classify("cashpad/CP-1", "cashpad/CP-1/events", &payload);
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
}

//! Received events (table `events`) and what intake stores with them: the
//! outbox row of each event of an order ([`super::queue`]), the
//! quarantined payloads (table `rejected`), the retained floor plan, and
//! the Zenchef Pay payments a stored event decides (sync rule 7).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::kv::{bump, kv_set};
use super::payments::{self, PaymentChange};
use super::queue::{self, State};
use crate::time::now_utc;
use domain::event::{EventData, Method, PosEvent};

/// Bytes of a quarantined payload kept in the `rejected` table (its real
/// size is kept beside them): enough to see what it was, never what the
/// LAN chose to send (cashpad §2a).
pub const REJECTED_KEEP_BYTES: usize = 4096;
/// How many of the latest `rejected` rows a redelivered (MQTT DUP)
/// quarantined message is compared with.
const DUP_WINDOW: i64 = 1000;

/// What intake hands to the store for one MQTT message.
#[derive(Debug, Clone)]
pub enum IntakeItem {
    /// A valid event and its payload text as received.
    Event {
        /// The parsed event.
        event: PosEvent,
        /// The payload, stored verbatim.
        body: String,
    },
    /// A payload that failed validation: quarantined with its reason.
    Rejected {
        /// MQTT topic.
        topic: String,
        /// The `event_id` if readable.
        event_id: Option<String>,
        /// `data.order_id` if readable: a known order then needs attention
        /// (sync rule 9).
        order_id: Option<String>,
        /// `seq` if readable.
        seq: Option<u64>,
        /// Why (names the field).
        reason: String,
        /// The payload's first bytes (at most [`REJECTED_KEEP_BYTES`]).
        head: Vec<u8>,
        /// The payload's real size, bytes.
        payload_len: u64,
        /// The MQTT DUP flag: a redelivery. A row of the same topic, size
        /// and first bytes among the latest ones is then this message
        /// already stored, and nothing is stored again.
        dup: bool,
    },
    /// The retained floor plan (cashpad §5), stored as received.
    Floorplan {
        /// JSON text.
        body: String,
    },
}

/// What became of one [`IntakeItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// New event stored.
    Stored {
        /// The order whose queue it joined (`None`: unknown type).
        order: Option<String>,
        /// Zenchef Pay payments whose fate the event decided (rule 7).
        payments: Vec<PaymentChange>,
    },
    /// Same `event_id` already stored: nothing changed.
    Duplicate,
    /// Quarantined in `rejected`; `attention` names the known order that
    /// now needs attention (rule 9).
    Quarantined {
        /// The known order the payload belonged to.
        attention: Option<String>,
    },
    /// Floor plan stored.
    Floorplan,
}

/// The Zenchef Pay payments an event reports: `(payment_id, amount, tip)`
/// of each `zenchef_pay` payment with a reference.
fn reported_payments(event: &PosEvent) -> Vec<(String, i64, i64)> {
    let reference = |m: Method, r: &Option<String>| {
        (m == Method::ZenchefPay)
            .then(|| r.clone().filter(|r| !r.is_empty()))
            .flatten()
    };
    match &event.data {
        EventData::PaymentRecorded(d) => reference(d.method, &d.reference)
            .map(|r| vec![(r, d.amount_cents.0, d.tip_cents.0)])
            .unwrap_or_default(),
        EventData::BillPaid(d) => d
            .payments
            .iter()
            .filter_map(|p| reference(p.method, &p.reference).map(|r| (r, p.amount_cents.0, 0)))
            .collect(),
        _ => Vec::new(),
    }
}

/// What a newly stored event decides of the order's Zenchef Pay payments,
/// in the same transaction (sync rule 7): each payment it reports is
/// answered; a closing event refuses the ones still waiting without their
/// reference.
fn settle_from_event(
    conn: &Connection,
    event: &PosEvent,
) -> Result<Vec<PaymentChange>, StoreError> {
    let Some(order_id) = event.data.order_id() else {
        return Ok(Vec::new());
    };
    let reported = reported_payments(event);
    let partial = matches!(event.data, EventData::PaymentRecorded(_));
    let mut changes = Vec::new();
    for (payment_id, amount, tip) in &reported {
        changes.extend(payments::reported(
            conn, order_id, payment_id, *amount, *tip, partial,
        )?);
    }
    let voided = matches!(event.data, EventData::OrderVoided(_));
    if voided || matches!(event.data, EventData::BillPaid(_)) {
        let refs: Vec<String> = reported.into_iter().map(|(r, _, _)| r).collect();
        changes.extend(payments::close_pending(conn, order_id, &refs, voided)?);
    }
    Ok(changes)
}

/// Stores a batch of intake items (one job of the group commit). `pay`:
/// Zenchef Pay is enabled, so rows that change a check join the Pay lane.
///
/// The hot path of intake: statements come from the connection's cache
/// and the counters are bumped once per batch, not once per event.
pub fn insert_batch(
    conn: &Connection,
    items: &[IntakeItem],
    pay: bool,
) -> Result<Vec<IntakeOutcome>, StoreError> {
    let now = now_utc();
    let mut out = Vec::with_capacity(items.len());
    let mut tally = Tally::default();
    for item in items {
        out.push(match item {
            IntakeItem::Event { event, body } => {
                insert_event(conn, event, body, pay, &now, &mut tally)?
            }
            IntakeItem::Rejected {
                topic,
                event_id,
                order_id,
                seq,
                reason,
                head,
                payload_len,
                dup,
            } => insert_rejected(
                conn,
                &now,
                Quarantine {
                    topic,
                    event_id: event_id.as_deref(),
                    order_id: order_id.as_deref(),
                    seq: *seq,
                    reason,
                    head,
                    payload_len: *payload_len,
                    dup: *dup,
                },
                &mut tally,
            )?,
            IntakeItem::Floorplan { body } => {
                kv_set(conn, "floorplan", body)?;
                IntakeOutcome::Floorplan
            }
        });
    }
    for (name, n) in [
        ("received", tally.received),
        ("duplicates", tally.duplicates),
        ("unknown_type", tally.unknown),
    ] {
        if n > 0 {
            bump(conn, name, n)?;
        }
    }
    Ok(out)
}

/// One [`IntakeItem::Rejected`], borrowed.
struct Quarantine<'a> {
    topic: &'a str,
    event_id: Option<&'a str>,
    order_id: Option<&'a str>,
    seq: Option<u64>,
    reason: &'a str,
    head: &'a [u8],
    payload_len: u64,
    dup: bool,
}

/// Stores a quarantined message (its first bytes and real size) unless it
/// is a redelivery of one stored already; a known order it names now
/// needs attention (sync rule 9).
fn insert_rejected(
    conn: &Connection,
    now: &str,
    q: Quarantine<'_>,
    tally: &mut Tally,
) -> Result<IntakeOutcome, StoreError> {
    let head = &q.head[..q.head.len().min(REJECTED_KEEP_BYTES)];
    let len = q.payload_len.min(i64::MAX as u64) as i64;
    if q.dup && quarantined_already(conn, q.topic, len, head)? {
        tally.duplicates += 1;
        return Ok(IntakeOutcome::Duplicate);
    }
    let last_seq: Option<i64> = match (q.order_id, q.seq) {
        (Some(o), None) => conn
            .prepare_cached("SELECT MAX(seq) FROM events WHERE order_id = ?1")?
            .query_row([o], |r| r.get(0))?,
        _ => None,
    };
    let seq = q.seq.map(|s| s.min(i64::MAX as u64) as i64).or(last_seq);
    conn.prepare_cached(
        "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len,
                              order_id, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        now, q.topic, q.event_id, q.reason, head, len, q.order_id, seq
    ])?;
    let attention = match q.order_id {
        Some(o) => has_events(conn, o)?.then(|| o.to_string()),
        None => None,
    };
    Ok(IntakeOutcome::Quarantined { attention })
}

/// Is a message of `topic`, `len` bytes, beginning with `head`, among the
/// latest [`DUP_WINDOW`] quarantined ones? (A redelivery after a crash
/// between the commit and the PUBACK comes at the next connection.)
fn quarantined_already(
    conn: &Connection,
    topic: &str,
    len: i64,
    head: &[u8],
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM rejected
              WHERE id > (SELECT COALESCE(MAX(id), 0) FROM rejected) - ?1
                AND payload_len = ?2 AND topic = ?3 AND payload = ?4
              LIMIT 1",
        )?
        .query_row(params![DUP_WINDOW, len, topic, head], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Events of a batch by what became of them (the counters bumped once per
/// batch).
#[derive(Default)]
struct Tally {
    received: i64,
    duplicates: i64,
    unknown: i64,
}

/// Stores one valid event, and its outbox row when it belongs to an order.
fn insert_event(
    conn: &Connection,
    event: &PosEvent,
    body: &str,
    pay: bool,
    now: &str,
    tally: &mut Tally,
) -> Result<IntakeOutcome, StoreError> {
    let order_id = event.data.order_id();
    let known = order_id.is_some();
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            event.event_id,
            event.seq as i64,
            event.event_type,
            order_id,
            event.occurred_at.to_rfc3339(),
            body,
            known,
            now
        ])?;
    if n == 0 {
        tally.duplicates += 1;
        return Ok(IntakeOutcome::Duplicate);
    }
    tally.received += 1;
    let Some(order_id) = order_id else {
        tally.unknown += 1;
        return Ok(IntakeOutcome::Stored {
            order: None,
            payments: Vec::new(),
        });
    };
    let pay_state = if pay && queue::needs_pay_lane(&event.event_type) {
        State::Queued
    } else {
        State::Done
    };
    conn.prepare_cached(
        "INSERT INTO outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)",
    )?
    .execute(params![
        event.event_id,
        order_id,
        event.seq as i64,
        event.event_type,
        pay_state,
        now
    ])?;
    Ok(IntakeOutcome::Stored {
        order: Some(order_id.to_string()),
        payments: settle_from_event(conn, event)?,
    })
}

/// Has at least one event of order `order_id` been stored?
pub fn has_events(conn: &Connection, order_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM events WHERE order_id = ?1 LIMIT 1")?
        .query_row([order_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Has order `order_id` a stored event or an order row (`link`: is the
/// order known at all)?
pub fn order_known(conn: &Connection, order_id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM events WHERE order_id = ?1)
             OR EXISTS(SELECT 1 FROM orders WHERE order_id = ?1)",
        [order_id],
        |r| r.get(0),
    )?)
}

/// The payload of an order's first stored event (lowest `seq`).
pub fn first_body(conn: &Connection, order_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT body FROM events WHERE order_id = ?1 ORDER BY seq LIMIT 1",
            [order_id],
            |x| x.get(0),
        )
        .optional()?)
}

//! The outbox: the SQLite store and all of its SQL — received events, their
//! per-order delivery queue with its two lanes ([`queue`]), orders and
//! their stored truth ([`orders`]), Zenchef Pay payments and checks
//! ([`payments`]), the reservation mirror, quarantined payloads and
//! counters — as plain functions on a `&Connection` that run inside the
//! store thread's group transaction ([`store::Store::write`]). Delivery
//! itself (who calls what, when) is in `crate::delivery`.

pub mod migrations;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod retention;
pub mod status;
pub mod store;

use rusqlite::{Connection, OptionalExtension, params};

use crate::pos::event::{EventData, Method, PosEvent};
pub use orders::{
    AttentionOrder, link_walkin, linked_open_bookings, load_order, order_attention, order_truth,
    save_order,
};
pub use payments::{NeedsPerson, PaymentChange};
pub use queue::{Lane, OutboxItem, RowState};
pub use store::{Store, StoreError};

/// Bytes of a quarantined payload kept in the `rejected` table.
pub const REJECTED_KEEP_BYTES: usize = 64 * 1024;

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
        /// The payload (cut to [`REJECTED_KEEP_BYTES`] when stored).
        payload: Vec<u8>,
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

/// Box clock, UTC, RFC 3339 with milliseconds (`2026-11-29T18:42:05.123Z`):
/// informational timestamps only (never ordering). Milliseconds let the
/// benchmarks measure publish → stored latency from `events.received_at`.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
    let (mut received, mut duplicates, mut unknown) = (0, 0, 0);
    for item in items {
        out.push(match item {
            IntakeItem::Event { event, body } => {
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
                    duplicates += 1;
                    IntakeOutcome::Duplicate
                } else if let Some(order_id) = order_id {
                    let pay_state = if pay && queue::needs_pay_lane(&event.event_type) {
                        "queued"
                    } else {
                        "done"
                    };
                    conn.prepare_cached(
                        "INSERT INTO outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
                         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6)",
                    )?
                    .execute(params![event.event_id, order_id, event.seq as i64, event.event_type, pay_state, now])?;
                    received += 1;
                    IntakeOutcome::Stored {
                        order: Some(order_id.to_string()),
                        payments: settle_from_event(conn, event)?,
                    }
                } else {
                    received += 1;
                    unknown += 1;
                    IntakeOutcome::Stored {
                        order: None,
                        payments: Vec::new(),
                    }
                }
            }
            IntakeItem::Rejected {
                topic,
                event_id,
                order_id,
                seq,
                reason,
                payload,
            } => {
                let kept = &payload[..payload.len().min(REJECTED_KEEP_BYTES)];
                let last_seq: Option<i64> = match (order_id, seq) {
                    (Some(o), None) => conn
                        .prepare_cached("SELECT MAX(seq) FROM events WHERE order_id = ?1")?
                        .query_row([o], |r| r.get(0))?,
                    _ => None,
                };
                let seq = seq.map(|s| s.min(i64::MAX as u64) as i64).or(last_seq);
                conn.prepare_cached(
                    "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len,
                                          order_id, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![now, topic, event_id, reason, kept, payload.len() as i64, order_id, seq])?;
                let attention = match order_id {
                    Some(o) => conn
                        .prepare_cached("SELECT 1 FROM events WHERE order_id = ?1 LIMIT 1")?
                        .query_row([o], |_| Ok(()))
                        .optional()?
                        .map(|_| o.clone()),
                    None => None,
                };
                IntakeOutcome::Quarantined { attention }
            }
            IntakeItem::Floorplan { body } => {
                kv_set(conn, "floorplan", body)?;
                IntakeOutcome::Floorplan
            }
        });
    }
    for (name, n) in [
        ("received", received),
        ("duplicates", duplicates),
        ("unknown_type", unknown),
    ] {
        if n > 0 {
            bump(conn, name, n)?;
        }
    }
    Ok(out)
}

/// Adds `n` to a named counter.
pub fn bump(conn: &Connection, name: &str, n: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![name, n])?;
    Ok(())
}

/// Reads a counter (0 when absent).
pub fn counter(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

/// Sets a key of the `kv` table.
pub fn kv_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Reads a key of the `kv` table.
pub fn kv_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Counts shown by `status` (and the demo summary).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Events stored (new, valid).
    pub received: i64,
    /// Second deliveries of an already stored `event_id`.
    pub duplicates: i64,
    /// Events of an unknown type (stored, skipped).
    pub unknown_type: i64,
    /// Outbox rows delivered (Zenchef lane).
    pub delivered: i64,
    /// Outbox rows waiting in the Zenchef lane.
    pub queued: i64,
    /// Dead letters of the Zenchef lane.
    pub dead: i64,
    /// Outbox rows waiting in the Zenchef Pay lane (check pushes).
    pub pay_queued: i64,
    /// Dead letters of the Zenchef Pay lane.
    pub pay_dead: i64,
    /// Quarantined payloads.
    pub rejected: i64,
    /// Walk-ins created in Zenchef.
    pub walkins_created: i64,
    /// Orders still open on the POS.
    pub orders_open: i64,
    /// Reservations currently published to the POS.
    pub reservations_published: i64,
    /// Zenchef Pay check versions accepted (PUT answered 2xx or 409 ≥ ours).
    pub pay_checks_pushed: i64,
    /// Zenchef Pay payments settled in the POS and acknowledged.
    pub pay_settled: i64,
    /// Zenchef Pay payments refused (acked `rejected`, guest refunded).
    pub pay_rejected: i64,
    /// Zenchef Pay payments waiting for the POS (settle command sent or to send).
    pub pay_pending: i64,
    /// Zenchef Pay payments that need a person (a silent POS after the
    /// resends, an unreadable payment, …).
    pub pay_needs_person: i64,
    /// Zenchef Pay payments adopted from before this store, waiting for
    /// the POS to decide them.
    pub pay_adopted: i64,
    /// Known orders that need attention (one of their events was
    /// quarantined, sync rule 9).
    pub orders_attention: i64,
}

/// Reads the counts (works on a read-only connection).
pub fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    let q = |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    Ok(Counts {
        received: counter(conn, "received")?,
        duplicates: counter(conn, "duplicates")?,
        unknown_type: counter(conn, "unknown_type")?,
        delivered: counter(conn, "delivered")?,
        walkins_created: counter(conn, "walkins_created")?,
        queued: q("SELECT COUNT(*) FROM outbox WHERE state = 'queued'")?,
        dead: q("SELECT COUNT(*) FROM outbox WHERE state = 'dead'")?,
        rejected: q("SELECT COUNT(*) FROM rejected")?,
        orders_open: q("SELECT COUNT(*) FROM orders WHERE state = 'open'")?,
        reservations_published: q("SELECT COUNT(*) FROM reservations WHERE body IS NOT NULL")?,
        pay_checks_pushed: counter(conn, "pay_checks_pushed")?,
        pay_settled: q("SELECT COUNT(*) FROM pay_payments WHERE state = 'settled'")?,
        pay_rejected: q("SELECT COUNT(*) FROM pay_payments WHERE state IN ('reject', 'rejected')")?,
        pay_pending: q(
            "SELECT COUNT(*) FROM pay_payments WHERE state IN ('settle', 'command_sent')",
        )?,
        // Read-only readers (`status`) may meet a store not yet migrated
        // by the daemon: these columns then read as 0.
        // `pay_state != 'done' AND …` lets the partial index
        // outbox_pay_pending answer (alone, `pay_state = 'queued'` scans
        // every row ever kept: seconds on a store of years).
        pay_queued: q(
            "SELECT COUNT(*) FROM outbox WHERE pay_state != 'done' AND pay_state = 'queued'",
        )
        .unwrap_or(0),
        pay_dead: q("SELECT COUNT(*) FROM outbox WHERE pay_state != 'done' AND pay_state = 'dead'")
            .unwrap_or(0),
        pay_needs_person: q(
            "SELECT COUNT(*) FROM pay_payments WHERE attention IS NOT NULL AND handled_at IS NULL",
        )
        .unwrap_or(0),
        pay_adopted: q("SELECT COUNT(*) FROM pay_payments WHERE state = 'adopted'").unwrap_or(0),
        orders_attention: orders::attention_orders(conn)
            .map(|v| v.len() as i64)
            .unwrap_or(0),
    })
}

#[cfg(test)]
#[path = "plans_tests.rs"]
mod plans_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::event::parse;
    use queue::{next_pending, ready_orders, record_failure};

    fn stored(order: &str) -> IntakeOutcome {
        IntakeOutcome::Stored {
            order: Some(order.into()),
            payments: vec![],
        }
    }

    fn event(id: &str, seq: u64, order: &str) -> IntakeItem {
        let body = serde_json::json!({"event_id":id,"seq":seq,"type":"table.moved",
            "occurred_at":"2026-11-29T19:42:05+01:00",
            "data":{"order_id":order,"from_table":"1","to_table":"2"}})
        .to_string();
        IntakeItem::Event {
            event: parse(body.as_bytes()).unwrap(),
            body,
        }
    }

    #[tokio::test]
    async fn duplicates_and_per_order_heads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let (store, _) = Store::open(&path).unwrap();
        let out = store
            .write(|c| {
                insert_batch(
                    c,
                    &[
                        event("a", 2, "O-1"),
                        event("b", 1, "O-1"),
                        event("c", 3, "O-2"),
                        event("a", 2, "O-1"),
                    ],
                    true,
                )
            })
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                stored("O-1"),
                stored("O-1"),
                stored("O-2"),
                IntakeOutcome::Duplicate
            ]
        );
        drop(store);
        // A second open of the same file (as after a restart) sees it all.
        let (store, outcome) = Store::open(&path).unwrap();
        assert_eq!(outcome, store::OpenOutcome::Opened);
        let (head, ready, counts) = store
            .read(|c| {
                Ok((
                    next_pending(c, Lane::Zenchef, "O-1")?,
                    ready_orders(c, Lane::Zenchef)?,
                    counts(c)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(
            head.unwrap().event_id,
            "b",
            "lowest seq first, whatever the arrival order"
        );
        assert_eq!(ready, vec!["O-1".to_string(), "O-2".to_string()]);
        assert_eq!(
            (
                counts.received,
                counts.duplicates,
                counts.queued,
                counts.pay_queued
            ),
            (3, 1, 3, 3)
        );
    }

    #[tokio::test]
    async fn a_dead_head_holds_its_order_but_not_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(|c| {
                insert_batch(
                    c,
                    &[
                        event("a", 1, "O-1"),
                        event("b", 2, "O-1"),
                        event("c", 3, "O-2"),
                    ],
                    true,
                )
            })
            .await
            .unwrap();
        let (zenchef, pay) = store
            .write(|c| {
                let head = next_pending(c, Lane::Zenchef, "O-1")?.unwrap();
                record_failure(c, head.id, None, "422 unknown table", true)?;
                Ok((ready_orders(c, Lane::Zenchef)?, ready_orders(c, Lane::Pay)?))
            })
            .await
            .unwrap();
        assert_eq!(zenchef, vec!["O-2".to_string()]);
        assert_eq!(
            pay,
            vec!["O-1".to_string(), "O-2".to_string()],
            "a dead Zenchef call never holds the order's Pay lane"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        std::fs::write(&path, b"this is not an SQLite file, just garbage bytes ....................................................................").unwrap();
        let (store, outcome) = Store::open(&path).unwrap();
        let store::OpenOutcome::MovedAside(aside) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(aside.exists());
        assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not"));
        let n = store.read(counts).await.unwrap();
        assert_eq!(n, Counts::default());
    }
}

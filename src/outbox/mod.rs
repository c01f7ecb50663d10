//! The outbox: received events, their per-order delivery queue, order
//! state, the reservation mirror, quarantined payloads and counters — the
//! SQL of all of it, as plain functions on a `&Connection` that run inside
//! the store thread's group transaction ([`store::Store::write`]).
//!
//! Outbox row states: `queued` (to deliver), `done` (delivered or nothing to
//! do), `dead` (a call was refused as "can never succeed as is"; holds back
//! the later events of the same order until a technician retries it).

pub mod dispatcher;
pub mod migrations;
pub mod store;

use rusqlite::{Connection, OptionalExtension, params};

use crate::pos::event::PosEvent;
use crate::sync::{Link, OrderState, OrderStatus, Plan};
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
    /// New event stored; `Some(order)` when it joined that order's queue.
    Stored(Option<String>),
    /// Same `event_id` already stored: nothing changed.
    Duplicate,
    /// Quarantined in `rejected`.
    Quarantined,
    /// Floor plan stored.
    Floorplan,
}

/// Box clock, UTC, RFC 3339 with milliseconds (`2026-11-29T18:42:05.123Z`):
/// informational timestamps only (never ordering). Milliseconds let the
/// benchmarks measure publish → stored latency from `events.received_at`.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Stores a batch of intake items (one job of the group commit).
///
/// The hot path of intake: statements come from the connection's cache
/// and the counters are bumped once per batch, not once per event.
pub fn insert_batch(
    conn: &Connection,
    items: &[IntakeItem],
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
                    conn.prepare_cached(
                        "INSERT INTO outbox(event_id, order_id, seq, type, state, updated_at)
                         VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
                    )?
                    .execute(params![event.event_id, order_id, event.seq as i64, event.event_type, now])?;
                    received += 1;
                    IntakeOutcome::Stored(Some(order_id.to_string()))
                } else {
                    received += 1;
                    unknown += 1;
                    IntakeOutcome::Stored(None)
                }
            }
            IntakeItem::Rejected {
                topic,
                event_id,
                reason,
                payload,
            } => {
                let kept = &payload[..payload.len().min(REJECTED_KEEP_BYTES)];
                conn.execute(
                    "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![now, topic, event_id, reason, kept, payload.len() as i64],
                )?;
                IntakeOutcome::Quarantined
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

/// An outbox row with its event.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// Order id.
    pub order_id: String,
    /// POS seq.
    pub seq: i64,
    /// Event type.
    pub event_type: String,
    /// `queued` or `dead`.
    pub state: String,
    /// Failed tries so far.
    pub attempts: i64,
    /// The stored plan, once decided.
    pub plan: Option<Plan>,
    /// The payload as received.
    pub body: String,
}

/// The next undelivered event of an order (lowest `seq`), queued or dead.
pub fn next_pending(conn: &Connection, order_id: &str) -> Result<Option<OutboxItem>, StoreError> {
    let row = conn
        .query_row(
            "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, o.state, o.attempts, o.plan, e.body
             FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.order_id = ?1 AND o.state != 'done'
             ORDER BY o.seq, o.id LIMIT 1",
            [order_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((id, event_id, order_id, seq, event_type, state, attempts, plan, body)) = row else {
        return Ok(None);
    };
    let plan = match plan {
        Some(p) => Some(serde_json::from_str(&p)?),
        None => None,
    };
    Ok(Some(OutboxItem {
        id,
        event_id,
        order_id,
        seq,
        event_type,
        state,
        attempts,
        plan,
        body,
    }))
}

/// The next undelivered event of an order with the order's state, read in
/// one store job (the dispatcher's single round trip between two events).
pub fn next_with_order(
    conn: &Connection,
    order_id: &str,
) -> Result<Option<(OutboxItem, Option<OrderState>)>, StoreError> {
    match next_pending(conn, order_id)? {
        Some(item) => Ok(Some((item, load_order(conn, order_id)?))),
        None => Ok(None),
    }
}

/// Is a later event of the same order still waiting? Its own check push
/// carries the whole bill, so an earlier push can be skipped (after an
/// outage only the latest version of a check is sent).
pub fn later_pending(conn: &Connection, order_id: &str, seq: i64) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM outbox WHERE order_id = ?1 AND seq > ?2 AND state = 'queued' LIMIT 1",
            params![order_id, seq],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Orders whose next undelivered event is `queued` (not held by a dead one).
pub fn ready_orders(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT o.order_id FROM outbox o
         JOIN (SELECT order_id, MIN(seq) AS s FROM outbox WHERE state != 'done' GROUP BY order_id) h
           ON h.order_id = o.order_id AND h.s = o.seq
         WHERE o.state = 'queued'
         GROUP BY o.order_id",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores the decided plan of an outbox row.
pub fn save_plan(conn: &Connection, outbox_id: i64, plan: &Plan) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET plan = ?2, updated_at = ?3 WHERE id = ?1",
        params![outbox_id, serde_json::to_string(plan)?, now_utc()],
    )?;
    Ok(())
}

/// Marks the row delivered and stores the order's new state, atomically.
pub fn complete(
    conn: &Connection,
    outbox_id: i64,
    plan: &Plan,
    order: Option<&OrderState>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET state = 'done', plan = ?2, last_error = NULL, updated_at = ?3 WHERE id = ?1",
        params![outbox_id, serde_json::to_string(plan)?, now_utc()],
    )?;
    if let Some(o) = order {
        save_order(conn, o)?;
    }
    bump(conn, "delivered", 1)?;
    if plan
        .steps
        .iter()
        .any(|s| matches!(s, crate::sync::Step::CreateWalkin { .. }))
    {
        bump(conn, "walkins_created", 1)?;
    }
    Ok(())
}

/// Records a failed try: `dead = true` parks the row as a dead letter.
pub fn record_failure(
    conn: &Connection,
    outbox_id: i64,
    plan: Option<&Plan>,
    error: &str,
    dead: bool,
) -> Result<(), StoreError> {
    let plan = plan.map(serde_json::to_string).transpose()?;
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                state = CASE WHEN ?3 THEN 'dead' ELSE state END,
                plan = COALESCE(?4, plan), updated_at = ?5
         WHERE id = ?1",
        params![outbox_id, error, dead, plan, now_utc()],
    )?;
    Ok(())
}

/// Loads an order.
pub fn load_order(conn: &Connection, order_id: &str) -> Result<Option<OrderState>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT order_id, table_name, covers, opened_at, state, booking_id, link,
                    total_cents, paid_cents, last_seq, lines
             FROM orders WHERE order_id = ?1",
            [order_id],
            |r| {
                Ok(OrderState {
                    order_id: r.get(0)?,
                    table: r.get(1)?,
                    covers: r.get::<_, Option<u32>>(2)?,
                    opened_at: r
                        .get::<_, Option<String>>(3)?
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok()),
                    status: OrderStatus::parse(&r.get::<_, String>(4)?)
                        .unwrap_or(OrderStatus::Open),
                    booking_id: r.get(5)?,
                    link: r
                        .get::<_, Option<String>>(6)?
                        .as_deref()
                        .and_then(Link::parse),
                    total_cents: r.get(7)?,
                    paid_cents: r.get(8)?,
                    last_seq: r.get::<_, i64>(9)? as u64,
                    lines: r
                        .get::<_, Option<String>>(10)?
                        .and_then(|s| serde_json::from_str(&s).ok()),
                })
            },
        )
        .optional()?)
}

/// Inserts or replaces an order.
pub fn save_order(conn: &Connection, o: &OrderState) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO orders(order_id, table_name, covers, opened_at, state, booking_id, link,
                            total_cents, paid_cents, last_seq, lines)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(order_id) DO UPDATE SET
            table_name = excluded.table_name, covers = excluded.covers,
            opened_at = excluded.opened_at, state = excluded.state,
            booking_id = excluded.booking_id, link = excluded.link,
            total_cents = excluded.total_cents, paid_cents = excluded.paid_cents,
            last_seq = excluded.last_seq, lines = excluded.lines",
        params![
            o.order_id,
            o.table,
            o.covers,
            o.opened_at.map(|t| t.to_rfc3339()),
            o.status.as_str(),
            o.booking_id,
            o.link.map(Link::as_str),
            o.total_cents,
            o.paid_cents,
            o.last_seq as i64,
            o.lines.as_ref().map(|l| l.to_string())
        ],
    )?;
    Ok(())
}

/// Bookings that are not candidates for matching (rule 4: "already linked
/// to an open order"), including bookings chosen by a `table.opened` whose
/// calls are still in flight.
pub fn linked_open_bookings(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT booking_id FROM orders WHERE state = 'open' AND booking_id IS NOT NULL
         UNION
         SELECT json_extract(plan, '$.matched_booking') FROM outbox
          WHERE state != 'done' AND plan IS NOT NULL
            AND json_extract(plan, '$.matched_booking') IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
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
    /// Outbox rows delivered.
    pub delivered: i64,
    /// Outbox rows waiting.
    pub queued: i64,
    /// Dead letters.
    pub dead: i64,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::event::parse;

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
                )
            })
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                IntakeOutcome::Stored(Some("O-1".into())),
                IntakeOutcome::Stored(Some("O-1".into())),
                IntakeOutcome::Stored(Some("O-2".into())),
                IntakeOutcome::Duplicate
            ]
        );
        drop(store);
        // A second open of the same file (as after a restart) sees it all.
        let (store, outcome) = Store::open(&path).unwrap();
        assert_eq!(outcome, store::OpenOutcome::Opened);
        let (head, ready, counts) = store
            .read(|c| Ok((next_pending(c, "O-1")?, ready_orders(c)?, counts(c)?)))
            .await
            .unwrap();
        assert_eq!(
            head.unwrap().event_id,
            "b",
            "lowest seq first, whatever the arrival order"
        );
        assert_eq!(ready, vec!["O-1".to_string(), "O-2".to_string()]);
        assert_eq!(
            (counts.received, counts.duplicates, counts.queued),
            (3, 1, 3)
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
                )
            })
            .await
            .unwrap();
        let ready = store
            .write(|c| {
                let head = next_pending(c, "O-1")?.unwrap();
                record_failure(c, head.id, None, "422 unknown table", true)?;
                ready_orders(c)
            })
            .await
            .unwrap();
        assert_eq!(ready, vec!["O-2".to_string()]);
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

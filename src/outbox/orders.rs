//! Orders: what the Zenchef lane applied (table `orders`, above all the
//! order → booking link), and what the POS reported (the order's truth,
//! folded from its stored events, sync rule 6), plus whether an order needs
//! attention because one of its events was quarantined (rule 9).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::sync::{self, Link, OrderState, OrderStatus, OrderTruth};
use domain::event::{self, PosEvent};

/// Loads what the Zenchef lane applied of an order.
pub fn load_order(conn: &Connection, order_id: &str) -> Result<Option<OrderState>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT order_id, table_name, covers, opened_at, state, booking_id, link,
                    total_cents, paid_cents, last_seq
             FROM orders WHERE order_id = ?1",
        )?
        .query_row([order_id], |r| {
            Ok(OrderState {
                order_id: r.get(0)?,
                table: r.get(1)?,
                covers: r.get::<_, Option<u32>>(2)?,
                opened_at: r
                    .get::<_, Option<String>>(3)?
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok()),
                status: OrderStatus::parse(&r.get::<_, String>(4)?).unwrap_or(OrderStatus::Open),
                booking_id: r.get(5)?,
                link: r
                    .get::<_, Option<String>>(6)?
                    .as_deref()
                    .and_then(Link::parse),
                total_cents: r.get(7)?,
                paid_cents: r.get(8)?,
                last_seq: r.get::<_, i64>(9)? as u64,
            })
        })
        .optional()?)
}

/// Inserts or replaces an order. (The column `lines` of earlier versions is
/// no longer written: Zenchef Pay checks are built from the order's truth.)
pub fn save_order(conn: &Connection, o: &OrderState) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO orders(order_id, table_name, covers, opened_at, state, booking_id, link,
                            total_cents, paid_cents, last_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(order_id) DO UPDATE SET
            table_name = excluded.table_name, covers = excluded.covers,
            opened_at = excluded.opened_at, state = excluded.state,
            booking_id = excluded.booking_id, link = excluded.link,
            total_cents = excluded.total_cents, paid_cents = excluded.paid_cents,
            last_seq = excluded.last_seq",
    )?
    .execute(params![
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
    ])?;
    Ok(())
}

/// Links the order to the walk-in a step just created (before the rest of
/// the plan runs), so that every later decision — a late `table.opened`, a
/// manual link, a plan decided again — knows the order has its booking.
/// Creates the order row when the Zenchef lane applied nothing of it yet.
pub fn link_walkin(
    conn: &Connection,
    order_id: &str,
    table: &str,
    booking_id: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO orders(order_id, table_name, state, booking_id, link, paid_cents, last_seq)
         VALUES (?1, ?2, 'open', ?3, 'walkin', 0, 0)
         ON CONFLICT(order_id) DO UPDATE SET booking_id = excluded.booking_id, link = 'walkin'
         WHERE orders.booking_id IS NULL",
        params![order_id, table, booking_id],
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

/// Every stored event of an order of a known type, in `seq` order.
pub fn order_events(conn: &Connection, order_id: &str) -> Result<Vec<PosEvent>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT body FROM events WHERE order_id = ?1 AND known = 1 ORDER BY seq")?;
    let bodies = stmt
        .query_map([order_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    // Validated at intake: a body that no longer parses (an incompatible
    // binary) is left out rather than taken for something else.
    Ok(bodies
        .iter()
        .filter_map(|b| event::parse(b.as_bytes()).ok())
        .collect())
}

/// What the POS has reported of an order, from every stored event of it
/// (sync rule 6).
pub fn order_truth(conn: &Connection, order_id: &str) -> Result<OrderTruth, StoreError> {
    Ok(sync::truth(order_id, &order_events(conn, order_id)?))
}

/// Event types that restate an order's whole state and so clear the doubt a
/// quarantined event of the order left (rule 9).
pub(crate) const CLEARING: &str = "('order.items_sent', 'bill.paid', 'order.voided')";

/// Why an order needs attention (rule 9): the reason of its latest
/// quarantined event not yet followed (higher `seq`) by a valid event that
/// restates the order (items sent, bill paid, voided), nor handled by a
/// person ([`mark_attention_handled`]). `None`: nothing to worry about.
pub fn order_attention(conn: &Connection, order_id: &str) -> Result<Option<String>, StoreError> {
    let sql = format!(
        "SELECT r.reason FROM rejected r
         WHERE r.order_id = ?1 AND r.handled_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.order_id = ?1
                           AND e.seq > COALESCE(r.seq, -1) AND e.type IN {CLEARING})
         ORDER BY r.id DESC LIMIT 1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([order_id], |r| r.get::<_, String>(0))
        .optional()?
        .map(|reason| format!("one of its events could not be read ({reason})")))
}

/// An order that needs attention (rule 9), for `status` and the page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttentionOrder {
    /// POS order id.
    pub order_id: String,
    /// Its table, from its stored events (`None` when unknown).
    pub table: Option<String>,
    /// Why (the quarantine reason).
    pub reason: String,
    /// When the event was quarantined (box clock, UTC).
    pub since: String,
}

/// Known orders (with at least one stored event) that need attention,
/// oldest first.
pub fn attention_orders(conn: &Connection) -> Result<Vec<AttentionOrder>, StoreError> {
    let sql = format!(
        "SELECT r.order_id, r.reason, MIN(r.received_at) FROM rejected r
         WHERE r.order_id IS NOT NULL AND r.handled_at IS NULL
           AND EXISTS (SELECT 1 FROM events e WHERE e.order_id = r.order_id)
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.order_id = r.order_id
                           AND e.seq > COALESCE(r.seq, -1) AND e.type IN {CLEARING})
         GROUP BY r.order_id ORDER BY MIN(r.id) LIMIT 100"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<(String, String, String)>, _>>()?;
    rows.into_iter()
        .map(|(order_id, reason, since)| {
            let table = order_truth(conn, &order_id)?.table;
            Ok(AttentionOrder {
                order_id,
                table,
                reason,
                since,
            })
        })
        .collect()
}

/// A person checked an order that needed attention (`zenchef-edge orders
/// handled <order_id>`): its quarantined events no longer hold its
/// payments. Answers how many quarantined payloads were cleared (0: the
/// order needed no attention).
pub fn mark_attention_handled(conn: &Connection, order_id: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE rejected SET handled_at = ?2 WHERE order_id = ?1 AND handled_at IS NULL",
        rusqlite::params![order_id, crate::time::now_utc()],
    )?)
}

pub use super::mirror::mirrored_status;

/// Sets (or clears, with `None`) the booking an order is linked to and how
/// (a manual link, `zenchef-edge link`).
pub fn set_link(
    conn: &Connection,
    order_id: &str,
    booking_id: Option<i64>,
    link: Option<Link>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE orders SET booking_id = ?2, link = ?3 WHERE order_id = ?1",
        params![order_id, booking_id, link.map(Link::as_str)],
    )?;
    Ok(())
}

/// The open order other than `order_id` linked to booking `booking_id`:
/// `(order_id, table)`.
pub fn open_holder(
    conn: &Connection,
    booking_id: i64,
    order_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT order_id, table_name FROM orders
                     WHERE booking_id = ?1 AND state = 'open' AND order_id != ?2 LIMIT 1",
            params![booking_id, order_id],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )
        .optional()?)
}

/// An open order and when the agent stored its first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrderRow {
    /// POS order id.
    pub order_id: String,
    /// Its table (as the Zenchef lane last applied it).
    pub table: String,
    /// `MIN(events.received_at)` (box clock, UTC, RFC 3339); `None` when
    /// no event of it is stored.
    pub since: Option<String>,
}

/// The open orders, oldest first (those without a stored event last), at
/// most `limit`.
pub fn open_orders(conn: &Connection, limit: usize) -> Result<Vec<OpenOrderRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.order_id, o.table_name,
                (SELECT MIN(e.received_at) FROM events e WHERE e.order_id = o.order_id) AS since
           FROM orders o WHERE o.state = 'open'
          ORDER BY since IS NULL, since, o.order_id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(OpenOrderRow {
            order_id: r.get(0)?,
            table: r.get(1)?,
            since: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

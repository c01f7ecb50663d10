//! The delivery queue: one `outbox` row per stored event of an order, with
//! **two delivery states**, one per lane (sync rule 5): `state` for the
//! Zenchef lane (with `attempts`, `plan`, `last_error`) and `pay_state` for
//! the Zenchef Pay lane (with `pay_attempts`, `pay_error`). Each lane walks
//! an order's rows in `seq` order and is independent of the other: a dead
//! Zenchef call holds back the order's later Zenchef calls, never its
//! check pushes, and the other way round.
//!
//! **Every query names its lane's partial index** (`state != 'done'`,
//! `pay_state != 'done'`, written out even beside `= 'queued'`): SQLite
//! uses a partial index only when the query repeats its condition, and
//! without it each call scans the whole outbox, every row ever stored
//! (measured on a three-year store: intake of a burst 60 times slower,
//! docs/benchmarks.md, "6. Long life").
//!
//! Lane states: `queued` (to deliver), `done` (delivered, or nothing to do
//! in that lane), `dead` (a call was refused as "can never succeed as is";
//! holds back the later rows of the same order in that lane until a
//! technician retries it).

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, bump, now_utc};
use crate::sync::{OrderState, Plan, Step};

/// A delivery lane of an order (sync rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Zenchef calls (seat, walk-in, over, ticket), per order in `seq` order.
    Zenchef,
    /// Zenchef Pay check pushes, per order in `seq` order.
    Pay,
}

impl Lane {
    /// Both lanes.
    pub const ALL: [Lane; 2] = [Lane::Zenchef, Lane::Pay];

    /// Name in logs and `outbox list`.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Zenchef => "zenchef",
            Lane::Pay => "pay",
        }
    }
}

/// A lane's delivery state of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// To deliver.
    Queued,
    /// Delivered, or nothing to do.
    Done,
    /// A dead letter.
    Dead,
}

impl RowState {
    /// From the stored name (anything unknown reads as queued: never lost).
    pub fn parse(s: &str) -> RowState {
        match s {
            "done" => RowState::Done,
            "dead" => RowState::Dead,
            _ => RowState::Queued,
        }
    }
}

/// Event types whose row has something to do in the Pay lane (their
/// event changes the check). `table.opened` and unknown types do not.
pub fn needs_pay_lane(event_type: &str) -> bool {
    matches!(
        event_type,
        "order.items_sent" | "table.moved" | "payment.recorded" | "bill.paid" | "order.voided"
    )
}

/// An outbox row with its event, as one lane sees it.
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
    /// The lane's state of the row.
    pub state: RowState,
    /// Failed tries so far in this lane.
    pub attempts: i64,
    /// The stored Zenchef plan, once decided (Zenchef lane only).
    pub plan: Option<Plan>,
    /// A technician retried it: decide the steps not made again (rule 10).
    pub replan: bool,
    /// The payload as received.
    pub body: String,
}

/// The next undelivered row of an order in `lane` (lowest `seq`): queued or
/// dead in the Zenchef lane (a dead one holds the order's later Zenchef
/// calls), queued only in the Pay lane (a dead check push holds nothing:
/// the next push carries the whole order).
pub fn next_pending(
    conn: &Connection,
    lane: Lane,
    order_id: &str,
) -> Result<Option<OutboxItem>, StoreError> {
    let sql = match lane {
        Lane::Zenchef => {
            "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, o.state, o.attempts, o.plan,
                    o.replan, e.body
             FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.order_id = ?1 AND o.state != 'done'
             ORDER BY o.seq, o.id LIMIT 1"
        }
        // A Pay lane dead letter does not hold the rows after it: every
        // push carries the whole order (its truth), so waiting behind it
        // would protect nothing and could leave a paid bill payable.
        Lane::Pay => {
            "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, o.pay_state, o.pay_attempts,
                    NULL, 0, e.body
             FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.order_id = ?1 AND o.pay_state != 'done' AND o.pay_state = 'queued'
             ORDER BY o.seq, o.id LIMIT 1"
        }
    };
    let row = conn
        .prepare_cached(sql)?
        .query_row([order_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, String>(9)?,
            ))
        })
        .optional()?;
    let Some((id, event_id, order_id, seq, event_type, state, attempts, plan, replan, body)) = row
    else {
        return Ok(None);
    };
    let plan = match plan {
        Some(p) => Some(Plan::from_stored(&p)?),
        None => None,
    };
    Ok(Some(OutboxItem {
        id,
        event_id,
        order_id,
        seq,
        event_type,
        state: RowState::parse(&state),
        attempts,
        plan,
        replan,
        body,
    }))
}

/// Orders with something ready in `lane`: in the Zenchef lane, whose next
/// undelivered row is `queued` (not held by a dead one); in the Pay lane,
/// with any queued row.
pub fn ready_orders(conn: &Connection, lane: Lane) -> Result<Vec<String>, StoreError> {
    let sql = match lane {
        Lane::Zenchef => {
            "SELECT o.order_id FROM outbox o
             JOIN (SELECT order_id, MIN(seq) AS s FROM outbox WHERE state != 'done' GROUP BY order_id) h
               ON h.order_id = o.order_id AND h.s = o.seq
             WHERE o.state = 'queued'
             GROUP BY o.order_id"
        }
        Lane::Pay => {
            "SELECT DISTINCT order_id FROM outbox
             WHERE pay_state != 'done' AND pay_state = 'queued' ORDER BY order_id"
        }
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ids of an order's rows queued in the Pay lane (a check push from
/// the order's truth covers all of them).
pub fn pay_queued_ids(conn: &Connection, order_id: &str) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM outbox WHERE order_id = ?1 AND pay_state != 'done' AND pay_state = 'queued'
         ORDER BY seq, id",
    )?;
    let rows = stmt.query_map([order_id], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks rows done in the Pay lane: `ids` (queued when the order's truth
/// was read); with `covered`, also the order's dead rows with a `seq` up to
/// it (a later check version, accepted, carries what they would have).
/// Answers how many dead rows were covered.
pub fn pay_done(
    conn: &Connection,
    order_id: &str,
    ids: &[i64],
    covered: Option<u64>,
) -> Result<usize, StoreError> {
    let now = now_utc();
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET pay_state = 'done', pay_error = NULL, updated_at = ?2
         WHERE id = ?1 AND pay_state = 'queued'",
    )?;
    for id in ids {
        stmt.execute(params![id, now])?;
    }
    let dead = match covered {
        Some(v) => conn
            .prepare_cached(
                "UPDATE outbox SET pay_state = 'done', updated_at = ?3
                 WHERE order_id = ?1 AND pay_state != 'done' AND pay_state = 'dead' AND seq <= ?2",
            )?
            .execute(params![order_id, v.min(i64::MAX as u64) as i64, now])?,
        None => 0,
    };
    Ok(dead)
}

/// Records a failed try in the Pay lane: `dead = true` parks the row as a
/// dead letter of that lane.
pub fn record_pay_failure(
    conn: &Connection,
    outbox_id: i64,
    error: &str,
    dead: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET pay_attempts = pay_attempts + 1, pay_error = ?2,
                pay_state = CASE WHEN ?3 THEN 'dead' ELSE pay_state END, updated_at = ?4
         WHERE id = ?1",
        params![outbox_id, error, dead, now_utc()],
    )?;
    Ok(())
}

/// Stores the decided plan of an outbox row (and clears `replan`: the
/// technician's request has been honoured).
pub fn save_plan(conn: &Connection, outbox_id: i64, plan: &Plan) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET plan = ?2, replan = 0, updated_at = ?3 WHERE id = ?1",
        params![outbox_id, serde_json::to_string(plan)?, now_utc()],
    )?;
    Ok(())
}

/// Marks the row delivered in the Zenchef lane and stores the order's new
/// state, atomically.
pub fn complete(
    conn: &Connection,
    outbox_id: i64,
    plan: &Plan,
    order: Option<&OrderState>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET state = 'done', plan = ?2, last_error = NULL, replan = 0, updated_at = ?3
         WHERE id = ?1",
        params![outbox_id, serde_json::to_string(plan)?, now_utc()],
    )?;
    if let Some(o) = order {
        super::save_order(conn, o)?;
    }
    bump(conn, "delivered", 1)?;
    if plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::CreateWalkin { .. }))
    {
        bump(conn, "walkins_created", 1)?;
    }
    Ok(())
}

/// Records a failed try in the Zenchef lane: `dead = true` parks the row
/// as a dead letter.
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

/// Is a delivery of either lane of this order queued or dead? (The update
/// policy and `status` read the whole queue instead.)
pub fn order_pending(conn: &Connection, order_id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE order_id = ?1 AND state != 'done')
             OR EXISTS (SELECT 1 FROM outbox WHERE order_id = ?1 AND pay_state != 'done')",
        [order_id],
        |r| r.get::<_, bool>(0),
    )?)
}

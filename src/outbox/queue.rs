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

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use super::{StoreError, bump};
use crate::sync::{OrderState, Plan, Step};
use crate::time::now_utc;

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

/// A lane's delivery state of a row (columns `state`, `pay_state`; the
/// stored names are `queued`, `done`, `dead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// To deliver.
    Queued,
    /// Delivered, or nothing to do.
    Done,
    /// A dead letter.
    Dead,
}

impl State {
    /// From the stored name (anything unknown reads as queued: never lost).
    pub fn parse(s: &str) -> State {
        match s {
            "done" => State::Done,
            "dead" => State::Dead,
            _ => State::Queued,
        }
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Done => "done",
            State::Dead => "dead",
        }
    }
}

impl From<&str> for State {
    fn from(s: &str) -> State {
        State::parse(s)
    }
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for State {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<State> {
        v.as_str().map(State::parse)
    }
}

impl FromSql for Lane {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Lane> {
        match v.as_str()? {
            "zenchef" => Ok(Lane::Zenchef),
            "pay" => Ok(Lane::Pay),
            other => Err(FromSqlError::Other(
                format!("unknown delivery lane {other:?}").into(),
            )),
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

/// An outbox row with its event, as one lane sees it (the delivery
/// lanes, `outbox list`).
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
    /// The lane this view of the row is of.
    pub lane: Lane,
    /// The lane's state of the row.
    pub state: State,
    /// Failed tries so far in this lane.
    pub attempts: i64,
    /// The lane's last error message.
    pub last_error: Option<String>,
    /// The stored Zenchef plan, once decided (Zenchef lane only).
    pub plan: Option<Plan>,
    /// A technician retried it: decide the steps not made again (rule 10).
    pub replan: bool,
    /// The payload as received.
    pub body: String,
}

/// Maps a row of the statements that read [`OutboxItem`]s; they all select
/// `id, event_id, order_id, seq, type, <lane>, <state>, <attempts>,
/// <error>, <plan>, <replan>, body` in this order. The plan comes back as
/// stored: [`with_plan`] reads it.
fn read_item(r: &Row<'_>) -> rusqlite::Result<(OutboxItem, Option<String>)> {
    Ok((
        OutboxItem {
            id: r.get(0)?,
            event_id: r.get(1)?,
            order_id: r.get(2)?,
            seq: r.get(3)?,
            event_type: r.get(4)?,
            lane: r.get(5)?,
            state: r.get(6)?,
            attempts: r.get(7)?,
            last_error: r.get(8)?,
            plan: None,
            replan: r.get(10)?,
            body: r.get(11)?,
        },
        r.get(9)?,
    ))
}

/// The item with its stored plan read. Errors: [`StoreError::Json`].
fn with_plan((mut item, plan): (OutboxItem, Option<String>)) -> Result<OutboxItem, StoreError> {
    item.plan = plan.as_deref().map(Plan::from_stored).transpose()?;
    Ok(item)
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
            "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, 'zenchef', o.state, o.attempts,
                    o.last_error, o.plan, o.replan, e.body
             FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.order_id = ?1 AND o.state != 'done'
             ORDER BY o.seq, o.id LIMIT 1"
        }
        // A Pay lane dead letter does not hold the rows after it: every
        // push carries the whole order (its truth), so waiting behind it
        // would protect nothing and could leave a paid bill payable.
        Lane::Pay => {
            "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, 'pay', o.pay_state, o.pay_attempts,
                    o.pay_error, NULL, 0, e.body
             FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.order_id = ?1 AND o.pay_state != 'done' AND o.pay_state = 'queued'
             ORDER BY o.seq, o.id LIMIT 1"
        }
    };
    conn.prepare_cached(sql)?
        .query_row([order_id], read_item)
        .optional()?
        .map(with_plan)
        .transpose()
}

/// The rows of both lanes in `state` (`Queued` or `Dead`: a `Done` row is
/// not listed), in delivery order (order, seq, the Zenchef lane first), for
/// `outbox list`.
pub fn in_state(conn: &Connection, state: State) -> Result<Vec<OutboxItem>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT o.id, o.event_id, o.order_id, o.seq, o.type, 'zenchef', o.state, o.attempts,
                o.last_error, o.plan, o.replan, e.body
         FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.state = ?1
         UNION ALL
         SELECT o.id, o.event_id, o.order_id, o.seq, o.type, 'pay', o.pay_state, o.pay_attempts,
                o.pay_error, NULL, 0, e.body
         FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.pay_state != 'done' AND o.pay_state = ?1
         ORDER BY 3, 4, 6 DESC",
    )?;
    let rows = stmt.query_map([state], read_item)?;
    rows.map(|r| with_plan(r?)).collect()
}

/// Puts dead deliveries of either lane back in the queue (all of them when
/// `event_id` is `None`); a Zenchef one has its calls not made yet decided
/// again (`replan`). Answers how many rows changed (`outbox retry`).
pub fn retry_dead(conn: &Connection, event_id: Option<&str>) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE outbox SET
                replan = CASE WHEN state = 'dead' THEN 1 ELSE replan END,
                attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END,
                state = CASE WHEN state = 'dead' THEN 'queued' ELSE state END,
                pay_attempts = CASE WHEN pay_state = 'dead' THEN 0 ELSE pay_attempts END,
                pay_state = CASE WHEN pay_state = 'dead' THEN 'queued' ELSE pay_state END,
                updated_at = ?2
         WHERE (state = 'dead' OR pay_state = 'dead') AND (?1 IS NULL OR event_id = ?1)",
        params![event_id, now_utc()],
    )?)
}

/// Where an event's deliveries stand, both lanes together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDeliveries {
    /// Its order.
    pub order_id: String,
    /// `Done` when both lanes are done, `Queued` otherwise.
    pub state: State,
    /// Failed tries of both lanes.
    pub attempts: i64,
}

/// Where the deliveries of event `event_id` stand (`None`: not in the
/// outbox).
pub fn event_deliveries(
    conn: &Connection,
    event_id: &str,
) -> Result<Option<EventDeliveries>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT CASE WHEN state = 'done' AND pay_state = 'done' THEN 'done' ELSE 'queued' END,
                    order_id, attempts + pay_attempts
             FROM outbox WHERE event_id = ?1",
            [event_id],
            |r| {
                Ok(EventDeliveries {
                    state: r.get(0)?,
                    order_id: r.get(1)?,
                    attempts: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// An order's undelivered rows of the Zenchef lane: how many, and the
/// state of the earliest (`None`: none).
pub fn zenchef_undelivered(
    conn: &Connection,
    order_id: &str,
) -> Result<(i64, Option<State>), StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*),
                (SELECT state FROM outbox WHERE order_id = ?1 AND state != 'done'
                 ORDER BY seq, id LIMIT 1)
         FROM outbox WHERE order_id = ?1 AND state != 'done'",
        [order_id],
        |x| Ok((x.get(0)?, x.get(1)?)),
    )?)
}

/// Another order (not `order_id`) whose undelivered plan chose booking
/// `booking_id` (a `table.opened` being delivered).
pub fn matching_order(
    conn: &Connection,
    booking_id: i64,
    order_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT order_id FROM outbox
                         WHERE state != 'done' AND plan IS NOT NULL AND order_id != ?2
                           AND json_extract(plan, '$.matched_booking') = ?1 LIMIT 1",
            params![booking_id, order_id],
            |x| x.get(0),
        )
        .optional()?)
}

/// What still waits for a delivery, for the update policy: outbox rows
/// `queued` in either lane (a row queued in both counts once), plus
/// Zenchef Pay payments whose settle command or ack is not done.
pub fn waiting_deliveries(conn: &Connection) -> Result<i64, StoreError> {
    // `pay_state != 'done' AND …`: the partial index outbox_pay_pending
    // answers it (`pay_state = 'queued'` alone scans the whole outbox).
    Ok(conn.query_row(
        "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'queued')
              + (SELECT COUNT(*) FROM outbox
                  WHERE pay_state != 'done' AND pay_state = 'queued' AND state != 'queued')
              + (SELECT COUNT(*) FROM pay_payments
                 WHERE state IN ('settle', 'command_sent', 'answered', 'reject'))",
        [],
        |r| r.get(0),
    )?)
}

/// The newest `outbox.updated_at` (box clock, UTC, RFC 3339; `None`: an
/// empty outbox).
pub fn last_update(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn.query_row("SELECT MAX(updated_at) FROM outbox", [], |r| r.get(0))?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each state is stored under its old name and reads back as itself;
    /// a name this binary does not know reads as queued (never lost).
    #[test]
    fn states_keep_their_stored_names() {
        let c = Connection::open_in_memory().unwrap();
        for (s, name) in [
            (State::Queued, "queued"),
            (State::Done, "done"),
            (State::Dead, "dead"),
        ] {
            let (text, back): (String, State) = c
                .query_row("SELECT ?1, ?1", [s], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            assert_eq!((text.as_str(), back), (name, s));
        }
        let later: State = c.query_row("SELECT 'later'", [], |r| r.get(0)).unwrap();
        assert_eq!(later, State::Queued);
        let lanes: (Lane, Lane) = c
            .query_row("SELECT 'zenchef', 'pay'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(lanes, (Lane::Zenchef, Lane::Pay));
    }
}

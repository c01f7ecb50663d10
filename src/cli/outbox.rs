//! `zenchef-edge outbox list [--dead]` and `outbox retry <event_id> |
//! --all-dead`.
//!
//! Safe while the daemon runs: `list` reads a WAL snapshot; `retry` is one
//! autocommit `UPDATE … WHERE state = 'dead'` (waiting up to 5 s for the
//! daemon's group commit). A dead row has no delivery worker (the
//! dispatcher stops an order at its dead head), so nothing races with the
//! change; the dispatcher rescans the store every 5 s and picks the rows up
//! without a restart.
//!
//! Each row has two lanes (Zenchef, Zenchef Pay; sync rule 5): `list`
//! shows the lane of each queued or dead delivery, `retry` puts back the
//! dead ones of either lane.
//!
//! A retried Zenchef delivery has the calls it has not made yet decided
//! again (sync rule 10) with what the store knows *now* — e.g. a
//! `table.opened` whose walk-in was refused, once the technician has linked
//! the order by hand (`zenchef-edge link`), seats the linked booking and
//! creates no walk-in; a `bill.paid` whose walk-in was made finishes on the
//! linked booking. The calls already made stay made, and the new ones get
//! new idempotency keys (`PublisherModelId`), so deciding again never acts
//! twice.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use crate::outbox::{StoreError, store};

/// One row of `outbox list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Event id.
    pub event_id: String,
    /// Order id.
    pub order_id: String,
    /// POS seq.
    pub seq: i64,
    /// Event type.
    pub event_type: String,
    /// `zenchef` or `pay`.
    pub lane: String,
    /// queued / dead.
    pub state: String,
    /// Failed tries.
    pub attempts: i64,
    /// Last error message.
    pub last_error: Option<String>,
}

/// Queued (or dead) deliveries of both lanes, in delivery order.
pub fn list(path: &Path, dead: bool) -> Result<Vec<Row>, StoreError> {
    let conn = store::open_read_only(path)?;
    let mut stmt = conn.prepare(
        "SELECT event_id, order_id, seq, type, 'zenchef', state, attempts, last_error FROM outbox
         WHERE state = ?1
         UNION ALL
         SELECT event_id, order_id, seq, type, 'pay', pay_state, pay_attempts, pay_error FROM outbox
         WHERE pay_state = ?1
         ORDER BY 2, 3, 5 DESC",
    )?;
    let rows = stmt.query_map([if dead { "dead" } else { "queued" }], |r| {
        Ok(Row {
            event_id: r.get(0)?,
            order_id: r.get(1)?,
            seq: r.get(2)?,
            event_type: r.get(3)?,
            lane: r.get(4)?,
            state: r.get(5)?,
            attempts: r.get(6)?,
            last_error: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Puts dead deliveries of either lane back in the queue (all of them when
/// `event_id` is `None`); a Zenchef one has its calls not made yet decided
/// again (`replan`). Answers how many rows changed.
pub fn retry(path: &Path, event_id: Option<&str>) -> Result<usize, StoreError> {
    let conn = store::open_for_cli(path)?;
    let n = conn.execute(
        "UPDATE outbox SET
                replan = CASE WHEN state = 'dead' THEN 1 ELSE replan END,
                attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END,
                state = CASE WHEN state = 'dead' THEN 'queued' ELSE state END,
                pay_attempts = CASE WHEN pay_state = 'dead' THEN 0 ELSE pay_attempts END,
                pay_state = CASE WHEN pay_state = 'dead' THEN 'queued' ELSE pay_state END,
                updated_at = ?2
         WHERE (state = 'dead' OR pay_state = 'dead') AND (?1 IS NULL OR event_id = ?1)",
        params![event_id, crate::outbox::now_utc()],
    )?;
    Ok(n)
}

/// `outbox retry`: prints what happened. Exit 1 when the named event is
/// not dead (unknown, queued or delivered).
pub fn run_retry(path: &Path, event_id: Option<&str>) -> anyhow::Result<i32> {
    let n = retry(path, event_id)?;
    if n > 0 {
        println!(
            "{n} dead event(s) put back in the queue; the running agent delivers them within \
             about 5 s (see `zenchef-edge status`)"
        );
        return Ok(0);
    }
    let Some(id) = event_id else {
        println!("no dead events: nothing to retry");
        return Ok(0);
    };
    let conn = store::open_read_only(path)?;
    let state: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT CASE WHEN state = 'done' AND pay_state = 'done' THEN 'done' ELSE 'queued' END,
                    order_id, attempts + pay_attempts
             FROM outbox WHERE event_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(StoreError::from)?;
    match state {
        None => eprintln!("no event {id} in the outbox (see `zenchef-edge outbox list --dead`)"),
        Some((s, order, _)) if s == "done" => {
            eprintln!("event {id} (order {order}) was already delivered: nothing to retry")
        }
        Some((_, order, attempts)) => eprintln!(
            "event {id} (order {order}) is not dead but queued ({attempts} failed tries so far): \
             the agent keeps retrying it by itself"
        ),
    }
    Ok(1)
}

/// Prints the list.
pub fn run_list(path: &Path, dead: bool) -> anyhow::Result<i32> {
    let rows = list(path, dead)?;
    if rows.is_empty() {
        println!("no {} events", if dead { "dead" } else { "queued" });
        return Ok(0);
    }
    println!(
        "{:<38} {:<12} {:>6} {:<18} {:<7} {:>3}  last error",
        "event_id", "order", "seq", "type", "lane", "try"
    );
    for r in rows {
        println!(
            "{:<38} {:<12} {:>6} {:<18} {:<7} {:>3}  {}",
            r.event_id,
            r.order_id,
            r.seq,
            r.event_type,
            r.lane,
            r.attempts,
            r.last_error.unwrap_or_default()
        );
    }
    Ok(0)
}

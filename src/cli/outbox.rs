//! `zenchef-edge outbox list [--dead]` and `outbox retry <event_id> |
//! --all-dead`. Safe while the daemon runs: `retry` sets the rows back to
//! `queued` in one transaction; the daemon's dispatcher rescans every few
//! seconds and picks them up without a restart.

use std::path::Path;

use rusqlite::params;

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
    /// queued / dead.
    pub state: String,
    /// Failed tries.
    pub attempts: i64,
    /// Last error message.
    pub last_error: Option<String>,
}

/// Queued (or dead) rows, in delivery order.
pub fn list(path: &Path, dead: bool) -> Result<Vec<Row>, StoreError> {
    let conn = store::open_read_only(path)?;
    let mut stmt = conn.prepare(
        "SELECT event_id, order_id, seq, type, state, attempts, last_error FROM outbox
         WHERE state = ?1 ORDER BY order_id, seq",
    )?;
    let rows = stmt.query_map([if dead { "dead" } else { "queued" }], |r| {
        Ok(Row {
            event_id: r.get(0)?,
            order_id: r.get(1)?,
            seq: r.get(2)?,
            event_type: r.get(3)?,
            state: r.get(4)?,
            attempts: r.get(5)?,
            last_error: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Puts dead rows back in the queue; answers how many.
pub fn retry(path: &Path, event_id: Option<&str>) -> Result<usize, StoreError> {
    let conn = store::open_for_cli(path)?;
    let n = match event_id {
        Some(id) => conn.execute(
            "UPDATE outbox SET state = 'queued', attempts = 0 WHERE event_id = ?1 AND state = 'dead'",
            params![id],
        )?,
        None => conn.execute("UPDATE outbox SET state = 'queued', attempts = 0 WHERE state = 'dead'", [])?,
    };
    Ok(n)
}

/// Prints the list.
pub fn run_list(path: &Path, dead: bool) -> anyhow::Result<i32> {
    let rows = list(path, dead)?;
    if rows.is_empty() {
        println!("no {} events", if dead { "dead" } else { "queued" });
        return Ok(0);
    }
    println!(
        "{:<38} {:<12} {:>6} {:<18} {:>3}  last error",
        "event_id", "order", "seq", "type", "try"
    );
    for r in rows {
        println!(
            "{:<38} {:<12} {:>6} {:<18} {:>3}  {}",
            r.event_id,
            r.order_id,
            r.seq,
            r.event_type,
            r.attempts,
            r.last_error.unwrap_or_default()
        );
    }
    Ok(0)
}

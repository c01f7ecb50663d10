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

use crate::outbox::queue::{self, State};
use crate::outbox::{OutboxItem, StoreError, store};

/// Queued (or dead) deliveries of both lanes, in delivery order.
pub fn list(path: &Path, dead: bool) -> Result<Vec<OutboxItem>, StoreError> {
    let conn = store::open_read_only(path)?;
    queue::in_state(&conn, if dead { State::Dead } else { State::Queued })
}

/// Puts dead deliveries of either lane back in the queue (all of them when
/// `event_id` is `None`); a Zenchef one has its calls not made yet decided
/// again (`replan`). Answers how many rows changed.
pub fn retry(path: &Path, event_id: Option<&str>) -> Result<usize, StoreError> {
    let conn = store::open_for_cli(path)?;
    queue::retry_dead(&conn, event_id)
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
    match queue::event_deliveries(&conn, id)? {
        None => eprintln!("no event {id} in the outbox (see `zenchef-edge outbox list --dead`)"),
        Some(queue::EventDeliveries {
            state: State::Done,
            order_id: order,
            ..
        }) => {
            eprintln!("event {id} (order {order}) was already delivered: nothing to retry")
        }
        Some(queue::EventDeliveries {
            order_id: order,
            attempts,
            ..
        }) => eprintln!(
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
            r.lane.name(),
            r.attempts,
            r.last_error.unwrap_or_default()
        );
    }
    Ok(0)
}

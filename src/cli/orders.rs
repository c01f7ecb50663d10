//! `zenchef-edge orders [--json]` and `orders handled <order_id>`: the
//! orders that need attention because one of their events could not be read
//! (sync rule 9: no Zenchef Pay payment is settled on them, payments are
//! refused), and a way for a person who checked the bill in the POS to say
//! so — when the POS will send nothing more for that order (the doubt is
//! otherwise cleared by its next valid bill).
//!
//! Safe while the daemon runs: the list reads a WAL snapshot; `handled` is
//! one autocommit `UPDATE` of the order's quarantined payloads (the daemon
//! only ever inserts them).

use std::path::Path;

use crate::config::Config;
use crate::outbox::{orders, store};

/// Lists the orders that need attention.
pub fn run_list(config: &Config, json: bool) -> anyhow::Result<i32> {
    let conn = store::open_read_only(&config.store_path)?;
    let rows = orders::attention_orders(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no order needs attention");
        return Ok(0);
    }
    for a in rows {
        println!(
            "{}  table {}  since {}\n    {}",
            a.order_id,
            a.table.as_deref().unwrap_or("?"),
            a.since,
            a.reason
        );
    }
    println!(
        "phone payments on these orders are refused until the POS sends their bill again; once \
         a person has checked the bill in the POS: zenchef-edge orders handled <order_id>"
    );
    Ok(0)
}

/// Clears an order's doubt; exit 1 when it needed no attention.
pub fn run_handled(path: &Path, order_id: &str) -> anyhow::Result<i32> {
    let conn = store::open_for_cli(path)?;
    let n = orders::mark_attention_handled(&conn, order_id)?;
    if n > 0 {
        println!(
            "order {order_id}: {n} unreadable event(s) marked as checked; its phone payments are \
             judged again on what the POS reported"
        );
        Ok(0)
    } else {
        eprintln!(
            "order {order_id} does not need attention (see `zenchef-edge orders`): nothing changed"
        );
        Ok(1)
    }
}

//! `zenchef-edge payments [--json]` and `payments handled <payment_id>`:
//! the Zenchef Pay payments that need a person (sync rule 7: a POS that
//! never answered a settle command; a payment the agent could not read; a
//! payment the POS recorded after it was refunded), and a way to say one
//! was dealt with, so that `status` and the page stop showing it.
//!
//! Safe while the daemon runs: the list reads a WAL snapshot; `handled` is
//! one autocommit `UPDATE` of that payment's `handled_at` (the daemon
//! never writes that column). A payment that needs nobody is left alone
//! (exit 1).

use std::path::Path;

use crate::config::Config;
use crate::outbox::{payments, store};
use crate::status::money;

/// Lists the payments that need a person.
pub fn run_list(config: &Config, json: bool) -> anyhow::Result<i32> {
    let conn = store::open_read_only(&config.store_path)?;
    let rows = payments::needs_person(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no Zenchef Pay payment needs a person");
        return Ok(0);
    }
    for n in rows {
        println!(
            "{}  order {}  table {}  {} + {} tip  since {}",
            n.payment_id,
            if n.order_id.is_empty() {
                "?"
            } else {
                &n.order_id
            },
            n.table.as_deref().unwrap_or("?"),
            money(n.amount_cents, &config.currency),
            money(n.tip_cents, &config.currency),
            n.since
        );
        println!("    {}", n.what);
    }
    println!(
        "once dealt with (in the POS or in Zenchef Pay): zenchef-edge payments handled <payment_id>"
    );
    Ok(0)
}

/// Marks a payment as handled by a person; exit 1 when it needed nobody.
pub fn run_handled(path: &Path, payment_id: &str) -> anyhow::Result<i32> {
    let conn = store::open_for_cli(path)?;
    if payments::mark_handled(&conn, payment_id)? {
        println!("payment {payment_id} marked as handled; status no longer shows it");
        Ok(0)
    } else {
        eprintln!(
            "payment {payment_id} does not need a person (see `zenchef-edge payments`): nothing changed"
        );
        Ok(1)
    }
}

//! `zenchef-edge tables [--json]`: the POS floor plan against the tables
//! Zenchef knows, asked afresh (the comparison is [`crate::tables`]). Exit
//! code 1 when any difference exists.

use crate::config::Config;
use crate::outbox::store;
use crate::tables::{RULE, compare, describe, pos_tables};
use crate::zenchef::client::ZenchefClient;

/// The command. Exit 0 when both sides agree, 1 otherwise (or when a side
/// cannot be read).
pub async fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let pos = {
        let conn = store::open_read_only(&config.store_path)?;
        pos_tables(&conn)?
    };
    let Some(pos) = pos else {
        eprintln!(
            "no floor plan received from the POS yet (it is published retained on \
             cashpad/<iid>/floorplan once the agent is connected): see `zenchef-edge status`"
        );
        return Ok(1);
    };
    let client = ZenchefClient::new(&config.zenchef, config.delivery.http_timeout)?;
    let zc: Vec<String> = client
        .tables()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the tables from Zenchef: {e}"))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let d = compare(&pos, &zc);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(if d.is_clean() { 0 } else { 1 });
    }
    println!(
        "POS floor plan: {} table(s); Zenchef: {} table(s); identical: {}",
        pos.len(),
        zc.len(),
        d.identical.len()
    );
    if d.is_clean() {
        println!("ok: every table name is the same on both sides");
        return Ok(0);
    }
    for l in describe(&d) {
        println!("  {l}");
    }
    println!("Rule: {RULE}");
    println!(
        "Rename the table on one side (usually in Zenchef) so both read exactly the same; \
         reservations on a near-miss are NOT matched."
    );
    Ok(1)
}

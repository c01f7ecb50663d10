//! Table names, the POS floor plan (cashpad §5, kept in the store's `kv`
//! key `floorplan`) against the tables Zenchef knows (`GET /tables`).
//!
//! The seed is strict: *table names must be identical in the POS and in
//! Zenchef* — a reservation on table "7A" is not matched when the POS opens
//! "7a" (sync rule 4). [`compare`] lists the names found on one side only
//! and the near-misses that differ only by case, spaces or accents, so a
//! technician knows which side to rename.
//!
//! The daemon keeps the comparison for `status` and the status page
//! without calling Zenchef on each request: its reservation poller reads
//! Zenchef's tables every [`REFRESH_EVERY`] (`zenchef::poller`) into the
//! `kv` key [`ZENCHEF_TABLES_KEY`], and [`stored_check`] compares them with
//! the floor plan at each read ([`compare`], the domain's, pure).
//! `zenchef-edge tables` (`src/cli/tables.rs`) asks Zenchef afresh.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outbox;

/// `kv` key where the daemon keeps the table names Zenchef answered last
/// (the JSON of [`ZenchefTables`]).
pub const ZENCHEF_TABLES_KEY: &str = "zenchef_tables";
/// How often the daemon reads Zenchef's tables again (after a successful
/// reservation poll).
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Zenchef's table names as the daemon last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZenchefTables {
    /// When they were read (UTC, RFC 3339).
    pub fetched_at: String,
    /// The names, as Zenchef answered them.
    pub names: Vec<String>,
}

/// The comparison `status` and the status page show (`tables` of
/// `status --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TablesCheck {
    /// When Zenchef's tables were read (UTC).
    pub zenchef_fetched_at: String,
    /// Tables in the POS floor plan.
    pub pos_count: usize,
    /// Tables in Zenchef.
    pub zenchef_count: usize,
    /// Both sides agree.
    pub clean: bool,
    /// The differences (names identical on both sides included).
    #[serde(flatten)]
    pub diff: TableDiff,
}

/// The floor plan of the store against the Zenchef tables the daemon kept;
/// `None` until both are known (no floor plan yet, or Zenchef's tables not
/// read yet).
pub fn stored_check(conn: &outbox::Connection) -> Option<TablesCheck> {
    let pos = pos_tables(conn).ok().flatten()?;
    let zc: ZenchefTables = outbox::kv_get(conn, ZENCHEF_TABLES_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())?;
    let diff = compare(&pos, &zc.names);
    Some(TablesCheck {
        zenchef_fetched_at: zc.fetched_at,
        pos_count: pos.len(),
        zenchef_count: zc.names.len(),
        clean: diff.is_clean(),
        diff,
    })
}

/// The comparison itself is the domain's (`domain::tables`).
pub use domain::tables::{RULE, TableDiff, compare, describe, loose};

/// Table names of the floor plan the POS published, from the store;
/// `None` when no floor plan was received yet.
pub fn pos_tables(conn: &outbox::Connection) -> anyhow::Result<Option<Vec<String>>> {
    let Some(text) = outbox::kv_get(conn, "floorplan")? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(Some(
        v["tables"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    ))
}

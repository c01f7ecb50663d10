//! The reservation mirror (table `reservations`): what the POS must show
//! of each booking of the sync window, as the reservation poller
//! (`crate::zenchef::poller`) last published it, and which withdrawals are
//! confirmed (docs/protocol/sync-rules.md rules 1–3).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::time::now_utc;

/// Confirmed withdrawals of days before the window deleted after each
/// successful poll, at most.
pub const PRUNE_BATCH: usize = 500;

/// One mirrored booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRow {
    /// Booking day (restaurant local).
    pub day: String,
    /// Zenchef status.
    pub status: String,
    /// What the POS should have: the §6 JSON, or `None` (withdrawn).
    pub body: Option<String>,
}

/// What the POS must be shown, from the store: published bookings and
/// withdrawals not yet confirmed (confirmed ones never need a replay).
pub fn load_mirror(c: &Connection) -> Result<BTreeMap<i64, MirrorRow>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT booking_id, day, status, body FROM reservations
         WHERE body IS NOT NULL OR confirmed_at IS NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            MirrorRow {
                day: r.get(1)?,
                status: r.get(2)?,
                body: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores changed rows; a changed row is not confirmed (yet).
pub fn save_mirror(c: &Connection, changes: &[(i64, MirrorRow)]) -> Result<(), StoreError> {
    for (id, row) in changes {
        c.execute(
            "INSERT INTO reservations(booking_id, day, status, hash, body, confirmed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)
             ON CONFLICT(booking_id) DO UPDATE SET day = excluded.day, status = excluded.status,
                hash = excluded.hash, body = excluded.body, confirmed_at = NULL",
            params![
                id,
                row.day,
                row.status,
                fnv1a(row.body.as_deref().unwrap_or("")),
                row.body
            ],
        )?;
    }
    Ok(())
}

/// Marks withdrawals confirmed (box clock, informational).
pub fn confirm_withdrawals(c: &Connection, ids: &[i64]) -> Result<(), StoreError> {
    let now = now_utc();
    let mut stmt = c.prepare_cached(
        "UPDATE reservations SET confirmed_at = ?2 WHERE booking_id = ?1 AND body IS NULL",
    )?;
    for id in ids {
        stmt.execute(params![id, now])?;
    }
    Ok(())
}

/// Deletes confirmed withdrawals of days before `window_start`
/// (`YYYY-MM-DD`), at most [`PRUNE_BATCH`]; answers how many.
pub fn prune_mirror(c: &Connection, window_start: &str) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "DELETE FROM reservations WHERE booking_id IN (
            SELECT booking_id FROM reservations
             WHERE body IS NULL AND confirmed_at IS NOT NULL AND day < ?1 LIMIT ?2)",
    )?
    .execute(params![window_start, PRUNE_BATCH as i64])?)
}

/// FNV-1a 64 of the published body, hex (a short fingerprint for
/// technicians comparing with what the POS shows).
fn fnv1a(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The status a booking has in the reservation mirror (`None` when the
/// mirror does not hold it).
pub fn mirrored_status(conn: &Connection, booking_id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT status FROM reservations WHERE booking_id = ?1")?
        .query_row([booking_id], |r| r.get(0))
        .optional()?)
}

//! Named counters (table `counters`) and small named values (table `kv`:
//! the floor plan, cursors, the health history, …).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Adds `n` to a named counter.
pub fn bump(conn: &Connection, name: &str, n: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![name, n])?;
    Ok(())
}

/// Reads a counter (0 when absent).
pub fn counter(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

/// Sets a key of the `kv` table.
pub fn kv_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Reads a key of the `kv` table.
pub fn kv_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Deletes a key of the `kv` table (nothing when absent).
pub fn kv_delete(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM kv WHERE key = ?1", [key])?;
    Ok(())
}

/// Records a start of this build in `next_marks` (the `test-next` build a
/// rollback test installs as the "new" release).
#[cfg(feature = "test-next")]
pub fn mark_next_started(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO next_marks(note, written_at) VALUES ('started', ?1)",
        [crate::time::now_utc()],
    )?;
    Ok(())
}

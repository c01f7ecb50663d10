//! The statements of `status` (`src/status/mod.rs`), all read-only: what
//! the delivery lanes, the links and the schema say about the store beyond
//! [`super::counts`].

use rusqlite::Connection;

/// How many objects (tables, indexes, …) the store's schema holds: 0 for a
/// file no agent has started on yet.
///
/// Errors: SQLite's (not a database).
pub fn table_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
}

/// Queued events whose delivery has started (calls decided, under way or
/// being retried).
///
/// Errors: SQLite's.
pub fn inflight(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM outbox
         WHERE state = 'queued' AND (plan IS NOT NULL OR attempts > 0)",
        [],
        |r| r.get(0),
    )
}

/// Manual link requests not finished yet (`link` / `unlink`).
///
/// Errors: SQLite's (`link_requests` is absent in a store not yet migrated
/// by a newer daemon).
pub fn links_pending(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM link_requests WHERE state IN ('pending', 'cancelling')",
        [],
        |r| r.get(0),
    )
}

/// When the oldest queued event was received (box clock, UTC, RFC 3339),
/// `None` when nothing is queued.
///
/// Errors: SQLite's.
pub fn oldest_queued_received_at(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT MIN(e.received_at) FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.state = 'queued'",
        [],
        |r| r.get(0),
    )
}

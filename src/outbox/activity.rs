//! What holds an update back (`crate::update::daemon::activity` decides),
//! read in one transaction: the open orders, what still waits for a
//! delivery, and when the outbox last changed.

use std::path::Path;

use rusqlite::Connection;

use super::orders::{self, OpenOrderRow};
use super::{Store, StoreError, queue};

/// The rows behind the update policy's activity facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityRows {
    /// Every open order, oldest first ([`orders::open_orders`]).
    pub open_orders: Vec<OpenOrderRow>,
    /// What still waits for a delivery ([`queue::waiting_deliveries`]).
    pub waiting: i64,
    /// The newest `outbox.updated_at` (box clock, UTC, RFC 3339; `None`:
    /// an empty outbox).
    pub last_update: Option<String>,
}

/// Reads the [`ActivityRows`].
///
/// Errors: SQLite's.
pub fn activity(conn: &Connection) -> Result<ActivityRows, StoreError> {
    Ok(ActivityRows {
        open_orders: orders::open_orders(conn, usize::MAX)?,
        waiting: queue::waiting_deliveries(conn)?,
        last_update: queue::last_update(conn)?,
    })
}

/// Reads the [`ActivityRows`] from the store file, opened read-only (the
/// CLI); `None` when there is no file (the agent never ran). Blocking.
///
/// Errors: the file cannot be opened or read.
pub fn activity_of_file(path: &Path) -> Result<Option<ActivityRows>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = super::store::open_read_only(path)?;
    activity(&conn).map(Some)
}

impl Store {
    /// The [`ActivityRows`], read in one transaction.
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn activity(&self) -> Result<ActivityRows, StoreError> {
        self.read(activity).await
    }

    /// Every open order, oldest first ([`orders::open_orders`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn open_orders(&self) -> Result<Vec<OpenOrderRow>, StoreError> {
        self.read(|c| orders::open_orders(c, usize::MAX)).await
    }
}

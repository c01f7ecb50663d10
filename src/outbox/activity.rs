//! What holds an update back (`crate::update::daemon::activity` decides),
//! read in one transaction: the open orders, what still waits for a
//! delivery, and when the outbox last changed. Also the typed reads of
//! the store handle those callers use instead of a raw connection.

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

    /// The value of a `kv` key ([`super::kv_get`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn kv_value(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read(move |c| super::kv_get(c, key)).await
    }

    /// Sets a `kv` key ([`super::kv_set`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn set_kv_value(&self, key: &'static str, value: String) -> Result<(), StoreError> {
        self.write(move |c| super::kv_set(c, key, &value)).await
    }

    /// Replaces a `kv` key's value by `f(the value before)` (`None`: no
    /// value, or unreadable), in one transaction.
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn replace_kv_value<F>(&self, key: &'static str, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(Option<String>) -> String + Send + 'static,
    {
        self.write(move |c| {
            let before = super::kv_get(c, key).ok().flatten();
            super::kv_set(c, key, &f(before))
        })
        .await
    }

    /// The value of a `kv` key and the [`super::Counts`], read in one
    /// transaction.
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn kv_value_and_counts(
        &self,
        key: &'static str,
    ) -> Result<(Option<String>, super::Counts), StoreError> {
        self.read(move |c| Ok((super::kv_get(c, key)?, super::counts(c)?)))
            .await
    }

    /// Sets `kv` key `key` to `value`, then reads the [`super::Counts`]
    /// and sets `then_key` to the text `f` makes of them, in one
    /// transaction; answers the rest of what `f` returns.
    ///
    /// Errors: SQLite's, or the store is closed (nothing is written).
    pub async fn set_kv_then_from_counts<T, F>(
        &self,
        key: &'static str,
        value: String,
        then_key: &'static str,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&super::Counts) -> (String, T) + Send + 'static,
    {
        self.write(move |c| {
            super::kv_set(c, key, &value)?;
            let (text, rest) = f(&super::counts(c)?);
            super::kv_set(c, then_key, &text)?;
            Ok(rest)
        })
        .await
    }
}

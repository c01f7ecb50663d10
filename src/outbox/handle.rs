//! The typed methods of the store handle for small values and counts:
//! callers get what they asked for, never the connection (the methods of
//! a table family live beside its statements, e.g. [`super::activity`]).

use super::{Counts, Store, StoreError, kv, migrations};

impl Store {
    /// The value of a `kv` key ([`kv::kv_get`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn kv_value(&self, key: &'static str) -> Result<Option<String>, StoreError> {
        self.read(move |c| kv::kv_get(c, key)).await
    }

    /// Sets a `kv` key ([`kv::kv_set`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn set_kv_value(&self, key: &'static str, value: String) -> Result<(), StoreError> {
        self.write(move |c| kv::kv_set(c, key, &value)).await
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
            let before = kv::kv_get(c, key).ok().flatten();
            kv::kv_set(c, key, &f(before))
        })
        .await
    }

    /// The value of a `kv` key and the [`Counts`], read in one
    /// transaction.
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn kv_value_and_counts(
        &self,
        key: &'static str,
    ) -> Result<(Option<String>, Counts), StoreError> {
        self.read(move |c| Ok((kv::kv_get(c, key)?, super::counts(c)?)))
            .await
    }

    /// Sets `kv` key `key` to `value`, then reads the [`Counts`]
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
        F: FnOnce(&Counts) -> (String, T) + Send + 'static,
    {
        self.write(move |c| {
            kv::kv_set(c, key, &value)?;
            let (text, rest) = f(&super::counts(c)?);
            kv::kv_set(c, then_key, &text)?;
            Ok(rest)
        })
        .await
    }

    /// Deletes a `kv` key ([`kv::kv_delete`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn delete_kv_value(&self, key: &'static str) -> Result<(), StoreError> {
        self.write(move |c| kv::kv_delete(c, key)).await
    }

    /// The [`Counts`] `status` shows ([`super::counts`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.read(super::counts).await
    }

    /// The schema version the store's file is at (`PRAGMA user_version`,
    /// [`migrations::schema_of`]).
    ///
    /// Errors: SQLite's, or the store is closed.
    pub async fn schema_applied(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(migrations::schema_of(c)?.applied)).await
    }

    /// Notes that the test build of the next release started
    /// ([`kv::mark_next_started`]; tests/rollback.rs reads it).
    ///
    /// Errors: SQLite's, or the store is closed.
    #[cfg(feature = "test-next")]
    pub async fn mark_next_started(&self) -> Result<(), StoreError> {
        self.write(kv::mark_next_started).await
    }
}

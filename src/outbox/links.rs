//! Manual link requests (table `link_requests`, sync-rules 4b): the CLI
//! queues one (`zenchef-edge link` / `unlink`), the daemon (`crate::links`,
//! and the order's Zenchef lane for its calls) applies it and writes its
//! outcome.
//!
//! Request states: `pending` (to apply, or waiting: `result` says for
//! what), `cancelling` (applied, the walk-in it replaced still to cancel in
//! Zenchef), `done`, `refused`.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::time::now_utc;

/// The state of a link request, stored as its name (`pending`,
/// `cancelling`, `done`, `refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// To apply, or waiting (`result` says for what).
    Pending,
    /// Applied; the walk-in it replaced is still to cancel in Zenchef.
    Cancelling,
    /// Applied (or nothing to do).
    Done,
    /// Refused (`result` says why).
    Refused,
}

impl LinkState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Cancelling => "cancelling",
            LinkState::Done => "done",
            LinkState::Refused => "refused",
        }
    }

    /// The state a stored name names; `None` for a name no release wrote.
    pub fn parse(s: &str) -> Option<LinkState> {
        [
            LinkState::Pending,
            LinkState::Cancelling,
            LinkState::Done,
            LinkState::Refused,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

impl rusqlite::ToSql for LinkState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for LinkState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        LinkState::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown link request state `{s}`").into())
        })
    }
}

/// One row of `link_requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    /// Request id (also in the walk-in cancel's `PublisherModelId`).
    pub id: i64,
    /// The POS order.
    pub order_id: String,
    /// The booking to link; `None` = unlink.
    pub booking_id: Option<i64>,
    /// Where the request is.
    pub state: LinkState,
    /// The sentence shown by the CLI (also the reason of a wait).
    pub result: Option<String>,
    /// Walk-in still to cancel in Zenchef (state `cancelling`).
    pub cancel_booking: Option<i64>,
}

/// Has the store the `link_requests` table (a store an older agent wrote
/// and the daemon has not migrated yet has not)?
pub fn has_table(c: &Connection) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'link_requests')",
        [],
        |r| r.get(0),
    )?)
}

/// Queues a link (`booking_id = Some`) or an unlink of `order_id`;
/// answers the request id.
pub fn request(c: &Connection, order_id: &str, booking_id: Option<i64>) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO link_requests(order_id, booking_id, requested_at, state, updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?3)",
        params![order_id, booking_id, now_utc()],
    )?;
    Ok(c.last_insert_rowid())
}

/// Maps a row of `SELECT id, order_id, booking_id, state, result,
/// cancel_booking FROM link_requests`.
fn read_request(x: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRequest> {
    Ok(LinkRequest {
        id: x.get(0)?,
        order_id: x.get(1)?,
        booking_id: x.get(2)?,
        state: x.get(3)?,
        result: x.get(4)?,
        cancel_booking: x.get(5)?,
    })
}

/// The request `id` (`None`: no such request).
pub fn get(c: &Connection, id: i64) -> Result<Option<LinkRequest>, StoreError> {
    Ok(c.query_row(
        "SELECT id, order_id, booking_id, state, result, cancel_booking FROM link_requests
         WHERE id = ?1",
        [id],
        read_request,
    )
    .optional()?)
}

/// The unfinished requests, oldest first.
pub fn open_requests(c: &Connection) -> Result<Vec<LinkRequest>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT id, order_id, booking_id, state, result, cancel_booking FROM link_requests
         WHERE state IN ('pending', 'cancelling') ORDER BY id",
    )?;
    let rows = stmt.query_map([], read_request)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a request's state and sentence.
pub fn set_state(
    c: &Connection,
    id: i64,
    state: LinkState,
    result: &str,
    cancel_booking: Option<i64>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE link_requests SET state = ?2, result = ?3, cancel_booking = ?4, updated_at = ?5
         WHERE id = ?1",
        params![id, state, result, cancel_booking, now_utc()],
    )?;
    Ok(())
}

/// The unfinished requests of `order_id`, oldest first (the order's
/// Zenchef lane applies them, `crate::delivery::link_steps`).
pub fn open_requests_of(c: &Connection, order_id: &str) -> Result<Vec<LinkRequest>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, order_id, booking_id, state, result, cancel_booking FROM link_requests
         WHERE state IN ('pending', 'cancelling') AND order_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([order_id], read_request)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The orders with an unfinished request, each once (work for their
/// Zenchef lane).
pub fn open_orders(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT order_id FROM link_requests
         WHERE state IN ('pending', 'cancelling') ORDER BY order_id",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Like [`set_state`], only while the request is still in state `from`;
/// answers whether it was (the links task and the order's lane both look
/// at a request: the first to write wins, the other changes nothing).
pub fn set_state_from(
    c: &Connection,
    id: i64,
    from: LinkState,
    state: LinkState,
    result: &str,
    cancel_booking: Option<i64>,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE link_requests SET state = ?2, result = ?3, cancel_booking = ?4, updated_at = ?5
         WHERE id = ?1 AND state = ?6",
        params![id, state, result, cancel_booking, now_utc(), from],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored names are the ones every release wrote (a store keeps
    /// them across updates).
    #[test]
    fn link_states_keep_their_stored_names() {
        let all = [
            (LinkState::Pending, "pending"),
            (LinkState::Cancelling, "cancelling"),
            (LinkState::Done, "done"),
            (LinkState::Refused, "refused"),
        ];
        for (state, name) in all {
            assert_eq!(state.as_str(), name);
            assert_eq!(LinkState::parse(name), Some(state));
        }
        assert_eq!(LinkState::parse("applied"), None);
    }
}

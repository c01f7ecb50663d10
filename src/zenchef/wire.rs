//! The JSON bodies of the Zenchef partner API as the agent sends and reads
//! them (docs/protocol/zenchef-api.md): the booking status, the request
//! bodies (`changeStatus`, walk-in creation, `pos_ticket`) and the answers
//! read (`{"data":…}`, the booking list page).
//!
//! The booking status and the bodies a plan decides (walk-in creation,
//! `pos_ticket`) are the domain's ([`domain::booking`]): a stored plan keeps
//! them as they are sent, so they are one type, re-exported here.
//!
//! Field order: the agent built these bodies with `serde_json::json!`,
//! whose maps (no `preserve_order` feature) write their keys sorted. The
//! structs declare their fields in that same sorted order, so the bytes
//! sent, and the plans stored in the outbox, are the ones earlier releases
//! wrote.

use serde::{Deserialize, Serialize};

pub use domain::booking::{BookingStatus, PlanBody, PosTicketBody, TicketPayment, WalkinBody};

/// `PATCH /bookings/{id}/changeStatus` body: `{"status":"seated"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeStatusBody<'a> {
    /// The new status.
    pub status: &'a BookingStatus,
}

/// An answer `{"data": …}` (one booking, the tables).
#[derive(Debug, Deserialize)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// One page of `GET /bookings`: the bookings are kept as raw JSON so that
/// one booking the agent cannot read is skipped alone (with a WARN naming
/// its id), never the page.
#[derive(Debug, Deserialize)]
pub struct BookingsPage {
    /// The bookings of the page.
    pub data: Vec<serde_json::Value>,
    /// Where the page is in the list.
    pub paginator: Paginator,
}

/// The paginator of a list answer (only what the agent reads).
#[derive(Debug, Deserialize)]
pub struct Paginator {
    /// 1-based page number.
    pub current_page: u64,
    /// Number of pages.
    pub total_pages: u64,
}

/// The `data` of a walk-in creation answer: the created booking, of which
/// the agent reads the id. Anything else (no id, an id that is not an
/// integer, a `data` that is not an object) has no id.
#[derive(Debug, Deserialize)]
#[serde(from = "serde_json::Value")]
pub struct CreatedBooking {
    id: Option<i64>,
}

impl From<serde_json::Value> for CreatedBooking {
    fn from(v: serde_json::Value) -> Self {
        CreatedBooking {
            id: v.get("id").and_then(serde_json::Value::as_i64),
        }
    }
}

impl CreatedBooking {
    /// The created booking's id, if the answer has one.
    pub fn id(&self) -> Option<i64> {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn created_booking_reads_the_id_or_nothing() {
        let id = |v: serde_json::Value| serde_json::from_value::<CreatedBooking>(v).unwrap().id();
        assert_eq!(id(json!({"id": 5000, "status": "seated"})), Some(5000));
        assert_eq!(id(json!({"id": "5000"})), None);
        assert_eq!(id(json!(null)), None);
        assert_eq!(id(json!("created")), None);
        assert_eq!(id(json!([5000])), None, "not an object: no id");
    }
}

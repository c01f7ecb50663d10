//! What the agent publishes to the POS (docs/protocol/cashpad-local.md):
//! a reservation (§6, retained on `R/zenchef/reservations/<booking_id>`)
//! and the agent's status (retained on `R/zenchef/status`).
//!
//! Field order: the agent built these with `serde_json::json!`, whose maps
//! (serde_json without `preserve_order`) wrote their keys sorted; the
//! fields are declared in that order, so the bytes published — and the
//! reservation bodies the mirror keeps to compare — are unchanged.

use domain::booking::{Booking, BookingStatus};
use serde::Serialize;

/// One reservation as the POS shows it (§6). Absent values are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reservation {
    /// Allergies noted on the booking.
    pub allergies: Option<String>,
    /// Zenchef booking id.
    pub booking_id: i64,
    /// The booking's comment.
    pub comment: Option<String>,
    /// Who booked (rule 3: from the booking, else its customer sheet).
    pub customer: Customer,
    /// Day, restaurant local time (`YYYY-MM-DD`).
    pub day: String,
    /// Covers.
    pub nb_guests: Option<i64>,
    /// The booking's status, as Zenchef wrote it.
    pub status: BookingStatus,
    /// Table names.
    pub tables: Vec<String>,
    /// Time, restaurant local time (`HH:MM`).
    pub time: String,
    /// Zenchef's last change of the booking, as Zenchef wrote it.
    pub updated_at: Option<String>,
}

/// The guest of a [`Reservation`]; an empty value is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    /// E-mail address.
    pub email: Option<String>,
    /// First name.
    pub firstname: Option<String>,
    /// Last name.
    pub lastname: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
}

impl Reservation {
    /// The §6 reservation for a booking (customer fields from the booking,
    /// or from its `customersheet` when the booking lacks them — rule 3).
    pub fn of(b: &Booking) -> Reservation {
        let sheet = b.customersheet.as_ref();
        let pick = |own: &Option<String>, theirs: Option<&Option<String>>| {
            own.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| theirs.and_then(|t| t.clone()).filter(|s| !s.is_empty()))
        };
        Reservation {
            allergies: b.allergies.clone(),
            booking_id: b.id,
            comment: b.comment.clone(),
            customer: Customer {
                email: pick(&b.email, sheet.map(|s| &s.email)),
                firstname: pick(&b.firstname, sheet.map(|s| &s.firstname)),
                lastname: pick(&b.lastname, sheet.map(|s| &s.lastname)),
                phone: pick(&b.phone_number, sheet.map(|s| &s.phone)),
            },
            day: b.day.clone(),
            nb_guests: b.nb_guests,
            status: b.status.clone(),
            tables: b.tables.iter().map(|t| t.name.clone()).collect(),
            time: b.time.clone(),
            updated_at: b.updated_at.clone(),
        }
    }

    /// The bytes published (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a reservation always serializes")
    }
}

/// The agent's retained status (`{"online":true,"pending":N,"version":"…"}`);
/// the session's last will is `{"online":false}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    /// Always `true` here (the last will says `false`).
    pub online: bool,
    /// Queued outbox rows.
    pub pending: i64,
    /// The agent's version.
    pub version: &'static str,
}

impl AgentStatus {
    /// The bytes published (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The body the first release built with `json!`, for the comparison.
    fn old_body(b: &Booking) -> String {
        let sheet = b.customersheet.as_ref();
        let pick = |own: &Option<String>, theirs: Option<&Option<String>>| -> Value {
            own.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| theirs.and_then(|t| t.clone()).filter(|s| !s.is_empty()))
                .map(Value::String)
                .unwrap_or(Value::Null)
        };
        json!({
            "booking_id": b.id,
            "day": b.day,
            "time": b.time,
            "nb_guests": b.nb_guests,
            "status": b.status,
            "tables": b.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "comment": b.comment,
            "allergies": b.allergies,
            "customer": {
                "firstname": pick(&b.firstname, sheet.map(|s| &s.firstname)),
                "lastname": pick(&b.lastname, sheet.map(|s| &s.lastname)),
                "phone": pick(&b.phone_number, sheet.map(|s| &s.phone)),
                "email": pick(&b.email, sheet.map(|s| &s.email)),
            },
            "updated_at": b.updated_at,
        })
        .to_string()
    }

    #[test]
    fn bodies_are_byte_identical_to_the_earlier_json_ones() {
        let full: Booking = serde_json::from_value(json!({
            "id": 42, "day": "2026-12-02", "time": "20:30", "nb_guests": 4,
            "firstname": "", "lastname": "Martin", "comment": "Anniversaire",
            "allergies": "noix", "status": "confirmed",
            "tables": [{"id": 1, "name": "12"}, {"id": 2, "name": "Terrasse 3"}],
            "customersheet": {"firstname": "Camille", "lastname": "X", "phone": "+33600000000",
                              "email": ""},
            "updated_at": "2026-12-01 18:00:00"
        }))
        .unwrap();
        let bare: Booking = serde_json::from_value(json!({
            "id": 7, "day": "2026-12-02", "time": "12:00", "status": "some_new_status",
            "tables": []
        }))
        .unwrap();
        for b in [&full, &bare] {
            assert_eq!(Reservation::of(b).to_json(), old_body(b));
        }
        let status = AgentStatus {
            online: true,
            pending: 3,
            version: "0.1.0",
        };
        assert_eq!(
            status.to_json(),
            json!({"online": true, "version": "0.1.0", "pending": 3}).to_string()
        );
    }
}

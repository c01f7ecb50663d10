//! Bookings as the rules see them: a booking as read from Zenchef (its
//! status, tables and guest), and the bodies a Zenchef plan decides (walk-in creation, `pos_ticket`), kept in the stored
//! plan (the outbox's `plan` column) and sent as they are.
//!
//! Field order: the agent built these bodies with `serde_json::json!`,
//! whose maps (no `preserve_order` feature) write their keys sorted. The
//! structs declare their fields in that same sorted order, so the plans
//! stored, and the bytes the Zenchef client sends from them, are the ones
//! earlier releases wrote (docs/protocol/zenchef-api.md).

use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Method;
use crate::sync::CheckLine;

/// A booking's `status` (docs/protocol/zenchef-api.md § Booking object).
/// A status this release does not know is kept as [`BookingStatus::Other`]
/// with its text: it never fails the booking (nor its page) and is passed
/// on as Zenchef wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BookingStatus {
    /// `waiting`.
    Waiting,
    /// `waiting_customer`.
    WaitingCustomer,
    /// `confirmed`.
    Confirmed,
    /// `canceled`.
    Canceled,
    /// `refused`.
    Refused,
    /// `arrived`.
    Arrived,
    /// `seated`: the integration's "installé".
    Seated,
    /// `over`: the integration's "terminé" (finished).
    Over,
    /// `no_shown`.
    NoShown,
    /// Any other word, as Zenchef sent it.
    Other(String),
}

impl BookingStatus {
    /// The statuses of the public list, every one but [`BookingStatus::Other`].
    pub const KNOWN: [BookingStatus; 9] = [
        BookingStatus::Waiting,
        BookingStatus::WaitingCustomer,
        BookingStatus::Confirmed,
        BookingStatus::Canceled,
        BookingStatus::Refused,
        BookingStatus::Arrived,
        BookingStatus::Seated,
        BookingStatus::Over,
        BookingStatus::NoShown,
    ];

    /// The wire word (`seated`, `no_shown`, or the unknown word itself).
    pub fn as_str(&self) -> &str {
        match self {
            BookingStatus::Waiting => "waiting",
            BookingStatus::WaitingCustomer => "waiting_customer",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Canceled => "canceled",
            BookingStatus::Refused => "refused",
            BookingStatus::Arrived => "arrived",
            BookingStatus::Seated => "seated",
            BookingStatus::Over => "over",
            BookingStatus::NoShown => "no_shown",
            BookingStatus::Other(s) => s,
        }
    }

    /// Cancelled, refused or no-show: the reservation is withdrawn from the
    /// POS (docs/protocol/sync-rules.md, rule 2), and a booking matched by a
    /// `table.opened` whose seat call was not made is matched again (rule 10).
    pub fn is_withdrawn(&self) -> bool {
        matches!(
            self,
            BookingStatus::Canceled | BookingStatus::Refused | BookingStatus::NoShown
        )
    }
}

impl From<&str> for BookingStatus {
    fn from(s: &str) -> Self {
        BookingStatus::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or_else(|| BookingStatus::Other(s.to_string()))
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for BookingStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Serialize for BookingStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BookingStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(BookingStatus::from(s.as_ref()))
    }
}

/// A booking as the agent reads it (docs/protocol/zenchef-api.md § Booking object).
/// Unknown fields are ignored; absent optional fields are `None`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Booking {
    /// Booking id.
    pub id: i64,
    /// `reservation` or `walkin`.
    #[serde(default)]
    pub reservation_type: Option<String>,
    /// Day, restaurant local (`YYYY-MM-DD`).
    pub day: String,
    /// Time, restaurant local (`HH:MM`).
    pub time: String,
    /// Party size.
    #[serde(default)]
    pub nb_guests: Option<i64>,
    /// Guest first name.
    #[serde(default)]
    pub firstname: Option<String>,
    /// Guest last name.
    #[serde(default)]
    pub lastname: Option<String>,
    /// Guest mobile.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// Guest e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Remarks shown to the POS.
    #[serde(default)]
    pub comment: Option<String>,
    /// Allergies shown to the POS.
    #[serde(default)]
    pub allergies: Option<String>,
    /// Zenchef status (`confirmed`, `seated`, `over`, …; an unknown one
    /// is kept as it was sent).
    pub status: BookingStatus,
    /// Assigned tables.
    #[serde(default)]
    pub tables: Vec<BookingTable>,
    /// Guest profile.
    #[serde(default)]
    pub customersheet: Option<CustomerSheet>,
    /// Last change (Zenchef clock).
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A table of a booking.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BookingTable {
    /// Zenchef table id.
    #[serde(default)]
    pub id: Option<i64>,
    /// Table name (must equal the POS's).
    pub name: String,
}

/// The guest profile attached to a booking.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CustomerSheet {
    /// Profile id.
    #[serde(default)]
    pub id: Option<i64>,
    /// First name.
    #[serde(default)]
    pub firstname: Option<String>,
    /// Last name.
    #[serde(default)]
    pub lastname: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile.
    #[serde(default)]
    pub phone: Option<String>,
    /// Visits counted by Zenchef.
    #[serde(default)]
    pub visits: Option<i64>,
    /// Average spend, cents.
    #[serde(default)]
    pub average_spend_cents: Option<i64>,
}

impl Booking {
    /// Day and time parsed, `None` when Zenchef sent something unreadable.
    pub fn local_datetime(&self) -> Option<(NaiveDate, NaiveTime)> {
        let day = NaiveDate::parse_from_str(&self.day, "%Y-%m-%d").ok()?;
        let time = NaiveTime::parse_from_str(&self.time, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(&self.time, "%H:%M:%S"))
            .ok()?;
        Some((day, time))
    }
}

/// A request body kept in a stored plan (the outbox's `plan` column):
/// built by this release ([`PlanBody::Typed`]), or a stored body that is
/// not exactly the typed shape ([`PlanBody::Stored`]), which is sent back
/// as it was stored, so a plan decided before a change of shape replays
/// the same call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanBody<T> {
    /// The body as this release builds it.
    Typed(T),
    /// A stored body of another shape, sent as stored.
    Stored(serde_json::Value),
}

impl<T> From<T> for PlanBody<T> {
    fn from(t: T) -> Self {
        PlanBody::Typed(t)
    }
}

/// `POST /bookings?force=1` body creating a walk-in seated at once
/// (docs/protocol/zenchef-api.md, endpoints; the walk-in fields are
/// assumed). Fields in sorted order (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkinBody {
    /// Always `fr`.
    pub country: String,
    /// Day, restaurant local (`YYYY-MM-DD`).
    pub day: String,
    /// Always `Walk-in`.
    pub firstname: String,
    /// `Table <name>`.
    pub lastname: String,
    /// Guests (covers).
    pub nb_guests: u32,
    /// Always `walkin`.
    pub reservation_type: String,
    /// Always [`BookingStatus::Seated`].
    pub status: BookingStatus,
    /// Table **names** (one: the POS table).
    pub tables: Vec<String>,
    /// Time, restaurant local (`HH:MM`).
    pub time: String,
}

/// `PUT /bookings/{id}/pos_ticket` body (docs/protocol/zenchef-api.md §
/// "The `pos_ticket` body", assumed): the POS's own lines and totals,
/// integer cents in `currency`. Fields in sorted order (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosTicketBody {
    /// Guests.
    pub covers: u32,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// The POS lines (discounts and comps as negative lines).
    pub lines: Vec<CheckLine>,
    /// When the bill was paid, RFC 3339 with the POS's offset.
    pub paid_at: String,
    /// The payments, tips included.
    pub payments: Vec<TicketPayment>,
    /// The POS order id (the call is idempotent by it).
    pub ticket_id: String,
    /// Tip, cents.
    pub tip_cents: i64,
    /// The POS bill total, cents.
    pub total_cents: i64,
}

/// A payment of a `pos_ticket`. Fields in sorted order (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketPayment {
    /// Amount, cents (tip included).
    pub amount_cents: i64,
    /// How it was paid.
    pub method: Method,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_keep_their_wire_words_and_unknown_ones_stay_readable() {
        let words = BookingStatus::KNOWN.map(|k| k.as_str().to_string());
        assert_eq!(words[1], "waiting_customer");
        assert_eq!(words[8], "no_shown");
        for w in words.iter().map(String::as_str).chain(["archived"]) {
            let s: BookingStatus = serde_json::from_value(json!(w)).unwrap();
            assert_eq!(s.as_str(), w);
            assert_eq!(serde_json::to_value(&s).unwrap(), json!(w));
            assert_eq!(s == BookingStatus::Other(w.into()), w == "archived");
        }
        assert_eq!(
            BookingStatus::from("archived"),
            BookingStatus::Other("archived".into())
        );
        assert!(BookingStatus::NoShown.is_withdrawn() && !BookingStatus::Over.is_withdrawn());
    }

    #[test]
    fn stored_bodies_of_another_shape_are_sent_as_stored() {
        let b: PlanBody<PosTicketBody> = serde_json::from_str("{}").unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), "{}");
        let extra = r#"{"country":"fr","day":"2026-11-29","extra":1,"firstname":"Walk-in","lastname":"Table 12","nb_guests":4,"reservation_type":"walkin","status":"seated","tables":["12"],"time":"20:42"}"#;
        let b: PlanBody<WalkinBody> = serde_json::from_str(extra).unwrap();
        assert!(matches!(b, PlanBody::Stored(_)));
        assert_eq!(serde_json::to_string(&b).unwrap(), extra);
    }
}

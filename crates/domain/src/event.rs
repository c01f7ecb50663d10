//! POS events: the envelope of docs/protocol/cashpad-local.md §3 and the `data` of each
//! type of §4, parsed and validated.
//!
//! [`parse`] never panics: every rejection is a [`Rejection`] whose
//! `reason` names the field by its path (`data.lines[1].total_cents`) and
//! says what is wrong with the value. Unknown fields are ignored (a newer
//! POS may add some); unknown event *types* are accepted as
//! [`EventData::Unknown`] (stored, logged once per type, skipped — §3).
//!
//! Money is integer cents, never floating point (a fractional amount is
//! refused by the parser, never rounded), capped at [`MAX_CENTS`] in
//! absolute value so it always fits SQLite's signed 64-bit integers. Bill
//! totals, payments and tips are [`Cents`] (never negative); a bill line's
//! prices are [`SignedCents`]: a discount or a comp is a line of its own
//! with negative `unit_price_cents` and `total_cents` (Cashpad local
//! interface §4), normal input carried as the POS sent it.

use chrono::{DateTime, FixedOffset};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Largest accepted payload, bytes. Bigger payloads are quarantined (their
/// first 64 KiB kept) without being parsed.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest accepted amount in cents (10 billion in the currency's unit).
pub const MAX_CENTS: u64 = 1_000_000_000_000;
/// Longest accepted `event_id` (cashpad §3: 1–64 chars).
pub const MAX_EVENT_ID_CHARS: usize = 64;
/// Longest accepted event `type` (cashpad §2a: 64 characters).
pub const MAX_TYPE_CHARS: usize = 64;
/// Longest accepted identifier or name (`order_id`, table names, references).
pub const MAX_NAME_CHARS: usize = 200;

/// A validated event (cashpad §3).
#[derive(Debug, Clone, PartialEq)]
pub struct PosEvent {
    /// Unique per installation; the deduplication key.
    pub event_id: String,
    /// Increasing per installation; gaps are normal.
    pub seq: u64,
    /// The `type` string as sent.
    pub event_type: String,
    /// POS clock, with its offset.
    pub occurred_at: DateTime<FixedOffset>,
    /// The typed `data`.
    pub data: EventData,
}

/// The `data` of each event type (cashpad §4).
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// `table.opened`
    TableOpened(TableOpened),
    /// `order.items_sent`
    ItemsSent(ItemsSent),
    /// `table.moved`
    TableMoved(TableMoved),
    /// `payment.recorded`
    PaymentRecorded(PaymentRecorded),
    /// `bill.paid`
    BillPaid(BillPaid),
    /// `order.voided`
    OrderVoided(OrderVoided),
    /// A type this agent does not know: stored and skipped.
    Unknown,
}

impl EventData {
    /// The order the event belongs to (`None` for unknown types).
    pub fn order_id(&self) -> Option<&str> {
        match self {
            EventData::TableOpened(d) => Some(&d.order_id),
            EventData::ItemsSent(d) => Some(&d.order_id),
            EventData::TableMoved(d) => Some(&d.order_id),
            EventData::PaymentRecorded(d) => Some(&d.order_id),
            EventData::BillPaid(d) => Some(&d.order_id),
            EventData::OrderVoided(d) => Some(&d.order_id),
            EventData::Unknown => None,
        }
    }
}

/// `table.opened`: an order is opened on a table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TableOpened {
    /// Order id (unique per installation).
    pub order_id: Name,
    /// Table name as shown in the POS.
    pub table: Name,
    /// Number of guests, ≥ 1.
    pub covers: Covers,
    /// When the table was opened (POS clock, with offset).
    pub opened_at: PosTime,
}

/// `order.items_sent`: items sent to the kitchen; `lines` is the whole bill.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemsSent {
    /// Order id.
    pub order_id: Name,
    /// Table name.
    pub table: Name,
    /// The whole current bill.
    pub lines: Vec<Line>,
    /// The POS's own total (discounts included), cents.
    pub total_cents: Cents,
}

/// `table.moved`: the order moved to another table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TableMoved {
    /// Order id.
    pub order_id: Name,
    /// Previous table name.
    pub from_table: Name,
    /// New table name.
    pub to_table: Name,
}

/// `payment.recorded`: a partial payment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PaymentRecorded {
    /// Order id.
    pub order_id: Name,
    /// Amount paid, cents (tip excluded).
    pub amount_cents: Cents,
    /// Tip, cents.
    pub tip_cents: Cents,
    /// How it was paid.
    pub method: Method,
    /// Free reference; the Zenchef Pay `payment_id` for `zenchef_pay`.
    #[serde(default)]
    pub reference: Option<String>,
}

/// `bill.paid`: the bill is fully paid and the table closed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BillPaid {
    /// Order id.
    pub order_id: Name,
    /// Table name.
    pub table: Name,
    /// Number of guests, ≥ 1.
    pub covers: Covers,
    /// The whole bill.
    pub lines: Vec<Line>,
    /// The POS's own total, cents.
    pub total_cents: Cents,
    /// Tips, cents.
    pub tip_cents: Cents,
    /// Every payment of the bill.
    pub payments: Vec<Payment>,
    /// When the bill was paid (POS clock, with offset).
    pub paid_at: PosTime,
}

/// `order.voided`: cancelled without payment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderVoided {
    /// Order id.
    pub order_id: Name,
    /// Table name.
    pub table: Name,
    /// Why, as typed in the POS.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A bill line (cashpad §4). A discount or comp is a line whose prices
/// are negative (`"Remise fidélité"`, `-1000`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Line {
    /// POS line id.
    pub line_id: String,
    /// Item name.
    pub name: String,
    /// Quantity, carried as sent. The contract says positive; a 0 is still
    /// accepted (refusing the whole bill for it would leave the order open
    /// and its guests' payments in doubt).
    pub quantity: u32,
    /// Unit price, cents; negative for a discount or comp.
    pub unit_price_cents: SignedCents,
    /// Line total, cents (the POS's, never recomputed); negative for a
    /// discount or comp.
    pub total_cents: SignedCents,
}

/// A payment of a bill (cashpad §4).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Payment {
    /// How it was paid.
    pub method: Method,
    /// Amount, cents.
    pub amount_cents: Cents,
    /// The Zenchef Pay `payment_id` when `method` is `zenchef_pay`.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Card at the POS.
    Card,
    /// Cash.
    Cash,
    /// Paid by the guest through Zenchef Pay.
    ZenchefPay,
    /// Anything else.
    Other,
}

/// An amount in integer cents, 0..=[`MAX_CENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v > MAX_CENTS {
            return Err(serde::de::Error::custom(format!(
                "{v} cents is above the accepted maximum {MAX_CENTS}"
            )));
        }
        Ok(Cents(v as i64))
    }
}

/// An amount in integer cents that may be negative (a bill line's prices:
/// discounts and comps), `-MAX_CENTS..=MAX_CENTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SignedCents(pub i64);

impl<'de> Deserialize<'de> for SignedCents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v.unsigned_abs() > MAX_CENTS {
            return Err(serde::de::Error::custom(format!(
                "{v} cents is beyond the accepted ±{MAX_CENTS}"
            )));
        }
        Ok(SignedCents(v))
    }
}

/// Covers (guests), 1..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Covers(pub u32);

impl<'de> Deserialize<'de> for Covers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if !(1..=1000).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "covers must be between 1 and 1000, got {v}"
            )));
        }
        Ok(Covers(v))
    }
}

/// A non-empty identifier or name of at most [`MAX_NAME_CHARS`] chars.
/// Kept exactly as sent (table names are compared case- and space-exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        if v.is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        let n = v.chars().count();
        if n > MAX_NAME_CHARS {
            return Err(serde::de::Error::custom(format!(
                "{n} characters, more than the {MAX_NAME_CHARS} accepted"
            )));
        }
        Ok(Name(v))
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 3339 time **with** its offset, as the POS clock gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosTime(pub DateTime<FixedOffset>);

impl<'de> Deserialize<'de> for PosTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&v).map(PosTime).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{}` is not an RFC 3339 time with offset such as \
                 2026-11-29T19:42:05+01:00 ({e})",
                truncate(&v, 60)
            ))
        })
    }
}

/// Why a payload was quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `event_id` when it could be read (to find it in the POS logs).
    pub event_id: Option<String>,
    /// One sentence naming the field and the problem.
    pub reason: String,
}

#[derive(Deserialize)]
struct RawEnvelope {
    event_id: serde_json::Value,
    seq: u64,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: PosTime,
    data: serde_json::Map<String, serde_json::Value>,
}

/// Parses and validates one `R/events` payload.
///
/// Errors: a [`Rejection`] for a payload that is too big, not UTF-8, not
/// JSON, misses a field, or has a field of the wrong type or range.
pub fn parse(payload: &[u8]) -> Result<PosEvent, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection {
            event_id: None,
            reason: format!(
                "payload is {} bytes, more than the {MAX_PAYLOAD_BYTES} accepted",
                payload.len()
            ),
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| Rejection {
        event_id: None,
        reason: format!(
            "payload is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Rejection {
        event_id: None,
        reason: format!("payload is not JSON: {e}"),
    })?;
    let event_id_hint = value
        .get("event_id")
        .and_then(|v| v.as_str())
        .map(|s| truncate(s, MAX_EVENT_ID_CHARS).to_string());
    let reject = |reason: String| Rejection {
        event_id: event_id_hint.clone(),
        reason,
    };
    if !value.is_object() {
        return Err(reject("payload is JSON but not an object".into()));
    }
    let raw: RawEnvelope = typed(value, "").map_err(reject)?;
    let event_id = match raw.event_id {
        serde_json::Value::String(s) => s,
        other => {
            return Err(reject(format!(
                "event_id: must be a string, got {}",
                kind_of(&other)
            )));
        }
    };
    let n = event_id.chars().count();
    if n == 0 || n > MAX_EVENT_ID_CHARS {
        return Err(reject(format!(
            "event_id: must be 1–{MAX_EVENT_ID_CHARS} characters, got {n}"
        )));
    }
    let n = raw.event_type.chars().count();
    if n > MAX_TYPE_CHARS {
        return Err(reject(format!(
            "type: {n} characters, more than the {MAX_TYPE_CHARS} accepted"
        )));
    }
    if raw.seq > i64::MAX as u64 {
        return Err(reject(format!(
            "seq: {} does not fit the store (max {})",
            raw.seq,
            i64::MAX
        )));
    }
    let data = serde_json::Value::Object(raw.data);
    let data = match raw.event_type.as_str() {
        "table.opened" => EventData::TableOpened(typed(data, "data.").map_err(reject)?),
        "order.items_sent" => EventData::ItemsSent(typed(data, "data.").map_err(reject)?),
        "table.moved" => EventData::TableMoved(typed(data, "data.").map_err(reject)?),
        "payment.recorded" => EventData::PaymentRecorded(typed(data, "data.").map_err(reject)?),
        "bill.paid" => EventData::BillPaid(typed(data, "data.").map_err(reject)?),
        "order.voided" => EventData::OrderVoided(typed(data, "data.").map_err(reject)?),
        _ => EventData::Unknown,
    };
    Ok(PosEvent {
        event_id,
        seq: raw.seq,
        event_type: raw.event_type,
        occurred_at: raw.occurred_at.0,
        data,
    })
}

/// Deserializes with the failing field's path in the message.
fn typed<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            // Missing fields are reported at the parent: the message names them.
            match prefix.trim_end_matches('.') {
                "" => inner,
                parent => format!("{parent}: {inner}"),
            }
        } else {
            format!("{prefix}{path}: {inner}")
        }
    })
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(t: &str, data: serde_json::Value) -> Vec<u8> {
        json!({"event_id":"e-1","seq":7,"type":t,
               "occurred_at":"2026-11-29T19:42:05+01:00","data":data})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_table_opened_parses_with_its_offset() {
        let e = parse(&env(
            "table.opened",
            json!({"order_id":"O-1","table":"12","covers":4,"opened_at":"2026-11-29T19:42:05+01:00"}),
        ))
        .unwrap();
        assert_eq!(e.seq, 7);
        assert_eq!(e.occurred_at.offset().local_minus_utc(), 3600);
        match e.data {
            EventData::TableOpened(d) => {
                assert_eq!((&*d.order_id, &*d.table, d.covers.0), ("O-1", "12", 4))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Bad payloads and the reason each must produce.
    #[test]
    fn bad_payloads_are_rejected_with_a_precise_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "payload is not JSON"),
            (
                vec![b'{', 0xff, b'}'],
                "payload is not UTF-8 (invalid byte at offset 1)",
            ),
            (b"[1,2]".to_vec(), "not an object"),
            (
                br#"{"seq":1,"type":"x","occurred_at":"2026-11-29T19:42:05+01:00","data":{}}"#
                    .to_vec(),
                "missing field `event_id`",
            ),
            (
                env(
                    "table.opened",
                    json!({"table":"12","covers":4,"opened_at":"2026-11-29T19:42:05+01:00"}),
                ),
                "data: missing field `order_id`",
            ),
            (
                env(
                    "bill.paid",
                    json!({"order_id":"O","table":"1","covers":2,"lines":[],
                    "total_cents":-5,"tip_cents":0,"payments":[],"paid_at":"2026-11-29T22:00:00+01:00"}),
                ),
                "data.total_cents: invalid value: integer `-5`, expected u64",
            ),
            (
                env(
                    "order.items_sent",
                    json!({"order_id":"O","table":"1","total_cents":100,
                    "lines":[{"line_id":"L1","name":"x","quantity":1,"unit_price_cents":12.5,"total_cents":100}]}),
                ),
                "data.lines[0].unit_price_cents: invalid type: floating point `12.5`, expected i64",
            ),
            (
                env(
                    "order.items_sent",
                    json!({"order_id":"O","table":"1","total_cents":-100,
                    "lines":[{"line_id":"L1","name":"Remise","quantity":1,"unit_price_cents":-100,"total_cents":-100}]}),
                ),
                "data.total_cents: invalid value: integer `-100`, expected u64",
            ),
            (
                env(
                    "payment.recorded",
                    json!({"order_id":"O","amount_cents":100,"tip_cents":-1,"method":"card"}),
                ),
                "data.tip_cents: invalid value: integer `-1`, expected u64",
            ),
            (
                env(
                    "order.items_sent",
                    json!({"order_id":"O","table":"1","total_cents":100,
                    "lines":[{"line_id":"L1","name":"x","quantity":1,"unit_price_cents":-1_000_000_000_001i64,"total_cents":0}]}),
                ),
                "data.lines[0].unit_price_cents: -1000000000001 cents is beyond the accepted ±1000000000000",
            ),
            (
                env(
                    "table.opened",
                    json!({"order_id":"O","table":"1","covers":0,"opened_at":"2026-11-29T19:42:05+01:00"}),
                ),
                "data.covers: covers must be between 1 and 1000, got 0",
            ),
            (
                env(
                    "table.opened",
                    json!({"order_id":"O","table":"1","covers":2,"opened_at":"2026-11-29 19:42"}),
                ),
                "data.opened_at: `2026-11-29 19:42` is not an RFC 3339 time with offset",
            ),
            (
                env(
                    "table.opened",
                    json!({"order_id":"","table":"1","covers":2,"opened_at":"2026-11-29T19:42:05+01:00"}),
                ),
                "data.order_id: must not be empty",
            ),
        ];
        for (payload, want) in cases {
            let r = parse(&payload).unwrap_err();
            assert!(
                r.reason.contains(want),
                "payload {:?}: reason {:?} lacks {want:?}",
                String::from_utf8_lossy(&payload),
                r.reason
            );
        }
    }

    /// A discount or comp is a line with negative prices: normal input
    /// (Cashpad local interface §4), kept as sent.
    #[test]
    fn discount_and_comp_lines_are_accepted_as_sent() {
        let e = parse(&env(
            "bill.paid",
            json!({"order_id":"O-1","table":"12","covers":2,
            "lines":[{"line_id":"L1","name":"Menu","quantity":2,"unit_price_cents":2500,"total_cents":5000},
                     {"line_id":"L2","name":"Remise fidélité","quantity":1,"unit_price_cents":-1000,"total_cents":-1000},
                     {"line_id":"L3","name":"Café offert","quantity":2,"unit_price_cents":0,"total_cents":0}],
            "total_cents":4000,"tip_cents":0,"payments":[{"method":"card","amount_cents":4000}],
            "paid_at":"2026-11-29T22:00:00+01:00"}),
        ))
        .unwrap();
        let EventData::BillPaid(d) = e.data else {
            panic!()
        };
        assert_eq!(d.lines[1].name, "Remise fidélité");
        assert_eq!(
            (d.lines[1].unit_price_cents.0, d.lines[1].total_cents.0),
            (-1000, -1000)
        );
        assert_eq!(d.total_cents.0, 4000);
    }

    #[test]
    fn unknown_types_and_extra_fields_are_accepted() {
        let e = parse(&env("kitchen.ready", json!({"anything": 1}))).unwrap();
        assert_eq!(e.data, EventData::Unknown);
        assert_eq!(e.event_type, "kitchen.ready");
        let e = parse(&env(
            "table.moved",
            json!({"order_id":"O","from_table":"1","to_table":"2","waiter":"Luc"}),
        ))
        .unwrap();
        assert!(matches!(e.data, EventData::TableMoved(_)));
    }

    #[test]
    fn oversized_and_overflowing_values() {
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(parse(&big).unwrap_err().reason.contains("more than the"));
        let r = parse(&env(
            "payment.recorded",
            json!({"order_id":"O","amount_cents":18446744073709551615u64,"tip_cents":0,"method":"card"}),
        ))
        .unwrap_err();
        assert!(r.reason.starts_with("data.amount_cents: "), "{}", r.reason);
        assert_eq!(r.event_id.as_deref(), Some("e-1"));
        let long_type = json!({"event_id":"e-t","seq":1,"type":"t".repeat(65),
                               "occurred_at":"2026-11-29T19:42:05+01:00","data":{}});
        let r = parse(long_type.to_string().as_bytes()).unwrap_err();
        assert_eq!(r.reason, "type: 65 characters, more than the 64 accepted");
        assert_eq!(r.event_id.as_deref(), Some("e-t"));
        let at_limit = json!({"event_id":"e-t","seq":1,"type":"é".repeat(64),
                              "occurred_at":"2026-11-29T19:42:05+01:00","data":{}});
        assert_eq!(
            parse(at_limit.to_string().as_bytes()).unwrap().data,
            EventData::Unknown
        );
        let long_id = "x".repeat(65);
        let p = json!({"event_id":long_id,"seq":1,"type":"x","occurred_at":"2026-11-29T19:42:05+01:00","data":{}});
        assert!(
            parse(p.to_string().as_bytes())
                .unwrap_err()
                .reason
                .contains("event_id: must be 1–64 characters, got 65")
        );
    }
}

//! The JSON bodies of the Zenchef Pay POS connector (docs/protocol/zenchef-pay.md)
//! and of the settle command the agent publishes to the POS on
//! `zenchef/commands` (docs/protocol/cashpad-local.md §7).
//!
//! Field order: as in [`crate::zenchef::wire`], the structs declare their
//! fields in the sorted order `serde_json::json!` wrote, so the bytes sent
//! (and the check bodies kept in `pay_checks`) are those of earlier
//! releases.

use serde::{Deserialize, Deserializer, Serialize};

use crate::sync::{Check, CheckLine, OrderStatus};

/// A check's `status` (§ Checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The guests can pay it.
    Open,
    /// Paid in full, wherever that happened.
    Closed,
    /// The order was cancelled.
    Voided,
}

impl From<OrderStatus> for CheckStatus {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Open => CheckStatus::Open,
            OrderStatus::Paid => CheckStatus::Closed,
            OrderStatus::Voided => CheckStatus::Voided,
        }
    }
}

/// `PUT /installations/{iid}/checks/{order_id}` body (§ Checks): the POS's
/// own lines and totals, integer cents in `currency`. Fields in sorted
/// order (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckBody {
    /// Guests (1 when unknown).
    pub covers: u32,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// The whole bill, as the POS last sent it.
    pub lines: Vec<CheckLine>,
    /// What the POS reports as paid, cents, tips excluded.
    pub paid_cents: i64,
    /// Open, closed or voided.
    pub status: CheckStatus,
    /// Table name.
    pub table: String,
    /// The POS bill total, cents.
    pub total_cents: i64,
    /// The check's version (the POS `seq` it was made from); `None` writes
    /// the body without it, as the agent keeps it to see whether Zenchef
    /// Pay already holds the same check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl From<Check> for CheckBody {
    /// The check the rules decided, in its wire form (the status of a paid
    /// order is `closed`).
    fn from(c: Check) -> Self {
        CheckBody {
            covers: c.covers,
            currency: c.currency,
            lines: c.lines,
            paid_cents: c.paid_cents,
            status: c.status.into(),
            table: c.table,
            total_cents: c.total_cents,
            version: Some(c.version),
        }
    }
}

/// The answer to a check push refused with 409 (§ Checks): the version
/// Zenchef Pay holds, under `stored_version` or `version` (the contract
/// does not say which). A `stored_version` that is there but not an
/// integer means "not said" (`version` is not looked at then), as the
/// first release read it.
#[derive(Debug, Default, Deserialize)]
pub struct CheckConflict {
    /// The version held, as answered (`Some(null)` when the key is there
    /// with null).
    #[serde(default, deserialize_with = "present")]
    pub stored_version: Option<serde_json::Value>,
    /// The version held, other name.
    #[serde(default, deserialize_with = "present")]
    pub version: Option<serde_json::Value>,
}

impl CheckConflict {
    /// The version Zenchef Pay holds, if the answer says.
    pub fn held(&self) -> Option<i64> {
        match &self.stored_version {
            Some(v) => v.as_i64(),
            None => self.version.as_ref().and_then(serde_json::Value::as_i64),
        }
    }
}

/// `GET /installations/{iid}/payments` answer (§ Payments made by guests).
/// The payments stay raw JSON: each one is read alone (one the agent cannot
/// read is reported with its JSON, never drops the page), and kept as
/// received. A missing or malformed field reads as empty.
#[derive(Debug, Default, Deserialize)]
pub struct PaymentsAnswer {
    /// The payments after the cursor.
    #[serde(default, deserialize_with = "list_or_empty")]
    pub payments: Vec<serde_json::Value>,
    /// The cursor to send back as `after`.
    #[serde(default, deserialize_with = "text_or_none")]
    pub next_cursor: Option<String>,
}

/// `POST /installations/{iid}/payments/{payment_id}/ack` body (§
/// Acknowledging a payment): `{"status":"settled"}` or
/// `{"reason":"…","status":"rejected"}`. Fields in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckBody<'a> {
    /// Why the payment is rejected (Zenchef Pay refunds the guest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Settled or rejected.
    pub status: AckStatus,
}

/// An ack's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// The POS reported the payment.
    Settled,
    /// The payment cannot be settled.
    Rejected,
}

impl<'a> AckBody<'a> {
    /// `settled`, or `rejected` with its reason.
    pub fn new(rejected: Option<&'a str>) -> Self {
        AckBody {
            reason: rejected,
            status: match rejected {
                None => AckStatus::Settled,
                Some(_) => AckStatus::Rejected,
            },
        }
    }
}

/// The settle command published to the POS on `zenchef/commands`
/// (docs/protocol/cashpad-local.md §7): one per Zenchef Pay payment,
/// amounts in cents. Fields in sorted order (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettleCommand {
    /// Amount toward the bill, cents.
    pub amount_cents: i64,
    /// `zp-<payment_id>`: the POS answers with it.
    pub command_id: String,
    /// Always `zenchef_pay`.
    pub method: &'static str,
    /// POS order id.
    pub order_id: String,
    /// Zenchef Pay payment id (the POS reports it as the payment's
    /// `reference`).
    pub payment_id: String,
    /// Table name.
    pub table: String,
    /// Tip, cents.
    pub tip_cents: i64,
    /// Always `settle`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl SettleCommand {
    /// The command as published (JSON text).
    pub fn to_json(&self) -> String {
        // Strings and integers only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A key that is there, whatever its value (null included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

fn text_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?
        .as_str()
        .map(str::to_string))
}

fn list_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(a) => a,
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ack_bodies_are_the_contract_ones() {
        assert_eq!(
            serde_json::to_string(&AckBody::new(None)).unwrap(),
            r#"{"status":"settled"}"#
        );
        assert_eq!(
            serde_json::to_string(&AckBody::new(Some("order O-1 already paid in the POS")))
                .unwrap(),
            json!({"status":"rejected","reason":"order O-1 already paid in the POS"}).to_string()
        );
    }

    #[test]
    fn the_settle_command_is_the_one_earlier_releases_published() {
        let cmd = crate::pay::settle_command("pay_8f2c", "O-881", "12", 5400, 300);
        let old = json!({
            "command_id": "zp-pay_8f2c", "type": "settle", "order_id": "O-881", "table": "12",
            "amount_cents": 5400, "tip_cents": 300, "method": "zenchef_pay",
            "payment_id": "pay_8f2c",
        });
        assert_eq!(cmd.to_json(), old.to_string());
    }

    /// The typed check writes the bytes the `json!` builder of earlier
    /// releases wrote (sorted keys; without its version, as `pay_checks`
    /// keeps it).
    #[test]
    fn the_check_body_is_byte_identical_to_the_earlier_json_one() {
        let lines = vec![
            CheckLine {
                name: "Menu".into(),
                quantity: 2,
                total_cents: 4900,
                unit_price_cents: 2450,
            },
            CheckLine {
                name: "Remise fidélité".into(),
                quantity: 1,
                total_cents: -1000,
                unit_price_cents: -1000,
            },
        ];
        let check = Check {
            covers: 4,
            currency: "EUR".into(),
            lines,
            paid_cents: 3900,
            status: OrderStatus::Paid,
            table: "12".into(),
            total_cents: 3900,
            version: 9,
        };
        let old_lines = json!([
            {"name": "Menu", "quantity": 2, "unit_price_cents": 2450, "total_cents": 4900},
            {"name": "Remise fidélité", "quantity": 1, "unit_price_cents": -1000, "total_cents": -1000},
        ]);
        let old_check = json!({
            "table": "12", "covers": 4, "currency": "EUR", "status": "closed",
            "lines": old_lines, "total_cents": 3900, "paid_cents": 3900, "version": 9,
        });
        let mut body = CheckBody::from(check);
        assert_eq!(serde_json::to_string(&body).unwrap(), old_check.to_string());
        let mut old_unversioned = old_check.clone();
        old_unversioned.as_object_mut().unwrap().remove("version");
        body.version = None;
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            old_unversioned.to_string()
        );
        for (status, wire) in [
            (OrderStatus::Open, CheckStatus::Open),
            (OrderStatus::Voided, CheckStatus::Voided),
        ] {
            assert_eq!(CheckBody::from(Check { status, ..sample() }).status, wire);
        }
    }

    fn sample() -> Check {
        Check {
            covers: 1,
            currency: "EUR".into(),
            lines: Vec::new(),
            paid_cents: 0,
            status: OrderStatus::Open,
            table: String::new(),
            total_cents: 0,
            version: 1,
        }
    }

    #[test]
    fn answers_read_leniently() {
        let c: CheckConflict = serde_json::from_value(json!({"version": 9})).unwrap();
        assert_eq!(c.held(), Some(9));
        let c: CheckConflict =
            serde_json::from_value(json!({"stored_version": 7, "version": 9})).unwrap();
        assert_eq!(c.held(), Some(7));
        // A stored_version that says nothing is not replaced by version.
        let c: CheckConflict =
            serde_json::from_value(json!({"stored_version": null, "version": 9})).unwrap();
        assert_eq!(c.held(), None);
        let p: PaymentsAnswer =
            serde_json::from_value(json!({"payments": {}, "next_cursor": 3})).unwrap();
        assert!(p.payments.is_empty() && p.next_cursor.is_none());
    }
}

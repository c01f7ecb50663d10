//! Property tests of `zenchef_edge::pos::event::parse`, the one door of
//! POS input (cargo-fuzz needs a nightly toolchain; this is its stable
//! stand-in):
//! - arbitrary bytes, arbitrary JSON, and structured envelopes of every
//!   event type with random field values (right and wrong types, edge
//!   numbers, missing and extra fields): `parse` never panics, and every
//!   rejection carries a reason naming what is wrong;
//! - a valid event of any type round-trips: serialized as the POS would,
//!   parsed back to the same values, within the documented ranges.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use zenchef_edge::pos::event::{
    EventData, MAX_CENTS, MAX_EVENT_ID_CHARS, MAX_NAME_CHARS, MAX_PAYLOAD_BYTES, parse,
};

const TYPES: &[&str] = &[
    "table.opened",
    "order.items_sent",
    "table.moved",
    "payment.recorded",
    "bill.paid",
    "order.voided",
];

/// Field names of every type's `data`, lines and payments.
const FIELDS: &[&str] = &[
    "order_id",
    "table",
    "covers",
    "opened_at",
    "lines",
    "total_cents",
    "from_table",
    "to_table",
    "amount_cents",
    "tip_cents",
    "method",
    "reference",
    "payments",
    "paid_at",
    "reason",
    "line_id",
    "name",
    "quantity",
    "unit_price_cents",
];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        edge_number(),
        ".{0,40}".prop_map(Value::from),
        edge_string(),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn edge_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(1000)),
        Just(json!(1001)),
        Just(json!(MAX_CENTS)),
        Just(json!(MAX_CENTS + 1)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(u32::MAX)),
        Just(json!(0.5)),
        Just(json!(1e300)),
    ]
}

fn edge_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!(" ")),
        Just(json!("2026-11-29T19:42:05+01:00")),
        Just(json!("2026-11-29T19:42:05Z")),
        Just(json!("2026-11-29T19:42:05")),
        Just(json!("card")),
        Just(json!("zenchef_pay")),
        Just(json!("x".repeat(MAX_NAME_CHARS))),
        Just(json!("x".repeat(MAX_NAME_CHARS + 1))),
        Just(json!("é".repeat(MAX_EVENT_ID_CHARS + 1))),
        Just(json!("\u{0}\u{feff}\u{10ffff}")),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
    ]
}

/// An envelope with a random (mostly known) type and a `data` made of the
/// known field names with random values; sometimes an envelope field is
/// missing, of the wrong type, or extra.
fn structured_envelope() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        4 => prop::sample::select(TYPES).prop_map(Value::from),
        1 => any_json(),
    ];
    let data = prop::collection::btree_map(field_name(), any_json(), 0..14)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    let event_id = prop_oneof![
        4 => "[a-f0-9-]{1,64}".prop_map(Value::from),
        1 => any_json(),
    ];
    let seq = prop_oneof![
        4 => any::<u64>().prop_map(Value::from),
        1 => any_json(),
    ];
    let at = prop_oneof![
        4 => Just(json!("2026-11-29T19:42:05+01:00")),
        1 => any_json(),
    ];
    (
        event_id,
        seq,
        ty,
        at,
        data,
        prop::collection::vec(0u8..7, 0..3),
    )
        .prop_map(|(event_id, seq, ty, at, data, damage)| {
            let mut m = Map::new();
            m.insert("event_id".into(), event_id);
            m.insert("seq".into(), seq);
            m.insert("type".into(), ty);
            m.insert("occurred_at".into(), at);
            m.insert("data".into(), data);
            for d in damage {
                match d {
                    0 => drop(m.remove("event_id")),
                    1 => drop(m.remove("seq")),
                    2 => drop(m.remove("data")),
                    3 => drop(m.insert("extra".into(), json!({"x": 1}))),
                    4 => drop(m.insert("data".into(), json!([]))),
                    _ => {}
                }
            }
            Value::Object(m)
        })
}

/// Checks what `parse` answers for `payload`: no panic (the call itself),
/// a reason on every rejection, the documented ranges on every acceptance.
fn check(payload: &[u8]) -> Result<(), TestCaseError> {
    match parse(payload) {
        Err(r) => {
            prop_assert!(!r.reason.trim().is_empty(), "rejection without a reason");
            prop_assert!(r.reason.len() < 2000, "reason of {} bytes", r.reason.len());
            if let Some(id) = &r.event_id {
                prop_assert!(id.chars().count() <= MAX_EVENT_ID_CHARS);
            }
            if payload.len() > MAX_PAYLOAD_BYTES {
                prop_assert!(r.reason.contains("more than the"));
            }
        }
        Ok(ev) => {
            let n = ev.event_id.chars().count();
            prop_assert!((1..=MAX_EVENT_ID_CHARS).contains(&n));
            prop_assert!(ev.seq <= i64::MAX as u64);
            let cents_ok = |c: i64| (0..=MAX_CENTS as i64).contains(&c);
            let name_ok = |s: &str| !s.is_empty() && s.chars().count() <= MAX_NAME_CHARS;
            match &ev.data {
                EventData::TableOpened(d) => {
                    prop_assert!(name_ok(&d.order_id) && name_ok(&d.table));
                    prop_assert!((1..=1000).contains(&d.covers.0));
                }
                EventData::ItemsSent(d) => {
                    prop_assert!(cents_ok(d.total_cents.0));
                    for l in &d.lines {
                        prop_assert!(cents_ok(l.total_cents.0) && cents_ok(l.unit_price_cents.0));
                    }
                }
                EventData::TableMoved(d) => prop_assert!(name_ok(&d.to_table)),
                EventData::PaymentRecorded(d) => {
                    prop_assert!(cents_ok(d.amount_cents.0) && cents_ok(d.tip_cents.0))
                }
                EventData::BillPaid(d) => {
                    prop_assert!(cents_ok(d.total_cents.0) && cents_ok(d.tip_cents.0));
                    for p in &d.payments {
                        prop_assert!(cents_ok(p.amount_cents.0));
                    }
                }
                EventData::OrderVoided(d) => prop_assert!(name_ok(&d.order_id)),
                EventData::Unknown => prop_assert!(!TYPES.contains(&ev.event_type.as_str())),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        check(v.to_string().as_bytes())?;
    }

    #[test]
    fn structured_envelopes_never_panic_and_rejections_say_why(v in structured_envelope()) {
        let text = v.to_string();
        check(text.as_bytes())?;
        // Cut anywhere, the same payload is still handled.
        for cut in [text.len() / 3, text.len() / 2, text.len().saturating_sub(1)] {
            check(&text.as_bytes()[..cut])?;
        }
    }
}

/// Valid `data` for each type, from random but in-range values.
fn valid_event() -> impl Strategy<Value = (String, Value)> {
    let name = "[A-Za-z0-9 éè-]{1,30}";
    let cents = 0..=MAX_CENTS;
    let line = (name, name, 0u32..100, cents.clone(), cents.clone()).prop_map(|(id, n, q, u, t)| {
        json!({"line_id": id, "name": n, "quantity": q, "unit_price_cents": u, "total_cents": t})
    });
    let method = prop::sample::select(&["card", "cash", "zenchef_pay", "other"][..]);
    let payment = (method.clone(), cents.clone(), proptest::option::of(name))
        .prop_map(|(m, a, r)| json!({"method": m, "amount_cents": a, "reference": r}));
    let at = Just("2026-11-29T19:42:05+01:00");
    prop_oneof![
        (name, name, 1u32..=1000, at).prop_map(|(o, t, c, a)| (
            "table.opened".to_string(),
            json!({"order_id": o, "table": t, "covers": c, "opened_at": a})
        )),
        (name, name, prop::collection::vec(line.clone(), 0..5), cents.clone()).prop_map(
            |(o, t, l, c)| (
                "order.items_sent".to_string(),
                json!({"order_id": o, "table": t, "lines": l, "total_cents": c})
            )
        ),
        (name, name, name).prop_map(|(o, f, t)| (
            "table.moved".to_string(),
            json!({"order_id": o, "from_table": f, "to_table": t})
        )),
        (name, cents.clone(), cents.clone(), method, proptest::option::of(name)).prop_map(
            |(o, a, t, m, r)| (
                "payment.recorded".to_string(),
                json!({"order_id": o, "amount_cents": a, "tip_cents": t, "method": m, "reference": r})
            )
        ),
        (
            name,
            name,
            1u32..=1000,
            prop::collection::vec(line, 0..5),
            cents.clone(),
            cents,
            prop::collection::vec(payment, 0..4),
            at
        )
            .prop_map(|(o, t, c, l, tot, tip, p, a)| (
                "bill.paid".to_string(),
                json!({"order_id": o, "table": t, "covers": c, "lines": l, "total_cents": tot,
                       "tip_cents": tip, "payments": p, "paid_at": a})
            )),
        (name, name, proptest::option::of(name)).prop_map(|(o, t, r)| (
            "order.voided".to_string(),
            json!({"order_id": o, "table": t, "reason": r})
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn valid_events_round_trip(
        id in "[a-f0-9-]{1,64}",
        seq in 0..=i64::MAX as u64,
        (ty, data) in valid_event(),
    ) {
        let env = json!({"event_id": id, "seq": seq, "type": ty,
                         "occurred_at": "2026-11-29T19:42:05+01:00", "data": data});
        let ev = parse(env.to_string().as_bytes())
            .map_err(|r| TestCaseError::fail(format!("valid event rejected: {}", r.reason)))?;
        prop_assert_eq!(&ev.event_id, &id);
        prop_assert_eq!(ev.seq, seq);
        prop_assert_eq!(&ev.event_type, &ty);
        prop_assert_eq!(ev.data.order_id(), data["order_id"].as_str());
        // Re-serialize the typed data's money and compare with what was sent.
        match &ev.data {
            EventData::TableOpened(d) => {
                prop_assert_eq!(d.covers.0 as u64, data["covers"].as_u64().unwrap());
                prop_assert_eq!(&*d.table, data["table"].as_str().unwrap());
            }
            EventData::ItemsSent(d) => {
                prop_assert_eq!(d.total_cents.0 as u64, data["total_cents"].as_u64().unwrap());
                prop_assert_eq!(
                    serde_json::to_value(&d.lines).unwrap(),
                    data["lines"].clone()
                );
            }
            EventData::TableMoved(d) => prop_assert_eq!(&*d.to_table, data["to_table"].as_str().unwrap()),
            EventData::PaymentRecorded(d) => {
                prop_assert_eq!(d.amount_cents.0 as u64, data["amount_cents"].as_u64().unwrap());
                prop_assert_eq!(d.reference.as_deref(), data["reference"].as_str());
            }
            EventData::BillPaid(d) => {
                prop_assert_eq!(d.tip_cents.0 as u64, data["tip_cents"].as_u64().unwrap());
                prop_assert_eq!(
                    serde_json::to_value(&d.payments).unwrap(),
                    data["payments"].clone()
                );
            }
            EventData::OrderVoided(d) => prop_assert_eq!(d.reason.as_deref(), data["reason"].as_str()),
            EventData::Unknown => prop_assert!(false, "a known type parsed as unknown"),
        }
    }
}

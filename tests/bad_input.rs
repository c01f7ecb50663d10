//! Bad input through the real broker and the real binary: a corpus of
//! hand-made bad payloads (wrong types, huge strings, a 10 MB payload,
//! deep nesting, invalid UTF-8, negative cents, overflows, missing fields),
//! each quarantined with a precise reason in the `rejected` table (read
//! with rusqlite, read-only) and acknowledged (a restart brings none of
//! them back). Extra and unknown fields are **accepted**: the agent's
//! documented choice for forward compatibility (docs/decisions.md).
//!
//! The property tests of `pos::event::parse` (no panic on anything, a
//! reason for every rejection, valid events round-trip) are in
//! `tests/event_props.rs`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use zenchef_sim::harness::RigOptions;

const AT: &str = "2026-11-29T19:42:05+01:00";

fn env(id: &str, t: &str, data: Value) -> Value {
    json!({"event_id": id, "seq": 1, "type": t, "occurred_at": AT, "data": data})
}

fn opened(id: &str) -> Value {
    env(
        id,
        "table.opened",
        json!({"order_id": "O-1", "table": "W1", "covers": 2, "opened_at": AT}),
    )
}

fn items(id: &str, lines: Value, total: Value) -> Value {
    env(
        id,
        "order.items_sent",
        json!({"order_id": "O-1", "table": "W1", "lines": lines, "total_cents": total}),
    )
}

fn line() -> Value {
    json!({"line_id": "L1", "name": "Entrecôte", "quantity": 2, "unit_price_cents": 2450, "total_cents": 4900})
}

fn paid(id: &str, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = env(
        id,
        "bill.paid",
        json!({"order_id": "O-1", "table": "W1", "covers": 2, "lines": [line()],
               "total_cents": 4900, "tip_cents": 0,
               "payments": [{"method": "card", "amount_cents": 4900, "reference": "CB-1"}],
               "paid_at": AT}),
    );
    f(&mut v);
    v
}

fn with(mut v: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut v);
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// `(name, payload, a substring the stored reason must contain)`.
fn corpus() -> Vec<(&'static str, Vec<u8>, String)> {
    let mut deep = String::new();
    for _ in 0..5000 {
        deep.push('[');
    }
    for _ in 0..5000 {
        deep.push(']');
    }
    let deep_payload = format!(
        r#"{{"event_id":"deep","seq":1,"type":"x","occurred_at":"{AT}","data":{{"a":{deep}}}}}"#
    );
    let ten_mb = {
        let pad = "x".repeat(10 * 1024 * 1024);
        bytes(&env(
            "huge",
            "order.voided",
            json!({"order_id": "O-1", "table": "W1", "reason": pad}),
        ))
    };
    let ten_mb_len = ten_mb.len();
    let c = |n: &'static str, p: Vec<u8>, r: &str| (n, p, r.to_string());
    vec![
        c("empty payload", vec![], "payload is not JSON: EOF while parsing"),
        c("plain text", b"hello kitchen".to_vec(), "payload is not JSON: expected value"),
        c("invalid UTF-8", vec![0xff, 0xfe, b'{'], "payload is not UTF-8 (invalid byte at offset 0)"),
        c(
            "invalid UTF-8 inside a string",
            [&b"{\"event_id\":\"caf"[..], &[0xe9], &b"\"}"[..]].concat(),
            "payload is not UTF-8 (invalid byte at offset 16)",
        ),
        c("UTF-8 BOM", [&[0xef, 0xbb, 0xbf][..], &bytes(&opened("bom"))].concat(), "payload is not JSON: expected value at line 1 column 1"),
        c("lone surrogate escape", br#"{"event_id":"\ud800","seq":1}"#.to_vec(), "payload is not JSON: unexpected end of hex escape"),
        c("trailing garbage", [bytes(&opened("tg")), b" }".to_vec()].concat(), "payload is not JSON: trailing characters"),
        c("JSON array", b"[1,2,3]".to_vec(), "payload is JSON but not an object"),
        c("JSON string", b"\"table.opened\"".to_vec(), "payload is JSON but not an object"),
        c("JSON null", b"null".to_vec(), "payload is JSON but not an object"),
        c("10 MB payload", ten_mb, &format!("payload is {ten_mb_len} bytes, more than the 1048576 accepted")),
        c("deep nesting", deep_payload.into_bytes(), "payload is not JSON: recursion limit exceeded"),
        c("missing event_id", bytes(&with(opened("x"), |v| { v.as_object_mut().unwrap().remove("event_id"); })), "missing field `event_id`"),
        c("missing seq", bytes(&with(opened("no-seq"), |v| { v.as_object_mut().unwrap().remove("seq"); })), "missing field `seq`"),
        c("missing type", bytes(&with(opened("no-type"), |v| { v.as_object_mut().unwrap().remove("type"); })), "missing field `type`"),
        c("missing occurred_at", bytes(&with(opened("no-at"), |v| { v.as_object_mut().unwrap().remove("occurred_at"); })), "missing field `occurred_at`"),
        c("missing data", bytes(&with(opened("no-data"), |v| { v.as_object_mut().unwrap().remove("data"); })), "missing field `data`"),
        c("event_id a number", bytes(&with(opened("x"), |v| v["event_id"] = json!(42))), "event_id: must be a string, got a number"),
        c("event_id empty", bytes(&opened("")), "event_id: must be 1–64 characters, got 0"),
        c("event_id 65 chars", bytes(&opened(&"e".repeat(65))), "event_id: must be 1–64 characters, got 65"),
        c("event_id 100k chars", bytes(&opened(&"é".repeat(100_000))), "event_id: must be 1–64 characters, got 100000"),
        c("seq negative", bytes(&with(opened("seq-neg"), |v| v["seq"] = json!(-1))), "seq: invalid value: integer `-1`, expected u64"),
        c("seq a string", bytes(&with(opened("seq-str"), |v| v["seq"] = json!("5"))), "seq: invalid type: string \"5\", expected u64"),
        c("seq fractional", bytes(&with(opened("seq-frac"), |v| v["seq"] = json!(1.5))), "seq: invalid type: floating point `1.5`, expected u64"),
        c("seq above i64", br#"{"event_id":"seq-big","seq":9223372036854775808,"type":"x","occurred_at":"2026-11-29T19:42:05+01:00","data":{}}"#.to_vec(), "seq: 9223372036854775808 does not fit the store"),
        c("seq above u64", br#"{"event_id":"seq-ovf","seq":18446744073709551616,"type":"x","occurred_at":"2026-11-29T19:42:05+01:00","data":{}}"#.to_vec(), "seq: invalid type: floating point"),
        c("type a number", bytes(&with(opened("type-num"), |v| v["type"] = json!(5))), "type: invalid type: integer `5`, expected a string"),
        c("occurred_at without offset", bytes(&with(opened("at-local"), |v| v["occurred_at"] = json!("2026-11-29T19:42:05"))), "occurred_at: `2026-11-29T19:42:05` is not an RFC 3339 time with offset"),
        c("occurred_at a number", bytes(&with(opened("at-num"), |v| v["occurred_at"] = json!(1764441725))), "occurred_at: invalid type: integer `1764441725`, expected a string"),
        c("data an array", bytes(&with(opened("data-arr"), |v| v["data"] = json!([1]))), "data: invalid type: sequence, expected a map"),
        c("data null", bytes(&with(opened("data-null"), |v| v["data"] = Value::Null)), "data: invalid type: null, expected a map"),
        c("opened: missing order_id", bytes(&with(opened("o-1"), |v| { v["data"].as_object_mut().unwrap().remove("order_id"); })), "data: missing field `order_id`"),
        c("opened: covers 0", bytes(&with(opened("o-2"), |v| v["data"]["covers"] = json!(0))), "data.covers: covers must be between 1 and 1000, got 0"),
        c("opened: covers 1001", bytes(&with(opened("o-3"), |v| v["data"]["covers"] = json!(1001))), "data.covers: covers must be between 1 and 1000, got 1001"),
        c("opened: covers negative", bytes(&with(opened("o-4"), |v| v["data"]["covers"] = json!(-2))), "data.covers: invalid value: integer `-2`, expected u32"),
        c("opened: covers a string", bytes(&with(opened("o-5"), |v| v["data"]["covers"] = json!("4"))), "data.covers: invalid type: string \"4\", expected u32"),
        c("opened: covers above u32", bytes(&with(opened("o-5b"), |v| v["data"]["covers"] = json!(4294967296u64))), "data.covers: invalid value: integer `4294967296`, expected u32"),
        c("opened: empty table", bytes(&with(opened("o-6"), |v| v["data"]["table"] = json!(""))), "data.table: must not be empty"),
        c("opened: table of 201 chars", bytes(&with(opened("o-7"), |v| v["data"]["table"] = json!("T".repeat(201)))), "data.table: 201 characters, more than the 200 accepted"),
        c("opened: order_id of 300k chars", bytes(&with(opened("o-8"), |v| v["data"]["order_id"] = json!("O".repeat(300_000)))), "data.order_id: 300000 characters, more than the 200 accepted"),
        c("opened: opened_at garbage", bytes(&with(opened("o-9"), |v| v["data"]["opened_at"] = json!("yesterday"))), "data.opened_at: `yesterday` is not an RFC 3339 time with offset"),
        c("opened: table an object", bytes(&with(opened("o-10"), |v| v["data"]["table"] = json!({"name": "W1"}))), "data.table: invalid type: map, expected a string"),
        c("items: negative total", bytes(&items("i-1", json!([line()]), json!(-100))), "data.total_cents: invalid value: integer `-100`, expected u64"),
        c("items: fractional total", bytes(&items("i-2", json!([line()]), json!(49.9))), "data.total_cents: invalid type: floating point `49.9`, expected u64"),
        c("items: total above the maximum", bytes(&items("i-3", json!([line()]), json!(1_000_000_000_001u64))), "data.total_cents: 1000000000001 cents is above the accepted maximum 1000000000000"),
        c("items: total u64::MAX", bytes(&items("i-4", json!([line()]), json!(u64::MAX))), "data.total_cents: 18446744073709551615 cents is above the accepted maximum"),
        c("items: lines an object", bytes(&items("i-5", json!({"L1": line()}), json!(4900))), "data.lines: invalid type: map, expected a sequence"),
        c("items: line without name", bytes(&items("i-6", json!([with(line(), |l| { l.as_object_mut().unwrap().remove("name"); })]), json!(4900))), "data.lines[0]: missing field `name`"),
        c("items: negative quantity", bytes(&items("i-7", json!([line(), with(line(), |l| l["quantity"] = json!(-1))]), json!(4900))), "data.lines[1].quantity: invalid value: integer `-1`, expected u32"),
        c("items: price a string", bytes(&items("i-8", json!([with(line(), |l| l["unit_price_cents"] = json!("24,50"))]), json!(4900))), "data.lines[0].unit_price_cents: invalid type: string \"24,50\", expected i64"),
        c("moved: missing to_table", bytes(&env("m-1", "table.moved", json!({"order_id": "O-1", "from_table": "W1"}))), "data: missing field `to_table`"),
        c("payment: unknown method", bytes(&env("p-1", "payment.recorded", json!({"order_id": "O-1", "amount_cents": 500, "tip_cents": 0, "method": "bitcoin"}))), "data.method: unknown variant `bitcoin`"),
        c("payment: negative amount", bytes(&env("p-2", "payment.recorded", json!({"order_id": "O-1", "amount_cents": -500, "tip_cents": 0, "method": "card"}))), "data.amount_cents: invalid value: integer `-500`, expected u64"),
        c("payment: missing tip", bytes(&env("p-3", "payment.recorded", json!({"order_id": "O-1", "amount_cents": 500, "method": "card"}))), "data: missing field `tip_cents`"),
        c("paid: negative payment", bytes(&paid("b-1", |v| v["data"]["payments"][0]["amount_cents"] = json!(-4900))), "data.payments[0].amount_cents: invalid value: integer `-4900`, expected u64"),
        c("paid: missing paid_at", bytes(&paid("b-2", |v| { v["data"].as_object_mut().unwrap().remove("paid_at"); })), "data: missing field `paid_at`"),
        c("paid: tip overflow", bytes(&paid("b-3", |v| v["data"]["tip_cents"] = json!(1e30))), "data.tip_cents: invalid type: floating point"),
        c("paid: payments null", bytes(&paid("b-4", |v| v["data"]["payments"] = Value::Null)), "data.payments: invalid type: null, expected a sequence"),
        c("voided: table a number", bytes(&env("v-1", "order.voided", json!({"order_id": "O-1", "table": 3}))), "data.table: invalid type: integer `3`, expected a string"),
    ]
}

/// Valid events with extra fields everywhere: accepted (forward
/// compatibility), not quarantined.
fn extra_fields() -> Vec<Value> {
    vec![
        with(opened("extra-1"), |v| v["pos_version"] = json!("2.1.0")),
        with(opened("extra-2"), |v| {
            v["data"]["waiter"] = json!({"id": 7, "name": "Luc"})
        }),
        items(
            "extra-3",
            json!([with(line(), |l| l["vat_rate"] = json!(10))]),
            json!(4900),
        ),
        paid("extra-4", |v| {
            v["data"]["payments"][0]["terminal"] = json!("TPE-2")
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_payload_is_quarantined_with_a_precise_reason_and_acknowledged() {
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    let corpus = corpus();
    assert!(corpus.len() >= 40, "{} payloads", corpus.len());
    for (name, payload, _) in &corpus {
        rig.pos
            .publish_raw(payload.clone())
            .await
            .unwrap_or_else(|e| panic!("publishing {name}: {e}"));
    }
    // Extra fields are accepted; order O-1 is opened, then paid.
    for v in extra_fields() {
        rig.pos.publish_event(&v).await.unwrap();
    }
    let n = corpus.len() as i64;
    let s = rig
        .wait_status("every payload handled", Duration::from_secs(60), |s| {
            s["counts"]["rejected"].as_i64() == Some(n)
                && s["counts"]["received"] == json!(4)
                && s["counts"]["queued"] == json!(0)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["queued"], json!(0), "{s}");
    assert_eq!(s["counts"]["dead"], json!(0), "{s}");

    let view = StoreView::read(&rig.store_path()).unwrap();
    assert_eq!(view.rejected.len(), corpus.len());
    for ((name, payload, want), (event_id, reason, len)) in corpus.iter().zip(&view.rejected) {
        assert!(
            reason.contains(want.as_str()),
            "{name}: stored reason {reason:?} lacks {want:?}"
        );
        assert_eq!(*len as usize, payload.len(), "{name}: payload length kept");
        assert!(
            reason.len() < 600,
            "{name}: reason too long ({} bytes)",
            reason.len()
        );
        if let Some(id) = event_id {
            assert!(id.chars().count() <= 64, "{name}: event_id hint cut");
        }
    }
    for id in ["extra-1", "extra-2", "extra-3", "extra-4"] {
        assert!(view.events.contains(id), "{id} accepted");
    }
    // The extra-field order reached Zenchef (a walk-in, then its ticket).
    assert_eq!(rig.zenchef.tickets()["O-1"].1["total_cents"], json!(4900));
    // Every quarantine is in the journal at WARN with its reason.
    let log = rig.log();
    assert_eq!(
        log.matches("quarantined a ").count(),
        corpus.len(),
        "one WARN per payload"
    );

    // Acknowledged: a restart brings none of them back from the broker.
    rig.kill_agent().unwrap();
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = rig.status().unwrap();
    assert_eq!(
        s["counts"]["rejected"].as_i64(),
        Some(n),
        "redelivered after a restart: {s}"
    );
    assert_eq!(s["counts"]["duplicates"], json!(0), "{s}");
    assert_eq!(rig.agent_exited(), None, "the agent is still running");
}

//! The Zenchef Pay fake over real HTTP (auth, checks and their version rule,
//! guest payments, cursor paging, the duplicate-payment fault, acks, faults),
//! the POS's settle handling over the real broker, and the Zenchef Pay
//! scenario played by a reference agent against both. The HTTP checks are
//! tables of cases (request → expected status and body, see `common`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate};
use common::{Case, Target, check, check_all, client};
use reqwest::{Client, Method};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use zenchef_sim::broker::{BrokerOptions, start_broker};
use zenchef_sim::pay::{Fault, PayConfig, PayFake, PaymentState, RetryAfter, cursor};
use zenchef_sim::pos::{BillStatus, EventBuilder, Line, Pos};
use zenchef_sim::scenario::{PaymentFate, Scenario, Step};

const TOKEN: &str = "pay-tok";
const IID: &str = "CP-4F2A91";

async fn fake_with_cap(cap: u32) -> PayFake {
    PayFake::start(PayConfig {
        installation_id: IID.into(),
        token: TOKEN.into(),
        page_size_cap: cap,
        port: 0,
    })
    .await
    .unwrap()
}

async fn fake() -> PayFake {
    fake_with_cap(100).await
}

/// `<base_url>/installations/<installation>` with the right token.
fn api_of(fake: &PayFake, installation: &str) -> Target {
    Target {
        base: format!("{}/installations/{installation}", fake.base_url()),
        headers: vec![("Authorization", format!("Bearer {TOKEN}"))],
        write_headers: Vec::new(),
        key_header: None,
    }
}

/// The fake's installation with the right token.
fn api(fake: &PayFake) -> Target {
    api_of(fake, IID)
}

fn check_body(status: &str, total: i64, paid: i64, version: u64) -> Value {
    json!({"table": "12", "covers": 4, "currency": "EUR", "status": status,
           "lines": [{"line_id": "L1", "name": "Entrecôte", "quantity": 2,
                      "unit_price_cents": 2450, "total_cents": 4900}],
           "total_cents": total, "paid_cents": paid, "version": version})
}

/// `PUT /checks/{order}` with `body`.
fn put(order: &str, body: Value) -> Case {
    Case::send(Method::PUT, format!("/checks/{order}"), body)
}

/// `POST /payments/{id}/ack` with `body`.
fn ack(id: &str, body: Value) -> Case {
    Case::send(Method::POST, format!("/payments/{id}/ack"), body)
}

/// Puts `order`'s check, whatever the answer.
async fn put_check(fake: &PayFake, order: &str, body: Value) {
    check(&api(fake), put(order, body)).await;
}

/// The body of `GET path`.
async fn get(fake: &PayFake, path: &str) -> Value {
    check(&api(fake), Case::get(path)).await.1
}

#[tokio::test]
async fn auth_installation_and_content_type() {
    let fake = fake().await;
    assert!(fake.base_url().ends_with("/pos/v1"));
    let api = api(&fake);
    let payments = || Case::get("/payments");
    // No token, wrong token, wrong scheme: 401.
    check_all(
        &api,
        vec![
            payments().without("Authorization").answers(401),
            payments()
                .header("Authorization", "Bearer nope")
                .answers(401),
            payments().header("Authorization", TOKEN).answers(401),
            payments().answers(200),
        ],
    )
    .await;
    // A rotated token: the old one is refused.
    fake.set_token("new-tok");
    check(&api, payments().answers(401)).await;
    fake.set_token(TOKEN);
    // Unknown installation: 404 on every path, nothing stored.
    let unknown = [
        (Method::GET, "/payments"),
        (Method::PUT, "/checks/O-1"),
        (Method::POST, "/payments/pay_1/ack"),
    ]
    .map(|(m, p)| {
        Case::send(m, p, check_body("open", 4900, 0, 1))
            .answers(404)
            .message_has("CP-OTHER")
    });
    check_all(&api_of(&fake, "CP-OTHER"), unknown.into()).await;
    assert!(fake.checks().is_empty());
    // A write without Content-Type: application/json is 400.
    let text = check_body("open", 4900, 0, 1).to_string();
    check(
        &api,
        Case::raw(Method::PUT, "/checks/O-1", text).answers(400),
    )
    .await;
    assert!(fake.checks().is_empty());
    // Every request was recorded with its answer.
    let calls = fake.calls();
    assert_eq!(calls.len(), 9);
    assert_eq!(calls[0].status, 401);
    assert_eq!(calls[3].status, 200);
    assert_eq!(calls[3].response["payments"], json!([]));
}

/// Breaks one field of a check body.
type Mutate = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn check_validation_names_the_field() {
    let fake = fake().await;
    let api = api(&fake);
    let broken: Vec<(&str, Mutate)> = vec![
        ("table", Box::new(|c| c["table"] = json!(""))),
        ("table", Box::new(|c| c["table"] = json!(12))),
        ("covers", Box::new(|c| c["covers"] = json!(0))),
        ("covers", Box::new(|c| c["covers"] = json!("4"))),
        ("currency", Box::new(|c| c["currency"] = json!("eur"))),
        ("currency", Box::new(|c| c["currency"] = Value::Null)),
        ("status", Box::new(|c| c["status"] = json!("paid"))),
        ("lines", Box::new(|c| c["lines"] = json!({}))),
        (
            "lines[0].name",
            Box::new(|c| c["lines"][0]["name"] = json!(1)),
        ),
        (
            "lines[0].quantity",
            Box::new(|c| c["lines"][0]["quantity"] = json!(1.5)),
        ),
        (
            "lines[0].unit_price_cents",
            Box::new(|c| c["lines"][0]["unit_price_cents"] = json!("24.50")),
        ),
        ("total_cents", Box::new(|c| c["total_cents"] = json!(49.0))),
        ("total_cents", Box::new(|c| c["total_cents"] = json!(-1))),
        ("paid_cents", Box::new(|c| c["paid_cents"] = json!(-100))),
        (
            "paid_cents",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("paid_cents");
            }),
        ),
        ("version", Box::new(|c| c["version"] = json!(-1))),
        ("version", Box::new(|c| c["version"] = json!(7.5))),
        ("version", Box::new(|c| c["version"] = json!("7"))),
    ];
    let mut cases: Vec<Case> = broken
        .into_iter()
        .map(|(field, mutate)| {
            let mut body = check_body("open", 4900, 0, 7);
            mutate(&mut body);
            put("O-1", body)
                .answers(422)
                .message_starts(&format!("{field}:"))
        })
        .collect();
    // Not a JSON object: 400.
    cases.push(put("O-1", json!([1])).answers(400));
    check_all(&api, cases).await;
    assert!(fake.checks().is_empty());
    assert!(fake.check_history("O-1").is_empty());
    // Every status is accepted, version 0 too.
    let statuses = ["open", "closed", "voided"].iter().enumerate();
    let cases = statuses
        .map(|(i, st)| put(&format!("O-{st}"), check_body(st, 4900, 0, i as u64)).answers(201));
    check_all(&api, cases.collect()).await;
}

#[tokio::test]
async fn version_rule_409_with_stored_version_and_history() {
    let fake = fake().await;
    let api = api(&fake);
    let o881 = |status, paid, version| put("O-881", check_body(status, 4900, paid, version));
    check(
        &api,
        o881("open", 0, 7).answers(201).field("/version", json!(7)),
    )
    .await;
    // Same version, lower version: 409 with the stored one, no change.
    for (version, paid) in [(7, 1000), (3, 2000), (0, 4900)] {
        let case = o881("closed", paid, version)
            .answers(409)
            .field("/stored_version", json!(7))
            .message_has("version");
        check(&api, case).await;
        assert_eq!(fake.check("O-881").unwrap()["status"], "open");
        assert_eq!(fake.check("O-881").unwrap()["paid_cents"], 0);
    }
    check_all(
        &api,
        vec![
            // Greater: accepted (200 on update), also with a gap.
            o881("open", 2000, 8).answers(200),
            o881("closed", 4900, 1042).answers(200),
            o881("open", 0, 1000)
                .answers(409)
                .field("/stored_version", json!(1042)),
        ],
    )
    .await;
    let history: Vec<(u64, String)> = fake
        .check_history("O-881")
        .iter()
        .map(|c| {
            (
                c["version"].as_u64().unwrap(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            (7, "open".into()),
            (8, "open".into()),
            (1042, "closed".into())
        ]
    );
    assert_eq!(
        fake.check("O-881").unwrap(),
        check_body("closed", 4900, 4900, 1042)
    );
    // Checks are per order: another order starts its own versions.
    check(
        &api,
        put("O-882", check_body("open", 100, 0, 1)).answers(201),
    )
    .await;
    assert_eq!(fake.checks().len(), 2);
}

#[tokio::test]
async fn guests_can_only_pay_an_open_check_and_never_more_than_due() {
    let fake = fake().await;
    // Unknown order.
    let e = fake.guest_pays("O-1", 1000, 0, "card").unwrap_err();
    assert!(e.contains("O-1"), "{e}");
    put_check(&fake, "O-1", check_body("open", 4900, 1000, 1)).await;
    // More than due (4900 − 1000), nonsense amounts.
    let e = fake.guest_pays("O-1", 3901, 0, "card").unwrap_err();
    assert!(e.contains("exceeds"), "{e}");
    assert!(fake.guest_pays("O-1", 0, 0, "card").is_err());
    assert!(fake.guest_pays("O-1", 100, -1, "card").is_err());
    assert!(fake.payments().is_empty());
    // Exactly what is due, with a tip on top.
    let at = DateTime::parse_from_rfc3339("2026-11-29T22:20:00+01:00").unwrap();
    fake.set_clock(Some(at));
    let id = fake.guest_pays("O-1", 3900, 300, "card").unwrap();
    assert!(id.starts_with("pay_") && id.len() == 16, "{id}");
    assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        fake.payments(),
        vec![
            json!({"payment_id": id, "order_id": "O-1", "amount_cents": 3900,
                    "tip_cents": 300, "method": "card", "paid_at": "2026-11-29T22:20:00+01:00"})
        ]
    );
    // The wall clock, at +01:00.
    fake.set_clock(None);
    put_check(&fake, "O-2", check_body("open", 4900, 0, 1)).await;
    let id2 = fake.guest_pays("O-2", 100, 0, "apple_pay").unwrap();
    let paid_at = fake.payment(&id2).unwrap()["paid_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(paid_at.ends_with("+01:00"), "{paid_at}");
    assert!(DateTime::parse_from_rfc3339(&paid_at).is_ok());
    // Closed and voided checks can no longer be paid.
    put_check(&fake, "O-1", check_body("closed", 4900, 4900, 2)).await;
    put_check(&fake, "O-2", check_body("voided", 4900, 0, 2)).await;
    for o in ["O-1", "O-2"] {
        let e = fake.guest_pays(o, 1, 0, "card").unwrap_err();
        assert!(e.contains("can no longer be paid"), "{e}");
    }
    assert_eq!(fake.payments().len(), 2);
    // Injected payments bypass every check (for the agent's refusals).
    let a = fake.inject_payment(
        json!({"order_id": "O-1", "amount_cents": 4900, "tip_cents": 0, "method": "card"}),
    );
    let b = fake.inject_payment(
        json!({"order_id": "O-404", "amount_cents": 10, "tip_cents": 0, "method": "card"}),
    );
    let c = fake.inject_payment(json!({"payment_id": "pay_fixed", "order_id": "O-1",
        "amount_cents": 1, "tip_cents": 0, "method": "card", "paid_at": "2026-11-29T23:00:00+01:00"}));
    assert!(a.starts_with("pay_") && b.starts_with("pay_") && a != b);
    assert_eq!(c, "pay_fixed");
    assert_eq!(
        fake.payment("pay_fixed").unwrap()["paid_at"],
        "2026-11-29T23:00:00+01:00"
    );
    assert!(fake.payment(&a).unwrap()["paid_at"].is_string());
    assert_eq!(fake.inject_payment(json!("garbage")), "");
    assert_eq!(fake.payments().len(), 6);
    assert_eq!(fake.payments()[5], json!("garbage"));
}

fn ids(v: &Value) -> Vec<String> {
    v["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["payment_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn payments_page_by_cursor_durably() {
    let fake = fake_with_cap(2).await;
    let api = api(&fake);
    // Empty log: an empty page and the start cursor.
    check(
        &api,
        Case::get("/payments")
            .answers(200)
            .field("", json!({"payments": [], "next_cursor": "c_000000"})),
    )
    .await;
    let all: Vec<String> = (0..5)
        .map(|i| {
            fake.inject_payment(
                json!({"order_id": format!("O-{i}"), "amount_cents": 100 + i,
                                       "tip_cents": 0, "method": "card"}),
            )
        })
        .collect();
    // Pages of at most 2 (limit=100 is capped), then an empty page that
    // keeps the cursor.
    let mut after: Option<String> = None;
    let mut got = Vec::new();
    let mut cursors = Vec::new();
    for _ in 0..4 {
        let q = match &after {
            Some(c) => format!("/payments?after={c}&limit=100"),
            None => "/payments?limit=100".into(),
        };
        let (_, v, _) = check(&api, Case::get(q).answers(200)).await;
        got.extend(ids(&v));
        after = Some(v["next_cursor"].as_str().unwrap().to_string());
        cursors.push(after.clone().unwrap());
    }
    assert_eq!(got, all);
    assert_eq!(cursors, ["c_000002", "c_000004", "c_000005", "c_000005"]);
    // limit is honoured below the cap.
    let v = get(&fake, "/payments?after=c_000001&limit=1").await;
    assert_eq!(ids(&v), vec![all[1].clone()]);
    assert_eq!(v["next_cursor"], "c_000002");
    // Durability: a cursor kept across a restart gives the same page again
    // (neither skips nor repeats), and new payments come after it.
    let v = get(&fake, "/payments?after=c_000004").await;
    assert_eq!(ids(&v), vec![all[4].clone()]);
    let late = fake.inject_payment(
        json!({"order_id": "O-9", "amount_cents": 1, "tip_cents": 0, "method": "card"}),
    );
    let v = get(&fake, "/payments?after=c_000005").await;
    assert_eq!(ids(&v), vec![late]);
    assert_eq!(v["next_cursor"], cursor(6));
    // Garbage or unknown cursors and bad limits: 400.
    let bad = [
        "/payments?after=c_000007",
        "/payments?after=garbage",
        "/payments?after=c_",
        "/payments?after=",
        "/payments?after=c_00x001",
        "/payments?limit=0",
        "/payments?limit=-1",
        "/payments?limit=ten",
    ]
    .map(|q| Case::get(q).answers(400).message());
    check_all(&api, bad.into()).await;
}

#[tokio::test]
async fn duplicate_payment_fault_repeats_the_last_payment_once() {
    let fake = fake().await;
    let a = fake.inject_payment(
        json!({"order_id": "O-1", "amount_cents": 1, "tip_cents": 0, "method": "card"}),
    );
    let b = fake.inject_payment(
        json!({"order_id": "O-2", "amount_cents": 2, "tip_cents": 0, "method": "card"}),
    );
    fake.duplicate_next_payment();
    // Read from the beginning: nothing to repeat, the fault stays armed.
    let v = get(&fake, "/payments").await;
    assert_eq!(ids(&v), vec![a.clone(), b.clone()]);
    assert!(fake.duplicate_pending());
    let c = fake.inject_payment(
        json!({"order_id": "O-3", "amount_cents": 3, "tip_cents": 0, "method": "card"}),
    );
    // The next page repeats the last payment of the previous one.
    let v = get(&fake, "/payments?after=c_000002").await;
    assert_eq!(ids(&v), vec![b.clone(), c.clone()]);
    assert_eq!(v["next_cursor"], "c_000003");
    assert!(!fake.duplicate_pending());
    // Once only.
    let v = get(&fake, "/payments?after=c_000002").await;
    assert_eq!(ids(&v), vec![c.clone()]);
    // Also on an otherwise empty page.
    fake.duplicate_next_payment();
    let v = get(&fake, "/payments?after=c_000003").await;
    assert_eq!(ids(&v), vec![c]);
    assert_eq!(v["next_cursor"], "c_000003");
}

#[tokio::test]
async fn acks_are_recorded_idempotent_and_never_contradicted() {
    let fake = fake().await;
    let api = api(&fake);
    let p1 = fake.inject_payment(
        json!({"order_id": "O-1", "amount_cents": 100, "tip_cents": 0, "method": "card"}),
    );
    let p2 = fake.inject_payment(
        json!({"order_id": "O-2", "amount_cents": 200, "tip_cents": 0, "method": "card"}),
    );
    let settled = || json!({"status": "settled"});
    // Unknown payment, bad bodies.
    let mut cases = vec![ack("pay_nope", settled()).answers(404)];
    for (body, field) in [
        (json!({"status": "done"}), "status"),
        (json!({}), "status"),
        (json!({"status": "rejected"}), "reason"),
        (json!({"status": "rejected", "reason": "  "}), "reason"),
        (json!({"status": "rejected", "reason": 5}), "reason"),
    ] {
        cases.push(ack(&p1, body).answers(422).message_starts(field));
    }
    check_all(&api, cases).await;
    assert!(fake.all_acks().is_empty());
    assert_eq!(fake.payment_state(&p1), PaymentState::Unacked);
    // Settled, then the same again (idempotent, recorded as a duplicate),
    // then a contradiction (409, recorded, no change).
    check_all(
        &api,
        vec![
            ack(&p1, settled()).answers(200),
            ack(&p1, settled())
                .answers(200)
                .field("/duplicate", json!(true)),
            ack(
                &p1,
                json!({"status": "rejected", "reason": "order O-1 already paid"}),
            )
            .answers(409)
            .field("/status", json!("settled")),
        ],
    )
    .await;
    assert_eq!(fake.payment_state(&p1), PaymentState::Settled);
    let flags: Vec<(bool, bool, u64)> = fake
        .acks(&p1)
        .iter()
        .map(|a| {
            (
                a["duplicate"].as_bool().unwrap(),
                a["conflict"].as_bool().unwrap(),
                a["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![(false, false, 200), (true, false, 200), (false, true, 409)]
    );
    // Rejected: refunded with its reason; settled afterwards is a 409.
    let reason = "order O-2 already paid in the POS";
    check_all(
        &api,
        vec![
            ack(&p2, json!({"status": "rejected", "reason": reason})).answers(200),
            ack(&p2, json!({"status": "rejected", "reason": "again"})).answers(200),
            ack(&p2, settled()).answers(409),
        ],
    )
    .await;
    assert_eq!(
        fake.payment_state(&p2),
        PaymentState::Rejected {
            reason: reason.into()
        }
    );
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["payment_id"], p2.as_str());
    assert_eq!(refunds[0]["reason"], reason);
    assert_eq!(fake.acks(&p2).len(), 3);
    assert_eq!(fake.all_acks().len(), 6);
}

#[tokio::test]
async fn faults_down_status_ratelimit_timeout_latency_and_poison() {
    let fake = fake().await;
    let api = api(&fake);
    put_check(&fake, "O-1", check_body("open", 4900, 0, 1)).await;
    // Down: the port really refuses connections; back on the same port with
    // the state kept.
    fake.set_fault(Fault::Down).await.unwrap();
    let e = client()
        .get(format!("{}/installations/{IID}/payments", fake.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(std::net::TcpStream::connect(fake.addr()).is_err());
    // Guests still pay while the box cannot reach Zenchef Pay.
    let id = fake.guest_pays("O-1", 4900, 0, "card").unwrap();
    fake.set_fault(Fault::None).await.unwrap();
    let (_, v, _) = check(&api, Case::get("/payments").answers(200)).await;
    assert_eq!(ids(&v), vec![id]);
    assert_eq!(fake.check("O-1").unwrap()["version"], 1);

    fake.set_fault(Fault::Status(503)).await.unwrap();
    check_all(
        &api,
        vec![
            Case::get("/payments").answers(503),
            put("O-1", check_body("open", 4900, 0, 2)).answers(503),
        ],
    )
    .await;
    assert_eq!(fake.check_history("O-1").len(), 1);

    // Each row: the fault set, then a request and its answer.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let fault_cases = [
        (
            Fault::RateLimit {
                retry_after: RetryAfter::Seconds(7),
            },
            Case::get("/payments")
                .answers(429)
                .answer_header("retry-after", "7"),
        ),
        (
            Fault::RateLimit {
                retry_after: RetryAfter::HttpDate(when),
            },
            Case::get("/payments"),
        ),
    ];
    let mut retry_after = None;
    for (fault, case) in fault_cases {
        fake.set_fault(fault).await.unwrap();
        retry_after = check(&api, case).await.2.get("retry-after").cloned();
    }
    let v = retry_after.unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc2822(v.to_str().unwrap())
            .unwrap()
            .timestamp(),
        1_795_000_000
    );

    fake.set_fault(Fault::Timeout).await.unwrap();
    let e = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .get(format!("{}/installations/{IID}/payments", fake.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");

    fake.set_fault(Fault::None).await.unwrap();
    fake.set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    check(&api, Case::get("/payments")).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    fake.set_latency(Duration::ZERO);

    // Persistent poison on one order's check.
    let f = fake.fail_path_containing("/checks/O-1", 500, "boom");
    let v3 = || check_body("open", 4900, 0, 3);
    check_all(
        &api,
        vec![
            put("O-1", v3())
                .answers(500)
                .field("/message", json!("boom")),
            put("O-2", v3()).answers(201),
        ],
    )
    .await;
    fake.clear_failure(f);
    check(&api, put("O-1", v3()).answers(200)).await;
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&0));
}

// ---- the POS's settle handling over the real broker -------------------------

fn agent_opts(port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(format!("zenchef-edge-{IID}"), "127.0.0.1", port);
    o.set_credentials("zenchef-edge", "secret")
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 << 20, 16 << 20);
    o
}

/// An agent-side MQTT client subscribed to `R/events`; events arrive on the
/// returned channel.
async fn agent_client(port: u16) -> (AsyncClient, mpsc::UnboundedReceiver<Value>) {
    let (client, mut el) = AsyncClient::new(agent_opts(port), 100);
    let (tx, rx) = mpsc::unbounded_channel();
    client
        .subscribe(format!("cashpad/{IID}/events"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    (client, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("channel open")
}

fn settle(payment_id: &str, order: &str, amount: i64, tip: i64) -> Value {
    json!({"command_id": format!("zp-{payment_id}"), "type": "settle", "order_id": order,
           "table": "12", "amount_cents": amount, "tip_cents": tip,
           "method": "zenchef_pay", "payment_id": payment_id})
}

async fn send_command(client: &AsyncClient, cmd: &Value) {
    client
        .publish(
            format!("cashpad/{IID}/zenchef/commands"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(cmd).unwrap(),
        )
        .await
        .unwrap();
}

async fn pos_rig() -> (
    Pos,
    AsyncClient,
    mpsc::UnboundedReceiver<Value>,
    EventBuilder,
) {
    let broker = start_broker(BrokerOptions {
        port: 0,
        users: vec![
            ("zenchef-edge".into(), "secret".into()),
            ("cashpad-pos".into(), "pos-pass".into()),
        ],
    })
    .unwrap();
    let pos = Pos::connect(broker.port, IID, "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let (client, rx) = agent_client(broker.port).await;
    (pos, client, rx, EventBuilder::new(100))
}

fn bill_lines() -> Vec<Line> {
    vec![
        Line::new("L1", "Entrecôte", 2, 2450),
        Line::new("L2", "Verre de Bordeaux", 2, 700),
    ]
}

#[tokio::test]
async fn pos_settles_a_split_bill_once_per_command_id() {
    let (pos, client, mut rx, mut eb) = pos_rig().await;
    let at = DateTime::parse_from_rfc3339("2026-11-29T20:00:00+01:00").unwrap();
    let lines = bill_lines();
    for e in [
        eb.table_opened("O-881", "12", 2, at),
        eb.items_sent("O-881", "12", &lines, 6300),
        eb.table_moved("O-881", "12", "14"),
    ] {
        pos.publish_event(&e).await.unwrap();
        assert_eq!(next_event(&mut rx).await["seq"], e["seq"]);
    }
    let last = pos.last_seq().await;
    assert_eq!(last, 102);
    let bill = pos.bill("O-881").unwrap();
    assert_eq!(
        (
            bill.table.as_str(),
            bill.total_cents,
            bill.due_cents(),
            bill.status
        ),
        ("14", 6300, 6300, BillStatus::Open)
    );

    // First guest: 3000 + 300 tip → payment.recorded.
    let paid_at = DateTime::parse_from_rfc3339("2026-11-29T21:30:00+01:00").unwrap();
    pos.set_clock(Some(paid_at));
    send_command(&client, &settle("pay_a1", "O-881", 3000, 300)).await;
    let e = next_event(&mut rx).await;
    assert_eq!(e["type"], "payment.recorded");
    assert_eq!(e["seq"], 103);
    assert_eq!(e["occurred_at"], "2026-11-29T21:30:00+01:00");
    assert_eq!(
        e["data"],
        json!({"order_id": "O-881", "amount_cents": 3000, "tip_cents": 300,
               "method": "zenchef_pay", "reference": "pay_a1"})
    );
    assert!(e["event_id"].as_str().unwrap().len() == 36);
    // The same command again (a resend after a restart): ignored.
    send_command(&client, &settle("pay_a1", "O-881", 3000, 300)).await;
    // Second guest pays the rest → bill.paid with both payments.
    send_command(&client, &settle("pay_b2", "O-881", 3300, 0)).await;
    let e = next_event(&mut rx).await;
    assert_eq!(e["type"], "bill.paid");
    assert_eq!(e["seq"], 104);
    let d = &e["data"];
    assert_eq!(d["order_id"], "O-881");
    assert_eq!(d["table"], "14");
    assert_eq!(d["covers"], 2);
    assert_eq!(d["lines"], serde_json::to_value(&lines).unwrap());
    assert_eq!(d["total_cents"], 6300);
    assert_eq!(d["tip_cents"], 300);
    assert_eq!(d["paid_at"], "2026-11-29T21:30:00+01:00");
    assert_eq!(
        d["payments"],
        json!([{"method": "zenchef_pay", "amount_cents": 3300, "reference": "pay_a1"},
               {"method": "zenchef_pay", "amount_cents": 3300, "reference": "pay_b2"}])
    );
    let dups = pos.duplicate_commands();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0]["command_id"], "zp-pay_a1");
    assert_eq!(pos.settled_commands().len(), 2);
    assert_eq!(pos.commands().len(), 3);
    assert_eq!(pos.bill("O-881").unwrap().status, BillStatus::Paid);
    pos.wait_until(Duration::from_secs(5), |s| s.answers.len() == 2)
        .await
        .unwrap();
    assert_eq!(pos.answers()[1]["seq"], 104);

    // Refused: already paid, unknown order, more than due; malformed.
    send_command(&client, &settle("pay_c3", "O-881", 100, 0)).await;
    send_command(&client, &settle("pay_d4", "O-404", 100, 0)).await;
    pos.track_bill("O-900", "T31", 2, &lines, 6300);
    send_command(&client, &settle("pay_e5", "O-900", 6301, 0)).await;
    let mut bad = settle("pay_f6", "O-900", 100, 0);
    bad["amount_cents"] = json!(1.5);
    send_command(&client, &bad).await;
    pos.wait_until(Duration::from_secs(5), |s| {
        s.refused_commands.len() == 3 && s.invalid.len() == 1
    })
    .await
    .unwrap();
    let reasons: Vec<String> = pos.refused_commands().into_iter().map(|r| r.1).collect();
    assert!(reasons[0].contains("already paid"), "{reasons:?}");
    assert!(reasons[1].contains("unknown order"), "{reasons:?}");
    assert!(reasons[2].contains("exceeds"), "{reasons:?}");
    assert!(pos.state().invalid[0].1.contains("amount_cents"));
    // The POS stayed quiet; then pays the tracked bill in one go.
    send_command(&client, &settle("pay_g7", "O-900", 6300, 0)).await;
    let e = next_event(&mut rx).await;
    assert_eq!(
        (e["type"].as_str(), e["seq"].as_u64()),
        (Some("bill.paid"), Some(105))
    );
    assert_eq!(e["data"]["table"], "T31");
    // Scripted events after the answers keep increasing when the POS stamps
    // them.
    let e = eb.order_voided("O-901", "T32", "erreur");
    assert_eq!(pos.publish_event_next_seq(&e).await.unwrap(), 106);
    assert_eq!(next_event(&mut rx).await["seq"], 106);
}

#[tokio::test]
async fn pos_without_auto_settle_answers_later_and_once() {
    let (pos, client, mut rx, mut eb) = pos_rig().await;
    let at = DateTime::parse_from_rfc3339("2026-11-29T20:00:00+01:00").unwrap();
    for e in [
        eb.table_opened("O-7", "12", 2, at),
        eb.items_sent("O-7", "12", &bill_lines(), 6300),
    ] {
        pos.publish_event(&e).await.unwrap();
        next_event(&mut rx).await;
    }
    pos.auto_settle(false);
    send_command(&client, &settle("pay_1", "O-7", 6300, 0)).await;
    pos.wait_until(Duration::from_secs(5), |s| s.pending_settles.len() == 1)
        .await
        .unwrap();
    // The agent "restarts" and resends: a duplicate of the pending command.
    send_command(&client, &settle("pay_1", "O-7", 6300, 0)).await;
    pos.wait_until(Duration::from_secs(5), |s| s.duplicate_commands.len() == 1)
        .await
        .unwrap();
    // Nothing is published meanwhile.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    assert!(pos.settled_commands().is_empty());
    assert_eq!(pos.bill("O-7").unwrap().paid_cents, 0);
    assert_eq!(pos.answer_pending_settles(), 1);
    let e = next_event(&mut rx).await;
    assert_eq!(e["type"], "bill.paid");
    assert_eq!(e["seq"], 102);
    assert_eq!(e["data"]["payments"][0]["reference"], "pay_1");
    assert!(pos.pending_settles().is_empty());
    assert_eq!(pos.answer_pending_settles(), 0);
    // Back to automatic: a third resend stays a duplicate.
    pos.auto_settle(true);
    send_command(&client, &settle("pay_1", "O-7", 6300, 0)).await;
    pos.wait_until(Duration::from_secs(5), |s| s.duplicate_commands.len() == 2)
        .await
        .unwrap();
    assert_eq!(pos.settled_commands().len(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
}

// ---- the Zenchef Pay scenario ------------------------------------------------

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

#[test]
fn pay_scenario_is_deterministic_and_shaped_as_promised() {
    let a = Scenario::generate_pay(7, day());
    let b = Scenario::generate_pay(7, day());
    assert_eq!(format!("{:?}", a.steps), format!("{:?}", b.steps));
    assert_eq!(a.expected, b.expected);
    for seed in [1, 2, 3, 7, 42, 2026] {
        let base = Scenario::generate(seed, day());
        let s = Scenario::generate_pay(seed, day());
        assert!(base.pay_orders.is_empty() && base.expected.checks.is_empty());
        assert!(base.expected.payments.is_empty());
        // Same service on the Zenchef side.
        assert_eq!(s.bookings, base.bookings);
        assert_eq!(s.expected.tickets.len(), base.expected.tickets.len());
        assert_eq!(s.expected.status_history, base.expected.status_history);
        assert_eq!(s.expected.walkins, base.expected.walkins);
        assert_eq!(s.pay_orders.len(), 8, "seed {seed}");
        let mut guests: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut injected = Vec::new();
        for st in &s.steps {
            match st {
                Step::GuestPays {
                    order_id,
                    amount_cents,
                    tip_cents,
                    ..
                } => guests
                    .entry(order_id.clone())
                    .or_default()
                    .push((*amount_cents, *tip_cents)),
                Step::InjectPayment { order_id, .. } => injected.push(order_id.clone()),
                _ => {}
            }
        }
        assert_eq!(
            guests.keys().collect::<HashSet<_>>(),
            s.pay_orders.iter().collect::<HashSet<_>>()
        );
        let splits: Vec<usize> = guests.values().map(Vec::len).filter(|n| *n > 1).collect();
        assert_eq!(splits.len(), 2, "seed {seed}");
        assert!(splits.iter().all(|n| (2..=3).contains(n)));
        assert!(guests.values().flatten().any(|(_, tip)| *tip > 0));
        // Guests pay exactly the bill; the ticket keeps totals and tips.
        for (order, pays) in &guests {
            let t = &s.expected.tickets[order];
            assert_eq!(pays.iter().map(|p| p.0).sum::<i64>(), t.total_cents);
            assert_eq!(pays.iter().map(|p| p.1).sum::<i64>(), t.tip_cents);
            assert_eq!(t.paid_cents, t.total_cents + t.tip_cents);
            assert_eq!(s.expected.checks[order].total_cents, t.total_cents);
        }
        // The POS publishes no payment for pay orders; it does for the others.
        let events = s.pos_events();
        for e in &events {
            let order = e["data"]["order_id"].as_str().unwrap();
            if s.pay_orders.iter().any(|o| o == order) {
                assert!(!["payment.recorded", "bill.paid"].contains(&e["type"].as_str().unwrap()));
            }
        }
        let paid = events.iter().filter(|e| e["type"] == "bill.paid").count();
        assert_eq!(paid + 8, s.expected.tickets.len());
        // One guest pays a table already paid in cash, after its bill.paid.
        assert_eq!(injected.len(), 1);
        let cash = &injected[0];
        assert!(!s.pay_orders.contains(cash));
        let (bill_at, bill) = s
            .steps
            .iter()
            .find_map(|st| match st {
                Step::Pos { at, event }
                    if event["type"] == "bill.paid" && event["data"]["order_id"] == *cash =>
                {
                    Some((*at, event.clone()))
                }
                _ => None,
            })
            .unwrap();
        assert!(
            bill["data"]["payments"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["method"] == "cash")
        );
        let inject_at = s
            .steps
            .iter()
            .find_map(|st| matches!(st, Step::InjectPayment { .. }).then(|| st.at()))
            .unwrap();
        assert!(inject_at > bill_at);
        // Expected fates in timeline order.
        let n_guest = guests.values().map(Vec::len).sum::<usize>();
        assert_eq!(s.expected.payments.len(), n_guest + 1);
        let rejected: Vec<_> = s
            .expected
            .payments
            .iter()
            .filter(|p| matches!(&p.fate, PaymentFate::Rejected { reason_contains } if reason_contains == "already paid"))
            .collect();
        assert_eq!(rejected.len(), 1);
        assert_eq!(&rejected[0].order_id, cash);
        // Every order gets a check that ends closed; seq spaced by 100 and
        // increasing, timeline sorted.
        assert_eq!(s.expected.checks.len(), s.expected.tickets.len());
        assert!(s.expected.checks.values().all(|c| c.status == "closed"));
        assert!(
            events
                .windows(2)
                .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
        );
        assert!(events.iter().all(|e| e["seq"].as_u64().unwrap() % 100 == 0));
        assert!(s.steps.windows(2).all(|w| w[0].at() <= w[1].at()));
    }
}

/// The agent side of Zenchef Pay, reduced to docs/protocol/sync-rules.md (Pay column,
/// rules 6 and 7), as a reference: reaching the scenario's expected outcome
/// validates the scenario, the Pay fake and the POS together.
struct RefAgent {
    fake: PayFake,
    http: Client,
    mqtt: AsyncClient,
    /// order → (table, covers, lines, total, paid, status)
    orders: BTreeMap<String, (String, u32, Value, i64, i64, &'static str)>,
    seen: HashSet<String>,
    cursor: Option<String>,
}

impl RefAgent {
    async fn put(&self, order: &str, version: u64) {
        let (table, covers, lines, total, paid, status) = &self.orders[order];
        let body = json!({"table": table, "covers": covers, "currency": "EUR", "status": status,
            "lines": lines, "total_cents": total, "paid_cents": paid, "version": version});
        let (code, v, _) = check(&api(&self.fake), put(order, body)).await;
        assert!(
            (200..300).contains(&code)
                || (code == 409 && v["stored_version"].as_u64() >= Some(version)),
            "{code} {v}"
        );
    }

    async fn ack(&self, payment_id: &str, body: Value) {
        check(&api(&self.fake), ack(payment_id, body).answers(200)).await;
    }

    async fn on_event(&mut self, e: Value) {
        let d = &e["data"];
        let order = d["order_id"].as_str().unwrap().to_string();
        let seq = e["seq"].as_u64().unwrap();
        match e["type"].as_str().unwrap() {
            "table.opened" => {
                self.orders.insert(
                    order,
                    (
                        d["table"].as_str().unwrap().into(),
                        d["covers"].as_u64().unwrap() as u32,
                        json!([]),
                        0,
                        0,
                        "open",
                    ),
                );
            }
            "order.items_sent" => {
                let o = self.orders.get_mut(&order).unwrap();
                o.0 = d["table"].as_str().unwrap().into();
                o.2 = d["lines"].clone();
                o.3 = d["total_cents"].as_i64().unwrap();
                self.put(&order, seq).await;
            }
            "table.moved" => {
                let o = self.orders.get_mut(&order).unwrap();
                o.0 = d["to_table"].as_str().unwrap().into();
                if o.3 > 0 {
                    self.put(&order, seq).await;
                }
            }
            "payment.recorded" => {
                self.orders.get_mut(&order).unwrap().4 += d["amount_cents"].as_i64().unwrap();
                self.put(&order, seq).await;
                if d["method"] == "zenchef_pay" {
                    self.ack(
                        d["reference"].as_str().unwrap(),
                        json!({"status": "settled"}),
                    )
                    .await;
                }
            }
            "bill.paid" => {
                let o = self.orders.get_mut(&order).unwrap();
                o.0 = d["table"].as_str().unwrap().into();
                o.2 = d["lines"].clone();
                o.3 = d["total_cents"].as_i64().unwrap();
                o.4 = o.3;
                o.5 = "closed";
                self.put(&order, seq).await;
                for p in d["payments"].as_array().unwrap() {
                    if p["method"] == "zenchef_pay" {
                        self.ack(
                            p["reference"].as_str().unwrap(),
                            json!({"status": "settled"}),
                        )
                        .await;
                    }
                }
            }
            other => panic!("unexpected event {other}"),
        }
    }

    async fn poll(&mut self) {
        let q = match &self.cursor {
            Some(c) => format!("?after={c}&limit=100"),
            None => "?limit=100".into(),
        };
        let v: Value = self
            .http
            .get(format!(
                "{}/installations/{IID}/payments{q}",
                self.fake.base_url()
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in v["payments"].as_array().unwrap() {
            let id = p["payment_id"].as_str().unwrap().to_string();
            if !self.seen.insert(id.clone()) {
                continue;
            }
            let order = p["order_id"].as_str().unwrap();
            let amount = p["amount_cents"].as_i64().unwrap();
            let reason = match self.orders.get(order) {
                None => Some(format!("order {order} unknown to the POS")),
                Some(o) if o.5 == "closed" => {
                    Some(format!("order {order} already paid in the POS"))
                }
                Some(o) if amount > o.3 - o.4 => {
                    Some(format!("amount exceeds what is due on {order}"))
                }
                Some(_) => None,
            };
            match reason {
                Some(r) => {
                    self.ack(&id, json!({"status": "rejected", "reason": r}))
                        .await
                }
                None => {
                    let cmd = json!({"command_id": format!("zp-{id}"), "type": "settle",
                        "order_id": order, "table": self.orders[order].0,
                        "amount_cents": amount, "tip_cents": p["tip_cents"],
                        "method": "zenchef_pay", "payment_id": id});
                    send_command(&self.mqtt, &cmd).await;
                }
            }
        }
        self.cursor = v["next_cursor"].as_str().map(str::to_string);
    }
}

#[tokio::test]
async fn reference_agent_reaches_the_pay_scenario_outcome() {
    let s = Scenario::generate_pay(11, day());
    let fake = fake().await;
    let (pos, mqtt, mut rx, _) = pos_rig().await;
    let mut agent = RefAgent {
        fake: fake.clone(),
        http: client(),
        mqtt,
        orders: BTreeMap::new(),
        seen: HashSet::new(),
        cursor: None,
    };
    // The API returns a payment twice once: the agent must not settle it
    // twice.
    fake.duplicate_next_payment();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                Some(e) = rx.recv() => agent.on_event(e).await,
                _ = tick.tick() => agent.poll().await,
                _ = &mut stop_rx => return agent,
            }
        }
    });
    for st in &s.steps {
        match st {
            Step::Pos { event, .. } => pos.publish_event(event).await.unwrap(),
            Step::GuestPays {
                at,
                order_id,
                amount_cents,
                tip_cents,
                method,
            } => {
                let total = s.expected.checks[order_id].total_cents;
                fake.wait_for_check(order_id, Duration::from_secs(20), |c| {
                    c["status"] == "open" && c["total_cents"] == total
                })
                .await
                .unwrap();
                fake.set_clock(Some(*at));
                pos.set_clock(Some(*at));
                fake.guest_pays(order_id, *amount_cents, *tip_cents, method)
                    .unwrap();
            }
            Step::InjectPayment {
                at,
                order_id,
                amount_cents,
                tip_cents,
                method,
            } => {
                fake.wait_for_check(order_id, Duration::from_secs(20), |c| {
                    c["status"] == "closed"
                })
                .await
                .unwrap();
                fake.set_clock(Some(*at));
                fake.inject_payment(json!({"order_id": order_id, "amount_cents": amount_cents,
                    "tip_cents": tip_cents, "method": method}));
            }
            Step::Zenchef { .. }
            | Step::OutageStart { .. }
            | Step::OutageEnd { .. }
            | Step::ZenchefDown { .. }
            | Step::ZenchefUp { .. } => {}
        }
    }
    let n = s.expected.payments.len();
    zenchef_sim::util::wait_for("every payment acked", Duration::from_secs(30), || {
        let p = fake.payments();
        (p.len() == n
            && p.iter().all(|p| {
                fake.payment_state(p["payment_id"].as_str().unwrap()) != PaymentState::Unacked
            })
            && s.expected
                .checks
                .keys()
                .all(|o| fake.check(o).is_some_and(|c| c["status"] == "closed")))
        .then_some(())
    })
    .await
    .unwrap();
    stop_tx.send(()).unwrap();
    let agent = agent_task.await.unwrap();
    let problems = s.pay_problems(&fake, &pos);
    assert!(problems.is_empty(), "{problems:#?}");
    // The duplicate was served, and the answers' seq fit the POS sequence.
    assert!(!fake.duplicate_pending());
    assert!(pos.duplicate_commands().is_empty());
    let settled = s
        .expected
        .payments
        .iter()
        .filter(|p| p.fate == PaymentFate::Settled)
        .count();
    assert_eq!(pos.answers().len(), settled);
    assert_eq!(fake.refunds().len(), 1);
    assert!(
        fake.refunds()[0]["reason"]
            .as_str()
            .unwrap()
            .contains("already paid")
    );
    assert_eq!(agent.seen.len(), n);
    // pay_problems catches a wrong outcome: a contradicting ack.
    let pid = fake.payments()[0]["payment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let contradiction = ack(&pid, json!({"status": "rejected", "reason": "x"}));
    check(&api(&fake), contradiction.answers(409)).await;
    assert_eq!(s.pay_problems(&fake, &pos).len(), 1);
}

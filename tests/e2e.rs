//! End to end: the real agent binary, discovering the simulated POS by mDNS
//! on loopback, over a real MQTT broker, against the Zenchef fake, with a
//! real SQLite file. Asserts the fake's final state booking by booking and
//! what the POS received.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use serde_json::{Value, json};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::scenario::{Scenario, Step};
use zenchef_sim::zenchef::{Fault, ZenchefConfig};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

fn today_utc_plus_1() -> chrono::NaiveDate {
    Utc::now()
        .with_timezone(&FixedOffset::east_opt(3600).unwrap())
        .date_naive()
}

async fn rig_for(sc: &Scenario, dir: &Path) -> Rig {
    let mut rig = Rig::start(
        RigOptions::new(sc.zenchef_config("zc-token-s3cret")),
        Path::new(AGENT),
        dir,
    )
    .await
    .expect("simulators start");
    rig.pos.publish_floorplan(&sc.floorplan()).await.unwrap();
    rig.spawn_agent().unwrap();
    rig
}

/// event_id → (order_id, seq) of the scenario's POS events.
fn index(sc: &Scenario) -> HashMap<String, (String, u64)> {
    sc.pos_events()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_string(),
                (
                    e["data"]["order_id"].as_str().unwrap().to_string(),
                    e["seq"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_service_with_an_outage_reaches_zenchef_and_the_pos() {
    let dir = tempfile::tempdir().unwrap();
    let sc = Scenario::generate(7, today_utc_plus_1());
    let mut rig = rig_for(&sc, dir.path()).await;
    let n_events = sc.pos_events().len() as i64;

    // The agent finds the POS by mDNS, connects and publishes its status.
    rig.pos
        .wait_until(Duration::from_secs(20), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    // Reservations of the day reach the POS before service.
    let expected_on_pos = sc.bookings.len();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| {
            s.reservations.len() >= expected_on_pos
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));

    // Play the service. During the outage, check that the POS keeps being
    // acknowledged and stored although nothing reaches Zenchef.
    let mut published = 0i64;
    let mut in_outage = false;
    let mut outage_events = 0i64;
    for step in &sc.steps {
        match step {
            Step::Pos { event, .. } => {
                rig.pos.publish_event(event).await.unwrap();
                published += 1;
                if in_outage {
                    outage_events += 1;
                }
            }
            Step::Zenchef { change, .. } => {
                change.apply(&rig.zenchef);
            }
            Step::OutageStart { .. } => {
                // Let the agent catch up first so the outage window is clean.
                rig.wait_status("delivery before the outage", Duration::from_secs(60), |s| {
                    s["counts"]["received"].as_i64() == Some(published)
                        && s["counts"]["queued"] == json!(0)
                })
                .await
                .unwrap();
                rig.zenchef.set_fault(Fault::Down).await.unwrap();
                in_outage = true;
            }
            Step::GuestPays { .. }
            | Step::InjectPayment { .. }
            | Step::ZenchefDown { .. }
            | Step::ZenchefUp { .. } => {
                unreachable!("generate() has no Zenchef Pay steps")
            }
            Step::OutageEnd { .. } => {
                let s = rig
                    .wait_status(
                        "events stored during the outage",
                        Duration::from_secs(30),
                        |s| s["counts"]["received"].as_i64() == Some(published),
                    )
                    .await
                    .unwrap();
                let queued = s["counts"]["queued"].as_i64().unwrap();
                assert!(
                    outage_events > 0,
                    "the scenario has events during the outage"
                );
                assert!(
                    queued > 0 && queued <= outage_events,
                    "during the outage {outage_events} events were sent; {queued} are queued"
                );
                rig.zenchef.set_fault(Fault::None).await.unwrap();
                in_outage = false;
            }
        }
    }
    assert_eq!(published, n_events);
    let s = rig
        .wait_status("every event delivered", Duration::from_secs(90), |s| {
            s["counts"]["received"].as_i64() == Some(n_events)
                && s["counts"]["queued"] == json!(0)
                && s["counts"]["delivered"].as_i64() == Some(n_events)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["dead"], json!(0), "{s}");
    assert_eq!(s["counts"]["rejected"], json!(0), "{s}");

    // Zenchef, booking by booking.
    let fake = &rig.zenchef;
    for (id, statuses) in &sc.expected.status_history {
        assert_eq!(
            &fake.status_history(*id),
            statuses,
            "status history of booking {id}"
        );
    }
    for id in sc.expected.cancelled.iter().chain(&sc.expected.not_opened) {
        assert!(
            fake.status_history(*id).is_empty(),
            "booking {id} must not be touched"
        );
    }
    // Walk-ins: created exactly once each, with the POS's table and covers.
    let walkins = fake.walkins();
    assert_eq!(
        walkins.len(),
        sc.expected.walkins.len(),
        "walk-ins: {walkins:#?}"
    );
    for w in &sc.expected.walkins {
        let found: Vec<&Value> = walkins
            .iter()
            .filter(|b| b["tables"][0]["name"] == json!(w.table) && b["time"] == json!(w.time))
            .collect();
        assert_eq!(found.len(), 1, "walk-in of order {} ({w:?})", w.order_id);
        let b = found[0];
        assert_eq!(b["nb_guests"], json!(w.covers));
        assert_eq!(b["day"], json!(w.day));
        assert_eq!(b["reservation_type"], json!("walkin"));
        assert_eq!(
            fake.status_history(b["id"].as_i64().unwrap()),
            vec!["seated", "over"]
        );
    }
    // Tickets: the POS's totals, lines and tip, on the right booking.
    let tickets = fake.tickets();
    assert_eq!(tickets.len(), sc.expected.tickets.len());
    for (tid, t) in &sc.expected.tickets {
        let (booking, body) = tickets
            .get(tid)
            .unwrap_or_else(|| panic!("ticket {tid} missing"));
        if let Some(b) = t.booking_id {
            assert_eq!(*booking, b, "ticket {tid} booking");
        }
        assert_eq!(body["total_cents"], json!(t.total_cents), "ticket {tid}");
        assert_eq!(body["tip_cents"], json!(t.tip_cents), "ticket {tid}");
        assert_eq!(body["covers"], json!(t.covers), "ticket {tid}");
        assert_eq!(
            body["lines"].as_array().unwrap().len(),
            t.lines,
            "ticket {tid}"
        );
        assert_eq!(body["currency"], json!("EUR"));
        let paid: i64 = body["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["amount_cents"].as_i64().unwrap())
            .sum();
        assert_eq!(paid, t.paid_cents, "ticket {tid} payments");
    }
    // Average spends recomputed by Zenchef from the attached tickets.
    for b in fake.bookings() {
        if let Some(sheet) = b["customersheet"].as_object() {
            let sid = sheet["id"].as_i64().unwrap();
            if let Some((visits, avg)) = sc.expected.customersheets.get(&sid) {
                assert_eq!(sheet["visits"], json!(visits), "visits of sheet {sid}");
                assert_eq!(
                    sheet["average_spend_cents"],
                    json!(avg),
                    "average of sheet {sid}"
                );
            }
        }
    }

    // Per order, calls reached Zenchef in seq order (across the outage).
    let idx = index(&sc);
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    for call in fake.calls().iter().filter(|c| c.status < 300) {
        let Some(key) = &call.publisher_model_id else {
            continue;
        };
        let event_id = key.rsplit_once(':').map(|(e, _)| e).unwrap_or(key);
        let (order, seq) = idx
            .get(event_id)
            .unwrap_or_else(|| panic!("unknown key {key}"));
        let prev = last_seq.insert(order.clone(), *seq).unwrap_or(0);
        assert!(
            *seq >= prev,
            "order {order}: seq {seq} reached Zenchef after seq {prev}"
        );
    }

    // The POS: every live reservation with its customer fields; cancelled
    // ones withdrawn.
    rig.pos
        .wait_until(Duration::from_secs(10), |st| {
            sc.expected
                .cancelled
                .iter()
                .all(|id| !st.reservations.contains_key(id))
        })
        .await
        .unwrap();
    let on_pos = rig.pos.reservations();
    for b in &sc.bookings {
        let id = b["id"].as_i64().unwrap();
        if sc.expected.cancelled.contains(&id) {
            assert_eq!(
                rig.pos.reservation_history(id).last(),
                Some(&None),
                "booking {id} withdrawn"
            );
            continue;
        }
        let r = on_pos
            .get(&id)
            .unwrap_or_else(|| panic!("booking {id} not on the POS"));
        assert_eq!(r["booking_id"], json!(id));
        let cur = fake.booking(id).unwrap();
        assert_eq!(r["time"], cur["time"], "booking {id} time follows Zenchef");
        assert_eq!(r["nb_guests"], cur["nb_guests"], "booking {id}");
        assert_eq!(r["comment"], cur["comment"], "booking {id}");
        assert_eq!(r["allergies"], cur["allergies"], "booking {id}");
        // Customer fields: the booking's own, else its customersheet's (rule 3).
        for (pos_key, own, sheet) in [
            ("firstname", "firstname", "firstname"),
            ("lastname", "lastname", "lastname"),
            ("phone", "phone_number", "phone"),
            ("email", "email", "email"),
        ] {
            let want = cur[own]
                .as_str()
                .filter(|s| !s.is_empty())
                .or(cur["customersheet"][sheet].as_str());
            assert_eq!(
                r["customer"][pos_key].as_str(),
                want,
                "booking {id} customer.{pos_key}"
            );
        }
        assert_eq!(r["tables"][0], cur["tables"][0]["name"], "booking {id}");
    }

    // A clean stop says goodbye on the status topic.
    assert_eq!(rig.stop_agent(Duration::from_secs(20)).unwrap(), Some(0));
    rig.pos
        .wait_until(Duration::from_secs(5), |st| {
            st.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(false))
        })
        .await
        .unwrap();
}

/// The same config keys with a Zenchef fake that has no bookings.
fn empty_zenchef() -> ZenchefConfig {
    ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token-s3cret".into(),
        tables: (1..=5)
            .map(|i| (i, i.to_string(), "Salle".to_string()))
            .collect(),
        bookings: vec![],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_quarantined_duplicates_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::start(
        RigOptions::new(empty_zenchef()),
        Path::new(AGENT),
        dir.path(),
    )
    .await
    .unwrap();
    rig.spawn_agent().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| s.status.is_some())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    let mut eb = zenchef_sim::pos::EventBuilder::new(100);
    let now = Utc::now().with_timezone(&zenchef_sim::pos::paris_winter());
    let opened = eb.table_opened("O-1", "3", 2, now);
    let unknown = eb.envelope("kitchen.ready", json!({"order_id": "O-1"}));
    let unknown2 = eb.envelope("kitchen.ready", json!({"order_id": "O-1"}));
    let paid_never_opened = eb.bill_paid(
        "O-2",
        "4",
        3,
        &[zenchef_sim::pos::Line::new("L1", "Menu", 3, 2500)],
        7500,
        0,
        &[zenchef_sim::pos::Payment::new("cash", 7500, "CASH-1")],
        now,
    );
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        json!({"seq": 1, "type": "table.opened", "occurred_at": "2026-11-29T19:42:05+01:00", "data": {}}).to_string().into_bytes(),
        json!({"event_id": "x-1", "seq": 2, "type": "table.opened", "occurred_at": "2026-11-29T19:42:05+01:00",
               "data": {"table": "3", "covers": 2, "opened_at": "2026-11-29T19:42:05+01:00"}}).to_string().into_bytes(),
        json!({"event_id": "x-2", "seq": 3, "type": "payment.recorded", "occurred_at": "2026-11-29T19:42:05+01:00",
               "data": {"order_id": "O-1", "amount_cents": -500, "tip_cents": 0, "method": "card"}}).to_string().into_bytes(),
        json!({"event_id": "x-3", "seq": 4, "type": "payment.recorded", "occurred_at": "2026-11-29T19:42:05+01:00",
               "data": {"order_id": "O-1", "amount_cents": 12.5, "tip_cents": 0, "method": "card"}}).to_string().into_bytes(),
    ];
    for p in &bad {
        rig.pos.publish_raw(p.clone()).await.unwrap();
    }
    for e in [&opened, &opened, &unknown, &unknown2, &paid_never_opened] {
        rig.pos.publish_event(e).await.unwrap();
    }
    let s = rig
        .wait_status("bad input handled", Duration::from_secs(30), |s| {
            let c = &s["counts"];
            c["rejected"] == json!(5)
                && c["duplicates"] == json!(1)
                && c["queued"] == json!(0)
                && c["received"] == json!(4)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["unknown_type"], json!(2));
    assert_eq!(s["counts"]["dead"], json!(0));
    // The opened table became one walk-in, not two; the bill of an order
    // never opened became a walk-in finished with its ticket.
    let walkins = rig.zenchef.walkins();
    assert_eq!(walkins.len(), 2, "{walkins:#?}");
    let w2 = walkins
        .iter()
        .find(|b| b["tables"][0]["name"] == json!("4"))
        .unwrap();
    assert_eq!(
        rig.zenchef.status_history(w2["id"].as_i64().unwrap()),
        vec!["seated", "over"]
    );
    assert_eq!(rig.zenchef.tickets()["O-2"].1["total_cents"], json!(7500));
    // Reasons are precise and stored.
    let log = rig.log();
    for reason in [
        "payload is not JSON",
        "missing field `event_id`",
        "data: missing field `order_id`",
        "data.amount_cents: invalid value: integer `-500`, expected u64",
        "data.amount_cents: invalid type: floating point `12.5`, expected u64",
    ] {
        assert!(log.contains(reason), "log lacks {reason:?}");
    }
    assert_eq!(
        log.matches("unknown event type \"kitchen.ready\"").count(),
        1,
        "logged once per type"
    );
    assert!(
        !log.contains("zc-token-s3cret") && !log.contains(&rig.opts.cashpad_token),
        "secrets in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pos_too_old_is_refused_until_a_compatible_one_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(empty_zenchef());
    opts.app_version = "2.0.15".into();
    let mut rig = Rig::start(opts, Path::new(AGENT), dir.path())
        .await
        .unwrap();
    rig.spawn_agent().unwrap();
    zenchef_sim::util::wait_for("the refusal in the log", Duration::from_secs(20), || {
        rig.log()
            .contains("runs Cashpad 2.0.15, older than the required 2.0.16")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(
        rig.pos.status().is_none(),
        "no session with a POS that is too old"
    );
    // The POS is updated: the agent connects without a restart.
    let mut advert = rig.advert.as_ref().unwrap().advert().clone();
    advert.app = "2.0.16".into();
    rig.advert.as_mut().unwrap().update(advert).unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| s.status.is_some())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pos_without_an_installation_id_are_refused_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(empty_zenchef());
    opts.configure_iid = false;
    let mut rig = Rig::start(opts, Path::new(AGENT), dir.path())
        .await
        .unwrap();
    let mut second = zenchef_sim::mdns::PosAdvert::new(rig.mdns_port, "CP-OTHER", rig.broker.port);
    second.instance = "Cashpad Server (Bar)".into();
    let _second = zenchef_sim::mdns::advertise(second).unwrap();
    rig.spawn_agent().unwrap();
    zenchef_sim::util::wait_for("the refusal in the log", Duration::from_secs(20), || {
        let log = rig.log();
        (log.contains("2 POS answer on the LAN and cashpad.installation_id is not set")
            && log.contains(&rig.opts.iid)
            && log.contains("CP-OTHER"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(rig.pos.status().is_none());
}

//! The in-process broker: auth, retained messages, persistent sessions,
//! large payloads; and the POS client against it.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;
use zenchef_sim::broker::{BrokerOptions, start_broker};
use zenchef_sim::pos::{EventBuilder, Pos};

fn users() -> Vec<(String, String)> {
    vec![
        ("zenchef-edge".into(), "secret".into()),
        ("cashpad-pos".into(), "pos-pass".into()),
    ]
}

fn opts(port: u16, id: &str, user: &str, pass: &str, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, pass)
        .set_clean_session(clean)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(16 << 20, 16 << 20);
    o
}

/// Polls until ConnAck; returns the error if the connection fails.
async fn connack(el: &mut EventLoop) -> Result<bool, ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(a)) = el.poll().await? {
            return Ok(a.session_present);
        }
    }
}

/// Polls until a publish on `topic` arrives, returning its payload.
async fn next_publish(el: &mut EventLoop) -> rumqttc::Publish {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("a publish within 5 s")
}

async fn poll_until_suback(el: &mut EventLoop) {
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await.expect("poll") {
            return;
        }
    }
}

#[tokio::test]
async fn bad_password_is_rejected_good_one_accepted() {
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let (_c, mut el) = AsyncClient::new(opts(b.port, "x1", "zenchef-edge", "wrong", true), 10);
    let e = tokio::time::timeout(Duration::from_secs(5), connack(&mut el))
        .await
        .unwrap()
        .unwrap_err();
    // rumqttd 0.20 does not answer CONNACK with return code 5 ("not
    // authorized"): it closes the connection right after CONNECT. A client
    // sees the connection aborted without any CONNACK.
    assert!(
        matches!(
            e,
            ConnectionError::ConnectionRefused(_)
                | ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted)
                | ConnectionError::Io(_)
        ),
        "expected a refusal, got {e:?}"
    );
    let (_c, mut el) = AsyncClient::new(opts(b.port, "x2", "zenchef-edge", "secret", true), 10);
    tokio::time::timeout(Duration::from_secs(5), connack(&mut el))
        .await
        .unwrap()
        .unwrap();
    assert!(
        Pos::connect(b.port, "CP-1", "cashpad-pos", "nope")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn retained_floorplan_reaches_a_late_subscriber() {
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let pos = Pos::connect(b.port, "CP-R", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let plan = json!({"tables":[{"name":"12","room":"Salle","seats":4}],"updated_at":"2026-11-29T17:00:00+01:00"});
    pos.publish_floorplan(&plan).await.unwrap();
    let (c, mut el) = AsyncClient::new(opts(b.port, "late", "zenchef-edge", "secret", true), 10);
    connack(&mut el).await.unwrap();
    c.subscribe("cashpad/CP-R/floorplan", QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = next_publish(&mut el).await;
    assert_eq!(p.topic, "cashpad/CP-R/floorplan");
    assert!(p.retain, "delivered as retained");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap(),
        plan
    );
}

#[tokio::test]
async fn persistent_session_queues_qos1_while_away() {
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let id = "zenchef-edge-CP-P";
    // First connection: subscribe, then go away without unsubscribing.
    {
        let (c, mut el) = AsyncClient::new(opts(b.port, id, "zenchef-edge", "secret", false), 10);
        connack(&mut el).await.unwrap();
        c.subscribe("cashpad/CP-P/events", QoS::AtLeastOnce)
            .await
            .unwrap();
        poll_until_suback(&mut el).await;
        c.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while el.poll().await.is_ok() {}
        })
        .await;
    }
    let pos = Pos::connect(b.port, "CP-P", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let mut eb = EventBuilder::new(1);
    let mut sent = Vec::new();
    for i in 0..5 {
        let e = eb.order_voided(&format!("O-{i}"), "12", "test");
        pos.publish_event(&e).await.unwrap();
        sent.push(e);
    }
    // Reconnect with the same client id and clean_session = false, no new
    // SUBSCRIBE: the broker must deliver what was published meanwhile.
    let (_c, mut el) = AsyncClient::new(opts(b.port, id, "zenchef-edge", "secret", false), 10);
    let present = connack(&mut el).await.unwrap();
    assert!(present, "session_present must be set on reconnect");
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = next_publish(&mut el).await;
        assert_eq!(p.topic, "cashpad/CP-P/events");
        assert_eq!(p.qos, QoS::AtLeastOnce);
        got.push(serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap());
    }
    assert_eq!(got, sent);
}

#[tokio::test]
async fn unacked_qos1_is_redelivered_after_reconnect() {
    // The agent acks only after its commit; a crash before that must make the
    // broker deliver again.
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let id = "zenchef-edge-CP-U";
    let mut o = opts(b.port, id, "zenchef-edge", "secret", false);
    o.set_manual_acks(true);
    let (c, mut el) = AsyncClient::new(o.clone(), 10);
    connack(&mut el).await.unwrap();
    c.subscribe("cashpad/CP-U/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    poll_until_suback(&mut el).await;
    let pos = Pos::connect(b.port, "CP-U", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let e = EventBuilder::new(7).order_voided("O-1", "12", "test");
    pos.publish_event(&e).await.unwrap();
    let p = next_publish(&mut el).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap(),
        e
    );
    // "Crash": drop the connection without acking.
    drop(c);
    drop(el);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, mut el) = AsyncClient::new(o, 10);
    connack(&mut el).await.unwrap();
    let p = next_publish(&mut el).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap(),
        e
    );
    c.ack(&p).await.unwrap();
}

#[tokio::test]
async fn ten_megabyte_payload_passes_the_broker() {
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let (c, mut el) = AsyncClient::new(opts(b.port, "big", "zenchef-edge", "secret", true), 10);
    connack(&mut el).await.unwrap();
    c.subscribe("cashpad/CP-B/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    poll_until_suback(&mut el).await;
    let pos = Pos::connect(b.port, "CP-B", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let big = vec![b'x'; 10 * 1024 * 1024];
    let (r, p) = tokio::join!(pos.publish_raw(big.clone()), next_publish(&mut el));
    r.unwrap();
    assert_eq!(p.payload.len(), big.len());
    // Invalid UTF-8 goes through as bytes too.
    let (r, p) = tokio::join!(
        pos.publish_raw(vec![0xff, 0xfe, 0x00]),
        next_publish(&mut el)
    );
    r.unwrap();
    assert_eq!(&p.payload[..], &[0xff, 0xfe, 0x00]);
}

#[tokio::test]
async fn pos_records_reservations_withdrawals_status_and_commands() {
    let b = start_broker(BrokerOptions {
        port: 0,
        users: users(),
    })
    .unwrap();
    let pos = Pos::connect(b.port, "CP-S", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    let (c, mut el) = AsyncClient::new(opts(b.port, "agent", "zenchef-edge", "secret", true), 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let r = "cashpad/CP-S/zenchef";
    let res = json!({"booking_id": 42, "day": "2026-11-29", "time": "20:00"});
    c.publish(
        format!("{r}/reservations/42"),
        QoS::AtLeastOnce,
        true,
        serde_json::to_vec(&res).unwrap(),
    )
    .await
    .unwrap();
    c.publish(
        format!("{r}/reservations/43"),
        QoS::AtLeastOnce,
        true,
        b"{\"booking_id\":43}".to_vec(),
    )
    .await
    .unwrap();
    c.publish(
        format!("{r}/status"),
        QoS::AtLeastOnce,
        true,
        b"{\"online\":true,\"pending\":0}".to_vec(),
    )
    .await
    .unwrap();
    c.publish(
        format!("{r}/commands"),
        QoS::AtLeastOnce,
        false,
        b"{\"command_id\":\"zp-1\"}".to_vec(),
    )
    .await
    .unwrap();
    pos.wait_until(Duration::from_secs(5), |s| {
        s.reservations.len() == 2 && s.status.is_some() && s.commands.len() == 1
    })
    .await
    .unwrap();
    assert_eq!(pos.reservations()[&42], res);
    c.publish(
        format!("{r}/reservations/43"),
        QoS::AtLeastOnce,
        true,
        Vec::new(),
    )
    .await
    .unwrap();
    pos.wait_until(Duration::from_secs(5), |s| {
        !s.reservations.contains_key(&43)
    })
    .await
    .unwrap();
    assert_eq!(
        pos.reservation_history(43),
        vec![Some(json!({"booking_id":43})), None]
    );
    assert_eq!(pos.status().unwrap()["online"], json!(true));
    assert_eq!(pos.commands()[0]["command_id"], json!("zp-1"));
    // A POS that connects later sees only the retained, non-withdrawn ones.
    let late = Pos::connect(b.port, "CP-S2", "cashpad-pos", "pos-pass")
        .await
        .unwrap();
    assert!(
        late.wait_until(Duration::from_millis(300), |s| !s.reservations.is_empty())
            .await
            .is_err()
    );
    let again = {
        // Different client id, same iid: gets the retained set.
        let mut o = opts(
            b.port,
            "cashpad-pos-viewer",
            "cashpad-pos",
            "pos-pass",
            true,
        );
        o.set_clean_session(true);
        o
    };
    let (c2, mut el2) = AsyncClient::new(again, 10);
    connack(&mut el2).await.unwrap();
    c2.subscribe(format!("{r}/reservations/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = next_publish(&mut el2).await;
    assert_eq!(p.topic, format!("{r}/reservations/42"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_publish_opt(&mut el2))
            .await
            .is_err()
    );
}

async fn next_publish_opt(el: &mut EventLoop) -> rumqttc::Publish {
    loop {
        if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
            return p;
        }
    }
}

#[test]
fn event_builder_envelopes_follow_the_spec() {
    let mut eb = EventBuilder::new(1041);
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-29T19:42:05+01:00").unwrap();
    let a = eb.table_opened("O-881", "12", 4, t);
    let b = eb.table_moved("O-881", "12", "14");
    assert_eq!(a["seq"], json!(1041));
    assert_eq!(b["seq"], json!(1042));
    assert_eq!(a["type"], json!("table.opened"));
    assert_eq!(a["occurred_at"], json!("2026-11-29T19:42:05+01:00"));
    assert_eq!(
        a["data"],
        json!({"order_id":"O-881","table":"12","covers":4,"opened_at":"2026-11-29T19:42:05+01:00"})
    );
    assert_ne!(a["event_id"], b["event_id"]);
    let id = a["event_id"].as_str().unwrap();
    assert!((1..=64).contains(&id.len()));
    assert!(chrono::DateTime::parse_from_rfc3339(b["occurred_at"].as_str().unwrap()).is_ok());
}

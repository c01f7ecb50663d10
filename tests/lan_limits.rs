//! The limits of what the LAN may send (docs/protocol/cashpad-local.md §2a),
//! with a real mosquitto as the POS broker and the real agent binary:
//!
//! - a 17 MiB message on `R/events` is read past by the frame guard,
//!   quarantined with its size, id and order, and acknowledged; the events
//!   after it are stored and reach Zenchef, the session never drops, a
//!   restart does not bring it back, and the agent's memory stays far
//!   below the message's size;
//! - a payload of exactly 1 MiB is an event; one byte more is rejected
//!   (and only its first 4 KiB are kept);
//! - the same through TLS (`tls=1`), with a retained floor plan over the
//!   limit;
//! - hundreds of events with a new 200 KiB `type` each: quarantined, the
//!   agent's memory and the store stay bounded, the events after them are
//!   stored.
//!
//! The big messages are published by a plain MQTT client of the test
//! (rumqttc with a large packet limit) as the POS account: mosquitto's
//! default `message_size_limit` lets them through, as a POS broker that
//! enforces none would.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lan::*;
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, QoS};
use serde_json::{Value, json};
use zenchef_sim::harness::{POS_PASSWORD, POS_USER, Rig, RigOptions};
use zenchef_sim::mosquitto::{Mosquitto, MosquittoOptions, TlsListener};

const AT: &str = "2026-11-29T19:42:05+01:00";

/// An envelope of `len` bytes exactly (a `pad` field, extra fields being
/// accepted, takes the rest), of a known type when `data` has its fields.
fn sized(id: &str, seq: u64, t: &str, data: Value, len: usize) -> Vec<u8> {
    let mut v =
        json!({"event_id": id, "seq": seq, "type": t, "occurred_at": AT, "data": data, "pad": ""});
    let base = v.to_string().len();
    assert!(len >= base, "{len} < {base}");
    v["pad"] = json!("x".repeat(len - base));
    let out = v.to_string().into_bytes();
    assert_eq!(out.len(), len);
    out
}

fn opened(id: &str, seq: u64, order: &str) -> Value {
    json!({"event_id": id, "seq": seq, "type": "table.opened", "occurred_at": AT,
           "data": {"order_id": order, "table": "W1", "covers": 2, "opened_at": AT}})
}

fn paid(id: &str, seq: u64, order: &str) -> Value {
    json!({"event_id": id, "seq": seq, "type": "bill.paid", "occurred_at": AT,
           "data": {"order_id": order, "table": "W1", "covers": 2,
                    "lines": [{"line_id": "L1", "name": "Menu", "quantity": 2, "unit_price_cents": 2450, "total_cents": 4900}],
                    "total_cents": 4900, "tip_cents": 0,
                    "payments": [{"method": "card", "amount_cents": 4900, "reference": "CB-1"}],
                    "paid_at": AT}})
}

/// The store's size on disk (file and WAL), bytes.
fn store_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// `(length(payload), payload_len, event_id, order_id, reason)` of a
/// rejected row.
type RejectedRow = (i64, i64, Option<String>, Option<String>, String);

/// Every rejected row, read-only.
fn rejected_rows(path: &Path) -> Vec<RejectedRow> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare(
            "SELECT length(payload), payload_len, event_id, order_id, reason FROM rejected ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The agent's sessions with the POS so far (journal lines).
fn sessions(rig: &Rig) -> usize {
    plain_log(rig)
        .matches("MQTT session up with the POS")
        .count()
}

/// A mosquitto for the rig, plain.
fn broker(dir: &Path, opts: &mut RigOptions) -> Mosquitto {
    let mq = Mosquitto::start(&dir.join("mosquitto"), &users(opts), 1).unwrap();
    opts.broker_port = Some(mq.port());
    mq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17_mib_message_is_read_past_and_intake_goes_on() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = broker(dir.path(), &mut opts);
    let mut rig = start_rig(opts, &dir.path().join("rig")).await;
    let pid = rig.agent_pid().unwrap();
    rig.pos
        .publish_event(&opened("e-1", 1, "O-1"))
        .await
        .unwrap();
    rig.wait_status("the order opened", Duration::from_secs(30), |s| {
        s["counts"]["received"] == json!(1)
    })
    .await
    .unwrap();
    let (rss_before, hwm_before) = memory_kib(pid);

    // 17 MiB on R/events, its beginning naming the open order.
    let huge_len = 17 * MIB;
    let huge = sized(
        "e-huge",
        2,
        "order.items_sent",
        json!({"order_id": "O-1", "table": "W1", "lines": [], "total_cents": 0}),
        huge_len,
    );
    let t0 = Instant::now();
    publish_big(
        mq.port(),
        &format!("{}/events", rig.pos.root()),
        huge,
        false,
    )
    .await;
    rig.pos.publish_event(&paid("e-3", 3, "O-1")).await.unwrap();
    let s = rig
        .wait_status(
            "the message after the big one",
            Duration::from_secs(60),
            |s| {
                s["counts"]["received"] == json!(2)
                    && s["counts"]["rejected"] == json!(1)
                    && s["counts"]["queued"] == json!(0)
                    && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
            },
        )
        .await
        .unwrap();
    let took = t0.elapsed();
    let (rss_after, hwm_after) = memory_kib(pid);
    figures(&format!(
        "17 MiB message: handled in {took:?}; agent VmRSS {rss_before} → {rss_after} KiB, VmHWM \
         {hwm_before} → {hwm_after} KiB"
    ));
    assert_eq!(s["daemon"]["pos"]["mqtt_connected"], json!(true), "{s}");
    assert_eq!(s["daemon"]["pos"]["problem"], Value::Null, "{s}");
    assert_eq!(
        sessions(&rig),
        1,
        "the session never dropped:\n{}",
        rig.log_tail(30)
    );
    assert!(
        hwm_after < hwm_before + 8 * 1024,
        "the agent's peak memory grew by {} KiB for a {huge_len}-byte message",
        hwm_after - hwm_before
    );
    // The event after it reached Zenchef.
    assert_eq!(rig.zenchef.tickets()["O-1"].1["total_cents"], json!(4900));
    let rows = rejected_rows(&rig.store_path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (kept, len, id, order, reason) = &rows[0];
    assert_eq!(*len as usize, huge_len, "the real size");
    assert_eq!(*kept, 4096, "the first 4 KiB kept");
    assert_eq!(id.as_deref(), Some("e-huge"));
    assert_eq!(order.as_deref(), Some("O-1"));
    assert!(
        reason.starts_with("payload is 17825792 bytes, more than the 1048576 accepted"),
        "{reason}"
    );
    let log = plain_log(&rig);
    assert!(
        log.contains("quarantined a 17825792-byte payload from"),
        "{}",
        rig.log_tail(20)
    );
    // The order named by the message needs attention (sync rule 9) until
    // the POS sends its bill again; `status` says so with the size.
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    assert!(text.contains("rejected 1"), "{text}");

    // Acknowledged: a restart does not bring it back.
    rig.kill_agent().unwrap();
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    rig.pos
        .publish_event(&opened("e-4", 4, "O-2"))
        .await
        .unwrap();
    let s = rig
        .wait_status(
            "the event after the restart",
            Duration::from_secs(30),
            |s| s["counts"]["received"] == json!(3),
        )
        .await
        .unwrap();
    assert_eq!(s["counts"]["rejected"], json!(1), "redelivered: {s}");
    assert_eq!(s["counts"]["duplicates"], json!(0), "{s}");
    assert_eq!(rejected_rows(&rig.store_path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_exactly_1_mib_passes_and_one_byte_more_is_rejected() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let _mq = broker(dir.path(), &mut opts);
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let data = json!({"order_id": "O-9", "table": "W1", "covers": 2, "opened_at": AT});
    rig.pos
        .publish_raw(sized("e-over", 1, "table.opened", data.clone(), MIB + 1))
        .await
        .unwrap();
    rig.pos
        .publish_raw(sized("e-at", 2, "table.opened", data, MIB))
        .await
        .unwrap();
    let s = rig
        .wait_status("both handled", Duration::from_secs(30), |s| {
            s["counts"]["received"] == json!(1)
                && s["counts"]["rejected"] == json!(1)
                && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
        })
        .await
        .unwrap();
    assert_eq!(s["daemon"]["pos"]["mqtt_connected"], json!(true), "{s}");
    let view = StoreView::read(&rig.store_path()).unwrap();
    assert!(view.events.contains("e-at"), "the 1 MiB event is stored");
    // The rejected one named order O-9, known by then: `status` shows the
    // order needing attention, with the size.
    let s = rig
        .wait_status(
            "the order needing attention",
            Duration::from_secs(10),
            |s| s["orders_needing_attention"][0]["order_id"] == json!("O-9"),
        )
        .await
        .unwrap();
    let why = s["orders_needing_attention"][0]["reason"].as_str().unwrap();
    assert!(
        why.starts_with("payload is 1048577 bytes, more than the 1048576 accepted"),
        "{why}"
    );
    let rows = rejected_rows(&rig.store_path());
    let (kept, len, id, _, reason) = &rows[0];
    assert_eq!(*len as usize, MIB + 1);
    assert_eq!(*kept, 4096, "only the first 4 KiB are kept");
    assert_eq!(id.as_deref(), Some("e-over"));
    assert!(
        reason.starts_with("payload is 1048577 bytes, more than the 1048576 accepted"),
        "{reason}"
    );
    assert_eq!(sessions(&rig), 1);
}

/// The POS announces `tls=1`: the guard speaks TLS to the broker (the CA
/// given through `SSL_CERT_FILE`, read as the box's store), and a retained
/// floor plan over the limit is read past like an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_tls_an_oversized_retained_floorplan_is_read_past() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let ca = zenchef_sim::certs::TestCa::new("POS test CA").unwrap();
    let ca_file = ca.write_cert(&dir.path().join("ca.pem")).unwrap();
    let server = ca
        .server_files(dir.path(), "broker", "cashpad-pos")
        .unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &MosquittoOptions {
            users: users(&opts),
            tls_listeners: vec![TlsListener {
                cafile: ca_file.clone(),
                certfile: server.cert.clone(),
                keyfile: server.key.clone(),
                require_certificate: false,
                use_identity_as_username: false,
                tls_version: None,
            }],
            ..MosquittoOptions::default()
        },
    )
    .unwrap();
    opts.broker_port = Some(mq.port());
    let mut rig = Rig::start(opts, Path::new(AGENT), &dir.path().join("rig"))
        .await
        .unwrap();
    let mut advert = rig.advert.as_ref().unwrap().advert().clone();
    advert.mqtt_port = mq.tls_port();
    advert.tls = true;
    rig.advert.as_mut().unwrap().update(advert).unwrap();
    // Retained before the agent subscribes: handed over at its SUBSCRIBE.
    let mut plan = br#"{"tables":[{"name":"W1","room":"Salle","seats":4}],"pad":""#.to_vec();
    plan.resize(3 * MIB, b' ');
    publish_big(
        mq.port(),
        &format!("{}/floorplan", rig.pos.root()),
        plan,
        true,
    )
    .await;
    // Without the CA, the guard's handshake fails: `status` says so as it
    // did when rumqttc made the handshake itself.
    rig.spawn_agent().unwrap();
    let s = rig
        .wait_status("the TLS failure", Duration::from_secs(30), |s| {
            s["daemon"]["pos"]["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("the TLS handshake with the POS broker"))
        })
        .await
        .unwrap();
    let problem = s["daemon"]["pos"]["problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!("127.0.0.1:{} failed (TLS: ", mq.tls_port()))
            && problem.contains("UnknownIssuer"),
        "{problem}"
    );
    rig.kill_agent().unwrap();
    rig.opts.agent_env = vec![("SSL_CERT_FILE".into(), ca_file.display().to_string())];
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    rig.pos
        .publish_event(&opened("e-1", 1, "O-1"))
        .await
        .unwrap();
    let s = rig
        .wait_status(
            "the event after the floor plan",
            Duration::from_secs(30),
            |s| {
                s["counts"]["received"] == json!(1)
                    && s["counts"]["rejected"] == json!(1)
                    && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
            },
        )
        .await
        .unwrap();
    assert_eq!(s["daemon"]["pos"]["mqtt_connected"], json!(true), "{s}");
    assert!(
        plain_log(&rig).contains(&format!("127.0.0.1:{}", mq.tls_port())),
        "connected to the TLS port"
    );
    let rows = rejected_rows(&rig.store_path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1 as usize, 3 * MIB);
    assert!(
        rows[0]
            .4
            .starts_with("payload is 3145728 bytes, more than the 1048576 accepted"),
        "{}",
        rows[0].4
    );
    assert_eq!(sessions(&rig), 1);
}

/// Cashpad §2a: an event's `type` is at most 64 characters. 500 events,
/// each with a new 200 KiB type (100 MB in all), then normal events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_200_kib_types_leave_memory_and_the_store_bounded() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let _mq = broker(dir.path(), &mut opts);
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let pid = rig.agent_pid().unwrap();
    rig.pos
        .publish_event(&opened("e-0", 1, "O-0"))
        .await
        .unwrap();
    rig.wait_status("first event", Duration::from_secs(30), |s| {
        s["counts"]["received"] == json!(1)
    })
    .await
    .unwrap();
    let (rss_before, hwm_before) = memory_kib(pid);
    let store_before = store_bytes(&rig.store_path());
    const N: usize = 500;
    let t0 = Instant::now();
    for i in 0..N {
        let t = format!("{i:06}{}", "t".repeat(200 * 1024 - 6));
        let v = json!({"event_id": format!("t-{i}"), "seq": 10 + i, "type": t,
                       "occurred_at": AT, "data": {}});
        rig.pos.publish_raw(v.to_string()).await.unwrap();
    }
    rig.pos
        .publish_event(&opened("e-after", 1000, "O-1"))
        .await
        .unwrap();
    let s = rig
        .wait_status("every message handled", Duration::from_secs(60), |s| {
            s["counts"]["rejected"] == json!(N)
                && s["counts"]["received"] == json!(2)
                && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
        })
        .await
        .unwrap();
    let took = t0.elapsed();
    let (rss_after, hwm_after) = memory_kib(pid);
    let store_after = store_bytes(&rig.store_path());
    figures(&format!(
        "{N} × 200 KiB types in {took:?}: agent VmRSS {rss_before} → {rss_after} KiB, VmHWM \
         {hwm_before} → {hwm_after} KiB; store {store_before} → {store_after} bytes"
    ));
    assert_eq!(s["daemon"]["pos"]["mqtt_connected"], json!(true), "{s}");
    let rows = rejected_rows(&rig.store_path());
    assert_eq!(rows.len(), N);
    for (kept, len, id, _, reason) in &rows {
        assert!(*kept <= 4096 && *len > 200 * 1024, "{kept} {len}");
        assert!(id.as_deref().is_some_and(|i| i.starts_with("t-")));
        assert_eq!(reason, "type: 204800 characters, more than the 64 accepted");
    }
    // 100 MB went by: the store keeps 4 KiB of each, memory does not
    // follow the names.
    assert!(
        store_after < store_before + 8 * MIB as u64,
        "the store grew by {} bytes",
        store_after - store_before
    );
    assert!(
        rss_after < rss_before + 40 * 1024,
        "the agent's memory grew by {} KiB",
        rss_after - rss_before
    );
    // One WARN line per message, none of them carrying the 200 KiB name.
    let log = rig.log();
    assert!(log.len() < 2 * MIB, "the log is {} bytes", log.len());
}

/// Publishes `n` payloads of `size` bytes QoS 0 on `topic` as the POS
/// account; returns once the client has written them all.
async fn publish_qos0(port: u16, topic: &str, n: usize, size: usize) {
    let mut opts = MqttOptions::new(
        format!("burst-{}", zenchef_sim::util::random_hex(4)),
        "127.0.0.1",
        port,
    );
    opts.set_credentials(POS_USER, POS_PASSWORD)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(4 * MIB, 4 * MIB);
    let (client, mut ev) = AsyncClient::new(opts, 8);
    let topic = topic.to_string();
    let feeder = tokio::spawn(async move {
        for i in 0..n {
            let mut p = format!("burst {i} ").into_bytes();
            p.resize(size, b'x');
            client
                .publish(topic.as_str(), QoS::AtMostOnce, false, p)
                .await
                .unwrap();
        }
        client
    });
    let mut sent = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while sent < n {
            match ev.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => sent += 1,
                Ok(_) => {}
                Err(e) => panic!("publishing the burst: {e}"),
            }
        }
    })
    .await
    .expect("the burst was written");
    let client = feeder.await.unwrap();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !matches!(
            ev.poll().await,
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await;
}

/// While the store cannot commit (its write lock held by another
/// connection), a burst of 1 MiB QoS 0 messages (the broker's in-flight
/// window does not hold those back) waits at the broker's door instead of
/// piling up in the agent: its memory grows by about the intake budget
/// (16 MiB), not by the burst (120 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_the_store_is_stuck_stays_out_of_memory() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(1, 1, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = broker(dir.path(), &mut opts);
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let pid = rig.agent_pid().unwrap();
    rig.pos
        .publish_event(&opened("e-0", 1, "O-0"))
        .await
        .unwrap();
    rig.wait_status("first event", Duration::from_secs(30), |s| {
        s["counts"]["received"] == json!(1)
    })
    .await
    .unwrap();
    let (_, hwm_before) = memory_kib(pid);
    let lock = rusqlite::Connection::open(rig.store_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    const N: usize = 120;
    publish_qos0(mq.port(), &format!("{}/events", rig.pos.root()), N, MIB).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, hwm_stuck) = memory_kib(pid);
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    figures(&format!(
        "{N} × 1 MiB QoS 0 while the store is stuck: agent VmHWM {hwm_before} → {hwm_stuck} KiB"
    ));
    assert!(
        hwm_stuck < hwm_before + 48 * 1024,
        "the agent's peak memory grew by {} KiB",
        hwm_stuck - hwm_before
    );
    // Intake goes on once the store commits again.
    rig.pos
        .publish_event(&opened("e-1", 2, "O-1"))
        .await
        .unwrap();
    let s = rig
        .wait_status("intake again", Duration::from_secs(60), |s| {
            s["counts"]["received"] == json!(2)
                && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
        })
        .await
        .unwrap();
    assert!(s["counts"]["rejected"].as_i64().unwrap() > 0, "{s}");
}

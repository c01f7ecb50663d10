//! The POS broker is the trust boundary (docs/protocol/cashpad-local.md
//! §2a, docs/pos-broker.md): the agent says when it lets in a client
//! without a password, and works as usual behind the documented rules,
//! which keep another account from reading what the agent publishes for
//! the POS and from forging POS events.
//!
//! Real parts: mosquitto as a child process (its password file made by
//! `mosquitto_passwd`; the ACL is the very text of docs/pos-broker.md), the
//! POS and Zenchef simulators, the agent binary (`run`, `status`,
//! `doctor`).

mod common;

use std::time::Duration;

use common::{
    Workload, check_guarantees, heavy, in_ci, publish_all, seed, start_rig, wait_drained,
};
use serde_json::Value;
use zenchef_sim::harness::{AGENT_USER, POS_PASSWORD, POS_USER, RigOptions};
use zenchef_sim::mosquitto::{self, Mosquitto, MosquittoOptions};

/// Skips (outside CI) or fails (in CI) without mosquitto.
fn have_mosquitto() -> bool {
    if mosquitto::available() {
        return true;
    }
    assert!(
        !in_ci(),
        "mosquitto is missing in CI: .ci/run must install it"
    );
    eprintln!("SKIPPED: mosquitto is not installed on this machine (CI installs it)");
    false
}

/// The fenced block that follows the first line containing `after` in
/// docs/pos-broker.md.
fn doc_block(after: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pos-broker.md"))
        .unwrap();
    let start = doc
        .find(after)
        .unwrap_or_else(|| panic!("{after} not in the doc"));
    let rest = &doc[start..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// The `pos anonymous` check of `doctor --json`.
fn doctor_anonymous(rig: &zenchef_sim::harness::Rig) -> Value {
    let (_, out, err) = rig.cli(&["doctor", "--json"]).unwrap();
    let d: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pos anonymous")
        .unwrap_or_else(|| panic!("no pos anonymous check in {out}"))
        .clone()
}

fn problems(s: &Value) -> Vec<String> {
    s["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A device of the restaurant network with a password of its own (the
/// broker knows it, the ACL grants it nothing).
const INTRUDER: (&str, &str) = ("back-office-pc", "bo-secret");

fn users(opts: &RigOptions) -> Vec<(String, String)> {
    vec![
        (AGENT_USER.into(), opts.cashpad_token.clone()),
        (POS_USER.into(), POS_PASSWORD.into()),
        (INTRUDER.0.into(), INTRUDER.1.into()),
    ]
}

/// Logs in as [`INTRUDER`], subscribes to everything the agent publishes
/// for the POS, publishes a forged `payment.recorded` on the POS's events
/// topic, and answers the topics of the messages it received in 3 s.
async fn intruder_reads_and_forges(port: u16, iid: &str) -> Vec<String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("intruder", "127.0.0.1", port);
    opts.set_credentials(INTRUDER.0, INTRUDER.1)
        .set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client
        .subscribe(format!("cashpad/{iid}/zenchef/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    // Two seconds to receive what the broker would deliver (the agent's
    // retained status first), then the forged event.
    let mut seen = Vec::new();
    let mut listen = async |seen: &mut Vec<String>, for_s: u64| {
        let _ = tokio::time::timeout(Duration::from_secs(for_s), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => seen.push(p.topic.clone()),
                    Ok(_) => {}
                    // mosquitto answers a denied QoS 1 PUBLISH with an MQTT 5
                    // reason code that a 3.1.1 client cannot read: the end.
                    Err(_) => return,
                }
            }
        })
        .await;
    };
    listen(&mut seen, 2).await;
    let forged = serde_json::json!({
        "event_id": "forged-payment-1", "seq": 999_999, "type": "payment.recorded",
        "occurred_at": "2026-11-29T20:00:00+01:00",
        "data": {"order_id": "O-00001", "amount_cents": 5000, "tip_cents": 0,
                 "method": "zenchef_pay", "reference": "pay_forged"}
    });
    client
        .publish(
            format!("cashpad/{iid}/events"),
            QoS::AtLeastOnce,
            false,
            forged.to_string(),
        )
        .await
        .unwrap();
    listen(&mut seen, 1).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lets_anyone_in_is_reported_by_status_and_doctor() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 4, 3, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &MosquittoOptions {
            users: users(&opts),
            allow_anonymous: true,
            ..MosquittoOptions::default()
        },
    )
    .unwrap();
    opts.broker_port = Some(mq.port());
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let s = rig
        .wait_status("the anonymous probe", Duration::from_secs(30), |s| {
            !s["pos"]["anonymous_clients"].is_null()
        })
        .await
        .unwrap();
    assert_eq!(s["pos"]["anonymous_clients"], "accepted", "{s}");
    assert!(
        problems(&s).contains(&"pos_broker_anonymous".to_string()),
        "{s}"
    );
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    assert!(
        text.contains("the POS broker lets in clients WITHOUT A PASSWORD")
            && text.contains("broker ACCEPTS CLIENTS WITHOUT A PASSWORD"),
        "{text}"
    );
    let c = doctor_anonymous(&rig);
    assert_eq!(c["outcome"], "fail", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("ACCEPTS clients without a password"),
        "{c}"
    );
    assert!(
        rig.log()
            .contains("the broker must refuse anonymous clients"),
        "{}",
        rig.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_documented_rules_the_agent_works_and_nothing_is_reported() {
    if !have_mosquitto() {
        return;
    }
    let conf = doc_block("/etc/mosquitto/conf.d/cashpad.conf");
    for line in [
        "allow_anonymous false",
        "password_file /etc/mosquitto/passwd",
        "acl_file /etc/mosquitto/acl",
        "message_size_limit 1048576",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} not in\n{conf}");
    }
    let acl = doc_block("`/etc/mosquitto/acl`");
    assert!(acl.contains("user zenchef-edge"), "{acl}");
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 6, 4, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &MosquittoOptions {
            users: users(&opts),
            acl: Some(acl),
            extra_conf: "message_size_limit 1048576\n".into(),
            log_debug: true,
            ..MosquittoOptions::default()
        },
    )
    .unwrap();
    opts.broker_port = Some(mq.port());
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    // The agent works as usual with its own username: events in,
    // reservations and settle commands out (the POS reads them).
    publish_all(&rig, &w.events).await;
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    let s = rig
        .wait_status("the anonymous probe", Duration::from_secs(30), |s| {
            !s["pos"]["anonymous_clients"].is_null()
        })
        .await
        .unwrap();
    assert_eq!(s["pos"]["anonymous_clients"], "refused", "{s}");
    assert!(
        !problems(&s).contains(&"pos_broker_anonymous".to_string()),
        "{s}"
    );
    let c = doctor_anonymous(&rig);
    assert_eq!(c["outcome"], "ok", "{c}");
    // Another account reads none of what the agent publishes for the POS
    // (its retained status is there) and its forged payment never reaches
    // the agent.
    let received = rig.count("received");
    let seen = intruder_reads_and_forges(mq.port(), &rig.opts.iid).await;
    assert_eq!(
        seen,
        Vec::<String>::new(),
        "the ACL let another account read"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rig.count("received"), received, "a forged event was stored");
    // The ACL denied the intruder, and nothing the agent or the POS does.
    let log = std::fs::read_to_string(dir.path().join("mosquitto/mosquitto.log")).unwrap();
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("Denied")).collect();
    assert!(
        !denied.is_empty() && denied.iter().all(|l| l.contains("intruder")),
        "{log}"
    );
}

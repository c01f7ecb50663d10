//! The fleet harness against a real mosquitto: TLS with client
//! certificates from the test CA, the CN as the username, the ACL letting
//! each box write only its own topic, a certificate of another CA refused,
//! a broker the client does not trust, retained reports and wills, the
//! watcher following a broker restart, and the silent listener.
//!
//! Needs mosquitto (`.ci/run` installs it): skipped outside CI when it is
//! missing, a failure in CI.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use zenchef_sim::certs::TestCa;
use zenchef_sim::fleet::{
    FleetEndpoint, FleetWatcher, Leave, SilentListener, SimBox, publish_box, publish_fleet,
    publish_retained, status_topic, varied_fleet,
};
use zenchef_sim::mosquitto::{self, Mosquitto, MosquittoOptions, TlsListener};

const PREFIX: &str = "fleet-test";

fn mosquitto_present() -> bool {
    if mosquitto::available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("mosquitto is missing in CI: .ci/run must install it");
    }
    eprintln!("SKIPPED: mosquitto is not installed on this machine (CI installs it)");
    false
}

struct Broker {
    ca: TestCa,
    mq: Mosquitto,
}

/// A mosquitto with one TLS listener (client certificates of `ca`, CN as
/// username) and one plain listener (users `pw-box` and `support-pw`), the
/// fleet ACL, no persistence.
fn broker(dir: &Path) -> Broker {
    let ca = TestCa::new("fleet test CA").unwrap();
    let ca_file = ca.write_cert(&dir.join("ca.pem")).unwrap();
    let server = ca.server_files(dir, "server", "fleet broker").unwrap();
    let acl = format!(
        "pattern write {PREFIX}/%u/status\n\
         user support\ntopic read {PREFIX}/+/status\n\
         user support-pw\ntopic read {PREFIX}/+/status\n"
    );
    let mq = Mosquitto::start_with(
        &dir.join("mosquitto"),
        &MosquittoOptions {
            users: vec![
                ("pw-box".into(), "pw-box-secret".into()),
                ("support-pw".into(), "support-secret".into()),
            ],
            plain_listeners: 1,
            tls_listeners: vec![TlsListener::mutual(&ca_file, &server.cert, &server.key)],
            acl: Some(acl),
            persistence: false,
            log_debug: true,
            ..MosquittoOptions::default()
        },
    )
    .unwrap();
    Broker { ca, mq }
}

impl Broker {
    fn tls_as(&self, cn: &str) -> FleetEndpoint {
        let cert = self.ca.client(cn).unwrap();
        FleetEndpoint::tls(self.mq.tls_port(), &self.ca.cert_pem(), Some(&cert))
    }

    async fn support(&self) -> FleetWatcher {
        FleetWatcher::connect(
            &self.tls_as("support"),
            "support-watch",
            &format!("{PREFIX}/+/status"),
        )
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_identity_and_the_acl_let_a_box_write_only_its_own_topic() {
    if !mosquitto_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let watch = b.support().await;
    assert_eq!(watch.count(), 0, "a fresh broker holds nothing");

    // Box "a" writes box "b"'s topic, then its own: the first is dropped.
    // (mosquitto answers the denied PUBLISH and closes the connection: the
    // publisher may see either.)
    let a = b.tls_as("a");
    let forged = SimBox::healthy("b", "1", chrono::Utc::now());
    let _ = publish_retained(
        &a,
        "zenchef-edge-a",
        &forged.topic(PREFIX),
        forged.message().to_string().as_bytes(),
        None,
        Leave::Disconnect,
    )
    .await;
    let own = SimBox::healthy("a", "1", chrono::Utc::now());
    publish_box(&a, PREFIX, &own).await.unwrap();
    let s = watch
        .wait_until("a's report", Duration::from_secs(10), |s| {
            s.latest.contains_key(&own.topic(PREFIX))
        })
        .await
        .unwrap();
    assert_eq!(s.latest_json(&own.topic(PREFIX)), Some(&own.message()));
    assert!(
        s.on(&forged.topic(PREFIX)).is_empty(),
        "the ACL let a write b: {:?}",
        s.all
    );
    // It did reach the broker, which denied it.
    assert!(
        b.mq.log()
            .contains("Denied PUBLISH from zenchef-edge-a (d0, q1, r1, m1, 'fleet-test/b/status'"),
        "{}",
        b.mq.log()
    );
    // Nor is it retained for a later subscriber.
    let late = FleetWatcher::connect(&b.tls_as("support"), "late", &format!("{PREFIX}/+/status"))
        .await
        .unwrap();
    let s = late
        .wait_until("the retained report of a", Duration::from_secs(10), |s| {
            s.latest.contains_key(&own.topic(PREFIX))
        })
        .await
        .unwrap();
    assert!(s.latest[&own.topic(PREFIX)].retained);
    assert_eq!(s.latest.len(), 1, "{:?}", s.latest.keys());

    // A box that dies leaves its will, retained.
    let mut dead = SimBox::healthy("a", "1", chrono::Utc::now());
    dead.dead_box = true;
    publish_box(&a, PREFIX, &dead).await.unwrap();
    let will = watch
        .wait_message(&own.topic(PREFIX), Duration::from_secs(10), |m| {
            m["online"] == json!(false)
        })
        .await
        .unwrap();
    assert_eq!(will, dead.will());
    assert_eq!(
        will.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        [
            "device_id",
            "online",
            "restaurant_id",
            "schema",
            "session_started_at",
            "version"
        ]
    );

    // The plain listener: the username is the identity, the same ACL.
    let pw = FleetEndpoint::plain(b.mq.port(), "pw-box", "pw-box-secret");
    let pw_box = SimBox::healthy("pw-box", "2", chrono::Utc::now());
    publish_box(&pw, PREFIX, &pw_box).await.unwrap();
    watch
        .wait_message(&pw_box.topic(PREFIX), Duration::from_secs(10), |m| {
            *m == pw_box.message()
        })
        .await
        .unwrap();
    let wrong = FleetEndpoint::plain(b.mq.port(), "pw-box", "wrong");
    let err = publish_box(&wrong, PREFIX, &pw_box).await.unwrap_err();
    assert!(format!("{err:#}").contains("refused"), "{err:#}");
    // A support client on the plain listener reads everything.
    let pw_watch = FleetWatcher::connect(
        &FleetEndpoint::plain(b.mq.port(), "support-pw", "support-secret"),
        "support-pw-watch",
        &format!("{PREFIX}/+/status"),
    )
    .await
    .unwrap();
    pw_watch
        .wait_until("both retained reports", Duration::from_secs(10), |s| {
            s.latest.len() == 2
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_are_refused_both_ways() {
    if !mosquitto_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let other = TestCa::new("another CA").unwrap();
    let watch = b.support().await;
    let bx = SimBox::healthy("x", "1", chrono::Utc::now());

    // Our certificate from another CA: the broker refuses it.
    let ep = FleetEndpoint::tls(
        b.mq.tls_port(),
        &b.ca.cert_pem(),
        Some(&other.client("x").unwrap()),
    );
    assert!(publish_box(&ep, PREFIX, &bx).await.is_err());
    // No certificate at all: refused too.
    let ep = FleetEndpoint::tls(b.mq.tls_port(), &b.ca.cert_pem(), None);
    assert!(publish_box(&ep, PREFIX, &bx).await.is_err());
    // The broker's certificate not trusted by the client.
    let ep = FleetEndpoint::tls(
        b.mq.tls_port(),
        &other.cert_pem(),
        Some(&b.ca.client("x").unwrap()),
    );
    let err = publish_box(&ep, PREFIX, &bx).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid peer certificate: UnknownIssuer"),
        "{err:#}"
    );
    // The right one is accepted (the refusals above were about certificates).
    publish_box(&b.tls_as("x"), PREFIX, &bx).await.unwrap();
    let s = watch
        .wait_until("x's report", Duration::from_secs(10), |s| {
            s.latest.contains_key(&bx.topic(PREFIX))
        })
        .await
        .unwrap();
    assert_eq!(s.all.len(), 1, "nothing of the refused clients arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_varied_fleet_is_retained_and_a_restart_without_persistence_forgets_it() {
    if !mosquitto_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut b = broker(dir.path());
    let boxes = varied_fleet(60, 42, chrono::Utc::now());
    assert!(boxes.iter().any(|b| b.dead_box));
    assert!(boxes.iter().any(|b| !b.problems.is_empty()));
    assert!(boxes.iter().any(|b| b.queue_total() > 0));
    let ca_pem = b.ca.cert_pem();
    let port = b.mq.tls_port();
    let ca = &b.ca;
    publish_fleet(&boxes, PREFIX, 8, |bx| {
        FleetEndpoint::tls(port, &ca_pem, Some(&ca.client(&bx.device_id).unwrap()))
    })
    .await
    .unwrap();
    let watch = b.support().await;
    let s = watch
        .wait_until("60 retained messages", Duration::from_secs(10), |s| {
            s.latest.len() == 60
        })
        .await
        .unwrap();
    for bx in &boxes {
        let seen = &s.latest[&bx.topic(PREFIX)];
        assert!(seen.retained);
        assert_eq!(seen.json.as_ref(), Some(&bx.retained()), "{}", bx.device_id);
    }

    // Restart: nothing retained any more, and the watcher subscribes again.
    b.mq.stop().unwrap();
    b.mq.restart().unwrap();
    watch
        .wait_until("subscribed again", Duration::from_secs(10), |s| {
            s.connections == 2 && s.subscribed
        })
        .await
        .unwrap();
    let fresh = SimBox::healthy(&boxes[0].device_id, "1", chrono::Utc::now());
    publish_box(&b.tls_as(&fresh.device_id), PREFIX, &fresh)
        .await
        .unwrap();
    let s = watch
        .wait_until("the fresh report", Duration::from_secs(10), |s| {
            s.all.iter().any(|m| m.connection == 2)
        })
        .await
        .unwrap();
    let after: Vec<_> = s.all.iter().filter(|m| m.connection == 2).collect();
    assert_eq!(after.len(), 1, "only the fresh report after the restart");
    assert!(!after[0].retained, "live, not a retained copy");
    assert_eq!(after[0].topic, status_topic(PREFIX, &fresh.device_id));
}

#[tokio::test]
async fn the_silent_listener_accepts_and_never_answers() {
    use tokio::io::AsyncReadExt;
    let l = SilentListener::bind(0).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", l.port()))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    assert!(r.is_err(), "it answered: {r:?}");
    assert_eq!(l.accepted(), 1);
    let port = l.port();
    l.close();
    // Closed: the held connection ends, the port is free again.
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let again = SilentListener::bind(port).await.unwrap();
    assert_eq!(again.port(), port);
}

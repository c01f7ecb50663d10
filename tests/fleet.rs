//! Fleet reporting (issue 16) with the real agent binary, a real mosquitto
//! as the group's broker and the simulators:
//! - over TLS with client certificates of a test CA and the ACL of a fleet
//!   (a box writes only its own topic, the certificate's CN is its
//!   identity), the box's retained report says what `status` says;
//! - a certificate the broker refuses, a broker the box does not trust and
//!   a refused token show in `status` (`fleet.state`, the `Fleet` line) and
//!   `doctor`, while the restaurant side works as without a fleet;
//! - a broker restart: the box reconnects and publishes again, its will
//!   says when it dies;
//! - a broker gone, then hanging, for ten minutes of the box's clock
//!   (libfaketime, ten times faster): intake and delivery as without a
//!   fleet, memory flat, and one report, the latest, when it returns;
//! - no personal data, no free text, no token in any report of a real
//!   service;
//! - `fleet-view` over 200 simulated boxes and 2 real ones: every row, the
//!   trouble first, the summary, `--json`.
//!
//! The simulated boxes and the subscriber (`zenchef_sim::fleet`) are
//! written from the message's contract, not from the agent's types.
//! Needs mosquitto (and libfaketime for the outage): `.ci/run` installs
//! them; outside CI a missing tool skips the test with a message.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{Value, json};
use zenchef_sim::certs::{CertFiles, TestCa};
use zenchef_sim::fleet::{
    FleetEndpoint, FleetWatcher, Leave, PROBLEMS, SilentListener, SimBox, publish_fleet,
    publish_retained, status_topic, varied_fleet,
};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::mosquitto::{self, Mosquitto, MosquittoOptions, TlsListener};
use zenchef_sim::zenchef::Fault;

/// The agent's version, from `zenchef-edge --version` (`zenchef-edge 0.1.0 (…)`).
fn agent_version() -> String {
    let out = Command::new(AGENT).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("version in {text:?}"))
        .to_string()
}

/// What every fleet test with a broker and real boxes starts with: the
/// heavy lock (real processes, timings measured), its start time, and a
/// fresh folder (the broker in `fleet/`, the boxes in `rig*/`).
struct FleetTest {
    _heavy: tokio::sync::MutexGuard<'static, ()>,
    t0: Instant,
    dir: tempfile::TempDir,
}

impl FleetTest {
    /// `None` when mosquitto is missing (the test is skipped outside CI;
    /// in CI it fails).
    async fn begin() -> Option<FleetTest> {
        if !require("mosquitto", mosquitto::available()) {
            return None;
        }
        Some(FleetTest {
            _heavy: heavy().await,
            t0: Instant::now(),
            dir: tempfile::tempdir().unwrap(),
        })
    }
}

/// The group's broker of one test: a test CA, a TLS listener requiring a
/// client certificate of that CA (its CN is the username), a plain
/// listener with password users, the fleet ACL (each identity writes
/// `PREFIX/<itself>/status`; `support` reads `PREFIX/+/status`) plus
/// `extra_acl`, no persistence (a restarted broker holds nothing).
struct FleetBroker {
    dir: PathBuf,
    prefix: String,
    ca: TestCa,
    ca_file: PathBuf,
    mq: Mosquitto,
}

impl FleetBroker {
    /// Starts the broker in `<test_dir>/fleet`.
    fn start(
        test_dir: &Path,
        prefix: &str,
        users: &[(String, String)],
        extra_acl: &str,
    ) -> FleetBroker {
        let dir = &test_dir.join("fleet");
        let ca = TestCa::new("fleet test CA").unwrap();
        let ca_file = ca.write_cert(&dir.join("certs/fleet-ca.pem")).unwrap();
        let server = ca
            .server_files(&dir.join("certs"), "broker", "fleet broker")
            .unwrap();
        let acl = format!(
            "pattern write {prefix}/%u/status\n\
             user support\n\
             topic read {prefix}/+/status\n\
             {extra_acl}\n"
        );
        let mut users = users.to_vec();
        users.push(("support-pw".into(), "support-pw-secret".into()));
        let mq = Mosquitto::start_with(
            &dir.join("mosquitto"),
            &MosquittoOptions {
                users,
                plain_listeners: 1,
                tls_listeners: vec![TlsListener::mutual(&ca_file, &server.cert, &server.key)],
                acl: Some(format!(
                    "{acl}user support-pw\ntopic read {prefix}/+/status\n"
                )),
                persistence: false,
                log_debug: true,
                ..MosquittoOptions::default()
            },
        )
        .unwrap();
        FleetBroker {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            ca,
            ca_file,
            mq,
        }
    }

    /// `mqtts://127.0.0.1:<TLS port>`.
    fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.mq.tls_port())
    }

    /// `mqtt://127.0.0.1:<plain port>`.
    fn plain_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mq.port())
    }

    /// A client certificate of the fleet CA with CN `cn`, as files.
    fn cert(&self, cn: &str) -> CertFiles {
        self.ca
            .client_files(&self.dir.join("certs"), cn, cn)
            .unwrap()
    }

    fn topic(&self, device_id: &str) -> String {
        status_topic(&self.prefix, device_id)
    }

    /// The `[fleet]` table of a box with a certificate, on the TLS
    /// listener.
    fn fleet_toml(&self, device_id: &str, ca_file: &Path, cert: &CertFiles) -> String {
        fleet_table(
            &self.url(),
            &[
                ("ca_file", &ca_file.display().to_string()),
                ("cert_file", &cert.cert.display().to_string()),
                ("key_file", &cert.key.display().to_string()),
                ("topic_prefix", &self.prefix),
                ("device_id", device_id),
            ],
        )
    }

    /// A support client on the plain listener (user `support-pw`)
    /// subscribed to `PREFIX/+/status`.
    async fn support_plain(&self, client_id: &str) -> FleetWatcher {
        FleetWatcher::connect(
            &FleetEndpoint::plain(self.mq.port(), "support-pw", "support-pw-secret"),
            client_id,
            &format!("{}/+/status", self.prefix),
        )
        .await
        .unwrap()
    }

    /// A support client (certificate CN `support`) subscribed to
    /// `PREFIX/+/status`.
    async fn support(&self, client_id: &str) -> FleetWatcher {
        let cert = self.ca.client("support").unwrap();
        FleetWatcher::connect(
            &FleetEndpoint::tls(self.mq.tls_port(), &self.ca.cert_pem(), Some(&cert)),
            client_id,
            &format!("{}/+/status", self.prefix),
        )
        .await
        .unwrap()
    }
}

/// A `[fleet]` table (with its leading blank line): `broker`, then `keys`
/// in the order given, each a TOML string. Numbers (`interval_s`) are
/// appended by the caller.
fn fleet_table(broker: &str, keys: &[(&str, &str)]) -> String {
    let mut table = format!("\n[fleet]\nbroker = \"{broker}\"\n");
    for (key, value) in keys {
        table.push_str(&format!("{key} = \"{value}\"\n"));
    }
    table
}

/// Rig options for a box reporting to a fleet (`[fleet]` needs
/// `config_version = 3`).
fn fleet_opts(w: &Workload, fleet: String) -> RigOptions {
    let mut opts = RigOptions::new(w.zenchef_config());
    opts.config_head = "config_version = 3\n".into();
    opts.extra_config = fleet;
    opts
}

fn parse_time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .with_timezone(&Utc)
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

/// The keys of the schema-1 report.
const REPORT_KEYS: [&str; 18] = [
    "device_id",
    "interval_s",
    "online",
    "orders_needing_attention",
    "pay",
    "payments_needing_person",
    "pos",
    "problems",
    "queue",
    "reported_at",
    "restaurant_id",
    "schema",
    "started_at",
    "store",
    "update",
    "uptime_s",
    "version",
    "zenchef",
];

/// Every key of the schema-1 report is there, with the types of the
/// contract (panics naming the key); a key the contract does not list is
/// a mismatch.
fn check_schema(m: &Value, defects: &mut Defects) {
    let have = keys(m);
    for k in REPORT_KEYS {
        assert!(have.contains(&k), "no {k} in {m}");
    }
    let extra: Vec<&&str> = have.iter().filter(|k| !REPORT_KEYS.contains(k)).collect();
    defects.check(
        extra.is_empty(),
        format!("keys that schema 1 does not have: {extra:?}"),
    );
    assert_eq!(m["schema"], json!(1));
    assert_eq!(keys(&m["pos"]), ["app_version", "installation_id", "state"]);
    assert_eq!(
        keys(&m["zenchef"]),
        ["last_error_at", "last_success", "state"]
    );
    assert_eq!(keys(&m["pay"]), ["last_error_at", "last_success", "state"]);
    assert_eq!(
        keys(&m["queue"]),
        [
            "dead",
            "inflight",
            "oldest_queued_age_s",
            "pay_dead",
            "pay_queued",
            "queued",
            "rejected"
        ]
    );
    assert_eq!(keys(&m["store"]), ["file_bytes", "state", "wal_bytes"]);
    assert_eq!(
        keys(&m["update"]),
        [
            "available",
            "current",
            "last_result",
            "pending",
            "rolled_back"
        ]
    );
    assert!(
        ["connected", "found", "not_found", "unknown"]
            .contains(&m["pos"]["state"].as_str().unwrap()),
        "{m}"
    );
    assert!(
        ["ok", "outage", "credentials_refused", "unknown"]
            .contains(&m["zenchef"]["state"].as_str().unwrap()),
        "{m}"
    );
    for k in [
        "queued",
        "inflight",
        "dead",
        "pay_queued",
        "pay_dead",
        "rejected",
    ] {
        assert!(m["queue"][k].is_u64(), "queue.{k}: {m}");
    }
    for p in m["problems"].as_array().unwrap() {
        assert!(PROBLEMS.contains(&p.as_str().unwrap()), "problem {p}");
    }
    assert!(
        m["interval_s"]
            .as_u64()
            .is_some_and(|i| (30..=86_400).contains(&i)),
        "interval_s: {m}"
    );
    let reported = parse_time(&m["reported_at"]);
    let started = parse_time(&m["started_at"]);
    let uptime = m["uptime_s"].as_i64().unwrap();
    assert!(
        (uptime - (reported - started).num_seconds()).abs() <= 1,
        "uptime_s {uptime} against started_at {started} and reported_at {reported}"
    );
}

/// The agent's last will, as the contract gives it.
fn check_will(m: &Value, device_id: &str, restaurant_id: &str, version: &str) {
    assert_eq!(
        keys(m),
        [
            "device_id",
            "online",
            "restaurant_id",
            "schema",
            "session_started_at",
            "version"
        ],
        "{m}"
    );
    assert_eq!(m["schema"], json!(1));
    assert_eq!(m["online"], json!(false));
    assert_eq!(m["device_id"], json!(device_id));
    assert_eq!(m["restaurant_id"], json!(restaurant_id));
    assert_eq!(m["version"], json!(version));
    parse_time(&m["session_started_at"]);
}

/// Mismatches a test goes on after, all told at its end (so that one run
/// shows every one).
#[derive(Default)]
struct Defects(Vec<String>);

impl Defects {
    fn check(&mut self, ok: bool, what: String) {
        if !ok && !self.0.contains(&what) {
            eprintln!("MISMATCH {what}");
            self.0.push(what);
        }
    }

    fn assert_none(&self) {
        assert!(
            self.0.is_empty(),
            "{} mismatch(es):\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// The `Fleet` line of the text `status` (exit 0) and the lines that
/// continue it (an empty label), as one line with single spaces; panics
/// when there is none.
fn fleet_block(rig: &Rig) -> String {
    let (code, text, _) = rig.cli(&["status"]).unwrap();
    assert_eq!(code, 0, "{text}");
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Fleet"));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no Fleet line:\n{text}"));
    let mut block = first.to_string();
    for l in lines.take_while(|l| l.starts_with(' ') && !l.trim().is_empty()) {
        block.push(' ');
        block.push_str(l);
    }
    block.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Scenario a: a box over TLS with its certificate; the ACL keeps every
/// box to its own topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_reports_its_state_over_tls_and_no_box_writes_another_ones_topic() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let fb = FleetBroker::start(dir.path(), "zenchef-edge", &[], "");
    let watch = fb.support("support-a").await;
    let device = format!("box-a-{}", zenchef_sim::util::random_hex(8));
    let cert = fb.cert(&device);
    // No topic_prefix: the default is `zenchef-edge`.
    let fleet = fleet_table(
        &fb.url(),
        &[
            ("ca_file", &fb.ca_file.display().to_string()),
            ("cert_file", &cert.cert.display().to_string()),
            ("key_file", &cert.key.display().to_string()),
            ("device_id", &device),
        ],
    );
    let w = Workload::generate(seed(), 3, 4, 3);
    let rig = start_rig(fleet_opts(&w, fleet), &dir.path().join("rig")).await;
    let topic = fb.topic(&device);
    let mut defects = Defects::default();
    let version = agent_version();

    // The first report: online, the box's identity and links.
    let m = watch
        .wait_message(&topic, Duration::from_secs(30), |m| {
            m["online"] == json!(true)
                && m["pos"]["state"] == json!("connected")
                && m["zenchef"]["state"] == json!("ok")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    check_schema(&m, &mut defects);
    assert_eq!(m["device_id"], json!(device));
    assert_eq!(m["restaurant_id"], json!(w.zenchef_config().restaurant_id));
    assert_eq!(m["version"], json!(version));
    assert_eq!(m["update"]["current"], json!(version));
    assert_eq!(m["pos"]["installation_id"], json!(rig.opts.iid));
    assert_eq!(m["pos"]["app_version"], json!(rig.opts.app_version));
    assert_eq!(m["pay"]["state"], json!("disabled"));
    assert_eq!(m["store"]["state"], json!("ok"));
    assert!(m["store"]["file_bytes"].as_u64().unwrap() > 0, "{m}");
    let reported = parse_time(&m["reported_at"]);
    assert!(
        (Utc::now() - reported).num_seconds().abs() < 60,
        "reported_at {reported}"
    );
    let s = rig.status().unwrap();
    assert_eq!(m["started_at"], s["daemon"]["started_at"], "{s}");

    // Zenchef down and a few events: the queue and the outage are reported.
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    publish_all(&rig, &w.events).await;
    let n = w.events.len() as u64;
    let m = watch
        .wait_message(&topic, Duration::from_secs(60), |m| {
            m["queue"]["queued"] == json!(n) && m["zenchef"]["state"] == json!("outage")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    check_schema(&m, &mut defects);
    assert!(
        m["problems"]
            .as_array()
            .unwrap()
            .contains(&json!("zenchef_outage")),
        "{m}"
    );
    assert!(m["queue"]["oldest_queued_age_s"].is_u64(), "{m}");
    assert!(m["zenchef"]["last_error_at"].is_string(), "{m}");
    assert_eq!(m["queue"]["dead"], json!(0));
    // The same figures as `status` (inflight: queued rows under way).
    let s = rig.status().unwrap();
    assert_eq!(s["counts"]["queued"], json!(n), "{s}");
    assert!(m["queue"]["inflight"].as_u64().unwrap() <= n, "{m}");

    // Zenchef back: delivered, and the report follows.
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    let m = watch
        .wait_message(&topic, Duration::from_secs(60), |m| {
            m["queue"]["queued"] == json!(0)
                && m["queue"]["inflight"] == json!(0)
                && m["zenchef"]["state"] == json!("ok")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    check_schema(&m, &mut defects);
    assert_eq!(m["problems"], json!([]), "{m}");
    assert_eq!(m["queue"]["oldest_queued_age_s"], Value::Null, "{m}");
    assert_eq!(m["queue"]["rejected"], json!(0));
    assert!(m["zenchef"]["last_success"].is_string(), "{m}");

    // Every report is QoS 1 and retained: a late subscriber gets the last.
    let seen = watch.messages(&topic);
    assert!(seen.iter().all(|s| s.qos == 1), "QoS of the reports");
    let late = fb.support("support-a-late").await;
    let s = late
        .wait_until("the retained report", Duration::from_secs(10), |s| {
            s.latest.contains_key(&topic)
        })
        .await
        .unwrap();
    assert!(s.latest[&topic].retained);
    assert_eq!(
        s.latest_json(&topic),
        watch.latest(&topic).as_ref(),
        "the retained report is the last one published"
    );

    // The session as the contract gives it: client id, MQTT 3.1.1 (p2),
    // clean session, keep-alive 30 s, the certificate's CN as username; no
    // subscription.
    let log = fb.mq.log();
    let client = format!("zenchef-edge-{device}");
    assert!(
        log.contains(&format!("as {client} (p2, c1, k30, u'{device}')")),
        "{log}"
    );
    assert!(
        !log.contains(&format!("Received SUBSCRIBE from {client}")),
        "{log}"
    );

    // `status` says where it reports, and counts the reports (its record
    // is refreshed every 2 s).
    let distinct: BTreeSet<Vec<u8>> = seen.iter().map(|s| s.payload.clone()).collect();
    let s = rig
        .wait_status("the fleet connected", Duration::from_secs(10), |s| {
            s["fleet"]["state"] == json!("connected")
                && s["fleet"]["published"].as_u64() >= Some(distinct.len() as u64)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{} distinct reports seen", distinct.len()));
    let f = &s["fleet"];
    assert_eq!(f["broker"], json!(fb.url()), "{f}");
    assert_eq!(f["topic"], json!(topic), "{f}");
    assert_eq!(f["last_error"], Value::Null, "{f}");
    parse_time(&f["connected_since"]);
    parse_time(&f["last_published_at"]);
    let block = fleet_block(&rig);
    for part in [fb.url().as_str(), topic.as_str(), "last report"] {
        defects.check(
            block.contains(part),
            format!("the Fleet line lacks {part:?}: {block}"),
        );
    }

    // The ACL: box "a" (certificate CN "a") writes box "b"'s topic and the
    // real box's: both dropped by the broker; its own topic is accepted.
    let a_cert = fb.ca.client("a").unwrap();
    let a = FleetEndpoint::tls(fb.mq.tls_port(), &fb.ca.cert_pem(), Some(&a_cert));
    let forged = SimBox::healthy("b", "666", Utc::now());
    for target in [fb.topic("b"), topic.clone()] {
        // mosquitto answers a denied PUBLISH and closes the connection: the
        // publisher sees either.
        let _ = publish_retained(
            &a,
            "zenchef-edge-a",
            &target,
            forged.message().to_string().as_bytes(),
            None,
            Leave::Disconnect,
        )
        .await;
    }
    let own = SimBox::healthy("a", "1", Utc::now());
    zenchef_sim::fleet::publish_box(&a, &fb.prefix, &own)
        .await
        .unwrap();
    let s = watch
        .wait_until("box a's own report", Duration::from_secs(10), |s| {
            s.latest.contains_key(&fb.topic("a"))
        })
        .await
        .unwrap();
    assert!(s.on(&fb.topic("b")).is_empty(), "a wrote b's topic");
    assert_eq!(
        s.latest_json(&topic).unwrap()["device_id"],
        json!(device),
        "a overwrote the real box's report"
    );
    let log = fb.mq.log();
    for target in [fb.topic("b"), topic.clone()] {
        assert!(
            log.contains(&format!(
                "Denied PUBLISH from zenchef-edge-a (d0, q1, r1, m1, '{target}'"
            )),
            "{log}"
        );
    }
    // A report comes from the running daemon: it never says the agent is
    // not running, and always has the daemon's start; the box never looked
    // offline (its will published by a dropped connection).
    for seen in watch.messages(&topic) {
        let m = seen.json.unwrap();
        defects.check(
            m["online"] == json!(true),
            format!("the running box looked offline: {m}"),
        );
        if m["online"] != json!(true) {
            continue;
        }
        defects.check(
            !m["problems"]
                .as_array()
                .unwrap()
                .contains(&json!("agent_not_running")),
            format!("a running box reported agent_not_running: {m}"),
        );
        defects.check(
            m["started_at"].is_string() && m["uptime_s"].is_u64(),
            format!("a report without started_at or uptime_s: {m}"),
        );
    }
    figures(&format!(
        "fleet a: {} reports seen, test {:?}",
        seen.len(),
        t0.elapsed()
    ));
    defects.assert_none();
}

/// `doctor --json`'s `fleet` check.
fn doctor_fleet(rig: &Rig) -> (Value, String) {
    let (_, out, err) = rig.cli(&["doctor", "--json"]).unwrap();
    let d: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let c = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fleet")
        .unwrap_or_else(|| panic!("no fleet check in {out}"))
        .clone();
    (c, out)
}

/// Runs the agent again with the `[fleet]` table `fleet` (when given) and
/// waits until `status` shows a fleet failure: checks `fleet.state` is
/// `state`, the
/// `Fleet` line and `doctor`, that the fleet failure is not a problem of
/// the restaurant and that `secret` (a token) is shown nowhere. Answers
/// the `fleet` object of `status --json`.
async fn expect_fleet_failure(
    rig: &mut Rig,
    fleet: Option<String>,
    state: &str,
    broker: &str,
    secret: Option<&str>,
    defects: &mut Defects,
) -> Value {
    if let Some(fleet) = fleet {
        rig.stop_agent(Duration::from_secs(20)).unwrap();
        rig.opts.extra_config = fleet;
        rig.spawn_agent().unwrap();
        wait_online(rig).await;
    }
    let s = rig
        .wait_status(
            &format!("a fleet failure ({state})"),
            Duration::from_secs(30),
            |s| {
                s["fleet"]["last_error"].is_string()
                    && !["connecting", "unknown"]
                        .contains(&s["fleet"]["state"].as_str().unwrap_or(""))
                    && s["pos"]["state"] == json!("connected")
                    && s["zenchef"]["state"] == json!("ok")
            },
        )
        .await
        .unwrap();
    let f = s["fleet"].clone();
    defects.check(
        f["state"] == json!(state),
        format!("fleet.state should be {state}: {f}"),
    );
    assert_eq!(f["broker"], json!(broker), "{f}");
    parse_time(&f["last_error_at"]);
    assert_eq!(f["connected_since"], Value::Null, "{f}");
    let problems = s["problems"].as_array().unwrap();
    assert!(
        problems.is_empty(),
        "a fleet failure is not the restaurant's problem: {problems:?}"
    );
    let error = f["last_error"].as_str().unwrap();
    let block = fleet_block(rig);
    let wanted = match state {
        "refused" => "refused",
        "tls_error" => "tls",
        other => other,
    };
    defects.check(
        block.to_lowercase().contains(wanted) && block.contains(broker),
        format!("the Fleet line does not say {state} by {broker}: {block}"),
    );
    // The error follows (the text cuts long lines at the terminal's width,
    // `status --json` has it whole).
    let start: String = error.chars().take(20).collect();
    defects.check(
        block.contains(&format!(": {start}")),
        format!("the Fleet line lacks the error {error:?}: {block}"),
    );
    let (c, all) = doctor_fleet(rig);
    assert_eq!(c["outcome"], json!("fail"), "{all}");
    assert!(c["hint"].is_string(), "{c}");
    if let Some(secret) = secret {
        let (_, text, _) = rig.cli(&["status"]).unwrap();
        for (what, out) in [
            ("status --json", s.to_string()),
            ("status", text),
            ("doctor", all),
            ("the log", rig.log()),
        ] {
            assert!(!out.contains(secret), "the fleet token in {what}");
        }
    }
    f
}

/// Scenario b: certificates and a token the other side refuses; the
/// restaurant side works as without a fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_certificates_and_tokens_show_in_status_while_the_restaurant_works() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let device = format!("box-b-{}", zenchef_sim::util::random_hex(8));
    let token = format!("fleet-token-{}", zenchef_sim::util::random_hex(16));
    let fb = FleetBroker::start(
        dir.path(),
        "groups/b",
        &[(device.clone(), token.clone())],
        "",
    );
    let watch = fb.support("support-b").await;
    let other = TestCa::new("another CA").unwrap();
    let other_ca = other
        .write_cert(&dir.path().join("certs/other-ca.pem"))
        .unwrap();
    let wrong_cert = zenchef_sim::certs::write_files(
        &dir.path().join("certs"),
        "wrong",
        other.client(&device).unwrap(),
    )
    .unwrap();
    let right_cert = fb.cert(&device);
    let w = Workload::generate(seed(), 20, 5, 8);
    let mut defects = Defects::default();

    // 1. Our certificate is of another CA: the broker refuses it.
    let mut rig = start_rig(
        fleet_opts(&w, fb.fleet_toml(&device, &fb.ca_file, &wrong_cert)),
        &dir.path().join("rig"),
    )
    .await;
    let (first, rest) = w.events.split_at(w.events.len() / 2);
    publish_all(&rig, first).await;
    let f = expect_fleet_failure(&mut rig, None, "refused", &fb.url(), None, &mut defects).await;
    eprintln!("refused certificate: {f}");

    // 2. The broker's certificate is not of the CA the box trusts.
    let f = expect_fleet_failure(
        &mut rig,
        Some(fb.fleet_toml(&device, &other_ca, &right_cert)),
        "tls_error",
        &fb.url(),
        None,
        &mut defects,
    )
    .await;
    eprintln!("untrusted broker: {f}");
    publish_all(&rig, rest).await;

    // 3. A wrong token on the password listener (mqtt:// on loopback).
    let by_token = |t: &str| {
        fleet_table(
            &fb.plain_url(),
            &[
                ("username", &device),
                ("token", t),
                ("topic_prefix", &fb.prefix),
                ("device_id", &device),
            ],
        )
    };
    let wrong_token = format!("wrong-{token}");
    let f = expect_fleet_failure(
        &mut rig,
        Some(by_token(&wrong_token)),
        "refused",
        &fb.plain_url(),
        Some(&wrong_token),
        &mut defects,
    )
    .await;
    eprintln!("refused token: {f}");

    // Meanwhile the restaurant: every event stored and delivered, as
    // without a fleet; and nothing reached the fleet.
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    assert_eq!(
        watch.count(),
        0,
        "a refused box published: {:?}",
        watch.state().all
    );

    // The right token: connected and reporting (the refusals were about
    // the certificates and the token, not the broker).
    rig.stop_agent(Duration::from_secs(20)).unwrap();
    rig.opts.extra_config = by_token(&token);
    rig.spawn_agent().unwrap();
    let m = watch
        .wait_message(&fb.topic(&device), Duration::from_secs(30), |m| {
            m["online"] == json!(true)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(m["device_id"], json!(device));
    let s = rig
        .wait_status("fleet connected", Duration::from_secs(20), |s| {
            s["fleet"]["state"] == json!("connected")
        })
        .await
        .unwrap();
    assert_eq!(s["fleet"]["broker"], json!(fb.plain_url()));
    let (c, all) = doctor_fleet(&rig);
    assert_eq!(c["outcome"], json!("ok"), "{all}");
    for (what, out) in [
        ("status --json", s.to_string()),
        ("doctor", all),
        ("the log", rig.log()),
        ("a report", m.to_string()),
    ] {
        assert!(!out.contains(&token), "the fleet token in {what}");
    }
    figures(&format!("fleet b: test {:?}", t0.elapsed()));
    defects.assert_none();
}

/// Scenario c: the broker restarts (without persistence: it forgets the
/// retained report); the box reconnects and publishes again. Then the box
/// dies: its will says so. The device id is the box's own (`device-id`
/// beside the store), the login a username and token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_box_publishes_again_and_its_will_tells_its_death() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let token = format!("fleet-token-{}", zenchef_sim::util::random_hex(16));
    let prefix = "groups/c-test";
    let mut fb = FleetBroker::start(
        dir.path(),
        prefix,
        &[("box-c".into(), token.clone())],
        &format!("user box-c\ntopic write {prefix}/+/status\n"),
    );
    let watch = fb.support("support-c").await;
    let fleet = fleet_table(
        &fb.plain_url(),
        &[
            ("username", "box-c"),
            ("token", &token),
            ("topic_prefix", prefix),
        ],
    ) + "interval_s = 30\n";
    let w = Workload::generate(seed(), 4, 4, 4);
    let mut rig = start_rig(fleet_opts(&w, fleet), &dir.path().join("rig")).await;
    let device = std::fs::read_to_string(rig.dir.join("device-id"))
        .unwrap()
        .trim()
        .to_string();
    let topic = fb.topic(&device);
    let first = watch
        .wait_message(&topic, Duration::from_secs(30), |m| {
            m["online"] == json!(true) && m["pos"]["state"] == json!("connected")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(first["device_id"], json!(device), "the box's own id");
    let s = rig
        .wait_status("fleet connected", Duration::from_secs(10), |s| {
            s["fleet"]["state"] == json!("connected") && s["fleet"]["published"].as_u64() >= Some(1)
        })
        .await
        .unwrap();
    let since_1 = parse_time(&s["fleet"]["connected_since"]);
    let published_1 = s["fleet"]["published"].as_u64().unwrap();
    publish_all(&rig, &w.events).await;
    wait_drained(&rig, &w, Duration::from_secs(30)).await;

    // The broker stops: the box notices, the restaurant does not care.
    // (mosquitto sends the wills of its clients as it stops.)
    let mut defects = Defects::default();
    for m in watch.messages(&topic) {
        defects.check(
            m.json.as_ref().unwrap()["online"] == json!(true),
            format!(
                "the running box looked offline before the broker stopped: {}",
                String::from_utf8_lossy(&m.payload)
            ),
        );
    }
    fb.mq.stop().unwrap();
    let stopped_at = Utc::now();
    let s = rig
        .wait_status("fleet disconnected", Duration::from_secs(30), |s| {
            s["fleet"]["state"] != json!("connected")
        })
        .await
        .unwrap();
    assert!(
        ["connecting", "unreachable"].contains(&s["fleet"]["state"].as_str().unwrap()),
        "{}",
        s["fleet"]
    );
    assert_eq!(s["problems"], json!([]), "{s}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Back, empty: what arrives now was published again.
    fb.mq.restart().unwrap();
    let online_after = |m: &zenchef_sim::fleet::Seen| {
        m.connection >= 2 && m.json.as_ref().is_some_and(|j| j["online"] == json!(true))
    };
    let s = watch
        .wait_until("a report after the restart", Duration::from_secs(30), |s| {
            s.on(&topic).into_iter().any(online_after)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let after: Vec<_> = s
        .on(&topic)
        .into_iter()
        .filter(|m| m.connection >= 2)
        .collect();
    defects.check(
        online_after(after[0]),
        format!(
            "after the restart the box first looked offline: {}",
            String::from_utf8_lossy(&after[0].payload)
        ),
    );
    let m = after
        .iter()
        .copied()
        .find(|m| online_after(m))
        .unwrap()
        .json
        .clone()
        .unwrap();
    check_schema(&m, &mut defects);
    assert_eq!(m["online"], json!(true), "{m}");
    assert!(
        parse_time(&m["reported_at"]) >= stopped_at - chrono::Duration::seconds(1),
        "a report of before the stop: {m}"
    );
    assert_eq!(m["queue"]["queued"], json!(0), "{m}");
    assert_eq!(m["started_at"], first["started_at"], "the same daemon");
    let s = rig
        .wait_status("fleet connected again", Duration::from_secs(20), |s| {
            s["fleet"]["state"] == json!("connected")
        })
        .await
        .unwrap();
    assert!(
        parse_time(&s["fleet"]["connected_since"]) > since_1,
        "{}",
        s["fleet"]
    );
    assert!(
        s["fleet"]["published"].as_u64().unwrap() > published_1,
        "{}",
        s["fleet"]
    );
    let log = fb.mq.log();
    let client = format!("zenchef-edge-{device}");
    let connections = log
        .matches(&format!("as {client} (p2, c1, k30, u'box-c')"))
        .count();
    defects.check(
        connections == 2,
        format!(
            "{connections} connections of the box for two runs of the broker (it closed \
             one without DISCONNECT: {})",
            log.contains(&format!("Client {client} closed its connection"))
        ),
    );

    // The box dies (SIGKILL): the broker publishes its will, retained.
    let session = parse_time(&s["fleet"]["connected_since"]);
    rig.kill_agent().unwrap();
    let will = watch
        .wait_message(&topic, Duration::from_secs(10), |m| {
            m["online"] == json!(false)
        })
        .await
        .unwrap();
    check_will(
        &will,
        &device,
        &w.zenchef_config().restaurant_id,
        &agent_version(),
    );
    // The will is of the session that died: the connect after the restart.
    let started = parse_time(&will["session_started_at"]);
    defects.check(
        (started - session).num_seconds().abs() <= 2,
        format!(
            "the will's session_started_at {started} is not the last connect (status said \
             connected since {session}; the first connect was at {since_1})"
        ),
    );
    let late = fb.support("support-c-late").await;
    let s = late
        .wait_until("the retained will", Duration::from_secs(10), |s| {
            s.latest.contains_key(&topic)
        })
        .await
        .unwrap();
    assert_eq!(s.latest_json(&topic), Some(&will));
    figures(&format!("fleet c: test {:?}", t0.elapsed()));
    defects.assert_none();
}

/// Every string of `v` (values, at any depth).
fn strings_of(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_of(x, out)),
        _ => {}
    }
}

/// Every key of `v` at any depth, with its path.
fn keys_of(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| keys_of(x, &format!("{path}[{i}]"), out)),
        Value::Object(o) => {
            for (k, x) in o {
                let p = format!("{path}.{k}");
                out.push((k.clone(), p.clone()));
                keys_of(x, &p, out);
            }
        }
        _ => {}
    }
}

/// Scenario e: a real service with real-looking guests (names, phones,
/// e-mails, remarks, allergies) that the box publishes to the POS, a
/// Zenchef error with free text, an unreadable POS event: no report holds
/// any of it, nor a key for it, nor a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_report_holds_personal_data_free_text_or_a_token() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let device = format!("box-e-{}", zenchef_sim::util::random_hex(8));
    let token = format!("fleet-token-{}", zenchef_sim::util::random_hex(16));
    let fb = FleetBroker::start(
        dir.path(),
        "zenchef-edge",
        &[(device.clone(), token.clone())],
        "",
    );
    let watch = fb.support("support-e").await;
    let day = Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .date_naive();
    let sc = zenchef_sim::scenario::Scenario::generate(seed(), day);
    let mut opts = RigOptions::new(sc.zenchef_config("zc-token-s3cret"));
    opts.config_head = "config_version = 3\n".into();
    opts.extra_config = fleet_table(
        &fb.plain_url(),
        &[
            ("username", &device),
            ("token", &token),
            ("device_id", &device),
        ],
    ) + "interval_s = 30\n";
    let mut rig = Rig::start(opts, Path::new(AGENT), &dir.path().join("rig"))
        .await
        .unwrap();
    rig.pos.publish_floorplan(&sc.floorplan()).await.unwrap();
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    // The box knows the guests: it published them to the POS.
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.reservations.len() >= sc.bookings.len()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let on_pos = rig.pos.reservations();
    assert!(
        on_pos
            .values()
            .any(|r| r["customer"]["phone"].is_string() && r["customer"]["lastname"].is_string()),
        "the POS got the guests' contacts"
    );

    // The box reports before the service, and again after it.
    let topic = fb.topic(&device);
    watch
        .wait_message(&topic, Duration::from_secs(30), |m| {
            m["online"] == json!(true) && m["pos"]["state"] == json!("connected")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));

    // A Zenchef error with free text on a booking the service seats, and
    // an unreadable POS event naming a guest.
    let free_text = "Refus: Mme Hortense Clairval-Secret, tel +33 6 12 34 56 78";
    let failing = *sc
        .expected
        .status_history
        .iter()
        .find(|(_, h)| !h.is_empty())
        .unwrap()
        .0;
    rig.zenchef.fail_booking(failing, 422, free_text);
    let garbage = r#"{"note": "table de Mme Ophélie Garnier-Secret, allergique"}"#;
    rig.pos.publish_raw(garbage).await.unwrap();
    let mut events = 0i64;
    for step in &sc.steps {
        match step {
            zenchef_sim::scenario::Step::Pos { event, .. } => {
                rig.pos.publish_event(event).await.unwrap();
                events += 1;
            }
            zenchef_sim::scenario::Step::Zenchef { change, .. } => {
                change.apply(&rig.zenchef);
            }
            _ => {}
        }
    }
    // Delivered, but for the failing booking's order: its first write is
    // dead, the rest of that order waits behind it.
    rig.wait_status("the service delivered", Duration::from_secs(120), |s| {
        let c = &s["counts"];
        let n = |k: &str| c[k].as_i64().unwrap_or(-1);
        n("received") == events
            && n("dead") >= 1
            && n("rejected") == 1
            && n("inflight") == 0
            && n("delivered") + n("dead") + n("queued") == events
            && n("queued") < 10
    })
    .await
    .unwrap();
    let s = rig.status().unwrap();
    let (_, dead, _) = rig.cli(&["outbox", "list", "--dead"]).unwrap();
    assert!(
        dead.contains("Hortense Clairval-Secret"),
        "the box has the free-text error: {dead}"
    );
    let last = watch
        .wait_message(&topic, Duration::from_secs(60), |m| {
            m["queue"]["rejected"] == json!(1)
                && m["queue"]["dead"] == s["counts"]["dead"]
                && m["queue"]["queued"] == s["counts"]["queued"]
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert!(
        last["problems"]
            .as_array()
            .unwrap()
            .contains(&json!("dead_events")),
        "{last}"
    );
    rig.kill_agent().unwrap();
    watch
        .wait_message(&topic, Duration::from_secs(10), |m| {
            m["online"] == json!(false)
        })
        .await
        .unwrap();

    // What must never be in a report.
    let mut personal = BTreeSet::new();
    for b in sc.bookings.iter().chain(rig.zenchef.bookings().iter()) {
        for k in [
            "firstname",
            "lastname",
            "phone_number",
            "email",
            "comment",
            "allergies",
        ] {
            strings_of(&b[k], &mut personal);
        }
        strings_of(&b["customersheet"], &mut personal);
    }
    for r in on_pos.values() {
        strings_of(&r["customer"], &mut personal);
    }
    let mut secrets: Vec<String> = personal
        .into_iter()
        .filter(|s| s.chars().count() >= 3)
        .collect();
    let tables = sc
        .tables
        .iter()
        .map(|t| t.name.clone())
        .filter(|n| n.len() >= 3);
    secrets.extend(tables);
    secrets.extend(
        [
            "Terrasse",
            "Mezzanine",
            "Salle",
            "Hortense",
            "Clairval",
            "Refus",
            "Ophélie",
            "Garnier",
            "allergique",
            "Le Bistrot",
            "Cashpad Server",
            "127.0.0.1",
            "zc-token-s3cret",
        ]
        .map(String::from),
    );
    secrets.push(rig.opts.cashpad_token.clone());
    secrets.push(token.clone());
    let forbidden_keys = [
        "name",
        "first_name",
        "last_name",
        "firstname",
        "lastname",
        "phone",
        "phone_number",
        "email",
        "mail",
        "remark",
        "remarks",
        "allergies",
        "comment",
        "customer",
        "token",
        "password",
        "instance",
        "address",
        "table",
        "tables",
        "last_error",
    ];
    let seen = watch.messages(&topic);
    // The reports before and after the service, and the will.
    assert!(seen.len() >= 3, "{} reports", seen.len());
    let mut leaks = Vec::new();
    for m in &seen {
        let text = String::from_utf8_lossy(&m.payload);
        for s in &secrets {
            if text.contains(s.as_str()) {
                leaks.push(format!("{s:?} in {text}"));
            }
        }
        let mut ks = Vec::new();
        keys_of(m.json.as_ref().unwrap(), "", &mut ks);
        for (k, path) in ks {
            if forbidden_keys.contains(&k.to_lowercase().as_str()) {
                leaks.push(format!("key {path} in {text}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // The configuration's tokens are in no output of the box either.
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    for out in [text, rig.status().unwrap().to_string(), rig.log()] {
        for t in [&token, &rig.opts.cashpad_token] {
            assert!(!out.contains(t.as_str()), "a token in the box's output");
        }
    }
    figures(&format!(
        "fleet e: {} reports checked against {} strings, {events} events, test {:?}",
        seen.len(),
        secrets.len(),
        t0.elapsed()
    ));
}

/// One row of the `fleet-view` table.
#[derive(Debug, Clone, PartialEq)]
struct ViewRow {
    device: String,
    restaurant: String,
    version: String,
    online: String,
    last_seen: String,
    queue: String,
    problems: String,
}

/// Parses the table of `fleet-view`: the header, the rows, the summary.
fn parse_view(out: &str) -> (Vec<ViewRow>, String) {
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{out}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "DEVICE",
            "RESTAURANT",
            "VERSION",
            "ONLINE",
            "LAST",
            "SEEN",
            "QUEUE",
            "PROBLEMS"
        ],
        "{out}"
    );
    let summary = lines[lines.len() - 1].to_string();
    let rows = lines[1..lines.len() - 1]
        .iter()
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            assert!(t.len() >= 8, "row {l:?}");
            ViewRow {
                device: t[0].into(),
                restaurant: t[1].into(),
                version: t[2].into(),
                online: t[3].into(),
                last_seen: format!("{} {}", t[4], t[5]),
                queue: t[6].into(),
                problems: t[7..].join(" "),
            }
        })
        .collect();
    (rows, summary)
}

/// Where the contract puts a box in the table: money problems
/// (`payments_need_person`, `orders_need_attention`), offline boxes, boxes
/// by their first problem in the contract's order, healthy boxes; ties by
/// the larger queue, then the device id. `split`: payments needing a
/// person before orders needing attention (what the agent does), else one
/// money group.
fn trouble_key(
    device: &str,
    m: &Value,
    split: bool,
) -> (usize, usize, std::cmp::Reverse<u64>, String) {
    let problems: Vec<&str> = m["problems"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let index = |p: &str| PROBLEMS.iter().position(|x| *x == p).unwrap();
    let queue =
        m["queue"]["queued"].as_u64().unwrap_or(0) + m["queue"]["pay_queued"].as_u64().unwrap_or(0);
    let money = ["payments_need_person", "orders_need_attention"];
    let (group, sub) = if let Some(p) = money.iter().find(|p| problems.contains(p)) {
        (0, if split { index(p) } else { 0 })
    } else if m["online"] != json!(true) {
        (1, 0)
    } else if let Some(p) = problems.first() {
        (2, index(p))
    } else {
        (3, 0)
    };
    (group, sub, std::cmp::Reverse(queue), device.to_string())
}

/// `YYYY-MM-DD HH:MM:SS` UTC of an RFC 3339 time.
fn seen_at(v: &Value) -> String {
    parse_time(v).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Runs `zenchef-edge fleet-view <args>` with the support certificate (or
/// the given arguments); answers (exit code, stdout, stderr).
fn fleet_view(args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(AGENT)
        .arg("fleet-view")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("ZENCHEF_EDGE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Scenario f: 200 simulated boxes and 2 real ones on one broker;
/// `fleet-view` lists them all, the trouble first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_lists_every_box_with_the_trouble_first() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let prefix = "groups/f";
    let sd = seed();
    let mut boxes = varied_fleet(200, sd % 1000, Utc::now());
    // The cases the order turns on, whatever the seed drew.
    // (The largest queue of the money problems: first either way.)
    boxes[17].payments_needing_person = 2;
    boxes[17].problems = vec!["payments_need_person".into()];
    boxes[17].queued = 3;
    boxes[17].oldest_queued_age_s = Some(30);
    boxes[17].dead_box = false;
    boxes[18].orders_needing_attention = 1;
    boxes[18].problems = vec!["orders_need_attention".into()];
    boxes[18].dead_box = false;
    boxes[19].dead_box = true;
    boxes[20].queued = 35;
    boxes[20].zenchef_state = "outage".into();
    boxes[20].problems = vec!["zenchef_outage".into()];
    boxes[20].dead_box = false;
    let users: Vec<(String, String)> = boxes
        .iter()
        .map(|b| (b.device_id.clone(), format!("pw-{}", b.device_id)))
        .chain([("support-token-user".into(), "support-token".into())])
        .collect();
    let fb = FleetBroker::start(
        dir.path(),
        prefix,
        &users,
        &format!("user support-token-user\ntopic read {prefix}/+/status\n"),
    );
    let watch = fb.support("support-f").await;

    // Two real boxes: one healthy, one whose Zenchef is down with events
    // queued.
    let mut rigs = Vec::new();
    let mut devices = Vec::new();
    for (i, rid) in ["811111", "822222"].into_iter().enumerate() {
        let device = format!("real-{i}-{}", zenchef_sim::util::random_hex(6));
        let cert = fb.cert(&device);
        let w = Workload::generate(sd + i as u64, 2, 3, 2);
        let mut opts = fleet_opts(&w, fb.fleet_toml(&device, &fb.ca_file, &cert));
        opts.zenchef.restaurant_id = rid.into();
        let rig = start_rig(opts, &dir.path().join(format!("rig-{i}"))).await;
        if i == 1 {
            rig.zenchef.set_fault(Fault::Down).await.unwrap();
        }
        publish_all(&rig, &w.events).await;
        if i == 0 {
            wait_drained(&rig, &w, Duration::from_secs(30)).await;
        }
        rigs.push((rig, w));
        devices.push(device);
    }
    publish_fleet(&boxes, prefix, 16, |b| {
        FleetEndpoint::plain(fb.mq.port(), &b.device_id, &format!("pw-{}", b.device_id))
    })
    .await
    .unwrap();
    // Both real boxes have reported their settled state.
    let queued_1 = rigs[1].1.events.len() as u64;
    let state = watch
        .wait_until(
            "202 boxes, the real ones settled",
            Duration::from_secs(60),
            |s| {
                s.latest.len() == 202
                    && s.latest_json(&fb.topic(&devices[0])).is_some_and(|m| {
                        m["queue"]["queued"] == json!(0) && m["zenchef"]["state"] == json!("ok")
                    })
                    && s.latest_json(&fb.topic(&devices[1])).is_some_and(|m| {
                        m["queue"]["queued"] == json!(queued_1)
                            && m["zenchef"]["state"] == json!("outage")
                    })
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rigs[1].0.log_tail(20)));
    for b in &boxes {
        assert_eq!(
            state.latest_json(&b.topic(prefix)),
            Some(&b.retained()),
            "{}",
            b.device_id
        );
    }

    let mut defects = Defects::default();
    let support = fb.cert("support");
    let args: Vec<String> = [
        "--broker",
        &fb.url(),
        "--ca-file",
        &fb.ca_file.display().to_string(),
        "--cert-file",
        &support.cert.display().to_string(),
        "--key-file",
        &support.key.display().to_string(),
        "--prefix",
        prefix,
        "--wait-s",
        "3",
    ]
    .map(String::from)
    .to_vec();
    let t_view = Instant::now();
    let (code, out, err) = fleet_view(&args, &[]);
    let view_took = t_view.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    let (rows, summary) = parse_view(&out);
    assert_eq!(rows.len(), 202, "{out}");
    // For a person reading the run: the head of the table and its end.
    let lines: Vec<&str> = out.lines().collect();
    eprintln!(
        "fleet-view, {view_took:?}:\n{}\n…\n{}",
        lines[..lines.len().min(14)].join("\n"),
        lines[lines.len().saturating_sub(4)..].join("\n")
    );

    // Each row's message: the one its box published (a real box may have
    // published again meanwhile: the one whose time the row shows).
    let history = watch.state();
    let published = |device: &str| -> Vec<Value> {
        history
            .on(&fb.topic(device))
            .iter()
            .filter_map(|m| m.json.clone())
            .collect()
    };
    let messages: BTreeMap<String, Value> = rows
        .iter()
        .map(|r| {
            let all = published(&r.device);
            let shown = all.iter().rev().find(|m| {
                let t = if m["online"] == json!(true) {
                    &m["reported_at"]
                } else {
                    &m["session_started_at"]
                };
                t.is_string() && seen_at(t) == r.last_seen
            });
            let m = shown
                .or(all.last())
                .unwrap_or_else(|| panic!("{r:?} not published"));
            (r.device.clone(), m.clone())
        })
        .collect();
    assert_eq!(messages.len(), 202, "a device twice in the table:\n{out}");
    let sim: BTreeMap<&str, &SimBox> = boxes.iter().map(|b| (b.device_id.as_str(), b)).collect();
    for (device, b) in &sim {
        assert_eq!(messages[*device], b.retained(), "{device}'s row");
    }
    let order = |split: bool| {
        let mut o: Vec<&String> = messages.keys().collect();
        o.sort_by_key(|d| trouble_key(d, &messages[*d], split));
        o
    };
    let got: Vec<&String> = rows.iter().map(|r| &r.device).collect();
    let expected = order(true);
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap();
        defects.check(
            false,
            format!(
                "the order differs from row {first}: got {:?}, expected {:?}",
                &got[first..(first + 5).min(got.len())],
                &expected[first..(first + 5).min(expected.len())]
            ),
        );
    }
    assert_eq!(
        rows[0].device, boxes[17].device_id,
        "payments first:\n{out}"
    );

    // Every row says what its box published.
    for r in &rows {
        let m = &messages[&r.device];
        assert_eq!(r.restaurant, m["restaurant_id"].as_str().unwrap(), "{r:?}");
        assert_eq!(r.version, m["version"].as_str().unwrap(), "{r:?}");
        let problems: Vec<&str> = m["problems"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if m["online"] == json!(true) {
            assert_eq!(r.online, "yes", "{r:?}");
            assert_eq!(r.last_seen, seen_at(&m["reported_at"]), "{r:?}");
            let queue =
                m["queue"]["queued"].as_u64().unwrap() + m["queue"]["pay_queued"].as_u64().unwrap();
            assert_eq!(r.queue, queue.to_string(), "{r:?}");
            let want = if problems.is_empty() {
                "-".to_string()
            } else {
                problems.join(",")
            };
            assert_eq!(r.problems, want, "{r:?}");
        } else {
            assert_eq!(r.online, "no", "{r:?}");
            assert_eq!(r.last_seen, seen_at(&m["session_started_at"]), "{r:?}");
            assert!(r.problems.starts_with("offline"), "{r:?}");
        }
    }
    // The real boxes' rows (and the table's lines for them).
    for d in &devices {
        if let Some(l) = lines.iter().find(|l| l.starts_with(d.as_str())) {
            eprintln!("{l}");
        }
    }
    if let Some(m) = watch.state().latest_json(&fb.topic(&devices[1])) {
        eprintln!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
    }
    let version = agent_version();
    for (i, (rid, queue, problem)) in [("811111", 0, "-"), ("822222", queued_1, "zenchef_outage")]
        .into_iter()
        .enumerate()
    {
        let r = rows.iter().find(|r| r.device == devices[i]).unwrap();
        assert_eq!(
            (
                r.restaurant.as_str(),
                r.version.as_str(),
                r.online.as_str(),
                r.queue.as_str()
            ),
            (rid, version.as_str(), "yes", queue.to_string().as_str()),
            "{r:?}"
        );
        assert!(r.problems.split(',').any(|p| p == problem), "{r:?}");
    }
    let online = messages
        .values()
        .filter(|m| m["online"] == json!(true))
        .count();
    let offline = messages.len() - online;
    let trouble = rows.iter().filter(|r| r.problems != "-").count();
    defects.check(
        summary
            == format!("202 boxes: {online} online, {offline} offline, {trouble} with problems"),
        format!(
            "summary {summary:?}: expected 202 boxes, {online} online, {offline} offline, \
             {trouble} with problems (offline boxes counted: their PROBLEMS say offline)"
        ),
    );

    // --json: the same boxes in the same order, the messages as published.
    let mut json_args = args.clone();
    json_args.push("--json".into());
    let (code, out_json, err) = fleet_view(&json_args, &[]);
    assert_eq!(code, 0, "{err}");
    let arr: Vec<Value> =
        serde_json::from_str(&out_json).unwrap_or_else(|e| panic!("{e}: {out_json}"));
    assert_eq!(arr.len(), 202);
    for (r, j) in rows.iter().zip(&arr) {
        assert_eq!(keys(j), ["device_id", "message"], "{j}");
        assert_eq!(j["device_id"], json!(r.device));
        match sim.get(r.device.as_str()) {
            Some(b) => assert_eq!(j["message"], b.retained(), "{}", r.device),
            None => assert!(
                published(&r.device).contains(&j["message"]),
                "{}: --json gives a message it never published: {}",
                r.device,
                j["message"]
            ),
        }
    }

    // A support login by username and token (from the environment), and
    // the exit codes: refused 77, unreachable 69.
    let by_token = |port: u16| -> Vec<String> {
        [
            "--broker".to_string(),
            format!("mqtt://127.0.0.1:{port}"),
            "--username".into(),
            "support-token-user".into(),
            "--prefix".into(),
            prefix.into(),
            "--wait-s".into(),
            "1".into(),
        ]
        .to_vec()
    };
    let (code, out, err) = fleet_view(
        &by_token(fb.mq.port()),
        &[("ZENCHEF_FLEET_TOKEN", "support-token")],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("202 boxes: "), "{out}");
    let (code, out, err) = fleet_view(&by_token(fb.mq.port()), &[("ZENCHEF_FLEET_TOKEN", "wrong")]);
    assert_eq!(code, 77, "{out}\n{err}");
    assert!(
        !out.contains("wrong") && !err.contains("support-token"),
        "{out}{err}"
    );
    let closed = zenchef_sim::util::free_port().unwrap();
    let (code, out, err) = fleet_view(
        &by_token(closed),
        &[("ZENCHEF_FLEET_TOKEN", "support-token")],
    );
    assert_eq!(code, 69, "{out}\n{err}");

    // A message that is not a schema-1 report is a row that says so.
    let garbled = &boxes[0];
    publish_retained(
        &FleetEndpoint::plain(
            fb.mq.port(),
            &garbled.device_id,
            &format!("pw-{}", garbled.device_id),
        ),
        "garbler",
        &garbled.topic(prefix),
        b"{\"schema\": 2, \"what\": \"else\"}",
        None,
        Leave::Disconnect,
    )
    .await
    .unwrap();
    let mut quick = args.clone();
    *quick.last_mut().unwrap() = "1".into();
    let (code, out, err) = fleet_view(&quick, &[]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&garbled.device_id))
        .unwrap_or_else(|| panic!("no row for {}:\n{out}", garbled.device_id));
    assert!(line.trim_end().ends_with("unreadable message"), "{line}");
    assert_eq!(
        out.lines().filter(|l| !l.trim().is_empty()).count(),
        204,
        "{out}"
    );

    for (rig, _) in &rigs {
        assert_eq!(rig.status().unwrap()["fleet"]["state"], json!("connected"));
    }
    figures(&format!(
        "fleet f: fleet-view of 202 boxes in {view_took:?}, test {:?}",
        t0.elapsed()
    ));
    defects.assert_none();
}

/// libfaketime, when installed.
fn faketime_lib() -> Option<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// The resident memory of process `pid`, KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Publishes `events` in `bursts` bursts spread over `span`.
async fn publish_over(rig: &Rig, events: &[Value], bursts: usize, span: Duration) {
    let t = Instant::now();
    let per = events.len().div_ceil(bursts);
    for (i, chunk) in events.chunks(per).enumerate() {
        tokio::time::sleep_until((t + span.mul_f64(i as f64 / bursts as f64)).into()).await;
        publish_all(rig, chunk).await;
    }
    tokio::time::sleep_until((t + span).into()).await;
}

/// Scenario d: the broker gone, then hanging (a port that accepts and
/// never answers), for ten minutes of the box's clock — the agent runs
/// under libfaketime ten times faster, so a minute here — while a service
/// goes on: every event stored and delivered as without a fleet, memory
/// flat; when the broker is back, one report, the latest, not a backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_minutes_without_the_broker_change_nothing_for_the_restaurant_and_leave_no_backlog() {
    let Some(FleetTest { _heavy, t0, dir }) = FleetTest::begin().await else {
        return;
    };
    let Some(lib) = faketime_lib() else {
        require("faketime (libfaketime)", false);
        return;
    };
    let mut fb = FleetBroker::start(dir.path(), "groups/d", &[], "");
    // On the plain listener: only the box knocks at the hanging TLS port.
    let watch = fb.support_plain("support-d").await;
    let device = format!("box-d-{}", zenchef_sim::util::random_hex(8));
    let cert = fb.cert(&device);
    let topic = fb.topic(&device);
    let w = Workload::generate(seed(), 60, 4, 10);
    // Reports at least every 30 s (the minimum): ten minutes of them are
    // what a queue would pile up.
    let fleet = format!(
        "{}interval_s = 30\n",
        fb.fleet_toml(&device, &fb.ca_file, &cert)
    );
    let mut opts = fleet_opts(&w, fleet);
    opts.agent_env = vec![
        ("LD_PRELOAD".into(), lib.into()),
        ("FAKETIME".into(), "+0 x10".into()),
    ];
    // Timings of the agent's clock: a 2 s HTTP timeout would be 0.2 s here.
    opts.http_timeout_s = 20;
    opts.poll_interval_s = 10;
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let pid = rig.agent_pid().unwrap();
    let parts: Vec<&[Value]> = w.events.chunks(60).collect();
    assert_eq!(parts.len(), 4);

    // Warm-up: a part of the service, reported.
    publish_all(&rig, parts[0]).await;
    let before = watch
        .wait_message(&topic, Duration::from_secs(30), |m| {
            m["online"] == json!(true)
                && m["pos"]["state"] == json!("connected")
                && m["queue"]["queued"] == json!(0)
                && m["zenchef"]["last_success"].is_string()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let mut baseline = 0;
    for _ in 0..3 {
        baseline = baseline.max(rss_kib(pid).unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The broker goes away; memory sampled every second from now on.
    fb.mq.stop().unwrap();
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            while let Some(kib) = rss_kib(pid) {
                samples.lock().unwrap().push(kib);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let phase = Duration::from_secs(31);
    // 1. Nothing listens (five minutes of the box's clock).
    publish_over(&rig, parts[1], 6, phase).await;
    // 2. Something accepts and never answers (five more).
    let silent = SilentListener::bind(fb.mq.tls_port()).await.unwrap();
    publish_over(&rig, &w.events[120..], 6, phase).await;
    let tries = silent.accepted();
    assert!(tries >= 1, "the box never tried the hanging broker");
    // After five minutes of failures the reconnect backoff (1 s doubling,
    // capped at 60 s, with jitter) is at its cap: a try every minute or so
    // of the box's clock, not one per handshake timeout.
    let at = silent.accepted_at();
    let mut gaps: Vec<f64> = at
        .windows(2)
        .map(|p| (p[1] - p[0]).as_secs_f64() * 10.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(f64::INFINITY);
    let mut defects = Defects::default();
    defects.check(
        median >= 25.0 && tries <= 15,
        format!(
            "{tries} connections to the hanging broker in five minutes of the box's clock, \
             median gap {median:.1} s (box clock): the backoff does not grow"
        ),
    );
    // The restaurant side as without a fleet.
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    sampler.abort();
    let samples = samples.lock().unwrap().clone();
    let peak = samples.iter().copied().max().unwrap_or(0);
    assert!(samples.len() >= 50, "{} samples", samples.len());
    assert!(
        peak.saturating_sub(baseline) < 8 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB during the broker's absence: {samples:?}"
    );

    // The broker is back (empty: no persistence).
    silent.close();
    fb.mq.restart().unwrap();
    watch
        .wait_until(
            "the watcher subscribed again",
            Duration::from_secs(20),
            |s| s.subscribed && s.subscribed_on >= 2,
        )
        .await
        .unwrap();
    let s = watch
        .wait_until(
            "a report after the broker's return",
            Duration::from_secs(40),
            |s| s.on(&topic).iter().any(|m| m.connection >= 2),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let first_at = s
        .on(&topic)
        .into_iter()
        .find(|m| m.connection >= 2)
        .unwrap()
        .at;
    tokio::time::sleep_until((first_at + Duration::from_secs(3)).into()).await;
    let after: Vec<_> = watch
        .messages(&topic)
        .into_iter()
        .filter(|m| m.connection >= 2)
        .collect();
    let burst = after
        .iter()
        .filter(|m| m.at < first_at + Duration::from_millis(800))
        .count();
    assert_eq!(
        burst,
        1,
        "one report at the return, not a backlog: {:#?}",
        after
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect::<Vec<_>>()
    );
    let m = after[0].json.clone().unwrap();
    check_schema(&m, &mut defects);
    assert_eq!(m["online"], json!(true), "{m}");
    for k in [
        "queued",
        "inflight",
        "dead",
        "pay_queued",
        "pay_dead",
        "rejected",
    ] {
        assert_eq!(m["queue"][k], json!(0), "queue as now: {m}");
    }
    assert_eq!(m["zenchef"]["state"], json!("ok"), "{m}");
    let gap = parse_time(&m["reported_at"]) - parse_time(&before["reported_at"]);
    assert!(
        gap >= chrono::Duration::seconds(600),
        "ten minutes of the box's clock between the reports: {gap}"
    );
    // Whatever followed within 3 s (30 s of the box's clock) is newer, at
    // the debounce's pace.
    let times: Vec<DateTime<Utc>> = after
        .iter()
        .map(|m| parse_time(&m.json.as_ref().unwrap()["reported_at"]))
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(9),
            "reports {} and {} closer than the debounce",
            pair[0],
            pair[1]
        );
    }
    assert!(
        after.len() <= 4,
        "{} reports in 30 s of the box's clock",
        after.len()
    );
    figures(&format!(
        "fleet d: {} events through {gap} of the box's clock without a broker ({tries} connection(s) \
         to the hanging port); RSS {baseline} KiB -> peak {peak} KiB over {} samples; {} report(s) \
         in the 3 s after the return; test {:?}",
        w.events.len(),
        samples.len(),
        after.len(),
        t0.elapsed()
    ));
    defects.assert_none();
}

/// Issue 21 (c): one retained message over 16 MiB made `fleet-view` fail
/// for the whole fleet (rumqttc drops the connection on a packet over its
/// limit, and the broker sends the same message again at the next). It is
/// now a row marked unreadable, and every other box is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_lists_every_box_beside_a_message_over_16_mib() {
    if !require("mosquitto", mosquitto::available()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = "groups/big";
    let mq = Mosquitto::start(
        &dir.path().join("mosquitto"),
        &[
            ("boxes".into(), "boxes-pw".into()),
            ("support-pw".into(), "support-pw-secret".into()),
        ],
        1,
    )
    .unwrap();
    let ep = FleetEndpoint::plain(mq.port(), "boxes", "boxes-pw");
    // Device ids on both sides of the big one in topic order.
    let mut boxes = varied_fleet(4, 21, Utc::now());
    for (b, id) in boxes.iter_mut().zip(["a-box", "b-box", "y-box", "z-box"]) {
        b.device_id = id.into();
        b.dead_box = false;
    }
    publish_fleet(&boxes, prefix, 4, |_| ep.clone())
        .await
        .unwrap();
    let big = vec![b'{'; 17 * 1024 * 1024];
    publish_retained(
        &ep,
        "m-box",
        &status_topic(prefix, "m-box"),
        &big,
        None,
        Leave::Disconnect,
    )
    .await
    .unwrap();
    let args: Vec<String> = [
        "--broker",
        &format!("mqtt://127.0.0.1:{}", mq.port()),
        "--username",
        "support-pw",
        "--prefix",
        prefix,
        "--wait-s",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let env = [("ZENCHEF_FLEET_TOKEN", "support-pw-secret")];
    let (code, out, err) = fleet_view(&args, &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let (rows, _) = parse_view(&out);
    let mut devices: Vec<&str> = rows.iter().map(|r| r.device.as_str()).collect();
    devices.sort();
    assert_eq!(
        devices,
        ["a-box", "b-box", "m-box", "y-box", "z-box"],
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with("m-box ")).unwrap();
    assert!(
        line.ends_with(&format!(
            " unreadable message,larger than 16 MiB ({} bytes)",
            big.len()
        )),
        "{out}"
    );
    for b in &boxes {
        let row = rows.iter().find(|r| r.device == b.device_id).unwrap();
        assert_eq!(row.restaurant, b.restaurant_id, "{out}");
    }
}

//! The restaurant's LAN as network namespaces: the box and the POS on two
//! bridges of one switch, with a real network cut between them
//! (docs/protocol/cashpad-local.md §1: a record that expires during a cut
//! does not make the agent give up on the POS).
//!
//! Three namespaces, made for the run and deleted at its end (also when it
//! fails): the switch (`zsw-…`: bridges `brb` and `brp` joined by the
//! uplink veth pair `upb`/`upp`), the box (`zbox-…`: `eth0` 10.251.0.1/24,
//! the agent and the Zenchef fake on the namespace's own loopback) and the
//! POS (`zpos-…`: `eth0` 10.251.0.2/24, the broker, the POS client and its
//! mDNS responder, records with a 10 s TTL). The cut takes the uplink
//! down: both ends keep their carrier, nothing announces anything, the
//! packets just stop, as when a switch between them reboots. Addresses
//! exist only inside these namespaces; nothing is added to the machine's
//! own namespace and nothing leaves it.
//!
//! The simulators run in this process, each on a thread that entered its
//! namespace (`setns`) with a tokio runtime of its own: sockets belong to
//! the namespace of the thread that opens them. The agent runs under
//! `ip netns exec`.
//!
//! Needs root and `ip` (iproute2, installed by `.ci/run`): outside CI the
//! test is skipped with a message when either is missing; in CI it fails.

mod common;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use zenchef_sim::broker::{BrokerOptions, start_broker_on};
use zenchef_sim::harness::{AGENT_USER, POS_PASSWORD, POS_USER};
use zenchef_sim::mdns::{LanResponder, PosAdvert};
use zenchef_sim::pos::{EventBuilder, Pos, paris_winter};
use zenchef_sim::zenchef::{ZenchefConfig, ZenchefFake};

const BOX_IP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 1);
const POS_IP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 2);
/// TTL of every record the POS announces.
const TTL_S: u32 = 10;
/// How long the uplink stays down: more than the TTL, and more than the
/// 60 s in which the agent's MQTT keep-alive (30 s) sees a silent cut.
const CUT: Duration = Duration::from_secs(65);
/// The agent's reconnect pace is capped at 5 s (src/pos/session.rs); a
/// connect attempt under way when the link comes back takes a few seconds
/// more (ARP, SYN). Margin included.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Skips (outside CI) or fails (in CI) when root or `ip` is missing.
fn require_netns() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    let what = if ip { "root" } else { "iproute2 (`ip`)" };
    if in_ci() {
        panic!("{what} is missing in CI: .ci/run runs as root and must install iproute2");
    }
    eprintln!("SKIPPED: network namespaces need {what} (CI has it)");
    false
}

/// Runs `ip <args>`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three namespaces and their links; deleted on drop.
struct Lan {
    switch: String,
    boxx: String,
    pos: String,
    made: Vec<String>,
}

impl Lan {
    fn create() -> Lan {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            zenchef_sim::util::random_hex(3)
        );
        let mut lan = Lan {
            switch: format!("zsw-{tag}"),
            boxx: format!("zbox-{tag}"),
            pos: format!("zpos-{tag}"),
            made: Vec::new(),
        };
        for ns in [lan.switch.clone(), lan.boxx.clone(), lan.pos.clone()] {
            ip(&["netns", "add", &ns]);
            lan.made.push(ns);
        }
        let sw = lan.switch.as_str();
        ip(&["-n", sw, "link", "add", "brb", "type", "bridge"]);
        ip(&["-n", sw, "link", "add", "brp", "type", "bridge"]);
        ip(&[
            "-n", sw, "link", "add", "upb", "type", "veth", "peer", "name", "upp",
        ]);
        ip(&[
            "-n", sw, "link", "add", "pb", "type", "veth", "peer", "name", "eth0", "netns",
            &lan.boxx,
        ]);
        ip(&[
            "-n", sw, "link", "add", "pp", "type", "veth", "peer", "name", "eth0", "netns",
            &lan.pos,
        ]);
        for (port, bridge) in [("upb", "brb"), ("pb", "brb"), ("upp", "brp"), ("pp", "brp")] {
            ip(&["-n", sw, "link", "set", port, "master", bridge]);
        }
        for dev in ["brb", "brp", "upb", "upp", "pb", "pp"] {
            ip(&["-n", sw, "link", "set", dev, "up"]);
        }
        for (ns, addr) in [(&lan.boxx, BOX_IP), (&lan.pos, POS_IP)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    /// The uplink between the two bridges down (`false`) or up (`true`).
    fn uplink(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch, "link", "set", "upb", state]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.made.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// A thread inside a network namespace running a tokio runtime of its
/// own: what is spawned on [`NsRuntime::handle`] opens its sockets there.
struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    fn start(ns: &str) -> NsRuntime {
        let path = format!("/run/netns/{ns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let f = File::open(&path).expect("namespace file");
            // SAFETY: setns on a valid descriptor; it changes only this
            // thread's network namespace (and its future children's).
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tx.send(rt.handle().clone()).unwrap();
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        NsRuntime {
            handle: rx.recv().expect("namespace runtime"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the namespace's thread and answers its output.
    async fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle.spawn(f).await.expect("task in namespace")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The agent under `ip netns exec`; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_config(
    dir: &Path,
    iid: &str,
    token: &str,
    (mdns_port, interface): (u16, &str),
    zenchef: &str,
) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let text = format!(
        r#"[restaurant]
timezone = "Etc/GMT-1"
currency = "EUR"

[cashpad]
token = "{token}"
installation_id = "{iid}"
mdns_port = {mdns_port}
interfaces = ["{interface}"]

[zenchef]
restaurant_id = "654321"
token = "zc-token-s3cret"
base_url = "{zenchef}"
poll_interval_s = 1

[store]
path = "{store}"

[update]
enabled = false

[http]
listen = ""

[delivery]
retry_max_s = 1
credentials_retry_s = 2
http_timeout_s = 2
"#,
        store = dir.join("agent.db").display(),
    );
    let path = dir.join("agent.toml");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    path
}

/// When each of `events` first reached Zenchef (a 2xx write carrying its
/// id in the idempotency key), `None` for those that did not.
fn arrivals(fake: &ZenchefFake, events: &[Value]) -> Vec<Option<Instant>> {
    let calls = fake.calls();
    events
        .iter()
        .map(|e| {
            let id = e["event_id"].as_str().unwrap();
            calls
                .iter()
                .filter(|c| (200..300).contains(&c.status))
                .filter(|c| {
                    c.publisher_model_id
                        .as_deref()
                        .is_some_and(|k| k.split(':').next() == Some(id))
                })
                .map(|c| c.at)
                .min()
        })
        .collect()
}

/// Scenario of issue 21, item 7: the uplink between the box's and the
/// POS's bridges is down for 65 s (record TTL 10 s), and comes back
/// without any re-announcement. Three events are published during the cut
/// and three right after; every one must reach Zenchef within [`CATCH_UP`]
/// of the link coming back. (Before the fix the agent withdrew the POS when
/// its record expired, and its next mDNS query was a minute or more away:
/// none arrived.)
///
/// Long (about 150 lines): one scenario told in order, set-up of the
/// three namespaces' parts, normal service, the cut, the link back, the
/// figures and the checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cut_longer_than_the_ttl_costs_one_retry_interval() {
    if !require_netns() {
        return;
    }
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let lan = Lan::create();
    let pos_ns = NsRuntime::start(&lan.pos);
    let box_ns = NsRuntime::start(&lan.boxx);

    let iid = format!("CP-{}", zenchef_sim::util::random_hex(6).to_uppercase());
    let token = format!("cashpad-token-{}", zenchef_sim::util::random_hex(12));
    // The POS: broker on its LAN address, its client, its mDNS responder.
    let users = vec![
        (AGENT_USER.to_string(), token.clone()),
        (POS_USER.to_string(), POS_PASSWORD.to_string()),
    ];
    let broker = pos_ns
        .run(async move {
            start_broker_on(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                BrokerOptions { port: 0, users },
            )
        })
        .await
        .expect("broker in the POS namespace");
    let pos_iid = iid.clone();
    let pos = pos_ns
        .run(async move { Pos::connect(broker.port, &pos_iid, POS_USER, POS_PASSWORD).await })
        .await
        .expect("POS client");
    // Any port: the namespaces are ours alone.
    let mdns_port = 5399;
    let mut advert = PosAdvert::new(mdns_port, &iid, broker.port);
    advert.host_ip = POS_IP;
    advert.instance = "Cashpad Server (Le Bistrot)".into();
    let responder = pos_ns
        .run(async move { LanResponder::start(&advert, POS_IP, TTL_S) })
        .await
        .expect("mDNS responder in the POS namespace");
    // The box: the Zenchef fake on its loopback, then the agent.
    let zcfg = ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token-s3cret".into(),
        tables: (1..=8)
            .map(|i| (i, format!("T{i}"), "Salle".to_string()))
            .collect(),
        ..Default::default()
    };
    let fake = box_ns
        .run(async move { ZenchefFake::start(zcfg).await })
        .await
        .expect("Zenchef fake in the box namespace");
    let cfg = agent_config(
        dir.path(),
        &iid,
        &token,
        (mdns_port, "eth0"),
        &fake.base_url(),
    );
    let log = dir.path().join("agent.log");
    let out = File::create(&log).unwrap();
    let started = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", &lan.boxx])
        .arg(AGENT)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("agent starts");
    let agent = Agent { child, log };

    let mut eb = EventBuilder::new(1);
    let opened = chrono::Utc::now().with_timezone(&paris_winter());
    let events: Vec<Value> = (1..=7)
        .map(|i| eb.table_opened(&format!("O-{i}"), &format!("T{i}"), 2, opened))
        .collect();
    let publish = |e: Value| {
        let pos = pos.clone();
        pos_ns.run(async move { pos.publish_event(&e).await })
    };
    // Normal service first: the agent found the POS, subscribed (its
    // status is online) and delivers.
    pos.wait_until(Duration::from_secs(30), |s| {
        s.status.as_ref().is_some_and(|v| v["online"] == true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.tail(40)));
    publish(events[0].clone()).await.unwrap();
    zenchef_sim::util::wait_for(
        "the first event at Zenchef",
        Duration::from_secs(30),
        || arrivals(&fake, &events[..1])[0],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.tail(40)));
    // The cut starts 10 s after the agent (mdns-sd's own browse queries, at
    // 1, 2, 4 … 64 s intervals, leave the minute after it without a query).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    lan.uplink(false);
    let cut_at = Instant::now();
    for (i, e) in events[1..4].iter().enumerate() {
        tokio::time::sleep(Duration::from_secs([5, 15, 20][i])).await;
        publish(e.clone()).await.unwrap();
    }
    tokio::time::sleep(CUT.saturating_sub(cut_at.elapsed())).await;
    let heard_before = responder.queries().len();
    lan.uplink(true);
    let up_at = Instant::now();
    let up_wall = chrono::Utc::now();
    for e in &events[4..] {
        publish(e.clone()).await.unwrap();
    }
    let six = &events[1..];
    let deadline = up_at + CATCH_UP;
    while Instant::now() < deadline && arrivals(&fake, six).iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_stored = first_received(&dir.path().join("agent.db"), six)
        .map(|t| (t - up_wall).to_std().unwrap_or_default());
    let got = arrivals(&fake, six);
    let arrived: Vec<Duration> = got
        .iter()
        .flatten()
        .map(|t| t.saturating_duration_since(up_at))
        .collect();
    let log_text = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let queries_after = responder.queries().len() - heard_before.min(responder.queries().len());
    figures(&format!(
        "lan cut: TTL {TTL_S} s, uplink down {} s: {}/6 events at Zenchef within {} s of link-up; \
         link-up → first event stored {}, → first delivered {}, → all delivered {}; \
         mDNS queries heard after link-up: {queries_after}",
        CUT.as_secs(),
        arrived.len(),
        CATCH_UP.as_secs(),
        fmt_ms(first_stored),
        fmt_ms(arrived.iter().min().copied()),
        fmt_ms(
            (arrived.len() == 6)
                .then(|| arrived.iter().max().copied())
                .flatten()
        ),
    ));
    // Shown with --nocapture (and on failure): what the agent said.
    eprintln!("{}", agent.tail(25));
    assert_eq!(
        arrived.len(),
        6,
        "events at Zenchef within {CATCH_UP:?} of link-up: {got:?}\n{}",
        agent.tail(40)
    );
    assert!(
        log_text.contains("expired") && log_text.contains("keeps trying its last known address"),
        "the agent says the record expired and that it keeps trying:\n{}",
        agent.tail(40)
    );
    drop(agent);
    drop(responder);
}

/// The earliest `received_at` (the box's clock, this machine's) of
/// `events` in the agent's store, read-only.
fn first_received(store: &Path, events: &[Value]) -> Option<chrono::DateTime<chrono::Utc>> {
    let conn = rusqlite::Connection::open_with_flags(
        store,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    events
        .iter()
        .filter_map(|e| {
            conn.query_row(
                "SELECT received_at FROM events WHERE event_id = ?1",
                [e["event_id"].as_str()?],
                |r| r.get::<_, String>(0),
            )
            .ok()
        })
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .min()
}

/// While the agent has no MQTT connection it asks mDNS again at least
/// every 30 s (cashpad-local §1), on loopback (no root needed): the POS is
/// announced (TTL 75 min, so no cache refresh asks anything) at a port
/// where nothing listens. mdns-sd alone asks at 0, 1, 3, 7, 15, 31, 63 s …
/// after the browse starts: nothing between 31 s and 63 s. The agent's
/// fresh browse at 30 s asks again at 30, 31, 33, 37, 45 s, and at 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_disconnected_the_agent_asks_mdns_again_every_30_s() {
    let dir = tempfile::tempdir().unwrap();
    let iid = format!("CP-{}", zenchef_sim::util::random_hex(6).to_uppercase());
    let mdns_port = zenchef_sim::util::free_port().unwrap();
    let closed = zenchef_sim::util::free_port().unwrap();
    let mut advert = PosAdvert::new(mdns_port, &iid, closed);
    advert.instance = "Cashpad Server (Le Bistrot)".into();
    let responder = LanResponder::start(&advert, Ipv4Addr::LOCALHOST, 4500).unwrap();
    let fake = ZenchefFake::start(ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token-s3cret".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cfg = agent_config(
        dir.path(),
        &iid,
        "cashpad-token-x",
        (mdns_port, "lo"),
        &fake.base_url(),
    );
    let log = dir.path().join("agent.log");
    let out = File::create(&log).unwrap();
    let child = Command::new(AGENT)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("agent starts");
    let agent = Agent { child, log };
    let first = zenchef_sim::util::wait_for(
        "the agent's first mDNS query",
        Duration::from_secs(20),
        || responder.queries().first().map(|q| q.0),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.tail(20)));
    tokio::time::sleep(Duration::from_secs(58).saturating_sub(first.elapsed())).await;
    let heard: Vec<u64> = responder
        .queries()
        .iter()
        .map(|q| q.0.saturating_duration_since(first).as_millis() as u64)
        .collect();
    let late = heard
        .iter()
        .filter(|&&ms| (34_000..58_000).contains(&ms))
        .count();
    figures(&format!(
        "lan requery: queries heard (ms after the first): {heard:?}"
    ));
    eprintln!("{}", agent.tail(15));
    assert!(
        late >= 2,
        "no fresh mDNS query between 34 s and 58 s while disconnected: {heard:?}\n{}",
        agent.tail(20)
    );
    assert!(
        std::fs::read_to_string(&agent.log)
            .unwrap_or_default()
            .contains("nothing listens on the POS broker's port"),
        "the agent was disconnected:\n{}",
        agent.tail(20)
    );
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}

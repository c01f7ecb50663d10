//! What the agent says when the POS side fails, as the real binary says
//! it: each cause of a failed MQTT connection (a closed port, a broker that
//! does not answer, a TLS failure, a refused login — CONNACK or a broker
//! closing the connection after CONNECT) with its own sentence and hint,
//! in `doctor --json` and in the daemon's `status`; and a POS announcing
//! an Installation ID that cannot go into topics and URLs.
//!
//! Real parts only: rumqttd in process (sim::broker), mosquitto as a child
//! process when installed, a TCP listener that never answers, the mDNS
//! advert on loopback, the agent binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use zenchef_sim::broker::{BrokerOptions, start_broker};
use zenchef_sim::mdns::{PosAdvert, advertise};
use zenchef_sim::util::{free_port, wait_for};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");
const TOKEN: &str = "cp-token-right";

/// A configuration for a POS at a static address, or found by mDNS on
/// `mdns_port` (loopback); Zenchef on a closed port (not under test).
fn config(dir: &Path, token: &str, pos: Pos) -> PathBuf {
    let closed = free_port().unwrap();
    let cashpad = match pos {
        Pos::Static(port) => format!("host = \"127.0.0.1\"\nport = {port}\n"),
        Pos::Mdns(mdns) => format!("mdns_port = {mdns}\ninterfaces = [\"lo\"]\n"),
    };
    let text = format!(
        r#"[restaurant]
timezone = "UTC"
[cashpad]
token = "{token}"
{cashpad}
[zenchef]
restaurant_id = "1"
token = "zc-token-s3cret"
base_url = "http://127.0.0.1:{closed}/api/v1"
[store]
path = "{store}"
[update]
enabled = false
[http]
listen = ""
"#,
        store = dir.join("agent.db").display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Clone, Copy)]
enum Pos {
    Static(u16),
    Mdns(u16),
}

/// The `mqtt login` check of `doctor --json` (and the rest, for messages).
fn doctor_mqtt(config: &Path) -> (Value, String) {
    let out = Command::new(AGENT)
        .args(["doctor", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let d: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let c = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mqtt login")
        .unwrap_or_else(|| panic!("no mqtt login check in {text}"))
        .clone();
    assert!(
        !text.contains(TOKEN) && !text.contains("wrong-token"),
        "{text}"
    );
    (c, text)
}

fn detail(c: &Value) -> &str {
    c["detail"].as_str().unwrap_or("")
}
fn hint(c: &Value) -> &str {
    c["hint"].as_str().unwrap_or("")
}

#[test]
fn doctor_names_a_closed_port_a_refused_login_and_a_tls_failure_apart() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: the port, not the token.
    let closed = free_port().unwrap();
    let (c, all) = doctor_mqtt(&config(dir.path(), TOKEN, Pos::Static(closed)));
    assert_eq!(c["outcome"], "fail", "{all}");
    assert_eq!(
        detail(&c),
        format!(
            "nothing listens on the POS broker's port at 127.0.0.1:{closed} (connection refused)"
        )
    );
    assert!(
        hint(&c).starts_with("is the Cashpad server running?"),
        "{c}"
    );
    assert!(!hint(&c).contains("cashpad.token"), "{c}");

    // rumqttd closes the connection on a bad password: a refused login.
    let broker = start_broker(BrokerOptions {
        port: 0,
        users: vec![("zenchef-edge".into(), TOKEN.into())],
    })
    .unwrap();
    let (c, all) = doctor_mqtt(&config(dir.path(), "wrong-token", Pos::Static(broker.port)));
    assert_eq!(c["outcome"], "fail", "{all}");
    assert_eq!(
        detail(&c),
        format!(
            "the POS broker at 127.0.0.1:{} closed the connection during the MQTT login (user \
             zenchef-edge) without accepting it: it most likely refused the token",
            broker.port
        )
    );
    assert!(hint(&c).starts_with("check cashpad.token"), "{c}");
    // The right token is accepted.
    let (c, all) = doctor_mqtt(&config(dir.path(), TOKEN, Pos::Static(broker.port)));
    assert_eq!(c["outcome"], "ok", "{all}");

    // A POS announcing tls=1 whose port speaks plain MQTT: a TLS failure.
    let mdns = free_port().unwrap();
    let mut advert = PosAdvert::new(mdns, "CP-TLS1", broker.port);
    advert.tls = true;
    let _advert = advertise(advert).unwrap();
    let (c, all) = doctor_mqtt(&config(dir.path(), TOKEN, Pos::Mdns(mdns)));
    assert_eq!(c["outcome"], "fail", "{all}");
    assert!(
        detail(&c).starts_with(&format!(
            "the TLS handshake with the POS broker at 127.0.0.1:{} failed (TLS: ",
            broker.port
        )),
        "{c}"
    );
    assert!(hint(&c).starts_with("the POS announces TLS"), "{c}");
    assert!(!hint(&c).contains("cashpad.token"), "{c}");
}

/// mosquitto answers a bad password with CONNACK "not authorised".
#[test]
fn doctor_says_a_connack_refusal_is_the_token() {
    if !zenchef_sim::mosquitto::available() {
        assert!(
            std::env::var("CI").is_err(),
            "mosquitto is missing on CI: .ci/run must install it"
        );
        eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = zenchef_sim::mosquitto::Mosquitto::start(
        &dir.path().join("mosquitto"),
        &[("zenchef-edge".into(), TOKEN.into())],
        1,
    )
    .unwrap();
    let (c, all) = doctor_mqtt(&config(dir.path(), "wrong-token", Pos::Static(m.port())));
    assert_eq!(c["outcome"], "fail", "{all}");
    assert!(
        detail(&c).starts_with(&format!(
            "the POS broker at 127.0.0.1:{} refused the MQTT login (user zenchef-edge): ",
            m.port()
        )),
        "{c}"
    );
    assert!(hint(&c).starts_with("check cashpad.token"), "{c}");
    let (c, all) = doctor_mqtt(&config(dir.path(), TOKEN, Pos::Static(m.port())));
    assert_eq!(c["outcome"], "ok", "{all}");
}

/// The daemon, started against `config`; killed when dropped.
struct Daemon {
    child: Child,
    config: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let log = config.with_extension("log");
        let child = Command::new(AGENT)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            config: config.to_path_buf(),
            log,
        }
    }

    fn status(&self) -> Value {
        let out = Command::new(AGENT)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's `pos.problem` contains `needle`.
    async fn problem_with(&self, needle: &str, timeout: Duration) -> String {
        wait_for(needle, timeout, || {
            self.status()["pos"]["problem"]
                .as_str()
                .filter(|p| p.contains(needle))
                .map(str::to_string)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nstatus {}\nlog {}", self.status(), self.log()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_the_causes_apart_in_status_and_journal() {
    // A closed port, many times over: never the token.
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port().unwrap();
    let d = Daemon::start(&config(dir.path(), TOKEN, Pos::Static(closed)));
    let p = d
        .problem_with("nothing listens", Duration::from_secs(20))
        .await;
    assert_eq!(
        p,
        format!(
            "nothing listens on the POS broker's port at 127.0.0.1:{closed} (connection \
             refused): is the Cashpad server running? Is the MQTT port right (the POS's \
             announcement, or cashpad.port)?"
        )
    );
    // Past the third failure (the backoff is 0.5, 1, 2, 4 s) it still
    // blames the port.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = d.status();
    let p = s["pos"]["problem"].as_str().unwrap_or_default();
    assert!(
        p.starts_with("nothing listens") && !p.contains("cashpad.token"),
        "{s}"
    );
    assert!(!d.log().contains("cashpad.token"), "{}", d.log());
    drop(d);

    // A broker that closes the connection after CONNECT, repeatedly: a
    // refused token, said once it has repeated.
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(BrokerOptions {
        port: 0,
        users: vec![("zenchef-edge".into(), TOKEN.into())],
    })
    .unwrap();
    let d = Daemon::start(&config(dir.path(), "wrong-token", Pos::Static(broker.port)));
    let p = d
        .problem_with("times in a row", Duration::from_secs(30))
        .await;
    assert!(
        p.starts_with(&format!(
            "the POS broker at 127.0.0.1:{} closed the connection right after the MQTT login",
            broker.port
        )) && p.contains("it most likely refuses the token: if this repeats, check cashpad.token"),
        "{p}"
    );
    drop(d);

    // A port that accepts TCP and never answers: no answer, not the token.
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        silent.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(40);
        while std::time::Instant::now() < end {
            if let Ok((s, _)) = silent.accept() {
                kept.push(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let d = Daemon::start(&config(dir.path(), TOKEN, Pos::Static(port)));
    let p = d
        .problem_with("does not answer", Duration::from_secs(30))
        .await;
    assert_eq!(
        p,
        format!(
            "the POS broker at 127.0.0.1:{port} does not answer (Network timeout): is the POS on \
             and on this network at that address? A firewall may drop its MQTT port"
        )
    );
    drop(d);
    drop(held);
}

/// A POS whose TXT `iid` cannot go into MQTT topics and Zenchef Pay URL
/// paths is not used, and the ERROR line names the value, escaped; the
/// same POS re-announced with a proper iid is chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pos_announcing_an_unusable_installation_id_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(BrokerOptions {
        port: 0,
        users: vec![("zenchef-edge".into(), TOKEN.into())],
    })
    .unwrap();
    let mdns = free_port().unwrap();
    let mut advert = PosAdvert::new(mdns, "CP-1", broker.port);
    advert.instance = "Cashpad Server (Le Bistrot)".into();
    advert.iid = "CP/../1#\"x\n".into();
    let mut running = advertise(advert.clone()).unwrap();
    let d = Daemon::start(&config(dir.path(), TOKEN, Pos::Mdns(mdns)));
    let want = "POS \"Cashpad Server (Le Bistrot)\" announces TXT `iid` \"CP/../1#\\\"x\\n\" is \
                not an Installation ID: it must match [A-Za-z0-9._-]{1,64} (and not be `.` or \
                `..`); it is not used";
    wait_for(
        "the refusal in the journal",
        Duration::from_secs(20),
        || d.log().contains(want).then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let line = d
        .log()
        .lines()
        .find(|l| l.contains(want))
        .unwrap()
        .to_string();
    assert!(line.contains("ERROR"), "{line}");
    let s = wait_for("the daemon's record", Duration::from_secs(20), || {
        let s = d.status();
        (s["daemon_running"] == true).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(s["pos"]["state"], "not_found", "{s}");
    assert_eq!(s["pos"]["installation_id"], Value::Null, "{s}");
    // doctor says the same, with a hint about the announcement.
    let out = Command::new(AGENT)
        .args(["doctor", "--json", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pos version")
        .unwrap()
        .clone();
    assert_eq!(v["outcome"], "fail");
    assert_eq!(v["detail"], want);
    assert!(
        v["hint"].as_str().unwrap().contains("Installation ID"),
        "{v}"
    );
    // Re-announced with a proper iid: chosen and connected.
    advert.iid = "CP-4F2A91".into();
    running.update(advert).unwrap();
    wait_for("connected", Duration::from_secs(30), || {
        let s = d.status();
        (s["pos"]["state"] == "connected").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(d.status()["pos"]["installation_id"], "CP-4F2A91");
}

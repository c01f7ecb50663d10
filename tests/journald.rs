//! Logging under systemd: the agent's log lines reach a **real**
//! systemd-journald with the ids as journal fields (`EVENT_ID`, `ORDER_ID`,
//! `BOOKING_ID`, `PAYMENT_ID`) and `SYSLOG_IDENTIFIER=zenchef-edge`, so
//! `journalctl -u zenchef-edge ORDER_ID=O-881` works on the box; without a
//! journal socket they fall back to human-readable stderr.
//!
//! The journald is Debian's own binary, started in a private mount
//! namespace (`unshare -m`, a tmpfs on `/run`): it owns
//! `/run/systemd/journal/socket` only there, nothing on the machine is
//! touched. The processes under test enter that namespace with `nsenter`,
//! and the journal files are read with `journalctl -D` through
//! `/proc/<journald>/root/`. This needs root (CI runs as root); elsewhere
//! the journald tests say why they are skipped — and fail under `CI=true`,
//! so CI cannot silently skip them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use zenchef_edge::message_ids as ids;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, paris_winter};
use zenchef_sim::zenchef::{Fault, ZenchefConfig};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");
const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// Set in the re-executed test process that logs into the namespace.
const CHILD_ENV: &str = "ZENCHEF_EDGE_JOURNALD_CHILD";
/// `sh -c` script that runs `"$0" "$@"` the way systemd starts a service
/// whose stderr is the journal: `JOURNAL_STREAM` is the device and inode of
/// its stderr (systemd.exec(5)).
const AS_SERVICE: &str =
    "export JOURNAL_STREAM=\"$(stat -L -c %d:%i /proc/self/fd/2)\"; exec \"$0\" \"$@\"";

/// Why the journald tests cannot run here, if they cannot.
fn journald_unavailable() -> Option<String> {
    // SAFETY-free check of the effective uid through /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid_root {
        return Some("not root (a private mount namespace needs CAP_SYS_ADMIN)".into());
    }
    for tool in [
        JOURNALD,
        "/usr/bin/journalctl",
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} is missing (apt-get install systemd util-linux)"
            ));
        }
    }
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Some("unshare -m is not permitted here".into());
    }
    None
}

/// Skips (returns true) when journald cannot run, but never under CI.
fn skip_without_journald(test: &str) -> bool {
    match journald_unavailable() {
        None => false,
        Some(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: cannot run in CI: {why}");
            }
            eprintln!("{test}: SKIPPED: {why}");
            true
        }
    }
}

/// A systemd-journald alone in its own mount namespace.
struct Journald {
    child: Child,
}

impl Journald {
    fn start() -> Journald {
        // /var/log is hidden too, so journald keeps to /run/log/journal
        // (volatile) whatever the machine's /var/log/journal holds; and
        // /var/lib/systemd, so a test can give `journalctl -x` a message
        // catalog of its own there.
        let script = format!(
            "set -e
             mount -t tmpfs tmpfs /run
             mount -t tmpfs tmpfs /var/log
             mount -t tmpfs tmpfs /var/lib/systemd
             mkdir -p /run/systemd/journal /run/log/journal /var/lib/systemd/catalog
             exec {JOURNALD}"
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare starts");
        let j = Journald { child };
        let socket = j.root().join("run/systemd/journal/socket");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "journald did not create its socket within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        j
    }

    /// The namespace's root as seen from outside.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
    }

    /// A command that runs `program` inside the namespace, as systemd would
    /// start a service: `JOURNAL_STREAM` names the stream its stderr is
    /// (`<device>:<inode>` of fd 2, whatever the caller connects there),
    /// `RUST_LOG` unset. Arguments added to the command go to `program`.
    fn command(&self, program: &Path) -> Command {
        let mut c = self.command_with_stream(program, None);
        c.env_remove("JOURNAL_STREAM");
        c
    }

    /// [`Journald::command`] with `JOURNAL_STREAM` set to `stream` as is
    /// (`None`: the identity of the program's stderr).
    fn command_with_stream(&self, program: &Path, stream: Option<&str>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.child.id().to_string())
            .args(["-m", "--"]);
        match stream {
            None => {
                c.args(["sh", "-c", AS_SERVICE]).arg(program);
            }
            Some(s) => {
                c.arg(program).env("JOURNAL_STREAM", s);
            }
        }
        c.env_remove("RUST_LOG");
        c
    }

    /// Every entry of the journal (JSON export), filtered by `matches`
    /// (`FIELD=value`), waiting up to 10 s for `wanted` to hold.
    fn entries(&self, matches: &[&str], wanted: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let dir = self.root().join("run/log/journal");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("journalctl")
                .arg("-D")
                .arg(&dir)
                .args(["-o", "json", "--no-pager"])
                .args(matches)
                .output()
                .expect("journalctl runs");
            let entries: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if wanted(&entries) || Instant::now() >= deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry[name].as_str()
}

/// The child half of `the_log_layer_sends_each_id_as_its_own_field`:
/// initialises logging exactly as the daemon does and logs one line in
/// spans that carry the ids. Does nothing unless started by that test.
#[test]
#[ignore = "child half of the_log_layer_sends_each_id_as_its_own_field"]
fn journald_child_logs_with_every_id() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    zenchef_edge::logging::init("info");
    let event = tracing::info_span!("event", event_id = "E-7f3a");
    let _e = event.enter();
    let order = tracing::info_span!("order", order_id = "O-881");
    let _o = order.enter();
    tracing::debug!("below the configured filter: must not reach the journal");
    tracing::info!(
        booking_id = 4711,
        payment_id = "PAY-42",
        "journald field check"
    );
    tracing::warn!(
        message_id = zenchef_edge::message_ids::UPDATE_INSTALLED,
        "journald message id check"
    );
}

#[test]
fn the_log_layer_sends_each_id_as_its_own_field() {
    if skip_without_journald("the_log_layer_sends_each_id_as_its_own_field") {
        return;
    }
    let journald = Journald::start();
    let me = std::env::current_exe().expect("test binary path");
    let out = journald
        .command(&me)
        .args([
            "--exact",
            "journald_child_logs_with_every_id",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("journald field check"),
        "with a journal socket the line must not go to stderr: {stderr}"
    );

    let mine = journald.entries(&["SYSLOG_IDENTIFIER=zenchef-edge"], |e| !e.is_empty());
    let line = mine
        .iter()
        .find(|e| field(e, "MESSAGE") == Some("journald field check"))
        .unwrap_or_else(|| panic!("the line is not in the journal: {mine:#?}"));
    assert_eq!(field(line, "EVENT_ID"), Some("E-7f3a"), "{line:#}");
    assert_eq!(field(line, "ORDER_ID"), Some("O-881"), "{line:#}");
    assert_eq!(field(line, "BOOKING_ID"), Some("4711"), "{line:#}");
    assert_eq!(field(line, "PAYMENT_ID"), Some("PAY-42"), "{line:#}");
    assert_eq!(field(line, "SYSLOG_IDENTIFIER"), Some("zenchef-edge"));
    // info → "notice" (5) is tracing-journald's mapping.
    assert_eq!(field(line, "PRIORITY"), Some("5"), "{line:#}");
    let prefixed: Vec<&String> = line
        .as_object()
        .map(|o| o.keys().filter(|k| k.starts_with("F_")).collect())
        .unwrap_or_default();
    assert!(prefixed.is_empty(), "no F_ prefix expected: {prefixed:?}");
    // The journal's own filter matches the field: what a technician types.
    let by_order = journald.entries(&["ORDER_ID=O-881", "PAYMENT_ID=PAY-42"], |e| !e.is_empty());
    assert_eq!(by_order.len(), 1, "{by_order:#?}");
    // `message_id` becomes the journal's own MESSAGE_ID field.
    let by_id = journald.entries(
        &[&format!(
            "MESSAGE_ID={}",
            zenchef_edge::message_ids::UPDATE_INSTALLED
        )],
        |e| !e.is_empty(),
    );
    assert_eq!(by_id.len(), 1, "{by_id:#?}");
    assert_eq!(
        field(&by_id[0], "MESSAGE"),
        Some("journald message id check")
    );
    assert_eq!(field(&by_id[0], "PRIORITY"), Some("4"));
    // The `[log] filter` ("info") holds under journald too.
    assert!(
        !mine
            .iter()
            .any(|e| field(e, "MESSAGE").is_some_and(|m| m.contains("below the configured filter"))),
        "a debug line passed the info filter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_logs_an_order_to_journald_with_its_ids() {
    if skip_without_journald("the_agent_logs_an_order_to_journald_with_its_ids") {
        return;
    }
    let journald = Journald::start();
    let dir = tempfile::tempdir().unwrap();
    // The rig starts `agent_bin`: a wrapper that enters the namespace.
    let wrapper = dir.path().join("agent-in-namespace");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec nsenter -t {} -m -- sh -c '{AS_SERVICE}' {AGENT} \"$@\"\n",
            journald.child.id()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let zenchef = ZenchefConfig {
        tables: vec![(1, "T1".into(), "Salle".into())],
        ..Default::default()
    };
    let mut rig = Rig::start(RigOptions::new(zenchef), &wrapper, &dir.path().join("rig"))
        .await
        .expect("simulators start");
    // An unreadable store: moved aside at the start.
    std::fs::write(rig.store_path(), vec![0x5a; 64 * 1024]).unwrap();
    let now = Utc::now().with_timezone(&paris_winter());
    rig.pos
        .publish_floorplan(&json!({
            "tables": [{"name": "T1", "room": "Salle", "seats": 4}],
            "updated_at": now.to_rfc3339(),
        }))
        .await
        .unwrap();
    rig.spawn_agent().unwrap();
    // Events published before the agent subscribed would not reach it.
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));

    let mut events = EventBuilder::new(1);
    let opened = events.table_opened("O-881", "T1", 2, now);
    let event_id = opened["event_id"].as_str().unwrap().to_string();
    rig.pos.publish_event(&opened).await.unwrap();
    rig.wait_status("the order delivered", Duration::from_secs(60), |s| {
        s["counts"]["delivered"].as_i64() == Some(1)
    })
    .await
    .unwrap();

    // A Zenchef outage while an order waits: its start and its end.
    rig.zenchef.set_fault(Fault::Status(503)).await.unwrap();
    let second = events.table_opened("O-882", "T1", 2, now);
    rig.pos.publish_event(&second).await.unwrap();
    journald.entries(
        &[&format!("MESSAGE_ID={}", ids::ZENCHEF_OUTAGE_BEGAN)],
        |e| !e.is_empty(),
    );
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    rig.wait_status("the second order delivered", Duration::from_secs(60), |s| {
        s["counts"]["delivered"].as_i64() == Some(2)
    })
    .await
    .unwrap();
    journald.entries(
        &[&format!("MESSAGE_ID={}", ids::ZENCHEF_OUTAGE_ENDED)],
        |e| !e.is_empty(),
    );
    // A call refused for good: a dead letter.
    rig.zenchef
        .fail_matching(|m, _| m == "POST", 422, "walk-ins refused by the test");
    let poison = events.table_opened("O-883", "T1", 2, now);
    let poison_id = poison["event_id"].as_str().unwrap().to_string();
    rig.pos.publish_event(&poison).await.unwrap();
    rig.wait_status("one dead letter", Duration::from_secs(60), |s| {
        s["counts"]["dead"].as_i64() == Some(1)
    })
    .await
    .unwrap();
    let code = rig.stop_agent(Duration::from_secs(20)).unwrap();
    assert_eq!(code, Some(0), "clean stop\n{}", rig.log_tail(20));

    // Each key event carries its MESSAGE_ID, which the journal filters by.
    let with_id = |id: &str| journald.entries(&[&format!("MESSAGE_ID={id}")], |e| !e.is_empty());
    let aside = with_id(ids::STORE_MOVED_ASIDE);
    assert_eq!(aside.len(), 1, "{aside:#?}");
    assert!(
        field(&aside[0], "MESSAGE").is_some_and(|m| m.contains("STORE REPLACED")),
        "{aside:#?}"
    );
    assert_eq!(field(&aside[0], "PRIORITY"), Some("3"));
    let dead = with_id(ids::DEAD_LETTER);
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(field(&dead[0], "ORDER_ID"), Some("O-883"), "{dead:#?}");
    assert_eq!(field(&dead[0], "EVENT_ID"), Some(poison_id.as_str()));
    assert!(
        field(&dead[0], "MESSAGE").is_some_and(|m| m.contains("walk-ins refused by the test")),
        "{dead:#?}"
    );
    let began = with_id(ids::ZENCHEF_OUTAGE_BEGAN);
    assert_eq!(began.len(), 1, "one line per outage: {began:#?}");
    assert!(
        field(&began[0], "MESSAGE").is_some_and(|m| m.contains("503")),
        "{began:#?}"
    );
    let ended = with_id(ids::ZENCHEF_OUTAGE_ENDED);
    assert_eq!(ended.len(), 1, "{ended:#?}");

    // `journalctl -x` explains the dead letter with the shipped catalog
    // (its database in the namespace's /var/lib/systemd/catalog, where
    // journalctl looks, as after postinst's `journalctl --update-catalog`).
    let root = catalog_root();
    std::fs::copy(
        root.path().join("var/lib/systemd/catalog/database"),
        journald.root().join("var/lib/systemd/catalog/database"),
    )
    .unwrap();
    let explained = Command::new("nsenter")
        .arg("-t")
        .arg(journald.child.id().to_string())
        .args(["-m", "--", "journalctl", "-D", "/run/log/journal"])
        .args(["-x", "--no-pager", "-o", "short"])
        .arg(format!("MESSAGE_ID={}", ids::DEAD_LETTER))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(text.contains("is a dead letter"), "{text}");
    assert!(
        text.contains("Subject: A POS event is a dead letter"),
        "the catalog's explanation: {text}"
    );
    assert!(text.contains("zenchef-edge outbox retry"), "{text}");

    let order = journald.entries(&["SYSLOG_IDENTIFIER=zenchef-edge", "ORDER_ID=O-881"], |e| {
        e.iter().any(|x| x.get("BOOKING_ID").is_some())
    });
    assert!(
        order.iter().all(|e| field(e, "EVENT_ID").is_some()),
        "every line of the order's delivery carries the event id: {order:#?}"
    );
    assert!(
        order
            .iter()
            .any(|e| field(e, "EVENT_ID") == Some(event_id.as_str())),
        "the event id {event_id} is a field: {order:#?}"
    );
    let booking = order
        .iter()
        .find_map(|e| field(e, "BOOKING_ID"))
        .unwrap_or_else(|| panic!("no BOOKING_ID field on the order's lines: {order:#?}"));
    assert!(booking.parse::<i64>().is_ok_and(|b| b > 0), "{booking}");
    let bookings = rig.zenchef.bookings();
    assert!(
        bookings
            .iter()
            .any(|b| b["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(booking)),
        "BOOKING_ID {booking} is the walk-in created at the Zenchef fake: {bookings:?}"
    );
    // The start line is in the journal, not in the captured stderr.
    let started = journald.entries(&["SYSLOG_IDENTIFIER=zenchef-edge"], |e| {
        e.iter()
            .any(|x| field(x, "MESSAGE").is_some_and(|m| m.contains(" started: store ")))
    });
    assert!(
        started
            .iter()
            .any(|x| field(x, "MESSAGE").is_some_and(|m| m.contains(" started: store "))),
        "start line missing from the journal"
    );
    assert!(
        !rig.log().contains(" started: store "),
        "under journald the agent must not log to stderr: {}",
        rig.log_tail(20)
    );
}

/// A configuration for an agent that only has to start and stop.
fn idle_config(dir: &Path) -> PathBuf {
    let mdns = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[cashpad]
token = "t"
mdns_port = {mdns}
interfaces = ["lo"]
[zenchef]
restaurant_id = "654321"
token = "t"
base_url = "http://127.0.0.1:9"
[store]
path = "{}"
[update]
enabled = false
[http]
listen = ""
"#,
            dir.join("agent.db").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    cfg
}

#[test]
fn without_a_journal_socket_it_logs_to_stderr_and_runs() {
    // JOURNAL_STREAM says "systemd", but there is no journald to talk to.
    let dir = tempfile::tempdir().unwrap();
    let cfg = idle_config(dir.path());
    let log = dir.path().join("stderr.log");
    let mut cmd = if journald_unavailable().is_none() {
        // An empty /run: certainly no socket.
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"")
            .arg(AGENT);
        c
    } else if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("SKIPPED: this machine has a journald and no private namespace is possible");
        return;
    } else {
        Command::new(AGENT)
    };
    let mut child = cmd
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("JOURNAL_STREAM", "8:4242")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(" started: store ") {
            break text;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the agent exited ({st}) instead of falling back to stderr:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no start line on stderr:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Human-readable: level word and message, not journal fields.
    let line = text
        .lines()
        .find(|l| l.contains(" started: store "))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(!text.contains("SYSLOG_IDENTIFIER"), "{text}");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("no clean stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A program started by a service inherits `JOURNAL_STREAM` even when its
/// stderr is redirected elsewhere: with a journal there, it must still log
/// to its stderr, since the variable does not name that stderr.
#[test]
fn a_journal_stream_that_is_not_its_stderr_is_ignored() {
    if skip_without_journald("a_journal_stream_that_is_not_its_stderr_is_ignored") {
        return;
    }
    let journald = Journald::start();
    let me = std::env::current_exe().expect("test binary path");
    let out = journald
        .command_with_stream(&me, Some("1:1"))
        .args([
            "--exact",
            "journald_child_logs_with_every_id",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("child runs");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("journald field check"),
        "the line goes to stderr: {stderr}"
    );
    // With its fields as text, the message id included.
    assert!(
        stderr.contains(&format!(
            "message_id=\"{}\"",
            zenchef_edge::message_ids::UPDATE_INSTALLED
        )),
        "{stderr}"
    );
    let mine = journald.entries(&["SYSLOG_IDENTIFIER=zenchef-edge"], |_| false);
    assert!(
        mine.is_empty(),
        "nothing natively in the journal: {mine:#?}"
    );
}

/// The catalog the package ships parses with journalctl and explains
/// exactly the ids of `zenchef_edge::message_ids`, each with a subject, its
/// author and a documentation line.
#[test]
fn the_message_catalog_parses_and_covers_every_message_id() {
    if !Path::new("/usr/bin/journalctl").exists() {
        assert!(
            std::env::var("CI").is_ok_and(|v| v != "true") || std::env::var("CI").is_err(),
            "journalctl is missing in CI"
        );
        eprintln!("SKIPPED: no journalctl");
        return;
    }
    let root = catalog_root();
    let out = Command::new("journalctl")
        .arg(format!("--root={}", root.path().display()))
        .arg("--list-catalog")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, subject)| (id.to_string(), subject.to_string()))
        .collect();
    let mut ids: Vec<&str> = zenchef_edge::message_ids::ALL
        .iter()
        .map(|(_, id)| *id)
        .collect();
    ids.sort_unstable();
    let mut seen: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    seen.sort_unstable();
    assert_eq!(seen, ids, "catalog ids vs message_ids::ALL");
    for (id, subject) in &listed {
        let subject = subject
            .strip_prefix("zenchef-edge: ")
            .unwrap_or_else(|| panic!("{id}: Defined-By is not zenchef-edge: {subject}"));
        assert!(subject.len() > 10, "{id}: {subject}");
        let entry = Command::new("journalctl")
            .arg(format!("--root={}", root.path().display()))
            .args(["--dump-catalog", id])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&entry.stdout);
        assert!(
            text.contains("Documentation: man:zenchef-edge(1)"),
            "{text}"
        );
        let body = text.split("\n\n").nth(1).unwrap_or("");
        assert!(body.len() > 40, "{id}: the entry explains nothing: {text}");
    }
}

/// A directory laid out as a root for `journalctl --root`: the package's
/// catalog in `usr/lib/systemd/catalog/`, compiled into its database.
fn catalog_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib/systemd/catalog");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/zenchef-edge.catalog"),
        dir.join("zenchef-edge.catalog"),
    )
    .unwrap();
    let out = Command::new("journalctl")
        .arg(format!("--root={}", root.path().display()))
        .arg("--update-catalog")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "journalctl complains about the catalog: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

/// `systemctl status` shows the agent's `STATUS=` line: the agent, started
/// as systemd would with `NOTIFY_SOCKET`, sends `READY=1`, then one-line
/// statuses, each different from the one before and at most one a second:
/// no POS on the LAN, Zenchef unreachable (a closed port) with its error,
/// no token anywhere.
#[test]
fn the_agent_tells_systemd_its_state_in_one_status_line() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cfg = idle_config(dir.path());
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replacen("token = \"t\"", "token = \"cp-SECRET-7f3a\"", 1)
        .replacen("token = \"t\"", "token = \"zc-SECRET-9b2c\"", 1);
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(AGENT)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut statuses: Vec<(Instant, String)> = Vec::new();
    let mut ready = false;
    let mut deadline = Instant::now() + Duration::from_secs(30);
    let mut outage_seen = false;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if !outage_seen && statuses.iter().any(|(_, s)| s.contains("Zenchef OUTAGE")) {
            // Listen 4 s more: nothing changes, so nothing more is sent.
            outage_seen = true;
            deadline = Instant::now() + Duration::from_secs(4);
        }
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            if line == "READY=1" {
                ready = true;
            } else if let Some(s) = line.strip_prefix("STATUS=") {
                statuses.push((Instant::now(), s.to_string()));
            }
        }
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert!(ready, "no READY=1\n{log}");
    let lines: Vec<&str> = statuses.iter().map(|(_, s)| s.as_str()).collect();
    let outage = lines
        .iter()
        .find(|s| s.contains("Zenchef OUTAGE"))
        .unwrap_or_else(|| panic!("no outage status: {lines:#?}\n{log}"));
    assert!(
        outage.starts_with("POS not found · queue 0 · Zenchef OUTAGE · Pay off · last: Zenchef: "),
        "{outage}"
    );
    assert!(
        outage.contains("Connection refused"),
        "says what failed: {outage}"
    );
    assert_eq!(
        lines.last(),
        Some(outage),
        "the state holds, nothing more is sent: {lines:#?}"
    );
    for pair in statuses.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "sent only on change: {lines:#?}");
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(800),
            "two statuses {gap:?} apart: {lines:#?}"
        );
    }
    for s in &lines {
        assert!(!s.contains('\n'));
        assert!(!s.contains("SECRET"), "a token in the status: {s}");
    }
}

//! Self-update, end to end: the real agent binary, copied into a temp "box"
//! (`<dir>/bin/zenchef-edge`, store in `<dir>/state/`), against the release
//! server simulator on 127.0.0.1, with real files and real processes.
//!
//! The "new version" is the agent binary under test with its version slot
//! rewritten (`@@ZENCHEF-EDGE-VERSION@@<version>`, see docs/decisions.md):
//! the same code, reporting another version — what a real release differs
//! by, without a second build. The broken release is a shell script that
//! answers `--version` but exits at once when started as the daemon.
//!
//! Where systemd matters, [`Supervisor`] (tests/common/unit.rs) plays the
//! unit: before each start it runs `zenchef-edge.previous update
//! boot-check` (`ExecStartPre=-…`), gives both the same fresh
//! `INVOCATION_ID`, and restarts the agent whatever its exit code except 78
//! (`Restart=always`, `RestartPreventExitStatus=78`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::unit::Supervisor;
use serde_json::Value;
use zenchef_sim::update_server::{Fault, Keypair, ReleaseSpec, UpdateServer};
use zenchef_sim::util::{free_port, wait_for};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");
const CURRENT: &str = env!("CARGO_PKG_VERSION");
const MARK: &[u8] = b"@@ZENCHEF-EDGE-VERSION@@";
/// The restart code the agent exits with after an install or a rollback.
const EX_RESTART: i32 = 75;

/// The next minor version after the one under test.
fn next_version() -> String {
    let p: Vec<u32> = CURRENT.split('.').map(|x| x.parse().unwrap()).collect();
    format!("{}.{}.0", p[0], p[1] + 1)
}

/// The agent binary under test without its debug info (`strip
/// --strip-debug`: same code, a quarter of the size, so the debug-built
/// agent hashes and unpacks it in seconds). Made once per test process.
fn agent() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(dir).unwrap();
        let out = dir.join("zenchef-edge-stripped");
        let tmp = dir.join(format!("zenchef-edge-stripped.{}", std::process::id()));
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&tmp)
            .arg(AGENT)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            fs::copy(AGENT, &tmp).unwrap();
        }
        fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// Offsets of the version slot marker in [`agent`] (grep is fast where a
/// byte loop in a debug build is not).
fn slot_offsets() -> &'static [usize] {
    static OFFSETS: OnceLock<Vec<usize>> = OnceLock::new();
    OFFSETS.get_or_init(|| {
        let out = Command::new("grep")
            .args(["-obUaF", std::str::from_utf8(MARK).unwrap()])
            .arg(agent())
            .output()
            .unwrap();
        let offsets: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').next()?.parse().ok())
            .collect();
        assert!(!offsets.is_empty(), "no version slot in the agent binary");
        offsets
    })
}

/// The agent binary with its version slot rewritten.
fn agent_with_version(version: &str) -> Vec<u8> {
    let mut bin = fs::read(agent()).unwrap();
    for &off in slot_offsets() {
        assert_eq!(&bin[off..off + MARK.len()], MARK);
        let at = off + MARK.len();
        let slot = &mut bin[at..at + 40];
        slot.fill(0);
        slot[..version.len()].copy_from_slice(version.as_bytes());
    }
    bin
}

fn same_as_agent(path: &Path) -> bool {
    fs::read(path).unwrap() == fs::read(agent()).unwrap()
}

/// The target triple of the agent (`--version`: `… (commit X, TARGET)`).
fn target() -> String {
    let out = Command::new(agent()).arg("--version").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.trim()
        .trim_end_matches(')')
        .rsplit(", ")
        .next()
        .unwrap()
        .to_string()
}

fn minute_now_utc() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ((secs / 60) % 1440) as u32
}

fn hhmm(m: u32) -> String {
    let m = m % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A window (UTC) around now, or starting two hours from now.
fn window(inside: bool) -> String {
    let now = minute_now_utc();
    if inside {
        format!("{}-{}", hhmm(now + 1440 - 60), hhmm(now + 60))
    } else {
        format!("{}-{}", hhmm(now + 120), hhmm(now + 180))
    }
}

struct TestBox {
    dir: tempfile::TempDir,
    server: UpdateServer,
    key: Keypair,
    target: String,
}

impl TestBox {
    async fn new() -> TestBox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::create_dir_all(dir.path().join("state")).unwrap();
        let bin = dir.path().join("bin/zenchef-edge");
        fs::copy(agent(), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let b = TestBox {
            dir,
            server: UpdateServer::start().await.unwrap(),
            key: Keypair::generate(),
            target: target(),
        };
        b.configure(&window(true), 100, None);
        b
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin/zenchef-edge")
    }
    fn previous(&self) -> PathBuf {
        self.dir.path().join("bin/zenchef-edge.previous")
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("state/agent.db")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// Writes the configuration; `key: None` = the release key.
    fn configure(&self, window: &str, rollout: u8, key: Option<&str>) {
        let closed = free_port().unwrap();
        let key = key
            .map(String::from)
            .unwrap_or_else(|| self.key.public_base64());
        let text = format!(
            r#"[restaurant]
timezone = "UTC"
[cashpad]
token = "cp"
host = "127.0.0.1"
port = {closed}
[zenchef]
restaurant_id = "1"
token = "zc"
base_url = "http://127.0.0.1:{closed}/api/v1"
[store]
path = "{store}"
[update]
enabled = true
manifest_url = "{url}"
public_key = "{key}"
window = "{window}"
rollout_percent = {rollout}
check_interval_s = 1
confirm_after_s = 1
[http]
listen = ""
"#,
            store = self.store().display(),
            url = self.server.manifest_url(),
        );
        fs::write(self.config(), text).unwrap();
        fs::set_permissions(self.config(), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Serves the local status page on a free port (rewrites the
    /// configuration's `listen = ""`); answers the port.
    fn with_http(&self) -> u16 {
        let port = free_port().unwrap();
        let text = fs::read_to_string(self.config()).unwrap();
        fs::write(
            self.config(),
            text.replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\"")),
        )
        .unwrap();
        port
    }

    fn publish(&self, version: &str, binary: Vec<u8>) {
        self.server
            .publish(&ReleaseSpec::new(version, &self.target, binary), &self.key);
    }

    /// Runs the installed binary: `zenchef-edge <args> --config …`.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(self.bin())
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("INVOCATION_ID")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn version_of(path: &Path) -> String {
        let out = Command::new(path).arg("--version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn state(&self) -> Value {
        fs::read(self.dir.path().join("state/update-state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// The box is as before: same binary, nothing pending, no staging or
    /// download leftovers.
    fn assert_unchanged(&self) {
        assert!(same_as_agent(&self.bin()), "the binary changed");
        assert!(
            self.state()["pending_version"].is_null(),
            "{}",
            self.state()
        );
        let bin_dir: Vec<String> = fs::read_dir(self.dir.path().join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            bin_dir,
            vec!["zenchef-edge".to_string()],
            "leftovers in bin/"
        );
        let dl = self.dir.path().join("state/update-download");
        if dl.exists() {
            assert_eq!(
                fs::read_dir(&dl).unwrap().count(),
                0,
                "leftovers in the download dir"
            );
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

async fn wait_state(b: &TestBox, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(secs), || {
        let s = b.state();
        f(&s).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; state {}\n--- log ---\n{}", b.state(), b.log_tail()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_update_is_installed_confirmed_and_runs() {
    let b = TestBox::new().await;
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let sup = Supervisor::start(b.dir.path());

    let st = wait_state(&b, "the new version confirmed", 60, |s| {
        s["pending_version"].is_null()
            && s["last_event"]
                .as_str()
                .is_some_and(|e| e.contains("confirmed healthy"))
    })
    .await;
    assert!(st["failed_versions"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(
        sup.exits(),
        vec![EX_RESTART],
        "one restart into the new version"
    );
    assert!(
        TestBox::version_of(&b.bin()).starts_with(&format!("zenchef-edge {new} ")),
        "{}",
        TestBox::version_of(&b.bin())
    );
    assert!(
        TestBox::version_of(&b.previous()).starts_with(&format!("zenchef-edge {CURRENT} ")),
        "the previous binary is kept"
    );
    // The running daemon is the new version (its own state record).
    wait_for(
        "status showing the new version",
        Duration::from_secs(20),
        || {
            let (code, out, _) = b.cli(&["status", "--json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            (code == 0 && v["daemon"]["version"] == new.as_str()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail()));
    // It does not download again: it is up to date.
    let hits = b.server.manifest_hits();
    wait_for("two more checks", Duration::from_secs(20), || {
        (b.server.manifest_hits() >= hits + 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(b.server.archive_hits(), 1);
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(
        out.contains(&format!("nothing newer (running {new})")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_that_exits_at_once_is_rolled_back_and_never_retried() {
    let b = TestBox::new().await;
    let new = next_version();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'zenchef-edge {new} (commit broken, {t})' ;;\n  *) echo 'broken build: cannot start' >&2; exit 1 ;;\nesac\n",
        t = b.target
    );
    b.publish(&new, script.into_bytes());
    let sup = Supervisor::start(b.dir.path());

    let st = wait_state(&b, "the rollback", 60, |s| {
        s["failed_versions"]
            .as_array()
            .is_some_and(|f| f.iter().any(|v| v == new.as_str()))
    })
    .await;
    assert!(st["pending_version"].is_null(), "{st}");
    assert!(
        st["last_event"].as_str().unwrap().contains("rolled back"),
        "{st}"
    );
    // Installed (75), the broken one exited at once (1), then the previous
    // binary was put back by ExecStartPre and is running.
    assert_eq!(sup.exits()[..2], [EX_RESTART, 1], "{:?}", sup.exits());
    assert!(same_as_agent(&b.bin()), "the previous binary is back");
    // It keeps checking and never downloads the blacklisted version again.
    let hits = b.server.manifest_hits();
    wait_for("three more checks", Duration::from_secs(30), || {
        (b.server.manifest_hits() >= hits + 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail()));
    assert_eq!(b.server.archive_hits(), 1);
    assert_eq!(sup.exits().len(), 2, "no more restarts: {:?}", sup.exits());
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(
        out.contains("rolled back (failed health check): not retried"),
        "{out}"
    );
}

/// Starts the daemon, waits for `checks` manifest requests, and asserts no
/// archive was downloaded.
async fn assert_checks_without_download(b: &TestBox, checks: u64) -> Supervisor {
    let sup = Supervisor::start(b.dir.path());
    wait_for("checks", Duration::from_secs(30), || {
        (b.server.manifest_hits() >= checks).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail()));
    assert_eq!(b.server.archive_hits(), 0, "{}", b.log_tail());
    assert!(sup.exits().is_empty(), "{:?}", sup.exits());
    sup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_nothing_is_installed() {
    let b = TestBox::new().await;
    b.configure(&window(false), 100, None);
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let sup = assert_checks_without_download(&b, 3).await;
    drop(sup);
    b.assert_unchanged();
    let (code, out, _) = b.cli(&["update", "check"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("available    {new} (upgrade)")),
        "{out}"
    );
    assert!(
        out.contains("not now: outside the maintenance window"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_zero_never_takes_part() {
    let b = TestBox::new().await;
    b.configure(&window(true), 0, None);
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let sup = assert_checks_without_download(&b, 3).await;
    drop(sup);
    b.assert_unchanged();
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(out.contains("not in the staged rollout"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_order_postpones_until_it_is_paid() {
    let b = TestBox::new().await;
    {
        let (store, _) = zenchef_edge::outbox::Store::open(&b.store()).unwrap();
        drop(store);
        let c = rusqlite::Connection::open(b.store()).unwrap();
        c.execute(
            "INSERT INTO orders(order_id, table_name, state, last_seq) VALUES ('O-1', '12', 'open', 1)",
            [],
        )
        .unwrap();
    }
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let sup = assert_checks_without_download(&b, 3).await;
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(out.contains("not now: 1 order(s) open on the POS"), "{out}");
    // The table pays: the next check installs.
    let c = rusqlite::Connection::open(b.store()).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(
        "UPDATE orders SET state = 'paid' WHERE order_id = 'O-1'",
        [],
    )
    .unwrap();
    wait_state(&b, "the new version confirmed", 60, |s| {
        s["last_event"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{new} confirmed healthy")))
    })
    .await;
    drop(sup);
}

/// A table left open on the POS for more than a service day
/// (`update.open_order_max_h`) no longer holds updates back; `status`
/// names the orders that do, and since when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_left_open_does_not_hold_updates_for_ever() {
    let b = TestBox::new().await;
    let day_ago = (chrono::Utc::now() - chrono::Duration::hours(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let recent = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    {
        let (store, _) = zenchef_edge::outbox::Store::open(&b.store()).unwrap();
        drop(store);
        let c = rusqlite::Connection::open(b.store()).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO orders(order_id, table_name, state, last_seq) VALUES
                ('O-forgotten', '7', 'open', 1), ('O-dinner', '12', 'open', 2);
             INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             VALUES ('e1', 1, 'table.opened', 'O-forgotten', '2026-01-01T12:00:00+01:00', '{{}}', 1, '{day_ago}'),
                    ('e2', 2, 'table.opened', 'O-dinner', '2026-01-01T20:00:00+01:00', '{{}}', 1, '{recent}');"
        ))
        .unwrap();
    }
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let (_, out, _) = b.cli(&["status", "--json"]);
    let st: Value = serde_json::from_str(&out).unwrap();
    let held = st["update_held_by"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{st}");
    assert_eq!(held[0]["order_id"], "O-dinner");
    assert_eq!(held[0]["table"], "12");
    assert_eq!(held[0]["since"], Value::from(recent.as_str()));
    assert_eq!(held[0]["stale"], false);
    let (_, text, _) = b.cli(&["status"]);
    assert!(
        text.contains("held back by 1 open order(s), the oldest O-dinner (table 12) since"),
        "{text}"
    );
    let sup = assert_checks_without_download(&b, 3).await;
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(out.contains("not now: 1 order(s) open on the POS"), "{out}");
    // The dinner table pays; the forgotten one stays open: installed.
    let c = rusqlite::Connection::open(b.store()).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(
        "UPDATE orders SET state = 'paid' WHERE order_id = 'O-dinner'",
        [],
    )
    .unwrap();
    wait_state(&b, "the new version confirmed", 60, |s| {
        s["last_event"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{new} confirmed healthy")))
    })
    .await;
    let log = fs::read_to_string(b.log()).unwrap();
    assert!(
        log.contains("1 order(s) open on the POS for more than 16 h no longer hold updates back"),
        "{log}"
    );
    drop(sup);
}

/// `update apply` against a faulty server: refused, nothing changed; exit
/// `code` (1 refused, 75 the server failed: try again later).
async fn apply_refused(fault: Fault, want: &str, code_wanted: i32) {
    let b = TestBox::new().await;
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    b.server.set_fault(fault);
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, code_wanted, "{fault:?}: {out}{err}");
    assert!(err.contains(want), "{fault:?}: {err}");
    b.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_archive_is_refused() {
    apply_refused(Fault::BadSignature, "bad signature on ", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_signed_with_another_key_is_refused() {
    // The simulator's manifest names no key id: both causes are named.
    apply_refused(
        Fault::WrongKey,
        "the file is damaged or tampered, or signed by another key",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_changes_nothing() {
    apply_refused(Fault::TruncatedDownload, "cannot download", 75).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_is_refused() {
    apply_refused(Fault::WrongSha256, "sha256 mismatch", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_changes_nothing() {
    apply_refused(Fault::ServerError, "HTTP 503", 75).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_changes_nothing() {
    let b = TestBox::new().await;
    b.server.stop();
    let (code, _, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 75, "EX_TEMPFAIL: try again later");
    assert!(err.contains("cannot fetch the manifest"), "{err}");
    let (code, out, _) = b.cli(&["update", "check"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot fetch the manifest"), "{out}");
    b.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_is_never_installed() {
    let b = TestBox::new().await;
    b.publish(&next_version(), agent_with_version(&next_version()));
    b.server.set_fault(Fault::OlderVersion);
    let (code, _, err) = b.cli(&["update", "apply", "--no-restart", "--force"]);
    assert_eq!(code, 1);
    assert!(err.contains("never downgrade"), "{err}");
    assert_eq!(b.server.archive_hits(), 0);
    b.assert_unchanged();
}

/// Updates enabled without a signing key: refused before anything is
/// fetched, and said everywhere — a WARN at the daemon's start, the
/// `updates` FAIL line of `doctor`, `update_problem` in `status` (text and
/// JSON) and on the local page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_public_key_refuses_every_update() {
    let b = TestBox::new().await;
    b.configure(&window(true), 100, Some(""));
    let port = b.with_http();
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let (code, _, err) = b.cli(&["update", "apply", "--no-restart", "--force"]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.starts_with("updates refused: no signing key: update.public_key: missing or empty"),
        "{err}"
    );
    assert_eq!(
        b.server.manifest_hits(),
        0,
        "the key is checked before any fetch"
    );
    assert_eq!(b.server.archive_hits(), 0, "nothing downloaded");
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(
        out.contains("key          updates refused: no signing key"),
        "{out}"
    );
    assert!(
        out.contains("not now: update.public_key: missing or empty"),
        "{out}"
    );
    // The daemon does not install either, and says why at its start.
    let sup = assert_checks_without_download(&b, 2).await;
    let log = fs::read_to_string(b.log()).unwrap();
    let warn = log
        .lines()
        .find(|l| l.contains("update: updates refused: no signing key"))
        .unwrap_or_else(|| panic!("no start WARN in\n{log}"));
    assert!(warn.contains("WARN"), "{warn}");
    let want = "updates refused: no signing key (update.public_key: missing or empty)";
    let (code, out, err) = b.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["update_problem"], want, "{st}");
    assert!(
        st["problems"]
            .as_array()
            .unwrap()
            .contains(&Value::from("updates_refused")),
        "{st}"
    );
    let (_, text, _) = b.cli(&["status"]);
    assert!(text.contains("updates refused: no signing key"), "{text}");
    let (code, out, _) = b.cli(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  updates       ") && l.ends_with(want)),
        "{out}"
    );
    assert!(out.contains("hint: set update.public_key in"), "{out}");
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("id=\"update-problem\" class=\"bad\">{want}<")),
        "{page}"
    );
    drop(sup);
    b.assert_unchanged();
}

/// The state directory and the binary's directory given to `nobody`, as
/// on a box where they belong to the service user; the configuration stays
/// root-only (0600), as in /etc/zenchef-edge.
fn give_to_nobody(b: &TestBox) {
    fs::set_permissions(b.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["state", "bin"] {
        chown_tree(&b.dir.path().join(d), NOBODY);
    }
}

const NOBODY: u32 = 65534;

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// Every file under `p` owned by root.
fn root_owned(p: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let m = fs::symlink_metadata(p).unwrap();
    if m.uid() == 0 {
        out.push(format!("{} ({:o})", p.display(), m.mode() & 0o7777));
    }
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            out.extend(root_owned(&e.unwrap().path()));
        }
    }
    out
}

/// `sudo zenchef-edge update apply` (and the other commands run as root)
/// leave no root-owned file: they act as the owner of the state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_root_leave_no_root_owned_file() {
    let b = TestBox::new().await;
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    // A store, as the daemon leaves it after a clean stop (no -wal, -shm).
    let (code, _, err) = b.cli(&["self-test", "--store", b.store().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    give_to_nobody(&b);
    let whoami = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout).trim(),
        "0",
        "the tests run as root"
    );
    // Read-only commands: a read-only SQLite open creates -shm and -wal.
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["outbox", "list"],
        &["update", "check"],
        &["doctor", "--json"],
    ] {
        let (code, out, err) = b.cli(args);
        assert!(code == 0 || code == 1, "{args:?}: {code} {out}{err}");
        assert_eq!(
            root_owned(&b.dir.path().join("state")),
            Vec::<String>::new(),
            "after {args:?}"
        );
    }
    assert!(
        b.dir.path().join("state/agent.db-shm").exists(),
        "the read-only open made -shm"
    );
    assert!(
        b.dir.path().join("state/device-id").exists(),
        "update check made the device id"
    );
    // The install: forked, the child as nobody; the parent (root) would
    // restart the service.
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("installed {new} (was ")), "{out}");
    assert!(
        out.contains("restart the agent to run it: systemctl restart zenchef-edge"),
        "{out}"
    );
    assert!(
        TestBox::version_of(&b.bin()).starts_with(&format!("zenchef-edge {new} ")),
        "the new binary is in place"
    );
    assert_eq!(b.state()["pending_version"], Value::from(new.as_str()));
    assert_eq!(
        root_owned(&b.dir.path().join("state")),
        Vec::<String>::new()
    );
    assert_eq!(root_owned(&b.dir.path().join("bin")), Vec::<String>::new());
    for f in [
        "update.lock",
        "update-download",
        "update-state.json",
        "device-id",
    ] {
        assert!(b.dir.path().join("state").join(f).exists(), "{f}");
    }
    // Writes through the store too.
    let (code, _, err) = b.cli(&["outbox", "retry", "--all-dead"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        root_owned(&b.dir.path().join("state")),
        Vec::<String>::new()
    );
}

/// A box where a command once run as root left `update.lock` and
/// `update-download/` (root-owned): the daemon's checks fail; after three
/// in a row `status` (text, JSON), the page and `doctor` say since when
/// and why, with the command that fixes it; and once fixed, it updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_update_checks_are_said_in_status_doctor_and_the_page() {
    let b = TestBox::new().await;
    let port = b.with_http();
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    give_to_nobody(&b);
    // The daemon runs as nobody: it reads its configuration (systemd hands
    // it a copy).
    std::os::unix::fs::chown(b.config(), Some(NOBODY), Some(NOBODY)).unwrap();
    let state = b.dir.path().join("state");
    fs::write(state.join("update.lock"), b"").unwrap();
    fs::set_permissions(state.join("update.lock"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(state.join("update-download")).unwrap();
    fs::set_permissions(
        state.join("update-download"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let log = fs::File::create(b.log()).unwrap();
    let mut daemon = {
        use std::os::unix::process::CommandExt;
        Command::new(b.bin())
            .args(["run", "--config"])
            .arg(b.config())
            .uid(NOBODY)
            .gid(NOBODY)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let st = wait_for("updates failing", Duration::from_secs(60), || {
        let (_, out, _) = b.cli(&["status", "--json"]);
        let v: Value = serde_json::from_str(&out).ok()?;
        v["update_problem"]
            .as_str()
            .is_some_and(|p| p.starts_with("updates failing since"))
            .then_some(v)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail()));
    let p = st["update_problem"].as_str().unwrap().to_string();
    assert!(
        p.contains(": taking the update lock: Permission denied (os error 13) (a file in ")
            && p.contains(&format!("sudo chown -R nobody: {})", state.display()))
            && p.ends_with("failed checks in a row)"),
        "{p}"
    );
    assert!(
        st["problems"]
            .as_array()
            .unwrap()
            .contains(&Value::from("updates_failing")),
        "{st}"
    );
    let (_, text, _) = b.cli(&["status"]);
    assert!(text.contains("updates failing since"), "{text}");
    let (code, out, _) = b.cli(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  updates       updates failing since")),
        "{out}"
    );
    let files = out
        .lines()
        .find(|l| l.starts_with("FAIL  state files   "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        files.contains("files in ")
            && files.contains("not owned by nobody: update-download (root), update.lock (root)"),
        "{files}"
    );
    assert!(
        out.contains(&format!("sudo chown -R nobody: {}", state.display())),
        "{out}"
    );
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"update-problem\" class=\"bad\">updates failing since"),
        "{page}"
    );
    let log = fs::read_to_string(b.log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("update: updates failing since")),
        "{log}"
    );
    // The fix the hint gives (here for nobody): the next check installs.
    chown_tree(&state, NOBODY);
    let code = wait_for(
        "the install and its restart",
        Duration::from_secs(60),
        || daemon.try_wait().unwrap().map(|s| s.code()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail()));
    assert_eq!(code, Some(EX_RESTART), "{}", b.log_tail());
    assert_eq!(b.state()["pending_version"], Value::from(new.as_str()));
    assert_eq!(root_owned(&state), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_cannot_run_is_refused_before_anything_changes() {
    let b = TestBox::new().await;
    b.publish(&next_version(), b"\x7fELF\x02\x01\x01 not really".to_vec());
    let (code, _, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 1);
    assert!(err.contains("smoke test"), "{err}");
    b.assert_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_by_hand_ignores_the_window_but_not_open_orders() {
    let b = TestBox::new().await;
    b.configure(&window(false), 0, None);
    let new = next_version();
    b.publish(&new, agent_with_version(&new));
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("installed {new} (was {CURRENT})")),
        "{out}"
    );
    drop(zenchef_edge::outbox::Store::open(&b.store()).unwrap()); // status reads the store
    let (_, status, err) = b.cli(&["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(
        status["update_state"]["pending_version"],
        Value::from(new.clone())
    );
    assert!(TestBox::version_of(&b.bin()).starts_with(&format!("zenchef-edge {new} ")));
    let st = b.state();
    assert_eq!(st["pending_version"], Value::from(new.clone()), "{st}");
    assert_eq!(st["attempts"], Value::from(0));
}

/// The documented release procedure (scripts/release.sh with the zipsign
/// tool) produces what the box accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_script_output_is_accepted() {
    if Command::new("zipsign").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install zipsign (cargo install zipsign)"
        );
        eprintln!("SKIPPED: zipsign is not installed (cargo install zipsign)");
        return;
    }
    let b = TestBox::new().await;
    let work = b.dir.path().join("release");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("release.key"), b.key.zipsign_private_key()).unwrap();
    let new = next_version();
    fs::write(work.join("zenchef-edge"), agent_with_version(&new)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh");
    let run = |allow: bool| {
        let mut c = Command::new("bash");
        c.arg(script)
            .args(["--version", &new, "--key"])
            .arg(work.join("release.key"))
            .arg("--out")
            .arg(work.join("dist"))
            .arg("--binary")
            .arg(format!(
                "{}={}",
                b.target,
                work.join("zenchef-edge").display()
            ))
            .args(["--min-previous", CURRENT])
            .env_remove("ZENCHEF_ALLOW_PLACEHOLDER_KEY");
        if allow {
            c.env("ZENCHEF_ALLOW_PLACEHOLDER_KEY", "1");
        }
        c.output().unwrap()
    };
    // Built from this repository, the binary carries the placeholder key
    // of packaging/channel.toml: no release of it without the test flag.
    if zenchef_edge::config::built_in_channel().placeholder {
        let refused = run(false);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{err}");
        assert!(
            err.contains("was built with the placeholder signing key of packaging/channel.toml"),
            "{err}"
        );
        assert!(!work.join("dist/manifest.json").exists());
    }
    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("zenchef-edge-{new}-{}.tar.gz", b.target);
    let manifest = fs::read_to_string(work.join("dist/manifest.json")).unwrap();
    let archive = fs::read(work.join("dist").join(&name)).unwrap();
    b.server.publish_raw(manifest, vec![(name, archive)]);
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(TestBox::version_of(&b.bin()).starts_with(&format!("zenchef-edge {new} ")));
}

/// Whether the zipsign tool is here (CI installs it); says why not.
fn zipsign_available() -> bool {
    if Command::new("zipsign").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install zipsign (cargo install zipsign)"
    );
    eprintln!("SKIPPED: zipsign is not installed (cargo install zipsign)");
    false
}

/// The key id a box shows for the key whose zipsign private key file is
/// `private` (64 bytes: secret, then public).
fn key_id_of(private: &[u8]) -> String {
    zenchef_sim::update_server::sha256_hex(&private[32..])[..16].to_string()
}

/// Runs scripts/release.sh under `umask 077` for `b`'s target with the
/// private key `key` (and `--pub pub_key` when given), output in `dir/dist`.
fn release_script(
    b: &TestBox,
    dir: &Path,
    key: &[u8],
    pub_key: Option<&[u8]>,
    version: &str,
) -> std::process::Output {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("release.key"), key).unwrap();
    fs::write(dir.join("zenchef-edge"), agent_with_version(version)).unwrap();
    let mut args = vec![
        "--version".to_string(),
        version.to_string(),
        "--key".into(),
        dir.join("release.key").display().to_string(),
        "--out".into(),
        dir.join("dist").display().to_string(),
        "--binary".into(),
        format!("{}={}", b.target, dir.join("zenchef-edge").display()),
    ];
    if let Some(p) = pub_key {
        fs::write(dir.join("release.pub"), p).unwrap();
        args.push("--pub".into());
        args.push(dir.join("release.pub").display().to_string());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/release.sh");
    Command::new("bash")
        .arg("-c")
        .arg("umask 077 && exec bash \"$0\" \"$@\"")
        .arg(script)
        .args(&args)
        // The binary under test carries the repository's placeholder key.
        .env("ZENCHEF_ALLOW_PLACEHOLDER_KEY", "1")
        .output()
        .unwrap()
}

/// A release is served by a web server running as another user: the
/// archive and the manifest are 0644 whatever the umask, and the manifest
/// names the signing key's id, the one `update check` shows for the box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_script_writes_readable_files_that_name_their_key() {
    if !zipsign_available() {
        return;
    }
    let b = TestBox::new().await;
    let work = b.dir.path().join("release");
    let new = next_version();
    let private = b.key.zipsign_private_key();
    let out = release_script(&b, &work, &private, Some(&private[32..]), &new);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("zenchef-edge-{new}-{}.tar.gz", b.target);
    for file in [name.as_str(), "manifest.json"] {
        let mode = fs::metadata(work.join("dist").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{file}: {mode:o}");
    }
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(work.join("dist/manifest.json")).unwrap())
            .unwrap();
    let id = key_id_of(&private);
    assert_eq!(manifest["releases"][0]["key_id"], Value::from(id.clone()));
    let (_, out, _) = b.cli(&["update", "check"]);
    assert!(out.contains(&format!("key          key id {id} ")), "{out}");
}

/// The two refusals a technician must tell apart: the release was signed
/// with another key (the channel or the box's key is wrong), or the file
/// changed after signing (damaged or tampered). Both leave the box as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_and_a_tampered_archive_are_told_apart() {
    if !zipsign_available() {
        return;
    }
    let b = TestBox::new().await;
    let new = next_version();
    let name = format!("zenchef-edge-{new}-{}.tar.gz", b.target);
    let box_id = key_id_of(&b.key.zipsign_private_key());

    // Signed with the key of another channel.
    let other = Keypair::generate().zipsign_private_key();
    let work = b.dir.path().join("other-key");
    let out = release_script(&b, &work, &other, None, &new);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.server.publish_raw(
        fs::read_to_string(work.join("dist/manifest.json")).unwrap(),
        vec![(
            name.clone(),
            fs::read(work.join("dist").join(&name)).unwrap(),
        )],
    );
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{name} is signed by an unknown key (key id {}; this box trusts key id {box_id}): \
             the release channel (update.manifest_url) or the box's key (update.public_key) is wrong",
            key_id_of(&other)
        )),
        "{err}"
    );
    assert!(!err.contains("bad signature"), "{err}");
    b.assert_unchanged();

    // Signed with the box's key, then one byte changed (the manifest's
    // sha256 follows, as when the server's copy is what was altered).
    let work = b.dir.path().join("tampered");
    let private = b.key.zipsign_private_key();
    let out = release_script(&b, &work, &private, None, &new);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = fs::read(work.join("dist").join(&name)).unwrap();
    let manifest = fs::read_to_string(work.join("dist/manifest.json")).unwrap();
    let sha = zenchef_sim::update_server::sha256_hex(&archive);
    let at = archive.len() / 2;
    archive[at] ^= 0x40;
    let manifest = manifest.replace(&sha, &zenchef_sim::update_server::sha256_hex(&archive));
    b.server
        .publish_raw(manifest, vec![(name.clone(), archive)]);
    let (code, out, err) = b.cli(&["update", "apply", "--no-restart"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "bad signature on {name}: the file is damaged or tampered"
        )),
        "{err}"
    );
    assert!(!err.contains("unknown key"), "{err}");
    b.assert_unchanged();
}

/// `--pub` that is not the public half of `--key`: the script fails before
/// signing anything and leaves nothing to upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_script_refuses_a_pub_that_does_not_match_and_leaves_nothing() {
    if !zipsign_available() {
        return;
    }
    let b = TestBox::new().await;
    let work = b.dir.path().join("mismatch");
    let private = b.key.zipsign_private_key();
    let other = Keypair::generate().zipsign_private_key();
    let out = release_script(&b, &work, &private, Some(&other[32..]), &next_version());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "(key id {}) is not the public half of --key",
            key_id_of(&other)
        )) && err.contains(&key_id_of(&private)),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(work.join("dist"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in --out: {left:?}");
}

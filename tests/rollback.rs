//! Rollback onto a store the next release migrated, with a real next
//! release: `zenchef-edge-next`, built from this tree with the test-only
//! feature `test-next` (one more, additive, migration — schema 7; one more
//! configuration key — `config_version = 4`; a health check that fails by
//! design), installed by the real update machinery from the release
//! server simulator, then rolled back by the previous binary's
//! `update boot-check` as the systemd unit runs it.
//!
//! The box is the real agent against the real simulators (broker, POS,
//! Zenchef fake) and a real SQLite file. What is asserted: the previous
//! binary starts on the store schema 7 left (and on the newer
//! configuration, whose unknown key it ignores with a warning), is never
//! stopped with 78, and delivers every event stored by both versions —
//! those the next release took while Zenchef was down included — each
//! Zenchef effect exactly once, in `seq` order per order.
//!
//! The build of the next release costs about a minute on 2 cores (the
//! agent's crate compiled once more with the feature, in the same target
//! directory: no dependency is rebuilt). The test prints the box's log
//! lines that tell the story (`ROLLBACK-LOG …`) past the output capture.

mod common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::unit::Supervisor;
use common::*;
use serde_json::Value;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::update_server::{Keypair, ReleaseSpec, UpdateServer};
use zenchef_sim::util::wait_for;
use zenchef_sim::zenchef::Fault;

const CURRENT: &str = env!("CARGO_PKG_VERSION");
const MARK: &[u8] = b"@@ZENCHEF-EDGE-VERSION@@";

fn next_version() -> String {
    let p: Vec<u32> = CURRENT.split('.').map(|x| x.parse().unwrap()).collect();
    format!("{}.{}.0", p[0], p[1] + 1)
}

/// `cargo build --features test-next --bin zenchef-edge-next` into the
/// target directory of this test's own binaries.
fn build_next() -> PathBuf {
    let target_dir = Path::new(AGENT).parent().unwrap().parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--locked",
        "-p",
        "zenchef-edge",
        "--features",
        "test-next",
        "--bin",
        "zenchef-edge-next",
    ])
    .arg("--manifest-path")
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
    .env("CARGO_TARGET_DIR", target_dir);
    // As a plain `cargo build` would (see zenchef_sim::util::build_agent).
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_BIN_")
            || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    let t = Instant::now();
    let status = cmd.status().expect("running cargo");
    assert!(status.success(), "building zenchef-edge-next failed");
    log_line(&format!(
        "built zenchef-edge-next (feature test-next) in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let bin = Path::new(AGENT).with_file_name("zenchef-edge-next");
    assert!(bin.is_file(), "{}", bin.display());
    bin
}

/// A copy of `bin` without debug info (smaller archives, faster hashing).
fn stripped(bin: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(format!("{name}.{}", std::process::id()));
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        fs::copy(bin, &out).unwrap();
    }
    out
}

/// `bin`'s bytes with the version slot saying `version`.
fn with_version(bin: &Path, version: &str) -> Vec<u8> {
    let out = Command::new("grep")
        .args(["-obUaF", std::str::from_utf8(MARK).unwrap()])
        .arg(bin)
        .output()
        .unwrap();
    let offsets: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    assert!(!offsets.is_empty(), "no version slot in {}", bin.display());
    let mut bytes = fs::read(bin).unwrap();
    for off in offsets {
        let at = off + MARK.len();
        let slot = &mut bytes[at..at + 40];
        slot.fill(0);
        slot[..version.len()].copy_from_slice(version.as_bytes());
    }
    bytes
}

fn target_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(')')
        .rsplit(", ")
        .next()
        .unwrap()
        .to_string()
}

/// A line for the closing note, past the test harness's capture.
fn log_line(s: &str) {
    let _ = writeln!(std::io::stderr(), "ROLLBACK-LOG {s}");
}

struct BoxDir {
    dir: PathBuf,
}

impl BoxDir {
    fn bin(&self) -> PathBuf {
        self.dir.join("bin/zenchef-edge")
    }
    fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
    fn store(&self) -> PathBuf {
        self.dir.join("state/agent.db")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    fn state(&self) -> Value {
        fs::read(self.dir.join("state/update-state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
    fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }
    fn tail(&self) -> String {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(50)..].join("\n")
    }
    fn status(&self) -> Option<Value> {
        let out = Command::new(self.bin())
            .args(["status", "--json", "--config"])
            .arg(self.config())
            .env_remove("INVOCATION_ID")
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// The box's configuration, for the rig's simulators and the release
/// server; `next`: as a technician following the next release's notes
/// would leave it (its format version and its new key).
fn config_text(rig: &Rig, b: &BoxDir, server: &UpdateServer, key: &Keypair, next: bool) -> String {
    let o = &rig.opts;
    let (head, store_extra) = if next {
        ("config_version = 4\n", "test_next_key = \"on\"\n")
    } else {
        ("", "")
    };
    format!(
        r#"{head}[restaurant]
timezone = "{tz}"
[cashpad]
token = "{ctoken}"
installation_id = "{iid}"
mdns_port = {mdns}
interfaces = ["lo"]
[zenchef]
restaurant_id = "{rid}"
token = "{ztoken}"
base_url = "{base}"
poll_interval_s = 1
[store]
path = "{store}"
{store_extra}[update]
enabled = true
manifest_url = "{url}"
public_key = "{pubkey}"
window = "00:00-23:59"
rollout_percent = 100
check_interval_s = 1
confirm_after_s = 1
[http]
listen = ""
[delivery]
retry_max_s = 1
credentials_retry_s = 2
http_timeout_s = 2
"#,
        tz = o.timezone,
        ctoken = o.cashpad_token,
        iid = o.iid,
        mdns = rig.mdns_port,
        rid = o.zenchef.restaurant_id,
        ztoken = o.zenchef.token,
        base = rig.zenchef.base_url(),
        store = b.store().display(),
        url = server.manifest_url(),
        pubkey = key.public_base64(),
    )
}

fn schema(store: &Path) -> Option<(i64, i64, i64)> {
    let c =
        rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    c.query_row(
        "SELECT applied, min_version, (SELECT user_version FROM pragma_user_version)
           FROM schema_compat",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_binary_runs_on_the_next_releases_store_and_drains_it() {
    let _heavy = heavy().await;
    let next_bin = build_next();
    let current = stripped(Path::new(AGENT), "zenchef-edge-current");
    let next = stripped(&next_bin, "zenchef-edge-next");
    let next_v = next_version();

    let w = Workload::generate(seed(), 16, 4, 4);
    let dir = tempfile::tempdir().unwrap();
    let b = BoxDir {
        dir: dir.path().to_path_buf(),
    };
    fs::create_dir_all(b.dir.join("bin")).unwrap();
    fs::create_dir_all(b.dir.join("state")).unwrap();
    fs::copy(&current, b.bin()).unwrap();
    fs::set_permissions(b.bin(), fs::Permissions::from_mode(0o755)).unwrap();
    let rig = Rig::start(
        RigOptions::new(w.zenchef_config()),
        &b.bin(),
        &b.dir.join("rig"),
    )
    .await
    .unwrap();
    let server = UpdateServer::start().await.unwrap();
    let key = Keypair::generate();
    fs::write(b.config(), config_text(&rig, &b, &server, &key, false)).unwrap();
    fs::set_permissions(b.config(), fs::Permissions::from_mode(0o600)).unwrap();
    let sup = Supervisor::start(&b.dir);
    wait_online(&rig).await;
    rig.pos.publish_floorplan(&w.floorplan()).await.unwrap();

    // 1. This release delivers half of the orders, whole.
    let (first, second): (Vec<_>, Vec<_>) = w.orders.iter().partition(|o| {
        o.order_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n % 2 == 0)
    });
    let of = |orders: &[&OrderSpec]| -> Vec<Value> {
        let ids: std::collections::HashSet<&str> =
            orders.iter().map(|o| o.order_id.as_str()).collect();
        w.events
            .iter()
            .filter(|e| ids.contains(e["data"]["order_id"].as_str().unwrap_or("")))
            .cloned()
            .collect()
    };
    let (first_events, second_events) = (of(&first), of(&second));
    assert!(!first_events.is_empty() && !second_events.is_empty());
    publish_all(&rig, &first_events).await;
    wait_for(
        "the first orders delivered",
        Duration::from_secs(60),
        || {
            let (stored, queued, _) = store_counts(&b.store())?;
            (stored == first_events.len() as i64 && queued == 0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));

    // 2. Zenchef goes down; the next release is published and installed.
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    let target = target_of(&current);
    server.publish(
        &ReleaseSpec::new(&next_v, &target, with_version(&next, &next_v)),
        &key,
    );
    wait_for(
        "the next release migrating the store",
        Duration::from_secs(90),
        || schema(&b.store()).filter(|s| s.0 == 7),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));
    let (applied, floor, user_version) = schema(&b.store()).unwrap();
    assert_eq!(
        (applied, floor, user_version),
        (7, 5, 5),
        "additive: floor 5"
    );
    // The technician follows the next release's notes.
    fs::write(b.config(), config_text(&rig, &b, &server, &key, true)).unwrap();

    // 3. It takes the other half while Zenchef is down.
    publish_all(&rig, &second_events).await;
    wait_for(
        "the next release storing the rest",
        Duration::from_secs(60),
        || {
            let (stored, _, _) = store_counts(&b.store())?;
            (stored == w.events.len() as i64).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));
    let (_, queued, _) = store_counts(&b.store()).unwrap();
    assert!(queued > 0, "the next release's events wait for Zenchef");
    assert_eq!(b.state()["pending_version"], Value::from(next_v.as_str()));
    assert!(
        b.log_text()
            .contains("test-next build: the health check fails by design"),
        "{}",
        b.tail()
    );

    // 4. It never proved healthy: killed, the unit starts again, the
    // previous binary's boot-check rolls back.
    sup.kill();
    wait_for("the rollback", Duration::from_secs(60), || {
        b.state()["failed_versions"]
            .as_array()
            .is_some_and(|f| f.iter().any(|v| v == next_v.as_str()))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));
    assert_eq!(
        fs::read(b.bin()).unwrap(),
        fs::read(&current).unwrap(),
        "the previous binary is back"
    );
    let st = wait_for(
        "this release running again",
        Duration::from_secs(30),
        || {
            b.status().filter(|s| {
                s["daemon_running"] == Value::Bool(true) && s["daemon"]["version"] == CURRENT
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));
    assert_eq!(st["store_state"], "ok", "{st}");

    // 5. Zenchef is back: everything both versions stored is delivered.
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let want = w.events.len() as i64;
    let view = wait_for("everything delivered", Duration::from_secs(90), || {
        let (stored, queued, _) = store_counts(&b.store())?;
        (stored == want && queued == 0)
            .then(|| StoreView::read(&b.store()))
            .flatten()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", b.tail()));
    check_guarantees(&rig, &w, &view);
    assert_eq!(view.counter("delivered"), w.events.len() as i64);
    let exits = sup.exits();
    assert_eq!(
        exits,
        vec![75, -1],
        "installed (75), killed (-1), and no exit since: never 78"
    );
    assert_eq!(schema(&b.store()).unwrap().0, 7, "the store stays at 7");
    let marks: i64 = rusqlite::Connection::open(b.store())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM next_marks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(marks, 1, "what the next release wrote is still there");

    let log = b.log_text();
    for want in [
        "update: installed",
        "first start of",
        "ROLLED BACK",
        "migrated by a newer release (schema 7, usable from schema 5)",
        "store.test_next_key: not known to this release, ignored",
    ] {
        assert!(log.contains(want), "no {want:?} in the log\n{}", b.tail());
    }
    drop(sup);
    for l in log.lines().filter(|l| {
        [
            "zenchef-edge ",
            "update",
            "schema",
            "config:",
            "ROLLED BACK",
            "[supervisor]",
            "drained",
        ]
        .iter()
        .any(|p| l.contains(p))
            && !l.contains("not installing")
            && !l.contains("nothing newer")
    }) {
        log_line(l);
    }
    log_line(&format!(
        "delivered {} events of {} orders ({} stored by {next_v} while Zenchef was down), exits {:?}",
        view.counter("delivered"),
        w.orders.len(),
        second_events.len(),
        exits
    ));
}

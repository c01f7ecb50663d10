//! The box's surroundings failing, with the real agent binary:
//! - the POS broker restarts (a real mosquitto, stopped and started
//!   again): the agent reconnects, re-subscribes and loses nothing
//!   (persistent session), also for what was queued while it was away;
//! - the POS changes address (mDNS re-announcement on another listener):
//!   the agent follows;
//! - the store's filesystem fills up (a small tmpfs): the agent stops
//!   acknowledging, logs one ERROR a minute, never crashes, resumes when
//!   space returns, loses nothing;
//! - the store file is corrupt at start: moved aside (kept), a fresh store,
//!   said loudly, no crash loop;
//! - the box clock is wrong (libfaketime, years off): delivery still
//!   follows `seq`, `Retry-After` dates are read against the server's
//!   clock; a certificate "not yet valid" is retried with a message naming
//!   the clock.
//!
//! Tools: `mosquitto` and `faketime` (Debian packages, installed by
//! `.ci/run`); `mount` as root. Outside CI a missing tool skips the test
//! with a message; in CI it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use zenchef_sim::harness::{AGENT_USER, POS_PASSWORD, POS_USER, RigOptions};
use zenchef_sim::mosquitto::{self, Mosquitto};
use zenchef_sim::zenchef::{Fault, RetryAfter};

async fn wait_stored(rig: &zenchef_sim::harness::Rig, n: usize, timeout: Duration) {
    zenchef_sim::util::wait_for("events stored", timeout, || {
        store_counts(&rig.store_path()).and_then(|(m, _, _)| (m as usize >= n).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
}

fn mosquitto_users(opts: &RigOptions) -> Vec<(String, String)> {
    vec![
        (AGENT_USER.into(), opts.cashpad_token.clone()),
        (POS_USER.into(), POS_PASSWORD.into()),
    ]
}

/// Scenario 6a: broker restarts, with the agent connected and with the
/// agent away (messages queued for its persistent session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_survives_broker_restarts_and_loses_nothing() {
    if !require("mosquitto", mosquitto::available()) {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 40, 5, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mut mq =
        Mosquitto::start(&dir.path().join("mosquitto"), &mosquitto_users(&opts), 1).unwrap();
    opts.broker_port = Some(mq.port());
    let mut rig = start_rig(opts, &dir.path().join("rig")).await;
    let parts: Vec<&[serde_json::Value]> = w.events.chunks(50).collect();
    assert_eq!(parts.len(), 4);

    // 1. Normal service.
    publish_all(&rig, parts[0]).await;
    wait_stored(&rig, 50, Duration::from_secs(30)).await;

    // 2. The broker restarts under the connected agent.
    mq.stop().unwrap();
    mq.restart().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| s.connected)
        .await
        .unwrap();
    publish_all(&rig, parts[1]).await;
    wait_stored(&rig, 100, Duration::from_secs(30)).await;

    // 3. The agent is away (SIGKILL) while the POS publishes; then the
    //    broker restarts; then the agent comes back: the broker kept the
    //    messages for its persistent session across its own restart.
    rig.kill_agent().unwrap();
    publish_all(&rig, parts[2]).await;
    mq.stop().unwrap();
    mq.restart().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| s.connected)
        .await
        .unwrap();
    rig.spawn_agent().unwrap();
    wait_stored(&rig, 150, Duration::from_secs(30)).await;

    // 4. Killed hard (SIGKILL) with the agent connected: autosave keeps
    //    the session; what the broker did not save the POS never got a
    //    PUBACK for... except in the last second: publish after restart.
    publish_all(&rig, parts[3]).await;
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    let log = plain_log(&rig);
    let sessions = log.matches("MQTT session up with the POS").count();
    assert!(sessions >= 3, "{sessions} sessions");
    assert!(
        log.contains("session_present=true"),
        "the broker kept the agent's session across its restart"
    );
    assert_eq!(mq.starts, 3);
}

/// Scenario 6b: the POS re-announces itself on another address (here
/// another listener of the same broker, as after a DHCP change): the agent
/// follows without losing what was published meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_the_pos_to_a_new_address() {
    if !require("mosquitto", mosquitto::available()) {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 20, 5, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let mq = Mosquitto::start(&dir.path().join("mosquitto"), &mosquitto_users(&opts), 2).unwrap();
    opts.broker_port = Some(mq.ports[0]);
    let mut rig = start_rig(opts, &dir.path().join("rig")).await;
    let (a, b) = w.events.split_at(50);
    publish_all(&rig, a).await;
    wait_stored(&rig, 50, Duration::from_secs(30)).await;

    let mut advert = rig.advert.as_ref().unwrap().advert().clone();
    advert.mqtt_port = mq.ports[1];
    rig.advert.as_mut().unwrap().update(advert).unwrap();
    // The POS keeps publishing through the change.
    let (b1, b2) = b.split_at(b.len() / 2);
    publish_all(&rig, b1).await;
    let moved = format!("connecting to the POS broker at 127.0.0.1:{}", mq.ports[1]);
    zenchef_sim::util::wait_for(
        "the agent on the new address",
        Duration::from_secs(30),
        || plain_log(&rig).contains(&moved).then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    publish_all(&rig, b2).await;
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    let new_address = json!(format!("127.0.0.1:{}", mq.ports[1]));
    rig.wait_status("status on the new address", Duration::from_secs(20), |s| {
        s["daemon"]["pos"]["address"] == new_address
            && s["daemon"]["pos"]["mqtt_connected"] == json!(true)
    })
    .await
    .unwrap();
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); the disk-full test needs root and \
                 mount permission",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with a file until `ENOSPC`.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 16 * 1024];
    loop {
        if f.write_all(&chunk).is_err() || f.sync_all().is_err() {
            break;
        }
    }
    // Smaller writes to take the last blocks too.
    let small = vec![0u8; 512];
    while f.write_all(&small).is_ok() && f.sync_all().is_ok() {}
    path
}

/// Scenario 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledging_and_resumes_without_losing_anything() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("store"), "24m") else {
        return;
    };
    let w = Workload::generate(seed(), 40, 5, 10);
    let mut opts = RigOptions::new(w.zenchef_config());
    opts.store_path = Some(fs.0.join("agent.db"));
    let mut rig = start_rig(opts, &dir.path().join("rig")).await;
    let (a, rest) = w.events.split_at(50);
    publish_all(&rig, a).await;
    wait_stored(&rig, 50, Duration::from_secs(30)).await;

    // Slow answers, so deliveries are under way when the disk fills: their
    // completions fail in the store and are retried.
    rig.zenchef.set_latency(Duration::from_millis(300));
    // The disk fills up; the POS goes on, with big events (a voided order's
    // free-text reason of 300 KB) so that no WAL slack can hide it.
    let filler = fill(&fs.0);
    let mut eb = zenchef_sim::pos::EventBuilder::new(1_000_000);
    let big: Vec<serde_json::Value> = (0..12)
        .map(|i| eb.order_voided(&format!("BIG-{i}"), "W1", &"r".repeat(300 * 1024)))
        .collect();
    let t_full = Instant::now();
    publish_all(&rig, &big).await;
    publish_all(&rig, rest).await;
    // The agent cannot store: it says so once, keeps running, acks nothing.
    zenchef_sim::util::wait_for("the disk-full ERROR", Duration::from_secs(30), || {
        rig.log().contains("cannot store").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    // The daemon cannot refresh its state record either: after 15 s status
    // tells a stuck daemon from a stopped one.
    let s = rig
        .wait_status("status on a full disk", Duration::from_secs(30), |s| {
            s["daemon_running"] == json!(false) && s["daemon_alive"] == json!(true)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["dead"], json!(0));
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    assert!(text.contains("is the store's disk full?"), "{text}");
    assert_eq!(
        rig.agent_exited(),
        None,
        "the agent crashed on a full disk\n{}",
        rig.log_tail(30)
    );
    let stored_while_full = StoreView::read(&rig.store_path()).unwrap().events.len();
    assert!(stored_while_full < w.events.len() + big.len());
    let log = rig.log();
    assert_eq!(
        log.matches("cannot store").count(),
        1,
        "one ERROR per minute at most:\n{}",
        rig.log_tail(40)
    );
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    // One ERROR from intake, at most one WARN from delivery: no spam.
    assert!(
        noisy.len() <= 3,
        "{} WARN/ERROR lines:\n{}",
        noisy.len(),
        noisy.join("\n")
    );
    let noisy = noisy.len();

    // A restart while the disk is still full must not lose or crash either:
    // what was not acknowledged comes back from the broker.
    rig.kill_agent().unwrap();
    rig.spawn_agent().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.agent_exited(),
        None,
        "the agent must wait for space, not exit\n{}",
        rig.log_tail(30)
    );

    // Space returns.
    rig.zenchef.set_latency(Duration::ZERO);
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    wait_stored(&rig, w.events.len() + big.len(), Duration::from_secs(60)).await;
    let resumed = t_free.elapsed();
    let mut all = w.clone();
    for e in &big {
        all.index.insert(
            e["event_id"].as_str().unwrap().into(),
            (
                e["data"]["order_id"].as_str().unwrap().into(),
                e["seq"].as_u64().unwrap(),
            ),
        );
    }
    all.events.extend(big.iter().cloned());
    let view = wait_drained(&rig, &all, Duration::from_secs(60)).await;
    // The BIG orders were only voided (no Zenchef call): check the workload.
    assert_eq!(view.state("dead"), 0);
    let missing = all
        .index
        .keys()
        .filter(|e| !view.events.contains(*e))
        .count();
    assert_eq!(missing, 0, "events lost");
    check_guarantees_subset(&rig, &w);
    figures(&format!(
        "disk-full: {stored_while_full} events stored when the disk filled, \
         {} WARN/ERROR lines in {:?} of full disk, resumed {resumed:?} after space returned",
        noisy,
        t_free - t_full
    ));
}

/// [`check_guarantees`] on the workload's Zenchef effects only (the store
/// holds extra events).
fn check_guarantees_subset(rig: &zenchef_sim::harness::Rig, w: &Workload) {
    let mut v = StoreView::read(&rig.store_path()).unwrap();
    let done = w.events.len() as i64;
    v.states.insert("done".into(), done);
    check_guarantees(rig, w, &v);
}

/// Scenario 8: garbage, then a real store damaged in the middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_moved_aside_and_replaced_without_a_crash_loop() {
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 10, 3, 5);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("agent.db");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&store, &garbage).unwrap();
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    let aside = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("agent.db.corrupt-")
                    && !p.to_string_lossy().ends_with("-wal")
                    && !p.to_string_lossy().ends_with("-shm")
            })
            .collect();
        v.sort();
        v
    };
    let kept = aside(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage, "kept as it was");
    let log = rig.log();
    assert!(log.contains("STORE REPLACED"), "{log}");
    assert!(
        log.contains(&kept[0].display().to_string()),
        "names where it is kept"
    );
    let kept_path = json!(kept[0].display().to_string());
    rig.wait_status("status says so too", Duration::from_secs(10), |s| {
        s["daemon"]["store_moved_aside"] == kept_path
    })
    .await
    .unwrap();
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    assert!(text.contains("STORE       REPLACED"), "{text}");
    publish_all(&rig, &w.events).await;
    wait_drained(&rig, &w, Duration::from_secs(30)).await;

    // Restarts with the fresh store: no second move, it stays up.
    for _ in 0..2 {
        rig.kill_agent().unwrap();
        rig.spawn_agent().unwrap();
        wait_online(&rig).await;
    }
    assert_eq!(aside(dir.path()).len(), 1, "moved aside once only");
    assert_eq!(rig.log().matches("STORE REPLACED").count(), 1);

    // A real store damaged in the middle (pages overwritten, header kept).
    rig.stop_agent(Duration::from_secs(20)).unwrap();
    {
        // Fold the WAL into the file first, so the damage hits real pages.
        let c = rusqlite::Connection::open(&store).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&store).unwrap();
    assert!(bytes.len() > 4 * 4096, "store of {} bytes", bytes.len());
    for b in &mut bytes[4096..4 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&store, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("agent.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("agent.db-shm"));
    // The open reads only the header and the schema (bounded start): the
    // damage is found either there (moved aside at once) or by the full
    // check after READY, which records it and exits 75 so that systemd's
    // restart moves it aside. Played here as the unit would.
    rig.spawn_agent().unwrap();
    let first = zenchef_sim::util::wait_for(
        "moved aside, or stopped to be",
        Duration::from_secs(60),
        || {
            if let Some(code) = rig.agent_exited() {
                return Some(Some(code));
            }
            (aside(dir.path()).len() == 2).then_some(None)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    if let Some(code) = first {
        assert_eq!(
            code,
            75,
            "EX_TEMPFAIL, restarted by the unit\n{}",
            rig.log_tail(30)
        );
        assert!(rig.log().contains("STORE DAMAGED"), "{}", rig.log_tail(30));
        assert!(
            dir.path().join("agent.db.check-failed").exists(),
            "the failed check is recorded for the next start"
        );
        rig.spawn_agent().unwrap();
    }
    wait_online(&rig).await;
    assert_eq!(aside(dir.path()).len(), 2, "the damaged store is kept too");
    assert_eq!(rig.agent_exited(), None);
    assert_eq!(rig.log().matches("STORE REPLACED").count(), 2);
    assert!(!dir.path().join("agent.db.check-failed").exists());
    // The fresh store passes its check: no restart loop.
    zenchef_sim::util::wait_for(
        "the check of the fresh store",
        Duration::from_secs(30),
        || {
            rig.log()
                .contains("store integrity check passed")
                .then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(rig.agent_exited(), None);
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

/// Scenario 9a: the box clock is years off (no RTC, no NTP yet). Delivery
/// follows `seq`, and an HTTP-date `Retry-After` is read against the
/// server's `Date`, so it neither stalls for years nor turns into a hot
/// loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_box_clock_changes_neither_order_nor_rate_limit_waits() {
    let Some(lib) = faketime_lib() else {
        require("faketime (libfaketime)", false);
        return;
    };
    let _heavy = heavy().await;
    for offset in ["-3y", "+3y"] {
        let w = Workload::generate(seed(), 20, 4, 20);
        let dir = tempfile::tempdir().unwrap();
        let mut opts = RigOptions::new(w.zenchef_config());
        opts.agent_env = vec![
            ("LD_PRELOAD".into(), lib.into()),
            ("FAKETIME".into(), offset.into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ];
        let rig = start_rig(opts, dir.path()).await;
        // Rate limited until D (server clock) while the POS publishes.
        let d = SystemTime::now() + Duration::from_secs(5);
        let d_instant = Instant::now() + Duration::from_secs(5);
        rig.zenchef
            .set_fault(Fault::RateLimit {
                retry_after: RetryAfter::HttpDate(d),
            })
            .await
            .unwrap();
        let t0 = Instant::now();
        publish_all(&rig, &w.events).await;
        tokio::time::sleep_until((d_instant + Duration::from_millis(300)).into()).await;
        rig.zenchef.set_fault(Fault::None).await.unwrap();
        let calls = rig.zenchef.calls();
        let limited: Vec<_> = calls
            .iter()
            .filter(|c| c.at >= t0 && c.at < d_instant)
            .collect();
        let first_429 = limited
            .iter()
            .filter(|c| c.status == 429)
            .filter_map(|c| c.answered_at)
            .min()
            .unwrap_or_else(|| panic!("clock {offset}: the rate limit was not hit"));
        let early: Vec<_> = limited
            .iter()
            .filter(|c| {
                c.at > first_429 + Duration::from_millis(600)
                    && c.at + Duration::from_millis(1300) < d_instant
            })
            .collect();
        assert!(
            early.is_empty(),
            "clock {offset}: {} call(s) before the Retry-After date (first at {:?} after the 429)",
            early.len(),
            early[0].at - first_429
        );
        // No stall for years: everything is delivered right after D.
        let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
        check_guarantees(&rig, &w, &view);
        // The agent really ran with the wrong clock.
        let s = rig.status().unwrap();
        let started = s["daemon"]["started_at"].as_str().unwrap().to_string();
        let year: i32 = started[..4].parse().unwrap();
        let now_year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
        assert!(
            (year - now_year).abs() >= 2,
            "clock {offset}: started_at {started}"
        );
    }
}

/// A TLS server on 127.0.0.1 whose certificate is not valid before
/// `not_before_year`-01-01; answers nothing (the handshake is what
/// matters).
async fn tls_server_not_yet_valid(not_before_year: i32) -> u16 {
    zenchef_edge::tls::install_crypto();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before_year, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_before_year + 2, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    port
}

/// Scenario 9b: Zenchef's certificate is "not yet valid" for the box (its
/// clock is behind): retried, never dead, and the message names the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_not_yet_valid_is_retried_with_a_message_naming_the_clock() {
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 5, 3, 5);
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    let port = tls_server_not_yet_valid(year + 2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    opts.zenchef_base_url = Some(format!("https://127.0.0.1:{port}/api/v1"));
    let rig = start_rig(opts, dir.path()).await;
    publish_all(&rig, &w.events).await;
    let result = rig
        .wait_status("the clock named in status", Duration::from_secs(30), |s| {
            s["daemon"]["zenchef"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("the system clock is probably wrong"))
                && s["counts"]["received"].as_u64() == Some(w.events.len() as u64)
        })
        .await;
    let s = result.unwrap();
    assert_eq!(s["counts"]["dead"], json!(0), "retryable, never dead: {s}");
    assert!(s["counts"]["queued"].as_i64().unwrap() > 0, "{s}");
    assert_eq!(s["daemon"]["zenchef"]["outage"], json!(true), "{s}");
    let log = plain_log(&rig);
    assert!(
        log.contains("certificate not valid yet"),
        "{}",
        rig.log_tail(20)
    );
    assert!(log.contains("the certificate is not valid yet: the system clock is probably wrong"));
}

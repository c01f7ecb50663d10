//! The local status page of the real agent binary under the small attacks
//! of issue 21 (item 8): a store that cannot be written while the agent
//! runs, and clients that open connections and send nothing.
//!
//! Real parts only: the agent binary as a child process, its page over
//! TCP on loopback, a small tmpfs filled up (root only: skipped, and said,
//! elsewhere; CI runs as root).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zenchef_sim::util::free_port;

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

/// A configuration with its store at `store`, the page on `port`, the POS
/// and Zenchef on closed ports (not under test).
fn config(dir: &Path, store: &Path, port: u16) -> PathBuf {
    let closed = free_port().unwrap();
    let text = format!(
        r#"[restaurant]
timezone = "UTC"
[cashpad]
token = "cp-token-page"
host = "127.0.0.1"
port = {closed}
[zenchef]
restaurant_id = "1"
token = "zc-token-page"
base_url = "http://127.0.0.1:{closed}/api/v1"
[store]
path = "{store}"
[update]
enabled = false
[http]
listen = "127.0.0.1:{port}"
"#,
        store = store.display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon; killed when dropped.
struct Daemon {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    fn start(config: &Path, port: u16) -> Daemon {
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
            port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `status --json` of the CLI, read beside the daemon.
    fn cli_status(&self) -> Value {
        let out = Command::new(AGENT)
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `GET path` on the page, in English; the body (empty on failure).
    fn get(&self, path: &str, timeout: Duration) -> String {
        get(self.port, path, timeout).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET` over a fresh connection; the body of a 200.
fn get(port: u16, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: box\r\nAccept-Language: en\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("not a 200: {out:?}"))),
    }
}

fn problems(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A tmpfs of `size` mounted on a directory of its own; unmounted when
/// dropped (after the daemon using it is gone: declare it first).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Issue 21 (d): the page served by the running agent said "the agent is
/// stopped" once its store's disk was full (its record in the store went
/// stale). The agent serving the page runs: it says so, and says that it
/// cannot write its store; `status` beside it says the same.
#[test]
fn a_running_agent_with_a_full_disk_says_it_runs_and_cannot_write() {
    if !is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root: this test needs it"
        );
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("store"), "4m");
    let port = free_port().unwrap();
    let d = Daemon::start(&config(dir.path(), &fs.0.join("agent.db"), port), port);
    let until = Instant::now() + Duration::from_secs(30);
    while serde_json::from_str::<Value>(&d.get("/status.json", Duration::from_secs(2)))
        .is_ok_and(|v| v["daemon_running"] != true)
        || d.get("/status.json", Duration::from_secs(2)).is_empty()
    {
        assert!(Instant::now() < until, "never running: {}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The daemon's record is in the store (the CLI reads it there).
    while d.cli_status()["daemon_running"] != true {
        assert!(Instant::now() < until, "no record: {}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    fs.fill();
    // The stored record goes stale after 15 s: wait well past it, and
    // fail at once if the page ever says the agent is stopped.
    let until = Instant::now() + Duration::from_secs(40);
    let mut seen = 0;
    while seen < 3 {
        assert!(Instant::now() < until, "no store problem said: {}", d.log());
        std::thread::sleep(Duration::from_secs(1));
        let json: Value = serde_json::from_str(&d.get("/status.json", Duration::from_secs(5)))
            .unwrap_or_default();
        let page = d.get("/", Duration::from_secs(5));
        let p = problems(&json);
        assert!(
            !p.contains(&"agent_not_running".to_string()) && !page.contains("agent is stopped"),
            "the running agent says it is stopped: {p:?}\n{page}\n{}",
            d.log()
        );
        if p.contains(&"store_not_writable".to_string()) {
            assert_eq!(json["daemon_running"], true, "{json}");
            assert!(
                page.contains(
                    "The box is running but cannot write to its memory (disk full or read-only)"
                ),
                "{page}"
            );
            seen += 1;
        }
    }
    // Past the record's freshness, the CLI beside it says the same.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d.cli_status();
        let p = problems(&s);
        if p.contains(&"store_not_writable".to_string()) {
            assert!(!p.contains(&"agent_not_running".to_string()), "{s}");
            assert_eq!(s["daemon_alive"], true, "{s}");
            break;
        }
        assert!(Instant::now() < until, "status never said it: {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        d.log().contains("cannot write to the store"),
        "said in the journal: {}",
        d.log()
    );
    drop(d);
    drop(fs);
}

/// Issue 21 (a): 33 connections that send nothing made the page unusable
/// (32 slots, each held for the 10 s header timeout). With 64 idle
/// connections open, a real `GET /` is answered within a few seconds, and
/// again after 64 more.
#[test]
fn idle_connections_never_lock_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let d = Daemon::start(
        &config(dir.path(), &dir.path().join("agent.db"), port),
        port,
    );
    let until = Instant::now() + Duration::from_secs(30);
    while get(port, "/status.json", Duration::from_secs(2)).is_err() {
        assert!(Instant::now() < until, "no page: {}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut idle = Vec::new();
    for round in 0..2 {
        for _ in 0..64 {
            idle.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let page = get(port, "/", Duration::from_secs(5));
        let took = t.elapsed();
        let page = page.unwrap_or_else(|e| {
            panic!("round {round}: the page is not answered beside 64 idle connections: {e}")
        });
        assert!(page.contains("<html"), "{page}");
        figure(&format!(
            "page answered in {} ms beside {} idle connections",
            took.as_millis(),
            idle.len()
        ));
    }
    drop(idle);
}

/// A figure for the report (stderr, shown with --nocapture).
fn figure(line: &str) {
    eprintln!("FIGURE {line}");
}

/// A booking of today (+01:00, the rig's zone) at the current time.
fn booking(id: i64, lastname: &str) -> Value {
    let n = chrono::Utc::now().with_timezone(&zenchef_sim::pos::paris_winter());
    serde_json::json!({
        "id": id, "day": n.format("%Y-%m-%d").to_string(), "time": n.format("%H:%M").to_string(),
        "nb_guests": 2, "firstname": "Camille", "lastname": lastname, "status": "confirmed",
        "tables": [{"id": 1, "name": "1"}],
    })
}

/// Issue 21 (b): 97,000 webhook posts in 10 s cost 68 `GET /bookings`.
/// Nudges coalesce: a flood of posts over 4 s costs a few polls (one per
/// 2 s at most, plus the one pending), and a booking changed before the
/// flood still reaches the POS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_webhook_posts_costs_a_few_polls() {
    use zenchef_sim::harness::{Rig, RigOptions};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut opts = RigOptions::new(zenchef_sim::zenchef::ZenchefConfig {
        tables: vec![(1, "1".into(), "Salle".into())],
        bookings: vec![booking(4001, "Avant")],
        ..Default::default()
    });
    opts.http_listen = format!("127.0.0.1:{port}");
    opts.poll_interval_s = 3600; // only nudges poll after the start
    let mut rig = Rig::start(opts, Path::new(AGENT), dir.path())
        .await
        .unwrap();
    rig.spawn_agent().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.reservations.contains_key(&4001)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    // Past the start's own polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.zenchef
        .update_booking(4001, |b| b["lastname"] = "Changé".into());
    let first = rig.zenchef.call_count();
    let start = Instant::now();
    let flood = Duration::from_secs(4);
    let mut posters = Vec::new();
    for _ in 0..4 {
        posters.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{port}/zenchef/webhook");
            let mut n = 0u64;
            while start.elapsed() < flood {
                if let Ok(r) = client.post(&url).body("{}").send().await
                    && r.status().as_u16() == 202
                {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut posts = 0;
    for p in posters {
        posts += p.await.unwrap();
    }
    let flood_s = start.elapsed().as_secs_f64();
    rig.pos
        .wait_until(Duration::from_secs(10), |s| {
            s.reservations
                .get(&4001)
                .is_some_and(|r| r.to_string().contains("Changé"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    // The pending poll after the flood, if any.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One poll reads each day of the sync window: count one day's reads.
    let reads: Vec<String> = rig
        .zenchef
        .calls_from(first)
        .iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/bookings"))
        .map(|c| c.query.clone())
        .collect();
    let polls = reads
        .first()
        .map_or(0, |day| reads.iter().filter(|q| *q == day).count());
    figure(&format!(
        "{posts} webhook posts in {flood_s:.1} s cost {polls} polls ({} GET /bookings)",
        reads.len()
    ));
    assert!(posts > 100, "a flood: {posts} posts");
    // One poll per 2 s of flood, the first at once, one pending at the end
    // (and a second of slack).
    assert!(
        (1..=5).contains(&polls),
        "{posts} posts in {flood_s:.1} s cost {polls} polls"
    );
    let _ = rig.stop_agent(Duration::from_secs(5));
}

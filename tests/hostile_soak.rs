//! The hostile cases of the LAN together, while the POS publishes a normal
//! service (docs/protocol/cashpad-local.md §2a; docs/decisions.md, "What
//! the LAN may send"): a real mosquitto as the POS broker, the real agent
//! binary, the Zenchef fake.
//!
//! While the service's events go out, at the same time:
//! - messages of 17 MiB on `R/events` (read past by the frame guard);
//! - events whose `type` is a new 200 KiB name each;
//! - malformed events (not JSON, fields missing or of the wrong kind,
//!   negative cents, a `type` of 65 characters);
//! - forged repeats: events of the service published again with the same
//!   `event_id` and other amounts (duplicates: they change nothing);
//! - a flood of webhook posts on the agent's page;
//! - idle connections held open on the page, and `GET /status.json` in a
//!   loop.
//!
//! Then: every event of the service is stored and delivered exactly once,
//! in order, with its own amounts (the checks of "Delivery guarantees");
//! every hostile message is quarantined or counted as a duplicate; the page
//! answered throughout; the agent's memory stayed bounded. The figures are
//! printed (`FIGURES hostile soak …`).

mod common;

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::lan::*;
use common::*;
use serde_json::json;
use zenchef_sim::harness::RigOptions;
use zenchef_sim::mosquitto::Mosquitto;
use zenchef_sim::util::free_port;

const AT: &str = "2026-11-29T19:42:05+01:00";
/// Messages of 17 MiB.
const HUGE: usize = 3;
/// Events with a new 200 KiB `type` each.
const LONG_TYPES: usize = 150;
/// Forged repeats of the service's events.
const FORGED: usize = 40;

/// The malformed payloads: each must be quarantined, none may stop intake.
fn malformed() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"event_id\": \"m-trunc\", \"seq\": 1, ".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        json!({"seq": 5, "type": "table.opened", "occurred_at": AT, "data": {}})
            .to_string()
            .into_bytes(),
        json!({"event_id": "m-seq", "seq": "five", "type": "table.opened", "occurred_at": AT,
               "data": {"order_id": "X-1", "table": "W1", "covers": 2, "opened_at": AT}})
        .to_string()
        .into_bytes(),
        json!({"event_id": "m-type", "seq": 6, "type": "t".repeat(65), "occurred_at": AT,
               "data": {"order_id": "X-2"}})
        .to_string()
        .into_bytes(),
    ];
    for i in 0..20 {
        out.push(
            json!({"event_id": format!("m-neg-{i}"), "seq": 7 + i, "type": "bill.paid",
                   "occurred_at": AT,
                   "data": {"order_id": format!("X-neg-{i}"), "table": "W1", "covers": 2,
                            "lines": [], "total_cents": -4900, "tip_cents": 0,
                            "payments": [], "paid_at": AT}})
            .to_string()
            .into_bytes(),
        );
    }
    out
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A `GET` of the page that must answer within 5 s; answers its latency.
fn page_get(port: u16, path: &str) -> Result<Duration, String> {
    use std::io::{Read, Write};
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head[..] != b"HTTP/1.1 200" {
        return Err(String::from_utf8_lossy(&head).into_owned());
    }
    Ok(t0.elapsed())
}

// One scenario with its six hostile parts: long on purpose, each part a
// few lines, read top to bottom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_goes_through_every_hostile_case_at_once() {
    if !have_mosquitto() {
        return;
    }
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 40, 4, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(w.zenchef_config());
    let page = free_port().unwrap();
    opts.http_listen = format!("127.0.0.1:{page}");
    let mq = Mosquitto::start(&dir.path().join("mosquitto"), &users(&opts), 1).unwrap();
    opts.broker_port = Some(mq.port());
    let rig = start_rig(opts, &dir.path().join("rig")).await;
    let pid = rig.agent_pid().unwrap();
    let (rss0, hwm0) = memory_kib(pid);
    let topic = format!("{}/events", rig.pos.root());
    let stop = Arc::new(AtomicBool::new(false));
    // Set on every way out, a panic included: the page loop runs on a
    // blocking thread that the runtime waits for at its end.
    let _stop_on_drop = StopOnDrop(stop.clone());
    let t0 = Instant::now();

    // The page: 64 idle connections held open, and a GET in a loop.
    let idle: Vec<TcpStream> = (0..64)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", page)).ok())
        .collect();
    let page_loop = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let (mut ok, mut worst, mut failures) = (0u64, Duration::ZERO, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match page_get(page, "/status.json") {
                    Ok(t) => {
                        ok += 1;
                        worst = worst.max(t);
                    }
                    Err(e) => failures.push(e),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (ok, worst, failures)
        })
    };
    // The webhook flood.
    let posts = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..2)
        .map(|_| {
            let (stop, posts) = (stop.clone(), posts.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let url = format!("http://127.0.0.1:{page}/zenchef/webhook");
                while !stop.load(Ordering::SeqCst) {
                    match client.post(&url).body("{}").send().await {
                        Ok(r) if r.status().as_u16() == 202 => {
                            posts.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused or failed: no hot loop against a dead page.
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect();
    // Memory, sampled through the whole run.
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak_rss = 0;
            while !stop.load(Ordering::SeqCst) {
                peak_rss = peak_rss.max(memory_kib(pid).0);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak_rss
        })
    };
    // The attackers on the broker, as the POS account.
    let port = mq.port();
    let huge = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 0..HUGE {
                let mut p = format!("{{\"event_id\":\"h-{i}\",\"seq\":{i},\"type\":\"order.items_sent\",\"data\":{{\"order_id\":\"H-{i}\"}},\"pad\":\"").into_bytes();
                p.resize(17 * MIB, b'x');
                publish_big(port, &topic, p, false).await;
            }
        })
    };
    let service = publish_all(&rig, &w.events);
    let hostile = async {
        for (i, p) in malformed().into_iter().enumerate() {
            rig.pos.publish_raw(p).await.unwrap();
            if i % 4 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for i in 0..LONG_TYPES {
            let mut t = format!("long-type-{i}-");
            t.push_str(&"y".repeat(200 * 1024));
            let e = json!({"event_id": format!("t-{i}"), "seq": i, "type": t, "occurred_at": AT,
                           "data": {"order_id": format!("T-{i}")}});
            rig.pos.publish_raw(e.to_string()).await.unwrap();
        }
    };
    // Bounded: an agent that stops taking messages must fail the test, not
    // hang it (on a broker that holds the agent's queue, publishing waits).
    let (published, ()) = tokio::time::timeout(Duration::from_secs(240), async {
        tokio::join!(service, hostile)
    })
    .await
    .unwrap_or_else(|_| panic!("publishing did not end in 240 s\n{}", rig.log_tail(40)));
    huge.await.unwrap();

    // Forged repeats of stored events: the same ids, other amounts.
    let view = wait_drained(&rig, &w, Duration::from_secs(180)).await;
    let mut forged = 0;
    for e in w.events.iter().rev().take(FORGED) {
        let mut f = e.clone();
        f["data"]["total_cents"] = json!(1);
        f["data"]["covers"] = json!(99);
        rig.pos.publish_raw(f.to_string()).await.unwrap();
        forged += 1;
    }
    let rejected = (HUGE + LONG_TYPES + malformed().len()) as u64;
    let s = rig
        .wait_status(
            "every hostile message counted",
            Duration::from_secs(120),
            |s| {
                s["counts"]["rejected"].as_u64() == Some(rejected)
                    && s["counts"]["duplicates"].as_u64() >= Some(forged)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
    stop.store(true, Ordering::SeqCst);
    for f in flood {
        f.await.unwrap();
    }
    let (page_ok, page_worst, page_failures) = page_loop.await.unwrap();
    let peak_rss = sampler.await.unwrap();
    drop(idle);
    let (rss1, hwm1) = memory_kib(pid);
    let took = t0.elapsed();

    // Nothing of the service lost, repeated, reordered or altered.
    let view = StoreView::read(&rig.store_path()).unwrap_or(view);
    let replays = check_guarantees(&rig, &w, &view);
    assert_eq!(published, w.events.len());
    assert_eq!(
        s["counts"]["received"].as_u64(),
        Some(w.events.len() as u64)
    );
    assert_eq!(s["daemon"]["pos"]["mqtt_connected"], json!(true), "{s}");
    assert_eq!(
        plain_log(&rig)
            .matches("MQTT session up with the POS")
            .count(),
        1,
        "the session never dropped:\n{}",
        rig.log_tail(30)
    );
    // The page answered throughout.
    assert!(page_ok >= 10, "{page_ok} answers from the page");
    assert!(
        page_failures.is_empty(),
        "the page failed {} time(s): {:?}",
        page_failures.len(),
        &page_failures[..page_failures.len().min(3)]
    );
    // Memory bounded: ~51 MiB of oversized messages and ~30 MiB of type
    // names went by.
    assert!(
        hwm1 < hwm0 + 48 * 1024,
        "the agent's peak memory grew from {hwm0} to {hwm1} KiB"
    );
    figures(&format!(
        "hostile soak: {} service events delivered ({replays} idempotent replays) beside \
         {HUGE} x 17 MiB, {LONG_TYPES} x 200 KiB types, {} malformed, {forged} forged repeats, \
         {} webhook posts, 64 idle page connections; page {page_ok} answers, slowest \
         {page_worst:?}; agent VmRSS {rss0} -> {rss1} KiB (sampled peak {peak_rss}), VmHWM \
         {hwm0} -> {hwm1} KiB; {took:?}",
        w.events.len(),
        malformed().len(),
        posts.load(Ordering::Relaxed),
    ));
}

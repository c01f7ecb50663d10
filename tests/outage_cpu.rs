//! A Zenchef outage must cost the box (a Raspberry-Pi-class computer under a
//! counter) next to no CPU: the dispatcher probes at its backoff pace and
//! otherwise sleeps. Regression test for a loop that woke for backoff
//! moments already past and spun a core for the whole outage.
//!
//! The real binary, the real broker, Zenchef down (connection refused);
//! CPU time (utime + stime) read from `/proc/<pid>/stat`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, paris_winter};
use zenchef_sim::zenchef::{Fault, ZenchefConfig};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_orders_waiting_does_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RigOptions::new(ZenchefConfig::default());
    // A global probe interval far longer than the per-order backoff (0.5 s
    // first): the orders' own backoff runs out long before the next probe.
    opts.retry_max_s = 30;
    let mut rig = Rig::start(opts, Path::new(AGENT), dir.path())
        .await
        .unwrap();
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    rig.spawn_agent().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));

    let mut b = EventBuilder::new(1);
    let opened = chrono::Utc::now().with_timezone(&paris_winter());
    for i in 0..20 {
        let ev = b.table_opened(&format!("O-{i}"), &format!("{}", i + 1), 2, opened);
        rig.pos.publish_event(&ev).await.unwrap();
    }
    rig.wait_status("20 events stored", Duration::from_secs(20), |s| {
        s["counts"]["received"] == json!(20)
    })
    .await
    .unwrap();
    // The first deliveries fail and back off; give their backoff time to
    // run out while the next global probe is still far away.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pid = rig.agent.as_ref().unwrap().id();
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let used = (cpu_ticks(pid) - before) as f64 / 100.0;
    // Idle, the agent uses well under 0.05 s here; a spinning loop uses
    // the whole window (or its fair share of a loaded machine, still far
    // above the bound).
    assert!(
        used < 0.5,
        "the agent used {used:.2} s of CPU in {window:?} of outage (should be idle)\n{}",
        rig.log_tail(20)
    );
    assert_eq!(
        rig.status().unwrap()["counts"]["queued"],
        json!(20),
        "nothing delivered, nothing lost"
    );
}

//! Part 4, memory and CPU of an idle box: the agent with its production
//! timings, connected to the POS and to Zenchef (a day of 60 reservations
//! published to the POS), then left alone.
//!
//! Measured: peak RSS (`VmHWM`) and RSS after the idle period (10 min;
//! `--smoke`: 30 s), threads, and the CPU time (utime + stime of
//! `/proc/<pid>/stat`) over the last 60 s (`--smoke`: 15 s); then the CPU
//! time over as long again while Zenchef is down with 20 orders waiting
//! (the outage probe must not spin). The peak while draining is measured by
//! part 2.

use std::time::Duration;

use serde_json::json;
use zenchef_sim::harness::RigOptions;
use zenchef_sim::pos::EventBuilder;
use zenchef_sim::zenchef::Fault;

use crate::common::{self, Bench, start_rig, table, verdict, zenchef_config};

/// Idle RSS target, KiB.
const TARGET_IDLE_KB: u64 = 16 * 1024;
/// Idle CPU target, % of one core.
const TARGET_CPU_PCT: f64 = 0.5;

/// Runs part 4.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let (idle, window) = if bench.smoke {
        (Duration::from_secs(30), Duration::from_secs(15))
    } else {
        (Duration::from_secs(600), Duration::from_secs(60))
    };
    println!(
        "\n== 4. memory and CPU, idle ({} s connected, CPU over the last {} s)",
        idle.as_secs(),
        window.as_secs()
    );
    let load0 = common::load_avgs();
    // Today's reservations: lunch and dinner on 30 tables.
    let today = common::yesterday() + chrono::Duration::days(1);
    let bookings: Vec<_> = (0..60)
        .map(|i| {
            let table = i % 30 + 1;
            json!({
                "id": 500 + i,
                "day": today.to_string(),
                "time": if i < 30 { "12:30" } else { "20:00" },
                "nb_guests": 2 + i % 4,
                "lastname": format!("Guest {i}"),
                "status": "confirmed",
                "tables": [{"id": table, "name": table.to_string()}],
            })
        })
        .collect();
    let opts = RigOptions::new(zenchef_config(bookings)).production_timing();
    let rig = start_rig(bench, "idle", opts, false, Duration::ZERO).await?;
    rig.pos.publish_floorplan(&common::floorplan()).await?;
    rig.pos
        .wait_until(Duration::from_secs(60), |s| s.reservations.len() >= 60)
        .await?;
    let pid = common::agent_pid(&rig)?;

    tokio::time::sleep(idle.saturating_sub(window)).await;
    let c0 = common::cpu_ticks(pid).unwrap_or(0);
    let t0 = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let c1 = common::cpu_ticks(pid).unwrap_or(0);
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = (c1 - c0) as f64 / common::clk_tck() as f64;
    let cpu_pct = 100.0 * cpu_s / secs;
    let hwm = common::proc_kb(pid, "VmHWM").unwrap_or(0);
    let rss = common::proc_kb(pid, "VmRSS").unwrap_or(0);
    let threads = common::proc_kb(pid, "Threads").unwrap_or(0);
    let calls = rig.zenchef.call_count();

    // The same box during a Zenchef outage with a few orders waiting: the
    // dispatcher probes at its backoff pace and must not spin.
    rig.zenchef.set_fault(Fault::Down).await?;
    let (plans, _) = common::orders("Q", 20, 40, common::yesterday());
    let mut builder = EventBuilder::new(1);
    let events: Vec<_> = plans
        .iter()
        .map(|o| common::opened(&mut builder, o))
        .collect();
    let p = std::sync::Arc::new(common::Prepared::new(&events));
    common::publish_burst(&rig.pos, p).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o0 = common::cpu_ticks(pid).unwrap_or(0);
    let t1 = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let o1 = common::cpu_ticks(pid).unwrap_or(0);
    let out_secs = t1.elapsed().as_secs_f64();
    let out_cpu_s = (o1 - o0) as f64 / common::clk_tck() as f64;
    let out_pct = 100.0 * out_cpu_s / out_secs;
    let out_ok = out_pct <= TARGET_CPU_PCT;
    let load1 = common::load_avgs();

    let rss_ok = hwm <= TARGET_IDLE_KB;
    let cpu_ok = cpu_pct <= TARGET_CPU_PCT;
    table(
        &["measure", "value", "target", ""],
        &[
            vec![
                format!("peak RSS (VmHWM) after {} s idle", idle.as_secs()),
                common::mib(hwm),
                "≤ 16 MiB".into(),
                verdict(Some(rss_ok)),
            ],
            vec![
                "RSS now (VmRSS)".into(),
                common::mib(rss),
                String::new(),
                String::new(),
            ],
            vec![
                format!("CPU over {:.0} s (utime+stime)", secs),
                format!("{:.2} s = {cpu_pct:.2} %", cpu_s),
                format!("≤ {TARGET_CPU_PCT} %"),
                verdict(Some(cpu_ok)),
            ],
            vec![
                format!("CPU over {out_secs:.0} s of Zenchef outage, 20 orders waiting"),
                format!("{out_cpu_s:.2} s = {out_pct:.2} %"),
                format!("≤ {TARGET_CPU_PCT} %"),
                verdict(Some(out_ok)),
            ],
            vec![
                "threads".into(),
                threads.to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "Zenchef calls while idle".into(),
                calls.to_string(),
                String::new(),
                String::new(),
            ],
        ],
    );
    println!("  load average before: {load0}; after: {load1}");
    bench.figure(
        "memory",
        format!("peak RSS idle after {} s (VmHWM)", idle.as_secs()),
        common::mib(hwm),
        "≤ 16 MiB",
        Some(rss_ok),
    );
    bench.figure(
        "memory",
        format!("idle CPU over {secs:.0} s"),
        format!("{cpu_pct:.2} %"),
        format!("≤ {TARGET_CPU_PCT} %"),
        Some(cpu_ok),
    );
    bench.figure(
        "memory",
        format!("CPU during a Zenchef outage over {out_secs:.0} s"),
        format!("{out_pct:.2} %"),
        format!("≤ {TARGET_CPU_PCT} %"),
        Some(out_ok),
    );
    Ok(())
}

//! Part 1, durable intake: POS → broker → agent → SQLite (`synchronous=FULL`,
//! acknowledged after the commit), with Zenchef down so that nothing is
//! delivered and only intake runs.
//!
//! Measured: the raw fsync rate of the disk in the same directory; events/s
//! when the POS publishes as fast as it can (64 concurrent publishers); the
//! publish → stored latency (`events.received_at`, ms) at a paced 5,000
//! events/s; the average intake batch (`received / intake_batches`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenchef_sim::harness::RigOptions;
use zenchef_sim::pos::EventBuilder;

use crate::common::{
    self, Bench, PUBLISHERS, Prepared, Stamp, StoreReader, interleave, meal, orders, pct, sorted,
    start_rig, table, verdict, zenchef_config,
};

/// Target rate, events/s.
const TARGET_RATE: f64 = 5_000.0;
/// Target p99 publish → stored, ms.
const TARGET_P99_MS: f64 = 20.0;

/// One measured phase.
struct Phase {
    events: usize,
    /// Agent CPU time per event, µs.
    cpu_us: f64,
    /// Agent CPU use during the phase, % of one core.
    cpu_pct: f64,
    /// The bench's own CPU use (broker, POS, fake), % of one core.
    bench_pct: f64,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    batch: f64,
}

/// Runs part 1.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    println!(
        "\n== 1. durable intake (POS → broker → agent → SQLite synchronous=FULL → PUBACK; Zenchef down)"
    );
    let load0 = common::load_avgs();
    let dir = bench.dir("intake");
    std::fs::create_dir_all(&dir)?;
    let probe = Duration::from_millis(if bench.smoke { 500 } else { 2000 });
    let (fsync_rate, fsync_ms) = sync_loop(&dir, probe, false)?;
    let (fdatasync_rate, fdatasync_ms) = sync_loop(&dir, probe, true)?;

    let (burst_n, paced_s) = if bench.smoke {
        (5_000, 1.0)
    } else {
        (50_000, 10.0)
    };
    let paced_n = (TARGET_RATE * paced_s) as usize;
    // Realistic payloads: whole meals of generated orders, interleaved.
    let mut builder = EventBuilder::new(1);
    let mut make = |prefix: &str, n: usize, seq: u64| {
        let (plans, _) = orders(prefix, n.div_ceil(10), 100, common::yesterday());
        let mut evs = interleave(plans.iter().map(|o| meal(&mut builder, o)).collect(), seq);
        evs.truncate(n);
        evs
    };
    let warm = make("W", 200, 1);
    let burst = make("B", burst_n, 1_000);
    let paced = make("P", paced_n, 1_000_000);

    let opts = RigOptions::new(zenchef_config(Vec::new())).production_timing();
    let rig = start_rig(bench, "intake", opts, true, Duration::ZERO).await?;
    rig.pos.publish_floorplan(&common::floorplan()).await?;
    let store = StoreReader::open(&rig.store_path()).await?;
    let pid = common::agent_pid(&rig)?;

    // Warm-up: connections, caches, the store's first pages.
    let warm = Arc::new(Prepared::new(&warm));
    common::publish_burst(&rig.pos, warm.clone()).await?;
    let mut expected = warm.ids.len() as i64;
    store
        .wait_counter(
            "received",
            expected,
            Duration::from_millis(5),
            Duration::from_secs(60),
        )
        .await?;

    // Saturation: as fast as 64 publishers go.
    let burst = Arc::new(Prepared::new(&burst));
    let (r0, b0) = (store.counter("received"), store.counter("intake_batches"));
    let cpu0 = Cpu::now(pid);
    let t0 = Instant::now();
    let stamps = common::publish_burst(&rig.pos, burst.clone()).await?;
    expected += burst.ids.len() as i64;
    let done = store
        .wait_counter(
            "received",
            expected,
            Duration::from_millis(2),
            Duration::from_secs(300),
        )
        .await?;
    let elapsed = done - t0;
    let sat = phase(bench, &store, &burst, &stamps, elapsed, r0, b0, cpu0)?;

    // Paced at the target rate.
    let paced = Arc::new(Prepared::new(&paced));
    let (r0, b0) = (store.counter("received"), store.counter("intake_batches"));
    let cpu0 = Cpu::now(pid);
    let (stamps, span) = common::publish_paced(&rig.pos, paced.clone(), TARGET_RATE).await?;
    expected += paced.ids.len() as i64;
    let done = store
        .wait_counter(
            "received",
            expected,
            Duration::from_millis(2),
            Duration::from_secs(300),
        )
        .await?;
    let t_first = stamps.first().map(|s| s.at).unwrap_or_else(Instant::now);
    let offered = paced.ids.len() as f64 / span.as_secs_f64().max(1e-3);
    let pac = phase(bench, &store, &paced, &stamps, done - t_first, r0, b0, cpu0)?;

    let received = store.counter("received");
    let dup = store.counter("duplicates");
    if received != expected || dup != 0 {
        bench.problem(format!(
            "intake: {expected} distinct events published, the store has received={received}, duplicates={dup}"
        ));
    }
    let hwm = common::proc_kb(pid, "VmHWM").unwrap_or(0);
    let load1 = common::load_avgs();

    let rate_ok = sat.rate >= TARGET_RATE;
    let p99_ok = pac.p99 < TARGET_P99_MS;
    let f = |x: f64| format!("{x:.0}");
    table(
        &["measure", "value", "target", ""],
        &[
            vec![
                "disk: write 4 KiB + fsync, same dir (p50/p99/max)".into(),
                format!(
                    "{} /s ({:.1} / {:.1} / {:.1} ms)",
                    f(fsync_rate),
                    fsync_ms[0],
                    fsync_ms[1],
                    fsync_ms[2]
                ),
                String::new(),
                String::new(),
            ],
            vec![
                "disk: write 4 KiB + fdatasync, same dir".into(),
                format!(
                    "{} /s ({:.1} / {:.1} / {:.1} ms)",
                    f(fdatasync_rate),
                    fdatasync_ms[0],
                    fdatasync_ms[1],
                    fdatasync_ms[2]
                ),
                String::new(),
                String::new(),
            ],
            vec![
                format!("saturation: {} events, {PUBLISHERS} publishers", sat.events),
                format!("{} events/s", f(sat.rate)),
                format!("≥ {}", f(TARGET_RATE)),
                verdict(Some(rate_ok)),
            ],
            vec![
                "  avg intake batch (received / batches)".into(),
                format!("{:.1}", sat.batch),
                String::new(),
                String::new(),
            ],
            vec![
                "  agent CPU per event / use; bench (broker, POS) use".into(),
                format!(
                    "{} µs / {} %; {} %",
                    f(sat.cpu_us),
                    f(sat.cpu_pct),
                    f(sat.bench_pct)
                ),
                String::new(),
                String::new(),
            ],
            vec![
                "  publish→stored p50 / p99 / max (queueing)".into(),
                format!("{} / {} / {} ms", f(sat.p50), f(sat.p99), f(sat.max)),
                String::new(),
                String::new(),
            ],
            vec![
                format!("paced {} events/s, {} events", f(TARGET_RATE), pac.events),
                format!("{} offered, {} stored events/s", f(offered), f(pac.rate)),
                String::new(),
                String::new(),
            ],
            vec![
                "  avg intake batch".into(),
                format!("{:.1}", pac.batch),
                String::new(),
                String::new(),
            ],
            vec![
                "  agent CPU per event / use; bench use".into(),
                format!(
                    "{} µs / {} %; {} %",
                    f(pac.cpu_us),
                    f(pac.cpu_pct),
                    f(pac.bench_pct)
                ),
                String::new(),
                String::new(),
            ],
            vec![
                "  publish→stored p50 / p99 / max".into(),
                format!("{} / {} / {} ms", f(pac.p50), f(pac.p99), f(pac.max)),
                format!("p99 < {} ms", f(TARGET_P99_MS)),
                verdict(Some(p99_ok)),
            ],
            vec![
                "agent peak RSS (VmHWM) after intake".into(),
                common::mib(hwm),
                String::new(),
                String::new(),
            ],
        ],
    );
    println!("  load average before: {load0}; after: {load1}");
    bench.figure(
        "intake",
        "disk fsync / fdatasync (4 KiB), fdatasync p99",
        format!(
            "{} / {} /s, {:.1} ms",
            f(fsync_rate),
            f(fdatasync_rate),
            fdatasync_ms[1]
        ),
        "",
        None,
    );
    bench.figure(
        "intake",
        format!("events/s, saturation (avg batch {:.1})", sat.batch),
        f(sat.rate),
        format!("≥ {}", f(TARGET_RATE)),
        Some(rate_ok),
    );
    bench.figure(
        "intake",
        format!(
            "publish→stored p50/p99 at {}/s (avg batch {:.1})",
            f(TARGET_RATE),
            pac.batch
        ),
        format!("{} / {} ms", f(pac.p50), f(pac.p99)),
        format!("p99 < {} ms", f(TARGET_P99_MS)),
        Some(p99_ok),
    );
    Ok(())
}

/// CPU times (clock ticks) of the agent and of the bench at a moment.
#[derive(Clone, Copy)]
struct Cpu {
    pid: u32,
    agent: u64,
    bench: u64,
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        Cpu {
            pid,
            agent: common::cpu_ticks(pid).unwrap_or(0),
            bench: common::cpu_ticks(std::process::id()).unwrap_or(0),
        }
    }
}

/// Figures of one phase from the store.
#[allow(clippy::too_many_arguments)]
fn phase(
    bench: &mut Bench,
    store: &StoreReader,
    p: &Prepared,
    stamps: &[Stamp],
    elapsed: Duration,
    r0: i64,
    b0: i64,
    cpu0: Cpu,
) -> anyhow::Result<Phase> {
    let cpu1 = Cpu::now(cpu0.pid);
    let tck = common::clk_tck() as f64;
    let agent_s = (cpu1.agent - cpu0.agent) as f64 / tck;
    let bench_s = (cpu1.bench - cpu0.bench) as f64 / tck;
    let at = store.received_at_ms()?;
    let mut lat = Vec::with_capacity(p.ids.len());
    let mut missing = 0;
    for (id, s) in p.ids.iter().zip(stamps) {
        match at.get(id) {
            Some(ms) => lat.push((ms - s.wall_ms) as f64),
            None => missing += 1,
        }
    }
    if missing > 0 {
        bench.problem(format!(
            "intake: {missing} published events are not in the store"
        ));
    }
    let lat = sorted(lat);
    let received = store.counter("received") - r0;
    let batches = (store.counter("intake_batches") - b0).max(1);
    Ok(Phase {
        events: p.ids.len(),
        cpu_us: agent_s * 1e6 / p.ids.len() as f64,
        cpu_pct: 100.0 * agent_s / elapsed.as_secs_f64(),
        bench_pct: 100.0 * bench_s / elapsed.as_secs_f64(),
        rate: p.ids.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 50.0),
        p99: pct(&lat, 99.0),
        max: lat.last().copied().unwrap_or(f64::NAN),
        batch: received as f64 / batches as f64,
    })
}

/// The raw limit of group commit: appends 4 KiB and syncs (`fsync`, or
/// `fdatasync` when `data_only`) in a loop for `d`. Answers syncs per
/// second and the p50 / p99 / max of one append + sync, in ms.
fn sync_loop(dir: &Path, d: Duration, data_only: bool) -> anyhow::Result<(f64, [f64; 3])> {
    let path = dir.join("fsync-probe.bin");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let t0 = Instant::now();
    let mut lat = Vec::new();
    while t0.elapsed() < d {
        let t = Instant::now();
        f.write_all(&block)?;
        if data_only {
            f.sync_data()?;
        } else {
            f.sync_all()?;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    let lat = sorted(lat);
    Ok((
        rate,
        [
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
        ],
    ))
}

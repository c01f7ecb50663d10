//! Part 3, online latency: POS publish → the Zenchef call, with Zenchef up
//! (no added latency) and the agent's production timings.
//!
//! Each event is a `table.opened` of a new order (3 in 10 match a
//! reservation → `changeStatus seated`; the others create a walk-in). The
//! latency is from the POS publish to the arrival at the fake of the first
//! write call carrying the event's `PublisherModelId`. On the way the agent
//! stores the event (a commit), reads the day's bookings (`GET /bookings`,
//! for matching), stores its plan (a commit), then calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenchef_sim::harness::RigOptions;
use zenchef_sim::pos::EventBuilder;

use crate::common::{
    self, Bench, Prepared, StoreReader, opened, orders, pct, sorted, start_rig, table, verdict,
    zenchef_config,
};

/// Target p99, ms.
const TARGET_P99_MS: f64 = 50.0;

/// Runs part 3.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    println!(
        "\n== 3. online latency (POS publish → first Zenchef write of the event; table.opened)"
    );
    let load0 = common::load_avgs();
    // (rate, events)
    let runs: [(f64, usize); 2] = if bench.smoke {
        [(1.0, 5), (100.0, 200)]
    } else {
        [(1.0, 120), (100.0, 2_000)]
    };
    let total: usize = runs.iter().map(|r| r.1).sum::<usize>() + 5;
    // 40 orders a day: a day's GET /bookings stays one page.
    let (plans, bookings) = orders("L", total, 40, common::yesterday());
    let opts = RigOptions::new(zenchef_config(bookings)).production_timing();
    let rig = start_rig(bench, "latency", opts, false, Duration::ZERO).await?;
    rig.pos.publish_floorplan(&common::floorplan()).await?;

    let mut builder = EventBuilder::new(1);
    let mut next = 0usize;
    let mut take = |n: usize| {
        let evs: Vec<_> = plans[next..next + n]
            .iter()
            .map(|o| opened(&mut builder, o))
            .collect();
        next += n;
        evs
    };
    // Warm-up (connections, first pages).
    let warm = Arc::new(Prepared::new(&take(5)));
    let _ = common::publish_paced(&rig.pos, warm.clone(), 10.0).await?;
    measure(bench, &rig.zenchef, &warm).await?;

    let store = StoreReader::open(&rig.store_path()).await?;
    let mut rows = Vec::new();
    for (rate, n) in runs {
        let p = Arc::new(Prepared::new(&take(n)));
        let (stamps, span) = common::publish_paced(&rig.pos, p.clone(), rate).await?;
        let firsts = measure(bench, &rig.zenchef, &p).await?;
        // Split at the store: publish → stored (received_at, ms) and
        // stored → call (the call's wall time from its monotonic offset).
        let received = store.received_at_ms()?;
        let (mut total, mut to_store, mut to_call) = (Vec::new(), Vec::new(), Vec::new());
        for (i, first) in firsts.iter().enumerate() {
            let Some(at) = first else { continue };
            let s = stamps[i];
            let ms = (*at - s.at).as_secs_f64() * 1000.0;
            total.push(ms);
            if let Some(r) = received.get(&p.ids[i]) {
                let stored = (r - s.wall_ms) as f64;
                to_store.push(stored);
                to_call.push(ms - stored);
            }
        }
        let show = |v: Vec<f64>| {
            let v = sorted(v);
            (
                pct(&v, 50.0),
                pct(&v, 99.0),
                v.last().copied().unwrap_or(f64::NAN),
            )
        };
        let (p50, p99, max) = show(total);
        let (s50, s99, _) = show(to_store);
        let (c50, c99, _) = show(to_call);
        let met = p99 < TARGET_P99_MS;
        rows.push(vec![
            format!("{rate:.0} event/s × {n} ({:.0} s)", span.as_secs_f64()),
            format!("{p50:.1} / {p99:.1} / {max:.1} ms"),
            format!("{s50:.0} / {s99:.0} ms"),
            format!("{c50:.0} / {c99:.0} ms"),
            format!("p99 < {TARGET_P99_MS:.0} ms"),
            verdict(Some(met)),
        ]);
        bench.figure(
            "latency",
            format!("publish → Zenchef call p50/p99 at {rate:.0} event/s"),
            format!("{p50:.1} / {p99:.1} ms"),
            format!("p99 < {TARGET_P99_MS:.0} ms"),
            Some(met),
        );
    }
    let load1 = common::load_avgs();
    table(
        &[
            "rate",
            "publish→call p50 / p99 / max",
            "→stored p50 / p99",
            "stored→call p50 / p99",
            "target",
            "",
        ],
        &rows,
    );
    println!("  load average before: {load0}; after: {load1}");
    Ok(())
}

/// Waits until every event has its first write at the fake; answers, in
/// publish order, when that call arrived (`None`: never, reported).
async fn measure(
    bench: &mut Bench,
    fake: &zenchef_sim::zenchef::ZenchefFake,
    p: &Prepared,
) -> anyhow::Result<Vec<Option<Instant>>> {
    let want: HashMap<&str, usize> = p
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut first: Vec<Option<Instant>> = vec![None; p.ids.len()];
    let mut found = 0usize;
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while found < want.len() {
        let calls = fake.calls_from(seen);
        seen += calls.len();
        for c in calls {
            if let Some(key) = &c.publisher_model_id
                && let Some((id, _)) = key.split_once(':')
                && let Some(&i) = want.get(id)
                && first[i].is_none()
            {
                first[i] = Some(c.at);
                found += 1;
            }
        }
        if Instant::now() >= deadline {
            bench.problem(format!(
                "latency: {} of {} table.opened never reached Zenchef within 120 s",
                want.len() - found,
                want.len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(first)
}

//! Part 2, backlog drain: 10,000 events of 1,000 orders queued while
//! Zenchef is down, then Zenchef comes back (with 20 ms added to every
//! answer) and the agent catches up.
//!
//! Measured: recovery → everything delivered (`delivered` counter in the
//! store), recovery → first successful call (the outage probe), the
//! concurrency reached at the fake (max overlapping calls, from each
//! call's arrival and answer times), the lower bounds (longest per-order
//! chain of calls × latency; all calls × latency / `delivery.concurrency`),
//! and the agent's peak RSS while draining.
//!
//! Asserted: every event delivered, none dead; per order, the calls reach
//! Zenchef in `seq` order (`PublisherModelId` = `<event_id>:<suffix>`);
//! every order's `table.opened` and `bill.paid` calls succeeded once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenchef_sim::harness::RigOptions;
use zenchef_sim::pos::EventBuilder;
use zenchef_sim::zenchef::{CallRecord, Fault};

use crate::common::{
    self, Bench, Prepared, StoreReader, index, interleave, meal, orders, start_rig, table, verdict,
    zenchef_config,
};

/// Latency added by the fake to every answer.
const LATENCY: Duration = Duration::from_millis(20);
/// Target drain time.
const TARGET: Duration = Duration::from_secs(30);
/// The agent's default `delivery.concurrency`.
const CONCURRENCY: usize = 16;

/// Runs part 2.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let n_orders = if bench.smoke { 200 } else { 1_000 };
    println!(
        "\n== 2. backlog drain ({} events of {n_orders} orders queued during an outage; Zenchef +{} ms per call)",
        n_orders * 10,
        LATENCY.as_millis()
    );
    let load0 = common::load_avgs();
    let (plans, bookings) = orders("D", n_orders, 100, common::yesterday());
    let n_booked = bookings.len();
    let mut builder = EventBuilder::new(1);
    let events = interleave(plans.iter().map(|o| meal(&mut builder, o)).collect(), 1);
    let idx = index(&events);
    let n_events = events.len() as i64;

    // Tests' timings: retry backoff and outage probe capped at 1 s.
    let opts = RigOptions::new(zenchef_config(bookings));
    let rig = start_rig(bench, "drain", opts, true, LATENCY).await?;
    rig.pos.publish_floorplan(&common::floorplan()).await?;
    let store = StoreReader::open(&rig.store_path()).await?;
    let pid = common::agent_pid(&rig)?;

    let prepared = Arc::new(Prepared::new(&events));
    let t_queue = Instant::now();
    common::publish_burst(&rig.pos, prepared).await?;
    store
        .wait_counter(
            "received",
            n_events,
            Duration::from_millis(10),
            Duration::from_secs(300),
        )
        .await?;
    let queued_in = t_queue.elapsed();
    let queued = store.outbox_in("queued");
    println!(
        "  queued {queued} events in {:.1} s while Zenchef was down",
        queued_in.as_secs_f64()
    );

    // Recovery.
    let hwm_before = common::proc_kb(pid, "VmHWM").unwrap_or(0);
    let peak_reset = common::reset_peak_rss(pid);
    let first_call = rig.zenchef.call_count();
    let cpu0 = common::cpu_ticks(pid).unwrap_or(0);
    let t_recover = Instant::now();
    rig.zenchef.set_fault(Fault::None).await?;
    let mut rss_max = 0u64;
    let deadline = t_recover + Duration::from_secs(600);
    let t_done = loop {
        rss_max = rss_max.max(common::proc_kb(pid, "VmRSS").unwrap_or(0));
        if store.counter("delivered") >= n_events {
            break Instant::now();
        }
        if Instant::now() >= deadline {
            bench.problem(format!(
                "drain: not finished after 600 s: delivered {} of {n_events}, dead {}",
                store.counter("delivered"),
                store.outbox_in("dead")
            ));
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let drain = t_done - t_recover;
    let cpu_s = (common::cpu_ticks(pid).unwrap_or(0) - cpu0) as f64 / common::clk_tck() as f64;
    let hwm = common::proc_kb(pid, "VmHWM").unwrap_or(0);

    // What the fake saw after the recovery.
    let calls: Vec<CallRecord> = rig
        .zenchef
        .calls_from(first_call)
        .into_iter()
        .filter(|c| c.at >= t_recover)
        .collect();
    let first_ok = calls
        .iter()
        .filter(|c| (200..300).contains(&c.status))
        .map(|c| c.at)
        .min();
    let detect = first_ok.map(|t| t - t_recover);
    let (max_overlap, avg_overlap) = overlap(&calls);
    let gets = calls.iter().filter(|c| c.method == "GET").count();
    let writes: Vec<&CallRecord> = calls
        .iter()
        .filter(|c| c.publisher_model_id.is_some())
        .collect();

    // Ordering and completeness.
    // order → (seq, arrival number, answered at) of its last write.
    let mut last_seq: HashMap<&str, (u64, u64, Option<Instant>)> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut out_of_order = Vec::new();
    let mut ok_keys: HashSet<&str> = HashSet::new();
    let mut per_order: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &writes {
        let key = c.publisher_model_id.as_deref().unwrap_or_default();
        let Some((event_id, _)) = key.split_once(':') else {
            out_of_order.push(format!("call {} has PublisherModelId {key:?}", c.n));
            continue;
        };
        let Some((order, seq)) = idx.get(event_id) else {
            out_of_order.push(format!("call {} names unknown event {event_id}", c.n));
            continue;
        };
        // Arrival order is not enough: two calls of one order sent at once
        // could still be applied in any order. Each call of an order must
        // arrive after the previous one was answered.
        if let Some(&(prev, prev_n, prev_done)) = last_seq.get(order.as_str()) {
            if *seq < prev {
                out_of_order.push(format!(
                    "order {order}: call {} for seq {seq} after a call for seq {prev}",
                    c.n
                ));
            } else if prev_done.is_none_or(|done| c.at < done) {
                out_of_order.push(format!(
                    "order {order}: call {} (seq {seq}) sent before call {prev_n} (seq {prev}) was answered",
                    c.n
                ));
            }
        }
        last_seq.insert(order, (*seq, c.n, c.done_at));
        if (200..300).contains(&c.status) {
            if ok_keys.insert(key) {
                *per_order.entry(order.as_str()).or_default() += 1;
            } else {
                duplicates.push(format!("call {} repeats a successful write of {key}", c.n));
            }
        }
    }
    if !duplicates.is_empty() {
        bench.problem(format!(
            "drain: {} write(s) succeeded twice at Zenchef, first: {}",
            duplicates.len(),
            duplicates[0]
        ));
    }
    if !out_of_order.is_empty() {
        bench.problem(format!(
            "drain: {} ordering violation(s), first: {}",
            out_of_order.len(),
            out_of_order[0]
        ));
    }
    // table.opened → 1 write (changeStatus seated or a walk-in);
    // bill.paid → changeStatus over + PUT pos_ticket.
    let incomplete = plans
        .iter()
        .filter(|o| per_order.get(o.order_id.as_str()).copied().unwrap_or(0) != 3)
        .count();
    let delivered = store.counter("delivered");
    let dead = store.outbox_in("dead");
    if delivered != n_events || dead != 0 || incomplete != 0 {
        bench.problem(format!(
            "drain: delivered {delivered} of {n_events}, dead {dead}, {incomplete} order(s) without exactly 3 successful writes"
        ));
    }
    let wrong_status = plans
        .iter()
        .filter_map(|o| o.booking)
        .filter(|id| rig.zenchef.status_history(*id) != ["seated", "over"])
        .count();
    if wrong_status != 0 {
        bench.problem(format!(
            "drain: {wrong_status} matched booking(s) whose status history is not seated → over"
        ));
    }
    let walkins = rig.zenchef.walkins().len();
    let tickets = rig.zenchef.tickets().len();
    if walkins != n_orders - n_booked || tickets != n_orders {
        bench.problem(format!(
            "drain: Zenchef has {walkins} walk-ins (expected {}) and {tickets} tickets (expected {n_orders})",
            n_orders - n_booked
        ));
    }

    // Bounds.
    let chain_calls = per_order.values().max().copied().unwrap_or(0) + 1; // + GET /bookings
    let chain = LATENCY * chain_calls as u32;
    let throughput_bound = LATENCY.mul_f64(calls.len() as f64 / CONCURRENCY as f64);
    let serial = LATENCY * calls.len() as u32;
    let load1 = common::load_avgs();

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let met = drain <= TARGET;
    table(
        &["measure", "value", "target", ""],
        &[
            vec![
                "recovery → all delivered".into(),
                secs(drain),
                format!("≤ {}", secs(TARGET)),
                verdict(Some(met)),
            ],
            vec![
                "  recovery → first 2xx (outage probe)".into(),
                detect.map(secs).unwrap_or("-".into()),
                String::new(),
                String::new(),
            ],
            vec![
                "  events/s while draining".into(),
                format!("{:.0}", n_events as f64 / drain.as_secs_f64()),
                String::new(),
                String::new(),
            ],
            vec![
                "  agent CPU while draining (per event)".into(),
                format!(
                    "{:.1} s = {:.0} % of a core ({:.0} µs)",
                    cpu_s,
                    100.0 * cpu_s / drain.as_secs_f64(),
                    cpu_s * 1e6 / n_events as f64
                ),
                String::new(),
                String::new(),
            ],
            vec![
                "calls at Zenchef (writes / GETs)".into(),
                format!("{} ({} / {gets})", calls.len(), writes.len()),
                String::new(),
                String::new(),
            ],
            vec![
                "concurrency at Zenchef: max / average".into(),
                format!("{max_overlap} / {avg_overlap:.1}"),
                format!("delivery.concurrency = {CONCURRENCY}"),
                String::new(),
            ],
            vec![
                "lower bound: longest order chain × 20 ms".into(),
                format!("{} ({chain_calls} calls)", secs(chain)),
                String::new(),
                String::new(),
            ],
            vec![
                format!("lower bound: calls × 20 ms / {CONCURRENCY}"),
                secs(throughput_bound),
                String::new(),
                String::new(),
            ],
            vec![
                "serial (calls × 20 ms)".into(),
                secs(serial),
                String::new(),
                String::new(),
            ],
            vec![
                "agent peak RSS while draining (VmHWM)".into(),
                if peak_reset {
                    common::mib(hwm)
                } else {
                    format!("{} (reset refused: peak since start)", common::mib(hwm))
                },
                "≤ 32 MiB".into(),
                verdict(Some(hwm <= 32 * 1024)),
            ],
            vec![
                "  RSS max sampled / peak before the drain".into(),
                format!("{} / {}", common::mib(rss_max), common::mib(hwm_before)),
                String::new(),
                String::new(),
            ],
            vec![
                "ordering per order / loss".into(),
                if out_of_order.is_empty() && incomplete == 0 && delivered == n_events {
                    "held / none".into()
                } else {
                    "BROKEN".into()
                },
                String::new(),
                String::new(),
            ],
        ],
    );
    println!("  load average before: {load0}; after: {load1}");
    bench.figure(
        "drain",
        format!(
            "{n_events} events / {n_orders} orders, recovery → drained (probe {}; max concurrency {max_overlap})",
            detect.map(secs).unwrap_or("-".into())
        ),
        secs(drain),
        format!("≤ {}", secs(TARGET)),
        Some(met),
    );
    bench.figure(
        "drain",
        "lower bound max(chain, calls×20ms/16)",
        secs(chain.max(throughput_bound)),
        "",
        None,
    );
    bench.figure(
        "memory",
        "peak RSS while draining (VmHWM)",
        common::mib(hwm),
        "≤ 32 MiB",
        Some(hwm <= 32 * 1024),
    );
    Ok(())
}

/// Max and average number of calls being served at once (arrival to
/// answer) over the span of `calls`.
fn overlap(calls: &[CallRecord]) -> (usize, f64) {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    let mut busy = Duration::ZERO;
    for c in calls {
        let done = c.done_at.unwrap_or(c.at);
        edges.push((c.at, 1));
        edges.push((done, -1));
        busy += done - c.at;
    }
    // Ends before starts at the same instant.
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in &edges {
        cur += d;
        max = max.max(cur);
    }
    let span = match (edges.first(), edges.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => b.0 - a.0,
        _ => return (max as usize, 0.0),
    };
    (max as usize, busy.as_secs_f64() / span.as_secs_f64())
}

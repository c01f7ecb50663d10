//! Delivery under a failing Zenchef (docs/protocol/sync-rules.md "Delivery guarantees",
//! docs/protocol/zenchef-api.md "Errors and what the agent does"), with the real agent
//! binary, the real broker and the Zenchef fake:
//! - a long outage (connection refused, then timeouts, then 503): the POS
//!   keeps being acknowledged, the dispatcher probes one call at a time,
//!   and after recovery the backlog drains per order in `seq` order with
//!   different orders in parallel;
//! - rate limiting (429 with `Retry-After` in seconds and as an HTTP date):
//!   honoured by every caller, no hot loop;
//! - credentials refused mid-service (401): delivery pauses, `status` says
//!   so, nothing is lost; a new token and a restart deliver everything;
//! - a poison event (422 forever): dead with the message, other orders
//!   keep flowing, `outbox retry` brings it back without a restart.
//!
//! `ZE_FULL=1` makes the outage last 30 real minutes (3 × 10 min) with a
//! service's worth of events; the default is a reduced version of the same
//! scenario.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::zenchef::{CallRecord, Fault, RetryAfter, max_in_flight};

/// Calls made by the dispatcher for `w` (writes, and the matching reads of
/// the workload's day — the reservation poller reads other days).
fn dispatcher_calls(calls: &[CallRecord], w: &Workload) -> Vec<CallRecord> {
    let day = w.day.format("%Y-%m-%d").to_string();
    calls
        .iter()
        .filter(|c| c.publisher_model_id.is_some() || c.query.contains(&day))
        .cloned()
        .collect()
}

fn calls_between(calls: &[CallRecord], from: Instant, to: Instant) -> Vec<CallRecord> {
    calls
        .iter()
        .filter(|c| c.at >= from && c.at < to)
        .cloned()
        .collect()
}

/// Publishes `events` spread evenly over `span`; checks the agent stored
/// each one meanwhile (the POS keeps being acknowledged).
async fn publish_over(
    rig: &Rig,
    events: &[serde_json::Value],
    span: Duration,
    stored_before: usize,
) {
    let gap = span / (events.len() as u32).max(1);
    for e in events {
        rig.pos.publish_event(e).await.unwrap();
        tokio::time::sleep(gap).await;
    }
    let want = stored_before + events.len();
    zenchef_sim::util::wait_for(
        "the agent stored every event",
        Duration::from_secs(30),
        || store_counts(&rig.store_path()).and_then(|(n, _, _)| (n as usize >= want).then_some(())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
}

/// Scenario 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_keeps_acknowledging_then_drains_in_order_and_in_parallel() {
    let _heavy = heavy().await;
    let seed = seed();
    eprintln!("outage seed {seed} (replay: ZE_SEED={seed})");
    // Full: a busy 30-minute service (180 orders, 1,800 events) during a
    // 30-minute outage. Reduced: the same phases, compressed.
    let (orders, per_order, phase) = if full() {
        (180, 10, Duration::from_secs(600))
    } else {
        (60, 5, Duration::from_secs(4))
    };
    let w = Workload::generate(seed, orders, per_order, 30);
    let dir = tempfile::tempdir().unwrap();
    let rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    // The outage starts in the middle of service: the first fifth of the
    // events is delivered normally, so tables opened before it go on
    // (items, moves, payments) during it.
    let (before, during) = w.events.split_at(w.events.len() / 5);
    publish_all(&rig, before).await;
    let s = rig
        .wait_status("delivery before the outage", Duration::from_secs(60), |s| {
            s["counts"]["delivered"].as_u64() == Some(before.len() as u64)
        })
        .await
        .unwrap();
    let thirds: Vec<&[serde_json::Value]> = during.chunks(during.len().div_ceil(3)).collect();

    let t_down = Instant::now();
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    // Let the health record catch up with the last success before the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last_success = rig.status().unwrap()["daemon"]["zenchef"]["last_success"].clone();
    assert!(last_success.is_string(), "{s}");
    publish_over(&rig, thirds[0], phase, before.len()).await;
    let s = rig
        .wait_status("the outage in status", Duration::from_secs(10), |s| {
            s["daemon"]["zenchef"]["outage"] == json!(true)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["dead"], json!(0));

    let t_timeout = Instant::now();
    rig.zenchef.set_fault(Fault::Timeout).await.unwrap();
    publish_over(&rig, thirds[1], phase, before.len() + thirds[0].len()).await;

    let t_503 = Instant::now();
    rig.zenchef.set_fault(Fault::Status(503)).await.unwrap();
    publish_over(
        &rig,
        thirds[2],
        phase,
        before.len() + thirds[0].len() + thirds[1].len(),
    )
    .await;
    // Still an outage for status (no call succeeded, although events that
    // need no Zenchef call were recorded), and nothing is lost or dead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = rig.status().unwrap();
    assert_eq!(s["daemon"]["zenchef"]["outage"], json!(true), "{s}");
    assert_eq!(
        s["daemon"]["zenchef"]["last_success"], last_success,
        "no Zenchef call succeeded during the outage: {s}"
    );
    assert_eq!(
        s["counts"]["received"].as_u64(),
        Some(w.events.len() as u64)
    );
    assert_eq!(s["counts"]["dead"], json!(0));
    let queued_at_recovery = s["counts"]["queued"].as_i64().unwrap();

    // Recovery, with a latency that makes parallelism measurable.
    rig.zenchef.set_latency(Duration::from_millis(50));
    let t_up = Instant::now();
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let view = wait_drained(&rig, &w, Duration::from_secs(300)).await;
    let drain = t_up.elapsed();
    check_guarantees(&rig, &w, &view);

    // A call the fake never answered (Fault::Timeout) was given up by the
    // agent after its http_timeout_s (2 s in the rig).
    let mut calls = rig.zenchef.calls();
    for c in &mut calls {
        if c.answered_at.is_none() {
            c.answered_at = Some(c.at + Duration::from_millis(2100));
        }
    }
    let during = dispatcher_calls(&calls_between(&calls, t_timeout, t_up), &w);
    let after = dispatcher_calls(&calls_between(&calls, t_up, Instant::now()), &w);
    let probes_in_flight = max_in_flight(&during);
    let parallel = max_in_flight(&after);
    assert!(
        probes_in_flight <= 1,
        "during the outage the dispatcher must probe one call at a time, saw {probes_in_flight}"
    );
    assert!(
        parallel >= 4,
        "after recovery different orders must be delivered in parallel, max {parallel} in flight"
    );
    assert!(
        parallel <= 16,
        "delivery.concurrency (16) exceeded: {parallel}"
    );
    // The state record is refreshed every 2 s.
    rig.wait_status("the outage over in status", Duration::from_secs(10), |s| {
        s["daemon"]["zenchef"]["outage"] == json!(false)
    })
    .await
    .unwrap();
    figures(&format!(
        "outage: {} events in {:?} of outage (refused {:?}, timeouts {:?}, 503 {:?}); \
         {queued_at_recovery} queued at recovery; {} dispatcher calls during timeouts+503 \
         (max {probes_in_flight} in flight); drained in {drain:?} with max {parallel} calls in flight",
        w.events.len(),
        t_up - t_down,
        t_timeout - t_down,
        t_503 - t_timeout,
        t_up - t_503,
        during.len(),
    ));
}

/// After every 429 answered at `t` that asked to wait until `until(t)`, no
/// call may arrive before that moment (600 ms after the answer are allowed
/// for calls already on their way on a loaded machine; 300 ms of rounding
/// on the other side). The poller alone, unaware of the wait, polls every
/// second (`poll_interval_s = 1` in the rig), so it is still caught.
fn assert_waits(calls: &[CallRecord], until: impl Fn(Instant) -> Instant) {
    for c in calls.iter().filter(|c| c.status == 429) {
        let Some(t) = c.answered_at else { continue };
        let end = until(t);
        for d in calls {
            assert!(
                !(d.at > t + Duration::from_millis(600) && d.at + Duration::from_millis(300) < end),
                "call #{} ({} {}) arrived {:?} after the 429 of call #{} that asked to wait {:?}",
                d.n,
                d.method,
                d.path,
                d.at - t,
                c.n,
                end - t
            );
        }
    }
}

/// Scenario 4: `Retry-After` in both forms is honoured by every caller (the
/// dispatcher and the reservation poller); no hot loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured_in_both_forms_without_a_hot_loop() {
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 20, 3, 20);
    let dir = tempfile::tempdir().unwrap();
    let rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    let (first, second) = w.events.split_at(w.events.len() / 2);

    // Seconds form.
    rig.zenchef
        .set_fault(Fault::RateLimit {
            retry_after: RetryAfter::Seconds(3),
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    publish_all(&rig, first).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let t1 = Instant::now();
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let seconds_calls = calls_between(&rig.zenchef.calls(), t0, t1);
    assert!(
        seconds_calls.iter().any(|c| c.status == 429),
        "the fault was hit"
    );
    assert_waits(&seconds_calls, |t| t + Duration::from_secs(3));
    assert!(
        seconds_calls.len() <= 30,
        "{} calls in 8 s of rate limiting: a hot loop",
        seconds_calls.len()
    );

    // HTTP-date form: every 429 says "not before D".
    let d = SystemTime::now() + Duration::from_secs(6);
    let d_instant = Instant::now() + Duration::from_secs(6);
    rig.zenchef
        .set_fault(Fault::RateLimit {
            retry_after: RetryAfter::HttpDate(d),
        })
        .await
        .unwrap();
    let t2 = Instant::now();
    publish_all(&rig, second).await;
    // Stop just after D (a date in the past would mean "now").
    tokio::time::sleep_until((d_instant + Duration::from_millis(300)).into()).await;
    let t3 = Instant::now();
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let date_calls = calls_between(&rig.zenchef.calls(), t2, t3);
    assert!(
        date_calls.iter().any(|c| c.status == 429),
        "the fault was hit"
    );
    // The header has whole seconds: D may be up to 1 s earlier than set.
    assert_waits(&date_calls, |_| d_instant - Duration::from_secs(1));

    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    figures(&format!(
        "rate-limit: {} calls during 8 s of `Retry-After: 3`, {} calls during ~6 s of an HTTP-date Retry-After",
        seconds_calls.len(),
        date_calls.len()
    ));
}

/// Scenario 5: the token is refused mid-service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_pause_delivery_and_a_new_token_delivers_everything() {
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 30, 4, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    let (first, second) = w.events.split_at(w.events.len() / 2);
    publish_all(&rig, first).await;
    rig.wait_status("first half delivered", Duration::from_secs(60), |s| {
        s["counts"]["delivered"].as_u64() == Some(first.len() as u64)
    })
    .await
    .unwrap();

    // Zenchef rotates the token: the agent's one is now refused.
    rig.zenchef.set_token("zc-token-rotated");
    publish_all(&rig, second).await;
    let s = rig
        .wait_status(
            "credentials refused in status",
            Duration::from_secs(30),
            |s| {
                s["daemon"]["zenchef"]["credentials_refused"] == json!(true)
                    && s["counts"]["received"].as_u64() == Some(w.events.len() as u64)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s["counts"]["dead"],
        json!(0),
        "nothing is parked as dead: {s}"
    );
    assert!(s["counts"]["queued"].as_i64().unwrap() > 0, "{s}");
    // Paused: a slow probe (credentials_retry_s = 2 in the rig), no storm.
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = calls_between(&rig.zenchef.calls(), t, Instant::now())
        .into_iter()
        .filter(|c| c.status == 401 && c.publisher_model_id.is_some())
        .count();
    assert!(refused <= 4, "{refused} refused writes in 5 s while paused");
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    assert!(text.contains("CREDENTIALS REFUSED"), "{text}");
    assert!(rig.log().contains("Zenchef refused the credentials"));
    assert!(!rig.log().contains("zc-token-s3cret"), "token in the log");

    // The technician puts the new token in the configuration and restarts.
    rig.stop_agent(Duration::from_secs(20)).unwrap();
    rig.opts.zenchef.token = "zc-token-rotated".into();
    rig.spawn_agent().unwrap();
    let view = wait_drained(&rig, &w, Duration::from_secs(60)).await;
    check_guarantees(&rig, &w, &view);
    let s = rig
        .wait_status("credentials accepted again", Duration::from_secs(10), |s| {
            s["daemon"]["zenchef"]["credentials_refused"] == json!(false)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["dead"], json!(0));
}

/// Scenario 10: a poison event (422 forever) becomes dead with the
/// answer's message; its order waits behind it, other orders flow;
/// `outbox retry <id>` delivers it without a restart once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_with_its_message_and_comes_back_with_outbox_retry() {
    let _heavy = heavy().await;
    let w = Workload::generate(seed(), 20, 3, 20);
    let dir = tempfile::tempdir().unwrap();
    let rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    // Order 0 matches booking 500000: its `seated` is refused for good.
    let poisoned = &w.orders[0];
    let booking = poisoned.booking.unwrap();
    let failure =
        rig.zenchef
            .fail_booking(booking, 422, "booking 500000 is locked by the restaurant");
    publish_all(&rig, &w.events).await;
    let s = rig
        .wait_status(
            "one dead, the rest delivered",
            Duration::from_secs(60),
            |s| {
                let c = &s["counts"];
                c["dead"] == json!(1)
                    && c["delivered"].as_u64() == Some(w.events.len() as u64 - 3)
                    && c["queued"] == json!(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s["counts"]["received"].as_u64(),
        Some(w.events.len() as u64)
    );
    // The dead letter names the event, the order and the message.
    let (code, out, _) = rig.cli(&["outbox", "list", "--dead"]).unwrap();
    assert_eq!(code, 0);
    let opened = &poisoned.event_ids[0];
    assert!(out.contains(opened.as_str()), "{out}");
    assert!(out.contains(&poisoned.order_id), "{out}");
    assert!(
        out.contains("booking 500000 is locked by the restaurant"),
        "{out}"
    );
    assert!(rig.log().contains(&format!(
        "event {opened} of order {} is a dead letter",
        poisoned.order_id
    )));
    // Its later events wait behind it, in order (never sent first).
    assert!(rig.zenchef.status_history(booking).is_empty());
    assert!(!rig.zenchef.tickets().contains_key(&poisoned.order_id));

    // Fixed in Zenchef; the technician retries; no restart.
    rig.zenchef.clear_failure(failure);
    let (code, out, _) = rig.cli(&["outbox", "retry", opened]).unwrap();
    assert_eq!(code, 0, "{out}");
    let view = wait_drained(&rig, &w, Duration::from_secs(30)).await;
    check_guarantees(&rig, &w, &view);
    assert_eq!(rig.starts, 1, "delivered without a restart");
}

//! Crash suites (docs/protocol/sync-rules.md "Delivery guarantees"): the real agent
//! binary is SIGKILLed at random moments while it takes a service from the
//! POS (intake) and while its calls to Zenchef are in flight (delivery).
//! Afterwards every event the broker acknowledged to the POS is in the
//! SQLite file and delivered, every Zenchef effect happened exactly once
//! (idempotency keys), and each order's calls reached Zenchef in `seq`
//! order.
//!
//! Seeded: the seed is printed first (`ZE_SEED=<n>` replays the same
//! workload and kill schedule).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use zenchef_sim::harness::{Rig, RigOptions};

/// Store progress: events stored + outbox rows delivered (from the file).
fn progress(rig: &Rig) -> i64 {
    store_counts(&rig.store_path())
        .map(|(stored, _, done)| stored + done)
        .unwrap_or(0)
}

/// Restarts the agent and answers how long it took to make progress
/// again (store or deliver something), or `None` when nothing was left
/// to do.
async fn restart_and_measure(rig: &mut Rig, total_work: i64) -> Option<Duration> {
    let before = progress(rig);
    let started = Instant::now();
    rig.spawn_agent().unwrap();
    if before >= total_work {
        return None;
    }
    let deadline = started + Duration::from_secs(60);
    loop {
        if progress(rig) > before {
            return Some(started.elapsed());
        }
        if let Some(code) = rig.agent_exited() {
            panic!(
                "the agent exited ({code}) after a restart\n{}",
                rig.log_tail(40)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "no progress within 60 s of a restart (before: {before})\n{}",
                rig.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Scenario 1: 1,000 orders, 10,000 events, the agent SIGKILLed at least
/// 20 times at random moments while the POS publishes and while it
/// delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_intake_loses_nothing_and_duplicates_nothing() {
    let _heavy = heavy().await;
    let seed = seed();
    eprintln!("crash-during-intake seed {seed} (replay: ZE_SEED={seed})");
    let min_kills: u32 = std::env::var("ZE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let w = Workload::generate(seed, 1000, 10, 40);
    assert_eq!(w.events.len(), 10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    rig.pos.publish_floorplan(&w.floorplan()).await.unwrap();

    let t0 = Instant::now();
    let pos = rig.pos.clone();
    let events = w.events.clone();
    // The POS replays at a service-like pace (~30 s for 10,000 events) so
    // that most kills land during intake.
    let publisher = tokio::spawn(async move {
        let mut acked = 0usize;
        for chunk in events.chunks(100) {
            for e in chunk {
                pos.publish_event(e).await?;
                acked += 1;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::Ok(acked)
    });

    // Work = every event stored + every outbox row done.
    let total_work = 2 * w.events.len() as i64;
    let mut rng = Rng::new(seed ^ 0x005E_ED0F_C4A5);
    let mut kills = 0u32;
    let mut max_recovery = Duration::ZERO;
    let mut kills_during_intake = 0u32;
    while kills < min_kills || !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.range(50, 700))).await;
        if progress(&rig) >= total_work {
            break;
        }
        if !publisher.is_finished() {
            kills_during_intake += 1;
        }
        rig.kill_agent().unwrap();
        kills += 1;
        // Down for a random moment (the broker keeps what the POS sends).
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        if let Some(r) = restart_and_measure(&mut rig, total_work).await {
            max_recovery = max_recovery.max(r);
        }
    }
    let acked = publisher.await.unwrap().unwrap();
    let view = wait_drained(&rig, &w, Duration::from_secs(600)).await;
    let elapsed = t0.elapsed();
    let suppressed = check_guarantees(&rig, &w, &view);
    assert!(
        kills >= min_kills,
        "only {kills} kills before the work was done: {elapsed:?}"
    );
    assert!(kills_during_intake > 0, "no kill happened during intake");
    figures(&format!(
        "crash-during-intake: seed {seed}; events sent {}, acknowledged by the broker {acked}, \
         stored {}, delivered {}, MQTT redeliveries deduplicated by event_id {}, \
         Zenchef replays suppressed by PublisherModelId {suppressed}; kills {kills} \
         ({kills_during_intake} during intake); max recovery after a kill {:?}; total {:?}",
        w.events.len(),
        view.events.len(),
        view.counter("delivered"),
        view.counter("duplicates"),
        max_recovery,
        elapsed
    ));
}

/// Scenario 2: the agent is SIGKILLed while its calls are in flight at
/// Zenchef (the fake acts, then holds the answer): after each restart the
/// same plan is replayed with the same keys, so no walk-in is created
/// twice and no status goes backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_delivery_creates_nothing_twice() {
    let _heavy = heavy().await;
    let seed = seed();
    eprintln!("crash-during-delivery seed {seed} (replay: ZE_SEED={seed})");
    let w = Workload::generate(seed, 60, 3, 60);
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    // Acted, then 400 ms before the answer: a kill in that window loses
    // the answer of a call that took effect.
    rig.zenchef.set_answer_delay(Duration::from_millis(400));
    publish_all(&rig, &w.events).await;

    let mut rng = Rng::new(seed ^ 0xDE11);
    let mut kills = 0u32;
    let mut kills_in_flight = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while kills < 12 && Instant::now() < deadline {
        // Wait for a write in flight at the fake, then kill at a random
        // moment of its answer delay.
        let in_flight =
            zenchef_sim::util::wait_for("a write in flight", Duration::from_secs(20), || {
                let calls = rig.zenchef.calls();
                calls
                    .iter()
                    .any(|c| c.publisher_model_id.is_some() && c.answered_at.is_none())
                    .then_some(())
            })
            .await;
        if in_flight.is_err() {
            break; // nothing left to deliver
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 300))).await;
        let before = rig.zenchef.calls().len();
        rig.kill_agent().unwrap();
        kills += 1;
        if rig.zenchef.calls()[..before]
            .iter()
            .any(|c| c.publisher_model_id.is_some() && c.answered_at.is_none())
        {
            kills_in_flight += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 200))).await;
        rig.spawn_agent().unwrap();
    }
    rig.zenchef.set_answer_delay(Duration::ZERO);
    let view = wait_drained(&rig, &w, Duration::from_secs(120)).await;
    let suppressed = check_guarantees(&rig, &w, &view);
    assert!(
        kills_in_flight >= 5,
        "only {kills_in_flight} kills hit a call in flight"
    );
    assert!(
        suppressed > 0,
        "no call was replayed after a kill: the test did not reach the window it is about"
    );
    figures(&format!(
        "crash-during-delivery: seed {seed}; orders {}, kills {kills} ({kills_in_flight} with a \
         write in flight), replays answered from the idempotency memory {suppressed}, walk-ins {}",
        w.orders.len(),
        rig.zenchef.walkins().len()
    ));
    let _ = Path::new(AGENT);
}

//! `zenchef-edge outbox retry` from another process reaches the running
//! daemon: its dispatcher notices the commit (`PRAGMA data_version`) and
//! rescans the queue within `RESCAN_EVERY` (5 s). The real binary, the real
//! broker, the Zenchef fake refusing a walk-in until "the cause is fixed".

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, paris_winter};
use zenchef_sim::zenchef::ZenchefConfig;

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_from_the_cli_is_delivered_by_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = ZenchefConfig {
        tables: vec![(12, "12".into(), "Salle".into())],
        ..Default::default()
    };
    let mut rig = Rig::start(RigOptions::new(config), Path::new(AGENT), dir.path())
        .await
        .unwrap();
    // Creating the walk-in is refused as "can never succeed as is".
    let refusal = rig.zenchef.fail_matching(
        |m, p| m == "POST" && p.starts_with("/api/v1/bookings"),
        422,
        "nb_guests: too many for this table",
    );
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
    let ev = b.table_opened("O-1", "12", 2, opened);
    rig.pos.publish_event(&ev).await.unwrap();
    rig.wait_status("a dead letter", Duration::from_secs(20), |s| {
        s["counts"]["dead"] == json!(1)
    })
    .await
    .unwrap();
    // Let a few rescan periods pass: nothing changes by itself.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(rig.zenchef.walkins().len(), 0);
    assert_eq!(rig.status().unwrap()["counts"]["dead"], json!(1));

    // The technician fixes the cause and retries from the command line.
    rig.zenchef.clear_failure(refusal);
    let (code, out, err) = rig.cli(&["outbox", "retry", "--all-dead"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    rig.wait_status(
        "the retried event delivered by the running daemon",
        Duration::from_secs(15),
        |s| s["counts"]["dead"] == json!(0) && s["counts"]["delivered"] == json!(1),
    )
    .await
    .unwrap();
    assert_eq!(rig.zenchef.walkins().len(), 1);
}

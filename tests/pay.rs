//! Zenchef Pay end to end: the real agent binary, the real broker, the POS
//! simulator answering settle commands, the Zenchef Pay fake. Every check
//! version and every payment's fate is asserted (docs/protocol/sync-rules.md rules 6, 7).

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use zenchef_sim::harness::Rig;
use zenchef_sim::pay::PaymentState;
use zenchef_sim::pos::{EventBuilder, Line, Payment};
use zenchef_sim::zenchef::Fault;

use common::money::{LONG, now, open_table, options, pay, start, wait_fate};

/// Tables 1–20, no bookings, Zenchef Pay on (the money suites' rig).
async fn pay_rig(dir: &Path) -> Rig {
    start(options(Vec::new(), ""), dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_bill_with_a_tip_is_settled_once_per_payment_and_the_check_closed() {
    let dir = tempfile::tempdir().unwrap();
    let rig = pay_rig(dir.path()).await;
    let mut eb = EventBuilder::new(1000);
    open_table(&rig, &mut eb, "O-1", "3", 6000).await;
    pay(&rig)
        .wait_for_check("O-1", LONG, |c| {
            c["status"] == json!("open") && c["total_cents"] == json!(6000)
        })
        .await
        .unwrap();
    // Two guests split it; the second leaves a tip.
    let p1 = pay(&rig).guest_pays("O-1", 2500, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p1).await, PaymentState::Settled);
    let p2 = pay(&rig).guest_pays("O-1", 3500, 300, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p2).await, PaymentState::Settled);
    let closed = pay(&rig)
        .wait_for_check("O-1", LONG, |c| c["status"] == json!("closed"))
        .await
        .unwrap();
    assert_eq!(
        closed["paid_cents"],
        json!(6000),
        "tips are not part of the bill"
    );
    // Versions strictly increase; paid_cents follows the POS.
    let history = pay(&rig).check_history("O-1");
    let versions: Vec<i64> = history
        .iter()
        .map(|c| c["version"].as_i64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let paid: Vec<i64> = history
        .iter()
        .map(|c| c["paid_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(paid.first(), Some(&0));
    assert!(paid.contains(&2500), "{paid:?}");
    // Exactly one settle command per payment, each answered by the POS.
    let cmds = rig.pos.commands();
    for p in [&p1, &p2] {
        let n = cmds.iter().filter(|c| c["payment_id"] == json!(p)).count();
        assert_eq!(n, 1, "settle commands for {p}: {cmds:#?}");
        assert_eq!(pay(&rig).acks(p).len(), 1, "one ack for {p}");
    }
    let c2 = cmds.iter().find(|c| c["payment_id"] == json!(p2)).unwrap();
    assert_eq!(
        c2,
        &json!({"command_id": format!("zp-{p2}"), "type": "settle", "order_id": "O-1", "table": "3",
                "amount_cents": 3500, "tip_cents": 300, "method": "zenchef_pay", "payment_id": p2})
    );
    // Guests can no longer pay it.
    assert!(pay(&rig).guest_pays("O-1", 100, 0, "card").is_err());
    let s = rig
        .wait_status("pay counts", LONG, |s| {
            s["counts"]["pay_settled"] == json!(2)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["pay_rejected"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_that_cannot_be_settled_are_rejected_with_a_reason_and_never_sent_to_the_pos() {
    let dir = tempfile::tempdir().unwrap();
    let rig = pay_rig(dir.path()).await;
    let mut eb = EventBuilder::new(2000);
    let lines = open_table(&rig, &mut eb, "O-CASH", "4", 4000).await;
    open_table(&rig, &mut eb, "O-BIG", "5", 3000).await;
    for o in ["O-CASH", "O-BIG"] {
        pay(&rig)
            .wait_for_check(o, LONG, |c| c["status"] == json!("open"))
            .await
            .unwrap();
    }
    // O-CASH is paid in cash at the POS; its check gets closed.
    let now = now();
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-CASH",
            "4",
            2,
            &lines,
            4000,
            0,
            &[Payment::new("cash", 4000, "CASH-1")],
            now,
        ))
        .await
        .unwrap();
    pay(&rig)
        .wait_for_check("O-CASH", LONG, |c| c["status"] == json!("closed"))
        .await
        .unwrap();
    let late = pay(&rig).inject_payment(
        json!({"order_id": "O-CASH", "amount_cents": 4000, "tip_cents": 0, "method": "card"}),
    );
    let unknown = pay(&rig).inject_payment(
        json!({"order_id": "O-NOPE", "amount_cents": 1000, "tip_cents": 0, "method": "card"}),
    );
    let too_big = pay(&rig).inject_payment(
        json!({"order_id": "O-BIG", "amount_cents": 3001, "tip_cents": 0, "method": "card"}),
    );
    for (p, want) in [
        (&late, "order O-CASH already paid in the POS"),
        (&unknown, "order O-NOPE is unknown to the POS"),
        (
            &too_big,
            "amount 3001 cents exceeds what is still due on order O-BIG (3000 cents)",
        ),
    ] {
        match wait_fate(&rig, p).await {
            PaymentState::Rejected { reason } => assert_eq!(reason, want),
            other => panic!("{p}: {other:?}"),
        }
        assert!(
            rig.pos
                .commands()
                .iter()
                .all(|c| c["payment_id"] != json!(p)),
            "no settle command for {p}"
        );
    }
    let s = rig
        .wait_status("rejected counted", LONG, |s| {
            s["counts"]["pay_rejected"] == json!(3)
        })
        .await
        .unwrap();
    assert_eq!(s["counts"]["pay_settled"], json!(0));
    let log = rig.log();
    assert!(
        log.contains("REFUSED: order O-CASH already paid in the POS"),
        "logged at ERROR with the reason"
    );
    assert!(
        !log.contains("pay-token-s3cret"),
        "the Pay token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_returned_twice_by_the_api_is_settled_once() {
    let dir = tempfile::tempdir().unwrap();
    let rig = pay_rig(dir.path()).await;
    let mut eb = EventBuilder::new(3000);
    open_table(&rig, &mut eb, "O-2", "6", 5000).await;
    pay(&rig)
        .wait_for_check("O-2", LONG, |c| c["status"] == json!("open"))
        .await
        .unwrap();
    let p1 = pay(&rig).guest_pays("O-2", 2000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p1).await, PaymentState::Settled);
    pay(&rig).duplicate_next_payment();
    let p2 = pay(&rig).guest_pays("O-2", 3000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p2).await, PaymentState::Settled);
    pay(&rig)
        .wait_for_check("O-2", LONG, |c| c["status"] == json!("closed"))
        .await
        .unwrap();
    assert!(!pay(&rig).duplicate_pending(), "the fault fired");
    let cmds = rig.pos.commands();
    for p in [&p1, &p2] {
        assert_eq!(
            cmds.iter().filter(|c| c["payment_id"] == json!(p)).count(),
            1,
            "{p}"
        );
    }
    assert!(rig.pos.duplicate_commands().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_down_while_items_are_sent_pushes_the_latest_check_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let rig = pay_rig(dir.path()).await;
    pay(&rig).set_fault(Fault::Down).await.unwrap();
    let mut eb = EventBuilder::new(4000);
    let now = now();
    rig.pos
        .publish_event(&eb.table_opened("O-3", "7", 2, now))
        .await
        .unwrap();
    let mut last_seq = 0;
    for total in [1000, 2500, 4200] {
        let e = eb.items_sent("O-3", "7", &[Line::new("L1", "Plat", 1, total)], total);
        last_seq = e["seq"].as_u64().unwrap();
        rig.pos.publish_event(&e).await.unwrap();
    }
    rig.wait_status("items stored while Pay is down", LONG, |s| {
        s["counts"]["received"] == json!(4)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pay(&rig).set_fault(Fault::None).await.unwrap();
    let c = pay(&rig)
        .wait_for_check("O-3", LONG, |c| c["total_cents"] == json!(4200))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(c["version"], json!(last_seq));
    let accepted: Vec<i64> = pay(&rig)
        .check_history("O-3")
        .iter()
        .map(|c| c["total_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(
        accepted,
        vec![4200],
        "only the latest version is pushed after the outage"
    );
    // Nothing was lost on the Zenchef side meanwhile.
    rig.wait_status("delivered", LONG, |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(4)
    })
    .await
    .unwrap();
    assert_eq!(rig.zenchef.walkins().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_settle_command_and_the_pos_answer_no_second_command_and_the_ack_still_goes()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = pay_rig(dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(5000);
    open_table(&rig, &mut eb, "O-4", "8", 3000).await;
    pay(&rig)
        .wait_for_check("O-4", LONG, |c| c["status"] == json!("open"))
        .await
        .unwrap();
    let p = pay(&rig).guest_pays("O-4", 3000, 200, "card").unwrap();
    rig.pos
        .wait_until(LONG, |s| {
            s.commands.iter().any(|c| c["payment_id"] == json!(p))
        })
        .await
        .unwrap();
    rig.kill_agent().unwrap();
    // The POS answers while the agent is down; the broker keeps the answer.
    assert_eq!(rig.pos.answer_pending_settles(), 1);
    rig.spawn_agent().unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    pay(&rig)
        .wait_for_check("O-4", LONG, |c| c["status"] == json!("closed"))
        .await
        .unwrap();
    // Let the restarted agent poll payments a few times: no second command.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let n = rig
        .pos
        .commands()
        .iter()
        .filter(|c| c["payment_id"] == json!(p))
        .count();
    assert_eq!(
        n,
        1,
        "settle commands after the restart: {:#?}",
        rig.pos.commands()
    );
    assert_eq!(pay(&rig).acks(&p).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pay_token_pauses_pay_says_so_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rig = pay_rig(dir.path()).await;
    pay(&rig).set_token("rotated-elsewhere");
    let mut eb = EventBuilder::new(6000);
    open_table(&rig, &mut eb, "O-5", "9", 2000).await;
    let s = rig
        .wait_status("Pay credentials refused", LONG, |s| {
            s["daemon"]["pay"]["credentials_refused"] == json!(true)
        })
        .await
        .unwrap();
    assert!(
        s["daemon"]["pay"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 401"),
        "{s}"
    );
    assert!(pay(&rig).check("O-5").is_none());
    assert!(
        rig.log().contains("check zenchef_pay.token"),
        "{}",
        rig.log_tail(20)
    );
    pay(&rig).set_token("pay-token-s3cret");
    let c = pay(&rig)
        .wait_for_check("O-5", LONG, |c| c["status"] == json!("open"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(c["total_cents"], json!(2000));
    let _: Value = rig
        .wait_status("Pay healthy again", LONG, |s| {
            s["daemon"]["pay"]["credentials_refused"] == json!(false)
        })
        .await
        .unwrap();
}

//! Money stays right when anything is down (docs/protocol/sync-rules.md,
//! rules 5, 6, 7, 9, 10): the real agent binary, the real broker, the POS
//! simulator, the Zenchef and Zenchef Pay fakes, each case with one part
//! down or one event late, every payment's fate and every check version
//! asserted.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde_json::json;
use zenchef_sim::pay::PaymentState;
use zenchef_sim::pos::{EventBuilder, Line, Payment};
use zenchef_sim::util::wait_for;
use zenchef_sim::zenchef::Fault;

use common::figures;
use common::money::*;

/// The target: during a Zenchef-only outage, a check reaches Zenchef Pay
/// (and closes) within this long of the POS event.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// Zenchef answers 503 while Zenchef Pay is up: checks still reach Zenchef
/// Pay and close within seconds, a table paid in cash is no longer payable,
/// a guest paying from the phone is settled (not refused as "unknown"),
/// and Zenchef catches up once back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zenchef_outage_never_delays_checks_settles_or_acks() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    rig.zenchef.set_fault(Fault::Status(503)).await.unwrap();
    let mut eb = EventBuilder::new(100);
    // Two tables opened, their items sent: both checks open within 5 s.
    let t0 = Instant::now();
    let cash_lines = open_table(&rig, &mut eb, "O-CASH", "1", 4000).await;
    wait_check(&rig, "O-CASH", "check open", |c| {
        c["status"] == json!("open")
    })
    .await;
    let open_latency = t0.elapsed();
    open_table(&rig, &mut eb, "O-PHONE", "2", 3000).await;
    wait_check(&rig, "O-PHONE", "check open", |c| {
        c["status"] == json!("open")
    })
    .await;
    // O-CASH is paid in cash: its check is closed within 5 s.
    let t1 = Instant::now();
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-CASH",
            "1",
            2,
            &cash_lines,
            4000,
            0,
            &[Payment::new("cash", 4000, "CASH-1")],
            now(),
        ))
        .await
        .unwrap();
    let closed = wait_check(&rig, "O-CASH", "check closed", |c| {
        c["status"] == json!("closed")
    })
    .await;
    let close_latency = t1.elapsed();
    assert_eq!(closed["paid_cents"], json!(4000));
    assert!(
        pay(&rig).guest_pays("O-CASH", 100, 0, "card").is_err(),
        "no longer payable"
    );
    // The other guest pays from the phone: settled in the POS, acked.
    let t2 = Instant::now();
    let p = pay(&rig).guest_pays("O-PHONE", 3000, 200, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    let settle_latency = t2.elapsed();
    wait_check(&rig, "O-PHONE", "closed by the POS's answer", |c| {
        c["status"] == json!("closed")
    })
    .await;
    figures(&format!(
        "zenchef_outage check_open_ms={} check_closed_ms={} phone_payment_settled_ms={}",
        open_latency.as_millis(),
        close_latency.as_millis(),
        settle_latency.as_millis()
    ));
    assert!(
        open_latency < CHECK_WITHIN,
        "check opened after {open_latency:?}"
    );
    assert!(
        close_latency < CHECK_WITHIN,
        "check closed after {close_latency:?}"
    );
    let s = status(&rig, "Zenchef outage shown, Pay fine", |s| {
        s["zenchef"]["state"] == json!("outage") && s["counts"]["pay_settled"] == json!(1)
    })
    .await;
    assert_eq!(s["counts"]["pay_rejected"], json!(0), "{s}");
    assert_eq!(s["pay"]["state"], json!("ok"), "{s}");
    assert!(rig.zenchef.walkins().is_empty(), "Zenchef was down");
    // Zenchef is back: both orders reach it, in seq order.
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    status(&rig, "Zenchef caught up", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(6)
    })
    .await;
    assert_eq!(rig.zenchef.walkins().len(), 2);
    assert!(rig.zenchef.tickets().contains_key("O-CASH"));
    assert!(rig.zenchef.tickets().contains_key("O-PHONE"));
    assert!(pay(&rig).refunds().is_empty());
}

/// The POS does not answer the settle command, then the waiter takes cash
/// for the whole bill: the phone payment is refused (refunded) at once, not
/// left pending; a guest never pays twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_closed_in_cash_after_a_phone_payment_refunds_the_phone_payment() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(200);
    let lines = open_table(&rig, &mut eb, "O-1", "3", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let p = pay(&rig).guest_pays("O-1", 5000, 0, "card").unwrap();
    rig.pos
        .wait_until(LONG, |s| {
            s.commands.iter().any(|c| c["payment_id"] == json!(p))
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "3",
            2,
            &lines,
            5000,
            0,
            &[Payment::new("cash", 5000, "CASH-9")],
            now(),
        ))
        .await
        .unwrap();
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => {
            assert_eq!(reason, "bill closed in the POS without this payment")
        }
        other => panic!("{other:?}"),
    }
    let refused_after = t0.elapsed();
    figures(&format!(
        "closed_without_payment refund_ms={}",
        refused_after.as_millis()
    ));
    assert!(refused_after < CHECK_WITHIN, "{refused_after:?}");
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    let s = status(&rig, "counted", |s| s["counts"]["pay_rejected"] == json!(1)).await;
    assert_eq!(s["counts"]["pay_pending"], json!(0), "{s}");
    let log = rig.log();
    let line = log
        .lines()
        .find(|l| l.contains("REFUSED: bill closed in the POS without this payment"))
        .expect("an ERROR line");
    assert!(
        line.contains("ERROR") && line.contains(&p) && line.contains("O-1"),
        "{line}"
    );
    // Not resent afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(commands_for(&rig, &p).len(), 1);
}

/// A POS that never answers: the settle command is resent a bounded number
/// of times with the same command_id, then the payment needs a person
/// (status with the amount and the table, the page, ERROR); the POS's late
/// answer still settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pos_gets_bounded_resends_then_a_person_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(vec![], "settle_resend_s = 1\nsettle_resends = 2\n");
    let port = zenchef_sim::util::free_port().unwrap();
    opts.http_listen = format!("127.0.0.1:{port}");
    let rig = start(opts, dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(300);
    open_table(&rig, &mut eb, "O-1", "4", 6000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let p = pay(&rig).guest_pays("O-1", 2500, 150, "card").unwrap();
    let s = status(&rig, "needs a person", |s| {
        s["counts"]["pay_needs_person"] == json!(1)
    })
    .await;
    let cmds = commands_for(&rig, &p);
    assert_eq!(cmds.len(), 3, "1 command + 2 resends: {cmds:#?}");
    assert!(
        cmds.iter().all(|c| c == &cmds[0]),
        "the same command each time"
    );
    assert_eq!(cmds[0]["command_id"], json!(format!("zp-{p}")));
    let np = &s["payments_needing_person"][0];
    assert_eq!(np["payment_id"], json!(p));
    assert_eq!(np["table"], json!("4"));
    assert_eq!(np["amount_cents"], json!(2500));
    assert_eq!(np["tip_cents"], json!(150));
    assert!(
        s["problems"]
            .as_array()
            .unwrap()
            .contains(&json!("payments_need_person")),
        "{s}"
    );
    let (code, text, _) = rig.cli(&["status"]).unwrap();
    assert_eq!(code, 0);
    assert!(
        text.contains("NEEDS A PERSON  table 4: 25.00 EUR + 1.50 EUR tip"),
        "{text}"
    );
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("payments-needing-person") && page.contains(&p),
        "{page}"
    );
    assert!(
        rig.log()
            .contains("NEEDS A PERSON: the POS did not answer the settle command")
    );
    // Never resent in silence afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(commands_for(&rig, &p).len(), 3);
    // The POS answers at last: settled, no longer needing anyone.
    assert_eq!(rig.pos.answer_pending_settles(), 1);
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    status(&rig, "cleared", |s| {
        s["counts"]["pay_needs_person"] == json!(0)
    })
    .await;
}

/// A bill with a discount line (negative prices) is ordinary: carried as
/// the POS sent it to the check and the ticket; the booking goes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_with_a_discount_line_is_carried_as_the_pos_sent_it() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let rig = start(options(vec![booking(7001, "5", at)], ""), dir.path()).await;
    let mut eb = EventBuilder::new(400);
    rig.pos
        .publish_event(&eb.table_opened("O-1", "5", 2, at))
        .await
        .unwrap();
    let lines = vec![
        Line::new("L1", "Menu", 2, 2500),
        Line::new("L2", "Remise fidélité", 1, -1000),
    ];
    rig.pos
        .publish_event(&eb.items_sent("O-1", "5", &lines, 4000))
        .await
        .unwrap();
    let c = wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    assert_eq!(c["total_cents"], json!(4000));
    assert_eq!(
        c["lines"],
        json!([{"name":"Menu","quantity":2,"unit_price_cents":2500,"total_cents":5000},
               {"name":"Remise fidélité","quantity":1,"unit_price_cents":-1000,"total_cents":-1000}])
    );
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "5",
            2,
            &lines,
            4000,
            0,
            &[Payment::new("card", 4000, "CB-1")],
            now(),
        ))
        .await
        .unwrap();
    let s = status(&rig, "delivered", |s| {
        s["counts"]["delivered"] == json!(3) && s["counts"]["queued"] == json!(0)
    })
    .await;
    assert_eq!(
        s["counts"]["rejected"],
        json!(0),
        "nothing quarantined: {s}"
    );
    assert_eq!(s["counts"]["orders_open"], json!(0), "{s}");
    assert_eq!(rig.zenchef.status_history(7001), vec!["seated", "over"]);
    let (b, ticket) = &rig.zenchef.tickets()["O-1"];
    assert_eq!(*b, 7001);
    assert_eq!(ticket["total_cents"], json!(4000));
    assert_eq!(ticket["lines"][1]["total_cents"], json!(-1000));
    assert_eq!(ticket["lines"][1]["name"], json!("Remise fidélité"));
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
}

/// Rule 9: an event of a known order that cannot be read leaves the order
/// in doubt: it needs attention, payments on it are refused with that
/// reason, until a valid bill from the POS clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_event_holds_payments_until_the_pos_sends_the_bill_again() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(500);
    open_table(&rig, &mut eb, "O-1", "6", 8000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    // The POS sends a bill this agent cannot read (a quantity in words).
    let mut bad = eb.items_sent("O-1", "6", &[Line::new("L1", "Menu", 1, 9000)], 9000);
    bad["data"]["lines"][0]["quantity"] = json!("two");
    rig.pos.publish_event(&bad).await.unwrap();
    let s = status(&rig, "attention", |s| {
        s["counts"]["orders_attention"] == json!(1)
    })
    .await;
    assert_eq!(s["orders_needing_attention"][0]["order_id"], json!("O-1"));
    assert_eq!(s["orders_needing_attention"][0]["table"], json!("6"));
    assert!(rig.log().contains("order O-1 NEEDS ATTENTION"));
    let p1 = pay(&rig).guest_pays("O-1", 1000, 0, "card").unwrap();
    match wait_fate(&rig, &p1).await {
        PaymentState::Rejected { reason } => {
            assert!(
                reason
                    .starts_with("order O-1 needs attention: one of its events could not be read"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(commands_for(&rig, &p1).is_empty());
    // A valid bill clears it; payments are settled again.
    rig.pos
        .publish_event(&eb.items_sent("O-1", "6", &[Line::new("L1", "Menu", 2, 4500)], 9000))
        .await
        .unwrap();
    status(&rig, "cleared", |s| {
        s["counts"]["orders_attention"] == json!(0)
    })
    .await;
    wait_check(&rig, "O-1", "new total", |c| {
        c["total_cents"] == json!(9000)
    })
    .await;
    let p2 = pay(&rig).guest_pays("O-1", 1000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p2).await, PaymentState::Settled);
}

/// Rule 10: events arriving after the order's bill.paid was stored never
/// reopen it: no payable check, no second walk-in, the booking stays over;
/// with Zenchef down meanwhile, the late table.opened is matched first and
/// the bill goes to its booking (the walk-in the bill had planned is never
/// created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_after_the_bill_never_reopen_it() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let rig = start(options(vec![booking(8001, "8", at)], ""), dir.path()).await;
    let lines = vec![Line::new("L1", "Menu", 1, 3000)];
    // Order A: the bill (seq 620) first, then its items (610) and its
    // table.opened (600), Zenchef up.
    let mut late = EventBuilder::new(600);
    let mut first = EventBuilder::new(620);
    let paid = first.bill_paid(
        "O-A",
        "9",
        2,
        &lines,
        3000,
        0,
        &[Payment::new("card", 3000, "CB-A")],
        at,
    );
    let opened = late.table_opened("O-A", "9", 2, at);
    late.skip(9);
    let items = late.items_sent("O-A", "9", &lines, 3000);
    rig.pos.publish_event(&paid).await.unwrap();
    status(&rig, "A's bill delivered", |s| {
        s["counts"]["delivered"] == json!(1)
    })
    .await;
    rig.pos.publish_event(&items).await.unwrap();
    rig.pos.publish_event(&opened).await.unwrap();
    let c = wait_check(&rig, "O-A", "a closed check", |c| {
        c["status"] == json!("closed")
    })
    .await;
    assert_eq!(c["version"], json!(620));
    let history = pay(&rig).check_history("O-A");
    assert!(
        history.iter().all(|c| c["status"] == json!("closed")),
        "never payable: {history:#?}"
    );
    assert!(pay(&rig).guest_pays("O-A", 100, 0, "card").is_err());
    status(&rig, "A drained", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(3)
    })
    .await;
    let walkins = rig.zenchef.walkins();
    assert_eq!(
        walkins.len(),
        1,
        "one walk-in for A's bill, none for its late opening"
    );
    let w = walkins[0]["id"].as_i64().unwrap();
    assert_eq!(
        rig.zenchef.status_history(w),
        vec!["seated", "over"],
        "not seated again"
    );

    // Order B: Zenchef down; the bill (seq 720) is stored and tried, then
    // its table.opened (700) arrives late; Zenchef comes back.
    rig.zenchef.set_fault(Fault::Status(503)).await.unwrap();
    let mut late = EventBuilder::new(700);
    let mut first = EventBuilder::new(720);
    let paid = first.bill_paid(
        "O-B",
        "8",
        2,
        &lines,
        3000,
        0,
        &[Payment::new("card", 3000, "CB-B")],
        at,
    );
    rig.pos.publish_event(&paid).await.unwrap();
    wait_for("a first try of B's bill", LONG, || {
        rig.zenchef
            .calls()
            .iter()
            .any(|c| c.method == "POST" && c.status == 503)
            .then_some(())
    })
    .await
    .unwrap();
    rig.pos
        .publish_event(&late.table_opened("O-B", "8", 2, at))
        .await
        .unwrap();
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    status(&rig, "B drained", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(5)
    })
    .await;
    assert_eq!(rig.zenchef.status_history(8001), vec!["seated", "over"]);
    assert_eq!(
        rig.zenchef.tickets()["O-B"].0,
        8001,
        "the bill went to the booking"
    );
    assert_eq!(rig.zenchef.walkins().len(), 1, "no walk-in for B");
    assert!(
        rig.log()
            .contains("deciding again the Zenchef calls not made yet")
    );
}

/// The documented repair: a `bill.paid` whose ticket Zenchef refused is a
/// dead letter after its `over` was made; the manager links the order to
/// the guests' booking, the technician retries: the steps not made are
/// decided again and go to the linked booking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bill_is_repaired_by_a_link_then_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let rig = start(options(vec![booking(9001, "15", at)], ""), dir.path()).await;
    let mut eb = EventBuilder::new(800);
    // Opened on table 11 (no booking): a walk-in.
    let lines = open_table(&rig, &mut eb, "O-1", "11", 2000).await;
    status(&rig, "opened", |s| s["counts"]["delivered"] == json!(2)).await;
    let w = rig.zenchef.walkins()[0]["id"].as_i64().unwrap();
    let refuse = rig
        .zenchef
        .fail_path_containing("/pos_ticket", 422, "ticket refused");
    let paid = eb.bill_paid(
        "O-1",
        "11",
        2,
        &lines,
        2000,
        0,
        &[Payment::new("card", 2000, "CB")],
        now(),
    );
    let paid_id = paid["event_id"].as_str().unwrap().to_string();
    rig.pos.publish_event(&paid).await.unwrap();
    status(&rig, "dead", |s| s["counts"]["dead"] == json!(1)).await;
    assert_eq!(rig.zenchef.status_history(w), vec!["seated", "over"]);
    rig.zenchef.clear_failure(refuse);
    // The guests were booked on 9001 (table 15): link, then retry.
    let (code, out, err) = rig.cli(&["link", "O-1", "9001"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = rig.cli(&["outbox", "retry", &paid_id]).unwrap();
    assert_eq!(code, 0, "{out}");
    status(&rig, "repaired", |s| {
        s["counts"]["dead"] == json!(0) && s["counts"]["queued"] == json!(0)
    })
    .await;
    assert_eq!(
        rig.zenchef.tickets()["O-1"].0,
        9001,
        "the ticket goes to the booking"
    );
    assert_eq!(rig.zenchef.status_history(9001), vec!["over"]);
    let over = rig
        .zenchef
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/bookings/9001/changeStatus"))
        .unwrap();
    assert_eq!(
        over.publisher_model_id,
        Some(format!("{paid_id}:over:r1")),
        "a new key for a decision made again"
    );
}

/// A payment Zenchef Pay lists that the agent cannot read is never skipped
/// in silence: recorded, needs a person, refused when its id is readable;
/// the payments after it are still handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_payment_is_recorded_refused_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(900);
    open_table(&rig, &mut eb, "O-1", "12", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let bad = pay(&rig).inject_payment(
        json!({"payment_id": "pay_bad1", "order_id": "O-1", "amount_cents": "12,50", "tip_cents": 0}),
    );
    pay(&rig).inject_payment(json!(["not", "a", "payment"]));
    let good = pay(&rig).guest_pays("O-1", 1000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &good).await, PaymentState::Settled);
    match wait_fate(&rig, &bad).await {
        PaymentState::Rejected { reason } => {
            assert!(reason.contains("could not read this payment"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let s = status(&rig, "two need a person", |s| {
        s["counts"]["pay_needs_person"] == json!(2)
    })
    .await;
    let ids: Vec<&str> = s["payments_needing_person"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["payment_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"pay_bad1"), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("unreadable-")), "{ids:?}");
    assert!(commands_for(&rig, "pay_bad1").is_empty());
    // A person dealt with one.
    let (code, out, err) = rig.cli(&["payments", "handled", "pay_bad1"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    status(&rig, "one left", |s| {
        s["counts"]["pay_needs_person"] == json!(1)
    })
    .await;
}

/// A replaced box (fresh store, same installation): the old box's settled
/// payment is never refunded, the one it had sent but not seen answered is
/// acknowledged settled when the POS answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_box_neither_refunds_nor_drops_the_old_boxs_payments() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1000);
    open_table(&rig, &mut eb, "O-1", "13", 3000).await;
    open_table(&rig, &mut eb, "O-2", "14", 2000).await;
    wait_check(&rig, "O-2", "open", |c| c["status"] == json!("open")).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let p1 = pay(&rig).guest_pays("O-1", 1000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p1).await, PaymentState::Settled);
    rig.pos.auto_settle(false);
    let p2 = pay(&rig).guest_pays("O-2", 2000, 0, "card").unwrap();
    rig.pos
        .wait_until(LONG, |s| {
            s.commands.iter().any(|c| c["payment_id"] == json!(p2))
        })
        .await
        .unwrap();
    // The box dies and is replaced: same configuration, a fresh store.
    rig.kill_agent().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", rig.store_path().display()));
    }
    rig.spawn_agent().unwrap();
    status(&rig, "the new box caught up", |s| {
        s["daemon_running"] == json!(true) && s["counts"]["pay_adopted"] == json!(2)
    })
    .await;
    // The POS answers the old box's command now.
    assert_eq!(rig.pos.answer_pending_settles(), 1);
    assert_eq!(wait_fate(&rig, &p2).await, PaymentState::Settled);
    // O-1's bill is paid later, listing the old box's payment.
    rig.pos
        .publish_event_next_seq(&eb.bill_paid(
            "O-1",
            "13",
            2,
            &[Line::new("L1", "Menu", 1, 3000)],
            3000,
            0,
            &[
                Payment::new("zenchef_pay", 1000, &p1),
                Payment::new("card", 2000, "CB-1"),
            ],
            now(),
        ))
        .await
        .unwrap();
    status(&rig, "nothing adopted left", |s| {
        s["counts"]["pay_adopted"] == json!(0)
    })
    .await;
    assert!(pay(&rig).refunds().is_empty(), "{:#?}", pay(&rig).refunds());
    for p in [&p1, &p2] {
        assert!(
            pay(&rig)
                .acks(p)
                .iter()
                .all(|a| a["status"] == json!("settled")),
            "{p}: {:#?}",
            pay(&rig).acks(p)
        );
    }
    assert_eq!(
        commands_for(&rig, &p2).len(),
        1,
        "the new box did not resend it"
    );
}

/// Zenchef refuses the token while guests pay: payments are settled and
/// checks closed meanwhile; Zenchef catches up once the token is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_zenchef_token_never_stops_phone_payments() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    rig.zenchef.set_token("rotated-elsewhere");
    let mut eb = EventBuilder::new(1100);
    open_table(&rig, &mut eb, "O-1", "16", 4500).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let p = pay(&rig).guest_pays("O-1", 4500, 500, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    let s = status(&rig, "credentials shown", |s| {
        s["zenchef"]["state"] == json!("credentials_refused")
    })
    .await;
    assert_eq!(s["counts"]["pay_settled"], json!(1), "{s}");
    rig.zenchef.set_token("zc-token");
    status(&rig, "caught up", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(3)
    })
    .await;
    assert_eq!(rig.zenchef.walkins().len(), 1);
    assert_eq!(rig.zenchef.tickets()["O-1"].1["total_cents"], json!(4500));
}

/// Zenchef Pay down while Zenchef is up: bookings go seated and over on
/// time; the check catches up with its latest version only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_outage_never_delays_zenchef() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let rig = start(options(vec![booking(7101, "17", at)], ""), dir.path()).await;
    pay(&rig).set_fault(Fault::Down).await.unwrap();
    let mut eb = EventBuilder::new(1200);
    rig.pos
        .publish_event(&eb.table_opened("O-1", "17", 2, at))
        .await
        .unwrap();
    wait_for("seated", LONG, || {
        (rig.zenchef.status_history(7101) == vec!["seated"]).then_some(())
    })
    .await
    .unwrap();
    let mut lines = vec![];
    for total in [1000, 2500] {
        lines = vec![Line::new("L1", "Plat", 1, total)];
        rig.pos
            .publish_event(&eb.items_sent("O-1", "17", &lines, total))
            .await
            .unwrap();
    }
    let paid = eb.bill_paid(
        "O-1",
        "17",
        2,
        &lines,
        2500,
        0,
        &[Payment::new("card", 2500, "CB")],
        now(),
    );
    let last = paid["seq"].as_u64().unwrap();
    rig.pos.publish_event(&paid).await.unwrap();
    wait_for("over and ticket", LONG, || {
        (rig.zenchef.status_history(7101) == vec!["seated", "over"]
            && rig.zenchef.tickets().contains_key("O-1"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let s = status(&rig, "Pay outage shown", |s| {
        s["pay"]["state"] == json!("outage")
    })
    .await;
    assert!(s["counts"]["pay_queued"].as_i64() >= Some(1), "{s}");
    pay(&rig).set_fault(Fault::None).await.unwrap();
    let c = wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    assert_eq!(c["version"], json!(last));
    assert_eq!(
        pay(&rig).check_history("O-1").len(),
        1,
        "only the latest version"
    );
}

/// Killed after the POS's answer is stored but before the `settled` ack
/// went through: the ack is sent once, after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_pos_answer_and_the_ack_it_is_sent_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1300);
    open_table(&rig, &mut eb, "O-1", "18", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let no_ack = pay(&rig).fail_path_containing("/ack", 503, "down for acks");
    let p = pay(&rig).guest_pays("O-1", 3000, 0, "card").unwrap();
    // The POS answers (bill.paid with the reference); the ack fails.
    status(&rig, "answered, ack pending", |s| {
        s["counts"]["received"] == json!(3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.kill_agent().unwrap();
    pay(&rig).clear_failure(no_ack);
    assert!(pay(&rig).acks(&p).is_empty());
    rig.spawn_agent().unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pay(&rig).acks(&p).len(), 1, "{:#?}", pay(&rig).acks(&p));
    assert_eq!(commands_for(&rig, &p).len(), 1);
}

/// A 3-way split 3333 / 3333 / 3334 of 10000 settles exactly; three times
/// 3333 leaves the check open at 9999 without any retry loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_way_split_settles_exactly_and_a_cent_short_leaves_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1400);
    open_table(&rig, &mut eb, "O-EXACT", "19", 10000).await;
    open_table(&rig, &mut eb, "O-SHORT", "20", 10000).await;
    for o in ["O-EXACT", "O-SHORT"] {
        wait_check(&rig, o, "open", |c| c["status"] == json!("open")).await;
    }
    for (o, amounts) in [
        ("O-EXACT", [3333, 3333, 3334]),
        ("O-SHORT", [3333, 3333, 3333]),
    ] {
        for a in amounts {
            let p = pay(&rig).guest_pays(o, a, 0, "card").unwrap();
            assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled, "{o} {a}");
        }
    }
    let c = wait_check(&rig, "O-EXACT", "closed", |c| {
        c["status"] == json!("closed")
    })
    .await;
    assert_eq!(c["paid_cents"], json!(10000));
    let c = wait_check(&rig, "O-SHORT", "paid 9999", |c| {
        c["paid_cents"] == json!(9999)
    })
    .await;
    assert_eq!(c["status"], json!("open"), "one cent still due");
    let before = rig.pos.commands().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rig.pos.commands().len(), before, "no retry loop");
    assert_eq!(rig.pos.commands().len(), 6);
    let s = rig.status().unwrap();
    assert_eq!(s["counts"]["pay_settled"], json!(6));
    assert_eq!(s["counts"]["pay_rejected"], json!(0));
    assert!(s["payments_needing_person"].as_array().unwrap().is_empty());
}

/// A payment made in the short window between `bill.paid` stored and the
/// check closed at Zenchef Pay is refused: the stored truth says paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_between_the_stored_bill_and_the_closed_check_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1500);
    let lines = open_table(&rig, &mut eb, "O-1", "10", 2500).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let hold = pay(&rig).fail_path_containing("/checks/O-1", 503, "slow");
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "10",
            2,
            &lines,
            2500,
            0,
            &[Payment::new("cash", 2500, "C")],
            now(),
        ))
        .await
        .unwrap();
    status(&rig, "bill stored", |s| s["counts"]["received"] == json!(3)).await;
    // Zenchef Pay still shows the check open: a guest pays.
    let p = pay(&rig).guest_pays("O-1", 2500, 0, "card").unwrap();
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => {
            assert_eq!(reason, "order O-1 already paid in the POS")
        }
        other => panic!("{other:?}"),
    }
    assert!(commands_for(&rig, &p).is_empty());
    pay(&rig).clear_failure(hold);
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
}

/// Matching on the night the clocks go forward uses real elapsed time: a
/// booking at 01:30 (CET) and a table opened at 03:10 (CEST) are 40
/// minutes apart (the wall clocks say 100).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_across_a_dst_change_uses_real_elapsed_time() {
    let dir = tempfile::tempdir().unwrap();
    let spring = json!({"id": 6001, "day": "2026-03-29", "time": "01:30", "nb_guests": 2,
        "firstname": "Nuit", "lastname": "Courte", "status": "confirmed",
        "tables": [{"id": 1, "name": "7"}]});
    let autumn = json!({"id": 6002, "day": "2026-10-25", "time": "01:30", "nb_guests": 2,
        "firstname": "Nuit", "lastname": "Longue", "status": "confirmed",
        "tables": [{"id": 1, "name": "7"}]});
    let mut opts = options(vec![spring, autumn], "");
    opts.timezone = "Europe/Paris".into();
    let rig = start(opts, dir.path()).await;
    let mut eb = EventBuilder::new(1600);
    let cest = FixedOffset::east_opt(7200).unwrap();
    let spring_open = DateTime::parse_from_rfc3339("2026-03-29T03:10:00+02:00").unwrap();
    rig.pos
        .publish_event(&eb.table_opened("O-SPRING", "7", 2, spring_open.with_timezone(&cest)))
        .await
        .unwrap();
    // Autumn: 01:30 CEST (23:30Z) to 02:40 CET (01:40Z) is 130 real
    // minutes (the wall clocks say 70): not a match, a walk-in.
    let autumn_open = DateTime::parse_from_rfc3339("2026-10-25T02:40:00+01:00").unwrap();
    rig.pos
        .publish_event(&eb.table_opened("O-AUTUMN", "7", 2, autumn_open))
        .await
        .unwrap();
    status(&rig, "both delivered", |s| {
        s["counts"]["delivered"] == json!(2)
    })
    .await;
    assert_eq!(rig.zenchef.status_history(6001), vec!["seated"]);
    assert!(rig.zenchef.status_history(6002).is_empty());
    assert_eq!(rig.zenchef.walkins().len(), 1);
}

/// Rule 10: a `table.opened` whose seat call was not made yet is matched
/// again when its booking is cancelled in Zenchef meanwhile — the guests
/// at the table are not those of a cancelled booking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_cancelled_before_its_seat_call_is_matched_again() {
    let dir = tempfile::tempdir().unwrap();
    let at = now();
    let later = at + chrono::Duration::minutes(20);
    let rig = start(
        options(vec![booking(5101, "3", at), booking(5102, "3", later)], ""),
        dir.path(),
    )
    .await;
    // Both bookings are on the POS (today's sync window).
    rig.pos
        .wait_until(LONG, |s| {
            s.reservations.contains_key(&5101) && s.reservations.contains_key(&5102)
        })
        .await
        .unwrap();
    let seat = rig
        .zenchef
        .fail_path_containing("/changeStatus", 503, "busy");
    let mut eb = EventBuilder::new(1700);
    rig.pos
        .publish_event(&eb.table_opened("O-1", "3", 2, at))
        .await
        .unwrap();
    wait_for("the seat call tried", LONG, || {
        rig.zenchef
            .calls()
            .iter()
            .any(|c| c.path.ends_with("/bookings/5101/changeStatus") && c.status == 503)
            .then_some(())
    })
    .await
    .unwrap();
    // Staff cancel 5101 in Zenchef; the mirror sees it (withdrawn from the POS).
    assert!(rig.zenchef.cancel_booking(5101));
    rig.pos
        .wait_until(LONG, |s| !s.reservations.contains_key(&5101))
        .await
        .unwrap();
    rig.zenchef.clear_failure(seat);
    status(&rig, "delivered", |s| {
        s["counts"]["delivered"] == json!(1) && s["counts"]["queued"] == json!(0)
    })
    .await;
    assert_eq!(rig.zenchef.status_history(5102), vec!["seated"]);
    assert!(
        rig.zenchef.status_history(5101).is_empty(),
        "the cancelled booking is never seated"
    );
    assert_eq!(
        rig.zenchef.booking(5101).unwrap()["status"],
        json!("canceled")
    );
    assert!(rig.zenchef.walkins().is_empty());
}

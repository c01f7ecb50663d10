//! Money stays right when anything is down (docs/protocol/sync-rules.md,
//! rules 5, 6, 7, 9, 10): the real agent binary, the real broker, the POS
//! simulator, the Zenchef and Zenchef Pay fakes, each case with one part
//! down or one event late, every payment's fate and every check version
//! asserted; then pairs of faults and awkward orderings (two parts down,
//! a kill between two steps, events in the worst order).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use zenchef_sim::harness::Rig;
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
    let (_dir, rig) = start_plain().await;
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
    let (_dir, rig) = start_plain().await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(200);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "3", 5000).await;
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
    open_table_with_check(&rig, &mut eb, "O-1", "4", 6000).await;
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
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(500);
    open_table_with_check(&rig, &mut eb, "O-1", "6", 8000).await;
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
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(900);
    open_table_with_check(&rig, &mut eb, "O-1", "12", 5000).await;
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
    let (_dir, mut rig) = start_plain().await;
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
    let (_dir, rig) = start_plain().await;
    rig.zenchef.set_token("rotated-elsewhere");
    let mut eb = EventBuilder::new(1100);
    open_table_with_check(&rig, &mut eb, "O-1", "16", 4500).await;
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
    let (_dir, mut rig) = start_plain().await;
    let mut eb = EventBuilder::new(1300);
    open_table_with_check(&rig, &mut eb, "O-1", "18", 3000).await;
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
    let (_dir, rig) = start_plain().await;
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
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(1500);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "10", 2500).await;
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

// ---------------------------------------------------------------------
// Pairs of faults and awkward orderings. Each of the next ten tests
// reproduced a finding of a review of this work on the code as it was
// then (its doc says what the code did); they pass since the findings
// were mended (docs/decisions.md says how).
// ---------------------------------------------------------------------

/// Zenchef Pay answers 503 to the ack of ONE payment (its server chokes on
/// it, or rate-limits acks): every other guest's payment must still be
/// read, settled in the POS and acknowledged (rule 8: orders are
/// independent). The payments task stops its whole turn at the first ack
/// that fails with a retryable error, before polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payments_failing_ack_never_freezes_the_other_orders_payments() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(100);
    open_table(&rig, &mut eb, "O-1", "1", 3000).await;
    open_table(&rig, &mut eb, "O-2", "2", 4000).await;
    for o in ["O-1", "O-2"] {
        wait_check(&rig, o, "open", |c| c["status"] == json!("open")).await;
    }
    // Every ack fails while the first payment goes through the POS.
    let all_acks = pay(&rig).fail_path_containing("/ack", 503, "acks down");
    let p1 = pay(&rig).guest_pays("O-1", 1000, 0, "card").unwrap();
    wait_command(&rig, &p1).await;
    let p1c = p1.clone();
    wait_for("p1's ack tried", LONG, || {
        pay(&rig)
            .calls()
            .iter()
            .any(|c| c.path.contains(&format!("/payments/{p1c}/ack")) && c.status == 503)
            .then_some(())
    })
    .await
    .unwrap();
    // Only p1's ack keeps failing from now on.
    let _only_p1 = pay(&rig).fail_path_containing(&format!("/payments/{p1}/ack"), 503, "boom");
    pay(&rig).clear_failure(all_acks);
    // Another table pays meanwhile.
    let p2 = pay(&rig).guest_pays("O-2", 4000, 0, "card").unwrap();
    let fate = fate_within(&rig, &p2, Duration::from_secs(20)).await;
    assert_eq!(
        fate,
        Some(PaymentState::Settled),
        "O-2's guest is neither settled in the POS nor acknowledged while O-1's ack fails; \
         settle commands for p2: {:?}\n{}",
        commands_for(&rig, &p2),
        rig.log_tail(20)
    );
}

/// A replaced box (fresh store, same installation). The old box had
/// refused a payment (amount above what was due: another guest's payment
/// was pending) and Zenchef Pay refunded it. The new box adopts it while
/// catching up; when the waiter adds items the adopted payment becomes
/// "due" on the new store's truth and its settle command is sent: the POS
/// records money the guest got back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_box_never_settles_a_payment_the_old_box_refused() {
    let (_dir, mut rig) = start_plain().await;
    let mut eb = EventBuilder::new(200);
    open_table_with_check(&rig, &mut eb, "O-1", "3", 5000).await;
    rig.pos.auto_settle(false);
    // Guest A pays the whole bill; the POS is slow to answer.
    let pa = pay(&rig).guest_pays("O-1", 5000, 0, "card").unwrap();
    wait_command(&rig, &pa).await;
    // Guest B pays the whole bill too (the check still says 0 paid): the
    // old box refuses it, Zenchef Pay refunds B.
    let pb = pay(&rig).inject_payment(
        json!({"order_id": "O-1", "amount_cents": 5000, "tip_cents": 0, "method": "card"}),
    );
    match wait_fate(&rig, &pb).await {
        PaymentState::Rejected { reason } => assert!(reason.contains("exceeds"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(commands_for(&rig, &pb).is_empty());
    // The box dies and is replaced: same configuration, fresh store.
    rig.kill_agent().unwrap();
    remove_store(&rig);
    rig.spawn_agent().unwrap();
    status(&rig, "caught up, both adopted", |s| {
        s["daemon_running"] == json!(true) && s["counts"]["pay_adopted"] == json!(2)
    })
    .await;
    // The table orders dessert: the bill is 10000 now.
    let lines = vec![
        Line::new("L1", "Menu", 1, 5000),
        Line::new("L2", "Desserts", 2, 2500),
    ];
    rig.pos
        .publish_event_next_seq(&eb.items_sent("O-1", "3", &lines, 10000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    // The POS answers what it was sent.
    rig.pos.answer_pending_settles();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bill = rig.pos.bill("O-1").unwrap();
    let s = rig.status().unwrap();
    assert!(
        commands_for(&rig, &pb).is_empty() && bill.payments.iter().all(|p| p.reference != pb),
        "the new box sent a settle command for {pb}, which Zenchef Pay refunded: {:#?}\n\
         the POS bill now counts it: {bill:#?}\nZenchef Pay refunds: {:#?}\nstatus: {s}",
        commands_for(&rig, &pb),
        pay(&rig).refunds()
    );
}

/// Zenchef Pay answers 503 for one order's check only (its server chokes
/// on that check). The Pay lane goes into outage mode with one probe at a
/// time, and the probe is always the same order (the candidates are a
/// BTreeSet taken in name order and that order's backoff equals the
/// probe time): no other order's check is ever pushed, so a table paid in
/// cash stays payable and a new table never becomes payable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_on_one_orders_check_never_freezes_the_other_orders_checks() {
    let (_dir, rig) = start_plain().await;
    let _boom = pay(&rig).fail_path_containing("/checks/O-A", 503, "internal error");
    let mut eb = EventBuilder::new(300);
    open_table(&rig, &mut eb, "O-A", "1", 1000).await;
    wait_for("O-A's check refused once", LONG, || {
        pay(&rig)
            .calls()
            .iter()
            .any(|c| c.path.contains("/checks/O-A") && c.status == 503)
            .then_some(())
    })
    .await
    .unwrap();
    open_table(&rig, &mut eb, "O-B", "2", 2000).await;
    wait_check_within(
        &rig,
        "O-B",
        "O-B's check pushed although only O-A's is refused",
        Duration::from_secs(15),
        |c| c["status"] == json!("open"),
    )
    .await;
}

/// A closing event that arrives below the version Zenchef Pay already
/// holds: `table.moved` (seq 403) is stored and pushed before the bill
/// (seq 402). The order's truth is paid, but the check is never pushed
/// again (version 403 is "already held"): the paid bill stays payable
/// forever and every guest who pays is charged then refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_bill_below_the_pushed_version_still_closes_the_check() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(400);
    let lines = open_table(&rig, &mut eb, "O-1", "4", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["version"] == json!(401)).await;
    let paid = eb.bill_paid(
        "O-1",
        "4",
        2,
        &lines,
        3000,
        0,
        &[Payment::new("cash", 3000, "CASH-1")],
        now(),
    );
    let moved = eb.table_moved("O-1", "4", "5");
    rig.pos.publish_event(&moved).await.unwrap();
    wait_check(&rig, "O-1", "moved", |c| c["version"] == json!(403)).await;
    rig.pos.publish_event(&paid).await.unwrap();
    status(&rig, "bill stored", |s| s["counts"]["received"] == json!(4)).await;
    let c = pay(&rig)
        .wait_for_check("O-1", Duration::from_secs(10), |c| {
            c["status"] == json!("closed")
        })
        .await;
    let payable = pay(&rig).guest_pays("O-1", 3000, 0, "card");
    assert!(
        c.is_ok(),
        "the paid bill's check stays open at Zenchef Pay: {:?}; a guest could pay it: {payable:?}",
        pay(&rig).check("O-1")
    );
}

/// A Zenchef Pay dead letter (422 on an `order.items_sent` check) holds
/// back the order's later check pushes, also the one of its `bill.paid`
/// once the cause is gone: the bill, paid in cash, stays payable at
/// Zenchef Pay (guests are charged, then refunded) until a technician
/// retries. The push is built from the order's whole truth, so waiting
/// behind the dead one protects nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_dead_letter_never_keeps_a_paid_bill_payable() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(500);
    open_table(&rig, &mut eb, "O-1", "6", 2000).await;
    wait_check(&rig, "O-1", "open", |c| c["version"] == json!(501)).await;
    let refuse = pay(&rig).fail_path_containing("/checks/O-1", 422, "line name too long");
    let lines = vec![
        Line::new("L1", "Menu", 1, 2000),
        Line::new("L2", "Vin", 1, 1000),
    ];
    rig.pos
        .publish_event(&eb.items_sent("O-1", "6", &lines, 3000))
        .await
        .unwrap();
    status(&rig, "pay dead", |s| s["counts"]["pay_dead"] == json!(1)).await;
    pay(&rig).clear_failure(refuse);
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "6",
            2,
            &lines,
            3000,
            0,
            &[Payment::new("cash", 3000, "CASH")],
            now(),
        ))
        .await
        .unwrap();
    let closed = pay(&rig)
        .wait_for_check("O-1", Duration::from_secs(10), |c| {
            c["status"] == json!("closed")
        })
        .await;
    assert!(
        closed.is_ok(),
        "paid in cash, still payable at Zenchef Pay: {:?}",
        pay(&rig).check("O-1")
    );
}

/// The POS records the same Zenchef Pay payment twice (two
/// `payment.recorded` events, two event ids, one reference): the bill now
/// counts 20 € the guest never paid. The agent acknowledges once (right)
/// but nobody is told, and the check shows the double amount paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pos_recording_one_phone_payment_twice_asks_a_person() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(600);
    open_table_with_check(&rig, &mut eb, "O-1", "7", 6000).await;
    let p = pay(&rig).guest_pays("O-1", 2000, 100, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    // The POS answers again (a new event id, same reference).
    rig.pos
        .publish_event_next_seq(&eb.payment_recorded("O-1", 2000, 100, "zenchef_pay", &p))
        .await
        .unwrap();
    status(&rig, "stored", |s| s["counts"]["received"] == json!(4)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pay(&rig).acks(&p).len(), 1, "acknowledged once");
    let s = rig.status().unwrap();
    let c = pay(&rig).check("O-1").unwrap();
    assert!(
        s["counts"]["pay_needs_person"].as_i64() >= Some(1)
            || s["counts"]["orders_attention"].as_i64() >= Some(1),
        "nobody is told the POS counts payment {p} twice; check paid_cents {} for one 2000 payment; {s}",
        c["paid_cents"]
    );
}

/// The POS reports a Zenchef Pay payment on an order it voided (its answer
/// to the settle command arrives after the `order.voided`, while the
/// `rejected` ack had not gone out yet): the agent turns the refusal into
/// `settled` — the guest is charged for a cancelled order — and nobody is
/// told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_reported_on_a_voided_order_is_never_settled_in_silence() {
    let (_dir, rig) = start_plain().await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(700);
    open_table_with_check(&rig, &mut eb, "O-1", "8", 3000).await;
    let acks = pay(&rig).fail_path_containing("/ack", 503, "acks slow");
    let p = pay(&rig).guest_pays("O-1", 3000, 0, "card").unwrap();
    wait_command(&rig, &p).await;
    rig.pos
        .publish_event_next_seq(&eb.order_voided("O-1", "8", "client parti"))
        .await
        .unwrap();
    status(&rig, "refused", |s| s["counts"]["pay_rejected"] == json!(1)).await;
    // The POS's answer to the command, after its void.
    rig.pos
        .publish_event_next_seq(&eb.payment_recorded("O-1", 3000, 0, "zenchef_pay", &p))
        .await
        .unwrap();
    status(&rig, "stored", |s| s["counts"]["received"] == json!(4)).await;
    pay(&rig).clear_failure(acks);
    // The POS contradicted itself: neither settled nor refused by the
    // agent; a person decides, and is told.
    let s = status(&rig, "held for a person", |s| {
        s["counts"]["pay_needs_person"] == json!(1)
    })
    .await;
    assert_eq!(s["payments_needing_person"][0]["payment_id"], json!(p));
    assert_eq!(s["payments_needing_person"][0]["state"], json!("held"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pay(&rig).payment_state(&p),
        PaymentState::Unacked,
        "no ack either way: {:#?}",
        pay(&rig).acks(&p)
    );
    assert!(
        rig.log()
            .contains("NEEDS A PERSON: the POS recorded Zenchef Pay payment")
    );
}

/// A payment of 0 cents with a tip (a guest who only tips): the contract
/// says amounts are ≥ 1 and docs/decisions.md says such a payment is
/// recorded as unreadable and refused; the client accepts it (`>= 0`)
/// and sends the POS a settle command of 0 cents it cannot apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_amount_payment_is_refused_not_sent_to_the_pos() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(800);
    open_table_with_check(&rig, &mut eb, "O-1", "9", 3000).await;
    let p = pay(&rig).inject_payment(
        json!({"order_id": "O-1", "amount_cents": 0, "tip_cents": 500, "method": "card"}),
    );
    let fate = fate_within(&rig, &p, Duration::from_secs(15)).await;
    assert!(
        commands_for(&rig, &p).is_empty(),
        "a 0-cent settle command went to the POS: {:?}; POS invalid: {:?}",
        commands_for(&rig, &p),
        rig.pos.state().invalid
    );
    assert!(
        matches!(fate, Some(PaymentState::Rejected { .. })),
        "{fate:?}"
    );
}

/// Zenchef Pay rate-limits the agent (429, `Retry-After: 30`): the
/// contract says wait for it. The payments task ignores the class and
/// the delay of its errors and polls again 5 s later, for as long as a
/// check is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_payments_list_waits_for_retry_after() {
    use zenchef_sim::zenchef::RetryAfter;
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(1800);
    open_table_with_check(&rig, &mut eb, "O-1", "1", 3000).await;
    pay(&rig)
        .set_fault(Fault::RateLimit {
            retry_after: RetryAfter::Seconds(30),
        })
        .await
        .unwrap();
    let polls = |rig: &Rig| {
        pay(rig)
            .calls()
            .iter()
            .filter(|c| c.method == "GET" && c.path.ends_with("/payments") && c.status == 429)
            .count()
    };
    wait_for("a first 429", LONG, || (polls(&rig) > 0).then_some(()))
        .await
        .unwrap();
    let first = polls(&rig);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let more = polls(&rig) - first;
    assert!(
        more <= 1,
        "{more} more polls within 16 s of a 429 asking for 30 s"
    );
}

/// Rule 9 with no way out: the POS's `bill.paid` cannot be read and the
/// POS, the table being closed, never sends another event of the order.
/// The check stays open at Zenchef Pay, every guest who pays it is charged
/// then refunded, and the order needs attention forever: no command lets
/// a person say it was dealt with (`payments handled` is for payments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_doubt_is_not_left_payable_and_a_person_can_clear_it() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(1900);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "2", 4000).await;
    let mut bad = eb.bill_paid(
        "O-1",
        "2",
        2,
        &lines,
        4000,
        0,
        &[Payment::new("cash", 4000, "CASH")],
        now(),
    );
    bad["data"]["paid_at"] = json!("yesterday evening");
    rig.pos.publish_raw(bad.to_string()).await.unwrap();
    status(&rig, "attention", |s| {
        s["counts"]["orders_attention"] == json!(1)
    })
    .await;
    // The contract (rule 9): payments arriving meanwhile are refused with
    // that reason (the check stays as Zenchef Pay last had it).
    let p1 = pay(&rig).guest_pays("O-1", 4000, 0, "card").unwrap();
    match wait_fate(&rig, &p1).await {
        PaymentState::Rejected { reason } => {
            assert!(reason.contains("needs attention"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The POS sends nothing more for that table: a person checks the bill
    // and says so; payments are judged again on what the POS reported.
    let (code, out, err) = rig.cli(&["orders"]).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("O-1") && out.contains("table 2"), "{out}");
    let (code, out, err) = rig.cli(&["orders", "handled", "O-1"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    status(&rig, "cleared", |s| {
        s["counts"]["orders_attention"] == json!(0)
    })
    .await;
    let (code, _, _) = rig.cli(&["orders", "handled", "O-1"]).unwrap();
    assert_eq!(code, 1, "nothing left to clear");
    let p2 = pay(&rig).guest_pays("O-1", 4000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p2).await, PaymentState::Settled);
}

// ---------------------------------------------------------------------
// Pairs of faults and awkward orderings that held on review
// ---------------------------------------------------------------------

/// Two guests pay the whole bill within one poll: only one is sent to the
/// POS, the other is refused (pending counted in "due").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guests_paying_the_whole_bill_in_one_poll_only_one_is_settled() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(900);
    open_table_with_check(&rig, &mut eb, "O-1", "10", 5000).await;
    let a = pay(&rig).guest_pays("O-1", 5000, 0, "card").unwrap();
    let b = pay(&rig).guest_pays("O-1", 5000, 300, "card").unwrap();
    let (fa, fb) = (wait_fate(&rig, &a).await, wait_fate(&rig, &b).await);
    assert_eq!(fa, PaymentState::Settled);
    match fb {
        PaymentState::Rejected { reason } => assert!(
            reason == "amount 5000 cents exceeds what is still due on order O-1 (0 cents)"
                || reason == "order O-1 already paid in the POS",
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(commands_for(&rig, &a).len(), 1);
    assert!(commands_for(&rig, &b).is_empty());
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
}

/// SIGKILL after intake stored a cash `bill.paid` that refuses a pending
/// phone payment, before the `rejected` ack went out: after the restart
/// the ack is sent once, no settle command is sent again, and the POS's
/// late answer to the old command changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_reject_ack_it_is_sent_once_after_restart() {
    let (_dir, mut rig) = start_plain().await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1000);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "11", 5000).await;
    let p = pay(&rig).guest_pays("O-1", 5000, 0, "card").unwrap();
    wait_command(&rig, &p).await;
    let no_ack = pay(&rig).fail_path_containing("/ack", 503, "acks down");
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "11",
            2,
            &lines,
            5000,
            0,
            &[Payment::new("cash", 5000, "CASH-9")],
            now(),
        ))
        .await
        .unwrap();
    status(&rig, "refused, ack pending", |s| {
        s["counts"]["pay_rejected"] == json!(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.kill_agent().unwrap();
    pay(&rig).clear_failure(no_ack);
    assert!(
        pay(&rig)
            .acks(&p)
            .iter()
            .all(|a| a["http_status"] != json!(200))
    );
    rig.spawn_agent().unwrap();
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => {
            assert_eq!(reason, "bill closed in the POS without this payment")
        }
        other => panic!("{other:?}"),
    }
    // The POS wakes up and tries the old command: refused (already paid).
    assert_eq!(rig.pos.answer_pending_settles(), 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted: Vec<Value> = pay(&rig)
        .acks(&p)
        .into_iter()
        .filter(|a| a["http_status"] == json!(200))
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    assert_eq!(commands_for(&rig, &p).len(), 1, "never sent again");
    let bill = rig.pos.bill("O-1").unwrap();
    assert!(
        bill.payments.iter().all(|x| x.reference != p),
        "the POS never counted it: {bill:?}"
    );
}

/// The agent is down when the waiter closes the bill in cash, with a phone
/// payment sent to the POS and not answered: the broker keeps the bill for
/// the agent; after the restart the phone payment is refused (refunded),
/// never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_bill_while_the_agent_is_down_refuses_the_pending_phone_payment() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start(options(vec![], "settle_resend_s = 1\n"), dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1100);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "12", 4000).await;
    let p = pay(&rig).guest_pays("O-1", 4000, 0, "card").unwrap();
    wait_command(&rig, &p).await;
    rig.kill_agent().unwrap();
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "12",
            2,
            &lines,
            4000,
            0,
            &[Payment::new("cash", 4000, "CASH-2")],
            now(),
        ))
        .await
        .unwrap();
    let before = commands_for(&rig, &p).len();
    rig.spawn_agent().unwrap();
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => {
            assert_eq!(reason, "bill closed in the POS without this payment")
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A resend that raced the redelivered bill is harmless (same
    // command_id, the POS refuses a paid order); none after the refusal.
    let after = commands_for(&rig, &p).len();
    assert!(after <= before + 1, "{before} → {after}");
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    let s = rig.status().unwrap();
    assert_eq!(s["counts"]["pay_pending"], json!(0), "{s}");
}

/// A voided order with a phone payment waiting for the POS: refused with
/// the void's reason, the check voided, the POS's late try refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voided_order_refuses_its_pending_phone_payment() {
    let (_dir, rig) = start_plain().await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1200);
    open_table_with_check(&rig, &mut eb, "O-1", "13", 3000).await;
    let p = pay(&rig).guest_pays("O-1", 1500, 0, "card").unwrap();
    wait_command(&rig, &p).await;
    rig.pos
        .publish_event(&eb.order_voided("O-1", "13", "erreur de saisie"))
        .await
        .unwrap();
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => {
            assert_eq!(reason, "order voided in the POS without this payment")
        }
        other => panic!("{other:?}"),
    }
    wait_check(&rig, "O-1", "voided", |c| c["status"] == json!("voided")).await;
    assert_eq!(
        rig.pos.answer_pending_settles(),
        0,
        "the POS refuses it too"
    );
    let s = status(&rig, "counted", |s| s["counts"]["pay_rejected"] == json!(1)).await;
    assert_eq!(s["counts"]["pay_pending"], json!(0), "{s}");
}

/// A fully comped bill (total 0) with a line whose total is 0: carried as
/// sent; nothing can be paid on it; closed with no payment at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fully_comped_bill_is_carried_and_nothing_can_be_paid_on_it() {
    let (_dir, rig) = start_plain().await;
    let mut eb = EventBuilder::new(1300);
    rig.pos
        .publish_event(&eb.table_opened("O-1", "14", 2, now()))
        .await
        .unwrap();
    let lines = vec![
        Line::new("L1", "Menu", 1, 3000),
        Line::new("L2", "Offert par la maison", 1, -3000),
        Line {
            line_id: "L3".into(),
            name: "Café annulé".into(),
            quantity: 1,
            unit_price_cents: -250,
            total_cents: 0,
        },
    ];
    rig.pos
        .publish_event(&eb.items_sent("O-1", "14", &lines, 0))
        .await
        .unwrap();
    let c = wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    assert_eq!(c["total_cents"], json!(0));
    assert_eq!(c["lines"][1]["total_cents"], json!(-3000));
    assert_eq!(c["lines"][2]["total_cents"], json!(0));
    assert!(pay(&rig).guest_pays("O-1", 1, 0, "card").is_err());
    let p = pay(&rig).inject_payment(
        json!({"order_id": "O-1", "amount_cents": 100, "tip_cents": 0, "method": "card"}),
    );
    match wait_fate(&rig, &p).await {
        PaymentState::Rejected { reason } => assert_eq!(
            reason,
            "amount 100 cents exceeds what is still due on order O-1 (0 cents)"
        ),
        other => panic!("{other:?}"),
    }
    rig.pos
        .publish_event(&eb.bill_paid("O-1", "14", 2, &lines, 0, 0, &[], now()))
        .await
        .unwrap();
    let c = wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    assert_eq!(c["paid_cents"], json!(0));
    let s = status(&rig, "delivered", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(3)
    })
    .await;
    assert_eq!(
        s["counts"]["rejected"],
        json!(0),
        "nothing quarantined: {s}"
    );
    let (_, ticket) = &rig.zenchef.tickets()["O-1"];
    assert_eq!(ticket["total_cents"], json!(0));
    assert_eq!(ticket["lines"][2]["total_cents"], json!(0));
}

/// Rule 9 vs rule 7: the POS's `bill.paid` of an order with a phone
/// payment waiting cannot be read. The payment is neither refused (the
/// POS may have taken it) nor settled: resent, then shown as needing a
/// person; the POS's valid answer later settles it and clears both flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_bill_with_a_pending_phone_payment_asks_a_person_then_settles() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(
        options(vec![], "settle_resend_s = 1\nsettle_resends = 1\n"),
        dir.path(),
    )
    .await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1400);
    let lines = open_table_with_check(&rig, &mut eb, "O-1", "15", 5000).await;
    let p = pay(&rig).guest_pays("O-1", 5000, 0, "card").unwrap();
    wait_command(&rig, &p).await;
    let mut bad = eb.bill_paid(
        "O-1",
        "15",
        2,
        &lines,
        5000,
        0,
        &[Payment::new("zenchef_pay", 5000, &p)],
        now(),
    );
    bad["data"]["lines"][0]["quantity"] = json!("one");
    // Raw: the simulator's own bill does not take it (the POS did not
    // close the bill yet).
    rig.pos.publish_raw(bad.to_string()).await.unwrap();
    let s = status(&rig, "attention and a person", |s| {
        s["counts"]["orders_attention"] == json!(1) && s["counts"]["pay_needs_person"] == json!(1)
    })
    .await;
    assert!(
        problems(&s).contains(&"orders_need_attention".to_string()),
        "{s}"
    );
    assert!(
        problems(&s).contains(&"payments_need_person".to_string()),
        "{s}"
    );
    assert_eq!(pay(&rig).payment_state(&p), PaymentState::Unacked);
    // A new guest is refused meanwhile (rule 9).
    let q = pay(&rig).inject_payment(
        json!({"order_id": "O-1", "amount_cents": 100, "tip_cents": 0, "method": "card"}),
    );
    match wait_fate(&rig, &q).await {
        PaymentState::Rejected { reason } => {
            assert!(reason.contains("needs attention"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The POS answers the command at last (a valid bill.paid with p).
    assert_eq!(rig.pos.answer_pending_settles(), 1);
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    status(&rig, "cleared", |s| {
        s["counts"]["orders_attention"] == json!(0) && s["counts"]["pay_needs_person"] == json!(0)
    })
    .await;
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    let cmds = commands_for(&rig, &p);
    assert!(cmds.len() == 2 && cmds[0] == cmds[1], "{cmds:#?}");
}

/// Zenchef refuses the token and Zenchef Pay answers 503 at the same time;
/// Pay comes back first: checks and phone payments resume while Zenchef is
/// still refused; Zenchef catches up once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zenchef_401_and_pay_503_then_pay_back_first() {
    let (_dir, rig) = start_plain().await;
    rig.zenchef.set_token("rotated-elsewhere");
    pay(&rig).set_fault(Fault::Status(503)).await.unwrap();
    let mut eb = EventBuilder::new(1500);
    open_table(&rig, &mut eb, "O-1", "16", 2500).await;
    let s = status(&rig, "both down", |s| {
        s["zenchef"]["state"] == json!("credentials_refused")
            && s["pay"]["state"] == json!("outage")
    })
    .await;
    let pr = problems(&s);
    assert!(pr.contains(&"zenchef_credentials".to_string()), "{s}");
    assert!(pr.contains(&"pay_outage".to_string()), "{s}");
    assert!(pay(&rig).check("O-1").is_none());
    pay(&rig).set_fault(Fault::None).await.unwrap();
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
    let p = pay(&rig).guest_pays("O-1", 2500, 250, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    let s = status(&rig, "pay ok, zenchef still refused", |s| {
        s["pay"]["state"] == json!("ok") && s["zenchef"]["state"] == json!("credentials_refused")
    })
    .await;
    assert!(rig.zenchef.walkins().is_empty(), "{s}");
    rig.zenchef.set_token("zc-token");
    status(&rig, "Zenchef caught up", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(3)
    })
    .await;
    assert_eq!(rig.zenchef.walkins().len(), 1);
    assert_eq!(rig.zenchef.tickets()["O-1"].1["total_cents"], json!(2500));
}

/// A Zenchef Pay dead letter (422 on one order's check) holds only that
/// order's Pay lane; `outbox list --dead` names it with its lane and the
/// answer; `outbox retry --all-dead` brings it back and the check goes
/// with the order's latest truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_dead_letter_holds_only_its_order_and_retry_brings_it_back() {
    let (_dir, rig) = start_plain().await;
    let refuse = pay(&rig).fail_path_containing("/checks/O-1", 422, "unknown table 17");
    let mut eb = EventBuilder::new(1600);
    let lines = open_table(&rig, &mut eb, "O-1", "17", 2000).await;
    let s = status(&rig, "pay dead", |s| s["counts"]["pay_dead"] == json!(1)).await;
    assert!(problems(&s).contains(&"pay_dead".to_string()), "{s}");
    assert_eq!(
        s["counts"]["dead"],
        json!(0),
        "the Zenchef lane is fine: {s}"
    );
    // Another order is not held.
    open_table(&rig, &mut eb, "O-2", "18", 3000).await;
    wait_check(&rig, "O-2", "open", |c| c["status"] == json!("open")).await;
    let p = pay(&rig).guest_pays("O-2", 3000, 0, "card").unwrap();
    assert_eq!(wait_fate(&rig, &p).await, PaymentState::Settled);
    // Nor is O-1's Zenchef lane: its walk-in exists.
    status(&rig, "O-1 in Zenchef", |s| {
        s["counts"]["walkins_created"] == json!(2)
    })
    .await;
    let (code, out, err) = rig.cli(&["outbox", "list", "--dead"]).unwrap();
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.contains("O-1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("order.items_sent")
            && row.contains(" pay ")
            && row.contains("unknown table 17"),
        "{out}"
    );
    // Meanwhile O-1 is paid in cash; then the cause is fixed and retried.
    rig.pos
        .publish_event(&eb.bill_paid(
            "O-1",
            "17",
            2,
            &lines,
            2000,
            0,
            &[Payment::new("cash", 2000, "CASH")],
            now(),
        ))
        .await
        .unwrap();
    // 2 + 2 events, the POS's answer to O-2's payment, O-1's bill.
    status(&rig, "bill stored", |s| s["counts"]["received"] == json!(6)).await;
    assert!(
        pay(&rig).check("O-1").is_none(),
        "no check was ever accepted"
    );
    pay(&rig).clear_failure(refuse);
    let (code, out, err) = rig.cli(&["outbox", "retry", "--all-dead"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let c = wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    assert_eq!(c["paid_cents"], json!(2000));
    assert!(
        pay(&rig)
            .check_history("O-1")
            .iter()
            .all(|c| c["status"] == json!("closed")),
        "never payable: {:#?}",
        pay(&rig).check_history("O-1")
    );
    let s = status(&rig, "lane empty", |s| {
        s["counts"]["pay_dead"] == json!(0) && s["counts"]["pay_queued"] == json!(0)
    })
    .await;
    assert!(!problems(&s).contains(&"pay_dead".to_string()), "{s}");
}

/// Every event of an order arrives highest seq first while Zenchef is
/// down: Zenchef Pay only ever sees the closed check; once Zenchef is
/// back, one walk-in, seated then over, with the ticket, in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_highest_seq_first_with_zenchef_down() {
    let (_dir, rig) = start_plain().await;
    rig.zenchef.set_fault(Fault::Status(503)).await.unwrap();
    let mut eb = EventBuilder::new(1700);
    let lines = vec![Line::new("L1", "Menu", 2, 1500)];
    let opened = eb.table_opened("O-1", "19", 2, now());
    let items = eb.items_sent("O-1", "19", &lines, 3000);
    let part = eb.payment_recorded("O-1", 1000, 0, "card", "CB-1");
    let paid = eb.bill_paid(
        "O-1",
        "19",
        2,
        &lines,
        3000,
        0,
        &[
            Payment::new("card", 1000, "CB-1"),
            Payment::new("cash", 2000, "C-1"),
        ],
        now(),
    );
    for e in [&paid, &part, &items, &opened] {
        rig.pos.publish_event(e).await.unwrap();
    }
    let c = wait_check(&rig, "O-1", "closed", |c| c["status"] == json!("closed")).await;
    assert_eq!(c["version"], json!(1703));
    assert_eq!(c["paid_cents"], json!(3000));
    assert!(
        pay(&rig)
            .check_history("O-1")
            .iter()
            .all(|c| c["status"] == json!("closed")),
        "{:#?}",
        pay(&rig).check_history("O-1")
    );
    // (No check open: Zenchef Pay is polled every 60 s, the contract's pace.)
    let p = pay(&rig).inject_payment(
        json!({"order_id": "O-1", "amount_cents": 500, "tip_cents": 0, "method": "card"}),
    );
    match fate_within(&rig, &p, Duration::from_secs(75)).await {
        Some(PaymentState::Rejected { reason }) => {
            assert_eq!(reason, "order O-1 already paid in the POS")
        }
        other => panic!("{other:?}"),
    }
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    status(&rig, "drained", |s| {
        s["counts"]["queued"] == json!(0) && s["counts"]["delivered"] == json!(4)
    })
    .await;
    let walkins = rig.zenchef.walkins();
    assert_eq!(walkins.len(), 1, "{walkins:#?}");
    let w = walkins[0]["id"].as_i64().unwrap();
    assert_eq!(rig.zenchef.status_history(w), vec!["seated", "over"]);
    assert_eq!(rig.zenchef.tickets()["O-1"].1["total_cents"], json!(3000));
    assert!(!rig.log().contains("pay-token-s3cret"));
}

//! Review of the "money when anything is down" work: pairs of faults and
//! awkward orderings that tests/money.rs and tests/pay.rs do not cover,
//! lived as a restaurant would (the real agent binary, the real broker,
//! the POS simulator, the Zenchef and Zenchef Pay fakes).
//!
//! Each of the first ten tests reproduced a finding of the review on the
//! code as it was then; they pass since the findings were mended
//! (docs/decisions.md says how).

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use zenchef_sim::harness::Rig;
use zenchef_sim::pay::PaymentState;
use zenchef_sim::pos::{EventBuilder, Line, Payment};
use zenchef_sim::util::wait_for;
use zenchef_sim::zenchef::Fault;

use common::money::*;

// ---------------------------------------------------------------------
// Findings (fail on the reviewed code)
// ---------------------------------------------------------------------

/// Zenchef Pay answers 503 to the ack of ONE payment (its server chokes on
/// it, or rate-limits acks): every other guest's payment must still be
/// read, settled in the POS and acknowledged (rule 8: orders are
/// independent). The payments task stops its whole turn at the first ack
/// that fails with a retryable error, before polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payments_failing_ack_never_freezes_the_other_orders_payments() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(200);
    open_table(&rig, &mut eb, "O-1", "3", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(600);
    open_table(&rig, &mut eb, "O-1", "7", 6000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(700);
    open_table(&rig, &mut eb, "O-1", "8", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(800);
    open_table(&rig, &mut eb, "O-1", "9", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1800);
    open_table(&rig, &mut eb, "O-1", "1", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(1900);
    let lines = open_table(&rig, &mut eb, "O-1", "2", 4000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
// Cases that held
// ---------------------------------------------------------------------

/// Two guests pay the whole bill within one poll: only one is sent to the
/// POS, the other is refused (pending counted in "due").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guests_paying_the_whole_bill_in_one_poll_only_one_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    let mut eb = EventBuilder::new(900);
    open_table(&rig, &mut eb, "O-1", "10", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let mut rig = start(options(vec![], ""), dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1000);
    let lines = open_table(&rig, &mut eb, "O-1", "11", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let lines = open_table(&rig, &mut eb, "O-1", "12", 4000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
    rig.pos.auto_settle(false);
    let mut eb = EventBuilder::new(1200);
    open_table(&rig, &mut eb, "O-1", "13", 3000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let lines = open_table(&rig, &mut eb, "O-1", "15", 5000).await;
    wait_check(&rig, "O-1", "open", |c| c["status"] == json!("open")).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(vec![], ""), dir.path()).await;
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

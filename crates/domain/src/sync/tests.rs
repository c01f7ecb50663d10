//! Table-driven tests of the sync rules (pure: events in, plans, truths and
//! verdicts out).

use super::*;
use crate::event::parse;

fn ctx() -> Ctx {
    Ctx {
        tz: chrono_tz::Europe::Paris,
        currency: "EUR".into(),
        pay: false,
    }
}

fn ev(id: &str, seq: u64, t: &str, data: serde_json::Value) -> PosEvent {
    parse(
        json!({"event_id":id,"seq":seq,"type":t,"occurred_at":"2026-11-29T19:42:05+01:00","data":data})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn opened() -> PosEvent {
    opened_seq(1)
}

fn opened_seq(seq: u64) -> PosEvent {
    ev(
        &format!("e{seq}"),
        seq,
        "table.opened",
        json!({"order_id":"O-1","table":"12","covers":4,
        "opened_at":"2026-11-29T19:42:05Z"}),
    )
}

fn paid() -> PosEvent {
    ev(
        "e9",
        9,
        "bill.paid",
        json!({"order_id":"O-1","table":"12","covers":4,
        "lines":[{"line_id":"L1","name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900},
                 {"line_id":"L2","name":"Remise fidélité","quantity":1,"unit_price_cents":-1000,"total_cents":-1000}],
        "total_cents":3900,"tip_cents":300,
        "payments":[{"method":"card","amount_cents":4200}],
        "paid_at":"2026-11-29T22:31:00+01:00"}),
    )
}

fn items(seq: u64, total: i64) -> PosEvent {
    ev(
        &format!("e{seq}"),
        seq,
        "order.items_sent",
        json!({"order_id":"O-1","table":"12",
        "lines":[{"line_id":"L1","name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900},
                 {"line_id":"L2","name":"Remise fidélité","quantity":1,"unit_price_cents":-1000,"total_cents":-1000}],
        "total_cents":total}),
    )
}

fn zp_payment(seq: u64, amount: i64, reference: &str) -> PosEvent {
    ev(
        &format!("e{seq}"),
        seq,
        "payment.recorded",
        json!({"order_id":"O-1","amount_cents":amount,"tip_cents":100,
        "method":"zenchef_pay","reference":reference}),
    )
}

fn voided(seq: u64) -> PosEvent {
    ev(
        &format!("e{seq}"),
        seq,
        "order.voided",
        json!({"order_id":"O-1","table":"12","reason":"x"}),
    )
}

#[test]
fn opened_with_a_match_seats_the_booking() {
    let p = plan(&opened(), None, Some(77), &ctx(), 0);
    assert_eq!(
        p.steps,
        vec![Step::ChangeStatus {
            booking: BookingRef::Id(77),
            status: "seated".into(),
            key: "e1:seated".into()
        }]
    );
    assert_eq!(p.basis, Some(Basis::default()));
    let o = apply(&opened(), None, &p).unwrap();
    assert_eq!(
        (o.booking_id, o.link, o.status),
        (Some(77), Some(Link::Matched), OrderStatus::Open)
    );
}

#[test]
fn opened_without_a_match_creates_a_walkin_in_local_time() {
    let p = plan(&opened(), None, None, &ctx(), 0);
    let Step::CreateWalkin { body, key } = &p.steps[0] else {
        panic!()
    };
    assert_eq!(key, "e1:walkin");
    // The body as it goes on the wire.
    let body = serde_json::to_value(body).unwrap();
    // 19:42:05Z is 20:42 in Paris (UTC+1 in November).
    assert_eq!(body["day"], "2026-11-29");
    assert_eq!(body["time"], "20:42");
    assert_eq!(body["nb_guests"], 4);
    assert_eq!(body["tables"], json!(["12"]));
    assert_eq!(body["reservation_type"], "walkin");
    assert_eq!(body["status"], "seated");
    let mut done = p.clone();
    done.created_booking = Some(5000);
    let o = apply(&opened(), None, &done).unwrap();
    assert_eq!((o.booking_id, o.link), (Some(5000), Some(Link::Walkin)));
}

#[test]
fn bill_paid_finishes_and_attaches_the_pos_totals_with_discount_lines() {
    let p0 = plan(&opened(), None, Some(77), &ctx(), 0);
    let o = apply(&opened(), None, &p0);
    let p = plan(&paid(), o.as_ref(), None, &ctx(), 0);
    assert_eq!(p.steps.len(), 2);
    assert!(
        matches!(&p.steps[0], Step::ChangeStatus { status, booking: BookingRef::Id(77), .. } if status == "over")
    );
    let Step::PosTicket { body, key, .. } = &p.steps[1] else {
        panic!()
    };
    assert_eq!(key, "e9:ticket");
    // The body as it goes on the wire.
    let body = serde_json::to_value(body).unwrap();
    assert_eq!(body["ticket_id"], "O-1");
    assert_eq!(
        body["total_cents"], 3900,
        "the POS total, not a sum made here"
    );
    assert_eq!(body["tip_cents"], 300);
    assert_eq!(
        body["lines"],
        json!([{"name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900},
               {"name":"Remise fidélité","quantity":1,"unit_price_cents":-1000,"total_cents":-1000}]),
        "the discount line as the POS sent it"
    );
    assert_eq!(
        body["payments"],
        json!([{"method":"card","amount_cents":4200}])
    );
    let o = apply(&paid(), o, &p).unwrap();
    assert_eq!((o.status, o.paid_cents), (OrderStatus::Paid, 3900));
}

#[test]
fn bill_paid_for_an_unknown_order_is_a_walkin_then_over() {
    let p = plan(&paid(), None, None, &ctx(), 0);
    assert_eq!(p.steps.len(), 3);
    assert!(matches!(p.steps[0], Step::CreateWalkin { .. }));
    assert!(matches!(
        &p.steps[1],
        Step::ChangeStatus {
            booking: BookingRef::Created,
            ..
        }
    ));
    assert_eq!(p.resolve(&BookingRef::Created), None);
}

#[test]
fn moves_keep_the_link() {
    let p0 = plan(&opened(), None, Some(77), &ctx(), 0);
    let o = apply(&opened(), None, &p0);
    let mv = ev(
        "e2",
        2,
        "table.moved",
        json!({"order_id":"O-1","from_table":"12","to_table":"14"}),
    );
    let p = plan(&mv, o.as_ref(), None, &ctx(), 0);
    assert!(p.steps.is_empty());
    let o = apply(&mv, o, &p).unwrap();
    assert_eq!((o.table.as_str(), o.booking_id), ("14", Some(77)));
}

#[test]
fn a_manual_link_seats_its_booking_when_the_table_opened_is_delivered() {
    let linked = OrderState {
        order_id: "O-1".into(),
        table: "12".into(),
        covers: None,
        opened_at: None,
        status: OrderStatus::Open,
        booking_id: Some(88),
        link: Some(Link::Manual),
        total_cents: None,
        paid_cents: 0,
        last_seq: 0,
    };
    let p = plan(&opened(), Some(&linked), None, &ctx(), 0);
    assert!(
        matches!(&p.steps[..], [Step::ChangeStatus { booking: BookingRef::Id(88), status, .. }] if status == "seated")
    );
    // Linked by its bill's walk-in (a late table.opened): nothing.
    let walkin = OrderState {
        link: Some(Link::Walkin),
        status: OrderStatus::Paid,
        last_seq: 9,
        ..linked
    };
    assert!(
        plan(&opened(), Some(&walkin), None, &ctx(), 0)
            .steps
            .is_empty()
    );
}

/// Rule 10: a late event never moves the order backwards.
#[test]
fn a_late_event_fills_in_but_never_moves_the_order_back() {
    let p = plan(&paid(), None, None, &ctx(), 0);
    let mut done = p.clone();
    done.created_booking = Some(5000);
    let o = apply(&paid(), None, &done).unwrap();
    assert_eq!((o.status, o.last_seq), (OrderStatus::Paid, 9));
    // table.opened (seq 1) arrives after the bill (seq 9).
    let p = plan(&opened(), Some(&o), None, &ctx(), 0);
    assert!(p.steps.is_empty(), "linked: no seat, no walk-in");
    let late = apply(&opened(), Some(o.clone()), &p).unwrap();
    assert_eq!(late.status, OrderStatus::Paid);
    assert_eq!(late.last_seq, 9);
    assert_eq!(late.booking_id, Some(5000));
    assert_eq!(late.covers, Some(4));
    assert!(late.opened_at.is_some(), "filled in");
    // A late items_sent changes neither the total nor the status.
    let late = apply(&items(3, 9999), Some(o.clone()), &Plan::default()).unwrap();
    assert_eq!(late, o);
}

/// Rule 10: the steps not made are decided again when the link changed.
#[test]
fn a_plan_is_decided_again_when_the_order_link_changed() {
    // bill.paid planned as a walk-in (no link yet), nothing made.
    let p = plan(&paid(), None, None, &ctx(), 0);
    assert!(!must_redecide(&p, None, false, false));
    // The late table.opened matched booking 77 meanwhile.
    let o = apply(&opened(), None, &plan(&opened(), None, Some(77), &ctx(), 0)).unwrap();
    assert!(must_redecide(&p, Some(&o), false, false));
    let again = redecide(&p, &paid(), Some(&o), None, &ctx());
    assert_eq!(again.revision, 1);
    assert_eq!(
        again.steps,
        vec![
            Step::ChangeStatus {
                booking: BookingRef::Id(77),
                status: "over".into(),
                key: "e9:over:r1".into()
            },
            Step::PosTicket {
                booking: BookingRef::Id(77),
                body: ticket_body(
                    match &paid().data {
                        EventData::BillPaid(d) => d,
                        _ => unreachable!(),
                    },
                    &ctx()
                ),
                key: "e9:ticket:r1".into()
            }
        ]
    );
    assert_eq!(again.link, None, "the order's link is the matched one");
    // A dead bill.paid whose walk-in was created: linked by hand to 88 then
    // retried → the made step stays, the rest goes to booking 88.
    let mut dead = p.clone();
    dead.done = 1;
    dead.created_booking = Some(5000);
    dead.basis = Some(Basis {
        booking_id: Some(5000),
        link: Some(Link::Walkin),
    });
    let manual = OrderState {
        booking_id: Some(88),
        link: Some(Link::Manual),
        ..o.clone()
    };
    assert!(must_redecide(&dead, Some(&manual), false, false));
    let again = redecide(&dead, &paid(), Some(&manual), None, &ctx());
    assert_eq!(again.done, 1);
    assert!(matches!(again.steps[0], Step::CreateWalkin { .. }));
    assert!(
        matches!(&again.steps[1], Step::ChangeStatus { booking: BookingRef::Id(88), key, .. } if key == "e9:over:r1")
    );
    assert!(matches!(
        &again.steps[2],
        Step::PosTicket {
            booking: BookingRef::Id(88),
            ..
        }
    ));
    assert_eq!(again.steps.len(), 3);
    assert_eq!(again.link, Some(Link::Walkin), "its walk-in stays its own");
    // Unchanged basis: a retry keeps the plan unless a technician asked.
    let same = OrderState {
        booking_id: Some(5000),
        link: Some(Link::Walkin),
        ..o
    };
    assert!(!must_redecide(&dead, Some(&same), false, false));
    assert!(must_redecide(&dead, Some(&same), true, false));
    // A matched booking cancelled in Zenchef re-matches only before the seat call.
    let seat = plan(&opened(), None, Some(77), &ctx(), 0);
    assert!(must_redecide(&seat, None, false, true));
    let mut made = seat.clone();
    made.done = 1;
    assert!(!must_redecide(&made, None, false, true));
}

#[test]
fn plans_stored_with_pay_calls_keep_only_their_zenchef_calls() {
    let legacy = json!({
        "steps": [
            {"call":"put_check","order_id":"O-1","body":{"status":"closed"}},
            {"call":"ack_settled","payment_id":"pay_1"},
            {"call":"change_status","booking":{"id":77},"status":"over","key":"e9:over"},
            {"call":"pos_ticket","booking":{"id":77},"body":{},"key":"e9:ticket"}
        ],
        "done": 3, "created_booking": null, "link": null, "matched_booking": null
    });
    let p = Plan::from_stored(&legacy.to_string()).unwrap();
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.done, 1, "the `over` call was made");
    assert_eq!(p.basis, None);
    assert!(matches!(&p.steps[0], Step::ChangeStatus { key, .. } if key == "e9:over"));
}

#[test]
fn the_truth_is_every_stored_event_in_seq_order() {
    // Stored out of order: the bill (seq 9) before its items (seq 3) and
    // before its table.opened (seq 1).
    let events = vec![paid(), items(3, 3900), opened()];
    let t = truth("O-1", &events);
    assert!(t.known && t.opened && t.has_bill);
    assert_eq!(t.status, OrderStatus::Paid);
    assert_eq!(t.total_cents, Some(3900));
    assert_eq!(t.paid_cents, 3900);
    assert_eq!(t.last_seq, 9);
    // The check pushed to Zenchef Pay (its wire form: pay::wire in the agent).
    let check = check_body(&t, &ctx()).unwrap();
    assert_eq!(
        check.status,
        OrderStatus::Paid,
        "a late items_sent never reopens it"
    );
    assert_eq!(check.status.check_status(), "closed");
    assert_eq!(check.version, 9);
    assert_eq!(
        check.lines[1],
        CheckLine {
            name: "Remise fidélité".into(),
            quantity: 1,
            total_cents: -1000,
            unit_price_cents: -1000,
        }
    );
    // Without items sent there is no check.
    assert_eq!(check_body(&truth("O-1", &[opened(), paid()]), &ctx()), None);
    // Partial payments and their references; events of other orders ignored.
    let other = ev(
        "x",
        4,
        "payment.recorded",
        json!({"order_id":"O-2","amount_cents":999,"tip_cents":0,"method":"card"}),
    );
    let t = truth(
        "O-1",
        &[
            opened(),
            items(2, 6000),
            zp_payment(5, 2000, "pay_1"),
            other,
        ],
    );
    assert_eq!(
        (t.status, t.paid_cents, t.last_seq),
        (OrderStatus::Open, 2000, 5)
    );
    assert!(t.references.contains("pay_1"));
    let check = check_body(&t, &ctx()).unwrap();
    assert_eq!(
        (check.status, check.paid_cents, check.total_cents),
        (OrderStatus::Open, 2000, 6000)
    );
    // Voided stays voided.
    let t = truth(
        "O-1",
        &[opened(), items(2, 6000), voided(4), items(6, 7000)],
    );
    assert_eq!(t.status, OrderStatus::Voided);
    assert_eq!(t.total_cents, Some(6000));
    assert_eq!(
        truth("O-9", &[opened()]),
        OrderTruth {
            order_id: "O-9".into(),
            ..OrderTruth::default()
        }
    );
}

/// Rule 6, judged on the stored truth.
#[test]
#[allow(clippy::type_complexity)]
fn payments_are_judged_against_the_stored_pos_bill() {
    let open = truth("O-1", &[opened(), items(2, 4900)]);
    let cases: Vec<(&str, i64, &OrderTruth, Option<&str>, i64, Verdict)> = vec![
        ("p", 4900, &open, None, 0, Verdict::Settle),
        ("p", 2000, &open, None, 2900, Verdict::Settle),
        (
            "p",
            2001,
            &open,
            None,
            2900,
            Verdict::Refuse(Refusal::Exceeds {
                amount: 2001,
                due: 2000,
            }),
        ),
        (
            "p",
            1,
            &open,
            Some("bad bill"),
            0,
            Verdict::Refuse(Refusal::Attention("bad bill".into())),
        ),
    ];
    for (i, (id, amount, t, attention, pending, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            judge_payment(id, amount, t, attention, pending),
            want,
            "case {i}"
        );
    }
    let unknown = truth("O-9", &[]);
    let v = judge_payment("p", 1, &unknown, None, 0);
    assert_eq!(v, Verdict::Refuse(Refusal::Unknown));
    assert_eq!(
        Refusal::Unknown.reason("O-9"),
        "order O-9 is unknown to the POS"
    );
    let known_by_items = truth("O-1", &[items(2, 4900)]);
    assert_eq!(
        judge_payment("p", 100, &known_by_items, None, 0),
        Verdict::Settle
    );
    let paid_t = truth("O-1", &[opened(), items(2, 4900), paid()]);
    assert_eq!(
        judge_payment("p", 1, &paid_t, None, 0),
        Verdict::Refuse(Refusal::Paid)
    );
    assert_eq!(
        Refusal::Paid.reason("O-1"),
        "order O-1 already paid in the POS"
    );
    let v = truth("O-1", &[opened(), items(2, 4900), voided(3)]);
    assert_eq!(
        judge_payment("p", 1, &v, None, 0),
        Verdict::Refuse(Refusal::Voided)
    );
    // A payment the POS already reported is never refused, even when paid.
    let t = truth(
        "O-1",
        &[opened(), items(2, 4900), zp_payment(3, 4900, "pay_7")],
    );
    assert_eq!(judge_payment("pay_7", 4900, &t, None, 0), Verdict::Reported);
    assert_eq!(
        Refusal::Exceeds {
            amount: 3001,
            due: -5
        }
        .reason("O-BIG"),
        "amount 3001 cents exceeds what is still due on order O-BIG (0 cents)"
    );
    // A 3-way split of 10000: 3333 + 3333 + 3334 is exactly due.
    let t = truth("O-1", &[opened(), items(2, 10000)]);
    assert_eq!(judge_payment("a", 3333, &t, None, 0), Verdict::Settle);
    assert_eq!(judge_payment("b", 3333, &t, None, 3333), Verdict::Settle);
    assert_eq!(judge_payment("c", 3334, &t, None, 6666), Verdict::Settle);
    assert!(matches!(
        judge_payment("d", 1, &t, None, 10000),
        Verdict::Refuse(Refusal::Exceeds { .. })
    ));
}

/// The typed bodies write the bytes the `json!` builders of earlier
/// releases wrote (sorted keys, same omissions), and a stored plan of an
/// earlier release reads back and writes the same text.
#[test]
fn typed_bodies_are_byte_identical_to_the_earlier_json_ones() {
    let EventData::BillPaid(d) = &paid().data else {
        unreachable!()
    };
    let old_lines = |lines: &[crate::event::Line]| {
        lines
            .iter()
            .map(|l| {
                json!({"name": l.name, "quantity": l.quantity,
                    "unit_price_cents": l.unit_price_cents.0, "total_cents": l.total_cents.0})
            })
            .collect::<Vec<_>>()
    };
    let old_ticket = json!({
        "ticket_id": d.order_id.0, "currency": "EUR", "covers": d.covers.0,
        "total_cents": d.total_cents.0, "tip_cents": d.tip_cents.0,
        "paid_at": d.paid_at.0.to_rfc3339(), "lines": old_lines(&d.lines),
        "payments": d.payments.iter().map(|p| json!({
            "method": p.method, "amount_cents": p.amount_cents.0,
        })).collect::<Vec<_>>(),
    });
    let new_ticket = ticket_body(d, &ctx());
    assert_eq!(
        serde_json::to_string(&new_ticket).unwrap(),
        old_ticket.to_string()
    );
    let old_walkin = json!({
        "day": "2026-11-29", "time": "22:31", "nb_guests": 4, "firstname": "Walk-in",
        "lastname": "Table 12", "status": "seated", "reservation_type": "walkin",
        "tables": ["12"], "country": "fr",
    });
    let new_walkin = walkin_body("12", 4, d.paid_at.0, &ctx());
    assert_eq!(
        serde_json::to_string(&new_walkin).unwrap(),
        old_walkin.to_string()
    );
    // The check's body: pay::wire's tests in the agent (its wire form).
    // A plan as the current release stores it (bodies built with json!).
    let stored = format!(
        r#"{{"steps":[{{"call":"create_walkin","body":{old_walkin},"key":"e9:walkin"}},{{"call":"change_status","booking":"created","status":"over","key":"e9:over"}},{{"call":"pos_ticket","booking":"created","body":{old_ticket},"key":"e9:ticket"}}],"done":1,"created_booking":5000,"link":"walkin","matched_booking":null,"basis":{{"booking_id":null,"link":null}},"revision":0}}"#
    );
    let p = Plan::from_stored(&stored).unwrap();
    assert!(matches!(
        &p.steps[0],
        Step::CreateWalkin {
            body: PlanBody::Typed(_),
            ..
        }
    ));
    assert!(matches!(
        &p.steps[2],
        Step::PosTicket {
            body: PlanBody::Typed(_),
            ..
        }
    ));
    assert_eq!(serde_json::to_string(&p).unwrap(), stored);
}

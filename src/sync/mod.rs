//! The rules of `sync-rules.md` as pure functions: (event, order state,
//! match outcome) → [`Plan`] of calls, and (event, order state, finished
//! plan) → new order state. No I/O here; the dispatcher does the calls.
//!
//! A plan is **decided once and stored** before its first call (the outbox
//! row's `plan` column). A retry after a crash or a timeout replays the same
//! plan with the same idempotency keys (`PublisherModelId`), so it can
//! neither create a second walk-in nor pick another booking because the
//! first call already changed the booking's status.

pub mod matching;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::pos::event::{BillPaid, EventData, Method, PosEvent};

/// Where an order stands, as the POS last told us (table `orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// POS order id.
    pub order_id: String,
    /// Current table name (follows `table.moved`).
    pub table: String,
    /// Guests, when known.
    pub covers: Option<u32>,
    /// When the table was opened (POS clock, with offset).
    pub opened_at: Option<DateTime<FixedOffset>>,
    /// Open, paid or voided.
    pub status: OrderStatus,
    /// The Zenchef booking the order is linked to (rule 5: follows the order).
    pub booking_id: Option<i64>,
    /// How the link was made.
    pub link: Option<Link>,
    /// The POS's own bill total, cents (last reported).
    pub total_cents: Option<i64>,
    /// What the POS reports as paid so far, cents.
    pub paid_cents: i64,
    /// The whole bill as last sent by the POS (`order.items_sent` or
    /// `bill.paid`), as Zenchef Pay check lines. `Some` means a Zenchef Pay
    /// check exists for the order.
    pub lines: Option<serde_json::Value>,
    /// `seq` of the last event applied.
    pub last_seq: u64,
}

/// Order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Table open.
    Open,
    /// `bill.paid` received.
    Paid,
    /// `order.voided` received.
    Voided,
}

impl OrderStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::Paid => "paid",
            OrderStatus::Voided => "voided",
        }
    }
    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(OrderStatus::Open),
            "paid" => Some(OrderStatus::Paid),
            "voided" => Some(OrderStatus::Voided),
            _ => None,
        }
    }
}

/// How an order got its booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Rule 4 matched a reservation.
    Matched,
    /// No reservation matched: a walk-in was created.
    Walkin,
    /// A technician linked it by hand (rule 4b).
    Manual,
}

impl Link {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Matched => "matched",
            Link::Walkin => "walkin",
            Link::Manual => "manual",
        }
    }
    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "matched" => Some(Link::Matched),
            "walkin" => Some(Link::Walkin),
            "manual" => Some(Link::Manual),
            _ => None,
        }
    }
}

/// Which booking a step acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingRef {
    /// A known booking id.
    Id(i64),
    /// The walk-in created by an earlier step of the same plan.
    Created,
}

/// One call to Zenchef (zenchef-api.md § Endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Step {
    /// `PATCH /bookings/{id}/changeStatus`.
    ChangeStatus {
        /// The booking.
        booking: BookingRef,
        /// New status (`seated`, `over`).
        status: String,
        /// `PublisherModelId`.
        key: String,
    },
    /// `POST /bookings?force=1` with a walk-in body.
    CreateWalkin {
        /// The request body.
        body: serde_json::Value,
        /// `PublisherModelId`.
        key: String,
    },
    /// `PUT /bookings/{id}/pos_ticket`.
    PosTicket {
        /// The booking.
        booking: BookingRef,
        /// The ticket body.
        body: serde_json::Value,
        /// `PublisherModelId`.
        key: String,
    },
    /// Zenchef Pay `PUT /installations/{iid}/checks/{order_id}` (the whole
    /// check; `version` = the event's seq).
    PutCheck {
        /// POS order id.
        order_id: String,
        /// The check body.
        body: serde_json::Value,
    },
    /// Zenchef Pay `POST …/payments/{payment_id}/ack` `settled`: the POS
    /// reported the payment (`payment.recorded` / `bill.paid` reference).
    AckSettled {
        /// Zenchef Pay payment id.
        payment_id: String,
    },
}

impl Step {
    /// Is this a Zenchef Pay call?
    pub fn is_pay(&self) -> bool {
        matches!(self, Step::PutCheck { .. } | Step::AckSettled { .. })
    }
}

/// The decided calls of one event and how far they got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Calls, in order.
    pub steps: Vec<Step>,
    /// How many steps succeeded.
    pub done: usize,
    /// The booking id of the walk-in created by a step, once known.
    pub created_booking: Option<i64>,
    /// The link this event gives the order (table.opened, or a bill.paid
    /// that creates a walk-in).
    pub link: Option<Link>,
    /// The booking chosen by matching.
    pub matched_booking: Option<i64>,
}

impl Plan {
    /// The booking a step refers to, if it can be resolved now.
    pub fn resolve(&self, r: &BookingRef) -> Option<i64> {
        match r {
            BookingRef::Id(id) => Some(*id),
            BookingRef::Created => self.created_booking,
        }
    }
}

/// Facts the rules need from the configuration.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Restaurant time zone (walk-in day/time).
    pub tz: chrono_tz::Tz,
    /// Currency of the tickets.
    pub currency: String,
    /// Zenchef Pay is enabled (`[zenchef_pay] enabled`).
    pub pay: bool,
}

/// Does this event need matching (rule 4) before its plan can be decided?
pub fn needs_match(event: &PosEvent, order: Option<&OrderState>) -> bool {
    matches!(event.data, EventData::TableOpened(_)) && order.and_then(|o| o.booking_id).is_none()
}

/// Decides the calls for `event` (sync-rules.md table, POS → Zenchef).
/// `matched` is the outcome of [`matching::choose`] for a `table.opened`
/// that needs it.
pub fn plan(event: &PosEvent, order: Option<&OrderState>, matched: Option<i64>, ctx: &Ctx) -> Plan {
    let mut p = zenchef_plan(event, order, matched, ctx);
    if ctx.pay {
        // Pay calls first: closing a check is what stops a guest from
        // paying twice; it must not wait behind a Zenchef outage.
        let mut steps = pay_steps(event, order, ctx);
        steps.append(&mut p.steps);
        p.steps = steps;
    }
    p
}

/// The Zenchef Pay column of sync-rules.md: the check follows the POS bill
/// (`version` = the event's seq) once items were sent; payments reported
/// by the POS with a Zenchef Pay reference are acknowledged `settled`.
pub fn pay_steps(event: &PosEvent, order: Option<&OrderState>, ctx: &Ctx) -> Vec<Step> {
    let Some(next) = apply(event, order.cloned(), &Plan::default()) else {
        return vec![];
    };
    let mut steps = Vec::new();
    let status = match &event.data {
        EventData::ItemsSent(_) | EventData::TableMoved(_) | EventData::PaymentRecorded(_) => {
            "open"
        }
        EventData::BillPaid(_) => "closed",
        EventData::OrderVoided(_) => "voided",
        EventData::TableOpened(_) | EventData::Unknown => return steps,
    };
    if next.lines.is_some() {
        steps.push(Step::PutCheck {
            order_id: next.order_id.clone(),
            body: check_body(&next, status, event.seq, ctx),
        });
    }
    let zp = |m: Method| m == Method::ZenchefPay;
    match &event.data {
        EventData::PaymentRecorded(d) if zp(d.method) => {
            if let Some(r) = d.reference.as_ref().filter(|r| !r.is_empty()) {
                steps.push(Step::AckSettled {
                    payment_id: r.clone(),
                });
            }
        }
        EventData::BillPaid(d) => {
            for p in d.payments.iter().filter(|p| zp(p.method)) {
                if let Some(r) = p.reference.as_ref().filter(|r| !r.is_empty()) {
                    steps.push(Step::AckSettled {
                        payment_id: r.clone(),
                    });
                }
            }
        }
        _ => {}
    }
    steps
}

/// The Zenchef Pay check of an order (zenchef-pay-api.md § Checks): the
/// POS's own lines and totals, never recomputed.
pub fn check_body(o: &OrderState, status: &str, version: u64, ctx: &Ctx) -> serde_json::Value {
    json!({
        "table": o.table,
        "covers": o.covers.unwrap_or(1),
        "currency": ctx.currency,
        "status": status,
        "lines": o.lines.clone().unwrap_or_else(|| json!([])),
        "total_cents": o.total_cents.unwrap_or(0),
        "paid_cents": o.paid_cents,
        "version": version,
    })
}

fn check_lines(lines: &[crate::pos::event::Line]) -> serde_json::Value {
    serde_json::Value::Array(
        lines
            .iter()
            .map(|l| {
                json!({"name": l.name, "quantity": l.quantity,
                       "unit_price_cents": l.unit_price_cents.0, "total_cents": l.total_cents.0})
            })
            .collect(),
    )
}

/// The Zenchef side of sync-rules.md (table, POS → Zenchef).
fn zenchef_plan(
    event: &PosEvent,
    order: Option<&OrderState>,
    matched: Option<i64>,
    ctx: &Ctx,
) -> Plan {
    let key = |suffix: &str| format!("{}:{suffix}", event.event_id);
    let linked = order.and_then(|o| o.booking_id);
    match &event.data {
        EventData::TableOpened(d) => {
            if linked.is_some() {
                // Already linked (manual link made before the event ran).
                return Plan::default();
            }
            match matched {
                Some(id) => Plan {
                    steps: vec![Step::ChangeStatus {
                        booking: BookingRef::Id(id),
                        status: "seated".into(),
                        key: key("seated"),
                    }],
                    link: Some(Link::Matched),
                    matched_booking: Some(id),
                    ..Plan::default()
                },
                None => Plan {
                    steps: vec![Step::CreateWalkin {
                        body: walkin_body(&d.table, d.covers.0, d.opened_at.0, ctx),
                        key: key("walkin"),
                    }],
                    link: Some(Link::Walkin),
                    ..Plan::default()
                },
            }
        }
        EventData::BillPaid(d) => {
            let ticket = ticket_body(d, ctx);
            match linked {
                Some(id) => Plan {
                    steps: vec![
                        Step::ChangeStatus {
                            booking: BookingRef::Id(id),
                            status: "over".into(),
                            key: key("over"),
                        },
                        Step::PosTicket {
                            booking: BookingRef::Id(id),
                            body: ticket,
                            key: key("ticket"),
                        },
                    ],
                    ..Plan::default()
                },
                // Never opened (or `table.opened` not ticked in the POS):
                // recorded as a walk-in seated at payment time, then
                // finished with its ticket (docs/decisions.md).
                None => Plan {
                    steps: vec![
                        Step::CreateWalkin {
                            body: walkin_body(&d.table, d.covers.0, d.paid_at.0, ctx),
                            key: key("walkin"),
                        },
                        Step::ChangeStatus {
                            booking: BookingRef::Created,
                            status: "over".into(),
                            key: key("over"),
                        },
                        Step::PosTicket {
                            booking: BookingRef::Created,
                            body: ticket,
                            key: key("ticket"),
                        },
                    ],
                    link: Some(Link::Walkin),
                    ..Plan::default()
                },
            }
        }
        // Zenchef: nothing for these (sync-rules.md).
        EventData::ItemsSent(_)
        | EventData::TableMoved(_)
        | EventData::PaymentRecorded(_)
        | EventData::OrderVoided(_)
        | EventData::Unknown => Plan::default(),
    }
}

/// Rule 6: may a Zenchef Pay payment of `amount_cents` for `order_id` be
/// settled in the POS? `Err` is the reason sent with the `rejected` ack.
///
/// `closing_queued`: a `bill.paid` or `order.voided` of the order is stored
/// but not applied yet (it counts as done). `pending_cents`: payments of the
/// order already accepted but not yet reported by the POS.
pub fn judge_payment(
    order_id: &str,
    amount_cents: i64,
    order: Option<&OrderState>,
    closing_queued: bool,
    pending_cents: i64,
) -> Result<(), String> {
    let Some(o) = order.filter(|o| o.lines.is_some()) else {
        return Err(format!("order {order_id} is unknown to the POS"));
    };
    if closing_queued || o.status == OrderStatus::Paid {
        return Err(format!("order {order_id} already paid in the POS"));
    }
    if o.status == OrderStatus::Voided {
        return Err(format!("order {order_id} was voided in the POS"));
    }
    let due = o.total_cents.unwrap_or(0) - o.paid_cents - pending_cents;
    if amount_cents > due {
        return Err(format!(
            "amount {amount_cents} cents exceeds what is still due on order {order_id} ({} cents)",
            due.max(0)
        ));
    }
    Ok(())
}

/// The order state after `event` and its finished `plan`.
pub fn apply(event: &PosEvent, order: Option<OrderState>, plan: &Plan) -> Option<OrderState> {
    let order_id = event.data.order_id()?.to_string();
    let fresh = |table: &str| OrderState {
        order_id: order_id.clone(),
        table: table.to_string(),
        covers: None,
        opened_at: None,
        status: OrderStatus::Open,
        booking_id: None,
        link: None,
        total_cents: None,
        paid_cents: 0,
        lines: None,
        last_seq: event.seq,
    };
    let link_from_plan = |o: &mut OrderState| {
        if o.booking_id.is_none()
            && let Some(link) = plan.link
        {
            o.booking_id = plan.matched_booking.or(plan.created_booking);
            o.link = Some(link);
        }
    };
    let mut o = match (&event.data, order) {
        (EventData::TableOpened(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            o.table = d.table.to_string();
            o.covers = Some(d.covers.0);
            o.opened_at = Some(d.opened_at.0);
            link_from_plan(&mut o);
            o
        }
        (EventData::ItemsSent(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            o.table = d.table.to_string();
            o.total_cents = Some(d.total_cents.0);
            o.lines = Some(check_lines(&d.lines));
            o
        }
        (EventData::TableMoved(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.to_table));
            o.table = d.to_table.to_string();
            o
        }
        (EventData::PaymentRecorded(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(""));
            o.paid_cents = o.paid_cents.saturating_add(d.amount_cents.0);
            o
        }
        (EventData::BillPaid(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            o.table = d.table.to_string();
            o.covers = Some(d.covers.0);
            o.total_cents = Some(d.total_cents.0);
            // Payments of a bill include its tips (the pos_ticket example of
            // zenchef-api.md: 24600 + 300 tip paid as 24900).
            let paid: i64 = d.payments.iter().map(|p| p.amount_cents.0).sum();
            o.paid_cents = (paid - d.tip_cents.0).max(0);
            if o.lines.is_some() {
                o.lines = Some(check_lines(&d.lines));
            }
            o.status = OrderStatus::Paid;
            link_from_plan(&mut o);
            o
        }
        (EventData::OrderVoided(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            o.status = OrderStatus::Voided;
            o
        }
        (EventData::Unknown, prev) => return prev,
    };
    o.last_seq = event.seq;
    Some(o)
}

/// Walk-in creation body (zenchef-api.md, `POST /bookings?force=1`): day
/// and time are the restaurant's local time of `at`.
pub fn walkin_body(
    table: &str,
    covers: u32,
    at: DateTime<FixedOffset>,
    ctx: &Ctx,
) -> serde_json::Value {
    let local = at.with_timezone(&ctx.tz);
    json!({
        "day": local.format("%Y-%m-%d").to_string(),
        "time": local.format("%H:%M").to_string(),
        "nb_guests": covers,
        "firstname": "Walk-in",
        "lastname": format!("Table {table}"),
        "status": "seated",
        "reservation_type": "walkin",
        "tables": [table],
        "country": "fr",
    })
}

/// `pos_ticket` body (zenchef-api.md): the POS's own lines and totals.
pub fn ticket_body(d: &BillPaid, ctx: &Ctx) -> serde_json::Value {
    json!({
        "ticket_id": d.order_id.0,
        "currency": ctx.currency,
        "covers": d.covers.0,
        "total_cents": d.total_cents.0,
        "tip_cents": d.tip_cents.0,
        "paid_at": d.paid_at.0.to_rfc3339(),
        "lines": d.lines.iter().map(|l| json!({
            "name": l.name,
            "quantity": l.quantity,
            "unit_price_cents": l.unit_price_cents.0,
            "total_cents": l.total_cents.0,
        })).collect::<Vec<_>>(),
        "payments": d.payments.iter().map(|p| json!({
            "method": p.method,
            "amount_cents": p.amount_cents.0,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pos::event::parse;

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
        ev(
            "e1",
            1,
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
            "lines":[{"line_id":"L1","name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900}],
            "total_cents":4500,"tip_cents":300,
            "payments":[{"method":"card","amount_cents":4800}],
            "paid_at":"2026-11-29T22:31:00+01:00"}),
        )
    }

    #[test]
    fn opened_with_a_match_seats_the_booking() {
        let p = plan(&opened(), None, Some(77), &ctx());
        assert_eq!(
            p.steps,
            vec![Step::ChangeStatus {
                booking: BookingRef::Id(77),
                status: "seated".into(),
                key: "e1:seated".into()
            }]
        );
        let o = apply(&opened(), None, &p).unwrap();
        assert_eq!(
            (o.booking_id, o.link, o.status),
            (Some(77), Some(Link::Matched), OrderStatus::Open)
        );
    }

    #[test]
    fn opened_without_a_match_creates_a_walkin_in_local_time() {
        let p = plan(&opened(), None, None, &ctx());
        let Step::CreateWalkin { body, key } = &p.steps[0] else {
            panic!()
        };
        assert_eq!(key, "e1:walkin");
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
    fn bill_paid_finishes_and_attaches_the_pos_totals() {
        let p0 = plan(&opened(), None, Some(77), &ctx());
        let o = apply(&opened(), None, &p0);
        let p = plan(&paid(), o.as_ref(), None, &ctx());
        assert_eq!(p.steps.len(), 2);
        assert!(
            matches!(&p.steps[0], Step::ChangeStatus { status, booking: BookingRef::Id(77), .. } if status == "over")
        );
        let Step::PosTicket { body, key, .. } = &p.steps[1] else {
            panic!()
        };
        assert_eq!(key, "e9:ticket");
        assert_eq!(body["ticket_id"], "O-1");
        assert_eq!(
            body["total_cents"], 4500,
            "the POS total, not the sum of lines"
        );
        assert_eq!(body["tip_cents"], 300);
        assert_eq!(
            body["lines"][0],
            json!({"name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900})
        );
        assert_eq!(
            body["payments"],
            json!([{"method":"card","amount_cents":4800}])
        );
        let o = apply(&paid(), o, &p).unwrap();
        assert_eq!(o.status, OrderStatus::Paid);
    }

    #[test]
    fn bill_paid_for_an_unknown_order_is_a_walkin_then_over() {
        let p = plan(&paid(), None, None, &ctx());
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
        let p0 = plan(&opened(), None, Some(77), &ctx());
        let o = apply(&opened(), None, &p0);
        let mv = ev(
            "e2",
            2,
            "table.moved",
            json!({"order_id":"O-1","from_table":"12","to_table":"14"}),
        );
        let p = plan(&mv, o.as_ref(), None, &ctx());
        assert!(p.steps.is_empty());
        let o = apply(&mv, o, &p).unwrap();
        assert_eq!((o.table.as_str(), o.booking_id), ("14", Some(77)));
    }

    fn pay_ctx() -> Ctx {
        Ctx { pay: true, ..ctx() }
    }

    fn items(seq: u64, total: i64) -> PosEvent {
        ev(
            &format!("e{seq}"),
            seq,
            "order.items_sent",
            json!({"order_id":"O-1","table":"12",
            "lines":[{"line_id":"L1","name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900},
                     {"line_id":"L2","name":"Remise","quantity":1,"unit_price_cents":0,"total_cents":0}],
            "total_cents":total}),
        )
    }

    #[test]
    fn checks_follow_the_pos_bill_with_the_event_seq_as_version() {
        let c = pay_ctx();
        let o = apply(&opened(), None, &plan(&opened(), None, Some(77), &c));
        assert!(
            pay_steps(&opened(), None, &c).is_empty(),
            "no check before items are sent"
        );
        // The POS total (a discount applied) is used, never the sum of lines.
        let e = items(3, 4400);
        let p = plan(&e, o.as_ref(), None, &c);
        assert_eq!(
            p.steps,
            vec![Step::PutCheck {
                order_id: "O-1".into(),
                body: json!({"table":"12","covers":4,"currency":"EUR","status":"open",
                    "lines":[{"name":"Entrecôte","quantity":2,"unit_price_cents":2450,"total_cents":4900},
                             {"name":"Remise","quantity":1,"unit_price_cents":0,"total_cents":0}],
                    "total_cents":4400,"paid_cents":0,"version":3})
            }]
        );
        let o = apply(&e, o, &p);
        // A partial Zenchef Pay payment: paid_cents grows, and it is acked.
        let pr = ev(
            "e4",
            4,
            "payment.recorded",
            json!({"order_id":"O-1","amount_cents":2000,"tip_cents":100,
            "method":"zenchef_pay","reference":"pay_1"}),
        );
        let p = plan(&pr, o.as_ref(), None, &c);
        let Step::PutCheck { body, .. } = &p.steps[0] else {
            panic!()
        };
        assert_eq!(
            (
                body["paid_cents"].clone(),
                body["version"].clone(),
                body["status"].clone()
            ),
            (json!(2000), json!(4), json!("open"))
        );
        assert_eq!(
            p.steps[1],
            Step::AckSettled {
                payment_id: "pay_1".into()
            }
        );
        let o = apply(&pr, o, &p);
        // bill.paid: check closed first, then the Zenchef calls.
        let p = plan(&paid(), o.as_ref(), None, &c);
        assert!(
            matches!(&p.steps[0], Step::PutCheck { body, .. } if body["status"] == "closed" && body["version"] == 9)
        );
        assert!(matches!(&p.steps[1], Step::ChangeStatus { .. }));
        let voided = ev(
            "e5",
            5,
            "order.voided",
            json!({"order_id":"O-1","table":"12","reason":"x"}),
        );
        let p = plan(&voided, o.as_ref(), None, &c);
        assert!(matches!(&p.steps[0], Step::PutCheck { body, .. } if body["status"] == "voided"));
    }

    #[test]
    fn a_cash_payment_is_not_acked_and_pay_disabled_means_no_pay_calls() {
        let c = pay_ctx();
        let o = apply(&items(2, 4900), None, &Plan::default());
        let cash = ev(
            "e4",
            4,
            "payment.recorded",
            json!({"order_id":"O-1","amount_cents":2000,"tip_cents":0,
            "method":"cash","reference":"CASH-1"}),
        );
        let p = plan(&cash, o.as_ref(), None, &c);
        assert_eq!(p.steps.len(), 1);
        assert!(plan(&cash, o.as_ref(), None, &ctx()).steps.is_empty());
    }

    #[test]
    fn payments_are_judged_against_the_pos_bill() {
        let o = apply(&items(2, 4900), None, &Plan::default()).unwrap();
        assert_eq!(judge_payment("O-1", 4900, Some(&o), false, 0), Ok(()));
        assert_eq!(judge_payment("O-1", 2000, Some(&o), false, 2900), Ok(()));
        assert_eq!(
            judge_payment("O-1", 2001, Some(&o), false, 2900),
            Err("amount 2001 cents exceeds what is still due on order O-1 (2000 cents)".into())
        );
        assert_eq!(
            judge_payment("O-9", 1, None, false, 0),
            Err("order O-9 is unknown to the POS".into())
        );
        assert_eq!(
            judge_payment("O-1", 1, Some(&o), true, 0),
            Err("order O-1 already paid in the POS".into())
        );
        let mut paid = o.clone();
        paid.status = OrderStatus::Paid;
        assert!(
            judge_payment("O-1", 1, Some(&paid), false, 0)
                .unwrap_err()
                .contains("already paid")
        );
        let mut voided = o;
        voided.status = OrderStatus::Voided;
        assert!(
            judge_payment("O-1", 1, Some(&voided), false, 0)
                .unwrap_err()
                .contains("voided")
        );
    }
}

//! The sync rules (docs/protocol/sync-rules.md) as pure functions. No I/O
//! here: `delivery` makes the calls, `outbox` stores the results.
//!
//! Two views of an order, kept apart on purpose:
//! - [`OrderTruth`]: what the POS has reported, folded from **every stored
//!   event** of the order in `seq` order, delivered or not ([`truth`]).
//!   Zenchef Pay is judged on it (rule 6: is the order known, paid, voided,
//!   what is still due) and the check pushed to Zenchef Pay is built from
//!   it ([`check_body`]), so a late event never makes a paid bill payable
//!   again (rule 10).
//! - [`OrderState`]: what the Zenchef lane has applied (table `orders`):
//!   above all the order → booking link (rule 5), which every later
//!   Zenchef call of the order uses.
//!
//! A Zenchef [`Plan`] is **decided and stored** before its first call (the
//! outbox row's `plan` column): a retry after a crash or a timeout replays
//! the same calls with the same idempotency keys (`PublisherModelId`), so it
//! can neither create a second walk-in nor pick another booking because the
//! first call already changed the booking's status. It is decided again
//! (rule 10) only when what it was decided from has changed: the order's
//! link ([`Plan::basis`]), a retry asked by a technician, or the booking it
//! matched being cancelled in Zenchef; steps already made stay made, and
//! the new steps carry new keys ([`Plan::revision`]).

pub mod matching;

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::booking::{BookingStatus, PlanBody, PosTicketBody, TicketPayment, WalkinBody};
use crate::event::{BillPaid, EventData, Method, PosEvent, TableOpened};

/// What the Zenchef lane has applied of an order (table `orders`).
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
    /// Open, paid or voided, as far as the Zenchef lane got.
    pub status: OrderStatus,
    /// The Zenchef booking the order is linked to (rule 5: follows the order).
    pub booking_id: Option<i64>,
    /// How the link was made.
    pub link: Option<Link>,
    /// The POS's own bill total, cents (last applied).
    pub total_cents: Option<i64>,
    /// What the POS reported as paid, cents (last applied).
    pub paid_cents: i64,
    /// The highest `seq` applied (a late event never lowers it).
    pub last_seq: u64,
}

/// Order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Table open.
    #[default]
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
    /// The Zenchef Pay check status of an order in this state
    /// (docs/protocol/zenchef-pay.md § Checks): `open`, `closed` (paid,
    /// wherever that happened) or `voided`.
    pub fn check_status(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::Paid => "closed",
            OrderStatus::Voided => "voided",
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

/// One call to Zenchef (docs/protocol/zenchef-api.md, endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Step {
    /// `PATCH /bookings/{id}/changeStatus`.
    ChangeStatus {
        /// The booking.
        booking: BookingRef,
        /// New status (`seated`, `over`).
        status: BookingStatus,
        /// `PublisherModelId`.
        key: String,
    },
    /// `POST /bookings?force=1` with a walk-in body.
    CreateWalkin {
        /// The request body.
        body: PlanBody<WalkinBody>,
        /// `PublisherModelId`.
        key: String,
    },
    /// `PUT /bookings/{id}/pos_ticket`.
    PosTicket {
        /// The booking.
        booking: BookingRef,
        /// The ticket body.
        body: PlanBody<PosTicketBody>,
        /// `PublisherModelId`.
        key: String,
    },
}

/// What a plan was decided from: the order's booking link at that moment
/// (updated by the plan's own walk-in creation). When the order's link is
/// no longer this, the steps not yet made are decided again (rule 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Basis {
    /// The linked booking.
    pub booking_id: Option<i64>,
    /// How it was linked.
    pub link: Option<Link>,
}

impl Basis {
    /// The basis an order gives.
    pub fn of(order: Option<&OrderState>) -> Basis {
        Basis {
            booking_id: order.and_then(|o| o.booking_id),
            link: order.and_then(|o| o.link),
        }
    }
}

/// The decided Zenchef calls of one event and how far they got.
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
    /// What the plan was decided from (`None` in plans stored by earlier
    /// versions: taken as unchanged).
    #[serde(default)]
    pub basis: Option<Basis>,
    /// How many times the steps not yet made were decided again; part of
    /// the new steps' keys (`<event_id>:over:r1`).
    #[serde(default)]
    pub revision: u32,
}

impl Plan {
    /// The booking a step refers to, if it can be resolved now.
    pub fn resolve(&self, r: &BookingRef) -> Option<i64> {
        match r {
            BookingRef::Id(id) => Some(*id),
            BookingRef::Created => self.created_booking,
        }
    }

    /// Reads a stored plan. Plans stored before Zenchef Pay became a lane
    /// of its own also hold the Pay calls (`put_check`, `ack_settled`):
    /// they are dropped (the Pay lane pushes the check from the order's
    /// truth) and `done` counts the Zenchef calls among those made.
    ///
    /// Errors: the JSON is not a plan.
    pub fn from_stored(text: &str) -> Result<Plan, serde_json::Error> {
        let mut v: serde_json::Value = serde_json::from_str(text)?;
        if let Some(steps) = v.get_mut("steps").and_then(|s| s.as_array_mut()) {
            let is_pay = |s: &serde_json::Value| {
                matches!(s["call"].as_str(), Some("put_check") | Some("ack_settled"))
            };
            if steps.iter().any(is_pay) {
                let done = v["done"].as_u64().unwrap_or(0) as usize;
                let steps = v["steps"].as_array().cloned().unwrap_or_default();
                let zenchef_done = steps.iter().take(done).filter(|s| !is_pay(s)).count();
                let kept: Vec<serde_json::Value> =
                    steps.into_iter().filter(|s| !is_pay(s)).collect();
                v["steps"] = serde_json::Value::Array(kept);
                v["done"] = json!(zenchef_done);
            }
        }
        serde_json::from_value(v)
    }

    /// Is the plan finished?
    pub fn finished(&self) -> bool {
        self.done >= self.steps.len()
    }
}

/// Facts the rules need from the configuration.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Restaurant time zone (walk-in day/time, matching).
    pub tz: chrono_tz::Tz,
    /// Currency of the tickets and checks.
    pub currency: String,
    /// Zenchef Pay is enabled (`[zenchef_pay] enabled`).
    pub pay: bool,
}

/// Does this event need matching (rule 4) before its plan can be decided?
pub fn needs_match(event: &PosEvent, order: Option<&OrderState>) -> bool {
    matches!(event.data, EventData::TableOpened(_)) && order.and_then(|o| o.booking_id).is_none()
}

/// Does a stored plan have to be decided again before its next step
/// (rule 10)? `replan`: a technician retried it (`outbox retry`);
/// `matched_gone`: the booking it matched is no longer a candidate in
/// Zenchef (cancelled, refused, no-show), checked by the caller for a
/// `table.opened` whose seat call was not made.
pub fn must_redecide(
    plan: &Plan,
    order: Option<&OrderState>,
    replan: bool,
    matched_gone: bool,
) -> bool {
    if plan.finished() {
        return false;
    }
    let moved = plan.basis.is_some_and(|b| b != Basis::of(order));
    replan || moved || (matched_gone && plan.done == 0)
}

/// Decides the Zenchef calls for `event` (docs/protocol/sync-rules.md, the
/// table "POS → Zenchef"). `matched` is the outcome of [`matching::choose`]
/// for a `table.opened` that needs it; `revision` goes into the keys of a
/// plan decided again.
pub fn plan(
    event: &PosEvent,
    order: Option<&OrderState>,
    matched: Option<i64>,
    ctx: &Ctx,
    revision: u32,
) -> Plan {
    let key = |suffix: &str| match revision {
        0 => format!("{}:{suffix}", event.event_id),
        r => format!("{}:{suffix}:r{r}", event.event_id),
    };
    let mut p = match &event.data {
        EventData::TableOpened(d) => table_opened_plan(d, order, matched, ctx, &key),
        EventData::BillPaid(d) => bill_paid_plan(d, order, ctx, &key),
        // Zenchef: nothing for these (sync rules, the event table).
        EventData::ItemsSent(_)
        | EventData::TableMoved(_)
        | EventData::PaymentRecorded(_)
        | EventData::OrderVoided(_)
        | EventData::Unknown => Plan::default(),
    };
    p.basis = Some(Basis::of(order));
    p.revision = revision;
    p
}

/// [`plan`] of a `table.opened`: seat the matched (or hand-linked)
/// booking, or create a walk-in. `key` gives a step's idempotency key.
fn table_opened_plan(
    d: &TableOpened,
    order: Option<&OrderState>,
    matched: Option<i64>,
    ctx: &Ctx,
    key: &dyn Fn(&str) -> String,
) -> Plan {
    let linked = order.and_then(|o| o.booking_id);
    match (linked, order.and_then(|o| o.link)) {
        // Linked by hand before the table.opened was delivered (a dead one
        // repaired with `link` then `outbox retry`): the guests are at the
        // table, so the linked booking is seated.
        (Some(id), Some(Link::Manual)) if order.is_some_and(|o| o.status == OrderStatus::Open) => {
            Plan {
                steps: vec![Step::ChangeStatus {
                    booking: BookingRef::Id(id),
                    status: BookingStatus::Seated,
                    key: key("seated"),
                }],
                ..Plan::default()
            }
        }
        // Already linked otherwise (a late table.opened after its bill
        // created the walk-in): nothing more, the order never goes back.
        (Some(_), _) => Plan::default(),
        (None, _) => match matched {
            Some(id) => Plan {
                steps: vec![Step::ChangeStatus {
                    booking: BookingRef::Id(id),
                    status: BookingStatus::Seated,
                    key: key("seated"),
                }],
                link: Some(Link::Matched),
                matched_booking: Some(id),
                ..Plan::default()
            },
            None => Plan {
                steps: vec![Step::CreateWalkin {
                    body: walkin_body(&d.table, d.covers.0, d.opened_at.0, ctx).into(),
                    key: key("walkin"),
                }],
                link: Some(Link::Walkin),
                ..Plan::default()
            },
        },
    }
}

/// [`plan`] of a `bill.paid`: the linked booking is over and gets its
/// ticket; without one, a walk-in seated at payment time is created first.
fn bill_paid_plan(
    d: &BillPaid,
    order: Option<&OrderState>,
    ctx: &Ctx,
    key: &dyn Fn(&str) -> String,
) -> Plan {
    let ticket = ticket_body(d, ctx);
    match order.and_then(|o| o.booking_id) {
        Some(id) => Plan {
            steps: vec![
                Step::ChangeStatus {
                    booking: BookingRef::Id(id),
                    status: BookingStatus::Over,
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
        // Never opened (or `table.opened` not ticked in the POS): recorded
        // as a walk-in seated at payment time, then finished with its
        // ticket (docs/decisions.md).
        None => Plan {
            steps: vec![
                Step::CreateWalkin {
                    body: walkin_body(&d.table, d.covers.0, d.paid_at.0, ctx).into(),
                    key: key("walkin"),
                },
                Step::ChangeStatus {
                    booking: BookingRef::Created,
                    status: BookingStatus::Over,
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

/// Decides again the steps of `old` not yet made (rule 10), from the
/// order's current state: the steps made stay, the new ones follow with
/// the next revision's keys. A walk-in already created stays the plan's.
pub fn redecide(
    old: &Plan,
    event: &PosEvent,
    order: Option<&OrderState>,
    matched: Option<i64>,
    ctx: &Ctx,
) -> Plan {
    let fresh = plan(event, order, matched, ctx, old.revision + 1);
    let mut steps: Vec<Step> = old.steps[..old.done.min(old.steps.len())].to_vec();
    steps.extend(fresh.steps);
    Plan {
        steps,
        done: old.done.min(old.steps.len()),
        created_booking: old.created_booking,
        link: if old.created_booking.is_some() {
            old.link
        } else {
            fresh.link
        },
        matched_booking: fresh.matched_booking,
        basis: fresh.basis,
        revision: fresh.revision,
    }
}

/// The order state after `event` and its finished `plan`. A late event
/// (lower `seq` than one already applied) never moves the order backwards
/// (rule 10): it only fills in what is still unknown (the link its plan
/// made, the covers and opening time of a late `table.opened`).
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
    if let Some(mut o) = order.clone()
        && event.seq < o.last_seq
    {
        link_from_plan(&mut o);
        if let EventData::TableOpened(d) = &event.data {
            o.covers = o.covers.or(Some(d.covers.0));
            o.opened_at = o.opened_at.or(Some(d.opened_at.0));
        }
        return Some(o);
    }
    let closed = |o: &OrderState| o.status != OrderStatus::Open;
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
            if !closed(&o) {
                o.table = d.table.to_string();
                o.total_cents = Some(d.total_cents.0);
            }
            o
        }
        (EventData::TableMoved(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.to_table));
            o.table = d.to_table.to_string();
            o
        }
        (EventData::PaymentRecorded(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(""));
            if !closed(&o) {
                o.paid_cents = o.paid_cents.saturating_add(d.amount_cents.0);
            }
            o
        }
        (EventData::BillPaid(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            if o.status != OrderStatus::Voided {
                o.table = d.table.to_string();
                o.covers = Some(d.covers.0);
                o.total_cents = Some(d.total_cents.0);
                o.paid_cents = bill_paid_cents(d);
                o.status = OrderStatus::Paid;
            }
            link_from_plan(&mut o);
            o
        }
        (EventData::OrderVoided(d), prev) => {
            let mut o = prev.unwrap_or_else(|| fresh(&d.table));
            if o.status == OrderStatus::Open {
                o.status = OrderStatus::Voided;
            }
            o
        }
        (EventData::Unknown, prev) => return prev,
    };
    o.last_seq = o.last_seq.max(event.seq);
    Some(o)
}

/// The bill share a `bill.paid` reports as paid: its payments minus the
/// tips (payments include tips: in the `pos_ticket` example, a 24600 bill
/// with a 300 tip is paid as 24900).
fn bill_paid_cents(d: &BillPaid) -> i64 {
    let paid: i64 = d.payments.iter().map(|p| p.amount_cents.0).sum();
    (paid - d.tip_cents.0).max(0)
}

/// A line of a Zenchef Pay check or a Zenchef ticket: the POS line without
/// its id, prices as the POS sent them (negative for a discount or comp).
/// Fields in the sorted order the bodies have always had on the wire
/// ([`crate::booking`], module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckLine {
    /// Item name.
    pub name: String,
    /// Quantity, as the POS sent it.
    pub quantity: u32,
    /// Line total, cents (may be negative).
    pub total_cents: i64,
    /// Unit price, cents (may be negative).
    pub unit_price_cents: i64,
}

fn check_lines(lines: &[crate::event::Line]) -> Vec<CheckLine> {
    lines
        .iter()
        .map(|l| CheckLine {
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents.0,
            total_cents: l.total_cents.0,
        })
        .collect()
}

/// What the POS has reported of an order: every stored event of it applied
/// in `seq` order, whether delivered anywhere or not (rule 6). Once closed
/// (paid or voided), an order stays closed: later events change nothing of
/// its bill (rule 10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderTruth {
    /// POS order id.
    pub order_id: String,
    /// At least one valid event of the order is stored. An order is known
    /// from its `table.opened`, or from any later event when the restaurant
    /// did not tick `table.opened` in the POS.
    pub known: bool,
    /// Its `table.opened` is stored.
    pub opened: bool,
    /// Table name (latest in `seq` order).
    pub table: Option<String>,
    /// Guests.
    pub covers: Option<u32>,
    /// Open, paid or voided.
    pub status: OrderStatus,
    /// The POS's own bill total, cents (latest in `seq` order); `None`
    /// before items were sent.
    pub total_cents: Option<i64>,
    /// The whole bill, as last sent.
    pub lines: Vec<CheckLine>,
    /// Items were sent (`order.items_sent` stored): Zenchef Pay shows a
    /// check for the order.
    pub has_bill: bool,
    /// What the POS reports as paid toward the bill, cents, tips excluded.
    pub paid_cents: i64,
    /// Zenchef Pay payment ids the POS reported (payment references).
    pub references: BTreeSet<String>,
    /// The highest `seq` stored for the order: the version of its check.
    pub last_seq: u64,
}

/// Folds the stored events of `order_id` (any order: they are sorted by
/// `seq` here) into its [`OrderTruth`]. Events of other orders and of
/// unknown types are ignored.
pub fn truth(order_id: &str, events: &[PosEvent]) -> OrderTruth {
    let mut sorted: Vec<&PosEvent> = events
        .iter()
        .filter(|e| e.data.order_id() == Some(order_id))
        .collect();
    sorted.sort_by_key(|e| e.seq);
    let mut t = OrderTruth {
        order_id: order_id.to_string(),
        ..OrderTruth::default()
    };
    let zp_ref = |m: Method, r: &Option<String>| {
        (m == Method::ZenchefPay)
            .then(|| r.clone().filter(|r| !r.is_empty()))
            .flatten()
    };
    for e in sorted {
        t.known = true;
        t.last_seq = t.last_seq.max(e.seq);
        let open = t.status == OrderStatus::Open;
        match &e.data {
            EventData::TableOpened(d) => {
                t.opened = true;
                t.covers = t.covers.or(Some(d.covers.0));
                t.table.get_or_insert_with(|| d.table.to_string());
            }
            EventData::ItemsSent(d) if open => {
                t.has_bill = true;
                t.table = Some(d.table.to_string());
                t.total_cents = Some(d.total_cents.0);
                t.lines = check_lines(&d.lines);
            }
            EventData::ItemsSent(_) => t.has_bill = true,
            EventData::TableMoved(d) if open => t.table = Some(d.to_table.to_string()),
            EventData::PaymentRecorded(d) => {
                // A Zenchef Pay payment the POS records twice counts once
                // (the second record is flagged for a person at intake).
                let reference = zp_ref(d.method, &d.reference);
                let again = reference.as_ref().is_some_and(|r| t.references.contains(r));
                if open && !again {
                    t.paid_cents = t.paid_cents.saturating_add(d.amount_cents.0);
                }
                t.references.extend(reference);
            }
            EventData::BillPaid(d) => {
                t.references.extend(
                    d.payments
                        .iter()
                        .filter_map(|p| zp_ref(p.method, &p.reference)),
                );
                if open {
                    t.status = OrderStatus::Paid;
                    t.table = Some(d.table.to_string());
                    t.covers = Some(d.covers.0);
                    t.total_cents = Some(d.total_cents.0);
                    t.lines = check_lines(&d.lines);
                    t.paid_cents = bill_paid_cents(d);
                }
            }
            EventData::OrderVoided(d) if open => {
                t.status = OrderStatus::Voided;
                t.table.get_or_insert_with(|| d.table.to_string());
            }
            _ => {}
        }
    }
    t
}

/// The Zenchef Pay check of an order, as the rules decide it: what the
/// Zenchef Pay client sends (its wire form is `pay::wire::CheckBody` in
/// the agent, docs/protocol/zenchef-pay.md § Checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Guests (1 when unknown).
    pub covers: u32,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// The whole bill, as the POS last sent it.
    pub lines: Vec<CheckLine>,
    /// What the POS reports as paid, cents, tips excluded.
    pub paid_cents: i64,
    /// The order's status (the check is `closed` when it is paid).
    pub status: OrderStatus,
    /// Table name (empty when unknown).
    pub table: String,
    /// The POS bill total, cents (0 when unknown).
    pub total_cents: i64,
    /// The check's version: the highest stored POS `seq` of the order.
    pub version: u64,
}

/// The Zenchef Pay check of an order (docs/protocol/zenchef-pay.md,
/// checks): the POS's own lines and totals from its truth, never
/// recomputed; `version` = the highest stored `seq` of the order. `None`
/// while no items were sent (no check exists).
pub fn check_body(t: &OrderTruth, ctx: &Ctx) -> Option<Check> {
    t.has_bill.then(|| Check {
        covers: t.covers.unwrap_or(1),
        currency: ctx.currency.clone(),
        lines: t.lines.clone(),
        paid_cents: t.paid_cents,
        status: t.status,
        table: t.table.clone().unwrap_or_default(),
        total_cents: t.total_cents.unwrap_or(0),
        version: t.last_seq,
    })
}

/// Why a Zenchef Pay payment cannot be settled in the POS (rule 6, rule 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No event of the order is stored.
    Unknown,
    /// The POS reported the bill paid.
    Paid,
    /// The POS voided the order.
    Voided,
    /// An event of the order could not be read (rule 9): its state is not
    /// clear.
    Attention(String),
    /// More than what is still due.
    Exceeds {
        /// The payment, cents.
        amount: i64,
        /// Still due, cents (may be ≤ 0).
        due: i64,
    },
}

impl Refusal {
    /// The sentence sent with the `rejected` ack (Zenchef Pay refunds the
    /// guest) and logged at ERROR.
    pub fn reason(&self, order_id: &str) -> String {
        match self {
            Refusal::Unknown => format!("order {order_id} is unknown to the POS"),
            Refusal::Paid => format!("order {order_id} already paid in the POS"),
            Refusal::Voided => format!("order {order_id} was voided in the POS"),
            Refusal::Attention(why) => format!(
                "order {order_id} needs attention: {why}; no payment is settled on it until the \
                 POS reports its bill again"
            ),
            Refusal::Exceeds { amount, due } => format!(
                "amount {amount} cents exceeds what is still due on order {order_id} ({} cents)",
                due.max(&0)
            ),
        }
    }
}

/// What to do with a Zenchef Pay payment (rule 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it to the POS (one settle command).
    Settle,
    /// The POS already reported it (its reference is in a stored event):
    /// acknowledge it `settled`, never send it again.
    Reported,
    /// Refuse it: ack `rejected` with the reason.
    Refuse(Refusal),
}

/// Judges a payment of `amount_cents` toward `truth`'s order on what the
/// POS has reported and the agent has stored (rule 6): `attention` is the
/// reason the order needs attention (rule 9), `pending_cents` the Zenchef
/// Pay payments of the order already sent to the POS (or about to be) and
/// not yet answered.
pub fn judge_payment(
    payment_id: &str,
    amount_cents: i64,
    truth: &OrderTruth,
    attention: Option<&str>,
    pending_cents: i64,
) -> Verdict {
    if truth.references.contains(payment_id) {
        return Verdict::Reported;
    }
    let refuse = Verdict::Refuse;
    if !truth.known {
        return refuse(Refusal::Unknown);
    }
    match truth.status {
        OrderStatus::Paid => return refuse(Refusal::Paid),
        OrderStatus::Voided => return refuse(Refusal::Voided),
        OrderStatus::Open => {}
    }
    if let Some(why) = attention {
        return refuse(Refusal::Attention(why.to_string()));
    }
    let due = truth.total_cents.unwrap_or(0) - truth.paid_cents - pending_cents;
    if amount_cents > due {
        return refuse(Refusal::Exceeds {
            amount: amount_cents,
            due,
        });
    }
    Verdict::Settle
}

/// Walk-in creation body (docs/protocol/zenchef-api.md, `POST
/// /bookings?force=1`): day and time are the restaurant's local time of `at`.
pub fn walkin_body(table: &str, covers: u32, at: DateTime<FixedOffset>, ctx: &Ctx) -> WalkinBody {
    let local = at.with_timezone(&ctx.tz);
    WalkinBody {
        country: "fr".into(),
        day: local.format("%Y-%m-%d").to_string(),
        firstname: "Walk-in".into(),
        lastname: format!("Table {table}"),
        nb_guests: covers,
        reservation_type: "walkin".into(),
        status: BookingStatus::Seated,
        tables: vec![table.to_string()],
        time: local.format("%H:%M").to_string(),
    }
}

/// `pos_ticket` body (docs/protocol/zenchef-api.md): the POS's own lines
/// (discounts and comps as negative lines) and totals, as a plan stores it.
pub fn ticket_body(d: &BillPaid, ctx: &Ctx) -> PlanBody<PosTicketBody> {
    PlanBody::Typed(PosTicketBody {
        covers: d.covers.0,
        currency: ctx.currency.clone(),
        lines: check_lines(&d.lines),
        paid_at: d.paid_at.0.to_rfc3339(),
        payments: d
            .payments
            .iter()
            .map(|p| TicketPayment {
                amount_cents: p.amount_cents.0,
                method: p.method,
            })
            .collect(),
        ticket_id: d.order_id.0.clone(),
        tip_cents: d.tip_cents.0,
        total_cents: d.total_cents.0,
    })
}

#[cfg(test)]
mod tests;

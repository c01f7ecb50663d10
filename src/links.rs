//! Manual links (sync-rules 4b): `zenchef-edge link <order> <booking>` and
//! `unlink <order>` queue a row in `link_requests`; this task, in the
//! daemon, applies them.
//!
//! Every [`POLL_EVERY`] it takes the unfinished requests in id order and,
//! for each:
//! 1. decides from the store ([`decide`], pure): refuse (unknown order,
//!    order already paid or voided, booking held by another open order),
//!    wait (the order has an event being delivered: the dispatcher holds a
//!    copy of the order state while it works, so the link waits until the
//!    order is idle or stuck on a dead letter — no race with it), or apply;
//! 2. for a link, asks Zenchef for the booking (`GET /bookings/{id}`): an
//!    unknown booking is refused; an unreachable Zenchef makes it wait;
//! 3. in **one** store transaction decides again and writes
//!    `orders.booking_id` / `link = 'manual'` (or clears them for an
//!    unlink) and the request's state — later events of the order read
//!    `orders.booking_id`, so they use the manual link;
//! 4. when the order had a walk-in (`link = 'walkin'`), cancels it in
//!    Zenchef (`changeStatus canceled`, `PublisherModelId link-<request id>`,
//!    so a retry never acts twice), retried while Zenchef is unreachable.
//!
//! Each request ends `done` or `refused` with a sentence in `result` that
//! the CLI prints, and one journal line with `ORDER_ID` / `BOOKING_ID`.
//! The dispatcher is not touched: it only ever reads the link.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use crate::outbox::links::{LinkRequest, LinkState, open_requests, set_state};
use crate::outbox::{self, State, Store, StoreError, events, orders, queue};
use crate::sync::{Link, OrderState, OrderStatus};
use crate::zenchef::client::{Booking, CallError, ErrorClass, ZenchefClient};
use crate::zenchef::wire::BookingStatus;

/// How often the daemon looks for requests.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Who already holds a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Another open order is linked to it.
    Order {
        /// That order.
        order_id: String,
        /// Its table.
        table: String,
    },
    /// Another order's `table.opened` chose it and is being delivered.
    Matching {
        /// That order.
        order_id: String,
    },
}

/// What the store says about the order of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFacts {
    /// The order's state, once an event of it was delivered.
    pub order: Option<OrderState>,
    /// At least one event of the order was received.
    pub has_events: bool,
    /// State of its earliest undelivered event (Zenchef lane).
    pub head: Option<State>,
    /// Number of its undelivered events.
    pub pending: i64,
    /// Another order holding the requested booking.
    pub holder: Option<Holder>,
    /// Table of its first event (to create the order row when its first
    /// event is a dead letter).
    pub first_table: Option<String>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Never: the sentence says why.
    Refuse(String),
    /// Not now: the sentence says what it waits for.
    Wait(String),
    /// Nothing to change.
    Nothing(String),
    /// Write the link.
    Apply {
        /// The booking the order had, and how it was linked.
        previous: Option<(i64, Link)>,
        /// Walk-in to cancel in Zenchef.
        cancel: Option<i64>,
    },
}

/// Decides a request from the store's facts (pure; sync-rules 4b).
pub fn decide(req: &LinkRequest, f: &OrderFacts) -> Decision {
    let o = &req.order_id;
    if f.order.is_none() && !f.has_events {
        return Decision::Refuse(format!(
            "order {o} is unknown: no event of this order was received from the POS"
        ));
    }
    if let Some(order) = &f.order {
        let linked = order
            .booking_id
            .map(|b| format!(" (its bill went to booking {b})"))
            .unwrap_or_default();
        match order.status {
            OrderStatus::Open => {}
            OrderStatus::Paid => {
                return Decision::Refuse(format!(
                    "order {o} is already paid{linked}: a link now would change nothing in Zenchef"
                ));
            }
            OrderStatus::Voided => {
                return Decision::Refuse(format!("order {o} was voided: there is nothing to link"));
            }
        }
    }
    if f.head == Some(State::Queued) {
        return Decision::Wait(format!(
            "order {o} has {} event(s) being delivered to Zenchef; the link is applied as soon \
             as they are (nothing to do: the agent retries by itself)",
            f.pending
        ));
    }
    let current = f.order.as_ref().and_then(|x| x.booking_id);
    let previous = f
        .order
        .as_ref()
        .and_then(|x| Some((x.booking_id?, x.link.unwrap_or(Link::Matched))));
    match req.booking_id {
        None => {
            if current.is_none() {
                return Decision::Nothing(format!(
                    "order {o} is not linked to any booking: nothing to unlink"
                ));
            }
        }
        Some(b) => {
            if current == Some(b) {
                return Decision::Nothing(format!("order {o} is already linked to booking {b}"));
            }
            match &f.holder {
                Some(Holder::Order { order_id, table }) => {
                    return Decision::Refuse(format!(
                        "booking {b} is already linked to open order {order_id} (table {table}): \
                         unlink that order first with `zenchef-edge unlink {order_id}`"
                    ));
                }
                Some(Holder::Matching { order_id }) => {
                    return Decision::Refuse(format!(
                        "booking {b} is being matched to order {order_id} right now: wait a few \
                         seconds, then unlink that order first with `zenchef-edge unlink {order_id}`"
                    ));
                }
                None => {}
            }
        }
    }
    let cancel = match previous {
        Some((w, Link::Walkin)) => Some(w),
        _ => None,
    };
    Decision::Apply { previous, cancel }
}

/// Reads the facts for a request (inside a store job).
pub fn facts(c: &Connection, r: &LinkRequest) -> Result<OrderFacts, StoreError> {
    let order = outbox::load_order(c, &r.order_id)?;
    let has_events = events::has_events(c, &r.order_id)?;
    let (pending, head) = queue::zenchef_undelivered(c, &r.order_id)?;
    let holder = match r.booking_id {
        None => None,
        Some(b) => match orders::open_holder(c, b, &r.order_id)? {
            Some((order_id, table)) => Some(Holder::Order { order_id, table }),
            None => queue::matching_order(c, b, &r.order_id)?
                .map(|order_id| Holder::Matching { order_id }),
        },
    };
    let first_table = events::first_body(c, &r.order_id)?
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v["data"]["table"]
                .as_str()
                .or(v["data"]["to_table"].as_str())
                .map(str::to_string)
        });
    Ok(OrderFacts {
        order,
        has_events,
        head,
        pending,
        holder,
        first_table,
    })
}

/// Writes the link (or clears it) on the order; creates the order row when
/// only its (dead) first event is known.
fn write_link(c: &Connection, r: &LinkRequest, f: &OrderFacts) -> Result<(), StoreError> {
    let link = r.booking_id.map(|_| Link::Manual);
    match &f.order {
        Some(_) => orders::set_link(c, &r.order_id, r.booking_id, link)?,
        None => outbox::save_order(
            c,
            &OrderState {
                order_id: r.order_id.clone(),
                table: f.first_table.clone().unwrap_or_default(),
                covers: None,
                opened_at: None,
                status: OrderStatus::Open,
                booking_id: r.booking_id,
                link,
                total_cents: None,
                paid_cents: 0,
                last_seq: 0,
            },
        )?,
    }
    Ok(())
}

/// A booking in a few words: `Martin, 2026-11-29 20:00, 4 guests, confirmed`.
fn booking_words(b: &Booking) -> String {
    let name = b
        .lastname
        .clone()
        .or(b.customersheet.as_ref().and_then(|s| s.lastname.clone()))
        .unwrap_or_else(|| "no name".into());
    let guests = b
        .nb_guests
        .map(|n| format!(", {n} guests"))
        .unwrap_or_default();
    format!("{name}, {} {}{guests}, {}", b.day, b.time, b.status)
}

/// The sentence of an applied request (before the walk-in cancel).
fn applied_sentence(r: &LinkRequest, previous: Option<(i64, Link)>, words: Option<&str>) -> String {
    let o = &r.order_id;
    let mut s = match (r.booking_id, words) {
        (Some(b), Some(w)) => format!("order {o} is now linked to booking {b} ({w})"),
        (Some(b), None) => format!("order {o} is now linked to booking {b}"),
        (None, _) => {
            format!(
                "order {o} is no longer linked to a booking; when paid, its bill is recorded as a walk-in"
            )
        }
    };
    match previous {
        Some((p, Link::Matched)) => s.push_str(&format!(
            "; booking {p} (matched before) keeps its status in Zenchef: set it back by hand if \
             those guests have not arrived"
        )),
        Some((p, Link::Manual)) => s.push_str(&format!("; it was linked by hand to booking {p}")),
        _ => {}
    }
    s
}

/// Runs the task until `cancel`.
pub async fn run(store: Store, zenchef: ZenchefClient, cancel: CancellationToken) {
    let mut waits: HashMap<i64, String> = HashMap::new();
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let requests = match store.read(open_requests).await {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot read the manual link requests: {e}");
                continue;
            }
        };
        waits.retain(|id, _| requests.iter().any(|r| r.id == *id));
        for r in requests {
            if cancel.is_cancelled() {
                break;
            }
            if let Err(e) = process(&store, &zenchef, &r, &mut waits).await {
                warn!(order_id = %r.order_id, "manual link request #{}: store error, retried: {e}", r.id);
            }
        }
    }
    info!("manual link task stopped");
}

/// Records why a request waits (once per new reason in the journal).
async fn wait(
    store: &Store,
    r: &LinkRequest,
    why: String,
    waits: &mut HashMap<i64, String>,
) -> Result<(), StoreError> {
    if waits.get(&r.id) != Some(&why) {
        info!(order_id = %r.order_id, booking_id = r.booking_id, "manual link request #{} waits: {why}", r.id);
        waits.insert(r.id, why.clone());
    }
    if r.result.as_deref() != Some(why.as_str()) {
        let id = r.id;
        store
            .write(move |c| set_state(c, id, LinkState::Pending, &why, None))
            .await?;
    }
    Ok(())
}

async fn finish(
    store: &Store,
    r: &LinkRequest,
    state: LinkState,
    sentence: String,
) -> Result<(), StoreError> {
    match state {
        LinkState::Refused => warn!(
            order_id = %r.order_id, booking_id = r.booking_id,
            "manual link request #{} refused: {sentence}", r.id
        ),
        _ => info!(
            order_id = %r.order_id, booking_id = r.booking_id,
            "manual link request #{}: {sentence}", r.id
        ),
    }
    let id = r.id;
    store
        .write(move |c| set_state(c, id, state, &sentence, None))
        .await
}

async fn process(
    store: &Store,
    zenchef: &ZenchefClient,
    r: &LinkRequest,
    waits: &mut HashMap<i64, String>,
) -> Result<(), StoreError> {
    if r.state == LinkState::Cancelling {
        return cancel_walkin(store, zenchef, r, waits).await;
    }
    // 1. A first look, to refuse or wait without calling Zenchef.
    let r2 = r.clone();
    let first = store
        .read(move |c| Ok(decide(&r2, &facts(c, &r2)?)))
        .await?;
    match first {
        Decision::Refuse(m) => return finish(store, r, LinkState::Refused, m).await,
        Decision::Nothing(m) => return finish(store, r, LinkState::Done, m).await,
        Decision::Wait(m) => return wait(store, r, m, waits).await,
        Decision::Apply { .. } => {}
    }
    // 2. The booking must exist in Zenchef (a typo must not link anything).
    let mut words = None;
    if let Some(b) = r.booking_id {
        match zenchef.booking(b).await {
            Ok(bk) if bk.status == BookingStatus::Over => {
                return finish(
                    store,
                    r,
                    LinkState::Refused,
                    format!("booking {b} is already finished (over) in Zenchef: choose the guests' current booking"),
                )
                .await;
            }
            Ok(bk) => words = Some(booking_words(&bk)),
            Err(e) if e.class == ErrorClass::Dead => {
                return finish(
                    store,
                    r,
                    LinkState::Refused,
                    format!(
                        "booking {b} does not exist in Zenchef for restaurant {} ({})",
                        zenchef.restaurant_id(),
                        e.message
                    ),
                )
                .await;
            }
            Err(e) => return wait(store, r, waiting_on_zenchef(zenchef, &e), waits).await,
        }
    }
    // 3. Decide again and write, atomically.
    let r2 = r.clone();
    let words2 = words.clone();
    let applied = store
        .write(move |c| {
            let f = facts(c, &r2)?;
            let d = decide(&r2, &f);
            if let Decision::Apply { previous, cancel } = &d {
                write_link(c, &r2, &f)?;
                let sentence = applied_sentence(&r2, *previous, words2.as_deref());
                let state = if cancel.is_some() {
                    LinkState::Cancelling
                } else {
                    LinkState::Done
                };
                set_state(c, r2.id, state, &sentence, *cancel)?;
            }
            Ok(d)
        })
        .await?;
    match applied {
        Decision::Apply { previous, cancel } => {
            let sentence = applied_sentence(r, previous, words.as_deref());
            info!(
                order_id = %r.order_id, booking_id = r.booking_id,
                "manual link request #{} applied: {sentence}", r.id
            );
            if let Some(w) = cancel {
                let mut next = r.clone();
                next.state = LinkState::Cancelling;
                next.result = Some(sentence);
                next.cancel_booking = Some(w);
                cancel_walkin(store, zenchef, &next, waits).await?;
            }
            Ok(())
        }
        // Something changed between the two looks.
        Decision::Refuse(m) => finish(store, r, LinkState::Refused, m).await,
        Decision::Nothing(m) => finish(store, r, LinkState::Done, m).await,
        Decision::Wait(m) => wait(store, r, m, waits).await,
    }
}

fn waiting_on_zenchef(zenchef: &ZenchefClient, e: &CallError) -> String {
    match e.class {
        ErrorClass::Credentials => format!(
            "Zenchef refused the token for restaurant {} ({}): check zenchef.token and \
             zenchef.restaurant_id; the link is applied once Zenchef accepts them",
            zenchef.restaurant_id(),
            e.message
        ),
        _ => format!("Zenchef is unreachable ({e}); the link is applied as soon as it answers"),
    }
}

/// Cancels the walk-in of a request in state `cancelling`.
async fn cancel_walkin(
    store: &Store,
    zenchef: &ZenchefClient,
    r: &LinkRequest,
    waits: &mut HashMap<i64, String>,
) -> Result<(), StoreError> {
    let base = r.result.clone().unwrap_or_default();
    let Some(w) = r.cancel_booking else {
        return finish(store, r, LinkState::Done, base).await;
    };
    match zenchef
        .change_status(w, &BookingStatus::Canceled, &format!("link-{}", r.id))
        .await
    {
        Ok(_) => {
            finish(
                store,
                r,
                LinkState::Done,
                format!("{base}; the walk-in {w} created for this order was cancelled in Zenchef"),
            )
            .await
        }
        Err(e) if e.class == ErrorClass::Dead => {
            error!(
                order_id = %r.order_id, booking_id = w,
                "the walk-in {w} of order {} could NOT be cancelled in Zenchef ({}): cancel it by \
                 hand in Zenchef", r.order_id, e.message
            );
            finish(
                store,
                r,
                LinkState::Done,
                format!(
                    "{base}; the walk-in {w} could NOT be cancelled in Zenchef ({}): cancel it by hand",
                    e.message
                ),
            )
            .await
        }
        Err(e) => {
            let why = waiting_on_zenchef(zenchef, &e);
            if waits.get(&r.id) != Some(&why) {
                warn!(
                    order_id = %r.order_id, booking_id = w,
                    "cancelling the walk-in {w} of order {} waits: {why}", r.order_id
                );
                waits.insert(r.id, why);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(booking: Option<i64>) -> LinkRequest {
        LinkRequest {
            id: 7,
            order_id: "O-1".into(),
            booking_id: booking,
            state: LinkState::Pending,
            result: None,
            cancel_booking: None,
        }
    }

    fn order(booking: Option<i64>, link: Option<Link>, status: OrderStatus) -> OrderState {
        OrderState {
            order_id: "O-1".into(),
            table: "12".into(),
            covers: Some(2),
            opened_at: None,
            status,
            booking_id: booking,
            link,
            total_cents: None,
            paid_cents: 0,
            last_seq: 3,
        }
    }

    fn facts_with(o: Option<OrderState>) -> OrderFacts {
        OrderFacts {
            has_events: true,
            order: o,
            ..Default::default()
        }
    }

    // Long by design: one table of named cases of rule 4b.
    #[test]
    fn decisions_follow_rule_4b() {
        use Decision::*;
        let walkin = order(Some(900_001), Some(Link::Walkin), OrderStatus::Open);
        let matched = order(Some(77), Some(Link::Matched), OrderStatus::Open);
        let cases: Vec<(&str, LinkRequest, OrderFacts, Decision)> = vec![
            (
                "a walk-in is replaced and cancelled",
                req(Some(123)),
                facts_with(Some(walkin.clone())),
                Apply {
                    previous: Some((900_001, Link::Walkin)),
                    cancel: Some(900_001),
                },
            ),
            (
                "a matched booking is replaced, nothing cancelled",
                req(Some(123)),
                facts_with(Some(matched.clone())),
                Apply {
                    previous: Some((77, Link::Matched)),
                    cancel: None,
                },
            ),
            (
                "unlinking a walk-in cancels it",
                req(None),
                facts_with(Some(walkin.clone())),
                Apply {
                    previous: Some((900_001, Link::Walkin)),
                    cancel: Some(900_001),
                },
            ),
            (
                "an order whose first event is dead gets its link",
                req(Some(123)),
                OrderFacts {
                    head: Some("dead".into()),
                    pending: 1,
                    ..facts_with(None)
                },
                Apply {
                    previous: None,
                    cancel: None,
                },
            ),
        ];
        for (what, r, f, want) in cases {
            assert_eq!(decide(&r, &f), want, "{what}");
        }
        // Refusals and waits, by their sentence.
        let unknown = decide(&req(Some(1)), &OrderFacts::default());
        assert!(
            matches!(&unknown, Refuse(m) if m.contains("order O-1 is unknown")),
            "{unknown:?}"
        );
        let paid = decide(
            &req(Some(1)),
            &facts_with(Some(order(
                Some(77),
                Some(Link::Matched),
                OrderStatus::Paid,
            ))),
        );
        assert!(
            matches!(&paid, Refuse(m) if m.contains("already paid (its bill went to booking 77)")),
            "{paid:?}"
        );
        let held = decide(
            &req(Some(5)),
            &OrderFacts {
                holder: Some(Holder::Order {
                    order_id: "O-9".into(),
                    table: "4".into(),
                }),
                ..facts_with(Some(matched.clone()))
            },
        );
        assert!(
            matches!(&held, Refuse(m) if m.contains("booking 5 is already linked to open order O-9 (table 4)")
                && m.contains("zenchef-edge unlink O-9")),
            "{held:?}"
        );
        let busy = decide(
            &req(Some(5)),
            &OrderFacts {
                head: Some("queued".into()),
                pending: 2,
                ..facts_with(Some(matched.clone()))
            },
        );
        assert!(
            matches!(&busy, Wait(m) if m.contains("2 event(s) being delivered")),
            "{busy:?}"
        );
        assert!(matches!(
            decide(&req(Some(77)), &facts_with(Some(matched))),
            Nothing(_)
        ));
        assert!(matches!(
            decide(
                &req(None),
                &facts_with(Some(order(None, None, OrderStatus::Open)))
            ),
            Nothing(_)
        ));
    }
}

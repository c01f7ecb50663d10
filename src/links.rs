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
pub use domain::links::{self, Decision, Facts, Holder};

use crate::sync::{Link, OrderState, OrderStatus};
use crate::zenchef::client::{Booking, CallError, ErrorClass, ZenchefClient};
use crate::zenchef::wire::BookingStatus;

/// How often the daemon looks for requests.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What the store says about the order of a request: the facts rule 4b
/// decides on, and the table of its first event (to create the order row
/// when its first event is a dead letter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFacts {
    /// What [`decide`] reads.
    pub rule: Facts,
    /// Table of its first event.
    pub first_table: Option<String>,
}

/// Decides a request from the store's facts (pure; sync-rules 4b, in the
/// domain crate: [`domain::links::decide`]).
pub fn decide(req: &LinkRequest, f: &OrderFacts) -> Decision {
    links::decide(&req.order_id, req.booking_id, &f.rule)
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
        rule: Facts {
            order,
            has_events,
            delivering: head == Some(State::Queued),
            pending,
            holder,
        },
        first_table,
    })
}

/// Writes the link (or clears it) on the order; creates the order row when
/// only its (dead) first event is known.
fn write_link(c: &Connection, r: &LinkRequest, f: &OrderFacts) -> Result<(), StoreError> {
    let link = r.booking_id.map(|_| Link::Manual);
    match &f.rule.order {
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

    /// The agent's `decide` hands the request and the rule's facts to the
    /// domain (whose tests hold the table of rule 4b).
    #[test]
    fn decide_reads_the_request() {
        let req = |booking| LinkRequest {
            id: 7,
            order_id: "O-1".into(),
            booking_id: booking,
            state: LinkState::Pending,
            result: None,
            cancel_booking: None,
        };
        let f = OrderFacts {
            rule: Facts {
                has_events: true,
                ..Facts::default()
            },
            first_table: Some("12".into()),
        };
        assert_eq!(
            decide(&req(Some(5)), &f),
            Decision::Apply {
                previous: None,
                cancel: None
            }
        );
        assert_eq!(
            decide(&req(None), &f),
            Decision::Nothing("order O-1 is not linked to any booking: nothing to unlink".into())
        );
    }
}

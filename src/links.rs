//! Manual links (sync-rules 4b): `zenchef-edge link <order> <booking>` and
//! `unlink <order>` queue a row in `link_requests`; the daemon applies them
//! in two places, neither of which is a second Zenchef caller:
//!
//! - this task, every [`POLL_EVERY`], takes the unfinished requests in id
//!   order and decides each from the store ([`decide`], pure): it refuses
//!   (unknown order, order already paid or voided, booking held by another
//!   open order), says there is nothing to do, or records that the request
//!   waits (the order has an event being delivered: the order's lane holds
//!   a copy of the order state while it works). It never calls Zenchef: it
//!   applies an unlink that cancels no walk-in itself (a store write), and
//!   leaves every other request to apply to the order's lane;
//! - the order's **Zenchef lane** (`crate::delivery::link_steps`), after
//!   the order's deliverable events (so in the order's own order), runs the
//!   Zenchef steps of its requests like any other call of the lane (same
//!   outage probe, credentials pause, backoff and `Health`): it asks Zenchef
//!   for the booking (`GET /bookings/{id}`; an unknown or finished booking
//!   is refused), then in **one** store transaction decides again and
//!   writes `orders.booking_id` / `link = 'manual'` (or clears them for an
//!   unlink) and the request's state — later events of the order read
//!   `orders.booking_id`, so they use the manual link; when the order had a
//!   walk-in (`link = 'walkin'`), it cancels it in Zenchef (`changeStatus
//!   canceled`, `PublisherModelId link-<request id>`, so a retry never acts
//!   twice).
//!
//! Each request ends `done` or `refused` with a sentence in `result` that
//! the CLI prints, and one journal line with `ORDER_ID` / `BOOKING_ID`
//! (whoever of the two writes the outcome first logs it; the other's write
//! changes nothing).

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::outbox::links::{
    LinkRequest, LinkState, open_requests, open_requests_of, set_state, set_state_from,
};
use crate::outbox::{self, State, Store, StoreError, events, orders, queue};
pub use domain::links::{self, Decision, Facts, Holder};

use crate::health::{ApiHealth, Health};
use crate::sync::{Link, OrderState, OrderStatus};
use crate::zenchef::client::{Booking, CallError, ErrorClass};

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
pub(crate) fn booking_words(b: &Booking) -> String {
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
pub(crate) fn applied_sentence(
    r: &LinkRequest,
    previous: Option<(i64, Link)>,
    words: Option<&str>,
) -> String {
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

/// Runs the task until `cancel`. `health` says whether the Zenchef lane
/// is paused (outage, refused token), so that a request waiting for it says
/// why; `restaurant_id` is named in that sentence.
pub async fn run(store: Store, health: Health, restaurant_id: String, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A store that cannot be read (a full disk) is said once, not every
    // poll: intake's ERROR already tells the technician what to do.
    let mut unreadable = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let requests = match store.read(open_requests).await {
            Ok(r) => {
                if std::mem::take(&mut unreadable) {
                    info!("the manual link requests can be read again");
                }
                r
            }
            Err(e) => {
                if !std::mem::replace(&mut unreadable, true) {
                    warn!(
                        "cannot read the manual link requests: {e}; trying again every {} s",
                        POLL_EVERY.as_secs()
                    );
                }
                continue;
            }
        };
        // Orders with an earlier unfinished request: a later one never
        // overtakes it.
        let mut first_of: HashMap<String, i64> = HashMap::new();
        for r in requests {
            if cancel.is_cancelled() {
                break;
            }
            let earlier = *first_of.entry(r.order_id.clone()).or_insert(r.id);
            let first = earlier == r.id;
            if r.state != LinkState::Pending {
                // Applied: its walk-in cancel is the lane's.
                continue;
            }
            if !first {
                // Judged only once the earlier one is finished: its
                // outcome is a fact this one depends on (a `link` then an
                // `unlink` of the same order must end unlinked).
                let why = format!("request #{earlier} of order {} comes first", r.order_id);
                if let Err(e) = wait(&store, &r, why).await {
                    warn!(order_id = %r.order_id, "manual link request #{}: store error, retried: {e}", r.id);
                }
                continue;
            }
            if let Err(e) = look(&store, &r, first, &health, &restaurant_id).await {
                warn!(order_id = %r.order_id, "manual link request #{}: store error, retried: {e}", r.id);
            }
        }
    }
    info!("manual link task stopped");
}

/// The task's look at a pending request: refuse, nothing, or wait, from
/// the store alone; an unlink that cancels no walk-in is applied too when
/// it is the order's first unfinished request (`first`). A request whose
/// apply calls Zenchef is left to the order's lane.
async fn look(
    store: &Store,
    r: &LinkRequest,
    first: bool,
    health: &Health,
    restaurant_id: &str,
) -> Result<(), StoreError> {
    let r2 = r.clone();
    let d = store
        .read(move |c| Ok(decide(&r2, &facts(c, &r2)?)))
        .await?;
    match d {
        Decision::Refuse(m) => finish(store, r, LinkState::Refused, m).await,
        Decision::Nothing(m) => finish(store, r, LinkState::Done, m).await,
        Decision::Wait(m) => wait(store, r, m).await,
        Decision::Apply { cancel: None, .. } if first && r.booking_id.is_none() => {
            match write_decided(store, r, None).await? {
                None => Ok(()),
                Some(Decision::Apply { previous, .. }) => {
                    let sentence = applied_sentence(r, previous, None);
                    info!(
                        order_id = %r.order_id, booking_id = r.booking_id,
                        "manual link request #{} applied: {sentence}", r.id
                    );
                    Ok(())
                }
                Some(Decision::Refuse(m)) => finish(store, r, LinkState::Refused, m).await,
                Some(Decision::Nothing(m)) => finish(store, r, LinkState::Done, m).await,
                Some(Decision::Wait(m)) => wait(store, r, m).await,
            }
        }
        // Not taken by the lane yet, and the lane is paused: say why.
        Decision::Apply { cancel, .. }
            if r.result.is_none() && (r.booking_id.is_some() || cancel.is_some()) =>
        {
            match lane_paused(&health.snapshot().zenchef, restaurant_id) {
                Some(why) => wait(store, r, why).await,
                None => Ok(()),
            }
        }
        Decision::Apply { .. } => Ok(()),
    }
}

/// Why a request to apply waits when the Zenchef lane is paused (the
/// same sentences as [`waiting_on_zenchef`], with the lane's last error);
/// `None` when it is not.
fn lane_paused(h: &ApiHealth, restaurant_id: &str) -> Option<String> {
    // `last_error` is "<UTC time> <message>".
    let last = h.last_error.as_deref().unwrap_or_default();
    let last = last.split_once(' ').map_or(last, |(_, m)| m);
    if h.credentials_refused {
        Some(format!(
            "Zenchef refused the token for restaurant {restaurant_id} ({last}): check \
             zenchef.token and zenchef.restaurant_id; the link is applied once Zenchef accepts them"
        ))
    } else if h.outage {
        Some(format!(
            "Zenchef is unreachable ({last}); the link is applied as soon as it answers"
        ))
    } else {
        None
    }
}

/// Decides a pending request again and, when it applies, writes the link
/// (or clears it) and the request's new state (`done`, or `cancelling`
/// with the walk-in to cancel) in one store transaction. `words`: the
/// booking in a few words, for the sentence. `None`: the request was no
/// longer pending (another writer finished it); otherwise the decision,
/// whose non-apply outcomes the caller writes.
pub(crate) async fn write_decided(
    store: &Store,
    r: &LinkRequest,
    words: Option<String>,
) -> Result<Option<Decision>, StoreError> {
    let r = r.clone();
    store
        .write(move |c| {
            let f = facts(c, &r)?;
            let d = decide(&r, &f);
            if let Decision::Apply { previous, cancel } = &d {
                let sentence = applied_sentence(&r, *previous, words.as_deref());
                let state = if cancel.is_some() {
                    LinkState::Cancelling
                } else {
                    LinkState::Done
                };
                if !set_state_from(c, r.id, LinkState::Pending, state, &sentence, *cancel)? {
                    return Ok(None);
                }
                write_link(c, &r, &f)?;
            }
            Ok(Some(d))
        })
        .await
}

/// Records why a pending request waits (and says it in the journal) when
/// that is a new reason and the request is still pending.
pub(crate) async fn wait(store: &Store, r: &LinkRequest, why: String) -> Result<(), StoreError> {
    if r.result.as_deref() == Some(why.as_str()) {
        return Ok(());
    }
    let (id, why2) = (r.id, why.clone());
    let recorded = store
        .write(move |c| set_state_from(c, id, LinkState::Pending, LinkState::Pending, &why2, None))
        .await?;
    if recorded {
        info!(order_id = %r.order_id, booking_id = r.booking_id, "manual link request #{} waits: {why}", r.id);
    }
    Ok(())
}

/// Writes the outcome of a request still in its state `r.state`, and
/// says it in the journal (once: if another writer was first, nothing).
pub(crate) async fn finish(
    store: &Store,
    r: &LinkRequest,
    state: LinkState,
    sentence: String,
) -> Result<(), StoreError> {
    let (id, from, s2) = (r.id, r.state, sentence.clone());
    let written = store
        .write(move |c| set_state_from(c, id, from, state, &s2, None))
        .await?;
    if !written {
        return Ok(());
    }
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
    Ok(())
}

/// Why a request waits on Zenchef (the sentence the CLI prints).
pub(crate) fn waiting_on_zenchef(restaurant_id: &str, e: &CallError) -> String {
    match e.class {
        ErrorClass::Credentials => format!(
            "Zenchef refused the token for restaurant {} ({}): check zenchef.token and \
             zenchef.restaurant_id; the link is applied once Zenchef accepts them",
            restaurant_id, e.message
        ),
        _ => format!("Zenchef is unreachable ({e}); the link is applied as soon as it answers"),
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

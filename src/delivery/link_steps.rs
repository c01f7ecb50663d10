//! The Zenchef steps of manual links (sync-rules 4b) in the order's
//! Zenchef lane: after the order's deliverable events, each unfinished
//! link request of the order, oldest first, runs its calls like any other
//! step of the lane — a failure goes through [`classify`] (the lane's
//! outage probe, credentials pause, backoff and `Health`), and the
//! request's later steps and later requests of the order wait behind it.
//!
//! A pending request: the booking is read (`GET /bookings/{id}`: an
//! unknown or finished booking is refused), then the link is decided
//! again and written in one store transaction (`crate::links`); a request
//! whose order had a walk-in goes on to `cancelling`, and the walk-in is
//! cancelled (`changeStatus canceled`, `PublisherModelId link-<request
//! id>`: a retried call never acts twice). Decisions that need no call
//! (refuse, nothing to do, wait) are also the links task's; whoever writes
//! first logs the outcome.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tracing::{error, info, warn};

use super::{Deliverer, Failure, Outcome, classify};
use crate::links::{
    self, Decision, LinkRequest, LinkState, applied_sentence, booking_words, facts, finish,
    open_requests_of,
};
use crate::outbox::StoreError;
use crate::zenchef::client::ErrorClass;
use crate::zenchef::wire::BookingStatus;

/// Runs the link steps of `order`'s unfinished requests. `calls_ok`
/// counts the calls that succeeded. `Err`: the lane stops for the order
/// (the outcome for the scheduler).
pub async fn work(d: &Deliverer, order: &str, calls_ok: &mut usize) -> Result<(), Outcome> {
    let o = order.to_string();
    let requests = d
        .store
        .read(move |c| open_requests_of(c, &o))
        .await
        .map_err(|e| store_failed(d, e))?;
    for r in requests {
        let done = match r.state {
            LinkState::Cancelling => cancel_walkin(d, &r, calls_ok).await,
            _ => apply(d, &r, calls_ok).await,
        };
        done?;
    }
    Ok(())
}

fn store_failed(d: &Deliverer, e: StoreError) -> Outcome {
    classify(d, &Failure::Store(e), 0)
}

/// A pending request: decide, read the booking, decide again and write.
async fn apply(d: &Deliverer, r: &LinkRequest, calls_ok: &mut usize) -> Result<(), Outcome> {
    let fail_store = |e| store_failed(d, e);
    // 1. A first look, to refuse or wait without calling Zenchef.
    let r2 = r.clone();
    let first = d
        .store
        .read(move |c| Ok(links::decide(&r2, &facts(c, &r2)?)))
        .await
        .map_err(fail_store)?;
    match first {
        Decision::Refuse(m) => {
            return finish(&d.store, r, LinkState::Refused, m)
                .await
                .map_err(fail_store);
        }
        Decision::Nothing(m) => {
            return finish(&d.store, r, LinkState::Done, m)
                .await
                .map_err(fail_store);
        }
        Decision::Wait(m) => return links::wait(&d.store, r, m).await.map_err(fail_store),
        Decision::Apply { .. } => {}
    }
    // 2. The booking must exist in Zenchef (a typo must not link anything).
    let mut words = None;
    if let Some(b) = r.booking_id {
        match d.zenchef.booking(b).await {
            Ok(bk) => {
                d.health.zenchef_ok();
                *calls_ok += 1;
                if bk.status == BookingStatus::Over {
                    let m = format!(
                        "booking {b} is already finished (over) in Zenchef: choose the guests' current booking"
                    );
                    return finish(&d.store, r, LinkState::Refused, m)
                        .await
                        .map_err(fail_store);
                }
                words = Some(booking_words(&bk));
            }
            Err(e) if e.class == ErrorClass::Dead => {
                let m = format!(
                    "booking {b} does not exist in Zenchef for restaurant {} ({})",
                    d.zenchef.restaurant_id(),
                    e.message
                );
                return finish(&d.store, r, LinkState::Refused, m)
                    .await
                    .map_err(fail_store);
            }
            Err(e) => {
                let why = links::waiting_on_zenchef(d.zenchef.restaurant_id(), &e);
                links::wait(&d.store, r, why).await.map_err(fail_store)?;
                return Err(classify(d, &Failure::Zenchef(e), 0));
            }
        }
    }
    // 3. Decide again and write, atomically (only if still pending).
    let applied = links::write_decided(&d.store, r, words.clone())
        .await
        .map_err(fail_store)?;
    match applied {
        // Another writer finished it meanwhile.
        None => Ok(()),
        Some(Decision::Apply { previous, cancel }) => {
            let sentence = applied_sentence(r, previous, words.as_deref());
            info!(
                order_id = %r.order_id, booking_id = r.booking_id,
                "manual link request #{} applied: {sentence}", r.id
            );
            match cancel {
                Some(w) => {
                    let mut next = r.clone();
                    next.state = LinkState::Cancelling;
                    next.result = Some(sentence);
                    next.cancel_booking = Some(w);
                    cancel_walkin(d, &next, calls_ok).await
                }
                None => Ok(()),
            }
        }
        // Something changed between the two looks.
        Some(Decision::Refuse(m)) => finish(&d.store, r, LinkState::Refused, m)
            .await
            .map_err(fail_store),
        Some(Decision::Nothing(m)) => finish(&d.store, r, LinkState::Done, m)
            .await
            .map_err(fail_store),
        Some(Decision::Wait(m)) => links::wait(&d.store, r, m).await.map_err(fail_store),
    }
}

/// The last reason each cancelling request waits for, so that it is said
/// once in the journal (the lane's own WARN says each failed call).
fn cancel_waits() -> &'static Mutex<HashMap<i64, String>> {
    static WAITS: OnceLock<Mutex<HashMap<i64, String>>> = OnceLock::new();
    WAITS.get_or_init(Default::default)
}

/// Cancels the walk-in of a request in state `cancelling`.
async fn cancel_walkin(
    d: &Deliverer,
    r: &LinkRequest,
    calls_ok: &mut usize,
) -> Result<(), Outcome> {
    let fail_store = |e| store_failed(d, e);
    let base = r.result.clone().unwrap_or_default();
    let Some(w) = r.cancel_booking else {
        return finish(&d.store, r, LinkState::Done, base)
            .await
            .map_err(fail_store);
    };
    let result = d
        .zenchef
        .change_status(w, &BookingStatus::Canceled, &format!("link-{}", r.id))
        .await;
    if !matches!(&result, Err(e) if e.class != ErrorClass::Dead) {
        cancel_waits()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&r.id);
    }
    match result {
        Ok(_) => {
            d.health.zenchef_ok();
            *calls_ok += 1;
            let m =
                format!("{base}; the walk-in {w} created for this order was cancelled in Zenchef");
            finish(&d.store, r, LinkState::Done, m)
                .await
                .map_err(fail_store)
        }
        Err(e) if e.class == ErrorClass::Dead => {
            error!(
                order_id = %r.order_id, booking_id = w,
                "the walk-in {w} of order {} could NOT be cancelled in Zenchef ({}): cancel it by \
                 hand in Zenchef", r.order_id, e.message
            );
            let m = format!(
                "{base}; the walk-in {w} could NOT be cancelled in Zenchef ({}): cancel it by hand",
                e.message
            );
            finish(&d.store, r, LinkState::Done, m)
                .await
                .map_err(fail_store)
        }
        Err(e) => {
            let why = links::waiting_on_zenchef(d.zenchef.restaurant_id(), &e);
            let said = cancel_waits()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r.id, why.clone());
            if said.as_ref() != Some(&why) {
                warn!(
                    order_id = %r.order_id, booking_id = w,
                    "cancelling the walk-in {w} of order {} waits: {why}", r.order_id
                );
            }
            Err(classify(d, &Failure::Zenchef(e), 0))
        }
    }
}

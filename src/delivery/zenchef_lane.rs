//! The Zenchef lane of one order: its events in `seq` order, each one's
//! plan decided (and stored) before its first call, its calls made, then
//! the row marked done and the order's new state stored in one transaction
//! (docs/protocol/sync-rules.md, the event table and rules 4, 5, 10).

use chrono::{Duration as ChronoDuration, NaiveDate};
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::{Deliverer, Ended, Failure, classify};
use crate::outbox::queue::{self, State};
use crate::outbox::{self, OutboxItem};
use crate::pos::event::{self, EventData, PosEvent};
use crate::sync::{self, OrderState, Plan, Step, matching};
use crate::zenchef::client::{CallError, ErrorClass};
use crate::zenchef::wire::BookingStatus;

/// Walks the order's Zenchef lane until it is empty, dead or a call fails;
/// once no event can be delivered (none left, or the head is dead), runs
/// the steps of the order's manual links ([`super::link_steps`]).
pub async fn work_order(d: &Deliverer, order: &str) -> Ended {
    let mut calls_ok = 0;
    loop {
        let o = order.to_string();
        let item = match d
            .store
            .read(move |c| queue::next_pending(c, outbox::Lane::Zenchef, &o))
            .await
        {
            Ok(Some(item)) if item.state != State::Dead => item,
            // Nothing deliverable left: the order's manual links, whose
            // steps run in this lane too (after its events, in order).
            Ok(head) => {
                if let Err(outcome) = super::link_steps::work(d, order, &mut calls_ok).await {
                    return ended(calls_ok, outcome);
                }
                return match head {
                    Some(_) => ended(calls_ok, super::Outcome::Dead),
                    None => ended(calls_ok, super::Outcome::Idle),
                };
            }
            Err(e) => return ended(calls_ok, classify(d, &Failure::Store(e), 0)),
        };
        let span =
            info_span!("event", event_id = %item.event_id, seq = item.seq, kind = %item.event_type);
        if let Err(outcome) = deliver(d, item, &mut calls_ok).instrument(span).await {
            return ended(calls_ok, outcome);
        }
    }
}

fn ended(calls_ok: usize, outcome: super::Outcome) -> Ended {
    Ended { calls_ok, outcome }
}

/// Delivers one event: decide (or reload, or decide again) its plan, run
/// the remaining calls, complete. `calls_ok` counts the calls that
/// succeeded.
async fn deliver(
    d: &Deliverer,
    item: OutboxItem,
    calls_ok: &mut usize,
) -> Result<(), super::Outcome> {
    let ev = match event::parse(item.body.as_bytes()) {
        Ok(ev) => ev,
        Err(r) => {
            // Validated at intake; only an incompatible binary gets here.
            let msg = format!("stored event no longer parses: {}", r.reason);
            return Err(kill(d, &item, None, &msg).await);
        }
    };
    let order = load(d, &item.order_id).await?;
    let mut plan = match item.plan.clone() {
        None => decide(d, &item, &ev, order.as_ref(), None, calls_ok).await?,
        Some(p) => {
            let matched_gone = match (p.matched_booking, p.done) {
                (Some(b), 0) => d
                    .store
                    .read(move |c| outbox::orders::mirrored_status(c, b))
                    .await
                    .map_err(|e| fail_store(d, e))?
                    // Withdrawn statuses take a matched booking out of the
                    // candidates for good: the table.opened is matched again.
                    .is_some_and(|s| BookingStatus::from(s.as_str()).is_withdrawn()),
                _ => false,
            };
            if sync::must_redecide(&p, order.as_ref(), item.replan, matched_gone) {
                info!(
                    revision = p.revision + 1,
                    "deciding again the Zenchef calls not made yet: the order changed since they \
                     were decided"
                );
                decide(d, &item, &ev, order.as_ref(), Some(&p), calls_ok).await?
            } else {
                p
            }
        }
    };
    for i in plan.done..plan.steps.len() {
        let step = plan.steps[i].clone();
        match run_step(d, &plan, &step).await {
            Ok(created) => {
                d.health.zenchef_ok();
                *calls_ok += 1;
                plan.done = i + 1;
                if let Some(id) = created {
                    plan.created_booking = Some(id);
                    // The order has its booking from now on, whatever
                    // comes next (a late table.opened, a manual link).
                    plan.basis = Some(sync::Basis {
                        booking_id: Some(id),
                        link: Some(sync::Link::Walkin),
                    });
                }
                if plan.done < plan.steps.len() || created.is_some() {
                    let (id, p, o) = (item.id, plan.clone(), item.order_id.clone());
                    let table = table_of(&ev);
                    d.store
                        .write(move |c| {
                            if let Some(b) = created {
                                outbox::link_walkin(c, &o, &table, b)?;
                            }
                            queue::save_plan(c, id, &p)
                        })
                        .await
                        .map_err(|e| fail_store(d, e))?;
                }
            }
            Err(e) => return Err(fail(d, &item, &plan, Failure::Zenchef(e)).await),
        }
    }
    // The walk-in link written above is also in the plan (`created_booking`,
    // `link`): `apply` gives the same state without reading the order again
    // (no manual link can land meanwhile: this lane applies them, after the
    // order's deliverable events).
    let new_state = sync::apply(&ev, order, &plan);
    let booking = new_state.as_ref().and_then(|o| o.booking_id);
    let calls = plan.steps.len();
    let (id, p) = (item.id, plan);
    d.store
        .write(move |c| queue::complete(c, id, &p, new_state.as_ref()))
        .await
        .map_err(|e| fail_store(d, e))?;
    if calls > 0 {
        info!(
            booking_id = booking,
            "delivered to Zenchef ({calls} call(s))"
        );
        d.nudge_poller.notify_one();
    } else {
        debug!("recorded (nothing to send to Zenchef)");
    }
    Ok(())
}

async fn load(d: &Deliverer, order_id: &str) -> Result<Option<OrderState>, super::Outcome> {
    let o = order_id.to_string();
    d.store
        .read(move |c| outbox::load_order(c, &o))
        .await
        .map_err(|e| fail_store(d, e))
}

fn fail_store(d: &Deliverer, e: crate::outbox::StoreError) -> super::Outcome {
    classify(d, &Failure::Store(e), 0)
}

/// The table an event names (for the order row a walk-in creates).
fn table_of(ev: &PosEvent) -> String {
    match &ev.data {
        EventData::TableOpened(d) => d.table.to_string(),
        EventData::BillPaid(d) => d.table.to_string(),
        _ => String::new(),
    }
}

/// Decides the plan of an event (again, when `old` is given: the steps it
/// made stay) and stores it before any call.
async fn decide(
    d: &Deliverer,
    item: &OutboxItem,
    ev: &PosEvent,
    order: Option<&OrderState>,
    old: Option<&Plan>,
    calls_ok: &mut usize,
) -> Result<Plan, super::Outcome> {
    let revision = old.map_or(0, |p| p.revision + 1);
    let make = |order: Option<&OrderState>, matched: Option<i64>, ctx: &sync::Ctx| match old {
        Some(p) => sync::redecide(p, ev, order, matched, ctx),
        None => sync::plan(ev, order, matched, ctx, revision),
    };
    if !sync::needs_match(ev, order) {
        let plan = make(order, None, &d.ctx);
        if !plan.steps.is_empty() || old.is_some() {
            let (id, p) = (item.id, plan.clone());
            d.store
                .write(move |c| queue::save_plan(c, id, &p))
                .await
                .map_err(|e| fail_store(d, e))?;
        }
        return Ok(plan);
    }
    let EventData::TableOpened(opened) = &ev.data else {
        unreachable!("needs_match is only true for table.opened")
    };
    let candidates = candidates_around(d, item, old, opened, calls_ok).await?;
    // Choose and store atomically (the store thread is serial), so two
    // orders opened at once never take the same booking.
    let (ctx, window, table, id) = (d.ctx.clone(), d.window, opened.table.to_string(), item.id);
    let at = opened.opened_at.0;
    let order2 = order.cloned();
    let old2 = old.cloned();
    let ev2 = ev.clone();
    let (plan, outcome) = d
        .store
        .write(move |c| {
            // This order's own earlier choice is no longer taken by it.
            let mine = old2.as_ref().and_then(|p| p.matched_booking);
            let linked: Vec<i64> = outbox::linked_open_bookings(c)?
                .into_iter()
                .filter(|b| Some(*b) != mine)
                .collect();
            let outcome = matching::choose(&candidates, &table, at, ctx.tz, window, &linked);
            let plan = match &old2 {
                Some(p) => sync::redecide(p, &ev2, order2.as_ref(), outcome.chosen, &ctx),
                None => sync::plan(&ev2, order2.as_ref(), outcome.chosen, &ctx, 0),
            };
            queue::save_plan(c, id, &plan)?;
            Ok((plan, outcome))
        })
        .await
        .map_err(|e| fail_store(d, e))?;
    say_match(&opened.table.to_string(), &outcome);
    Ok(plan)
}

/// The bookings of every day the matching window around `opened` touches
/// (restaurant local time), as matching candidates. Each day read counts
/// as a call that went through.
async fn candidates_around(
    d: &Deliverer,
    item: &OutboxItem,
    old: Option<&Plan>,
    opened: &event::TableOpened,
    calls_ok: &mut usize,
) -> Result<Vec<matching::Candidate>, super::Outcome> {
    let local = opened.opened_at.0.with_timezone(&d.ctx.tz).naive_local();
    let first = (local - ChronoDuration::minutes(d.window.before_min)).date();
    let last = (local + ChronoDuration::minutes(d.window.after_min)).date();
    let mut candidates = Vec::new();
    let mut day: NaiveDate = first;
    loop {
        let bookings = match d.zenchef.bookings_of_day(day).await {
            Ok(b) => {
                *calls_ok += 1;
                b
            }
            Err(e) => {
                let p = old.cloned().unwrap_or_default();
                return Err(fail(d, item, &p, Failure::Zenchef(e)).await);
            }
        };
        candidates.extend(bookings.into_iter().filter_map(|b| {
            let (day, time) = b.local_datetime()?;
            Some(matching::Candidate {
                id: b.id,
                day,
                time,
                status: b.status.clone(),
                tables: b.tables.iter().map(|t| t.name.clone()).collect(),
            })
        }));
        match day.succ_opt() {
            Some(next) if next <= last => day = next,
            _ => break,
        }
    }
    Ok(candidates)
}

/// Says what matching chose for `table`, and each near-miss (a WARN: the
/// names differ only by case or spaces, and are not matched).
fn say_match(table: &str, outcome: &matching::MatchOutcome) {
    for (b, name) in &outcome.near_misses {
        warn!(
            booking_id = b,
            "booking {b} is on table \"{name}\", which differs from the POS table \"{}\" only by \
             case or spaces: NOT matched (table names must be identical in the POS and in Zenchef)",
            table
        );
    }
    match outcome.chosen {
        Some(b) if !outcome.others.is_empty() => info!(
            booking_id = b,
            "table {} matched booking {b} (other candidates: {:?})", table, outcome.others
        ),
        Some(b) => info!(booking_id = b, "table {} matched booking {b}", table),
        None => info!(
            "no reservation matches table {}: a walk-in will be created",
            table
        ),
    }
}

/// Runs one call; answers the created booking id for a walk-in.
async fn run_step(d: &Deliverer, plan: &Plan, step: &Step) -> Result<Option<i64>, CallError> {
    let unresolved = || CallError {
        class: ErrorClass::Dead,
        status: None,
        what: "plan".into(),
        message: "a step refers to a walk-in that was not created".into(),
    };
    match step {
        Step::ChangeStatus {
            booking,
            status,
            key,
        } => {
            let id = plan.resolve(booking).ok_or_else(unresolved)?;
            d.zenchef.change_status(id, status, key).await?;
            info!(booking_id = id, "booking {id} is now {status}");
            Ok(None)
        }
        Step::CreateWalkin { body, key } => {
            let id = d.zenchef.create_walkin(body, key).await?;
            info!(booking_id = id, "walk-in created as booking {id}");
            Ok(Some(id))
        }
        Step::PosTicket { booking, body, key } => {
            let id = plan.resolve(booking).ok_or_else(unresolved)?;
            d.zenchef.put_pos_ticket(id, body, key).await?;
            info!(booking_id = id, "ticket attached to booking {id}");
            Ok(None)
        }
    }
}

/// Records a failed call on the row and says how the worker ends.
async fn fail(d: &Deliverer, item: &OutboxItem, plan: &Plan, f: Failure) -> super::Outcome {
    let outcome = classify(d, &f, item.attempts + 1);
    let plan = (!plan.steps.is_empty()).then(|| plan.clone());
    let msg = f.to_string();
    match outcome {
        super::Outcome::Dead => kill(d, item, plan, &msg).await,
        super::Outcome::Store => outcome,
        _ => {
            let id = item.id;
            let _ = d
                .store
                .write(move |c| queue::record_failure(c, id, plan.as_ref(), &msg, false))
                .await;
            outcome
        }
    }
}

/// Parks an event as a dead letter of the Zenchef lane.
async fn kill(d: &Deliverer, item: &OutboxItem, plan: Option<Plan>, msg: &str) -> super::Outcome {
    error!(
        message_id = crate::message_ids::DEAD_LETTER,
        "event {} of order {} is a dead letter: {msg}. Later Zenchef calls of this order wait \
         behind it (its Zenchef Pay check does not); other orders continue. Fix the cause, then \
         `zenchef-edge outbox retry {}`",
        item.event_id,
        item.order_id,
        item.event_id
    );
    let (id, m) = (item.id, msg.to_string());
    match d
        .store
        .write(move |c| queue::record_failure(c, id, plan.as_ref(), &m, true))
        .await
    {
        Ok(()) => super::Outcome::Dead,
        Err(e) => fail_store(d, e),
    }
}

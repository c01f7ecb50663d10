//! Delivery: per-order FIFO queues, different orders in parallel
//! (sync-rules.md rules 5 and 8; ARCHITECTURE.md "dispatcher").
//!
//! One worker task per order at a time walks that order's events in `seq`
//! order: decide the plan (stored before the first call), run its calls,
//! then mark the event done and store the new order state in one
//! transaction. Up to `delivery.concurrency` orders run at once.
//!
//! Failures follow zenchef-api.md § Errors:
//! - retry class (outage, 5xx, timeout, 429): the order backs off
//!   (capped exponential with jitter, or the server's `Retry-After`), and the
//!   whole dispatcher enters *outage* mode — one probe at a time at the
//!   backoff pace — until a call succeeds, so a down Zenchef is not hammered
//!   by every order at once and recovery is noticed by the first probe;
//! - dead class (other 4xx): the event becomes a dead letter with the
//!   answer's message; its order's later events wait behind it (their
//!   meaning depends on it) while other orders keep flowing;
//! - credentials (401/403): every delivery pauses for
//!   `delivery.credentials_retry_s`, then one probe; nothing is dropped;
//! - store errors (a full disk): the order backs off and is retried; one
//!   WARN a minute at most; Zenchef is not flagged (a call already made is
//!   replayed with its idempotency key).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDate};
use rand::RngExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::{OutboxItem, Store, StoreError};
use crate::config::DeliveryConfig;
use crate::health::Health;
use crate::pay::client::PayClient;
use crate::pos::event::{self, EventData};
use crate::pos::session::PosLink;
use crate::sync::{self, Ctx, Plan, Step, matching};
use crate::zenchef::client::{CallError, ErrorClass, ZenchefClient};

/// How often the dispatcher checks whether another process (the CLI's
/// `outbox retry`) committed to the store, and if so rescans it for ready
/// orders. The check is `PRAGMA data_version` (free); the scan reads the
/// whole queue (150 ms for 100,000 queued rows, during which the store
/// thread serves nobody), so it runs only when needed. Also the longest gap
/// between two systemd watchdog pings of an idle agent: the unit's
/// `WatchdogSec=` must stay well above it (tests/packaging.rs checks).
pub const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// A full rescan even without outside commits: a safety net for work that
/// reached the queue without a `touched` message.
const FULL_RESCAN_EVERY: Duration = Duration::from_secs(300);
/// First retry delay.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Bound on waiting for in-flight calls at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// At most one WARN per this period about store errors during delivery
/// (a full disk fails every order's every try; intake reports it too).
const STORE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Everything a worker needs.
#[derive(Clone)]
pub struct Deliverer {
    /// The store.
    pub store: Store,
    /// Zenchef client.
    pub zenchef: ZenchefClient,
    /// Rules context.
    pub ctx: Ctx,
    /// Matching window.
    pub window: matching::Window,
    /// Tuning.
    pub cfg: DeliveryConfig,
    /// Health record.
    pub health: Health,
    /// Wakes the reservation poller after a forwarded event (sync-rules 1).
    pub nudge_poller: Arc<Notify>,
    /// Zenchef Pay client (`None` when Pay is disabled).
    pub pay: Option<PayClient>,
    /// `cashpad.installation_id` when configured (else from discovery).
    pub configured_iid: Option<String>,
    /// The POS session (its Installation ID names the Pay paths).
    pub link: PosLink,
    /// Wakes the Pay poller (a check was opened: poll every 5 s).
    pub wake_pay: Arc<Notify>,
}

/// How a worker stopped.
#[derive(Debug)]
enum End {
    /// No more ready events.
    Idle,
    /// Head is a dead letter.
    Dead,
    /// Retry later (server's wait if any).
    Retry {
        /// The server's `Retry-After`.
        after: Option<Duration>,
        /// A Zenchef failure: the whole dispatcher backs off (outage mode).
        /// A Zenchef Pay one only holds its order.
        global: bool,
    },
    /// The store could not be read or written (disk full, I/O error): this
    /// order backs off; it says nothing about Zenchef.
    Store(String),
    /// Credentials refused (`global` as above).
    Credentials {
        /// Zenchef (pause every delivery) or Zenchef Pay (this order).
        global: bool,
    },
}

struct WorkerResult {
    /// Zenchef calls that succeeded. Only these prove Zenchef reachable:
    /// events that need no call (items, moves, partial payments, voids) are
    /// completed during an outage too and must neither end the outage mode
    /// nor mark Zenchef healthy in `status`.
    calls_ok: usize,
    end: End,
}

/// Runs the dispatcher until `cancel`. `touched` brings order ids that got
/// new events (from intake) or were retried.
pub async fn run(
    d: Deliverer,
    mut touched: mpsc::UnboundedReceiver<String>,
    cancel: CancellationToken,
) {
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    let mut inflight: HashSet<String> = HashSet::new();
    let mut backoff: HashMap<String, (Instant, u32)> = HashMap::new();
    // Outage / rate limit / credentials: (next probe, consecutive failures).
    let mut global: Option<(Instant, u32)> = None;
    let mut workers: JoinSet<(String, WorkerResult)> = JoinSet::new();
    let mut next_rescan = Instant::now();
    // Store errors since the last WARN about them, and when that was.
    let mut store_failures: u64 = 0;
    let mut store_warned: Option<Instant> = None;
    // Whether the last rescan got an answer from the store thread.
    let mut store_answers = false;
    let mut next_full_rescan = Instant::now();
    // `PRAGMA data_version` at the last scan (`None`: never scanned).
    let mut scanned_version: Option<i64> = None;

    loop {
        let now = Instant::now();
        if now >= next_rescan {
            let (last, full) = (scanned_version, now >= next_full_rescan);
            let scan = d.store.read(move |c| {
                let version: i64 = c.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                let orders = if full || last != Some(version) {
                    Some(super::ready_orders(c)?)
                } else {
                    None
                };
                Ok((version, orders))
            });
            match scan.await {
                Ok((version, orders)) => {
                    scanned_version = Some(version);
                    store_answers = true;
                    if let Some(orders) = orders {
                        debug!("outbox rescanned: {} order(s) ready", orders.len());
                        candidates.extend(orders);
                        next_full_rescan = now + FULL_RESCAN_EVERY;
                    }
                }
                Err(e) => {
                    warn!("cannot scan the outbox: {e}");
                    store_answers = false;
                }
            }
            next_rescan = now + RESCAN_EVERY;
        }
        // systemd watchdog: this loop wakes at least every RESCAN_EVERY, even
        // when the POS is quiet, and its rescan is a round trip through the
        // store thread's transaction. A ping here therefore proves that the
        // delivery loop turns and the store commits; a wedged store (or
        // loop) stops the pings and systemd restarts the agent.
        if store_answers {
            crate::watchdog_ping();
        }
        // Start workers.
        let limit = match global {
            Some((at, _)) if now < at => 0,
            Some(_) => 1, // one probe while in outage
            None => d.cfg.concurrency,
        };
        let ready: Vec<String> = candidates
            .iter()
            .filter(|o| !inflight.contains(*o))
            .filter(|o| backoff.get(*o).is_none_or(|(t, _)| *t <= now))
            .take(limit.saturating_sub(inflight.len()))
            .cloned()
            .collect();
        for order in ready {
            candidates.remove(&order);
            inflight.insert(order.clone());
            let d2 = d.clone();
            let span = info_span!("order", order_id = %order);
            workers.spawn(
                async move {
                    let r = work_order(&d2, &order).await;
                    (order, r)
                }
                .instrument(span),
            );
        }
        // Next timer: a backoff expiry, the global probe, or the rescan.
        // Only moments still ahead: a moment already past changes nothing
        // until a worker ends or an order is touched (the other branches of
        // the select); waking for it would spin the loop, e.g. during an
        // outage while orders whose own backoff ran out wait for the next
        // global probe. `backoff` holds only orders that failed, so this
        // stays cheap however large the backlog.
        let mut wake = next_rescan;
        if let Some((t, _)) = global
            && t > now
        {
            wake = wake.min(t);
        }
        for (o, (t, _)) in &backoff {
            if *t > now && candidates.contains(o) {
                wake = wake.min(*t);
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(joined) = workers.join_next(), if !workers.is_empty() => {
                let (order, r) = match joined {
                    Ok(x) => x,
                    Err(e) => {
                        error!("a delivery task failed: {e}");
                        continue;
                    }
                };
                inflight.remove(&order);
                if r.calls_ok > 0 {
                    global = None;
                }
                match r.end {
                    End::Idle => {
                        backoff.remove(&order);
                    }
                    End::Dead => {
                        backoff.remove(&order);
                    }
                    End::Retry { after, global: all } => {
                        // The server's wait when it gave one; a zero or past
                        // `Retry-After` falls back to the growing backoff
                        // (never an immediate retry: no hot loop).
                        let after = after.filter(|a| !a.is_zero());
                        let n = backoff.get(&order).map_or(0, |(_, n)| *n) + 1;
                        let wait = after.unwrap_or_else(|| jittered(BACKOFF_BASE, n, d.cfg.retry_max));
                        backoff.insert(order.clone(), (Instant::now() + wait, n));
                        if all {
                            let g = global.map_or(0, |(_, n)| n) + 1;
                            let gwait = after.unwrap_or_else(|| jittered(BACKOFF_BASE, g, d.cfg.retry_max));
                            global = Some((Instant::now() + gwait, g));
                        }
                        candidates.insert(order);
                    }
                    End::Store(msg) => {
                        // Growing per-order backoff; no outage mode and no
                        // Zenchef error in status: Zenchef is not the problem.
                        let n = backoff.get(&order).map_or(0, |(_, n)| *n) + 1;
                        let wait = jittered(BACKOFF_BASE, n, d.cfg.retry_max);
                        backoff.insert(order.clone(), (Instant::now() + wait, n));
                        candidates.insert(order);
                        store_failures += 1;
                        if store_warned.is_none_or(|t| t.elapsed() >= STORE_WARN_EVERY) {
                            warn!(
                                "cannot read or write the store during delivery ({msg}); \
                                 {store_failures} failed tr(ies) since the last report; \
                                 deliveries wait and are retried (next report in a minute at most)"
                            );
                            store_warned = Some(Instant::now());
                            store_failures = 0;
                        }
                    }
                    End::Credentials { global: all } => {
                        if all {
                            let g = global.map_or(0, |(_, n)| n) + 1;
                            global = Some((Instant::now() + d.cfg.credentials_retry, g));
                        } else {
                            let n = backoff.get(&order).map_or(0, |(_, n)| *n) + 1;
                            backoff.insert(order.clone(), (Instant::now() + d.cfg.credentials_retry, n));
                        }
                        candidates.insert(order);
                    }
                }
            }
            Some(o) = touched.recv() => {
                candidates.insert(o);
                while let Ok(o) = touched.try_recv() {
                    candidates.insert(o);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    // Shutdown: let in-flight calls finish, bounded.
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    while !workers.is_empty() {
        tokio::select! {
            _ = &mut grace => {
                warn!("{} delivery task(s) still running at shutdown: abandoned (they are retried at next start)", workers.len());
                workers.abort_all();
                break;
            }
            _ = workers.join_next() => {}
        }
    }
    info!("dispatcher stopped");
}

/// `base · 2^(n−1)`, capped, with ±20 % jitter.
fn jittered(base: Duration, n: u32, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << n.saturating_sub(1).min(16));
    let d = exp.min(cap);
    let f: f64 = rand::rng().random_range(0.8..1.2);
    d.mul_f64(f).min(cap)
}

async fn work_order(d: &Deliverer, order: &str) -> WorkerResult {
    let mut calls_ok = 0;
    loop {
        let o = order.to_string();
        let item = match d.store.read(move |c| super::next_pending(c, &o)).await {
            Ok(Some(item)) => item,
            Ok(None) => {
                return WorkerResult {
                    calls_ok,
                    end: End::Idle,
                };
            }
            Err(e) => {
                return WorkerResult {
                    calls_ok,
                    end: store_end(e),
                };
            }
        };
        if item.state == "dead" {
            return WorkerResult {
                calls_ok,
                end: End::Dead,
            };
        }
        let span =
            info_span!("event", event_id = %item.event_id, seq = item.seq, kind = %item.event_type);
        match deliver(d, item, &mut calls_ok).instrument(span).await {
            Ok(()) => {}
            Err(end) => {
                return WorkerResult { calls_ok, end };
            }
        }
    }
}

/// Delivers one event: decide (or reload) its plan, run the remaining
/// calls, complete. `calls_ok` counts the Zenchef calls that succeeded.
async fn deliver(d: &Deliverer, item: OutboxItem, calls_ok: &mut usize) -> Result<(), End> {
    let ev = match event::parse(item.body.as_bytes()) {
        Ok(ev) => ev,
        Err(r) => {
            // Validated at intake; only an incompatible binary gets here.
            return Err(kill(
                d,
                &item,
                None,
                &format!("stored event no longer parses: {}", r.reason),
            )
            .await);
        }
    };
    let order_id = item.order_id.clone();
    let order = {
        let o = order_id.clone();
        d.store
            .read(move |c| super::load_order(c, &o))
            .await
            .map_err(store_end)?
    };
    let mut plan = match item.plan.clone() {
        Some(p) => p,
        None => decide(d, &item, &ev, order.as_ref(), calls_ok).await?,
    };
    for i in plan.done..plan.steps.len() {
        let step = plan.steps[i].clone();
        if let Step::PutCheck { order_id, .. } = &step {
            // A later event of this order pushes the whole check again:
            // skip this version (after an outage, only the latest goes).
            let (o, seq) = (order_id.clone(), item.seq);
            if d.store
                .read(move |c| super::later_pending(c, &o, seq))
                .await
                .unwrap_or(false)
            {
                debug!("check push skipped: a later event of the order carries a newer version");
                plan.done = i + 1;
                continue;
            }
        }
        match run_step(d, &plan, &step).await {
            Ok(created) => {
                if step.is_pay() {
                    d.health.update(|s| {
                        s.pay.last_success = Some(crate::outbox::now_utc());
                        s.pay.credentials_refused = false;
                        s.pay.outage = false;
                    });
                } else {
                    d.health.zenchef_ok();
                }
                if !step.is_pay() {
                    // Only a Zenchef call ends a Zenchef outage.
                    *calls_ok += 1;
                }
                if let Some(id) = created {
                    plan.created_booking = Some(id);
                }
                plan.done = i + 1;
                if plan.done < plan.steps.len() {
                    let (id, p) = (item.id, plan.clone());
                    d.store
                        .write(move |c| super::save_plan(c, id, &p))
                        .await
                        .map_err(store_end)?;
                }
            }
            Err(e) => return Err(fail(d, &item, &plan, e).await),
        }
    }
    let new_state = sync::apply(&ev, order, &plan);
    let booking = new_state.as_ref().and_then(|o| o.booking_id);
    let calls = plan.steps.len();
    let (id, p) = (item.id, plan);
    d.store
        .write(move |c| super::complete(c, id, &p, new_state.as_ref()))
        .await
        .map_err(store_end)?;
    if calls > 0 {
        info!(booking_id = booking, "delivered ({calls} call(s))");
        d.nudge_poller.notify_one();
    } else {
        debug!("recorded (nothing to send to Zenchef)");
    }
    Ok(())
}

/// Decides the plan of an event and stores it before any call.
async fn decide(
    d: &Deliverer,
    item: &OutboxItem,
    ev: &event::PosEvent,
    order: Option<&sync::OrderState>,
    calls_ok: &mut usize,
) -> Result<Plan, End> {
    if !sync::needs_match(ev, order) {
        let plan = sync::plan(ev, order, None, &d.ctx);
        if !plan.steps.is_empty() {
            let (id, p) = (item.id, plan.clone());
            d.store
                .write(move |c| super::save_plan(c, id, &p))
                .await
                .map_err(store_end)?;
        }
        return Ok(plan);
    }
    let EventData::TableOpened(opened) = &ev.data else {
        unreachable!("needs_match is only true for table.opened")
    };
    // Bookings of every day the window touches (restaurant local time).
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
            Err(e) => return Err(fail(d, item, &Plan::default(), e).await),
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
    // Choose and store atomically (the store thread is serial), so two
    // orders opened at once never take the same booking.
    let (ctx, window, table, id) = (d.ctx.clone(), d.window, opened.table.to_string(), item.id);
    let ev2 = ev.clone();
    let order2 = order.cloned();
    let (plan, outcome) = d
        .store
        .write(move |c| {
            let linked = super::linked_open_bookings(c)?;
            let outcome = matching::choose(&candidates, &table, local, window, &linked);
            let plan = sync::plan(&ev2, order2.as_ref(), outcome.chosen, &ctx);
            super::save_plan(c, id, &plan)?;
            Ok((plan, outcome))
        })
        .await
        .map_err(store_end)?;
    for (b, name) in &outcome.near_misses {
        warn!(
            booking_id = b,
            "booking {b} is on table \"{name}\", which differs from the POS table \"{}\" only by \
             case or spaces: NOT matched (table names must be identical in the POS and in Zenchef)",
            opened.table
        );
    }
    match outcome.chosen {
        Some(b) if !outcome.others.is_empty() => info!(
            booking_id = b,
            "table {} matched booking {b} (other candidates: {:?})", opened.table, outcome.others
        ),
        Some(b) => info!(booking_id = b, "table {} matched booking {b}", opened.table),
        None => info!(
            "no reservation matches table {}: a walk-in will be created",
            opened.table
        ),
    }
    Ok(plan)
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
        Step::PutCheck { order_id, body } => {
            let (pay, iid) = pay_target(d)?;
            pay.put_check(&iid, order_id, body).await?;
            let store = d.store.clone();
            let _ = store
                .write(|c| super::bump(c, "pay_checks_pushed", 1))
                .await;
            info!(
                "Zenchef Pay check {} (version {}, total {} cents, paid {} cents)",
                body["status"].as_str().unwrap_or("?"),
                body["version"],
                body["total_cents"],
                body["paid_cents"]
            );
            if body["status"] == "open" {
                d.wake_pay.notify_one();
            }
            Ok(None)
        }
        Step::AckSettled { payment_id } => {
            let (pay, iid) = pay_target(d)?;
            let id = payment_id.clone();
            if d.store
                .read(move |c| crate::pay::is_settled(c, &id))
                .await
                .unwrap_or(false)
            {
                debug!(payment_id = %payment_id, "payment already acknowledged as settled");
                return Ok(None);
            }
            pay.ack(&iid, payment_id, None).await?;
            let id = payment_id.clone();
            let _ = d
                .store
                .write(move |c| crate::pay::mark_settled(c, &id))
                .await;
            info!(payment_id = %payment_id, "Zenchef Pay payment {payment_id} settled in the POS and acknowledged");
            Ok(None)
        }
    }
}

/// The Pay client and the Installation ID, or a retryable error while the
/// POS (hence the Installation ID) is not known yet.
fn pay_target(d: &Deliverer) -> Result<(PayClient, String), CallError> {
    let pay = d.pay.clone().ok_or_else(|| CallError {
        class: ErrorClass::Dead,
        status: None,
        what: "Zenchef Pay".into(),
        message: "Zenchef Pay is disabled in the configuration".into(),
    })?;
    let iid = d
        .configured_iid
        .clone()
        .or_else(|| d.link.iid())
        .ok_or_else(|| CallError {
            class: ErrorClass::Retry {
                after: Some(Duration::from_secs(2)),
            },
            status: None,
            what: "Zenchef Pay".into(),
            message: "the Cashpad Installation ID is not known yet (POS not found)".into(),
        })?;
    Ok((pay, iid))
}

/// Records a failed call and says how the worker ends. Zenchef Pay
/// failures (`what` starts with "Zenchef Pay") go to the Pay health record
/// and hold only their order.
async fn fail(d: &Deliverer, item: &OutboxItem, plan: &Plan, e: CallError) -> End {
    let msg = e.to_string();
    let is_pay = e.what.starts_with("Zenchef Pay");
    let plan = (!plan.steps.is_empty()).then(|| plan.clone());
    let record = |plan: Option<Plan>, m: String| {
        let id = item.id;
        d.store
            .write(move |c| super::record_failure(c, id, plan.as_ref(), &m, false))
    };
    match e.class {
        ErrorClass::Dead => kill(d, item, plan, &msg).await,
        ErrorClass::Retry { after } => {
            let api = if is_pay { "Zenchef Pay" } else { "Zenchef" };
            d.health.update(|s| {
                let h = if is_pay { &mut s.pay } else { &mut s.zenchef };
                h.last_error = Some(format!("{} {msg}", crate::outbox::now_utc()));
                h.outage = true;
            });
            warn!(
                attempt = item.attempts + 1,
                "{api} call failed, will retry: {msg}"
            );
            let _ = record(plan, msg.clone()).await;
            End::Retry {
                after,
                global: !is_pay,
            }
        }
        ErrorClass::Credentials => {
            d.health.update(|s| {
                let h = if is_pay { &mut s.pay } else { &mut s.zenchef };
                h.last_error = Some(format!("{} {msg}", crate::outbox::now_utc()));
                h.credentials_refused = true;
            });
            if is_pay {
                error!(
                    "Zenchef Pay refused the token ({msg}): check zenchef_pay.token in the \
                     configuration file; this order's bill waits, nothing is lost"
                );
            } else {
                error!(
                    "Zenchef refused the credentials for restaurant {} ({msg}): check zenchef.token \
                     and zenchef.restaurant_id in the configuration file; deliveries are paused, \
                     nothing is lost",
                    d.zenchef.restaurant_id()
                );
            }
            let _ = record(plan, msg.clone()).await;
            End::Credentials { global: !is_pay }
        }
    }
}

/// Parks an event as a dead letter.
async fn kill(d: &Deliverer, item: &OutboxItem, plan: Option<Plan>, msg: &str) -> End {
    error!(
        "event {} of order {} is a dead letter: {msg}. Later events of this order wait behind it; \
         other orders continue. Fix the cause, then `zenchef-edge outbox retry {}`",
        item.event_id, item.order_id, item.event_id
    );
    let (id, m) = (item.id, msg.to_string());
    match d
        .store
        .write(move |c| super::record_failure(c, id, plan.as_ref(), &m, true))
        .await
    {
        Ok(()) => End::Dead,
        Err(e) => store_end(e),
    }
}

/// A store error ends the worker; the dispatcher backs the order off and
/// reports store errors at most once a minute.
fn store_end(e: StoreError) -> End {
    End::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        let d1 = jittered(BACKOFF_BASE, 1, cap);
        assert!(
            d1 >= Duration::from_millis(400) && d1 <= Duration::from_millis(600),
            "{d1:?}"
        );
        let d5 = jittered(BACKOFF_BASE, 5, cap);
        assert!(
            d5 >= Duration::from_millis(6400) && d5 <= Duration::from_millis(9600),
            "{d5:?}"
        );
        for n in [10, 20, 40, 1000] {
            assert!(jittered(BACKOFF_BASE, n, cap) <= cap);
        }
    }
}

//! Delivery: each stored event of an order goes down **two lanes**, one to
//! Zenchef (reservations) and one to Zenchef Pay (the check), each in `seq`
//! order per order and independent of the other (sync rule 5); different
//! orders run in parallel (rule 8).
//!
//! - [`scheduler`] (pure) decides which lane of which order runs next, the
//!   backoff, and each lane's outage and credentials pause.
//! - [`zenchef_lane`] walks an order's events for Zenchef: decide the plan
//!   (stored before the first call), run its calls, then mark the row done
//!   and store the order's new state in one transaction.
//! - [`link_steps`] runs the Zenchef calls of an order's manual links
//!   (sync rule 4b) in its Zenchef lane, after its deliverable events.
//! - [`pay_lane`] pushes an order's check to Zenchef Pay from the order's
//!   truth (every stored event), so a late event never reopens a bill.
//!
//! Failures are typed ([`Failure`]) and classified as in
//! docs/protocol/zenchef-api.md, errors: retry class (5xx, timeout,
//! connection, 429) → the lane's outage mode; dead class (other 4xx) → the
//! row becomes a dead letter of that lane, holding back only that order's
//! later rows in that lane; credentials (401/403) → the lane pauses; store
//! errors (a full disk) → the order backs off, one WARN a minute at most.
//!
//! Zenchef Pay payments (settle commands, acks) are not delivered here but
//! by `crate::pay`, which shares nothing with the Zenchef lane either.

pub mod link_steps;
pub mod pay_lane;
pub mod scheduler;
pub mod zenchef_lane;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::DeliveryConfig;
use crate::health::Health;
use crate::outbox::{Lane, Store, StoreError, queue};
use crate::pay::client::PayClient;
use crate::pos::session::PosLink;
use crate::sync::{Ctx, matching};
use crate::zenchef::client::{CallError, ErrorClass, ZenchefClient};
use scheduler::{Outcome, Scheduler, Tuning};

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

/// Why a lane worker could not go on. Each variant is its cause, shown as
/// it (`transparent`: the cause is not repeated in an error chain).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A Zenchef call failed.
    #[error(transparent)]
    Zenchef(CallError),
    /// A Zenchef Pay call failed.
    #[error(transparent)]
    Pay(CallError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Everything a lane worker needs. Cheap to clone.
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
    /// Wakes the reservation poller after a forwarded event (sync rule 1).
    pub nudge_poller: Arc<Notify>,
    /// Zenchef Pay client (`None` when Pay is disabled).
    pub pay: Option<PayClient>,
    /// `cashpad.installation_id` when configured (else from discovery).
    pub configured_iid: Option<String>,
    /// The POS session (its Installation ID names the Pay paths).
    pub link: PosLink,
    /// Wakes the payments task (a check was opened: poll every 5 s).
    pub wake_pay: Arc<Notify>,
}

/// How a lane worker ended: calls of its lane that succeeded (only they
/// prove the service reachable: an event that needs no call is completed
/// during an outage too and must neither end the outage nor mark the
/// service healthy), and the outcome for the scheduler.
#[derive(Debug)]
pub struct Ended {
    /// Calls that succeeded.
    pub calls_ok: usize,
    /// Why it stopped.
    pub outcome: Outcome,
}

/// Runs delivery until `cancel`. `touched` brings order ids that got new
/// events (from intake) or were retried; both lanes of the order are
/// looked at.
pub async fn run(
    d: Deliverer,
    mut touched: mpsc::UnboundedReceiver<String>,
    cancel: CancellationToken,
) {
    let mut dispatcher = Dispatcher::new(d);
    loop {
        let now = Instant::now();
        if now >= dispatcher.next_rescan {
            dispatcher.rescan(now).await;
        }
        // systemd watchdog: this loop wakes at least every RESCAN_EVERY, even
        // when the POS is quiet, and its rescan is a round trip through the
        // store thread's transaction. A ping here therefore proves that the
        // delivery loop turns and the store commits; a wedged store (or
        // loop) stops the pings and systemd restarts the agent.
        if dispatcher.store_answers {
            crate::watchdog::ping();
        }
        dispatcher.start_ready(now);
        let wake = dispatcher
            .sched
            .next_wake(now)
            .map_or(dispatcher.next_rescan, |w| w.min(dispatcher.next_rescan));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(joined) = dispatcher.workers.join_next(), if !dispatcher.workers.is_empty() => {
                match joined {
                    Ok((lane, order, ended)) => dispatcher.finished(lane, &order, ended),
                    Err(e) => error!("a delivery task failed: {e}"),
                }
            }
            Some(o) = touched.recv() => {
                dispatcher.touch(&o);
                while let Ok(o) = touched.try_recv() {
                    dispatcher.touch(&o);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    dispatcher.drain().await;
    info!("delivery stopped");
}

/// The dispatcher's state between two turns of [`run`]'s loop.
struct Dispatcher {
    d: Deliverer,
    sched: Scheduler,
    /// One task per order and lane in flight.
    workers: JoinSet<(Lane, String, Ended)>,
    next_rescan: Instant,
    next_full_rescan: Instant,
    /// `PRAGMA data_version` at the last scan (`None`: never scanned).
    scanned_version: Option<i64>,
    /// The last rescan went through the store (the watchdog is fed).
    store_answers: bool,
    /// Store failures since the last report, and when that was.
    store_failures: u64,
    store_warned: Option<Instant>,
}

impl Dispatcher {
    fn new(d: Deliverer) -> Dispatcher {
        let sched = Scheduler::new(
            Tuning {
                concurrency: d.cfg.concurrency,
                base: BACKOFF_BASE,
                cap: d.cfg.retry_max,
                credentials_retry: d.cfg.credentials_retry,
            },
            crate::retry::random_jitter,
        );
        Dispatcher {
            d,
            sched,
            workers: JoinSet::new(),
            next_rescan: Instant::now(),
            next_full_rescan: Instant::now(),
            scanned_version: None,
            store_answers: false,
            store_failures: 0,
            store_warned: None,
        }
    }

    /// Both lanes of `order` may have something to deliver.
    fn touch(&mut self, order: &str) {
        self.sched.touch(Lane::Zenchef, order);
        self.sched.touch(Lane::Pay, order);
    }

    /// Looks the ready orders up in the store when it changed since the
    /// last scan (`PRAGMA data_version`), or every [`FULL_RESCAN_EVERY`]
    /// anyway, and touches them.
    async fn rescan(&mut self, now: Instant) {
        let (last, full) = (self.scanned_version, now >= self.next_full_rescan);
        let scan = self.d.store.read(move |c| {
            let version = crate::outbox::store::data_version(c)?;
            let orders = if full || last != Some(version) {
                let mut zenchef = queue::ready_orders(c, Lane::Zenchef)?;
                // Manual link requests are steps of their order's lane.
                zenchef.extend(crate::outbox::links::open_orders(c)?);
                Some((zenchef, queue::ready_orders(c, Lane::Pay)?))
            } else {
                None
            };
            Ok((version, orders))
        });
        match scan.await {
            Ok((version, orders)) => {
                self.scanned_version = Some(version);
                self.store_answers = true;
                if let Some((zenchef, pay)) = orders {
                    debug!(
                        "outbox rescanned: {} order(s) ready for Zenchef, {} for Zenchef Pay",
                        zenchef.len(),
                        pay.len()
                    );
                    for o in &zenchef {
                        self.sched.touch(Lane::Zenchef, o);
                    }
                    for o in &pay {
                        self.sched.touch(Lane::Pay, o);
                    }
                    self.next_full_rescan = now + FULL_RESCAN_EVERY;
                }
            }
            Err(e) => {
                warn!("cannot scan the outbox: {e}");
                self.store_answers = false;
            }
        }
        self.next_rescan = now + RESCAN_EVERY;
    }

    /// Starts a worker for every order and lane the scheduler lets go.
    fn start_ready(&mut self, now: Instant) {
        for (lane, order) in self.sched.start(now) {
            let d = self.d.clone();
            let span = info_span!("order", order_id = %order, lane = lane.name());
            self.workers.spawn(
                async move {
                    let ended = match lane {
                        Lane::Zenchef => zenchef_lane::work_order(&d, &order).await,
                        Lane::Pay => pay_lane::work_order(&d, &order).await,
                    };
                    (lane, order, ended)
                }
                .instrument(span),
            );
        }
    }

    /// A worker ended: tell the scheduler; store failures are reported at
    /// most once a minute ([`STORE_WARN_EVERY`]).
    fn finished(&mut self, lane: Lane, order: &str, ended: Ended) {
        if ended.outcome == Outcome::Store {
            self.store_failures += 1;
            if self
                .store_warned
                .is_none_or(|t| t.elapsed() >= STORE_WARN_EVERY)
            {
                warn!(
                    "cannot read or write the store during delivery; {} \
                     failed tr(ies) since the last report; deliveries wait and are \
                     retried (next report in a minute at most)",
                    self.store_failures
                );
                self.store_warned = Some(Instant::now());
                self.store_failures = 0;
            }
        }
        self.sched
            .finish(lane, order, ended.calls_ok, ended.outcome, Instant::now());
    }

    /// Shutdown: lets in-flight calls finish, bounded by
    /// [`SHUTDOWN_GRACE`]; what is still running then is abandoned (and
    /// retried at the next start).
    async fn drain(&mut self) {
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while !self.workers.is_empty() {
            tokio::select! {
                _ = &mut grace => {
                    warn!("{} delivery task(s) still running at shutdown: abandoned (they are retried at next start)", self.workers.len());
                    self.workers.abort_all();
                    break;
                }
                _ = self.workers.join_next() => {}
            }
        }
    }
}

/// Records a failed call in the health record, logs it, and says how the
/// worker ends (the row's own bookkeeping is the lane's).
pub(crate) fn classify(d: &Deliverer, failure: &Failure, attempt: i64) -> Outcome {
    let (e, is_pay) = match failure {
        Failure::Store(_) => return Outcome::Store,
        Failure::Zenchef(e) => (e, false),
        Failure::Pay(e) => (e, true),
    };
    let msg = e.to_string();
    let api = if is_pay { "Zenchef Pay" } else { "Zenchef" };
    match e.class {
        ErrorClass::Dead => Outcome::Dead,
        ErrorClass::Retry { after } => {
            d.health.update(|s| {
                let h = if is_pay { &mut s.pay } else { &mut s.zenchef };
                h.last_error = Some(format!("{} {msg}", crate::time::now_utc()));
                h.outage = true;
            });
            warn!(attempt, "{api} call failed, will retry: {msg}");
            Outcome::Retry { after }
        }
        ErrorClass::Credentials => {
            d.health.update(|s| {
                let h = if is_pay { &mut s.pay } else { &mut s.zenchef };
                h.last_error = Some(format!("{} {msg}", crate::time::now_utc()));
                h.credentials_refused = true;
            });
            if is_pay {
                error!(
                    "Zenchef Pay refused the token ({msg}): check zenchef_pay.token in the \
                     configuration file; check pushes are paused (Zenchef is not), nothing is lost"
                );
            } else {
                error!(
                    "Zenchef refused the credentials for restaurant {} ({msg}): check zenchef.token \
                     and zenchef.restaurant_id in the configuration file; Zenchef deliveries are \
                     paused (Zenchef Pay is not), nothing is lost",
                    d.zenchef.restaurant_id()
                );
            }
            Outcome::Credentials
        }
    }
}

//! The daemon: owns the task graph, the shutdown order and the store.
//!
//! [`Daemon::run`] boots in this order — update bookkeeping (a version that
//! never confirmed its health is rolled back before anything else runs),
//! the store (waited for when the box is at fault), `READY=1` — then spawns
//! every task into one of four stages (`Stage`), and on shutdown stops the
//! stages one after the other, each finishing what it holds
//! (docs/architecture.md, "Shutdown order"):
//!
//! | stage | tasks |
//! |---|---|
//! | input | intake (store, then acknowledge) |
//! | session | the MQTT session with the POS, the retained status |
//! | delivery | the two delivery lanes, manual links, Zenchef Pay payments |
//! | rest | mDNS, the reservation poller (it also ends with the session: the replay channel closes), the page, health, `STATUS=`, retention, the advert, the updater |
//!
//! The store's integrity check and the first-start summary run detached:
//! they hold nothing to finish.
//!
//! Tasks get their handles from [`Shared`] and their channels by name
//! (`Wires`), never by position.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::Config;
use crate::health::Health;
use crate::outbox::Store;
use crate::outbox::store::OpenOutcome;
use crate::pay::client::PayClient;
use crate::pos::session::{Incoming, PosLink, SessionEvent};
use crate::zenchef::client::ZenchefClient;
use crate::{
    delivery, health, http, identity, links, message_ids, outbox, pay, pos, provision, sd_status,
    sync, update, zenchef,
};

/// Capacity of the session → intake channel. The broker's in-flight window
/// bounds it in practice; when full, the event loop waits (backpressure).
const INTAKE_QUEUE: usize = 4096;
/// How often the retained `zenchef/status` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// How often the daemon state is written for `status`.
const HEALTH_EVERY: Duration = Duration::from_secs(2);

/// The daemon: one configuration, one shutdown signal.
pub struct Daemon {
    config: Arc<Config>,
    shutdown: CancellationToken,
}

/// The handles every task may share (cheap clones of the same parts).
#[derive(Clone)]
pub struct Shared {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The SQLite store (its writer thread).
    pub store: Store,
    /// The daemon's view of its links, for `status` and `STATUS=`.
    pub health: Health,
    /// The current MQTT session with the POS (publish, acknowledge).
    pub link: PosLink,
    /// The Zenchef API client.
    pub zenchef: ZenchefClient,
    /// The Zenchef Pay client, when `[zenchef_pay]` is configured.
    pub pay: Option<PayClient>,
    /// Asks the reservation poller to poll now (a webhook, a delivered
    /// change).
    pub nudge: Arc<Notify>,
    /// Wakes the payments task (a stored event decided a payment).
    pub wake_pay: Arc<Notify>,
}

/// The channels between tasks, by name; each end is taken once by the task
/// that owns it ([`take`]).
struct Wires {
    /// Session → intake: POS messages with their ack handles.
    intake_tx: Option<mpsc::Sender<Incoming>>,
    intake_rx: Option<mpsc::Receiver<Incoming>>,
    /// Session → status loop: connects and disconnects.
    events_tx: Option<mpsc::UnboundedSender<SessionEvent>>,
    events_rx: Option<mpsc::UnboundedReceiver<SessionEvent>>,
    /// Status loop → reservation poller: "replay the mirror" after a
    /// connect.
    replay_tx: Option<mpsc::UnboundedSender<()>>,
    replay_rx: Option<mpsc::UnboundedReceiver<()>>,
    /// Intake → delivery: the orders a commit touched.
    touched_tx: Option<mpsc::UnboundedSender<String>>,
    touched_rx: Option<mpsc::UnboundedReceiver<String>>,
}

impl Wires {
    fn new() -> Wires {
        let (intake_tx, intake_rx) = mpsc::channel(INTAKE_QUEUE);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (replay_tx, replay_rx) = mpsc::unbounded_channel();
        let (touched_tx, touched_rx) = mpsc::unbounded_channel();
        Wires {
            intake_tx: Some(intake_tx),
            intake_rx: Some(intake_rx),
            events_tx: Some(events_tx),
            events_rx: Some(events_rx),
            replay_tx: Some(replay_tx),
            replay_rx: Some(replay_rx),
            touched_tx: Some(touched_tx),
            touched_rx: Some(touched_rx),
        }
    }
}

/// Takes a channel's end out of its slot: each end has one owner, so a
/// sender's last clone going away closes its receiver as it should.
fn take<T>(slot: &mut Option<T>) -> T {
    slot.take()
        .expect("a channel end wired twice (a bug in daemon.rs)")
}

/// One stage of the shutdown order: its token and the tasks it stops.
#[derive(Default)]
struct Stage {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Stage {
    /// Spawns `task` in this stage; its result is not looked at (each task
    /// logs its own failures).
    fn spawn<F>(&mut self, task: F)
    where
        F: Future + Send + 'static,
    {
        self.tasks.push(tokio::spawn(async move {
            let _ = task.await;
        }));
    }

    /// Cancels the stage and waits for each of its tasks.
    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The four stages, stopped in this order.
#[derive(Default)]
struct Stages {
    input: Stage,
    session: Stage,
    delivery: Stage,
    rest: Stage,
}

impl Stages {
    async fn stop_in_order(self) {
        info!("stopping: no new POS messages; finishing the current commit");
        self.input.stop().await;
        self.session.stop().await;
        self.delivery.stop().await;
        self.rest.stop().await;
    }
}

impl Daemon {
    /// A daemon for `config`, running until `shutdown` is cancelled.
    pub fn new(config: Config, shutdown: CancellationToken) -> Daemon {
        Daemon {
            config: Arc::new(config),
            shutdown,
        }
    }

    /// Runs every part until `shutdown` is cancelled, then stops them in
    /// the order of the module's table: stop taking POS input and finish
    /// the current commit and its acks → close MQTT cleanly
    /// (`online:false`) → let in-flight Zenchef calls finish (bounded) →
    /// the rest → the store.
    ///
    /// Errors: the store cannot be opened ([`outbox::StoreError`] in the
    /// chain; `Incompatible` makes `main` exit 78), the HTTP clients cannot
    /// be built, or the mDNS daemon cannot start.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::tls::install_crypto();
        let config = self.config.clone();
        warn_if_config_readable(&config);
        for w in &config.warnings {
            warn!("config: {w} (in {})", config.file.display());
        }
        let started = tokio::time::Instant::now();
        // Update bookkeeping first: a version that never confirmed its
        // health is rolled back before anything else runs.
        let update_paths = update::Paths::for_current_exe(&config.store_path)
            .inspect_err(|e| {
                warn!("update: cannot resolve the running binary ({e}); self-update off")
            })
            .ok();
        let pending_update = match update_paths.as_ref().map(update::daemon::boot) {
            Some(update::daemon::BootAction::Restart) => {
                update::request_restart();
                return Ok(());
            }
            Some(update::daemon::BootAction::Continue(p)) => p,
            None => None,
        };

        let Some((store, outcome)) = open_store(&config.store_path, &self.shutdown).await? else {
            info!("stopped before the store could be opened");
            return Ok(());
        };
        let shared = self.ready(store, &outcome).await?;

        let mut stages = Stages::default();
        let mut wires = Wires::new();
        self.spawn_pos(&shared, &mut stages, &mut wires)?;
        spawn_delivery(&shared, &mut stages, &mut wires);
        spawn_page(&shared, &mut stages).await;
        spawn_rest(&shared, &mut stages, &mut wires);
        if let Some(paths) = update_paths {
            self.spawn_updater(&shared, &mut stages, paths, pending_update, started);
        }

        self.shutdown.cancelled().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        stages.stop_in_order().await;
        drop(shared);
        info!("stopped");
        Ok(())
    }

    /// The store is open: say so (and a store moved aside, loudly), send
    /// READY, start the full integrity check, and build the shared handles.
    async fn ready(&self, store: Store, outcome: &OpenOutcome) -> anyhow::Result<Shared> {
        let config = &self.config;
        if let OpenOutcome::MovedAside(aside) = outcome {
            error!(
                message_id = message_ids::STORE_MOVED_ASIDE,
                "STORE REPLACED: the previous store was unreadable and is kept at {} for a technician",
                aside.display()
            );
        }
        #[cfg(feature = "test-next")]
        {
            let _ = store.mark_next_started().await;
        }
        info!(
            "zenchef-edge {} started: store {}, restaurant {}",
            crate::long_version(),
            config.store_path.display(),
            config.zenchef.restaurant_id
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        // The full check of the store, now that the daemon is ready: its
        // time grows with the file, the start's must not.
        tokio::spawn(check_store(
            store.path().to_path_buf(),
            matches!(outcome, OpenOutcome::MovedAside(_)),
            self.shutdown.clone(),
        ));

        let mode = if config.cashpad.static_addr.is_some() {
            "static"
        } else {
            "discovery"
        };
        let health = Health::new(mode);
        let moved_aside = record_moved_aside(&store, outcome).await;
        health.update(|s| s.store_moved_aside = moved_aside);
        let zenchef = ZenchefClient::new(&config.zenchef, config.delivery.http_timeout)
            .context("building the HTTP client")?;
        let pay = match &config.pay {
            Some(p) => Some(
                PayClient::new(p, config.delivery.http_timeout)
                    .context("building the Zenchef Pay client")?,
            ),
            None => None,
        };
        Ok(Shared {
            config: config.clone(),
            store,
            health,
            link: PosLink::default(),
            zenchef,
            pay,
            nudge: Arc::new(Notify::new()),
            wake_pay: Arc::new(Notify::new()),
        })
    }

    /// The POS side: discovery (stopped with the rest), the MQTT session
    /// and its status loop, intake.
    ///
    /// Errors: the mDNS daemon cannot start.
    fn spawn_pos(&self, sh: &Shared, stages: &mut Stages, wires: &mut Wires) -> anyhow::Result<()> {
        let config = &sh.config;
        let targets = pos::discovery::start(
            &config.cashpad,
            sh.health.clone(),
            sh.link.clone(),
            stages.rest.stop.clone(),
        )
        .context("starting mDNS discovery")?;
        let session = pos::session::Session {
            cfg: config.cashpad.clone(),
            targets,
            link: sh.link.clone(),
            intake: take(&mut wires.intake_tx),
            events: take(&mut wires.events_tx),
            health: sh.health.clone(),
            guard_dir: match config.store_path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            },
        };
        let stop = stages.session.stop.clone();
        stages
            .session
            .spawn(session.run(stop).instrument(info_span!("pos")));
        let intake = pos::intake::Intake {
            store: sh.store.clone(),
            rx: take(&mut wires.intake_rx),
            link: sh.link.clone(),
            touched: take(&mut wires.touched_tx),
            pay: config.pay.is_some(),
            wake_pay: sh.wake_pay.clone(),
        };
        let stop = stages.input.stop.clone();
        stages
            .input
            .spawn(intake.run(stop).instrument(info_span!("intake")));
        let status = pos::session::StatusLoop {
            link: sh.link.clone(),
            store: sh.store.clone(),
            events: take(&mut wires.events_rx),
            replay: take(&mut wires.replay_tx),
            every: STATUS_EVERY,
        };
        let stop = stages.session.stop.clone();
        stages.session.spawn(status.run(stop));
        Ok(())
    }

    /// The updater, when the running binary was found and the update
    /// configuration builds one.
    fn spawn_updater(
        &self,
        sh: &Shared,
        stages: &mut Stages,
        paths: update::Paths,
        pending: Option<String>,
        started: tokio::time::Instant,
    ) {
        let config = &sh.config;
        let Some(updater) = update::daemon::Updater::new(
            config.update.clone(),
            config.timezone,
            paths,
            update::daemon::Activity::Store(sh.store.clone()),
        )
        .inspect_err(|e| warn!("update: {e:#}; self-update off"))
        .ok() else {
            return;
        };
        let task = update::daemon::Task {
            updater,
            store: sh.store.clone(),
            pending,
            started,
            shutdown: self.shutdown.clone(),
            stop: stages.rest.stop.clone(),
        };
        stages
            .rest
            .spawn(update::daemon::run(task).instrument(info_span!("update")));
    }
}

/// Delivery's stage: the two lanes, manual links, and the payments task.
fn spawn_delivery(sh: &Shared, stages: &mut Stages, wires: &mut Wires) {
    let config = &sh.config;
    let touched_rx = take(&mut wires.touched_rx);
    let deliverer = delivery::Deliverer {
        store: sh.store.clone(),
        zenchef: sh.zenchef.clone(),
        ctx: sync::Ctx {
            tz: config.timezone,
            currency: config.currency.clone(),
            pay: config.pay.is_some(),
        },
        window: sync::matching::Window {
            before_min: config.zenchef.match_before_min,
            after_min: config.zenchef.match_after_min,
        },
        cfg: config.delivery.clone(),
        health: sh.health.clone(),
        nudge_poller: sh.nudge.clone(),
        pay: sh.pay.clone(),
        configured_iid: config.cashpad.installation_id.clone(),
        link: sh.link.clone(),
        wake_pay: sh.wake_pay.clone(),
    };
    let stop = stages.delivery.stop.clone();
    stages.delivery.spawn(
        delivery::run(deliverer, touched_rx, stop.clone()).instrument(info_span!("delivery")),
    );
    stages.delivery.spawn(
        links::run(
            sh.store.clone(),
            sh.health.clone(),
            sh.zenchef.restaurant_id().to_string(),
            stop.clone(),
        )
        .instrument(info_span!("links")),
    );
    if let Some((client, cfg)) = sh.pay.clone().zip(config.pay.as_ref()) {
        let payments = pay::Payments {
            client,
            store: sh.store.clone(),
            link: sh.link.clone(),
            configured_iid: config.cashpad.installation_id.clone(),
            health: sh.health.clone(),
            wake: sh.wake_pay.clone(),
            settle_resend: cfg.settle_resend,
            settle_resends: cfg.settle_resends,
        };
        stages
            .delivery
            .spawn(pay::run(payments, stop).instrument(info_span!("pay")));
    }
}

/// The local status page, when `[http] listen` is set and the address can
/// be bound (otherwise said, and everything else runs).
async fn spawn_page(sh: &Shared, stages: &mut Stages) {
    let config = &sh.config;
    let Some(addr) = config.http_listen else {
        return;
    };
    match http::bind(addr).await {
        Ok(listener) => {
            let state = http::PageState {
                config: config.clone(),
                nudge: sh.nudge.clone(),
                live: Some(sh.health.clone()),
            };
            let stop = stages.rest.stop.clone();
            stages
                .rest
                .spawn(http::serve(listener, state, stop).instrument(info_span!("http")));
        }
        Err(e) => error!(
            "cannot listen on {addr} for the status page ({e}): the page and the webhook \
             nudge are off, everything else runs; change [http] listen in {}",
            config.file.display()
        ),
    }
}

/// The rest: the reservation poller, the box's mDNS advert, the first-start
/// summary, health, `STATUS=`, retention.
fn spawn_rest(sh: &Shared, stages: &mut Stages, wires: &mut Wires) {
    let config = &sh.config;
    let stop = stages.rest.stop.clone();
    let replay_rx = take(&mut wires.replay_rx);
    let poller = zenchef::poller::Poller {
        client: sh.zenchef.clone(),
        store: sh.store.clone(),
        link: sh.link.clone(),
        tz: config.timezone,
        every: config.zenchef.poll_interval,
        sync_days: config.zenchef.sync_days,
        health: sh.health.clone(),
        nudge: sh.nudge.clone(),
        replay: replay_rx,
    };
    stages.rest.spawn(
        poller
            .run(stop.clone())
            .instrument(info_span!("reservations")),
    );
    let state_dir = config
        .store_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let device = identity::device_id(&state_dir);
    match &device {
        Ok(device) => stages.rest.spawn(identity::advertise(
            config.cashpad.clone(),
            device.clone(),
            config.http_listen.map(|a| a.port()).unwrap_or(0),
            sh.link.clone(),
            stop.clone(),
        )),
        Err(e) => warn!(
            "cannot create the device id in {}: {e}",
            state_dir.display()
        ),
    }
    spawn_fleet(sh, stages, device.ok());
    let marker = state_dir.join(provision::PROVISIONED_MARKER);
    if marker.exists() {
        tokio::spawn(first_start_summary(sh.health.clone(), marker, stop.clone()));
    }
    stages.rest.spawn(crate::health_store::persist_loop(
        sh.health.clone(),
        sh.store.clone(),
        HEALTH_EVERY,
        config.history_sample,
        stop.clone(),
    ));
    stages.rest.spawn(sd_status::run(
        sh.health.clone(),
        sh.store.clone(),
        config.pay.is_some(),
        stop.clone(),
    ));
    let retention = outbox::retention::Retention {
        store: sh.store.clone(),
        cfg: config.retention.clone(),
        tz: config.timezone,
        window: config.update.window,
        clock: Arc::new(chrono::Utc::now),
    };
    stages
        .rest
        .spawn(outbox::retention::run(retention, stop).instrument(info_span!("retention")));
}

/// The fleet report (`[fleet]`, docs/fleet.md), when configured: its own
/// task in the last stage, sharing nothing with the POS session. Without
/// a `[fleet] device_id` it needs the box's device id.
fn spawn_fleet(sh: &Shared, stages: &mut Stages, device: Option<String>) {
    let Some(fleet) = sh.config.fleet.clone() else {
        return;
    };
    let Some(device_id) = fleet.device_id.clone().or(device) else {
        warn!(
            "fleet: no device id (see above): the box does not report to {}",
            fleet.broker
        );
        return;
    };
    // The file may have been edited by hand: it becomes a topic level.
    if let Err(e) = crate::config::check_topic_level(&device_id) {
        warn!(
            "fleet: the device id {e}: the box does not report to {}; set [fleet] device_id",
            fleet.broker
        );
        return;
    }
    let task = crate::fleet::session::Fleet {
        config: sh.config.clone(),
        fleet,
        device_id,
        health: sh.health.clone(),
    };
    let stop = stages.rest.stop.clone();
    stages
        .rest
        .spawn(task.run(stop).instrument(info_span!("fleet")));
}

/// A store moved aside is said in `status` until a technician removes the
/// kept file: recorded in the store now, or read back from an earlier
/// start (only while the kept file exists). The kept file's path.
async fn record_moved_aside(store: &Store, outcome: &OpenOutcome) -> Option<String> {
    match outcome {
        OpenOutcome::MovedAside(aside) => {
            let aside = aside.display().to_string();
            let a = aside.clone();
            if let Err(e) = store.set_kv_value(health::MOVED_ASIDE_KEY, a).await {
                warn!("cannot record the moved-aside store: {e}");
            }
            Some(aside)
        }
        OpenOutcome::Opened => store
            .kv_value(health::MOVED_ASIDE_KEY)
            .await
            .ok()
            .flatten()
            .filter(|p| Path::new(p).exists()),
    }
}

/// Opens the store. A problem of the box that a restart would not fix
/// (permissions, a read-only or full filesystem, I/O errors, a lock) is
/// waited out here — READY is sent with the problem as the unit's status,
/// the watchdog is fed, one ERROR a minute says what to fix, and the open
/// is tried again every 10 s — rather than exiting into a restart loop.
/// `None`: stopped while waiting.
///
/// Errors: [`outbox::StoreError::Incompatible`] (the daemon exits 78) and
/// any other failure to open.
async fn open_store(
    path: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Store, OpenOutcome)>> {
    let mut waiting_since: Option<tokio::time::Instant> = None;
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        let p = path.to_path_buf();
        let r = tokio::task::spawn_blocking(move || Store::open(&p))
            .await
            .context("opening the store")?;
        match r {
            Ok(opened) => {
                if let Some(t) = waiting_since {
                    info!(
                        "the store opens again after {} s of waiting",
                        t.elapsed().as_secs()
                    );
                }
                return Ok(Some(opened));
            }
            Err(outbox::StoreError::Unavailable {
                path: p,
                cause,
                message,
            }) => {
                let now = tokio::time::Instant::now();
                if waiting_since.is_none() {
                    waiting_since = Some(now);
                    let _ = sd_notify::notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&format!(
                            "waiting for the store {}: {cause}",
                            p.display()
                        )),
                    ]);
                }
                if said.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                    said = Some(now);
                    error!(
                        store = %p.display(),
                        "cannot open the store {}: {cause} ({message}); {}; nothing is taken from \
                         the POS meanwhile (its broker keeps the events); trying again every 10 s",
                        p.display(),
                        cause.hint()
                    );
                }
                crate::watchdog::ping();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
            Err(e @ outbox::StoreError::Incompatible { .. }) => {
                error!("{e}");
                return Err(e.into());
            }
            Err(e) => {
                return Err(
                    anyhow::Error::from(e).context(format!("opening the store {}", path.display()))
                );
            }
        }
    }
}

/// The full integrity check of the store, on a blocking thread of its own
/// after READY. A damaged store is recorded beside it
/// ([`outbox::store::mark_corrupt`]) and the daemon stops, in its usual
/// order, with exit code 75: systemd starts it again, and that start
/// moves the file aside (kept) and begins a fresh store — the same as a
/// store found corrupt at start, without a crash loop. A store created
/// fresh by this very start (`fresh`) that fails too is only reported:
/// the disk itself is then suspect, and restarting would not help.
async fn check_store(path: PathBuf, fresh: bool, shutdown: CancellationToken) {
    let t = tokio::time::Instant::now();
    let p = path.clone();
    let r = tokio::task::spawn_blocking(move || outbox::store::integrity_check(&p)).await;
    match r {
        Ok(Ok(outbox::store::Integrity::Ok)) => info!(
            "store integrity check passed in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
        Ok(Ok(outbox::store::Integrity::Corrupt(why))) if fresh => error!(
            store = %path.display(),
            "the store created at this start fails its integrity check too ({why}): the disk or \
             card is probably failing; the agent goes on, check the kernel log (dmesg)"
        ),
        Ok(Ok(outbox::store::Integrity::Corrupt(why))) => {
            error!(
                store = %path.display(),
                "STORE DAMAGED: the integrity check failed ({why}); stopping so that the next start \
                 moves it aside (kept for a technician) and starts a fresh store"
            );
            if let Err(e) = outbox::store::mark_corrupt(&path, &why) {
                error!(
                    "cannot record the failed check beside the store ({e}); the next start opens \
                     it again"
                );
                return;
            }
            // Exit 75, as after an update: the unit restarts on it.
            update::request_restart();
            shutdown.cancel();
        }
        Ok(Err(e)) => warn!("cannot run the store integrity check: {e}"),
        Err(e) => warn!("the store integrity check did not finish: {e}"),
    }
}

/// First start after provisioning: give the box a minute to find the POS
/// and reach Zenchef, then log one summary (journald NOTICE) of what works
/// and what does not, and remove the marker so it is said once.
async fn first_start_summary(health: Health, marker: PathBuf, cancel: CancellationToken) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = health.snapshot();
        let done = s.pos.mqtt_connected
            && s.zenchef.last_success.is_some()
            && s.last_reservation_sync.is_some();
        if done || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let s = health.snapshot();
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    let pos = match (&s.pos.address, &s.pos.problem) {
        (Some(a), _) => format!(
            "found at {a} (Cashpad {})",
            s.pos.app_version.as_deref().unwrap_or("?")
        ),
        (None, Some(p)) => p.clone(),
        (None, None) => "not found on the LAN (is it on the same network? is mDNS allowed?)".into(),
    };
    let zc = match (&s.zenchef.last_success, &s.zenchef.last_error) {
        (_, _) if s.zenchef.credentials_refused => {
            "token or restaurant id refused: check zenchef.token".to_string()
        }
        (Some(_), _) => "reachable, credentials accepted".to_string(),
        (None, Some(e)) => format!("not reachable: {e}"),
        (None, None) => "no answer yet".to_string(),
    };
    info!(
        "first start after provisioning:\n  {} POS: {pos}\n  {} MQTT session with the POS\n  {} Zenchef: {zc}\n  {} reservations synced to the POS",
        mark(s.pos.found),
        mark(s.pos.mqtt_connected),
        mark(s.zenchef.last_success.is_some() && !s.zenchef.credentials_refused),
        mark(s.last_reservation_sync.is_some()),
    );
    let _ = std::fs::remove_file(&marker);
}

/// The configuration holds secrets: warn when group or others can read it.
fn warn_if_config_readable(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(&config.file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warn!(
                "{} is readable by group or others (mode {mode:o}) and holds tokens: chmod 600 it",
                config.file.display()
            );
        }
    }
}

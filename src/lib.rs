//! zenchef-edge: the on-premise agent that bridges a restaurant's Cashpad
//! POS with Zenchef (reservations) and Zenchef Pay.
//!
//! It finds the POS on the LAN by mDNS, takes its events over MQTT, keeps
//! them in SQLite (acknowledging only what is durable), forwards them to
//! Zenchef in per-order order once online, and publishes Zenchef's
//! reservations back to the POS.
//!
//! # Layout
//! - [`config`]: the configuration file (docs/protocol/agent-interface.md), validation,
//!   secrets.
//! - [`pos`]: the POS side — [`pos::discovery`] (mDNS), [`pos::session`]
//!   (MQTT), [`pos::event`] (envelope and types), [`pos::intake`] (store
//!   then ack).
//! - [`outbox`]: the SQLite store ([`outbox::store`], group commit on its
//!   own thread), migrations, and all the SQL: the queue and its two lanes,
//!   orders and their stored truth, Zenchef Pay payments and checks.
//! - [`delivery`]: the two lanes of each order (Zenchef, Zenchef Pay), in
//!   `seq` order and independent of each other; the pure scheduler
//!   (backoff, outage probes, pauses); retries and dead letters.
//! - [`sync`]: the sync rules (docs/protocol/sync-rules.md) as pure
//!   functions (matching, plans, order truth, payment verdicts).
//! - [`zenchef`]: the Zenchef API client and the reservation poller.
//! - [`health`]: the daemon's view of its links, for `status`.
//! - [`sd_status`]: the same, as the one-line `STATUS=` of `systemctl
//!   status`, and the journal lines of outages starting and ending.
//! - [`message_ids`]: the journal `MESSAGE_ID`s of key events.
//! - [`identity`]: the device id and the box's own mDNS advertisement.
//! - [`provision`]: zero-touch provisioning from the boot partition.
//! - [`pay`]: Zenchef Pay payments (polling, settle commands and their
//!   life, acks; checks are pushed by the Pay lane of [`delivery`]).
//! - [`links`]: applies the manual links queued by `link` / `unlink`
//!   (sync-rules 4b).
//! - [`http`]: the local status page, `status.json` and the webhook nudge.
//! - [`update`]: signed self-update in the maintenance window, with
//!   automatic rollback (docs/README-update.md).
//! - [`cli`]: the technician commands.
//!
//! [`run`] is the daemon; `main.rs` only builds the runtime, sets up
//! logging, handles signals and dispatches the command line.

pub mod cli;
pub mod config;
pub mod delivery;
pub mod health;
pub mod http;
pub mod identity;
pub mod links;
pub mod logging;
pub mod message_ids;
pub mod outbox;
pub mod pay;
pub mod pos;
pub mod provision;
pub mod sd_status;
pub mod sync;
pub mod update;
pub mod zenchef;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::Config;
use crate::health::Health;
use crate::outbox::Store;
use crate::outbox::store::OpenOutcome;
use crate::pos::session::PosLink;

/// Version, git commit and target triple (`--version`).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ZENCHEF_EDGE_COMMIT"),
    ", ",
    env!("ZENCHEF_EDGE_TARGET"),
    ")"
);

/// [`LONG_VERSION`] with the version read at run time from the version slot
/// ([`update::running_version_str`]): what `--version` prints.
pub fn long_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} (commit {}, {})",
            update::running_version_str(),
            env!("ZENCHEF_EDGE_COMMIT"),
            env!("ZENCHEF_EDGE_TARGET")
        )
    })
}

/// Capacity of the session → intake channel. The broker's in-flight window
/// bounds it in practice; when full, the event loop waits (backpressure).
const INTAKE_QUEUE: usize = 4096;
/// How often the retained `zenchef/status` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// How often the daemon state is written for `status`.
const HEALTH_EVERY: Duration = Duration::from_secs(2);

/// Tells systemd the service made progress (`WATCHDOG=1`). Called from the
/// intake loop and the dispatcher, so it proves work, not a timer. A no-op
/// outside systemd.
pub fn watchdog_ping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// Installs the process-wide rustls crypto provider (ring). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The daemon: runs every part until `shutdown` is cancelled, then stops
/// them in the order of docs/architecture.md ("Shutdown order"): stop taking POS
/// input and finish the current commit and its acks → close MQTT cleanly
/// (`online:false`) → let in-flight Zenchef calls finish (bounded) → stop
/// the store.
///
/// Errors: the store cannot be opened, or the mDNS daemon cannot start.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    install_crypto();
    warn_if_config_readable(&config);
    for w in &config.warnings {
        warn!("config: {w} (in {})", config.file.display());
    }
    let started = tokio::time::Instant::now();
    // Update bookkeeping first: a version that never confirmed its health is
    // rolled back before anything else runs.
    let update_paths = update::Paths::for_current_exe(&config.store_path)
        .inspect_err(|e| warn!("update: cannot resolve the running binary ({e}); self-update off"))
        .ok();
    let pending_update = match update_paths.as_ref().map(update::daemon::boot) {
        Some(update::daemon::BootAction::Restart) => {
            update::request_restart();
            return Ok(());
        }
        Some(update::daemon::BootAction::Continue(p)) => p,
        None => None,
    };

    let Some((store, outcome)) = open_store(&config.store_path, &shutdown).await? else {
        info!("stopped before the store could be opened");
        return Ok(());
    };
    if let OpenOutcome::MovedAside(aside) = &outcome {
        error!(
            message_id = message_ids::STORE_MOVED_ASIDE,
            "STORE REPLACED: the previous store was unreadable and is kept at {} for a technician",
            aside.display()
        );
    }
    #[cfg(feature = "test-next")]
    {
        let _ = store.write(outbox::kv::mark_next_started).await;
    }
    info!(
        "zenchef-edge {} started: store {}, restaurant {}",
        long_version(),
        config.store_path.display(),
        config.zenchef.restaurant_id
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    // The full check of the store, now that the daemon is ready: its time
    // grows with the file, the start's must not.
    tokio::spawn(check_store(
        store.path().to_path_buf(),
        matches!(outcome, OpenOutcome::MovedAside(_)),
        shutdown.clone(),
    ));

    let mode = if config.cashpad.static_addr.is_some() {
        "static"
    } else {
        "discovery"
    };
    let health = Health::new(mode);
    // A store moved aside is said loudly, in the journal above and in
    // `status` until a technician removes the kept file.
    let moved_aside = match &outcome {
        OpenOutcome::MovedAside(aside) => {
            let aside = aside.display().to_string();
            let a = aside.clone();
            if let Err(e) = store
                .write(move |c| outbox::kv_set(c, health::MOVED_ASIDE_KEY, &a))
                .await
            {
                warn!("cannot record the moved-aside store: {e}");
            }
            Some(aside)
        }
        OpenOutcome::Opened => store
            .read(|c| outbox::kv_get(c, health::MOVED_ASIDE_KEY))
            .await
            .ok()
            .flatten()
            .filter(|p| std::path::Path::new(p).exists()),
    };
    health.update(|s| s.store_moved_aside = moved_aside);
    let zenchef =
        zenchef::client::ZenchefClient::new(&config.zenchef, config.delivery.http_timeout)
            .context("building the HTTP client")?;

    // Tokens, one per stage of the shutdown order.
    let stop_input = CancellationToken::new();
    let stop_session = CancellationToken::new();
    let stop_delivery = CancellationToken::new();
    let stop_rest = CancellationToken::new();

    let link = PosLink::default();
    let targets = pos::discovery::start(&config.cashpad, health.clone(), stop_rest.clone())
        .context("starting mDNS discovery")?;
    let (intake_tx, intake_rx) = mpsc::channel(INTAKE_QUEUE);
    let (session_tx, session_rx) = mpsc::unbounded_channel();
    let (replay_tx, replay_rx) = mpsc::unbounded_channel();
    let (touched_tx, touched_rx) = mpsc::unbounded_channel();
    let nudge = Arc::new(Notify::new());
    let wake_pay = Arc::new(Notify::new());
    let pay_client = match &config.pay {
        Some(p) => Some(
            pay::client::PayClient::new(p, config.delivery.http_timeout)
                .context("building the Zenchef Pay client")?,
        ),
        None => None,
    };

    let session = tokio::spawn(
        pos::session::run(
            config.cashpad.clone(),
            targets,
            link.clone(),
            intake_tx,
            session_tx,
            health.clone(),
            stop_session.clone(),
        )
        .instrument(info_span!("pos")),
    );
    let intake = tokio::spawn(
        pos::intake::run(
            store.clone(),
            intake_rx,
            link.clone(),
            touched_tx,
            config.pay.is_some(),
            wake_pay.clone(),
            stop_input.clone(),
        )
        .instrument(info_span!("intake")),
    );
    let status = tokio::spawn(pos::session::status_loop(
        link.clone(),
        store.clone(),
        session_rx,
        replay_tx,
        STATUS_EVERY,
        stop_session.clone(),
    ));
    let deliverer = delivery::Deliverer {
        store: store.clone(),
        zenchef: zenchef.clone(),
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
        health: health.clone(),
        nudge_poller: nudge.clone(),
        pay: pay_client.clone(),
        configured_iid: config.cashpad.installation_id.clone(),
        link: link.clone(),
        wake_pay: wake_pay.clone(),
    };
    let dispatcher = tokio::spawn(
        delivery::run(deliverer, touched_rx, stop_delivery.clone())
            .instrument(info_span!("delivery")),
    );
    let links = tokio::spawn(
        links::run(store.clone(), zenchef.clone(), stop_delivery.clone())
            .instrument(info_span!("links")),
    );
    let page = match config.http_listen {
        Some(addr) => match http::bind(addr).await {
            Ok(listener) => {
                let state = http::PageState {
                    config: Arc::new(config.clone()),
                    nudge: nudge.clone(),
                };
                Some(tokio::spawn(
                    http::serve(listener, state, stop_rest.clone()).instrument(info_span!("http")),
                ))
            }
            Err(e) => {
                error!(
                    "cannot listen on {addr} for the status page ({e}): the page and the webhook \
                     nudge are off, everything else runs; change [http] listen in {}",
                    config.file.display()
                );
                None
            }
        },
        None => None,
    };
    let poller = tokio::spawn(
        zenchef::poller::run(
            zenchef,
            store.clone(),
            link.clone(),
            config.timezone,
            config.zenchef.poll_interval,
            config.zenchef.sync_days,
            health.clone(),
            nudge,
            replay_rx,
            stop_rest.clone(),
        )
        .instrument(info_span!("reservations")),
    );
    let pay_poller = pay_client
        .clone()
        .zip(config.pay.as_ref())
        .map(|(client, cfg)| {
            tokio::spawn(
                pay::run(
                    pay::Payments {
                        client,
                        store: store.clone(),
                        link: link.clone(),
                        configured_iid: config.cashpad.installation_id.clone(),
                        health: health.clone(),
                        wake: wake_pay.clone(),
                        settle_resend: cfg.settle_resend,
                        settle_resends: cfg.settle_resends,
                    },
                    stop_delivery.clone(),
                )
                .instrument(info_span!("pay")),
            )
        });
    let state_dir = config
        .store_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let advert = match identity::device_id(&state_dir) {
        Ok(device) => Some(tokio::spawn(identity::advertise(
            config.cashpad.clone(),
            device,
            config.http_listen.map(|a| a.port()).unwrap_or(0),
            link.clone(),
            stop_rest.clone(),
        ))),
        Err(e) => {
            warn!(
                "cannot create the device id in {}: {e}",
                state_dir.display()
            );
            None
        }
    };
    let marker = state_dir.join(provision::PROVISIONED_MARKER);
    if marker.exists() {
        tokio::spawn(first_start_summary(
            health.clone(),
            marker,
            stop_rest.clone(),
        ));
    }
    let persist = tokio::spawn(health.clone().persist_loop(
        store.clone(),
        HEALTH_EVERY,
        config.history_sample,
        stop_rest.clone(),
    ));
    let status_line = tokio::spawn(sd_status::run(
        health.clone(),
        store.clone(),
        config.pay.is_some(),
        stop_rest.clone(),
    ));

    let updater = update_paths.and_then(|paths| {
        update::daemon::Updater::new(
            config.update.clone(),
            config.timezone,
            paths,
            update::daemon::Activity::Store(store.clone()),
        )
        .inspect_err(|e| warn!("update: {e:#}; self-update off"))
        .ok()
    });
    let retention = tokio::spawn(
        outbox::retention::run(
            outbox::retention::Retention {
                store: store.clone(),
                cfg: config.retention.clone(),
                tz: config.timezone,
                window: config.update.window,
                clock: Arc::new(chrono::Utc::now),
            },
            stop_rest.clone(),
        )
        .instrument(info_span!("retention")),
    );
    let updates = updater.map(|updater| {
        tokio::spawn(
            update::daemon::run(update::daemon::Task {
                updater,
                store: store.clone(),
                pending: pending_update,
                started,
                shutdown: shutdown.clone(),
                stop: stop_rest.clone(),
            })
            .instrument(info_span!("update")),
        )
    });

    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("stopping: no new POS messages; finishing the current commit");
    stop_input.cancel();
    let _ = intake.await;
    stop_session.cancel();
    let _ = session.await;
    let _ = status.await;
    stop_delivery.cancel();
    let _ = dispatcher.await;
    if let Some(p) = pay_poller {
        let _ = p.await;
    }
    let _ = links.await;
    stop_rest.cancel();
    let _ = poller.await;
    if let Some(page) = page {
        let _ = page.await;
    }
    let _ = persist.await;
    let _ = status_line.await;
    let _ = retention.await;
    if let Some(a) = advert {
        let _ = a.await;
    }
    if let Some(u) = updates {
        let _ = u.await;
    }
    drop(store);
    info!("stopped");
    Ok(())
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
    path: &std::path::Path,
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
                watchdog_ping();
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
async fn check_store(path: std::path::PathBuf, fresh: bool, shutdown: CancellationToken) {
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
async fn first_start_summary(
    health: Health,
    marker: std::path::PathBuf,
    cancel: CancellationToken,
) {
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

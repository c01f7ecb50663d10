//! zenchef-edge: the on-premise agent that bridges a restaurant's Cashpad
//! POS with Zenchef (reservations) and Zenchef Pay.
//!
//! It finds the POS on the LAN by mDNS, takes its events over MQTT, keeps
//! them in SQLite (acknowledging only what is durable), forwards them to
//! Zenchef in per-order order once online, and publishes Zenchef's
//! reservations back to the POS.
//!
//! # Layout
//! - [`config`]: the configuration file (agent-interface.md), validation,
//!   secrets.
//! - [`pos`]: the POS side — [`pos::discovery`] (mDNS), [`pos::session`]
//!   (MQTT), [`pos::event`] (envelope and types), [`pos::intake`] (store
//!   then ack).
//! - [`outbox`]: the SQLite store ([`outbox::store`], group commit on its
//!   own thread), migrations, the outbox SQL, and [`outbox::dispatcher`]
//!   (per-order FIFO delivery, retries, dead letters).
//! - [`sync`]: the rules of sync-rules.md as pure functions (matching,
//!   plans, order state).
//! - [`zenchef`]: the Zenchef API client and the reservation poller.
//! - [`health`]: the daemon's view of its links, for `status`.
//! - [`cli`]: the technician commands.
//!
//! [`run`] is the daemon; `main.rs` only builds the runtime, sets up
//! logging, handles signals and dispatches the command line.

pub mod cli;
pub mod config;
pub mod health;
pub mod logging;
pub mod outbox;
pub mod pos;
pub mod sync;
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
/// them in the order of ARCHITECTURE.md ("Shutdown order"): stop taking POS
/// input and finish the current commit and its acks → close MQTT cleanly
/// (`online:false`) → let in-flight Zenchef calls finish (bounded) → stop
/// the store.
///
/// Errors: the store cannot be opened, or the mDNS daemon cannot start.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    install_crypto();
    warn_if_config_readable(&config);

    let (store, outcome) = Store::open(&config.store_path)
        .with_context(|| format!("opening the store {}", config.store_path.display()))?;
    if let OpenOutcome::MovedAside(aside) = &outcome {
        error!(
            "STORE REPLACED: the previous store was unreadable and is kept at {} for a technician",
            aside.display()
        );
    }
    info!(
        "zenchef-edge {LONG_VERSION} started: store {}, restaurant {}",
        config.store_path.display(),
        config.zenchef.restaurant_id
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mode = if config.cashpad.static_addr.is_some() {
        "static"
    } else {
        "discovery"
    };
    let health = Health::new(mode);
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
    let deliverer = outbox::dispatcher::Deliverer {
        store: store.clone(),
        zenchef: zenchef.clone(),
        ctx: sync::Ctx {
            tz: config.timezone,
            currency: config.currency.clone(),
        },
        window: sync::matching::Window {
            before_min: config.zenchef.match_before_min,
            after_min: config.zenchef.match_after_min,
        },
        cfg: config.delivery.clone(),
        health: health.clone(),
        nudge_poller: nudge.clone(),
    };
    let dispatcher = tokio::spawn(
        outbox::dispatcher::run(deliverer, touched_rx, stop_delivery.clone())
            .instrument(info_span!("delivery")),
    );
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
    let persist = tokio::spawn(health.clone().persist_loop(
        store.clone(),
        HEALTH_EVERY,
        stop_rest.clone(),
    ));

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
    stop_rest.cancel();
    let _ = poller.await;
    let _ = persist.await;
    drop(store);
    info!("stopped");
    Ok(())
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

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
//!   own thread), migrations, and all the SQL, a typed module per table
//!   family: events, the queue and its two lanes, orders and their stored
//!   truth, Zenchef Pay payments and checks, link requests, the
//!   reservation mirror, counters and `kv`.
//! - [`delivery`]: the two lanes of each order (Zenchef, Zenchef Pay), in
//!   `seq` order and independent of each other; the pure scheduler
//!   (backoff, outage probes, pauses); retries and dead letters.
//! - [`sync`]: the sync rules (docs/protocol/sync-rules.md) as pure
//!   functions (matching, plans, order truth, payment verdicts): the
//!   domain crate's (`crates/domain`, no I/O), named here.
//! - [`zenchef`]: the Zenchef API client, its typed wire bodies, and the
//!   reservation poller.
//! - [`health`]: the daemon's view of its links, for `status`;
//!   [`health_store`]: writes it, and its history, to the store.
//! - [`sd_status`]: the same, as the one-line `STATUS=` of `systemctl
//!   status`, and the journal lines of outages starting and ending.
//! - [`watchdog`]: the systemd watchdog ping, sent on progress;
//!   [`version`]: the version this binary reports (its version slot).
//! - [`message_ids`]: the journal `MESSAGE_ID`s of key events.
//! - [`identity`]: the device id and the box's own mDNS advertisement.
//! - [`provision`]: zero-touch provisioning from the boot partition.
//! - [`pay`]: Zenchef Pay payments (polling, settle commands and their
//!   life, acks; checks are pushed by the Pay lane of [`delivery`]) and
//!   the connector's typed wire bodies.
//! - [`links`]: applies the manual links queued by `link` / `unlink`
//!   (sync-rules 4b).
//! - [`status`]: the facts `status`, the page and `status.json` show,
//!   read once, and their renderings (text, JSON, page, chart).
//! - [`tables`]: the table-name check of sync rule 4 (POS floor plan
//!   against Zenchef's tables).
//! - [`http`]: the local status page, `status.json` and the webhook nudge.
//! - [`update`]: signed self-update in the maintenance window, with
//!   automatic rollback (docs/README-update.md).
//! - [`cli`]: the technician commands; [`exit`]: their exit codes;
//!   [`privileges`]: becoming the state directory's owner when run as root.
//! - [`files`]: atomic writes and capped reads that never follow a
//!   planted symbolic link.
//! - [`retry`]: the one backoff every retrying loop uses; [`time`]: the
//!   box's clock (never used for ordering) and the maintenance window's
//!   arithmetic; [`tls`]: the crypto provider.
//!
//! The rooms and the path of one event: docs/architecture.md.
//!
//! [`daemon::Daemon`] is the daemon (its task graph and shutdown order);
//! `main.rs` only builds the runtime, sets up logging, handles signals and
//! dispatches the command line.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod exit;
pub mod files;
pub mod fleet;
pub mod health;
pub mod health_store;
pub mod http;
pub mod identity;
pub mod links;
pub mod logging;
pub mod message_ids;
pub mod outbox;
pub mod pay;
pub mod pos;
pub mod privileges;
pub mod provision;
pub mod retry;
pub mod sd_status;
pub mod status;
pub mod sync;
pub mod tables;
pub mod time;
pub mod tls;
pub mod update;
pub mod version;
pub mod watchdog;
pub mod zenchef;

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

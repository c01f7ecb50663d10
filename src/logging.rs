//! Logging setup: journald under systemd, human-readable stderr elsewhere
//! (STYLE.md §5, agent-interface.md § Files).
//!
//! Under systemd (`JOURNAL_STREAM` set) events go to journald through
//! tracing-journald with their span fields as journal fields — `event_id`
//! becomes `EVENT_ID`, so `journalctl -u zenchef-edge ORDER_ID=O-881`
//! works — and `SYSLOG_IDENTIFIER=zenchef-edge`. If the journal socket is
//! missing, logging falls back to stderr, never panics. Colours only on a
//! terminal (a log file or a pipe gets plain text a technician can grep).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `default_filter` is used unless
/// `RUST_LOG` is set (e.g. `info`, `zenchef_edge=debug`).
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("zenchef-edge".into());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .try_init();
}

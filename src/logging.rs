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

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `default_filter` is used unless
/// `RUST_LOG` is set: a comma-separated list of `level` and
/// `target=level` (e.g. `info`, `info,zenchef_edge=debug,rumqttc=warn`).
///
/// The filter is tracing-subscriber's `Targets`, not `EnvFilter`: the same
/// syntax for levels and targets, without span and field filters, and
/// without the regex engine that `EnvFilter` links (≈ 0.3 MiB of the
/// binary, see docs/benchmarks.md). An empty or unreadable filter falls
/// back to `default_filter`, then to `info`.
pub fn init(default_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .and_then(|f| Targets::from_str(&f).ok())
        .or_else(|| Targets::from_str(default_filter).ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
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

//! Logging setup: journald under systemd, human-readable stderr elsewhere
//! (docs/protocol/agent-interface.md § Files).
//!
//! Under systemd (`JOURNAL_STREAM` names the stream stderr is connected
//! to, see [`journal_stream_is_stderr`]) events go to journald through
//! tracing-journald with their span fields as journal fields — `event_id`
//! becomes `EVENT_ID`, so `journalctl -u zenchef-edge ORDER_ID=O-881`
//! works — and `SYSLOG_IDENTIFIER=zenchef-edge`. If the journal socket is
//! missing, logging falls back to stderr, never panics. Colours only on a
//! terminal (a log file or a pipe gets plain text a technician can grep).
//!
//! Key events carry a `MESSAGE_ID` ([`crate::message_ids`]), explained by
//! the message catalog the package ships (`journalctl -x`).

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
    if journal_stream_is_stderr(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    ) && let Ok(layer) = tracing_journald::layer()
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

/// Whether stderr is still the journal stream systemd connected:
/// `journal_stream` is the `JOURNAL_STREAM` variable (`"<device>:<inode>"`,
/// both decimal, systemd.exec(5)), `stderr` the device and inode of file
/// descriptor 2 (fstat(2)). Only a match means "log to journald natively":
/// a program started by a service inherits the variable with its stderr
/// redirected elsewhere (a pipe, a file, a terminal), and must then log
/// there. A missing or malformed variable, or an unknown stderr, is no
/// match.
pub fn journal_stream_is_stderr(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(d), Ok(i), Some(actual)) => (d, i) == actual,
        _ => false,
    }
}

/// Device and inode of file descriptor 2, as fstat(2) gives them (on a
/// duplicate of it: same open file); `None` when stderr is closed.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_counts_only_when_it_names_stderr() {
        let stderr = Some((8, 4242));
        assert!(journal_stream_is_stderr(Some("8:4242"), stderr));
        assert!(journal_stream_is_stderr(Some("8:4242\n"), stderr));
        // Inherited by a child whose stderr was redirected.
        assert!(!journal_stream_is_stderr(Some("8:4243"), stderr));
        assert!(!journal_stream_is_stderr(Some("9:4242"), stderr));
        // Not under systemd, or nonsense.
        assert!(!journal_stream_is_stderr(None, stderr));
        for bad in ["", "8", "8:", ":4242", "x:4242", "8:4242:1", "-8:4242"] {
            assert!(!journal_stream_is_stderr(Some(bad), stderr), "{bad:?}");
        }
        // stderr closed or unreadable.
        assert!(!journal_stream_is_stderr(Some("8:4242"), None));
    }

    #[test]
    fn stderr_identity_is_the_inode_behind_fd_2() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert_eq!(stderr_identity(), Some((meta.dev(), meta.ino())));
    }
}

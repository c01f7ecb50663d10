//! `zenchef-edge status [--json]`: prints the facts of `src/status/mod.rs`
//! (text on a terminal, coloured there unless `NO_COLOR`, or `--json`) and
//! says by its exit code whether the store could be read.

use std::io::IsTerminal;

use chrono::Utc;

use crate::config::Config;
use crate::exit::{self, StoreAccess};
use crate::status::{json, read, text};

/// `status --json` with an invalid configuration: the same keys, with
/// `config_state` `invalid`, the error, and nothing else known.
pub fn print_config_error(e: &crate::config::ConfigError) {
    println!("{}", json::config_error(e, Utc::now()));
}

/// Prints the status, text or JSON, whatever the store's state. Exit code
/// 0 when the store was read (the status is information, not a check:
/// `doctor` is the command whose exit code judges); when it was not, 66
/// (missing), 77 (permission denied) or 74 (unreadable otherwise), after
/// printing it all the same; 78 when a newer release made it unusable
/// for this binary (the daemon's own exit code on it).
pub fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let s = read(config)?;
    if json {
        println!("{}", json::render(&s)?);
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!(
            "{}",
            text::render_text(&s, config.timezone, Utc::now(), color)
        );
    }
    Ok(match s.store_state {
        "ok" => exit::OK,
        "missing" => exit::NOINPUT,
        "incompatible" => exit::CONFIG,
        _ => match exit::store_access(&config.store_path) {
            StoreAccess::PermissionDenied(_) => exit::NOPERM,
            _ => exit::IOERR,
        },
    })
}

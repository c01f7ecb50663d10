//! `zenchef-edge status --json` and `GET /status.json`: one [`Status`]
//! object, pretty-printed; its keys are documented in `docs/status-json.md`
//! and only ever grow.

use chrono::{DateTime, Utc};

use super::{ApiState, ApiSummary, PosState, PosSummary, Status, StatusCounts};

/// The JSON of `s` (pretty-printed, no trailing newline).
///
/// Errors: serde's (none for a [`Status`] in practice).
pub fn render(s: &Status) -> serde_json::Result<String> {
    serde_json::to_string_pretty(s)
}

/// The JSON when the configuration is invalid, checked at `now`: the same
/// keys as [`render`], with `config_state` `invalid`, the error, and
/// nothing else known.
pub fn config_error(e: &crate::config::ConfigError, now: DateTime<Utc>) -> String {
    let v = serde_json::json!({
        "version": crate::update::running_version_str(),
        "store": null,
        "store_state": "unknown",
        "store_error": null,
        "currency": null,
        "config_state": "invalid",
        "config_error": e.to_string(),
        "checked_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "daemon_running": false,
        "daemon_alive": false,
        "daemon": null,
        "counts": StatusCounts::default(),
        "oldest_queued_age_s": null,
        "pos": PosSummary { state: PosState::Unknown, ..Default::default() },
        "zenchef": ApiSummary { state: ApiState::Unknown, ..Default::default() },
        "pay": ApiSummary { state: ApiState::Unknown, ..Default::default() },
        "last_reservation_sync": null,
        "update_state": "unknown",
        "update_problem": null,
        "payments_needing_person": [],
        "orders_needing_attention": [],
        "tables": null,
        "history": null,
        "store_usage": null,
        "store_moved_aside": null,
        "store_recovery": null,
        "update_held_by": [],
        "update_last_check": null,
        "fleet": crate::health::FleetHealth { state: "unknown".into(), ..Default::default() },
        "problems": [],
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

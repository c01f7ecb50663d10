//! Fleet reporting (docs/fleet.md): the box publishes its state, retained,
//! to the restaurant group's MQTT broker, so that support sees every box
//! without SSH.
//!
//! - [`report`]: the message — the facts of `status --json` without
//!   anything personal (schema 1), and the last will;
//! - [`connect`]: the MQTT options of a fleet connection (TLS from the
//!   configured files, the login), shared by the session, `doctor` and
//!   `fleet-view`, and the classification of its failures;
//! - [`session`]: the daemon's task — a second MQTT session, sharing
//!   nothing with the POS's, that keeps only the latest report;
//! - [`view`]: the table `zenchef-edge fleet-view` prints.
//!
//! The fleet side never hurts the restaurant: nothing is accepted from
//! it, its failures show only in `status` and `doctor` (the `fleet` line,
//! never a `problem`), and a slow or absent broker costs one report of
//! memory.

use serde::{Deserialize, Serialize};

pub mod connect;
pub mod report;
pub mod session;
pub mod view;

/// The fleet session as the daemon last saw it: the `fleet` object of the
/// daemon record, and (with `state` `disabled` or `unknown` filled in by
/// `status`) the `fleet` object of `status --json`.
///
/// `state`: `connecting` (no session yet), `connected`, `refused` (the
/// broker refused the login or the box's certificate), `tls_error` (the
/// broker's certificate is not trusted, or another TLS failure),
/// `unreachable` (DNS, TCP, timeout), `misconfigured` (a file of `[fleet]`
/// cannot be read or used); in `status` also `disabled` (no `[fleet]`)
/// and `unknown` (no fresh daemon record). Times are the box clock, UTC.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FleetHealth {
    /// See the type's documentation; empty in a record of a daemon that
    /// runs no fleet session.
    pub state: String,
    /// The broker, `mqtts://host:port` (no credential).
    pub broker: Option<String>,
    /// The topic the box publishes on (`PREFIX/<device_id>/status`).
    pub topic: Option<String>,
    /// Since when the session is up (UTC).
    pub connected_since: Option<String>,
    /// When the last report was handed to the broker (UTC).
    pub last_published_at: Option<String>,
    /// Reports published since the daemon started.
    pub published: u64,
    /// The last failure (no secret), `None` before any.
    pub last_error: Option<String>,
    /// When it happened (UTC).
    pub last_error_at: Option<String>,
}

impl FleetHealth {
    /// Whether this is the default record (a daemon without a fleet
    /// session): left out of the daemon record.
    pub fn is_default(&self) -> bool {
        *self == FleetHealth::default()
    }
}

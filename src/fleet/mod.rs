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

pub mod connect;
pub mod report;
pub mod session;
pub mod view;

pub use crate::health::FleetHealth;

//! Technician commands (docs/protocol/agent-interface.md § Command line), one file per
//! command, each with a `run()`. They read the store read-only (WAL makes
//! that safe while the daemon runs) or queue a change the daemon picks up
//! (`outbox retry`, `link` / `unlink`). [`page`] renders the facts of
//! `status` for the local status page (`http.rs`), [`chart`] its SVG chart
//! of the last hours.

pub mod chart;
pub mod doctor;
pub mod exit;
pub mod link;
pub mod orders;
pub mod outbox;
pub mod page;
pub mod pay_settings;
pub mod payments;
pub mod privileges;
pub mod self_test;
pub mod status;
pub mod tables;
pub mod update;

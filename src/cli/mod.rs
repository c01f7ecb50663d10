//! Technician commands (docs/protocol/agent-interface.md § Command line), one file per
//! command, each with a `run()`. They read the store read-only (WAL makes
//! that safe while the daemon runs) or queue a change the daemon picks up
//! (`outbox retry`, `link` / `unlink`). The facts of `status` and their
//! renderings (also served by `http.rs`) are in `src/status/`.

pub mod doctor;
pub mod fleet_view;
pub mod link;
pub mod orders;
pub mod outbox;
pub mod pay_settings;
pub mod payments;
pub mod self_test;
pub mod status;
pub mod tables;
pub mod update;

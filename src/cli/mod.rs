//! Technician commands (agent-interface.md § Command line), one file per
//! command, each with a `run()`. They read the store read-only (WAL makes
//! that safe while the daemon runs) or queue a change the daemon picks up.

pub mod outbox;
pub mod self_test;
pub mod status;

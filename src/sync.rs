//! The sync rules (docs/protocol/sync-rules.md) live in the domain crate
//! (`crates/domain`, [`domain::sync`]), pure and with no I/O; this path
//! keeps naming them in the agent. `delivery` makes the calls they decide,
//! `outbox` stores the results.

pub use domain::sync::*;

//! The update side of the daemon, and the check/apply flow shared with the
//! CLI.
//!
//! - [`boot()`]: the start bookkeeping `run()` calls first (before the store
//!   is opened): roll back an unconfirmed version, or note that this start
//!   runs one.
//! - [`run()`]: one task of the daemon. If this start runs a pending version,
//!   it confirms it once healthy (after `update.confirm_after_s`: the store
//!   answers a write, discovery/session tasks are running) or rolls it back
//!   at [`HEALTH_DEADLINE`]. Then it checks every 6 h ± 10 % and installs
//!   when the policy allows; after an install (or rollback) it asks `main`
//!   to exit with [`super::EX_RESTART`] and cancels the daemon's shutdown
//!   token, so the daemon stops in its usual order and systemd starts the
//!   new binary.
//! - [`Updater`]: manifest → plan (policy) → download → verify → install.
//!
//! # Layout
//! - [`boot`](mod@boot): the start bookkeeping and `update boot-check`;
//! - [`activity`]: what holds an update back (open orders, queued
//!   deliveries), from the store's typed reads;
//! - [`plan`]: the updater, its plan and one check;
//! - [`records`]: the daemon's records of its checks, for `status`,
//!   `doctor` and the fleet report;
//! - [`task`]: the daemon's task and its periodic loop.

pub mod activity;
pub mod boot;
pub mod plan;
pub mod records;
pub mod task;

pub use activity::{Activity, ActivityFacts, OpenOrder, holding_orders, open_orders};
pub use boot::{BootAction, HEALTH_DEADLINE, boot, boot_check};
pub use plan::{Outcome, Plan, Updater};
pub use records::{CheckFailures, FAILING_AFTER, FAILURES_KV_KEY, LAST_CHECK_KV_KEY, LastCheck};
pub use task::{Task, periodic, run};

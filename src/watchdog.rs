//! The systemd watchdog: the ping the intake loop, the dispatcher,
//! retention and the updater send when they make progress. Depends on no
//! other module of the agent, so the store and the updater can ping
//! without reaching the status line ([`crate::sd_status`]).

/// Tells systemd the service made progress (`WATCHDOG=1`). Called from the
/// intake loop, the dispatcher, retention and the updater, so it proves
/// work, not a timer. A no-op outside systemd.
pub fn ping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

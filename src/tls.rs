//! TLS for every client of the agent (Zenchef, Zenchef Pay, the update
//! server, MQTT over TLS): rustls with the ring provider and the box's CA
//! store.

/// Installs the process-wide rustls crypto provider (ring). Idempotent:
/// the daemon, `doctor` and the updater each call it before their first
/// TLS connection.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

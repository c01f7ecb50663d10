//! The POS side of the bridge (docs/protocol/cashpad-local.md): finding the Cashpad
//! server, the MQTT session with its broker, and intake of its events.
//!
//! - [`discovery`]: mDNS (`_cashpad._tcp`), TXT rules, POS selection.
//! - [`session`]: the rumqttc client and its event-loop task.
//! - [`anonymous`]: does the POS broker let in a client without a password
//!   (§2a: the broker is the trust boundary)?
//! - [`event`]: the event envelope and types, parsed and validated.
//! - [`intake`]: validated events → store → PUBACK.
//! - [`wire`]: what the agent publishes to the POS (reservations, its
//!   status), typed.

pub mod anonymous;
pub mod discovery;
pub mod event;
pub mod intake;
pub mod session;
pub mod wire;

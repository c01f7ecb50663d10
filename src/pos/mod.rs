//! The POS side of the bridge (docs/protocol/cashpad-local.md): finding the Cashpad
//! server, the MQTT session with its broker, and intake of its events.
//!
//! - [`discovery`]: mDNS (`_cashpad._tcp`), TXT rules, POS selection.
//! - [`session`]: the rumqttc client and its event-loop task.
//! - [`anonymous`]: does the POS broker let in a client without a password
//!   (§2a: the broker is the trust boundary)?
//! - [`guard`]: the frame guard between rumqttc and the broker (a message
//!   over the size limit is read past, never the end of intake).
//! - [`event`]: the event envelope and types, parsed and validated (the
//!   domain crate's [`domain::event`], named here).
//! - [`intake`]: validated events → store → PUBACK.
//! - [`scan`]: what the cut beginning of an unreadable payload tells of
//!   its id and order.
//! - [`wire`]: what the agent publishes to the POS (reservations, its
//!   status), typed.

pub mod anonymous;
pub mod discovery;
/// The POS events: the domain crate's (crates/domain), named here.
pub use domain::event;
pub mod guard;
pub mod intake;
pub mod scan;
pub mod session;
pub mod wire;

//! The Zenchef side of the bridge (docs/protocol/zenchef-api.md): the HTTP client with
//! its error classes, and the reservation poller that mirrors bookings to
//! the POS.

pub mod client;
pub mod poller;

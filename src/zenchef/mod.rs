//! The Zenchef side of the bridge (docs/protocol/zenchef-api.md): the HTTP client with
//! its error classes, the typed JSON bodies it sends and reads (`wire`),
//! and the reservation poller that mirrors bookings to the POS.

pub mod client;
pub mod poller;
pub mod wire;

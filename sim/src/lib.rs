//! Simulators for the zenchef-edge agent: everything outside the box, in process.
//!
//! Written from the written contracts only (docs/protocol/cashpad-local.md,
//! docs/protocol/zenchef-api.md, docs/protocol/zenchef-pay.md, docs/protocol/sync-rules.md), never from the agent's code, so that a
//! misreading of the spec by the agent is caught by tests instead of mirrored.
//! Everything binds `127.0.0.1` only; mDNS runs on loopback and a
//! non-standard port.
//!
//! # Layout
//! - [`broker`]: the Cashpad MQTT broker (rumqttd, in process).
//! - [`mdns`]: the Cashpad DNS-SD advert (`_cashpad._tcp.local.`).
//! - [`mosquitto`]: a real mosquitto process, for broker restarts and the
//!   fleet broker (TLS listeners, client certificates, an ACL).
//! - [`certs`]: a test certificate authority (CA, server and client
//!   certificates as PEM files).
//! - [`fleet`]: the fleet side of the agent: simulated boxes publishing
//!   their schema-1 status, a subscriber collecting them, a broker that
//!   never answers.
//! - [`pos`]: the Cashpad POS as an MQTT client: publishes events and the
//!   floor plan, records what the agent sends back.
//! - [`faults`]: the fault-injection layer both HTTP fakes run their
//!   requests through (outage, faults, latency, failure script, call log).
//! - [`zenchef`]: the Zenchef partner API fake (axum) with fault injection.
//! - [`pay`]: the Zenchef Pay POS-connector fake (axum): checks, guest
//!   payments, acks, with the same fault injection.
//! - [`scenario`]: a deterministic generated dinner service and its expected
//!   outcome.
//! - [`update_server`]: the agent's release server (signed manifests and
//!   archives) with fault injection.
//! - [`util`]: small shared helpers (free ports, waiting for conditions).

#![warn(missing_docs)]

pub mod broker;
pub mod certs;
pub mod faults;
pub mod fleet;
pub mod harness;
pub mod http_server;
pub mod mdns;
pub mod mosquitto;
pub mod pay;
pub mod pos;
pub mod scenario;
pub mod update_server;
pub mod util;
pub mod zenchef;

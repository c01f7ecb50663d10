//! The bridge's domain: the POS events and the value types the rules speak
//! in (cents, signed lines, check lines, order, booking and payment
//! states), and the sync rules of docs/protocol/sync-rules.md as pure
//! functions — events and state in, decisions out.
//!
//! Nothing here does I/O: the crate depends on no SQLite, HTTP, MQTT or
//! async runtime, so the compiler refuses a rule that reaches for the store
//! or the network, and the rules' table tests run alone
//! (`cargo test -p zenchef-edge-domain`). The agent's adapters (the POS
//! session and intake, the Zenchef and Zenchef Pay clients, the outbox) map
//! these values to their wire and SQL forms.
//!
//! # Layout
//! - [`event`]: the POS event envelope and types, parsed and validated
//!   (docs/protocol/cashpad-local.md §3–4).
//! - [`booking`]: a Zenchef booking's status and the bodies a plan decides
//!   (walk-in, `pos_ticket`), as a stored plan keeps them.
//! - [`links`]: manual links (rule 4b): refuse, wait or apply a
//!   technician's `link` / `unlink`.
//! - [`payments`]: a Zenchef Pay payment's states and transitions (rules
//!   6 and 7): listed, reported by the POS, its bill closed without it.
//! - [`tables`]: the table-name check of rule 4 (POS floor plan against
//!   Zenchef's tables: identical, near-misses, one side only).
//! - [`sync`]: the rules — matching (rule 4), Zenchef plans, the order's
//!   truth and its check, the judgement of a Zenchef Pay payment (rule 6),
//!   late events (rule 10).

pub mod booking;
pub mod event;
pub mod links;
pub mod payments;
pub mod sync;
pub mod tables;

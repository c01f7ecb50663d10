//! Journal message ids: one fixed 128-bit id (32 lowercase hex digits, as
//! `systemd-id128 new` prints them) per kind of event a technician looks
//! for, sent as the journal field `MESSAGE_ID`.
//!
//! A log line carries one by naming the field `message_id` (tracing-journald
//! upper-cases field names, so it becomes `MESSAGE_ID=`):
//!
//! ```ignore
//! error!(message_id = message_ids::DEAD_LETTER, "event {id} is a dead letter: …");
//! ```
//!
//! On the box, `journalctl MESSAGE_ID=<id>` finds every such line, and
//! `journalctl -x` shows the explanation from the message catalog the
//! package ships (`packaging/zenchef-edge.catalog`, installed as
//! `/usr/lib/systemd/catalog/zenchef-edge.catalog`; catalog(7)). Every id
//! here has an entry there, and an id never changes meaning once released:
//! a new kind gets a new id. Under stderr logging (outside systemd) the field
//! shows as `message_id=…` on the line.

/// An event of the Zenchef lane, or a Zenchef Pay check push, can never
/// succeed as it is and is parked as a dead letter; later calls of the same
/// order and lane wait behind it (`zenchef-edge outbox retry`).
pub const DEAD_LETTER: &str = "4fac5ba927984ba39ef0914e4d897685";

/// A Zenchef Pay payment was refused (Zenchef Pay refunds the guest): the
/// bill was already paid or closed, the order is unknown, or the amount is
/// more than what is left to pay.
pub const PAYMENT_REFUSED: &str = "f4adab98ff254ccbbec747e33f1c14d6";

/// A Zenchef Pay payment needs a person: the POS did not answer the settle
/// command, recorded a refunded payment, Zenchef Pay refused an ack, or the
/// payment could not be read (`zenchef-edge payments`).
pub const PAYMENT_NEEDS_PERSON: &str = "bc8e8b31f0fd46d3992041f989472323";

/// The store could not be opened and was moved aside; a new, empty store
/// took its place. The old file is kept for a technician.
pub const STORE_MOVED_ASIDE: &str = "6b948edbbfdf4635a039a2a71ec2e0a2";

/// A signed update was installed; the agent restarts into it, which must
/// then confirm its health within 120 s.
pub const UPDATE_INSTALLED: &str = "9cf415fe3bd64151a3ed4f91399eccda";

/// A new version did not prove healthy and the previous binary was put
/// back; that version is never installed again automatically.
pub const UPDATE_ROLLED_BACK: &str = "d6f9d096ad494b519577144d46a32c43";

/// Zenchef stopped answering (connection, timeout, 5xx, 429): deliveries
/// wait and are retried; nothing is lost.
pub const ZENCHEF_OUTAGE_BEGAN: &str = "755729d3b32b4beb80babb8ac4901102";

/// Zenchef answers again after an outage; the queue drains.
pub const ZENCHEF_OUTAGE_ENDED: &str = "d12c1c6a8ee948d5bcc526850f01849b";

/// Zenchef Pay stopped answering: check pushes and payment polling wait.
pub const PAY_OUTAGE_BEGAN: &str = "3ed92204daa845249e0e0c9a2fc35e79";

/// Zenchef Pay answers again after an outage.
pub const PAY_OUTAGE_ENDED: &str = "6a115e4af00146d09728b897276b904d";

/// Every id with its constant's name, for checks against the catalog.
pub const ALL: &[(&str, &str)] = &[
    ("DEAD_LETTER", DEAD_LETTER),
    ("PAYMENT_REFUSED", PAYMENT_REFUSED),
    ("PAYMENT_NEEDS_PERSON", PAYMENT_NEEDS_PERSON),
    ("STORE_MOVED_ASIDE", STORE_MOVED_ASIDE),
    ("UPDATE_INSTALLED", UPDATE_INSTALLED),
    ("UPDATE_ROLLED_BACK", UPDATE_ROLLED_BACK),
    ("ZENCHEF_OUTAGE_BEGAN", ZENCHEF_OUTAGE_BEGAN),
    ("ZENCHEF_OUTAGE_ENDED", ZENCHEF_OUTAGE_ENDED),
    ("PAY_OUTAGE_BEGAN", PAY_OUTAGE_BEGAN),
    ("PAY_OUTAGE_ENDED", PAY_OUTAGE_ENDED),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_128_bit_lowercase_hex() {
        for (name, id) in ALL {
            assert_eq!(id.len(), 32, "{name}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{name}: {id}"
            );
        }
        let mut ids: Vec<&str> = ALL.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len(), "an id is used twice");
    }
}

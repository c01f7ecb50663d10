//! The outbox: the SQLite store and all of its SQL. Nothing outside this
//! module writes a statement (tests aside): the rest of the agent calls
//! the typed functions of one module per table family, plain functions on
//! a `&Connection` that run inside the store thread's group transaction
//! ([`store::Store::write`]):
//! - [`activity`]: what holds an update back, read in one go;
//! - [`handle`]: the store handle's typed methods for small values and
//!   counts;
//! - [`store`]: the store thread, opening, group commit, [`StoreError`];
//! - [`migrations`]: the schema and its versions;
//! - [`events`]: received events, intake's batch, quarantined payloads;
//! - [`queue`]: the per-order delivery queue with its two lanes and their
//!   [`State`];
//! - [`orders`]: what the Zenchef lane applied of each order and the
//!   order's truth;
//! - [`payments`]: Zenchef Pay payments ([`payments::PaymentState`]) and
//!   checks;
//! - [`links`]: manual link requests;
//! - [`mirror`]: the reservation mirror;
//! - [`kv`]: named counters and values;
//! - [`retention`]: what is deleted after the retention window.
//!
//! Delivery itself (who calls what, when) is in `crate::delivery`.

pub mod activity;
pub mod events;
pub mod handle;
pub mod kv;
pub mod links;
pub mod migrations;
pub mod mirror;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod recover;
pub mod retention;
pub mod status;
pub mod store;

/// The store's SQLite handle, as [`store::open_read_only`] and
/// [`store::open_for_cli`] give it. Outside `src/outbox/` it is only passed
/// on to the store's functions (the statements stay in this module:
/// `tests/modules.rs` keeps the name `rusqlite` inside it).
pub type Connection = rusqlite::Connection;

pub use events::{IntakeItem, IntakeOutcome, REJECTED_KEEP_BYTES, insert_batch};
pub use kv::{bump, counter, kv_get, kv_set};
pub use orders::{
    AttentionOrder, link_walkin, linked_open_bookings, load_order, order_attention, order_truth,
    save_order,
};
pub use payments::{NeedsPerson, PaymentChange};
pub use queue::{Lane, OutboxItem, State};
pub use store::{Store, StoreError};

/// Counts shown by `status` (and the demo summary).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Events stored (new, valid).
    pub received: i64,
    /// Second deliveries of an already stored `event_id`.
    pub duplicates: i64,
    /// Events of an unknown type (stored, skipped).
    pub unknown_type: i64,
    /// Outbox rows delivered (Zenchef lane).
    pub delivered: i64,
    /// Outbox rows waiting in the Zenchef lane.
    pub queued: i64,
    /// Dead letters of the Zenchef lane.
    pub dead: i64,
    /// Outbox rows waiting in the Zenchef Pay lane (check pushes).
    pub pay_queued: i64,
    /// Dead letters of the Zenchef Pay lane.
    pub pay_dead: i64,
    /// Quarantined payloads.
    pub rejected: i64,
    /// Walk-ins created in Zenchef.
    pub walkins_created: i64,
    /// Orders still open on the POS.
    pub orders_open: i64,
    /// Reservations currently published to the POS.
    pub reservations_published: i64,
    /// Zenchef Pay check versions accepted (PUT answered 2xx or 409 ≥ ours).
    pub pay_checks_pushed: i64,
    /// Zenchef Pay payments settled in the POS and acknowledged.
    pub pay_settled: i64,
    /// Zenchef Pay payments refused (acked `rejected`, guest refunded).
    pub pay_rejected: i64,
    /// Zenchef Pay payments waiting for the POS (settle command sent or to send).
    pub pay_pending: i64,
    /// Zenchef Pay payments that need a person (a silent POS after the
    /// resends, an unreadable payment, …).
    pub pay_needs_person: i64,
    /// Zenchef Pay payments adopted from before this store, waiting for
    /// the POS to decide them.
    pub pay_adopted: i64,
    /// Known orders that need attention (one of their events was
    /// quarantined, sync rule 9).
    pub orders_attention: i64,
}

/// Reads the counts (works on a read-only connection).
pub fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    let q = |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    Ok(Counts {
        received: counter(conn, "received")?,
        duplicates: counter(conn, "duplicates")?,
        unknown_type: counter(conn, "unknown_type")?,
        delivered: counter(conn, "delivered")?,
        walkins_created: counter(conn, "walkins_created")?,
        queued: q("SELECT COUNT(*) FROM outbox WHERE state = 'queued'")?,
        dead: q("SELECT COUNT(*) FROM outbox WHERE state = 'dead'")?,
        rejected: q("SELECT COUNT(*) FROM rejected")?,
        orders_open: q("SELECT COUNT(*) FROM orders WHERE state = 'open'")?,
        reservations_published: q("SELECT COUNT(*) FROM reservations WHERE body IS NOT NULL")?,
        pay_checks_pushed: counter(conn, "pay_checks_pushed")?,
        pay_settled: q("SELECT COUNT(*) FROM pay_payments WHERE state = 'settled'")?,
        pay_rejected: q("SELECT COUNT(*) FROM pay_payments WHERE state IN ('reject', 'rejected')")?,
        pay_pending: q(
            "SELECT COUNT(*) FROM pay_payments WHERE state IN ('settle', 'command_sent')",
        )?,
        // Read-only readers (`status`) may meet a store not yet migrated
        // by the daemon: these columns then read as 0.
        // `pay_state != 'done' AND …` lets the partial index
        // outbox_pay_pending answer (alone, `pay_state = 'queued'` scans
        // every row ever kept: seconds on a store of years).
        pay_queued: q(
            "SELECT COUNT(*) FROM outbox WHERE pay_state != 'done' AND pay_state = 'queued'",
        )
        .unwrap_or(0),
        pay_dead: q("SELECT COUNT(*) FROM outbox WHERE pay_state != 'done' AND pay_state = 'dead'")
            .unwrap_or(0),
        pay_needs_person: q(
            "SELECT COUNT(*) FROM pay_payments WHERE attention IS NOT NULL AND handled_at IS NULL",
        )
        .unwrap_or(0),
        pay_adopted: q("SELECT COUNT(*) FROM pay_payments WHERE state = 'adopted'").unwrap_or(0),
        orders_attention: orders::attention_orders(conn)
            .map(|v| v.len() as i64)
            .unwrap_or(0),
    })
}

#[cfg(test)]
#[path = "plans_tests.rs"]
mod plans_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use domain::event::parse;
    use queue::{next_pending, ready_orders, record_failure};

    fn stored(order: &str) -> IntakeOutcome {
        IntakeOutcome::Stored {
            order: Some(order.into()),
            payments: vec![],
        }
    }

    fn event(id: &str, seq: u64, order: &str) -> IntakeItem {
        let body = serde_json::json!({"event_id":id,"seq":seq,"type":"table.moved",
            "occurred_at":"2026-11-29T19:42:05+01:00",
            "data":{"order_id":order,"from_table":"1","to_table":"2"}})
        .to_string();
        IntakeItem::Event {
            event: parse(body.as_bytes()).unwrap(),
            body,
        }
    }

    #[tokio::test]
    async fn duplicates_and_per_order_heads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let (store, _) = Store::open(&path).unwrap();
        let out = store
            .write(|c| {
                insert_batch(
                    c,
                    &[
                        event("a", 2, "O-1"),
                        event("b", 1, "O-1"),
                        event("c", 3, "O-2"),
                        event("a", 2, "O-1"),
                    ],
                    true,
                )
            })
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                stored("O-1"),
                stored("O-1"),
                stored("O-2"),
                IntakeOutcome::Duplicate
            ]
        );
        drop(store);
        // A second open of the same file (as after a restart) sees it all.
        let (store, outcome) = Store::open(&path).unwrap();
        assert_eq!(outcome, store::OpenOutcome::Opened);
        let (head, ready, counts) = store
            .read(|c| {
                Ok((
                    next_pending(c, Lane::Zenchef, "O-1")?,
                    ready_orders(c, Lane::Zenchef)?,
                    counts(c)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(
            head.unwrap().event_id,
            "b",
            "lowest seq first, whatever the arrival order"
        );
        assert_eq!(ready, vec!["O-1".to_string(), "O-2".to_string()]);
        assert_eq!(
            (
                counts.received,
                counts.duplicates,
                counts.queued,
                counts.pay_queued
            ),
            (3, 1, 3, 3)
        );
    }

    #[tokio::test]
    async fn a_dead_head_holds_its_order_but_not_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(|c| {
                insert_batch(
                    c,
                    &[
                        event("a", 1, "O-1"),
                        event("b", 2, "O-1"),
                        event("c", 3, "O-2"),
                    ],
                    true,
                )
            })
            .await
            .unwrap();
        let (zenchef, pay) = store
            .write(|c| {
                let head = next_pending(c, Lane::Zenchef, "O-1")?.unwrap();
                record_failure(c, head.id, None, "422 unknown table", true)?;
                Ok((ready_orders(c, Lane::Zenchef)?, ready_orders(c, Lane::Pay)?))
            })
            .await
            .unwrap();
        assert_eq!(zenchef, vec!["O-2".to_string()]);
        assert_eq!(
            pay,
            vec!["O-1".to_string(), "O-2".to_string()],
            "a dead Zenchef call never holds the order's Pay lane"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        std::fs::write(&path, b"this is not an SQLite file, just garbage bytes ....................................................................").unwrap();
        let (store, outcome) = Store::open(&path).unwrap();
        let store::OpenOutcome::MovedAside(aside) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(aside.exists());
        assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not"));
        let n = store.read(counts).await.unwrap();
        assert_eq!(n, Counts::default());
    }
}

//! What holds an update back: the open orders (a table left open for
//! longer than `update.open_order_max_h` no longer does), what waits for a
//! delivery, and since when the outbox is idle. The store reads the rows
//! ([`crate::outbox::activity`]); the rules are here.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::UpdateError;
use crate::outbox::Store;
use crate::outbox::activity::ActivityRows;
use crate::outbox::orders::OpenOrderRow;

/// Where the policy's activity facts come from.
#[derive(Clone)]
pub enum Activity {
    /// The daemon's store handle.
    Store(Store),
    /// The store file, opened read-only (CLI).
    File(PathBuf),
}

/// Open orders, queued events, time since the outbox last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityFacts {
    /// Orders in state `open` that hold updates back: open for less than
    /// `update.open_order_max_h`, or since an unknown time.
    pub open_orders: i64,
    /// Orders open for longer than `update.open_order_max_h` (a table
    /// left open on the POS): no longer counted.
    pub stale_orders: i64,
    /// Outbox rows `queued` in either lane (Zenchef, Zenchef Pay), plus
    /// Zenchef Pay payments whose settle command or ack is not done.
    pub queued: i64,
    /// Since the newest `outbox.updated_at` (`None`: empty outbox).
    pub idle_for: Option<Duration>,
}

/// An open order and since when, for `status` ("what holds the update
/// back") and the update log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenOrder {
    /// POS order id.
    pub order_id: String,
    /// Its table (as the Zenchef lane last applied it).
    pub table: String,
    /// When the agent stored its first event (box clock, UTC, RFC 3339);
    /// `None` when no event of it is stored.
    pub since: Option<String>,
    /// Open for longer than `update.open_order_max_h`: no longer holds
    /// updates back.
    pub stale: bool,
}

/// The open orders as the store read them (oldest first), each with
/// whether it still holds updates back at `now` (box clock): not when it
/// has been open for longer than `max_open`. An order whose first event
/// is unknown holds them back: the safe side.
pub fn open_orders(
    rows: Vec<OpenOrderRow>,
    now: DateTime<Utc>,
    max_open: Duration,
) -> Vec<OpenOrder> {
    let max = chrono::Duration::from_std(max_open).unwrap_or(chrono::Duration::MAX);
    rows.into_iter()
        .map(|r| {
            let stale = r
                .since
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .is_some_and(|t| now - t.with_timezone(&Utc) > max);
            OpenOrder {
                order_id: r.order_id,
                table: r.table,
                since: r.since,
                stale,
            }
        })
        .collect()
}

/// The open orders of `rows` (all of them, oldest first) that hold an
/// update back at `now` (not stale), at most `limit`.
pub fn holding_orders(
    rows: Vec<OpenOrderRow>,
    now: DateTime<Utc>,
    max_open: Duration,
    limit: usize,
) -> Vec<OpenOrder> {
    open_orders(rows, now, max_open)
        .into_iter()
        .filter(|o| !o.stale)
        .take(limit)
        .collect()
}

/// The policy's facts from the store's rows at `now`.
fn facts(rows: ActivityRows, now: DateTime<Utc>, max_open: Duration) -> ActivityFacts {
    let open = open_orders(rows.open_orders, now, max_open);
    let stale_orders = open.iter().filter(|o| o.stale).count() as i64;
    let open_orders = open.len() as i64 - stale_orders;
    let idle_for = rows
        .last_update
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| {
            (now - t.with_timezone(&Utc))
                .to_std()
                .unwrap_or(Duration::ZERO)
        });
    ActivityFacts {
        open_orders,
        stale_orders,
        queued: rows.waiting,
        idle_for,
    }
}

impl Activity {
    /// Reads the facts now; orders open for longer than `max_open` are
    /// counted apart (they no longer hold updates back).
    ///
    /// Errors: the store cannot be read (a missing store file counts as no
    /// activity: the agent never ran).
    pub async fn read(
        &self,
        now: DateTime<Utc>,
        max_open: Duration,
    ) -> Result<ActivityFacts, UpdateError> {
        match self {
            Activity::Store(s) => Ok(facts(s.activity().await?, now, max_open)),
            Activity::File(p) => {
                let p = p.clone();
                let rows = tokio::task::spawn_blocking(move || {
                    crate::outbox::activity::activity_of_file(&p)
                })
                .await
                .map_err(|e| UpdateError::io("reading the store", std::io::Error::other(e)))??;
                Ok(match rows {
                    Some(rows) => facts(rows, now, max_open),
                    // No store file: the agent never ran.
                    None => ActivityFacts {
                        open_orders: 0,
                        stale_orders: 0,
                        queued: 0,
                        idle_for: None,
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table left open on the POS holds updates back for a service day,
    /// not for ever; an order whose first event is unknown always does.
    #[tokio::test]
    async fn an_order_open_longer_than_a_service_day_no_longer_holds_updates() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-02T03:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        store
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO orders(order_id, table_name, state, last_seq) VALUES
                        ('O-forgotten', '7', 'open', 1), ('O-late', '12', 'open', 2),
                        ('O-unknown', '3', 'open', 3), ('O-paid', '4', 'paid', 4);
                     INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
                     VALUES ('e1', 1, 'table.opened', 'O-forgotten', '2026-11-30T12:00:00+01:00', '{}', 1,
                             '2026-11-30T11:00:00.000Z'),
                            ('e2', 2, 'table.opened', 'O-late', '2026-12-01T23:40:00+01:00', '{}', 1,
                             '2026-12-01T22:40:00.000Z'),
                            ('e3', 3, 'order.items_sent', 'O-late', '2026-12-02T00:10:00+01:00', '{}', 1,
                             '2026-12-01T23:10:00.000Z');",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let sixteen = Duration::from_secs(16 * 3600);
        let a = Activity::Store(store.clone())
            .read(now, sixteen)
            .await
            .unwrap();
        assert_eq!((a.open_orders, a.stale_orders), (2, 1), "{a:?}");
        let held = holding_orders(store.open_orders().await.unwrap(), now, sixteen, 10);
        assert_eq!(
            held,
            vec![
                OpenOrder {
                    order_id: "O-late".into(),
                    table: "12".into(),
                    since: Some("2026-12-01T22:40:00.000Z".into()),
                    stale: false
                },
                OpenOrder {
                    order_id: "O-unknown".into(),
                    table: "3".into(),
                    since: None,
                    stale: false
                },
            ]
        );
        // Once O-late is older than a service day too, only the unknown one
        // holds.
        let later = now + chrono::Duration::hours(14);
        let a = Activity::Store(store).read(later, sixteen).await.unwrap();
        assert_eq!((a.open_orders, a.stale_orders), (1, 2));
    }
}

//! Retention: what the store keeps, for how long, and how it gives space
//! back — so that a box runs for years on its SD card
//! (docs/decisions.md, "Years under the counter").
//!
//! # What is deleted
//! The unit is the **order**: its events, outbox rows, check record
//! (`pay_checks`), payments, quarantined payloads and finished link
//! requests go together, in one job, or not at all — the sync rules judge
//! an order on every stored event of it (rules 6 and 7) and on its
//! quarantined payloads (rule 9), so an order is never half kept. An order
//! is deleted only when **all** of these hold:
//! - it is closed: a `bill.paid` or `order.voided` of it is stored;
//! - both lanes of every row are `done` (nothing queued, nothing dead);
//! - each of its Zenchef Pay payments is final (`settled`, `rejected`,
//!   `inherited`), needs no person (or a person handled it), and did not
//!   change in the last `keep_days`;
//! - it needs no attention (sync rule 9);
//! - no manual link request of it is pending;
//! - its newest event is older than the cutoff, by the box clock
//!   (`received_at`) **and** by the POS's (`occurred_at`).
//!
//! A pass walks the outbox and the events in the order they were stored
//! and stops at the first row younger than the cutoff (by `received_at`):
//! rows come in time order, so the rest is younger too. Should the box
//! clock have run ahead when a row came in, the rows after it wait until
//! that time has passed: kept longer, never deleted early.
//!
//! Besides orders: events of unknown types (no order) and quarantined
//! payloads that no known order depends on, once older than the cutoff.
//! The reservation mirror is pruned by its owner, the poller
//! (`zenchef::poller`).
//!
//! # The cutoff
//! `keep_days` before the **reference time**: the earliest of the box
//! clock, the `received_at` of the last stored event and its
//! `occurred_at` (the POS clock). A box clock far in the future therefore
//! deletes nothing more than the POS's clock allows; a clock in the past
//! deletes less, never more.
//!
//! # How
//! In batches of at most [`BATCH_ROWS`] deleted rows, each its own store
//! job (a short transaction in the group commit), with [`PAUSE`] between
//! two, only off-peak: inside the update maintenance window, or when the
//! POS has been quiet for `store.quiet_min`; a pass stops as soon as
//! neither holds. Each batch ends with `PRAGMA incremental_vacuum` (the
//! pages it freed go back to the filesystem); a pass ends with
//! `PRAGMA wal_checkpoint(TRUNCATE)`. A store created before incremental
//! auto-vacuum existed is converted once (`VACUUM`), in the maintenance
//! window, after a complete pass, when it is small enough to be rewritten
//! within seconds ([`VACUUM_MAX_BYTES`]) and the disk has room for it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Store, StoreError, kv_get, kv_set, order_attention};
use crate::config::RetentionConfig;
use crate::time::{in_window, now_utc};

/// Most rows one batch deletes (one store job).
pub const BATCH_ROWS: usize = 500;
/// Most outbox rows one batch looks at to find finished orders.
pub const SCAN_ROWS: usize = 2000;
/// The pause between two batches of a pass.
pub const PAUSE: Duration = Duration::from_millis(200);
/// The one-time `VACUUM` that switches an older store to incremental
/// auto-vacuum is done only below this size (bytes): it rewrites the whole
/// file while intake waits, and must end well within the watchdog's 60 s
/// on an SD card.
pub const VACUUM_MAX_BYTES: u64 = 64 << 20;
/// `kv` key of the retention record ([`Record`], JSON).
pub const RECORD_KEY: &str = "retention";
/// `kv` key set before the one-time `VACUUM` and cleared after it: found
/// set, a `VACUUM` was interrupted (killed) and is not tried again
/// automatically.
pub const VACUUM_STARTED_KEY: &str = "retention_vacuum_started";

/// Rows deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Orders (each with everything below that belonged to it).
    pub orders: i64,
    /// Stored events (of those orders, and of unknown types).
    pub events: i64,
    /// Outbox rows.
    pub outbox: i64,
    /// Zenchef Pay payments.
    pub payments: i64,
    /// Zenchef Pay check records.
    pub checks: i64,
    /// Quarantined payloads.
    pub rejected: i64,
    /// Finished manual link requests.
    pub links: i64,
}

impl Deleted {
    /// Every row.
    pub fn rows(&self) -> i64 {
        self.events
            + self.outbox
            + self.payments
            + self.checks
            + self.rejected
            + self.links
            + self.orders
    }

    fn add(&mut self, o: &Deleted) {
        self.orders += o.orders;
        self.events += o.events;
        self.outbox += o.outbox;
        self.payments += o.payments;
        self.checks += o.checks;
        self.rejected += o.rejected;
        self.links += o.links;
    }
}

/// The retention record kept in `kv` ([`RECORD_KEY`]), for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the last pass ended (box clock, UTC, RFC 3339).
    pub last_pass_at: Option<String>,
    /// Its cutoff (UTC, RFC 3339): rows older than this were deleted when
    /// nothing needed them.
    pub last_cutoff: Option<String>,
    /// Whether it went through (`false`: stopped because the POS became
    /// busy outside the maintenance window, or by an error).
    pub last_complete: bool,
    /// What it deleted.
    pub last_deleted: Deleted,
    /// Everything deleted by retention on this store.
    pub total_deleted: Deleted,
    /// When the store was converted to incremental auto-vacuum (`VACUUM`
    /// once), if it was.
    pub vacuumed_at: Option<String>,
}

impl Record {
    /// Reads the record (`None`: never ran, or unreadable).
    pub fn read(conn: &Connection) -> Option<Record> {
        kv_get(conn, RECORD_KEY)
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
    }
}

fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The reference time of retention: the earliest of `now` (box clock),
/// the last stored event's `received_at` (box clock when it came) and its
/// `occurred_at` (POS clock). `now` when no event is stored.
///
/// Errors: SQLite's.
pub fn reference_time(conn: &Connection, now: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
    let newest: Option<(String, String)> = conn
        .query_row(
            "SELECT received_at, occurred_at FROM events ORDER BY rowid DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut t = now;
    if let Some((received, occurred)) = newest {
        for s in [received, occurred] {
            if let Some(x) = parse_utc(&s) {
                t = t.min(x);
            }
        }
    }
    Ok(t)
}

/// `keep_days` before [`reference_time`], as stored timestamps are written
/// (UTC, milliseconds), for comparisons in SQL.
///
/// Errors: SQLite's.
pub fn cutoff(conn: &Connection, now: DateTime<Utc>, keep_days: u32) -> Result<String, StoreError> {
    Ok(stamp(
        reference_time(conn, now)? - chrono::Duration::days(i64::from(keep_days)),
    ))
}

/// Where a pass is (kept between its batches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Outbox rows up to this id were looked at.
    pub outbox_id: i64,
    /// Events up to this rowid were looked at for unknown types.
    pub events_rowid: i64,
    /// Every phase reached rows younger than the cutoff.
    pub done: bool,
}

/// The newest of an order's events, by both clocks (see the module
/// documentation), and whether it may be deleted otherwise.
fn order_deletable(conn: &Connection, order_id: &str, cutoff: &str) -> Result<bool, StoreError> {
    let (newest, closed, zenchef, pay, payments, links): (
        Option<String>,
        bool,
        bool,
        bool,
        bool,
        bool,
    ) = conn
        .prepare_cached(
            "SELECT
               (SELECT MAX(MAX(received_at,
                                  COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', occurred_at),
                                           received_at)))
                  FROM events WHERE order_id = ?1),
               EXISTS (SELECT 1 FROM events WHERE order_id = ?1
                        AND type IN ('bill.paid', 'order.voided')),
               EXISTS (SELECT 1 FROM outbox WHERE order_id = ?1 AND state != 'done'),
               EXISTS (SELECT 1 FROM outbox WHERE order_id = ?1 AND pay_state != 'done'),
               EXISTS (SELECT 1 FROM pay_payments WHERE order_id = ?1
                        AND (state NOT IN ('settled', 'rejected', 'inherited')
                             OR (attention IS NOT NULL AND handled_at IS NULL)
                             OR updated_at >= ?2
                             OR COALESCE(handled_at, '') >= ?2)),
               EXISTS (SELECT 1 FROM link_requests WHERE order_id = ?1
                        AND state IN ('pending', 'cancelling'))",
        )?
        .query_row(params![order_id, cutoff], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
    let old = newest.is_some_and(|n| n.as_str() < cutoff);
    if !(old && closed && !zenchef && !pay && !payments && !links) {
        return Ok(false);
    }
    Ok(order_attention(conn, order_id)?.is_none())
}

/// Deletes one order and everything of it.
fn delete_order(conn: &Connection, order_id: &str, d: &mut Deleted) -> Result<(), StoreError> {
    let n = |sql: &str| -> Result<i64, StoreError> {
        Ok(conn.prepare_cached(sql)?.execute([order_id])? as i64)
    };
    d.outbox += n(
        "DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM events WHERE order_id = ?1)",
    )?;
    d.events += n("DELETE FROM events WHERE order_id = ?1")?;
    d.payments += n("DELETE FROM pay_payments WHERE order_id = ?1")?;
    d.checks += n("DELETE FROM pay_checks WHERE order_id = ?1")?;
    d.rejected += n("DELETE FROM rejected WHERE order_id = ?1")?;
    d.links += n(
        "DELETE FROM link_requests WHERE order_id = ?1 AND state NOT IN ('pending', 'cancelling')",
    )?;
    n("DELETE FROM orders WHERE order_id = ?1")?;
    d.orders += 1;
    Ok(())
}

/// One batch of a pass (one store job): deletes finished orders, oldest
/// first, then unknown-type events and orphan quarantined payloads older
/// than `cutoff`, until about [`BATCH_ROWS`] rows are gone; then gives the
/// freed pages back (`PRAGMA incremental_vacuum`, a no-op for a store not
/// yet converted). `cursor` carries the pass from one batch to the next;
/// `cursor.done` says the pass is over.
///
/// Errors: SQLite's (the job's savepoint is rolled back: nothing of the
/// batch is deleted).
pub fn delete_batch(
    conn: &Connection,
    cutoff: &str,
    cursor: &mut Cursor,
) -> Result<Deleted, StoreError> {
    let mut d = Deleted::default();
    let mut orders_done = false;
    // 1. Finished orders, in the order their rows came in.
    let rows: Vec<(i64, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT o.id, o.order_id, e.received_at FROM outbox o
               LEFT JOIN events e ON e.event_id = o.event_id
             WHERE o.id > ?1 ORDER BY o.id LIMIT ?2",
        )?
        .query_map(params![cursor.outbox_id, SCAN_ROWS as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        orders_done = true;
    }
    let mut seen = std::collections::HashSet::new();
    for (id, order_id, received) in rows {
        if received.as_deref().is_some_and(|r| r >= cutoff) {
            // Rows come in time order: everything after is younger.
            orders_done = true;
            break;
        }
        cursor.outbox_id = id;
        if seen.insert(order_id.clone()) && order_deletable(conn, &order_id, cutoff)? {
            delete_order(conn, &order_id, &mut d)?;
        }
        if d.rows() >= BATCH_ROWS as i64 {
            break;
        }
    }
    // 2. Events of unknown types (no order), by windows of rowids.
    let mut events_done = false;
    if d.rows() < BATCH_ROWS as i64 {
        let window: Vec<(i64, Option<String>, String, String)> = conn
            .prepare_cached(
                "SELECT rowid, order_id, received_at, strftime('%Y-%m-%dT%H:%M:%fZ', occurred_at)
                 FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )?
            .query_map(params![cursor.events_rowid, SCAN_ROWS as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                ))
            })?
            .collect::<Result<_, _>>()?;
        if window.is_empty() {
            events_done = true;
        }
        let mut stmt = conn.prepare_cached("DELETE FROM events WHERE rowid = ?1")?;
        for (rowid, order_id, received, occurred) in window {
            if received.as_str() >= cutoff {
                events_done = true;
                break;
            }
            cursor.events_rowid = rowid;
            if order_id.is_none() && occurred.as_str() < cutoff {
                d.events += stmt.execute([rowid])? as i64;
            }
            if d.rows() >= BATCH_ROWS as i64 {
                break;
            }
        }
    }
    // 3. Quarantined payloads no known order depends on.
    let room = (BATCH_ROWS as i64 - d.rows()).max(0);
    let rejected = conn
        .prepare_cached(
            "DELETE FROM rejected WHERE id IN (
            SELECT r.id FROM rejected r
             WHERE r.received_at < ?1
               AND (r.order_id IS NULL
                    OR NOT EXISTS (SELECT 1 FROM events e WHERE e.order_id = r.order_id))
             ORDER BY r.id LIMIT ?2)",
        )?
        .execute(params![cutoff, room])? as i64;
    d.rejected += rejected;
    cursor.done = orders_done && events_done && rejected < room;
    if d.rows() > 0 {
        give_back(conn)?;
    }
    Ok(d)
}

/// `PRAGMA incremental_vacuum`, stepped to its end (it frees a page per
/// step; a single step, as `execute_batch` makes, frees one).
fn give_back(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Bytes of the store file and of its `-wal`.
pub fn file_sizes(path: &Path) -> (u64, u64) {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    (size(path), size(&wal))
}

/// What `status` shows of the store: its size and the oldest row kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFacts {
    /// Bytes of the SQLite file.
    pub file_bytes: u64,
    /// Bytes of its `-wal`.
    pub wal_bytes: u64,
    /// Free pages inside the file, bytes (given back by the next
    /// retention batch once the store uses incremental auto-vacuum).
    pub free_bytes: u64,
    /// `PRAGMA auto_vacuum`: `incremental`, or `none` (a store created
    /// before it, not yet converted).
    pub auto_vacuum: String,
    /// Events stored.
    pub events: i64,
    /// When the oldest event kept was received (box clock, UTC).
    pub oldest_event_at: Option<String>,
    /// Its order (`None`: an event of an unknown type).
    pub oldest_event_order: Option<String>,
    /// Days finished rows are kept (`store.keep_days`).
    pub keep_days: u32,
    /// The last retention pass, `None` when none ran.
    pub retention: Option<Record>,
}

/// Reads [`StoreFacts`] (works on a read-only connection; cheap: no scan).
///
/// Errors: SQLite's.
pub fn store_facts(
    conn: &Connection,
    path: &Path,
    keep_days: u32,
) -> Result<StoreFacts, StoreError> {
    // One snapshot: the record of a pass and the rows it left are read
    // together (a pass may commit between two autocommit reads).
    let own = conn.is_autocommit();
    if own {
        conn.execute_batch("BEGIN")?;
    }
    let facts = read_facts(conn, path, keep_days);
    if own {
        let _ = conn.execute_batch("COMMIT");
    }
    facts
}

fn read_facts(conn: &Connection, path: &Path, keep_days: u32) -> Result<StoreFacts, StoreError> {
    let (file_bytes, wal_bytes) = file_sizes(path);
    let q = |sql: &str| -> Result<i64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    let page = q("PRAGMA page_size")?.max(0) as u64;
    let free = q("PRAGMA freelist_count")?.max(0) as u64;
    let oldest: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT received_at, order_id FROM events ORDER BY rowid LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(StoreFacts {
        file_bytes,
        wal_bytes,
        free_bytes: page * free,
        auto_vacuum: match q("PRAGMA auto_vacuum")? {
            1 => "full",
            2 => "incremental",
            _ => "none",
        }
        .into(),
        // MAX(rowid) is a lookup, COUNT(*) a scan: an upper bound is
        // enough here (rowids only grow; deleted rows leave gaps). Each in
        // a query of its own: SQLite looks MIN or MAX up only when it is
        // the query's one aggregate (both in one SELECT scan the table).
        events: q("SELECT COALESCE((SELECT MAX(rowid) FROM events), 0)
                        - COALESCE((SELECT MIN(rowid) FROM events), 1) + 1")?
        .max(0),
        oldest_event_at: oldest.as_ref().map(|o| o.0.clone()),
        oldest_event_order: oldest.and_then(|o| o.1),
        keep_days,
        retention: Record::read(conn),
    })
}

/// When the POS last sent something: the newest stored event's
/// `received_at` (box clock), `None` when none is stored.
fn last_event_at(conn: &Connection) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT received_at FROM events ORDER BY rowid DESC LIMIT 1",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|s| parse_utc(&s)))
}

/// Why retention may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffPeak {
    /// Inside the update maintenance window.
    Window,
    /// The POS sent nothing for `quiet_min`.
    Quiet,
}

/// The retention task.
#[derive(Clone)]
pub struct Retention {
    /// The store.
    pub store: Store,
    /// `[store]` retention settings.
    pub cfg: RetentionConfig,
    /// Restaurant time zone (the window is local time).
    pub tz: chrono_tz::Tz,
    /// The update maintenance window (minutes after midnight).
    pub window: (u32, u32),
    /// Wall clock (tests move it).
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl Retention {
    /// Off-peak now? `None` when neither the window nor a quiet POS
    /// allows retention.
    ///
    /// Errors: the store cannot be read.
    pub async fn off_peak(&self) -> Result<Option<OffPeak>, StoreError> {
        let now = (self.clock)();
        let local = now.with_timezone(&self.tz);
        if in_window(local.hour() * 60 + local.minute(), self.window) {
            return Ok(Some(OffPeak::Window));
        }
        let last = self.store.read(last_event_at).await?;
        let quiet = chrono::Duration::from_std(self.cfg.quiet).unwrap_or_default();
        Ok(match last {
            None => Some(OffPeak::Quiet),
            Some(t) if now - t >= quiet => Some(OffPeak::Quiet),
            _ => None,
        })
    }

    /// One pass: batches until nothing is left to delete or the moment is
    /// no longer off-peak, then a checkpoint, the record, and (once) the
    /// conversion to incremental auto-vacuum. Answers what was deleted.
    ///
    /// Errors: the store failed; what earlier batches deleted stays
    /// deleted.
    pub async fn pass(&self, cancel: &CancellationToken) -> Result<(Deleted, bool), StoreError> {
        let now = (self.clock)();
        let keep = self.cfg.keep_days;
        let cut = self.store.read(move |c| cutoff(c, now, keep)).await?;
        let mut cursor = Cursor::default();
        let mut total = Deleted::default();
        let started = tokio::time::Instant::now();
        let mut batches = 0u32;
        let complete = loop {
            let c2 = cut.clone();
            let mut cur = cursor;
            let (d, next) = self
                .store
                .write(move |c| {
                    let d = delete_batch(c, &c2, &mut cur)?;
                    Ok((d, cur))
                })
                .await?;
            cursor = next;
            total.add(&d);
            batches += 1;
            if cursor.done {
                break true;
            }
            tokio::select! {
                _ = cancel.cancelled() => break false,
                _ = tokio::time::sleep(PAUSE) => {}
            }
            if self.off_peak().await?.is_none() {
                info!(
                    "retention: the POS is busy again; stopping after {batches} batch(es), the \
                     rest waits for the next quiet moment"
                );
                break false;
            }
        };
        let record_total = total;
        let cut2 = cut.clone();
        let rec = self
            .store
            .write(move |c| {
                let mut r = Record::read(c).unwrap_or_default();
                r.last_pass_at = Some(now_utc());
                r.last_cutoff = Some(cut2);
                r.last_complete = complete;
                r.last_deleted = record_total;
                r.total_deleted.add(&record_total);
                kv_set(c, RECORD_KEY, &serde_json::to_string(&r)?)?;
                Ok(r)
            })
            .await?;
        if total.rows() > 0 {
            info!(
                "retention: deleted {} order(s) older than {cut} ({} events, {} outbox rows, {} \
                 payments, {} quarantined payloads) in {batches} batch(es), {:.1} s",
                total.orders,
                total.events,
                total.outbox,
                total.payments,
                total.rejected,
                started.elapsed().as_secs_f64()
            );
        } else {
            debug!("retention: nothing older than {cut} to delete");
        }
        if complete && rec.vacuumed_at.is_none() {
            self.convert_once().await;
        }
        // The WAL holds every batch: fold it in and cut it back.
        let _ = self
            .store
            .maintenance(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            })
            .await
            .inspect_err(|e| warn!("retention: checkpoint failed: {e}"));
        Ok((total, complete))
    }

    /// Converts a store of `auto_vacuum = NONE` to incremental auto-vacuum
    /// with one `VACUUM`, when that is safe now (see the module docs).
    async fn convert_once(&self) {
        let path = self.store.path().to_path_buf();
        let state = self
            .store
            .read(|c| {
                Ok((
                    c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?,
                    kv_get(c, VACUUM_STARTED_KEY)?,
                ))
            })
            .await;
        let Ok((mode, started)) = state else { return };
        if mode != 0 {
            return;
        }
        if let Some(at) = started {
            warn!(
                "retention: the one-time VACUUM of the store started at {at} never finished \
                 (killed?); not trying again automatically: free pages are reused, the file just \
                 does not shrink"
            );
            return;
        }
        let now = (self.clock)().with_timezone(&self.tz);
        if !in_window(now.hour() * 60 + now.minute(), self.window) {
            return;
        }
        let (bytes, wal) = file_sizes(&path);
        if bytes + wal > VACUUM_MAX_BYTES {
            info!(
                "retention: the store ({} MiB) is too large to convert to incremental \
                 auto-vacuum within the watchdog's time; it stays as it is (free pages are reused)",
                (bytes + wal) >> 20
            );
            return;
        }
        if free_disk(&path).is_some_and(|f| f < 2 * (bytes + wal) + (16 << 20)) {
            info!("retention: not enough free disk to rewrite the store once; not converting");
            return;
        }
        if self
            .store
            .write(|c| kv_set(c, VACUUM_STARTED_KEY, &now_utc()))
            .await
            .is_err()
        {
            return;
        }
        let t = std::time::Instant::now();
        crate::watchdog::ping();
        let r = self
            .store
            .maintenance(|c| {
                c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            })
            .await;
        crate::watchdog::ping();
        match r {
            Ok(()) => {
                let _ = self
                    .store
                    .write(|c| {
                        super::kv::kv_delete(c, VACUUM_STARTED_KEY)?;
                        let mut r = Record::read(c).unwrap_or_default();
                        r.vacuumed_at = Some(now_utc());
                        kv_set(c, RECORD_KEY, &serde_json::to_string(&r)?)
                    })
                    .await;
                let (after, _) = file_sizes(&path);
                info!(
                    "retention: store converted to incremental auto-vacuum in {:.1} s ({} → {} \
                     KiB)",
                    t.elapsed().as_secs_f64(),
                    (bytes + wal) >> 10,
                    after >> 10
                );
            }
            Err(e) => {
                let _ = self
                    .store
                    .write(|c| {
                        super::kv::kv_delete(c, VACUUM_STARTED_KEY)?;
                        Ok(())
                    })
                    .await;
                warn!("retention: converting the store to incremental auto-vacuum failed: {e}");
            }
        }
    }
}

/// Free bytes of the filesystem holding `path` (`None` when unknown).
fn free_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid buffer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Runs retention until `cancel`: a check every `store.retention_interval_s`
/// (the first one after one interval, at most two minutes), a pass when
/// off-peak. Store errors are logged and the next check tries again.
pub async fn run(r: Retention, cancel: CancellationToken) {
    let first = r.cfg.interval.min(Duration::from_secs(120));
    let mut delay = first;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = r.cfg.interval;
        let when = match r.off_peak().await {
            Ok(w) => w,
            Err(e) => {
                debug!("retention: cannot read the store: {e}");
                continue;
            }
        };
        let Some(why) = when else { continue };
        debug!("retention: off-peak ({why:?}), starting a pass");
        match r.pass(&cancel).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    error!("retention: a pass failed ({failures} in a row): {e}");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;

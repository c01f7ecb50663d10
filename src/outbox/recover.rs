//! What a damaged store still holds goes to the store that replaces it
//! (docs/decisions.md, "A damaged store gives its rows to the new one").
//!
//! Two steps; the rows are never all in memory (SQLite streams them), only
//! the extension's map of the file's pages is:
//! 1. **Extract**: SQLite's own recovery extension (`sqlite3_recover`, the
//!    code of the `sqlite3` shell's `.recover`, vendored in
//!    `vendor/sqlite-recover/`) reads the damaged file **read-only**, page
//!    by page, and hands the statements that rebuild every row it can
//!    still read to a scratch database beside it (written by a connection
//!    of ours), with the file's schema and `user_version`; rows of pages
//!    it cannot attribute to a table go to `lost_and_found`. The damaged
//!    file's unique indexes, counted, say how many rows were there.
//! 2. **Copy**: the scratch database, brought to this binary's schema by
//!    the usual migrations, is attached to the new store and its rows are
//!    copied table by table in one transaction, keeping the rules of the
//!    store: a queue row whose event is lost is dropped (its payload is
//!    gone, nothing can deliver it); an event whose queue row is lost gets
//!    one again (queued, unless a later row of its order was already
//!    delivered in that lane: lanes deliver in `seq` order); a payment
//!    recovered in a state that would make the agent act on its own (send
//!    a settle command, refund the guest) is held for a person instead.
//!
//! What was saved and what could not be read is recorded in the new
//! store (`kv` key [`RECOVERY_KEY`]) for `status`.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::{StoreError, kv_set, migrations};
use crate::time::now_utc;

/// `kv` key of the last recovery's [`Recovery`] (JSON), shown by `status`
/// while the moved-aside file it came from exists.
pub const RECOVERY_KEY: &str = "store_recovery";

/// Table of the scratch database where SQLite puts rows it cannot
/// attribute to a table (counted as not readable).
const LOST_AND_FOUND: &str = "lost_and_found";

/// The tables copied, parents first (`outbox` refers to `events`).
/// `schema_compat` is the new store's own; `sqlite_sequence` follows the
/// copied ids by itself.
const TABLES: &[&str] = &[
    "events",
    "outbox",
    "orders",
    "pay_payments",
    "pay_checks",
    "reservations",
    "rejected",
    "link_requests",
    "counters",
    "kv",
];

/// Payment states that make the agent act without a person (a settle
/// command to send or resend, a refund to ask for): recovered in one of
/// them, a payment is held for a person instead.
const ACTING_STATES: &str = "('settle', 'command_sent', 'reject')";

/// What a recovery saved from a damaged store, in rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Events (POS messages the agent had acknowledged) saved.
    pub events: i64,
    /// Delivery queue rows saved (one per event of an order), including
    /// those made again for events whose row was lost.
    pub deliveries: i64,
    /// Of those, rows made again for an event whose queue row was lost.
    pub deliveries_rebuilt: i64,
    /// Of those, rows still to deliver in a lane (the daemon delivers them).
    pub to_deliver: i64,
    /// Zenchef Pay payments saved.
    pub payments: i64,
    /// Of those, payments held for a person (recovered about to be
    /// settled or refunded: nothing is sent for them automatically).
    pub payments_held: i64,
    /// Rows of the other tables saved (orders, checks, mirror, counters…).
    pub other_rows: i64,
    /// Rows that could not be used: found by SQLite but not attributable to
    /// a table (`lost_and_found`), refused by the new store's constraints,
    /// or queue rows whose event is lost. Rows on pages destroyed beyond
    /// reading are in the `*_not_read` counts, where an index says so.
    pub unreadable: i64,
    /// Events the damaged file's index (of `event_id`) still lists but
    /// whose rows could not be read: lost. `None`: that index could not be
    /// read either, nothing says how many were lost.
    pub events_not_read: Option<i64>,
    /// The same for delivery queue rows (index of `outbox.event_id`).
    pub deliveries_not_read: Option<i64>,
    /// The same for payments (index of `pay_payments.payment_id`).
    pub payments_not_read: Option<i64>,
    /// How long the recovery took, milliseconds.
    pub millis: u64,
    /// Why nothing could be recovered (then every count is 0).
    pub failed: Option<String>,
}

impl Recovery {
    /// Rows saved, all tables together.
    pub fn saved(&self) -> i64 {
        self.events + self.deliveries + self.payments + self.other_rows
    }

    /// What could not be read, in words: "9 events, 0 deliveries, 0
    /// payments; 9 rows found but unusable" (a kind whose count is unknown
    /// says "?").
    pub fn not_read(&self) -> String {
        let n = |x: Option<i64>| x.map_or_else(|| "?".to_string(), |v| v.to_string());
        format!(
            "{} events, {} deliveries, {} payments; {} rows found but unusable",
            n(self.events_not_read),
            n(self.deliveries_not_read),
            n(self.payments_not_read),
            self.unreadable
        )
    }

    /// One sentence for the journal.
    pub fn summary(&self) -> String {
        match &self.failed {
            Some(why) => format!("nothing could be recovered from it: {why}"),
            None => format!(
                "recovered from it in {:.1} s: {} events, {} deliveries ({} to deliver), {} \
                 payments ({} held for a person), {} other rows; could not be read: {}",
                self.millis as f64 / 1000.0,
                self.events,
                self.deliveries,
                self.to_deliver,
                self.payments,
                self.payments_held,
                self.other_rows,
                self.not_read()
            ),
        }
    }
}

#[repr(C)]
struct RecoverHandle {
    _private: [u8; 0],
}

// SQLite's recovery extension (vendor/sqlite-recover/sqlite3recover.h),
// compiled by build.rs against the SQLite rusqlite bundles.
unsafe extern "C" {
    fn sqlite3_recover_init_sql(
        db: *mut rusqlite::ffi::sqlite3,
        z_db: *const c_char,
        x_sql: extern "C" fn(*mut c_void, *const c_char) -> c_int,
        ctx: *mut c_void,
    ) -> *mut RecoverHandle;
    fn sqlite3_recover_config(p: *mut RecoverHandle, op: c_int, arg: *mut c_void) -> c_int;
    fn sqlite3_recover_step(p: *mut RecoverHandle) -> c_int;
    fn sqlite3_recover_errmsg(p: *mut RecoverHandle) -> *const c_char;
    fn sqlite3_recover_finish(p: *mut RecoverHandle) -> c_int;
}

/// `SQLITE_RECOVER_LOST_AND_FOUND` (sqlite3recover.h).
const SQLITE_RECOVER_LOST_AND_FOUND: c_int = 1;

/// Where the extension's statements go: the scratch database, written by
/// a connection of ours (foreign keys off: the bundled SQLite turns them
/// on by default, and a queue row whose event is lost would then vanish
/// without being counted).
struct Sink {
    out: Connection,
    error: Option<String>,
}

/// The extension's SQL callback: runs one statement on the scratch
/// database. Never unwinds (an error is kept and stops the recovery).
extern "C" fn run_statement(ctx: *mut c_void, sql: *const c_char) -> c_int {
    // SAFETY: `ctx` is the `Sink` given to `sqlite3_recover_init_sql`,
    // alive and not otherwise borrowed while the recovery steps; `sql` is
    // a NUL-terminated string the extension owns for this call.
    let sink = unsafe { &mut *(ctx as *mut Sink) };
    let sql = unsafe { CStr::from_ptr(sql) }.to_string_lossy();
    match sink.out.execute_batch(&sql) {
        Ok(()) => rusqlite::ffi::SQLITE_OK,
        Err(e) => {
            sink.error = Some(format!("writing the recovered rows: {e}"));
            rusqlite::ffi::SQLITE_ERROR
        }
    }
}

/// Reads every row SQLite can still read from `damaged` (opened
/// read-only: the file is left as it is) into a new database at
/// `scratch`. `tick` is called every few seconds while it runs (the caller
/// tells systemd the start goes on); past `limit` it gives up.
///
/// Answers how many rows the damaged file's unique indexes still list
/// ([`Indexed`]).
///
/// Errors: SQLite's message (the file is not a database at all, an I/O
/// error) or the limit passed.
pub fn extract(
    damaged: &Path,
    scratch: &Path,
    limit: Duration,
    tick: &mut dyn FnMut(Duration),
) -> Result<Indexed, String> {
    let _ = std::fs::remove_file(scratch);
    let input = Connection::open_with_flags(
        damaged,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open it: {e}"))?;
    let out = Connection::open(scratch)
        .and_then(|c| {
            c.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA journal_mode = OFF;")?;
            Ok(c)
        })
        .map_err(|e| format!("cannot create the scratch database: {e}"))?;
    let mut sink = Box::new(Sink { out, error: None });
    let main = c"main";
    let lost = CString::new(LOST_AND_FOUND).expect("no NUL");
    let started = Instant::now();
    let mut said = started;
    // SAFETY: `input` and `sink` outlive the handle (finished below,
    // before they are dropped); the strings outlive the calls that read
    // them (the extension copies what it keeps); every handle is finished
    // once.
    unsafe {
        let h = sqlite3_recover_init_sql(
            input.handle(),
            main.as_ptr(),
            run_statement,
            &mut *sink as *mut Sink as *mut c_void,
        );
        if h.is_null() {
            return Err("out of memory".into());
        }
        sqlite3_recover_config(
            h,
            SQLITE_RECOVER_LOST_AND_FOUND,
            lost.as_ptr() as *mut c_void,
        );
        let mut failure = None;
        loop {
            let rc = sqlite3_recover_step(h);
            if rc == rusqlite::ffi::SQLITE_DONE {
                break;
            }
            if rc != rusqlite::ffi::SQLITE_OK {
                let msg = sqlite3_recover_errmsg(h);
                failure = Some(if msg.is_null() {
                    format!("SQLite error {rc}")
                } else {
                    CStr::from_ptr(msg).to_string_lossy().into_owned()
                });
                break;
            }
            if said.elapsed() >= Duration::from_secs(5) {
                said = Instant::now();
                tick(started.elapsed());
            }
            if started.elapsed() > limit {
                failure = Some(format!(
                    "it took longer than {} s (given up)",
                    limit.as_secs()
                ));
                break;
            }
        }
        let rc = sqlite3_recover_finish(h);
        if let Some(e) = sink.error.take() {
            failure = Some(e);
        }
        if failure.is_none() && rc != rusqlite::ffi::SQLITE_OK {
            failure = Some(format!("SQLite error {rc} at the end of the recovery"));
        }
        if let Some(f) = failure {
            drop(sink);
            let _ = std::fs::remove_file(scratch);
            return Err(f);
        }
    }
    drop(sink);
    Ok(Indexed {
        events: indexed(&input, "events"),
        outbox: indexed(&input, "outbox"),
        payments: indexed(&input, "pay_payments"),
    })
}

/// Rows the damaged file's unique index of each table still lists: an
/// index lives on pages of its own, so where the damage hit the table's
/// pages it still counts the rows that were there. `None`: unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexed {
    /// `events` (index of `event_id`).
    pub events: Option<i64>,
    /// `outbox` (index of `event_id`).
    pub outbox: Option<i64>,
    /// `pay_payments` (index of `payment_id`).
    pub payments: Option<i64>,
}

/// Counts the entries of `table`'s first unique index in the damaged file
/// (`None` when the schema or the index cannot be read).
fn indexed(input: &Connection, table: &str) -> Option<i64> {
    let index: String = input
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1
                AND name LIKE 'sqlite_autoindex_%' ORDER BY name LIMIT 1",
            [table],
            |r| r.get(0),
        )
        .ok()?;
    input
        .query_row(
            &format!("SELECT COUNT(*) FROM \"{table}\" INDEXED BY \"{index}\""),
            [],
            |r| r.get(0),
        )
        .ok()
}

/// Brings the scratch database to this binary's schema (the migrations it
/// misses), or says why its rows cannot be used.
fn prepare(scratch: &Path) -> Result<(), String> {
    let c = Connection::open(scratch).map_err(|e| e.to_string())?;
    let has_tables: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if !has_tables {
        return Err("no table of the store could be read (its schema is lost)".into());
    }
    let schema = migrations::schema_of(&c).map_err(|e| e.to_string())?;
    if schema.min_version > migrations::KNOWN {
        return Err(format!(
            "its schema {} (usable from {}) is newer than this binary's ({})",
            schema.applied,
            schema.min_version,
            migrations::KNOWN
        ));
    }
    if schema.applied < migrations::KNOWN {
        migrations::migrate(&c).map_err(|e| {
            format!(
                "its rows, of schema {}, cannot be brought to schema {}: {e}",
                schema.applied,
                migrations::KNOWN
            )
        })?;
    }
    Ok(())
}

/// The columns of `db.table` (empty: no such table).
fn columns(c: &Connection, db: &str, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare(&format!("PRAGMA {db}.table_info(\"{table}\")"))?;
    let cols = stmt.query_map([], |r| r.get::<_, String>(1))?;
    Ok(cols.collect::<Result<_, _>>()?)
}

/// Copies the rows of `rec.table` that the new store accepts (the columns
/// both have; `filter` a `WHERE` clause or ""). Answers (rows read, rows
/// saved).
fn copy_table(c: &Connection, table: &str, filter: &str) -> Result<(i64, i64), StoreError> {
    let theirs = columns(c, "rec", table)?;
    if theirs.is_empty() {
        return Ok((0, 0));
    }
    let ours = columns(c, "main", table)?;
    let common: Vec<String> = ours
        .into_iter()
        .filter(|x| theirs.contains(x))
        .map(|x| format!("\"{x}\""))
        .collect();
    let read: i64 = c.query_row(&format!("SELECT COUNT(*) FROM rec.\"{table}\""), [], |r| {
        r.get(0)
    })?;
    let list = common.join(", ");
    let saved = c.execute(
        &format!(
            "INSERT OR IGNORE INTO main.\"{table}\" ({list}) SELECT {list} FROM rec.\"{table}\" \
             {filter}"
        ),
        [],
    )?;
    Ok((read, saved as i64))
}

/// Copies what `rec` (the attached scratch database) holds into `main`,
/// inside the caller's transaction; see the module documentation for the
/// rules.
fn copy_all(c: &Connection, indexed: Indexed) -> Result<Recovery, StoreError> {
    let mut r = Recovery::default();
    let lost = |listed: Option<i64>, read: i64| listed.map(|n| (n - read).max(0));
    for table in TABLES {
        let filter = match *table {
            // A queue row without its event cannot be delivered (the
            // payload is gone): dropped, counted as not readable.
            "outbox" => "WHERE event_id IN (SELECT event_id FROM main.events)",
            // This recovery's own record replaces an earlier one.
            "kv" => "WHERE key != 'store_recovery'",
            _ => "",
        };
        let (read, saved) = copy_table(c, table, filter)?;
        tracing::info!("recovery: {table}: {saved} of the {read} rows read saved");
        r.unreadable += read - saved;
        match *table {
            "events" => {
                r.events = saved;
                r.events_not_read = lost(indexed.events, read);
            }
            "outbox" => {
                r.deliveries = saved;
                r.deliveries_not_read = lost(indexed.outbox, read);
            }
            "pay_payments" => {
                r.payments = saved;
                r.payments_not_read = lost(indexed.payments, read);
            }
            _ => r.other_rows += saved,
        }
    }
    // An event whose queue row is lost: queued again, unless a later row
    // of its order is already done in that lane (each lane delivers an
    // order's rows in seq order, so that one came after it). The Pay lane
    // only for the events that change a check, and only on a box that
    // uses Zenchef Pay (it has checks or queued pushes).
    let now = now_utc();
    r.deliveries_rebuilt = c.execute(
        "INSERT INTO main.outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
         SELECT e.event_id, e.order_id, e.seq, e.type,
                CASE WHEN EXISTS (SELECT 1 FROM main.outbox o WHERE o.order_id = e.order_id
                                   AND o.seq > e.seq AND o.state = 'done')
                     THEN 'done' ELSE 'queued' END,
                CASE WHEN e.type NOT IN ('order.items_sent', 'table.moved', 'payment.recorded',
                                         'bill.paid', 'order.voided')
                       OR NOT (EXISTS (SELECT 1 FROM main.pay_checks)
                               OR EXISTS (SELECT 1 FROM main.outbox o
                                           WHERE o.pay_state != 'done' AND o.pay_state = 'queued'))
                       OR EXISTS (SELECT 1 FROM main.outbox o WHERE o.order_id = e.order_id
                                   AND o.seq > e.seq AND o.pay_state = 'done'
                                   AND o.type IN ('order.items_sent', 'table.moved',
                                                  'payment.recorded', 'bill.paid', 'order.voided'))
                     THEN 'done' ELSE 'queued' END,
                ?1
           FROM main.events e
          WHERE e.order_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM main.outbox o WHERE o.event_id = e.event_id)",
        [&now],
    )? as i64;
    r.deliveries += r.deliveries_rebuilt;
    // A payment about to be settled or refunded: held for a person, who
    // checks the bill in the POS and the payment in Zenchef Pay (sync rule
    // 7: no second settle command, no refund of a paid bill on a guess).
    r.payments_held = c.execute(
        &format!(
            "UPDATE main.pay_payments
                SET attention = 'recovered from a damaged store while ' || state ||
                                ': check the bill in the POS and the payment in Zenchef Pay; \
                                 nothing is sent for it automatically',
                    reason = COALESCE(reason, 'recovered while ' || state),
                    state = 'held', attention_at = ?1, handled_at = NULL, updated_at = ?1
              WHERE state IN {ACTING_STATES}"
        ),
        [&now],
    )? as i64;
    // The table exists only when SQLite found rows it could not attribute.
    let lost = if columns(c, "rec", LOST_AND_FOUND)?.is_empty() {
        0
    } else {
        c.query_row(
            &format!("SELECT COUNT(*) FROM rec.\"{LOST_AND_FOUND}\""),
            [],
            |x| x.get::<_, i64>(0),
        )?
    };
    tracing::info!("recovery: {lost} rows SQLite could not attribute to a table");
    r.unreadable += lost;
    r.to_deliver = c.query_row(
        "SELECT (SELECT COUNT(*) FROM main.outbox WHERE state != 'done')
              + (SELECT COUNT(*) FROM main.outbox WHERE pay_state != 'done' AND state = 'done')",
        [],
        |x| x.get(0),
    )?;
    Ok(r)
}

/// Gives `store` (a new, empty, migrated store) every row that can still
/// be read from `damaged` (left untouched), through a scratch database
/// beside it that is removed afterwards, and records the outcome in the
/// store ([`RECOVERY_KEY`]). `tick` is called every few seconds while
/// SQLite reads the file, and once before the copy. Never fails: what went wrong is the
/// outcome's [`Recovery::failed`] (then nothing was copied).
pub fn recover_into(
    store: &Connection,
    damaged: &Path,
    limit: Duration,
    tick: &mut dyn FnMut(Duration),
) -> Recovery {
    let started = Instant::now();
    let scratch = PathBuf::from(format!("{}.recovered", damaged.display()));
    let copied = extract(damaged, &scratch, limit, tick).and_then(|indexed| {
        // The copy is one statement a table, without ticks of its own.
        tick(started.elapsed());
        prepare(&scratch)?;
        copy_into(store, &scratch, indexed).map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_file(&scratch);
    let mut r = match copied {
        Ok(r) => r,
        Err(why) => Recovery {
            failed: Some(why),
            ..Recovery::default()
        },
    };
    r.millis = started.elapsed().as_millis() as u64;
    let record = serde_json::to_string(&r).unwrap_or_default();
    if let Err(e) = kv_set(store, RECOVERY_KEY, &record) {
        tracing::warn!("cannot record the recovery in the new store: {e}");
    }
    r
}

/// Attaches the scratch database and copies it in one transaction.
fn copy_into(store: &Connection, scratch: &Path, indexed: Indexed) -> Result<Recovery, StoreError> {
    store.execute("ATTACH DATABASE ?1 AS rec", [scratch.to_string_lossy()])?;
    let r = (|| {
        store.execute_batch("BEGIN IMMEDIATE")?;
        match copy_all(store, indexed) {
            Ok(r) => {
                store.execute_batch("COMMIT")?;
                Ok(r)
            }
            Err(e) => {
                let _ = store.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    })();
    let _ = store.execute_batch("DETACH DATABASE rec");
    r
}

/// The last recovery recorded in the store, if any.
pub fn last(c: &Connection) -> Option<Recovery> {
    super::kv_get(c, RECOVERY_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of this schema with `n` queued events of 40 orders and a
    /// payment in each state, its WAL folded into the file.
    fn damaged_store(path: &Path, n: i64) {
        let c = Connection::open(path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        migrations::migrate(&c).unwrap();
        c.execute_batch(&format!(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {n})
             INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             SELECT 'ev-' || i, i, 'order.items_sent', 'O-' || (i % 40), '2026-01-01T10:00:00Z',
                    '{{\"pad\":\"' || hex(randomblob(150)) || '\"}}', 1, '2026-01-01T10:00:00Z'
               FROM k;
             INSERT INTO outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
             SELECT event_id, order_id, seq, type, CASE WHEN seq <= 40 THEN 'done' ELSE 'queued' END,
                    'done', received_at FROM events;
             INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body, state,
                                      received_at, updated_at)
             VALUES ('p-settle', 'O-1', 1000, 0, '{{}}', 'settle', 'x', 'x'),
                    ('p-sent', 'O-2', 1000, 0, '{{}}', 'command_sent', 'x', 'x'),
                    ('p-reject', 'O-3', 1000, 0, '{{}}', 'reject', 'x', 'x'),
                    ('p-answered', 'O-4', 1000, 0, '{{}}', 'answered', 'x', 'x'),
                    ('p-settled', 'O-5', 1000, 0, '{{}}', 'settled', 'x', 'x');
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
    }

    fn flip(path: &Path, at: usize, len: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        for b in &mut bytes[at..at + len] {
            *b ^= 0xFF;
        }
        std::fs::write(path, &bytes).unwrap();
    }

    fn fresh(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.execute_batch("PRAGMA foreign_keys=ON;").unwrap();
        migrations::migrate(&c).unwrap();
        c
    }

    fn one(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_damaged_store_gives_its_rows_and_money_waits_for_a_person() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        damaged_store(&old, 3000);
        let len = std::fs::metadata(&old).unwrap().len() as usize;
        flip(&old, len / 2 / 4096 * 4096, 8192);
        let before = std::fs::read(&old).unwrap();
        let new = fresh(&dir.path().join("new.db"));
        let r = recover_into(&new, &old, Duration::from_secs(60), &mut |_| {});
        assert_eq!(r.failed, None, "{r:?}");
        assert_eq!(std::fs::read(&old).unwrap(), before, "left as it was");
        assert!(
            !dir.path().join("old.db.recovered").exists(),
            "scratch removed"
        );
        let events = one(&new, "SELECT COUNT(*) FROM events");
        assert!(events > 2800 && events < 3000, "{r:?}");
        assert_eq!(r.events, events);
        // Every saved event has its queue row, every queue row its event.
        assert_eq!(
            one(
                &new,
                "SELECT COUNT(*) FROM outbox WHERE event_id NOT IN (SELECT event_id FROM events)"
            ),
            0
        );
        assert_eq!(one(&new, "SELECT COUNT(*) FROM outbox"), events);
        // Done rows stay done.
        assert_eq!(
            one(
                &new,
                "SELECT COUNT(*) FROM outbox WHERE state = 'done' AND seq > 40"
            ),
            0
        );
        // What the index still lists counts what was lost.
        if let Some(lost) = r.events_not_read {
            assert_eq!(lost, 3000 - events, "{r:?}");
        }
        // Money: a settle, a resend or a refund waits for a person.
        let states: Vec<(String, String, bool)> = new
            .prepare("SELECT payment_id, state, attention IS NOT NULL FROM pay_payments ORDER BY 1")
            .unwrap()
            .query_map([], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let s = |id: &str, st: &str, a: bool| (id.to_string(), st.to_string(), a);
        assert_eq!(
            states,
            vec![
                s("p-answered", "answered", false),
                s("p-reject", "held", true),
                s("p-sent", "held", true),
                s("p-settle", "held", true),
                s("p-settled", "settled", false),
            ]
        );
        assert_eq!((r.payments, r.payments_held), (5, 3));
        assert_eq!(last(&new), Some(r));
    }

    #[test]
    fn an_event_whose_queue_row_is_lost_is_queued_again_unless_a_later_one_was_done() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        damaged_store(&old, 200);
        {
            // The queue rows of two events lost: one of an order with a
            // later row done, one without.
            let c = Connection::open(&old).unwrap();
            c.execute_batch(
                "UPDATE outbox SET state = 'done' WHERE event_id = 'ev-90';
                 DELETE FROM outbox WHERE event_id IN ('ev-50', 'ev-51');",
            )
            .unwrap();
        }
        let new = fresh(&dir.path().join("new.db"));
        let r = recover_into(&new, &old, Duration::from_secs(60), &mut |_| {});
        assert_eq!(r.failed, None);
        assert_eq!(r.deliveries_rebuilt, 2);
        let state = |id: &str| -> String {
            new.query_row("SELECT state FROM outbox WHERE event_id = ?1", [id], |x| {
                x.get(0)
            })
            .unwrap()
        };
        // ev-50 (O-10) has ev-90 (O-10) done after it; ev-51 (O-11) not.
        assert_eq!(state("ev-50"), "done");
        assert_eq!(state("ev-51"), "queued");
    }

    #[test]
    fn a_file_that_is_not_a_database_gives_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        std::fs::write(&old, vec![0x5Au8; 64 * 1024]).unwrap();
        let new = fresh(&dir.path().join("new.db"));
        let r = recover_into(&new, &old, Duration::from_secs(60), &mut |_| {});
        assert!(r.failed.is_some(), "{r:?}");
        assert_eq!(r.saved(), 0);
        assert!(
            r.summary().starts_with("nothing could be recovered"),
            "{}",
            r.summary()
        );
        assert_eq!(one(&new, "SELECT COUNT(*) FROM events"), 0);
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    /// A store killed with rows still in its WAL (no checkpoint, no
    /// `-shm`): the recovery reads them too, and leaves the file as it was.
    #[test]
    fn rows_still_in_the_wal_of_a_killed_store_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let c = Connection::open(&live).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
            .unwrap();
        migrations::migrate(&c).unwrap();
        c.execute_batch(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 500)
             INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             SELECT 'ev-' || i, i, 'order.items_sent', 'O-1', 'x', '{}', 1, 'x' FROM k;
             INSERT INTO outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
             SELECT event_id, order_id, seq, type, 'queued', 'done', 'x' FROM events;",
        )
        .unwrap();
        // What a SIGKILL leaves: the file and its WAL, copied while open.
        let old = dir.path().join("old.db");
        std::fs::copy(&live, &old).unwrap();
        std::fs::copy(
            dir.path().join("live.db-wal"),
            dir.path().join("old.db-wal"),
        )
        .unwrap();
        drop(c);
        let before = std::fs::read(&old).unwrap();
        let new = Connection::open(dir.path().join("new.db")).unwrap();
        migrations::migrate(&new).unwrap();
        let r = recover_into(&new, &old, Duration::from_secs(60), &mut |_| {});
        assert_eq!(r.failed, None, "{r:?}");
        assert_eq!((r.events, r.deliveries, r.to_deliver), (500, 500, 500));
        assert_eq!(std::fs::read(&old).unwrap(), before);
    }
}

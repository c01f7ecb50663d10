//! Forward-only, numbered schema migrations (as Mullvad's
//! `settings/migrations/`), with a **compatibility record** so that a
//! binary rolled back after an update can still use the store.
//!
//! Two numbers describe a store:
//! - **applied**: how many migrations ran (the schema version), in the
//!   one-row table `schema_compat` (from migration 6 on; before it, in
//!   `PRAGMA user_version`);
//! - **min_version**: the oldest schema version whose binaries can still
//!   use the store, in `PRAGMA user_version` (and `schema_compat`).
//!
//! Every migration says which `min_version` the store has once it ran
//! ([`Migration::min_version`]): an **additive** migration (new tables, new
//! nullable columns or columns with a default, new indexes) keeps the
//! floor where it was; a migration that changes or removes something an
//! older binary relies on raises it (migration 5 rebuilt `pay_payments`
//! to widen a CHECK constraint: its floor is 5). The rule for changes that
//! cannot be additive (expand, then contract one release later) is in
//! docs/decisions.md, "Years under the counter".
//!
//! A binary that knows `K` migrations, opening a store:
//! - `applied <= K`: runs the missing migrations, one transaction each;
//! - `applied > K` and `min_version <= K`: a newer release migrated it
//!   additively: the store is used as it is, nothing migrated
//!   ([`Opened::Newer`]);
//! - `applied > K` and `min_version > K`: refused
//!   ([`MigrateError::TooNew`]; the daemon exits 78, naming both versions).
//!
//! Why the floor lives in `user_version`: binaries from before migration 6
//! read `user_version` as the number of migrations applied and refuse a
//! store whose value is above theirs (5). Keeping `user_version` at the
//! floor (never below `min(applied, 5)`, so that they never run a
//! migration twice) lets them open a store that newer releases migrated
//! additively: the previous binary of the box still starts after a
//! rollback.

use rusqlite::{Connection, OptionalExtension};

/// One migration: its SQL and the store's compatibility floor once it ran.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The statements, run in one transaction with the bookkeeping.
    pub sql: &'static str,
    /// The oldest schema version whose binaries can still use the store
    /// once this migration ran: the previous floor for an additive
    /// migration, its own number (or that of the release that introduced
    /// what it now requires) otherwise. Never lower than the previous one
    /// (the runner takes the maximum).
    pub min_version: i64,
}

/// Migrations whose application was recorded in `user_version` alone
/// (1–5): `user_version` never goes below `min(applied, LEGACY)`.
pub const LEGACY: i64 = 5;

/// Error while migrating.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A newer release migrated the store in a way this binary cannot use.
    #[error(
        "the store has schema version {applied}, usable by binaries that know schema {min_version} \
         or later; this binary knows schema {known}"
    )]
    TooNew {
        /// Migrations applied to the file.
        applied: i64,
        /// The oldest schema version that can use it.
        min_version: i64,
        /// Migrations this binary knows.
        known: i64,
    },
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// The schema of a store: migrations applied and its compatibility floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// Migrations applied (the schema version).
    pub applied: i64,
    /// The oldest schema version whose binaries can use the store.
    pub min_version: i64,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The store is at this binary's schema (migrated now, or already).
    Current(Schema),
    /// A newer release migrated it additively: used as it is.
    Newer {
        /// The store's schema.
        schema: Schema,
        /// Migrations this binary knows.
        known: i64,
    },
}

/// The migrations, in order; migration `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[Migration] = &[
    // 1: events, outbox, orders, reservation mirror, rejected, kv, counters.
    Migration {
        min_version: 1,
        sql: r#"
    CREATE TABLE events (
        event_id    TEXT PRIMARY KEY,          -- cashpad §3, unique per installation
        seq         INTEGER NOT NULL,          -- POS sequence (u64 stored as i64 bits)
        type        TEXT NOT NULL,
        order_id    TEXT,
        occurred_at TEXT NOT NULL,             -- RFC 3339 with the POS offset
        body        TEXT NOT NULL,             -- the envelope as received
        known       INTEGER NOT NULL,          -- 0: unknown type, stored and skipped
        received_at TEXT NOT NULL              -- box clock (UTC), informational only
    );
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id    TEXT NOT NULL UNIQUE REFERENCES events(event_id),
        order_id    TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        type        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'done', 'dead')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        plan        TEXT,                      -- decided calls and progress (JSON)
        last_error  TEXT,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX outbox_pending ON outbox(order_id, seq, id) WHERE state != 'done';
    CREATE INDEX outbox_state ON outbox(state);
    CREATE TABLE orders (
        order_id    TEXT PRIMARY KEY,
        table_name  TEXT NOT NULL,
        covers      INTEGER,
        opened_at   TEXT,
        state       TEXT NOT NULL CHECK (state IN ('open', 'paid', 'voided')),
        booking_id  INTEGER,
        link        TEXT,                      -- matched / walkin / manual
        total_cents INTEGER,
        paid_cents  INTEGER NOT NULL DEFAULT 0,
        last_seq    INTEGER NOT NULL
    );
    CREATE INDEX orders_booking ON orders(booking_id);
    CREATE TABLE reservations (
        booking_id  INTEGER PRIMARY KEY,
        day         TEXT NOT NULL,
        status      TEXT NOT NULL,
        hash        TEXT NOT NULL,
        body        TEXT                       -- published JSON; NULL = withdrawn
    );
    CREATE TABLE rejected (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        topic       TEXT NOT NULL,
        event_id    TEXT,
        reason      TEXT NOT NULL,
        payload     BLOB NOT NULL,             -- at most the first 64 KiB
        payload_len INTEGER NOT NULL
    );
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    "#,
    },
    // 2: Zenchef Pay — the bill lines of an order (its check), the
    // payments guests made and what became of each.
    Migration {
        min_version: 1,
        sql: r#"
    ALTER TABLE orders ADD COLUMN lines TEXT;  -- JSON check lines; NULL = no check yet
    CREATE TABLE pay_payments (
        payment_id      TEXT PRIMARY KEY,      -- Zenchef Pay id, e.g. pay_8f2c
        order_id        TEXT NOT NULL,
        amount_cents    INTEGER NOT NULL,
        tip_cents       INTEGER NOT NULL,
        body            TEXT NOT NULL,         -- the payment as received
        state           TEXT NOT NULL CHECK (state IN
                          ('settle', 'command_sent', 'settled', 'reject', 'rejected')),
        reason          TEXT,                  -- why rejected
        command_sent_at TEXT,                  -- box clock (UTC)
        received_at     TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX pay_payments_state ON pay_payments(state);
    CREATE INDEX pay_payments_order ON pay_payments(order_id);
    "#,
    },
    // 3: manual link requests queued by the CLI (`link` / `unlink`,
    // sync-rules 4b) and applied by the daemon (`links.rs`).
    Migration {
        min_version: 1,
        sql: r#"
    CREATE TABLE link_requests (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id       TEXT NOT NULL,
        booking_id     INTEGER,                -- NULL = unlink
        requested_at   TEXT NOT NULL,          -- box clock (UTC)
        state          TEXT NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'cancelling', 'done', 'refused')),
        result         TEXT,                   -- one sentence for the CLI
        cancel_booking INTEGER,                -- walk-in still to cancel in Zenchef
        updated_at     TEXT
    );
    CREATE INDEX link_requests_open ON link_requests(state)
        WHERE state IN ('pending', 'cancelling');
    "#,
    },
    // 4: indexes for the questions asked once per table.opened (matching:
    // which bookings are taken) and by every status refresh, so that they
    // cost the same with 10 orders or 100,000 kept, and with an empty queue
    // or a 10,000-event backlog. Partial: only open orders, only events in
    // flight with a decided plan (a handful), so they weigh nothing.
    Migration {
        min_version: 1,
        sql: r#"
    CREATE INDEX orders_open ON orders(booking_id) WHERE state = 'open';
    CREATE INDEX outbox_planned ON outbox(order_id) WHERE state != 'done' AND plan IS NOT NULL;
    "#,
    },
    // 5: Zenchef Pay becomes a lane of its own (sync rule 5): each outbox
    // row carries a second delivery state (`pay_state`, its tries and its
    // last error) beside the Zenchef lane's (`state`, `attempts`,
    // `last_error`); what Zenchef Pay holds of each check (`pay_checks`);
    // an index to read an order's stored events (rule 6 judges on them);
    // the order and seq of a quarantined payload when readable (rule 9);
    // `replan`, set by `outbox retry`, re-decides the steps not yet run
    // (rule 10); and the payments table rebuilt for the life of a settle
    // command (rule 7: `answered`, resends, "needs a person"; unreadable
    // and inherited payments). Rows in flight keep going: their Pay lane
    // starts queued (a check push is idempotent by version).
    Migration {
        min_version: 5,
        sql: r#"
    ALTER TABLE outbox ADD COLUMN pay_state TEXT NOT NULL DEFAULT 'done'
        CHECK (pay_state IN ('queued', 'done', 'dead'));
    ALTER TABLE outbox ADD COLUMN pay_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN pay_error TEXT;
    ALTER TABLE outbox ADD COLUMN replan INTEGER NOT NULL DEFAULT 0;
    UPDATE outbox SET pay_state = 'queued'
     WHERE state != 'done' AND type IN ('order.items_sent', 'table.moved', 'payment.recorded',
                                        'bill.paid', 'order.voided');
    CREATE INDEX outbox_pay_pending ON outbox(order_id, seq, id) WHERE pay_state != 'done';
    CREATE INDEX events_order ON events(order_id, seq) WHERE order_id IS NOT NULL;
    CREATE TABLE pay_checks (
        order_id    TEXT PRIMARY KEY,
        version     INTEGER NOT NULL,          -- highest version Zenchef Pay holds (a POS seq)
        status      TEXT NOT NULL CHECK (status IN ('open', 'closed', 'voided')),
        total_cents INTEGER NOT NULL,
        paid_cents  INTEGER NOT NULL,
        body        TEXT,                      -- the check as pushed, without its version
        updated_at  TEXT NOT NULL              -- box clock (UTC)
    );
    INSERT INTO pay_checks(order_id, version, status, total_cents, paid_cents, updated_at)
        SELECT order_id, last_seq, CASE state WHEN 'paid' THEN 'closed' ELSE state END,
               COALESCE(total_cents, 0), paid_cents, datetime('now')
          FROM orders WHERE lines IS NOT NULL;
    ALTER TABLE rejected ADD COLUMN order_id TEXT;     -- data.order_id when readable
    ALTER TABLE rejected ADD COLUMN seq INTEGER;       -- its seq (or the order's last one)
    ALTER TABLE rejected ADD COLUMN handled_at TEXT;   -- a person cleared the doubt (box clock)
    CREATE INDEX rejected_order ON rejected(order_id) WHERE order_id IS NOT NULL;
    CREATE TABLE pay_payments_v5 (
        payment_id      TEXT PRIMARY KEY,      -- Zenchef Pay id, e.g. pay_8f2c
        order_id        TEXT NOT NULL,         -- '' when unreadable
        amount_cents    INTEGER NOT NULL,
        tip_cents       INTEGER NOT NULL,
        body            TEXT NOT NULL,         -- the payment as received
        state           TEXT NOT NULL CHECK (state IN
                          ('settle', 'command_sent', 'answered', 'settled', 'reject',
                           'rejected', 'adopted', 'inherited', 'held')),
        reason          TEXT,                  -- why rejected, or why inherited
        attention       TEXT,                  -- needs a person: what to check (NULL: nothing)
        attention_at    TEXT,                  -- box clock (UTC)
        handled_at      TEXT,                  -- a person said it is dealt with
        resends         INTEGER NOT NULL DEFAULT 0,
        origin          TEXT NOT NULL DEFAULT 'poll'
                        CHECK (origin IN ('poll', 'catch_up', 'pos', 'unreadable')),
        command_sent_at TEXT,                  -- box clock (UTC)
        received_at     TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    INSERT INTO pay_payments_v5(payment_id, order_id, amount_cents, tip_cents, body, state,
                                reason, command_sent_at, received_at, updated_at)
        SELECT payment_id, order_id, amount_cents, tip_cents, body, state,
               reason, command_sent_at, received_at, updated_at FROM pay_payments;
    DROP TABLE pay_payments;
    ALTER TABLE pay_payments_v5 RENAME TO pay_payments;
    CREATE INDEX pay_payments_state ON pay_payments(state);
    CREATE INDEX pay_payments_order ON pay_payments(order_id);
    CREATE INDEX pay_payments_attention ON pay_payments(order_id)
        WHERE attention IS NOT NULL AND handled_at IS NULL;
    "#,
    },
    // 6: years under the counter (docs/decisions.md). The compatibility
    // record itself; the reservation mirror remembers which withdrawals
    // were confirmed on a live MQTT session (sync rule 2: only those not
    // yet confirmed are replayed at a reconnect, and confirmed ones whose
    // day left the sync window are dropped). Withdrawals more than two
    // days old were replayed at every connect by the earlier binaries:
    // they count as confirmed. Additive: the floor stays 5.
    Migration {
        min_version: 5,
        sql: r#"
    CREATE TABLE schema_compat (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        applied     INTEGER NOT NULL,          -- migrations applied: the schema version
        min_version INTEGER NOT NULL,          -- oldest schema version that can use the store
        updated_at  TEXT NOT NULL              -- box clock (UTC)
    );
    ALTER TABLE reservations ADD COLUMN confirmed_at TEXT;  -- withdrawal confirmed (box clock, UTC); NULL: replay it
    UPDATE reservations SET confirmed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE body IS NULL AND day < date('now', '-2 days');
    CREATE INDEX reservations_withdrawn ON reservations(day) WHERE body IS NULL;
    "#,
    },
    // 7 (only in the test build of the next release, feature `test-next`,
    // tests/rollback.rs): an additive migration, as a real next release
    // would make one, so that the test can roll back to this release on a
    // store it migrated.
    #[cfg(feature = "test-next")]
    Migration {
        min_version: 5,
        sql: r#"
    ALTER TABLE events ADD COLUMN next_note TEXT;
    CREATE TABLE next_marks (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        note       TEXT NOT NULL,
        written_at TEXT NOT NULL
    );
    "#,
    },
];

/// Migrations this binary knows (its schema version).
pub const KNOWN: i64 = MIGRATIONS.len() as i64;

/// Reads a store's schema: `schema_compat` when it exists, else the
/// legacy `user_version` (then `applied = min_version = user_version`).
///
/// Errors: SQLite's (not a database, I/O).
pub fn schema_of(conn: &Connection) -> Result<Schema, rusqlite::Error> {
    let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_compat'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let applied = if has_table {
        conn.query_row("SELECT applied FROM schema_compat WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(user_version)
    } else {
        user_version
    };
    Ok(Schema {
        applied: applied.max(user_version),
        min_version: user_version,
    })
}

/// Brings the schema to the newest version this binary knows
/// ([`MIGRATIONS`]), one transaction per step, or accepts a store a newer
/// release migrated additively.
///
/// Errors: [`MigrateError::TooNew`] when a newer release raised the floor
/// above this binary's schema; SQLite's otherwise (a failed step is rolled
/// back, the steps before it stay).
pub fn migrate(conn: &Connection) -> Result<Opened, MigrateError> {
    migrate_with(conn, MIGRATIONS)
}

/// [`migrate`] with another list (tests).
pub fn migrate_with(conn: &Connection, list: &[Migration]) -> Result<Opened, MigrateError> {
    let known = list.len() as i64;
    let found = schema_of(conn)?;
    if found.applied > known {
        if found.min_version <= known {
            return Ok(Opened::Newer {
                schema: found,
                known,
            });
        }
        return Err(MigrateError::TooNew {
            applied: found.applied,
            min_version: found.min_version,
            known,
        });
    }
    let mut floor = list[..found.applied as usize]
        .iter()
        .map(|m| m.min_version)
        .max()
        .unwrap_or(0)
        .max(found.min_version.min(found.applied));
    for (i, step) in list.iter().enumerate().skip(found.applied as usize) {
        let applied = i as i64 + 1;
        floor = floor.max(step.min_version);
        let user_version = floor.max(applied.min(LEGACY));
        let compat = if applied > LEGACY {
            format!(
                "INSERT INTO schema_compat(id, applied, min_version, updated_at)
                 VALUES (1, {applied}, {user_version}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 ON CONFLICT(id) DO UPDATE SET applied = excluded.applied,
                    min_version = excluded.min_version, updated_at = excluded.updated_at;"
            )
        } else {
            String::new()
        };
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; {compat} PRAGMA user_version = {user_version}; COMMIT;",
            sql = step.sql
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(Opened::Current(schema_of(conn)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(c: &Connection) -> i64 {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// What a binary from before migration 6 does with a store: it reads
    /// `user_version` as the migrations applied and refuses anything above
    /// its 5 (the code of that time, kept here to test against).
    fn legacy_binary_accepts(c: &Connection) -> bool {
        user_version(c) <= LEGACY
    }

    const BASE: usize = 6;

    #[test]
    fn a_fresh_store_records_its_schema_and_its_floor() {
        let c = Connection::open_in_memory().unwrap();
        let out = migrate_with(&c, &MIGRATIONS[..BASE]).unwrap();
        assert_eq!(
            out,
            Opened::Current(Schema {
                applied: 6,
                min_version: 5
            })
        );
        assert_eq!(user_version(&c), 5, "user_version holds the floor");
        let (applied, min): (i64, i64) = c
            .query_row("SELECT applied, min_version FROM schema_compat", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((applied, min), (6, 5));
        assert!(
            legacy_binary_accepts(&c),
            "the previous release (schema 5) still opens a store migrated to 6"
        );
        // Again: nothing to do.
        assert_eq!(
            migrate_with(&c, &MIGRATIONS[..BASE]).unwrap(),
            Opened::Current(Schema {
                applied: 6,
                min_version: 5
            })
        );
    }

    #[test]
    fn a_legacy_store_is_migrated_from_where_it_is() {
        let c = Connection::open_in_memory().unwrap();
        // A store of the previous release: migrations 1–5, no record.
        migrate_with(&c, &MIGRATIONS[..5]).unwrap();
        assert_eq!(user_version(&c), 5);
        assert_eq!(
            schema_of(&c).unwrap(),
            Schema {
                applied: 5,
                min_version: 5
            }
        );
        c.execute_batch(
            "INSERT INTO reservations(booking_id, day, status, hash, body)
             VALUES (1, '2020-01-01', 'canceled', 'x', NULL),
                    (2, date('now'), 'canceled', 'x', NULL),
                    (3, '2020-01-01', 'confirmed', 'x', '{}');",
        )
        .unwrap();
        migrate_with(&c, &MIGRATIONS[..BASE]).unwrap();
        assert_eq!(schema_of(&c).unwrap().applied, 6);
        let confirmed: Vec<(i64, bool)> = c
            .prepare("SELECT booking_id, confirmed_at IS NOT NULL FROM reservations ORDER BY 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            confirmed,
            vec![(1, true), (2, false), (3, false)],
            "old withdrawals count as confirmed, today's and published rows do not"
        );
    }

    const ADDITIVE: Migration = Migration {
        min_version: 5,
        sql: "CREATE TABLE later_t (x TEXT); ALTER TABLE events ADD COLUMN later_c TEXT;",
    };
    const BREAKING: Migration = Migration {
        min_version: 7,
        sql: "CREATE TABLE later_t (x TEXT);",
    };

    #[test]
    fn an_additive_migration_of_a_newer_release_is_used_as_it_is() {
        let c = Connection::open_in_memory().unwrap();
        let mut next = MIGRATIONS[..BASE].to_vec();
        next.push(ADDITIVE);
        migrate_with(&c, &next).unwrap();
        assert_eq!(
            schema_of(&c).unwrap(),
            Schema {
                applied: 7,
                min_version: 5
            }
        );
        // This release, after a rollback.
        assert_eq!(
            migrate_with(&c, &MIGRATIONS[..BASE]).unwrap(),
            Opened::Newer {
                schema: Schema {
                    applied: 7,
                    min_version: 5
                },
                known: 6
            }
        );
        assert_eq!(schema_of(&c).unwrap().applied, 7, "nothing was touched");
        assert!(legacy_binary_accepts(&c));
    }

    #[test]
    fn a_migration_that_raises_the_floor_is_refused_by_older_binaries() {
        let c = Connection::open_in_memory().unwrap();
        let mut next = MIGRATIONS[..BASE].to_vec();
        next.push(BREAKING);
        migrate_with(&c, &next).unwrap();
        assert_eq!(user_version(&c), 7);
        let e = migrate_with(&c, &MIGRATIONS[..BASE]).unwrap_err();
        assert!(
            matches!(
                e,
                MigrateError::TooNew {
                    applied: 7,
                    min_version: 7,
                    known: 6
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "the store has schema version 7, usable by binaries that know schema 7 or later; \
             this binary knows schema 6"
        );
        assert!(!legacy_binary_accepts(&c));
        // A later additive migration keeps the raised floor.
        next.push(Migration {
            min_version: 5,
            sql: "CREATE TABLE later_u (x TEXT);",
        });
        migrate_with(&c, &next).unwrap();
        assert_eq!(
            schema_of(&c).unwrap(),
            Schema {
                applied: 8,
                min_version: 7
            }
        );
    }

    /// Migration 5 rebuilt `pay_payments` (not additive): a binary of
    /// schema 4 may not use a store at 5.
    #[test]
    fn migration_5_says_it_is_not_additive() {
        assert_eq!(MIGRATIONS[4].min_version, 5);
        assert!(MIGRATIONS[..4].iter().all(|m| m.min_version == 1));
        assert!(MIGRATIONS[5..].iter().all(|m| m.min_version == 5));
    }
}

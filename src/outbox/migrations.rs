//! Forward-only, numbered schema migrations on `PRAGMA user_version`
//! (STYLE.md §4, Mullvad `settings/migrations/`).
//!
//! Each step is small and self-contained and only ever *adds* (tables,
//! columns with defaults, indexes), so an older binary after a rollback can
//! still read and write the file. A store whose version is higher than
//! [`MIGRATIONS`] knows is refused rather than touched.

use rusqlite::Connection;

/// Error while migrating.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer binary.
    #[error("schema version {found} is newer than this binary knows ({known})")]
    TooNew {
        /// `user_version` in the file.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
    },
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// The migrations, in order; step `i` brings `user_version` from `i` to `i+1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: events, outbox, orders, reservation mirror, rejected, kv, counters.
    r#"
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
    // 2: Zenchef Pay — the bill lines of an order (its check), the
    // payments guests made and what became of each.
    r#"
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
    // 3: manual link requests queued by the CLI (`link` / `unlink`,
    // sync-rules 4b) and applied by the daemon (`links.rs`).
    r#"
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
    // 4: indexes for the questions asked once per table.opened (matching:
    // which bookings are taken) and by every status refresh, so that they
    // cost the same with 10 orders or 100,000 kept, and with an empty queue
    // or a 10,000-event backlog. Partial: only open orders, only events in
    // flight with a decided plan (a handful), so they weigh nothing.
    r#"
    CREATE INDEX orders_open ON orders(booking_id) WHERE state = 'open';
    CREATE INDEX outbox_planned ON outbox(order_id) WHERE state != 'done' AND plan IS NOT NULL;
    "#,
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
    r#"
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
];

/// Brings the schema to the newest version, one transaction per step.
pub fn migrate(conn: &Connection) -> Result<(), MigrateError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let next = i as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {step}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}

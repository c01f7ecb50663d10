//! Zenchef Pay in the store: the payments guests made and the life of each
//! one's settle command (sync rules 6 and 7), and what Zenchef Pay holds of
//! each check (table `pay_checks`).
//!
//! Payment states (column `state`):
//! - `settle`: accepted (rule 6), its settle command is to be sent;
//! - `command_sent`: sent to the POS, waiting for its answer (resent with
//!   the same `command_id` after a quiet period, a bounded number of times,
//!   then flagged as needing a person — column `attention`);
//! - `answered`: the POS reported it (a stored `payment.recorded` or
//!   `bill.paid` carries its reference): the `settled` ack is to be sent;
//! - `settled`: acknowledged `settled` to Zenchef Pay;
//! - `reject`: refused (rule 6), or the bill was closed or voided in the
//!   POS without it (rule 7): the `rejected` ack is to be sent, so Zenchef
//!   Pay refunds the guest;
//! - `rejected`: acknowledged `rejected`;
//! - `adopted`: listed while a new store caught up with Zenchef Pay's
//!   history (a replaced box): what the box that had it did is unknown, so it
//!   is decided by the POS alone (its reference reported → settled, the bill
//!   closed without it → refused), never sent and never refunded for lack
//!   of knowledge (docs/decisions.md);
//! - `inherited`: such a payment the POS never mentioned within a day: left
//!   to the box that had it;
//! - `held`: the POS contradicted itself about it (it recorded a payment
//!   after closing or voiding the bill without it): no ack is sent, a
//!   person decides in Zenchef Pay (flagged in `attention`).
//!
//! Which state follows which is decided by the domain's pure transitions
//! (`domain::payments`: [`domain::payments::listed`],
//! [`domain::payments::on_report`], [`domain::payments::on_closing`]); this
//! module reads the rows they need and writes what they decide. A refusal
//! by a closing keeps its sentence in `reason` (rows of earlier releases
//! hold only that): its kind is read back from it in one place,
//! [`domain::payments::ClosedWithout::of_reason`].
//!
//! Every change that decides a payment's fate from a POS event (answered,
//! closed without it) is made in the **same transaction** as the stored
//! event ([`reported`], [`close_pending`], called by intake): a crash never
//! leaves a payment counted neither as pending nor as paid, nor as both.

use domain::payments::{ClosedWithout, GuestPayment, Listed, OnReport};
use rusqlite::types::{FromSqlError, Type};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{StoreError, kv_get, kv_set, order_attention, order_truth};
use crate::sync::{self, OrderStatus};
use crate::time::now_utc;

/// A payment's state: the domain's (`domain::payments`, where its
/// transitions are decided), stored under its name.
pub use domain::payments::PaymentState;

/// `kv` key of the durable payments cursor.
pub const CURSOR_KEY: &str = "pay_cursor";
/// `kv` key set once a store has read Zenchef Pay's payment list to its
/// end: until then, payments of orders this store cannot judge are adopted,
/// not refused (a replaced box, docs/decisions.md).
pub const CAUGHT_UP_KEY: &str = "pay_caught_up";

/// A payment's state read from column `i`; errors on a name this binary
/// does not know (read such a column as text and [`PaymentState::parse`]
/// it to skip them instead).
fn state_at(r: &Row<'_>, i: usize) -> rusqlite::Result<PaymentState> {
    let s: String = r.get(i)?;
    PaymentState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            Box::new(FromSqlError::Other(
                format!("unknown payment state {s:?}").into(),
            )),
        )
    })
}

/// [`PaymentState::PENDING`] in SQL: the states whose amount counts as
/// sent to the POS and not yet answered (rule 6's "due").
pub(crate) const PENDING: &str = "('settle', 'command_sent')";
/// [`PaymentState::WAITING`] in SQL: the states of a payment still waiting
/// for the POS, which a closing event without its reference refuses.
pub(crate) const WAITING: &str = "('settle', 'command_sent', 'adopted')";

/// What became of a listed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Accepted: a settle command goes to the POS.
    Settle,
    /// The POS already reported it: acknowledged `settled`, no command.
    Reported,
    /// Refused with this reason (rule 6).
    Reject(String),
    /// A new store cannot judge it yet: adopted, decided by the POS.
    Adopted,
    /// Already known (the API returned it twice): nothing changes.
    Duplicate,
}

/// A payment of Zenchef Pay's list the agent could not read.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Its `payment_id` when readable (then it is acked `rejected`).
    pub payment_id: Option<String>,
    /// The raw JSON.
    pub raw: serde_json::Value,
    /// Why it could not be read.
    pub why: String,
}

/// Stores one page of payments and the cursor after it, in one
/// transaction: each new payment is judged on the order's stored truth
/// (rule 6); each unreadable one is recorded, flagged as needing a person
/// and, when its id is readable, refused. `catch_up`: the store has never
/// read the list to its end (see [`CAUGHT_UP_KEY`]).
pub fn store_page(
    c: &Connection,
    payments: &[(GuestPayment, serde_json::Value)],
    unreadable: &[Unreadable],
    next_cursor: Option<&str>,
    catch_up: bool,
) -> Result<Vec<(GuestPayment, Fate)>, StoreError> {
    let now = now_utc();
    let mut out = Vec::new();
    for (p, raw) in payments {
        if known(c, &p.payment_id)? {
            out.push((p.clone(), Fate::Duplicate));
            continue;
        }
        let truth = order_truth(c, &p.order_id)?;
        let attention = order_attention(c, &p.order_id)?;
        let pending = pending_cents(c, &p.order_id)?;
        let verdict = sync::judge_payment(
            &p.payment_id,
            p.amount_cents,
            &truth,
            attention.as_deref(),
            pending,
        );
        let Listed { state, refusal } = domain::payments::listed(verdict, catch_up);
        let reason = refusal.map(|r| r.reason(&p.order_id));
        let fate = match (state, &reason) {
            (_, Some(why)) => Fate::Reject(why.clone()),
            (PaymentState::Adopted, None) => Fate::Adopted,
            (PaymentState::Answered, None) => Fate::Reported,
            (_, None) => Fate::Settle,
        };
        c.prepare_cached(
            "INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body, state,
                                      reason, origin, received_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )?
        .execute(params![
            p.payment_id,
            p.order_id,
            p.amount_cents,
            p.tip_cents,
            raw.to_string(),
            state.as_str(),
            reason,
            if catch_up { "catch_up" } else { "poll" },
            now
        ])?;
        out.push((p.clone(), fate));
    }
    for u in unreadable {
        let id = u
            .payment_id
            .clone()
            .unwrap_or_else(|| format!("unreadable-{}", short_hash(&u.raw.to_string())));
        let (state, reason) = match &u.payment_id {
            Some(_) => (
                PaymentState::Reject,
                format!("the POS agent could not read this payment ({})", u.why),
            ),
            None => (
                PaymentState::Rejected,
                format!("unreadable, without a payment id ({})", u.why),
            ),
        };
        c.execute(
            "INSERT OR IGNORE INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body,
                       state, reason, attention, attention_at, origin, received_at, updated_at)
             VALUES (?1, ?2, 0, 0, ?3, ?4, ?5, ?6, ?7, 'unreadable', ?7, ?7)",
            params![
                id,
                u.raw["order_id"].as_str().unwrap_or(""),
                u.raw.to_string(),
                state.as_str(),
                reason,
                format!(
                    "Zenchef Pay listed a payment the agent cannot read ({}): check it in Zenchef Pay",
                    u.why
                ),
                now
            ],
        )?;
    }
    if let Some(cursor) = next_cursor {
        kv_set(c, CURSOR_KEY, cursor)?;
    }
    Ok(out)
}

/// A short stable name for a payload (FNV-1a, 64 bits, hex).
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Is this payment id already stored?
pub fn known(c: &Connection, payment_id: &str) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM pay_payments WHERE payment_id = ?1")?
            .query_row([payment_id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Has this store read Zenchef Pay's payment list to its end once?
pub fn caught_up(c: &Connection) -> Result<bool, StoreError> {
    Ok(kv_get(c, CAUGHT_UP_KEY)?.is_some())
}

/// Records that the store read the list to its end.
pub fn set_caught_up(c: &Connection) -> Result<(), StoreError> {
    kv_set(c, CAUGHT_UP_KEY, &now_utc())
}

/// The Zenchef Pay payments of an order sent to the POS (or about to be)
/// and not yet answered, cents.
pub fn pending_cents(c: &Connection, order_id: &str) -> Result<i64, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM pay_payments
         WHERE order_id = ?1 AND state IN {PENDING}"
    ))?
    .query_row([order_id], |r| r.get(0))?)
}

/// A payment's fate decided at intake by a POS event (logged by intake,
/// after the commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentChange {
    /// The POS reported the payment: `settled` ack to send.
    Answered {
        /// Zenchef Pay id.
        payment_id: String,
    },
    /// The POS reported a payment Zenchef Pay already refunded: a person
    /// must look (the bill shows money the guest got back).
    ReportedAfterRefund {
        /// Zenchef Pay id.
        payment_id: String,
    },
    /// The POS recorded a payment it had closed or voided the bill without:
    /// held, a person decides (no ack).
    Contradiction {
        /// Zenchef Pay id.
        payment_id: String,
    },
    /// The POS recorded the same Zenchef Pay payment twice: the bill counts
    /// it twice; a person must look.
    RecordedTwice {
        /// Zenchef Pay id.
        payment_id: String,
    },
    /// The bill was closed or voided without the payment: refused.
    ClosedWithout {
        /// Zenchef Pay id.
        payment_id: String,
        /// Its amount, cents.
        amount_cents: i64,
        /// The reason sent with the `rejected` ack.
        reason: String,
    },
}

/// The POS reported Zenchef Pay payment `payment_id` on `order_id` (a
/// `payment.recorded` — `partial` — or a `bill.paid` payment with that
/// reference), in the transaction that stores the event. A payment this
/// store never listed (sent by a previous box) is recorded as answered. A
/// payment the POS had closed the bill without is held for a person; one it
/// records twice (two `payment.recorded`) is flagged.
pub fn reported(
    c: &Connection,
    order_id: &str,
    payment_id: &str,
    amount_cents: i64,
    tip_cents: i64,
    partial: bool,
) -> Result<Option<PaymentChange>, StoreError> {
    let now = now_utc();
    let row: Option<(String, Option<String>)> = c
        .prepare_cached("SELECT state, reason FROM pay_payments WHERE payment_id = ?1")?
        .query_row([payment_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (state, reason) = match row {
        Some((s, r)) => (PaymentState::parse(&s), r),
        None => (None, None),
    };
    let id = payment_id.to_string();
    let closed_without = reason.as_deref().and_then(ClosedWithout::of_reason);
    match domain::payments::on_report(state, closed_without, partial) {
        OnReport::Hold => {
            c.prepare_cached(
                "UPDATE pay_payments SET state = 'held', updated_at = ?2 WHERE payment_id = ?1",
            )?
            .execute(params![payment_id, now])?;
            set_attention(
                c,
                payment_id,
                "the POS recorded this payment after closing or voiding the bill without it: \
                 neither settled nor refused; decide it in Zenchef Pay and check the bill in the POS",
            )?;
            Ok(Some(PaymentChange::Contradiction { payment_id: id }))
        }
        OnReport::Record => {
            c.prepare_cached(
                "INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body,
                                          state, origin, received_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '{}', 'answered', 'pos', ?5, ?5)",
            )?
            .execute(params![payment_id, order_id, amount_cents, tip_cents, now])?;
            Ok(Some(PaymentChange::Answered { payment_id: id }))
        }
        OnReport::Answer => {
            c.prepare_cached(
                "UPDATE pay_payments SET state = 'answered', reason = NULL, attention = NULL,
                        attention_at = NULL, updated_at = ?2
                 WHERE payment_id = ?1",
            )?
            .execute(params![payment_id, now])?;
            Ok(Some(PaymentChange::Answered { payment_id: id }))
        }
        OnReport::AfterRefund => {
            set_attention(
                c,
                payment_id,
                "the POS recorded this payment after Zenchef Pay refunded it: the bill counts \
                 money the guest got back",
            )?;
            Ok(Some(PaymentChange::ReportedAfterRefund { payment_id: id }))
        }
        OnReport::CountRecords => {
            // A bill.paid lists the earlier payments again (normal); a second
            // payment.recorded of the same payment is not.
            let already: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM events WHERE order_id = ?1 AND type = 'payment.recorded'
                       AND json_extract(body, '$.data.reference') = ?2",
                )?
                .query_row(params![order_id, payment_id], |r| r.get(0))?;
            if already > 1 {
                set_attention(
                    c,
                    payment_id,
                    "the POS recorded this Zenchef Pay payment twice: its bill counts it twice; \
                     check the bill in the POS",
                )?;
                Ok(Some(PaymentChange::RecordedTwice { payment_id: id }))
            } else {
                Ok(None)
            }
        }
        OnReport::Nothing => Ok(None),
    }
}

/// The POS closed (`bill.paid`) or voided `order_id`: every payment of it
/// still waiting for the POS whose reference is not in `references` can no
/// longer be settled and is refused (rule 7), in the transaction that
/// stores the closing event.
pub fn close_pending(
    c: &Connection,
    order_id: &str,
    references: &[String],
    voided: bool,
) -> Result<Vec<PaymentChange>, StoreError> {
    let waiting: Vec<(String, i64, PaymentState)> = c
        .prepare_cached(&format!(
            "SELECT payment_id, amount_cents, state FROM pay_payments
             WHERE order_id = ?1 AND state IN {WAITING}"
        ))?
        .query_map([order_id], |r| Ok((r.get(0)?, r.get(1)?, state_at(r, 2)?)))?
        .collect::<Result<_, _>>()?;
    let now = now_utc();
    let mut out = Vec::new();
    for (payment_id, amount_cents, state) in waiting {
        let referenced = references.contains(&payment_id);
        let Some(kind) = domain::payments::on_closing(state, referenced, voided) else {
            continue;
        };
        let reason = kind.reason();
        c.prepare_cached(
            "UPDATE pay_payments SET state = 'reject', reason = ?2, attention = NULL,
                    attention_at = NULL, updated_at = ?3
             WHERE payment_id = ?1",
        )?
        .execute(params![payment_id, reason, now])?;
        out.push(PaymentChange::ClosedWithout {
            payment_id,
            amount_cents,
            reason: reason.to_string(),
        });
    }
    Ok(out)
}

/// A payment the payments task has something to do with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    /// Zenchef Pay id.
    pub payment_id: String,
    /// POS order id.
    pub order_id: String,
    /// Bill share, cents.
    pub amount_cents: i64,
    /// Tip, cents.
    pub tip_cents: i64,
    /// Its state.
    pub state: PaymentState,
    /// Why refused (state `reject`).
    pub reason: Option<String>,
    /// Settle commands sent again so far.
    pub resends: i64,
    /// Already flagged as needing a person.
    pub attention: bool,
    /// When it was received (box clock, UTC, RFC 3339).
    pub received_at: String,
}

/// Payments to act on (settle commands to send or resend, acks to send,
/// adopted payments to reconsider), in the order Zenchef Pay listed them.
pub fn todo(c: &Connection) -> Result<Vec<Todo>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT payment_id, order_id, amount_cents, tip_cents, state, reason, resends,
                attention IS NOT NULL, received_at
         FROM pay_payments
         WHERE state IN ('settle', 'command_sent', 'answered', 'reject', 'adopted')
         ORDER BY rowid",
    )?;
    // The states listed are all known: the row mapper reads them typed.
    let rows = stmt.query_map([], |r| {
        Ok(Todo {
            payment_id: r.get(0)?,
            order_id: r.get(1)?,
            amount_cents: r.get(2)?,
            tip_cents: r.get(3)?,
            state: state_at(r, 4)?,
            reason: r.get(5)?,
            resends: r.get(6)?,
            attention: r.get(7)?,
            received_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Moves a payment from one state to another; answers false when it was
/// no longer in `from` (something decided it meanwhile: nothing changes).
pub fn transition(
    c: &Connection,
    payment_id: &str,
    from: PaymentState,
    to: PaymentState,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let sent = to == PaymentState::CommandSent;
    let n = c
        .prepare_cached(
            "UPDATE pay_payments SET state = ?3, updated_at = ?4,
                    reason = COALESCE(?5, reason),
                    command_sent_at = CASE WHEN ?6 THEN ?4 ELSE command_sent_at END
             WHERE payment_id = ?1 AND state = ?2",
        )?
        .execute(params![
            payment_id,
            from.as_str(),
            to.as_str(),
            now_utc(),
            reason,
            sent
        ])?;
    Ok(n == 1)
}

/// Counts one more resend of a payment's settle command; answers false
/// (nothing changed) when the payment is no longer waiting for the POS's
/// answer (the POS answered, or the bill closed, meanwhile).
pub fn count_resend(c: &Connection, payment_id: &str) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE pay_payments SET resends = resends + 1, command_sent_at = ?2, updated_at = ?2
         WHERE payment_id = ?1 AND state = 'command_sent'",
        params![payment_id, now_utc()],
    )?;
    Ok(n == 1)
}

/// Flags a payment whose settle command the POS never answered as needing
/// a person; answers false when it is no longer waiting for the POS.
pub fn set_unanswered(c: &Connection, payment_id: &str, what: &str) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE pay_payments SET attention = ?2, attention_at = ?3, handled_at = NULL,
                updated_at = ?3
         WHERE payment_id = ?1 AND state = 'command_sent'",
        params![payment_id, what, now_utc()],
    )?;
    Ok(n == 1)
}

/// Flags a payment as needing a person, with what to check (kept until a
/// person says it is handled, or, for a silent POS, until the POS answers
/// or the bill closes).
pub fn set_attention(c: &Connection, payment_id: &str, what: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE pay_payments SET attention = ?2, attention_at = ?3, handled_at = NULL,
                updated_at = ?3
         WHERE payment_id = ?1",
        params![payment_id, what, now_utc()],
    )?;
    Ok(())
}

/// A person dealt with a payment that needed one (`zenchef-edge payments
/// handled <id>`); answers false when there was nothing to handle.
pub fn mark_handled(c: &Connection, payment_id: &str) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE pay_payments SET handled_at = ?2, updated_at = ?2
         WHERE payment_id = ?1 AND attention IS NOT NULL AND handled_at IS NULL",
        params![payment_id, now_utc()],
    )?;
    Ok(n == 1)
}

/// A payment that needs a person, for `status` and the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NeedsPerson {
    /// Zenchef Pay id.
    pub payment_id: String,
    /// POS order id (`""` when unreadable).
    pub order_id: String,
    /// Its table, from the order's stored events.
    pub table: Option<String>,
    /// Bill share, cents.
    pub amount_cents: i64,
    /// Tip, cents.
    pub tip_cents: i64,
    /// The payment's state, as stored (kept as text: a row whose state
    /// this binary does not know — a newer release's, after a rollback —
    /// must still be shown, never hide the others).
    pub state: String,
    /// What to check.
    pub what: String,
    /// Since when (box clock, UTC).
    pub since: String,
}

/// Payments that need a person, oldest first.
pub fn needs_person(c: &Connection) -> Result<Vec<NeedsPerson>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT payment_id, order_id, amount_cents, tip_cents, state, attention,
                COALESCE(attention_at, updated_at)
         FROM pay_payments WHERE attention IS NOT NULL AND handled_at IS NULL
         ORDER BY attention_at LIMIT 100",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(NeedsPerson {
                payment_id: r.get(0)?,
                order_id: r.get(1)?,
                table: None,
                amount_cents: r.get(2)?,
                tip_cents: r.get(3)?,
                state: r.get(4)?,
                what: r.get(5)?,
                since: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|mut n| {
            if !n.order_id.is_empty() {
                n.table = order_truth(c, &n.order_id)?.table;
            }
            Ok(n)
        })
        .collect()
}

/// The state of a payment (`None` when unknown).
pub fn state_of(c: &Connection, payment_id: &str) -> Result<Option<PaymentState>, StoreError> {
    Ok(
        c.prepare_cached("SELECT state FROM pay_payments WHERE payment_id = ?1")?
            .query_row([payment_id], |r| r.get::<_, String>(0))
            .optional()?
            .as_deref()
            .and_then(PaymentState::parse),
    )
}

/// What Zenchef Pay holds of an order's check (table `pay_checks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    /// Highest version accepted.
    pub version: u64,
    /// Its status.
    pub status: OrderStatus,
    /// The check as pushed, without its version (JSON); `None` for checks
    /// recorded before it was kept.
    pub body: Option<String>,
}

/// What Zenchef Pay holds of an order's check, `None` when no check was
/// pushed yet.
pub fn check_record(c: &Connection, order_id: &str) -> Result<Option<CheckRecord>, StoreError> {
    Ok(
        c.prepare_cached("SELECT version, status, body FROM pay_checks WHERE order_id = ?1")?
            .query_row([order_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()?
            .map(|(v, s, body)| CheckRecord {
                version: v as u64,
                status: match s.as_str() {
                    "closed" => OrderStatus::Paid,
                    "voided" => OrderStatus::Voided,
                    _ => OrderStatus::Open,
                },
                body,
            }),
    )
}

/// Records a check version Zenchef Pay accepted (never lowers the version);
/// `body` is the check without its version.
pub fn record_check(
    c: &Connection,
    order_id: &str,
    version: u64,
    status: OrderStatus,
    total_cents: i64,
    paid_cents: i64,
    body: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO pay_checks(order_id, version, status, total_cents, paid_cents, body, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(order_id) DO UPDATE SET version = excluded.version, status = excluded.status,
            total_cents = excluded.total_cents, paid_cents = excluded.paid_cents,
            body = excluded.body, updated_at = excluded.updated_at
         WHERE excluded.version >= pay_checks.version",
    )?
    .execute(params![
        order_id,
        version as i64,
        status.check_status(),
        total_cents,
        paid_cents,
        body,
        now_utc()
    ])?;
    super::bump(c, "pay_checks_pushed", 1)?;
    Ok(())
}

/// Is at least one check open at Zenchef Pay (payments are then polled
/// every 5 s)?
pub fn any_open_check(c: &Connection) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM pay_checks WHERE status = 'open' LIMIT 1")?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL list `('a', 'b')` of stored names.
    fn sql_list(states: &[PaymentState]) -> String {
        let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        format!("({})", names.join(", "))
    }

    /// The SQL lists spell the domain's typed ones, and every state reads
    /// back as itself from its stored name.
    #[test]
    fn the_sql_lists_and_names_are_the_typed_states() {
        assert_eq!(PENDING, sql_list(&PaymentState::PENDING));
        assert_eq!(WAITING, sql_list(&PaymentState::WAITING));
        let c = Connection::open_in_memory().unwrap();
        for s in PaymentState::ALL {
            let back = c
                .query_row("SELECT ?1", [s.as_str()], |r| state_at(r, 0))
                .unwrap();
            assert_eq!(back, s);
        }
        let unknown = c.query_row("SELECT 'later'", [], |r| state_at(r, 0));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown payment state \"later\""),
        );
    }
}

//! The Zenchef Pay side of the bridge (zenchef-pay-api.md, sync-rules.md
//! rules 6 and 7).
//!
//! - Checks are pushed by the dispatcher like any other call (steps of the
//!   event's plan, see [`crate::sync::pay_steps`]).
//! - [`run`] polls the payments guests make, with a durable cursor stored in
//!   the **same transaction** as the payments it covers (a restart neither
//!   skips nor repeats one). Each new payment is judged (rule 6); an
//!   accepted one becomes exactly one settle command to the POS (§7,
//!   `command_id = zp-<payment_id>`), marked sent *before* it is published
//!   so a restart never sends it twice (rule 7). A refused one is acked
//!   `rejected` with its reason (Zenchef Pay refunds the guest) and logged
//!   at ERROR.
//! - The POS answers a settle command with `payment.recorded` / `bill.paid`
//!   whose reference is the payment id; the dispatcher then acks `settled`.
//!
//! Table `pay_payments` states: `settle` (accepted, command to send),
//! `command_sent`, `settled`, `reject` (ack to send), `rejected`.

pub mod client;

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::health::Health;
use crate::outbox::{self, Store, StoreError, now_utc};
use crate::pos::session::PosLink;
use client::{GuestPayment, PayClient};

/// Poll interval while at least one check is open.
pub const POLL_OPEN: Duration = Duration::from_secs(5);
/// Poll interval otherwise.
pub const POLL_IDLE: Duration = Duration::from_secs(60);
/// A settle command with no answer from the POS after this long is sent
/// again (the POS recognises the `command_id`), with a WARN.
pub const SETTLE_RESEND_AFTER: Duration = Duration::from_secs(600);
/// `kv` key of the durable payments cursor.
pub const CURSOR_KEY: &str = "pay_cursor";

/// What became of a polled payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Accepted: a settle command goes to the POS.
    Settle,
    /// Refused with this reason.
    Reject(String),
    /// Already known (the API returned it twice): nothing changes.
    Duplicate,
}

/// Stores one page of payments and the cursor after it, judging each new
/// payment (rule 6), in one transaction.
pub fn store_page(
    c: &Connection,
    payments: &[(GuestPayment, serde_json::Value)],
    next_cursor: Option<&str>,
) -> Result<Vec<(GuestPayment, Fate)>, StoreError> {
    let now = now_utc();
    let mut out = Vec::new();
    for (p, raw) in payments {
        let known: bool = c
            .query_row(
                "SELECT 1 FROM pay_payments WHERE payment_id = ?1",
                [&p.payment_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if known {
            out.push((p.clone(), Fate::Duplicate));
            continue;
        }
        let order = outbox::load_order(c, &p.order_id)?;
        let closing_queued: bool = c
            .query_row(
                "SELECT 1 FROM outbox WHERE order_id = ?1 AND state != 'done'
                   AND type IN ('bill.paid', 'order.voided') LIMIT 1",
                [&p.order_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let pending: i64 = c.query_row(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM pay_payments
             WHERE order_id = ?1 AND state IN ('settle', 'command_sent')",
            [&p.order_id],
            |r| r.get(0),
        )?;
        let fate = match crate::sync::judge_payment(
            &p.order_id,
            p.amount_cents,
            order.as_ref(),
            closing_queued,
            pending,
        ) {
            Ok(()) => Fate::Settle,
            Err(reason) => Fate::Reject(reason),
        };
        let (state, reason) = match &fate {
            Fate::Settle => ("settle", None),
            Fate::Reject(r) => ("reject", Some(r.as_str())),
            Fate::Duplicate => unreachable!(),
        };
        c.execute(
            "INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body, state, reason,
                                      received_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![p.payment_id, p.order_id, p.amount_cents, p.tip_cents, raw.to_string(), state, reason, now],
        )?;
        out.push((p.clone(), fate));
    }
    if let Some(cursor) = next_cursor {
        outbox::kv_set(c, CURSOR_KEY, cursor)?;
    }
    Ok(out)
}

/// Marks a payment `settled` (the POS reported it and the ack went
/// through). Answers whether it was already settled.
pub fn mark_settled(c: &Connection, payment_id: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE pay_payments SET state = 'settled', updated_at = ?2 WHERE payment_id = ?1",
        params![payment_id, now_utc()],
    )?;
    Ok(())
}

/// Is this payment already settled?
pub fn is_settled(c: &Connection, payment_id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT 1 FROM pay_payments WHERE payment_id = ?1 AND state = 'settled'",
        [payment_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// A payment waiting for an action by the poller.
#[derive(Debug, Clone)]
struct Todo {
    payment_id: String,
    order_id: String,
    amount_cents: i64,
    tip_cents: i64,
    state: String,
    reason: Option<String>,
    command_sent_at: Option<String>,
    table: Option<String>,
}

fn todo(c: &Connection) -> Result<Vec<Todo>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT p.payment_id, p.order_id, p.amount_cents, p.tip_cents, p.state, p.reason,
                p.command_sent_at, o.table_name
         FROM pay_payments p LEFT JOIN orders o ON o.order_id = p.order_id
         WHERE p.state IN ('settle', 'command_sent', 'reject')
         ORDER BY p.rowid -- the order Zenchef Pay listed them
         ",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Todo {
            payment_id: r.get(0)?,
            order_id: r.get(1)?,
            amount_cents: r.get(2)?,
            tip_cents: r.get(3)?,
            state: r.get(4)?,
            reason: r.get(5)?,
            command_sent_at: r.get(6)?,
            table: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn set_state(c: &Connection, payment_id: &str, state: &str, sent: bool) -> Result<(), StoreError> {
    c.execute(
        "UPDATE pay_payments SET state = ?2, updated_at = ?3,
                command_sent_at = CASE WHEN ?4 THEN ?3 ELSE command_sent_at END
         WHERE payment_id = ?1",
        params![payment_id, state, now_utc(), sent],
    )?;
    Ok(())
}

fn any_open_check(c: &Connection) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT 1 FROM orders WHERE state = 'open' AND lines IS NOT NULL LIMIT 1",
        [],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// The settle command of §7.
pub fn settle_command(
    payment_id: &str,
    order_id: &str,
    table: &str,
    amount_cents: i64,
    tip_cents: i64,
) -> serde_json::Value {
    json!({
        "command_id": format!("zp-{payment_id}"),
        "type": "settle",
        "order_id": order_id,
        "table": table,
        "amount_cents": amount_cents,
        "tip_cents": tip_cents,
        "method": "zenchef_pay",
        "payment_id": payment_id,
    })
}

/// Runs the payments poller until `cancel`. `iid` gives the Cashpad
/// Installation ID once known (config or discovery); `wake` shortens the
/// wait (a check was opened).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: PayClient,
    store: Store,
    link: PosLink,
    configured_iid: Option<String>,
    health: Health,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let iid = configured_iid.clone().or_else(|| link.iid());
        let mut wait = POLL_IDLE;
        if let Some(iid) = iid {
            match poll_once(&client, &store, &link, &iid).await {
                Ok(()) => {
                    if failures > 0 {
                        info!("Zenchef Pay reachable again");
                    }
                    failures = 0;
                    health.update(|s| {
                        s.pay.last_success = Some(now_utc());
                        s.pay.credentials_refused = false;
                        s.pay.outage = false;
                    });
                }
                Err(e) => {
                    failures += 1;
                    let creds = e.class == crate::zenchef::client::ErrorClass::Credentials;
                    if creds {
                        error!(
                            "Zenchef Pay refused the token: check zenchef_pay.token ({e}); payments wait, nothing is lost"
                        );
                    } else if failures == 1 || failures.is_multiple_of(10) {
                        warn!("Zenchef Pay poll failed ({failures} in a row): {e}");
                    }
                    health.update(|s| {
                        s.pay.last_error = Some(format!("{} {e}", now_utc()));
                        s.pay.credentials_refused = creds;
                        s.pay.outage = !creds;
                    });
                }
            }
            if store.read(any_open_check).await.unwrap_or(false) {
                wait = POLL_OPEN;
            }
        } else {
            wait = POLL_OPEN;
            debug!("Zenchef Pay waits for the Cashpad Installation ID (POS not found yet)");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Marks the payment `command_sent` (with the time, so a silent POS gets the
/// same command again after [`SETTLE_RESEND_AFTER`]) and only then publishes
/// its settle command on `zenchef/commands` (same `command_id` each time,
/// sync-rules 7). Answers whether the command was handed to the MQTT client.
/// Errors: the store could not record the state.
async fn send_settle(
    store: &Store,
    link: &PosLink,
    t: &Todo,
) -> Result<bool, crate::zenchef::client::CallError> {
    let id = t.payment_id.clone();
    store
        .write(move |c| set_state(c, &id, "command_sent", true))
        .await
        .map_err(store_err)?;
    let cmd = settle_command(
        &t.payment_id,
        &t.order_id,
        t.table.as_deref().unwrap_or(""),
        t.amount_cents,
        t.tip_cents,
    );
    Ok(link
        .publish("zenchef/commands", cmd.to_string().into_bytes(), false)
        .await)
}

async fn poll_once(
    client: &PayClient,
    store: &Store,
    link: &PosLink,
    iid: &str,
) -> Result<(), crate::zenchef::client::CallError> {
    // 1. New payments, page by page, each page committed with its cursor.
    for _ in 0..50 {
        let cursor = store
            .read(|c| outbox::kv_get(c, CURSOR_KEY))
            .await
            .map_err(store_err)?;
        let page = client.payments(iid, cursor.as_deref()).await?;
        for (raw, why) in &page.unreadable {
            error!(
                "Zenchef Pay sent a payment the agent cannot read ({why}): {raw}; it is skipped — check it in Zenchef Pay"
            );
        }
        let n = page.payments.len();
        let moved = page.next_cursor.is_some() && page.next_cursor != cursor;
        let payments = page.payments.clone();
        let next = page.next_cursor.clone();
        let fates = store
            .write(move |c| store_page(c, &payments, next.as_deref()))
            .await
            .map_err(store_err)?;
        for (p, fate) in fates {
            match fate {
                Fate::Settle => info!(payment_id = %p.payment_id, order_id = %p.order_id,
                    "guest paid {} cents (+{} tip) through Zenchef Pay: settling it in the POS", p.amount_cents, p.tip_cents),
                Fate::Reject(reason) => error!(payment_id = %p.payment_id, order_id = %p.order_id,
                    "Zenchef Pay payment {} of {} cents REFUSED: {reason}; Zenchef Pay refunds the guest", p.payment_id, p.amount_cents),
                Fate::Duplicate => {
                    debug!(payment_id = %p.payment_id, "payment returned twice by Zenchef Pay: ignored")
                }
            }
        }
        if n == 0 || !moved {
            break;
        }
    }
    // 2. Settle commands, rejections, stale commands.
    let todo = store.read(todo).await.map_err(store_err)?;
    for t in todo {
        match t.state.as_str() {
            "settle" => {
                if !link.connected() {
                    continue;
                }
                if send_settle(store, link, &t).await? {
                    info!(payment_id = %t.payment_id, order_id = %t.order_id, "settle command sent to the POS");
                } else {
                    // Not handed to the MQTT client at all: safe to send later.
                    let id = t.payment_id.clone();
                    store
                        .write(move |c| set_state(c, &id, "settle", false))
                        .await
                        .map_err(store_err)?;
                    warn!(payment_id = %t.payment_id, "settle command not sent (POS session down); it is sent when the POS is back");
                }
            }
            "command_sent" => {
                let stale = t
                    .command_sent_at
                    .as_deref()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|at| {
                        (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
                            .to_std()
                            .unwrap_or_default()
                            > SETTLE_RESEND_AFTER
                    });
                if stale && link.connected() {
                    warn!(payment_id = %t.payment_id, order_id = %t.order_id,
                        "the POS has not answered the settle command for 10 minutes: sending it again (same command_id)");
                    send_settle(store, link, &t).await?;
                }
            }
            "reject" => {
                let reason = t.reason.clone().unwrap_or_else(|| "refused".into());
                match client.ack(iid, &t.payment_id, Some(&reason)).await {
                    Ok(()) => {}
                    Err(e) if e.class == crate::zenchef::client::ErrorClass::Dead => {
                        error!(payment_id = %t.payment_id, order_id = %t.order_id,
                            "Zenchef Pay refused the rejection ack ({e}); check this payment in Zenchef Pay");
                    }
                    Err(e) => return Err(e),
                }
                let id = t.payment_id.clone();
                store
                    .write(move |c| set_state(c, &id, "rejected", false))
                    .await
                    .map_err(store_err)?;
                info!(payment_id = %t.payment_id, order_id = %t.order_id, "rejection acknowledged to Zenchef Pay");
            }
            _ => {}
        }
    }
    Ok(())
}

fn store_err(e: StoreError) -> crate::zenchef::client::CallError {
    crate::zenchef::client::CallError {
        class: crate::zenchef::client::ErrorClass::Retry { after: None },
        status: None,
        what: "store".into(),
        message: e.to_string(),
    }
}

//! The Zenchef Pay payments of the bridge (docs/protocol/zenchef-pay.md;
//! sync rules 6 and 7). Checks are pushed by the Pay lane of delivery
//! (`crate::delivery::pay_lane`); this task owns everything about the
//! payments guests make, and shares nothing with Zenchef (reservations):
//! a Zenchef outage never delays a settle command or an ack.
//!
//! Each turn of [`run`]:
//! 1. polls the payments list with the durable cursor, stored in the
//!    **same transaction** as the payments it covers (a restart neither
//!    skips nor repeats one); each new payment is judged on the order's
//!    stored truth (rule 6): accepted → one settle command; refused → a
//!    `rejected` ack (Zenchef Pay refunds the guest), logged at ERROR; a
//!    payment it cannot read is recorded, shown as needing a person and,
//!    when its id is readable, refused — never skipped in silence;
//! 2. acts on every payment with something to do: settle commands to send
//!    (`command_id = zp-<payment_id>`, marked sent *before* it is
//!    published, so a restart never sends it twice) or to send again after
//!    a quiet period with the same `command_id`, a bounded number of
//!    times, then flagged as **needing a person** (status, page, ERROR);
//!    `settled` acks for the payments the POS reported; `rejected` acks.
//!
//! What the POS says decides a payment in the transaction that stores the
//! POS event (`crate::outbox::payments`): its reference reported →
//! answered; the bill closed or voided without it → refused ("bill closed
//! in the POS without this payment"), so a guest never pays twice.

pub mod client;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::payments::{Action, Pace as PaceFacts};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::health::Health;
use crate::outbox::payments::{self, Fate, PaymentState, Todo, Unreadable};
use crate::outbox::{Store, StoreError, kv_get, order_truth};
use crate::pos::session::PosLink;
use crate::retry::Backoff;
use crate::sync;
use crate::time::now_utc;
use crate::zenchef::client::{CallError, ErrorClass};
use client::PayClient;

/// Poll interval while at least one check is open or a payment waits.
pub const POLL_OPEN: Duration = Duration::from_secs(5);
/// Poll interval otherwise.
pub const POLL_IDLE: Duration = Duration::from_secs(60);
/// An adopted payment (from before this store) that the POS has not
/// mentioned for this long is left to the box that had it.
pub const ADOPTED_FOR: chrono::Duration = chrono::Duration::hours(24);
/// Most pages read in one turn (100 payments each).
const MAX_PAGES: usize = 50;
pub use payments::CURSOR_KEY;

/// What the payments task needs.
#[derive(Clone)]
pub struct Payments {
    /// The Zenchef Pay client.
    pub client: PayClient,
    /// The store.
    pub store: Store,
    /// The POS session (settle commands; its Installation ID).
    pub link: PosLink,
    /// `cashpad.installation_id` when configured (else from discovery).
    pub configured_iid: Option<String>,
    /// Health record (the `pay` part).
    pub health: Health,
    /// Wakes the task early: a check was opened, or a POS event decided a
    /// payment.
    pub wake: Arc<Notify>,
    /// Quiet period before a settle command is sent again.
    pub settle_resend: Duration,
    /// How many times it is sent again before a person is asked to look.
    pub settle_resends: u32,
}

/// The settle command of the Cashpad local interface §7.
pub fn settle_command(
    payment_id: &str,
    order_id: &str,
    table: &str,
    amount_cents: i64,
    tip_cents: i64,
) -> wire::SettleCommand {
    wire::SettleCommand {
        amount_cents,
        command_id: format!("zp-{payment_id}"),
        method: "zenchef_pay",
        order_id: order_id.to_string(),
        payment_id: payment_id.to_string(),
        table: table.to_string(),
        tip_cents,
        kind: "settle",
    }
}

/// What the payments task keeps between turns (this run's monotonic clock).
#[derive(Default)]
struct Pace {
    /// When each settle command was last sent (a command found sent at
    /// start counts as sent at start).
    sent: HashMap<String, Instant>,
    /// Payments whose ack failed: when to try again, and how many failures.
    ack_backoff: HashMap<String, (Instant, u32)>,
    /// Consecutive failed polls of the payments list, and when the next
    /// poll may go (the server's `Retry-After`, or the backoff).
    poll_failures: u32,
    poll_at: Option<Instant>,
}

/// First wait after a failed poll (then doubled, capped at [`POLL_IDLE`]).
const POLL_BACKOFF: Duration = Duration::from_secs(5);
/// First wait after a failed ack (then doubled, capped at [`POLL_IDLE`]).
const ACK_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the payments task until `cancel`. One payment whose ack fails never
/// holds up the others (it backs off on its own), and the list is polled
/// whatever became of the acks (sync rule 8).
pub async fn run(p: Payments, cancel: CancellationToken) {
    let mut pace = Pace::default();
    loop {
        let iid = p.configured_iid.clone().or_else(|| p.link.iid());
        let mut wait = POLL_IDLE;
        if let Some(iid) = iid {
            let mut next = act(&p, &iid, &mut pace).await;
            if pace.poll_at.is_none_or(|t| Instant::now() >= t) {
                match poll_once(&p, &iid).await {
                    Ok(()) => {
                        if pace.poll_failures > 0 {
                            info!("Zenchef Pay reachable again");
                        }
                        pace.poll_failures = 0;
                        pace.poll_at = None;
                        p.health.update(|s| {
                            s.pay.last_success = Some(now_utc());
                            s.pay.credentials_refused = false;
                            s.pay.outage = false;
                        });
                        next = earliest_of(next, act(&p, &iid, &mut pace).await);
                    }
                    Err(e) => poll_failed(&p, &mut pace, &e),
                }
            }
            if let Some(at) = earliest_of(next, pace.poll_at) {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            let busy = p
                .store
                .read(|c| Ok(payments::any_open_check(c)? || !payments::todo(c)?.is_empty()))
                .await
                .unwrap_or(false);
            if busy && pace.poll_at.is_none() {
                wait = wait.min(POLL_OPEN);
            }
        } else {
            wait = POLL_OPEN;
            debug!("Zenchef Pay waits for the Cashpad Installation ID (POS not found yet)");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            _ = p.wake.notified() => {}
        }
    }
}

/// A failed poll: the next one waits for the server's `Retry-After`, or a
/// growing backoff; the health record says so.
fn poll_failed(p: &Payments, pace: &mut Pace, e: &CallError) {
    pace.poll_failures += 1;
    let n = pace.poll_failures;
    let after = match e.class {
        ErrorClass::Retry { after } => after,
        _ => None,
    };
    let wait = Backoff::new(POLL_BACKOFF, POLL_IDLE).wait(n, 1.0, after);
    pace.poll_at = Some(Instant::now() + wait);
    let creds = e.class == ErrorClass::Credentials;
    if creds {
        error!(
            "Zenchef Pay refused the token: check zenchef_pay.token ({e}); payments wait, nothing is lost"
        );
    } else if n == 1 || n.is_multiple_of(10) {
        warn!(
            "Zenchef Pay poll failed ({n} in a row): {e}; next try in {} s",
            wait.as_secs()
        );
    }
    p.health.update(|s| {
        s.pay.last_error = Some(format!("{} {e}", now_utc()));
        s.pay.credentials_refused = creds;
        s.pay.outage = !creds;
    });
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn earliest_of(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the new payments, page by page, each page committed with its
/// cursor.
async fn poll_once(p: &Payments, iid: &str) -> Result<(), CallError> {
    for _ in 0..MAX_PAGES {
        let (cursor, catch_up) = p
            .store
            .read(|c| Ok((kv_get(c, CURSOR_KEY)?, !payments::caught_up(c)?)))
            .await
            .map_err(store_err)?;
        let page = p.client.payments(iid, cursor.as_deref()).await?;
        let unreadable: Vec<Unreadable> = page
            .unreadable
            .iter()
            .map(|(raw, why)| Unreadable {
                payment_id: raw["payment_id"]
                    .as_str()
                    .filter(|s| !s.is_empty() && s.chars().count() <= 200)
                    .map(str::to_string),
                raw: raw.clone(),
                why: why.clone(),
            })
            .collect();
        for u in &unreadable {
            error!(
                message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
                payment_id = u.payment_id.as_deref().unwrap_or(""),
                "Zenchef Pay listed a payment the agent cannot read ({}): {}; it is recorded, \
                 shown as needing a person{}",
                u.why,
                u.raw,
                if u.payment_id.is_some() {
                    " and refused (Zenchef Pay refunds the guest)"
                } else {
                    " (it has no id to refuse it with: check it in Zenchef Pay)"
                }
            );
        }
        let n = page.payments.len() + page.unreadable.len();
        let moved = page.next_cursor.is_some() && page.next_cursor != cursor;
        let listed = page.payments.clone();
        let next = page.next_cursor.clone();
        let end = n == 0 || !moved;
        let fates = p
            .store
            .write(move |c| {
                let fates =
                    payments::store_page(c, &listed, &unreadable, next.as_deref(), catch_up)?;
                if catch_up && end {
                    payments::set_caught_up(c)?;
                }
                Ok(fates)
            })
            .await
            .map_err(store_err)?;
        for (pm, fate) in fates {
            let (id, order) = (&pm.payment_id, &pm.order_id);
            match fate {
                Fate::Settle => info!(payment_id = %id, order_id = %order,
                    "guest paid {} cents (+{} tip) through Zenchef Pay: settling it in the POS",
                    pm.amount_cents, pm.tip_cents),
                Fate::Reported => info!(payment_id = %id, order_id = %order,
                    "Zenchef Pay payment {id} is already recorded by the POS: acknowledging it settled"),
                Fate::Reject(reason) => error!(payment_id = %id, order_id = %order,
                    message_id = crate::message_ids::PAYMENT_REFUSED,
                    "Zenchef Pay payment {id} of {} cents REFUSED: {reason}; Zenchef Pay refunds the guest",
                    pm.amount_cents),
                Fate::Adopted => warn!(payment_id = %id, order_id = %order,
                    "Zenchef Pay payment {id} of {} cents (order {order}) predates this store: it is \
                     neither refused nor sent until the POS says what became of it",
                    pm.amount_cents),
                Fate::Duplicate => {
                    debug!(payment_id = %id, "payment returned twice by Zenchef Pay: ignored")
                }
            }
        }
        if end {
            break;
        }
    }
    Ok(())
}

/// Acts on every payment with something to do; answers when something
/// falls due next (a resend, an ack to try again). A failed call of one
/// payment backs that payment off and the others go on; a store error ends
/// the turn (the next one tries again).
async fn act(p: &Payments, iid: &str, pace: &mut Pace) -> Option<Instant> {
    let todo = match p.store.read(payments::todo).await {
        Ok(t) => t,
        Err(e) => {
            warn!("cannot read the Zenchef Pay payments: {e}");
            return None;
        }
    };
    pace.sent
        .retain(|id, _| todo.iter().any(|t| &t.payment_id == id));
    pace.ack_backoff
        .retain(|id, _| todo.iter().any(|t| &t.payment_id == id));
    let mut next: Option<Instant> = None;
    for t in todo {
        let step = act_one(p, iid, pace, &t, &mut next).await;
        match step {
            Ok(()) => {
                pace.ack_backoff.remove(&t.payment_id);
            }
            Err(StepError::Store(e)) => {
                warn!(
                    "cannot record a Zenchef Pay payment's progress: {}; tried again shortly",
                    store_err(e)
                );
                return earliest(next, Instant::now() + POLL_BACKOFF);
            }
            Err(StepError::Pay(e)) => {
                let n = pace.ack_backoff.get(&t.payment_id).map_or(0, |(_, n)| *n) + 1;
                let after = match e.class {
                    ErrorClass::Retry { after } => after,
                    _ => None,
                };
                let wait = Backoff::new(ACK_BACKOFF, POLL_IDLE).wait(n, 1.0, after);
                let at = Instant::now() + wait;
                pace.ack_backoff.insert(t.payment_id.clone(), (at, n));
                next = earliest(next, at);
                if n == 1 || n.is_multiple_of(10) {
                    warn!(payment_id = %t.payment_id, order_id = %t.order_id,
                        "the ack of Zenchef Pay payment {} failed ({n} in a row): {e}; tried again in {} s (other payments go on)",
                        t.payment_id, wait.as_secs());
                }
                p.health.update(|s| {
                    s.pay.last_error = Some(format!("{} {e}", now_utc()));
                });
            }
        }
    }
    next
}

/// What one payment needs now (see [`act`]), as the domain's pace decides
/// it (`domain::payments::action`); `next` learns when it falls due again.
async fn act_one(
    p: &Payments,
    iid: &str,
    pace: &mut Pace,
    t: &Todo,
    next: &mut Option<Instant>,
) -> Result<(), StepError> {
    let now = Instant::now();
    // A command found sent at start counts as sent now.
    let sent_at = match t.state {
        PaymentState::CommandSent => *pace
            .sent
            .entry(t.payment_id.clone())
            .or_insert_with(Instant::now),
        _ => now,
    };
    let facts = PaceFacts {
        now,
        sent_at,
        resend_after: p.settle_resend,
        resends: t.resends as u32,
        max_resends: p.settle_resends,
        attention: t.attention,
        ack_not_before: pace.ack_backoff.get(&t.payment_id).map(|(at, _)| *at),
    };
    match domain::payments::action(t.state, &facts) {
        Action::Send | Action::Resend => {
            let resend = t.state == PaymentState::CommandSent;
            let handed = p.link.connected() && send_settle(p, t, resend).await?;
            if handed {
                pace.sent.insert(t.payment_id.clone(), Instant::now());
                *next = earliest(*next, Instant::now() + p.settle_resend);
            }
        }
        Action::WaitUntil(at) => *next = earliest(*next, at),
        Action::NeedsPerson => needs_person(p, t).await?,
        Action::Ack => {
            let reason = (t.state == PaymentState::Reject)
                .then(|| t.reason.clone().unwrap_or_else(|| "refused".into()));
            ack(p, iid, t, reason.as_deref()).await?;
        }
        Action::Reconsider => reconsider_adopted(p, t).await?,
        Action::Nothing => {}
    }
    Ok(())
}

/// Sends a payment's settle command (same `command_id` each time): marks
/// it `command_sent` first (or counts a resend), then publishes. Answers
/// whether the command was handed to the MQTT client; one that was not is
/// put back to be sent when the POS is back.
async fn send_settle(p: &Payments, t: &Todo, resend: bool) -> Result<bool, StepError> {
    let (id, order) = (t.payment_id.clone(), t.order_id.clone());
    let decided = p
        .store
        .write(move |c| {
            if resend {
                if !payments::count_resend(c, &id)? {
                    return Ok(Err(None));
                }
            } else {
                // Rule 9: an order that fell in doubt since the payment was
                // accepted gets no settle command.
                if let Some(why) = crate::outbox::order_attention(c, &order)? {
                    let reason = sync::Refusal::Attention(why).reason(&order);
                    payments::transition(
                        c,
                        &id,
                        PaymentState::Settle,
                        PaymentState::Reject,
                        Some(&reason),
                    )?;
                    return Ok(Err(Some(reason)));
                }
                if !payments::transition(
                    c,
                    &id,
                    PaymentState::Settle,
                    PaymentState::CommandSent,
                    None,
                )? {
                    return Ok(Err(None));
                }
            }
            Ok(Ok(order_truth(c, &order)?.table.unwrap_or_default()))
        })
        .await?;
    let table = match decided {
        Ok(table) => table,
        Err(None) => return Ok(false), // decided meanwhile (answered, closed)
        Err(Some(reason)) => {
            error!(payment_id = %t.payment_id, order_id = %t.order_id,
                message_id = crate::message_ids::PAYMENT_REFUSED,
                "Zenchef Pay payment {} of {} cents REFUSED: {reason}; Zenchef Pay refunds the guest",
                t.payment_id, t.amount_cents);
            return Ok(false);
        }
    };
    let cmd = settle_command(
        &t.payment_id,
        &t.order_id,
        &table,
        t.amount_cents,
        t.tip_cents,
    );
    if p.link
        .publish("zenchef/commands", cmd.to_json().into_bytes(), false)
        .await
    {
        if resend {
            warn!(payment_id = %t.payment_id, order_id = %t.order_id,
                "the POS has not answered the settle command: sent again (same command_id), {} of {}",
                t.resends + 1, p.settle_resends);
        } else {
            info!(payment_id = %t.payment_id, order_id = %t.order_id, "settle command sent to the POS");
        }
        return Ok(true);
    }
    if !resend {
        let id = t.payment_id.clone();
        p.store
            .write(move |c| {
                payments::transition(
                    c,
                    &id,
                    PaymentState::CommandSent,
                    PaymentState::Settle,
                    None,
                )
            })
            .await?;
    }
    warn!(payment_id = %t.payment_id, "settle command not sent (POS session down); it is sent when the POS is back");
    Ok(false)
}

/// The POS did not answer a settle command after every resend, and the
/// order is still open: a person must look (status, page, ERROR).
async fn needs_person(p: &Payments, t: &Todo) -> Result<(), StepError> {
    let (id, order) = (t.payment_id.clone(), t.order_id.clone());
    let (amount, tip, sends) = (t.amount_cents, t.tip_cents, t.resends + 1);
    let table = p
        .store
        .write(move |c| {
            let table = order_truth(c, &order)?.table.unwrap_or_else(|| "?".into());
            let flagged = payments::set_unanswered(
                c,
                &id,
                &format!(
                    "the POS did not answer the settle command (sent {sends} times): the guest \
                     paid {amount} cents (+{tip} tip) through Zenchef Pay; check table {table} \
                     in the POS"
                ),
            )?;
            Ok(flagged.then_some(table))
        })
        .await?;
    let Some(table) = table else {
        return Ok(()); // answered or closed meanwhile
    };
    error!(payment_id = %t.payment_id, order_id = %t.order_id,
        message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
        "NEEDS A PERSON: the POS did not answer the settle command of Zenchef Pay payment {} \
         ({} cents + {} tip, table {table}) after {} sends; it is not sent again. Check the bill \
         in the POS: once it is paid or closed the agent settles or refunds the payment by itself",
        t.payment_id, t.amount_cents, t.tip_cents, t.resends + 1);
    Ok(())
}

/// Sends a `settled` (`reason = None`) or `rejected` ack and records it.
async fn ack(p: &Payments, iid: &str, t: &Todo, reason: Option<&str>) -> Result<(), StepError> {
    let (from, to) = match reason {
        None => (PaymentState::Answered, PaymentState::Settled),
        Some(_) => (PaymentState::Reject, PaymentState::Rejected),
    };
    let refused = match p.client.ack(iid, &t.payment_id, reason).await {
        Ok(()) => None,
        Err(e) if e.class == ErrorClass::Dead => Some(e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let id = t.payment_id.clone();
    let note = refused.clone();
    p.store
        .write(move |c| {
            if let Some(why) = &note {
                payments::set_attention(
                    c,
                    &id,
                    &format!("Zenchef Pay refused the agent's ack ({why}): check this payment in Zenchef Pay"),
                )?;
            }
            payments::transition(c, &id, from, to, None)
        })
        .await
        ?;
    match (reason, refused) {
        (_, Some(why)) => error!(payment_id = %t.payment_id, order_id = %t.order_id,
            message_id = crate::message_ids::PAYMENT_NEEDS_PERSON,
            "Zenchef Pay refused the ack of payment {} ({why}); shown as needing a person", t.payment_id),
        (None, None) => info!(payment_id = %t.payment_id, order_id = %t.order_id,
            "Zenchef Pay payment {} settled in the POS and acknowledged", t.payment_id),
        (Some(r), None) => info!(payment_id = %t.payment_id, order_id = %t.order_id,
            "rejection of payment {} acknowledged to Zenchef Pay ({r})", t.payment_id),
    }
    Ok(())
}

/// An adopted payment (from before this store) is decided by the POS alone:
/// its reference reported (→ settled) or the bill closed or voided without it
/// (→ refused), both at intake. It is never sent to the POS from here: the
/// box that had it may have refunded it, and only the POS knows whether it
/// recorded it. One the POS has not mentioned for [`ADOPTED_FOR`] is left to
/// that box (`inherited`).
async fn reconsider_adopted(p: &Payments, t: &Todo) -> Result<(), StepError> {
    let old = chrono::DateTime::parse_from_rfc3339(&t.received_at)
        .is_ok_and(|at| chrono::Utc::now() - at.with_timezone(&chrono::Utc) > ADOPTED_FOR);
    if !old {
        return Ok(());
    }
    let id = t.payment_id.clone();
    let moved = p
        .store
        .write(move |c| {
            payments::transition(
                c,
                &id,
                PaymentState::Adopted,
                PaymentState::Inherited,
                Some("the POS never mentioned it to this store: left to the previous box"),
            )
        })
        .await?;
    if moved {
        warn!(payment_id = %t.payment_id, order_id = %t.order_id,
            "adopted payment {} was never mentioned by the POS in a day: left to the previous box",
            t.payment_id);
    }
    Ok(())
}

/// Why one payment's step (settle, ack, needs a person) stopped: its call
/// failed (backed off alone, other payments go on), or the store did (the
/// whole pass waits a little).
#[derive(Debug, thiserror::Error)]
enum StepError {
    /// A Zenchef Pay call failed.
    #[error(transparent)]
    Pay(#[from] CallError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store failure where the poll reports a [`CallError`] (retried).
fn store_err(e: StoreError) -> CallError {
    CallError {
        class: ErrorClass::Retry { after: None },
        status: None,
        what: "store".into(),
        message: e.to_string(),
    }
}

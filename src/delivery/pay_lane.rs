//! The Zenchef Pay lane of one order: its check, pushed from the order's
//! truth (every stored event applied in `seq` order, sync rules 6 and 10).
//!
//! One push covers every row of the order queued in this lane when the
//! truth was read: the check carries the whole bill, so after an outage
//! only the latest version goes; a dead push holds nothing (the next one
//! carries the whole order, and covers the dead rows once accepted). The
//! version is the highest stored `seq` of the order; a check Zenchef Pay
//! already holds (our `pay_checks` record of what was pushed) is not pushed
//! again. When a late event changed the bill below the version Zenchef Pay
//! holds (a `bill.paid` arriving after a later `table.moved` was pushed),
//! the check goes with the next version (held + 1): versions only grow, and
//! Zenchef Pay ignores a version it already holds. Because the truth never
//! reopens a closed order, a late `order.items_sent` never makes a paid bill
//! payable again — even when no check had been pushed before the closing
//! event: the push is then the closed check.

use tracing::{debug, error, info};

use super::{Deliverer, Ended, Failure, Outcome, classify};
use crate::outbox::queue::{self, State};
use crate::outbox::{self, payments};
use crate::pay::client::PayClient;
use crate::pay::wire::CheckBody;
use crate::sync::{self, OrderTruth};
use crate::zenchef::client::{CallError, ErrorClass};

/// What one look at the order's Pay lane found.
struct Look {
    head: Option<(i64, State, i64)>,
    truth: OrderTruth,
    check: Option<payments::CheckRecord>,
    ids: Vec<i64>,
}

/// Pushes the order's check until its Pay lane is empty, dead or a call
/// fails.
pub async fn work_order(d: &Deliverer, order: &str) -> Ended {
    let mut calls_ok = 0;
    loop {
        let o = order.to_string();
        let look = d
            .store
            .read(move |c| {
                let head = queue::next_pending(c, outbox::Lane::Pay, &o)?
                    .map(|i| (i.id, i.state, i.attempts));
                if head.as_ref().is_none_or(|(_, s, _)| *s != State::Queued) {
                    return Ok(Look {
                        head,
                        truth: OrderTruth::default(),
                        check: None,
                        ids: vec![],
                    });
                }
                Ok(Look {
                    head,
                    truth: outbox::order_truth(c, &o)?,
                    check: payments::check_record(c, &o)?,
                    ids: queue::pay_queued_ids(c, &o)?,
                })
            })
            .await;
        let look = match look {
            Ok(l) => l,
            Err(e) => return ended(calls_ok, classify(d, &Failure::Store(e), 0)),
        };
        let Some((head_id, state, attempts)) = look.head else {
            return ended(calls_ok, Outcome::Idle);
        };
        if state == State::Dead {
            return ended(calls_ok, Outcome::Dead);
        }
        match push(d, order, &look).await {
            Ok(pushed) => {
                calls_ok += usize::from(pushed.is_some());
                let (ids, o) = (look.ids.clone(), order.to_string());
                match d
                    .store
                    .write(move |c| queue::pay_done(c, &o, &ids, pushed))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => info!(
                        "{n} dead check push(es) of the order covered by the version just accepted"
                    ),
                    Err(e) => return ended(calls_ok, classify(d, &Failure::Store(e), 0)),
                }
            }
            Err(f) => {
                let outcome = classify(d, &f, attempts + 1);
                let dead = outcome == Outcome::Dead;
                let msg = f.to_string();
                if dead {
                    error!(
                        message_id = crate::message_ids::DEAD_LETTER,
                        "the Zenchef Pay check of order {order} is refused: {msg}. Its later check \
                         pushes wait behind it (its Zenchef calls do not); fix the cause, then \
                         `zenchef-edge outbox retry --all-dead`"
                    );
                }
                let _ = d
                    .store
                    .write(move |c| queue::record_pay_failure(c, head_id, &msg, dead))
                    .await;
                return ended(calls_ok, outcome);
            }
        }
    }
}

fn ended(calls_ok: usize, outcome: Outcome) -> Ended {
    Ended { calls_ok, outcome }
}

/// Pushes the check of `look.truth` unless Zenchef Pay already holds it;
/// answers the version pushed (`None`: nothing to push).
async fn push(d: &Deliverer, order: &str, look: &Look) -> Result<Option<u64>, Failure> {
    if d.pay.is_none() {
        // Zenchef Pay disabled since the rows were queued: nothing to push.
        return Ok(None);
    }
    let Some(mut body) = sync::check_body(&look.truth, &d.ctx).map(CheckBody::from) else {
        debug!("no items sent yet: no check to push");
        return Ok(None);
    };
    // What `pay_checks` keeps to see whether Zenchef Pay holds the same
    // check: the body without its version.
    body.version = None;
    let content = serde_json::to_string(&body).map_err(|e| {
        Failure::Pay(CallError {
            class: ErrorClass::Dead,
            status: None,
            what: "Zenchef Pay check".into(),
            message: format!("the check cannot be written: {e}"),
        })
    })?;
    let truth_version = look.truth.last_seq;
    let version = match &look.check {
        None => truth_version,
        Some(held) => {
            let same = match &held.body {
                Some(b) => *b == content,
                // Recorded before the body was kept: versions and status.
                None => held.version >= truth_version && held.status == look.truth.status,
            };
            if same {
                debug!(
                    "Zenchef Pay already holds this check (version {})",
                    held.version
                );
                return Ok(None);
            }
            if truth_version > held.version {
                truth_version
            } else {
                info!(
                    "a late event changed the bill below the version Zenchef Pay holds ({}): \
                     pushed as version {}",
                    held.version,
                    held.version + 1
                );
                held.version + 1
            }
        }
    };
    body.version = Some(version);
    let (pay, iid) = pay_target(d).map_err(Failure::Pay)?;
    pay.put_check(&iid, order, &body)
        .await
        .map_err(Failure::Pay)?;
    d.health.update(|s| {
        s.pay.last_success = Some(crate::time::now_utc());
        s.pay.credentials_refused = false;
        s.pay.outage = false;
    });
    let (o, t) = (order.to_string(), look.truth.clone());
    d.store
        .write(move |c| {
            payments::record_check(
                c,
                &o,
                version,
                t.status,
                t.total_cents.unwrap_or(0),
                t.paid_cents,
                &content,
            )
        })
        .await?;
    info!(
        "Zenchef Pay check {} (version {version}, total {} cents, paid {} cents)",
        look.truth.status.check_status(),
        body.total_cents,
        body.paid_cents
    );
    if look.truth.status == sync::OrderStatus::Open {
        d.wake_pay.notify_one();
    }
    Ok(Some(version))
}

/// The Pay client and the Installation ID, or a retryable error while the
/// POS (hence the Installation ID) is not known yet.
fn pay_target(d: &Deliverer) -> Result<(PayClient, String), CallError> {
    let pay = d.pay.clone().ok_or_else(|| CallError {
        class: ErrorClass::Dead,
        status: None,
        what: "Zenchef Pay".into(),
        message: "Zenchef Pay is disabled in the configuration".into(),
    })?;
    let iid = d
        .configured_iid
        .clone()
        .or_else(|| d.link.iid())
        .ok_or_else(|| CallError {
            class: ErrorClass::Retry {
                after: Some(std::time::Duration::from_secs(2)),
            },
            status: None,
            what: "Zenchef Pay".into(),
            message: "the Cashpad Installation ID is not known yet (POS not found)".into(),
        })?;
    Ok((pay, iid))
}

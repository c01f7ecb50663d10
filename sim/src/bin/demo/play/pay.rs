//! Zenchef Pay in the demo: guest payments ([`Step::GuestPays`]) and a
//! payment the agent must refuse ([`Step::InjectPayment`]), followed until
//! the POS settled them or the agent acked them, and their rows of the
//! summary.
//!
//! A guest payment is made in the Pay fake once the order's check is `open`
//! with its final total; a payment to refuse once the check is `closed`.
//! The agent sees a payment at its next poll (every 5 s while a check is
//! open, at once when a check is pushed open), so the service goes on
//! meanwhile: the POS's answer to the settle command (`payment.recorded` /
//! `bill.paid`) and the agent's rejection are reported when they happen.
//! Before a service ends, before the outage and at the end of the day the
//! demo waits (bounded, [`SETTLE_WAIT`]) for every guest payment made so far
//! to be settled in the POS, so each service's numbers are its own.
//!
//! [`Step::GuestPays`]: zenchef_sim::scenario::Step::GuestPays
//! [`Step::InjectPayment`]: zenchef_sim::scenario::Step::InjectPayment

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use zenchef_sim::pay::PaymentState;
use zenchef_sim::scenario::PaymentFate;

use super::{Demo, OUTAGE_POLL, Service, euros};

/// Zenchef Pay API token the fake expects and the agent is given.
pub(super) const PAY_TOKEN: &str = "zp-demo-token";
/// Longest wait for an order's check to reach the state a Zenchef Pay step
/// needs (pushed by the dispatcher right after the POS event).
const CHECK_WAIT: Duration = Duration::from_secs(10);
/// Longest wait for a guest payment to be settled in the POS: the agent
/// polls payments every 5 s while a check is open, then sends the settle
/// command.
const SETTLE_WAIT: Duration = Duration::from_secs(15);
/// Longest wait at the end for every Zenchef Pay payment to be acked: the
/// agent polls every 60 s when no check is open.
const ACK_WAIT: Duration = Duration::from_secs(75);
/// How often the Pay fake and the POS are looked at while waiting.
pub(super) const PAY_POLL: Duration = Duration::from_millis(50);

/// A Zenchef Pay payment made, waiting for the POS (a guest payment) or the
/// agent's ack (a payment to refuse).
#[derive(Debug)]
pub(super) struct PendingPay {
    payment_id: String,
    order_id: String,
    /// Table of the check when paid.
    table: String,
    amount_cents: i64,
    /// Service time of the payment and its service.
    at: DateTime<FixedOffset>,
    service: Service,
    /// When it was made (wall time).
    since: Instant,
    /// A guest payment the POS must settle (else one the agent must refuse).
    settle: bool,
}

/// What the Zenchef Pay part of the service looked like.
#[derive(Debug, Default)]
pub(super) struct PayReport {
    /// Wall time from a guest's payment to the POS's answer, per payment.
    pub(super) settle_latency: Vec<Duration>,
    /// Guest payments made so far per order (for "guest 1/2").
    pub(super) guests_done: BTreeMap<String, usize>,
    /// Guest payments of the scenario per order.
    pub(super) guests_total: BTreeMap<String, usize>,
    /// Payments not yet settled in the POS / not yet acked rejected.
    pub(super) pending: Vec<PendingPay>,
    /// Time spent waiting for guest payments to be settled before a
    /// service ends, the outage starts or the day ends.
    pub(super) waited: Duration,
    /// What went wrong while playing (a refused guest payment, a payment
    /// never settled…).
    pub(super) problems: Vec<String>,
    /// The Zenchef-only outage, as played.
    pub(super) zenchef_only: ZenchefOnly,
}

/// The 3-minute Zenchef-only outage (the reservations API answers 503,
/// Zenchef Pay works): guests keep paying from their phone.
#[derive(Debug, Default)]
pub(super) struct ZenchefOnly {
    /// Service time of its start and end.
    pub(super) window: Option<(DateTime<FixedOffset>, DateTime<FixedOffset>)>,
    /// When it started (wall time), while it lasts.
    pub(super) since: Option<Instant>,
    /// Guest payments made while Zenchef was down.
    pub(super) payments: Vec<String>,
    /// Of those, settled in the POS before Zenchef came back.
    pub(super) settled_while_down: usize,
    /// Zenchef Pay check versions accepted while Zenchef was down.
    pub(super) checks_while_down: usize,
    /// `counts.queued` (Zenchef lane) when Zenchef came back.
    pub(super) backlog: i64,
}

/// How a guest payment ended.
enum Settle {
    /// The POS published this answer (`payment.recorded` / `bill.paid`).
    Answered(Value),
    /// The POS refused the settle command, for this reason.
    Refused(String),
    /// The agent acked the payment `rejected` with this reason.
    Rejected(String),
}

/// Whether `answer` (a POS answer to a settle command) records
/// `payment_id`: a `payment.recorded` whose reference it is, or a
/// `bill.paid` listing it among its payments.
fn answers_payment(answer: &Value, payment_id: &str) -> bool {
    let d = &answer["data"];
    match answer["type"].as_str() {
        Some("payment.recorded") => d["reference"] == payment_id,
        Some("bill.paid") => d["payments"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["reference"] == payment_id)),
        _ => false,
    }
}

impl Demo {
    /// Guests refused (a guest payment of the scenario refunded by Zenchef
    /// Pay) and guests charged twice (a payment both recorded by the POS and
    /// refunded, or recorded by the POS more than once, or a bill whose POS
    /// payments exceed its total and tips): their payment ids.
    pub(super) fn guests_refused_or_charged_twice(&self) -> (Vec<String>, Vec<String>) {
        let answers = self.rig.pos.answers();
        // A bill.paid lists the bill's earlier payments too: a payment is
        // recorded twice when two answers of the same kind carry it.
        let recorded = |id: &str| {
            let of = |ty: &str| {
                answers
                    .iter()
                    .filter(|a| a["type"] == ty && answers_payment(a, id))
                    .count()
            };
            of("payment.recorded").max(of("bill.paid"))
        };
        let mut refused = Vec::new();
        let mut twice = Vec::new();
        for p in self.pay.payments() {
            let id = p["payment_id"].as_str().unwrap_or("").to_string();
            let rejected = matches!(self.pay.payment_state(&id), PaymentState::Rejected { .. });
            let guest = self
                .pay_report
                .guests_done
                .contains_key(p["order_id"].as_str().unwrap_or(""));
            let n = recorded(&id);
            if rejected && guest {
                refused.push(id.clone());
            }
            if n > 1 || (n > 0 && rejected) {
                twice.push(id);
            }
        }
        for order in self.pay_report.guests_done.keys() {
            if let Some(b) = self.rig.pos.bill(order) {
                let paid: i64 = b.payments.iter().map(|p| p.amount_cents).sum();
                if paid > b.total_cents + b.tip_cents {
                    twice.push(format!(
                        "{order} (POS payments {paid} > bill {} + tips {})",
                        b.total_cents, b.tip_cents
                    ));
                }
            }
        }
        (refused, twice)
    }

    /// Waits until `order_id`'s check in Zenchef Pay satisfies `condition`
    /// ([`CHECK_WAIT`]); answers the check, or records a problem.
    async fn wait_check(
        &mut self,
        order_id: &str,
        what: &str,
        condition: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        match self
            .pay
            .wait_for_check(order_id, CHECK_WAIT, condition)
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                let p = format!("{order_id}: check never {what} in Zenchef Pay: {e:#}");
                self.say(None, &format!("Pay      {p}"));
                self.pay_report.problems.push(p);
                None
            }
        }
    }

    /// A guest pays from their phone, once the check is open with its final
    /// total; the POS's answer is reported later ([`Demo::report_pay`]).
    /// Answers the time spent waiting for the check.
    pub(super) async fn guest_pays(
        &mut self,
        service: Service,
        at: DateTime<FixedOffset>,
        order_id: &str,
        amount_cents: i64,
        tip_cents: i64,
        method: &str,
    ) -> Duration {
        let t = Instant::now();
        let total = self
            .sc
            .expected
            .checks
            .get(order_id)
            .map(|c| c.total_cents)
            .unwrap_or(-1);
        let Some(check) = self
            .wait_check(order_id, &format!("open with its total {total}"), |c| {
                c["status"] == "open" && c["total_cents"] == json!(total)
            })
            .await
        else {
            return t.elapsed();
        };
        let table = check["table"].as_str().unwrap_or("?").to_string();
        let n = {
            let done = self
                .pay_report
                .guests_done
                .entry(order_id.to_string())
                .or_insert(0);
            *done += 1;
            *done
        };
        let of = self
            .pay_report
            .guests_total
            .get(order_id)
            .copied()
            .unwrap_or(1);
        let who = if of > 1 {
            format!(
                "guest {n}/{of} of table {table} pays {} of {}",
                euros(amount_cents),
                euros(total)
            )
        } else {
            format!("guest pays {} for table {table}", euros(amount_cents))
        };
        let tip = if tip_cents > 0 {
            format!(" (+{} tip)", euros(tip_cents))
        } else {
            String::new()
        };
        match self
            .pay
            .guest_pays(order_id, amount_cents, tip_cents, method)
        {
            Ok(payment_id) => {
                let down = if self.pay_report.zenchef_only.since.is_some() {
                    self.pay_report
                        .zenchef_only
                        .payments
                        .push(payment_id.clone());
                    " — Zenchef is down"
                } else {
                    ""
                };
                self.say(
                    Some(at),
                    &format!("Pay      {who}{tip} from their phone ({payment_id}){down}"),
                );
                self.pay_report.pending.push(PendingPay {
                    payment_id,
                    order_id: order_id.to_string(),
                    table,
                    amount_cents,
                    at,
                    service,
                    since: Instant::now(),
                    settle: true,
                });
            }
            Err(why) => {
                let p = format!("{order_id}: Zenchef Pay refused the guest's payment: {why}");
                self.say(
                    Some(at),
                    &format!("Pay      {who}{tip}: REFUSED by Zenchef Pay ({why})"),
                );
                self.pay_report.problems.push(p);
            }
        }
        t.elapsed()
    }

    /// What became of a guest payment so far: the POS's answer, a refusal
    /// by the POS, a rejection by the agent, or `None` yet.
    fn settle_outcome(&self, payment_id: &str) -> Option<Settle> {
        let st = self.rig.pos.state();
        if let Some(a) = st.answers.iter().find(|a| answers_payment(a, payment_id)) {
            return Some(Settle::Answered(a.clone()));
        }
        if let Some((_, why)) = st
            .refused_commands
            .iter()
            .find(|(c, _)| c["payment_id"] == payment_id)
        {
            return Some(Settle::Refused(why.clone()));
        }
        match self.pay.payment_state(payment_id) {
            PaymentState::Rejected { reason } => Some(Settle::Rejected(reason)),
            _ => None,
        }
    }

    /// A guest pays a table already paid in cash: once its check is
    /// `closed`, the payment appears in the Pay fake; the agent must refuse
    /// it (reported when acked, see [`Demo::report_pay`]). Answers the time
    /// spent waiting for the check.
    pub(super) async fn inject_payment(
        &mut self,
        service: Service,
        at: DateTime<FixedOffset>,
        order_id: &str,
        amount_cents: i64,
        tip_cents: i64,
        method: &str,
    ) -> Duration {
        let t = Instant::now();
        let Some(check) = self
            .wait_check(order_id, "closed", |c| c["status"] == "closed")
            .await
        else {
            return t.elapsed();
        };
        let table = check["table"].as_str().unwrap_or("?").to_string();
        let paid_with = self
            .rig
            .pos
            .bill(order_id)
            .map(|b| {
                b.payments
                    .iter()
                    .map(|p| p.method.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
            .unwrap_or_else(|| "?".into());
        let payment_id = self.pay.inject_payment(json!({
            "order_id": order_id,
            "amount_cents": amount_cents,
            "tip_cents": tip_cents,
            "method": method,
        }));
        self.say(
            Some(at),
            &format!(
                "Pay      a guest pays {} for table {table} from their phone ({payment_id}), but the table was already paid ({paid_with}) on the POS",
                euros(amount_cents)
            ),
        );
        self.pay_report.pending.push(PendingPay {
            payment_id,
            order_id: order_id.to_string(),
            table,
            amount_cents,
            at,
            service,
            since: Instant::now(),
            settle: false,
        });
        t.elapsed()
    }

    /// Reports what became of the pending Zenchef Pay payments since the
    /// last look: a guest payment settled in the POS (or refused, rejected,
    /// or not settled within [`SETTLE_WAIT`]: a problem), a payment refused
    /// by the agent (or settled: a problem).
    pub(super) fn report_pay(&mut self) {
        let pending = std::mem::take(&mut self.pay_report.pending);
        for p in pending {
            let late = p.since.elapsed();
            let line = if p.settle {
                match self.settle_outcome(&p.payment_id) {
                    None if late < SETTLE_WAIT => {
                        self.pay_report.pending.push(p);
                        continue;
                    }
                    outcome => self.settled_line(&p, outcome, late),
                }
            } else {
                match self.pay.payment_state(&p.payment_id) {
                    PaymentState::Unacked => {
                        self.pay_report.pending.push(p);
                        continue;
                    }
                    PaymentState::Rejected { reason } => format!(
                        "→ {} for table {}{}: the agent refused it {:.1} s later: \"{reason}\"; Zenchef Pay refunds the guest",
                        euros(p.amount_cents),
                        p.table,
                        self.paid_at(&p),
                        late.as_secs_f64()
                    ),
                    PaymentState::Settled => {
                        let what = format!(
                            "payment {} ({}): acked settled, expected rejected (the table was already paid)",
                            p.payment_id, p.order_id
                        );
                        self.pay_report.problems.push(what.clone());
                        format!("→ {what}")
                    }
                }
            };
            self.say(self.clock, &format!("Pay      {line}"));
        }
    }

    /// `" (paid at 22:58)"` when the service clock moved on since the
    /// payment, else empty.
    fn paid_at(&self, p: &PendingPay) -> String {
        if self
            .clock
            .is_some_and(|c| c.format("%H:%M").to_string() != p.at.format("%H:%M").to_string())
        {
            format!(" (paid at {})", p.at.format("%H:%M"))
        } else {
            String::new()
        }
    }

    /// The progress line of a guest payment's outcome (`None`: not settled
    /// within [`SETTLE_WAIT`]); records stats and problems.
    fn settled_line(&mut self, p: &PendingPay, outcome: Option<Settle>, late: Duration) -> String {
        let head = format!(
            "→ {} for table {}{}",
            euros(p.amount_cents),
            p.table,
            self.paid_at(p)
        );
        let (id, order) = (&p.payment_id, &p.order_id);
        match outcome {
            Some(Settle::Answered(answer)) => {
                self.pay_report.settle_latency.push(late);
                let what = if answer["type"] == "bill.paid" {
                    let st = self.stats(p.service);
                    st.paid += 1;
                    st.paid_by_pay += 1;
                    "bill.paid: table closed".to_string()
                } else {
                    self.stats(p.service).split_payments += 1;
                    "payment.recorded".to_string()
                };
                format!(
                    "{head}: settled in the POS {:.1} s later ({what}, seq {})",
                    late.as_secs_f64(),
                    answer["seq"]
                )
            }
            Some(Settle::Refused(why)) => {
                self.pay_report.problems.push(format!(
                    "payment {id} ({order}): the POS refused the agent's settle command: {why}"
                ));
                format!("{head}: the POS REFUSED the settle command: {why}")
            }
            Some(Settle::Rejected(reason)) => {
                self.pay_report.problems.push(format!(
                    "payment {id} ({order}): rejected by the agent ({reason:?}), expected settled"
                ));
                format!("{head}: REJECTED by the agent: {reason}")
            }
            None => {
                let commands = self
                    .rig
                    .pos
                    .commands()
                    .iter()
                    .filter(|c| c["payment_id"] == id.as_str())
                    .count();
                self.pay_report.problems.push(format!(
                    "payment {id} ({order}): not settled in the POS within {SETTLE_WAIT:?} ({commands} settle commands received)"
                ));
                format!(
                    "{head}: NOT settled in the POS after {:.1} s",
                    late.as_secs_f64()
                )
            }
        }
    }

    /// Waits until every guest payment made so far was settled in the POS
    /// (each at most [`SETTLE_WAIT`] after it was made), reporting as it
    /// goes. Answers the time spent waiting.
    pub(super) async fn wait_pay_settled(&mut self) -> Duration {
        let t = Instant::now();
        loop {
            self.report_pay();
            if !self.pay_report.pending.iter().any(|p| p.settle) {
                break;
            }
            tokio::time::sleep(PAY_POLL).await;
        }
        let waited = t.elapsed();
        self.pay_report.waited += waited;
        waited
    }

    /// Waits ([`ACK_WAIT`]) until the agent acked every Zenchef Pay
    /// payment (settled or rejected).
    pub(super) async fn wait_pay_acked(&mut self) {
        let t = Instant::now();
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        self.wait_pay_settled().await;
        loop {
            self.report_pay();
            let unacked: Vec<String> = self
                .pay
                .payments()
                .iter()
                .filter_map(|p| p["payment_id"].as_str().map(str::to_string))
                .filter(|id| self.pay.payment_state(id) == PaymentState::Unacked)
                .collect();
            if unacked.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                self.pay_report.problems.push(format!(
                    "Zenchef Pay payments never acked by the agent within {ACK_WAIT:?}: {}",
                    unacked.join(", ")
                ));
                break;
            }
            tokio::time::sleep(OUTAGE_POLL).await;
        }
        self.say(
            None,
            &format!(
                "every Zenchef Pay payment acked by the agent (waited {:.1} s)",
                t.elapsed().as_secs_f64()
            ),
        );
    }

    /// Expected Zenchef Pay payments `(to settle, to reject)`.
    pub(super) fn expected_fates(&self) -> (usize, usize) {
        let settle = self
            .sc
            .expected
            .payments
            .iter()
            .filter(|p| p.fate == PaymentFate::Settled)
            .count();
        (settle, self.sc.expected.payments.len() - settle)
    }

    /// The Zenchef Pay rows of the summary.
    pub(super) fn print_pay_summary(&self, c: &Value) {
        let row = |label: &str, value: String| println!("  {label:<38} {value}");
        let checks = self.pay.checks();
        let versions: usize = checks.keys().map(|o| self.pay.check_history(o).len()).sum();
        row(
            "Zenchef Pay checks pushed",
            format!(
                "agent {}; Zenchef Pay accepted {versions} versions of {} checks (expected {})",
                c["pay_checks_pushed"],
                checks.len(),
                self.sc.expected.checks.len()
            ),
        );
        let (settle, reject) = self.expected_fates();
        let payments = self.pay.payments();
        let settled: Vec<&Value> = payments
            .iter()
            .filter(|p| {
                self.pay
                    .payment_state(p["payment_id"].as_str().unwrap_or(""))
                    == PaymentState::Settled
            })
            .collect();
        let tables: BTreeSet<&str> = settled
            .iter()
            .filter_map(|p| p["order_id"].as_str())
            .collect();
        let split = self.pay_report.guests_total.values().filter(|n| **n > 1);
        let split_guests: usize = split.clone().sum();
        let tips: i64 = settled.iter().filter_map(|p| p["tip_cents"].as_i64()).sum();
        let lat = &self.pay_report.settle_latency;
        let latency = if lat.is_empty() {
            String::new()
        } else {
            let avg = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len() as f64;
            let max = lat.iter().map(Duration::as_secs_f64).fold(0.0, f64::max);
            format!(
                "; guest → POS {avg:.1} s on average, {max:.1} s max (the service waited {:.1} s for them)",
                self.pay_report.waited.as_secs_f64()
            )
        };
        row(
            "Zenchef Pay payments settled",
            format!(
                "agent {}; acked settled {}/{settle}: {} tables ({} split between {split_guests} guests), tips {}{latency}",
                c["pay_settled"],
                settled.len(),
                tables.len(),
                split.count(),
                euros(tips)
            ),
        );
        let refunds = self.pay.refunds();
        row(
            "Zenchef Pay payments rejected",
            format!(
                "agent {}; refunded by Zenchef Pay {}/{reject}",
                c["pay_rejected"],
                refunds.len()
            ),
        );
        for r in &refunds {
            let order = r["order_id"].as_str().unwrap_or("?");
            let table = self
                .rig
                .pos
                .bill(order)
                .map(|b| b.table)
                .unwrap_or_default();
            println!(
                "    {} {} for {order} (table {table}): \"{}\"",
                r["payment_id"].as_str().unwrap_or("?"),
                euros(r["amount_cents"].as_i64().unwrap_or(0)),
                r["reason"].as_str().unwrap_or("")
            );
        }
        let z = &self.pay_report.zenchef_only;
        if let Some((from, to)) = z.window {
            row(
                "Zenchef-only outage (Pay up)",
                format!(
                    "{}–{}: {} guest payment(s) made while Zenchef answered 503, {} settled in \
                     the POS before it came back; {} check version(s) accepted by Zenchef Pay \
                     meanwhile; {} event(s) waited for Zenchef",
                    from.format("%H:%M"),
                    to.format("%H:%M"),
                    z.payments.len(),
                    z.settled_while_down,
                    z.checks_while_down,
                    z.backlog
                ),
            );
        }
        let (refused, twice) = self.guests_refused_or_charged_twice();
        row(
            "guests refused / charged twice",
            format!(
                "{} / {} (the one payment refused above was for a table already paid in cash)",
                refused.len(),
                twice.len()
            ),
        );
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for ch in checks.values() {
            *statuses
                .entry(ch["status"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        let closed = statuses.get("closed").copied().unwrap_or(0);
        let others: Vec<String> = statuses
            .iter()
            .filter(|(s, _)| s.as_str() != "closed")
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        row(
            "Zenchef Pay checks at the end",
            format!(
                "{closed}/{} closed{}",
                self.sc.expected.checks.len(),
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", others.join(", "))
                }
            ),
        );
    }
}

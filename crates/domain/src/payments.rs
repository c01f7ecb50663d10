//! Zenchef Pay payments (docs/protocol/sync-rules.md, rules 6 and 7): the
//! states of a payment and its transitions, as pure functions from the
//! payment's state and what was reported to the next state. The outbox
//! stores the states under their names (`pay_payments.state`) and makes
//! each transition in the transaction of the event or page that caused it.
//!
//! States: `settle` (accepted, its settle command to send) → `command_sent`
//! → `answered` (the POS reported it) → `settled` (acknowledged); `reject`
//! (refused: rule 6, or the bill closed or voided without it, rule 7) →
//! `rejected` (acknowledged, Zenchef Pay refunds the guest); `adopted` (a
//! new store's catch-up: the POS decides), `inherited` (never mentioned
//! by the POS: left to the previous box), `held` (the POS contradicted
//! itself: a person decides, no ack).

use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sync::{Refusal, Verdict};

/// A payment made by a guest, as Zenchef Pay lists it (docs/protocol/zenchef-pay.md
/// § Payments; read from the page's JSON by the agent's Pay client).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GuestPayment {
    /// Zenchef Pay id, e.g. `pay_8f2c`.
    pub payment_id: String,
    /// POS order id the check belongs to.
    pub order_id: String,
    /// Amount paid toward the bill, cents.
    pub amount_cents: i64,
    /// Tip, cents.
    #[serde(default)]
    pub tip_cents: i64,
    /// Card, wallet… (informational).
    #[serde(default)]
    pub method: Option<String>,
    /// When the guest paid.
    #[serde(default)]
    pub paid_at: Option<String>,
}

/// A payment's state (see the module documentation). Stored, and shown by
/// `status --json`, under [`PaymentState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Accepted, settle command to send.
    Settle,
    /// Settle command sent, no answer yet.
    CommandSent,
    /// Reported by the POS, `settled` ack to send.
    Answered,
    /// Acknowledged `settled`.
    Settled,
    /// `rejected` ack to send.
    Reject,
    /// Acknowledged `rejected`.
    Rejected,
    /// From a new store's catch-up, waiting for the POS to decide.
    Adopted,
    /// Never mentioned by the POS: left to the previous box.
    Inherited,
    /// The POS contradicted itself: no ack, a person decides.
    Held,
}

impl PaymentState {
    /// Every state.
    pub const ALL: [PaymentState; 9] = [
        PaymentState::Settle,
        PaymentState::CommandSent,
        PaymentState::Answered,
        PaymentState::Settled,
        PaymentState::Reject,
        PaymentState::Rejected,
        PaymentState::Adopted,
        PaymentState::Inherited,
        PaymentState::Held,
    ];

    /// States whose amount counts as sent to the POS (or about to be) and
    /// not yet answered: the `pending` of rule 6's "due". (An adopted
    /// payment is not counted: it may have been refunded by the box that
    /// had it, and it would then refuse other guests' payments for
    /// nothing.)
    pub const PENDING: [PaymentState; 2] = [PaymentState::Settle, PaymentState::CommandSent];

    /// States of a payment still waiting for the POS: a closing event
    /// without its reference decides them (refused, rule 7).
    pub const WAITING: [PaymentState; 3] = [
        PaymentState::Settle,
        PaymentState::CommandSent,
        PaymentState::Adopted,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Settle => "settle",
            PaymentState::CommandSent => "command_sent",
            PaymentState::Answered => "answered",
            PaymentState::Settled => "settled",
            PaymentState::Reject => "reject",
            PaymentState::Rejected => "rejected",
            PaymentState::Adopted => "adopted",
            PaymentState::Inherited => "inherited",
            PaymentState::Held => "held",
        }
    }

    /// From the stored name (`None`: a name this release does not know).
    pub fn parse(s: &str) -> Option<PaymentState> {
        PaymentState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the POS closed a bill without a waiting payment (rule 7): the kind
/// of refusal that a later report of the same payment contradicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedWithout {
    /// `bill.paid` without its reference.
    Paid,
    /// `order.voided`.
    Voided,
}

impl ClosedWithout {
    /// The reason stored with the refusal (`pay_payments.reason`) and sent
    /// with the `rejected` ack. The store keeps the sentence, not the
    /// kind: rows written by earlier releases hold only it, so this is the
    /// one place where the kind and its sentence meet ([`Self::of_reason`]
    /// reads it back).
    pub fn reason(self) -> &'static str {
        match self {
            ClosedWithout::Paid => "bill closed in the POS without this payment",
            ClosedWithout::Voided => "order voided in the POS without this payment",
        }
    }

    /// The kind of a stored refusal reason: `None` for a refusal of rule 6
    /// (or no reason).
    pub fn of_reason(reason: &str) -> Option<ClosedWithout> {
        [ClosedWithout::Paid, ClosedWithout::Voided]
            .into_iter()
            .find(|k| k.reason() == reason)
    }
}

/// What a payment Zenchef Pay lists becomes (rule 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its first state: `settle`, `answered`, `reject` or `adopted`.
    pub state: PaymentState,
    /// Why it is refused (state `reject`).
    pub refusal: Option<Refusal>,
}

/// The state of a newly listed payment from its [`Verdict`]. `catch_up`:
/// the store has never read Zenchef Pay's list to its end (a replaced
/// box): what the box that had the payment did is unknown (it may have
/// refunded it), so a payment that would be settled, or refused for any
/// reason but a closed bill, is adopted and left to the POS to decide.
pub fn listed(verdict: Verdict, catch_up: bool) -> Listed {
    let state = |state| Listed {
        state,
        refusal: None,
    };
    match verdict {
        Verdict::Settle if catch_up => state(PaymentState::Adopted),
        Verdict::Settle => state(PaymentState::Settle),
        Verdict::Reported => state(PaymentState::Answered),
        // A closed bill lists all its payments: that one is not there.
        Verdict::Refuse(r @ (Refusal::Paid | Refusal::Voided)) => Listed {
            state: PaymentState::Reject,
            refusal: Some(r),
        },
        Verdict::Refuse(_) if catch_up => state(PaymentState::Adopted),
        Verdict::Refuse(r) => Listed {
            state: PaymentState::Reject,
            refusal: Some(r),
        },
    }
}

/// What the POS reporting a Zenchef Pay payment (a `payment.recorded`, or
/// a `bill.paid` payment, with its reference) does to it (rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReport {
    /// Never listed by this store (sent by a previous box): recorded as
    /// `answered`.
    Record,
    /// Becomes `answered` (reason and attention cleared): the `settled`
    /// ack is to be sent.
    Answer,
    /// The bill had been closed or voided without it and it is not acked
    /// yet: `held`, a person decides (no ack).
    Hold,
    /// Zenchef Pay already refunded it: flagged, the bill counts money the
    /// guest got back.
    AfterRefund,
    /// Already answered, and reported again by a `payment.recorded`: the
    /// caller counts the POS's records of it, two or more are flagged.
    CountRecords,
    /// Nothing changes (a `bill.paid` lists earlier payments again; a
    /// held payment stays held).
    Nothing,
}

/// The transition of a payment in `state` (`None`: not stored) that the
/// POS reports; `closed_without`: the kind of its stored refusal, if the
/// bill's closing refused it; `partial`: reported by a `payment.recorded`
/// (not a `bill.paid`).
pub fn on_report(
    state: Option<PaymentState>,
    closed_without: Option<ClosedWithout>,
    partial: bool,
) -> OnReport {
    match state {
        Some(PaymentState::Reject) if closed_without.is_some() => OnReport::Hold,
        None => OnReport::Record,
        Some(
            PaymentState::Settle
            | PaymentState::CommandSent
            | PaymentState::Adopted
            | PaymentState::Inherited
            | PaymentState::Reject,
        ) => OnReport::Answer,
        Some(PaymentState::Rejected) => OnReport::AfterRefund,
        Some(PaymentState::Answered | PaymentState::Settled) if partial => OnReport::CountRecords,
        Some(PaymentState::Answered | PaymentState::Settled | PaymentState::Held) => {
            OnReport::Nothing
        }
    }
}

/// The POS closed (`bill.paid`) or voided the order of a payment in
/// `state`: the refusal that ends it (`reject` with [`ClosedWithout`]'s
/// reason), or `None` when the closing leaves it as it is — it is not
/// waiting for the POS, or the closing event carries its reference
/// (`referenced`: it was paid with the bill).
pub fn on_closing(state: PaymentState, referenced: bool, voided: bool) -> Option<ClosedWithout> {
    if referenced || !PaymentState::WAITING.contains(&state) {
        return None;
    }
    Some(if voided {
        ClosedWithout::Voided
    } else {
        ClosedWithout::Paid
    })
}

/// What the payments task knows of a payment's pace (rule 7: settle
/// commands resent with the same `command_id`, a bounded number of times;
/// acks retried after a failure). `T` is the task's clock (tokio's
/// `Instant` in the agent, so that tests can pause time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace<T> {
    /// Now.
    pub now: T,
    /// When its settle command was last handed to the POS (state
    /// `command_sent`; one found sent at start counts as sent then).
    pub sent_at: T,
    /// Quiet time before a settle command is sent again
    /// (`[zenchef_pay] settle_resend_s`).
    pub resend_after: Duration,
    /// Resends made so far.
    pub resends: u32,
    /// Resends allowed (`[zenchef_pay] settle_resends`).
    pub max_resends: u32,
    /// Already flagged as needing a person.
    pub attention: bool,
    /// After a failed ack: not before this instant.
    pub ack_not_before: Option<T>,
}

/// What the payments task does with a payment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<T> {
    /// Send its settle command (state `settle`).
    Send,
    /// Send its settle command again, same `command_id`: the POS was quiet
    /// for the resend interval.
    Resend,
    /// Nothing before this instant.
    WaitUntil(T),
    /// Every resend was made and the POS never answered: a person must
    /// look (flagged once).
    NeedsPerson,
    /// Acknowledge it to Zenchef Pay: `settled` (state `answered`) or
    /// `rejected` with its reason (state `reject`).
    Ack,
    /// An adopted payment: left to the previous box once it is old enough.
    Reconsider,
    /// Nothing to do (an end state, held, or inherited; or flagged already).
    Nothing,
}

/// The next action on a payment in `state` (rule 7's pace).
pub fn action<T>(state: PaymentState, p: &Pace<T>) -> Action<T>
where
    T: Copy + Ord + Add<Duration, Output = T>,
{
    match state {
        PaymentState::Settle => Action::Send,
        PaymentState::CommandSent => {
            let due = p.sent_at + p.resend_after;
            if p.now < due {
                Action::WaitUntil(due)
            } else if p.resends < p.max_resends {
                Action::Resend
            } else if !p.attention {
                Action::NeedsPerson
            } else {
                Action::Nothing
            }
        }
        PaymentState::Answered | PaymentState::Reject => match p.ack_not_before {
            Some(at) if p.now < at => Action::WaitUntil(at),
            _ => Action::Ack,
        },
        PaymentState::Adopted => Action::Reconsider,
        PaymentState::Settled
        | PaymentState::Rejected
        | PaymentState::Inherited
        | PaymentState::Held => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_stored_names() {
        let names: Vec<&str> = PaymentState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "settle",
                "command_sent",
                "answered",
                "settled",
                "reject",
                "rejected",
                "adopted",
                "inherited",
                "held"
            ]
        );
        for s in PaymentState::ALL {
            assert_eq!(PaymentState::parse(s.as_str()), Some(s));
            // `status --json` shows the same name.
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(PaymentState::parse("later"), None);
    }

    #[test]
    fn closing_refusals_keep_their_sentences() {
        use ClosedWithout::*;
        assert_eq!(Paid.reason(), "bill closed in the POS without this payment");
        assert_eq!(
            Voided.reason(),
            "order voided in the POS without this payment"
        );
        for k in [Paid, Voided] {
            assert_eq!(ClosedWithout::of_reason(k.reason()), Some(k));
        }
        // A refusal of rule 6 is not one of them.
        let rule_6 = Refusal::Paid.reason("O-1");
        assert_eq!(ClosedWithout::of_reason(&rule_6), None);
        assert_eq!(ClosedWithout::of_reason(""), None);
    }

    /// Rule 6: a listed payment's first state, in normal running and while
    /// a new store catches up.
    #[test]
    fn listed_payments_start_where_their_verdict_says() {
        use PaymentState::*;
        let exceeds = Refusal::Exceeds {
            amount: 5000,
            due: 100,
        };
        let cases: Vec<(&str, Verdict, bool, PaymentState, Option<Refusal>)> = vec![
            ("accepted", Verdict::Settle, false, Settle, None),
            (
                "accepted, catching up",
                Verdict::Settle,
                true,
                Adopted,
                None,
            ),
            ("already reported", Verdict::Reported, false, Answered, None),
            (
                "reported, catching up",
                Verdict::Reported,
                true,
                Answered,
                None,
            ),
            (
                "bill paid",
                Verdict::Refuse(Refusal::Paid),
                false,
                Reject,
                Some(Refusal::Paid),
            ),
            (
                "bill paid, catching up: still refused (a closed bill lists all its payments)",
                Verdict::Refuse(Refusal::Paid),
                true,
                Reject,
                Some(Refusal::Paid),
            ),
            (
                "voided, catching up",
                Verdict::Refuse(Refusal::Voided),
                true,
                Reject,
                Some(Refusal::Voided),
            ),
            (
                "too much",
                Verdict::Refuse(exceeds.clone()),
                false,
                Reject,
                Some(exceeds.clone()),
            ),
            (
                "too much, catching up: adopted",
                Verdict::Refuse(exceeds),
                true,
                Adopted,
                None,
            ),
            (
                "unknown order, catching up: adopted",
                Verdict::Refuse(Refusal::Unknown),
                true,
                Adopted,
                None,
            ),
            (
                "unknown order",
                Verdict::Refuse(Refusal::Unknown),
                false,
                Reject,
                Some(Refusal::Unknown),
            ),
        ];
        for (what, verdict, catch_up, state, refusal) in cases {
            assert_eq!(
                listed(verdict, catch_up),
                Listed { state, refusal },
                "{what}"
            );
        }
    }

    /// Rule 7: the POS reports a payment, from every state.
    #[test]
    fn a_report_moves_each_state() {
        use OnReport::*;
        use PaymentState as S;
        let closed = Some(ClosedWithout::Paid);
        let cases: Vec<(Option<S>, Option<ClosedWithout>, bool, OnReport)> = vec![
            (None, None, true, Record),
            (None, None, false, Record),
            (Some(S::Settle), None, true, Answer),
            (Some(S::CommandSent), None, false, Answer),
            (Some(S::Adopted), None, true, Answer),
            (Some(S::Inherited), None, true, Answer),
            // Refused by rule 6 (too much…), then reported: the POS took it.
            (Some(S::Reject), None, true, Answer),
            // Refused because the bill closed without it, then reported.
            (Some(S::Reject), closed, true, Hold),
            (Some(S::Reject), Some(ClosedWithout::Voided), false, Hold),
            (Some(S::Rejected), None, true, AfterRefund),
            (Some(S::Rejected), closed, true, AfterRefund),
            (Some(S::Answered), None, true, CountRecords),
            (Some(S::Settled), None, true, CountRecords),
            (Some(S::Answered), None, false, Nothing),
            (Some(S::Settled), None, false, Nothing),
            (Some(S::Held), None, true, Nothing),
            (Some(S::Held), closed, false, Nothing),
        ];
        for (state, closed_without, partial, want) in cases {
            assert_eq!(
                on_report(state, closed_without, partial),
                want,
                "{state:?} {closed_without:?} partial={partial}"
            );
        }
    }

    /// Rule 7: a closing event without a waiting payment's reference
    /// refuses it; every other state stays.
    #[test]
    fn a_closing_refuses_only_waiting_payments_it_does_not_list() {
        for s in PaymentState::ALL {
            let waiting = PaymentState::WAITING.contains(&s);
            assert_eq!(
                on_closing(s, false, false),
                waiting.then_some(ClosedWithout::Paid),
                "{s:?}"
            );
            assert_eq!(
                on_closing(s, false, true),
                waiting.then_some(ClosedWithout::Voided),
                "{s:?}"
            );
            assert_eq!(on_closing(s, true, false), None, "{s:?} referenced");
        }
        assert_eq!(
            PaymentState::WAITING.map(PaymentState::as_str),
            ["settle", "command_sent", "adopted"]
        );
        assert_eq!(
            PaymentState::PENDING.map(PaymentState::as_str),
            ["settle", "command_sent"]
        );
    }

    /// Rule 7's pace: resends after a quiet interval, a bounded number of
    /// times, then a person; acks wait out their backoff.
    #[test]
    fn the_pace_of_each_state() {
        use Action::*;
        use PaymentState as S;
        // Seconds as the clock: the rule only adds and compares.
        let s = Duration::from_secs;
        let pace = |now: u64, resends: u32, attention: bool, ack: Option<u64>| Pace {
            now: Duration::ZERO + s(now),
            sent_at: Duration::ZERO + s(100),
            resend_after: s(30),
            resends,
            max_resends: 2,
            attention,
            ack_not_before: ack.map(s),
        };
        let cases: Vec<(&str, S, Pace<Duration>, Action<Duration>)> = vec![
            ("accepted: sent", S::Settle, pace(100, 0, false, None), Send),
            (
                "sent, quiet",
                S::CommandSent,
                pace(110, 0, false, None),
                WaitUntil(s(130)),
            ),
            (
                "sent, quiet to the second",
                S::CommandSent,
                pace(129, 1, false, None),
                WaitUntil(s(130)),
            ),
            (
                "sent, due: resent",
                S::CommandSent,
                pace(130, 0, false, None),
                Resend,
            ),
            (
                "second resend",
                S::CommandSent,
                pace(200, 1, false, None),
                Resend,
            ),
            (
                "every resend made",
                S::CommandSent,
                pace(200, 2, false, None),
                NeedsPerson,
            ),
            (
                "already flagged",
                S::CommandSent,
                pace(200, 2, true, None),
                Nothing,
            ),
            (
                "answered: settled ack",
                S::Answered,
                pace(0, 0, false, None),
                Ack,
            ),
            (
                "refused: rejected ack",
                S::Reject,
                pace(0, 0, false, None),
                Ack,
            ),
            (
                "ack backing off",
                S::Reject,
                pace(5, 0, false, Some(9)),
                WaitUntil(s(9)),
            ),
            (
                "ack backoff over",
                S::Answered,
                pace(9, 0, false, Some(9)),
                Ack,
            ),
            ("adopted", S::Adopted, pace(0, 0, false, None), Reconsider),
            ("settled", S::Settled, pace(0, 0, false, None), Nothing),
            ("rejected", S::Rejected, pace(0, 0, false, None), Nothing),
            ("inherited", S::Inherited, pace(0, 0, false, None), Nothing),
            ("held", S::Held, pace(0, 0, false, None), Nothing),
        ];
        for (what, state, p, want) in cases {
            assert_eq!(action(state, &p), want, "{what}");
        }
    }
}

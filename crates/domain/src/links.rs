//! Manual links (docs/protocol/sync-rules.md, rule 4b): what to do with a
//! technician's `link <order> <booking>` or `unlink <order>`, decided from
//! what the store says about the order ([`Facts`]) — refuse, wait, nothing
//! to do, or apply (and which walk-in to cancel). Pure: the agent reads the
//! facts; the order's Zenchef lane asks Zenchef for the booking and writes
//! the link.

use crate::sync::{Link, OrderState, OrderStatus};

/// Who already holds a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Another open order is linked to it.
    Order {
        /// That order.
        order_id: String,
        /// Its table.
        table: String,
    },
    /// Another order's `table.opened` chose it and is being delivered.
    Matching {
        /// That order.
        order_id: String,
    },
}

/// What the store says about the order of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The order's state, once an event of it was delivered.
    pub order: Option<OrderState>,
    /// At least one event of the order was received.
    pub has_events: bool,
    /// Its earliest undelivered event (Zenchef lane) is queued, being
    /// delivered: the dispatcher holds a copy of the order state while it
    /// works, so the link waits. (One stuck on a dead letter does not.)
    pub delivering: bool,
    /// Number of its undelivered events (Zenchef lane).
    pub pending: i64,
    /// Another order holding the requested booking.
    pub holder: Option<Holder>,
}

/// What to do with a request. The sentences are shown by the CLI and
/// stored with the request (`link_requests.result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Never: the sentence says why.
    Refuse(String),
    /// Not now: the sentence says what it waits for.
    Wait(String),
    /// Nothing to change.
    Nothing(String),
    /// Write the link.
    Apply {
        /// The booking the order had, and how it was linked.
        previous: Option<(i64, Link)>,
        /// Walk-in to cancel in Zenchef.
        cancel: Option<i64>,
    },
}

/// Decides a request to link `order_id` to `booking_id` (`None`: unlink)
/// from the store's facts (rule 4b).
pub fn decide(order_id: &str, booking_id: Option<i64>, f: &Facts) -> Decision {
    let o = order_id;
    if f.order.is_none() && !f.has_events {
        return Decision::Refuse(format!(
            "order {o} is unknown: no event of this order was received from the POS"
        ));
    }
    if let Some(order) = &f.order {
        let linked = order
            .booking_id
            .map(|b| format!(" (its bill went to booking {b})"))
            .unwrap_or_default();
        match order.status {
            OrderStatus::Open => {}
            OrderStatus::Paid => {
                return Decision::Refuse(format!(
                    "order {o} is already paid{linked}: a link now would change nothing in Zenchef"
                ));
            }
            OrderStatus::Voided => {
                return Decision::Refuse(format!("order {o} was voided: there is nothing to link"));
            }
        }
    }
    if f.delivering {
        return Decision::Wait(format!(
            "order {o} has {} event(s) being delivered to Zenchef; the link is applied as soon \
             as they are (nothing to do: the agent retries by itself)",
            f.pending
        ));
    }
    let current = f.order.as_ref().and_then(|x| x.booking_id);
    let previous = f
        .order
        .as_ref()
        .and_then(|x| Some((x.booking_id?, x.link.unwrap_or(Link::Matched))));
    match booking_id {
        None => {
            if current.is_none() {
                return Decision::Nothing(format!(
                    "order {o} is not linked to any booking: nothing to unlink"
                ));
            }
        }
        Some(b) => {
            if current == Some(b) {
                return Decision::Nothing(format!("order {o} is already linked to booking {b}"));
            }
            match &f.holder {
                Some(Holder::Order { order_id, table }) => {
                    return Decision::Refuse(format!(
                        "booking {b} is already linked to open order {order_id} (table {table}): \
                         unlink that order first with `zenchef-edge unlink {order_id}`"
                    ));
                }
                Some(Holder::Matching { order_id }) => {
                    return Decision::Refuse(format!(
                        "booking {b} is being matched to order {order_id} right now: wait a few \
                         seconds, then unlink that order first with `zenchef-edge unlink {order_id}`"
                    ));
                }
                None => {}
            }
        }
    }
    let cancel = match previous {
        Some((w, Link::Walkin)) => Some(w),
        _ => None,
    };
    Decision::Apply { previous, cancel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(booking: Option<i64>, link: Option<Link>, status: OrderStatus) -> OrderState {
        OrderState {
            order_id: "O-1".into(),
            table: "12".into(),
            covers: Some(2),
            opened_at: None,
            status,
            booking_id: booking,
            link,
            total_cents: None,
            paid_cents: 0,
            last_seq: 3,
        }
    }

    fn facts_with(o: Option<OrderState>) -> Facts {
        Facts {
            has_events: true,
            order: o,
            ..Default::default()
        }
    }

    // Long by design: one table of named cases of rule 4b.
    #[test]
    fn decisions_follow_rule_4b() {
        use Decision::*;
        let walkin = order(Some(900_001), Some(Link::Walkin), OrderStatus::Open);
        let matched = order(Some(77), Some(Link::Matched), OrderStatus::Open);
        let manual = order(Some(55), Some(Link::Manual), OrderStatus::Open);
        let cases: Vec<(&str, Option<i64>, Facts, Decision)> = vec![
            (
                "a walk-in is replaced and cancelled",
                Some(123),
                facts_with(Some(walkin.clone())),
                Apply {
                    previous: Some((900_001, Link::Walkin)),
                    cancel: Some(900_001),
                },
            ),
            (
                "a matched booking is replaced, nothing cancelled",
                Some(123),
                facts_with(Some(matched.clone())),
                Apply {
                    previous: Some((77, Link::Matched)),
                    cancel: None,
                },
            ),
            (
                "a hand link is replaced, nothing cancelled",
                Some(123),
                facts_with(Some(manual)),
                Apply {
                    previous: Some((55, Link::Manual)),
                    cancel: None,
                },
            ),
            (
                "unlinking a walk-in cancels it",
                None,
                facts_with(Some(walkin.clone())),
                Apply {
                    previous: Some((900_001, Link::Walkin)),
                    cancel: Some(900_001),
                },
            ),
            (
                "an order whose first event is dead gets its link",
                Some(123),
                Facts {
                    pending: 1,
                    ..facts_with(None)
                },
                Apply {
                    previous: None,
                    cancel: None,
                },
            ),
            (
                "a link without a known way is taken as matched",
                Some(123),
                facts_with(Some(order(Some(8), None, OrderStatus::Open))),
                Apply {
                    previous: Some((8, Link::Matched)),
                    cancel: None,
                },
            ),
            (
                "an unknown order is refused",
                Some(1),
                Facts::default(),
                Refuse(
                    "order O-1 is unknown: no event of this order was received from the POS".into(),
                ),
            ),
            (
                "a paid order is refused, naming where its bill went",
                Some(1),
                facts_with(Some(order(
                    Some(77),
                    Some(Link::Matched),
                    OrderStatus::Paid,
                ))),
                Refuse(
                    "order O-1 is already paid (its bill went to booking 77): a link now would \
                     change nothing in Zenchef"
                        .into(),
                ),
            ),
            (
                "a voided order is refused",
                None,
                facts_with(Some(order(Some(77), None, OrderStatus::Voided))),
                Refuse("order O-1 was voided: there is nothing to link".into()),
            ),
            (
                "a booking held by another open order is refused",
                Some(5),
                Facts {
                    holder: Some(Holder::Order {
                        order_id: "O-9".into(),
                        table: "4".into(),
                    }),
                    ..facts_with(Some(matched.clone()))
                },
                Refuse(
                    "booking 5 is already linked to open order O-9 (table 4): unlink that order \
                     first with `zenchef-edge unlink O-9`"
                        .into(),
                ),
            ),
            (
                "a booking being matched right now is refused",
                Some(5),
                Facts {
                    holder: Some(Holder::Matching {
                        order_id: "O-9".into(),
                    }),
                    ..facts_with(None)
                },
                Refuse(
                    "booking 5 is being matched to order O-9 right now: wait a few seconds, then \
                     unlink that order first with `zenchef-edge unlink O-9`"
                        .into(),
                ),
            ),
            (
                "an order being delivered waits",
                Some(5),
                Facts {
                    delivering: true,
                    pending: 2,
                    ..facts_with(Some(matched.clone()))
                },
                Wait(
                    "order O-1 has 2 event(s) being delivered to Zenchef; the link is applied as \
                     soon as they are (nothing to do: the agent retries by itself)"
                        .into(),
                ),
            ),
            (
                "the same link again changes nothing",
                Some(77),
                facts_with(Some(matched)),
                Nothing("order O-1 is already linked to booking 77".into()),
            ),
            (
                "unlinking an order without a link changes nothing",
                None,
                facts_with(Some(order(None, None, OrderStatus::Open))),
                Nothing("order O-1 is not linked to any booking: nothing to unlink".into()),
            ),
        ];
        for (what, booking, f, want) in cases {
            assert_eq!(decide("O-1", booking, &f), want, "{what}");
        }
    }
}

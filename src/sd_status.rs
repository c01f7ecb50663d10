//! What `systemctl status zenchef-edge` shows: a one-line `STATUS=` sent
//! to systemd (sd_notify(3)) with the POS link, the queue, Zenchef and
//! Zenchef Pay, and the last problem, e.g.
//!
//! ```text
//! POS connected · queue 0 · Zenchef ok · Pay ok
//! POS not found · queue 12 · Zenchef OUTAGE · Pay ok · last: Zenchef: connection refused
//! ```
//!
//! [`run`] watches the daemon's [`Health`] every second and the store's
//! counts every [`COUNTS_EVERY`], and sends the line when it changed (so at
//! most once a second). The same watch logs the start and the end of a
//! Zenchef or Zenchef Pay outage once each, with their journal
//! `MESSAGE_ID`s ([`crate::message_ids`]), whichever part of the agent
//! noticed it. Outside systemd (`NOTIFY_SOCKET` unset) the notification is
//! a no-op; the outage lines are logged all the same.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::health::{ApiHealth, Health, HealthState};
use crate::message_ids;
use crate::outbox::{self, Store};

/// How often the health record is looked at (and so the fastest the status
/// line changes).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the queue is counted in the store (a read through the store
/// thread).
pub const COUNTS_EVERY: Duration = Duration::from_secs(2);
/// Longest "last problem" kept on the line, in characters.
pub const MAX_PROBLEM_CHARS: usize = 120;

/// The store figures the line shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queue {
    /// Events waiting for Zenchef (`outbox` rows `queued`) plus Zenchef Pay
    /// check pushes waiting.
    pub queued: i64,
    /// Dead letters of both lanes.
    pub dead: i64,
    /// Zenchef Pay payments needing a person, not yet marked handled.
    pub needs_person: i64,
}

impl Queue {
    /// The figures of [`outbox::Counts`].
    pub fn from_counts(c: &outbox::Counts) -> Queue {
        Queue {
            queued: c.queued + c.pay_queued,
            dead: c.dead + c.pay_dead,
            needs_person: c.pay_needs_person,
        }
    }
}

/// The one-line status (no newline, at most a few hundred bytes): POS,
/// queue (`None`: not counted yet), Zenchef, Zenchef Pay (`pay_enabled`
/// false: `Pay off`), then `last: …`, the most pressing problem, when
/// something is wrong. Problems come from the health record, which holds
/// error messages, never tokens.
pub fn status_line(s: &HealthState, queue: Option<Queue>, pay_enabled: bool) -> String {
    let pos = if s.pos.found && s.pos.mqtt_connected {
        "POS connected"
    } else if s.pos.found {
        "POS not connected"
    } else {
        "POS not found"
    };
    let mut parts = vec![pos.to_string()];
    match queue {
        Some(q) => {
            parts.push(format!("queue {}", q.queued));
            if q.dead > 0 {
                parts.push(format!("{} dead", q.dead));
            }
            if q.needs_person > 0 {
                parts.push(format!("{} payment(s) need a person", q.needs_person));
            }
        }
        None => parts.push("queue ?".into()),
    }
    parts.push(format!("Zenchef {}", api_state(&s.zenchef)));
    if pay_enabled {
        parts.push(format!("Pay {}", api_state(&s.pay)));
    } else {
        parts.push("Pay off".into());
    }
    if let Some(problem) = last_problem(s, pay_enabled) {
        parts.push(format!("last: {}", one_line(&problem, MAX_PROBLEM_CHARS)));
    }
    parts.join(" · ")
}

fn api_state(h: &ApiHealth) -> &'static str {
    if h.credentials_refused {
        "TOKEN REFUSED"
    } else if h.outage {
        "OUTAGE"
    } else if h.last_success.is_some() {
        "ok"
    } else if h.last_error.is_some() {
        "error"
    } else {
        "not reached yet"
    }
}

/// The message of an [`ApiHealth::last_error`] without its leading UTC
/// timestamp.
fn error_text(e: &str) -> &str {
    match e.split_once(' ') {
        Some((stamp, rest)) if stamp.len() >= 10 && stamp.as_bytes()[4] == b'-' => rest,
        _ => e,
    }
}

/// The most pressing problem, in this order: a store moved aside, Zenchef,
/// Zenchef Pay, the POS.
fn last_problem(s: &HealthState, pay_enabled: bool) -> Option<String> {
    if let Some(aside) = &s.store_moved_aside {
        return Some(format!("store moved aside to {aside}"));
    }
    let api = |name: &str, h: &ApiHealth| {
        (h.outage || h.credentials_refused)
            .then(|| h.last_error.as_deref().map(error_text))
            .flatten()
            .map(|e| format!("{name}: {e}"))
    };
    if let Some(p) = api("Zenchef", &s.zenchef) {
        return Some(p);
    }
    if pay_enabled && let Some(p) = api("Zenchef Pay", &s.pay) {
        return Some(p);
    }
    if !(s.pos.found && s.pos.mqtt_connected) {
        return s.pos.problem.as_ref().map(|p| format!("POS: {p}"));
    }
    None
}

/// `text` on one line (control characters become spaces), cut to `max`
/// characters with `…`.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An outage start or end seen between two looks at the health record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The API went from answering to an outage.
    Began,
    /// The API answers again.
    Ended,
}

/// Compares the outage flag of one API between two looks.
pub fn outage_change(before: &ApiHealth, now: &ApiHealth) -> Option<Change> {
    match (before.outage, now.outage) {
        (false, true) => Some(Change::Began),
        (true, false) => Some(Change::Ended),
        _ => None,
    }
}

/// Tracks one API's outage for the journal lines.
struct OutageWatch {
    name: &'static str,
    began_id: &'static str,
    ended_id: &'static str,
    since: Option<Instant>,
}

impl OutageWatch {
    fn see(&mut self, before: &ApiHealth, now: &ApiHealth, queued: Option<i64>) {
        match outage_change(before, now) {
            Some(Change::Began) => {
                self.since = Some(Instant::now());
                let why = now.last_error.as_deref().map(error_text).unwrap_or("?");
                warn!(
                    message_id = self.began_id,
                    "{} OUTAGE began: {why}. Nothing is lost: events are kept in the store and \
                     sent when it answers again (one probe at a time meanwhile)",
                    self.name
                );
            }
            Some(Change::Ended) => {
                let lasted = self
                    .since
                    .take()
                    .map(|t| format!(" after {} s", t.elapsed().as_secs()))
                    .unwrap_or_default();
                let queue = queued
                    .map(|q| format!("; {q} event(s) queued are being delivered"))
                    .unwrap_or_default();
                info!(
                    message_id = self.ended_id,
                    "{} outage ended{lasted}: it answers again{queue}", self.name
                );
            }
            None => {}
        }
    }
}

/// Sends `STATUS=` on every change of [`status_line`] and logs outage
/// starts and ends, until `cancel`. Errors reading the store keep the last
/// counts.
pub async fn run(health: Health, store: Store, pay_enabled: bool, cancel: CancellationToken) {
    let mut last_line = String::new();
    let mut queue: Option<Queue> = None;
    let mut counted_at: Option<Instant> = None;
    // Links count as up until seen down: an outage already there when this
    // task starts (the first poll failed at once) is logged as begun.
    let mut before = HealthState::default();
    let mut zenchef = OutageWatch {
        name: "Zenchef",
        began_id: message_ids::ZENCHEF_OUTAGE_BEGAN,
        ended_id: message_ids::ZENCHEF_OUTAGE_ENDED,
        since: None,
    };
    let mut pay = OutageWatch {
        name: "Zenchef Pay",
        began_id: message_ids::PAY_OUTAGE_BEGAN,
        ended_id: message_ids::PAY_OUTAGE_ENDED,
        since: None,
    };
    let mut stopping = false;
    loop {
        if counted_at.is_none_or(|t| t.elapsed() >= COUNTS_EVERY) {
            if let Ok(c) = store.counts().await {
                queue = Some(Queue::from_counts(&c));
            }
            counted_at = Some(Instant::now());
        }
        let now = health.snapshot();
        let queued = queue.map(|q| q.queued);
        zenchef.see(&before.zenchef, &now.zenchef, queued);
        if pay_enabled {
            pay.see(&before.pay, &now.pay, queued);
        }
        if stopping {
            // A last look, for an outage that ended just before the stop.
            return;
        }
        let line = status_line(&now, queue, pay_enabled);
        if line != last_line {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
            last_line = line;
        }
        before = now;
        stopping = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(CHECK_EVERY) => false,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> HealthState {
        let mut s = HealthState::default();
        s.pos.found = true;
        s.pos.mqtt_connected = true;
        s.zenchef.last_success = Some("2026-12-01T20:00:00Z".into());
        s.pay.last_success = Some("2026-12-01T20:00:00Z".into());
        s
    }

    fn q(queued: i64) -> Option<Queue> {
        Some(Queue {
            queued,
            ..Queue::default()
        })
    }

    #[test]
    fn a_healthy_box_says_so_in_one_short_line() {
        assert_eq!(
            status_line(&healthy(), q(0), true),
            "POS connected · queue 0 · Zenchef ok · Pay ok"
        );
        assert_eq!(
            status_line(&healthy(), q(0), false),
            "POS connected · queue 0 · Zenchef ok · Pay off"
        );
        assert_eq!(
            status_line(&HealthState::default(), None, false),
            "POS not found · queue ? · Zenchef not reached yet · Pay off"
        );
    }

    #[test]
    fn an_outage_names_itself_and_its_last_error() {
        let mut s = healthy();
        s.pos.found = false;
        s.pos.mqtt_connected = false;
        s.pos.problem = Some("no Cashpad server answered on the LAN".into());
        s.zenchef.outage = true;
        s.zenchef.last_error = Some("2026-12-01T20:01:02.345Z connection refused".into());
        assert_eq!(
            status_line(&s, q(12), true),
            "POS not found · queue 12 · Zenchef OUTAGE · Pay ok · last: Zenchef: connection refused"
        );
        // Zenchef back: the POS problem is the last one left.
        s.zenchef.outage = false;
        assert_eq!(
            status_line(&s, q(12), true),
            "POS not found · queue 12 · Zenchef ok · Pay ok · last: POS: no Cashpad server answered on the LAN"
        );
    }

    #[test]
    fn refused_tokens_dead_letters_and_payments_are_shown() {
        let mut s = healthy();
        s.pay.credentials_refused = true;
        s.pay.last_error = Some("2026-12-01T20:01:02Z HTTP 401 Unauthorized".into());
        s.pos.mqtt_connected = false;
        let queue = Queue {
            queued: 3,
            dead: 2,
            needs_person: 1,
        };
        assert_eq!(
            status_line(&s, Some(queue), true),
            "POS not connected · queue 3 · 2 dead · 1 payment(s) need a person · Zenchef ok · \
             Pay TOKEN REFUSED · last: Zenchef Pay: HTTP 401 Unauthorized"
        );
        // Pay disabled: its state is not shown, nor its problem.
        assert_eq!(
            status_line(&s, Some(queue), false),
            "POS not connected · queue 3 · 2 dead · 1 payment(s) need a person · Zenchef ok · Pay off"
        );
        s.store_moved_aside = Some("/var/lib/zenchef-edge/agent.db.unreadable-1".into());
        assert!(
            status_line(&s, Some(queue), true).ends_with(
                "last: store moved aside to /var/lib/zenchef-edge/agent.db.unreadable-1"
            ),
        );
    }

    #[test]
    fn a_problem_stays_on_one_line_and_is_cut() {
        let mut s = healthy();
        s.zenchef.outage = true;
        s.zenchef.last_error = Some(format!(
            "2026-12-01T20:01:02Z bad\nthing {}",
            "x".repeat(300)
        ));
        let line = status_line(&s, q(0), true);
        assert!(!line.contains('\n'), "{line}");
        let problem = line.split("last: ").nth(1).unwrap();
        assert_eq!(problem.chars().count(), MAX_PROBLEM_CHARS, "{problem}");
        assert!(problem.starts_with("Zenchef: bad thing xxx"), "{problem}");
        assert!(problem.ends_with('…'));
    }

    #[test]
    fn outage_changes_are_the_flag_flipping() {
        let up = ApiHealth::default();
        let down = ApiHealth {
            outage: true,
            ..ApiHealth::default()
        };
        assert_eq!(outage_change(&up, &down), Some(Change::Began));
        assert_eq!(outage_change(&down, &up), Some(Change::Ended));
        assert_eq!(outage_change(&down, &down), None);
        assert_eq!(outage_change(&up, &up), None);
    }
}

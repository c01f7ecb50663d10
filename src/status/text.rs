//! The human output of `zenchef-edge status`: at most [`WIDTH`] columns a
//! line, coloured only when asked (on a terminal, `src/cli/status.rs`),
//! times in the restaurant's time zone.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ApiState, PosState, Problem, Status, age_s, human_age, money};
use crate::pos::anonymous::AnonymousClients;

/// Width of the human output.
pub const WIDTH: usize = 80;
/// Width of the label column of the human output.
const LABEL: usize = 12;

/// `HH:MM:SS` in the restaurant's time zone (with the day when not
/// today), followed by how long ago; `-` when absent or unreadable.
pub fn when(t: Option<&str>, tz: chrono_tz::Tz, now: DateTime<Utc>) -> String {
    let Some(parsed) = t.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "-".into();
    };
    let local = parsed.with_timezone(&tz);
    let today = now.with_timezone(&tz).date_naive() == local.date_naive();
    let clock = if today {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%d/%m %H:%M").to_string()
    };
    let ago = (now - parsed.with_timezone(&Utc)).num_seconds();
    if ago >= 0 {
        format!("{clock} ({} ago)", human_age(ago))
    } else {
        format!("{clock} (in the future: check the clock)")
    }
}

/// The one-line English sentence for a problem (the page has French too).
pub fn problem_en(p: Problem, s: &Status) -> String {
    let c = &s.counts.base;
    match p {
        Problem::AgentNotRunning => match &s.daemon {
            Some(d) => format!(
                "the agent is NOT running (last seen {}): systemctl status zenchef-edge",
                d.updated_at
            ),
            None => "the agent has never run with this store".into(),
        },
        Problem::StoreNotWritable => match s
            .daemon
            .as_ref()
            .and_then(|d| d.store_write_error.as_deref())
        {
            Some(e) => format!(
                "the agent runs but cannot write its store ({e}): is its disk full or read-only? \
                 df -h; POS events are not acknowledged meanwhile"
            ),
            None => "the agent runs but cannot write its store: is its disk full or read-only? \
                     df -h; POS events are not acknowledged meanwhile"
                .into(),
        },
        Problem::ZenchefCredentials => "Zenchef refuses the token or restaurant id: check \
             zenchef.token and zenchef.restaurant_id (deliveries paused, nothing lost)"
            .into(),
        Problem::ZenchefOutage => format!(
            "Zenchef unreachable: bookings not updated; {} event(s) kept, retried",
            c.queued
        ),
        Problem::PosNotFound => "no usable Cashpad POS on the network (see POS below)".into(),
        Problem::PosDisconnected => "the POS is found but the MQTT session is down".into(),
        Problem::PosBrokerAnonymous => {
            "the POS broker lets in clients WITHOUT A PASSWORD (see POS below)".into()
        }
        Problem::TableNamesDiffer => {
            let n = s.tables.as_ref().map_or(0, |t| {
                t.diff.near_misses.len() + t.diff.only_pos.len() + t.diff.only_zenchef.len()
            });
            format!(
                "{n} table name(s) differ between the POS and Zenchef: their reservations are \
                 not matched (zenchef-edge tables)"
            )
        }
        Problem::DeadEvents => format!(
            "{} dead event(s): zenchef-edge outbox list --dead, then outbox retry",
            c.dead
        ),
        Problem::OldQueue => format!(
            "events have waited {} for delivery",
            human_age(s.oldest_queued_age_s.unwrap_or(0))
        ),
        Problem::PaymentsNeedPerson => format!(
            "{} Zenchef Pay payment(s) NEED A PERSON (money involved): see Payments below",
            s.payments_needing_person.len()
        ),
        Problem::OrdersNeedAttention => format!(
            "{} order(s) NEED ATTENTION: an event could not be read; no phone payment is \
             settled on them until the POS sends their bill again",
            s.orders_needing_attention.len()
        ),
        Problem::PayCredentials => "Zenchef Pay refuses the token: check zenchef_pay.token \
             (checks and payments paused, nothing lost; Zenchef is not affected)"
            .into(),
        Problem::PayOutage => format!(
            "Zenchef Pay unreachable: {} check update(s) kept, retried; guests may not be able \
             to pay from their phone",
            c.pay_queued
        ),
        Problem::PayDead => format!(
            "{} Zenchef Pay check push(es) refused: zenchef-edge outbox list --dead",
            c.pay_dead
        ),
        Problem::StoreMissing => {
            "no store yet: the agent has never started with this configuration".into()
        }
        Problem::StoreUnreadable => "the store cannot be read (see Store below)".into(),
        Problem::StoreIncompatible => {
            "store too new for this binary: the agent cannot start (see Store)".into()
        }
        Problem::StoreReplaced => {
            "store replaced at a start: the old file is kept (see STORE)".into()
        }
        Problem::UpdatesRefused => "updates refused: no signing key (see Update below)".into(),
        Problem::UpdatesPlaceholderKey => {
            "this box cannot update: placeholder signing key (see Update below)".into()
        }
        Problem::UpdatesFailing => "updates failing: the daemon's update checks keep failing \
             (see Update below)"
            .into(),
    }
}

#[derive(Clone, Copy)]
enum Tone {
    Good,
    Warn,
    Bad,
    Plain,
}

/// Builds lines of at most [`WIDTH`] visible characters, coloured when
/// asked.
struct Out {
    color: bool,
    lines: Vec<String>,
    /// The restaurant's time zone, for [`Out::when`].
    tz: chrono_tz::Tz,
    /// The time the status is rendered at.
    now: DateTime<Utc>,
}

impl Out {
    /// [`when`] in the output's time zone, at its time.
    fn when(&self, t: Option<&str>) -> String {
        when(t, self.tz, self.now)
    }

    fn paint(&self, s: &str, t: Tone) -> String {
        let code = match t {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "1;31",
            Tone::Plain => return s.to_string(),
        };
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// `label` (12 columns), an optional coloured tag, then `rest`, cut to
    /// fit the width.
    fn line(&mut self, label: &str, tag: Option<(&str, Tone)>, rest: &str) {
        let mut visible = format!("{label:<LABEL$}");
        let mut text = visible.clone();
        if let Some((t, tone)) = tag {
            visible.push_str(t);
            visible.push_str("  ");
            text.push_str(&self.paint(t, tone));
            text.push_str("  ");
        }
        let room = WIDTH.saturating_sub(visible.chars().count());
        text.push_str(&fit(rest, room));
        self.lines.push(text.trim_end().to_string());
    }

    /// `text` on as many lines as it takes, after an empty label, cut at
    /// spaces (a word longer than a line is cut with `…`).
    fn wrapped(&mut self, text: &str) {
        let room = WIDTH - LABEL;
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
                self.line("", None, &line);
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            self.line("", None, &line);
        }
    }
}

/// `s` cut to `n` characters, ending with `…` when cut.
pub fn fit(s: &str, n: usize) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.chars().count() <= n {
        s
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The human output (≤ 80 columns per line).
pub fn render_text(s: &Status, tz: chrono_tz::Tz, now: DateTime<Utc>, color: bool) -> String {
    let mut o = Out {
        color,
        lines: Vec::new(),
        tz,
        now,
    };
    headline(&mut o, s);
    pos(&mut o, s);
    apis(&mut o, s);
    fleet(&mut o, s);
    queue(&mut o, s);
    orders(&mut o, s);
    payments(&mut o, s);
    bookings(&mut o, s);
    events_and_update(&mut o, s);
    store(&mut o, s);
    o.lines.join("\n") + "\n"
}

/// `OK` or `ATTENTION`, one line per problem, then the agent.
fn headline(o: &mut Out, s: &Status) {
    let head_tag = if s.problems.is_empty() {
        ("OK", Tone::Good)
    } else {
        ("ATTENTION", Tone::Bad)
    };
    let head = format!("zenchef-edge {} — ", s.version);
    let painted = o.paint(head_tag.0, head_tag.1);
    o.lines.push(format!("{head}{painted}"));
    for p in &s.problems {
        o.line("  !", None, &problem_en(*p, s));
    }
    let agent = agent(o, s);
    o.line("Agent", Some((&agent.0, agent.1)), "");
}

/// The agent's state: running (since when, which version), alive but
/// unable to write, stopped, or unknown.
fn agent(o: &Out, s: &Status) -> (String, Tone) {
    match &s.daemon {
        Some(d) if s.daemon_running => {
            let up = age_s(&d.started_at, o.now)
                .map(human_age)
                .unwrap_or_default();
            let other = if d.version != s.version {
                format!(", daemon version {}", d.version)
            } else {
                String::new()
            };
            (
                format!("running (pid {}, up {up}{other})", d.pid),
                Tone::Good,
            )
        }
        Some(d) if s.daemon_alive => (
            format!(
                "RUNNING BUT CANNOT WRITE ITS STORE (pid {}, last record {}): is the store's disk full?",
                d.pid,
                o.when(Some(&d.updated_at))
            ),
            Tone::Bad,
        ),
        Some(d) => (
            format!("NOT RUNNING (last seen {})", o.when(Some(&d.updated_at))),
            Tone::Bad,
        ),
        None if s.store_state == "unreadable" => {
            ("unknown (the store cannot be read)".into(), Tone::Warn)
        }
        None => ("NEVER RAN with this store".into(), Tone::Bad),
    }
}

/// The POS: its state, where, its versions, its MQTT session.
fn pos(o: &mut Out, s: &Status) {
    let opt = |v: &Option<String>| {
        v.clone()
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    let (tag, tone) = match s.pos.state {
        PosState::Connected => ("connected", Tone::Good),
        PosState::Found => ("found, MQTT DOWN", Tone::Bad),
        PosState::NotFound => ("NOT FOUND", Tone::Bad),
        PosState::Unknown => ("unknown", Tone::Warn),
    };
    let where_ = match (&s.pos.instance, &s.pos.address) {
        (Some(i), Some(a)) => format!("\"{i}\" at {a}"),
        (None, Some(a)) => a.clone(),
        _ => String::new(),
    };
    o.line("POS", Some((tag, tone)), &where_);
    if matches!(s.pos.state, PosState::Connected | PosState::Found) {
        o.line(
            "",
            None,
            &format!(
                "Cashpad {}  Installation ID {}  Server {}",
                opt(&s.pos.app_version),
                opt(&s.pos.installation_id),
                opt(&s.pos.server)
            ),
        );
    }
    if s.pos.state == PosState::Connected {
        let since = o.when(s.pos.connected_since.as_deref());
        o.line("", None, &format!("MQTT connected since {since}"));
    }
    if let Some(p) = &s.pos.problem
        && s.pos.state != PosState::Connected
    {
        o.line("", None, p);
    }
    if s.pos.anonymous_clients == Some(AnonymousClients::Accepted) {
        let at = o.when(s.pos.anonymous_checked_at.as_deref());
        let t = o.paint("ACCEPTS CLIENTS WITHOUT A PASSWORD", Tone::Bad);
        o.lines.push(format!("{:<LABEL$}broker {t}", ""));
        o.wrapped(&format!(
            "checked {at}: any device on the restaurant network can read the reservations \
             (guests' names, phones, e-mails) and forge POS payments; the broker must refuse \
             anonymous clients and keep an ACL (docs/pos-broker.md)"
        ));
    }
}

/// Zenchef and Zenchef Pay: reachable or not, last success, last error.
fn apis(o: &mut Out, s: &Status) {
    for (label, api) in [("Zenchef", &s.zenchef), ("Zenchef Pay", &s.pay)] {
        let (tag, tone) = match api.state {
            ApiState::Ok => ("reachable", Tone::Good),
            ApiState::Outage => ("UNREACHABLE", Tone::Bad),
            ApiState::CredentialsRefused => ("CREDENTIALS REFUSED", Tone::Bad),
            ApiState::Disabled => ("disabled", Tone::Plain),
            ApiState::Unknown => ("unknown", Tone::Warn),
        };
        let rest = if api.state == ApiState::Disabled {
            String::new()
        } else {
            format!("last success {}", o.when(api.last_success.as_deref()))
        };
        o.line(label, Some((tag, tone)), &rest);
        if let Some(e) = &api.last_error {
            let at = o.when(api.last_error_at.as_deref());
            o.line("", None, &format!("last error {at}: {e}"));
        }
    }
}

/// The fleet report, only when `[fleet]` is configured: the session's
/// state, where it reports, its last report and last error. Never red:
/// it does not concern the restaurant.
fn fleet(o: &mut Out, s: &Status) {
    let f = &s.fleet;
    let (tag, tone) = match f.state.as_str() {
        "disabled" => return,
        "connected" => ("reporting", Tone::Good),
        "connecting" => ("connecting", Tone::Plain),
        "refused" => ("REFUSED", Tone::Warn),
        "tls_error" => ("TLS ERROR", Tone::Warn),
        "unreachable" => ("UNREACHABLE", Tone::Warn),
        "misconfigured" => ("MISCONFIGURED", Tone::Warn),
        _ => ("unknown", Tone::Warn),
    };
    o.line(
        "Fleet",
        Some((tag, tone)),
        f.broker.as_deref().unwrap_or("?"),
    );
    if let Some(topic) = &f.topic {
        o.line("", None, &format!("on {topic}"));
        let last = o.when(f.last_published_at.as_deref());
        o.line("", None, &format!("last report {last}"));
    }
    if let Some(e) = &f.last_error
        && f.state != "connected"
    {
        let at = o.when(f.last_error_at.as_deref());
        o.line("", None, &format!("last error {at}: {e}"));
    }
}

/// The outbox: queue sizes, dead letters, the oldest wait, the Pay lane.
fn queue(o: &mut Out, s: &Status) {
    let c = &s.counts;
    let queue_tone = if c.base.dead > 0 {
        Tone::Bad
    } else {
        Tone::Plain
    };
    o.line(
        "Outbox",
        None,
        &format!(
            "queued {}  in flight {}  dead {}  rejected {}",
            c.base.queued, c.inflight, c.base.dead, c.base.rejected
        ),
    );
    if c.base.dead > 0 {
        let t = o.paint(
            "dead letters wait for a technician: outbox list --dead",
            queue_tone,
        );
        o.lines.push(format!("{:<LABEL$}{t}", ""));
    }
    o.line(
        "",
        None,
        &format!(
            "oldest queued {}",
            s.oldest_queued_age_s
                .map(human_age)
                .unwrap_or_else(|| "-".into())
        ),
    );
    if c.base.pay_queued > 0 || c.base.pay_dead > 0 {
        o.line(
            "",
            None,
            &format!(
                "Zenchef Pay checks: queued {}  dead {}",
                c.base.pay_queued, c.base.pay_dead
            ),
        );
    }
}

/// Orders: open, walk-ins, manual links, and those that need attention.
fn orders(o: &mut Out, s: &Status) {
    let c = &s.counts;
    o.line(
        "Orders",
        None,
        &format!(
            "open {}  walk-ins created {}  manual links pending {}",
            c.base.orders_open, c.base.walkins_created, c.links_pending
        ),
    );
    for a in &s.orders_needing_attention {
        let t = o.paint("NEEDS ATTENTION", Tone::Bad);
        let rest = fit(
            &format!(
                "{} (table {}): {}",
                a.order_id,
                a.table.as_deref().unwrap_or("?"),
                a.reason
            ),
            WIDTH.saturating_sub(LABEL + 17),
        );
        o.lines.push(format!("{:<LABEL$}{t}  {rest}", ""));
    }
}

/// Zenchef Pay payments (when enabled), and those that need a person.
fn payments(o: &mut Out, s: &Status) {
    if s.pay.state == ApiState::Disabled {
        return;
    }
    let c = &s.counts;
    o.line(
        "Payments",
        None,
        &format!(
            "settled {}  refused {}  waiting for the POS {}  need a person {}",
            c.base.pay_settled, c.base.pay_rejected, c.base.pay_pending, c.base.pay_needs_person
        ),
    );
    for n in &s.payments_needing_person {
        let t = o.paint("NEEDS A PERSON", Tone::Bad);
        let head = format!(
            "table {}: {} + {} tip",
            n.table.as_deref().unwrap_or("?"),
            money(n.amount_cents, &s.currency),
            money(n.tip_cents, &s.currency),
        );
        let room = WIDTH.saturating_sub(LABEL + 16);
        o.lines
            .push(format!("{:<LABEL$}{t}  {}", "", fit(&head, room)));
        o.line(
            "",
            None,
            &format!("  payment {}, order {}", n.payment_id, n.order_id),
        );
        o.line("", None, &format!("  {}", n.what));
    }
}

/// Bookings on the POS, and the table names that differ.
fn bookings(o: &mut Out, s: &Status) {
    let sync = o.when(s.last_reservation_sync.as_deref());
    o.line(
        "Bookings",
        None,
        &format!(
            "on the POS {}  last sync {sync}",
            s.counts.base.reservations_published
        ),
    );
    if let Some(t) = s.tables.as_ref().filter(|t| !t.clean) {
        o.line(
            "Tables",
            Some(("NAMES DIFFER", Tone::Bad)),
            &format!("POS {} table(s), Zenchef {}", t.pos_count, t.zenchef_count),
        );
        for l in crate::tables::describe(&t.diff) {
            o.line("", None, &l);
        }
    }
}

/// Event counters, then the updater: its state, what stops it, the open
/// orders that hold it back.
fn events_and_update(o: &mut Out, s: &Status) {
    let c = &s.counts.base;
    o.line(
        "Events",
        None,
        &format!(
            "received {}  delivered {}  duplicates {}  unknown type {}",
            c.received, c.delivered, c.duplicates, c.unknown_type
        ),
    );
    o.line("Update", None, &update_text(&s.update_state));
    if let Some(p) = &s.update_problem {
        o.wrapped(p);
    }
    if let Some(first) = s.update_held_by.first() {
        let since = o.when(first.since.as_deref());
        o.wrapped(&format!(
            "held back by {} open order(s), the oldest {} (table {}) since {since}",
            s.update_held_by.len(),
            first.order_id,
            first.table,
        ));
    }
}

/// The updater's state in a few words: the version waiting to prove
/// healthy, the versions refused, its last event or its state.
fn update_text(state: &Value) -> String {
    match state {
        Value::String(t) => t.clone(),
        Value::Object(m) => {
            let txt = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            let failed = m
                .get("failed_versions")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|f| !f.is_empty());
            match (txt("pending_version"), failed, txt("last_event")) {
                (Some(p), _, _) => format!("{p} installed, waiting to prove healthy"),
                (None, Some(f), last) => format!("refused {f}; {}", last.unwrap_or_default()),
                (None, None, Some(last)) => last,
                _ => txt("state").unwrap_or_else(|| "up to date".into()),
            }
        }
        other => other.to_string(),
    }
}

/// The store: its state and error, its size, and a store moved aside.
fn store(o: &mut Out, s: &Status) {
    match s.store_state {
        "missing" => o.line("Store", Some(("MISSING", Tone::Bad)), &s.store),
        "unreadable" => o.line("Store", Some(("UNREADABLE", Tone::Bad)), &s.store),
        "incompatible" => o.line("Store", Some(("TOO NEW", Tone::Bad)), &s.store),
        _ => o.line("Store", None, &s.store),
    }
    if let Some(e) = &s.store_error {
        o.wrapped(e);
    }
    if let Some(u) = &s.store_usage {
        let oldest = o.when(u.oldest_event_at.as_deref());
        o.wrapped(&format!(
            "{:.1} MiB (+ {:.1} MiB WAL), oldest event kept {oldest}, finished orders kept {} days",
            u.file_bytes as f64 / 1048576.0,
            u.wal_bytes as f64 / 1048576.0,
            u.keep_days
        ));
    }
    if let Some(aside) = &s.store_moved_aside {
        o.line(
            "STORE",
            Some(("REPLACED", Tone::Bad)),
            "at a start; the unreadable one is kept at:",
        );
        // On a line of its own, never cut: the path is what the technician
        // needs.
        o.lines.push(format!("{:LABEL$}{aside}", ""));
        match &s.store_recovery {
            Some(r) if r.failed.is_none() => o.wrapped(&format!(
                "saved from it: {} events, {} deliveries ({} still to deliver), {} payments ({} \
                 held for a person), {} other rows; could not be read: {}",
                r.events,
                r.deliveries,
                r.to_deliver,
                r.payments,
                r.payments_held,
                r.other_rows,
                r.not_read()
            )),
            Some(r) => o.wrapped(&format!(
                "NOTHING could be saved from it: {}",
                r.failed.as_deref().unwrap_or("?")
            )),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::sample;
    use crate::tables::TablesCheck;

    #[test]
    fn human_output_fits_80_columns_and_has_no_colour_off_a_tty() {
        let now = Utc::now();
        let s = sample(now);
        let text = render_text(&s, chrono_tz::Europe::Paris, now, false);
        for l in text.lines() {
            assert!(
                l.chars().count() <= WIDTH,
                "{} > 80: {l}",
                l.chars().count()
            );
        }
        assert!(!text.contains('\x1b'), "{text}");
        assert!(
            text.contains("queued 12345  in flight 3  dead 2  rejected 0"),
            "{text}"
        );
        assert!(text.contains("2 dead event(s)"), "{text}");
        assert!(text.contains("Installation ID CP-4F2A91"), "{text}");
        assert!(
            text.contains("NEEDS A PERSON  table Terrasse 12: 54.00 EUR + 3.00 EUR tip\n")
                && text.contains("payment pay_8f2c0a1b2c3d, order O-881"),
            "{text}"
        );
        assert!(text.contains("NEEDS ATTENTION  O-882 (table 7)"), "{text}");
        assert_eq!(money(-1000, "EUR"), "-10.00 EUR");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        let mut with_tables = s.clone();
        let names = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let diff = crate::tables::compare(&names(&["1", "7a"]), &names(&["1", "7A"]));
        with_tables.tables = Some(TablesCheck {
            zenchef_fetched_at: with_tables.checked_at.clone(),
            pos_count: 2,
            zenchef_count: 2,
            clean: false,
            diff,
        });
        with_tables.problems.insert(2, Problem::TableNamesDiffer);
        let text = render_text(&with_tables, chrono_tz::Europe::Paris, now, false);
        assert!(
            text.contains("1 table name(s) differ between the POS and Zenchef")
                && text.contains("Tables      NAMES DIFFER  POS 2 table(s), Zenchef 2\n")
                && text.contains("near-miss: POS \"7a\" vs Zenchef \"7A\""),
            "{text}"
        );
        let coloured = render_text(&s, chrono_tz::Europe::Paris, now, true);
        assert!(coloured.contains("\x1b[32mconnected\x1b[0m"), "{coloured}");
    }
}

//! The table of `zenchef-edge fleet-view` (docs/fleet.md "Listing the
//! fleet"): one row per box from the messages retained on
//! `PREFIX/+/status`, trouble first.
//!
//! Messages are read as JSON values, not as this release's [`Report`]
//! type: a fleet runs several versions, and a newer box's message (more
//! keys) or an unreadable one must still be a row.
//!
//! [`Report`]: super::report::Report

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Problems about money, in this order: before everything else, offline
/// boxes included.
const MONEY: &[&str] = &["payments_need_person", "orders_need_attention"];
/// The other problems, most important first (the order of `status`).
const OTHERS: &[&str] = &[
    "agent_not_running",
    "store_not_writable",
    "zenchef_credentials",
    "zenchef_outage",
    "pos_not_found",
    "pos_disconnected",
    "pos_broker_anonymous",
    "table_names_differ",
    "dead_events",
    "store_replaced",
    "old_queue",
    "pay_credentials",
    "pay_outage",
    "pay_dead",
    "store_missing",
    "store_unreadable",
    "store_incompatible",
    "updates_refused",
    "updates_placeholder_key",
    "updates_failing",
];

/// One box of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The device id (the topic's level).
    pub device_id: String,
    /// The message as published (`Value::Null` when it is not JSON).
    pub message: Value,
    /// `restaurant_id`, `?` when absent.
    pub restaurant: String,
    /// `version`, `?` when absent.
    pub version: String,
    /// `online`.
    pub online: bool,
    /// `reported_at` (an online box) or `session_started_at` (a will).
    pub last_seen: Option<DateTime<Utc>>,
    /// `queue.queued + queue.pay_queued`, `None` when unknown.
    pub queue: Option<i64>,
    /// `offline` first for an offline box (`stale` for an online one
    /// whose report is older than twice its `interval_s` and a minute:
    /// its link or a bridge is down and the broker has not noticed), then
    /// the box's problems; `unreadable message` for a message that is not
    /// schema-1 JSON.
    pub problems: Vec<String>,
}

impl Row {
    /// The row of the message `payload` retained on the topic of box
    /// `device_id`, read at `now` (this machine's clock; a box's clock
    /// may be wrong too, so `stale` is a hint).
    pub fn from_message(device_id: &str, payload: &[u8], now: DateTime<Utc>) -> Row {
        let message: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let text = |k: &str| message.get(k).and_then(Value::as_str).map(str::to_string);
        let readable = message.get("schema").and_then(Value::as_u64).is_some()
            && message.get("online").and_then(Value::as_bool).is_some();
        let online = message
            .get("online")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let seen_key = if online {
            "reported_at"
        } else {
            "session_started_at"
        };
        let last_seen = text(seen_key)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        let count = |k: &str| {
            message
                .get("queue")
                .and_then(|q| q.get(k))
                .and_then(Value::as_i64)
        };
        let queue = match (count("queued"), count("pay_queued")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        let mut problems = Vec::new();
        if !readable {
            problems.push("unreadable message".to_string());
        } else if !online {
            problems.push("offline".to_string());
        } else {
            let interval = message
                .get("interval_s")
                .and_then(Value::as_i64)
                .unwrap_or(300);
            // Any number may come from the broker: no overflow, no panic.
            let late = chrono::Duration::try_seconds(interval.saturating_mul(2).saturating_add(60));
            let due = last_seen
                .zip(late)
                .and_then(|(t, l)| t.checked_add_signed(l));
            if due.is_some_and(|d| d < now) {
                problems.push("stale".to_string());
            }
        }
        if let Some(list) = message.get("problems").and_then(Value::as_array) {
            problems.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
        Row {
            device_id: device_id.into(),
            restaurant: text("restaurant_id").unwrap_or_else(|| "?".into()),
            version: text("version").unwrap_or_else(|| "?".into()),
            online,
            last_seen,
            queue,
            problems,
            message,
        }
    }

    /// The row of a message of `bytes` bytes, larger than `cap`: not read,
    /// marked `unreadable message` (and its size), like any message that
    /// is not a report.
    pub fn too_large(device_id: &str, bytes: usize, cap: usize) -> Row {
        let mut row = Row::from_message(device_id, b"", Utc::now());
        row.problems.push(format!(
            "larger than {} MiB ({bytes} bytes)",
            cap / (1024 * 1024)
        ));
        row
    }

    /// How much trouble, lower first: payments needing a person, then
    /// orders needing attention (money), then offline, stale or unreadable,
    /// then each other problem by its rank, unknown problem names after
    /// the known ones, healthy boxes last.
    fn trouble(&self) -> usize {
        let rank = |p: &str| {
            if let Some(i) = MONEY.iter().position(|m| *m == p) {
                i
            } else if matches!(p, "offline" | "stale" | "unreadable message") {
                MONEY.len()
            } else {
                let others = MONEY.len() + 1;
                OTHERS
                    .iter()
                    .position(|o| *o == p)
                    .map_or(others + OTHERS.len(), |i| others + i)
            }
        };
        self.problems
            .iter()
            .map(|p| rank(p))
            .min()
            .unwrap_or(usize::MAX)
    }
}

/// Sorts trouble first: by [`Row::trouble`], then the larger queue, then
/// the device id.
pub fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        a.trouble()
            .cmp(&b.trouble())
            .then(b.queue.unwrap_or(0).cmp(&a.queue.unwrap_or(0)))
            .then(a.device_id.cmp(&b.device_id))
    });
}

/// A cell as printed: control characters (an escape sequence from
/// whoever may publish under the prefix would move the cursor, erase
/// another box's row or write the clipboard) written as Rust escapes, and
/// cut after 64 characters.
fn shown(cell: &str) -> String {
    let mut out = String::new();
    for (i, c) in cell.chars().enumerate() {
        if i == 64 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The table, one line per row (columns sized to their content) and the
/// summary line, each line ending with `\n`.
pub fn render(rows: &[Row]) -> String {
    let head = [
        "DEVICE",
        "RESTAURANT",
        "VERSION",
        "ONLINE",
        "LAST SEEN",
        "QUEUE",
        "PROBLEMS",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.device_id.clone(),
                r.restaurant.clone(),
                r.version.clone(),
                if r.online { "yes" } else { "no" }.into(),
                r.last_seen
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                r.queue.map_or("-".into(), |q| q.to_string()),
                if r.problems.is_empty() {
                    "-".into()
                } else {
                    r.problems.join(",")
                },
            ]
            .map(|c| shown(&c))
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, (v, w)) in c.iter().zip(width).enumerate() {
            if i + 1 == c.len() {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:<w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&head.map(String::from));
    for c in &cells {
        out.push_str(&line(c));
    }
    let online = rows.iter().filter(|r| r.online).count();
    let trouble = rows.iter().filter(|r| !r.problems.is_empty()).count();
    out.push_str(&format!(
        "{} boxes: {online} online, {} offline, {trouble} with problems\n",
        rows.len(),
        rows.len() - online
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-02T09:01:00Z".parse().unwrap()
    }

    fn msg(online: bool, queued: i64, problems: &[&str]) -> Vec<u8> {
        serde_json::json!({
            "schema": 1, "online": online, "device_id": "x", "restaurant_id": "r1",
            "version": "0.1.0", "reported_at": "2026-12-02T09:00:00Z",
            "session_started_at": "2026-12-01T08:00:00Z",
            "queue": {"queued": queued, "pay_queued": 1}, "problems": problems,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn trouble_comes_first_money_before_offline_before_the_rest() {
        let mut rows = vec![
            Row::from_message("healthy-a", &msg(true, 0, &[]), now()),
            Row::from_message("orders", &msg(true, 9, &["orders_need_attention"]), now()),
            Row::from_message("outage", &msg(true, 5, &["zenchef_outage"]), now()),
            Row::from_message("offline", &msg(false, 0, &[]), now()),
            Row::from_message(
                "money",
                &msg(true, 0, &["pos_disconnected", "payments_need_person"]),
                now(),
            ),
            Row::from_message("garbage", b"not json", now()),
            Row::from_message("healthy-b", &msg(true, 3, &[]), now()),
            Row::from_message("creds", &msg(true, 0, &["agent_not_running"]), now()),
        ];
        sort(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.device_id.as_str()).collect();
        assert_eq!(
            order,
            [
                "money",
                "orders",
                "offline",
                "garbage",
                "creds",
                "outage",
                "healthy-b",
                "healthy-a"
            ]
        );
        let offline = rows.iter().find(|r| r.device_id == "offline").unwrap();
        assert_eq!(offline.problems, ["offline"]);
        assert_eq!(
            offline.last_seen.unwrap().to_rfc3339(),
            "2026-12-01T08:00:00+00:00",
            "an offline box: when its last session started"
        );
        assert_eq!(rows[6].queue, Some(4), "queued + pay_queued");
    }

    #[test]
    fn an_online_report_far_older_than_its_interval_is_stale() {
        let mut m: Value = serde_json::from_slice(&msg(true, 0, &[])).unwrap();
        m["interval_s"] = 300.into();
        let bytes = m.to_string().into_bytes();
        let at = |t: &str| Row::from_message("b", &bytes, t.parse().unwrap());
        assert!(
            at("2026-12-02T09:10:00Z").problems.is_empty(),
            "10 min: not yet"
        );
        assert_eq!(
            at("2026-12-02T09:11:01Z").problems,
            ["stale"],
            "2 × 5 min + 1 min"
        );
    }

    #[test]
    fn control_characters_from_the_broker_never_reach_the_terminal() {
        let m = serde_json::json!({"schema": 1, "online": true,
            "restaurant_id": "r\u{1b}[2J", "version": "0.1\u{1b}]52;c;eA==\u{7}"});
        let rows = [Row::from_message(
            "b\u{1b}[1A",
            m.to_string().as_bytes(),
            now(),
        )];
        let t = render(&rows);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains(r"r\u{1b}[2J"), "{t}");
    }

    #[test]
    fn the_table_has_the_columns_and_a_summary() {
        let rows = vec![
            Row::from_message("box-1", &msg(true, 2, &["zenchef_outage"]), now()),
            Row::from_message("box-2", &msg(false, 0, &[]), now()),
        ];
        let t = render(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "DEVICE  RESTAURANT  VERSION  ONLINE  LAST SEEN            QUEUE  PROBLEMS"
        );
        assert_eq!(
            lines[1],
            "box-1   r1          0.1.0    yes     2026-12-02 09:00:00  3      zenchef_outage"
        );
        assert_eq!(
            lines[2],
            "box-2   r1          0.1.0    no      2026-12-01 08:00:00  1      offline"
        );
        assert_eq!(lines[3], "2 boxes: 1 online, 1 offline, 2 with problems");
    }
}

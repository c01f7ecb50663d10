//! The fleet message (schema 1, docs/fleet.md "The message"): what
//! `status --json` says, without anything personal. Built only from
//! counts, states, versions and times — never from a free-text error, a
//! guest, a table name or a secret — so that nothing personal can reach
//! the group's broker, whatever an error message or the POS contains.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::status::{ApiSummary, Status};

/// The version of the message's shape; readers ignore keys they do not
/// know, and a change that is not an addition bumps it.
pub const SCHEMA: u32 = 1;

/// One box's report: `PREFIX/<device_id>/status`, retained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// `true`: the box's session is up (the last will says `false`).
    pub online: bool,
    /// The box (the topic's level).
    pub device_id: String,
    /// The Zenchef restaurant id (`zenchef.restaurant_id`).
    pub restaurant_id: String,
    /// The agent's version.
    pub version: String,
    /// When the report was built (box clock, UTC, RFC 3339; informational:
    /// the clock may be wrong right after boot).
    pub reported_at: String,
    /// When the daemon started (UTC), `None` before its first record.
    pub started_at: Option<String>,
    /// Seconds since then.
    pub uptime_s: Option<i64>,
    /// The box sends a report at least this often (`[fleet] interval_s`,
    /// seconds): an `online` report much older than that is stale (a
    /// bridge or the box's link is down and the broker has not noticed).
    pub interval_s: u64,
    /// The POS.
    pub pos: Pos,
    /// Zenchef.
    pub zenchef: Api,
    /// Zenchef Pay (`state` `disabled` when not configured).
    pub pay: Api,
    /// The outbox.
    pub queue: Queue,
    /// Zenchef Pay payments that need a person (count).
    pub payments_needing_person: i64,
    /// Orders that need attention: an event of theirs could not be read
    /// (count).
    pub orders_needing_attention: i64,
    /// The SQLite store.
    pub store: Store,
    /// Updates.
    pub update: Update,
    /// What needs attention, most important first: the `problems` of
    /// `status --json` (snake_case names).
    pub problems: Vec<String>,
}

/// The POS side of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    /// `connected`, `found` (its broker is down), `not_found`, `unknown`.
    pub state: String,
    /// Cashpad app version (mDNS TXT `app`).
    pub app_version: Option<String>,
    /// Cashpad Installation ID.
    pub installation_id: Option<String>,
}

/// One remote API in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Api {
    /// `ok`, `outage`, `credentials_refused`, `unknown` or `disabled`.
    pub state: String,
    /// Last successful call (UTC).
    pub last_success: Option<String>,
    /// When the last error happened (UTC); the error's text is not sent.
    pub last_error_at: Option<String>,
}

/// The outbox in a [`Report`]: counts of rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Waiting in the Zenchef lane.
    pub queued: i64,
    /// Of those, deliveries under way or being retried.
    pub inflight: i64,
    /// Dead letters of the Zenchef lane.
    pub dead: i64,
    /// Check pushes waiting in the Zenchef Pay lane.
    pub pay_queued: i64,
    /// Dead letters of the Zenchef Pay lane.
    pub pay_dead: i64,
    /// POS messages quarantined as unreadable.
    pub rejected: i64,
    /// Age of the oldest queued event, seconds (box clock); `None` when
    /// nothing is queued.
    pub oldest_queued_age_s: Option<i64>,
}

/// The store in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    /// `ok`, `missing`, `unreadable` or `incompatible`.
    pub state: String,
    /// Bytes of the SQLite file, `None` when unknown.
    pub file_bytes: Option<u64>,
    /// Bytes of its write-ahead log.
    pub wal_bytes: Option<u64>,
}

/// Updates in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The running version.
    pub current: String,
    /// A version installed and not yet confirmed healthy.
    pub pending: Option<String>,
    /// The release the box would install when allowed (the last check's).
    pub available: Option<String>,
    /// The updater's last event (`<UTC time> <text>`: versions and the
    /// step, e.g. `… 0.2.0 confirmed healthy (replaced 0.1.0)`).
    pub last_result: Option<String>,
    /// Versions rolled back on this box (never installed again
    /// automatically); empty when none was.
    pub rolled_back: Vec<String>,
}

impl Report {
    /// The report of `status` for box `device_id`, built at `now`.
    pub fn from_status(
        s: &Status,
        device_id: &str,
        restaurant_id: &str,
        now: DateTime<Utc>,
    ) -> Report {
        let started_at = s.daemon.as_ref().map(|d| d.started_at.clone());
        let uptime_s = started_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0));
        let u = &s.update_state;
        let text = |key: &str| u.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let rolled_back = u
            .get("failed_versions")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let c = &s.counts.base;
        Report {
            schema: SCHEMA,
            online: true,
            device_id: device_id.into(),
            restaurant_id: restaurant_id.into(),
            version: s.version.clone(),
            reported_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            started_at,
            uptime_s,
            interval_s: crate::config::DEFAULT_FLEET_INTERVAL_S,
            pos: Pos {
                state: s.pos.state.as_str().into(),
                app_version: s.pos.app_version.clone(),
                installation_id: s.pos.installation_id.clone(),
            },
            zenchef: Api::of(&s.zenchef),
            pay: Api::of(&s.pay),
            queue: Queue {
                queued: c.queued,
                inflight: s.counts.inflight,
                dead: c.dead,
                pay_queued: c.pay_queued,
                pay_dead: c.pay_dead,
                rejected: c.rejected,
                oldest_queued_age_s: s.oldest_queued_age_s,
            },
            payments_needing_person: c.pay_needs_person,
            orders_needing_attention: c.orders_attention,
            store: Store {
                state: s.store_state.into(),
                file_bytes: s.store_usage.as_ref().map(|f| f.file_bytes),
                wal_bytes: s.store_usage.as_ref().map(|f| f.wal_bytes),
            },
            update: Update {
                current: s.version.clone(),
                pending: text("pending_version"),
                available: s
                    .update_last_check
                    .as_ref()
                    .and_then(|l| l.available.clone()),
                last_result: text("last_event").map(|t| without_detail(&t)),
                rolled_back,
            },
            problems: s
                .problems
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        }
    }

    /// The report without what changes by itself as time passes (times,
    /// ages, uptime, the store's size): two reports whose `material()`
    /// differ say something new, and are sent without waiting for the
    /// interval.
    pub fn material(&self) -> Report {
        let mut m = self.clone();
        m.reported_at.clear();
        m.uptime_s = None;
        m.queue.oldest_queued_age_s = None;
        m.store.file_bytes = None;
        m.store.wal_bytes = None;
        for api in [&mut m.zenchef, &mut m.pay] {
            api.last_success = None;
            api.last_error_at = None;
        }
        m
    }

    /// The JSON sent (compact).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An updater event without the error it may end with (`… install of
/// 0.2.0 failed: <error>` → `… install of 0.2.0 failed`): the step and the
/// versions go to the fleet, the error's text stays on the box.
fn without_detail(event: &str) -> String {
    event
        .split_once(": ")
        .map_or(event, |(head, _)| head)
        .to_string()
}

impl Api {
    fn of(a: &ApiSummary) -> Api {
        Api {
            state: a.state.as_str().into(),
            last_success: a.last_success.clone(),
            last_error_at: a.last_error_at.clone(),
        }
    }
}

/// The last will, retained on the same topic: what the broker publishes
/// for the box when its session ends without a goodbye (power cut, lost
/// link, crash) — and what the box publishes itself when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Will {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Always `false`.
    pub online: bool,
    /// The box.
    pub device_id: String,
    /// The Zenchef restaurant id.
    pub restaurant_id: String,
    /// The agent's version.
    pub version: String,
    /// When the session that set this will started (box clock, UTC): the
    /// box was online then at least.
    pub session_started_at: String,
}

impl Will {
    /// The will of a session starting at `now`.
    pub fn new(device_id: &str, restaurant_id: &str, now: DateTime<Utc>) -> Will {
        Will {
            schema: SCHEMA,
            online: false,
            device_id: device_id.into(),
            restaurant_id: restaurant_id.into(),
            version: crate::update::running_version_str().into(),
            session_started_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The JSON sent (compact).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_carries_counts_and_states_never_the_texts_of_the_status() {
        let now = Utc::now();
        let s = crate::status::tests::sample(now);
        let r = Report::from_status(&s, "box-1", "rest-9", now);
        assert_eq!(r.schema, 1);
        assert!(r.online);
        assert_eq!(r.queue.queued, s.counts.base.queued);
        assert_eq!(r.queue.dead, s.counts.base.dead);
        assert_eq!(r.payments_needing_person, s.counts.base.pay_needs_person);
        assert_eq!(r.zenchef.state, s.zenchef.state.as_str());
        let problems: Vec<String> = s
            .problems
            .iter()
            .map(|p| {
                serde_json::to_value(p)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(r.problems, problems);
        let json = r.to_json();
        // Every free text of the sample status stays on the box: errors,
        // tables of payments needing a person, the POS's name and address.
        let mut texts: Vec<String> = Vec::new();
        texts.extend(s.zenchef.last_error.clone());
        texts.extend(s.pay.last_error.clone());
        texts.extend(s.pos.instance.clone());
        texts.extend(s.pos.address.clone());
        texts.extend(s.pos.problem.clone());
        for p in &s.payments_needing_person {
            let v = serde_json::to_value(p).unwrap();
            for (_, field) in v.as_object().unwrap() {
                if let Some(t) = field.as_str()
                    && t.len() > 3
                {
                    texts.push(t.to_string());
                }
            }
        }
        assert!(!texts.is_empty());
        for t in &texts {
            assert!(
                !json.contains(t.as_str()),
                "{t:?} reached the report: {json}"
            );
        }
    }

    #[test]
    fn an_update_error_stays_on_the_box() {
        assert_eq!(
            without_detail("2026-12-02T03:00:00Z install of 0.2.0 failed: /var/lib/x: denied"),
            "2026-12-02T03:00:00Z install of 0.2.0 failed"
        );
        assert_eq!(
            without_detail("2026-12-02T03:00:00Z 0.2.0 confirmed healthy (replaced 0.1.0)"),
            "2026-12-02T03:00:00Z 0.2.0 confirmed healthy (replaced 0.1.0)"
        );
    }

    #[test]
    fn only_material_changes_differ_in_material() {
        let now = Utc::now();
        let s = crate::status::tests::sample(now);
        let a = Report::from_status(&s, "b", "r", now);
        let b = Report::from_status(&s, "b", "r", now + chrono::Duration::seconds(30));
        assert_ne!(a, b);
        assert_eq!(a.material(), b.material());
        let mut c = b.clone();
        c.queue.dead += 1;
        assert_ne!(a.material(), c.material());
    }
}

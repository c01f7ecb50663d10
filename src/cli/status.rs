//! `zenchef-edge status [--json]`: what the box is doing, from the store
//! (opened read-only, safe while the daemon runs) and the state record the
//! running daemon writes every 2 s (`health.rs`).
//!
//! `--json` prints one [`Status`] object; its keys are documented in
//! `docs/status-json.md` and only ever grow (scripts, the demo and the tests
//! read `version`, `store`, `daemon_running`, `daemon`, `counts{…}` and
//! `oldest_queued_age_s`). The same [`Status`] feeds the local status page
//! (`http.rs`, `cli/page.rs`).
//!
//! The human output fits 80 columns and is coloured only on a terminal.

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::cli::exit::{self, StoreAccess};
use crate::cli::tables::TablesCheck;
use crate::config::Config;
use crate::health::{self, ApiHealth, HealthState, History};
use crate::outbox::{self, AttentionOrder, Counts, NeedsPerson, store};

/// The daemon record is considered current when written less than this
/// many seconds ago (it is written every 2 s) by a process that still
/// exists.
pub const FRESH_S: i64 = 15;
/// `kv` key where the updater keeps its state (JSON or text).
pub const UPDATE_STATE_KEY: &str = "update_state";
/// A queue older than this (seconds) is a problem even when no outage is
/// known.
pub const OLD_QUEUE_S: i64 = 600;
/// Width of the human output.
pub const WIDTH: usize = 80;
/// Width of the label column of the human output.
const LABEL: usize = 12;

/// What `status --json` prints (docs/status-json.md).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This binary's version.
    pub version: String,
    /// The restaurant's currency (`restaurant.currency`): amounts below are
    /// integer cents of it.
    pub currency: String,
    /// The store file.
    pub store: String,
    /// `ok` (read), `missing` (no file, or an empty one: the agent never
    /// started with this configuration), `unreadable` (permissions, not a
    /// database, not the agent's) or `incompatible` (migrated by a newer
    /// release beyond what this binary can use: the agent refuses it); when
    /// not `ok`, the counts are 0 and every other fact is unknown, and
    /// `problems` starts with `store_missing`, `store_unreadable` or
    /// `store_incompatible`.
    pub store_state: &'static str,
    /// Why the store could not be read, `null` when `store_state` is `ok`.
    pub store_error: Option<String>,
    /// `ok`, or `invalid` (then `config_error` says why, and nothing else
    /// is known).
    pub config_state: &'static str,
    /// The configuration error (`config error: <key>: …`), `null` when ok.
    pub config_error: Option<String>,
    /// When this status was read (box clock, UTC, RFC 3339).
    pub checked_at: String,
    /// A daemon that still exists wrote its state in the last [`FRESH_S`]
    /// seconds.
    pub daemon_running: bool,
    /// The process of the daemon that wrote the last record is running —
    /// true with a stale record when it cannot write its store (full disk).
    pub daemon_alive: bool,
    /// The daemon's last record (links, errors), `null` if it never ran.
    pub daemon: Option<HealthState>,
    /// Counts.
    pub counts: StatusCounts,
    /// Age of the oldest queued event, seconds (box clock), `null` when
    /// nothing is queued.
    pub oldest_queued_age_s: Option<i64>,
    /// The POS as the daemon last saw it.
    pub pos: PosSummary,
    /// Zenchef reachability.
    pub zenchef: ApiSummary,
    /// Zenchef Pay reachability (`state` is `disabled` or `unknown` until
    /// the Pay side reports).
    pub pay: ApiSummary,
    /// Last successful reservation poll (UTC), `null` if none.
    pub last_reservation_sync: Option<String>,
    /// The updater's state (`kv` key `update_state`, JSON as stored, or a
    /// string), `"unknown"` when absent.
    pub update_state: Value,
    /// Zenchef Pay payments that need a person (the POS never answered
    /// their settle command, an unreadable payment, …), with the amount
    /// and the table: oldest first, at most 100.
    pub payments_needing_person: Vec<NeedsPerson>,
    /// Orders that need attention: one of their events could not be read
    /// (sync rule 9); no Zenchef Pay payment is settled on them meanwhile.
    pub orders_needing_attention: Vec<AttentionOrder>,
    /// Why the box gets no update, `null` when nothing is known to stop
    /// it: `updates refused: no signing key (…)` (enabled, a manifest URL,
    /// no usable `update.public_key`) or `updates failing since <time>:
    /// <error> (…)` (the daemon's last [`crate::update::daemon::FAILING_AFTER`]
    /// checks or more failed).
    pub update_problem: Option<String>,
    /// Table names of the POS floor plan against Zenchef's, as the daemon
    /// last read Zenchef's (`cli/tables.rs`); `null` until both are known.
    pub tables: Option<TablesCheck>,
    /// The last hours, one sample per `history.sample_s` (queue, deliveries,
    /// outages; `health.rs`); `null` until the daemon took a first sample.
    pub history: Option<History>,
    /// The store's size, the oldest event it keeps and its last retention
    /// pass (`outbox::retention::StoreFacts`); `null` when the store could
    /// not be read.
    pub store_usage: Option<crate::outbox::retention::StoreFacts>,
    /// Where a store found unreadable at a start was moved aside (its
    /// events, if any, are no longer delivered automatically); `null` when
    /// none was, or once that file is gone. Problem `store_replaced`.
    pub store_moved_aside: Option<String>,
    /// The open orders that hold an update back, oldest first (at most
    /// 20), each with since when; orders open for longer than
    /// `update.open_order_max_h` no longer do and are not listed.
    pub update_held_by: Vec<crate::update::daemon::OpenOrder>,
    /// What needs attention, most important first; empty when all is well.
    pub problems: Vec<Problem>,
}

/// The counts of `status --json`: every [`Counts`] key plus the ones below.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    /// Counters and queue sizes from the store.
    #[serde(flatten)]
    pub base: Counts,
    /// Queued events whose delivery has started (calls decided, under way
    /// or being retried).
    pub inflight: i64,
    /// Manual link requests not finished yet (`link` / `unlink`).
    pub links_pending: i64,
}

/// The POS part of the status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PosSummary {
    /// `connected`, `found` (MQTT down), `not_found` or `unknown` (no
    /// daemon record).
    pub state: &'static str,
    /// mDNS instance name.
    pub instance: Option<String>,
    /// `host:port` of its MQTT broker.
    pub address: Option<String>,
    /// Cashpad app version.
    pub app_version: Option<String>,
    /// Cashpad Installation ID.
    pub installation_id: Option<String>,
    /// Cashpad Server.
    pub server: Option<String>,
    /// MQTT session up since (UTC).
    pub connected_since: Option<String>,
    /// Why no POS is used, or the last MQTT error.
    pub problem: Option<String>,
}

/// Reachability of one remote API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiSummary {
    /// `ok`, `outage`, `credentials_refused`, `unknown` (no call yet or
    /// no daemon record) or `disabled`.
    pub state: &'static str,
    /// Last successful call (UTC).
    pub last_success: Option<String>,
    /// Last error message (no secrets).
    pub last_error: Option<String>,
    /// When the last error happened (UTC).
    pub last_error_at: Option<String>,
}

/// Something that needs attention, in the order a technician should look
/// at them. Serialised in snake_case (`agent_not_running`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No fresh daemon record: the service is stopped or stuck.
    AgentNotRunning,
    /// Zenchef Pay payments need a person (money involved).
    PaymentsNeedPerson,
    /// Orders need attention: an event of theirs could not be read.
    OrdersNeedAttention,
    /// Zenchef refuses the token or restaurant id: deliveries paused.
    ZenchefCredentials,
    /// Zenchef unreachable: events are kept and retried.
    ZenchefOutage,
    /// No usable POS on the network.
    PosNotFound,
    /// POS found but the MQTT session is down.
    PosDisconnected,
    /// Table names differ between the POS floor plan and Zenchef: a
    /// reservation on such a table is not matched (`tables` says which).
    TableNamesDiffer,
    /// Events parked as dead letters.
    DeadEvents,
    /// Events waiting for more than [`OLD_QUEUE_S`].
    OldQueue,
    /// Zenchef Pay refuses the token: check pushes and payments paused.
    PayCredentials,
    /// Zenchef Pay unreachable: checks and payments wait.
    PayOutage,
    /// Check pushes parked as dead letters.
    PayDead,
    /// The store does not exist: the agent never started with this
    /// configuration.
    StoreMissing,
    /// The store cannot be read (`store_error` says why).
    StoreUnreadable,
    /// A newer release migrated the store beyond what this binary can use:
    /// the agent refuses it (exit 78) until a release that knows its schema
    /// runs (`store_error` names both versions).
    StoreIncompatible,
    /// The store was unreadable at a start and was replaced by a fresh one;
    /// the old file, with any events it still held, is kept at
    /// `store_moved_aside` (shown for as long as that file exists).
    StoreReplaced,
    /// Updates are enabled but no usable signing key is configured: every
    /// release is refused.
    UpdatesRefused,
    /// The daemon's update checks keep failing.
    UpdatesFailing,
}

/// Reads the status of the store of `config` (read-only). A store that
/// does not exist or cannot be read is a status too: `store_state`
/// `missing` or `unreadable` ([`Status::without_store`]).
///
/// Errors: none today (the `Result` is kept for callers).
pub fn read(config: &Config) -> anyhow::Result<Status> {
    Ok(read_at(config, Utc::now()))
}

/// [`read`] at time `now`.
pub fn read_at(config: &Config, now: DateTime<Utc>) -> Status {
    let path = &config.store_path;
    let shown = path.display();
    let (state, error) = match exit::store_access(path) {
        StoreAccess::Missing => (
            "missing",
            format!(
                "{shown} does not exist: the agent creates it at its first start (has it ever run \
                 with this configuration? systemctl status zenchef-edge)"
            ),
        ),
        StoreAccess::PermissionDenied(e) => (
            "unreadable",
            format!("cannot open {shown}: {e} (run as the agent's user, or with sudo)"),
        ),
        StoreAccess::Unreadable(e) => ("unreadable", format!("cannot open {shown}: {e}")),
        StoreAccess::Present => {
            let read = store::open_read_only(path)
                .map_err(anyhow::Error::from)
                .and_then(|conn| match not_usable(&conn) {
                    Some(why) => Ok(Err(why)),
                    None => read_conn(&conn, config, now).map(Ok),
                });
            match read {
                Ok(Ok(s)) => return s,
                Ok(Err((state, why))) => (state, format!("{shown} {why}")),
                Err(e) => (
                    "unreadable",
                    format!("{shown} is not a readable agent store: {e:#}"),
                ),
            }
        }
    };
    Status::without_store(config, now, state, error)
}

/// Why the store of `conn` has nothing to show, as `(store_state, the end
/// of a sentence about the file)`:
/// - `missing`: an empty file (schema 0, no table yet), as a fresh box
///   would have it; the agent creates its tables at its first start;
/// - `incompatible`: a newer release raised the schema's floor above this
///   binary's (the daemon exits 78 on it); the sentence names both versions.
///
/// `None` when this binary can use it (or the schema cannot be read: the
/// counts then tell).
fn not_usable(conn: &Connection) -> Option<(&'static str, String)> {
    let known = crate::outbox::migrations::KNOWN;
    let s = crate::outbox::migrations::schema_of(conn).ok()?;
    let no_table = || {
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|n| n == 0)
    };
    // Schema 0 with tables: another program's database (unreadable, below).
    if s.applied == 0 && no_table() {
        return Some((
            "missing",
            "is empty (no table yet): the agent creates its tables at its first start (has it \
             ever run with this configuration? systemctl status zenchef-edge)"
                .into(),
        ));
    }
    (s.min_version > known).then(|| {
        ("incompatible", format!(
            "has schema {} (usable from schema {}), newer than this binary knows ({known}): the \
             agent refuses it until a release that knows that schema runs (a newer release \
             migrated it; never downgrade the binary by hand)",
            s.applied, s.min_version
        ))
    })
}

impl Status {
    /// The status when the store is `missing`, `unreadable` or
    /// `incompatible`: what the configuration alone tells, every count 0,
    /// the store's problem first.
    pub fn without_store(
        config: &Config,
        now: DateTime<Utc>,
        store_state: &'static str,
        error: String,
    ) -> Status {
        let mut problems = vec![match store_state {
            "missing" => Problem::StoreMissing,
            "incompatible" => Problem::StoreIncompatible,
            _ => Problem::StoreUnreadable,
        }];
        let update_problem = crate::update::signing_key_problem(&config.update);
        if update_problem.is_some() {
            problems.push(Problem::UpdatesRefused);
        }
        Status {
            version: crate::update::running_version_str().into(),
            currency: config.currency.clone(),
            store: config.store_path.display().to_string(),
            store_state,
            store_error: Some(error),
            config_state: "ok",
            config_error: None,
            checked_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            daemon_running: false,
            daemon_alive: false,
            daemon: None,
            counts: StatusCounts::default(),
            oldest_queued_age_s: None,
            pos: PosSummary {
                state: "unknown",
                ..Default::default()
            },
            zenchef: ApiSummary {
                state: "unknown",
                ..Default::default()
            },
            pay: ApiSummary {
                state: if config.pay.is_some() {
                    "unknown"
                } else {
                    "disabled"
                },
                ..Default::default()
            },
            last_reservation_sync: None,
            update_state: update_state_file(config).unwrap_or(Value::String("unknown".into())),
            update_problem,
            payments_needing_person: Vec::new(),
            orders_needing_attention: Vec::new(),
            tables: None,
            history: None,
            store_usage: None,
            store_moved_aside: None,
            update_held_by: Vec::new(),
            problems,
        }
    }
}

/// `status --json` with an invalid configuration: the same keys, with
/// `config_state` `invalid`, the error, and nothing else known.
pub fn print_config_error(e: &crate::config::ConfigError) {
    let v = serde_json::json!({
        "version": crate::update::running_version_str(),
        "store": null,
        "store_state": "unknown",
        "store_error": null,
        "currency": null,
        "config_state": "invalid",
        "config_error": e.to_string(),
        "checked_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "daemon_running": false,
        "daemon_alive": false,
        "daemon": null,
        "counts": StatusCounts::default(),
        "oldest_queued_age_s": null,
        "pos": PosSummary { state: "unknown", ..Default::default() },
        "zenchef": ApiSummary { state: "unknown", ..Default::default() },
        "pay": ApiSummary { state: "unknown", ..Default::default() },
        "last_reservation_sync": null,
        "update_state": "unknown",
        "update_problem": null,
        "payments_needing_person": [],
        "orders_needing_attention": [],
        "tables": null,
        "history": null,
        "store_usage": null,
        "store_moved_aside": null,
        "update_held_by": [],
        "problems": [],
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// The updater's `update-state.json` beside the store, as JSON, when it
/// exists and reads.
fn update_state_file(config: &Config) -> Option<Value> {
    config
        .store_path
        .parent()
        .map(|d| d.join("update-state.json"))
        .filter(|f| f.exists())
        .and_then(|f| crate::update::state::UpdateState::load(&f).ok())
        .and_then(|u| serde_json::to_value(u).ok())
}

fn age_s(t: &str, now: DateTime<Utc>) -> Option<i64> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| (now - t.with_timezone(&Utc)).num_seconds())
}

/// The daemon record in the store, and whether it is fresh.
pub fn daemon_record(conn: &Connection, now: DateTime<Utc>) -> (Option<HealthState>, bool) {
    let daemon: Option<HealthState> = outbox::kv_get(conn, health::KV_KEY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok());
    let running = daemon.as_ref().is_some_and(|d| {
        age_s(&d.updated_at, now).is_some_and(|a| (-FRESH_S..FRESH_S).contains(&a))
            && process_alive(d.pid)
    });
    (daemon, running)
}

/// Whether process `pid` exists on this box (so a cleanly stopped daemon
/// is "not running" at once, not 15 s later). `true` when `/proc` cannot
/// tell.
fn process_alive(pid: u32) -> bool {
    let proc_ = std::path::Path::new("/proc");
    !proc_.join("self").exists() || pid == 0 || proc_.join(pid.to_string()).exists()
}

/// The status from an open connection at time `now`.
pub fn read_conn(conn: &Connection, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Status> {
    let counts = outbox::counts(conn)?;
    let (daemon, daemon_running) = daemon_record(conn, now);
    let daemon_alive = daemon.as_ref().is_some_and(|d| process_is_agent(d.pid));
    let q = |sql: &str| -> Result<i64, rusqlite::Error> { conn.query_row(sql, [], |r| r.get(0)) };
    let inflight = q("SELECT COUNT(*) FROM outbox
                      WHERE state = 'queued' AND (plan IS NOT NULL OR attempts > 0)")?;
    // Absent in a store not yet migrated by a newer daemon.
    let links_pending =
        q("SELECT COUNT(*) FROM link_requests WHERE state IN ('pending', 'cancelling')")
            .unwrap_or(0);
    let oldest: Option<String> = conn.query_row(
        "SELECT MIN(e.received_at) FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.state = 'queued'",
        [],
        |r| r.get(0),
    )?;
    // The updater keeps its state in update-state.json beside the store
    // (written atomically); a `kv` record is the fallback.
    let from_file = update_state_file(config);
    let update_state = match (from_file, outbox::kv_get(conn, UPDATE_STATE_KEY)?) {
        (Some(v), _) => v,
        (None, Some(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        (None, None) => Value::String("unknown".into()),
    };
    let pos = match &daemon {
        None => PosSummary {
            state: "unknown",
            ..Default::default()
        },
        Some(d) => PosSummary {
            state: if d.pos.mqtt_connected {
                "connected"
            } else if d.pos.found {
                "found"
            } else {
                "not_found"
            },
            instance: d.pos.instance.clone(),
            address: d.pos.address.clone(),
            app_version: d.pos.app_version.clone(),
            installation_id: d.pos.installation_id.clone(),
            server: d.pos.server.clone(),
            connected_since: d
                .pos
                .connected_since
                .clone()
                .filter(|_| d.pos.mqtt_connected),
            problem: d.pos.problem.clone(),
        },
    };
    let zenchef = api_summary(daemon.as_ref().map(|d| &d.zenchef));
    let pay = if config.pay.is_some() {
        api_summary(daemon.as_ref().map(|d| &d.pay))
    } else {
        ApiSummary {
            state: "disabled",
            ..Default::default()
        }
    };
    // Absent in a store not yet migrated by a newer daemon.
    let payments_needing_person = outbox::payments::needs_person(conn).unwrap_or_default();
    let orders_needing_attention = outbox::orders::attention_orders(conn).unwrap_or_default();
    let oldest_queued_age_s = oldest.as_deref().and_then(|t| age_s(t, now));
    let store_usage =
        outbox::retention::store_facts(conn, &config.store_path, config.retention.keep_days).ok();
    let update_held_by =
        crate::update::daemon::holding_orders(conn, now, config.update.open_order_max, 20)
            .unwrap_or_default();
    let mut problems = Vec::new();
    if !daemon_running {
        problems.push(Problem::AgentNotRunning);
    }
    if !payments_needing_person.is_empty() {
        problems.push(Problem::PaymentsNeedPerson);
    }
    if !orders_needing_attention.is_empty() {
        problems.push(Problem::OrdersNeedAttention);
    }
    if zenchef.state == "credentials_refused" {
        problems.push(Problem::ZenchefCredentials);
    }
    if zenchef.state == "outage" {
        problems.push(Problem::ZenchefOutage);
    }
    match pos.state {
        "not_found" => problems.push(Problem::PosNotFound),
        "found" => problems.push(Problem::PosDisconnected),
        _ => {}
    }
    let tables = super::tables::stored_check(conn);
    if tables.as_ref().is_some_and(|t| !t.clean) {
        problems.push(Problem::TableNamesDiffer);
    }
    if counts.dead > 0 {
        problems.push(Problem::DeadEvents);
    }
    // Read from the store itself, so that it is said with the daemon
    // stopped too, for as long as the kept file exists.
    let moved_aside = outbox::kv_get(conn, crate::health::MOVED_ASIDE_KEY)
        .ok()
        .flatten()
        .filter(|p| std::path::Path::new(p).exists());
    if moved_aside.is_some() {
        problems.push(Problem::StoreReplaced);
    }
    if oldest_queued_age_s.is_some_and(|a| a > OLD_QUEUE_S)
        && !problems.contains(&Problem::ZenchefOutage)
        && !problems.contains(&Problem::ZenchefCredentials)
    {
        problems.push(Problem::OldQueue);
    }
    match pay.state {
        "credentials_refused" => problems.push(Problem::PayCredentials),
        "outage" => problems.push(Problem::PayOutage),
        _ => {}
    }
    if counts.pay_dead > 0 {
        problems.push(Problem::PayDead);
    }
    let update_problem = match crate::update::signing_key_problem(&config.update) {
        Some(p) => {
            problems.push(Problem::UpdatesRefused);
            Some(p)
        }
        None => crate::update::daemon::CheckFailures::read(conn)
            .and_then(|f| f.problem())
            .inspect(|_| problems.push(Problem::UpdatesFailing)),
    };
    Ok(Status {
        version: crate::update::running_version_str().into(),
        currency: config.currency.clone(),
        store: config.store_path.display().to_string(),
        store_state: "ok",
        store_error: None,
        config_state: "ok",
        config_error: None,
        checked_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        daemon_running,
        daemon_alive,
        last_reservation_sync: daemon
            .as_ref()
            .and_then(|d| d.last_reservation_sync.clone()),
        daemon,
        counts: StatusCounts {
            base: counts,
            inflight,
            links_pending,
        },
        oldest_queued_age_s,
        pos,
        zenchef,
        pay,
        update_state,
        payments_needing_person,
        orders_needing_attention,
        update_problem,
        tables,
        history: outbox::kv_get(conn, health::HISTORY_KEY)
            .ok()
            .flatten()
            .and_then(|h| serde_json::from_str(&h).ok()),
        store_usage,
        store_moved_aside: moved_aside,
        update_held_by,
        problems,
    })
}

/// Cents as the guest reads them: `54.00 EUR`, `-10.00 EUR`.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", a / 100, a % 100)
}

/// Summarises the daemon's view of one API.
fn api_summary(h: Option<&ApiHealth>) -> ApiSummary {
    let Some(h) = h else {
        return ApiSummary {
            state: "unknown",
            ..Default::default()
        };
    };
    // `last_error` is "<UTC time> <message>" (health.rs).
    let (at, msg) = match h.last_error.as_deref() {
        Some(e) => match e.split_once(' ') {
            Some((t, m)) if DateTime::parse_from_rfc3339(t).is_ok() => {
                (Some(t.to_string()), Some(m.to_string()))
            }
            _ => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    let state = if h.credentials_refused {
        "credentials_refused"
    } else if h.outage {
        "outage"
    } else if h.last_success.is_some() {
        "ok"
    } else {
        "unknown"
    };
    ApiSummary {
        state,
        last_success: h.last_success.clone(),
        last_error: msg,
        last_error_at: at,
    }
}

/// A duration in seconds for people: `42 s`, `5 min`, `2 h 05`, `3 d 4 h`.
pub fn human_age(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {:02}", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

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
        Problem::ZenchefCredentials => "Zenchef refuses the token or restaurant id: check \
             zenchef.token and zenchef.restaurant_id (deliveries paused, nothing lost)"
            .into(),
        Problem::ZenchefOutage => format!(
            "Zenchef unreachable: bookings not updated; {} event(s) kept, retried",
            c.queued
        ),
        Problem::PosNotFound => "no usable Cashpad POS on the network (see POS below)".into(),
        Problem::PosDisconnected => "the POS is found but the MQTT session is down".into(),
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
}

impl Out {
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
}

impl Out {
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
    };
    let opt = |v: &Option<String>| {
        v.clone()
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    // Headline.
    let agent = match &s.daemon {
        Some(d) if s.daemon_running => {
            let up = age_s(&d.started_at, now).map(human_age).unwrap_or_default();
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
                when(Some(&d.updated_at), tz, now)
            ),
            Tone::Bad,
        ),
        Some(d) => (
            format!(
                "NOT RUNNING (last seen {})",
                when(Some(&d.updated_at), tz, now)
            ),
            Tone::Bad,
        ),
        None if s.store_state == "unreadable" => {
            ("unknown (the store cannot be read)".into(), Tone::Warn)
        }
        None => ("NEVER RAN with this store".into(), Tone::Bad),
    };
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
    o.line("Agent", Some((&agent.0, agent.1)), "");
    // POS.
    let (tag, tone) = match s.pos.state {
        "connected" => ("connected", Tone::Good),
        "found" => ("found, MQTT DOWN", Tone::Bad),
        "not_found" => ("NOT FOUND", Tone::Bad),
        _ => ("unknown", Tone::Warn),
    };
    let where_ = match (&s.pos.instance, &s.pos.address) {
        (Some(i), Some(a)) => format!("\"{i}\" at {a}"),
        (None, Some(a)) => a.clone(),
        _ => String::new(),
    };
    o.line("POS", Some((tag, tone)), &where_);
    if s.pos.state == "connected" || s.pos.state == "found" {
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
    if s.pos.state == "connected" {
        o.line(
            "",
            None,
            &format!(
                "MQTT connected since {}",
                when(s.pos.connected_since.as_deref(), tz, now)
            ),
        );
    }
    if let Some(p) = &s.pos.problem
        && s.pos.state != "connected"
    {
        o.line("", None, p);
    }
    // Remote APIs.
    for (label, api) in [("Zenchef", &s.zenchef), ("Zenchef Pay", &s.pay)] {
        let (tag, tone) = match api.state {
            "ok" => ("reachable", Tone::Good),
            "outage" => ("UNREACHABLE", Tone::Bad),
            "credentials_refused" => ("CREDENTIALS REFUSED", Tone::Bad),
            "disabled" => ("disabled", Tone::Plain),
            _ => ("unknown", Tone::Warn),
        };
        let rest = if api.state == "disabled" {
            String::new()
        } else {
            format!(
                "last success {}",
                when(api.last_success.as_deref(), tz, now)
            )
        };
        o.line(label, Some((tag, tone)), &rest);
        if let Some(e) = &api.last_error {
            o.line(
                "",
                None,
                &format!(
                    "last error {}: {e}",
                    when(api.last_error_at.as_deref(), tz, now)
                ),
            );
        }
    }
    // Queue.
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
    if s.pay.state != "disabled" {
        o.line(
            "Payments",
            None,
            &format!(
                "settled {}  refused {}  waiting for the POS {}  need a person {}",
                c.base.pay_settled,
                c.base.pay_rejected,
                c.base.pay_pending,
                c.base.pay_needs_person
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
    o.line(
        "Bookings",
        None,
        &format!(
            "on the POS {}  last sync {}",
            c.base.reservations_published,
            when(s.last_reservation_sync.as_deref(), tz, now)
        ),
    );
    if let Some(t) = s.tables.as_ref().filter(|t| !t.clean) {
        o.line(
            "Tables",
            Some(("NAMES DIFFER", Tone::Bad)),
            &format!("POS {} table(s), Zenchef {}", t.pos_count, t.zenchef_count),
        );
        for l in super::tables::describe(&t.diff) {
            o.line("", None, &l);
        }
    }
    o.line(
        "Events",
        None,
        &format!(
            "received {}  delivered {}  duplicates {}  unknown type {}",
            c.base.received, c.base.delivered, c.base.duplicates, c.base.unknown_type
        ),
    );
    let update = match &s.update_state {
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
    };
    o.line("Update", None, &update);
    if let Some(p) = &s.update_problem {
        o.wrapped(p);
    }
    if let Some(first) = s.update_held_by.first() {
        o.wrapped(&format!(
            "held back by {} open order(s), the oldest {} (table {}) since {}",
            s.update_held_by.len(),
            first.order_id,
            first.table,
            when(first.since.as_deref(), tz, now)
        ));
    }
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
        o.wrapped(&format!(
            "{:.1} MiB (+ {:.1} MiB WAL), oldest event kept {}, finished orders kept {} days",
            u.file_bytes as f64 / 1048576.0,
            u.wal_bytes as f64 / 1048576.0,
            when(u.oldest_event_at.as_deref(), tz, now),
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
    }
    o.lines.join("\n") + "\n"
}

/// Prints the status, text or JSON, whatever the store's state. Exit code
/// 0 when the store was read (the status is information, not a check:
/// `doctor` is the command whose exit code judges); when it was not, 66
/// (missing), 77 (permission denied) or 74 (unreadable otherwise), after
/// printing it all the same; 78 when a newer release made it unusable
/// for this binary (the daemon's own exit code on it).
pub fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let s = read(config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", render_text(&s, config.timezone, Utc::now(), color));
    }
    Ok(match s.store_state {
        "ok" => exit::OK,
        "missing" => exit::NOINPUT,
        "incompatible" => exit::CONFIG,
        _ => match exit::store_access(&config.store_path) {
            StoreAccess::PermissionDenied(_) => exit::NOPERM,
            _ => exit::IOERR,
        },
    })
}

/// Is `pid` a running zenchef-edge daemon (Linux `/proc`)?
fn process_is_agent(pid: u32) -> bool {
    if pid == 0 || pid == std::process::id() {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"zenchef-edge"))
            && args.iter().any(|a| *a == b"run")
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A status with something of everything (the page's tests use it too).
    pub(crate) fn sample(now: DateTime<Utc>) -> Status {
        let t = |s: i64| {
            (now - chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let mut d = HealthState {
            version: "0.1.0".into(),
            pid: 4242,
            started_at: t(7300),
            updated_at: t(1),
            ..Default::default()
        };
        d.pos.found = true;
        d.pos.mqtt_connected = true;
        d.pos.instance = Some("Cashpad Server (Le Bistrot de la Place de la République)".into());
        d.pos.address = Some("192.168.100.200:18830".into());
        d.pos.connected_since = Some(t(600));
        d.zenchef.last_success = Some(t(3));
        d.zenchef.last_error = Some(format!(
            "{} PATCH /bookings/123/changeStatus: {}",
            t(90),
            "x".repeat(200)
        ));
        Status {
            version: "0.1.0".into(),
            currency: "EUR".into(),
            store: "/var/lib/zenchef-edge/agent.db".into(),
            store_state: "ok",
            store_error: None,
            config_state: "ok",
            config_error: None,
            checked_at: t(0),
            daemon_running: true,
            daemon_alive: true,
            pos: PosSummary {
                state: "connected",
                instance: d.pos.instance.clone(),
                address: d.pos.address.clone(),
                app_version: Some("2.0.18".into()),
                installation_id: Some("CP-4F2A91".into()),
                server: Some("eu-3".into()),
                connected_since: d.pos.connected_since.clone(),
                problem: None,
            },
            zenchef: api_summary(Some(&d.zenchef)),
            pay: ApiSummary {
                state: "ok",
                last_success: Some(t(1)),
                ..Default::default()
            },
            daemon: Some(d),
            counts: StatusCounts {
                base: Counts {
                    dead: 2,
                    queued: 12345,
                    ..Default::default()
                },
                inflight: 3,
                links_pending: 0,
            },
            oldest_queued_age_s: Some(4000),
            last_reservation_sync: Some(t(2)),
            update_state: Value::String("unknown".into()),
            update_problem: None,
            tables: None,
            history: None,
            store_usage: None,
            store_moved_aside: None,
            update_held_by: Vec::new(),
            payments_needing_person: vec![NeedsPerson {
                payment_id: "pay_8f2c0a1b2c3d".into(),
                order_id: "O-881".into(),
                table: Some("Terrasse 12".into()),
                amount_cents: 5400,
                tip_cents: 300,
                state: "command_sent".into(),
                what: "the POS did not answer the settle command (sent 4 times): the guest paid \
                       5400 cents (+300 tip) through Zenchef Pay; check table Terrasse 12 in the POS"
                    .into(),
                since: t(120),
            }],
            orders_needing_attention: vec![AttentionOrder {
                order_id: "O-882".into(),
                table: Some("7".into()),
                reason: "data.lines[0].quantity: quantity must be a positive integer".into(),
                since: t(60),
            }],
            problems: vec![
                Problem::PaymentsNeedPerson,
                Problem::OrdersNeedAttention,
                Problem::DeadEvents,
                Problem::OldQueue,
            ],
        }
    }

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
        let diff = crate::cli::tables::compare(&names(&["1", "7a"]), &names(&["1", "7A"]));
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

    #[test]
    fn a_record_is_running_only_when_fresh_and_its_process_exists() {
        let conn = Connection::open_in_memory().unwrap();
        crate::outbox::migrations::migrate(&conn).unwrap();
        let now = Utc::now();
        let put = |pid: u32, age: i64| {
            let d = HealthState {
                pid,
                updated_at: (now - chrono::Duration::seconds(age))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ..Default::default()
            };
            outbox::kv_set(&conn, health::KV_KEY, &serde_json::to_string(&d).unwrap()).unwrap();
            daemon_record(&conn, now).1
        };
        let me = std::process::id();
        assert!(put(me, 1));
        assert!(!put(me, FRESH_S + 5), "stale");
        assert!(!put(4_999_999, 1), "no such process (above any pid_max)");
        let empty = Connection::open_in_memory().unwrap();
        assert!(!daemon_record(&empty, now).1, "no record");
    }

    #[test]
    fn last_error_is_split_into_time_and_message() {
        let h = ApiHealth {
            last_error: Some("2026-11-29T19:00:00Z GET /tables: timed out".into()),
            outage: true,
            ..Default::default()
        };
        let a = api_summary(Some(&h));
        assert_eq!(a.state, "outage");
        assert_eq!(a.last_error_at.as_deref(), Some("2026-11-29T19:00:00Z"));
        assert_eq!(a.last_error.as_deref(), Some("GET /tables: timed out"));
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        for (s, want) in [
            (0, "0 s"),
            (59, "59 s"),
            (60, "1 min"),
            (3599, "59 min"),
            (3600, "1 h 00"),
            (7380, "2 h 03"),
            (90000, "1 d 1 h"),
            (-5, "0 s"),
        ] {
            assert_eq!(human_age(s), want, "{s}");
        }
    }
}

#[cfg(test)]
#[path = "../status/golden_tests.rs"]
mod golden_tests;

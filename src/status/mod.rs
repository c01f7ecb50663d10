//! The facts of `zenchef-edge status`, read once and shared by the CLI
//! (`src/cli/status.rs`) and the local HTTP port (`src/http.rs`): what the
//! box is doing, from the store (opened read-only, safe while the daemon
//! runs) and the state record the running daemon writes every 2 s
//! (`health.rs`).
//!
//! [`read`] gives one [`Status`]; its renderings are [`text`] (the
//! terminal, 80 columns), [`json`] (`status --json` and `GET /status.json`:
//! its keys are documented in `docs/status-json.md` and only ever grow;
//! scripts, the demo and the tests read `version`, `store`,
//! `daemon_running`, `daemon`, `counts{…}` and `oldest_queued_age_s`) and
//! [`page`] (the manager's page, with its [`chart`]). The statements it
//! runs are in `src/outbox/status.rs`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::exit::{self, StoreAccess};
use crate::health::{self, ApiHealth, HealthState, History};
use crate::outbox::{self, AttentionOrder, Connection, Counts, NeedsPerson, store};
use crate::pos::anonymous::AnonymousClients;
use crate::tables::TablesCheck;

pub mod chart;
pub mod json;
pub mod page;
pub mod text;

#[cfg(test)]
mod golden_tests;

/// The daemon record is considered current when written less than this
/// many seconds ago (it is written every 2 s) by a process that still
/// exists.
pub const FRESH_S: i64 = 15;
/// `kv` key where the updater keeps its state (JSON or text).
pub const UPDATE_STATE_KEY: &str = "update_state";
/// A queue older than this (seconds) is a problem even when no outage is
/// known.
pub const OLD_QUEUE_S: i64 = 600;

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
    /// seconds, or the running daemon itself is answering (the page,
    /// `status.json`, the fleet report: [`read_live`]).
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
    /// last read Zenchef's (`src/tables.rs`); `null` until both are known.
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
    /// What the store that replaced it saved from it (SQLite's recovery,
    /// `outbox::recover`): rows saved per kind and rows that could not be
    /// read, or why nothing could be; shown with `store_moved_aside`,
    /// `null` otherwise.
    pub store_recovery: Option<crate::outbox::recover::Recovery>,
    /// The open orders that hold an update back, oldest first (at most
    /// 20), each with since when; orders open for longer than
    /// `update.open_order_max_h` no longer do and are not listed.
    pub update_held_by: Vec<crate::update::daemon::OpenOrder>,
    /// The daemon's last update check (when, its result, the release
    /// waiting for its time), `null` before the first.
    pub update_last_check: Option<crate::update::daemon::LastCheck>,
    /// The fleet report (`[fleet]`, docs/fleet.md): `state` `disabled`
    /// when not configured, `unknown` without a fresh daemon record, else
    /// the daemon's session state. Never a `problem`: it does not concern
    /// the restaurant.
    pub fleet: crate::health::FleetHealth,
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

/// The POS as the daemon last saw it: serialised as the words of
/// `pos.state` in `status --json` (`connected`, `found`, `not_found`,
/// `unknown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PosState {
    /// The MQTT session with the POS broker is up.
    Connected,
    /// The POS was found (mDNS) but its MQTT session is down.
    Found,
    /// No POS announce was found.
    NotFound,
    /// No daemon record tells.
    #[default]
    Unknown,
}

impl PosState {
    /// The word of `status --json` (`connected`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PosState::Connected => "connected",
            PosState::Found => "found",
            PosState::NotFound => "not_found",
            PosState::Unknown => "unknown",
        }
    }
}

/// Reachability of one remote API: serialised as the words of
/// `zenchef.state` / `pay.state` in `status --json` (`ok`, `outage`,
/// `credentials_refused`, `unknown`, `disabled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiState {
    /// The last call succeeded.
    Ok,
    /// The API is unreachable (calls keep failing).
    Outage,
    /// The API refuses the configured credentials.
    CredentialsRefused,
    /// No call yet, or no daemon record.
    #[default]
    Unknown,
    /// Not configured (Zenchef Pay without `[pay]`).
    Disabled,
}

impl ApiState {
    /// The word of `status --json` (`ok`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiState::Ok => "ok",
            ApiState::Outage => "outage",
            ApiState::CredentialsRefused => "credentials_refused",
            ApiState::Unknown => "unknown",
            ApiState::Disabled => "disabled",
        }
    }
}

/// The POS part of the status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PosSummary {
    /// `connected`, `found` (MQTT down), `not_found` or `unknown` (no
    /// daemon record).
    pub state: PosState,
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
    /// Whether the POS broker lets in a client without a password, as the
    /// daemon's last probe found (`accepted`, `refused`, `unknown`; `null`
    /// before the first probe): `accepted` is problem
    /// `pos_broker_anonymous` (docs/pos-broker.md).
    pub anonymous_clients: Option<AnonymousClients>,
    /// When that probe answered (UTC).
    pub anonymous_checked_at: Option<String>,
}

/// Reachability of one remote API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiSummary {
    /// `ok`, `outage`, `credentials_refused`, `unknown` (no call yet or
    /// no daemon record) or `disabled`.
    pub state: ApiState,
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
    /// No fresh daemon record and no daemon process: the service is
    /// stopped.
    AgentNotRunning,
    /// The daemon runs but cannot write its store (disk full, read-only
    /// filesystem): POS events are not acknowledged, nothing moves.
    StoreNotWritable,
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
    /// The POS broker lets in a client without a password: anyone on the
    /// restaurant network can read the reservations and forge POS events
    /// (docs/protocol/cashpad-local.md §2a, docs/pos-broker.md).
    PosBrokerAnonymous,
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
    /// The only signing key trusted is the repository's placeholder
    /// (`placeholder = true` in `packaging/channel.toml`): this box cannot
    /// update.
    UpdatesPlaceholderKey,
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
    read_with(config, now, None)
}

/// The status as the running daemon itself gives it (the page,
/// `status.json`, the fleet report), with `live`, its record in memory:
/// the daemon knows it runs, even when its store cannot be written (then
/// the stored record is stale, and the problem is
/// [`Problem::StoreNotWritable`], not [`Problem::AgentNotRunning`]).
pub fn read_live(config: &Config, now: DateTime<Utc>, live: &HealthState) -> Status {
    read_with(config, now, Some(live))
}

fn read_with(config: &Config, now: DateTime<Utc>, live: Option<&HealthState>) -> Status {
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
                    None => read_conn_with(&conn, config, now, live).map(Ok),
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
    let mut s = Status::without_store(config, now, state, error);
    if let Some(live) = live {
        s.daemon_running = true;
        s.daemon_alive = true;
        s.pos = pos_summary(Some(live));
        s.zenchef = api_summary(Some(&live.zenchef));
        s.daemon = Some(live.clone());
    }
    s
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
    let no_table = || outbox::status::table_count(conn).is_ok_and(|n| n == 0);
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
            problems.push(refused_kind(config));
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
                state: PosState::Unknown,
                ..Default::default()
            },
            zenchef: ApiSummary {
                state: ApiState::Unknown,
                ..Default::default()
            },
            pay: ApiSummary {
                state: if config.pay.is_some() {
                    ApiState::Unknown
                } else {
                    ApiState::Disabled
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
            store_recovery: None,
            update_held_by: Vec::new(),
            update_last_check: None,
            fleet: fleet_summary(config, None, false),
            problems,
        }
    }
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
///
/// Errors: the store's counts or its queue cannot be read (SQLite's);
/// facts a store not yet migrated by a newer daemon lacks are left empty.
pub fn read_conn(conn: &Connection, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Status> {
    read_conn_with(conn, config, now, None)
}

/// [`read_conn`], with the daemon's live record when the daemon itself
/// reads ([`read_live`]).
fn read_conn_with(
    conn: &Connection,
    config: &Config,
    now: DateTime<Utc>,
    live: Option<&HealthState>,
) -> anyhow::Result<Status> {
    let counts = outbox::counts(conn)?;
    let (daemon, daemon_running, daemon_alive) = match live {
        Some(live) => (Some(live.clone()), true, true),
        None => {
            let (daemon, running) = daemon_record(conn, now);
            let alive = daemon.as_ref().is_some_and(|d| process_is_agent(d.pid));
            (daemon, running, alive)
        }
    };
    let inflight = outbox::status::inflight(conn)?;
    // Absent in a store not yet migrated by a newer daemon.
    let links_pending = outbox::status::links_pending(conn).unwrap_or(0);
    let oldest = outbox::status::oldest_queued_received_at(conn)?;
    let update_state = update_state(conn, config)?;
    let pay = if config.pay.is_some() {
        api_summary(daemon.as_ref().map(|d| &d.pay))
    } else {
        ApiSummary {
            state: ApiState::Disabled,
            ..Default::default()
        }
    };
    let (update_problem, update_kind) = update_problem(conn, config);
    let s_daemon_fleet = daemon.as_ref().map(|d| &d.fleet);
    let fleet = fleet_summary(config, s_daemon_fleet, daemon_running);
    let mut s = Status {
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
        pos: pos_summary(daemon.as_ref()),
        zenchef: api_summary(daemon.as_ref().map(|d| &d.zenchef)),
        daemon,
        counts: StatusCounts {
            base: counts,
            inflight,
            links_pending,
        },
        oldest_queued_age_s: oldest.as_deref().and_then(|t| age_s(t, now)),
        pay,
        update_state,
        // Absent in a store not yet migrated by a newer daemon.
        payments_needing_person: outbox::payments::needs_person(conn).unwrap_or_default(),
        orders_needing_attention: outbox::orders::attention_orders(conn).unwrap_or_default(),
        update_problem,
        tables: crate::tables::stored_check(conn),
        history: outbox::kv_get(conn, health::HISTORY_KEY)
            .ok()
            .flatten()
            .and_then(|h| serde_json::from_str(&h).ok()),
        store_usage: outbox::retention::store_facts(
            conn,
            &config.store_path,
            config.retention.keep_days,
        )
        .ok(),
        // Read from the store itself, so that it is said with the daemon
        // stopped too, for as long as the kept file exists.
        store_moved_aside: outbox::kv_get(conn, crate::health::MOVED_ASIDE_KEY)
            .ok()
            .flatten()
            .filter(|p| std::path::Path::new(p).exists()),
        store_recovery: outbox::kv_get(conn, crate::health::MOVED_ASIDE_KEY)
            .ok()
            .flatten()
            .filter(|p| std::path::Path::new(p).exists())
            .and_then(|_| outbox::recover::last(conn)),
        update_held_by: outbox::orders::open_orders(conn, usize::MAX)
            .map(|rows| {
                crate::update::daemon::holding_orders(rows, now, config.update.open_order_max, 20)
            })
            .unwrap_or_default(),
        update_last_check: crate::update::daemon::LastCheck::parse(outbox::kv_get(
            conn,
            crate::update::daemon::LAST_CHECK_KV_KEY,
        )),
        fleet,
        problems: Vec::new(),
    };
    s.problems = problems(&s, update_kind);
    Ok(s)
}

/// The `fleet` object of the status: `disabled` without `[fleet]`,
/// `unknown` when no daemon runs (or its record has no fleet session yet),
/// else the daemon's record.
fn fleet_summary(
    config: &Config,
    daemon: Option<&crate::health::FleetHealth>,
    running: bool,
) -> crate::health::FleetHealth {
    let Some(f) = &config.fleet else {
        return crate::health::FleetHealth {
            state: "disabled".into(),
            ..Default::default()
        };
    };
    match daemon.filter(|d| running && !d.state.is_empty()) {
        Some(d) => d.clone(),
        None => crate::health::FleetHealth {
            state: "unknown".into(),
            broker: Some(f.broker.to_string()),
            ..Default::default()
        },
    }
}

/// The updater's state: `update-state.json` beside the store (written
/// atomically), else the `kv` record (JSON, or the text as a string), else
/// `"unknown"`.
///
/// Errors: the `kv` table cannot be read (SQLite's).
fn update_state(conn: &Connection, config: &Config) -> anyhow::Result<Value> {
    let from_file = update_state_file(config);
    Ok(match (from_file, outbox::kv_get(conn, UPDATE_STATE_KEY)?) {
        (Some(v), _) => v,
        (None, Some(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        (None, None) => Value::String("unknown".into()),
    })
}

/// Why the box gets no update, with its problem: no usable signing key
/// ([`Problem::UpdatesRefused`]), else the daemon's failing checks
/// ([`Problem::UpdatesFailing`]); `(None, None)` when nothing stops it.
fn update_problem(conn: &Connection, config: &Config) -> (Option<String>, Option<Problem>) {
    match crate::update::signing_key_problem(&config.update) {
        Some(p) => (Some(p), Some(refused_kind(config))),
        None => {
            let failing = crate::update::daemon::CheckFailures::parse(outbox::kv_get(
                conn,
                crate::update::daemon::FAILURES_KV_KEY,
            ))
            .and_then(|f| f.problem());
            let kind = failing.as_ref().map(|_| Problem::UpdatesFailing);
            (failing, kind)
        }
    }
}

/// Which problem a refused signing key is: the repository's placeholder,
/// or no usable key.
fn refused_kind(config: &Config) -> Problem {
    if config.update.placeholder_key {
        Problem::UpdatesPlaceholderKey
    } else {
        Problem::UpdatesRefused
    }
}

/// The POS as the daemon last saw it (`unknown` without a record).
fn pos_summary(daemon: Option<&HealthState>) -> PosSummary {
    let Some(d) = daemon else {
        return PosSummary {
            state: PosState::Unknown,
            ..Default::default()
        };
    };
    PosSummary {
        state: if d.pos.mqtt_connected {
            PosState::Connected
        } else if d.pos.found {
            PosState::Found
        } else {
            PosState::NotFound
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
        anonymous_clients: d.pos.anonymous_clients,
        anonymous_checked_at: d.pos.anonymous_checked_at.clone(),
    }
}

/// What needs attention in the facts `s` of a readable store, most
/// important first (the order of [`Problem`]'s documentation), ending with
/// the update's problem when there is one.
fn problems(s: &Status, update: Option<Problem>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut add = |cond: bool, p: Problem| {
        if cond {
            problems.push(p);
        }
    };
    add(
        !s.daemon_running && !s.daemon_alive,
        Problem::AgentNotRunning,
    );
    // Alive with a stale record (seen from the CLI), or the live record
    // says its last write failed (seen from the daemon).
    add(
        s.daemon_alive
            && (!s.daemon_running
                || s.daemon
                    .as_ref()
                    .is_some_and(|d| d.store_write_error.is_some())),
        Problem::StoreNotWritable,
    );
    add(
        !s.payments_needing_person.is_empty(),
        Problem::PaymentsNeedPerson,
    );
    add(
        !s.orders_needing_attention.is_empty(),
        Problem::OrdersNeedAttention,
    );
    let zenchef_down = matches!(
        s.zenchef.state,
        ApiState::CredentialsRefused | ApiState::Outage
    );
    add(
        s.zenchef.state == ApiState::CredentialsRefused,
        Problem::ZenchefCredentials,
    );
    add(s.zenchef.state == ApiState::Outage, Problem::ZenchefOutage);
    add(s.pos.state == PosState::NotFound, Problem::PosNotFound);
    add(s.pos.state == PosState::Found, Problem::PosDisconnected);
    add(
        s.pos.anonymous_clients == Some(AnonymousClients::Accepted),
        Problem::PosBrokerAnonymous,
    );
    add(
        s.tables.as_ref().is_some_and(|t| !t.clean),
        Problem::TableNamesDiffer,
    );
    add(s.counts.base.dead > 0, Problem::DeadEvents);
    add(s.store_moved_aside.is_some(), Problem::StoreReplaced);
    add(
        s.oldest_queued_age_s.is_some_and(|a| a > OLD_QUEUE_S) && !zenchef_down,
        Problem::OldQueue,
    );
    add(
        s.pay.state == ApiState::CredentialsRefused,
        Problem::PayCredentials,
    );
    add(s.pay.state == ApiState::Outage, Problem::PayOutage);
    add(s.counts.base.pay_dead > 0, Problem::PayDead);
    problems.extend(update);
    problems
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
            state: ApiState::Unknown,
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
        ApiState::CredentialsRefused
    } else if h.outage {
        ApiState::Outage
    } else if h.last_success.is_some() {
        ApiState::Ok
    } else {
        ApiState::Unknown
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
                state: PosState::Connected,
                instance: d.pos.instance.clone(),
                address: d.pos.address.clone(),
                app_version: Some("2.0.18".into()),
                installation_id: Some("CP-4F2A91".into()),
                server: Some("eu-3".into()),
                connected_since: d.pos.connected_since.clone(),
                problem: None,
                anonymous_clients: Some(AnonymousClients::Refused),
                anonymous_checked_at: Some(t(590)),
            },
            zenchef: api_summary(Some(&d.zenchef)),
            pay: ApiSummary {
                state: ApiState::Ok,
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
            store_recovery: None,
            update_held_by: Vec::new(),
            update_last_check: None,
            fleet: crate::health::FleetHealth { state: "disabled".into(), ..Default::default() },
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
    fn states_are_serialised_as_the_words_of_status_json() {
        let pos = [
            (PosState::Connected, "connected"),
            (PosState::Found, "found"),
            (PosState::NotFound, "not_found"),
            (PosState::Unknown, "unknown"),
        ];
        for (state, word) in pos {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
            assert_eq!(state.as_str(), word);
        }
        let api = [
            (ApiState::Ok, "ok"),
            (ApiState::Outage, "outage"),
            (ApiState::CredentialsRefused, "credentials_refused"),
            (ApiState::Unknown, "unknown"),
            (ApiState::Disabled, "disabled"),
        ];
        for (state, word) in api {
            assert_eq!(serde_json::to_value(state).unwrap(), word);
            assert_eq!(state.as_str(), word);
        }
        assert_eq!(PosSummary::default().state, PosState::Unknown);
        assert_eq!(ApiSummary::default().state, ApiState::Unknown);
    }

    #[test]
    fn last_error_is_split_into_time_and_message() {
        let h = ApiHealth {
            last_error: Some("2026-11-29T19:00:00Z GET /tables: timed out".into()),
            outage: true,
            ..Default::default()
        };
        let a = api_summary(Some(&h));
        assert_eq!(a.state, ApiState::Outage);
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

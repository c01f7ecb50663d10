//! `zenchef-edge status [--json]`: what the box is doing, from the store
//! (read-only) and the state record the running daemon keeps current.
//!
//! `--json` prints one object, stable for scripts and the demo:
//! `{"version", "store", "daemon_running", "daemon_alive", "daemon":
//!   <HealthState>|null, "counts": <Counts>, "oldest_queued_age_s":
//!   <seconds>|null}`.
//!
//! The daemon's record is written into the store every few seconds; when
//! the store cannot be written (its disk is full) the record goes stale
//! while the daemon still runs. `daemon_alive` (its process is there)
//! tells that case apart from a stopped daemon, and the text output says
//! what to check.

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::health::{self, HealthState};
use crate::outbox::{self, Counts, store};

/// The daemon record is considered current when written less than this ago.
const FRESH_S: i64 = 15;

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct Status {
    /// This binary's version.
    pub version: String,
    /// The store file.
    pub store: String,
    /// A daemon wrote its state in the last 15 s.
    pub daemon_running: bool,
    /// The process of the daemon that wrote the last record is running
    /// (true with a stale record: it cannot write to its store).
    pub daemon_alive: bool,
    /// The daemon's last record (links, errors).
    pub daemon: Option<HealthState>,
    /// Counts.
    pub counts: Counts,
    /// Age of the oldest queued event, seconds (box clock).
    pub oldest_queued_age_s: Option<i64>,
}

/// Reads the status from the store at `path`.
pub fn read(path: &Path) -> anyhow::Result<Status> {
    let conn = store::open_read_only(path)?;
    let counts = outbox::counts(&conn)?;
    let daemon: Option<HealthState> =
        outbox::kv_get(&conn, health::KV_KEY)?.and_then(|s| serde_json::from_str(&s).ok());
    let now = chrono::Utc::now();
    let age = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds())
    };
    let daemon_running = daemon
        .as_ref()
        .and_then(|d| age(&d.updated_at))
        .is_some_and(|a| (-FRESH_S..FRESH_S).contains(&a));
    let daemon_alive = daemon.as_ref().is_some_and(|d| process_is_agent(d.pid));
    let oldest: Option<String> = conn
        .query_row(
            "SELECT MIN(e.received_at) FROM outbox o JOIN events e ON e.event_id = o.event_id
             WHERE o.state = 'queued'",
            [],
            |r| r.get(0),
        )
        .map_err(outbox::StoreError::from)?;
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        store: path.display().to_string(),
        daemon_running,
        daemon_alive,
        daemon,
        counts,
        oldest_queued_age_s: oldest.as_deref().and_then(age),
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

/// Prints the status; exit code 0.
pub fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let s = read(&config.store_path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("zenchef-edge {}   store {}", s.version, s.store);
    match &s.daemon {
        Some(d) => {
            println!(
                "daemon      {} (pid {}, started {})",
                if s.daemon_running {
                    "running"
                } else if s.daemon_alive {
                    "RUNNING BUT CANNOT WRITE ITS STORE (state is old: is the store's disk full?)"
                } else {
                    "NOT RUNNING (state is old)"
                },
                d.pid,
                d.started_at
            );
            println!(
                "POS         found: {}  address: {}  Cashpad {}",
                yn(d.pos.found),
                opt(&d.pos.address),
                opt(&d.pos.app_version)
            );
            println!(
                "            installation {}  server {}",
                opt(&d.pos.installation_id),
                opt(&d.pos.server)
            );
            println!(
                "            MQTT connected: {}  since {}",
                yn(d.pos.mqtt_connected),
                opt(&d.pos.connected_since)
            );
            if let Some(aside) = &d.store_moved_aside {
                println!(
                    "STORE       REPLACED at a start: the unreadable store is kept at {aside} \
                     (its queued events are not delivered automatically)"
                );
            }
            if let Some(p) = &d.pos.problem {
                println!("            problem: {p}");
            }
            println!("Zenchef     last success {}", opt(&d.zenchef.last_success));
            if d.zenchef.credentials_refused {
                println!(
                    "            CREDENTIALS REFUSED: check zenchef.token / zenchef.restaurant_id"
                );
            }
            if let Some(e) = &d.zenchef.last_error {
                println!("            last error {e}");
            }
            println!(
                "            last reservation sync {}",
                opt(&d.last_reservation_sync)
            );
        }
        None => println!("daemon      never ran with this store"),
    }
    let c = &s.counts;
    println!(
        "events      received {}  delivered {}  duplicates {}  unknown type {}",
        c.received, c.delivered, c.duplicates, c.unknown_type
    );
    println!(
        "outbox      queued {}  dead {}  rejected {}  oldest queued {}",
        c.queued,
        c.dead,
        c.rejected,
        s.oldest_queued_age_s
            .map(|a| format!("{a} s"))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "orders      open {}  walk-ins created {}  reservations on POS {}",
        c.orders_open, c.walkins_created, c.reservations_published
    );
    Ok(0)
}

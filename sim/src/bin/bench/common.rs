//! What every part of the bench shares: starting a rig around the real
//! agent, publishing pipelined or paced, reading the agent's store
//! read-only, reading `/proc`, percentiles, the generated restaurant and
//! the figures table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDate, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, Line, Payment, Pos, paris_winter};
use zenchef_sim::zenchef::{Fault, ZenchefConfig};

/// Concurrent POS publishers used for pipelined publishing.
pub const PUBLISHERS: usize = 64;

/// The run: where the agent is, how big, and what was found.
pub struct Bench {
    /// The agent binary.
    pub agent: PathBuf,
    /// Reduced sizes and durations (CI).
    pub smoke: bool,
    /// Directory holding one sub-directory per rig.
    pub work: PathBuf,
    /// Every figure, for the final summary.
    pub figures: Vec<Figure>,
    /// Broken assertions (ordering, loss): the run fails when not empty.
    pub problems: Vec<String>,
}

/// One line of the summary.
pub struct Figure {
    /// Part name (`intake`, `drain`…).
    pub part: &'static str,
    /// What was measured.
    pub what: String,
    /// The value with its unit.
    pub value: String,
    /// The target, or `""`.
    pub target: String,
    /// Whether the target is met (`None`: no target).
    pub met: Option<bool>,
    /// 1-minute load average when measured.
    pub load: f64,
}

impl Bench {
    /// Records a figure (printed in the summary).
    pub fn figure(
        &mut self,
        part: &'static str,
        what: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        self.figures.push(Figure {
            part,
            what: what.into(),
            value: value.into(),
            target: target.into(),
            met,
            load: load_avg(),
        });
    }

    /// Records a broken assertion.
    pub fn problem(&mut self, p: impl Into<String>) {
        let p = p.into();
        println!("  PROBLEM: {p}");
        self.problems.push(p);
    }

    /// A fresh directory for one rig.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }
}

/// Prints a small aligned table.
pub fn table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - c.chars().count())))
            .collect();
        println!("  {}", s.join("  ").trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    line(w.iter().map(|n| "-".repeat(*n)).collect());
    for r in rows {
        line(r.clone());
    }
}

/// `ok` / `MISS` / `` for a target.
pub fn verdict(met: Option<bool>) -> String {
    match met {
        Some(true) => "ok".into(),
        Some(false) => "MISS".into(),
        None => String::new(),
    }
}

// ---- machine ---------------------------------------------------------------

/// The 1-minute load average (`/proc/loadavg`), 0 when unreadable.
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The three load averages as printed by `uptime`.
pub fn load_avgs() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs a command and answers its trimmed stdout (`""` on failure).
pub fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clk_tck() -> u64 {
    sh("getconf", &["CLK_TCK"]).parse().unwrap_or(100)
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`…).
pub fn proc_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), 1-based from
    // field 3: utime is field 14, stime field 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resets the peak RSS (`VmHWM`) of a process (`/proc/<pid>/clear_refs`,
/// Linux ≥ 4.0); `false` when refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// kB → `x.y MiB`.
pub fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// The agent's pid.
pub fn agent_pid(rig: &Rig) -> anyhow::Result<u32> {
    rig.agent
        .as_ref()
        .map(|c| c.id())
        .context("the agent is not running")
}

// ---- statistics ------------------------------------------------------------

/// Nearest-rank percentile `p` (0–100) of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts (NaN last).
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

// ---- rigs ------------------------------------------------------------------

/// Starts the simulators and the real agent (`opts` says how), with the
/// Zenchef fake `down` or up with `latency`, and waits until the agent is
/// connected to the POS broker and stores what it is sent.
pub async fn start_rig(
    bench: &Bench,
    name: &str,
    opts: RigOptions,
    down: bool,
    latency: Duration,
) -> anyhow::Result<Rig> {
    // A store left by an earlier run (`--keep` reused) would make every
    // counter start high and the figures wrong: refuse it.
    let dir = bench.dir(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} is not empty (an earlier run's store?): give --keep a new or empty directory",
            dir.display()
        );
    }
    let mut rig = Rig::start(opts, &bench.agent, &dir)
        .await
        .context("starting the simulators")?;
    if down {
        rig.zenchef.set_fault(Fault::Down).await?;
    }
    rig.zenchef.set_latency(latency);
    rig.spawn_agent()?;
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await
        .map_err(|e| anyhow::anyhow!("the agent did not come online: {e}\n{}", rig.log_tail(30)))?;
    Ok(rig)
}

/// Read-only view of the agent's store (as `zenchef-edge status` does).
pub struct StoreReader {
    conn: Connection,
}

impl StoreReader {
    /// Opens the store read-only, waiting up to 10 s for the file.
    pub async fn open(path: &Path) -> anyhow::Result<StoreReader> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} read-only", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(StoreReader { conn })
    }

    /// A counter of the `counters` table (0 when absent).
    pub fn counter(&self, name: &str) -> i64 {
        self.conn
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// `SELECT COUNT(*) FROM outbox WHERE state = ?`.
    pub fn outbox_in(&self, state: &str) -> i64 {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = ?1",
                [state],
                |r| r.get(0),
            )
            .unwrap_or(-1)
    }

    /// `event_id → received_at` in Unix milliseconds.
    pub fn received_at_ms(&self) -> anyhow::Result<HashMap<String, i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT event_id, received_at FROM events")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, at) = row?;
            let ms = DateTime::parse_from_rfc3339(&at)
                .with_context(|| format!("received_at {at:?}"))?
                .timestamp_millis();
            out.insert(id, ms);
        }
        Ok(out)
    }

    /// Waits until counter `name` reaches `target`, polling every `every`;
    /// answers when it did.
    pub async fn wait_counter(
        &self,
        name: &str,
        target: i64,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.counter(name);
            if n >= target {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out after {timeout:?}: counter {name} = {n}, expected {target}"
            );
            tokio::time::sleep(every).await;
        }
    }
}

// ---- publishing ------------------------------------------------------------

/// When an event was handed to the POS client.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Monotonic (compared with the Zenchef fake's `CallRecord::at`).
    pub at: Instant,
    /// Wall clock, Unix ms (compared with the store's `received_at`).
    pub wall_ms: i64,
}

impl Stamp {
    fn now() -> Stamp {
        Stamp {
            at: Instant::now(),
            wall_ms: Utc::now().timestamp_millis(),
        }
    }
}

/// Events ready to publish: ids and serialised envelopes.
pub struct Prepared {
    /// `event_id` of each.
    pub ids: Vec<String>,
    /// The JSON bytes of each.
    pub bytes: Vec<Vec<u8>>,
}

impl Prepared {
    /// Serialises envelopes.
    pub fn new(events: &[Value]) -> Prepared {
        Prepared {
            ids: events
                .iter()
                .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
                .collect(),
            bytes: events
                .iter()
                .map(|e| serde_json::to_vec(e).expect("JSON"))
                .collect(),
        }
    }
}

/// Publishes everything as fast as [`PUBLISHERS`] concurrent publishers
/// can (each waits for the broker's PUBACK); answers the stamps.
pub async fn publish_burst(pos: &Pos, p: Arc<Prepared>) -> anyhow::Result<Vec<Stamp>> {
    let n = p.bytes.len();
    let next = Arc::new(AtomicUsize::new(0));
    let stamps = Arc::new(Mutex::new(vec![None; n]));
    let mut set = JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (pos, p, next, stamps) = (pos.clone(), p.clone(), next.clone(), stamps.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= p.bytes.len() {
                    return anyhow::Ok(());
                }
                stamps.lock().unwrap()[i] = Some(Stamp::now());
                pos.publish_raw(p.bytes[i].clone()).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let stamps = stamps.lock().unwrap().clone();
    Ok(stamps.into_iter().map(|s| s.expect("published")).collect())
}

/// Publishes at `rate` events/s: event `i` is released at `t0 + i/rate`
/// (stamped then, so a slow POS client counts against the latency) and
/// published by one of [`PUBLISHERS`] concurrent publishers. Answers the
/// stamps and the wall time of the release schedule.
pub async fn publish_paced(
    pos: &Pos,
    p: Arc<Prepared>,
    rate: f64,
) -> anyhow::Result<(Vec<Stamp>, Duration)> {
    let n = p.bytes.len();
    let (tx, rx) = mpsc::unbounded_channel::<usize>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut set = JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (pos, p, rx) = (pos.clone(), p.clone(), rx.clone());
        set.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(i) = next else {
                    return anyhow::Ok(());
                };
                pos.publish_raw(p.bytes[i].clone()).await?;
            }
        });
    }
    let mut stamps = Vec::with_capacity(n);
    let t0 = tokio::time::Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        stamps.push(Stamp::now());
        tx.send(i).ok();
    }
    let span = t0.elapsed();
    drop(tx);
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok((stamps, span))
}

// ---- the generated restaurant ---------------------------------------------

/// Tables `"1"`…`"50"` (Salle) plus `"51"`…`"60"` (Terrasse, where moved
/// tables go); identical names in Zenchef and on the POS.
pub const TABLES: i64 = 60;
/// Tables that receive guests when orders are generated.
const SEATED_TABLES: i64 = 50;

/// The Zenchef tables `(id, name, room)`.
pub fn zenchef_tables() -> Vec<(i64, String, String)> {
    (1..=TABLES)
        .map(|i| {
            let room = if i <= SEATED_TABLES {
                "Salle"
            } else {
                "Terrasse"
            };
            (i, i.to_string(), room.to_string())
        })
        .collect()
}

/// The POS floor plan for [`zenchef_tables`].
pub fn floorplan() -> Value {
    json!({
        "tables": zenchef_tables().iter()
            .map(|(_, n, r)| json!({"name": n, "room": r, "seats": 4}))
            .collect::<Vec<_>>(),
        "updated_at": "2026-01-01T09:00:00+01:00",
    })
}

/// One generated order.
#[derive(Debug, Clone)]
pub struct OrderPlan {
    /// `O-<prefix>-<n>`.
    pub order_id: String,
    /// Table name.
    pub table: String,
    /// When the table opens (restaurant time, +01:00).
    pub opened_at: DateTime<FixedOffset>,
    /// Party size.
    pub covers: u32,
    /// The Zenchef booking it matches, if any.
    pub booking: Option<i64>,
    /// Table the party moves to, if it does.
    pub move_to: Option<String>,
}

/// `count` orders, `per_day` a day (at most 100: each of the 50 seated
/// tables serves a lunch and a dinner), going back one day every `per_day`
/// orders from `last_day`. 3 orders in 10 have a matching booking (same
/// table, 5 minutes before the opening), 2 in 10 move to a terrace table.
/// Answers the orders and the seed bookings for the Zenchef fake.
pub fn orders(
    prefix: &str,
    count: usize,
    per_day: usize,
    last_day: NaiveDate,
) -> (Vec<OrderPlan>, Vec<Value>) {
    let per_day = per_day.clamp(1, 2 * SEATED_TABLES as usize);
    let mut plans = Vec::with_capacity(count);
    let mut bookings = Vec::new();
    for i in 0..count {
        let day = last_day - ChronoDuration::days((i / per_day) as i64);
        let j = i % per_day;
        let table = (j as i64 % SEATED_TABLES) + 1;
        let dinner = j as i64 >= SEATED_TABLES;
        let (h, m) = if dinner { (19, 30) } else { (12, 0) };
        let minutes = h * 60 + m + (table % 6) * 10;
        let opened_at = paris_winter()
            .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .expect("fixed offset")
            + ChronoDuration::minutes(minutes);
        let covers = 2 + (i % 5) as u32;
        let booking = (i % 10 < 3).then(|| {
            let id = 100_000 + i as i64;
            let at = opened_at - ChronoDuration::minutes(5);
            bookings.push(json!({
                "id": id,
                "restaurant_id": 654321,
                "reservation_type": "reservation",
                "day": day.to_string(),
                "time": at.format("%H:%M").to_string(),
                "nb_guests": covers,
                "firstname": "Camille",
                "lastname": format!("Guest {i}"),
                "status": "confirmed",
                "tables": [{"id": table, "name": table.to_string()}],
            }));
            id
        });
        let move_to =
            (i % 10 == 5 || i % 10 == 8).then(|| (SEATED_TABLES + 1 + (i as i64 % 10)).to_string());
        plans.push(OrderPlan {
            order_id: format!("O-{prefix}-{i}"),
            table: table.to_string(),
            opened_at,
            covers,
            booking,
            move_to,
        });
    }
    (plans, bookings)
}

/// A Zenchef fake configuration with the generated tables and `bookings`.
pub fn zenchef_config(bookings: Vec<Value>) -> ZenchefConfig {
    ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-bench-token".into(),
        tables: zenchef_tables(),
        bookings,
        ..Default::default()
    }
}

/// The `table.opened` of an order.
pub fn opened(b: &mut EventBuilder, o: &OrderPlan) -> Value {
    b.table_opened(&o.order_id, &o.table, o.covers, o.opened_at)
}

/// The ten events of an order's meal: `table.opened`, `order.items_sent`
/// (the bill growing by one line each time; a `table.moved` after the
/// second when the order moves), `bill.paid` by card.
pub fn meal(b: &mut EventBuilder, o: &OrderPlan) -> Vec<Value> {
    let mut out = vec![opened(b, o)];
    let sends = if o.move_to.is_some() { 7 } else { 8 };
    let mut lines: Vec<Line> = Vec::new();
    let mut table = o.table.clone();
    for k in 0..sends {
        b.set_clock(Some(
            o.opened_at + ChronoDuration::minutes(5 + 8 * k as i64),
        ));
        lines.push(Line::new(
            &format!("L{}", k + 1),
            &format!("Plat {}", k + 1),
            1 + (k % 2) as i64,
            900 + 150 * k as i64,
        ));
        let total = lines.iter().map(|l| l.total_cents).sum();
        out.push(b.items_sent(&o.order_id, &table, &lines, total));
        if k == 1
            && let Some(to) = &o.move_to
        {
            out.push(b.table_moved(&o.order_id, &table, to));
            table = to.clone();
        }
    }
    let total: i64 = lines.iter().map(|l| l.total_cents).sum();
    let tip = 200;
    let paid_at = o.opened_at + ChronoDuration::minutes(75);
    out.push(b.bill_paid(
        &o.order_id,
        &table,
        o.covers,
        &lines,
        total,
        tip,
        &[Payment::new("card", total + tip, "CB-000042")],
        paid_at,
    ));
    b.set_clock(None);
    out
}

/// Interleaves per-order event lists the way a service does (every order's
/// first event, then every order's second…) and renumbers `seq` in that
/// publish order (still increasing within each order).
pub fn interleave(per_order: Vec<Vec<Value>>, first_seq: u64) -> Vec<Value> {
    let longest = per_order.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..longest {
        for evs in &per_order {
            if let Some(e) = evs.get(k) {
                out.push(e.clone());
            }
        }
    }
    for (i, e) in out.iter_mut().enumerate() {
        e["seq"] = json!(first_seq + i as u64);
    }
    out
}

/// `event_id → (order_id, seq)`.
pub fn index(events: &[Value]) -> HashMap<String, (String, u64)> {
    events
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_string(),
                (
                    e["data"]["order_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    e["seq"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Yesterday in the restaurant's time (+01:00).
pub fn yesterday() -> NaiveDate {
    Utc::now().with_timezone(&paris_winter()).date_naive() - ChronoDuration::days(1)
}

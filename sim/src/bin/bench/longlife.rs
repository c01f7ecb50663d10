//! Part 6, long life: the agent on the store of three years of one busy
//! restaurant, against the same agent on an empty store.
//!
//! The store is made by the agent itself (`zenchef-edge self-test --store`
//! creates and migrates it with the agent's own migrations), then filled
//! through its schema with SQL: 110,000 orders (≈ 100 a day for 1,095
//! days; `--smoke`: 2,750) of three events each (`table.opened`,
//! `order.items_sent`, `bill.paid` or `order.voided`: 330,000 events),
//! their outbox rows (delivered), order rows, Zenchef Pay check records and
//! one payment in seven; 60,000 bookings in the reservation mirror
//! (`--smoke`: 1,500), of which those of today and tomorrow published, a
//! few withdrawn today and not yet confirmed; a few hundred quarantined
//! payloads and events of unknown types, over the three years. Among the
//! old orders, some that retention must keep: open, with a dead letter,
//! with a payment not final, with a payment that needs a person, needing
//! attention (sync rule 9).
//!
//! Measured, on that store and on an empty one: start → READY
//! (`sd_notify`, read on a `NOTIFY_SOCKET` the bench binds), the
//! background integrity check, the replay at the MQTT connect (the agent's
//! own count, and what the POS received), durable intake of a burst and
//! the drain of that backlog once Zenchef is back; then, on the old store
//! in the maintenance window, one retention pass: its time, what it
//! deleted, the file size before and after, and the agent's peak RSS.
//!
//! Asserted (problems, not targets): the replay sends exactly the window's
//! bookings; after retention every order that must stay is there, every
//! order older than the agent's recorded cutoff that may go is gone, and
//! so are the old quarantined payloads, events of unknown types and the
//! mirror rows of past days.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, params};
use serde_json::{Value, json};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, Line, Payment, paris_winter};
use zenchef_sim::zenchef::Fault;

use crate::common::{
    self, Bench, Prepared, StoreReader, interleave, meal, orders, table, verdict, zenchef_config,
};

/// Target: start → READY.
const READY_TARGET: Duration = Duration::from_secs(5);
/// Latency added by the Zenchef fake while draining (as part 2).
const LATENCY: Duration = Duration::from_millis(20);
/// Days of history generated.
const DAYS: i64 = 1095;
/// `store.keep_days` (the default).
const KEEP_DAYS: i64 = 90;

struct Scale {
    orders: usize,
    bookings: usize,
    rejected: usize,
    unknown: usize,
    /// Orders of the intake burst (10 events each).
    burst_orders: usize,
}

/// Why an old generated order must survive retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Open,
    Dead,
    PaymentPending,
    PaymentNeedsPerson,
    NeedsAttention,
}

struct GenOrder {
    id: String,
    /// Its newest event (box and POS clocks are the same here).
    newest: DateTime<Utc>,
    keep: Option<Keep>,
}

struct Generated {
    orders: Vec<GenOrder>,
    events: i64,
    /// Orphan quarantined payloads: (id, received).
    rejected: Vec<(i64, DateTime<Utc>)>,
    /// Events of unknown types: (event_id, received).
    unknown: Vec<(String, DateTime<Utc>)>,
    /// Bookings of the window (today, tomorrow) the POS must be shown:
    /// published, and withdrawn today but not yet confirmed.
    window_bookings: usize,
    took: Duration,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Today in the restaurant's time (+01:00, the rig's `Etc/GMT-1`).
fn today() -> NaiveDate {
    Utc::now().with_timezone(&paris_winter()).date_naive()
}

/// Creates the store with the agent's own migrations, then fills it.
fn generate(agent: &Path, path: &Path, s: &Scale) -> anyhow::Result<Generated> {
    let t0 = Instant::now();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let out = std::process::Command::new(agent)
        .args(["self-test", "--store"])
        .arg(path)
        .output()
        .context("running the agent's self-test")?;
    anyhow::ensure!(
        out.status.success(),
        "self-test failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = Connection::open(path)?;
    c.execute_batch("PRAGMA synchronous = OFF;")?;
    let tx = c.transaction()?;
    let first_day = today() - ChronoDuration::days(DAYS + 1);
    let mut b = EventBuilder::new(1);
    let mut made = Vec::with_capacity(s.orders);
    let mut events = 0i64;
    let mut unknown: Vec<(String, DateTime<Utc>)> = Vec::new();
    let lines = vec![
        Line::new("L1", "Menu du jour", 2, 1850),
        Line::new("L2", "Vin (verre)", 2, 650),
    ];
    let total: i64 = lines.iter().map(|l| l.total_cents).sum();
    // Old orders retention must keep, about a year ago.
    let keep_of = |i: usize| -> Option<Keep> {
        let base = s.orders * 2 / 3;
        match i.checked_sub(base)? {
            0..5 => Some(Keep::Open),
            5..8 => Some(Keep::Dead),
            8..11 => Some(Keep::PaymentPending),
            11..14 => Some(Keep::PaymentNeedsPerson),
            14..17 => Some(Keep::NeedsAttention),
            _ => None,
        }
    };
    {
        let mut ev = tx.prepare(
            "INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
        )?;
        let mut ob = tx.prepare(
            "INSERT INTO outbox(event_id, order_id, seq, type, state, pay_state, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'done', ?6)",
        )?;
        let mut or = tx.prepare(
            "INSERT INTO orders(order_id, table_name, covers, opened_at, state, booking_id, link,
                                total_cents, paid_cents, last_seq)
             VALUES (?1, ?2, 2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut ck = tx.prepare(
            "INSERT INTO pay_checks(order_id, version, status, total_cents, paid_cents, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut pp = tx.prepare(
            "INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body, state,
                                      attention, attention_at, received_at, updated_at)
             VALUES (?1, ?2, ?3, 0, '{}', ?4, ?5, ?6, ?7, ?7)",
        )?;
        // Events of unknown types, among the others (stored in time order,
        // as intake stores them).
        let mut ue = tx.prepare(
            "INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
             VALUES (?1, ?2, 'table.merged', NULL, ?3, '{}', 0, ?4)",
        )?;
        let unknown_every = (s.orders / s.unknown.max(1)).max(1);
        for i in 0..s.orders {
            let day = first_day + ChronoDuration::days((i as i64 * DAYS) / s.orders as i64);
            let table = (i % 50 + 1).to_string();
            let (h, m) = if i % 2 == 0 { (12, 0) } else { (19, 30) };
            let opened = paris_winter()
                .from_local_datetime(&day.and_hms_opt(h, m + (i % 20) as u32, 0).expect("time"))
                .single()
                .expect("fixed offset");
            let order = format!("L-{i}");
            let keep = keep_of(i);
            if i % unknown_every == 0 && unknown.len() < s.unknown {
                let at = opened.with_timezone(&Utc);
                let id = format!("unknown-{i}");
                ue.execute(params![id, 10_000_000 + i as i64, rfc(opened), stamp(at)])?;
                unknown.push((id, at));
                events += 1;
            }
            let voided = i % 33 == 7;
            let mut envs = vec![b.table_opened(&order, &table, 2, opened)];
            b.set_clock(Some(opened + ChronoDuration::minutes(10)));
            envs.push(b.items_sent(&order, &table, &lines, total));
            if keep != Some(Keep::Open) {
                let paid_at = opened + ChronoDuration::minutes(70);
                b.set_clock(Some(paid_at));
                envs.push(if voided {
                    b.order_voided(&order, &table, "mistake")
                } else {
                    b.bill_paid(
                        &order,
                        &table,
                        2,
                        &lines,
                        total,
                        0,
                        &[Payment::new("card", total, "CB-4242")],
                        paid_at,
                    )
                });
            }
            b.set_clock(None);
            let mut newest = Utc::now();
            let mut last_seq = 0i64;
            let n = envs.len();
            for (k, e) in envs.iter().enumerate() {
                let at = DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap_or(""))
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                newest = at;
                let seq = e["seq"].as_i64().unwrap_or(0);
                last_seq = seq;
                let id = e["event_id"].as_str().unwrap_or_default();
                let ty = e["type"].as_str().unwrap_or_default();
                ev.execute(params![
                    id,
                    seq,
                    ty,
                    order,
                    e["occurred_at"].as_str(),
                    e.to_string(),
                    stamp(at)
                ])?;
                let state = if keep == Some(Keep::Dead) && k == n - 1 {
                    "dead"
                } else {
                    "done"
                };
                ob.execute(params![id, order, seq, ty, state, stamp(at)])?;
                events += 1;
            }
            let matched = i % 10 < 3;
            let state = match keep {
                Some(Keep::Open) => "open",
                _ if voided => "voided",
                _ => "paid",
            };
            or.execute(params![
                order,
                table,
                rfc(opened),
                state,
                matched.then_some(1_000_000 + i as i64),
                if matched { "matched" } else { "walkin" },
                total,
                if state == "paid" { total } else { 0 },
                last_seq
            ])?;
            ck.execute(params![
                order,
                last_seq,
                match state {
                    "paid" => "closed",
                    s => s,
                },
                total,
                if state == "paid" { total } else { 0 },
                stamp(newest)
            ])?;
            let pay = match keep {
                Some(Keep::PaymentPending) => Some(("command_sent", None)),
                Some(Keep::PaymentNeedsPerson) => Some((
                    "settled",
                    Some("the POS recorded this payment after Zenchef Pay refunded it"),
                )),
                _ if i % 7 == 3 && state == "paid" => Some(("settled", None)),
                _ => None,
            };
            if let Some((pstate, attention)) = pay {
                pp.execute(params![
                    format!("pay_L{i}"),
                    order,
                    total,
                    pstate,
                    attention,
                    attention.map(|_| stamp(newest)),
                    stamp(newest)
                ])?;
            }
            made.push(GenOrder {
                id: order,
                newest,
                keep,
            });
        }
    }
    // Quarantined payloads: orphans over the three years; the doubt of
    // the orders needing attention (after their bill: rule 9 holds).
    let mut rejected = Vec::new();
    for k in 0..s.rejected {
        let at = Utc::now() - ChronoDuration::days(DAYS - (k as i64 * DAYS) / s.rejected as i64);
        tx.execute(
            "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len)
             VALUES (?1, 'cashpad/CP-X/events', NULL, 'not JSON: expected value at line 1', x'7b7b', 2)",
            [stamp(at)],
        )?;
        rejected.push((tx.last_insert_rowid(), at));
    }
    for o in made.iter().filter(|o| o.keep == Some(Keep::NeedsAttention)) {
        tx.execute(
            "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len, order_id, seq)
             VALUES (?1, 'cashpad/CP-X/events', NULL, 'data.total_cents: negative', x'7b7d', 2, ?2, 999999999)",
            params![stamp(o.newest), o.id],
        )?;
    }
    // The reservation mirror: every booking of three years, withdrawn
    // (and confirmed, as migration 6 finds them) once its day passed; the
    // window's published, a few withdrawn today not yet confirmed.
    let window_published = 110.min(s.bookings / 10);
    let window_unconfirmed = 10;
    {
        let mut rs = tx.prepare(
            "INSERT INTO reservations(booking_id, day, status, hash, body, confirmed_at)
             VALUES (?1, ?2, ?3, 'h', ?4, ?5)",
        )?;
        let past = s.bookings - window_published - window_unconfirmed;
        for k in 0..past {
            let day = first_day + ChronoDuration::days((k as i64 * DAYS) / past as i64);
            let status = if k % 9 == 0 { "canceled" } else { "over" };
            rs.execute(params![
                k as i64 + 1,
                day.to_string(),
                status,
                None::<String>,
                Some(stamp(Utc::now()))
            ])?;
        }
        for k in 0..window_published + window_unconfirmed {
            let day = today() + ChronoDuration::days((k % 2) as i64);
            let id = 500_000 + k as i64;
            let published = k < window_published;
            let body = published.then(|| {
                json!({"booking_id": id, "day": day.to_string(), "time": "20:00", "nb_guests": 2,
                       "status": "confirmed", "tables": ["12"], "comment": null, "allergies": null,
                       "customer": {"firstname": "Camille", "lastname": format!("Guest {k}"),
                                    "phone": null, "email": null},
                       "updated_at": "2026-11-29T15:02:11+01:00"})
                .to_string()
            });
            rs.execute(params![
                id,
                (if published { day } else { today() }).to_string(),
                if published { "confirmed" } else { "canceled" },
                body,
                None::<String>
            ])?;
        }
    }
    for (name, v) in [("received", events), ("delivered", events)] {
        tx.execute(
            "INSERT INTO counters(name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, v],
        )?;
    }
    tx.commit()?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(c);
    Ok(Generated {
        orders: made,
        events,
        rejected,
        unknown,
        window_bookings: window_published + window_unconfirmed,
        took: t0.elapsed(),
    })
}

fn rfc(t: DateTime<chrono::FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn file_bytes(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// What one run of the agent on a store measured.
#[derive(Default)]
struct Run {
    ready: Option<Duration>,
    check: Option<f64>,
    replay: Option<(usize, u64)>,
    pos_got: usize,
    intake: Option<Duration>,
    drain: Option<Duration>,
    hwm_kb: u64,
}

/// Starts a rig around `store` (Zenchef down), measures READY, the
/// background check and the replay; then a burst of `burst_orders`
/// orders (10 events each) while Zenchef is down and their drain once it
/// is back. Answers the rig (agent still running) and the figures.
async fn run_store(
    bench: &mut Bench,
    name: &str,
    store: &Path,
    s: &Scale,
) -> anyhow::Result<(Rig, Run)> {
    let (plans, bookings) = orders(name, s.burst_orders, 100, common::yesterday());
    let mut builder = EventBuilder::new(20_000_000);
    let events = interleave(
        plans.iter().map(|o| meal(&mut builder, o)).collect(),
        20_000_000,
    );
    let mut opts = RigOptions::new(zenchef_config(bookings));
    opts.store_path = Some(store.to_path_buf());
    // No retention now: outside the window, and no check before this run
    // is over (the first check comes after min(interval, 120 s); the
    // generated store's newest event is days old, so a check would find the
    // POS quiet, `store.quiet_min` being at most a day).
    opts.config_head = "config_version = 2\n".into();
    opts.store_config = "retention_interval_s = 86400\n".into();
    opts.update_config = format!("window = \"{}\"\n", window(false));
    let dir = bench.dir(name);
    std::fs::create_dir_all(&dir)?;
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = tokio::net::UnixDatagram::bind(&sock_path)?;
    opts.agent_env = vec![("NOTIFY_SOCKET".into(), sock_path.display().to_string())];
    let mut rig = Rig::start(opts, &bench.agent, &dir.join("rig")).await?;
    rig.zenchef.set_fault(Fault::Down).await?;
    let mut run = Run::default();
    // Read the socket for as long as the agent runs, as systemd does: a
    // full socket would block the agent's sd_notify (its watchdog pings).
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Instant>();
    let reader_task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let mut ready = Some(ready_tx);
        while let Ok(len) = sock.recv(&mut buf).await {
            if String::from_utf8_lossy(&buf[..len])
                .lines()
                .any(|l| l == "READY=1")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let t0 = Instant::now();
    rig.spawn_agent()?;
    match tokio::time::timeout(Duration::from_secs(120), ready_rx).await {
        Ok(Ok(at)) => run.ready = Some(at - t0),
        _ => bench.problem(format!(
            "long life ({name}): no READY within 120 s\n{}",
            rig.log_tail(20)
        )),
    }
    // Kept reading while the rig lives (aborted with the runtime).
    std::mem::forget(reader_task);
    let pid = common::agent_pid(&rig)?;
    // The replay at the connect (Zenchef is down: nothing else publishes
    // reservations), and the integrity check.
    let replay = zenchef_sim::util::wait_for("the replay", Duration::from_secs(60), || {
        rig.log().lines().find_map(|l| {
            let rest = l.split("replayed ").nth(1)?;
            let count: usize = rest.split(' ').next()?.parse().ok()?;
            let ms: u64 = rest.split(" in ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((count, ms))
        })
    })
    .await;
    match replay {
        Ok(r) => run.replay = Some(r),
        Err(e) => bench.problem(format!("long life ({name}): {e}\n{}", rig.log_tail(20))),
    }
    let check =
        zenchef_sim::util::wait_for("the integrity check", Duration::from_secs(120), || {
            rig.log().lines().find_map(|l| {
                let rest = l.split("store integrity check passed in ").nth(1)?;
                rest.split(' ').next()?.parse::<f64>().ok()
            })
        })
        .await;
    match check {
        Ok(c) => run.check = Some(c),
        Err(e) => bench.problem(format!("long life ({name}): {e}\n{}", rig.log_tail(20))),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.pos_got = rig
        .pos
        .state()
        .reservation_history
        .values()
        .map(Vec::len)
        .sum();
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await?;
    rig.pos.publish_floorplan(&common::floorplan()).await?;

    let (intake, drain) = burst(&rig, store, &events).await?;
    run.intake = Some(intake);
    run.drain = Some(drain);
    run.hwm_kb = common::proc_kb(pid, "VmHWM").unwrap_or(0);
    Ok((rig, run))
}

/// Intake of `events` in a burst while Zenchef is down, then their drain
/// once it is back (with [`LATENCY`] on every answer): the two times.
async fn burst(rig: &Rig, store: &Path, events: &[Value]) -> anyhow::Result<(Duration, Duration)> {
    let n = events.len() as i64;
    rig.zenchef.set_fault(Fault::Down).await?;
    let reader = StoreReader::open(store).await?;
    let received0 = reader.counter("received");
    let delivered0 = reader.counter("delivered");
    let t = Instant::now();
    common::publish_burst(&rig.pos, Arc::new(Prepared::new(events))).await?;
    reader
        .wait_counter(
            "received",
            received0 + n,
            Duration::from_millis(10),
            Duration::from_secs(300),
        )
        .await?;
    let intake = t.elapsed();
    rig.zenchef.set_latency(LATENCY);
    let t = Instant::now();
    rig.zenchef.set_fault(Fault::None).await?;
    reader
        .wait_counter(
            "delivered",
            delivered0 + n,
            Duration::from_millis(20),
            Duration::from_secs(600),
        )
        .await?;
    Ok((intake, t.elapsed()))
}

/// A maintenance window (restaurant time, +01:00) holding now, or not.
fn window(inside: bool) -> String {
    let now = Utc::now().with_timezone(&paris_winter());
    let m = (now.time().hour_min() + if inside { 1440 - 60 } else { 120 }) % 1440;
    let e = (m + if inside { 120 } else { 60 }) % 1440;
    format!("{:02}:{:02}-{:02}:{:02}", m / 60, m % 60, e / 60, e % 60)
}

trait HourMin {
    fn hour_min(&self) -> u32;
}

impl HourMin for chrono::NaiveTime {
    fn hour_min(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// Runs part 6.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let s = if bench.smoke {
        Scale {
            orders: 2_750,
            bookings: 1_500,
            rejected: 60,
            unknown: 20,
            burst_orders: 100,
        }
    } else {
        Scale {
            orders: 110_000,
            bookings: 60_000,
            rejected: 300,
            unknown: 100,
            burst_orders: 1_000,
        }
    };
    println!(
        "\n== 6. long life ({} orders / {} bookings over {DAYS} days in the store, against an empty store)",
        s.orders, s.bookings
    );
    let load0 = common::load_avgs();
    let old_store = bench.dir("longlife-old").join("agent.db");
    let g = generate(&bench.agent, &old_store, &s)?;
    let size_before = file_bytes(&old_store);
    println!(
        "  generated {} events of {} orders, {} bookings in the mirror: {} in {:.1} s",
        g.events,
        g.orders.len(),
        s.bookings,
        mib(size_before),
        g.took.as_secs_f64()
    );

    let (mut old_rig, old) = run_store(bench, "longlife-old", &old_store, &s).await?;
    old_rig.stop_agent(Duration::from_secs(30))?;
    let empty_store = bench.dir("longlife-empty").join("agent.db");
    let (mut empty_rig, empty) = run_store(bench, "longlife-empty", &empty_store, &s).await?;
    empty_rig.stop_agent(Duration::from_secs(30))?;
    drop(empty_rig);

    // Retention: the same old store, in the maintenance window.
    old_rig.opts.update_config = format!("window = \"{}\"\n", window(true));
    old_rig.opts.store_config = "retention_interval_s = 1\n".into();
    old_rig.opts.agent_env.clear();
    let mirror_before = s.bookings;
    let t = Instant::now();
    old_rig.spawn_agent()?;
    let pid = common::agent_pid(&old_rig)?;
    let record = zenchef_sim::util::wait_for(
        "a complete retention pass",
        Duration::from_secs(if bench.smoke { 300 } else { 3600 }),
        || {
            let (code, out, _) = old_rig.cli(&["status", "--json"]).ok()?;
            let v: Value = serde_json::from_str(&out).ok()?;
            let r = v["store_usage"]["retention"].clone();
            (code == 0 && r["last_complete"] == json!(true)).then_some(v)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", old_rig.log_tail(30)))?;
    let pass = t.elapsed();
    // The mirror is pruned by the poller, 500 rows a successful poll.
    let pruned = zenchef_sim::util::wait_for(
        "the mirror pruned",
        Duration::from_secs(if bench.smoke { 120 } else { 900 }),
        || {
            let past = count(
                &old_store,
                &format!(
                    "SELECT COUNT(*) FROM reservations WHERE day < '{}'",
                    today()
                ),
            );
            (past == 0).then_some(())
        },
    )
    .await;
    if let Err(e) = pruned {
        bench.problem(format!("long life: {e}"));
    }
    let hwm_retention = common::proc_kb(pid, "VmHWM").unwrap_or(0);
    let (_, status_text, _) = old_rig.cli(&["status"])?;
    old_rig.stop_agent(Duration::from_secs(30))?;
    let size_after = file_bytes(&old_store);
    // The steady state: the same box once retention keeps 90 days.
    old_rig.opts.update_config = format!("window = \"{}\"\n", window(false));
    old_rig.spawn_agent()?;
    old_rig
        .pos
        .wait_until(Duration::from_secs(30), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await?;
    // Other days than the first burst's, with bookings of their own: the
    // same work (the same matches and walk-ins, a day's bookings read at
    // each match) on the store as retention leaves it.
    let last_day = common::yesterday() - ChronoDuration::days(20);
    let (mut plans, bookings) = orders("steady", s.burst_orders, 100, last_day);
    for mut b in bookings {
        b["id"] = json!(b["id"].as_i64().unwrap_or(0) + 1_000_000);
        old_rig.zenchef.add_booking(b);
    }
    for p in &mut plans {
        p.booking = p.booking.map(|id| id + 1_000_000);
    }
    let mut builder = EventBuilder::new(30_000_000);
    let steady_events = interleave(
        plans.iter().map(|o| meal(&mut builder, o)).collect(),
        30_000_000,
    );
    let (steady_intake, steady_drain) = burst(&old_rig, &old_store, &steady_events).await?;
    old_rig.stop_agent(Duration::from_secs(30))?;
    let usage = &record["store_usage"];
    let cutoff = usage["retention"]["last_cutoff"]
        .as_str()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    let deleted = &usage["retention"]["total_deleted"];

    // What must have been kept, and deleted.
    let c = Connection::open_with_flags(&old_store, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let left: HashSet<String> = c
        .prepare("SELECT DISTINCT order_id FROM events WHERE order_id LIKE 'L-%'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut wrong_kept = 0usize;
    let mut wrong_gone = Vec::new();
    let mut kept_old = 0usize;
    match cutoff {
        None => bench.problem("long life: no cutoff recorded by the retention pass"),
        Some(cut) => {
            // The reference is the last stored event's clocks (the
            // burst's oldest orders are ten days old): a cutoff up to that
            // much earlier than now − 90 days is right.
            let lo = Utc::now() - ChronoDuration::days(KEEP_DAYS + 12);
            let hi = Utc::now() - ChronoDuration::days(KEEP_DAYS);
            if cut < lo || cut > hi {
                bench.problem(format!(
                    "long life: cutoff {cut} is not about {KEEP_DAYS} days ago"
                ));
            }
            // A pass walks the rows in the order they were stored and
            // stops at the first one not older than the cutoff (the agent
            // relies on rows coming in time order, as they do from a POS).
            // This generator writes a day's dinner before its lunch, so an
            // order of the cutoff's day stored after that first young row
            // is rightly left for the next pass: only orders stored before
            // it must be gone.
            let cut_text = cut.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let walk_end: i64 = c
                .query_row(
                    "SELECT MIN(rowid) FROM events WHERE order_id LIKE 'L-%' AND received_at >= ?1",
                    [&cut_text],
                    |r| r.get::<_, Option<i64>>(0),
                )?
                .unwrap_or(i64::MAX);
            let first_rowid: std::collections::HashMap<String, i64> = c
                .prepare(
                    "SELECT order_id, MIN(rowid) FROM events WHERE order_id LIKE 'L-%' \
                     GROUP BY order_id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for o in &g.orders {
                let here = left.contains(&o.id);
                let walked = first_rowid.get(&o.id).is_some_and(|r| *r < walk_end);
                match (o.keep, o.newest < cut, here) {
                    (Some(k), _, false) => wrong_gone.push(format!("{} ({k:?})", o.id)),
                    (Some(_), _, true) => kept_old += 1,
                    (None, true, true) if walked => wrong_kept += 1,
                    (None, false, false) => wrong_gone.push(format!("{} (young)", o.id)),
                    _ => {}
                }
            }
            let rej_left: HashSet<i64> = c
                .prepare("SELECT id FROM rejected WHERE order_id IS NULL")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let rej_wrong = g
                .rejected
                .iter()
                .filter(|(id, at)| (*at < cut) == rej_left.contains(id))
                .count();
            let unk_left: HashSet<String> = c
                .prepare("SELECT event_id FROM events WHERE order_id IS NULL")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let unk_wrong = g
                .unknown
                .iter()
                .filter(|(id, at)| (*at < cut) == unk_left.contains(id))
                .count();
            if rej_wrong + unk_wrong > 0 {
                bench.problem(format!(
                    "long life: {rej_wrong} quarantined payload(s) and {unk_wrong} unknown-type \
                     event(s) on the wrong side of the cutoff"
                ));
            }
        }
    }
    if !wrong_gone.is_empty() {
        bench.problem(format!(
            "long life: {} order(s) deleted that had to stay, e.g. {:?}",
            wrong_gone.len(),
            &wrong_gone[..wrong_gone.len().min(5)]
        ));
    }
    if wrong_kept > 0 {
        bench.problem(format!(
            "long life: {wrong_kept} finished order(s) older than the cutoff were kept"
        ));
    }
    let attention_kept = c.query_row(
        "SELECT COUNT(*) FROM rejected WHERE order_id LIKE 'L-%'",
        [],
        |r| r.get::<_, i64>(0),
    )?;
    if attention_kept != 3 {
        bench.problem(format!(
            "long life: {attention_kept} quarantined payload(s) of orders needing attention kept, \
             expected 3"
        ));
    }
    let mirror_after = c.query_row("SELECT COUNT(*) FROM reservations", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let events_after = c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))?;
    drop(c);
    let events_total = g.events + (s.burst_orders * 10) as i64 * 2;
    if let Some((count, _)) = old.replay
        && count != g.window_bookings
    {
        bench.problem(format!(
            "long life: the replay sent {count} reservation(s), expected the window's {}",
            g.window_bookings
        ));
    }
    if old.pos_got != g.window_bookings {
        bench.problem(format!(
            "long life: the POS received {} reservation message(s) at the connect, expected {}",
            old.pos_got, g.window_bookings
        ));
    }

    // Figures.
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or("-".into())
    };
    let ratio = |a: Option<Duration>, b: Option<Duration>| -> Option<f64> {
        Some(a?.as_secs_f64() / b?.as_secs_f64())
    };
    let within = |r: Option<f64>| r.map(|r| r <= 1.2);
    let ready_ok = old.ready.map(|r| r <= READY_TARGET);
    let intake_r = ratio(old.intake, empty.intake);
    let drain_r = ratio(old.drain, empty.drain);
    let steady_intake_r = ratio(Some(steady_intake), empty.intake);
    let steady_drain_r = ratio(Some(steady_drain), empty.drain);
    let kept_share = events_after as f64 / events_total.max(1) as f64;
    let size_bound = (size_before as f64 * kept_share * 1.5) as u64 + (4 << 20);
    let burst = s.burst_orders * 10;
    let replay_s = |r: &Run| {
        r.replay
            .map(|(n, ms)| format!("{n} in {ms} ms (POS got {})", r.pos_got))
            .unwrap_or("-".into())
    };
    let hwm = old.hwm_kb.max(hwm_retention);
    table(
        &["measure", "3-year store", "empty store", "target", ""],
        &[
            vec![
                "start → READY".into(),
                secs(old.ready),
                secs(empty.ready),
                format!("≤ {} s", READY_TARGET.as_secs()),
                verdict(ready_ok),
            ],
            vec![
                "  integrity check after READY".into(),
                old.check.map(|c| format!("{c:.1} s")).unwrap_or("-".into()),
                empty
                    .check
                    .map(|c| format!("{c:.1} s"))
                    .unwrap_or("-".into()),
                String::new(),
                String::new(),
            ],
            vec![
                "reconnect replay".into(),
                replay_s(&old),
                replay_s(&empty),
                format!("= the window's {} bookings", g.window_bookings),
                verdict(old.replay.map(|(n, _)| n <= g.window_bookings)),
            ],
            vec![
                format!("intake of {burst} events (burst)"),
                format!(
                    "{} ({:.0} /s)",
                    secs(old.intake),
                    old.intake
                        .map(|d| burst as f64 / d.as_secs_f64())
                        .unwrap_or(0.0)
                ),
                format!(
                    "{} ({:.0} /s)",
                    secs(empty.intake),
                    empty
                        .intake
                        .map(|d| burst as f64 / d.as_secs_f64())
                        .unwrap_or(0.0)
                ),
                "within 20 %".into(),
                verdict(within(intake_r)),
            ],
            vec![
                format!("drain of those {burst} events"),
                secs(old.drain),
                secs(empty.drain),
                "within 20 %".into(),
                verdict(within(drain_r)),
            ],
            vec![
                format!("  after retention (90 days kept): intake of {burst}"),
                format!(
                    "{} ({:.0} /s)",
                    secs(Some(steady_intake)),
                    burst as f64 / steady_intake.as_secs_f64()
                ),
                secs(empty.intake),
                "within 20 %".into(),
                verdict(within(steady_intake_r)),
            ],
            vec![
                format!("  after retention: drain of {burst}"),
                secs(Some(steady_drain)),
                secs(empty.drain),
                "within 20 %".into(),
                verdict(within(steady_drain_r)),
            ],
            vec![
                "peak RSS (VmHWM)".into(),
                common::mib(hwm),
                common::mib(empty.hwm_kb),
                "≤ 32 MiB".into(),
                verdict(Some(hwm <= 32 * 1024)),
            ],
        ],
    );
    println!();
    table(
        &[
            "retention (3-year store, in the window)",
            "value",
            "target",
            "",
        ],
        &[
            vec![
                "pass (first check → complete)".into(),
                format!("{:.1} s", pass.as_secs_f64()),
                String::new(),
                String::new(),
            ],
            vec![
                "deleted: orders / events / outbox / payments / quarantined".into(),
                format!(
                    "{} / {} / {} / {} / {}",
                    deleted["orders"],
                    deleted["events"],
                    deleted["outbox"],
                    deleted["payments"],
                    deleted["rejected"]
                ),
                String::new(),
                String::new(),
            ],
            vec![
                "kept: events (of which old orders that must stay)".into(),
                format!("{events_after} ({kept_old} orders)"),
                String::new(),
                String::new(),
            ],
            vec![
                "mirror rows before → after".into(),
                format!("{mirror_before} → {mirror_after}"),
                format!("the window's {}", g.window_bookings),
                verdict(Some(mirror_after as usize == g.window_bookings)),
            ],
            vec![
                "file + WAL before → after".into(),
                format!("{} → {}", mib(size_before), mib(size_after)),
                format!("≤ {} (kept share × 1.5 + 4 MiB)", mib(size_bound)),
                verdict(Some(size_after <= size_bound)),
            ],
            vec![
                "oldest event kept".into(),
                usage["oldest_event_at"].as_str().unwrap_or("-").to_string(),
                String::new(),
                String::new(),
            ],
        ],
    );
    println!("  status after retention:");
    for l in status_text.lines().filter(|l| l.contains("MiB")) {
        println!("    {}", l.trim());
    }
    println!(
        "  load average before: {load0}; after: {}",
        common::load_avgs()
    );
    bench.figure(
        "longlife",
        format!("start → READY, {} events in the store", g.events),
        secs(old.ready),
        format!("≤ {} s", READY_TARGET.as_secs()),
        ready_ok,
    );
    bench.figure(
        "longlife",
        "reconnect replay (reservations sent)",
        replay_s(&old),
        format!("= {} (the window)", g.window_bookings),
        old.replay.map(|(n, _)| n <= g.window_bookings),
    );
    bench.figure(
        "longlife",
        format!("intake of {burst} events vs empty store"),
        format!("{} vs {}", secs(old.intake), secs(empty.intake)),
        "within 20 %",
        within(intake_r),
    );
    bench.figure(
        "longlife",
        format!("drain of {burst} events vs empty store"),
        format!("{} vs {}", secs(old.drain), secs(empty.drain)),
        "within 20 %",
        within(drain_r),
    );
    bench.figure(
        "longlife",
        format!("after retention: intake / drain of {burst} vs empty store"),
        format!(
            "{} / {} vs {} / {}",
            secs(Some(steady_intake)),
            secs(Some(steady_drain)),
            secs(empty.intake),
            secs(empty.drain)
        ),
        "within 20 %",
        within(steady_intake_r)
            .zip(within(steady_drain_r))
            .map(|(a, b)| a && b),
    );
    bench.figure(
        "longlife",
        "file + WAL before → after retention",
        format!("{} → {}", mib(size_before), mib(size_after)),
        format!("≤ {}", mib(size_bound)),
        Some(size_after <= size_bound),
    );
    bench.figure(
        "longlife",
        "retention pass",
        format!("{:.1} s", pass.as_secs_f64()),
        "",
        None,
    );
    bench.figure(
        "longlife",
        "peak RSS on the 3-year store",
        common::mib(hwm),
        "≤ 32 MiB",
        Some(hwm <= 32 * 1024),
    );
    Ok(())
}

fn count(path: &Path, sql: &str) -> i64 {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.query_row(sql, [], |r| r.get(0))
        })
        .unwrap_or(-1)
}

//! Shared parts of the delivery-guarantee suites: a seeded workload of
//! many interleaved orders, the checks of docs/protocol/sync-rules.md "Delivery
//! guarantees" against the Zenchef fake and the SQLite file, and small rig
//! helpers.
//!
//! Everything is checked against real parts: the fake's record of what it
//! received, the store read read-only with rusqlite, the agent's own
//! `status --json`.

#![allow(dead_code)]

pub mod lan;
pub mod money;
pub mod unit;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use serde_json::{Value, json};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pos::{EventBuilder, Line, Payment, paris_winter};
use zenchef_sim::zenchef::{CallRecord, ZenchefConfig};

/// The agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

/// Heavy tests of one binary run one at a time (2 cores, real processes,
/// timings measured): each takes this lock for its whole duration (tokio's
/// mutex: held across awaits, and not poisoned by a failed test).
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes [`HEAVY`].
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// `ZE_FULL=1` runs the long versions (real-time outages of minutes).
pub fn full() -> bool {
    std::env::var("ZE_FULL").is_ok_and(|v| v == "1")
}

/// Running in CI (`CI=true`): a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether a test that needs `what` runs: true when it is `present`;
/// otherwise false with a `SKIPPED:` line outside CI, a panic in CI (a
/// missing tool there is a defect of `.ci/run`).
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{what} is missing in CI: .ci/run must install it");
    }
    eprintln!("SKIPPED: {what} is not installed on this machine (CI installs it)");
    false
}

/// Prints a `FIGURES` line straight to the process's stderr, past the test
/// harness's output capture, so the measured figures show in the CI log
/// also when the test passes.
pub fn figures(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "FIGURES {line}");
}

/// A small deterministic PRNG (splitmix64): the same seed gives the same
/// workload and the same kill schedule on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
    /// True with probability `p_percent` %.
    pub fn chance(&mut self, p_percent: u64) -> bool {
        self.range(0, 100) < p_percent
    }
}

/// The seed of a seeded test: `ZE_SEED` if set, else from the clock. The
/// test prints it first, so a failure's output shows how to replay it.
pub fn seed() -> u64 {
    match std::env::var("ZE_SEED") {
        Ok(s) => s.parse().expect("ZE_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// How one order of the workload ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `bill.paid`: Zenchef gets `over` and the ticket.
    Paid,
    /// `order.voided`: nothing more in Zenchef.
    Voided,
}

/// One order of the workload and what Zenchef must see for it.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    /// POS order id.
    pub order_id: String,
    /// Table it opens on.
    pub table: String,
    /// The seeded booking it must match, or `None` (a walk-in).
    pub booking: Option<i64>,
    /// How it ends.
    pub end: End,
    /// Its events' ids in seq order.
    pub event_ids: Vec<String>,
    /// Bill total, cents.
    pub total_cents: i64,
}

/// A seeded service: interleaved orders, their events and the bookings
/// some of them match.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The restaurant day (the orders' `opened_at`), a day the reservation
    /// poller does not look at, so the POS is not flooded with reservations.
    pub day: NaiveDate,
    /// Envelopes in publishing (= seq) order.
    pub events: Vec<Value>,
    /// The orders.
    pub orders: Vec<OrderSpec>,
    /// Seed bookings for the Zenchef fake.
    pub bookings: Vec<Value>,
    /// Zenchef tables `(id, name, room)`.
    pub tables: Vec<(i64, String, String)>,
    /// event_id → (order_id, seq).
    pub index: HashMap<String, (String, u64)>,
}

/// Walk-in tables `W1..W40`; reserved tables `R1..R100`.
const WALKIN_TABLES: u64 = 40;
const RESERVED_TABLES: u64 = 100;

impl Workload {
    /// `orders` orders of exactly `events_per_order` events each (≥ 3:
    /// `table.opened`, items, …, the end), about one in five matching a
    /// seeded reservation, one in ten voided, `parallel` orders open at a
    /// time, events of different orders interleaved at random.
    ///
    /// Matching is unambiguous: a reserved table carries one booking per
    /// order that uses it, and two orders on the same reserved table open
    /// hours apart (`opened_at` advances 20 s per order).
    pub fn generate(
        seed: u64,
        orders: usize,
        events_per_order: usize,
        parallel: usize,
    ) -> Workload {
        assert!(events_per_order >= 3);
        let mut rng = Rng::new(seed);
        let day = chrono::Utc::now().date_naive() - chrono::Duration::days(40);
        let base: DateTime<FixedOffset> = paris_winter()
            .from_local_datetime(&day.and_hms_opt(10, 0, 0).unwrap())
            .unwrap();
        let mut tables: Vec<(i64, String, String)> = Vec::new();
        for i in 1..=WALKIN_TABLES {
            tables.push((i as i64, format!("W{i}"), "Salle".into()));
        }
        for i in 1..=RESERVED_TABLES {
            tables.push((1000 + i as i64, format!("R{i}"), "Terrasse".into()));
        }
        let mut specs = Vec::with_capacity(orders);
        let mut bookings = Vec::new();
        let mut reserved_used = 0u64;
        for i in 0..orders {
            let opened_at = base + chrono::Duration::seconds(20 * i as i64);
            let matched = i % 5 == 0;
            let (table, booking) = if matched {
                let t = format!("R{}", reserved_used % RESERVED_TABLES + 1);
                reserved_used += 1;
                let id = 500_000 + i as i64;
                bookings.push(json!({
                    "id": id,
                    "day": day.format("%Y-%m-%d").to_string(),
                    "time": opened_at.format("%H:%M").to_string(),
                    "nb_guests": 2,
                    "firstname": "Guest", "lastname": format!("N{i}"),
                    "status": "confirmed",
                    "tables": [{"id": 0, "name": t}],
                }));
                (t, Some(id))
            } else {
                (format!("W{}", rng.range(1, WALKIN_TABLES + 1)), None)
            };
            specs.push((
                OrderSpec {
                    order_id: format!("O-{i:05}"),
                    table,
                    booking,
                    end: if rng.chance(10) {
                        End::Voided
                    } else {
                        End::Paid
                    },
                    event_ids: Vec::new(),
                    total_cents: 0,
                },
                opened_at,
            ));
        }
        // Interleave: a pool of open orders, each step one event of one of them.
        let mut eb = EventBuilder::new(1);
        let mut events = Vec::with_capacity(orders * events_per_order);
        let mut progress: Vec<usize> = vec![0; orders];
        let mut lines: Vec<Vec<Line>> = vec![Vec::new(); orders];
        let mut pool: Vec<usize> = Vec::new();
        let mut next_order = 0usize;
        let mut out_specs: Vec<OrderSpec> = specs.iter().map(|(s, _)| s.clone()).collect();
        while next_order < orders || !pool.is_empty() {
            while pool.len() < parallel && next_order < orders {
                pool.push(next_order);
                next_order += 1;
            }
            let pick = rng.range(0, pool.len() as u64) as usize;
            let o = pool[pick];
            let (spec, opened_at) = &specs[o];
            let step = progress[o];
            let at = *opened_at + chrono::Duration::minutes(step as i64);
            eb.set_clock(Some(at));
            let id = &spec.order_id;
            let ev = if step == 0 {
                eb.table_opened(id, &spec.table, 2 + (o % 4) as u32, *opened_at)
            } else if step == events_per_order - 1 {
                let total: i64 = lines[o].iter().map(|l| l.total_cents).sum();
                out_specs[o].total_cents = total;
                match spec.end {
                    End::Paid => eb.bill_paid(
                        id,
                        &spec.table,
                        2,
                        &lines[o],
                        total,
                        150,
                        &[Payment::new("card", total + 150, &format!("CB-{o}"))],
                        at,
                    ),
                    End::Voided => eb.order_voided(id, &spec.table, "test"),
                }
            } else if step == events_per_order - 2 && events_per_order > 3 {
                eb.payment_recorded(id, 100, 0, "cash", &format!("C-{o}"))
            } else {
                let n = lines[o].len() + 1;
                lines[o].push(Line::new(
                    &format!("L{n}"),
                    &format!("Plat {n}"),
                    1 + (n as i64 % 3),
                    1250 + 10 * n as i64,
                ));
                let total: i64 = lines[o].iter().map(|l| l.total_cents).sum();
                eb.items_sent(id, &spec.table, &lines[o], total)
            };
            out_specs[o]
                .event_ids
                .push(ev["event_id"].as_str().unwrap().to_string());
            events.push(ev);
            progress[o] += 1;
            if progress[o] == events_per_order {
                pool.swap_remove(pick);
            }
        }
        let index = events
            .iter()
            .map(|e| {
                (
                    e["event_id"].as_str().unwrap().to_string(),
                    (
                        e["data"]["order_id"].as_str().unwrap().to_string(),
                        e["seq"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        Workload {
            day,
            events,
            orders: out_specs,
            bookings,
            tables,
            index,
        }
    }

    /// The Zenchef fake's configuration for this workload.
    pub fn zenchef_config(&self) -> ZenchefConfig {
        ZenchefConfig {
            restaurant_id: "654321".into(),
            token: "zc-token-s3cret".into(),
            tables: self.tables.clone(),
            bookings: self.bookings.clone(),
            ..Default::default()
        }
    }

    /// The POS floor plan (same names as Zenchef).
    pub fn floorplan(&self) -> Value {
        json!({"tables": self.tables.iter().map(|(_, n, r)| json!({"name": n, "room": r, "seats": 4})).collect::<Vec<_>>(),
               "updated_at": "2026-01-01T10:00:00+01:00"})
    }

    /// Number of events that end in a Zenchef call (opened + paid).
    pub fn effectful_orders(&self) -> usize {
        self.orders.len()
    }
}

/// The agent's log without terminal colours (field values follow their
/// names directly: `session_present=true`).
pub fn plain_log(rig: &Rig) -> String {
    let log = rig.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts the simulators for `opts` and the agent, and waits until the
/// agent's MQTT session is up (its retained status is online).
pub async fn start_rig(opts: RigOptions, dir: &Path) -> Rig {
    let mut rig = Rig::start(opts, Path::new(AGENT), dir)
        .await
        .expect("simulators start");
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    rig
}

/// Waits until the agent announced itself online on the POS broker.
pub async fn wait_online(rig: &Rig) {
    rig.pos
        .wait_until(Duration::from_secs(30), |s| {
            s.status
                .as_ref()
                .is_some_and(|v| v["online"] == json!(true))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(40)));
}

/// What the store file holds, read with rusqlite read-only (as a technician
/// would with `sqlite3 -readonly`).
#[derive(Debug, Default, Clone)]
pub struct StoreView {
    /// Every stored event id.
    pub events: BTreeSet<String>,
    /// Outbox rows by state.
    pub states: BTreeMap<String, i64>,
    /// `counters` table.
    pub counters: BTreeMap<String, i64>,
    /// Rows of `rejected`: (event_id, reason, payload_len).
    pub rejected: Vec<(Option<String>, String, i64)>,
}

impl StoreView {
    /// Reads the file; `None` while it cannot be read (e.g. not yet created).
    pub fn read(path: &Path) -> Option<StoreView> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        conn.busy_timeout(Duration::from_secs(5)).ok()?;
        let mut v = StoreView::default();
        let mut st = conn.prepare("SELECT event_id FROM events").ok()?;
        v.events = st
            .query_map([], |r| r.get::<_, String>(0))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        let mut st = conn
            .prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .ok()?;
        v.states = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        let mut st = conn.prepare("SELECT name, value FROM counters").ok()?;
        v.counters = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        let mut st = conn
            .prepare("SELECT event_id, reason, payload_len FROM rejected ORDER BY id")
            .ok()?;
        v.rejected = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        Some(v)
    }

    /// Outbox rows in `state`.
    pub fn state(&self, state: &str) -> i64 {
        self.states.get(state).copied().unwrap_or(0)
    }

    /// A counter.
    pub fn counter(&self, name: &str) -> i64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// Cheap progress figures of the store file: (events stored, outbox rows
/// queued, outbox rows done). `None` while unreadable.
pub fn store_counts(path: &Path) -> Option<(i64, i64, i64)> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM events),
                (SELECT COUNT(*) FROM outbox WHERE state = 'queued'),
                (SELECT COUNT(*) FROM outbox WHERE state = 'done')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

/// Waits until the store holds every event of `w` and none is left queued.
pub async fn wait_drained(rig: &Rig, w: &Workload, timeout: Duration) -> StoreView {
    let deadline = tokio::time::Instant::now() + timeout;
    let want = w.events.len() as i64;
    loop {
        if let Some((stored, queued, _)) = store_counts(&rig.store_path())
            && stored >= want
            && queued == 0
            && let Some(v) = StoreView::read(&rig.store_path())
        {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            let v = StoreView::read(&rig.store_path()).unwrap_or_default();
            panic!(
                "not drained after {timeout:?}: {} of {want} events stored, outbox {:?}\n{}",
                v.events.len(),
                v.states,
                rig.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The checks of "Delivery guarantees" for a finished workload:
/// - every event is in the store and its outbox row is done (none dead);
/// - every Zenchef effect happened exactly once: one walk-in per walk-in
///   order, the matched booking (and only it) seated then over, one ticket
///   per paid order on the right booking, no status repeated or reversed;
/// - per order, writes reached the fake in `seq` order (also failed tries
///   and idempotent replays: a later event never went first).
///
/// Answers the number of idempotent replays the fake suppressed.
pub fn check_guarantees(rig: &Rig, w: &Workload, view: &StoreView) -> u64 {
    let missing: Vec<&String> = w
        .index
        .keys()
        .filter(|e| !view.events.contains(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged event(s) missing from the store, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(view.state("dead"), 0, "dead letters: {:?}", view.states);
    assert_eq!(view.state("queued"), 0, "still queued: {:?}", view.states);
    assert_eq!(
        view.state("done") as usize,
        w.events.len(),
        "every event's outbox row done"
    );

    let fake = &rig.zenchef;
    let calls = fake.calls();
    check_seq_order(&calls, &w.index);

    // Walk-ins: exactly one per walk-in order, on its table.
    let walkins = fake.walkins();
    let walkin_orders: Vec<&OrderSpec> = w.orders.iter().filter(|o| o.booking.is_none()).collect();
    assert_eq!(
        walkins.len(),
        walkin_orders.len(),
        "one walk-in per walk-in order"
    );
    // Map walk-in booking → order through the successful creation call's key.
    let mut booking_of: HashMap<String, i64> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.method == "POST" && c.status == 201)
    {
        let key = c.publisher_model_id.clone().unwrap_or_default();
        let ev = key.split(':').next().unwrap_or_default();
        let (order, _) = w
            .index
            .get(ev)
            .unwrap_or_else(|| panic!("walk-in created with unknown key {key}"));
        let id = c.response["data"]["id"].as_i64().unwrap();
        if let Some(prev) = booking_of.insert(order.clone(), id) {
            assert_eq!(prev, id, "order {order} got two walk-ins");
        }
    }
    for o in &w.orders {
        let booking = match o.booking {
            Some(b) => b,
            None => *booking_of
                .get(&o.order_id)
                .unwrap_or_else(|| panic!("no walk-in for order {}", o.order_id)),
        };
        let want: Vec<String> = match o.end {
            End::Paid => vec!["seated".into(), "over".into()],
            End::Voided => vec!["seated".into()],
        };
        assert_eq!(
            fake.status_history(booking),
            want,
            "status history of booking {booking} (order {})",
            o.order_id
        );
    }
    // Tickets: one per paid order, on its booking, with its total.
    let tickets = fake.tickets();
    let paid: Vec<&OrderSpec> = w.orders.iter().filter(|o| o.end == End::Paid).collect();
    assert_eq!(tickets.len(), paid.len(), "one ticket per paid order");
    for o in paid {
        let (b, body) = tickets
            .get(&o.order_id)
            .unwrap_or_else(|| panic!("no ticket for {}", o.order_id));
        let want = o.booking.unwrap_or_else(|| booking_of[&o.order_id]);
        assert_eq!(*b, want, "ticket {} on its booking", o.order_id);
        assert_eq!(body["total_cents"], json!(o.total_cents));
    }
    // Seeded bookings that no order matched were never touched.
    let matched: BTreeSet<i64> = w.orders.iter().filter_map(|o| o.booking).collect();
    for b in &w.bookings {
        let id = b["id"].as_i64().unwrap();
        if !matched.contains(&id) {
            assert!(fake.status_history(id).is_empty(), "booking {id} touched");
        }
    }
    fake.duplicates_suppressed()
}

/// Per order, every write that reached the fake (answered or not) carries a
/// `seq` no lower than the previous one of that order.
pub fn check_seq_order(calls: &[CallRecord], index: &HashMap<String, (String, u64)>) {
    let mut last: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for c in calls {
        let Some(key) = &c.publisher_model_id else {
            continue;
        };
        let ev = key.split(':').next().unwrap_or_default();
        let Some((order, seq)) = index.get(ev) else {
            panic!("write with unknown key {key}");
        };
        if let Some((prev, n)) = last.get(order.as_str()) {
            assert!(
                seq >= prev,
                "order {order}: call #{} (seq {seq}) reached Zenchef after call #{n} (seq {prev})",
                c.n
            );
        }
        last.insert(order, (*seq, c.n));
    }
}

/// Publishes `events` in order from the POS (each waits for the broker's
/// PUBACK); answers how many the broker acknowledged.
pub async fn publish_all(rig: &Rig, events: &[Value]) -> usize {
    for (i, e) in events.iter().enumerate() {
        if let Err(err) = rig.pos.publish_event(e).await {
            panic!("publish #{i} failed: {err}");
        }
    }
    events.len()
}

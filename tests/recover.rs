//! A damaged store gives every row that can still be read to the store
//! that replaces it (docs/decisions.md, "A damaged store gives its rows to
//! the new one"): the real agent builds a backlog of a few thousand
//! deliveries while Zenchef is down, is SIGKILLed, 8 KiB in the middle of
//! its SQLite file are flipped, and it starts again with Zenchef up.
//! Every event still readable is delivered once, `status` says what was
//! saved and what could not be read, and the damaged file is kept.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use zenchef_sim::faults::Fault;
use zenchef_sim::harness::RigOptions;

/// The moved-aside store files (`agent.db.corrupt-<stamp>`, not its
/// `-wal`/`-shm`).
fn aside(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("agent.db.corrupt-")
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
                && !name.ends_with(".recovered")
        })
        .collect();
    v.sort();
    v
}

fn query_i64(path: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_gives_its_readable_events_to_the_new_one_and_they_are_delivered_once() {
    let _heavy = heavy().await;
    let seed = seed();
    eprintln!("recover seed {seed} (replay: ZE_SEED={seed})");
    // 800 orders × 5 events: 4,000 acknowledged events, all queued.
    let w = Workload::generate(seed, 800, 5, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("agent.db");
    let mut rig = start_rig(RigOptions::new(w.zenchef_config()), dir.path()).await;
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    rig.pos.publish_floorplan(&w.floorplan()).await.unwrap();
    publish_all(&rig, &w.events).await;
    let n = w.events.len() as i64;
    zenchef_sim::util::wait_for("the backlog stored", Duration::from_secs(120), || {
        store_counts(&store)
            .and_then(|(stored, queued, _)| (stored >= n && queued >= n).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    rig.kill_agent().unwrap();

    // Fold the WAL into the file, so that the damage hits the pages that
    // hold the rows, then flip 8 KiB in the middle (the header is kept).
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&store).unwrap();
    // From the middle on, the first two pages in a row that hold events
    // (their envelopes as received): table pages, not an index's.
    let page = 4096;
    let holds_events = |p: usize| {
        bytes[p * page..(p + 1) * page]
            .windows(7)
            .any(|w| w == b"\"data\":")
    };
    let first = (bytes.len() / page / 2..bytes.len() / page - 1)
        .find(|&p| holds_events(p) && holds_events(p + 1))
        .expect("two pages of events in the second half");
    let at = first * page;
    for b in &mut bytes[at..at + 8192] {
        *b ^= 0xFF;
    }
    std::fs::write(&store, &bytes).unwrap();
    let check = {
        let c = rusqlite::Connection::open_with_flags(
            &store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut st = c.prepare("PRAGMA quick_check(5)").unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join("; "))
            .unwrap_or_else(|e| e.to_string())
    };
    eprintln!(
        "store of {} bytes, 8 KiB flipped at {at}: quick_check says {check}",
        bytes.len()
    );
    assert_ne!(check, "ok", "the damage must hit pages in use");

    // Started again with Zenchef up. The damage is found at the open (moved
    // aside at once) or by the full check after READY (exit 75, and the
    // unit's restart moves it aside): played here as the unit would.
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    let t0 = Instant::now();
    rig.spawn_agent().unwrap();
    let first = zenchef_sim::util::wait_for(
        "moved aside, or stopped to be",
        Duration::from_secs(120),
        || {
            if let Some(code) = rig.agent_exited() {
                return Some(Some(code));
            }
            (!aside(dir.path()).is_empty()).then_some(None)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let mut kept_bytes = bytes.clone();
    if let Some(code) = first {
        assert_eq!(
            code,
            75,
            "EX_TEMPFAIL, restarted by the unit\n{}",
            rig.log_tail(30)
        );
        // What is moved aside is the file as the first start left it.
        kept_bytes = std::fs::read(&store).unwrap();
        rig.spawn_agent().unwrap();
    }
    wait_online(&rig).await;
    let recovered_in = t0.elapsed();
    let kept = aside(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");

    // Every event the new store holds is delivered; nothing is left queued.
    let s = rig
        .wait_status(
            "the recovered backlog delivered",
            Duration::from_secs(300),
            |s| s["counts"]["queued"] == 0 && s["store_recovery"].is_object(),
        )
        .await
        .unwrap();
    let r = &s["store_recovery"];
    eprintln!("status store_recovery: {r}");
    let events = query_i64(&store, "SELECT COUNT(*) FROM events");
    let done = query_i64(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE state = 'done' AND pay_state = 'done'",
    );
    let dead = query_i64(&store, "SELECT COUNT(*) FROM outbox WHERE state = 'dead'");
    assert!(
        events > n / 2 && events < n,
        "most events saved, some lost: {events} of {n}"
    );
    assert_eq!(r["events"].as_i64(), Some(events), "{r}");
    assert_eq!(r["failed"], serde_json::Value::Null, "{r}");
    assert!(r["unreadable"].as_i64().is_some(), "{r}");
    assert_eq!(done + dead, r["deliveries"].as_i64().unwrap(), "{r}");

    // At the fake: every saved event with a Zenchef effect was delivered
    // (a table opened seats or creates its booking; a bill paid closes
    // it), nothing twice, no event the new store does not hold.
    let saved: BTreeSet<String> = {
        let c = rusqlite::Connection::open_with_flags(
            &store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut st = c.prepare("SELECT event_id FROM events").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let calls = rig.zenchef.calls();
    let mut writes: HashMap<String, u32> = HashMap::new();
    for c in calls.iter().filter(|c| (200..300).contains(&c.status)) {
        if let Some(key) = &c.publisher_model_id {
            *writes.entry(key.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = writes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "keys written twice: {twice:?}");
    assert_eq!(rig.zenchef.duplicates_suppressed(), 0, "nothing sent twice");
    let reached: BTreeSet<String> = writes
        .keys()
        .map(|k| k.split(':').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        reached.is_subset(&saved),
        "a write for an event the new store does not hold"
    );
    let effectful: Vec<&str> = w
        .events
        .iter()
        .filter(|e| {
            let id = e["event_id"].as_str().unwrap();
            saved.contains(id) && matches!(e["type"].as_str(), Some("table.opened" | "bill.paid"))
        })
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let missing: Vec<&&str> = effectful
        .iter()
        .filter(|e| !reached.contains(**e))
        .collect();
    assert!(
        missing.is_empty(),
        "{} saved event(s) never reached Zenchef, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    check_seq_order(&calls, &w.index);

    // `status` says it, in words too; the damaged file is kept as it was.
    let (_, text, _) = rig.cli(&["status"]).unwrap();
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("STORE       REPLACED"), "{text}");
    assert!(
        words.contains(&format!("saved from it: {events} events")),
        "{text}"
    );
    let lost = n - events;
    // The damaged file's index of event ids still counts the events whose
    // pages were destroyed (unless the damage hit the index too).
    if !r["events_not_read"].is_null() {
        assert_eq!(r["events_not_read"].as_i64(), Some(lost), "{r}");
        assert!(
            words.contains(&format!("could not be read: {lost} events")),
            "{text}"
        );
    }
    assert!(words.contains("could not be read:"), "{text}");
    assert!(kept[0].exists());
    for line in plain_log(&rig).lines().filter(|l| l.contains("recover")) {
        eprintln!("agent: {line}");
    }
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        kept_bytes,
        "the damaged file is left as it was"
    );
    figures(&format!(
        "recover: {n} events queued, 8 KiB flipped at {at} of {} bytes; saved {events} events, \
         {} deliveries ({} rebuilt); not read: {lost} events, {} deliveries, {} rows found but unusable; \
         recovery {} ms; damage found to online {:.1} s; {} delivered to Zenchef, {dead} dead",
        bytes.len(),
        r["deliveries"],
        r["deliveries_rebuilt"],
        r["deliveries_not_read"],
        r["unreadable"],
        r["millis"],
        recovered_in.as_secs_f64(),
        effectful.len(),
    ));
}

/// A start stopped while it recovers a damaged store (SIGKILL, a power
/// cut, systemd giving up) recovers it again at the next start: the
/// half-made new store is not taken for a healthy one and the moved-aside
/// file is not forgotten. Before, the next start opened the empty new
/// store as healthy and every queued event of the damaged one stayed
/// undelivered, with nothing saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_killed_during_the_recovery_recovers_again_at_the_next() {
    use zenchef_edge::outbox::{self, Store};
    let _heavy = heavy().await;
    let seed = seed();
    eprintln!("recover seed {seed} (replay: ZE_SEED={seed})");
    let w = Workload::generate(seed, 1000, 5, 40);
    let n = w.events.len() as i64;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("agent.db");
    let mut rig = zenchef_sim::harness::Rig::start(
        RigOptions::new(w.zenchef_config()),
        Path::new(AGENT),
        dir.path(),
    )
    .await
    .unwrap();
    rig.zenchef.set_fault(Fault::Down).await.unwrap();

    // A store of `n` acknowledged, queued events, whose integrity check
    // failed while the agent ran: the next start moves it aside and
    // recovers it (the whole file is readable).
    {
        let root = format!("cashpad/{}", rig.opts.iid);
        let topic = format!("{root}/events");
        let items: Vec<_> = w
            .events
            .iter()
            .map(|e| {
                zenchef_edge::pos::intake::classify(&root, &topic, e.to_string().as_bytes(), false)
            })
            .collect();
        let (s, _) = Store::open(&store).unwrap();
        s.write(move |c| outbox::insert_batch(c, &items, false))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(query_i64(&store, "SELECT COUNT(*) FROM events"), n);
    zenchef_edge::outbox::store::mark_corrupt(&store, "a test says so").unwrap();

    // Killed while SQLite reads the moved-aside file.
    rig.spawn_agent().unwrap();
    zenchef_sim::util::wait_for("the recovery started", Duration::from_secs(60), || {
        plain_log(&rig)
            .contains("reading every row that can still be read")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    rig.kill_agent().unwrap();
    assert!(
        !plain_log(&rig).contains("the damaged store is kept as it was"),
        "the kill came after the recovery: make the store larger\n{}",
        rig.log_tail(30)
    );
    assert_eq!(aside(dir.path()).len(), 1);

    // The next start recovers it again, into a fresh store.
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    let s = rig
        .wait_status("the recovery recorded", Duration::from_secs(60), |s| {
            s["store_recovery"].is_object()
        })
        .await
        .unwrap();
    let events = query_i64(&store, "SELECT COUNT(*) FROM events");
    let queued = query_i64(&store, "SELECT COUNT(*) FROM outbox WHERE state != 'done'");
    eprintln!("after the interrupted recovery: {events} events, {queued} to deliver");
    assert_eq!(
        events, n,
        "every event of the damaged store is in the new one"
    );
    assert_eq!(s["store_recovery"]["events"].as_i64(), Some(n));
    assert!(queued > 0, "its deliveries are still to make");
    assert_eq!(aside(dir.path()).len(), 1, "one file moved aside");
    assert!(
        !dir.path().join("agent.db.recovering").exists(),
        "the pending recovery is forgotten once done"
    );
    assert!(
        plain_log(&rig).contains("the recovery of the damaged store was interrupted"),
        "{}",
        rig.log_tail(30)
    );
}

//! Years under the counter, end to end with the real agent, the real
//! broker, POS and Zenchef fake and a real SQLite file: the replay at a
//! reconnect is bounded by the sync window, not by the years of bookings
//! the mirror has seen; withdrawals are confirmed on a live session and
//! then no longer replayed; confirmed withdrawals of past days leave the
//! store. (Retention of orders is asserted by the long-life part of the
//! bench, which `.ci/run` runs in its smoke form, and by the unit tests
//! of `outbox::retention`.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::util::wait_for;
use zenchef_sim::zenchef::{Fault, ZenchefConfig};

/// The agent's own count of its last replay: (published, withdrawals).
fn last_replay(rig: &Rig, after: usize) -> Option<(usize, usize)> {
    let log = rig.log();
    let line = log.lines().skip(after).find(|l| l.contains("replayed "))?;
    let published = line
        .split(" published")
        .next()?
        .rsplit('(')
        .next()?
        .parse()
        .ok()?;
    let withdrawn = line
        .split(" withdrawal(s) not yet confirmed")
        .next()?
        .rsplit(", ")
        .next()?
        .parse()
        .ok()?;
    Some((published, withdrawn))
}

fn count(rig: &Rig, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        rig.store_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A mirror of three years (2,000 bookings withdrawn long ago), three
/// bookings published for today and five withdrawn today: the replay sends
/// eight, not 2,008; a minute on a live session confirms the five, and the
/// next connect replays three; once Zenchef answers, the past days leave
/// the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_is_bounded_by_the_window_and_confirmed_withdrawals_leave() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("agent.db");
    {
        let (s, _) = zenchef_edge::outbox::Store::open(&store).unwrap();
        drop(s);
        let c = rusqlite::Connection::open(&store).unwrap();
        c.execute_batch(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO reservations(booking_id, day, status, hash, body, confirmed_at)
             SELECT i, date('now', '-' || (2 + i % 1000) || ' days'), 'over', 'h', NULL,
                    '2026-01-01T00:00:00.000Z' FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3)
             INSERT INTO reservations(booking_id, day, status, hash, body)
             SELECT 9000 + i, date('now', '+1 day'), 'confirmed', 'h',
                    json_object('booking_id', 9000 + i, 'status', 'confirmed') FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5)
             INSERT INTO reservations(booking_id, day, status, hash, body)
             SELECT 9100 + i, date('now', '+1 day'), 'canceled', 'h', NULL FROM n;
             COMMIT;",
        )
        .unwrap();
    }
    let mut opts = RigOptions::new(ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token".into(),
        ..Default::default()
    });
    opts.store_path = Some(store.clone());
    let mut rig = Rig::start(opts, std::path::Path::new(AGENT), dir.path())
        .await
        .unwrap();
    // Zenchef down: only the replay publishes reservations.
    rig.zenchef.set_fault(Fault::Down).await.unwrap();
    rig.spawn_agent().unwrap();
    wait_online(&rig).await;
    let first = wait_for("the first replay", Duration::from_secs(30), || {
        last_replay(&rig, 0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(first, (3, 5), "{}", rig.log_tail(30));
    let got = wait_for("the POS got them", Duration::from_secs(10), || {
        let s = rig.pos.state();
        let n: usize = s.reservation_history.values().map(Vec::len).sum();
        (n == 8).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", rig.pos.state().reservation_history.keys()));
    assert_eq!(
        got.reservations.keys().copied().collect::<Vec<_>>(),
        [9001, 9002, 9003]
    );
    assert!(
        got.reservation_history.keys().all(|id| *id > 9000),
        "nothing of the past days was sent"
    );

    // A minute on the same session: the withdrawals are confirmed.
    wait_for("the withdrawals confirmed", Duration::from_secs(100), || {
        (count(
            &rig,
            "SELECT COUNT(*) FROM reservations WHERE booking_id > 9100 AND confirmed_at IS NOT NULL",
        ) == 5)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    let lines = rig.log().lines().count();
    rig.stop_agent(Duration::from_secs(20)).unwrap();
    rig.spawn_agent().unwrap();
    let second = wait_for("the second replay", Duration::from_secs(30), || {
        last_replay(&rig, lines)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    assert_eq!(second, (3, 0), "confirmed withdrawals are not replayed");

    // Zenchef answers: the confirmed withdrawals of past days are pruned.
    assert_eq!(
        count(
            &rig,
            "SELECT COUNT(*) FROM reservations WHERE day < date('now')"
        ),
        2000
    );
    rig.zenchef.set_fault(Fault::None).await.unwrap();
    wait_for("the past days pruned", Duration::from_secs(30), || {
        (count(
            &rig,
            "SELECT COUNT(*) FROM reservations WHERE day < date('now')",
        ) == 0)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    // Tomorrow's rows stay (the fake has no booking: the three are now
    // withdrawn, the five still confirmed).
    assert_eq!(
        count(
            &rig,
            "SELECT COUNT(*) FROM reservations WHERE booking_id > 9000"
        ),
        8
    );
    let st = rig.status().unwrap();
    assert_eq!(st["store_usage"]["auto_vacuum"], json!("incremental"));
    assert!(st["store_usage"]["file_bytes"].as_u64().unwrap() > 0);
}

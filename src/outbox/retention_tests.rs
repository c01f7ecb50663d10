//! Retention against real SQLite files: events stored through intake's
//! own `insert_batch`, delivery states and payments set as the lanes and
//! the payments task leave them, then what a pass deletes and keeps.

use super::*;
use crate::outbox::{IntakeItem, insert_batch};
use chrono::{FixedOffset, TimeZone};
use domain::event::parse;
use zenchef_sim::pos::{EventBuilder, Line, Payment};

const NOW: &str = "2027-06-01T12:00:00Z";

fn now() -> DateTime<Utc> {
    parse_utc(NOW).unwrap()
}

fn item(v: serde_json::Value) -> IntakeItem {
    let body = v.to_string();
    IntakeItem::Event {
        event: parse(body.as_bytes()).unwrap(),
        body,
    }
}

/// The events of one order: opened, items sent, and (when `closed`) paid,
/// all `days_ago` days before [`NOW`] by the POS clock.
fn order_events(b: &mut EventBuilder, order: &str, days_ago: i64, closed: bool) -> Vec<IntakeItem> {
    let at = FixedOffset::east_opt(3600)
        .unwrap()
        .from_utc_datetime(&(now() - chrono::Duration::days(days_ago)).naive_utc());
    b.set_clock(Some(at));
    let lines = vec![Line::new("L1", "Plat", 2, 1500)];
    let mut out = vec![
        item(b.table_opened(order, "12", 2, at)),
        item(b.items_sent(order, "12", &lines, 3000)),
    ];
    if closed {
        out.push(item(b.bill_paid(
            order,
            "12",
            2,
            &lines,
            3000,
            0,
            &[Payment::new("card", 3000, "CB-1")],
            at + chrono::Duration::minutes(50),
        )));
    }
    b.set_clock(None);
    out
}

/// A store with the given orders: `(order, days ago by both clocks,
/// closed)`; every lane delivered.
fn store_with(dir: &Path, orders: &[(&str, i64, bool)]) -> Connection {
    let path = dir.join("agent.db");
    drop(Store::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA synchronous = OFF").unwrap();
    let mut b = EventBuilder::new(1);
    for (order, days, closed) in orders {
        let items = order_events(&mut b, order, *days, *closed);
        insert_batch(&c, &items, true).unwrap();
        let received = stamp(now() - chrono::Duration::days(*days));
        c.execute(
            "UPDATE events SET received_at = ?2 WHERE order_id = ?1",
            params![order, received],
        )
        .unwrap();
    }
    c.execute_batch("UPDATE outbox SET state = 'done', pay_state = 'done';")
        .unwrap();
    c
}

fn orders_left(c: &Connection) -> Vec<String> {
    c.prepare("SELECT DISTINCT order_id FROM events WHERE order_id IS NOT NULL ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn run_pass(c: &Connection, now: DateTime<Utc>) -> (Deleted, u32) {
    let cut = cutoff(c, now, 90).unwrap();
    let mut cursor = Cursor::default();
    let mut total = Deleted::default();
    let mut batches = 0;
    while !cursor.done {
        let d = delete_batch(c, &cut, &mut cursor).unwrap();
        total.add(&d);
        batches += 1;
        assert!(batches < 10_000, "the pass ends");
    }
    (total, batches)
}

fn payment(c: &Connection, id: &str, order: &str, state: &str, extra: &str) {
    c.execute(
        &format!(
            "INSERT INTO pay_payments(payment_id, order_id, amount_cents, tip_cents, body, state,
                                      received_at, updated_at{})
             VALUES (?1, ?2, 1000, 0, '{{}}', ?3, '2027-01-01T00:00:00.000Z',
                     '2027-01-01T00:00:00.000Z'{})",
            if extra.is_empty() {
                ""
            } else {
                ", attention, handled_at"
            },
            if extra.is_empty() {
                String::new()
            } else {
                format!(", {extra}")
            },
        ),
        params![id, order, state],
    )
    .unwrap();
}

/// Every rule of the module documentation, one order each.
// Long on purpose: one store holds an order per rule, so that each rule is
// seen to delete its order while sparing every other rule's.
#[test]
fn only_what_nothing_needs_any_more_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let c = store_with(
        dir.path(),
        &[
            ("A-delivered", 200, true),
            ("B-dead", 200, true),
            ("C-pay-queued", 200, true),
            ("D-open", 200, false),
            ("E-payment-pending", 200, true),
            ("F-payment-needs-person", 200, true),
            ("G-handled-recently", 200, true),
            ("H-handled-long-ago", 200, true),
            ("I-needs-attention", 200, true),
            ("K-pos-says-young", 200, true),
            ("L-cleared-doubt", 200, true),
            ("M-link-pending", 200, true),
            ("N-voided", 200, false),
        ],
    );
    c.execute_batch(
        "UPDATE outbox SET state = 'dead' WHERE order_id = 'B-dead' AND type = 'bill.paid';
         UPDATE outbox SET pay_state = 'queued' WHERE order_id = 'C-pay-queued' AND type = 'bill.paid';
         INSERT INTO link_requests(order_id, booking_id, requested_at, state)
              VALUES ('M-link-pending', 7, '2027-01-01T00:00:00Z', 'pending');",
    )
    .unwrap();
    // K: the POS clock says the order is recent (box clock wrong then).
    c.execute(
        "UPDATE events SET occurred_at = '2027-05-30T20:00:00+01:00' WHERE order_id = 'K-pos-says-young'",
        [],
    )
    .unwrap();
    // N: voided (closed without a bill).
    let mut b = EventBuilder::new(9000);
    insert_batch(
        &c,
        &[item(b.order_voided("N-voided", "12", "mistake"))],
        true,
    )
    .unwrap();
    c.execute_batch(
        "UPDATE events SET received_at = '2026-11-01T00:00:00.000Z',
                           occurred_at = '2026-11-01T01:00:00+01:00' WHERE order_id = 'N-voided';
         UPDATE outbox SET state = 'done', pay_state = 'done' WHERE order_id = 'N-voided';",
    )
    .unwrap();
    payment(&c, "p-e", "E-payment-pending", "command_sent", "");
    payment(
        &c,
        "p-f",
        "F-payment-needs-person",
        "settled",
        "'POS silent', NULL",
    );
    payment(
        &c,
        "p-g",
        "G-handled-recently",
        "settled",
        "'POS silent', '2027-05-20T00:00:00.000Z'",
    );
    payment(
        &c,
        "p-h",
        "H-handled-long-ago",
        "settled",
        "'POS silent', '2026-12-01T00:00:00.000Z'",
    );
    payment(&c, "p-a", "A-delivered", "settled", "");
    c.execute_batch(
        "INSERT INTO pay_checks(order_id, version, status, total_cents, paid_cents, updated_at)
              VALUES ('A-delivered', 3, 'closed', 3000, 3000, '2026-11-01T00:00:00.000Z');",
    )
    .unwrap();
    // Quarantined payloads: I's comes after its bill (doubt stays), L's
    // before (the bill cleared it), two orphans (old, young).
    c.execute_batch(
        "INSERT INTO rejected(received_at, topic, event_id, reason, payload, payload_len, order_id, seq)
         VALUES ('2026-11-01T00:00:00.000Z', 't', NULL, 'bad field', x'00', 1, 'I-needs-attention', 99999),
                ('2026-11-01T00:00:00.000Z', 't', NULL, 'bad field', x'00', 1, 'L-cleared-doubt', 0),
                ('2026-11-01T00:00:00.000Z', 't', NULL, 'not JSON', x'00', 1, NULL, NULL),
                ('2027-05-01T00:00:00.000Z', 't', NULL, 'not JSON', x'00', 1, NULL, NULL);",
    )
    .unwrap();
    // Events of an unknown type (old), then the young order, then a
    // young unknown event: stored in time order, as intake stores them.
    c.execute_batch(
        "INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
         VALUES ('u-old', 1, 'x.unknown', NULL, '2026-11-01T00:00:00+01:00', '{}', 0, '2026-11-01T00:00:00.000Z');",
    )
    .unwrap();
    let mut b = EventBuilder::new(20_000);
    insert_batch(&c, &order_events(&mut b, "J-young", 10, true), true).unwrap();
    c.execute_batch(&format!(
        "UPDATE events SET received_at = '{}' WHERE order_id = 'J-young';
         UPDATE outbox SET state = 'done', pay_state = 'done' WHERE order_id = 'J-young';
         INSERT INTO events(event_id, seq, type, order_id, occurred_at, body, known, received_at)
         VALUES ('u-young', 2, 'x.unknown', NULL, '2027-05-30T00:00:00+01:00', '{{}}', 0, '2027-05-30T00:00:00.000Z');",
        stamp(now() - chrono::Duration::days(10))
    ))
    .unwrap();

    let (d, _) = run_pass(&c, now());
    assert_eq!(
        orders_left(&c),
        [
            "B-dead",
            "C-pay-queued",
            "D-open",
            "E-payment-pending",
            "F-payment-needs-person",
            "G-handled-recently",
            "I-needs-attention",
            "J-young",
            "K-pos-says-young",
            "M-link-pending",
        ]
    );
    assert_eq!(d.orders, 4, "A, H, L, N: {d:?}");
    assert_eq!(
        d.events,
        3 + 3 + 3 + 3 + 1,
        "their events and the old unknown one"
    );
    assert_eq!(d.outbox, 12);
    assert_eq!(d.payments, 2, "A's and H's");
    assert_eq!(d.checks, 1);
    assert_eq!(d.rejected, 2, "L's cleared doubt and the old orphan");
    // What is kept is whole: no orphan outbox row, order row or payment.
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM outbox WHERE event_id NOT IN (SELECT event_id FROM events)"
        ),
        0
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM orders WHERE order_id IN ('A-delivered', 'H-handled-long-ago')"
        ),
        0
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM pay_payments WHERE payment_id IN ('p-e', 'p-f', 'p-g')"
        ),
        3
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM rejected WHERE order_id = 'I-needs-attention'"
        ),
        1,
        "rule 9: the doubt is kept with its order"
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM events WHERE event_id IN ('u-old', 'u-young')"
        ),
        1
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM rejected WHERE order_id IS NULL"),
        1
    );
    // The rules still judge the kept orders on all their events.
    let truth = crate::outbox::order_truth(&c, "I-needs-attention").unwrap();
    assert_eq!(truth.status, crate::sync::OrderStatus::Paid);
    assert!(
        crate::outbox::order_attention(&c, "I-needs-attention")
            .unwrap()
            .is_some()
    );
    // A second pass deletes nothing more.
    let (again, batches) = run_pass(&c, now());
    assert_eq!(again, Deleted::default());
    assert_eq!(batches, 1);
}

/// A box clock years ahead deletes nothing younger than the newest
/// event's clocks allow; one years behind deletes nothing.
#[test]
fn a_wrong_box_clock_never_deletes_more() {
    let dir = tempfile::tempdir().unwrap();
    let c = store_with(
        dir.path(),
        &[("old", 200, true), ("month", 30, true), ("newest", 1, true)],
    );
    let future = now() + chrono::Duration::days(5 * 365);
    let reference = reference_time(&c, future).unwrap();
    assert!(reference <= now(), "{reference}");
    run_pass(&c, future);
    assert_eq!(orders_left(&c), ["month", "newest"]);
    let past = now() - chrono::Duration::days(3 * 365);
    let c = store_with(
        tempfile::tempdir().unwrap().path(),
        &[("old", 200, true), ("newest", 1, true)],
    );
    run_pass(&c, past);
    assert_eq!(orders_left(&c), ["newest", "old"]);
}

/// Batches stay small (about [`BATCH_ROWS`] rows: one order more at
/// most), the pass deletes everything old, and the freed pages go back to
/// the filesystem.
#[test]
fn a_large_store_is_deleted_in_small_batches_and_the_file_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let orders: Vec<(String, i64, bool)> = (0..1500)
        .map(|i| {
            (
                format!("O-{i}"),
                if i < 1400 { 300 - i / 10 } else { 5 },
                true,
            )
        })
        .collect();
    let refs: Vec<(&str, i64, bool)> = orders
        .iter()
        .map(|(o, d, c)| (o.as_str(), *d, *c))
        .collect();
    let c = store_with(dir.path(), &refs);
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pages_before = count(&c, "PRAGMA page_count");
    let cut = cutoff(&c, now(), 90).unwrap();
    let mut cursor = Cursor::default();
    let mut sizes = Vec::new();
    while !cursor.done {
        let d = delete_batch(&c, &cut, &mut cursor).unwrap();
        sizes.push(d.rows());
    }
    let per_order = 3 + 3 + 1;
    assert!(
        sizes.iter().all(|&n| n <= BATCH_ROWS as i64 + per_order),
        "{sizes:?}"
    );
    assert!(sizes.len() >= 15, "{} batches", sizes.len());
    let left = orders_left(&c);
    // Orders 0..1400 are 300..161 days old: old enough are those older
    // than 90 days, i.e. all of them; the 100 young ones stay.
    assert_eq!(left.len(), 100, "{:?}", &left[..5]);
    assert!(
        left.iter()
            .all(|o| o["O-".len()..].parse::<usize>().unwrap() >= 1400)
    );
    let pages_after = count(&c, "PRAGMA page_count");
    assert!(
        pages_after * 3 < pages_before,
        "pages {pages_before} → {pages_after}: incremental vacuum gave them back"
    );
    assert_eq!(count(&c, "PRAGMA freelist_count"), 0);
}

/// The facts `status` shows.
#[test]
fn store_facts_say_size_and_oldest_row() {
    let dir = tempfile::tempdir().unwrap();
    let c = store_with(dir.path(), &[("old", 200, true), ("newer", 3, false)]);
    let f = store_facts(&c, &dir.path().join("agent.db"), 90).unwrap();
    assert!(f.file_bytes > 0);
    assert_eq!(f.auto_vacuum, "incremental");
    assert_eq!(f.events, 5);
    assert_eq!(f.oldest_event_order.as_deref(), Some("old"));
    assert_eq!(
        f.oldest_event_at.as_deref(),
        Some(stamp(now() - chrono::Duration::days(200)).as_str())
    );
    assert_eq!(f.retention, None);
}

/// The task's pass through the store thread: deletes, checkpoints (the
/// `-wal` is cut back), records what it did; and a store made before
/// incremental auto-vacuum is converted once, in the window.
#[tokio::test]
async fn a_pass_records_itself_and_converts_an_old_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    // A store as the previous releases made it: auto_vacuum NONE.
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE pre(x); DROP TABLE pre;")
            .unwrap();
    }
    drop(Store::open(&path).unwrap());
    let orders: Vec<(String, i64, bool)> =
        (0..300).map(|i| (format!("O-{i}"), 200, true)).collect();
    let refs: Vec<(&str, i64, bool)> = orders
        .iter()
        .map(|(o, d, c)| (o.as_str(), *d, *c))
        .collect();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA synchronous = OFF").unwrap();
        assert_eq!(count(&c, "PRAGMA auto_vacuum"), 0);
        let mut b = EventBuilder::new(1);
        for (order, days, closed) in &refs {
            insert_batch(&c, &order_events(&mut b, order, *days, *closed), true).unwrap();
        }
        c.execute_batch(&format!(
            "UPDATE events SET received_at = '{}'; UPDATE outbox SET state = 'done', pay_state = 'done';",
            stamp(now() - chrono::Duration::days(200))
        ))
        .unwrap();
        // The newest event: yesterday (so the cutoff is 90 days before it).
        let mut b = EventBuilder::new(50_000);
        insert_batch(&c, &order_events(&mut b, "fresh", 1, false), true).unwrap();
        c.execute(
            "UPDATE events SET received_at = ?1 WHERE order_id = 'fresh'",
            [stamp(now() - chrono::Duration::days(1))],
        )
        .unwrap();
    }
    let (store, _) = Store::open(&path).unwrap();
    let tz: chrono_tz::Tz = "UTC".parse().unwrap();
    let r = Retention {
        store: store.clone(),
        cfg: RetentionConfig {
            keep_days: 90,
            interval: Duration::from_secs(1),
            quiet: Duration::from_secs(1800),
        },
        tz,
        // The window holds NOW (12:00 UTC).
        window: (11 * 60, 13 * 60),
        clock: Arc::new(now),
    };
    assert_eq!(r.off_peak().await.unwrap(), Some(OffPeak::Window));
    let (d, complete) = r.pass(&CancellationToken::new()).await.unwrap();
    assert!(complete);
    assert_eq!(d.orders, 300);
    let rec = store.read(|c| Ok(Record::read(c))).await.unwrap().unwrap();
    assert!(rec.last_complete);
    assert_eq!(rec.last_deleted.orders, 300);
    assert_eq!(rec.total_deleted.orders, 300);
    assert!(rec.vacuumed_at.is_some(), "converted once: {rec:?}");
    let mode: i64 = store
        .read(|c| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(mode, 2);
    assert_eq!(file_sizes(&path).1, 0, "the -wal was cut back");
    let left = store.read(|c| Ok(orders_left(c))).await.unwrap();
    assert_eq!(left, ["fresh"]);
    // Outside the window, with a POS that sent something a minute ago:
    // not off-peak.
    let busy = Retention {
        window: (1, 2),
        clock: Arc::new(|| now() - chrono::Duration::hours(23) - chrono::Duration::minutes(59)),
        ..r.clone()
    };
    assert_eq!(busy.off_peak().await.unwrap(), None);
    // Quiet for 30 minutes: off-peak.
    let quiet = Retention {
        window: (1, 2),
        clock: Arc::new(now),
        ..r
    };
    assert_eq!(quiet.off_peak().await.unwrap(), Some(OffPeak::Quiet));
}

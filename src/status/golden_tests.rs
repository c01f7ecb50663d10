//! Golden renderings: fixed facts rendered at a fixed time, compared byte
//! for byte with `tests/golden/status/*` (text, JSON, page, chart). They were
//! written by the code before the status refactor (issue 15) and prove the
//! renderings did not move. `UPDATE_GOLDEN=1 cargo test --lib golden`
//! rewrites them (only for a wanted change of output).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::health::History;
use crate::status::chart::render_chart;
use crate::status::page::{self, Lang};
use crate::status::tests::sample;
use crate::status::text::render_text;
use crate::status::{self, ApiSummary, Problem, Status};
use crate::tables::{TablesCheck, compare};

const TZ: chrono_tz::Tz = chrono_tz::Europe::Paris;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 19, 0, 0).unwrap()
}

fn at(s: i64) -> String {
    (now() - chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn check(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/status")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        want == got,
        "{name} moved:\n--- want\n{want}\n--- got\n{got}"
    );
}

fn names(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

fn history(n: i64, sample_s: u64) -> History {
    crate::status::chart::tests::history(now(), n, sample_s)
}

/// The sample with table names that differ and an hour of history.
fn with_tables() -> Status {
    let mut s = sample(now());
    s.tables = Some(TablesCheck {
        zenchef_fetched_at: s.checked_at.clone(),
        pos_count: 3,
        zenchef_count: 3,
        clean: false,
        diff: compare(
            &names(&["1", "7a", "Bar <b>"]),
            &names(&["1", "7A", "Terrasse"]),
        ),
    });
    s.problems.insert(2, Problem::TableNamesDiffer);
    s.history = Some(history(60, 60));
    s
}

/// A daemon alive but stale, every outage, everything the store can say.
fn troubled() -> Status {
    let mut s = sample(now());
    s.daemon_running = false;
    if let Some(d) = s.daemon.as_mut() {
        d.updated_at = at(400);
        d.version = "0.0.9".into();
    }
    s.pos.state = status::PosState::Found;
    s.pos.problem = Some("MQTT: connection refused".into());
    s.zenchef.state = status::ApiState::Outage;
    s.pay = ApiSummary {
        state: status::ApiState::CredentialsRefused,
        last_success: Some(at(86_400 * 2)),
        last_error: Some("401 Unauthorized".into()),
        last_error_at: Some(at(30)),
    };
    s.counts.base.pay_queued = 4;
    s.counts.base.pay_dead = 1;
    s.counts.base.orders_open = 6;
    s.counts.base.walkins_created = 2;
    s.counts.links_pending = 1;
    s.counts.base.received = 900;
    s.counts.base.delivered = 880;
    s.update_state = serde_json::json!({"pending_version": "0.2.0", "state": "installing"});
    s.update_problem = Some(
        "updates failing since 2026-11-29T10:00:00Z: GET https://updates.example/manifest.json: \
         timed out (the daemon's last 5 checks failed; check the box's internet connection)"
            .into(),
    );
    s.update_held_by = vec![
        crate::update::daemon::OpenOrder {
            order_id: "O-1".into(),
            table: "12".into(),
            since: Some(at(5000)),
            stale: false,
        },
        crate::update::daemon::OpenOrder {
            order_id: "O-2".into(),
            table: "3".into(),
            since: None,
            stale: false,
        },
    ];
    s.store_usage = Some(crate::outbox::retention::StoreFacts {
        file_bytes: 5 * 1048576 + 300_000,
        wal_bytes: 70_000,
        oldest_event_at: Some(at(86_400 * 40)),
        keep_days: 90,
        ..Default::default()
    });
    s.store_moved_aside = Some(
        "/var/lib/zenchef-edge/agent.db.unreadable-2026-11-01T10:00:00Z-with-a-long-name".into(),
    );
    s.store_recovery = Some(crate::outbox::recover::Recovery {
        events: 5_912,
        deliveries: 5_914,
        deliveries_rebuilt: 2,
        to_deliver: 5_870,
        payments: 14,
        payments_held: 1,
        other_rows: 1_320,
        unreadable: 11,
        events_not_read: Some(88),
        deliveries_not_read: Some(86),
        payments_not_read: None,
        millis: 2_340,
        failed: None,
    });
    s.store_error = Some("a store error that is long enough to be wrapped over more than one line of the human output, with a word_longer_than_a_whole_line_of_the_output_which_is_cut_somewhere_or_not_at_all".into());
    s.problems = vec![
        Problem::AgentNotRunning,
        Problem::PaymentsNeedPerson,
        Problem::OrdersNeedAttention,
        Problem::ZenchefOutage,
        Problem::PosDisconnected,
        Problem::DeadEvents,
        Problem::StoreReplaced,
        Problem::PayCredentials,
        Problem::PayDead,
        Problem::UpdatesFailing,
    ];
    s.history = Some(history(30, 1));
    s
}

/// A dead daemon, no POS, Pay disabled, names that agree.
fn stopped() -> Status {
    let mut s = sample(now());
    s.daemon_running = false;
    s.daemon_alive = false;
    s.pos = status::PosSummary {
        state: status::PosState::NotFound,
        problem: Some("no _cashpad._tcp announce in 10 s".into()),
        ..Default::default()
    };
    s.zenchef.state = status::ApiState::CredentialsRefused;
    s.pay = ApiSummary {
        state: status::ApiState::Disabled,
        ..Default::default()
    };
    s.payments_needing_person.clear();
    s.update_state =
        serde_json::json!({"failed_versions": ["0.1.1", "0.1.2"], "last_event": "rolled back"});
    s.tables = Some(TablesCheck {
        zenchef_fetched_at: s.checked_at.clone(),
        pos_count: 1,
        zenchef_count: 1,
        clean: true,
        diff: compare(&names(&["1"]), &names(&["1"])),
    });
    s.problems = vec![
        Problem::AgentNotRunning,
        Problem::OrdersNeedAttention,
        Problem::ZenchefCredentials,
        Problem::PosNotFound,
        Problem::OldQueue,
        Problem::PayOutage,
        Problem::UpdatesRefused,
    ];
    s.history = Some(History {
        sample_s: 300,
        samples: vec![],
    });
    s
}

/// A POS broker that lets in a client without a password
/// (docs/pos-broker.md).
fn open_broker() -> Status {
    let mut s = sample(now());
    s.pos.anonymous_clients = Some(crate::pos::anonymous::AnonymousClients::Accepted);
    s.problems.insert(2, Problem::PosBrokerAnonymous);
    s
}

/// A store replaced at a start from which nothing could be saved (the
/// file was not a database at all).
fn not_recovered() -> Status {
    let mut s = sample(now());
    s.store_moved_aside = Some("/var/lib/zenchef-edge/agent.db.corrupt-1796000000".into());
    s.store_recovery = Some(crate::outbox::recover::Recovery {
        millis: 12,
        failed: Some("cannot open it: file is not a database".into()),
        ..Default::default()
    });
    s.problems = vec![Problem::StoreReplaced];
    s
}

/// No store: the daemon unknown, every remaining problem.
fn no_store(state: &'static str, update_state: Value) -> Status {
    let mut s = sample(now());
    s.store_state = state;
    s.store_error = Some(format!("{} is {state}", s.store));
    s.daemon = None;
    s.daemon_running = false;
    s.daemon_alive = false;
    s.pos = status::PosSummary {
        state: status::PosState::Unknown,
        ..Default::default()
    };
    s.zenchef = ApiSummary {
        state: status::ApiState::Unknown,
        ..Default::default()
    };
    s.pay = ApiSummary {
        state: status::ApiState::Unknown,
        ..Default::default()
    };
    s.counts = Default::default();
    s.oldest_queued_age_s = None;
    s.last_reservation_sync = None;
    s.update_state = update_state;
    s.payments_needing_person.clear();
    s.orders_needing_attention.clear();
    s.problems = vec![
        Problem::StoreMissing,
        Problem::StoreUnreadable,
        Problem::StoreIncompatible,
        Problem::AgentNotRunning,
        Problem::TableNamesDiffer,
        Problem::UpdatesPlaceholderKey,
    ];
    s
}

fn cases() -> Vec<(&'static str, Status)> {
    let mut ok = sample(now());
    ok.problems.clear();
    vec![
        ("sample", sample(now())),
        ("ok", ok),
        ("tables", with_tables()),
        ("troubled", troubled()),
        ("stopped", stopped()),
        ("open-broker", open_broker()),
        ("not-recovered", not_recovered()),
        (
            "unreadable",
            no_store("unreadable", serde_json::json!({"state": "idle"})),
        ),
        ("missing", no_store("missing", serde_json::json!(3))),
        (
            "incompatible",
            no_store("incompatible", serde_json::json!({})),
        ),
    ]
}

#[test]
fn text_json_and_page_renderings_did_not_move() {
    for (name, s) in cases() {
        check(&format!("{name}.txt"), &render_text(&s, TZ, now(), false));
        check(
            &format!("{name}.color.txt"),
            &render_text(&s, TZ, now(), true),
        );
        check(
            &format!("{name}.json"),
            &serde_json::to_string_pretty(&s).unwrap(),
        );
        check(
            &format!("{name}.fr.html"),
            &page::render(&s, TZ, now(), Lang::Fr),
        );
        check(
            &format!("{name}.en.html"),
            &page::render(&s, TZ, now(), Lang::En),
        );
    }
}

#[test]
fn chart_renderings_did_not_move() {
    let mut gaps = history(30, 1);
    gaps.samples.drain(10..20);
    let mut flat = history(2, 60);
    for s in &mut flat.samples {
        s.queued = 0;
        s.delivered = 0;
    }
    let mut long = history(60, 3600);
    long.samples.truncate(45);
    for (name, h, lang, pay) in [
        ("hour.fr", history(60, 60), Lang::Fr, true),
        ("hour.en", history(60, 60), Lang::En, true),
        ("hour-pay-off", history(60, 60), Lang::En, false),
        ("gaps", gaps, Lang::En, false),
        ("flat", flat, Lang::Fr, true),
        ("one", history(1, 60), Lang::Fr, true),
        ("five-min", history(50, 300), Lang::Fr, false),
        ("hours", long, Lang::En, true),
        ("ten-s", history(45, 10), Lang::Fr, true),
        (
            "empty",
            History {
                sample_s: 90,
                samples: vec![],
            },
            Lang::En,
            true,
        ),
    ] {
        check(
            &format!("chart-{name}.svg"),
            &render_chart(&h, TZ, now(), lang, pay),
        );
    }
}

/// The facts read from a fresh store holding a daemon record and an
/// updater state (`read_conn`), as JSON.
#[test]
fn facts_read_from_a_store_did_not_move() {
    let config = crate::config::parse(
        // Updates off: the facts must not depend on the built-in
        // channel's key (a placeholder until the real key replaces it).
        "[cashpad]\ntoken = \"cp-secret\"\n[zenchef]\nrestaurant_id = \"654321\"\ntoken = \"zc-secret\"\n[update]\nenabled = false\n",
        std::path::Path::new("/etc/zenchef-edge/agent.toml"),
    )
    .unwrap();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    crate::outbox::migrations::migrate(&conn).unwrap();
    let mut d = crate::health::HealthState {
        version: "0.1.0".into(),
        pid: 4_999_999,
        started_at: at(7300),
        updated_at: at(1),
        last_reservation_sync: Some(at(20)),
        ..Default::default()
    };
    d.pos.found = true;
    d.pos.address = Some("192.168.100.200:18830".into());
    d.pos.connected_since = Some(at(600));
    d.zenchef.outage = true;
    d.zenchef.last_error = Some(format!("{} GET /bookings: timed out", at(10)));
    let kv = |k: &str, v: &str| crate::outbox::kv_set(&conn, k, v).unwrap();
    kv(crate::health::KV_KEY, &serde_json::to_string(&d).unwrap());
    kv(status::UPDATE_STATE_KEY, "checking");
    kv(crate::health::MOVED_ASIDE_KEY, "/nonexistent/agent.db.old");
    let s = status::read_conn(&conn, &config, now()).unwrap();
    check("read.json", &serde_json::to_string_pretty(&s).unwrap());
}

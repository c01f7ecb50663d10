//! Helpers of the money suites (tests/money.rs, tests/pay.rs): a rig with
//! Zenchef Pay on, and short waits on what the fakes saw. Each
//! wait fails with the agent's log tail.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};
use zenchef_sim::harness::{Rig, RigOptions};
use zenchef_sim::pay::{PayConfig, PayFake, PaymentState};
use zenchef_sim::pos::{EventBuilder, Line, paris_winter};
use zenchef_sim::util::wait_for;
use zenchef_sim::zenchef::ZenchefConfig;

use super::AGENT;

/// Longest wait for something the agent does by itself.
pub const LONG: Duration = Duration::from_secs(40);

/// The POS clock now (+01:00).
pub fn now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&paris_winter())
}

/// A confirmed booking of 2 guests on `table` at `at`.
pub fn booking(id: i64, table: &str, at: DateTime<FixedOffset>) -> Value {
    json!({"id": id, "day": at.format("%Y-%m-%d").to_string(),
           "time": at.format("%H:%M").to_string(), "nb_guests": 2,
           "firstname": "Camille", "lastname": format!("Guest{id}"),
           "status": "confirmed", "tables": [{"id": id, "name": table}]})
}

/// Tables 1–20, these bookings, Zenchef Pay on; `extra_pay` goes into the
/// agent's `[zenchef_pay]` table.
pub fn options(bookings: Vec<Value>, extra_pay: &str) -> RigOptions {
    let mut opts = RigOptions::new(ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token".into(),
        tables: (1..=20)
            .map(|i| (i, i.to_string(), "Salle".to_string()))
            .collect(),
        bookings,
        ..Default::default()
    });
    opts.pay = Some(PayConfig {
        token: "pay-token-s3cret".into(),
        ..Default::default()
    });
    // Appended after the [zenchef_pay] table: its keys go there.
    opts.extra_config = extra_pay.to_string();
    opts
}

/// Starts the simulators and the agent; waits for its retained status.
pub async fn start(opts: RigOptions, dir: &Path) -> Rig {
    let mut rig = Rig::start(opts, Path::new(AGENT), dir).await.unwrap();
    rig.spawn_agent().unwrap();
    rig.pos
        .wait_until(Duration::from_secs(20), |s| s.status.is_some())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.log_tail(30)));
    rig
}

/// [`start`] with [`options`] of no bookings and no extra key, in a fresh
/// temp dir (keep it alive as long as the rig).
pub async fn start_plain() -> (tempfile::TempDir, Rig) {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(options(Vec::new(), ""), dir.path()).await;
    (dir, rig)
}

/// The rig's Zenchef Pay fake.
pub fn pay(rig: &Rig) -> &PayFake {
    rig.pay.as_ref().unwrap()
}

/// The payment's first ack, waiting at most `timeout`.
pub async fn fate_within(rig: &Rig, payment_id: &str, timeout: Duration) -> Option<PaymentState> {
    let p = pay(rig).clone();
    let id = payment_id.to_string();
    wait_for(&format!("the fate of {payment_id}"), timeout, || {
        match p.payment_state(&id) {
            PaymentState::Unacked => None,
            s => Some(s),
        }
    })
    .await
    .ok()
}

/// The payment's first ack ([`LONG`] at most).
pub async fn wait_fate(rig: &Rig, payment_id: &str) -> PaymentState {
    fate_within(rig, payment_id, LONG)
        .await
        .unwrap_or_else(|| panic!("no fate for {payment_id}\n{}", rig.log_tail(40)))
}

/// The order's check once `f` holds ([`LONG`] at most).
pub async fn wait_check(
    rig: &Rig,
    order: &str,
    what: &str,
    f: impl FnMut(&Value) -> bool,
) -> Value {
    wait_check_within(rig, order, what, LONG, f).await
}

/// The order's check once `f` holds (`timeout` at most).
pub async fn wait_check_within(
    rig: &Rig,
    order: &str,
    what: &str,
    timeout: Duration,
    f: impl FnMut(&Value) -> bool,
) -> Value {
    pay(rig)
        .wait_for_check(order, timeout, f)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", rig.log_tail(40)))
}

/// `status --json` once `f` holds ([`LONG`] at most).
pub async fn status(rig: &Rig, what: &str, f: impl FnMut(&Value) -> bool) -> Value {
    rig.wait_status(what, LONG, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Opens `order` on `table` and sends a bill of one line of `total` cents.
pub async fn open_table(
    rig: &Rig,
    eb: &mut EventBuilder,
    order: &str,
    table: &str,
    total: i64,
) -> Vec<Line> {
    let lines = vec![Line::new("L1", "Menu", 1, total)];
    rig.pos
        .publish_event(&eb.table_opened(order, table, 2, now()))
        .await
        .unwrap();
    rig.pos
        .publish_event(&eb.items_sent(order, table, &lines, total))
        .await
        .unwrap();
    lines
}

/// [`open_table`], then waits until the order's check is open at Zenchef
/// Pay ([`LONG`] at most): a table a guest can pay from the phone.
pub async fn open_table_with_check(
    rig: &Rig,
    eb: &mut EventBuilder,
    order: &str,
    table: &str,
    total: i64,
) -> Vec<Line> {
    let lines = open_table(rig, eb, order, table, total).await;
    wait_check(rig, order, "open", |c| c["status"] == json!("open")).await;
    lines
}

/// The settle commands the POS received for a payment.
pub fn commands_for(rig: &Rig, payment_id: &str) -> Vec<Value> {
    rig.pos
        .commands()
        .into_iter()
        .filter(|c| c["payment_id"] == json!(payment_id))
        .collect()
}

/// Waits for a settle command of the payment ([`LONG`] at most).
pub async fn wait_command(rig: &Rig, payment_id: &str) {
    let id = payment_id.to_string();
    rig.pos
        .wait_until(LONG, |s| {
            s.commands.iter().any(|c| c["payment_id"] == json!(id))
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no settle command for {payment_id}: {e}\n{}",
                rig.log_tail(40)
            )
        });
}

/// `status --json`'s `problems`.
pub fn problems(s: &Value) -> Vec<String> {
    s["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the agent's store (a replaced box: same configuration, a fresh
/// store); the agent must be stopped.
pub fn remove_store(rig: &Rig) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", rig.store_path().display()));
    }
}

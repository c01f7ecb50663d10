//! What must hold at the end: Zenchef and the POS against the scenario's
//! expected outcome (as the end-to-end test checks them).

use std::time::Duration;

use serde_json::{Value, json};
use zenchef_sim::harness::Rig;
use zenchef_sim::scenario::Scenario;

/// Zenchef, booking by booking (as the end-to-end test does).
pub fn verify_zenchef(sc: &Scenario, rig: &Rig) -> Vec<String> {
    let mut p = Vec::new();
    let fake = &rig.zenchef;
    let exp = &sc.expected;
    for (id, statuses) in &exp.status_history {
        let got = fake.status_history(*id);
        if &got != statuses {
            p.push(format!(
                "booking {id}: statuses {got:?}, expected {statuses:?}"
            ));
        }
    }
    let walkins = fake.walkins();
    if walkins.len() != exp.walkins.len() {
        p.push(format!(
            "{} walk-ins in Zenchef, expected {}",
            walkins.len(),
            exp.walkins.len()
        ));
    }
    for w in &exp.walkins {
        let found: Vec<&Value> = walkins
            .iter()
            .filter(|b| b["tables"][0]["name"] == json!(w.table) && b["time"] == json!(w.time))
            .collect();
        let [b] = found[..] else {
            p.push(format!(
                "walk-in of {} (table {} at {}): found {} times",
                w.order_id,
                w.table,
                w.time,
                found.len()
            ));
            continue;
        };
        let hist = fake.status_history(b["id"].as_i64().unwrap_or(0));
        if b["nb_guests"] != json!(w.covers)
            || b["day"] != json!(w.day)
            || b["reservation_type"] != json!("walkin")
            || hist != ["seated", "over"]
        {
            p.push(format!(
                "walk-in of {}: {b} with statuses {hist:?}, expected {w:?} seated → over",
                w.order_id
            ));
        }
    }
    let tickets = fake.tickets();
    if tickets.len() != exp.tickets.len() {
        p.push(format!(
            "{} tickets in Zenchef, expected {}",
            tickets.len(),
            exp.tickets.len()
        ));
    }
    for (tid, t) in &exp.tickets {
        let Some((booking, body)) = tickets.get(tid) else {
            p.push(format!("ticket {tid} missing"));
            continue;
        };
        if t.booking_id.is_some_and(|b| b != *booking) {
            p.push(format!(
                "ticket {tid} on booking {booking}, expected {:?}",
                t.booking_id
            ));
        }
        let paid: i64 = body["payments"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|x| x["amount_cents"].as_i64()).sum())
            .unwrap_or(-1);
        let lines = body["lines"].as_array().map(Vec::len).unwrap_or(0);
        if body["total_cents"] != json!(t.total_cents)
            || body["tip_cents"] != json!(t.tip_cents)
            || body["covers"] != json!(t.covers)
            || body["currency"] != json!("EUR")
            || lines != t.lines
            || paid != t.paid_cents
        {
            p.push(format!(
                "ticket {tid}: total {} tip {} covers {} lines {lines} paid {paid}, expected {} {} {} {} {}",
                body["total_cents"], body["tip_cents"], body["covers"],
                t.total_cents, t.tip_cents, t.covers, t.lines, t.paid_cents
            ));
        }
    }
    for b in fake.bookings() {
        let Some(sid) = b["customersheet"]["id"].as_i64() else {
            continue;
        };
        if let Some((visits, avg)) = exp.customersheets.get(&sid) {
            let sheet = &b["customersheet"];
            if sheet["visits"] != json!(visits) || sheet["average_spend_cents"] != json!(avg) {
                p.push(format!(
                    "customersheet {sid}: visits {} average {}, expected {visits} {avg}",
                    sheet["visits"], sheet["average_spend_cents"]
                ));
            }
        }
    }
    p
}

/// The POS: every live booking with Zenchef's current values, cancelled
/// ones withdrawn.
pub async fn verify_pos(sc: &Scenario, rig: &Rig) -> Vec<String> {
    let mut p = Vec::new();
    let cancelled = &sc.expected.cancelled;
    if rig
        .pos
        .wait_until(Duration::from_secs(10), |st| {
            cancelled.iter().all(|id| !st.reservations.contains_key(id))
        })
        .await
        .is_err()
    {
        p.push("a cancelled booking is still on the POS".to_string());
    }
    let on_pos = rig.pos.reservations();
    for b in &sc.bookings {
        let id = b["id"].as_i64().unwrap_or(0);
        if cancelled.contains(&id) {
            if rig.pos.reservation_history(id).last() != Some(&None) {
                p.push(format!("cancelled booking {id} not withdrawn from the POS"));
            }
            continue;
        }
        let (Some(r), Some(cur)) = (on_pos.get(&id), rig.zenchef.booking(id)) else {
            p.push(format!("booking {id} not on the POS"));
            continue;
        };
        for (pos_key, zc_key) in [
            ("time", "time"),
            ("nb_guests", "nb_guests"),
            ("comment", "comment"),
            ("allergies", "allergies"),
        ] {
            if r[pos_key] != cur[zc_key] {
                p.push(format!(
                    "booking {id}: {pos_key} {} on the POS, {} in Zenchef",
                    r[pos_key], cur[zc_key]
                ));
            }
        }
        if r["tables"][0] != cur["tables"][0]["name"] {
            p.push(format!(
                "booking {id}: table {} on the POS, {} in Zenchef",
                r["tables"][0], cur["tables"][0]["name"]
            ));
        }
    }
    p
}

//! The generated service: deterministic, counts, consistency, unambiguous
//! matching, and its expected outcome reached by a reference "perfect agent"
//! driving the Zenchef fake over HTTP.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime};
use serde_json::{Value, json};
use zenchef_sim::scenario::{Scenario, Step, ZenchefChange};
use zenchef_sim::zenchef::ZenchefFake;

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

#[test]
fn deterministic_from_seed() {
    let a = Scenario::generate(7, day());
    let b = Scenario::generate(7, day());
    let c = Scenario::generate(8, day());
    assert_eq!(format!("{:?}", a.steps), format!("{:?}", b.steps));
    assert_eq!(a.bookings, b.bookings);
    assert_eq!(a.expected, b.expected);
    assert_ne!(a.bookings, c.bookings);
}

fn count(s: &Scenario, ty: &str) -> usize {
    s.pos_events().iter().filter(|e| e["type"] == ty).count()
}

/// Rule 4 against a booking list.
fn candidates(bookings: &[Value], table: &str, opened_at: DateTime<FixedOffset>) -> Vec<i64> {
    bookings
        .iter()
        .filter(|b| {
            let t = NaiveTime::parse_from_str(b["time"].as_str().unwrap(), "%H:%M").unwrap();
            let d = NaiveDate::parse_from_str(b["day"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            let at = d.and_time(t);
            let open = opened_at.naive_local();
            b["tables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == table)
                && ["confirmed", "arrived", "waiting"].contains(&b["status"].as_str().unwrap())
                && at >= open - Duration::minutes(90)
                && at <= open + Duration::minutes(60)
        })
        .map(|b| b["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn counts_consistency_and_unambiguous_matching() {
    for seed in [1, 2, 3, 42, 2026] {
        let s = Scenario::generate(seed, day());
        assert!(s.tables.len() >= 30);
        assert!(s.tables.iter().any(|t| t.name == "Terrasse 2"));
        assert!(s.bookings.len() >= 60);
        let statuses: Vec<&str> = s
            .bookings
            .iter()
            .map(|b| b["status"].as_str().unwrap())
            .collect();
        assert!(
            statuses.contains(&"confirmed")
                && statuses.contains(&"waiting")
                && statuses.contains(&"arrived")
        );
        assert!(s.bookings.iter().any(|b| !b["allergies"].is_null()));
        assert!(s.bookings.iter().any(|b| !b["comment"].is_null()));
        assert!(s.bookings.iter().all(|b| b["day"] == "2026-11-29"));
        assert!(s.expected.walkins.len() >= 10);
        assert_eq!(count(&s, "table.moved"), 2);
        assert_eq!(s.expected.cancelled.len(), 3);
        assert_eq!(count(&s, "table.opened"), count(&s, "bill.paid"));
        let changes: Vec<&ZenchefChange> = s
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Zenchef { change, .. } => Some(change),
                _ => None,
            })
            .collect();
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, ZenchefChange::SetTime { .. }))
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, ZenchefChange::SetGuests { .. }))
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, ZenchefChange::SetComment { .. }))
        );
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, ZenchefChange::Cancel { .. }))
                .count(),
            3
        );
        let start = s
            .steps
            .iter()
            .find_map(|st| matches!(st, Step::OutageStart { .. }).then(|| st.at()))
            .unwrap();
        let end = s
            .steps
            .iter()
            .find_map(|st| matches!(st, Step::OutageEnd { .. }).then(|| st.at()))
            .unwrap();
        assert_eq!(end - start, Duration::minutes(5));
        assert!(
            s.steps
                .iter()
                .any(|st| matches!(st, Step::Pos { at, .. } if *at > start && *at < end)),
            "events happen during the outage"
        );
        // Timeline sorted, seq increasing, ids unique, times with +01:00.
        let events = s.pos_events();
        assert!(s.steps.windows(2).all(|w| w[0].at() <= w[1].at()));
        assert!(
            events
                .windows(2)
                .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
        );
        let ids: std::collections::HashSet<_> = events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), events.len());
        assert!(
            events
                .iter()
                .all(|e| e["occurred_at"].as_str().unwrap().ends_with("+01:00"))
        );
        // Bills add up; every order ends with bill.paid as its last event.
        let mut last_type: HashMap<String, String> = HashMap::new();
        for e in &events {
            let d = &e["data"];
            last_type.insert(
                d["order_id"].as_str().unwrap().into(),
                e["type"].as_str().unwrap().into(),
            );
            if e["type"] == "order.items_sent" || e["type"] == "bill.paid" {
                let lines = d["lines"].as_array().unwrap();
                let sum: i64 = lines
                    .iter()
                    .map(|l| l["total_cents"].as_i64().unwrap())
                    .sum();
                assert_eq!(sum, d["total_cents"].as_i64().unwrap());
                for l in lines {
                    assert_eq!(
                        l["quantity"].as_i64().unwrap() * l["unit_price_cents"].as_i64().unwrap(),
                        l["total_cents"].as_i64().unwrap()
                    );
                }
            }
            if e["type"] == "bill.paid" {
                let paid: i64 = d["payments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["amount_cents"].as_i64().unwrap())
                    .sum();
                assert_eq!(
                    paid,
                    d["total_cents"].as_i64().unwrap() + d["tip_cents"].as_i64().unwrap()
                );
            }
        }
        assert!(last_type.values().all(|t| t == "bill.paid"));
        // Matching against the bookings as they stand at each opening.
        let mut bookings = s.bookings.clone();
        let mut walkins = 0;
        let mut matched = 0;
        for st in &s.steps {
            match st {
                Step::Zenchef { change, .. } => {
                    let b = bookings
                        .iter_mut()
                        .find(|b| b["id"] == change.booking_id())
                        .unwrap();
                    change.apply_to(b);
                }
                Step::Pos { event, at } if event["type"] == "table.opened" => {
                    let d = &event["data"];
                    let c = candidates(&bookings, d["table"].as_str().unwrap(), *at);
                    let expected_ticket = &s.expected.tickets[d["order_id"].as_str().unwrap()];
                    match expected_ticket.booking_id {
                        Some(id) => {
                            assert_eq!(c, vec![id], "seed {seed} order {}", d["order_id"]);
                            matched += 1;
                            // Consume it (it is seated now).
                            bookings.iter_mut().find(|b| b["id"] == id).unwrap()["status"] =
                                json!("seated");
                        }
                        None => {
                            assert!(c.is_empty(), "walk-in on a booked table: {c:?}");
                            walkins += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        assert_eq!(walkins, s.expected.walkins.len());
        assert_eq!(
            matched + s.expected.cancelled.len() + s.expected.not_opened.len(),
            s.bookings.len()
        );
        // Floor plan and Zenchef agree on names.
        let plan = s.floorplan();
        let names: Vec<&str> = plan["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let zn: Vec<String> = s.zenchef_tables().into_iter().map(|t| t.1).collect();
        assert_eq!(names, zn);
    }
}

/// A reference agent following docs/protocol/sync-rules.md against the fake; reaching the
/// scenario's expected outcome validates the scenario and the fake together.
#[tokio::test]
async fn perfect_agent_reaches_the_expected_outcome() {
    let s = Scenario::generate(11, day());
    let fake = ZenchefFake::start(s.zenchef_config("tok")).await.unwrap();
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: String, body: Value, key: String| {
        let http = http.clone();
        let url = format!("{}{path}", fake.base_url());
        async move {
            let r = http
                .request(method, url)
                .header("auth-token", "tok")
                .header("restaurantId", "654321")
                .header("PublisherName", "perfect-agent")
                .header("PublisherModelId", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let mut links: BTreeMap<String, i64> = BTreeMap::new();
    for st in &s.steps {
        match st {
            Step::Zenchef { change, .. } => assert!(change.apply(&fake)),
            Step::Pos { event, at } => {
                let d = &event["data"];
                let order = d["order_id"].as_str().unwrap().to_string();
                let eid = event["event_id"].as_str().unwrap();
                match event["type"].as_str().unwrap() {
                    "table.opened" => {
                        let c = candidates(&fake.bookings(), d["table"].as_str().unwrap(), *at);
                        let id = if let [id] = c[..] {
                            send(
                                reqwest::Method::PATCH,
                                format!("/bookings/{id}/changeStatus"),
                                json!({"status": "seated"}),
                                format!("{eid}:seated"),
                            )
                            .await;
                            id
                        } else {
                            let v = send(reqwest::Method::POST, "/bookings?force=1".into(), json!({
                                "day": "2026-11-29", "time": at.format("%H:%M").to_string(),
                                "nb_guests": d["covers"], "status": "seated", "reservation_type": "walkin",
                                "tables": [d["table"]], "country": "fr"}), format!("{eid}:walkin")).await;
                            v["data"]["id"].as_i64().unwrap()
                        };
                        links.insert(order, id);
                    }
                    "bill.paid" => {
                        let id = links[&order];
                        send(
                            reqwest::Method::PATCH,
                            format!("/bookings/{id}/changeStatus"),
                            json!({"status": "over"}),
                            format!("{eid}:over"),
                        )
                        .await;
                        let lines: Vec<Value> = d["lines"].as_array().unwrap().iter().map(|l| json!({
                            "name": l["name"], "quantity": l["quantity"],
                            "unit_price_cents": l["unit_price_cents"], "total_cents": l["total_cents"]})).collect();
                        let body = json!({"ticket_id": order, "currency": "EUR", "covers": d["covers"],
                            "total_cents": d["total_cents"], "tip_cents": d["tip_cents"], "paid_at": d["paid_at"],
                            "lines": lines, "payments": d["payments"]});
                        send(
                            reqwest::Method::PUT,
                            format!("/bookings/{id}/pos_ticket"),
                            body.clone(),
                            format!("{eid}:ticket"),
                        )
                        .await;
                        // A retry after a "timeout" changes nothing.
                        send(
                            reqwest::Method::PUT,
                            format!("/bookings/{id}/pos_ticket"),
                            body,
                            format!("{eid}:ticket"),
                        )
                        .await;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let e = &s.expected;
    for (id, hist) in &e.status_history {
        assert_eq!(&fake.status_history(*id), hist, "booking {id}");
    }
    let walkins = fake.walkins();
    assert_eq!(walkins.len(), e.walkins.len());
    for (got, want) in walkins.iter().zip(&e.walkins) {
        assert_eq!(got["tables"][0]["name"], json!(want.table));
        assert_eq!(got["nb_guests"], json!(want.covers));
        assert_eq!(got["time"], json!(want.time));
        assert_eq!(
            fake.status_history(got["id"].as_i64().unwrap()),
            vec!["seated", "over"]
        );
    }
    let tickets = fake.tickets();
    assert_eq!(tickets.len(), e.tickets.len());
    for (tid, want) in &e.tickets {
        let (bid, body) = &tickets[tid];
        if let Some(b) = want.booking_id {
            assert_eq!(*bid, b);
        }
        assert_eq!(body["total_cents"], json!(want.total_cents));
        assert_eq!(body["tip_cents"], json!(want.tip_cents));
    }
    for (sid, (visits, avg)) in &e.customersheets {
        let b = fake
            .bookings()
            .into_iter()
            .find(|b| b["customersheet"]["id"] == json!(sid))
            .unwrap();
        assert_eq!(
            (
                b["customersheet"]["visits"].as_i64().unwrap(),
                b["customersheet"]["average_spend_cents"].as_i64().unwrap()
            ),
            (*visits, *avg),
            "sheet {sid}"
        );
    }
    assert_eq!(fake.duplicates_suppressed(), e.tickets.len() as u64);
    for id in &e.cancelled {
        assert_eq!(fake.booking(*id).unwrap()["status"], "canceled");
    }
}

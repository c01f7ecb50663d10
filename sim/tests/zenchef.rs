//! The Zenchef API fake over real HTTP: filters, pagination, headers,
//! idempotency, walk-ins, tickets and every fault.

use std::time::{Duration, SystemTime};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use zenchef_sim::zenchef::{Fault, RetryAfter, ZenchefConfig, ZenchefFake};

const TOKEN: &str = "tok";
const RID: &str = "654321";

fn booking(
    id: i64,
    day: &str,
    time: &str,
    table: (i64, &str),
    sheet: Option<(i64, i64, i64)>,
) -> Value {
    json!({"id": id, "day": day, "time": time, "nb_guests": 2, "firstname": "Camille",
           "lastname": "Martin", "status": "confirmed", "tables": [{"id": table.0, "name": table.1}],
           "customersheet": sheet.map(|(sid, visits, avg)| json!({"id": sid, "firstname": "Camille",
               "lastname": "Martin", "email": null, "phone": null, "country": "fr",
               "visits": visits, "average_spend_cents": avg}))})
}

async fn fake_with(n: i64, cap: u32) -> ZenchefFake {
    let mut bookings: Vec<Value> = (1..=n)
        .map(|i| booking(i, "2026-11-29", "20:00", (17, "12"), None))
        .collect();
    bookings.push(booking(1000, "2026-11-30", "12:00", (17, "12"), None));
    bookings.push(booking(
        2000,
        "2026-11-29",
        "19:30",
        (18, "14"),
        Some((998, 3, 6150)),
    ));
    ZenchefFake::start(ZenchefConfig {
        restaurant_id: RID.into(),
        token: TOKEN.into(),
        tables: vec![
            (17, "12".into(), "Salle".into()),
            (18, "14".into(), "Salle".into()),
        ],
        bookings,
        page_size_cap: cap,
        port: 0,
    })
    .await
    .unwrap()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn call(
    fake: &ZenchefFake,
    method: Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut rb = client()
        .request(method, format!("{}{path}", fake.base_url()))
        .header("auth-token", TOKEN)
        .header("restaurantId", RID)
        .header("Accept", "application/json");
    if let Some(b) = body {
        rb = rb.json(&b).header("PublisherName", "zenchef-edge");
    }
    if let Some(k) = key {
        rb = rb.header("PublisherModelId", k);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v, headers)
}

fn day_query(day: &str, limit: u32, page: u32) -> String {
    format!(
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]={day}&limit={limit}&page={page}"
    )
}

#[tokio::test]
async fn list_filters_by_day_and_paginates() {
    let fake = fake_with(45, 20).await;
    // 45 + booking 2000 on the 29th = 46; limit 100 capped to 20.
    let (s, v, _) = call(
        &fake,
        Method::GET,
        &day_query("2026-11-29", 100, 1),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["paginator"],
        json!({"total": 46, "count": 20, "limit": 20, "current_page": 1, "total_pages": 3,
               "next_page": 2, "previous_page": null})
    );
    let mut ids = Vec::new();
    for page in 1..=3 {
        let (_, v, _) = call(
            &fake,
            Method::GET,
            &day_query("2026-11-29", 100, page),
            None,
            None,
        )
        .await;
        ids.extend(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_i64().unwrap()),
        );
        if page == 3 {
            assert_eq!(v["paginator"]["count"], 6);
            assert_eq!(v["paginator"]["next_page"], Value::Null);
            assert_eq!(v["paginator"]["previous_page"], 2);
        }
    }
    assert_eq!(ids.len(), 46);
    assert!(!ids.contains(&1000));
    // URL-encoded brackets work the same.
    let (s, v, _) = call(
        &fake,
        Method::GET,
        "/bookings?filters%5B0%5D%5Bfield%5D=day&filters%5B0%5D%5Boperator%5D=%3D&filters%5B0%5D%5Bvalue%5D=2026-11-30&limit=5&page=1",
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["id"], 1000);
    assert_eq!(v["paginator"]["total_pages"], 1);
    // Empty day: one empty page.
    let (_, v, _) = call(
        &fake,
        Method::GET,
        &day_query("2026-12-25", 10, 1),
        None,
        None,
    )
    .await;
    assert_eq!(v["paginator"]["total"], 0);
    assert_eq!(v["paginator"]["total_pages"], 1);
    // Every field of the booking object is present.
    let (_, v, _) = call(&fake, Method::GET, "/bookings/1", None, None).await;
    for k in [
        "id",
        "restaurant_id",
        "reservation_type",
        "day",
        "time",
        "nb_guests",
        "firstname",
        "lastname",
        "phone_number",
        "email",
        "comment",
        "private_comment",
        "allergies",
        "status",
        "tables",
        "customersheet",
        "created_at",
        "updated_at",
    ] {
        assert!(v["data"].get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["data"]["restaurant_id"], 654321);
}

#[tokio::test]
async fn bad_filters_are_400() {
    let fake = fake_with(1, 100).await;
    for q in [
        "/bookings?limit=10",
        "/bookings?filters[0][field]=time&filters[0][operator]==&filters[0][value]=20:00",
        "/bookings?filters[0][field]=day&filters[0][operator]=>&filters[0][value]=2026-11-29",
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]=29/11/2026",
        "/bookings?filters[0][field]=day&filters[0][value]=2026-11-29",
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]=2026-11-29&limit=0",
    ] {
        let (s, v, _) = call(&fake, Method::GET, q, None, None).await;
        assert_eq!(s, 400, "{q}");
        assert!(v["message"].is_string());
    }
}

#[tokio::test]
async fn credentials_and_write_headers() {
    let fake = fake_with(1, 100).await;
    let url = format!("{}/tables", fake.base_url());
    let r = client()
        .get(&url)
        .header("auth-token", "bad")
        .header("restaurantId", RID)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(&url)
        .header("auth-token", TOKEN)
        .header("restaurantId", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (s, v, _) = call(&fake, Method::GET, "/tables", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"data": [{"id": 17, "name": "12", "room": "Salle"}, {"id": 18, "name": "14", "room": "Salle"}]})
    );
    // Write without PublisherModelId / PublisherName.
    let (s, v, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "seated"})),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("PublisherModelId"));
    let r = client()
        .patch(format!("{}/bookings/1/changeStatus", fake.base_url()))
        .header("auth-token", TOKEN)
        .header("restaurantId", RID)
        .header("PublisherModelId", "k")
        .json(&json!({"status": "seated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Token revoked mid-service.
    fake.set_token("new");
    let (s, _, _) = call(&fake, Method::GET, "/tables", None, None).await;
    assert_eq!(s, 401);
    assert_eq!(fake.booking(1).unwrap()["status"], "confirmed");
}

#[tokio::test]
async fn change_status_and_idempotency() {
    let fake = fake_with(2, 100).await;
    let before = fake.booking(1).unwrap()["updated_at"].clone();
    let (s, v, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "seated"})),
        Some("ev-1:seat"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["status"], "seated");
    assert_ne!(v["data"]["updated_at"], before);
    // Same key again: same answer, no second action.
    fake.update_booking(1, |b| b["status"] = json!("confirmed"));
    let (s2, v2, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "seated"})),
        Some("ev-1:seat"),
    )
    .await;
    assert_eq!((s2, &v2), (s, &v));
    assert_eq!(fake.booking(1).unwrap()["status"], "confirmed");
    assert_eq!(fake.duplicates_suppressed(), 1);
    assert_eq!(fake.status_history(1), vec!["seated"]);
    let calls = fake.calls();
    let last = calls.last().unwrap();
    assert!(last.duplicate);
    assert_eq!(last.publisher_model_id.as_deref(), Some("ev-1:seat"));
    assert_eq!(last.body, json!({"status": "seated"}));
    // Errors.
    let (s, v, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "eaten"})),
        Some("k2"),
    )
    .await;
    assert_eq!(s, 422);
    assert!(v["message"].as_str().unwrap().contains("eaten"));
    let (s, _, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/77/changeStatus",
        Some(json!({"status": "over"})),
        Some("k3"),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = call(&fake, Method::GET, "/bookings/77", None, None).await;
    assert_eq!(s, 404);
    // A rejected write is not remembered: the same key may succeed later.
    let (s, _, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/2/changeStatus",
        Some(json!({"status": "over"})),
        Some("k2"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(fake.status_history(2), vec!["over"]);
    // Repeating the current status is not a change.
    let (s, _, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/2/changeStatus",
        Some(json!({"status": "over"})),
        Some("k4"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(fake.status_history(2), vec!["over"]);
}

#[tokio::test]
async fn walkin_creation_validates_and_is_idempotent() {
    let fake = fake_with(1, 100).await;
    let body = json!({"day": "2026-11-29", "time": "20:15", "nb_guests": 3, "firstname": null,
                      "lastname": "Walk-in", "status": "seated", "reservation_type": "walkin",
                      "tables": ["14"], "country": "fr"});
    let (s, v, _) = call(
        &fake,
        Method::POST,
        "/bookings?force=1",
        Some(body.clone()),
        Some("ev-9"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let b = &v["data"];
    assert_eq!(b["tables"], json!([{"id": 18, "name": "14"}]));
    assert_eq!(b["customersheet"], Value::Null);
    assert_eq!(b["reservation_type"], "walkin");
    assert_eq!(b["nb_guests"], 3);
    let id = b["id"].as_i64().unwrap();
    let (s2, v2, _) = call(
        &fake,
        Method::POST,
        "/bookings?force=1",
        Some(body.clone()),
        Some("ev-9"),
    )
    .await;
    assert_eq!((s2, &v2), (s, &v));
    assert_eq!(fake.walkins().len(), 1);
    assert_eq!(fake.status_history(id), vec!["seated"]);
    for (field, bad) in [
        ("day", json!("29/11/2026")),
        ("time", json!("8pm")),
        ("nb_guests", json!(0)),
        ("reservation_type", json!("party")),
        ("status", json!("happy")),
        ("tables", json!(["99"])),
        ("tables", json!([])),
    ] {
        let mut b = body.clone();
        b[field] = bad;
        let (s, v, _) = call(
            &fake,
            Method::POST,
            "/bookings?force=1",
            Some(b),
            Some(&format!("bad-{field}-{}", v2["data"]["id"])),
        )
        .await;
        assert_eq!(s, 422, "{field}");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    let (s, _, _) = call(
        &fake,
        Method::POST,
        "/bookings",
        Some(body),
        Some("noforce"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(fake.walkins().len(), 1);
}

fn ticket(id: &str, total: i64) -> Value {
    json!({"ticket_id": id, "currency": "EUR", "covers": 2, "total_cents": total, "tip_cents": 300,
           "paid_at": "2026-11-29T22:31:00+01:00",
           "lines": [{"name": "Entrecôte", "quantity": 2, "unit_price_cents": total / 2, "total_cents": total}],
           "payments": [{"method": "card", "amount_cents": total + 300}]})
}

#[tokio::test]
async fn pos_ticket_replaces_and_recomputes_average_spend() {
    let fake = fake_with(1, 100).await;
    // Sheet 998: visits 3, average 6150 → +1 ticket of 10000:
    // (6150*3 + 10000) / 4 = 7112.5 → 7113 (half up).
    let (s, v, _) = call(
        &fake,
        Method::PUT,
        "/bookings/2000/pos_ticket",
        Some(ticket("O-1", 10000)),
        Some("t1"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let sheet = &fake.booking(2000).unwrap()["customersheet"];
    assert_eq!(
        (
            sheet["visits"].as_i64(),
            sheet["average_spend_cents"].as_i64()
        ),
        (Some(4), Some(7113))
    );
    // Same ticket_id with a new total replaces: (18450 + 8000) / 4 = 6612.5 → 6613.
    call(
        &fake,
        Method::PUT,
        "/bookings/2000/pos_ticket",
        Some(ticket("O-1", 8000)),
        Some("t2"),
    )
    .await;
    let sheet = &fake.booking(2000).unwrap()["customersheet"];
    assert_eq!(
        (
            sheet["visits"].as_i64(),
            sheet["average_spend_cents"].as_i64()
        ),
        (Some(4), Some(6613))
    );
    assert_eq!(fake.tickets().len(), 1);
    assert_eq!(fake.tickets()["O-1"].0, 2000);
    // A second ticket: (18450 + 8000 + 5001) / 5 = 6290.2 → 6290.
    call(
        &fake,
        Method::PUT,
        "/bookings/2000/pos_ticket",
        Some(ticket("O-2", 5001)),
        Some("t3"),
    )
    .await;
    let sheet = &fake.booking(2000).unwrap()["customersheet"];
    assert_eq!(
        (
            sheet["visits"].as_i64(),
            sheet["average_spend_cents"].as_i64()
        ),
        (Some(5), Some(6290))
    );
    // Without a customersheet the ticket is kept, no average.
    let (s, _, _) = call(
        &fake,
        Method::PUT,
        "/bookings/1/pos_ticket",
        Some(ticket("O-3", 4200)),
        Some("t4"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(fake.tickets()["O-3"].0, 1);
    assert_eq!(fake.booking(1).unwrap()["customersheet"], Value::Null);
    // Validation and 404.
    let mut bad = ticket("O-4", 100);
    bad["currency"] = json!("euro");
    let (s, v, _) = call(
        &fake,
        Method::PUT,
        "/bookings/1/pos_ticket",
        Some(bad),
        Some("t5"),
    )
    .await;
    assert_eq!(s, 422);
    assert!(v["message"].as_str().unwrap().starts_with("currency"));
    let mut bad = ticket("O-4", 100);
    bad["lines"][0].as_object_mut().unwrap().remove("quantity");
    let (s, v, _) = call(
        &fake,
        Method::PUT,
        "/bookings/1/pos_ticket",
        Some(bad),
        Some("t6"),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("lines[0].quantity")
    );
    let (s, _, _) = call(
        &fake,
        Method::PUT,
        "/bookings/5/pos_ticket",
        Some(ticket("O-5", 100)),
        Some("t7"),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn faults_down_status_ratelimit_timeout_latency_and_poison() {
    let fake = fake_with(1, 100).await;
    // Down: the port really refuses connections, state is kept.
    fake.set_fault(Fault::Down).await.unwrap();
    let e = client()
        .get(format!("{}/tables", fake.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(std::net::TcpStream::connect(fake.addr()).is_err());
    fake.set_fault(Fault::None).await.unwrap();
    let (s, _, _) = call(&fake, Method::GET, "/bookings/1", None, None).await;
    assert_eq!(s, 200);

    fake.set_fault(Fault::Status(503)).await.unwrap();
    let (s, _, _) = call(&fake, Method::GET, "/tables", None, None).await;
    assert_eq!(s, 503);

    fake.set_fault(Fault::RateLimit {
        retry_after: RetryAfter::Seconds(7),
    })
    .await
    .unwrap();
    let (s, _, h) = call(&fake, Method::GET, "/tables", None, None).await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "7");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    fake.set_fault(Fault::RateLimit {
        retry_after: RetryAfter::HttpDate(when),
    })
    .await
    .unwrap();
    let (_, _, h) = call(&fake, Method::GET, "/tables", None, None).await;
    let v = h["retry-after"].to_str().unwrap();
    assert!(v.ends_with(" GMT") && v.len() == 29, "{v}");
    let parsed = chrono::DateTime::parse_from_rfc2822(v).unwrap();
    assert_eq!(parsed.timestamp(), 1_795_000_000);

    fake.set_fault(Fault::Timeout).await.unwrap();
    let e = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .get(format!("{}/tables", fake.base_url()))
        .header("auth-token", TOKEN)
        .header("restaurantId", RID)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");

    fake.set_fault(Fault::None).await.unwrap();
    fake.set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    call(&fake, Method::GET, "/tables", None, None).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    fake.set_latency(Duration::ZERO);

    // Persistent poison on one booking's writes.
    let id = fake.fail_booking(1, 422, "booking locked");
    let (s, v, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "seated"})),
        Some("p1"),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["message"].as_str()),
        (422, Some("booking locked"))
    );
    let (s, _, _) = call(&fake, Method::GET, "/bookings/1", None, None).await;
    assert_eq!(s, 200);
    fake.clear_failure(id);
    let (s, _, _) = call(
        &fake,
        Method::PATCH,
        "/bookings/1/changeStatus",
        Some(json!({"status": "seated"})),
        Some("p1"),
    )
    .await;
    assert_eq!(s, 200);
    fake.fail_path_containing("/tables", 500, "boom");
    let (s, _, _) = call(&fake, Method::GET, "/tables", None, None).await;
    assert_eq!(s, 500);
    // Every request was recorded, with its answer.
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&0));
}

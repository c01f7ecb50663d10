//! The Zenchef API fake over real HTTP: filters, pagination, headers,
//! idempotency, walk-ins, tickets and every fault, as tables of cases
//! (request → expected status and body, see `common`).

mod common;

use std::time::{Duration, SystemTime};

use common::{Case, Target, check, check_all, client};
use reqwest::{Client, Method};
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

/// The fake's API with the right credentials; writes carry `PublisherName`,
/// a case's key goes in `PublisherModelId`.
fn api(fake: &ZenchefFake) -> Target {
    Target {
        base: fake.base_url(),
        headers: vec![
            ("auth-token", TOKEN.into()),
            ("restaurantId", RID.into()),
            ("Accept", "application/json".into()),
        ],
        write_headers: vec![("PublisherName", "zenchef-edge".into())],
        key_header: Some("PublisherModelId"),
    }
}

fn day_query(day: &str, limit: u32, page: u32) -> String {
    format!(
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]={day}&limit={limit}&page={page}"
    )
}

fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_filters_by_day_and_paginates() {
    let fake = fake_with(45, 20).await;
    // 45 + booking 2000 on the 29th = 46; limit 100 capped to 20.
    let day29 = |page| Case::get(day_query("2026-11-29", 100, page));
    let answers = check_all(
        &api(&fake),
        vec![
            day29(1).answers(200).field(
                "/paginator",
                json!({"total": 46, "count": 20, "limit": 20, "current_page": 1, "total_pages": 3,
                       "next_page": 2, "previous_page": null}),
            ),
            day29(1),
            day29(2),
            day29(3)
                .field("/paginator/count", json!(6))
                .field("/paginator/next_page", Value::Null)
                .field("/paginator/previous_page", json!(2)),
            // URL-encoded brackets work the same.
            Case::get("/bookings?filters%5B0%5D%5Bfield%5D=day&filters%5B0%5D%5Boperator%5D=%3D&filters%5B0%5D%5Bvalue%5D=2026-11-30&limit=5&page=1")
                .answers(200)
                .field("/data/0/id", json!(1000))
                .field("/paginator/total_pages", json!(1)),
            // Empty day: one empty page.
            Case::get(day_query("2026-12-25", 10, 1))
                .field("/paginator/total", json!(0))
                .field("/paginator/total_pages", json!(1)),
            Case::get("/bookings/1").field("/data/restaurant_id", json!(654321)),
        ],
    )
    .await;
    let all: Vec<i64> = answers[1..4].iter().flat_map(ids).collect();
    assert_eq!(all.len(), 46);
    assert!(!all.contains(&1000));
    // Every field of the booking object is present.
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
        assert!(answers[6]["data"].get(k).is_some(), "missing {k}");
    }
}

#[tokio::test]
async fn bad_filters_are_400() {
    let fake = fake_with(1, 100).await;
    let cases = [
        "/bookings?limit=10",
        "/bookings?filters[0][field]=time&filters[0][operator]==&filters[0][value]=20:00",
        "/bookings?filters[0][field]=day&filters[0][operator]=>&filters[0][value]=2026-11-29",
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]=29/11/2026",
        "/bookings?filters[0][field]=day&filters[0][value]=2026-11-29",
        "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]=2026-11-29&limit=0",
    ]
    .map(|q| Case::get(q).answers(400).message());
    check_all(&api(&fake), cases.into()).await;
}

#[tokio::test]
async fn credentials_and_write_headers() {
    let fake = fake_with(1, 100).await;
    let seat = || json!({"status": "seated"});
    check_all(
        &api(&fake),
        vec![
            Case::get("/tables").header("auth-token", "bad").answers(401),
            Case::get("/tables").header("restaurantId", "1").answers(403),
            Case::get("/tables").answers(200).field(
                "",
                json!({"data": [{"id": 17, "name": "12", "room": "Salle"}, {"id": 18, "name": "14", "room": "Salle"}]}),
            ),
            // Write without PublisherModelId / PublisherName.
            Case::send(Method::PATCH, "/bookings/1/changeStatus", seat())
                .answers(400)
                .message_has("PublisherModelId"),
            Case::write(Method::PATCH, "/bookings/1/changeStatus", seat(), "k")
                .without("PublisherName")
                .answers(400),
        ],
    )
    .await;
    // Token revoked mid-service.
    fake.set_token("new");
    check(&api(&fake), Case::get("/tables").answers(401)).await;
    assert_eq!(fake.booking(1).unwrap()["status"], "confirmed");
}

/// `PATCH /bookings/{id}/changeStatus` to `status` with key `key`.
fn change(id: i64, status: &str, key: &str) -> Case {
    Case::write(
        Method::PATCH,
        format!("/bookings/{id}/changeStatus"),
        json!({"status": status}),
        key,
    )
}

#[tokio::test]
async fn change_status_and_idempotency() {
    let fake = fake_with(2, 100).await;
    let api = api(&fake);
    let before = fake.booking(1).unwrap()["updated_at"].clone();
    let (_, v, _) = check(
        &api,
        change(1, "seated", "ev-1:seat")
            .answers(200)
            .field("/data/status", json!("seated")),
    )
    .await;
    assert_ne!(v["data"]["updated_at"], before);
    // Same key again: same answer, no second action.
    fake.update_booking(1, |b| b["status"] = json!("confirmed"));
    check(
        &api,
        change(1, "seated", "ev-1:seat").answers(200).field("", v),
    )
    .await;
    assert_eq!(fake.booking(1).unwrap()["status"], "confirmed");
    assert_eq!(fake.duplicates_suppressed(), 1);
    assert_eq!(fake.status_history(1), vec!["seated"]);
    let calls = fake.calls();
    let last = calls.last().unwrap();
    assert!(last.duplicate);
    assert_eq!(last.publisher_model_id.as_deref(), Some("ev-1:seat"));
    assert_eq!(last.body, json!({"status": "seated"}));
    check_all(
        &api,
        vec![
            // Errors.
            change(1, "eaten", "k2").answers(422).message_has("eaten"),
            change(77, "over", "k3").answers(404),
            Case::get("/bookings/77").answers(404),
            // A rejected write is not remembered: the same key may succeed later.
            change(2, "over", "k2").answers(200),
        ],
    )
    .await;
    assert_eq!(fake.status_history(2), vec!["over"]);
    // Repeating the current status is not a change.
    check(&api, change(2, "over", "k4").answers(200)).await;
    assert_eq!(fake.status_history(2), vec!["over"]);
}

#[tokio::test]
async fn walkin_creation_validates_and_is_idempotent() {
    let fake = fake_with(1, 100).await;
    let api = api(&fake);
    let body = json!({"day": "2026-11-29", "time": "20:15", "nb_guests": 3, "firstname": null,
                      "lastname": "Walk-in", "status": "seated", "reservation_type": "walkin",
                      "tables": ["14"], "country": "fr"});
    let create = |body: Value, key: &str| Case::write(Method::POST, "/bookings?force=1", body, key);
    let (_, v, _) = check(
        &api,
        create(body.clone(), "ev-9")
            .answers(201)
            .field("/data/tables", json!([{"id": 18, "name": "14"}]))
            .field("/data/customersheet", Value::Null)
            .field("/data/reservation_type", json!("walkin"))
            .field("/data/nb_guests", json!(3)),
    )
    .await;
    let id = v["data"]["id"].as_i64().unwrap();
    check(&api, create(body.clone(), "ev-9").answers(201).field("", v)).await;
    assert_eq!(fake.walkins().len(), 1);
    assert_eq!(fake.status_history(id), vec!["seated"]);
    let bad_fields = [
        ("day", json!("29/11/2026")),
        ("time", json!("8pm")),
        ("nb_guests", json!(0)),
        ("reservation_type", json!("party")),
        ("status", json!("happy")),
        ("tables", json!(["99"])),
        ("tables", json!([])),
    ];
    let mut cases: Vec<Case> = bad_fields
        .into_iter()
        .map(|(field, bad)| {
            let mut b = body.clone();
            b[field] = bad;
            create(b, &format!("bad-{field}-{id}"))
                .answers(422)
                .message_starts(field)
        })
        .collect();
    cases.push(Case::write(Method::POST, "/bookings", body, "noforce").answers(400));
    check_all(&api, cases).await;
    assert_eq!(fake.walkins().len(), 1);
}

fn ticket(id: &str, total: i64) -> Value {
    json!({"ticket_id": id, "currency": "EUR", "covers": 2, "total_cents": total, "tip_cents": 300,
           "paid_at": "2026-11-29T22:31:00+01:00",
           "lines": [{"name": "Entrecôte", "quantity": 2, "unit_price_cents": total / 2, "total_cents": total}],
           "payments": [{"method": "card", "amount_cents": total + 300}]})
}

/// `PUT /bookings/{booking}/pos_ticket` with `body` and key `key`.
fn attach(booking: i64, body: Value, key: &str) -> Case {
    Case::write(
        Method::PUT,
        format!("/bookings/{booking}/pos_ticket"),
        body,
        key,
    )
}

#[tokio::test]
async fn pos_ticket_replaces_and_recomputes_average_spend() {
    let fake = fake_with(1, 100).await;
    let api = api(&fake);
    // Sheet 998: visits 3, average 6150. Each row: the ticket attached to
    // booking 2000, then (visits, average spend) and the tickets kept.
    let sheet_cases = [
        // +1 ticket of 10000: (6150*3 + 10000) / 4 = 7112.5 → 7113 (half up).
        (
            attach(2000, ticket("O-1", 10000), "t1").answers(200),
            (4, 7113),
            1,
        ),
        // Same ticket_id with a new total replaces: (18450 + 8000) / 4 = 6612.5 → 6613.
        (attach(2000, ticket("O-1", 8000), "t2"), (4, 6613), 1),
        // A second ticket: (18450 + 8000 + 5001) / 5 = 6290.2 → 6290.
        (attach(2000, ticket("O-2", 5001), "t3"), (5, 6290), 2),
    ];
    for (case, (visits, average), kept) in sheet_cases {
        check(&api, case).await;
        let sheet = &fake.booking(2000).unwrap()["customersheet"];
        assert_eq!(
            (
                sheet["visits"].as_i64(),
                sheet["average_spend_cents"].as_i64()
            ),
            (Some(visits), Some(average))
        );
        assert_eq!(fake.tickets().len(), kept);
        assert_eq!(fake.tickets()["O-1"].0, 2000);
    }
    // Without a customersheet the ticket is kept, no average.
    check(&api, attach(1, ticket("O-3", 4200), "t4").answers(200)).await;
    assert_eq!(fake.tickets()["O-3"].0, 1);
    assert_eq!(fake.booking(1).unwrap()["customersheet"], Value::Null);
    // Validation and 404.
    let mut bad_currency = ticket("O-4", 100);
    bad_currency["currency"] = json!("euro");
    let mut no_quantity = ticket("O-4", 100);
    no_quantity["lines"][0]
        .as_object_mut()
        .unwrap()
        .remove("quantity");
    check_all(
        &api,
        vec![
            attach(1, bad_currency, "t5")
                .answers(422)
                .message_starts("currency"),
            attach(1, no_quantity, "t6")
                .answers(422)
                .message_starts("lines[0].quantity"),
            attach(5, ticket("O-5", 100), "t7").answers(404),
        ],
    )
    .await;
}

#[tokio::test]
async fn faults_down_status_ratelimit_timeout_latency_and_poison() {
    let fake = fake_with(1, 100).await;
    let api = api(&fake);
    // Down: the port really refuses connections, state is kept.
    fake.set_fault(Fault::Down).await.unwrap();
    let e = client()
        .get(format!("{}/tables", fake.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(std::net::TcpStream::connect(fake.addr()).is_err());
    // Each row: the fault set, then a request and its answer.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let fault_cases = [
        (Fault::None, Case::get("/bookings/1").answers(200)),
        (Fault::Status(503), Case::get("/tables").answers(503)),
        (
            Fault::RateLimit {
                retry_after: RetryAfter::Seconds(7),
            },
            Case::get("/tables")
                .answers(429)
                .answer_header("retry-after", "7"),
        ),
        (
            Fault::RateLimit {
                retry_after: RetryAfter::HttpDate(when),
            },
            Case::get("/tables"),
        ),
    ];
    let mut retry_after = None;
    for (fault, case) in fault_cases {
        fake.set_fault(fault).await.unwrap();
        retry_after = check(&api, case).await.2.get("retry-after").cloned();
    }
    let v = retry_after.unwrap();
    let v = v.to_str().unwrap();
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
    check(&api, Case::get("/tables")).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    fake.set_latency(Duration::ZERO);

    // Persistent poison on one booking's writes.
    let id = fake.fail_booking(1, 422, "booking locked");
    check_all(
        &api,
        vec![
            change(1, "seated", "p1")
                .answers(422)
                .field("/message", json!("booking locked")),
            Case::get("/bookings/1").answers(200),
        ],
    )
    .await;
    fake.clear_failure(id);
    check(&api, change(1, "seated", "p1").answers(200)).await;
    fake.fail_path_containing("/tables", 500, "boom");
    check(&api, Case::get("/tables").answers(500)).await;
    // Every request was recorded, with its answer.
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&0));
}

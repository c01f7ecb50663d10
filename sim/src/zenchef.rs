//! The Zenchef partner API fake (axum), exactly per docs/protocol/zenchef-api.md.
//!
//! Serves `http://127.0.0.1:<port>/api/v1` with the endpoints the agent uses:
//! `GET /bookings` (day filter, pagination), `GET /bookings/{id}`,
//! `PATCH /bookings/{id}/changeStatus`, `POST /bookings?force=1` (walk-in),
//! `PUT /bookings/{id}/pos_ticket` and `GET /tables`.
//!
//! Request pipeline ([`crate::faults`]), in order: recorded as a
//! [`CallRecord`] → latency → injected [`Fault`] → `auth-token` (401) and
//! `restaurantId` (403) →
//! `Content-Type: application/json` on writes (400) → `PublisherName` and
//! `PublisherModelId` on writes (400) → idempotency replay (a write whose
//! `PublisherModelId` already produced a 2xx answer gets that answer again and
//! acts no second time) → per-request injected failures → the endpoint →
//! answer delay ([`ZenchefFake::set_answer_delay`]: acted, not yet answered).
//!
//! Only 2xx answers are remembered for idempotency: a rejected or failed
//! write had no effect, so acting on its retry is still "once".
//!
//! Everything is observable on the [`ZenchefFake`] handle without HTTP, and
//! restaurant staff can be simulated with [`ZenchefFake::update_booking`],
//! [`ZenchefFake::cancel_booking`] and [`ZenchefFake::add_booking`].

// Handlers return ready-made error responses; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde_json::{Value, json};

use crate::faults::{Admit, Api, FaultLayer};
pub use crate::faults::{CallRecord, Fault, RetryAfter};
use crate::http_server::{
    header_str, is_write, json_error as err, parse_body, require_json, unprocessable,
};
use crate::pos::{paris_winter, rfc3339};

/// Booking statuses Zenchef knows (public list).
pub const STATUSES: &[&str] = &[
    "waiting",
    "waiting_customer",
    "confirmed",
    "canceled",
    "refused",
    "arrived",
    "seated",
    "over",
    "no_shown",
];

/// `reservation_type` values accepted on creation.
pub const RESERVATION_TYPES: &[&str] = &["reservation", "walkin"];

/// `limit` used when a list request gives none.
pub const DEFAULT_LIMIT: u32 = 20;

/// First id given to bookings created by the fake (walk-ins, `add_booking`
/// without id) when the seed has no larger id.
pub const FIRST_CREATED_ID: i64 = 900_001;

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct ZenchefConfig {
    /// Expected `restaurantId` header; also the bookings' `restaurant_id`.
    pub restaurant_id: String,
    /// Expected `auth-token` header.
    pub token: String,
    /// The restaurant's tables: `(id, name, room)`.
    pub tables: Vec<(i64, String, String)>,
    /// Seed bookings (booking objects as in the spec; missing fields are
    /// filled with `null`, a missing `id` gets a new one).
    pub bookings: Vec<Value>,
    /// Largest page size honoured (`limit` above it is capped); default 100.
    pub page_size_cap: u32,
    /// TCP port on `127.0.0.1`; `0` picks a free one.
    pub port: u16,
}

impl Default for ZenchefConfig {
    fn default() -> Self {
        ZenchefConfig {
            restaurant_id: "654321".into(),
            token: "zenchef-test-token".into(),
            tables: Vec::new(),
            bookings: Vec::new(),
            page_size_cap: 100,
            port: 0,
        }
    }
}

struct State_ {
    restaurant_id: String,
    token: String,
    tables: Vec<(i64, String, String)>,
    bookings: BTreeMap<i64, Value>,
    next_id: i64,
    last_updated: Option<DateTime<FixedOffset>>,
    status_history: HashMap<i64, Vec<String>>,
    walkins: Vec<i64>,
    tickets: BTreeMap<String, (i64, Value)>,
    /// customersheet id → (visits0, average_spend_cents0) from seed data.
    sheet_base: HashMap<i64, (i64, i64)>,
    idempotency: HashMap<String, (u16, Value)>,
    duplicates: u64,
    page_size_cap: u32,
}

struct Shared {
    state: Mutex<State_>,
}

/// A running Zenchef API fake. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct ZenchefFake {
    shared: Arc<Shared>,
    faults: FaultLayer,
}

impl std::fmt::Debug for ZenchefFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZenchefFake")
            .field("port", &self.port())
            .finish()
    }
}

fn now_paris() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&paris_winter())
}

/// Fills every field of the spec's booking object that `b` lacks with `null`
/// (and sensible defaults for `reservation_type`, `status`, `tables`).
fn normalise_booking(b: &mut Value, restaurant_id: &Value) {
    let obj = b.as_object_mut().expect("booking must be a JSON object");
    for k in [
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
        "customersheet",
        "created_at",
        "updated_at",
    ] {
        obj.entry(k).or_insert(Value::Null);
    }
    obj.entry("restaurant_id")
        .or_insert_with(|| restaurant_id.clone());
    obj.entry("reservation_type")
        .or_insert_with(|| json!("reservation"));
    obj.entry("status").or_insert_with(|| json!("confirmed"));
    obj.entry("tables").or_insert_with(|| json!([]));
}

fn restaurant_id_value(id: &str) -> Value {
    id.parse::<i64>().map(Value::from).unwrap_or(json!(id))
}

fn round_half_up_div(num: i64, den: i64) -> i64 {
    // num, den ≥ 0 in practice; floor((2n + d) / 2d) rounds half up.
    (2 * num + den).div_euclid(2 * den)
}

impl State_ {
    fn next_updated_at(&mut self) -> String {
        let mut t = now_paris().with_nanosecond_zero();
        if let Some(last) = self.last_updated
            && t <= last
        {
            t = last + chrono::Duration::seconds(1);
        }
        self.last_updated = Some(t);
        rfc3339(t)
    }

    fn insert_booking(&mut self, mut b: Value) -> i64 {
        let rid = restaurant_id_value(&self.restaurant_id);
        normalise_booking(&mut b, &rid);
        let id = match b.get("id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                let id = self.next_id;
                b["id"] = json!(id);
                id
            }
        };
        self.next_id = self.next_id.max(id + 1);
        if b["updated_at"].is_null() {
            b["updated_at"] = json!(self.next_updated_at());
        }
        if b["created_at"].is_null() {
            b["created_at"] = b["updated_at"].clone();
        }
        if let Some(sheet) = b["customersheet"].as_object()
            && let Some(sid) = sheet.get("id").and_then(Value::as_i64)
        {
            let visits = sheet.get("visits").and_then(Value::as_i64).unwrap_or(0);
            let avg = sheet
                .get("average_spend_cents")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            self.sheet_base.entry(sid).or_insert((visits, avg));
        }
        self.bookings.insert(id, b);
        id
    }

    fn touch(&mut self, id: i64) {
        let ts = self.next_updated_at();
        if let Some(b) = self.bookings.get_mut(&id) {
            b["updated_at"] = json!(ts);
        }
    }

    /// Recomputes visits and average spend of customersheet `sid` on every
    /// booking that embeds it.
    fn recompute_sheet(&mut self, sid: i64) {
        let (visits0, avg0) = self.sheet_base.get(&sid).copied().unwrap_or((0, 0));
        let sheet_of = |b: &Value| b["customersheet"]["id"].as_i64();
        let totals: Vec<i64> = self
            .tickets
            .values()
            .filter(|(bid, _)| self.bookings.get(bid).and_then(sheet_of) == Some(sid))
            .map(|(_, t)| t["total_cents"].as_i64().unwrap_or(0))
            .collect();
        let visits = visits0 + totals.len() as i64;
        let avg = if visits > 0 {
            round_half_up_div(avg0 * visits0 + totals.iter().sum::<i64>(), visits)
        } else {
            avg0
        };
        let ids: Vec<i64> = self
            .bookings
            .iter()
            .filter(|(_, b)| sheet_of(b) == Some(sid))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let b = self.bookings.get_mut(&id).expect("listed");
            let changed = b["customersheet"]["visits"] != json!(visits)
                || b["customersheet"]["average_spend_cents"] != json!(avg);
            if changed {
                b["customersheet"]["visits"] = json!(visits);
                b["customersheet"]["average_spend_cents"] = json!(avg);
                self.touch(id);
            }
        }
    }
}

trait ZeroNanos {
    fn with_nanosecond_zero(self) -> Self;
}
impl ZeroNanos for DateTime<FixedOffset> {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).expect("0 is valid")
    }
}

impl ZenchefFake {
    /// Starts the fake on `127.0.0.1:config.port` (or a free port).
    pub async fn start(config: ZenchefConfig) -> anyhow::Result<ZenchefFake> {
        let mut state = State_ {
            restaurant_id: config.restaurant_id,
            token: config.token,
            tables: config.tables,
            bookings: BTreeMap::new(),
            next_id: FIRST_CREATED_ID,
            last_updated: None,
            status_history: HashMap::new(),
            walkins: Vec::new(),
            tickets: BTreeMap::new(),
            sheet_base: HashMap::new(),
            idempotency: HashMap::new(),
            duplicates: 0,
            page_size_cap: config.page_size_cap.max(1),
        };
        for b in config.bookings {
            anyhow::ensure!(b.is_object(), "seed booking is not an object: {b}");
            state.insert_booking(b);
        }
        let (faults, listener) = FaultLayer::bind(config.port).await?;
        let fake = ZenchefFake {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
            }),
            faults,
        };
        fake.faults.serve(listener, fake.router()).await;
        Ok(fake)
    }

    fn router(&self) -> Router {
        let routes = Router::new()
            .route("/api/v1/bookings", get(list_bookings).post(create_booking))
            .route("/api/v1/bookings/{id}", get(get_booking))
            .route("/api/v1/bookings/{id}/changeStatus", patch(change_status))
            .route("/api/v1/bookings/{id}/pos_ticket", put(pos_ticket))
            .route("/api/v1/tables", get(list_tables));
        self.faults.mount(routes, self.shared.clone())
    }

    /// `http://127.0.0.1:<port>/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State_) -> T) -> T {
        f(&mut self.shared.state.lock().unwrap())
    }

    // ---- fault injection -------------------------------------------------

    crate::faults::fault_controls!();

    /// Delays every answer by `delay` **after** the request has acted (the
    /// booking is created, the status changed…): a client that gives up or
    /// dies meanwhile never learns that its call succeeded — the case
    /// idempotency keys exist for.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.faults.set_answer_delay(delay);
    }

    /// Makes the configured token invalid: from now on only `token` is
    /// accepted (401 otherwise).
    pub fn set_token(&self, token: &str) {
        self.with(|s| s.token = token.to_string());
    }

    /// Changes the expected `restaurantId` (403 otherwise).
    pub fn set_restaurant_id(&self, restaurant_id: &str) {
        self.with(|s| s.restaurant_id = restaurant_id.to_string());
    }

    /// Every write (PATCH/PUT/POST) on booking `booking_id` answers `status`
    /// with `{"message": message}` until removed.
    pub fn fail_booking(&self, booking_id: i64, status: u16, message: &str) -> u64 {
        let needle = format!("/bookings/{booking_id}/");
        self.fail_matching(
            move |m, p| m != "GET" && p.contains(&needle),
            status,
            message,
        )
    }

    // ---- observability ---------------------------------------------------

    /// All bookings, by ascending id.
    pub fn bookings(&self) -> Vec<Value> {
        self.with(|s| s.bookings.values().cloned().collect())
    }

    /// One booking.
    pub fn booking(&self, id: i64) -> Option<Value> {
        self.with(|s| s.bookings.get(&id).cloned())
    }

    /// Every status a booking entered **through the HTTP API**, in order:
    /// effective `changeStatus` calls (not repeats of the current status) and
    /// the creation status of a booking created by `POST /bookings`. Changes
    /// made with the staff mutators are not listed.
    pub fn status_history(&self, id: i64) -> Vec<String> {
        self.with(|s| s.status_history.get(&id).cloned().unwrap_or_default())
    }

    /// Bookings created by `POST /bookings` (walk-ins), current state, in
    /// creation order.
    pub fn walkins(&self) -> Vec<Value> {
        self.with(|s| {
            s.walkins
                .iter()
                .filter_map(|id| s.bookings.get(id).cloned())
                .collect()
        })
    }

    /// Attached POS tickets: `ticket_id → (booking_id, body as sent)`.
    pub fn tickets(&self) -> BTreeMap<String, (i64, Value)> {
        self.with(|s| s.tickets.clone())
    }

    /// Number of writes answered from the idempotency memory (acted once).
    pub fn duplicates_suppressed(&self) -> u64 {
        self.with(|s| s.duplicates)
    }

    // ---- staff mutators --------------------------------------------------

    /// Changes a booking as restaurant staff would in Zenchef; bumps
    /// `updated_at`. Returns false if the booking does not exist.
    pub fn update_booking(&self, id: i64, f: impl FnOnce(&mut Value)) -> bool {
        self.with(|s| {
            let Some(b) = s.bookings.get_mut(&id) else {
                return false;
            };
            f(b);
            s.touch(id);
            true
        })
    }

    /// Sets a booking's status to `canceled` (staff action); bumps
    /// `updated_at`.
    pub fn cancel_booking(&self, id: i64) -> bool {
        self.update_booking(id, |b| b["status"] = json!("canceled"))
    }

    /// Adds a booking (staff action or a new online reservation); missing
    /// fields become `null`, a missing `id` gets a new one. Returns the id.
    pub fn add_booking(&self, booking: Value) -> i64 {
        self.with(|s| {
            let mut b = booking;
            b["updated_at"] = Value::Null;
            s.insert_booking(b)
        })
    }
}

/// The largest number of `calls` that were in flight at the fake at the
/// same moment (from [`CallRecord::at`] to [`CallRecord::answered_at`]; a
/// call never answered counts until now). Calls the agent made at once for
/// different orders show up here as a value above 1.
pub fn max_in_flight(calls: &[CallRecord]) -> usize {
    let now = Instant::now();
    // +1 at arrival, −1 at answer; ends sort before starts at the same instant.
    let mut edges: Vec<(Instant, i32)> = Vec::with_capacity(calls.len() * 2);
    for c in calls {
        edges.push((c.at, 1));
        edges.push((c.answered_at.unwrap_or(now), -1));
    }
    edges.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    max.max(0) as usize
}

// ---- request pipeline ----------------------------------------------------

/// Zenchef's gate in the shared pipeline: credentials, write headers and the
/// idempotency memory (`PublisherModelId`).
impl Api for Shared {
    const KEY_HEADER: Option<&'static str> = Some("PublisherModelId");

    fn admit(&self, method: &Method, headers: &HeaderMap, _path: &str) -> Admit {
        let mut s = self.state.lock().unwrap();
        if header_str(headers, "auth-token") != Some(s.token.as_str()) {
            return Admit::Refuse(err(StatusCode::UNAUTHORIZED, "invalid auth-token"));
        }
        if header_str(headers, "restaurantId") != Some(s.restaurant_id.as_str()) {
            return Admit::Refuse(err(
                StatusCode::FORBIDDEN,
                "restaurantId not allowed for this token",
            ));
        }
        if !is_write(method) {
            return Admit::Pass;
        }
        if let Some(refusal) = require_json(method, headers) {
            return Admit::Refuse(refusal);
        }
        if header_str(headers, "PublisherName").is_none_or(str::is_empty) {
            return Admit::Refuse(err(StatusCode::BAD_REQUEST, "missing header PublisherName"));
        }
        let Some(key) = header_str(headers, "PublisherModelId").filter(|k| !k.is_empty()) else {
            return Admit::Refuse(err(
                StatusCode::BAD_REQUEST,
                "missing header PublisherModelId",
            ));
        };
        match s.idempotency.get(key).cloned() {
            Some((status, body)) => {
                s.duplicates += 1;
                let code = StatusCode::from_u16(status).expect("stored status");
                Admit::Replay((code, axum::Json(body)).into_response())
            }
            None => Admit::Pass,
        }
    }

    /// Remembers a write's 2xx answer under its `PublisherModelId`.
    fn answered(&self, method: &Method, headers: &HeaderMap, status: StatusCode, body: &Value) {
        if is_write(method)
            && status.is_success()
            && let Some(key) = header_str(headers, "PublisherModelId")
        {
            let mut s = self.state.lock().unwrap();
            s.idempotency
                .entry(key.to_string())
                .or_insert((status.as_u16(), body.clone()));
        }
    }
}

// ---- endpoints -------------------------------------------------------------

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded `(key, value)` pairs; a pair is split
/// at its first `=` (so `filters[0][operator]==` gives the value `=`).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn valid_day(s: &str) -> bool {
    s.len() == 10 && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn valid_time(s: &str) -> bool {
    s.len() == 5 && NaiveTime::parse_from_str(s, "%H:%M").is_ok()
}

async fn list_bookings(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let mut filters: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut limit: Option<&str> = None;
    let mut page: Option<&str> = None;
    let pairs = parse_query(query);
    for (k, v) in &pairs {
        if let Some(rest) = k.strip_prefix("filters[") {
            let Some((idx, rest)) = rest.split_once(']') else {
                return err(StatusCode::BAD_REQUEST, format!("malformed filter key {k}"));
            };
            let Some(attr) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
                return err(StatusCode::BAD_REQUEST, format!("malformed filter key {k}"));
            };
            filters
                .entry(idx.to_string())
                .or_default()
                .insert(attr.to_string(), v.clone());
        } else if k == "limit" {
            limit = Some(v);
        } else if k == "page" {
            page = Some(v);
        }
    }
    let mut day: Option<String> = None;
    for (idx, f) in &filters {
        let field = f.get("field").map(String::as_str);
        let op = f.get("operator").map(String::as_str);
        let value = f.get("value").map(String::as_str);
        match (field, op, value) {
            (Some("day"), Some("="), Some(v)) if valid_day(v) => day = Some(v.to_string()),
            (Some("day"), Some("="), Some(v)) => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("filters[{idx}][value]: {v:?} is not a YYYY-MM-DD day"),
                );
            }
            (Some("day"), Some(op), _) if op != "=" => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("filters[{idx}][operator]: unsupported operator {op:?}"),
                );
            }
            (Some(field), Some(_), Some(_)) if field != "day" => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("filters[{idx}][field]: unsupported field {field:?}"),
                );
            }
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("filters[{idx}]: field, operator and value are required"),
                );
            }
        }
    }
    let Some(day) = day else {
        return err(
            StatusCode::BAD_REQUEST,
            "a day filter is required: filters[0][field]=day&filters[0][operator]==&filters[0][value]=YYYY-MM-DD",
        );
    };
    let s = shared.state.lock().unwrap();
    let limit = match limit {
        None => DEFAULT_LIMIT.min(s.page_size_cap),
        Some(l) => match l.parse::<u32>() {
            Ok(l) if l >= 1 => l.min(s.page_size_cap),
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("limit: invalid value {l:?}"),
                );
            }
        },
    };
    let page = match page {
        None => 1,
        Some(p) => match p.parse::<u32>() {
            Ok(p) if p >= 1 => p,
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("page: invalid value {p:?}"),
                );
            }
        },
    };
    let all: Vec<&Value> = s
        .bookings
        .values()
        .filter(|b| b["day"].as_str() == Some(day.as_str()))
        .collect();
    let total = all.len() as u32;
    let total_pages = total.div_ceil(limit).max(1);
    let data: Vec<Value> = all
        .iter()
        .skip(((page - 1) * limit) as usize)
        .take(limit as usize)
        .map(|b| (*b).clone())
        .collect();
    let body = json!({
        "data": data,
        "paginator": {
            "total": total,
            "count": data.len(),
            "limit": limit,
            "current_page": page,
            "total_pages": total_pages,
            "next_page": if page < total_pages { json!(page + 1) } else { Value::Null },
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
        }
    });
    axum::Json(body).into_response()
}

fn parse_id(id: &str) -> Result<i64, Response> {
    id.parse::<i64>()
        .map_err(|_| err(StatusCode::NOT_FOUND, format!("booking {id} not found")))
}

async fn get_booking(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let s = shared.state.lock().unwrap();
    match s.bookings.get(&id) {
        Some(b) => axum::Json(json!({"data": b})).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("booking {id} not found")),
    }
}

/// The target of a write on `/bookings/{id}/…`: the booking id, which
/// must exist (404), and the body, a JSON object (400).
fn booking_write(
    s: &State_,
    id: &str,
    body: &Bytes,
) -> Result<(i64, serde_json::Map<String, Value>), Response> {
    let id = parse_id(id)?;
    if !s.bookings.contains_key(&id) {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("booking {id} not found"),
        ));
    }
    Ok((id, parse_body(body)?))
}

async fn change_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = shared.state.lock().unwrap();
    let (id, m) = match booking_write(&s, &id, &body) {
        Ok(target) => target,
        Err(r) => return r,
    };
    let Some(status) = m.get("status").and_then(Value::as_str) else {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status: required, one of waiting, waiting_customer, confirmed, canceled, refused, arrived, seated, over, no_shown",
        );
    };
    if !STATUSES.contains(&status) {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("status: unknown value {status:?}"),
        );
    }
    if s.bookings[&id]["status"].as_str() != Some(status) {
        s.bookings.get_mut(&id).expect("checked")["status"] = json!(status);
        s.touch(id);
        s.status_history
            .entry(id)
            .or_default()
            .push(status.to_string());
    }
    axum::Json(json!({"data": s.bookings[&id]})).into_response()
}

async fn create_booking(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query = parse_query(req.uri().query().unwrap_or(""));
    if !query.iter().any(|(k, v)| k == "force" && v == "1") {
        return err(
            StatusCode::BAD_REQUEST,
            "force=1 is required to create a booking without availability check",
        );
    }
    let bytes = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let m = match parse_body(&bytes) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let str_field = |k: &str| m.get(k).and_then(Value::as_str);
    let Some(day) = str_field("day").filter(|d| valid_day(d)) else {
        return unprocessable("day", "required, format YYYY-MM-DD");
    };
    let Some(time) = str_field("time").filter(|t| valid_time(t)) else {
        return unprocessable("time", "required, format HH:MM");
    };
    let Some(nb_guests) = m
        .get("nb_guests")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 1)
    else {
        return unprocessable("nb_guests", "required, an integer ≥ 1");
    };
    let Some(rtype) = str_field("reservation_type").filter(|t| RESERVATION_TYPES.contains(t))
    else {
        return unprocessable("reservation_type", "required, one of reservation, walkin");
    };
    let Some(status) = str_field("status").filter(|t| STATUSES.contains(t)) else {
        return unprocessable("status", "required, a known booking status");
    };
    for k in [
        "firstname",
        "lastname",
        "country",
        "email",
        "phone_number",
        "comment",
    ] {
        if m.get(k).is_some_and(|v| !v.is_null() && !v.is_string()) {
            return unprocessable(k, "must be a string");
        }
    }
    let mut s = shared.state.lock().unwrap();
    let Some(names) = m
        .get("tables")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return unprocessable("tables", "required, a non-empty array of table names");
    };
    let mut tables = Vec::new();
    for n in names {
        let Some(name) = n.as_str() else {
            return unprocessable("tables", "must contain table names (strings)");
        };
        let Some((tid, tname, _)) = s.tables.iter().find(|(_, tn, _)| tn == name) else {
            return unprocessable("tables", &format!("unknown table {name:?}"));
        };
        tables.push(json!({"id": tid, "name": tname}));
    }
    let booking = json!({
        "reservation_type": rtype,
        "day": day,
        "time": time,
        "nb_guests": nb_guests,
        "firstname": m.get("firstname").cloned().unwrap_or(Value::Null),
        "lastname": m.get("lastname").cloned().unwrap_or(Value::Null),
        "phone_number": m.get("phone_number").cloned().unwrap_or(Value::Null),
        "email": m.get("email").cloned().unwrap_or(Value::Null),
        "comment": m.get("comment").cloned().unwrap_or(Value::Null),
        "private_comment": null,
        "allergies": null,
        "status": status,
        "tables": tables,
        "customersheet": null,
    });
    let id = s.insert_booking(booking);
    s.walkins.push(id);
    s.status_history
        .entry(id)
        .or_default()
        .push(status.to_string());
    (
        StatusCode::CREATED,
        axum::Json(json!({"data": s.bookings[&id]})),
    )
        .into_response()
}

fn validate_ticket(m: &serde_json::Map<String, Value>) -> Result<(), Response> {
    let int = |k: &str| m.get(k).and_then(Value::as_i64);
    match m.get("ticket_id").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.chars().count() <= 64 => {}
        _ => {
            return Err(unprocessable(
                "ticket_id",
                "required, a string of 1–64 chars",
            ));
        }
    }
    match m.get("currency").and_then(Value::as_str) {
        Some(c) if c.len() == 3 && c.chars().all(|c| c.is_ascii_uppercase()) => {}
        _ => {
            return Err(unprocessable(
                "currency",
                "required, ISO 4217 code like EUR",
            ));
        }
    }
    if int("covers").is_none_or(|c| c < 1) {
        return Err(unprocessable("covers", "required, an integer ≥ 1"));
    }
    if int("total_cents").is_none() {
        return Err(unprocessable("total_cents", "required, integer cents"));
    }
    if int("tip_cents").is_none_or(|t| t < 0) {
        return Err(unprocessable("tip_cents", "required, integer cents ≥ 0"));
    }
    match m.get("paid_at").and_then(Value::as_str) {
        Some(t) if DateTime::parse_from_rfc3339(t).is_ok() => {}
        _ => return Err(unprocessable("paid_at", "required, RFC 3339 with offset")),
    }
    let Some(lines) = m.get("lines").and_then(Value::as_array) else {
        return Err(unprocessable("lines", "required, an array"));
    };
    for (i, l) in lines.iter().enumerate() {
        if !l["name"].is_string() {
            return Err(unprocessable(
                &format!("lines[{i}].name"),
                "required, a string",
            ));
        }
        for k in ["quantity", "unit_price_cents", "total_cents"] {
            if l[k].as_i64().is_none() {
                return Err(unprocessable(
                    &format!("lines[{i}].{k}"),
                    "required, an integer",
                ));
            }
        }
    }
    let Some(payments) = m.get("payments").and_then(Value::as_array) else {
        return Err(unprocessable("payments", "required, an array"));
    };
    for (i, p) in payments.iter().enumerate() {
        if !p["method"].is_string() {
            return Err(unprocessable(
                &format!("payments[{i}].method"),
                "required, a string",
            ));
        }
        if p["amount_cents"].as_i64().is_none() {
            return Err(unprocessable(
                &format!("payments[{i}].amount_cents"),
                "required, integer cents",
            ));
        }
    }
    Ok(())
}

async fn pos_ticket(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = shared.state.lock().unwrap();
    let (id, m) = match booking_write(&s, &id, &body) {
        Ok(target) => target,
        Err(r) => return r,
    };
    if let Err(r) = validate_ticket(&m) {
        return r;
    }
    let ticket_id = m["ticket_id"].as_str().expect("validated").to_string();
    let ticket = Value::Object(m);
    // The same ticket_id replaces (also when it moves to another booking).
    let previous = s.tickets.insert(ticket_id, (id, ticket));
    s.touch(id);
    let mut sheets = Vec::new();
    if let Some((old_booking, _)) = previous
        && let Some(sid) = s
            .bookings
            .get(&old_booking)
            .and_then(|b| b["customersheet"]["id"].as_i64())
    {
        sheets.push(sid);
    }
    if let Some(sid) = s.bookings[&id]["customersheet"]["id"].as_i64() {
        sheets.push(sid);
    }
    sheets.dedup();
    for sid in sheets {
        s.recompute_sheet(sid);
    }
    axum::Json(json!({"data": s.bookings[&id]})).into_response()
}

async fn list_tables(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.state.lock().unwrap();
    let data: Vec<Value> = s
        .tables
        .iter()
        .map(|(id, name, room)| json!({"id": id, "name": name, "room": room}))
        .collect();
    axum::Json(json!({"data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_handles_brackets_and_equals() {
        let q = parse_query(
            "filters%5B0%5D%5Bfield%5D=day&filters[0][operator]==&filters[0][value]=2026-11-29&limit=5",
        );
        assert_eq!(
            q,
            vec![
                ("filters[0][field]".into(), "day".into()),
                ("filters[0][operator]".into(), "=".into()),
                ("filters[0][value]".into(), "2026-11-29".into()),
                ("limit".into(), "5".into()),
            ]
        );
        assert_eq!(percent_decode("%3D"), "=");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn rounding_is_half_up() {
        assert_eq!(round_half_up_div(5, 2), 3);
        assert_eq!(round_half_up_div(4, 2), 2);
        assert_eq!(round_half_up_div(7, 3), 2);
        assert_eq!(round_half_up_div(8, 3), 3);
    }
}

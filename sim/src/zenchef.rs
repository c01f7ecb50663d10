//! The Zenchef partner API fake (axum), exactly per docs/protocol/zenchef-api.md.
//!
//! Serves `http://127.0.0.1:<port>/api/v1` with the endpoints the agent uses:
//! `GET /bookings` (day filter, pagination), `GET /bookings/{id}`,
//! `PATCH /bookings/{id}/changeStatus`, `POST /bookings?force=1` (walk-in),
//! `PUT /bookings/{id}/pos_ticket` and `GET /tables`.
//!
//! Request pipeline, in order: recorded as a [`CallRecord`] → latency →
//! injected [`Fault`] → `auth-token` (401) and `restaurantId` (403) →
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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::http_server::Listening;
use crate::pos::{paris_winter, rfc3339};
use crate::util::LOOPBACK;

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

/// The `Retry-After` header of an injected 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: <n>` (delay in seconds).
    Seconds(u64),
    /// `Retry-After: <IMF-fixdate>`, e.g. `Wed, 21 Oct 2026 07:28:00 GMT`.
    HttpDate(SystemTime),
}

/// An injected fault, applied to every request until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Normal service.
    None,
    /// The port stops listening (connection refused) and open connections
    /// are dropped; clearing the fault listens on the same port again, with
    /// all state kept.
    Down,
    /// Every request answers this HTTP status with `{"message":…}`.
    Status(u16),
    /// Every request answers 429 with a `Retry-After` header.
    RateLimit {
        /// The header's value.
        retry_after: RetryAfter,
    },
    /// Requests are accepted and never answered (the handler sleeps an hour).
    Timeout,
}

/// One HTTP request the fake received (also those refused by a fault).
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// 1-based arrival number.
    pub n: u64,
    /// Arrival time.
    pub at: Instant,
    /// When the answer was ready (`None` while unanswered). With
    /// [`CallRecord::at`] it gives the call's time in flight at the fake,
    /// e.g. to measure how many calls the agent had running at once.
    pub answered_at: Option<Instant>,
    /// When the answer was handed to the connection (`None` while
    /// unanswered); `done_at − at` includes the injected latency.
    pub done_at: Option<Instant>,
    /// HTTP method, e.g. `PATCH`.
    pub method: String,
    /// Path, e.g. `/api/v1/bookings/42/changeStatus`.
    pub path: String,
    /// Raw query string (`""` when none).
    pub query: String,
    /// The `PublisherModelId` header, if any.
    pub publisher_model_id: Option<String>,
    /// HTTP status answered (0 while unanswered, e.g. under [`Fault::Timeout`]).
    pub status: u16,
    /// `true` when this was an idempotent replay of an earlier write.
    pub duplicate: bool,
    /// The request body parsed as JSON (`Null` when empty, a string when not
    /// JSON).
    pub body: Value,
    /// The answer's body parsed as JSON (`Null` when none).
    pub response: Value,
}

/// `(method, "path?query") → matches`.
type Matcher = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct PathFailure {
    id: u64,
    matcher: Matcher,
    status: u16,
    message: String,
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
    calls: Vec<CallRecord>,
    fault: Fault,
    latency: Duration,
    answer_delay: Duration,
    failures: Vec<PathFailure>,
    next_failure_id: u64,
    page_size_cap: u32,
}

struct Shared {
    state: Mutex<State_>,
}

/// A running Zenchef API fake. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct ZenchefFake {
    shared: Arc<Shared>,
    port: u16,
    server: Arc<tokio::sync::Mutex<Option<Listening>>>,
}

impl std::fmt::Debug for ZenchefFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZenchefFake")
            .field("port", &self.port)
            .finish()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": message.into()}))).into_response()
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
            calls: Vec::new(),
            fault: Fault::None,
            latency: Duration::ZERO,
            answer_delay: Duration::ZERO,
            failures: Vec::new(),
            next_failure_id: 1,
            page_size_cap: config.page_size_cap.max(1),
        };
        for b in config.bookings {
            anyhow::ensure!(b.is_object(), "seed booking is not an object: {b}");
            state.insert_booking(b);
        }
        let listener = TcpListener::bind((LOOPBACK, config.port)).await?;
        let port = listener.local_addr()?.port();
        let fake = ZenchefFake {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
            }),
            port,
            server: Arc::new(tokio::sync::Mutex::new(None)),
        };
        let server = Listening::serve(listener, fake.router());
        *fake.server.lock().await = Some(server);
        Ok(fake)
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/bookings", get(list_bookings).post(create_booking))
            .route("/api/v1/bookings/{id}", get(get_booking))
            .route("/api/v1/bookings/{id}/changeStatus", patch(change_status))
            .route("/api/v1/bookings/{id}/pos_ticket", put(pos_ticket))
            .route("/api/v1/tables", get(list_tables))
            .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
            .layer(middleware::from_fn_with_state(
                self.shared.clone(),
                pipeline,
            ))
            .with_state(self.shared.clone())
    }

    /// `http://127.0.0.1:<port>/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    /// The TCP port (stays the same across [`Fault::Down`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State_) -> T) -> T {
        f(&mut self.shared.state.lock().unwrap())
    }

    // ---- fault injection -------------------------------------------------

    /// Sets the fault applied to every request from now on. `Down` stops
    /// listening and drops open connections; any other value listens again
    /// (same port, state kept) if the fake was down.
    pub async fn set_fault(&self, fault: Fault) -> anyhow::Result<()> {
        let mut server = self.server.lock().await;
        if fault == Fault::Down {
            // Dropping it stops listening and drops open connections.
            server.take();
        } else if server.is_none() {
            let listener = crate::http_server::rebind(self.port).await?;
            *server = Some(Listening::serve(listener, self.router()));
        }
        self.with(|s| s.fault = fault);
        Ok(())
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.with(|s| s.fault.clone())
    }

    /// Adds `latency` before every answer (also faults' answers).
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Delays every answer by `delay` **after** the request has acted (the
    /// booking is created, the status changed…): a client that gives up or
    /// dies meanwhile never learns that its call succeeded — the case
    /// idempotency keys exist for.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.with(|s| s.answer_delay = delay);
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

    /// Every request whose `path?query` contains `needle` answers `status`
    /// with `{"message": message}` until removed (persistent poison).
    /// Returns an id for [`ZenchefFake::clear_failure`].
    pub fn fail_path_containing(&self, needle: &str, status: u16, message: &str) -> u64 {
        let needle = needle.to_string();
        self.fail_matching(move |_, p| p.contains(&needle), status, message)
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

    /// Every request for which `matcher(method, "path?query")` is true
    /// answers `status` with `{"message": message}` until removed.
    pub fn fail_matching(
        &self,
        matcher: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
        status: u16,
        message: &str,
    ) -> u64 {
        self.with(|s| {
            let id = s.next_failure_id;
            s.next_failure_id += 1;
            s.failures.push(PathFailure {
                id,
                matcher: Arc::new(matcher),
                status,
                message: message.to_string(),
            });
            id
        })
    }

    /// Removes one injected per-request failure.
    pub fn clear_failure(&self, id: u64) {
        self.with(|s| s.failures.retain(|f| f.id != id));
    }

    /// Removes every injected per-request failure.
    pub fn clear_failures(&self) {
        self.with(|s| s.failures.clear());
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

    /// Every request received so far, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.with(|s| s.calls.clone())
    }

    /// The requests received from the `first`-th on (0-based; `calls_from(0)`
    /// is [`ZenchefFake::calls`]): cheap polling of a long run.
    pub fn calls_from(&self, first: usize) -> Vec<CallRecord> {
        self.with(|s| s.calls.get(first..).map(<[_]>::to_vec).unwrap_or_default())
    }

    /// Number of requests received so far.
    pub fn call_count(&self) -> usize {
        self.with(|s| s.calls.len())
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

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn http_date(t: SystemTime) -> String {
    let dt: DateTime<Utc> = t.into();
    dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn pipeline(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let pmid = header_str(&parts.headers, "PublisherModelId").map(str::to_string);
    let body_json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let (n, latency, fault) = {
        let mut s = shared.state.lock().unwrap();
        let n = s.calls.len() as u64 + 1;
        s.calls.push(CallRecord {
            n,
            at: Instant::now(),
            answered_at: None,
            done_at: None,
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            publisher_model_id: pmid.clone(),
            status: 0,
            duplicate: false,
            body: body_json,
            response: Value::Null,
        });
        (n, s.latency, s.fault.clone())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let finish = |resp: Response, duplicate: bool| async move {
        let (rparts, rbody) = resp.into_parts();
        let rbytes = axum::body::to_bytes(rbody, 64 * 1024 * 1024)
            .await
            .unwrap_or_default();
        let rjson: Value = serde_json::from_slice(&rbytes).unwrap_or(Value::Null);
        (rparts, rbytes, rjson, duplicate)
    };

    let outcome = 'outcome: {
        // 1. injected faults (the network / infrastructure in front).
        match fault {
            Fault::None => {}
            Fault::Down => {
                // Raced with a shutdown: behave like a dead server.
                break 'outcome finish(
                    err(StatusCode::SERVICE_UNAVAILABLE, "server going down"),
                    false,
                )
                .await;
            }
            Fault::Timeout => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                break 'outcome finish(err(StatusCode::GATEWAY_TIMEOUT, "timeout"), false).await;
            }
            Fault::Status(code) => {
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                break 'outcome finish(err(code, format!("injected fault {code}")), false).await;
            }
            Fault::RateLimit { retry_after } => {
                let value = match retry_after {
                    RetryAfter::Seconds(n) => n.to_string(),
                    RetryAfter::HttpDate(t) => http_date(t),
                };
                let mut resp = err(StatusCode::TOO_MANY_REQUESTS, "rate limited");
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, value.parse().expect("ascii"));
                break 'outcome finish(resp, false).await;
            }
        }
        // 2. credentials.
        let (token, rid) = {
            let s = shared.state.lock().unwrap();
            (s.token.clone(), s.restaurant_id.clone())
        };
        if header_str(&parts.headers, "auth-token") != Some(token.as_str()) {
            break 'outcome finish(err(StatusCode::UNAUTHORIZED, "invalid auth-token"), false)
                .await;
        }
        if header_str(&parts.headers, "restaurantId") != Some(rid.as_str()) {
            break 'outcome finish(
                err(
                    StatusCode::FORBIDDEN,
                    "restaurantId not allowed for this token",
                ),
                false,
            )
            .await;
        }
        // 3. write headers.
        if is_write(&method) {
            let ct = header_str(&parts.headers, "content-type").unwrap_or("");
            if !ct.to_ascii_lowercase().starts_with("application/json") {
                break 'outcome finish(
                    err(
                        StatusCode::BAD_REQUEST,
                        "Content-Type must be application/json",
                    ),
                    false,
                )
                .await;
            }
            if header_str(&parts.headers, "PublisherName").is_none_or(str::is_empty) {
                break 'outcome finish(
                    err(StatusCode::BAD_REQUEST, "missing header PublisherName"),
                    false,
                )
                .await;
            }
            let Some(key) = pmid.clone().filter(|k| !k.is_empty()) else {
                break 'outcome finish(
                    err(StatusCode::BAD_REQUEST, "missing header PublisherModelId"),
                    false,
                )
                .await;
            };
            // 4. idempotency replay.
            let replay = {
                let mut s = shared.state.lock().unwrap();
                let r = s.idempotency.get(&key).cloned();
                if r.is_some() {
                    s.duplicates += 1;
                }
                r
            };
            if let Some((status, body)) = replay {
                let code = StatusCode::from_u16(status).expect("stored status");
                break 'outcome finish((code, axum::Json(body)).into_response(), true).await;
            }
        }
        // 5. injected per-request failures.
        let target = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        let failure = {
            let s = shared.state.lock().unwrap();
            s.failures
                .iter()
                .find(|f| (f.matcher)(method.as_str(), &target))
                .map(|f| (f.status, f.message.clone()))
        };
        if let Some((status, message)) = failure {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            break 'outcome finish(err(code, message), false).await;
        }
        // 6. the endpoint.
        let req = Request::from_parts(parts, Body::from(bytes));
        let resp = next.run(req).await;
        let out = finish(resp, false).await;
        if is_write(&method)
            && out.0.status.is_success()
            && let Some(key) = pmid.clone()
        {
            let mut s = shared.state.lock().unwrap();
            s.idempotency
                .entry(key)
                .or_insert((out.0.status.as_u16(), out.2.clone()));
        }
        out
    };
    let (rparts, rbytes, rjson, duplicate) = outcome;
    let answer_delay = shared.state.lock().unwrap().answer_delay;
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    {
        let mut s = shared.state.lock().unwrap();
        if let Some(c) = s.calls.get_mut(n as usize - 1) {
            c.status = rparts.status.as_u16();
            c.answered_at = Some(Instant::now());
            c.done_at = c.answered_at;
            c.duplicate = duplicate;
            c.response = rjson;
        }
    }
    Response::from_parts(rparts, Body::from(rbytes))
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

fn parse_body(bytes: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(err(StatusCode::BAD_REQUEST, "body must be a JSON object")),
        Err(e) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        )),
    }
}

async fn change_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut s = shared.state.lock().unwrap();
    if !s.bookings.contains_key(&id) {
        return err(StatusCode::NOT_FOUND, format!("booking {id} not found"));
    }
    let m = match parse_body(&body) {
        Ok(m) => m,
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

fn unprocessable(field: &str, problem: &str) -> Response {
    err(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{field}: {problem}"),
    )
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
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut s = shared.state.lock().unwrap();
    if !s.bookings.contains_key(&id) {
        return err(StatusCode::NOT_FOUND, format!("booking {id} not found"));
    }
    let m = match parse_body(&body) {
        Ok(m) => m,
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

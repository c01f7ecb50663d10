//! The Zenchef Pay POS-connector fake (axum), exactly per
//! docs/protocol/zenchef-pay.md.
//!
//! Serves `http://127.0.0.1:<port>/pos/v1` with:
//! - `PUT /installations/{iid}/checks/{order_id}`: the bill as guests see it;
//!   a `version` not greater than the stored one answers `409` with
//!   `{"message":…, "stored_version": N}` and changes nothing;
//! - `GET /installations/{iid}/payments?after=<cursor>&limit=<n>`: the
//!   payment log from a cursor (`c_000128` = position 128 in the log);
//! - `POST /installations/{iid}/payments/{payment_id}/ack`: `settled` or
//!   `rejected` (with a `reason`; Zenchef Pay then refunds the guest).
//!
//! Request pipeline ([`crate::faults`]), in order: recorded as a
//! [`CallRecord`] → latency → injected [`Fault`] → `Authorization: Bearer <token>` (401) → the
//! installation id of the path (404) → `Content-Type: application/json` on
//! writes (400) → per-request injected failures → the endpoint.
//!
//! Guests are simulated on the handle: [`PayFake::guest_pays`] pays like the
//! Zenchef Pay app (only an `open` check, never more than what is due), and
//! [`PayFake::inject_payment`] creates any payment regardless, to test the
//! agent's refusals (docs/protocol/sync-rules.md rule 6). [`PayFake::duplicate_next_payment`]
//! makes the API return a payment twice. Everything is observable without
//! HTTP: checks and their accepted versions, payments, acks, refunds, calls.

// Handlers return ready-made error responses; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};

use crate::faults::{Admit, Api, FaultLayer};
pub use crate::faults::{CallRecord, Fault, RetryAfter};
use crate::http_server::{header_str, json_error as err, parse_body, require_json, unprocessable};
use crate::pos::{paris_winter, rfc3339};
use crate::util::random_hex;

/// Path prefix of every endpoint (the base URL ends with it).
pub const BASE_PATH: &str = "/pos/v1";

/// `limit` used when a payments request gives none (and the default cap).
pub const DEFAULT_PAGE_LIMIT: u32 = 100;

/// Check statuses Zenchef Pay knows: `open` (payable), `closed` (paid in
/// full, wherever), `voided`.
pub const CHECK_STATUSES: &[&str] = &["open", "closed", "voided"];

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct PayConfig {
    /// The Cashpad Installation ID served (`/installations/{iid}`); any
    /// other id answers 404.
    pub installation_id: String,
    /// Expected bearer token (`Authorization: Bearer <token>`).
    pub token: String,
    /// Largest page of payments returned (`limit` above it is capped);
    /// default [`DEFAULT_PAGE_LIMIT`].
    pub page_size_cap: u32,
    /// TCP port on `127.0.0.1`; `0` picks a free one.
    pub port: u16,
}

impl Default for PayConfig {
    fn default() -> Self {
        PayConfig {
            installation_id: "CP-4F2A91".into(),
            token: "pay-test-token".into(),
            page_size_cap: DEFAULT_PAGE_LIMIT,
            port: 0,
        }
    }
}

/// What became of a payment, from its acks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// No ack yet (or the payment does not exist).
    Unacked,
    /// Acked `settled` (the POS recorded it).
    Settled,
    /// Acked `rejected`: Zenchef Pay refunds the guest.
    Rejected {
        /// The reason the agent gave.
        reason: String,
    },
}

struct State_ {
    iid: String,
    token: String,
    checks: BTreeMap<String, Value>,
    history: BTreeMap<String, Vec<Value>>,
    payments: Vec<Value>,
    acks: Vec<Value>,
    states: HashMap<String, PaymentState>,
    duplicate_next: bool,
    clock: Option<DateTime<FixedOffset>>,
    page_size_cap: u32,
}

struct Shared {
    state: Mutex<State_>,
}

/// A running Zenchef Pay fake. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct PayFake {
    shared: Arc<Shared>,
    faults: FaultLayer,
}

impl std::fmt::Debug for PayFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayFake")
            .field("port", &self.port())
            .finish()
    }
}

/// The cursor naming position `position` of the payment log (the number of
/// payments before it): `c_` and at least six digits, e.g. `c_000128`.
pub fn cursor(position: usize) -> String {
    format!("c_{position:06}")
}

/// Parses a cursor made by [`cursor`]; `None` for anything else.
fn parse_cursor(s: &str) -> Option<usize> {
    let digits = s.strip_prefix("c_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl State_ {
    fn now(&self) -> DateTime<FixedOffset> {
        self.clock
            .unwrap_or_else(|| Utc::now().with_timezone(&paris_winter()))
    }

    fn new_payment_id(&self) -> String {
        loop {
            let id = format!("pay_{}", random_hex(12));
            if !self.payments.iter().any(|p| p["payment_id"] == id.as_str()) {
                return id;
            }
        }
    }
}

impl PayFake {
    /// Starts the fake on `127.0.0.1:config.port` (or a free port).
    pub async fn start(config: PayConfig) -> anyhow::Result<PayFake> {
        let state = State_ {
            iid: config.installation_id,
            token: config.token,
            checks: BTreeMap::new(),
            history: BTreeMap::new(),
            payments: Vec::new(),
            acks: Vec::new(),
            states: HashMap::new(),
            duplicate_next: false,
            clock: None,
            page_size_cap: config.page_size_cap.max(1),
        };
        let (faults, listener) = FaultLayer::bind(config.port).await?;
        let fake = PayFake {
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
            .route(
                "/pos/v1/installations/{iid}/checks/{order_id}",
                put(put_check),
            )
            .route("/pos/v1/installations/{iid}/payments", get(list_payments))
            .route(
                "/pos/v1/installations/{iid}/payments/{payment_id}/ack",
                post(ack_payment),
            );
        self.faults.mount(routes, self.shared.clone())
    }

    /// `http://127.0.0.1:<port>/pos/v1` (the agent's `base_url`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}{BASE_PATH}", self.port())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State_) -> T) -> T {
        f(&mut self.shared.state.lock().unwrap())
    }

    // ---- fault injection -------------------------------------------------

    crate::faults::fault_controls!();

    /// From now on only `token` is accepted as bearer token (401 otherwise).
    pub fn set_token(&self, token: &str) {
        self.with(|s| s.token = token.to_string());
    }

    /// Changes the installation id served (other ids answer 404).
    pub fn set_installation_id(&self, iid: &str) {
        self.with(|s| s.iid = iid.to_string());
    }

    /// Fixes the clock used for `paid_at` of new payments (`None` = the
    /// wall clock at `+01:00`).
    pub fn set_clock(&self, at: Option<DateTime<FixedOffset>>) {
        self.with(|s| s.clock = at);
    }

    /// The "same payment returned twice by the API" fault, armed once: the
    /// next `GET /payments` page whose `after` cursor is past at least one
    /// payment starts with the payment just before that cursor (the last
    /// one of the previous page) again; `next_cursor` is unaffected. A page
    /// read from the beginning keeps the fault armed.
    pub fn duplicate_next_payment(&self) {
        self.with(|s| s.duplicate_next = true);
    }

    /// Whether [`PayFake::duplicate_next_payment`] is still armed.
    pub fn duplicate_pending(&self) -> bool {
        self.with(|s| s.duplicate_next)
    }

    // ---- guests ----------------------------------------------------------

    /// A guest pays `amount_cents` (bill share, tip excluded) plus
    /// `tip_cents` for `order_id` with `method` (e.g. `card`) from the
    /// Zenchef Pay app. Refused (`Err` with the reason, no payment created)
    /// when the order has no check, its check is not `open`, or
    /// `amount_cents` exceeds `total_cents − paid_cents` of the current
    /// check: guests must never be able to pay a bill twice. Also refused:
    /// `amount_cents < 1`, `tip_cents < 0`. Answers the new `payment_id`
    /// (`pay_<12 hex>`), appended to the payment log with `paid_at` = the
    /// fake's clock (RFC 3339, `+01:00`).
    pub fn guest_pays(
        &self,
        order_id: &str,
        amount_cents: i64,
        tip_cents: i64,
        method: &str,
    ) -> Result<String, String> {
        if amount_cents < 1 {
            return Err(format!("amount_cents must be ≥ 1, got {amount_cents}"));
        }
        if tip_cents < 0 {
            return Err(format!("tip_cents must be ≥ 0, got {tip_cents}"));
        }
        self.with(|s| {
            let Some(check) = s.checks.get(order_id) else {
                return Err(format!("order {order_id} has no check in Zenchef Pay"));
            };
            let status = check["status"].as_str().unwrap_or("");
            if status != "open" {
                return Err(format!(
                    "check of order {order_id} is {status}: it can no longer be paid"
                ));
            }
            let due = check["total_cents"].as_i64().unwrap_or(0)
                - check["paid_cents"].as_i64().unwrap_or(0);
            if amount_cents > due {
                return Err(format!(
                    "amount {amount_cents} exceeds what is due on order {order_id} ({due})"
                ));
            }
            let payment_id = s.new_payment_id();
            let paid_at = rfc3339(s.now());
            s.payments.push(json!({
                "payment_id": payment_id,
                "order_id": order_id,
                "amount_cents": amount_cents,
                "tip_cents": tip_cents,
                "method": method,
                "paid_at": paid_at,
            }));
            Ok(payment_id)
        })
    }

    /// Appends any payment to the log, whatever the checks say (unknown
    /// order, already paid, too large, malformed…). A JSON object gets a
    /// fresh `payment_id` and `paid_at` when it lacks them (a given
    /// `payment_id` is kept even if it already exists); anything else is
    /// stored as is. Answers the payment's `payment_id` (`""` when it has
    /// none).
    pub fn inject_payment(&self, payment: Value) -> String {
        self.with(|s| {
            let mut p = payment;
            if let Some(obj) = p.as_object_mut() {
                if !obj.contains_key("payment_id") {
                    obj.insert("payment_id".into(), json!(s.new_payment_id()));
                }
                if !obj.contains_key("paid_at") {
                    obj.insert("paid_at".into(), json!(rfc3339(s.now())));
                }
            }
            let id = p["payment_id"].as_str().unwrap_or("").to_string();
            s.payments.push(p);
            id
        })
    }

    // ---- observability ---------------------------------------------------

    /// Current checks by `order_id`, as last accepted (bodies as sent).
    pub fn checks(&self) -> BTreeMap<String, Value> {
        self.with(|s| s.checks.clone())
    }

    /// The current check of `order_id`.
    pub fn check(&self, order_id: &str) -> Option<Value> {
        self.with(|s| s.checks.get(order_id).cloned())
    }

    /// Every accepted version of `order_id`'s check, in order (bodies as
    /// sent; refused PUTs are not listed, see [`PayFake::calls`]).
    pub fn check_history(&self, order_id: &str) -> Vec<Value> {
        self.with(|s| s.history.get(order_id).cloned().unwrap_or_default())
    }

    /// The payment log, in order (cursor position = index).
    pub fn payments(&self) -> Vec<Value> {
        self.with(|s| s.payments.clone())
    }

    /// The first payment with this id.
    pub fn payment(&self, payment_id: &str) -> Option<Value> {
        self.with(|s| {
            s.payments
                .iter()
                .find(|p| p["payment_id"] == payment_id)
                .cloned()
        })
    }

    /// Every ack received for `payment_id`, in order (also duplicates and
    /// refused contradictions): `{"payment_id", "status", "reason" (string or
    /// null), "duplicate": bool, "conflict": bool, "http_status": u16}`.
    pub fn acks(&self, payment_id: &str) -> Vec<Value> {
        self.with(|s| {
            s.acks
                .iter()
                .filter(|a| a["payment_id"] == payment_id)
                .cloned()
                .collect()
        })
    }

    /// Every ack received (same shape as [`PayFake::acks`]), in order.
    pub fn all_acks(&self) -> Vec<Value> {
        self.with(|s| s.acks.clone())
    }

    /// What became of `payment_id` (its first accepted ack).
    pub fn payment_state(&self, payment_id: &str) -> PaymentState {
        self.with(|s| {
            s.states
                .get(payment_id)
                .cloned()
                .unwrap_or(PaymentState::Unacked)
        })
    }

    /// Payments acked `rejected` (Zenchef Pay refunds them), in log order,
    /// each with a `"reason"` field added.
    pub fn refunds(&self) -> Vec<Value> {
        self.with(|s| {
            s.payments
                .iter()
                .filter_map(|p| {
                    let id = p["payment_id"].as_str()?;
                    match s.states.get(id) {
                        Some(PaymentState::Rejected { reason }) => {
                            let mut p = p.clone();
                            p["reason"] = json!(reason);
                            Some(p)
                        }
                        _ => None,
                    }
                })
                .collect()
        })
    }

    /// Waits until `order_id` has a check for which `condition` holds
    /// (polled every 20 ms); answers it, or fails after `timeout` naming the
    /// last check seen.
    pub async fn wait_for_check(
        &self,
        order_id: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let check = self.check(order_id);
            if let Some(c) = &check
                && condition(c)
            {
                return Ok(c.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for the check of {order_id}; last: {check:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- request pipeline ----------------------------------------------------

/// The `{iid}` segment of `/pos/v1/installations/{iid}/…`.
fn path_iid(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix(BASE_PATH)?
        .strip_prefix("/installations/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Zenchef Pay's gate in the shared pipeline: the bearer token, the
/// installation of the path, JSON writes.
impl Api for Shared {
    fn admit(&self, method: &Method, headers: &HeaderMap, path: &str) -> Admit {
        let (token, iid) = {
            let s = self.state.lock().unwrap();
            (s.token.clone(), s.iid.clone())
        };
        let bearer = header_str(headers, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if bearer != Some(token.as_str()) {
            return Admit::Refuse(err(StatusCode::UNAUTHORIZED, "invalid bearer token"));
        }
        if let Some(got) = path_iid(path)
            && got != iid
        {
            return Admit::Refuse(err(
                StatusCode::NOT_FOUND,
                format!("unknown installation {got:?}"),
            ));
        }
        match require_json(method, headers) {
            Some(refusal) => Admit::Refuse(refusal),
            None => Admit::Pass,
        }
    }
}

// ---- endpoints -------------------------------------------------------------

/// Validates a check body (docs/protocol/zenchef-pay.md "Checks"); the error names
/// the first bad field.
fn validate_check(m: &serde_json::Map<String, Value>) -> Result<(), Response> {
    let int = |k: &str| m.get(k).and_then(Value::as_i64);
    match m.get("table").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => {}
        _ => return Err(unprocessable("table", "required, a non-empty table name")),
    }
    if int("covers").is_none_or(|c| c < 1) {
        return Err(unprocessable("covers", "required, an integer ≥ 1"));
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
    match m.get("status").and_then(Value::as_str) {
        Some(s) if CHECK_STATUSES.contains(&s) => {}
        _ => {
            return Err(unprocessable(
                "status",
                "required, one of open, closed, voided",
            ));
        }
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
    if int("total_cents").is_none_or(|t| t < 0) {
        return Err(unprocessable("total_cents", "required, integer cents ≥ 0"));
    }
    if int("paid_cents").is_none_or(|p| p < 0) {
        return Err(unprocessable("paid_cents", "required, integer cents ≥ 0"));
    }
    if m.get("version").and_then(Value::as_u64).is_none() {
        return Err(unprocessable("version", "required, an integer ≥ 0"));
    }
    Ok(())
}

async fn put_check(
    State(shared): State<Arc<Shared>>,
    Path((_iid, order_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = validate_check(&m) {
        return r;
    }
    let version = m["version"].as_u64().expect("validated");
    let mut s = shared.state.lock().unwrap();
    let stored = s.checks.get(&order_id).map(|c| c["version"].as_u64());
    if let Some(stored) = stored {
        let stored = stored.unwrap_or(0);
        if version <= stored {
            return (
                StatusCode::CONFLICT,
                axum::Json(json!({
                    "message": format!(
                        "check {order_id}: version {version} is not greater than the stored version {stored}"
                    ),
                    "stored_version": stored,
                })),
            )
                .into_response();
        }
    }
    let check = Value::Object(m);
    s.checks.insert(order_id.clone(), check.clone());
    s.history
        .entry(order_id.clone())
        .or_default()
        .push(check.clone());
    let code = if stored.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        code,
        axum::Json(json!({"order_id": order_id, "version": version, "status": check["status"]})),
    )
        .into_response()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

async fn list_payments(
    State(shared): State<Arc<Shared>>,
    Path(_iid): Path<String>,
    req: Request,
) -> Response {
    let pairs = parse_query(req.uri().query().unwrap_or(""));
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    };
    let mut s = shared.state.lock().unwrap();
    let limit = match get("limit") {
        None => DEFAULT_PAGE_LIMIT.min(s.page_size_cap),
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
    let start = match get("after") {
        None => 0,
        Some(c) => match parse_cursor(c) {
            Some(p) if p <= s.payments.len() => p,
            _ => {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("after: unknown cursor {c:?}"),
                );
            }
        },
    };
    let end = (start + limit as usize).min(s.payments.len());
    let mut page: Vec<Value> = s.payments[start..end].to_vec();
    if s.duplicate_next && start > 0 {
        page.insert(0, s.payments[start - 1].clone());
        s.duplicate_next = false;
    }
    axum::Json(json!({"payments": page, "next_cursor": cursor(end)})).into_response()
}

async fn ack_payment(
    State(shared): State<Arc<Shared>>,
    Path((_iid, payment_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut s = shared.state.lock().unwrap();
    if !s
        .payments
        .iter()
        .any(|p| p["payment_id"] == payment_id.as_str())
    {
        return err(
            StatusCode::NOT_FOUND,
            format!("payment {payment_id} not found"),
        );
    }
    let m = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let status = m.get("status").and_then(Value::as_str).unwrap_or("");
    let new_state = match status {
        "settled" => PaymentState::Settled,
        "rejected" => match m.get("reason").and_then(Value::as_str) {
            Some(r) if !r.trim().is_empty() => PaymentState::Rejected {
                reason: r.to_string(),
            },
            _ => {
                return unprocessable(
                    "reason",
                    "required when status is rejected, a non-empty string",
                );
            }
        },
        _ => return unprocessable("status", "required, one of settled, rejected"),
    };
    let reason = m.get("reason").cloned().unwrap_or(Value::Null);
    let current = s.states.get(&payment_id).cloned();
    let (duplicate, conflict) = match &current {
        None => (false, false),
        Some(PaymentState::Settled) => (status == "settled", status != "settled"),
        Some(PaymentState::Rejected { .. }) => (status == "rejected", status != "rejected"),
        Some(PaymentState::Unacked) => (false, false),
    };
    let http_status: u16 = if conflict { 409 } else { 200 };
    s.acks.push(json!({
        "payment_id": payment_id, "status": status, "reason": reason,
        "duplicate": duplicate, "conflict": conflict, "http_status": http_status,
    }));
    if conflict {
        let was = match current {
            Some(PaymentState::Rejected { .. }) => "rejected",
            _ => "settled",
        };
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "message": format!("payment {payment_id} is already {was}"),
                "status": was,
            })),
        )
            .into_response();
    }
    if !duplicate {
        s.states.insert(payment_id.clone(), new_state);
    }
    axum::Json(json!({"payment_id": payment_id, "status": status, "duplicate": duplicate}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(cursor(128), "c_000128");
        assert_eq!(cursor(1_234_567), "c_1234567");
        assert_eq!(parse_cursor("c_000128"), Some(128));
        assert_eq!(parse_cursor("c_0"), Some(0));
        for bad in ["", "c_", "c_12a", "128", "C_000001", "c_-1", "c_+1"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn installation_is_read_from_the_path() {
        assert_eq!(
            path_iid("/pos/v1/installations/CP-1/checks/O-1"),
            Some("CP-1")
        );
        assert_eq!(path_iid("/pos/v1/installations/CP-1"), Some("CP-1"));
        assert_eq!(path_iid("/api/v1/bookings"), None);
    }
}

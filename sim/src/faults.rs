//! The fault-injection layer the HTTP fakes share ([`crate::zenchef`] and
//! [`crate::pay`]): the outage ([`Fault::Down`]: the port refuses, open
//! connections drop), the whole-service faults ([`Fault`]), the latency and
//! answer delay, the per-request failure script and the call log.
//!
//! Request pipeline, in order (`pipeline`): recorded as a [`CallRecord`] →
//! latency → injected [`Fault`] → the fake's own gate (`Api::admit`:
//! credentials, headers, idempotent replay) → per-request injected failures
//! (`fail_matching`) → the endpoint (`Api::answered` sees its answer) →
//! answer delay → the answer is recorded. The fakes expose the controls
//! with the same names and meaning (`fault_controls!`).
//!
//! Every error answer of the layer is `{"message": …}` like the fakes' own
//! (docs/protocol/zenchef-api.md "Errors", docs/protocol/zenchef-pay.md
//! "Errors").

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::http_server::{Listening, header_str, json_error};
use crate::util::LOOPBACK;

/// Largest request or answer body the layer buffers (bytes).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

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

/// One HTTP request a fake received (also those refused by a fault).
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
    /// The idempotency key header (Zenchef's `PublisherModelId`; the Pay
    /// fake has none), if the request carried it.
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

/// What a fake's gate decides about a request that passed the injected
/// fault.
pub(crate) enum Admit {
    /// On to the per-request failures and the endpoint.
    Pass,
    /// Refused with this answer (401, 403, 400…).
    Refuse(Response),
    /// Answered from the idempotency memory: recorded as a duplicate, the
    /// endpoint does not act.
    Replay(Response),
}

/// A fake's own part of the pipeline.
pub(crate) trait Api: Send + Sync + 'static {
    /// The request header recorded as [`CallRecord::publisher_model_id`].
    const KEY_HEADER: Option<&'static str> = None;

    /// Credentials and headers, checked after the injected fault and before
    /// the per-request failures.
    fn admit(&self, method: &Method, headers: &HeaderMap, path: &str) -> Admit;

    /// Sees every answer of the endpoint itself (not the layer's, not a
    /// refusal or replay): `status` and the body parsed as JSON.
    fn answered(&self, _method: &Method, _headers: &HeaderMap, _status: StatusCode, _body: &Value) {
    }
}

/// `(method, "path?query") → matches`.
type Matcher = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// One scripted per-request failure.
struct Failure {
    id: u64,
    matcher: Matcher,
    status: u16,
    message: String,
}

/// The layer's state: what is injected and what was received.
struct Injected {
    fault: Fault,
    latency: Duration,
    answer_delay: Duration,
    failures: Vec<Failure>,
    next_failure_id: u64,
    calls: Vec<CallRecord>,
}

/// The fault-injection layer of one fake: its listener (for [`Fault::Down`]),
/// what is injected and the call log. Cheap to clone (shared handle).
#[derive(Clone)]
pub(crate) struct FaultLayer {
    port: u16,
    injected: Arc<Mutex<Injected>>,
    server: Arc<tokio::sync::Mutex<Option<Listening>>>,
}

impl FaultLayer {
    /// Binds `127.0.0.1:port` (`0` picks a free port); serve the fake's
    /// router on the listener with [`FaultLayer::serve`]. Errors: the port
    /// is taken.
    pub(crate) async fn bind(port: u16) -> anyhow::Result<(FaultLayer, TcpListener)> {
        let listener = TcpListener::bind((LOOPBACK, port)).await?;
        let layer = FaultLayer {
            port: listener.local_addr()?.port(),
            injected: Arc::new(Mutex::new(Injected {
                fault: Fault::None,
                latency: Duration::ZERO,
                answer_delay: Duration::ZERO,
                failures: Vec::new(),
                next_failure_id: 1,
                calls: Vec::new(),
            })),
            server: Arc::new(tokio::sync::Mutex::new(None)),
        };
        Ok((layer, listener))
    }

    /// A fake's `routes` behind the layer: unknown paths answer 404
    /// `{"message": "no such endpoint"}`, every request runs [`pipeline`]
    /// with `api` as the gate, and handlers get `api` as their state.
    pub(crate) fn mount<A: Api>(&self, routes: Router<Arc<A>>, api: Arc<A>) -> Router {
        routes
            .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
            .layer(axum::middleware::from_fn_with_state(
                (self.clone(), api.clone()),
                pipeline::<A>,
            ))
            .with_state(api)
    }

    /// Serves `router` (from [`FaultLayer::mount`]) on `listener`.
    pub(crate) async fn serve(&self, listener: TcpListener, router: Router) {
        *self.server.lock().await = Some(Listening::serve(listener, router));
    }

    /// The TCP port (stays the same across [`Fault::Down`]).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn with<T>(&self, f: impl FnOnce(&mut Injected) -> T) -> T {
        f(&mut self.injected.lock().unwrap())
    }

    /// Sets the fault applied to every request from now on. `Down` stops
    /// listening and drops open connections; any other value listens again
    /// (same port, state kept, `router()` served) if the fake was down.
    /// Errors: the port could not be bound again.
    pub(crate) async fn set_fault(
        &self,
        fault: Fault,
        router: impl FnOnce() -> Router,
    ) -> anyhow::Result<()> {
        let mut server = self.server.lock().await;
        if fault == Fault::Down {
            // Dropping it stops listening and drops open connections.
            server.take();
        } else if server.is_none() {
            let listener = crate::http_server::rebind(self.port).await?;
            *server = Some(Listening::serve(listener, router()));
        }
        self.with(|s| s.fault = fault);
        Ok(())
    }

    /// The current fault.
    pub(crate) fn fault(&self) -> Fault {
        self.with(|s| s.fault.clone())
    }

    /// Adds `latency` before every answer (also faults' answers).
    pub(crate) fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// Delays every answer by `delay` after the endpoint acted.
    pub(crate) fn set_answer_delay(&self, delay: Duration) {
        self.with(|s| s.answer_delay = delay);
    }

    /// Every request whose `path?query` contains `needle` answers `status`
    /// with `{"message": message}` until removed; answers the failure's id.
    pub(crate) fn fail_path_containing(&self, needle: &str, status: u16, message: &str) -> u64 {
        let needle = needle.to_string();
        self.fail_matching(move |_, p| p.contains(&needle), status, message)
    }

    /// Every request for which `matcher(method, "path?query")` is true
    /// answers `status` (an invalid code answers 422) with
    /// `{"message": message}` until removed; answers the failure's id.
    pub(crate) fn fail_matching(
        &self,
        matcher: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
        status: u16,
        message: &str,
    ) -> u64 {
        self.with(|s| {
            let id = s.next_failure_id;
            s.next_failure_id += 1;
            s.failures.push(Failure {
                id,
                matcher: Arc::new(matcher),
                status,
                message: message.to_string(),
            });
            id
        })
    }

    /// Removes one injected per-request failure.
    pub(crate) fn clear_failure(&self, id: u64) {
        self.with(|s| s.failures.retain(|f| f.id != id));
    }

    /// Removes every injected per-request failure.
    pub(crate) fn clear_failures(&self) {
        self.with(|s| s.failures.clear());
    }

    /// Every request received so far, in arrival order.
    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.with(|s| s.calls.clone())
    }

    /// The requests received from the `first`-th on (0-based).
    pub(crate) fn calls_from(&self, first: usize) -> Vec<CallRecord> {
        self.with(|s| s.calls.get(first..).map(<[_]>::to_vec).unwrap_or_default())
    }

    /// Number of requests received so far.
    pub(crate) fn call_count(&self) -> usize {
        self.with(|s| s.calls.len())
    }

    /// Records an arriving request; answers its number, the latency and the
    /// fault to apply.
    fn arrive(&self, record: CallRecord) -> (u64, Duration, Fault) {
        self.with(|s| {
            let n = s.calls.len() as u64 + 1;
            s.calls.push(CallRecord { n, ..record });
            (n, s.latency, s.fault.clone())
        })
    }

    /// The scripted failure for `method` on `target` (`path?query`), if any.
    fn failure_for(&self, method: &Method, target: &str) -> Option<Response> {
        let (status, message) = self.with(|s| {
            s.failures
                .iter()
                .find(|f| (f.matcher)(method.as_str(), target))
                .map(|f| (f.status, f.message.clone()))
        })?;
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Some(json_error(code, message))
    }

    /// Records call `n`'s answer.
    fn answer(&self, n: u64, status: StatusCode, duplicate: bool, response: Value) {
        self.with(|s| {
            if let Some(c) = s.calls.get_mut(n as usize - 1) {
                c.status = status.as_u16();
                c.answered_at = Some(Instant::now());
                c.done_at = c.answered_at;
                c.duplicate = duplicate;
                c.response = response;
            }
        });
    }
}

/// The public fault-injection controls of a fake, the same on both: expands
/// inside `impl Fake` where the fake has a `faults: FaultLayer` field and a
/// `router(&self) -> Router` method (to listen again after
/// [`Fault::Down`]).
macro_rules! fault_controls {
    () => {
        /// The TCP port (stays the same across [`Fault::Down`]).
        pub fn port(&self) -> u16 {
            self.faults.port()
        }

        /// `127.0.0.1:<port>`.
        pub fn addr(&self) -> std::net::SocketAddr {
            std::net::SocketAddr::from((crate::util::LOOPBACK, self.port()))
        }

        /// Sets the fault applied to every request from now on. `Down` stops
        /// listening (connection refused) and drops open connections; any
        /// other value listens again on the same port, state kept, if the
        /// fake was down. Errors: the port could not be bound again.
        pub async fn set_fault(&self, fault: Fault) -> anyhow::Result<()> {
            self.faults.set_fault(fault, || self.router()).await
        }

        /// The current fault.
        pub fn fault(&self) -> Fault {
            self.faults.fault()
        }

        /// Adds `latency` before every answer (also faults' answers).
        pub fn set_latency(&self, latency: std::time::Duration) {
            self.faults.set_latency(latency);
        }

        /// Every request whose `path?query` contains `needle` answers
        /// `status` with `{"message": message}` until removed (persistent
        /// poison). Returns an id for `clear_failure`.
        pub fn fail_path_containing(&self, needle: &str, status: u16, message: &str) -> u64 {
            self.faults.fail_path_containing(needle, status, message)
        }

        /// Every request for which `matcher(method, "path?query")` is true
        /// answers `status` with `{"message": message}` until removed.
        /// Returns an id for `clear_failure`.
        pub fn fail_matching(
            &self,
            matcher: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
            status: u16,
            message: &str,
        ) -> u64 {
            self.faults.fail_matching(matcher, status, message)
        }

        /// Removes one injected per-request failure.
        pub fn clear_failure(&self, id: u64) {
            self.faults.clear_failure(id);
        }

        /// Removes every injected per-request failure.
        pub fn clear_failures(&self) {
            self.faults.clear_failures();
        }

        /// Every request received so far, in arrival order.
        pub fn calls(&self) -> Vec<CallRecord> {
            self.faults.calls()
        }

        /// The requests received from the `first`-th on (0-based;
        /// `calls_from(0)` is `calls()`): cheap polling of a long run.
        pub fn calls_from(&self, first: usize) -> Vec<CallRecord> {
            self.faults.calls_from(first)
        }

        /// Number of requests received so far.
        pub fn call_count(&self) -> usize {
            self.faults.call_count()
        }
    };
}
pub(crate) use fault_controls;

/// `Wed, 21 Oct 2026 07:28:00 GMT`.
fn http_date(t: SystemTime) -> String {
    let dt: DateTime<Utc> = t.into();
    dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The answer of an injected whole-service fault; `None` under
/// [`Fault::None`]. [`Fault::Timeout`] sleeps an hour first.
async fn fault_answer(fault: Fault) -> Option<Response> {
    match fault {
        Fault::None => None,
        // Raced with a shutdown: behave like a dead server.
        Fault::Down => Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server going down",
        )),
        Fault::Timeout => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(json_error(StatusCode::GATEWAY_TIMEOUT, "timeout"))
        }
        Fault::Status(code) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Some(json_error(code, format!("injected fault {code}")))
        }
        Fault::RateLimit { retry_after } => {
            let value = match retry_after {
                RetryAfter::Seconds(n) => n.to_string(),
                RetryAfter::HttpDate(t) => http_date(t),
            };
            let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, value.parse().expect("ascii"));
            Some(resp)
        }
    }
}

/// A body parsed as JSON: `Null` when empty, a string when not JSON.
fn body_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The middleware running the layer in front of a fake's endpoints (see
/// the module doc for the order); mount it with
/// `middleware::from_fn_with_state((layer, api), pipeline::<A>)`.
async fn pipeline<A: Api>(
    State((layer, api)): State<(FaultLayer, Arc<A>)>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let headers = parts.headers.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let (n, latency, fault) = layer.arrive(CallRecord {
        n: 0,
        at: Instant::now(),
        answered_at: None,
        done_at: None,
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        publisher_model_id: A::KEY_HEADER
            .and_then(|h| header_str(&headers, h))
            .map(str::to_string),
        status: 0,
        duplicate: false,
        body: body_json(&bytes),
        response: Value::Null,
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (resp, duplicate, from_endpoint) = 'outcome: {
        if let Some(resp) = fault_answer(fault).await {
            break 'outcome (resp, false, false);
        }
        match api.admit(&method, &headers, &path) {
            Admit::Pass => {}
            Admit::Refuse(resp) => break 'outcome (resp, false, false),
            Admit::Replay(resp) => break 'outcome (resp, true, false),
        }
        let target = if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        if let Some(resp) = layer.failure_for(&method, &target) {
            break 'outcome (resp, false, false);
        }
        let resp = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        (resp, false, true)
    };
    let (rparts, rbody) = resp.into_parts();
    let rbytes = axum::body::to_bytes(rbody, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let rjson: Value = serde_json::from_slice(&rbytes).unwrap_or(Value::Null);
    if from_endpoint {
        api.answered(&method, &headers, rparts.status, &rjson);
    }
    let answer_delay = layer.with(|s| s.answer_delay);
    if !answer_delay.is_zero() {
        tokio::time::sleep(answer_delay).await;
    }
    layer.answer(n, rparts.status, duplicate, rjson);
    Response::from_parts(rparts, Body::from(rbytes))
}

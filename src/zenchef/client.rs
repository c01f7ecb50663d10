//! The Zenchef partner API client (docs/protocol/zenchef-api.md): the one module that
//! knows Zenchef's URLs, headers and error answers; the JSON bodies it sends
//! and reads are typed in [`super::wire`].
//!
//! Every failure is a [`CallError`] whose [`ErrorClass`] tells the outbox
//! what to do (§ "Errors and what the agent does"): retry later (with the
//! server's `Retry-After` when given), dead (never retry as is), or
//! credentials (stop and wait). Messages never contain the token.
//!
//! A 429 closes a gate shared by every clone of the client (the dispatcher
//! and the reservation poller alike) until its `Retry-After` has passed:
//! meanwhile calls fail at once with the remaining wait, without touching
//! the network. An HTTP-date `Retry-After` is read against the answer's
//! own `Date` header (the server's clock), never against the box clock,
//! which may be years off right after boot (no RTC).
//!
//! No redirect is ever followed ([`no_redirects`]): a 3xx is an error that
//! names only where it pointed ([`redirect_message`]), retried like an
//! outage (docs/protocol/zenchef-api.md § "Errors and what the agent
//! does"), so the `auth-token` header never reaches another host.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::NaiveDate;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::{
    BookingStatus, BookingsPage, ChangeStatusBody, CreatedBooking, Data, PlanBody, PosTicketBody,
    WalkinBody,
};
use crate::config::{Secret, ZenchefConfig};

/// What the outbox must do about a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Outage (5xx, timeout, connection, DNS, TLS) or rate limit: keep
    /// queued and retry; `after` is the server's `Retry-After` if any.
    Retry {
        /// Wait at least this long (429 `Retry-After`).
        after: Option<Duration>,
    },
    /// 400/404/409/412/422 (or any other 4xx): this request can never
    /// succeed as is → dead letter with the message.
    Dead,
    /// 401/403: token or restaurantId refused → pause deliveries.
    Credentials,
}

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
pub struct CallError {
    /// What to do about it.
    pub class: ErrorClass,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Which call (`PATCH /bookings/123/changeStatus`).
    pub what: String,
    /// The answer's message or the transport error, without secrets.
    pub message: String,
}

/// A booking as the agent reads it, its table and its guest profile: the
/// domain's values (`domain::booking`), read from Zenchef's JSON as they are.
pub use domain::booking::{Booking, BookingTable, CustomerSheet};

/// A Zenchef table (`GET /tables`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ZenchefTable {
    /// Table id.
    pub id: i64,
    /// Table name.
    pub name: String,
    /// Room.
    #[serde(default)]
    pub room: Option<String>,
}

/// Most pages followed for one day (guards against a paginator that never ends).
const MAX_PAGES: u64 = 100;
/// Longest `Retry-After` honoured: a longer one (or a date far ahead) is
/// cut to this, so a wrong header cannot stop deliveries for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct ZenchefClient {
    http: reqwest::Client,
    base: String,
    restaurant_id: String,
    token: Secret,
    publisher: String,
    /// Closed by a 429 until this instant (shared by all clones).
    rate_gate: Arc<Mutex<Option<Instant>>>,
}

impl ZenchefClient {
    /// Builds the client: rustls, `timeout` per call, 5 s to connect.
    pub fn new(cfg: &ZenchefConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("zenchef-edge/", env!("CARGO_PKG_VERSION")))
            .redirect(no_redirects())
            .build()?;
        Ok(ZenchefClient {
            http,
            base: cfg.base_url.clone(),
            restaurant_id: cfg.restaurant_id.clone(),
            token: cfg.token.clone(),
            publisher: cfg.publisher_name.clone(),
            rate_gate: Arc::default(),
        })
    }

    /// The restaurant id (for messages).
    pub fn restaurant_id(&self) -> &str {
        &self.restaurant_id
    }

    /// Bookings of one day, every page followed (`GET /bookings` with the
    /// `day` filter, `limit=100`). Bookings that do not parse are skipped
    /// with a WARN naming their id.
    pub async fn bookings_of_day(&self, day: NaiveDate) -> Result<Vec<Booking>, CallError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let path = format!(
                "/bookings?filters[0][field]=day&filters[0][operator]==&filters[0][value]={day}&limit=100&page={page}"
            );
            let v: BookingsPage = self.call(Method::GET, &path, None::<&()>, None).await?;
            for raw in v.data {
                match serde_json::from_value::<Booking>(raw.clone()) {
                    Ok(b) => out.push(b),
                    Err(e) => tracing::warn!(
                        booking = %raw.get("id").map(|v| v.to_string()).unwrap_or_default(),
                        "Zenchef sent a booking the agent cannot read ({e}); it is ignored"
                    ),
                }
            }
            if v.paginator.current_page >= v.paginator.total_pages || page >= MAX_PAGES {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// `GET /bookings/{id}`.
    pub async fn booking(&self, id: i64) -> Result<Booking, CallError> {
        let d: Data<Booking> = self
            .call(Method::GET, &format!("/bookings/{id}"), None::<&()>, None)
            .await?;
        Ok(d.data)
    }

    /// `PATCH /bookings/{id}/changeStatus` with `PublisherModelId = key`.
    /// The answer's booking (`{"data":booking}`) is not read.
    pub async fn change_status(
        &self,
        id: i64,
        status: &BookingStatus,
        key: &str,
    ) -> Result<(), CallError> {
        let _: Data<IgnoredAny> = self
            .call(
                Method::PATCH,
                &format!("/bookings/{id}/changeStatus"),
                Some(&ChangeStatusBody { status }),
                Some(key),
            )
            .await?;
        Ok(())
    }

    /// `POST /bookings?force=1` (walk-in); answers the created booking's id.
    pub async fn create_walkin(
        &self,
        body: &PlanBody<WalkinBody>,
        key: &str,
    ) -> Result<i64, CallError> {
        let d: Data<CreatedBooking> = self
            .call(Method::POST, "/bookings?force=1", Some(body), Some(key))
            .await?;
        d.data.id().ok_or(CallError {
            class: ErrorClass::Retry { after: None },
            status: None,
            what: "POST /bookings".into(),
            message: "the answer has no booking id".into(),
        })
    }

    /// `PUT /bookings/{id}/pos_ticket`.
    pub async fn put_pos_ticket(
        &self,
        id: i64,
        body: &PlanBody<PosTicketBody>,
        key: &str,
    ) -> Result<(), CallError> {
        let _: IgnoredAny = self
            .call(
                Method::PUT,
                &format!("/bookings/{id}/pos_ticket"),
                Some(body),
                Some(key),
            )
            .await?;
        Ok(())
    }

    /// `GET /tables`.
    pub async fn tables(&self) -> Result<Vec<ZenchefTable>, CallError> {
        let d: Data<Vec<ZenchefTable>> =
            self.call(Method::GET, "/tables", None::<&()>, None).await?;
        Ok(d.data)
    }

    /// One call: `body` (a typed request body, [`super::wire`]) sent as
    /// JSON, the answer read as `T`.
    async fn call<T: serde::de::DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        model_id: Option<&str>,
    ) -> Result<T, CallError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        if let Some(wait) = self.rate_limited_for() {
            return Err(CallError {
                class: ErrorClass::Retry { after: Some(wait) },
                status: None,
                what,
                message: format!(
                    "not sent: Zenchef asked to wait (429 Retry-After), {} s left",
                    wait.as_secs_f64().ceil()
                ),
            });
        }
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("auth-token", self.token.expose())
            .header("restaurantId", &self.restaurant_id)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json");
        if let Some(key) = model_id {
            req = req
                .header("PublisherName", &self.publisher)
                .header("PublisherModelId", key);
        }
        if let Some(b) = body {
            req = req.body(serde_json::to_string(b).map_err(|e| CallError {
                class: ErrorClass::Dead,
                status: None,
                what: what.clone(),
                message: format!("the request body cannot be written: {e}"),
            })?);
        }
        let resp = req.send().await.map_err(|e| CallError {
            class: ErrorClass::Retry { after: None },
            status: None,
            what: what.clone(),
            message: transport_message(&e),
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if let Some(moved) = redirect_message(status, &headers, resp.url()) {
            return Err(CallError {
                class: classify(status, &headers),
                status: Some(status.as_u16()),
                what,
                message: format!("{moved}: check zenchef.base_url"),
            });
        }
        let text = resp.text().await.map_err(|e| CallError {
            class: ErrorClass::Retry { after: None },
            status: Some(status.as_u16()),
            what: what.clone(),
            message: transport_message(&e),
        })?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| CallError {
                // A 2xx we cannot read: the call may have acted; retrying
                // with the same PublisherModelId is safe.
                class: ErrorClass::Retry { after: None },
                status: Some(status.as_u16()),
                what: what.clone(),
                message: format!("unreadable answer: {e}"),
            });
        }
        let class = classify(status, &headers);
        if let ErrorClass::Retry { after: Some(wait) } = class
            && status == StatusCode::TOO_MANY_REQUESTS
        {
            self.close_rate_gate(wait);
        }
        Err(CallError {
            class,
            status: Some(status.as_u16()),
            what,
            message: answer_message(&text),
        })
    }

    /// How long the 429 gate stays closed, if it is.
    fn rate_limited_for(&self) -> Option<Duration> {
        let gate = self.rate_gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Keeps every caller away for `wait` (extends, never shortens).
    fn close_rate_gate(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut gate = self.rate_gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.is_none_or(|g| g < until) {
            *gate = Some(until);
        }
    }
}

/// Maps an HTTP status to what the outbox does (docs/protocol/zenchef-api.md § Errors).
/// A 429's `Retry-After` date is taken relative to the answer's `Date`
/// header when there is one (the server's clock), else to the box clock.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> ErrorClass {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match status.as_u16() {
        401 | 403 => ErrorClass::Credentials,
        429 => ErrorClass::Retry {
            after: header("retry-after").and_then(|v| {
                let server_now = header("date")
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
                    .map(|d| {
                        SystemTime::UNIX_EPOCH + Duration::from_secs(d.timestamp().max(0) as u64)
                    });
                parse_retry_after(v, server_now.unwrap_or_else(SystemTime::now))
            }),
        },
        408 => ErrorClass::Retry { after: None },
        // A redirect (never followed: [`no_redirects`]) concerns the
        // address, not this request: retried like an outage, so nothing
        // goes dead while a captive portal or a moved API answers, and
        // everything flows once the base URL is right.
        300..=399 => ErrorClass::Retry { after: None },
        400..=499 => ErrorClass::Dead,
        _ => ErrorClass::Retry { after: None },
    }
}

/// The redirect policy of every client that sends a secret (Zenchef,
/// Zenchef Pay, the updater, `doctor`): none is followed. reqwest keeps
/// custom headers such as `auth-token` across a redirect to another host
/// (it strips only `Authorization` and cookies), and a followed redirect
/// would take the box to an address its configuration refuses
/// (docs/decisions.md, "No redirect is followed").
pub fn no_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::none()
}

/// For a 3xx answer to a request for `from`: `redirected to
/// <scheme>://<host>[:<port>] (not followed)` (the caller shows the
/// status), naming only the scheme,
/// host and port of its `Location` (resolved against `from` when
/// relative): a path or a query may carry a secret. `None` for any other
/// status.
pub fn redirect_message(
    status: StatusCode,
    headers: &HeaderMap,
    from: &reqwest::Url,
) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| from.join(l.trim()).ok());
    Some(match target {
        Some(t) => {
            let port = t.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "redirected to {}://{}{port} (not followed)",
                t.scheme(),
                t.host_str().unwrap_or("?")
            )
        }
        None => "a redirect without a usable Location (not followed)".into(),
    })
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3), relative
/// to `now` (the server's clock when known). A date in the past means "now";
/// anything longer than [`MAX_RETRY_AFTER`] is cut to it.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(when.timestamp().max(0) as u64);
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The message of an error answer: its `message`/`error` field when JSON,
/// else the text (cut to 300 chars).
pub fn answer_message(text: &str) -> String {
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        ["message", "error", "detail"].iter().find_map(|k| {
            v.get(k)
                .map(|m| m.as_str().map(str::to_string).unwrap_or(m.to_string()))
        })
    });
    let m = from_json.unwrap_or_else(|| text.to_string());
    if m.chars().count() > 300 {
        m.chars().take(300).collect::<String>() + "…"
    } else if m.is_empty() {
        "(empty answer)".into()
    } else {
        m
    }
}

/// What a transport failure was, read from the types of its causes (never
/// from their text): what a technician does about it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer in time.
    Timeout,
    /// The server's certificate is not valid yet: the box's clock is
    /// probably behind (no RTC; NTP not reached yet).
    CertNotYetValid,
    /// The server's certificate has expired, or the clock is ahead.
    CertExpired,
    /// Another certificate refusal (unknown issuer, wrong name): a proxy
    /// may intercept HTTPS.
    CertRefused,
    /// The connection could not be made (refused, unreachable, DNS).
    Connect,
    /// Anything else (the request failed after connecting).
    Other,
}

/// The certificate refusal among `e`'s causes, if any. rustls' error sits
/// inside an `io::Error` (itself inside another one, with hyper-rustls),
/// whose `source()` skips what it wraps, so an I/O error is looked into
/// instead.
fn cert_problem(e: &(dyn std::error::Error + 'static)) -> Option<TransportFailure> {
    use rustls::CertificateError as C;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(rustls::Error::InvalidCertificate(c)) = s.downcast_ref::<rustls::Error>() {
            return Some(match c {
                C::NotValidYet | C::NotValidYetContext { .. } => TransportFailure::CertNotYetValid,
                C::Expired | C::ExpiredContext { .. } => TransportFailure::CertExpired,
                _ => TransportFailure::CertRefused,
            });
        }
        src = match s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    None
}

/// What `e` was ([`TransportFailure`]).
pub fn transport_kind(e: &reqwest::Error) -> TransportFailure {
    if let Some(cert) = cert_problem(e) {
        cert
    } else if e.is_timeout() {
        TransportFailure::Timeout
    } else if e.is_connect() {
        TransportFailure::Connect
    } else {
        TransportFailure::Other
    }
}

/// A transport error as one sentence with its cause chain; a certificate
/// "not yet valid" names the clock (the box has no RTC).
pub fn transport_message(e: &reqwest::Error) -> String {
    let mut parts = vec![if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    }];
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let msg = parts.join(": ");
    clock_hint(msg, transport_kind(e))
}

/// Adds the likely cause to a certificate-date error: the box has no RTC,
/// so right after boot its clock may be far behind (every certificate "not
/// valid yet") or ahead (every certificate "expired").
fn clock_hint(msg: String, kind: TransportFailure) -> String {
    match kind {
        TransportFailure::CertNotYetValid => format!(
            "{msg} — the certificate is not valid yet: the system clock is probably wrong (behind)"
        ),
        TransportFailure::CertExpired => format!(
            "{msg} — the certificate has expired, or the system clock is wrong (ahead): check the \
             date on the box"
        ),
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_spec_classes() {
        let h = HeaderMap::new();
        for (s, c) in [
            (400, ErrorClass::Dead),
            (404, ErrorClass::Dead),
            (409, ErrorClass::Dead),
            (412, ErrorClass::Dead),
            (422, ErrorClass::Dead),
            (401, ErrorClass::Credentials),
            (403, ErrorClass::Credentials),
            (500, ErrorClass::Retry { after: None }),
            (503, ErrorClass::Retry { after: None }),
            (429, ErrorClass::Retry { after: None }),
        ] {
            assert_eq!(classify(StatusCode::from_u16(s).unwrap(), &h), c, "{s}");
        }
    }

    #[test]
    fn a_redirect_names_only_scheme_host_and_port() {
        let from = reqwest::Url::parse("https://api.zenchef.com/api/v1/tables").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            "http://evil.example:8080/steal?token=abc#x"
                .parse()
                .unwrap(),
        );
        let m = redirect_message(StatusCode::TEMPORARY_REDIRECT, &h, &from).unwrap();
        assert_eq!(m, "redirected to http://evil.example:8080 (not followed)");
        h.insert("location", "/elsewhere?k=v".parse().unwrap());
        assert_eq!(
            redirect_message(StatusCode::FOUND, &h, &from).unwrap(),
            "redirected to https://api.zenchef.com (not followed)"
        );
        assert!(
            redirect_message(StatusCode::MOVED_PERMANENTLY, &HeaderMap::new(), &from)
                .unwrap()
                .contains("without a usable Location")
        );
        assert_eq!(redirect_message(StatusCode::OK, &h, &from), None);
        assert_eq!(
            classify(StatusCode::TEMPORARY_REDIRECT, &h),
            ErrorClass::Retry { after: None }
        );
    }

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 1_700_000_000 = Tue, 14 Nov 2023 22:13:20 GMT
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
    }

    /// Regression (crash/outage suite, wrong box clock): the date form is
    /// relative to the server's `Date`, so a box clock years off neither
    /// stalls deliveries nor turns the wait into zero.
    #[test]
    fn an_http_date_retry_after_is_read_against_the_server_clock() {
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Tue, 14 Nov 2023 22:13:50 GMT".parse().unwrap(),
        );
        h.insert("date", "Tue, 14 Nov 2023 22:13:20 GMT".parse().unwrap());
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h),
            ErrorClass::Retry {
                after: Some(Duration::from_secs(30))
            }
        );
    }

    /// Regression (wrong-clock suite): the hint naming the clock is given
    /// for rustls' certificate-date errors, found by their type wherever
    /// they sit among the causes (inside an `io::Error` too); the words
    /// rustls uses do not matter.
    #[test]
    fn certificate_date_errors_name_the_clock() {
        use rustls::CertificateError as C;
        let wrapped = |c: C| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        assert_eq!(
            cert_problem(&wrapped(C::NotValidYet)),
            Some(TransportFailure::CertNotYetValid)
        );
        assert_eq!(
            cert_problem(&wrapped(C::Expired)),
            Some(TransportFailure::CertExpired)
        );
        assert_eq!(
            cert_problem(&wrapped(C::UnknownIssuer)),
            Some(TransportFailure::CertRefused)
        );
        let twice = std::io::Error::other(wrapped(C::NotValidYet));
        assert_eq!(
            cert_problem(&twice),
            Some(TransportFailure::CertNotYetValid)
        );
        assert_eq!(
            cert_problem(&rustls::Error::InvalidCertificate(C::NotValidYet)),
            Some(TransportFailure::CertNotYetValid)
        );
        assert_eq!(
            cert_problem(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            None
        );
        let rustls_023 = "cannot connect: client error (Connect): invalid peer certificate: \
                          certificate not valid yet: verification time 1795969640 (UNIX), but \
                          certificate is not valid before 1830297600";
        assert!(
            clock_hint(rustls_023.into(), TransportFailure::CertNotYetValid).ends_with(
                "the certificate is not valid yet: the system clock is probably wrong (behind)"
            )
        );
        assert!(
            clock_hint(
                "invalid peer certificate: certificate expired".into(),
                TransportFailure::CertExpired
            )
            .contains("the system clock is wrong (ahead)")
        );
        assert_eq!(
            clock_hint("connection refused".into(), TransportFailure::Connect),
            "connection refused"
        );
    }

    #[test]
    fn error_messages_are_short_and_prefer_the_json_message() {
        assert_eq!(
            answer_message(r#"{"message":"unknown table 99"}"#),
            "unknown table 99"
        );
        assert_eq!(answer_message(""), "(empty answer)");
        assert_eq!(answer_message(&"x".repeat(400)).chars().count(), 301);
    }
}

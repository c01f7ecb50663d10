//! The local HTTP port (`[http] listen`, default `127.0.0.1:8780`; `""`
//! disables it), served with hyper (HTTP/1.1 only):
//!
//! - `GET /` — the status page for a manager (`src/status/page.rs`), French or
//!   English by `Accept-Language`;
//! - `GET /status.json` — the same object as `zenchef-edge status --json`;
//! - `POST /zenchef/webhook` — Zenchef's "a reservation changed" call: it
//!   only wakes the reservation poller (docs/protocol/zenchef-api.md § Webhook); its body
//!   is never read, let alone trusted. Answers 202.
//!
//! Anything else is 404 (405 for a known path with another method). The
//! page reads the store read-only on a blocking thread, like the CLI. At
//! most [`MAX_CONNECTIONS`] connections are served at once and a client has
//! [`HEADER_TIMEOUT`] to send its headers, so a stray client on the LAN
//! cannot tie the agent up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::status::{self, json, page};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers need.
#[derive(Clone)]
pub struct PageState {
    /// The configuration (store path, time zone, Pay enabled).
    pub config: Arc<Config>,
    /// Wakes the reservation poller.
    pub nudge: Arc<Notify>,
    /// The daemon's record in memory, when the daemon serves the page: it
    /// then says it runs even when its store cannot be written
    /// ([`status::read_live`]). `None`: read like the CLI.
    pub live: Option<crate::health::Health>,
}

/// Binds the listen address.
///
/// Errors: the address is in use or not available on this box.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `cancel`.
pub async fn serve(listener: TcpListener, state: PageState, cancel: CancellationToken) {
    if let Ok(a) = listener.local_addr() {
        info!("status page on http://{a}/ (webhook nudge: POST /zenchef/webhook)");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("too many connections to the status page: dropping {peer}");
            continue;
        };
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| handle(req, state.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!("status page connection from {peer}: {e}") },
                _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
    info!("status page stopped");
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn read_status(state: &PageState) -> Result<status::Status, String> {
    let config = state.config.clone();
    let live = state.live.as_ref().map(|h| h.snapshot());
    tokio::task::spawn_blocking(move || match live {
        Some(live) => Ok(status::read_live(&config, chrono::Utc::now(), &live)),
        None => status::read(&config).map_err(|e| format!("{e:#}")),
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

async fn handle(
    req: Request<Incoming>,
    state: PageState,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let method = req.method();
    const JSON: &str = "application/json";
    const HTML: &str = "text/html; charset=utf-8";
    const TEXT: &str = "text/plain; charset=utf-8";
    Ok(match (method, path) {
        (&Method::GET, "/") => {
            let lang = page::lang_from(
                req.headers()
                    .get(ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            );
            match read_status(&state).await {
                Ok(s) => reply(
                    StatusCode::OK,
                    HTML,
                    page::render(&s, state.config.timezone, chrono::Utc::now(), lang),
                ),
                Err(e) => {
                    warn!("status page: cannot read the store: {e}");
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        format!("cannot read the store: {e}\n"),
                    )
                }
            }
        }
        (&Method::GET, "/status.json") => match read_status(&state).await {
            Ok(s) => reply(StatusCode::OK, JSON, json::render(&s).unwrap_or_default()),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                JSON,
                serde_json::json!({ "error": e }).to_string(),
            ),
        },
        (&Method::POST, "/zenchef/webhook") => {
            // The body is never read: the nudge only makes the poller ask
            // Zenchef itself, now instead of at the next interval.
            state.nudge.notify_one();
            debug!("webhook nudge: reservations are polled now");
            reply(StatusCode::ACCEPTED, JSON, r#"{"ok":true}"#)
        }
        (_, "/" | "/status.json" | "/zenchef/webhook") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n")
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    })
}

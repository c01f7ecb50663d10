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
//! most [`MAX_CONNECTIONS`] connections are kept at once and a client has
//! [`HEADER_TIMEOUT`] to send its headers, so a stray client on the LAN
//! cannot tie the agent up; when every slot is taken, a new connection
//! closes the oldest one that is not being answered (an idle or silent
//! one), so that idle connections never lock a manager out of the page.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::status::{self, json, page};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

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
    let slots = Slots::default();
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
        let Some(slot) = slots.take() else {
            debug!("all connections to the status page are being answered: dropping {peer}");
            continue;
        };
        let state = state.clone();
        let cancel = cancel.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let busy = slot.busy.clone();
            let service = service_fn(move |req| {
                let (state, busy) = (state.clone(), busy.clone());
                async move {
                    busy.store(true, Ordering::SeqCst);
                    let r = handle(req, state).await;
                    busy.store(false, Ordering::SeqCst);
                    r
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!("status page connection from {peer}: {e}") },
                _ = slot.evict.cancelled() => debug!("status page connection from {peer} closed for a new one"),
                _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            slots.free(slot.id);
        });
    }
    info!("status page stopped");
}

/// The connections kept, oldest first.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<SlotsInner>>);

#[derive(Default)]
struct SlotsInner {
    next_id: u64,
    open: VecDeque<Slot>,
}

/// One connection kept: `busy` while a request of it is being answered;
/// `evict` closes it.
#[derive(Clone)]
struct Slot {
    id: u64,
    busy: Arc<AtomicBool>,
    evict: CancellationToken,
}

impl Slots {
    /// A slot for a new connection; when all [`MAX_CONNECTIONS`] are
    /// taken, the oldest connection not being answered is closed for it.
    /// `None` when every connection is being answered.
    fn take(&self) -> Option<Slot> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.open.len() >= MAX_CONNECTIONS {
            let idle = g.open.iter().position(|s| !s.busy.load(Ordering::SeqCst))?;
            if let Some(old) = g.open.remove(idle) {
                old.evict.cancel();
            }
        }
        g.next_id += 1;
        let slot = Slot {
            id: g.next_id,
            busy: Arc::default(),
            evict: CancellationToken::new(),
        };
        g.open.push_back(slot.clone());
        Some(slot)
    }

    /// The connection `id` ended.
    fn free(&self, id: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.open.retain(|s| s.id != id);
    }
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

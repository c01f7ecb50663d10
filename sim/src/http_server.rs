//! The HTTP plumbing the simulators' servers share (Zenchef fake, Zenchef
//! Pay fake, update server): an axum router served over HTTP/1.1 on a
//! loopback listener, one task per connection, that can stop listening and
//! drop its open connections (an outage: connection refused, connections
//! reset) and later listen again on the same port; and the JSON error
//! answers and request checks the two fakes share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::util::LOOPBACK;

/// A router being served: its accept loop and its open connections. Dropping
/// it stops both (the port is then refused).
pub struct Listening {
    accept: AbortHandle,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Listening {
    /// Serves `router` on `listener` until dropped. Must be called inside a
    /// tokio runtime.
    pub fn serve(listener: TcpListener, router: Router) -> Self {
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let task_conns = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let conn = tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
                let mut list = task_conns.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(conn.abort_handle());
            }
        })
        .abort_handle();
        Listening { accept, conns }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// Binds `127.0.0.1:port` again after a [`Listening`] on it was dropped: the
/// aborted accept task may take a moment to release the socket, so this
/// retries every 20 ms for up to 2 s. Errors: the port is still taken then.
pub async fn rebind(port: u16) -> anyhow::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind((LOOPBACK, port)).await {
            Ok(l) => return Ok(l),
            Err(e) if tries < 100 => {
                tries += 1;
                tracing::debug!("re-bind {port}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// An error answer `status` with the body `{"message": message}` (both
/// fakes' error shape: docs/protocol/zenchef-api.md, docs/protocol/zenchef-pay.md).
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": message.into()}))).into_response()
}

/// A 422 whose message names the bad field first: `"{field}: {problem}"`.
pub(crate) fn unprocessable(field: &str, problem: &str) -> Response {
    json_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{field}: {problem}"),
    )
}

/// Whether `m` writes (`POST`, `PUT`, `PATCH`, `DELETE`).
pub(crate) fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Header `name` as text (`None` when absent or not visible ASCII).
pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The 400 a write without `Content-Type: application/json` gets; `None`
/// for a read or a JSON write.
pub(crate) fn require_json(method: &Method, headers: &HeaderMap) -> Option<Response> {
    let ct = header_str(headers, "content-type").unwrap_or("");
    (is_write(method) && !ct.to_ascii_lowercase().starts_with("application/json")).then(|| {
        json_error(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
        )
    })
}

/// A request body that must be a JSON object. Errors: a 400 answer (not
/// JSON, or JSON but not an object).
// The error is the answer a handler returns as is (axum's `Response`).
#[allow(clippy::result_large_err)]
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(json_error(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object",
        )),
        Err(e) => Err(json_error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        )),
    }
}

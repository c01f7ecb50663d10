//! The HTTP plumbing the simulators' servers share (Zenchef fake, Zenchef
//! Pay fake, update server): an axum router served over HTTP/1.1 on a
//! loopback listener, one task per connection, that can stop listening and
//! drop its open connections (an outage: connection refused, connections
//! reset) and later listen again on the same port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
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

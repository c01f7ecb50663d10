//! The Cashpad MQTT broker, simulated with rumqttd running in process.
//!
//! Speaks MQTT 3.1.1 (rumqttd's `v4` listener) on `127.0.0.1` only, with
//! optional username/password authentication, retained messages and
//! persistent sessions (`clean_session = false` keeps a client's
//! subscriptions and queues its QoS 1 messages while it is away). The
//! maximum payload is [`MAX_PAYLOAD_BYTES`] so that tests can send a 10 MB
//! bad payload.
//!
//! rumqttd cannot be stopped in process: a started broker lives until the
//! process exits. Tests start one per test on a free port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::util::{LOOPBACK, free_port, wait_for_tcp};

/// Largest accepted MQTT payload: 12 MiB (tests send a 10 MB bad payload).
pub const MAX_PAYLOAD_BYTES: usize = 12 * 1024 * 1024;

/// Maximum number of unacknowledged QoS 1 messages in flight per client.
pub const MAX_INFLIGHT: usize = 1000;

/// How to start the broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// TCP port on `127.0.0.1`; `0` picks a free one.
    pub port: u16,
    /// Accepted `(username, password)` pairs; empty means no authentication.
    pub users: Vec<(String, String)>,
}

/// A running in-process broker (it cannot be stopped; it lives until the
/// process exits).
#[derive(Debug, Clone)]
pub struct Broker {
    /// The TCP port the broker listens on, at `127.0.0.1`.
    pub port: u16,
}

impl Broker {
    /// `127.0.0.1:<port>` as a socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }
}

/// Starts rumqttd on its own thread, listening on `127.0.0.1:opts.port`
/// (or a free port), and returns once the port accepts TCP connections.
pub fn start_broker(opts: BrokerOptions) -> anyhow::Result<Broker> {
    start_broker_on(std::net::IpAddr::V4(LOOPBACK), opts)
}

/// Like [`start_broker`], listening on `ip` instead of `127.0.0.1`. Only
/// for a network namespace the test created (`0.0.0.0` there is the POS's
/// LAN address and its loopback, which must be up: readiness is checked on
/// `127.0.0.1`); nothing else may listen beyond loopback.
pub fn start_broker_on(ip: std::net::IpAddr, opts: BrokerOptions) -> anyhow::Result<Broker> {
    let port = if opts.port == 0 {
        free_port()?
    } else {
        opts.port
    };
    let auth = if opts.users.is_empty() {
        None
    } else {
        Some(opts.users.iter().cloned().collect::<HashMap<_, _>>())
    };
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD_BYTES,
        max_inflight_count: MAX_INFLIGHT,
        auth,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: format!("v4-{port}"),
        listen: SocketAddr::from((ip, port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            // A segment must hold the largest payload; 16 segments of 32 MiB
            // keep plenty of history for clients that are away.
            max_segment_size: 32 * 1024 * 1024,
            max_segment_count: 16,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name(format!("rumqttd-{port}"))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("broker on port {port} stopped: {e:?}");
            }
        })?;
    wait_for_tcp(port, Duration::from_secs(10))?;
    Ok(Broker { port })
}

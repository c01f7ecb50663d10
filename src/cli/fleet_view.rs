//! `zenchef-edge fleet-view`: the boxes of a fleet, from the reports
//! retained on the group's broker (docs/fleet.md "Listing the fleet").
//! Run anywhere (a support laptop): it needs no configuration file, only
//! the broker and credentials allowed to read `PREFIX/+/status`.
//!
//! It subscribes (QoS 1), collects what arrives for `--wait-s` seconds
//! after the broker acknowledged the subscription (the retained reports
//! come at once; live ones too), prints the table of
//! [`crate::fleet::view`] — or `--json` — and exits 0; 69 when the broker
//! cannot be reached, 77 when it refuses the login or the subscription, 64
//! for a bad option. The token comes from the environment
//! (`ZENCHEF_FLEET_TOKEN`), never from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};

use crate::config::{FleetConfig, Secret};
use crate::exit;
use crate::fleet::connect::{self, FailureKind};
use crate::fleet::view::{self, Row};

/// Environment variable holding the MQTT password of `--username`.
pub const TOKEN_ENV: &str = "ZENCHEF_FLEET_TOKEN";
/// The largest report `fleet-view` reads, bytes (16 MiB; a real one is a
/// few KiB). A larger message is a row marked unreadable, its bytes
/// dropped as soon as they are counted.
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;
/// The largest packet `fleet-view` takes: MQTT's own limit (the largest
/// remaining length, 268,435,455 bytes, MQTT 3.1.1 § 2.2.3). rumqttc
/// drops the whole connection on a packet over its limit — and the broker
/// sends the same retained message again at the next one — so a lower
/// limit would let one box's message hide every box.
pub const FLEET_VIEW_MAX_PACKET: usize = 268_435_455;
/// How long the broker has to accept the connection and the subscription.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `fleet-view` was asked.
#[derive(Debug, Clone)]
pub struct ViewArgs {
    /// `--broker`: `mqtts://host[:port]` (or `mqtt://` to a loopback host).
    pub broker: String,
    /// `--prefix` (the boxes' `[fleet] topic_prefix`).
    pub prefix: String,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--cert-file`.
    pub cert_file: Option<PathBuf>,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
    /// `--username` (the password from [`TOKEN_ENV`]).
    pub username: Option<String>,
    /// `--wait-s`: seconds to collect after the subscription.
    pub wait: Duration,
    /// `--json`.
    pub json: bool,
}

/// Runs the command; the exit code.
///
/// Errors: none beyond the exit code (messages go to stderr).
pub fn run(a: ViewArgs) -> i32 {
    crate::tls::install_crypto();
    let cfg = match fleet_config(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    match rt.block_on(collect(&cfg, &a.prefix, a.wait)) {
        Ok(mut rows) => {
            view::sort(&mut rows);
            if a.json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| serde_json::json!({"device_id": r.device_id, "message": r.message}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print!("{}", view::render(&rows));
            }
            exit::OK
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

/// The options as a [`FleetConfig`] (what a box would have), checked like
/// the `[fleet]` keys.
fn fleet_config(a: &ViewArgs) -> Result<FleetConfig, String> {
    let broker = crate::config::check_broker(&a.broker).map_err(|e| format!("--broker: {e}"))?;
    crate::config::check_topic_prefix(&a.prefix).map_err(|e| format!("--prefix: {e}"))?;
    let client_cert = match (&a.cert_file, &a.key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => return Err("--cert-file and --key-file go together".into()),
    };
    let login = match &a.username {
        Some(u) => {
            let token = std::env::var(TOKEN_ENV)
                .map_err(|_| format!("--username needs the password in {TOKEN_ENV}"))?;
            Some((u.clone(), Secret::new(token)))
        }
        None => None,
    };
    Ok(FleetConfig {
        broker,
        ca_file: a.ca_file.clone(),
        client_cert,
        login,
        topic_prefix: a.prefix.clone(),
        device_id: None,
        interval: Duration::from_secs(crate::config::DEFAULT_FLEET_INTERVAL_S),
    })
}

/// The device of a topic `PREFIX/<device>/status`, `None` for another one.
fn device_of<'t>(topic: &'t str, prefix: &str) -> Option<&'t str> {
    topic
        .strip_prefix(prefix)?
        .strip_prefix('/')?
        .strip_suffix("/status")
        .filter(|d| !d.is_empty() && !d.contains('/'))
}

/// Connects, subscribes, and gathers the latest message of each box.
async fn collect(
    cfg: &FleetConfig,
    prefix: &str,
    wait: Duration,
) -> Result<Vec<Row>, (i32, String)> {
    let broker = cfg.broker.to_string();
    let client_id = format!("zenchef-fleet-view-{:08x}", rand::random::<u32>());
    let mut opts = connect::options(cfg, &client_id).map_err(|e| (exit::USAGE, e.to_string()))?;
    // Reports are a few KiB; an odd large one must be a row, not the end
    // of the listing (rumqttc drops the connection on a larger packet).
    opts.set_max_packet_size(FLEET_VIEW_MAX_PACKET, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let filter = format!("{prefix}/+/status");
    let mut latest: BTreeMap<String, Got> = BTreeMap::new();
    let connect_deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut until = connect_deadline;
    let mut subscribed = false;
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                client
                    .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                    .map_err(|e| (exit::FAILURE, format!("cannot subscribe: {e}")))?;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    return Err((
                        exit::NOPERM,
                        format!("{broker} refused the subscription to {filter} (its ACL)"),
                    ));
                }
                subscribed = true;
                until = tokio::time::Instant::now() + wait;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(device) = device_of(&p.topic, prefix) {
                    if p.payload.is_empty() {
                        // A retained report deleted.
                        latest.remove(device);
                    } else if p.payload.len() > MAX_REPORT_BYTES {
                        latest.insert(device.to_string(), Got::TooLarge(p.payload.len()));
                    } else {
                        latest.insert(device.to_string(), Got::Report(p.payload.to_vec()));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let code = match connect::classify(&e) {
                    FailureKind::Refused => exit::NOPERM,
                    FailureKind::TlsError | FailureKind::Unreachable => exit::UNAVAILABLE,
                };
                return Err((code, format!("{broker}: {}", connect::describe(&e))));
            }
        }
    }
    if !subscribed {
        return Err((
            exit::UNAVAILABLE,
            format!("no answer from {broker} within {CONNECT_TIMEOUT:?}"),
        ));
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    let now = chrono::Utc::now();
    Ok(latest
        .iter()
        .map(|(d, got)| match got {
            Got::Report(payload) => Row::from_message(d, payload, now),
            Got::TooLarge(bytes) => Row::too_large(d, *bytes, MAX_REPORT_BYTES),
        })
        .collect())
}

/// The latest message of one box.
enum Got {
    /// Its bytes, at most [`MAX_REPORT_BYTES`].
    Report(Vec<u8>),
    /// Larger than [`MAX_REPORT_BYTES`]: only its size is kept.
    TooLarge(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_is_the_level_between_the_prefix_and_status() {
        assert_eq!(
            device_of("zenchef-edge/box-1/status", "zenchef-edge"),
            Some("box-1")
        );
        assert_eq!(device_of("g/paris/box-1/status", "g/paris"), Some("box-1"));
        assert_eq!(device_of("zenchef-edge/a/b/status", "zenchef-edge"), None);
        assert_eq!(device_of("zenchef-edgeX/a/status", "zenchef-edge"), None);
        assert_eq!(device_of("zenchef-edge//status", "zenchef-edge"), None);
    }
}

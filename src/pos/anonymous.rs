//! Does the POS broker let in a client without a password?
//! (docs/protocol/cashpad-local.md §2a, docs/pos-broker.md.)
//!
//! The POS broker is the trust boundary of the restaurant LAN: whoever it
//! lets in can read the reservations the agent publishes (guests' names,
//! phones, e-mails) and publish POS events the agent acts on (a forged
//! `payment.recorded` settles a phone payment). The agent cannot read the
//! broker's access rules; what it can see is whether an anonymous client
//! is accepted, with a short connection of its own: client id
//! `zenchef-edge-probe-<iid>`, clean session, no username or password, no
//! subscription, no will, disconnected as soon as the broker answers.
//!
//! The daemon probes at each (re)connection of its session, at most once
//! an hour ([`PROBE_EVERY`]), and keeps the answer in its health record
//! (`status`: problem `pos_broker_anonymous`); `doctor` probes on its own.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet};

use super::discovery::PosTarget;
use super::session::{MqttFailure, classify};

/// The least time between two probes of the daemon.
pub const PROBE_EVERY: Duration = Duration::from_secs(3600);
/// How long a probe waits for the broker's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::health::AnonymousClients;

/// The answer of a probe, with a sentence for `doctor` and the journal
/// (naming the address, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was found.
    pub found: AnonymousClients,
    /// What happened, in words.
    pub detail: String,
}

/// Connects to `target`'s broker without a username or password and says
/// whether it was let in. Never fails: what cannot be told is
/// [`AnonymousClients::Unknown`].
pub async fn probe(target: &PosTarget) -> Probe {
    let addr = format!("{}:{}", target.host, target.port);
    let mut opts = MqttOptions::new(
        format!("zenchef-edge-probe-{}", target.iid),
        target.host.clone(),
        target.port,
    );
    opts.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true);
    if target.tls {
        opts.set_transport(rumqttc::Transport::tls_with_default_config());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match answer {
        Ok(Ok(())) => {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
            Probe {
                found: AnonymousClients::Accepted,
                detail: format!(
                    "the POS broker at {addr} ACCEPTS clients without a password: any device on \
                     the restaurant network can read the reservations (guests' names, phones, \
                     e-mails) and publish POS events the agent acts on"
                ),
            }
        }
        Ok(Err(e)) => refused_or_unknown(&e, &addr),
        Err(_) => Probe {
            found: AnonymousClients::Unknown,
            detail: format!(
                "the POS broker at {addr} did not answer an anonymous login within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        },
    }
}

/// A failed anonymous login: refused when the broker said no (or closed
/// the door during the login), unknown otherwise.
fn refused_or_unknown(e: &ConnectionError, addr: &str) -> Probe {
    match classify(e, false) {
        MqttFailure::LoginRefused | MqttFailure::ClosedDuringLogin => Probe {
            found: AnonymousClients::Refused,
            detail: format!(
                "the POS broker at {addr} refuses clients without a password ({})",
                match e {
                    ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                        "not authorised"
                    }
                    ConnectionError::ConnectionRefused(_) => "bad user name or password",
                    _ => "connection closed during the login",
                }
            ),
        },
        _ => Probe {
            found: AnonymousClients::Unknown,
            detail: format!("could not ask the POS broker at {addr}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connack_refusal_is_refused_and_a_closed_port_unknown() {
        let refused = refused_or_unknown(
            &ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
            "h:1",
        );
        assert_eq!(refused.found, AnonymousClients::Refused);
        assert!(refused.detail.ends_with("(not authorised)"), "{refused:?}");
        let closed = refused_or_unknown(
            &ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into()),
            "h:1",
        );
        assert_eq!(closed.found, AnonymousClients::Unknown);
        assert_eq!(AnonymousClients::Accepted.as_str(), "accepted");
    }
}

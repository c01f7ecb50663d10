//! What the tests of the LAN's limits share (`tests/lan_limits.rs`,
//! `tests/hostile_soak.rs`): mosquitto as the POS broker, a client of the
//! test that publishes as the POS account, the agent's memory.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use zenchef_sim::harness::{AGENT_USER, POS_PASSWORD, POS_USER, RigOptions};
use zenchef_sim::mosquitto;

use super::in_ci;

/// One MiB.
pub const MIB: usize = 1024 * 1024;

/// Skips (outside CI) or fails (in CI) without mosquitto.
pub fn have_mosquitto() -> bool {
    if mosquitto::available() {
        return true;
    }
    assert!(
        !in_ci(),
        "mosquitto is missing in CI: .ci/run must install it"
    );
    eprintln!("SKIPPED: mosquitto is not installed on this machine (CI installs it)");
    false
}

/// The broker's accounts: the agent (with the rig's Cashpad token) and
/// the POS.
pub fn users(opts: &RigOptions) -> Vec<(String, String)> {
    vec![
        (AGENT_USER.into(), opts.cashpad_token.clone()),
        (POS_USER.into(), POS_PASSWORD.into()),
    ]
}

/// Publishes `payload` QoS 1 on `topic` as the POS account, with a client
/// of its own whose packet limit is above the payload; returns once the
/// broker acknowledged it.
pub async fn publish_big(port: u16, topic: &str, payload: Vec<u8>, retain: bool) {
    let mut opts = MqttOptions::new(
        format!("big-{}", zenchef_sim::util::random_hex(4)),
        "127.0.0.1",
        port,
    );
    opts.set_credentials(POS_USER, POS_PASSWORD)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 * MIB, 64 * MIB);
    let (client, mut ev) = AsyncClient::new(opts, 4);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("publishing the big message: {e}"),
            }
        }
    })
    .await
    .expect("the broker acknowledged the big message");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ev.poll()).await;
}

/// `VmRSS` and `VmHWM` of a process, KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

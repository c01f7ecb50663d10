//! The box's identity: its device id, and its own mDNS advertisement
//! `_zenchef-edge._tcp` so a technician finds it on the LAN with any mDNS
//! browser (`avahi-browse -r _zenchef-edge._tcp`, `dns-sd -B
//! _zenchef-edge._tcp`) without knowing its IP.
//!
//! TXT keys: `version` (agent version), `device` (device id) and, once the
//! POS is known, `iid` (Cashpad Installation ID).

use std::path::Path;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::CashpadConfig;
use crate::pos::session::PosLink;

/// DNS-SD service type of the box.
pub const SERVICE_TYPE: &str = "_zenchef-edge._tcp.local.";
/// File holding the device id, in the state directory.
pub const DEVICE_ID_FILE: &str = "device-id";

/// The device id (created once in `state_dir`, shared with the updater's
/// staged rollout: [`crate::update::state::device_id`]).
pub fn device_id(state_dir: &Path) -> std::io::Result<String> {
    crate::update::state::device_id(&state_dir.join(DEVICE_ID_FILE))
}

/// Advertises the box until `cancel`; re-registers with `iid` once the POS
/// is known. `port` is the local HTTP port (0 when disabled).
pub async fn advertise(
    cfg: CashpadConfig,
    device: String,
    port: u16,
    link: PosLink,
    cancel: CancellationToken,
) {
    let daemon = match ServiceDaemon::new_with_port(cfg.mdns_port) {
        Ok(d) => d,
        Err(e) => {
            warn!("cannot advertise the box by mDNS: {e}");
            return;
        }
    };
    if !cfg.interfaces.is_empty() {
        let _ = daemon.disable_interface(IfKind::All);
        for name in &cfg.interfaces {
            let _ = if name == "lo" {
                daemon.enable_interface(IfKind::LoopbackV4)
            } else {
                daemon.enable_interface(IfKind::Name(name.clone()))
            };
        }
    }
    let instance = format!("zenchef-edge-{}", &device[..device.len().min(8)]);
    let host = format!("{instance}.local.");
    let mut registered: Option<Option<String>> = None;
    loop {
        let iid = link.iid();
        if registered.as_ref() != Some(&iid) {
            let mut txt = vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("device".to_string(), device.clone()),
            ];
            if let Some(i) = &iid {
                txt.push(("iid".to_string(), i.clone()));
            }
            match ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", port, &txt[..]) {
                Ok(info) => match daemon.register(info.enable_addr_auto()) {
                    Ok(()) => {
                        info!("advertised on the LAN as {instance} ({SERVICE_TYPE})");
                        registered = Some(iid);
                    }
                    Err(e) => warn!("cannot advertise the box by mDNS: {e}"),
                },
                Err(e) => warn!("cannot build the mDNS advertisement: {e}"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
    debug!("mDNS advertisement stopped");
    let _ = daemon.shutdown();
}

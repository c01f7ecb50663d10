//! The Cashpad DNS-SD advert (docs/protocol/cashpad-local.md §1), on loopback only.
//!
//! Each [`Advertiser`] runs its own mdns-sd daemon bound to a non-standard
//! port (never 5353 in tests) with every interface disabled except
//! `127.0.0.0/8`, so no packet leaves the machine. Several advertisers can
//! run at once (the two-POS tests); [`Advertiser::update`] re-announces the
//! same instance with a new address or port (a DHCP change).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

/// DNS-SD service type of the Cashpad server.
pub const SERVICE_TYPE: &str = "_cashpad._tcp.local.";

/// What a Cashpad server announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosAdvert {
    /// UDP port the mDNS daemon uses (the agent's `cashpad.mdns_port`).
    pub mdns_port: u16,
    /// Instance name, free text, e.g. `Cashpad Server (Le Bistrot)`.
    pub instance: String,
    /// Address announced in the A record; `127.0.0.1` in tests.
    pub host_ip: Ipv4Addr,
    /// SRV port: the POS's MQTT port.
    pub mqtt_port: u16,
    /// TXT `proto`: interface version (`"1"`).
    pub proto: String,
    /// TXT `app`: Cashpad app version `MAJOR.MINOR.PATCH`.
    pub app: String,
    /// TXT `iid`: Cashpad Installation ID.
    pub iid: String,
    /// TXT `server`: Cashpad Server name.
    pub server: String,
    /// TXT `tls`: `"1"` when the MQTT port speaks TLS, else `"0"`.
    pub tls: bool,
}

impl PosAdvert {
    /// A typical compatible advert (`proto 1`, `app 2.0.18`, server `eu-3`,
    /// no TLS) for `iid` on `127.0.0.1:mqtt_port`.
    pub fn new(mdns_port: u16, iid: &str, mqtt_port: u16) -> PosAdvert {
        PosAdvert {
            mdns_port,
            instance: format!("Cashpad Server ({iid})"),
            host_ip: Ipv4Addr::LOCALHOST,
            mqtt_port,
            proto: "1".into(),
            app: "2.0.18".into(),
            iid: iid.into(),
            server: "eu-3".into(),
            tls: false,
        }
    }

    /// The TXT records, keys lower case.
    pub fn txt(&self) -> HashMap<String, String> {
        HashMap::from([
            ("proto".into(), self.proto.clone()),
            ("app".into(), self.app.clone()),
            ("iid".into(), self.iid.clone()),
            ("server".into(), self.server.clone()),
            ("tls".into(), if self.tls { "1" } else { "0" }.into()),
        ])
    }

    fn service_info(&self) -> anyhow::Result<ServiceInfo> {
        let host: String = self
            .iid
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        Ok(ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &format!("cashpad-{host}.local."),
            std::net::IpAddr::V4(self.host_ip),
            self.mqtt_port,
            self.txt(),
        )?)
    }
}

/// Creates an mdns-sd daemon on `port`, loopback IPv4 only.
pub fn loopback_daemon(port: u16) -> anyhow::Result<ServiceDaemon> {
    let daemon = ServiceDaemon::new_with_port(port)?;
    daemon.disable_interface(IfKind::All)?;
    daemon.enable_interface(IfKind::LoopbackV4)?;
    Ok(daemon)
}

/// A running advert; dropping it shuts its daemon down (without a goodbye;
/// call [`Advertiser::stop`] for a graceful unregister).
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
    advert: PosAdvert,
}

/// Starts announcing `advert` on loopback.
pub fn advertise(advert: PosAdvert) -> anyhow::Result<Advertiser> {
    let daemon = loopback_daemon(advert.mdns_port)?;
    let info = advert.service_info()?;
    let fullname = info.get_fullname().to_string();
    daemon.register(info)?;
    Ok(Advertiser {
        daemon,
        fullname,
        advert,
    })
}

impl Advertiser {
    /// The advert currently announced.
    pub fn advert(&self) -> &PosAdvert {
        &self.advert
    }

    /// The DNS-SD full name, e.g. `Cashpad Server (CP-1)._cashpad._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Re-announces with new values (address, port, TXT) under the same
    /// instance name, as a POS does after a DHCP address change. The
    /// `instance` and `mdns_port` of `advert` are ignored (kept).
    pub fn update(&mut self, mut advert: PosAdvert) -> anyhow::Result<()> {
        advert.instance = self.advert.instance.clone();
        advert.mdns_port = self.advert.mdns_port;
        let info = advert.service_info()?;
        self.daemon.register(info)?;
        self.advert = advert;
        Ok(())
    }

    /// Unregisters the service (sends goodbye packets) and shuts the daemon
    /// down.
    pub fn stop(self) -> anyhow::Result<()> {
        let rx = self.daemon.unregister(&self.fullname)?;
        let _ = rx.recv_timeout(Duration::from_secs(2));
        let _ = self.daemon.shutdown();
        Ok(())
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

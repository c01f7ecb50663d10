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

/// A POS's own mDNS responder on one LAN interface, with a record TTL of
/// the test's choice (mdns-sd's adverts always say 120 s for SRV and A and
/// 75 min for PTR and TXT).
///
/// Written from RFC 6762/6763, not from the agent: it announces the
/// instance twice at start (§8.3, one second apart), then answers every
/// query (QR = 0) that names one of its records with all four records
/// (PTR, SRV, TXT, A), multicast to `224.0.0.251:<mdns_port>` on its
/// interface. It never announces again by itself: a network cut that it
/// does not see is followed by silence, as with a POS whose switch
/// rebooted. [`LanResponder::announce`] announces on demand.
///
/// The socket is opened by [`LanResponder::start`] on the calling thread,
/// so a caller running in a network namespace gets a responder in that
/// namespace; the serving thread it spawns only reads and writes it.
pub struct LanResponder {
    socket: std::sync::Arc<std::net::UdpSocket>,
    packet: Vec<u8>,
    dest: std::net::SocketAddrV4,
    state: std::sync::Arc<ResponderState>,
}

#[derive(Default)]
struct ResponderState {
    stop: std::sync::atomic::AtomicBool,
    /// When each query naming our records was heard, and from whom.
    queries: std::sync::Mutex<Vec<(std::time::Instant, std::net::SocketAddr)>>,
}

/// mDNS IPv4 group (RFC 6762 §3).
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

impl LanResponder {
    /// Binds `0.0.0.0:<advert.mdns_port>`, joins the mDNS group on the
    /// interface that has address `iface`, announces `advert` (its A
    /// record says `advert.host_ip`) with `ttl_s` on every record, and
    /// serves queries until dropped.
    ///
    /// Errors: the socket cannot be bound or the group joined.
    pub fn start(advert: &PosAdvert, iface: Ipv4Addr, ttl_s: u32) -> anyhow::Result<LanResponder> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.bind(&std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, advert.mdns_port).into())?;
        s.join_multicast_v4(&MDNS_GROUP, &iface)?;
        s.set_multicast_if_v4(&iface)?;
        s.set_multicast_ttl_v4(255)?;
        s.set_multicast_loop_v4(false)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let socket = std::sync::Arc::new(std::net::UdpSocket::from(s));
        let responder = LanResponder {
            socket,
            packet: response_packet(advert, ttl_s)?,
            dest: std::net::SocketAddrV4::new(MDNS_GROUP, advert.mdns_port),
            state: Default::default(),
        };
        responder.announce()?;
        let (socket, packet, dest, state) = (
            responder.socket.clone(),
            responder.packet.clone(),
            responder.dest,
            responder.state.clone(),
        );
        // What a query naming our records contains, whatever it compressed:
        // the service type's labels, or the first label of the instance
        // or of the host name.
        let names = [
            first_labels(SERVICE_TYPE, 2),
            first_labels(&format!("{}.{SERVICE_TYPE}", advert.instance), 1),
            first_labels(&host_name(advert), 1),
        ];
        std::thread::Builder::new()
            .name("lan-responder".into())
            .spawn(move || {
                let mut buf = [0u8; 9000];
                let mut second = Some(std::time::Instant::now() + Duration::from_secs(1));
                while !state.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if second.is_some_and(|t| std::time::Instant::now() >= t) {
                        second = None;
                        let _ = socket.send_to(&packet, dest);
                    }
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let msg = &buf[..n];
                    // A query (QR bit clear) that names one of our records.
                    if n < 12 || msg[2] & 0x80 != 0 {
                        continue;
                    }
                    let lower = msg.to_ascii_lowercase();
                    if names.iter().any(|name| contains(&lower, name)) {
                        state
                            .queries
                            .lock()
                            .unwrap()
                            .push((std::time::Instant::now(), from));
                        let _ = socket.send_to(&packet, dest);
                    }
                }
            })?;
        Ok(responder)
    }

    /// Sends the four records now, unasked (an announcement, as after the
    /// POS's address or network changed).
    pub fn announce(&self) -> anyhow::Result<()> {
        self.socket.send_to(&self.packet, self.dest)?;
        Ok(())
    }

    /// The queries naming our records heard so far: when, and from which
    /// address and port.
    pub fn queries(&self) -> Vec<(std::time::Instant, std::net::SocketAddr)> {
        self.state.queries.lock().unwrap().clone()
    }
}

impl Drop for LanResponder {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn host_name(advert: &PosAdvert) -> String {
    let host: String = advert
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
    format!("cashpad-{host}.local.")
}

/// The first `n` labels of a name as they are on the wire, lower case.
fn first_labels(name: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').take(n) {
        out.push(label.len() as u8);
        out.extend(label.to_ascii_lowercase().as_bytes());
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One record: name, type, class (cache-flush bit for unique records),
/// TTL, data.
fn record(out: &mut Vec<u8>, name: &str, rtype: u16, flush: bool, ttl: u32, data: &[u8]) {
    out.extend(encode_name_exact(name));
    out.extend(rtype.to_be_bytes());
    out.extend((if flush { 0x8001u16 } else { 0x0001 }).to_be_bytes());
    out.extend(ttl.to_be_bytes());
    out.extend((data.len() as u16).to_be_bytes());
    out.extend(data);
}

/// A DNS name as labels, case kept (the instance name is for people).
fn encode_name_exact(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    out
}

/// The response every announcement and answer carries: PTR, SRV, TXT, A.
fn response_packet(advert: &PosAdvert, ttl: u32) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        !advert.instance.contains('.') && advert.instance.len() <= 63,
        "instance name must be one DNS label"
    );
    let instance = format!("{}.{SERVICE_TYPE}", advert.instance);
    let host = host_name(advert);
    let mut out = vec![0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    record(
        &mut out,
        SERVICE_TYPE,
        12,
        false,
        ttl,
        &encode_name_exact(&instance),
    );
    let mut srv = vec![0, 0, 0, 0];
    srv.extend(advert.mqtt_port.to_be_bytes());
    srv.extend(encode_name_exact(&host));
    record(&mut out, &instance, 33, true, ttl, &srv);
    let mut txt = Vec::new();
    let mut pairs: Vec<(String, String)> = advert.txt().into_iter().collect();
    pairs.sort();
    for (k, v) in pairs {
        let kv = format!("{k}={v}");
        anyhow::ensure!(kv.len() <= 255, "TXT entry too long");
        txt.push(kv.len() as u8);
        txt.extend(kv.as_bytes());
    }
    record(&mut out, &instance, 16, true, ttl, &txt);
    record(&mut out, &host, 1, true, ttl, &advert.host_ip.octets());
    Ok(out)
}

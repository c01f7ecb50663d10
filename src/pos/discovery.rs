//! Finding the Cashpad POS (docs/protocol/cashpad-local.md §1): DNS-SD over mDNS with
//! mdns-sd, the TXT rules, the selection rule, following re-announcements
//! (DHCP address changes), or a static `host`/`port` that replaces it all.
//!
//! The result is a `watch` of `Option<PosTarget>`: `pos::session` connects
//! to whatever it holds and reconnects when it changes.
//!
//! A record that expires (its TTL ran out during a network cut) never
//! withdraws the POS chosen: the watch keeps its last known address, which
//! the session goes on trying with its backoff, and while the session has
//! no connection the browser asks mDNS again every [`REQUERY`] (a fresh
//! browse), so a switch that comes back without a re-announcement costs
//! one retry interval, not the POS's next announcement.

use std::collections::BTreeMap;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::session::PosLink;
use crate::config::{CashpadConfig, Version};
use crate::health::Health;

/// DNS-SD service type of the Cashpad server.
pub const SERVICE_TYPE: &str = "_cashpad._tcp.local.";
/// Interface version this agent speaks (TXT `proto`).
pub const PROTO: &str = "1";
/// Quiet time after an announcement before choosing (lets every POS on the
/// LAN answer, so "exactly one" is judged on the whole picture).
const SETTLE: Duration = Duration::from_millis(1500);
/// While the MQTT session has no connection, mDNS is asked again this
/// often (cashpad-local §1: at least every 30 s). mdns-sd's own browse
/// queries space out (1 s, 2 s, 4 s … up to an hour), so after a long cut
/// the next one could be many minutes away.
pub const REQUERY: Duration = Duration::from_secs(30);

/// The POS to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosTarget {
    /// mDNS instance name (or `static`).
    pub instance: String,
    /// Address of the MQTT broker.
    pub host: String,
    /// MQTT port (the SRV port).
    pub port: u16,
    /// Cashpad Installation ID (topic root `cashpad/<iid>`).
    pub iid: String,
    /// Cashpad Server name (Zenchef Pay needs it).
    pub server: Option<String>,
    /// Cashpad app version.
    pub app: Option<String>,
    /// The MQTT port speaks TLS.
    pub tls: bool,
}

/// One announced instance, as read from its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Instance full name.
    pub instance: String,
    /// IPv4 address.
    pub host: String,
    /// SRV port.
    pub port: u16,
    /// TXT `proto`.
    pub proto: Option<String>,
    /// TXT `app`.
    pub app: Option<String>,
    /// TXT `iid`.
    pub iid: Option<String>,
    /// TXT `server`.
    pub server: Option<String>,
    /// TXT `tls` is `1`.
    pub tls: bool,
}

/// Why an instance cannot be used (logged once per instance and reason).
pub fn incompatibility(a: &Announced, min: Version) -> Option<String> {
    match a.proto.as_deref() {
        Some(PROTO) => {}
        Some(p) => {
            return Some(format!(
                "POS \"{}\" speaks Cashpad local interface version {p}; this agent speaks only version {PROTO}",
                a.instance
            ));
        }
        None => {
            return Some(format!(
                "POS \"{}\" announces no `proto` TXT key",
                a.instance
            ));
        }
    }
    match a.app.as_deref().map(str::parse::<Version>) {
        Some(Ok(v)) if v >= min => {}
        Some(Ok(v)) => {
            return Some(format!(
                "POS \"{}\" runs Cashpad {v}, older than the required {min}: update the POS to {min} or later",
                a.instance
            ));
        }
        Some(Err(e)) => return Some(format!("POS \"{}\": TXT `app` {e}", a.instance)),
        None => return Some(format!("POS \"{}\" announces no `app` TXT key", a.instance)),
    }
    match a.iid.as_deref() {
        None | Some("") => {
            return Some(format!("POS \"{}\" announces no `iid` TXT key", a.instance));
        }
        // The iid goes into MQTT topics and Zenchef Pay URL paths.
        Some(iid) => {
            if let Err(why) = crate::config::check_iid(iid) {
                return Some(format!(
                    "POS \"{}\" announces TXT `iid` {why}; it is not used",
                    a.instance
                ));
            }
        }
    }
    None
}

/// The selection rule of §1. `Err` carries the sentence to log at ERROR.
pub fn select(
    seen: &[Announced],
    configured_iid: Option<&str>,
    min: Version,
) -> Result<Option<PosTarget>, String> {
    let ok: Vec<&Announced> = seen
        .iter()
        .filter(|a| incompatibility(a, min).is_none())
        .collect();
    let chosen = match configured_iid {
        Some(iid) => match ok.iter().find(|a| a.iid.as_deref() == Some(iid)) {
            Some(a) => *a,
            None if seen.is_empty() => return Ok(None),
            None => {
                return Err(format!(
                    "no compatible POS with installation id {iid} answers (seen: {})",
                    list(seen)
                ));
            }
        },
        None => match ok.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            many => {
                return Err(format!(
                    "{} POS answer on the LAN and cashpad.installation_id is not set; set it to one of: {}",
                    many.len(),
                    many.iter()
                        .map(|a| describe(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        },
    };
    Ok(Some(PosTarget {
        instance: chosen.instance.clone(),
        host: chosen.host.clone(),
        port: chosen.port,
        iid: chosen.iid.clone().unwrap_or_default(),
        server: chosen.server.clone(),
        app: chosen.app.clone(),
        tls: chosen.tls,
    }))
}

fn describe(a: &Announced) -> String {
    let iid = match a.iid.as_deref() {
        Some(i) if crate::config::check_iid(i).is_ok() => i.to_string(),
        Some(i) => crate::config::escaped(i),
        None => "?".into(),
    };
    format!("{} (\"{}\" at {}:{})", iid, a.instance, a.host, a.port)
}

fn list(seen: &[Announced]) -> String {
    seen.iter().map(describe).collect::<Vec<_>>().join(", ")
}

/// The mDNS daemon on `cfg.mdns_port`, limited to `cfg.interfaces` when
/// set (`lo` = IPv4 loopback, for tests). Also used by `doctor`.
pub fn mdns_daemon(cfg: &CashpadConfig) -> Result<ServiceDaemon, mdns_sd::Error> {
    let daemon = ServiceDaemon::new_with_port(cfg.mdns_port)?;
    if !cfg.interfaces.is_empty() {
        daemon.disable_interface(IfKind::All)?;
        for name in &cfg.interfaces {
            if name == "lo" {
                daemon.enable_interface(IfKind::LoopbackV4)?;
            } else {
                daemon.enable_interface(IfKind::Name(name.clone()))?;
            }
        }
    }
    Ok(daemon)
}

/// A resolved instance as the selection rule sees it (lowest IPv4
/// address); `None` without an IPv4 address.
pub fn announced(s: &mdns_sd::ResolvedService) -> Option<Announced> {
    let mut addrs: Vec<_> = s.get_addresses_v4().into_iter().collect();
    addrs.sort();
    let ip = addrs.first()?;
    let txt = |k: &str| s.get_property_val_str(k).map(str::to_string);
    Some(Announced {
        instance: s
            .get_fullname()
            .trim_end_matches(SERVICE_TYPE)
            .trim_end_matches('.')
            .to_string(),
        host: ip.to_string(),
        port: s.get_port(),
        proto: txt("proto"),
        app: txt("app"),
        iid: txt("iid"),
        server: txt("server"),
        tls: txt("tls").as_deref() == Some("1"),
    })
}

/// Starts discovery (or publishes the static target) and answers the
/// watch that `pos::session` follows. `link` tells whether the session is
/// connected: while it is not, mDNS is asked again every [`REQUERY`].
///
/// Errors: the mDNS daemon cannot start (socket/port problem).
pub fn start(
    cfg: &CashpadConfig,
    health: Health,
    link: PosLink,
    cancel: CancellationToken,
) -> Result<watch::Receiver<Option<PosTarget>>, mdns_sd::Error> {
    if let Some((host, port)) = &cfg.static_addr {
        let target = PosTarget {
            instance: "static".into(),
            host: host.clone(),
            port: *port,
            iid: cfg.installation_id.clone().unwrap_or_default(),
            server: None,
            app: None,
            tls: false,
        };
        info!("static POS address {host}:{port} (discovery disabled)");
        set_health(&health, Some(&target), None);
        let (tx, rx) = watch::channel(Some(target));
        tokio::spawn(async move {
            cancel.cancelled().await;
            drop(tx);
        });
        return Ok(rx);
    }
    let daemon = mdns_daemon(cfg)?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let (tx, rx) = watch::channel(None);
    info!(
        "looking for the POS by mDNS ({SERVICE_TYPE}, port {})",
        cfg.mdns_port
    );
    let browser = Browser {
        min: cfg.min_version,
        iid: cfg.installation_id.clone(),
        health,
        tx,
        seen: BTreeMap::new(),
        logged: Default::default(),
        last_problem: None,
    };
    tokio::spawn(async move {
        browser.run(&daemon, events, &link, cancel).await;
        let _ = daemon.shutdown();
    });
    Ok(rx)
}

/// The browsing task's state: what is announced, what was said.
struct Browser {
    /// `[cashpad] min_version`.
    min: Version,
    /// `[cashpad] installation_id`, when pinned.
    iid: Option<String>,
    health: Health,
    /// The chosen POS, for the session.
    tx: watch::Sender<Option<PosTarget>>,
    /// Every POS announced now, by mDNS full name.
    seen: BTreeMap<String, Announced>,
    /// Incompatibilities already said (once each).
    logged: std::collections::HashSet<String>,
    /// The last problem said (said again only when it changes).
    last_problem: Option<String>,
}

impl Browser {
    /// Follows the announcements until `cancel`; decides [`SETTLE`] after
    /// the first change of a burst; browses again every [`REQUERY`] while
    /// `link` has no connection (a new browse replaces the previous one's
    /// channel and starts mdns-sd's query sequence again at once).
    async fn run(
        mut self,
        daemon: &ServiceDaemon,
        mut events: mdns_sd::Receiver<ServiceEvent>,
        link: &PosLink,
        cancel: CancellationToken,
    ) {
        let mut decide_at: Option<tokio::time::Instant> = None;
        let mut requery = tokio::time::interval_at(tokio::time::Instant::now() + REQUERY, REQUERY);
        requery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let timer = async {
                match decide_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = events.recv_async() => {
                    let Ok(ev) = ev else { break };
                    if self.heard(ev) {
                        decide_at.get_or_insert(tokio::time::Instant::now() + SETTLE);
                    }
                }
                _ = timer => {
                    decide_at = None;
                    self.decide();
                }
                _ = requery.tick() => if !link.connected() {
                    match daemon.browse(SERVICE_TYPE) {
                        Ok(fresh) => {
                            debug!("no MQTT connection: asking mDNS for the POS again");
                            let old = std::mem::replace(&mut events, fresh);
                            // What the previous browse still holds (a removal
                            // not read yet); the daemon drops its sender as it
                            // takes the new one, which ends this at once.
                            let drain = Duration::from_millis(500);
                            while let Ok(Ok(ev)) = tokio::time::timeout(drain, old.recv_async()).await {
                                if self.heard(ev) {
                                    decide_at.get_or_insert(tokio::time::Instant::now() + SETTLE);
                                }
                            }
                        }
                        Err(e) => warn!("cannot ask mDNS for the POS again: {e}"),
                    }
                },
            }
        }
    }

    /// An mDNS event; `true` when what is announced changed.
    fn heard(&mut self, ev: ServiceEvent) -> bool {
        match ev {
            ServiceEvent::ServiceResolved(s) => {
                let Some(a) = announced(&s) else {
                    return false;
                };
                if let Some(why) = incompatibility(&a, self.min)
                    && self.logged.insert(why.clone())
                {
                    error!(
                        "{why}; the agent keeps watching and connects as soon as a compatible POS is announced"
                    );
                }
                if self.seen.get(s.get_fullname()) != Some(&a) {
                    self.seen.insert(s.get_fullname().to_string(), a);
                    return true;
                }
                false
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                let Some(gone) = self.seen.remove(&fullname) else {
                    return false;
                };
                match self.tx.borrow().as_ref() {
                    Some(t) if t.instance == gone.instance => info!(
                        "the mDNS record of POS \"{}\" expired (no answer within its TTL); the \
                         agent keeps trying its last known address {}:{} and asks mDNS again \
                         every {} s while it has no connection",
                        gone.instance,
                        t.host,
                        t.port,
                        REQUERY.as_secs()
                    ),
                    _ => info!("POS \"{}\" left the network", gone.instance),
                }
                true
            }
            _ => false,
        }
    }

    /// Chooses among what is announced (the TXT rules of
    /// [`select`]), says a new problem, and tells the session a new choice.
    /// A POS chosen before whose record is gone (expired, not replaced by
    /// an incompatible one) stays chosen until the rules choose another:
    /// its last known address is all the agent has (cashpad-local §1).
    fn decide(&mut self) {
        let all: Vec<Announced> = self.seen.values().cloned().collect();
        let (mut target, problem) = match select(&all, self.iid.as_deref(), self.min) {
            Ok(t) => (t, None),
            Err(p) => (None, Some(p)),
        };
        if target.is_none() {
            let current = self.tx.borrow().clone();
            target = current.filter(|c| !self.seen.values().any(|a| a.instance == c.instance));
        }
        if problem != self.last_problem {
            if let Some(p) = &problem {
                error!("{p}");
            }
            self.last_problem = problem.clone();
        }
        if *self.tx.borrow() != target {
            match &target {
                Some(t) => info!(
                    "POS chosen: \"{}\" at {}:{} (Cashpad {}, installation {}, server {})",
                    t.instance,
                    t.host,
                    t.port,
                    t.app.as_deref().unwrap_or("?"),
                    t.iid,
                    t.server.as_deref().unwrap_or("?")
                ),
                None => warn!("no usable POS at the moment"),
            }
            set_health(&self.health, target.as_ref(), problem.clone());
            let _ = self.tx.send(target);
        } else if problem.is_some() {
            set_health(&self.health, None, problem);
        }
    }
}

fn set_health(health: &Health, t: Option<&PosTarget>, problem: Option<String>) {
    health.update(|s| {
        s.pos.found = t.is_some();
        s.pos.instance = t.map(|t| t.instance.clone());
        s.pos.address = t.map(|t| format!("{}:{}", t.host, t.port));
        s.pos.app_version = t.and_then(|t| t.app.clone());
        s.pos.installation_id = t.map(|t| t.iid.clone());
        s.pos.server = t.and_then(|t| t.server.clone());
        s.pos.problem = problem;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(name: &str, iid: &str, app: &str, proto: &str) -> Announced {
        Announced {
            instance: name.into(),
            host: "127.0.0.1".into(),
            port: 1883,
            proto: Some(proto.into()),
            app: Some(app.into()),
            iid: Some(iid.into()),
            server: Some("eu-3".into()),
            tls: false,
        }
    }

    const MIN: Version = Version(2, 0, 16);

    #[test]
    fn too_old_or_wrong_proto_is_refused_by_name() {
        let old = pos("Bistrot", "CP-1", "2.0.15", "1");
        assert_eq!(
            incompatibility(&old, MIN).unwrap(),
            "POS \"Bistrot\" runs Cashpad 2.0.15, older than the required 2.0.16: update the POS to 2.0.16 or later"
        );
        assert!(
            incompatibility(&pos("B", "CP-1", "2.0.16", "2"), MIN)
                .unwrap()
                .contains("version 2")
        );
        assert_eq!(select(&[old], None, MIN), Ok(None));
    }

    #[test]
    fn exactly_one_is_taken_several_are_refused_and_listed() {
        let a = pos("A", "CP-A", "2.0.18", "1");
        let b = pos("B", "CP-B", "2.1.0", "1");
        assert_eq!(
            select(std::slice::from_ref(&a), None, MIN)
                .unwrap()
                .unwrap()
                .iid,
            "CP-A"
        );
        let e = select(&[a.clone(), b.clone()], None, MIN).unwrap_err();
        assert!(
            e.contains("2 POS answer") && e.contains("CP-A") && e.contains("CP-B"),
            "{e}"
        );
        assert_eq!(
            select(&[a.clone(), b.clone()], Some("CP-B"), MIN)
                .unwrap()
                .unwrap()
                .instance,
            "B"
        );
        assert!(
            select(&[a], Some("CP-Z"), MIN)
                .unwrap_err()
                .contains("CP-Z")
        );
    }

    fn browser(iid: Option<&str>) -> (Browser, watch::Receiver<Option<PosTarget>>) {
        let (tx, rx) = watch::channel(None);
        let b = Browser {
            min: MIN,
            iid: iid.map(str::to_string),
            health: Health::default(),
            tx,
            seen: BTreeMap::new(),
            logged: Default::default(),
            last_problem: None,
        };
        (b, rx)
    }

    fn at(mut a: Announced, host: &str) -> Announced {
        a.host = host.into();
        a
    }

    fn fullname(a: &Announced) -> String {
        format!("{}.{SERVICE_TYPE}", a.instance)
    }

    fn chosen(rx: &watch::Receiver<Option<PosTarget>>) -> Option<(String, String)> {
        rx.borrow()
            .as_ref()
            .map(|t| (t.instance.clone(), t.host.clone()))
    }

    #[test]
    fn an_expired_record_keeps_the_last_address_until_the_rules_choose_again() {
        for iid in [None, Some("CP-A")] {
            let (mut b, rx) = browser(iid);
            let a = at(pos("A", "CP-A", "2.0.18", "1"), "10.0.0.5");
            b.seen.insert(fullname(&a), a.clone());
            b.decide();
            let want = Some(("A".to_string(), "10.0.0.5".to_string()));
            assert_eq!(chosen(&rx), want);
            // The TTL runs out during a cut: still chosen, same address.
            let removed = ServiceEvent::ServiceRemoved(SERVICE_TYPE.into(), fullname(&a));
            assert!(b.heard(removed));
            b.decide();
            assert_eq!(chosen(&rx), want, "iid {iid:?}");
            // Another POS alone, with the installation id pinned to A: A is
            // still the one tried (with none pinned, the rules take B).
            let other = at(pos("B", "CP-B", "2.0.18", "1"), "10.0.0.9");
            b.seen.insert(fullname(&other), other.clone());
            b.decide();
            let expect_b = Some(("B".to_string(), "10.0.0.9".to_string()));
            assert_eq!(
                chosen(&rx),
                if iid.is_some() {
                    want.clone()
                } else {
                    expect_b
                }
            );
            b.seen.remove(&fullname(&other));
            // A real change of address announced: followed at once.
            let moved = at(a.clone(), "10.0.0.6");
            b.seen.insert(fullname(&moved), moved);
            b.decide();
            assert_eq!(chosen(&rx), Some(("A".to_string(), "10.0.0.6".to_string())));
            // A announced again but too old: refused, withdrawn as before.
            let old = at(pos("A", "CP-A", "2.0.1", "1"), "10.0.0.6");
            b.seen.insert(fullname(&old), old);
            b.decide();
            assert_eq!(chosen(&rx), None, "iid {iid:?}");
        }
    }
}

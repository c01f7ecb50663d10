//! The DNS-SD advert, browsed back on loopback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mdns_sd::ServiceEvent;
use zenchef_sim::mdns::{PosAdvert, SERVICE_TYPE, advertise, loopback_daemon};
use zenchef_sim::util::free_port;

/// fullname → (SRV port, TXT, IPv4 addresses).
type Seen = HashMap<String, (u16, HashMap<String, String>, Vec<String>)>;

/// Browses until `pred` holds over the resolved services (fullname → (port,
/// txt)), or panics after 10 s.
fn browse_until(port: u16, pred: impl Fn(&Seen) -> bool) -> Seen {
    let d = loopback_daemon(port).unwrap();
    let rx = d.browse(SERVICE_TYPE).unwrap();
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(ServiceEvent::ServiceResolved(info)) = rx.recv_timeout(Duration::from_millis(200))
        {
            let txt = info
                .get_properties()
                .iter()
                .map(|p| (p.key().to_string(), p.val_str().to_string()))
                .collect();
            let addrs = info
                .get_addresses_v4()
                .iter()
                .map(|a| a.to_string())
                .collect();
            seen.insert(
                info.get_fullname().to_string(),
                (info.get_port(), txt, addrs),
            );
            if pred(&seen) {
                let _ = d.shutdown();
                return seen;
            }
        }
    }
    panic!("browse timed out; saw {seen:?}");
}

#[test]
fn advert_is_browsed_back_with_txt_and_two_can_coexist_and_update() {
    let mdns_port = free_port().unwrap();
    let a = advertise(PosAdvert::new(mdns_port, "CP-4F2A91", 18831)).unwrap();
    let mut other = PosAdvert::new(mdns_port, "CP-0B0B", 18832);
    other.app = "2.0.15".into();
    other.tls = true;
    let mut b = advertise(other).unwrap();
    let seen = browse_until(mdns_port, |s| s.len() >= 2);
    let (port, txt, addrs) = &seen[a.fullname()];
    assert_eq!(*port, 18831);
    assert_eq!(txt["proto"], "1");
    assert_eq!(txt["app"], "2.0.18");
    assert_eq!(txt["iid"], "CP-4F2A91");
    assert_eq!(txt["server"], "eu-3");
    assert_eq!(txt["tls"], "0");
    assert_eq!(addrs, &vec!["127.0.0.1".to_string()]);
    let (_, txt_b, _) = &seen[b.fullname()];
    assert_eq!(txt_b["tls"], "1");
    assert_eq!(txt_b["app"], "2.0.15");

    // DHCP-like change: same instance, new port.
    let mut moved = b.advert().clone();
    moved.mqtt_port = 18999;
    b.update(moved).unwrap();
    let name = b.fullname().to_string();
    browse_until(mdns_port, |s| {
        s.get(&name).is_some_and(|(p, _, _)| *p == 18999)
    });
    a.stop().unwrap();
    b.stop().unwrap();
}

/// The LAN responder (a POS with its own TTL) is read by a standard mDNS
/// stack: resolved with its TXT and port, and removed once its TTL has run
/// out after it went silent.
#[test]
fn lan_responder_is_resolved_and_expires_after_its_ttl() {
    use zenchef_sim::mdns::LanResponder;
    let mdns_port = free_port().unwrap();
    let advert = PosAdvert::new(mdns_port, "CP-77AA", 18833);
    let responder = LanResponder::start(&advert, std::net::Ipv4Addr::LOCALHOST, 2).unwrap();
    let d = loopback_daemon(mdns_port).unwrap();
    let rx = d.browse(SERVICE_TYPE).unwrap();
    let fullname = format!("{}.{SERVICE_TYPE}", advert.instance);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resolved = None;
    while resolved.is_none() && Instant::now() < deadline {
        if let Ok(ServiceEvent::ServiceResolved(info)) = rx.recv_timeout(Duration::from_millis(200))
        {
            resolved = Some(info);
        }
    }
    let info = resolved.expect("resolved within 10 s");
    assert_eq!(info.get_fullname(), fullname);
    assert_eq!(info.get_port(), 18833);
    assert_eq!(info.get_property_val_str("iid"), Some("CP-77AA"));
    assert_eq!(info.get_property_val_str("proto"), Some("1"));
    assert!(
        !responder.queries().is_empty(),
        "the browse's query was heard"
    );
    // Silent from now on: the records (TTL 2 s) expire.
    drop(responder);
    let silent = Instant::now();
    let deadline = silent + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "not removed within 10 s");
        if let Ok(ServiceEvent::ServiceRemoved(_, name)) =
            rx.recv_timeout(Duration::from_millis(200))
        {
            assert_eq!(name, fullname);
            break;
        }
    }
    assert!(
        silent.elapsed() <= Duration::from_secs(4),
        "{:?}",
        silent.elapsed()
    );
    let _ = d.shutdown();
}

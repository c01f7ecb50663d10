//! Zero-touch provisioning with the real binary, a temporary directory
//! standing in for the boot partition, and the box's own mDNS advert
//! resolved on loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");
const ZC_TOKEN: &str = "zc-9f8e7d6c5b4a-TOKEN";
const CP_TOKEN: &str = "cp-1a2b3c4d5e6f-TOKEN";

fn drop_text() -> String {
    format!(
        "[cashpad]\ntoken = \"{CP_TOKEN}\"\n[zenchef]\nrestaurant_id = \"654321\"\ntoken = \"{ZC_TOKEN}\"\n"
    )
}

fn provision(boot: &Path, config: &Path, state: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(AGENT)
        .arg("provision")
        .arg("--boot-dir")
        .arg(boot)
        .arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_valid_drop_is_installed_private_and_scrubbed_from_the_card() {
    let t = tempfile::tempdir().unwrap();
    let (boot, etc, state) = (
        t.path().join("boot"),
        t.path().join("etc"),
        t.path().join("state"),
    );
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("zenchef-edge.toml"), drop_text()).unwrap();
    let config = etc.join("agent.toml");
    let (code, log) = provision(&boot, &config, &state, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), drop_text());
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = all_bytes(&boot);
    assert!(
        !contains(&bytes, ZC_TOKEN) && !contains(&bytes, CP_TOKEN),
        "a token is left on the card"
    );
    let note = std::fs::read_to_string(boot.join("zenchef-edge.toml")).unwrap();
    assert!(note.starts_with("# zenchef-edge: consumed on "), "{note}");
    assert!(state.join("provisioned").exists());
    assert!(!log.contains(ZC_TOKEN) && !log.contains(CP_TOKEN), "{log}");

    // Second start: nothing is re-applied, no error is reported.
    std::fs::write(&config, "edited later by a technician\n").unwrap();
    let (code, log) = provision(&boot, &config, &state, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "edited later by a technician\n"
    );
    assert!(!boot.join("zenchef-edge.provisioning-error.txt").exists());
}

#[test]
fn an_invalid_drop_is_not_consumed_and_the_card_says_why() {
    let t = tempfile::tempdir().unwrap();
    let (boot, state) = (t.path().join("boot"), t.path().join("state"));
    std::fs::create_dir_all(&boot).unwrap();
    let bad = drop_text().replace("restaurant_id = \"654321\"\n", "");
    std::fs::write(boot.join("zenchef-edge.toml"), &bad).unwrap();
    let config = t.path().join("etc/agent.toml");
    let (code, log) = provision(&boot, &config, &state, &[]);
    assert_eq!(code, 1);
    assert!(log.contains("zenchef.restaurant_id: missing"), "{log}");
    assert!(!config.exists(), "nothing installed");
    assert_eq!(
        std::fs::read_to_string(boot.join("zenchef-edge.toml")).unwrap(),
        bad,
        "not consumed"
    );
    let report = std::fs::read_to_string(boot.join("zenchef-edge.provisioning-error.txt")).unwrap();
    assert!(
        report.contains("config error: zenchef.restaurant_id: missing"),
        "{report}"
    );
    assert!(!state.join("provisioned").exists());
}

#[test]
fn ssh_keys_are_installed_for_the_technician_then_removed_from_the_card() {
    let t = tempfile::tempdir().unwrap();
    let (boot, home) = (t.path().join("boot"), t.path().join("home/tech"));
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".ssh/authorized_keys"),
        "ssh-ed25519 AAAAexisting tech@laptop\n",
    )
    .unwrap();
    std::fs::write(
        boot.join("authorized_keys"),
        "# support keys\nssh-ed25519 AAAAnewkey support@zenchef\nssh-ed25519 AAAAexisting tech@laptop\nnot a key\n",
    )
    .unwrap();
    let config = t.path().join("etc/agent.toml");
    let home_arg = home.display().to_string();
    let (code, log) = provision(
        &boot,
        &config,
        &t.path().join("state"),
        &["--ssh-home", &home_arg],
    );
    assert_eq!(code, 0, "{log}");
    let keys = std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap();
    assert_eq!(
        keys,
        "ssh-ed25519 AAAAexisting tech@laptop\nssh-ed25519 AAAAnewkey support@zenchef\n"
    );
    assert_eq!(
        std::fs::metadata(home.join(".ssh/authorized_keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(home.join(".ssh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(!boot.join("authorized_keys").exists());
    assert!(log.contains("1 SSH key(s) installed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_box_advertises_itself_by_mdns_with_its_device_id_and_the_pos_iid() {
    use zenchef_sim::harness::{Rig, RigOptions};
    let dir = tempfile::tempdir().unwrap();
    let zc = zenchef_sim::zenchef::ZenchefConfig {
        restaurant_id: "654321".into(),
        token: "zc-token".into(),
        ..Default::default()
    };
    let mut rig = Rig::start(RigOptions::new(zc), Path::new(AGENT), dir.path())
        .await
        .unwrap();
    rig.spawn_agent().unwrap();
    let browser = ServiceDaemon::new_with_port(rig.mdns_port).unwrap();
    browser.disable_interface(mdns_sd::IfKind::All).unwrap();
    browser
        .enable_interface(mdns_sd::IfKind::LoopbackV4)
        .unwrap();
    let rx = browser.browse("_zenchef-edge._tcp.local.").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let device = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no advert with iid\n{}",
            rig.log_tail(30)
        );
        if let Ok(ServiceEvent::ServiceResolved(s)) = rx.recv_timeout(Duration::from_millis(500))
            && s.get_property_val_str("iid") == Some(rig.opts.iid.as_str())
        {
            assert_eq!(
                s.get_property_val_str("version"),
                Some(env!("CARGO_PKG_VERSION"))
            );
            break s.get_property_val_str("device").unwrap().to_string();
        }
    };
    let stored = std::fs::read_to_string(dir.path().join("device-id")).unwrap();
    assert_eq!(device, stored.trim());
    let _ = browser.shutdown();
}

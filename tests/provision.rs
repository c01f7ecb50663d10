//! Zero-touch provisioning with the real binary, a temporary directory
//! standing in for the boot partition, and the box's own mDNS advert
//! resolved on loopback.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// A well-formed ed25519 public key line (the blob names its type).
fn pubkey(seed: u8, comment: &str) -> String {
    use base64::Engine;
    let mut blob = 11u32.to_be_bytes().to_vec();
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&[seed; 32]);
    format!(
        "ssh-ed25519 {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// The name of the account running the tests (the owner the keys get).
fn me() -> String {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map(|f| f[0].to_string())
        .expect("the test user is in /etc/passwd")
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
    std::fs::create_dir_all(boot.join("zenchef")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let (existing, new) = (pubkey(1, "tech@laptop"), pubkey(2, "support@zenchef"));
    std::fs::write(home.join(".ssh/authorized_keys"), format!("{existing}\n")).unwrap();
    std::fs::write(
        boot.join("zenchef/authorized_keys"),
        format!(
            "# support keys\n{new}\n{existing}\nnot a key\nssh-ed25519 AAAAtypo support@zenchef\n"
        ),
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
    assert_eq!(keys, format!("{existing}\n{new}\n"));
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
    assert!(!boot.join("zenchef/authorized_keys").exists());
    assert!(log.contains("1 SSH key(s) installed"), "{log}");
    assert_eq!(
        log.matches("ignored a line").count(),
        2,
        "the two bad lines: {log}"
    );
}

#[test]
fn a_keys_file_without_a_valid_key_changes_nothing_and_stays_on_the_card() {
    let t = tempfile::tempdir().unwrap();
    let (boot, home) = (t.path().join("boot"), t.path().join("home/tech"));
    std::fs::create_dir_all(boot.join("zenchef")).unwrap();
    let typo = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI-typo tech@laptop\n";
    std::fs::write(boot.join("zenchef/authorized_keys"), typo).unwrap();
    let home_arg = home.display().to_string();
    let (code, log) = provision(
        &boot,
        &t.path().join("etc/agent.toml"),
        &t.path().join("state"),
        &["--ssh-home", &home_arg],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("holds no valid SSH public key"), "{log}");
    assert_eq!(
        std::fs::read_to_string(boot.join("zenchef/authorized_keys")).unwrap(),
        typo
    );
    assert!(!home.join(".ssh/authorized_keys").exists());
}

/// The `ExecStart=` of the unit as shipped, with the box's paths moved
/// into a temporary directory: the keys at `zenchef/authorized_keys` of
/// the boot partition reach the account the unit names (here the test's
/// own account and a temporary home: the box has `zenchef`), and the
/// configuration drop is installed.
#[test]
fn the_shipped_unit_installs_the_drop_and_the_keys_for_its_technician_account() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/zenchef-edge-provision.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=-"))
        .expect("ExecStart=- in the unit");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[0], "/usr/bin/zenchef-edge");
    assert_eq!(words[1], "provision");
    // The account the docs name, and the paths of the box.
    let account = words
        .windows(2)
        .find(|w| w[0] == "--ssh-user")
        .map(|w| w[1])
        .expect("the unit names the technician account");
    assert_eq!(account, zenchef_edge::provision::TECHNICIAN_ACCOUNT);
    assert_eq!(account, "zenchef");
    // The unit runs whenever either drop is there, in both boot directories.
    for dir in zenchef_edge::provision::DEFAULT_BOOT_DIRS {
        for drop in ["zenchef-edge.toml", "zenchef/authorized_keys"] {
            let line = format!("ConditionPathExists=|{dir}/{drop}");
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
    }

    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let boot = root.join("boot/firmware");
    std::fs::create_dir_all(boot.join("zenchef")).unwrap();
    std::fs::write(boot.join("zenchef-edge.toml"), drop_text()).unwrap();
    let key = pubkey(9, "support@zenchef");
    std::fs::write(boot.join("zenchef/authorized_keys"), format!("{key}\n")).unwrap();
    let home = root.join("home/zenchef");
    let user = me();
    let mut args: Vec<String> = Vec::new();
    let mut i = 2;
    while i < words.len() {
        match words[i] {
            // The box's absolute paths, under the temporary root.
            "--config" | "--state-dir" => {
                args.push(words[i].into());
                args.push(format!("{}{}", root.display(), words[i + 1]));
                i += 2;
            }
            // The test cannot create `zenchef` in /etc/passwd.
            "--ssh-user" => {
                args.extend(["--ssh-user".into(), user.clone()]);
                args.extend(["--ssh-home".into(), home.display().to_string()]);
                i += 2;
            }
            other => panic!("an argument this test does not know: {other}"),
        }
    }
    args.extend(["--boot-dir".into(), boot.display().to_string()]);
    let out = Command::new(AGENT)
        .arg("provision")
        .args(&args)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let config = root.join("etc/zenchef-edge/agent.toml");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), drop_text());
    let keys = home.join(".ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{key}\n"));
    let meta = std::fs::metadata(&keys).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), std::fs::metadata("/proc/self").unwrap().uid());
    assert!(!boot.join("zenchef/authorized_keys").exists());
    assert!(root.join("var/lib/zenchef-edge/provisioned").exists());
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

/// A file the test owns, with its bytes and mode, to point planted links
/// at: it must come out of every attack as it went in.
struct Victim {
    path: std::path::PathBuf,
    bytes: &'static str,
}

impl Victim {
    fn new(dir: &Path, name: &str) -> Victim {
        let v = Victim {
            path: dir.join(name),
            bytes: "the victim's own bytes\n",
        };
        std::fs::write(&v.path, v.bytes).unwrap();
        std::fs::set_permissions(&v.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        v
    }

    fn assert_untouched(&self, log: &str) {
        assert_eq!(
            std::fs::read_to_string(&self.path).unwrap(),
            self.bytes,
            "written through a planted link: {log}"
        );
        let mode = std::fs::metadata(&self.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "chmod through a planted link: {log}");
    }
}

/// `provision` run by a shell that first plants links at the names given
/// (`$$` in a name is the agent's pid: the shell `exec`s the agent, which
/// keeps it), the way someone reading `/proc` can for a process that
/// runs as root.
fn provision_with_links(
    boot: &Path,
    config: &Path,
    state: &Path,
    home: &Path,
    links: &[(String, &Path)],
) -> (i32, String) {
    let mut script = String::new();
    for (i, (at, _)) in links.iter().enumerate() {
        script.push_str(&format!("ln -s \"$T{i}\" \"{at}\" || exit 99\n"));
    }
    script.push_str(
        "exec \"$AGENT\" provision --boot-dir \"$BOOT\" --state-dir \"$STATE\" \
         --config \"$CONFIG\" --ssh-home \"$HOME_DIR\"\n",
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("AGENT", AGENT)
        .env("BOOT", boot)
        .env("STATE", state)
        .env("CONFIG", config)
        .env("HOME_DIR", home);
    for (i, (_, target)) in links.iter().enumerate() {
        cmd.env(format!("T{i}"), target);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 21 (h): provisioning runs as root; links planted at the temp
/// names of its atomic writes (`.<name>.tmp-<pid>`, guessable from
/// `/proc`) and at the `provisioned` marker must not make it write or
/// chmod the file they point to.
#[test]
fn links_planted_at_the_names_provisioning_writes_are_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let (boot, etc, state, home) = (
        t.path().join("boot"),
        t.path().join("etc"),
        t.path().join("state"),
        t.path().join("home"),
    );
    for d in [&boot.join("zenchef"), &etc, &state, &home.join(".ssh")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let victim = Victim::new(t.path(), "victim");
    std::fs::write(boot.join("zenchef-edge.toml"), drop_text()).unwrap();
    let key = pubkey(3, "support@zenchef");
    std::fs::write(boot.join("zenchef/authorized_keys"), format!("{key}\n")).unwrap();
    let config = etc.join("agent.toml");
    let links = [
        (
            format!("{}/.agent.toml.tmp-$$", etc.display()),
            victim.path.as_path(),
        ),
        (
            format!("{}/.ssh/.authorized_keys.tmp-$$", home.display()),
            victim.path.as_path(),
        ),
        (
            format!("{}/provisioned", state.display()),
            victim.path.as_path(),
        ),
    ];
    let (code, log) = provision_with_links(&boot, &config, &state, &home, &links);
    assert_eq!(code, 0, "{log}");
    victim.assert_untouched(&log);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), drop_text());
    let keys = home.join(".ssh/authorized_keys");
    assert!(std::fs::symlink_metadata(&keys).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{key}\n"));
    assert!(
        std::fs::symlink_metadata(state.join("provisioned"))
            .unwrap()
            .is_file()
    );
}

/// Issue 21 (h): the error report written beside a refused drop replaces
/// a link planted at its name, and never writes through it.
#[test]
fn a_link_planted_at_the_error_report_is_replaced_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let (boot, state) = (t.path().join("boot"), t.path().join("state"));
    std::fs::create_dir_all(&boot).unwrap();
    let victim = Victim::new(t.path(), "victim");
    let report = boot.join("zenchef-edge.provisioning-error.txt");
    std::os::unix::fs::symlink(&victim.path, &report).unwrap();
    let bad = drop_text().replace("restaurant_id = \"654321\"\n", "");
    std::fs::write(boot.join("zenchef-edge.toml"), &bad).unwrap();
    let (code, log) = provision(&boot, &t.path().join("etc/agent.toml"), &state, &[]);
    assert_eq!(code, 1, "{log}");
    victim.assert_untouched(&log);
    assert!(std::fs::symlink_metadata(&report).unwrap().is_file());
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("zenchef.restaurant_id: missing"), "{text}");
}

/// Issue 21 (h): the technician's `~/.ssh` and `authorized_keys` belong
/// to that account. A `~/.ssh` that is a link is not chmod-ed nor written
/// into; an `authorized_keys` that is a link is not read into the new
/// keys file (it would copy, say, `/etc/shadow` to the account).
#[test]
fn links_in_the_technician_home_are_refused_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let (boot, home) = (t.path().join("boot"), t.path().join("home"));
    std::fs::create_dir_all(boot.join("zenchef")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.join(".ssh")).unwrap();
    let key = pubkey(4, "support@zenchef");
    let drop = boot.join("zenchef/authorized_keys");
    std::fs::write(&drop, format!("{key}\n")).unwrap();
    let home_arg = home.display().to_string();
    let config = t.path().join("etc/agent.toml");
    let state = t.path().join("state");
    let (_, log) = provision(&boot, &config, &state, &["--ssh-home", &home_arg]);
    let mode = std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "chmod through the link: {log}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "{log}");
    assert!(drop.exists(), "the drop stays on the card: {log}");

    // `~/.ssh` is a directory, `authorized_keys` in it a link.
    std::fs::remove_file(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, "root:$6$not-for-the-technician\n").unwrap();
    std::os::unix::fs::symlink(&secret, home.join(".ssh/authorized_keys")).unwrap();
    let (_, log) = provision(&boot, &config, &state, &["--ssh-home", &home_arg]);
    let keys = home.join(".ssh/authorized_keys");
    let copied = std::fs::symlink_metadata(&keys).unwrap().is_file()
        && contains(&std::fs::read(&keys).unwrap(), "not-for-the-technician");
    assert!(
        !copied,
        "the link's target was copied to the account: {log}"
    );
    assert!(log.contains("it is a symbolic link, not a file"), "{log}");
    assert!(drop.exists(), "the drop stays on the card: {log}");
}

/// Issue 21 (g): the configuration drop is read without following a
/// link (a link on the card is refused in words, and the file it points
/// to is neither installed nor scrubbed).
#[test]
fn a_drop_that_is_a_link_is_refused_in_words() {
    let t = tempfile::tempdir().unwrap();
    let (boot, state) = (t.path().join("boot"), t.path().join("state"));
    std::fs::create_dir_all(&boot).unwrap();
    let elsewhere = t.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, drop_text()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, boot.join("zenchef-edge.toml")).unwrap();
    let config = t.path().join("etc/agent.toml");
    let (code, log) = provision(&boot, &config, &state, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(!config.exists(), "installed through a link: {log}");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), drop_text());
    let report = std::fs::read_to_string(boot.join("zenchef-edge.provisioning-error.txt")).unwrap();
    assert!(
        report.contains("it is a symbolic link, not a file"),
        "{report}"
    );
}

/// Issue 21 (g): a drop larger than 64 KiB is refused, read no further
/// than the cap (a 300 MiB drop once became a 300 MiB configuration).
#[test]
fn an_oversized_drop_is_refused_in_words() {
    let t = tempfile::tempdir().unwrap();
    let (boot, state) = (t.path().join("boot"), t.path().join("state"));
    std::fs::create_dir_all(&boot).unwrap();
    let padding = "# padding padding padding padding padding padding padding\n".repeat(5_000);
    let big = format!("{}{padding}", drop_text());
    std::fs::write(boot.join("zenchef-edge.toml"), &big).unwrap();
    let config = t.path().join("etc/agent.toml");
    let (code, log) = provision(&boot, &config, &state, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(!config.exists(), "installed: {log}");
    let report = std::fs::read_to_string(boot.join("zenchef-edge.provisioning-error.txt")).unwrap();
    assert!(report.contains("it is larger than 65536 bytes"), "{report}");
    assert_eq!(
        std::fs::read_to_string(boot.join("zenchef-edge.toml")).unwrap(),
        big,
        "not consumed"
    );
}

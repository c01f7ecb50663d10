//! The packaging files agree with the binary: the example configuration
//! installed as /etc/zenchef-edge/agent.toml, the systemd unit, the
//! sysusers/tmpfiles snippets and the cargo-deb assets (docs/packaging.md).
//! What systemd itself says about the unit (`systemd-analyze verify` and
//! `security`) is checked by .ci/run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use zenchef_edge::config::{self, DEFAULT_CONFIG_PATH, DEFAULT_STORE_PATH, EX_CONFIG};
use zenchef_edge::delivery::RESCAN_EVERY;

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn example() -> String {
    std::fs::read_to_string(repo("packaging/agent.toml")).unwrap()
}

/// The example with what a technician fills in at provisioning.
fn filled(text: &str, restaurant_id: bool) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            section = t.to_string();
        }
        let line = match (section.as_str(), t) {
            ("[cashpad]", l) if l.starts_with("token = \"\"") => {
                "token = \"cashpad-secret\"".to_string()
            }
            ("[zenchef]", l) if l.starts_with("token = \"\"") => {
                "token = \"zenchef-secret\"".to_string()
            }
            ("[zenchef]", l) if restaurant_id && l.starts_with("restaurant_id = \"\"") => {
                "restaurant_id = \"654321\"".to_string()
            }
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_shipped_example_stops_with_exit_78_on_the_empty_token() {
    let out = Command::new(AGENT)
        .args(["status", "--config"])
        .arg(repo("packaging/agent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("config error: cashpad.token: empty (in "),
        "one line naming the key: {err}"
    );
}

#[test]
fn the_example_is_valid_once_the_provisioning_values_are_filled_in() {
    let path = Path::new("/etc/zenchef-edge/agent.toml");
    let cfg = config::parse(&filled(&example(), true), path)
        .unwrap_or_else(|e| panic!("the filled example must validate: {e}"));
    assert_eq!(cfg.store_path, Path::new(DEFAULT_STORE_PATH));
    assert_eq!(cfg.timezone, chrono_tz::Europe::Paris);
    assert_eq!(cfg.currency, "EUR");
    assert_eq!(cfg.cashpad.mdns_port, 5353);
    assert!(cfg.cashpad.interfaces.is_empty());
    assert!(cfg.cashpad.static_addr.is_none(), "discovery by default");
    assert_eq!(cfg.zenchef.base_url, config::DEFAULT_ZENCHEF_BASE_URL);
    assert!(cfg.pay.is_none());
    assert!(cfg.update.enabled);
    // The box follows the channel built into the binary: nothing to fill in.
    assert_eq!(
        cfg.update.manifest_url,
        Some(config::built_in_channel().manifest_url)
    );
    assert_eq!(cfg.update.keys_from, "built-in channel");
    assert_eq!(cfg.config_version, config::CONFIG_VERSION);
    assert_eq!(cfg.retention.keep_days, config::DEFAULT_KEEP_DAYS);
    assert_eq!(cfg.update.window, (180, 300));
    assert_eq!(cfg.http_listen, Some("127.0.0.1:8780".parse().unwrap()));
    assert_eq!(cfg.log_filter, "info");
    // Filling in only the tokens names the one value still missing.
    let err = config::parse(&filled(&example(), false), path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config error: zenchef.restaurant_id: empty (in /etc/zenchef-edge/agent.toml)"
    );
}

/// `Key=value` lines of a unit file, values of repeated keys in order.
fn unit(path: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(repo(path)).unwrap().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{path}: {line}"));
        map.entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    map
}

fn one<'a>(u: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match u.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, got {other:?}"),
    }
}

fn seconds(v: &str) -> u64 {
    if let Some(m) = v.strip_suffix("min") {
        m.parse::<u64>().unwrap() * 60
    } else {
        v.trim_end_matches('s').parse().unwrap()
    }
}

#[test]
fn the_unit_agrees_with_the_binary() {
    let u = unit("systemd/zenchef-edge.service");
    assert_eq!(one(&u, "Type"), "notify");
    assert_eq!(one(&u, "Restart"), "always");
    assert_eq!(one(&u, "RestartPreventExitStatus"), EX_CONFIG.to_string());
    assert_eq!(
        one(&u, "ExecStart"),
        "/usr/bin/zenchef-edge run --config ${CREDENTIALS_DIRECTORY}/agent.toml"
    );
    assert_eq!(
        one(&u, "LoadCredential"),
        format!("agent.toml:{DEFAULT_CONFIG_PATH}")
    );
    // Watchdog: an idle agent pings every RESCAN_EVERY; leave room for a
    // slow store commit on an SD card.
    let watchdog = seconds(one(&u, "WatchdogSec"));
    assert!(
        watchdog >= 6 * RESCAN_EVERY.as_secs(),
        "WatchdogSec={watchdog}s vs pings every {RESCAN_EVERY:?}"
    );
    // The store lives in the StateDirectory.
    let state = Path::new("/var/lib").join(one(&u, "StateDirectory"));
    assert_eq!(
        Path::new(DEFAULT_STORE_PATH).parent(),
        Some(state.as_path())
    );
    assert_eq!(
        Path::new(DEFAULT_CONFIG_PATH).parent(),
        Some(
            Path::new("/etc")
                .join(one(&u, "ConfigurationDirectory"))
                .as_path()
        )
    );
    // The self-update's directory stays executable, the rest does not.
    assert_eq!(one(&u, "NoExecPaths"), "/ /var/lib/zenchef-edge");
    let exec: Vec<&str> = one(&u, "ExecPaths").split_whitespace().collect();
    assert!(exec.contains(&"/var/lib/zenchef-edge/bin"), "{exec:?}");
    // The updater's boot check runs the previous binary, from there too,
    // and never blocks the start ("-").
    let pre = one(&u, "ExecStartPre");
    assert!(
        pre.starts_with("-/var/lib/zenchef-edge/bin/zenchef-edge.previous "),
        "{pre}"
    );
    // mDNS, MQTT, HTTPS, netlink (interfaces), journald/sd_notify.
    let families: Vec<&str> = one(&u, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(families, ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]);
    let after = one(&u, "After");
    assert!(after.contains("network-online.target") && after.contains("time-sync.target"));
    assert_eq!(one(&u, "Wants"), "network-online.target");
    // The user is the one sysusers.d creates.
    let user = one(&u, "User");
    let sysusers = std::fs::read_to_string(repo("systemd/zenchef-edge.sysusers")).unwrap();
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "{sysusers}"
    );
    let tmpfiles = std::fs::read_to_string(repo("systemd/zenchef-edge.tmpfile")).unwrap();
    assert!(
        tmpfiles
            .lines()
            .any(|l| l.starts_with("d /var/lib/zenchef-edge/bin ")
                && l.contains(&format!(" {user} {user} ")))
    );
}

#[test]
fn the_deb_assets_exist_and_the_binary_link_points_into_the_state_directory() {
    let manifest: toml::Table = std::fs::read_to_string(repo("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let mut link = None;
    for a in assets {
        match a {
            toml::Value::Array(v) => {
                let src = v[0].as_str().unwrap();
                if !src.starts_with("target/") {
                    assert!(repo(src).is_file(), "asset {src} is missing");
                }
            }
            toml::Value::Table(t) => {
                if t["dest"].as_str() == Some("usr/bin/zenchef-edge") {
                    link = t.get("link_name").and_then(|l| l.as_str());
                }
            }
            other => panic!("unexpected asset {other:?}"),
        }
    }
    assert_eq!(link, Some("/var/lib/zenchef-edge/bin/zenchef-edge"));
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for s in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(repo(scripts).join(s)).unwrap();
        assert!(
            text.contains("#DEBHELPER#"),
            "{s} needs the #DEBHELPER# token"
        );
    }
    let postinst = std::fs::read_to_string(repo(scripts).join("postinst")).unwrap();
    assert!(postinst.contains("SHIPPED=/usr/lib/zenchef-edge/zenchef-edge"));
    assert!(postinst.contains("BIN_DIR=\"$STATE/bin\""));
}

/// The `[package.metadata.deb]` assets as (source, destination).
fn deb_assets() -> Vec<(String, String)> {
    let manifest: toml::Table = std::fs::read_to_string(repo("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| match a {
            toml::Value::Array(v) => Some((
                v[0].as_str().unwrap().to_string(),
                v[1].as_str().unwrap().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// docs/README-update.md lists the unit's settings the update relies on:
/// each of them is in the shipped unit, exactly.
#[test]
fn the_update_doc_shows_the_unit_as_shipped() {
    let doc = std::fs::read_to_string(repo("docs/README-update.md")).unwrap();
    let section = doc
        .split("### What the systemd unit must provide")
        .nth(1)
        .expect("the section");
    let block = section
        .split("```ini\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an ini block");
    let unit = std::fs::read_to_string(repo("systemd/zenchef-edge.service")).unwrap();
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| l.contains('=') && !l.starts_with('#'))
        .collect();
    assert!(lines.len() >= 6, "{block}");
    for line in lines {
        assert!(
            unit.lines().any(|u| u.trim() == line),
            "docs/README-update.md shows `{line}`, the unit does not have it"
        );
    }
}

/// Every `Documentation=` of the shipped units is in the package: the man
/// page, and documents the package installs; the provisioning unit's
/// document describes provisioning.
#[test]
fn every_documentation_link_of_the_units_is_shipped() {
    let assets = deb_assets();
    for name in [
        "zenchef-edge.service",
        "zenchef-edge-provision.service",
        "zenchef-edge-recover.service",
    ] {
        let u = unit(&format!("systemd/{name}"));
        let docs: Vec<&str> = u["Documentation"]
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        assert!(!docs.is_empty(), "{name}");
        for doc in docs {
            if doc == "man:zenchef-edge(1)" {
                assert!(
                    assets
                        .iter()
                        .any(|(_, dest)| dest == "usr/share/man/man1/zenchef-edge.1.gz"),
                    "{name}: {doc} is not shipped"
                );
                continue;
            }
            let path = doc
                .strip_prefix("file:///")
                .unwrap_or_else(|| panic!("{name}: {doc}"));
            let (src, _) = assets
                .iter()
                .find(|(_, dest)| dest == path)
                .unwrap_or_else(|| panic!("{name}: {doc} is not in the package"));
            let text = std::fs::read_to_string(repo(src)).unwrap();
            if name == "zenchef-edge-provision.service" {
                for needle in [
                    "zenchef-edge-provision.service",
                    "zenchef-edge.toml",
                    "zenchef/authorized_keys",
                ] {
                    assert!(text.contains(needle), "{src} never mentions {needle}");
                }
            }
        }
    }
}

/// The file holding the tokens is not shipped (so it is no conffile and an
/// unattended upgrade never asks about it): postinst copies the shipped
/// example, and only when there is no configuration yet.
#[test]
fn the_configuration_is_made_by_postinst_not_shipped_as_a_conffile() {
    let assets = deb_assets();
    assert!(
        assets.iter().all(|(_, dest)| !dest.starts_with("etc/")),
        "a file under /etc would be a conffile: {assets:?}"
    );
    let example = assets
        .iter()
        .find(|(src, _)| src == "packaging/agent.toml")
        .expect("the example is shipped");
    assert_eq!(example.1, "usr/share/zenchef-edge/agent.toml.example");
    let postinst = std::fs::read_to_string(repo("packaging/deb/postinst")).unwrap();
    assert!(postinst.contains("EXAMPLE=/usr/share/zenchef-edge/agent.toml.example"));
    assert!(postinst.contains("if [ ! -e /etc/zenchef-edge/agent.toml ]; then"));
    assert!(postinst.contains("install -m 0600 -o root -g root \"$EXAMPLE\""));
    assert!(postinst.contains("journalctl --update-catalog"));
    let catalog = assets
        .iter()
        .find(|(_, dest)| dest.starts_with("usr/lib/systemd/catalog/"))
        .expect("the message catalog is shipped");
    assert_eq!(catalog.0, "packaging/zenchef-edge.catalog");
}

/// build.rs renders the man page beside the binary from the clap
/// definitions: it documents every command `--help` lists, and `man`
/// renders it without a warning.
#[test]
fn the_man_page_documents_every_command() {
    let page_path = Path::new(AGENT).with_file_name("zenchef-edge.1");
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH zenchef-edge 1"),
        "{page}"
    );
    let help = Command::new(AGENT).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{help}");
    for c in &commands {
        let heading = format!(".SS \"zenchef\\-edge {}", c.replace('-', "\\-"));
        assert!(page.contains(&heading), "no {heading} in the man page");
    }
    for needle in [
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        "MESSAGE_ID",
        "\\-\\-ssh\\-user",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    if Path::new("/usr/bin/man").exists() {
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(&page_path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "man warns: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("zenchef-edge provision"), "{text}");
    }
}

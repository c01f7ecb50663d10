//! Unit tests of the configuration: parsing, validation, the value checks.

use super::read::{fields_of, key_at, redact_line_value, section_fields};
use super::*;

const MINIMAL: &str = r#"
[cashpad]
token = "cp-secret"
[zenchef]
restaurant_id = "654321"
token = "zc-secret"
"#;

fn p(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/zenchef-edge/agent.toml"))
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let c = p(MINIMAL).unwrap();
    assert_eq!(c.timezone, chrono_tz::Europe::Paris);
    assert_eq!(c.currency, "EUR");
    assert_eq!(c.cashpad.min_version, Version(2, 0, 16));
    assert_eq!(c.cashpad.mdns_port, 5353);
    assert_eq!(c.zenchef.base_url, "https://api.zenchef.com/api/v1");
    assert_eq!(c.zenchef.poll_interval, Duration::from_secs(30));
    assert_eq!(c.zenchef.sync_days, 2);
    assert_eq!(
        (c.zenchef.match_before_min, c.zenchef.match_after_min),
        (90, 60)
    );
    assert!(c.pay.is_none());
    assert_eq!(
        c.store_path,
        PathBuf::from("/var/lib/zenchef-edge/agent.db")
    );
    assert_eq!(c.update.window, (180, 300));
    assert_eq!(c.http_listen, Some("127.0.0.1:8780".parse().unwrap()));
}

/// Each bad fixture and the exact line it must produce.
#[test]
fn bad_values_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[zenchef]\ntoken = \"t\"\n[cashpad]\ntoken=\"x\"\n",
            "config error: zenchef.restaurant_id: missing (in /etc/zenchef-edge/agent.toml)",
        ),
        (
            "[zenchef]\nrestaurant_id = \"1\"\n[cashpad]\ntoken=\"x\"\n",
            "config error: zenchef.token: missing (in /etc/zenchef-edge/agent.toml)",
        ),
        (
            "[zenchef]\nrestaurant_id = \"1\"\ntoken=\"t\"\n[cashpad]\n",
            "config error: cashpad.token: missing (in /etc/zenchef-edge/agent.toml)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(p(text).unwrap_err().to_string(), *want, "for {text}");
    }
}

#[test]
fn the_history_sample_is_a_minute_unless_set_within_an_hour() {
    assert_eq!(p(MINIMAL).unwrap().history_sample, Duration::from_secs(60));
    let c = p(&format!("{MINIMAL}[http]\nhistory_sample_s = 2\n")).unwrap();
    assert_eq!(c.history_sample, Duration::from_secs(2));
    for bad in [0, 3601] {
        let e = p(&format!("{MINIMAL}[http]\nhistory_sample_s = {bad}\n")).unwrap_err();
        assert_eq!(e.key, "http.history_sample_s", "{e}");
    }
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    let e = p(&format!("{MINIMAL}poll_intervall_s = 5\n")).unwrap_err();
    assert_eq!(e.key, "poll_intervall_s");
    assert!(e.to_string().contains("unknown field"), "{e}");
    assert!(e.to_string().contains("line 7"), "{e}");
}

/// Tricky URLs and what the check makes of them: `Ok(normalised)` or
/// `Err(part of the message)`.
// Long by design: one table, a URL a row.
#[test]
fn urls_are_parsed_like_reqwest_parses_them() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        (
            "http://127.0.0.1:9000/api/v1",
            Ok("http://127.0.0.1:9000/api/v1"),
        ),
        (
            "http://127.0.0.1:9000/api/v1/",
            Ok("http://127.0.0.1:9000/api/v1"),
        ),
        ("http://localhost/api", Ok("http://localhost/api")),
        ("http://LOCALHOST:8080/", Ok("http://localhost:8080")),
        ("http://[::1]:80/x", Ok("http://[::1]/x")),
        ("http://127.8.9.10/x", Ok("http://127.8.9.10/x")),
        ("HTTP://127.0.0.1/api", Ok("http://127.0.0.1/api")),
        // WHATWG: 0x7f.1 is 127.0.0.1, for reqwest too.
        ("http://0x7f.1/", Ok("http://127.0.0.1")),
        (
            "https://api.zenchef.com/api/v1/",
            Ok("https://api.zenchef.com/api/v1"),
        ),
        ("https://evil.example/x", Ok("https://evil.example/x")),
        ("https://192.168.1.2:8443", Ok("https://192.168.1.2:8443")),
        ("  https://api.zenchef.com  ", Ok("https://api.zenchef.com")),
        // The query holds "@127.0.0.1": the host is evil.example.
        (
            "http://evil.example?@127.0.0.1/api/v1",
            Err("`http://evil.example/?@127.0.0.1/api/v1`: a base URL cannot have a query"),
        ),
        (
            "http://evil.example#@127.0.0.1/api/v1",
            Err("a base URL cannot have a fragment"),
        ),
        (
            "http://127.0.0.1/api?x=1",
            Err("a base URL cannot have a query (`?`)"),
        ),
        (
            "https://api.zenchef.com/api/v1#frag",
            Err("a base URL cannot have a fragment (`#`)"),
        ),
        (
            "http://127.0.0.1@evil.example/api",
            Err("a user name or password in the URL is not accepted"),
        ),
        (
            "http://u:s3cret@127.0.0.1/api",
            Err("`http://***:***@127.0.0.1/api`: a user name or password"),
        ),
        (
            "https://s3cret@api.zenchef.com/api/v1",
            Err("`https://***@api.zenchef.com/api/v1`: a user name or password"),
        ),
        (
            "http://localhost.evil.example/api",
            Err("http:// is only accepted for a loopback host"),
        ),
        (
            "http://127.0.0.1.evil.example/api",
            Err("http:// is only accepted for a loopback host"),
        ),
        (
            "http://[::2]/api",
            Err("http:// is only accepted for a loopback host"),
        ),
        (
            "http://192.168.1.2/api",
            Err(
                "`http://192.168.1.2/api`: http:// is only accepted for a loopback host; use https://",
            ),
        ),
        (
            "http://api.zenchef.com/api/v1",
            Err("http:// is only accepted for a loopback host"),
        ),
        (
            "http://127.0.0.1:0x50/api",
            Err("`http://127.0.0.1:0x50/api` is not a valid URL: invalid port number"),
        ),
        ("http://", Err("`http://` has no host")),
        ("https://:443/api", Err("`https://:443/api` has no host")),
        (
            "ftp://127.0.0.1/x",
            Err("`ftp://127.0.0.1/x`: scheme `ftp` is not http or https"),
        ),
        (
            "file:///etc/passwd",
            Err("scheme `file` is not http or https"),
        ),
        (
            "api.zenchef.com",
            Err("`api.zenchef.com` is not an http(s) URL"),
        ),
        ("", Err("is not an http(s) URL")),
    ];
    for (url, want) in cases {
        let got = check_base_url(url.to_string());
        match (want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(g, w, "{url}"),
            (Err(w), Err(g)) => assert!(
                g.to_string().contains(w),
                "{url}: {g:?} should contain {w:?}"
            ),
            _ => panic!("{url}: got {got:?}, want {want:?}"),
        }
        assert!(!format!("{got:?}").contains("s3cret"), "{url}: {got:?}");
    }
    // A URL fetched as is (manifest, archive) may have a query.
    assert_eq!(
        check_url("https://cdn.example/r/a.tar.gz?sig=abc".into()).unwrap(),
        "https://cdn.example/r/a.tar.gz?sig=abc"
    );
    assert!(check_url("http://evil.example?@127.0.0.1/m.json".into()).is_err());
    // Through the file: the key, the problem and the file.
    let text = MINIMAL.replace(
        "token = \"zc-secret\"",
        "token = \"zc-secret\"\nbase_url = \"http://evil.example?@127.0.0.1/api/v1\"",
    );
    let e = p(&text).unwrap_err();
    assert_eq!(e.key, "zenchef.base_url");
    assert_eq!(
        e.to_string(),
        "config error: zenchef.base_url: `http://evil.example/?@127.0.0.1/api/v1`: a base URL \
         cannot have a query (`?`): API paths are appended to it (in /etc/zenchef-edge/agent.toml)"
    );
    let e = p(&format!(
        "{MINIMAL}[zenchef_pay]\nbase_url = \"http://localhost.evil.example/pos/v1\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "zenchef_pay.base_url");
    let e = p(&format!(
        "{MINIMAL}[update]\nmanifest_url = \"ftp://x/m.json\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "update.manifest_url");
}

#[test]
fn installation_ids_outside_the_character_set_are_refused() {
    for ok in ["CP-4F2A91", "a", "x.y_z-1", &"A".repeat(64)] {
        assert_eq!(check_iid(ok), Ok(()), "{ok}");
    }
    for (bad, shown) in [
        ("CP/1", "\"CP/1\""),
        ("CP 1", "\"CP 1\""),
        ("CP#1", "\"CP#1\""),
        ("CP+", "\"CP+\""),
        ("../x", "\"../x\""),
        ("CP\n1", "\"CP\\n1\""),
        ("café", "\"caf\\u{e9}\""),
        ("a\"b", "\"a\\\"b\""),
        ("..", "\"..\""),
        ("", "\"\""),
    ] {
        let e = check_iid(bad).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{shown} is not an Installation ID: it must match [A-Za-z0-9._-]{{1,64}} (and \
                 not be `.` or `..`)"
            ),
            "{bad:?}"
        );
    }
    let long = "A".repeat(65);
    assert!(check_iid(&long).is_err());
    let e = check_iid(&"B".repeat(200)).unwrap_err().to_string();
    assert!(e.starts_with(&format!("\"{}\"…", "B".repeat(80))), "{e}");
    let e = p(&MINIMAL.replace(
        "token = \"cp-secret\"",
        "token = \"cp-secret\"\ninstallation_id = \"CP/../4F2A91\"",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "config error: cashpad.installation_id: \"CP/../4F2A91\" is not an Installation ID: it \
         must match [A-Za-z0-9._-]{1,64} (and not be `.` or `..`) (in /etc/zenchef-edge/agent.toml)"
    );
    let c = p(&MINIMAL.replace(
        "token = \"cp-secret\"",
        "token = \"cp-secret\"\ninstallation_id = \"CP-4F2A91\"",
    ))
    .unwrap();
    assert_eq!(c.cashpad.installation_id.as_deref(), Some("CP-4F2A91"));
}

#[test]
fn secrets_never_print() {
    let c = p(MINIMAL).unwrap();
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("cp-secret") && !dbg.contains("zc-secret"),
        "{dbg}"
    );
    assert_eq!(c.zenchef.token.to_string(), "***");
    assert_eq!(c.zenchef.token.expose(), "zc-secret");
}

#[test]
fn pay_token_required_when_enabled() {
    let e = p(&format!("{MINIMAL}[zenchef_pay]\nenabled = true\n")).unwrap_err();
    assert_eq!(e.key, "zenchef_pay.token");
}

#[test]
fn update_extensions_are_validated() {
    let c = p(MINIMAL).unwrap();
    assert_eq!(c.update.check_interval, Duration::from_secs(6 * 3600));
    assert_eq!(c.update.confirm_after, Duration::from_secs(30));
    let e = p(&format!("{MINIMAL}[update]\ncheck_interval_s = 0\n")).unwrap_err();
    assert_eq!(e.key, "update.check_interval_s");
    let e = p(&format!("{MINIMAL}[update]\nconfirm_after_s = 120\n")).unwrap_err();
    assert_eq!(e.key, "update.confirm_after_s");
    assert!(e.problem.contains("rollback deadline"), "{e}");
}

#[test]
fn the_built_in_channel_is_usable() {
    let ch = built_in_channel();
    assert!(
        ch.manifest_url.starts_with("https://"),
        "{}",
        ch.manifest_url
    );
    assert_eq!(check_url(ch.manifest_url.clone()).unwrap(), ch.manifest_url);
    assert!(!ch.public_keys.is_empty());
    crate::update::verify::PublicKey::from_list(&ch.public_keys, "built-in channel").unwrap();
    // A box provisioned with its restaurant's settings only follows it.
    let c = p(MINIMAL).unwrap();
    assert!(c.update.enabled);
    assert_eq!(
        c.update.manifest_url.as_deref(),
        Some(ch.manifest_url.as_str())
    );
    assert_eq!(c.update.public_keys, ch.public_keys);
    assert_eq!(c.update.keys_from, "built-in channel");
    // Usable once its real key replaced the placeholder.
    assert_eq!(c.update.placeholder_key, ch.placeholder);
    assert_eq!(
        crate::update::signing_key_problem(&c.update).is_some(),
        ch.placeholder
    );
}

/// The key id of the placeholder this repository was published with
/// (`packaging/channel.toml`; its private half was not kept).
const PLACEHOLDER_KEY_ID: &str = "101f509b8f60c87d";

#[test]
fn the_placeholder_key_is_marked_and_a_box_trusting_only_it_cannot_update() {
    let ch = built_in_channel();
    let ids = crate::update::verify::PublicKey::from_list(&ch.public_keys, "built-in channel")
        .unwrap()
        .key_id();
    // Deleting `placeholder = true` without replacing the key is refused.
    assert!(
        ch.placeholder || !ids.contains(PLACEHOLDER_KEY_ID),
        "packaging/channel.toml holds the placeholder key {PLACEHOLDER_KEY_ID} without \
         `placeholder = true`"
    );
    if !ch.placeholder {
        return;
    }
    let c = p(MINIMAL).unwrap();
    assert!(c.update.placeholder_key);
    let why = crate::update::signing_key_problem(&c.update).unwrap();
    assert!(
        why.starts_with("this box cannot update: placeholder signing key (key id "),
        "{why}"
    );
    // The placeholder copied into the file is still the placeholder.
    let copied = p(&format!(
        "{MINIMAL}[update]\npublic_key = \"{}\"\n",
        ch.public_keys[0]
    ))
    .unwrap();
    assert!(copied.update.placeholder_key);
    // Another key, or the placeholder beside a real one (a rotation): fine.
    let real = "F+ooljIrKlmjQEgbOtXEO0cuPTtz7VRol1S2CCWdajQ=";
    for keys in [
        format!("public_key = \"{real}\""),
        format!("public_keys = [\"{}\", \"{real}\"]", ch.public_keys[0]),
    ] {
        let c = p(&format!("config_version = 2\n{MINIMAL}[update]\n{keys}\n")).unwrap();
        assert!(!c.update.placeholder_key, "{keys}");
        assert_eq!(
            crate::update::signing_key_problem(&c.update),
            None,
            "{keys}"
        );
    }
    // Updates off: nothing to say.
    let off = p(&format!("{MINIMAL}[update]\nenabled = false\n")).unwrap();
    assert_eq!(crate::update::signing_key_problem(&off.update), None);
}

#[test]
fn a_private_channel_and_several_keys_override_the_built_in_one() {
    let k1 = "s6JAKxkHvDqoI4PLHwu0Za2R1kTwhifMmYyCOcYREo0=";
    let k2 = "F+ooljIrKlmjQEgbOtXEO0cuPTtz7VRol1S2CCWdajQ=";
    let c = p(&format!(
        "config_version = 2\n{MINIMAL}[update]\nmanifest_url = \"https://r.example/m.json\"\n\
         public_keys = [\"{k1}\", \"{k2}\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.update.manifest_url.as_deref(),
        Some("https://r.example/m.json")
    );
    assert_eq!(c.update.public_keys, vec![k1.to_string(), k2.to_string()]);
    assert_eq!(c.update.keys_from, "update.public_keys");
    assert_eq!(
        crate::update::verify::PublicKey::from_config(&c.update)
            .unwrap()
            .len(),
        2
    );
    // One mistyped key of the list is said, with its place.
    let c = p(&format!(
        "config_version = 2\n{MINIMAL}[update]\npublic_keys = [\"{k1}\", \"nope!\"]\n"
    ))
    .unwrap();
    let e = crate::update::verify::PublicKey::from_config(&c.update).unwrap_err();
    assert_eq!(
        e.to_string(),
        "update.public_key: key 2 of update.public_keys: not base64; refusing to install \
         anything unverified"
    );
    // Empty values are explicit: no checks, or every release refused.
    let c = p(&format!(
        "{MINIMAL}[update]\nmanifest_url = \"\"\npublic_key = \"\"\n"
    ))
    .unwrap();
    assert_eq!(c.update.manifest_url, None);
    assert!(c.update.public_keys.is_empty());
    let c = p(&format!("{MINIMAL}[update]\npublic_key = \"\"\n")).unwrap();
    assert_eq!(
        crate::update::signing_key_problem(&c.update).as_deref(),
        Some("updates refused: no signing key (update.public_key: missing or empty)")
    );
}

#[test]
fn keys_of_a_later_format_version_need_that_version() {
    let e = p(&format!("{MINIMAL}[store]\nkeep_days = 30\n")).unwrap_err();
    assert_eq!(e.key, "store.keep_days");
    assert!(
        e.problem
            .starts_with("introduced in config_version 2: add `config_version = 2`"),
        "{e}"
    );
    let c = p(&format!(
        "config_version = 2\n{MINIMAL}[store]\nkeep_days = 30\n"
    ))
    .unwrap();
    assert_eq!(c.retention.keep_days, 30);
    assert_eq!(c.config_version, 2);
    assert!(c.warnings.is_empty());
    // Defaults.
    let c = p(MINIMAL).unwrap();
    assert_eq!(
        c.retention,
        RetentionConfig {
            keep_days: 90,
            interval: Duration::from_secs(600),
            quiet: Duration::from_secs(1800),
        }
    );
    assert_eq!(c.update.open_order_max, Duration::from_secs(16 * 3600));
    let e = p(&format!(
        "config_version = 2\n{MINIMAL}[store]\nkeep_days = 3\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "store.keep_days");
    let e = p(&format!("config_version = \"2\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "config_version");
}

/// A TOML type or duplicate-key error names the key of its line, under
/// its table; an unreadable place falls back to `(syntax)`.
#[test]
fn type_and_duplicate_errors_name_their_key() {
    let e = p(&format!("{MINIMAL}[store]\npath = [1, 2]\n")).unwrap_err();
    assert_eq!(e.key, "store.path", "{e}");
    assert!(e.to_string().contains("at line 8"), "{e}");
    let e = p(&format!(
        "{MINIMAL}poll_interval_s = 5\npoll_interval_s = 6\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "zenchef.poll_interval_s", "{e}");
    let e = p("[cashpad\ntoken = 1\n").unwrap_err();
    assert!(e.key == "(syntax)" || e.key == "cashpad", "{e}");
    assert_eq!(key_at("a = 1\n[x.y]\n b = 2\n", 16), Some("x.y.b".into()));
    assert_eq!(key_at("[t]\n", 1), Some("t".into()));
    assert_eq!(
        key_at("[a]\n[store]  # retention\nquiet_min = \"x\"\n", 30),
        Some("store.quiet_min".into())
    );
    assert_eq!(key_at("not a key line\n", 3), None);
}

/// Every duration key has an upper bound: a huge value is used as the
/// bound, with a warning naming the key, never an overflow (a panic in
/// a debug build, a wrapped few seconds in a release build) and never a
/// refusal of a file that an earlier release accepted.
#[test]
fn huge_durations_are_bounded_with_a_warning() {
    let huge = i64::MAX;
    for (section, key, full, hi) in [
        ("store", "quiet_min", "store.quiet_min", 1440u64),
        (
            "store",
            "retention_interval_s",
            "store.retention_interval_s",
            86_400,
        ),
        (
            "update",
            "check_interval_s",
            "update.check_interval_s",
            604_800,
        ),
        ("delivery", "retry_max_s", "delivery.retry_max_s", 3600),
        (
            "delivery",
            "credentials_retry_s",
            "delivery.credentials_retry_s",
            86_400,
        ),
        ("delivery", "http_timeout_s", "delivery.http_timeout_s", 600),
    ] {
        let text = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = {huge}\n");
        let c = p(&text).unwrap();
        assert_eq!(
            c.warnings,
            vec![format!("{full}: {huge} is above {hi}; {hi} is used")]
        );
        let ok = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = {hi}\n");
        assert!(p(&ok).unwrap().warnings.is_empty(), "{key} = {hi}");
        let zero = format!("config_version = 2\n{MINIMAL}[{section}]\n{key} = 0\n");
        assert_eq!(p(&zero).unwrap_err().key, full);
    }
    let c = p(&format!(
        "config_version = 2\n{MINIMAL}[store]\nquiet_min = {huge}\n"
    ))
    .unwrap();
    assert_eq!(c.retention.quiet, Duration::from_secs(1440 * 60));
    let c = p(&format!("{MINIMAL}poll_interval_s = {huge}\n")).unwrap();
    assert_eq!(c.zenchef.poll_interval, Duration::from_secs(3600));
}

/// The previous release after a rollback reads the next release's
/// file: the keys it does not know are ignored with a warning each;
/// at its own version, a misspelt key is still refused.
#[test]
fn a_newer_file_is_read_and_a_misspelt_key_is_not() {
    let next = CONFIG_VERSION + 1;
    let text = format!(
        "config_version = {next}\n{MINIMAL}poll_interval_s = 5\nlater_option = true\n\
         [store]\nkeep_days = 40\nlater_store_key = \"x\"\n[later_section]\na = 1\n"
    );
    let c = p(&text).unwrap();
    assert_eq!(c.zenchef.poll_interval, Duration::from_secs(5));
    assert_eq!(c.retention.keep_days, 40, "known keys are read");
    assert_eq!(c.config_version, next);
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    for (w, key) in c.warnings.iter().zip([
        "later_section",
        "store.later_store_key",
        "zenchef.later_option",
    ]) {
        assert!(
            w.starts_with(&format!("{key}: not known to this release, ignored")),
            "{w}"
        );
        assert!(w.contains(&format!("config_version {next}")), "{w}");
    }
    // Known keys keep their checks.
    let e = p(&text.replace("keep_days = 40", "keep_days = 1")).unwrap_err();
    assert_eq!(e.key, "store.keep_days");
    // The same file at this release's version: the typo is refused.
    let e = p(&text
        .replace(
            &format!("config_version = {next}"),
            &format!("config_version = {CONFIG_VERSION}"),
        )
        .replace("[later_section]\na = 1\n", ""))
    .unwrap_err();
    assert!(
        ["later_option", "later_store_key"].contains(&e.key.as_str()),
        "{e}"
    );
    assert!(e.problem.contains("unknown field"), "{e}");
    assert!(e.problem.contains(" at line "), "{e}");
}

#[test]
fn the_known_keys_are_the_structs_fields() {
    assert_eq!(
        fields_of::<RawUpdate>(),
        [
            "enabled",
            "manifest_url",
            "public_key",
            "public_keys",
            "window",
            "rollout_percent",
            "check_interval_s",
            "confirm_after_s",
            "open_order_max_h"
        ]
    );
    assert!(fields_of::<RawConfig>().contains(&"config_version"));
    for (key, _) in INTRODUCED {
        match key.split_once('.') {
            Some((section, k)) => assert!(
                section_fields(section).unwrap().contains(&k),
                "{key} is not a field"
            ),
            // A whole section.
            None => assert!(section_fields(key).is_some(), "{key} is not a section"),
        }
    }
}

#[test]
fn versions_and_windows() {
    assert!("2.0.15".parse::<Version>().unwrap() < Version(2, 0, 16));
    assert!("2.1.0".parse::<Version>().unwrap() > Version(2, 0, 16));
    assert!("2.0".parse::<Version>().is_err());
    assert_eq!(parse_window("23:00-01:00").unwrap(), (1380, 60));
    assert!(parse_window("25:00-01:00").is_err());
}

#[test]
fn a_parser_message_never_quotes_a_secret_value() {
    let text = "[zenchef]\ntoken = \"zc-secret-1\"\nrestaurant_id = \"1\"\n";
    let at = text.find("\"zc").unwrap();
    assert_eq!(
        redact_line_value(text, at, "bad value `zc-secret-1` or \"zc-secret-1\""),
        "bad value `***` or ***"
    );
    let text = "token = 12345678\n";
    assert_eq!(
        redact_line_value(text, 9, "invalid type: integer `12345678`"),
        "invalid type: integer `***`"
    );
    // Every kind of non-string token is refused without its value.
    for value in [
        "12345678",
        "1234.5678",
        "true",
        "[\"ab-12345678\"]",
        "{ a = \"ab-12345678\" }",
        "1979-05-27",
    ] {
        let file = format!(
            "[cashpad]\ntoken = \"cp-fixture-token\"\n[zenchef]\nrestaurant_id = \"1\"\ntoken = {value}\n"
        );
        let e = p(&file).unwrap_err().to_string();
        assert!(
            e.starts_with("config error: zenchef.token: must be a string"),
            "{e}"
        );
        assert!(!e.contains("12345678") && !e.contains("1979"), "{e}");
    }
}

//! The command line as a technician meets it: exit codes and messages of
//! the real binary (docs/protocol/agent-interface.md § Command line, § Configuration).

use std::path::Path;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_zenchef-edge");

const GOOD: &str = r#"
[cashpad]
token = "cp-secret-123"
[zenchef]
restaurant_id = "654321"
token = "zc-secret-456"
"#;

fn run_with(config: &str, args: &[&str]) -> (i32, String, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(AGENT)
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

/// Each bad file and the one line it must produce, exit code 78.
#[test]
fn configuration_errors_exit_78_naming_the_key() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{GOOD}\n[store]\npaht = \"/tmp/x.db\"\n"),
            "config error: paht: unknown field `paht`",
        ),
        (
            GOOD.replace("token = \"zc-secret-456\"", ""),
            "config error: zenchef.token: missing",
        ),
        (
            GOOD.replace("token = \"cp-secret-123\"", "token = \"\""),
            "config error: cashpad.token: empty",
        ),
        (
            GOOD.replace(
                "token = \"zc-secret-456\"",
                "token = \"zc-secret-456\"\nbase_url = \"http://api.zenchef.com/api/v1\"",
            ),
            "config error: zenchef.base_url: `http://api.zenchef.com/api/v1`: http:// is only accepted for a loopback host",
        ),
        (
            format!("{GOOD}\n[restaurant]\ntimezone = \"Paris\"\n"),
            "config error: restaurant.timezone: `Paris` is not an IANA time zone name",
        ),
        // The query holds "@127.0.0.1": the host is evil.example.
        (
            GOOD.replace(
                "token = \"zc-secret-456\"",
                "token = \"zc-secret-456\"\nbase_url = \"http://evil.example?@127.0.0.1/api/v1\"",
            ),
            "config error: zenchef.base_url: `http://evil.example/?@127.0.0.1/api/v1`: a base URL cannot have a query (`?`)",
        ),
        (
            GOOD.replace(
                "token = \"zc-secret-456\"",
                "token = \"zc-secret-456\"\nbase_url = \"http://localhost.evil.example/api/v1\"",
            ),
            "config error: zenchef.base_url: `http://localhost.evil.example/api/v1`: http:// is only accepted for a loopback host",
        ),
        (
            format!(
                "{GOOD}\n[zenchef_pay]\nenabled = true\ntoken = \"p\"\nbase_url = \"http://u:pay-secret-9@127.0.0.1/pos/v1\"\n"
            ),
            "config error: zenchef_pay.base_url: `http://***:***@127.0.0.1/pos/v1`: a user name or password in the URL is not accepted",
        ),
        (
            GOOD.replace(
                "token = \"cp-secret-123\"",
                "token = \"cp-secret-123\"\ninstallation_id = \"CP/4F2A91#x\"",
            ),
            "config error: cashpad.installation_id: \"CP/4F2A91#x\" is not an Installation ID: it must match [A-Za-z0-9._-]{1,64}",
        ),
    ];
    for (text, want) in cases {
        for args in [&["run"][..], &["status"][..]] {
            let (code, _, err, path) = run_with(&text, args);
            assert_eq!(code, 78, "{args:?} with {text}: {err}");
            assert!(
                err.starts_with(want),
                "{args:?}: got {err:?}, want {want:?}"
            );
            assert!(
                err.trim_end()
                    .ends_with(&format!("(in {})", path.display())),
                "{err}"
            );
            assert!(!err.contains("secret-"), "a secret leaked: {err}");
        }
    }
}

#[test]
fn the_config_flag_works_before_or_after_the_subcommand_and_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[zenchef]\n").unwrap();
    for cmd in [
        Command::new(AGENT)
            .arg("--config")
            .arg(&path)
            .arg("status")
            .output()
            .unwrap(),
        Command::new(AGENT)
            .arg("status")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap(),
        Command::new(AGENT)
            .arg("status")
            .env("ZENCHEF_EDGE_CONFIG", &path)
            .output()
            .unwrap(),
    ] {
        assert_eq!(cmd.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&cmd.stderr).contains(&path.display().to_string()));
    }
}

/// Usage errors are EX_USAGE (64; clap's own code, 2, before); help and
/// version succeed.
#[test]
fn usage_errors_exit_64_and_version_names_commit_and_target() {
    for args in [
        &["no-such-command"][..],
        &["status", "--no-such-flag"],
        &["link", "O-1"],
        &["link", "O-1", "not-a-number"],
        &[],
    ] {
        let out = Command::new(AGENT).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage:") || err.contains("error:"),
            "{args:?}: {err}"
        );
    }
    let out = Command::new(AGENT).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("doctor"));
    let out = Command::new(AGENT).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with(&format!("zenchef-edge {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("commit ") && v.contains("-linux-"), "{v}");
}

fn run_as(uid: Option<u32>, config: &Path, args: &[&str]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(AGENT);
    cmd.args(args).arg("--config").arg(config);
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `status --json` prints the documented object whatever the state of the
/// store, with the state as a field, and the exit code says it: a store
/// that is not there (66), one that is not a database (74), one this user
/// may not read (77), a real one (0); an invalid configuration (78).
#[test]
fn status_json_in_every_state_of_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Readable by `nobody` too (the permission case runs as that user).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("agent.db");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        // Updates off: the problems below are the store's alone, whatever
        // the built-in channel's key (a placeholder until replaced).
        format!(
            "{GOOD}\n[store]\npath = \"{}\"\n[update]\nenabled = false\n",
            store.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Missing: the daemon never started.
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 66, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "missing");
    assert_eq!(s["config_state"], "ok");
    assert!(
        s["store_error"]
            .as_str()
            .unwrap()
            .contains("does not exist: the agent creates it at its first start"),
        "{s}"
    );
    assert_eq!(s["store"], store.display().to_string());
    assert_eq!(s["problems"], serde_json::json!(["store_missing"]));
    assert_eq!(s["daemon_running"], false);
    assert_eq!(s["counts"]["queued"], 0);
    assert_eq!(s["pos"]["state"], "unknown");
    assert!(!store.exists(), "status must not create the store");
    let (code, text, _) = run_as(None, &config, &["status"]);
    assert_eq!(code, 66);
    assert!(
        text.contains("no store yet: the agent has never started"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("Store       MISSING")),
        "{text}"
    );

    // A garbage file.
    std::fs::write(
        &store,
        b"this is not a database, it is a shopping list\n".repeat(100),
    )
    .unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 74, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "unreadable");
    assert!(
        s["store_error"]
            .as_str()
            .unwrap()
            .contains("not a database"),
        "{s}"
    );
    assert_eq!(s["problems"][0], "store_unreadable");

    // A real store this user may not read (root 0600, read by nobody).
    std::fs::remove_file(&store).unwrap();
    let (code, _, err) = run_as(
        None,
        &config,
        &["self-test", "--store", store.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run_as(Some(65534), &config, &["status", "--json"]);
    assert_eq!(code, 77, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "unreadable");
    assert!(
        s["store_error"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{s}"
    );

    // Readable: 0, "ok", no store problem.
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "ok");
    assert_eq!(s["store_error"], serde_json::Value::Null);
    assert_eq!(s["problems"], serde_json::json!(["agent_not_running"]));
    assert_eq!(s["store_moved_aside"], serde_json::Value::Null);

    // Moved aside at a start (the kept file exists): said as a problem, the
    // path in full, with the daemon stopped too.
    let kept = dir.path().join("agent.db.corrupt-1764000000");
    std::fs::write(&kept, b"the old, unreadable store").unwrap();
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES ('store_moved_aside', ?1)",
            [kept.display().to_string()],
        )
        .unwrap();
    }
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s = json(&out);
    assert_eq!(s["store_moved_aside"], kept.display().to_string());
    assert!(
        s["problems"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("store_replaced")),
        "{s}"
    );
    let (_, text, _) = run_as(None, &config, &["status"]);
    assert!(
        text.contains("the unreadable one is kept at:")
            && text.lines().any(|l| l.trim() == kept.display().to_string()),
        "{text}"
    );
    assert!(
        text.contains("!         store replaced at a start: the old file is kept (see STORE)\n"),
        "{text}"
    );
    std::fs::remove_file(&kept).unwrap();
    let (_, out, _) = run_as(None, &config, &["status", "--json"]);
    let s = json(&out);
    assert_eq!(s["store_moved_aside"], serde_json::Value::Null, "{s}");
    assert_eq!(s["problems"], serde_json::json!(["agent_not_running"]));

    // Migrated by a newer release beyond this binary (floor above its
    // schema): the agent refuses it (78), and so says status.
    {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.execute_batch(
            "UPDATE schema_compat SET applied = 99, min_version = 98; PRAGMA user_version = 98;",
        )
        .unwrap();
    }
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 78, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "incompatible");
    assert_eq!(s["problems"][0], "store_incompatible", "{s}");
    let e = s["store_error"].as_str().unwrap();
    assert!(
        e.contains("has schema 99 (usable from schema 98), newer than this binary knows"),
        "{e}"
    );
    let (code, text, _) = run_as(None, &config, &["status"]);
    assert_eq!(code, 78);
    assert!(text.contains("Store       TOO NEW"), "{text}");
    assert!(
        text.contains(
            "!         store too new for this binary: the agent cannot start (see Store)\n"
        ),
        "{text}"
    );

    // An empty file (as `touch` leaves it): no table yet, as if missing.
    std::fs::write(&store, b"").unwrap();
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 66, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "missing");
    assert!(
        s["store_error"]
            .as_str()
            .unwrap()
            .contains("is empty (no table yet)"),
        "{s}"
    );

    // Another program's database (tables, schema 0): not the agent's.
    std::fs::remove_file(&store).unwrap();
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute_batch("CREATE TABLE recipes (name TEXT);")
        .unwrap();
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 74, "{err}");
    let s = json(&out);
    assert_eq!(s["store_state"], "unreadable", "{s}");

    // An invalid configuration: still one JSON object, and 78.
    std::fs::write(&config, "[zenchef]\n").unwrap();
    let (code, out, err) = run_as(None, &config, &["status", "--json"]);
    assert_eq!(code, 78, "{err}");
    let s = json(&out);
    assert_eq!(s["config_state"], "invalid");
    assert!(
        s["config_error"]
            .as_str()
            .unwrap()
            .starts_with("config error: cashpad.token: missing"),
        "{s}"
    );
    assert_eq!(s["store_state"], "unknown");
    assert!(
        err.starts_with("config error: cashpad.token: missing"),
        "{err}"
    );
}

/// `doctor --json`: one object with every check (name, outcome, ok,
/// detail, hint), the totals, and the text mode's exit code.
#[test]
fn doctor_json_lists_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{GOOD}base_url = \"http://127.0.0.1:{closed}/api/v1\"\n[store]\npath = \"{}\"\n",
        dir.path().join("agent.db").display()
    )
    .replace(
        "token = \"cp-secret-123\"",
        &format!("token = \"cp-secret-123\"\nhost = \"127.0.0.1\"\nport = {closed}"),
    );
    let (code, out, err, _) = run_with(&config, &["doctor", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let d = json(&out);
    let checks = d["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "config",
            "config mode",
            "store",
            "agent",
            "state files",
            "updates",
            "zenchef dns",
            "zenchef https",
            "zenchef auth",
            "pos found",
            "pos version",
            "mqtt login",
            "pos anonymous",
            "pay",
            "tables"
        ]
    );
    let by = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by("config")["outcome"], "ok");
    assert_eq!(by("config")["ok"], true);
    assert_eq!(by("config")["hint"], serde_json::Value::Null);
    let store = by("store");
    assert_eq!(
        (store["outcome"].as_str(), store["ok"].as_bool()),
        (Some("fail"), Some(false))
    );
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .ends_with("agent.db does not exist"),
        "{store}"
    );
    assert!(
        store["hint"].as_str().unwrap().contains("first start"),
        "{store}"
    );
    assert_eq!(by("agent")["outcome"], "skip");
    assert_eq!(by("agent")["ok"], true);
    // No [update] section: the release channel built into the binary (its
    // placeholder key: a_box_built_with_the_placeholder_key_says_it_cannot_update).
    assert!(
        by("updates")["detail"]
            .as_str()
            .unwrap()
            .contains("built-in channel"),
        "{}",
        by("updates")
    );
    assert_eq!(by("mqtt login")["outcome"], "fail");
    assert_eq!(
        d["failed"].as_u64().unwrap() as usize,
        checks.iter().filter(|c| c["outcome"] == "fail").count()
    );
    assert_eq!(
        d["passed"].as_u64().unwrap()
            + d["failed"].as_u64().unwrap()
            + d["skipped"].as_u64().unwrap(),
        checks.len() as u64
    );
    assert!(!out.contains("secret-"), "{out}");
    // An invalid file: the config check alone, and 78.
    let (code, out, _, _) = run_with("[zenchef]\n", &["doctor", "--json"]);
    assert_eq!(code, 78);
    let d = json(&out);
    assert_eq!(d["checks"][0]["name"], "config");
    assert_eq!(d["checks"][0]["ok"], false);
    assert!(
        d["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("config error: cashpad.token: missing"),
        "{d}"
    );
    assert_eq!(d["failed"], 1);
}

/// A box built from this repository while `packaging/channel.toml` holds
/// the placeholder key (`placeholder = true`) can never update: `doctor`
/// fails its `updates` check and `status` (text and JSON) says so, with the
/// key id; the page's words are pinned by the golden files
/// (tests/golden/status/missing.fr.html).
#[test]
fn a_box_built_with_the_placeholder_key_says_it_cannot_update() {
    if !zenchef_edge::config::built_in_channel().placeholder {
        eprintln!("SKIPPED: packaging/channel.toml holds a real key");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{GOOD}base_url = \"http://127.0.0.1:{closed}/api/v1\"\n[store]\npath = \"{}\"\n",
        dir.path().join("agent.db").display()
    )
    .replace(
        "token = \"cp-secret-123\"",
        &format!("token = \"cp-secret-123\"\nhost = \"127.0.0.1\"\nport = {closed}"),
    );
    let (_, out, err, _) = run_with(&config, &["doctor", "--json"]);
    let d: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let updates = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "updates")
        .unwrap()
        .clone();
    assert_eq!(updates["outcome"], "fail", "{updates}");
    assert!(
        updates["detail"].as_str().unwrap().starts_with(
            "this box cannot update: placeholder signing key (key id 101f509b8f60c87d, \
             built-in channel)"
        ),
        "{updates}"
    );
    assert!(
        updates["hint"].as_str().unwrap().contains("real key"),
        "{updates}"
    );
    let (_, status, _, _) = run_with(&config, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["problems"]
            .as_array()
            .unwrap()
            .contains(&serde_json::Value::from("updates_placeholder_key")),
        "{status}"
    );
    assert!(
        status["update_problem"]
            .as_str()
            .unwrap()
            .starts_with("this box cannot update: placeholder signing key"),
        "{status}"
    );
    let (_, text, _, _) = run_with(&config, &["status"]);
    assert!(
        text.contains("this box cannot update: placeholder signing key"),
        "{text}"
    );
}

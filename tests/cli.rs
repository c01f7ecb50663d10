//! The command line as a technician meets it: exit codes and messages of
//! the real binary (agent-interface.md § Command line, § Configuration).

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

#[test]
fn usage_errors_exit_2_and_version_names_commit_and_target() {
    let out = Command::new(AGENT).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(AGENT).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with(&format!("zenchef-edge {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("commit ") && v.contains("-linux-"), "{v}");
}

#[test]
fn status_without_a_store_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{GOOD}\n[store]\npath = \"{}\"\n",
        dir.path().join("none.db").display()
    );
    let (code, _, err, _) = run_with(&config, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("none.db"), "{err}");
    assert!(
        !Path::new(&dir.path().join("none.db")).exists(),
        "status must not create the store"
    );
}

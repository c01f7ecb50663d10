//! The configuration fixtures of `tests/config/` (the way rathole tests its
//! configuration): every file is read by `config::load`, the function the
//! agent itself reads `/etc/zenchef-edge/agent.toml` with (src/main.rs).
//!
//! - `tests/config/valid/*.toml` must load; each `# warning: …` line of
//!   such a file is one warning the load must give, in that order (a file
//!   without one must give none);
//! - `tests/config/invalid/*.toml` must be refused, with exactly the
//!   message of its `# error: …` line (`config error: <key>: <problem> (in
//!   <file>)`, the file named by its path from the repository root).
//!
//! The format is described in tests/config/README.md.

use std::path::{Path, PathBuf};

use zenchef_edge::config;

/// The fixtures of one folder, by name, as paths from the repository root
/// (the working directory of an integration test is the package root;
/// the messages name the file by that path).
fn fixtures(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let dir = Path::new("tests/config").join(kind);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    assert!(
        out.len() >= 3,
        "{}: too few fixtures: {out:?}",
        dir.display()
    );
    out
}

/// The text after `# <tag>: ` on each line of the file that starts so.
fn expected(path: &Path, tag: &str) -> Vec<String> {
    let prefix = format!("# {tag}: ");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// Every mismatch at once, so that one run shows all of them.
fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn valid_fixtures_load_with_exactly_their_warnings() {
    let mut failures = Vec::new();
    for path in fixtures("valid") {
        let want = expected(&path, "warning");
        if !expected(&path, "error").is_empty() {
            failures.push(format!(
                "{}: a valid fixture has an error line",
                path.display()
            ));
        }
        match config::load(&path) {
            Ok(c) if c.warnings == want => {}
            Ok(c) => failures.push(format!(
                "{}: warnings\n  got  {:?}\n  want {want:?}",
                path.display(),
                c.warnings
            )),
            Err(e) => failures.push(format!("{}: refused: {e}", path.display())),
        }
    }
    report(failures);
}

#[test]
fn invalid_fixtures_give_exactly_their_error() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let want = match expected(&path, "error").as_slice() {
            [one] => one.clone(),
            other => {
                failures.push(format!(
                    "{}: needs exactly one `# error: ` line, has {}",
                    path.display(),
                    other.len()
                ));
                continue;
            }
        };
        match config::load(&path) {
            Err(e) if e.to_string() == want => {}
            Err(e) => failures.push(format!(
                "{}: error\n  got  {e}\n  want {want}",
                path.display()
            )),
            Ok(_) => failures.push(format!("{}: accepted, want: {want}", path.display())),
        }
    }
    report(failures);
}

/// The fixtures are read by people and copied into bug reports: no value
/// in them may look like a real token (each says `fixture`, or is empty),
/// and no refusal may print the token it read.
#[test]
fn fixtures_hold_no_real_looking_secret() {
    let mut failures = Vec::new();
    for path in fixtures("valid").into_iter().chain(fixtures("invalid")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(table) = text.parse::<toml::Table>() else {
            continue; // the syntax and duplicate-key fixtures
        };
        for (section, value) in &table {
            let Some(t) = value.as_table() else { continue };
            if let Some(token) = t.get("token") {
                let token = token.as_str().unwrap_or_default();
                if !(token.trim().is_empty() || token.contains("fixture")) {
                    failures.push(format!(
                        "{}: {section}.token {token:?} does not say `fixture`",
                        path.display()
                    ));
                }
                if let Err(e) = config::load(&path)
                    && !token.trim().is_empty()
                    && e.to_string().contains(token)
                {
                    failures.push(format!(
                        "{}: the error shows the token: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
    report(failures);
}

/// No refusal prints a token as written, whatever its type or syntax: a
/// number (serde's message would quote it), a string with a line break,
/// an unquoted word. Read from the text, so that files TOML refuses count.
#[test]
fn no_refusal_shows_a_token_as_written() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let Err(e) = config::load(&path) else {
            continue;
        };
        let e = e.to_string();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(("token", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
            else {
                continue;
            };
            let bare = value.trim_matches(|c| c == '"' || c == '\'');
            // Long enough to be told from the words of a message.
            if bare.len() >= 6 && e.contains(bare) {
                failures.push(format!(
                    "{}: the error shows the token: {e}",
                    path.display()
                ));
            }
        }
    }
    report(failures);
}

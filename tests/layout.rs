//! The layout rules of docs/architecture.md ("Rooms"), read from the
//! source so that they cannot drift:
//! - every SQL call (`execute`, `prepare`, `query_row`, …) of the agent's
//!   code is under `src/outbox/` — the one room with SQL (a unit test's
//!   fixture may write its rows directly: the rest of a file after a
//!   `#[cfg(test)]` line, and the `*tests.rs` test modules, are not looked
//!   at);
//! - nothing outside `src/cli/` and `src/main.rs` uses the CLI (the daemon
//!   and the HTTP server share `src/status/`, not the commands);
//! - no function is over 100 lines without a reason written in a plain
//!   comment (`//`, not the doc) right above it that says why it is long
//!   (the word "long");
//! - the domain crate (`crates/domain`) depends on nothing that does I/O
//!   (no SQLite, HTTP, MQTT, mDNS or async runtime), and no other
//!   dependency of it names one: the compiler then refuses a rule that
//!   reaches for the store or the network.
//!
//! Each rule is checked against a made-up source first, so a scanner that
//! stopped seeing anything fails instead of passing.

use std::path::{Path, PathBuf};

/// The rusqlite calls that run SQL (method or path syntax).
const SQL_CALLS: &[&str] = &[
    "execute(",
    "execute_batch(",
    "prepare(",
    "prepare_cached(",
    "query_row(",
    "query_map(",
    "query_and_then(",
    "query_row_and_then(",
    "pragma(",
    "pragma_update(",
    "pragma_query(",
    "pragma_query_value(",
    ".query([",
    ".query((",
    ".query(params",
    ".query(rusqlite",
];

/// The words a SQL statement starts with: a string literal that opens with
/// one of them is a statement, whatever runs it.
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "PRAGMA",
    "WITH",
    "REPLACE",
    "ALTER",
    "DROP",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "VACUUM",
    "ANALYZE",
];

/// The longest function without a written reason, in lines.
const LONG_FN: usize = 100;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The agent's sources and the domain crate's (`crates/domain/src/`).
fn src_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates/domain/src"), &mut files);
    assert!(files.len() > 20, "the scan found the sources");
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The line with its comment, string and char literals blanked, so that
/// braces and calls are only counted in code. `in_raw`: inside a raw
/// string `r#"…"#` carried over from the previous line (its closing).
fn code_of(line: &str, in_raw: &mut Option<String>) -> String {
    let b: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(close) = in_raw.as_ref() {
            let rest: String = b[i..].iter().collect();
            match rest.find(close.as_str()) {
                Some(k) => {
                    i += rest[..k].chars().count() + close.chars().count();
                    *in_raw = None;
                    out.push_str("\"\"");
                    continue;
                }
                None => return out,
            }
        }
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            break;
        }
        if c == 'r' && (b.get(i + 1) == Some(&'"') || b.get(i + 1) == Some(&'#')) {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            // `r"…"`, and `br"…"` (a byte string: the `b` is its prefix).
            let prefix_ok = |k: usize| k == 0 || !b[k - 1].is_alphanumeric();
            let start_ok = prefix_ok(i) || (b[i - 1] == 'b' && prefix_ok(i - 1));
            if b.get(j) == Some(&'"') && start_ok {
                *in_raw = Some(format!("\"{}", "#".repeat(hashes)));
                i = j + 1;
                continue;
            }
        }
        if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            if j >= b.len() {
                // A string going on to the next line: treated as a raw one
                // closing at the next unescaped quote (good enough here).
                *in_raw = Some("\"".into());
                return out;
            }
            out.push_str("\"\"");
            i = j + 1;
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            if b.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&'\\')
                && let Some(k) = (i + 2..b.len()).find(|&k| b[k] == '\'')
            {
                out.push_str("' '");
                i = k + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `(name, first line (1-based), length in lines, has a written reason)`
/// of every `fn` with a body.
fn functions(text: &str) -> Vec<(String, usize, usize, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut raw = None;
    let code: Vec<String> = lines.iter().map(|l| code_of(l, &mut raw)).collect();
    let mut found = Vec::new();
    for (i, c) in code.iter().enumerate() {
        let t = c.trim_start();
        let Some(pos) = t.find("fn ") else { continue };
        let head = &t[..pos];
        let is_fn = head.split_whitespace().all(|w| {
            [
                "pub",
                "pub(crate)",
                "pub(super)",
                "async",
                "const",
                "unsafe",
                "extern",
            ]
            .contains(&w)
        });
        if !is_fn {
            continue;
        }
        let name: String = t[pos + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started, mut end) = (0i32, false, None);
        'scan: for (j, cj) in code.iter().enumerate().skip(i) {
            for ch in cj.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    ';' if !started => break 'scan,
                    _ => {}
                }
                if started && depth == 0 {
                    end = Some(j);
                    break 'scan;
                }
            }
        }
        let Some(end) = end else { continue };
        // The comments and attributes right above the function.
        let mut k = i;
        let mut reason = false;
        while k > 0 {
            let above = lines[k - 1].trim_start();
            if above.starts_with("//") || above.starts_with("#[") {
                // A plain comment (not the doc) saying it is long.
                reason |= !above.starts_with("///")
                    && above.starts_with("//")
                    && above.to_lowercase().contains("long");
                k -= 1;
            } else {
                break;
            }
        }
        found.push((name, i + 1, end - i + 1, reason));
    }
    found
}

/// The lines of the file's own code: up to an inline test module
/// (`#[cfg(test)]` then `mod … {`); a `#[cfg(test)] mod x;` naming a file
/// stops nothing.
fn own_code(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with("#[cfg(test)]") {
            let next = lines[i + 1..].iter().find(|n| !n.trim().is_empty());
            if next.is_some_and(|n| {
                let n = n.trim();
                n.starts_with("mod ") && n.ends_with('{')
            }) {
                end = i;
                break;
            }
        }
    }
    lines[..end].to_vec()
}

/// A string literal on `line` that opens with a SQL statement's first word.
fn opens_sql_literal(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices('"').any(|(i, _)| {
        let rest = code[i + 1..].trim_start_matches([' ', '\n']).trim_start();
        SQL_WORDS.iter().any(|w| {
            rest.starts_with(w)
                && rest[w.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
    })
}

/// A path into the CLI module: `crate::cli::…`, `super::cli`,
/// `use crate::{cli, …}`.
fn uses_cli(code: &str) -> bool {
    code.match_indices("cli").any(|(k, _)| {
        let before = code[..k].trim_end();
        let after = code[k + 3..].trim_start();
        let whole = !code[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            && !code[k + 3..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
        whole
            && (after.starts_with("::")
                || before.ends_with("::")
                || ((before.ends_with('{') || before.ends_with(','))
                    && (after.starts_with(',') || after.starts_with('}'))))
    })
}

fn sql_calls(text: &str) -> Vec<(usize, String)> {
    let mut raw = None;
    own_code(text)
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let c = code_of(l, &mut raw);
            let call = SQL_CALLS.iter().any(|call| {
                c.match_indices(call).any(|(k, _)| {
                    // A whole name: `.execute(` or `Connection::execute(`,
                    // not `unexecute(`.
                    call.starts_with('.')
                        || k == 0
                        || !c[..k].ends_with(|ch: char| ch.is_alphanumeric() || ch == '_')
                })
            });
            (call || opens_sql_literal(l)).then(|| (i + 1, l.trim().to_string()))
        })
        .collect()
}

#[test]
fn the_scanners_see_what_they_look_for() {
    let made_up = format!(
        "fn short() {{\n    let s = \"{{ not a brace\";\n    c.execute(\"DELETE\", [])?;\n}}\n\n// Long: a table.\nfn tabled() {{\n{}}}\n\nfn long_one() {{\n{}}}\n",
        "    x();\n".repeat(120),
        "    let c = '{';\n    y(r#\"}}\"#);\n".repeat(60)
    );
    let f = functions(&made_up);
    let names: Vec<(&str, usize, bool)> = f
        .iter()
        .map(|(n, _, len, r)| (n.as_str(), *len, *r))
        .collect();
    assert_eq!(
        names,
        [
            ("short", 4, false),
            ("tabled", 122, true),
            ("long_one", 122, false)
        ]
    );
    assert_eq!(sql_calls(&made_up).len(), 1);
    assert_eq!(
        sql_calls("// c.execute(\"x\")\nlet s = \".prepare(\";\n").len(),
        0
    );
    // What the review found slipping through: path-call syntax, other
    // rusqlite calls, a bare statement literal, code after a
    // `#[cfg(test)] mod x;` line; an inline test module is not looked at.
    let slipped = "#[cfg(test)]\nmod golden;\n\
                   fn a() { Connection::execute(c, \"x\", []); }\n\
                   fn b() { s.query_and_then([], f); s.query([1]); }\n\
                   const Q: &str = \"SELECT id FROM outbox\";\n\
                   fn unexecute() {}\n\
                   #[cfg(test)]\nmod tests {\n    c.execute(\"B\", [])?;\n}\n";
    let lines: Vec<usize> = sql_calls(slipped).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(uses_cli("use crate::cli::tables;"));
    assert!(uses_cli("use crate::{cli, outbox};"));
    assert!(uses_cli("super::cli::status::run()"));
    assert!(!uses_cli("let client = x; // clients"));
    assert!(!uses_cli("fn clip(cli_args: u8) {}"));
    // A doc line saying "as long as" is not a reason.
    let doc_only = format!(
        "/// Waits as long as it must.\nfn f() {{\n{}}}\n",
        "    x();\n".repeat(120)
    );
    assert!(!functions(&doc_only)[0].3, "a doc line is not a reason");
    // A byte raw string is a string: its braces do not count.
    let byte_raw = "fn f() {\n    let x = br#\"{\"a\":\"b\"#.to_vec();\n    \
                    let y = g(\"}\");\n}\nfn g() {}\n";
    let fns = functions(byte_raw);
    assert_eq!((fns[0].1, fns[0].2), (1, 4), "{fns:?}");
}

#[test]
fn every_sql_statement_is_in_the_outbox() {
    let mut outside = Vec::new();
    for (path, text) in src_files() {
        let file = path.rsplit('/').next().unwrap_or("");
        if path.starts_with("src/outbox/") || file == "tests.rs" || file.ends_with("_tests.rs") {
            continue;
        }
        for (line, code) in sql_calls(&text) {
            outside.push(format!("{path}:{line}: {code}"));
        }
    }
    assert!(
        outside.is_empty(),
        "SQL outside src/outbox/ (move it into a typed function there):\n{}",
        outside.join("\n")
    );
}

#[test]
fn only_the_command_line_uses_the_cli() {
    let mut users = Vec::new();
    for (path, text) in src_files() {
        if path.starts_with("src/cli/") || path == "src/main.rs" {
            continue;
        }
        let mut raw = None;
        for (i, l) in text.lines().enumerate() {
            if uses_cli(&code_of(l, &mut raw)) {
                users.push(format!("{path}:{}: {}", i + 1, l.trim()));
            }
        }
    }
    assert!(
        users.is_empty(),
        "the daemon's modules must not depend on the commands:\n{}",
        users.join("\n")
    );
}

#[test]
fn long_functions_say_why() {
    let mut unexplained = Vec::new();
    for (path, text) in src_files() {
        for (name, line, len, reason) in functions(&text) {
            if len > LONG_FN && !reason {
                unexplained.push(format!("{path}:{line}: fn {name} is {len} lines"));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "functions over {LONG_FN} lines without a comment above saying why they are long:\n{}",
        unexplained.join("\n")
    );
}

/// The crates that do I/O, which the domain crate must never depend on.
const IO_CRATES: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "reqwest",
    "hyper",
    "hyper-util",
    "rumqttc",
    "mdns-sd",
    "tokio",
    "tokio-util",
];

#[test]
fn the_domain_crate_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("crates/domain/Cargo.toml")).unwrap();
    // The dependency tables: every line from `[dependencies]` (or a
    // `[…dependencies]` table) to the next table.
    let mut deps = Vec::new();
    let mut in_deps = false;
    for l in manifest.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            in_deps = t.trim_end_matches(']').ends_with("dependencies");
            continue;
        }
        if in_deps && !t.is_empty() && !t.starts_with('#') {
            deps.push(t.split(['=', ' ', '.']).next().unwrap_or("").to_string());
        }
    }
    assert!(
        deps.iter().any(|d| d == "serde"),
        "the scan found the dependencies: {deps:?}"
    );
    let bad: Vec<&String> = deps
        .iter()
        .filter(|d| IO_CRATES.contains(&d.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "the domain crate depends on I/O crates: {bad:?}"
    );
    // And its sources name none of them (a path dependency could bring one).
    let mut files = Vec::new();
    rust_files(&root.join("crates/domain/src"), &mut files);
    assert!(files.len() >= 4, "the scan found the domain's sources");
    let mut named = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        let mut raw = None;
        for (i, l) in text.lines().enumerate() {
            let code = code_of(l, &mut raw);
            for c in IO_CRATES {
                let path = format!("{}::", c.replace('-', "_"));
                if code.contains(&path) {
                    named.push(format!("{}:{}: {}", p.display(), i + 1, l.trim()));
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "the domain names I/O crates:\n{}",
        named.join("\n")
    );
}

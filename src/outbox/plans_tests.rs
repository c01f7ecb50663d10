//! Every SQL statement of the daemon's hot paths (intake, both delivery
//! lanes, payments, links, status, the reservation poller, the update
//! policy) is asked for its query plan on a freshly migrated store: none may
//! scan a table that grows with the years (`events`, `outbox`, `orders`,
//! `pay_payments`, `pay_checks`) other than through one of the partial
//! indexes, which hold only what is still pending.
//!
//! Without `ANALYZE` statistics (the agent never runs it) SQLite's plans do
//! not depend on the data, so an empty store tells what a three-year store
//! would do. The statements are read from the source files themselves, so
//! a new query is checked without being listed here. This guards against
//! what the long-life bench once measured: `pay_state = 'queued'` alone
//! cannot use the partial index `WHERE pay_state != 'done'`, and every Pay
//! lane look scanned the whole outbox (intake of a burst 60 times slower on
//! a three-year store; docs/benchmarks.md, "6. Long life").

use rusqlite::Connection;

/// The files whose statements run while the daemon serves, each with the
/// number of statements it holds today: fewer planned means the literal
/// reader lost some (raise the number when a statement is added). Outside
/// `src/outbox/` (and `status`) no file holds SQL: the delivery lanes, the
/// payments, links and reservation tasks and the update policy call these.
const HOT: &[(&str, &str, usize)] = &[
    ("src/outbox/mod.rs", include_str!("mod.rs"), 12),
    ("src/outbox/events.rs", include_str!("events.rs"), 8),
    ("src/outbox/kv.rs", include_str!("kv.rs"), 5),
    ("src/outbox/queue.rs", include_str!("queue.rs"), 19),
    ("src/outbox/orders.rs", include_str!("orders.rs"), 11),
    ("src/outbox/payments.rs", include_str!("payments.rs"), 21),
    ("src/outbox/links.rs", include_str!("links.rs"), 5),
    ("src/outbox/mirror.rs", include_str!("mirror.rs"), 5),
    ("src/outbox/retention.rs", include_str!("retention.rs"), 16),
    ("src/outbox/status.rs", include_str!("status.rs"), 4),
];

/// Tables that grow with the years (kept 90 days by retention, but a store
/// migrated from an older release, or a box whose retention could not run,
/// holds years of them).
const GROWING: &[&str] = &["events", "outbox", "orders", "pay_payments", "pay_checks"];

/// Indexes that hold only pending rows: a scan of one is bounded by what
/// waits, not by the years.
const PARTIAL: &[&str] = &[
    "outbox_pending",
    "outbox_planned",
    "outbox_pay_pending",
    "orders_open",
    "pay_payments_attention",
];

/// Statements allowed to scan, each with why it stays cheap.
const ALLOWED: &[(&str, &str)] = &[
    // The newest or oldest row by rowid: one step from either end.
    (
        "ORDER BY rowid DESC LIMIT 1",
        "one step from the end of the table",
    ),
    (
        "ORDER BY rowid LIMIT 1",
        "one step from the start of the table",
    ),
    // Zenchef Pay polls payments every 5 s while a check is open: stops at
    // the first open check; pay_checks keeps one row per order of the
    // retention window (about 10,000), read off-store by SQLite's cache.
    (
        "FROM pay_checks WHERE status = 'open' LIMIT 1",
        "stops at the first open check; one row per order kept",
    ),
];

/// The SQL string literals of `src` (`"…"` and `r#"…"#`), outside its
/// `#[cfg(test)]` module, with Rust line continuations folded.
fn sql_literals(src: &str) -> Vec<(usize, String)> {
    let src = src
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(src)
        .split("#[cfg(test)]\npub(crate) mod tests")
        .next()
        .unwrap_or(src);
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Byte-wise (a multi-byte character never contains an ASCII byte),
        // so that `i` may sit inside one.
        let (start, end_pat) = if bytes[i..].starts_with(b"r#\"") {
            (i + 3, "\"#")
        } else if bytes[i..].starts_with(b"'\"'") || bytes[i..].starts_with(b"'\\\"'") {
            // A char literal holding a quote: not a string.
            i += if bytes[i + 1] == b'"' { 3 } else { 4 };
            continue;
        } else if bytes[i] == b'"' {
            (i + 1, "\"")
        } else if bytes[i..].starts_with(b"//") {
            // A comment: skip to the end of the line.
            i = bytes[i..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |n| i + n);
            continue;
        } else {
            i += 1;
            continue;
        };
        // Find the closing quote, honouring backslash escapes in "…".
        let mut j = start;
        let close = loop {
            match src[j..].find(end_pat) {
                None => break None,
                Some(n) => {
                    let at = j + n;
                    let escaped = end_pat == "\""
                        && src[start..at]
                            .chars()
                            .rev()
                            .take_while(|c| *c == '\\')
                            .count()
                            % 2
                            == 1;
                    if escaped {
                        j = at + 1;
                    } else {
                        break Some(at);
                    }
                }
            }
        };
        let Some(close) = close else { break };
        let text = &src[start..close];
        let line = src[..i].matches('\n').count() + 1;
        let folded = text.replace("\\\n", " ").replace("\\n", " ");
        let folded = folded.split_whitespace().collect::<Vec<_>>().join(" ");
        let head = folded.trim_start().to_ascii_uppercase();
        if ["SELECT ", "UPDATE ", "DELETE ", "INSERT ", "WITH "]
            .iter()
            .any(|k| head.starts_with(k))
        {
            out.push((line, folded));
        }
        i = close + end_pat.len();
    }
    out
}

/// The statement with its format placeholders and parameters filled so
/// that SQLite can plan it.
fn plannable(sql: &str) -> String {
    let sql = sql
        .replace("{PENDING}", super::payments::PENDING)
        .replace("{WAITING}", super::payments::WAITING)
        .replace("{CLEARING}", super::orders::CLEARING);
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push_str("'x'");
        } else {
            out.push(c);
        }
    }
    out
}

fn store() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("plans.db")).unwrap();
    super::migrations::migrate(&conn).unwrap();
    (dir, conn)
}

#[test]
fn no_hot_statement_scans_a_table_that_grows_with_the_years() {
    let (_dir, conn) = store();
    let mut problems = Vec::new();
    let mut short = Vec::new();
    for (file, src, expected) in HOT {
        let mut planned = 0;
        for (line, sql) in sql_literals(src) {
            let q = plannable(&sql);
            if q.contains('{') {
                // A statement built at run time beyond the known constants
                // (table names, column lists): not planned here.
                continue;
            }
            let plan: Vec<String> =
                match conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {q}"))
                    .and_then(|mut s| {
                        s.query_map([], |r| r.get::<_, String>(3))?
                            .collect::<Result<Vec<_>, _>>()
                    }) {
                    Ok(p) => p,
                    // Not a statement of this schema (test-only tables, text
                    // that only looks like SQL): nothing to plan.
                    Err(_) => continue,
                };
            planned += 1;
            if ALLOWED.iter().any(|(needle, _)| sql.contains(needle)) {
                continue;
            }
            // `FROM outbox o` and `FROM outbox AS o` both alias it.
            let words: Vec<&str> = sql
                .split_whitespace()
                .filter(|w| !w.eq_ignore_ascii_case("AS"))
                .collect();
            for step in &plan {
                let Some(rest) = step.strip_prefix("SCAN ") else {
                    continue;
                };
                let table = rest.split_whitespace().next().unwrap_or("");
                let index = rest
                    .split_once("INDEX ")
                    .map(|(_, i)| i.split_whitespace().next().unwrap_or(""));
                let growing = GROWING.contains(&table)
                    || words
                        .windows(2)
                        .any(|w| GROWING.contains(&w[0]) && w[1].trim_end_matches(',') == table);
                if growing && !index.is_some_and(|i| PARTIAL.contains(&i)) {
                    problems.push(format!("{file}:{line}: {step} in: {sql}"));
                }
            }
        }
        if planned < *expected {
            short.push(format!(
                "{file}: {planned} statements planned, {expected} expected"
            ));
        }
    }
    assert!(
        short.is_empty(),
        "the literal reader lost statements:\n{}",
        short.join("\n")
    );
    assert!(
        problems.is_empty(),
        "statements scanning a growing table:\n{}",
        problems.join("\n")
    );
}

/// The guard fails where it must: the query the long-life bench caught is
/// a scan, the fixed one a search of the partial index; the literal reader
/// folds continuations and steps over a quote in a char literal.
#[test]
fn the_guard_sees_the_scans_it_exists_for() {
    let (_dir, conn) = store();
    let plan = |sql: &str| -> Vec<String> {
        let mut s = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        s.query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let old = plan(
        "SELECT o.id FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.order_id = 'x' AND o.pay_state = 'queued' ORDER BY o.seq, o.id LIMIT 1",
    );
    assert!(old.iter().any(|s| s == "SCAN o"), "{old:?}");
    let new = plan(
        "SELECT o.id FROM outbox o JOIN events e ON e.event_id = o.event_id
         WHERE o.order_id = 'x' AND o.pay_state != 'done' AND o.pay_state = 'queued'
         ORDER BY o.seq, o.id LIMIT 1",
    );
    assert!(
        new.iter()
            .any(|s| s.contains("USING INDEX outbox_pay_pending")),
        "{new:?}"
    );
    let lits = sql_literals(
        "const Q: char = '\"';\nfn f() { c.execute(\"SELECT 1 FROM outbox WHERE \\\n  state = 'dead'\", []) }\n",
    );
    assert_eq!(
        lits,
        vec![(2, "SELECT 1 FROM outbox WHERE state = 'dead'".to_string())]
    );
}

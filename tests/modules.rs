//! The graph of the library's top-level modules (the `mod x;` lines of
//! `src/lib.rs`, each a file `src/<name>.rs` or a folder `src/<name>/`), read from
//! the source, and a ratchet on its cycles (docs/architecture.md,
//! "Rooms"):
//! - an edge `a -> b` is `a`'s production code naming `b`: a path
//!   `crate::b…`, a group `use crate::{b, …}`, or `super::b` climbing to
//!   the crate root. Comments (doc comments too), string and char
//!   literals do not count; nor does test code: inline `#[cfg(test)] mod
//!   … { … }` blocks and the `tests.rs` / `*_tests.rs` files they load;
//! - the edges inside a cycle (a strongly connected component of two or
//!   more modules) must all be listed in [`CYCLE_EDGES`], which is empty:
//!   the modules form no cycle (47 edges in one knot of 13 modules before
//!   issue 23), and an edge that closes one fails;
//! - no production code outside `src/outbox/` names `rusqlite`, except the
//!   files of [`NAMES_RUSQLITE`], a list that also only shrinks.
//!
//! The scanners are first run on a made-up source tree (a cycle of three,
//! a `use` group, edges only in comments and tests), so a scanner that
//! stopped seeing anything fails instead of passing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The edges inside a cycle. Empty since issue 23 (the domain crate took
/// the rules and their value types; shared records moved to the lower
/// module): the top-level modules form no cycle, and any edge that closes
/// one fails. Never add one.
const CYCLE_EDGES: &[&str] = &[];

/// The files outside `src/outbox/` whose production code names `rusqlite`
/// today. Remove a file when its SQLite handling moves behind the store's
/// typed methods; never add one.
const NAMES_RUSQLITE: &[&str] = &["src/links.rs"];

type Graph = BTreeMap<String, BTreeSet<String>>;

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

/// A file of test code only, loaded by a `#[cfg(test)] mod …;` line.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The text with comments (`//…`, nested `/* … */`) removed and the
/// contents of string, raw string and char literals blanked; line breaks
/// are kept.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let word = |k: usize| b[k].is_alphanumeric() || b[k] == '_';
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
            continue;
        }
        // A raw string `r"…"`, `r#"…"#`, `br#"…"#`.
        if c == 'r' && (i == 0 || !word(i - 1) || (b[i - 1] == 'b' && (i < 2 || !word(i - 2)))) {
            let mut j = i + 1;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            if b.get(j) == Some(&'"') {
                let close: String = std::iter::once('"')
                    .chain(b[i + 1..j].iter().copied())
                    .collect();
                let rest: String = b[j + 1..].iter().collect();
                let len = rest.find(&close).map_or(rest.len(), |k| k + close.len());
                let body: String = rest.chars().take(rest[..len].chars().count()).collect();
                out.push_str("\"\"");
                out.extend(body.chars().filter(|&ch| ch == '\n'));
                i = j + 1 + body.chars().count();
                continue;
            }
        }
        if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                } else if b[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
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
            if next == Some('\\')
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

/// The stripped code without its inline test modules (`#[cfg(test)]`
/// then `mod … { … }`, cut by brace depth).
fn production(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(k) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..k]);
        let after = &rest[k + "#[cfg(test)]".len()..];
        let t = after.trim_start();
        let is_mod =
            t.starts_with("mod ") || t.starts_with("pub mod ") || t.starts_with("pub(crate) mod ");
        let head_end = t.find(['{', ';']).unwrap_or(t.len());
        if !is_mod || !t[head_end..].starts_with('{') {
            // `#[cfg(test)] mod x;` or a test-only item: keep scanning.
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let body = &t[head_end..];
        let mut depth = 0;
        let mut end = body.len();
        for (j, ch) in body.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first names after `prefix::` wherever the whole word `prefix` is
/// followed by `::`: the name of `prefix::x`, or each item of a group
/// `prefix::{x, y::z, w::{…}}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (k, _) in code.match_indices(prefix) {
        let whole_before =
            !code[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
        let after = &code[k + prefix.len()..];
        if !whole_before || !after.starts_with("::") {
            continue;
        }
        let after = after[2..].trim_start();
        if let Some(group) = after.strip_prefix('{') {
            let (mut depth, mut start) = (1, true);
            let mut i = 0;
            while i < group.len() && depth > 0 {
                let rest = &group[i..];
                let ch = rest.chars().next().unwrap();
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        found.insert(ident_at(rest).to_string());
                        start = false;
                    }
                    _ => {}
                }
                i += ch.len_utf8();
            }
        } else {
            found.insert(ident_at(after).to_string());
        }
    }
    found
}

/// The library's top-level modules: the `mod x;` lines of `lib.rs`.
fn top_modules(src: &Path) -> Vec<String> {
    let lib = strip(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// The files of each top-level module, with their depth below `src/`
/// (`src/<name>.rs` and `src/<name>/mod.rs`: 1; `src/<name>/<file>.rs`: 2), test files left
/// out.
fn module_files(src: &Path, module: &str) -> Vec<(PathBuf, usize)> {
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push((file, 1));
    }
    let dir = src.join(module);
    if dir.is_dir() {
        let mut inner = Vec::new();
        rust_files(&dir, &mut inner);
        for p in inner {
            let below = p.strip_prefix(src).unwrap().components().count();
            let depth = if p.file_name().is_some_and(|n| n == "mod.rs") {
                below - 1
            } else {
                below
            };
            files.push((p, depth));
        }
    }
    assert!(
        !files.is_empty(),
        "module {module}: no file under {}",
        src.display()
    );
    files.retain(|(p, _)| !is_test_file(p));
    files
}

/// The module graph of the crate whose sources are in `src`: each module
/// and the other top-level modules its production code names.
fn graph(src: &Path) -> Graph {
    let modules = top_modules(src);
    let known: BTreeSet<&str> = modules.iter().map(String::as_str).collect();
    let mut g = Graph::new();
    for m in &modules {
        let mut named = BTreeSet::new();
        for (path, depth) in module_files(src, m) {
            let code = production(&strip(&std::fs::read_to_string(&path).unwrap()));
            named.extend(names_after(&code, "crate"));
            named.extend(names_after(&code, &vec!["super"; depth].join("::")));
        }
        named.retain(|n| known.contains(n.as_str()) && n != m);
        g.insert(m.clone(), named);
    }
    g
}

/// The strongly connected components of two modules or more (Tarjan).
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// The edges `a -> b` with both ends in the same cycle.
fn cycle_edges(g: &Graph) -> BTreeSet<String> {
    let mut edges = BTreeSet::new();
    for scc in cycles(g) {
        for a in &scc {
            for b in g[a].iter().filter(|b| scc.contains(*b)) {
                edges.insert(format!("{a} -> {b}"));
            }
        }
    }
    edges
}

fn print_graph(g: &Graph) {
    let cyc = cycle_edges(g);
    println!(
        "module graph ({} modules, {} edges, {} in cycles):",
        g.len(),
        g.values().map(BTreeSet::len).sum::<usize>(),
        cyc.len()
    );
    for (a, bs) in g {
        let shown: Vec<String> = bs
            .iter()
            .map(|b| {
                let star = if cyc.contains(&format!("{a} -> {b}")) {
                    "*"
                } else {
                    ""
                };
                format!("{b}{star}")
            })
            .collect();
        println!("  {a} -> {}", shown.join(", "));
    }
    for scc in cycles(g) {
        println!("cycle: {}", scc.into_iter().collect::<Vec<_>>().join(" "));
    }
}

/// The production files outside `src/outbox/` whose code names `rusqlite`,
/// as paths relative to the crate root (`src/…`).
fn rusqlite_users(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let root = src.parent().unwrap();
    files
        .into_iter()
        .filter(|p| !p.starts_with(src.join("outbox")) && !is_test_file(p))
        .filter(|p| {
            let code = production(&strip(&std::fs::read_to_string(p).unwrap()));
            code.match_indices("rusqlite").any(|(k, _)| {
                !code[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    && !code[k + 8..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn the_scanners_see_what_they_look_for() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(
        &src,
        "lib.rs",
        "//! mod ghost;\npub mod a;\npub mod b;\nmod c;\npub mod d;\npub mod e;\n",
    );
    // a -> b -> c -> a: a cycle of three, the last edge through a
    // multi-line `use` group, another through `super::` at the top.
    write(
        &src,
        "a.rs",
        "use crate::b::Thing;\n/// crate::e is only named in a doc.\nfn f() {}\n",
    );
    write(&src, "b/mod.rs", "mod inner;\n");
    write(&src, "b/inner.rs", "fn g() { super::super::c::h() }\n");
    write(
        &src,
        "c.rs",
        "use crate::{\n    a::{self, X},\n    d,\n};\nuse super::e as _;\nconst S: &str = \"crate::b\";\n",
    );
    // d names e in a comment, a block comment, a string, a test module and
    // a test file only: no edge.
    write(
        &src,
        "d.rs",
        "// crate::e\n/* crate::e\n */\nconst S: &str = r#\"crate::e\"#;\nfn x() -> char { '{' }\n\
         #[cfg(test)]\nmod tests {\n    use crate::e;\n    fn t() { let _ = '}'; }\n}\n\
         #[cfg(test)]\nmod d_tests;\nfn after() -> rusqlite::Error { todo!() }\n",
    );
    write(&src, "d_tests.rs", "use crate::e;\n");
    write(
        &src,
        "e/mod.rs",
        "pub use crate::d::after as _;\n// rusqlite\n",
    );
    write(
        &src,
        "e/x_tests.rs",
        "use crate::c; fn t(_: rusqlite::Connection) {}\n",
    );
    write(&src, "outbox/mod.rs", "use rusqlite::Connection;\n");

    let g = graph(&src);
    print_graph(&g);
    let edges: Vec<String> = g
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| format!("{a} -> {b}")))
        .collect();
    assert_eq!(
        edges,
        ["a -> b", "b -> c", "c -> a", "c -> d", "c -> e", "e -> d"]
    );
    let expected: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(cycles(&g), [expected]);
    assert_eq!(
        cycle_edges(&g).into_iter().collect::<Vec<_>>(),
        ["a -> b", "b -> c", "c -> a"]
    );
    // e -> d and d -> e would make a second cycle.
    let mut g2 = g.clone();
    g2.get_mut("d").unwrap().insert("e".into());
    assert_eq!(cycles(&g2).len(), 2);
    assert!(cycle_edges(&g2).contains("d -> e"));
    assert_eq!(rusqlite_users(&src), ["src/d.rs"]);
}

#[test]
fn no_new_cycle_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    print_graph(&g);
    assert!(g.len() > 20, "the scan found the modules: {g:?}");
    let now = cycle_edges(&g);
    let allowed: BTreeSet<String> = CYCLE_EDGES.iter().map(|e| e.to_string()).collect();
    let new: Vec<&String> = now.difference(&allowed).collect();
    let gone: Vec<&String> = allowed.difference(&now).collect();
    assert!(
        new.is_empty(),
        "new edges in a cycle of modules (make the arrow point down, or move the shared type to the lower module):\n{}",
        new.iter()
            .map(|e| format!("  {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        gone.is_empty(),
        "edges no longer in a cycle: remove them from CYCLE_EDGES:\n{}",
        gone.iter()
            .map(|e| format!("  \"{e}\","))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn only_the_outbox_names_rusqlite() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let now: BTreeSet<String> = rusqlite_users(&src).into_iter().collect();
    let allowed: BTreeSet<String> = NAMES_RUSQLITE.iter().map(|e| e.to_string()).collect();
    let new: Vec<&String> = now.difference(&allowed).collect();
    let gone: Vec<&String> = allowed.difference(&now).collect();
    assert!(
        new.is_empty(),
        "production code outside src/outbox/ naming rusqlite (give the store a typed method instead):\n{}",
        new.iter()
            .map(|e| format!("  {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        gone.is_empty(),
        "files that no longer name rusqlite: remove them from NAMES_RUSQLITE:\n{}",
        gone.iter()
            .map(|e| format!("  \"{e}\","))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! Part 5, size: the stripped agent binary (x86_64, and aarch64 when a
//! cross build is found next to it) and the number of crates in its
//! production dependency tree (`cargo tree -e normal -p zenchef-edge`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Bench, table, verdict};

/// Target size, bytes.
const TARGET_BYTES: u64 = 6 * 1024 * 1024;

/// Runs part 5.
pub async fn run(bench: &mut Bench) -> anyhow::Result<()> {
    println!("\n== 5. size");
    let mut rows = Vec::new();
    let release = bench.agent.components().any(|c| c.as_os_str() == "release");
    let mut candidates: Vec<(String, PathBuf, &str)> =
        vec![(host_triple(), bench.agent.clone(), "strip")];
    // <target>/release/zenchef-edge → <target>/aarch64-unknown-linux-gnu/release/…
    if let Some(target_dir) = bench.agent.parent().and_then(Path::parent) {
        let a64 = target_dir.join("aarch64-unknown-linux-gnu/release/zenchef-edge");
        if a64.is_file() {
            candidates.push((
                "aarch64-unknown-linux-gnu".into(),
                a64,
                "aarch64-linux-gnu-strip",
            ));
        } else {
            rows.push(vec![
                "aarch64-unknown-linux-gnu".into(),
                "not built".into(),
                String::new(),
                format!("(looked for {})", a64.display()),
            ]);
        }
    }
    for (triple, path, strip) in candidates {
        let size = std::fs::metadata(&path)?.len();
        let stripped = stripped_size(&path, strip, &bench.work);
        let figure = stripped.unwrap_or(size);
        let met = release.then_some(figure <= TARGET_BYTES);
        let value = format!(
            "{:.2} MiB{}",
            figure as f64 / 1048576.0,
            match stripped {
                Some(s) if s != size => format!(" (file {:.2} MiB)", size as f64 / 1048576.0),
                Some(_) => " (as built)".into(),
                None => format!(" (not re-stripped: no {strip})"),
            }
        );
        let note = if release {
            verdict(met)
        } else {
            "debug build: not comparable".into()
        };
        bench.figure(
            "size",
            format!("stripped binary, {triple}"),
            value.clone(),
            "≤ 6 MiB",
            met,
        );
        rows.push(vec![triple, value, "≤ 6 MiB".into(), note]);
    }
    let crates = crate_count();
    rows.push(vec![
        "cargo tree -e normal -p zenchef-edge".into(),
        match crates {
            Some(n) => format!("{n} crates (+ the agent)"),
            None => "cargo tree failed".into(),
        },
        String::new(),
        String::new(),
    ]);
    if let Some(n) = crates {
        bench.figure(
            "size",
            "production crates (cargo tree -e normal)",
            n.to_string(),
            "",
            None,
        );
    }
    table(&["binary", "stripped size", "target", ""], &rows);
    Ok(())
}

/// The host target triple of the agent (`zenchef-edge --version` says it;
/// this is the bench's own, the same for a native build).
fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Size after `strip` of a copy (`None` when the tool is missing).
fn stripped_size(bin: &Path, strip: &str, work: &Path) -> Option<u64> {
    let copy = work.join(format!("stripped-{}", bin.file_name()?.to_string_lossy()));
    let ok = Command::new(strip)
        .arg("-o")
        .arg(&copy)
        .arg(bin)
        .status()
        .ok()?
        .success();
    let size = ok.then(|| std::fs::metadata(&copy).ok().map(|m| m.len()))??;
    let _ = std::fs::remove_file(&copy);
    Some(size)
}

/// Distinct crates of `cargo tree -e normal -p zenchef-edge`, the agent
/// itself excluded.
fn crate_count() -> Option<usize> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "-e",
            "normal",
            "-p",
            "zenchef-edge",
            "--prefix",
            "none",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<String> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(format!("{} {}", w.next()?, w.next()?))
        })
        .filter(|c| !c.starts_with("zenchef-edge "))
        .collect();
    Some(crates.len())
}

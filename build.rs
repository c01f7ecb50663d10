//! Records the git commit and the target triple for `--version`.
fn main() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ZENCHEF_EDGE_COMMIT={commit}");
    println!(
        "cargo:rustc-env=ZENCHEF_EDGE_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    // Pack the binary's relative relocations (DT_RELR, `-z
    // pack-relative-relocs`): a position-independent executable keeps one
    // 24-byte relocation per pointer in its static data, ~38,000 of them
    // here (two thirds for chrono-tz's time-zone tables), 0.9 MiB of the
    // 7 MiB binary. Packed, they take a few KiB; ASLR is kept. Needs GNU ld
    // ≥ 2.38 (older ones ignore it with a warning) and glibc ≥ 2.36 on the
    // box (Debian 12): see docs/benchmarks.md, "Size".
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Rebuild when HEAD moves. Ask git where HEAD and the branch ref live
    // (a worktree's `.git` is a file); watch only paths that exist, since a
    // missing path makes cargo rebuild every time.
    let mut watched = false;
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        for path in [
            Some(head),
            git(&["symbolic-ref", "-q", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        ]
        .into_iter()
        .flatten()
        {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
                watched = true;
            }
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}

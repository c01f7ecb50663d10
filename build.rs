//! Records the git commit and the target triple for `--version`, and
//! renders the man page `zenchef-edge.1` from the command line's clap
//! definitions (`src/args.rs`, shared with `main.rs`) with clap_mangen.
//!
//! The page is written to `OUT_DIR` and copied beside the binary, as is and
//! gzipped (`target/<profile>/zenchef-edge.1{,.gz}`,
//! `target/<triple>/<profile>/…` when cross-compiling), where
//! `[package.metadata.deb]` picks the `.gz` up: cargo-deb
//! reads assets by fixed paths and cannot name `OUT_DIR`. Generating it here
//! rather than with a hidden `zenchef-edge man` subcommand keeps the page
//! generator out of the binary boxes run, and needs no way of running an
//! arm64 binary on the build machine.

#[path = "src/args.rs"]
mod args;

/// What `src/args.rs` shows as the version: the man page's.
fn long_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn main() {
    man_page();
    placeholder_key_guard();
    sqlite_recover();
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
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/args.rs");
}

/// Refuses a `release`-profile build (the binaries and packages boxes
/// get) while `packaging/channel.toml` still holds the repository's
/// placeholder signing key (its `placeholder = true` line): such a box
/// could never install a real release. `ZENCHEF_ALLOW_PLACEHOLDER_KEY=1`
/// lets it through (CI's packaging checks, benches; never for boxes).
/// Other profiles (`dev`, `ci`) build as always; the binary itself says
/// "this box cannot update: placeholder signing key" in `doctor` and
/// `status`.
fn placeholder_key_guard() {
    println!("cargo:rerun-if-changed=packaging/channel.toml");
    println!("cargo:rerun-if-env-changed=ZENCHEF_ALLOW_PLACEHOLDER_KEY");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // OUT_DIR is <target dir>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let channel = std::fs::read_to_string("packaging/channel.toml").unwrap_or_default();
    let placeholder = channel.lines().any(|l| l.trim() == "placeholder = true");
    let allowed = std::env::var("ZENCHEF_ALLOW_PLACEHOLDER_KEY").as_deref() == Ok("1");
    if profile == "release" && placeholder && !allowed {
        panic!(
            "packaging/channel.toml still holds the placeholder signing key (placeholder = \
             true): a box running this release build could never update. Put the release \
             channel's real public key there and delete that line; \
             ZENCHEF_ALLOW_PLACEHOLDER_KEY=1 builds anyway (tests and CI only, never for boxes)"
        );
    }
}

/// Compiles SQLite's recovery extension (vendor/sqlite-recover/, the code
/// of the `sqlite3` shell's `.recover`) against the SQLite rusqlite
/// bundles: `SQLITE_CORE` makes its calls direct ones into that library
/// (no extension loading). Used by `src/outbox/recover.rs`.
fn sqlite_recover() {
    let include = std::env::var("DEP_SQLITE3_INCLUDE")
        .expect("libsqlite3-sys (bundled) gives its include directory");
    cc::Build::new()
        .file("vendor/sqlite-recover/sqlite3recover.c")
        .file("vendor/sqlite-recover/dbdata.c")
        .include(&include)
        .include("vendor/sqlite-recover")
        .define("SQLITE_CORE", None)
        .warnings(false)
        .compile("sqlite3recover");
    println!("cargo:rerun-if-changed=vendor/sqlite-recover");
}

/// `\-`-escapes a text for roff.
fn roff(text: &str) -> String {
    text.replace('\\', "\\\\").replace('-', "\\-")
}

/// Renders `zenchef-edge.1`, one page for every command: clap_mangen's
/// title, name, synopsis, description and global options, then each
/// command with its own options (clap_mangen's own list of subcommands
/// would point at one page per command), exit status, files, where to read
/// more, and the version.
fn man_page() {
    use clap::CommandFactory;
    let cmd = args::Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("1")
        .manual("zenchef-edge");
    let mut page: Vec<u8> = Vec::new();
    let render = |page: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(page)?;
        man.render_name_section(page)?;
        man.render_synopsis_section(page)?;
        man.render_description_section(page)?;
        man.render_options_section(page)
    };
    render(&mut page).expect("rendering the man page");
    let mut extra = String::from(".SH COMMANDS\n");
    let mut commands: Vec<(String, &clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            for subsub in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
                commands.push((format!("{} {}", sub.get_name(), subsub.get_name()), subsub));
            }
        } else {
            commands.push((sub.get_name().to_string(), sub));
        }
    }
    for (name, sub) in commands {
        extra.push_str(&format!(".SS \"zenchef\\-edge {}\"\n", roff(&name)));
        if let Some(about) = sub.get_about() {
            extra.push_str(&format!("{}\n", roff(&about.to_string())));
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let flag = match (arg.get_long(), arg.get_value_names()) {
                (Some(l), Some(v)) if arg.get_action().takes_values() => {
                    format!("\\fB\\-\\-{}\\fR \\fI{}\\fR", roff(l), roff(&v[0]))
                }
                (Some(l), _) => format!("\\fB\\-\\-{}\\fR", roff(l)),
                (None, _) => format!("\\fI{}\\fR", roff(&arg.get_id().to_string().to_uppercase())),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            extra.push_str(&format!(".TP\n{flag}\n{}\n", roff(&help)));
        }
    }
    extra.push_str(concat!(
        ".SH \"EXIT STATUS\"\n",
        "0 success, 1 a check failed or a request was refused, 64 usage error, 66 no store, ",
        "74 I/O error, 75 temporary failure (try again; also the daemon after an update), ",
        "77 permission denied, 78 configuration error (one line naming the key).\n",
        ".SH FILES\n",
        ".TP\n/etc/zenchef\\-edge/agent.toml\nThe configuration (root, 0600: it holds tokens).\n",
        ".TP\n/usr/share/zenchef\\-edge/agent.toml.example\n",
        "The example the package installs as the configuration when there is none.\n",
        ".TP\n/var/lib/zenchef\\-edge/\nThe store (agent.db), the device id, the running binary (bin/).\n",
        ".TP\n/boot/firmware/zenchef\\-edge.toml, /boot/firmware/zenchef/authorized_keys\n",
        "The configuration and SSH keys dropped on the card, installed by ",
        "zenchef\\-edge\\-provision.service.\n",
        ".SH \"SEE ALSO\"\n",
        "systemctl status zenchef\\-edge (its STATUS line), journalctl \\-u zenchef\\-edge \\-x ",
        "(key events carry a MESSAGE_ID explained by the shipped catalog), ",
        "/usr/share/doc/zenchef\\-edge/README\\-install.md, ",
        "/usr/share/doc/zenchef\\-edge/packaging.md.\n",
    ));
    page.extend_from_slice(extra.as_bytes());
    man.render_version_section(&mut page)
        .expect("rendering the man page");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // Debian policy wants man pages gzipped (-9, no name, no time: the
    // same bytes at every build).
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &page).expect("compressing the man page");
    let gz = gz.finish().expect("compressing the man page");
    std::fs::write(out.join("zenchef-edge.1"), &page).expect("writing the man page");
    // OUT_DIR is <target dir>/[<triple>/]<profile>/build/<package>-<hash>/out.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let _ = std::fs::write(profile_dir.join("zenchef-edge.1"), &page);
        let _ = std::fs::write(profile_dir.join("zenchef-edge.1.gz"), &gz);
    }
}

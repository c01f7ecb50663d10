//! Small helpers shared by the simulators: free ports, waiting for a TCP port,
//! waiting for a condition without sleeps-then-assert, random hex ids.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rand::RngExt;

/// The only address the simulators ever bind: `127.0.0.1`.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A TCP port on `127.0.0.1` that was free a moment ago (bind to port 0, read
/// the port, close). Racy by nature, good enough for tests.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((LOOPBACK, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Blocks until `127.0.0.1:port` accepts a TCP connection, or fails after
/// `timeout`.
pub fn wait_for_tcp(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((LOOPBACK, port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("port {port} did not accept TCP connections within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` every 20 ms until it returns `Some(value)` or `timeout`
/// passes; the error names `what` was awaited.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = condition() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A random lower-case hex string of `n` characters (ids; no uuid crate).
pub fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).expect("digit < 16"))
        .collect()
}

/// A random version-4-shaped UUID string (`8-4-4-4-12` hex), e.g. for
/// `event_id`.
pub fn random_uuid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Builds the agent with the cargo that runs the calling binary (`$CARGO`,
/// else `cargo`), in that binary's profile (`--release` when it was built
/// without debug assertions), and answers `<dir of the caller>/zenchef-edge`.
/// `who` names the caller in messages ("demo", "bench"). Errors: cargo
/// missing or failing, or no agent binary next to the caller afterwards
/// (another target directory: pass the agent's path instead).
pub fn build_agent(who: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    use std::path::Path;
    use std::process::Command;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let release = !cfg!(debug_assertions);
    println!(
        "building the agent: cargo build -p zenchef-edge --bin zenchef-edge{}",
        if release { " --release" } else { "" }
    );
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", "zenchef-edge", "--bin", "zenchef-edge"])
        .arg("--manifest-path")
        .arg(&manifest);
    // `cargo run` describes the caller's package in the environment; build
    // scripts that watch those variables (ring: CARGO_MANIFEST_DIR) would
    // see a change and rebuild half the tree, here and in the next plain
    // `cargo build`. Build as a plain `cargo build` would.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    if release {
        // A bench's or a demo's agent never goes to a box: the release
        // build may carry the repository's placeholder signing key
        // (packaging/channel.toml).
        cmd.arg("--release")
            .env("ZENCHEF_ALLOW_PLACEHOLDER_KEY", "1");
    }
    let t = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    anyhow::ensure!(status.success(), "building the agent failed ({status})");
    println!("agent built in {:.1} s", t.elapsed().as_secs_f64());
    let exe = std::env::current_exe().with_context(|| format!("locating the {who} binary"))?;
    let bin = exe
        .parent()
        .with_context(|| format!("the {who} binary has no directory"))?
        .join("zenchef-edge");
    anyhow::ensure!(
        bin.is_file(),
        "the agent was built but {} does not exist (another target dir? use --agent PATH)",
        bin.display()
    );
    Ok(bin)
}

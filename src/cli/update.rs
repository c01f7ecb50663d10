//! `zenchef-edge update check | apply [--force] | boot-check`: the
//! self-update by hand (docs/protocol/agent-interface.md § Command line).
//!
//! - `check` prints the running version, what the manifest offers, whether
//!   the policy allows installing now and why not. Exit 0 when the check
//!   ran, 1 when the manifest could not be read.
//! - `apply` installs the offered release now, ignoring the maintenance
//!   window and the staged rollout — never the signature, the target or
//!   the downgrade rule. Open orders or a busy outbox still refuse unless
//!   `--force` (which also ignores the list of versions rolled back on this
//!   box). Then restarts the service (`systemctl try-restart`) when systemd
//!   runs, unless `--no-restart`. The signing key is checked first: without
//!   a usable `update.public_key` nothing is fetched (exit 78). Exit 0
//!   installed or up to date, 1 refused, 75 the server could not be reached
//!   or the update lock is taken (try again), 77 a file of the state
//!   directory cannot be written, 78 no usable key.
//! - `boot-check` (hidden) is the start bookkeeping run from the unit's
//!   `ExecStartPre=` by the previous binary; always exits 0.

use crate::config::Config;
use crate::exit;
use crate::update::daemon::{Activity, Outcome, Updater};
use crate::update::policy::{Kind, Overrides, Refusal};
use crate::update::{self, Paths, TARGET};

fn updater(config: &Config) -> anyhow::Result<Updater> {
    let paths = Paths::for_current_exe(&config.store_path)?;
    Ok(Updater::new(
        config.update.clone(),
        config.timezone,
        paths,
        Activity::File(config.store_path.clone()),
    )?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// `update check`.
pub fn check(config: &Config) -> anyhow::Result<i32> {
    let u = updater(config)?;
    println!("running      {} ({TARGET})", update::running_version_str());
    println!(
        "settings     enabled {}  window {}-{} ({})  rollout_percent {}",
        config.update.enabled,
        hhmm(config.update.window.0),
        hhmm(config.update.window.1),
        config.timezone,
        config.update.rollout_percent
    );
    let Some(url) = config.update.manifest_url.as_deref() else {
        println!("manifest     none (update.manifest_url is not set)");
        return Ok(0);
    };
    println!("manifest     {url}");
    match crate::update::verify::PublicKey::from_config(&config.update) {
        Ok(k) if k.len() == 1 => println!(
            "key          key id {} ({}, a valid ed25519 key)",
            k.key_id(),
            config.update.keys_from
        ),
        Ok(k) => println!(
            "key          key ids {} ({} valid ed25519 keys of {}; any of them may sign)",
            k.key_id(),
            k.len(),
            config.update.keys_from
        ),
        Err(e) => println!("key          updates refused: no signing key ({e})"),
    }
    let plan = match runtime()?.block_on(u.plan(Overrides::default())) {
        Ok(p) => p,
        Err(e) => {
            println!("available    ? ({e})");
            return Ok(1);
        }
    };
    match &plan.release {
        Ok((e, Kind::Upgrade)) => println!("available    {} (upgrade)", e.claims.version),
        Ok((e, Kind::Rollback)) => println!(
            "available    {} (signed rollback of {})",
            e.claims.version, plan.current
        ),
        Err(Refusal::UpToDate(v)) => println!("available    nothing newer (running {v})"),
        Err(r) => println!("available    nothing installable: {r}"),
    }
    println!("rollout      this box is in bucket {} of 0-99", plan.bucket);
    match plan.why_not() {
        None if config.update.enabled => println!("policy       would install now"),
        None => {
            println!("policy       allowed now, but update.enabled = false (use `update apply`)")
        }
        Some(why) => println!("policy       not now: {why}"),
    }
    let st = &plan.state;
    println!(
        "pending      {}",
        st.pending_version.as_deref().unwrap_or("-")
    );
    println!(
        "failed       {}",
        if st.failed_versions.is_empty() {
            "-".to_string()
        } else {
            st.failed_versions.join(", ")
        }
    );
    println!("last event   {}", st.last_event.as_deref().unwrap_or("-"));
    Ok(0)
}

/// Who restarts the service after `update apply` installed a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// This process, when systemd runs (`systemctl try-restart`).
    Now,
    /// Nobody: `--no-restart` (the line saying how to is printed).
    No,
    /// The root parent process of [`crate::privileges::run_as`],
    /// after this one (running as the state directory's owner) exits.
    ByParent,
}

/// What `update apply` got to: nothing to do, or a check (and maybe an
/// install).
enum Tried {
    /// Already up to date (the line to print).
    UpToDate(String),
    /// The updater's outcome.
    Checked(Outcome),
}

/// `update apply [--force] [--no-restart]`.
pub fn apply(config: &Config, force: bool, restart: Restart) -> anyhow::Result<i32> {
    // Before anything is fetched: without a key every release is refused.
    if config.update.manifest_url.is_some()
        && let Err(e) = crate::update::verify::PublicKey::from_config(&config.update)
    {
        eprintln!(
            "updates refused: no signing key: {e} (set update.public_key in {}); nothing was \
             downloaded",
            config.file.display()
        );
        return Ok(exit::CONFIG);
    }
    let u = updater(config)?;
    let o = Overrides {
        window_and_rollout: true,
        activity: force,
    };
    let outcome = runtime()?.block_on(async {
        match u.plan(o).await {
            Ok(p) if matches!(p.release, Err(Refusal::UpToDate(_))) => {
                Ok(Tried::UpToDate(format!("up to date ({})", p.current)))
            }
            Ok(_) => u.check(o).await.map(Tried::Checked),
            Err(e) => Err(e),
        }
    });
    let outcome = match outcome {
        Ok(Tried::UpToDate(line)) => {
            println!("{line}");
            return Ok(0);
        }
        Ok(Tried::Checked(o)) => Ok(o),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Outcome::NotConfigured) => {
            eprintln!("update.manifest_url is not set: nothing to apply");
            Ok(1)
        }
        Ok(Outcome::NotNow { why, .. }) => {
            eprintln!("not installed: {why}");
            Ok(exit::FAILURE)
        }
        Ok(Outcome::Installed(i)) => {
            println!(
                "installed {} (was {}); previous binary kept at {}",
                i.version,
                i.previous,
                u.paths.previous.display()
            );
            match restart {
                Restart::Now => restart_service(),
                Restart::No => {
                    println!("restart the agent to run it: systemctl restart zenchef-edge")
                }
                Restart::ByParent => {}
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("update failed, nothing changed: {e:#}");
            Ok(exit::code_for(&anyhow::Error::from(e)))
        }
    }
}

/// Restarts the service to run an installed release (`systemctl
/// try-restart` when systemd runs), printing what happened.
pub fn restart_service() {
    if !std::path::Path::new("/run/systemd/system").exists() {
        println!("restart the agent to run it: systemctl restart zenchef-edge");
        return;
    }
    let st = std::process::Command::new("systemctl")
        .args(["try-restart", "zenchef-edge.service"])
        .status();
    match st {
        Ok(s) if s.success() => println!("zenchef-edge.service restarted"),
        _ => println!("could not restart it: run `systemctl restart zenchef-edge`"),
    }
}

/// Whether the update state records an installed, not yet confirmed
/// release (what a successful `update apply` leaves); read only.
pub fn installed_pending(config: &Config) -> bool {
    let paths = Paths::new(std::path::PathBuf::new(), &config.store_path);
    crate::update::state::UpdateState::load(&paths.state_file())
        .is_ok_and(|s| s.pending_version.is_some())
}

/// `update boot-check` (from `ExecStartPre=`, run by the previous binary).
pub fn boot_check(config: &Config) -> anyhow::Result<i32> {
    // The binary doing this is not the service's binary: only the state
    // file (from the configuration) matters.
    let paths = Paths::new(
        std::env::current_exe().unwrap_or_default(),
        &config.store_path,
    );
    // Under systemd (ExecStartPre=) to the journal, with a MESSAGE_ID for
    // a rollback; elsewhere to stderr.
    crate::logging::init("info");
    update::daemon::boot_check(&paths);
    Ok(0)
}

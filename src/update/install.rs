//! Installing a [`Verified`] release and rolling back.
//!
//! Install, in this order (each step safe to interrupt):
//! 1. smoke test: the staged binary must run and answer `--version` with
//!    the signed version (catches a wrong architecture or a binary that
//!    cannot start at all, before anything changes);
//! 2. keep the running binary as `<exe>.previous` (hard link: the running
//!    file is never copied over or written — ETXTBSY);
//! 3. write the pending install to `update-state.json`;
//! 4. `rename(staged, exe)`: atomic; the running process keeps its inode;
//! 5. fsync the directory.
//!
//! A crash between 3 and 4 leaves the old binary with a pending version it
//! does not run: the next start forgets it ([`super::state::Boot::DidNotTake`]).
//!
//! Rollback: hard-link `.previous` to a temp name and rename it over the
//! failed binary (then the state is written: binary first, so a crash in
//! between makes the next start roll back again, idempotently).
//!
//! Blocking: run on `spawn_blocking`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::policy::Kind;
use super::state::{UpdateState, sync_dir};
use super::verify::Verified;
use super::{Paths, UpdateError};
use crate::config::Version;

/// How long the staged binary has to answer `--version`.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A release now in place of the running binary (takes effect at the next
/// start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The new version.
    pub version: Version,
    /// The version it replaced.
    pub previous: Version,
    /// Upgrade or signed rollback.
    pub kind: Kind,
}

fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    // ETXTBSY: another thread may have forked while the staged file was
    // still open for writing; the fd closes at its exec. Retry briefly.
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 40 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Runs `<binary> --version` and checks it prints `zenchef-edge <version>`.
///
/// Errors: [`UpdateError::SmokeTest`] with what happened.
pub fn smoke_test(binary: &Path, version: Version) -> Result<(), UpdateError> {
    let fail = |m: String| UpdateError::SmokeTest(m);
    let mut child = spawn_retrying(
        Command::new(binary)
            .arg("--version")
            .env_remove("INVOCATION_ID")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let deadline = Instant::now() + SMOKE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {SMOKE_TIMEOUT:?}")));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let mut out = String::new();
    if let Some(s) = child.stdout.take() {
        let _ = s.take(64 << 10).read_to_string(&mut out);
    }
    if !status.success() {
        return Err(fail(format!("`--version` exited with {status}")));
    }
    let want = format!("zenchef-edge {version}");
    let ok = out.lines().any(|l| {
        l.strip_prefix(&want)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    });
    if !ok {
        return Err(fail(format!(
            "`--version` printed {:?}, expected `{want}`",
            out.trim()
        )));
    }
    Ok(())
}

/// Puts a copy of `src` at `dst` without writing into any existing file:
/// hard link to a fresh temp name beside `dst` (`link` never follows nor
/// replaces the new name), or else a copy into a temp file created
/// `O_EXCL|O_NOFOLLOW` with `src`'s mode set on its descriptor; then
/// rename.
fn place(src: &Path, dst: &Path) -> std::io::Result<()> {
    let linked = crate::files::temp_name_beside(dst);
    let tmp = match fs::hard_link(src, &linked) {
        Ok(()) => linked,
        Err(_) => {
            let (tmp, mut out) = crate::files::create_temp_beside(dst)?;
            let copied = (|| {
                let mut input = fs::File::open(src)?;
                std::io::copy(&mut input, &mut out)?;
                out.set_permissions(input.metadata()?.permissions())?;
                out.sync_all()
            })();
            if let Err(e) = copied {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            tmp
        }
    };
    let r = fs::rename(&tmp, dst);
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Installs `v` in place of `paths.exe`, keeping the running binary as
/// `paths.previous`, recording the pending install in the state file.
///
/// Errors: smoke test, I/O; on any error the running binary is unchanged
/// and nothing is pending.
pub fn install(mut v: Verified, paths: &Paths, current: Version) -> Result<Installed, UpdateError> {
    let version = v.release().claims.version;
    smoke_test(v.staged(), version)?;
    place(&paths.exe, &paths.previous).map_err(|e| {
        UpdateError::io(
            format!(
                "keeping {} as {}",
                paths.exe.display(),
                paths.previous.display()
            ),
            e,
        )
    })?;
    let state_file = paths.state_file();
    let mut st = UpdateState::load(&state_file)?;
    st.clear_pending();
    st.pending_version = Some(version.to_string());
    st.previous_version = Some(current.to_string());
    st.binary = Some(paths.exe.clone());
    st.previous_binary = Some(paths.previous.clone());
    st.installed_at = Some(chrono::Utc::now().timestamp());
    st.event(format!(
        "installed {version} (was {current}), waiting for its health check"
    ));
    st.save(&state_file)?;
    let staged: PathBuf = v.take_staged().unwrap_or_default();
    if let Err(e) = fs::rename(&staged, &paths.exe) {
        let _ = fs::remove_file(&staged);
        st.clear_pending();
        st.event(format!("install of {version} failed: {e}"));
        let _ = st.save(&state_file);
        return Err(UpdateError::io(
            format!("renaming the new binary to {}", paths.exe.display()),
            e,
        ));
    }
    let _ = sync_dir(&paths.bin_dir());
    Ok(Installed {
        version,
        previous: current,
        kind: v.kind(),
    })
}

/// Rolls the pending install back: the previous binary goes back in place,
/// the pending version is blacklisted, the state saved. `why` goes in the
/// event text. Returns the version rolled back.
///
/// Errors: nothing pending, no previous binary, I/O (the state then stays
/// pending, so the next start tries again).
pub fn rollback(state_file: &Path, why: &str) -> Result<String, UpdateError> {
    let mut st = UpdateState::load(state_file)?;
    let Some(version) = st.pending_version.clone() else {
        return Err(UpdateError::io(
            "rolling back",
            std::io::Error::other("no install is pending"),
        ));
    };
    let (Some(binary), Some(previous)) = (st.binary.clone(), st.previous_binary.clone()) else {
        return Err(UpdateError::io(
            "rolling back",
            std::io::Error::other("the state names no binary or previous binary"),
        ));
    };
    place(&previous, &binary).map_err(|e| {
        UpdateError::io(
            format!("restoring {} to {}", previous.display(), binary.display()),
            e,
        )
    })?;
    if let Some(dir) = binary.parent() {
        let _ = sync_dir(dir);
    }
    let back_to = st.previous_version.clone().unwrap_or_else(|| "?".into());
    if !st.failed_versions.contains(&version) {
        st.failed_versions.push(version.clone());
    }
    st.clear_pending();
    st.event(format!(
        "rolled back {version} to {back_to}: {why}; {version} will not be retried"
    ));
    st.save(state_file)?;
    Ok(version)
}

/// The running version passed its health check: forget the pending install.
///
/// Errors: the state file cannot be written.
pub fn confirm(state_file: &Path, version: &str) -> Result<bool, UpdateError> {
    let mut st = UpdateState::load(state_file)?;
    if st.pending_version.as_deref() != Some(version) {
        return Ok(false);
    }
    let was = st.previous_version.clone().unwrap_or_else(|| "?".into());
    st.clear_pending();
    st.event(format!("{version} confirmed healthy (replaced {was})"));
    st.save(state_file)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path, body: &str) {
        fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_smoke_test_wants_the_signed_version() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b");
        script(&b, "echo 'zenchef-edge 0.2.0 (commit x, t)'");
        smoke_test(&b, Version(0, 2, 0)).unwrap();
        assert!(smoke_test(&b, Version(0, 2, 1)).is_err());
        script(&b, "echo 'zenchef-edge 0.2.01'");
        assert!(smoke_test(&b, Version(0, 2, 0)).is_err());
        script(&b, "echo 'zenchef-edge 0.2.0'; exit 3");
        assert!(
            smoke_test(&b, Version(0, 2, 0))
                .unwrap_err()
                .to_string()
                .contains("exited")
        );
        fs::write(&b, b"\x7fELF garbage").unwrap();
        assert!(
            smoke_test(&b, Version(0, 2, 0))
                .unwrap_err()
                .to_string()
                .contains("cannot run")
        );
    }

    #[test]
    fn rollback_restores_the_previous_binary_and_blacklists() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("zenchef-edge");
        let prev = dir.path().join("zenchef-edge.previous");
        fs::write(&exe, b"new").unwrap();
        fs::write(&prev, b"old").unwrap();
        let state_file = dir.path().join("update-state.json");
        UpdateState {
            pending_version: Some("0.2.0".into()),
            previous_version: Some("0.1.0".into()),
            binary: Some(exe.clone()),
            previous_binary: Some(prev.clone()),
            attempts: 1,
            ..Default::default()
        }
        .save(&state_file)
        .unwrap();
        assert_eq!(rollback(&state_file, "test").unwrap(), "0.2.0");
        assert_eq!(fs::read(&exe).unwrap(), b"old");
        assert_eq!(
            fs::read(&prev).unwrap(),
            b"old",
            "the previous binary stays"
        );
        let st = UpdateState::load(&state_file).unwrap();
        assert_eq!(st.failed_versions, vec!["0.2.0".to_string()]);
        assert_eq!(st.pending_version, None);
        assert!(
            st.last_event
                .unwrap()
                .contains("rolled back 0.2.0 to 0.1.0")
        );
        // Nothing pending any more: a second rollback is an error, not a loop.
        assert!(rollback(&state_file, "again").is_err());
        assert!(!confirm(&state_file, "0.2.0").unwrap());
    }
}

//! The update-state file, the device id and the start bookkeeping.
//!
//! `update-state.json` in the state directory (written atomically: temp
//! file, fsync, rename, fsync of the directory) records the
//! install in progress and the versions that failed. Its fields only grow
//! and all have defaults, so every version (including the previous binary
//! doing a rollback) reads every other's file.
//!
//! Start bookkeeping ([`boot_step`]): each start of the service (one systemd
//! `INVOCATION_ID`, shared by `ExecStartPre=` and `ExecStart=`) counts once.
//! The first start of a pending version is let through; a second start
//! that finds it still unconfirmed means it crashed, hung or was killed:
//! roll back.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Version;

/// Errors of the state files.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading failed (other than "not there").
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{path} is not a valid update state: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message.
        message: String,
    },
    /// Writing failed; the previous content is intact.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The content of `update-state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    /// The version installed and not yet confirmed healthy.
    #[serde(default)]
    pub pending_version: Option<String>,
    /// The version it replaced.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// Where the pending version was installed (the running binary's path).
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// The previous binary kept for rollback.
    #[serde(default)]
    pub previous_binary: Option<PathBuf>,
    /// When it was installed, Unix seconds (box clock).
    #[serde(default)]
    pub installed_at: Option<i64>,
    /// Starts of the pending version so far.
    #[serde(default)]
    pub attempts: u32,
    /// The service start (`INVOCATION_ID`) counted last.
    #[serde(default)]
    pub invocation: Option<String>,
    /// Versions rolled back on this box: never installed again automatically.
    #[serde(default)]
    pub failed_versions: Vec<String>,
    /// The last thing that happened, for `update check` and `status`
    /// (`<UTC time> <text>`).
    #[serde(default)]
    pub last_event: Option<String>,
}

impl UpdateState {
    /// Reads the file; a missing file is the default state.
    ///
    /// Errors: unreadable or unparsable file.
    pub fn load(path: &Path) -> Result<UpdateState, StateError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpdateState::default()),
            Err(source) => Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_atomic(path, &json, 0o644).map_err(|source| StateError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The blacklist, parsed (unparsable entries are skipped).
    pub fn failed(&self) -> Vec<Version> {
        self.failed_versions
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// Sets [`UpdateState::last_event`] with the current UTC time.
    pub fn event(&mut self, text: impl AsRef<str>) {
        self.last_event = Some(format!("{} {}", crate::time::now_utc(), text.as_ref()));
    }

    /// Forgets the pending install (confirmed, or did not take).
    pub fn clear_pending(&mut self) {
        self.pending_version = None;
        self.previous_version = None;
        self.binary = None;
        self.installed_at = None;
        self.attempts = 0;
        self.invocation = None;
    }
}

pub use crate::files::{sync_dir, write_atomic};

/// The device id: 32 random hex digits, created once in `path` and kept
/// for the life of the box (the staged-rollout bucket derives from it).
///
/// Errors: the file cannot be read or created.
pub fn device_id(path: &Path) -> std::io::Result<String> {
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id: String = {
        use rand::RngExt;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    };
    write_atomic(path, format!("{id}\n").as_bytes(), 0o644)?;
    Ok(id)
}

/// This start of the service: systemd's `INVOCATION_ID` (the same for
/// `ExecStartPre=` and `ExecStart=`, new at every restart), else an id
/// unique to this process.
pub fn invocation_id() -> String {
    match std::env::var("INVOCATION_ID") {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => format!(
            "pid-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ),
    }
}

/// What a start must do about a pending install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Nothing pending.
    Normal,
    /// This start runs the pending version: confirm it once healthy, roll
    /// back if not confirmed in time.
    Pending(String),
    /// The pending version never got installed (the rename did not happen):
    /// forget it, nothing failed.
    DidNotTake(String),
    /// The pending version was started before and never confirmed: roll
    /// back to the previous binary and blacklist it.
    RollBack(String),
}

/// The start bookkeeping (pure; the caller saves the state when it
/// changed). `running` is the version of the binary doing it, `None` when
/// it is not the service's binary (`update boot-check` run by the previous
/// binary from `ExecStartPre=`).
pub fn boot_step(state: &mut UpdateState, invocation: &str, running: Option<&str>) -> Boot {
    let Some(pending) = state.pending_version.clone() else {
        return Boot::Normal;
    };
    if state.invocation.as_deref() == Some(invocation) {
        // Already counted for this start (by ExecStartPre=).
        return match running {
            Some(r) if r != pending => Boot::DidNotTake(pending),
            _ => Boot::Pending(pending),
        };
    }
    if state.attempts >= 1 {
        return Boot::RollBack(pending);
    }
    if let Some(r) = running
        && r != pending
    {
        return Boot::DidNotTake(pending);
    }
    state.attempts += 1;
    state.invocation = Some(invocation.to_string());
    Boot::Pending(pending)
}

/// An exclusive lock on `path` for as long as the value lives (daemon and
/// CLI never install at the same time).
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

impl Lock {
    /// Takes the lock without waiting.
    ///
    /// Errors: `WouldBlock` when another process holds it; I/O.
    pub fn try_take(path: &Path) -> std::io::Result<Lock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Lock(f)),
            Err(fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "held by another process",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn pending(attempts: u32, invocation: Option<&str>) -> UpdateState {
        UpdateState {
            pending_version: Some("0.2.0".into()),
            previous_version: Some("0.1.0".into()),
            attempts,
            invocation: invocation.map(String::from),
            ..Default::default()
        }
    }

    /// (state, invocation, running) → (decision, attempts after).
    #[test]
    fn start_bookkeeping() {
        let cases: Vec<(&str, UpdateState, &str, Option<&str>, Boot, u32)> = vec![
            (
                "nothing pending",
                UpdateState::default(),
                "A",
                Some("0.1.0"),
                Boot::Normal,
                0,
            ),
            (
                "first start, counted by ExecStartPre",
                pending(0, None),
                "A",
                None,
                Boot::Pending("0.2.0".into()),
                1,
            ),
            (
                "same start, the new binary itself",
                pending(1, Some("A")),
                "A",
                Some("0.2.0"),
                Boot::Pending("0.2.0".into()),
                1,
            ),
            (
                "first start without ExecStartPre",
                pending(0, None),
                "A",
                Some("0.2.0"),
                Boot::Pending("0.2.0".into()),
                1,
            ),
            (
                "second start: it crashed",
                pending(1, Some("A")),
                "B",
                None,
                Boot::RollBack("0.2.0".into()),
                1,
            ),
            (
                "second start seen by the new binary",
                pending(1, Some("A")),
                "B",
                Some("0.2.0"),
                Boot::RollBack("0.2.0".into()),
                1,
            ),
            (
                "the rename never happened",
                pending(0, None),
                "A",
                Some("0.1.0"),
                Boot::DidNotTake("0.2.0".into()),
                0,
            ),
            (
                "…seen after ExecStartPre counted it",
                pending(1, Some("A")),
                "A",
                Some("0.1.0"),
                Boot::DidNotTake("0.2.0".into()),
                1,
            ),
        ];
        for (name, mut st, inv, running, want, attempts) in cases {
            assert_eq!(boot_step(&mut st, inv, running), want, "{name}");
            assert_eq!(st.attempts, attempts, "{name}");
        }
    }

    #[test]
    fn state_round_trips_atomically_and_tolerates_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-state.json");
        assert_eq!(UpdateState::load(&path).unwrap(), UpdateState::default());
        let mut st = pending(1, Some("A"));
        st.failed_versions.push("0.1.5".into());
        st.save(&path).unwrap();
        assert_eq!(UpdateState::load(&path).unwrap(), st);
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A newer binary's extra field does not break an older reader.
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        v["added_later"] = serde_json::json!(true);
        fs::write(&path, v.to_string()).unwrap();
        assert_eq!(UpdateState::load(&path).unwrap(), st);
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            UpdateState::load(&path),
            Err(StateError::Parse { .. })
        ));
    }

    #[test]
    fn the_device_id_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device-id");
        let a = device_id(&path).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(device_id(&path).unwrap(), a);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), a);
    }

    #[test]
    fn the_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update.lock");
        let first = Lock::try_take(&path).unwrap();
        assert_eq!(
            Lock::try_take(&path).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        drop(first);
        Lock::try_take(&path).unwrap();
    }
}

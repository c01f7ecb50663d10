//! `zenchef-edge self-test [--store PATH]` (hidden): proves that this build
//! of the binary can run its store on this machine — open (create),
//! migrate, write with group commit, read back through the store thread and
//! through a second, read-only connection (so the value is on disk, not
//! only in a cache).
//!
//! It is what CI runs under `qemu-aarch64-static` on the cross-built
//! binary and what the image build runs in the arm64 chroot: SQLite is
//! bundled C code compiled for the target, so "it links" is not "it
//! works". It needs no configuration file.
//!
//! Without `--store`, it works on a fresh file in a new temporary directory
//! that is removed afterwards. With `--store PATH` it opens that store as
//! the daemon would (a corrupt file is moved aside, exactly as at daemon
//! start) and leaves no trace in it: the probe key is deleted again.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::outbox::{self, Store, StoreError, migrations, store};

/// `kv` key written and deleted by the self-test.
const PROBE_KEY: &str = "self_test.probe";

/// What went wrong; each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// No temporary directory could be made for the default store.
    #[error("cannot create a temporary directory in {dir}: {source}")]
    TempDir {
        /// The parent directory (`$TMPDIR` or `/tmp`).
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Opening (creating, migrating) the store failed.
    #[error("open: {0}")]
    Open(#[source] StoreError),
    /// The store's schema version is not the one this binary migrates to.
    #[error("migrate: schema version {found}, expected {expected}")]
    Schema {
        /// Migrations applied, found after opening.
        found: i64,
        /// [`migrations::KNOWN`].
        expected: i64,
    },
    /// The write (group commit) failed.
    #[error("write: {0}")]
    Write(#[source] StoreError),
    /// Reading back failed or gave another value.
    #[error("read back ({via}): {problem}")]
    ReadBack {
        /// `store thread` or `read-only connection`.
        via: &'static str,
        /// What was wrong.
        problem: String,
    },
}

/// What a successful self-test saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The SQLite file used.
    pub store: PathBuf,
    /// Schema version after migration.
    pub schema: i64,
    /// The value written and read back.
    pub probe: String,
}

/// Runs the self-test and prints one line; answers the exit code (0 ok).
///
/// Errors: every failure is a [`SelfTestError`] naming its step; the
/// caller prints it and exits 1.
pub fn run(store_path: Option<&Path>) -> Result<i32, SelfTestError> {
    let report = match store_path {
        Some(p) => check(p)?,
        None => {
            let base = std::env::temp_dir();
            let dir = make_temp_dir(&base).map_err(|source| SelfTestError::TempDir {
                dir: base.clone(),
                source,
            })?;
            let result = check(&dir.join("self-test.db"));
            let _ = std::fs::remove_dir_all(&dir);
            result?
        }
    };
    println!(
        "self-test ok: store {} opened, schema v{}, wrote and read back {:?} ({})",
        report.store.display(),
        report.schema,
        report.probe,
        crate::LONG_VERSION
    );
    Ok(0)
}

/// Open, migrate, write, read back (twice), delete the probe.
pub fn check(path: &Path) -> Result<Report, SelfTestError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SelfTestError::Runtime)?;
    rt.block_on(async {
        let (store, _outcome) = Store::open(path).map_err(SelfTestError::Open)?;
        let expected = migrations::KNOWN;
        let found = store.schema_applied().await.map_err(SelfTestError::Open)?;
        if found != expected {
            return Err(SelfTestError::Schema { found, expected });
        }

        let probe = format!("{}-{}", std::process::id(), unix_nanos());
        let value = probe.clone();
        store
            .set_kv_value(PROBE_KEY, value)
            .await
            .map_err(SelfTestError::Write)?;

        let via_thread = store
            .kv_value(PROBE_KEY)
            .await
            .map_err(|e| SelfTestError::ReadBack {
                via: "store thread",
                problem: e.to_string(),
            })?;
        expect(via_thread.as_deref(), &probe, "store thread")?;

        let via_disk = store::open_read_only(path)
            .and_then(|c| outbox::kv_get(&c, PROBE_KEY))
            .map_err(|e| SelfTestError::ReadBack {
                via: "read-only connection",
                problem: e.to_string(),
            })?;
        expect(via_disk.as_deref(), &probe, "read-only connection")?;

        store
            .delete_kv_value(PROBE_KEY)
            .await
            .map_err(SelfTestError::Write)?;
        Ok(Report {
            store: path.to_path_buf(),
            schema: found,
            probe,
        })
    })
}

fn expect(got: Option<&str>, want: &str, via: &'static str) -> Result<(), SelfTestError> {
    if got == Some(want) {
        Ok(())
    } else {
        Err(SelfTestError::ReadBack {
            via,
            problem: format!("expected {want:?}, got {got:?}"),
        })
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A new private directory under `base` (no extra dependency for one dir).
fn make_temp_dir(base: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for attempt in 0..16u32 {
        let dir = base.join(format!(
            "zenchef-edge-self-test-{}-{}-{attempt}",
            std::process::id(),
            unix_nanos()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_store_passes_and_keeps_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let report = check(&path).unwrap();
        assert_eq!(report.schema, migrations::KNOWN);
        let conn = store::open_read_only(&path).unwrap();
        assert_eq!(outbox::kv_get(&conn, PROBE_KEY).unwrap(), None);
    }

    #[test]
    fn an_existing_store_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        check(&path).unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            outbox::kv_set(&conn, "device_id", "box-1").unwrap();
        }
        check(&path).unwrap();
        let conn = store::open_read_only(&path).unwrap();
        assert_eq!(
            outbox::kv_get(&conn, "device_id").unwrap().as_deref(),
            Some("box-1")
        );
    }

    #[test]
    fn an_unwritable_place_is_an_open_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        // A directory cannot be created under a regular file.
        let err = check(&file.join("sub").join("agent.db")).unwrap_err();
        assert!(matches!(err, SelfTestError::Open(_)), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA user_version = 999;").unwrap();
        }
        let err = check(&path).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}

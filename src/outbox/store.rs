//! The SQLite store: one file, one writer thread, group commit.
//!
//! Every part of the agent talks to SQLite through [`Store::write`] (or
//! [`Store::read`]), which sends a closure to the store thread. The thread
//! takes every job waiting in its queue, runs them in **one** transaction
//! (each inside its own savepoint, so one failing job does not undo the
//! others — except after an error on which SQLite abandons the whole
//! transaction, such as a full disk: then every job of the batch fails and
//! nothing of it is kept), commits with `synchronous=FULL`, and only then
//! answers each caller. A caller therefore never sees `Ok` for something that is not on
//! disk: intake acknowledges MQTT messages after that `Ok` (ARCHITECTURE.md,
//! "the one rule").
//!
//! rusqlite is blocking, so it never runs on the async workers (STYLE.md §2).
//! Read-only access from another process (`zenchef-edge status`) goes
//! through [`open_read_only`]; WAL mode makes that safe while the daemon
//! writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::migrations;

/// Most jobs run in one transaction (bounds the latency of a commit).
const MAX_JOBS_PER_COMMIT: usize = 1024;

/// What went wrong with the store.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// The file could not be opened, created or migrated.
    #[error("cannot open the store {path}: {message}")]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// The filesystem holding the store is full (SQLITE_FULL); nothing of
    /// the transaction was kept.
    #[error("the store's disk is full: {0}")]
    DiskFull(String),
    /// The commit failed for another reason; nothing of the transaction was kept.
    #[error("cannot commit to the store: {0}")]
    Commit(String),
    /// A statement of this job failed; other jobs of the batch were kept.
    #[error("store query failed: {0}")]
    Query(String),
    /// The store thread has stopped (shutdown).
    #[error("the store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Query(e.to_string())
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Query(format!("stored JSON: {e}"))
    }
}

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job: given the connection (or `None` when the transaction could not
/// even begin), runs and says whether it succeeded, plus how to answer once
/// the commit's fate is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

/// Handle to the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Job>,
    path: Arc<PathBuf>,
}

/// What [`Store::open`] found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The file was there and healthy (or new).
    Opened,
    /// The file was unreadable or corrupt: it was moved aside to the given
    /// path (kept for a technician) and a fresh store was created.
    MovedAside(PathBuf),
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `path` and
    /// starts its thread.
    ///
    /// A file that is not a database or fails `PRAGMA quick_check` is
    /// renamed to `<path>.corrupt-<unix seconds>` and replaced by a fresh
    /// store; the outcome says so, and the caller logs it loudly (issue:
    /// "corrupt store file at start", no crash loop).
    ///
    /// Errors: [`StoreError::Open`] when the directory is not writable or
    /// the schema is newer than this binary knows.
    pub fn open(path: &Path) -> Result<(Store, OpenOutcome), StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let mut outcome = OpenOutcome::Opened;
        let conn = match open_checked(path) {
            Ok(c) => c,
            Err(OpenFail::Corrupt(why)) => {
                let aside = move_aside(path)?;
                error!(
                    store = %path.display(),
                    moved_to = %aside.display(),
                    "the store file is corrupt ({why}); it was moved aside for a technician and a \
                     fresh store was started: events that were queued in it are NOT lost but are \
                     no longer delivered automatically"
                );
                outcome = OpenOutcome::MovedAside(aside);
                open_checked(path).map_err(|e| StoreError::Open {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            Err(OpenFail::Other(message)) => {
                return Err(StoreError::Open {
                    path: path.to_path_buf(),
                    message,
                });
            }
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || store_thread(conn, rx))
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot start the store thread: {e}"),
            })?;
        Ok((
            Store {
                tx,
                path: Arc::new(path.to_path_buf()),
            },
            outcome,
        ))
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the next group transaction and answers after the
    /// commit. `Err` from `f` rolls back only this job's savepoint.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => f(conn),
                None => Err(StoreError::Commit("the transaction could not begin".into())),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_err| {
                let result = match (result, commit_err) {
                    (Ok(_), Some(e)) => Err(e.clone()),
                    (r, _) => r,
                };
                let _ = reply_tx.send(result);
            });
            (ok, reply)
        });
        self.tx.send(job).map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Same as [`Store::write`]; a name for jobs that only read (they still
    /// run on the store thread, so they see every committed write).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(f).await
    }
}

enum OpenFail {
    Corrupt(String),
    Other(String),
}

impl std::fmt::Display for OpenFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFail::Corrupt(m) | OpenFail::Other(m) => f.write_str(m),
        }
    }
}

fn classify(e: rusqlite::Error) -> OpenFail {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            OpenFail::Corrupt(e.to_string())
        }
        _ => OpenFail::Other(e.to_string()),
    }
}

fn open_checked(path: &Path) -> Result<Connection, OpenFail> {
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    // journal_mode answers a row; a corrupt file fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFail::Other(format!(
            "cannot switch to WAL (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(classify)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(OpenFail::Corrupt(format!("quick_check: {check}")));
    }
    migrations::migrate(&conn).map_err(|e| match e {
        migrations::MigrateError::TooNew { found, known } => OpenFail::Other(format!(
            "the store's schema version {found} is newer than this binary knows ({known}); \
             refusing to touch it (a rollback must keep migrations compatible)"
        )),
        migrations::MigrateError::Sql(e) => classify(e),
    })?;
    Ok(conn)
}

fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    std::fs::rename(path, &aside).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: format!("corrupt, and cannot move it aside: {e}"),
    })?;
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
        }
    }
    Ok(aside)
}

fn store_thread(conn: Connection, rx: std_mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run_batch(&conn, jobs);
    }
    info!("store thread stopped");
}

fn run_batch(conn: &Connection, jobs: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        warn!("cannot begin a store transaction: {err}");
        for job in jobs {
            let (_, reply) = job(None);
            reply(Some(&err));
        }
        return;
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    let mut rolled_back = false;
    for job in jobs.by_ref() {
        let savepoint = conn.execute_batch("SAVEPOINT job").is_ok();
        let (ok, reply) = job(Some(conn));
        replies.push(reply);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back after this job's
            // error (SQLITE_FULL, I/O error): the jobs before it are undone,
            // and a job run now would commit on its own while its caller is
            // told it failed. Stop here; everyone of this batch gets the
            // error, and nothing of theirs is kept.
            rolled_back = true;
            break;
        }
        if savepoint {
            if !ok {
                // Undo this job's partial writes only; the batch goes on.
                let _ = conn.execute_batch("ROLLBACK TO job");
            }
            let _ = conn.execute_batch("RELEASE job");
        }
    }
    let commit_err = if rolled_back {
        Some(StoreError::Commit(
            "the transaction was rolled back after a job's error (disk full or I/O error); \
             nothing of it was kept"
                .into(),
        ))
    } else {
        match conn.execute_batch("COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Some(match StoreError::from(e) {
                    StoreError::DiskFull(m) => StoreError::DiskFull(m),
                    other => StoreError::Commit(other.to_string()),
                })
            }
        }
    };
    for reply in replies {
        reply(commit_err.as_ref());
    }
    if let Some(err) = &commit_err
        && rolled_back
    {
        // The jobs that did not run: answered without touching the file.
        for job in jobs {
            let (_, reply) = job(None);
            reply(Some(err));
        }
    }
}

/// Opens the store read-only from another process (the CLI). Never creates
/// the file, never migrates.
///
/// Errors: the SQLite message with the path when the file is missing or
/// unreadable.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(conn)
}

/// Opens the store read-write from another process (CLI commands that
/// queue a request for the daemon, e.g. `outbox retry`). Waits up to 5 s
/// for the daemon's transaction.
pub fn open_for_cli(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            message: "no such file (has the agent ever run with this configuration?)".into(),
        });
    }
    let conn = Connection::open(path).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(StoreError::from)?;
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(StoreError::from)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(size: usize) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO t(x) VALUES (zeroblob(?1))", [size as i64])?;
            Ok(())
        }
    }

    /// Regression (disk-full suite): SQLite rolls the whole transaction back
    /// when a statement hits SQLITE_FULL. The jobs after it in the batch then
    /// ran outside any transaction — each committing on its own — while
    /// their callers were told they had failed. Now the batch stops there:
    /// every job of it fails, and nothing of a failed job is kept.
    #[tokio::test]
    async fn a_job_that_fills_the_disk_fails_its_batch_and_nothing_failed_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE t(x BLOB)")?;
                // A full disk, deterministically: at most 40 pages.
                let _: i64 = c.query_row("PRAGMA max_page_count = 40", [], |r| r.get(0))?;
                Ok(())
            })
            .await
            .unwrap();
        // Hold the store thread so that the next three jobs form one batch.
        let s2 = store.clone();
        let hold = tokio::spawn(async move {
            s2.write(|_| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (a, b, c) = tokio::join!(
            store.write(insert(100)),
            store.write(insert(1_000_000)),
            store.write(insert(100)),
        );
        hold.await.unwrap().unwrap();
        assert!(
            matches!(b, Err(StoreError::DiskFull(_))),
            "the big job fails with DiskFull: {b:?}"
        );
        assert!(
            a.is_err() && c.is_err(),
            "the whole batch failed: {a:?} {c:?}"
        );
        let rows: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 0, "a job reported failed must have left nothing");
        // The store goes on once there is room.
        store.write(insert(100)).await.unwrap();
        let rows: i64 = store
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
}

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
//! disk: intake acknowledges MQTT messages after that `Ok` (docs/architecture.md,
//! "the one rule").
//!
//! rusqlite is blocking, so it never runs on the async workers (a thread of its own).
//! Read-only access from another process (`zenchef-edge status`) goes
//! through [`open_read_only`]; WAL mode makes that safe while the daemon
//! writes.
//!
//! Opening is bounded whatever the file's size (docs/decisions.md, "Years
//! under the counter"): the open reads the header and the schema and runs
//! the migrations, nothing that scans the file. The full check
//! (`PRAGMA quick_check`) runs after the daemon is ready, on a read-only
//! connection of its own ([`integrity_check`]); when it fails, the daemon
//! records it beside the store ([`mark_corrupt`]) and stops to be
//! restarted, and the next open moves the file aside. Jobs that must run
//! outside the group transaction (a WAL checkpoint, `VACUUM`) go through
//! [`Store::maintenance`].

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
/// `PRAGMA journal_size_limit`: after a checkpoint the `-wal` file is cut
/// back to this size (bytes), so a burst (a backlog, a retention pass)
/// does not leave a large WAL on the SD card for ever.
pub const JOURNAL_SIZE_LIMIT: i64 = 8 << 20;
/// Suffix of the file that records a failed integrity check, beside the
/// store (`agent.db.check-failed`): the next open moves the store aside.
pub const CHECK_FAILED_SUFFIX: &str = ".check-failed";

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
        /// SQLite's error code, when SQLite refused (what a caller decides
        /// on, e.g. the exit code: busy, read-only).
        code: Option<rusqlite::ErrorCode>,
    },
    /// The file cannot be opened for a reason of the box (permissions, a
    /// read-only or full filesystem, I/O errors of the card, another
    /// process holding it): a restart does not fix it; the daemon waits
    /// and tries again ([`Unavailable`] says which).
    #[error("cannot open the store {path}: {cause}: {message}")]
    Unavailable {
        /// The SQLite file.
        path: PathBuf,
        /// The class of the problem.
        cause: Unavailable,
        /// The OS's or SQLite's message.
        message: String,
    },
    /// A newer release migrated the store in a way this binary cannot use
    /// (docs/decisions.md, "Years under the counter"): the daemon exits 78
    /// and is not restarted.
    #[error(
        "the store {path} has schema version {applied} (usable from schema {min_version} on), \
         newer than this binary knows (schema {known}): it was migrated by a newer release; run \
         a release that knows schema {min_version} or later, the store is left untouched"
    )]
    Incompatible {
        /// The SQLite file.
        path: PathBuf,
        /// Migrations applied to it.
        applied: i64,
        /// The oldest schema version that can use it.
        min_version: i64,
        /// Migrations this binary knows.
        known: i64,
    },
    /// The filesystem holding the store is full (SQLITE_FULL); nothing of
    /// the transaction was kept.
    #[error("the store's disk is full: {0}")]
    DiskFull(String),
    /// The commit failed for another reason; nothing of the transaction was kept.
    #[error("cannot commit to the store: {message}")]
    Commit {
        /// What failed.
        message: String,
        /// SQLite's error code, when SQLite refused the commit.
        code: Option<rusqlite::ErrorCode>,
    },
    /// A statement of this job failed; other jobs of the batch were kept.
    /// Carries SQLite's error (shared: a batch's error answers every job).
    #[error("store query failed: {0}")]
    Query(#[source] Arc<rusqlite::Error>),
    /// A JSON value kept in the store (a plan, a payload) could not be
    /// written or read back; other jobs of the batch were kept.
    #[error("store query failed: stored JSON: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// The store thread has stopped (shutdown).
    #[error("the store is closed")]
    Closed,
}

/// Why a store could not be opened, when a restart would not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The file or its directory is not the agent's to read or write.
    PermissionDenied,
    /// The filesystem is mounted read-only.
    ReadOnly,
    /// The filesystem is full.
    DiskFull,
    /// The card or disk answered with an I/O error.
    Io,
    /// Another process holds the store locked.
    Busy,
}

impl Unavailable {
    /// What a technician should look at.
    pub fn hint(self) -> &'static str {
        match self {
            Unavailable::PermissionDenied => {
                "the store or its directory belongs to another user (a command run as root?): \
                 chown -R zenchef-edge: /var/lib/zenchef-edge"
            }
            Unavailable::ReadOnly => {
                "the filesystem is read-only (an overlay root, or remounted after errors): \
                 check `mount` and the kernel log"
            }
            Unavailable::DiskFull => "the filesystem is full: df -h /var/lib/zenchef-edge",
            Unavailable::Io => {
                "the card or disk returns I/O errors (failing SD card?): check the kernel log \
                 (dmesg) and plan to replace the card"
            }
            Unavailable::Busy => {
                "another process holds the store (a second agent, or a command left waiting)"
            }
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unavailable::PermissionDenied => "permission denied",
            Unavailable::ReadOnly => "read-only filesystem",
            Unavailable::DiskFull => "disk full",
            Unavailable::Io => "I/O error",
            Unavailable::Busy => "locked by another process",
        })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            StoreError::DiskFull(e.to_string())
        } else {
            StoreError::Query(Arc::new(e))
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Json(Arc::new(e))
    }
}

impl StoreError {
    /// SQLite's primary code of a failed statement (`None` for the other
    /// variants): lets callers sort errors without reading their text.
    pub fn sqlite_code(&self) -> Option<ErrorCode> {
        match self {
            StoreError::Query(e) => e.sqlite_error_code(),
            _ => None,
        }
    }

    /// [`StoreError::sqlite_code`], sorted ([`SqliteKind::Other`] for
    /// the other variants).
    pub fn sqlite_kind(&self) -> SqliteKind {
        SqliteKind::of_code(self.sqlite_code())
    }
}

/// SQLite's primary error code, sorted for callers that choose what to do
/// about it (an exit code, a retry) without naming SQLite's own types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteKind {
    /// `SQLITE_BUSY`, `SQLITE_LOCKED`: another connection holds the lock.
    Busy,
    /// `SQLITE_READONLY`.
    ReadOnly,
    /// `SQLITE_PERM`.
    PermissionDenied,
    /// `SQLITE_CANTOPEN`.
    CannotOpen,
    /// `SQLITE_NOTADB`, `SQLITE_CORRUPT`, `SQLITE_IOERR`, `SQLITE_FULL`:
    /// the file or its disk.
    Broken,
    /// Another code, or none.
    Other,
}

impl SqliteKind {
    /// The kind of an optional code (as kept in [`StoreError::Open`] and
    /// [`StoreError::Commit`]).
    pub fn of_code(code: Option<ErrorCode>) -> SqliteKind {
        use ErrorCode as C;
        match code {
            Some(C::DatabaseBusy | C::DatabaseLocked) => SqliteKind::Busy,
            Some(C::ReadOnly) => SqliteKind::ReadOnly,
            Some(C::PermissionDenied) => SqliteKind::PermissionDenied,
            Some(C::CannotOpen) => SqliteKind::CannotOpen,
            Some(C::NotADatabase | C::DatabaseCorrupt | C::SystemIoFailure | C::DiskFull) => {
                SqliteKind::Broken
            }
            _ => SqliteKind::Other,
        }
    }

    /// The kind of `e` when it is a SQLite error (`None`: another error).
    pub fn of_error(e: &(dyn std::error::Error + 'static)) -> Option<SqliteKind> {
        e.downcast_ref::<rusqlite::Error>()
            .map(|e| SqliteKind::of_code(e.sqlite_error_code()))
    }
}

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job: given the connection (or `None` when the transaction could not
/// even begin), runs and says whether it succeeded, plus how to answer once
/// the commit's fate is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;
/// A job run outside any transaction (checkpoint, `VACUUM`).
type RawJob = Box<dyn FnOnce(&Connection) + Send>;

enum Msg {
    Job(Job),
    Raw(RawJob),
}

/// Handle to the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Msg>,
    path: Arc<PathBuf>,
}

/// What [`Store::open`] found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenOutcome {
    /// The file was there and healthy (or new).
    Opened,
    /// The file was unreadable or corrupt (or its last integrity check
    /// failed): it was moved aside to the given path (kept for a
    /// technician) and a fresh store was created.
    MovedAside(PathBuf),
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `path` and
    /// starts its thread. Bounded in time whatever the file's size: the
    /// full check runs later ([`integrity_check`]).
    ///
    /// A file that is not a database, whose schema cannot be read, or
    /// whose last integrity check failed ([`mark_corrupt`]) is renamed to
    /// `<path>.corrupt-<unix seconds>` and replaced by a fresh store; the
    /// outcome says so, and the caller logs it loudly (no crash loop).
    /// A store migrated additively by a newer release is used as it is
    /// (a WARN says so).
    ///
    /// Errors: [`StoreError::Unavailable`] (permissions, read-only or full
    /// filesystem, I/O errors, locked: a restart would not help),
    /// [`StoreError::Incompatible`] (a newer release raised the schema's
    /// floor above this binary), [`StoreError::Open`] otherwise.
    pub fn open(path: &Path) -> Result<(Store, OpenOutcome), StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                let message = format!("cannot create directory {}: {e}", dir.display());
                match io_cause(&e) {
                    Some(cause) => StoreError::Unavailable {
                        path: path.to_path_buf(),
                        cause,
                        message,
                    },
                    None => StoreError::Open {
                        path: path.to_path_buf(),
                        message,
                        code: None,
                    },
                }
            })?;
        }
        let mut outcome = OpenOutcome::Opened;
        let conn = if let Some(aside) = interrupted_recovery(path) {
            // A start was stopped (killed, power cut) while it recovered
            // the moved-aside file into the new one: that new store is
            // incomplete and nobody used it; it is made again.
            error!(
                store = %path.display(),
                moved_to = %aside.display(),
                "the recovery of the damaged store was interrupted; it runs again into a fresh \
                 store"
            );
            for ext in ["", "-wal", "-shm", CHECK_FAILED_SUFFIX] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            let conn = open_checked(path).map_err(|e| e.into_error(path))?;
            recover_and_report(&conn, path, &aside)?;
            outcome = OpenOutcome::MovedAside(aside);
            conn
        } else {
            let marked = take_marker(path);
            let first = match marked {
                Some(why) => Err(OpenFail::Corrupt(format!(
                    "its integrity check failed while the agent ran: {why}"
                ))),
                None => open_checked(path),
            };
            match first {
                Ok(c) => c,
                Err(OpenFail::Corrupt(why)) => {
                    let aside = move_aside(path)?;
                    error!(
                        store = %path.display(),
                        moved_to = %aside.display(),
                        "the store file is corrupt ({why}); it was moved aside for a technician \
                         and a fresh store is started with every row that can still be read from \
                         it"
                    );
                    let conn = open_checked(path).map_err(|e| e.into_error(path))?;
                    recover_and_report(&conn, path, &aside)?;
                    outcome = OpenOutcome::MovedAside(aside);
                    conn
                }
                Err(e) => return Err(e.into_error(path)),
            }
        };
        let (tx, rx) = std_mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || store_thread(conn, rx))
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                message: format!("cannot start the store thread: {e}"),
                code: None,
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
                None => Err(StoreError::Commit {
                    message: "the transaction could not begin".into(),
                    code: None,
                }),
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
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the store thread **outside** any transaction, between
    /// two group commits: for what SQLite refuses inside one (`PRAGMA
    /// wal_checkpoint`, `VACUUM`). Intake and deliveries wait while it
    /// runs: keep it short, and off-peak.
    pub async fn maintenance<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: RawJob = Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        });
        self.tx
            .send(Msg::Raw(job))
            .map_err(|_| StoreError::Closed)?;
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
    Unavailable(Unavailable, String),
    Incompatible {
        applied: i64,
        min_version: i64,
        known: i64,
    },
    Other(String),
}

impl OpenFail {
    fn into_error(self, path: &Path) -> StoreError {
        let path = path.to_path_buf();
        match self {
            OpenFail::Corrupt(message) | OpenFail::Other(message) => StoreError::Open {
                path,
                message,
                code: None,
            },
            OpenFail::Unavailable(cause, message) => StoreError::Unavailable {
                path,
                cause,
                message,
            },
            OpenFail::Incompatible {
                applied,
                min_version,
                known,
            } => StoreError::Incompatible {
                path,
                applied,
                min_version,
                known,
            },
        }
    }
}

impl std::fmt::Display for OpenFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFail::Corrupt(m) | OpenFail::Other(m) => f.write_str(m),
            OpenFail::Unavailable(c, m) => write!(f, "{c}: {m}"),
            OpenFail::Incompatible {
                applied,
                min_version,
                known,
            } => write!(
                f,
                "schema {applied} (usable from {min_version}), this binary knows {known}"
            ),
        }
    }
}

/// The class of an OS error a restart would not fix.
fn io_cause(e: &std::io::Error) -> Option<Unavailable> {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => Some(Unavailable::PermissionDenied),
        K::ReadOnlyFilesystem => Some(Unavailable::ReadOnly),
        K::StorageFull | K::QuotaExceeded => Some(Unavailable::DiskFull),
        _ if e.raw_os_error() == Some(libc::EIO) => Some(Unavailable::Io),
        _ => None,
    }
}

/// Sorts an SQLite error met while opening: a damaged file is moved
/// aside; a problem of the box (permissions, read-only or full
/// filesystem, I/O error, lock) is waited out; the rest is reported.
fn classify(e: rusqlite::Error) -> OpenFail {
    let message = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            OpenFail::Corrupt(message)
        }
        Some(ErrorCode::PermissionDenied) | Some(ErrorCode::CannotOpen) => {
            OpenFail::Unavailable(Unavailable::PermissionDenied, message)
        }
        Some(ErrorCode::ReadOnly) => OpenFail::Unavailable(Unavailable::ReadOnly, message),
        Some(ErrorCode::DiskFull) => OpenFail::Unavailable(Unavailable::DiskFull, message),
        Some(ErrorCode::SystemIoFailure) => OpenFail::Unavailable(Unavailable::Io, message),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            OpenFail::Unavailable(Unavailable::Busy, message)
        }
        _ => OpenFail::Other(message),
    }
}

/// `SQLITE_CANTOPEN` says nothing of why: the file's and directory's own
/// access rights tell a permission problem from a read-only filesystem.
fn classify_open(path: &Path, e: rusqlite::Error) -> OpenFail {
    if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) {
        let probe = if path.exists() {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map(drop)
        } else {
            // Can a file be created in its directory? (A fresh temp name,
            // never through a planted link, removed at once.)
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            crate::files::create_temp_beside(&dir.unwrap_or(Path::new(".")).join(".store-probe"))
                .map(|(test, _)| {
                    let _ = std::fs::remove_file(&test);
                })
        };
        if let Err(io) = probe
            && let Some(cause) = io_cause(&io)
        {
            return OpenFail::Unavailable(cause, format!("{e} ({io})"));
        }
        return OpenFail::Other(e.to_string());
    }
    classify(e)
}

fn open_checked(path: &Path) -> Result<Connection, OpenFail> {
    let conn = Connection::open(path).map_err(|e| classify_open(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    // A new file: incremental auto-vacuum, which must be chosen before
    // the first table (and before the WAL switch writes the header), so
    // that retention can give pages back to the filesystem
    // (`PRAGMA incremental_vacuum`). An existing file keeps its mode until
    // retention converts it once (`outbox::retention`).
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(classify)?;
    if pages == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(classify)?;
    }
    // journal_mode answers a row; a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFail::Other(format!(
            "cannot switch to WAL (got {mode})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
         PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT};"
    ))
    .map_err(classify)?;
    match migrations::migrate(&conn) {
        Ok(migrations::Opened::Current(_)) => {}
        Ok(migrations::Opened::Newer { schema, known }) => warn!(
            store = %path.display(),
            "the store was migrated by a newer release (schema {}, usable from schema {}); this \
             binary knows schema {known} and uses it as it is",
            schema.applied, schema.min_version
        ),
        Err(migrations::MigrateError::TooNew {
            applied,
            min_version,
            known,
        }) => {
            return Err(OpenFail::Incompatible {
                applied,
                min_version,
                known,
            });
        }
        Err(migrations::MigrateError::Sql(e)) => return Err(classify(e)),
    }
    Ok(conn)
}

/// What the full check of a store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// `PRAGMA quick_check` answered `ok`.
    Ok,
    /// The file is damaged: SQLite's first findings (at most 10 lines).
    Corrupt(String),
}

/// Runs `PRAGMA quick_check` on a read-only connection of its own (WAL:
/// the daemon's writes go on meanwhile). Blocking; takes a time that
/// grows with the file (about a second per 100 MB on the development
/// machine, more on an SD card): run it on a blocking thread after the
/// daemon is ready.
///
/// Errors: the file cannot be opened or read at all (`SQLITE_CORRUPT` and
/// `SQLITE_NOTADB` are [`Integrity::Corrupt`], not errors).
pub fn integrity_check(path: &Path) -> Result<Integrity, StoreError> {
    let conn = open_read_only(path)?;
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA quick_check(10)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    match run() {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(Integrity::Ok),
        Ok(lines) => Ok(Integrity::Corrupt(lines.join("; "))),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase)
            ) =>
        {
            Ok(Integrity::Corrupt(e.to_string()))
        }
        Err(e) => Err(StoreError::Query(Arc::new(e))),
    }
}

fn marker_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}{CHECK_FAILED_SUFFIX}", path.display()))
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Records beside the store that its integrity check failed (`why`), so
/// that the next [`Store::open`] moves it aside. The record names the
/// file (device and inode): a store a technician put back in its place
/// meanwhile is not moved.
///
/// Errors: the record cannot be written (the caller logs it; the daemon
/// stops all the same).
pub fn mark_corrupt(path: &Path, why: &str) -> std::io::Result<()> {
    let (dev, ino) = file_id(path).unwrap_or((0, 0));
    let body = serde_json::json!({
        "reason": why,
        "dev": dev,
        "ino": ino,
        "at": crate::time::now_utc(),
    });
    crate::files::write_atomic(&marker_path(path), body.to_string().as_bytes(), 0o600)
}

/// The reason of a failed check recorded for this very file (then the
/// record stays until the file is moved aside: a start stopped before that
/// still moves it; a record for another file is removed).
fn take_marker(path: &Path) -> Option<String> {
    let marker = marker_path(path);
    let text = std::fs::read_to_string(&marker).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let same = file_id(path)
        .is_some_and(|(d, i)| v["dev"].as_u64() == Some(d) && v["ino"].as_u64() == Some(i));
    if !same {
        let _ = std::fs::remove_file(&marker);
        warn!(
            store = %path.display(),
            "a failed integrity check was recorded for another file than the store now in place; \
             ignoring it"
        );
        return None;
    }
    Some(v["reason"].as_str().unwrap_or("?").to_string())
}

/// Longest a recovery may take at a start (docs/decisions.md, "A damaged
/// store gives its rows to the new one"): SQLite's recovery reads every
/// page once (0.5 to 1.3 s for a 3 MB store of 4,000 events, debug build,
/// on the development machine: tests/recover.rs); this bounds it on a
/// failing card.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(600);

/// Runs the recovery of a moved-aside store into the new one (not yet
/// used by anyone), telling systemd every few seconds that the start goes
/// on (its start timeout, 60 s, is shorter than a recovery may be) and
/// logging how long it has run.
fn recover_aside(conn: &Connection, aside: &Path) -> super::recover::Recovery {
    info!(
        moved_to = %aside.display(),
        "reading every row that can still be read from the damaged store (SQLite's recovery)"
    );
    super::recover::recover_into(conn, aside, RECOVERY_LIMIT, &mut |ran| {
        info!(
            "recovery of the damaged store: running for {} s",
            ran.as_secs()
        );
        // Two minutes more from now: also covers the copy that follows
        // the last tick.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(120_000_000)]);
    })
}

/// Recovers `aside` into `conn` (the new store at `path`), logs the
/// outcome, and only then forgets the pending recovery
/// ([`RECOVERING_SUFFIX`]): a start stopped before that does it again.
///
/// Errors: the pending record cannot be removed (the agent must not take
/// events into a store the next start would make again).
fn recover_and_report(conn: &Connection, path: &Path, aside: &Path) -> Result<(), StoreError> {
    let recovery = recover_aside(conn, aside);
    if recovery.failed.is_some() {
        error!(
            store = %path.display(),
            moved_to = %aside.display(),
            "STORE NOT RECOVERED: {}; the new store starts empty: the events that were \
             queued in the old one are no longer delivered automatically",
            recovery.summary()
        );
    } else {
        warn!(
            store = %path.display(),
            moved_to = %aside.display(),
            "the damaged store is kept as it was; {}",
            recovery.summary()
        );
    }
    let pending = pending_path(path);
    match std::fs::remove_file(&pending) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Open {
            path: path.to_path_buf(),
            message: format!(
                "recovered, but cannot remove {} (the next start would recover the damaged \
                 store again): {e}",
                pending.display()
            ),
            code: None,
        }),
        _ => Ok(()),
    }
}

/// Suffix of the file that names a moved-aside store whose recovery into
/// the new store is not finished (`agent.db.recovering`, its content the
/// moved-aside file's path). Written before the store is moved aside,
/// removed once the recovery is committed and recorded.
pub const RECOVERING_SUFFIX: &str = ".recovering";

fn pending_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}{RECOVERING_SUFFIX}", path.display()))
}

/// The moved-aside file of a recovery a stopped start left unfinished,
/// when there is one. A record whose move never happened (the store is
/// still in its place, nothing aside) is removed. The old store's
/// `-wal`/`-shm` still beside `path` (stopped between the renames) are
/// moved after it first.
fn interrupted_recovery(path: &Path) -> Option<PathBuf> {
    let pending = pending_path(path);
    let text = std::fs::read_to_string(&pending).ok()?;
    let aside = PathBuf::from(text.trim_end_matches('\n'));
    if text.is_empty() || !aside.exists() {
        let _ = std::fs::remove_file(&pending);
        return None;
    }
    if !path.exists() {
        // The new store was not created yet: what is beside `path` is the
        // old store's.
        for ext in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{ext}", path.display()));
            let to = PathBuf::from(format!("{}{ext}", aside.display()));
            if side.exists() && !to.exists() {
                let _ = std::fs::rename(&side, &to);
            }
        }
    }
    Some(aside)
}

fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    // A name of its own (an interrupted recovery must not take an older
    // file for this one).
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{stamp}-{n}", path.display()));
        n += 1;
    }
    // Said before the move: a start stopped from here until the recovery
    // is recorded does it again (`interrupted_recovery`).
    crate::files::write_atomic(
        &pending_path(path),
        aside.as_os_str().as_encoded_bytes(),
        0o600,
    )
    .map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: format!("corrupt, and cannot record that it is moved aside: {e}"),
        code: None,
    })?;
    std::fs::rename(path, &aside).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: format!("corrupt, and cannot move it aside: {e}"),
        code: None,
    })?;
    // The failed check's record, if any, has done its work.
    let _ = std::fs::remove_file(marker_path(path));
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
        }
    }
    Ok(aside)
}

fn store_thread(conn: Connection, rx: std_mpsc::Receiver<Msg>) {
    let mut next: Option<Msg> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let first = match first {
            Msg::Raw(f) => {
                f(&conn);
                continue;
            }
            Msg::Job(j) => j,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(raw) => {
                    // Runs after this batch's commit, in arrival order.
                    next = Some(raw);
                    break;
                }
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
        Some(StoreError::Commit {
            message: "the transaction was rolled back after a job's error (disk full or I/O \
                      error); nothing of it was kept"
                .into(),
            code: None,
        })
    } else {
        match conn.execute_batch("COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let code = e.sqlite_error_code();
                Some(match StoreError::from(e) {
                    StoreError::DiskFull(m) => StoreError::DiskFull(m),
                    other => StoreError::Commit {
                        message: other.to_string(),
                        code,
                    },
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

/// `PRAGMA data_version`: changes whenever another connection committed
/// to the file since this connection last looked (a CLI's `outbox retry`):
/// the dispatcher's quick rescans skip the queue when it did not change.
pub fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// SQLite refused to open `path`: its message and its code.
fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
        code: e.sqlite_error_code(),
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
    .map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| open_error(path, &e))?;
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
            code: None,
        });
    }
    let conn = Connection::open(path).map_err(|e| open_error(path, &e))?;
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

#[cfg(test)]
mod open_tests {
    use super::*;

    fn sqlite_err(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn open_errors_are_sorted_by_what_fixes_them() {
        use rusqlite::ffi;
        let cases = [
            (ffi::SQLITE_CORRUPT, "corrupt"),
            (ffi::SQLITE_NOTADB, "corrupt"),
            (ffi::SQLITE_READONLY, "read-only filesystem"),
            (ffi::SQLITE_PERM, "permission denied"),
            (ffi::SQLITE_FULL, "disk full"),
            (ffi::SQLITE_IOERR, "I/O error"),
            (ffi::SQLITE_BUSY, "locked by another process"),
            (ffi::SQLITE_MISUSE, "other"),
        ];
        for (code, want) in cases {
            let got = match classify(sqlite_err(code)) {
                OpenFail::Corrupt(_) => "corrupt".to_string(),
                OpenFail::Unavailable(c, _) => c.to_string(),
                OpenFail::Other(_) => "other".to_string(),
                OpenFail::Incompatible { .. } => "incompatible".to_string(),
            };
            assert_eq!(got, want, "code {code}");
        }
        let io = |k| io_cause(&std::io::Error::from(k));
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied),
            Some(Unavailable::PermissionDenied)
        );
        assert_eq!(
            io(std::io::ErrorKind::ReadOnlyFilesystem),
            Some(Unavailable::ReadOnly)
        );
        assert_eq!(
            io(std::io::ErrorKind::StorageFull),
            Some(Unavailable::DiskFull)
        );
        assert_eq!(
            io_cause(&std::io::Error::from_raw_os_error(libc::EIO)),
            Some(Unavailable::Io)
        );
        assert_eq!(io(std::io::ErrorKind::NotFound), None);
    }

    #[tokio::test]
    async fn a_new_store_gives_pages_back_and_bounds_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let (store, _) = Store::open(&path).unwrap();
        let (vacuum, limit): (i64, i64) = store
            .read(|c| {
                Ok((
                    c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?,
                    c.query_row("PRAGMA journal_size_limit", [], |r| r.get(0))?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(vacuum, 2, "incremental auto-vacuum");
        assert_eq!(limit, JOURNAL_SIZE_LIMIT);
        // A burst grows the WAL; a checkpoint outside the transaction
        // (what retention does) cuts it back.
        store
            .write(|c| {
                c.execute_batch(
                    "CREATE TABLE t(x BLOB);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                     INSERT INTO t SELECT randomblob(1000) FROM n;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        assert!(std::fs::metadata(&wal).unwrap().len() > 1_000_000);
        let busy: i64 = store
            .maintenance(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(busy, 0);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        // Jobs before and after a maintenance job keep their order.
        let (a, b, c) = tokio::join!(
            store.write(|c| Ok(c.execute("INSERT INTO t VALUES (x'01')", [])?)),
            store.maintenance(|c| Ok(c.is_autocommit())),
            store.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))?)),
        );
        assert_eq!(a.unwrap(), 1);
        assert!(b.unwrap(), "a maintenance job runs outside any transaction");
        assert_eq!(c.unwrap(), 3001);
    }

    #[tokio::test]
    async fn a_failed_check_moves_the_store_aside_at_the_next_open_only_for_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let (store, _) = Store::open(&path).unwrap();
        store
            .write(|c| crate::outbox::kv_set(c, "k", "v"))
            .await
            .unwrap();
        drop(store);
        assert_eq!(integrity_check(&path).unwrap(), Integrity::Ok);
        mark_corrupt(&path, "quick_check: row 3 missing from index x").unwrap();
        let (store, outcome) = Store::open(&path).unwrap();
        let OpenOutcome::MovedAside(aside) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(aside.exists());
        assert!(!marker_path(&path).exists(), "the record is used once");
        // A new file, given every row that could be read from the old one.
        let v = store.read(|c| crate::outbox::kv_get(c, "k")).await.unwrap();
        assert_eq!(
            v.as_deref(),
            Some("v"),
            "the readable rows are carried over"
        );
        let r = store
            .read(|c| Ok(crate::outbox::recover::last(c)))
            .await
            .unwrap()
            .expect("the recovery is recorded");
        assert_eq!((r.failed, r.unreadable), (None, 0));
        assert_ne!(file_id(&path), file_id(&aside), "a new file");
        drop(store);
        // A record about another file (a technician put a store back):
        // ignored.
        mark_corrupt(&path, "old").unwrap();
        std::fs::rename(&path, dir.path().join("x.db")).unwrap();
        std::fs::copy(dir.path().join("x.db"), &path).unwrap();
        let (_store, outcome) = Store::open(&path).unwrap();
        assert_eq!(outcome, OpenOutcome::Opened);
    }

    #[test]
    fn the_full_check_finds_damaged_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE t(x TEXT PRIMARY KEY, y BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO t SELECT 'k' || i, randomblob(300) FROM n;",
            )
            .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[4096 * 3..4096 * 6] {
            *b = 0x5A;
        }
        std::fs::write(&path, &bytes).unwrap();
        let got = integrity_check(&path).unwrap();
        assert!(matches!(got, Integrity::Corrupt(_)), "{got:?}");
    }

    #[test]
    fn a_store_a_newer_release_made_incompatible_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        drop(Store::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "UPDATE schema_compat SET applied = 9, min_version = 8; PRAGMA user_version = 8;",
            )
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(
            matches!(
                e,
                StoreError::Incompatible {
                    applied: 9,
                    min_version: 8,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("schema version 9 (usable from schema 8 on)")
                && text.contains(&format!("this binary knows (schema {})", migrations::KNOWN)),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "left untouched");
    }
}

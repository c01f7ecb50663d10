//! Exit codes of every command (docs/README-cli.md § "Exit codes"), taken
//! from sysexits(3) where one fits, and the mapping of an error to its code.
//!
//! | code | name | when |
//! |---|---|---|
//! | 0 | success | the command did its job (`status` read the store) |
//! | 1 | failure | a check failed (`doctor`, `tables`), a request was refused (`link`, `outbox retry`, `update apply`) |
//! | 64 | `EX_USAGE` | the command line is wrong (unknown command or flag, missing argument) |
//! | 66 | `EX_NOINPUT` | the store does not exist (the agent never started with this configuration) |
//! | 74 | `EX_IOERR` | a file could not be read or written (a store that is not a database, a full disk) |
//! | 75 | `EX_TEMPFAIL` | try again later: the store or the update lock is busy, the network failed; also the daemon's "restart me" after an update |
//! | 77 | `EX_NOPERM` | permission denied (a file of the state directory, the configuration) |
//! | 78 | `EX_CONFIG` | the configuration file is invalid or unreadable; the store was migrated by a newer release this binary cannot use |

use std::path::Path;

use crate::outbox::StoreError;
use crate::outbox::store::SqliteKind;
use crate::update::UpdateError;

/// Success.
pub const OK: i32 = 0;
/// A check failed or a request was refused.
pub const FAILURE: i32 = 1;
/// `EX_USAGE`: bad command line.
pub const USAGE: i32 = 64;
/// `EX_NOINPUT`: the store does not exist.
pub const NOINPUT: i32 = 66;
/// `EX_UNAVAILABLE`: a service the command needs cannot be reached
/// (`fleet-view`: the fleet broker).
pub const UNAVAILABLE: i32 = 69;
/// `EX_IOERR`: a read or write failed.
pub const IOERR: i32 = 74;
/// `EX_TEMPFAIL`: temporary; try again later.
pub const TEMPFAIL: i32 = 75;
/// `EX_NOPERM`: permission denied.
pub const NOPERM: i32 = 77;
/// `EX_CONFIG`: invalid configuration ([`crate::config::EX_CONFIG`]).
pub const CONFIG: i32 = crate::config::EX_CONFIG;

/// What a store file is like for a reader, found without creating anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAccess {
    /// It exists and this process may open it.
    Present,
    /// No such file.
    Missing,
    /// This process may not read it (or a directory above it).
    PermissionDenied(String),
    /// Something else (a directory, an I/O error).
    Unreadable(String),
}

/// Looks at `path` with `stat` and `open(O_RDONLY)` (no SQLite, nothing
/// created).
pub fn store_access(path: &Path) -> StoreAccess {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return StoreAccess::Missing,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return StoreAccess::PermissionDenied(e.to_string());
        }
        Err(e) => return StoreAccess::Unreadable(e.to_string()),
        Ok(m) if m.is_dir() => return StoreAccess::Unreadable("it is a directory".into()),
        Ok(_) => {}
    }
    match std::fs::File::open(path) {
        Ok(_) => StoreAccess::Present,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            StoreAccess::PermissionDenied(e.to_string())
        }
        Err(e) => StoreAccess::Unreadable(e.to_string()),
    }
}

/// The exit code for an error that ended a command: the first cause in
/// the chain that says more than "failed" decides.
pub fn code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.is::<crate::config::ConfigError>() {
            return CONFIG;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io_code(io);
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return store_code(s);
        }
        if let Some(u) = cause.downcast_ref::<UpdateError>() {
            return update_code(u);
        }
        if let Some(k) = SqliteKind::of_error(cause) {
            return sqlite_code_or(k, FAILURE);
        }
    }
    FAILURE
}

/// [`IOERR`], [`NOPERM`], [`NOINPUT`] or [`TEMPFAIL`] by the error's kind.
pub fn io_code(e: &std::io::Error) -> i32 {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => NOPERM,
        K::NotFound => NOINPUT,
        K::WouldBlock | K::TimedOut | K::Interrupted => TEMPFAIL,
        _ => IOERR,
    }
}

fn store_code(e: &StoreError) -> i32 {
    match e {
        StoreError::Open { path, code, .. } => match store_access(path) {
            StoreAccess::Missing => NOINPUT,
            StoreAccess::PermissionDenied(_) => NOPERM,
            _ => sqlite_code_or(SqliteKind::of_code(*code), IOERR),
        },
        StoreError::Unavailable { cause, .. } => match cause {
            crate::outbox::store::Unavailable::PermissionDenied
            | crate::outbox::store::Unavailable::ReadOnly => NOPERM,
            crate::outbox::store::Unavailable::Busy => TEMPFAIL,
            crate::outbox::store::Unavailable::DiskFull | crate::outbox::store::Unavailable::Io => {
                IOERR
            }
        },
        // A newer release's store this binary must not touch: like a
        // configuration error, a restart does not help (not restarted).
        StoreError::Incompatible { .. } => CONFIG,
        StoreError::DiskFull(_) => IOERR,
        StoreError::Query(_) => match e.sqlite_kind() {
            SqliteKind::Busy => TEMPFAIL,
            SqliteKind::ReadOnly => NOPERM,
            _ => FAILURE,
        },
        StoreError::Commit { code, .. } => sqlite_code_or(SqliteKind::of_code(*code), IOERR),
        StoreError::Json(_) | StoreError::Closed => FAILURE,
    }
}

/// The code SQLite's error code calls for; `otherwise` for another code or
/// none.
fn sqlite_code_or(kind: SqliteKind, otherwise: i32) -> i32 {
    match kind {
        SqliteKind::Busy => TEMPFAIL,
        SqliteKind::PermissionDenied | SqliteKind::ReadOnly => NOPERM,
        SqliteKind::CannotOpen | SqliteKind::Broken => IOERR,
        SqliteKind::Other => otherwise,
    }
}

fn update_code(e: &UpdateError) -> i32 {
    match e {
        UpdateError::Busy(_) | UpdateError::FetchManifest { .. } | UpdateError::Download { .. } => {
            TEMPFAIL
        }
        UpdateError::NoKey(_) | UpdateError::NoManifestUrl => CONFIG,
        UpdateError::Io { source, .. } => io_code(source),
        UpdateError::Store(s) => store_code(s),
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_sysexits() {
        let io = |k: std::io::ErrorKind| anyhow::Error::from(std::io::Error::from(k));
        assert_eq!(code_for(&io(std::io::ErrorKind::PermissionDenied)), 77);
        assert_eq!(code_for(&io(std::io::ErrorKind::NotFound)), 66);
        assert_eq!(code_for(&io(std::io::ErrorKind::WouldBlock)), 75);
        assert_eq!(code_for(&io(std::io::ErrorKind::UnexpectedEof)), 74);
        let lock = anyhow::Error::from(UpdateError::io(
            "taking the update lock",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(code_for(&lock.context("update apply")), 77);
        assert_eq!(
            code_for(&anyhow::Error::from(UpdateError::Busy(
                "/x/update.lock".into()
            ))),
            75
        );
        assert_eq!(
            code_for(&anyhow::Error::from(StoreError::from(
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("database is locked".into())
                )
            ))),
            75
        );
        // A bare SQLite error in the chain (a CLI's own connection).
        let sqlite = |code| {
            anyhow::Error::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
            .context("reading the store")
        };
        assert_eq!(code_for(&sqlite(rusqlite::ffi::SQLITE_READONLY)), 77);
        assert_eq!(code_for(&sqlite(rusqlite::ffi::SQLITE_CANTOPEN)), 74);
        assert_eq!(code_for(&sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)), 1);
        assert_eq!(code_for(&anyhow::anyhow!("link refused")), 1);
    }
}

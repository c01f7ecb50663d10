//! Files the agent writes or reads outside SQLite, done so that a symbolic
//! link planted in a directory someone else can write (the boot partition,
//! a technician's home, the state directory) never turns a write as root
//! into a write somewhere else.
//!
//! - [`write_atomic`]: temp file beside the target, created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` under an unguessable name, written,
//!   mode and owner set on the open descriptor (`fchmod`, `fchown`), fsync,
//!   rename over the target (a rename replaces a planted link, it never
//!   writes through it), fsync of the directory. Every atomic write of the
//!   agent goes through it.
//! - [`read_capped`]: reads a file someone else dropped: `O_NOFOLLOW`, a
//!   regular file only, at most `cap` bytes.
//! - [`open_nofollow`]: opens an existing file without following a link.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many unguessable temp names [`create_temp_beside`] tries before
/// giving up (each taken name means something else is in the directory).
const TEMP_TRIES: usize = 16;

/// Writes `bytes` to `path` atomically with permission bits `mode`
/// (e.g. `0o600`): see the module doc. On error the temp file is removed
/// and `path` is unchanged.
///
/// Errors: the directory cannot be created or written, the disk is full.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], then the file is given to `owner` (uid, gid) on the
/// open descriptor before the rename.
///
/// Errors: as [`write_atomic`]; `fchown` refused.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir)?;
    let (tmp, mut f) = create_temp_beside(path)?;
    let result = (|| {
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new, empty file beside `path`, named
/// `.<name>.tmp-<pid>-<16 random hex digits>`, mode 0600, with
/// `O_EXCL|O_NOFOLLOW`: never an existing file, never through a link.
///
/// Errors: I/O; every tried name was taken.
pub fn create_temp_beside(path: &Path) -> std::io::Result<(PathBuf, File)> {
    for _ in 0..TEMP_TRIES {
        let tmp = temp_name_beside(path);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free temporary name in {}", parent_of(path).display()),
    ))
}

/// A fresh name beside `path`: `.<name>.tmp-<pid>-<16 random hex
/// digits>` (nothing is created).
pub fn temp_name_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    parent_of(path).join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Opens an existing file for reading (and writing when `write`) without
/// following a symbolic link, and without blocking on a FIFO.
///
/// Errors: I/O; a link answers `ELOOP` (see [`ReadError::Link`]).
pub fn open_nofollow(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Why [`read_capped`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The name is a symbolic link.
    #[error("it is a symbolic link, not a file: refused")]
    Link,
    /// A directory, a device, a FIFO, a socket.
    #[error("it is not a regular file: refused")]
    NotAFile,
    /// Longer than the cap.
    #[error("it is larger than {cap} bytes: refused")]
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
    /// Reading failed.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the regular file `path`, at most `cap` bytes (reading `cap + 1`
/// to tell), never through a symbolic link.
///
/// Errors: [`ReadError`]; `NotFound` comes as `ReadError::Io`.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let f = match open_nofollow(path, false) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::Link),
        Err(e) => return Err(e.into()),
    };
    if !f.metadata()?.is_file() {
        return Err(ReadError::NotAFile);
    }
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(buf)
}

/// fsync of a directory (makes a rename in it durable).
///
/// Errors: I/O.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_planted_at_the_target_is_replaced_and_its_target_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "mine\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let path = d.path().join("state.json");
        symlink(&victim, &path).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine\n");
        let m = fs::metadata(&victim).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        let m = fs::symlink_metadata(&path).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"new");
        // Nothing but the two files is left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_capped_read_refuses_links_other_kinds_and_long_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, "12345").unwrap();
        assert_eq!(read_capped(&f, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&f, 4),
            Err(ReadError::TooLarge { cap: 4 })
        ));
        let l = d.path().join("l");
        symlink(&f, &l).unwrap();
        assert!(matches!(read_capped(&l, 5), Err(ReadError::Link)));
        assert!(matches!(read_capped(d.path(), 5), Err(ReadError::NotAFile)));
    }
}

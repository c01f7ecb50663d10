//! Commands run as root (`sudo zenchef-edge …`) act as the owner of the
//! state directory, so they never leave root-owned files there
//! (docs/decisions.md, "Telling the truth to technicians").
//!
//! A root-owned `update.lock`, `update-download/`, `device-id`, or an
//! `agent.db-shm` / `agent.db-wal` created by a read-only SQLite open,
//! locks the agent out of its own state directory: its next update check
//! fails with "Permission denied", or it cannot open its store. So every
//! command that touches the state directory (all but `provision` and
//! `self-test`), when its effective uid is 0 and the state directory
//! belongs to another user, first reads the configuration (root-only in
//! `/etc/zenchef-edge`), then drops to that user for good:
//! `setgroups`/`initgroups`, `setresgid`, `setresuid` (real, effective and
//! saved ids), and checks that root cannot be regained.
//!
//! `update apply` must restart the service afterwards, which needs root:
//! it forks first; the child drops its privileges and installs, the
//! parent (still root, which touches no file) waits for it and runs
//! `systemctl try-restart` when a new version was installed.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user and group a root process becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Owner uid of the state directory.
    pub uid: u32,
    /// Group of the state directory.
    pub gid: u32,
}

impl Owner {
    /// The user's name from `/etc/passwd`, else the number.
    pub fn user_name(&self) -> String {
        user_name(self.uid).unwrap_or_else(|| self.uid.to_string())
    }
}

/// The name of `uid` in `/etc/passwd`.
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whom this process must become before touching `state_dir`: `Some`
/// when it runs as root (effective uid 0) and `state_dir` exists and
/// belongs to another user; `None` otherwise (not root, a root-owned or
/// not yet created state directory).
pub fn owner_to_become(state_dir: &Path) -> Option<Owner> {
    if euid() != 0 {
        return None;
    }
    let m = std::fs::metadata(state_dir).ok()?;
    (m.uid() != 0).then_some(Owner {
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// Becomes `owner` for good: supplementary groups (the user's, from
/// `initgroups`, else only `owner.gid`), then group, then user ids (real,
/// effective, saved). Only while one thread runs (glibc applies the ids to
/// every thread anyway).
///
/// Errors: a call fails, or root privileges could still be regained.
pub fn drop_to(owner: Owner) -> std::io::Result<()> {
    let last = std::io::Error::last_os_error;
    let name = user_name(owner.uid).and_then(|n| CString::new(n).ok());
    // SAFETY: plain system calls on values we own; `name` outlives the
    // call; the group list is a one-element array that lives through it.
    unsafe {
        let groups_set = match &name {
            Some(n) => libc::initgroups(n.as_ptr(), owner.gid as libc::gid_t) == 0,
            None => false,
        };
        if !groups_set {
            let g: [libc::gid_t; 1] = [owner.gid as libc::gid_t];
            if libc::setgroups(1, g.as_ptr()) != 0 {
                return Err(last());
            }
        }
        if libc::setresgid(owner.gid, owner.gid, owner.gid) != 0 {
            return Err(last());
        }
        if libc::setresuid(owner.uid, owner.uid, owner.uid) != 0 {
            return Err(last());
        }
        if libc::setuid(0) == 0 || libc::geteuid() == 0 || libc::getegid() == 0 && owner.gid != 0 {
            return Err(std::io::Error::other("root privileges could be regained"));
        }
    }
    Ok(())
}

/// The number of threads of this process (`/proc/self/task`), `None`
/// when it cannot be read.
fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Runs `f` in a child process that first becomes `owner`; answers its
/// exit code (the parent stays root and touches no file). Only called
/// while one thread runs, before any runtime is built.
///
/// Errors: more than one thread runs, `fork` or `waitpid` fails. A failed
/// privilege drop in the child is its exit code `drop_failed` (the CLI
/// passes `exit::NOPERM`: this module depends on no other of the agent).
pub fn run_as(owner: Owner, drop_failed: i32, f: impl FnOnce() -> i32) -> std::io::Result<i32> {
    use std::io::Write;
    if threads() != Some(1) {
        return Err(std::io::Error::other(
            "cannot fork: more than one thread runs",
        ));
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: one thread runs (checked above), so the child's copy of the
    // process holds no lock another thread had taken.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = match drop_to(owner) {
            Ok(()) => f(),
            Err(e) => {
                eprintln!(
                    "cannot become {} (the owner of the state directory): {e}",
                    owner.user_name()
                );
                drop_failed
            }
        };
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waits for our own child; `status` is ours.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        // Killed by a signal: 128 + its number, as shells report it.
        128 + libc::WTERMSIG(status)
    })
}

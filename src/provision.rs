//! Zero-touch provisioning from the boot partition (issue "the restaurant
//! plugs the box in, it configures itself").
//!
//! A technician prepares the SD card on any laptop: they drop
//! `zenchef-edge.toml` (the agent's configuration) and optionally
//! `authorized_keys` on the FAT boot partition. At boot, the oneshot unit
//! `zenchef-edge-provision.service` runs `zenchef-edge provision` as root,
//! before the agent:
//!
//! 1. the first `zenchef-edge.toml` found in the boot directories
//!    ([`DEFAULT_BOOT_DIRS`]) is validated with the agent's own
//!    [`crate::config::parse`]; a valid one is installed atomically as the
//!    configuration file (mode 0600, owned by the service user), then the
//!    boot copy is **scrubbed**: its bytes overwritten with zeros, then
//!    replaced by a short note saying when it was consumed — no token stays
//!    on a partition anyone holding the card can read;
//! 2. an invalid one is not consumed: the error goes to the journal and to
//!    `zenchef-edge.provisioning-error.txt` beside it, so the person holding
//!    the card can read why;
//! 3. `authorized_keys` lines are added to the technician account's
//!    `~/.ssh/authorized_keys` (0600, directory 0700), then the boot copy is
//!    removed;
//! 4. a `provisioned` marker is left in the state directory: the agent's
//!    first start after provisioning logs a summary of its checks.
//!
//! A consumed note is recognised and never applied again.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

/// Boot directories searched, in order (Raspberry Pi OS Bookworm mounts
/// the FAT partition at `/boot/firmware`, older images at `/boot`).
pub const DEFAULT_BOOT_DIRS: &[&str] = &["/boot/firmware", "/boot"];
/// File name of the configuration drop.
pub const DROP_NAME: &str = "zenchef-edge.toml";
/// File name of the error report written beside an invalid drop.
pub const ERROR_NAME: &str = "zenchef-edge.provisioning-error.txt";
/// File name of the SSH keys drop.
pub const KEYS_NAME: &str = "authorized_keys";
/// First line of a consumed drop.
pub const CONSUMED_MARK: &str = "# zenchef-edge: consumed";
/// Marker left in the state directory after a successful provisioning.
pub const PROVISIONED_MARKER: &str = "provisioned";

/// Where to look and where to install.
#[derive(Debug, Clone)]
pub struct Provision {
    /// Boot directories, searched in order.
    pub boot_dirs: Vec<PathBuf>,
    /// The agent's configuration file to install.
    pub config_path: PathBuf,
    /// State directory (marker file).
    pub state_dir: PathBuf,
    /// Service user owning the configuration (`None`: leave the owner).
    pub service_user: Option<String>,
    /// Technician account whose `authorized_keys` receives the keys.
    pub ssh_user: Option<String>,
    /// Home of that account (default: from `/etc/passwd`).
    pub ssh_home: Option<PathBuf>,
}

/// What provisioning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The configuration installed from this drop.
    pub installed_from: Option<PathBuf>,
    /// A drop refused, with the error (also written beside it).
    pub refused: Option<(PathBuf, String)>,
    /// SSH keys installed (count) from this file.
    pub keys_installed: Option<(PathBuf, usize)>,
}

/// Errors that stop provisioning (I/O on the box side).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Writing the configuration failed.
    #[error("cannot install {path}: {source}")]
    Install {
        /// Target file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Scrubbing the boot copy failed (the configuration *was* installed).
    #[error("installed, but cannot scrub the secrets from {path}: {source}")]
    Scrub {
        /// Boot file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing SSH keys failed.
    #[error("cannot install SSH keys into {path}: {source}")]
    Keys {
        /// Target file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl Provision {
    /// Runs every step; answers what was done.
    pub fn run(&self) -> Result<Report, ProvisionError> {
        let mut report = Report::default();
        if let Some(drop) = self.find(DROP_NAME) {
            self.config_drop(&drop, &mut report)?;
        }
        if let Some(keys) = self.find(KEYS_NAME) {
            self.keys_drop(&keys, &mut report)?;
        }
        Ok(report)
    }

    fn find(&self, name: &str) -> Option<PathBuf> {
        self.boot_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    fn config_drop(&self, drop: &Path, report: &mut Report) -> Result<(), ProvisionError> {
        let text = match fs::read_to_string(drop) {
            Ok(t) => t,
            Err(e) => {
                return self.refuse(drop, format!("cannot read {}: {e}", drop.display()), report);
            }
        };
        if text.starts_with(CONSUMED_MARK) {
            return Ok(());
        }
        if let Err(e) = crate::config::parse(&text, drop) {
            return self.refuse(drop, e.to_string(), report);
        }
        write_private(
            &self.config_path,
            text.as_bytes(),
            self.service_user.as_deref(),
        )
        .map_err(|source| ProvisionError::Install {
            path: self.config_path.clone(),
            source,
        })?;
        scrub(drop, &self.config_path).map_err(|source| ProvisionError::Scrub {
            path: drop.to_path_buf(),
            source,
        })?;
        let _ = fs::remove_file(drop.with_file_name(ERROR_NAME));
        let _ = fs::create_dir_all(&self.state_dir);
        let _ = fs::write(
            self.state_dir.join(PROVISIONED_MARKER),
            crate::outbox::now_utc(),
        );
        info!(
            "provisioned: {} installed as {} (mode 0600); the copy on the boot partition was scrubbed",
            drop.display(),
            self.config_path.display()
        );
        report.installed_from = Some(drop.to_path_buf());
        Ok(())
    }

    fn refuse(&self, drop: &Path, why: String, report: &mut Report) -> Result<(), ProvisionError> {
        error!(
            "provisioning file {} NOT used: {why}. Fix it on the SD card; details in {}",
            drop.display(),
            ERROR_NAME
        );
        let note = format!(
            "zenchef-edge could not use {} (checked {}):\n\n{why}\n\nFix the file and put the card back: it is checked at every boot.\n",
            drop.display(),
            crate::outbox::now_utc()
        );
        let _ = fs::write(drop.with_file_name(ERROR_NAME), note);
        report.refused = Some((drop.to_path_buf(), why));
        Ok(())
    }

    fn keys_drop(&self, keys: &Path, report: &mut Report) -> Result<(), ProvisionError> {
        let Some(home) = self
            .ssh_home
            .clone()
            .or_else(|| self.ssh_user.as_deref().and_then(home_of))
        else {
            warn!(
                "{} found but no technician account is configured: left in place",
                keys.display()
            );
            return Ok(());
        };
        let target = home.join(".ssh").join("authorized_keys");
        let err = |source| ProvisionError::Keys {
            path: target.clone(),
            source,
        };
        let new = fs::read_to_string(keys).map_err(err)?;
        let valid: Vec<&str> = new
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| {
                let ok = l.split_whitespace().any(|w| {
                    w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-")
                });
                if !ok {
                    warn!(
                        "ignored a line of {} that is not an SSH public key",
                        keys.display()
                    );
                }
                ok
            })
            .collect();
        let ssh_dir = home.join(".ssh");
        fs::create_dir_all(&ssh_dir).map_err(err)?;
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        let existing = fs::read_to_string(&target).unwrap_or_default();
        let mut merged = existing.clone();
        let mut added = 0;
        for k in &valid {
            if !existing.lines().any(|l| l.trim() == *k) {
                if !merged.is_empty() && !merged.ends_with('\n') {
                    merged.push('\n');
                }
                merged.push_str(k);
                merged.push('\n');
                added += 1;
            }
        }
        write_private(&target, merged.as_bytes(), self.ssh_user.as_deref()).map_err(err)?;
        if let Some(user) = &self.ssh_user {
            chown(&ssh_dir, user).map_err(err)?;
        }
        fs::remove_file(keys).map_err(err)?;
        info!(
            "{added} SSH key(s) installed for the technician account; {} removed from the boot partition",
            keys.display()
        );
        report.keys_installed = Some((keys.to_path_buf(), added));
        Ok(())
    }
}

/// Writes a file atomically with mode 0600: temp file in the same
/// directory, fsync, rename, fsync of the directory; then `chown` to
/// `owner` when given.
pub fn write_private(path: &Path, bytes: &[u8], owner: Option<&str>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    if let Some(user) = owner {
        chown(&tmp, user)?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Overwrites the file's bytes with zeros in place (same blocks on FAT),
/// then replaces its content with a note; fsync after each step.
fn scrub(drop: &Path, installed_as: &Path) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(drop)?;
    let len = f.metadata()?.len() as usize;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    let note = format!(
        "{CONSUMED_MARK} on {} and installed as {}.\n\
         # Its tokens were removed from this card. To provision again, replace this file.\n",
        crate::outbox::now_utc(),
        installed_as.display()
    );
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// `chown user:user-primary-group` through `/etc/passwd` (no libc crate).
fn chown(path: &Path, user: &str) -> std::io::Result<()> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no user {user}"))
        })?;
    let uid: u32 = entry[2]
        .parse()
        .map_err(|_| std::io::Error::other("bad uid"))?;
    let gid: u32 = entry[3]
        .parse()
        .map_err(|_| std::io::Error::other("bad gid"))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

fn home_of(user: &str) -> Option<PathBuf> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[0] == user)
        .map(|f| PathBuf::from(f[5]))
}

//! Zero-touch provisioning from the boot partition (issue "the restaurant
//! plugs the box in, it configures itself").
//!
//! A technician prepares the SD card on any laptop: they drop
//! `zenchef-edge.toml` (the agent's configuration) and optionally
//! `zenchef/authorized_keys` (SSH public keys) on the FAT boot partition.
//! At boot, the oneshot unit `zenchef-edge-provision.service` runs
//! `zenchef-edge provision --ssh-user zenchef` as root, before the agent and
//! before sshd:
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
//! 3. the public keys of `zenchef/authorized_keys` (each line checked: a
//!    known key type and its base64 blob, see [`is_public_key`]) are added
//!    to the technician account's `~/.ssh/authorized_keys` (0600, directory
//!    0700, owned by that account; keys already there are kept), then the
//!    boot copy is removed. A file without any valid key is left in place
//!    and changes nothing, so a typo cannot lock the technicians out;
//! 4. a `provisioned` marker is left in the state directory: the agent's
//!    first start after provisioning logs a summary of its checks.
//!
//! A consumed note is recognised and never applied again.
//!
//! This runs as root on files others can plant things beside: every drop
//! is read without following a link and at most [`MAX_DROP_BYTES`] /
//! [`MAX_KEYS_BYTES`] ([`crate::files::read_capped`]), and every file is
//! written by [`crate::files::write_atomic_owned`] (never through a link).

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::files;

/// Boot directories searched, in order (Raspberry Pi OS Bookworm mounts
/// the FAT partition at `/boot/firmware`, older images at `/boot`).
pub const DEFAULT_BOOT_DIRS: &[&str] = &["/boot/firmware", "/boot"];
/// File name of the configuration drop.
pub const DROP_NAME: &str = "zenchef-edge.toml";
/// File name of the error report written beside an invalid drop.
pub const ERROR_NAME: &str = "zenchef-edge.provisioning-error.txt";
/// Directory of the boot partition holding the SSH keys drop.
pub const KEYS_DIR: &str = "zenchef";
/// File name of the SSH keys drop, in [`KEYS_DIR`].
pub const KEYS_NAME: &str = "authorized_keys";
/// The technician account the shipped unit gives the keys to
/// (`--ssh-user`): the image's admin user (uid 1000).
pub const TECHNICIAN_ACCOUNT: &str = "zenchef";
/// SSH public key types accepted in the keys drop (and their certificate
/// forms, `<type>-cert-v01@openssh.com`).
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
/// Largest configuration drop read, in bytes (a real one is about 2 KiB).
pub const MAX_DROP_BYTES: u64 = 64 * 1024;
/// Largest SSH keys drop read, in bytes (about 150 keys).
pub const MAX_KEYS_BYTES: u64 = 64 * 1024;
/// Largest existing `authorized_keys` merged with the drop, in bytes.
pub const MAX_AUTHORIZED_KEYS_BYTES: u64 = 1024 * 1024;
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
        if let Some(drop) = self.find(Path::new(DROP_NAME)) {
            self.config_drop(&drop, &mut report)?;
        }
        if let Some(keys) = self.find(&Path::new(KEYS_DIR).join(KEYS_NAME)) {
            self.keys_drop(&keys, &mut report)?;
        }
        Ok(report)
    }

    fn find(&self, name: &Path) -> Option<PathBuf> {
        self.boot_dirs
            .iter()
            .map(|d| d.join(name))
            // A link is found too, so that it is refused in words.
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
    }

    fn config_drop(&self, drop: &Path, report: &mut Report) -> Result<(), ProvisionError> {
        let text = match files::read_capped(drop, MAX_DROP_BYTES).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => {
                let why = format!("{} is not UTF-8 text: refused", drop.display());
                return self.refuse(drop, why, report);
            }
            Err(e) => return self.refuse(drop, format!("{}: {e}", drop.display()), report),
        };
        if text.starts_with(CONSUMED_MARK) {
            return Ok(());
        }
        if let Err(e) = crate::config::parse(&text, drop) {
            return self.refuse(drop, e.to_string(), report);
        }
        owner_ids(self.service_user.as_deref())
            .and_then(|owner| {
                files::write_atomic_owned(&self.config_path, text.as_bytes(), 0o600, owner)
            })
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
        let _ = files::write_atomic(
            &self.state_dir.join(PROVISIONED_MARKER),
            crate::time::now_utc().as_bytes(),
            0o644,
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
            crate::time::now_utc()
        );
        // Written beside the drop by a rename: a link planted at that name
        // is replaced, never written through.
        if let Err(e) =
            files::write_atomic(&drop.with_file_name(ERROR_NAME), note.as_bytes(), 0o644)
        {
            warn!("cannot write {ERROR_NAME} beside {}: {e}", drop.display());
        }
        report.refused = Some((drop.to_path_buf(), why));
        Ok(())
    }

    fn keys_drop(&self, keys: &Path, report: &mut Report) -> Result<(), ProvisionError> {
        let home = match (&self.ssh_home, self.ssh_user.as_deref()) {
            (Some(h), _) => h.clone(),
            (None, Some(user)) => match home_of(user) {
                Some(h) => h,
                None => {
                    warn!(
                        "{} found but the technician account {user} does not exist on this box: \
                         left in place (create the account, or change --ssh-user with \
                         `systemctl edit zenchef-edge-provision`)",
                        keys.display()
                    );
                    return Ok(());
                }
            },
            (None, None) => {
                warn!(
                    "{} found but no technician account is configured (--ssh-user): left in place",
                    keys.display()
                );
                return Ok(());
            }
        };
        let target = home.join(".ssh").join("authorized_keys");
        let err = |source| ProvisionError::Keys {
            path: target.clone(),
            source,
        };
        let new = match files::read_capped(keys, MAX_KEYS_BYTES).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => {
                error!(
                    "{} is not UTF-8 text: left in place, the account's keys are unchanged",
                    keys.display()
                );
                return Ok(());
            }
            Err(e) => {
                error!(
                    "{}: {e}; left in place, the account's keys are unchanged",
                    keys.display()
                );
                return Ok(());
            }
        };
        let valid: Vec<&str> = new
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|l| {
                let ok = is_public_key(l);
                if !ok {
                    warn!(
                        "ignored a line of {} that is not an SSH public key",
                        keys.display()
                    );
                }
                ok
            })
            .collect();
        if valid.is_empty() {
            warn!(
                "{} holds no valid SSH public key: left in place, the account's keys are unchanged",
                keys.display()
            );
            return Ok(());
        }
        let ssh_dir = home.join(".ssh");
        let owner = owner_ids(self.ssh_user.as_deref()).map_err(err)?;
        prepare_ssh_dir(&ssh_dir, owner).map_err(err)?;
        let existing = read_existing_keys(&target).map_err(err)?;
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
        files::write_atomic_owned(&target, merged.as_bytes(), 0o600, owner).map_err(err)?;
        fs::remove_file(keys).map_err(err)?;
        info!(
            "{added} SSH key(s) installed for the technician account ({}); {} removed from the boot partition",
            target.display(),
            keys.display()
        );
        report.keys_installed = Some((keys.to_path_buf(), added));
        Ok(())
    }
}

/// Creates `~/.ssh` if needed, then sets its mode 0700 and its owner on
/// a descriptor opened without following a link: the directory belongs
/// to the account, which could have made it a link to, say, `/etc`.
///
/// Errors: I/O; `ELOOP` when `ssh_dir` is a link.
fn prepare_ssh_dir(ssh_dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    fs::create_dir_all(ssh_dir)?;
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(ssh_dir)?;
    dir.set_permissions(fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The keys already in `target` (empty when there is none), read without
/// following a link (a link to `/etc/shadow` would copy it to the
/// account) and at most [`MAX_AUTHORIZED_KEYS_BYTES`].
///
/// Errors: a link, not a file, too large, I/O.
fn read_existing_keys(target: &Path) -> std::io::Result<String> {
    match files::read_capped(target, MAX_AUTHORIZED_KEYS_BYTES) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(String::new())
        }
        Err(e) => Err(std::io::Error::other(format!("{}: {e}", target.display()))),
    }
}

/// Whether `line` of an authorized_keys file is an SSH public key:
/// `[options] <type> <base64 blob> [comment]`, with `<type>` one of
/// [`KEY_TYPES`] (or its certificate form) and the blob's first field (a
/// length-prefixed string, RFC 4253 § 6.6) naming that same type. Options
/// are not checked (sshd does).
pub fn is_public_key(line: &str) -> bool {
    use base64::Engine;
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(2).any(|w| {
        let kind = w[0];
        let known = KEY_TYPES.iter().any(|t| {
            kind == *t
                || kind
                    .strip_suffix("-cert-v01@openssh.com")
                    .is_some_and(|base| base == t.trim_end_matches("@openssh.com"))
        });
        if !known {
            return false;
        }
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(w[1]) else {
            return false;
        };
        let Some(len) = blob
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        else {
            return false;
        };
        blob.len() > 4 + len && blob.get(4..4 + len) == Some(kind.as_bytes())
    })
}

/// Overwrites the file's bytes with zeros in place (same blocks on FAT),
/// then replaces its content with a note; fsync after each step.
fn scrub(drop: &Path, installed_as: &Path) -> std::io::Result<()> {
    let mut f = files::open_nofollow(drop, true)?;
    let len = f.metadata()?.len() as usize;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    let note = format!(
        "{CONSUMED_MARK} on {} and installed as {}.\n\
         # Its tokens were removed from this card. To provision again, replace this file.\n",
        crate::time::now_utc(),
        installed_as.display()
    );
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The uid and primary gid of `user` (`None`: none asked), from
/// `/etc/passwd`.
fn owner_ids(user: Option<&str>) -> std::io::Result<Option<(u32, u32)>> {
    let Some(user) = user else { return Ok(None) };
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
    Ok(Some((uid, gid)))
}

fn home_of(user: &str) -> Option<PathBuf> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[0] == user)
        .map(|f| PathBuf::from(f[5]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// A public key line of type `kind` with `n` bytes of key material.
    fn key(kind: &str, n: usize, comment: &str) -> String {
        let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(kind.as_bytes());
        blob.extend_from_slice(&(n as u32).to_be_bytes());
        blob.extend(std::iter::repeat_n(7u8, n));
        format!(
            "{kind} {} {comment}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    #[test]
    fn public_keys_are_told_from_typos_and_other_files() {
        assert!(is_public_key(&key("ssh-ed25519", 32, "tech@laptop")));
        assert!(is_public_key(&key("ecdsa-sha2-nistp256", 65, "")));
        assert!(is_public_key(&key(
            "sk-ssh-ed25519@openssh.com",
            40,
            "yubikey"
        )));
        assert!(is_public_key(&format!(
            "from=\"10.0.0.0/8\",no-pty {}",
            key("ssh-rsa", 260, "support")
        )));
        assert!(is_public_key(&key(
            "ssh-ed25519-cert-v01@openssh.com",
            80,
            "cert"
        )));
        // The type on the line and inside the blob differ.
        let lie = key("ssh-rsa", 32, "x").replacen("ssh-rsa", "ssh-ed25519", 1);
        assert!(!is_public_key(&lie));
        // A blob cut short, not base64, a private key, a fingerprint.
        let ed = key("ssh-ed25519", 32, "x");
        let blob = ed.split(' ').nth(1).unwrap();
        assert!(!is_public_key(&format!("ssh-ed25519 {}", &blob[..12])));
        assert!(!is_public_key("ssh-ed25519 AAAAnotbase64!! x"));
        assert!(!is_public_key("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(!is_public_key(
            "256 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU tech (ED25519)"
        ));
        assert!(!is_public_key("ssh-ed25519"));
        assert!(!is_public_key(""));
    }
}

//! Unattended self-update: signed releases, installed in the maintenance
//! window, with automatic rollback (docs/README-update.md, docs/decisions.md
//! § "Self-update").
//!
//! An update is a chain of types (as in Mullvad's `mullvad-update`):
//! [`manifest::Manifest`] (untrusted index) → [`verify::Downloaded`] (bytes on
//! disk whose sha256 matched) → [`verify::Verified`] (zipsign ed25519
//! signature checked with the configured key, binary extracted from the
//! signed bytes only) → [`install::Installed`]. Each step's output is the only
//! input of the next and has no public constructor, so nothing unverified can
//! be installed.
//!
//! # Layout
//! - [`manifest`]: the release index (`manifest.json`) and the signed claims
//!   inside the archive (`release.json`); fetching the manifest.
//! - [`verify`]: the public key, download with sha256, signature check,
//!   extraction of the signed binary.
//! - [`install`]: smoke test, keeping the previous binary, atomic rename,
//!   rollback.
//! - [`policy`]: pure rules: which release, when (window, rollout, open
//!   orders, outbox), how often.
//! - [`state`]: the update-state file, the device id, start bookkeeping.
//! - [`daemon`]: the task inside `run()`: periodic check, health
//!   confirmation of a new version, the 120 s deadline.
//!
//! # Files
//! In the state directory (the store's directory, `/var/lib/zenchef-edge`):
//! `update-state.json`, `device-id`, `update.lock`, `update-download/`.
//! Beside the running binary (`/var/lib/zenchef-edge/bin/`):
//! `zenchef-edge.previous` (kept for rollback) and transient
//! `.zenchef-edge.*` staging files.

pub mod daemon;
pub mod install;
pub mod manifest;
pub mod policy;
pub mod state;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Version;

/// Exit code of the daemon when it stops to let systemd start another binary
/// (after an install or a rollback): `EX_TEMPFAIL`. The unit restarts on it
/// (`Restart=always`); it must not be listed in `RestartPreventExitStatus=`.
pub const EX_RESTART: i32 = 75;

/// Target triple this binary was built for (from `build.rs`); a release for
/// another target is never installed.
pub const TARGET: &str = env!("ZENCHEF_EDGE_TARGET");

/// Name of the binary inside a release archive.
pub const ARCHIVE_BINARY: &str = "zenchef-edge";
/// Name of the signed release claims inside a release archive.
pub const ARCHIVE_RELEASE: &str = "release.json";

pub use crate::version::running_version_str;

/// The version of this binary, parsed.
pub fn running_version() -> Version {
    running_version_str().parse().unwrap_or(Version(0, 0, 0))
}

static RESTART: AtomicBool = AtomicBool::new(false);

/// Asks `main` to exit with [`EX_RESTART`] once `run()` has returned (set
/// after an install or a rollback, before the shutdown token is cancelled).
pub fn request_restart() {
    RESTART.store(true, Ordering::SeqCst);
}

/// Whether [`request_restart`] was called in this process.
pub fn restart_requested() -> bool {
    RESTART.load(Ordering::SeqCst)
}

/// The start of [`signing_key_problem`]'s sentence when the box trusts
/// only the repository's placeholder key (`placeholder = true` in
/// `packaging/channel.toml`).
pub const PLACEHOLDER_KEY_PROBLEM: &str = "this box cannot update: placeholder signing key";

/// Why every release will be refused, when it will: updates are enabled
/// with a manifest URL but `update.public_key` is missing, empty or not an
/// ed25519 key — the sentence starts with `updates refused: no signing
/// key` —, or the only keys trusted are the repository's placeholder
/// ([`crate::config::UpdateConfig::placeholder_key`]) — it starts with
/// [`PLACEHOLDER_KEY_PROBLEM`]. What `status`, `doctor`, the page and the
/// daemon's start WARN say.
pub fn signing_key_problem(cfg: &crate::config::UpdateConfig) -> Option<String> {
    if !cfg.enabled || cfg.manifest_url.is_none() {
        return None;
    }
    if cfg.placeholder_key {
        let id = verify::PublicKey::from_config(cfg)
            .map(|k| k.key_id())
            .unwrap_or_default();
        return Some(format!(
            "{PLACEHOLDER_KEY_PROBLEM} (key id {id}, {}): this binary was built with the \
             repository's placeholder key, whose private half nobody has, so every real release \
             is refused; install a package built with the release channel's real key",
            cfg.keys_from
        ));
    }
    match verify::PublicKey::from_config(cfg) {
        Ok(_) => None,
        Err(UpdateError::NoKey(why)) => Some(format!(
            "updates refused: no signing key (update.public_key: {why})"
        )),
        Err(e) => Some(format!("updates refused: no signing key ({e})")),
    }
}

/// Where the update machinery reads and writes. Resolved once at start:
/// after an install, `/proc/self/exe` of the running process names a
/// replaced file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The running binary, symlinks resolved (on the box
    /// `/var/lib/zenchef-edge/bin/zenchef-edge`; `/usr/bin/zenchef-edge`
    /// is a symlink to it).
    pub exe: PathBuf,
    /// The previous binary kept for rollback: `<exe>.previous`.
    pub previous: PathBuf,
    /// The state directory: the store's directory.
    pub state_dir: PathBuf,
}

impl Paths {
    /// Paths for the running process: `std::env::current_exe()` resolved,
    /// and the directory of `store_path`.
    ///
    /// Errors: the executable's path cannot be read or resolved.
    pub fn for_current_exe(store_path: &Path) -> std::io::Result<Paths> {
        let exe = std::env::current_exe()?.canonicalize()?;
        Ok(Paths::new(exe, store_path))
    }

    /// Paths for a given binary and store (tests, `boot-check`).
    pub fn new(exe: PathBuf, store_path: &Path) -> Paths {
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ARCHIVE_BINARY.into());
        let previous = exe.with_file_name(format!("{name}.previous"));
        let state_dir = match store_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Paths {
            exe,
            previous,
            state_dir,
        }
    }

    /// The update-state file.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("update-state.json")
    }

    /// The device id file.
    pub fn device_id_file(&self) -> PathBuf {
        self.state_dir.join("device-id")
    }

    /// Where archives are downloaded (emptied after each try).
    pub fn download_dir(&self) -> PathBuf {
        self.state_dir.join("update-download")
    }

    /// The lock taken while checking/installing (daemon and CLI exclude
    /// each other).
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join("update.lock")
    }

    /// Directory of the running binary (staging files live there so the
    /// final rename stays on one filesystem).
    pub fn bin_dir(&self) -> PathBuf {
        self.exe
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Everything that can stop an update. Variants are named after the step
/// that failed; none of them changes the installed binary.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// `update.manifest_url` is not set.
    #[error("update.manifest_url is not set")]
    NoManifestUrl,
    /// Fetching the manifest failed (network, HTTP status, body).
    #[error("cannot fetch the manifest {url}: {message}")]
    FetchManifest {
        /// Manifest URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The manifest is not what docs/README-update.md describes.
    #[error("the manifest is invalid: {0}")]
    BadManifest(String),
    /// Downloading the archive failed or was cut; nothing was kept.
    #[error("cannot download {url}: {message}")]
    Download {
        /// Archive URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The archive's sha256 differs from the manifest's.
    #[error("sha256 mismatch for {name}: manifest says {expected}, downloaded {actual}")]
    Checksum {
        /// Archive file name.
        name: String,
        /// From the manifest.
        expected: String,
        /// Of the downloaded bytes.
        actual: String,
    },
    /// No usable public key: an update is never installed unverified.
    #[error("update.public_key: {0}; refusing to install anything unverified")]
    NoKey(String),
    /// The zipsign signature does not verify with the configured key, and
    /// the release does not say it was signed with another one: the bytes
    /// are not what was signed (damaged, tampered, or renamed).
    #[error("bad signature on {name}: {message}")]
    Signature {
        /// Archive file name (the signature context).
        name: String,
        /// What is wrong, for a technician.
        message: String,
    },
    /// The archive is signed with a key this box does not trust: the
    /// manifest names another key id than the box's `update.public_key`.
    #[error(
        "{name} is signed by an unknown key (key id {key_id}; this box trusts key id {trusted}): \
         the release channel (update.manifest_url) or the box's key (update.public_key) is wrong"
    )]
    UnknownKey {
        /// Archive file name.
        name: String,
        /// The key id the manifest names for it.
        key_id: String,
        /// The key id of the box's `update.public_key`.
        trusted: String,
    },
    /// The archive's content is not a release (missing or bad entries).
    #[error("the archive is not a valid release: {0}")]
    BadArchive(String),
    /// The signed claims forbid this install (version, target, rollback).
    #[error("release refused: {0}")]
    Refused(policy::Refusal),
    /// The new binary did not answer `--version` as expected.
    #[error("the new binary failed its smoke test: {0}")]
    SmokeTest(String),
    /// A file operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The update-state file could not be read or written.
    #[error("update state: {0}")]
    State(#[from] state::StateError),
    /// Another process holds the update lock.
    #[error("another update is in progress (lock {0})")]
    Busy(PathBuf),
    /// The store could not be read for the policy.
    #[error("reading the store: {0}")]
    Store(#[from] crate::outbox::StoreError),
}

impl UpdateError {
    /// Wraps an I/O error with what was being done.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        UpdateError::Io {
            action: action.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_holds_the_package_version() {
        assert_eq!(running_version_str(), env!("CARGO_PKG_VERSION"));
        assert_eq!(
            running_version(),
            env!("CARGO_PKG_VERSION").parse::<Version>().unwrap()
        );
    }

    #[test]
    fn paths_derive_from_exe_and_store() {
        let p = Paths::new(
            PathBuf::from("/var/lib/zenchef-edge/bin/zenchef-edge"),
            Path::new("/var/lib/zenchef-edge/agent.db"),
        );
        assert_eq!(
            p.previous,
            PathBuf::from("/var/lib/zenchef-edge/bin/zenchef-edge.previous")
        );
        assert_eq!(
            p.state_file(),
            PathBuf::from("/var/lib/zenchef-edge/update-state.json")
        );
        assert_eq!(p.bin_dir(), PathBuf::from("/var/lib/zenchef-edge/bin"));
    }
}

//! Download and verification: [`download`] gives a [`Downloaded`] archive
//! whose sha256 matched the manifest; [`verify`] turns it into a
//! [`Verified`] release — the zipsign ed25519ph signature checked with the
//! configured [`PublicKey`], the binary and `release.json` extracted from the
//! **signed bytes only**, the signed claims checked against the policy. There
//! is no other way to obtain a [`Verified`], and it is the only input of
//! [`super::install::install`].
//!
//! Blocking work (hashing, decompression) is meant for `spawn_blocking`.
//! Both types delete their files when dropped unused: an interrupted or
//! refused update leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use zipsign_api::VerifyingKey;

use super::manifest::{Entry, SignedRelease};
use super::policy::{self, Kind};
use super::{ARCHIVE_BINARY, ARCHIVE_RELEASE, TARGET, UpdateError};
use crate::config::Version;

/// Largest archive accepted (a release is ~10 MB).
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 20;
/// Largest binary accepted out of an archive.
pub const MAX_BINARY_BYTES: u64 = 512 << 20;
/// Largest `release.json` accepted.
const MAX_RELEASE_JSON: u64 = 64 << 10;
/// Timeout of the whole archive download.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The ed25519 keys that sign releases: `update.public_key` /
/// `update.public_keys`, or the built-in channel's (base64 of the 32 raw
/// bytes that `zipsign gen-key` writes). A release verifies when any of
/// them signed it (key rotation, docs/README-update.md). There is no empty
/// list: no key refuses every update (self_update, by contrast, skips
/// verification when its key list is empty).
#[derive(Clone)]
pub struct PublicKey(Vec<VerifyingKey>);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .0
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_bytes()))
            .collect();
        write!(f, "PublicKey({})", keys.join(", "))
    }
}

impl PublicKey {
    /// The keys of `[update]` (or of the built-in channel).
    ///
    /// Errors: [`UpdateError::NoKey`] when there is none, or when one of
    /// them is not base64, not 32 bytes, or not a valid ed25519 point (a
    /// mistyped key is said, not skipped).
    pub fn from_config(cfg: &crate::config::UpdateConfig) -> Result<PublicKey, UpdateError> {
        Self::from_list(&cfg.public_keys, cfg.keys_from)
    }

    /// The keys of a list; `from` names it in errors.
    ///
    /// Errors: as [`PublicKey::from_config`].
    pub fn from_list(keys: &[String], from: &str) -> Result<PublicKey, UpdateError> {
        if keys.is_empty() {
            return Err(UpdateError::NoKey("missing or empty".into()));
        }
        let several = keys.len() > 1;
        let mut out = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let which = if several {
                format!("key {} of {from}: ", i + 1)
            } else if from == "built-in channel" {
                "the built-in channel's key: ".to_string()
            } else {
                String::new()
            };
            out.push(parse_key(key).map_err(|why| UpdateError::NoKey(format!("{which}{why}")))?);
        }
        Ok(PublicKey(out))
    }

    /// The keys' ids: for each key, the first 16 hex digits (64 bits) of
    /// the SHA-256 of its 32 raw bytes (the `release.pub` file of `zipsign
    /// gen-key`), as `scripts/release.sh` writes it into the manifest
    /// (`key_id`) and `update check` shows it. It names a key, it proves
    /// nothing.
    pub fn key_ids(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|k| hex(&Sha256::digest(k.as_bytes()))[..16].to_string())
            .collect()
    }

    /// The keys' ids, `, `-separated (one id for one key).
    pub fn key_id(&self) -> String {
        self.key_ids().join(", ")
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (there is no empty key list).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_key(key: &str) -> Result<VerifyingKey, String> {
    let text: String = key.chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() {
        return Err("missing or empty".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text))
        .map_err(|_| "not base64".to_string())?;
    let raw: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{} bytes, an ed25519 key has 32", bytes.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid ed25519 public key".to_string())
}

/// An archive on disk whose SHA-256 matched the manifest. Not trusted yet.
#[derive(Debug)]
pub struct Downloaded {
    path: PathBuf,
    entry: Entry,
}

impl Downloaded {
    /// The manifest entry it was downloaded for.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes what an earlier, interrupted try left in `dir`.
fn clean_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Downloads `entry` into `dir` (created 0700, emptied first), checking
/// the size cap and the SHA-256 as it streams.
///
/// Errors: [`UpdateError::Download`] (network, HTTP status, cut
/// connection, too large), [`UpdateError::Checksum`]; in both cases the
/// partial file is removed.
pub async fn download(
    client: &reqwest::Client,
    entry: &Entry,
    dir: &Path,
) -> Result<Downloaded, UpdateError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| UpdateError::io(format!("creating {}", dir.display()), e))?;
    clean_dir(dir);
    let part = dir.join(format!("{}.part", entry.name));
    let result = fetch_to(client, entry, &part).await;
    match result {
        Ok(actual) if actual == entry.sha256 => {
            let path = dir.join(&entry.name);
            fs::rename(&part, &path)
                .map_err(|e| UpdateError::io(format!("renaming {}", part.display()), e))?;
            Ok(Downloaded {
                path,
                entry: entry.clone(),
            })
        }
        Ok(actual) => {
            let _ = fs::remove_file(&part);
            Err(UpdateError::Checksum {
                name: entry.name.clone(),
                expected: entry.sha256.clone(),
                actual,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&part);
            Err(e)
        }
    }
}

async fn fetch_to(
    client: &reqwest::Client,
    entry: &Entry,
    part: &Path,
) -> Result<String, UpdateError> {
    let fail = |message: String| UpdateError::Download {
        url: entry.url.clone(),
        message,
    };
    let mut resp = client
        .get(&entry.url)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    if let Some(moved) =
        crate::zenchef::client::redirect_message(resp.status(), resp.headers(), resp.url())
    {
        return Err(fail(format!("HTTP {}: {moved}", resp.status().as_u16())));
    }
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > MAX_ARCHIVE_BYTES) {
        return Err(fail(format!("larger than {MAX_ARCHIVE_BYTES} bytes")));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(part)
        .map_err(|e| UpdateError::io(format!("creating {}", part.display()), e))?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(format!("{e:#}")))? {
        total += chunk.len() as u64;
        if total > MAX_ARCHIVE_BYTES {
            return Err(fail(format!("larger than {MAX_ARCHIVE_BYTES} bytes")));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| UpdateError::io(format!("writing {}", part.display()), e))?;
    }
    file.sync_all()
        .map_err(|e| UpdateError::io(format!("syncing {}", part.display()), e))?;
    Ok(hex(&hasher.finalize()))
}

/// A release whose signature verified, extracted from the signed bytes and
/// allowed by its signed claims. Holds the new binary in a staging file
/// beside the running one (same filesystem, so the install is one rename).
#[derive(Debug)]
pub struct Verified {
    binary: Option<PathBuf>,
    release: SignedRelease,
    kind: Kind,
    name: String,
}

impl Verified {
    /// The signed claims.
    pub fn release(&self) -> &SignedRelease {
        &self.release
    }

    /// Upgrade or signed rollback.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The archive file name it came from.
    pub fn archive_name(&self) -> &str {
        &self.name
    }

    /// The staged binary (for the smoke test and the install only).
    pub(super) fn staged(&self) -> &Path {
        self.binary.as_deref().unwrap_or(Path::new(""))
    }

    /// Hands the staged file over to the install (no longer deleted on drop).
    pub(super) fn take_staged(&mut self) -> Option<PathBuf> {
        self.binary.take()
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        if let Some(p) = &self.binary {
            let _ = fs::remove_file(p);
        }
    }
}

/// Where a zipsign-signed `.tar.gz` ends: the signature block (a last gzip
/// member whose comment holds the base64 signatures and, in 16 hex digits,
/// the offset where it starts) is at the end; everything before it is
/// signed.
fn signed_len(file: &mut File) -> Result<u64, UpdateError> {
    const TAIL: usize = 16 + 14;
    let bad = || UpdateError::BadArchive("no zipsign signature block at the end".into());
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| UpdateError::io("reading the archive", e))?;
    if len < TAIL as u64 {
        return Err(bad());
    }
    file.seek(SeekFrom::End(-(TAIL as i64)))
        .map_err(|e| UpdateError::io("reading the archive", e))?;
    let mut tail = [0u8; TAIL];
    file.read_exact(&mut tail)
        .map_err(|e| UpdateError::io("reading the archive", e))?;
    let start = std::str::from_utf8(&tail[..16])
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(bad)?;
    if start >= len {
        return Err(bad());
    }
    Ok(start)
}

/// Verifies a downloaded archive and extracts the release into
/// `staging_dir` (the running binary's directory). `current` and `failed`
/// are checked against the **signed** claims.
///
/// Errors: [`UpdateError::Signature`] (any key but the configured one, any
/// changed byte), [`UpdateError::BadArchive`] (missing entries, claims that
/// differ from the manifest), [`UpdateError::Refused`] (downgrade, target,
/// blacklisted), I/O.
pub fn verify(
    d: Downloaded,
    key: &PublicKey,
    staging_dir: &Path,
    current: Version,
    failed: &[Version],
) -> Result<Verified, UpdateError> {
    let name = d.entry.name.clone();
    let mut file = File::open(&d.path)
        .map_err(|e| UpdateError::io(format!("opening {}", d.path.display()), e))?;
    // 1. The signature, over every byte before the signature block, with
    //    the archive's file name as context (zipsign's default).
    zipsign_api::verify::verify_tar(&mut file, &key.0, Some(name.as_bytes()))
        .map_err(|e| signature_error(&e, &d.entry, key))?;
    // 2. Extract from the same open file, from the signed bytes only.
    let signed = signed_len(&mut file)?;
    file.rewind()
        .map_err(|e| UpdateError::io("reading the archive", e))?;
    let gz = flate2::read::MultiGzDecoder::new(file.take(signed));
    let mut archive = tar::Archive::new(gz);
    let staged = staging_dir.join(format!(".{ARCHIVE_BINARY}.staged"));
    let _ = fs::remove_file(&staged);
    let mut verified = Verified {
        binary: None,
        release: SignedRelease {
            claims: d.entry.claims.clone(),
        },
        kind: Kind::Upgrade,
        name: name.clone(),
    };
    let mut release_json: Option<Vec<u8>> = None;
    let bad = |m: String| UpdateError::BadArchive(m);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("cannot read the tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("cannot read the tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("bad entry name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./");
        let regular = entry.header().entry_type().is_file();
        if path == ARCHIVE_BINARY && regular {
            if entry.size() > MAX_BINARY_BYTES {
                return Err(bad(format!(
                    "{ARCHIVE_BINARY} is larger than {MAX_BINARY_BYTES} bytes"
                )));
            }
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)
                .map_err(|e| UpdateError::io(format!("creating {}", staged.display()), e))?;
            verified.binary = Some(staged.clone());
            std::io::copy(&mut (&mut entry).take(MAX_BINARY_BYTES), &mut out)
                .map_err(|e| bad(format!("cannot extract {ARCHIVE_BINARY}: {e}")))?;
            out.sync_all()
                .map_err(|e| UpdateError::io(format!("syncing {}", staged.display()), e))?;
        } else if path == ARCHIVE_RELEASE && regular {
            let mut buf = Vec::new();
            (&mut entry)
                .take(MAX_RELEASE_JSON)
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("cannot read {ARCHIVE_RELEASE}: {e}")))?;
            release_json = Some(buf);
        }
        // Anything else is ignored: never written to disk.
    }
    if verified.binary.is_none() {
        return Err(bad(format!("no `{ARCHIVE_BINARY}` file in the archive")));
    }
    let release = SignedRelease::parse(
        &release_json.ok_or_else(|| bad(format!("no `{ARCHIVE_RELEASE}` file in the archive")))?,
    )?;
    // 3. The signed claims decide.
    release.matches(&d.entry)?;
    let kind = policy::release_allowed(current, TARGET, failed, &release.claims)
        .map_err(UpdateError::Refused)?;
    use std::os::unix::fs::PermissionsExt;
    // The mode is set on a descriptor of the file extracted above, never
    // through a link planted at its name.
    crate::files::open_nofollow(&staged, false)
        .and_then(|f| f.set_permissions(fs::Permissions::from_mode(0o755)))
        .map_err(|e| UpdateError::io(format!("chmod {}", staged.display()), e))?;
    verified.release = release;
    verified.kind = kind;
    Ok(verified)
}

/// Words a failed signature check so that a technician knows what is
/// wrong: the channel or the box's key (the manifest names another key id),
/// or the file (same key id, or none named: the signed bytes changed, or
/// the archive was renamed, the name being the signature's context).
fn signature_error(
    e: &zipsign_api::verify::VerifyTarError,
    entry: &Entry,
    key: &PublicKey,
) -> UpdateError {
    let name = entry.name.clone();
    // zipsign's "no matching key/signature pair" has no source; reading the
    // signature block failed when there is one.
    if std::error::Error::source(e).is_some() {
        return UpdateError::Signature {
            name,
            message: format!(
                "its signature block cannot be read ({}): the file is damaged or tampered",
                error_chain(e)
            ),
        };
    }
    let trusted = key.key_id();
    match &entry.key_id {
        Some(k) if !key.key_ids().contains(k) => UpdateError::UnknownKey {
            name,
            key_id: k.clone(),
            trusted,
        },
        Some(_) => UpdateError::Signature {
            name,
            message: format!(
                "the file is damaged or tampered (it names this box's key id {trusted}, but its \
                 bytes are not what that key signed)"
            ),
        },
        None => UpdateError::Signature {
            name,
            message: format!(
                "the file is damaged or tampered, or signed by another key than this box's \
                 (key id {trusted}; the manifest names none)"
            ),
        },
    }
}

/// `a: b: c` from an error and its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use zenchef_sim::update_server::{Keypair, ReleaseSpec, build_archive};

    fn entry_for(archive: &[u8], name: &str, version: &str) -> Entry {
        Entry {
            claims: policy::Claims {
                version: version.parse().unwrap(),
                target: TARGET.into(),
                min_previous: None,
                rollback_of: vec![],
            },
            url: format!("http://127.0.0.1/{name}"),
            name: name.into(),
            sha256: hex(&Sha256::digest(archive)),
            key_id: None,
        }
    }

    /// Writes `archive` where [`download`] would have, as a [`Downloaded`].
    fn downloaded(dir: &Path, archive: &[u8], name: &str, version: &str) -> Downloaded {
        let path = dir.join(name);
        fs::write(&path, archive).unwrap();
        Downloaded {
            path,
            entry: entry_for(archive, name, version),
        }
    }

    fn spec(version: &str) -> ReleaseSpec {
        ReleaseSpec::new(version, TARGET, b"#!/bin/sh\necho new\n".to_vec())
    }

    #[test]
    fn an_empty_or_bad_key_refuses_everything() {
        for (k, want) in [
            (None, "missing or empty"),
            (Some(""), "missing or empty"),
            (Some("   "), "missing or empty"),
            (Some("%%%"), "not base64"),
            (Some("AAAA"), "3 bytes"),
        ] {
            let list: Vec<String> = k.map(String::from).into_iter().collect();
            let e = PublicKey::from_list(&list, "update.public_key").unwrap_err();
            assert!(matches!(e, UpdateError::NoKey(_)), "{e}");
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().contains("refusing"), "{e}");
        }
        let kp = Keypair::generate();
        key_of(&kp);
    }

    fn key_of(kp: &Keypair) -> PublicKey {
        PublicKey::from_list(&[kp.public_base64()], "update.public_key").unwrap()
    }

    /// Key rotation: a release signed with either key of the list
    /// verifies; one signed with a key not listed does not.
    #[test]
    fn any_listed_key_may_sign() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, other) = (
            Keypair::generate(),
            Keypair::generate(),
            Keypair::generate(),
        );
        let keys = PublicKey::from_list(
            &[old.public_base64(), new.public_base64()],
            "update.public_keys",
        )
        .unwrap();
        let name = "zenchef-edge-0.2.0.tar.gz";
        for (who, kp, ok) in [
            ("old", &old, true),
            ("new", &new, true),
            ("other", &other, false),
        ] {
            let archive = build_archive(&spec("0.2.0"), kp, name);
            let d = downloaded(dir.path(), &archive, name, "0.2.0");
            let r = verify(d, &keys, dir.path(), Version(0, 1, 0), &[]);
            assert_eq!(r.is_ok(), ok, "signed by the {who} key: {r:?}");
        }
    }

    #[test]
    fn a_signed_archive_verifies_and_yields_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::generate();
        let name = "zenchef-edge-0.2.0.tar.gz";
        let archive = build_archive(&spec("0.2.0"), &kp, name);
        let key = key_of(&kp);
        let d = downloaded(dir.path(), &archive, name, "0.2.0");
        let archive_path = dir.path().join(name);
        let v = verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap();
        assert!(!archive_path.exists(), "the archive is removed once read");
        assert_eq!(v.release().claims.version, Version(0, 2, 0));
        assert_eq!(fs::read(v.staged()).unwrap(), b"#!/bin/sh\necho new\n");
        let staged = v.staged().to_path_buf();
        drop(v);
        assert!(!staged.exists(), "an unused staged binary is removed");
    }

    #[test]
    fn any_changed_byte_or_other_key_or_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::generate();
        let key = key_of(&kp);
        let name = "zenchef-edge-0.2.0.tar.gz";
        let good = build_archive(&spec("0.2.0"), &kp, name);

        let mut flipped = good.clone();
        flipped[good.len() / 3] ^= 0x01;
        let other = build_archive(&spec("0.2.0"), &Keypair::generate(), name);
        let renamed = build_archive(&spec("0.2.0"), &kp, "zenchef-edge-0.1.9.tar.gz");
        for (what, bytes) in [
            ("flipped byte", flipped),
            ("other key", other),
            ("other name", renamed),
        ] {
            let d = downloaded(dir.path(), &bytes, name, "0.2.0");
            let e = verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap_err();
            assert!(matches!(e, UpdateError::Signature { .. }), "{what}: {e}");
        }
        // Nothing staged, nothing left.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_refusal_says_whether_the_key_or_the_file_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::generate();
        let key = PublicKey::from_list(&[kp.public_base64()], "update.public_key").unwrap();
        let other_kp = Keypair::generate();
        let other = PublicKey::from_list(&[other_kp.public_base64()], "update.public_key").unwrap();
        assert_ne!(key.key_id(), other.key_id());
        let name = "zenchef-edge-0.2.0.tar.gz";
        let refuse = |bytes: &[u8], key_id: Option<String>| {
            let mut d = downloaded(dir.path(), bytes, name, "0.2.0");
            d.entry.key_id = key_id;
            verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap_err()
        };
        // Signed by another key, and the manifest says so.
        let foreign = build_archive(&spec("0.2.0"), &other_kp, name);
        let e = refuse(&foreign, Some(other.key_id()));
        assert!(
            matches!(&e, UpdateError::UnknownKey { key_id, trusted, .. }
            if *key_id == other.key_id() && *trusted == key.key_id()),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{name} is signed by an unknown key (key id {}; this box trusts key id {}): the \
                 release channel (update.manifest_url) or the box's key (update.public_key) is wrong",
                other.key_id(),
                key.key_id()
            )
        );
        // Our key id, bytes changed: the file.
        let mut tampered = build_archive(&spec("0.2.0"), &kp, name);
        let at = tampered.len() / 3;
        tampered[at] ^= 0x01;
        let e = refuse(&tampered, Some(key.key_id()));
        assert!(matches!(e, UpdateError::Signature { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "bad signature on {name}: the file is damaged or tampered"
            )),
            "{text}"
        );
        assert!(!text.contains("unknown key"), "{text}");
        // No key id in the manifest: both causes are named.
        let e = refuse(&foreign, None);
        assert!(
            e.to_string()
                .contains("damaged or tampered, or signed by another key"),
            "{e}"
        );
        // The signature block itself is cut off: the file.
        let good = build_archive(&spec("0.2.0"), &kp, name);
        let e = refuse(&good[..good.len() - 40], Some(key.key_id()));
        assert!(matches!(e, UpdateError::Signature { .. }), "{e}");
        assert!(e.to_string().contains("damaged or tampered"), "{e}");
    }

    #[test]
    fn the_key_id_is_the_start_of_the_sha256_of_the_raw_key() {
        let kp = Keypair::generate();
        let key = PublicKey::from_list(&[kp.public_base64()], "update.public_key").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(kp.public_base64())
            .unwrap();
        assert_eq!(key.key_id(), hex(&Sha256::digest(&raw))[..16]);
    }

    #[test]
    fn signed_claims_decide_not_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let kp = Keypair::generate();
        let key = key_of(&kp);
        // A validly signed older release announced as newer by a forged manifest.
        let name = "zenchef-edge-0.0.9.tar.gz";
        let old = build_archive(&spec("0.0.9"), &kp, name);
        let d = downloaded(dir.path(), &old, name, "0.2.0");
        let e = verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap_err();
        assert!(matches!(e, UpdateError::BadArchive(_)), "{e}");
        // Honestly announced: a downgrade, refused.
        let d = downloaded(dir.path(), &old, name, "0.0.9");
        let e = verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap_err();
        assert!(
            matches!(e, UpdateError::Refused(policy::Refusal::Downgrade { .. })),
            "{e}"
        );
        // Signed as a rollback of the running version: accepted.
        let mut rb = spec("0.0.9");
        rb.rollback_of = vec!["0.1.0".into()];
        let d = downloaded(dir.path(), &build_archive(&rb, &kp, name), name, "0.0.9");
        let v = verify(d, &key, dir.path(), Version(0, 1, 0), &[]).unwrap();
        assert_eq!(v.kind(), Kind::Rollback);
    }
}

//! The release index and the signed release claims (docs/README-update.md
//! § "Release format").
//!
//! `manifest.json` (served at `update.manifest_url`, **not** signed) lists
//! one entry per target:
//!
//! ```json
//! {"schema": 1, "releases": [{
//!    "version": "0.2.0", "target": "aarch64-unknown-linux-gnu",
//!    "url": "zenchef-edge-0.2.0-aarch64-unknown-linux-gnu.tar.gz",
//!    "sha256": "<64 hex>", "min_previous": "0.1.0", "rollback_of": []}]}
//! ```
//!
//! It is only a pointer: the sha256 catches a truncated or corrupted
//! download early, the version pre-filters. What decides is `release.json`
//! **inside** the zipsign-signed archive (same fields minus `url` and
//! `sha256`), which must repeat the manifest's version and target
//! ([`SignedRelease::matches`]). A forged manifest can therefore at most make
//! the box download something it then refuses.

use std::time::Duration;

use serde::Deserialize;

use super::UpdateError;
use super::policy::Claims;
use crate::config::{Version, check_url};

/// The manifest schema this binary reads.
pub const SCHEMA: u64 = 1;
/// A manifest larger than this is refused (it is a few hundred bytes).
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Timeout of the manifest request.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct RawManifest {
    schema: u64,
    #[serde(default)]
    releases: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    version: String,
    target: String,
    url: String,
    sha256: String,
    #[serde(default)]
    min_previous: Option<String>,
    #[serde(default)]
    rollback_of: Vec<String>,
    #[serde(default)]
    key_id: Option<String>,
}

/// One release of the manifest (untrusted until verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it claims (unsigned copy).
    pub claims: Claims,
    /// Absolute archive URL (https, or http to a loopback host).
    pub url: String,
    /// Archive file name: the last segment of the URL; also the zipsign
    /// signature context.
    pub name: String,
    /// Expected SHA-256 of the archive, lower-case hex.
    pub sha256: String,
    /// The id of the key the release says it is signed with
    /// ([`super::verify::PublicKey::key_id`], 16 lower-case hex digits), as
    /// `scripts/release.sh` writes it; `None` when absent or malformed.
    /// Never trusted: it only words the refusal of an archive whose
    /// signature does not verify (another key, or a damaged file).
    pub key_id: Option<String>,
}

/// The parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its releases, in file order.
    pub releases: Vec<Entry>,
}

impl Manifest {
    /// The claims of every release (for [`super::policy::choose`]).
    pub fn claims(&self) -> Vec<Claims> {
        self.releases.iter().map(|e| e.claims.clone()).collect()
    }

    /// The entry holding `claims` (as chosen by the policy).
    pub fn entry_for(&self, claims: &Claims) -> Option<&Entry> {
        self.releases.iter().find(|e| &e.claims == claims)
    }
}

fn version(field: &str, s: &str) -> Result<Version, UpdateError> {
    s.parse()
        .map_err(|m| UpdateError::BadManifest(format!("{field}: {m}")))
}

/// Resolves `url` against the manifest URL's directory (absolute URLs pass
/// through), then applies the configuration's URL rule.
pub fn resolve_url(manifest_url: &str, url: &str) -> Result<String, UpdateError> {
    let abs = if url.contains("://") {
        url.to_string()
    } else {
        let base = manifest_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(manifest_url);
        format!("{base}/{}", url.trim_start_matches('/'))
    };
    check_url(abs).map_err(|m| UpdateError::BadManifest(format!("url: {m}")))
}

/// Parses a manifest body fetched from `manifest_url`.
///
/// Errors: [`UpdateError::BadManifest`] naming the field (unknown schema,
/// bad version, sha256 not 64 hex digits, URL refused, archive not
/// `.tar.gz`).
pub fn parse(body: &str, manifest_url: &str) -> Result<Manifest, UpdateError> {
    let raw: RawManifest =
        serde_json::from_str(body).map_err(|e| UpdateError::BadManifest(e.to_string()))?;
    if raw.schema != SCHEMA {
        return Err(UpdateError::BadManifest(format!(
            "schema {} (this binary reads schema {SCHEMA})",
            raw.schema
        )));
    }
    let mut releases = Vec::with_capacity(raw.releases.len());
    for r in raw.releases {
        let url = resolve_url(manifest_url, &r.url)?;
        let name = url
            .rsplit('/')
            .next()
            .filter(|n| n.ends_with(".tar.gz") && !n.starts_with('.'))
            .ok_or_else(|| {
                UpdateError::BadManifest(format!("url: `{url}` does not name a .tar.gz file"))
            })?
            .to_string();
        let sha256 = r.sha256.trim().to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(UpdateError::BadManifest(format!(
                "sha256 of {name}: not 64 hex digits"
            )));
        }
        releases.push(Entry {
            claims: Claims {
                version: version("version", &r.version)?,
                target: r.target,
                min_previous: r
                    .min_previous
                    .as_deref()
                    .map(|s| version("min_previous", s))
                    .transpose()?,
                rollback_of: r
                    .rollback_of
                    .iter()
                    .map(|s| version("rollback_of", s))
                    .collect::<Result<_, _>>()?,
            },
            url,
            name,
            sha256,
            key_id: r.key_id.filter(|k| {
                k.len() == 16
                    && k.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }),
        });
    }
    Ok(Manifest { releases })
}

/// Fetches and parses the manifest.
///
/// Errors: [`UpdateError::FetchManifest`] (network, non-2xx, too large),
/// [`UpdateError::BadManifest`].
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Manifest, UpdateError> {
    let fail = |message: String| UpdateError::FetchManifest {
        url: url.to_string(),
        message,
    };
    let mut resp = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
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
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(format!("{e:#}")))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(fail(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
    }
    let text = String::from_utf8(body).map_err(|_| fail("not UTF-8".into()))?;
    parse(&text, url)
}

#[derive(Deserialize)]
struct RawSigned {
    version: String,
    target: String,
    #[serde(default)]
    min_previous: Option<String>,
    #[serde(default)]
    rollback_of: Vec<String>,
}

/// `release.json` from inside a verified archive: the claims that decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRelease {
    /// The signed claims.
    pub claims: Claims,
}

impl SignedRelease {
    /// Parses `release.json`.
    ///
    /// Errors: [`UpdateError::BadArchive`] naming the field.
    pub fn parse(bytes: &[u8]) -> Result<SignedRelease, UpdateError> {
        let bad = |m: String| UpdateError::BadArchive(format!("release.json: {m}"));
        let raw: RawSigned = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let v = |field: &str, s: &str| -> Result<Version, UpdateError> {
            s.parse().map_err(|m| bad(format!("{field}: {m}")))
        };
        Ok(SignedRelease {
            claims: Claims {
                version: v("version", &raw.version)?,
                target: raw.target,
                min_previous: raw
                    .min_previous
                    .as_deref()
                    .map(|s| v("min_previous", s))
                    .transpose()?,
                rollback_of: raw
                    .rollback_of
                    .iter()
                    .map(|s| v("rollback_of", s))
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    /// The signed claims must repeat the manifest's version and target (a
    /// validly signed archive of another release is refused).
    pub fn matches(&self, entry: &Entry) -> Result<(), UpdateError> {
        if self.claims.version != entry.claims.version || self.claims.target != entry.claims.target
        {
            return Err(UpdateError::BadArchive(format!(
                "the signed release is {} for {}, the manifest announced {} for {}",
                self.claims.version, self.claims.target, entry.claims.version, entry.claims.target
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://updates.example/stable/manifest.json";

    fn body(extra: &str) -> String {
        format!(
            r#"{{"schema":1,"releases":[{{"version":"0.2.0","target":"x86_64-unknown-linux-gnu",
            "url":"zenchef-edge-0.2.0.tar.gz","sha256":"{}","min_previous":"0.1.0"{extra}}}],
            "future_field":true}}"#,
            "AB".repeat(32)
        )
    }

    #[test]
    fn a_manifest_resolves_relative_urls_and_lowercases_the_digest() {
        let m = parse(&body(""), URL).unwrap();
        let e = &m.releases[0];
        assert_eq!(
            e.url,
            "https://updates.example/stable/zenchef-edge-0.2.0.tar.gz"
        );
        assert_eq!(e.name, "zenchef-edge-0.2.0.tar.gz");
        assert_eq!(e.sha256, "ab".repeat(32));
        assert_eq!(e.claims.min_previous, Some(Version(0, 1, 0)));
        assert!(e.claims.rollback_of.is_empty());
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        let cases = [
            (body("").replace("\"schema\":1", "\"schema\":2"), "schema 2"),
            (
                body("").replace("0.2.0\",\"target", "0.2\",\"target"),
                "version",
            ),
            (body("").replace(&"AB".repeat(32), "abc"), "sha256"),
            (body("").replace(".tar.gz\"", ".zip\""), ".tar.gz"),
            (
                body("").replace(
                    "\"zenchef-edge-0.2.0.tar.gz\"",
                    "\"http://10.0.0.1/zenchef-edge-0.2.0.tar.gz\"",
                ),
                "loopback",
            ),
            (body(",\"rollback_of\":[\"x\"]"), "rollback_of"),
        ];
        for (text, want) in cases {
            let e = parse(&text, URL).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn signed_claims_must_repeat_the_manifest() {
        let m = parse(&body(""), URL).unwrap();
        let ok = SignedRelease::parse(
            br#"{"version":"0.2.0","target":"x86_64-unknown-linux-gnu","min_previous":"0.1.0"}"#,
        )
        .unwrap();
        ok.matches(&m.releases[0]).unwrap();
        let other = SignedRelease::parse(
            br#"{"version":"0.1.5","target":"x86_64-unknown-linux-gnu","rollback_of":["0.2.0"]}"#,
        )
        .unwrap();
        assert_eq!(other.claims.rollback_of, vec![Version(0, 2, 0)]);
        assert!(other.matches(&m.releases[0]).is_err());
    }
}

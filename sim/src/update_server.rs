//! A release server for the agent's self-update, with fault injection.
//!
//! Written from the release format of `docs/README-update.md` (not from the
//! agent's code): `GET /manifest.json` answers
//! `{"schema":1,"releases":[{version,target,url,sha256,min_previous,rollback_of}]}`
//! and `GET /<archive name>` a `.tar.gz` holding `zenchef-edge` (mode 0755)
//! and `release.json` (`{version,target,min_previous,rollback_of}`), signed
//! with zipsign (ed25519ph, context = the archive's file name).
//!
//! Faults ([`Fault`]): a download cut in the middle, a wrong sha256 in the
//! manifest, a tampered archive (signature no longer valid, sha256 matching
//! the tampered bytes), an archive signed with another key, an older
//! version announced (properly signed), HTTP 503, and the server gone
//! ([`UpdateServer::stop`]).

use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use zipsign_api::SigningKey;

use crate::http_server::Listening;
use crate::util::LOOPBACK;

/// An ed25519 key pair as zipsign uses it.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair(public {})", self.public_base64())
    }
}

impl Keypair {
    /// A fresh random key pair (keys in tests are made at test time).
    pub fn generate() -> Keypair {
        use rand::RngExt;
        let mut seed = [0u8; 32];
        rand::rng().fill(&mut seed);
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key as `update.public_key` takes it: base64 of 32 bytes.
    pub fn public_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.signing.verifying_key().as_bytes())
    }

    /// The private key file `zipsign gen-key` writes (64 bytes: secret then
    /// public), for driving the `zipsign` tool in tests.
    pub fn zipsign_private_key(&self) -> Vec<u8> {
        self.signing.to_keypair_bytes().to_vec()
    }
}

/// One release to publish.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Target triple.
    pub target: String,
    /// `min_previous`, when set.
    pub min_previous: Option<String>,
    /// `rollback_of`: versions this release is a signed rollback for.
    pub rollback_of: Vec<String>,
    /// The `zenchef-edge` file.
    pub binary: Vec<u8>,
}

impl ReleaseSpec {
    /// A plain release.
    pub fn new(version: &str, target: &str, binary: Vec<u8>) -> ReleaseSpec {
        ReleaseSpec {
            version: version.into(),
            target: target.into(),
            min_previous: None,
            rollback_of: Vec::new(),
            binary,
        }
    }

    /// `zenchef-edge-<version>-<target>.tar.gz`.
    pub fn archive_name(&self) -> String {
        format!("zenchef-edge-{}-{}.tar.gz", self.version, self.target)
    }

    /// `release.json`.
    pub fn release_json(&self) -> String {
        json!({
            "version": self.version,
            "target": self.target,
            "min_previous": self.min_previous,
            "rollback_of": self.rollback_of,
        })
        .to_string()
    }
}

fn tar_gz(spec: &ReleaseSpec) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, mode: u32, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes).expect("tar in memory");
    };
    add("zenchef-edge", 0o755, &spec.binary);
    add("release.json", 0o644, spec.release_json().as_bytes());
    let gz = tar.into_inner().expect("tar in memory");
    let mut gz = gz;
    gz.flush().expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

/// Builds the signed archive of `spec`, signed by `key` with `name` as the
/// zipsign context (what `zipsign sign tar <name> <key>` does).
pub fn build_archive(spec: &ReleaseSpec, key: &Keypair, name: &str) -> Vec<u8> {
    let plain = tar_gz(spec);
    let mut out = Cursor::new(Vec::new());
    zipsign_api::sign::copy_and_sign_tar(
        &mut Cursor::new(plain),
        &mut out,
        std::slice::from_ref(&key.signing),
        Some(name.as_bytes()),
    )
    .expect("signing in memory");
    out.into_inner()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the server does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Nothing.
    #[default]
    None,
    /// The archive response announces the full length and stops halfway.
    TruncatedDownload,
    /// The manifest's sha256 is not the archive's.
    WrongSha256,
    /// One byte of the archive flipped (sha256 of the tampered bytes).
    BadSignature,
    /// The archive is signed with another key.
    WrongKey,
    /// The manifest announces 0.0.1, properly signed.
    OlderVersion,
    /// Every request answers 503.
    ServerError,
}

struct Published {
    manifest_entry: serde_json::Value,
    name: String,
    archive: Vec<u8>,
    spec: ReleaseSpec,
    key: Keypair,
    // Built when the fault that serves them is set.
    wrong_key: Vec<u8>,
    older: (serde_json::Value, String, Vec<u8>),
}

/// A manifest text and the files it names.
type RawRelease = (String, Vec<(String, Vec<u8>)>);

#[derive(Default)]
struct Inner {
    published: Option<Published>,
    raw: Option<RawRelease>,
    fault: Fault,
    manifest_hits: u64,
    archive_hits: u64,
}

/// The running release server. Cheap to clone.
#[derive(Clone)]
pub struct UpdateServer {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    server: Arc<Mutex<Option<Listening>>>,
}

fn entry_json(spec: &ReleaseSpec, name: &str, archive: &[u8]) -> serde_json::Value {
    json!({
        "version": spec.version,
        "target": spec.target,
        "url": name,
        "sha256": sha256_hex(archive),
        "min_previous": spec.min_previous,
        "rollback_of": spec.rollback_of,
    })
}

impl UpdateServer {
    /// Starts on `127.0.0.1:0` with nothing published (an empty manifest).
    pub async fn start() -> anyhow::Result<UpdateServer> {
        let listener = TcpListener::bind((LOOPBACK, 0)).await?;
        let addr = listener.local_addr()?;
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let router = Router::new()
            .route("/manifest.json", get(manifest))
            .route("/{name}", get(archive))
            .with_state(inner.clone());
        let server = Listening::serve(listener, router);
        Ok(UpdateServer {
            inner,
            addr,
            server: Arc::new(Mutex::new(Some(server))),
        })
    }

    /// `http://127.0.0.1:<port>/manifest.json`.
    pub fn manifest_url(&self) -> String {
        format!("http://{}/manifest.json", self.addr)
    }

    /// Publishes `spec` signed by `key` (replaces what was published).
    pub fn publish(&self, spec: &ReleaseSpec, key: &Keypair) {
        let name = spec.archive_name();
        let archive = build_archive(spec, key, &name);
        let mut g = self.inner.lock().unwrap();
        g.raw = None;
        g.published = Some(Published {
            manifest_entry: entry_json(spec, &name, &archive),
            name,
            archive,
            spec: spec.clone(),
            key: key.clone(),
            wrong_key: Vec::new(),
            older: (serde_json::Value::Null, String::new(), Vec::new()),
        });
        let fault = g.fault;
        drop(g);
        self.set_fault(fault);
    }

    /// Serves `manifest` as is and `files` by name (for archives made by
    /// the release script).
    pub fn publish_raw(&self, manifest: String, files: Vec<(String, Vec<u8>)>) {
        let mut g = self.inner.lock().unwrap();
        g.published = None;
        g.raw = Some((manifest, files));
    }

    /// Sets the fault for the next requests.
    pub fn set_fault(&self, fault: Fault) {
        let mut g = self.inner.lock().unwrap();
        g.fault = fault;
        let Some(p) = g.published.as_mut() else {
            return;
        };
        if fault == Fault::WrongKey && p.wrong_key.is_empty() {
            p.wrong_key = build_archive(&p.spec, &Keypair::generate(), &p.name);
        }
        if fault == Fault::OlderVersion && p.older.2.is_empty() {
            let mut old = p.spec.clone();
            old.version = "0.0.1".into();
            old.min_previous = None;
            old.rollback_of = Vec::new();
            let old_name = old.archive_name();
            let old_archive = build_archive(&old, &p.key, &old_name);
            p.older = (
                entry_json(&old, &old_name, &old_archive),
                old_name,
                old_archive,
            );
        }
    }

    /// Requests for the manifest so far.
    pub fn manifest_hits(&self) -> u64 {
        self.inner.lock().unwrap().manifest_hits
    }

    /// Requests for an archive so far.
    pub fn archive_hits(&self) -> u64 {
        self.inner.lock().unwrap().archive_hits
    }

    /// Stops listening and drops open connections: the server is
    /// unreachable from now on.
    pub fn stop(&self) {
        // Dropping it stops listening and drops open connections.
        self.server.lock().unwrap().take();
    }
}

async fn manifest(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let mut g = inner.lock().unwrap();
    g.manifest_hits += 1;
    if g.fault == Fault::ServerError {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some((m, _)) = &g.raw {
        return ([(header::CONTENT_TYPE, "application/json")], m.clone()).into_response();
    }
    let releases = match &g.published {
        None => vec![],
        Some(p) => {
            let mut e = p.manifest_entry.clone();
            match g.fault {
                Fault::WrongSha256 => e["sha256"] = json!("00".repeat(32)),
                Fault::BadSignature => {
                    e["sha256"] = json!(sha256_hex(&tampered(&p.archive)));
                }
                Fault::WrongKey => e["sha256"] = json!(sha256_hex(&p.wrong_key)),
                Fault::OlderVersion => e = p.older.0.clone(),
                _ => {}
            }
            vec![e]
        }
    };
    axum::Json(json!({"schema": 1, "releases": releases})).into_response()
}

fn tampered(archive: &[u8]) -> Vec<u8> {
    let mut t = archive.to_vec();
    let i = t.len() / 3;
    t[i] ^= 0x01;
    t
}

async fn archive(State(inner): State<Arc<Mutex<Inner>>>, Path(name): Path<String>) -> Response {
    let mut g = inner.lock().unwrap();
    g.archive_hits += 1;
    if g.fault == Fault::ServerError {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let bytes = if let Some((_, files)) = &g.raw {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
    } else if let Some(p) = &g.published {
        if name == p.name {
            Some(match g.fault {
                Fault::BadSignature => tampered(&p.archive),
                Fault::WrongKey => p.wrong_key.clone(),
                _ => p.archive.clone(),
            })
        } else if name == p.older.1 {
            Some(p.older.2.clone())
        } else {
            None
        }
    } else {
        None
    };
    let Some(bytes) = bytes else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if g.fault == Fault::TruncatedDownload {
        // Announce everything, send half: the connection ends early.
        let full = bytes.len();
        let half = bytes[..full / 2].to_vec();
        return Response::builder()
            .header(header::CONTENT_LENGTH, full)
            .header(header::CONTENT_TYPE, "application/gzip")
            .body(Body::from(half))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response()
}

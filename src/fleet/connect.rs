//! One connection to the fleet broker: the MQTT options (TLS from the
//! `[fleet]` files, the login), and what a failure means
//! ([`FailureKind`]). The daemon's session, `doctor` and `fleet-view` all
//! connect through [`options`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::FleetConfig;

/// Why a fleet connection cannot even be tried: a file of `[fleet]`.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file cannot be read.
    #[error("cannot read fleet.{key} {}: {source}", path.display())]
    Read {
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("fleet.{key} {}: {what}", path.display())]
    Content {
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong (e.g. `no PEM certificate in it`).
        what: String,
    },
    /// rustls refuses the certificate and key as a pair, or the TLS setup.
    #[error("fleet TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// The options of a connection to the broker of `cfg` as `client_id`:
/// keep-alive 30 s, a clean session, TLS when `mqtts://` (the broker's
/// certificate checked against `ca_file`, else the box's CA store; the
/// client certificate when configured), the login when configured.
///
/// Errors: [`SetupError`] (a file of `[fleet]`).
pub fn options(cfg: &FleetConfig, client_id: &str) -> Result<MqttOptions, SetupError> {
    let mut opts = MqttOptions::new(client_id, cfg.broker.host.clone(), cfg.broker.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        // Reports are small; what comes back is a CONNACK, SUBACKs and,
        // for fleet-view, the boxes' reports.
        .set_max_packet_size(256 * 1024, 256 * 1024)
        // A few reports at most in flight: a broker that stops
        // acknowledging costs no more than that.
        .set_inflight(4);
    if let Some((user, token)) = &cfg.login {
        opts.set_credentials(user.clone(), token.expose());
    }
    if cfg.broker.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(cfg)?),
        )));
    }
    Ok(opts)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn content(key: &'static str, path: &Path, what: impl Into<String>) -> SetupError {
    SetupError::Content {
        key,
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(key, path, format!("not a PEM file ({})", pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(content(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// What is wrong with a PEM file, without its content: the parser's own
/// message quotes the faulty line or section label, which for a key
/// written on one line (a paste that lost its newlines) is the key itself
/// — and the message goes to the journal, `status` and the status page.
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a BEGIN line without its END line: one item per line?",
        E::IllegalSectionStart { .. } => "a malformed BEGIN line: one item per line?",
        E::Base64Decode(_) => "its base64 does not decode",
        E::NoItemsFound => "no item of the expected kind",
        E::SectionTooLarge => "a section too large",
        _ => "unreadable PEM",
    }
}

/// The rustls client configuration of `cfg` (ring, TLS 1.2 and 1.3).
fn tls_config(cfg: &FleetConfig) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for c in certificates("ca_file", path)? {
                roots
                    .add(c)
                    .map_err(|e| content("ca_file", path, format!("unusable certificate: {e}")))?;
            }
        }
        None => {
            // Unreadable entries of the box's store are skipped, as
            // rumqttc and reqwest do.
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match &cfg.client_cert {
        Some((cert, key)) => {
            let chain = certificates("cert_file", cert)?;
            let pem = read("key_file", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                content(
                    "key_file",
                    key,
                    format!("no PEM private key in it ({})", pem_problem(&e)),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// What a failed connection means for a technician (the `fleet.state` of
/// `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The broker refused the login (CONNACK "bad user name or password",
    /// "not authorised") or the box's certificate (a TLS alert).
    Refused,
    /// The broker's certificate is not trusted by the box, or another TLS
    /// failure.
    TlsError,
    /// DNS, TCP, a timeout, a session lost.
    Unreachable,
}

impl FailureKind {
    /// The name in `status` (`refused`, `tls_error`, `unreachable`).
    pub fn state(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::TlsError => "tls_error",
            FailureKind::Unreachable => "unreachable",
        }
    }
}

/// The TLS error inside an I/O error, if any (tokio-rustls wraps rustls'
/// errors in `io::Error`s; a certificate refused by the broker under TLS
/// 1.3 arrives as an alert at the first read after the handshake).
fn tls_inside(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn by_tls(e: &rustls::Error) -> FailureKind {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => FailureKind::Refused,
        _ => FailureKind::TlsError,
    }
}

/// The first TLS error among the causes of `e`: rustls' own, or one an
/// `io::Error` wraps (whose `source()` skips what it wraps, so each one
/// met is looked into) — whether it came through the TLS setup, the first
/// read after the handshake (`MqttState(Deserialization(Io))`) or a write.
fn tls_cause(e: &ConnectionError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(t) = err.downcast_ref::<std::io::Error>().and_then(tls_inside) {
            return Some(t);
        }
        next = err.source();
    }
    None
}

/// Classifies a failed connection.
pub fn classify(e: &ConnectionError) -> FailureKind {
    if let Some(t) = tls_cause(e) {
        return by_tls(t);
    }
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => FailureKind::Refused,
        ConnectionError::Tls(_) => FailureKind::TlsError,
        _ => FailureKind::Unreachable,
    }
}

/// A failed connection in words for a technician (never the token: no
/// error of rumqttc holds it): the TLS refusal or distrust by name, the
/// login refusal by its CONNACK code, else rumqttc's text.
pub fn describe(e: &ConnectionError) -> String {
    if let Some(t) = tls_cause(e) {
        return match t {
            rustls::Error::AlertReceived(a) if by_tls(t) == FailureKind::Refused => {
                format!("the broker refused the box's certificate (TLS alert {a:?})")
            }
            rustls::Error::InvalidCertificate(c) => {
                format!("the broker's certificate is not trusted ({c:?})")
            }
            t => format!("TLS: {t}"),
        };
    }
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the login ({code:?})")
        }
        ConnectionError::NetworkTimeout => "no answer from the broker in time".into(),
        ConnectionError::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(t: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, t)
    }

    #[test]
    fn a_certificate_refused_after_the_handshake_is_refused_not_unreachable() {
        use rumqttc::StateError;
        use rumqttc::mqttbytes::Error as Bytes;
        let alert = || rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        // TLS 1.3: the alert comes at the first read, as MQTT bytes.
        let read =
            ConnectionError::MqttState(StateError::Deserialization(Bytes::Io(wrapped(alert()))));
        assert_eq!(classify(&read), FailureKind::Refused);
        let io = ConnectionError::Io(wrapped(alert()));
        assert_eq!(classify(&io), FailureKind::Refused);
        let handshake = ConnectionError::Tls(rumqttc::TlsError::Io(wrapped(
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        )));
        assert_eq!(classify(&handshake), FailureKind::TlsError);
        let login = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(classify(&login), FailureKind::Refused);
        let closed =
            ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&closed), FailureKind::Unreachable);
    }
}

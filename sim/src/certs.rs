//! A test certificate authority (rcgen): a CA, server certificates for
//! `127.0.0.1` and `localhost`, client certificates with a given CN, as PEM
//! text and as files. Two unrelated [`TestCa`]s make "wrong certificates":
//! a client certificate the broker does not trust, or a broker the client
//! does not trust.
//!
//! Keys are ECDSA P-256 (rcgen's default), keys written as PKCS#8 PEM.
//! Everything is made in memory for one test run; nothing is ever valid
//! outside it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct CertPem {
    /// The certificate (PEM, `BEGIN CERTIFICATE`).
    pub cert: String,
    /// Its private key (PEM, PKCS#8: `BEGIN PRIVATE KEY`).
    pub key: String,
}

/// A certificate and its key written to files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate's PEM file.
    pub cert: PathBuf,
    /// The key's PEM file (mode 0600).
    pub key: PathBuf,
    /// The same, in memory.
    pub pem: CertPem,
}

/// A certificate authority for one test run.
pub struct TestCa {
    name: String,
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &self.name).finish()
    }
}

impl TestCa {
    /// A new self-signed CA whose subject CN is `name`.
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "zenchef-edge tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            name: name.to_string(),
            cert,
            key,
        })
    }

    /// The CA's subject CN.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `path` (directories created); answers
    /// `path`.
    pub fn write_cert(&self, path: &Path) -> anyhow::Result<PathBuf> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.cert_pem())?;
        Ok(path.to_path_buf())
    }

    /// A server certificate for `127.0.0.1` and `localhost` (CN `cn`,
    /// extended key usage serverAuth), signed by this CA.
    pub fn server(&self, cn: &str) -> anyhow::Result<CertPem> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into()?),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, cn)
    }

    /// A client certificate whose subject CN is `cn` (extended key usage
    /// clientAuth), signed by this CA.
    pub fn client(&self, cn: &str) -> anyhow::Result<CertPem> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, cn)
    }

    fn sign(&self, mut params: CertificateParams, cn: &str) -> anyhow::Result<CertPem> {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// [`TestCa::server`] written to `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
    pub fn server_files(&self, dir: &Path, stem: &str, cn: &str) -> anyhow::Result<CertFiles> {
        write_files(dir, stem, self.server(cn)?)
    }

    /// [`TestCa::client`] written to `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
    pub fn client_files(&self, dir: &Path, stem: &str, cn: &str) -> anyhow::Result<CertFiles> {
        write_files(dir, stem, self.client(cn)?)
    }
}

/// Writes `pem` as `<dir>/<stem>.crt` and `<dir>/<stem>.key` (the key mode
/// 0600, as a box keeps it).
pub fn write_files(dir: &Path, stem: &str, pem: CertPem) -> anyhow::Result<CertFiles> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &pem.cert)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)?;
    f.write_all(pem.key.as_bytes())?;
    Ok(CertFiles { cert, key, pem })
}

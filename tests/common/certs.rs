//! Certificates generated at test time (rcgen): a CA, server certificates
//! for localhost / 127.0.0.1, client certificates naming a client by SPIFFE
//! ID, written to a private directory removed when the test ends. No key
//! material is committed.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

static DIRS: AtomicU64 = AtomicU64::new(0);

/// Every server certificate of the tests expires 2030-01-01T00:00:00Z.
pub const SERVER_NOT_AFTER: (i32, u8, u8) = (2030, 1, 1);
/// 2030-01-01 in Unix seconds: 60 years of 365 days from 1970 plus the 15
/// leap days 1972…2028, times 86 400.
pub const SERVER_NOT_AFTER_UNIX_S: u64 = (60 * 365 + 15) * 86_400;

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, PEM, and the certificate's DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 with this serial.
    pub fn server(&self, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.serial_number = Some(SerialNumber::from(serial));
        let (y, m, d) = SERVER_NOT_AFTER;
        params.not_after = rcgen::date_time_ymd(y, m, d);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            // Redis cluster nodes connect to each other with their own certificate.
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    /// A client certificate whose one URI SAN is `spiffe_id`.
    pub fn client(&self, spiffe_id: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id.try_into().unwrap()));
        params.distinguished_name.push(DnType::CommonName, "client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A private directory for certificate files, removed on drop.
pub struct CertDir {
    pub path: PathBuf,
}

impl CertDir {
    pub fn new() -> CertDir {
        let path = std::env::temp_dir().join(format!(
            "callauth-test-certs-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        CertDir { path }
    }

    /// Writes `contents` to `name` atomically (a temporary file renamed
    /// over it, as a Kubernetes Secret volume swaps its files).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let target = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
        target
    }

    /// Writes a certificate and key as `<stem>.crt` / `<stem>.key`.
    pub fn write_pair(&self, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{stem}.crt"), &leaf.cert_pem),
            self.write(&format!("{stem}.key"), &leaf.key_pem),
        )
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Default for CertDir {
    fn default() -> Self {
        CertDir::new()
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

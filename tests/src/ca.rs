//! A certificate authority of a test's own (TLS to PostgreSQL through `pgproxy`).

#![allow(clippy::unwrap_used)] // test set-up: a failure is the test's

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority of the test's own, its certificate written to a PEM file.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem_file: PathBuf,
}

impl Ca {
    /// A new CA; `tag` names it.
    pub fn new(tag: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("clerk-actix test CA {tag}"),
        );
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_file = std::env::temp_dir().join(format!(
            "clerk_actix_test_ca_{}_{tag}_{}.pem",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&pem_file, cert.pem()).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem_file,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn server_cert(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    /// Its certificate's PEM file.
    pub fn path(&self) -> &str {
        self.pem_file.to_str().unwrap()
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

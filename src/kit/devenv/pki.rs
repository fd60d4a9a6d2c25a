//! Throwaway PKI for one control plane: a CA, a serving certificate for the
//! loopback addresses and a service-account signing key.
//!
//! Everything is ECDSA P-256: rcgen can only generate RSA keys with aws-lc-rs,
//! and kube-apiserver accepts EC keys for serving and for service-account
//! tokens (ES256).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::DevEnvError;

/// PEM material written to the control plane's `certs/` directory.
pub struct Pki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub service_account_key_pem: String,
    pub service_account_pub_pem: String,
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> DevEnvError {
    move |source| DevEnvError::Pki { what, source }
}

impl Pki {
    /// Generates fresh keys and certificates; nothing is reused between runs.
    pub fn generate() -> Result<Self, DevEnvError> {
        let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA parameters"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sparkjobrun devenv CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(pki_err("CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().map_err(pki_err("serving key"))?;
        let sans = [
            "127.0.0.1",
            "::1",
            "localhost",
            "kubernetes",
            "kubernetes.default.svc",
        ]
        .map(str::to_owned);
        let mut serving_params =
            CertificateParams::new(sans.to_vec()).map_err(pki_err("serving parameters"))?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params
            .signed_by(&serving_key, &issuer)
            .map_err(pki_err("serving certificate"))?;

        let sa_key = KeyPair::generate().map_err(pki_err("service-account key"))?;

        Ok(Self {
            ca_cert_pem: ca_cert.pem(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            service_account_key_pem: sa_key.serialize_pem(),
            service_account_pub_pem: sa_key.public_key_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_material() {
        let pki = Pki::generate().expect("pki");
        assert!(pki.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            pki.serving_cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(pki.serving_key_pem.contains("PRIVATE KEY"));
        assert!(pki.service_account_key_pem.contains("PRIVATE KEY"));
        assert!(pki.service_account_pub_pem.contains("PUBLIC KEY"));
        assert_ne!(pki.serving_key_pem, pki.service_account_key_pem);
    }
}

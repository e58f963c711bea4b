//! Test certificates, made at run time with rcgen: a CA and leaf certificates it signs. Tests write them
//! into their own temp dir, so no key is ever committed and every run has fresh ones.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};

/// A self-signed certificate authority.
pub struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A leaf certificate: its PEM, its key's PEM, and its DER (for fingerprints).
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// The CA's certificate, as PEM.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for `name` (CN and DNS SAN, and 127.0.0.1 as an IP SAN), with rcgen's default
    /// serial and validity.
    pub fn leaf(&self, name: &str) -> Leaf {
        self.sign(name, |_| {})
    }

    /// As [`Self::leaf`], with a chosen serial and valid until the end of `year`: rotation tests tell
    /// two certificates for the same name apart by these.
    pub fn leaf_until(&self, name: &str, serial: u64, year: i32) -> Leaf {
        self.sign(name, |params| {
            params.serial_number = Some(SerialNumber::from(serial));
            params.not_after = rcgen::date_time_ymd(year, 12, 31);
        })
    }

    fn sign(&self, name: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// Writes `text` to `dir/name` beside and renames it over, so an agent watching the file never reads it
/// half-written.
pub fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

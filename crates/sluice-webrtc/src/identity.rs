//! The relay's DTLS certificate and the `a=fingerprint` values of
//! RFC 8122 §5 that bind a certificate to an SDP.
//!
//! One self-signed ECDSA P-256 certificate is made at start-up (rcgen on
//! ring) unless the operator supplies one; its SHA-256 fingerprint goes in
//! every answer. The browser's certificate is checked against the
//! fingerprint of its offer, in constant time.

use std::fmt;

use ring::digest;
use subtle::ConstantTimeEq;

/// Why a certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// rcgen refused to make the certificate.
    #[error("could not generate the DTLS certificate: {0}")]
    Generate(String),
    /// The certificate file holds no PEM `CERTIFICATE` that parses.
    #[error("the certificate is not a PEM X.509 certificate: {0}")]
    Certificate(String),
    /// The key file holds no PKCS#8 PEM private key sluice can sign with.
    #[error("the private key is not a PEM PKCS#8 key (ECDSA P-256/P-384, Ed25519 or RSA): {0}")]
    PrivateKey(String),
    /// The private key is not the certificate's.
    #[error("the private key does not belong to the certificate (their public keys differ)")]
    Mismatch,
}

/// The relay's DTLS certificate and private key (both DER).
#[derive(Clone)]
pub struct DtlsIdentity {
    pub(crate) certificate: dimpl::DtlsCertificate,
    fingerprint: Fingerprint,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    /// Makes a fresh self-signed ECDSA P-256 certificate with a random
    /// serial (Firefox refuses two certificates with one serial).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice");
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| IdentityError::Generate("no system randomness".into()))?;
        serial[0] &= 0x7f; // a positive INTEGER
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Self::from_der(cert.der().to_vec(), key.serialize_der()))
    }

    /// Uses an existing certificate (DER) and its PKCS#8 private key (DER).
    /// The key is checked when the first handshake signs with it.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Self {
        let fingerprint = Fingerprint::of(HashAlgorithm::Sha256, &certificate);
        Self {
            certificate: dimpl::DtlsCertificate {
                certificate,
                private_key,
            },
            fingerprint,
        }
    }

    /// The operator's certificate and private key, both PEM (the first
    /// `CERTIFICATE` of `certificate_pem` is the one browsers see; the key
    /// is PKCS#8). Refused unless the key's public key is the
    /// certificate's: a mismatched pair would only fail at the first
    /// browser's handshake, long after start-up.
    pub fn from_pem(certificate_pem: &str, private_key_pem: &str) -> Result<Self, IdentityError> {
        use x509_cert::der::Decode;

        let certificate = pem::parse_many(certificate_pem)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")
            .ok_or_else(|| IdentityError::Certificate("no BEGIN CERTIFICATE block".into()))?
            .into_contents();
        let parsed = x509_cert::Certificate::from_der(&certificate)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let key = rcgen::KeyPair::from_pem(private_key_pem)
            .map_err(|e| IdentityError::PrivateKey(e.to_string()))?;
        let certified = parsed
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes();
        if !bool::from(certified.ct_eq(key.public_key_raw())) {
            return Err(IdentityError::Mismatch);
        }
        Ok(Self::from_der(certificate, key.serialize_der()))
    }

    /// The certificate's SHA-256 fingerprint, for the answer's `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate.certificate
    }
}

/// A hash function of RFC 8122's registry that browsers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `sha-256`, what every current browser sends.
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl HashAlgorithm {
    fn ring(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// The SDP token.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }
}

/// Why an `a=fingerprint` value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// A hash sluice does not accept (sha-1, md5, or unknown).
    #[error("a=fingerprint uses {0:?}; sluice accepts sha-256, sha-384 or sha-512")]
    UnsupportedHash(String),
    /// Not colon-separated hex bytes of the hash's length.
    #[error("a=fingerprint value is not {expected} colon-separated hex bytes")]
    BadValue {
        /// The hash's output length.
        expected: usize,
    },
}

/// A certificate fingerprint: algorithm and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    algorithm: HashAlgorithm,
    digest: [u8; 64],
    len: usize,
}

impl Fingerprint {
    /// The fingerprint of `certificate_der` under `algorithm`.
    pub fn of(algorithm: HashAlgorithm, certificate_der: &[u8]) -> Self {
        let d = digest::digest(algorithm.ring(), certificate_der);
        let mut digest = [0; 64];
        digest[..d.as_ref().len()].copy_from_slice(d.as_ref());
        Self {
            algorithm,
            digest,
            len: d.as_ref().len(),
        }
    }

    /// Parses the value of `a=fingerprint:` (`sha-256 AB:CD:…`).
    pub fn parse(value: &str) -> Result<Self, FingerprintError> {
        let (name, hex) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let algorithm = match name.to_ascii_lowercase().as_str() {
            "sha-256" => HashAlgorithm::Sha256,
            "sha-384" => HashAlgorithm::Sha384,
            "sha-512" => HashAlgorithm::Sha512,
            _ => return Err(FingerprintError::UnsupportedHash(name.to_owned())),
        };
        let expected = algorithm.ring().output_len();
        let bad = FingerprintError::BadValue { expected };
        let mut digest = [0; 64];
        let mut len = 0;
        for pair in hex.trim().split(':') {
            if len == expected || pair.len() != 2 {
                return Err(bad);
            }
            digest[len] = u8::from_str_radix(pair, 16).map_err(|_| bad.clone())?;
            len += 1;
        }
        if len != expected {
            return Err(bad);
        }
        Ok(Self {
            algorithm,
            digest,
            len,
        })
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Whether `certificate_der` has this fingerprint (constant time).
    pub fn matches(&self, certificate_der: &[u8]) -> bool {
        let other = Self::of(self.algorithm, certificate_der);
        bool::from(self.digest[..self.len].ct_eq(&other.digest[..other.len]))
    }
}

impl fmt::Display for Fingerprint {
    /// The SDP form: `sha-256 AB:CD:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.name())?;
        for (i, b) in self.digest[..self.len].iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_identity_has_a_sha256_fingerprint_that_round_trips() {
        let id = DtlsIdentity::generate().unwrap();
        let shown = id.fingerprint().to_string();
        assert!(shown.starts_with("sha-256 "), "{shown}");
        assert_eq!(shown.len(), "sha-256 ".len() + 32 * 3 - 1);
        let parsed = Fingerprint::parse(&shown).unwrap();
        assert!(parsed.matches(id.certificate_der()));
        let other = DtlsIdentity::generate().unwrap();
        assert!(!parsed.matches(other.certificate_der()));
        // Lower-case hex and algorithm name are accepted too.
        assert_eq!(Fingerprint::parse(&shown.to_lowercase()).unwrap(), parsed);
    }

    /// An operator's PEM pair is taken with its own fingerprint; a key of
    /// another certificate, a key file given as the certificate and
    /// garbage are refused with what is wrong.
    #[test]
    fn a_pem_certificate_and_key_load_and_mismatches_are_refused() {
        let pair = |name: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), key.serialize_pem(), cert.der().to_vec())
        };
        let (cert, key, der) = pair("a.example");
        let id = DtlsIdentity::from_pem(&cert, &key).unwrap();
        assert_eq!(id.certificate_der(), der.as_slice());
        assert!(id.fingerprint().matches(&der));
        assert_eq!(
            id.fingerprint(),
            &Fingerprint::of(HashAlgorithm::Sha256, &der)
        );

        let (_, other_key, _) = pair("b.example");
        assert!(matches!(
            DtlsIdentity::from_pem(&cert, &other_key),
            Err(IdentityError::Mismatch)
        ));
        assert!(matches!(
            DtlsIdentity::from_pem(&key, &key),
            Err(IdentityError::Certificate(_))
        ));
        assert!(matches!(
            DtlsIdentity::from_pem(&cert, &cert),
            Err(IdentityError::PrivateKey(_))
        ));
        assert!(matches!(
            DtlsIdentity::from_pem(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &key
            ),
            Err(IdentityError::Certificate(_))
        ));
    }

    #[test]
    fn bad_fingerprints_say_what_is_wrong() {
        assert_eq!(
            Fingerprint::parse("sha-1 AB:CD").unwrap_err(),
            FingerprintError::UnsupportedHash("sha-1".into())
        );
        for bad in ["sha-256", "sha-256 AB:CD", "sha-256 ZZ", "sha-256 ABC:DE"] {
            assert_eq!(
                Fingerprint::parse(bad).unwrap_err(),
                FingerprintError::BadValue { expected: 32 },
                "{bad}"
            );
        }
        let too_long = format!("sha-256 {}", ["AB"; 33].join(":"));
        assert!(Fingerprint::parse(&too_long).is_err());
    }
}

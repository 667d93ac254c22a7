//! The public-key half of every DTLS handshake on `ring`: dimpl's
//! `rust-crypto` provider with its ECDHE groups, ECDSA signing and ECDSA
//! verification replaced.
//!
//! Why: a profile of `cargo bench -p sluice-webrtc --bench handshake`
//! (perf, relay and client both on rust-crypto) put 78% of a handshake's
//! CPU in the `p256` crate's field arithmetic (the relay signs its
//! ServerKeyExchange and verifies the browser's CertificateVerify, both
//! ECDSA P-256) and 12% in `curve25519-dalek` (the X25519 exchange).
//! ring's P-256 is the nistz256 assembly and its X25519 the fiat code;
//! ring is already in the build (rcgen, rustls, the DTLS certificate's
//! fingerprint), so this costs no new dependency and no C build of its
//! own, where dimpl's `aws-lc-rs` provider would compile aws-lc with
//! cmake on CI. Figures: bench/README.md, "DTLS handshakes on ring".
//!
//! Everything else stays rust-crypto's: the record ciphers (AES-GCM on
//! AES-NI), the transcript hashes, HMAC/PRF, randomness. Whatever ring does
//! not cover is handed to the rust-crypto provider unchanged, so nothing
//! dimpl accepted before is refused now: a SEC1 (not PKCS#8) private key,
//! a signature with a hash the ring key does not fix (ring binds the hash
//! to the key), a certificate ring cannot read.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use dimpl::crypto::{
    ActiveKeyExchange, Buf, CryptoProvider, HashAlgorithm, KeyProvider, NamedGroup,
    SignatureAlgorithm, SignatureVerifier, SigningKey, SupportedKxGroup, check_verify_scheme,
    rust_crypto,
};
use dimpl::{CryptoError, CryptoOperation};
use ring::agreement;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use x509_cert::der::Decode;
use x509_cert::spki::ObjectIdentifier;

/// `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The provider every sluice DTLS endpoint uses (relay and test client).
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: KX_GROUPS,
        signature_verification: &VERIFIER,
        key_provider: &KEYS,
        ..fallback().clone()
    }
}

/// dimpl's rust-crypto provider, for what ring does not do here.
fn fallback() -> &'static CryptoProvider {
    static FALLBACK: OnceLock<CryptoProvider> = OnceLock::new();
    FALLBACK.get_or_init(rust_crypto::default_provider)
}

/// The groups in rust-crypto's order of preference: X25519, P-256, P-384.
static KX_GROUPS: &[&dyn SupportedKxGroup] = &[
    &RingKx(NamedGroup::X25519),
    &RingKx(NamedGroup::Secp256r1),
    &RingKx(NamedGroup::Secp384r1),
];

#[derive(Debug)]
struct RingKx(NamedGroup);

fn agreement_of(group: NamedGroup) -> Option<&'static agreement::Algorithm> {
    match group {
        NamedGroup::X25519 => Some(&agreement::X25519),
        NamedGroup::Secp256r1 => Some(&agreement::ECDH_P256),
        NamedGroup::Secp384r1 => Some(&agreement::ECDH_P384),
        _ => None,
    }
}

impl SupportedKxGroup for RingKx {
    fn name(&self) -> NamedGroup {
        self.0
    }

    fn start_exchange(&self, mut buf: Buf) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        let algorithm =
            agreement_of(self.0).ok_or(CryptoError::UnsupportedKeyExchangeGroup(self.0))?;
        let secret = agreement::EphemeralPrivateKey::generate(algorithm, &SystemRandom::new())
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::GenerateEphemeralKey))?;
        let public = secret
            .compute_public_key()
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::ComputePublicKey))?;
        buf.clear();
        // X25519: the 32-byte u-coordinate; P-256/P-384: the uncompressed
        // point RFC 8422 §5.4 requires, as rust-crypto writes them.
        buf.extend_from_slice(public.as_ref());
        Ok(Box::new(RingExchange {
            group: self.0,
            algorithm,
            secret,
            public: buf,
        }))
    }
}

struct RingExchange {
    group: NamedGroup,
    algorithm: &'static agreement::Algorithm,
    secret: agreement::EphemeralPrivateKey,
    public: Buf,
}

impl fmt::Debug for RingExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl ActiveKeyExchange for RingExchange {
    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn complete(self: Box<Self>, peer_pub: &[u8], out: &mut Buf) -> Result<(), CryptoError> {
        let group = self.group;
        let peer = agreement::UnparsedPublicKey::new(self.algorithm, peer_pub);
        // ring refuses a point off the curve (P-256/P-384) and an X25519
        // result of all zeros (a low-order point, RFC 7748 §6.1).
        agreement::agree_ephemeral(self.secret, &peer, |shared| {
            out.clear();
            out.extend_from_slice(shared);
        })
        .map_err(|_| CryptoError::InvalidPublicKey(group))
    }

    fn group(&self) -> NamedGroup {
        self.group
    }
}

static VERIFIER: RingVerifier = RingVerifier;

#[derive(Debug)]
struct RingVerifier;

/// The ring algorithm for an EC certificate key and a TLS hash, with the
/// key's SEC1 point; `None` for anything ring is not used for here.
fn verification_of(
    cert_der: &[u8],
    hash_alg: HashAlgorithm,
) -> Option<(
    &'static signature::EcdsaVerificationAlgorithm,
    NamedGroup,
    Vec<u8>,
)> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return None;
    }
    let curve: ObjectIdentifier = spki.algorithm.parameters.as_ref()?.decode_as().ok()?;
    let group = match curve {
        dimpl::crypto::OID_P256 => NamedGroup::Secp256r1,
        dimpl::crypto::OID_P384 => NamedGroup::Secp384r1,
        _ => return None,
    };
    let algorithm = match (group, hash_alg) {
        (NamedGroup::Secp256r1, HashAlgorithm::SHA256) => &signature::ECDSA_P256_SHA256_ASN1,
        (NamedGroup::Secp256r1, HashAlgorithm::SHA384) => &signature::ECDSA_P256_SHA384_ASN1,
        (NamedGroup::Secp384r1, HashAlgorithm::SHA256) => &signature::ECDSA_P384_SHA256_ASN1,
        (NamedGroup::Secp384r1, HashAlgorithm::SHA384) => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    };
    let point = spki.subject_public_key.as_bytes()?.to_vec();
    Some((algorithm, group, point))
}

impl SignatureVerifier for RingVerifier {
    fn verify_signature(
        &self,
        cert_der: &[u8],
        data: &[u8],
        signature: &[u8],
        hash_alg: HashAlgorithm,
        sig_alg: SignatureAlgorithm,
    ) -> Result<(), CryptoError> {
        let Some((algorithm, group, point)) = (sig_alg == SignatureAlgorithm::ECDSA)
            .then(|| verification_of(cert_der, hash_alg))
            .flatten()
        else {
            // Whatever ring is not used for gets rust-crypto's answer
            // (and its precise error).
            return fallback()
                .signature_verification
                .verify_signature(cert_der, data, signature, hash_alg, sig_alg);
        };
        check_verify_scheme(sig_alg, hash_alg, group)?;
        signature::UnparsedPublicKey::new(algorithm, &point)
            .verify(data, signature)
            .map_err(|_| CryptoError::SignatureVerificationFailed {
                signature: sig_alg,
                hash: hash_alg,
                group,
            })
    }
}

static KEYS: RingKeys = RingKeys;

#[derive(Debug)]
struct RingKeys;

/// A private key ring has parsed, shared by every handshake that signs
/// with it: dimpl loads the key once per connection, and parsing checks
/// the key pair with a scalar multiplication, as costly as a signature.
#[derive(Debug)]
struct LoadedKey {
    der: Arc<[u8]>,
    key: Arc<EcdsaKeyPair>,
    /// The hash ring's key signs with.
    hash: HashAlgorithm,
}

/// The keys in use: the relay's one identity (and, in tests and the
/// bench, the client's). Bounded; the oldest is forgotten first.
const LOADED_KEYS: usize = 4;

fn ring_key(key_der: &[u8]) -> Option<(Arc<[u8]>, Arc<EcdsaKeyPair>, HashAlgorithm)> {
    static LOADED: Mutex<VecDeque<LoadedKey>> = Mutex::new(VecDeque::new());
    let hit = |loaded: &VecDeque<LoadedKey>| {
        loaded
            .iter()
            .find(|k| *k.der == *key_der)
            .map(|k| (Arc::clone(&k.der), Arc::clone(&k.key), k.hash))
    };
    // A panic elsewhere while holding the lock leaves the list whole.
    if let Some(found) = hit(&LOADED.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Some(found);
    }
    let rng = SystemRandom::new();
    let (key, hash) = [
        (
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            HashAlgorithm::SHA256,
        ),
        (
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            HashAlgorithm::SHA384,
        ),
    ]
    .into_iter()
    .find_map(|(algorithm, hash)| {
        EcdsaKeyPair::from_pkcs8(algorithm, key_der, &rng)
            .ok()
            .map(|key| (key, hash))
    })?;
    let loaded = LoadedKey {
        der: Arc::from(key_der),
        key: Arc::new(key),
        hash,
    };
    let found = (Arc::clone(&loaded.der), Arc::clone(&loaded.key), hash);
    let mut keys = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() == LOADED_KEYS {
        keys.pop_front();
    }
    keys.push_back(loaded);
    Some(found)
}

impl KeyProvider for RingKeys {
    fn load_private_key(&self, key_der: &[u8]) -> Result<Box<dyn SigningKey>, CryptoError> {
        match ring_key(key_der) {
            Some((der, key, hash)) => Ok(Box::new(RingSigningKey {
                key,
                hash,
                der,
                fallback: None,
            })),
            // A SEC1 key, or PKCS#8 without its public key: rust-crypto's
            // (which refuses what it cannot read either).
            None => fallback().key_provider.load_private_key(key_der),
        }
    }
}

struct RingSigningKey {
    key: Arc<EcdsaKeyPair>,
    /// The hash ring's key signs with.
    hash: HashAlgorithm,
    der: Arc<[u8]>,
    /// The same key on rust-crypto, loaded the first time another hash is
    /// asked for (rust-crypto signs a P-256 or P-384 key with either).
    fallback: Option<Box<dyn SigningKey>>,
}

impl fmt::Debug for RingSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingSigningKey")
            .field("public_key_len", &self.key.public_key().as_ref().len())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl SigningKey for RingSigningKey {
    fn sign(
        &mut self,
        data: &[u8],
        hash_alg: HashAlgorithm,
        out: &mut Buf,
    ) -> Result<(), CryptoError> {
        if hash_alg != self.hash {
            let fallback = match &mut self.fallback {
                Some(key) => key,
                empty => empty.insert(fallback().key_provider.load_private_key(&self.der)?),
            };
            return fallback.sign(data, hash_alg, out);
        }
        let signature = self
            .key
            .sign(&SystemRandom::new(), data)
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::Sign))?;
        out.clear();
        out.extend_from_slice(signature.as_ref());
        Ok(())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }

    /// The curve's own hash, as rust-crypto answers.
    fn hash_algorithm(&self) -> HashAlgorithm {
        self.hash
    }

    /// Both, in rust-crypto's order for either curve, so negotiation is
    /// what it was (the hash ring does not fix is signed by rust-crypto).
    fn supported_hash_algorithms(&self) -> &[HashAlgorithm] {
        &[HashAlgorithm::SHA256, HashAlgorithm::SHA384]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DtlsIdentity;

    /// Each ring exchange agrees with rust-crypto's on the other side.
    #[test]
    fn each_group_agrees_with_rust_crypto() {
        for group in [
            NamedGroup::X25519,
            NamedGroup::Secp256r1,
            NamedGroup::Secp384r1,
        ] {
            let ring = provider()
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .unwrap();
            let rc = fallback()
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .unwrap();
            let a = ring.start_exchange(Buf::new()).unwrap();
            let b = rc.start_exchange(Buf::new()).unwrap();
            assert_eq!(a.pub_key().len(), b.pub_key().len(), "{group:?}");
            let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
            let (mut a_out, mut b_out) = (Buf::new(), Buf::new());
            a.complete(&b_pub, &mut a_out).unwrap();
            b.complete(&a_pub, &mut b_out).unwrap();
            assert!(!a_out.is_empty());
            assert_eq!(&a_out[..], &b_out[..], "{group:?}");
        }
    }

    /// A peer key off the curve (or X25519's all-zero point) is refused.
    #[test]
    fn a_bad_peer_key_is_refused() {
        for (group, bad) in [
            (NamedGroup::X25519, vec![0u8; 32]),
            (NamedGroup::Secp256r1, vec![4u8; 65]),
            (NamedGroup::Secp256r1, vec![]),
            (NamedGroup::Secp384r1, vec![4u8; 97]),
        ] {
            let kx = provider()
                .kx_groups
                .iter()
                .find(|g| g.name() == group)
                .unwrap();
            let exchange = kx.start_exchange(Buf::new()).unwrap();
            assert!(
                matches!(
                    exchange.complete(&bad, &mut Buf::new()),
                    Err(CryptoError::InvalidPublicKey(g)) if g == group
                ),
                "{group:?}"
            );
        }
    }

    /// ring's signature verifies on rust-crypto and the other way round,
    /// for the relay's own certificate; a changed message fails on both.
    #[test]
    fn signatures_cross_verify_with_rust_crypto() {
        let identity = DtlsIdentity::generate().unwrap();
        let (cert, key) = (
            &identity.certificate.certificate,
            &identity.certificate.private_key,
        );
        let message = b"client_random server_random ServerECDHParams";
        let mut ring_key = provider().key_provider.load_private_key(key).unwrap();
        let mut rc_key = fallback().key_provider.load_private_key(key).unwrap();
        assert!(format!("{ring_key:?}").starts_with("RingSigningKey"));
        for hash in [HashAlgorithm::SHA256, HashAlgorithm::SHA384] {
            let (mut by_ring, mut by_rc) = (Buf::new(), Buf::new());
            ring_key.sign(message, hash, &mut by_ring).unwrap();
            rc_key.sign(message, hash, &mut by_rc).unwrap();
            for (verifier, name) in [
                (provider().signature_verification, "ring"),
                (fallback().signature_verification, "rust-crypto"),
            ] {
                for sig in [&by_ring, &by_rc] {
                    verifier
                        .verify_signature(cert, message, sig, hash, SignatureAlgorithm::ECDSA)
                        .unwrap_or_else(|e| panic!("{name} {hash:?}: {e}"));
                    assert!(
                        verifier
                            .verify_signature(cert, b"other", sig, hash, SignatureAlgorithm::ECDSA)
                            .is_err(),
                        "{name} {hash:?}"
                    );
                }
            }
        }
        // Not a certificate: refused, as rust-crypto refuses it.
        assert!(
            provider()
                .signature_verification
                .verify_signature(
                    b"junk",
                    message,
                    &[0; 70],
                    HashAlgorithm::SHA256,
                    SignatureAlgorithm::ECDSA
                )
                .is_err()
        );
    }
}

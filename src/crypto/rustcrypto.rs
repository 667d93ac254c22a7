//! The `aes-gcm` crate backend (RustCrypto): AES-NI and CLMUL picked at run
//! time by the crate's CPU feature detection, portable code elsewhere.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};

use super::{AeadBackend, CryptoError, OpenJob, SealJob};

/// AES-GCM through the `aes-gcm` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoGcm;

/// An expanded `aes-gcm` key (round keys and the GHASH key).
// Made once per leg, kept in place; see `AnyGcmKey`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum RustCryptoKey {
    /// AEAD_AES_128_GCM.
    Aes128(Aes128Gcm),
    /// AEAD_AES_256_GCM.
    Aes256(Aes256Gcm),
}

impl std::fmt::Debug for RustCryptoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            Self::Aes128(_) => "RustCryptoKey::Aes128",
            Self::Aes256(_) => "RustCryptoKey::Aes256",
        })
    }
}

impl AeadBackend for RustCryptoGcm {
    type Key = RustCryptoKey;

    fn name(&self) -> &'static str {
        "aes-gcm"
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        let bad = |_| CryptoError::BadKeyLength(raw.len());
        match raw.len() {
            16 => Ok(RustCryptoKey::Aes128(
                Aes128Gcm::new_from_slice(raw).map_err(bad)?,
            )),
            32 => Ok(RustCryptoKey::Aes256(
                Aes256Gcm::new_from_slice(raw).map_err(bad)?,
            )),
            n => Err(CryptoError::BadKeyLength(n)),
        }
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        for job in jobs {
            let nonce = Nonce::from_slice(&job.nonce);
            let sealed = match job.key {
                RustCryptoKey::Aes128(k) => k.encrypt_in_place_detached(nonce, job.aad, job.data),
                RustCryptoKey::Aes256(k) => k.encrypt_in_place_detached(nonce, job.aad, job.data),
            };
            // The crate refuses only inputs over 2^36 bytes; an SRTP packet
            // is bounded by the 64 KiB UDP datagram it came in.
            #[allow(clippy::expect_used)]
            let tag = sealed.expect("aes-gcm seals any packet-sized input");
            job.tag.copy_from_slice(&tag);
        }
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        for job in jobs {
            let nonce = Nonce::from_slice(&job.nonce);
            let tag = Tag::from_slice(job.tag);
            let opened = match job.key {
                RustCryptoKey::Aes128(k) => {
                    k.decrypt_in_place_detached(nonce, job.aad, job.data, tag)
                }
                RustCryptoKey::Aes256(k) => {
                    k.decrypt_in_place_detached(nonce, job.aad, job.data, tag)
                }
            };
            job.authentic = opened.is_ok();
        }
    }
}

//! The `ring` backend: BoringSSL's hand-tuned AES-GCM assembly (AES-NI,
//! PCLMULQDQ, and the AVX/VAES paths where the CPU has them).

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::{AeadBackend, CryptoError, OpenJob, SealJob};

/// AES-GCM through `ring`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingGcm;

impl AeadBackend for RingGcm {
    // `LessSafeKey` because SRTP builds its own nonces from the packet
    // index (RFC 7714 §8.1), which is exactly the case ring names it for.
    type Key = LessSafeKey;

    fn name(&self) -> &'static str {
        "ring"
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        let algorithm = match raw.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => return Err(CryptoError::BadKeyLength(n)),
        };
        let key =
            UnboundKey::new(algorithm, raw).map_err(|_| CryptoError::BadKeyLength(raw.len()))?;
        Ok(LessSafeKey::new(key))
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        for job in jobs {
            let nonce = Nonce::assume_unique_for_key(job.nonce);
            // ring refuses only inputs longer than GCM's 2^36-byte limit; a
            // packet comes from a 64 KiB datagram.
            #[allow(clippy::expect_used)]
            let tag = job
                .key
                .seal_in_place_separate_tag(nonce, Aad::from(job.aad), job.data)
                .expect("ring seals any packet-sized input");
            job.tag.copy_from_slice(tag.as_ref());
        }
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        for job in jobs {
            let nonce = Nonce::assume_unique_for_key(job.nonce);
            job.authentic = job
                .key
                .open_in_place_separate_tag(
                    nonce,
                    Aad::from(job.aad),
                    Tag::from(*job.tag),
                    job.data,
                    0..,
                )
                .is_ok();
        }
    }
}

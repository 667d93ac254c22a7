//! The per-packet cryptographic transforms with their precomputed keys:
//! AES-GCM nonce formation (RFC 7714 §8.1 for SRTP, §9.1 for SRTCP) and
//! AES-CM with HMAC-SHA1 (RFC 3711 §4.1.1 IV, §4.2 authentication).

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::SrtpError;
use super::keys::{Protocol, SessionKeys};
use super::{MasterKey, SrtpProfile};
use crate::crypto::{AeadBackend, GCM_NONCE_LEN};

type Aes128CtrCore = ctr::CtrCore<aes::Aes128, ctr::flavors::Ctr128BE>;

/// One direction's SRTP or SRTCP transform with its key schedule.
// Made once per session and never moved per packet; see `AnyGcmKey`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform<K> {
    /// AEAD_AES_128_GCM / AEAD_AES_256_GCM.
    Gcm { key: K, salt: [u8; GCM_NONCE_LEN] },
    /// AES_CM_128_HMAC_SHA1_*.
    Cm(CmHmac),
}

impl<K> std::fmt::Debug for Transform<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gcm { .. } => "Transform::Gcm",
            Self::Cm(_) => "Transform::Cm",
        })
    }
}

impl<K> Transform<K> {
    /// Derives the session keys of `protocol` and expands them once.
    pub(crate) fn new<B: AeadBackend<Key = K>>(
        backend: &B,
        master: &MasterKey,
        protocol: Protocol,
    ) -> Result<Self, SrtpError> {
        let profile = master.profile();
        let keys = SessionKeys::derive(master, protocol);
        if profile.is_aead() {
            let mut salt = [0; GCM_NONCE_LEN];
            salt.copy_from_slice(&keys.salt[..GCM_NONCE_LEN]);
            let key = backend.key(&keys.cipher[..profile.master_key_len()])?;
            Ok(Self::Gcm { key, salt })
        } else {
            Ok(Self::Cm(CmHmac::new(profile, &keys)))
        }
    }
}

/// AES-128-CM encryption and HMAC-SHA1 authentication keys, expanded.
pub(crate) struct CmHmac {
    aes: aes::Aes128,
    salt: [u8; 14],
    /// HMAC with the inner and outer pads already absorbed; cloned per
    /// packet, which copies two SHA-1 states instead of rehashing the key.
    mac: Hmac<Sha1>,
}

impl CmHmac {
    fn new(profile: SrtpProfile, keys: &SessionKeys) -> Self {
        debug_assert!(!profile.is_aead());
        // 16-byte key and 20-byte auth key are fixed sizes for AES-CM-128.
        #[allow(clippy::expect_used)]
        Self {
            aes: <aes::Aes128 as KeyInit>::new_from_slice(&keys.cipher[..16])
                .expect("16-byte AES-128 key"),
            salt: keys.salt,
            mac: <Hmac<Sha1> as Mac>::new_from_slice(&keys.auth)
                .expect("HMAC takes any key length"),
        }
    }

    /// XORs the AES-CM keystream for (`ssrc`, `index`) into `data`.
    pub(crate) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let iv = cm_iv(&self.salt, ssrc, index);
        // Cloning copies the expanded round keys; nothing is re-expanded.
        let core = Aes128CtrCore::inner_iv_init(self.aes.clone(), &iv.into());
        StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
    }

    /// Writes the HMAC-SHA1 of `parts`, truncated to `tag.len()`, into `tag`.
    pub(crate) fn tag(&self, parts: &[&[u8]], tag: &mut [u8]) {
        let full = self.full_tag(parts);
        tag.copy_from_slice(&full[..tag.len()]);
    }

    /// Whether `tag` is the truncated HMAC-SHA1 of `parts` (constant time).
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let full = self.full_tag(parts);
        full[..tag.len()].ct_eq(tag).into()
    }

    fn full_tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// RFC 7714 §8.1: `(00 00 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt`.
pub(crate) fn gcm_rtp_nonce(salt: &[u8; GCM_NONCE_LEN], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = [0u8; GCM_NONCE_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    // Bytes 6..12 are the 48-bit index: ROC then SEQ.
    iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    xor_in(&mut iv, salt);
    iv
}

/// RFC 7714 §9.1: `(00 00 ‖ SSRC ‖ 00 00 ‖ 0 ‖ SRTCP index) XOR salt`.
pub(crate) fn gcm_rtcp_nonce(salt: &[u8; GCM_NONCE_LEN], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; GCM_NONCE_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&index.to_be_bytes());
    xor_in(&mut iv, salt);
    iv
}

/// RFC 3711 §4.1.1: `IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    xor_in(&mut iv[4..8], &ssrc.to_be_bytes());
    xor_in(&mut iv[8..14], &index.to_be_bytes()[2..]);
    iv
}

fn xor_in(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::unhex;

    /// RFC 7714 §16.1.1 states the IV for SSRC 5501a0b2, ROC 0, SEQ f17b.
    #[test]
    fn rfc7714_rtp_nonce() {
        let salt: [u8; 12] = unhex("517569642070726f2071756f").try_into().unwrap();
        assert_eq!(
            gcm_rtp_nonce(&salt, 0x5501_a0b2, 0xf17b).to_vec(),
            unhex("51753c6580c2726f20718414")
        );
    }

    /// RFC 7714 §17.1 states the IV for SSRC "Mars", SRTCP index 5d4.
    #[test]
    fn rfc7714_rtcp_nonce() {
        let salt: [u8; 12] = unhex("517569642070726f2071756f").try_into().unwrap();
        assert_eq!(
            gcm_rtcp_nonce(&salt, 0x4d61_7273, 0x5d4).to_vec(),
            unhex("517524055203726f207170bb")
        );
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key
    /// 2B7E1516..., salt F0F1...FD, SSRC 0, index 0, including the blocks
    /// at the end of the 2^16-block segment.
    #[test]
    fn rfc3711_appendix_b2_keystream() {
        let cm = CmHmac {
            aes: <aes::Aes128 as KeyInit>::new_from_slice(&unhex(
                "2B7E151628AED2A6ABF7158809CF4F3C",
            ))
            .unwrap(),
            salt: unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
            mac: <Hmac<Sha1> as Mac>::new_from_slice(&[0; 20]).unwrap(),
        };
        assert_eq!(
            cm_iv(&cm.salt, 0, 0).to_vec(),
            unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
        );
        let mut stream = vec![0u8; 0xff02 * 16];
        cm.apply_keystream(0, 0, &mut stream);
        assert_eq!(
            stream[..48].to_vec(),
            unhex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
        assert_eq!(
            stream[0xfeff * 16..0xff00 * 16].to_vec(),
            unhex("EC8CDF7398607CB0F2D21675EA9EA1E4")
        );
        assert_eq!(
            stream[0xff00 * 16..0xff01 * 16].to_vec(),
            unhex("362B7C3C6773516318A077D7FC5073AE")
        );
        assert_eq!(
            stream[0xff01 * 16..0xff02 * 16].to_vec(),
            unhex("6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    #[test]
    fn cm_iv_places_ssrc_and_index() {
        let iv = cm_iv(&[0; 14], 0x0102_0304, 0x0a0b_0c0d_0e0f);
        assert_eq!(iv.to_vec(), unhex("00000000 01020304 0a0b0c0d0e0f 0000"));
    }
}

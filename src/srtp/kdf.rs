//! The SRTP key derivation function: AES in counter mode as a PRF, keyed
//! with the master key (RFC 3711 §4.3.1-§4.3.3, key derivation rate 0).
//! AES-256 master keys use AES-256 as the PRF (RFC 6188 §6); the 96-bit
//! GCM master salt takes the place of the 112-bit one, zero-padded on the
//! right (RFC 7714 §11), as libsrtp does.

use aes::cipher::{KeyIvInit, StreamCipher};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// The key derivation labels of RFC 3711 §4.3.1 and §4.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Label {
    RtpCipher = 0x00,
    RtpAuth = 0x01,
    RtpSalt = 0x02,
    RtcpCipher = 0x03,
    RtcpAuth = 0x04,
    RtcpSalt = 0x05,
}

/// Fills `out` with the PRF output for `label`.
///
/// With KDR 0, `r = 0`, so `x = (label << 48) XOR master_salt` and the
/// output is the AES-CM keystream under IV `x << 16` (§4.3.3).
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: Label, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    // At most 14 bytes: MasterKey holds 12 (GCM) or 14 (AES-CM).
    let salt = &master_salt[..master_salt.len().min(14)];
    iv[..salt.len()].copy_from_slice(salt);
    // The label sits 48 bits above the bottom of the 112-bit x, i.e. in
    // byte 7 of the 14-byte big-endian value.
    iv[7] ^= label as u8;
    out.fill(0);
    match master_key.len() {
        32 => Aes256Ctr::new(master_key.into(), &iv.into()).apply_keystream(out),
        16 => Aes128Ctr::new(master_key.into(), &iv.into()).apply_keystream(out),
        // MasterKey::new admits only the profiles' 16- and 32-byte keys.
        n => unreachable!("master keys are 16 or 32 bytes, not {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::unhex;

    fn prf(key: &str, salt: &str, label: Label, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        derive(&unhex(key), &unhex(salt), label, &mut out);
        out
    }

    /// RFC 3711 Appendix B.3, byte for byte.
    #[test]
    fn rfc3711_appendix_b3_key_derivation() {
        let (key, salt) = (
            "E1F97A0D3E018BE0D64FA32C06DE4139",
            "0EC675AD498AFEEBB6960B3AABE6",
        );
        assert_eq!(
            prf(key, salt, Label::RtpCipher, 16),
            unhex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            prf(key, salt, Label::RtpSalt, 14),
            unhex("30CBBC08863D8C85D49DB34A9AE1")
        );
        assert_eq!(
            prf(key, salt, Label::RtpAuth, 94),
            unhex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// RFC 6188 §7.2: the AES-256 PRF.
    #[test]
    fn rfc6188_aes256_key_derivation() {
        let key = "F0F04914B513F2763A1B1FA130F10E2998F6F6E43E4309D1E622A0E332B9F1B6";
        let salt = "3B04803DE51EE7C96423AB5B78D2";
        assert_eq!(
            prf(key, salt, Label::RtpCipher, 32),
            unhex("5BA1064E30EC51613CAD926C5A28EF731EC7FB397F70A960653CAF06554CD8C4")
        );
        assert_eq!(
            prf(key, salt, Label::RtpSalt, 14),
            unhex("FA31791685CA444A9E07C6C64E93")
        );
    }

    /// The GCM profiles' 12-byte master salt, zero-padded to 14 bytes; the
    /// resulting keys are confirmed end to end by the libsrtp interop test.
    #[test]
    fn gcm_master_salt_is_zero_padded() {
        let (key, salt) = (
            "000102030405060708090a0b0c0d0e0f",
            "a0a1a2a3a4a5a6a7a8a9aaab",
        );
        assert_eq!(
            prf(key, salt, Label::RtpCipher, 16),
            unhex("077c6143cb221bc355ff23d5f984a16e")
        );
        assert_eq!(
            prf(key, salt, Label::RtpSalt, 12),
            unhex("9af3e95364ebac9c99c5a7c4")
        );
        assert_eq!(
            prf(key, salt, Label::RtcpCipher, 16),
            unhex("615dcd9042600666f6fd4d9e4fe4519f")
        );
        assert_eq!(
            prf(key, salt, Label::RtcpSalt, 12),
            unhex("fcca937b9112a500dac72269")
        );
    }
}

//! Master keys as signalled (SDES style: master key ‖ master salt, RFC 4568
//! §6.1), and the session keys derived from them once per key (RFC 3711
//! §4.3 with KDR 0; RFC 6188 §6 for AES-256; RFC 7714 §11 for GCM).

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{SrtpError, SrtpProfile};
use crate::srtp::kdf::{Label, derive};

/// The largest master key ‖ salt (AEAD_AES_256_GCM: 32 + 12).
const MAX_MATERIAL: usize = 44;

/// A master key and salt for one profile. Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    #[zeroize(skip)]
    profile: SrtpProfile,
    material: [u8; MAX_MATERIAL],
}

impl MasterKey {
    /// Takes `key ‖ salt` as SDES carries it (base64-decoded).
    pub fn new(profile: SrtpProfile, key_and_salt: &[u8]) -> Result<Self, SrtpError> {
        let expected = profile.key_material_len();
        if key_and_salt.len() != expected {
            return Err(SrtpError::BadMasterKeyLength {
                profile,
                expected,
                got: key_and_salt.len(),
            });
        }
        let mut material = [0; MAX_MATERIAL];
        material[..expected].copy_from_slice(key_and_salt);
        Ok(Self { profile, material })
    }

    /// The profile this key is for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.material[..self.profile.master_key_len()]
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        let key_len = self.profile.master_key_len();
        &self.material[key_len..key_len + self.profile.master_salt_len()]
    }

    /// `key ‖ salt`, as SDES carries it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.material[..self.profile.key_material_len()]
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Session keys for one of SRTP or SRTCP, derived from a master key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SessionKeys {
    /// Encryption key: 16 or 32 bytes used.
    pub(crate) cipher: [u8; 32],
    /// Salt: 12 (GCM) or 14 (AES-CM) bytes used.
    pub(crate) salt: [u8; 14],
    /// HMAC-SHA1 key (AES-CM profiles only).
    pub(crate) auth: [u8; 20],
}

/// Whether keys are derived for SRTP or for SRTCP (they differ by label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Rtp,
    Rtcp,
}

impl SessionKeys {
    /// Derives the session keys of `protocol` from `master`.
    pub(crate) fn derive(master: &MasterKey, protocol: Protocol) -> Self {
        let profile = master.profile();
        let (cipher_label, auth_label, salt_label) = match protocol {
            Protocol::Rtp => (Label::RtpCipher, Label::RtpAuth, Label::RtpSalt),
            Protocol::Rtcp => (Label::RtcpCipher, Label::RtcpAuth, Label::RtcpSalt),
        };
        let mut keys = Self {
            cipher: [0; 32],
            salt: [0; 14],
            auth: [0; 20],
        };
        derive(
            master.key(),
            master.salt(),
            cipher_label,
            &mut keys.cipher[..profile.master_key_len()],
        );
        derive(
            master.key(),
            master.salt(),
            salt_label,
            &mut keys.salt[..profile.master_salt_len()],
        );
        if !profile.is_aead() {
            derive(master.key(), master.salt(), auth_label, &mut keys.auth);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_splits_into_key_and_salt() {
        let material: Vec<u8> = (0..44).collect();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &material).unwrap();
        assert_eq!(key.key(), &material[..32]);
        assert_eq!(key.salt(), &material[32..]);
        assert_eq!(key.as_bytes(), &material[..]);
        assert!(
            !format!("{key:?}").contains("31"),
            "Debug must not print key bytes"
        );
    }

    #[test]
    fn wrong_material_lengths_are_refused_with_the_expected_length() {
        let err = MasterKey::new(SrtpProfile::AesCm128HmacSha1_80, &[0; 28]).unwrap_err();
        assert_eq!(
            err,
            SrtpError::BadMasterKeyLength {
                profile: SrtpProfile::AesCm128HmacSha1_80,
                expected: 30,
                got: 28
            }
        );
    }
}

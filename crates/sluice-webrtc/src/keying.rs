//! The DTLS-SRTP exporter output split into a leg's two SRTP master keys
//! (RFC 5764 §4.2): the exporter yields
//! `client_key ‖ server_key ‖ client_salt ‖ server_salt`; the relay is the
//! DTLS server (`a=setup:passive`), so the client's half protects what the
//! browser sends to the relay and the server's half what the relay sends.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// The DTLS-SRTP protection profiles sluice offers, in its order of
/// preference (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsSrtpProfile {
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001).
    AesCm128HmacSha1_80,
}

impl DtlsSrtpProfile {
    /// Every profile, most preferred first.
    pub const PREFERENCE: [Self; 3] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
    ];

    /// Master key length.
    pub fn key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            Self::AeadAes128Gcm | Self::AesCm128HmacSha1_80 => 16,
        }
    }

    /// Master salt length.
    pub fn salt_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 12,
            Self::AesCm128HmacSha1_80 => 14,
        }
    }

    /// Bytes the exporter must yield for this profile: two keys, two salts.
    pub fn material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// The SDES / API name (sluice's `SrtpProfile` parses it).
    pub fn name(self) -> &'static str {
        match self {
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        }
    }
}

/// Largest master key ‖ salt (AEAD_AES_256_GCM: 32 + 12).
const MAX_KEY_AND_SALT: usize = 44;

/// One direction's master key ‖ master salt, SDES style. Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyAndSalt {
    bytes: [u8; MAX_KEY_AND_SALT],
    len: usize,
}

impl KeyAndSalt {
    /// `key ‖ salt`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for KeyAndSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAndSalt")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The two key sets of a browser leg.
#[derive(Debug, Clone)]
pub struct LegKeying {
    /// The negotiated profile.
    pub profile: DtlsSrtpProfile,
    /// Protects what the browser (DTLS client) sends to the relay.
    pub client_to_relay: KeyAndSalt,
    /// Protects what the relay (DTLS server) sends to the browser.
    pub relay_to_client: KeyAndSalt,
}

/// The exporter gave the wrong number of bytes for the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DTLS-SRTP keying material for {profile:?} must be {expected} bytes, got {got}")]
pub struct KeyingLengthError {
    /// The negotiated profile.
    pub profile: DtlsSrtpProfile,
    /// What RFC 5764 §4.2 says it must be.
    pub expected: usize,
    /// What arrived.
    pub got: usize,
}

impl LegKeying {
    /// Splits exporter output for `profile` (relay = DTLS server).
    pub fn split(profile: DtlsSrtpProfile, material: &[u8]) -> Result<Self, KeyingLengthError> {
        let expected = profile.material_len();
        if material.len() != expected {
            return Err(KeyingLengthError {
                profile,
                expected,
                got: material.len(),
            });
        }
        let (k, s) = (profile.key_len(), profile.salt_len());
        let half = |key_at: usize, salt_at: usize| {
            let mut bytes = [0; MAX_KEY_AND_SALT];
            bytes[..k].copy_from_slice(&material[key_at..key_at + k]);
            bytes[k..k + s].copy_from_slice(&material[salt_at..salt_at + s]);
            KeyAndSalt { bytes, len: k + s }
        };
        Ok(Self {
            profile,
            client_to_relay: half(0, 2 * k),
            relay_to_client: half(k, 2 * k + s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_profile_splits_into_client_and_server_halves() {
        for profile in DtlsSrtpProfile::PREFERENCE {
            let (k, s) = (profile.key_len(), profile.salt_len());
            // Bytes labelled by role: client key 0x1·, server key 0x2·,
            // client salt 0x3·, server salt 0x4·.
            let mut m = Vec::new();
            m.extend((0..k).map(|i| 0x10 | (i as u8 & 0xf)));
            m.extend((0..k).map(|i| 0x20 | (i as u8 & 0xf)));
            m.extend((0..s).map(|i| 0x30 | (i as u8 & 0xf)));
            m.extend((0..s).map(|i| 0x40 | (i as u8 & 0xf)));
            let keys = LegKeying::split(profile, &m).unwrap();
            let c = keys.client_to_relay.as_bytes();
            let r = keys.relay_to_client.as_bytes();
            assert_eq!(c.len(), k + s, "{profile:?}");
            assert!(c[..k].iter().all(|b| b >> 4 == 1));
            assert!(c[k..].iter().all(|b| b >> 4 == 3));
            assert!(r[..k].iter().all(|b| b >> 4 == 2));
            assert!(r[k..].iter().all(|b| b >> 4 == 4));
            assert_eq!(&c[..k], &m[..k]);
            assert_eq!(&r[k..], &m[2 * k + s..]);
        }
    }

    #[test]
    fn lengths_match_rfc_5764_and_7714() {
        assert_eq!(DtlsSrtpProfile::AeadAes256Gcm.material_len(), 88);
        assert_eq!(DtlsSrtpProfile::AeadAes128Gcm.material_len(), 56);
        assert_eq!(DtlsSrtpProfile::AesCm128HmacSha1_80.material_len(), 60);
        let err = LegKeying::split(DtlsSrtpProfile::AeadAes128Gcm, &[0; 60]).unwrap_err();
        assert_eq!(err.expected, 56);
        assert_eq!(err.got, 60);
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let keys = LegKeying::split(DtlsSrtpProfile::AeadAes128Gcm, &[0xAB; 56]).unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab,"));
    }
}

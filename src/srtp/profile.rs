//! The four SRTP protection profiles sluice speaks, with the lengths each
//! one fixes: RFC 7714 §12 and §14 (AEAD_AES_128_GCM, AEAD_AES_256_GCM) and
//! RFC 3711 §5 with RFC 4568 §6.2 (AES_CM_128_HMAC_SHA1_80 and _32).

use std::fmt;
use std::str::FromStr;

/// An SRTP protection profile (the SDES crypto-suite name is its `name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// AES-256 in GCM, 16-byte tag, 12-byte salt (RFC 7714). The default.
    AeadAes256Gcm,
    /// AES-128 in GCM, 16-byte tag, 12-byte salt (RFC 7714).
    AeadAes128Gcm,
    /// AES-128 counter mode with an 80-bit HMAC-SHA1 tag (RFC 3711).
    AesCm128HmacSha1_80,
    /// As `_80`, but a 32-bit SRTP tag; SRTCP keeps 80 bits (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    /// Every profile, for tests and benchmarks that must cover them all.
    pub const ALL: [Self; 4] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// The crypto-suite name used in SDES (RFC 4568) and in sluice's API.
    pub fn name(self) -> &'static str {
        match self {
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Whether the profile is an AEAD (GCM) one.
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes256Gcm | Self::AeadAes128Gcm)
    }

    /// Master (and session) encryption key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master (and session) salt length in bytes.
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// Length of SDES key material: master key ‖ master salt.
    pub fn key_material_len(self) -> usize {
        self.master_key_len() + self.master_salt_len()
    }

    /// Authentication tag length on SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 16,
            Self::AesCm128HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 => 4,
        }
    }

    /// Authentication tag length on SRTCP packets.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 10 }
    }

    /// Bytes SRTP protection adds to an RTP packet.
    pub fn rtp_overhead(self) -> usize {
        self.rtp_tag_len()
    }

    /// Bytes SRTCP protection adds to an RTCP packet (tag and E‖index word).
    pub fn rtcp_overhead(self) -> usize {
        self.rtcp_tag_len() + SRTCP_INDEX_LEN
    }
}

/// Length of the SRTCP E-flag and index word (RFC 3711 §3.4).
pub(crate) const SRTCP_INDEX_LEN: usize = 4;

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile name sluice does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown SRTP profile {0:?}: use AEAD_AES_256_GCM, AEAD_AES_128_GCM, \
     AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32"
)]
pub struct UnknownProfile(pub String);

impl FromStr for SrtpProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in SrtpProfile::ALL {
            assert_eq!(p.name().parse::<SrtpProfile>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        let err = "AES_CM_256_HMAC_SHA1_80"
            .parse::<SrtpProfile>()
            .unwrap_err();
        assert!(err.to_string().contains("AEAD_AES_256_GCM"));
    }

    #[test]
    fn lengths_follow_the_rfcs() {
        use SrtpProfile::*;
        // RFC 7714 §12: 256-bit key + 96-bit salt = 44 bytes of SDES material.
        assert_eq!(AeadAes256Gcm.key_material_len(), 44);
        assert_eq!(AeadAes128Gcm.key_material_len(), 28);
        // RFC 4568 §6.2.1: 128-bit key + 112-bit salt = 30 bytes.
        assert_eq!(AesCm128HmacSha1_80.key_material_len(), 30);
        assert_eq!(AesCm128HmacSha1_32.rtp_tag_len(), 4);
        assert_eq!(AesCm128HmacSha1_32.rtcp_tag_len(), 10);
        assert_eq!(AeadAes256Gcm.rtcp_overhead(), 20);
    }
}

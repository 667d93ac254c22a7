//! The SRTP protection profiles sluice negotiates, and which side of the
//! session a libsrtp context plays.

use crate::ffi;

/// An SRTP protection profile (RFC 5764 §4.1.2 names, RFC 7714 for GCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// AEAD_AES_256_GCM (RFC 7714): 32-octet key, 12-octet salt, 16-octet tag.
    AeadAes256Gcm,
    /// AEAD_AES_128_GCM (RFC 7714): 16-octet key, 12-octet salt, 16-octet tag.
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711 default): 16-octet key, 14-octet
    /// salt, 10-octet tag.
    AesCm128HmacSha1_80,
    /// AES_CM_128_HMAC_SHA1_32 (RFC 4568): as `_80` but with a 4-octet SRTP
    /// tag; SRTCP keeps the 10-octet tag (RFC 3711 §7.5, and libsrtp's own
    /// `srtp_crypto_policy_set_from_profile_for_rtcp`).
    AesCm128HmacSha1_32,
}

impl Profile {
    /// Every profile, for tests that sweep them.
    pub const ALL: [Self; 4] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// The SDES crypto-suite name (RFC 4568, RFC 7714 §14.1).
    pub const fn name(self) -> &'static str {
        match self {
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The profile with this SDES crypto-suite name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Master key length in octets.
    pub const fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            Self::AeadAes128Gcm | Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 16,
        }
    }

    /// Master salt length in octets: 12 for GCM, 14 for AES-CM.
    pub const fn master_salt_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 12,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 14,
        }
    }

    /// Length of the key‖salt string [`crate::Session::new`] takes.
    pub const fn master_key_and_salt_len(self) -> usize {
        self.master_key_len() + self.master_salt_len()
    }

    /// Octets `protect` appends to an RTP packet (no MKI is ever used here).
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 16,
            Self::AesCm128HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 => 4,
        }
    }

    /// SRTCP authentication tag length. `protect_rtcp` appends this plus the
    /// 4-octet E‖SRTCP-index word.
    pub const fn rtcp_tag_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm | Self::AeadAes128Gcm => 16,
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 => 10,
        }
    }

    /// The libsrtp setters for this profile's SRTP and SRTCP policies.
    pub(crate) fn policy_setters(self) -> (PolicySetter, PolicySetter) {
        match self {
            Self::AeadAes256Gcm => (
                ffi::srtp_crypto_policy_set_aes_gcm_256_16_auth,
                ffi::srtp_crypto_policy_set_aes_gcm_256_16_auth,
            ),
            Self::AeadAes128Gcm => (
                ffi::srtp_crypto_policy_set_aes_gcm_128_16_auth,
                ffi::srtp_crypto_policy_set_aes_gcm_128_16_auth,
            ),
            Self::AesCm128HmacSha1_80 => (
                ffi::srtp_crypto_policy_set_rtp_default,
                ffi::srtp_crypto_policy_set_rtcp_default,
            ),
            // The header warns the 32-bit policy is "intended for use in SRTP,
            // but not in SRTCP"; libsrtp maps this profile's SRTCP to the
            // 80-bit policy, which is what rtcp_default sets.
            Self::AesCm128HmacSha1_32 => (
                ffi::srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32,
                ffi::srtp_crypto_policy_set_rtcp_default,
            ),
        }
    }
}

pub(crate) type PolicySetter = unsafe extern "C" fn(*mut ffi::srtp_crypto_policy_t);

/// Which way a [`crate::Session`] processes packets.
///
/// libsrtp refuses to let one wildcard policy match both directions, so a
/// peer needs one session per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `ssrc_any_outbound`: `protect`/`protect_rtcp`, any SSRC.
    Outbound,
    /// `ssrc_any_inbound`: `unprotect`/`unprotect_rtcp`, any SSRC.
    Inbound,
}

impl Direction {
    pub(crate) const fn ssrc_type(self) -> ffi::srtp_ssrc_type_t {
        match self {
            Self::Outbound => ffi::SSRC_ANY_OUTBOUND,
            Self::Inbound => ffi::SSRC_ANY_INBOUND,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(set: PolicySetter) -> ffi::srtp_crypto_policy_t {
        let mut p = ffi::srtp_crypto_policy_t::default();
        // SAFETY: the setter only writes the fields of the exclusively
        // borrowed struct; it needs no srtp_init.
        unsafe { set(&mut p) };
        p
    }

    #[test]
    fn advertised_lengths_match_what_libsrtp_configures() {
        for profile in Profile::ALL {
            let (rtp, rtcp) = profile.policy_setters();
            let (rtp, rtcp) = (policy(rtp), policy(rtcp));
            let len = |v: std::ffi::c_int| usize::try_from(v).unwrap(); // setters write small positive constants
            // libsrtp's cipher_key_len includes the salt.
            assert_eq!(
                len(rtp.cipher_key_len),
                profile.master_key_and_salt_len(),
                "{profile:?}"
            );
            assert_eq!(len(rtp.auth_tag_len), profile.rtp_tag_len(), "{profile:?}");
            assert_eq!(
                len(rtcp.auth_tag_len),
                profile.rtcp_tag_len(),
                "{profile:?}"
            );
        }
    }
}

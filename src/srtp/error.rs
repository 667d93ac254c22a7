//! What SRTP and SRTCP processing can refuse, one variant per reason, so
//! the relay can count each kind of drop separately.

use crate::crypto::CryptoError;
use crate::rtp::RtpError;

use super::SrtpProfile;

/// Why a packet was not protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// SDES key material of the wrong length for the profile.
    #[error("{profile} needs {expected} bytes of master key and salt, got {got}")]
    BadMasterKeyLength {
        /// The profile the key was for.
        profile: SrtpProfile,
        /// Master key length plus master salt length.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The backend refused a session key.
    #[error("crypto backend: {0}")]
    Crypto(#[from] CryptoError),
    /// The RTP header is malformed.
    #[error("malformed RTP header: {0}")]
    Rtp(#[from] RtpError),
    /// The RTCP header is malformed (RFC 3550 §6.4: version 2, 8 bytes).
    #[error("malformed RTCP header")]
    BadRtcpHeader,
    /// Too short to hold its header and authentication tag.
    #[error("packet of {got} bytes is shorter than the {needed} its header and tag need")]
    TooShort {
        /// Minimum length for this packet.
        needed: usize,
        /// Its length.
        got: usize,
    },
    /// The caller's buffer cannot hold the protected packet (or `len`
    /// exceeds the buffer).
    #[error("buffer of {got} bytes cannot hold {needed}")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The authentication tag did not verify: forged, corrupted, or keyed
    /// for someone else.
    #[error("authentication failed")]
    AuthFailed,
    /// The packet's index was already received (RFC 3711 §3.3.2).
    #[error("replayed packet")]
    Replayed,
    /// The packet's index is behind the replay window.
    #[error("packet is older than the replay window")]
    TooOld,
    /// Protecting would reuse a packet index under the same key, which for
    /// AES-GCM would reveal the keystream; the packet is refused instead.
    #[error("packet index already used for sending under this key")]
    IndexReused,
    /// The index space of the key is used up (2^48 SRTP, 2^31 SRTCP
    /// packets): the master key must be replaced.
    #[error("packet index space exhausted: a new master key is required")]
    KeyExhausted,
    /// More SSRCs than the session admits.
    #[error("more than {limit} SSRCs on one SRTP session")]
    TooManyStreams {
        /// The session's limit.
        limit: usize,
    },
}

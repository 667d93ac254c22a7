//! STUN (RFC 8489, RFC 5389) as ICE-lite needs it: a zero-copy view of a
//! received message ([`StunMessage`]) that checks MESSAGE-INTEGRITY
//! (HMAC-SHA1, short-term credentials) and FINGERPRINT (CRC-32), and a
//! writer ([`MessageWriter`]) that builds Binding requests and responses
//! into the caller's buffer.
//!
//! Written here rather than taken from `rtc-stun` or `stun-rs`: those
//! decode into owned attribute lists (an allocation per check on the media
//! port), and ICE-lite needs six attributes and two checks, about 400 lines
//! we can fuzz and bound ourselves. Nothing here allocates.

mod message;
mod writer;

#[cfg(test)]
mod tests;

pub use message::{Attributes, StunMessage};
pub use writer::MessageWriter;

/// The fixed value in every RFC 5389 header (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header length.
pub const HEADER_LEN: usize = 20;
/// The only method ICE uses.
pub const METHOD_BINDING: u16 = 0x001;
/// FINGERPRINT's XOR constant, "STUN" (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// HMAC-SHA1 output length, the MESSAGE-INTEGRITY value.
const INTEGRITY_LEN: usize = 20;

/// A STUN message class (the C1/C0 bits of the type, RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request, answered by a response.
    Request,
    /// An indication, never answered.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Self::Request => 0x000,
            Self::Indication => 0x010,
            Self::Success => 0x100,
            Self::Error => 0x110,
        }
    }

    fn from_type(message_type: u16) -> Self {
        match message_type & 0x110 {
            0x000 => Self::Request,
            0x010 => Self::Indication,
            0x100 => Self::Success,
            _ => Self::Error,
        }
    }
}

/// Message type from class and method (the interleaved bits of §5).
fn message_type(class: Class, method: u16) -> u16 {
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class.bits()
}

/// Method from a message type.
fn method_of(message_type: u16) -> u16 {
    (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
}

/// The attribute types sluice reads or writes (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// USERNAME: `<relay ufrag>:<peer ufrag>` in an ICE check.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY: HMAC-SHA1 over the message so far.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489); ICE does not use it.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS: the address the request came from.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE): the controlling agent nominates this pair.
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT: CRC-32 of the message so far, XOR "STUN".
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING.
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Why a datagram is not a usable STUN message. Every variant is a drop
/// reason the media port counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than the 20-byte header, or the header's length disagrees
    /// with the datagram.
    #[error("STUN message truncated or its length field disagrees with the datagram")]
    BadLength,
    /// The top two bits are set, or the magic cookie is missing (an
    /// RFC 3489 message, or not STUN at all).
    #[error("not an RFC 5389 STUN message (top bits or magic cookie)")]
    NotStun,
    /// An attribute runs past the end of the message.
    #[error("STUN attribute runs past the end of the message")]
    BadAttribute,
    /// FINGERPRINT is present and wrong, or not the last attribute.
    #[error("STUN FINGERPRINT is wrong or misplaced")]
    BadFingerprint,
    /// No MESSAGE-INTEGRITY where one is required.
    #[error("STUN message has no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not match the key.
    #[error("STUN MESSAGE-INTEGRITY does not match")]
    BadIntegrity,
    /// The caller's buffer cannot hold the message being written.
    #[error("buffer too small for the STUN message")]
    BufferTooSmall,
}

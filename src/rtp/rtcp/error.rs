//! [`RtcpError`]: why an RTCP packet (RFC 3550 §6, RFC 4585 §6, RFC 5104
//! §4.3) could not be parsed or built.

/// Why an RTCP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer than the 4 bytes of a common header are left.
    #[error("RTCP header too short: needs {needed} bytes, has {got}")]
    TooShort { needed: usize, got: usize },
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// The length field says the packet is longer than the bytes left.
    #[error("RTCP length field says {declared} bytes, only {available} left")]
    Truncated { declared: usize, available: usize },
    /// The P bit is set on a packet that is not the last of its compound
    /// (RFC 3550 §6.4.1).
    #[error("RTCP padding on a packet that is not the last in the compound")]
    PaddingNotLast,
    /// The padding count is zero, not a multiple of 4, or larger than the
    /// packet's body.
    #[error("RTCP padding count {count} invalid for a body of {available} bytes")]
    BadPadding { count: u8, available: usize },
    /// The body is too short for what its header and fields announce.
    #[error("RTCP packet type {packet_type} needs {needed} body bytes, has {got}")]
    BodyTooShort {
        packet_type: u8,
        needed: usize,
        got: usize,
    },
    /// A feedback message whose FCI must hold at least one entry has none
    /// (RFC 4585 §6.2.1, RFC 5104 §4.3.1).
    #[error("RTCP feedback type {packet_type} FMT {fmt} has no FCI entries")]
    EmptyFci { packet_type: u8, fmt: u8 },
    /// An FCI that is not a whole number of entries.
    #[error("RTCP feedback type {packet_type} FMT {fmt}: FCI of {len} bytes is not whole entries")]
    BadFciLength {
        packet_type: u8,
        fmt: u8,
        len: usize,
    },
    /// The caller's output buffer is too small for the packet.
    #[error("output buffer too small: needs {needed} bytes, has {got}")]
    BufferTooSmall { needed: usize, got: usize },
    /// More entries than the packet's count field can hold (31 report
    /// blocks or BYE sources, 255 REMB sources).
    #[error("{got} entries given, at most {max} fit")]
    TooManyEntries { max: usize, got: usize },
    /// A BYE reason longer than its 8-bit length can say.
    #[error("BYE reason of {0} bytes, at most 255")]
    ReasonTooLong(usize),
    /// A packet longer than the 16-bit length field can say.
    #[error("RTCP packet of {len} bytes exceeds the length field")]
    TooLong { len: usize },
}

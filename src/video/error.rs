//! Why a video RTP payload could not be taken apart.

/// A payload that breaks its RTP payload format (RFC 7741, RFC 6184).
/// Every variant is network input the depacketizer refused; none is a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DepacketizeError {
    /// Fewer bytes than the payload descriptor or header needs.
    #[error("payload of {got} bytes is shorter than its {needed}-byte header")]
    TooShort {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes there were.
        got: usize,
    },
    /// An H.264 NAL unit type this depacketizer does not take in
    /// packetization mode 1 (STAP-B, MTAP16/24, FU-B) or a reserved one.
    #[error("H.264 NAL unit type {0} is not allowed in packetization mode 1")]
    UnsupportedNal(u8),
    /// The H.264 forbidden_zero_bit is set (RFC 6184 §5.3).
    #[error("H.264 NAL unit with the forbidden bit set")]
    ForbiddenBit,
    /// A STAP-A aggregation unit whose size runs past the payload, or is 0.
    #[error("STAP-A unit of {size} bytes with only {left} left")]
    BadAggregate {
        /// The size field.
        size: usize,
        /// Bytes left in the payload.
        left: usize,
    },
    /// An FU-A fragment that continues a NAL unit whose start was not seen,
    /// or starts one while another is still open.
    #[error("FU-A fragment out of order")]
    FragmentOrder,
    /// A frame ended with an FU-A NAL unit still open (its end was lost).
    #[error("frame ended inside an FU-A NAL unit")]
    UnfinishedFragment,
    /// A VP8 packet continues a frame whose first packet was not seen.
    #[error("VP8 packet continues a partition that never started")]
    NoFrameStart,
    /// The assembled frame would exceed the frame size limit.
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// Why a frame could not be cut into RTP payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    /// The payload size limit leaves no room for data after the headers.
    #[error("a payload limit of {mtu} bytes is too small (at least {min})")]
    MtuTooSmall {
        /// The limit given.
        mtu: usize,
        /// The least that works.
        min: usize,
    },
    /// The frame holds nothing to send (no bytes, or no NAL unit).
    #[error("empty frame")]
    EmptyFrame,
}

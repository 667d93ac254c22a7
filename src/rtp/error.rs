//! [`RtpError`]: why an RTP packet (RFC 3550 §5.1, §5.3.1; RFC 8285 §4)
//! could not be parsed or built.

use super::extension::ExtensionForm;

/// Why an RTP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The buffer ends before the header, its CSRC list or its header
    /// extension does.
    #[error("RTP packet too short: needs {needed} bytes, has {got}")]
    TooShort { needed: usize, got: usize },
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The P bit is set but the padding count (the last byte) is zero or
    /// larger than the bytes after the header.
    #[error("RTP padding count {count} not in 1..={available}")]
    BadPadding { count: u8, available: usize },
    /// A header extension element runs past the end of the extension block.
    #[error(
        "RTP header extension element at offset {offset} needs {needed} bytes, block has {available}"
    )]
    ExtensionElementTruncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The caller's output buffer is too small for the packet.
    #[error("output buffer too small: needs {needed} bytes, has {got}")]
    BufferTooSmall { needed: usize, got: usize },
    /// More than 15 CSRCs were given to the builder.
    #[error("{0} CSRCs given, at most 15 fit")]
    TooManyCsrcs(usize),
    /// An extension element id the chosen form cannot carry (one-byte form:
    /// 1..=14; two-byte form: 1..=255).
    #[error("header extension element id {id} invalid for the {form:?} form")]
    BadExtensionId { id: u8, form: ExtensionForm },
    /// An extension element length the chosen form cannot carry (one-byte
    /// form: 1..=16 bytes; two-byte form: 0..=255 bytes).
    #[error("header extension element {id} has {len} bytes, invalid for the {form:?} form")]
    BadExtensionLength {
        id: u8,
        len: usize,
        form: ExtensionForm,
    },
    /// Header extension data that is not a whole number of 32-bit words or
    /// longer than the 16-bit length field can say (65535 words).
    #[error("header extension data of {len} bytes: not a multiple of 4 up to 262140")]
    BadExtensionBlockLength { len: usize },
}

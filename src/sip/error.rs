//! [`ParseError`]: why bytes are not a SIP message (RFC 3261 §7, §18.3).

/// Why a datagram is not a SIP message sluice accepts.
///
/// The UAS counts each one and drops the datagram; a request whose headers
/// parsed but whose body is wrong ([`ParseError::BodyTruncated`],
/// [`ParseError::BadContentLength`]) is answered 400 where possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than [`super::MAX_MESSAGE_SIZE`].
    #[error("message of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    /// Empty, or only the CRLFs of a keep-alive (RFC 5626 §3.5.1).
    #[error("empty message")]
    Empty,
    /// The header section never ends with an empty line.
    #[error("header section not terminated by an empty line")]
    Unterminated,
    /// The start line and headers are not UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// The first line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// A header line without a colon, with an empty or non-token name, or
    /// a continuation line before any header.
    #[error("malformed header line {line}")]
    BadHeader {
        /// 1-based line number in the message.
        line: usize,
    },
    /// More header values than [`super::MAX_HEADERS`].
    #[error("more than the allowed number of header values")]
    TooManyHeaders,
    /// Content-Length not a number, too large, or given twice differently.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Content-Length promises more body than the datagram carries.
    #[error("Content-Length {declared} but only {available} body bytes")]
    BodyTruncated {
        /// The Content-Length value.
        declared: usize,
        /// Bytes after the header section.
        available: usize,
    },
}

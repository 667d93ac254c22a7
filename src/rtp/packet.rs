//! [`RtpPacket`]: a zero-copy view of a whole RTP packet (RFC 3550 §5.1):
//! the header, the payload and the padding the P bit announces.

use super::error::RtpError;
use super::header::RtpHeader;

/// A validated view of a plaintext RTP packet over the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    header: RtpHeader<'a>,
    payload: &'a [u8],
    padding_len: usize,
    bytes: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses `buf` as one RTP packet: [`RtpHeader::parse`], then, when the
    /// P bit is set, the padding count in the last byte, which counts
    /// itself and must fit in the bytes after the header (RFC 3550 §5.1).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let header = RtpHeader::parse(buf)?;
        // parse checked the header is a prefix of buf.
        let after_header = buf.get(header.header_len()..).unwrap_or_default();
        let padding_len = if header.padding() {
            let Some(&count) = after_header.last() else {
                return Err(RtpError::TooShort {
                    needed: header.header_len() + 1,
                    got: buf.len(),
                });
            };
            let available = after_header.len();
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
            usize::from(count)
        } else {
            0
        };
        let payload_len = after_header.len() - padding_len;
        let payload = after_header.get(..payload_len).unwrap_or_default();
        Ok(Self {
            header,
            payload,
            padding_len,
            bytes: buf,
        })
    }

    #[must_use]
    pub const fn header(&self) -> &RtpHeader<'a> {
        &self.header
    }

    /// The payload, without the padding.
    #[must_use]
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Padding bytes at the end, the count byte included; 0 without P.
    #[must_use]
    pub const fn padding_len(&self) -> usize {
        self.padding_len
    }

    /// The whole packet.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::types::{SeqNum, Ssrc};

    const HEADER: [u8; 12] = [0x80, 0x08, 0, 7, 0, 0, 0, 160, 0, 0, 0, 42];

    fn with_tail(first: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v[0] = first;
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn payload_without_padding() {
        let buf = with_tail(0x80, &[1, 2, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.padding_len(), 0);
        assert_eq!(p.header().sequence(), SeqNum(7));
        assert_eq!(p.header().ssrc(), Ssrc(42));
        assert_eq!(p.as_bytes(), &buf[..]);
    }

    #[test]
    fn padding_is_stripped() {
        // Payload [1, 2, 3], then 3 bytes of padding counting themselves.
        let buf = with_tail(0xa0, &[1, 2, 3, 0, 0, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.padding_len(), 3);
        // Padding may take up everything after the header.
        let buf = with_tail(0xa0, &[0, 0, 0, 4]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(p.padding_len(), 4);
    }

    #[test]
    fn rejects_bad_padding() {
        let zero = with_tail(0xa0, &[1, 2, 0]);
        assert_eq!(
            RtpPacket::parse(&zero),
            Err(RtpError::BadPadding {
                count: 0,
                available: 3
            })
        );
        let too_long = with_tail(0xa0, &[1, 2, 4]);
        assert_eq!(
            RtpPacket::parse(&too_long),
            Err(RtpError::BadPadding {
                count: 4,
                available: 3
            })
        );
        let nothing_after = with_tail(0xa0, &[]);
        assert_eq!(
            RtpPacket::parse(&nothing_after),
            Err(RtpError::TooShort {
                needed: 13,
                got: 12
            })
        );
    }

    #[test]
    fn header_errors_pass_through() {
        assert_eq!(
            RtpPacket::parse(&HEADER[..4]),
            Err(RtpError::TooShort { needed: 12, got: 4 })
        );
        let v1 = with_tail(0x40, &[]);
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
    }
}

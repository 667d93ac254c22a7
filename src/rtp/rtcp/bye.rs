//! Goodbye packets (BYE, PT 203, RFC 3550 §6.6): the sources leaving and
//! an optional reason.

use super::{GOODBYE, RtcpError};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// A BYE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [[u8; 4]],
    reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// Reads a BYE body (after the common header) naming `count` sources.
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let list_len = 4 * usize::from(count);
        let short = |needed| RtcpError::BodyTooShort {
            packet_type: GOODBYE,
            needed,
            got: body.len(),
        };
        let mut r = Reader::new(body);
        let list = r.bytes(list_len).ok_or(short(list_len))?;
        // Bytes after the list, if any, start with the reason's length;
        // what follows the reason is padding to 32 bits.
        let reason = match r.u8() {
            None => None,
            Some(len) => {
                let len = usize::from(len);
                Some(r.bytes(len).ok_or(short(list_len + 1 + len))?)
            }
        };
        Ok(Self {
            ssrcs: list.as_chunks().0,
            reason,
        })
    }

    /// The sources that are leaving.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = Ssrc> + 'a {
        self.ssrcs.iter().map(|b| Ssrc(u32::from_be_bytes(*b)))
    }

    /// Why they leave, as the sender wrote it (meant to be UTF-8).
    #[must_use]
    pub const fn reason(&self) -> Option<&'a [u8]> {
        self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_reason() {
        let body = [
            0x00, 0x00, 0x00, 0x01, // SSRC 1
            0x00, 0x00, 0x00, 0x02, // CSRC 2
            0x05, b'l', b'a', b't', b'e', b'r', 0x00, 0x00, // reason, padded
        ];
        let bye = Bye::parse(2, &body).unwrap();
        assert!(bye.ssrcs().eq([Ssrc(1), Ssrc(2)]));
        assert_eq!(bye.reason(), Some(&b"later"[..]));

        let bye = Bye::parse(2, &body[..8]).unwrap();
        assert_eq!(bye.ssrcs().len(), 2);
        assert_eq!(bye.reason(), None);

        let bye = Bye::parse(0, &[]).unwrap();
        assert_eq!((bye.ssrcs().len(), bye.reason()), (0, None));
    }

    #[test]
    fn malformed() {
        let short = |needed, got| RtcpError::BodyTooShort {
            packet_type: 203,
            needed,
            got,
        };
        assert_eq!(Bye::parse(3, &[0; 8]), Err(short(12, 8)));
        // Reason length 9 but 3 bytes follow it.
        assert_eq!(
            Bye::parse(1, &[0, 0, 0, 1, 9, b'a', b'b', b'c']),
            Err(short(14, 8))
        );
    }
}

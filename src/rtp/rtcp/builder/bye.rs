//! Builder for goodbye packets (RFC 3550 §6.6).

use super::{count_field, finish, put_header};
use crate::rtp::rtcp::{GOODBYE, RtcpError};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Writer;

/// A BYE for up to 31 sources, with an optional reason of up to 255 bytes.
#[derive(Debug, Clone, Copy)]
pub struct ByeBuilder<'a> {
    pub ssrcs: &'a [Ssrc],
    pub reason: Option<&'a [u8]>,
}

impl ByeBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let count = count_field(self.ssrcs.len())?;
        let reason_len = match self.reason {
            Some(reason) if reason.len() > 255 => {
                return Err(RtcpError::ReasonTooLong(reason.len()));
            }
            Some(reason) => 1 + reason.len(),
            None => 0,
        };
        let body_len = 4 * self.ssrcs.len() + reason_len.next_multiple_of(4);
        let mut w = Writer::new(out);
        put_header(&mut w, count, GOODBYE, body_len)?;
        for ssrc in self.ssrcs {
            w.put_u32(ssrc.0);
        }
        if let Some(reason) = self.reason {
            // Checked above: at most 255 bytes.
            w.put_u8(reason.len() as u8);
            w.put(reason);
            w.put_zeros(reason_len.next_multiple_of(4) - reason_len);
        }
        finish(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{RtcpCompound, RtcpPacket};

    #[test]
    fn bytes_with_padded_reason() {
        let mut out = [0u8; 16];
        let bye = ByeBuilder {
            ssrcs: &[Ssrc(1), Ssrc(2)],
            reason: Some(b"bye"),
        };
        assert_eq!(bye.write(&mut out), Ok(16));
        assert_eq!(
            out,
            [
                0x82, 0xcb, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 3, b'b', b'y', b'e'
            ]
        );
    }

    #[test]
    fn round_trips() {
        let reasons: [Option<&[u8]>; 4] =
            [None, Some(b""), Some(b"gone fishing"), Some(&[b'x'; 255])];
        for reason in reasons {
            let bye = ByeBuilder {
                ssrcs: &[Ssrc(0xdead_beef)],
                reason,
            };
            let mut out = [0u8; 300];
            let n = bye.write(&mut out).unwrap();
            assert_eq!(n % 4, 0);
            let packets: Vec<_> = RtcpCompound::new(&out[..n]).collect();
            let [Ok(RtcpPacket::Bye(got))] = packets[..] else {
                panic!("unexpected {packets:?}");
            };
            assert!(got.ssrcs().eq([Ssrc(0xdead_beef)]));
            assert_eq!(got.reason(), reason);
        }
    }

    #[test]
    fn errors() {
        let long = [0u8; 256];
        let bye = ByeBuilder {
            ssrcs: &[],
            reason: Some(&long),
        };
        assert_eq!(bye.write(&mut [0; 512]), Err(RtcpError::ReasonTooLong(256)));
        let many = [Ssrc(0); 32];
        let bye = ByeBuilder {
            ssrcs: &many,
            reason: None,
        };
        assert_eq!(
            bye.write(&mut [0; 512]),
            Err(RtcpError::TooManyEntries { max: 31, got: 32 })
        );
        let bye = ByeBuilder {
            ssrcs: &many[..1],
            reason: None,
        };
        assert_eq!(
            bye.write(&mut [0; 7]),
            Err(RtcpError::BufferTooSmall { needed: 8, got: 7 })
        );
    }
}

//! Receiver estimated maximum bitrate (REMB): an application-layer
//! feedback message (PSFB FMT 15, RFC 4585 §6.4) whose FCI starts with
//! "REMB" (draft-alvestrand-rmcat-remb-03 §2.2).

use super::feedback::split_feedback;
use super::{PAYLOAD_FEEDBACK, RtcpError};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// The identifier at the start of a REMB FCI.
pub const REMB_IDENTIFIER: [u8; 4] = *b"REMB";

/// Largest mantissa the 18-bit field holds.
const MAX_MANTISSA: u64 = (1 << 18) - 1;

/// A REMB message: the bitrate the receiver estimates it can take, for the
/// listed sources together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    sender_ssrc: Ssrc,
    media_ssrc: Ssrc,
    exponent: u8,
    mantissa: u32,
    ssrcs: &'a [[u8; 4]],
}

impl<'a> Remb<'a> {
    /// Whether a PSFB FMT 15 body carries a REMB (rather than another
    /// application's feedback): the FCI starts with "REMB".
    pub(crate) fn matches(body: &[u8]) -> bool {
        body.get(8..12) == Some(&REMB_IDENTIFIER[..])
    }

    /// Reads a PSFB FMT 15 body whose FCI starts with "REMB".
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = split_feedback(PAYLOAD_FEEDBACK, body)?;
        let short = |needed| RtcpError::BodyTooShort {
            packet_type: PAYLOAD_FEEDBACK,
            needed,
            got: body.len(),
        };
        let mut r = Reader::new(fci);
        let _identifier: &[u8; 4] = r.array().ok_or(short(16))?;
        let [count, e0, m1, m2] = *r.array().ok_or(short(16))?;
        let list_len = 4 * usize::from(count);
        let list = r.bytes(list_len).ok_or(short(16 + list_len))?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            exponent: e0 >> 2,
            mantissa: u32::from_be_bytes([0, e0 & 0x03, m1, m2]),
            ssrcs: list.as_chunks().0,
        })
    }

    #[must_use]
    pub const fn sender_ssrc(&self) -> Ssrc {
        self.sender_ssrc
    }

    /// Unused by REMB; senders set it to 0.
    #[must_use]
    pub const fn media_ssrc(&self) -> Ssrc {
        self.media_ssrc
    }

    /// The 6-bit exponent of the bitrate.
    #[must_use]
    pub const fn exponent(&self) -> u8 {
        self.exponent
    }

    /// The 18-bit mantissa of the bitrate.
    #[must_use]
    pub const fn mantissa(&self) -> u32 {
        self.mantissa
    }

    /// The bitrate, mantissa * 2^exponent bits per second, saturating at
    /// `u64::MAX` (only exponents above 46 can overflow).
    #[must_use]
    pub fn bitrate_bps(&self) -> u64 {
        let exact = u128::from(self.mantissa) << self.exponent;
        u64::try_from(exact).unwrap_or(u64::MAX)
    }

    /// The sources the estimate applies to.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = Ssrc> + 'a {
        self.ssrcs.iter().map(|b| Ssrc(u32::from_be_bytes(*b)))
    }
}

/// Splits a bitrate into the 6-bit exponent and 18-bit mantissa that
/// encode it, rounding down to what the mantissa can hold.
#[must_use]
pub(crate) fn encode_bitrate(bps: u64) -> (u8, u32) {
    let mut exponent = 0u8;
    let mut mantissa = bps;
    while mantissa > MAX_MANTISSA {
        mantissa >>= 1;
        exponent += 1;
    }
    // The loop leaves mantissa at most 18 bits, and exponent at most 46.
    (exponent, mantissa as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_draft_layout() {
        let body = [
            0x00, 0x00, 0x00, 0x01, // SSRC of packet sender
            0x00, 0x00, 0x00, 0x00, // SSRC of media source: unused
            b'R', b'E', b'M', b'B', // unique identifier
            0x02, 0x0b, 0xd0, 0x90, // 2 SSRCs, exp 2, mantissa 0x3d090
            0x00, 0x00, 0x00, 0x0a, // SSRC 10
            0x00, 0x00, 0x00, 0x0b, // SSRC 11
        ];
        assert!(Remb::matches(&body));
        let remb = Remb::parse(&body).unwrap();
        assert_eq!(remb.sender_ssrc(), Ssrc(1));
        assert_eq!(remb.media_ssrc(), Ssrc(0));
        assert_eq!((remb.exponent(), remb.mantissa()), (2, 0x3d090));
        assert_eq!(remb.bitrate_bps(), 1_000_000);
        assert!(remb.ssrcs().eq([Ssrc(10), Ssrc(11)]));
    }

    #[test]
    fn malformed() {
        let mut body = [0u8; 20];
        body[8..12].copy_from_slice(b"REMB");
        body[12] = 3; // three SSRCs announced, one present
        assert_eq!(
            Remb::parse(&body),
            Err(RtcpError::BodyTooShort {
                packet_type: 206,
                needed: 28,
                got: 20
            })
        );
        assert_eq!(
            Remb::parse(&body[..14]),
            Err(RtcpError::BodyTooShort {
                packet_type: 206,
                needed: 16,
                got: 14
            })
        );
        assert!(!Remb::matches(&[0; 16]));
        assert!(!Remb::matches(&body[..11]));
    }

    #[test]
    fn bitrate_encoding() {
        assert_eq!(encode_bitrate(0), (0, 0));
        assert_eq!(encode_bitrate(MAX_MANTISSA), (0, 0x3ffff));
        assert_eq!(encode_bitrate(1_000_000), (2, 250_000));
        assert_eq!(encode_bitrate(u64::MAX), (46, 0x3ffff));
        // The largest exponent saturates when decoded.
        let body = [
            0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(Remb::parse(&body).unwrap().bitrate_bps(), u64::MAX);
    }
}

//! [`RtpHeader`]: a zero-copy view of an RTP header (RFC 3550 §5.1): the
//! fixed 12 bytes, the CSRC list and the header extension (§5.3.1), and
//! nothing after. SRTP (RFC 3711 §3.1) needs exactly this much before it
//! decrypts: the payload and its padding are still encrypted.

use super::error::RtpError;
use super::extension::ExtensionBlock;
use super::types::{PayloadType, SeqNum, Ssrc};
use super::wire::read_u16;

/// Bytes in the fixed part of the header.
pub const FIXED_HEADER_LEN: usize = 12;

/// A validated view of an RTP header over the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader<'a> {
    fixed: &'a [u8; FIXED_HEADER_LEN],
    csrcs: &'a [[u8; 4]],
    extension: Option<ExtensionBlock<'a>>,
    bytes: &'a [u8],
}

impl<'a> RtpHeader<'a> {
    /// Parses the header at the start of `buf`: version 2, room for the CC
    /// CSRCs and, when the X bit is set, for the whole extension block.
    /// The payload and padding are not looked at (see [`super::RtpPacket`]).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let too_short = |needed| RtpError::TooShort {
            needed,
            got: buf.len(),
        };
        let fixed: &[u8; FIXED_HEADER_LEN] =
            buf.first_chunk().ok_or(too_short(FIXED_HEADER_LEN))?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let cc = usize::from(fixed[0] & 0x0f);
        let mut len = FIXED_HEADER_LEN + 4 * cc;
        let csrc_bytes = buf.get(FIXED_HEADER_LEN..len).ok_or(too_short(len))?;
        let (csrcs, _) = csrc_bytes.as_chunks::<4>();

        let extension = if fixed[0] & 0x10 != 0 {
            let ext_start = len;
            let profile = read_u16(buf, ext_start).ok_or(too_short(ext_start + 4))?;
            let words = read_u16(buf, ext_start + 2).ok_or(too_short(ext_start + 4))?;
            len = ext_start + 4 + 4 * usize::from(words);
            let data = buf.get(ext_start + 4..len).ok_or(too_short(len))?;
            Some(ExtensionBlock::new(profile, data))
        } else {
            None
        };
        let bytes = buf.get(..len).ok_or(too_short(len))?;
        Ok(Self {
            fixed,
            csrcs,
            extension,
            bytes,
        })
    }

    /// The version field; always 2 after a successful parse.
    #[must_use]
    pub const fn version(&self) -> u8 {
        self.fixed[0] >> 6
    }

    /// The P bit: the packet ends in padding (whose count is encrypted
    /// under SRTP, so it is not checked here).
    #[must_use]
    pub const fn padding(&self) -> bool {
        self.fixed[0] & 0x20 != 0
    }

    /// The X bit: a header extension follows the CSRC list.
    #[must_use]
    pub const fn extension(&self) -> bool {
        self.fixed[0] & 0x10 != 0
    }

    /// The M bit, whose meaning the payload format defines.
    #[must_use]
    pub const fn marker(&self) -> bool {
        self.fixed[1] & 0x80 != 0
    }

    #[must_use]
    pub const fn payload_type(&self) -> PayloadType {
        PayloadType::from_low_bits(self.fixed[1])
    }

    #[must_use]
    pub const fn sequence(&self) -> SeqNum {
        SeqNum(u16::from_be_bytes([self.fixed[2], self.fixed[3]]))
    }

    #[must_use]
    pub const fn timestamp(&self) -> u32 {
        let f = self.fixed;
        u32::from_be_bytes([f[4], f[5], f[6], f[7]])
    }

    #[must_use]
    pub const fn ssrc(&self) -> Ssrc {
        let f = self.fixed;
        Ssrc(u32::from_be_bytes([f[8], f[9], f[10], f[11]]))
    }

    /// The contributing sources, in header order (CC of them).
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = Ssrc> + 'a {
        self.csrcs.iter().map(|b| Ssrc(u32::from_be_bytes(*b)))
    }

    /// Bytes from the start of the packet to the payload.
    #[must_use]
    pub const fn header_len(&self) -> usize {
        self.bytes.len()
    }

    /// The header extension block, when the X bit is set.
    #[must_use]
    pub const fn extension_block(&self) -> Option<ExtensionBlock<'a>> {
        self.extension
    }

    /// The header's bytes: fixed part, CSRCs and extension.
    #[must_use]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2 P=0 X=0 CC=0, M=1 PT=96, seq 0x1234, ts 0xdeadbeef, SSRC 0x11223344.
    const MINIMAL: [u8; 12] = [
        0x80, 0xe0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x11, 0x22, 0x33, 0x44,
    ];

    #[test]
    fn fixed_fields() {
        let h = RtpHeader::parse(&MINIMAL).unwrap();
        assert_eq!(h.version(), 2);
        assert!(!h.padding() && !h.extension());
        assert!(h.marker());
        assert_eq!(h.payload_type().get(), 96);
        assert_eq!(h.sequence(), SeqNum(0x1234));
        assert_eq!(h.timestamp(), 0xdead_beef);
        assert_eq!(h.ssrc(), Ssrc(0x1122_3344));
        assert_eq!(h.csrcs().count(), 0);
        assert_eq!(h.header_len(), 12);
        assert_eq!(h.extension_block(), None);
    }

    #[test]
    fn csrcs_extension_and_payload_untouched() {
        // V=2 P=1 X=1 CC=2, PT=0; two CSRCs; opaque extension of one word;
        // then "payload" bytes the header must not look at.
        let buf = [
            0xb2, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 9, //
            0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, //
            0x12, 0x34, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe, //
            0x55, 0x00,
        ];
        let h = RtpHeader::parse(&buf).unwrap();
        assert!(h.padding() && h.extension());
        assert!(h.csrcs().eq([Ssrc(1), Ssrc(u32::MAX)]));
        let ext = h.extension_block().unwrap();
        assert_eq!(ext.profile(), 0x1234);
        assert_eq!(ext.data(), &[0xca, 0xfe, 0xba, 0xbe]);
        assert_eq!(h.header_len(), 28);
        assert_eq!(h.as_bytes(), &buf[..28]);
    }

    #[test]
    fn rejects_bad_version() {
        for first in [0x00, 0x40, 0xc0] {
            let mut buf = MINIMAL;
            buf[0] = first;
            assert_eq!(
                RtpHeader::parse(&buf),
                Err(RtpError::BadVersion(first >> 6))
            );
        }
    }

    #[test]
    fn rejects_truncation_everywhere() {
        assert_eq!(
            RtpHeader::parse(&[]),
            Err(RtpError::TooShort { needed: 12, got: 0 })
        );
        assert_eq!(
            RtpHeader::parse(&MINIMAL[..11]),
            Err(RtpError::TooShort {
                needed: 12,
                got: 11
            })
        );
        // CC=15 needs 72 bytes.
        let mut buf = [0u8; 71];
        buf[0] = 0x8f;
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpError::TooShort {
                needed: 72,
                got: 71
            })
        );
        // X=1 but no room for the extension header.
        let mut buf = [0u8; 14];
        buf[0] = 0x90;
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpError::TooShort {
                needed: 16,
                got: 14
            })
        );
        // Extension length of 2 words, only 1 present.
        let mut buf = [0u8; 20];
        buf[0] = 0x90;
        buf[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x02]);
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpError::TooShort {
                needed: 24,
                got: 20
            })
        );
        // The largest length the field can claim.
        buf[14..16].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpError::TooShort {
                needed: 16 + 4 * 65535,
                got: 20
            })
        );
    }
}

//! Reception report blocks (RFC 3550 §6.4.1), carried by sender and
//! receiver reports: per-source loss, jitter and round-trip timing.

use crate::rtp::types::Ssrc;

/// Bytes in one reception report block.
pub const REPORT_BLOCK_LEN: usize = 24;

/// One reception report block (RFC 3550 §6.4.1): what the reporter has
/// received from the source `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportBlock {
    pub ssrc: Ssrc,
    /// Packets lost since the previous report, as a fixed-point fraction
    /// of 256.
    pub fraction_lost: u8,
    /// Packets lost since the start, a 24-bit signed number (duplicates can
    /// make it negative). Builders clamp it to -2^23..2^23-1.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received: cycles in the high 16
    /// bits, the sequence number in the low 16.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from the source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 seconds.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Decodes the 24 bytes of a block.
    #[must_use]
    pub const fn from_bytes(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let [
            s0,
            s1,
            s2,
            s3,
            fl,
            c0,
            c1,
            c2,
            h0,
            h1,
            h2,
            h3,
            j0,
            j1,
            j2,
            j3,
            l0,
            l1,
            l2,
            l3,
            d0,
            d1,
            d2,
            d3,
        ] = *b;
        Self {
            ssrc: Ssrc(u32::from_be_bytes([s0, s1, s2, s3])),
            fraction_lost: fl,
            // Sign-extend 24 bits: put them on top of an i32, shift back.
            cumulative_lost: i32::from_be_bytes([c0, c1, c2, 0]) >> 8,
            highest_seq: u32::from_be_bytes([h0, h1, h2, h3]),
            jitter: u32::from_be_bytes([j0, j1, j2, j3]),
            lsr: u32::from_be_bytes([l0, l1, l2, l3]),
            dlsr: u32::from_be_bytes([d0, d1, d2, d3]),
        }
    }

    /// Encodes the block, clamping `cumulative_lost` to 24 bits as RFC 3550
    /// §6.4.1 asks.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; REPORT_BLOCK_LEN] {
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        let mut out = [0u8; REPORT_BLOCK_LEN];
        let fields = [
            self.ssrc.0.to_be_bytes(),
            [self.fraction_lost, lost[1], lost[2], lost[3]],
            self.highest_seq.to_be_bytes(),
            self.jitter.to_be_bytes(),
            self.lsr.to_be_bytes(),
            self.dlsr.to_be_bytes(),
        ];
        for (dst, src) in out.as_chunks_mut::<4>().0.iter_mut().zip(fields) {
            *dst = src;
        }
        out
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    blocks: core::slice::Iter<'a, [u8; REPORT_BLOCK_LEN]>,
}

impl<'a> ReportBlocks<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            blocks: bytes.as_chunks().0.iter(),
        }
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        self.blocks.next().map(ReportBlock::from_bytes)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.blocks.size_hint()
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}
impl core::iter::FusedIterator for ReportBlocks<'_> {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report block laid out as in RFC 3550 §6.4.1.
    pub(crate) const BLOCK: [u8; 24] = [
        0x00, 0x00, 0x00, 0x02, // SSRC_1
        0x40, 0xff, 0xff, 0xfe, // fraction lost 64/256, cumulative lost -2
        0x00, 0x01, 0x00, 0x10, // 1 cycle, highest seq 16
        0x00, 0x00, 0x00, 0x20, // jitter
        0x11, 0x22, 0x33, 0x44, // LSR
        0x00, 0x01, 0x80, 0x00, // DLSR: 1.5 s
    ];

    pub(crate) const EXPECTED_BLOCK: ReportBlock = ReportBlock {
        ssrc: Ssrc(2),
        fraction_lost: 64,
        cumulative_lost: -2,
        highest_seq: 0x0001_0010,
        jitter: 32,
        lsr: 0x1122_3344,
        dlsr: 0x0001_8000,
    };

    #[test]
    fn report_block_layout() {
        assert_eq!(ReportBlock::from_bytes(&BLOCK), EXPECTED_BLOCK);
        assert_eq!(EXPECTED_BLOCK.to_bytes(), BLOCK);
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed_and_clamped() {
        let mut b = BLOCK;
        b[5..8].copy_from_slice(&[0x7f, 0xff, 0xff]);
        assert_eq!(ReportBlock::from_bytes(&b).cumulative_lost, 0x7f_ffff);
        b[5..8].copy_from_slice(&[0x80, 0x00, 0x00]);
        assert_eq!(ReportBlock::from_bytes(&b).cumulative_lost, -0x80_0000);
        let huge = ReportBlock {
            cumulative_lost: i32::MAX,
            ..EXPECTED_BLOCK
        };
        assert_eq!(huge.to_bytes()[5..8], [0x7f, 0xff, 0xff]);
        let very_negative = ReportBlock {
            cumulative_lost: i32::MIN,
            ..EXPECTED_BLOCK
        };
        assert_eq!(very_negative.to_bytes()[5..8], [0x80, 0x00, 0x00]);
    }
}

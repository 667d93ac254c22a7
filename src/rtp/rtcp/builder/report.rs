//! Builders for sender and receiver reports (RFC 3550 §6.4.1, §6.4.2).

use super::{count_field, finish, put_header};
use crate::rtp::rtcp::{RECEIVER_REPORT, REPORT_BLOCK_LEN, ReportBlock, RtcpError, SENDER_REPORT};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Writer;

/// A sender report with up to 31 report blocks.
#[derive(Debug, Clone, Copy)]
pub struct SenderReportBuilder<'a> {
    pub ssrc: Ssrc,
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub report_blocks: &'a [ReportBlock],
}

impl SenderReportBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let count = count_field(self.report_blocks.len())?;
        let mut w = Writer::new(out);
        let body_len = 24 + REPORT_BLOCK_LEN * self.report_blocks.len();
        put_header(&mut w, count, SENDER_REPORT, body_len)?;
        w.put_u32(self.ssrc.0);
        w.put(&self.ntp_timestamp.to_be_bytes());
        w.put_u32(self.rtp_timestamp);
        w.put_u32(self.packet_count);
        w.put_u32(self.octet_count);
        for block in self.report_blocks {
            w.put(&block.to_bytes());
        }
        finish(w)
    }
}

/// A receiver report with up to 31 report blocks.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReportBuilder<'a> {
    pub ssrc: Ssrc,
    pub report_blocks: &'a [ReportBlock],
}

impl ReceiverReportBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let count = count_field(self.report_blocks.len())?;
        let mut w = Writer::new(out);
        let body_len = 4 + REPORT_BLOCK_LEN * self.report_blocks.len();
        put_header(&mut w, count, RECEIVER_REPORT, body_len)?;
        w.put_u32(self.ssrc.0);
        for block in self.report_blocks {
            w.put(&block.to_bytes());
        }
        finish(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{RtcpCompound, RtcpPacket};

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc: Ssrc(ssrc),
            fraction_lost: 25,
            cumulative_lost: -7,
            highest_seq: 0x0002_0005,
            jitter: 120,
            lsr: 0xabcd_0123,
            dlsr: 65536,
        }
    }

    #[test]
    fn receiver_report_bytes() {
        let mut out = [0u8; 32];
        let rr = ReceiverReportBuilder {
            ssrc: Ssrc(0x0102_0304),
            report_blocks: &[block(9)],
        };
        assert_eq!(rr.write(&mut out), Ok(32));
        assert_eq!(
            out,
            [
                0x81, 0xc9, 0x00, 0x07, // V=2 RC=1 PT=201 length 7
                0x01, 0x02, 0x03, 0x04, // SSRC of packet sender
                0x00, 0x00, 0x00, 0x09, // SSRC_1
                0x19, 0xff, 0xff, 0xf9, // fraction lost, cumulative lost -7
                0x00, 0x02, 0x00, 0x05, // extended highest sequence number
                0x00, 0x00, 0x00, 0x78, // jitter
                0xab, 0xcd, 0x01, 0x23, // LSR
                0x00, 0x01, 0x00, 0x00, // DLSR
            ]
        );
    }

    #[test]
    fn round_trip_sender_report() {
        let blocks = [block(1), block(2), block(3)];
        let sr = SenderReportBuilder {
            ssrc: Ssrc(77),
            ntp_timestamp: 0xe98a_2b40_8000_0000,
            rtp_timestamp: 90_000,
            packet_count: 12,
            octet_count: 3456,
            report_blocks: &blocks,
        };
        let mut out = [0u8; 128];
        let n = sr.write(&mut out).unwrap();
        assert_eq!(n, 28 + 3 * 24);
        let packets: Vec<_> = RtcpCompound::new(&out[..n]).collect();
        let [Ok(RtcpPacket::SenderReport(got))] = packets[..] else {
            panic!("unexpected {packets:?}");
        };
        assert_eq!(got.ssrc(), Ssrc(77));
        assert_eq!(got.ntp_timestamp(), 0xe98a_2b40_8000_0000);
        assert_eq!(
            (got.rtp_timestamp(), got.packet_count(), got.octet_count()),
            (90_000, 12, 3456)
        );
        assert!(got.report_blocks().eq(blocks));
    }

    #[test]
    fn round_trip_receiver_report_in_compound() {
        let mut out = [0u8; 64];
        let first = ReceiverReportBuilder {
            ssrc: Ssrc(1),
            report_blocks: &[],
        };
        let n = first.write(&mut out).unwrap();
        let second = ReceiverReportBuilder {
            ssrc: Ssrc(2),
            report_blocks: &[block(5)],
        };
        let m = second.write(&mut out[n..]).unwrap();
        let ssrcs: Vec<_> = RtcpCompound::new(&out[..n + m])
            .map(|p| match p {
                Ok(RtcpPacket::ReceiverReport(rr)) => (rr.ssrc(), rr.report_blocks().len()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ssrcs, [(Ssrc(1), 0), (Ssrc(2), 1)]);
    }

    #[test]
    fn errors() {
        let blocks = [block(0); 32];
        let rr = ReceiverReportBuilder {
            ssrc: Ssrc(1),
            report_blocks: &blocks,
        };
        assert_eq!(
            rr.write(&mut [0; 1024]),
            Err(RtcpError::TooManyEntries { max: 31, got: 32 })
        );
        let rr = ReceiverReportBuilder {
            ssrc: Ssrc(1),
            report_blocks: &blocks[..1],
        };
        assert_eq!(
            rr.write(&mut [0; 31]),
            Err(RtcpError::BufferTooSmall {
                needed: 32,
                got: 31
            })
        );
    }
}

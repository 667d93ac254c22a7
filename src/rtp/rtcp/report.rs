//! Sender and receiver reports (RFC 3550 §6.4.1, §6.4.2).

use super::report_block::{REPORT_BLOCK_LEN, ReportBlocks};
use super::{RECEIVER_REPORT, RtcpError, SENDER_REPORT};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// A sender report (PT 200, RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    ssrc: Ssrc,
    ntp_timestamp: u64,
    rtp_timestamp: u32,
    packet_count: u32,
    octet_count: u32,
    blocks: &'a [u8],
    extension: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// Reads an SR body (after the common header) with `count` blocks.
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let blocks_len = REPORT_BLOCK_LEN * usize::from(count);
        let err = RtcpError::BodyTooShort {
            packet_type: SENDER_REPORT,
            needed: 24 + blocks_len,
            got: body.len(),
        };
        let mut r = Reader::new(body);
        Ok(Self {
            ssrc: Ssrc(r.u32().ok_or(err)?),
            ntp_timestamp: r.u64().ok_or(err)?,
            rtp_timestamp: r.u32().ok_or(err)?,
            packet_count: r.u32().ok_or(err)?,
            octet_count: r.u32().ok_or(err)?,
            blocks: r.bytes(blocks_len).ok_or(err)?,
            extension: r.rest(),
        })
    }

    /// SSRC of the sender of this report.
    #[must_use]
    pub const fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// The 64-bit NTP wallclock timestamp (seconds since 1900 in the high
    /// 32 bits, fraction in the low 32).
    #[must_use]
    pub const fn ntp_timestamp(&self) -> u64 {
        self.ntp_timestamp
    }

    /// The same instant on the RTP timestamp clock.
    #[must_use]
    pub const fn rtp_timestamp(&self) -> u32 {
        self.rtp_timestamp
    }

    #[must_use]
    pub const fn packet_count(&self) -> u32 {
        self.packet_count
    }

    #[must_use]
    pub const fn octet_count(&self) -> u32 {
        self.octet_count
    }

    #[must_use]
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }

    /// Profile-specific extension bytes after the report blocks.
    #[must_use]
    pub const fn profile_extension(&self) -> &'a [u8] {
        self.extension
    }
}

/// A receiver report (PT 201, RFC 3550 §6.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    ssrc: Ssrc,
    blocks: &'a [u8],
    extension: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// Reads an RR body (after the common header) with `count` blocks.
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let blocks_len = REPORT_BLOCK_LEN * usize::from(count);
        let err = RtcpError::BodyTooShort {
            packet_type: RECEIVER_REPORT,
            needed: 4 + blocks_len,
            got: body.len(),
        };
        let mut r = Reader::new(body);
        Ok(Self {
            ssrc: Ssrc(r.u32().ok_or(err)?),
            blocks: r.bytes(blocks_len).ok_or(err)?,
            extension: r.rest(),
        })
    }

    /// SSRC of the sender of this report.
    #[must_use]
    pub const fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    #[must_use]
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }

    /// Profile-specific extension bytes after the report blocks.
    #[must_use]
    pub const fn profile_extension(&self) -> &'a [u8] {
        self.extension
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::report_block::tests::{BLOCK, EXPECTED_BLOCK};

    #[test]
    fn sender_report_body() {
        let mut body = vec![
            0x00, 0x00, 0x00, 0x01, // SSRC of sender
            0xe9, 0x8a, 0x2b, 0x40, // NTP timestamp, most significant word
            0x80, 0x00, 0x00, 0x00, // NTP timestamp, least significant word
            0x00, 0x00, 0x3e, 0x80, // RTP timestamp
            0x00, 0x00, 0x00, 0x64, // sender's packet count
            0x00, 0x00, 0x3e, 0x80, // sender's octet count
        ];
        body.extend_from_slice(&BLOCK);
        body.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let sr = SenderReport::parse(1, &body).unwrap();
        assert_eq!(sr.ssrc(), Ssrc(1));
        assert_eq!(sr.ntp_timestamp(), 0xe98a_2b40_8000_0000);
        assert_eq!(sr.rtp_timestamp(), 16_000);
        assert_eq!((sr.packet_count(), sr.octet_count()), (100, 16_000));
        assert!(sr.report_blocks().eq([EXPECTED_BLOCK]));
        assert_eq!(sr.profile_extension(), &[0xaa, 0xbb, 0xcc, 0xdd]);

        assert_eq!(
            SenderReport::parse(2, &body),
            Err(RtcpError::BodyTooShort {
                packet_type: 200,
                needed: 72,
                got: 52
            })
        );
        assert_eq!(
            SenderReport::parse(0, &body[..20]),
            Err(RtcpError::BodyTooShort {
                packet_type: 200,
                needed: 24,
                got: 20
            })
        );
    }

    #[test]
    fn receiver_report_body() {
        let mut body = vec![0x00, 0x00, 0x00, 0x09];
        body.extend_from_slice(&BLOCK);
        body.extend_from_slice(&BLOCK);
        let rr = ReceiverReport::parse(2, &body).unwrap();
        assert_eq!(rr.ssrc(), Ssrc(9));
        assert_eq!(rr.report_blocks().len(), 2);
        assert!(rr.report_blocks().all(|b| b == EXPECTED_BLOCK));
        assert!(rr.profile_extension().is_empty());
        assert_eq!(
            ReceiverReport::parse(3, &body),
            Err(RtcpError::BodyTooShort {
                packet_type: 201,
                needed: 76,
                got: 52
            })
        );
        assert_eq!(
            ReceiverReport::parse(0, &[]),
            Err(RtcpError::BodyTooShort {
                packet_type: 201,
                needed: 4,
                got: 0
            })
        );
    }
}

//! RTCP (RFC 3550 §6): compound packets walked packet by packet, with
//! zero-copy views of SR, RR, SDES, BYE and APP, the feedback messages
//! relays act on (NACK and PLI from RFC 4585 §6, FIR from RFC 5104 §4.3.1,
//! REMB), and builders for the ones a relay sends.
//!
//! Drive it with [`RtcpCompound::new`] over a received (already decrypted)
//! compound packet; packet types and feedback formats it does not know come
//! out as [`RtcpPacket::Unknown`], so new extensions pass through a relay.
//! The walk does not insist that a compound start with an SR or RR (RFC
//! 3550 Appendix A.2): reduced-size RTCP (RFC 5506) drops that rule.
//! [`is_rtcp`] tells RTCP from RTP on a shared port (RFC 5761 §4).

mod app;
mod builder;
mod bye;
mod compound;
mod error;
mod feedback;
mod nack;
mod remb;
mod report;
mod report_block;
mod sdes;

pub use app::App;
pub use builder::{
    ByeBuilder, FirBuilder, NackBuilder, PliBuilder, ReceiverReportBuilder, RembBuilder,
    SenderReportBuilder,
};
pub use bye::Bye;
pub use compound::{RtcpCompound, RtcpPacket};
pub use error::RtcpError;
pub use feedback::{FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, Fir, FirEntry, Pli};
pub use nack::{Nack, NackEntry};
pub use remb::{REMB_IDENTIFIER, Remb};
pub use report::{ReceiverReport, SenderReport};
pub use report_block::{REPORT_BLOCK_LEN, ReportBlock, ReportBlocks};
pub use sdes::{Sdes, SdesChunk, SdesChunks, SdesItem, SdesItems};

use crate::rtp::types::Ssrc;
use crate::rtp::wire::read_u32;

/// Packet type of a sender report.
pub const SENDER_REPORT: u8 = 200;
/// Packet type of a receiver report.
pub const RECEIVER_REPORT: u8 = 201;
/// Packet type of a source description.
pub const SOURCE_DESCRIPTION: u8 = 202;
/// Packet type of a goodbye.
pub const GOODBYE: u8 = 203;
/// Packet type of an application-defined packet.
pub const APPLICATION: u8 = 204;
/// Packet type of transport-layer feedback (RTPFB, RFC 4585 §6.1).
pub const TRANSPORT_FEEDBACK: u8 = 205;
/// Packet type of payload-specific feedback (PSFB, RFC 4585 §6.1).
pub const PAYLOAD_FEEDBACK: u8 = 206;

/// Bytes in the common header every RTCP packet starts with.
pub const RTCP_HEADER_LEN: usize = 4;

/// The SSRC in bytes 4..8 of an RTCP packet: the sender of the first
/// packet of a compound (for SR, RR, APP and feedback; the first chunk's
/// source for SDES, the first leaving source for BYE).
#[must_use]
pub fn rtcp_header_ssrc(buf: &[u8]) -> Option<Ssrc> {
    read_u32(buf, 4).map(Ssrc)
}

/// Whether a packet on a port shared by RTP and RTCP is RTCP (RFC 5761
/// §4): its second byte, an RTCP packet type, lies in 192..=223, which
/// RTP avoids by not using payload types 64..=95.
#[must_use]
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_by_second_byte() {
        // RR (201) and SR (200) are RTCP; PT 96 with or without marker is RTP.
        assert!(is_rtcp(&[0x80, 201, 0, 1]));
        assert!(is_rtcp(&[0x81, 200]));
        assert!(is_rtcp(&[0x80, 192]) && is_rtcp(&[0x80, 223]));
        assert!(!is_rtcp(&[0x80, 191]) && !is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80, 96]) && !is_rtcp(&[0x80, 96 | 0x80]));
        assert!(!is_rtcp(&[0x80]) && !is_rtcp(&[]));
    }

    #[test]
    fn header_ssrc() {
        let rr = [0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(rtcp_header_ssrc(&rr), Some(Ssrc(0xdead_beef)));
        assert_eq!(rtcp_header_ssrc(&rr[..7]), None);
    }
}

//! Walking a compound RTCP packet (RFC 3550 §6.1, validity checks of
//! Appendix A.2 that apply per packet) and dispatching each packet to its
//! view by packet type and, for feedback, FMT (RFC 4585 §6.1).

use super::{
    APPLICATION, App, Bye, FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, Fir, GOODBYE, Nack,
    PAYLOAD_FEEDBACK, Pli, RECEIVER_REPORT, RTCP_HEADER_LEN, ReceiverReport, Remb, RtcpError,
    SENDER_REPORT, SOURCE_DESCRIPTION, Sdes, SenderReport, TRANSPORT_FEEDBACK,
};

/// One packet of a compound, as a view of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    App(App<'a>),
    Nack(Nack<'a>),
    Pli(Pli),
    Fir(Fir<'a>),
    Remb(Remb<'a>),
    /// A packet type, or feedback format, this module does not interpret:
    /// `count` is the header's 5-bit count/FMT field, `body` the bytes after
    /// the common header without padding.
    Unknown {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// The view for a body (after the common header, padding removed).
    fn parse(packet_type: u8, count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        Ok(match (packet_type, count) {
            (SENDER_REPORT, _) => Self::SenderReport(SenderReport::parse(count, body)?),
            (RECEIVER_REPORT, _) => Self::ReceiverReport(ReceiverReport::parse(count, body)?),
            (SOURCE_DESCRIPTION, _) => Self::Sdes(Sdes::parse(count, body)?),
            (GOODBYE, _) => Self::Bye(Bye::parse(count, body)?),
            (APPLICATION, _) => Self::App(App::parse(count, body)?),
            (TRANSPORT_FEEDBACK, FMT_NACK) => Self::Nack(Nack::parse(body)?),
            (PAYLOAD_FEEDBACK, FMT_PLI) => Self::Pli(Pli::parse(body)?),
            (PAYLOAD_FEEDBACK, FMT_FIR) => Self::Fir(Fir::parse(body)?),
            (PAYLOAD_FEEDBACK, FMT_AFB) if Remb::matches(body) => Self::Remb(Remb::parse(body)?),
            _ => Self::Unknown {
                packet_type,
                count,
                body,
            },
        })
    }
}

/// Walks the packets of a compound RTCP packet (RFC 3550 §6.1) by their
/// length fields. Each must be version 2, fit in the buffer, and carry
/// padding only if it is the last. The first error is yielded once and
/// ends the walk. An empty buffer yields nothing.
#[derive(Debug, Clone)]
pub struct RtcpCompound<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpCompound<'a> {
    #[must_use]
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    fn parse_next(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let buf = self.rest;
        let &[first, packet_type, l0, l1] = buf.first_chunk().ok_or(RtcpError::TooShort {
            needed: RTCP_HEADER_LEN,
            got: buf.len(),
        })?;
        let version = first >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        // The length field counts 32-bit words minus one.
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let (packet, rest) = buf.split_at_checked(len).ok_or(RtcpError::Truncated {
            declared: len,
            available: buf.len(),
        })?;
        // len is at least 4, so the header is a prefix of packet.
        let mut body = packet.get(RTCP_HEADER_LEN..).unwrap_or_default();
        if first & 0x20 != 0 {
            if !rest.is_empty() {
                return Err(RtcpError::PaddingNotLast);
            }
            let count = body.last().copied().unwrap_or(0);
            let available = body.len();
            let padding = usize::from(count);
            if count == 0 || count % 4 != 0 || padding > available {
                return Err(RtcpError::BadPadding { count, available });
            }
            body = body.get(..available - padding).unwrap_or_default();
        }
        self.rest = rest;
        RtcpPacket::parse(packet_type, first & 0x1f, body)
    }
}

impl<'a> Iterator for RtcpCompound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let next = self.parse_next();
        if next.is_err() {
            self.rest = &[];
        }
        Some(next)
    }
}

impl core::iter::FusedIterator for RtcpCompound<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::types::Ssrc;

    /// SR with one report block, then SDES with a CNAME: the compound a
    /// sender emits (RFC 3550 §6.1), laid out as in §6.4.1 and §6.5.
    const SR_SDES: [u8; 68] = [
        0x81, 0xc8, 0x00, 0x0c, // V=2 P=0 RC=1 PT=SR length=12
        0x00, 0x00, 0x00, 0x01, // SSRC of sender
        0xe9, 0x8a, 0x2b, 0x40, 0x80, 0x00, 0x00, 0x00, // NTP timestamp
        0x00, 0x00, 0x3e, 0x80, // RTP timestamp
        0x00, 0x00, 0x00, 0x64, // sender's packet count
        0x00, 0x00, 0x3e, 0x80, // sender's octet count
        0x00, 0x00, 0x00, 0x02, // SSRC_1
        0x00, 0x00, 0x00, 0x03, // fraction lost 0, cumulative lost 3
        0x00, 0x00, 0x10, 0x00, // extended highest sequence number
        0x00, 0x00, 0x00, 0x08, // interarrival jitter
        0x00, 0x00, 0x00, 0x00, // LSR
        0x00, 0x00, 0x00, 0x00, // DLSR
        0x81, 0xca, 0x00, 0x03, // V=2 P=0 SC=1 PT=SDES length=3
        0x00, 0x00, 0x00, 0x01, // SSRC
        0x01, 0x03, b'a', b'b', b'c', 0x00, 0x00, 0x00, // CNAME "abc", end
    ];

    /// An RR with no blocks whose body ends in 4 bytes of padding.
    const PADDED_RR: [u8; 12] = [0xa0, 0xc9, 0x00, 0x02, 0, 0, 0, 9, 0, 0, 0, 4];

    #[test]
    fn sender_report_and_sdes() {
        let packets: Vec<_> = RtcpCompound::new(&SR_SDES).collect();
        let [Ok(RtcpPacket::SenderReport(sr)), Ok(RtcpPacket::Sdes(sdes))] = packets[..] else {
            panic!("unexpected {packets:?}");
        };
        assert_eq!(sr.ssrc(), Ssrc(1));
        assert_eq!(sr.ntp_timestamp(), 0xe98a_2b40_8000_0000);
        assert_eq!(
            (sr.rtp_timestamp(), sr.packet_count(), sr.octet_count()),
            (16_000, 100, 16_000)
        );
        let blocks: Vec<_> = sr.report_blocks().collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].ssrc, blocks[0].cumulative_lost), (Ssrc(2), 3));
        assert_eq!((blocks[0].highest_seq, blocks[0].jitter), (0x1000, 8));
        let chunk = sdes.chunks().next().unwrap();
        assert_eq!((chunk.ssrc, chunk.cname()), (Ssrc(1), Some(&b"abc"[..])));
    }

    #[test]
    fn padding_on_the_last_packet() {
        let mut buf = SR_SDES.to_vec();
        buf.extend_from_slice(&PADDED_RR);
        let packets: Vec<_> = RtcpCompound::new(&buf).collect();
        assert_eq!(packets.len(), 3);
        let Ok(RtcpPacket::ReceiverReport(rr)) = packets[2] else {
            panic!("unexpected {:?}", packets[2]);
        };
        assert_eq!(rr.ssrc(), Ssrc(9));
        assert_eq!(rr.report_blocks().len(), 0);
        assert!(rr.profile_extension().is_empty());
    }

    #[test]
    fn unknown_types_and_formats_are_skipped_over() {
        let buf = [
            0x80, 0xcf, 0x00, 0x01, 0, 0, 0, 1, // XR (207): not interpreted
            0x8f, 0xcd, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 2, // RTPFB FMT 15
            0x8f, 0xce, 0x00, 0x03, 0, 0, 0, 1, 0, 0, 0, 0, b'X', b'Y', b'Z', b'!', // AFB
            0x81, 0xce, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 2, // PLI
        ];
        let packets: Vec<_> = RtcpCompound::new(&buf).collect();
        assert_eq!(
            packets[..3],
            [
                Ok(RtcpPacket::Unknown {
                    packet_type: 207,
                    count: 0,
                    body: &buf[4..8]
                }),
                Ok(RtcpPacket::Unknown {
                    packet_type: 205,
                    count: 15,
                    body: &buf[12..20]
                }),
                Ok(RtcpPacket::Unknown {
                    packet_type: 206,
                    count: 15,
                    body: &buf[24..36]
                }),
            ]
        );
        let Ok(RtcpPacket::Pli(pli)) = packets[3] else {
            panic!("unexpected {:?}", packets[3]);
        };
        assert_eq!((pli.sender_ssrc(), pli.media_ssrc()), (Ssrc(1), Ssrc(2)));
    }

    fn first_error(buf: &[u8]) -> RtcpError {
        let mut walk = RtcpCompound::new(buf);
        let err = walk.find_map(Result::err).expect("an error");
        assert_eq!(walk.next(), None, "the walk ends after an error");
        err
    }

    #[test]
    fn header_errors() {
        assert_eq!(RtcpCompound::new(&[]).next(), None);
        assert_eq!(
            first_error(&[0x80, 0xc9, 0x00]),
            RtcpError::TooShort { needed: 4, got: 3 }
        );
        assert_eq!(
            first_error(&[0x40, 0xc9, 0x00, 0x00]),
            RtcpError::BadVersion(1)
        );
        assert_eq!(
            first_error(&SR_SDES[..60]),
            RtcpError::Truncated {
                declared: 16,
                available: 8
            }
        );
        // A valid RR, then trailing garbage that is too short for a header.
        let mut buf = PADDED_RR.to_vec();
        buf[0] = 0x80;
        buf.push(0x80);
        assert_eq!(first_error(&buf), RtcpError::TooShort { needed: 4, got: 1 });
    }

    #[test]
    fn padding_errors() {
        let mut buf = PADDED_RR.to_vec();
        buf.extend_from_slice(&PADDED_RR);
        assert_eq!(first_error(&buf), RtcpError::PaddingNotLast);
        for (count, available) in [(0, 8), (3, 8), (12, 8)] {
            let mut buf = PADDED_RR;
            buf[11] = count;
            assert_eq!(
                first_error(&buf),
                RtcpError::BadPadding { count, available }
            );
        }
        // P bit on a packet with no body at all.
        assert_eq!(
            first_error(&[0xa0, 0xc9, 0x00, 0x00]),
            RtcpError::BadPadding {
                count: 0,
                available: 0
            }
        );
    }

    #[test]
    fn views_check_their_own_lengths() {
        // SR claiming one report block in a 2-word body.
        let short_sr = [0x81, 0xc8, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            first_error(&short_sr),
            RtcpError::BodyTooShort {
                packet_type: 200,
                needed: 48,
                got: 8
            }
        );
        // The padding is not part of the body a view sees.
        let padded_pli = [0xa1, 0xce, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 4];
        assert_eq!(
            first_error(&padded_pli),
            RtcpError::BodyTooShort {
                packet_type: 206,
                needed: 8,
                got: 4
            }
        );
    }
}

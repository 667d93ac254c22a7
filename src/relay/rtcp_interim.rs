//! INTERIM: a stand-in for `crate::rtp::rtcp` until that module lands on
//! main. It mirrors the names and shapes the relay uses from it
//! (`RtcpCompound`, `RtcpPacket`, `RtcpError`, `is_rtcp`,
//! `rtcp_header_ssrc`, the feedback views) and nothing more, so switching
//! is a change of `use` lines in `rtcp_route.rs` and `worker.rs` and the
//! deletion of this file. Views it does not need (SR, RR, SDES, BYE, APP
//! bodies; REMB) are opaque here.
//!
//! Walks a compound RTCP packet (RFC 3550 §6.1) by its length fields;
//! feedback per RFC 4585 §6.1 and RFC 5104 §4.3.1. Never panics.

// Mirrors a fuller API; the relay reads only part of it, and the whole
// file goes away when `rtp::rtcp` is merged.
#![allow(dead_code)]

use crate::rtp::Ssrc;

const SENDER_REPORT: u8 = 200;
const RECEIVER_REPORT: u8 = 201;
const SOURCE_DESCRIPTION: u8 = 202;
const GOODBYE: u8 = 203;
const APPLICATION: u8 = 204;
const TRANSPORT_FEEDBACK: u8 = 205;
const PAYLOAD_FEEDBACK: u8 = 206;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// Why a compound could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RtcpError {
    /// Fewer than the 4 bytes of a common header are left.
    TooShort,
    /// The version field is not 2.
    BadVersion(u8),
    /// The length field runs past the buffer.
    Truncated,
    /// Padding on a packet that is not last, or a bad padding count.
    BadPadding,
    /// The body is too short for its packet type.
    BodyTooShort,
}

/// One packet of a compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RtcpPacket<'a> {
    SenderReport(&'a [u8]),
    ReceiverReport(&'a [u8]),
    Sdes(&'a [u8]),
    Bye(&'a [u8]),
    App(&'a [u8]),
    Nack(Nack),
    Pli(Pli),
    Fir(Fir<'a>),
    Unknown {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

/// A generic NACK (RTPFB FMT 1); only its SSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nack {
    sender: Ssrc,
    media: Ssrc,
}

impl Nack {
    pub(crate) fn sender_ssrc(&self) -> Ssrc {
        self.sender
    }

    pub(crate) fn media_ssrc(&self) -> Ssrc {
        self.media
    }
}

/// A picture loss indication (PSFB FMT 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pli {
    sender: Ssrc,
    media: Ssrc,
}

impl Pli {
    pub(crate) fn sender_ssrc(&self) -> Ssrc {
        self.sender
    }

    pub(crate) fn media_ssrc(&self) -> Ssrc {
        self.media
    }
}

/// One FIR entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirEntry {
    pub(crate) ssrc: Ssrc,
    pub(crate) seq_nr: u8,
}

/// A full intra request (PSFB FMT 4): entries of 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fir<'a> {
    sender: Ssrc,
    media: Ssrc,
    entries: &'a [[u8; 8]],
}

impl<'a> Fir<'a> {
    pub(crate) fn sender_ssrc(&self) -> Ssrc {
        self.sender
    }

    pub(crate) fn media_ssrc(&self) -> Ssrc {
        self.media
    }

    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = FirEntry> + 'a {
        self.entries
            .iter()
            .map(|&[s0, s1, s2, s3, seq_nr, ..]| FirEntry {
                ssrc: Ssrc(u32::from_be_bytes([s0, s1, s2, s3])),
                seq_nr,
            })
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: &[u8; 4] = buf.get(at..)?.first_chunk()?;
    Some(u32::from_be_bytes(*bytes))
}

/// Sender and media SSRCs of a feedback body, and its FCI.
fn feedback(body: &[u8]) -> Result<(Ssrc, Ssrc, &[u8]), RtcpError> {
    let sender = read_u32(body, 0).ok_or(RtcpError::BodyTooShort)?;
    let media = read_u32(body, 4).ok_or(RtcpError::BodyTooShort)?;
    Ok((Ssrc(sender), Ssrc(media), body.get(8..).unwrap_or_default()))
}

impl<'a> RtcpPacket<'a> {
    fn parse(packet_type: u8, count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        Ok(match (packet_type, count) {
            (SENDER_REPORT, _) => Self::SenderReport(body),
            (RECEIVER_REPORT, _) => Self::ReceiverReport(body),
            (SOURCE_DESCRIPTION, _) => Self::Sdes(body),
            (GOODBYE, _) => Self::Bye(body),
            (APPLICATION, _) => Self::App(body),
            (TRANSPORT_FEEDBACK, FMT_NACK) => {
                let (sender, media, _) = feedback(body)?;
                Self::Nack(Nack { sender, media })
            }
            (PAYLOAD_FEEDBACK, FMT_PLI) => {
                let (sender, media, _) = feedback(body)?;
                Self::Pli(Pli { sender, media })
            }
            (PAYLOAD_FEEDBACK, FMT_FIR) => {
                let (sender, media, fci) = feedback(body)?;
                let (entries, rest) = fci.as_chunks();
                if entries.is_empty() || !rest.is_empty() {
                    return Err(RtcpError::BodyTooShort);
                }
                Self::Fir(Fir {
                    sender,
                    media,
                    entries,
                })
            }
            _ => Self::Unknown {
                packet_type,
                count,
                body,
            },
        })
    }
}

/// Walks the packets of a compound; the first error is yielded once and
/// ends the walk.
#[derive(Debug, Clone)]
pub(crate) struct RtcpCompound<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpCompound<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    fn parse_next(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let buf = self.rest;
        let &[first, packet_type, l0, l1] = buf.first_chunk().ok_or(RtcpError::TooShort)?;
        if first >> 6 != 2 {
            return Err(RtcpError::BadVersion(first >> 6));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let (packet, rest) = buf.split_at_checked(len).ok_or(RtcpError::Truncated)?;
        let mut body = packet.get(4..).unwrap_or_default();
        if first & 0x20 != 0 {
            let padding = usize::from(body.last().copied().unwrap_or(0));
            if !rest.is_empty() || padding == 0 || padding % 4 != 0 || padding > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = body.get(..body.len() - padding).unwrap_or_default();
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

/// The SSRC in bytes 4..8: the sender of the first packet of a compound.
pub(crate) fn rtcp_header_ssrc(buf: &[u8]) -> Option<Ssrc> {
    read_u32(buf, 4).map(Ssrc)
}

/// Whether a packet on a port shared by RTP and RTCP is RTCP (RFC 5761 §4).
pub(crate) fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

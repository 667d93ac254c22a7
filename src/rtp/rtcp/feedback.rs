//! Feedback messages (RFC 4585 §6.1): their common layout, picture loss
//! indication (PSFB FMT 1, §6.3.1) and full intra request (PSFB FMT 4,
//! RFC 5104 §4.3.1). Generic NACK is in `nack.rs`, REMB in `remb.rs`.

use super::PAYLOAD_FEEDBACK;
use super::RtcpError;
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// FMT of a generic NACK in an RTPFB packet.
pub const FMT_NACK: u8 = 1;
/// FMT of a PLI in a PSFB packet.
pub const FMT_PLI: u8 = 1;
/// FMT of a FIR in a PSFB packet.
pub const FMT_FIR: u8 = 4;
/// FMT of an application-layer feedback message (REMB) in a PSFB packet.
pub const FMT_AFB: u8 = 15;

/// Splits a feedback body into the sender SSRC, the media source SSRC and
/// the feedback control information (FCI).
pub(crate) fn split_feedback(
    packet_type: u8,
    body: &[u8],
) -> Result<(Ssrc, Ssrc, &[u8]), RtcpError> {
    let short = RtcpError::BodyTooShort {
        packet_type,
        needed: 8,
        got: body.len(),
    };
    let mut r = Reader::new(body);
    let sender = Ssrc(r.u32().ok_or(short)?);
    let media = Ssrc(r.u32().ok_or(short)?);
    Ok((sender, media, r.rest()))
}

/// Splits a feedback body whose FCI is a non-empty run of `N`-byte entries
/// (NACK's 4-byte pid/blp, FIR's 8-byte ssrc/seq).
pub(crate) fn split_fci_entries<const N: usize>(
    packet_type: u8,
    fmt: u8,
    body: &[u8],
) -> Result<(Ssrc, Ssrc, &[[u8; N]]), RtcpError> {
    let (sender_ssrc, media_ssrc, fci) = split_feedback(packet_type, body)?;
    let (entries, rest) = fci.as_chunks();
    if !rest.is_empty() {
        return Err(RtcpError::BadFciLength {
            packet_type,
            fmt,
            len: fci.len(),
        });
    }
    if entries.is_empty() {
        return Err(RtcpError::EmptyFci { packet_type, fmt });
    }
    Ok((sender_ssrc, media_ssrc, entries))
}

/// A picture loss indication (RFC 4585 §6.3.1); it has no FCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pli {
    sender_ssrc: Ssrc,
    media_ssrc: Ssrc,
}

impl Pli {
    /// Reads a PSFB FMT 1 body. Trailing FCI bytes are ignored.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, _) = split_feedback(PAYLOAD_FEEDBACK, body)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
        })
    }

    #[must_use]
    pub const fn sender_ssrc(&self) -> Ssrc {
        self.sender_ssrc
    }

    /// The source that should send a new picture.
    #[must_use]
    pub const fn media_ssrc(&self) -> Ssrc {
        self.media_ssrc
    }
}

/// One FIR entry: the source asked for a decoder refresh, and the command
/// sequence number that tells repeated requests apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FirEntry {
    pub ssrc: Ssrc,
    pub seq_nr: u8,
}

/// A full intra request (RFC 5104 §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fir<'a> {
    sender_ssrc: Ssrc,
    media_ssrc: Ssrc,
    entries: &'a [[u8; 8]],
}

impl<'a> Fir<'a> {
    /// Reads a PSFB FMT 4 body: at least one 8-byte FCI entry.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, entries) =
            split_fci_entries(PAYLOAD_FEEDBACK, FMT_FIR, body)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            entries,
        })
    }

    #[must_use]
    pub const fn sender_ssrc(&self) -> Ssrc {
        self.sender_ssrc
    }

    /// Unused by FIR; senders set it to 0 (RFC 5104 §4.3.1.2).
    #[must_use]
    pub const fn media_ssrc(&self) -> Ssrc {
        self.media_ssrc
    }

    pub fn entries(&self) -> impl ExactSizeIterator<Item = FirEntry> + 'a {
        self.entries
            .iter()
            .map(|&[s0, s1, s2, s3, seq_nr, ..]| FirEntry {
                ssrc: Ssrc(u32::from_be_bytes([s0, s1, s2, s3])),
                seq_nr,
            })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pli() {
        let body = [0, 0, 0, 1, 0, 0, 0, 2];
        let pli = Pli::parse(&body).unwrap();
        assert_eq!((pli.sender_ssrc(), pli.media_ssrc()), (Ssrc(1), Ssrc(2)));
        assert_eq!(
            Pli::parse(&body[..4]),
            Err(RtcpError::BodyTooShort {
                packet_type: 206,
                needed: 8,
                got: 4
            })
        );
    }

    #[test]
    fn fir_from_rfc_5104_layout() {
        let body = [
            0x00, 0x00, 0x00, 0x01, // SSRC of packet sender
            0x00, 0x00, 0x00, 0x00, // SSRC of media source: unused
            0x00, 0x00, 0x00, 0x0a, 0x07, 0x00, 0x00, 0x00, // SSRC 10, seq 7
            0x00, 0x00, 0x00, 0x0b, 0xff, 0x00, 0x00, 0x00, // SSRC 11, seq 255
        ];
        let fir = Fir::parse(&body).unwrap();
        assert_eq!((fir.sender_ssrc(), fir.media_ssrc()), (Ssrc(1), Ssrc(0)));
        assert!(fir.entries().eq([
            FirEntry {
                ssrc: Ssrc(10),
                seq_nr: 7
            },
            FirEntry {
                ssrc: Ssrc(11),
                seq_nr: 255
            }
        ]));
        assert_eq!(
            Fir::parse(&body[..8]),
            Err(RtcpError::EmptyFci {
                packet_type: 206,
                fmt: 4
            })
        );
        assert_eq!(
            Fir::parse(&body[..20]),
            Err(RtcpError::BadFciLength {
                packet_type: 206,
                fmt: 4,
                len: 12
            })
        );
    }
}

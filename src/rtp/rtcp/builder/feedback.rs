//! Builders for feedback messages: generic NACK and PLI (RFC 4585
//! §6.2.1, §6.3.1), FIR (RFC 5104 §4.3.1) and REMB
//! (draft-alvestrand-rmcat-remb-03 §2.2).

use super::{finish, put_header};
use crate::rtp::rtcp::remb::encode_bitrate;
use crate::rtp::rtcp::{
    FMT_AFB, FMT_FIR, FMT_NACK, FMT_PLI, FirEntry, NackEntry, PAYLOAD_FEEDBACK, REMB_IDENTIFIER,
    RtcpError, TRANSPORT_FEEDBACK,
};
use crate::rtp::types::{SeqNum, Ssrc};
use crate::rtp::wire::Writer;

/// Writes the common header and the two SSRCs every feedback message
/// starts with, for an FCI of `fci_len` bytes.
fn put_feedback_header(
    w: &mut Writer<'_>,
    fmt: u8,
    packet_type: u8,
    sender: Ssrc,
    media: Ssrc,
    fci_len: usize,
) -> Result<(), RtcpError> {
    put_header(w, fmt, packet_type, fci_len.saturating_add(8))?;
    w.put_u32(sender.0);
    w.put_u32(media.0);
    Ok(())
}

/// A picture loss indication for `media_ssrc`.
#[derive(Debug, Clone, Copy)]
pub struct PliBuilder {
    pub sender_ssrc: Ssrc,
    pub media_ssrc: Ssrc,
}

impl PliBuilder {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let mut w = Writer::new(out);
        put_feedback_header(
            &mut w,
            FMT_PLI,
            PAYLOAD_FEEDBACK,
            self.sender_ssrc,
            self.media_ssrc,
            0,
        )?;
        finish(w)
    }
}

/// A generic NACK for the `lost` sequence numbers of `media_ssrc`, packed
/// into PID/BLP entries by [`NackEntry::pack`] (ascending order packs
/// best). At least one number is needed.
#[derive(Debug, Clone, Copy)]
pub struct NackBuilder<'a> {
    pub sender_ssrc: Ssrc,
    pub media_ssrc: Ssrc,
    pub lost: &'a [SeqNum],
}

impl NackBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let entries = NackEntry::pack(self.lost).count();
        if entries == 0 {
            return Err(RtcpError::EmptyFci {
                packet_type: TRANSPORT_FEEDBACK,
                fmt: FMT_NACK,
            });
        }
        let mut w = Writer::new(out);
        let fci_len = entries.saturating_mul(4);
        put_feedback_header(
            &mut w,
            FMT_NACK,
            TRANSPORT_FEEDBACK,
            self.sender_ssrc,
            self.media_ssrc,
            fci_len,
        )?;
        for entry in NackEntry::pack(self.lost) {
            w.put_u16(entry.pid.0);
            w.put_u16(entry.blp);
        }
        finish(w)
    }
}

/// A full intra request for each source in `entries`.
#[derive(Debug, Clone, Copy)]
pub struct FirBuilder<'a> {
    pub sender_ssrc: Ssrc,
    pub entries: &'a [FirEntry],
}

impl FirBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        if self.entries.is_empty() {
            return Err(RtcpError::EmptyFci {
                packet_type: PAYLOAD_FEEDBACK,
                fmt: FMT_FIR,
            });
        }
        let mut w = Writer::new(out);
        let fci_len = self.entries.len().saturating_mul(8);
        // The media source SSRC is unused by FIR and SHALL be 0.
        put_feedback_header(
            &mut w,
            FMT_FIR,
            PAYLOAD_FEEDBACK,
            self.sender_ssrc,
            Ssrc(0),
            fci_len,
        )?;
        for entry in self.entries {
            w.put_u32(entry.ssrc.0);
            w.put(&[entry.seq_nr, 0, 0, 0]);
        }
        finish(w)
    }
}

/// A REMB: `bitrate_bps` for the up to 255 sources in `ssrcs`. The bitrate
/// is rounded down to what an 18-bit mantissa and 6-bit exponent hold.
#[derive(Debug, Clone, Copy)]
pub struct RembBuilder<'a> {
    pub sender_ssrc: Ssrc,
    pub bitrate_bps: u64,
    pub ssrcs: &'a [Ssrc],
}

impl RembBuilder<'_> {
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let count = u8::try_from(self.ssrcs.len()).map_err(|_| RtcpError::TooManyEntries {
            max: 255,
            got: self.ssrcs.len(),
        })?;
        let (exponent, mantissa) = encode_bitrate(self.bitrate_bps);
        let [_, m0, m1, m2] = mantissa.to_be_bytes();
        let mut w = Writer::new(out);
        let fci_len = 8 + 4 * self.ssrcs.len();
        put_feedback_header(
            &mut w,
            FMT_AFB,
            PAYLOAD_FEEDBACK,
            self.sender_ssrc,
            Ssrc(0),
            fci_len,
        )?;
        w.put(&REMB_IDENTIFIER);
        w.put(&[count, (exponent << 2) | (m0 & 0x03), m1, m2]);
        for ssrc in self.ssrcs {
            w.put_u32(ssrc.0);
        }
        finish(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{RtcpCompound, RtcpPacket};

    fn only(buf: &[u8]) -> RtcpPacket<'_> {
        let packets: Vec<_> = RtcpCompound::new(buf).collect();
        match packets[..] {
            [Ok(packet)] => packet,
            _ => panic!("unexpected {packets:?}"),
        }
    }

    #[test]
    fn pli_bytes() {
        let mut out = [0u8; 12];
        let pli = PliBuilder {
            sender_ssrc: Ssrc(1),
            media_ssrc: Ssrc(0x0a0b_0c0d),
        };
        assert_eq!(pli.write(&mut out), Ok(12));
        assert_eq!(out, [0x81, 0xce, 0, 2, 0, 0, 0, 1, 0x0a, 0x0b, 0x0c, 0x0d]);
        let RtcpPacket::Pli(got) = only(&out) else {
            panic!()
        };
        assert_eq!(
            (got.sender_ssrc(), got.media_ssrc()),
            (Ssrc(1), Ssrc(0x0a0b_0c0d))
        );
        assert_eq!(
            pli.write(&mut out[..11]),
            Err(RtcpError::BufferTooSmall {
                needed: 12,
                got: 11
            })
        );
    }

    #[test]
    fn nack_bytes_and_round_trip() {
        let lost: Vec<_> = [100, 101, 103, 200].into_iter().map(SeqNum).collect();
        let nack = NackBuilder {
            sender_ssrc: Ssrc(1),
            media_ssrc: Ssrc(2),
            lost: &lost,
        };
        let mut out = [0u8; 20];
        assert_eq!(nack.write(&mut out), Ok(20));
        assert_eq!(
            out,
            [
                0x81, 0xcd, 0x00, 0x04, // V=2 FMT=1 PT=RTPFB length 4
                0, 0, 0, 1, 0, 0, 0, 2, // sender, media source
                0x00, 0x64, 0x00, 0x05, // PID 100, BLP: 101, 103
                0x00, 0xc8, 0x00, 0x00, // PID 200
            ]
        );
        let RtcpPacket::Nack(got) = only(&out) else {
            panic!()
        };
        assert!(got.lost_sequences().eq(lost.iter().copied()));
        assert_eq!(
            NackBuilder { lost: &[], ..nack }.write(&mut out),
            Err(RtcpError::EmptyFci {
                packet_type: 205,
                fmt: 1
            })
        );
    }

    #[test]
    fn fir_round_trip() {
        let entries = [
            FirEntry {
                ssrc: Ssrc(5),
                seq_nr: 1,
            },
            FirEntry {
                ssrc: Ssrc(6),
                seq_nr: 200,
            },
        ];
        let fir = FirBuilder {
            sender_ssrc: Ssrc(9),
            entries: &entries,
        };
        let mut out = [0u8; 28];
        assert_eq!(fir.write(&mut out), Ok(28));
        assert_eq!(out[..4], [0x84, 0xce, 0, 6]);
        assert_eq!(out[20..], [0, 0, 0, 6, 200, 0, 0, 0]);
        let RtcpPacket::Fir(got) = only(&out) else {
            panic!()
        };
        assert_eq!((got.sender_ssrc(), got.media_ssrc()), (Ssrc(9), Ssrc(0)));
        assert!(got.entries().eq(entries));
        assert_eq!(
            FirBuilder {
                entries: &[],
                ..fir
            }
            .write(&mut out),
            Err(RtcpError::EmptyFci {
                packet_type: 206,
                fmt: 4
            })
        );
    }

    #[test]
    fn remb_round_trip() {
        let remb = RembBuilder {
            sender_ssrc: Ssrc(1),
            bitrate_bps: 1_000_000,
            ssrcs: &[Ssrc(10), Ssrc(11)],
        };
        let mut out = [0u8; 28];
        assert_eq!(remb.write(&mut out), Ok(28));
        assert_eq!(out[..4], [0x8f, 0xce, 0, 6]);
        assert_eq!(out[12..20], [b'R', b'E', b'M', b'B', 2, 0x0b, 0xd0, 0x90]);
        let RtcpPacket::Remb(got) = only(&out) else {
            panic!()
        };
        assert_eq!(got.bitrate_bps(), 1_000_000);
        assert!(got.ssrcs().eq([Ssrc(10), Ssrc(11)]));
        let many = [Ssrc(0); 256];
        assert_eq!(
            RembBuilder {
                ssrcs: &many,
                ..remb
            }
            .write(&mut [0; 2048]),
            Err(RtcpError::TooManyEntries { max: 255, got: 256 })
        );
    }
}

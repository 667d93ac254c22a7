//! Generic NACK (RTPFB FMT 1, RFC 4585 §6.2.1): lost packets as a packet
//! id and a bitmask of the 16 that follow it.

use super::feedback::split_fci_entries;
use super::{FMT_NACK, RtcpError, TRANSPORT_FEEDBACK};
use crate::rtp::types::{SeqNum, Ssrc};

/// One generic NACK entry: packet `pid` is lost, and so is `pid + i + 1`
/// for every bit `i` set in the bitmask `blp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NackEntry {
    pub pid: SeqNum,
    pub blp: u16,
}

impl NackEntry {
    /// The sequence numbers this entry reports lost, in order.
    pub fn lost(self) -> impl Iterator<Item = SeqNum> {
        let following = (0..16u16)
            .filter(move |i| self.blp & (1 << i) != 0)
            .map(move |i| self.pid.wrapping_add(i + 1));
        core::iter::once(self.pid).chain(following)
    }

    /// Packs lost sequence numbers into entries. Each entry starts at the
    /// first number it does not cover and takes the 16 after it; give the
    /// numbers in ascending (wrapping) order for the fewest entries.
    pub fn pack(lost: &[SeqNum]) -> impl Iterator<Item = Self> + '_ {
        NackPacker {
            lost: lost.iter(),
            current: None,
        }
    }
}

#[derive(Debug)]
struct NackPacker<'a> {
    lost: core::slice::Iter<'a, SeqNum>,
    current: Option<NackEntry>,
}

impl Iterator for NackPacker<'_> {
    type Item = NackEntry;

    fn next(&mut self) -> Option<NackEntry> {
        for &seq in self.lost.by_ref() {
            let Some(entry) = &mut self.current else {
                self.current = Some(NackEntry { pid: seq, blp: 0 });
                continue;
            };
            match seq.wrapping_distance_from(entry.pid) {
                0 => {}
                d @ 1..=16 => entry.blp |= 1 << (d - 1),
                _ => return self.current.replace(NackEntry { pid: seq, blp: 0 }),
            }
        }
        self.current.take()
    }
}

/// A generic NACK (RFC 4585 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    sender_ssrc: Ssrc,
    media_ssrc: Ssrc,
    entries: &'a [[u8; 4]],
}

impl<'a> Nack<'a> {
    /// Reads an RTPFB FMT 1 body; the FCI must hold at least one entry.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, entries) =
            split_fci_entries(TRANSPORT_FEEDBACK, FMT_NACK, body)?;
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

    /// The source whose packets were lost.
    #[must_use]
    pub const fn media_ssrc(&self) -> Ssrc {
        self.media_ssrc
    }

    pub fn entries(&self) -> impl ExactSizeIterator<Item = NackEntry> + 'a {
        self.entries.iter().map(|&[p0, p1, b0, b1]| NackEntry {
            pid: SeqNum(u16::from_be_bytes([p0, p1])),
            blp: u16::from_be_bytes([b0, b1]),
        })
    }

    /// Every sequence number the NACK reports lost, entry by entry.
    pub fn lost_sequences(&self) -> impl Iterator<Item = SeqNum> + 'a {
        self.entries().flat_map(NackEntry::lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[u16]) -> Vec<SeqNum> {
        v.iter().copied().map(SeqNum).collect()
    }

    #[test]
    fn nack_from_rfc_4585_layout() {
        let body = [
            0x00, 0x00, 0x00, 0x01, // SSRC of packet sender
            0x00, 0x00, 0x00, 0x02, // SSRC of media source
            0x00, 0x64, 0x00, 0x05, // PID 100, BLP bits 0 and 2: 101, 103
            0xff, 0xff, 0x80, 0x00, // PID 65535, BLP bit 15: 65535 + 16 = 15
        ];
        let nack = Nack::parse(&body).unwrap();
        assert_eq!((nack.sender_ssrc(), nack.media_ssrc()), (Ssrc(1), Ssrc(2)));
        let entries: Vec<_> = nack.entries().collect();
        assert_eq!(
            entries,
            [
                NackEntry {
                    pid: SeqNum(100),
                    blp: 5
                },
                NackEntry {
                    pid: SeqNum(0xffff),
                    blp: 0x8000
                }
            ]
        );
        assert!(nack.lost_sequences().eq(seqs(&[100, 101, 103, 65535, 15])));
    }

    #[test]
    fn nack_malformed() {
        assert_eq!(
            Nack::parse(&[0; 8]),
            Err(RtcpError::EmptyFci {
                packet_type: 205,
                fmt: 1
            })
        );
        assert_eq!(
            Nack::parse(&[0; 6]),
            Err(RtcpError::BodyTooShort {
                packet_type: 205,
                needed: 8,
                got: 6
            })
        );
        assert_eq!(
            Nack::parse(&[0; 10]),
            Err(RtcpError::BadFciLength {
                packet_type: 205,
                fmt: 1,
                len: 2
            })
        );
    }

    #[test]
    fn nack_packing() {
        let packed: Vec<_> = NackEntry::pack(&seqs(&[100, 101, 103, 116, 117, 117])).collect();
        assert_eq!(
            packed,
            [
                NackEntry {
                    pid: SeqNum(100),
                    blp: 0b1000_0000_0000_0101
                },
                NackEntry {
                    pid: SeqNum(117),
                    blp: 0
                }
            ]
        );
        // Across the wrap.
        let packed: Vec<_> = NackEntry::pack(&seqs(&[65534, 0, 1])).collect();
        assert_eq!(
            packed,
            [NackEntry {
                pid: SeqNum(65534),
                blp: 0b110
            }]
        );
        assert_eq!(NackEntry::pack(&[]).count(), 0);
        // Whatever the order, every number comes back out.
        let lost = seqs(&[9, 300, 2, 3, 40_000, 301]);
        let mut out: Vec<_> = NackEntry::pack(&lost).flat_map(NackEntry::lost).collect();
        out.sort_by_key(|s| s.0);
        assert_eq!(out, seqs(&[2, 3, 9, 300, 301, 40_000]));
    }
}

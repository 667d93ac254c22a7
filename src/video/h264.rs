//! H.264 over RTP (RFC 6184), packetization mode 1 (non-interleaved):
//! single NAL unit packets (§5.6), STAP-A (§5.7.1) and FU-A (§5.8).
//!
//! The depacketizer writes Annex B (a `00 00 00 01` start code before each
//! NAL unit), which is what FFmpeg's H.264 decoder reads; the packetizer
//! takes an Annex B access unit (what encoders write) and sends small NAL
//! units together in STAP-A packets and large ones as FU-A fragments.
//! Mode-0-only and interleaved-mode types (STAP-B, MTAP, FU-B) and the
//! reserved types are refused.

use super::error::{DepacketizeError, PacketizeError};
use super::{Depacketizer, MAX_FRAME_BYTES};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
/// Coded slice of an IDR picture.
const NAL_IDR: u8 = 5;
/// Sequence parameter set.
const NAL_SPS: u8 = 7;

/// The least payload size the packetizer works with: an FU-A needs two
/// header bytes and room for data.
pub const MIN_MTU: usize = 3;

/// Reassembles H.264 access units as Annex B, one packet at a time.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    fragment_open: bool,
    keyframe: bool,
}

impl H264Depacketizer {
    fn push_nal(&mut self, nal: &[u8], out: &mut Vec<u8>) -> Result<(), DepacketizeError> {
        let &header = nal
            .first()
            .ok_or(DepacketizeError::TooShort { needed: 1, got: 0 })?;
        if header & 0x80 != 0 {
            return Err(DepacketizeError::ForbiddenBit);
        }
        if out.len() + START_CODE.len() + nal.len() > MAX_FRAME_BYTES {
            return Err(DepacketizeError::FrameTooLarge {
                limit: MAX_FRAME_BYTES,
            });
        }
        self.keyframe |= header & 0x1f == NAL_IDR;
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
        Ok(())
    }
}

/// The NAL unit type of the first NAL unit a packet carries, looking into
/// a STAP-A's first unit and an FU-A's start fragment.
fn first_nal_type(payload: &[u8]) -> Option<u8> {
    let &header = payload.first()?;
    match header & 0x1f {
        STAP_A => payload.get(3).map(|b| b & 0x1f),
        FU_A => {
            let &fu = payload.get(1)?;
            (fu & 0x80 != 0).then_some(fu & 0x1f)
        }
        t => Some(t),
    }
}

impl Depacketizer for H264Depacketizer {
    fn starts_keyframe(payload: &[u8]) -> bool {
        matches!(first_nal_type(payload), Some(NAL_SPS | NAL_IDR))
    }

    fn begin_frame(&mut self) {
        self.fragment_open = false;
        self.keyframe = false;
    }

    fn append(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), DepacketizeError> {
        let &header = payload
            .first()
            .ok_or(DepacketizeError::TooShort { needed: 1, got: 0 })?;
        if header & 0x80 != 0 {
            return Err(DepacketizeError::ForbiddenBit);
        }
        match header & 0x1f {
            1..=23 => {
                if self.fragment_open {
                    return Err(DepacketizeError::FragmentOrder);
                }
                self.push_nal(payload, out)
            }
            STAP_A => {
                if self.fragment_open {
                    return Err(DepacketizeError::FragmentOrder);
                }
                let mut rest = payload.get(1..).unwrap_or_default();
                if rest.is_empty() {
                    return Err(DepacketizeError::TooShort { needed: 4, got: 1 });
                }
                while !rest.is_empty() {
                    let [hi, lo, tail @ ..] = rest else {
                        return Err(DepacketizeError::BadAggregate {
                            size: 0,
                            left: rest.len(),
                        });
                    };
                    let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                    if size == 0 || size > tail.len() {
                        return Err(DepacketizeError::BadAggregate {
                            size,
                            left: tail.len(),
                        });
                    }
                    let (nal, after) = tail.split_at(size);
                    self.push_nal(nal, out)?;
                    rest = after;
                }
                Ok(())
            }
            FU_A => {
                let [_, fu, data @ ..] = payload else {
                    return Err(DepacketizeError::TooShort {
                        needed: 3,
                        got: payload.len(),
                    });
                };
                if data.is_empty() {
                    return Err(DepacketizeError::TooShort {
                        needed: 3,
                        got: payload.len(),
                    });
                }
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    if self.fragment_open {
                        return Err(DepacketizeError::FragmentOrder);
                    }
                    // The reconstructed NAL header: F and NRI from the FU
                    // indicator, the type from the FU header (§5.8).
                    self.push_nal(&[header & 0xe0 | fu & 0x1f], out)?;
                    self.fragment_open = true;
                } else if !self.fragment_open {
                    return Err(DepacketizeError::FragmentOrder);
                }
                if out.len() + data.len() > MAX_FRAME_BYTES {
                    return Err(DepacketizeError::FrameTooLarge {
                        limit: MAX_FRAME_BYTES,
                    });
                }
                out.extend_from_slice(data);
                if end {
                    self.fragment_open = false;
                }
                Ok(())
            }
            t => Err(DepacketizeError::UnsupportedNal(t)),
        }
    }

    fn end_frame(&mut self) -> Result<bool, DepacketizeError> {
        if self.fragment_open {
            return Err(DepacketizeError::UnfinishedFragment);
        }
        Ok(self.keyframe)
    }
}

/// The NAL units of an Annex B byte stream, without their start codes
/// (and without the trailing zero bytes before the next start code).
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    rest: &'a [u8],
}

impl<'a> AnnexBNals<'a> {
    /// Walks `stream`; bytes before the first start code are skipped.
    #[must_use]
    pub fn new(stream: &'a [u8]) -> Self {
        let rest = find_start_code(stream).map_or(&[][..], |(_, after)| &stream[after..]);
        Self { rest }
    }
}

/// The first `00 00 01` in `buf`: (its position, the position after it).
fn find_start_code(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|at| (at, at + 3))
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (mut nal, rest) = match find_start_code(self.rest) {
                Some((at, after)) => (&self.rest[..at], &self.rest[after..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            while let [head @ .., 0] = nal {
                nal = head;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Cuts Annex B access units into RTP payloads (packetization mode 1).
#[derive(Debug, Default)]
pub struct H264Packetizer {
    scratch: Vec<u8>,
}

impl H264Packetizer {
    /// Calls `emit(payload, marker)` for each payload of the access unit
    /// `annex_b`, at most `mtu` bytes each; the marker is set on the last
    /// payload of the access unit (RFC 6184 §5.1). Consecutive NAL units
    /// that fit together go in one STAP-A. Returns the number of payloads.
    pub fn packetize(
        &mut self,
        annex_b: &[u8],
        mtu: usize,
        mut emit: impl FnMut(&[u8], bool),
    ) -> Result<usize, PacketizeError> {
        if mtu < MIN_MTU {
            return Err(PacketizeError::MtuTooSmall { mtu, min: MIN_MTU });
        }
        let mut nals = AnnexBNals::new(annex_b).peekable();
        if nals.peek().is_none() {
            return Err(PacketizeError::EmptyFrame);
        }
        let mut count = 0;
        while let Some(nal) = nals.next() {
            if nal.len() > mtu {
                count += self.fragment(nal, mtu, nals.peek().is_none(), &mut emit);
                continue;
            }
            // Aggregate the following NAL units while they fit.
            let mut size = 1 + 2 + nal.len();
            let fits =
                |size: usize, next: Option<&&[u8]>| next.is_some_and(|n| size + 2 + n.len() <= mtu);
            if !fits(size, nals.peek()) {
                count += 1;
                emit(nal, nals.peek().is_none());
                continue;
            }
            self.scratch.clear();
            self.scratch.push(0);
            let (mut f, mut nri) = (0u8, 0u8);
            let mut add = |scratch: &mut Vec<u8>, unit: &[u8]| {
                f |= unit[0] & 0x80; // non-empty: AnnexBNals yields none empty
                nri = nri.max(unit[0] & 0x60);
                scratch.extend_from_slice(&(unit.len() as u16).to_be_bytes());
                scratch.extend_from_slice(unit);
            };
            add(&mut self.scratch, nal);
            while fits(size, nals.peek()) {
                // fits() saw a next unit.
                let Some(next) = nals.next() else { break };
                size += 2 + next.len();
                add(&mut self.scratch, next);
            }
            self.scratch[0] = f | nri | STAP_A;
            count += 1;
            emit(&self.scratch, nals.peek().is_none());
        }
        Ok(count)
    }

    /// FU-A fragments of one NAL unit larger than `mtu`.
    fn fragment(
        &mut self,
        nal: &[u8],
        mtu: usize,
        last_nal: bool,
        emit: &mut impl FnMut(&[u8], bool),
    ) -> usize {
        let (header, body) = (nal[0], &nal[1..]); // nal.len() > mtu >= 3
        let chunks = body.chunks(mtu - 2);
        let n = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let mut fu = header & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == n {
                fu |= 0x40;
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(&[header & 0xe0 | FU_A, fu]);
            self.scratch.extend_from_slice(chunk);
            emit(&self.scratch, last_nal && i + 1 == n);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(payloads: &[&[u8]]) -> Result<(Vec<u8>, bool), DepacketizeError> {
        let mut d = H264Depacketizer::default();
        let mut out = Vec::new();
        d.begin_frame();
        for p in payloads {
            d.append(p, &mut out)?;
        }
        Ok((out, d.end_frame()?))
    }

    #[test]
    fn single_nal_units() {
        let (out, key) = assemble(&[&[0x67, 1, 2], &[0x68, 3], &[0x65, 9, 9]]).unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9
            ]
        );
        assert!(key);
        let (_, key) = assemble(&[&[0x41, 1]]).unwrap();
        assert!(!key);
    }

    #[test]
    fn stap_a() {
        // RFC 6184 §5.7.1: SPS and PPS aggregated.
        let stap = [0x78, 0, 2, 0x67, 0xaa, 0, 1, 0x68];
        let (out, _) = assemble(&[&stap]).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68]);
        assert!(H264Depacketizer::starts_keyframe(&stap));
        for bad in [
            &[0x78][..],
            &[0x78, 0],
            &[0x78, 0, 3, 0x67, 0],
            &[0x78, 0, 0],
        ] {
            assert!(assemble(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fu_a() {
        let start = [0x7c, 0x85, 1, 2];
        let mid = [0x7c, 0x05, 3];
        let end = [0x7c, 0x45, 4];
        assert!(H264Depacketizer::starts_keyframe(&start));
        assert!(!H264Depacketizer::starts_keyframe(&mid));
        let (out, key) = assemble(&[&start, &mid, &end]).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 1, 2, 3, 4]);
        assert!(key);
        assert_eq!(
            assemble(&[&mid, &end]).unwrap_err(),
            DepacketizeError::FragmentOrder
        );
        assert_eq!(
            assemble(&[&start, &mid]).unwrap_err(),
            DepacketizeError::UnfinishedFragment
        );
        assert_eq!(
            assemble(&[&start, &start]).unwrap_err(),
            DepacketizeError::FragmentOrder
        );
        assert_eq!(
            assemble(&[&start, &[0x41, 0]]).unwrap_err(),
            DepacketizeError::FragmentOrder
        );
    }

    #[test]
    fn refused_types() {
        for t in [0u8, 25, 26, 27, 29, 30, 31] {
            assert_eq!(
                assemble(&[&[t, 0, 0, 0]]).unwrap_err(),
                DepacketizeError::UnsupportedNal(t)
            );
        }
        assert_eq!(
            assemble(&[&[0xe1, 0]]).unwrap_err(),
            DepacketizeError::ForbiddenBit
        );
        assert!(assemble(&[&[]]).is_err());
        assert!(assemble(&[&[0x7c, 0x85]]).is_err());
    }

    #[test]
    fn annex_b_split() {
        let stream = [
            9, 0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 0, 0, 0, 0, 1, 0x65, 7, 0, 0, 1,
        ];
        let nals: Vec<&[u8]> = AnnexBNals::new(&stream).collect();
        assert_eq!(nals, [&[0x67, 1][..], &[0x68], &[0x65, 7]]);
        assert_eq!(AnnexBNals::new(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn packetize_round_trip() {
        let mut au = Vec::new();
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| (i % 251) as u8 | 1))
            .collect();
        for nal in [
            &[0x09, 0xf0][..],
            &[0x67, 0x42, 0, 0x1e],
            &[0x68, 0xce],
            &idr,
        ] {
            au.extend_from_slice(&START_CODE);
            au.extend_from_slice(nal);
        }
        let mut p = H264Packetizer::default();
        let mut payloads: Vec<(Vec<u8>, bool)> = Vec::new();
        let n = p
            .packetize(&au, 1200, |pl, m| payloads.push((pl.to_vec(), m)))
            .unwrap();
        assert_eq!(n, payloads.len());
        assert!(payloads.iter().all(|(pl, _)| pl.len() <= 1200));
        assert_eq!(payloads[0].0[0] & 0x1f, STAP_A, "small units aggregated");
        assert_eq!(payloads[1].0[0] & 0x1f, FU_A);
        let markers: Vec<bool> = payloads.iter().map(|(_, m)| *m).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert_eq!(markers.last(), Some(&true));
        let refs: Vec<&[u8]> = payloads.iter().map(|(pl, _)| pl.as_slice()).collect();
        let (out, key) = assemble(&refs).unwrap();
        assert_eq!(out, au);
        assert!(key);
    }

    #[test]
    fn packetize_single_and_limits() {
        let mut p = H264Packetizer::default();
        let mut got = Vec::new();
        p.packetize(&[0, 0, 1, 0x41, 5, 6], 100, |pl, m| {
            got.push((pl.to_vec(), m));
        })
        .unwrap();
        assert_eq!(got, [(vec![0x41, 5, 6], true)]);
        assert_eq!(
            p.packetize(&[1, 2, 3], 100, |_, _| {}),
            Err(PacketizeError::EmptyFrame)
        );
        assert!(p.packetize(&[0, 0, 1, 0x41], 2, |_, _| {}).is_err());
        // The smallest MTU still round-trips.
        let au = [0, 0, 1, 0x41, 1, 2, 3, 4, 5];
        let mut payloads = Vec::new();
        p.packetize(&au, MIN_MTU, |pl, _| payloads.push(pl.to_vec()))
            .unwrap();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(
            assemble(&refs).unwrap().0,
            [0, 0, 0, 1, 0x41, 1, 2, 3, 4, 5]
        );
    }
}

//! VP8 over RTP (RFC 7741): the payload descriptor (§4.2), frame
//! reassembly from it, and a packetizer that writes one.
//!
//! The depacketizer concatenates the VP8 payloads of a frame's packets;
//! the first must carry S=1 with partition index 0 (§4.4). Whether a frame
//! is a key frame is the inverse P bit of the VP8 payload header (§4.3).

use super::error::{DepacketizeError, PacketizeError};
use super::{Depacketizer, MAX_FRAME_BYTES};

/// The fields of a VP8 payload descriptor that reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// S: the packet starts a VP8 partition.
    pub start: bool,
    /// PID: the partition index (0..=7).
    pub partition: u8,
    /// The 7- or 15-bit PictureID, when present.
    pub picture_id: Option<u16>,
    /// Descriptor length: where the VP8 payload begins.
    pub len: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the front of `payload` (RFC 7741 §4.2).
    /// A packet must carry at least one byte of VP8 data after it.
    pub fn parse(payload: &[u8]) -> Result<Self, DepacketizeError> {
        let short = |needed: usize| DepacketizeError::TooShort {
            needed,
            got: payload.len(),
        };
        let &first = payload.first().ok_or(short(2))?;
        let mut len = 1;
        let mut picture_id = None;
        if first & 0x80 != 0 {
            let &ext = payload.get(1).ok_or(short(2))?;
            len = 2;
            if ext & 0x80 != 0 {
                let &hi = payload.get(len).ok_or(short(len + 1))?;
                if hi & 0x80 != 0 {
                    let &lo = payload.get(len + 1).ok_or(short(len + 2))?;
                    picture_id = Some(u16::from(hi & 0x7f) << 8 | u16::from(lo));
                    len += 2;
                } else {
                    picture_id = Some(u16::from(hi));
                    len += 1;
                }
            }
            if ext & 0x40 != 0 {
                len += 1; // TL0PICIDX
            }
            if ext & 0x30 != 0 {
                len += 1; // TID / Y / KEYIDX
            }
        }
        if payload.len() <= len {
            return Err(short(len + 1));
        }
        Ok(Self {
            start: first & 0x10 != 0,
            partition: first & 0x07,
            picture_id,
            len,
        })
    }

    /// Whether this packet is the first of a frame: S=1 on partition 0.
    #[must_use]
    pub const fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// Reassembles VP8 frames, one packet at a time.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    started: bool,
    keyframe: bool,
}

impl Depacketizer for Vp8Depacketizer {
    fn starts_keyframe(payload: &[u8]) -> bool {
        Vp8Descriptor::parse(payload).is_ok_and(|d| {
            // The P bit, inverted: 0 is a key frame (RFC 7741 §4.3).
            d.starts_frame() && payload.get(d.len).is_some_and(|b| b & 0x01 == 0)
        })
    }

    fn begin_frame(&mut self) {
        self.started = false;
        self.keyframe = false;
    }

    fn append(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), DepacketizeError> {
        let d = Vp8Descriptor::parse(payload)?;
        let data = payload.get(d.len..).unwrap_or_default();
        if !self.started {
            if !d.starts_frame() {
                return Err(DepacketizeError::NoFrameStart);
            }
            self.started = true;
            self.keyframe = data.first().is_some_and(|b| b & 0x01 == 0);
        }
        if out.len() + data.len() > MAX_FRAME_BYTES {
            return Err(DepacketizeError::FrameTooLarge {
                limit: MAX_FRAME_BYTES,
            });
        }
        out.extend_from_slice(data);
        Ok(())
    }

    fn end_frame(&mut self) -> Result<bool, DepacketizeError> {
        if !self.started {
            return Err(DepacketizeError::NoFrameStart);
        }
        Ok(self.keyframe)
    }
}

/// The descriptor this packetizer writes: X=1, I=1 with a 15-bit PictureID
/// (so a receiver can tell frames apart across loss), S on the first packet.
const DESCRIPTOR_LEN: usize = 4;

/// Cuts VP8 frames into RTP payloads with a payload descriptor.
#[derive(Debug)]
pub struct Vp8Packetizer {
    picture_id: u16,
    scratch: Vec<u8>,
}

impl Vp8Packetizer {
    /// A packetizer whose first frame carries PictureID `first_picture_id`
    /// (taken modulo 2^15).
    #[must_use]
    pub fn new(first_picture_id: u16) -> Self {
        Self {
            picture_id: first_picture_id & 0x7fff,
            scratch: Vec::new(),
        }
    }

    /// Calls `emit(payload, marker)` for each payload of `frame`, at most
    /// `mtu` bytes each; the marker is set on the frame's last one
    /// (RFC 7741 §4.1). Returns the number of payloads.
    pub fn packetize(
        &mut self,
        frame: &[u8],
        mtu: usize,
        mut emit: impl FnMut(&[u8], bool),
    ) -> Result<usize, PacketizeError> {
        if mtu <= DESCRIPTOR_LEN {
            return Err(PacketizeError::MtuTooSmall {
                mtu,
                min: DESCRIPTOR_LEN + 1,
            });
        }
        if frame.is_empty() {
            return Err(PacketizeError::EmptyFrame);
        }
        let chunks = frame.chunks(mtu - DESCRIPTOR_LEN);
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            self.scratch.clear();
            let start = if i == 0 { 0x10 } else { 0 };
            self.scratch.extend_from_slice(&[
                0x80 | start,
                0x80,
                0x80 | (self.picture_id >> 8) as u8,
                (self.picture_id & 0xff) as u8,
            ]);
            self.scratch.extend_from_slice(chunk);
            emit(&self.scratch, i + 1 == count);
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(payloads: &[Vec<u8>]) -> Result<(Vec<u8>, bool), DepacketizeError> {
        let mut d = Vp8Depacketizer::default();
        let mut out = Vec::new();
        d.begin_frame();
        for p in payloads {
            d.append(p, &mut out)?;
        }
        Ok((out, d.end_frame()?))
    }

    #[test]
    fn descriptor_forms() {
        // Minimal: no extension.
        let d = Vp8Descriptor::parse(&[0x10, 0xaa]).unwrap();
        assert!(d.starts_frame());
        assert_eq!((d.len, d.picture_id), (1, None));
        // X, I with a 7-bit PictureID, L and T.
        let d = Vp8Descriptor::parse(&[0x90, 0xe0, 0x05, 0x01, 0x40, 0xaa]).unwrap();
        assert_eq!((d.len, d.picture_id), (5, Some(5)));
        // 15-bit PictureID, partition 1, not a start.
        let d = Vp8Descriptor::parse(&[0x81, 0x80, 0x81, 0x02, 0xaa]).unwrap();
        assert_eq!((d.len, d.picture_id, d.partition), (4, Some(0x102), 1));
        assert!(!d.starts_frame());
    }

    #[test]
    fn malformed_descriptors_are_errors() {
        for bad in [
            &[][..],
            &[0x10],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x81],
            &[0x90, 0x80, 0x81, 0x02],
            &[0x90, 0x70, 0x00],
        ] {
            assert!(Vp8Descriptor::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trip_and_keyframe_bit() {
        let frame: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8 & 0xfe).collect();
        let mut p = Vp8Packetizer::new(0x7fff);
        let mut payloads = Vec::new();
        let mut markers = Vec::new();
        let n = p
            .packetize(&frame, 1200, |pl, m| {
                payloads.push(pl.to_vec());
                markers.push(m);
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(markers, [false, false, true]);
        assert!(payloads.iter().all(|pl| pl.len() <= 1200));
        assert!(Vp8Depacketizer::starts_keyframe(&payloads[0]));
        assert!(!Vp8Depacketizer::starts_keyframe(&payloads[1]));
        assert_eq!(
            Vp8Descriptor::parse(&payloads[0]).unwrap().picture_id,
            Some(0x7fff)
        );
        let (out, key) = assemble(&payloads).unwrap();
        assert_eq!(out, frame);
        assert!(key);
        // The PictureID wraps at 2^15.
        let mut first = Vec::new();
        p.packetize(&[0x01, 2, 3], 1200, |pl, _| first = pl.to_vec())
            .unwrap();
        assert_eq!(Vp8Descriptor::parse(&first).unwrap().picture_id, Some(0));
        let (_, key) = assemble(&[first]).unwrap();
        assert!(!key, "P bit set: an interframe");
    }

    #[test]
    fn a_frame_without_its_first_packet_is_refused() {
        let mut p = Vp8Packetizer::new(1);
        let mut payloads = Vec::new();
        p.packetize(&[0u8; 500], 200, |pl, _| payloads.push(pl.to_vec()))
            .unwrap();
        assert_eq!(
            assemble(&payloads[1..]).unwrap_err(),
            DepacketizeError::NoFrameStart
        );
    }

    #[test]
    fn packetizer_limits() {
        let mut p = Vp8Packetizer::new(0);
        assert!(matches!(
            p.packetize(&[1], 4, |_, _| {}),
            Err(PacketizeError::MtuTooSmall { .. })
        ));
        assert_eq!(
            p.packetize(&[], 100, |_, _| {}),
            Err(PacketizeError::EmptyFrame)
        );
    }
}

//! Learning a source's picture height on the packet path (DESIGN.md,
//! "Transcoding"): a receiver that takes the source's codec but a lower
//! `max_height` needs a scaled rendition, which the control plane can only
//! decide once it knows how tall the source is. For the few streams it
//! asks about (`RoutingSnapshot::heights`, empty otherwise), the worker
//! that receives the stream reads the height from its key frames' headers
//! (`video::dimensions`: a VP8 key frame header, an H.264 SPS) until one
//! gives it, and stores it in the shared [`SourceHeight`]; the control
//! plane notices on its tick, decides again, and stops asking.
//!
//! The cost on the packet path: one emptiness check of the map per
//! packet; for a probed stream, a lookup and the header read, only until
//! the height is known (then the entry leaves the snapshot).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::rtp::RtpPacket;
use crate::video::{VideoCodec, picture_height};

/// The picture height of one source stream, once a worker read it.
#[derive(Debug)]
pub struct SourceHeight {
    codec: VideoCodec,
    /// 0: not known yet.
    height: AtomicU32,
}

impl SourceHeight {
    /// A stream of `codec` whose height is not known yet.
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            height: AtomicU32::new(0),
        }
    }

    /// The height, once learnt.
    pub fn get(&self) -> Option<u32> {
        match self.height.load(Ordering::Relaxed) {
            0 => None,
            h => Some(h),
        }
    }

    /// Reads the height from the plaintext RTP packet `rtp` if it is not
    /// known yet and the packet declares it.
    #[inline]
    pub(crate) fn observe(&self, rtp: &[u8]) {
        if self.height.load(Ordering::Relaxed) != 0 {
            return;
        }
        let Ok(packet) = RtpPacket::parse(rtp) else {
            return;
        };
        if let Some(h) = picture_height(self.codec, packet.payload()) {
            self.height.store(h, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_frame_header_sets_the_height_once() {
        let probe = SourceHeight::new(VideoCodec::Vp8);
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        rtp.extend([0x10, 0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a]);
        rtp.extend(1280u16.to_le_bytes());
        rtp.extend(720u16.to_le_bytes());
        probe.observe(&rtp[..14]);
        assert_eq!(probe.get(), None, "a truncated packet says nothing");
        probe.observe(&rtp);
        assert_eq!(probe.get(), Some(720));
        let mut smaller = rtp.clone();
        smaller[21] = 0x68; // 360
        smaller[22] = 0x01;
        probe.observe(&smaller);
        assert_eq!(probe.get(), Some(720), "learnt once");
    }
}

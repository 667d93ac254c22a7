//! What the packet workers tell the control plane about a publisher
//! stream that WHEP receive slots may carry (DESIGN.md, "WebRTC"): its
//! loudest RFC 6464 audio level since the control plane last looked, and
//! the sequence number and timestamp of its last packet. The control plane decides which stream each slot
//! carries (`sluice_webrtc::slots::SlotRouter`, a few times a second) and
//! computes the header offsets at each switch from these figures.
//!
//! Why the decision is not taken in the worker: a viewer's slots are fed
//! by publishers whose packets arrive on different workers (the kernel
//! hashes each sender to one), so no worker sees every candidate's level.
//! A worker only stores two numbers per packet, relaxed, into a cell only
//! the publisher's own worker writes: no lock, no allocation, no syscall;
//! the control plane reads them on its own clock, off the packet path.
//! Streams get a feed only while their meeting has a WHEP viewer, and the
//! worker looks for one only while some feed exists.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::media::level::{SILENCE_DBOV, audio_level};
use crate::rtp::RtpPacket;

/// Set in `last` once a packet was seen.
const SEEN: u64 = 1 << 48;

/// One publisher stream's figures for the slot decisions.
#[derive(Debug)]
pub struct SourceFeed {
    /// The RFC 6464 extension id in this stream's packets (0: none).
    level_ext: u8,
    /// The loudest level since the last [`SourceFeed::take_level`], -dBov.
    level: AtomicU8,
    /// `SEEN | seq << 32 | timestamp` of the last packet; 0 for none.
    last: AtomicU64,
}

impl SourceFeed {
    /// A feed for a stream whose packets carry the audio level in
    /// extension element `level_ext` (0: none, e.g. video).
    #[must_use]
    pub fn new(level_ext: u8) -> Self {
        Self {
            level_ext,
            level: AtomicU8::new(SILENCE_DBOV),
            last: AtomicU64::new(0),
        }
    }

    /// Records the plaintext RTP packet `rtp` of the stream (a packet
    /// worker, per packet; malformed input is ignored).
    #[inline]
    pub fn observe(&self, rtp: &[u8]) {
        let Ok(packet) = RtpPacket::parse(rtp) else {
            return;
        };
        let header = packet.header();
        let last = SEEN | u64::from(header.sequence().0) << 32 | u64::from(header.timestamp());
        self.last.store(last, Ordering::Relaxed);
        // The loudest since the control plane last looked: a load and,
        // when louder, a store (no read-modify-write; a store racing the
        // reset only counts toward the next period).
        if self.level_ext != 0
            && let Some(level) = audio_level(&packet, self.level_ext)
            && level < self.level.load(Ordering::Relaxed)
        {
            self.level.store(level, Ordering::Relaxed);
        }
    }

    /// The loudest level seen since the last call (127, silence, if
    /// none), and starts the next period (the control plane, each tick).
    pub fn take_level(&self) -> u8 {
        self.level.swap(SILENCE_DBOV, Ordering::Relaxed)
    }

    /// The extension id levels are read from (0: none).
    #[must_use]
    pub fn level_extension(&self) -> u8 {
        self.level_ext
    }

    /// The sequence number and timestamp of the last packet, if any.
    #[must_use]
    pub fn last(&self) -> Option<(u16, u32)> {
        let last = self.last.load(Ordering::Relaxed);
        (last & SEEN != 0).then_some(((last >> 32) as u16, last as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_packet_and_its_level_are_recorded_and_garbage_is_ignored() {
        let feed = SourceFeed::new(1);
        assert_eq!((feed.last(), feed.take_level()), (None, SILENCE_DBOV));
        // seq 0x1234, ts 0xAABBCCDD, one-byte extension: level id 1 = 0x80|33.
        let mut p = vec![0x90, 111, 0x12, 0x34, 0xAA, 0xBB, 0xCC, 0xDD, 0, 0, 0, 1];
        p.extend([0xBE, 0xDE, 0, 1, 0x10, 0x80 | 33, 0, 0]);
        p.extend(b"opus");
        feed.observe(&p);
        // A quieter packet after it: the period keeps the loudest.
        let mut quiet = p.clone();
        quiet[17] = 90;
        quiet[3] = 0x35;
        feed.observe(&quiet);
        assert_eq!(feed.last(), Some((0x1235, 0xAABB_CCDD)));
        assert_eq!(feed.take_level(), 33);
        assert_eq!(feed.take_level(), SILENCE_DBOV, "a new period");
        feed.observe(&quiet);
        assert_eq!(feed.take_level(), 90);
        for n in 0..p.len() {
            feed.observe(&p[..n]);
        }
        // A video feed reads no level.
        let video = SourceFeed::new(0);
        video.observe(&p);
        assert_eq!(video.take_level(), SILENCE_DBOV);
        assert_eq!(video.last(), Some((0x1234, 0xAABB_CCDD)));
    }
}

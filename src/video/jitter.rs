//! A small jitter buffer for one video stream: it puts packets back in
//! sequence order, hands out whole frames, notices loss, asks for the
//! lost packets (NACK, RFC 4585 §6.2.1) and, when they do not come in
//! time, drops what depends on them and waits for the next key frame
//! (asking the publisher for one: PLI, RFC 4585 §6.3.1).
//!
//! Sans-IO: feed packets with [`JitterBuffer::handle_packet`], then drain
//! [`JitterBuffer::poll_output`] until it returns `None`; call it again at
//! [`JitterBuffer::poll_timeout`] even when no packet came. It never reads
//! the clock. Packets are copied into a fixed ring of slots whose buffers
//! are reused, so a warmed-up buffer does not allocate.

use std::time::{Duration, Instant};

use super::Depacketizer;
use crate::rtp::SeqNum;

/// How patient the buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Packets held at most (rounded up to a power of two). A packet that
    /// many ahead of the next one needed means the missing ones are lost.
    pub capacity: usize,
    /// How long a hole may stay open (reordering, a NACK's answer) before
    /// the packets are taken as lost.
    pub max_wait: Duration,
    /// While waiting for a key frame, how often to ask again.
    pub keyframe_retry: Duration,
    /// Whether to emit NACKs for holes (only where the publisher answers).
    pub nack: bool,
}

impl Default for JitterConfig {
    /// 1024 packets (about 1 s of 8 Mbit/s video), 80 ms for a hole
    /// (reordering plus one loopback or LAN NACK round trip), a key frame
    /// request every 500 ms while waiting.
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_wait: Duration::from_millis(80),
            keyframe_retry: Duration::from_millis(500),
            nack: true,
        }
    }
}

/// A complete frame, ready for the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Whether it is a key frame (decodable on its own).
    pub keyframe: bool,
    /// The codec's bitstream (Annex B for H.264, raw for VP8).
    pub data: &'a [u8],
}

/// What the buffer asks of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterOutput<'a> {
    /// The next frame, in order.
    Frame(Frame<'a>),
    /// Ask the publisher to resend these packets (generic NACK).
    Nack(&'a [SeqNum]),
    /// Ask the publisher for a key frame (PLI): loss could not be repaired,
    /// or no key frame has come yet.
    KeyframeNeeded,
}

/// What happened to the stream so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames handed out.
    pub frames: u64,
    /// Frames dropped: broken (bad payload, lost packets) or undecodable
    /// while waiting for a key frame.
    pub frames_dropped: u64,
    /// Packets that came after their frame was handed out or given up.
    pub packets_late: u64,
    /// Packets seen twice.
    pub packets_duplicate: u64,
    /// Holes given up on.
    pub losses: u64,
    /// Key frame requests emitted.
    pub keyframe_requests: u64,
    /// NACK outputs emitted.
    pub nacks: u64,
}

#[derive(Debug, Default)]
struct Slot {
    seq: u16,
    present: bool,
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Hole {
    seq: SeqNum,
    since: Instant,
    nacked: bool,
}

/// Packets kept before the newest while waiting for a key frame, in case
/// its first packet comes out of order.
const REORDER_MARGIN: u16 = 32;

/// The most sequence numbers one NACK output names.
const MAX_NACK: usize = 64;

/// The jitter buffer of one stream, depacketizing with `D`.
#[derive(Debug)]
pub struct JitterBuffer<D> {
    config: JitterConfig,
    slots: Box<[Slot]>,
    mask: u16,
    /// The first packet of the next frame (or, waiting for a key frame,
    /// the oldest packet still worth looking at).
    expected: Option<SeqNum>,
    highest: Option<SeqNum>,
    waiting_keyframe: bool,
    hole: Option<Hole>,
    last_keyframe_request: Option<Instant>,
    depacketizer: D,
    frame: Vec<u8>,
    nack: Vec<SeqNum>,
    stats: JitterStats,
}

impl<D: Depacketizer + Default> JitterBuffer<D> {
    /// An empty buffer; it waits for a key frame before its first frame.
    #[must_use]
    pub fn new(config: JitterConfig) -> Self {
        let capacity = config.capacity.clamp(16, 1 << 15).next_power_of_two();
        Self {
            config,
            slots: (0..capacity).map(|_| Slot::default()).collect(),
            mask: (capacity - 1) as u16, // capacity <= 2^15
            expected: None,
            highest: None,
            waiting_keyframe: true,
            hole: None,
            last_keyframe_request: None,
            depacketizer: D::default(),
            frame: Vec::new(),
            nack: Vec::with_capacity(MAX_NACK),
            stats: JitterStats::default(),
        }
    }
}

impl<D: Depacketizer> JitterBuffer<D> {
    /// The counters so far.
    #[must_use]
    pub const fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Whether the buffer is dropping frames until a key frame comes.
    #[must_use]
    pub const fn waiting_for_keyframe(&self) -> bool {
        self.waiting_keyframe
    }

    /// Drops frames until the next key frame, asking for one: what the
    /// owner calls when a frame the buffer handed out would not decode.
    pub fn resync(&mut self) {
        if !self.waiting_keyframe {
            self.give_up();
        }
    }

    fn slot(&self, seq: SeqNum) -> Option<&Slot> {
        let slot = &self.slots[usize::from(seq.0 & self.mask)];
        (slot.present && slot.seq == seq.0).then_some(slot)
    }

    fn clear_slot(&mut self, seq: SeqNum) {
        let slot = &mut self.slots[usize::from(seq.0 & self.mask)];
        if slot.seq == seq.0 {
            slot.present = false;
        }
    }

    /// Forgets every packet from `expected` up to (not including) `to`;
    /// while waiting for a key frame, the frames they held count as
    /// dropped.
    fn release_until(&mut self, to: SeqNum) {
        let Some(mut seq) = self.expected else { return };
        let mut last_ts = None;
        while seq != to {
            if let Some(ts) = self.slot(seq).map(|slot| slot.timestamp) {
                if self.waiting_keyframe && last_ts != Some(ts) {
                    self.stats.frames_dropped += 1;
                }
                last_ts = Some(ts);
            }
            self.clear_slot(seq);
            seq = seq.wrapping_add(1);
        }
        self.expected = Some(to);
    }

    /// Takes one RTP packet of the stream: its sequence number, timestamp,
    /// marker bit and payload (already decrypted, padding removed).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        seq: SeqNum,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        // Holes are timed from when poll_output first sees them, so the
        // arrival time is not needed yet; the parameter keeps the driving
        // vocabulary (every handle_* takes now) for an arrival-jitter
        // estimate later.
        let _ = now;
        let capacity = self.mask + 1;
        let expected = *self.expected.get_or_insert(seq);
        if expected.is_newer_than(seq) {
            self.stats.packets_late += 1;
            return;
        }
        if seq.wrapping_distance_from(expected) >= capacity {
            // So far ahead that the packets in between cannot fit: those
            // not here yet are lost.
            let oldest = seq.wrapping_add(1u16.wrapping_sub(capacity));
            if !self.waiting_keyframe {
                self.give_up();
            }
            self.release_until(oldest);
        }
        let index = usize::from(seq.0 & self.mask);
        let slot = &mut self.slots[index];
        if slot.present && slot.seq == seq.0 {
            self.stats.packets_duplicate += 1;
            return;
        }
        slot.seq = seq.0;
        slot.present = true;
        slot.timestamp = timestamp;
        slot.marker = marker;
        slot.payload.clear();
        slot.payload.extend_from_slice(payload);
        if self.highest.is_none_or(|h| seq.is_newer_than(h)) {
            self.highest = Some(seq);
        }
    }

    /// Enters "waiting for a key frame" after loss it cannot repair.
    fn give_up(&mut self) {
        self.stats.losses += 1;
        self.waiting_keyframe = true;
        self.hole = None;
        // Ask at once: the loss is news.
        self.last_keyframe_request = None;
    }

    /// When to call [`Self::poll_output`] again if no packet comes first.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hole = self.hole.map(|h| h.since + self.config.max_wait);
        let retry = if self.waiting_keyframe {
            self.last_keyframe_request
                .map(|at| at + self.config.keyframe_retry)
        } else {
            None
        };
        match (hole, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing to do: a frame to decode, packets to NACK, a key
    /// frame to ask for; `None` when there is nothing until more packets
    /// come or [`Self::poll_timeout`] passes.
    pub fn poll_output(&mut self, now: Instant) -> Option<JitterOutput<'_>> {
        let (Some(_), Some(highest)) = (self.expected, self.highest) else {
            return None;
        };
        if self.waiting_keyframe && !self.find_keyframe(highest) {
            let due = self
                .last_keyframe_request
                .is_none_or(|at| now >= at + self.config.keyframe_retry);
            if !due {
                return None;
            }
            self.last_keyframe_request = Some(now);
            self.stats.keyframe_requests += 1;
            return Some(JitterOutput::KeyframeNeeded);
        }
        match self.next_frame(highest) {
            Assembly::Complete { last } => {
                let outcome = self.depacketize(last);
                let next = last.wrapping_add(1);
                self.release_until(next);
                self.hole = None;
                match outcome {
                    Some(frame) => {
                        self.stats.frames += 1;
                        Some(JitterOutput::Frame(Frame {
                            timestamp: frame.0,
                            keyframe: frame.1,
                            data: &self.frame,
                        }))
                    }
                    None => {
                        self.stats.frames_dropped += 1;
                        self.give_up();
                        self.poll_output(now)
                    }
                }
            }
            Assembly::Incomplete => None,
            Assembly::Hole(seq) => self.handle_hole(now, seq, highest),
        }
    }

    fn handle_hole(
        &mut self,
        now: Instant,
        seq: SeqNum,
        highest: SeqNum,
    ) -> Option<JitterOutput<'_>> {
        let hole = match self.hole {
            Some(hole) if hole.seq == seq => hole,
            _ => Hole {
                seq,
                since: now,
                nacked: false,
            },
        };
        self.hole = Some(hole);
        if now >= hole.since + self.config.max_wait {
            self.give_up();
            self.release_until(seq.wrapping_add(1));
            return self.poll_output(now);
        }
        if !self.config.nack || hole.nacked {
            return None;
        }
        self.nack.clear();
        let mut s = seq;
        while s != highest && self.nack.len() < MAX_NACK {
            if self.slot(s).is_none() {
                self.nack.push(s);
            }
            s = s.wrapping_add(1);
        }
        self.hole = Some(Hole {
            nacked: true,
            ..hole
        });
        self.stats.nacks += 1;
        Some(JitterOutput::Nack(&self.nack))
    }

    /// Looks for the first packet of a key frame between `expected` and
    /// `highest`; on finding one, drops what comes before it and syncs.
    fn find_keyframe(&mut self, highest: SeqNum) -> bool {
        let Some(mut seq) = self.expected else {
            return false;
        };
        loop {
            if let Some(slot) = self.slot(seq) {
                let before = self.slot(seq.wrapping_add(u16::MAX));
                let begins = before.is_none_or(|b| b.marker || b.timestamp != slot.timestamp);
                if begins && D::starts_keyframe(&slot.payload) {
                    self.release_until(seq);
                    self.waiting_keyframe = false;
                    self.hole = None;
                    return true;
                }
            }
            if seq == highest {
                // None here: forget all but the last few packets (a key
                // frame's start may still come, reordered), so the next
                // look starts near the front.
                let keep = highest.wrapping_add(1u16.wrapping_sub(REORDER_MARGIN));
                if self.expected.is_some_and(|e| keep.is_newer_than(e)) {
                    self.release_until(keep);
                }
                return false;
            }
            seq = seq.wrapping_add(1);
        }
    }

    /// Whether the frame starting at `expected` is all here.
    fn next_frame(&self, highest: SeqNum) -> Assembly {
        let Some(first) = self.expected else {
            return Assembly::Incomplete;
        };
        let Some(head) = self.slot(first) else {
            return self.missing(first, highest);
        };
        let timestamp = head.timestamp;
        let mut seq = first;
        loop {
            // The caller checked `first` is present; later ones below.
            let Some(slot) = self.slot(seq) else {
                return self.missing(seq, highest);
            };
            if slot.marker {
                return Assembly::Complete { last: seq };
            }
            let next = seq.wrapping_add(1);
            if let Some(after) = self.slot(next)
                && after.timestamp != timestamp
            {
                // The marker packet was lost or never sent: the next
                // timestamp ends this frame all the same.
                return Assembly::Complete { last: seq };
            }
            if seq == highest {
                return Assembly::Incomplete;
            }
            seq = next;
        }
    }

    /// A missing packet is a hole only once something after it came.
    fn missing(&self, seq: SeqNum, highest: SeqNum) -> Assembly {
        if highest.is_newer_than(seq) {
            Assembly::Hole(seq)
        } else {
            Assembly::Incomplete
        }
    }

    /// Runs the depacketizer over `expected..=last` into `self.frame`:
    /// the frame's (timestamp, keyframe), or `None` when the payloads are
    /// malformed.
    fn depacketize(&mut self, last: SeqNum) -> Option<(u32, bool)> {
        let first = self.expected?;
        self.frame.clear();
        self.depacketizer.begin_frame();
        let mut seq = first;
        let timestamp = self.slots[usize::from(first.0 & self.mask)].timestamp;
        loop {
            // next_frame saw every slot of first..=last present.
            let slot = &self.slots[usize::from(seq.0 & self.mask)];
            if self
                .depacketizer
                .append(&slot.payload, &mut self.frame)
                .is_err()
            {
                return None;
            }
            if seq == last {
                break;
            }
            seq = seq.wrapping_add(1);
        }
        let keyframe = self.depacketizer.end_frame().ok()?;
        Some((timestamp, keyframe))
    }
}

enum Assembly {
    Complete { last: SeqNum },
    Incomplete,
    Hole(SeqNum),
}

#[cfg(test)]
mod tests;

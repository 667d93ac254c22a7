//! [`MeetingStream`]: one meeting participant's Opus stream as a meeting
//! mix hears it: a short packet queue, a duplicate filter, and (once the
//! stream is first mixed) its decoder, which decodes straight to the
//! callers' rate ([`NarrowbandDecoder`]: libopus at 8 kHz for G.711
//! callers, no 48 kHz frame and no resampler in between; 16 or 48 kHz for
//! wideband callers).
//!
//! Each stream has its own decoder state, so every mix built from it (the
//! common one, a speaker's N-1 one) is a sum of continuous signals: a
//! caller who switches between the two mixes hears no splice.

use super::level::SILENCE_DBOV;
use super::libopus::NarrowbandDecoder;
use super::opus::packet_samples;
use super::{MediaError, OPUS_RATE};

/// Opus packets kept per meeting stream; older ones are dropped.
pub const STREAM_QUEUE_PACKETS: usize = 6;

/// Sequence numbers remembered behind the highest one seen; a packet
/// further behind is taken as the stream starting over.
const SEEN_WINDOW: u16 = 64;

/// Which RTP sequence numbers of a stream have been queued already: the
/// highest and a bitmap of the [`SEEN_WINDOW`] before it.
#[derive(Debug, Default)]
struct SeenWindow {
    highest: Option<u16>,
    /// Bit `i`: `highest - i` was seen.
    bits: u64,
}

impl SeenWindow {
    /// Marks `seq` seen; `false` when it was already.
    fn insert(&mut self, seq: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.bits = 1;
            return true;
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead == 0 {
            return false;
        }
        if ahead < 0x8000 {
            self.bits = self.bits.checked_shl(ahead.into()).unwrap_or(0) | 1;
            self.highest = Some(seq);
            return true;
        }
        let behind = highest.wrapping_sub(seq);
        if behind >= SEEN_WINDOW {
            // Far behind: every leg delivers a packet within a tick or
            // two of the others, so this is the sender restarting its
            // numbering, not a late duplicate.
            self.highest = Some(seq);
            self.bits = 1;
            return true;
        }
        let bit = 1u64 << behind;
        let new = self.bits & bit == 0;
        self.bits |= bit;
        new
    }
}

/// One queued Opus payload; the buffer is reused.
#[derive(Default)]
struct Queued {
    bytes: Vec<u8>,
    level: Option<u8>,
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queueing {
    /// Queued.
    Queued,
    /// Queued, and the oldest queued packet dropped for room.
    Overflowed,
    /// The same sequence number was queued before (another leg's copy).
    Duplicate,
}

/// One other participant's stream as a meeting mix hears it.
pub(super) struct MeetingStream {
    pub(super) ssrc: u32,
    queue: [Queued; STREAM_QUEUE_PACKETS],
    head: usize,
    queued: usize,
    seen: SeenWindow,
    /// Created the first time the stream is decoded.
    decoder: Option<NarrowbandDecoder>,
    /// Decoded samples not yet played (a 60 ms packet leaves 40 ms).
    pcm: Vec<i16>,
    pub(super) last_push: u64,
    /// The rate decoded to.
    rate: u32,
    /// 20 ms at `rate`.
    frame: usize,
}

impl MeetingStream {
    /// A stream decoded at `rate` (8, 16 or 48 kHz: the mix's).
    pub(super) fn new(ssrc: u32, tick: u64, rate: u32) -> Self {
        Self {
            rate,
            frame: rate as usize / 50,
            ssrc,
            queue: Default::default(),
            head: 0,
            queued: 0,
            seen: SeenWindow::default(),
            decoder: None,
            pcm: Vec::new(),
            last_push: tick,
        }
    }

    /// Whether the stream has been decoded (has a decoder).
    #[cfg(test)]
    pub(super) const fn is_decoding(&self) -> bool {
        self.decoder.is_some()
    }

    /// Queues `payload`; `seq` (when known) filters out copies of a
    /// packet already queued.
    pub(super) fn push(&mut self, seq: Option<u16>, payload: &[u8], level: Option<u8>) -> Queueing {
        if let Some(seq) = seq
            && !self.seen.insert(seq)
        {
            return Queueing::Duplicate;
        }
        let mut queueing = Queueing::Queued;
        if self.queued == STREAM_QUEUE_PACKETS {
            self.head = (self.head + 1) % STREAM_QUEUE_PACKETS;
            self.queued -= 1;
            queueing = Queueing::Overflowed;
        }
        let slot = &mut self.queue[(self.head + self.queued) % STREAM_QUEUE_PACKETS];
        slot.bytes.clear();
        slot.bytes.extend_from_slice(payload);
        slot.level = level.map(|l| l.min(SILENCE_DBOV));
        self.queued += 1;
        queueing
    }

    /// This tick's level for ranking: the energy of what is decoded
    /// already, else the level the next packet carried, else (no level
    /// given) the energy after decoding now. `None`: nothing to play.
    /// Adds decode errors and packets decoded to `counts`.
    pub(super) fn level(&mut self, counts: &mut DecodeCounts) -> Result<Option<u8>, MediaError> {
        let frame = self.frame;
        if self.pcm.len() >= frame {
            return Ok(Some(super::level::energy_dbov(&self.pcm[..frame])));
        }
        let head_level = (self.queued > 0).then(|| self.queue[self.head].level);
        Ok(match head_level {
            None if self.pcm.is_empty() => None,
            Some(Some(level)) => Some(level),
            // No level given (or only a partial frame buffered): decode
            // now and measure.
            _ => {
                self.decode_frame(counts)?;
                Some(super::level::energy_dbov(
                    &self.pcm[..self.pcm.len().min(frame)],
                ))
            }
        })
    }

    fn pop(&mut self) -> Option<&Queued> {
        if self.queued == 0 {
            return None;
        }
        let at = self.head;
        self.head = (self.head + 1) % STREAM_QUEUE_PACKETS;
        self.queued -= 1;
        Some(&self.queue[at])
    }

    /// Decodes queued packets until 20 ms are buffered or the queue is
    /// empty.
    fn decode_frame(&mut self, counts: &mut DecodeCounts) -> Result<(), MediaError> {
        while self.pcm.len() < self.frame && self.queued > 0 {
            if self.decoder.is_none() {
                self.decoder = Some(NarrowbandDecoder::with_rate(self.rate)?);
                // 120 ms (the longest packet) and a frame.
                self.pcm.reserve(7 * self.frame);
            }
            let at = self.head;
            self.head = (self.head + 1) % STREAM_QUEUE_PACKETS;
            self.queued -= 1;
            let Some(decoder) = self.decoder.as_mut() else {
                break;
            };
            counts.packets += 1;
            match decoder.decode(&self.queue[at].bytes) {
                Ok(pcm) => self.pcm.extend_from_slice(pcm),
                Err(_) => {
                    counts.errors += 1;
                    self.pcm.extend_from_slice(decoder.conceal());
                }
            }
        }
        Ok(())
    }

    /// Lets 20 ms pass unheard: buffered samples first, then packets.
    pub(super) fn skip_frame(&mut self) {
        let frame = self.frame;
        let decimation = (OPUS_RATE / self.rate) as usize;
        let from_pcm = self.pcm.len().min(frame);
        self.pcm.drain(..from_pcm);
        let mut skipped = from_pcm;
        while skipped < frame {
            let Some(q) = self.pop() else { break };
            skipped += packet_samples(&q.bytes).map_or(frame, |n| n / decimation);
        }
    }

    /// Decodes what 20 ms need and takes them, silence-padded, into `out`
    /// (20 ms at the stream's rate).
    pub(super) fn play_frame(
        &mut self,
        counts: &mut DecodeCounts,
        out: &mut [i16],
    ) -> Result<(), MediaError> {
        self.decode_frame(counts)?;
        let n = self.pcm.len().min(self.frame).min(out.len());
        out[..n].copy_from_slice(&self.pcm[..n]);
        out[n..].fill(0);
        self.pcm.drain(..n);
        Ok(())
    }
}

/// Decoding done while mixing, for the mix's stats.
#[derive(Debug, Default)]
pub(super) struct DecodeCounts {
    /// Opus packets given to a decoder.
    pub(super) packets: u64,
    /// Of those, packets that failed (concealed).
    pub(super) errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_window_drops_copies_and_takes_reordering() {
        let mut w = SeenWindow::default();
        assert!(w.insert(10));
        assert!(!w.insert(10));
        assert!(w.insert(12));
        assert!(w.insert(11), "late but new");
        assert!(!w.insert(11));
        assert!(!w.insert(12));
        // Wrapping forward.
        assert!(w.insert(65_535));
        assert!(w.insert(0));
        assert!(!w.insert(65_535));
        // 64 or more behind: a restart, taken.
        assert!(w.insert(0u16.wrapping_sub(100)));
        assert!(!w.insert(0u16.wrapping_sub(100)));
        // Far ahead: everything before is forgotten, nothing breaks.
        assert!(w.insert(30_000));
        assert!(!w.insert(30_000));
    }

    #[test]
    fn duplicates_are_not_queued() {
        let mut s = MeetingStream::new(1, 0, 8000);
        assert_eq!(s.push(Some(5), &[8, 1], None), Queueing::Queued);
        assert_eq!(s.push(Some(5), &[8, 1], None), Queueing::Duplicate);
        assert_eq!(s.push(None, &[8, 1], None), Queueing::Queued);
        assert_eq!(s.queued, 2);
        for seq in 6..11 {
            s.push(Some(seq), &[8], Some(3));
        }
        assert_eq!(s.queued, STREAM_QUEUE_PACKETS);
        assert_eq!(s.push(Some(11), &[8], Some(3)), Queueing::Overflowed);
    }
}

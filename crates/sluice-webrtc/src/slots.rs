//! Receive slots of one WHEP viewer: which publisher's stream each of the
//! viewer's m-lines carries now, and the header rewriting that makes a
//! slot one continuous RTP stream across switches. Sans-IO, fed `now`.
//!
//! - Audio slots carry the loudest publishers by their RFC 6464 level
//!   (smoothed; a challenger must beat the quietest incumbent by
//!   [`AUDIO_MARGIN`] to take its slot, so two similar voices don't flap).
//! - Video slots carry the most recent speakers (last-N): a publisher who
//!   starts speaking takes the slot of the incumbent who spoke least
//!   recently, if that one has been quiet for [`VIDEO_DWELL`]. A publisher
//!   who joins later takes a free slot at once: no renegotiation, the slot
//!   SSRCs were declared in the answer.
//! - Every switch asks for a keyframe from the stream entering a video
//!   slot ([`SlotEvent::RequestKeyframe`]), and [`SlotRouter::rewrite`]
//!   maps each forwarded packet's SSRC, sequence number and timestamp onto
//!   the slot's own: sequence numbers continue by one across a switch, the
//!   timestamp advances by the wall-clock gap at the codec's clock rate.
//!   The payload is never touched (E2EE meetings: SFrame ciphertext).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much louder (in dB, RFC 6464 levels are -dBov) a publisher must be
/// than the quietest one holding an audio slot to take it.
pub const AUDIO_MARGIN: f32 = 6.0;
/// How long a video slot's speaker must have been quiet before a newer
/// speaker takes it.
pub const VIDEO_DWELL: Duration = Duration::from_secs(2);
/// A smoothed level at or below this many -dBov counts as speaking.
pub const SPEAKING_LEVEL: f32 = 50.0;
/// Weight of a new level sample in the smoothing (one per audio packet,
/// ~50/s: about 100 ms to follow a step).
const SMOOTHING: f32 = 0.2;
/// How often assignments are re-evaluated.
pub const DECISION_INTERVAL: Duration = Duration::from_millis(250);

/// Audio or video slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// An audio m-line (48 kHz clock).
    Audio,
    /// A video m-line (90 kHz clock).
    Video,
}

impl SlotKind {
    /// The RTP clock of the slot's codecs (Opus 48 kHz, video 90 kHz).
    pub fn clock_rate(self) -> u64 {
        match self {
            Self::Audio => 48_000,
            Self::Video => 90_000,
        }
    }
}

/// What the router tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotEvent {
    /// Slot `index` of `kind` now carries `to` (None: nothing).
    Switched {
        /// Audio or video.
        kind: SlotKind,
        /// Which slot of that kind.
        index: usize,
        /// The source SSRC it carried.
        from: Option<u32>,
        /// The source SSRC it carries now.
        to: Option<u32>,
    },
    /// Send a PLI to the publisher of `ssrc`: it just entered a video slot.
    RequestKeyframe {
        /// The publisher's video SSRC.
        ssrc: u32,
    },
}

/// A packet's header fields as the viewer must see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// The slot's SSRC (declared in the answer).
    pub ssrc: u32,
    /// Continuous across switches.
    pub seq: u16,
    /// Continuous across switches.
    pub timestamp: u32,
}

#[derive(Debug)]
struct Slot {
    kind: SlotKind,
    ssrc: u32,
    source: Option<u32>,
    /// Set on a switch; the first packet of the new source fixes offsets.
    fresh: bool,
    seq_offset: u16,
    ts_offset: u32,
    /// The last sequence number, timestamp and time sent on the slot.
    last: Option<(u16, u32, Instant)>,
}

impl Slot {
    fn rewrite(&mut self, now: Instant, seq: u16, ts: u32) -> Rewritten {
        if self.fresh {
            self.fresh = false;
            let (next_seq, next_ts) = match self.last {
                Some((s, t, at)) => {
                    let gap = now.saturating_duration_since(at);
                    // RTP timestamps wrap, so only the gap modulo 2^32
                    // matters; u128 keeps a gap of years from overflowing.
                    let ticks =
                        (gap.as_micros() * u128::from(self.kind.clock_rate()) / 1_000_000).max(1);
                    (s.wrapping_add(1), t.wrapping_add(ticks as u32))
                }
                None => (seq, ts),
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // Keep the highest sequence number sent (a late reordered packet
        // must not pull the continuation point back).
        let newer = self
            .last
            .is_none_or(|(s, _, _)| out_seq.wrapping_sub(s) < 0x8000);
        if newer {
            self.last = Some((out_seq, out_ts, now));
        }
        Rewritten {
            ssrc: self.ssrc,
            seq: out_seq,
            timestamp: out_ts,
        }
    }
}

#[derive(Debug)]
struct Publisher {
    id: u64,
    audio: Option<u32>,
    video: Option<u32>,
    /// Smoothed RFC 6464 level, -dBov (0 loudest, 127 silence).
    level: f32,
    last_spoke: Option<Instant>,
    joined: Instant,
}

/// The slots of one viewer and the publishers that can fill them.
#[derive(Debug)]
pub struct SlotRouter {
    slots: Vec<Slot>,
    publishers: Vec<Publisher>,
    next_decision: Option<Instant>,
    events: VecDeque<SlotEvent>,
}

impl SlotRouter {
    /// A viewer whose answer declared these slot SSRCs.
    pub fn new(audio_ssrcs: &[u32], video_ssrcs: &[u32]) -> Self {
        let slot = |kind, ssrc| Slot {
            kind,
            ssrc,
            source: None,
            fresh: true,
            seq_offset: 0,
            ts_offset: 0,
            last: None,
        };
        Self {
            slots: audio_ssrcs
                .iter()
                .map(|&s| slot(SlotKind::Audio, s))
                .chain(video_ssrcs.iter().map(|&s| slot(SlotKind::Video, s)))
                .collect(),
            publishers: Vec::new(),
            next_decision: None,
            events: VecDeque::new(),
        }
    }

    /// A publisher (participant `id`) with its audio and video SSRCs. It
    /// takes free slots at once.
    pub fn add_publisher(&mut self, now: Instant, id: u64, audio: Option<u32>, video: Option<u32>) {
        self.publishers.retain(|p| p.id != id);
        self.publishers.push(Publisher {
            id,
            audio,
            video,
            level: 127.0,
            last_spoke: None,
            joined: now,
        });
        self.decide(now);
    }

    /// Publisher `id` now publishes these SSRCs (its video came after its
    /// audio, say): a slot holding a stream it no longer has empties, its
    /// level and speaking history stay. An unknown `id` is added.
    pub fn update_publisher(
        &mut self,
        now: Instant,
        id: u64,
        audio: Option<u32>,
        video: Option<u32>,
    ) {
        let Some(p) = self.publishers.iter_mut().find(|p| p.id == id) else {
            return self.add_publisher(now, id, audio, video);
        };
        let old = [p.audio, p.video];
        (p.audio, p.video) = (audio, video);
        for index in 0..self.slots.len() {
            let source = self.slots[index].source;
            if source.is_some() && old.contains(&source) && source != audio && source != video {
                self.assign(index, None);
            }
        }
        self.decide(now);
    }

    /// The publisher left: its slots empty, and others may take them.
    pub fn remove_publisher(&mut self, now: Instant, id: u64) {
        let Some(i) = self.publishers.iter().position(|p| p.id == id) else {
            return;
        };
        let gone = self.publishers.remove(i);
        for index in 0..self.slots.len() {
            let source = self.slots[index].source;
            if source.is_some() && (source == gone.audio || source == gone.video) {
                self.assign(index, None);
            }
        }
        self.decide(now);
    }

    /// An audio packet's RFC 6464 level (0–127 -dBov) for `audio_ssrc`.
    pub fn handle_audio_level(&mut self, now: Instant, audio_ssrc: u32, level: u8) {
        let Some(p) = self
            .publishers
            .iter_mut()
            .find(|p| p.audio == Some(audio_ssrc))
        else {
            return;
        };
        p.level += SMOOTHING * (f32::from(level.min(127)) - p.level);
        if p.level <= SPEAKING_LEVEL {
            p.last_spoke = Some(now);
        }
        if self.next_decision.is_none() {
            self.next_decision = Some(now + DECISION_INTERVAL);
        }
    }

    /// When [`SlotRouter::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_decision
    }

    /// Re-evaluates the assignment if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_decision.is_some_and(|t| now >= t) {
            self.next_decision = None;
            self.decide(now);
        }
    }

    /// The next event; drain after every call.
    pub fn poll_event(&mut self) -> Option<SlotEvent> {
        self.events.pop_front()
    }

    /// The participants (`add_publisher`'s ids) the router knows.
    pub fn publisher_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.publishers.iter().map(|p| p.id)
    }

    /// The audio and video SSRCs publisher `id` was added with.
    pub fn publisher(&self, id: u64) -> Option<(Option<u32>, Option<u32>)> {
        let p = self.publishers.iter().find(|p| p.id == id)?;
        Some((p.audio, p.video))
    }

    /// The source SSRC slot `index` of `kind` carries now.
    pub fn source(&self, kind: SlotKind, index: usize) -> Option<u32> {
        self.slots
            .iter()
            .filter(|s| s.kind == kind)
            .nth(index)?
            .source
    }

    /// Maps a packet of `source_ssrc` onto its slot, or `None` if no slot
    /// carries that stream (then the viewer does not get the packet).
    /// Allocation-free: a scan of a handful of slots.
    pub fn rewrite(
        &mut self,
        now: Instant,
        source_ssrc: u32,
        seq: u16,
        timestamp: u32,
    ) -> Option<Rewritten> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.source == Some(source_ssrc))?;
        Some(slot.rewrite(now, seq, timestamp))
    }

    fn assign(&mut self, index: usize, to: Option<u32>) {
        let slot = &mut self.slots[index];
        if slot.source == to {
            return;
        }
        let from = slot.source;
        slot.source = to;
        slot.fresh = true;
        let kind = slot.kind;
        let nth = self.slots[..index]
            .iter()
            .filter(|s| s.kind == kind)
            .count();
        self.events.push_back(SlotEvent::Switched {
            kind,
            index: nth,
            from,
            to,
        });
        if let (SlotKind::Video, Some(ssrc)) = (kind, to) {
            self.events.push_back(SlotEvent::RequestKeyframe { ssrc });
        }
    }

    fn decide(&mut self, now: Instant) {
        self.decide_audio();
        self.decide_video(now);
    }

    fn level_of(&self, ssrc: u32) -> f32 {
        self.publishers
            .iter()
            .find(|p| p.audio == Some(ssrc))
            .map_or(127.0, |p| p.level)
    }

    fn decide_audio(&mut self) {
        loop {
            let held = |slots: &[Slot], ssrc: u32| slots.iter().any(|s| s.source == Some(ssrc));
            // The loudest publisher not in a slot.
            let Some((challenger, level)) = self
                .publishers
                .iter()
                .filter_map(|p| p.audio.map(|a| (a, p.level)))
                .filter(|(a, _)| !held(&self.slots, *a))
                .min_by(|x, y| x.1.total_cmp(&y.1))
            else {
                return;
            };
            let audio = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == SlotKind::Audio);
            // A free slot first, else the quietest incumbent if beaten by the margin.
            let target = audio
                .clone()
                .find(|(_, s)| s.source.is_none())
                .map(|(i, _)| i)
                .or_else(|| {
                    audio
                        .filter_map(|(i, s)| s.source.map(|src| (i, self.level_of(src))))
                        .max_by(|x, y| x.1.total_cmp(&y.1))
                        .filter(|(_, quietest)| level + AUDIO_MARGIN <= *quietest)
                        .map(|(i, _)| i)
                });
            match target {
                Some(i) => self.assign(i, Some(challenger)),
                None => return,
            }
        }
    }

    fn decide_video(&mut self, now: Instant) {
        loop {
            let held = |slots: &[Slot], ssrc: u32| slots.iter().any(|s| s.source == Some(ssrc));
            // The most recent speaker without a slot (never-spoken ones by
            // join order, after every speaker).
            let recency =
                |p: &Publisher| (p.last_spoke.is_some(), p.last_spoke.unwrap_or(p.joined));
            let Some((challenger, rank)) = self
                .publishers
                .iter()
                .filter_map(|p| p.video.map(|v| (v, recency(p))))
                .filter(|(v, _)| !held(&self.slots, *v))
                .max_by_key(|(_, rank)| *rank)
            else {
                return;
            };
            let speaker_of = |ssrc: u32| self.publishers.iter().find(|p| p.video == Some(ssrc));
            let video = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == SlotKind::Video);
            let target = video
                .clone()
                .find(|(_, s)| s.source.is_none())
                .map(|(i, _)| i)
                .or_else(|| {
                    // The incumbent who spoke least recently, if the
                    // challenger spoke after it and it has been quiet long enough.
                    let (i, p) = video
                        .filter_map(|(i, s)| Some((i, speaker_of(s.source?)?)))
                        .min_by_key(|(_, p)| recency(p))?;
                    let quiet = p
                        .last_spoke
                        .is_none_or(|t| now.saturating_duration_since(t) >= VIDEO_DWELL);
                    (rank.0 && rank > recency(p) && quiet).then_some(i)
                });
            match target {
                Some(i) => self.assign(i, Some(challenger)),
                None => return,
            }
        }
    }
}

/// Sequence numbers left out at a switch: the old source's last packets
/// may still leave under the old offsets until every packet worker has
/// the new routing, and must not collide with the new source's first.
pub const SWITCH_SEQ_GAP: u16 = 16;

/// A point of an RTP stream: a sequence number and timestamp, and when
/// it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPoint {
    /// The sequence number.
    pub seq: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// When it was seen (the caller's clock).
    pub at: Instant,
}

/// The offsets (added, wrapping, to the new source's sequence numbers and
/// timestamps) that continue a slot whose last packet went out at
/// `slot_last` (in the slot's numbering) with a new source last seen at
/// `source_last` (in its own), at `now`: the new source's next packet
/// gets the slot's next sequence numbers after [`SWITCH_SEQ_GAP`], and a
/// timestamp advanced by the wall-clock time between the two. A slot that
/// never carried anything passes its first source's numbering as it is.
///
/// This is the control-plane form of what [`SlotRouter::rewrite`] does
/// per packet: computed once at the switch, so that the packet workers
/// only add two numbers (`sluice`'s `relay::slot_rewrite`).
pub fn switch_offsets(
    kind: SlotKind,
    slot_last: Option<StreamPoint>,
    source_last: StreamPoint,
    now: Instant,
) -> (u16, u32) {
    let Some(slot) = slot_last else {
        return (0, 0);
    };
    let ticks = |since: Instant| {
        let gap = now.saturating_duration_since(since);
        // Wrapping: only the gap modulo 2^32 ticks matters.
        (gap.as_micros() * u128::from(kind.clock_rate()) / 1_000_000) as u32
    };
    // Where each stream is now, each in its own numbering.
    let slot_next_seq = slot.seq.wrapping_add(SWITCH_SEQ_GAP);
    let slot_now_ts = slot.timestamp.wrapping_add(ticks(slot.at).max(1));
    let source_next_seq = source_last.seq.wrapping_add(1);
    let source_now_ts = source_last.timestamp.wrapping_add(ticks(source_last.at));
    (
        slot_next_seq.wrapping_sub(source_next_seq),
        slot_now_ts.wrapping_sub(source_now_ts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_SLOTS: [u32; 2] = [0xA0, 0xA1];
    const V_SLOTS: [u32; 1] = [0xB0];

    fn audio(p: u64) -> u32 {
        0x100 * p as u32 + 1
    }

    fn video(p: u64) -> u32 {
        0x100 * p as u32 + 2
    }

    fn events(r: &mut SlotRouter) -> Vec<SlotEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    /// 20 ms of audio at `level` from each (publisher, level) pair, for
    /// `ms` milliseconds, driving the router's timer as a clock would.
    fn talk(r: &mut SlotRouter, now: &mut Instant, ms: u64, who: &[(u64, u8)]) {
        for _ in 0..ms / 20 {
            *now += Duration::from_millis(20);
            for &(p, level) in who {
                r.handle_audio_level(*now, audio(p), level);
            }
            r.handle_timeout(*now);
        }
    }

    #[test]
    fn publishers_take_free_slots_at_once_and_the_video_slot_asks_for_a_keyframe() {
        let t0 = Instant::now();
        let mut r = SlotRouter::new(&A_SLOTS, &V_SLOTS);
        r.add_publisher(t0, 1, Some(audio(1)), Some(video(1)));
        assert_eq!(
            events(&mut r),
            [
                SlotEvent::Switched {
                    kind: SlotKind::Audio,
                    index: 0,
                    from: None,
                    to: Some(audio(1))
                },
                SlotEvent::Switched {
                    kind: SlotKind::Video,
                    index: 0,
                    from: None,
                    to: Some(video(1))
                },
                SlotEvent::RequestKeyframe { ssrc: video(1) },
            ]
        );
        // A later publisher: the second audio slot is free, the video one is not.
        r.add_publisher(
            t0 + Duration::from_secs(5),
            2,
            Some(audio(2)),
            Some(video(2)),
        );
        assert_eq!(
            events(&mut r),
            [SlotEvent::Switched {
                kind: SlotKind::Audio,
                index: 1,
                from: None,
                to: Some(audio(2))
            }]
        );
        assert_eq!(r.source(SlotKind::Video, 0), Some(video(1)));
    }

    #[test]
    fn the_loudest_take_the_audio_slots_with_a_margin_against_flapping() {
        let mut now = Instant::now();
        let mut r = SlotRouter::new(&A_SLOTS, &V_SLOTS);
        for p in 1..=3 {
            r.add_publisher(now, p, Some(audio(p)), None);
        }
        events(&mut r);
        assert_eq!(r.source(SlotKind::Audio, 0), Some(audio(1)));
        assert_eq!(r.source(SlotKind::Audio, 1), Some(audio(2)));
        // 3 talks at -30 dBov while 1 and 2 are at -40: 10 dB louder.
        talk(&mut r, &mut now, 1000, &[(1, 40), (2, 45), (3, 30)]);
        assert_eq!(
            r.source(SlotKind::Audio, 1),
            Some(audio(3)),
            "quietest (2) replaced"
        );
        assert_eq!(r.source(SlotKind::Audio, 0), Some(audio(1)));
        events(&mut r);
        // 2 comes back only 3 dB louder than 1: within the margin, no switch.
        talk(&mut r, &mut now, 1000, &[(1, 40), (2, 37), (3, 30)]);
        assert_eq!(events(&mut r), []);
        talk(&mut r, &mut now, 1000, &[(1, 40), (2, 30), (3, 30)]);
        assert_eq!(r.source(SlotKind::Audio, 0), Some(audio(2)));
    }

    #[test]
    fn video_follows_the_most_recent_speaker_after_the_dwell() {
        let mut now = Instant::now();
        let mut r = SlotRouter::new(&A_SLOTS, &V_SLOTS);
        r.add_publisher(now, 1, Some(audio(1)), Some(video(1)));
        r.add_publisher(now, 2, Some(audio(2)), Some(video(2)));
        events(&mut r);
        talk(&mut r, &mut now, 1000, &[(1, 20), (2, 127)]);
        assert_eq!(r.source(SlotKind::Video, 0), Some(video(1)));
        // 2 starts while 1 is still talking: 1 keeps the slot.
        talk(&mut r, &mut now, 1000, &[(1, 20), (2, 20)]);
        assert_eq!(r.source(SlotKind::Video, 0), Some(video(1)));
        // 1 falls silent; once quiet for the dwell, 2 takes the slot.
        talk(&mut r, &mut now, 1000, &[(1, 127), (2, 20)]);
        assert_eq!(
            r.source(SlotKind::Video, 0),
            Some(video(1)),
            "dwell not over"
        );
        talk(&mut r, &mut now, 1500, &[(1, 127), (2, 20)]);
        assert_eq!(r.source(SlotKind::Video, 0), Some(video(2)));
        let ev = events(&mut r);
        assert!(
            ev.contains(&SlotEvent::RequestKeyframe { ssrc: video(2) }),
            "{ev:?}"
        );
    }

    #[test]
    fn a_switch_keeps_sequence_numbers_and_timestamps_continuous() {
        let mut now = Instant::now();
        let mut r = SlotRouter::new(&[], &V_SLOTS);
        r.add_publisher(now, 1, Some(audio(1)), Some(video(1)));
        r.add_publisher(now, 2, Some(audio(2)), Some(video(2)));
        // Publisher 1 from seq 65530 (wrapping), 30 fps at 90 kHz.
        let mut last = None;
        for i in 0..10u16 {
            let out = r
                .rewrite(
                    now,
                    video(1),
                    65_530u16.wrapping_add(i),
                    1_000_000 + 3000 * u32::from(i),
                )
                .unwrap();
            assert_eq!(out.ssrc, 0xB0);
            if let Some(prev) = last {
                let prev: Rewritten = prev;
                assert_eq!(out.seq, prev.seq.wrapping_add(1));
                assert_eq!(out.timestamp, prev.timestamp.wrapping_add(3000));
            }
            last = Some(out);
            now += Duration::from_millis(33);
        }
        assert_eq!(r.rewrite(now, video(2), 7, 42), None, "2 holds no slot yet");
        // Switch: 1 leaves.
        r.remove_publisher(now, 1);
        assert_eq!(r.source(SlotKind::Video, 0), Some(video(2)));
        let prev = last.unwrap();
        let first = r.rewrite(now, video(2), 7, 42).unwrap();
        assert_eq!(first.ssrc, 0xB0, "the viewer sees one SSRC");
        assert_eq!(first.seq, prev.seq.wrapping_add(1));
        // 33 ms later at 90 kHz: 2970 ticks.
        assert_eq!(first.timestamp, prev.timestamp.wrapping_add(2970));
        let second = r.rewrite(now, video(2), 8, 42 + 3000).unwrap();
        assert_eq!(second.seq, first.seq.wrapping_add(1));
        assert_eq!(second.timestamp, first.timestamp.wrapping_add(3000));
        // A reordered older packet maps before, not after.
        let late = r
            .rewrite(now, video(2), 6, 42u32.wrapping_sub(3000))
            .unwrap();
        assert_eq!(late.seq, first.seq.wrapping_sub(1));
        let third = r.rewrite(now, video(2), 9, 42 + 6000).unwrap();
        assert_eq!(third.seq, second.seq.wrapping_add(1));
        // The old source's stragglers are not forwarded.
        assert_eq!(
            r.rewrite(now, video(1), 65_530u16.wrapping_add(10), 0),
            None
        );
    }

    #[test]
    fn a_switch_after_a_very_long_gap_wraps_the_timestamp_without_overflow() {
        let t0 = Instant::now();
        let mut r = SlotRouter::new(&[0xA0], &[]);
        r.add_publisher(t0, 1, Some(audio(1)), None);
        let before = r.rewrite(t0, audio(1), 1, 0).unwrap();
        r.remove_publisher(t0, 1);
        let later = t0 + Duration::from_secs(10 * 365 * 86_400);
        r.add_publisher(later, 2, Some(audio(2)), None);
        let after = r.rewrite(later, audio(2), 500, 77).unwrap();
        assert_eq!(after.seq, before.seq.wrapping_add(1));
        let ticks = (10u128 * 365 * 86_400 * 48_000) as u32;
        assert_eq!(after.timestamp, before.timestamp.wrapping_add(ticks));
    }

    #[test]
    fn switch_offsets_continue_the_slot_across_sources() {
        let t0 = Instant::now();
        let first = StreamPoint {
            seq: 9,
            timestamp: 5,
            at: t0,
        };
        assert_eq!(
            switch_offsets(SlotKind::Video, None, first, t0),
            (0, 0),
            "a slot's first source passes as it is"
        );
        // The slot last sent seq 65_530 / ts 4_000_000_000 100 ms ago; the
        // new source last sent seq 100 / ts 777, 20 ms ago.
        let now = t0 + Duration::from_millis(100);
        let slot = StreamPoint {
            seq: 65_530,
            timestamp: 4_000_000_000,
            at: t0,
        };
        let source = StreamPoint {
            seq: 100,
            timestamp: 777,
            at: t0 + Duration::from_millis(80),
        };
        let (seq_off, ts_off) = switch_offsets(SlotKind::Video, Some(slot), source, now);
        // The source's next packet (seq 101, ts 777 + 20 ms) continues the
        // slot past the gap, wrapping, at the slot's timestamp + 100 ms.
        assert_eq!(
            101u16.wrapping_add(seq_off),
            65_530u16.wrapping_add(SWITCH_SEQ_GAP)
        );
        assert_eq!(
            (777u32 + 1800).wrapping_add(ts_off),
            4_000_000_000u32.wrapping_add(9000)
        );
        // Audio runs at 48 kHz.
        let (_, ts_off) = switch_offsets(SlotKind::Audio, Some(slot), source, now);
        assert_eq!(
            (777u32 + 960).wrapping_add(ts_off),
            4_000_000_000u32.wrapping_add(4800)
        );
    }

    #[test]
    fn a_publisher_adding_video_keeps_its_audio_slot() {
        let t0 = Instant::now();
        let mut r = SlotRouter::new(&A_SLOTS[..1], &V_SLOTS);
        r.add_publisher(t0, 1, Some(audio(1)), None);
        events(&mut r);
        r.update_publisher(t0, 1, Some(audio(1)), Some(video(1)));
        assert_eq!(
            events(&mut r),
            [
                SlotEvent::Switched {
                    kind: SlotKind::Video,
                    index: 0,
                    from: None,
                    to: Some(video(1))
                },
                SlotEvent::RequestKeyframe { ssrc: video(1) },
            ],
            "the audio slot is not touched"
        );
        // A stream it no longer has leaves its slot.
        r.update_publisher(t0, 1, None, Some(video(1)));
        assert_eq!(r.source(SlotKind::Audio, 0), None);
        assert_eq!(r.publisher(1), Some((None, Some(video(1)))));
    }

    #[test]
    fn an_empty_slot_is_reported_and_refilled_by_a_later_publisher() {
        let t0 = Instant::now();
        let mut r = SlotRouter::new(&A_SLOTS[..1], &[]);
        r.add_publisher(t0, 1, Some(audio(1)), None);
        r.remove_publisher(t0, 1);
        assert_eq!(
            events(&mut r)[1],
            SlotEvent::Switched {
                kind: SlotKind::Audio,
                index: 0,
                from: Some(audio(1)),
                to: None
            }
        );
        r.add_publisher(t0, 2, Some(audio(2)), None);
        assert_eq!(r.source(SlotKind::Audio, 0), Some(audio(2)));
        // Unknown SSRCs' levels and removals are ignored.
        r.handle_audio_level(t0, 0xDEAD, 0);
        r.remove_publisher(t0, 99);
        assert_eq!(r.source(SlotKind::Audio, 0), Some(audio(2)));
    }
}

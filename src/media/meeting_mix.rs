//! [`MeetingMix`]: what the dial-in callers of one meeting hear, worked
//! out once per tick for all of them.
//!
//! Every caller of a meeting hears the same loudest speakers, so the
//! meeting side of the bridge is shared by the calls of that meeting on
//! one media thread: each call's relay leg pushes the Opus packets it
//! receives, the copies of one packet that several legs deliver are
//! dropped by (SSRC, RTP sequence number), and each tick
//!
//! 1. ranks the streams by the RFC 6464 level their packets carried (a
//!    stream without one is decoded to be ranked by energy),
//! 2. chooses the at most three loudest (with hysteresis, see [`Mixer`])
//!    and the runner-up,
//! 3. decodes each chosen stream once, straight to 8 kHz (libopus decodes
//!    at the callers' rate: no 48 kHz frame, no resampler), the runner-up
//!    only when a caller of this mix is one of the speakers and so needs
//!    it,
//! 4. lets the other streams' 20 ms pass unheard.
//!
//! [`MeetingMix::to_caller`] then hands each caller its 160 bytes of
//! G.711: the common mix of the speakers, summed and encoded once per law
//! in use and cached for the tick; or, for a caller who is one of the
//! speakers, the mix of the others and the runner-up (N-1: nobody hears
//! themselves).
//!
//! A stream fed nothing for [`STREAM_IDLE_TICKS`] ticks (1 s) is dropped
//! with its decoder. Sans-IO: no clock, no socket; the owner calls
//! [`MeetingMix::push`] as packets arrive and [`MeetingMix::tick`] every
//! 20 ms, before asking for the callers' frames.

use arrayvec::ArrayVec;

use super::mixer::{MAX_RANKED, MAX_SPEAKERS, Mixer};
use super::stream::{DecodeCounts, MeetingStream, Queueing};
use super::{FRAME_8K, FRAME_48K, G711, MediaError};

/// Ticks without a packet after which a meeting stream is forgotten.
pub const STREAM_IDLE_TICKS: u64 = 50;
/// Meeting streams one mix tracks at once; packets of further SSRCs are
/// dropped until one goes idle.
pub const MAX_STREAMS: usize = 256;
/// Largest Opus payload accepted (RFC 6716 §3.4: 1275 bytes a frame; one
/// MTU is plenty for voice).
pub const MAX_OPUS_PAYLOAD: usize = 1500;

/// Counters of the meeting side; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Packets dropped: queue full, too large, or too many streams.
    pub packets_dropped: u64,
    /// Copies of a packet already queued (another call's leg had it).
    pub duplicates: u64,
    /// Opus packets decoded (each at most once, whatever the callers).
    pub packets_decoded: u64,
    /// Of those, packets that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Streams forgotten after going idle.
    pub streams_expired: u64,
    /// Common mixes encoded to G.711 (at most one per law and tick).
    pub common_encodes: u64,
    /// N-1 mixes made for a caller who was a speaker.
    pub own_mixes: u64,
}

/// The meeting side of the dial-in bridge, shared by the callers of one
/// meeting.
pub struct MeetingMix {
    tick: u64,
    streams: Vec<MeetingStream>,
    /// This tick's candidates: (stream index, level).
    ranks: Vec<(usize, u8)>,
    mixer: Mixer,
    /// The SSRCs the callers sharing this mix send into the meeting.
    callers: Vec<u32>,
    /// The streams decoded this tick, speakers first (as the mixer
    /// ranked them), and their frames (the first `frame` samples of each)
    /// at the same index.
    decoded: ArrayVec<u32, MAX_RANKED>,
    frames: Box<[[i16; FRAME_48K]; MAX_RANKED]>,
    /// The mix's rate (8 kHz for G.711 callers, 16 or 48 kHz for wideband
    /// ones) and 20 ms at it.
    rate: u32,
    frame: usize,
    /// The speakers' sum, once made this tick (`common_made`).
    common: Box<[i16; FRAME_48K]>,
    common_made: bool,
    /// The common mix in µ-law and A-law, once encoded this tick.
    encoded: [Option<[u8; FRAME_8K]>; 2],
    own: [u8; FRAME_8K],
    own_pcm: Box<[i16; FRAME_48K]>,
    stats: MixStats,
}

impl std::fmt::Debug for MeetingMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeetingMix")
            .field("tick", &self.tick)
            .field("streams", &self.streams.len())
            .field("callers", &self.callers)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for MeetingMix {
    fn default() -> Self {
        Self::new()
    }
}

impl MeetingMix {
    /// An empty mix at 8 kHz (for G.711 callers): no streams, no
    /// callers. Opens no codec until a stream is first mixed.
    #[must_use]
    pub fn new() -> Self {
        Self::with_rate(8000)
    }

    /// An empty mix at `rate`: 8000, 16000 or 48000 Hz (a caller's codec
    /// rate, see [`super::CallerCodec::rate`]); another rate is taken as
    /// 8000.
    #[must_use]
    pub fn with_rate(rate: u32) -> Self {
        let rate = match rate {
            16_000 | 48_000 => rate,
            _ => 8000,
        };
        Self {
            rate,
            frame: rate as usize / 50,
            common: Box::new([0; FRAME_48K]),
            common_made: false,
            own_pcm: Box::new([0; FRAME_48K]),
            tick: 0,
            streams: Vec::new(),
            ranks: Vec::new(),
            mixer: Mixer::new(),
            callers: Vec::new(),
            decoded: ArrayVec::new(),
            frames: Box::new([[0; FRAME_48K]; MAX_RANKED]),
            encoded: [None; 2],
            own: [0; FRAME_8K],
            stats: MixStats::default(),
        }
    }

    /// The rate the mix decodes and sums at.
    #[must_use]
    pub const fn rate(&self) -> u32 {
        self.rate
    }

    /// What has been decoded, dropped or concealed so far.
    #[must_use]
    pub const fn stats(&self) -> MixStats {
        self.stats
    }

    /// Meeting streams currently tracked.
    #[must_use]
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// This tick's speakers, loudest first (at most [`MAX_SPEAKERS`]).
    #[must_use]
    pub fn speakers(&self) -> &[u32] {
        self.mixer.selected()
    }

    /// A caller whose own stream into the meeting is `ssrc` now shares
    /// the mix: when it is one of the speakers, the runner-up is decoded
    /// for its N-1 mix.
    pub fn add_caller(&mut self, ssrc: u32) {
        if !self.callers.contains(&ssrc) {
            self.callers.push(ssrc);
        }
    }

    /// The caller sending `ssrc` left the mix. A caller left alone no
    /// longer needs its own stream here: it is forgotten (see
    /// [`Self::push`]).
    pub fn remove_caller(&mut self, ssrc: u32) {
        self.callers.retain(|&s| s != ssrc);
        if let [alone] = self.callers[..] {
            self.forget(alone);
        }
    }

    /// Callers sharing the mix; a mix with none can be dropped.
    #[must_use]
    pub fn caller_count(&self) -> usize {
        self.callers.len()
    }

    /// One Opus payload of stream `ssrc` with RTP sequence number `seq`
    /// and the RFC 6464 level its packet carried, if any. A copy of a
    /// packet already pushed (by another call's leg) is dropped. Queued,
    /// not decoded: only the streams chosen at the next tick are. The
    /// stream of the mix's only caller is dropped unqueued: the receive
    /// leg brings every caller's own stream back too, and nobody here
    /// would hear it (its caller's N-1 mix leaves it out), so a lone
    /// caller never pays for decoding itself.
    pub fn push(&mut self, ssrc: u32, seq: u16, opus_payload: &[u8], level: Option<u8>) {
        self.queue(ssrc, Some(seq), opus_payload, level);
    }

    /// [`Self::push`] for a single leg that does not give sequence
    /// numbers: nothing is deduplicated.
    pub fn push_unsequenced(&mut self, ssrc: u32, opus_payload: &[u8], level: Option<u8>) {
        self.queue(ssrc, None, opus_payload, level);
    }

    fn queue(&mut self, ssrc: u32, seq: Option<u16>, payload: &[u8], level: Option<u8>) {
        if let [alone] = self.callers[..]
            && alone == ssrc
        {
            return;
        }
        if payload.len() > MAX_OPUS_PAYLOAD {
            self.stats.packets_dropped += 1;
            return;
        }
        let tick = self.tick;
        let stream = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(MeetingStream::new(ssrc, tick, self.rate));
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
            None => {
                self.stats.packets_dropped += 1;
                return;
            }
        };
        match stream.push(seq, payload, level) {
            Queueing::Queued => stream.last_push = tick,
            Queueing::Overflowed => {
                stream.last_push = tick;
                self.stats.packets_dropped += 1;
            }
            Queueing::Duplicate => self.stats.duplicates += 1,
        }
    }

    /// Drops stream `ssrc` (its participant left) with its decoder.
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.ssrc != ssrc);
    }

    /// One 20 ms tick: ranks, chooses and decodes the speakers (see the module docs). Call once per tick, after the
    /// packets of the last 20 ms were pushed and before
    /// [`Self::to_caller`].
    pub fn tick(&mut self) -> Result<(), MediaError> {
        self.tick += 1;
        self.common_made = false;
        self.encoded = [None; 2];
        self.decoded.clear();
        self.expire_streams();

        let mut counts = DecodeCounts::default();
        let ranked = self.rank(&mut counts);
        self.stats.packets_decoded += counts.packets;
        self.stats.decode_errors += counts.errors;
        let chosen = ranked?;
        let needs_runner_up = chosen
            .iter()
            .take(MAX_SPEAKERS)
            .any(|s| self.callers.contains(s));
        let decode = if needs_runner_up {
            chosen.len()
        } else {
            chosen.len().min(MAX_SPEAKERS)
        };

        let mut counts = DecodeCounts::default();
        let mut result = Ok(());
        for &(i, _) in &self.ranks {
            let stream = &mut self.streams[i];
            match chosen[..decode].iter().position(|&s| s == stream.ssrc) {
                Some(slot) if result.is_ok() => {
                    result = stream.play_frame(&mut counts, &mut self.frames[slot][..self.frame]);
                }
                _ => stream.skip_frame(),
            }
        }
        self.stats.packets_decoded += counts.packets;
        self.stats.decode_errors += counts.errors;
        result?;
        self.decoded.extend(chosen[..decode].iter().copied());
        Ok(())
    }

    /// The caller's next 160 bytes of G.711 in `law` (a mix at 8 kHz; at
    /// another rate the mix is taken one sample in `rate / 8000`): the
    /// speakers' mix, or, when `own_ssrc` (the caller's own stream into
    /// the meeting) is one of them, the mix of everyone chosen but the
    /// caller. Silence when nobody speaks. Valid until the next call on
    /// the mix.
    pub fn to_caller(&mut self, law: G711, own_ssrc: Option<u32>) -> &[u8; FRAME_8K] {
        let step = self.frame / FRAME_8K;
        if self.is_own(own_ssrc) {
            let own = self.own_mix(own_ssrc);
            let mut pcm = [0i16; FRAME_8K];
            for (o, s) in pcm.iter_mut().zip(own.iter().step_by(step)) {
                *o = *s;
            }
            law.encode(&pcm, &mut self.own);
            return &self.own;
        }
        let at = match law {
            G711::Mu => 0,
            G711::A => 1,
        };
        if self.encoded[at].is_none() {
            self.make_common();
            self.stats.common_encodes += 1;
            let mut pcm = [0i16; FRAME_8K];
            for (o, s) in pcm.iter_mut().zip(self.common.iter().step_by(step)) {
                *o = *s;
            }
            let mut out = [0u8; FRAME_8K];
            law.encode(&pcm, &mut out);
            self.encoded[at] = Some(out);
        }
        // Just set above when it was not.
        self.encoded[at].as_ref().unwrap_or(&self.own)
    }

    /// The caller's next 20 ms as PCM at the mix's rate (a wideband
    /// caller's, encoded by its own codec): the same choice as
    /// [`Self::to_caller`]. Valid until the next call on the mix.
    pub fn to_caller_pcm(&mut self, own_ssrc: Option<u32>) -> &[i16] {
        if self.is_own(own_ssrc) {
            return self.own_mix(own_ssrc);
        }
        self.make_common();
        &self.common[..self.frame]
    }

    /// Whether `own_ssrc` is one of this tick's speakers.
    fn is_own(&self, own_ssrc: Option<u32>) -> bool {
        let speakers = self.decoded.len().min(MAX_SPEAKERS);
        own_ssrc.is_some_and(|own| self.decoded[..speakers].contains(&own))
    }

    /// The N-1 mix for the speaker `own_ssrc`, into `own_pcm`.
    fn own_mix(&mut self, own_ssrc: Option<u32>) -> &[i16] {
        let frame = self.frame;
        let others: ArrayVec<&[i16], MAX_RANKED> = self
            .decoded
            .iter()
            .zip(self.frames.iter())
            .filter(|&(&s, _)| Some(s) != own_ssrc)
            .map(|(_, f)| &f[..frame])
            .take(MAX_SPEAKERS)
            .collect();
        sum_slices(&others, &mut self.own_pcm[..frame]);
        self.stats.own_mixes += 1;
        &self.own_pcm[..frame]
    }

    /// The speakers' sum, once a tick.
    fn make_common(&mut self) {
        if self.common_made {
            return;
        }
        let frame = self.frame;
        let speakers = self.decoded.len().min(MAX_SPEAKERS);
        let refs: ArrayVec<&[i16], MAX_SPEAKERS> = self.frames[..speakers]
            .iter()
            .map(|f| &f[..frame])
            .collect();
        sum_slices(&refs, &mut self.common[..frame]);
        self.common_made = true;
    }

    fn expire_streams(&mut self) {
        let now = self.tick;
        let before = self.streams.len();
        self.streams
            .retain(|s| now.saturating_sub(s.last_push) <= STREAM_IDLE_TICKS);
        self.stats.streams_expired += (before - self.streams.len()) as u64;
    }

    /// Fills `ranks` with the streams that have something to play and
    /// returns the mixer's choice: speakers, then the runner-up.
    fn rank(&mut self, counts: &mut DecodeCounts) -> Result<ArrayVec<u32, MAX_RANKED>, MediaError> {
        self.ranks.clear();
        for (i, stream) in self.streams.iter_mut().enumerate() {
            if let Some(level) = stream.level(counts)? {
                self.ranks.push((i, level));
            }
        }
        let streams = &self.streams;
        Ok(self
            .mixer
            .select_with_runner_up(
                self.ranks
                    .iter()
                    .map(|&(i, level)| (streams[i].ssrc, level)),
            )
            .iter()
            .copied()
            .collect())
    }

    /// The streams that have a decoder, for tests.
    #[cfg(test)]
    pub(super) fn decoding(&self) -> Vec<u32> {
        self.streams
            .iter()
            .filter(|s| s.is_decoding())
            .map(|s| s.ssrc)
            .collect()
    }
}

/// Sums equally long `frames` into `out` with saturation (32-bit
/// accumulate, clamp to 16 bits); silence for none.
fn sum_slices(frames: &[&[i16]], out: &mut [i16]) {
    match frames {
        [] => out.fill(0),
        [one] => out.copy_from_slice(&one[..out.len()]),
        [first, rest @ ..] => {
            let mut acc = [0i32; FRAME_48K];
            let acc = &mut acc[..out.len()];
            for (a, &s) in acc.iter_mut().zip(first.iter()) {
                *a = i32::from(s);
            }
            for frame in rest {
                for (a, &s) in acc.iter_mut().zip(frame.iter()) {
                    *a += i32::from(s);
                }
            }
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::bridge::tests::Talker;
    use crate::media::tone::goertzel_power;

    /// Pushes one packet per talker per tick through every leg (each call
    /// in the meeting receives every packet), ticks, and collects what
    /// each `(law, own ssrc)` listener hears, decoded.
    fn run(
        mix: &mut MeetingMix,
        talkers: &mut [(u32, Talker, u8)],
        legs: usize,
        listeners: &[(G711, Option<u32>)],
        ticks: u16,
    ) -> Vec<Vec<i16>> {
        let mut heard = vec![Vec::new(); listeners.len()];
        for seq in 0..ticks {
            for (ssrc, talker, level) in talkers.iter_mut() {
                let packet = talker.next();
                for _ in 0..legs {
                    mix.push(*ssrc, seq, &packet, Some(*level));
                }
            }
            mix.tick().unwrap();
            for (h, &(law, own)) in heard.iter_mut().zip(listeners) {
                let mut pcm = [0i16; FRAME_8K];
                law.decode(mix.to_caller(law, own), &mut pcm);
                h.extend_from_slice(&pcm);
            }
        }
        heard
    }

    fn power(heard: &[i16], freq: f32) -> f32 {
        goertzel_power(&heard[heard.len() - 10 * FRAME_8K..], 8000, freq)
    }

    #[test]
    fn callers_of_a_meeting_share_one_decode_per_speaker() {
        let mut mix = MeetingMix::new();
        mix.add_caller(900);
        mix.add_caller(901);
        mix.add_caller(902);
        let mut talkers: Vec<_> = [(500.0, 20), (700.0, 25), (1100.0, 30)]
            .into_iter()
            .enumerate()
            .map(|(i, (f, l))| (i as u32 + 1, Talker::new(f, 6000.0), l))
            .collect();
        let listeners = [
            (G711::Mu, Some(900)),
            (G711::Mu, Some(901)),
            (G711::A, Some(902)),
        ];
        let heard = run(&mut mix, &mut talkers, 3, &listeners, 40);
        // The two µ-law callers heard the very same bytes.
        assert_eq!(heard[0], heard[1]);
        for f in [500.0, 700.0, 1100.0] {
            assert!(power(&heard[0], f) > 0.005, "{f} Hz missing");
            assert!(power(&heard[2], f) > 0.005, "{f} Hz missing in A-law");
        }
        let stats = mix.stats();
        // Each speaker's packet decoded once per tick for three callers;
        // the two other legs' copies dropped unqueued.
        assert_eq!(stats.packets_decoded, 3 * 40);
        assert_eq!(stats.duplicates, 2 * 3 * 40);
        assert_eq!(stats.packets_dropped, 0);
        // One G.711 encode per law in use per tick.
        assert_eq!(stats.common_encodes, 2 * 40);
        assert_eq!(stats.own_mixes, 0);
    }

    #[test]
    fn a_caller_who_speaks_does_not_hear_itself() {
        let mut mix = MeetingMix::new();
        mix.add_caller(900);
        mix.add_caller(901);
        // 900 is the first caller's own stream (received through the
        // second caller's leg); 4 is the runner-up.
        let mut talkers: Vec<_> = [
            (900, 440.0, 10),
            (2, 700.0, 20),
            (3, 1100.0, 25),
            (4, 1700.0, 30),
            (5, 2300.0, 40),
        ]
        .into_iter()
        .map(|(ssrc, f, l)| (ssrc, Talker::new(f, 6000.0), l))
        .collect();
        let listeners = [(G711::Mu, Some(900)), (G711::Mu, Some(901))];
        let heard = run(&mut mix, &mut talkers, 2, &listeners, 40);
        assert_eq!(mix.speakers(), &[900, 2, 3]);
        let speaker: Vec<f32> = [440.0, 700.0, 1100.0, 1700.0, 2300.0]
            .iter()
            .map(|&f| power(&heard[0], f))
            .collect();
        let listener: Vec<f32> = [440.0, 700.0, 1100.0, 1700.0, 2300.0]
            .iter()
            .map(|&f| power(&heard[1], f))
            .collect();
        // The speaker hears the two others and the runner-up, not itself.
        assert!(speaker[0] < 0.0005, "own voice: {speaker:?}");
        assert!(speaker[1..4].iter().all(|&p| p > 0.005), "{speaker:?}");
        assert!(speaker[4] < 0.0005, "{speaker:?}");
        // The listener hears the three speakers.
        assert!(listener[..3].iter().all(|&p| p > 0.005), "{listener:?}");
        assert!(listener[3..].iter().all(|&p| p < 0.0005), "{listener:?}");
        let stats = mix.stats();
        // The runner-up is decoded too, since a caller speaks: 4 a tick.
        assert_eq!(stats.packets_decoded, 4 * 40);
        assert_eq!(stats.own_mixes, 40);
        assert_eq!(stats.common_encodes, 40);
        assert_eq!(mix.decoding(), [900, 2, 3, 4]);
    }

    #[test]
    fn a_lone_callers_own_stream_is_never_decoded() {
        let mut mix = MeetingMix::new();
        mix.add_caller(900);
        // The caller talks (its stream comes back through the receive
        // leg) beside two web speakers.
        let mut talkers: Vec<_> = [(900, 440.0, 10), (2, 700.0, 20), (3, 1100.0, 25)]
            .into_iter()
            .map(|(ssrc, f, l)| (ssrc, Talker::new(f, 6000.0), l))
            .collect();
        let heard = run(&mut mix, &mut talkers, 1, &[(G711::Mu, Some(900))], 20);
        assert_eq!(mix.speakers(), &[2, 3]);
        assert_eq!(mix.stats().packets_decoded, 2 * 20);
        assert!(power(&heard[0], 440.0) < 0.0005);
        assert!(power(&heard[0], 700.0) > 0.005);
        // A second caller needs the first one's stream: it is mixed.
        mix.add_caller(901);
        for seq in 20..30 {
            for (ssrc, talker, level) in &mut talkers {
                mix.push(*ssrc, seq, &talker.next(), Some(*level));
            }
            mix.tick().unwrap();
        }
        assert_eq!(mix.speakers(), &[900, 2, 3]);
        // Once the second leaves, the first's stream goes with it.
        mix.remove_caller(901);
        assert_eq!(mix.stream_count(), 2);
    }

    #[test]
    fn runner_up_is_not_decoded_when_no_caller_speaks() {
        let mut mix = MeetingMix::new();
        mix.add_caller(900);
        let mut talkers: Vec<_> = [(1, 20), (2, 25), (3, 30), (4, 35)]
            .into_iter()
            .map(|(ssrc, l)| (ssrc, Talker::new(300.0 * ssrc as f32, 6000.0), l))
            .collect();
        run(&mut mix, &mut talkers, 1, &[(G711::Mu, Some(900))], 10);
        assert_eq!(mix.stats().packets_decoded, 3 * 10);
        assert_eq!(mix.decoding(), [1, 2, 3]);
    }

    #[test]
    fn the_same_packet_from_two_calls_is_queued_once() {
        let mut mix = MeetingMix::new();
        let mut talker = Talker::new(800.0, 8000.0);
        let packets: Vec<Vec<u8>> = (0..4).map(|_| talker.next()).collect();
        // Leg A delivers 10, 11; leg B 11, 10 (reordered), then 12 twice.
        mix.push(7, 10, &packets[0], None);
        mix.push(7, 11, &packets[1], None);
        mix.push(7, 11, &packets[1], None);
        mix.push(7, 10, &packets[0], None);
        mix.push(7, 12, &packets[2], None);
        mix.push(7, 12, &packets[2], None);
        assert_eq!(mix.stats().duplicates, 3);
        for _ in 0..3 {
            mix.tick().unwrap();
            mix.to_caller(G711::Mu, None);
        }
        assert_eq!(mix.stats().packets_decoded, 3);
        // Nothing is left queued: a fourth tick decodes nothing.
        mix.tick().unwrap();
        assert_eq!(mix.stats().packets_decoded, 3);
        // Without sequence numbers nothing is deduplicated.
        mix.push_unsequenced(8, &packets[3], None);
        mix.push_unsequenced(8, &packets[3], None);
        assert_eq!(mix.stats().duplicates, 3);
    }

    #[test]
    fn callers_come_and_go() {
        let mut mix = MeetingMix::new();
        mix.add_caller(1);
        mix.add_caller(1);
        mix.add_caller(2);
        assert_eq!(mix.caller_count(), 2);
        mix.remove_caller(1);
        mix.remove_caller(3);
        assert_eq!(mix.caller_count(), 1);
        mix.remove_caller(2);
        assert_eq!(mix.caller_count(), 0);
        // Nobody speaks: silence in either law.
        mix.tick().unwrap();
        assert_eq!(mix.to_caller(G711::A, None), &[G711::A.silence(); FRAME_8K]);
        assert_eq!(mix.to_caller(G711::Mu, Some(5)), &[0xFF; FRAME_8K]);
    }

    #[test]
    fn a_wideband_mix_keeps_what_8_khz_loses() {
        // 6 kHz: above G.711's band, inside the talkers' wideband Opus.
        for rate in [16_000u32, 48_000] {
            let mut mix = MeetingMix::with_rate(rate);
            assert_eq!(mix.rate(), rate);
            mix.add_caller(900);
            // A listener beside the speaker (a lone caller's own stream
            // is not mixed at all).
            mix.add_caller(901);
            let mut talker = Talker::new(6000.0, 6000.0);
            let mut other = Talker::new(1000.0, 6000.0);
            let mut heard = Vec::new();
            let mut own_heard = Vec::new();
            for seq in 0..40u16 {
                mix.push(1, seq, &talker.next(), Some(20));
                mix.push(900, seq, &other.next(), Some(20));
                mix.tick().unwrap();
                heard.extend_from_slice(mix.to_caller_pcm(Some(901)));
                own_heard.extend_from_slice(mix.to_caller_pcm(Some(900)));
            }
            let frame = rate as usize / 50;
            assert_eq!(heard.len(), 40 * frame);
            let tail = &heard[heard.len() - 10 * frame..];
            assert!(goertzel_power(tail, rate, 6000.0) > 0.005, "{rate}");
            assert!(goertzel_power(tail, rate, 1000.0) > 0.005, "{rate}");
            // The speaker 900 hears the other one only (N-1).
            let tail = &own_heard[own_heard.len() - 10 * frame..];
            let (k6, own) = (
                goertzel_power(tail, rate, 6000.0),
                goertzel_power(tail, rate, 1000.0),
            );
            assert!(k6 > 100.0 * own, "{rate}: {k6} vs own {own}");
            // G.711 from a wideband mix still works (every n-th sample).
            assert_eq!(mix.to_caller(G711::Mu, Some(901)).len(), FRAME_8K);
        }
    }
}

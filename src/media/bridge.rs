//! [`CallBridge`]: one dial-in call's transcoding, both ways, one 20 ms
//! tick at a time: a [`CallerUplink`] (caller → meeting) and a private
//! [`MeetingMix`] (meeting → caller) in one value.
//!
//! The media pool does not use it: there the calls of one meeting share
//! one [`MeetingMix`] and each owns only its uplink. `CallBridge` is the
//! whole work of one call in isolation, for tests, the fuzz target and
//! the benchmark. [`CallBridge::new`] encodes every tick, as a bridge
//! always did; [`CallBridge::with_uplink`] can turn on silence
//! suppression.
//!
//! Driving it: call [`CallBridge::push_caller`] and
//! [`CallBridge::push_meeting`] as packets arrive, and [`CallBridge::tick`]
//! every 20 ms of the caller's clock. No clock is read and nothing blocks.

use super::meeting_mix::MeetingMix;
use super::opus::OpusSettings;
use super::uplink::{CallerUplink, UplinkSettings};
use super::{FRAME_8K, G711, MediaError};

/// What one tick produced. Valid until the next call on the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeFrame<'a> {
    /// 160 bytes of G.711 for the caller (20 ms).
    pub to_caller: &'a [u8],
    /// One Opus packet (20 ms) for the meeting; empty when silence
    /// suppression held the tick back (never without suppression).
    pub to_meeting: &'a [u8],
    /// The caller's level in this packet, -dBov (RFC 6464 scale).
    pub to_meeting_level: u8,
}

/// Counters of what the bridge dropped or patched over; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Caller samples dropped because the FIFO was full.
    pub caller_samples_dropped: u64,
    /// Ticks that found fewer than 160 caller samples and sent silence.
    pub caller_underruns: u64,
    /// Meeting packets dropped: queue full, too large, or too many streams.
    pub meeting_packets_dropped: u64,
    /// Meeting packets that failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Meeting streams forgotten after going idle.
    pub streams_expired: u64,
    /// Meeting packets decoded.
    pub packets_decoded: u64,
    /// Ticks silence suppression sent nothing for.
    pub frames_suppressed: u64,
}

/// One dial-in call's transcoding state: G.711 caller ↔ Opus meeting.
pub struct CallBridge {
    uplink: CallerUplink,
    mix: MeetingMix,
    to_caller: [u8; FRAME_8K],
}

impl std::fmt::Debug for CallBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallBridge")
            .field("uplink", &self.uplink)
            .field("mix", &self.mix)
            .finish_non_exhaustive()
    }
}

impl CallBridge {
    /// A bridge for a caller speaking `caller` G.711, sending the meeting
    /// Opus at `opus_bitrate` bit/s and libopus `opus_complexity`, the rest
    /// as [`OpusSettings::DIAL_IN`]; no silence suppression.
    pub fn new(caller: G711, opus_bitrate: u32, opus_complexity: u8) -> Result<Self, MediaError> {
        Self::with_settings(
            caller,
            OpusSettings {
                bitrate_bps: opus_bitrate,
                complexity: opus_complexity,
                ..OpusSettings::DIAL_IN
            },
        )
    }

    /// A bridge with every Opus encoder setting given; no silence
    /// suppression.
    pub fn with_settings(caller: G711, opus: OpusSettings) -> Result<Self, MediaError> {
        Self::with_uplink(
            caller,
            UplinkSettings {
                opus,
                suppression: None,
            },
        )
    }

    /// A bridge with every uplink setting given, silence suppression too.
    pub fn with_uplink(caller: G711, uplink: UplinkSettings) -> Result<Self, MediaError> {
        Ok(Self {
            uplink: CallerUplink::new(caller, uplink)?,
            mix: MeetingMix::new(),
            to_caller: [caller.silence(); FRAME_8K],
        })
    }

    /// The caller's G.711 law.
    #[must_use]
    pub const fn caller_law(&self) -> G711 {
        self.uplink.law()
    }

    /// What has been dropped or concealed so far.
    #[must_use]
    pub const fn stats(&self) -> BridgeStats {
        let up = self.uplink.stats();
        let mix = self.mix.stats();
        BridgeStats {
            caller_samples_dropped: up.caller_samples_dropped,
            caller_underruns: up.caller_underruns,
            meeting_packets_dropped: mix.packets_dropped,
            decode_errors: mix.decode_errors,
            streams_expired: mix.streams_expired,
            packets_decoded: mix.packets_decoded,
            frames_suppressed: up.frames_suppressed,
        }
    }

    /// Caller samples waiting for a tick.
    #[must_use]
    pub const fn caller_backlog(&self) -> usize {
        self.uplink.backlog()
    }

    /// Meeting streams currently tracked.
    #[must_use]
    pub fn stream_count(&self) -> usize {
        self.mix.stream_count()
    }

    /// Caller → meeting: one received G.711 payload, any length (160 bytes
    /// for 20 ms; 80 or 240 are legal too). Goes into the bounded FIFO; the
    /// oldest samples are dropped when it is full.
    pub fn push_caller(&mut self, payload: &[u8]) {
        self.uplink.push(payload);
    }

    /// Meeting → caller: one Opus payload of stream `ssrc`, with the RFC
    /// 6464 level its packet carried, if any. Queued, not decoded: only the
    /// streams chosen at the next tick are.
    pub fn push_meeting(&mut self, ssrc: u32, opus_payload: &[u8], level: Option<u8>) {
        self.mix.push_unsequenced(ssrc, opus_payload, level);
    }

    /// Drops stream `ssrc` (its participant left) with its decoder.
    pub fn forget(&mut self, ssrc: u32) {
        self.mix.forget(ssrc);
    }

    /// One 20 ms tick: the caller's next G.711 frame (the mix of the at
    /// most three loudest meeting streams, silence when none) and the
    /// meeting's next Opus packet (the caller's next 20 ms, silence when
    /// the FIFO runs short).
    pub fn tick(&mut self) -> Result<BridgeFrame<'_>, MediaError> {
        self.mix.tick()?;
        self.to_caller = *self.mix.to_caller(self.uplink.law(), None);
        let up = self.uplink.tick()?;
        Ok(BridgeFrame {
            to_caller: &self.to_caller,
            to_meeting: up.to_meeting.unwrap_or_default(),
            to_meeting_level: up.level,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::media::meeting_mix::{MAX_OPUS_PAYLOAD, STREAM_IDLE_TICKS};
    use crate::media::tone::{Sine, goertzel_power};
    use crate::media::uplink::CALLER_FIFO_SAMPLES;
    use crate::media::{FRAME_48K, OpusBandwidth, OpusDecoder, OpusEncoder};

    /// A meeting participant: an Opus encoder fed a tone.
    pub(in crate::media) struct Talker {
        sine: Sine,
        encoder: OpusEncoder,
        pcm: [i16; FRAME_48K],
    }

    impl Talker {
        pub(in crate::media) fn new(freq: f32, amplitude: f32) -> Self {
            Self {
                sine: Sine::new(freq, OPUS_RATE_U32, amplitude),
                encoder: OpusEncoder::with_settings(OpusSettings {
                    bandwidth: OpusBandwidth::Wide,
                    complexity: 5,
                    ..OpusSettings::DIAL_IN
                })
                .unwrap(),
                pcm: [0; FRAME_48K],
            }
        }

        pub(in crate::media) fn next(&mut self) -> Vec<u8> {
            self.sine.fill(&mut self.pcm);
            self.encoder.encode(&self.pcm).unwrap().to_vec()
        }
    }

    const OPUS_RATE_U32: u32 = crate::media::OPUS_RATE;

    /// Runs `ticks` ticks with `talkers` (ssrc, talker, level) pushing one
    /// packet each per tick; returns the caller's audio, decoded.
    fn run_meeting(
        bridge: &mut CallBridge,
        talkers: &mut [(u32, Talker, Option<u8>)],
        ticks: usize,
    ) -> Vec<i16> {
        let mut heard = Vec::new();
        for _ in 0..ticks {
            for (ssrc, talker, level) in talkers.iter_mut() {
                let packet = talker.next();
                bridge.push_meeting(*ssrc, &packet, *level);
            }
            let law = bridge.caller_law();
            let frame = bridge.tick().unwrap();
            assert_eq!(frame.to_caller.len(), FRAME_8K);
            let mut pcm = [0i16; FRAME_8K];
            law.decode(frame.to_caller, &mut pcm);
            heard.extend_from_slice(&pcm);
        }
        heard
    }

    #[test]
    fn caller_tone_reaches_the_meeting() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut sine = Sine::new(440.0, 8000, 12_000.0);
        let mut pcm = [0i16; FRAME_8K];
        let mut g711 = [0u8; FRAME_8K];
        let mut heard = Vec::new();
        let mut levels = Vec::new();
        for _ in 0..50 {
            sine.fill(&mut pcm);
            G711::Mu.encode(&pcm, &mut g711);
            bridge.push_caller(&g711);
            let frame = bridge.tick().unwrap();
            levels.push(frame.to_meeting_level);
            assert_eq!(frame.to_caller, [0xFF; FRAME_8K], "no meeting, silence");
            heard.extend_from_slice(dec.decode(frame.to_meeting).unwrap());
        }
        // The last 200 ms, well past encoder and resampler start-up.
        let tail = &heard[heard.len() - 10 * FRAME_48K..];
        let at = goertzel_power(tail, OPUS_RATE_U32, 440.0);
        let off = goertzel_power(tail, OPUS_RATE_U32, 1000.0);
        // Amplitude 12000 → 0.134 for a perfect copy.
        assert!(at > 0.06, "440 Hz power {at}");
        assert!(off < at / 1000.0, "1 kHz power {off}");
        // 12000 peak is -11.7 dBov RMS.
        assert!(
            levels[5..].iter().all(|l| (11..=13).contains(l)),
            "{levels:?}"
        );
        assert_eq!(bridge.stats().caller_underruns, 0);
    }

    #[test]
    fn meeting_tone_reaches_the_caller() {
        let mut bridge = CallBridge::new(G711::A, 24_000, 1).unwrap();
        let mut talkers = [(7, Talker::new(1000.0, 12_000.0), Some(12))];
        let heard = run_meeting(&mut bridge, &mut talkers, 50);
        let tail = &heard[heard.len() - 10 * FRAME_8K..];
        let at = goertzel_power(tail, 8000, 1000.0);
        let off = goertzel_power(tail, 8000, 440.0);
        assert!(at > 0.06, "1 kHz power {at}");
        assert!(off < at / 1000.0, "440 Hz power {off}");
        // Silence to the meeting meanwhile: the caller sent nothing.
        assert_eq!(bridge.stats().caller_underruns, 50);
    }

    #[test]
    fn only_the_three_loudest_are_decoded_and_heard() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let freqs = [500.0, 700.0, 1100.0, 1300.0, 1700.0];
        let levels = [30u8, 12, 50, 20, 25];
        let mut talkers: Vec<_> = freqs
            .iter()
            .zip(levels)
            .enumerate()
            .map(|(i, (&f, l))| (100 + i as u32, Talker::new(f, 6000.0), Some(l)))
            .collect();
        let heard = run_meeting(&mut bridge, &mut talkers, 40);
        assert_eq!(bridge.mix.speakers(), &[101, 103, 104]);
        let decoders: Vec<u32> = bridge.mix.decoding();
        assert_eq!(decoders, [101, 103, 104]);
        let tail = &heard[heard.len() - 10 * FRAME_8K..];
        let power: Vec<f32> = freqs
            .iter()
            .map(|&f| goertzel_power(tail, 8000, f))
            .collect();
        for i in [1, 3, 4] {
            assert!(power[i] > 0.01, "{} Hz missing: {power:?}", freqs[i]);
        }
        for i in [0, 2] {
            assert!(power[i] < 0.0005, "{} Hz mixed: {power:?}", freqs[i]);
        }
    }

    #[test]
    fn streams_without_level_are_ranked_by_energy() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let mut talkers: Vec<_> = [
            (500.0, 300.0),
            (700.0, 16_000.0),
            (1100.0, 4000.0),
            (1300.0, 9000.0),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(f, a))| (i as u32, Talker::new(f, a), None))
        .collect();
        run_meeting(&mut bridge, &mut talkers, 10);
        assert_eq!(bridge.mix.speakers(), &[1, 3, 2]);
    }

    #[test]
    fn caller_fifo_stays_bounded_when_the_caller_is_twice_as_fast() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let frame = [0x55u8; FRAME_8K];
        for _ in 0..100 {
            bridge.push_caller(&frame);
            bridge.push_caller(&frame);
            assert!(bridge.caller_backlog() <= CALLER_FIFO_SAMPLES);
            bridge.tick().unwrap();
        }
        assert_eq!(bridge.caller_backlog(), CALLER_FIFO_SAMPLES - FRAME_8K);
        // 32000 pushed = 16000 sent + 800 still queued + the rest dropped.
        assert_eq!(bridge.stats().caller_samples_dropped, 32_000 - 16_000 - 800);
        assert_eq!(bridge.stats().caller_underruns, 0);
    }

    #[test]
    fn odd_payload_sizes_are_queued_sample_exact() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        bridge.push_caller(&[0xFF; 80]);
        assert_eq!(bridge.caller_backlog(), 80);
        bridge.tick().unwrap();
        assert_eq!(bridge.stats().caller_underruns, 1);
        bridge.push_caller(&[0xFF; 240]);
        bridge.push_caller(&[]);
        assert_eq!(bridge.caller_backlog(), 320);
        bridge.tick().unwrap();
        assert_eq!(bridge.caller_backlog(), 160);
    }

    #[test]
    fn queues_are_bounded_and_idle_streams_forgotten() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let mut talker = Talker::new(800.0, 8000.0);
        for _ in 0..10 {
            bridge.push_meeting(9, &talker.next(), Some(20));
        }
        assert_eq!(bridge.stats().meeting_packets_dropped, 4);
        bridge.push_meeting(10, &[0u8; MAX_OPUS_PAYLOAD + 1], None);
        assert_eq!(bridge.stats().meeting_packets_dropped, 5);
        bridge.push_meeting(11, &talker.next(), None);
        assert_eq!(bridge.stream_count(), 2);
        bridge.forget(11);
        assert_eq!(bridge.stream_count(), 1);
        for _ in 0..=STREAM_IDLE_TICKS {
            bridge.tick().unwrap();
        }
        assert_eq!(bridge.stream_count(), 0);
        assert_eq!(bridge.stats().streams_expired, 1);
    }

    #[test]
    fn garbage_from_the_meeting_is_concealed() {
        let mut bridge = CallBridge::new(G711::Mu, 24_000, 1).unwrap();
        let junk: [&[u8]; 5] = [&[], &[0xff], &[0x03], &[0x0b, 1, 2, 3, 4, 5], &[0xfc; 300]];
        for (i, j) in junk.iter().enumerate() {
            bridge.push_meeting(i as u32, j, None);
            bridge.push_meeting(i as u32 + 100, j, Some(5));
        }
        let frame = bridge.tick().unwrap();
        assert_eq!(frame.to_caller.len(), FRAME_8K);
        assert!(bridge.stats().decode_errors >= 5, "{:?}", bridge.stats());
    }
}

//! [`CallBridge`]: one dial-in call's transcoding, both ways, one 20 ms
//! tick at a time.
//!
//! Caller → meeting: G.711 payloads go into a bounded sample FIFO
//! ([`CALLER_FIFO_SAMPLES`], oldest dropped on overflow, so a caller whose
//! clock runs fast never adds latency past the bound); each tick takes 160
//! samples (silence when fewer are there), upsamples them to 48 kHz and
//! encodes one Opus packet.
//!
//! Meeting → caller: Opus payloads of the other participants are queued per
//! SSRC ([`STREAM_QUEUE_PACKETS`] deep). Each tick ranks the streams by the
//! RFC 6464 level their packets carried, decodes only the at most three
//! loudest (streams without a level are decoded to be ranked by energy),
//! mixes them, downsamples to 8 kHz and encodes 160 bytes of G.711. Streams
//! that were not chosen lose their 20 ms unheard; their decoder resumes
//! from the next packet it is given, which Opus tolerates like a loss. A
//! stream fed nothing for [`STREAM_IDLE_TICKS`] ticks (1 s) is dropped with
//! its decoder; decoders are only created for streams that get mixed.
//!
//! Driving it: call [`CallBridge::push_caller`] and
//! [`CallBridge::push_meeting`] as packets arrive, and [`CallBridge::tick`]
//! every 20 ms of the caller's clock. No clock is read and nothing blocks.

use super::level::{SILENCE_DBOV, energy_dbov};
use super::mixer::{MAX_SPEAKERS, Mixer};
use super::opus::{MAX_PACKET_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings, packet_samples};
use super::resample::{Downsampler, Upsampler};
use super::{FRAME_8K, FRAME_48K, G711, MediaError};

/// The caller FIFO's bound: 120 ms at 8 kHz.
pub const CALLER_FIFO_SAMPLES: usize = 960;
/// Opus packets kept per meeting stream; older ones are dropped.
pub const STREAM_QUEUE_PACKETS: usize = 6;
/// Ticks without a packet after which a meeting stream is forgotten.
pub const STREAM_IDLE_TICKS: u64 = 50;
/// Meeting streams one call tracks at once; packets of further SSRCs are
/// dropped until one goes idle.
pub const MAX_STREAMS: usize = 256;
/// Largest Opus payload accepted (RFC 6716 §3.4: 1275 bytes a frame; one
/// MTU is plenty for voice).
pub const MAX_OPUS_PAYLOAD: usize = 1500;

/// What one tick produced. Valid until the next call on the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeFrame<'a> {
    /// 160 bytes of G.711 for the caller (20 ms).
    pub to_caller: &'a [u8],
    /// One Opus packet (20 ms) for the meeting.
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
}

/// A fixed ring of caller samples.
struct SampleFifo {
    buf: Box<[i16; CALLER_FIFO_SAMPLES]>,
    start: usize,
    len: usize,
}

impl SampleFifo {
    fn new() -> Self {
        Self {
            buf: Box::new([0; CALLER_FIFO_SAMPLES]),
            start: 0,
            len: 0,
        }
    }

    /// Appends `samples`, dropping the oldest past the bound; returns how
    /// many were dropped.
    fn push(&mut self, samples: &[i16]) -> usize {
        let mut dropped = 0;
        for &s in samples {
            if self.len == CALLER_FIFO_SAMPLES {
                self.start = (self.start + 1) % CALLER_FIFO_SAMPLES;
                self.len -= 1;
                dropped += 1;
            }
            self.buf[(self.start + self.len) % CALLER_FIFO_SAMPLES] = s;
            self.len += 1;
        }
        dropped
    }

    /// Takes `out.len()` samples if that many are there.
    fn pop_exact(&mut self, out: &mut [i16]) -> bool {
        if self.len < out.len() {
            return false;
        }
        for o in out.iter_mut() {
            *o = self.buf[self.start];
            self.start = (self.start + 1) % CALLER_FIFO_SAMPLES;
        }
        self.len -= out.len();
        true
    }
}

/// One queued Opus payload; the buffer is reused.
#[derive(Default)]
struct Queued {
    bytes: Vec<u8>,
    level: Option<u8>,
}

/// One other participant's stream as this call hears it.
struct Stream {
    ssrc: u32,
    queue: [Queued; STREAM_QUEUE_PACKETS],
    head: usize,
    queued: usize,
    /// Created the first time the stream is decoded.
    decoder: Option<OpusDecoder>,
    /// Decoded samples not yet played (a 60 ms packet leaves 40 ms).
    pcm: Vec<i16>,
    last_push: u64,
}

impl Stream {
    fn new(ssrc: u32, tick: u64) -> Self {
        Self {
            ssrc,
            queue: Default::default(),
            head: 0,
            queued: 0,
            decoder: None,
            pcm: Vec::new(),
            last_push: tick,
        }
    }

    fn push(&mut self, payload: &[u8], level: Option<u8>) -> bool {
        let mut overflow = false;
        if self.queued == STREAM_QUEUE_PACKETS {
            self.head = (self.head + 1) % STREAM_QUEUE_PACKETS;
            self.queued -= 1;
            overflow = true;
        }
        let slot = &mut self.queue[(self.head + self.queued) % STREAM_QUEUE_PACKETS];
        slot.bytes.clear();
        slot.bytes.extend_from_slice(payload);
        slot.level = level.map(|l| l.min(SILENCE_DBOV));
        self.queued += 1;
        overflow
    }

    fn head_level(&self) -> Option<Option<u8>> {
        (self.queued > 0).then(|| self.queue[self.head].level)
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
    /// empty; returns the decode errors met.
    fn decode_frame(&mut self) -> Result<u64, MediaError> {
        let mut errors = 0;
        while self.pcm.len() < FRAME_48K && self.queued > 0 {
            if self.decoder.is_none() {
                self.decoder = Some(OpusDecoder::new()?);
                self.pcm.reserve(MAX_PACKET_SAMPLES + FRAME_48K);
            }
            let at = self.head;
            self.head = (self.head + 1) % STREAM_QUEUE_PACKETS;
            self.queued -= 1;
            let Some(decoder) = self.decoder.as_mut() else {
                break;
            };
            match decoder.decode(&self.queue[at].bytes) {
                Ok(pcm) => self.pcm.extend_from_slice(pcm),
                Err(_) => {
                    errors += 1;
                    self.pcm.extend_from_slice(decoder.conceal());
                }
            }
        }
        Ok(errors)
    }

    /// Lets 20 ms pass unheard: buffered samples first, then packets.
    fn skip_frame(&mut self) {
        let from_pcm = self.pcm.len().min(FRAME_48K);
        self.pcm.drain(..from_pcm);
        let mut skipped = from_pcm;
        while skipped < FRAME_48K {
            let Some(q) = self.pop() else { break };
            skipped += packet_samples(&q.bytes).unwrap_or(FRAME_48K);
        }
    }

    /// Takes 20 ms of decoded audio into `out`, silence-padded.
    fn take_frame(&mut self, out: &mut [i16; FRAME_48K]) {
        let n = self.pcm.len().min(FRAME_48K);
        out[..n].copy_from_slice(&self.pcm[..n]);
        out[n..].fill(0);
        self.pcm.drain(..n);
    }
}

/// One dial-in call's transcoding state: G.711 caller ↔ Opus meeting.
pub struct CallBridge {
    caller: G711,
    tick: u64,
    fifo: SampleFifo,
    upsampler: Upsampler,
    encoder: OpusEncoder,
    streams: Vec<Stream>,
    /// This tick's candidates: (stream index, level).
    ranks: Vec<(usize, u8)>,
    mixer: Mixer,
    frames: Box<[[i16; FRAME_48K]; MAX_SPEAKERS]>,
    downsampler: Downsampler,
    to_caller: [u8; FRAME_8K],
    stats: BridgeStats,
}

impl std::fmt::Debug for CallBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallBridge")
            .field("caller", &self.caller)
            .field("tick", &self.tick)
            .field("streams", &self.streams.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl CallBridge {
    /// A bridge for a caller speaking `caller` G.711, sending the meeting
    /// Opus at `opus_bitrate` bit/s and libopus `opus_complexity`, the rest
    /// as [`OpusSettings::DIAL_IN`].
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

    /// A bridge with every Opus encoder setting given.
    pub fn with_settings(caller: G711, opus: OpusSettings) -> Result<Self, MediaError> {
        Ok(Self {
            caller,
            tick: 0,
            fifo: SampleFifo::new(),
            upsampler: Upsampler::new()?,
            encoder: OpusEncoder::with_settings(opus)?,
            streams: Vec::new(),
            ranks: Vec::new(),
            mixer: Mixer::new(),
            frames: Box::new([[0; FRAME_48K]; MAX_SPEAKERS]),
            downsampler: Downsampler::new()?,
            to_caller: [caller.silence(); FRAME_8K],
            stats: BridgeStats::default(),
        })
    }

    /// The caller's G.711 law.
    #[must_use]
    pub const fn caller_law(&self) -> G711 {
        self.caller
    }

    /// What has been dropped or concealed so far.
    #[must_use]
    pub const fn stats(&self) -> BridgeStats {
        self.stats
    }

    /// Caller samples waiting for a tick.
    #[must_use]
    pub const fn caller_backlog(&self) -> usize {
        self.fifo.len
    }

    /// Meeting streams currently tracked.
    #[must_use]
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Caller → meeting: one received G.711 payload, any length (160 bytes
    /// for 20 ms; 80 or 240 are legal too). Goes into the bounded FIFO; the
    /// oldest samples are dropped when it is full.
    pub fn push_caller(&mut self, payload: &[u8]) {
        let mut pcm = [0i16; FRAME_8K];
        for chunk in payload.chunks(FRAME_8K) {
            let pcm = &mut pcm[..chunk.len()];
            self.caller.decode(chunk, pcm);
            self.stats.caller_samples_dropped += self.fifo.push(pcm) as u64;
        }
    }

    /// Meeting → caller: one Opus payload of stream `ssrc`, with the RFC
    /// 6464 level its packet carried, if any. Queued, not decoded: only the
    /// streams chosen at the next tick are.
    pub fn push_meeting(&mut self, ssrc: u32, opus_payload: &[u8], level: Option<u8>) {
        if opus_payload.len() > MAX_OPUS_PAYLOAD {
            self.stats.meeting_packets_dropped += 1;
            return;
        }
        let tick = self.tick;
        let stream = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(Stream::new(ssrc, tick));
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
            None => {
                self.stats.meeting_packets_dropped += 1;
                return;
            }
        };
        stream.last_push = tick;
        if stream.push(opus_payload, level) {
            self.stats.meeting_packets_dropped += 1;
        }
    }

    /// Drops stream `ssrc` (its participant left) with its decoder.
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.ssrc != ssrc);
    }

    /// One 20 ms tick: the caller's next G.711 frame (the mix of the at
    /// most three loudest meeting streams, silence when none) and the
    /// meeting's next Opus packet (the caller's next 20 ms, silence when
    /// the FIFO runs short).
    pub fn tick(&mut self) -> Result<BridgeFrame<'_>, MediaError> {
        self.tick += 1;
        self.expire_streams();
        self.mix_for_caller()?;

        let mut caller_pcm = [0i16; FRAME_8K];
        if !self.fifo.pop_exact(&mut caller_pcm) {
            self.stats.caller_underruns += 1;
        }
        let to_meeting_level = energy_dbov(&caller_pcm);
        let upsampled = self.upsampler.process(&caller_pcm)?;
        let to_meeting = self.encoder.encode(upsampled)?;
        Ok(BridgeFrame {
            to_caller: &self.to_caller,
            to_meeting,
            to_meeting_level,
        })
    }

    fn expire_streams(&mut self) {
        let now = self.tick;
        let before = self.streams.len();
        self.streams
            .retain(|s| now.saturating_sub(s.last_push) <= STREAM_IDLE_TICKS);
        self.stats.streams_expired += (before - self.streams.len()) as u64;
    }

    /// Ranks, decodes the chosen, mixes, downsamples and encodes G.711
    /// into `to_caller`.
    fn mix_for_caller(&mut self) -> Result<(), MediaError> {
        self.ranks.clear();
        for (i, stream) in self.streams.iter_mut().enumerate() {
            let level = if stream.pcm.len() >= FRAME_48K {
                energy_dbov(&stream.pcm[..FRAME_48K])
            } else {
                match stream.head_level() {
                    None if stream.pcm.is_empty() => continue,
                    Some(Some(level)) => level,
                    // No level given (or only a partial frame buffered):
                    // decode now and measure.
                    _ => {
                        self.stats.decode_errors += stream.decode_frame()?;
                        energy_dbov(&stream.pcm[..stream.pcm.len().min(FRAME_48K)])
                    }
                }
            };
            self.ranks.push((i, level));
        }
        let streams = &self.streams;
        let chosen: arrayvec::ArrayVec<u32, MAX_SPEAKERS> = self
            .mixer
            .select(
                self.ranks
                    .iter()
                    .map(|&(i, level)| (streams[i].ssrc, level)),
            )
            .iter()
            .copied()
            .collect();

        let mut mixed = 0;
        for &(i, _) in &self.ranks {
            let stream = &mut self.streams[i];
            if let Some(slot) = chosen.iter().position(|&s| s == stream.ssrc) {
                self.stats.decode_errors += stream.decode_frame()?;
                stream.take_frame(&mut self.frames[slot]);
                mixed += 1;
            } else {
                stream.skip_frame();
            }
        }
        let frames = &self.frames;
        let refs: arrayvec::ArrayVec<&[i16; FRAME_48K], MAX_SPEAKERS> =
            frames[..mixed].iter().collect();
        let mix = self.mixer.sum(&refs);
        let down = self.downsampler.process(mix)?;
        self.caller.encode(down, &mut self.to_caller);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::OpusBandwidth;
    use crate::media::tone::{Sine, goertzel_power};

    /// A meeting participant: an Opus encoder fed a tone.
    struct Talker {
        sine: Sine,
        encoder: OpusEncoder,
        pcm: [i16; FRAME_48K],
    }

    impl Talker {
        fn new(freq: f32, amplitude: f32) -> Self {
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

        fn next(&mut self) -> Vec<u8> {
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
        assert_eq!(bridge.mixer.selected(), &[101, 103, 104]);
        let decoders: Vec<u32> = bridge
            .streams
            .iter()
            .filter(|s| s.decoder.is_some())
            .map(|s| s.ssrc)
            .collect();
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
        assert_eq!(bridge.mixer.selected(), &[1, 3, 2]);
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

//! [`CallerUplink`]: one dial-in caller's voice into the meeting, one
//! 20 ms tick at a time: the caller's codec in (G.711, G.722 or Opus, see
//! [`CallerCodec`]), Opus out.
//!
//! The caller's payloads are decoded at the codec's own rate (8, 16 or
//! 48 kHz) into a bounded sample FIFO (120 ms, [`CALLER_FIFO_SAMPLES`] at
//! 8 kHz; oldest dropped on overflow, so a caller whose clock runs fast
//! never adds latency past the bound); each tick takes 20 ms (silence when
//! fewer are there), measures their level, and, unless silence suppression
//! ([`SilenceGate`]) holds the frame back, encodes them as one Opus
//! packet, straight from the codec's rate (libopus takes 8, 16 and 48 kHz
//! input; no resampler): narrowband for G.711, wideband for G.722,
//! fullband for an Opus caller.
//!
//! Driving it: [`CallerUplink::push`] as the caller's packets arrive,
//! [`CallerUplink::tick`] every 20 ms of the caller's clock.

use super::caller_codec::{
    CallerCodec, CallerDecoder, MAX_CALLER_FRAME, MAX_CALLER_PAYLOAD_SAMPLES,
};
use super::level::energy_dbov;
use super::libopus::NarrowbandEncoder;
use super::opus::OpusSettings;
use super::silence::{Gate, SilenceGate, SilenceSuppression};
use super::{G711, MediaError};

/// The caller FIFO's bound at 8 kHz: 120 ms (six frames at any rate).
pub const CALLER_FIFO_SAMPLES: usize = 960;

/// How an uplink encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UplinkSettings {
    /// The Opus encoder.
    pub opus: OpusSettings,
    /// Silence suppression; `None` encodes every tick.
    pub suppression: Option<SilenceSuppression>,
}

impl UplinkSettings {
    /// [`OpusSettings::DIAL_IN`] with [`SilenceSuppression::DIAL_IN`].
    pub const DIAL_IN: Self = Self {
        opus: OpusSettings::DIAL_IN,
        suppression: Some(SilenceSuppression::DIAL_IN),
    };
}

impl Default for UplinkSettings {
    fn default() -> Self {
        Self::DIAL_IN
    }
}

/// What one uplink tick produced. Valid until the next call on the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkFrame<'a> {
    /// One Opus packet (20 ms) for the meeting; `None` when silence
    /// suppression held this tick back: send nothing, but let the RTP
    /// timestamp move on by the tick.
    pub to_meeting: Option<&'a [u8]>,
    /// The caller's level in this tick, -dBov (RFC 6464 scale).
    pub level: u8,
    /// The first packet after suppressed ticks, sent because the caller
    /// spoke again: set the RTP marker bit (RFC 3551 §4.1).
    pub talkspurt: bool,
}

/// Counters of what the uplink dropped, patched over or held back; they
/// only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkStats {
    /// Caller samples dropped because the FIFO was full.
    pub caller_samples_dropped: u64,
    /// Ticks that found fewer than 160 caller samples and used silence.
    pub caller_underruns: u64,
    /// Opus packets encoded (keep-alives included).
    pub frames_encoded: u64,
    /// Ticks silence suppression sent nothing for.
    pub frames_suppressed: u64,
    /// Caller payloads that did not decode (corrupt Opus).
    pub caller_decode_errors: u64,
}

/// A fixed ring of caller samples.
struct SampleFifo {
    buf: Box<[i16]>,
    start: usize,
    len: usize,
}

impl SampleFifo {
    /// 120 ms of `frame` (20 ms) samples.
    fn new(frame: usize) -> Self {
        Self {
            buf: vec![0; 6 * frame].into_boxed_slice(),
            start: 0,
            len: 0,
        }
    }

    /// Appends `samples`, dropping the oldest past the bound; returns how
    /// many were dropped.
    fn push(&mut self, samples: &[i16]) -> usize {
        let mut dropped = 0;
        let cap = self.buf.len();
        for &s in samples {
            if self.len == cap {
                self.start = (self.start + 1) % cap;
                self.len -= 1;
                dropped += 1;
            }
            self.buf[(self.start + self.len) % cap] = s;
            self.len += 1;
        }
        dropped
    }

    /// Takes `out.len()` samples if that many are there.
    fn pop_exact(&mut self, out: &mut [i16]) -> bool {
        if self.len < out.len() {
            return false;
        }
        let cap = self.buf.len();
        for o in out.iter_mut() {
            *o = self.buf[self.start];
            self.start = (self.start + 1) % cap;
        }
        self.len -= out.len();
        true
    }
}

/// One caller's codec → Opus state.
pub struct CallerUplink {
    codec: CallerCodec,
    decoder: CallerDecoder,
    /// What one payload decodes to, before the FIFO.
    scratch: Box<[i16; MAX_CALLER_PAYLOAD_SAMPLES]>,
    fifo: SampleFifo,
    encoder: NarrowbandEncoder,
    gate: Option<SilenceGate>,
    stats: UplinkStats,
}

impl std::fmt::Debug for CallerUplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerUplink")
            .field("codec", &self.codec)
            .field("gate", &self.gate)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl CallerUplink {
    /// An uplink for a caller speaking `law`.
    pub fn new(law: G711, settings: UplinkSettings) -> Result<Self, MediaError> {
        Self::for_codec(CallerCodec::G711(law), settings)
    }

    /// An uplink for a caller speaking `codec`; the Opus encoder runs at
    /// the codec's rate with [`CallerCodec::uplink_opus`] of
    /// `settings.opus`.
    pub fn for_codec(codec: CallerCodec, settings: UplinkSettings) -> Result<Self, MediaError> {
        Ok(Self {
            codec,
            decoder: CallerDecoder::new(codec)?,
            scratch: Box::new([0; MAX_CALLER_PAYLOAD_SAMPLES]),
            fifo: SampleFifo::new(codec.frame_samples()),
            encoder: NarrowbandEncoder::with_rate(codec.uplink_opus(settings.opus), codec.rate())?,
            gate: settings.suppression.map(SilenceGate::new),
            stats: UplinkStats::default(),
        })
    }

    /// The caller's G.711 law (µ-law for a caller of another codec).
    #[must_use]
    pub const fn law(&self) -> G711 {
        match self.codec.law() {
            Some(law) => law,
            None => G711::Mu,
        }
    }

    /// The caller's codec.
    #[must_use]
    pub const fn codec(&self) -> CallerCodec {
        self.codec
    }

    /// What has been dropped, concealed or suppressed so far.
    #[must_use]
    pub const fn stats(&self) -> UplinkStats {
        self.stats
    }

    /// Caller samples waiting for a tick.
    #[must_use]
    pub const fn backlog(&self) -> usize {
        self.fifo.len
    }

    /// One received payload in the caller's codec, any length (G.711: 160
    /// bytes for 20 ms, 80 or 240 are legal too). Goes into the bounded
    /// FIFO; the oldest samples are dropped when it is full. A payload
    /// that does not decode (corrupt Opus) is counted and dropped.
    pub fn push(&mut self, payload: &[u8]) {
        // A G.711 payload longer than the scratch buffer is taken in parts.
        for chunk in payload.chunks(MAX_CALLER_PAYLOAD_SAMPLES) {
            match self.decoder.decode(chunk, &mut self.scratch[..]) {
                Ok(n) => {
                    self.stats.caller_samples_dropped += self.fifo.push(&self.scratch[..n]) as u64;
                }
                Err(_) => self.stats.caller_decode_errors += 1,
            }
            if !matches!(self.codec, CallerCodec::G711(_)) {
                break;
            }
        }
    }

    /// One 20 ms tick: the caller's next 20 ms (silence when the FIFO
    /// runs short) as one Opus packet, or nothing when suppressed.
    pub fn tick(&mut self) -> Result<UplinkFrame<'_>, MediaError> {
        let mut frame = [0i16; MAX_CALLER_FRAME];
        let pcm = &mut frame[..self.codec.frame_samples()];
        if !self.fifo.pop_exact(pcm) {
            self.stats.caller_underruns += 1;
        }
        let level = energy_dbov(pcm);
        let gate = match &mut self.gate {
            Some(gate) => gate.decide(level),
            None => Gate::Send { talkspurt: false },
        };
        let talkspurt = match gate {
            Gate::Suppress => {
                self.stats.frames_suppressed += 1;
                return Ok(UplinkFrame {
                    to_meeting: None,
                    level,
                    talkspurt: false,
                });
            }
            Gate::KeepAlive => false,
            Gate::Send { talkspurt } => talkspurt,
        };
        let packet = self.encoder.encode(pcm)?;
        self.stats.frames_encoded += 1;
        Ok(UplinkFrame {
            to_meeting: Some(packet),
            level,
            talkspurt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FRAME_8K;
    use crate::media::tone::Sine;

    fn tone(sine: &mut Sine) -> [u8; FRAME_8K] {
        let mut pcm = [0i16; FRAME_8K];
        sine.fill(&mut pcm);
        let mut g711 = [0u8; FRAME_8K];
        G711::Mu.encode(&pcm, &mut g711);
        g711
    }

    #[test]
    fn a_silent_caller_sends_keepalives_and_speech_resumes_at_once() {
        let mut uplink = CallerUplink::new(G711::Mu, UplinkSettings::DIAL_IN).unwrap();
        let mut sine = Sine::new(440.0, 8000, 8000.0);
        for _ in 0..5 {
            uplink.push(&tone(&mut sine));
            let frame = uplink.tick().unwrap();
            assert!(frame.to_meeting.is_some_and(|p| !p.is_empty()));
        }
        // Two seconds of µ-law silence (and of nothing at all).
        let mut sent = Vec::new();
        for tick in 0..100 {
            if tick < 50 {
                uplink.push(&[0xFF; FRAME_8K]);
            }
            let frame = uplink.tick().unwrap();
            assert_eq!(frame.level, 127);
            if frame.to_meeting.is_some() {
                sent.push(tick);
            }
        }
        // The hangover (10 ticks), then one every 400 ms.
        assert_eq!(sent, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 29, 49, 69, 89]);
        assert_eq!(uplink.stats().frames_suppressed, 100 - 14);
        assert_eq!(uplink.stats().frames_encoded, 5 + 14);
        uplink.push(&tone(&mut sine));
        let frame = uplink.tick().unwrap();
        assert!(frame.talkspurt);
        assert!(frame.to_meeting.is_some());
        assert!(frame.level < 20, "{}", frame.level);
    }

    #[test]
    fn without_suppression_every_tick_is_encoded() {
        let settings = UplinkSettings {
            suppression: None,
            ..UplinkSettings::DIAL_IN
        };
        let mut uplink = CallerUplink::new(G711::A, settings).unwrap();
        for _ in 0..40 {
            let frame = uplink.tick().unwrap();
            assert!(frame.to_meeting.is_some());
            assert!(!frame.talkspurt);
        }
        assert_eq!(uplink.stats().frames_encoded, 40);
        assert_eq!(uplink.stats().caller_underruns, 40);
    }
}

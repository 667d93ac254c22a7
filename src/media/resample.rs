//! 8 kHz ↔ 48 kHz through libswresample, at a constant delay.
//!
//! libswresample hands out what its filter can compute so far: the first
//! 160 samples at 8 kHz give somewhat fewer than 960 at 48 kHz, every later
//! call exactly 960 (the ratio is a whole 6). A bridge that sends one frame
//! per tick needs exactly one frame out per frame in, so [`Resampler`]
//! left-pads the first output with the samples missing (silence) and from
//! then on passes 960 (or 160) through each call: the added delay is the
//! filter's own, constant for the life of the stream.

use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use ffmpeg_next::software::resampling;
use ffmpeg_next::{ChannelLayout, frame};

use super::{FRAME_8K, FRAME_48K, MediaError};

const S16: Sample = Sample::I16(SampleType::Packed);

/// A mono s16 rate converter from `IN` samples at `from_hz` to `OUT` at
/// `to_hz` per call, at a constant delay.
struct Resampler<const IN: usize, const OUT: usize> {
    context: resampling::Context,
    input: frame::Audio,
    output: frame::Audio,
    from_hz: u32,
    to_hz: u32,
    /// Converted samples not yet handed out (at most `OUT` after a call).
    pending: Box<[i16]>,
    pending_len: usize,
    started: bool,
    out: Box<[i16]>,
}

impl<const IN: usize, const OUT: usize> Resampler<IN, OUT> {
    fn new(from_hz: u32, to_hz: u32) -> Result<Self, MediaError> {
        super::init();
        let context = resampling::Context::get(
            S16,
            ChannelLayout::MONO,
            from_hz,
            S16,
            ChannelLayout::MONO,
            to_hz,
        )
        .map_err(|source| MediaError::Resample {
            from_hz,
            to_hz,
            source,
        })?;
        let mut input = frame::Audio::new(S16, IN, ChannelLayout::MONO);
        input.set_rate(from_hz);
        // Room for more than one call's worth, so swr never has to hold
        // output back for lack of space.
        let mut output = frame::Audio::new(S16, 2 * OUT, ChannelLayout::MONO);
        output.set_rate(to_hz);
        Ok(Self {
            context,
            input,
            output,
            from_hz,
            to_hz,
            pending: vec![0; 3 * OUT].into_boxed_slice(),
            pending_len: 0,
            started: false,
            out: vec![0; OUT].into_boxed_slice(),
        })
    }

    fn process(&mut self, pcm: &[i16]) -> Result<&[i16], MediaError> {
        if pcm.len() != IN {
            return Err(MediaError::FrameLength {
                expected: IN,
                got: pcm.len(),
            });
        }
        self.input.plane_mut::<i16>(0)[..IN].copy_from_slice(pcm);
        // nb_samples 0 asks swr_convert_frame to use the whole buffer; it
        // sets the count it wrote.
        self.output.set_samples(0);
        self.context
            .run(&self.input, &mut self.output)
            .map_err(|source| MediaError::Resample {
                from_hz: self.from_hz,
                to_hz: self.to_hz,
                source,
            })?;
        let produced = self.output.plane::<i16>(0);
        if !self.started {
            self.started = true;
            // Silence in front of the first output, so that it and every
            // later one are exactly OUT long.
            self.pending_len = OUT.saturating_sub(produced.len());
            self.pending[..self.pending_len].fill(0);
        }
        let room = self.pending.len() - self.pending_len;
        let take = produced.len().min(room);
        self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&produced[..take]);
        self.pending_len += take;
        // Hand out OUT samples; if swr ever came up short, pad with silence
        // rather than return a short frame.
        let n = self.pending_len.min(OUT);
        self.out[..n].copy_from_slice(&self.pending[..n]);
        self.out[n..].fill(0);
        self.pending.copy_within(n..self.pending_len, 0);
        self.pending_len -= n;
        Ok(&self.out)
    }
}

/// 8 kHz → 48 kHz: 160 samples in, exactly 960 out per call.
pub struct Upsampler(Resampler<FRAME_8K, FRAME_48K>);

/// 48 kHz → 8 kHz: 960 samples in, exactly 160 out per call.
pub struct Downsampler(Resampler<FRAME_48K, FRAME_8K>);

impl std::fmt::Debug for Upsampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upsampler(8000 -> 48000)")
    }
}

impl std::fmt::Debug for Downsampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Downsampler(48000 -> 8000)")
    }
}

impl Upsampler {
    /// A libswresample context from 8 kHz to 48 kHz, mono s16.
    pub fn new() -> Result<Self, MediaError> {
        Resampler::new(8000, 48_000).map(Self)
    }

    /// Converts 20 ms: exactly 160 samples in, 960 out (valid until the
    /// next call).
    pub fn process(&mut self, pcm: &[i16]) -> Result<&[i16], MediaError> {
        self.0.process(pcm)
    }
}

impl Downsampler {
    /// A libswresample context from 48 kHz to 8 kHz, mono s16.
    pub fn new() -> Result<Self, MediaError> {
        Resampler::new(48_000, 8000).map(Self)
    }

    /// Converts 20 ms: exactly 960 samples in, 160 out (valid until the
    /// next call).
    pub fn process(&mut self, pcm: &[i16]) -> Result<&[i16], MediaError> {
        self.0.process(pcm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{Sine, goertzel_power};

    /// Index of the first sample above `threshold` in magnitude.
    fn onset(pcm: &[i16], threshold: u16) -> Option<usize> {
        pcm.iter().position(|s| s.unsigned_abs() > threshold)
    }

    #[test]
    fn upsampler_is_steady_and_keeps_the_tone() {
        let mut up = Upsampler::new().unwrap();
        let mut sine = Sine::new(440.0, 8000, 16_000.0);
        let mut pcm = [0i16; FRAME_8K];
        let mut all = Vec::new();
        for _ in 0..20 {
            sine.fill(&mut pcm);
            let out = up.process(&pcm).unwrap();
            assert_eq!(out.len(), FRAME_48K);
            all.extend_from_slice(out);
        }
        assert_eq!(up.0.pending_len, 0, "no backlog builds up");
        let tail = &all[all.len() - FRAME_48K..];
        let p = goertzel_power(tail, 48_000, 440.0);
        assert!((0.15..0.35).contains(&p), "440 Hz power {p}");
        assert!(goertzel_power(tail, 48_000, 3000.0) < 0.001);
        // The delay is the filter's: a few ms at most.
        let delay = onset(&all, 1000).unwrap();
        assert!(delay < 48 * 3, "onset at {delay}");
    }

    #[test]
    fn downsampler_is_steady_and_constant_delay() {
        // A click every frame at the same place must come out at the same
        // place every frame.
        let mut down = Downsampler::new().unwrap();
        let mut frame = [0i16; FRAME_48K];
        frame[300] = 30_000;
        frame[301] = 30_000;
        frame[302] = 30_000;
        let mut positions = Vec::new();
        for _ in 0..10 {
            let out = down.process(&frame).unwrap();
            assert_eq!(out.len(), FRAME_8K);
            let peak = out
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| s.unsigned_abs())
                .map(|(i, _)| i)
                .unwrap();
            positions.push(peak);
        }
        assert!(positions.windows(2).all(|w| w[0] == w[1]), "{positions:?}");
        assert!(down.process(&frame[..100]).is_err());
    }

    #[test]
    fn downsampler_keeps_low_tones_and_drops_high_ones() {
        let mut down = Downsampler::new().unwrap();
        let mut low = Sine::new(1000.0, 48_000, 16_000.0);
        let mut high = Sine::new(6000.0, 48_000, 16_000.0);
        let mut a = [0i16; FRAME_48K];
        let mut b = [0i16; FRAME_48K];
        let mut out = Vec::new();
        for _ in 0..10 {
            low.fill(&mut a);
            high.fill(&mut b);
            for (x, y) in a.iter_mut().zip(&b) {
                *x = x.saturating_add(*y);
            }
            out = down.process(&a).unwrap().to_vec();
        }
        let p = goertzel_power(&out, 8000, 1000.0);
        assert!((0.15..0.35).contains(&p), "1 kHz power {p}");
        // 6 kHz would alias to 2 kHz if the filter let it through.
        assert!(goertzel_power(&out, 8000, 2000.0) < 0.002);
    }
}

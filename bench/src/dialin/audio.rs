//! The audio both dial-in targets are fed, encoded once before a run and
//! cycled: the caller's 440 Hz tone as PCMU, and three meeting speakers
//! (1 kHz, 600 Hz, 300 Hz) as Opus packets, each with the RFC 6464 level of
//! its own 20 ms, as a browser would put in the header extension.

use sluice::media::level::energy_dbov;
use sluice::media::tone::Sine;
use sluice::media::{
    FRAME_8K, FRAME_48K, G711, MediaError, OPUS_RATE, OpusBandwidth, OpusEncoder, OpusSettings,
};

/// Seconds of audio encoded up front per source; longer than one cycle of
/// every tone's phase against the 20 ms frame, short enough to encode in
/// well under a second.
pub const CYCLE_SECONDS: usize = 3;
/// Frames in one cycle.
pub const CYCLE_FRAMES: usize = CYCLE_SECONDS * 50;

/// The three meeting speakers: frequency (Hz) and peak amplitude. The
/// amplitudes differ so the levels, and the mixer's ranking, differ too.
pub const SPEAKERS: [(f32, f32); 3] = [(1000.0, 12_000.0), (600.0, 6_000.0), (300.0, 3_000.0)];

/// The caller's tone: 440 Hz, peak 12000.
pub const CALLER_TONE: (f32, f32) = (440.0, 12_000.0);

/// How a meeting participant's browser encodes its voice: fullband Opus at
/// 32 kbit/s VBR, libopus complexity 5. What it costs to decode hardly
/// depends on these.
pub const SPEAKER_OPUS: OpusSettings = OpusSettings {
    bitrate_bps: 32_000,
    complexity: 5,
    vbr: true,
    bandwidth: OpusBandwidth::Full,
    ..OpusSettings::DIAL_IN
};

/// One pre-encoded Opus packet and its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrame {
    /// The Opus payload (20 ms).
    pub payload: Vec<u8>,
    /// Its RFC 6464 level, -dBov.
    pub level: u8,
}

/// [`CYCLE_FRAMES`] frames of the caller's tone, 160 bytes of `law` each.
pub fn caller_frames(law: G711) -> Vec<[u8; FRAME_8K]> {
    let (freq, amplitude) = CALLER_TONE;
    let mut sine = Sine::new(freq, 8000, amplitude);
    let mut pcm = [0i16; FRAME_8K];
    (0..CYCLE_FRAMES)
        .map(|_| {
            sine.fill(&mut pcm);
            let mut frame = [0u8; FRAME_8K];
            law.encode(&pcm, &mut frame);
            frame
        })
        .collect()
}

/// [`CYCLE_FRAMES`] Opus frames of a `freq` Hz tone at peak `amplitude`.
pub fn speaker_frames(freq: f32, amplitude: f32) -> Result<Vec<OpusFrame>, MediaError> {
    let mut encoder = OpusEncoder::with_settings(SPEAKER_OPUS)?;
    let mut sine = Sine::new(freq, OPUS_RATE, amplitude);
    let mut pcm = [0i16; FRAME_48K];
    (0..CYCLE_FRAMES)
        .map(|_| {
            sine.fill(&mut pcm);
            let level = energy_dbov(&pcm);
            let payload = encoder.encode(&pcm)?.to_vec();
            Ok(OpusFrame { payload, level })
        })
        .collect()
}

/// The three [`SPEAKERS`], encoded.
pub fn meeting_frames() -> Result<[Vec<OpusFrame>; 3], MediaError> {
    let [a, b, c] = SPEAKERS;
    Ok([
        speaker_frames(a.0, a.1)?,
        speaker_frames(b.0, b.1)?,
        speaker_frames(c.0, c.1)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_a_cycle_of_real_audio() {
        let caller = caller_frames(G711::Mu);
        assert_eq!(caller.len(), CYCLE_FRAMES);
        // A 440 Hz tone is not µ-law silence (0xFF).
        assert!(caller[10].iter().filter(|&&b| b != 0xFF).count() > 100);
        let speakers = meeting_frames().unwrap();
        for (frames, (_, amplitude)) in speakers.iter().zip(SPEAKERS) {
            assert_eq!(frames.len(), CYCLE_FRAMES);
            assert!(frames.iter().all(|f| !f.payload.is_empty()));
            // A sine of peak A is 20·log10(32768/(A/√2)) dB below full scale.
            let want = 20.0 * (32768.0 / (f64::from(amplitude) / 2f64.sqrt())).log10();
            let got = f64::from(frames[20].level);
            assert!((got - want).abs() <= 1.0, "level {got}, want {want:.1}");
        }
        // Louder speakers rank first.
        assert!(speakers[0][20].level < speakers[1][20].level);
        assert!(speakers[1][20].level < speakers[2][20].level);
    }
}

//! [`CallerCodec`]: what a dial-in caller speaks, and the phone side's
//! codec state for one call: [`CallerDecoder`] (the caller's payloads to
//! PCM) and [`CallerEncoder`] (PCM to what the caller hears).
//!
//! Each codec runs at its own rate, and the bridge mixes for a caller at
//! that rate, so nothing is resampled on the way: G.711 at 8 kHz (the
//! table path, no allocation), G.722 at 16 kHz (FFmpeg's `g722`), Opus at
//! 48 kHz (libopus called directly, as for the meeting side).

use super::g722::{FRAME_16K, G722_FRAME_BYTES, G722_RATE, G722Decoder, G722Encoder};
use super::libopus::{NarrowbandDecoder, NarrowbandEncoder};
use super::opus::{OpusBandwidth, OpusSettings};
use super::{FRAME_8K, FRAME_48K, G711, MediaError, OPUS_RATE};

/// The largest 20 ms frame of any caller codec, in samples (Opus at 48 kHz).
pub const MAX_CALLER_FRAME: usize = FRAME_48K;
/// The most PCM one caller payload decodes to: 120 ms at 48 kHz.
pub const MAX_CALLER_PAYLOAD_SAMPLES: usize = 6 * FRAME_48K;

/// A dial-in caller's codec, as SDP negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerCodec {
    /// G.711 (PCMU or PCMA), 8 kHz.
    G711(G711),
    /// G.722, 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2).
    G722,
    /// Opus, mono, mixed and coded at 48 kHz (RFC 7587).
    Opus,
}

impl CallerCodec {
    /// The audio rate the caller's PCM (and its mix) runs at.
    #[must_use]
    pub const fn rate(self) -> u32 {
        match self {
            Self::G711(_) => 8000,
            Self::G722 => G722_RATE,
            Self::Opus => OPUS_RATE,
        }
    }

    /// Samples in 20 ms at [`Self::rate`].
    #[must_use]
    pub const fn frame_samples(self) -> usize {
        match self {
            Self::G711(_) => FRAME_8K,
            Self::G722 => FRAME_16K,
            Self::Opus => FRAME_48K,
        }
    }

    /// How far 20 ms move the caller's RTP timestamp: 160 for G.711 and
    /// G.722 (its RTP clock is 8 kHz), 960 for Opus (48 kHz).
    #[must_use]
    pub const fn rtp_step(self) -> u32 {
        match self {
            Self::G711(_) | Self::G722 => 160,
            Self::Opus => 960,
        }
    }

    /// The RTP clock rate of the codec (RFC 3551, RFC 7587): 8000 for
    /// G.711 and G.722, 48000 for Opus.
    #[must_use]
    pub const fn rtp_clock(self) -> u32 {
        match self {
            Self::G711(_) | Self::G722 => 8000,
            Self::Opus => OPUS_RATE,
        }
    }

    /// The G.711 law, for a G.711 caller.
    #[must_use]
    pub const fn law(self) -> Option<G711> {
        match self {
            Self::G711(law) => Some(law),
            _ => None,
        }
    }

    /// The Opus settings the uplink encodes this caller's voice into the
    /// meeting with: [`OpusSettings::DIAL_IN`] (narrowband) for G.711,
    /// wideband for G.722, fullband for Opus; `base` gives bitrate and
    /// complexity, raised to at least 32 kbit/s for the wider bands.
    #[must_use]
    pub const fn uplink_opus(self, base: OpusSettings) -> OpusSettings {
        let bandwidth = match self {
            Self::G711(_) => return base,
            Self::G722 => OpusBandwidth::Wide,
            Self::Opus => OpusBandwidth::Full,
        };
        let bitrate_bps = if base.bitrate_bps < 32_000 {
            32_000
        } else {
            base.bitrate_bps
        };
        OpusSettings {
            bitrate_bps,
            bandwidth,
            ..base
        }
    }
}

/// The caller's payloads to PCM at the codec's rate.
#[derive(Debug)]
pub enum CallerDecoder {
    /// By table.
    G711(G711),
    /// FFmpeg's g722.
    G722(Box<G722Decoder>),
    /// libopus at 48 kHz.
    Opus(Box<NarrowbandDecoder>),
}

impl CallerDecoder {
    /// A decoder for `codec`.
    pub fn new(codec: CallerCodec) -> Result<Self, MediaError> {
        Ok(match codec {
            CallerCodec::G711(law) => Self::G711(law),
            CallerCodec::G722 => Self::G722(Box::new(G722Decoder::new()?)),
            CallerCodec::Opus => Self::Opus(Box::new(NarrowbandDecoder::with_rate(OPUS_RATE)?)),
        })
    }

    /// Decodes one payload into `out` (at most `out.len()` samples) and
    /// returns how many were written. A payload that does not decode
    /// (a corrupt Opus packet) is an error, never a panic; G.711 and
    /// G.722 take any bytes.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, MediaError> {
        match self {
            Self::G711(law) => {
                let n = payload.len().min(out.len());
                law.decode(&payload[..n], &mut out[..n]);
                Ok(n)
            }
            Self::G722(d) => d.decode(payload, out),
            Self::Opus(d) => {
                let pcm = d.decode(payload)?;
                let n = pcm.len().min(out.len());
                out[..n].copy_from_slice(&pcm[..n]);
                Ok(n)
            }
        }
    }
}

/// PCM at the codec's rate to what the caller hears, 20 ms at a time.
#[derive(Debug)]
pub enum CallerEncoder {
    /// By table.
    G711(G711, Box<[u8; FRAME_8K]>),
    /// FFmpeg's g722.
    G722(Box<G722Encoder>, Box<[u8; G722_FRAME_BYTES]>),
    /// libopus at 48 kHz, fullband.
    Opus(Box<NarrowbandEncoder>),
}

impl CallerEncoder {
    /// An encoder for `codec`; Opus with `opus`'s bitrate and complexity
    /// (fullband: the meeting's audio is).
    pub fn new(codec: CallerCodec, opus: OpusSettings) -> Result<Self, MediaError> {
        Ok(match codec {
            CallerCodec::G711(law) => Self::G711(law, Box::new([0; FRAME_8K])),
            CallerCodec::G722 => Self::G722(
                Box::new(G722Encoder::new()?),
                Box::new([0; G722_FRAME_BYTES]),
            ),
            CallerCodec::Opus => Self::Opus(Box::new(NarrowbandEncoder::with_rate(
                CallerCodec::Opus.uplink_opus(opus),
                OPUS_RATE,
            )?)),
        })
    }

    /// An Opus encoder for a caller (48 kHz, mono, [`CallerCodec::uplink_opus`]
    /// of `opus`) honouring what its offer's fmtp asked (RFC 7587 §6.1):
    /// coding no wider than `max_bandwidth` (its `maxplaybackrate`), and
    /// with in-band FEC for `fec_loss_percent` of loss when it said
    /// `useinbandfec=1`.
    pub fn opus_for(
        opus: OpusSettings,
        max_bandwidth: OpusBandwidth,
        fec_loss_percent: Option<u8>,
    ) -> Result<Self, MediaError> {
        let mut settings = CallerCodec::Opus.uplink_opus(opus);
        settings.bandwidth = settings.bandwidth.min(max_bandwidth);
        let mut encoder = NarrowbandEncoder::with_rate(settings, OPUS_RATE)?;
        if let Some(loss) = fec_loss_percent {
            encoder.set_inband_fec(loss)?;
        }
        Ok(Self::Opus(Box::new(encoder)))
    }

    /// Encodes 20 ms of PCM at the codec's rate; the payload is valid
    /// until the next call.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], MediaError> {
        match self {
            Self::G711(law, out) => {
                if pcm.len() != FRAME_8K {
                    return Err(MediaError::FrameLength {
                        expected: FRAME_8K,
                        got: pcm.len(),
                    });
                }
                law.encode(pcm, &mut out[..]);
                Ok(&out[..])
            }
            Self::G722(e, out) => {
                e.encode(pcm, out)?;
                Ok(&out[..])
            }
            Self::Opus(e) => e.encode(pcm),
        }
    }
}

/// Stretches an 8 kHz frame to `out.len()` samples (a multiple of its
/// length) by linear interpolation: the voice prompts, stored as 8 kHz
/// µ-law, played to a wideband caller. Not a resampler for music; the
/// prompts hold nothing above 4 kHz.
pub fn stretch_8k(pcm: &[i16; FRAME_8K], out: &mut [i16]) {
    let factor = out.len() / FRAME_8K;
    if factor <= 1 {
        let n = out.len().min(FRAME_8K);
        out[..n].copy_from_slice(&pcm[..n]);
        return;
    }
    for (i, &s) in pcm.iter().enumerate() {
        let next = pcm.get(i + 1).copied().unwrap_or(s);
        let (a, b) = (i32::from(s), i32::from(next));
        for k in 0..factor {
            // Between two i16: stays in range.
            out[i * factor + k] = (a + (b - a) * k as i32 / factor as i32) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{Sine, goertzel_power};

    #[test]
    fn each_codec_round_trips_a_tone_at_its_own_rate() {
        for (codec, freq) in [
            (CallerCodec::G711(G711::Mu), 1000.0),
            (CallerCodec::G711(G711::A), 1000.0),
            (CallerCodec::G722, 6000.0),
            (CallerCodec::Opus, 6000.0),
        ] {
            let mut enc = CallerEncoder::new(codec, OpusSettings::DIAL_IN).unwrap();
            let mut dec = CallerDecoder::new(codec).unwrap();
            let mut sine = Sine::new(freq, codec.rate(), 8000.0);
            let mut pcm = vec![0i16; codec.frame_samples()];
            let mut heard = Vec::new();
            let mut out = vec![0i16; MAX_CALLER_PAYLOAD_SAMPLES];
            for _ in 0..25 {
                sine.fill(&mut pcm);
                let payload = enc.encode(&pcm).unwrap().to_vec();
                let n = dec.decode(&payload, &mut out).unwrap();
                assert_eq!(n, codec.frame_samples(), "{codec:?}");
                heard.extend_from_slice(&out[..n]);
            }
            let tail = &heard[heard.len() - 10 * codec.frame_samples()..];
            let at = goertzel_power(tail, codec.rate(), freq);
            assert!(at > 0.02, "{codec:?}: {freq} Hz power {at}");
            assert!(enc.encode(&pcm[..10]).is_err());
        }
        assert_eq!(CallerCodec::G722.rtp_step(), 160);
        assert_eq!(CallerCodec::Opus.rtp_step(), 960);
    }

    /// The audio bandwidth an Opus packet's TOC byte says (RFC 6716
    /// §3.1, Table 2).
    fn toc_bandwidth(packet: &[u8]) -> OpusBandwidth {
        match packet[0] >> 3 {
            0..=3 | 16..=19 => OpusBandwidth::Narrow,
            4..=7 => OpusBandwidth::Medium,
            8..=11 | 20..=23 => OpusBandwidth::Wide,
            12 | 13 | 24..=27 => OpusBandwidth::SuperWide,
            _ => OpusBandwidth::Full,
        }
    }

    #[test]
    fn an_opus_callers_maxplaybackrate_and_useinbandfec_are_honoured() {
        assert_eq!(
            OpusBandwidth::for_playback_rate(8000),
            OpusBandwidth::Narrow
        );
        assert_eq!(
            OpusBandwidth::for_playback_rate(16_000),
            OpusBandwidth::Wide
        );
        assert_eq!(
            OpusBandwidth::for_playback_rate(24_000),
            OpusBandwidth::SuperWide
        );
        assert_eq!(
            OpusBandwidth::for_playback_rate(48_000),
            OpusBandwidth::Full
        );
        // Music up to 10 kHz: fullband packets unless the receiver caps
        // its playback rate at 16 kHz, then wideband at most.
        let packets = |max, fec| {
            let mut enc = CallerEncoder::opus_for(OpusSettings::DIAL_IN, max, fec).unwrap();
            if let CallerEncoder::Opus(e) = &mut enc {
                assert_eq!(e.inband_fec(), fec.is_some(), "FEC as asked");
            }
            let mut sine = Sine::new(10_000.0, 48_000, 6000.0);
            let mut low = Sine::new(300.0, 48_000, 6000.0);
            let mut pcm = [0i16; 960];
            let mut tmp = [0i16; 960];
            (0..50)
                .map(|_| {
                    sine.fill(&mut pcm);
                    low.fill(&mut tmp);
                    for (a, b) in pcm.iter_mut().zip(tmp) {
                        *a = a.saturating_add(b);
                    }
                    toc_bandwidth(enc.encode(&pcm).unwrap())
                })
                .collect::<Vec<_>>()
        };
        let capped = packets(OpusBandwidth::Wide, Some(10));
        assert!(
            capped.iter().all(|b| b.min(OpusBandwidth::Wide) == *b),
            "{capped:?}"
        );
        let full = packets(OpusBandwidth::Full, None);
        assert!(full.contains(&OpusBandwidth::Full), "{full:?}");
    }

    #[test]
    fn garbage_opus_from_a_caller_is_an_error_not_a_panic() {
        let mut dec = CallerDecoder::new(CallerCodec::Opus).unwrap();
        let mut out = [0i16; MAX_CALLER_PAYLOAD_SAMPLES];
        assert!(dec.decode(&[], &mut out).is_err());
        let _ = dec.decode(&[0xfc; 300], &mut out);
    }

    #[test]
    fn prompts_stretch_to_wideband() {
        let mut pcm = [0i16; FRAME_8K];
        Sine::new(440.0, 8000, 8000.0).fill(&mut pcm);
        let mut wide = [0i16; FRAME_48K];
        stretch_8k(&pcm, &mut wide);
        assert_eq!(wide[0], pcm[0]);
        assert_eq!(wide[6], pcm[1]);
        assert!(goertzel_power(&wide, 48_000, 440.0) > 0.05);
    }
}

//! Opus (RFC 6716) through FFmpeg's `libopus` wrapper: one encoder and one
//! decoder per stream, 48 kHz mono 16-bit, 20 ms frames.
//!
//! Both reuse their FFmpeg frame and packet across calls, so the only
//! allocations per frame are the ones inside FFmpeg (a packet buffer).

use ffmpeg_next::codec::{self, decoder, encoder};
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use ffmpeg_next::{ChannelLayout, Dictionary, Packet, frame};

use super::{FRAME_48K, MediaError};

/// Opus runs at 48 kHz here, whatever the audio's bandwidth.
pub const OPUS_RATE: u32 = 48_000;
/// The most samples one Opus packet decodes to: 120 ms at 48 kHz.
pub const MAX_PACKET_SAMPLES: usize = 5760;

const LIBOPUS: &str = "libopus";
const S16: Sample = Sample::I16(SampleType::Packed);

/// The audio bandwidth the encoder may use; narrower is cheaper and, for
/// audio that came from an 8 kHz phone call, loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusBandwidth {
    /// 4 kHz (what a G.711 caller's audio holds).
    Narrow,
    /// 6 kHz.
    Medium,
    /// 8 kHz.
    Wide,
    /// 12 kHz.
    SuperWide,
    /// 20 kHz.
    Full,
}

impl OpusBandwidth {
    /// The widest bandwidth worth coding for a receiver whose
    /// `maxplaybackrate` is `rate` Hz (RFC 7587 §6.1, §7.1): narrowband up
    /// to 8 kHz, mediumband to 12 kHz, wideband to 16 kHz, super-wideband
    /// to 24 kHz, fullband above.
    #[must_use]
    pub const fn for_playback_rate(rate: u32) -> Self {
        match rate {
            0..=8000 => Self::Narrow,
            8001..=12_000 => Self::Medium,
            12_001..=16_000 => Self::Wide,
            16_001..=24_000 => Self::SuperWide,
            _ => Self::Full,
        }
    }

    /// The narrower of two bandwidths.
    #[must_use]
    pub const fn min(self, other: Self) -> Self {
        if (self as u8) <= (other as u8) {
            self
        } else {
            other
        }
    }

    /// FFmpeg's `cutoff` option for this bandwidth, in Hz.
    const fn cutoff_hz(self) -> u32 {
        match self {
            Self::Narrow => 4000,
            Self::Medium => 6000,
            Self::Wide => 8000,
            Self::SuperWide => 12000,
            Self::Full => 20000,
        }
    }
}

/// How the Opus encoder is set up. [`OpusSettings::DIAL_IN`] is what the
/// call bridge uses; `benches/transcode.rs` measured the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusSettings {
    /// Target bitrate in bit/s (6000..=510000).
    pub bitrate_bps: u32,
    /// libopus complexity 0..=10: CPU against quality.
    pub complexity: u8,
    /// Variable bitrate (`vbr=on`); off means hard CBR.
    pub vbr: bool,
    /// Largest audio bandwidth coded.
    pub bandwidth: OpusBandwidth,
    /// The rate of the PCM given to [`OpusEncoder::encode`]: 8000, 12000,
    /// 16000, 24000 or 48000 Hz (20 ms = `input_rate / 50` samples). The
    /// packets are the same Opus either way (RTP clock 48 kHz, RFC 7587
    /// §4.1). Through FFmpeg, 8 kHz input was measured no cheaper; the
    /// dial-in uplink now calls libopus directly at 8 kHz
    /// ([`super::NarrowbandEncoder`], which ignores this field).
    pub input_rate: u32,
}

impl OpusSettings {
    /// For a dial-in caller: 24 kbit/s VBR, complexity 1, narrowband (the
    /// caller's audio is 8 kHz G.711, so nothing lies above 4 kHz).
    ///
    /// Measured (`cargo bench --bench transcode -- opus/encode`, 20 ms of
    /// 8 kHz speech-band audio at 48 kHz): complexity 0 and 1 cost about the
    /// same (~40 µs), 3 about 1.5x, 5 and 10 about 2x; fullband or wideband
    /// instead of narrowband about 3x. Complexity 1 keeps the cheapest cost
    /// with the better of the two noise-shaping searches.
    pub const DIAL_IN: Self = Self {
        bitrate_bps: 24_000,
        complexity: 1,
        vbr: true,
        bandwidth: OpusBandwidth::Narrow,
        input_rate: OPUS_RATE,
    };
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self::DIAL_IN
    }
}

/// AVCodecContext options for mono at `rate`, given at open time: the
/// safe wrapper has no setter for a decoder's channel layout.
pub(super) fn mono_options(rate: u32) -> Dictionary<'static> {
    let mut opts = Dictionary::new();
    opts.set("ch_layout", "mono");
    opts.set("ar", &rate.to_string());
    opts
}

/// An Opus encoder: mono s16 (48 kHz unless [`OpusSettings::input_rate`]
/// says otherwise), one 20 ms packet per call, application `voip`.
pub struct OpusEncoder {
    encoder: encoder::audio::Encoder,
    /// Samples in 20 ms at the input rate.
    frame_len: usize,
    frame: frame::Audio,
    packet: Packet,
    pts: i64,
    settings: OpusSettings,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("settings", &self.settings)
            .field("pts", &self.pts)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder at `bitrate_bps` and libopus `complexity` (0..=10), the
    /// rest as in [`OpusSettings::DIAL_IN`].
    pub fn new(bitrate_bps: u32, complexity: u8) -> Result<Self, MediaError> {
        Self::with_settings(OpusSettings {
            bitrate_bps,
            complexity,
            ..OpusSettings::DIAL_IN
        })
    }

    /// An encoder with every setting given.
    pub fn with_settings(settings: OpusSettings) -> Result<Self, MediaError> {
        if settings.complexity > 10 {
            return Err(MediaError::InvalidSetting {
                name: "opus complexity",
                value: settings.complexity.into(),
            });
        }
        if !(6_000..=510_000).contains(&settings.bitrate_bps) {
            return Err(MediaError::InvalidSetting {
                name: "opus bitrate",
                value: settings.bitrate_bps,
            });
        }
        if ![8000, 12_000, 16_000, 24_000, OPUS_RATE].contains(&settings.input_rate) {
            return Err(MediaError::InvalidSetting {
                name: "opus input rate",
                value: settings.input_rate,
            });
        }
        super::init();
        let missing = MediaError::CodecMissing {
            name: LIBOPUS,
            kind: "encoder",
        };
        let open_err = |source| MediaError::CodecOpen {
            name: LIBOPUS,
            kind: "encoder",
            source,
        };
        let codec = encoder::find_by_name(LIBOPUS).ok_or(missing)?;
        let mut enc = codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(open_err)?;
        let rate = settings.input_rate;
        // Every accepted rate fits an i32.
        enc.set_rate(rate as i32);
        enc.set_format(S16);
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_time_base((1, rate as i32));
        enc.set_bit_rate(settings.bitrate_bps as usize);
        enc.set_compression(Some(settings.complexity.into()));
        let mut opts = mono_options(rate);
        opts.set("application", "voip");
        opts.set("frame_duration", "20");
        opts.set("vbr", if settings.vbr { "on" } else { "off" });
        opts.set("cutoff", &settings.bandwidth.cutoff_hz().to_string());
        let encoder = enc.open_as_with(codec, opts).map_err(open_err)?;
        let frame_len = (rate / 50) as usize;
        let mut frame = frame::Audio::new(S16, frame_len, ChannelLayout::MONO);
        frame.set_rate(rate);
        Ok(Self {
            frame_len,
            encoder,
            frame,
            packet: Packet::empty(),
            pts: 0,
            settings,
        })
    }

    /// The settings the encoder was opened with.
    #[must_use]
    pub const fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// Samples [`Self::encode`] takes: 20 ms at the input rate (960 at
    /// 48 kHz, 160 at 8 kHz).
    #[must_use]
    pub const fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Encodes 20 ms (exactly [`Self::frame_len`] samples, 960 at the
    /// default 48 kHz) into one Opus packet, valid until the next call.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], MediaError> {
        let n = self.frame_len;
        if pcm.len() != n {
            return Err(MediaError::FrameLength {
                expected: n,
                got: pcm.len(),
            });
        }
        let err = |source| MediaError::Encode {
            name: LIBOPUS,
            source,
        };
        // FFmpeg released its reference to the frame when the last
        // packet came out (libopus encodes inside send_frame), so the
        // buffer is ours to overwrite.
        self.frame.plane_mut::<i16>(0)[..n].copy_from_slice(pcm);
        self.frame.set_pts(Some(self.pts));
        self.pts += n as i64;
        self.encoder.send_frame(&self.frame).map_err(err)?;
        self.encoder.receive_packet(&mut self.packet).map_err(err)?;
        Ok(self.packet.data().unwrap_or_default())
    }
}

/// An Opus decoder to 48 kHz mono s16, with a simple concealment for lost
/// packets (FFmpeg's API has no way to ask libopus for its own PLC).
pub struct OpusDecoder {
    decoder: decoder::Audio,
    frame: frame::Audio,
    packet: Packet,
    /// Output of the last call; at most 120 ms.
    pcm: Box<[i16; MAX_PACKET_SAMPLES]>,
    /// The last 20 ms decoded, for concealment.
    last: Box<[i16; FRAME_48K]>,
    /// Frames concealed since the last good packet.
    lost: u32,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Opens FFmpeg's `libopus` decoder for mono output.
    pub fn new() -> Result<Self, MediaError> {
        super::init();
        let open_err = |source| MediaError::CodecOpen {
            name: LIBOPUS,
            kind: "decoder",
            source,
        };
        let codec = decoder::find_by_name(LIBOPUS).ok_or(MediaError::CodecMissing {
            name: LIBOPUS,
            kind: "decoder",
        })?;
        let decoder = codec::Context::new_with_codec(codec)
            .decoder()
            .open_as_with(codec, mono_options(OPUS_RATE))
            .and_then(decoder::Opened::audio)
            .map_err(open_err)?;
        Ok(Self {
            decoder,
            frame: frame::Audio::empty(),
            packet: Packet::new(0),
            pcm: Box::new([0; MAX_PACKET_SAMPLES]),
            last: Box::new([0; FRAME_48K]),
            lost: 0,
        })
    }

    /// Decodes one Opus packet: 960 samples for a 20 ms packet, from 120
    /// (2.5 ms) to 5760 (120 ms) for others. A malformed packet is an
    /// error, never a panic; call [`Self::conceal`] for its time.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], MediaError> {
        let err = |source| MediaError::Decode {
            name: LIBOPUS,
            source,
        };
        // FFmpeg takes an empty packet for end of stream, and libopus
        // refuses anything whose TOC does not add up: check first.
        if packet_samples(packet).is_none() {
            return Err(err(ffmpeg_next::Error::InvalidData));
        }
        self.load_packet(packet);
        self.decoder.send_packet(&self.packet).map_err(err)?;
        self.decoder.receive_frame(&mut self.frame).map_err(err)?;
        if self.frame.format() != S16 || self.frame.channels() != 1 {
            return Err(MediaError::DecodedFormat {
                name: LIBOPUS,
                got: "another sample format or channel count",
            });
        }
        let out = self.frame.plane::<i16>(0);
        let n = out.len().min(MAX_PACKET_SAMPLES);
        self.pcm[..n].copy_from_slice(&out[..n]);
        let keep = n.min(FRAME_48K);
        self.last.fill(0);
        self.last[FRAME_48K - keep..].copy_from_slice(&self.pcm[n - keep..n]);
        self.lost = 0;
        Ok(&self.pcm[..n])
    }

    /// 20 ms to play for a packet that never came: the last 20 ms decoded,
    /// faded out, for the first loss; silence after that.
    pub fn conceal(&mut self) -> &[i16] {
        let out = &mut self.pcm[..FRAME_48K];
        if self.lost == 0 {
            for (i, (o, &s)) in out.iter_mut().zip(self.last.iter()).enumerate() {
                let gain = (FRAME_48K - i) as i32;
                *o = (i32::from(s) * gain / FRAME_48K as i32) as i16;
            }
        } else {
            out.fill(0);
        }
        self.lost = self.lost.saturating_add(1);
        &self.pcm[..FRAME_48K]
    }

    /// Puts `bytes` into the reused packet, growing its buffer only when a
    /// packet is larger than any before.
    fn load_packet(&mut self, bytes: &[u8]) {
        let have = self.packet.size();
        if have < bytes.len() {
            self.packet.grow(bytes.len() - have);
        } else if have > bytes.len() {
            self.packet.shrink(bytes.len());
        }
        if let Some(data) = self.packet.data_mut() {
            data.copy_from_slice(bytes);
        }
    }
}

/// The samples at 48 kHz one Opus packet decodes to, from its TOC byte and
/// frame count (RFC 6716 §3.1, §3.2); `None` for a packet that cannot be
/// valid (empty, code 3 without a count, more than 120 ms).
#[must_use]
pub fn packet_samples(packet: &[u8]) -> Option<usize> {
    let &toc = packet.first()?;
    let config = toc >> 3;
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        12..=15 => [480, 960][usize::from(config & 1)],
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => usize::from(packet.get(1)? & 0x3f),
    };
    let total = per_frame * frames;
    (frames > 0 && total <= MAX_PACKET_SAMPLES).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{Sine, goertzel_power};

    #[test]
    fn toc_durations() {
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(packet_samples(&[1 << 3]), Some(960)); // SILK NB 20 ms
        assert_eq!(packet_samples(&[(31 << 3) | 1]), Some(1920)); // CELT 2x20
        assert_eq!(packet_samples(&[(3 << 3) | 3, 2]), Some(5760)); // SILK 2x60
        assert_eq!(packet_samples(&[(3 << 3) | 3, 3]), None); // 180 ms
        assert_eq!(packet_samples(&[3]), None); // code 3, no count
        assert_eq!(packet_samples(&[3, 0]), None); // zero frames
    }

    #[test]
    fn encode_decode_keeps_a_tone() {
        let mut enc = OpusEncoder::new(24_000, 3).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut sine = Sine::new(600.0, OPUS_RATE, 12_000.0);
        let mut pcm = [0i16; FRAME_48K];
        let mut last = Vec::new();
        for _ in 0..25 {
            sine.fill(&mut pcm);
            let packet = enc.encode(&pcm).unwrap();
            assert!(
                !packet.is_empty() && packet.len() < 200,
                "{} bytes",
                packet.len()
            );
            assert_eq!(packet_samples(packet), Some(FRAME_48K));
            last = dec.decode(packet).unwrap().to_vec();
        }
        assert_eq!(last.len(), FRAME_48K);
        let at = goertzel_power(&last, OPUS_RATE, 600.0);
        let off = goertzel_power(&last, OPUS_RATE, 1400.0);
        // Amplitude 12000/32768 → power 0.134 for a perfect copy.
        assert!(at > 0.05, "600 Hz power {at}");
        assert!(off < at / 100.0, "1400 Hz power {off}");
    }

    #[test]
    fn encoder_takes_8khz_input() {
        let mut enc = OpusEncoder::with_settings(OpusSettings {
            input_rate: 8000,
            ..OpusSettings::DIAL_IN
        })
        .unwrap();
        assert_eq!(enc.frame_len(), 160);
        let mut dec = OpusDecoder::new().unwrap();
        let mut sine = Sine::new(440.0, 8000, 12_000.0);
        let mut pcm = [0i16; 160];
        let mut last = Vec::new();
        for _ in 0..25 {
            sine.fill(&mut pcm);
            let packet = enc.encode(&pcm).unwrap();
            last = dec.decode(packet).unwrap().to_vec();
        }
        assert_eq!(last.len(), FRAME_48K);
        let at = goertzel_power(&last, OPUS_RATE, 440.0);
        assert!(at > 0.05, "440 Hz power {at}");
        assert!(goertzel_power(&last, OPUS_RATE, 1000.0) < at / 100.0);
        let bad = OpusSettings {
            input_rate: 44_100,
            ..OpusSettings::DIAL_IN
        };
        assert!(OpusEncoder::with_settings(bad).is_err());
    }

    #[test]
    fn wrong_frame_length_is_refused() {
        let mut enc = OpusEncoder::new(24_000, 3).unwrap();
        assert_eq!(
            enc.encode(&[0; 480]).unwrap_err(),
            MediaError::FrameLength {
                expected: 960,
                got: 480
            }
        );
        assert!(OpusEncoder::new(24_000, 11).is_err());
    }

    #[test]
    fn garbage_is_an_error_and_concealment_fades() {
        let mut enc = OpusEncoder::new(24_000, 3).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        let mut sine = Sine::new(500.0, OPUS_RATE, 10_000.0);
        let mut pcm = [0i16; FRAME_48K];
        for _ in 0..5 {
            sine.fill(&mut pcm);
            let p = enc.encode(&pcm).unwrap().to_vec();
            dec.decode(&p).unwrap();
        }
        // Garbage after a valid TOC: an error or audio, never a panic.
        let _ = dec.decode(&[0x0b, 0xff, 0xff, 0xff, 0x00]);
        let first = dec.conceal().to_vec();
        let peak_early = first[..100].iter().map(|s| s.unsigned_abs()).max().unwrap();
        let peak_late = first[860..].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak_early > 2000, "early {peak_early}");
        assert!(peak_late < peak_early / 5, "late {peak_late}");
        assert!(dec.conceal().iter().all(|&s| s == 0));
    }
}

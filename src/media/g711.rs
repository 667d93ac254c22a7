//! ITU-T G.711 (PCMU, PCMA) by table lookup.
//!
//! Why tables and not FFmpeg's `pcm_mulaw`/`pcm_alaw` codecs: one 20 ms
//! frame is 160 samples, and a table lookup costs well under a nanosecond a
//! sample, while a trip through `avcodec_send_frame`/`avcodec_receive_packet`
//! costs a packet allocation and bookkeeping that dominate at this size (see
//! `benches/transcode.rs`, group `g711`, which measures both). The tables are
//! built by the same construction FFmpeg uses (`libavcodec/pcm_tablegen.h`:
//! decision levels halfway between reconstruction levels, the 16-bit input
//! reduced to 14 bits), so the output is bit-identical to FFmpeg's codecs;
//! the tests check every code word and every 16-bit input against them.
//! [`FfmpegG711`] is that reference, kept for the tests and the benchmark.

use ffmpeg_next::codec::{self, Id};
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use ffmpeg_next::{ChannelLayout, Packet, frame};

use super::MediaError;

/// The two G.711 laws: µ-law (PCMU, North America and Japan) and A-law
/// (PCMA, elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, RTP payload type 0 (PCMU).
    Mu,
    /// A-law, RTP payload type 8 (PCMA).
    A,
}

impl G711 {
    /// The static RTP payload type (RFC 3551 §6): 0 for PCMU, 8 for PCMA.
    #[must_use]
    pub const fn payload_type(self) -> u8 {
        match self {
            Self::Mu => 0,
            Self::A => 8,
        }
    }

    /// The law with this static payload type, if it is 0 or 8.
    #[must_use]
    pub const fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Mu),
            8 => Some(Self::A),
            _ => None,
        }
    }

    /// Decodes code words into linear 16-bit samples: `min(input.len(),
    /// out.len())` of them. Any byte is a valid code word.
    pub fn decode(self, input: &[u8], out: &mut [i16]) {
        let table = match self {
            Self::Mu => &ULAW_TO_LINEAR,
            Self::A => &ALAW_TO_LINEAR,
        };
        for (o, &c) in out.iter_mut().zip(input) {
            *o = table[usize::from(c)];
        }
    }

    /// Encodes linear 16-bit samples into code words: `min(input.len(),
    /// out.len())` of them.
    pub fn encode(self, input: &[i16], out: &mut [u8]) {
        let table = match self {
            Self::Mu => &LINEAR_TO_ULAW,
            Self::A => &LINEAR_TO_ALAW,
        };
        for (o, &s) in out.iter_mut().zip(input) {
            *o = table[linear_index(s)];
        }
    }

    /// The code word of digital silence (linear 0): 0xFF for µ-law, 0xD5
    /// for A-law.
    #[must_use]
    pub const fn silence(self) -> u8 {
        match self {
            Self::Mu => 0xFF,
            Self::A => 0xD5,
        }
    }

    fn codec_id(self) -> Id {
        match self {
            Self::Mu => Id::PCM_MULAW,
            Self::A => Id::PCM_ALAW,
        }
    }
}

/// Index of a sample in the 14-bit encode tables.
#[inline]
fn linear_index(s: i16) -> usize {
    // (s + 32768) >> 2 is in 0..16384.
    (usize::from(s.cast_unsigned() ^ 0x8000)) >> 2
}

const ULAW_TO_LINEAR: [i16; 256] = decode_table(G711::Mu);
const ALAW_TO_LINEAR: [i16; 256] = decode_table(G711::A);
static LINEAR_TO_ULAW: [u8; 16384] = encode_table(G711::Mu);
static LINEAR_TO_ALAW: [u8; 16384] = encode_table(G711::A);

const fn alaw_to_linear(code: u8) -> i32 {
    let a = code ^ 0x55;
    let t = (a & 0x0f) as i32;
    let seg = ((a & 0x70) >> 4) as i32;
    let t = if seg != 0 {
        (t + t + 1 + 32) << (seg + 2)
    } else {
        (t + t + 1) << 3
    };
    if a & 0x80 != 0 { t } else { -t }
}

const fn ulaw_to_linear(code: u8) -> i32 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let t = (((u & 0x0f) as i32) << 3) + BIAS;
    let t = t << ((u & 0x70) >> 4);
    if u & 0x80 != 0 { BIAS - t } else { t - BIAS }
}

/// FFmpeg's `ulaw2linear`/`alaw2linear`.
const fn to_linear(law: G711, code: u8) -> i32 {
    match law {
        G711::Mu => ulaw_to_linear(code),
        G711::A => alaw_to_linear(code),
    }
}

const fn decode_table(law: G711) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        // Both laws reconstruct within ±32256.
        table[i] = to_linear(law, i as u8) as i16;
        i += 1;
    }
    table
}

/// FFmpeg's `build_xlaw_table`: for magnitude `j` (14-bit), the code whose
/// reconstruction level is nearest; negative inputs get the sign bit.
const fn encode_table(law: G711) -> [u8; 16384] {
    let mask = law.silence();
    let mut table = [0u8; 16384];
    let mut j: usize = 1;
    table[8192] = mask;
    let mut i: u8 = 0;
    while i < 127 {
        let v1 = to_linear(law, i ^ mask);
        let v2 = to_linear(law, (i + 1) ^ mask);
        let v = ((v1 + v2 + 4) >> 3) as usize;
        while j < v {
            table[8192 - j] = i ^ (mask ^ 0x80);
            table[8192 + j] = i ^ mask;
            j += 1;
        }
        i += 1;
    }
    while j < 8192 {
        table[8192 - j] = 127 ^ (mask ^ 0x80);
        table[8192 + j] = 127 ^ mask;
        j += 1;
    }
    table[0] = table[1];
    table
}

/// G.711 through FFmpeg's `pcm_mulaw`/`pcm_alaw` codecs: the reference the
/// tables are checked against, and the alternative the benchmark measures.
/// Not used on the call path.
pub struct FfmpegG711 {
    law: G711,
    encoder: codec::encoder::audio::Encoder,
    decoder: codec::decoder::Audio,
    frame: frame::Audio,
    decoded: frame::Audio,
    packet: Packet,
}

impl std::fmt::Debug for FfmpegG711 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfmpegG711")
            .field("law", &self.law)
            .finish()
    }
}

impl FfmpegG711 {
    /// Opens FFmpeg's encoder and decoder for `law`, for frames of up to
    /// `max_samples` samples.
    pub fn new(law: G711, max_samples: usize) -> Result<Self, MediaError> {
        super::init();
        let name = match law {
            G711::Mu => "pcm_mulaw",
            G711::A => "pcm_alaw",
        };
        let enc_codec = codec::encoder::find(law.codec_id()).ok_or(MediaError::CodecMissing {
            name,
            kind: "encoder",
        })?;
        let mut enc = codec::Context::new_with_codec(enc_codec)
            .encoder()
            .audio()
            .map_err(|source| MediaError::CodecOpen {
                name,
                kind: "encoder",
                source,
            })?;
        enc.set_rate(8000);
        enc.set_format(Sample::I16(SampleType::Packed));
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_time_base((1, 8000));
        let encoder = enc
            .open_as_with(enc_codec, super::mono_options(8000))
            .map_err(|source| MediaError::CodecOpen {
                name,
                kind: "encoder",
                source,
            })?;
        let dec_codec = codec::decoder::find(law.codec_id()).ok_or(MediaError::CodecMissing {
            name,
            kind: "decoder",
        })?;
        let decoder = codec::Context::new_with_codec(dec_codec)
            .decoder()
            .open_as_with(dec_codec, super::mono_options(8000))
            .and_then(codec::decoder::Opened::audio)
            .map_err(|source| MediaError::CodecOpen {
                name,
                kind: "decoder",
                source,
            })?;
        let mut frame = frame::Audio::new(
            Sample::I16(SampleType::Packed),
            max_samples,
            ChannelLayout::MONO,
        );
        frame.set_rate(8000);
        Ok(Self {
            law,
            encoder,
            decoder,
            frame,
            decoded: frame::Audio::empty(),
            packet: Packet::empty(),
        })
    }

    /// Encodes `input` (at most `max_samples`) into `out`; returns the
    /// bytes written.
    pub fn encode(&mut self, input: &[i16], out: &mut [u8]) -> Result<usize, MediaError> {
        let name = "pcm G.711";
        let cap = self.frame.plane_mut::<i16>(0).len();
        let n = input.len().min(cap);
        self.frame.set_samples(n);
        self.frame.plane_mut::<i16>(0)[..n].copy_from_slice(&input[..n]);
        let err = |source| MediaError::Encode { name, source };
        self.encoder.send_frame(&self.frame).map_err(err)?;
        self.encoder.receive_packet(&mut self.packet).map_err(err)?;
        self.frame.set_samples(cap);
        let data = self.packet.data().unwrap_or_default();
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// Decodes `input` into `out`; returns the samples written.
    pub fn decode(&mut self, input: &[u8], out: &mut [i16]) -> Result<usize, MediaError> {
        let name = "pcm G.711";
        let err = |source| MediaError::Decode { name, source };
        self.decoder
            .send_packet(&Packet::copy(input))
            .map_err(err)?;
        self.decoder.receive_frame(&mut self.decoded).map_err(err)?;
        let pcm = self.decoded.plane::<i16>(0);
        let n = pcm.len().min(out.len());
        out[..n].copy_from_slice(&pcm[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_code_words() {
        let mut out = [0i16; 4];
        G711::Mu.decode(&[0xFF, 0x7F, 0x80, 0x00], &mut out);
        assert_eq!(out, [0, 0, 32124, -32124]);
        G711::A.decode(&[0xD5, 0x55, 0xAA, 0x2A], &mut out);
        assert_eq!(out, [8, -8, 32256, -32256]);
        let mut codes = [0u8; 3];
        G711::Mu.encode(&[0, i16::MAX, i16::MIN], &mut codes);
        assert_eq!(codes, [0xFF, 0x80, 0x00]);
        G711::A.encode(&[0, i16::MAX, i16::MIN], &mut codes);
        assert_eq!(codes, [0xD5, 0xAA, 0x2A]);
        assert_eq!(G711::Mu.payload_type(), 0);
        assert_eq!(G711::A.payload_type(), 8);
    }

    #[test]
    fn round_trip_within_quantisation_error() {
        for law in [G711::Mu, G711::A] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let mut c = [0u8];
                let mut back = [0i16];
                law.encode(&[s], &mut c);
                law.decode(&c, &mut back);
                let err = (i32::from(s) - i32::from(back[0])).abs();
                // Half a quantisation step (steps are 1/32 to 1/8 of the
                // magnitude, 16 near zero) plus the 2 bits the 14-bit
                // tables drop, or clipping above the top reconstruction
                // level (32124 / 32256).
                let mag = i32::from(s).abs();
                let bound = if mag > 31_000 {
                    mag - 31_000 + 1024
                } else {
                    mag / 16 + 12
                };
                assert!(
                    err <= bound,
                    "{law:?} {s} -> {:#x} -> {} (err {err})",
                    c[0],
                    back[0]
                );
            }
        }
    }

    #[test]
    fn decode_matches_ffmpeg_for_every_code_word() {
        for law in [G711::Mu, G711::A] {
            let mut reference = FfmpegG711::new(law, 256).expect("FFmpeg has pcm codecs");
            let codes: Vec<u8> = (0..=255).collect();
            let mut want = [0i16; 256];
            assert_eq!(reference.decode(&codes, &mut want).unwrap(), 256);
            let mut got = [0i16; 256];
            law.decode(&codes, &mut got);
            assert_eq!(got, want, "{law:?}");
        }
    }

    #[test]
    fn encode_matches_ffmpeg_for_every_input() {
        for law in [G711::Mu, G711::A] {
            let mut reference = FfmpegG711::new(law, 65536).expect("FFmpeg has pcm codecs");
            let input: Vec<i16> = (i16::MIN..=i16::MAX).collect();
            let mut want = vec![0u8; 65536];
            assert_eq!(reference.encode(&input, &mut want).unwrap(), 65536);
            let mut got = vec![0u8; 65536];
            law.encode(&input, &mut got);
            let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(
                first_diff,
                None,
                "{law:?} differs at input {:?}",
                first_diff.map(|i| input[i])
            );
        }
    }

    #[test]
    fn short_output_writes_what_fits() {
        let mut out = [0x11u8; 2];
        G711::Mu.encode(&[0; 5], &mut out);
        assert_eq!(out, [0xFF, 0xFF]);
        let mut pcm = [7i16; 3];
        G711::A.decode(&[0xD5], &mut pcm);
        assert_eq!(pcm, [8, 7, 7]);
    }
}

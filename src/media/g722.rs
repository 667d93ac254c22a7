//! [`G722Encoder`], [`G722Decoder`]: ITU-T G.722 (64 kbit/s sub-band ADPCM, 16 kHz audio) through
//! FFmpeg's `g722` codec (`adpcm_g722`), which the libavcodec the bridge
//! links already has (FFmpeg 5.1 on Debian 12): nothing new is linked or
//! installed, and no codec of our own has to be proven bit-exact.
//!
//! One 20 ms frame is 320 samples at 16 kHz and 160 bytes (two samples a
//! byte). On RTP its clock is 8000 Hz, not 16000 (RFC 3551 §4.5.2: a
//! historical error kept for compatibility), so a 20 ms packet moves the
//! timestamp by 160, like G.711.
//!
//! Cost: each call goes through `avcodec_send_*`/`avcodec_receive_*`, and
//! libavcodec allocates the packet it returns (the decoder path copies the
//! payload into a packet of its own). That is one allocation inside FFmpeg
//! per 20 ms frame and direction, the price of not writing our own G.722;
//! G.711, the common case, stays on the table path with none.

use ffmpeg_next::codec::{self, Id};
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use ffmpeg_next::{ChannelLayout, Packet, frame};

use super::MediaError;

/// G.722's audio rate.
pub const G722_RATE: u32 = 16_000;
/// Samples in 20 ms at 16 kHz.
pub const FRAME_16K: usize = 320;
/// Bytes of one 20 ms G.722 frame.
pub const G722_FRAME_BYTES: usize = 160;
/// The static RTP payload type of G.722 (RFC 3551 §6).
pub const G722_PAYLOAD_TYPE: u8 = 9;

const NAME: &str = "g722";

fn open_err(kind: &'static str) -> impl Fn(ffmpeg_next::Error) -> MediaError {
    move |source| MediaError::CodecOpen {
        name: NAME,
        kind,
        source,
    }
}

/// A G.722 encoder: 16 kHz PCM to what a caller hears.
pub struct G722Encoder {
    encoder: codec::encoder::audio::Encoder,
    frame: frame::Audio,
    packet: Packet,
    pts: i64,
}

impl std::fmt::Debug for G722Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Encoder")
            .field("pts", &self.pts)
            .finish()
    }
}

/// A G.722 decoder: what a caller says, to 16 kHz PCM.
pub struct G722Decoder {
    decoder: codec::decoder::Audio,
    decoded: frame::Audio,
}

impl std::fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Decoder").finish_non_exhaustive()
    }
}

impl G722Encoder {
    /// Opens FFmpeg's G.722 encoder (20 ms frames).
    pub fn new() -> Result<Self, MediaError> {
        super::init();
        let enc_codec = codec::encoder::find(Id::ADPCM_G722).ok_or(MediaError::CodecMissing {
            name: NAME,
            kind: "encoder",
        })?;
        let mut enc = codec::Context::new_with_codec(enc_codec)
            .encoder()
            .audio()
            .map_err(open_err("encoder"))?;
        enc.set_rate(G722_RATE as i32);
        enc.set_format(Sample::I16(SampleType::Packed));
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_time_base((1, G722_RATE as i32));
        let encoder = enc
            .open_as_with(enc_codec, super::mono_options(G722_RATE))
            .map_err(open_err("encoder"))?;
        let mut frame = frame::Audio::new(
            Sample::I16(SampleType::Packed),
            FRAME_16K,
            ChannelLayout::MONO,
        );
        frame.set_rate(G722_RATE);
        Ok(Self {
            encoder,
            frame,
            packet: Packet::empty(),
            pts: 0,
        })
    }

    /// Encodes 20 ms (exactly [`FRAME_16K`] samples at 16 kHz) into
    /// `out`'s first [`G722_FRAME_BYTES`] bytes.
    pub fn encode(
        &mut self,
        pcm: &[i16],
        out: &mut [u8; G722_FRAME_BYTES],
    ) -> Result<(), MediaError> {
        if pcm.len() != FRAME_16K {
            return Err(MediaError::FrameLength {
                expected: FRAME_16K,
                got: pcm.len(),
            });
        }
        let err = |source| MediaError::Encode { name: NAME, source };
        self.frame.plane_mut::<i16>(0)[..FRAME_16K].copy_from_slice(pcm);
        self.frame.set_pts(Some(self.pts));
        self.pts += FRAME_16K as i64;
        self.encoder.send_frame(&self.frame).map_err(err)?;
        self.encoder.receive_packet(&mut self.packet).map_err(err)?;
        let data = self.packet.data().unwrap_or_default();
        let n = data.len().min(G722_FRAME_BYTES);
        out[..n].copy_from_slice(&data[..n]);
        out[n..].fill(0);
        Ok(())
    }
}

impl G722Decoder {
    /// Opens FFmpeg's G.722 decoder.
    pub fn new() -> Result<Self, MediaError> {
        super::init();
        let dec_codec = codec::decoder::find(Id::ADPCM_G722).ok_or(MediaError::CodecMissing {
            name: NAME,
            kind: "decoder",
        })?;
        let decoder = codec::Context::new_with_codec(dec_codec)
            .decoder()
            .open_as_with(dec_codec, super::mono_options(G722_RATE))
            .and_then(codec::decoder::Opened::audio)
            .map_err(open_err("decoder"))?;
        Ok(Self {
            decoder,
            decoded: frame::Audio::empty(),
        })
    }

    /// Decodes one G.722 payload (any length; 160 bytes for 20 ms) into
    /// `out`: two samples a byte, at most `out.len()`. Returns the samples
    /// written. Any byte string is valid G.722.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, MediaError> {
        if payload.is_empty() {
            return Ok(0);
        }
        let err = |source| MediaError::Decode { name: NAME, source };
        self.decoder
            .send_packet(&Packet::copy(payload))
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
    use crate::media::tone::{Sine, goertzel_power};

    #[test]
    fn a_wideband_tone_survives_encode_and_decode() {
        let mut enc = G722Encoder::new().unwrap();
        let mut dec = G722Decoder::new().unwrap();
        // 6 kHz lies above G.711's band: only a wideband codec keeps it.
        let mut sine = Sine::new(6000.0, G722_RATE, 8000.0);
        let mut pcm = [0i16; FRAME_16K];
        let mut bytes = [0u8; G722_FRAME_BYTES];
        let mut heard = Vec::new();
        for _ in 0..25 {
            sine.fill(&mut pcm);
            enc.encode(&pcm, &mut bytes).unwrap();
            let mut out = [0i16; FRAME_16K];
            assert_eq!(dec.decode(&bytes, &mut out).unwrap(), FRAME_16K);
            heard.extend_from_slice(&out);
        }
        let tail = &heard[heard.len() - 10 * FRAME_16K..];
        let at = goertzel_power(tail, G722_RATE, 6000.0);
        let off = goertzel_power(tail, G722_RATE, 2000.0);
        assert!(at > 0.02, "6 kHz power {at}");
        assert!(off < at / 50.0, "2 kHz power {off}");
        assert!(enc.encode(&[0; 160], &mut bytes).is_err());
    }

    #[test]
    fn any_payload_decodes_without_panic() {
        let mut g722 = G722Decoder::new().unwrap();
        let mut out = [0i16; FRAME_16K];
        assert_eq!(g722.decode(&[], &mut out).unwrap(), 0);
        for junk in [&[0xffu8][..], &[0u8; 7], &[0x55; 400]] {
            let n = g722.decode(junk, &mut out).unwrap();
            assert!(n <= FRAME_16K);
        }
    }
}

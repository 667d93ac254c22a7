//! [`NarrowbandDecoder`] and [`NarrowbandEncoder`]: libopus called
//! directly, at 8 kHz.
//!
//! FFmpeg's `libopus` wrapper always opens libopus at 48 kHz (its init
//! sets `sample_rate = 48000` whatever the caller asks), so a meeting
//! stream bound for a G.711 caller used to be decoded to 960 samples and
//! then downsampled to 160 through libswresample. libopus itself decodes
//! at any of 8, 12, 16, 24 or 48 kHz (RFC 6716 §4.3: the decoder's output
//! rate is independent of the coded bandwidth), skipping the resampling
//! and the FFmpeg packet and frame plumbing. `benches/transcode.rs`
//! (`opus/decode_20ms`) measures the two side by side.
//!
//! Both also avoid a cost FFmpeg's wrappers add on every frame: perf on
//! this VM put 30-40 % of an FFmpeg-wrapped encode or decode on the
//! `cpuid` instruction in libopus's CPU detection (`opus_select_arch`,
//! which FFmpeg's per-frame path reaches), and a `cpuid` traps to the
//! hypervisor. Called directly, libopus detects the CPU once, at create.
//!
//! The encoder takes the caller's 8 kHz samples as they are, so the
//! uplink needs no 8 → 48 kHz upsampler either; the packets are the same
//! Opus (RTP clock 48 kHz, RFC 7587 §4.1).
//!
//! The library is the system's `libopus.so.0`, which FFmpeg's libavcodec
//! links already, so nothing new is installed; linked by its soname
//! because Debian ships the unversioned `libopus.so` only in `-dev`.

#![allow(unsafe_code)] // FFI module (STYLE.md 12): each block has a SAFETY note.

use std::ffi::c_int;

use super::MediaError;
use super::opus::{OpusBandwidth, OpusSettings, packet_samples};

/// libopus's opaque decoder state.
#[repr(C)]
struct OpusDecoderState {
    _private: [u8; 0],
}

#[link(name = "libopus.so.0", kind = "dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn opus_decoder_create(fs: i32, channels: c_int, error: *mut c_int) -> *mut OpusDecoderState;
    fn opus_decode(
        st: *mut OpusDecoderState,
        data: *const u8,
        len: i32,
        pcm: *mut i16,
        frame_size: c_int,
        decode_fec: c_int,
    ) -> c_int;
    fn opus_decoder_destroy(st: *mut OpusDecoderState);
    fn opus_encoder_create(
        fs: i32,
        channels: c_int,
        application: c_int,
        error: *mut c_int,
    ) -> *mut OpusEncoderState;
    fn opus_encode(
        st: *mut OpusEncoderState,
        pcm: *const i16,
        frame_size: c_int,
        data: *mut u8,
        max_data_bytes: i32,
    ) -> i32;
    fn opus_encoder_ctl(st: *mut OpusEncoderState, request: c_int, ...) -> c_int;
    fn opus_encoder_destroy(st: *mut OpusEncoderState);
}

/// libopus's opaque encoder state.
#[repr(C)]
struct OpusEncoderState {
    _private: [u8; 0],
}

/// `OPUS_APPLICATION_VOIP`.
const APPLICATION_VOIP: c_int = 2048;
/// `OPUS_SET_BITRATE_REQUEST`.
const SET_BITRATE: c_int = 4002;
/// `OPUS_SET_MAX_BANDWIDTH_REQUEST`.
const SET_MAX_BANDWIDTH: c_int = 4004;
/// `OPUS_SET_VBR_REQUEST`.
const SET_VBR: c_int = 4006;
/// `OPUS_SET_COMPLEXITY_REQUEST`.
const SET_COMPLEXITY: c_int = 4010;
/// `OPUS_SET_VBR_CONSTRAINT_REQUEST`.
const SET_VBR_CONSTRAINT: c_int = 4020;
/// `OPUS_SET_INBAND_FEC_REQUEST`.
const SET_INBAND_FEC: c_int = 4012;
/// `OPUS_SET_PACKET_LOSS_PERC_REQUEST`.
const SET_PACKET_LOSS_PERC: c_int = 4014;
/// `OPUS_BANDWIDTH_NARROWBAND` .. `OPUS_BANDWIDTH_FULLBAND`.
const BANDWIDTH_NARROWBAND: c_int = 1101;
/// The largest packet libopus writes for 20 ms (RFC 6716 §3.4: 1275
/// bytes a frame).
const MAX_PACKET_BYTES: usize = 1276;

/// The narrowband rate, what [`NarrowbandDecoder::new`] and
/// [`NarrowbandEncoder::new`] open at.
const RATE: u32 = 8000;

/// The rates libopus decodes to and encodes from (RFC 6716 §4.3).
pub const LIBOPUS_RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

/// `rate` as libopus takes it, if it is one of [`LIBOPUS_RATES`].
fn libopus_rate(rate: u32) -> Result<i32, MediaError> {
    if LIBOPUS_RATES.contains(&rate) {
        // At most 48000: fits.
        Ok(rate as i32)
    } else {
        Err(MediaError::InvalidSetting {
            name: "libopus rate",
            value: rate,
        })
    }
}
/// libopus's `OPUS_INVALID_PACKET`.
const OPUS_INVALID_PACKET: c_int = -4;

/// An Opus decoder to mono s16 at 8 kHz ([`Self::new`]) or at another of
/// libopus's rates ([`Self::with_rate`]: a wideband dial-in caller's
/// 16 or 48 kHz), with libopus's own loss concealment.
pub struct NarrowbandDecoder {
    /// Owned: created in [`Self::new`], destroyed in `drop`, never null.
    state: *mut OpusDecoderState,
    /// 120 ms at the output rate.
    pcm: Box<[i16]>,
    /// 20 ms at the output rate.
    frame: usize,
}

// SAFETY: a libopus decoder state is plain memory with no thread affinity
// or shared globals; it is only reached through `&mut self`.
unsafe impl Send for NarrowbandDecoder {}

impl std::fmt::Debug for NarrowbandDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NarrowbandDecoder").finish_non_exhaustive()
    }
}

impl NarrowbandDecoder {
    /// Opens a mono decoder at 8 kHz.
    pub fn new() -> Result<Self, MediaError> {
        Self::with_rate(RATE)
    }

    /// Opens a mono decoder at `rate`, one of [`LIBOPUS_RATES`].
    pub fn with_rate(rate: u32) -> Result<Self, MediaError> {
        let fs = libopus_rate(rate)?;
        let mut error: c_int = 0;
        // SAFETY: `error` is a valid out-pointer for the call; the rate
        // (checked above) and one channel are arguments libopus accepts.
        let state = unsafe { opus_decoder_create(fs, 1, &raw mut error) };
        if state.is_null() || error != 0 {
            if !state.is_null() {
                // SAFETY: a non-null state from opus_decoder_create, freed once.
                unsafe { opus_decoder_destroy(state) };
            }
            return Err(MediaError::LibopusOpen { code: error });
        }
        let frame = rate as usize / 50;
        Ok(Self {
            state,
            pcm: vec![0; frame * 6].into_boxed_slice(),
            frame,
        })
    }

    /// 20 ms at the decoder's rate, in samples.
    #[must_use]
    pub const fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Decodes one Opus packet: at 8 kHz, 160 samples for a 20 ms packet,
    /// from 20 (2.5 ms) to 960 (120 ms) for others (in proportion at
    /// other rates). A malformed packet is an
    /// error, never a panic; call [`Self::conceal`] for its time.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], MediaError> {
        // An empty packet would ask libopus for concealment, and a TOC
        // that does not add up is refused before libopus sees it.
        if packet_samples(packet).is_none() {
            return Err(MediaError::LibopusDecode {
                code: OPUS_INVALID_PACKET,
            });
        }
        let Ok(len) = i32::try_from(packet.len()) else {
            return Err(MediaError::LibopusDecode {
                code: OPUS_INVALID_PACKET,
            });
        };
        // SAFETY: `state` is a live decoder (struct invariant); `packet`
        // is valid for `len` bytes; `pcm` holds `pcm.len()` samples (120
        // ms), the frame_size passed, so libopus never writes past it.
        let cap = self.pcm.len();
        let n = unsafe {
            opus_decode(
                self.state,
                packet.as_ptr(),
                len,
                self.pcm.as_mut_ptr(),
                cap as c_int,
                0,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n <= cap => Ok(&self.pcm[..n]),
            _ => Err(MediaError::LibopusDecode { code: n }),
        }
    }

    /// 20 ms to play for a packet that never came or did not decode:
    /// libopus's packet loss concealment (it fades to silence over
    /// consecutive losses).
    pub fn conceal(&mut self) -> &[i16] {
        // SAFETY: `state` is live; a null packet asks for concealment of
        // `frame_size` samples (20 ms, a multiple of 2.5 ms), which `pcm`
        // holds (it holds six times that).
        let frame = self.frame;
        let n = unsafe {
            opus_decode(
                self.state,
                std::ptr::null(),
                0,
                self.pcm.as_mut_ptr(),
                frame as c_int,
                0,
            )
        };
        if usize::try_from(n).is_ok_and(|n| n == frame) {
            &self.pcm[..frame]
        } else {
            self.pcm[..frame].fill(0);
            &self.pcm[..frame]
        }
    }
}

/// An Opus encoder fed mono s16 at 8 kHz ([`Self::new`]; 20 ms = 160
/// samples a packet) or at another of libopus's rates
/// ([`Self::with_rate`]), application `voip`, as [`OpusSettings`] says
/// (its `input_rate` is ignored here: the rate is the one opened with).
pub struct NarrowbandEncoder {
    /// Owned: created in [`Self::new`], destroyed in `drop`, never null.
    state: *mut OpusEncoderState,
    packet: Box<[u8; MAX_PACKET_BYTES]>,
    settings: OpusSettings,
    /// 20 ms at the input rate.
    frame: usize,
}

// SAFETY: as for the decoder: plain memory, reached through `&mut self`.
unsafe impl Send for NarrowbandEncoder {}

impl std::fmt::Debug for NarrowbandEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NarrowbandEncoder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl NarrowbandEncoder {
    /// Opens an encoder at 8 kHz with `settings`' bitrate, complexity,
    /// VBR and bandwidth.
    pub fn new(settings: OpusSettings) -> Result<Self, MediaError> {
        Self::with_rate(settings, RATE)
    }

    /// Opens an encoder taking PCM at `rate` (one of [`LIBOPUS_RATES`]).
    pub fn with_rate(settings: OpusSettings, rate: u32) -> Result<Self, MediaError> {
        let fs = libopus_rate(rate)?;
        if settings.complexity > 10 {
            return Err(MediaError::InvalidSetting {
                name: "opus complexity",
                value: settings.complexity.into(),
            });
        }
        let Ok(bitrate) = c_int::try_from(settings.bitrate_bps) else {
            return Err(MediaError::InvalidSetting {
                name: "opus bitrate",
                value: settings.bitrate_bps,
            });
        };
        if !(6_000..=510_000).contains(&bitrate) {
            return Err(MediaError::InvalidSetting {
                name: "opus bitrate",
                value: settings.bitrate_bps,
            });
        }
        let mut error: c_int = 0;
        // SAFETY: `error` is a valid out-pointer; the rate (checked), one
        // channel and the VoIP application are arguments libopus accepts.
        let state = unsafe { opus_encoder_create(fs, 1, APPLICATION_VOIP, &raw mut error) };
        if state.is_null() || error != 0 {
            if !state.is_null() {
                // SAFETY: a non-null state from opus_encoder_create, freed once.
                unsafe { opus_encoder_destroy(state) };
            }
            return Err(MediaError::LibopusOpen { code: error });
        }
        let encoder = Self {
            state,
            packet: Box::new([0; MAX_PACKET_BYTES]),
            settings,
            frame: rate as usize / 50,
        };
        let bandwidth = BANDWIDTH_NARROWBAND
            + match settings.bandwidth {
                OpusBandwidth::Narrow => 0,
                OpusBandwidth::Medium => 1,
                OpusBandwidth::Wide => 2,
                OpusBandwidth::SuperWide => 3,
                OpusBandwidth::Full => 4,
            };
        for (request, value) in [
            (SET_BITRATE, bitrate),
            (SET_COMPLEXITY, c_int::from(settings.complexity)),
            (SET_VBR, c_int::from(settings.vbr)),
            // FFmpeg's `vbr=on`: unconstrained VBR.
            (SET_VBR_CONSTRAINT, 0),
            (SET_MAX_BANDWIDTH, bandwidth),
        ] {
            // SAFETY: `state` is live; each of these requests takes one
            // opus_int32 argument (c_int here), passed by value.
            let rc = unsafe { opus_encoder_ctl(encoder.state, request, value) };
            if rc != 0 {
                return Err(MediaError::LibopusOpen { code: rc });
            }
        }
        Ok(encoder)
    }

    /// Turns in-band FEC (RFC 6716 §2.1.7) on for a receiver that said
    /// `useinbandfec=1` (RFC 7587 §6.1), tuned for `loss_percent` of
    /// packets lost: libopus adds the redundancy only where it expects
    /// loss, so the figure must not be 0.
    pub fn set_inband_fec(&mut self, loss_percent: u8) -> Result<(), MediaError> {
        for (request, value) in [
            (SET_INBAND_FEC, 1),
            (SET_PACKET_LOSS_PERC, c_int::from(loss_percent.min(100))),
        ] {
            // SAFETY: `state` is live; both requests take one opus_int32
            // argument (c_int here), passed by value.
            let rc = unsafe { opus_encoder_ctl(self.state, request, value) };
            if rc != 0 {
                return Err(MediaError::LibopusOpen { code: rc });
            }
        }
        Ok(())
    }

    /// Whether in-band FEC is on (libopus's own view of it).
    #[cfg(test)]
    pub(crate) fn inband_fec(&mut self) -> bool {
        /// `OPUS_GET_INBAND_FEC_REQUEST`.
        const GET_INBAND_FEC: c_int = 4013;
        let mut value: i32 = 0;
        // SAFETY: `state` is live; the GET request takes one pointer to an
        // opus_int32, which `value` is and outlives the call.
        let rc = unsafe { opus_encoder_ctl(self.state, GET_INBAND_FEC, &raw mut value) };
        rc == 0 && value == 1
    }

    /// The settings the encoder was opened with.
    #[must_use]
    pub const fn settings(&self) -> OpusSettings {
        self.settings
    }

    /// Encodes 20 ms (exactly 160 samples at 8 kHz, `rate / 50` at
    /// another rate) into one Opus packet, valid until the next call.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], MediaError> {
        if pcm.len() != self.frame {
            return Err(MediaError::FrameLength {
                expected: self.frame,
                got: pcm.len(),
            });
        }
        // SAFETY: `state` is live; `pcm` holds frame_size samples;
        // `packet` holds MAX_PACKET_BYTES, the limit passed.
        let n = unsafe {
            opus_encode(
                self.state,
                pcm.as_ptr(),
                self.frame as c_int,
                self.packet.as_mut_ptr(),
                MAX_PACKET_BYTES as i32,
            )
        };
        match usize::try_from(n) {
            Ok(n) if (1..=MAX_PACKET_BYTES).contains(&n) => Ok(&self.packet[..n]),
            _ => Err(MediaError::LibopusEncode { code: n }),
        }
    }
}

impl Drop for NarrowbandEncoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from opus_encoder_create and is freed once.
        unsafe { opus_encoder_destroy(self.state) };
    }
}

impl Drop for NarrowbandDecoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from opus_decoder_create and is freed once.
        unsafe { opus_decoder_destroy(self.state) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{Sine, goertzel_power};
    use crate::media::{FRAME_8K, FRAME_48K, OPUS_RATE, OpusBandwidth, OpusEncoder, OpusSettings};

    #[test]
    fn decodes_a_fullband_talker_to_8khz() {
        let mut enc = OpusEncoder::with_settings(OpusSettings {
            bitrate_bps: 32_000,
            complexity: 5,
            bandwidth: OpusBandwidth::Full,
            ..OpusSettings::DIAL_IN
        })
        .unwrap();
        let mut dec = NarrowbandDecoder::new().unwrap();
        let mut sine = Sine::new(1000.0, OPUS_RATE, 12_000.0);
        let mut pcm = [0i16; FRAME_48K];
        let mut last = Vec::new();
        for _ in 0..25 {
            sine.fill(&mut pcm);
            let packet = enc.encode(&pcm).unwrap();
            last = dec.decode(packet).unwrap().to_vec();
        }
        assert_eq!(last.len(), FRAME_8K);
        let at = goertzel_power(&last, 8000, 1000.0);
        let off = goertzel_power(&last, 8000, 2300.0);
        // Amplitude 12000 → 0.134 for a perfect copy.
        assert!(at > 0.06, "1 kHz power {at}");
        assert!(off < at / 100.0, "2.3 kHz power {off}");
        // Concealment continues the tone, then fades.
        let first = dec.conceal().to_vec();
        assert!(goertzel_power(&first, 8000, 1000.0) > 0.01);
        let mut later = Vec::new();
        for _ in 0..20 {
            later = dec.conceal().to_vec();
        }
        assert!(goertzel_power(&later, 8000, 1000.0) < 0.001);
    }

    #[test]
    fn encodes_8khz_that_a_48khz_decoder_hears() {
        let mut enc = NarrowbandEncoder::new(OpusSettings::DIAL_IN).unwrap();
        let mut dec = crate::media::OpusDecoder::new().unwrap();
        let mut sine = Sine::new(440.0, 8000, 12_000.0);
        let mut pcm = [0i16; FRAME_8K];
        let mut last = Vec::new();
        for _ in 0..25 {
            sine.fill(&mut pcm);
            let packet = enc.encode(&pcm).unwrap();
            assert!(packet.len() < 200, "{} bytes", packet.len());
            // Narrowband SILK, 20 ms: config 1 (RFC 6716 §3.1).
            assert_eq!(packet[0] >> 3, 1);
            last = dec.decode(packet).unwrap().to_vec();
        }
        assert_eq!(last.len(), FRAME_48K);
        let at = goertzel_power(&last, OPUS_RATE, 440.0);
        assert!(at > 0.05, "440 Hz power {at}");
        assert!(goertzel_power(&last, OPUS_RATE, 1000.0) < at / 100.0);
        assert!(enc.encode(&[0; 960]).is_err());
        let bad = OpusSettings {
            complexity: 11,
            ..OpusSettings::DIAL_IN
        };
        assert!(NarrowbandEncoder::new(bad).is_err());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut dec = NarrowbandDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[3]).is_err());
        for junk in [&[0xffu8][..], &[0x0b, 0xff, 0xff, 0xff, 0], &[0xfc; 300]] {
            match dec.decode(junk) {
                Ok(pcm) => assert!(pcm.len() <= 960),
                Err(MediaError::LibopusDecode { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(dec.conceal().len(), FRAME_8K);
    }

    #[test]
    fn decodes_and_encodes_at_wideband_rates() {
        for rate in [16_000u32, 48_000] {
            let frame = rate as usize / 50;
            let settings = OpusSettings {
                bandwidth: OpusBandwidth::Full,
                bitrate_bps: 32_000,
                ..OpusSettings::DIAL_IN
            };
            let mut enc = NarrowbandEncoder::with_rate(settings, rate).unwrap();
            let mut dec = NarrowbandDecoder::with_rate(rate).unwrap();
            assert_eq!(dec.frame_samples(), frame);
            let mut sine = Sine::new(6000.0, rate, 10_000.0);
            let mut pcm = vec![0i16; frame];
            let mut last = Vec::new();
            for _ in 0..25 {
                sine.fill(&mut pcm);
                let packet = enc.encode(&pcm).unwrap();
                last = dec.decode(packet).unwrap().to_vec();
            }
            assert_eq!(last.len(), frame);
            assert!(goertzel_power(&last, rate, 6000.0) > 0.03, "{rate}");
            assert_eq!(dec.conceal().len(), frame);
            assert!(enc.encode(&pcm[..160]).is_err());
        }
        assert!(NarrowbandDecoder::with_rate(44_100).is_err());
    }
}

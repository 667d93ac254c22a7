//! [`VideoEncoder`]: one rendition's encoder, opened with its profile
//! (`hw/encoders/*.toml`) and the real-time rate control every rendition
//! gets: no B-frames, a short GOP, CBR with a VBV buffer of half a second
//! at the rendition's bitrate, key frames on demand.

use ffmpeg_next::codec::{self, encoder};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::picture;
use ffmpeg_next::{Dictionary, Packet, Rational, frame};

use super::error::TranscodeError;
use super::ffi;
use super::profile::EncoderKind;

/// The RTP clock of video (RFC 6184 §8.2.1, RFC 7741 §6.1): 90 kHz. Frames
/// carry their RTP timestamp as pts in this time base, so the rendition
/// keeps the publisher's timeline.
pub const VIDEO_CLOCK: i32 = 90_000;

/// What one rendition's encoder is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Which encoder.
    pub kind: EncoderKind,
    /// Frame width (even).
    pub width: u32,
    /// Frame height (even).
    pub height: u32,
    /// The frame rate rate control plans for.
    pub fps: u32,
    /// The target (and cap) bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Frames between scheduled key frames (more come on request).
    pub gop_frames: u32,
}

impl EncoderSettings {
    /// Defaults for `kind` at `width`x`height`: 30 fps, a 2 s GOP.
    #[must_use]
    pub const fn new(kind: EncoderKind, width: u32, height: u32, bitrate_kbps: u32) -> Self {
        Self {
            kind,
            width,
            height,
            fps: 30,
            bitrate_kbps,
            gop_frames: 60,
        }
    }
}

/// One encoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded<'a> {
    /// The bitstream (Annex B for H.264).
    pub data: &'a [u8],
    /// The RTP timestamp of the frame it codes.
    pub pts: i64,
    /// Whether it is a key frame.
    pub keyframe: bool,
}

/// A video encoder for one rendition.
pub struct VideoEncoder {
    encoder: encoder::video::Encoder,
    settings: EncoderSettings,
    format: Pixel,
    frame: frame::Video,
    /// A hardware encoder's surface pool and the surface the picture in
    /// `frame` is uploaded to before each encode.
    hw: Option<(ffi::HwFrames, frame::Video)>,
    packet: Packet,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// FFmpeg's pixel format for a profile's name.
pub(super) fn pixel(name: &str) -> Pixel {
    match name {
        "nv12" => Pixel::NV12,
        _ => Pixel::YUV420P,
    }
}

impl VideoEncoder {
    /// Opens the encoder. For a hardware encoder this is the probe: it
    /// fails when the device, the driver or the permission is missing.
    pub fn open(settings: EncoderSettings) -> Result<Self, TranscodeError> {
        let kind = settings.kind;
        let name = kind.name();
        for (what, value) in [
            ("width", settings.width),
            ("height", settings.height),
            ("fps", settings.fps),
            ("bitrate_kbps", settings.bitrate_kbps),
            ("gop_frames", settings.gop_frames),
        ] {
            if value == 0 || value > 16_384 && what != "bitrate_kbps" {
                return Err(TranscodeError::InvalidSetting { name: what, value });
            }
        }
        if !settings.width.is_multiple_of(2) || !settings.height.is_multiple_of(2) {
            return Err(TranscodeError::InvalidSetting {
                name: "width and height (even)",
                value: settings.width.max(settings.height),
            });
        }
        let profile = kind.profile();
        let format = pixel(&profile.pixel_format);
        // The VAAPI encoders take device surfaces: a pool of them on the
        // first render node, which each picture is uploaded into.
        let hw = match &profile.device {
            Some(device) => {
                let node = super::probe::render_nodes()
                    .into_iter()
                    .next()
                    .ok_or_else(|| TranscodeError::Device {
                        what: "no /dev/dri/renderD* render node".to_owned(),
                    })?;
                super::init();
                let frames =
                    ffi::HwFrames::new(device, &node, format, settings.width, settings.height)
                        .map_err(|what| TranscodeError::Device { what })?;
                Some(frames)
            }
            None => None,
        };
        super::init();
        let codec = encoder::find_by_name(name).ok_or(TranscodeError::CodecMissing {
            name,
            kind: "encoder",
        })?;
        let open_err = |source| TranscodeError::CodecOpen {
            name,
            kind: "encoder",
            source,
        };
        let mut ctx = codec::Context::new_with_codec(codec);
        ctx.set_threading(codec::threading::Config::count(1));
        if let Some(frames) = &hw {
            frames
                .attach(&mut ctx)
                .map_err(|what| TranscodeError::Device { what })?;
        }
        let mut enc = ctx.encoder().video().map_err(open_err)?;
        enc.set_width(settings.width);
        enc.set_height(settings.height);
        enc.set_format(if hw.is_some() { Pixel::VAAPI } else { format });
        enc.set_time_base(Rational::new(1, VIDEO_CLOCK));
        enc.set_frame_rate(Some(Rational::new(settings.fps as i32, 1)));
        enc.set_gop(settings.gop_frames);
        enc.set_max_b_frames(0);
        let bps = settings.bitrate_kbps as usize * 1000;
        enc.set_bit_rate(bps);
        enc.set_max_bit_rate(bps);
        let mut opts = Dictionary::new();
        for (k, v) in &profile.options {
            opts.set(k, v);
        }
        // CBR with a VBV buffer of half a second: the cap holds over any
        // 500 ms, which keeps a receiver's jitter buffer short.
        opts.set("minrate", &bps.to_string());
        opts.set("bufsize", &(bps / 2).to_string());
        opts.set("bf", "0");
        let encoder = enc.open_as_with(codec, opts).map_err(open_err)?;
        let frame = frame::Video::new(format, settings.width, settings.height);
        Ok(Self {
            encoder,
            settings,
            format,
            frame,
            hw: hw.map(|frames| (frames, frame::Video::empty())),
            packet: Packet::empty(),
        })
    }

    /// The settings it was opened with.
    #[must_use]
    pub const fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// The pixel format [`Self::frame_mut`] holds.
    #[must_use]
    pub const fn format(&self) -> Pixel {
        self.format
    }

    /// The frame the next [`Self::encode`] codes; write the picture into it
    /// (the scaler does). Its buffers are ours alone on return.
    pub fn frame_mut(&mut self) -> Result<&mut frame::Video, TranscodeError> {
        ffi::make_writable(&mut self.frame).map_err(|source| TranscodeError::Encode {
            name: self.settings.kind.name(),
            source,
        })?;
        Ok(&mut self.frame)
    }

    /// Encodes the picture in [`Self::frame_mut`] with RTP timestamp `pts`,
    /// as a key frame when `keyframe`; calls `out` for each packet the
    /// encoder gives back (real-time settings: usually exactly one).
    pub fn encode(
        &mut self,
        pts: i64,
        keyframe: bool,
        mut out: impl FnMut(Encoded<'_>),
    ) -> Result<usize, TranscodeError> {
        let name = self.settings.kind.name();
        let err = |source| TranscodeError::Encode { name, source };
        let kind = if keyframe {
            picture::Type::I
        } else {
            picture::Type::None
        };
        let input = match &mut self.hw {
            Some((frames, surface)) => {
                frames.upload(&self.frame, surface).map_err(err)?;
                surface
            }
            None => &mut self.frame,
        };
        input.set_pts(Some(pts));
        input.set_kind(kind);
        self.encoder.send_frame(input).map_err(err)?;
        let mut n = 0;
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    n += 1;
                    out(Encoded {
                        data: self.packet.data().unwrap_or_default(),
                        pts: self.packet.pts().unwrap_or(pts),
                        keyframe: self.packet.is_key(),
                    });
                }
                Err(ffmpeg_next::Error::Other { errno }) if errno == libc::EAGAIN => break,
                Err(ffmpeg_next::Error::Eof) => break,
                Err(e) => return Err(err(e)),
            }
        }
        Ok(n)
    }
}

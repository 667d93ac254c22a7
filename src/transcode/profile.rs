//! Encoder profiles: one small TOML per encoder in `hw/encoders/`, the
//! FFmpeg options that make it fit for real-time renditions. They are
//! compiled in, so a binary carries the settings it was tested with.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::video::VideoCodec;

/// The encoders the transcoder knows, by FFmpeg's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncoderKind {
    /// VAAPI H.264 through a DRM render node.
    H264Vaapi,
    /// VAAPI VP8 through a DRM render node.
    Vp8Vaapi,
    /// NVIDIA NVENC H.264.
    H264Nvenc,
    /// Intel Quick Sync H.264.
    H264Qsv,
    /// x264 (software).
    Libx264,
    /// libvpx VP8 (software).
    Libvpx,
}

impl EncoderKind {
    /// Every encoder, in the default probing order: hardware first.
    pub const ALL: [Self; 6] = [
        Self::H264Vaapi,
        Self::Vp8Vaapi,
        Self::H264Nvenc,
        Self::H264Qsv,
        Self::Libx264,
        Self::Libvpx,
    ];

    /// FFmpeg's name for it (what `[transcode] encoders` lists).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::H264Vaapi => "h264_vaapi",
            Self::Vp8Vaapi => "vp8_vaapi",
            Self::H264Nvenc => "h264_nvenc",
            Self::H264Qsv => "h264_qsv",
            Self::Libx264 => "libx264",
            Self::Libvpx => "libvpx",
        }
    }

    /// The encoder named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The codec it writes.
    #[must_use]
    pub const fn codec(self) -> VideoCodec {
        match self {
            Self::Vp8Vaapi | Self::Libvpx => VideoCodec::Vp8,
            _ => VideoCodec::H264,
        }
    }

    /// Whether it runs on the CPU.
    #[must_use]
    pub const fn is_software(self) -> bool {
        matches!(self, Self::Libx264 | Self::Libvpx)
    }

    /// Its profile as compiled in from `hw/encoders/`.
    #[must_use]
    pub fn profile(self) -> EncoderProfile {
        let text = match self {
            Self::H264Vaapi => include_str!("../../hw/encoders/h264_vaapi.toml"),
            Self::Vp8Vaapi => include_str!("../../hw/encoders/vp8_vaapi.toml"),
            Self::H264Nvenc => include_str!("../../hw/encoders/h264_nvenc.toml"),
            Self::H264Qsv => include_str!("../../hw/encoders/h264_qsv.toml"),
            Self::Libx264 => include_str!("../../hw/encoders/libx264.toml"),
            Self::Libvpx => include_str!("../../hw/encoders/libvpx.toml"),
        };
        // The profiles are part of the source tree; the unit test
        // `every_profile_parses_and_names_its_encoder` checks each.
        toml::from_str(text).expect("hw/encoders profile parses")
    }
}

impl std::fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One encoder's real-time settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderProfile {
    /// FFmpeg's encoder name.
    pub encoder: String,
    /// `H264` or `VP8`.
    pub codec: String,
    /// The pixel format it is fed (`yuv420p`, `nv12`).
    pub pixel_format: String,
    /// The hardware device type it needs a context for (`vaapi`).
    #[serde(default)]
    pub device: Option<String>,
    /// Private options, as `ffmpeg -h encoder=NAME` lists them.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_and_names_its_encoder() {
        for kind in EncoderKind::ALL {
            let p = kind.profile();
            assert_eq!(p.encoder, kind.name());
            assert_eq!(VideoCodec::from_name(&p.codec), Some(kind.codec()));
            assert!(["yuv420p", "nv12"].contains(&p.pixel_format.as_str()));
            assert_eq!(EncoderKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(EncoderKind::from_name("h265_magic"), None);
    }
}

//! [`MediaError`]: why a codec, resampler or the call bridge could not do
//! what it was asked.

/// Why a media operation failed. Each variant names the FFmpeg component
/// involved and, where FFmpeg gave one, its error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The FFmpeg build this process linked lacks a codec we need.
    #[error("{name} {kind} not available in this FFmpeg build")]
    CodecMissing {
        /// FFmpeg's codec name, e.g. `libopus`.
        name: &'static str,
        /// `encoder` or `decoder`.
        kind: &'static str,
    },
    /// Opening a codec with our settings failed.
    #[error("opening the {name} {kind} failed: {source}")]
    CodecOpen {
        /// FFmpeg's codec name.
        name: &'static str,
        /// `encoder` or `decoder`.
        kind: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// An encoder refused a frame or produced no packet for it.
    #[error("{name} encoding failed: {source}")]
    Encode {
        /// FFmpeg's codec name.
        name: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// A decoder refused a packet (for network input: a corrupt payload).
    #[error("{name} decoding failed: {source}")]
    Decode {
        /// FFmpeg's codec name.
        name: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// A decoder returned audio in a layout we did not ask for.
    #[error("{name} decoder returned {got}, expected mono s16 at 48 kHz")]
    DecodedFormat {
        /// FFmpeg's codec name.
        name: &'static str,
        /// What came back, for the log.
        got: &'static str,
    },
    /// libswresample could not be set up or failed to convert.
    #[error("libswresample {from_hz} Hz -> {to_hz} Hz failed: {source}")]
    Resample {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// The input frame has the wrong number of samples.
    #[error("frame of {got} samples, expected {expected}")]
    FrameLength {
        /// Samples the operation takes.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// libopus refused to open an encoder or decoder, or a setting.
    #[error("opening libopus at 8 kHz failed (libopus error {code})")]
    LibopusOpen {
        /// libopus's negative error code.
        code: i32,
    },
    /// libopus refused a packet (for network input: a corrupt payload).
    #[error("libopus decoding failed (libopus error {code})")]
    LibopusDecode {
        /// libopus's negative error code.
        code: i32,
    },
    /// libopus refused to encode a frame.
    #[error("libopus encoding failed (libopus error {code})")]
    LibopusEncode {
        /// libopus's negative error code.
        code: i32,
    },
    /// A setting out of range (complexity above 10, a zero bitrate, …).
    #[error("invalid setting {name} = {value}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// The value given.
        value: u32,
    },
}

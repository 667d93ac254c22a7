//! [`TranscodeError`]: why a video decoder, scaler or encoder could not do
//! what the transcoder asked.

/// Why a video codec operation failed; each names the FFmpeg component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// The FFmpeg build lacks the codec.
    #[error("{name} {kind} not available in this FFmpeg build")]
    CodecMissing {
        /// FFmpeg's codec name.
        name: &'static str,
        /// `encoder` or `decoder`.
        kind: &'static str,
    },
    /// Opening the codec failed (for a hardware encoder: no device, no
    /// driver, no permission on the render node).
    #[error("opening the {name} {kind} failed: {source}")]
    CodecOpen {
        /// FFmpeg's codec name.
        name: &'static str,
        /// `encoder` or `decoder`.
        kind: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// The encoder refused a frame.
    #[error("{name} encoding failed: {source}")]
    Encode {
        /// FFmpeg's codec name.
        name: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// The decoder refused a frame (network input: a corrupt bitstream).
    #[error("{name} decoding failed: {source}")]
    Decode {
        /// FFmpeg's codec name.
        name: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// libswscale could not convert between the two sizes or formats.
    #[error("libswscale {from_w}x{from_h} -> {to_w}x{to_h} failed: {source}")]
    Scale {
        /// Source width.
        from_w: u32,
        /// Source height.
        from_h: u32,
        /// Target width.
        to_w: u32,
        /// Target height.
        to_h: u32,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// The encoder opened but gave no packet for its first frame.
    #[error("{name} produced no packet for a test frame")]
    NoOutput {
        /// FFmpeg's codec name.
        name: &'static str,
    },
    /// A setting out of range (a zero size, a zero bitrate, ...).
    #[error("invalid setting {name} = {value}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// The value given.
        value: u32,
    },
    /// A hardware device could not be opened.
    #[error("{what}")]
    Device {
        /// What went wrong, for the operator.
        what: String,
    },
}

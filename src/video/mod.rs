//! Video for the transcoder (DESIGN.md, "Transcoding"): RTP payload
//! formats and the stream plumbing around the codecs.
//!
//! - [`vp8`]: VP8 payload descriptor, depacketizer and packetizer
//!   (RFC 7741);
//! - [`h264`]: H.264 packetization mode 1: single NAL unit, STAP-A, FU-A
//!   (RFC 6184), Annex B in and out;
//! - [`dimensions`]: a source's picture height from a key frame's VP8
//!   header or an H.264 SPS;
//! - [`jitter`]: a per-stream jitter buffer that reorders, hands out whole
//!   frames, NACKs holes and waits for a key frame after loss it cannot
//!   repair (asking for one).
//!
//! All of it is sans-IO and takes network input without panicking. The
//! payload formats are written here rather than taken from webrtc-rs'
//! `rtp` crate: its depacketizers return a fresh `Bytes` per packet, keep
//! no frame-level state to report a broken FU-A or a VP8 frame whose
//! first packet is missing, and bring its `bytes`/async stack in; these
//! are ~300 lines each against the RFCs, write into the caller's reused
//! buffer, and are fuzzed (`fuzz/fuzz_targets/video_depacketize.rs`).

pub mod dimensions;
pub mod error;
pub mod h264;
pub mod jitter;
pub mod vp8;

pub use dimensions::picture_height;
pub use error::{DepacketizeError, PacketizeError};
pub use h264::{AnnexBNals, H264Depacketizer, H264Packetizer};
pub use jitter::{Frame, JitterBuffer, JitterConfig, JitterOutput, JitterStats};
pub use vp8::{Vp8Depacketizer, Vp8Descriptor, Vp8Packetizer};

/// The largest frame reassembled: 4 MiB, far above any real-time frame
/// (a 4K intra frame at high quality is a few hundred kB), so a stream of
/// bogus packets cannot grow a buffer without bound.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// The video codecs the transcoder reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (RFC 7741), 90 kHz.
    Vp8,
    /// H.264 (RFC 6184), packetization mode 1, 90 kHz.
    H264,
}

impl VideoCodec {
    /// The codec's name as SDP and the API write it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vp8 => "VP8",
            Self::H264 => "H264",
        }
    }

    /// The codec named `name` (case-insensitive, as SDP's encoding names).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("VP8") {
            Some(Self::Vp8)
        } else if name.eq_ignore_ascii_case("H264") {
            Some(Self::H264)
        } else {
            None
        }
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload format's frame reassembly, driven by [`JitterBuffer`]: for
/// each complete frame, [`Depacketizer::begin_frame`], then
/// [`Depacketizer::append`] for each packet in order, then
/// [`Depacketizer::end_frame`].
pub trait Depacketizer {
    /// Whether this payload is the first packet of a key frame (what the
    /// jitter buffer looks for after loss).
    fn starts_keyframe(payload: &[u8]) -> bool;

    /// Starts a new frame, forgetting any state of the last one.
    fn begin_frame(&mut self);

    /// Appends one packet's payload to the frame being built in `out`.
    fn append(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), DepacketizeError>;

    /// Ends the frame: whether it is a key frame, or why it is broken.
    fn end_frame(&mut self) -> Result<bool, DepacketizeError>;
}

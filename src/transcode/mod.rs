//! The transcoder (DESIGN.md, "Transcoding"): renditions of a source video
//! stream for receivers that cannot take it as it is (another codec, a
//! smaller size, a lower bitrate).
//!
//! The codec layer, through FFmpeg (`ffmpeg-next`):
//! - [`VideoDecoder`]: H.264 or VP8 frames (from [`crate::video`]'s
//!   jitter buffer) to pictures;
//! - [`Scaler`]: libswscale to the rendition's size ([`rendition_size`]);
//! - [`VideoEncoder`]: the rendition's encoder, opened from its profile in
//!   `hw/encoders/` with real-time rate control, key frames on demand;
//! - [`EncoderProbe`]: which encoders this box can open, in the operator's
//!   order, and why the others cannot (`sluice hw`).
//!
//! [`VideoPrefs`] is what a receiver asked for (`receive` on admission);
//! [`VideoPrefs::delivery`] decides per source stream: forward it, or
//! a [`RenditionSpec`], the key one transcode is shared by. A
//! [`Rendition`] is one running transcode: source RTP in, rendition RTP
//! out, receivers' key frame requests answered by [`KeyframeLimiter`],
//! frames shed by [`Shedding`] when the transcode is behind their arrival.
//! [`SessionTable`] decides which renditions run: one per (source, spec),
//! shared, lingering after the last receiver, `max_sessions` at most.
//!
//! The transcoder is a participant (DESIGN.md, "Media services are
//! participants"): the registry (`control/registry/transcodes.rs`) admits
//! one leg per running transcode and tells the [`TranscodeService`]'s
//! media threads to run a [`TranscoderLeg`] on it: SRTP to and from the
//! relay's media port like any endpoint, never code on a packet worker.
//! [`TranscodeCounters`] is what `/metrics` shows of them.

mod counters;
mod decoder;
mod encoder;
mod error;
mod ffi;
mod keyframes;
mod participant;
mod prefs;
mod probe;
mod profile;
mod rendition;
mod scale;
mod service;
mod sessions;
mod shedding;

pub use counters::{Refusal as TranscodeRefusal, TranscodeCounters};
pub use decoder::VideoDecoder;
pub use encoder::{Encoded, EncoderSettings, VIDEO_CLOCK, VideoEncoder};
pub use error::TranscodeError;
pub use keyframes::{KEYFRAME_INTERVAL, KeyframeLimiter};
pub use participant::{LegError, TranscodeJob, TranscoderLeg};
pub use prefs::{
    CodecChoice, DEFAULT_RENDITION_KBPS, Delivery, PrefsError, RenditionSpec, SourceVideo,
    VideoPrefs,
};
pub use probe::{EncoderProbe, ProbeResult, render_nodes};
pub use profile::{EncoderKind, EncoderProfile};
pub use rendition::{RENDITION_MTU, Rendition, RenditionOutput, RenditionPacket, RenditionStats};
pub use scale::{Scaler, rendition_size};
pub use service::{TranscodeCommand, TranscodeSender, TranscodeService};
pub use sessions::{SessionKey, SessionTable, Subscription};
pub use shedding::{
    FrameFate, RESYNC_AFTER, RESYNC_BEHIND, RESYNC_INTERVAL, SKIP_BEHIND, Shedding,
};

/// FFmpeg's one-time set-up, shared with the audio codecs.
fn init() {
    crate::media::init();
}

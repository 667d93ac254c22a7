//! The dial-in media bridge's codec and mixing core (DESIGN.md, "Dial-in"):
//! G.711 (PCMU/PCMA) 8 kHz for the phone side, Opus 48 kHz for the
//! meeting, through FFmpeg (ffmpeg-next over the system's libavcodec and
//! libswresample).
//!
//! Sans-IO like the rest of the library: nothing here reads the clock or
//! touches a socket. The media pool owns one [`CallBridge`] per call and
//! drives it: [`CallBridge::push_caller`] and [`CallBridge::push_meeting`]
//! as packets arrive, [`CallBridge::tick`] every 20 ms.
//!
//! The pieces, usable alone:
//! - [`G711`]: ITU-T G.711 by table (why tables: see [`g711`]).
//! - [`OpusEncoder`], [`OpusDecoder`]: FFmpeg's `libopus`, mono s16 48 kHz,
//!   20 ms frames, application `voip`, settings in [`OpusSettings`].
//! - [`Upsampler`], [`Downsampler`]: libswresample 8 ↔ 48 kHz, exactly one
//!   frame out per frame in at a constant delay.
//! - [`dtmf`]: RFC 4733 telephone events; [`tone`]: Goertzel and a sine;
//!   [`level`]: RFC 6464 audio levels; [`Mixer`]: the loudest-speakers mix.
//!
//! Every function fed network bytes (G.711 of any length, Opus payloads,
//! telephone events) returns an error or copes; none panics.

mod bridge;
pub mod dtmf;
mod error;
pub mod g711;
pub mod level;
mod mixer;
mod opus;
mod resample;
pub mod tone;

use std::sync::Once;

pub use bridge::{
    BridgeFrame, BridgeStats, CALLER_FIFO_SAMPLES, CallBridge, MAX_OPUS_PAYLOAD, MAX_STREAMS,
    STREAM_IDLE_TICKS, STREAM_QUEUE_PACKETS,
};
pub use error::MediaError;
pub use g711::{FfmpegG711, G711};
pub use mixer::{DEFAULT_HYSTERESIS_DB, MAX_SPEAKERS, Mixer};
pub use opus::{
    MAX_PACKET_SAMPLES, OPUS_RATE, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings,
    packet_samples,
};
pub use resample::{Downsampler, Upsampler};

/// Samples in 20 ms at 8 kHz (one G.711 frame).
pub const FRAME_8K: usize = 160;
/// Samples in 20 ms at 48 kHz (one Opus frame).
pub const FRAME_48K: usize = 960;

/// Initialises FFmpeg once per process and quiets its logging to errors
/// (a corrupt packet from the network is ours to count, not FFmpeg's to
/// print). Every constructor here calls it.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // init() only registers error strings on FFmpeg >= 5; it cannot
        // fail there.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

use opus::mono_options;

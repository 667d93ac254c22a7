//! The dial-in media bridge's codec and mixing core (DESIGN.md, "Dial-in"):
//! G.711 (PCMU/PCMA) 8 kHz for the phone side, Opus 48 kHz for the
//! meeting, through FFmpeg (ffmpeg-next over the system's libavcodec and
//! libswresample).
//!
//! Sans-IO like the rest of the library: nothing here reads the clock or
//! touches a socket. A call's work is split in two:
//! - [`CallerUplink`], one per call: the caller's G.711 into a FIFO, then
//!   each 20 ms encoded to Opus straight from 8 kHz, or held back by silence
//!   suppression ([`SilenceGate`], DTX-style);
//! - [`MeetingMix`], one per meeting and media thread, shared by the calls
//!   of that meeting there: the meeting's Opus packets (deduplicated
//!   across the calls' legs), the loudest speakers decoded once each, and
//!   each caller's G.711 frame (the common mix, encoded once per law, or a
//!   speaker's own N-1 mix).
//!
//! [`CallBridge`] puts one of each together for a call on its own (tests,
//! fuzzing, benchmarks): [`CallBridge::push_caller`] and
//! [`CallBridge::push_meeting`] as packets arrive, [`CallBridge::tick`]
//! every 20 ms.
//!
//! The pieces, usable alone:
//! - [`G711`]: ITU-T G.711 by table (why tables: see [`g711`]).
//! - [`G722Encoder`], [`G722Decoder`]: G.722 (16 kHz) through FFmpeg's
//!   `g722`; [`CallerCodec`] names a caller's codec (G.711, G.722, Opus)
//!   and [`CallerDecoder`]/[`CallerEncoder`] run it at its own rate, for a
//!   mix at that rate ([`MeetingMix::with_rate`]): a wideband caller
//!   never goes through 8 kHz.
//! - [`OpusEncoder`], [`OpusDecoder`]: FFmpeg's `libopus`, mono s16 48 kHz,
//!   20 ms frames, application `voip`, settings in [`OpusSettings`].
//! - [`NarrowbandDecoder`], [`NarrowbandEncoder`]: libopus called directly
//!   at 8 kHz (FFmpeg's wrapper only decodes at 48 kHz, and pays a CPU
//!   detection per frame), what the meeting mix and the uplink use.
//! - [`Upsampler`], [`Downsampler`]: libswresample 8 ↔ 48 kHz, exactly one
//!   frame out per frame in at a constant delay.
//! - [`dtmf`]: RFC 4733 telephone events; [`tone`]: Goertzel and a sine;
//!   [`level`]: RFC 6464 audio levels; [`Mixer`]: the loudest-speakers mix.
//!
//! Every function fed network bytes (G.711 of any length, Opus payloads,
//! telephone events) returns an error or copes; none panics.

mod bridge;
mod caller_codec;
pub mod dtmf;
mod error;
pub mod g711;
mod g722;
pub mod level;
mod libopus;
mod meeting_mix;
mod mixer;
mod opus;
mod resample;
mod silence;
mod stream;
pub mod tone;
mod uplink;

use std::sync::Once;

pub use bridge::{BridgeFrame, BridgeStats, CallBridge};
pub use caller_codec::{
    CallerCodec, CallerDecoder, CallerEncoder, MAX_CALLER_FRAME, MAX_CALLER_PAYLOAD_SAMPLES,
    stretch_8k,
};
pub use error::MediaError;
pub use g711::{FfmpegG711, G711};
pub use g722::{
    FRAME_16K, G722_FRAME_BYTES, G722_PAYLOAD_TYPE, G722_RATE, G722Decoder, G722Encoder,
};
pub use libopus::{LIBOPUS_RATES, NarrowbandDecoder, NarrowbandEncoder};
pub use meeting_mix::{MAX_OPUS_PAYLOAD, MAX_STREAMS, MeetingMix, MixStats, STREAM_IDLE_TICKS};
pub use mixer::{DEFAULT_HYSTERESIS_DB, MAX_RANKED, MAX_SPEAKERS, Mixer};
pub use opus::{
    MAX_PACKET_SAMPLES, OPUS_RATE, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings,
    packet_samples,
};
pub use resample::{Downsampler, Upsampler};
pub use silence::{Gate, SilenceGate, SilenceSuppression};
pub use stream::STREAM_QUEUE_PACKETS;
pub use uplink::{CALLER_FIFO_SAMPLES, CallerUplink, UplinkFrame, UplinkSettings, UplinkStats};

/// Samples in 20 ms at 8 kHz (one G.711 frame).
pub const FRAME_8K: usize = 160;
/// Samples in 20 ms at 48 kHz (one Opus frame).
pub const FRAME_48K: usize = 960;

/// Initialises FFmpeg once per process and quiets its logging to errors
/// (a corrupt packet from the network is ours to count, not FFmpeg's to
/// print). Every constructor here calls it.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // init() only registers error strings on FFmpeg >= 5; it cannot
        // fail there.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

use opus::mono_options;

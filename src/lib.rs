//! sluice: a Linux media relay appliance.
//!
//! The library holds the sans-IO protocol core the daemon is built from:
//! [`rtp`] (RTP/RTCP views and builders, RFC 3550), [`srtp`] (SRTP/SRTCP
//! contexts, RFC 3711 and RFC 7714) and [`crypto`] (the batch AEAD backend
//! trait and its CPU implementations). None of it touches a socket or reads
//! the clock; the caller feeds bytes and owns every buffer. [`policy`] holds
//! every admission decision, equally free of I/O, and [`media`] the dial-in
//! bridge's codecs and mixing (G.711 ↔ Opus through FFmpeg), driven a 20 ms
//! tick at a time.
//!
//! At the edges: [`config`] reads the daemon's TOML file, [`logging`]
//! formats its log for a terminal, a file, the journal or a log shipper, [`control`]
//! serves the HTTP control API that publishes routing snapshots to the
//! packet workers ([`relay`]), and [`net`] is the data plane's I/O shell
//! (the worker threads and their io_uring or recvmmsg sockets) that drives
//! them. [`daemon`] wires all of it into the running relay; [`ctl`] is the
//! operator's client of the control API (`sluice ctl`). [`sip`] is the
//! sans-IO SIP user agent server and SDP offer/answer for dial-in callers.
//! [`webrtc`] turns a browser's ICE-lite + DTLS-SRTP session (the
//! `sluice-webrtc` crate) into an ordinary leg.

pub mod cluster;
pub mod config;
pub mod control;
pub mod crypto;
pub mod ctl;
pub mod daemon;
pub mod dialin;
pub mod dialout;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod relay;
pub mod reload;
pub mod rtp;
pub mod sip;
pub mod srtp;
pub mod transcode;
pub mod video;
pub mod webrtc;

#[cfg(test)]
mod test_util;

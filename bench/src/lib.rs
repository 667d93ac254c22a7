//! `sluice-bench`: how many streams of which kind this box relays, at what
//! loss and latency, for sluice next to the loopback ceiling and rtpengine.
//! It reuses sluice's RTP/SRTP code, never the daemon's process.

pub mod rtpengine;
pub mod target;

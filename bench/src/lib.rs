//! `sluice-bench`: how many streams of which kind this box relays, at what
//! loss and latency, for sluice next to the loopback ceiling and rtpengine.
//! It reuses sluice's RTP/SRTP code, never the daemon's process.
//!
//! A [`scenario::Scenario`] describes the load; [`engine::run`] drives it
//! through a [`target::Target`] with real SRTP endpoints and returns a
//! [`measure::Measurement`]; [`capacity`] searches for the largest load
//! that passes; [`report`] writes Markdown, JSON, an SVG plot and an HTML
//! page with the plot inline; [`progress`] says on stderr how far a run is.

pub mod capacity;
pub mod cluster;
pub mod dialin;
pub mod engine;
pub mod histogram;
pub mod http;
pub mod measure;
pub mod payload;
pub mod pin;
pub mod procstat;
pub mod progress;
pub mod report;
pub mod rtpengine;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod targets;
pub mod transcode;

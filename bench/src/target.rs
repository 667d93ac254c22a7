//! A relay under test, as the load engine drives it: sluice, rtpengine, or
//! no relay at all (the loopback ceiling). A target admits one meeting at a
//! time and says, per participant, where to send and with which key, and
//! which keys protect what arrives.

use std::net::SocketAddr;

use sluice::srtp::{MasterKey, SrtpProfile};

/// What a published stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Opus-sized 20 ms packets.
    Audio,
    /// ~1200-byte packets, bursty per frame.
    Video,
}

/// One stream a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Its SSRC (unique across the whole run).
    pub ssrc: u32,
    /// Audio or video.
    pub kind: StreamKind,
    /// RTP payload type.
    pub payload_type: u8,
}

/// One meeting to admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingSpec {
    /// Position in the run (for ids and names).
    pub index: usize,
    /// E2EE (payload opaque to the relay) or standard.
    pub e2ee: bool,
    /// SRTP profile of every leg.
    pub profile: SrtpProfile,
    /// Participants that publish, each with its streams.
    pub publishers: Vec<Vec<StreamSpec>>,
    /// Participants that only receive.
    pub subscribers: usize,
}

impl MeetingSpec {
    /// Publishers and subscribers together.
    pub fn participants(&self) -> usize {
        self.publishers.len() + self.subscribers
    }
}

/// One relay address with the key that protects traffic on it (`None`:
/// plain RTP, for targets that cannot do the profile).
#[derive(Debug, Clone)]
pub struct Path {
    /// The relay's address for this path.
    pub relay: SocketAddr,
    /// SDES key material for this path and direction.
    pub key: Option<MasterKey>,
}

/// How one participant reaches the relay.
#[derive(Debug, Clone, Default)]
pub struct LegPlan {
    /// Every packet the participant publishes goes to each of these (one
    /// for an SFU-style relay; one per subscriber for a relay that only
    /// bridges pairs, such as rtpengine in offer/answer mode).
    pub sends: Vec<Path>,
    /// What arrives, by source address (a single entry matches any source).
    pub receives: Vec<Path>,
    /// The SSRC the participant reports under in RTCP when it publishes
    /// nothing (sluice's `media.rtcp_ssrc`); `None`: any SSRC of its own.
    pub rtcp_ssrc: Option<u32>,
    /// Whether what this participant receives crosses a relay-to-relay
    /// hop (a cluster target's viewer on another node than the
    /// publisher's): its latency is also tallied apart.
    pub behind_hop: bool,
}

/// Why a target could not be set up or admit a meeting.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The relay program is not installed or would not start.
    #[error("{target} could not start: {reason}")]
    Start {
        /// The target's name.
        target: &'static str,
        /// One sentence saying why and what to do.
        reason: String,
    },
    /// The relay refused or failed a control request.
    #[error("{target} refused to admit meeting {meeting}: {reason}")]
    Admit {
        /// The target's name.
        target: &'static str,
        /// The meeting's index.
        meeting: usize,
        /// What it answered.
        reason: String,
    },
}

/// A relay under test.
pub trait Target: Send {
    /// Short name for tables: `ceiling`, `sluice`, `rtpengine`.
    fn name(&self) -> &'static str;

    /// One line saying exactly what runs (version, mode, crypto), for the
    /// report.
    fn describe(&self) -> String;

    /// Admits `meeting`, whose participants use the local UDP addresses
    /// `participants` (publishers first, in `meeting.publishers` order).
    /// Returns one plan per participant, in the same order.
    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError>;

    /// The relay's process id, for CPU and RSS sampling (`None`: no
    /// relay process, e.g. the loopback ceiling).
    fn pid(&self) -> Option<u32>;

    /// How many participants the relay has latched so far (`None`: the
    /// target has no latching to wait for). The load engine sends every
    /// participant's SRTCP receiver report, then polls this until all are
    /// latched, resending the reports meanwhile.
    fn latched(&mut self) -> Option<usize> {
        None
    }
}

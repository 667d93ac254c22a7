//! The routing snapshot: what the control plane publishes and the packet
//! workers read. Immutable once published; workers load the current one
//! once per receive batch (lock-free, `arc_swap`), so a participant or
//! meeting deleted through the API stops being forwarded on the next batch.
//!
//! A few pieces of *live* state are shared by all workers and survive
//! republication (the same `Arc` is carried into the next snapshot):
//! - [`Latch`]: a leg's remote address, learnt from its first packet that
//!   authenticates (symmetric RTP); any worker may need it to send to the
//!   leg, while only the worker that received the packet sets it.
//! - [`LegRoute::next_srtcp_index`]: SRTCP indices for packets the relay
//!   sends to the leg. All workers protect RTCP to the leg under the one
//!   relay→client key, so indices come from one atomic counter and a GCM
//!   nonce is never used twice even when two workers send.
//! - [`LegRoute::highest_srtcp_index`], likewise for SRTCP from the leg
//!   (receive-only participants latch with SRTCP receiver reports).
//! - [`StreamRoute::highest_index`]: the highest SRTP index accepted for the
//!   stream on any worker. A packet moves a latch only if it is newer than
//!   that, so a captured packet replayed from another address (and thus
//!   hashed to another worker, whose replay window has never seen it)
//!   cannot hijack the leg.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::srtp::MasterKey;

/// A leg (one participant's transport), numbered by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// A meeting, numbered by the control plane (API ids are strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingIdx(pub u64);

/// The two kinds of meeting (DESIGN.md, "the security model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeetingMode {
    /// Payloads are SFrame ciphertext: forwarded byte for byte, never decoded.
    E2ee,
    /// Payloads are plain media the relay may decode, mix and transcode.
    Standard,
}

impl MeetingMode {
    /// The API and metrics label: `e2ee` or `standard`.
    pub fn name(self) -> &'static str {
        match self {
            Self::E2ee => "e2ee",
            Self::Standard => "standard",
        }
    }
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// A leg's remote addresses, set by authenticated packets: where its RTP
/// goes and, for a peer without rtcp-mux (RFC 5761) that sends RTCP from
/// another port, where its RTCP goes. The rules are in `latching.rs`.
#[derive(Debug, Default)]
pub struct Latch {
    rtp: ArcSwapOption<SocketAddr>,
    /// Set only when the leg's RTCP comes from elsewhere than its RTP.
    rtcp: ArcSwapOption<SocketAddr>,
    /// Whether `rtp` was learnt from an RTP packet (else from RTCP: a
    /// receive-only participant).
    rtp_from_rtp: AtomicBool,
}

impl Latch {
    /// The latched RTP address, if any packet authenticated yet.
    pub fn get(&self) -> Option<SocketAddr> {
        self.rtp.load().as_deref().copied()
    }

    /// Moves the RTP latch to `addr`; returns whether it changed.
    pub fn set(&self, addr: SocketAddr) -> bool {
        if self.get() == Some(addr) {
            return false;
        }
        self.rtp.store(Some(Arc::new(addr)));
        true
    }

    /// Where RTCP for the leg goes: its RTCP address when it has one of
    /// its own, else its RTP address (rtcp-mux).
    pub fn rtcp(&self) -> Option<SocketAddr> {
        self.rtcp.load().as_deref().copied().or_else(|| self.get())
    }

    /// Moves the RTCP latch to `addr`; returns whether it changed.
    pub fn set_rtcp(&self, addr: SocketAddr) -> bool {
        if self.rtcp.load().as_deref() == Some(&addr) {
            return false;
        }
        self.rtcp.store(Some(Arc::new(addr)));
        true
    }

    /// Whether the RTP address came from an RTP packet.
    pub fn rtp_from_rtp(&self) -> bool {
        self.rtp_from_rtp.load(Ordering::Relaxed)
    }

    /// Notes that the RTP address came from an RTP packet.
    pub fn mark_rtp_from_rtp(&self) {
        if !self.rtp_from_rtp() {
            self.rtp_from_rtp.store(true, Ordering::Relaxed);
        }
    }
}

/// One participant's leg as the data plane sees it.
#[derive(Debug)]
pub struct LegRoute {
    /// The leg.
    pub id: LegId,
    /// Its meeting.
    pub meeting: MeetingIdx,
    /// The meeting's mode (copied here so the hot path needs one lookup).
    pub mode: MeetingMode,
    /// Key of what the participant sends (the relay unprotects with it).
    pub client_to_relay: MasterKey,
    /// Key of what the relay sends the participant (the relay protects with it).
    pub relay_to_client: MasterKey,
    /// Where the participant is, once known.
    pub latch: Arc<Latch>,
    /// Next SRTCP index for RTCP the relay sends to this leg (see module doc).
    pub next_srtcp_index: Arc<AtomicU32>,
    /// Highest SRTCP index accepted from this leg on any worker, plus one
    /// (0: none yet). An SRTCP packet moves the latch only if it is newer.
    pub highest_srtcp_index: Arc<AtomicU64>,
}

impl LegRoute {
    /// Draws the next SRTCP index for a packet to this leg.
    pub fn take_srtcp_index(&self) -> u32 {
        self.next_srtcp_index.fetch_add(1, Ordering::Relaxed)
    }
}

/// A published stream (one SSRC) and who publishes it.
#[derive(Debug)]
pub struct StreamRoute {
    /// The SSRC.
    pub ssrc: u32,
    /// The publishing leg.
    pub leg: LegId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The RTP payload type it uses.
    pub payload_type: u8,
    /// Highest SRTP index accepted on any worker (see module doc); starts at 0.
    pub highest_index: Arc<AtomicU64>,
}

/// Everything a worker needs to route, at one moment.
#[derive(Debug, Default)]
pub struct RoutingSnapshot {
    /// Bumped on every publication; workers prune per-leg state on change.
    pub generation: u64,
    /// Every leg.
    pub legs: HashMap<LegId, Arc<LegRoute>>,
    /// Every published stream by SSRC (SSRCs are unique per node: the API
    /// refuses a duplicate).
    pub streams: HashMap<u32, Arc<StreamRoute>>,
    /// Each meeting's legs, in admission order: the fan-out set.
    pub meetings: HashMap<MeetingIdx, Vec<LegId>>,
    /// The SSRC each leg puts in the sender field of its RTCP (the API's
    /// `rtcp_ssrc`), for legs that have one: a receive-only participant's
    /// first SRTCP packet finds its leg here with one lookup. Unique per
    /// node together with `streams` (the API refuses a clash), so one SSRC
    /// names one leg.
    pub rtcp_ssrcs: HashMap<u32, LegId>,
    /// Cluster mode: the fan-out sets of what came from other nodes (local
    /// legs only: split horizon), each naming the meeting it belongs to,
    /// so RTCP feedback still finds publishers across the two sets.
    pub relayed: HashMap<MeetingIdx, MeetingIdx>,
    /// Streams that go to a chosen set of legs instead of the whole
    /// meeting (DESIGN.md, "Transcoding"): a rendition goes only to the
    /// receivers that need it; its source goes to the transcoders that
    /// make renditions of it and to the receivers that take it as it is,
    /// not to those that get a rendition instead. Empty unless a meeting
    /// has a transcode running.
    pub audiences: HashMap<u32, Arc<[LegId]>>,
    /// The legs of media services (transcoders): outside every meeting's
    /// fan-out set, receiving only what `audiences` names; the receivers'
    /// REMB about their streams reaches them (it stops at the relay for
    /// endpoints).
    pub services: HashSet<LegId>,
}

impl RoutingSnapshot {
    /// The leg an RTCP packet whose sender field is `ssrc` claims to come
    /// from: the publisher of that stream, else the leg that registered it
    /// as its `rtcp_ssrc`.
    pub fn rtcp_sender(&self, ssrc: u32) -> Option<LegId> {
        match self.streams.get(&ssrc) {
            Some(stream) => Some(stream.leg),
            None => self.rtcp_ssrcs.get(&ssrc).copied(),
        }
    }

    /// The meeting `idx` belongs to: itself, or the meeting whose relayed
    /// fan-out set it is.
    pub fn meeting_of(&self, idx: MeetingIdx) -> MeetingIdx {
        if self.relayed.is_empty() {
            return idx;
        }
        self.relayed.get(&idx).copied().unwrap_or(idx)
    }
}

/// Where the current snapshot lives: written by the control plane, read by
/// every worker.
pub type SnapshotCell = Arc<ArcSwap<RoutingSnapshot>>;

/// A cell holding an empty snapshot.
pub fn empty_cell() -> SnapshotCell {
    Arc::new(ArcSwap::from_pointee(RoutingSnapshot::default()))
}

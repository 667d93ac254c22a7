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
//! - [`SlotMap::indices`]: the SRTP send index of each WHEP slot toward
//!   its viewer, claimed by whichever worker carries the slot's source.
//!
//! Snapshots scale with what changed, not with the node: the maps are
//! persistent (`im`'s hash array mapped tries), so the control plane keeps
//! one working copy, changes the few entries a join, leave or stream
//! touches (O(log n) each) and publishes a clone that shares every other
//! node of the trie with the snapshot before it. A meeting's fan-out set is
//! one [`Members`] list, replaced whole when its meeting changes, so a
//! worker tells a stale fan-out plan from a current one by comparing
//! pointers, and re-plans only the meetings that changed.

use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::slot_feed::SourceFeed;
use super::{Path, PtMap, SourceHeight};
use crate::srtp::{MasterKey, SharedSendIndex};

/// Fibonacci hashing of a control-plane id ([`LegId`], [`MeetingIdx`]):
/// one multiply per lookup instead of SipHash. Ids come from the control
/// plane, never from the network, so they cannot be chosen to collide.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Builds [`IdHasher`]s.
pub type IdHash = BuildHasherDefault<IdHasher>;

/// A meeting's fan-out set: its legs in admission order. Replaced whole
/// (a new `Arc`) whenever the set changes, never changed in place while
/// published, so `Arc::ptr_eq` says whether a plan made from it is current.
pub type Members = Arc<Vec<LegId>>;

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
/// another port, where its RTCP goes. Each is a [`Path`]: the peer's
/// address and the local address it sent to, which replies leave from.
/// The rules are in `latching.rs`.
#[derive(Debug, Default)]
pub struct Latch {
    rtp: ArcSwapOption<Path>,
    /// Set only when the leg's RTCP comes from elsewhere than its RTP.
    rtcp: ArcSwapOption<Path>,
    /// Whether `rtp` was learnt from an RTP packet (else from RTCP: a
    /// receive-only participant).
    rtp_from_rtp: AtomicBool,
}

impl Latch {
    /// The latched RTP address, if any packet authenticated yet.
    pub fn get(&self) -> Option<SocketAddr> {
        self.path().map(|p| p.remote)
    }

    /// The latched RTP path (address and the local address it sent to).
    pub fn path(&self) -> Option<Path> {
        self.rtp.load().as_deref().copied()
    }

    /// Moves the RTP latch to `addr` (the local address left to the
    /// kernel); returns whether it changed.
    pub fn set(&self, addr: SocketAddr) -> bool {
        self.set_path(addr.into())
    }

    /// Moves the RTP latch to `path`; returns whether it changed.
    pub fn set_path(&self, path: Path) -> bool {
        if self.path() == Some(path) {
            return false;
        }
        self.rtp.store(Some(Arc::new(path)));
        true
    }

    /// Where RTCP for the leg goes: its RTCP address when it has one of
    /// its own, else its RTP address (rtcp-mux).
    pub fn rtcp(&self) -> Option<SocketAddr> {
        self.rtcp_path().map(|p| p.remote)
    }

    /// [`Self::rtcp`] with the local address it was learnt at.
    pub fn rtcp_path(&self) -> Option<Path> {
        self.rtcp.load().as_deref().copied().or_else(|| self.path())
    }

    /// Moves the RTCP latch to `addr`; returns whether it changed.
    pub fn set_rtcp(&self, addr: SocketAddr) -> bool {
        self.set_rtcp_path(addr.into())
    }

    /// Moves the RTCP latch to `path`; returns whether it changed.
    pub fn set_rtcp_path(&self, path: Path) -> bool {
        if self.rtcp.load().as_deref() == Some(&path) {
            return false;
        }
        self.rtcp.store(Some(Arc::new(path)));
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

/// Everything a worker needs to route, at one moment. Cloning it is O(1)
/// (module doc): the clone shares every map with the original.
#[derive(Debug, Default, Clone)]
pub struct RoutingSnapshot {
    /// Bumped on every publication; workers look for what changed then.
    pub generation: u64,
    /// Every leg. Add legs with [`Self::insert_leg`], which keeps
    /// [`Self::next_leg`] true.
    pub legs: im::HashMap<LegId, Arc<LegRoute>, IdHash>,
    /// Above every leg id ever inserted: a worker finds the legs admitted
    /// since it last looked by the ids from where it stopped up to this
    /// (control-plane ids only grow), without walking the node.
    pub next_leg: u64,
    /// Every published stream by SSRC (SSRCs are unique per node: the API
    /// refuses a duplicate).
    pub streams: im::HashMap<u32, Arc<StreamRoute>>,
    /// Each meeting's legs, in admission order: the fan-out set.
    pub meetings: im::HashMap<MeetingIdx, Members, IdHash>,
    /// The SSRC each leg puts in the sender field of its RTCP (the API's
    /// `rtcp_ssrc`), for legs that have one: a receive-only participant's
    /// first SRTCP packet finds its leg here with one lookup. Unique per
    /// node together with `streams` (the API refuses a clash), so one SSRC
    /// names one leg.
    pub rtcp_ssrcs: im::HashMap<u32, LegId>,
    /// Cluster mode: the fan-out sets of what came from other nodes (local
    /// legs only: split horizon), each naming the meeting it belongs to,
    /// so RTCP feedback still finds publishers across the two sets.
    pub relayed: im::HashMap<MeetingIdx, MeetingIdx, IdHash>,
    /// Browser (WebRTC) legs by the address ICE validated for them: RTCP
    /// from a receive-only browser carries a sender SSRC of its own
    /// choosing that names nothing here, and finds its leg by address.
    pub ice_addresses: im::HashMap<SocketAddr, LegId>,
    /// Legs nothing is sent to (a WHIP session only publishes).
    pub send_only: im::HashSet<LegId, IdHash>,
    /// Legs that belong to one participant (a browser's WHIP and WHEP
    /// sessions), by a number naming the participant: fan-out never sends
    /// a participant its own streams.
    pub participant_of: im::HashMap<LegId, u64, IdHash>,
    /// WHEP legs' receive slots: which publisher stream each slot carries
    /// now. A leg with a slot map receives only the streams in it, each
    /// under its slot's SSRC and mid.
    pub slot_maps: im::HashMap<LegId, Arc<SlotMap>, IdHash>,
    /// Every slot SSRC, to the publisher SSRC its slot carries now: a
    /// WHEP viewer's feedback (NACK, PLI) names the slot, and reaches the
    /// publisher under the publisher's own SSRC.
    pub slot_sources: im::HashMap<u32, u32>,
    /// Every slot SSRC, to the offset its slot adds to its publisher's
    /// sequence numbers: NACKs name the slot's numbers.
    pub slot_seq_offsets: im::HashMap<u32, u16>,
    /// The publisher streams WHEP slots may carry, by SSRC: workers
    /// record each packet's level and position there (`slot_feed.rs`).
    /// Empty while no meeting has a WHEP viewer.
    pub slot_feeds: im::HashMap<u32, Arc<SourceFeed>>,
    /// Streams that go to a chosen set of legs instead of the whole
    /// meeting (DESIGN.md, "Transcoding"): a rendition goes only to the
    /// receivers that need it; its source goes to the transcoders that
    /// make renditions of it and to the receivers that take it as it is,
    /// not to those that get a rendition instead. Empty unless a meeting
    /// has a transcode running.
    pub audiences: im::HashMap<u32, Arc<[LegId]>>,
    /// The legs of media services (transcoders): outside every meeting's
    /// fan-out set, receiving only what `audiences` names; the receivers'
    /// REMB about their streams reaches them (it stops at the relay for
    /// endpoints).
    pub services: im::HashSet<LegId, IdHash>,
    /// Receiving legs that number a codec otherwise than a source they
    /// get (`receive.video.codecs`, a WHEP offer): each copy to them
    /// leaves under their payload type (`pt_rewrite.rs`). Empty unless
    /// some receiver named payload types that differ.
    pub payload_types: im::HashMap<LegId, Arc<PtMap>, IdHash>,
    /// Source streams whose picture height the control plane wants to
    /// learn, by SSRC (`height_probe.rs`): empty unless a receiver of the
    /// source's codec has a `max_height` and the height is not known yet.
    pub heights: im::HashMap<u32, Arc<SourceHeight>>,
}

/// One WHEP leg's receive slots (see `crate::webrtc`'s slot notes).
#[derive(Debug, Default, Clone)]
pub struct SlotMap {
    /// The filled slots.
    pub entries: Vec<SlotEntry>,
    /// Every slot's SRTP send index space toward the viewer, by slot
    /// SSRC, filled or not: the same `Arc` in every snapshot for the
    /// session's life, since whichever worker carries the slot's current
    /// source protects under the viewer's one key and must continue the
    /// index where another worker left it (`srtp::SharedSendIndex`). A
    /// slot without one is not sent to.
    pub indices: Vec<(u32, Arc<SharedSendIndex>)>,
}

impl SlotMap {
    /// The slot carrying the publisher stream `source`, if one does.
    #[inline]
    pub fn slot_of(&self, source: u32) -> Option<&SlotEntry> {
        self.entries.iter().find(|e| e.source == source)
    }

    /// The send index space of the slot whose SSRC is `ssrc`.
    #[inline]
    pub fn index_of(&self, ssrc: u32) -> Option<&SharedSendIndex> {
        self.indices
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, index)| &**index)
    }
}

/// One filled slot: the rewrite every packet of `source` gets on its way
/// to the slot's leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotEntry {
    /// The publisher's SSRC.
    pub source: u32,
    /// The slot's SSRC (declared in the WHEP answer).
    pub ssrc: u32,
    /// The slot's mid (at most 8 bytes: longer mids are not rewritten).
    pub mid: [u8; 8],
    /// How many bytes of `mid` are used.
    pub mid_len: u8,
    /// The MID extension id in the publisher's packets (0: none).
    pub source_mid_ext: u8,
    /// The MID extension id the viewer negotiated (0: none).
    pub mid_ext: u8,
    /// Added (wrapping) to the publisher's sequence numbers, so the slot
    /// stays one continuous stream across switches.
    pub seq_offset: u16,
    /// Added (wrapping) to the publisher's RTP timestamps.
    pub ts_offset: u32,
}

impl RoutingSnapshot {
    /// Adds (or replaces) a leg's route.
    pub fn insert_leg(&mut self, route: Arc<LegRoute>) {
        self.next_leg = self.next_leg.max(route.id.0.saturating_add(1));
        self.legs.insert(route.id, route);
    }

    /// The leg an RTCP packet whose sender field is `ssrc` claims to come
    /// from: the publisher of that stream, else the leg that registered it
    /// as its `rtcp_ssrc`.
    pub fn rtcp_sender(&self, ssrc: u32) -> Option<LegId> {
        match self.streams.get(&ssrc) {
            Some(stream) => Some(stream.leg),
            None => self.rtcp_ssrcs.get(&ssrc).copied(),
        }
    }

    /// Whether fan-out from `sender` skips `receiver`: it takes nothing
    /// (WHIP), or both are the same participant's.
    pub fn skips(&self, sender: LegId, receiver: LegId) -> bool {
        if self.send_only.contains(&receiver) {
            return true;
        }
        match (
            self.participant_of.get(&sender),
            self.participant_of.get(&receiver),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
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

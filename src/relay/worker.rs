//! [`RelayWorker`]: the packet path of one worker thread (DESIGN.md,
//! "packet path"), sans-IO. The I/O layer hands it each received datagram
//! with the current [`RoutingSnapshot`]; it appends what to send to a
//! [`Transmits`] arena, which the I/O layer sends in one batch per loop
//! turn. It never reads the clock and never touches a socket.
//!
//! How to drive it: one worker per packet thread, made with
//! [`RelayWorker::new`]. Per receive batch, load the snapshot once; for
//! each datagram call [`RelayWorker::handle_datagram`]; then send
//! everything in the arena and [`Transmits::clear`] it. Every packet the
//! worker refuses is counted in its [`WorkerCounters`] by [`Drop`] reason.
//!
//! RTP (RFC 3550, demuxed from RTCP per RFC 5761 §4): SSRC → stream → leg;
//! SRTP unprotect with the leg's client→relay key (authentication and
//! replay window, RFC 3711 §3.3); latch (see `latching.rs`); then fan-out
//! to every *other* participant of the meeting (or, for a stream with an
//! audience of its own, to that: a transcode's source goes to its
//! transcoder and to the receivers taking it as it is, a rendition to its
//! receivers only; the transcoder is a participant on a leg of its own,
//! so nothing here decodes), re-protected under each receiver's
//! relay→client key in one crypto batch (`protect_rtp_batch`), written
//! straight into the arena. The packet is forwarded as it came, but for
//! the per-receiver header rewrites of a copy (a WHEP slot's SSRC and mid,
//! a receiver's own payload type: `slot_rewrite.rs`, `pt_rewrite.rs`);
//! in an E2EE meeting nothing reads the payload (SFrame, RFC 9605): it
//! leaves byte for byte as the publisher sent it.
//!
//! SRTCP (RFC 3711 §3.4, RFC 7714 §9): the sender is found by the first
//! packet's SSRC, which SRTCP leaves in the clear: a publisher's stream, or
//! the `rtcp_ssrc` the leg was admitted with (DESIGN.md, "Control API"), so
//! a receive-only participant latches with one lookup and one decryption.
//! Else by the address this worker accepted the leg from. Only as a
//! fallback, for a client that reports under some other SSRC, the keys of
//! legs that have no latch yet are tried, newest first, at most
//! `MAX_TRIALS` (16) per packet, resuming where the last packet stopped;
//! only a packet that authenticates under a leg's key is that leg's. (The
//! report block or feedback SSRC that would narrow the candidates to one
//! meeting is in the encrypted part: SRTCP leaves only the first 8 bytes
//! in the clear.)
//! What it carries is routed by `rtcp_route.rs`; each destination gets one
//! SRTCP packet whose index comes from the leg's shared counter
//! ([`LegRoute::take_srtcp_index`]), since every worker protects RTCP to
//! that leg under the same key.
//!
//! Sessions are the worker's own (`legs.rs`), made on first use. A leg or
//! meeting missing from the snapshot is neither forwarded from nor to,
//! from the first packet after its removal. What a snapshot change costs
//! the worker is bounded by what changed, not by the node: the state of
//! departed legs is swept a few slots per change, the legs admitted since
//! the last change are found by their ids, and a fan-out plan is made
//! again only when its own meeting changed (`fanout.rs`).
//!
//! Rebinding: SRTP state (rollover counters, replay windows, the indices
//! used toward each receiver) is per worker, so a stream must stay on one
//! worker when its publisher's address changes. The media port steers
//! RTP by SSRC and SRTCP by sender SSRC (`net/steer.rs`), so it does, at
//! any rollover counter. Should a stream's packets reach another worker
//! anyway (the kernel refused the steering program, which the daemon
//! logs), they continue there only while the rollover counter is 0: after
//! a sequence wrap the new worker's first guess (ROC 0) fails to
//! authenticate and the packets are dropped as `AuthFailed`. That fails
//! closed on purpose: guessing would let the new worker protect toward
//! subscribers at a rollover counter another worker already used, reusing
//! GCM nonces.
//!
//! Restarts: a worker that panicked is made again with fresh state
//! (`net/worker.rs`), but not with a fresh index space. Its sessions
//! record, per leg and SSRC, what they used in an [`IndexJournal`] that
//! the supervisor keeps per worker index and hands the new worker
//! ([`RelayWorker::with_journal`]; design in the `srtp` journal's module
//! doc): toward each receiver and output SSRC a reservation above every
//! index protected, raised before an index is used, once per
//! [`RESERVE_AHEAD`](crate::srtp::RESERVE_AHEAD) packets (one relaxed
//! store); from each publisher and SSRC the index reached, once per
//! [`RECEIVED_STRIDE`](crate::srtp::RECEIVED_STRIDE) packets and at every
//! rollover-counter change. The new worker's sessions start each
//! received stream at its record, so a stream that wrapped (ROC > 0)
//! goes on after the restart; and each sent stream above its
//! reservation. Guaranteed: no index is ever protected twice under a
//! receiver's key across a restart, at any rollover counter; a receiver
//! loses at most `RESERVE_AHEAD` packets per stream to it. Nothing of
//! this is per packet but a comparison: no lock, no syscall, no
//! allocation (a journal cell is made when a session first sees a
//! stream). The journal is per worker, so it does not lift the
//! fail-closed rule above for a stream that moves to another worker.

use std::sync::Arc;

use arrayvec::ArrayVec;

use super::deferred::{DeferredSends, submit_fanout};
use super::fanout::{FanoutPlans, Receiver, protect_chunk};
use super::latching::{Admission, admit, admit_rtcp, rtp_is_fresher, srtcp_is_fresher};
use super::legs::{LegSessions, SlotIdx, leg_of_journal_key};
use super::rtcp_route::RtcpPlan;
use super::slot_rewrite::{SlotMapCache, claim_index};
use super::slot_rtcp::rtcp_for_viewer;
use super::{LegId, LegRoute, Path, RoutingSnapshot, SLOT, StreamRoute, Transmits};
use crate::crypto::AeadBackend;
use crate::metrics::{Drop, WorkerCounters};
use crate::rtp::{RtpHeader, is_rtcp, rtcp_header_ssrc};
use crate::srtp::{BATCH_CHUNK, IndexJournal, SrtpError};

/// The most SRTP adds to an RTP packet (a GCM tag; HMAC-SHA1 adds less).
const MAX_SRTP_OVERHEAD: usize = 16;
/// Most keys tried on one SRTCP packet from an unknown sender.
const MAX_TRIALS: usize = 16;
/// Most candidate legs looked at (a latch load each) for one such packet.
const MAX_SCAN: usize = 256;
/// Slots of departed legs looked at per snapshot change (`legs.rs`).
const SWEEP_BUDGET: usize = 256;
/// Entries of the unlatched list a compaction looks at per snapshot
/// change, at least (twice the legs the change added, if more): a
/// compaction of a storm's 10,000 entries in one packet's handling was
/// the half-millisecond p99 of `benches/storm_adopt.rs`.
const COMPACT_BUDGET: usize = 256;
/// What fills a place of the unlatched list that a compaction in progress
/// vacated: names no leg, so the key trials skip it.
const VACANT: LegId = LegId(u64::MAX);

/// Where a worker hands RTP whose SSRC no stream has, when it comes from
/// a browser's ICE address (`RoutingSnapshot::ice_addresses`): the WebRTC
/// side learns a WHIP stream announced without `a=ssrc` from its first
/// packets (`crate::webrtc::learn`). Called on the unknown-SSRC path
/// only, never for a routed packet; it must not block.
pub trait UnroutedSink: Send + std::fmt::Debug {
    /// `datagram` (still SRTP) came from `from` with an unknown SSRC.
    fn unrouted(&mut self, from: std::net::SocketAddr, ssrc: u32, datagram: &[u8]);
}

/// One packet worker's routing core.
#[derive(Debug)]
pub struct RelayWorker<B: AeadBackend> {
    /// Unknown-SSRC RTP from browsers goes here (see [`UnroutedSink`]).
    unrouted: Option<Box<dyn UnroutedSink>>,
    backend: B,
    counters: Arc<WorkerCounters>,
    legs: LegSessions<B>,
    /// The snapshot generation last adopted.
    generation: Option<u64>,
    /// Legs that had no latch when they were found in a snapshot, oldest
    /// first: whose keys an SRTCP packet from an unknown sender is tried
    /// under (newest first). Legs that latched or left since are skipped,
    /// and compacted away once they are half the list.
    unlatched: Vec<LegId>,
    /// `unlatched`'s length after its last compaction.
    unlatched_compacted: usize,
    /// A compaction of `unlatched` under way, a slice per snapshot change:
    /// where it reads next and where it writes what it keeps.
    compacting: Option<(usize, usize)>,
    /// The snapshot's `next_leg` when last adopted: legs from there on
    /// are new.
    next_leg: u64,
    /// Where the next trial starts in `unlatched`, so that more than
    /// [`MAX_TRIALS`] candidates are all reached over successive packets.
    unlatched_cursor: usize,
    /// Who each sending leg fans out to, worked out once per generation.
    plans: FanoutPlans,
    /// The current fan-out's latched receivers (kept for its capacity).
    receivers: Vec<Receiver>,
    /// WHEP viewers' slot maps, looked up once per snapshot.
    slot_maps: SlotMapCache,
    /// A copy of the datagram for each key trial (a failed GCM open leaves
    /// the buffer unspecified).
    trial_buf: Vec<u8>,
    /// Fan-outs sealing on a device queue, and what must go out after them.
    deferred: DeferredSends,
}

impl<B: AeadBackend> RelayWorker<B> {
    /// A worker protecting with `backend` and counting into `counters`.
    pub fn new(backend: B, counters: Arc<WorkerCounters>) -> Self {
        Self {
            unrouted: None,
            backend,
            counters,
            legs: LegSessions::default(),
            generation: None,
            unlatched: Vec::new(),
            unlatched_compacted: 0,
            compacting: None,
            next_leg: 0,
            unlatched_cursor: 0,
            plans: FanoutPlans::default(),
            receivers: Vec::new(),
            slot_maps: SlotMapCache::default(),
            trial_buf: vec![0; SLOT],
            deferred: DeferredSends::default(),
        }
    }

    /// Records the indices this worker's sessions use in `journal`, and
    /// takes up the streams an earlier worker recorded there: give a
    /// worker made again after a panic the journal of the one it
    /// replaces ([`crate::srtp::IndexJournals::for_worker`]). Call before
    /// the first datagram. Without it the worker keeps a journal of its
    /// own, which nothing outlives.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<IndexJournal>) -> Self {
        self.legs = LegSessions::new(journal);
        self
    }

    /// Hands unknown-SSRC RTP from browsers' ICE addresses to `sink`.
    #[must_use]
    pub fn with_unrouted(mut self, sink: Box<dyn UnroutedSink>) -> Self {
        self.unrouted = Some(sink);
        self
    }

    /// Whether fan-outs are waiting on the crypto device; while so, call
    /// [`Self::poll_deferred`] every loop turn, without blocking on input.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Appends to `out` every waiting fan-out the device has finished, in
    /// the order they were handled (with `block`, waits for all of them:
    /// on shutdown). Returns whether any still waits.
    pub fn poll_deferred(&mut self, block: bool, out: &mut Transmits) -> bool {
        self.deferred
            .poll(&self.backend, block, &self.counters, out)
    }

    /// Handles one received datagram (`packet[..len]`, from `from`: the
    /// peer's address, or a [`Path`] with the local address it sent to,
    /// which replies to the leg then leave from), appending what to send
    /// to `out`. The packet is decrypted in place, so its bytes are
    /// unspecified afterwards.
    pub fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: impl Into<Path>,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        let from = from.into();
        if self.generation != Some(snapshot.generation) {
            self.adopt(snapshot);
        }
        let Some(datagram) = packet.get(..len) else {
            self.counters.dropped(Drop::Malformed);
            return;
        };
        if is_rtcp(datagram) {
            self.handle_rtcp(snapshot, from, packet, len, out);
        } else {
            self.handle_rtp(snapshot, from, packet, len, out);
        }
    }

    /// Takes in a new snapshot at the cost of what changed: sweeps a few
    /// slots of departed legs, and lists the legs admitted since the last
    /// one that are still waiting for their first packet.
    fn adopt(&mut self, snapshot: &RoutingSnapshot) {
        self.legs.sweep(snapshot, SWEEP_BUDGET);
        let new_ids = snapshot.next_leg.saturating_sub(self.next_leg);
        let unlatched = |route: &Arc<LegRoute>| route.latch.get().is_none();
        let walk_all = self.generation.is_none()
            || snapshot.next_leg < self.next_leg
            || new_ids > u64::try_from(snapshot.legs.len()).unwrap_or(u64::MAX);
        if self.generation.is_none() {
            // A (re)started worker: it holds a slot for every leg its
            // journal has records of, so that the sweep forgets them
            // when the leg leaves; those of legs gone already go now.
            for key in self.legs.journal().recorded_keys() {
                match snapshot.legs.get(&leg_of_journal_key(key)) {
                    Some(route) => {
                        self.legs.slot_of(route);
                    }
                    None => self.legs.journal().forget(key),
                }
            }
        }
        if walk_all {
            // The first snapshot, another cell's, or more ids handed out
            // than legs exist: one walk of the node is the cheaper way.
            self.unlatched.clear();
            self.unlatched.extend(
                snapshot
                    .legs
                    .values()
                    .filter(|route| unlatched(route))
                    .map(|route| route.id),
            );
            self.unlatched.sort_unstable();
            self.unlatched_compacted = self.unlatched.len();
            self.compacting = None;
        } else {
            for id in self.next_leg..snapshot.next_leg {
                if snapshot.legs.get(&LegId(id)).is_some_and(unlatched) {
                    self.unlatched.push(LegId(id));
                }
            }
            // Amortised O(1) per leg: compact once the list doubled, a
            // bounded slice per change, never the whole list at once.
            if self.compacting.is_none()
                && self.unlatched.len() > 2 * self.unlatched_compacted.max(32)
            {
                self.compacting = Some((0, 0));
            }
            let added = usize::try_from(new_ids).unwrap_or(usize::MAX);
            self.compact_step(snapshot, COMPACT_BUDGET.max(added.saturating_mul(2)));
        }
        self.next_leg = snapshot.next_leg;
        self.generation = Some(snapshot.generation);
    }

    /// Goes on with a compaction of `unlatched` under way for at most
    /// `budget` entries: keeps, in order, the legs still waiting for their
    /// first packet; once it has read the whole list, cuts it there.
    fn compact_step(&mut self, snapshot: &RoutingSnapshot, budget: usize) {
        let Some((mut read, mut write)) = self.compacting else {
            return;
        };
        let end = self.unlatched.len().min(read.saturating_add(budget));
        while read < end {
            // `write <= read < end <= len`: both in bounds.
            let id = self.unlatched[read];
            self.unlatched[read] = VACANT;
            let waiting = snapshot
                .legs
                .get(&id)
                .is_some_and(|route| route.latch.get().is_none());
            if waiting {
                self.unlatched[write] = id;
                write += 1;
            }
            read += 1;
        }
        if read == self.unlatched.len() {
            self.unlatched.truncate(write);
            self.unlatched_compacted = write;
            self.compacting = None;
        } else {
            self.compacting = Some((read, write));
        }
    }

    fn handle_rtp(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        let header = packet.get(..len).map(RtpHeader::parse);
        let Some(Ok(header)) = header else {
            self.counters.dropped(Drop::Malformed);
            return;
        };
        let ssrc = header.ssrc().0;
        let Some((stream, leg)) = snapshot
            .streams
            .get(&ssrc)
            .and_then(|stream| Some((stream, snapshot.legs.get(&stream.leg)?)))
        else {
            self.counters.dropped(Drop::UnknownSsrc);
            if let Some(sink) = self.unrouted.as_mut()
                && snapshot.ice_addresses.contains_key(&from.remote)
            {
                sink.unrouted(from.remote, ssrc, packet.get(..len).unwrap_or_default());
            }
            return;
        };
        let slot = self.legs.slot_of(leg);
        let Some(session) = self.legs.inbound(slot, &self.backend) else {
            self.counters.dropped(Drop::Other);
            return;
        };
        let (rtp_len, index) = match session.unprotect_rtp_indexed(packet, len) {
            Ok(done) => done,
            Err(e) => {
                self.counters.dropped(drop_reason(&e));
                return;
            }
        };
        self.counters.received(leg.mode, len);
        let admission = admit(&leg.latch, from, rtp_is_fresher(stream, index));
        if !self.admitted(slot, from, admission, false) {
            return;
        }
        let Some(rtp) = packet.get(..rtp_len) else {
            self.counters.dropped(Drop::Other);
            return;
        };
        // WHEP slot decisions: the level and position, two relaxed stores
        // (`slot_feed.rs`); no lookup while no meeting has a viewer.
        if !snapshot.slot_feeds.is_empty()
            && let Some(feed) = snapshot.slot_feeds.get(&ssrc)
        {
            feed.observe(rtp);
        }
        if !snapshot.heights.is_empty()
            && let Some(probe) = snapshot.heights.get(&stream.ssrc)
        {
            probe.observe(rtp);
        }
        self.fan_out(snapshot, stream, slot, leg, rtp, out);
    }

    /// Counts what the latch rules made of an authenticated packet
    /// (RTCP or not) from `from`; whether to go on.
    fn admitted(&mut self, slot: SlotIdx, from: Path, admission: Admission, rtcp: bool) -> bool {
        match admission {
            Admission::Stale => {
                self.counters.dropped(Drop::Replayed);
                return false;
            }
            Admission::Latched => self.counters.latched(),
            Admission::Stay => {}
        }
        // The address index serves RTCP sender demux: RTCP's source is the
        // one to remember; RTP's only until the leg's RTCP is seen (a peer
        // without rtcp-mux would otherwise flip the entry every packet).
        if rtcp || admission == Admission::Latched {
            self.legs.seen_at(slot, from.remote);
        } else {
            self.legs.seen_first_at(slot, from.remote);
        }
        true
    }

    /// Sends the plaintext `rtp` of `stream` from `sender` (in
    /// `sender_slot`) to every other latched leg of its meeting, or of the
    /// stream's own audience (a transcode's source or rendition).
    fn fan_out(
        &mut self,
        snapshot: &RoutingSnapshot,
        stream: &StreamRoute,
        sender_slot: SlotIdx,
        sender: &LegRoute,
        rtp: &[u8],
        out: &mut Transmits,
    ) {
        if rtp.len() + MAX_SRTP_OVERHEAD > SLOT {
            self.counters.dropped(Drop::Other);
            return;
        }
        let plan =
            self.plans
                .receivers_of(stream.ssrc, sender_slot, sender, snapshot, &mut self.legs);
        self.receivers.clear();
        let source = rtp_ssrc(rtp);
        for &slot in plan {
            // A WHEP leg takes only what fills one of its slots.
            let rewrite = if snapshot.slot_maps.is_empty() {
                None
            } else {
                match self
                    .legs
                    .id_of(slot)
                    .and_then(|id| self.slot_maps.get(slot, id, snapshot))
                {
                    Some(map) => match map.slot_of(source) {
                        Some(entry) => Some((*entry, map.index_of(entry.ssrc))),
                        None => continue,
                    },
                    None => None,
                }
            };
            let Some(dest) = self.legs.latched(slot) else {
                self.counters.dropped(Drop::NotLatched);
                continue;
            };
            let Some(session) = self.legs.outbound(slot, &self.backend) else {
                self.counters.dropped(Drop::Other);
                continue;
            };
            // A slot's index toward the viewer, shared by every worker
            // that may carry the slot (`slot_rewrite.rs`).
            let index = match &rewrite {
                Some((entry, shared)) => match claim_index(session, rtp, entry, *shared) {
                    Ok(index) => Some(index),
                    Err(e) => {
                        self.counters.dropped(drop_reason(&e));
                        continue;
                    }
                },
                None => None,
            };
            let rewrite = rewrite.map(|(entry, _)| entry);
            // The receiver's own payload type for this stream, if it differs.
            let payload_type = if snapshot.payload_types.is_empty() {
                None
            } else {
                self.legs
                    .id_of(slot)
                    .and_then(|id| snapshot.payload_types.get(&id))
                    .and_then(|map| map.payload_type_of(source))
            };
            self.receivers.push(Receiver {
                slot,
                dest,
                rewrite,
                index,
                payload_type,
            });
        }
        // A large fan-out goes to the crypto device's queue (GPU) when the
        // backend wants it, and is sent in a later loop turn; while such
        // work waits, CPU-sealed fan-outs queue behind it, in order.
        if self.backend.defers(self.receivers.len()) {
            submit_fanout(
                &self.backend,
                &mut self.legs,
                &self.counters,
                &self.receivers,
                rtp,
                sender.mode,
                &mut self.deferred,
            );
            return;
        }
        let out = if self.deferred.is_empty() {
            out
        } else {
            self.deferred.sealed()
        };
        for chunk in self.receivers.chunks(BATCH_CHUNK) {
            protect_chunk(
                &self.backend,
                &mut self.legs,
                &self.counters,
                chunk,
                rtp,
                sender.mode,
                out,
            );
        }
    }

    fn handle_rtcp(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        let Some(ssrc) = packet.get(..len).and_then(rtcp_header_ssrc) else {
            self.counters.dropped(Drop::Malformed);
            return;
        };
        let claimed = snapshot
            .rtcp_sender(ssrc.0)
            .or_else(|| self.legs.leg_at(from.remote))
            .or_else(|| snapshot.ice_addresses.get(&from.remote).copied());
        let (sender, slot, rtcp_len, index, in_trial_buf) = if let Some(id) = claimed {
            let Some(route) = snapshot.legs.get(&id) else {
                self.counters.dropped(Drop::UnknownSsrc);
                return;
            };
            let slot = self.legs.slot_of(route);
            let Some(session) = self.legs.inbound(slot, &self.backend) else {
                self.counters.dropped(Drop::Other);
                return;
            };
            match session.unprotect_rtcp_indexed(packet, len) {
                Ok((rtcp_len, index)) => (&**route, slot, rtcp_len, index, false),
                Err(e) => {
                    self.counters.dropped(drop_reason(&e));
                    return;
                }
            }
        } else {
            let Some(found) = packet
                .get(..len)
                .and_then(|datagram| self.try_unlatched(snapshot, datagram))
            else {
                self.counters.dropped(Drop::UnknownSsrc);
                return;
            };
            let (route, slot, rtcp_len, index) = found;
            (route, slot, rtcp_len, index, true)
        };
        self.counters.received(sender.mode, len);
        let admission = admit_rtcp(&sender.latch, from, srtcp_is_fresher(sender, index));
        if !self.admitted(slot, from, admission, true) {
            return;
        }
        let trial_buf = std::mem::take(&mut self.trial_buf);
        let compound = if in_trial_buf {
            trial_buf.get(..rtcp_len)
        } else {
            packet.get(..rtcp_len)
        };
        match compound {
            Some(compound) => self.route_rtcp(snapshot, sender, compound, out),
            None => self.counters.dropped(Drop::Other),
        }
        self.trial_buf = trial_buf;
    }

    /// Tries the keys of legs without a latch on an SRTCP `datagram` whose
    /// sender is unknown; the first leg it authenticates under sent it.
    /// The plaintext is left in `trial_buf`.
    fn try_unlatched<'s>(
        &mut self,
        snapshot: &'s RoutingSnapshot,
        datagram: &[u8],
    ) -> Option<(&'s LegRoute, SlotIdx, usize, u32)> {
        let count = self.unlatched.len();
        let len = datagram.len();
        if count == 0 || len > self.trial_buf.len() {
            return None;
        }
        let scan = count.min(MAX_SCAN);
        // Start where the last unknown packet stopped, shifted by a value
        // taken from this packet's tail (tag and index differ on every
        // resend). A plain rotation falls into step with the order in which
        // clients re-send their reports and can skip the same legs forever.
        let shift = datagram.iter().rev().take(8).fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let start = (self.unlatched_cursor + shift) % count;
        let mut trials = 0;
        for step in 0..scan {
            let at = (start + step) % count;
            // Newest first: the likeliest to be sending their first report.
            let newest_first = count - 1 - at;
            let Some(route) = self
                .unlatched
                .get(newest_first)
                .and_then(|id| snapshot.legs.get(id))
            else {
                continue;
            };
            if route.latch.get().is_some() {
                continue;
            }
            if trials == MAX_TRIALS {
                // Resume here with the next unknown packet.
                self.unlatched_cursor = at;
                return None;
            }
            trials += 1;
            let slot = self.legs.slot_of(route);
            let Some(session) = self.legs.inbound(slot, &self.backend) else {
                continue;
            };
            let buf = self.trial_buf.get_mut(..len)?;
            buf.copy_from_slice(datagram);
            if let Ok((rtcp_len, index)) = session.unprotect_rtcp_indexed(buf, len) {
                return Some((&**route, slot, rtcp_len, index));
            }
        }
        self.unlatched_cursor = (start + scan) % count;
        None
    }

    /// Forwards the parts of the plaintext `compound` from `sender` to
    /// the legs they are for.
    fn route_rtcp(
        &mut self,
        snapshot: &RoutingSnapshot,
        sender: &LegRoute,
        compound: &[u8],
        out: &mut Transmits,
    ) {
        let plan = match RtcpPlan::new(compound, sender, snapshot) {
            Ok(plan) => plan,
            Err(_) => {
                self.counters.dropped(Drop::Malformed);
                return;
            }
        };
        if plan.is_empty() {
            return;
        }
        if plan.has_meeting_parts() {
            let Some(members) = snapshot.meetings.get(&sender.meeting) else {
                return;
            };
            for id in members.iter().filter(|id| **id != sender.id) {
                self.send_rtcp(snapshot, sender.id, *id, &plan, compound, out);
            }
        } else {
            let mut done = ArrayVec::<LegId, { super::rtcp_route::MAX_PARTS }>::new();
            for id in plan.publishers() {
                if !done.contains(&id) && done.try_push(id).is_ok() {
                    self.send_rtcp(snapshot, sender.id, id, &plan, compound, out);
                }
            }
        }
    }

    /// Writes the parts of `compound` (from leg `sender`) meant for leg
    /// `id` as one SRTCP packet to it; a WHEP viewer gets them as its
    /// slots carry them (`slot_rtcp.rs`).
    fn send_rtcp(
        &mut self,
        snapshot: &RoutingSnapshot,
        sender: LegId,
        id: LegId,
        plan: &RtcpPlan,
        compound: &[u8],
        out: &mut Transmits,
    ) {
        let Some(route) = snapshot.legs.get(&id) else {
            return;
        };
        let mut parts = plan.parts_for(id).peekable();
        if parts.peek().is_none() {
            return;
        }
        // RTCP to the leg's RTCP address (a peer without rtcp-mux has one
        // of its own).
        let Some(dest) = route.latch.rtcp_path() else {
            self.counters.dropped(Drop::NotLatched);
            return;
        };
        let slot = self.legs.slot_of(route);
        let Some(session) = self.legs.outbound(slot, &self.backend) else {
            self.counters.dropped(Drop::Other);
            return;
        };
        let viewer = if snapshot.slot_maps.is_empty() {
            None
        } else {
            snapshot.slot_maps.get(&id)
        };
        let owns = |ssrc: u32| snapshot.streams.get(&ssrc).is_some_and(|s| s.leg == sender);
        let buf = out.slot();
        let mut len = 0;
        for range in parts {
            let part = compound.get(range).unwrap_or_default();
            if let Some(map) = viewer {
                let into = buf.get_mut(len..).unwrap_or_default();
                len += rtcp_for_viewer(part, map, owns, into);
                continue;
            }
            let Some(into) = buf.get_mut(len..len + part.len()) else {
                self.counters.dropped(Drop::Other);
                return;
            };
            into.copy_from_slice(part);
            len += part.len();
        }
        if len == 0 {
            return;
        }
        if !snapshot.slot_sources.is_empty() {
            super::slot_rewrite::feedback_to_sources(
                buf.get_mut(..len).unwrap_or_default(),
                snapshot,
            );
        }
        match session.protect_rtcp_at(buf, len, route.take_srtcp_index()) {
            Ok(len) => out.commit(len, dest, route.mode),
            Err(e) => self.counters.dropped(drop_reason(&e)),
        }
    }

    /// The unlatched list's length, and whether a compaction is under way.
    #[cfg(test)]
    pub(crate) fn unlatched_list(&self) -> (usize, bool) {
        (self.unlatched.len(), self.compacting.is_some())
    }

    /// How many legs this worker holds SRTP state for.
    #[cfg(test)]
    pub(crate) fn legs_held(&self) -> usize {
        self.legs.len()
    }
}

/// The SSRC of a plaintext RTP packet (0 when too short: matches no slot).
#[inline]
fn rtp_ssrc(rtp: &[u8]) -> u32 {
    match rtp.get(8..12) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// The counter an SRTP refusal goes to.
pub(crate) fn drop_reason(e: &SrtpError) -> Drop {
    match e {
        SrtpError::AuthFailed => Drop::AuthFailed,
        SrtpError::Replayed | SrtpError::TooOld => Drop::Replayed,
        SrtpError::Rtp(_) | SrtpError::BadRtcpHeader | SrtpError::TooShort { .. } => {
            Drop::Malformed
        }
        SrtpError::IndexReused | SrtpError::KeyExhausted => Drop::IndexRefused,
        SrtpError::BadMasterKeyLength { .. }
        | SrtpError::Crypto(_)
        | SrtpError::BufferTooSmall { .. }
        | SrtpError::TooManyStreams { .. } => Drop::Other,
    }
}

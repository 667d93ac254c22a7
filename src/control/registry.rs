//! The control plane's state: meetings, participants, their legs and
//! streams; and the routing snapshot built from them.
//!
//! The registry is the one owner of this state. It keeps a working copy of
//! the [`RoutingSnapshot`] beside it and changes only the entries a
//! mutation touches (a join: its leg, its `rtcp_ssrc`, its meeting's
//! fan-out set; a stream: one entry); every mutation ends in
//! [`Registry::publish`], which stores an O(1) clone of that copy in the
//! cell the packet workers read (persistent maps, see `relay::snapshot`).
//! A join therefore costs O(log n + its meeting's size), not O(node).
//! A leg's and a stream's route live here behind an `Arc` from admission
//! to removal, so each snapshot carries the very same `Arc`s (and with
//! them the live latch and index counters) for everything that still
//! exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

mod browser;
mod mixers;
mod relays;
#[cfg(test)]
mod tests;
mod transcodes;
mod viewers;

pub(crate) use browser::MAX_SESSIONS_PER_PARTICIPANT as MAX_BROWSER_SESSIONS;
pub(crate) use browser::SlotRequest;
pub(crate) use relays::{LocalStream, WantedRelay};
pub(crate) use transcodes::Transcodes;

use super::ApiError;
use crate::metrics::{ControlGauges, MetricsHub};
use crate::policy::{self, Admission, MeetingFacts, Policy, Role, Source};
use crate::relay::{
    LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RoutingSnapshot, SnapshotCell, StreamRoute,
};

/// Sets `meeting`'s fan-out sets in `routes` from its participants (and,
/// in cluster mode, its relay legs): a new list each time, which tells the
/// workers to re-plan that meeting's fan-outs (`relay::Members`).
fn refresh_sets(routes: &mut RoutingSnapshot, meeting: &Meeting) {
    let local: Vec<LegId> = meeting
        .participants
        .iter()
        .map(|p| p.leg.id)
        .chain(meeting.mixers.iter().map(|m| m.leg.id))
        .collect();
    if meeting.relays.is_empty() {
        routes.meetings.remove(&meeting.relay_idx);
        routes.relayed.remove(&meeting.relay_idx);
        routes.meetings.insert(meeting.idx, Arc::new(local));
        return;
    }
    // What came from another node goes to this node's legs only, never
    // on to a third node (split horizon).
    let mut all = local.clone();
    all.extend(meeting.relays.iter().map(relays::RelayLeg::id));
    routes.meetings.insert(meeting.relay_idx, Arc::new(local));
    routes.relayed.insert(meeting.relay_idx, meeting.idx);
    routes.meetings.insert(meeting.idx, Arc::new(all));
}

/// Takes `participant`'s leg, `rtcp_ssrc` and streams out of `routes`.
fn unroute_participant(routes: &mut RoutingSnapshot, participant: &Participant) {
    routes.legs.remove(&participant.leg.id);
    routes.send_only.remove(&participant.leg.id);
    routes.rtcp_ssrcs.remove(&participant.rtcp_ssrc);
    viewers::forget_payload_types(routes, participant);
    for stream in &participant.streams {
        routes.streams.remove(&stream.route.ssrc);
    }
}
use crate::srtp::{MasterKey, SrtpProfile};
use crate::transcode::VideoPrefs;

/// A meeting's owner, as the integrator vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) account: String,
    pub(crate) verified: bool,
}

/// A meeting.
#[derive(Debug)]
pub(crate) struct Meeting {
    pub(crate) id: String,
    pub(crate) idx: MeetingIdx,
    pub(crate) mode: MeetingMode,
    pub(crate) owner: Owner,
    passcode: Option<String>,
    pub(crate) locked: bool,
    /// In admission order: the fan-out order.
    pub(crate) participants: Vec<Participant>,
    /// Cluster mode: the fan-out set of streams that came from another
    /// node (this node's legs only: split horizon, see `relays.rs`).
    relay_idx: MeetingIdx,
    /// Cluster mode: one relay-to-relay leg per other node hosting legs.
    relays: Vec<relays::RelayLeg>,
    /// The dial-in bridge's receive legs, one per media pool thread with
    /// calls here (`mixers.rs`): in the fan-out set, not listed.
    mixers: Vec<mixers::MixerSeat>,
}

impl Meeting {
    /// Whether joiners must give a passcode.
    pub(crate) fn has_passcode(&self) -> bool {
        self.passcode.is_some()
    }

    /// The passcode itself, for admissions the integrator itself asked
    /// for (dial-out): they need not know it.
    pub(crate) fn passcode(&self) -> Option<&str> {
        self.passcode.as_deref()
    }
}

/// An admitted participant and its leg.
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) source: Source,
    pub(crate) leg: Arc<LegRoute>,
    /// The SSRC the participant's RTCP carries as its sender (requested,
    /// or chosen by the relay): how its first SRTCP packet finds the leg.
    pub(crate) rtcp_ssrc: u32,
    pub(crate) streams: Vec<Stream>,
    /// What video it takes (`receive`), for the transcoder's decisions.
    pub(crate) receive: Option<VideoPrefs>,
    /// A browser (`transport: "webrtc"`): its token and sessions.
    pub(crate) webrtc: Option<browser::WebrtcSeat>,
}

/// A published stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) route: Arc<StreamRoute>,
    pub(crate) codec: String,
}

/// What creating a meeting takes (validated by the API layer).
#[derive(Debug)]
pub(crate) struct NewMeeting {
    pub(crate) id: Option<String>,
    pub(crate) mode: MeetingMode,
    pub(crate) owner: Owner,
    pub(crate) passcode: Option<String>,
}

/// What admitting a participant takes (validated by the API layer).
#[derive(Debug)]
pub(crate) struct NewParticipant {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) passcode: Option<String>,
    pub(crate) source: Source,
    pub(crate) profile: SrtpProfile,
    /// The key the client chose for what it sends; generated when absent.
    pub(crate) client_to_relay: Option<MasterKey>,
    /// The SSRC the client will put in its RTCP's sender field; the relay
    /// picks one when absent.
    pub(crate) rtcp_ssrc: Option<u32>,
    /// The video it can take (`receive`); `None` takes every stream as is.
    pub(crate) receive: Option<VideoPrefs>,
}

#[cfg(test)]
impl NewParticipant {
    /// An attendee admitted through the API with an AES-256-GCM leg, every
    /// key and SSRC the relay's choice, taking `receive` (tests).
    pub(crate) fn attendee(name: &str, receive: Option<VideoPrefs>) -> Self {
        Self {
            name: name.to_owned(),
            role: Role::Attendee,
            passcode: None,
            source: Source::Api,
            profile: SrtpProfile::AeadAes256Gcm,
            client_to_relay: None,
            rtcp_ssrc: None,
            receive,
        }
    }
}

/// What publishing a stream takes (validated by the API layer).
#[derive(Debug)]
pub(crate) struct NewStream {
    pub(crate) ssrc: u32,
    pub(crate) kind: MediaKind,
    pub(crate) codec: String,
    pub(crate) payload_type: u8,
}

/// All meetings on this node, and the cell their routing is published to.
#[derive(Debug)]
pub(crate) struct Registry {
    cell: SnapshotCell,
    /// The packet workers' busy shares, for load shedding.
    load: Arc<MetricsHub>,
    policy: Policy,
    media_address: SocketAddr,
    rng: SystemRandom,
    meetings: BTreeMap<String, Meeting>,
    /// Every published SSRC: they are unique per node.
    ssrcs: HashSet<u32>,
    /// Every leg's `rtcp_ssrc`. Together with `ssrcs` this is the node's
    /// latching index: an SSRC in it names one leg only (a leg may publish
    /// a stream under its own `rtcp_ssrc`).
    rtcp_ssrcs: HashMap<u32, LegId>,
    /// Participants on the node, all meetings together.
    participants: usize,
    /// The routing of the current state, changed entry by entry; each
    /// publication stores a clone (module doc).
    routes: RoutingSnapshot,
    next_meeting: u64,
    next_leg: u64,
    generation: u64,
    /// Whether the last publication rebuilt the snapshot whole
    /// ([`Self::publish`]).
    rebuilt_last: bool,
    /// A change the workers have not been handed yet: the handshake
    /// thread installs the legs of a whole turn's handshakes and then
    /// publishes once ([`Self::publish_pending`]).
    unpublished: bool,
    /// Snapshots published before the current one that a worker may still
    /// hold ([`Self::publish`]): each is freed here, on the control side,
    /// once no one else holds it, never by a packet worker's turn.
    retired: Vec<Arc<RoutingSnapshot>>,
    /// The transcodes running and who they serve (`transcodes.rs`);
    /// `None` while transcoding is off.
    transcodes: Option<Box<Transcodes>>,
    /// The RFC 6464 extension id SDES-keyed publishers' levels are read
    /// under, for WHEP slots (`[sip] audio_level_extension`).
    sdes_level_ext: u8,
}

/// Replaced snapshots kept for readers still holding them ([`Registry::retire`]).
const RETIRED_KEPT: usize = 8;

impl Registry {
    /// An empty registry publishing into `cell`.
    pub(crate) fn new(
        cell: SnapshotCell,
        load: Arc<MetricsHub>,
        policy: Policy,
        media_address: SocketAddr,
    ) -> Self {
        // Continue the cell's numbering, so generations only ever grow.
        let generation = cell.load().generation;
        Self {
            cell,
            load,
            policy,
            media_address,
            rng: SystemRandom::new(),
            meetings: BTreeMap::new(),
            ssrcs: HashSet::new(),
            rtcp_ssrcs: HashMap::new(),
            participants: 0,
            routes: RoutingSnapshot::default(),
            next_meeting: 0,
            next_leg: 0,
            generation,
            rebuilt_last: false,
            unpublished: false,
            retired: Vec::new(),
            transcodes: None,
            sdes_level_ext: browser::SDES_AUDIO_LEVEL_EXT,
        }
    }

    /// Where participants send media.
    pub(crate) fn cell(&self) -> SnapshotCell {
        Arc::clone(&self.cell)
    }

    pub(crate) fn media_address(&self) -> SocketAddr {
        self.media_address
    }

    /// The admission policy in force.
    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    /// Reads SDES-keyed publishers' audio levels (the dial-in bridge's
    /// among them) under RFC 6464 extension `id` from now on.
    pub(crate) fn set_sdes_level_extension(&mut self, id: u8) {
        self.sdes_level_ext = id;
    }

    /// Replaces the admission policy (a config reload): it governs the
    /// next creation and admission; who is in stays in.
    pub(crate) fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The meeting `id`.
    pub(crate) fn meeting(&self, id: &str) -> Result<&Meeting, ApiError> {
        self.meetings
            .get(id)
            .ok_or_else(|| ApiError::MeetingNotFound(id.to_owned()))
    }

    /// Meetings in id order, those after `after` (exclusive) when given.
    pub(crate) fn meetings_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Meeting> + 'a {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |id| Bound::Excluded(id.to_owned()));
        self.meetings
            .range::<String, _>((start, Bound::Unbounded))
            .map(|(_, m)| m)
    }

    fn meeting_mut(&mut self, id: &str) -> Result<&mut Meeting, ApiError> {
        self.meetings
            .get_mut(id)
            .ok_or_else(|| ApiError::MeetingNotFound(id.to_owned()))
    }

    fn node_participants(&self) -> usize {
        self.participants
    }

    /// How many meetings this node holds (in cluster mode: its copies of
    /// the meetings it has legs of).
    pub(crate) fn meeting_count(&self) -> usize {
        self.meetings.len()
    }

    /// Creates a meeting, if the policy lets its owner.
    pub(crate) fn create_meeting(&mut self, new: NewMeeting) -> Result<&Meeting, ApiError> {
        policy::check_create(
            &self.policy,
            new.mode,
            new.owner.verified,
            self.meetings.len(),
        )?;
        let id = match new.id {
            Some(id) if self.meetings.contains_key(&id) => {
                return Err(ApiError::MeetingExists(id));
            }
            Some(id) => id,
            None => self.fresh_id(|id| self.meetings.contains_key(id))?,
        };
        let idx = MeetingIdx(self.next_meeting);
        self.next_meeting += 1;
        let meeting = Meeting {
            id: id.clone(),
            idx,
            mode: new.mode,
            owner: new.owner,
            passcode: new.passcode,
            locked: false,
            participants: Vec::new(),
            relay_idx: MeetingIdx(self.next_meeting),
            relays: Vec::new(),
            mixers: Vec::new(),
        };
        self.next_meeting += 1;
        refresh_sets(&mut self.routes, &meeting);
        self.meetings.insert(id.clone(), meeting);
        self.publish();
        self.meeting(&id)
    }

    /// Cluster mode: this node's copy of a meeting the cluster decided on
    /// (policy already checked there; passcode and lock live in Redis).
    /// A no-op when the copy exists.
    pub(crate) fn mirror_meeting(
        &mut self,
        id: &str,
        mode: MeetingMode,
        account: &str,
        verified: bool,
    ) {
        if self.meetings.contains_key(id) {
            return;
        }
        let idx = MeetingIdx(self.next_meeting);
        self.next_meeting += 1;
        let meeting = Meeting {
            id: id.to_owned(),
            idx,
            mode,
            owner: Owner {
                account: account.to_owned(),
                verified,
            },
            passcode: None,
            locked: false,
            participants: Vec::new(),
            relay_idx: MeetingIdx(self.next_meeting),
            relays: Vec::new(),
            mixers: Vec::new(),
        };
        self.next_meeting += 1;
        refresh_sets(&mut self.routes, &meeting);
        self.meetings.insert(id.to_owned(), meeting);
        self.publish();
    }

    /// Ends a meeting: its legs and streams leave the next snapshot.
    pub(crate) fn delete_meeting(&mut self, id: &str) -> Result<(), ApiError> {
        let meeting = self
            .meetings
            .remove(id)
            .ok_or_else(|| ApiError::MeetingNotFound(id.to_owned()))?;
        for participant in &meeting.participants {
            self.forget_streams(participant);
            unroute_participant(&mut self.routes, participant);
        }
        self.participants -= meeting.participants.len();
        self.forget_mixers(&meeting);
        for relay in &meeting.relays {
            for stream in &relay.streams {
                self.ssrcs.remove(&stream.route.ssrc);
            }
        }
        relays::unroute(&mut self.routes, &meeting.relays);
        self.routes.meetings.remove(&meeting.idx);
        self.routes.meetings.remove(&meeting.relay_idx);
        self.routes.relayed.remove(&meeting.relay_idx);
        self.publish();
        Ok(())
    }

    /// Locks or unlocks a meeting.
    pub(crate) fn set_locked(&mut self, id: &str, locked: bool) -> Result<&Meeting, ApiError> {
        self.meeting_mut(id)?.locked = locked;
        // The lock is an admission fact, not routing: nothing to publish.
        self.meeting(id)
    }

    /// Admits a participant, if the policy lets it in, with a new leg and
    /// its keys (the relay→client key always fresh from the RNG).
    pub(crate) fn admit(
        &mut self,
        meeting_id: &str,
        new: NewParticipant,
    ) -> Result<&Participant, ApiError> {
        let node_participants = self.node_participants();
        let meeting = self.meeting(meeting_id)?;
        let facts = MeetingFacts {
            mode: meeting.mode,
            locked: meeting.locked,
            passcode: meeting.passcode.as_deref(),
            participants: meeting.participants.len(),
        };
        let who = Admission {
            role: new.role,
            passcode: new.passcode.as_deref(),
            source: new.source,
            transcoding: new.receive.is_some(),
        };
        policy::check_admit(&self.policy, &facts, &who, node_participants)?;
        policy::check_load(&self.policy, self.load.busiest_worker())?;
        let (idx, mode) = (meeting.idx, meeting.mode);
        let id = self.fresh_id(|id| meeting.participants.iter().any(|p| p.id == id))?;
        let client_to_relay = match new.client_to_relay {
            Some(key) => key,
            None => self.random_key(new.profile)?,
        };
        let relay_to_client = self.random_key(new.profile)?;
        let leg_id = LegId(self.next_leg);
        let rtcp_ssrc = match new.rtcp_ssrc {
            Some(ssrc) if self.ssrc_taken(ssrc, leg_id) => {
                return Err(ApiError::DuplicateSsrc(ssrc));
            }
            Some(ssrc) => ssrc,
            None => self.fresh_ssrc(leg_id)?,
        };
        let leg = LegRoute {
            id: leg_id,
            meeting: idx,
            mode,
            client_to_relay,
            relay_to_client,
            latch: Arc::default(),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        };
        self.next_leg += 1;
        self.rtcp_ssrcs.insert(rtcp_ssrc, leg_id);
        let leg = Arc::new(leg);
        self.routes.insert_leg(Arc::clone(&leg));
        self.routes.rtcp_ssrcs.insert(rtcp_ssrc, leg_id);
        if new.source == Source::DialIn {
            // A bridged caller hears the meeting through its pool
            // thread's mixer leg (`mixers.rs`): its own leg takes nothing.
            self.routes.send_only.insert(leg_id);
        }
        let meeting = self
            .meetings
            .get_mut(meeting_id)
            .ok_or_else(|| ApiError::MeetingNotFound(meeting_id.to_owned()))?;
        meeting.participants.push(Participant {
            id,
            name: new.name,
            role: new.role,
            source: new.source,
            leg,
            rtcp_ssrc,
            streams: Vec::new(),
            receive: new.receive,
            webrtc: None,
        });
        refresh_sets(&mut self.routes, meeting);
        viewers::refresh_payload_types(&mut self.routes, meeting);
        self.participants += 1;
        self.publish();
        let meeting = self.meeting(meeting_id)?;
        // Just pushed, and publishing does not touch the meetings.
        Ok(meeting
            .participants
            .last()
            .expect("the participant just admitted"))
    }

    /// Removes a participant: its leg and streams leave the next snapshot.
    pub(crate) fn remove_participant(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
    ) -> Result<(), ApiError> {
        let meeting = self
            .meetings
            .get_mut(meeting_id)
            .ok_or_else(|| ApiError::MeetingNotFound(meeting_id.to_owned()))?;
        let at = meeting
            .participants
            .iter()
            .position(|p| p.id == participant_id)
            .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.to_owned()))?;
        let participant = meeting.participants.remove(at);
        unroute_participant(&mut self.routes, &participant);
        refresh_sets(&mut self.routes, meeting);
        viewers::refresh_payload_types(&mut self.routes, meeting);
        self.participants -= 1;
        self.forget_streams(&participant);
        self.publish();
        Ok(())
    }

    /// Publishes a stream from a participant.
    pub(crate) fn add_stream(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
        new: NewStream,
    ) -> Result<&Stream, ApiError> {
        let meeting = self.meeting(meeting_id)?;
        let leg = meeting
            .participants
            .iter()
            .find(|p| p.id == participant_id)
            .map(|p| p.leg.id)
            .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.to_owned()))?;
        if self.ssrc_taken(new.ssrc, leg) {
            return Err(ApiError::DuplicateSsrc(new.ssrc));
        }
        self.ssrcs.insert(new.ssrc);
        let participant = self
            .meetings
            .get_mut(meeting_id)
            .ok_or_else(|| ApiError::MeetingNotFound(meeting_id.to_owned()))?
            .participants
            .iter_mut()
            .find(|p| p.id == participant_id)
            .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.to_owned()))?;
        let route = Arc::new(StreamRoute {
            ssrc: new.ssrc,
            leg: participant.leg.id,
            kind: new.kind,
            payload_type: new.payload_type,
            highest_index: Arc::new(AtomicU64::new(0)),
        });
        self.routes.streams.insert(new.ssrc, Arc::clone(&route));
        participant.streams.push(Stream {
            route,
            codec: new.codec,
        });
        if let Some(meeting) = self.meetings.get(meeting_id) {
            viewers::refresh_payload_types(&mut self.routes, meeting);
        }
        self.publish();
        let participant = self
            .meeting(meeting_id)?
            .participants
            .iter()
            .find(|p| p.id == participant_id);
        // Found above; publishing does not touch the meetings.
        Ok(participant
            .and_then(|p| p.streams.last())
            .expect("the stream just added"))
    }

    /// Forgets a departing participant's SSRCs: its streams' and its
    /// `rtcp_ssrc`.
    fn forget_streams(&mut self, participant: &Participant) {
        for stream in &participant.streams {
            self.ssrcs.remove(&stream.route.ssrc);
        }
        for ssrc in participant
            .webrtc
            .iter()
            .flat_map(browser::WebrtcSeat::ssrcs)
        {
            self.ssrcs.remove(&ssrc);
        }
        self.rtcp_ssrcs.remove(&participant.rtcp_ssrc);
    }

    /// Whether `ssrc` may not be used by `leg`: a stream publishes it, or
    /// another leg reports under it.
    fn ssrc_taken(&self, ssrc: u32, leg: LegId) -> bool {
        self.ssrcs.contains(&ssrc) || self.rtcp_ssrcs.get(&ssrc).is_some_and(|&l| l != leg)
    }

    /// A random SSRC for `leg`'s RTCP that nothing on the node uses (nor
    /// 0, which some stacks treat as unset).
    fn fresh_ssrc(&self, leg: LegId) -> Result<u32, ApiError> {
        loop {
            let mut bytes = [0u8; 4];
            self.rng
                .fill(&mut bytes)
                .map_err(|_| ApiError::Internal("the system random generator failed".to_owned()))?;
            let ssrc = u32::from_be_bytes(bytes);
            if ssrc != 0 && !self.ssrc_taken(ssrc, leg) {
                return Ok(ssrc);
            }
        }
    }

    /// Meetings, legs and streams by mode, for `/metrics`.
    pub(crate) fn gauges(&self) -> ControlGauges {
        let mut gauges = ControlGauges::default();
        for meeting in self.meetings.values() {
            ControlGauges::count(&mut gauges.meetings, meeting.mode);
            for participant in &meeting.participants {
                ControlGauges::count(&mut gauges.legs, meeting.mode);
                for _ in &participant.streams {
                    ControlGauges::count(&mut gauges.streams, meeting.mode);
                }
            }
        }
        gauges
    }

    /// The meetings with a leg on this node (`node`), with those legs.
    pub(crate) fn hosted_meetings(&self, node: &str) -> Vec<crate::cluster::HostedMeeting> {
        self.meetings
            .values()
            .filter(|m| !m.participants.is_empty())
            .map(|m| crate::cluster::HostedMeeting {
                id: m.id.clone(),
                roster: m
                    .participants
                    .iter()
                    .map(|p| {
                        let entry = crate::cluster::RosterEntry {
                            name: p.name.clone(),
                            role: p.role.name().to_owned(),
                            source: p.source.name().to_owned(),
                            node: node.to_owned(),
                        };
                        (p.id.clone(), entry)
                    })
                    .collect(),
            })
            .collect()
    }

    /// What the cluster heartbeat publishes about this node.
    pub(crate) fn node_load(&self) -> crate::cluster::NodeLoad {
        let legs = self.node_participants();
        let streams = self
            .meetings
            .values()
            .flat_map(|m| &m.participants)
            .map(|p| p.streams.len())
            .sum::<usize>();
        let meetings = self
            .meetings
            .values()
            .filter(|m| !m.participants.is_empty())
            .count();
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        // A share of 0 to 1 in millionths (the record keeps integers).
        let ppm = |share: f64| (share.clamp(0.0, 1.0) * 1e6).round() as u64;
        crate::cluster::NodeLoad {
            legs: wide(legs),
            streams: wide(streams),
            meetings: wide(meetings),
            max_legs: wide(self.policy.max_participants_per_node),
            busy_ppm: ppm(self.load.busiest_worker()),
            max_busy_ppm: ppm(self.policy.max_worker_busy.get()),
        }
    }

    /// Hands the workers a snapshot of the current state: an O(1) clone
    /// of the working copy, sharing all it did not change.
    fn publish(&mut self) {
        self.unpublished = false;
        // The control plane's clock: lingering transcodes stop by it.
        self.reconcile_transcodes(std::time::Instant::now());
        self.generation += 1;
        // Browsers' slot maps and skip sets, and transcodes' audiences,
        // depend on their whole meeting, so while any browser is seated or
        // any transcode runs (and once more after, to take their entries
        // out) the snapshot is rebuilt whole;
        // otherwise the working copy, kept up to date by each change, is
        // published as it is.
        let whole = self.needs_rebuild();
        if whole || self.rebuilt_last {
            self.routes = self.rebuild();
        }
        self.rebuilt_last = whole;
        self.routes.generation = self.generation;
        let replaced = self.cell.swap(Arc::new(self.routes.clone()));
        self.retire(replaced);
    }

    /// Keeps `replaced`, the snapshot the cell held until now, until no
    /// worker holds it, and frees those no one holds any more. A snapshot
    /// rebuilt whole shares nothing with the next, so freeing it walks
    /// every map of the node: were a worker the last to let go (its turn's
    /// guard, after the swap paid it), that walk would delay its next turn by up to milliseconds in a
    /// burst of browser joins. `cell.swap` has paid every reader's debt on
    /// the replaced snapshot, so its strong count is exact: above one,
    /// someone still reads it.
    fn retire(&mut self, replaced: Arc<RoutingSnapshot>) {
        self.retired.push(replaced);
        self.retired
            .retain(|snapshot| Arc::strong_count(snapshot) > 1);
        if self.retired.len() > RETIRED_KEPT {
            // A reader that holds one this long frees it itself.
            self.retired.remove(0);
        }
    }

    /// Publishes what was changed without being published (a turn of the
    /// handshake thread's), if anything was.
    pub(crate) fn publish_pending(&mut self) {
        if self.unpublished {
            self.publish();
        }
    }

    /// Whether the snapshot must be rebuilt whole (see [`Self::publish`]).
    fn needs_rebuild(&self) -> bool {
        self.transcodes.as_ref().is_some_and(|t| t.any_running())
            || self
                .meetings
                .values()
                .any(|m| m.participants.iter().any(|p| p.webrtc.is_some()))
    }

    /// The whole snapshot, built from the registry's state.
    fn rebuild(&mut self) -> RoutingSnapshot {
        let now = std::time::Instant::now();
        for meeting in self.meetings.values_mut() {
            browser::assign_slots(meeting, now, &self.routes.slot_feeds, self.sdes_level_ext);
        }
        let mut snapshot = RoutingSnapshot {
            next_leg: self.routes.next_leg,
            ..RoutingSnapshot::default()
        };
        for meeting in self.meetings.values() {
            let sources = browser::sources(meeting, self.sdes_level_ext);
            browser::publish_feeds(meeting, &sources, &self.routes.slot_feeds, &mut snapshot);
            let mut legs = Vec::with_capacity(meeting.participants.len());
            for participant in &meeting.participants {
                if let Some(seat) = &participant.webrtc {
                    browser::publish(participant, seat, &sources, &mut legs, &mut snapshot);
                    continue;
                }
                legs.push(participant.leg.id);
                if participant.source == Source::DialIn {
                    snapshot.send_only.insert(participant.leg.id);
                }
                snapshot
                    .rtcp_ssrcs
                    .insert(participant.rtcp_ssrc, participant.leg.id);
                snapshot.insert_leg(Arc::clone(&participant.leg));
                for stream in &participant.streams {
                    snapshot
                        .streams
                        .insert(stream.route.ssrc, Arc::clone(&stream.route));
                }
            }
            mixers::route(meeting, &mut legs, &mut snapshot);
            if !meeting.relays.is_empty() {
                // What came from another node goes to this node's legs
                // only, never on to a third node (split horizon).
                snapshot
                    .meetings
                    .insert(meeting.relay_idx, Arc::new(legs.clone()));
                snapshot.relayed.insert(meeting.relay_idx, meeting.idx);
                relays::route(&mut snapshot, &meeting.relays);
                legs.extend(meeting.relays.iter().map(relays::RelayLeg::id));
            }
            let renditions = match &self.transcodes {
                Some(transcodes) => transcodes.publish(meeting, &legs, &mut snapshot),
                None => Vec::new(),
            };
            viewers::publish_viewers(meeting, &renditions, &mut snapshot);
            snapshot.meetings.insert(meeting.idx, Arc::new(legs));
        }
        snapshot
    }

    /// A fresh key for `profile` from the system RNG.
    fn random_key(&self, profile: SrtpProfile) -> Result<MasterKey, ApiError> {
        let mut material = [0u8; 64];
        let material = &mut material[..profile.key_material_len()];
        self.rng
            .fill(material)
            .map_err(|_| ApiError::Internal("the system random generator failed".to_owned()))?;
        let key = MasterKey::new(profile, material)
            .map_err(|e| ApiError::Internal(format!("key generation failed: {e}")));
        material.zeroize();
        key
    }

    /// 16 random hex digits that `taken` does not claim.
    fn fresh_id(&self, taken: impl Fn(&str) -> bool) -> Result<String, ApiError> {
        loop {
            let mut bytes = [0u8; 8];
            self.rng
                .fill(&mut bytes)
                .map_err(|_| ApiError::Internal("the system random generator failed".to_owned()))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if !taken(&id) {
                return Ok(id);
            }
        }
    }
}

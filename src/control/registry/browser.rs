//! Browser participants (`transport: "webrtc"`, DESIGN.md "WebRTC"): the
//! participant is admitted like any other, through the same policy, but
//! its SRTP keys come from DTLS, per WHIP or WHEP session. Each session
//! whose handshake finished is a leg of its own (one key pair per DTLS
//! association), latched from the start to the address ICE validated, in
//! the meeting's fan-out set like every other leg. The participant's
//! admission leg is never published: it has no keys anyone knows.
//!
//! Two facts go to the snapshot with the legs: a WHIP leg only publishes
//! (`send_only`: nothing is sent to it), and a participant's legs never
//! receive its own streams (`participant_of`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use ring::rand::SecureRandom;

use super::{Meeting, NewStream, Participant, Registry, Stream};
use crate::control::ApiError;
use crate::relay::{LegId, LegRoute, RoutingSnapshot, StreamRoute};
use crate::srtp::MasterKey;

/// Sessions one browser participant may hold at once (a WHIP and a WHEP
/// session, with room for a reconnect before the old one is deleted).
pub(crate) const MAX_SESSIONS_PER_PARTICIPANT: usize = 4;

/// What makes a participant a browser: the token that lets it in.
#[derive(Debug)]
pub(crate) struct WebrtcSeat {
    /// The bearer token of its WHIP/WHEP requests (random, 256 bits).
    pub(crate) token: String,
    pub(crate) sessions: Vec<BrowserSession>,
}

/// One WHIP or WHEP session of a browser participant.
#[derive(Debug)]
pub(crate) struct BrowserSession {
    pub(crate) id: u64,
    /// WHIP (publishes) or WHEP (receives).
    pub(crate) publishes: bool,
    /// WHIP: the streams its offer declared (`a=ssrc`), published once
    /// the leg exists.
    offered: Vec<NewStream>,
    /// Once the handshake is done.
    leg: Option<Arc<LegRoute>>,
    streams: Vec<Stream>,
}

impl Registry {
    /// Makes an admitted participant a browser: returns its token.
    pub(crate) fn seat_browser(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
    ) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| ApiError::Internal("the system random generator failed".to_owned()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let participant = self.participant_mut(meeting_id, participant_id)?;
        participant.webrtc = Some(WebrtcSeat {
            token: token.clone(),
            sessions: Vec::new(),
        });
        self.publish();
        Ok(token)
    }

    /// The browser participant's token, and its meeting's mode; `None`
    /// for a participant that is not a browser.
    pub(crate) fn browser_token(
        &self,
        meeting_id: &str,
        participant_id: &str,
    ) -> Result<Option<&str>, ApiError> {
        let participant = self
            .meeting(meeting_id)?
            .participants
            .iter()
            .find(|p| p.id == participant_id)
            .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.to_owned()))?;
        Ok(participant.webrtc.as_ref().map(|s| s.token.as_str()))
    }

    /// Records a session whose answer is about to be sent; `false` when
    /// the participant holds [`MAX_SESSIONS_PER_PARTICIPANT`] already.
    pub(crate) fn open_browser_session(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
        id: u64,
        publishes: bool,
        offered: Vec<NewStream>,
    ) -> Result<bool, ApiError> {
        let participant = self.participant_mut(meeting_id, participant_id)?;
        let Some(seat) = participant.webrtc.as_mut() else {
            return Ok(false);
        };
        if seat.sessions.len() >= MAX_SESSIONS_PER_PARTICIPANT {
            return Ok(false);
        }
        seat.sessions.push(BrowserSession {
            id,
            publishes,
            offered,
            leg: None,
            streams: Vec::new(),
        });
        Ok(true)
    }

    /// The handshake of session `id` is done: its leg, keyed by DTLS and
    /// latched at `addr`, and (WHIP) its offered streams join the data
    /// plane. `false` when the session is gone.
    pub(crate) fn browser_leg_established(
        &mut self,
        id: u64,
        client_to_relay: MasterKey,
        relay_to_client: MasterKey,
        addr: SocketAddr,
    ) -> bool {
        let leg_id = LegId(self.next_leg);
        let Some((meeting_idx, mode)) = self
            .meetings
            .values()
            .find(|m| session_in(m, id))
            .map(|m| (m.idx, m.mode))
        else {
            return false;
        };
        let leg = LegRoute {
            id: leg_id,
            meeting: meeting_idx,
            mode,
            client_to_relay,
            relay_to_client,
            latch: Arc::default(),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        };
        leg.latch.set(addr);
        self.next_leg += 1;
        let offered = match self.session_mut(id) {
            Some(session) => {
                session.leg = Some(Arc::new(leg));
                std::mem::take(&mut session.offered)
            }
            None => return false,
        };
        let mut streams = Vec::with_capacity(offered.len());
        for new in offered {
            if self.ssrc_taken(new.ssrc, leg_id) {
                tracing::warn!(
                    ssrc = new.ssrc,
                    "a browser's offered SSRC is in use on this node; that stream is not relayed"
                );
                continue;
            }
            self.ssrcs.insert(new.ssrc);
            streams.push(Stream {
                route: Arc::new(StreamRoute {
                    ssrc: new.ssrc,
                    leg: leg_id,
                    kind: new.kind,
                    payload_type: new.payload_type,
                    highest_index: Arc::new(AtomicU64::new(0)),
                }),
                codec: new.codec,
            });
        }
        if let Some(session) = self.session_mut(id) {
            session.streams = streams;
        }
        self.publish();
        true
    }

    /// ICE nominated another address for session `id`'s leg.
    pub(crate) fn browser_leg_moved(&mut self, id: u64, addr: SocketAddr) {
        let moved = self
            .session_mut(id)
            .and_then(|s| s.leg.as_ref())
            .is_some_and(|leg| leg.latch.set(addr));
        if moved {
            // The RTCP address index follows.
            self.publish();
        }
    }

    /// Ends session `id`: its leg and streams leave the next snapshot.
    /// Returns whether it existed.
    pub(crate) fn end_browser_session(&mut self, id: u64) -> bool {
        let mut ended = None;
        for meeting in self.meetings.values_mut() {
            for participant in &mut meeting.participants {
                if let Some(seat) = participant.webrtc.as_mut()
                    && let Some(at) = seat.sessions.iter().position(|s| s.id == id)
                {
                    ended = Some(seat.sessions.remove(at));
                }
            }
        }
        let Some(session) = ended else {
            return false;
        };
        for stream in &session.streams {
            self.ssrcs.remove(&stream.route.ssrc);
        }
        self.publish();
        true
    }

    /// Whether session `id` belongs to this participant.
    pub(crate) fn browser_session_of(
        &self,
        meeting_id: &str,
        participant_id: &str,
        id: u64,
    ) -> bool {
        self.meeting(meeting_id).is_ok_and(|m| {
            m.participants
                .iter()
                .filter(|p| p.id == participant_id)
                .filter_map(|p| p.webrtc.as_ref())
                .any(|seat| seat.sessions.iter().any(|s| s.id == id))
        })
    }

    /// The sessions of a participant, or of every participant of a
    /// meeting when `participant_id` is `None` (to end them on the
    /// media port before the participant or meeting is removed).
    pub(crate) fn browser_sessions(
        &self,
        meeting_id: &str,
        participant_id: Option<&str>,
    ) -> Vec<u64> {
        let Ok(meeting) = self.meeting(meeting_id) else {
            return Vec::new();
        };
        meeting
            .participants
            .iter()
            .filter(|p| participant_id.is_none_or(|id| p.id == id))
            .filter_map(|p| p.webrtc.as_ref())
            .flat_map(|seat| seat.sessions.iter().map(|s| s.id))
            .collect()
    }

    fn participant_mut(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
    ) -> Result<&mut Participant, ApiError> {
        self.meeting_mut(meeting_id)?
            .participants
            .iter_mut()
            .find(|p| p.id == participant_id)
            .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.to_owned()))
    }

    fn session_mut(&mut self, id: u64) -> Option<&mut BrowserSession> {
        self.meetings
            .values_mut()
            .flat_map(|m| m.participants.iter_mut())
            .filter_map(|p| p.webrtc.as_mut())
            .flat_map(|seat| seat.sessions.iter_mut())
            .find(|s| s.id == id)
    }
}

fn session_in(meeting: &Meeting, id: u64) -> bool {
    meeting
        .participants
        .iter()
        .filter_map(|p| p.webrtc.as_ref())
        .any(|seat| seat.sessions.iter().any(|s| s.id == id))
}

/// Adds a browser participant's established legs to the snapshot being
/// built and to its meeting's fan-out set `legs`.
pub(super) fn publish(
    participant: &Participant,
    seat: &WebrtcSeat,
    legs: &mut Vec<LegId>,
    snapshot: &mut RoutingSnapshot,
) {
    for session in &seat.sessions {
        let Some(leg) = &session.leg else { continue };
        legs.push(leg.id);
        snapshot.legs.insert(leg.id, Arc::clone(leg));
        if let Some(addr) = leg.latch.get() {
            snapshot.ice_addresses.insert(addr, leg.id);
        }
        if session.publishes {
            snapshot.send_only.insert(leg.id);
        }
        snapshot.participant_of.insert(leg.id, participant.leg.id.0);
        for stream in &session.streams {
            snapshot
                .streams
                .insert(stream.route.ssrc, Arc::clone(&stream.route));
        }
    }
}

impl WebrtcSeat {
    /// Every SSRC its sessions publish.
    pub(crate) fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.sessions
            .iter()
            .flat_map(|s| s.streams.iter().map(|st| st.route.ssrc))
    }
}

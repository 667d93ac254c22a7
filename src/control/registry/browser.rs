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
use crate::relay::{LegId, LegRoute, MediaKind, RoutingSnapshot, SlotEntry, SlotMap, StreamRoute};
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

/// What a WHEP offer's recvonly m-line asks for.
#[derive(Debug, Clone)]
pub(crate) struct SlotRequest {
    pub(crate) kind: MediaKind,
    pub(crate) mid: String,
    /// The viewer's MID extension id (0: none).
    pub(crate) mid_ext: u8,
}

/// One receive slot of a WHEP session.
#[derive(Debug)]
struct ViewerSlot {
    request: SlotRequest,
    /// Its SSRC, declared in the answer.
    ssrc: u32,
    /// The publisher stream it carries now.
    source: Option<u32>,
}

/// One WHIP or WHEP session of a browser participant.
#[derive(Debug)]
pub(crate) struct BrowserSession {
    pub(crate) id: u64,
    /// WHIP (publishes) or WHEP (receives).
    pub(crate) publishes: bool,
    /// WHIP: the streams its offer declared (`a=ssrc`), each with the
    /// MID extension id of its m-line (0: none), published once the leg
    /// exists.
    offered: Vec<(NewStream, u8)>,
    /// WHIP: the MID extension id of each published stream.
    source_mid_ext: Vec<(u32, u8)>,
    /// WHEP: its receive slots.
    slots: Vec<ViewerSlot>,
    /// WHEP: the video codecs its offer negotiated, as preferences
    /// (`viewers.rs`); `None` for WHIP or an offer without video.
    pub(super) receive: Option<crate::transcode::VideoPrefs>,
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

    /// Records a session whose answer is about to be sent, with the SSRC
    /// of each of its slots (WHEP), in `slots` order; `None` when the
    /// participant holds [`MAX_SESSIONS_PER_PARTICIPANT`] already.
    pub(crate) fn open_browser_session(
        &mut self,
        meeting_id: &str,
        participant_id: &str,
        id: u64,
        offered: Vec<(NewStream, u8)>,
        slots: Vec<SlotRequest>,
    ) -> Result<Option<Vec<u32>>, ApiError> {
        let participant = self.participant_mut(meeting_id, participant_id)?;
        let leg = participant.leg.id;
        match participant.webrtc.as_ref() {
            Some(seat) if seat.sessions.len() < MAX_SESSIONS_PER_PARTICIPANT => {}
            _ => return Ok(None),
        }
        let mut viewer = Vec::with_capacity(slots.len());
        for request in slots {
            let ssrc = self.fresh_ssrc(leg)?;
            // Reserved: no stream may take a slot's SSRC.
            self.ssrcs.insert(ssrc);
            viewer.push(ViewerSlot {
                request,
                ssrc,
                source: None,
            });
        }
        let ssrcs = viewer.iter().map(|s| s.ssrc).collect();
        let seat = self
            .participant_mut(meeting_id, participant_id)?
            .webrtc
            .as_mut()
            .ok_or_else(|| ApiError::Internal("the browser seat vanished".to_owned()))?;
        seat.sessions.push(BrowserSession {
            id,
            publishes: viewer.is_empty(),
            offered,
            source_mid_ext: Vec::new(),
            slots: viewer,
            receive: None,
            leg: None,
            streams: Vec::new(),
        });
        Ok(Some(ssrcs))
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
        let mut mid_exts = Vec::with_capacity(offered.len());
        for (new, mid_ext) in offered {
            mid_exts.push((new.ssrc, mid_ext));
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
            session.source_mid_ext = mid_exts;
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
        for slot in &session.slots {
            self.ssrcs.remove(&slot.ssrc);
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

    pub(super) fn session_mut(&mut self, id: u64) -> Option<&mut BrowserSession> {
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
    sources: &[Source],
    legs: &mut Vec<LegId>,
    snapshot: &mut RoutingSnapshot,
) {
    for session in &seat.sessions {
        let Some(leg) = &session.leg else { continue };
        legs.push(leg.id);
        snapshot.insert_leg(Arc::clone(leg));
        if let Some(addr) = leg.latch.get() {
            snapshot.ice_addresses.insert(addr, leg.id);
        }
        if session.publishes {
            snapshot.send_only.insert(leg.id);
        } else {
            let map = slot_map(session, sources);
            for entry in &map.entries {
                snapshot.slot_sources.insert(entry.ssrc, entry.source);
            }
            snapshot.slot_maps.insert(leg.id, Arc::new(map));
        }
        snapshot.participant_of.insert(leg.id, participant.leg.id.0);
        for stream in &session.streams {
            snapshot
                .streams
                .insert(stream.route.ssrc, Arc::clone(&stream.route));
        }
    }
}

impl BrowserSession {
    /// Its leg, once the handshake is done.
    pub(super) fn leg(&self) -> Option<&Arc<LegRoute>> {
        self.leg.as_ref()
    }

    /// WHIP: the streams it publishes.
    pub(super) fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// WHEP: the publisher streams its video slots carry now.
    pub(super) fn video_sources(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .filter(|s| s.request.kind == MediaKind::Video)
            .filter_map(|s| s.source)
    }
}

impl WebrtcSeat {
    /// Every SSRC its sessions publish or reserve for slots.
    pub(crate) fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.sessions.iter().flat_map(|s| {
            s.streams
                .iter()
                .map(|st| st.route.ssrc)
                .chain(s.slots.iter().map(|slot| slot.ssrc))
        })
    }
}

/// A publisher stream of a meeting, as slots see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source {
    ssrc: u32,
    kind: MediaKind,
    /// The participant publishing it (its admission leg's number).
    owner: u64,
    /// The MID extension id in its packets (0: none).
    mid_ext: u8,
}

/// Every stream published in `meeting`, in admission order.
pub(super) fn sources(meeting: &Meeting) -> Vec<Source> {
    let mut out = Vec::new();
    for p in &meeting.participants {
        let owner = p.leg.id.0;
        for s in &p.streams {
            out.push(Source {
                ssrc: s.route.ssrc,
                kind: s.route.kind,
                owner,
                mid_ext: 0,
            });
        }
        for session in p.webrtc.iter().flat_map(|seat| &seat.sessions) {
            for s in &session.streams {
                let mid_ext = session
                    .source_mid_ext
                    .iter()
                    .find(|(ssrc, _)| *ssrc == s.route.ssrc)
                    .map_or(0, |(_, id)| *id);
                out.push(Source {
                    ssrc: s.route.ssrc,
                    kind: s.route.kind,
                    owner,
                    mid_ext,
                });
            }
        }
    }
    out
}

/// Fills the WHEP slots of `meeting`'s browsers: a slot keeps its
/// publisher while that stream exists; a free slot takes the first
/// stream of its kind (in admission order) that no slot of the session
/// carries and that is not the viewer's own. Slots are declared in the
/// answer, so a publisher joining later fills a free one with no
/// renegotiation.
pub(super) fn assign_slots(meeting: &mut Meeting) {
    let sources = sources(meeting);
    for p in &mut meeting.participants {
        let own = p.leg.id.0;
        for session in p
            .webrtc
            .iter_mut()
            .flat_map(|seat| seat.sessions.iter_mut())
        {
            for slot in &mut session.slots {
                if slot
                    .source
                    .is_some_and(|s| !sources.iter().any(|x| x.ssrc == s))
                {
                    slot.source = None;
                }
            }
            for at in 0..session.slots.len() {
                if session.slots[at].source.is_some() {
                    continue;
                }
                let kind = session.slots[at].request.kind;
                let taken: Vec<u32> = session.slots.iter().filter_map(|s| s.source).collect();
                session.slots[at].source = sources
                    .iter()
                    .find(|x| x.kind == kind && x.owner != own && !taken.contains(&x.ssrc))
                    .map(|x| x.ssrc);
            }
        }
    }
}

/// The data plane's view of a WHEP session's slots.
fn slot_map(session: &BrowserSession, sources: &[Source]) -> SlotMap {
    let entries = session
        .slots
        .iter()
        .filter_map(|slot| {
            let source = slot.source?;
            let mid_bytes = slot.request.mid.as_bytes();
            let mut mid = [0u8; 8];
            let mid_len = if mid_bytes.len() <= mid.len() {
                mid[..mid_bytes.len()].copy_from_slice(mid_bytes);
                u8::try_from(mid_bytes.len()).unwrap_or(0)
            } else {
                0
            };
            Some(SlotEntry {
                source,
                ssrc: slot.ssrc,
                mid,
                mid_len,
                source_mid_ext: sources
                    .iter()
                    .find(|x| x.ssrc == source)
                    .map_or(0, |x| x.mid_ext),
                mid_ext: slot.request.mid_ext,
            })
        })
        .collect();
    SlotMap { entries }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::registry::{NewMeeting, NewParticipant, Owner};
    use crate::metrics::MetricsHub;
    use crate::policy::{Role, Source as Origin};
    use crate::relay::{MeetingMode, empty_cell};
    use crate::srtp::SrtpProfile;

    fn person(name: &str) -> NewParticipant {
        NewParticipant {
            name: name.to_owned(),
            role: Role::Attendee,
            passcode: None,
            source: Origin::Api,
            profile: SrtpProfile::AeadAes256Gcm,
            client_to_relay: None,
            rtcp_ssrc: None,
            receive: None,
        }
    }

    fn audio(ssrc: u32) -> NewStream {
        NewStream {
            ssrc,
            kind: MediaKind::Audio,
            codec: "opus".to_owned(),
            payload_type: 111,
        }
    }

    /// A viewer's one audio slot: taken by the first publisher, kept while
    /// it publishes (a later one waits), taken over when it leaves; never
    /// filled with the viewer's own stream; the slot's SSRC is the one the
    /// answer declared.
    #[test]
    fn slots_are_filled_first_come_kept_and_handed_on() {
        let cell = empty_cell();
        let mut r = Registry::new(
            cell.clone(),
            Arc::new(MetricsHub::new("ring")),
            crate::policy::Policy::default(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        let m = r
            .create_meeting(NewMeeting {
                id: Some("m".into()),
                mode: MeetingMode::Standard,
                owner: Owner {
                    account: "o".into(),
                    verified: false,
                },
                passcode: None,
            })
            .unwrap()
            .id
            .clone();
        let web = r.admit(&m, person("web")).unwrap().id.clone();
        r.seat_browser(&m, &web).unwrap();
        let request = SlotRequest {
            kind: MediaKind::Audio,
            mid: "0".into(),
            mid_ext: 4,
        };
        let ssrcs = r
            .open_browser_session(&m, &web, 7, Vec::new(), vec![request])
            .unwrap()
            .unwrap();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        assert!(r.browser_leg_established(7, key.clone(), key, "127.0.0.1:5000".parse().unwrap()));
        let leg = *cell.load().slot_maps.keys().next().unwrap();
        let source = |cell: &crate::relay::SnapshotCell| {
            cell.load().slot_maps[&leg]
                .entries
                .first()
                .map(|e| (e.source, e.ssrc))
        };
        assert_eq!(source(&cell), None, "nothing published yet");

        let a = r.admit(&m, person("a")).unwrap().id.clone();
        let b = r.admit(&m, person("b")).unwrap().id.clone();
        r.add_stream(&m, &a, audio(0xA)).unwrap();
        assert_eq!(source(&cell), Some((0xA, ssrcs[0])));
        r.add_stream(&m, &b, audio(0xB)).unwrap();
        assert_eq!(
            source(&cell),
            Some((0xA, ssrcs[0])),
            "a slot keeps its publisher"
        );
        assert_eq!(cell.load().slot_sources[&ssrcs[0]], 0xA);
        r.remove_participant(&m, &a).unwrap();
        assert_eq!(
            source(&cell),
            Some((0xB, ssrcs[0])),
            "the next one takes it"
        );
        assert!(
            cell.load()
                .ice_addresses
                .contains_key(&"127.0.0.1:5000".parse().unwrap())
        );

        assert!(r.end_browser_session(7));
        assert!(cell.load().slot_maps.is_empty());
        assert!(
            !r.ssrc_taken(ssrcs[0], LegId(u64::MAX)),
            "the slot SSRC is free again"
        );
    }
}

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
//! receive its own streams (`participant_of`). Which publisher each WHEP
//! slot carries, and the header offsets that keep it one stream, are
//! `slots.rs`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use ring::rand::SecureRandom;

use sluice_webrtc::slots::{SlotRouter, StreamPoint};

use super::{Meeting, NewStream, Participant, Registry, Stream};
use crate::control::ApiError;
use crate::crypto::AnyGcm;
use crate::relay::{LegId, LegRoute, MediaKind, RoutingSnapshot, SlotEntry, SlotMap, StreamRoute};
use crate::srtp::MasterKey;
use crate::srtp::{SharedSendIndex, SrtpSession};
use crate::webrtc::learn::{self, PublishedLine, Unlearned};

/// Sessions one browser participant may hold at once (a WHIP and a WHEP
/// session, with room for a reconnect before the old one is deleted).
pub(crate) const MAX_SESSIONS_PER_PARTICIPANT: usize = 4;

/// What makes a participant a browser: the token that lets it in.
#[derive(Debug)]
pub(crate) struct WebrtcSeat {
    /// The bearer token of its WHIP/WHEP requests (random, 256 bits).
    pub(crate) token: String,
    pub(crate) sessions: Vec<BrowserSession>,
    /// Whether one of its sessions ever finished its handshake: such a
    /// participant is in the meeting's media, and a lock set since does
    /// not keep its further sessions (a WHEP after its WHIP, a reconnect)
    /// out. See [`Registry::browser_locked_out`].
    pub(crate) joined: bool,
}

/// Why an unknown SSRC from a browser's address taught nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LearnRefusal {
    /// No WHIP session's leg is latched at that address.
    #[error("no WHIP session is latched at that address")]
    NoSession,
    /// It does not authenticate under the session's key.
    #[error("it does not authenticate under the session's key")]
    Unauthenticated,
    /// Its SSRC is another stream's on this node.
    #[error("its SSRC is in use on this node")]
    SsrcInUse,
    /// It fits no free m-line.
    #[error(transparent)]
    Line(Unlearned),
}

/// What a WHEP offer's recvonly m-line asks for.
#[derive(Debug, Clone)]
pub(crate) struct SlotRequest {
    pub(crate) kind: MediaKind,
    pub(crate) mid: String,
    /// The viewer's MID extension id (0: none).
    pub(crate) mid_ext: u8,
}

mod slots;

pub(super) use slots::{assign_slots, publish_feeds};

/// One receive slot of a WHEP session.
#[derive(Debug)]
struct ViewerSlot {
    request: SlotRequest,
    /// Its SSRC, declared in the answer.
    ssrc: u32,
    /// The publisher stream it carries now.
    source: Option<u32>,
    /// What the slot adds to `source`'s sequence numbers and timestamps;
    /// `None` until they are known (the new source's first packet seen):
    /// until then the slot is left out of the data plane.
    offsets: Option<(u16, u32)>,
    /// The slot's last packet as the viewer saw it (slot numbering).
    last_out: Option<StreamPoint>,
    /// The slot's SRTP send index toward the viewer, shared by the
    /// workers across switches (`SlotMap::indices`).
    index: Arc<SharedSendIndex>,
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
    /// WHIP: its sending m-lines, for streams learnt from their first
    /// packets (`crate::webrtc::learn`).
    lines: Vec<PublishedLine>,
    /// WHEP: its receive slots.
    slots: Vec<ViewerSlot>,
    /// WHEP: who fills the slots (loudest audio, last-N video).
    router: Option<SlotRouter>,
    /// WHEP: each candidate stream's last position, and when the control
    /// plane first saw it there.
    seen: Vec<(u32, StreamPoint)>,
    /// WHEP: slot changes and keyframe requests (publisher video SSRC,
    /// slot SSRC) not yet handed to the media port.
    switches: u64,
    keyframes: Vec<(u32, u32)>,
    /// WHIP: the RFC 6464 extension id its offer negotiated (0: none).
    level_ext: u8,
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
            joined: false,
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

    /// Whether the meeting's lock keeps this browser's new WHIP/WHEP
    /// session out. The rule (DESIGN.md "WebRTC"): admission checks the
    /// lock, and so does every session of a participant that has not yet
    /// joined the media (none of its sessions ever finished a handshake):
    /// a participant admitted before the lock whose first WHIP or WHEP
    /// arrives after it is refused (403 `meeting_locked`), like one that
    /// asks for admission now. One that has joined the media keeps the
    /// right to open sessions (its WHEP after its WHIP, a reconnect after
    /// a lost connection): locking a meeting keeps newcomers out, it does
    /// not cut off those in it (the host removes a participant with
    /// DELETE).
    pub(crate) fn browser_locked_out(&self, meeting_id: &str, participant_id: &str) -> bool {
        let Ok(meeting) = self.meeting(meeting_id) else {
            return false;
        };
        meeting.locked
            && meeting
                .participants
                .iter()
                .filter(|p| p.id == participant_id)
                .filter_map(|p| p.webrtc.as_ref())
                .any(|seat| !seat.joined)
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
        lines: Vec<PublishedLine>,
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
                offsets: None,
                last_out: None,
                index: Arc::default(),
            });
        }
        let router = (!viewer.is_empty()).then(|| {
            let of = |kind| {
                viewer
                    .iter()
                    .filter(|s| s.request.kind == kind)
                    .map(|s| s.ssrc)
                    .collect::<Vec<_>>()
            };
            SlotRouter::new(&of(MediaKind::Audio), &of(MediaKind::Video))
        });
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
            lines,
            slots: viewer,
            router,
            seen: Vec::new(),
            switches: 0,
            keyframes: Vec::new(),
            level_ext: 0,
            receive: None,
            leg: None,
            streams: Vec::new(),
        });
        Ok(Some(ssrcs))
    }

    /// The handshake of session `id` is done: its leg, keyed by DTLS and
    /// latched at `addr`, and (WHIP) its offered streams join the data
    /// plane, published by the next [`Self::publish_pending`] (or any
    /// change published before it): the handshake thread publishes a
    /// turn's legs together, since while a browser is seated each
    /// publication rebuilds the snapshot whole. `false` when the session
    /// is gone.
    pub(crate) fn browser_leg_established_later(
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
        if let Some(seat) = self.seat_of_session_mut(id) {
            seat.joined = true;
        }
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
        self.unpublished = true;
        true
    }

    /// RTP with an unknown SSRC came from `from`: when `from` is where a
    /// WHIP session's leg is latched and the packet authenticates under
    /// that leg's key, its MID (or payload type) names the m-line whose
    /// stream it is, and the stream joins the data plane as an announced
    /// one would (`crate::webrtc::learn`). Returns the SSRC learnt.
    pub(crate) fn browser_learn(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<u32, LearnRefusal> {
        let (id, leg) = self
            .meetings
            .values()
            .flat_map(|m| &m.participants)
            .filter_map(|p| p.webrtc.as_ref())
            .flat_map(|seat| &seat.sessions)
            .filter(|s| s.publishes)
            .find_map(|s| {
                let leg = s.leg.as_ref()?;
                (leg.latch.get() == Some(from)).then(|| (s.id, Arc::clone(leg)))
            })
            .ok_or(LearnRefusal::NoSession)?;
        // Authenticated first: only the browser holding the session's key
        // can make a stream of it. The copy is decrypted by a session of
        // its own (no replay state shared with the workers').
        let mut plain = datagram.to_vec();
        let mut srtp = SrtpSession::new(AnyGcm::default(), &leg.client_to_relay)
            .map_err(|_| LearnRefusal::Unauthenticated)?;
        let len = plain.len();
        let rtp_len = srtp
            .unprotect_rtp(&mut plain, len)
            .map_err(|_| LearnRefusal::Unauthenticated)?;
        let rtp = plain.get(..rtp_len).unwrap_or_default();
        let ssrc = crate::rtp::RtpHeader::parse(rtp)
            .map_err(|_| LearnRefusal::Line(Unlearned::Malformed))?
            .ssrc()
            .0;
        if self.ssrc_taken(ssrc, leg.id) {
            return Err(LearnRefusal::SsrcInUse);
        }
        let session = self.session_mut(id).ok_or(LearnRefusal::NoSession)?;
        let at = learn::line_of(&session.lines, rtp).map_err(LearnRefusal::Line)?;
        let line = &mut session.lines[at];
        line.taken = true;
        session.source_mid_ext.push((ssrc, line.mid_ext));
        session.streams.push(Stream {
            route: Arc::new(StreamRoute {
                ssrc,
                leg: leg.id,
                kind: line.kind,
                payload_type: line.payload_type,
                highest_index: Arc::new(AtomicU64::new(0)),
            }),
            codec: line.codec.to_owned(),
        });
        self.ssrcs.insert(ssrc);
        self.publish();
        Ok(ssrc)
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

    fn seat_of_session_mut(&mut self, id: u64) -> Option<&mut WebrtcSeat> {
        self.meetings
            .values_mut()
            .flat_map(|m| m.participants.iter_mut())
            .filter_map(|p| p.webrtc.as_mut())
            .find(|seat| seat.sessions.iter().any(|s| s.id == id))
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
                snapshot
                    .slot_seq_offsets
                    .insert(entry.ssrc, entry.seq_offset);
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

/// The RFC 6464 extension id assumed for SDES publishers' audio unless
/// configured (`[sip] audio_level_extension`, which sluice's own dial-in
/// bridge writes its callers' levels under): they negotiate nothing with
/// the relay, and 1 is what WebRTC stacks use.
pub(super) const SDES_AUDIO_LEVEL_EXT: u8 = 1;

/// A publisher stream of a meeting, as slots see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source {
    ssrc: u32,
    kind: MediaKind,
    /// The participant publishing it (its admission leg's number).
    owner: u64,
    /// The MID extension id in its packets (0: none).
    mid_ext: u8,
    /// The RFC 6464 extension id in its packets (0: none; video).
    level_ext: u8,
}

/// Every stream published in `meeting`, in admission order; SDES-keyed
/// audio (the dial-in bridge's too) carries its level under
/// `sdes_level_ext`.
pub(super) fn sources(meeting: &Meeting, sdes_level_ext: u8) -> Vec<Source> {
    let mut out = Vec::new();
    for p in &meeting.participants {
        let owner = p.leg.id.0;
        let audio_ext = |kind, ext| if kind == MediaKind::Audio { ext } else { 0 };
        for s in &p.streams {
            out.push(Source {
                ssrc: s.route.ssrc,
                kind: s.route.kind,
                owner,
                mid_ext: 0,
                level_ext: audio_ext(s.route.kind, sdes_level_ext),
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
                    level_ext: audio_ext(s.route.kind, session.level_ext),
                });
            }
        }
    }
    out
}

/// The data plane's view of a WHEP session's slots.
fn slot_map(session: &BrowserSession, sources: &[Source]) -> SlotMap {
    let entries = session
        .slots
        .iter()
        .filter_map(|slot| {
            let source = slot.source?;
            let (seq_offset, ts_offset) = slot.offsets?;
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
                seq_offset,
                ts_offset,
            })
        })
        .collect();
    let indices = session
        .slots
        .iter()
        .map(|slot| (slot.ssrc, Arc::clone(&slot.index)))
        .collect();
    SlotMap { entries, indices }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::registry::{NewMeeting, NewParticipant, Owner};
    use crate::metrics::MetricsHub;
    use crate::relay::{MeetingMode, empty_cell};
    use crate::srtp::SrtpProfile;

    fn person(name: &str) -> NewParticipant {
        NewParticipant::attendee(name, None)
    }

    fn audio(ssrc: u32) -> NewStream {
        NewStream {
            ssrc,
            kind: MediaKind::Audio,
            codec: "opus".to_owned(),
            payload_type: 111,
        }
    }

    /// A registry publishing into the returned cell, with one standard
    /// meeting, `m`.
    fn standard_meeting() -> (crate::relay::SnapshotCell, Registry, String) {
        let cell = empty_cell();
        let mut r = Registry::new(
            cell.clone(),
            Arc::new(MetricsHub::new("browser")),
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
        (cell, r, m)
    }

    /// A leg installed "later" (the handshake thread's turn) is not in the
    /// workers' snapshot until `publish_pending`, which publishes once;
    /// with nothing pending it publishes nothing.
    #[test]
    fn a_turns_legs_are_published_together() {
        let (cell, mut r, m) = standard_meeting();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        for (session, name) in [(7, "web-a"), (8, "web-b")] {
            let web = r.admit(&m, person(name)).unwrap().id.clone();
            r.seat_browser(&m, &web).unwrap();
            r.open_browser_session(&m, &web, session, Vec::new(), Vec::new(), Vec::new())
                .unwrap();
        }
        let before = cell.load().generation;
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        assert!(r.browser_leg_established_later(7, key.clone(), key.clone(), at(5000)));
        assert!(r.browser_leg_established_later(8, key.clone(), key.clone(), at(5002)));
        assert!(
            !r.browser_leg_established_later(9, key.clone(), key, at(5004)),
            "no session 9"
        );
        assert_eq!(cell.load().generation, before, "nothing published yet");
        assert!(cell.load().ice_addresses.is_empty());

        r.publish_pending();
        let snapshot = cell.load();
        assert_eq!(snapshot.generation, before + 1, "one publication for both");
        assert!(snapshot.ice_addresses.contains_key(&at(5000)));
        assert!(snapshot.ice_addresses.contains_key(&at(5002)));
        r.publish_pending();
        assert_eq!(cell.load().generation, before + 1, "nothing was pending");
    }

    /// A viewer's one audio slot: taken by the first publisher, kept while
    /// it publishes (a later one waits), taken over when it leaves; never
    /// filled with the viewer's own stream; the slot's SSRC is the one the
    /// answer declared.
    #[test]
    fn slots_are_filled_first_come_kept_and_handed_on() {
        let (cell, mut r, m) = standard_meeting();
        let web = r.admit(&m, person("web")).unwrap().id.clone();
        r.seat_browser(&m, &web).unwrap();
        let request = SlotRequest {
            kind: MediaKind::Audio,
            mid: "0".into(),
            mid_ext: 4,
        };
        let ssrcs = r
            .open_browser_session(&m, &web, 7, Vec::new(), Vec::new(), vec![request])
            .unwrap()
            .unwrap();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        assert!(r.browser_leg_established_later(
            7,
            key.clone(),
            key,
            "127.0.0.1:5000".parse().unwrap()
        ));
        r.publish_pending();
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

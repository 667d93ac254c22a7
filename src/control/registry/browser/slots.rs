//! Which publisher each WHEP receive slot carries (DESIGN.md, "WebRTC"),
//! and the offsets that keep a slot one continuous RTP stream.
//!
//! Each WHEP session holds a sans-IO [`SlotRouter`] (loudest publishers
//! in audio slots by RFC 6464 level, last-N speakers in video slots),
//! driven here on the control plane's clock:
//! - every snapshot rebuild tells it who publishes now ([`assign_slots`]):
//!   a publisher who joins later takes a free slot at once, with no
//!   renegotiation (the slot SSRCs were declared in the answer);
//! - every `SLOT_TICK` (100 ms; the routers decide at most every 250 ms,
//!   the shorter tick keeps the positions fresh) the media port's thread
//!   calls [`Registry::tick_slots`]: the levels and positions the packet
//!   workers left in each stream's [`SourceFeed`] go to the routers, and
//!   a switch publishes a new snapshot.
//!
//! At a switch the slot's new offsets are computed once
//! ([`switch_offsets`]): from where the slot's stream stood (its old
//! source's last packet, in the slot's numbering) and where the new
//! source stands, each with the time the control plane saw it there. The
//! workers then add two numbers per packet and never touch the payload
//! (E2EE: SFrame ciphertext passes as it is). A new source whose position
//! is not known yet (it has sent nothing since the feed was made) keeps
//! the slot out of the data plane until its first packet is seen; a
//! slot's first source passes with its own numbering.
//!
//! A video slot's new source is asked for a keyframe: the requests wait
//! in the session until the next tick hands them to the media port,
//! which sends the PLI (`crate::webrtc::keyframe`).

use std::sync::Arc;
use std::time::Instant;

use sluice_webrtc::slots::{SlotEvent, SlotKind, SlotRouter, StreamPoint, switch_offsets};

use super::{BrowserSession, Meeting, Registry, Source, ViewerSlot, sources};
use crate::relay::{MediaKind, RoutingSnapshot, SourceFeed};
use crate::webrtc::keyframe::KeyframeRequest;

type Feeds = im::HashMap<u32, Arc<SourceFeed>>;

/// Keyframe requests one session keeps for the next tick at most.
const MAX_PENDING_KEYFRAMES: usize = 16;

/// Whether `meeting` has a WHEP session (a slot router).
fn viewed(meeting: &Meeting) -> bool {
    meeting
        .participants
        .iter()
        .filter_map(|p| p.webrtc.as_ref())
        .any(|seat| seat.sessions.iter().any(|s| s.router.is_some()))
}

/// What one tick hands the media port.
#[derive(Debug, Default)]
pub(crate) struct SlotTick {
    /// Slot changes since the last tick (for the metric).
    pub(crate) switches: u64,
    /// PLIs to send.
    pub(crate) keyframes: Vec<KeyframeRequest>,
}

/// One slot of a WHEP session, as its holder may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotView {
    pub(crate) mid: String,
    pub(crate) kind: MediaKind,
    /// Who fills it now (`None`: nobody).
    pub(crate) participant: Option<(String, String)>,
}

fn slot_kind(kind: MediaKind) -> SlotKind {
    match kind {
        MediaKind::Audio => SlotKind::Audio,
        MediaKind::Video => SlotKind::Video,
    }
}

/// The publishers a viewer (participant `own`) may see: per participant,
/// its first audio and first video stream, in admission order.
fn publishers(sources: &[Source], own: u64) -> Vec<(u64, Option<u32>, Option<u32>)> {
    let mut out: Vec<(u64, Option<u32>, Option<u32>)> = Vec::new();
    for s in sources.iter().filter(|s| s.owner != own) {
        let at = match out.iter().position(|p| p.0 == s.owner) {
            Some(at) => at,
            None => {
                out.push((s.owner, None, None));
                out.len() - 1
            }
        };
        let entry = &mut out[at];
        match s.kind {
            MediaKind::Audio => entry.1 = entry.1.or(Some(s.ssrc)),
            MediaKind::Video => entry.2 = entry.2.or(Some(s.ssrc)),
        }
    }
    out
}

/// Where stream `ssrc` stands now: its last packet, and when this plane
/// first saw it there (`now` if it moved since the last look).
fn position(
    ssrc: u32,
    seen: &[(u32, StreamPoint)],
    feeds: &Feeds,
    now: Instant,
) -> Option<StreamPoint> {
    let (seq, timestamp) = feeds.get(&ssrc)?.last()?;
    let at = seen
        .iter()
        .find(|(s, p)| *s == ssrc && p.seq == seq && p.timestamp == timestamp)
        .map_or(now, |(_, p)| p.at);
    Some(StreamPoint { seq, timestamp, at })
}

/// Records where the slot's stream stands, in the slot's numbering.
fn refresh_last_out(
    slot: &mut ViewerSlot,
    seen: &[(u32, StreamPoint)],
    feeds: &Feeds,
    now: Instant,
) {
    if let (Some(source), Some((seq_off, ts_off))) = (slot.source, slot.offsets)
        && let Some(p) = position(source, seen, feeds, now)
    {
        slot.last_out = Some(StreamPoint {
            seq: p.seq.wrapping_add(seq_off),
            timestamp: p.timestamp.wrapping_add(ts_off),
            at: p.at,
        });
    }
}

/// The offsets for `slot`'s (new) source, if they can be known now.
fn offsets_for(
    slot: &ViewerSlot,
    seen: &[(u32, StreamPoint)],
    feeds: &Feeds,
    now: Instant,
) -> Option<(u16, u32)> {
    let source = slot.source?;
    if slot.last_out.is_none() {
        return Some((0, 0));
    }
    let p = position(source, seen, feeds, now)?;
    Some(switch_offsets(
        slot_kind(slot.request.kind),
        slot.last_out,
        p,
        now,
    ))
}

/// Applies the router's events to the session's slots; whether any
/// slot changed.
fn apply_events(session: &mut BrowserSession, feeds: &Feeds, now: Instant) -> bool {
    let mut changed = false;
    while let Some(event) = session.router.as_mut().and_then(SlotRouter::poll_event) {
        match event {
            SlotEvent::Switched {
                kind, index, to, ..
            } => {
                let Some(slot) = session
                    .slots
                    .iter_mut()
                    .filter(|s| slot_kind(s.request.kind) == kind)
                    .nth(index)
                else {
                    continue;
                };
                refresh_last_out(slot, &session.seen, feeds, now);
                slot.source = to;
                slot.offsets = offsets_for(slot, &session.seen, feeds, now);
                session.switches += 1;
                changed = true;
            }
            SlotEvent::RequestKeyframe { ssrc } => {
                // Bounded: the media port drains them every tick.
                if session.keyframes.len() >= MAX_PENDING_KEYFRAMES {
                    continue;
                }
                if let Some(slot) = session.slots.iter().find(|s| s.source == Some(ssrc)) {
                    session.keyframes.push((ssrc, slot.ssrc));
                }
            }
        }
    }
    changed
}

/// Tells each WHEP router of `meeting` who publishes now, and applies
/// what it decides (at every snapshot rebuild).
pub(in crate::control::registry) fn assign_slots(
    meeting: &mut Meeting,
    now: Instant,
    feeds: &Feeds,
    sdes_level_ext: u8,
) {
    let sources = sources(meeting, sdes_level_ext);
    for p in &mut meeting.participants {
        let own = p.leg.id.0;
        for session in p
            .webrtc
            .iter_mut()
            .flat_map(|seat| seat.sessions.iter_mut())
        {
            let Some(router) = session.router.as_mut() else {
                continue;
            };
            let wanted = publishers(&sources, own);
            let gone: Vec<u64> = router
                .publisher_ids()
                .filter(|&id| !wanted.iter().any(|w| w.0 == id))
                .collect();
            for id in gone {
                router.remove_publisher(now, id);
            }
            for &(id, audio, video) in &wanted {
                if router.publisher(id) != Some((audio, video)) {
                    router.update_publisher(now, id, audio, video);
                }
            }
            apply_events(session, feeds, now);
        }
    }
}

/// Gives every stream of `meeting` a feed while the meeting has a WHEP
/// viewer (keeping the feeds of the last snapshot, so the figures carry on).
pub(in crate::control::registry) fn publish_feeds(
    meeting: &Meeting,
    sources: &[Source],
    old: &Feeds,
    snapshot: &mut RoutingSnapshot,
) {
    if !viewed(meeting) {
        return;
    }
    for s in sources {
        let feed = old
            .get(&s.ssrc)
            .filter(|f| f.level_extension() == s.level_ext)
            .cloned()
            .unwrap_or_else(|| Arc::new(SourceFeed::new(s.level_ext)));
        snapshot.slot_feeds.insert(s.ssrc, feed);
    }
}

/// One tick of `meeting`'s WHEP routers; whether any slot changed.
fn tick(meeting: &mut Meeting, feeds: &Feeds, now: Instant, sdes_level_ext: u8) -> bool {
    if !viewed(meeting) {
        return false;
    }
    let sources = sources(meeting, sdes_level_ext);
    // The loudest level of each audio stream since the last tick (one
    // taking per tick, shared by every viewer; a stream that sent nothing
    // is silent): one sample per tick for the routers' smoothing.
    let levels: Vec<(u32, u8)> = sources
        .iter()
        .filter(|s| s.kind == MediaKind::Audio)
        .map(|s| (s.ssrc, feeds.get(&s.ssrc).map_or(127, |f| f.take_level())))
        .collect();
    let mut changed = false;
    for p in &mut meeting.participants {
        for session in p
            .webrtc
            .iter_mut()
            .flat_map(|seat| seat.sessions.iter_mut())
        {
            let Some(router) = session.router.as_mut() else {
                continue;
            };
            let mut seen = Vec::with_capacity(sources.len());
            for s in &sources {
                let Some(point) = position(s.ssrc, &session.seen, feeds, now) else {
                    continue;
                };
                seen.push((s.ssrc, point));
            }
            for &(ssrc, level) in &levels {
                // The router ignores the viewer's own stream: not a publisher to it.
                router.handle_audio_level(now, ssrc, level);
            }
            session.seen = seen;
            router.handle_timeout(now);
            changed |= apply_events(session, feeds, now);
            for slot in &mut session.slots {
                if slot.source.is_some() && slot.offsets.is_none() {
                    slot.offsets = offsets_for(slot, &session.seen, feeds, now);
                    changed |= slot.offsets.is_some();
                }
                refresh_last_out(slot, &session.seen, feeds, now);
            }
        }
    }
    changed
}

impl Registry {
    /// Runs the WHEP routers on the figures the packet workers left
    /// (every `SLOT_TICK`, from the media port's thread); publishes if a
    /// slot changed. Returns the switches and keyframe requests since
    /// the last call.
    pub(crate) fn tick_slots(&mut self, now: Instant) -> SlotTick {
        let mut changed = false;
        for meeting in self.meetings.values_mut() {
            changed |= tick(meeting, &self.routes.slot_feeds, now, self.sdes_level_ext);
        }
        if changed {
            self.publish();
        }
        let mut out = SlotTick::default();
        let mut wanted = Vec::new();
        for session in self
            .meetings
            .values_mut()
            .flat_map(|m| m.participants.iter_mut())
            .filter_map(|p| p.webrtc.as_mut())
            .flat_map(|seat| seat.sessions.iter_mut())
        {
            out.switches += std::mem::take(&mut session.switches);
            wanted.append(&mut session.keyframes);
        }
        for (media_ssrc, sender_ssrc) in wanted {
            let leg = self
                .routes
                .streams
                .get(&media_ssrc)
                .and_then(|s| self.routes.legs.get(&s.leg));
            if let Some(leg) = leg {
                out.keyframes.push(KeyframeRequest {
                    leg: Arc::clone(leg),
                    media_ssrc,
                    sender_ssrc,
                });
            }
        }
        out
    }

    /// The RFC 6464 extension id WHIP session `id`'s offer negotiated.
    pub(crate) fn set_browser_level_extension(&mut self, id: u64, ext: u8) {
        if let Some(session) = self.session_mut(id) {
            session.level_ext = ext;
        }
    }

    /// Who fills each slot of WHEP session `id` of this participant, in
    /// the offer's order; `None` when it holds no such session.
    pub(crate) fn browser_slots(
        &self,
        meeting_id: &str,
        participant_id: &str,
        id: u64,
    ) -> Option<Vec<SlotView>> {
        let meeting = self.meeting(meeting_id).ok()?;
        let session = meeting
            .participants
            .iter()
            .filter(|p| p.id == participant_id)
            .filter_map(|p| p.webrtc.as_ref())
            .flat_map(|seat| &seat.sessions)
            .find(|s| s.id == id)?;
        let owner_of = |ssrc: u32| {
            meeting.participants.iter().find(|p| {
                p.streams.iter().any(|s| s.route.ssrc == ssrc)
                    || p.webrtc
                        .iter()
                        .flat_map(|seat| &seat.sessions)
                        .flat_map(|s| &s.streams)
                        .any(|s| s.route.ssrc == ssrc)
            })
        };
        Some(
            session
                .slots
                .iter()
                .map(|slot| SlotView {
                    mid: slot.request.mid.clone(),
                    kind: slot.request.kind,
                    participant: slot
                        .source
                        .and_then(owner_of)
                        .map(|p| (p.id.clone(), p.name.clone())),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_webrtc::slots::SWITCH_SEQ_GAP;

    use super::*;
    use crate::control::registry::{NewMeeting, NewParticipant, NewStream, Owner, SlotRequest};
    use crate::metrics::MetricsHub;
    use crate::relay::{LegId, MeetingMode, SlotEntry, SnapshotCell, empty_cell};
    use crate::srtp::{MasterKey, SrtpProfile};

    fn person(name: &str) -> NewParticipant {
        NewParticipant::attendee(name, None)
    }

    fn stream(ssrc: u32, kind: MediaKind) -> NewStream {
        NewStream {
            ssrc,
            kind,
            codec: if kind == MediaKind::Audio {
                "opus"
            } else {
                "VP8"
            }
            .to_owned(),
            payload_type: if kind == MediaKind::Audio { 111 } else { 96 },
        }
    }

    /// An RTP packet as a worker has it after unprotecting: with an RFC
    /// 6464 level in one-byte extension element 1 when `level` is given.
    fn rtp(ssrc: u32, seq: u16, ts: u32, level: Option<u8>) -> Vec<u8> {
        rtp_under(ssrc, seq, ts, level.map(|level| (1, level)))
    }

    /// The same with the level, if any, in element `(id, level)`.
    fn rtp_under(ssrc: u32, seq: u16, ts: u32, level: Option<(u8, u8)>) -> Vec<u8> {
        let x = if level.is_some() { 0x10 } else { 0 };
        let mut p = vec![0x80 | x, 111];
        p.extend(seq.to_be_bytes());
        p.extend(ts.to_be_bytes());
        p.extend(ssrc.to_be_bytes());
        if let Some((id, level)) = level {
            p.extend([0xBE, 0xDE, 0, 1, id << 4, level, 0, 0]);
        }
        p.extend(b"media");
        p
    }

    struct Meeting1 {
        registry: Registry,
        cell: SnapshotCell,
        viewer_leg: LegId,
        slot_ssrcs: Vec<u32>,
        names: [String; 2],
    }

    /// A meeting with a WHEP viewer (one audio, one video slot) and two
    /// SDES publishers, "ann" (audio 0xA1, video 0xA2) and "bob" (0xB1, 0xB2).
    fn meeting() -> Meeting1 {
        meeting_reading_levels_under(1)
    }

    /// The same, SDES publishers' levels read under extension `id`.
    fn meeting_reading_levels_under(id: u8) -> Meeting1 {
        let cell = empty_cell();
        let mut registry = Registry::new(
            cell.clone(),
            Arc::new(MetricsHub::new("ring")),
            crate::policy::Policy::default(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        registry.set_sdes_level_extension(id);
        let m = registry
            .create_meeting(NewMeeting {
                id: Some("m".into()),
                mode: MeetingMode::E2ee,
                owner: Owner {
                    account: "o".into(),
                    verified: true,
                },
                passcode: None,
            })
            .unwrap()
            .id
            .clone();
        let web = registry.admit(&m, person("web")).unwrap().id.clone();
        registry.seat_browser(&m, &web).unwrap();
        let requests = [(MediaKind::Audio, "0"), (MediaKind::Video, "1")]
            .map(|(kind, mid)| SlotRequest {
                kind,
                mid: mid.into(),
                mid_ext: 9,
            })
            .to_vec();
        let slot_ssrcs = registry
            .open_browser_session(&m, &web, 7, Vec::new(), Vec::new(), requests)
            .unwrap()
            .unwrap();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        assert!(registry.browser_leg_established_later(
            7,
            key.clone(),
            key,
            "127.0.0.1:5000".parse().unwrap()
        ));
        registry.publish_pending();
        let viewer_leg = *cell.load().slot_maps.keys().next().unwrap();
        let mut names = [String::new(), String::new()];
        for (at, (name, base)) in [("ann", 0xA0), ("bob", 0xB0)].into_iter().enumerate() {
            let id = registry.admit(&m, person(name)).unwrap().id.clone();
            registry
                .add_stream(&m, &id, stream(base + 1, MediaKind::Audio))
                .unwrap();
            registry
                .add_stream(&m, &id, stream(base + 2, MediaKind::Video))
                .unwrap();
            names[at] = id;
        }
        Meeting1 {
            registry,
            cell,
            viewer_leg,
            slot_ssrcs,
            names,
        }
    }

    impl Meeting1 {
        fn entry(&self, slot: usize) -> Option<SlotEntry> {
            let ssrc = self.slot_ssrcs[slot];
            let snapshot = self.cell.load();
            snapshot.slot_maps[&self.viewer_leg]
                .entries
                .iter()
                .find(|e| e.ssrc == ssrc)
                .copied()
        }

        /// What a worker does with a publisher packet: feeds it, and
        /// rewrites it if it fills a slot.
        fn forward(&self, packet: &[u8]) -> Option<Vec<u8>> {
            let snapshot = self.cell.load();
            let ssrc = u32::from_be_bytes(packet[8..12].try_into().unwrap());
            snapshot.slot_feeds[&ssrc].observe(packet);
            let entry = snapshot.slot_maps[&self.viewer_leg].slot_of(ssrc)?;
            let mut out = packet.to_vec();
            crate::relay::rewrite_header(&mut out, entry);
            Some(out)
        }
    }

    fn seq_ts(p: &[u8]) -> (u16, u32) {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes(p[4..8].try_into().unwrap()),
        )
    }

    /// The louder publisher takes the audio slot, the one who speaks takes
    /// the video slot (with a PLI), and each slot stays one continuous
    /// stream across the switch: SSRC, sequence number and timestamp
    /// continue, the payload is untouched. On simulated time.
    #[test]
    fn slots_follow_the_loudest_and_the_speaker_and_stay_continuous() {
        let mut m = meeting();
        let t0 = Instant::now();
        // First come: ann fills both slots at once, in her own numbering.
        assert_eq!(
            m.entry(0).map(|e| (e.source, e.seq_offset)),
            Some((0xA1, 0))
        );
        assert_eq!(m.entry(1).map(|e| (e.source, e.ts_offset)), Some((0xA2, 0)));
        let views = m.registry.browser_slots("m", &web_id(&m), 7).unwrap();
        assert_eq!(views[0].participant.as_ref().unwrap().1, "ann");
        assert_eq!(views[1].kind, MediaKind::Video);

        // 3 s of 20 ms audio frames: ann murmurs at -60 dBov, bob talks at
        // -20; video at 50 fps; the media port ticks every 100 ms.
        let mut last_audio = None;
        let mut last_video = None;
        let mut switches = 0;
        let mut keyframes = Vec::new();
        for frame in 0..150u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(frame));
            let (a_seq, b_seq) = (1000 + frame as u16, 60_000u16.wrapping_add(frame as u16));
            for (p, keep) in [
                (rtp(0xA1, a_seq, 5000 + 960 * frame, Some(60)), true),
                (rtp(0xB1, b_seq, 777 + 960 * frame, Some(20)), true),
                (rtp(0xA2, a_seq, 9000 + 1800 * frame, None), false),
                (rtp(0xB2, b_seq, 42 + 1800 * frame, None), false),
            ] {
                if let Some(out) = m.forward(&p) {
                    assert_eq!(&out[out.len() - 5..], b"media", "payload untouched");
                    let slot = if keep {
                        &mut last_audio
                    } else {
                        &mut last_video
                    };
                    if let Some((prev_src, prev)) = slot.replace((p[11], out.clone()))
                        && prev_src != p[11]
                    {
                        // The switch: same SSRC, sequence numbers on past the
                        // gap, the timestamp on by about one frame.
                        let (s0, t0) = seq_ts(&prev);
                        let (s1, t1) = seq_ts(&out);
                        assert_eq!(out[8..12], prev[8..12]);
                        assert_eq!(s1, s0.wrapping_add(SWITCH_SEQ_GAP), "seq continues");
                        let step = t1.wrapping_sub(t0);
                        let frame_ticks = if keep { 960 } else { 1800 };
                        assert!(
                            (frame_ticks..=frame_ticks + 100 * 90).contains(&step),
                            "ts continues: {step}"
                        );
                    }
                }
            }
            if frame % 5 == 4 {
                let tick = m.registry.tick_slots(now);
                switches += tick.switches;
                keyframes.extend(tick.keyframes);
            }
        }
        assert_eq!(m.entry(0).map(|e| e.source), Some(0xB1), "the loudest");
        assert_eq!(m.entry(1).map(|e| e.source), Some(0xB2), "the speaker");
        assert_eq!(last_audio.unwrap().0, 0xB1);
        assert_eq!(last_video.unwrap().0, 0xB2);
        // Two fills at the start, two switches.
        assert_eq!(switches, 4);
        let asked: Vec<_> = keyframes
            .iter()
            .map(|k| (k.media_ssrc, k.sender_ssrc))
            .collect();
        assert_eq!(asked, [(0xA2, m.slot_ssrcs[1]), (0xB2, m.slot_ssrcs[1])]);
        let views = m.registry.browser_slots("m", &web_id(&m), 7).unwrap();
        assert_eq!(
            views[1].participant,
            Some((m.names[1].clone(), "bob".to_owned()))
        );
        // A NACK for the slot reaches bob under his own numbers.
        let entry = m.entry(1).unwrap();
        assert_eq!(
            m.cell.load().slot_seq_offsets[&m.slot_ssrcs[1]],
            entry.seq_offset
        );
    }

    /// A slot whose publisher leaves waits for the next one's first packet
    /// before it carries it, so its numbering continues from where it was.
    #[test]
    fn a_slot_handed_on_waits_for_the_new_sources_first_packet() {
        let mut m = meeting();
        let t0 = Instant::now();
        m.forward(&rtp(0xA1, 10, 100, Some(30))).unwrap();
        m.registry.tick_slots(t0);
        let ann = m.names[0].clone();
        m.registry.remove_participant("m", &ann).unwrap();
        assert_eq!(m.entry(0), None, "bob's position is not known yet");
        assert!(m.forward(&rtp(0xB1, 500, 9_999, Some(30))).is_none());
        let later = t0 + Duration::from_millis(200);
        m.registry.tick_slots(later);
        let out = m.forward(&rtp(0xB1, 501, 9_999 + 960, Some(30))).unwrap();
        let (seq, ts) = seq_ts(&out);
        assert_eq!(seq, 10 + SWITCH_SEQ_GAP);
        // 200 ms after ann's last packet at 48 kHz, minus nothing: bob's
        // packet was seen at `later` too.
        assert_eq!(ts, 100 + 9600 + 960);
    }

    /// SDES-keyed publishers (the dial-in bridge's callers among them)
    /// carry their level under `[sip] audio_level_extension`: with 3
    /// configured, bob talking under 1 is not heard as talking, under 3
    /// he takes the audio slot from a silent ann.
    #[test]
    fn sdes_levels_are_read_under_the_configured_extension_id() {
        let mut m = meeting_reading_levels_under(3);
        let t0 = Instant::now();
        assert_eq!(m.entry(0).map(|e| e.source), Some(0xA1), "first come");
        let talk = |m: &mut Meeting1, frames: std::ops::Range<u32>, bob_id: u8| {
            for frame in frames {
                let now = t0 + Duration::from_millis(20 * u64::from(frame));
                let (seq, ts) = (frame as u16, 960 * frame);
                let _ = m.forward(&rtp_under(0xA1, seq, ts, Some((3, 127))));
                let _ = m.forward(&rtp_under(0xB1, seq, ts, Some((bob_id, 20))));
                if frame % 5 == 4 {
                    m.registry.tick_slots(now);
                }
            }
        };
        talk(&mut m, 0..100, 1);
        assert_eq!(
            m.entry(0).map(|e| e.source),
            Some(0xA1),
            "a level under another id is not read"
        );
        talk(&mut m, 100..200, 3);
        assert_eq!(
            m.entry(0).map(|e| e.source),
            Some(0xB1),
            "bob's level under the configured id"
        );
    }

    fn web_id(m: &Meeting1) -> String {
        m.registry.meetings["m"].participants[0].id.clone()
    }
}

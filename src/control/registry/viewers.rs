//! Receivers with video preferences, and what the snapshot gets for them
//! (DESIGN.md, "Transcoding"): who they are (an SDES participant that
//! gave `receive`, a WHEP session whose offer negotiated its video
//! codecs), which video streams they could receive, and the payload-type
//! maps ([`PtMap`]) under which each forwarded copy reaches them.
//!
//! A WHEP viewer's preferences are its offer's video codecs, each with
//! the payload type the offer gave it. In a standard meeting a viewer
//! that cannot take a slot's publisher gets a rendition in that slot
//! (`transcodes.rs`). In an E2EE meeting nothing can be transcoded: a slot
//! whose publisher sends a codec the viewer did not offer carries nothing
//! (the viewer could not decode it), and the session itself stands.
//!
//! The payload-type maps are kept up to date entry by entry for SDES
//! receivers (a join, a leave, a stream: the meeting's receivers with
//! preferences, O(meeting)); while a browser is seated or a transcode runs
//! the snapshot is rebuilt whole, and the maps with it (WHEP legs and
//! renditions included).

use std::sync::Arc;

use super::{Meeting, Participant, Registry};
use crate::relay::{LegId, MediaKind, MeetingMode, PtMap, RoutingSnapshot};
use crate::transcode::VideoPrefs;
use crate::video::VideoCodec;

/// A video stream a receiver may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VideoSource {
    pub(super) ssrc: u32,
    pub(super) codec: VideoCodec,
    pub(super) payload_type: u8,
    /// The participant publishing it (its admission leg's number).
    pub(super) owner: u64,
}

/// A receiving leg with video preferences.
#[derive(Debug)]
pub(super) struct VideoReceiver<'a> {
    pub(super) leg: LegId,
    /// Its participant (admission leg's number): never sent its own.
    pub(super) owner: u64,
    pub(super) prefs: &'a VideoPrefs,
    /// A WHEP leg: the publisher streams its video slots carry (it
    /// receives nothing else); `None`: every stream of the meeting.
    pub(super) slots: Option<Vec<u32>>,
}

impl VideoReceiver<'_> {
    /// Whether it would receive `source` (a publisher's stream) at all.
    pub(super) fn receives(&self, source: &VideoSource) -> bool {
        source.owner != self.owner
            && self
                .slots
                .as_ref()
                .is_none_or(|slots| slots.contains(&source.ssrc))
    }

    /// The payload types it wants for `sources`, where they differ.
    fn payload_types(&self, sources: &[VideoSource]) -> PtMap {
        PtMap::new(sources.iter().filter_map(|s| {
            let choice = self.prefs.codecs.iter().find(|c| c.codec == s.codec)?;
            let pt = choice.payload_type.get();
            (pt != s.payload_type).then_some((s.ssrc, pt))
        }))
    }
}

/// Every video stream published in `meeting` (SDES and WHIP) whose codec
/// sluice transcodes, in admission order.
pub(super) fn video_sources(meeting: &Meeting) -> Vec<VideoSource> {
    let mut out = Vec::new();
    for p in &meeting.participants {
        let owner = p.leg.id.0;
        let browser = p
            .webrtc
            .iter()
            .flat_map(|seat| &seat.sessions)
            .flat_map(|s| s.streams());
        for s in p.streams.iter().chain(browser) {
            if s.route.kind != MediaKind::Video {
                continue;
            }
            if let Some(codec) = VideoCodec::from_name(&s.codec) {
                out.push(VideoSource {
                    ssrc: s.route.ssrc,
                    codec,
                    payload_type: s.route.payload_type,
                    owner,
                });
            }
        }
    }
    out
}

/// Every receiving leg of `meeting` with video preferences: SDES
/// participants that gave `receive`, WHEP legs whose offer had video.
pub(super) fn video_receivers(meeting: &Meeting) -> Vec<VideoReceiver<'_>> {
    let mut out = Vec::new();
    for p in &meeting.participants {
        let owner = p.leg.id.0;
        if p.webrtc.is_none()
            && let Some(prefs) = &p.receive
        {
            out.push(VideoReceiver {
                leg: p.leg.id,
                owner,
                prefs,
                slots: None,
            });
        }
        for session in p.webrtc.iter().flat_map(|seat| &seat.sessions) {
            let (Some(leg), Some(prefs)) = (session.leg(), &session.receive) else {
                continue;
            };
            out.push(VideoReceiver {
                leg: leg.id,
                owner,
                prefs,
                slots: Some(session.video_sources().collect()),
            });
        }
    }
    out
}

/// Whether anyone in `meeting` has video preferences (no allocation).
pub(super) fn any_receiver(meeting: &Meeting) -> bool {
    meeting.participants.iter().any(|p| {
        p.receive.is_some()
            || p.webrtc
                .iter()
                .flat_map(|seat| &seat.sessions)
                .any(|s| s.receive.is_some())
    })
}

/// Brings the payload-type maps of `meeting`'s SDES receivers in `routes`
/// up to date (the incremental path; see the module doc).
pub(super) fn refresh_payload_types(routes: &mut RoutingSnapshot, meeting: &Meeting) {
    if !meeting.participants.iter().any(|p| p.receive.is_some()) {
        return;
    }
    let sources = video_sources(meeting);
    for receiver in video_receivers(meeting) {
        set_map(routes, receiver.leg, receiver.payload_types(&sources));
    }
}

/// Takes a departing participant's map out of `routes`.
pub(super) fn forget_payload_types(routes: &mut RoutingSnapshot, participant: &Participant) {
    if !routes.payload_types.is_empty() {
        routes.payload_types.remove(&participant.leg.id);
    }
}

fn set_map(snapshot: &mut RoutingSnapshot, leg: LegId, map: PtMap) {
    if map.is_empty() {
        snapshot.payload_types.remove(&leg);
    } else {
        snapshot.payload_types.insert(leg, Arc::new(map));
    }
}

/// The whole rebuild's part for `meeting`, once its legs, slot maps and
/// transcodes are in `snapshot`: every receiver's payload-type map, over
/// the meeting's streams and `renditions`; in an E2EE meeting, the WHEP
/// slots whose publisher sends a codec the viewer did not offer are left
/// empty.
pub(super) fn publish_viewers(
    meeting: &Meeting,
    renditions: &[VideoSource],
    snapshot: &mut RoutingSnapshot,
) {
    if !any_receiver(meeting) {
        return;
    }
    let mut sources = video_sources(meeting);
    for receiver in video_receivers(meeting) {
        if meeting.mode == MeetingMode::E2ee && receiver.slots.is_some() {
            empty_undecodable_slots(&receiver, &sources, snapshot);
        }
        sources.extend_from_slice(renditions);
        set_map(snapshot, receiver.leg, receiver.payload_types(&sources));
        sources.truncate(sources.len() - renditions.len());
    }
}

fn empty_undecodable_slots(
    receiver: &VideoReceiver<'_>,
    sources: &[VideoSource],
    snapshot: &mut RoutingSnapshot,
) {
    let Some(map) = snapshot.slot_maps.get(&receiver.leg) else {
        return;
    };
    let undecodable = |source: u32| {
        sources
            .iter()
            .find(|s| s.ssrc == source)
            .is_some_and(|s| !receiver.prefs.codecs.iter().any(|c| c.codec == s.codec))
    };
    if !map.entries.iter().any(|e| undecodable(e.source)) {
        return;
    }
    let mut kept = (**map).clone();
    kept.entries.retain(|e| {
        let drop = undecodable(e.source);
        if drop {
            snapshot.slot_sources.remove(&e.ssrc);
        }
        !drop
    });
    snapshot.slot_maps.insert(receiver.leg, Arc::new(kept));
}

impl Registry {
    /// WHEP session `id`'s offer negotiated these video codecs: its
    /// preferences from now on (set before its leg is established).
    pub(crate) fn set_viewer_codecs(&mut self, id: u64, prefs: VideoPrefs) {
        if let Some(session) = self.session_mut(id) {
            session.receive = Some(prefs);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    use super::super::{NewMeeting, NewParticipant, NewStream, Owner, SlotRequest, Transcodes};
    use super::*;
    use crate::metrics::MetricsHub;
    use crate::policy::Policy;
    use crate::relay::{SnapshotCell, empty_cell};
    use crate::srtp::{MasterKey, SrtpProfile};
    use crate::transcode::{EncoderKind, TranscodeCommand, TranscodeSender};

    fn registry(
        mode: MeetingMode,
        transcodes: bool,
    ) -> (Registry, SnapshotCell, Receiver<TranscodeCommand>) {
        let cell = empty_cell();
        let mut r = Registry::new(
            Arc::clone(&cell),
            Arc::new(MetricsHub::new("test")),
            Policy::default(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        if transcodes {
            r.attach_transcodes(Transcodes::new(
                4,
                Duration::ZERO,
                TranscodeSender::over(vec![tx]),
                vec![EncoderKind::Libx264, EncoderKind::Libvpx],
                Arc::default(),
            ));
        }
        r.create_meeting(NewMeeting {
            id: Some("m".to_owned()),
            mode,
            owner: Owner {
                account: "a".to_owned(),
                verified: true,
            },
            passcode: None,
        })
        .unwrap();
        (r, cell, rx)
    }

    fn prefs(codecs: &[(&str, u16)]) -> VideoPrefs {
        let codecs: Vec<(String, u16)> =
            codecs.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect();
        VideoPrefs::new(&codecs, None, None).unwrap()
    }

    fn join(r: &mut Registry, name: &str, receive: Option<VideoPrefs>) -> (String, LegId) {
        let p = r
            .admit("m", NewParticipant::attendee(name, receive))
            .unwrap();
        (p.id.clone(), p.leg.id)
    }

    fn video(ssrc: u32, codec: &str, pt: u8) -> NewStream {
        NewStream {
            ssrc,
            kind: MediaKind::Video,
            codec: codec.to_owned(),
            payload_type: pt,
        }
    }

    /// Each leg's payload types for the sources 7, 8 and 9.
    type Maps = Vec<(LegId, Vec<(u32, Option<u8>)>)>;

    fn maps(snapshot: &RoutingSnapshot) -> Maps {
        let mut out: Vec<_> = snapshot
            .payload_types
            .iter()
            .map(|(leg, map)| {
                let probe = [7, 8, 9].map(|s| (s, map.payload_type_of(s)));
                (*leg, probe.to_vec())
            })
            .collect();
        out.sort_unstable_by_key(|(leg, _)| *leg);
        out
    }

    /// A browser viewer of `m` with one video slot whose offer took
    /// `codecs`; its leg.
    fn viewer(r: &mut Registry, cell: &SnapshotCell, codecs: &[(&str, u16)]) -> LegId {
        let (web, _) = join(r, "web", None);
        r.seat_browser("m", &web).unwrap();
        let request = SlotRequest {
            kind: MediaKind::Video,
            mid: "0".into(),
            mid_ext: 0,
        };
        r.open_browser_session("m", &web, 7, Vec::new(), Vec::new(), vec![request])
            .unwrap()
            .unwrap();
        r.set_viewer_codecs(7, prefs(codecs));
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        assert!(r.browser_leg_established_later(
            7,
            key.clone(),
            key,
            "127.0.0.1:5000".parse().unwrap()
        ));
        r.publish_pending();
        *cell.load().slot_maps.keys().next().unwrap()
    }

    #[test]
    fn receivers_get_their_own_payload_types_kept_entry_by_entry() {
        let (mut r, cell, _) = registry(MeetingMode::Standard, false);
        let (camera, _) = join(&mut r, "camera", None);
        let (_, plain) = join(&mut r, "plain", None);
        let (room_id, room) = join(&mut r, "room", Some(prefs(&[("VP8", 120), ("H264", 96)])));
        r.add_stream("m", &camera, video(7, "VP8", 97)).unwrap();
        r.add_stream("m", &camera, video(8, "H264", 96)).unwrap();
        let snapshot = cell.load_full();
        assert!(!r.rebuilt_last, "published incrementally");
        // VP8 is renumbered for the room; H.264 is already its number.
        let want = vec![(room, vec![(7, Some(120)), (8, None), (9, None)])];
        assert_eq!(maps(&snapshot), want);
        assert!(!snapshot.payload_types.contains_key(&plain));
        assert_eq!(maps(&r.rebuild()), want, "the same as a rebuild");
        r.remove_participant("m", &room_id).unwrap();
        assert!(cell.load().payload_types.is_empty());
    }

    /// An RTP packet carrying libx264's SPS of 1280×720.
    fn sps_720p(ssrc: u32) -> Vec<u8> {
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
        rtp.extend(ssrc.to_be_bytes());
        rtp.extend([
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ]);
        rtp
    }

    #[test]
    fn a_receiver_of_the_same_codec_gets_a_smaller_rendition_once_the_height_is_known() {
        let (mut r, cell, rx) = registry(MeetingMode::Standard, true);
        let (camera, _) = join(&mut r, "camera", None);
        let small = VideoPrefs::new(&[("H264".to_owned(), 96)], Some(360), None).unwrap();
        let (_, thin) = join(&mut r, "thin", Some(small));
        let (_, room) = join(&mut r, "room", Some(prefs(&[("H264", 96)])));
        r.add_stream("m", &camera, video(7, "H264", 96)).unwrap();
        assert!(rx.try_recv().is_err(), "the height is not known yet");
        let probe = Arc::clone(&cell.load().heights[&7]);
        // A worker reads the SPS of a key frame; the next tick decides.
        probe.observe(&sps_720p(7));
        assert_eq!(probe.get(), Some(720));
        r.transcode_tick(std::time::Instant::now());
        let Ok(TranscodeCommand::Start(job)) = rx.try_recv() else {
            panic!("a 360p rendition starts");
        };
        assert_eq!(
            (job.spec.codec, job.spec.max_height),
            (VideoCodec::H264, Some(360))
        );
        let snap = cell.load();
        assert!(snap.heights.is_empty(), "known: no longer asked");
        assert_eq!(snap.audiences[&job.rendition_ssrc].to_vec(), [thin]);
        assert!(snap.audiences[&7].contains(&room), "no limit: the original");
        assert!(!snap.audiences[&7].contains(&thin));
        // A 360p source would have fitted: no second decision changes it.
        r.transcode_tick(std::time::Instant::now());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_whep_viewer_of_another_codec_gets_a_rendition_in_its_slot_under_its_number() {
        let (mut r, cell, rx) = registry(MeetingMode::Standard, true);
        let (camera, _) = join(&mut r, "camera", None);
        let leg = viewer(&mut r, &cell, &[("H264", 109)]);
        r.add_stream("m", &camera, video(7, "VP8", 96)).unwrap();
        let Ok(TranscodeCommand::Start(job)) = rx.try_recv() else {
            panic!("a transcode starts for the viewer");
        };
        assert_eq!(job.source_ssrc, 7);
        assert_eq!(job.spec.codec, VideoCodec::H264);
        let snap = cell.load();
        let slot = &snap.slot_maps[&leg].entries[0];
        assert_eq!(
            slot.source, job.rendition_ssrc,
            "the slot carries the rendition"
        );
        assert_eq!(snap.slot_sources[&slot.ssrc], job.rendition_ssrc);
        assert_eq!(snap.audiences[&job.rendition_ssrc].to_vec(), [leg]);
        assert!(!snap.audiences[&7].contains(&leg));
        assert_eq!(
            snap.payload_types[&leg].payload_type_of(job.rendition_ssrc),
            Some(109)
        );
    }

    #[test]
    fn a_whep_viewer_of_the_same_codec_gets_the_original_under_its_number() {
        let (mut r, cell, rx) = registry(MeetingMode::Standard, true);
        let (camera, _) = join(&mut r, "camera", None);
        let leg = viewer(&mut r, &cell, &[("VP8", 98)]);
        r.add_stream("m", &camera, video(7, "VP8", 96)).unwrap();
        assert!(rx.try_recv().is_err(), "no transcode");
        let snap = cell.load();
        assert_eq!(snap.slot_maps[&leg].entries[0].source, 7);
        assert_eq!(snap.payload_types[&leg].payload_type_of(7), Some(98));
    }

    #[test]
    fn in_an_e2ee_meeting_a_whep_viewer_of_another_codec_gets_nothing_and_stays() {
        let (mut r, cell, rx) = registry(MeetingMode::E2ee, true);
        let (camera, _) = join(&mut r, "camera", None);
        let leg = viewer(&mut r, &cell, &[("H264", 102)]);
        r.add_stream("m", &camera, video(7, "VP8", 96)).unwrap();
        assert!(rx.try_recv().is_err(), "nothing is transcoded");
        let snap = cell.load();
        assert!(snap.legs.contains_key(&leg), "the session stands");
        assert!(snap.slot_maps[&leg].entries.is_empty(), "its slot is empty");
        assert!(snap.slot_sources.is_empty());
    }
}

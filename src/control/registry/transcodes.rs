//! Transcoder participants (DESIGN.md, "Transcoding", "Media services are
//! participants"): which renditions run, decided here from what the
//! receivers asked for (`receive`) and what is published, every time the
//! registry publishes a snapshot (and on the service's tick, for lingering
//! transcodes whose time is up).
//!
//! For each receiver and each video stream of another participant of a
//! standard meeting that the receiver cannot take as it is, the receiver
//! subscribes to the (source, rendition) transcode in the
//! [`SessionTable`]: the first one starts it, the others share it. A
//! started transcode is a participant of its own: a leg with fresh keys
//! (AEAD_AES_256_GCM) and `rtcp_ssrc`, and the rendition stream under a
//! fresh SSRC; the media thread that runs it gets the keys in a
//! [`TranscodeCommand::Start`], as the dial-in bridge gets its caller's.
//! Receivers are SDES participants that gave `receive` and WHEP legs
//! whose offer named their video codecs (`viewers.rs`); a WHEP leg's
//! rendition fills the slot its source would have. A receiver with a
//! `max_height` that takes the source's codec waits on the source's
//! height, which the workers read from its key frames (snapshot
//! `heights`); the tick decides again once it is known.
//! E2EE meetings never get one (admission refuses `receive` with
//! `e2ee_forbids_transcoding`, and a WHEP viewer's codecs there only
//! leave a slot it could not decode empty). The meeting's lock,
//! passcode and size do not apply: the transcoder serves receivers
//! already admitted, and is not listed among the participants.
//!
//! What the snapshot gets (`RoutingSnapshot::audiences`): the rendition
//! goes to its receivers only; its source goes to the meeting less those
//! receivers, plus its transcoders. A receiver refused a transcode
//! (`max_sessions`, or no encoder for its codec) keeps the original
//! stream, and the refusal is counted once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::viewers::{self, VideoSource};
use super::{Meeting, Registry};
use crate::relay::{
    LegId, LegRoute, MediaKind, MeetingMode, RoutingSnapshot, SourceHeight, StreamRoute,
};
use crate::rtp::{PayloadType, Ssrc};
use crate::transcode::{
    Delivery, EncoderKind, RenditionSpec, SessionKey, SessionTable, SourceVideo, Subscription,
    TranscodeCommand, TranscodeCounters, TranscodeJob, TranscodeRefusal, TranscodeSender,
};
use crate::video::VideoCodec;

/// A receiver (leg) and a source stream (SSRC).
type Want = (u64, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Session(SessionKey),
    Refused,
}

/// A running transcode's participant.
#[derive(Debug)]
struct Running {
    job: u64,
    meeting: String,
    source: u32,
    encoder: EncoderKind,
    /// The rendition's codec.
    codec: VideoCodec,
    leg: Arc<LegRoute>,
    rtcp_ssrc: u32,
    stream: Arc<StreamRoute>,
}

/// The node's transcodes, owned by the registry.
#[derive(Debug)]
pub(crate) struct Transcodes {
    table: SessionTable,
    sender: TranscodeSender,
    encoders: Vec<EncoderKind>,
    counters: Arc<TranscodeCounters>,
    subs: BTreeMap<Want, Sub>,
    running: BTreeMap<SessionKey, Running>,
    next_job: u64,
    /// Sources whose picture height a receiver's `max_height` needs
    /// (`relay::SourceHeight`: the workers fill it in from key frames).
    heights: BTreeMap<u32, Arc<SourceHeight>>,
}

impl Transcodes {
    /// At most `max_sessions` transcodes, each kept `linger` after its last
    /// receiver, encoding with the first of `encoders` (the probe's order)
    /// for the rendition's codec, run by the threads behind `sender`.
    pub(crate) fn new(
        max_sessions: usize,
        linger: Duration,
        sender: TranscodeSender,
        encoders: Vec<EncoderKind>,
        counters: Arc<TranscodeCounters>,
    ) -> Self {
        Self {
            table: SessionTable::new(max_sessions, linger),
            sender,
            encoders,
            counters,
            subs: BTreeMap::new(),
            running: BTreeMap::new(),
            next_job: 0,
            heights: BTreeMap::new(),
        }
    }

    /// Adds the transcoders of `meeting` to the snapshot, and the
    /// audiences of their renditions and sources; `legs` is the meeting's
    /// fan-out set. A WHEP receiver's slot that carried the source carries
    /// the rendition instead (its slot map is in `snapshot` already).
    /// Returns the renditions, for the receivers' payload-type maps.
    pub(super) fn publish(
        &self,
        meeting: &Meeting,
        legs: &[LegId],
        snapshot: &mut RoutingSnapshot,
    ) -> Vec<VideoSource> {
        let mut by_source: BTreeMap<u32, (BTreeSet<LegId>, Vec<LegId>)> = BTreeMap::new();
        let mut renditions = Vec::new();
        for source in viewers::video_sources(meeting) {
            if let Some(probe) = self.heights.get(&source.ssrc)
                && probe.get().is_none()
            {
                snapshot.heights.insert(source.ssrc, Arc::clone(probe));
            }
        }
        for (key, r) in self.running.iter().filter(|(_, r)| r.meeting == meeting.id) {
            renditions.push(VideoSource {
                ssrc: r.stream.ssrc,
                codec: r.codec,
                payload_type: r.stream.payload_type,
                owner: r.leg.id.0,
            });
            snapshot.insert_leg(Arc::clone(&r.leg));
            snapshot
                .streams
                .insert(r.stream.ssrc, Arc::clone(&r.stream));
            snapshot.rtcp_ssrcs.insert(r.rtcp_ssrc, r.leg.id);
            snapshot.services.insert(r.leg.id);
            let receivers: Vec<LegId> = self.table.receivers(*key).map(LegId).collect();
            let source = by_source.entry(r.source).or_default();
            source.0.extend(receivers.iter().copied());
            source.1.push(r.leg.id);
            for receiver in &receivers {
                fill_slot(snapshot, *receiver, r.source, r.stream.ssrc);
            }
            snapshot.audiences.insert(r.stream.ssrc, receivers.into());
        }
        for (ssrc, (rendered, transcoders)) in by_source {
            let audience: Vec<LegId> = legs
                .iter()
                .filter(|l| !rendered.contains(l))
                .copied()
                .chain(transcoders)
                .collect();
            snapshot.audiences.insert(ssrc, audience.into());
        }
        renditions
    }
}

/// In WHEP leg `leg`'s slot map (if it has one), the slot carrying
/// `source` carries `rendition` from now on; the viewer's feedback about
/// the slot reaches the transcoder.
fn fill_slot(snapshot: &mut RoutingSnapshot, leg: LegId, source: u32, rendition: u32) {
    let Some(map) = snapshot.slot_maps.get(&leg) else {
        return;
    };
    if map.slot_of(source).is_none() {
        return;
    }
    let mut map = (**map).clone();
    for entry in map.entries.iter_mut().filter(|e| e.source == source) {
        entry.source = rendition;
        // The transcoder's packets carry no MID extension.
        entry.source_mid_ext = 0;
        snapshot.slot_sources.insert(entry.ssrc, rendition);
    }
    snapshot.slot_maps.insert(leg, Arc::new(map));
}

/// The payload type a rendition is written with. Every receiver gets it
/// under its own number (the fan-out's payload-type rewrite), so receivers
/// that number a codec differently still share one transcode.
fn rendition_payload_type(codec: VideoCodec) -> PayloadType {
    let pt = match codec {
        VideoCodec::Vp8 => 96,
        VideoCodec::H264 => 102,
    };
    // Both below 128.
    PayloadType::new(pt).expect("a 7-bit payload type")
}

impl Transcodes {
    /// Whether any transcode runs (its legs and audiences are in the
    /// snapshot, which is then rebuilt whole: see `Registry::publish`).
    pub(super) fn any_running(&self) -> bool {
        !self.running.is_empty()
    }
}

impl Registry {
    /// Starts deciding renditions (the daemon, once the media threads run).
    pub(crate) fn attach_transcodes(&mut self, transcodes: Transcodes) {
        self.transcodes = Some(Box::new(transcodes));
        self.publish();
    }

    /// Stops the transcodes whose linger ran out by `now` (the service's
    /// tick); publishes only when one did.
    pub(crate) fn transcode_tick(&mut self, now: Instant) {
        let due = self
            .transcodes
            .as_ref()
            .and_then(|t| t.table.poll_timeout())
            .is_some_and(|at| now >= at);
        // A worker learnt a source's height the last decision lacked.
        let learnt = self.routes.heights.values().any(|p| p.get().is_some());
        if due || learnt {
            self.publish();
        }
    }

    /// Brings the running transcodes in line with who needs what (see the
    /// module doc). Called at the start of every publication.
    pub(super) fn reconcile_transcodes(&mut self, now: Instant) {
        let Some(mut t) = self.transcodes.take() else {
            return;
        };
        // Nothing running, nothing wanted and no receiver with preferences:
        // nothing to reconcile (a check without allocation, so that joins
        // stay cheap while no one needs a rendition).
        let prefs = || self.meetings.values().any(viewers::any_receiver);
        if t.running.is_empty() && t.subs.is_empty() && t.heights.is_empty() && !prefs() {
            self.transcodes = Some(t);
            return;
        }
        let mut wanted: BTreeMap<Want, (String, VideoCodec, RenditionSpec)> = BTreeMap::new();
        let mut sources: HashSet<u32> = HashSet::new();
        let mut probed: BTreeMap<u32, VideoCodec> = BTreeMap::new();
        let feeds = &self.routes.slot_feeds;
        let sdes_level_ext = self.sdes_level_ext;
        for meeting in self.meetings.values_mut() {
            if meeting.mode == MeetingMode::Standard
                && meeting.participants.iter().any(|p| p.webrtc.is_some())
            {
                // WHEP viewers need renditions of what their slots carry.
                super::browser::assign_slots(meeting, now, feeds, sdes_level_ext);
            }
        }
        for meeting in self.meetings.values() {
            if meeting.mode != MeetingMode::Standard {
                continue;
            }
            let published = viewers::video_sources(meeting);
            sources.extend(published.iter().map(|s| s.ssrc));
            for receiver in viewers::video_receivers(meeting) {
                for source in published.iter().filter(|s| receiver.receives(s)) {
                    // Its own codec with a height limit: whether it fits
                    // waits on the source's height.
                    let takes = receiver
                        .prefs
                        .codecs
                        .iter()
                        .any(|c| c.codec == source.codec);
                    if takes && receiver.prefs.max_height.is_some() {
                        probed.insert(source.ssrc, source.codec);
                    }
                    let video = SourceVideo {
                        codec: source.codec,
                        height: t.heights.get(&source.ssrc).and_then(|p| p.get()),
                        kbps: None,
                    };
                    if let Delivery::Rendition(mut spec) = receiver.prefs.delivery(video) {
                        spec.payload_type = rendition_payload_type(spec.codec);
                        wanted.insert(
                            (receiver.leg.0, source.ssrc),
                            (meeting.id.clone(), source.codec, spec),
                        );
                    }
                }
            }
        }
        // The heights asked of the workers: those still needed and not
        // known yet (a known one leaves the snapshot; the registry keeps it).
        t.heights.retain(|ssrc, _| probed.contains_key(ssrc));
        for (ssrc, codec) in probed {
            t.heights
                .entry(ssrc)
                .or_insert_with(|| Arc::new(SourceHeight::new(codec)));
        }
        self.routes
            .heights
            .retain(|ssrc, _| t.heights.get(ssrc).is_some_and(|p| p.get().is_none()));
        for (ssrc, probe) in &t.heights {
            if probe.get().is_none() && !self.routes.heights.contains_key(ssrc) {
                self.routes.heights.insert(*ssrc, Arc::clone(probe));
            }
        }
        // Receivers that left, or no longer need what they had.
        let gone: Vec<Want> = t
            .subs
            .keys()
            .filter(|w| !wanted.contains_key(w))
            .copied()
            .collect();
        for want in gone {
            if let Some(Sub::Session(key)) = t.subs.remove(&want) {
                t.table.unsubscribe(now, key, want.0);
            }
        }
        // Sources that ended stop at once.
        let ended: BTreeSet<u32> = t
            .running
            .values()
            .map(|r| r.source)
            .filter(|s| !sources.contains(s))
            .collect();
        for source in ended {
            for key in t.table.source_gone(Ssrc(source)) {
                self.stop_transcode(&mut t, key);
            }
        }
        // Receivers that need a rendition now.
        for (want, (meeting, codec, spec)) in wanted {
            if t.subs.contains_key(&want) {
                continue;
            }
            let Some(encoder) = t.encoders.iter().copied().find(|e| e.codec() == spec.codec) else {
                t.counters.refused(TranscodeRefusal::NoEncoder);
                t.subs.insert(want, Sub::Refused);
                continue;
            };
            let sub = match t.table.subscribe(Ssrc(want.1), spec, want.0) {
                Subscription::Start { key, evicted } => {
                    if let Some(old) = evicted {
                        self.stop_transcode(&mut t, old);
                    }
                    match self.start_transcode(&mut t, key, &meeting, (want.1, codec), encoder) {
                        Ok(()) => Sub::Session(key),
                        Err(e) => {
                            tracing::warn!("transcode not started: {}", e.message());
                            t.table.unsubscribe(now, key, want.0);
                            Sub::Refused
                        }
                    }
                }
                Subscription::Join(key) => Sub::Session(key),
                Subscription::Refused => {
                    t.counters.refused(TranscodeRefusal::MaxSessions);
                    Sub::Refused
                }
            };
            t.subs.insert(want, sub);
        }
        // Lingering transcodes whose time is up.
        while let Some(key) = t.table.poll_stop(now) {
            self.stop_transcode(&mut t, key);
        }
        self.transcodes = Some(t);
    }

    /// The transcoder participant of `key`: a leg, its `rtcp_ssrc`, the
    /// rendition stream; its media thread is told to start.
    fn start_transcode(
        &mut self,
        t: &mut Transcodes,
        key: SessionKey,
        meeting_id: &str,
        (source, source_codec): (u32, VideoCodec),
        encoder: EncoderKind,
    ) -> Result<(), super::ApiError> {
        let spec = t
            .table
            .spec(key)
            .ok_or_else(|| super::ApiError::Internal("a transcode without its spec".to_owned()))?;
        let meeting = self.meeting(meeting_id)?;
        let (idx, mode) = (meeting.idx, meeting.mode);
        let super::mixers::ServiceLeg {
            route: leg,
            rtcp_ssrc,
            client_to_relay,
            relay_to_client,
        } = self.service_leg(idx, mode)?;
        let leg_id = leg.id;
        let ssrc = self.fresh_ssrc(leg_id)?;
        self.ssrcs.insert(ssrc);
        let stream = Arc::new(StreamRoute {
            ssrc,
            leg: leg_id,
            kind: MediaKind::Video,
            payload_type: spec.payload_type.get(),
            highest_index: Arc::new(AtomicU64::new(0)),
        });
        let job = t.next_job;
        t.next_job += 1;
        t.sender
            .send(TranscodeCommand::Start(Box::new(TranscodeJob {
                id: job,
                source_ssrc: source,
                source_codec,
                rendition_ssrc: ssrc,
                rtcp_ssrc,
                spec,
                encoder,
                client_to_relay,
                relay_to_client,
                relay: self.media_address,
            })));
        tracing::info!(
            meeting = meeting_id,
            source,
            rendition = ssrc,
            codec = spec.codec.name(),
            max_height = ?spec.max_height,
            kbps = spec.max_kbps,
            encoder = encoder.name(),
            "transcode started"
        );
        t.running.insert(
            key,
            Running {
                job,
                meeting: meeting_id.to_owned(),
                source,
                encoder,
                codec: spec.codec,
                leg,
                rtcp_ssrc,
                stream,
            },
        );
        Ok(())
    }

    /// Removes the transcoder participant of `key` and stops its thread's work.
    fn stop_transcode(&mut self, t: &mut Transcodes, key: SessionKey) {
        let Some(r) = t.running.remove(&key) else {
            return;
        };
        self.ssrcs.remove(&r.stream.ssrc);
        self.rtcp_ssrcs.remove(&r.rtcp_ssrc);
        t.sender.send(TranscodeCommand::Stop(r.job));
        tracing::info!(
            meeting = r.meeting,
            source = r.source,
            rendition = r.stream.ssrc,
            encoder = r.encoder.name(),
            "transcode stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::Receiver;

    use super::super::{NewMeeting, NewParticipant, NewStream, Owner};
    use super::*;
    use crate::metrics::MetricsHub;
    use crate::policy::Policy;
    use crate::relay::{SnapshotCell, empty_cell};
    use crate::transcode::VideoPrefs;

    fn registry(max_sessions: usize) -> (Registry, SnapshotCell, Receiver<TranscodeCommand>) {
        let cell = empty_cell();
        let mut r = Registry::new(
            Arc::clone(&cell),
            Arc::new(MetricsHub::new("test")),
            Policy::default(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        r.attach_transcodes(Transcodes::new(
            max_sessions,
            Duration::ZERO,
            TranscodeSender::over(vec![tx]),
            vec![EncoderKind::Libx264, EncoderKind::Libvpx],
            Arc::default(),
        ));
        r.create_meeting(NewMeeting {
            id: Some("m".to_owned()),
            mode: MeetingMode::Standard,
            owner: Owner {
                account: "a".to_owned(),
                verified: true,
            },
            passcode: None,
        })
        .unwrap();
        (r, cell, rx)
    }

    fn join(
        r: &mut Registry,
        name: &str,
        receive: Option<(&str, u16, Option<u32>)>,
    ) -> (String, LegId) {
        let receive = receive
            .map(|(codec, pt, h)| VideoPrefs::new(&[(codec.to_owned(), pt)], h, None).unwrap());
        let p = r
            .admit("m", NewParticipant::attendee(name, receive))
            .unwrap();
        (p.id.clone(), p.leg.id)
    }

    #[test]
    fn a_rendition_goes_to_its_receivers_only_and_they_stop_getting_the_source() {
        let (mut r, cell, rx) = registry(4);
        let (publisher, p) = join(&mut r, "camera", None);
        let (a_id, a) = join(&mut r, "thin", Some(("VP8", 100, Some(360))));
        let (_, b) = join(&mut r, "room", Some(("H264", 96, None)));
        let (c_id, c) = join(&mut r, "thin too", Some(("VP8", 100, Some(360))));
        let (_, d) = join(&mut r, "browser", None);
        r.add_stream(
            "m",
            &publisher,
            NewStream {
                ssrc: 7,
                kind: MediaKind::Video,
                codec: "H264".to_owned(),
                payload_type: 96,
            },
        )
        .unwrap();
        // One transcode for A and C: its leg's keys go to the media thread.
        let Ok(TranscodeCommand::Start(job)) = rx.try_recv() else {
            panic!("a transcode starts");
        };
        assert!(rx.try_recv().is_err(), "one, shared");
        assert_eq!((job.source_ssrc, job.encoder), (7, EncoderKind::Libvpx));
        let snap = cell.load();
        let rendition = &snap.audiences[&job.rendition_ssrc];
        assert_eq!(rendition.to_vec(), [a, c]);
        let leg = snap.streams[&job.rendition_ssrc].leg;
        assert!(snap.services.contains(&leg));
        assert_eq!(snap.rtcp_ssrcs[&job.rtcp_ssrc], leg);
        let source = &snap.audiences[&7];
        assert!(source.contains(&b) && source.contains(&d) && source.contains(&leg));
        assert!(!source.contains(&a) && !source.contains(&c));
        let members = &snap.meetings[&snap.legs[&p].meeting];
        assert!(
            !members.contains(&leg),
            "the transcoder is outside the fan-out set"
        );
        // Both leave: with no linger, the transcode stops and its leg goes.
        r.remove_participant("m", &a_id).unwrap();
        assert!(rx.try_recv().is_err(), "C still needs it");
        r.remove_participant("m", &c_id).unwrap();
        let Ok(TranscodeCommand::Stop(id)) = rx.try_recv() else {
            panic!("the transcode stops");
        };
        assert_eq!(id, job.id);
        let snap = cell.load();
        assert!(snap.audiences.is_empty() && snap.services.is_empty());
        assert!(!snap.streams.contains_key(&job.rendition_ssrc));
    }

    #[test]
    fn beyond_max_sessions_the_receiver_keeps_the_source_and_is_counted() {
        let (mut r, cell, rx) = registry(1);
        let (publisher, _) = join(&mut r, "camera", None);
        let (_, a) = join(&mut r, "a", Some(("VP8", 100, Some(360))));
        let (_, b) = join(&mut r, "b", Some(("VP8", 100, Some(180))));
        r.add_stream(
            "m",
            &publisher,
            NewStream {
                ssrc: 7,
                kind: MediaKind::Video,
                codec: "H264".to_owned(),
                payload_type: 96,
            },
        )
        .unwrap();
        assert!(matches!(rx.try_recv(), Ok(TranscodeCommand::Start(_))));
        assert!(rx.try_recv().is_err());
        let source = &cell.load().audiences[&7];
        assert!(source.contains(&b) && !source.contains(&a));
        let counters = &r.transcodes.as_ref().unwrap().counters;
        assert_eq!(counters.refusals(TranscodeRefusal::MaxSessions), 1);
        // Counted once, not at every publication.
        join(&mut r, "bystander", None);
        let counters = &r.transcodes.as_ref().unwrap().counters;
        assert_eq!(counters.refusals(TranscodeRefusal::MaxSessions), 1);
    }
}

//! The dial-in bridge's receive legs (DESIGN.md, "Media services are
//! participants"): one per meeting and media pool thread that has calls
//! of the meeting, admitted by the thread when its first call of the
//! meeting is bridged and removed with its last.
//!
//! A caller's own participant publishes its stream as before but takes
//! nothing (its leg is `send_only`, see `registry.rs`): every stream of
//! the meeting reaches the thread once, through the mixer leg, which is in
//! the meeting's fan-out set and publishes nothing. So the relay protects
//! each packet once per thread instead of once per call, and the thread
//! decrypts it once; the meeting mix leaves each caller's own stream out
//! of what that caller hears, by SSRC, as it did when the relay left it
//! out. Like a transcoder, the mixer leg serves callers already admitted:
//! the meeting's lock, passcode and size do not apply to it, and it is not
//! listed among the participants. It latches with SRTCP receiver reports
//! under its `rtcp_ssrc` (one lookup, as any receive-only leg).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{Meeting, Registry, refresh_sets};
use crate::policy::Refusal;
use crate::relay::{LegId, LegRoute, MeetingIdx, MeetingMode, RoutingSnapshot};
use crate::srtp::{MasterKey, SrtpProfile};

use super::super::ApiError;

/// A mixer leg as the registry keeps it, in its meeting.
#[derive(Debug)]
pub(crate) struct MixerSeat {
    pub(crate) leg: Arc<LegRoute>,
    pub(crate) rtcp_ssrc: u32,
}

/// What the bridge needs of a mixer leg it was given.
#[derive(Debug, Clone)]
pub(crate) struct AdmittedMixer {
    pub(crate) leg: LegId,
    pub(crate) rtcp_ssrc: u32,
    pub(crate) client_to_relay: MasterKey,
    pub(crate) relay_to_client: MasterKey,
}

/// A leg the relay's own media services (mixer legs, transcoders) are
/// given: its route, its `rtcp_ssrc` (registered) and its fresh keys.
pub(super) struct ServiceLeg {
    pub(super) route: Arc<LegRoute>,
    pub(super) rtcp_ssrc: u32,
    pub(super) client_to_relay: MasterKey,
    pub(super) relay_to_client: MasterKey,
}

impl Registry {
    /// A new service leg in the meeting `idx`: fresh AEAD_AES_256_GCM keys
    /// both ways, a fresh `rtcp_ssrc` registered for it, no latch yet. The
    /// caller puts it into the routes.
    pub(super) fn service_leg(
        &mut self,
        idx: MeetingIdx,
        mode: MeetingMode,
    ) -> Result<ServiceLeg, ApiError> {
        let profile = SrtpProfile::AeadAes256Gcm;
        let client_to_relay = self.random_key(profile)?;
        let relay_to_client = self.random_key(profile)?;
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let rtcp_ssrc = self.fresh_ssrc(id)?;
        self.rtcp_ssrcs.insert(rtcp_ssrc, id);
        let route = Arc::new(LegRoute {
            id,
            meeting: idx,
            mode,
            client_to_relay: client_to_relay.clone(),
            relay_to_client: relay_to_client.clone(),
            latch: Arc::default(),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        });
        Ok(ServiceLeg {
            route,
            rtcp_ssrc,
            client_to_relay,
            relay_to_client,
        })
    }

    /// Admits a mixer leg into `meeting_id` (standard meetings only: E2EE
    /// meetings take no dial-in), with fresh AEAD_AES_256_GCM keys and a
    /// fresh `rtcp_ssrc`.
    pub(crate) fn admit_mixer(&mut self, meeting_id: &str) -> Result<AdmittedMixer, ApiError> {
        let meeting = self.meeting(meeting_id)?;
        if meeting.mode == MeetingMode::E2ee {
            return Err(ApiError::Refused(Refusal::E2eeForbidsDialIn));
        }
        let (idx, mode) = (meeting.idx, meeting.mode);
        let ServiceLeg {
            route: leg,
            rtcp_ssrc,
            client_to_relay,
            relay_to_client,
        } = self.service_leg(idx, mode)?;
        let leg_id = leg.id;
        self.routes.insert_leg(Arc::clone(&leg));
        self.routes.rtcp_ssrcs.insert(rtcp_ssrc, leg_id);
        let meeting = self
            .meetings
            .get_mut(meeting_id)
            .ok_or_else(|| ApiError::MeetingNotFound(meeting_id.to_owned()))?;
        meeting.mixers.push(MixerSeat { leg, rtcp_ssrc });
        refresh_sets(&mut self.routes, meeting);
        self.publish();
        Ok(AdmittedMixer {
            leg: leg_id,
            rtcp_ssrc,
            client_to_relay,
            relay_to_client,
        })
    }

    /// Removes the mixer leg `leg` from `meeting_id` (a no-op when the
    /// meeting, or the leg, is gone already).
    pub(crate) fn remove_mixer(&mut self, meeting_id: &str, leg: LegId) {
        let Some(meeting) = self.meetings.get_mut(meeting_id) else {
            return;
        };
        let Some(at) = meeting.mixers.iter().position(|m| m.leg.id == leg) else {
            return;
        };
        let seat = meeting.mixers.remove(at);
        unroute(&mut self.routes, std::slice::from_ref(&seat));
        self.rtcp_ssrcs.remove(&seat.rtcp_ssrc);
        refresh_sets(&mut self.routes, meeting);
        self.publish();
    }

    /// Whether the mixer leg `leg` is still in `meeting_id` (a meeting
    /// deleted, and perhaps made again under its id, has lost it).
    pub(crate) fn has_mixer(&self, meeting_id: &str, leg: LegId) -> bool {
        self.meetings
            .get(meeting_id)
            .is_some_and(|m| m.mixers.iter().any(|s| s.leg.id == leg))
    }

    /// Forgets a deleted meeting's mixer legs' `rtcp_ssrc`s.
    pub(super) fn forget_mixers(&mut self, meeting: &Meeting) {
        for seat in &meeting.mixers {
            self.rtcp_ssrcs.remove(&seat.rtcp_ssrc);
        }
        unroute(&mut self.routes, &meeting.mixers);
    }
}

/// Takes mixer legs out of `routes` (their meeting's set is refreshed, or
/// removed, by the caller).
fn unroute(routes: &mut RoutingSnapshot, seats: &[MixerSeat]) {
    for seat in seats {
        routes.legs.remove(&seat.leg.id);
        routes.rtcp_ssrcs.remove(&seat.rtcp_ssrc);
    }
}

/// Puts `meeting`'s mixer legs into a snapshot being rebuilt whole, and
/// their ids into `legs`, the meeting's fan-out set.
pub(super) fn route(meeting: &Meeting, legs: &mut Vec<LegId>, snapshot: &mut RoutingSnapshot) {
    for seat in &meeting.mixers {
        legs.push(seat.leg.id);
        snapshot.rtcp_ssrcs.insert(seat.rtcp_ssrc, seat.leg.id);
        snapshot.insert_leg(Arc::clone(&seat.leg));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewMeeting, NewParticipant, NewStream, Owner};
    use super::*;
    use crate::policy::{Role, Source};
    use crate::relay::MediaKind;

    fn registry() -> Registry {
        Registry::new(
            crate::relay::empty_cell(),
            Arc::new(crate::metrics::MetricsHub::new("ring")),
            crate::policy::Policy::default(),
            "127.0.0.1:1".parse().unwrap(),
        )
    }

    fn meeting(r: &mut Registry, id: &str, mode: MeetingMode) {
        r.create_meeting(NewMeeting {
            id: Some(id.to_owned()),
            mode,
            owner: Owner {
                account: "a".to_owned(),
                verified: true,
            },
            passcode: None,
        })
        .unwrap();
    }

    fn caller(r: &mut Registry, meeting: &str, ssrc: u32) -> LegId {
        let new = NewParticipant {
            source: Source::DialIn,
            role: Role::Attendee,
            rtcp_ssrc: Some(ssrc),
            ..NewParticipant::attendee("phone", None)
        };
        let id = r.admit(meeting, new).unwrap().id.clone();
        r.add_stream(
            meeting,
            &id,
            NewStream {
                ssrc,
                kind: MediaKind::Audio,
                codec: "opus".to_owned(),
                payload_type: 111,
            },
        )
        .unwrap();
        r.meeting(meeting)
            .unwrap()
            .participants
            .last()
            .unwrap()
            .leg
            .id
    }

    #[test]
    fn callers_take_nothing_and_the_mixer_leg_takes_the_meeting_once() {
        let mut r = registry();
        meeting(&mut r, "m", MeetingMode::Standard);
        let web = r
            .admit("m", NewParticipant::attendee("web", None))
            .unwrap()
            .leg
            .id;
        let a = caller(&mut r, "m", 0xa);
        let b = caller(&mut r, "m", 0xb);
        let mixer = r.admit_mixer("m").unwrap();
        let snap = r.cell.load();
        let members = snap.meetings.get(&r.meeting("m").unwrap().idx).unwrap();
        assert!(members.contains(&mixer.leg), "{members:?}");
        assert_eq!(snap.rtcp_ssrcs.get(&mixer.rtcp_ssrc), Some(&mixer.leg));
        // The web participant's stream reaches the mixer leg, never the
        // callers' own legs; the callers' streams reach the web.
        assert!(!snap.skips(web, mixer.leg));
        assert!(snap.skips(web, a) && snap.skips(web, b));
        assert!(!snap.skips(a, web) && !snap.skips(a, mixer.leg));
        // Not a listed participant, and outside the meeting's size.
        assert_eq!(r.meeting("m").unwrap().participants.len(), 3);

        r.remove_mixer("m", mixer.leg);
        let snap = r.cell.load();
        let members = snap.meetings.get(&r.meeting("m").unwrap().idx).unwrap();
        assert!(!members.contains(&mixer.leg));
        assert!(snap.legs.get(&mixer.leg).is_none());
        assert!(snap.rtcp_ssrcs.get(&mixer.rtcp_ssrc).is_none());
        // A caller that leaves takes its send-only mark with it.
        let pid = r.meeting("m").unwrap().participants[1].id.clone();
        r.remove_participant("m", &pid).unwrap();
        assert!(!r.cell.load().send_only.contains(&a));
    }

    #[test]
    fn a_deleted_meeting_takes_its_mixer_legs_and_e2ee_refuses_them() {
        let mut r = registry();
        meeting(&mut r, "m", MeetingMode::Standard);
        let mixer = r.admit_mixer("m").unwrap();
        assert!(r.has_mixer("m", mixer.leg));
        r.delete_meeting("m").unwrap();
        assert!(!r.has_mixer("m", mixer.leg));
        let snap = r.cell.load();
        assert!(snap.legs.get(&mixer.leg).is_none());
        assert!(snap.rtcp_ssrcs.get(&mixer.rtcp_ssrc).is_none());
        // Removing it afterwards is a no-op.
        r.remove_mixer("m", mixer.leg);

        meeting(&mut r, "e", MeetingMode::E2ee);
        assert!(matches!(
            r.admit_mixer("e"),
            Err(ApiError::Refused(Refusal::E2eeForbidsDialIn))
        ));
        assert!(matches!(
            r.admit_mixer("nowhere"),
            Err(ApiError::MeetingNotFound(_))
        ));
    }
}

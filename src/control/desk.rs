//! The narrow door the SIP dial-in side uses into the registry: look a
//! meeting up, admit a phone caller (through the same policy as the API),
//! publish the caller's audio stream, and leave. Every call takes the
//! registry lock briefly, exactly as an API request does.

use std::net::SocketAddr;

use super::ControlState;
use super::registry::{NewParticipant, NewStream};
use crate::policy::{Role, Source};
use crate::relay::{MediaKind, MeetingMode, SnapshotCell};
use crate::srtp::{MasterKey, SrtpProfile};

pub use super::ApiError as DeskError;

/// The Opus payload type a bridged caller's stream uses in the meeting.
pub const DIAL_IN_OPUS_PT: u8 = 111;

/// What admission needs to know before a caller is asked anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingLookup {
    /// E2EE or standard.
    pub mode: MeetingMode,
    /// Whether the meeting has a passcode the caller must enter.
    pub needs_passcode: bool,
}

/// A caller's leg into a meeting: the bridge is this participant's client.
#[derive(Debug, Clone)]
pub struct BridgeLeg {
    /// The meeting.
    pub meeting: String,
    /// The participant id the registry gave the caller.
    pub participant: String,
    /// The SSRC of the caller's audio stream in the meeting.
    pub ssrc: u32,
    /// Where the bridge sends the caller's SRTP.
    pub media_address: SocketAddr,
    /// The key the bridge protects with (client → relay).
    pub client_to_relay: MasterKey,
    /// The key the bridge unprotects with (relay → client).
    pub relay_to_client: MasterKey,
}

/// A media pool thread's receive leg into a meeting (see
/// [`MeetingDesk::admit_mixer`]).
#[derive(Debug, Clone)]
pub struct MixerLeg {
    /// The meeting.
    pub meeting: String,
    /// The leg, for [`MeetingDesk::leave_mixer`].
    leg: crate::relay::LegId,
    /// The SSRC its receiver reports carry (they latch it).
    pub rtcp_ssrc: u32,
    /// The key the bridge protects its RTCP with (client → relay).
    pub client_to_relay: MasterKey,
    /// The key the bridge unprotects the meeting's streams with.
    pub relay_to_client: MasterKey,
}

#[cfg(test)]
impl MixerLeg {
    /// A leg with these keys, admitted nowhere (unit tests of its user).
    pub(crate) fn for_tests(
        meeting: &str,
        rtcp_ssrc: u32,
        client_to_relay: MasterKey,
        relay_to_client: MasterKey,
    ) -> Self {
        Self {
            meeting: meeting.to_owned(),
            leg: crate::relay::LegId(0),
            rtcp_ssrc,
            client_to_relay,
            relay_to_client,
        }
    }
}

/// A handle on the registry for dial-in; cheap to clone.
#[derive(Debug, Clone)]
pub struct MeetingDesk {
    state: ControlState,
    cell: SnapshotCell,
}

impl MeetingDesk {
    /// A desk on the registry behind `state`.
    pub fn new(state: ControlState) -> Self {
        let cell = state.registry().cell();
        Self { state, cell }
    }

    /// The meeting's mode and whether it wants a passcode.
    pub fn lookup(&self, meeting: &str) -> Result<MeetingLookup, DeskError> {
        if let Some(link) = self.state.cluster() {
            let (mode, needs_passcode) = super::clustered::lookup(link, meeting)?;
            return Ok(MeetingLookup {
                mode,
                needs_passcode,
            });
        }
        let registry = self.state.registry();
        let m = registry.meeting(meeting)?;
        Ok(MeetingLookup {
            mode: m.mode,
            needs_passcode: m.has_passcode(),
        })
    }

    /// Admits a phone caller as an attendee, through the admission policy
    /// (E2EE meetings refuse dial-in; locks, passcodes and limits apply),
    /// and publishes its audio stream `ssrc` (Opus, payload type 111).
    /// Refusals come back as the API's errors; count them as the API does.
    pub fn admit_caller(
        &self,
        meeting: &str,
        name: &str,
        passcode: Option<&str>,
        ssrc: u32,
    ) -> Result<BridgeLeg, DeskError> {
        let new = NewParticipant {
            name: name.to_owned(),
            role: Role::Attendee,
            passcode: passcode.map(str::to_owned),
            source: Source::DialIn,
            profile: SrtpProfile::AeadAes256Gcm,
            client_to_relay: None,
            // The bridge's RTCP reports under its stream's SSRC.
            rtcp_ssrc: Some(ssrc),
            receive: None,
        };
        if let Some(link) = self.state.cluster() {
            return self.admit_caller_clustered(link, meeting, new, ssrc);
        }
        let mut registry = self.state.registry();
        let media_address = registry.media_address();
        let participant = registry.admit(meeting, new).map_err(|e| self.counted(e))?;
        let leg = BridgeLeg {
            meeting: meeting.to_owned(),
            participant: participant.id.clone(),
            ssrc,
            media_address,
            client_to_relay: participant.leg.client_to_relay.clone(),
            relay_to_client: participant.leg.relay_to_client.clone(),
        };
        let stream = registry.add_stream(meeting, &leg.participant, Self::caller_stream(ssrc));
        if let Err(e) = stream {
            // Undo the admission: a caller without its stream is no use.
            let _ = registry.remove_participant(meeting, &leg.participant);
            return Err(e);
        }
        Ok(leg)
    }

    /// [`MeetingDesk::admit_caller`] in cluster mode: the bridge leg is
    /// admitted on this node (the one the call reached), its seat in Redis.
    fn admit_caller_clustered(
        &self,
        link: &crate::cluster::ClusterLink,
        meeting: &str,
        new: NewParticipant,
        ssrc: u32,
    ) -> Result<BridgeLeg, DeskError> {
        let seated = super::clustered::admit_on_this_node(&self.state, link, meeting, new)
            .map_err(|e| self.counted(e))?;
        let leg = BridgeLeg {
            meeting: meeting.to_owned(),
            participant: seated.id,
            ssrc,
            // The bridge runs on this node: it sends to the local relay.
            media_address: self.state.registry().media_address(),
            client_to_relay: seated.client_to_relay,
            relay_to_client: seated.relay_to_client,
        };
        let stream = self
            .state
            .registry()
            .add_stream(meeting, &leg.participant, Self::caller_stream(ssrc))
            .map(drop);
        if let Err(e) = stream {
            super::clustered::leave_here(&self.state, link, meeting, &leg.participant);
            return Err(e);
        }
        self.state.cascade_changed(meeting);
        Ok(leg)
    }

    /// Admits a phone the integrator dialled out to (`POST .../dial`) as
    /// [`Self::admit_caller`] does, except that the meeting's passcode is
    /// not asked for: the integrator placing the call vouches for it. The
    /// lock, E2EE refusal and limits apply as to any caller. In cluster
    /// mode the passcode is not known here, so a passcoded meeting refuses.
    pub fn admit_dialed(
        &self,
        meeting: &str,
        name: &str,
        ssrc: u32,
    ) -> Result<BridgeLeg, DeskError> {
        let passcode = match self.state.cluster() {
            Some(_) => None,
            None => self
                .state
                .registry()
                .meeting(meeting)?
                .passcode()
                .map(str::to_owned),
        };
        self.admit_caller(meeting, name, passcode.as_deref(), ssrc)
    }

    /// Counts a policy refusal as the API counts its own; passes `e` on.
    fn counted(&self, e: DeskError) -> DeskError {
        if let DeskError::Refused(refusal) = &e {
            self.state.metrics().refused(refusal.code());
        }
        e
    }

    /// The caller's one stream: Opus on [`DIAL_IN_OPUS_PT`] under `ssrc`.
    fn caller_stream(ssrc: u32) -> NewStream {
        NewStream {
            ssrc,
            kind: MediaKind::Audio,
            codec: "opus".to_owned(),
            payload_type: DIAL_IN_OPUS_PT,
        }
    }

    /// Whether the caller's participant is still in its meeting (an
    /// integrator may delete it, or the whole meeting, at any time).
    pub fn is_present(&self, leg: &BridgeLeg) -> bool {
        self.state
            .registry()
            .meeting(&leg.meeting)
            .is_ok_and(|m| m.participants.iter().any(|p| p.id == leg.participant))
    }

    /// Removes the caller from its meeting (a no-op when already gone).
    pub fn leave(&self, leg: &BridgeLeg) {
        if let Some(link) = self.state.cluster() {
            super::clustered::leave_here(&self.state, link, &leg.meeting, &leg.participant);
            return;
        }
        let _ = self
            .state
            .registry()
            .remove_participant(&leg.meeting, &leg.participant);
    }

    /// Admits a receive leg for the calls of `meeting` on one media pool
    /// thread: the relay sends it every stream of the meeting once, while
    /// the callers' own legs only publish. Not a listed participant; the
    /// lock, passcode and size do not apply (it serves callers admitted
    /// already). Standard meetings only.
    pub fn admit_mixer(&self, meeting: &str) -> Result<MixerLeg, DeskError> {
        let admitted = self.state.registry().admit_mixer(meeting)?;
        Ok(MixerLeg {
            meeting: meeting.to_owned(),
            leg: admitted.leg,
            rtcp_ssrc: admitted.rtcp_ssrc,
            client_to_relay: admitted.client_to_relay,
            relay_to_client: admitted.relay_to_client,
        })
    }

    /// Whether the receive leg is still in its meeting (the meeting may
    /// have been deleted, and made again under its id).
    pub fn has_mixer(&self, leg: &MixerLeg) -> bool {
        self.state.registry().has_mixer(&leg.meeting, leg.leg)
    }

    /// Removes a receive leg (a no-op when its meeting is gone).
    pub fn leave_mixer(&self, leg: &MixerLeg) {
        self.state.registry().remove_mixer(&leg.meeting, leg.leg);
    }

    /// Starts deciding renditions, run by the media threads behind
    /// `sender` (the daemon, when `[transcode]` is enabled).
    pub(crate) fn attach_transcodes(&self, transcodes: super::registry::Transcodes) {
        self.state.registry().attach_transcodes(transcodes);
    }

    /// Stops the transcodes whose linger ran out (the transcode service's
    /// timer).
    pub fn transcode_tick(&self, now: std::time::Instant) {
        self.state.registry().transcode_tick(now);
    }

    /// The kind of the stream `ssrc`, if one is published (read from the
    /// routing snapshot: no lock).
    pub fn stream_kind(&self, ssrc: u32) -> Option<MediaKind> {
        self.cell.load().streams.get(&ssrc).map(|s| s.kind)
    }
}

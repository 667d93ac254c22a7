//! One phone call's media state machine: the voice menu (prompts out,
//! RFC 4733 digits in), admission into a meeting through the
//! [`MeetingDesk`], and once admitted the bridge between the caller's G.711
//! and the meeting's Opus: the call's own [`CallerUplink`], and the
//! [`MeetingMix`] it shares with the other calls of its meeting on its
//! pool thread (the pool owns the mix and lends it to each call).
//!
//! Sans-IO: the media pool thread that owns the call feeds it the
//! datagrams its two sockets receive and calls [`Call::tick`] every 20 ms;
//! the call writes what to send into the pool's buffers. A tick that
//! silence suppression holds back sends the meeting nothing but moves the
//! stream's RTP timestamp on by the frame, so receivers see DTX, not loss
//! (RFC 7587 §3.1.3); the next packet after it carries the marker bit
//! when the caller starts speaking again (RFC 3551 §4.1). Towards the
//! meeting the call is an ordinary SRTP participant (AEAD_AES_256_GCM keys
//! from the registry), so the packet workers relay the caller like anyone
//! else and never run a codec. Its leg only publishes: what the meeting
//! says reaches the call's mix through the receive leg its pool thread
//! holds for the meeting (`receive_leg.rs`), decrypted once for all the
//! meeting's calls on the thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{BridgeLeg, DIAL_IN_OPUS_PT, DeskError, MeetingDesk};
use crate::crypto::{AnyGcm, BackendKind};
use crate::media::dtmf::DtmfDetector;
use crate::media::{
    CallerCodec, CallerEncoder, CallerUplink, G711, MAX_CALLER_FRAME, MediaError, MeetingMix,
    OpusBandwidth, OpusSettings, SilenceSuppression, UplinkFrame, UplinkSettings, stretch_8k,
};
use crate::metrics::{CallOutcome, DialInCounters};
use crate::policy::Refusal;
use crate::relay::MeetingMode;
use crate::rtp::{PayloadType, RtpBuilder, RtpPacket, SeqNum, Ssrc};
use crate::sip::sdp::OpusFmtp;
use crate::srtp::{MasterKey, SrtpError, SrtpSession};

use super::prompts::{FRAME, MU_LAW_SILENCE, Playback, Prompt};
use super::rekey::InboundKeys;
use super::reoffer::MediaUpdate;
use super::rtcp::{CallQuality, CallerRtcp};

/// The largest datagram either side sends or accepts.
pub(crate) const MAX_DATAGRAM: usize = 1500;
/// The most digits a meeting number or passcode may have.
const MAX_DIGITS: usize = 32;
/// Opus samples per 20 ms at 48 kHz: the meeting stream's timestamp step.
const OPUS_FRAME: u32 = 960;
/// The RFC 6464 voice-activity bit's threshold: louder than -50 dBov.
pub(super) const VOICE_DBOV: u8 = 50;

/// What every call on a node shares: the `[sip]` settings that matter to
/// media, and the doors to the rest of the daemon.
#[derive(Debug)]
pub(crate) struct CallSettings {
    pub(crate) desk: MeetingDesk,
    pub(crate) counters: Arc<DialInCounters>,
    pub(crate) backend: BackendKind,
    pub(crate) media_timeout: Duration,
    pub(crate) digit_timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) opus_bitrate: u32,
    pub(crate) opus_complexity: u8,
    pub(crate) audio_level_extension: u8,
    pub(crate) silence_suppression: bool,
}

/// The caller's side of the call, as SDP negotiated it.
#[derive(Debug, Clone)]
pub(crate) struct CallerMedia {
    /// PCMU, PCMA, G.722 or Opus.
    pub(crate) codec: CallerCodec,
    /// The payload type of `codec` in the caller's offer.
    pub(crate) payload_type: u8,
    /// The caller's telephone-event payload type, if it offered one.
    pub(crate) telephone_event: Option<u8>,
    /// Where the caller's SDP says to send (until a packet latches).
    pub(crate) remote: SocketAddr,
    /// Where the caller's RTCP goes (RTP port + 1, `a=rtcp`, or the RTP
    /// port with rtcp-mux), and whether it is muxed.
    pub(crate) rtcp: SocketAddr,
    pub(crate) rtcp_mux: bool,
    /// SDES SRTP: the caller's key (for what it sends) and ours.
    pub(crate) srtp: Option<(MasterKey, MasterKey)>,
    /// What the caller's Opus fmtp asks of what we send it (an Opus call).
    pub(crate) opus_fmtp: OpusFmtp,
    /// A name for the meeting's participant list.
    pub(crate) display: String,
}

/// Where the call is headed when it starts.
#[derive(Debug)]
pub(crate) enum Entry {
    /// The voice menu: meeting number, then passcode if needed.
    Menu,
    /// A meeting that wants a passcode (asked for by DTMF).
    Passcode {
        /// The meeting id.
        meeting: String,
    },
    /// Already admitted (a direct call to a meeting without passcode).
    Admitted(BridgeLeg),
}

#[derive(Debug)]
enum Stage {
    AskMeeting {
        digits: String,
        tries_left: u32,
    },
    AskPasscode {
        meeting: String,
        digits: String,
        tries_left: u32,
    },
    Bridged(Box<Bridged>),
    /// A last prompt plays, then the call hangs up.
    Leaving,
}

/// The meeting side of an admitted call.
struct Bridged {
    leg: BridgeLeg,
    uplink: CallerUplink,
    to_relay: SrtpSession<AnyGcm>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// When the registry was last asked whether the caller is still in.
    checked: Instant,
}

impl std::fmt::Debug for Bridged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridged")
            .field("leg", &self.leg.participant)
            .field("ssrc", &self.ssrc)
            .finish_non_exhaustive()
    }
}

/// Why a call could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The codec side failed to start.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// An SRTP context could not be made from the keys.
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// Buffers the pool reuses for what one tick sends.
#[derive(Debug)]
pub(crate) struct TickOut {
    /// A datagram for the caller, and where to.
    pub(crate) caller: Option<(SocketAddr, usize)>,
    pub(crate) caller_buf: [u8; MAX_DATAGRAM],
    /// A datagram for the relay (the meeting side), if bridged.
    pub(crate) meeting: Option<usize>,
    pub(crate) meeting_buf: [u8; MAX_DATAGRAM],
    /// An RTCP report for the caller, and where to.
    pub(crate) rtcp: Option<(SocketAddr, usize)>,
    pub(crate) rtcp_buf: [u8; MAX_DATAGRAM],
}

impl Default for TickOut {
    fn default() -> Self {
        Self {
            caller: None,
            caller_buf: [0; MAX_DATAGRAM],
            meeting: None,
            meeting_buf: [0; MAX_DATAGRAM],
            rtcp: None,
            rtcp_buf: [0; MAX_DATAGRAM],
        }
    }
}

/// One call.
#[derive(Debug)]
pub(crate) struct Call {
    settings: Arc<CallSettings>,
    media: CallerMedia,
    from_caller: Option<InboundKeys>,
    to_caller: Option<SrtpSession<AnyGcm>>,
    latched: Option<SocketAddr>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    first_sent: bool,
    stage: Stage,
    playback: Option<Playback>,
    dtmf: DtmfDetector,
    /// The last RTP from the caller (or the call's start).
    last_media: Instant,
    /// When the menu started waiting for a digit.
    waiting_since: Instant,
    /// The caller put us on hold (sendonly/inactive): send nothing, expect nothing.
    held: bool,
    /// What the caller hears, for a codec other than G.711 (G.711 is
    /// encoded by table, or once per meeting by the mix).
    encoder: Option<CallerEncoder>,
    /// RTCP with the caller: its RTP's reception statistics, our reports,
    /// its reports.
    rtcp: CallerRtcp,
    outcome: Option<CallOutcome>,
    hangup: bool,
}

impl Call {
    /// A call starting at `now`, headed for `entry`.
    pub(crate) fn new(
        settings: Arc<CallSettings>,
        media: CallerMedia,
        entry: Entry,
        now: Instant,
    ) -> Result<Self, CallError> {
        let backend = AnyGcm::new(settings.backend);
        let (from_caller, to_caller) = match &media.srtp {
            Some((theirs, ours)) => (
                Some(InboundKeys::new(SrtpSession::new(backend.clone(), theirs)?)),
                Some(SrtpSession::new(backend, ours)?),
            ),
            None => (None, None),
        };
        let tries_left = settings.attempts;
        let encoder = caller_encoder(media.codec, &settings, media.opus_fmtp)?;
        let ssrc = random_u32();
        let rtcp = CallerRtcp::new(ssrc, media.codec.rtp_clock(), now, ntp_now());
        let mut call = Self {
            encoder,
            rtcp,
            settings,
            media,
            from_caller,
            to_caller,
            latched: None,
            ssrc,
            seq: random_u32() as u16,
            timestamp: random_u32(),
            first_sent: false,
            stage: Stage::Leaving,
            playback: None,
            dtmf: DtmfDetector::new(),
            last_media: now,
            waiting_since: now,
            held: false,
            outcome: None,
            hangup: false,
        };
        match entry {
            Entry::Menu => {
                call.stage = Stage::AskMeeting {
                    digits: String::new(),
                    tries_left,
                };
                call.play(Prompt::Welcome);
            }
            Entry::Passcode { meeting } => {
                call.stage = Stage::AskPasscode {
                    meeting,
                    digits: String::new(),
                    tries_left,
                };
                call.play(Prompt::Passcode);
            }
            Entry::Admitted(leg) => {
                call.bridge(leg, now)?;
                call.play(Prompt::Joining);
            }
        }
        Ok(call)
    }

    /// The outcome so far (`None` until the call joined or was refused).
    pub(crate) fn outcome(&self) -> Option<CallOutcome> {
        self.outcome
    }

    /// Whether the call wants to end (the pool then asks SIP to hang up).
    pub(crate) fn wants_hangup(&self) -> bool {
        self.hangup
    }

    /// The rate the caller's mix runs at (its codec's).
    pub(crate) fn mix_rate(&self) -> u32 {
        self.media.codec.rate()
    }

    /// The meeting leg, once admitted.
    pub(crate) fn leg(&self) -> Option<&BridgeLeg> {
        match &self.stage {
            Stage::Bridged(b) => Some(&b.leg),
            _ => None,
        }
    }

    /// What the call's RTCP says of its quality so far.
    pub(crate) fn quality(&self) -> CallQuality {
        self.rtcp.quality()
    }

    /// The caller moved its media (re-INVITE), or put us on hold.
    pub(crate) fn update_caller(
        &mut self,
        (remote, rtcp): (SocketAddr, SocketAddr),
        held: bool,
        now: Instant,
    ) {
        if remote != self.media.remote {
            self.media.remote = remote;
            self.latched = None;
        }
        self.media.rtcp = rtcp;
        self.held = held;
        self.last_media = now;
    }

    /// A re-INVITE brought new SDES keys (RFC 4568 §7.1.4): ours is used
    /// from now on, the caller's old one until its new one authenticates
    /// a packet ([`InboundKeys`]).
    pub(crate) fn rekey(&mut self, theirs: &MasterKey, ours: &MasterKey) -> Result<(), CallError> {
        let backend = AnyGcm::new(self.settings.backend);
        let to_caller = SrtpSession::new(backend.clone(), ours)?;
        let from_caller = SrtpSession::new(backend, theirs)?;
        match &mut self.from_caller {
            Some(inbound) => inbound.rekey(from_caller),
            None => self.from_caller = Some(InboundKeys::new(from_caller)),
        }
        self.to_caller = Some(to_caller);
        self.media.srtp = Some((theirs.clone(), ours.clone()));
        Ok(())
    }

    fn play(&mut self, prompt: Prompt) {
        self.playback = Some(Playback::new(prompt));
    }

    fn finish(&mut self, prompt: Prompt, outcome: CallOutcome) {
        self.outcome.get_or_insert(outcome);
        self.stage = Stage::Leaving;
        self.play(prompt);
    }

    /// Turns the call into a meeting participant on `leg`; on failure the
    /// caller leaves the meeting again.
    fn bridge(&mut self, leg: BridgeLeg, now: Instant) -> Result<(), CallError> {
        match self.bridged(&leg) {
            Ok((uplink, to_relay)) => {
                self.stage = Stage::Bridged(Box::new(Bridged {
                    uplink,
                    to_relay,
                    ssrc: leg.ssrc,
                    seq: random_u32() as u16,
                    timestamp: random_u32(),
                    checked: now,
                    leg,
                }));
                self.outcome = Some(CallOutcome::Joined);
                Ok(())
            }
            Err(e) => {
                self.settings.desk.leave(&leg);
                Err(e)
            }
        }
    }

    /// The codec and SRTP state of a bridge on `leg` (it only publishes:
    /// the meeting reaches the call through its thread's `ReceiveLeg`).
    fn bridged(&self, leg: &BridgeLeg) -> Result<(CallerUplink, SrtpSession<AnyGcm>), CallError> {
        let backend = AnyGcm::new(self.settings.backend);
        Ok((
            CallerUplink::for_codec(self.media.codec, self.uplink_settings())?,
            SrtpSession::new(backend, &leg.client_to_relay)?,
        ))
    }

    fn uplink_settings(&self) -> UplinkSettings {
        UplinkSettings {
            opus: self.settings.opus(),
            suppression: self
                .settings
                .silence_suppression
                .then_some(SilenceSuppression::DIAL_IN),
        }
    }

    /// A re-offer was answered (`reoffer.rs`): the address, hold, keys,
    /// codec and RTCP multiplexing the answer settled on. Returns whether
    /// the caller's mix rate changed (the pool then moves the call to the
    /// meeting's mix at the new rate).
    pub(crate) fn reoffer(&mut self, update: &MediaUpdate, now: Instant) -> bool {
        let rate = self.mix_rate();
        self.update_caller((update.remote, update.rtcp), update.held, now);
        self.media.rtcp_mux = update.rtcp_mux;
        if let Some((theirs, ours)) = &update.rekey
            && let Err(e) = self.rekey(theirs, ours)
        {
            tracing::warn!("dial-in re-key failed: {e}");
        }
        self.switch_codec(
            (update.codec, update.opus),
            update.payload_type,
            update.telephone_event,
            now,
        );
        self.mix_rate() != rate
    }

    /// Moves the call to `codec` (a re-INVITE's answer): the caller's
    /// decoder (the uplink) and encoder are rebuilt for it. A codec on
    /// another RTP clock (G.711 or G.722 ↔ Opus) gets a new SSRC towards
    /// the caller and fresh RTCP state, as RFC 7160 §4.1 asks of a sender
    /// whose clock rate changes; on the same clock (PCMU ↔ PCMA, G.711 ↔
    /// G.722) the stream goes on. If the codec cannot be opened the call is
    /// hung up: the answer promised it.
    fn switch_codec(
        &mut self,
        (codec, opus_fmtp): (CallerCodec, OpusFmtp),
        payload_type: u8,
        telephone_event: Option<u8>,
        now: Instant,
    ) {
        self.media.payload_type = payload_type;
        if telephone_event != self.media.telephone_event {
            self.media.telephone_event = telephone_event;
            self.dtmf = DtmfDetector::new();
        }
        if codec == self.media.codec {
            if codec == CallerCodec::Opus && opus_fmtp != self.media.opus_fmtp {
                // The same codec, asked for differently: a new encoder.
                match caller_encoder(codec, &self.settings, opus_fmtp) {
                    Ok(encoder) => {
                        self.encoder = encoder;
                        self.media.opus_fmtp = opus_fmtp;
                    }
                    Err(e) => tracing::warn!("dial-in Opus encoder not reopened: {e}"),
                }
            }
            return;
        }
        let built = (|| -> Result<_, CallError> {
            let encoder = caller_encoder(codec, &self.settings, opus_fmtp)?;
            let uplink = match &self.stage {
                Stage::Bridged(_) => Some(CallerUplink::for_codec(codec, self.uplink_settings())?),
                _ => None,
            };
            Ok((encoder, uplink))
        })();
        let (encoder, uplink) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!("dial-in codec switch to {codec:?} failed ({e}): hanging up");
                self.outcome.get_or_insert(CallOutcome::Failed);
                self.hangup = true;
                return;
            }
        };
        let clock_changed = codec.rtp_clock() != self.media.codec.rtp_clock();
        tracing::info!(from = ?self.media.codec, to = ?codec, "dial-in caller switched codec");
        self.media.codec = codec;
        self.media.opus_fmtp = opus_fmtp;
        self.encoder = encoder;
        if let (Stage::Bridged(b), Some(uplink)) = (&mut self.stage, uplink) {
            b.uplink = uplink;
        }
        if clock_changed {
            self.ssrc = random_u32();
            self.seq = random_u32() as u16;
            self.timestamp = random_u32();
            self.first_sent = false;
            self.rtcp = CallerRtcp::new(self.ssrc, codec.rtp_clock(), now, ntp_now());
        }
    }

    /// A datagram from the caller's side.
    pub(crate) fn on_caller_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        if self.media.rtcp_mux && buf.get(..len).is_some_and(crate::rtp::is_rtcp) {
            self.on_caller_rtcp(now, buf, len);
            return;
        }
        if self.latched.is_some_and(|at| at != from)
            && from != self.media.remote
            && self.from_caller.is_none()
        {
            // Plain RTP is latched to its first source; SRTP may move,
            // since only the key holder can produce a packet that passes.
            // The address the SDP names always wins: after a re-INVITE
            // moved the media, a packet still in flight from the old
            // address may have latched there again.
            return;
        }
        let len = match &mut self.from_caller {
            Some(srtp) => match srtp.unprotect_rtp(buf, len) {
                Ok(n) => n,
                Err(_) => return,
            },
            None => len,
        };
        let Some(packet) = buf.get(..len).and_then(|b| RtpPacket::parse(b).ok()) else {
            return;
        };
        self.latched = Some(from);
        self.last_media = now;
        let header = packet.header();
        self.rtcp.on_rtp_received(
            now,
            header.ssrc().0,
            header.sequence().0,
            header.timestamp(),
        );
        let pt = packet.header().payload_type().get();
        if Some(pt) == self.media.telephone_event {
            let header = packet.header();
            if let Ok(Some(digit)) =
                self.dtmf
                    .handle_packet(header.timestamp(), header.marker(), packet.payload())
            {
                self.on_digit(now, digit);
            }
        } else if pt == self.media.payload_type
            && !self.held
            && let Stage::Bridged(b) = &mut self.stage
        {
            // On hold (RFC 3264 §8.4: sendonly is the holder's music on
            // hold) the meeting hears silence: the uplink's FIFO runs dry.
            b.uplink.push(packet.payload());
        }
    }

    fn on_digit(&mut self, now: Instant, digit: char) {
        self.waiting_since = now;
        let (digits, is_menu) = match &mut self.stage {
            Stage::AskMeeting { digits, .. } => (digits, true),
            Stage::AskPasscode { digits, .. } => (digits, false),
            // Digits in a meeting are not mixed and mean nothing.
            Stage::Bridged(_) | Stage::Leaving => return,
        };
        // Barge-in: a key stops the prompt.
        self.playback = None;
        match digit {
            '#' => {
                let entered = std::mem::take(digits);
                if is_menu {
                    self.submit_meeting(&entered, now);
                } else {
                    self.submit_passcode(&entered, now);
                }
            }
            '*' => digits.clear(),
            d if digits.len() < MAX_DIGITS => digits.push(d),
            _ => {}
        }
    }

    /// One try used up: ask again with `retry`, or give up with `outcome`.
    fn try_again(&mut self, retry: Prompt, outcome: CallOutcome) {
        let tries_left = match &mut self.stage {
            Stage::AskMeeting { tries_left, .. } | Stage::AskPasscode { tries_left, .. } => {
                *tries_left = tries_left.saturating_sub(1);
                *tries_left
            }
            _ => 0,
        };
        if tries_left == 0 {
            self.finish(Prompt::Goodbye, outcome);
        } else {
            self.play(retry);
        }
    }

    fn submit_meeting(&mut self, meeting: &str, now: Instant) {
        match self.settings.desk.lookup(meeting) {
            Ok(found) if found.mode == MeetingMode::E2ee => {
                self.finish(Prompt::E2ee, CallOutcome::RefusedE2ee);
            }
            Ok(found) if found.needs_passcode => {
                self.stage = Stage::AskPasscode {
                    meeting: meeting.to_owned(),
                    digits: String::new(),
                    tries_left: self.settings.attempts,
                };
                self.play(Prompt::Passcode);
            }
            Ok(_) => self.join(meeting, None, now),
            Err(_) => self.try_again(Prompt::UnknownMeeting, CallOutcome::Failed),
        }
    }

    fn submit_passcode(&mut self, passcode: &str, now: Instant) {
        let Stage::AskPasscode { meeting, .. } = &self.stage else {
            return;
        };
        let meeting = meeting.clone();
        self.join(&meeting, Some(passcode), now);
    }

    fn join(&mut self, meeting: &str, passcode: Option<&str>, now: Instant) {
        let admitted = admit(&self.settings.desk, meeting, &self.media.display, passcode);
        match admitted {
            Ok(leg) => match self.bridge(leg, now) {
                Ok(()) => self.play(Prompt::Joining),
                Err(e) => {
                    tracing::warn!("dial-in bridge failed to start: {e}");
                    self.finish(Prompt::Goodbye, CallOutcome::Failed);
                }
            },
            Err(DeskError::Refused(Refusal::WrongPasscode)) => {
                self.try_again(Prompt::WrongPasscode, CallOutcome::BadPin);
            }
            Err(DeskError::Refused(Refusal::E2eeForbidsDialIn)) => {
                self.finish(Prompt::E2ee, CallOutcome::RefusedE2ee);
            }
            Err(DeskError::MeetingNotFound(_)) => {
                self.finish(Prompt::Goodbye, CallOutcome::Failed);
            }
            Err(e) => {
                tracing::info!("dial-in caller not admitted: {}", e.message());
                self.finish(Prompt::Unavailable, CallOutcome::Failed);
            }
        }
    }

    /// One 20 ms tick: the caller's next frame and, when bridged, the
    /// caller's next frame into the meeting. `mix` is the call's meeting
    /// mix, already ticked for this 20 ms, with this call's share of the
    /// time that took (in ns, for the transcode histogram).
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        out: &mut TickOut,
        mix: Option<(&mut MeetingMix, u64)>,
    ) {
        out.caller = None;
        out.meeting = None;
        if self.hangup {
            return;
        }
        if !self.held && now.duration_since(self.last_media) > self.settings.media_timeout {
            tracing::info!(
                "dial-in call sent no media for {:?}: hanging up",
                self.settings.media_timeout
            );
            self.outcome.get_or_insert(CallOutcome::Failed);
            self.hangup = true;
            return;
        }
        let mut frame = [MU_LAW_SILENCE; FRAME];
        let mut prompt_frame = false;
        if let Some(playback) = &mut self.playback {
            if playback.next_frame(&mut frame) {
                prompt_frame = true;
            } else {
                self.playback = None;
                self.waiting_since = now;
                if matches!(self.stage, Stage::Leaving) {
                    self.hangup = true;
                    return;
                }
            }
        }
        if self.playback.is_none()
            && matches!(
                self.stage,
                Stage::AskMeeting { .. } | Stage::AskPasscode { .. }
            )
            && now.duration_since(self.waiting_since) > self.settings.digit_timeout
        {
            self.waiting_since = now;
            let (retry, outcome) = match self.stage {
                Stage::AskMeeting { .. } => (Prompt::Welcome, CallOutcome::Failed),
                _ => (Prompt::Passcode, CallOutcome::BadPin),
            };
            self.try_again(retry, outcome);
        }
        let codec = self.media.codec;
        // G.711 is written straight into `payload`; another codec's PCM
        // goes into `wide` and is encoded below.
        let mut payload = [0u8; MAX_DATAGRAM];
        let mut payload_len = 0;
        let mut wide = [0i16; MAX_CALLER_FRAME];
        let wide = &mut wide[..codec.frame_samples()];
        match codec.law() {
            Some(law) => {
                let g711 = &mut payload[..FRAME];
                if prompt_frame {
                    transcode_prompt(law, &frame, g711);
                } else {
                    silence(law, g711);
                }
                payload_len = FRAME;
            }
            None if prompt_frame => {
                let mut pcm = [0i16; FRAME];
                G711::Mu.decode(&frame, &mut pcm);
                stretch_8k(&pcm, wide);
            }
            None => {}
        }
        if let Stage::Bridged(b) = &mut self.stage {
            if now.duration_since(b.checked) >= Duration::from_secs(1) {
                b.checked = now;
                if !self.settings.desk.is_present(&b.leg) {
                    tracing::info!("dial-in participant left its meeting: hanging up");
                    self.hangup = true;
                    return;
                }
            }
            let started = Instant::now();
            let Bridged {
                uplink,
                to_relay,
                ssrc,
                seq,
                timestamp,
                ..
            } = &mut **b;
            let mut leg = MeetingLeg {
                to_relay,
                ssrc: *ssrc,
                seq,
                timestamp,
            };
            let mut share = 0;
            if let Some((mix, mix_ns)) = mix {
                share = mix_ns;
                if !prompt_frame {
                    match codec.law() {
                        Some(law) => {
                            payload[..FRAME].copy_from_slice(mix.to_caller(law, Some(*ssrc)));
                        }
                        None => {
                            let pcm = mix.to_caller_pcm(Some(*ssrc));
                            let n = pcm.len().min(wide.len());
                            wide[..n].copy_from_slice(&pcm[..n]);
                        }
                    }
                }
            }
            match uplink.tick() {
                Ok(frame) => {
                    out.meeting = write_meeting_packet(
                        &mut leg,
                        &frame,
                        self.settings.audio_level_extension,
                        &mut out.meeting_buf,
                    );
                }
                Err(e) => {
                    // The frame's time passes all the same.
                    *leg.timestamp = leg.timestamp.wrapping_add(OPUS_FRAME);
                    tracing::debug!("dial-in transcode failed for a frame: {e}");
                }
            }
            let spent: u64 = started.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
            self.settings
                .counters
                .transcode_sample(spent.saturating_add(share));
        }
        out.rtcp = self.poll_rtcp(now, &mut out.rtcp_buf);
        if self.held {
            return;
        }
        if let Some(encoder) = &mut self.encoder {
            match encoder.encode(wide) {
                Ok(p) if p.len() <= payload.len() => {
                    payload[..p.len()].copy_from_slice(p);
                    payload_len = p.len();
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("dial-in encode for the caller failed: {e}"),
            }
        }
        if payload_len > 0 {
            out.caller =
                self.write_caller_packet(now, &payload[..payload_len], &mut out.caller_buf);
        }
    }

    /// An RTCP compound from the caller (on the RTCP port, or muxed on
    /// the RTP port): SRTCP unprotected when the call is SRTP, then read
    /// for the caller's view of our stream and the round trip.
    pub(crate) fn on_caller_rtcp(&mut self, now: Instant, buf: &mut [u8], len: usize) {
        let len = match &mut self.from_caller {
            Some(srtp) => match srtp.unprotect_rtcp(buf, len) {
                Ok(n) => n,
                Err(_) => return,
            },
            None => len,
        };
        if let Some(plain) = buf.get(..len)
            && self.rtcp.handle_rtcp(now, plain)
        {
            self.settings.counters.rtcp_report_received();
        }
    }

    /// Our next RTCP report to the caller, when due (sent on hold too).
    fn poll_rtcp(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
    ) -> Option<(SocketAddr, usize)> {
        // Room for the SRTCP trailer (index and tag).
        let len = self.rtcp.poll_report(now, &mut buf[..MAX_DATAGRAM - 64])?;
        let len = match &mut self.to_caller {
            Some(srtp) => srtp.protect_rtcp(buf, len).ok()?,
            None => len,
        };
        let to = match (self.media.rtcp_mux, self.latched) {
            (true, Some(latched)) => latched,
            _ => self.media.rtcp,
        };
        self.settings.counters.rtcp_report_sent();
        Some((to, len))
    }

    fn write_caller_packet(
        &mut self,
        now: Instant,
        payload: &[u8],
        buf: &mut [u8; MAX_DATAGRAM],
    ) -> Option<(SocketAddr, usize)> {
        let pt = PayloadType::new(self.media.payload_type)?;
        let len = RtpBuilder::new(pt, SeqNum(self.seq), self.timestamp, Ssrc(self.ssrc))
            .marker(!self.first_sent)
            .write(payload, buf)
            .ok()?;
        self.rtcp.on_rtp_sent(now, self.timestamp, payload.len());
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.media.codec.rtp_step());
        self.first_sent = true;
        let len = match &mut self.to_caller {
            Some(srtp) => srtp.protect_rtp(buf, len).ok()?,
            None => len,
        };
        Some((self.latched.unwrap_or(self.media.remote), len))
    }
}

impl CallSettings {
    /// The Opus settings `[sip]` asks for (the uplink's base, and the
    /// bitrate and complexity of an Opus caller's downlink).
    pub(crate) fn opus(&self) -> OpusSettings {
        OpusSettings {
            bitrate_bps: self.opus_bitrate,
            complexity: self.opus_complexity,
            ..OpusSettings::DIAL_IN
        }
    }
}

/// The loss in-band FEC is tuned for when a caller asks for it
/// (`useinbandfec=1`): libopus spends its redundancy where it expects
/// about this much loss; 10 % is a lossy mobile or Wi-Fi leg.
const FEC_LOSS_PERCENT: u8 = 10;

/// What the caller hears is encoded with: nothing for G.711 (by table, or
/// once per meeting by the mix), G.722, or Opus as the caller's fmtp asks
/// (RFC 7587 §6.1): no wider than its `maxplaybackrate`, with in-band FEC
/// when it said `useinbandfec=1`. Mono always (`stereo=1` is a
/// preference; a receiver must take mono), 20 ms frames always (`a=ptime`
/// is a preference too, and 20 ms is what every phone takes).
fn caller_encoder(
    codec: CallerCodec,
    settings: &CallSettings,
    fmtp: OpusFmtp,
) -> Result<Option<CallerEncoder>, MediaError> {
    Ok(match codec {
        CallerCodec::G711(_) => None,
        CallerCodec::Opus => Some(CallerEncoder::opus_for(
            settings.opus(),
            fmtp.max_playback_rate
                .map_or(OpusBandwidth::Full, OpusBandwidth::for_playback_rate),
            fmtp.inband_fec.then_some(FEC_LOSS_PERCENT),
        )?),
        codec => Some(CallerEncoder::new(codec, settings.opus())?),
    })
}

/// What writing the caller's packet into the meeting needs of [`Bridged`].
struct MeetingLeg<'a> {
    to_relay: &'a mut SrtpSession<AnyGcm>,
    ssrc: u32,
    seq: &'a mut u16,
    timestamp: &'a mut u32,
}

/// The caller's frame as an SRTP packet into the meeting, or nothing when
/// silence suppression held it back; the timestamp moves on by the frame
/// either way, the sequence number only for a packet sent.
fn write_meeting_packet(
    b: &mut MeetingLeg<'_>,
    frame: &UplinkFrame<'_>,
    extension_id: u8,
    buf: &mut [u8; MAX_DATAGRAM],
) -> Option<usize> {
    let timestamp = *b.timestamp;
    *b.timestamp = timestamp.wrapping_add(OPUS_FRAME);
    let opus = frame.to_meeting?;
    let pt = PayloadType::new(DIAL_IN_OPUS_PT)?;
    let level_dbov = frame.level;
    let voice = if level_dbov < VOICE_DBOV { 0x80 } else { 0 };
    let level = [voice | (level_dbov & 0x7F)];
    let elements = [(extension_id, &level[..])];
    let len = RtpBuilder::new(pt, SeqNum(*b.seq), timestamp, Ssrc(b.ssrc))
        .marker(frame.talkspurt)
        .one_byte_extensions(&elements)
        .write(opus, buf)
        .ok()?;
    *b.seq = b.seq.wrapping_add(1);
    b.to_relay.protect_rtp(buf, len).ok()
}

/// Admits the caller with a fresh SSRC (another on the rare collision).
fn admit(
    desk: &MeetingDesk,
    meeting: &str,
    name: &str,
    passcode: Option<&str>,
) -> Result<BridgeLeg, DeskError> {
    let mut last = None;
    for _ in 0..4 {
        match desk.admit_caller(meeting, name, passcode, random_u32()) {
            Err(DeskError::DuplicateSsrc(ssrc)) => last = Some(DeskError::DuplicateSsrc(ssrc)),
            other => return other,
        }
    }
    Err(last.unwrap_or(DeskError::Internal("no free SSRC".to_owned())))
}

/// Admits a caller directly (from the SIP side), as [`Call`] does after the menu.
pub(crate) fn admit_direct(
    desk: &MeetingDesk,
    meeting: &str,
    name: &str,
) -> Result<BridgeLeg, DeskError> {
    admit(desk, meeting, name, None)
}

/// The prompt's mu-law frame in the caller's codec.
fn transcode_prompt(codec: G711, mu_law: &[u8; FRAME], out: &mut [u8]) {
    match codec {
        G711::Mu => out[..FRAME].copy_from_slice(mu_law),
        G711::A => {
            let mut pcm = [0i16; FRAME];
            G711::Mu.decode(mu_law, &mut pcm);
            G711::A.encode(&pcm, out);
        }
    }
}

fn silence(codec: G711, out: &mut [u8]) {
    G711::encode(codec, &[0i16; FRAME], out);
}

/// The wall clock as an NTP timestamp (RFC 3550 §4: seconds since 1900
/// in the high 32 bits), read once per call for its RTCP.
fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    ((since.as_secs() + UNIX_TO_NTP) << 32) | frac
}

/// A random 32-bit number from the system RNG (SSRCs, initial sequence
/// numbers and timestamps, RFC 3550 §5.1).
pub(crate) fn random_u32() -> u32 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 4];
    // The system RNG failing is not worth refusing a call over: a fixed
    // SSRC still works (the registry refuses duplicates).
    let _ = SystemRandom::new().fill(&mut bytes);
    u32::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpProfile;

    /// Writes `frames` through [`write_meeting_packet`] and returns, per
    /// packet sent, (tick, seq, timestamp, marker).
    fn sent(frames: &[UplinkFrame<'_>]) -> Vec<(usize, u16, u32, bool)> {
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[7; 44]).unwrap();
        let mut tx = SrtpSession::new(AnyGcm::default(), &key).unwrap();
        let mut rx = SrtpSession::new(AnyGcm::default(), &key).unwrap();
        let (mut seq, mut timestamp) = (100u16, 5000u32);
        let mut out = Vec::new();
        for (tick, frame) in frames.iter().enumerate() {
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut leg = MeetingLeg {
                to_relay: &mut tx,
                ssrc: 9,
                seq: &mut seq,
                timestamp: &mut timestamp,
            };
            if let Some(len) = write_meeting_packet(&mut leg, frame, 1, &mut buf) {
                let len = rx.unprotect_rtp(&mut buf, len).unwrap();
                let p = RtpPacket::parse(&buf[..len]).unwrap();
                assert_eq!(p.payload(), frame.to_meeting.unwrap());
                let h = p.header();
                out.push((tick, h.sequence().0, h.timestamp(), h.marker()));
            }
        }
        assert_eq!(timestamp, 5000 + 960 * frames.len() as u32);
        out
    }

    #[test]
    fn suppressed_ticks_move_the_timestamp_but_not_the_sequence() {
        let voice = UplinkFrame {
            to_meeting: Some(&[0x08, 1, 2]),
            level: 20,
            talkspurt: false,
        };
        let quiet = UplinkFrame {
            to_meeting: None,
            level: 127,
            talkspurt: false,
        };
        let resumed = UplinkFrame {
            talkspurt: true,
            ..voice
        };
        let frames = [voice, quiet, quiet, quiet, resumed, voice];
        assert_eq!(
            sent(&frames),
            [
                (0, 100, 5000, false),
                (4, 101, 5000 + 4 * 960, true),
                (5, 102, 5000 + 5 * 960, false),
            ]
        );
    }
}

//! The dial-out thread: the SIP socket, the sans-IO [`Uac`], the API's
//! commands, and the calls' records. Each turn it reads what arrived (at
//! most [`POLL`] of waiting), runs the UAC's timers, acts on its events
//! (bridging a call's media on early media or the answer, settling it at
//! the end), takes the API's commands and the pool's hang-up requests, and
//! sends what the UAC wrote.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::tcp::TrunkConnection;
use super::{CallState, CallView, Command, DialOutCounters, DialRequest, TrunkTls};
use crate::config::{TrunkConfig, TrunkSrtp, TrunkTransport, is_sip_uri};
use crate::control::{ApiError, BridgeLeg, MeetingDesk};
use crate::dialin::outbound::{
    CallSettings, CallerMedia, MediaSockets, PoolCommand, PoolEvent, Session, answer_reoffer,
    bridge, caller_codec, dialed_session, random_u32,
};
use crate::relay::MeetingMode;
use crate::sip::sdp::{MediaOffer, OfferSpec, make_audio_offer};
use crate::sip::{
    CallId, Dial, DialOutcome, Transport, TrunkAccount, Uac, UacConfig, UacEvent, negotiate,
};
use crate::srtp::{MasterKey, SrtpProfile};

/// The longest the thread sleeps: API commands wait at most this long.
const POLL: Duration = Duration::from_millis(10);
/// Ended calls kept for `GET .../calls/{cid}`, the oldest dropped first.
const ENDED_KEPT: usize = 1024;
/// The SRTP suite offered on SDES trunks: the one every SBC speaks.
const OFFERED_SUITE: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;

/// What the thread is set up with.
pub(super) struct Setup {
    pub(super) trunk: SocketAddr,
    pub(super) config: TrunkConfig,
    pub(super) account: Option<TrunkAccount>,
    /// `transport = "tls"`: the client setup.
    pub(super) tls: Option<TrunkTls>,
    pub(super) media_ip: IpAddr,
    pub(super) relay: SocketAddr,
    pub(super) desk: MeetingDesk,
    pub(super) settings: Arc<CallSettings>,
    pub(super) counters: Arc<DialOutCounters>,
}

/// One outbound call as the thread holds it.
#[derive(Debug)]
struct Outbound {
    api_id: String,
    meeting: String,
    to: String,
    from: String,
    state: CallState,
    outcome: Option<DialOutcome>,
    sip_status: Option<u16>,
    participant: String,
    /// The meeting leg, until the call's slot takes it to the pool.
    leg: Option<BridgeLeg>,
    /// The media sockets, likewise.
    sockets: Option<MediaSockets>,
    /// Our SDES key (suite, key ‖ salt), when we offered SRTP.
    our_key: Option<Vec<u8>>,
    in_pool: bool,
    /// What the far end's re-INVITEs are answered against, once it answered.
    session: Option<Session>,
    /// The media could not be set up: whatever SIP says, it failed.
    media_failed: bool,
    /// Why the call failed here (not the trunk's status), for the API.
    reason: Option<String>,
}

impl Outbound {
    fn view(&self) -> CallView {
        CallView {
            id: self.api_id.clone(),
            meeting: self.meeting.clone(),
            participant: self.participant.clone(),
            to: self.to.clone(),
            from: self.from.clone(),
            state: self.state,
            outcome: self.outcome.map(DialOutcome::name),
            sip_status: self.sip_status,
            reason: self.reason.clone(),
        }
    }
}

pub(super) struct Worker {
    socket: UdpSocket,
    /// The connection to a `transport = "tcp"` or `"tls"` trunk.
    tcp: Option<TrunkConnection>,
    transport: Transport,
    uac: Uac,
    setup: Setup,
    pool: Sender<PoolCommand>,
    pool_events: Receiver<PoolEvent>,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
    live: HashMap<CallId, Outbound>,
    ended: VecDeque<Outbound>,
    rng: SystemRandom,
}

impl Worker {
    pub(super) fn new(
        socket: UdpSocket,
        setup: Setup,
        (pool, pool_events): (Sender<PoolCommand>, Receiver<PoolEvent>),
        commands: Receiver<Command>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        // The socket was bound a moment ago; an address is always there.
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(setup.media_ip, 0));
        let transport = match setup.config.transport {
            TrunkTransport::Udp => Transport::Udp,
            TrunkTransport::Tcp => Transport::Tcp,
            TrunkTransport::Tls => Transport::Tls,
        };
        let cfg = UacConfig::new(
            local,
            transport,
            format!("sluice/{}", env!("CARGO_PKG_VERSION")),
        );
        // std seeds every RandomState from the OS.
        let seed = RandomState::new().hash_one(0xd1a1_u64);
        let tcp = transport
            .is_stream()
            .then(|| TrunkConnection::new(setup.trunk, setup.tls.clone()));
        Self {
            socket,
            tcp,
            transport,
            uac: Uac::new(cfg, seed),
            setup,
            pool,
            pool_events,
            commands,
            stop,
            live: HashMap::new(),
            ended: VecDeque::new(),
            rng: SystemRandom::new(),
        }
    }

    pub(super) fn run(mut self) {
        let mut buf = vec![0u8; crate::sip::MAX_MESSAGE_SIZE];
        while !self.stop.load(Ordering::Relaxed) {
            self.turn(&mut buf);
        }
        let now = Instant::now();
        let live: Vec<CallId> = self.live.keys().copied().collect();
        for call in live {
            self.uac.hangup(now, call);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.live.is_empty() && Instant::now() < deadline {
            self.turn(&mut buf);
        }
        // Whatever did not end in time leaves its meeting now.
        for (_, call) in self.live.drain() {
            if let Some(leg) = &call.leg {
                self.setup.desk.leave(leg);
            }
            self.setup.counters.ended(DialOutcome::Failed);
        }
    }

    fn turn(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        let wait = self
            .uac
            .poll_timeout()
            .map_or(POLL, |at| at.saturating_duration_since(now).min(POLL))
            .max(Duration::from_millis(1));
        if let Some(conn) = &mut self.tcp {
            let (uac, trunk, transport) = (&mut self.uac, self.setup.trunk, self.transport);
            let read = conn.read(wait, |at, msg| {
                uac.handle_message(at, transport, trunk, msg);
            });
            if let Err(e) = read {
                self.link_failed(Instant::now(), &e.to_string());
            }
        } else {
            self.read_datagrams(wait, buf);
        }
        let now = Instant::now();
        self.uac.handle_timeout(now);
        self.drain_events(now);
        while let Ok(command) = self.commands.try_recv() {
            self.command(now, command);
        }
        while let Ok(PoolEvent::Hangup(call)) = self.pool_events.try_recv() {
            self.uac.hangup(now, call);
        }
        self.drain_events(now);
        self.transmit(now);
    }

    /// Sends what the UAC wrote. A stream connection that cannot be opened
    /// fails the calls waiting on it (with the reason, for the API) and
    /// drops the rest of this turn's messages rather than trying again for
    /// each.
    fn transmit(&mut self, now: Instant) {
        while let Some(t) = self.uac.poll_transmit() {
            let link_error = match &mut self.tcp {
                Some(conn) if t.transport.is_stream() => conn.send(&t.payload).err(),
                _ => {
                    if let Err(e) = self.socket.send_to(&t.payload, t.to) {
                        tracing::debug!("dial-out SIP send to {} failed: {e}", t.to);
                    }
                    None
                }
            };
            let Some(e) = link_error else {
                continue;
            };
            let mut dropped = 0;
            while self.uac.poll_transmit().is_some() {
                dropped += 1;
            }
            if dropped > 0 {
                tracing::debug!("dial-out: {dropped} more messages to the trunk dropped");
            }
            self.link_failed(now, &e.to_string());
        }
    }

    /// The connection to the trunk failed: the calls waiting on it end
    /// `failed`, with `reason` for the API.
    fn link_failed(&mut self, now: Instant, reason: &str) {
        tracing::warn!("dial-out: {reason}");
        for call in self.uac.handle_transport_error(now, self.setup.trunk) {
            if let Some(c) = self.live.get_mut(&call) {
                c.reason.get_or_insert_with(|| reason.to_owned());
            }
        }
        self.drain_events(now);
    }

    /// Reads the UDP socket for up to `wait`, then whatever else is queued.
    fn read_datagrams(&mut self, wait: Duration, buf: &mut [u8]) {
        let _ = self.socket.set_read_timeout(Some(wait));
        for _ in 0..64 {
            match self.socket.recv_from(buf) {
                Ok((len, from)) => {
                    // Only the trunk speaks to this socket.
                    if from == self.setup.trunk
                        && let Some(data) = buf.get(..len)
                    {
                        self.uac.handle_datagram(Instant::now(), from, data);
                    }
                    let _ = self.socket.set_read_timeout(Some(Duration::from_millis(1)));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => {
                    tracing::debug!("dial-out SIP socket: {e}");
                    break;
                }
            }
        }
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.uac.poll_event() {
            self.on_event(now, event);
        }
    }

    fn on_event(&mut self, now: Instant, event: UacEvent) {
        match event {
            UacEvent::Provisional { call, status } => {
                if let Some(c) = self.live.get_mut(&call) {
                    c.sip_status = Some(status);
                    if status >= 180 && c.state == CallState::Dialing {
                        c.state = CallState::Ringing;
                    }
                }
            }
            UacEvent::EarlyMedia {
                call,
                status,
                answer,
            } => {
                if let Some(c) = self.live.get_mut(&call) {
                    c.sip_status = Some(status);
                    c.state = CallState::EarlyMedia;
                    c.session = self
                        .uac
                        .local_sdp(call)
                        .and_then(|ours| dialed_session(ours, &answer));
                }
                self.start_media(now, call, &answer);
            }
            UacEvent::Answered { call, answer } => {
                let Some(c) = self.live.get_mut(&call) else {
                    return;
                };
                c.sip_status = Some(200);
                c.state = CallState::Answered;
                if let Some(answer) = &answer {
                    c.session = self
                        .uac
                        .local_sdp(call)
                        .and_then(|ours| dialed_session(ours, answer));
                }
                match (answer, c.in_pool) {
                    (Some(answer), true) => {
                        let _ = self.pool.send(PoolCommand::Update {
                            id: call,
                            remote: SocketAddr::new(answer.connection, answer.port),
                            rtcp: negotiate(&answer).map_or_else(
                                |_| SocketAddr::new(answer.connection, answer.port.wrapping_add(1)),
                                |n| n.rtcp,
                            ),
                            held: answer.held,
                            rekey: None,
                        });
                    }
                    (Some(answer), false) => self.start_media(now, call, &answer),
                    (None, true) => {}
                    (None, false) => {
                        tracing::info!("dial-out: the 200 OK has no usable SDP answer; hanging up");
                        c.reason = Some("the 200 OK has no usable SDP answer".to_owned());
                        c.media_failed = true;
                        self.uac.hangup(now, call);
                    }
                }
            }
            UacEvent::Reoffer { call, offer } => self.reoffer(now, call, &offer),
            UacEvent::Ended {
                call,
                outcome,
                status,
            } => self.ended(call, outcome, status),
        }
    }

    /// The far end's re-INVITE: answered as a dial-in caller's is
    /// (`dialin/reoffer.rs`: hold, address, keys, codec, rtcp-mux).
    fn reoffer(&mut self, now: Instant, call: CallId, offer: &MediaOffer) {
        let media_ip = self.setup.media_ip;
        let answered = self
            .live
            .get_mut(&call)
            .filter(|c| c.in_pool)
            .and_then(|c| c.session.as_mut())
            .map(|session| answer_reoffer(session, offer, media_ip));
        match answered {
            Some(Ok((sdp, update))) => {
                let _ = self.pool.send(PoolCommand::Reoffer {
                    id: call,
                    update: Box::new(update),
                });
                self.uac.answer_reinvite(now, call, &sdp);
            }
            Some(Err((status, reason))) => self.uac.reject_reinvite(now, call, status, reason),
            None => self
                .uac
                .reject_reinvite(now, call, 488, "Not Acceptable Here"),
        }
    }

    fn ended(&mut self, call: CallId, outcome: DialOutcome, status: Option<u16>) {
        let Some(mut c) = self.live.remove(&call) else {
            return;
        };
        let outcome = if c.media_failed {
            DialOutcome::Failed
        } else {
            outcome
        };
        c.state = CallState::Ended;
        c.outcome = Some(outcome);
        if status.is_some() {
            c.sip_status = status;
        }
        if c.in_pool {
            let _ = self.pool.send(PoolCommand::End(call));
        } else if let Some(leg) = c.leg.take() {
            self.setup.desk.leave(&leg);
        }
        c.sockets = None;
        tracing::info!(
            meeting = %c.meeting,
            call = %c.api_id,
            outcome = outcome.name(),
            sip_status = ?c.sip_status,
            reason = c.reason.as_deref().unwrap_or(""),
            "dial-out call ended"
        );
        self.setup.counters.ended(outcome);
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back(c);
    }

    /// Bridges the call's media to the far end's SDP `answer`.
    fn start_media(&mut self, now: Instant, call: CallId, answer: &MediaOffer) {
        let Some(c) = self.live.get_mut(&call) else {
            return;
        };
        if c.in_pool {
            return;
        }
        let media = match caller_media(c, answer, self.setup.config.srtp()) {
            Ok(media) => media,
            Err(why) => {
                tracing::info!(meeting = %c.meeting, "dial-out answer refused: {why}");
                c.reason = Some(format!("the far end's answer was refused: {why}"));
                c.media_failed = true;
                self.uac.hangup(now, call);
                return;
            }
        };
        let (Some(leg), Some(sockets)) = (c.leg.take(), c.sockets.take()) else {
            return;
        };
        match bridge(&self.setup.settings, call, media, leg, sockets, now) {
            Ok(slot) => {
                c.in_pool = true;
                let _ = self.pool.send(PoolCommand::Add(slot));
            }
            Err(e) => {
                // The bridge has already taken the phone out of the meeting.
                tracing::warn!(meeting = %c.meeting, "dial-out media could not start: {e}");
                c.reason = Some(format!("the media could not start: {e}"));
                c.media_failed = true;
                self.uac.hangup(now, call);
            }
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Dial(request, reply) => {
                let _ = reply.send(self.dial(now, request));
            }
            Command::Show { meeting, id, reply } => {
                let _ = reply.send(self.find(&meeting, &id).map(Outbound::view));
            }
            Command::Hangup { meeting, id, reply } => {
                let found = self
                    .live
                    .iter()
                    .find(|(_, c)| c.meeting == meeting && c.api_id == id)
                    .map(|(call, _)| *call);
                if let Some(call) = found {
                    self.uac.hangup(now, call);
                }
                let _ = reply.send(self.find(&meeting, &id).map(Outbound::view));
            }
        }
    }

    fn find(&self, meeting: &str, id: &str) -> Result<&Outbound, ApiError> {
        self.live
            .values()
            .chain(self.ended.iter().rev())
            .find(|c| c.meeting == meeting && c.api_id == id)
            .ok_or_else(|| ApiError::CallNotFound(id.to_owned()))
    }

    fn dial(&mut self, now: Instant, request: DialRequest) -> Result<CallView, ApiError> {
        let desk = &self.setup.desk;
        let found = desk.lookup(&request.meeting)?;
        if found.mode == MeetingMode::E2ee {
            return Err(ApiError::E2eeForbidsDialOut);
        }
        if self.live.len() >= self.setup.config.max_calls {
            return Err(ApiError::DialOutUnavailable(format!(
                "{} dial-out calls are in progress, [sip.trunk] max_calls",
                self.live.len()
            )));
        }
        let from = match request.from.or_else(|| self.setup.config.from.clone()) {
            Some(from) => from,
            None => format!("sip:{}@{}", request.meeting, self.socket_ip()),
        };
        if !is_sip_uri(&from) {
            return Err(ApiError::InvalidRequest(format!(
                "from: {from:?} is not a SIP URI; use e.g. \"sip:meetings@example.org\""
            )));
        }
        let name = format!("phone {}", request.to);
        let leg = admit(desk, &request.meeting, &name)?;
        let undo = |desk: &MeetingDesk, e: ApiError| {
            desk.leave(&leg);
            e
        };
        let sockets = MediaSockets::bind(self.setup.media_ip, self.setup.relay)
            .map_err(|e| undo(desk, ApiError::Internal(format!("cannot bind media: {e}"))))?;
        let port = sockets
            .port()
            .map_err(|e| undo(desk, ApiError::Internal(format!("cannot bind media: {e}"))))?;
        let our_key = match self.setup.config.srtp() {
            TrunkSrtp::Off => None,
            TrunkSrtp::Required | TrunkSrtp::Optional => {
                let mut material = vec![0u8; OFFERED_SUITE.key_material_len()];
                self.rng.fill(&mut material).map_err(|_| {
                    undo(
                        desk,
                        ApiError::Internal("the system random generator failed".to_owned()),
                    )
                })?;
                Some(material)
            }
        };
        // The codecs dial-in takes (Opus, G.722, PCMU, PCMA): a wideband
        // phone is bridged at its own rate, not through G.711.
        let offer = make_audio_offer(&OfferSpec {
            address: self.setup.media_ip,
            port,
            rtcp_mux: false,
            rtcp_port: None,
            crypto: our_key.clone().map(|k| (1, OFFERED_SUITE, k)),
            session_id: u64::from(random_u32()),
            session_version: 1,
        });
        let dial = Dial {
            to: request.to.clone(),
            from: from.clone(),
            display_name: request.caller_id_name,
            next_hop: self.setup.trunk,
            sdp: offer,
            account: self.setup.account.clone(),
            ring_timeout: Duration::from_secs(self.setup.config.ring_timeout_secs),
        };
        let call = self
            .uac
            .dial(now, dial)
            .map_err(|e| undo(desk, ApiError::InvalidRequest(e.to_string())))?;
        let record = Outbound {
            api_id: format!("{:08x}{:08x}", random_u32(), random_u32()),
            meeting: request.meeting,
            to: request.to,
            from,
            state: CallState::Dialing,
            outcome: None,
            sip_status: None,
            participant: leg.participant.clone(),
            leg: Some(leg),
            sockets: Some(sockets),
            our_key,
            in_pool: false,
            session: None,
            media_failed: false,
            reason: None,
        };
        let view = record.view();
        tracing::info!(meeting = %view.meeting, call = %view.id, "dial-out call placed");
        self.live.insert(call, record);
        self.setup.counters.started();
        Ok(view)
    }

    fn socket_ip(&self) -> IpAddr {
        self.socket
            .local_addr()
            .map_or(self.setup.media_ip, |a| a.ip())
    }
}

/// Admits the phone with a fresh SSRC (another on the rare collision).
fn admit(desk: &MeetingDesk, meeting: &str, name: &str) -> Result<BridgeLeg, ApiError> {
    let mut last = None;
    for _ in 0..4 {
        match desk.admit_dialed(meeting, name, random_u32()) {
            Err(ApiError::DuplicateSsrc(ssrc)) => last = Some(ApiError::DuplicateSsrc(ssrc)),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| ApiError::Internal("no free SSRC".to_owned())))
}

/// The bridge's view of the far end, from its SDP answer to our offer.
fn caller_media(c: &Outbound, answer: &MediaOffer, srtp: TrunkSrtp) -> Result<CallerMedia, String> {
    let negotiated = negotiate(answer).map_err(|e| e.to_string())?;
    let keys = match (&c.our_key, &negotiated.crypto) {
        (Some(ours), Some(theirs)) => {
            if theirs.profile != OFFERED_SUITE {
                return Err(format!(
                    "the answer's SRTP suite {:?} is not the one offered",
                    theirs.profile
                ));
            }
            let theirs =
                MasterKey::new(theirs.profile, &theirs.key_material).map_err(|e| e.to_string())?;
            let ours = MasterKey::new(OFFERED_SUITE, ours).map_err(|e| e.to_string())?;
            Some((theirs, ours))
        }
        (Some(_), None) if srtp == TrunkSrtp::Required => {
            return Err("SRTP is required ([sip.trunk] srtp) and the answer has none".to_owned());
        }
        (None, Some(_)) => return Err("the answer has SRTP keys for a plain RTP offer".to_owned()),
        _ => None,
    };
    // The same mapping as a dial-in caller's: Opus at 48 kHz, G.722 at
    // 16 kHz, G.711 at 8 kHz.
    let codec = caller_codec(negotiated.codec.codec);
    Ok(CallerMedia {
        codec,
        payload_type: negotiated.codec.pt,
        telephone_event: negotiated.telephone_event,
        remote: negotiated.remote,
        rtcp: negotiated.rtcp,
        rtcp_mux: negotiated.rtcp_mux,
        srtp: keys,
        opus_fmtp: answer.opus,
        display: format!("phone {}", c.to),
    })
}

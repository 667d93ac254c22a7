//! The SIP thread: one UDP socket, the sans-IO [`Uas`], and the decisions
//! a call's signalling needs (which meeting, refuse or answer, which SDP).
//! Media goes to the pool threads (`pool.rs`): a call whose meeting is
//! known from the INVITE to the thread `hash(meeting id) % threads`, so
//! that the meeting's callers share one meeting mix there; a voice menu
//! call, whose meeting is not known yet, round robin.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::control::DeskError;
use crate::metrics::{CallOutcome, SipEdge};
use crate::policy::Refusal;
use crate::relay::MeetingMode;
use crate::sip::sdp::{self, AnswerSpec, MediaOffer, Negotiated, build_answer};
use crate::sip::{CallId, Event, SipLimits, Transport, Uas, UasStats};
use crate::srtp::MasterKey;

use super::call::{Call, CallSettings, CallerMedia, Entry, admit_direct, random_u32};
use super::pool::{CallSlot, PoolCommand, PoolEvent};
use super::reoffer::{Session, answer_reoffer, bind_rtcp, caller_codec};
use super::stream::{StreamLimits, StreamStats, Streams};

/// The `Reason` header an E2EE meeting's refusal carries (RFC 3326).
pub const E2EE_REASON: &str =
    "SIP;cause=403;text=\"End-to-end encrypted meetings cannot be joined by phone\"";

/// The signalling thread's longest sleep: the pool's hang-up requests wait
/// at most this long.
const POLL: Duration = Duration::from_millis(10);

/// Settings the signalling thread needs beyond the calls'.
#[derive(Debug, Clone)]
pub(crate) struct SignallingSettings {
    pub(crate) ivr_user: String,
    pub(crate) media_ip: IpAddr,
    pub(crate) relay: SocketAddr,
    pub(crate) max_calls: usize,
    pub(crate) answer_delay: Duration,
    /// Calls over TLS must offer SRTP (`[sip] tls_require_srtp`).
    pub(crate) tls_require_srtp: bool,
}

/// The 488's Warning (RFC 3261 §20.43) when a TLS call offers plain RTP.
const SRTP_REQUIRED_WARNING: &str = "399 sluice \"SRTP (SDES) is required for calls over TLS\"";

/// UDP datagrams read per turn, at most (the streams get their turn too).
const DATAGRAMS_PER_TURN: usize = 64;

/// A call the signalling side knows: its pool thread, and what its next
/// re-offer is answered against.
#[derive(Debug)]
struct Known {
    pool: usize,
    session: Session,
}

/// A call ringing until its answer is due.
#[derive(Debug)]
struct Ringing {
    call: CallId,
    due: Instant,
    sdp: String,
    slot: Box<CallSlot>,
    pool: usize,
}

pub(crate) struct Signalling {
    pub(crate) socket: UdpSocket,
    /// SIP over TCP and TLS.
    pub(crate) streams: Streams,
    pub(crate) uas: Uas,
    pub(crate) settings: SignallingSettings,
    pub(crate) calls_settings: Arc<CallSettings>,
    pub(crate) pools: Vec<Sender<PoolCommand>>,
    pub(crate) events: Receiver<PoolEvent>,
    pub(crate) stop: Arc<AtomicBool>,
    /// New limits from a config reload, taken at the next turn.
    pub(crate) reload: Receiver<SipReload>,
    known: HashMap<CallId, Known>,
    ringing: Vec<Ringing>,
    next_pool: usize,
    malformed_seen: u64,
    edge_seen: UasStats,
    streams_seen: StreamStats,
    rng: SystemRandom,
}

/// What a config reload changes in the signalling thread.
#[derive(Debug, Clone)]
pub(crate) struct SipReload {
    pub(crate) limits: SipLimits,
    pub(crate) max_calls: usize,
    pub(crate) answer_delay: Duration,
    pub(crate) streams: StreamLimits,
}

impl std::fmt::Debug for Signalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signalling")
            .field("calls", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Signalling {
    pub(crate) fn new(
        (socket, streams): (UdpSocket, Streams),
        uas: Uas,
        settings: SignallingSettings,
        calls_settings: Arc<CallSettings>,
        pools: Vec<Sender<PoolCommand>>,
        events: Receiver<PoolEvent>,
        (stop, reload): (Arc<AtomicBool>, Receiver<SipReload>),
    ) -> Self {
        Self {
            socket,
            streams,
            uas,
            settings,
            calls_settings,
            pools,
            events,
            stop,
            reload,
            known: HashMap::new(),
            ringing: Vec::new(),
            next_pool: 0,
            malformed_seen: 0,
            edge_seen: UasStats::default(),
            streams_seen: StreamStats::default(),
            rng: SystemRandom::new(),
        }
    }

    /// Serves SIP until `stop`, then hangs up every call and gives their
    /// BYEs a moment to be answered.
    pub(crate) fn run(mut self) {
        let mut buf = vec![0u8; 65_535];
        while !self.stop.load(Ordering::Relaxed) {
            self.turn(&mut buf);
        }
        let now = Instant::now();
        for ringing in std::mem::take(&mut self.ringing) {
            self.uas
                .reject(now, ringing.call, 480, "Temporarily Unavailable", &[]);
            ringing.slot.close(&self.calls_settings);
        }
        let calls: Vec<CallId> = self.known.keys().copied().collect();
        for call in calls {
            self.uas.hangup(now, call);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.known.is_empty() && Instant::now() < deadline {
            self.turn(&mut buf);
        }
        self.flush();
        self.streams.close_all();
    }

    fn turn(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        let mut wait = POLL;
        if let Some(at) = self.uas.poll_timeout() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(r) = self.ringing.iter().map(|r| r.due).min() {
            wait = wait.min(r.saturating_duration_since(now));
        }
        if self.streams.wait(&self.socket, wait) {
            for _ in 0..DATAGRAMS_PER_TURN {
                match self.socket.recv_from(buf) {
                    Ok((len, from)) => {
                        if let Some(data) = buf.get(..len) {
                            self.uas.handle_datagram(Instant::now(), from, data);
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("SIP socket: {e}");
                        break;
                    }
                }
            }
        }
        self.streams.service(Instant::now(), &mut self.uas);
        let now = Instant::now();
        self.uas.handle_timeout(now);
        while let Some(event) = self.uas.poll_event() {
            self.on_event(event, now);
        }
        while let Ok(PoolEvent::Hangup(call)) = self.events.try_recv() {
            self.uas.hangup(now, call);
        }
        // Counted before the answers leave: whoever reads an answer then
        // sees the drops that came before it in the metrics.
        let malformed = self.uas.stats().malformed_dropped;
        if malformed > self.malformed_seen {
            self.calls_settings
                .counters
                .sip_malformed(malformed - self.malformed_seen);
            self.malformed_seen = malformed;
        }
        self.answer_due(now);
        self.flush();
        self.count_edge();
        while let Ok(reload) = self.reload.try_recv() {
            self.uas.set_limits(reload.limits);
            self.settings.max_calls = reload.max_calls;
            self.settings.answer_delay = reload.answer_delay;
            self.streams.set_limits(reload.streams);
        }
    }

    /// Moves the UAS's edge counters into the metrics.
    fn count_edge(&mut self) {
        let now = self.uas.stats();
        let was = self.edge_seen;
        let pairs = [
            (SipEdge::NotAllowed, now.not_allowed, was.not_allowed),
            (SipEdge::RateLimited, now.rate_limited, was.rate_limited),
            (
                SipEdge::PendingLimited,
                now.pending_limited,
                was.pending_limited,
            ),
            (
                SipEdge::AuthChallenged,
                now.auth_challenges,
                was.auth_challenges,
            ),
            (
                SipEdge::Stateless,
                now.stateless_refusals,
                was.stateless_refusals,
            ),
        ];
        let streams = self.streams.stats();
        let was_streams = self.streams_seen;
        let stream_pairs = [
            (
                SipEdge::ConnectionRefused,
                streams.refused,
                was_streams.refused,
            ),
            (
                SipEdge::ConnectionIdle,
                streams.idle_closed,
                was_streams.idle_closed,
            ),
            (
                SipEdge::ConnectionMisbehaving,
                streams.misbehaving_closed,
                was_streams.misbehaving_closed,
            ),
        ];
        self.streams_seen = streams;
        for (why, now, was) in pairs.into_iter().chain(stream_pairs) {
            if now > was {
                self.calls_settings.counters.sip_edge(why, now - was);
            }
        }
        self.edge_seen = now;
    }

    fn flush(&mut self) {
        while let Some(t) = self.uas.poll_transmit() {
            if t.transport.is_stream() {
                self.streams.send(&t);
            } else if let Err(e) = self.socket.send_to(&t.payload, t.to) {
                tracing::debug!("SIP send to {} failed: {e}", t.to);
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Incoming {
                call,
                from,
                transport,
                user,
                caller,
                offer,
            } => self.incoming(now, call, (from, transport), &user, &caller, offer),
            Event::Confirmed { .. } => {}
            Event::Reoffer { call, offer } => self.reoffer(now, call, &offer),
            Event::Cancelled { call } => {
                if let Some(at) = self.ringing.iter().position(|r| r.call == call) {
                    let ringing = self.ringing.swap_remove(at);
                    ringing.slot.abandon(&self.calls_settings);
                }
                self.known.remove(&call);
            }
            Event::Ended { call, .. } => {
                if let Some(known) = self.known.remove(&call) {
                    let _ = self.pools[known.pool].send(PoolCommand::End(call));
                }
            }
        }
    }

    fn refuse(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        outcome: CallOutcome,
    ) {
        self.uas.reject(now, call, status, reason, &[]);
        self.calls_settings.counters.outcome(outcome);
    }

    /// A refusal that will never become a call: sent once, no state kept.
    fn refuse_stateless(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        self.uas.refuse_stateless(now, call, status, reason, extra);
        self.calls_settings.counters.outcome(CallOutcome::Failed);
    }

    fn incoming(
        &mut self,
        now: Instant,
        call: CallId,
        (from, transport): (SocketAddr, Transport),
        user: &str,
        caller: &str,
        offer: Option<MediaOffer>,
    ) {
        if self.known.len() >= self.settings.max_calls {
            return self.refuse_stateless(now, call, 503, "Service Unavailable", &[]);
        }
        let Some(offer) = offer else {
            return self.refuse(now, call, 488, "Not Acceptable Here", CallOutcome::Failed);
        };
        let negotiated = match sdp::negotiate(&offer) {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(%from, "dial-in offer refused: {e}");
                return self.refuse(now, call, 488, "Not Acceptable Here", CallOutcome::Failed);
            }
        };
        if transport == Transport::Tls
            && self.settings.tls_require_srtp
            && negotiated.crypto.is_none()
        {
            tracing::info!(%from, "dial-in over TLS refused: the offer has no SRTP (SDES)");
            self.uas.reject(
                now,
                call,
                488,
                "Not Acceptable Here",
                &[("Warning", SRTP_REQUIRED_WARNING)],
            );
            self.calls_settings.counters.outcome(CallOutcome::Failed);
            return;
        }
        let desk = &self.calls_settings.desk;
        let entry = if user == self.settings.ivr_user {
            Entry::Menu
        } else {
            match desk.lookup(user) {
                Err(_) => {
                    return self.refuse_stateless(now, call, 404, "Not Found", &[]);
                }
                Ok(found) if found.mode == MeetingMode::E2ee => {
                    self.calls_settings
                        .counters
                        .outcome(CallOutcome::RefusedE2ee);
                    self.uas.refuse_stateless(
                        now,
                        call,
                        403,
                        "Forbidden",
                        &[("Reason", E2EE_REASON)],
                    );
                    return;
                }
                Ok(found) if found.needs_passcode => Entry::Passcode {
                    meeting: user.to_owned(),
                },
                Ok(_) => match admit_direct(desk, user, &display_name(caller)) {
                    Ok(leg) => Entry::Admitted(leg),
                    Err(e) => {
                        let (status, reason) = refusal_status(&e);
                        tracing::info!(%from, meeting = user, "dial-in refused: {}", e.message());
                        if matches!(status, 403 | 404 | 503) {
                            return self.refuse_stateless(now, call, status, reason, &[]);
                        }
                        return self.refuse(now, call, status, reason, CallOutcome::Failed);
                    }
                },
            }
        };
        let pool = match &entry {
            Entry::Admitted(leg) => meeting_pool(&leg.meeting, self.pools.len()),
            Entry::Passcode { meeting } => meeting_pool(meeting, self.pools.len()),
            Entry::Menu => {
                let pool = self.next_pool % self.pools.len();
                self.next_pool = self.next_pool.wrapping_add(1);
                pool
            }
        };
        match self.start_call(now, call, &offer, &negotiated, caller, entry) {
            Ok((slot, answer)) => {
                let sdp = build_answer(&answer);
                let caller_key = negotiated
                    .crypto
                    .as_ref()
                    .map(|c| (c.profile, c.key_material.clone()));
                self.known.insert(
                    call,
                    Known {
                        pool,
                        session: Session { answer, caller_key },
                    },
                );
                self.calls_settings.counters.call_started();
                self.uas.ringing(now, call);
                if self.settings.answer_delay.is_zero() {
                    self.uas.answer(now, call, &sdp);
                    let _ = self.pools[pool].send(PoolCommand::Add(slot));
                } else {
                    self.ringing.push(Ringing {
                        call,
                        due: now + self.settings.answer_delay,
                        sdp,
                        slot,
                        pool,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(%from, "dial-in call could not start: {e}");
                self.refuse(now, call, 500, "Server Internal Error", CallOutcome::Failed);
            }
        }
    }

    fn answer_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.ringing.len() {
            if self.ringing[i].due <= now {
                let r = self.ringing.swap_remove(i);
                self.uas.answer(now, r.call, &r.sdp);
                let _ = self.pools[r.pool].send(PoolCommand::Add(r.slot));
            } else {
                i += 1;
            }
        }
    }

    /// Binds the call's sockets, makes its keys and its media state.
    fn start_call(
        &self,
        now: Instant,
        call: CallId,
        offer: &MediaOffer,
        negotiated: &Negotiated,
        caller: &str,
        entry: Entry,
    ) -> Result<(Box<CallSlot>, AnswerSpec), StartError> {
        let leg = match &entry {
            Entry::Admitted(leg) => Some(leg.clone()),
            _ => None,
        };
        let started = (|| {
            let caller_socket = UdpSocket::bind(SocketAddr::new(self.settings.media_ip, 0))?;
            caller_socket.set_nonblocking(true)?;
            let relay = self.settings.relay;
            let local = if relay.ip().is_loopback() || relay.ip().is_unspecified() {
                match relay {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                }
            } else {
                relay.ip()
            };
            let meeting_socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
            meeting_socket.connect(to_reachable(relay))?;
            meeting_socket.set_nonblocking(true)?;
            let port = caller_socket.local_addr()?.port();
            // Without rtcp-mux, RTCP on its own socket: RTP + 1 where it is
            // free (RFC 3550 §11), else any port, named by a=rtcp.
            let rtcp_socket = if negotiated.rtcp_mux {
                None
            } else {
                Some(bind_rtcp(self.settings.media_ip, port)?)
            };
            let rtcp_port = match &rtcp_socket {
                Some(socket) => Some(socket.local_addr()?.port()),
                None => None,
            };
            let crypto = match &negotiated.crypto {
                Some(offered) => {
                    let mut material = vec![0u8; offered.profile.key_material_len()];
                    self.rng
                        .fill(&mut material)
                        .map_err(|_| StartError::Random)?;
                    let ours = MasterKey::new(offered.profile, &material)?;
                    let theirs = MasterKey::new(offered.profile, &offered.key_material)?;
                    Some((offered.tag, theirs, ours, material))
                }
                None => None,
            };
            let codec = caller_codec(negotiated.codec.codec);
            let media = CallerMedia {
                codec,
                payload_type: negotiated.codec.pt,
                telephone_event: negotiated.telephone_event,
                remote: SocketAddr::new(offer.connection, offer.port),
                rtcp: negotiated.rtcp,
                rtcp_mux: negotiated.rtcp_mux,
                srtp: crypto
                    .as_ref()
                    .map(|(_, theirs, ours, _)| (theirs.clone(), ours.clone())),
                opus_fmtp: offer.opus,
                display: display_name(caller),
            };
            let answer = AnswerSpec {
                address: self.settings.media_ip,
                port,
                codec: negotiated.codec,
                telephone_event: negotiated.telephone_event,
                telephone_events: negotiated.telephone_events,
                telephone_event_clock: negotiated.telephone_event_clock,
                crypto: crypto.map(|(tag, _, ours, material)| (tag, ours.profile(), material)),
                direction: offer.direction.answer(),
                session_id: u64::from(random_u32()),
                session_version: 1,
                rtcp_mux: negotiated.rtcp_mux,
                rtcp_port,
            };
            let held = offer.held;
            let mut call_state = Call::new(Arc::clone(&self.calls_settings), media, entry, now)?;
            call_state.update_caller(
                (
                    SocketAddr::new(offer.connection, offer.port),
                    negotiated.rtcp,
                ),
                held,
                now,
            );
            let slot = CallSlot::new(
                call,
                call_state,
                (caller_socket, rtcp_socket),
                meeting_socket,
            );
            Ok((Box::new(slot), answer))
        })();
        if started.is_err()
            && let Some(leg) = leg
        {
            self.calls_settings.desk.leave(&leg);
        }
        started
    }

    /// A re-INVITE's offer in a call that is up: answered as `reoffer.rs`
    /// decides (488 when it refuses; the call goes on as it was), its
    /// changes sent to the call's pool thread.
    fn reoffer(&mut self, now: Instant, call: CallId, offer: &MediaOffer) {
        let Some(known) = self.known.get_mut(&call) else {
            self.uas
                .reject_reinvite(now, call, 481, "Call/Transaction Does Not Exist");
            return;
        };
        match answer_reoffer(&mut known.session, offer, self.settings.media_ip) {
            Ok((sdp, update)) => {
                let _ = self.pools[known.pool].send(PoolCommand::Reoffer {
                    id: call,
                    update: Box::new(update),
                });
                self.uas.answer_reinvite(now, call, &sdp);
            }
            Err((status, reason)) => self.uas.reject_reinvite(now, call, status, reason),
        }
    }
}

/// Why a call's media could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the system random generator failed")]
    Random,
    #[error("bad SRTP key: {0}")]
    Key(#[from] crate::srtp::SrtpError),
    #[error("{0}")]
    Call(#[from] super::call::CallError),
}

/// The SIP answer to a refused admission.
fn refusal_status(e: &DeskError) -> (u16, &'static str) {
    match e {
        DeskError::MeetingNotFound(_) => (404, "Not Found"),
        DeskError::Refused(Refusal::MeetingLocked | Refusal::WrongPasscode) => (403, "Forbidden"),
        DeskError::Refused(Refusal::E2eeForbidsDialIn) => (403, "Forbidden"),
        DeskError::Refused(Refusal::MeetingFull { .. }) => (486, "Busy Here"),
        DeskError::Refused(Refusal::NodeFull { .. } | Refusal::NodeOverloaded { .. }) => {
            (503, "Service Unavailable")
        }
        _ => (500, "Server Internal Error"),
    }
}

/// The pool thread of every direct call to `meeting`, out of `threads`.
fn meeting_pool(meeting: &str, threads: usize) -> usize {
    // SipHash with fixed keys: the same thread for the same meeting for
    // the life of the process.
    let mut hasher = DefaultHasher::new();
    meeting.hash(&mut hasher);
    (hasher.finish() % threads.max(1) as u64) as usize
}

/// "phone sip:alice@pbx" → a participant name.
fn display_name(caller: &str) -> String {
    let mut name = String::from("phone ");
    name.extend(caller.chars().filter(|c| !c.is_control()).take(64));
    name
}

/// The relay's address as a bridge can reach it (an unspecified listen
/// address means loopback works).
fn to_reachable(relay: SocketAddr) -> SocketAddr {
    if relay.ip().is_unspecified() {
        let ip = match relay {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, relay.port())
    } else {
        relay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_keeps_its_pool_thread() {
        for threads in 1..8 {
            let pool = meeting_pool("5550001", threads);
            assert!(pool < threads);
            assert_eq!(meeting_pool("5550001", threads), pool);
        }
        // Meetings spread over the threads.
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|m| meeting_pool(&format!("{}", 5_550_000 + m), 4))
            .collect();
        assert_eq!(used.len(), 4);
    }
}

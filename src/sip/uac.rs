//! Dial-out signalling: a sans-IO SIP user agent client that places calls
//! through one trunk (RFC 3261 §8.1, §12.1.2, §13.2, §17.1, §9.1, §15.1).
//!
//! Driven like [`super::Uas`]: [`Uac::dial`] starts a call, every message
//! from the trunk goes to [`Uac::handle_datagram`] (or
//! [`Uac::handle_message`] for one cut from a stream), [`Uac::handle_timeout`]
//! runs when [`Uac::poll_timeout`] says, and after each of those drain
//! [`Uac::poll_transmit`] and [`Uac::poll_event`]. It never reads the clock.
//!
//! What it implements:
//! - the INVITE client transaction (§17.1.1): Timer A retransmits on UDP
//!   only (reliable transports never), Timer B gives up after 64*T1 without
//!   any response; a 300-699 final is ACKed inside the transaction (same
//!   branch, §17.1.1.3) and its retransmissions get that ACK again while
//!   Timer D runs (32 s on UDP, none on a stream);
//! - 1xx: 100 stops the retransmissions; 180/183 mark the call ringing and a
//!   18x with SDP is early media ([`UacEvent::EarlyMedia`]);
//! - 2xx: the dialog is set up (§12.1.2: remote tag, Contact, the route set
//!   as the reversed Record-Route), and its own ACK is a new transaction
//!   (§13.2.2.4) re-sent to every retransmitted 2xx;
//! - digest authentication on 401/407 (`digest_client.rs`): the INVITE is
//!   sent again with the next CSeq and the credentials, once per challenge
//!   (a second challenge for the same nonce, unless `stale`, is a failure);
//! - CANCEL (§9.1) only once a provisional response came (asked for
//!   earlier, it waits for one); the 487 that follows is ACKed; a 2xx
//!   racing the CANCEL is ACKed and the call hung up with BYE;
//! - BYE either way (§15.1), our BYE as a non-INVITE client transaction
//!   (Timers E and F); in-dialog OPTIONS are answered, and the far end's
//!   re-INVITEs (`uac/reinvite.rs`) become [`UacEvent::Reoffer`], answered
//!   by the call logic like a dial-in caller's.
//!
//! Every call ends with exactly one [`UacEvent::Ended`] carrying its
//! [`DialOutcome`]: 486/600 busy; 408, 480, Timer B or `ring_timeout`
//! no answer; 487 after our CANCEL cancelled; any other failure failed;
//! a call that was answered ends `Answered` whoever hangs up.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::digest_client::Challenge;
use super::header::{CSeq, NameAddr, Via};
use super::message::{Method, SipMessage, StartLine};
use super::sdp::{MediaOffer, parse_offer};
use super::wire::{Request, Response, encode_response, is_text};
use super::{CallId, Transmit, Transport, UasConfig};

mod reinvite;

/// The most outbound calls (live or lingering) one [`Uac`] holds.
pub const MAX_OUTBOUND_CALLS: usize = 1_000;

/// How the UAC presents itself and times its retransmissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UacConfig {
    /// Our address on `transport`, written into Via and Contact.
    pub local: SocketAddr,
    /// How the trunk is reached.
    pub transport: Transport,
    /// The `User-Agent:` value.
    pub user_agent: String,
    /// RFC 3261 T1 (500 ms).
    pub t1: Duration,
    /// RFC 3261 T2 (4 s).
    pub t2: Duration,
}

impl UacConfig {
    /// The RFC 3261 defaults for T1 and T2.
    pub fn new(local: SocketAddr, transport: Transport, user_agent: impl Into<String>) -> Self {
        Self {
            local,
            transport,
            user_agent: user_agent.into(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

/// A trunk account for digest authentication. The password never reaches
/// a log: `Debug` leaves it out.
#[derive(Clone)]
pub struct TrunkAccount {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for TrunkAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One call to place.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The Request-URI and To URI (`sip:+15551234@trunk`).
    pub to: String,
    /// The From URI (`sip:meeting@sluice`).
    pub from: String,
    /// The From display name, if any.
    pub display_name: Option<String>,
    /// Where every request of the call goes: the trunk (our outbound
    /// proxy, §8.1.2); names are resolved by the caller (sans-IO).
    pub next_hop: SocketAddr,
    /// Our SDP offer.
    pub sdp: String,
    /// Credentials for a 401/407, if the trunk has any.
    pub account: Option<TrunkAccount>,
    /// How long the far end may ring before we CANCEL (no answer).
    pub ring_timeout: Duration,
}

/// How an outbound call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialOutcome {
    /// It was answered (and later hung up by either side).
    Answered,
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 408, 480, no response at all (Timer B), or ringing past the ring
    /// timeout.
    NoAnswer,
    /// Any other refusal or error.
    Failed,
    /// We cancelled it before the answer.
    Cancelled,
}

impl DialOutcome {
    /// Every outcome, in the metrics' order.
    pub const ALL: [Self; 5] = [
        Self::Answered,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The API and metrics spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What the call logic must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UacEvent {
    /// A provisional response without SDP (100, 180, 183...).
    Provisional {
        /// The call.
        call: CallId,
        /// Its status.
        status: u16,
    },
    /// The first 18x with an SDP answer: early media may flow to it.
    EarlyMedia {
        /// The call.
        call: CallId,
        /// Its status (183 usually).
        status: u16,
        /// The far end's SDP.
        answer: MediaOffer,
    },
    /// The 2xx came and was ACKed.
    Answered {
        /// The call.
        call: CallId,
        /// The 2xx's SDP, when it had a readable one.
        answer: Option<MediaOffer>,
    },
    /// The far end re-INVITEd with an offer (hold, a new address, keys,
    /// codec): answer with [`Uac::answer_reinvite`] or
    /// [`Uac::reject_reinvite`].
    Reoffer {
        /// The call.
        call: CallId,
        /// The far end's new offer.
        offer: MediaOffer,
    },
    /// The call is over; its handle is no longer valid.
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        outcome: DialOutcome,
        /// The final status that decided it, if one did.
        status: Option<u16>,
    },
}

/// Why [`Uac::dial`] refused to start a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// [`MAX_OUTBOUND_CALLS`] are held.
    #[error("too many outbound calls in progress")]
    TooManyCalls,
    /// A URI, name or SDP that cannot go into a SIP message.
    #[error("{0} cannot be written into a SIP request")]
    Unwritable(&'static str),
    /// A `sips:` URI through a trunk not reached over TLS (RFC 5630 §3.1:
    /// `sips:` asks for TLS on every hop).
    #[error("a sips: URI needs a trunk reached over TLS ([sip.trunk] transport = \"tls\")")]
    SipsNeedsTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE out, nothing heard.
    Calling,
    /// A provisional came.
    Proceeding,
    /// ACKed 2xx: the call is up.
    Confirmed,
    /// Our BYE is out.
    Terminating,
    /// Ended: absorbing retransmissions until `expire_at`.
    Lingering,
}

/// A non-INVITE client transaction of ours (CANCEL, BYE).
#[derive(Debug)]
struct NonInvite {
    branch: String,
    bytes: Vec<u8>,
    interval: Duration,
    retransmit_at: Option<Instant>,
    expire_at: Instant,
    answered: bool,
}

#[derive(Debug)]
struct OutCall {
    sip_call_id: String,
    local_tag: String,
    /// From header value, with our tag.
    from: String,
    /// To header value without a tag (the INVITE's).
    to: String,
    remote_tag: Option<String>,
    uri: String,
    /// The remote target (the 2xx's Contact).
    target: String,
    route: Vec<String>,
    next_hop: SocketAddr,
    cseq: u32,
    branch: String,
    invite: Vec<u8>,
    phase: Phase,
    sdp: String,
    account: Option<TrunkAccount>,
    /// The nonce of the last challenge answered.
    answered_nonce: Option<String>,
    nc: u32,
    provisional: bool,
    early_media: bool,
    /// Asked to end before the answer, with this outcome.
    want_end: Option<DialOutcome>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B (Calling), the CANCEL's wait for 487, or the linger end.
    expire_at: Option<Instant>,
    ring_deadline: Option<Instant>,
    /// The last ACK sent, re-sent to retransmitted finals.
    ack: Option<Vec<u8>>,
    cancel: Option<NonInvite>,
    bye: Option<NonInvite>,
    /// The far end's last re-INVITE.
    reinvite: Option<reinvite::FarReinvite>,
    outcome: DialOutcome,
}

/// A sans-IO SIP user agent client. See the module docs.
#[derive(Debug)]
pub struct Uac {
    cfg: UacConfig,
    wire: UasConfig,
    rng: u64,
    next_call: u64,
    calls: HashMap<CallId, OutCall>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UacEvent>,
    malformed: u64,
}

/// What a 4xx-6xx final status means for the outcome.
fn outcome_of(status: u16) -> DialOutcome {
    match status {
        486 | 600 => DialOutcome::Busy,
        408 | 480 => DialOutcome::NoAnswer,
        487 => DialOutcome::Cancelled,
        _ => DialOutcome::Failed,
    }
}

impl Uac {
    /// A UAC whose tags, branches and Call-IDs come from `seed` (the
    /// caller seeds it from the OS; tests with a fixed one). T1 and T2 are
    /// bounded as in [`super::Uas::with_seed`].
    pub fn new(mut cfg: UacConfig, seed: u64) -> Self {
        cfg.t1 = cfg
            .t1
            .clamp(Duration::from_millis(1), Duration::from_secs(60));
        cfg.t2 = cfg.t2.clamp(cfg.t1, Duration::from_secs(600));
        let mut wire = UasConfig::new(cfg.local, cfg.user_agent.clone());
        match cfg.transport {
            Transport::Udp => {}
            Transport::Tcp => wire.tcp = Some(cfg.local),
            Transport::Tls => wire.tls = Some(cfg.local),
        }
        Self {
            cfg,
            wire,
            rng: seed,
            next_call: 1,
            calls: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            malformed: 0,
        }
    }

    /// Sends the INVITE of a new call; its events follow.
    pub fn dial(&mut self, now: Instant, dial: Dial) -> Result<CallId, DialError> {
        if self.calls.len() >= MAX_OUTBOUND_CALLS {
            return Err(DialError::TooManyCalls);
        }
        let clean = |s: &str| is_text(s) && !s.contains(['<', '>']);
        if !clean(&dial.to) || dial.to.contains(char::is_whitespace) {
            return Err(DialError::Unwritable("the To URI"));
        }
        if !clean(&dial.from) || dial.from.contains(char::is_whitespace) {
            return Err(DialError::Unwritable("the From URI"));
        }
        let sips = |uri: &str| {
            uri.get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
        };
        if sips(&dial.to) && self.cfg.transport != Transport::Tls {
            return Err(DialError::SipsNeedsTls);
        }
        if dial
            .display_name
            .as_deref()
            .is_some_and(|n| !is_text(n) || n.contains(['"', '\\']))
        {
            return Err(DialError::Unwritable("the caller name"));
        }
        let id = CallId(self.next_call);
        self.next_call += 1;
        let local_tag = self.token();
        let sip_call_id = format!("{}{}", self.token(), self.token());
        let from = match &dial.display_name {
            Some(name) => format!("\"{name}\" <{}>;tag={local_tag}", dial.from),
            None => format!("<{}>;tag={local_tag}", dial.from),
        };
        let mut call = OutCall {
            sip_call_id,
            local_tag,
            from,
            to: format!("<{}>", dial.to),
            remote_tag: None,
            uri: dial.to.clone(),
            target: dial.to,
            route: Vec::new(),
            next_hop: dial.next_hop,
            cseq: 1,
            branch: String::new(),
            invite: Vec::new(),
            phase: Phase::Calling,
            sdp: dial.sdp,
            account: dial.account,
            answered_nonce: None,
            nc: 0,
            provisional: false,
            early_media: false,
            want_end: None,
            retransmit_at: None,
            interval: self.cfg.t1,
            expire_at: None,
            // A timeout too large for the clock never fires.
            ring_deadline: now.checked_add(dial.ring_timeout),
            ack: None,
            cancel: None,
            bye: None,
            reinvite: None,
            outcome: DialOutcome::Failed,
        };
        self.send_invite(now, &mut call, None);
        self.calls.insert(id, call);
        Ok(id)
    }

    /// Ends a call: CANCEL before the answer (as soon as a provisional
    /// response allows it), BYE after. Unknown or ending calls: nothing.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        self.end_early(now, call, DialOutcome::Cancelled);
    }

    /// Feeds one datagram from the SIP socket. Never panics; what cannot
    /// be parsed is dropped and counted ([`Self::malformed`]).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_message(now, Transport::Udp, from, data);
    }

    /// Feeds one whole message that came on `transport` from `from`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        if !data.is_empty() && data.iter().all(|b| b" \t\r\n".contains(b)) {
            return;
        }
        let Ok(msg) = SipMessage::parse(data) else {
            self.malformed += 1;
            return;
        };
        match msg.start {
            StartLine::Response { status, .. } => self.on_response(now, status, &msg),
            StartLine::Request { .. } => self.on_request(now, from, transport, msg),
        }
    }

    /// The connection to `next_hop` could not be opened (refused, or a TLS
    /// handshake that failed): what was sent on it is lost, and a stream
    /// transport does not retransmit. Each call through it with a client
    /// transaction outstanding ends now, as if that transaction had been
    /// answered 503 (§8.1.3.1) rather than waiting for Timer B or F: an
    /// unanswered call ends [`DialOutcome::Failed`] (or as its hang-up
    /// asked), one whose BYE was out ends as it would have. An established
    /// call with nothing outstanding is left (its next request opens a new
    /// connection). Returns the calls ended; their [`UacEvent::Ended`]
    /// follow.
    pub fn handle_transport_error(&mut self, now: Instant, next_hop: SocketAddr) -> Vec<CallId> {
        let ids: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.next_hop == next_hop
                    && matches!(
                        c.phase,
                        Phase::Calling | Phase::Proceeding | Phase::Terminating
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            let Some(mut call) = self.calls.remove(&id) else {
                continue;
            };
            let outcome = match call.phase {
                Phase::Terminating => call.outcome,
                _ => call.want_end.unwrap_or(DialOutcome::Failed),
            };
            self.end(now, id, &mut call, outcome, None);
            self.calls.insert(id, call);
        }
        ids
    }

    /// Runs the timers due at `now` (early or late calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(mut call) = self.calls.remove(&id) else {
                continue;
            };
            let keep = self.timers(now, id, &mut call);
            if keep {
                self.calls.insert(id, call);
            }
        }
    }

    /// When [`Self::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                [
                    c.retransmit_at,
                    c.expire_at,
                    c.ring_deadline,
                    c.cancel.as_ref().and_then(|t| t.retransmit_at),
                    c.cancel.as_ref().map(|t| t.expire_at),
                    c.bye.as_ref().and_then(|t| t.retransmit_at),
                    c.bye.as_ref().map(|t| t.expire_at),
                    c.reinvite.as_ref().and_then(reinvite::FarReinvite::timeout),
                ]
            })
            .flatten()
            .min()
    }

    /// The next message to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<UacEvent> {
        self.events.pop_front()
    }

    /// Calls held (live and lingering).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Messages dropped because they did not parse.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn end_early(&mut self, now: Instant, id: CallId, outcome: DialOutcome) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        match call.phase {
            Phase::Calling | Phase::Proceeding if call.want_end.is_none() => {
                call.want_end = Some(outcome);
                call.ring_deadline = None;
                if call.provisional {
                    self.send_cancel(now, &mut call);
                }
            }
            Phase::Confirmed => self.send_bye(now, &mut call),
            _ => {}
        }
        self.calls.insert(id, call);
    }

    fn transport(&self) -> Transport {
        self.cfg.transport
    }

    fn reliable(&self) -> bool {
        self.cfg.transport.is_stream()
    }

    fn send(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            to,
            transport: self.transport(),
            payload,
        });
    }

    fn send_invite(&mut self, now: Instant, call: &mut OutCall, auth: Option<(&str, &str)>) {
        call.branch = format!("z9hG4bK{}", self.token());
        let bytes = self.encode(
            &Outgoing {
                method: Method::Invite,
                uri: &call.uri,
                branch: &call.branch,
                from: &call.from,
                to: &call.to,
                call_id: &call.sip_call_id,
                cseq: call.cseq,
                route: &[],
                contact: true,
                auth,
            },
            Some(&call.sdp),
        );
        call.invite.clone_from(&bytes);
        call.phase = Phase::Calling;
        call.provisional = false;
        call.interval = self.cfg.t1;
        call.retransmit_at = (!self.reliable()).then(|| now + self.cfg.t1);
        call.expire_at = Some(now + self.cfg.t1 * 64);
        self.send(call.next_hop, bytes);
    }

    fn send_cancel(&mut self, now: Instant, call: &mut OutCall) {
        if call.cancel.is_some() {
            return;
        }
        // §9.1: the INVITE's Request-URI, Call-ID, From, To, branch and
        // CSeq number.
        let bytes = self.encode(
            &Outgoing {
                method: Method::Cancel,
                uri: &call.uri,
                branch: &call.branch,
                from: &call.from,
                to: &call.to,
                call_id: &call.sip_call_id,
                cseq: call.cseq,
                route: &[],
                contact: false,
                auth: None,
            },
            None,
        );
        call.cancel = Some(self.non_invite(now, call.branch.clone(), bytes.clone()));
        // No 487 within 64*T1 of the CANCEL: the call is given up.
        call.expire_at = Some(now + self.cfg.t1 * 64);
        self.send(call.next_hop, bytes);
    }

    fn send_bye(&mut self, now: Instant, call: &mut OutCall) {
        call.cseq += 1;
        let branch = format!("z9hG4bK{}", self.token());
        let to = self.dialog_to(call);
        let bytes = self.encode(
            &Outgoing {
                method: Method::Bye,
                uri: &call.target,
                branch: &branch,
                from: &call.from,
                to: &to,
                call_id: &call.sip_call_id,
                cseq: call.cseq,
                route: &call.route,
                contact: false,
                auth: None,
            },
            None,
        );
        call.bye = Some(self.non_invite(now, branch, bytes.clone()));
        call.phase = Phase::Terminating;
        self.send(call.next_hop, bytes);
    }

    fn non_invite(&self, now: Instant, branch: String, bytes: Vec<u8>) -> NonInvite {
        NonInvite {
            branch,
            bytes,
            interval: self.cfg.t1,
            retransmit_at: (!self.reliable()).then(|| now + self.cfg.t1),
            expire_at: now + self.cfg.t1 * 64,
            answered: false,
        }
    }

    fn dialog_to(&self, call: &OutCall) -> String {
        match &call.remote_tag {
            Some(tag) => format!("{};tag={tag}", call.to),
            None => call.to.clone(),
        }
    }

    /// The ACK: for a 2xx a new transaction (§13.2.2.4) to the remote
    /// target; for a 300-699 inside the INVITE's (§17.1.1.3) with the
    /// response's To.
    fn send_ack(&mut self, call: &mut OutCall, to_2xx: bool, response_to: &str) {
        let (branch, uri, route) = if to_2xx {
            (
                format!("z9hG4bK{}", self.token()),
                call.target.clone(),
                call.route.clone(),
            )
        } else {
            (call.branch.clone(), call.uri.clone(), Vec::new())
        };
        let bytes = self.encode(
            &Outgoing {
                method: Method::Ack,
                uri: &uri,
                branch: &branch,
                from: &call.from,
                to: response_to,
                call_id: &call.sip_call_id,
                cseq: call.cseq,
                route: &route,
                contact: false,
                auth: None,
            },
            None,
        );
        call.ack = Some(bytes.clone());
        self.send(call.next_hop, bytes);
    }

    /// Moves a call to Lingering with its outcome and reports it.
    fn end(
        &mut self,
        now: Instant,
        id: CallId,
        call: &mut OutCall,
        outcome: DialOutcome,
        status: Option<u16>,
    ) {
        if call.phase == Phase::Lingering {
            return;
        }
        call.phase = Phase::Lingering;
        call.outcome = outcome;
        call.retransmit_at = None;
        call.ring_deadline = None;
        call.cancel = None;
        call.bye = None;
        // Timer D / the dialog's tail: 32 s on UDP to absorb retransmitted
        // finals and BYEs, nothing on a stream.
        let linger = if self.reliable() {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.cfg.t1 * 64 / 2)
        };
        call.expire_at = Some(now + linger);
        self.events.push_back(UacEvent::Ended {
            call: id,
            outcome,
            status,
        });
    }

    fn find(&self, pred: impl Fn(&OutCall) -> bool) -> Option<CallId> {
        self.calls.iter().find(|(_, c)| pred(c)).map(|(id, _)| *id)
    }

    fn on_response(&mut self, now: Instant, status: u16, msg: &SipMessage) {
        let Some(via) = msg.header("Via").and_then(Via::parse) else {
            self.malformed += 1;
            return;
        };
        let Some(branch) = via.rfc3261_branch().map(str::to_owned) else {
            return;
        };
        let Some(cseq) = msg.header("CSeq").and_then(CSeq::parse) else {
            self.malformed += 1;
            return;
        };
        let call_id = msg.header("Call-ID").unwrap_or_default();
        let Some(id) = self.find(|c| {
            c.sip_call_id == call_id
                && (c.branch == branch || c.bye.as_ref().is_some_and(|t| t.branch == branch))
        }) else {
            return;
        };
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        match cseq.method {
            Method::Invite if cseq.seq == call.cseq || call.phase == Phase::Lingering => {
                self.on_invite_response(now, id, &mut call, status, msg);
            }
            Method::Cancel => {
                if let Some(tx) = &mut call.cancel
                    && status >= 200
                {
                    tx.answered = true;
                    tx.retransmit_at = None;
                }
            }
            Method::Bye if call.bye.as_ref().is_some_and(|t| t.branch == branch) => {
                if status >= 200 {
                    let outcome = call.outcome;
                    self.end(now, id, &mut call, outcome, None);
                } else if let Some(tx) = &mut call.bye {
                    // §17.1.2.2: retransmit every T2 once proceeding.
                    tx.interval = self.cfg.t2;
                }
            }
            _ => {}
        }
        self.calls.insert(id, call);
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        id: CallId,
        call: &mut OutCall,
        status: u16,
        msg: &SipMessage,
    ) {
        let to = msg.header("To").unwrap_or_default().to_owned();
        let to_tag = NameAddr::parse(&to).and_then(|n| n.tag().map(str::to_owned));
        match (call.phase, status) {
            (Phase::Calling | Phase::Proceeding, 100..=199) => {
                call.phase = Phase::Proceeding;
                call.provisional = true;
                call.retransmit_at = None;
                if call.cancel.is_none() {
                    // Timer B does not run once proceeding (§17.1.1.2).
                    call.expire_at = None;
                }
                if call.want_end.is_some() {
                    self.send_cancel(now, call);
                }
                let sdp = (!msg.body.is_empty())
                    .then(|| parse_offer(&msg.body).ok())
                    .flatten();
                match sdp {
                    Some(answer) if !call.early_media && status > 100 => {
                        call.early_media = true;
                        self.events.push_back(UacEvent::EarlyMedia {
                            call: id,
                            status,
                            answer,
                        });
                    }
                    _ => self
                        .events
                        .push_back(UacEvent::Provisional { call: id, status }),
                }
            }
            (Phase::Calling | Phase::Proceeding, 200..=299) => {
                call.remote_tag = to_tag;
                if let Some(contact) = msg.header("Contact").and_then(NameAddr::parse) {
                    call.target = contact.uri.to_owned();
                }
                let mut route: Vec<String> = msg
                    .headers("Record-Route")
                    .filter(|v| is_text(v))
                    .map(str::to_owned)
                    .collect();
                route.reverse();
                call.route = route;
                call.retransmit_at = None;
                call.expire_at = None;
                call.ring_deadline = None;
                call.phase = Phase::Confirmed;
                self.send_ack(call, true, &to);
                match call.want_end {
                    Some(_) => {
                        // A 2xx raced our CANCEL (or came after the ring
                        // timeout): the call is hung up at once.
                        call.outcome = call.want_end.unwrap_or(DialOutcome::Cancelled);
                        call.cancel = None;
                        self.send_bye(now, call);
                    }
                    None => {
                        call.outcome = DialOutcome::Answered;
                        let answer = parse_offer(&msg.body).ok();
                        self.events
                            .push_back(UacEvent::Answered { call: id, answer });
                    }
                }
            }
            (Phase::Confirmed | Phase::Terminating | Phase::Lingering, 200..=299) => {
                // A retransmitted 2xx: its ACK again (§13.2.2.4).
                if let Some(ack) = call.ack.clone() {
                    self.send(call.next_hop, ack);
                }
            }
            (Phase::Calling | Phase::Proceeding, 300..=699) => {
                self.send_ack(call, false, &to);
                if matches!(status, 401 | 407) && self.retry_with_auth(now, call, status, msg) {
                    return;
                }
                let outcome = match (call.want_end, status) {
                    (Some(wanted), 487) => wanted,
                    (_, s) => outcome_of(s),
                };
                self.end(now, id, call, outcome, Some(status));
            }
            (Phase::Lingering, 300..=699) => {
                if let Some(ack) = call.ack.clone() {
                    self.send(call.next_hop, ack);
                }
            }
            _ => {}
        }
    }

    /// Sends the INVITE again with credentials; false when it cannot.
    fn retry_with_auth(
        &mut self,
        now: Instant,
        call: &mut OutCall,
        status: u16,
        msg: &SipMessage,
    ) -> bool {
        let (challenge_header, answer_header) = if status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(account) = call.account.clone() else {
            return false;
        };
        let Some(challenge) = Challenge::pick(msg.headers(challenge_header)) else {
            return false;
        };
        if call.want_end.is_some() {
            return false;
        }
        // The same nonce again means the password was wrong (unless the
        // trunk says the nonce merely went stale).
        if call.answered_nonce.as_deref() == Some(challenge.nonce.as_str()) && !challenge.stale {
            return false;
        }
        if call.answered_nonce.as_deref() != Some(challenge.nonce.as_str()) {
            call.nc = 0;
        }
        call.nc += 1;
        call.answered_nonce = Some(challenge.nonce.clone());
        let cnonce = self.token();
        let value = challenge.answer(
            &account.user,
            &account.password,
            "INVITE",
            &call.uri,
            call.nc,
            &cnonce,
        );
        call.cseq += 1;
        call.ack = None;
        self.send_invite(now, call, Some((answer_header, &value)));
        true
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        msg: SipMessage,
    ) {
        let Ok(req) = Request::read(msg, from, transport, true) else {
            return;
        };
        let id = self.find(|c| {
            c.sip_call_id == req.call_id && req.to_tag.as_deref() == Some(c.local_tag.as_str())
        });
        let reply = |uac: &mut Self, status: u16, reason: &str, sdp: Option<&str>| {
            let bytes = encode_response(
                &req.base,
                &Response {
                    dialog: sdp.is_some(),
                    sdp,
                    ..Response::new(status, reason)
                },
                &uac.wire,
            );
            uac.transmits.push_back(Transmit {
                to: req.base.reply_to,
                transport: req.base.transport,
                payload: bytes,
            });
        };
        match (req.method.clone(), id) {
            (Method::Ack, Some(id)) => self.on_dialog_ack(id, &req),
            (Method::Ack, None) => {}
            (Method::Bye, Some(id)) => {
                reply(self, 200, "OK", None);
                if let Some(mut call) = self.calls.remove(&id) {
                    if matches!(call.phase, Phase::Confirmed | Phase::Terminating) {
                        let outcome = call.outcome;
                        self.end(now, id, &mut call, outcome, None);
                    }
                    self.calls.insert(id, call);
                }
            }
            (Method::Invite, Some(id)) => self.on_reinvite(now, id, &req),
            (Method::Options, _) => reply(self, 200, "OK", None),
            (_, None) => reply(self, 481, "Call/Transaction Does Not Exist", None),
            (_, Some(_)) => reply(self, 405, "Method Not Allowed", None),
        }
    }

    /// One call's due timers; false when it is to be dropped.
    fn timers(&mut self, now: Instant, id: CallId, call: &mut OutCall) -> bool {
        let due = |at: Option<Instant>| at.is_some_and(|t| t <= now);
        self.reinvite_timer(now, call);
        if call.phase == Phase::Lingering {
            return !due(call.expire_at);
        }
        if due(call.retransmit_at) && call.phase == Phase::Calling {
            // Timer A: doubles, without T2's cap (§17.1.1.2).
            call.interval *= 2;
            call.retransmit_at = Some(now + call.interval);
            let invite = call.invite.clone();
            self.send(call.next_hop, invite);
        }
        if due(call.ring_deadline) {
            call.ring_deadline = None;
            if matches!(call.phase, Phase::Calling | Phase::Proceeding) && call.want_end.is_none() {
                call.want_end = Some(DialOutcome::NoAnswer);
                if call.provisional {
                    self.send_cancel(now, call);
                }
            }
        }
        let t2 = self.cfg.t2;
        let mut resend = Vec::new();
        for tx in [&mut call.cancel, &mut call.bye].into_iter().flatten() {
            if due(tx.retransmit_at) && !tx.answered {
                tx.interval = (tx.interval * 2).min(t2);
                tx.retransmit_at = Some(now + tx.interval);
                resend.push(tx.bytes.clone());
            }
        }
        for bytes in resend {
            self.send(call.next_hop, bytes);
        }
        if call.bye.as_ref().is_some_and(|t| t.expire_at <= now) {
            // Timer F: the BYE went unanswered; the call is over anyway.
            let outcome = call.outcome;
            self.end(now, id, call, outcome, None);
            return true;
        }
        if due(call.expire_at) {
            let outcome = match call.want_end {
                // No 487 came after our CANCEL.
                Some(wanted) => wanted,
                // Timer B: no response at all.
                None => DialOutcome::NoAnswer,
            };
            self.end(now, id, call, outcome, None);
        }
        true
    }

    fn encode(&self, r: &Outgoing<'_>, sdp: Option<&str>) -> Vec<u8> {
        let mut out = String::with_capacity(640 + sdp.map_or(0, str::len));
        let _ = write!(out, "{} {} SIP/2.0\r\n", r.method, r.uri);
        let alias = if self.reliable() { ";alias" } else { "" };
        let _ = write!(
            out,
            "Via: SIP/2.0/{} {};branch={};rport{alias}\r\n",
            self.transport().via_token(),
            self.cfg.local,
            r.branch
        );
        out.push_str("Max-Forwards: 70\r\n");
        for route in r.route {
            let _ = write!(out, "Route: {route}\r\n");
        }
        let _ = write!(out, "From: {}\r\nTo: {}\r\n", r.from, r.to);
        let _ = write!(
            out,
            "Call-ID: {}\r\nCSeq: {} {}\r\n",
            r.call_id, r.cseq, r.method
        );
        if r.contact {
            let _ = write!(
                out,
                "Contact: {}\r\nAllow: {}\r\n",
                super::wire::contact(&self.wire, self.transport()),
                super::wire::ALLOW
            );
        }
        if let Some((name, value)) = r.auth {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "User-Agent: {}\r\n", self.cfg.user_agent);
        match sdp {
            Some(body) => {
                let _ = write!(
                    out,
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out.into_bytes()
    }

    /// 64 random bits as hex (SplitMix64 over the seed), as the UAS makes
    /// its tags.
    fn token(&mut self) -> String {
        format!("{:016x}", self.random())
    }

    /// 64 random bits: SplitMix64 over the seed.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A request to write.
struct Outgoing<'a> {
    method: Method,
    uri: &'a str,
    branch: &'a str,
    from: &'a str,
    to: &'a str,
    call_id: &'a str,
    cseq: u32,
    route: &'a [String],
    contact: bool,
    auth: Option<(&'a str, &'a str)>,
}

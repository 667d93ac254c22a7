//! [`Uas`]: the UAS core, its server transactions and our BYE's client
//! transaction, driven by datagrams, commands and timeouts.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::call::{Call, CallState, DialogKey, Pending2xx};
use super::digest::{DigestAuth, Verdict};
use super::guard::{SipLimits, SourceGuard};
use super::header::{CSeq, MAGIC_COOKIE, Uri, Via, decode_user};
use super::message::{Method, SipMessage, StartLine, parse_lenient};
use super::sdp::{MediaOffer, parse_offer};
use super::timer::{TimerKey, Timers};
use super::transaction::{ClientTx, InviteState, ServerKind, ServerTx, TxKey};
use super::wire::{
    Invalid, OutRequest, ReplyBase, Request, Response, SUPPORTED, encode_request, encode_response,
};
use super::{
    CallId, EndReason, Event, MAX_DIALOGS, MAX_TRANSACTIONS, Transmit, Transport, UasConfig,
};

/// RFC 3261 T4: how long a message may stay in the network (Timer I).
const T4: Duration = Duration::from_secs(5);

/// Counters of what the UAS saw and did; plain numbers, summed by the
/// caller into its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UasStats {
    /// Datagrams fed to [`Uas::handle_datagram`].
    pub datagrams: u64,
    /// CRLF keep-alives (RFC 5626 §3.5.1), ignored.
    pub keepalives: u64,
    /// Datagrams dropped as unparseable or unanswerable.
    pub malformed_dropped: u64,
    /// Requests answered 400 (missing or broken mandatory headers).
    pub bad_requests: u64,
    /// INVITE requests (initial and re-INVITE, retransmissions included).
    pub invites: u64,
    /// ACK requests.
    pub acks: u64,
    /// BYE requests.
    pub byes: u64,
    /// CANCEL requests.
    pub cancels: u64,
    /// OPTIONS requests.
    pub options: u64,
    /// Requests of any other method.
    pub other_requests: u64,
    /// Responses received (to our BYEs).
    pub responses: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// ACKs that matched no transaction and no dialog.
    pub stray_acks: u64,
    /// Retransmitted requests absorbed by a transaction (the last response
    /// re-sent, or nothing for ACK).
    pub retransmissions_absorbed: u64,
    /// Our own retransmissions (Timers G and E, 2xx until ACK).
    pub retransmissions_sent: u64,
    /// Requests answered 405, 501 or 420.
    pub unsupported: u64,
    /// Requests answered 481.
    pub no_transaction: u64,
    /// INVITEs refused for their body (415, 488).
    pub bad_offers: u64,
    /// Requests refused for lack of room (503, or handled without a
    /// transaction) and loops (482) or glare (491, 500).
    pub refused: u64,
    /// 2xx answers never ACKed (BYE sent).
    pub ack_timeouts: u64,
    /// Non-2xx answers never ACKed (Timer H).
    pub timer_h_timeouts: u64,
    /// Our BYEs never answered (Timer F).
    pub bye_timeouts: u64,
    /// Datagrams from sources outside `[sip] allow`, dropped unanswered.
    pub not_allowed: u64,
    /// New INVITEs over their source's rate, dropped unanswered.
    pub rate_limited: u64,
    /// New INVITEs over their source's share of unconfirmed calls (503).
    pub pending_limited: u64,
    /// INVITEs challenged (401) for missing, wrong or stale credentials.
    pub auth_challenges: u64,
    /// Calls refused without keeping state ([`Uas::refuse_stateless`]).
    pub stateless_refusals: u64,
}

/// A sans-IO SIP user agent server on UDP. See the [module docs](super).
#[derive(Debug)]
pub struct Uas {
    cfg: UasConfig,
    rng: u64,
    next_call: u64,
    next_tx: u64,
    calls: HashMap<CallId, Call>,
    dialogs: HashMap<DialogKey, CallId>,
    /// Calls whose initial INVITE is unanswered, by (Call-ID, From tag):
    /// a second INVITE with these is a loop or a merge (§8.2.2.2).
    pending_invites: HashMap<(String, Option<String>), CallId>,
    server_txs: HashMap<u64, ServerTx>,
    server_index: HashMap<TxKey, u64>,
    client_txs: HashMap<u64, ClientTx>,
    client_index: HashMap<String, u64>,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: UasStats,
    guard: SourceGuard,
    digest: DigestAuth,
}

impl Uas {
    /// A UAS with tags and branches seeded from the OS's randomness (T1
    /// and T2 bounded as in [`Self::with_seed`]).
    pub fn new(cfg: UasConfig) -> Self {
        // std seeds every RandomState from the OS (and varies it per call).
        let mut uas = Self::with_seed(cfg, RandomState::new().hash_one(0x5eed_u64));
        // The nonce key needs more than 64 bits: 256 from the system RNG.
        uas.digest = DigestAuth::new(None);
        uas
    }

    /// A UAS whose tags and branches come from `seed`: for tests and
    /// fuzzing, where runs must repeat. T1 is kept within 1 ms..=60 s and
    /// T2 within T1..=10 min, so no timer arithmetic can overflow.
    pub fn with_seed(mut cfg: UasConfig, seed: u64) -> Self {
        cfg.t1 = cfg
            .t1
            .clamp(Duration::from_millis(1), Duration::from_secs(60));
        cfg.t2 = cfg.t2.clamp(cfg.t1, Duration::from_secs(600));
        Self {
            cfg,
            rng: seed,
            next_call: 1,
            next_tx: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            pending_invites: HashMap::new(),
            server_txs: HashMap::new(),
            server_index: HashMap::new(),
            client_txs: HashMap::new(),
            client_index: HashMap::new(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: UasStats::default(),
            guard: SourceGuard::new(SipLimits::unlimited()),
            digest: DigestAuth::new(Some(seeded_key(seed))),
        }
    }

    /// Replaces the per-source limits and credentials (at start and on a
    /// config reload); calls in progress keep going.
    pub fn set_limits(&mut self, limits: SipLimits) {
        self.guard.set_limits(limits);
    }

    /// Feeds one datagram received on the SIP socket from `from`. Never
    /// panics; what cannot be parsed is dropped and counted. Drain
    /// [`Self::poll_transmit`] and [`Self::poll_event`] afterwards.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_message(now, Transport::Udp, from, data);
    }

    /// Feeds one whole message that arrived on `transport` from `from`: a
    /// datagram, or a [`super::Frame::Message`] cut from the connection
    /// whose peer is `from` (its answers go back as [`Transmit`]s to that
    /// peer on that transport). Never panics, like
    /// [`Self::handle_datagram`].
    pub fn handle_message(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.stats.datagrams += 1;
        if !self.guard.allows(from.ip()) {
            self.stats.not_allowed += 1;
            return;
        }
        if !data.is_empty() && data.iter().all(|b| b" \t\r\n".contains(b)) {
            self.stats.keepalives += 1;
            return;
        }
        let Ok((msg, body_error)) = parse_lenient(data) else {
            self.stats.malformed_dropped += 1;
            return;
        };
        match msg.start {
            StartLine::Request { .. } => {
                self.on_request(now, from, transport, msg, body_error.is_none());
            }
            StartLine::Response { .. } if body_error.is_some() => {
                self.stats.malformed_dropped += 1;
            }
            StartLine::Response { status, .. } => self.on_response(now, status, &msg),
        }
    }

    /// Runs the timers due at `now` (call it when [`Self::poll_timeout`]
    /// says; early or late calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::ServerRetransmit(id) => self.timer_g(now, id),
                TimerKey::ServerExpire(id) => self.server_expired(now, id),
                TimerKey::ClientRetransmit(id) => self.timer_e(now, id),
                TimerKey::ClientExpire(id) => self.timer_f(now, id),
                TimerKey::Retransmit2xx(call) => self.retransmit_2xx(now, call),
                TimerKey::AckTimeout(call) => self.ack_timeout(now, call),
            }
        }
    }

    /// When [`Self::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the call logic, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Sends 180 Ringing (with our To tag) for a call not yet answered;
    /// INVITE retransmissions get it again. Otherwise does nothing.
    pub fn ringing(&mut self, _now: Instant, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        let (tx_id, tag) = (c.invite_tx, c.local_tag.clone());
        let Some(tx) = self.server_txs.get_mut(&tx_id) else {
            return;
        };
        let resp = Response {
            to_tag: Some(&tag),
            dialog: true,
            ..Response::new(180, "Ringing")
        };
        tx.last_response = encode_response(&tx.base, &resp, &self.cfg);
        let t = Transmit {
            to: tx.base.reply_to,
            transport: tx.base.transport,
            payload: tx.last_response.clone(),
        };
        self.transmits.push_back(t);
    }

    /// Answers a call not yet answered with 200 OK carrying `sdp`. The 2xx
    /// is retransmitted (T1, 2T1, ... capped at T2) until the ACK
    /// ([`Event::Confirmed`]); without one for 64*T1 a BYE is sent and
    /// [`Event::Ended`] with [`EndReason::AckTimeout`] follows.
    pub fn answer(&mut self, now: Instant, call: CallId, sdp: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        let tx = c.invite_tx;
        let key = (c.sip_call_id.clone(), c.remote_tag.clone());
        self.pending_invites.remove(&key);
        self.accept(now, call, tx, sdp, true);
    }

    /// Refuses a call not yet answered with a final `status` (300..=699;
    /// anything else is sent as 500) and `extra_headers` (e.g. `Reason`).
    /// The answer is retransmitted (Timer G) until the ACK or Timer H;
    /// then [`Event::Ended`] with [`EndReason::Rejected`].
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        extra_headers: &[(&str, &str)],
    ) {
        self.reject_with(
            now,
            call,
            status,
            reason,
            extra_headers,
            EndReason::Rejected,
        );
    }

    /// Refuses a call not yet answered with a final `status` sent once,
    /// and forgets it at once: no Timer G retransmissions, no transaction
    /// waiting for the ACK (which then arrives as a stray and is dropped).
    /// For answers that will never become calls (404, 403, 503): a flood
    /// of such INVITEs costs one datagram each and leaves nothing held.
    /// [`Event::Ended`] with [`EndReason::Rejected`] follows at once.
    pub fn refuse_stateless(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        extra_headers: &[(&str, &str)],
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        let (tx_id, tag) = (c.invite_tx, c.local_tag.clone());
        let Some(tx) = self.server_txs.remove(&tx_id) else {
            return;
        };
        if self.server_index.get(&tx.key) == Some(&tx_id) {
            self.server_index.remove(&tx.key);
        }
        self.timers.clear(TimerKey::ServerRetransmit(tx_id));
        self.timers.clear(TimerKey::ServerExpire(tx_id));
        let (status, reason) = final_status(status, reason);
        let resp = Response {
            to_tag: Some(&tag),
            headers: extra_headers,
            ..Response::new(status, reason)
        };
        let payload = encode_response(&tx.base, &resp, &self.cfg);
        self.send(tx.base.reply_to, tx.base.transport, payload);
        self.stats.stateless_refusals += 1;
        self.end_call(now, call, EndReason::Rejected);
    }

    /// Answers the pending re-INVITE ([`Event::Reoffer`]) with 200 OK and
    /// `sdp`, retransmitted until its ACK like [`Self::answer`].
    pub fn answer_reinvite(&mut self, now: Instant, call: CallId, sdp: &str) {
        let Some(tx) = self.pending_reinvite(call) else {
            return;
        };
        self.accept(now, call, tx, sdp, false);
    }

    /// Refuses the pending re-INVITE with `status` (300..=699, else 500);
    /// the call goes on with the media it had.
    pub fn reject_reinvite(&mut self, now: Instant, call: CallId, status: u16, reason: &str) {
        let Some(tx) = self.pending_reinvite(call) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&call) {
            c.reinvite_tx = None;
        }
        let (status, reason) = final_status(status, reason);
        self.final_response(now, tx, status, reason, &[]);
    }

    /// Ends a call from our side: BYE when confirmed (Ended with
    /// [`EndReason::LocalBye`] when it is answered or after 64*T1), BYE
    /// right after the ACK when answered but not yet ACKed, and 480 when
    /// not yet answered (Ended with [`EndReason::Rejected`]).
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.state {
            CallState::Offered => self.reject(now, call, 480, "Temporarily Unavailable", &[]),
            CallState::Answered => c.hangup_after_ack = true,
            CallState::Confirmed => self.send_bye(now, call),
            CallState::Rejecting(_) | CallState::Terminating => {}
        }
    }

    /// Whether `[sip] allow` takes requests from `ip` (for accepting a
    /// connection before it costs anything; counted as `not_allowed` when
    /// it does not).
    pub fn allows(&mut self, ip: std::net::IpAddr) -> bool {
        let allowed = self.guard.allows(ip);
        if !allowed {
            self.stats.not_allowed += 1;
        }
        allowed
    }

    /// What the UAS has counted so far.
    pub fn stats(&self) -> UasStats {
        self.stats
    }

    /// Calls between [`Event::Incoming`] and [`Event::Ended`].
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Transactions and timers still held, for tests that check nothing
    /// leaks: (server transactions, client transactions, timers).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize, usize) {
        (
            self.server_txs.len(),
            self.client_txs.len(),
            self.timers.len(),
        )
    }

    // ----- requests -----

    fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        msg: SipMessage,
        body_ok: bool,
    ) {
        if let Some(m) = msg.method() {
            self.count_method(m);
        }
        let req = match Request::read(msg, from, transport, body_ok) {
            Ok(req) => req,
            Err(Invalid::Drop) => {
                self.stats.malformed_dropped += 1;
                return;
            }
            Err(Invalid::BadRequest(base, why)) => {
                self.stats.bad_requests += 1;
                self.stateless(&base, Response::new(400, why));
                return;
            }
        };
        if req.method == Method::Ack {
            self.on_ack(now, &req);
            return;
        }
        if let Some(&id) = self.server_index.get(&TxKey::of(&req)) {
            self.absorb(id);
            return;
        }
        if req.max_forwards == Some(0) {
            self.stats.refused += 1;
            self.respond(now, &req, Response::new(483, "Too Many Hops"));
            return;
        }
        if req.method != Method::Cancel {
            let unknown: Vec<&str> = req
                .require
                .iter()
                .map(String::as_str)
                .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unknown.is_empty() {
                self.stats.unsupported += 1;
                let unsupported = unknown.join(", ");
                let resp = Response {
                    headers: &[("Unsupported", &unsupported)],
                    ..Response::new(420, "Bad Extension")
                };
                self.respond(now, &req, resp);
                return;
            }
        }
        match req.method {
            Method::Invite => self.on_invite(now, &req),
            Method::Bye => self.on_bye(now, &req),
            Method::Cancel => self.on_cancel(now, &req),
            Method::Options => {
                if req.to_tag.is_some() && self.dialog_of(&req).is_none() {
                    self.no_dialog(now, &req);
                    return;
                }
                let resp = Response {
                    headers: &[("Accept", "application/sdp")],
                    ..Response::new(200, "OK")
                };
                self.respond(now, &req, resp);
            }
            Method::Other(_) => {
                self.stats.unsupported += 1;
                self.respond(now, &req, Response::new(501, "Not Implemented"));
            }
            _ => {
                self.stats.unsupported += 1;
                self.respond(now, &req, Response::new(405, "Method Not Allowed"));
            }
        }
    }

    fn count_method(&mut self, method: &Method) {
        let counter = match method {
            Method::Invite => &mut self.stats.invites,
            Method::Ack => &mut self.stats.acks,
            Method::Bye => &mut self.stats.byes,
            Method::Cancel => &mut self.stats.cancels,
            Method::Options => &mut self.stats.options,
            _ => &mut self.stats.other_requests,
        };
        *counter += 1;
    }

    /// A retransmitted request: the transaction answers it again (§17.2).
    fn absorb(&mut self, id: u64) {
        self.stats.retransmissions_absorbed += 1;
        let Some(tx) = self.server_txs.get(&id) else {
            return;
        };
        if matches!(tx.kind, ServerKind::Invite(InviteState::Confirmed))
            || tx.last_response.is_empty()
        {
            return;
        }
        let t = Transmit {
            to: tx.base.reply_to,
            transport: tx.base.transport,
            payload: tx.last_response.clone(),
        };
        self.transmits.push_back(t);
    }

    fn on_invite(&mut self, now: Instant, req: &Request) {
        if req.to_tag.is_some() {
            self.on_reinvite(now, req);
            return;
        }
        let merge_key = (req.call_id.clone(), req.from_tag.clone());
        if let Some(&pending) = self.pending_invites.get(&merge_key) {
            // Same Call-ID and From tag as an INVITE we are still
            // answering, in another transaction: the same CSeq is a loop
            // or a merged fork (§8.2.2.2), a higher one a premature retry.
            self.stats.refused += 1;
            let same = self
                .calls
                .get(&pending)
                .is_some_and(|c| c.remote_cseq == req.cseq.seq);
            let resp = if same {
                Response::new(482, "Loop Detected")
            } else {
                Response {
                    headers: &[("Retry-After", "5")],
                    ..Response::new(500, "Server Internal Error")
                }
            };
            self.respond(now, req, resp);
            return;
        }
        let sips = req
            .uri
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        if sips && req.transport != Transport::Tls {
            // RFC 5630 §3.1: a SIPS URI asks for TLS up to us; over
            // anything else the request cannot be taken as it asks.
            self.stats.unsupported += 1;
            self.respond(now, req, Response::new(416, "Unsupported URI Scheme"));
            return;
        }
        let ip = req.source.ip();
        if !self.guard.take_invite(now, ip) {
            // No answer: a flood reflects nothing; a real trunk's INVITE
            // transaction retransmits (Timer A) and gets in once refilled.
            self.stats.rate_limited += 1;
            return;
        }
        if self.guard.pending_full(ip) {
            self.stats.pending_limited += 1;
            let resp = Response {
                headers: &[("Retry-After", "30")],
                ..Response::new(503, "Service Unavailable")
            };
            self.stateless(&req.base, resp);
            return;
        }
        if let Some(credentials) = self.guard.limits().credentials.clone() {
            let realm = self.guard.limits().realm.clone();
            let verdict = self.digest.verify(
                now,
                &realm,
                &credentials,
                "INVITE",
                req.authorization.as_deref(),
            );
            if verdict != Verdict::Valid {
                self.stats.auth_challenges += 1;
                let challenge = self
                    .digest
                    .challenge(now, &realm, verdict == Verdict::Stale);
                let resp = Response {
                    headers: &[("WWW-Authenticate", &challenge)],
                    ..Response::new(401, "Unauthorized")
                };
                self.stateless(&req.base, resp);
                return;
            }
        }
        if self.calls.len() >= MAX_DIALOGS || self.server_txs.len() >= MAX_TRANSACTIONS {
            self.stats.refused += 1;
            let resp = Response {
                headers: &[("Retry-After", "30")],
                ..Response::new(503, "Service Unavailable")
            };
            self.stateless(&req.base, resp);
            return;
        }
        let Some(contact) = req.contact.clone() else {
            self.stats.bad_requests += 1;
            self.respond(now, req, Response::new(400, "Missing Contact Header"));
            return;
        };
        let offer = match self.read_offer(now, req) {
            Ok(offer) => offer,
            Err(()) => return,
        };

        let id = CallId(self.next_call);
        self.next_call += 1;
        let trying = encode_response(&req.base, &Response::new(100, "Trying"), &self.cfg);
        let Some(tx) =
            self.new_server_tx(now, req, Some(id), InviteState::Proceeding, trying.clone())
        else {
            return;
        };
        self.send(req.base.reply_to, req.base.transport, trying);
        let local_tag = self.token();
        let mut call = Call::from_invite(req, contact, local_tag, tx);
        call.pending_source = Some(ip);
        self.guard.add_pending(ip);
        self.dialogs.insert(call.dialog_key(), id);
        self.pending_invites.insert(merge_key, id);
        self.calls.insert(id, call);
        let user = Uri::parse(&req.uri)
            .and_then(|u| u.user)
            .map(decode_user)
            .unwrap_or_default();
        self.events.push_back(Event::Incoming {
            call: id,
            from: req.source,
            transport: req.transport,
            user,
            caller: req.from_uri.clone(),
            offer,
        });
    }

    /// The SDP offer of an INVITE, or the 415/488 answer already sent.
    fn read_offer(&mut self, now: Instant, req: &Request) -> Result<Option<MediaOffer>, ()> {
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let is_sdp = req.content_type.as_deref().is_none_or(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
        if !is_sdp {
            self.stats.bad_offers += 1;
            let resp = Response {
                headers: &[("Accept", "application/sdp")],
                ..Response::new(415, "Unsupported Media Type")
            };
            self.respond(now, req, resp);
            return Err(());
        }
        parse_offer(&req.body).map(Some).map_err(|e| {
            self.stats.bad_offers += 1;
            let warning = format!("399 {} \"{e}\"", self.cfg.local.ip());
            let resp = Response {
                headers: &[("Warning", &warning)],
                ..Response::new(488, "Not Acceptable Here")
            };
            self.respond(now, req, resp);
        })
    }

    fn on_reinvite(&mut self, now: Instant, req: &Request) {
        let Some(id) = self.dialog_of(req) else {
            self.no_dialog(now, req);
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let refusal = match call.state {
            // §14.2: the INVITE before it has no final response yet (the
            // initial one, answered 18x in an early dialog, or a re-INVITE
            // the call logic still decides): 500 with a random Retry-After.
            CallState::Offered => return self.overlapping(now, req),
            CallState::Confirmed if req.cseq.seq < call.remote_cseq => {
                Some((500, "Server Internal Error"))
            }
            CallState::Confirmed if call.reinvite_tx.is_some() => {
                return self.overlapping(now, req);
            }
            // Our 2xx waits for its ACK (with our offer, when the INVITE
            // had none): the offer/answer exchange is not over.
            CallState::Answered => Some((491, "Request Pending")),
            CallState::Confirmed if call.pending_2xx.is_some() => Some((491, "Request Pending")),
            CallState::Rejecting(_) | CallState::Terminating => {
                self.no_dialog(now, req);
                return;
            }
            CallState::Confirmed => None,
        };
        if let Some((status, reason)) = refusal {
            self.stats.refused += 1;
            self.respond(now, req, Response::new(status, reason));
            return;
        }
        if self.server_txs.len() >= MAX_TRANSACTIONS {
            self.stats.refused += 1;
            self.stateless(&req.base, Response::new(503, "Service Unavailable"));
            return;
        }
        let Ok(offer) = self.read_offer(now, req) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.remote_cseq = req.cseq.seq;
        if let Some(target) = &req.contact {
            // A target refresh (§12.2.2).
            call.remote_target.clone_from(target);
        }
        let last_sdp = call.last_sdp.clone();
        let trying = encode_response(&req.base, &Response::new(100, "Trying"), &self.cfg);
        let Some(tx) =
            self.new_server_tx(now, req, Some(id), InviteState::Proceeding, trying.clone())
        else {
            return;
        };
        match (offer, last_sdp) {
            (Some(offer), _) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.reinvite_tx = Some(tx);
                }
                self.send(req.base.reply_to, req.base.transport, trying);
                self.events.push_back(Event::Reoffer { call: id, offer });
            }
            // No offer (a session refresh): offer what we have, unchanged
            // (RFC 3264 §8); the answer comes in the ACK.
            (None, Some(sdp)) => self.accept(now, id, tx, &sdp, false),
            (None, None) => {
                self.stats.bad_offers += 1;
                self.final_response(now, tx, 488, "Not Acceptable Here", &[]);
            }
        }
    }

    /// RFC 3261 §14.2: a second INVITE on a dialog whose previous INVITE
    /// has no final response yet gets 500 with a Retry-After "randomly
    /// chosen value of between 0 and 10 seconds", so that the two sides
    /// do not retry in lockstep.
    fn overlapping(&mut self, now: Instant, req: &Request) {
        self.stats.refused += 1;
        let seconds = self.retry_after().to_string();
        let resp = Response {
            headers: &[("Retry-After", &seconds)],
            ..Response::new(500, "Server Internal Error")
        };
        self.respond(now, req, resp);
    }

    fn on_ack(&mut self, now: Instant, req: &Request) {
        if let Some(&id) = self.server_index.get(&TxKey::of(req))
            && let Some(tx) = self.server_txs.get_mut(&id)
        {
            match tx.kind {
                ServerKind::Invite(InviteState::Completed) => {
                    tx.kind = ServerKind::Invite(InviteState::Confirmed);
                    let call = tx.call;
                    self.timers.clear(TimerKey::ServerRetransmit(id));
                    self.timers.set(TimerKey::ServerExpire(id), now + T4);
                    if let Some(call) = call
                        && let Some(CallState::Rejecting(reason)) =
                            self.calls.get(&call).map(|c| c.state)
                    {
                        self.end_call(now, call, reason);
                    }
                    return;
                }
                ServerKind::Invite(InviteState::Confirmed) => {
                    self.stats.retransmissions_absorbed += 1;
                    return;
                }
                // An ACK for a 2xx that reuses the INVITE's branch (RFC
                // 2543 peers): the dialog takes it below.
                _ => {}
            }
        }
        let Some(id) = self.dialog_of(req) else {
            self.stats.stray_acks += 1;
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call
            .pending_2xx
            .as_ref()
            .is_none_or(|p| p.cseq != req.cseq.seq)
        {
            // A retransmitted ACK, or one for a 2xx long answered.
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        call.pending_2xx = None;
        self.timers.clear(TimerKey::Retransmit2xx(id));
        self.timers.clear(TimerKey::AckTimeout(id));
        if call.state == CallState::Answered {
            call.state = CallState::Confirmed;
            if let Some(ip) = call.pending_source.take() {
                self.guard.settle(ip);
            }
            if call.hangup_after_ack {
                self.send_bye(now, id);
            } else {
                self.events.push_back(Event::Confirmed { call: id });
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, req: &Request) {
        let Some(&tx_id) = self.server_index.get(&TxKey::cancelled_invite(req)) else {
            self.no_dialog(now, req);
            return;
        };
        let Some(tx) = self.server_txs.get(&tx_id) else {
            return;
        };
        let kind = tx.kind;
        let call = tx.call.and_then(|id| {
            let c = self.calls.get(&id)?;
            Some((id, c.local_tag.clone(), c.invite_tx, c.reinvite_tx, c.state))
        });
        // §9.2: the 200 to CANCEL carries the INVITE's To tag.
        let resp = Response {
            to_tag: call.as_ref().map(|c| c.1.as_str()),
            ..Response::new(200, "OK")
        };
        self.respond(now, req, resp);
        if kind != ServerKind::Invite(InviteState::Proceeding) {
            return; // Already answered: the CANCEL has no effect.
        }
        let Some((id, _, invite_tx, reinvite_tx, state)) = call else {
            return;
        };
        if invite_tx == tx_id && state == CallState::Offered {
            self.reject_with(
                now,
                id,
                487,
                "Request Terminated",
                &[],
                EndReason::Cancelled,
            );
            self.events.push_back(Event::Cancelled { call: id });
        } else if reinvite_tx == Some(tx_id) {
            if let Some(c) = self.calls.get_mut(&id) {
                c.reinvite_tx = None;
            }
            self.final_response(now, tx_id, 487, "Request Terminated", &[]);
        }
    }

    fn on_bye(&mut self, now: Instant, req: &Request) {
        let Some(id) = self.dialog_of(req) else {
            self.no_dialog(now, req);
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if matches!(call.state, CallState::Rejecting(_)) {
            self.no_dialog(now, req);
            return;
        }
        if req.cseq.seq < call.remote_cseq {
            self.stats.refused += 1;
            self.respond(now, req, Response::new(500, "Server Internal Error"));
            return;
        }
        call.remote_cseq = req.cseq.seq;
        self.respond(now, req, Response::new(200, "OK"));
        self.end_call(now, id, EndReason::RemoteBye);
    }

    fn no_dialog(&mut self, now: Instant, req: &Request) {
        self.stats.no_transaction += 1;
        self.respond(
            now,
            req,
            Response::new(481, "Call/Transaction Does Not Exist"),
        );
    }

    /// The call whose dialog `req` is in (§12.2.2: Call-ID, both tags).
    fn dialog_of(&self, req: &Request) -> Option<CallId> {
        let key = (
            req.call_id.clone(),
            req.from_tag.clone().unwrap_or_default(),
            req.to_tag.clone()?,
        );
        self.dialogs.get(&key).copied()
    }

    fn pending_reinvite(&self, call: CallId) -> Option<u64> {
        let tx = self.calls.get(&call)?.reinvite_tx?;
        let state = self.server_txs.get(&tx)?.kind;
        (state == ServerKind::Invite(InviteState::Proceeding)).then_some(tx)
    }

    // ----- responses out -----

    /// Answers a new request with a final response and keeps a server
    /// transaction for its retransmissions (statelessly when full).
    fn respond(&mut self, now: Instant, req: &Request, resp: Response<'_>) {
        let fresh = (resp.to_tag.is_none() && req.to_tag.is_none()).then(|| self.token());
        let resp = Response {
            to_tag: resp.to_tag.or(fresh.as_deref()),
            ..resp
        };
        let payload = encode_response(&req.base, &resp, &self.cfg);
        let state = if resp.status >= 300 {
            InviteState::Completed
        } else {
            InviteState::Accepted
        };
        if self
            .new_server_tx(now, req, None, state, payload.clone())
            .is_none()
        {
            self.stats.refused += 1;
        }
        self.send(req.base.reply_to, req.base.transport, payload);
    }

    /// Answers without keeping any state.
    fn stateless(&mut self, base: &ReplyBase, resp: Response<'_>) {
        let tag = self.token();
        let resp = Response {
            to_tag: Some(&tag),
            ..resp
        };
        let payload = encode_response(base, &resp, &self.cfg);
        self.send(base.reply_to, base.transport, payload);
    }

    /// A server transaction for `req` whose last response is `sent`, with
    /// its timers armed; `None` when the table is full. For non-INVITE
    /// requests `state` is ignored.
    fn new_server_tx(
        &mut self,
        now: Instant,
        req: &Request,
        call: Option<CallId>,
        state: InviteState,
        sent: Vec<u8>,
    ) -> Option<u64> {
        if self.server_txs.len() >= MAX_TRANSACTIONS {
            return None;
        }
        let id = self.next_tx;
        self.next_tx += 1;
        let key = TxKey::of(req);
        let kind = match req.method {
            Method::Invite => ServerKind::Invite(state),
            _ => ServerKind::NonInvite,
        };
        self.server_index.insert(key.clone(), id);
        self.server_txs.insert(
            id,
            ServerTx {
                key,
                kind,
                call,
                base: req.base.clone(),
                cseq: req.cseq.seq,
                last_response: sent,
                interval: self.cfg.t1,
            },
        );
        self.arm(now, id);
        Some(id)
    }

    /// Sets a server transaction's timers for the state it is in.
    fn arm(&mut self, now: Instant, id: u64) {
        let Some(tx) = self.server_txs.get(&id) else {
            return;
        };
        let long = self.cfg.t1 * 64;
        // §17.2.1, §17.2.2: on a reliable transport Timer G never fires
        // and Timers I and J are zero.
        let stream = tx.base.transport.is_stream();
        let (retransmit, expire) = match tx.kind {
            ServerKind::Invite(InviteState::Proceeding) => (None, None),
            // Timer L (RFC 6026).
            ServerKind::Invite(InviteState::Accepted) => (None, Some(long)),
            // Timers G and H.
            ServerKind::Invite(InviteState::Completed) => {
                ((!stream).then_some(tx.interval), Some(long))
            }
            // Timer I.
            ServerKind::Invite(InviteState::Confirmed) => {
                (None, Some(if stream { Duration::ZERO } else { T4 }))
            }
            // Timer J.
            ServerKind::NonInvite => (None, Some(if stream { Duration::ZERO } else { long })),
        };
        match retransmit {
            Some(after) => self.timers.set(TimerKey::ServerRetransmit(id), now + after),
            None => self.timers.clear(TimerKey::ServerRetransmit(id)),
        }
        match expire {
            Some(after) => self.timers.set(TimerKey::ServerExpire(id), now + after),
            None => self.timers.clear(TimerKey::ServerExpire(id)),
        }
    }

    /// Sends a 2xx with `sdp` on INVITE transaction `tx` and has the dialog
    /// retransmit it until its ACK.
    fn accept(&mut self, now: Instant, call: CallId, tx_id: u64, sdp: &str, initial: bool) {
        let (Some(c), Some(tx)) = (self.calls.get_mut(&call), self.server_txs.get_mut(&tx_id))
        else {
            return;
        };
        let resp = Response {
            to_tag: Some(&c.local_tag),
            dialog: true,
            sdp: Some(sdp),
            ..Response::new(200, "OK")
        };
        let payload = encode_response(&tx.base, &resp, &self.cfg);
        tx.kind = ServerKind::Invite(InviteState::Accepted);
        tx.last_response.clone_from(&payload);
        let (to, transport) = (tx.base.reply_to, tx.base.transport);
        c.pending_2xx = Some(Pending2xx {
            payload: payload.clone(),
            to,
            transport,
            cseq: tx.cseq,
            interval: self.cfg.t1,
        });
        c.last_sdp = Some(sdp.to_owned());
        if initial {
            c.state = CallState::Answered;
        } else {
            c.reinvite_tx = None;
        }
        self.arm(now, tx_id);
        self.timers
            .set(TimerKey::Retransmit2xx(call), now + self.cfg.t1);
        self.timers
            .set(TimerKey::AckTimeout(call), now + self.cfg.t1 * 64);
        self.send(to, transport, payload);
    }

    fn reject_with(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
        end: EndReason,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        c.state = CallState::Rejecting(end);
        let tx = c.invite_tx;
        let key = (c.sip_call_id.clone(), c.remote_tag.clone());
        self.pending_invites.remove(&key);
        let (status, reason) = final_status(status, reason);
        if !self.final_response(now, tx, status, reason, extra) {
            // The transaction is gone (cannot happen while Offered): end
            // now rather than wait for an ACK that has nowhere to land.
            self.end_call(now, call, end);
        }
    }

    /// Sends a 300-699 on INVITE transaction `tx` (→ Completed, Timers G
    /// and H). False when there is no such transaction.
    fn final_response(
        &mut self,
        now: Instant,
        tx_id: u64,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) -> bool {
        let Some(tx) = self.server_txs.get_mut(&tx_id) else {
            return false;
        };
        let tag = tx
            .call
            .and_then(|c| self.calls.get(&c))
            .map(|c| c.local_tag.as_str());
        let resp = Response {
            to_tag: tag,
            headers: extra,
            ..Response::new(status, reason)
        };
        tx.last_response = encode_response(&tx.base, &resp, &self.cfg);
        tx.kind = ServerKind::Invite(InviteState::Completed);
        tx.interval = self.cfg.t1;
        let t = Transmit {
            to: tx.base.reply_to,
            transport: tx.base.transport,
            payload: tx.last_response.clone(),
        };
        self.transmits.push_back(t);
        self.arm(now, tx_id);
        true
    }

    /// Sends our BYE in the call's dialog (§15.1.1) and keeps a client
    /// transaction for it; the call waits in Terminating for its answer.
    fn send_bye(&mut self, now: Instant, call: CallId) {
        let branch = format!("{MAGIC_COOKIE}{}", self.token());
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.local_cseq = (c.local_cseq + 1).min((1 << 31) - 1);
        c.state = CallState::Terminating;
        let (uri, route, to) = c.next_hop();
        let payload = encode_request(
            &OutRequest {
                method: Method::Bye,
                uri: &uri,
                branch: &branch,
                route: &route,
                from: &c.local,
                to: &c.remote,
                call_id: &c.sip_call_id,
                cseq: c.local_cseq,
                transport: c.transport,
            },
            &self.cfg,
        );
        let transport = c.transport;
        let pending_reinvite = c.reinvite_tx.take();
        if let Some(tx) = pending_reinvite {
            self.final_response(now, tx, 487, "Request Terminated", &[]);
        }
        self.send(to, transport, payload.clone());
        if self.client_txs.len() >= MAX_TRANSACTIONS {
            // No room to wait for the answer: the BYE went once.
            self.end_call(now, call, EndReason::LocalBye);
            return;
        }
        let id = self.next_tx;
        self.next_tx += 1;
        self.client_index.insert(branch.clone(), id);
        self.client_txs.insert(
            id,
            ClientTx {
                call,
                branch,
                request: payload,
                to,
                transport,
                interval: self.cfg.t1,
                proceeding: false,
            },
        );
        if !transport.is_stream() {
            // Timer E runs on unreliable transports only (§17.1.2.2).
            self.timers
                .set(TimerKey::ClientRetransmit(id), now + self.cfg.t1);
        }
        self.timers
            .set(TimerKey::ClientExpire(id), now + self.cfg.t1 * 64);
    }

    /// Forgets a call and reports it ended. Pending INVITEs in it get 487
    /// (§15.1.2).
    fn end_call(&mut self, now: Instant, call: CallId, reason: EndReason) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        if let Some(ip) = c.pending_source {
            self.guard.settle(ip);
        }
        self.dialogs.remove(&c.dialog_key());
        let key = (c.sip_call_id.clone(), c.remote_tag.clone());
        if self.pending_invites.get(&key) == Some(&call) {
            self.pending_invites.remove(&key);
        }
        self.timers.clear(TimerKey::Retransmit2xx(call));
        self.timers.clear(TimerKey::AckTimeout(call));
        for tx in [Some(c.invite_tx), c.reinvite_tx].into_iter().flatten() {
            let proceeding = self
                .server_txs
                .get(&tx)
                .is_some_and(|t| t.kind == ServerKind::Invite(InviteState::Proceeding));
            if proceeding {
                self.final_response_tagged(now, tx, &c.local_tag);
            }
        }
        self.events.push_back(Event::Ended { call, reason });
    }

    /// 487 on a transaction whose call is already gone.
    fn final_response_tagged(&mut self, now: Instant, tx_id: u64, tag: &str) {
        let Some(tx) = self.server_txs.get_mut(&tx_id) else {
            return;
        };
        let resp = Response {
            to_tag: Some(tag),
            ..Response::new(487, "Request Terminated")
        };
        tx.last_response = encode_response(&tx.base, &resp, &self.cfg);
        tx.kind = ServerKind::Invite(InviteState::Completed);
        tx.call = None;
        let t = Transmit {
            to: tx.base.reply_to,
            transport: tx.base.transport,
            payload: tx.last_response.clone(),
        };
        self.transmits.push_back(t);
        self.arm(now, tx_id);
    }

    // ----- responses in -----

    fn on_response(&mut self, now: Instant, status: u16, msg: &SipMessage) {
        self.stats.responses += 1;
        let branch = msg
            .header("Via")
            .and_then(Via::parse)
            .and_then(|v| v.param("branch").flatten().map(str::to_owned));
        let id = branch.and_then(|b| self.client_index.get(&b).copied());
        let is_bye = msg
            .header("CSeq")
            .and_then(CSeq::parse)
            .is_some_and(|c| c.method == Method::Bye);
        let Some(id) = id.filter(|_| is_bye) else {
            self.stats.stray_responses += 1;
            return;
        };
        if status < 200 {
            if let Some(tx) = self.client_txs.get_mut(&id) {
                tx.proceeding = true;
            }
            return;
        }
        if let Some(call) = self.remove_client_tx(id) {
            self.end_call(now, call, EndReason::LocalBye);
        }
    }

    fn remove_client_tx(&mut self, id: u64) -> Option<CallId> {
        let tx = self.client_txs.remove(&id)?;
        self.client_index.remove(&tx.branch);
        self.timers.clear(TimerKey::ClientRetransmit(id));
        self.timers.clear(TimerKey::ClientExpire(id));
        Some(tx.call)
    }

    // ----- timers -----

    /// Timer G: retransmit a non-2xx final answer, backing off to T2.
    fn timer_g(&mut self, now: Instant, id: u64) {
        let Some(tx) = self.server_txs.get_mut(&id) else {
            return;
        };
        if tx.kind != ServerKind::Invite(InviteState::Completed) {
            return;
        }
        tx.interval = (tx.interval * 2).min(self.cfg.t2);
        let t = Transmit {
            to: tx.base.reply_to,
            transport: tx.base.transport,
            payload: tx.last_response.clone(),
        };
        let next = now + tx.interval;
        self.transmits.push_back(t);
        self.stats.retransmissions_sent += 1;
        self.timers.set(TimerKey::ServerRetransmit(id), next);
    }

    /// Timers H, I, J, L: the transaction ends; H also ends a rejected
    /// call whose ACK never came.
    fn server_expired(&mut self, now: Instant, id: u64) {
        let Some(tx) = self.server_txs.remove(&id) else {
            return;
        };
        if self.server_index.get(&tx.key) == Some(&id) {
            self.server_index.remove(&tx.key);
        }
        self.timers.clear(TimerKey::ServerRetransmit(id));
        if tx.kind == ServerKind::Invite(InviteState::Completed) {
            self.stats.timer_h_timeouts += 1;
            if let Some(call) = tx.call
                && let Some(CallState::Rejecting(reason)) = self.calls.get(&call).map(|c| c.state)
            {
                self.end_call(now, call, reason);
            }
        }
    }

    /// Timer E: retransmit our BYE.
    fn timer_e(&mut self, now: Instant, id: u64) {
        let Some(tx) = self.client_txs.get_mut(&id) else {
            return;
        };
        tx.interval = if tx.proceeding {
            self.cfg.t2
        } else {
            (tx.interval * 2).min(self.cfg.t2)
        };
        let t = Transmit {
            to: tx.to,
            transport: tx.transport,
            payload: tx.request.clone(),
        };
        let next = now + tx.interval;
        self.transmits.push_back(t);
        self.stats.retransmissions_sent += 1;
        self.timers.set(TimerKey::ClientRetransmit(id), next);
    }

    /// Timer F: our BYE was never answered; the call is over anyway.
    fn timer_f(&mut self, now: Instant, id: u64) {
        if let Some(call) = self.remove_client_tx(id) {
            self.stats.bye_timeouts += 1;
            self.end_call(now, call, EndReason::LocalBye);
        }
    }

    /// §13.3.1.4: the 2xx again, T1, 2T1, ... capped at T2.
    fn retransmit_2xx(&mut self, now: Instant, call: CallId) {
        let Some(p) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.pending_2xx.as_mut())
        else {
            return;
        };
        p.interval = (p.interval * 2).min(self.cfg.t2);
        let t = Transmit {
            to: p.to,
            transport: p.transport,
            payload: p.payload.clone(),
        };
        let next = now + p.interval;
        self.transmits.push_back(t);
        self.stats.retransmissions_sent += 1;
        self.timers.set(TimerKey::Retransmit2xx(call), next);
    }

    /// §13.3.1.4: no ACK within 64*T1: BYE, and the call is over.
    fn ack_timeout(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.pending_2xx.take().is_none() {
            return;
        }
        self.timers.clear(TimerKey::Retransmit2xx(call));
        self.stats.ack_timeouts += 1;
        self.send_bye(now, call);
        self.end_call(now, call, EndReason::AckTimeout);
    }

    // ----- helpers -----

    fn send(&mut self, to: SocketAddr, transport: Transport, payload: Vec<u8>) {
        self.transmits.push_back(Transmit {
            to,
            transport,
            payload,
        });
    }

    /// 64 random bits as hex, for tags and branches (RFC 3261 §19.3 asks
    /// for at least 32).
    fn token(&mut self) -> String {
        format!("{:016x}", self.random())
    }

    /// A Retry-After for §14.2's 500: 0 to 10 s, uniform.
    fn retry_after(&mut self) -> u64 {
        self.random() % 11
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

/// A digest nonce key repeatable from a test seed.
fn seeded_key(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ i as u64).to_le_bytes());
    }
    key
}

/// A final non-2xx status for a rejection: 300..=699 as given, anything
/// else as 500.
fn final_status(status: u16, reason: &str) -> (u16, &str) {
    if (300..=699).contains(&status) {
        (status, reason)
    } else {
        (500, "Server Internal Error")
    }
}

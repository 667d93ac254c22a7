//! The far end's re-INVITEs in a dialed call (RFC 3261 §14.2, §13.3.1.4):
//! the [`Uac`] is their UAS. A re-INVITE with an offer becomes a
//! [`UacEvent::Reoffer`], answered with [`Uac::answer_reinvite`] or
//! [`Uac::reject_reinvite`]; one without an offer is answered at once
//! with our current SDP as the offer (the answer comes in the ACK).
//!
//! Its transaction, kept per call: a retransmission gets our last
//! response again (100 while the call logic decides); a 2xx is re-sent
//! on UDP every T1, doubling to T2, until its ACK, for at most 64*T1.
//! A new re-INVITE while one has no final response gets 500 with a
//! Retry-After of 0 to 10 s at random (§14.2), one with a lower CSeq 500
//! (§12.2.2), and one while our 2xx waits for its ACK 491, as does one on
//! the early dialog while our own INVITE has no final response yet (§14.2:
//! an INVITE of ours in progress).

use std::time::{Duration, Instant};

use super::{OutCall, Phase, Uac, UacEvent};
use crate::sip::sdp::parse_offer;
use crate::sip::wire::{ReplyBase, Request, Response, encode_response};
use crate::sip::{CallId, Transmit};

/// The far end's last re-INVITE in a call, as its UAS keeps it.
#[derive(Debug)]
pub(super) struct FarReinvite {
    branch: String,
    cseq: u32,
    base: ReplyBase,
    /// Our final response, once given (None: the call logic decides).
    response: Option<Vec<u8>>,
    /// A 2xx waiting for its ACK (UDP): when to send it again, the
    /// interval after that, and when to stop.
    retransmit: Option<(Instant, Duration, Instant)>,
}

impl FarReinvite {
    /// When this transaction next needs [`Uac::handle_timeout`].
    pub(super) fn timeout(&self) -> Option<Instant> {
        self.retransmit.map(|(at, ..)| at)
    }
}

impl Uac {
    /// Answers the far end's pending re-INVITE ([`UacEvent::Reoffer`])
    /// with 200 OK and `sdp`, which from then on is our session
    /// description (offered again to a re-INVITE without a body).
    pub fn answer_reinvite(&mut self, now: Instant, call: CallId, sdp: &str) {
        let t1 = self.cfg.t1;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.sdp = sdp.to_owned();
        let Some(r) = c.reinvite.as_mut().filter(|r| r.response.is_none()) else {
            return;
        };
        let resp = Response {
            dialog: true,
            sdp: Some(sdp),
            ..Response::new(200, "OK")
        };
        let bytes = encode_response(&r.base, &resp, &self.wire);
        if !r.base.transport.is_stream() {
            r.retransmit = Some((now + t1, t1 * 2, now + t1 * 64));
        }
        r.response = Some(bytes.clone());
        let to = (r.base.reply_to, r.base.transport);
        self.reply(to, bytes);
    }

    /// Refuses the far end's pending re-INVITE with `status` (4xx-6xx,
    /// else 500): the call goes on with the media it had.
    pub fn reject_reinvite(&mut self, _now: Instant, call: CallId, status: u16, reason: &str) {
        let Some(r) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.reinvite.as_mut())
            .filter(|r| r.response.is_none())
        else {
            return;
        };
        let (status, reason) = if (400..=699).contains(&status) {
            (status, reason)
        } else {
            (500, "Server Internal Error")
        };
        let bytes = encode_response(&r.base, &Response::new(status, reason), &self.wire);
        r.response = Some(bytes.clone());
        let to = (r.base.reply_to, r.base.transport);
        self.reply(to, bytes);
    }

    /// Our SDP in `call` as it stands: the offer as sent, or our answer
    /// to the far end's last re-INVITE.
    pub fn local_sdp(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.sdp.as_str())
    }

    /// A re-INVITE in call `id`'s dialog.
    pub(super) fn on_reinvite(&mut self, now: Instant, id: CallId, req: &Request) {
        let branch = req.top_via.rfc3261_branch().unwrap_or_default().to_owned();
        let seconds = (self.random() % 11).to_string();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let to = (req.base.reply_to, req.base.transport);
        match c.phase {
            Phase::Confirmed => {}
            // Our INVITE is still in progress on this (early) dialog.
            Phase::Calling | Phase::Proceeding => {
                return self.respond(req, Response::new(491, "Request Pending"));
            }
            Phase::Terminating | Phase::Lingering => {
                return self.respond(req, Response::new(481, "Call/Transaction Does Not Exist"));
            }
        }
        if let Some(r) = &c.reinvite
            && r.branch == branch
            && r.cseq == req.cseq.seq
        {
            // A retransmission: what we said last.
            let bytes = r.response.clone().unwrap_or_else(|| {
                encode_response(&req.base, &Response::new(100, "Trying"), &self.wire)
            });
            return self.reply(to, bytes);
        }
        let pending = c.reinvite.as_ref();
        if pending.is_some_and(|r| r.response.is_none()) {
            let resp = Response {
                headers: &[("Retry-After", &seconds)],
                ..Response::new(500, "Server Internal Error")
            };
            return self.respond(req, resp);
        }
        if pending.is_some_and(|r| req.cseq.seq <= r.cseq) {
            return self.respond(req, Response::new(500, "Server Internal Error"));
        }
        if pending.is_some_and(|r| r.retransmit.is_some()) {
            return self.respond(req, Response::new(491, "Request Pending"));
        }
        c.reinvite = Some(FarReinvite {
            branch,
            cseq: req.cseq.seq,
            base: req.base.clone(),
            response: None,
            retransmit: None,
        });
        if req.body.iter().all(u8::is_ascii_whitespace) {
            // No offer (a refresh): ours, as it stands (RFC 3264 §8).
            let sdp = c.sdp.clone();
            return self.answer_reinvite(now, id, &sdp);
        }
        match parse_offer(&req.body) {
            Ok(offer) => {
                self.respond(req, Response::new(100, "Trying"));
                self.events.push_back(UacEvent::Reoffer { call: id, offer });
            }
            Err(_) => self.reject_reinvite(now, id, 488, "Not Acceptable Here"),
        }
    }

    /// An ACK in call `id`'s dialog: the end of our re-INVITE 2xx's
    /// retransmissions.
    pub(super) fn on_dialog_ack(&mut self, id: CallId, req: &Request) {
        if let Some(r) = self.calls.get_mut(&id).and_then(|c| c.reinvite.as_mut())
            && r.cseq == req.cseq.seq
        {
            r.retransmit = None;
        }
    }

    /// Re-sends a re-INVITE's 2xx that waits for its ACK, when due.
    pub(super) fn reinvite_timer(&mut self, now: Instant, call: &mut OutCall) {
        let t2 = self.cfg.t2;
        let Some(r) = &mut call.reinvite else { return };
        let Some((at, interval, stop)) = r.retransmit else {
            return;
        };
        if at > now {
            return;
        }
        if now >= stop {
            // §13.3.1.4 lets the UAS end the dialog; the call goes on (its
            // media says whether the far end is still there).
            r.retransmit = None;
            return;
        }
        r.retransmit = Some((now + interval, (interval * 2).min(t2), stop));
        if let Some(bytes) = r.response.clone() {
            let to = (r.base.reply_to, r.base.transport);
            self.reply(to, bytes);
        }
    }

    fn respond(&mut self, req: &Request, resp: Response<'_>) {
        let bytes = encode_response(&req.base, &resp, &self.wire);
        self.reply((req.base.reply_to, req.base.transport), bytes);
    }

    fn reply(
        &mut self,
        (to, transport): (std::net::SocketAddr, crate::sip::Transport),
        payload: Vec<u8>,
    ) {
        self.transmits.push_back(Transmit {
            to,
            transport,
            payload,
        });
    }
}

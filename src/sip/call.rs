//! One call as the UAS core holds it: the dialog state of RFC 3261 §12.1.1
//! (Call-ID, tags, route set, remote target, CSeq numbers) and where the
//! call is between INVITE and BYE.

use std::net::SocketAddr;
use std::time::Duration;

use super::EndReason;
use super::header::{NameAddr, Uri, Via, parse_host_ip};
use super::wire::Request;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// INVITE received, no final answer yet (perhaps a 180).
    Offered,
    /// Our 2xx is out, waiting for the ACK.
    Answered,
    /// The ACK came: the call is up.
    Confirmed,
    /// A non-2xx final answer is out; Ended with this reason follows its
    /// ACK or Timer H.
    Rejecting(EndReason),
    /// Our BYE is out; Ended follows its answer or Timer F.
    Terminating,
}

/// A 2xx the dialog core retransmits until its ACK (§13.3.1.4).
#[derive(Debug)]
pub(crate) struct Pending2xx {
    pub(crate) payload: Vec<u8>,
    pub(crate) to: SocketAddr,
    pub(crate) transport: super::Transport,
    /// CSeq of the INVITE it answers, which the ACK repeats.
    pub(crate) cseq: u32,
    pub(crate) interval: Duration,
}

/// A call and its dialog.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) sip_call_id: String,
    pub(crate) remote_tag: Option<String>,
    pub(crate) local_tag: String,
    /// The INVITE's From: the To of our requests.
    pub(crate) remote: String,
    /// The INVITE's To with our tag: the From of our requests.
    pub(crate) local: String,
    /// The remote target (Contact URI), refreshed by re-INVITE.
    pub(crate) remote_target: String,
    /// Record-Route of the INVITE, in order (§12.1.1).
    pub(crate) route_set: Vec<String>,
    pub(crate) remote_cseq: u32,
    pub(crate) local_cseq: u32,
    /// Where the INVITE came from.
    pub(crate) source: SocketAddr,
    /// How it came; on a stream, the dialog's requests go back over the
    /// connection whose peer is `source`.
    pub(crate) transport: super::Transport,
    /// The caller put its own (private) address in Via and Contact and is
    /// reached through a NAT: requests go to `source`.
    pub(crate) behind_nat: bool,
    pub(crate) invite_tx: u64,
    pub(crate) reinvite_tx: Option<u64>,
    pub(crate) state: CallState,
    pub(crate) pending_2xx: Option<Pending2xx>,
    /// Our last SDP, offered again to a re-INVITE without a body.
    pub(crate) last_sdp: Option<String>,
    /// hangup() before the ACK: BYE as soon as it comes.
    pub(crate) hangup_after_ack: bool,
    /// Counted in its source's share of unconfirmed calls until the ACK
    /// or the end (taken then).
    pub(crate) pending_source: Option<std::net::IpAddr>,
}

impl Call {
    /// The dialog state an initial INVITE creates, with our `local_tag`.
    pub(crate) fn from_invite(
        req: &Request,
        contact: String,
        local_tag: String,
        invite_tx: u64,
    ) -> Self {
        let via_addr = via_addr(&req.top_via);
        let contact_addr = Uri::parse(&contact).and_then(|u| u.socket_addr());
        let behind_nat = req.base.record_route.is_empty()
            && contact_addr.is_some()
            && contact_addr == via_addr
            && via_addr != Some(req.source);
        Self {
            sip_call_id: req.call_id.clone(),
            remote_tag: req.from_tag.clone(),
            local: format!("{};tag={local_tag}", req.to),
            local_tag,
            remote: req.from.clone(),
            remote_target: contact,
            route_set: req.base.record_route.clone(),
            remote_cseq: req.cseq.seq,
            local_cseq: req.cseq.seq,
            source: req.source,
            transport: req.transport,
            behind_nat,
            invite_tx,
            reinvite_tx: None,
            state: CallState::Offered,
            pending_2xx: None,
            last_sdp: None,
            hangup_after_ack: false,
            pending_source: None,
        }
    }

    /// The key requests in this dialog are found by.
    pub(crate) fn dialog_key(&self) -> DialogKey {
        (
            self.sip_call_id.clone(),
            self.remote_tag.clone().unwrap_or_default(),
            self.local_tag.clone(),
        )
    }

    /// Request-URI, Route headers and next-hop address of a request in
    /// the dialog (§12.2.1.1, §8.1.2). Names are not resolved (sans-IO):
    /// a hop that is not an IP literal is reached at the INVITE's source.
    pub(crate) fn next_hop(&self) -> (String, Vec<String>, SocketAddr) {
        let (uri, route, to) = self.next_hop_by_uri();
        if self.transport.is_stream() {
            // The peer opened the connection the dialog came on, and is
            // reached through it (RFC 5923 §5; a caller's own Contact on a
            // stream is often an ephemeral port nobody listens on).
            return (uri, route, self.source);
        }
        (uri, route, to)
    }

    fn next_hop_by_uri(&self) -> (String, Vec<String>, SocketAddr) {
        let addr = |uri: &str| {
            Uri::parse(uri)
                .and_then(|u| u.socket_addr())
                .unwrap_or(self.source)
        };
        let Some(first) = self.route_set.first() else {
            let to = if self.behind_nat {
                self.source
            } else {
                addr(&self.remote_target)
            };
            return (self.remote_target.clone(), Vec::new(), to);
        };
        let first_uri = NameAddr::parse(first).map_or(first.as_str(), |n| n.uri);
        let to = addr(first_uri);
        if Uri::parse(first_uri).is_some_and(|u| u.loose_route()) {
            (self.remote_target.clone(), self.route_set.clone(), to)
        } else {
            // A strict router: it becomes the Request-URI, the remote
            // target the last Route (§12.2.1.1).
            let mut route: Vec<String> = self.route_set[1..].to_vec();
            route.push(format!("<{}>", self.remote_target));
            (first_uri.to_owned(), route, to)
        }
    }
}

/// Call-ID, remote tag (empty for RFC 2543 peers), local tag.
pub(crate) type DialogKey = (String, String, String);

fn via_addr(via: &Via) -> Option<SocketAddr> {
    parse_host_ip(&via.host).map(|ip| SocketAddr::new(ip, via.port.unwrap_or(5060)))
}

//! Transaction state (RFC 3261 §17): how requests are matched to server
//! transactions (§17.2.3, with the RFC 2543 fallback), the INVITE and
//! non-INVITE server transaction states, and our BYE's client transaction.
//! The [`super::Uas`] moves them between states and owns their timers.

use std::net::SocketAddr;
use std::time::Duration;

use super::CallId;
use super::message::Method;
use super::wire::{ReplyBase, Request};

/// What identifies a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TxKey {
    /// §17.2.3: branch (with the magic cookie), sent-by, and method, where
    /// ACK counts as INVITE.
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and the
    /// top Via (the To tag is left out so the ACK for a non-2xx matches).
    Legacy {
        uri: String,
        from_tag: Option<String>,
        call_id: String,
        cseq: u32,
        via: String,
        method: Method,
    },
}

impl TxKey {
    /// The key of the transaction `req` belongs to; an ACK maps to its
    /// INVITE's.
    pub(crate) fn of(req: &Request) -> Self {
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Self::with_method(req, method)
    }

    /// The key of the INVITE a CANCEL cancels (§9.2).
    pub(crate) fn cancelled_invite(req: &Request) -> Self {
        Self::with_method(req, Method::Invite)
    }

    fn with_method(req: &Request, method: Method) -> Self {
        match req.top_via.rfc3261_branch() {
            Some(branch) => Self::Branch {
                branch: branch.to_owned(),
                sent_by: req.top_via.sent_by(),
                method,
            },
            None => Self::Legacy {
                uri: req.uri.clone(),
                from_tag: req.from_tag.clone(),
                call_id: req.call_id.clone(),
                cseq: req.cseq.seq,
                via: req.top_via_raw.clone(),
                method,
            },
        }
    }
}

/// INVITE server transaction states (§17.2.1, RFC 6026 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InviteState {
    /// No final response yet; retransmitted INVITEs get the last 1xx.
    Proceeding,
    /// A 2xx was sent; retransmitted INVITEs get it again until Timer L.
    Accepted,
    /// A 300-699 was sent; Timer G retransmits it until ACK or Timer H.
    Completed,
    /// The ACK arrived; further ACKs are absorbed until Timer I.
    Confirmed,
}

/// The kind of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// INVITE, in its state.
    Invite(InviteState),
    /// Any other method; always Completed here, since every non-INVITE is
    /// answered at once (Timer J then ends it).
    NonInvite,
}

/// A server transaction.
#[derive(Debug)]
pub(crate) struct ServerTx {
    pub(crate) key: TxKey,
    pub(crate) kind: ServerKind,
    /// The call it belongs to, if any.
    pub(crate) call: Option<CallId>,
    /// What responses copy from the request.
    pub(crate) base: ReplyBase,
    /// The CSeq number of the request.
    pub(crate) cseq: u32,
    /// The last response sent, re-sent to retransmissions and by Timer G.
    pub(crate) last_response: Vec<u8>,
    /// Timer G's current interval.
    pub(crate) interval: Duration,
}

/// Our BYE's non-INVITE client transaction (§17.1.2).
#[derive(Debug)]
pub(crate) struct ClientTx {
    pub(crate) call: CallId,
    pub(crate) branch: String,
    pub(crate) request: Vec<u8>,
    pub(crate) to: SocketAddr,
    pub(crate) transport: super::Transport,
    /// Timer E's current interval.
    pub(crate) interval: Duration,
    /// A provisional response arrived: retransmit every T2.
    pub(crate) proceeding: bool,
}

//! Dial-in signalling: a sans-IO SIP user agent server over UDP (RFC 3261)
//! and the SIP side of SDP offer/answer (RFC 3264, RFC 4566, RFC 4568).
//!
//! [`Uas`] is driven like the rest of sluice's protocol cores: feed it every
//! datagram that arrives on the SIP socket with [`Uas::handle_datagram`],
//! call [`Uas::handle_timeout`] when [`Uas::poll_timeout`] says, and after
//! each of those (and after each command such as [`Uas::answer`]) drain
//! [`Uas::poll_transmit`] onto the socket and [`Uas::poll_event`] into the
//! call logic. It never reads the clock and never touches a socket.
//!
//! What it implements:
//! - message syntax ([`SipMessage`]): RFC 3261 §7, §18.3 (Content-Length on
//!   UDP), §7.3.3 compact forms, comma lists, folded lines;
//! - server transactions (§17.2): INVITE (Timers G, H, I, with the RFC 6026
//!   Accepted state that re-sends the 2xx to INVITE retransmissions) and
//!   non-INVITE (Timer J), matched by branch (§17.2.3) or the RFC 2543 rules;
//! - the UAS core (§8.2, §12, §13.3, §14, §15): dialogs, 2xx retransmission
//!   until ACK (§13.3.1.4), CANCEL (§9.2), BYE both ways, re-INVITE, OPTIONS;
//! - overlapping INVITEs on a dialog (§14.2): a re-INVITE while the
//!   previous INVITE has no final response (the initial one in its early
//!   dialog, or a re-INVITE the call logic still decides) gets 500 with a
//!   Retry-After of 0 to 10 s chosen at random; one while our 2xx waits for
//!   its ACK gets 491, and so does (on the [`Uac`]'s side) one on the early
//!   dialog of a call we place while our INVITE has no final response.
//!   Sluice never sends a re-INVITE or UPDATE of its own, on either side
//!   ([`Uas`] or [`Uac`]: no session timer, no hold of ours, no media change
//!   of ours), so no 491 can ever come back to it, and the retry after a
//!   491 (§14.1: 2.1 to 4 s when we own the Call-ID, 0 to 2 s otherwise)
//!   is not implemented;
//! - a non-INVITE client transaction (§17.1.2, Timers E and F) for our BYE;
//! - responses routed per §18.2.2 and RFC 3581 (`rport`);
//! - three transports ([`Transport`]): UDP datagrams
//!   ([`Uas::handle_datagram`]) and messages cut from TCP or TLS streams by
//!   [`StreamFramer`] (§18.3, RFC 5626 keep-alives) fed to
//!   [`Uas::handle_message`]. On a stream every response and every request
//!   in the dialog goes back over the connection the request came on
//!   (§18.2.2, and RFC 5923 reuse, which our own Via offers with `alias`);
//!   a `sips:` Request-URI is only taken over TLS (RFC 5630 §3.1).
//!
//! [`sdp`] parses the caller's offer and builds our answer.
//!
//! Dial-out is the other direction: [`Uac`] places calls through a trunk
//! (INVITE client transaction, digest authentication on 401/407, CANCEL,
//! BYE), driven the same way.
//!
//! Before a request costs state, [`SipLimits`] apply: an allow-list of
//! source networks, a per-source INVITE rate and share of the dialog
//! table, and optional digest authentication (RFC 8760, SHA-256).
//! Requests that will never become calls are answered statelessly.
//!
//! Every collection the network can grow is bounded ([`MAX_DIALOGS`],
//! [`MAX_TRANSACTIONS`], [`MAX_MESSAGE_SIZE`], [`MAX_HEADERS`]); malformed
//! input is dropped and counted in [`UasStats`], never a panic.

mod call;
mod digest;
mod digest_client;
mod error;
mod guard;
mod header;
mod message;
pub mod sdp;
mod stream;
mod timer;
mod transaction;
mod uac;
mod uas;
mod wire;

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transport_tests;
#[cfg(test)]
mod uac_tests;

use std::net::SocketAddr;
use std::time::Duration;

pub use digest::{Credentials, NONCE_LIFETIME, client_authorization};
pub use error::ParseError;
pub use guard::SipLimits;
pub use message::{Header, Method, SipMessage, StartLine};
pub use sdp::{
    AnswerSpec, CODEC_PREFERENCE, Codec, CryptoOffer, Direction, MediaOffer, Negotiated,
    OFFERED_CODECS, OFFERED_TELEPHONE_EVENT, OfferSpec, OfferedCodec, SdpError, build_answer,
    make_audio_offer, negotiate, parse_offer,
};
pub use stream::{Frame, FramingError, PONG, StreamFramer};
pub use uac::{
    Dial, DialError, DialOutcome, MAX_OUTBOUND_CALLS, TrunkAccount, Uac, UacConfig, UacEvent,
};
pub use uas::{Uas, UasStats};

/// The largest datagram the UAS reads (larger ones are dropped).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// The most header values one message may carry.
pub const MAX_HEADERS: usize = 256;
/// The most calls (pending or confirmed dialogs) held at once; INVITEs
/// beyond it are answered 503 without keeping state.
pub const MAX_DIALOGS: usize = 10_000;
/// The most server and client transactions held at once; requests beyond
/// it are answered 503 (or dropped, for ACK) without keeping state.
pub const MAX_TRANSACTIONS: usize = 20_000;

/// How a [`Uas`] presents itself and times its retransmissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UasConfig {
    /// Our SIP address, written into Contact and into the Via of our
    /// requests.
    pub local: SocketAddr,
    /// The `Server:` (responses) and `User-Agent:` (requests) value.
    pub user_agent: String,
    /// Where SIP over TCP listens, if it does (Contact and Via on TCP).
    pub tcp: Option<SocketAddr>,
    /// Where SIP over TLS listens, if it does (Contact and Via on TLS).
    pub tls: Option<SocketAddr>,
    /// RTT estimate, RFC 3261 T1 (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE
    /// responses, RFC 3261 T2 (4 s).
    pub t2: Duration,
}

impl UasConfig {
    /// The RFC 3261 defaults for T1 and T2 with the given address and
    /// `Server:` value.
    pub fn new(local: SocketAddr, user_agent: impl Into<String>) -> Self {
        Self {
            local,
            tcp: None,
            tls: None,
            user_agent: user_agent.into(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

impl UasConfig {
    /// Our address on `transport` (the UDP one when that is not served).
    pub fn local_for(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.local,
            Transport::Tcp => self.tcp.unwrap_or(self.local),
            Transport::Tls => self.tls.unwrap_or(self.local),
        }
    }
}

/// How a SIP message travelled (RFC 3261 §18, RFC 5630).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Datagrams.
    #[default]
    Udp,
    /// A TCP connection.
    Tcp,
    /// A TLS connection over TCP.
    Tls,
}

impl Transport {
    /// Whether messages travel on a connection (a stream).
    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }

    /// The Via transport token (§20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// Our handle on one call (one INVITE and the dialog it creates); not the
/// SIP Call-ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A message to send: a datagram from the SIP socket, or bytes to write
/// on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it: on a stream transport, the peer of the connection
    /// to send it over.
    pub to: SocketAddr,
    /// Which socket or connection kind it goes out on.
    pub transport: Transport,
    /// The whole SIP message.
    pub payload: Vec<u8>,
}

/// What the call logic must hear about. Every [`Event::Incoming`] is
/// followed, sooner or later, by exactly one [`Event::Ended`] for the same
/// call; after it, commands naming that call do nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new INVITE; 100 Trying has already been sent. Answer it with
    /// [`Uas::ringing`], [`Uas::answer`] or [`Uas::reject`].
    Incoming {
        /// Our handle for the call.
        call: CallId,
        /// The source address of the INVITE.
        from: SocketAddr,
        /// How it came.
        transport: Transport,
        /// The Request-URI user part, percent-decoded ("1234" for
        /// `sip:1234@host`; empty when the URI has none).
        user: String,
        /// The From URI, for logs.
        caller: String,
        /// The parsed SDP offer; `None` when the INVITE had no body (sluice
        /// only takes offers in the INVITE: reject with 488).
        offer: Option<MediaOffer>,
    },
    /// The ACK for our 2xx arrived: the call is up.
    Confirmed {
        /// The call.
        call: CallId,
    },
    /// A re-INVITE in the dialog (hold, unhold, new address): answer with
    /// [`Uas::answer_reinvite`] or [`Uas::reject_reinvite`].
    Reoffer {
        /// The call.
        call: CallId,
        /// The new offer.
        offer: MediaOffer,
    },
    /// The caller cancelled before our final answer; 200 went to the
    /// CANCEL and 487 to the INVITE. [`Event::Ended`] with
    /// [`EndReason::Cancelled`] follows once the 487 is ACKed or times out.
    Cancelled {
        /// The call.
        call: CallId,
    },
    /// The call is over; its handle is no longer valid.
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        reason: EndReason,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The caller sent BYE (answered 200).
    RemoteBye,
    /// Our BYE was answered, or went unanswered for 64*T1.
    LocalBye,
    /// No ACK came for our 2xx within 64*T1; a BYE was sent.
    AckTimeout,
    /// Our non-2xx final answer was ACKed, or its ACK never came (Timer H).
    Rejected,
    /// The caller cancelled; our 487 was ACKed or timed out.
    Cancelled,
}

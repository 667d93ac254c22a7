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
//! - a non-INVITE client transaction (§17.1.2, Timers E and F) for our BYE;
//! - responses routed per §18.2.2 and RFC 3581 (`rport`).
//!
//! Every collection the network can grow is bounded ([`MAX_DIALOGS`],
//! [`MAX_TRANSACTIONS`], [`MAX_MESSAGE_SIZE`], [`MAX_HEADERS`]); malformed
//! input is dropped and counted in [`UasStats`], never a panic.

mod error;
mod message;
pub mod sdp;

pub use error::ParseError;
pub use message::{Header, Method, SipMessage, StartLine};
pub use sdp::MediaOffer;

/// The largest datagram the UAS reads (larger ones are dropped).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// The most header values one message may carry.
pub const MAX_HEADERS: usize = 256;

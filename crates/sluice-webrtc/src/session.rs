//! One browser's transport before it is a leg: its ICE-lite agent and its
//! DTLS server, fed the datagrams the media port routed to it.
//!
//! [`Session::handle_datagram`] takes STUN and DTLS (anything else is the
//! data plane's business); DTLS is accepted only from an address that has
//! passed an authenticated ICE check, so an off-path sender cannot start
//! a handshake, and the handshake's answers go back to where its packets
//! came from. Outcomes are [`SessionEvent`]s: the nominated address, the
//! leg's SRTP keys, consent lost, or the handshake's failure.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::demux::PacketClass;
use crate::dtls::{DtlsConfig, DtlsEvent, DtlsFailure, DtlsServer};
use crate::ice::{IceEvent, IceLite, StunDrop};
use crate::identity::{DtlsIdentity, Fingerprint};
use crate::keying::LegKeying;

/// Largest datagram a session writes (STUN responses, DTLS records).
pub const MAX_TRANSMIT: usize = 1500;

/// A datagram to send: `buf[..len]` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// Bytes written into the caller's buffer.
    pub len: usize,
}

/// Why a datagram routed to a session was dropped (each a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionDrop {
    /// A STUN message that failed a check.
    Stun(StunDrop),
    /// DTLS from an address no authenticated check came from.
    DtlsUnvalidated,
    /// DTLS after the handshake ended (failed, closed).
    DtlsAfterEnd,
    /// Not STUN or DTLS: RTP belongs to the data plane.
    NotHandshake,
}

/// What a session tells the media port.
#[derive(Debug)]
pub enum SessionEvent {
    /// Media goes to this address now (first nomination or a new one).
    Selected(SocketAddr),
    /// The handshake is done and verified: make the leg with these keys.
    Established(LegKeying),
    /// RFC 7675: no valid check for 30 s; stop sending to the leg.
    ConsentExpired,
    /// The handshake failed; drop the session.
    Failed(DtlsFailure),
    /// The browser closed DTLS (close_notify).
    Closed,
}

/// Credentials and expectations from the signalled offer/answer.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// The relay's ufrag for this session.
    pub local_ufrag: String,
    /// The relay's ICE password for this session.
    pub local_pwd: String,
    /// The browser's ufrag (its offer's `a=ice-ufrag`).
    pub remote_ufrag: String,
    /// The browser's certificate fingerprint (its offer's `a=fingerprint`).
    pub remote_fingerprint: Fingerprint,
}

/// One browser's ICE-lite + DTLS-SRTP state.
#[derive(Debug)]
pub struct Session {
    ice: IceLite,
    dtls: DtlsServer,
    /// Where the last DTLS datagram came from: the handshake answers there.
    dtls_peer: Option<SocketAddr>,
    /// STUN responses waiting for `poll_transmit` (at most a few).
    stun_out: VecDeque<([u8; 128], usize, SocketAddr)>,
    events: VecDeque<SessionEvent>,
}

/// Responses queued per session before the oldest is dropped; a peer
/// checking faster than the port drains gets no more than this many.
const MAX_QUEUED_STUN: usize = 8;

impl Session {
    /// A session created at `now` (the answer has just been sent).
    pub fn new(
        config: &DtlsConfig,
        identity: &DtlsIdentity,
        params: SessionParams,
        now: Instant,
    ) -> Self {
        Self {
            ice: IceLite::new(params.local_ufrag, params.local_pwd, params.remote_ufrag),
            dtls: DtlsServer::new(config, identity, params.remote_fingerprint, now),
            dtls_peer: None,
            stun_out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The relay's ufrag (the media port routes checks by it).
    pub fn local_ufrag(&self) -> &str {
        self.ice.local_ufrag()
    }

    /// Where media goes now, if anywhere.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// Where the leg's media goes: the nominated address, or before any
    /// nomination (a browser nominates after DTLS has started) the
    /// validated address the handshake came from.
    pub fn media_address(&self) -> Option<SocketAddr> {
        self.ice.selected().or(self.dtls_peer)
    }

    /// Whether the DTLS handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.dtls.is_handshaking()
    }

    /// Handles one STUN or DTLS datagram from `from` at `now`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), SessionDrop> {
        match PacketClass::of(datagram) {
            PacketClass::Stun => {
                let mut out = [0u8; 128];
                let answered = self
                    .ice
                    .handle_stun(now, from, datagram, &mut out)
                    .map_err(SessionDrop::Stun)?;
                if self.stun_out.len() == MAX_QUEUED_STUN {
                    self.stun_out.pop_front();
                }
                self.stun_out.push_back((out, answered.len, from));
                self.drain_ice();
                Ok(())
            }
            PacketClass::Dtls => {
                if !self.ice.is_validated(from) {
                    return Err(SessionDrop::DtlsUnvalidated);
                }
                if self.dtls.is_ended() {
                    return Err(SessionDrop::DtlsAfterEnd);
                }
                self.dtls_peer = Some(from);
                self.dtls.handle_packet(now, datagram);
                Ok(())
            }
            PacketClass::Rtp | PacketClass::Other => Err(SessionDrop::NotHandshake),
        }
    }

    /// Advances time: consent, DTLS retransmission, the handshake deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ice.handle_timeout(now);
        self.drain_ice();
        self.dtls.handle_timeout(now);
    }

    /// The earliest time [`Session::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.ice.poll_timeout(), self.dtls.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send, written into `buf` (at least
    /// [`MAX_TRANSMIT`] bytes). Call until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((bytes, len, to)) = self.stun_out.pop_front() {
            let dst = buf.get_mut(..len)?;
            dst.copy_from_slice(&bytes[..len]);
            return Some(Transmit { to, len });
        }
        let packet = self.dtls.poll_transmit(buf);
        let len = packet.map(<[u8]>::len);
        self.drain_dtls();
        match (len, self.dtls_peer) {
            (Some(len), Some(to)) => Some(Transmit { to, len }),
            _ => None,
        }
    }

    /// The next event; drain after every call.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.drain_dtls();
        self.events.pop_front()
    }

    fn drain_ice(&mut self) {
        while let Some(e) = self.ice.poll_event() {
            self.events.push_back(match e {
                IceEvent::Selected(a) => SessionEvent::Selected(a),
                IceEvent::ConsentExpired => SessionEvent::ConsentExpired,
            });
        }
    }

    fn drain_dtls(&mut self) {
        while let Some(e) = self.dtls.poll_event() {
            self.events.push_back(match e {
                DtlsEvent::Established(keys) => SessionEvent::Established(keys),
                DtlsEvent::Failed(why) => SessionEvent::Failed(why),
                DtlsEvent::Closed => SessionEvent::Closed,
            });
        }
    }
}

#[cfg(test)]
mod tests;

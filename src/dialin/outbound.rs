//! The seam dial-out (`crate::dialout`) uses to put an outbound call into
//! the bridge: the same [`Call`] and pool thread a dial-in caller gets, so
//! an answered phone joins its meeting exactly like one that called in (an
//! SRTP leg to the relay, G.711 ↔ Opus on a pool thread, never on a packet
//! worker). Only the signalling differs, and that lives in `dialout/`;
//! a far-end re-INVITE is answered by the same decision as a dial-in
//! caller's (`reoffer.rs`: [`dialed_session`] then [`answer_reoffer`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use crate::control::BridgeLeg;
use crate::sip::CallId;

use super::call::{Call, Entry};

pub(crate) use super::call::{CallError, CallSettings, CallerMedia, random_u32};
pub(crate) use super::pool::{CallSlot, PoolCommand, PoolEvent, PoolThread};
pub(crate) use super::reoffer::caller_codec;
pub(crate) use super::reoffer::{Session, answer_reoffer, dialed_session};

/// A call's two media sockets: the phone's RTP (its port goes into our
/// SDP) and the leg towards the relay.
#[derive(Debug)]
pub(crate) struct MediaSockets {
    pub(crate) caller: UdpSocket,
    pub(crate) meeting: UdpSocket,
}

impl MediaSockets {
    /// Binds the phone's side on `media_ip` and connects the meeting side
    /// to the relay's media port, both non-blocking (as dial-in does).
    pub(crate) fn bind(media_ip: IpAddr, relay: SocketAddr) -> std::io::Result<Self> {
        let caller = UdpSocket::bind(SocketAddr::new(media_ip, 0))?;
        caller.set_nonblocking(true)?;
        let relay = if relay.ip().is_unspecified() {
            SocketAddr::new(loopback(relay), relay.port())
        } else {
            relay
        };
        let local = if relay.ip().is_loopback() {
            loopback(relay)
        } else {
            relay.ip()
        };
        let meeting = UdpSocket::bind(SocketAddr::new(local, 0))?;
        meeting.connect(relay)?;
        meeting.set_nonblocking(true)?;
        Ok(Self { caller, meeting })
    }

    /// The RTP port our SDP offer names.
    pub(crate) fn port(&self) -> std::io::Result<u16> {
        Ok(self.caller.local_addr()?.port())
    }
}

fn loopback(relay: SocketAddr) -> IpAddr {
    match relay {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// The bridge's call for an admitted `leg`, ready for a pool thread. On an
/// error the caller has already left the meeting (as in [`Call::new`]).
pub(crate) fn bridge(
    settings: &Arc<CallSettings>,
    id: CallId,
    media: CallerMedia,
    leg: BridgeLeg,
    sockets: MediaSockets,
    now: Instant,
) -> Result<Box<CallSlot>, CallError> {
    let (remote, rtcp) = (media.remote, media.rtcp);
    let mut call = Call::new(Arc::clone(settings), media, Entry::Admitted(leg), now)?;
    call.update_caller((remote, rtcp), false, now);
    // RTCP to the far end leaves from the RTP socket (no port + 1 of ours
    // is offered yet), toward what its answer named.
    Ok(Box::new(CallSlot::new(
        id,
        call,
        (sockets.caller, None),
        sockets.meeting,
    )))
}

//! The media port's WebRTC side: STUN and DTLS datagrams split off the
//! packet workers' batches (RFC 7983, by first byte) into one bounded
//! queue, and the handshake thread that owns every browser's
//! [`Session`] and turns a finished one into an ordinary leg.
//!
//! - [`WebrtcDemux`] wraps a worker's [`PacketHandler`]: RTP and RTCP go
//!   to the relay core untouched; STUN (0–3) and DTLS (20–63) are copied
//!   into the queue with `try_send`, so a storm of handshakes never
//!   blocks a worker: when the queue is full the datagram is dropped and
//!   counted (`queue_full`), and the browser's retransmission retries.
//!   The copy is the only allocation, and it happens for handshake and
//!   consent packets only, never for media.
//! - The handshake thread ([`WebrtcPort::start`]) reads the queue, runs
//!   the sans-IO [`SessionTable`] on its own clock, sends STUN answers
//!   and DTLS flights from a clone of a media socket (same local address,
//!   so the browser sees the 5-tuple it checked), and reports each
//!   session's outcome to a [`LegSink`] (the control plane's registry).
//!   After the handshake a session stays in the table: it keeps answering
//!   the browser's consent checks (RFC 7675) and notices when they stop.
//!   The thread runs in the daemon's background class
//!   ([`crate::net::priority::Background`], `[media] background`): on a
//!   box with no idle core a burst of handshakes waits for the packet
//!   workers, never the other way round (bench/README.md, `webrtc_burst`).
//!
//! - [`UnroutedOffer`] is each worker's hand-off of RTP whose SSRC no
//!   route has, from a browser's ICE address: the thread passes it to the
//!   sink, which learns a WHIP stream announced without `a=ssrc`
//!   (`crate::webrtc::learn`).
//!
//! Every [`SLOT_TICK`] the thread also runs the WHEP slot decisions
//! ([`LegSink::tick_slots`], off the packet path) and sends the keyframe
//! requests they make ([`KeyframeRequest`]).
//!
//! Commands from the control plane (open, close) travel through the same
//! queue, so a session is in the table before its first check can be:
//! the answer carrying the ufrag is sent after `open` was queued.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_webrtc::counters::{HandshakeOutcome, WebRtcCounters, WebRtcDrop};
use sluice_webrtc::demux::PacketClass;
use sluice_webrtc::dtls::DtlsConfig;
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::keying::LegKeying;
use sluice_webrtc::session::{MAX_TRANSMIT, Session, SessionEvent, SessionParams};
use sluice_webrtc::table::{InsertError, SessionTable};

use super::keyframe::KeyframeRequest;
use crate::net::PacketHandler;
use crate::net::priority::Background;
use crate::relay::{RoutingSnapshot, Transmits, UnroutedSink};

/// Datagrams and commands the queue holds before workers drop STUN/DTLS.
pub const QUEUE_DEPTH: usize = 4096;
/// Sessions (pending or established) one media port holds at most.
pub const MAX_SESSIONS: usize = 4096;
/// The longest the handshake thread sleeps without looking at timers.
const IDLE: Duration = Duration::from_millis(50);
/// How often the WHEP slot decisions run ([`LegSink::tick_slots`]).
pub const SLOT_TICK: Duration = Duration::from_millis(100);

/// A WebRTC session's number, chosen by the control plane.
pub type SessionId = u64;

/// What the handshake thread is fed.
#[derive(Debug)]
pub enum PortInput {
    /// A STUN or DTLS datagram from the media port.
    Datagram {
        /// Its source.
        from: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// RTP with an SSRC no route has, from a browser's ICE address (see
    /// [`UnroutedOffer`]): maybe a WHIP stream announced without `a=ssrc`.
    Unrouted {
        /// Its source.
        from: SocketAddr,
        /// Its bytes, still SRTP.
        bytes: Vec<u8>,
    },
    /// A WHIP/WHEP POST was answered: expect this browser.
    Open {
        /// The session.
        id: SessionId,
        /// Its credentials and the browser's fingerprint.
        params: Box<SessionParams>,
    },
    /// The session ended (WHIP/WHEP DELETE, participant removed).
    Close(SessionId),
    /// Stop the thread (daemon shutdown).
    Stop,
}

/// Where the handshake thread reports outcomes: the registry.
pub trait LegSink: Send + 'static {
    /// The session's handshake is done: make its leg, media at `addr`
    /// (handed to the workers by the turn's [`LegSink::publish`], at the
    /// latest). Returns false when the session is gone (its participant left);
    /// the thread then forgets it.
    fn established(&self, id: SessionId, keys: &LegKeying, addr: SocketAddr) -> bool;
    /// ICE nominated `addr` for an established session: media goes there.
    fn moved(&self, id: SessionId, addr: SocketAddr);
    /// The session ended without (or after) a leg: consent expired, the
    /// handshake failed or the browser closed. Remove its leg, if any.
    fn ended(&self, id: SessionId, why: EndReason);
    /// Runs the WHEP receive-slot decisions at `now` (every
    /// [`SLOT_TICK`]): appends the keyframe requests to send, returns how
    /// many slots changed source since the last call.
    fn tick_slots(&self, now: Instant, keyframes: &mut Vec<KeyframeRequest>) -> u64 {
        let _ = (now, keyframes);
        0
    }
    /// The end of a turn of the handshake thread (everything queued was
    /// handled): hand the workers what [`LegSink::established`] left
    /// unpublished. By default there is nothing to hand.
    fn publish(&self) {}
    /// SRTP with an unknown SSRC from `from`, a browser's ICE address:
    /// learn the stream if it is a WHIP session's (`crate::webrtc::learn`).
    /// By default nothing is learnt.
    fn unrouted(&self, from: SocketAddr, datagram: &[u8]) {
        let _ = (from, datagram);
    }
}

/// Why a session ended on the media port's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No valid consent check for 30 s (RFC 7675).
    ConsentExpired,
    /// The handshake failed or timed out.
    HandshakeFailed,
    /// The browser sent close_notify.
    Closed,
}

/// The sending half of the queue, for workers and the control plane.
#[derive(Debug, Clone)]
pub struct PortQueue {
    tx: SyncSender<PortInput>,
    counters: Arc<WebRtcCounters>,
}

impl PortQueue {
    /// Queues a command from the control plane; waits if the queue is
    /// full (the thread drains it continuously). False when the thread
    /// has stopped.
    pub fn command(&self, input: PortInput) -> bool {
        self.tx.send(input).is_ok()
    }

    /// A worker's [`UnroutedSink`] feeding this queue.
    pub fn unrouted_sink(&self) -> UnroutedOffer {
        UnroutedOffer {
            queue: self.clone(),
            seen: [(0, 0); UNROUTED_SEEN],
            next: 0,
        }
    }

    /// Offers a datagram without waiting; counted when the queue is full.
    fn offer(&self, from: SocketAddr, datagram: &[u8]) {
        self.offer_input(PortInput::Datagram {
            from,
            bytes: datagram.to_vec(),
        });
    }

    fn offer_input(&self, input: PortInput) {
        match self.tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.counters.dropped(WebRtcDrop::QueueFull),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// SSRCs one worker remembers for [`UnroutedOffer`]'s rate limit.
const UNROUTED_SEEN: usize = 8;
/// Packets of one unknown SSRC offered before the rate limit starts.
const UNROUTED_FIRST: u32 = 4;
/// After those, one in this many is offered.
const UNROUTED_EVERY: u32 = 64;

/// A worker's hand-off of unknown-SSRC RTP from browsers' ICE addresses
/// to the handshake thread, where a WHIP stream announced without
/// `a=ssrc` is learnt from its first packets. Rate-limited per SSRC
/// without a clock (the first `UNROUTED_FIRST` packets of an SSRC,
/// then one in `UNROUTED_EVERY`, over the last `UNROUTED_SEEN` SSRCs
/// seen), so a stream that is never learnt (a repair stream, RTX
/// padding) costs the thread a trickle, not a copy of every packet. A
/// learnt stream leaves this path with the next snapshot.
#[derive(Debug)]
pub struct UnroutedOffer {
    queue: PortQueue,
    /// (SSRC, packets seen), round-robin.
    seen: [(u32, u32); UNROUTED_SEEN],
    next: usize,
}

impl UnroutedOffer {
    /// Whether this packet of `ssrc` is one to offer.
    fn due(&mut self, ssrc: u32) -> bool {
        let at = match self.seen.iter().position(|&(s, n)| s == ssrc && n > 0) {
            Some(at) => at,
            None => {
                let at = self.next;
                self.next = (self.next + 1) % UNROUTED_SEEN;
                self.seen[at] = (ssrc, 0);
                at
            }
        };
        let n = &mut self.seen[at].1;
        *n = n.saturating_add(1);
        *n <= UNROUTED_FIRST || n.is_multiple_of(UNROUTED_EVERY)
    }
}

impl UnroutedSink for UnroutedOffer {
    fn unrouted(&mut self, from: SocketAddr, ssrc: u32, datagram: &[u8]) {
        if self.due(ssrc) {
            self.queue.offer_input(PortInput::Unrouted {
                from,
                bytes: datagram.to_vec(),
            });
        }
    }
}

/// A worker's handler with STUN and DTLS split off to the handshake thread.
#[derive(Debug)]
pub struct WebrtcDemux<H> {
    inner: H,
    queue: PortQueue,
}

impl<H> WebrtcDemux<H> {
    /// `inner` gets everything but STUN and DTLS, which go to `queue`.
    pub fn new(inner: H, queue: PortQueue) -> Self {
        Self { inner, queue }
    }
}

impl<H: PacketHandler> PacketHandler for WebrtcDemux<H> {
    fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: crate::relay::Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        let datagram = packet.get(..len).unwrap_or_default();
        match PacketClass::of(datagram) {
            PacketClass::Stun | PacketClass::Dtls => self.queue.offer(from.remote, datagram),
            PacketClass::Rtp | PacketClass::Other => {
                self.inner.handle_datagram(snapshot, from, packet, len, out);
            }
        }
    }

    fn has_deferred(&self) -> bool {
        self.inner.has_deferred()
    }

    fn poll_deferred(&mut self, block: bool, out: &mut Transmits) -> bool {
        self.inner.poll_deferred(block, out)
    }
}

/// The running handshake thread.
#[derive(Debug)]
pub struct WebrtcPort {
    queue: PortQueue,
    thread: Option<JoinHandle<()>>,
}

/// The queue made before the workers start, and its receiving end, which
/// [`WebrtcPort::start`] takes once the control plane exists.
#[derive(Debug)]
pub struct PortInbox {
    queue: PortQueue,
    rx: Receiver<PortInput>,
}

impl PortInbox {
    /// A fresh queue of [`QUEUE_DEPTH`], counting into `counters`.
    pub fn new(counters: Arc<WebRtcCounters>) -> Self {
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        Self {
            queue: PortQueue { tx, counters },
            rx,
        }
    }

    /// The sending half (one clone per worker, one for the control plane).
    pub fn queue(&self) -> &PortQueue {
        &self.queue
    }
}

impl WebrtcPort {
    /// Starts the handshake thread on `inbox`, answering from `socket`
    /// (a clone of a media socket), with the relay's `identity`,
    /// reporting to `sink`, scheduled in `background` (below the packet
    /// workers).
    pub fn start(
        inbox: PortInbox,
        socket: UdpSocket,
        identity: Arc<DtlsIdentity>,
        config: DtlsConfig,
        sink: impl LegSink,
        background: Background,
    ) -> std::io::Result<Self> {
        let PortInbox { queue, rx } = inbox;
        let counters = Arc::clone(&queue.counters);
        let thread = std::thread::Builder::new()
            .name("sluice-webrtc".to_owned())
            .spawn(move || {
                // Below the packet workers: a burst of handshakes waits for
                // an idle core rather than delaying forwarding.
                background.enter("WebRTC handshake");
                let mut port = Handshakes {
                    table: SessionTable::new(MAX_SESSIONS),
                    config,
                    identity,
                    socket,
                    sink,
                    counters,
                    established: std::collections::HashSet::new(),
                };
                port.run(&rx);
            })?;
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// The queue, for the control plane's commands.
    pub fn queue(&self) -> &PortQueue {
        &self.queue
    }

    /// Stops the thread and joins it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.queue.tx.send(PortInput::Stop);
            if thread.join().is_err() {
                tracing::error!("the WebRTC handshake thread panicked");
            }
        }
    }
}

impl Drop for WebrtcPort {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The handshake thread's state.
struct Handshakes<S> {
    table: SessionTable<SessionId>,
    config: DtlsConfig,
    identity: Arc<DtlsIdentity>,
    socket: UdpSocket,
    sink: S,
    counters: Arc<WebRtcCounters>,
    /// Sessions whose leg exists.
    established: std::collections::HashSet<SessionId>,
}

impl<S: LegSink> Handshakes<S> {
    fn run(&mut self, rx: &Receiver<PortInput>) {
        let mut due = Vec::new();
        let mut keyframes = Vec::new();
        let mut next_slot_tick = Instant::now() + SLOT_TICK;
        loop {
            let now = Instant::now();
            if now >= next_slot_tick {
                next_slot_tick = now + SLOT_TICK;
                self.tick_slots(now, &mut keyframes);
            }
            let wait = self
                .table
                .poll_timeout()
                .map_or(IDLE, |t| t.saturating_duration_since(now).min(IDLE))
                .min(next_slot_tick.saturating_duration_since(now));
            match rx.recv_timeout(wait) {
                Ok(PortInput::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Whatever else is queued, without sleeping in between.
            while let Ok(input) = rx.try_recv() {
                if matches!(input, PortInput::Stop) {
                    return;
                }
                self.handle(input);
            }
            due.clear();
            self.table.handle_timeout(Instant::now(), &mut due);
            for id in due.drain(..) {
                self.drain(id);
            }
            // One publication for the turn's legs, not one per leg.
            self.sink.publish();
        }
    }

    /// The slot decisions: counts the switches, sends the PLIs.
    fn tick_slots(&mut self, now: Instant, keyframes: &mut Vec<KeyframeRequest>) {
        keyframes.clear();
        for _ in 0..self.sink.tick_slots(now, keyframes) {
            self.counters.slot_switched();
        }
        let mut buf = [0u8; 64];
        for request in keyframes.drain(..) {
            if let Some((len, dest)) = request.write(&mut buf) {
                // A full socket buffer loses this one; the browser asks too.
                let _ = self.socket.send_to(&buf[..len], dest.remote);
            }
        }
    }

    fn handle(&mut self, input: PortInput) {
        match input {
            PortInput::Datagram { from, bytes } => {
                match self.table.handle_datagram(Instant::now(), from, &bytes) {
                    Ok(id) => self.drain(id),
                    Err(drop) => {
                        if let Some(why) = WebRtcDrop::of(drop) {
                            self.counters.dropped(why);
                        }
                    }
                }
            }
            PortInput::Unrouted { from, bytes } => self.sink.unrouted(from, &bytes),
            PortInput::Open { id, params } => {
                let session = Session::new(&self.config, &self.identity, *params, Instant::now());
                match self.table.insert(id, session) {
                    Ok(()) => {}
                    Err(InsertError::Full(full)) => {
                        tracing::warn!("WebRTC session refused: {full}");
                        self.sink.ended(id, EndReason::HandshakeFailed);
                    }
                    Err(InsertError::UfragInUse) => {
                        self.sink.ended(id, EndReason::HandshakeFailed);
                    }
                }
            }
            PortInput::Close(id) => {
                self.table.remove(id);
                self.established.remove(&id);
            }
            PortInput::Stop => {}
        }
    }

    /// Sends what session `id` has to send and acts on its events.
    fn drain(&mut self, id: SessionId) {
        let mut buf = [0u8; MAX_TRANSMIT];
        let mut end = None;
        {
            let Some(session) = self.table.get_mut(id) else {
                return;
            };
            while let Some(t) = session.poll_transmit(&mut buf) {
                // A full socket buffer loses this datagram; STUN and DTLS
                // retransmit.
                let _ = self.socket.send_to(&buf[..t.len], t.to);
            }
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Selected(addr) => {
                        if self.established.contains(&id) {
                            self.sink.moved(id, addr);
                        }
                    }
                    SessionEvent::Established(keys) => {
                        self.counters.handshake(HandshakeOutcome::Established);
                        let Some(addr) = session.media_address() else {
                            end = Some(EndReason::HandshakeFailed);
                            continue;
                        };
                        if self.sink.established(id, &keys, addr) {
                            self.established.insert(id);
                        } else {
                            end = Some(EndReason::Closed);
                        }
                    }
                    SessionEvent::ConsentExpired => {
                        self.counters.consent_expired();
                        end = Some(EndReason::ConsentExpired);
                    }
                    SessionEvent::Failed(why) => {
                        tracing::info!(
                            session = %format!("{id:016x}"),
                            reason = why.label(),
                            "WebRTC handshake failed"
                        );
                        self.counters.handshake(HandshakeOutcome::Failed(why));
                        end = Some(EndReason::HandshakeFailed);
                    }
                    SessionEvent::Closed => end = Some(EndReason::Closed),
                }
            }
        }
        if let Some(why) = end {
            self.table.remove(id);
            self.established.remove(&id);
            self.sink.ended(id, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker-side rate limit of unknown-SSRC hand-offs: the first
    /// packets of an SSRC, then one in 64; a new SSRC starts afresh, and
    /// the queue gets exactly what was due.
    #[test]
    fn unknown_ssrcs_are_offered_first_then_one_in_sixty_four() {
        let inbox = PortInbox::new(Arc::new(WebRtcCounters::default()));
        let mut offer = inbox.queue().unrouted_sink();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut offered = 0;
        for _ in 0..640 {
            offer.unrouted(from, 7, b"\x80\x60rtp");
        }
        while let Ok(PortInput::Unrouted { from: f, bytes }) = inbox.rx.try_recv() {
            assert_eq!((f, bytes.as_slice()), (from, &b"\x80\x60rtp"[..]));
            offered += 1;
        }
        // Packets 1-4, then 64, 128, …, 640.
        assert_eq!(offered, 4 + 10);
        for ssrc in 100..100 + UNROUTED_SEEN as u32 {
            assert!(offer.due(ssrc), "a new SSRC is offered at once");
        }
        // SSRC 7 was pushed out by eight others: it starts afresh.
        assert!(offer.due(7));
    }
}

//! [`TranscoderLeg`]: the transcoder as a participant (DESIGN.md, "Media
//! services are participants"). One per running transcode: an SRTP leg to
//! the relay's media port with keys of its own, like the dial-in bridge's.
//! The relay sends it the source stream (and nothing else: the leg is in
//! the source's audience, outside the meeting's fan-out set); it sends
//! back the rendition stream, which the relay forwards to the rendition's
//! receivers only, and RTCP to the publisher (PLI at start and after
//! unrepairable loss, NACK for holes). Its receivers' PLI/FIR and REMB
//! about the rendition reach it, and are answered here, never passed on.
//!
//! Driven by a media thread (`service.rs`) with the caller's `now`:
//! [`TranscoderLeg::start`] once, [`TranscoderLeg::handle_datagram`] for
//! each datagram from the relay, [`TranscoderLeg::handle_timeout`] at
//! [`TranscoderLeg::poll_timeout`]. Socket errors on the loopback leg are
//! counted as nothing: the relay is on the same box, and a lost datagram
//! is a lost packet like any other.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use arrayvec::ArrayVec;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};

use super::counters::TranscodeCounters;
use super::error::TranscodeError;
use super::prefs::RenditionSpec;
use super::profile::EncoderKind;
use super::rendition::{Rendition, RenditionOutput, RenditionStats};
use crate::crypto::{AnyGcm, BackendKind};
use crate::net::burst::{SEND_BURST, send_connected};
use crate::rtp::rtcp::{NackBuilder, PliBuilder, ReceiverReportBuilder};
use crate::rtp::{RtcpCompound, RtcpPacket, RtpBuilder, RtpPacket, SeqNum, Ssrc, is_rtcp};
use crate::srtp::{MasterKey, SrtpSession};
use crate::video::VideoCodec;

/// Largest datagram the leg reads or writes.
const MAX_DATAGRAM: usize = 1500;
/// The socket buffers asked for.
const RECV_BUFFER: usize = 4 << 20;
/// How often the leg sends a receiver report: it latches the leg at the
/// relay before any media flows, and keeps it latched.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The first retry of the latching report while nothing has come back
/// from the relay; each retry doubles it, up to [`REPORT_INTERVAL`].
///
/// Why retry at all: the registry hands the job to the media thread
/// before the workers have the routing snapshot that holds the leg, so
/// the very first report can reach a worker that does not know the leg
/// yet and is dropped. Waiting a whole [`REPORT_INTERVAL`] for the next
/// one cost the rendition the publisher's first key frame (and, from a
/// publisher that ignores PLI, a whole GOP).
const LATCH_RETRY: Duration = Duration::from_millis(20);
/// A receiver's REMB counts this long after it was sent.
const REMB_TTL: Duration = Duration::from_secs(5);
/// Room SRTP needs after a packet (a GCM tag or an HMAC tag, an SRTCP index).
const SRTP_ROOM: usize = 32;
/// A datagram's buffer: the largest datagram and SRTP's room.
const SLOT: usize = MAX_DATAGRAM + SRTP_ROOM;

/// What starting one transcode takes: decided by the registry when a
/// receiver first needs the rendition.
#[derive(Debug, Clone)]
pub struct TranscodeJob {
    /// The registry's number for it (what stops it).
    pub id: u64,
    /// The source stream's SSRC.
    pub source_ssrc: u32,
    /// The source stream's codec.
    pub source_codec: VideoCodec,
    /// The SSRC the rendition is published under.
    pub rendition_ssrc: u32,
    /// The SSRC of the leg's RTCP (its `rtcp_ssrc`).
    pub rtcp_ssrc: u32,
    /// The rendition.
    pub spec: RenditionSpec,
    /// The encoder the probe chose for the spec's codec.
    pub encoder: EncoderKind,
    /// What the leg protects with (client → relay).
    pub client_to_relay: MasterKey,
    /// What the leg unprotects with (relay → client).
    pub relay_to_client: MasterKey,
    /// The relay's media address.
    pub relay: SocketAddr,
}

/// Why a leg could not start.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    /// The socket towards the relay could not be made.
    #[error("cannot open the transcoder's socket towards {relay}: {source}")]
    Socket {
        /// The relay's media address.
        relay: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A key does not make an SRTP session.
    #[error("the transcoder's SRTP keys are unusable: {0}")]
    Srtp(#[from] crate::srtp::SrtpError),
    /// The decoder could not be opened.
    #[error(transparent)]
    Codec(#[from] TranscodeError),
}

/// One running transcode and its leg.
#[derive(Debug)]
pub struct TranscoderLeg {
    id: u64,
    source: Ssrc,
    ssrc: Ssrc,
    rtcp_ssrc: Ssrc,
    spec: RenditionSpec,
    socket: UdpSocket,
    to_relay: SrtpSession<AnyGcm>,
    from_relay: SrtpSession<AnyGcm>,
    rendition: Rendition,
    reported: RenditionStats,
    rembs: Vec<(u32, u64, Instant)>,
    next_report: Option<Instant>,
    /// Whether a datagram from the relay authenticated yet: until then
    /// the leg may not be latched, and reports go out on `latch_retry`.
    heard: bool,
    latch_retry: Duration,
    out: Vec<u8>,
    burst: Burst,
}

impl TranscoderLeg {
    /// Opens the leg's socket (connected to the relay) and the rendition.
    pub fn open(job: &TranscodeJob, backend: BackendKind) -> Result<Self, LegError> {
        let socket_error = |source| LegError::Socket {
            relay: job.relay,
            source,
        };
        let any: SocketAddr = if job.relay.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(any).map_err(socket_error)?;
        socket.connect(job.relay).map_err(socket_error)?;
        socket.set_nonblocking(true).map_err(socket_error)?;
        // A key frame arrives as a burst; a deep buffer rides it out while
        // the thread is encoding (the kernel caps it at net.core.rmem_max).
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER);
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(RECV_BUFFER);
        // Each datagram's arrival, so a frame that waited in the buffer
        // while the thread was busy is known to be late (shedding); without
        // it every frame counts as just arrived.
        let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
        let first_seq = SeqNum((job.rendition_ssrc & 0xffff) as u16);
        Ok(Self {
            id: job.id,
            source: Ssrc(job.source_ssrc),
            ssrc: Ssrc(job.rendition_ssrc),
            rtcp_ssrc: Ssrc(job.rtcp_ssrc),
            spec: job.spec,
            socket,
            to_relay: SrtpSession::new(AnyGcm::new(backend), &job.client_to_relay)?,
            from_relay: SrtpSession::new(AnyGcm::new(backend), &job.relay_to_client)?,
            rendition: Rendition::new(job.source_codec, job.spec, job.encoder, first_seq)?,
            reported: RenditionStats::default(),
            rembs: Vec::new(),
            next_report: None,
            heard: false,
            latch_retry: LATCH_RETRY,
            out: vec![0; SLOT],
            burst: Burst::new(),
        })
    }

    /// The registry's number for it.
    #[must_use]
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// The encoder it uses.
    #[must_use]
    pub const fn encoder(&self) -> EncoderKind {
        self.rendition.encoder_kind()
    }

    /// The socket, for the thread's poll.
    #[must_use]
    pub const fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Latches the leg (a receiver report). The key frame request goes
    /// with the source's first packet (`Rendition::handle_rtp_arrived`),
    /// once the relay routes to this leg.
    pub fn start(&mut self, now: Instant, counters: &TranscodeCounters) {
        self.send_report(now);
        self.flush(counters);
    }

    /// When to call [`Self::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.rendition.poll_timeout(), self.next_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: the jitter buffer's deadlines, the next report.
    pub fn handle_timeout(&mut self, now: Instant, counters: &TranscodeCounters) {
        if self.next_report.is_some_and(|at| now >= at) {
            self.send_report(now);
        }
        if self.rendition.poll_timeout().is_some_and(|at| now >= at)
            && let Err(e) = self.rendition.handle_timeout(now)
        {
            tracing::warn!(transcode = self.id, "rendition failed: {e}");
        }
        self.flush(counters);
    }

    /// Reads every datagram waiting on the socket and handles each at the
    /// time `clock` gives as it is read: a frame's codec work takes
    /// milliseconds, and whether the next frame is late (shedding) is
    /// judged at the instant it is handled, not when the drain began.
    pub fn drain_socket(&mut self, clock: impl Fn() -> Instant, counters: &TranscodeCounters) {
        let mut buf = [0u8; MAX_DATAGRAM + SRTP_ROOM];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
        // Bounded: a flood cannot keep the thread from its other legs.
        for _ in 0..256 {
            let Some((len, age)) = self.recv(&mut buf, &mut space) else {
                break;
            };
            let now = clock();
            let arrived = now.checked_sub(age).unwrap_or(now);
            self.handle_datagram_arrived(now, arrived, &mut buf, len);
            // A frame this datagram completed leaves now, not after the
            // frames behind it in the socket are coded too: a leg that
            // fell behind by a few frames would otherwise hold the first
            // one's packets for all of their codec time (the ffmpeg CLI
            // writes each packet as it is encoded).
            self.send_output();
        }
        self.flush(counters);
    }

    /// One datagram off the socket, and how long ago the kernel received
    /// it (zero without a timestamp, or with the wall clock stepped back).
    #[allow(clippy::ptr_arg)] // nix's recvmsg takes the control buffer as a Vec
    fn recv(&self, buf: &mut [u8], space: &mut Vec<u8>) -> Option<(usize, Duration)> {
        let mut iov = [IoSliceMut::new(buf)];
        let fd = self.socket.as_raw_fd();
        let msg = recvmsg::<()>(fd, &mut iov, Some(space), MsgFlags::MSG_DONTWAIT).ok()?;
        let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                _ => None,
            })
        });
        let age = stamp.and_then(|ts| {
            let at = Duration::new(
                u64::try_from(ts.tv_sec()).ok()?,
                u32::try_from(ts.tv_nsec()).ok()?,
            );
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?;
            wall.checked_sub(at)
        });
        Some((msg.bytes, age.unwrap_or_default()))
    }

    /// One datagram from the relay (`buf[..len]`, decrypted in place):
    /// the source's RTP, or its receivers' RTCP. Anything that does not
    /// authenticate or parse is dropped.
    pub fn handle_datagram(&mut self, now: Instant, buf: &mut [u8], len: usize) {
        self.handle_datagram_arrived(now, now, buf, len);
    }

    /// [`Self::handle_datagram`] for a datagram handled at `now` that
    /// arrived at `arrived`.
    pub fn handle_datagram_arrived(
        &mut self,
        now: Instant,
        arrived: Instant,
        buf: &mut [u8],
        len: usize,
    ) {
        let Some(datagram) = buf.get(..len) else {
            return;
        };
        if is_rtcp(datagram) {
            let Ok(len) = self.from_relay.unprotect_rtcp(buf, len) else {
                return;
            };
            self.hear(now);
            if let Some(compound) = buf.get(..len) {
                self.handle_rtcp(now, compound);
            }
            return;
        }
        let Ok(len) = self.from_relay.unprotect_rtp(buf, len) else {
            return;
        };
        self.hear(now);
        let Some(Ok(packet)) = buf.get(..len).map(RtpPacket::parse) else {
            return;
        };
        let header = packet.header();
        if header.ssrc() != self.source {
            return;
        }
        let result = self.rendition.handle_rtp_arrived(
            now,
            arrived,
            header.sequence(),
            header.timestamp(),
            header.marker(),
            packet.payload(),
        );
        if let Err(e) = result {
            tracing::warn!(transcode = self.id, "rendition failed: {e}");
        }
    }

    fn handle_rtcp(&mut self, now: Instant, compound: &[u8]) {
        let mut remb_changed = false;
        for packet in RtcpCompound::new(compound) {
            match packet {
                Ok(RtcpPacket::Pli(pli)) if pli.media_ssrc() == self.ssrc => {
                    self.rendition.handle_keyframe_request(now);
                }
                Ok(RtcpPacket::Fir(fir)) if fir.entries().any(|e| e.ssrc == self.ssrc) => {
                    self.rendition.handle_keyframe_request(now);
                }
                Ok(RtcpPacket::Remb(remb)) if remb.ssrcs().any(|s| s == self.ssrc) => {
                    let sender = remb.sender_ssrc().0;
                    self.rembs.retain(|(s, _, _)| *s != sender);
                    // A few receivers per rendition; bounded all the same.
                    if self.rembs.len() < 64 {
                        self.rembs.push((sender, remb.bitrate_bps(), now));
                    }
                    remb_changed = true;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if remb_changed {
            self.rembs
                .retain(|(_, _, at)| now.duration_since(*at) < REMB_TTL);
            if let Some(min) = self.rembs.iter().map(|(_, bps, _)| *bps).min() {
                self.rendition.handle_remb(min);
            }
        }
    }

    /// The relay sent something that authenticated: the leg is latched,
    /// and reports go back to their normal interval.
    fn hear(&mut self, now: Instant) {
        if !self.heard {
            self.heard = true;
            self.next_report = Some(now + REPORT_INTERVAL);
        }
    }

    /// When the report after one sent at `now` is due.
    fn report_due(&mut self, now: Instant) -> Instant {
        if self.heard {
            return now + REPORT_INTERVAL;
        }
        let wait = self.latch_retry;
        self.latch_retry = (wait * 2).min(REPORT_INTERVAL);
        now + wait
    }

    fn send_report(&mut self, now: Instant) {
        self.next_report = Some(self.report_due(now));
        let report = ReceiverReportBuilder {
            ssrc: self.rtcp_ssrc,
            report_blocks: &[],
        };
        if let Ok(len) = report.write(&mut self.out) {
            self.send_rtcp(len);
        }
    }

    fn send_rtcp(&mut self, len: usize) {
        if let Ok(len) = self.to_relay.protect_rtcp(&mut self.out, len)
            && let Some(datagram) = self.out.get(..len)
        {
            let _ = self.socket.send(datagram);
        }
    }

    /// Sends everything the rendition has for the relay, and counts.
    fn flush(&mut self, counters: &TranscodeCounters) {
        self.send_output();
        let stats = self.rendition.stats();
        counters.add(&self.reported, &stats);
        self.reported = stats;
    }

    /// Sends everything the rendition has for the relay, a frame's
    /// packets together (`net::burst`): they wake the relay's worker once,
    /// not once each.
    fn send_output(&mut self) {
        let Self {
            rendition,
            burst,
            socket,
            to_relay,
            ssrc,
            rtcp_ssrc,
            source,
            spec,
            ..
        } = self;
        while let Some(output) = rendition.poll_output() {
            if burst.is_full() {
                burst.flush(socket);
            }
            let out = burst.next_slot();
            let len = match output {
                RenditionOutput::Rtp(p) => {
                    let builder = RtpBuilder::new(spec.payload_type, p.seq, p.timestamp, *ssrc)
                        .marker(p.marker);
                    match builder.write(p.payload, out) {
                        Ok(len) => to_relay.protect_rtp(out, len),
                        Err(_) => continue,
                    }
                }
                RenditionOutput::RequestKeyframe => {
                    let pli = PliBuilder {
                        sender_ssrc: *rtcp_ssrc,
                        media_ssrc: *source,
                    };
                    match pli.write(out) {
                        Ok(len) => to_relay.protect_rtcp(out, len),
                        Err(_) => continue,
                    }
                }
                RenditionOutput::Nack(lost) if !lost.is_empty() => {
                    let nack = NackBuilder {
                        sender_ssrc: *rtcp_ssrc,
                        media_ssrc: *source,
                        lost,
                    };
                    match nack.write(out) {
                        Ok(len) => to_relay.protect_rtcp(out, len),
                        Err(_) => continue,
                    }
                }
                RenditionOutput::Nack(_) => continue,
            };
            if let Ok(len) = len {
                burst.push(len);
            }
        }
        burst.flush(socket);
    }
}

/// Datagrams written for the relay and not yet sent: up to
/// [`SEND_BURST`] slots of [`SLOT`] bytes, allocated once per leg.
#[derive(Debug)]
struct Burst {
    slots: Vec<u8>,
    lens: ArrayVec<usize, SEND_BURST>,
    /// Whether the kernel takes GSO sends (until one is refused).
    gso: bool,
}

impl Burst {
    fn new() -> Self {
        Self {
            slots: vec![0; SEND_BURST * SLOT],
            lens: ArrayVec::new(),
            gso: true,
        }
    }

    fn is_full(&self) -> bool {
        self.lens.is_full()
    }

    /// The slot the next datagram is written into (the last one again
    /// while the burst is full: flush first).
    fn next_slot(&mut self) -> &mut [u8] {
        let at = self.lens.len().min(SEND_BURST - 1) * SLOT;
        &mut self.slots[at..at + SLOT]
    }

    /// The next slot now holds a datagram of `len` bytes.
    fn push(&mut self, len: usize) {
        let _ = self.lens.try_push(len.min(SLOT));
    }

    /// Sends the burst, in order (`net::burst`: runs of equal size as
    /// one GSO send). What the kernel does not take (a full send buffer)
    /// is lost like any packet on the way.
    fn flush(&mut self, socket: &UdpSocket) {
        let mut datagrams = ArrayVec::<&[u8], SEND_BURST>::new();
        for (slot, &len) in self.slots.chunks_exact(SLOT).zip(&self.lens) {
            datagrams.push(&slot[..len]);
        }
        send_connected(socket, &datagrams, &mut self.gso);
        self.lens.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rtp::PayloadType;
    use crate::srtp::SrtpProfile;

    fn key(fill: u8) -> MasterKey {
        let profile = SrtpProfile::AeadAes256Gcm;
        MasterKey::new(profile, &vec![fill; profile.key_material_len()])
            .expect("a key of its length")
    }

    /// A VP8 → VP8 360p job whose relay is `relay` (also the service's
    /// tests' job).
    pub(crate) fn vp8_job(id: u64, relay: &std::net::UdpSocket) -> TranscodeJob {
        TranscodeJob {
            id,
            source_ssrc: 0x1111,
            source_codec: VideoCodec::Vp8,
            rendition_ssrc: 0x2222,
            rtcp_ssrc: 0x3333,
            spec: RenditionSpec {
                codec: VideoCodec::Vp8,
                payload_type: PayloadType::new(100).unwrap(),
                max_height: Some(360),
                max_kbps: 500,
            },
            encoder: EncoderKind::Libvpx,
            client_to_relay: key(1),
            relay_to_client: key(2),
            relay: relay.local_addr().unwrap(),
        }
    }

    /// A leg of job `id` opened toward a fresh relay socket (connected to
    /// the leg, non-blocking), not started.
    fn leg_with_relay(id: u64) -> (UdpSocket, TranscodeJob, TranscodeCounters, TranscoderLeg) {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let job = vp8_job(id, &relay);
        let leg = TranscoderLeg::open(&job, BackendKind::Ring).unwrap();
        relay.connect(leg.socket().local_addr().unwrap()).unwrap();
        relay.set_nonblocking(true).unwrap();
        (relay, job, TranscodeCounters::default(), leg)
    }

    /// Counts the datagrams waiting on `relay` (non-blocking).
    fn reports(relay: &UdpSocket) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while relay.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_datagram_that_waited_in_the_socket_is_read_with_its_age() {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let job = vp8_job(2, &relay);
        let leg = TranscoderLeg::open(&job, BackendKind::Ring).unwrap();
        // The first socket on a box to ask for receive timestamps turns the
        // kernel's arrival stamping on through deferred work
        // (`net_enable_timestamp`); a datagram that arrives before it is
        // stamped when it is read, with an age of microseconds. Let the
        // kernel catch up before the datagram that must wait (in the
        // daemon, only the first datagrams after the box's first leg opens
        // can read as fresh: a latency figure a little low, once).
        std::thread::sleep(Duration::from_millis(50));
        relay
            .send_to(b"waiting", leg.socket().local_addr().unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let (len, age) = leg.recv(&mut buf, &mut space).expect("the datagram");
        assert_eq!(&buf[..len], b"waiting");
        // The kernel's receive timestamp: it waited at least the sleep (a
        // loaded box may add, never take away).
        assert!(age >= Duration::from_millis(50), "{age:?}");
        assert!(leg.recv(&mut buf, &mut space).is_none(), "nothing more");
    }

    #[test]
    fn the_latching_report_is_retried_until_the_relay_answers() {
        let (relay, job, counters, mut leg) = leg_with_relay(1);
        let t0 = Instant::now();
        leg.start(t0, &counters);
        let settle = || std::thread::sleep(Duration::from_millis(20));
        settle();
        // The report at start, and nothing else (the key frame request
        // waits for the source: `the_key_frame_request_goes_with_...`).
        assert_eq!(reports(&relay), 1, "the first report went out");
        // Nothing heard: retries after 20, 40, 80, 160 ms (cumulative 20,
        // 60, 140, 300), each one report.
        let mut at = t0;
        for wait in [20, 40, 80, 160] {
            at += Duration::from_millis(wait);
            assert_eq!(
                leg.poll_timeout(),
                Some(at),
                "retry {wait} ms after the last"
            );
            leg.handle_timeout(at, &counters);
            settle();
            assert_eq!(reports(&relay), 1, "one report at the {wait} ms retry");
        }
        // The relay answers (an SRTCP receiver report under the leg's
        // relay → client key): back to one report a second.
        let mut to_leg =
            SrtpSession::new(AnyGcm::new(BackendKind::Ring), &job.relay_to_client).unwrap();
        let mut buf = [0u8; MAX_DATAGRAM + SRTP_ROOM];
        let len = ReceiverReportBuilder {
            ssrc: Ssrc(0x4444),
            report_blocks: &[],
        }
        .write(&mut buf)
        .unwrap();
        let len = to_leg.protect_rtcp(&mut buf, len).unwrap();
        relay.send(&buf[..len]).unwrap();
        settle();
        let heard_at = at + Duration::from_millis(5);
        leg.drain_socket(|| heard_at, &counters);
        assert_eq!(leg.poll_timeout(), Some(heard_at + REPORT_INTERVAL));
    }

    /// What the relay got from the leg: (receiver reports, PLIs asking the
    /// source's publisher for a key frame).
    fn rtcp_from_leg(relay: &UdpSocket, from_leg: &mut SrtpSession<AnyGcm>) -> (usize, usize) {
        let mut buf = [0u8; 2048];
        let (mut reports, mut plis) = (0, 0);
        while let Ok(n) = relay.recv(&mut buf) {
            let len = from_leg
                .unprotect_rtcp(&mut buf, n)
                .expect("SRTCP from the leg");
            for packet in RtcpCompound::new(&buf[..len]) {
                match packet.expect("RTCP the leg wrote") {
                    RtcpPacket::ReceiverReport(_) => reports += 1,
                    RtcpPacket::Pli(pli) => {
                        assert_eq!(
                            (pli.sender_ssrc(), pli.media_ssrc()),
                            (Ssrc(0x3333), Ssrc(0x1111))
                        );
                        plis += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        (reports, plis)
    }

    /// The start's key frame request goes with the source's first packet,
    /// not with the latching report: at the start the relay's workers may
    /// not hold the leg yet and drop what it sends (the report is retried
    /// for that), while the source arriving shows they route to it. One
    /// request, however many packets follow.
    #[test]
    fn the_key_frame_request_goes_with_the_sources_first_packet() {
        let (relay, job, counters, mut leg) = leg_with_relay(3);
        let settle = || std::thread::sleep(Duration::from_millis(20));
        let mut from_leg =
            SrtpSession::new(AnyGcm::new(BackendKind::Ring), &job.client_to_relay).unwrap();
        let t0 = Instant::now();
        leg.start(t0, &counters);
        settle();
        assert_eq!(
            rtcp_from_leg(&relay, &mut from_leg),
            (1, 0),
            "a report, no PLI"
        );
        let at = t0 + Duration::from_millis(20);
        leg.handle_timeout(at, &counters);
        settle();
        assert_eq!(
            rtcp_from_leg(&relay, &mut from_leg),
            (1, 0),
            "the retry, no PLI"
        );

        // The source's first packets: the start of a VP8 key frame, no
        // marker (the frame stays open in the jitter buffer).
        let mut to_leg =
            SrtpSession::new(AnyGcm::new(BackendKind::Ring), &job.relay_to_client).unwrap();
        let pt = PayloadType::new(100).unwrap();
        let payload = [
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ];
        for seq in 0..3u16 {
            let mut buf = [0u8; MAX_DATAGRAM + SRTP_ROOM];
            let len = RtpBuilder::new(pt, SeqNum(seq), 9000, Ssrc(0x1111))
                .write(&payload, &mut buf)
                .unwrap();
            let len = to_leg.protect_rtp(&mut buf, len).unwrap();
            relay.send(&buf[..len]).unwrap();
        }
        settle();
        leg.drain_socket(|| at + Duration::from_millis(5), &counters);
        settle();
        assert_eq!(
            rtcp_from_leg(&relay, &mut from_leg),
            (0, 1),
            "one PLI, with the first packet"
        );
        assert_eq!(leg.rendition.stats().upstream_keyframe_requests, 1);
    }

    #[test]
    fn a_burst_longer_than_one_call_arrives_whole_and_in_order() {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        relay
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(relay.local_addr().unwrap()).unwrap();
        let mut burst = Burst::new();
        let total = SEND_BURST + 6;
        for i in 0..total {
            if burst.is_full() {
                burst.flush(&socket);
            }
            let slot = burst.next_slot();
            slot[..2].copy_from_slice(&(i as u16).to_be_bytes());
            burst.push(2 + i % 7);
        }
        burst.flush(&socket);
        let mut buf = [0u8; 64];
        for i in 0..total {
            let n = relay.recv(&mut buf).unwrap();
            assert_eq!(n, 2 + i % 7);
            assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), i as u16);
        }
    }

    /// A frame that a datagram completes leaves before the next datagram
    /// waiting in the socket is handled: a leg behind by a few frames does
    /// not hold the first one's packets while it codes the others (with
    /// the sends at the end of the drain, a saturated core made VP8
    /// renditions late where the ffmpeg CLI kept up: bench/README.md).
    #[test]
    fn a_completed_frame_leaves_before_the_next_datagram_is_handled() {
        use std::cell::Cell;

        use crate::transcode::rendition::tests::Publisher;

        let (relay, job, counters, mut leg) = leg_with_relay(4);
        let t0 = Instant::now();
        leg.start(t0, &counters);
        std::thread::sleep(Duration::from_millis(20));
        reports(&relay);

        // Three frames of a VP8 source, all waiting in the leg's socket.
        let mut publisher = Publisher::new(EncoderKind::Libvpx, 320, 240, (320, 180));
        let mut to_leg =
            SrtpSession::new(AnyGcm::new(BackendKind::Ring), &job.relay_to_client).unwrap();
        let pt = PayloadType::new(100).unwrap();
        let mut datagrams = 0;
        for k in 0..3 {
            for p in publisher.next(k == 0) {
                let mut buf = [0u8; MAX_DATAGRAM + SRTP_ROOM];
                let len = RtpBuilder::new(pt, p.seq, p.ts, Ssrc(0x1111))
                    .marker(p.marker)
                    .write(&p.payload, &mut buf)
                    .unwrap();
                let len = to_leg.protect_rtp(&mut buf, len).unwrap();
                relay.send(&buf[..len]).unwrap();
                datagrams += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));

        // The clock is read as each datagram is taken up: it counts the
        // rendition's packets that had reached the relay by then.
        let rtp_seen = Cell::new(0usize);
        let seen_at = std::cell::RefCell::new(Vec::new());
        let clock = || {
            let mut buf = [0u8; 2048];
            while let Ok(n) = relay.recv(&mut buf) {
                if !is_rtcp(&buf[..n]) {
                    rtp_seen.set(rtp_seen.get() + 1);
                }
            }
            seen_at.borrow_mut().push(rtp_seen.get());
            t0 + Duration::from_millis(30)
        };
        leg.drain_socket(clock, &counters);
        let seen_at = seen_at.into_inner();
        assert_eq!(
            seen_at.len(),
            datagrams,
            "every datagram handled in one drain"
        );
        assert_eq!(seen_at[0], 0);
        // The first frame is complete (and coded) at the latest when the
        // third one begins: its packets have left before the drain ends.
        let last = *seen_at.last().unwrap();
        assert!(
            last > 0,
            "no rendition packet left during the drain: {seen_at:?}"
        );
        assert!(leg.rendition.stats().frames_out >= 1);
    }
}

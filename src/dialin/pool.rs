//! The media pool: threads that own calls and run their 20 ms clock.
//!
//! Each thread holds its calls' two UDP sockets (the caller's RTP, and the
//! leg towards the relay), drains them without blocking, and ticks every
//! call on an absolute schedule (`start + k × 20 ms`, see `FrameClock`), so
//! the caller's audio never drifts however long the call runs. A tick whose
//! work runs past the next tick's due time counts in
//! `sluice_dialin_late_frames_total`; the overdue ticks then run back to
//! back (at most 60 ms of them: a phone's jitter buffer absorbs that) and
//! slots further behind are dropped and counted, so the schedule stays on
//! its grid. Decoding, mixing and encoding happen here, never on a packet
//! worker.
//!
//! The calls of one meeting on one thread share a [`MeetingMix`] per
//! codec rate (the signalling thread puts a meeting's direct calls on the
//! same thread; a call admitted through the voice menu joins the mixes of
//! the thread it is on) and one [`ReceiveLeg`]: the meeting's streams
//! reach the thread once, through that leg, whose socket the thread opens
//! with the meeting's first call and closes with its last (the desk admits
//! and removes the leg with it). Each call's own leg to the relay only
//! publishes its caller (the relay sends it nothing but RTCP). Each 20 ms
//! the thread first drains every call's sockets, then each meeting's
//! receive leg (every packet decrypted once, pushed into each of the
//! meeting's mixes), then ticks each mix once, then ticks every call. A
//! call's transcode sample (`sluice_dialin_transcode_seconds`) is its own
//! work (uplink, its frame, SRTP) plus an even share of what its meeting
//! cost the thread: the receive leg's time divided by the meeting's calls
//! on the thread, and its mix's tick divided by the calls sharing that
//! mix, so the samples of a tick add up to the thread's media time.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::crypto::AnyGcm;
use crate::media::MeetingMix;
use crate::metrics::{CallOutcome, DialInCounters};
use crate::relay::MediaKind;
use crate::sip::CallId;
use crate::srtp::MasterKey;

use super::call::{Call, CallSettings, MAX_DATAGRAM, TickOut};
use super::receive_leg::ReceiveLeg;
use super::reoffer::MediaUpdate;

/// The media clock: one G.711 frame.
pub(crate) const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// What the signalling thread tells a pool thread.
#[derive(Debug)]
pub(crate) enum PoolCommand {
    /// Take this call.
    Add(Box<CallSlot>),
    /// The caller moved or held its media (re-INVITE).
    Update {
        /// The call.
        id: CallId,
        /// Where to send now: RTP and RTCP.
        remote: std::net::SocketAddr,
        rtcp: std::net::SocketAddr,
        /// Whether the caller holds the call.
        held: bool,
        /// New SDES keys (the caller's, ours), when the re-INVITE changed
        /// them.
        rekey: Option<Box<(MasterKey, MasterKey)>>,
    },
    /// A re-INVITE was answered: what it changed (`reoffer.rs`).
    Reoffer {
        /// The call.
        id: CallId,
        update: Box<MediaUpdate>,
    },
    /// The dialog is over: drop the call.
    End(CallId),
}

/// What a pool thread tells the signalling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolEvent {
    /// The call is done (menu over, no media, removed from its meeting):
    /// send BYE.
    Hangup(CallId),
}

/// A call and its sockets.
#[derive(Debug)]
pub(crate) struct CallSlot {
    pub(crate) id: CallId,
    pub(crate) call: Call,
    /// Bound on the SIP media IP; the port is in our SDP answer.
    pub(crate) caller: UdpSocket,
    /// Connected to the relay's media port.
    pub(crate) meeting: UdpSocket,
    /// The caller's RTCP, when not muxed on `caller` (its port is in the
    /// answer: RTP + 1, or `a=rtcp`).
    pub(crate) caller_rtcp: Option<UdpSocket>,
    pub(crate) asked_hangup: bool,
    pub(crate) counted_outcome: bool,
    /// The meeting (and mix) the call is in on this thread, once bridged.
    joined: Option<Joined>,
}

/// Where a bridged call is on its thread: its meeting, the rate of the
/// mix it hears, and its own SSRC (which that mix leaves out for it).
#[derive(Debug, Clone)]
struct Joined {
    meeting: String,
    rate: u32,
    ssrc: u32,
}

impl CallSlot {
    pub(crate) fn new(
        id: CallId,
        call: Call,
        (caller, caller_rtcp): (UdpSocket, Option<UdpSocket>),
        meeting: UdpSocket,
    ) -> Self {
        Self {
            id,
            call,
            caller,
            caller_rtcp,
            meeting,
            asked_hangup: false,
            counted_outcome: false,
            joined: None,
        }
    }

    /// Joins its meeting's mix (and receive leg) on this thread once the
    /// call is bridged; the first call of a meeting opens them.
    fn attach(&mut self, meetings: &mut Meetings, settings: &CallSettings, now: Instant) {
        if self.joined.is_some() {
            return;
        }
        let Some(leg) = self.call.leg() else { return };
        let rate = self.call.mix_rate();
        let meeting = meetings
            .entry(leg.meeting.clone())
            .or_insert_with(|| MeetingOnThread::new(&self.meeting));
        if meeting.calls == 0 {
            meeting.open_leg(&leg.meeting, settings, now);
        }
        meeting.calls += 1;
        let at = meeting.mix_at(rate);
        meeting.mixes[at].mix.add_caller(leg.ssrc);
        self.joined = Some(Joined {
            meeting: leg.meeting.clone(),
            rate,
            ssrc: leg.ssrc,
        });
    }

    /// A re-INVITE changed the call's mix rate: it moves to its meeting's
    /// mix at the new rate (dropping the old mix with its last call); the
    /// meeting's receive leg stays.
    fn change_mix(&mut self, meetings: &mut Meetings) {
        let rate = self.call.mix_rate();
        let Some(joined) = self.joined.as_mut() else {
            return;
        };
        let Some(meeting) = meetings.get_mut(&joined.meeting) else {
            return;
        };
        if joined.rate == rate {
            return;
        }
        meeting.leave_mix(joined.rate, joined.ssrc);
        let at = meeting.mix_at(rate);
        meeting.mixes[at].mix.add_caller(joined.ssrc);
        joined.rate = rate;
    }

    /// Leaves its meeting's mix, dropping the mix with its last call, and
    /// the meeting's receive leg with the meeting's last call.
    fn detach(&mut self, meetings: &mut Meetings, settings: &CallSettings) {
        let Some(joined) = self.joined.take() else {
            return;
        };
        let Some(meeting) = meetings.get_mut(&joined.meeting) else {
            return;
        };
        meeting.leave_mix(joined.rate, joined.ssrc);
        meeting.calls = meeting.calls.saturating_sub(1);
        if meeting.calls == 0
            && let Some(mut gone) = meetings.remove(&joined.meeting)
        {
            gone.close_leg(settings);
        }
    }

    fn shared_mix<'m>(&self, meetings: &'m mut Meetings) -> Option<&'m mut SharedMix> {
        let joined = self.joined.as_ref()?;
        meetings
            .get_mut(&joined.meeting)?
            .mixes
            .iter_mut()
            .find(|m| m.rate == joined.rate)
    }

    /// Counts the call's outcome once, as soon as it is known.
    fn count_outcome(&mut self, counters: &DialInCounters, fallback: Option<CallOutcome>) {
        if self.counted_outcome {
            return;
        }
        if let Some(outcome) = self.call.outcome().or(fallback) {
            counters.outcome(outcome);
            self.counted_outcome = true;
        }
    }

    /// Leaves the meeting and settles the counters; the slot is then dropped.
    pub(crate) fn close(mut self, settings: &CallSettings) {
        let q = self.call.quality();
        tracing::info!(
            lost = q.lost,
            jitter_ms = q.jitter_ms,
            remote_lost = q.remote_lost,
            remote_jitter_ms = q.remote_jitter_ms,
            rtt_ms = q.rtt.map(|d| d.as_secs_f64() * 1000.0),
            reports_sent = q.reports_sent,
            reports_received = q.reports_received,
            "dial-in call ended: RTCP quality"
        );
        if let Some(leg) = self.call.leg() {
            settings.desk.leave(leg);
        }
        self.count_outcome(&settings.counters, Some(CallOutcome::Failed));
        settings.counters.call_ended();
    }

    /// [`Self::close`] for a call that never got answered (cancelled, or
    /// the node shutting down while it rang): it failed, whatever the
    /// admission said.
    pub(crate) fn abandon(mut self, settings: &CallSettings) {
        self.counted_outcome = self.counted_outcome || {
            settings.counters.outcome(CallOutcome::Failed);
            true
        };
        self.close(settings);
    }
}

/// A meeting's mix at one rate on one thread, and what the last 20 ms of
/// it cost each call that hears it.
#[derive(Debug)]
struct SharedMix {
    rate: u32,
    mix: MeetingMix,
    share_ns: u64,
}

/// A meeting's calls on one thread: the receive leg they hear the meeting
/// through, and their mixes (one per codec rate: 8 kHz for G.711, 16 kHz
/// for G.722, 48 kHz for Opus, so a wideband caller never hears the
/// meeting through 8 kHz).
#[derive(Debug)]
struct MeetingOnThread {
    /// `None` while the desk has not admitted the leg (retried every
    /// second: the meeting may be gone, and its calls with it).
    receiving: Option<Receiving>,
    /// When to ask the desk again for a leg it did not admit, or whether
    /// the leg it admitted is still in its meeting.
    retry_at: Option<Instant>,
    /// Where the leg's socket binds (the calls' local address, any port)
    /// and what it connects to (the relay's media port), as the first
    /// call's leg does.
    addresses: std::io::Result<(SocketAddr, SocketAddr)>,
    mixes: Vec<SharedMix>,
    /// The bridged calls of the meeting on this thread.
    calls: usize,
}

/// A receive leg and its socket, connected to the relay's media port.
#[derive(Debug)]
struct Receiving {
    leg: ReceiveLeg,
    socket: UdpSocket,
}

/// How often a receive leg the desk did not admit is asked for again.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);
/// The most datagrams a receive leg reads per tick: every stream of its
/// meeting, video included (dropped unread), arrives on it.
const RECEIVE_BURST: usize = 256;

impl MeetingOnThread {
    /// A meeting whose first call's leg is `beside`.
    fn new(beside: &UdpSocket) -> Self {
        let addresses = (|| {
            let local = SocketAddr::new(beside.local_addr()?.ip(), 0);
            Ok((local, beside.peer_addr()?))
        })();
        Self {
            receiving: None,
            retry_at: None,
            addresses,
            mixes: Vec::new(),
            calls: 0,
        }
    }

    /// Takes the caller `ssrc` out of the meeting's mix at `rate`, and
    /// drops that mix with its last caller.
    fn leave_mix(&mut self, rate: u32, ssrc: u32) {
        if let Some(at) = self.mixes.iter().position(|m| m.rate == rate) {
            let shared = &mut self.mixes[at].mix;
            shared.remove_caller(ssrc);
            if shared.caller_count() == 0 {
                self.mixes.swap_remove(at);
            }
        }
    }

    /// The index of the meeting's mix at `rate`, made if there is none.
    fn mix_at(&mut self, rate: u32) -> usize {
        if let Some(at) = self.mixes.iter().position(|m| m.rate == rate) {
            return at;
        }
        self.mixes.push(SharedMix {
            rate,
            mix: MeetingMix::with_rate(rate),
            share_ns: 0,
        });
        self.mixes.len() - 1
    }

    /// Admits the meeting's receive leg and opens its socket.
    fn open_leg(&mut self, meeting: &str, settings: &CallSettings, now: Instant) {
        self.retry_at = Some(now + RECEIVE_RETRY);
        let seat = match settings.desk.admit_mixer(meeting) {
            Ok(seat) => seat,
            Err(e) => {
                tracing::warn!("dial-in receive leg not admitted: {}", e.message());
                return;
            }
        };
        let opened = (|| {
            let leg = ReceiveLeg::new(
                seat.clone(),
                &AnyGcm::new(settings.backend),
                settings.audio_level_extension,
            )
            .map_err(std::io::Error::other)?;
            let (local, relay) = match &self.addresses {
                Ok(addresses) => *addresses,
                Err(e) => return Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(relay)?;
            socket.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(Receiving { leg, socket })
        })();
        match opened {
            Ok(receiving) => {
                settings.counters.mixer_leg_opened();
                self.receiving = Some(receiving);
            }
            Err(e) => {
                tracing::warn!("dial-in receive leg failed to open: {e}");
                settings.desk.leave_mixer(&seat);
            }
        }
    }

    /// Leaves the meeting: the desk removes the receive leg.
    fn close_leg(&mut self, settings: &CallSettings) {
        if let Some(receiving) = self.receiving.take() {
            settings.desk.leave_mixer(receiving.leg.seat());
            settings.counters.mixer_leg_closed();
        }
    }

    /// The receive leg's share of a tick: what the relay sent since the
    /// last, decrypted once and pushed into every mix; its report when
    /// due; the leg asked for again when it could not be had.
    fn receive(
        &mut self,
        meeting: &str,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        settings: &CallSettings,
    ) {
        if self.retry_at.is_none_or(|at| now >= at) {
            // A meeting deleted and made again under its id has lost the
            // leg: its new calls would hear nothing through it.
            if let Some(receiving) = &self.receiving
                && !settings.desk.has_mixer(receiving.leg.seat())
            {
                tracing::info!("dial-in receive leg gone from its meeting: admitting another");
                self.close_leg(settings);
            }
            match self.receiving {
                None => self.open_leg(meeting, settings, now),
                Some(_) => self.retry_at = Some(now + RECEIVE_RETRY),
            }
        }
        let Some(Receiving { leg, socket }) = &mut self.receiving else {
            return;
        };
        let mixes = &mut self.mixes;
        let desk = &settings.desk;
        drain(socket, buf, RECEIVE_BURST, |_, buf, len| {
            let is_audio = |ssrc| desk.stream_kind(ssrc) == Some(MediaKind::Audio);
            if let Some(heard) = leg.handle_datagram(buf, len, is_audio) {
                for shared in mixes.iter_mut() {
                    shared
                        .mix
                        .push(heard.ssrc, heard.seq, heard.payload, heard.level);
                }
            }
        });
        if let Some(len) = leg.poll_report(now, buf) {
            // A lost report is followed by the next, a second later.
            let _ = socket.send(&buf[..len]);
        }
    }
}

/// Meeting id → its calls on this thread.
type Meetings = HashMap<String, MeetingOnThread>;

/// A running pool thread.
#[derive(Debug)]
pub(crate) struct PoolThread {
    pub(crate) commands: Sender<PoolCommand>,
    pub(crate) thread: JoinHandle<()>,
}

impl PoolThread {
    /// Starts thread `n`; it ends when `commands`' sender is dropped.
    pub(crate) fn start(
        n: usize,
        settings: Arc<CallSettings>,
        events: Sender<PoolEvent>,
    ) -> std::io::Result<Self> {
        let (commands, inbox) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-media-{n}"))
            .spawn(move || run(&inbox, &events, &settings))?;
        Ok(Self { commands, thread })
    }
}

fn run(inbox: &Receiver<PoolCommand>, events: &Sender<PoolEvent>, settings: &CallSettings) {
    let mut slots: Vec<CallSlot> = Vec::new();
    let mut meetings = Meetings::new();
    let mut out = Box::<TickOut>::default();
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut clock = FrameClock::new(Instant::now());
    loop {
        loop {
            match inbox.try_recv() {
                Ok(PoolCommand::Add(slot)) => slots.push(*slot),
                Ok(PoolCommand::Update {
                    id,
                    remote,
                    rtcp,
                    held,
                    rekey,
                }) => {
                    if let Some(slot) = slots.iter_mut().find(|s| s.id == id) {
                        slot.call
                            .update_caller((remote, rtcp), held, Instant::now());
                        if let Some(keys) = rekey
                            && let Err(e) = slot.call.rekey(&keys.0, &keys.1)
                        {
                            tracing::warn!("dial-in re-key failed: {e}");
                        }
                    }
                }
                Ok(PoolCommand::Reoffer { id, update }) => {
                    if let Some(slot) = slots.iter_mut().find(|s| s.id == id)
                        && slot.reoffer(*update, Instant::now())
                    {
                        // A new codec rate: the call moves to its
                        // meeting's mix at that rate.
                        slot.change_mix(&mut meetings);
                    }
                }
                Ok(PoolCommand::End(id)) => {
                    if let Some(at) = slots.iter().position(|s| s.id == id) {
                        let mut slot = slots.swap_remove(at);
                        slot.detach(&mut meetings, settings);
                        slot.close(settings);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    for mut slot in slots.drain(..) {
                        slot.detach(&mut meetings, settings);
                        slot.close(settings);
                    }
                    return;
                }
            }
        }
        let now = Instant::now();
        for slot in &mut slots {
            drain(&slot.caller, &mut buf, DRAIN_BURST, |from, buf, len| {
                slot.call.on_caller_datagram(now, from, buf, len);
            });
            if let Some(rtcp) = &slot.caller_rtcp {
                drain(rtcp, &mut buf, DRAIN_BURST, |_, buf, len| {
                    slot.call.on_caller_rtcp(now, buf, len);
                });
            }
            // A menu digit may just have admitted the call.
            slot.attach(&mut meetings, settings, now);
            // The call's own leg only publishes: what comes back on it is
            // RTCP about its stream, not needed here.
            drain(&slot.meeting, &mut buf, DRAIN_BURST, |_, _, _| {});
        }
        for (id, meeting) in &mut meetings {
            let started = Instant::now();
            meeting.receive(id, now, &mut buf, settings);
            let received = elapsed_ns(started) / meeting.calls.max(1) as u64;
            for shared in &mut meeting.mixes {
                let started = Instant::now();
                if let Err(e) = shared.mix.tick() {
                    tracing::debug!("dial-in meeting mix failed for a frame: {e}");
                }
                // Every mix has a call: it is dropped with its last.
                let calls = shared.mix.caller_count().max(1) as u64;
                shared.share_ns = received.saturating_add(elapsed_ns(started) / calls);
            }
        }
        for slot in &mut slots {
            let mix = slot
                .shared_mix(&mut meetings)
                .map(|s| (&mut s.mix, s.share_ns));
            slot.call.tick(now, &mut out, mix);
            if let Some((to, len)) = out.caller {
                // A lost datagram is what UDP does; the next frame follows.
                let _ = slot.caller.send_to(&out.caller_buf[..len], to);
            }
            if let Some(len) = out.meeting {
                let _ = slot.meeting.send(&out.meeting_buf[..len]);
            }
            if let Some((to, len)) = out.rtcp {
                let socket = slot.caller_rtcp.as_ref().unwrap_or(&slot.caller);
                let _ = socket.send_to(&out.rtcp_buf[..len], to);
            }
            slot.count_outcome(&settings.counters, None);
            if slot.call.wants_hangup() && !slot.asked_hangup {
                slot.asked_hangup = true;
                let _ = events.send(PoolEvent::Hangup(slot.id));
            }
        }
        let now = Instant::now();
        match clock.advance(now) {
            Next::Sleep(until) => std::thread::sleep(until - now),
            Next::Late { dropped } => {
                // This tick's work ran into the next frame's slot.
                settings.counters.late_frame();
                for _ in 0..dropped {
                    settings.counters.late_frame();
                }
            }
        }
    }
}

/// How many frames a late pool may run back to back to catch up (60 ms:
/// what a phone's jitter buffer absorbs); slots further behind are dropped.
const CATCH_UP_FRAMES: u32 = 3;

/// What to do after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The next tick is due at this instant.
    Sleep(Instant),
    /// The next tick is already due: run it now. `dropped` slots were so
    /// far behind that they are skipped (the media clock loses them).
    Late { dropped: u32 },
}

/// The media pool's 20 ms schedule: tick `k` is due at `start + k × 20 ms`
/// exactly, so no rounding or sleep overshoot accumulates over a call, and
/// a late tick is followed at once by the next (up to
/// [`CATCH_UP_FRAMES`] behind) instead of shifting every later one.
#[derive(Debug, Clone, Copy)]
struct FrameClock {
    start: Instant,
    ticks: u32,
}

impl FrameClock {
    fn new(start: Instant) -> Self {
        Self { start, ticks: 0 }
    }

    /// When tick `k` is due.
    fn due(&self, k: u32) -> Instant {
        self.start + FRAME_PERIOD * k
    }

    /// A tick has run; `now` is when it finished.
    fn advance(&mut self, now: Instant) -> Next {
        self.ticks += 1;
        let due = self.due(self.ticks);
        if due >= now {
            return Next::Sleep(due);
        }
        let behind = u32::try_from(now.duration_since(due).as_nanos() / FRAME_PERIOD.as_nanos())
            .unwrap_or(u32::MAX);
        let dropped = behind.saturating_sub(CATCH_UP_FRAMES);
        self.ticks = self.ticks.saturating_add(dropped);
        Next::Late { dropped }
    }
}

/// The most datagrams a call's socket is read for per tick.
const DRAIN_BURST: usize = 64;

/// Nanoseconds since `started`.
fn elapsed_ns(started: Instant) -> u64 {
    started.elapsed().as_nanos().try_into().unwrap_or(u64::MAX)
}

/// Reads every datagram waiting on a non-blocking socket, at most `burst`.
fn drain(
    socket: &UdpSocket,
    buf: &mut [u8; MAX_DATAGRAM],
    burst: usize,
    mut on: impl FnMut(SocketAddr, &mut [u8], usize),
) {
    // Bounded: a flood cannot starve the other calls of their tick.
    for _ in 0..burst {
        match socket.recv_from(buf) {
            Ok((len, from)) => on(from, buf, len),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // ICMP errors surface here (the peer's port is closed): ignore.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_minutes_of_ticks_end_exactly_on_the_grid() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        let mut now = start;
        let mut sleeps = 0u32;
        // 30 000 ticks of 1.37 ms work each: every one sleeps to its slot.
        for _ in 0..30_000 {
            now += Duration::from_micros(1370);
            match clock.advance(now) {
                Next::Sleep(until) => {
                    now = until;
                    sleeps += 1;
                }
                Next::Late { .. } => panic!("1.37 ms of work is never late"),
            }
        }
        assert_eq!(sleeps, 30_000);
        // Ten minutes, to the nanosecond: no drift, however long the call.
        assert_eq!(now - start, Duration::from_secs(600));
    }

    #[test]
    fn a_stall_is_caught_up_without_shifting_the_grid() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        // Tick 0 takes 50 ms: ticks 1 and 2 are overdue, run back to back.
        let mut now = start + Duration::from_millis(50);
        assert_eq!(clock.advance(now), Next::Late { dropped: 0 });
        now += Duration::from_micros(100);
        assert_eq!(clock.advance(now), Next::Late { dropped: 0 });
        now += Duration::from_micros(100);
        // Caught up: tick 3 is due at exactly 60 ms, on the original grid.
        assert_eq!(
            clock.advance(now),
            Next::Sleep(start + Duration::from_millis(60))
        );
    }

    #[test]
    fn a_long_stall_drops_what_it_cannot_catch_up() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start);
        // A 1 s stall: 50 slots gone; 3 are run late, the rest dropped.
        let now = start + Duration::from_millis(1000);
        let Next::Late { dropped } = clock.advance(now) else {
            panic!("a 1 s tick is late");
        };
        assert_eq!(dropped, 49 - CATCH_UP_FRAMES);
        // Still on the grid afterwards.
        let mut later = now;
        for _ in 0..CATCH_UP_FRAMES {
            later += Duration::from_micros(10);
            assert!(matches!(clock.advance(later), Next::Late { dropped: 0 }));
        }
        assert_eq!(
            clock.advance(later),
            Next::Sleep(start + Duration::from_millis(1020))
        );
    }
}

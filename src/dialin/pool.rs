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
//! The calls of one meeting on one thread share a [`MeetingMix`] (the
//! signalling thread puts a meeting's direct calls on the same thread;
//! a call admitted through the voice menu joins the mix of the thread it
//! is on). Each 20 ms the thread first drains every call's sockets (the
//! meeting packets go into the calls' mixes), then ticks each mix once,
//! then ticks every call. A call's transcode sample
//! (`sluice_dialin_transcode_seconds`) is its own work (uplink, its G.711
//! frame, SRTP) plus an even share of its meeting mix's tick: the mix's
//! time divided by the calls sharing it, so the samples of a tick add up
//! to the thread's transcoding time.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::media::MeetingMix;
use crate::metrics::{CallOutcome, DialInCounters};
use crate::sip::CallId;
use crate::srtp::MasterKey;

use super::call::{Call, CallSettings, MAX_DATAGRAM, TickOut};
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
    /// The mix the call shares (its meeting's at its codec's rate), and
    /// the call's own SSRC in it, once the call is bridged.
    mix: Option<(MixKey, u32)>,
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
            mix: None,
        }
    }

    /// Joins the mix of the call's meeting once the call is bridged.
    fn attach(&mut self, mixes: &mut Mixes) {
        if self.mix.is_some() {
            return;
        }
        let Some(leg) = self.call.leg() else { return };
        let rate = self.call.mix_rate();
        let key = (leg.meeting.clone(), rate);
        mixes
            .entry(key.clone())
            .or_insert_with(|| SharedMix {
                mix: MeetingMix::with_rate(rate),
                share_ns: 0,
            })
            .mix
            .add_caller(leg.ssrc);
        self.mix = Some((key, leg.ssrc));
    }

    /// Leaves the meeting's mix, dropping it with its last call.
    fn detach(&mut self, mixes: &mut Mixes) {
        let Some((meeting, ssrc)) = self.mix.take() else {
            return;
        };
        if let Some(shared) = mixes.get_mut(&meeting) {
            shared.mix.remove_caller(ssrc);
            if shared.mix.caller_count() == 0 {
                mixes.remove(&meeting);
            }
        }
    }

    fn shared_mix<'m>(&self, mixes: &'m mut Mixes) -> Option<&'m mut SharedMix> {
        let (meeting, _) = self.mix.as_ref()?;
        mixes.get_mut(meeting)
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

/// A meeting's mix on one thread, and what its last tick cost each call.
#[derive(Debug)]
struct SharedMix {
    mix: MeetingMix,
    share_ns: u64,
}

/// A meeting and a mixing rate: the calls of one meeting share a mix per
/// codec rate (8 kHz for G.711, 16 kHz for G.722, 48 kHz for Opus), so a
/// wideband caller never hears the meeting through 8 kHz.
type MixKey = (String, u32);

/// (meeting id, rate) → the mix its calls on this thread share.
type Mixes = HashMap<MixKey, SharedMix>;

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
    let mut mixes = Mixes::new();
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
                        // A new codec rate: the next turn attaches the
                        // call to its meeting's mix at that rate.
                        slot.detach(&mut mixes);
                    }
                }
                Ok(PoolCommand::End(id)) => {
                    if let Some(at) = slots.iter().position(|s| s.id == id) {
                        let mut slot = slots.swap_remove(at);
                        slot.detach(&mut mixes);
                        slot.close(settings);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    for mut slot in slots.drain(..) {
                        slot.detach(&mut mixes);
                        slot.close(settings);
                    }
                    return;
                }
            }
        }
        let now = Instant::now();
        for slot in &mut slots {
            drain(&slot.caller, &mut buf, |from, buf, len| {
                slot.call.on_caller_datagram(now, from, buf, len);
            });
            if let Some(rtcp) = &slot.caller_rtcp {
                drain(rtcp, &mut buf, |_, buf, len| {
                    slot.call.on_caller_rtcp(now, buf, len);
                });
            }
            // A menu digit may just have admitted the call.
            slot.attach(&mut mixes);
            let mut mix = slot.shared_mix(&mut mixes).map(|s| &mut s.mix);
            drain(&slot.meeting, &mut buf, |_, buf, len| {
                slot.call.on_meeting_datagram(buf, len, mix.as_deref_mut());
            });
        }
        for shared in mixes.values_mut() {
            let started = Instant::now();
            if let Err(e) = shared.mix.tick() {
                tracing::debug!("dial-in meeting mix failed for a frame: {e}");
            }
            let spent: u64 = started.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
            // Every mix has a call: it is dropped with its last.
            shared.share_ns = spent / shared.mix.caller_count().max(1) as u64;
        }
        for slot in &mut slots {
            let mix = slot
                .shared_mix(&mut mixes)
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

/// Reads every datagram waiting on a non-blocking socket.
fn drain(
    socket: &UdpSocket,
    buf: &mut [u8; MAX_DATAGRAM],
    mut on: impl FnMut(std::net::SocketAddr, &mut [u8], usize),
) {
    // Bounded: a flood cannot starve the other calls of their tick.
    for _ in 0..64 {
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

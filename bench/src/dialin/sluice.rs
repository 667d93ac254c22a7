//! The sluice target: the transcoding work of N dial-in calls on one
//! thread, in real time, as a media pool thread does it.
//!
//! The calls sit in meetings of `callers_per_meeting`, each meeting with
//! three web speakers (Opus with RFC 6464 levels). As in the daemon, each
//! meeting has one [`MeetingMix`] its calls share, and each call one
//! [`CallerUplink`] (silence suppression on, the daemon's default). Every
//! 20 ms, on an absolute schedule (`start + k × 20 ms`, so a late round
//! never shifts the ones after it), every web packet reaches the mix once
//! per call (each call's relay leg delivers its own copy; the mix drops
//! the copies), the mix ticks (the loudest three decoded once, mixed,
//! downsampled, G.711-encoded once), then every call pushes its caller's
//! PCMU frame (a 440 Hz tone when it talks, silence when it listens),
//! ticks its uplink (8 → 48 kHz, Opus encode, or nothing when silent) and
//! takes its G.711 frame (an N-1 mix when the caller is itself a
//! speaker). A talking caller's packet goes back into the mix, as another
//! caller's leg would deliver it (only when the meeting has another call:
//! the relay never sends a participant its own stream). A round is late when it finishes after
//! the next round is due. No sockets and no SRTP: this is the codec and
//! mixing cost, which is what bounds calls per core.
//!
//! Since #17 the meeting packets reach the mix as the daemon receives
//! them: SRTP (AEAD_AES_256_GCM) on a receive leg, decrypted, parsed and
//! their RFC 6464 level read before the push. `leg_per_call` chooses how
//! many legs: one per call, each with its own key and its own copy of
//! every packet but the call's own (the daemon before #17 item 4), or one
//! per meeting (this thread's receive leg, the daemon now), which gets
//! every caller's stream too (the mix leaves a lone caller's own stream
//! out). The relay's side (protecting each copy under its leg's key) runs
//! between rounds, off the clock, and its time is taken out of the run's
//! figure.

use std::time::{Duration, Instant};

use serde::Serialize;
use sluice::crypto::AnyGcm;
use sluice::media::{
    CallerUplink, FRAME_8K, G711, MediaError, MeetingMix, OpusSettings, UplinkSettings, level,
};
use sluice::rtp::{PayloadType, RtpBuilder, RtpPacket, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

use super::audio::{self, CYCLE_FRAMES};
use crate::histogram::Histogram;
use crate::procstat;

/// One round every 20 ms.
pub const ROUND: Duration = Duration::from_millis(20);

/// How the bridges are set up and driven.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BridgeSettings {
    /// Opus bitrate towards the meeting, bit/s.
    pub opus_bitrate: u32,
    /// libopus complexity towards the meeting.
    pub opus_complexity: u8,
    /// Seconds of real-time rounds.
    pub seconds: f64,
    /// Dial-in calls per meeting (they share the meeting's mix).
    pub callers_per_meeting: usize,
    /// Of every `callers_per_meeting`, how many talk all the time (the
    /// rest listen and send silence); at least one talks.
    pub talking_per_meeting: usize,
    /// One receive leg per call (each decrypting its own copy of every
    /// packet: the daemon before #17 item 4) instead of one per meeting.
    pub leg_per_call: bool,
}

impl Default for BridgeSettings {
    /// The bridge's own dial-in settings ([`OpusSettings::DIAL_IN`]), 10 s,
    /// the worst case: every call alone in its meeting and talking.
    fn default() -> Self {
        Self {
            opus_bitrate: OpusSettings::DIAL_IN.bitrate_bps,
            opus_complexity: OpusSettings::DIAL_IN.complexity,
            seconds: 10.0,
            callers_per_meeting: 1,
            talking_per_meeting: 1,
            leg_per_call: false,
        }
    }
}

/// What one run of N calls measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BridgeRun {
    /// Concurrent calls.
    pub calls: usize,
    /// Rounds run (one tick of every call each).
    pub rounds: u64,
    /// Rounds that finished after the next round was due.
    pub late_rounds: u64,
    /// Work time of one round (first push to last tick), µs.
    pub round_p50_us: u64,
    /// 99th percentile of the round work time, µs.
    pub round_p99_us: u64,
    /// Longest round, µs.
    pub round_max_us: u64,
    /// Finish time after the round's due time, worst, µs (includes
    /// wake-up latency and any backlog of earlier rounds).
    pub finish_max_us: u64,
    /// CPU of the bridge thread over the run, % of one core.
    pub cpu_pct: f64,
    /// Calls per fully busy core at this load: the media time the rounds
    /// covered (rounds × 20 ms × calls) over the thread's CPU time. The
    /// throughput figure, free of the latency criterion; comparable with
    /// rtpengine's figure of the same name. (Before #17 it was calls ÷
    /// (CPU ÷ 100) over the wall time, which overstates it when rounds
    /// fall behind and the run outlasts its rounds.)
    pub calls_per_busy_core: f64,
    /// The thread's CPU time per call and round, µs.
    pub cpu_per_call_us: f64,
    /// Ticks whose caller frame was 160 bytes.
    pub caller_frames: u64,
    /// Ticks whose Opus packet towards the meeting was non-empty.
    pub meeting_packets: u64,
    /// Opus bytes produced towards the meeting.
    pub meeting_bytes: u64,
    /// Meeting packets the bridges dropped or failed to decode.
    pub meeting_drops: u64,
    /// Receive legs (one per call, or one per meeting).
    pub receive_legs: usize,
    /// Meeting packets decrypted on the receive legs over the timed rounds.
    pub packets_decrypted: u64,
    /// Time the relay's side took between rounds (protecting the copies:
    /// computation only, no system call), µs, taken out of the thread's
    /// CPU for [`Self::calls_per_busy_core`]. Timed by the clock, not by
    /// `getrusage`, whose thread time moves only at the scheduler's ticks
    /// and switches, too coarse for a fraction of a round.
    pub relay_us: u64,
    /// What the kernel says of the longest rounds, longest first (at most
    /// [`SLOWEST_KEPT`]): whether a slow round was work (thread CPU close
    /// to its wall time), preemption (involuntary switches) or page faults.
    pub slowest: Vec<RoundCost>,
    /// Involuntary context switches of the bridge thread over the run.
    pub involuntary_switches: u64,
    /// Minor page faults of the bridge thread over the run.
    pub minor_faults: u64,
    /// Time the hypervisor stole from the bridge's core over the run, %
    /// of the run (`/proc/stat` steal; 0 without a pinned core).
    pub steal_pct: f64,
}

/// Longest rounds [`BridgeRun::slowest`] keeps.
pub const SLOWEST_KEPT: usize = 3;

/// One round as the kernel accounted it (`getrusage(RUSAGE_THREAD)`
/// before and after the round's work).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoundCost {
    /// The round's number in the run.
    pub round: u64,
    /// Wall time of the round's work, µs.
    pub wall_us: u64,
    /// The thread's user + system CPU time in it, µs.
    pub cpu_us: u64,
    /// Involuntary context switches in it (another task took the core).
    pub involuntary_switches: u64,
    /// Minor page faults in it.
    pub minor_faults: u64,
}

/// The bridge thread's counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadUsage {
    cpu_us: u64,
    involuntary_switches: u64,
    minor_faults: u64,
}

impl ThreadUsage {
    fn now() -> Self {
        use nix::sys::resource::{UsageWho, getrusage};
        let Ok(u) = getrusage(UsageWho::RUSAGE_THREAD) else {
            return Self::default();
        };
        let us = |t: nix::sys::time::TimeVal| {
            (t.tv_sec() as u64).saturating_mul(1_000_000) + t.tv_usec() as u64
        };
        Self {
            cpu_us: us(u.user_time()) + us(u.system_time()),
            involuntary_switches: u.involuntary_context_switches() as u64,
            minor_faults: u.minor_page_faults() as u64,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            cpu_us: self.cpu_us.saturating_sub(before.cpu_us),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(before.involuntary_switches),
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
        }
    }
}

/// Steal ticks of `core` so far (`/proc/stat`, the 8th value of its line).
fn steal_ticks(core: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

/// Keeps the [`SLOWEST_KEPT`] longest rounds, longest first.
fn keep_slowest(slowest: &mut Vec<RoundCost>, round: RoundCost) {
    let at = slowest
        .iter()
        .position(|r| r.wall_us < round.wall_us)
        .unwrap_or(slowest.len());
    if at < SLOWEST_KEPT {
        slowest.insert(at, round);
        slowest.truncate(SLOWEST_KEPT);
    }
}

impl BridgeRun {
    /// Share of late rounds, %.
    pub fn late_pct(&self) -> f64 {
        if self.rounds == 0 {
            return 0.0;
        }
        self.late_rounds as f64 / self.rounds as f64 * 100.0
    }

    /// Passes: at most 0.1 % late rounds and p99 round time within 20 ms.
    pub fn passes(&self) -> bool {
        self.rounds > 0 && self.late_pct() <= 0.1 && self.round_p99_us <= ROUND.as_micros() as u64
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A codec could not be opened or failed.
    #[error("call bridge: {0}")]
    Media(#[from] MediaError),
    /// An SRTP context could not be made.
    #[error("receive leg: {0}")]
    Srtp(#[from] sluice::srtp::SrtpError),
    /// Pinning the thread failed.
    #[error("{0}")]
    Pin(String),
}

/// One call: its uplink, its place in the cycles (calls start at
/// different frames, so they do not all carry the same bytes at once),
/// whether its caller talks, and its stream's SSRC and sequence number.
struct Call {
    uplink: CallerUplink,
    phase: usize,
    talking: bool,
    ssrc: u32,
    seq: u16,
}

/// One meeting: the mix its calls share, the calls, the receive legs
/// the meeting reaches them on, and what the calls sent this round (the
/// relay delivers it next round).
struct Meeting {
    mix: MeetingMix,
    calls: Vec<Call>,
    seq: u16,
    legs: Vec<Leg>,
    sent: Vec<Sent>,
    sent_len: usize,
}

/// A receive leg: the bridge's SRTP session (on the clock) and the
/// relay's (off it), and the datagrams the relay queued for it.
struct Leg {
    bridge: SrtpSession<AnyGcm>,
    relay: SrtpSession<AnyGcm>,
    /// The call whose own leg this is: the relay never sends a
    /// participant its own stream. `None` for a meeting's receive leg.
    owner: Option<u32>,
    inbox: Vec<Vec<u8>>,
    queued: usize,
}

/// A caller's packet into the meeting.
#[derive(Default)]
struct Sent {
    ssrc: u32,
    seq: u16,
    level: u8,
    opus: Vec<u8>,
}

/// The RFC 6464 extension id the relay's copies carry (the daemon's
/// default `audio_level_extension`).
const LEVEL_EXTENSION: u8 = 1;

impl Leg {
    fn new(n: u32, owner: Option<u32>) -> Result<Self, BridgeError> {
        let mut material = [0u8; 44];
        material[..4].copy_from_slice(&n.to_be_bytes());
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &material)?;
        Ok(Self {
            bridge: SrtpSession::new(AnyGcm::default(), &key)?,
            relay: SrtpSession::new(AnyGcm::default(), &key)?,
            owner,
            inbox: Vec::new(),
            queued: 0,
        })
    }

    /// The relay's copy of one packet, protected under the leg's key.
    fn queue(&mut self, ssrc: u32, seq: u16, level: u8, payload: &[u8]) {
        if self.queued == self.inbox.len() {
            self.inbox.push(vec![0u8; 1500]);
        }
        let buf = &mut self.inbox[self.queued];
        buf.resize(1500, 0);
        let ext = [0x80 | level];
        let pt = PayloadType::new(111).expect("111 is a dynamic payload type");
        let Ok(len) = RtpBuilder::new(pt, SeqNum(seq), u32::from(seq) * 960, Ssrc(ssrc))
            .one_byte_extensions(&[(LEVEL_EXTENSION, &ext[..])])
            .write(payload, buf)
        else {
            return;
        };
        if let Ok(len) = self.relay.protect_rtp(buf, len) {
            buf.truncate(len);
            self.queued += 1;
        }
    }
}

/// Runs `calls` bridges in real time on the calling thread (pinned to
/// `core` first, if given) for `settings.seconds`.
pub fn run(
    calls: usize,
    settings: BridgeSettings,
    core: Option<usize>,
) -> Result<BridgeRun, BridgeError> {
    if let Some(core) = core {
        crate::pin::pin_current_thread(&[core]).map_err(BridgeError::Pin)?;
    }
    let caller = audio::caller_frames(G711::Mu);
    let speakers = audio::meeting_frames()?;
    let uplink = UplinkSettings {
        opus: OpusSettings {
            bitrate_bps: settings.opus_bitrate,
            complexity: settings.opus_complexity,
            ..OpusSettings::DIAL_IN
        },
        ..UplinkSettings::DIAL_IN
    };
    let per_meeting = settings.callers_per_meeting.max(1);
    let talking = settings.talking_per_meeting.clamp(1, per_meeting);
    let mut meetings: Vec<Meeting> = Vec::new();
    for i in 0..calls {
        if i % per_meeting == 0 {
            let mut legs = Vec::new();
            if !settings.leg_per_call {
                legs.push(Leg::new(i as u32, None)?);
            }
            meetings.push(Meeting {
                mix: MeetingMix::new(),
                calls: Vec::new(),
                seq: 0,
                legs,
                sent: Vec::new(),
                sent_len: 0,
            });
        }
        let ssrc = 0xca11_0000 + i as u32;
        let meeting = meetings.last_mut().expect("just pushed");
        meeting.mix.add_caller(ssrc);
        if settings.leg_per_call {
            meeting.legs.push(Leg::new(i as u32, Some(ssrc))?);
        }
        meeting.calls.push(Call {
            uplink: CallerUplink::new(G711::Mu, uplink)?,
            phase: i * 7 % CYCLE_FRAMES,
            talking: i % per_meeting < talking,
            ssrc,
            seq: 0,
        });
    }
    let silence = [G711::Mu.silence(); FRAME_8K];
    // Calls join at different moments in real life, so their silence
    // gates do not send keep-alives in the same tick: run each uplink a
    // different number of silent ticks (0-19) before the clock starts.
    for (i, call) in meetings.iter_mut().flat_map(|m| &mut m.calls).enumerate() {
        for _ in 0..(i * 7) % 20 {
            call.uplink.push(&silence);
            call.uplink.tick()?;
        }
    }
    let mut run = BridgeRun {
        calls,
        receive_legs: meetings.iter().map(|m| m.legs.len()).sum(),
        ..BridgeRun::default()
    };

    // Warm-up, off the clock: the first tick opens each stream's decoder.
    let mut frame_no = 0;
    for _ in 0..2 {
        deliver(&mut meetings, &speakers, frame_no);
        round(
            &mut meetings,
            (&caller, &silence),
            frame_no,
            &mut BridgeRun::default(),
        )?;
        frame_no += 1;
    }
    deliver(&mut meetings, &speakers, frame_no);

    let rounds = (settings.seconds / ROUND.as_secs_f64()).ceil().max(1.0) as u64;
    let mut work = Histogram::default();
    let cpu_before = procstat::cpu_ticks("thread-self");
    let steal_before = core.and_then(steal_ticks);
    let usage_start = ThreadUsage::now();
    let start = Instant::now() + ROUND;
    for k in 0..rounds {
        let due = start + ROUND * k as u32;
        sleep_until(due);
        let usage_before = ThreadUsage::now();
        let began = Instant::now();
        round(&mut meetings, (&caller, &silence), frame_no, &mut run)?;
        frame_no += 1;
        let done = Instant::now();
        let used = ThreadUsage::now().since(usage_before);
        let wall = done.duration_since(began);
        work.record(wall.as_nanos() as u64);
        keep_slowest(
            &mut run.slowest,
            RoundCost {
                round: k,
                wall_us: wall.as_micros() as u64,
                cpu_us: used.cpu_us,
                involuntary_switches: used.involuntary_switches,
                minor_faults: used.minor_faults,
            },
        );
        let finish = done.duration_since(due);
        run.finish_max_us = run.finish_max_us.max(finish.as_micros() as u64);
        if finish > ROUND {
            run.late_rounds += 1;
        }
        run.rounds += 1;
        // The relay's side, off the clock: next round's copies.
        let relay_began = Instant::now();
        deliver(&mut meetings, &speakers, frame_no);
        run.relay_us += relay_began.elapsed().as_micros() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let used = ThreadUsage::now().since(usage_start);
    run.involuntary_switches = used.involuntary_switches;
    run.minor_faults = used.minor_faults;
    if let (Some(before), Some(after)) = (steal_before, core.and_then(steal_ticks)) {
        run.steal_pct =
            after.saturating_sub(before) as f64 / procstat::TICKS_PER_SECOND / elapsed * 100.0;
    }
    if let (Some(before), Some(after)) = (cpu_before, procstat::cpu_ticks("thread-self")) {
        run.cpu_pct = (after - before) as f64 / procstat::TICKS_PER_SECOND / elapsed * 100.0;
    }
    // getrusage's thread time is finer than /proc's 10 ms ticks; the
    // relay's side is not the bridge's.
    let bridge_cpu_us = used.cpu_us.saturating_sub(run.relay_us);
    if bridge_cpu_us > 0 && run.rounds > 0 {
        let calls_rounds = run.calls as f64 * run.rounds as f64;
        run.cpu_per_call_us = bridge_cpu_us as f64 / calls_rounds;
        run.calls_per_busy_core = ROUND.as_micros() as f64 / run.cpu_per_call_us;
    }
    let p = work.percentiles();
    run.round_p50_us = p.p50 / 1000;
    run.round_p99_us = p.p99 / 1000;
    run.round_max_us = p.max / 1000;
    run.meeting_drops = meetings
        .iter()
        .map(|m| {
            let s = m.mix.stats();
            s.packets_dropped + s.decode_errors
        })
        .sum();
    Ok(run)
}

/// One round of every meeting: the packets the relay queued on each
/// receive leg decrypted and pushed, the mix's tick, then every call's
/// uplink and G.711 frame; what came out is counted into `run`.
fn round(
    meetings: &mut [Meeting],
    (caller, silence): (&[[u8; FRAME_8K]], &[u8; FRAME_8K]),
    frame_no: usize,
    run: &mut BridgeRun,
) -> Result<(), MediaError> {
    for meeting in meetings {
        // What the relay sent since the last round, on every leg.
        for leg in &mut meeting.legs {
            for datagram in &mut leg.inbox[..leg.queued] {
                let n = datagram.len();
                let Ok(len) = leg.bridge.unprotect_rtp(datagram, n) else {
                    continue;
                };
                run.packets_decrypted += 1;
                let Ok(packet) = RtpPacket::parse(&datagram[..len]) else {
                    continue;
                };
                let level =
                    level::audio_level_and_voice(&packet, LEVEL_EXTENSION).map(|(dbov, _)| dbov);
                let h = packet.header();
                meeting
                    .mix
                    .push(h.ssrc().0, h.sequence().0, packet.payload(), level);
            }
            leg.queued = 0;
        }
        meeting.mix.tick()?;
        for call in &mut meeting.calls {
            let at = (call.phase + frame_no) % CYCLE_FRAMES;
            call.uplink
                .push(if call.talking { &caller[at] } else { silence });
            let out = call.uplink.tick()?;
            if let Some(opus) = out.to_meeting {
                run.meeting_packets += 1;
                run.meeting_bytes += opus.len() as u64;
                // To the relay, which delivers it next round.
                if meeting.sent_len == meeting.sent.len() {
                    meeting.sent.push(Sent::default());
                }
                let sent = &mut meeting.sent[meeting.sent_len];
                sent.ssrc = call.ssrc;
                sent.seq = call.seq;
                sent.level = out.level;
                sent.opus.clear();
                sent.opus.extend_from_slice(opus);
                meeting.sent_len += 1;
                call.seq = call.seq.wrapping_add(1);
            }
            let to_caller = meeting.mix.to_caller(G711::Mu, Some(call.ssrc));
            run.caller_frames += u64::from(to_caller.len() == FRAME_8K);
        }
    }
    Ok(())
}

/// The relay's side of a round, off the clock: the three web speakers'
/// packets of frame `frame_no` and what the calls sent, a copy to every
/// leg of the meeting but the sender's own, each protected under the
/// leg's key.
fn deliver(meetings: &mut [Meeting], speakers: &[Vec<audio::OpusFrame>; 3], frame_no: usize) {
    let at = frame_no % CYCLE_FRAMES;
    for meeting in meetings {
        let seq = meeting.seq;
        meeting.seq = meeting.seq.wrapping_add(1);
        let sent = &meeting.sent[..meeting.sent_len];
        for leg in &mut meeting.legs {
            for (s, frames) in speakers.iter().enumerate() {
                let f = &frames[at];
                leg.queue(0x5eed_0000 + s as u32, seq, f.level, &f.payload);
            }
            for p in sent {
                if leg.owner != Some(p.ssrc) {
                    leg.queue(p.ssrc, p.seq, p.level, &p.opus);
                }
            }
        }
        meeting.sent_len = 0;
    }
}

/// Sleeps until ~100 µs before `at`, then spins: timer slack must not
/// make a round late that the work would have finished in time.
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now + Duration::from_micros(200) {
        std::thread::sleep(at - now - Duration::from_micros(100));
    }
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

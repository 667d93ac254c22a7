//! The sluice target: the transcoding work of N dial-in calls on one
//! thread, in real time, as the media pool does it.
//!
//! One [`CallBridge`] per call. Every 20 ms, on an absolute schedule
//! (`start + k × 20 ms`, so a late round never shifts the ones after it),
//! each call gets one caller PCMU frame and one Opus packet from each of
//! three meeting speakers with their RFC 6464 levels, then `tick()`s: that
//! decodes the three (they are all among the loudest three), mixes,
//! downsamples and encodes PCMU for the caller, and upsamples and encodes
//! the caller's 20 ms as Opus for the meeting. A round (N ticks) is late
//! when it finishes after the next round is due. No sockets: this is the
//! codec and mixing cost alone, which is what bounds calls per core.

use std::time::{Duration, Instant};

use serde::Serialize;
use sluice::media::{CallBridge, FRAME_8K, G711, MediaError, OpusSettings};

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
}

impl Default for BridgeSettings {
    /// The bridge's own dial-in settings ([`OpusSettings::DIAL_IN`]), 10 s.
    fn default() -> Self {
        Self {
            opus_bitrate: OpusSettings::DIAL_IN.bitrate_bps,
            opus_complexity: OpusSettings::DIAL_IN.complexity,
            seconds: 10.0,
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
    /// Calls per fully busy core at this load: calls ÷ (CPU ÷ 100). The
    /// throughput figure, free of the latency criterion; comparable with
    /// rtpengine's figure of the same name.
    pub calls_per_busy_core: f64,
    /// Ticks whose caller frame was 160 bytes.
    pub caller_frames: u64,
    /// Ticks whose Opus packet towards the meeting was non-empty.
    pub meeting_packets: u64,
    /// Opus bytes produced towards the meeting.
    pub meeting_bytes: u64,
    /// Meeting packets the bridges dropped or failed to decode.
    pub meeting_drops: u64,
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
    /// Pinning the thread failed.
    #[error("{0}")]
    Pin(String),
}

/// One call's place in the cycles: calls start at different frames, so
/// they do not all carry the same bytes at once.
struct Call {
    bridge: CallBridge,
    phase: usize,
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
    let mut calls: Vec<Call> = (0..calls)
        .map(|i| {
            Ok(Call {
                bridge: CallBridge::new(G711::Mu, settings.opus_bitrate, settings.opus_complexity)?,
                phase: i * 7 % CYCLE_FRAMES,
            })
        })
        .collect::<Result<_, MediaError>>()?;
    let mut run = BridgeRun {
        calls: calls.len(),
        ..BridgeRun::default()
    };

    // Warm-up, off the clock: the first tick opens each stream's decoder.
    let mut frame_no = 0;
    for _ in 0..2 {
        round(
            &mut calls,
            &caller,
            &speakers,
            frame_no,
            &mut BridgeRun::default(),
        )?;
        frame_no += 1;
    }

    let rounds = (settings.seconds / ROUND.as_secs_f64()).ceil().max(1.0) as u64;
    let mut work = Histogram::default();
    let cpu_before = procstat::cpu_ticks("thread-self");
    let start = Instant::now() + ROUND;
    for k in 0..rounds {
        let due = start + ROUND * k as u32;
        sleep_until(due);
        let began = Instant::now();
        round(&mut calls, &caller, &speakers, frame_no, &mut run)?;
        frame_no += 1;
        let done = Instant::now();
        work.record(done.duration_since(began).as_nanos() as u64);
        let finish = done.duration_since(due);
        run.finish_max_us = run.finish_max_us.max(finish.as_micros() as u64);
        if finish > ROUND {
            run.late_rounds += 1;
        }
        run.rounds += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, procstat::cpu_ticks("thread-self")) {
        run.cpu_pct = (after - before) as f64 / procstat::TICKS_PER_SECOND / elapsed * 100.0;
        if run.cpu_pct > 0.0 {
            run.calls_per_busy_core = run.calls as f64 / (run.cpu_pct / 100.0);
        }
    }
    let p = work.percentiles();
    run.round_p50_us = p.p50 / 1000;
    run.round_p99_us = p.p99 / 1000;
    run.round_max_us = p.max / 1000;
    run.meeting_drops = calls
        .iter()
        .map(|c| {
            let s = c.bridge.stats();
            s.meeting_packets_dropped + s.decode_errors
        })
        .sum();
    Ok(run)
}

/// One round: every call gets its caller frame and three speaker packets,
/// then ticks; what came out is counted into `run`.
fn round(
    calls: &mut [Call],
    caller: &[[u8; FRAME_8K]],
    speakers: &[Vec<audio::OpusFrame>; 3],
    frame_no: usize,
    run: &mut BridgeRun,
) -> Result<(), MediaError> {
    for call in calls {
        let at = (call.phase + frame_no) % CYCLE_FRAMES;
        call.bridge.push_caller(&caller[at]);
        for (s, frames) in speakers.iter().enumerate() {
            let f = &frames[at];
            call.bridge
                .push_meeting(0x5eed_0000 + s as u32, &f.payload, Some(f.level));
        }
        let out = call.bridge.tick()?;
        run.caller_frames += u64::from(out.to_caller.len() == FRAME_8K);
        run.meeting_packets += u64::from(!out.to_meeting.is_empty());
        run.meeting_bytes += out.to_meeting.len() as u64;
    }
    Ok(())
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

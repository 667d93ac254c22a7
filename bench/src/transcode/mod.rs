//! `sluice-bench transcode`: concurrent real-time 720p30 → 360p video
//! transcodes per core until frames are late, through the daemon's real
//! transcoder participant, side by side with one `ffmpeg` CLI process per
//! stream doing the same transcode with the same encoder settings.
//!
//! - [`sluice`]: a release daemon with `[transcode]`, K meetings each with
//!   one real-time 720p30 SRTP publisher (the [`clip`]'s RTP payloads
//!   replayed by the bench on its own core) and one receiver asking for
//!   `max_height = 360` in the same codec: one transcode per meeting, on
//!   the daemon's media threads, over its SRTP legs.
//! - [`ffmpeg`]: N `ffmpeg` processes, each fed the same clip by one of
//!   the same SRTP publishers through an SDP file (or, with
//!   `--ffmpeg-input file`, reading it from a file with `-re`), scaling to
//!   360p and encoding with the options of the same `hw/encoders` profile,
//!   writing SRTP (or plain RTP) to the bench over UDP.
//!
//! Both are judged by one measure ([`judge`]): every output frame's last
//! packet is timed on arrival; a frame's delay is its arrival less its
//! source frame's nominal time; a frame is *late* when its delay exceeds
//! the stream's smallest delay in the window by more than `late_ms`
//! (default [`LATE_MS`]), *missing* when it never came. A step passes
//! while at least [`MIN_ON_TIME`] of the window's frames came on time and
//! at most [`MAX_MISSING`] are missing. Streams per busy core = seconds
//! of video out during the window ÷ CPU seconds of the daemon (relay,
//! transcoder, everything), or of all the ffmpeg processes, over it.

pub mod clip;
pub mod ffmpeg;
pub mod publish;
pub mod sluice;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::sluice::transcode::EncoderKind;
use ::sluice::video::VideoCodec;
use serde::Serialize;

use crate::histogram::Histogram;

/// Target names `transcode --targets` accepts, in report order.
pub const TARGETS: &[&str] = &["sluice", "ffmpeg"];

/// A frame later than the stream's best by more than this is late, ms:
/// three frame times at 30 fps. Past capacity a transcoder falls behind
/// without bound (the backlog grows by a frame's worth each frame), so
/// any bound separates keeping up from not; three frame times is what a
/// receiver's playout buffer rides out, and above the scheduling hiccups
/// of a shared box (a 10 ms tick of another process, a key frame's
/// double encode cost).
pub const LATE_MS: f64 = 100.0;

/// The share of a window's frames that must come on time (not late, not
/// missing) for a step to pass. A transcoder past its capacity falls
/// behind at a steady rate, so once 100 ms behind every later frame is
/// late: 5 % over capacity already makes most of a 10 s window late. The
/// 5 % allowed is for the shared box: another process holding the core
/// for 200 ms makes six frames late, and this allows a few such stalls
/// per window.
pub const MIN_ON_TIME: f64 = 0.95;

/// The share of a window's frames that may never come (lost in a full
/// socket buffer, or dropped as undecodable): a step with more fails
/// however timely the rest.
pub const MAX_MISSING: f64 = 0.01;

/// One frame time at 30 fps.
pub const FRAME: Duration = Duration::from_nanos(1_000_000_000 / clip::FPS as u64);

/// Which transcode: the source's codec, transcoded to 360p in the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Case {
    /// H.264 720p → H.264 360p, libx264 (`hw/encoders/libx264.toml`).
    H264,
    /// VP8 720p → VP8 360p, libvpx (`hw/encoders/libvpx.toml`).
    Vp8,
}

impl Case {
    /// Every case, in report order.
    pub const ALL: [Self; 2] = [Self::H264, Self::Vp8];

    /// Its name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::Vp8 => "vp8",
        }
    }

    /// The case called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The encoder of both the clip and the rendition.
    pub const fn encoder(self) -> EncoderKind {
        match self {
            Self::H264 => EncoderKind::Libx264,
            Self::Vp8 => EncoderKind::Libvpx,
        }
    }

    /// The codec.
    pub const fn codec(self) -> VideoCodec {
        self.encoder().codec()
    }

    /// The codec's name in the control API.
    pub const fn api_name(self) -> &'static str {
        match self {
            Self::H264 => "H264",
            Self::Vp8 => "VP8",
        }
    }

    /// The payload type both sides use.
    pub const fn payload_type(self) -> u8 {
        match self {
            Self::H264 => 96,
            Self::Vp8 => 100,
        }
    }
}

/// How a step runs.
#[derive(Debug, Clone, Serialize)]
pub struct StepSettings {
    /// Seconds of measured window.
    pub seconds: f64,
    /// Seconds before the window (transcodes starting, first key frame).
    pub warmup: f64,
    /// The lateness bound, ms ([`LATE_MS`] by default).
    pub late_ms: f64,
    /// Cores the daemon and the ffmpeg processes are pinned to (empty:
    /// none).
    pub transcode_cores: Vec<usize>,
    /// Cores the bench's own threads are pinned to (empty: none).
    pub generator_cores: Vec<usize>,
    /// `[transcode] threads` (0: the daemon's default, a thread per
    /// transcode).
    pub threads: usize,
    /// What the ffmpeg processes read and write.
    pub ffmpeg_input: ffmpeg::FfmpegInput,
    /// The sluice binary.
    #[serde(skip)]
    pub sluice_binary: Option<PathBuf>,
}

impl Default for StepSettings {
    fn default() -> Self {
        Self {
            seconds: 10.0,
            warmup: 3.0,
            late_ms: LATE_MS,
            transcode_cores: Vec::new(),
            generator_cores: Vec::new(),
            threads: 0,
            ffmpeg_input: ffmpeg::FfmpegInput::default(),
            sluice_binary: None,
        }
    }
}

impl StepSettings {
    /// Frames before the window.
    pub fn warmup_frames(&self) -> u32 {
        (self.warmup * f64::from(clip::FPS)).round() as u32
    }

    /// Frames a step sends or reads: the warm-up, the window and a tail,
    /// rounded up to whole GOPs (the clip is this long: it never loops).
    pub fn clip_frames(&self) -> u32 {
        let frames = self.warmup_frames() + self.window_frames() + 2 * clip::FPS;
        frames.div_ceil(clip::GOP) * clip::GOP
    }

    /// Frames in the window.
    pub fn window_frames(&self) -> u32 {
        (self.seconds * f64::from(clip::FPS)).round().max(1.0) as u32
    }
}

/// What one step (N streams on one target) measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepRun {
    /// Concurrent transcodes.
    pub streams: usize,
    /// The window's source frames, all streams.
    pub frames: u64,
    /// Of them, out on time.
    pub on_time: u64,
    /// Out, but late.
    pub late: u64,
    /// Never out.
    pub missing: u64,
    /// Output frames received over the whole step (warm-up and tail
    /// too): that the transcodes ran at all.
    pub received: u64,
    /// Output frames received while the CPU was measured (any source
    /// frame): the work that CPU time bought.
    pub out_in_window: u64,
    /// Delay beyond the stream's best frame, 99th percentile over all
    /// frames that came, ms.
    pub lateness_p99_ms: f64,
    /// Worst lateness, ms.
    pub lateness_max_ms: f64,
    /// sluice, and ffmpeg reading SRTP: a frame's delay from the source
    /// frame's last packet sent to the output frame's last packet received
    /// (sluice: relay in, transcoder leg, relay out), median, ms.
    pub delay_p50_ms: Option<f64>,
    /// The same, 99th percentile, ms.
    pub delay_p99_ms: Option<f64>,
    /// sluice only: the transcoder's mean scale + encode time per frame
    /// over the window (the encoder's own), ms.
    pub encode_ms: Option<f64>,
    /// sluice only: its mean decode time per source frame, ms.
    pub decode_ms: Option<f64>,
    /// CPU seconds over the window: the daemon (relay, transcoder,
    /// everything), or all ffmpeg processes.
    pub cpu_seconds: f64,
    /// sluice only: the part of `cpu_seconds` on the transcoder's media
    /// threads (`sluice-video-*`: SRTP legs, decode, scale, encode); the
    /// rest is the relay, the control API and the daemon's other threads.
    pub transcoder_cpu_seconds: Option<f64>,
    /// The window's wall time, s.
    pub wall_seconds: f64,
    /// Anything odd (a process that failed, a transcode that did not
    /// start).
    pub note: Option<String>,
}

impl StepRun {
    /// Share of frames on time.
    pub fn on_time_share(&self) -> f64 {
        if self.frames == 0 {
            return 0.0;
        }
        self.on_time as f64 / self.frames as f64
    }

    /// Passes: at least [`MIN_ON_TIME`] of the frames on time, at most
    /// [`MAX_MISSING`] never out.
    pub fn passes(&self) -> bool {
        self.frames > 0
            && self.on_time_share() >= MIN_ON_TIME
            && self.missing as f64 <= MAX_MISSING * self.frames as f64
    }

    /// Cores busy over the window.
    pub fn busy_cores(&self) -> f64 {
        if self.wall_seconds <= 0.0 {
            return 0.0;
        }
        self.cpu_seconds / self.wall_seconds
    }

    /// Streams per fully busy core at this load: the seconds of video
    /// transcoded while the CPU was measured (frames out ÷ 30) over the
    /// CPU seconds. While the transcodes keep up that is streams ÷ busy
    /// cores; when they fall behind it counts only the frames they made
    /// (streams ÷ busy cores would credit them with frames still queued).
    pub fn streams_per_busy_core(&self) -> f64 {
        if self.cpu_seconds <= 0.0 {
            return 0.0;
        }
        self.out_in_window as f64 / f64::from(clip::FPS) / self.cpu_seconds
    }

    /// sluice only: the median delay less the encoder's own time, ms.
    pub fn added_ms(&self) -> Option<f64> {
        Some(self.delay_p50_ms? - self.encode_ms?)
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:.2} % on time ({} late, {} missing of {}), lateness p99 {:.1} ms, CPU {:.0} % ({:.2} streams per busy core)",
            self.on_time_share() * 100.0,
            self.late,
            self.missing,
            self.frames,
            self.lateness_p99_ms,
            self.busy_cores() * 100.0,
            self.streams_per_busy_core()
        );
        if let Some(t) = self.transcoder_cpu_seconds
            && self.cpu_seconds > 0.0
        {
            s.push_str(&format!(
                ", {:.0} % of it on the transcoder's threads",
                t / self.cpu_seconds * 100.0
            ));
        }
        match (self.delay_p50_ms, self.added_ms()) {
            (Some(p50), Some(added)) => s.push_str(&format!(
                ", delay p50 {p50:.1} ms ({added:.1} ms beyond the encoder's)"
            )),
            (Some(p50), None) => s.push_str(&format!(", delay p50 {p50:.1} ms")),
            _ => {}
        }
        if let Some(note) = &self.note {
            s.push_str(&format!("; {note}"));
        }
        s
    }
}

/// What arrived of one output stream: each frame's RTP timestamp and when
/// its last (marker) packet came, first arrival only.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    /// By RTP timestamp.
    pub by_ts: HashMap<u32, Instant>,
    /// Packets of the stream, marker or not.
    pub packets: u64,
}

impl Arrivals {
    /// Frames of `streams` whose last packet came in `[from, to)`.
    pub fn count_between(streams: &[&Self], from: Instant, to: Instant) -> u64 {
        streams
            .iter()
            .flat_map(|a| a.by_ts.values())
            .filter(|&&at| at >= from && at < to)
            .count() as u64
    }

    /// Records a marker packet of the frame `ts`.
    pub fn record(&mut self, ts: u32, at: Instant) {
        self.by_ts.entry(ts).or_insert(at);
    }

    /// What came, in words (for a step's note).
    pub fn summary(streams: &[&Self]) -> String {
        let packets: u64 = streams.iter().map(|a| a.packets).sum();
        let frames: usize = streams.iter().map(|a| a.by_ts.len()).sum();
        let ts = streams.iter().flat_map(|a| a.by_ts.keys());
        let (lo, hi) = ts.fold((u32::MAX, 0), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        format!("{packets} packets, {frames} frames received (RTP timestamps {lo} to {hi})")
    }
}

/// One stream's window, frame by frame: its nominal time (when the source
/// frame was due or sent) and when its output came, if it did.
pub type Timeline = Vec<(Instant, Option<Instant>)>;

/// Judges a step: frames late beyond `late_ms` past each stream's best
/// delay, missing frames, and (with `absolute`) the delays themselves.
pub fn judge(streams: &[Timeline], late_ms: f64, absolute: bool, run: &mut StepRun) {
    let mut lateness = Histogram::default();
    let mut delay = Histogram::default();
    let bound = Duration::from_secs_f64(late_ms / 1000.0);
    for timeline in streams {
        let delays: Vec<Option<Duration>> = timeline
            .iter()
            .map(|(due, got)| got.map(|g| g.saturating_duration_since(*due)))
            .collect();
        let best = delays.iter().flatten().min().copied().unwrap_or_default();
        for d in &delays {
            run.frames += 1;
            match d {
                None => run.missing += 1,
                Some(d) => {
                    let beyond = d.saturating_sub(best);
                    lateness.record(beyond.as_nanos() as u64);
                    if absolute {
                        delay.record(d.as_nanos() as u64);
                    }
                    if beyond > bound {
                        run.late += 1;
                    } else {
                        run.on_time += 1;
                    }
                }
            }
        }
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    if lateness.count() > 0 {
        let p = lateness.percentiles();
        run.lateness_p99_ms = ms(p.p99);
        run.lateness_max_ms = ms(p.max);
    }
    if absolute && delay.count() > 0 {
        let p = delay.percentiles();
        run.delay_p50_ms = Some(ms(p.p50));
        run.delay_p99_ms = Some(ms(p.p99));
    }
}

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The clip could not be made.
    #[error(transparent)]
    Clip(#[from] clip::ClipError),
    /// The daemon did not start or refused the set-up.
    #[error("{0}")]
    Target(#[from] crate::target::TargetError),
    /// A socket, a process or a file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

impl StepError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// The result of a step's `what` thread (publisher, receiver); its
/// panic as the step's error.
pub(crate) fn joined<T>(
    thread: std::thread::JoinHandle<Result<T, StepError>>,
    what: &str,
) -> Result<T, StepError> {
    thread
        .join()
        .map_err(|_| StepError::Other(format!("the {what} thread panicked")))?
}

/// Clock ticks (`/proc`) as CPU seconds.
pub(crate) fn cpu_seconds(ticks0: u64, ticks1: u64) -> f64 {
    ticks1.saturating_sub(ticks0) as f64 / crate::procstat::TICKS_PER_SECOND
}

/// Sleeps until `at` (coarse: the schedule's jitter is far below a frame).
pub(crate) fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// CPU ticks of `pid`'s threads whose name starts with `prefix`.
pub(crate) fn thread_ticks(pid: u32, prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str().map(str::to_owned))
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|tid| crate::procstat::cpu_ticks(&format!("{pid}/task/{tid}")))
        .sum()
}

/// The daemon's or the processes' CPU ticks now, summed.
pub(crate) fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| crate::procstat::cpu_ticks(&p.to_string()))
        .sum()
}

/// One case's searches, one per target.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case.
    pub case: Case,
    /// sluice's search (None: not asked).
    pub sluice: Option<Outcome>,
    /// ffmpeg's search.
    pub ffmpeg: Option<Outcome>,
}

/// A target's search, or why it did not run.
#[derive(Debug, Clone, Serialize)]
pub enum Outcome {
    /// Every step and the answer.
    Searched(crate::dialin::Search<StepRun>),
    /// It could not run; why.
    Failed(String),
}

impl Outcome {
    /// The step that gives the figure: the largest passing one.
    pub fn best(&self) -> Option<&StepRun> {
        match self {
            Self::Searched(s) => {
                let n = s.largest_passing?;
                s.points.iter().find(|p| p.streams == n && p.passes())
            }
            Self::Failed(_) => None,
        }
    }
}

/// A sweep's steps as a search: the largest passing is the largest N
/// that passed. On a shared box a step fails when another process holds
/// the core, whatever its own load, but no other process can make a step
/// pass that its target could not keep up with; so a failure below a pass
/// is the box's, and the largest pass is the target's.
pub fn swept(points: Vec<StepRun>) -> crate::dialin::Search<StepRun> {
    let largest_passing = points
        .iter()
        .filter(|p| p.passes())
        .map(|p| p.streams)
        .max();
    let failed: Vec<String> = points
        .iter()
        .filter(|p| !p.passes())
        .map(|p| p.streams.to_string())
        .collect();
    let stopped = match (largest_passing, failed.is_empty()) {
        (Some(p), true) => format!("{p} streams passed, the sweep's last"),
        (Some(p), false) => format!("{p} streams passed; {} failed", failed.join(", ")),
        (None, false) => format!("none passed; {} failed", failed.join(", ")),
        (None, true) => "nothing ran".to_owned(),
    };
    crate::dialin::Search {
        points,
        largest_passing,
        stopped,
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct TranscodeReport {
    /// When it ran, Unix seconds.
    pub unix_time: u64,
    /// The box's load average when it started (1, 5, 15 min).
    pub load_average: String,
    /// How the steps ran.
    pub settings: StepSettings,
    /// Each case.
    pub cases: Vec<CaseReport>,
}

/// The report in Markdown.
pub fn markdown(report: &TranscodeReport) -> String {
    let s = &report.settings;
    let mut out = format!(
        "# Video transcodes per core: sluice's transcoder participant vs the ffmpeg CLI\n\n\
         720p30 → 360p, {} s windows after {} s warm-up; late = more than {} ms beyond the stream's best frame; a step passes with ≥ {:.0} % of the frames on time and ≤ {:.0} % missing. \
         Cores under test: {}; bench threads: {}; `[transcode] threads` {}; ffmpeg input: {}. Load average at start: {}.\n\n",
        s.seconds,
        s.warmup,
        s.late_ms,
        MIN_ON_TIME * 100.0,
        MAX_MISSING * 100.0,
        cores(&s.transcode_cores),
        cores(&s.generator_cores),
        s.threads,
        s.ffmpeg_input.name(),
        report.load_average,
    );
    out.push_str("| case | target | largest passing | CPU at it | streams per busy core | sluice / ffmpeg |\n|---|---|---|---|---|---|\n");
    for c in &report.cases {
        let per_core = |o: &Option<Outcome>| {
            o.as_ref()
                .and_then(Outcome::best)
                .map(StepRun::streams_per_busy_core)
        };
        let ratio = match (per_core(&c.sluice), per_core(&c.ffmpeg)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "–".to_owned(),
        };
        for (name, o) in [("sluice", &c.sluice), ("ffmpeg", &c.ffmpeg)] {
            let Some(o) = o else { continue };
            let cells = match (o, o.best()) {
                (_, Some(b)) => format!(
                    "{} | {:.0} % | {:.2}",
                    b.streams,
                    b.busy_cores() * 100.0,
                    b.streams_per_busy_core()
                ),
                (Outcome::Failed(e), None) => format!("did not run: {e} | – | –"),
                (Outcome::Searched(_), None) => "none passed | – | –".to_owned(),
            };
            let shown = if name == "sluice" { ratio.as_str() } else { "" };
            out.push_str(&format!(
                "| {} ({}) | {name} | {cells} | {shown} |\n",
                c.case.name(),
                c.case.encoder().name()
            ));
        }
    }
    for c in &report.cases {
        if let Some(best) = c.sluice.as_ref().and_then(|o| match o {
            Outcome::Searched(s) => s
                .points
                .iter()
                .filter(|p| p.passes())
                .min_by_key(|p| p.streams),
            Outcome::Failed(_) => None,
        }) && let (Some(p50), Some(p99), Some(enc), Some(added)) = (
            best.delay_p50_ms,
            best.delay_p99_ms,
            best.encode_ms,
            best.added_ms(),
        ) {
            out.push_str(&format!(
                "\n{}: at {} stream(s), source frame out → rendition frame in: median {p50:.1} ms, p99 {p99:.1} ms; the encoder's own (scale + encode) {enc:.1} ms; added beyond it {added:.1} ms = {:.2} frame times (the mean decode time, part of it: {:.1} ms).\n",
                c.case.name(),
                best.streams,
                added / (FRAME.as_secs_f64() * 1e3),
                best.decode_ms.unwrap_or_default()
            ));
        }
    }
    for c in &report.cases {
        if let Some(Outcome::Searched(f)) = &c.ffmpeg
            && let Some(best) = f
                .points
                .iter()
                .filter(|p| p.passes())
                .min_by_key(|p| p.streams)
            && let (Some(p50), Some(p99)) = (best.delay_p50_ms, best.delay_p99_ms)
        {
            out.push_str(&format!(
                "\n{} ffmpeg (SRTP in, SRTP out): at {} stream(s), source frame out → output frame in: median {p50:.1} ms, p99 {p99:.1} ms.\n",
                c.case.name(),
                best.streams,
            ));
        }
    }
    out.push_str("\n## At equal load\n\nEach N both ran: CPU per stream, whatever the lateness (on a loaded box a step can fail for want of CPU time that its own work did not use).\n\n| case | streams | sluice: on time, streams per busy core | ffmpeg: on time, streams per busy core | sluice / ffmpeg |\n|---|---|---|---|---|\n");
    for c in &report.cases {
        let (Some(Outcome::Searched(a)), Some(Outcome::Searched(b))) = (&c.sluice, &c.ffmpeg)
        else {
            continue;
        };
        let mut ns: Vec<usize> = a.points.iter().map(|p| p.streams).collect();
        ns.sort_unstable();
        ns.dedup();
        for n in ns {
            let (Some(x), Some(y)) = (
                a.points.iter().find(|p| p.streams == n),
                b.points.iter().find(|p| p.streams == n),
            ) else {
                continue;
            };
            let ratio = if y.streams_per_busy_core() > 0.0 {
                format!(
                    "{:.2}×",
                    x.streams_per_busy_core() / y.streams_per_busy_core()
                )
            } else {
                "–".to_owned()
            };
            out.push_str(&format!(
                "| {} | {n} | {:.1} %, {:.2} | {:.1} %, {:.2} | {ratio} |\n",
                c.case.name(),
                x.on_time_share() * 100.0,
                x.streams_per_busy_core(),
                y.on_time_share() * 100.0,
                y.streams_per_busy_core(),
            ));
        }
    }
    out.push_str("\n## Steps\n\n| case | target | streams | on time | late | missing | lateness p99 | CPU | of it on the transcoder's threads | streams per busy core | note |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for c in &report.cases {
        for (name, o) in [("sluice", &c.sluice), ("ffmpeg", &c.ffmpeg)] {
            let Some(Outcome::Searched(s)) = o else {
                continue;
            };
            for p in &s.points {
                out.push_str(&format!(
                    "| {} | {name} | {} | {:.2} % | {} | {} | {:.1} ms | {:.0} % | {} | {:.2} | {} |\n",
                    c.case.name(),
                    p.streams,
                    p.on_time_share() * 100.0,
                    p.late,
                    p.missing,
                    p.lateness_p99_ms,
                    p.busy_cores() * 100.0,
                    p.transcoder_cpu_seconds
                        .filter(|_| p.cpu_seconds > 0.0)
                        .map_or_else(|| "–".to_owned(), |t| format!("{:.0} %", t / p.cpu_seconds * 100.0)),
                    p.streams_per_busy_core(),
                    p.note.clone().unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn cores(c: &[usize]) -> String {
    if c.is_empty() {
        return "not pinned".to_owned();
    }
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The box's load average (`/proc/loadavg`'s first three fields).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_and_missing_frames_are_counted_against_the_best_delay() {
        let t0 = Instant::now();
        let f = |n: u64| t0 + FRAME * n as u32;
        let ms = |m: u64| Duration::from_millis(m);
        // Stream 1: 10 ms delay, one frame 150 ms (late), one missing.
        let one: Timeline = (0..10)
            .map(|n| {
                let got = match n {
                    3 => Some(f(n) + ms(150)),
                    7 => None,
                    _ => Some(f(n) + ms(10)),
                };
                (f(n), got)
            })
            .collect();
        // Stream 2: a steady 500 ms (its best): all on time.
        let two: Timeline = (0..10).map(|n| (f(n), Some(f(n) + ms(500)))).collect();
        let mut run = StepRun {
            streams: 2,
            ..StepRun::default()
        };
        judge(&[one, two], LATE_MS, true, &mut run);
        assert_eq!(
            (run.frames, run.on_time, run.late, run.missing),
            (20, 18, 1, 1)
        );
        assert!(!run.passes());
        assert!((run.lateness_max_ms - 140.0).abs() < 1.0, "{run:?}");
        assert!(run.delay_p50_ms.is_some());
    }

    #[test]
    fn a_sweep_gives_its_largest_passing_step() {
        let step = |streams, on_time| StepRun {
            streams,
            frames: 100,
            on_time,
            ..StepRun::default()
        };
        let s = swept(vec![step(1, 50), step(2, 100), step(3, 100), step(4, 50)]);
        assert_eq!(s.largest_passing, Some(3));
        assert_eq!(s.stopped, "3 streams passed; 1, 4 failed");
        assert_eq!(swept(vec![step(1, 10)]).largest_passing, None);
    }

    #[test]
    fn streams_per_busy_core_is_streams_over_cores() {
        let run = StepRun {
            streams: 6,
            frames: 100,
            on_time: 100,
            out_in_window: 6 * 300,
            cpu_seconds: 15.0,
            wall_seconds: 10.0,
            ..StepRun::default()
        };
        assert!(run.passes());
        assert!((run.streams_per_busy_core() - 4.0).abs() < 1e-9);
    }
}

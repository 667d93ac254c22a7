//! The ffmpeg side of a step: N `ffmpeg` CLI processes, one per stream,
//! each reading the clip's file in real time (`-re`),
//! decoding, scaling to 360p (bilinear, as the rendition) and encoding
//! with the same settings as a sluice rendition: the `hw/encoders`
//! profile's options, one thread, no B-frames, a 2 s GOP, CBR at the
//! rendition's default bitrate with a half-second VBV buffer (the command
//! `benches/rendition.rs` runs). Each writes RTP over loopback UDP to a
//! socket of the bench, which times every frame's marker packet.
//!
//! Frame n of a stream is due at n × 33.3 ms after an instant the bench
//! cannot see (when ffmpeg read its first packet), so a frame's delay is
//! taken from the bench's own start and the lateness from the stream's
//! best frame, as [`super::judge`] does for both sides.

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use sluice::rtp::RtpPacket;
use sluice::transcode::{DEFAULT_RENDITION_KBPS, RENDITION_MTU};

use super::clip::{Clip, FPS, TICKS_PER_FRAME};
use super::{Arrivals, Case, FRAME, StepError, StepRun, StepSettings, Timeline, judge};

/// How long past the window the receiver waits for the last frames.
const TAIL: Duration = Duration::from_secs(1);

/// The ffmpeg command line of one stream, sending RTP to `port`.
pub fn command(case: Case, clip_file: &Path, format: &str, seconds: f64, port: u16) -> Command {
    let kind = case.encoder();
    let profile = kind.profile();
    let kbps = DEFAULT_RENDITION_KBPS;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-threads", "1", "-re", "-f", format]);
    if format == "h264" {
        // A raw H.264 stream has no timing of its own.
        cmd.args(["-framerate", &FPS.to_string()]);
    }
    cmd.arg("-i")
        .arg(clip_file)
        .args(["-t", &format!("{seconds:.3}")])
        .args(["-vf", "scale=640:360:flags=bilinear", "-c:v", kind.name()])
        .args(["-threads", "1"])
        .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
        .args([
            "-minrate",
            &format!("{kbps}k"),
            "-bufsize",
            &format!("{}k", kbps / 2),
        ])
        .args(["-g", "60", "-bf", "0", "-pix_fmt", &profile.pixel_format]);
    for (k, v) in &profile.options {
        cmd.arg(format!("-{k}")).arg(v);
    }
    cmd.args(["-fps_mode", "passthrough", "-f", "rtp"])
        .args(["-payload_type", &case.payload_type().to_string()])
        .arg(format!(
            "rtp://127.0.0.1:{port}?pkt_size={}",
            RENDITION_MTU + 12
        ));
    cmd
}

/// Kills the processes when dropped (a failed step leaves none behind).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `streams` ffmpeg processes for one step.
pub fn run(
    case: Case,
    streams: usize,
    clip: &Clip,
    settings: &StepSettings,
) -> Result<StepRun, StepError> {
    let dir = std::env::temp_dir().join(format!(
        "sluice-bench-transcode-{}-{}",
        std::process::id(),
        case.name()
    ));
    std::fs::create_dir_all(&dir).map_err(StepError::io(format!("creating {}", dir.display())))?;
    let file = dir.join(format!("clip.{}", clip.format));
    std::fs::write(&file, &clip.file)
        .map_err(StepError::io(format!("writing {}", file.display())))?;
    let result = run_in(case, streams, &file, clip.format, settings, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    case: Case,
    streams: usize,
    file: &Path,
    format: &str,
    settings: &StepSettings,
    dir: &Path,
) -> Result<StepRun, StepError> {
    let warm = settings.warmup_frames();
    let total = warm + settings.window_frames();
    let mut sockets = Vec::with_capacity(streams);
    for _ in 0..streams {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(StepError::io("binding a receiver"))?;
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
        s.set_nonblocking(true)
            .map_err(StepError::io("a receiver socket"))?;
        sockets.push(s);
    }
    // The output runs a second past the window, so every process is still
    // there when the window's CPU is read.
    let seconds = f64::from(total) / f64::from(FPS) + TAIL.as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + FRAME * total + TAIL * 3 + Duration::from_secs(5);
    let receiving = {
        let stop = Arc::clone(&stop);
        let cores = settings.generator_cores.clone();
        let sockets = sockets
            .iter()
            .map(UdpSocket::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StepError::io("a receiver socket"))?;
        std::thread::spawn(move || receive(&sockets, &stop, &cores, deadline))
    };
    let mut children = Processes(Vec::with_capacity(streams));
    let mut logs = Vec::with_capacity(streams);
    for (i, s) in sockets.iter().enumerate() {
        let port = s
            .local_addr()
            .map_err(StepError::io("a receiver socket"))?
            .port();
        let log = dir.join(format!("ffmpeg-{i}.log"));
        let stderr = std::fs::File::create(&log)
            .map_err(StepError::io(format!("creating {}", log.display())))?;
        let cmd = command(case, file, format, seconds, port);
        // Pinned from its first instruction (taskset execs it), so no
        // thread ffmpeg starts escapes the cores under test; killed with
        // the bench (setpriv execs it too).
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        let mut wrapped = Command::new("setpriv");
        wrapped.args(["--pdeathsig", "KILL", "--"]);
        if !settings.transcode_cores.is_empty() {
            let list = settings
                .transcode_cores
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            wrapped.args(["taskset", "-c", &list]);
        }
        wrapped
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = wrapped.spawn().map_err(StepError::io(
            "running ffmpeg (under setpriv and taskset, from util-linux)",
        ))?;
        children.0.push(child);
        logs.push(log);
    }
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();

    super::sleep_until(start + FRAME * warm);
    let ticks0 = super::ticks_of(&pids);
    let t0 = Instant::now();
    super::sleep_until(start + FRAME * total);
    let ticks1 = super::ticks_of(&pids);
    let t1 = Instant::now();
    let wall = t1.duration_since(t0).as_secs_f64();
    // Every process ends on its own once its output is done (or is killed
    // past the deadline): then the last frames are in.
    let mut failed = Vec::new();
    for (i, c) in children.0.iter_mut().enumerate() {
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        let said = std::fs::read_to_string(&logs[i]).unwrap_or_default();
                        failed.push(format!("ffmpeg {i} exited {status}: {}", said.trim()));
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = c.kill();
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let got = receiving
        .join()
        .map_err(|_| StepError::Other("the receiver thread panicked".into()))??;
    drop(children);

    let mut run = StepRun {
        streams,
        cpu_seconds: ticks1.saturating_sub(ticks0) as f64 / crate::procstat::TICKS_PER_SECOND,
        wall_seconds: wall,
        note: failed.first().cloned(),
        ..StepRun::default()
    };
    // Frame n of every stream is nominally due at start + n frames (less
    // a start-up delay of its own, which the lateness measure drops).
    let timelines: Vec<Timeline> = got
        .iter()
        .map(|out| {
            (warm..total)
                .map(|n| {
                    let at = out.first_ts.and_then(|f| {
                        let ts = f.wrapping_add(n.wrapping_mul(TICKS_PER_FRAME));
                        out.arrivals.by_ts.get(&ts).copied()
                    });
                    (start + FRAME * n, at)
                })
                .collect()
        })
        .collect();
    judge(&timelines, settings.late_ms, false, &mut run);
    run.received = got.iter().map(|o| o.arrivals.by_ts.len() as u64).sum();
    let all: Vec<&Arrivals> = got.iter().map(|o| &o.arrivals).collect();
    run.out_in_window = Arrivals::count_between(&all, t0, t1);
    if run.on_time == 0 && run.note.is_none() {
        run.note = Some(Arrivals::summary(&all));
    }
    Ok(run)
}

/// One output stream: its frames, and the RTP timestamp of its first.
#[derive(Debug, Default, Clone)]
struct Output {
    arrivals: Arrivals,
    first_ts: Option<u32>,
}

fn receive(
    sockets: &[UdpSocket],
    stop: &AtomicBool,
    cores: &[usize],
    deadline: Instant,
) -> Result<Vec<Output>, StepError> {
    crate::pin::pin_current_thread(cores).map_err(StepError::Other)?;
    let mut got = vec![Output::default(); sockets.len()];
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        {
            let mut fds: Vec<PollFd<'_>> = sockets
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, 10u16);
        }
        let at = Instant::now();
        for (s, out) in sockets.iter().zip(&mut got) {
            for _ in 0..512 {
                let Ok(n) = s.recv(&mut buf) else { break };
                if n < 2 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                let Ok(p) = RtpPacket::parse(&buf[..n]) else {
                    continue;
                };
                let h = p.header();
                out.first_ts.get_or_insert(h.timestamp());
                out.arrivals.packets += 1;
                if h.marker() {
                    out.arrivals.record(h.timestamp(), at);
                }
            }
        }
    }
    Ok(got)
}

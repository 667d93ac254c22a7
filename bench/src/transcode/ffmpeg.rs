//! The ffmpeg side of a step: N `ffmpeg` CLI processes, one per stream,
//! decoding, scaling to 360p (bilinear, as the rendition) and encoding
//! with the same settings as a sluice rendition: the `hw/encoders`
//! profile's options, one thread, no B-frames, a 2 s GOP, CBR at the
//! rendition's default bitrate with a half-second VBV buffer (the command
//! `benches/rendition.rs` runs). Where each reads and writes
//! ([`FfmpegInput`]):
//!
//! - [`FfmpegInput::Srtp`] (the default): the same transcode as sluice's,
//!   SRTP to SRTP. Each process reads an SDP file (`m=video`, the codec's
//!   `a=rtpmap`, an RFC 4568 `a=crypto` line with a fresh key, which
//!   FFmpeg's SDP demuxer hands to its RTP demuxer to unprotect), fed by
//!   one of the bench's [`publish`](super::publish) publishers exactly as
//!   sluice's publisher legs are (same clip, pacing and SRTP protect), and
//!   writes SRTP (`-srtp_out_suite AES_CM_128_HMAC_SHA1_80`) to a socket
//!   of the bench, which unprotects it and times every frame's marker
//!   packet. A frame's delay is then its arrival less when its source
//!   frame's last packet left, as for sluice.
//! - [`FfmpegInput::File`]: each process reads the clip's file in real
//!   time (`-re`) and writes plain RTP (the round-4 baseline). Frame n of
//!   a stream is due at n × 33.3 ms after an instant the bench cannot see
//!   (when ffmpeg read its first packet), so a frame's delay is taken
//!   from the bench's own start.
//!
//! Either way lateness is taken from the stream's best frame, as
//! [`super::judge`] does for both targets.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::poll::{PollFd, PollFlags, poll};
use serde::Serialize;
use sluice::crypto::AnyGcm;
use sluice::rtp::RtpPacket;
use sluice::srtp::SrtpSession;
use sluice::transcode::{DEFAULT_RENDITION_KBPS, RENDITION_MTU};

use super::clip::{Clip, FPS, GOP, TICKS_PER_FRAME};
use super::publish::{PROFILE, Publisher};
use super::{Arrivals, Case, FRAME, StepError, StepRun, StepSettings, Timeline, judge};

/// How long past the window the receiver waits for the last frames.
const TAIL: Duration = Duration::from_secs(1);
/// How long the ffmpeg processes get to open their SDP input.
const LISTEN_WAIT: Duration = Duration::from_secs(10);
/// SRTP's authentication tag under [`PROFILE`], bytes.
const SRTP_TAG: usize = 10;

/// What each ffmpeg process reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum FfmpegInput {
    /// The bench's SRTP publisher, through an SDP file; SRTP out.
    #[default]
    Srtp,
    /// The clip's file at its own pace (`-re`); plain RTP out.
    File,
}

impl FfmpegInput {
    /// Its name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Srtp => "srtp",
            Self::File => "file",
        }
    }

    /// The input called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Srtp, Self::File]
            .into_iter()
            .find(|i| i.name() == name)
    }
}

/// Where one process reads from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The clip's file in ffmpeg's `format` (`h264` or `ivf`), `-re`.
    File {
        /// The file.
        path: &'a Path,
        /// ffmpeg's name of its format.
        format: &'a str,
        /// Seconds of output (`-t`).
        seconds: f64,
    },
    /// An SDP file describing the SRTP stream the bench publishes to it.
    Sdp(&'a Path),
}

/// Where one process writes to: a bench socket's port, under `srtp_key`
/// (base64 key || salt) or, without, plain RTP.
#[derive(Debug, Clone, Copy)]
pub struct Sink<'a> {
    /// The bench's receiving port on 127.0.0.1.
    pub port: u16,
    /// The SRTP master key and salt, base64 (RFC 4568 inline form).
    pub srtp_key: Option<&'a str>,
}

/// The SDP file of one stream: `case`'s codec on `port` of 127.0.0.1,
/// unprotected with `key_b64` (the base64 master key || salt of
/// AES_CM_128_HMAC_SHA1_80, RFC 4568 §9.1).
pub fn sdp(case: Case, port: u16, key_b64: &str) -> String {
    let pt = case.payload_type();
    let media = match case {
        Case::H264 => format!("a=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1\r\n"),
        Case::Vp8 => format!("a=rtpmap:{pt} VP8/90000\r\n"),
    };
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sluice-bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video {port} RTP/SAVP {pt}\r\n{media}a=crypto:1 {} inline:{key_b64}\r\na=recvonly\r\n",
        PROFILE.name()
    )
}

/// The ffmpeg command line of one stream.
pub fn command(case: Case, source: Source<'_>, sink: Sink<'_>) -> Command {
    let kind = case.encoder();
    let profile = kind.profile();
    let kbps = DEFAULT_RENDITION_KBPS;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-threads", "1"]);
    match source {
        Source::File {
            path,
            format,
            seconds,
        } => {
            cmd.args(["-re", "-f", format]);
            if format == "h264" {
                // A raw H.264 stream has no timing of its own.
                cmd.args(["-framerate", &FPS.to_string()]);
            }
            cmd.arg("-i")
                .arg(path)
                .args(["-t", &format!("{seconds:.3}")]);
        }
        Source::Sdp(path) => {
            // A live input: no `-re`; probing kept to the least that finds
            // the codec (the picture size comes from the first key frame's
            // headers, which the decoder reads anyway), nothing buffered
            // while probing, no reordering wait (loopback does not
            // reorder).
            cmd.args(["-protocol_whitelist", "file,udp,rtp,srtp"])
                .args(["-probesize", "32", "-analyzeduration", "0"])
                .args(["-fflags", "nobuffer", "-max_delay", "0"])
                .args(["-reorder_queue_size", "0", "-f", "sdp", "-i"])
                .arg(path);
        }
    }
    cmd.args(["-vf", "scale=640:360:flags=bilinear", "-c:v", kind.name()])
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
        .args(["-payload_type", &case.payload_type().to_string()]);
    match sink.srtp_key {
        // The same payload size as a rendition's: SRTP's tag rides on top.
        Some(key) => cmd
            .args(["-srtp_out_suite", PROFILE.name(), "-srtp_out_params", key])
            .arg(format!(
                "srtp://127.0.0.1:{}?pkt_size={}",
                sink.port,
                RENDITION_MTU + 12 + SRTP_TAG
            )),
        None => cmd.arg(format!(
            "rtp://127.0.0.1:{}?pkt_size={}",
            sink.port,
            RENDITION_MTU + 12
        )),
    };
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
    let result = match settings.ffmpeg_input {
        FfmpegInput::File => {
            let file = dir.join(format!("clip.{}", clip.format));
            std::fs::write(&file, &clip.file)
                .map_err(StepError::io(format!("writing {}", file.display())))?;
            run_file(case, streams, &file, clip.format, settings, &dir)
        }
        FfmpegInput::Srtp => run_srtp(case, streams, clip, settings, &dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A receiving socket of the bench on loopback.
fn receiver_socket() -> Result<UdpSocket, StepError> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(StepError::io("binding a receiver"))?;
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
    s.set_nonblocking(true)
        .map_err(StepError::io("a receiver socket"))?;
    Ok(s)
}

/// Starts `cmd` pinned to the cores under test from its first instruction
/// (taskset execs it), so no thread ffmpeg starts escapes them, and killed
/// with the bench (setpriv execs it too); its stderr goes to `log`.
fn spawn(cmd: &Command, settings: &StepSettings, log: &Path) -> Result<Child, StepError> {
    let stderr =
        std::fs::File::create(log).map_err(StepError::io(format!("creating {}", log.display())))?;
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
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    wrapped.spawn().map_err(StepError::io(
        "running ffmpeg (under setpriv and taskset, from util-linux)",
    ))
}

/// What a process that exited on its own said, for a step's note.
fn exited(children: &mut Processes, logs: &[std::path::PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for (i, c) in children.0.iter_mut().enumerate() {
        if let Ok(Some(status)) = c.try_wait()
            && !status.success()
        {
            failed.push(failure(i, status, &logs[i]));
        }
    }
    failed
}

/// What ffmpeg process `i` said when it exited with `status`.
fn failure(i: usize, status: std::process::ExitStatus, log: &Path) -> String {
    let said = std::fs::read_to_string(log).unwrap_or_default();
    format!("ffmpeg {i} exited {status}: {}", said.trim())
}

/// Sleeps through the step's warm-up and window (frames `warm..total`
/// after `start`) and returns the CPU seconds `pids` used in the window,
/// and the window's start and end.
fn cpu_window(pids: &[u32], start: Instant, warm: u32, total: u32) -> (f64, Instant, Instant) {
    super::sleep_until(start + FRAME * warm);
    let ticks0 = super::ticks_of(pids);
    let t0 = Instant::now();
    super::sleep_until(start + FRAME * total);
    let ticks1 = super::ticks_of(pids);
    (super::cpu_seconds(ticks0, ticks1), t0, Instant::now())
}

/// A free even UDP port on loopback whose odd neighbour (RTCP) is free
/// too, released for ffmpeg to take.
fn free_port_pair() -> Result<u16, StepError> {
    for _ in 0..64 {
        let a = UdpSocket::bind("127.0.0.1:0").map_err(StepError::io("finding a free port"))?;
        let port = a.local_addr().map_err(StepError::io("a free port"))?.port();
        if port % 2 == 1 || port == u16::MAX - 1 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(StepError::Other(
        "no free pair of UDP ports for ffmpeg's input".into(),
    ))
}

/// Whether something (ffmpeg) holds UDP `port`.
fn taken(port: u16) -> bool {
    UdpSocket::bind(("0.0.0.0", port)).is_err() || UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// The source frame an output stream's first frame codes: ffmpeg's RTP
/// timestamps keep the source's spacing from an offset of its own, and its
/// first picture is a key frame (a GOP start), so of the GOP starts the
/// latest from which no output frame would have come before its source
/// frame left. `outputs` are (frames after the first output frame, when
/// it came); `sent` when each source frame's last packet left.
pub fn first_source_frame(sent: &[Instant], outputs: &[(u32, Instant)]) -> Option<u32> {
    let gops = u32::try_from(sent.len()).ok()? / GOP;
    (0..=gops).rev().map(|g| g * GOP).find(|&k| {
        k < sent.len() as u32
            && outputs
                .iter()
                .all(|&(j, at)| sent.get((k + j) as usize).is_none_or(|&left| left <= at))
    })
}

fn run_srtp(
    case: Case,
    streams: usize,
    clip: &Clip,
    settings: &StepSettings,
    dir: &Path,
) -> Result<StepRun, StepError> {
    let warm = settings.warmup_frames();
    let total = warm + settings.window_frames();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sockets = Vec::with_capacity(streams);
    let mut out_keys = Vec::with_capacity(streams);
    let mut publishers = Vec::with_capacity(streams);
    let mut inputs = Vec::with_capacity(streams);
    let mut children = Processes(Vec::with_capacity(streams));
    let mut logs = Vec::with_capacity(streams);
    for i in 0..streams {
        let socket = receiver_socket()?;
        let port = socket
            .local_addr()
            .map_err(StepError::io("a receiver socket"))?
            .port();
        let (in_key, in_bytes) = super::publish::random_key()?;
        let (out_key, out_bytes) = super::publish::random_key()?;
        let input = free_port_pair()?;
        let sdp_path = dir.join(format!("in-{i}.sdp"));
        std::fs::write(&sdp_path, sdp(case, input, &b64.encode(&in_bytes)))
            .map_err(StepError::io(format!("writing {}", sdp_path.display())))?;
        let out_b64 = b64.encode(&out_bytes);
        let cmd = command(
            case,
            Source::Sdp(&sdp_path),
            Sink {
                port,
                srtp_key: Some(&out_b64),
            },
        );
        let log = dir.join(format!("ffmpeg-{i}.log"));
        children.0.push(spawn(&cmd, settings, &log)?);
        logs.push(log);
        let dest = SocketAddr::from(([127, 0, 0, 1], input));
        publishers.push(Publisher::to(dest, &in_key)?);
        sockets.push(socket);
        out_keys.push(out_key);
        inputs.push(input);
    }
    // The publishers start once every process listens (a packet sent
    // before is lost, and the first key frame with it).
    let listening_by = Instant::now() + LISTEN_WAIT;
    while !inputs.iter().all(|&p| taken(p)) {
        let failed = exited(&mut children, &logs);
        if let Some(first) = failed.first() {
            return Err(StepError::Other(first.clone()));
        }
        if Instant::now() >= listening_by {
            return Err(StepError::Other(format!(
                "ffmpeg did not open its SDP input within {} s",
                LISTEN_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + FRAME * total + TAIL * 3 + Duration::from_secs(5);
    let receiving = {
        let stop = Arc::clone(&stop);
        let cores = settings.generator_cores.clone();
        let keys = out_keys;
        std::thread::spawn(move || receive(&sockets, Some(&keys), &stop, &cores, deadline))
    };
    let sending = {
        let clip = clip.clone();
        let cores = settings.generator_cores.clone();
        let pt = case.payload_type();
        std::thread::spawn(move || {
            super::publish::send(publishers, &clip, pt, total, start, &cores)
        })
    };

    let (cpu_seconds, t0, t1) = cpu_window(&pids, start, warm, total);
    let wall = t1.duration_since(t0).as_secs_f64();
    let sent = super::joined(sending, "publisher")?;
    std::thread::sleep(TAIL);
    let failed = exited(&mut children, &logs);
    stop.store(true, Ordering::Relaxed);
    let got = super::joined(receiving, "receiver")?;
    drop(children);

    let mut run = StepRun {
        streams,
        cpu_seconds,
        wall_seconds: wall,
        note: failed.first().cloned(),
        ..StepRun::default()
    };
    let mut unaligned = 0;
    let timelines: Vec<Timeline> = sent
        .iter()
        .zip(&got)
        .map(|(times, out)| {
            let first = out.first_ts.and_then(|f| {
                let outputs: Vec<(u32, Instant)> = out
                    .arrivals
                    .by_ts
                    .iter()
                    .map(|(&ts, &at)| (frames_after(f, ts), at))
                    .collect();
                first_source_frame(times, &outputs).map(|k| (f, k))
            });
            if first.is_none() && out.first_ts.is_some() {
                unaligned += 1;
            }
            (warm..total)
                .map(|n| {
                    let at = first.and_then(|(f, k)| {
                        let j = n.checked_sub(k)?;
                        let ts = f.wrapping_add(j.wrapping_mul(TICKS_PER_FRAME));
                        out.arrivals.by_ts.get(&ts).copied()
                    });
                    (times[n as usize], at)
                })
                .collect()
        })
        .collect();
    judge(&timelines, settings.late_ms, true, &mut run);
    run.received = got.iter().map(|o| o.arrivals.by_ts.len() as u64).sum();
    let all: Vec<&Arrivals> = got.iter().map(|o| &o.arrivals).collect();
    run.out_in_window = Arrivals::count_between(&all, t0, t1);
    if unaligned > 0 && run.note.is_none() {
        run.note = Some(format!(
            "{unaligned} output stream(s) could not be matched with their source frames"
        ));
    }
    if run.on_time == 0 && run.note.is_none() {
        run.note = Some(Arrivals::summary(&all));
    }
    Ok(run)
}

/// Frames from the RTP timestamp `first` to `ts` (90 kHz, 30 fps).
fn frames_after(first: u32, ts: u32) -> u32 {
    (ts.wrapping_sub(first) + TICKS_PER_FRAME / 2) / TICKS_PER_FRAME
}

fn run_file(
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
        sockets.push(receiver_socket()?);
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
        std::thread::spawn(move || receive(&sockets, None, &stop, &cores, deadline))
    };
    let mut children = Processes(Vec::with_capacity(streams));
    let mut logs = Vec::with_capacity(streams);
    for (i, s) in sockets.iter().enumerate() {
        let port = s
            .local_addr()
            .map_err(StepError::io("a receiver socket"))?
            .port();
        let log = dir.join(format!("ffmpeg-{i}.log"));
        let source = Source::File {
            path: file,
            format,
            seconds,
        };
        let sink = Sink {
            port,
            srtp_key: None,
        };
        children
            .0
            .push(spawn(&command(case, source, sink), settings, &log)?);
        logs.push(log);
    }
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();

    let (cpu_seconds, t0, t1) = cpu_window(&pids, start, warm, total);
    let wall = t1.duration_since(t0).as_secs_f64();
    // Every process ends on its own once its output is done (or is killed
    // past the deadline): then the last frames are in.
    let mut failed = Vec::new();
    for (i, c) in children.0.iter_mut().enumerate() {
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed.push(failure(i, status, &logs[i]));
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
    let got = super::joined(receiving, "receiver")?;
    drop(children);

    let mut run = StepRun {
        streams,
        cpu_seconds,
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

/// Times every output frame's marker packet on each socket until `stop`
/// (or `deadline`); with `keys`, each socket's packets are SRTP under its
/// key and only those that authenticate count.
fn receive(
    sockets: &[UdpSocket],
    keys: Option<&[sluice::srtp::MasterKey]>,
    stop: &AtomicBool,
    cores: &[usize],
    deadline: Instant,
) -> Result<Vec<Output>, StepError> {
    crate::pin::pin_current_thread(cores).map_err(StepError::Other)?;
    let mut srtp = match keys {
        Some(keys) => keys
            .iter()
            .map(|k| SrtpSession::new(AnyGcm::default(), k).map(Some))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StepError::Other(format!("SRTP keys: {e}")))?,
        None => sockets.iter().map(|_| None).collect(),
    };
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
        for ((s, out), session) in sockets.iter().zip(&mut got).zip(&mut srtp) {
            for _ in 0..512 {
                let Ok(n) = s.recv(&mut buf) else { break };
                if n < 2 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                let len = match session {
                    Some(session) => match session.unprotect_rtp(&mut buf, n) {
                        Ok(len) => len,
                        Err(_) => continue,
                    },
                    None => n,
                };
                let Ok(p) = RtpPacket::parse(&buf[..len]) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdp_names_the_codec_the_port_and_the_key() {
        let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let h264 = sdp(Case::H264, 40_000, key);
        assert!(h264.starts_with("v=0\r\n"), "{h264}");
        assert!(h264.contains("c=IN IP4 127.0.0.1\r\n"), "{h264}");
        assert!(h264.contains("m=video 40000 RTP/SAVP 96\r\n"), "{h264}");
        assert!(h264.contains("a=rtpmap:96 H264/90000\r\n"), "{h264}");
        assert!(
            h264.contains("a=fmtp:96 packetization-mode=1\r\n"),
            "{h264}"
        );
        assert!(
            h264.contains(&format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
            )),
            "{h264}"
        );
        let vp8 = sdp(Case::Vp8, 40_002, key);
        assert!(vp8.contains("m=video 40002 RTP/SAVP 100\r\n"), "{vp8}");
        assert!(vp8.contains("a=rtpmap:100 VP8/90000\r\n"), "{vp8}");
        assert!(!vp8.contains("fmtp"), "{vp8}");
        // Every line ends in CRLF, the media's after its m= line.
        assert!(vp8.ends_with("\r\n") && !vp8.contains("\n\n"), "{vp8}");
        assert!(vp8.find("m=video") < vp8.find("a=crypto"), "{vp8}");
    }

    #[test]
    fn the_srtp_command_reads_the_sdp_and_writes_srtp() {
        let sdp = Path::new("/tmp/in.sdp");
        let cmd = command(
            Case::Vp8,
            Source::Sdp(sdp),
            Sink {
                port: 5004,
                srtp_key: Some("KEY"),
            },
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(
            line.contains("-protocol_whitelist file,udp,rtp,srtp"),
            "{line}"
        );
        assert!(line.contains("-f sdp -i /tmp/in.sdp"), "{line}");
        assert!(!args.iter().any(|a| a == "-re"), "{line}");
        assert!(
            line.contains("-srtp_out_suite AES_CM_128_HMAC_SHA1_80 -srtp_out_params KEY"),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                "srtp://127.0.0.1:5004?pkt_size={}",
                RENDITION_MTU + 22
            )),
            "{line}"
        );
        // The encoder settings are the file mode's.
        let file = command(
            Case::Vp8,
            Source::File {
                path: Path::new("/tmp/clip.ivf"),
                format: "ivf",
                seconds: 1.0,
            },
            Sink {
                port: 5004,
                srtp_key: None,
            },
        );
        let file_line = file
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let encoding = |l: &str| l[l.find("-vf").unwrap()..l.find("-f rtp").unwrap()].to_owned();
        assert_eq!(encoding(&line), encoding(&file_line));
        assert!(
            file_line.contains("-re -f ivf -i /tmp/clip.ivf -t 1.000"),
            "{file_line}"
        );
        assert!(
            file_line.ends_with("rtp://127.0.0.1:5004?pkt_size=1172"),
            "{file_line}"
        );
    }

    #[test]
    fn an_output_stream_is_matched_with_the_gop_its_first_frame_began() {
        let t0 = Instant::now();
        let ms = |m: u64| Duration::from_millis(m);
        // Source frame n left at n frame times.
        let sent: Vec<Instant> = (0..120).map(|n| t0 + FRAME * n).collect();
        // ffmpeg missed the first GOP: its first frame is source frame 30,
        // each out 12 ms after its source (one 200 ms late).
        let outputs: Vec<(u32, Instant)> = (0..60)
            .map(|j| {
                let extra = if j == 20 { ms(200) } else { ms(12) };
                (j, sent[30 + j as usize] + extra)
            })
            .collect();
        assert_eq!(first_source_frame(&sent, &outputs), Some(30));
        // Started at once: frame 0.
        let early: Vec<(u32, Instant)> = (0..60).map(|j| (j, sent[j as usize] + ms(5))).collect();
        assert_eq!(first_source_frame(&sent, &early), Some(0));
        // A stream more than a GOP behind all along cannot be told from
        // one a GOP later: the latest consistent start is taken (its
        // lateness, measured from its best frame, is the same either way).
        let behind: Vec<(u32, Instant)> =
            (0..60).map(|j| (j, sent[j as usize] + ms(1500))).collect();
        assert_eq!(first_source_frame(&sent, &behind), Some(30));
        // Output before any source frame left: nothing fits.
        assert_eq!(first_source_frame(&sent, &[(0, t0 - ms(1))]), None);
        assert_eq!(frames_after(u32::MAX - 1000, 2000), 1);
    }
}

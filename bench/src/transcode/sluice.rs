//! The sluice side of a step: a daemon with `[transcode]`, K meetings,
//! each with one real-time 720p30 SRTP publisher and one receiver asking
//! for `max_height = 360` in the source's codec, so the daemon runs one
//! transcode per meeting on its media threads, over its SRTP legs.
//!
//! The bench's two threads (pinned to the generator's cores): the
//! [`publish`](super::publish) sender replaying the clip for every
//! publisher; and a receiver timing every rendition packet with the
//! marker bit. The rendition keeps its source frame's RTP timestamp, so
//! each rendition frame is matched with the instant its source frame's
//! last packet left.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use serde_json::{Value, json};
use sluice::crypto::AnyGcm;
use sluice::rtp::rtcp::ReceiverReportBuilder;
use sluice::rtp::{RtpPacket, Ssrc};
use sluice::srtp::SrtpSession;

use super::clip::{Clip, TICKS_PER_FRAME};
use super::publish::{PROFILE, PUBLISHER_SSRC, Publisher};
use super::{Arrivals, Case, FRAME, StepError, StepRun, StepSettings, Timeline, judge};
use crate::http;
use crate::target::{Target, TargetError};
use crate::targets::sluice::{Sluice, SluiceOptions, find_binary, key};

/// The daemon's transcoder threads' names start so (`sluice-video-N`).
const VIDEO_THREADS: &str = "sluice-video";
/// How long past the window the receiver waits for the last frames.
const TAIL: Duration = Duration::from_secs(1);

/// One meeting's two legs, as the bench holds them.
struct Leg {
    socket: UdpSocket,
    relay: SocketAddr,
    send: SrtpSession<AnyGcm>,
    recv: SrtpSession<AnyGcm>,
    rtcp_ssrc: u32,
}

impl Leg {
    fn from_admission(body: &Value, meeting: usize) -> Result<Self, StepError> {
        let bad = |what: &str| {
            StepError::Target(TargetError::Admit {
                target: "sluice",
                meeting,
                reason: format!("the participant answer has no usable {what}: {body}"),
            })
        };
        let media = &body["media"];
        let relay: SocketAddr = media["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| bad("media.address"))?;
        let send = key(media, "client_to_relay", PROFILE).ok_or_else(|| bad("client_to_relay"))?;
        let recv = key(media, "relay_to_client", PROFILE).ok_or_else(|| bad("relay_to_client"))?;
        let rtcp_ssrc = media["rtcp_ssrc"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| bad("media.rtcp_ssrc"))?;
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(StepError::io("binding a leg"))?;
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(4 << 20);
        let srtp = |k| SrtpSession::new(AnyGcm::default(), k);
        Ok(Self {
            socket,
            relay,
            send: srtp(&send).map_err(|e| StepError::Other(format!("SRTP keys: {e}")))?,
            recv: srtp(&recv).map_err(|e| StepError::Other(format!("SRTP keys: {e}")))?,
            rtcp_ssrc,
        })
    }

    /// A receiver report under the leg's `rtcp_ssrc`: latches it.
    fn latch(&mut self) -> Result<(), StepError> {
        let mut buf = [0u8; 128];
        let len = ReceiverReportBuilder {
            ssrc: Ssrc(self.rtcp_ssrc),
            report_blocks: &[],
        }
        .write(&mut buf)
        .map_err(|e| StepError::Other(format!("receiver report: {e}")))?;
        let len = self
            .send
            .protect_rtcp(&mut buf, len)
            .map_err(|e| StepError::Other(format!("SRTCP: {e}")))?;
        self.socket
            .send_to(&buf[..len], self.relay)
            .map_err(StepError::io("latching a leg"))?;
        Ok(())
    }
}

fn post(api: SocketAddr, meeting: usize, path: &str, body: &Value) -> Result<Value, StepError> {
    let fail = |reason: String| {
        StepError::Target(TargetError::Admit {
            target: "sluice",
            meeting,
            reason,
        })
    };
    let r = http::request(api, "POST", path, Some(body)).map_err(fail)?;
    if r.status != 201 {
        return Err(fail(format!("{path} answered {}: {}", r.status, r.text)));
    }
    Ok(r.json())
}

fn metrics(api: SocketAddr) -> String {
    http::request(api, "GET", "/metrics", None)
        .map(|r| r.text)
        .unwrap_or_default()
}

/// The daemon's config beyond the bench's usual one.
fn transcode_config(case: Case, threads: usize) -> String {
    format!(
        "\n[transcode]\nenabled = true\nencoders = [\"{}\"]\nmax_sessions = 100000\nthreads = {threads}\nlinger_secs = 1\n",
        case.encoder().name()
    )
}

/// Runs `streams` transcodes through a fresh daemon for one step.
pub fn run(
    case: Case,
    streams: usize,
    clip: &Clip,
    settings: &StepSettings,
) -> Result<StepRun, StepError> {
    let binary = match &settings.sluice_binary {
        Some(p) => p.clone(),
        None => find_binary().map_err(StepError::Other)?,
    };
    let cores = &settings.transcode_cores;
    let options = SluiceOptions {
        binary,
        relay_cores: cores.clone(),
        workers: 0,
        io: "auto".to_owned(),
        cluster: None,
    };
    let threads = settings.threads;
    let daemon = Sluice::start_with(&options, &transcode_config(case, threads))?;
    let api = daemon.api();
    let pid = daemon.pid().unwrap_or_default();
    let pt = case.payload_type();
    let mut publishers = Vec::with_capacity(streams);
    let mut receivers = Vec::with_capacity(streams);
    for k in 0..streams {
        let id = format!("tc-{k}");
        post(
            api,
            k,
            "/v1/meetings",
            &json!({"id": id, "mode": "standard", "owner": {"account": "sluice-bench", "verified": true}}),
        )?;
        let path = format!("/v1/meetings/{id}/participants");
        let camera = post(
            api,
            k,
            &path,
            &json!({"name": "camera", "srtp_profile": PROFILE.name()}),
        )?;
        let receive = json!({"video": {"codecs": [{"name": case.api_name(), "payload_type": pt}], "max_height": 360}});
        let thin = post(
            api,
            k,
            &path,
            &json!({"name": "thin", "srtp_profile": PROFILE.name(), "receive": receive}),
        )?;
        let mut publisher = Leg::from_admission(&camera, k)?;
        let mut receiver = Leg::from_admission(&thin, k)?;
        publisher.latch()?;
        receiver.latch()?;
        let cid = camera["id"].as_str().unwrap_or_default();
        post(
            api,
            k,
            &format!("{path}/{cid}/streams"),
            &json!({"ssrc": PUBLISHER_SSRC + k as u32, "kind": "video", "codec": case.api_name(), "payload_type": pt}),
        )?;
        publishers.push(Publisher {
            socket: publisher.socket,
            dest: publisher.relay,
            srtp: publisher.send,
        });
        receivers.push(receiver);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let warm = settings.warmup_frames();
    let window = settings.window_frames();
    let total = warm + window;
    let start = Instant::now() + Duration::from_millis(100);
    let run_for = FRAME * total + TAIL + Duration::from_secs(2);
    let receiving = {
        let stop = Arc::clone(&stop);
        let cores = settings.generator_cores.clone();
        std::thread::spawn(move || receive(receivers, &stop, &cores, start + run_for))
    };
    let sending = {
        let clip = clip.clone();
        let cores = settings.generator_cores.clone();
        std::thread::spawn(move || {
            super::publish::send(publishers, &clip, pt, total, start, &cores)
        })
    };

    // The window: CPU and the transcoder's codec times from its start to
    // its end.
    sleep_until_frame(start, warm);
    let (ticks0, text0) = (super::ticks_of(&[pid]), metrics(api));
    let video0 = super::thread_ticks(pid, VIDEO_THREADS);
    let t0 = Instant::now();
    sleep_until_frame(start, total);
    let (ticks1, text1) = (super::ticks_of(&[pid]), metrics(api));
    let video1 = super::thread_ticks(pid, VIDEO_THREADS);
    let t1 = Instant::now();
    let wall = t1.duration_since(t0).as_secs_f64();
    let sent = super::joined(sending, "publisher")?;
    std::thread::sleep(TAIL);
    stop.store(true, Ordering::Relaxed);
    let got = super::joined(receiving, "receiver")?;

    let mut run = StepRun {
        streams,
        cpu_seconds: super::cpu_seconds(ticks0, ticks1),
        wall_seconds: wall,
        transcoder_cpu_seconds: Some(super::cpu_seconds(video0, video1)),
        ..StepRun::default()
    };
    let delta = |series: &str| http::metric(&text1, series) - http::metric(&text0, series);
    let per_frame_ms = |sum: &str, count: &str| {
        let n = delta(count);
        (n > 0.0).then(|| delta(sum) / n * 1e3)
    };
    run.encode_ms = per_frame_ms(
        "sluice_transcode_encode_seconds_sum",
        "sluice_transcode_encode_seconds_count",
    );
    run.decode_ms = per_frame_ms(
        "sluice_transcode_decode_seconds_sum",
        "sluice_transcode_decode_seconds_count",
    );
    let started = http::metric(&text1, "sluice_transcode_started_total") as usize;
    if started != streams {
        run.note = Some(format!("{started} of {streams} transcodes started"));
    }
    let timelines: Vec<Timeline> = sent
        .iter()
        .zip(&got)
        .map(|(times, arrivals)| {
            (warm..total)
                .map(|n| {
                    let ts = n.wrapping_mul(TICKS_PER_FRAME);
                    (times[n as usize], arrivals.by_ts.get(&ts).copied())
                })
                .collect()
        })
        .collect();
    judge(&timelines, settings.late_ms, true, &mut run);
    run.received = got.iter().map(|a| a.by_ts.len() as u64).sum();
    run.out_in_window = Arrivals::count_between(&got.iter().collect::<Vec<_>>(), t0, t1);
    if run.on_time == 0 && run.note.is_none() {
        run.note = Some(Arrivals::summary(&got.iter().collect::<Vec<_>>()));
    }
    drop(daemon);
    Ok(run)
}

fn sleep_until_frame(start: Instant, n: u32) {
    super::sleep_until(start + FRAME * n);
}

/// Times every rendition frame's marker packet on each receiver's leg
/// until `stop` (or `deadline`).
fn receive(
    mut receivers: Vec<Leg>,
    stop: &AtomicBool,
    cores: &[usize],
    deadline: Instant,
) -> Result<Vec<Arrivals>, StepError> {
    crate::pin::pin_current_thread(cores).map_err(StepError::Other)?;
    for leg in &receivers {
        leg.socket
            .set_nonblocking(true)
            .map_err(StepError::io("a receiver socket"))?;
    }
    let mut got = vec![Arrivals::default(); receivers.len()];
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        {
            let mut fds: Vec<PollFd<'_>> = receivers
                .iter()
                .map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, 10u16);
        }
        let at = Instant::now();
        for (leg, arrivals) in receivers.iter_mut().zip(&mut got) {
            for _ in 0..512 {
                let Ok(n) = leg.socket.recv(&mut buf) else {
                    break;
                };
                if n < 2 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                let Ok(len) = leg.recv.unprotect_rtp(&mut buf, n) else {
                    continue;
                };
                let Ok(p) = RtpPacket::parse(&buf[..len]) else {
                    continue;
                };
                let h = p.header();
                // The rendition's packets only (not the original, which
                // the receiver gets until the relay knows the height).
                if h.ssrc().0 & 0xffff_0000 != PUBLISHER_SSRC {
                    arrivals.packets += 1;
                    if h.marker() {
                        arrivals.record(h.timestamp(), at);
                    }
                }
            }
        }
    }
    Ok(got)
}

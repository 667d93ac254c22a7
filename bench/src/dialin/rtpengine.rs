//! The rtpengine target: Debian's rtpengine in userspace transcoding N
//! calls PCMU ↔ Opus, fed real RTP over loopback.
//!
//! Per call, side A (the phone) offers PCMU and telephone-event; the offer
//! carries `codec: {transcode: ["opus/48000/2/24000"]}`, so rtpengine adds
//! Opus to what it offers side B (the meeting), and B answers Opus only.
//! rtpengine then decodes A's PCMU, resamples and encodes Opus for B, and
//! decodes B's Opus, resamples and encodes PCMU for A. No mixing: each
//! call has one Opus stream, not three.
//!
//! All calls' A sides share one socket and all B sides another; which call
//! a packet belongs to is told by the rtpengine port it came from. A sender
//! thread paces every call's two streams (PCMU from A, pre-encoded Opus
//! from B) every 20 ms, the calls' phases spread evenly over the 20 ms;
//! two receiver threads count what arrives and its payload type: A must
//! get PCMU (0), B the Opus payload type rtpengine offered. That proves it
//! transcodes.
//!
//! "Keeps up" is read over a steady window after a warm-up: loss (sent
//! minus received, after a drain) at most 0.1 % each way; the backlog
//! (sent minus received) grows by at most one frame (20 ms) per call over
//! the window, and is at most [`MAX_BACKLOG_FRAMES`] per call when it
//! closes. A transcoder short of CPU first queues, then drops, so the
//! backlog catches it before the loss does; one that fell behind in the
//! warm-up and is still catching up fails on the backlog too.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice::rtp::{PayloadType, RtpBuilder, RtpHeader, SeqNum, Ssrc};

use super::audio::{self, CYCLE_FRAMES};
use crate::procstat;
use crate::rtpengine::bencode::Value;
use crate::rtpengine::sdp::RelayedMedia;
use crate::rtpengine::{Daemon, ng::NgError};
use crate::target::TargetError;

/// Frame interval of both streams.
const FRAME: Duration = Duration::from_millis(20);
/// PCMU's static payload type.
const PCMU: u8 = 0;
/// The telephone-event payload type A offers.
const TELEPHONE_EVENT: u8 = 101;
/// What the offer asks rtpengine to add for side B: Opus at the same
/// bitrate sluice sends the meeting (rtpengine 10.5 has no setting for
/// the encoder's complexity; FFmpeg's libopus default, 10, applies).
pub const TRANSCODE_TO: &str = "opus/48000/2/24000";
/// The most backlog per call at the window's close that still passes:
/// the frame the transcoder holds plus one 20 ms frame of queueing, the
/// counterpart of sluice's "finished before the next frame is due".
pub const MAX_BACKLOG_FRAMES: f64 = 2.0;
/// A send later than this after its due time counts as late.
const LATE: Duration = Duration::from_millis(1);

/// How a run is set up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineSettings {
    /// Seconds of steady window after the warm-up.
    pub seconds: f64,
    /// Seconds of traffic before the window opens.
    pub warmup_seconds: f64,
    /// Cores for rtpengine's threads (empty: any).
    pub engine_cores: Vec<usize>,
    /// Cores for the bench's sender and receivers (empty: any).
    pub generator_cores: Vec<usize>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            seconds: 10.0,
            warmup_seconds: 1.0,
            engine_cores: Vec::new(),
            generator_cores: Vec::new(),
        }
    }
}

/// One direction's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Direction {
    /// Packets the bench sent into rtpengine for this direction, all run.
    pub sent: u64,
    /// Packets that came out at the far side, all run.
    pub received: u64,
    /// Of those, how many had the expected payload type.
    pub expected_pt: u64,
    /// Packets sent during the steady window.
    pub window_sent: u64,
    /// Packets received for them (after the drain).
    pub window_received: u64,
    /// Lost in the window, % of `window_sent` (may read slightly below
    /// zero: packets in flight when the window opened).
    pub loss_pct: f64,
    /// How much the backlog (sent − received) grew over the window, in
    /// 20 ms frames per call.
    pub backlog_growth_frames: f64,
    /// The backlog when the window closed (before the drain), in 20 ms
    /// frames per call: about one frame rtpengine's transcoder holds, plus
    /// the frames still queued in front of it, i.e. how late it runs.
    pub backlog_frames: f64,
}

impl Direction {
    fn passes(&self) -> bool {
        self.received > 0
            && self.expected_pt == self.received
            && self.loss_pct <= 0.1
            && self.backlog_growth_frames <= 1.0
            && self.backlog_frames <= MAX_BACKLOG_FRAMES
    }
}

/// What one run of N transcoded calls measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EngineRun {
    /// Concurrent calls.
    pub calls: usize,
    /// rtpengine's version.
    pub version: String,
    /// Its threads during the run.
    pub threads: usize,
    /// The Opus payload type rtpengine offered side B.
    pub opus_pt: u8,
    /// A → B: PCMU in, Opus out (received at B).
    pub to_meeting: Direction,
    /// B → A: Opus in, PCMU out (received at A).
    pub to_caller: Direction,
    /// rtpengine's CPU over the window, % of one core (all its threads).
    pub cpu_pct: f64,
    /// Calls per fully busy core at this load: calls ÷ (CPU ÷ 100).
    pub calls_per_core: f64,
    /// The bench's sends more than 1 ms after their due time, %.
    pub generator_late_pct: f64,
}

impl EngineRun {
    /// Passes: both directions arrive transcoded, lose at most 0.1 % and
    /// do not fall behind. A generator that sends late (see
    /// [`Self::generator_late_pct`]) jitters rtpengine's input but still
    /// offers every packet, so it is reported, not failed.
    pub fn passes(&self) -> bool {
        self.to_meeting.passes() && self.to_caller.passes()
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// rtpengine did not start.
    #[error(transparent)]
    Start(#[from] TargetError),
    /// A control request failed.
    #[error("call {call}: {source}")]
    Ng {
        /// The call's index.
        call: usize,
        /// What went wrong.
        source: NgError,
    },
    /// rtpengine's SDP lacked what the call needs.
    #[error("call {call}: {reason}")]
    Sdp {
        /// The call's index.
        call: usize,
        /// What was missing.
        reason: String,
    },
    /// A socket, thread or codec failed.
    #[error("{0}")]
    Setup(String),
}

/// One call as set up: where each side sends.
#[derive(Debug, Clone, Copy)]
struct CallPorts {
    /// rtpengine's port for side A (A sends PCMU there, gets PCMU from it).
    a: u16,
    /// rtpengine's port for side B.
    b: u16,
}

/// Runs `calls` transcoded calls through a fresh rtpengine.
pub fn run(calls: usize, settings: &EngineSettings) -> Result<EngineRun, EngineError> {
    let setup = |e: std::io::Error| EngineError::Setup(e.to_string());
    let media_ports = u16::try_from(calls * 4 + 1024).unwrap_or(u16::MAX);
    let mut daemon = Daemon::start(media_ports)?;
    if !settings.engine_cores.is_empty() {
        crate::pin::pin_process(daemon.pid(), &settings.engine_cores)
            .map_err(EngineError::Setup)?;
    }
    let side_a = socket().map_err(setup)?;
    let side_b = socket().map_err(setup)?;
    let (addr_a, addr_b) = (
        side_a.local_addr().map_err(setup)?,
        side_b.local_addr().map_err(setup)?,
    );
    let mut ports = Vec::with_capacity(calls);
    let mut opus_pt = 0;
    for call in 0..calls {
        let (p, pt) = set_up(&mut daemon, call, addr_a, addr_b)?;
        ports.push(p);
        opus_pt = pt;
    }

    let speaker = audio::speaker_frames(audio::SPEAKERS[0].0, audio::SPEAKERS[0].1)
        .map_err(|e| EngineError::Setup(e.to_string()))?;
    let caller = audio::caller_frames(sluice::media::G711::Mu);

    // Which call an rtpengine port belongs to, per side.
    let mut call_of_a = vec![u32::MAX; 65_536];
    let mut call_of_b = vec![u32::MAX; 65_536];
    for (i, p) in ports.iter().enumerate() {
        call_of_a[usize::from(p.a)] = i as u32;
        call_of_b[usize::from(p.b)] = i as u32;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let at_a = Arc::new(Counts::default());
    let at_b = Arc::new(Counts::default());
    let receivers = [
        spawn_receiver(&side_a, call_of_a, PCMU, &at_a, &stop, settings)?,
        spawn_receiver(&side_b, call_of_b, opus_pt, &at_b, &stop, settings)?,
    ];

    let pid = daemon.pid().to_string();
    let plan = SendPlan {
        ports: &ports,
        caller: &caller,
        speaker: &speaker,
        opus_pt,
    };
    let paced = std::thread::scope(|s| {
        s.spawn(|| {
            let _ = crate::pin::pin_current_thread(&settings.generator_cores);
            send(&plan, &side_a, &side_b, settings, &at_a, &at_b, &pid)
        })
        .join()
        .map_err(|_| EngineError::Setup("the sender thread panicked".into()))
    })??;
    // Drain: what rtpengine still holds or has in flight arrives.
    std::thread::sleep(Duration::from_millis(300));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        let _ = r.join();
    }
    let version = daemon.version().to_owned();
    drop(daemon);

    let direction = |sent: u64, window: &Window, counts: &Counts| {
        let received = counts.total.load(Ordering::Relaxed);
        let window_received = received - window.received_at_open;
        let window_sent = window.sent_at_close - window.sent_at_open;
        let backlog_open = window.sent_at_open as f64 - window.received_at_open as f64;
        let backlog_close = window.sent_at_close as f64 - window.received_at_close as f64;
        Direction {
            sent,
            received,
            expected_pt: counts.expected_pt.load(Ordering::Relaxed),
            window_sent,
            window_received,
            loss_pct: (window_sent as f64 - window_received as f64) / window_sent.max(1) as f64
                * 100.0,
            backlog_growth_frames: (backlog_close - backlog_open) / calls.max(1) as f64,
            backlog_frames: backlog_close / calls.max(1) as f64,
        }
    };
    let cpu_pct = paced.cpu_pct;
    Ok(EngineRun {
        calls,
        version,
        threads,
        opus_pt,
        to_meeting: direction(paced.sent, &paced.to_b, &at_b),
        to_caller: direction(paced.sent, &paced.to_a, &at_a),
        cpu_pct,
        calls_per_core: if cpu_pct > 0.0 {
            calls as f64 / (cpu_pct / 100.0)
        } else {
            0.0
        },
        generator_late_pct: paced.late as f64 / (paced.sent * 2).max(1) as f64 * 100.0,
    })
}

/// A loopback UDP socket with a 4 MiB receive buffer.
fn socket() -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_recv_buffer_size(4 << 20)?;
    s.set_send_buffer_size(4 << 20)?;
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Offer from A (PCMU + telephone-event, transcode to Opus), answer from
/// B (Opus only). Returns rtpengine's ports and the Opus payload type.
fn set_up(
    daemon: &mut Daemon,
    call: usize,
    a: SocketAddr,
    b: SocketAddr,
) -> Result<(CallPorts, u8), EngineError> {
    let ng = |source| EngineError::Ng { call, source };
    let sdp_err = |reason: String| EngineError::Sdp { call, reason };
    let call_id = format!("sluice-bench-dialin-{call}");
    let offer_sdp = sdp(
        a,
        &[
            (PCMU, "PCMU/8000", None),
            (TELEPHONE_EVENT, "telephone-event/8000", Some("0-16")),
        ],
    );
    let offer = Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str(&call_id)),
        ("from-tag", Value::str("caller")),
        ("sdp", Value::str(&offer_sdp)),
        ("transport-protocol", Value::str("RTP/AVP")),
        ("ICE", Value::str("remove")),
        ("DTLS", Value::str("off")),
        (
            "replace",
            Value::str_list(&["origin", "session-connection"]),
        ),
        (
            "codec",
            Value::dict([("transcode", Value::str_list(&[TRANSCODE_TO]))]),
        ),
    ]);
    let reply = daemon.request("offer", &offer).map_err(ng)?;
    let to_b = reply_text(&reply).map_err(ng)?;
    let opus_pt = rtpmap_pt(&to_b, "opus/48000")
        .ok_or_else(|| sdp_err(format!("rtpengine offered B no Opus: {to_b:?}")))?;
    let b_port = RelayedMedia::parse(&to_b)
        .map_err(|e| sdp_err(e.to_string()))?
        .addr
        .port();

    let answer_sdp = sdp(b, &[(opus_pt, "opus/48000/2", Some("useinbandfec=1"))]);
    let answer = Value::dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str(&call_id)),
        ("from-tag", Value::str("caller")),
        ("to-tag", Value::str("meeting")),
        ("sdp", Value::str(&answer_sdp)),
        ("ICE", Value::str("remove")),
        ("DTLS", Value::str("off")),
        (
            "replace",
            Value::str_list(&["origin", "session-connection"]),
        ),
    ]);
    let reply = daemon.request("answer", &answer).map_err(ng)?;
    let to_a = reply_text(&reply).map_err(ng)?;
    if rtpmap_pt(&to_a, "PCMU/8000") != Some(PCMU) && !m_line_has(&to_a, PCMU) {
        return Err(sdp_err(format!(
            "rtpengine answered A without PCMU: {to_a:?}"
        )));
    }
    let a_port = RelayedMedia::parse(&to_a)
        .map_err(|e| sdp_err(e.to_string()))?
        .addr
        .port();
    Ok((
        CallPorts {
            a: a_port,
            b: b_port,
        },
        opus_pt,
    ))
}

/// An audio SDP with one m-line of `formats` (payload type, rtpmap, fmtp).
fn sdp(addr: SocketAddr, formats: &[(u8, &str, Option<&str>)]) -> String {
    let mut s = String::with_capacity(256);
    // `write!` into a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=sluice-bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP",
        ip = addr.ip(),
        port = addr.port()
    );
    for (pt, _, _) in formats {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    for (pt, rtpmap, fmtp) in formats {
        let _ = write!(s, "a=rtpmap:{pt} {rtpmap}\r\n");
        if let Some(fmtp) = fmtp {
            let _ = write!(s, "a=fmtp:{pt} {fmtp}\r\n");
        }
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// The reply's SDP text.
fn reply_text(reply: &Value) -> Result<String, NgError> {
    reply
        .field("sdp")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(NgError::Malformed("reply has no \"sdp\""))
}

/// The payload type of the first `a=rtpmap` whose encoding starts with
/// `codec` (case-insensitive), e.g. `opus/48000`.
fn rtpmap_pt(sdp: &str, codec: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.trim_end().strip_prefix("a=rtpmap:")?;
        let (pt, encoding) = rest.split_once(' ')?;
        encoding
            .to_ascii_lowercase()
            .starts_with(&codec.to_ascii_lowercase())
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// Whether the first m-line lists payload type `pt` (static types may go
/// without an rtpmap).
fn m_line_has(sdp: &str, pt: u8) -> bool {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m="))
        .is_some_and(|m| {
            m.split_ascii_whitespace()
                .skip(3)
                .any(|f| f == pt.to_string())
        })
}

/// Packets arriving at one side.
#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    expected_pt: AtomicU64,
}

fn spawn_receiver(
    socket: &UdpSocket,
    call_of: Vec<u32>,
    pt: u8,
    counts: &Arc<Counts>,
    stop: &Arc<AtomicBool>,
    settings: &EngineSettings,
) -> Result<std::thread::JoinHandle<()>, EngineError> {
    let socket = socket
        .try_clone()
        .map_err(|e| EngineError::Setup(e.to_string()))?;
    let (counts, stop) = (Arc::clone(counts), Arc::clone(stop));
    let cores = settings.generator_cores.clone();
    Ok(std::thread::spawn(move || {
        let _ = crate::pin::pin_current_thread(&cores);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            // Only packets from one of this run's calls count.
            if call_of[usize::from(from.port())] == u32::MAX {
                continue;
            }
            counts.total.fetch_add(1, Ordering::Relaxed);
            if RtpHeader::parse(&buf[..n]).is_ok_and(|h| h.payload_type().get() == pt) {
                counts.expected_pt.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
}

/// What the sender sends: per call, PCMU from A and Opus from B.
struct SendPlan<'a> {
    ports: &'a [CallPorts],
    caller: &'a [[u8; 160]],
    speaker: &'a [audio::OpusFrame],
    opus_pt: u8,
}

/// Sent and received counts when the window opened and closed.
#[derive(Debug, Default)]
struct Window {
    sent_at_open: u64,
    received_at_open: u64,
    sent_at_close: u64,
    received_at_close: u64,
}

/// What the sender saw.
#[derive(Debug, Default)]
struct Paced {
    /// Packets sent per direction (the same both ways).
    sent: u64,
    /// Sends more than [`LATE`] after their due time.
    late: u64,
    to_a: Window,
    to_b: Window,
    /// rtpengine's CPU over the window, % of one core.
    cpu_pct: f64,
}

/// Paces every call's two streams for the warm-up and the window, from
/// one absolute schedule: call `i`'s frame `k` is due at `start + k × 20
/// ms + i × 20 ms / N`.
fn send(
    plan: &SendPlan<'_>,
    side_a: &UdpSocket,
    side_b: &UdpSocket,
    settings: &EngineSettings,
    at_a: &Counts,
    at_b: &Counts,
    pid: &str,
) -> Result<Paced, EngineError> {
    let calls = plan.ports.len();
    let warmup = (settings.warmup_seconds / FRAME.as_secs_f64()).round() as u64;
    let frames = warmup + (settings.seconds / FRAME.as_secs_f64()).round().max(1.0) as u64;
    let pcmu = PayloadType::new(PCMU).ok_or_else(|| EngineError::Setup("PT 0".into()))?;
    let opus = PayloadType::new(plan.opus_pt)
        .ok_or_else(|| EngineError::Setup(format!("bad Opus PT {}", plan.opus_pt)))?;
    let mut paced = Paced::default();
    let mut cpu_open = (Instant::now(), 0);
    let mut buf = [0u8; 1500];
    let start = Instant::now() + FRAME;
    let spacing = FRAME / calls.max(1) as u32;
    for k in 0..frames {
        if k == warmup {
            paced.to_a.sent_at_open = paced.sent;
            paced.to_b.sent_at_open = paced.sent;
            paced.to_a.received_at_open = at_a.total.load(Ordering::Relaxed);
            paced.to_b.received_at_open = at_b.total.load(Ordering::Relaxed);
            cpu_open = (Instant::now(), procstat::cpu_ticks(pid).unwrap_or(0));
        }
        let round = start + FRAME * k as u32;
        for (i, call) in plan.ports.iter().enumerate() {
            let due = round + spacing * i as u32;
            let now = Instant::now();
            if due > now + Duration::from_micros(200) {
                std::thread::sleep(due - now - Duration::from_micros(100));
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            if Instant::now() > due + LATE {
                paced.late += 2;
            }
            let at = (i * 7 + k as usize) % CYCLE_FRAMES;
            let seq = SeqNum(k as u16);
            let write = |pt, ts, ssrc, payload: &[u8], buf: &mut [u8]| {
                RtpBuilder::new(pt, seq, ts, Ssrc(ssrc))
                    .write(payload, buf)
                    .map_err(|e| EngineError::Setup(format!("RTP: {e}")))
            };
            let n = write(
                pcmu,
                (k as u32).wrapping_mul(160),
                0xA000_0000 | i as u32,
                &plan.caller[at],
                &mut buf,
            )?;
            // A full send buffer or a refused port: the packet is lost,
            // which the counts show.
            let _ = side_a.send_to(&buf[..n], SocketAddr::from(([127, 0, 0, 1], call.a)));
            let n = write(
                opus,
                (k as u32).wrapping_mul(960),
                0xB000_0000 | i as u32,
                &plan.speaker[at].payload,
                &mut buf,
            )?;
            let _ = side_b.send_to(&buf[..n], SocketAddr::from(([127, 0, 0, 1], call.b)));
            paced.sent += 1;
        }
    }
    let closed = Instant::now();
    let cpu_close = procstat::cpu_ticks(pid).unwrap_or(0);
    paced.to_a.sent_at_close = paced.sent;
    paced.to_b.sent_at_close = paced.sent;
    paced.to_a.received_at_close = at_a.total.load(Ordering::Relaxed);
    paced.to_b.received_at_close = at_b.total.load(Ordering::Relaxed);
    let secs = closed.duration_since(cpu_open.0).as_secs_f64();
    if secs > 0.0 {
        paced.cpu_pct =
            cpu_close.saturating_sub(cpu_open.1) as f64 / procstat::TICKS_PER_SECOND / secs * 100.0;
    }
    Ok(paced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payload_types_from_rewritten_sdp() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 0 101 96\r\n\
                   a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                   a=rtpmap:96 opus/48000/2\r\n";
        assert_eq!(rtpmap_pt(sdp, "opus/48000"), Some(96));
        assert_eq!(rtpmap_pt(sdp, "PCMU/8000"), Some(0));
        assert_eq!(rtpmap_pt(sdp, "G722"), None);
        assert!(m_line_has(sdp, 0) && m_line_has(sdp, 96) && !m_line_has(sdp, 8));
    }

    #[test]
    fn writes_the_callers_offer() {
        let s = sdp(
            "127.0.0.1:4000".parse().unwrap(),
            &[
                (0, "PCMU/8000", None),
                (101, "telephone-event/8000", Some("0-16")),
            ],
        );
        assert!(s.contains("m=audio 4000 RTP/AVP 0 101\r\n"), "{s}");
        assert!(s.contains("a=fmtp:101 0-16\r\n"));
        assert_eq!(RelayedMedia::parse(&s).unwrap().addr.port(), 4000);
    }
}

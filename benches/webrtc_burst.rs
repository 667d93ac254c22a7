//! DTLS-SRTP handshakes per second during a burst of browser joins, and
//! what the burst does to streams that were flowing before it (#9
//! "Performance"): a real daemon in this process, one packet worker and
//! the media port's one handshake thread, 20 established SDES streams timed
//! packet by packet every 5 ms, and a client (this process's main thread)
//! doing the browsers' side: ICE check with USE-CANDIDATE, then the DTLS
//! client handshake, for `SLUICE_BURST` joins (default 2,000) in rounds of
//! `SLUICE_BURST_ROUND` (default 250; every session of a round is in
//! flight at once).
//!
//! The issue's setup is "handshakes on one core, the client side on the
//! other core", and the client stands for browsers on other machines. So,
//! on a box of two cores or more (`SLUICE_BURST_PIN=0` turns it off):
//! - the relay's threads (packet worker, handshake thread, control API)
//!   are pinned to core 0, the client and the stream timer to core 1;
//! - the client runs in `SCHED_IDLE` (`support::timed::as_remote_machine`):
//!   on core 1 it gets what the timer leaves, so it never delays the
//!   timer's sends, as a remote machine would not;
//! - the timer measures each packet from just before its `sendto` to the
//!   kernel's receive timestamp on the receiver's socket
//!   (`support::timed::flow`), so how late the timer itself runs is not in
//!   the figure; the relay's own turn time (its latency histogram) and the
//!   CPU each thread used are printed beside it.
//!
//! The figures are made robust against a noisy box by interleaving: a
//! quiet phase of 1 s before every round and after the last, so the quiet
//! and the burst samples come from the same stretch of time (with one
//! quiet run before the storm, #12's quiet p99 alone moved 165 µs → 4.3 ms
//! between runs of one binary).
//! The handshake rate is joins / the summed handshake phases (each round's
//! admissions and WHIP POSTs are timed apart); the p99 ratio is the
//! streams' p99 over all handshake phases against their p99 over all quiet
//! phases. `SLUICE_BACKGROUND` sets the daemon's `[media] background` (the
//! class of its non-worker threads) and `SLUICE_WORKER_CLASS` its
//! `[media] worker_class` (the packet worker's), to compare them.
//!
//! `SLUICE_BURST_AWAKE=1` (pinned only) runs a `SCHED_IDLE` spinner on the
//! relay's core during the quiet phases: on this VM an idle core's vCPU
//! must be woken by the host before the worker runs, which made quiet
//! phases slower than bursts (bench/README.md); the spinner keeps the core
//! as awake as a burst does, and the worker preempts it at once.
//!
//! `SLUICE_BURST_WORST=1` prints the 8 slowest packets of the handshake
//! phases with the round they were sent in and how far into it, and each
//! round's length: whether the p99 is a few stalls or a shift of the whole.
//!
//! `cargo test --benches` runs the smoke form: one round of 250 joins
//! beside 4 streams.
//!
//! `cargo bench --bench webrtc_burst` (criterion is not used: one
//! measurement of a system, printed as lines). Figures are in
//! bench/README.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use sluice::webrtc::proto::client::{DtlsClient, write_check};
use sluice::webrtc::proto::identity::DtlsIdentity;
use support::timed::{self, Reading, TimedStream};
use support::{Endpoint, http};

/// Established streams timed through the burst (`SLUICE_BURST_STREAMS`
/// overrides). 20, not 4: once handshakes ran at ~5,000/s the burst
/// phases lasted 0.4 s in all, and 4 streams gave ~330 packets in them,
/// whose p99 is the 4th-slowest packet (the ratio ranged 1.0-9 between
/// runs of one binary); 20 give ~2,000.
const EXISTING: usize = 20;
const TICK: Duration = Duration::from_millis(5);
/// Each quiet phase: one before every round and one after the last.
const QUIET: Duration = Duration::from_secs(1);
const MEETINGS: usize = 10;
/// A round's handshakes must all finish within this (the relay's own
/// handshake timeout is 10 s from the POST).
const ROUND_WITHIN: Duration = Duration::from_secs(9);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{path}: {}", r.text);
    r.json()
}

fn meeting(api: SocketAddr) -> String {
    let body = json!({"mode": "standard", "owner": {"account": "bench", "verified": false}});
    post(api, "/v1/meetings", &body)["id"]
        .as_str()
        .expect("meeting id")
        .to_owned()
}

fn existing(api: SocketAddr, k: usize) -> TimedStream {
    let participants = format!("/v1/meetings/{}/participants", meeting(api));
    let mut publisher = Endpoint::from_admission(&post(api, &participants, &json!({"name": "p"})));
    let ssrc = 0x0e00_0000 + k as u32;
    post(
        api,
        &format!("{participants}/{}/streams", publisher.id),
        &json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    publisher.send_rtp(ssrc, 0, &[0u8; 160]);
    let rtcp_ssrc = 0x0f00_0000 + k as u32;
    let body = json!({"name": "r", "rtcp_ssrc": rtcp_ssrc});
    let mut receiver = Endpoint::from_admission(&post(api, &participants, &body));
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend(rtcp_ssrc.to_be_bytes());
    rr.extend([0u8; 24]);
    receiver.send_rtcp(&rr);
    TimedStream {
        publisher,
        receiver,
        ssrc,
    }
}

fn attr<'a>(sdp: &'a str, key: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("attribute in the answer")
        .trim()
}

fn offer(fingerprint: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:brws\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    )
}

/// A WHIP POST (`support::http` speaks JSON only); the 201's SDP answer.
fn post_sdp(api: SocketAddr, path: &str, token: &str, sdp: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Type: \
         application/sdp\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    s.write_all(request.as_bytes()).expect("send");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "WHIP POST: {head}\n{body}"
    );
    body.to_owned()
}

/// One browser of a round: its answer's credentials, its socket.
struct Joiner {
    ufrag: String,
    pwd: String,
    sock: UdpSocket,
    client: Option<DtlsClient>,
    done: bool,
}

/// Admits `n` browsers over `meetings` and POSTs their WHIP offers.
fn prepare(api: SocketAddr, meetings: &[String], n: usize, fingerprint: &str) -> Vec<Joiner> {
    (0..n)
        .map(|i| {
            let path = format!("/v1/meetings/{}/participants", meetings[i % meetings.len()]);
            let web = post(
                api,
                &path,
                &json!({"name": format!("b{i}"), "transport": "webrtc"}),
            );
            let token = web["webrtc"]["token"].as_str().expect("token");
            let whip = web["webrtc"]["whip"].as_str().expect("whip");
            let answer = post_sdp(api, whip, token, &offer(fingerprint));
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.set_nonblocking(true).expect("nonblocking");
            Joiner {
                ufrag: attr(&answer, "a=ice-ufrag:").to_owned(),
                pwd: attr(&answer, "a=ice-pwd:").to_owned(),
                sock,
                client: None,
                done: false,
            }
        })
        .collect()
}

/// Runs every joiner's ICE check and DTLS handshake at once; how long
/// until the last was keyed.
fn handshake_all(joiners: &mut [Joiner], media: SocketAddr, identity: &DtlsIdentity) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    for (i, j) in joiners.iter_mut().enumerate() {
        let mut tid = [7u8; 12];
        tid[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let n = write_check(&mut buf, tid, &j.ufrag, "brws", &j.pwd, true).expect("check");
        let _ = j.sock.send_to(&buf[..n], media);
        j.client = Some(DtlsClient::new(identity, Instant::now()));
    }
    let mut left = joiners.len();
    while left > 0 {
        assert!(
            started.elapsed() < ROUND_WITHIN,
            "{left} of {} handshakes unfinished after {ROUND_WITHIN:?}",
            joiners.len()
        );
        let mut idle = true;
        for j in joiners.iter_mut().filter(|j| !j.done) {
            let client = j.client.as_mut().expect("started");
            let now = Instant::now();
            client.handle_timeout(now);
            while let Ok((len, _)) = j.sock.recv_from(&mut buf) {
                idle = false;
                if (20..64).contains(&buf[0]) {
                    client.handle_packet(now, &buf[..len]);
                }
            }
            for p in client.poll_transmits() {
                idle = false;
                let _ = j.sock.send_to(&p, media);
            }
            assert!(!client.has_failed(), "a handshake failed");
            if client.keying().is_some() {
                j.done = true;
                left -= 1;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    started.elapsed()
}

/// A thread on `core`, in `SCHED_IDLE`, that spins while set and is
/// parked otherwise: the quiet phases' stand-in for the burst's busy core,
/// so a wake-up of the relay's worker does not also wait for an idle vCPU
/// to be woken (it preempts the spinner at once).
struct Awake {
    on: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Awake {
    fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        self.thread.thread().unpark();
    }

    fn end(self) {
        self.set(false);
        self.thread.join().expect("the spinner");
    }
}

fn keep_awake(core: usize, stop: Arc<AtomicBool>) -> Awake {
    let on = Arc::new(AtomicBool::new(false));
    let spinning = Arc::clone(&on);
    let thread = std::thread::Builder::new()
        .name("core-awake".to_owned())
        .spawn(move || {
            timed::pin(&[core]);
            timed::as_remote_machine();
            while !stop.load(Ordering::Relaxed) {
                if spinning.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                } else {
                    std::thread::park();
                }
            }
        })
        .expect("the spinner");
    Awake { on, thread }
}

/// The scheduling policy the packet worker thread (`sluice-net-0`) runs
/// in, read from `/proc` (`[media] worker_class` asks; this says what the
/// kernel granted).
fn worker_policy() -> &'static str {
    let policy = timed::thread_stats()
        .into_iter()
        .find(|t| t.name == "sluice-net-0")
        .map(|t| t.policy);
    match policy {
        None => "(no worker thread)",
        Some(0) => "SCHED_OTHER",
        Some(1) => "SCHED_FIFO",
        Some(2) => "SCHED_RR",
        Some(3) => "SCHED_BATCH",
        Some(5) => "SCHED_IDLE",
        Some(_) => "(unknown)",
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken. Without it
    // (`cargo test --benches`, a debug build in CI) one round of 250 joins
    // beside 4 streams is the smoke form: a debug build's timer at 20
    // streams left the client (`SCHED_IDLE` beside it) too little of its
    // core to finish a round within its 9 s.
    let full = std::env::args().any(|a| a == "--bench");
    let total = env("SLUICE_BURST", if full { 2_000 } else { 250 });
    let round = env("SLUICE_BURST_ROUND", 250).min(total);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cores >= 2 && std::env::var("SLUICE_BURST_PIN").map_or(true, |v| v != "0");
    let background = std::env::var("SLUICE_BACKGROUND")
        .map(|class| format!("background = \"{class}\"\n"))
        .unwrap_or_default();
    let worker_class = std::env::var("SLUICE_WORKER_CLASS")
        .map(|class| format!("worker_class = \"{class}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         pin_cores = false\n{background}{worker_class}\n[policy]\nmax_participants_per_meeting = {per}\n\
         max_participants_per_node = {node}\nmax_meetings = 1000\nmax_worker_busy = 1.0\n\n\
         [sip]\nenabled = false\n",
        per = total / MEETINGS + 10,
        node = total + 100,
    );
    let config = Config::parse(&text, "bench.toml").expect("bench config parses");
    let daemon = Daemon::start(&config).expect("daemon starts");
    let api = daemon.control_addr();
    let media = daemon.media_addr();
    if pinned {
        // The relay on core 0; this thread (the client) and the timer it
        // spawns on core 1.
        timed::pin_threads(|name| name.starts_with("sluice-"), &[0]);
        timed::pin(&[1]);
    }
    let existing_n = env("SLUICE_BURST_STREAMS", if full { EXISTING } else { 4 });
    let streams: Vec<TimedStream> = (0..existing_n).map(|k| existing(api, k)).collect();
    let meetings: Vec<String> = (0..MEETINGS).map(|_| meeting(api)).collect();
    let identity = DtlsIdentity::generate().expect("client identity");
    let fingerprint = identity.fingerprint().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let flowing = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("stream-timer".to_owned())
            .spawn(move || timed::flow(streams, TICK, &stop))
            .expect("the timing thread")
    };
    // `SLUICE_BURST_AWAKE=1`: keep the relay's core awake in the quiet
    // phases, as the burst keeps it (see the module doc).
    let awake = (pinned && std::env::var("SLUICE_BURST_AWAKE").is_ok_and(|v| v == "1"))
        .then(|| keep_awake(0, Arc::clone(&stop)));
    // The timer keeps normal priority; from here on this thread is the
    // browsers' machines.
    timed::as_remote_machine();

    let awake_named = awake.is_some();
    let mut quiet_phases = Vec::new();
    let mut burst_phases = Vec::new();
    let mut quiet_readings = Vec::new();
    let mut burst_readings = Vec::new();
    let quiet_phase = |phases: &mut Vec<(Instant, Instant)>, readings: &mut Vec<_>| {
        let (from, reading) = (Instant::now(), Reading::now(api));
        if let Some(a) = &awake {
            a.set(true);
        }
        std::thread::sleep(QUIET);
        if let Some(a) = &awake {
            a.set(false);
        }
        phases.push((from, Instant::now()));
        readings.push((reading, Reading::now(api)));
    };
    let mut handshaking = Duration::ZERO;
    let mut admitting = Duration::ZERO;
    let mut done = 0;
    while done < total {
        quiet_phase(&mut quiet_phases, &mut quiet_readings);
        let n = round.min(total - done);
        let t = Instant::now();
        let mut joiners = prepare(api, &meetings, n, &fingerprint);
        admitting += t.elapsed();
        let (from, reading) = (Instant::now(), Reading::now(api));
        let took = handshake_all(&mut joiners, media, &identity);
        burst_phases.push((from, Instant::now()));
        burst_readings.push((reading, Reading::now(api)));
        handshaking += took;
        done += n;
    }
    quiet_phase(&mut quiet_phases, &mut quiet_readings);
    stop.store(true, Ordering::Relaxed);
    if let Some(a) = awake {
        a.end();
    }
    let samples = flowing.join().expect("existing streams");
    if std::env::var("SLUICE_BURST_WORST").is_ok_and(|v| v == "1") {
        // Where in the burst the slowest packets were sent: which round,
        // how far into it.
        let mut worst: Vec<(Duration, usize, Duration)> = samples
            .iter()
            .filter_map(|s| {
                let (round, (from, _)) = burst_phases
                    .iter()
                    .enumerate()
                    .find(|(_, (a, b))| s.sent >= *a && s.sent <= *b)?;
                Some((s.latency, round, s.sent - *from))
            })
            .collect();
        worst.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
        for (latency, round, into) in worst.iter().take(8) {
            println!("  slow: {latency:?} in round {round}, {into:?} into it");
        }
        for (round, (a, b)) in burst_phases.iter().enumerate() {
            println!("  round {round}: {:?}", *b - *a);
        }
    }
    let quiet = timed::within(&samples, &quiet_phases);
    let during = timed::within(&samples, &burst_phases);
    let (quiet_n, during_n) = (quiet.len(), during.len());
    let ((quiet50, quiet), (during50, during)) = (timed::p50_p99(quiet), timed::p50_p99(during));
    let established = support::metric(
        &http(api, "GET", "/metrics", None, None).text,
        "sluice_webrtc_handshakes_total{outcome=\"established\"}",
    );
    let spans = |r: &[(Reading, Reading)]| -> String {
        timed::between(&r.iter().map(|(a, b)| (a, b)).collect::<Vec<_>>())
    };
    println!(
        "webrtc burst: {total} DTLS-SRTP handshakes in rounds of {round}: {:.0} handshakes/s \
         ({handshaking:?} handshaking, {admitting:?} admitting + WHIP POST apart); relay counted \
         {established} established; existing streams' p99 {quiet:?} quiet ({quiet_n} packets \
         in {} phases, p50 {quiet50:?}), {during:?} during the handshakes ({during_n} packets, \
         p50 {during50:?}), ratio {:.2}; {}, background class {}, packet worker in {}",
        total as f64 / handshaking.as_secs_f64(),
        quiet_phases.len(),
        during.as_secs_f64() / quiet.as_secs_f64(),
        if awake_named {
            "relay on core 0 (kept awake in the quiet phases), client (SCHED_IDLE) and timer on \
             core 1"
        } else if pinned {
            "relay on core 0, client (SCHED_IDLE) and timer on core 1"
        } else {
            "nothing pinned, client SCHED_IDLE"
        },
        config.media.background.name(),
        worker_policy(),
    );
    println!("  quiet: {}", spans(&quiet_readings));
    println!("  burst: {}", spans(&burst_readings));
    daemon.shutdown();
}

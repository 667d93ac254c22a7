//! DTLS-SRTP handshakes per second during a burst of browser joins, and
//! what the burst does to streams that were flowing before it (#9
//! "Performance"): a real daemon in this process, one packet worker and
//! the media port's one handshake thread (so the handshakes run on one
//! core), 4 established SDES streams timed packet by packet every 5 ms,
//! and a client thread (the other core) doing the browsers' side: ICE
//! check with USE-CANDIDATE, then the DTLS client handshake, for
//! `SLUICE_BURST` joins (default 1,000) in rounds of `SLUICE_BURST_ROUND`
//! (default 250; every session of a round is in flight at once).
//!
//! Each round first admits its browsers and POSTs their WHIP offers (the
//! control plane, timed apart), then runs all their handshakes at once;
//! the handshake rate is joins / the summed handshake phases, and the
//! existing streams' p99 during those phases is compared with a quiet run
//! of the same streams just before the first round.
//!
//! `cargo bench --bench webrtc_burst` (criterion is not used: one
//! measurement of a system, printed as one line). Figures are in
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
use support::{Endpoint, http, is_rtcp};

const EXISTING: usize = 4;
const TICK: Duration = Duration::from_millis(5);
const QUIET: Duration = Duration::from_secs(3);
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

struct Existing {
    publisher: Endpoint,
    receiver: Endpoint,
    ssrc: u32,
}

fn existing(api: SocketAddr, k: usize) -> Existing {
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
    Existing {
        publisher,
        receiver,
        ssrc,
    }
}

/// One packet per stream every [`TICK`] until `stop`; (sent at, latency).
fn flow(mut streams: Vec<Existing>, stop: &AtomicBool) -> Vec<(Instant, Duration)> {
    let mut samples = Vec::new();
    let mut seq: u16 = 1;
    let mut buf = [0u8; 2048];
    for s in &streams {
        s.receiver
            .socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
    }
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for s in &mut streams {
            let sent = Instant::now();
            s.publisher.send_rtp(s.ssrc, seq, &[0u8; 160]);
            while let Ok((n, _)) = s.receiver.socket.recv_from(&mut buf) {
                let d = &buf[..n];
                if is_rtcp(d) || n < 4 {
                    continue;
                }
                if u16::from_be_bytes([d[2], d[3]]) == seq {
                    samples.push((sent, sent.elapsed()));
                    break;
                }
            }
        }
        seq = seq.wrapping_add(1);
        if let Some(rest) = TICK.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    samples
}

fn p99(mut v: Vec<Duration>) -> Duration {
    assert!(v.len() >= 100, "too few samples: {}", v.len());
    v.sort_unstable();
    v[v.len() * 99 / 100]
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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let total = env("SLUICE_BURST", 1_000);
    let round = env("SLUICE_BURST_ROUND", 250).min(total);
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         pin_cores = false\n\n[policy]\nmax_participants_per_meeting = {per}\n\
         max_participants_per_node = {node}\nmax_meetings = 1000\nmax_worker_busy = 1.0\n\n\
         [sip]\nenabled = false\n",
        per = total / MEETINGS + 10,
        node = total + 100,
    );
    let config = Config::parse(&text, "bench.toml").expect("bench config parses");
    let daemon = Daemon::start(&config).expect("daemon starts");
    let api = daemon.control_addr();
    let media = daemon.media_addr();
    let streams: Vec<Existing> = (0..EXISTING).map(|k| existing(api, k)).collect();
    let meetings: Vec<String> = (0..MEETINGS).map(|_| meeting(api)).collect();
    let identity = DtlsIdentity::generate().expect("client identity");
    let fingerprint = identity.fingerprint().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let flowing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || flow(streams, &stop))
    };
    std::thread::sleep(QUIET);
    let quiet_until = Instant::now();

    let mut phases = Vec::new();
    let mut handshaking = Duration::ZERO;
    let mut admitting = Duration::ZERO;
    let mut done = 0;
    while done < total {
        let n = round.min(total - done);
        let t = Instant::now();
        let mut joiners = prepare(api, &meetings, n, &fingerprint);
        admitting += t.elapsed();
        let from = Instant::now();
        let took = handshake_all(&mut joiners, media, &identity);
        phases.push((from, Instant::now()));
        handshaking += took;
        done += n;
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let samples = flowing.join().expect("existing streams");
    let quiet: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at < quiet_until)
        .map(|(_, l)| *l)
        .collect();
    let during: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| phases.iter().any(|(a, b)| at >= a && at <= b))
        .map(|(_, l)| *l)
        .collect();
    let (quiet_n, during_n) = (quiet.len(), during.len());
    let (quiet, during) = (p99(quiet), p99(during));
    let established = support::metric(
        &http(api, "GET", "/metrics", None, None).text,
        "sluice_webrtc_handshakes_total{outcome=\"established\"}",
    );
    println!(
        "webrtc burst: {total} DTLS-SRTP handshakes in rounds of {round}: {:.0} handshakes/s \
         ({handshaking:?} handshaking, {admitting:?} admitting + WHIP POST apart); relay counted \
         {established} established; existing streams' p99 {quiet:?} quiet ({quiet_n} packets), \
         {during:?} during the handshakes ({during_n} packets), ratio {:.2}",
        total as f64 / handshaking.as_secs_f64(),
        during.as_secs_f64() / quiet.as_secs_f64(),
    );
    daemon.shutdown();
}

//! Telephone dial-out end to end on 127.0.0.1: the daemon in-process with a
//! `[sip.trunk]` pointing at SIPp (Debian sip-tester) in UAS mode as the
//! far end's signalling, the test's own UDP socket as the far end's RTP
//! (SIPp's SDP answer points there: `-key cport`), and an SRTP meeting
//! participant as in tests/dialin.rs.
//!
//! SIPp must be installed (.ci/run installs it); a test fails, naming the
//! package, when it is not. Every wait is bounded.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use sluice::media::tone::{Sine, goertzel_power};
use sluice::media::{G711, OpusDecoder, OpusEncoder};
use support::{Endpoint, http, metric};

/// A UDP port free a moment ago, for SIPp to listen on.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// A daemon whose trunk is SIPp on `trunk_port`.
fn start(trunk_port: u16, trunk_extra: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         pin_cores = false\n\n[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n\n\
         [sip.trunk]\naddress = \"127.0.0.1:{trunk_port}\"\nring_timeout_secs = 20\n{trunk_extra}"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn meeting(api: SocketAddr, id: &str, mode: &str) {
    let body = json!({"id": id, "mode": mode, "owner": {"account": "alice", "verified": true}});
    let r = http(api, "POST", "/v1/meetings", Some(&body), None);
    assert_eq!(r.status, 201, "{}", r.text);
}

fn participants(api: SocketAddr, id: &str) -> u64 {
    let r = http(api, "GET", &format!("/v1/meetings/{id}"), None, None);
    r.json()["participants"].as_u64().unwrap_or(0)
}

fn metrics(api: SocketAddr) -> String {
    http(api, "GET", "/metrics", None, None).text
}

fn dialout_outcome(api: SocketAddr, outcome: &str) -> f64 {
    metric(
        &metrics(api),
        &format!("sluice_dialout_calls_total{{outcome=\"{outcome}\"}}"),
    )
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn dial(api: SocketAddr, meeting: &str, body: &Value) -> support::Response {
    http(
        api,
        "POST",
        &format!("/v1/meetings/{meeting}/dial"),
        Some(body),
        None,
    )
}

fn call(api: SocketAddr, meeting: &str, id: &str) -> Value {
    let r = http(
        api,
        "GET",
        &format!("/v1/meetings/{meeting}/calls/{id}"),
        None,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Waits until the call is ended and returns it.
fn ended(api: SocketAddr, meeting: &str, id: &str) -> Value {
    let mut last = Value::Null;
    wait_for("the call to end", Duration::from_secs(15), || {
        last = call(api, meeting, id);
        last["state"] == "ended"
    });
    last
}

/// SIPp as the far end (UAS), serving one call of `scenario` on `port`.
struct Sipp {
    child: Option<Child>,
    scenario: String,
}

impl Sipp {
    fn serve(scenario: &str, port: u16, cport: u16) -> Self {
        Self::serve_with(scenario, port, cport, &[])
    }

    fn serve_with(scenario: &str, port: u16, cport: u16, extra: &[&str]) -> Self {
        let file: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        let child = Command::new("sipp")
            .args(["-sf", file.to_str().expect("utf-8 path")])
            .args(["-p", &port.to_string()])
            .args(["-key", "cport", &cport.to_string()])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-m", "1", "-nostdin"])
            .args(["-timeout", "40s", "-timeout_error"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run sipp ({e}): install Debian's sip-tester package")
            });
        // Let SIPp bind its port before the INVITE goes out (UDP: an early
        // INVITE is retransmitted anyway by Timer A).
        thread::sleep(Duration::from_millis(300));
        Self {
            child: Some(child),
            scenario: scenario.to_owned(),
        }
    }

    /// Waits (bounded by SIPp's own -timeout) and asserts its one call
    /// went through the scenario.
    fn succeeds(mut self) {
        let child = self.child.take().expect("sipp runs once");
        let out = child.wait_with_output().expect("sipp runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        assert!(
            out.status.success(),
            "sipp {} failed ({}):\n{}\n{}",
            self.scenario,
            out.status,
            tail.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        // A failed test must not leave SIPp running.
        if let Some(child) = &mut self.child
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The far end's RTP side: a socket SIPp's SDP answer names.
struct Phone {
    socket: UdpSocket,
    bridge: Option<SocketAddr>,
    seq: u16,
    timestamp: u32,
    heard: Vec<u8>,
}

impl Phone {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind phone RTP");
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            socket,
            bridge: None,
            seq: 7000,
            timestamp: 160_000,
            heard: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    /// Takes in whatever arrived (PCMU payloads); learns the bridge's address.
    fn listen(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            self.bridge.get_or_insert(from);
            if n > 12 && buf[1] & 0x7F == 0 {
                self.heard.extend_from_slice(&buf[12..n]);
            }
        }
    }

    fn wait_for_bridge(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.bridge.is_none() {
            assert!(Instant::now() < deadline, "the bridge never sent RTP");
            self.listen();
        }
    }

    fn send_pcmu(&mut self, payload: &[u8]) {
        let bridge = self.bridge.expect("bridge address known");
        let mut p = vec![0x80, 0];
        p.extend(self.seq.to_be_bytes());
        p.extend(self.timestamp.to_be_bytes());
        p.extend(0x0d1a_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        self.socket.send_to(&p, bridge).expect("phone sends");
    }
}

/// A web participant of `meeting` publishing one Opus stream `ssrc`.
fn web_participant(api: SocketAddr, meeting: &str, ssrc: u32) -> Endpoint {
    let admitted = http(
        api,
        "POST",
        &format!("/v1/meetings/{meeting}/participants"),
        Some(&json!({"name": "web"})),
        None,
    );
    assert_eq!(admitted.status, 201, "{}", admitted.text);
    let web = Endpoint::from_admission(&admitted.json());
    let stream = http(
        api,
        "POST",
        &format!("/v1/meetings/{meeting}/participants/{}/streams", web.id),
        Some(&json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111})),
        None,
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
    web
}

#[test]
fn an_answered_call_joins_the_meeting_both_ways_and_delete_sends_bye() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "5550101", "standard");
    let mut web = web_participant(api, "5550101", 0x2222);

    // The web participant publishes 1 kHz and decodes what it hears.
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = web.socket.try_clone().expect("clone socket");
    let mut recv_session = std::mem::replace(
        &mut web.recv,
        sluice::srtp::SrtpSession::new(
            sluice::crypto::AnyGcm::default(),
            &sluice::srtp::MasterKey::new(web.profile, &web.relay_to_client).expect("key"),
        )
        .expect("session"),
    );
    let stop_rx = Arc::clone(&stop);
    let heard_by_web = thread::spawn(move || {
        let mut decoder = OpusDecoder::new().expect("opus decoder");
        let mut pcm = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            let Ok((n, _)) = receiver.recv_from(&mut buf) else {
                continue;
            };
            if support::is_rtcp(&buf[..n]) {
                continue;
            }
            let Ok(len) = recv_session.unprotect_rtp(&mut buf, n) else {
                continue;
            };
            let packet = sluice::rtp::RtpPacket::parse(&buf[..len]).expect("rtp");
            if let Ok(samples) = decoder.decode(packet.payload()) {
                pcm.extend_from_slice(samples);
            }
        }
        pcm
    });
    let stop_tx = Arc::clone(&stop);
    let mut sender = web;
    let publisher = thread::spawn(move || {
        let mut encoder = OpusEncoder::new(32_000, 5).expect("opus encoder");
        let mut sine = Sine::new(1000.0, 48_000, 8000.0);
        let mut frame = [0i16; 960];
        let start = Instant::now();
        let mut seq = 1u16;
        // Bounded: at most 30 s of frames whatever happens.
        while !stop_tx.load(Ordering::Relaxed) && seq < 1500 {
            sine.fill(&mut frame);
            let opus = encoder.encode(&frame).expect("encode").to_vec();
            sender.send_rtp(0x2222, seq, &opus);
            seq = seq.wrapping_add(1);
            let due = start + Duration::from_millis(20 * u64::from(seq - 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    });

    let mut phone = Phone::new();
    let sipp = Sipp::serve("uas-answer.xml", port, phone.port());
    let placed = dial(
        api,
        "5550101",
        &json!({"to": format!("sip:+15551234@127.0.0.1:{port}"), "caller_id_name": "Team call"}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let placed = placed.json();
    assert_eq!(placed["state"], "dialing");
    let id = placed["id"].as_str().expect("call id").to_owned();
    wait_for("the answer", Duration::from_secs(10), || {
        call(api, "5550101", &id)["state"] == "answered"
    });
    assert_eq!(call(api, "5550101", &id)["sip_status"], 200);
    assert_eq!(
        participants(api, "5550101"),
        2,
        "the phone is in the meeting"
    );
    assert_eq!(metric(&metrics(api), "sluice_dialout_active_calls"), 1.0);

    // The far end speaks 440 Hz for four seconds, paced at 20 ms.
    phone.wait_for_bridge();
    let mut sine = Sine::new(440.0, 8000, 8000.0);
    let mut pcm = [0i16; 160];
    let mut ulaw = [0u8; 160];
    let start = Instant::now();
    for k in 1..=200u64 {
        sine.fill(&mut pcm);
        G711::Mu.encode(&pcm, &mut ulaw);
        phone.send_pcmu(&ulaw);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            phone.listen();
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");

    // The phone heard the meeting's 1 kHz (the last 1.5 s, after the
    // joining prompt), and not its own 440 Hz.
    assert!(
        phone.heard.len() >= 160 * 150,
        "the phone heard {} samples",
        phone.heard.len()
    );
    let tail = &phone.heard[phone.heard.len() - 12_000..];
    let mut decoded = vec![0i16; tail.len()];
    G711::Mu.decode(tail, &mut decoded);
    let k1 = goertzel_power(&decoded, 8000, 1000.0);
    let own = goertzel_power(&decoded, 8000, 440.0);
    assert!(k1 > 0.01, "1 kHz too weak at the phone: {k1}");
    assert!(
        k1 > 20.0 * own,
        "the phone hears 1 kHz {k1} vs 440 Hz {own}"
    );
    // The meeting heard the phone's 440 Hz.
    assert!(
        web_pcm.len() >= 48_000 * 2,
        "web decoded {} samples",
        web_pcm.len()
    );
    let tail = &web_pcm[web_pcm.len() - 72_000..];
    let a440 = goertzel_power(tail, 48_000, 440.0);
    let echo = goertzel_power(tail, 48_000, 1000.0);
    assert!(
        a440 > 0.01,
        "440 Hz too weak at the web participant: {a440}"
    );
    assert!(
        a440 > 20.0 * echo,
        "the web hears 440 Hz {a440} vs 1 kHz {echo}"
    );

    // DELETE hangs up with BYE; SIPp's scenario ends only when it came.
    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/5550101/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    let done = ended(api, "5550101", &id);
    assert_eq!(done["outcome"], "answered");
    wait_for("the phone to leave", Duration::from_secs(5), || {
        participants(api, "5550101") == 1
    });
    assert_eq!(dialout_outcome(api, "answered"), 1.0);
    assert_eq!(metric(&metrics(api), "sluice_dialout_active_calls"), 0.0);
    daemon.shutdown();
}

#[test]
fn a_tcp_trunk_answers_and_the_bye_goes_over_the_connection() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .ok()
        .and_then(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
        .and_then(|l| l.local_addr().ok())
        .expect("a free TCP port")
        .port();
    let daemon = start(port, "transport = \"tcp\"\n");
    let api = daemon.control_addr();
    meeting(api, "5550107", "standard");
    let mut phone = Phone::new();
    let sipp = Sipp::serve_with("uas-answer.xml", port, phone.port(), &["-t", "t1"]);
    let placed = dial(
        api,
        "5550107",
        &json!({"to": format!("sip:+15551235@127.0.0.1:{port};transport=tcp")}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    wait_for("the answer", Duration::from_secs(10), || {
        call(api, "5550107", &id)["state"] == "answered"
    });
    assert_eq!(
        participants(api, "5550107"),
        1,
        "the phone is in the meeting"
    );
    // The bridge plays the joining prompt to the phone's RTP socket.
    phone.wait_for_bridge();
    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/5550107/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    assert_eq!(ended(api, "5550107", &id)["outcome"], "answered");
    daemon.shutdown();
}

#[test]
fn a_busy_phone_ends_the_call_with_outcome_busy() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "5550102", "standard");
    let phone = Phone::new();
    let sipp = Sipp::serve("uas-busy.xml", port, phone.port());
    let placed = dial(
        api,
        "5550102",
        &json!({"to": format!("sip:+15550000@127.0.0.1:{port}"), "from": "sip:desk@sluice.test"}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    sipp.succeeds();
    let done = ended(api, "5550102", &id);
    assert_eq!(done["outcome"], "busy");
    assert_eq!(done["sip_status"], 486);
    assert_eq!(done["from"], "sip:desk@sluice.test");
    assert_eq!(dialout_outcome(api, "busy"), 1.0);
    assert_eq!(
        participants(api, "5550102"),
        0,
        "the phone left the meeting"
    );
    daemon.shutdown();
}

#[test]
fn delete_while_ringing_sends_cancel_and_the_487_is_acked() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "5550103", "standard");
    let phone = Phone::new();
    let sipp = Sipp::serve("uas-cancel.xml", port, phone.port());
    let placed = dial(
        api,
        "5550103",
        &json!({"to": format!("sip:+15550001@127.0.0.1:{port}")}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    wait_for("ringing", Duration::from_secs(10), || {
        call(api, "5550103", &id)["state"] == "ringing"
    });
    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/5550103/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    let done = ended(api, "5550103", &id);
    assert_eq!(done["outcome"], "cancelled");
    assert_eq!(done["sip_status"], 487);
    assert_eq!(dialout_outcome(api, "cancelled"), 1.0);
    daemon.shutdown();
}

#[test]
fn a_digest_challenge_is_answered_with_the_trunk_credentials() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sluice-dialout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let creds = dir.join("trunk-credentials");
    std::fs::write(&creds, "sluice:s3cret\n").expect("write credentials");
    let daemon = start(
        port,
        &format!("credentials_file = \"{}\"\n", creds.display()),
    );
    let api = daemon.control_addr();
    meeting(api, "5550104", "standard");
    let phone = Phone::new();
    let sipp = Sipp::serve("uas-auth.xml", port, phone.port());
    let placed = dial(
        api,
        "5550104",
        &json!({"to": format!("sip:+15550002@127.0.0.1:{port}")}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    sipp.succeeds();
    // The scenario answers good credentials 486 and wrong ones 403.
    let done = ended(api, "5550104", &id);
    assert_eq!(done["sip_status"], 486, "{done}");
    assert_eq!(done["outcome"], "busy");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dial_is_refused_for_e2ee_meetings_unknown_meetings_and_bad_uris() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "e2ee-1", "e2ee");
    let to = json!({"to": format!("sip:+15550003@127.0.0.1:{port}")});
    let r = dial(api, "e2ee-1", &to);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error_code(), "e2ee_forbids_dial_out");
    let r = dial(api, "nobody", &to);
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error_code(), "meeting_not_found");
    meeting(api, "5550105", "standard");
    for bad in [
        json!({"to": "+15550003"}),
        json!({"to": "sip:a b@c"}),
        json!({}),
    ] {
        let r = dial(api, "5550105", &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_request");
    }
    let r = http(api, "GET", "/v1/meetings/5550105/calls/nope", None, None);
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error_code(), "call_not_found");
    assert_eq!(participants(api, "5550105"), 0);
    daemon.shutdown();

    // Without a trunk, dial-out is not configured.
    let text = "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\n\
                workers = 1\npin_cores = false\n\n[sip]\nenabled = false\n";
    let config = Config::parse(text, "test.toml").expect("parses");
    let daemon = Daemon::start(&config).expect("starts");
    let api = daemon.control_addr();
    meeting(api, "5550106", "standard");
    let r = dial(api, "5550106", &to);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error_code(), "dial_out_not_configured");
    daemon.shutdown();
}

/// The first line of SIPp's log `log` with `tag` in it, once it is there.
fn sipp_logged(log: &Path, tag: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.lines().any(|l| l.contains(tag)))
}

/// The 100 ms windows of `pcm` where `freq` is there and 20 times louder
/// than each of `others`.
fn windows_with(pcm: &[i16], rate: u32, freq: f32, others: &[f32]) -> usize {
    pcm.chunks_exact(rate as usize / 10)
        .filter(|w| {
            let p = goertzel_power(w, rate, freq);
            p > 0.002
                && others
                    .iter()
                    .all(|&f| p > 20.0 * goertzel_power(w, rate, f))
        })
        .count()
}

#[test]
fn the_far_end_holds_and_moves_to_pcma_on_another_port_by_reinvite() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "5550110", "standard");
    let mut web = web_participant(api, "5550110", 0x2323);
    // The web participant publishes 1 kHz and decodes what it hears.
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = web.socket.try_clone().expect("clone socket");
    let mut recv_session = std::mem::replace(
        &mut web.recv,
        sluice::srtp::SrtpSession::new(
            sluice::crypto::AnyGcm::default(),
            &sluice::srtp::MasterKey::new(web.profile, &web.relay_to_client).expect("key"),
        )
        .expect("session"),
    );
    let stop_rx = Arc::clone(&stop);
    let heard_by_web = thread::spawn(move || {
        let mut decoder = OpusDecoder::new().expect("opus decoder");
        let mut pcm = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            let Ok((n, _)) = receiver.recv_from(&mut buf) else {
                continue;
            };
            if support::is_rtcp(&buf[..n]) {
                continue;
            }
            let Ok(len) = recv_session.unprotect_rtp(&mut buf, n) else {
                continue;
            };
            let packet = sluice::rtp::RtpPacket::parse(&buf[..len]).expect("rtp");
            if let Ok(samples) = decoder.decode(packet.payload()) {
                pcm.extend_from_slice(samples);
            }
        }
        pcm
    });
    let stop_tx = Arc::clone(&stop);
    let mut sender = web;
    let publisher = thread::spawn(move || {
        let mut encoder = OpusEncoder::new(32_000, 5).expect("opus encoder");
        let mut sine = Sine::new(1000.0, 48_000, 8000.0);
        let mut frame = [0i16; 960];
        let start = Instant::now();
        let mut seq = 1u16;
        while !stop_tx.load(Ordering::Relaxed) && seq < 1500 {
            sine.fill(&mut frame);
            let opus = encoder.encode(&frame).expect("encode").to_vec();
            sender.send_rtp(0x2323, seq, &opus);
            seq = seq.wrapping_add(1);
            let due = start + Duration::from_millis(20 * u64::from(seq - 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    });

    let log = std::env::temp_dir().join(format!("sluice-sipp-far-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut phone = Phone::new();
    let moved = UdpSocket::bind("127.0.0.1:0").expect("bind the second RTP socket");
    moved
        .set_read_timeout(Some(Duration::from_millis(2)))
        .expect("timeout");
    let moved_port = moved.local_addr().expect("addr").port().to_string();
    let sipp = Sipp::serve_with(
        "uas-reinvite.xml",
        port,
        phone.port(),
        &[
            "-key",
            "cport2",
            &moved_port,
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    let placed = dial(
        api,
        "5550110",
        &json!({"to": format!("sip:+15551234@127.0.0.1:{port}")}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("call id").to_owned();
    phone.wait_for_bridge();
    let bridge = phone.bridge.expect("known");

    // Until the hold: PCMU both ways. On hold: nothing reaches the far end.
    // Moved: PCMA to and from the second socket only, at 700 Hz.
    let (mut held_at, mut moved_at) = (None, None);
    let mut on_hold = Vec::new();
    let mut heard_moved = Vec::new();
    let mut old_socket_after_move = 0;
    let mut narrow = Sine::new(440.0, 8000, 8000.0);
    let mut pcma_tone = Sine::new(700.0, 8000, 8000.0);
    let (mut seq, mut timestamp) = (9000u16, 0u32);
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    for k in 1..=400u64 {
        if held_at.is_none() && sipp_logged(&log, "held") {
            held_at = Some(Instant::now());
        }
        if moved_at.is_none() && sipp_logged(&log, "moved-pcma") {
            moved_at = Some(Instant::now());
        }
        if moved_at.is_some_and(|t| t.elapsed() > Duration::from_millis(2500)) {
            break;
        }
        let mut pcm = [0i16; 160];
        let mut g711 = [0u8; 160];
        let (socket, pt) = if moved_at.is_some() {
            pcma_tone.fill(&mut pcm);
            G711::A.encode(&pcm, &mut g711);
            (&moved, 8u8)
        } else {
            narrow.fill(&mut pcm);
            G711::Mu.encode(&pcm, &mut g711);
            (&phone.socket, 0)
        };
        let mut p = vec![0x80, pt];
        p.extend(seq.to_be_bytes());
        p.extend(timestamp.to_be_bytes());
        p.extend(0x0d1a_0002u32.to_be_bytes());
        p.extend_from_slice(&g711);
        socket.send_to(&p, bridge).expect("far end sends");
        seq = seq.wrapping_add(1);
        timestamp = timestamp.wrapping_add(160);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            if let Ok((n, _)) = phone.socket.recv_from(&mut buf)
                && !support::is_rtcp(&buf[..n])
            {
                match (held_at, moved_at) {
                    (_, Some(t)) if t.elapsed() > Duration::from_millis(300) => {
                        old_socket_after_move += 1;
                    }
                    // PCMA here is the move, before SIPp's log said so.
                    (Some(t), None)
                        if t.elapsed() > Duration::from_millis(300) && buf[1] & 0x7F != 8 =>
                    {
                        on_hold.push(buf[1] & 0x7F);
                    }
                    _ => {}
                }
            }
            if let Ok((n, _)) = moved.recv_from(&mut buf)
                && !support::is_rtcp(&buf[..n])
                && n > 12
                && moved_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300))
            {
                heard_moved.push((buf[1] & 0x7F, buf[12..n].to_vec()));
            }
        }
    }
    assert!(held_at.is_some(), "the far end never held the call");
    assert!(moved_at.is_some(), "the far end never moved to PCMA");
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");
    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/5550110/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);

    assert!(
        on_hold.is_empty(),
        "RTP reached the far end on hold: {on_hold:?}"
    );
    assert_eq!(
        old_socket_after_move, 0,
        "RTP to the old address after the move"
    );
    assert!(
        heard_moved.len() > 80,
        "the moved socket got {} packets",
        heard_moved.len()
    );
    assert!(
        heard_moved.iter().all(|(pt, _)| *pt == 8),
        "only PCMA after the move"
    );
    let pcm: Vec<i16> = heard_moved
        .iter()
        .flat_map(|(_, payload)| {
            let mut pcm = vec![0i16; payload.len()];
            G711::A.decode(payload, &mut pcm);
            pcm
        })
        .collect();
    let k1 = windows_with(&pcm, 8000, 1000.0, &[440.0, 700.0]);
    assert!(
        k1 >= 10,
        "1 kHz in {k1} windows of the PCMA the far end heard"
    );
    let heard700 = windows_with(&web_pcm, 48_000, 700.0, &[440.0, 1000.0]);
    let heard440 = windows_with(&web_pcm, 48_000, 440.0, &[700.0, 1000.0]);
    assert!(
        heard440 >= 5,
        "the meeting heard PCMU 440 Hz in {heard440} windows"
    );
    assert!(
        heard700 >= 5,
        "the meeting heard PCMA 700 Hz in {heard700} windows"
    );
    let done = ended(api, "5550110", &id);
    assert_eq!(done["outcome"], "answered");
    daemon.shutdown();
}

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

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::crypto::AnyGcm;
use sluice::daemon::Daemon;
use sluice::media::tone::{Sine, goertzel_power};
use sluice::media::{G711, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings};
use sluice::media::{G722Decoder, G722Encoder};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};
use support::phone::{PhoneCodec, web_tone, wideband_heard_both_ways};
use support::tls::{TestCert, TlsHop, free_tcp_port};
use support::{http, metric};

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
    /// SDES SRTP: what the phone protects with, and unprotects with.
    srtp: Option<(SrtpSession<AnyGcm>, SrtpSession<AnyGcm>)>,
    bridge: Option<SocketAddr>,
    seq: u16,
    timestamp: u32,
    /// What arrived: (payload type, payload).
    heard: Vec<(u8, Vec<u8>)>,
}

impl Phone {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind phone RTP");
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            socket,
            srtp: None,
            bridge: None,
            seq: 7000,
            timestamp: 160_000,
            heard: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    /// Takes in whatever arrived; learns the bridge's address.
    fn listen(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((mut n, from)) = self.socket.recv_from(&mut buf) {
            if let Some((_, recv)) = &mut self.srtp {
                match recv.unprotect_rtp(&mut buf, n) {
                    Ok(len) => n = len,
                    Err(e) => panic!("the phone cannot unprotect sluice's SRTP: {e}"),
                }
            }
            self.bridge.get_or_insert(from);
            if n > 12 {
                self.heard.push((buf[1] & 0x7F, buf[12..n].to_vec()));
            }
        }
    }

    /// The PCMU payloads heard, in order.
    fn heard_pcmu(&self) -> Vec<u8> {
        self.heard
            .iter()
            .filter(|(pt, _)| *pt == 0)
            .flat_map(|(_, p)| p.iter().copied())
            .collect()
    }

    fn wait_for_bridge(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.bridge.is_none() {
            assert!(Instant::now() < deadline, "the bridge never sent RTP");
            self.listen();
        }
    }

    fn send_pcmu(&mut self, payload: &[u8]) {
        self.send(0, 160, payload);
    }

    /// One RTP packet of payload type `pt`; the timestamp moves `step`.
    fn send(&mut self, pt: u8, step: u32, payload: &[u8]) {
        let bridge = self.bridge.expect("bridge address known");
        let mut p = vec![0x80, pt];
        p.extend(self.seq.to_be_bytes());
        p.extend(self.timestamp.to_be_bytes());
        p.extend(0x0d1a_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(step);
        if let Some((send, _)) = &mut self.srtp {
            let len = p.len();
            p.resize(len + 32, 0);
            let n = send.protect_rtp(&mut p, len).expect("protect");
            p.truncate(n);
        }
        self.socket.send_to(&p, bridge).expect("phone sends");
    }
}

/// The phone heard the meeting's 1 kHz in `heard` (PCMU; the last 1.5 s,
/// after the joining prompt) and not its own 440 Hz, and the meeting's web
/// participant heard the phone's 440 Hz in `web_pcm` (48 kHz) and not its
/// own 1 kHz.
fn heard_both_ways(heard: &[u8], web_pcm: &[i16]) {
    assert!(
        heard.len() >= 160 * 150,
        "the phone heard {} samples",
        heard.len()
    );
    let mut decoded = vec![0i16; 12_000];
    G711::Mu.decode(&heard[heard.len() - 12_000..], &mut decoded);
    let k1 = goertzel_power(&decoded, 8000, 1000.0);
    let own = goertzel_power(&decoded, 8000, 440.0);
    assert!(k1 > 0.01, "1 kHz too weak at the phone: {k1}");
    assert!(
        k1 > 20.0 * own,
        "the phone hears 1 kHz {k1} vs 440 Hz {own}"
    );
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
}

#[test]
fn an_answered_call_joins_the_meeting_both_ways_and_delete_sends_bye() {
    let port = free_port();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, "5550101", "standard");
    // The web participant publishes 1 kHz and decodes what it hears.
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550101", 0x2222, 1000.0, &stop);

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

    heard_both_ways(&phone.heard_pcmu(), &web_pcm);

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
        // RFC 5630: sips: asks for TLS, and this trunk is UDP.
        json!({"to": format!("sips:+15550003@127.0.0.1:{port}")}),
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

/// A far end answering a wideband codec (SIPp `scenario`, which checks the
/// offer had it; the test's socket does the media in `codec`) is bridged
/// at the codec's rate: the phone hears the meeting's 6 kHz, which 8 kHz
/// G.711 could not carry, and the meeting hears the phone's 5 kHz.
fn a_wideband_phone_is_bridged_at_its_rate(scenario: &str, mut codec: PhoneCodec) {
    let port = free_port();
    let room = format!("555{:04}", codec.pt());
    let room = room.as_str();
    let daemon = start(port, "");
    let api = daemon.control_addr();
    meeting(api, room, "standard");
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, room, 0x3333, 6000.0, &stop);
    let mut phone = Phone::new();
    let sipp = Sipp::serve(scenario, port, phone.port());
    let placed = dial(
        api,
        room,
        &json!({"to": format!("sip:+15551236@127.0.0.1:{port}")}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    wait_for("the answer", Duration::from_secs(10), || {
        call(api, room, &id)["state"] == "answered"
    });
    phone.wait_for_bridge();

    // The phone speaks 5 kHz for five seconds; the meeting plays 6 kHz.
    let rate = codec.rate();
    let mut sine = Sine::new(5000.0, rate, 8000.0);
    let mut pcm = vec![0i16; rate as usize / 50];
    let start = Instant::now();
    for k in 1..=250u64 {
        sine.fill(&mut pcm);
        let payload = codec.encode(&pcm);
        phone.send(codec.pt(), codec.rtp_step(), &payload);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            phone.listen();
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");

    wideband_heard_both_ways(&phone.heard, &mut codec, &web_pcm);

    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/{room}/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    assert_eq!(ended(api, room, &id)["outcome"], "answered");
    daemon.shutdown();
}

#[test]
fn a_phone_answering_g722_is_bridged_at_16_khz_both_ways() {
    a_wideband_phone_is_bridged_at_its_rate(
        "uas-answer-g722.xml",
        PhoneCodec::G722(
            G722Encoder::new().expect("g722 encoder"),
            G722Decoder::new().expect("g722 decoder"),
        ),
    );
}

#[test]
fn a_phone_answering_opus_is_bridged_at_48_khz_both_ways() {
    let phone = OpusEncoder::with_settings(OpusSettings {
        bitrate_bps: 48_000,
        complexity: 5,
        bandwidth: OpusBandwidth::Full,
        ..OpusSettings::DIAL_IN
    })
    .expect("opus encoder");
    a_wideband_phone_is_bridged_at_its_rate(
        "uas-answer-opus.xml",
        PhoneCodec::Opus(phone, OpusDecoder::new().expect("opus decoder")),
    );
}

/// The `[sip.trunk]` lines of a TLS trunk trusting `ca`'s issuer.
fn tls_trunk(ca: &TestCert) -> String {
    format!("transport = \"tls\"\ntls_ca = \"{}\"\n", ca.ca().display())
}

#[test]
fn a_tls_trunk_answers_with_srtp_both_ways_and_delete_sends_bye_over_tls() {
    let cert = TestCert::with_ca("dialout-answer");
    let sipp_port = free_tcp_port();
    let b64 = base64::engine::general_purpose::STANDARD;
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    let phone_key: Vec<u8> = (61..=90u8).collect();
    let log = std::env::temp_dir().join(format!("sluice-dialout-tls-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut phone = Phone::new();
    // The scenario checks the Via (TLS, alias), the sips: Contact and the
    // offered SRTP suite, and logs our key.
    let sipp = Sipp::serve_with(
        "uas-answer-srtp.xml",
        sipp_port,
        phone.port(),
        &[
            "-t",
            "t1",
            "-key",
            "ckey",
            &b64.encode(&phone_key),
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    let hop = TlsHop::server(&cert, SocketAddr::from(([127, 0, 0, 1], sipp_port)));
    // SRTP is not configured: a TLS trunk requires it by default.
    let daemon = start(hop.addr().port(), &tls_trunk(&cert));
    let api = daemon.control_addr();
    meeting(api, "5550109", "standard");
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550109", 0x4444, 1000.0, &stop);
    let placed = dial(
        api,
        "5550109",
        &json!({"to": format!("sips:+15551237@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    wait_for("the answer", Duration::from_secs(10), || {
        call(api, "5550109", &id)["state"] == "answered"
    });
    let mut offer_key = None;
    wait_for(
        "SIPp to log the offer's key",
        Duration::from_secs(5),
        || {
            offer_key = std::fs::read_to_string(&log).ok().and_then(|text| {
                let line = text.lines().find(|l| l.contains("offer-key "))?;
                b64.decode(line.split("offer-key ").nth(1)?.trim()).ok()
            });
            offer_key.is_some()
        },
    );
    let session = |key: &[u8]| {
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(profile, key).expect("key"),
        )
        .expect("session")
    };
    // Every packet from the bridge must authenticate (listen() panics if
    // not): nothing was read before the keys were known.
    phone.srtp = Some((session(&phone_key), session(&offer_key.expect("found"))));
    phone.wait_for_bridge();

    // The far end speaks 440 Hz over SRTP for four seconds.
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

    heard_both_ways(&phone.heard_pcmu(), &web_pcm);

    // DELETE: the BYE goes over the TLS connection (SIPp ends on it).
    let deleted = http(
        api,
        "DELETE",
        &format!("/v1/meetings/5550109/calls/{id}"),
        None,
        None,
    );
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);
    assert_eq!(ended(api, "5550109", &id)["outcome"], "answered");
    assert_eq!(dialout_outcome(api, "answered"), 1.0);
    drop(hop);
    daemon.shutdown();
}

#[test]
fn a_trunk_certificate_not_issued_by_tls_ca_fails_the_call_with_the_reason() {
    let trusted = TestCert::with_ca("dialout-trusted");
    let rogue = TestCert::with_ca("dialout-rogue");
    // The rogue trunk presents a certificate of another CA; nothing gets
    // past the handshake, so its plain side goes nowhere.
    let hop = TlsHop::server(&rogue, SocketAddr::from(([127, 0, 0, 1], 9)));
    let daemon = start(hop.addr().port(), &tls_trunk(&trusted));
    let api = daemon.control_addr();
    meeting(api, "5550110", "standard");
    let placed = dial(
        api,
        "5550110",
        &json!({"to": format!("sip:+15551238@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    let done = ended(api, "5550110", &id);
    assert_eq!(done["outcome"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("TLS handshake") && reason.contains("certificate"),
        "{done}"
    );
    assert!(done.get("sip_status").is_none(), "{done}");
    assert_eq!(dialout_outcome(api, "failed"), 1.0);
    assert_eq!(
        participants(api, "5550110"),
        0,
        "the phone left the meeting"
    );
    // sips: is refused on a trunk that is not TLS: see the UAC's tests;
    // here a TLS trunk takes it, and the next dial tries the trunk again.
    let again = dial(
        api,
        "5550110",
        &json!({"to": format!("sips:+15551238@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(again.status, 201, "{}", again.text);
    let id = again.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(ended(api, "5550110", &id)["outcome"], "failed");
    assert_eq!(dialout_outcome(api, "failed"), 2.0);
    drop(hop);
    daemon.shutdown();
}

#[test]
fn a_tls_trunk_answering_plain_rtp_fails_as_srtp_is_required_by_default() {
    let cert = TestCert::with_ca("dialout-plain");
    let sipp_port = free_tcp_port();
    let phone = Phone::new();
    // This scenario answers RTP/AVP, then waits for our BYE.
    let sipp = Sipp::serve_with("uas-answer.xml", sipp_port, phone.port(), &["-t", "t1"]);
    let hop = TlsHop::server(&cert, SocketAddr::from(([127, 0, 0, 1], sipp_port)));
    let daemon = start(hop.addr().port(), &tls_trunk(&cert));
    let api = daemon.control_addr();
    meeting(api, "5550111", "standard");
    let placed = dial(
        api,
        "5550111",
        &json!({"to": format!("sip:+15551239@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    sipp.succeeds();
    let done = ended(api, "5550111", &id);
    assert_eq!(done["outcome"], "failed", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .is_some_and(|r| r.contains("SRTP is required")),
        "{done}"
    );
    assert_eq!(dialout_outcome(api, "failed"), 1.0);
    drop(hop);
    daemon.shutdown();
}

#[test]
fn a_trunk_asking_for_a_client_certificate_gets_the_configured_one() {
    let server = TestCert::with_ca("dialout-server");
    let client = TestCert::with_ca("dialout-client");
    let sipp_port = free_tcp_port();
    let phone = Phone::new();
    let sipp = Sipp::serve_with("uas-busy.xml", sipp_port, phone.port(), &["-t", "t1"]);
    // socat takes only a client certificate of `client`'s CA.
    let hop = TlsHop::server_asking_for(
        &server,
        SocketAddr::from(([127, 0, 0, 1], sipp_port)),
        &client,
    );
    let daemon = start(
        hop.addr().port(),
        &format!(
            "{}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            tls_trunk(&server),
            client.cert().display(),
            client.key().display()
        ),
    );
    let api = daemon.control_addr();
    meeting(api, "5550112", "standard");
    let placed = dial(
        api,
        "5550112",
        &json!({"to": format!("sip:+15551240@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    // SIPp answering 486 means the INVITE got through the mutual TLS.
    sipp.succeeds();
    let done = ended(api, "5550112", &id);
    assert_eq!(done["outcome"], "busy", "{done}");
    assert_eq!(done["sip_status"], 486);
    drop(hop);
    daemon.shutdown();

    // Without a client certificate the trunk refuses the session (on TLS
    // 1.3 after our side of the handshake is done): the call fails with
    // the reason at once, not after Timer B.
    let hop = TlsHop::server_asking_for(&server, SocketAddr::from(([127, 0, 0, 1], 9)), &client);
    let daemon = start(hop.addr().port(), &tls_trunk(&server));
    let api = daemon.control_addr();
    meeting(api, "5550113", "standard");
    let placed = dial(
        api,
        "5550113",
        &json!({"to": format!("sip:+15551241@127.0.0.1:{}", hop.addr().port())}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text);
    let id = placed.json()["id"].as_str().expect("id").to_owned();
    let done = ended(api, "5550113", &id);
    assert_eq!(done["outcome"], "failed", "{done}");
    assert!(
        done["reason"].as_str().is_some_and(|r| r.contains("TLS")),
        "{done}"
    );
    drop(hop);
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
    // The web participant publishes 1 kHz and decodes what it hears.
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550110", 0x2323, 1000.0, &stop);

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

//! Telephone dial-in end to end on 127.0.0.1: the daemon in-process, SIPp
//! (Debian sip-tester) as the phone's signalling, the test's own UDP socket
//! as the phone's RTP (the SDP offer points there: `-key cport`), and SRTP
//! meeting participants as in tests/relay.rs.
//!
//! SIPp must be installed (.ci/run installs it); a test fails, naming the
//! package, when it is not.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sluice::config::Config;
use sluice::crypto::AnyGcm;
use sluice::daemon::Daemon;
use sluice::media::tone::{Sine, goertzel_power};
use sluice::media::{
    G711, G722Decoder, G722Encoder, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings,
};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};
use support::phone::{
    Phone, PhoneCodec, Sipp, web_participant, web_tone, wideband_heard_both_ways,
};
use support::tls::{TestCert, TlsHop};
use support::{http, metric};

/// One daemon per test, everything on free loopback ports.
fn start(sip_extra: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         pin_cores = false\n\n[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n{sip_extra}"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn sip(daemon: &Daemon) -> SocketAddr {
    daemon.sip_addr().expect("SIP is enabled")
}

fn meeting(api: SocketAddr, id: &str, mode: &str, passcode: Option<&str>) {
    let mut body = json!({"id": id, "mode": mode, "owner": {"account": "alice", "verified": true}});
    if let Some(p) = passcode {
        body["passcode"] = json!(p);
    }
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

/// The metrics once no call is active any more (the last BYE's answer is
/// handled a moment after SIPp exits).
fn calls_settled(api: SocketAddr) -> String {
    wait_for("no active calls", Duration::from_secs(5), || {
        metric(&metrics(api), "sluice_dialin_active_calls") == 0.0
    });
    metrics(api)
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The power of `freq` relative to the power of `other` in `pcm`.
fn tone_ratio(pcm: &[i16], rate: u32, freq: f32, other: f32) -> (f32, f32) {
    (
        goertzel_power(pcm, rate, freq),
        goertzel_power(pcm, rate, other),
    )
}

fn prompt(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("prompts")
            .join(name),
    )
    .expect("prompt file")
}

/// Asserts the phone heard the start of prompt `name` (0.1 s of it, byte
/// for byte: PCMU prompts go out as they are stored).
#[track_caller]
fn assert_heard_prompt(phone: &Phone, name: &str) {
    let heard = phone.heard(0);
    let prompt = prompt(name);
    assert!(
        heard.windows(800).any(|w| w == &prompt[..800]),
        "the phone never heard {name}"
    );
}

/// The calls counted with `outcome` in the metrics text.
fn outcome(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!("sluice_dialin_calls_total{{outcome=\"{outcome}\"}}"),
    )
}

#[test]
fn a_direct_call_hears_the_meeting_and_the_meeting_hears_the_caller() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550001", "standard", None);
    let mut web = web_participant(api, "5550001", 0x1111);

    // The web participant publishes a 1 kHz tone as Opus for the whole call
    // and decodes what it receives (the caller's stream).
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
        let mut ssrcs = std::collections::HashSet::new();
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
            ssrcs.insert(packet.header().ssrc().0);
            if let Ok(samples) = decoder.decode(packet.payload()) {
                pcm.extend_from_slice(samples);
            }
        }
        (pcm, ssrcs)
    });
    let stop_tx = Arc::clone(&stop);
    let mut sender = web;
    let publisher = thread::spawn(move || {
        let mut encoder = OpusEncoder::new(32_000, 5).expect("opus encoder");
        let mut sine = Sine::new(1000.0, 48_000, 8000.0);
        let mut frame = [0i16; 960];
        let start = Instant::now();
        let mut seq = 1u16;
        while !stop_tx.load(Ordering::Relaxed) {
            sine.fill(&mut frame);
            let opus = encoder.encode(&frame).expect("encode").to_vec();
            sender.send_rtp(0x1111, seq, &opus);
            seq = seq.wrapping_add(1);
            let due = start + Duration::from_millis(20 * u64::from(seq - 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    });

    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "join.xml", "5550001", phone.port(), 7000);
    phone.wait_for_relay();
    wait_for("the caller to join", Duration::from_secs(5), || {
        participants(api, "5550001") == 2
    });
    // The caller speaks a 440 Hz tone for five seconds, paced at 20 ms.
    let mut sine = Sine::new(440.0, 8000, 8000.0);
    let mut pcm = [0i16; 160];
    let mut ulaw = [0u8; 160];
    let start = Instant::now();
    for k in 1..=250u64 {
        sine.fill(&mut pcm);
        G711::Mu.encode(&pcm, &mut ulaw);
        phone.send_pcmu(&ulaw);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            phone.listen();
        }
    }
    // Both sides stop listening together, so the tails below cover the
    // same seconds of the call.
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let (web_pcm, ssrcs) = heard_by_web.join().expect("receiver");
    sipp.succeeds();

    // The caller heard the meeting: 1 kHz, and nothing of its own 440 Hz
    // (N-1 mix). The last two seconds, well after the joining prompt.
    let heard = phone.heard(0);
    assert!(
        heard.len() >= 160 * 200,
        "the phone heard {} samples",
        heard.len()
    );
    let tail = &heard[heard.len() - 16_000..];
    let mut decoded = vec![0i16; tail.len()];
    G711::Mu.decode(tail, &mut decoded);
    let (k1, own) = tone_ratio(&decoded, 8000, 1000.0, 440.0);
    assert!(k1 > 0.01, "1 kHz too weak at the phone: {k1}");
    assert!(
        k1 > 20.0 * own,
        "the phone hears 1 kHz {k1} vs its own 440 Hz {own}"
    );

    // The meeting heard the caller: 440 Hz, and not the web's own 1 kHz.
    assert_eq!(ssrcs.len(), 1, "the web participant hears only the caller");
    assert!(
        web_pcm.len() >= 48_000 * 3,
        "web decoded {} samples",
        web_pcm.len()
    );
    let tail = &web_pcm[web_pcm.len() - 96_000..];
    let (a440, echo) = tone_ratio(tail, 48_000, 440.0, 1000.0);
    let (all440, hold_music) = tone_ratio(&web_pcm, 48_000, 440.0, 300.0);
    assert!(
        hold_music < all440 / 20.0,
        "the meeting heard the caller's music on hold: {hold_music} vs 440 Hz {all440}"
    );
    assert!(
        a440 > 0.01,
        "440 Hz too weak at the web participant: {a440}"
    );
    assert!(
        a440 > 20.0 * echo,
        "the web hears 440 Hz {a440} vs its own 1 kHz {echo}"
    );

    wait_for("the call to end", Duration::from_secs(5), || {
        participants(api, "5550001") == 1
    });
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    assert!(metric(&text, "sluice_dialin_transcode_seconds_count") > 100.0);
    daemon.shutdown();
}

#[test]
fn the_menu_takes_meeting_number_and_passcode_by_dtmf() {
    let daemon = start("digit_timeout_secs = 20\n");
    let api = daemon.control_addr();
    meeting(api, "5550002", "standard", Some("4321"));
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "join.xml", "meet", phone.port(), 9000);
    phone.wait_for_relay();
    phone.idle(Duration::from_millis(300));
    // A wrong meeting number first: the menu says so and asks again.
    phone.dial("999#");
    phone.idle(Duration::from_millis(500));
    phone.dial("5550002#");
    phone.idle(Duration::from_millis(500));
    phone.dial("4321#");
    wait_for("the caller to join", Duration::from_secs(5), || {
        participants(api, "5550002") == 1
    });
    phone.idle(Duration::from_millis(500));
    sipp.succeeds();
    assert_heard_prompt(&phone, "welcome.ul");
    // After 999#.
    assert_heard_prompt(&phone, "unknown-meeting.ul");
    wait_for("the caller to leave", Duration::from_secs(5), || {
        participants(api, "5550002") == 0
    });
    let text = metrics(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    daemon.shutdown();
}

#[test]
fn a_wrong_passcode_ends_the_call_from_the_relay_side() {
    let daemon = start("attempts = 2\n");
    let api = daemon.control_addr();
    meeting(api, "5550003", "standard", Some("2468"));
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "hungup.xml", "5550003", phone.port(), 0);
    phone.wait_for_relay();
    phone.idle(Duration::from_millis(200));
    phone.dial("1111#");
    phone.idle(Duration::from_millis(300));
    phone.dial("2222#");
    // The goodbye prompt plays, then sluice sends BYE, which SIPp answers.
    phone.idle(Duration::from_millis(200));
    sipp.succeeds();
    assert_eq!(participants(api, "5550003"), 0);
    assert_heard_prompt(&phone, "wrong-passcode.ul");
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "bad-pin"), 1.0);
    daemon.shutdown();
}

#[test]
fn e2ee_meetings_refuse_phones_directly_and_through_the_menu() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550004", "e2ee", None);
    // Directly: 403 with the Reason (the scenario checks the header).
    let phone = Phone::new();
    Sipp::call(sip(&daemon), "refused.xml", "5550004", phone.port(), 0).succeeds();
    // Through the menu: the sentence is spoken, then sluice hangs up.
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "hungup.xml", "meet", phone.port(), 0);
    phone.wait_for_relay();
    phone.idle(Duration::from_millis(200));
    phone.dial("5550004#");
    phone.idle(Duration::from_millis(200));
    sipp.succeeds();
    assert_heard_prompt(&phone, "e2ee.ul");
    assert_eq!(participants(api, "5550004"), 0);
    let text = metrics(api);
    assert_eq!(outcome(&text, "refused-e2ee"), 2.0);
    daemon.shutdown();
}

#[test]
fn cancel_before_the_answer_ends_the_call() {
    let daemon = start("answer_delay_ms = 5000\n");
    let api = daemon.control_addr();
    meeting(api, "5550005", "standard", None);
    let phone = Phone::new();
    Sipp::call(sip(&daemon), "cancel.xml", "5550005", phone.port(), 0).succeeds();
    wait_for("the caller's leg to go", Duration::from_secs(3), || {
        participants(api, "5550005") == 0
    });
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "failed"), 1.0);
    daemon.shutdown();
}

#[test]
fn deleting_the_meeting_hangs_up_the_caller() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550006", "standard", None);
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "hungup.xml", "5550006", phone.port(), 0);
    phone.wait_for_relay();
    wait_for("the caller to join", Duration::from_secs(5), || {
        participants(api, "5550006") == 1
    });
    let r = http(api, "DELETE", "/v1/meetings/5550006", None, None);
    assert_eq!(r.status, 204, "{}", r.text);
    phone.idle(Duration::from_millis(200));
    sipp.succeeds();
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    daemon.shutdown();
}

/// Sends one datagram to the SIP port and returns the answer, if any.
fn sip_exchange(socket: &UdpSocket, sip: SocketAddr, message: &[u8]) -> Option<String> {
    socket.send_to(message, sip).expect("send");
    let mut buf = [0u8; 4096];
    socket
        .recv_from(&mut buf)
        .ok()
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn malformed_sip_is_dropped_and_counted_and_the_server_keeps_answering() {
    let daemon = start("");
    let api = daemon.control_addr();
    let sip = sip(&daemon);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let broken: [&[u8]; 6] = [
        b"\x00\x01\x02\xff\xfe garbage",
        b"INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\nx",
        b"INVITE sip:1@x SIP/2.0\r\nVia: \xff\xfe\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@x>\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ];
    for message in broken {
        socket.send_to(message, sip).expect("send");
    }
    let local = socket.local_addr().expect("addr");
    let options = format!(
        "OPTIONS sip:meet@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-opt-1;rport\r\n\
         From: <sip:probe@{local}>;tag=p1\r\nTo: <sip:meet@{sip}>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut answer = None;
    for _ in 0..10 {
        answer = sip_exchange(&socket, sip, options.as_bytes());
        if answer.as_deref().is_some_and(|a| a.contains("probe-1")) {
            break;
        }
    }
    let answer = answer.expect("OPTIONS is answered");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains("Allow:"), "{answer}");
    let malformed = metric(&metrics(api), "sluice_sip_malformed_total");
    assert!(malformed >= 4.0, "malformed datagrams counted: {malformed}");
    // An unknown method is answered 501, not dropped.
    let unknown = options
        .replace("OPTIONS", "FROBNICATE")
        .replace("opt-1", "opt-2");
    let answer = sip_exchange(&socket, sip, unknown.as_bytes()).expect("an answer");
    assert!(answer.starts_with("SIP/2.0 501"), "{answer}");
    daemon.shutdown();
}

#[test]
fn a_call_that_sends_no_media_is_hung_up() {
    let daemon = start("media_timeout_secs = 1\n");
    let api = daemon.control_addr();
    meeting(api, "5550007", "standard", None);
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "hungup.xml", "5550007", phone.port(), 0);
    // The phone listens but never sends: after a second sluice sends BYE.
    phone.wait_for_relay();
    let started = Instant::now();
    sipp.succeeds();
    assert!(started.elapsed() < Duration::from_secs(10));
    calls_settled(api);
    assert_eq!(participants(api, "5550007"), 0);
    daemon.shutdown();
}

#[test]
fn an_sdes_srtp_caller_enters_the_passcode_and_joins() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550008", "standard", Some("8642"));
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    let caller_key: Vec<u8> = (1..=30u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let log = std::env::temp_dir().join(format!("sluice-sipp-srtp-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut phone = Phone::new();
    let sipp = Sipp::call_with(
        sip(&daemon),
        "join-srtp.xml",
        "5550008",
        phone.port(),
        6000,
        &[
            "-key",
            "ckey",
            &b64.encode(&caller_key),
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    // sluice's key, from its SDP answer, as SIPp logged it.
    let mut answer_key = None;
    wait_for(
        "SIPp to log the answer's key",
        Duration::from_secs(10),
        || {
            answer_key = std::fs::read_to_string(&log).ok().and_then(|text| {
                let line = text.lines().find(|l| l.contains("answer-key "))?;
                b64.decode(line.split("answer-key ").nth(1)?.trim()).ok()
            });
            answer_key.is_some()
        },
    );
    let answer_key = answer_key.expect("found");
    assert_eq!(answer_key.len(), 30, "an AES_CM_128 key and salt");
    assert_ne!(answer_key, caller_key, "sluice picks its own key");
    phone.srtp = Some((
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(profile, &caller_key).expect("key"),
        )
        .expect("session"),
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(profile, &answer_key).expect("key"),
        )
        .expect("session"),
    ));
    // Every packet from sluice must authenticate (listen() panics if not).
    phone.wait_for_relay();
    phone.idle(Duration::from_millis(300));
    phone.dial("8642#");
    wait_for("the SRTP caller to join", Duration::from_secs(5), || {
        participants(api, "5550008") == 1
    });
    phone.idle(Duration::from_millis(300));
    // Decrypted, byte for byte.
    assert_heard_prompt(&phone, "passcode.ul");
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);
    calls_settled(api);
    daemon.shutdown();
}

#[test]
fn calls_beyond_max_calls_are_answered_503() {
    let daemon = start("max_calls = 1\n");
    let api = daemon.control_addr();
    meeting(api, "5550009", "standard", None);
    let mut phone = Phone::new();
    let first = Sipp::call(sip(&daemon), "join.xml", "5550009", phone.port(), 3000);
    phone.wait_for_relay();
    // A second INVITE while the first call is up.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let local = socket.local_addr().expect("addr");
    let sip = sip(&daemon);
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:5550009@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-second;rport\r\n\
         From: <sip:second@{local}>;tag=s1\r\nTo: <sip:5550009@{sip}>\r\nCall-ID: second-call\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:second@{local}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket.send_to(invite.as_bytes(), sip).expect("send");
    let mut final_answer = None;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while final_answer.is_none() && Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 100") {
                final_answer = Some(text);
            }
        }
    }
    let answer = final_answer.expect("a final answer to the second INVITE");
    assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
    phone.idle(Duration::from_millis(200));
    first.succeeds();
    calls_settled(api);
    daemon.shutdown();
}

#[test]
fn a_silent_caller_sends_keep_alives_and_a_talking_one_every_frame() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550010", "standard", None);
    let mut web = web_participant(api, "5550010", 0x2222);
    // One packet latches the web participant's address.
    let mut encoder = OpusEncoder::new(32_000, 5).expect("opus encoder");
    let quiet = encoder.encode(&[0i16; 960]).expect("encode").to_vec();
    web.send_rtp(0x2222, 1, &quiet);

    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "join.xml", "5550010", phone.port(), 4500);
    phone.wait_for_relay();
    wait_for("the caller to join", Duration::from_secs(5), || {
        participants(api, "5550010") == 2
    });
    let _ = web.drain();
    // Two seconds of silence, then one second of a 440 Hz tone.
    phone.idle(Duration::from_secs(2));
    let silent = web.drain();
    let mut sine = Sine::new(440.0, 8000, 8000.0);
    let (mut pcm, mut ulaw) = ([0i16; 160], [0u8; 160]);
    let start = Instant::now();
    for k in 1..=50u64 {
        sine.fill(&mut pcm);
        G711::Mu.encode(&pcm, &mut ulaw);
        phone.send_pcmu(&ulaw);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            phone.listen();
        }
    }
    // The talkspurt's last frames may still be on their way through the
    // pool thread and the relay when a loaded machine preempted either:
    // give them 100 ms (the 200 ms hangover keeps them 20 ms apart, so
    // what arrives meanwhile is still one frame per 20 ms).
    let grace = Instant::now() + Duration::from_millis(100);
    while Instant::now() < grace {
        phone.listen();
    }
    let talking = web.drain();
    sipp.succeeds();

    let mut headers = |datagrams: Vec<Vec<u8>>| -> Vec<(bool, u16, u32)> {
        datagrams
            .into_iter()
            .filter(|d| !support::is_rtcp(d))
            .map(|mut d| {
                let n = d.len();
                let len = web.recv.unprotect_rtp(&mut d, n).expect("authentic");
                let p = sluice::rtp::RtpPacket::parse(&d[..len]).expect("rtp");
                let h = p.header();
                (h.marker(), h.sequence().0, h.timestamp())
            })
            .collect()
    };
    let silent = headers(silent);
    let talking = headers(talking);
    // Silence: after the 200 ms hangover, one frame every 400 ms; two
    // seconds give at most the hangover's frames plus a handful.
    assert!(
        silent.len() <= 10 + 6,
        "a silent caller sent {} frames in 2 s",
        silent.len()
    );
    // Talking: every 20 ms.
    assert!(
        talking.len() >= 40,
        "a talking caller sent {} frames in 1 s",
        talking.len()
    );
    // The first frame of the talkspurt carries the marker bit (RFC 3551),
    // and the RTP clock kept running through the silence: consecutive
    // sequence numbers, timestamps a whole number of frames apart.
    assert!(talking.iter().any(|&(marker, _, _)| marker), "{talking:?}");
    let all: Vec<_> = silent.iter().chain(&talking).copied().collect();
    for pair in all.windows(2) {
        let ((_, s0, t0), (_, s1, t1)) = (pair[0], pair[1]);
        assert_eq!(s1, s0.wrapping_add(1), "{all:?}");
        let step = t1.wrapping_sub(t0);
        assert!(step >= 960 && step % 960 == 0, "{all:?}");
    }
    assert!(
        all.windows(2)
            .any(|p| p[1].2.wrapping_sub(p[0].2) >= 960 * 10),
        "the silence shows as a timestamp gap: {all:?}"
    );
    calls_settled(api);
    daemon.shutdown();
}

#[test]
fn callers_of_one_meeting_share_one_receive_leg_and_each_hears_the_others_but_not_itself() {
    // One media thread: the three calls of the meeting run on it, and
    // hear the meeting through one receive leg of that thread.
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550050", "standard", None);
    let tones = [400.0f32, 900.0, 1400.0];
    let mut phones: Vec<Phone> = tones.iter().map(|_| Phone::new()).collect();
    let sipps: Vec<Sipp> = phones
        .iter()
        .map(|phone| Sipp::call(sip(&daemon), "join.xml", "5550050", phone.port(), 9000))
        .collect();
    for phone in &mut phones {
        phone.wait_for_relay();
    }
    wait_for("the callers to join", Duration::from_secs(5), || {
        participants(api, "5550050") == 3
    });
    // Three calls, one receive leg; the leg is not a listed participant.
    assert_eq!(metric(&metrics(api), "sluice_dialin_mixer_legs"), 1.0);
    // Each caller speaks its own tone for five seconds, paced at 20 ms.
    let mut sines: Vec<Sine> = tones.iter().map(|&f| Sine::new(f, 8000, 8000.0)).collect();
    let mut pcm = [0i16; 160];
    let mut ulaw = [0u8; 160];
    let start = Instant::now();
    for k in 1..=250u64 {
        for (phone, sine) in phones.iter_mut().zip(&mut sines) {
            sine.fill(&mut pcm);
            G711::Mu.encode(&pcm, &mut ulaw);
            phone.send_pcmu(&ulaw);
        }
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            for phone in &mut phones {
                phone.listen();
            }
        }
    }
    assert_eq!(metric(&metrics(api), "sluice_dialin_mixer_legs"), 1.0);
    // The last two seconds of each phone: the two other tones, each well
    // above the phone's own (N-1 mix: the leg brings the caller's own
    // stream too, and the mix leaves it out by SSRC).
    for (i, phone) in phones.iter().enumerate() {
        let heard = phone.heard(0);
        assert!(
            heard.len() >= 160 * 200,
            "phone {i} heard {} samples",
            heard.len()
        );
        let tail = &heard[heard.len() - 16_000..];
        let mut decoded = vec![0i16; tail.len()];
        G711::Mu.decode(tail, &mut decoded);
        let own = goertzel_power(&decoded, 8000, tones[i]);
        for (j, &tone) in tones.iter().enumerate() {
            if j == i {
                continue;
            }
            let other = goertzel_power(&decoded, 8000, tone);
            assert!(
                other > 0.005,
                "phone {i} hears {tone} Hz too weakly: {other}"
            );
            assert!(
                other > 20.0 * own,
                "phone {i} hears {tone} Hz at {other} vs its own {} Hz at {own}",
                tones[i]
            );
        }
    }
    for sipp in sipps {
        sipp.succeeds();
    }
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 3.0);
    // The last call took the receive leg with it.
    wait_for("the receive leg to close", Duration::from_secs(5), || {
        metric(&metrics(api), "sluice_dialin_mixer_legs") == 0.0
    });
    assert_eq!(participants(api, "5550050"), 0);
    daemon.shutdown();
}

// ----- SIP over TCP and TLS -----

fn sip_tcp(daemon: &Daemon) -> SocketAddr {
    daemon.sip_stream_addrs().0.expect("SIP over TCP is on")
}

fn sip_tls(daemon: &Daemon) -> SocketAddr {
    daemon.sip_stream_addrs().1.expect("SIP over TLS is on")
}

fn edge(api: SocketAddr, reason: &str) -> f64 {
    metric(
        &metrics(api),
        &format!("sluice_sip_edge_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn a_call_over_tcp_joins_and_is_hung_up_over_its_connection() {
    let daemon = start("listen_tcp = \"127.0.0.1:0\"\n");
    let api = daemon.control_addr();
    meeting(api, "5550020", "standard", None);
    let mut phone = Phone::new();
    // SIPp over one TCP connection; the BYE that deleting the meeting
    // causes must come back over it.
    let sipp = Sipp::call_with(
        sip_tcp(&daemon),
        "hungup.xml",
        "5550020",
        phone.port(),
        0,
        &["-t", "t1"],
    );
    phone.wait_for_relay();
    wait_for("the TCP caller to join", Duration::from_secs(5), || {
        participants(api, "5550020") == 1
    });
    let r = http(api, "DELETE", "/v1/meetings/5550020", None, None);
    assert_eq!(r.status, 204, "{}", r.text);
    phone.idle(Duration::from_millis(200));
    sipp.succeeds();
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    daemon.shutdown();
}

#[test]
fn a_tcp_caller_hangs_up_and_e2ee_is_refused_over_tcp() {
    let daemon = start("listen_tcp = \"127.0.0.1:0\"\n");
    let api = daemon.control_addr();
    meeting(api, "5550021", "standard", None);
    meeting(api, "5550022", "e2ee", None);
    let mut phone = Phone::new();
    let sipp = Sipp::call_with(
        sip_tcp(&daemon),
        "join.xml",
        "5550021",
        phone.port(),
        1500,
        &["-t", "t1"],
    );
    phone.wait_for_relay();
    wait_for("the TCP caller to join", Duration::from_secs(5), || {
        participants(api, "5550021") == 1
    });
    phone.idle(Duration::from_millis(400));
    sipp.succeeds();
    wait_for("the caller's leg to go", Duration::from_secs(3), || {
        participants(api, "5550021") == 0
    });
    // The 403 with its Reason, over TCP (the scenario checks the header).
    let phone = Phone::new();
    Sipp::call_with(
        sip_tcp(&daemon),
        "refused.xml",
        "5550022",
        phone.port(),
        0,
        &["-t", "t1"],
    )
    .succeeds();
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    assert_eq!(outcome(&text, "refused-e2ee"), 1.0);
    daemon.shutdown();
}

/// Reads from `stream` until `want` has arrived (or 5 s pass).
fn read_until(stream: &mut std::net::TcpStream, want: &str) -> String {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the peer closed `stream` within 5 s.
fn closed_by_peer(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => {}
        }
    }
    false
}

#[test]
fn a_tcp_connection_answers_keepalives_and_options_and_is_closed_when_hostile() {
    use std::io::Write as _;
    let daemon = start("listen_tcp = \"127.0.0.1:0\"\nmax_connections_per_source = 2\n");
    let api = daemon.control_addr();
    let tcp = sip_tcp(&daemon);
    let mut conn = std::net::TcpStream::connect(tcp).expect("connect");
    // RFC 5626 ping, then OPTIONS split across writes, on one connection.
    conn.write_all(b"\r\n\r\n").expect("ping");
    assert_eq!(read_until(&mut conn, "\r\n"), "\r\n", "pong");
    let local = conn.local_addr().expect("addr");
    let options = format!(
        "OPTIONS sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-opt1\r\n\
         From: <sip:probe@{local}>;tag=p1\r\nTo: <sip:{tcp}>\r\nCall-ID: opt-1@test\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let (head, tail) = options.split_at(40);
    conn.write_all(head.as_bytes()).expect("write");
    thread::sleep(Duration::from_millis(50));
    conn.write_all(tail.as_bytes()).expect("write");
    let answer = read_until(&mut conn, "Content-Length: 0\r\n\r\n");
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Call-ID: opt-1@test\r\n"), "{answer}");

    // A third connection from this source is over its cap: closed unread.
    let mut second = std::net::TcpStream::connect(tcp).expect("connect");
    let mut third = std::net::TcpStream::connect(tcp).expect("connect");
    assert!(
        closed_by_peer(&mut third),
        "the third connection stays open"
    );
    wait_for("the refusal to be counted", Duration::from_secs(3), || {
        edge(api, "connection-refused") == 1.0
    });
    // A message without Content-Length cannot be framed on a stream.
    second
        .write_all(b"INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n")
        .expect("write");
    assert!(
        closed_by_peer(&mut second),
        "a stream without Content-Length stays open"
    );
    // Endless headers: closed at the message size limit, not buffered on.
    let mut third = std::net::TcpStream::connect(tcp).expect("connect");
    let _ = third.write_all(b"INVITE sip:1@x SIP/2.0\r\n");
    let pad = "X-Pad: 0123456789012345678901234567890123456789\r\n".repeat(2000);
    let _ = third.write_all(pad.as_bytes());
    assert!(closed_by_peer(&mut third), "endless headers stay buffered");
    wait_for("the closes to be counted", Duration::from_secs(3), || {
        edge(api, "connection-misbehaving") == 2.0
    });
    // The first connection still works.
    let again = options
        .replace("z9hG4bK-opt1", "z9hG4bK-opt2")
        .replace("CSeq: 1", "CSeq: 2");
    conn.write_all(again.as_bytes()).expect("write");
    let answer = read_until(&mut conn, "Content-Length: 0\r\n\r\n");
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    daemon.shutdown();
}

#[test]
fn tcp_sources_outside_allow_are_closed_before_a_byte_is_read() {
    let daemon = start("listen_tcp = \"127.0.0.1:0\"\nallow = [\"192.0.2.0/24\"]\n");
    let api = daemon.control_addr();
    let mut conn = std::net::TcpStream::connect(sip_tcp(&daemon)).expect("connect");
    assert!(
        closed_by_peer(&mut conn),
        "a refused source stays connected"
    );
    wait_for("the refusal to be counted", Duration::from_secs(3), || {
        edge(api, "connection-refused") == 1.0 && edge(api, "not-allowed") == 1.0
    });
    daemon.shutdown();
}

#[test]
fn a_tls_caller_with_sdes_srtp_joins_through_openssl() {
    let cert = TestCert::new("join");
    let daemon = start(&cert.config());
    let api = daemon.control_addr();
    meeting(api, "5550023", "standard", None);
    let hop = TlsHop::client(sip_tls(&daemon), &cert);
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    let caller_key: Vec<u8> = (31..=60u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let log = std::env::temp_dir().join(format!("sluice-sipp-tls-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut phone = Phone::new();
    let sipp = Sipp::call_with(
        hop.addr(),
        "join-srtp.xml",
        "5550023",
        phone.port(),
        2000,
        &[
            "-t",
            "t1",
            "-key",
            "ckey",
            &b64.encode(&caller_key),
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    let mut answer_key = None;
    wait_for(
        "SIPp to log the answer's key",
        Duration::from_secs(10),
        || {
            answer_key = std::fs::read_to_string(&log).ok().and_then(|text| {
                let line = text.lines().find(|l| l.contains("answer-key "))?;
                b64.decode(line.split("answer-key ").nth(1)?.trim()).ok()
            });
            answer_key.is_some()
        },
    );
    let answer_key = answer_key.expect("found");
    phone.srtp = Some((
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(profile, &caller_key).expect("key"),
        )
        .expect("session"),
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(profile, &answer_key).expect("key"),
        )
        .expect("session"),
    ));
    // Every packet from sluice must authenticate (listen() panics if not).
    phone.wait_for_relay();
    wait_for("the TLS caller to join", Duration::from_secs(5), || {
        participants(api, "5550023") == 1
    });
    phone.idle(Duration::from_millis(300));
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    drop(hop);
    daemon.shutdown();
}

#[test]
fn a_tls_caller_offering_plain_rtp_is_refused_488() {
    let cert = TestCert::new("plain");
    let daemon = start(&cert.config());
    let api = daemon.control_addr();
    meeting(api, "5550024", "standard", None);
    let hop = TlsHop::client(sip_tls(&daemon), &cert);
    let phone = Phone::new();
    // The scenario checks the 488 and its Warning.
    Sipp::call_with(
        hop.addr(),
        "srtp-required.xml",
        "5550024",
        phone.port(),
        0,
        &["-t", "t1"],
    )
    .succeeds();
    assert_eq!(participants(api, "5550024"), 0);
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "failed"), 1.0);
    drop(hop);
    daemon.shutdown();
}

#[test]
fn silent_connections_and_stalled_tls_handshakes_are_closed() {
    let cert = TestCert::new("idle");
    let daemon = start(&format!(
        "listen_tcp = \"127.0.0.1:0\"\nconnection_idle_secs = 10\n{}",
        cert.config()
    ));
    let api = daemon.control_addr();
    let opened = Instant::now();
    // A TCP peer that never sends, and a TLS peer that never says hello.
    let mut silent = std::net::TcpStream::connect(sip_tcp(&daemon)).expect("connect");
    let mut stalled = std::net::TcpStream::connect(sip_tls(&daemon)).expect("connect");
    let mut both_closed = false;
    while opened.elapsed() < Duration::from_secs(16) {
        if closed_by_peer(&mut silent) && closed_by_peer(&mut stalled) {
            both_closed = true;
            break;
        }
    }
    assert!(both_closed, "idle connections are still open");
    let took = opened.elapsed();
    assert!(took >= Duration::from_secs(9), "closed too early: {took:?}");
    wait_for("the closes to be counted", Duration::from_secs(3), || {
        edge(api, "connection-idle") == 2.0
    });
    daemon.shutdown();
}

/// A wideband caller (SIPp signalling `scenario`, which checks the answer
/// took the codec; the test's socket does the media in `codec`) hears the
/// meeting's 6 kHz tone, which 8 kHz G.711 could not carry, and the
/// meeting hears the caller's 5 kHz.
fn a_wideband_caller_hears_and_is_heard_above_4_khz(scenario: &str, mut codec: PhoneCodec) {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550030", "standard", None);
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550030", 0x3333, 6000.0, &stop);

    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), scenario, "5550030", phone.port(), 7000);
    phone.wait_for_relay();
    wait_for("the caller to join", Duration::from_secs(5), || {
        participants(api, "5550030") == 2
    });
    let rate = codec.rate();
    let pt = codec.pt();
    let mut sine = Sine::new(5000.0, rate, 8000.0);
    let mut pcm = vec![0i16; rate as usize / 50];
    let start = Instant::now();
    for k in 1..=250u64 {
        sine.fill(&mut pcm);
        let payload = codec.encode(&pcm);
        let ts = phone.timestamp;
        phone.send(pt, k == 1, ts, &payload);
        phone.timestamp = ts.wrapping_add(codec.rtp_step());
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            phone.listen();
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");
    sipp.succeeds();

    wideband_heard_both_ways(&phone.heard, &mut codec, &web_pcm);

    wait_for("the call to end", Duration::from_secs(5), || {
        participants(api, "5550030") == 1
    });
    let text = calls_settled(api);
    assert_eq!(outcome(&text, "joined"), 1.0);
    daemon.shutdown();
}

#[test]
fn an_opus_caller_is_answered_with_opus_and_bridged_at_48_khz() {
    let phone = OpusEncoder::with_settings(OpusSettings {
        bitrate_bps: 48_000,
        complexity: 5,
        bandwidth: OpusBandwidth::Full,
        ..OpusSettings::DIAL_IN
    })
    .expect("opus encoder");
    a_wideband_caller_hears_and_is_heard_above_4_khz(
        "join-opus.xml",
        PhoneCodec::Opus(phone, OpusDecoder::new().expect("opus decoder")),
    );
}

#[test]
fn a_g722_caller_is_answered_with_g722_and_bridged_at_16_khz() {
    a_wideband_caller_hears_and_is_heard_above_4_khz(
        "join-g722.xml",
        PhoneCodec::G722(
            G722Encoder::new().expect("g722 encoder"),
            G722Decoder::new().expect("g722 decoder"),
        ),
    );
}

/// The first line of SIPp's log `log` that starts a message with `tag `
/// (after `tag`), once it is there.
fn sipp_logged(log: &Path, tag: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(tag) || l.contains(&format!(" {tag}")))?;
    Some(line.split(tag).nth(1)?.trim().to_owned())
}

fn sdes(profile: SrtpProfile, key: &[u8]) -> SrtpSession<AnyGcm> {
    SrtpSession::new(
        AnyGcm::default(),
        &MasterKey::new(profile, key).expect("key"),
    )
    .expect("session")
}

/// What the phone received over `d` (sending a PCMU frame of `tone`
/// every 20 ms under `send`): (packets that authenticate under `recv`,
/// packets that do not).
fn exchange(
    phone: &mut Phone,
    send: &mut SrtpSession<AnyGcm>,
    recv: &mut SrtpSession<AnyGcm>,
    tone: &mut Option<Sine>,
    d: Duration,
) -> (usize, usize) {
    let relay = phone.relay.expect("relay known");
    let (mut good, mut bad) = (0, 0);
    let start = Instant::now();
    let mut k = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed() < d {
        k += 1;
        let mut pcm = [0i16; 160];
        if let Some(sine) = tone {
            sine.fill(&mut pcm);
        }
        let mut ulaw = [0u8; 160];
        G711::Mu.encode(&pcm, &mut ulaw);
        let mut p = vec![0x80, 0];
        p.extend(phone.seq.to_be_bytes());
        p.extend(phone.timestamp.to_be_bytes());
        p.extend(0x5eed_0001u32.to_be_bytes());
        p.extend_from_slice(&ulaw);
        phone.seq = phone.seq.wrapping_add(1);
        phone.timestamp = phone.timestamp.wrapping_add(160);
        let len = p.len();
        p.resize(len + 32, 0);
        let n = send.protect_rtp(&mut p, len).expect("protect");
        phone.socket.send_to(&p[..n], relay).expect("phone sends");
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            if let Ok((n, _)) = phone.socket.recv_from(&mut buf) {
                if recv.unprotect_rtp(&mut buf, n).is_ok() {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
        }
    }
    (good, bad)
}

#[test]
fn a_reinvite_holds_unholds_and_rekeys_an_srtp_call() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550040", "standard", None);
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550040", 0x4444, 1000.0, &stop);
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    let key1: Vec<u8> = (1..=30u8).collect();
    let key2: Vec<u8> = (101..=130u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let log = std::env::temp_dir().join(format!("sluice-sipp-rekey-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (rtp, rtcp) = rtp_and_rtcp_sockets();
    let mut phone = Phone::new();
    phone.socket = rtp;
    let sipp = Sipp::call_with(
        sip(&daemon),
        "hold-rekey.xml",
        "5550040",
        phone.port(),
        2500,
        &[
            "-key",
            "ckey",
            &b64.encode(&key1),
            "-key",
            "ckey2",
            &b64.encode(&key2),
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    let mut answer1 = None;
    wait_for("the first answer's key", Duration::from_secs(10), || {
        answer1 = sipp_logged(&log, "answer-key ").and_then(|k| b64.decode(k).ok());
        answer1.is_some()
    });
    let answer1 = answer1.expect("found");
    let (mut send, mut recv) = (sdes(profile, &key1), sdes(profile, &answer1));
    // Learn the relay's address from its first packet (the prompt).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while phone.relay.is_none() {
        assert!(Instant::now() < deadline, "the relay never sent RTP");
        if let Ok((_, from)) = phone.socket.recv_from(&mut buf) {
            phone.relay = Some(from);
        }
    }
    let mut quiet = None;
    let (good, bad) = exchange(
        &mut phone,
        &mut send,
        &mut recv,
        &mut quiet,
        Duration::from_millis(800),
    );
    assert!(good > 30 && bad == 0, "before hold: {good} good, {bad} bad");

    // On hold: the bridge sends the caller nothing, and the caller's music
    // on hold (300 Hz) never reaches the meeting.
    wait_for("SIPp to hold the call", Duration::from_secs(10), || {
        sipp_logged(&log, "held").is_some()
    });
    let mut quiet = Some(Sine::new(300.0, 8000, 8000.0));
    exchange(
        &mut phone,
        &mut send,
        &mut recv,
        &mut quiet,
        Duration::from_millis(200),
    );
    let (good, bad) = exchange(
        &mut phone,
        &mut send,
        &mut recv,
        &mut quiet,
        Duration::from_millis(800),
    );
    assert_eq!((good, bad), (0, 0), "packets reached the phone on hold");
    assert_eq!(
        participants(api, "5550040"),
        2,
        "a held caller stays in the meeting"
    );
    // By now (over 2.5 s into the call) the first report went to RTP + 1,
    // as SRTCP under sluice's first key; it is sent on hold too.
    let mut srtcp = sdes(profile, &answer1);
    let mut reports = 0;
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = rtcp.recv_from(&mut buf) {
        let len = srtcp
            .unprotect_rtcp(&mut buf, n)
            .expect("sluice's RTCP is SRTCP under its key");
        assert!(support::is_rtcp(&buf[..len]));
        reports += 1;
    }
    assert!(reports >= 1, "no SRTCP report reached RTP + 1");

    // Off hold with new keys both ways: sluice's new key authenticates
    // what the phone hears, and the caller's 440 Hz under its new key
    // reaches the meeting.
    let mut answer2 = None;
    wait_for("the second answer's key", Duration::from_secs(10), || {
        answer2 = sipp_logged(&log, "answer-key2 ").and_then(|k| b64.decode(k).ok());
        answer2.is_some()
    });
    let answer2 = answer2.expect("found");
    assert_ne!(answer2, answer1, "a new key of sluice's own in the answer");
    let (mut send, mut recv) = (sdes(profile, &key2), sdes(profile, &answer2));
    let mut tone = Some(Sine::new(440.0, 8000, 8000.0));
    exchange(
        &mut phone,
        &mut send,
        &mut recv,
        &mut tone,
        Duration::from_millis(200),
    );
    let (good, bad) = exchange(
        &mut phone,
        &mut send,
        &mut recv,
        &mut tone,
        Duration::from_millis(1500),
    );
    assert!(
        good > 50 && bad == 0,
        "after re-key: {good} good, {bad} bad"
    );
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);
    let tail = &web_pcm[web_pcm.len().saturating_sub(48_000)..];
    let (a440, echo) = tone_ratio(tail, 48_000, 440.0, 1000.0);
    let (all440, hold_music) = tone_ratio(&web_pcm, 48_000, 440.0, 300.0);
    assert!(
        hold_music < all440 / 20.0,
        "the meeting heard the caller's music on hold: {hold_music} vs 440 Hz {all440}"
    );
    assert!(
        a440 > 0.01 && a440 > 20.0 * echo,
        "the meeting hears the re-keyed caller: {a440} vs {echo}"
    );
    calls_settled(api);
    daemon.shutdown();
}

/// An RTP socket and, on the next port, its RTCP socket (RFC 3550 §11).
fn rtp_and_rtcp_sockets() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind RTP");
        let port = rtp.local_addr().expect("addr").port();
        if let Some(next) = port.checked_add(1)
            && let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", next))
        {
            for s in [&rtp, &rtcp] {
                s.set_read_timeout(Some(Duration::from_millis(2)))
                    .expect("timeout");
            }
            return (rtp, rtcp);
        }
    }
    panic!("no two adjacent free UDP ports on loopback");
}

/// A sender report as the phone reads it: (SSRC, NTP timestamp, its
/// report blocks' (SSRC, extended highest sequence number)).
type Sr = (u32, u64, Vec<(u32, u32)>);

/// The first SR in `datagram`.
fn sender_report(datagram: &[u8]) -> Option<Sr> {
    use sluice::rtp::{RtcpCompound, RtcpPacket};
    RtcpCompound::new(datagram).find_map(|p| match p {
        Ok(RtcpPacket::SenderReport(sr)) => Some((
            sr.ssrc().0,
            sr.ntp_timestamp(),
            sr.report_blocks()
                .map(|b| (b.ssrc.0, b.highest_seq))
                .collect(),
        )),
        _ => None,
    })
}

/// A receiver report from the phone (SSRC 0x5eed0001) about `about`,
/// echoing its SR's NTP timestamp (LSR) with no delay since.
fn phone_rr(about: u32, sr_ntp: u64) -> Vec<u8> {
    let block = sluice::rtp::rtcp::ReportBlock {
        ssrc: sluice::rtp::Ssrc(about),
        fraction_lost: 0,
        cumulative_lost: 0,
        highest_seq: 1,
        jitter: 0,
        lsr: (sr_ntp >> 16) as u32,
        dlsr: 0,
    };
    let mut out = [0u8; 64];
    let len = sluice::rtp::rtcp::ReceiverReportBuilder {
        ssrc: sluice::rtp::Ssrc(0x5eed_0001),
        report_blocks: &[block],
    }
    .write(&mut out)
    .expect("rr");
    out[..len].to_vec()
}

/// Sends PCMU silence for `d` on `phone`, and collects, per socket, the
/// RTCP datagrams that arrive: (on the RTP socket, on the RTCP socket),
/// each with its source.
fn talk_and_collect_rtcp(
    phone: &mut Phone,
    rtcp: Option<&UdpSocket>,
    d: Duration,
) -> Vec<(bool, SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    let start = Instant::now();
    let mut k = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed() < d {
        k += 1;
        phone.send_pcmu(&[0xFF; 160]);
        let due = start + Duration::from_millis(20 * k);
        while Instant::now() < due {
            if let Ok((n, from)) = phone.socket.recv_from(&mut buf)
                && support::is_rtcp(&buf[..n])
            {
                got.push((false, from, buf[..n].to_vec()));
            }
            if let Some(socket) = rtcp
                && let Ok((n, from)) = socket.recv_from(&mut buf)
            {
                got.push((true, from, buf[..n].to_vec()));
            }
        }
    }
    got
}

#[test]
fn a_caller_gets_rtcp_sender_reports_on_rtp_port_plus_one_and_its_reports_are_read() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550050", "standard", None);
    let (rtp, rtcp) = rtp_and_rtcp_sockets();
    let mut phone = Phone::new();
    phone.socket = rtp;
    let sipp = Sipp::call(sip(&daemon), "join.xml", "5550050", phone.port(), 5000);
    phone.wait_for_relay();
    let got = talk_and_collect_rtcp(&mut phone, Some(&rtcp), Duration::from_millis(3500));
    assert!(
        got.iter().all(|(on_rtcp, ..)| *on_rtcp),
        "RTCP on the RTP port without rtcp-mux"
    );
    let (_, from, report) = got.first().expect("an RTCP report reached RTP port + 1");
    let (ssrc, ntp, blocks) = sender_report(report).expect("a sender report (sluice sends RTP)");
    // About the phone's stream: its SSRC, and at least the packets it sent.
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].0, 0x5eed_0001);
    assert!(blocks[0].1 >= 1000 + 100, "highest seq {}", blocks[0].1);
    // The phone's RR back to where the SR came from is read.
    rtcp.send_to(&phone_rr(ssrc, ntp), from).expect("send rr");
    wait_for("the RR to be counted", Duration::from_secs(3), || {
        metric(
            &metrics(api),
            "sluice_dialin_rtcp_reports_total{direction=\"received\"}",
        ) >= 1.0
    });
    assert!(
        metric(
            &metrics(api),
            "sluice_dialin_rtcp_reports_total{direction=\"sent\"}"
        ) >= 1.0
    );
    sipp.succeeds();
    calls_settled(api);
    daemon.shutdown();
}

#[test]
fn rtcp_mux_puts_the_callers_rtcp_on_its_rtp_port() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550051", "standard", None);
    let mut phone = Phone::new();
    let sipp = Sipp::call(sip(&daemon), "join-mux.xml", "5550051", phone.port(), 5000);
    let relay = phone.wait_for_relay();
    let got = talk_and_collect_rtcp(&mut phone, None, Duration::from_millis(3500));
    let (_, from, report) = got.first().expect("RTCP muxed on the RTP port");
    assert_eq!(*from, relay, "muxed RTCP comes from the RTP port");
    let (ssrc, ntp, blocks) = sender_report(report).expect("a sender report");
    assert_eq!(blocks.first().map(|b| b.0), Some(0x5eed_0001));
    // The phone's RR, muxed, to sluice's RTP port.
    phone
        .socket
        .send_to(&phone_rr(ssrc, ntp), relay)
        .expect("send rr");
    wait_for("the muxed RR to be counted", Duration::from_secs(3), || {
        metric(
            &metrics(api),
            "sluice_dialin_rtcp_reports_total{direction=\"received\"}",
        ) >= 1.0
    });
    sipp.succeeds();
    calls_settled(api);
    daemon.shutdown();
}

/// What the phone got in one phase of a call whose codec changes: RTP
/// (when, payload type, SSRC, payload), and RTCP on its RTP port (muxed)
/// and on RTP + 1 (when, source).
#[derive(Default)]
struct Phase {
    started: Option<Instant>,
    /// How long it lasted, once the next began.
    lasted: Option<Duration>,
    rtp: Vec<(Duration, u8, u32, Vec<u8>)>,
    muxed: Vec<Duration>,
    apart: Vec<(Duration, SocketAddr, Vec<u8>)>,
}

impl Phase {
    /// The RTP of the phase but its first and last `settle`: packets in
    /// flight across a re-INVITE, and the moments between sluice's 200
    /// and SIPp's log line saying it came, belong to either phase.
    fn rtp_within(&self, settle: Duration) -> impl Iterator<Item = &(Duration, u8, u32, Vec<u8>)> {
        let end = self
            .lasted
            .map_or(Duration::MAX, |d| d.saturating_sub(settle));
        self.rtp
            .iter()
            .filter(move |(at, ..)| *at >= settle && *at < end)
    }
}

/// The 100 ms windows of `pcm` in which `freq` is the loudest of `freqs`
/// by 20 times and clearly there.
fn windows_with(pcm: &[i16], rate: u32, freq: f32, freqs: &[f32]) -> usize {
    pcm.chunks_exact(rate as usize / 10)
        .filter(|w| {
            let p = goertzel_power(w, rate, freq);
            p > 0.002
                && freqs
                    .iter()
                    .filter(|&&f| f != freq)
                    .all(|&f| p > 20.0 * goertzel_power(w, rate, f))
        })
        .count()
}

#[test]
fn a_reinvite_switches_the_codec_and_moves_rtcp_onto_and_off_the_rtp_port() {
    let daemon = start("");
    let api = daemon.control_addr();
    meeting(api, "5550060", "standard", None);
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, heard_by_web) = web_tone(api, "5550060", 0x6666, 2000.0, &stop);
    let log = std::env::temp_dir().join(format!("sluice-sipp-codec-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (rtp, rtcp) = rtp_and_rtcp_sockets();
    let port = rtp.local_addr().expect("addr").port();
    let sipp = Sipp::call_with(
        sip(&daemon),
        "reinvite-codec-mux.xml",
        "5550060",
        port,
        3500,
        &[
            "-trace_logs",
            "-log_file",
            log.to_str().expect("utf-8 path"),
        ],
    );
    // The phone: PCMU at 440 Hz, then Opus at 700 Hz, then PCMA at
    // 1300 Hz, each phase a new SSRC (RFC 7160 §4.1), 20 ms frames.
    let tones = [440.0f32, 700.0, 1300.0];
    let mut opus = OpusEncoder::with_settings(OpusSettings {
        bitrate_bps: 48_000,
        complexity: 5,
        bandwidth: OpusBandwidth::Full,
        ..OpusSettings::DIAL_IN
    })
    .expect("opus encoder");
    let mut phases: [Phase; 3] = Default::default();
    let mut phase = 0usize;
    let mut sines = tones.map(|f| Sine::new(f, 48_000, 8000.0));
    let mut narrow = tones.map(|f| Sine::new(f, 8000, 8000.0));
    let (mut seq, mut timestamp) = (1000u16, 80_000u32);
    let mut relay = None;
    let mut rr_sent = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 2048];
    let mut k = 0u64;
    let begin = Instant::now();
    phases[0].started = Some(begin);
    loop {
        assert!(
            Instant::now() < deadline,
            "the call never went through its phases"
        );
        k += 1;
        if k.is_multiple_of(5) {
            let next = ["switched-opus", "switched-pcma"]
                .get(phase)
                .is_some_and(|tag| sipp_logged(&log, tag).is_some());
            if next {
                phases[phase].lasted = phases[phase].started.map(|t| t.elapsed());
                phase += 1;
                phases[phase].started = Some(Instant::now());
            }
        }
        let since = phases[phase]
            .started
            .map_or(Duration::ZERO, |t| t.elapsed());
        if phase == 2 && since > Duration::from_millis(3200) {
            break;
        }
        if let Some(relay) = relay {
            let (pt, payload, step) = match phase {
                0 | 2 => {
                    let mut pcm = [0i16; 160];
                    narrow[phase].fill(&mut pcm);
                    let mut g711 = [0u8; 160];
                    let (law, pt) = if phase == 0 {
                        (G711::Mu, 0)
                    } else {
                        (G711::A, 8)
                    };
                    law.encode(&pcm, &mut g711);
                    (pt, g711.to_vec(), 160)
                }
                _ => {
                    let mut pcm = [0i16; 960];
                    sines[1].fill(&mut pcm);
                    (111, opus.encode(&pcm).expect("encode").to_vec(), 960)
                }
            };
            let mut p = vec![0x80, pt];
            p.extend(seq.to_be_bytes());
            p.extend(timestamp.to_be_bytes());
            p.extend((0x5eed_0001u32 + phase as u32).to_be_bytes());
            p.extend_from_slice(&payload);
            rtp.send_to(&p, relay).expect("phone sends");
            seq = seq.wrapping_add(1);
            timestamp = timestamp.wrapping_add(step);
        }
        let due = begin + Duration::from_millis(20 * k);
        while Instant::now() < due {
            let at = phases[phase]
                .started
                .map_or(Duration::ZERO, |t| t.elapsed());
            if let Ok((n, from)) = rtp.recv_from(&mut buf) {
                relay.get_or_insert(from);
                if support::is_rtcp(&buf[..n]) {
                    phases[phase].muxed.push(at);
                } else if let Ok(p) = sluice::rtp::RtpPacket::parse(&buf[..n]) {
                    let h = p.header();
                    phases[phase].rtp.push((
                        at,
                        h.payload_type().get(),
                        h.ssrc().0,
                        p.payload().to_vec(),
                    ));
                }
            }
            if let Ok((n, from)) = rtcp.recv_from(&mut buf) {
                let report = buf[..n].to_vec();
                if phase == 2 && !rr_sent {
                    // The phone's RR to where the report came from: read there.
                    if let Some((ssrc, ntp, _)) = sender_report(&report) {
                        rtcp.send_to(&phone_rr(ssrc, ntp), from).expect("send rr");
                        rr_sent = true;
                    }
                }
                phases[phase].apart.push((at, from, report));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let web_pcm = heard_by_web.join().expect("receiver");
    sipp.succeeds();
    let _ = std::fs::remove_file(&log);
    let relay = relay.expect("the relay sent RTP");
    let settle = Duration::from_millis(500);

    // Each phase's RTP is in its codec only, on its own SSRC per clock
    // rate, and carries the meeting's 2 kHz.
    let ssrcs: Vec<std::collections::HashSet<u32>> = phases
        .iter()
        .map(|p| p.rtp_within(settle).map(|(_, _, ssrc, _)| *ssrc).collect())
        .collect();
    for (n, (p, want)) in phases.iter().zip([0u8, 111, 8]).enumerate() {
        let pts: std::collections::HashSet<u8> =
            p.rtp_within(settle).map(|(_, pt, ..)| *pt).collect();
        assert_eq!(
            pts,
            [want].into(),
            "phase {n}: payload types {pts:?}, {want} wanted"
        );
        assert_eq!(ssrcs[n].len(), 1, "phase {n}: SSRCs {:?}", ssrcs[n]);
    }
    assert!(ssrcs[0] != ssrcs[1] && ssrcs[1] != ssrcs[2], "{ssrcs:?}");
    let mut opus_in = OpusDecoder::new().expect("opus decoder");
    let heard_opus: Vec<i16> = phases[1]
        .rtp_within(settle)
        .flat_map(|(_, _, _, payload)| opus_in.decode(payload).expect("decode").to_vec())
        .collect();
    let heard_pcma: Vec<i16> = phases[2]
        .rtp_within(settle)
        .flat_map(|(_, _, _, payload)| {
            let mut pcm = vec![0i16; payload.len()];
            G711::A.decode(payload, &mut pcm);
            pcm
        })
        .collect();
    let in_meeting = [2000.0, 440.0, 700.0, 1300.0];
    let opus_windows = windows_with(&heard_opus, 48_000, 2000.0, &in_meeting);
    let pcma_windows = windows_with(&heard_pcma, 8000, 2000.0, &in_meeting);
    assert!(
        opus_windows >= 15,
        "the Opus phase carried 2 kHz in {opus_windows} windows"
    );
    assert!(
        pcma_windows >= 15,
        "the PCMA phase carried 2 kHz in {pcma_windows} windows"
    );
    // And the meeting heard the caller in each of its codecs.
    for freq in tones {
        let n = windows_with(&web_pcm, 48_000, freq, &in_meeting);
        assert!(n >= 5, "the meeting heard {freq} Hz in {n} windows");
    }

    // RTCP: nothing muxed before, on the RTP port while muxed, on a port
    // of its own again (not the RTP port) once rtcp-mux was dropped, where
    // the phone's RR is read.
    assert!(phases[0].muxed.is_empty(), "muxed RTCP before rtcp-mux");
    assert!(
        !phases[1].muxed.is_empty(),
        "no RTCP on the RTP port while rtcp-mux"
    );
    assert!(
        phases[1].apart.iter().all(|(at, ..)| *at < settle),
        "RTCP on RTP + 1 while rtcp-mux"
    );
    let (_, from, _) = phases[2]
        .apart
        .iter()
        .find(|(at, ..)| *at >= settle)
        .expect("RTCP on RTP + 1 after rtcp-mux was dropped");
    assert_ne!(*from, relay, "unmuxed RTCP comes from its own port");
    assert!(
        phases[2].muxed.iter().all(|at| *at < settle),
        "RTCP on the RTP port after rtcp-mux was dropped"
    );
    assert!(rr_sent);
    wait_for("the phone's RR to be read", Duration::from_secs(3), || {
        metric(
            &metrics(api),
            "sluice_dialin_rtcp_reports_total{direction=\"received\"}",
        ) >= 1.0
    });
    calls_settled(api);
    daemon.shutdown();
}

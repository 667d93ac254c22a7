//! The dial-in and dial-out tests' telephone and its meeting: SIPp
//! (Debian sip-tester) as the phone's signalling, the test's own UDP
//! socket as its RTP, which the SDP offer names (`-key cport`); the phone
//! side of a wideband codec; and a meeting's web participant that talks
//! and listens (a tone published as Opus, what it hears decoded). SIPp
//! must be installed; a test fails, naming the package, when it is not.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::crypto::AnyGcm;
use sluice::media::tone::{Sine, goertzel_power};
use sluice::media::{
    G722Decoder, G722Encoder, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings,
};
use sluice::srtp::{MasterKey, SrtpSession};

use super::{Endpoint, http};

/// SIPp running one call of `scenario` to `service`.
pub struct Sipp {
    pub child: Child,
    pub scenario: String,
}

impl Sipp {
    pub fn call(sip: SocketAddr, scenario: &str, service: &str, cport: u16, call_ms: u64) -> Self {
        Self::call_with(sip, scenario, service, cport, call_ms, &[])
    }

    pub fn call_with(
        sip: SocketAddr,
        scenario: &str,
        service: &str,
        cport: u16,
        call_ms: u64,
        extra: &[&str],
    ) -> Self {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        let child = Command::new("sipp")
            .arg(sip.to_string())
            .args(["-sf", file.to_str().expect("utf-8 path")])
            .args(["-s", service])
            .args(["-key", "cport", &cport.to_string()])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-m", "1", "-l", "1", "-nostdin"])
            .args(["-d", &call_ms.to_string()])
            .args(["-timeout", "40s", "-timeout_error"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run sipp ({e}): install Debian's sip-tester package")
            });
        Self {
            child,
            scenario: scenario.to_owned(),
        }
    }

    /// Waits for SIPp and asserts that its one call succeeded.
    pub fn succeeds(self) {
        let out = self.child.wait_with_output().expect("sipp runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let tail: String = text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            out.status.success(),
            "sipp {} failed ({}):\n{tail}\n{}",
            self.scenario,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The phone's RTP side: a socket the SDP offer names.
pub struct Phone {
    pub socket: UdpSocket,
    /// SDES SRTP: what the phone protects with, and unprotects with.
    pub srtp: Option<(SrtpSession<AnyGcm>, SrtpSession<AnyGcm>)>,
    pub relay: Option<SocketAddr>,
    pub seq: u16,
    pub timestamp: u32,
    pub heard: Vec<(u8, Vec<u8>)>,
}

impl Phone {
    pub fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind phone RTP");
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            socket,
            srtp: None,
            relay: None,
            seq: 1000,
            timestamp: 80_000,
            heard: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    /// Takes in whatever arrived; learns the relay's RTP address.
    pub fn listen(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((mut n, from)) = self.socket.recv_from(&mut buf) {
            if let Some((_, recv)) = &mut self.srtp {
                match recv.unprotect_rtp(&mut buf, n) {
                    Ok(len) => n = len,
                    Err(e) => panic!("the phone cannot unprotect sluice's SRTP: {e}"),
                }
            }
            self.relay.get_or_insert(from);
            if n > 12 {
                self.heard.push((buf[1] & 0x7F, buf[12..n].to_vec()));
            }
        }
    }

    /// Listens until the relay has sent something (the first prompt frame).
    pub fn wait_for_relay(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.relay.is_none() {
            assert!(Instant::now() < deadline, "the relay never sent RTP");
            self.listen();
        }
        self.relay.expect("just learnt")
    }

    pub fn send(&mut self, pt: u8, marker: bool, timestamp: u32, payload: &[u8]) {
        let relay = self.relay.expect("relay address known");
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend(self.seq.to_be_bytes());
        p.extend(timestamp.to_be_bytes());
        p.extend(0x5eed_0001u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        if let Some((send, _)) = &mut self.srtp {
            let len = p.len();
            p.resize(len + 32, 0);
            let n = send.protect_rtp(&mut p, len).expect("protect");
            p.truncate(n);
        }
        self.socket.send_to(&p, relay).expect("phone sends");
    }

    /// One 20 ms PCMU frame.
    pub fn send_pcmu(&mut self, payload: &[u8]) {
        let ts = self.timestamp;
        self.send(0, false, ts, payload);
        self.timestamp = self.timestamp.wrapping_add(160);
    }

    /// One key press as RFC 4733 events (PT 101), written here from the
    /// RFC rather than with the code under test: 3 updates 20 ms apart,
    /// then the end packet three times.
    pub fn press(&mut self, key: char) {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => panic!("no such key {key}"),
        };
        let ts = self.timestamp;
        for (i, duration) in [160u16, 320, 480].into_iter().enumerate() {
            let mut payload = vec![event, 10];
            payload.extend(duration.to_be_bytes());
            self.send(101, i == 0, ts, &payload);
            self.pause(Duration::from_millis(20));
        }
        for _ in 0..3 {
            let mut payload = vec![event, 0x80 | 10];
            payload.extend(640u16.to_be_bytes());
            self.send(101, false, ts, &payload);
        }
        self.timestamp = self.timestamp.wrapping_add(640);
        self.pause(Duration::from_millis(60));
    }

    pub fn dial(&mut self, keys: &str) {
        for key in keys.chars() {
            self.press(key);
        }
    }

    /// Waits, still listening.
    pub fn pause(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.listen();
        }
    }

    /// Sends silence frames for `d` (a phone sends RTP all the time).
    pub fn idle(&mut self, d: Duration) {
        let frames = d.as_millis() / 20;
        for _ in 0..frames {
            self.send_pcmu(&[0xFF; 160]);
            self.pause(Duration::from_millis(20));
        }
    }

    /// Everything heard in `pt`, concatenated.
    pub fn heard(&self, pt: u8) -> Vec<u8> {
        self.heard
            .iter()
            .filter(|(p, _)| *p == pt)
            .flat_map(|(_, payload)| payload.iter().copied())
            .collect()
    }
}

/// A web participant of `meeting` publishing one Opus audio stream `ssrc`.
pub fn web_participant(api: SocketAddr, meeting: &str, ssrc: u32) -> Endpoint {
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

/// A web participant of `meeting` publishing a `freq` tone as fullband
/// Opus (FFmpeg's libopus, not the bridge's) on `ssrc` until `stop`, and
/// decoding what it receives at 48 kHz.
pub fn web_tone(
    api: SocketAddr,
    meeting: &str,
    ssrc: u32,
    freq: f32,
    stop: &Arc<AtomicBool>,
) -> (thread::JoinHandle<()>, thread::JoinHandle<Vec<i16>>) {
    let mut web = web_participant(api, meeting, ssrc);
    let receiver = web.socket.try_clone().expect("clone socket");
    let mut recv_session = std::mem::replace(
        &mut web.recv,
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(web.profile, &web.relay_to_client).expect("key"),
        )
        .expect("session"),
    );
    let stop_rx = Arc::clone(stop);
    let heard = thread::spawn(move || {
        let mut decoder = OpusDecoder::new().expect("opus decoder");
        let mut pcm = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            let Ok((n, _)) = receiver.recv_from(&mut buf) else {
                continue;
            };
            if super::is_rtcp(&buf[..n]) {
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
    let stop_tx = Arc::clone(stop);
    let publisher = thread::spawn(move || {
        let mut encoder = OpusEncoder::with_settings(OpusSettings {
            bitrate_bps: 48_000,
            complexity: 5,
            bandwidth: OpusBandwidth::Full,
            ..OpusSettings::DIAL_IN
        })
        .expect("opus encoder");
        let mut sine = Sine::new(freq, 48_000, 8000.0);
        let mut frame = [0i16; 960];
        let start = Instant::now();
        let mut seq = 1u16;
        // Bounded: at most 30 s, whatever `stop` says.
        while !stop_tx.load(Ordering::Relaxed) && seq < 1500 {
            sine.fill(&mut frame);
            let opus = encoder.encode(&frame).expect("encode").to_vec();
            web.send_rtp(ssrc, seq, &opus);
            seq = seq.wrapping_add(1);
            let due = start + Duration::from_millis(20 * u64::from(seq - 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    });
    (publisher, heard)
}

/// The phone side of a wideband codec: what the phone (the test) encodes
/// its tone with and decodes what it hears with, independently of the
/// bridge's own codec path where it can (FFmpeg's libopus for Opus).
pub enum PhoneCodec {
    Opus(OpusEncoder, OpusDecoder),
    G722(G722Encoder, G722Decoder),
}

impl PhoneCodec {
    pub fn rate(&self) -> u32 {
        match self {
            Self::Opus(..) => 48_000,
            Self::G722(..) => 16_000,
        }
    }

    pub fn pt(&self) -> u8 {
        match self {
            Self::Opus(..) => 111,
            Self::G722(..) => 9,
        }
    }

    pub fn rtp_step(&self) -> u32 {
        match self {
            Self::Opus(..) => 960,
            Self::G722(..) => 160,
        }
    }

    pub fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::Opus(e, _) => e.encode(pcm).expect("opus encode").to_vec(),
            Self::G722(e, _) => {
                let mut out = [0u8; 160];
                e.encode(pcm, &mut out).expect("g722 encode");
                out.to_vec()
            }
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match self {
            Self::Opus(_, d) => d.decode(payload).expect("opus decode").to_vec(),
            Self::G722(_, d) => {
                let mut out = vec![0i16; payload.len() * 2];
                let n = d.decode(payload, &mut out).expect("g722 decode");
                out.truncate(n);
                out
            }
        }
    }
}

/// A wideband call heard both ways: only `codec`'s payload type reached
/// the phone, and what it `heard` decodes to the meeting's 6 kHz (its last
/// 2 s) and not the phone's own 5 kHz; the meeting's web participant
/// (`web_pcm`, 48 kHz) heard the phone's 5 kHz and not its own 6 kHz.
pub fn wideband_heard_both_ways(heard: &[(u8, Vec<u8>)], codec: &mut PhoneCodec, web_pcm: &[i16]) {
    let (pt, rate) = (codec.pt(), codec.rate());
    assert!(
        heard.iter().all(|(p, _)| *p == pt),
        "another payload type reached the phone"
    );
    let heard: Vec<i16> = heard
        .iter()
        .flat_map(|(_, payload)| codec.decode(payload))
        .collect();
    let frame = rate as usize / 50;
    assert!(
        heard.len() >= frame * 200,
        "the phone heard {} samples",
        heard.len()
    );
    let tail = &heard[heard.len() - 100 * frame..];
    let k6 = goertzel_power(tail, rate, 6000.0);
    let own = goertzel_power(tail, rate, 5000.0);
    assert!(k6 > 0.01, "6 kHz too weak at the phone: {k6}");
    assert!(
        k6 > 20.0 * own,
        "the phone hears 6 kHz {k6} vs its own 5 kHz {own}"
    );
    assert!(
        web_pcm.len() >= 48_000 * 3,
        "web decoded {} samples",
        web_pcm.len()
    );
    let tail = &web_pcm[web_pcm.len() - 96_000..];
    let k5 = goertzel_power(tail, 48_000, 5000.0);
    let echo = goertzel_power(tail, 48_000, 6000.0);
    assert!(k5 > 0.01, "5 kHz too weak at the web participant: {k5}");
    assert!(
        k5 > 20.0 * echo,
        "the web hears 5 kHz {k5} vs its own 6 kHz {echo}"
    );
}

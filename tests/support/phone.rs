//! A telephone for the dial-in tests: SIPp (Debian sip-tester) as its
//! signalling, and the test's own UDP socket as its RTP, which the SDP
//! offer names (`-key cport`). SIPp must be installed; a test fails,
//! naming the package, when it is not.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice::crypto::AnyGcm;
use sluice::srtp::SrtpSession;

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

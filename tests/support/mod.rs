//! Shared helpers for the integration tests: a minimal blocking HTTP/1.1
//! client for the control API (no client crate: one request per
//! connection, JSON bodies), and an SRTP endpoint on a real UDP socket.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod browser;
pub mod daemon;
pub mod fragile;
pub mod phone;
pub mod timed;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sluice::crypto::AnyGcm;
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

/// A response: status and parsed JSON body (or the raw text in `text`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// One HTTP request to `addr`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to control API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let text = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Response { status, text }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of one Prometheus sample line (`name{labels} value`), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A participant: the SRTP sessions for both directions, on its own socket.
pub struct Endpoint {
    pub id: String,
    pub socket: UdpSocket,
    pub relay: SocketAddr,
    pub send: SrtpSession<AnyGcm>,
    pub recv: SrtpSession<AnyGcm>,
    pub client_to_relay: Vec<u8>,
    pub relay_to_client: Vec<u8>,
    pub profile: SrtpProfile,
}

impl Endpoint {
    /// Builds the endpoint from a 201 participant response.
    pub fn from_admission(body: &Value) -> Self {
        let media = &body["media"];
        let profile: SrtpProfile = media["srtp_profile"]
            .as_str()
            .expect("profile")
            .parse()
            .expect("known profile");
        let decode = |field: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(media[field].as_str().expect(field))
                .expect("base64 key")
        };
        let (c2r, r2c) = (decode("client_to_relay"), decode("relay_to_client"));
        let relay: SocketAddr = media["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("socket address");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Self {
            id: body["id"].as_str().expect("participant id").to_owned(),
            socket,
            relay,
            send: SrtpSession::new(
                AnyGcm::default(),
                &MasterKey::new(profile, &c2r).expect("key"),
            )
            .expect("session"),
            recv: SrtpSession::new(
                AnyGcm::default(),
                &MasterKey::new(profile, &r2c).expect("key"),
            )
            .expect("session"),
            client_to_relay: c2r,
            relay_to_client: r2c,
            profile,
        }
    }

    /// Protects and sends one RTP packet; returns the SRTP bytes sent.
    pub fn send_rtp(&mut self, ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = rtp(ssrc, seq, payload);
        let len = buf.len();
        buf.resize(len + 64, 0);
        let n = self.send.protect_rtp(&mut buf, len).expect("protect");
        buf.truncate(n);
        self.socket.send_to(&buf, self.relay).expect("send");
        buf
    }

    /// Protects and sends one RTCP compound packet.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut buf = packet.to_vec();
        buf.resize(packet.len() + 64, 0);
        let n = self
            .send
            .protect_rtcp(&mut buf, packet.len())
            .expect("protect rtcp");
        buf.truncate(n);
        self.socket.send_to(&buf, self.relay).expect("send");
        buf
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.relay).expect("send");
    }

    /// Receives until `deadline` or until `want` packets arrived; returns
    /// the raw datagrams.
    pub fn receive(&self, want: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < want && Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    /// Drains whatever is queued (for a short while).
    pub fn drain(&self) -> Vec<Vec<u8>> {
        self.receive(usize::MAX, Duration::from_millis(150))
    }
}

/// A plain RTP packet (PT 111).
pub fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 960).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Is this datagram RTCP (RFC 5761 demux)?
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() > 1 && (192..=223).contains(&datagram[1])
}

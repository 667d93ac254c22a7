//! The WHIP/WHEP endpoints and the media port's WebRTC side against bad
//! input, over real sockets on loopback (no browser): every refusal of
//! the endpoints with its status and JSON code, CORS, PATCH and DELETE;
//! a STUN check with a wrong MESSAGE-INTEGRITY (dropped, counted, never
//! answered, no latch), random bytes in the DTLS range (no panic), and a
//! handshake that never finishes (cleaned up at the deadline, counted).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::webrtc::proto::client::write_check;
use support::daemon::{RunningDaemon, loopback_config};
use support::{http, metric};

/// (path, headers, body, status, code) of one refused request.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn code(&self) -> String {
        let v: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        v["error"]["code"].as_str().unwrap_or("").to_owned()
    }
}

/// One HTTP/1.1 request with these headers and body (Connection: close).
fn raw(api: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A WebRTC offer like Chrome's, with `video` video m-lines after one
/// audio m-line, each `direction`.
fn offer(direction: &str, video: usize, bundle: bool) -> String {
    let fp = (0..32)
        .map(|i| format!("{i:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let mids: Vec<String> = (0..=video).map(|i| i.to_string()).collect();
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    if bundle {
        s.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    }
    for (i, mid) in mids.iter().enumerate() {
        let (m, rtpmap) = if i == 0 {
            (
                "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                "a=rtpmap:111 opus/48000/2",
            )
        } else {
            ("m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 VP8/90000")
        };
        s.push_str(&format!(
            "{m}\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:brws\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\na=mid:{mid}\r\na={direction}\r\n\
             a=rtcp-mux\r\n{rtpmap}\r\n"
        ));
        if direction == "sendonly" {
            s.push_str(&format!("a=ssrc:{} cname:x\r\n", 1000 + i));
        }
    }
    s
}

fn attr<'a>(sdp: &'a str, key: &str) -> &'a str {
    sdp.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in {sdp}"))
        .trim()
}

fn metrics(api: SocketAddr) -> String {
    http(api, "GET", "/metrics", None, None).text
}

#[test]
fn whip_and_whep_refuse_bad_input_with_the_json_shape_and_stun_and_dtls_garbage_moves_nothing() {
    let daemon = RunningDaemon::start("webrtc-edges", &loopback_config(""), &[]);
    let api = daemon.api;
    let owner = json!({"account": "test", "verified": false});
    let created = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": owner})),
        None,
    );
    let meeting = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/meetings/{meeting}/participants");
    let bad = http(
        api,
        "POST",
        &path,
        Some(&json!({"name": "b", "transport": "webrtc", "srtp_profile": "AEAD_AES_128_GCM"})),
        None,
    );
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, "invalid_request".into())
    );
    let sdes = http(api, "POST", &path, Some(&json!({"name": "s"})), None).json();
    let web = http(
        api,
        "POST",
        &path,
        Some(&json!({"name": "w", "transport": "webrtc"})),
        None,
    );
    assert_eq!(web.status, 201, "{}", web.text);
    let web = web.json();
    assert!(
        web.get("media").is_none(),
        "no SDES keys for a browser: {web}"
    );
    let token = web["webrtc"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let whip = web["webrtc"]["whip"].as_str().unwrap().to_owned();
    let whep = web["webrtc"]["whep"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let sdp = ("Content-Type", "application/sdp");
    let good = offer("sendonly", 1, true);

    // (path, headers, body, status, code)
    let uninvited = format!("{path}/{}/whip", sdes["id"].as_str().unwrap());
    let cases: Vec<Case<'_>> = vec![
        (&whip, vec![sdp], good.clone(), 401, "missing_token"),
        (
            &whip,
            vec![sdp, ("Authorization", "Bearer nope")],
            good.clone(),
            401,
            "invalid_token",
        ),
        (
            &uninvited,
            vec![sdp, ("Authorization", &bearer)],
            good.clone(),
            401,
            "invalid_token",
        ),
        (
            &whip,
            vec![
                ("Content-Type", "application/json"),
                ("Authorization", &bearer),
            ],
            good.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            &whip,
            vec![sdp, ("Authorization", &bearer)],
            "v=0\r\nnonsense".into(),
            400,
            "malformed_sdp",
        ),
        (
            &whip,
            vec![sdp, ("Authorization", &bearer)],
            offer("sendonly", 1, false),
            422,
            "unacceptable_offer",
        ),
        (
            &whip,
            vec![sdp, ("Authorization", &bearer)],
            offer("sendonly", 2, true),
            422,
            "unacceptable_offer",
        ),
        (
            &whep,
            vec![sdp, ("Authorization", &bearer)],
            offer("recvonly", 9, true),
            422,
            "unacceptable_offer",
        ),
    ];
    for (at, headers, body, status, code) in cases {
        let r = raw(api, "POST", at, &headers, &body);
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{at} {headers:?}: {}",
            r.body
        );
        assert!(!r.body.contains("\"message\":\"\""), "{}", r.body);
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        if status == 401 {
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
        }
    }

    let pre = raw(api, "OPTIONS", &whip, &[], "");
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-expose-headers").as_deref(),
        Some("Location, ETag, Link")
    );

    // A good offer: 201, the answer, Location.
    let r = raw(
        api,
        "POST",
        &whip,
        &[sdp, ("Authorization", &bearer)],
        &good,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type").as_deref(), Some("application/sdp"));
    let location = r.header("location").expect("Location");
    assert!(location.starts_with(&format!("{path}/{}/webrtc/", web["id"].as_str().unwrap())));
    for line in [
        "a=ice-lite",
        "a=setup:passive",
        "a=end-of-candidates",
        "a=rtcp-mux",
    ] {
        assert!(r.body.contains(line), "{line} in {}", r.body);
    }
    let media = daemon.media;
    assert!(
        r.body
            .contains(&format!("{} {} typ host", media.ip(), media.port())),
        "{}",
        r.body
    );
    let (ufrag, pwd) = (attr(&r.body, "a=ice-ufrag:"), attr(&r.body, "a=ice-pwd:"));

    // PATCH: a trickle fragment is 204; another type 415; a restart 422.
    let frag = ("Content-Type", "application/trickle-ice-sdpfrag");
    let auth = ("Authorization", bearer.as_str());
    let patch = raw(
        api,
        "PATCH",
        &location,
        &[frag, auth],
        "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
    );
    assert_eq!(patch.status, 204, "{}", patch.body);
    let patch = raw(api, "PATCH", &location, &[sdp, auth], "");
    assert_eq!(
        (patch.status, patch.code()),
        (415, "unsupported_media_type".into())
    );
    let patch = raw(
        api,
        "PATCH",
        &location,
        &[frag, auth],
        "a=ice-ufrag:new1\r\n",
    );
    assert_eq!(
        (patch.status, patch.code()),
        (422, "unacceptable_offer".into())
    );

    // STUN with a wrong MESSAGE-INTEGRITY: no answer, counted, no latch;
    // with the right one: answered.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = write_check(
        &mut buf,
        [1; 12],
        ufrag,
        "brws",
        "wrongwrongwrongwrongwrong",
        true,
    )
    .unwrap();
    for _ in 0..3 {
        sock.send_to(&buf[..n], media).unwrap();
    }
    let mut reply = [0u8; 1500];
    assert!(
        sock.recv_from(&mut reply).is_err(),
        "a forged check was answered"
    );
    // Random bytes in the DTLS range, from an address no check validated.
    let mut seed = 0x2545_f491_u32;
    for _ in 0..200 {
        let mut junk = [0u8; 200];
        for b in &mut junk {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *b = seed as u8;
        }
        junk[0] = 20 + (junk[0] % 44);
        sock.send_to(&junk, media).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(api);
        let forged = metric(&m, "sluice_webrtc_drops_total{reason=\"bad_integrity\"}");
        let junk = metric(&m, "sluice_webrtc_drops_total{reason=\"unknown_address\"}");
        if forged >= 3.0 && junk >= 200.0 {
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = write_check(&mut buf, [2; 12], ufrag, "brws", pwd, false).unwrap();
    sock.send_to(&buf[..n], media).unwrap();
    let (len, _) = sock
        .recv_from(&mut reply)
        .expect("a valid check is answered");
    assert_eq!(&reply[..2], &[0x01, 0x01], "a Binding success response");
    assert!(len > 20);
    assert_eq!(http(api, "GET", "/healthz", None, None).status, 200);

    // The handshake never finishes: at the deadline (10 s) the session
    // ends, counted as a timeout, and its Location is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics(api);
        if metric(&m, "sluice_webrtc_handshakes_total{outcome=\"timeout\"}") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no handshake timeout counted:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let gone = raw(api, "DELETE", &location, &[auth], "");
    assert_eq!(
        (gone.status, gone.code()),
        (404, "session_not_found".into())
    );

    // DELETE: a wrong token is 401; the right one 200, then 404.
    let r = raw(api, "POST", &whip, &[sdp, auth], &good);
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap();
    let d = raw(
        api,
        "DELETE",
        &location,
        &[("Authorization", "Bearer x")],
        "",
    );
    assert_eq!((d.status, d.code()), (401, "invalid_token".into()));
    // GET: who fills the slots (a WHIP session has none); the token guards it.
    let g = raw(api, "GET", &location, &[auth], "");
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.body.trim(), r#"{"slots":[]}"#);
    let g = raw(api, "GET", &location, &[("Authorization", "Bearer x")], "");
    assert_eq!((g.status, g.code()), (401, "invalid_token".into()));
    assert_eq!(raw(api, "DELETE", &location, &[auth], "").status, 200);
    let d = raw(api, "DELETE", &location, &[auth], "");
    assert_eq!((d.status, d.code()), (404, "session_not_found".into()));
    let g = raw(api, "GET", &location, &[auth], "");
    assert_eq!((g.status, g.code()), (404, "session_not_found".into()));
    daemon.stop();
}

/// The tests' own browser stand-in (the crate's sans-IO DTLS client and
/// ICE check) over the real media port: the handshake makes a leg that
/// carries SRTP to an SDES participant; when its consent checks stop,
/// the leg ends after 30 s and the expiry is counted.
#[test]
fn a_dtls_keyed_leg_carries_media_and_ends_when_consent_stops() {
    use sluice::webrtc::proto::client::DtlsClient;
    use sluice::webrtc::proto::identity::DtlsIdentity;

    let daemon = RunningDaemon::start("webrtc-consent", &loopback_config(""), &[]);
    let api = daemon.api;
    let owner = json!({"account": "test", "verified": false});
    let created = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": owner})),
        None,
    );
    let meeting = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/meetings/{meeting}/participants");
    let sdes = http(api, "POST", &path, Some(&json!({"name": "s"})), None).json();
    let mut sdes = support::Endpoint::from_admission(&sdes);
    let stream = json!({"ssrc": 77, "kind": "audio", "codec": "opus", "payload_type": 111});
    let declared = http(
        api,
        "POST",
        &format!("{path}/{}/streams", sdes.id),
        Some(&stream),
        None,
    );
    assert_eq!(declared.status, 201, "{}", declared.text);
    let web = http(
        api,
        "POST",
        &path,
        Some(&json!({"name": "w", "transport": "webrtc"})),
        None,
    )
    .json();
    let identity = DtlsIdentity::generate().unwrap();
    let fp = identity.fingerprint().to_string();
    let body = offer("sendonly", 1, true).replace(
        &format!(
            "sha-256 {}",
            (0..32)
                .map(|i| format!("{i:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        ),
        &fp,
    );
    let bearer = format!("Bearer {}", web["webrtc"]["token"].as_str().unwrap());
    let r = raw(
        api,
        "POST",
        web["webrtc"]["whip"].as_str().unwrap(),
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (ufrag, pwd) = (attr(&r.body, "a=ice-ufrag:"), attr(&r.body, "a=ice-pwd:"));
    let media = daemon.media;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = write_check(&mut buf, [3; 12], ufrag, "brws", pwd, true).unwrap();
    sock.send_to(&buf[..n], media).unwrap();

    let t0 = Instant::now();
    let mut client = DtlsClient::new(&identity, t0);
    let mut reply = [0u8; 2048];
    while client.keying().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no handshake");
        assert!(!client.has_failed(), "the handshake failed");
        client.handle_timeout(Instant::now());
        for p in client.poll_transmits() {
            sock.send_to(&p, media).unwrap();
        }
        if let Ok((len, _)) = sock.recv_from(&mut reply)
            && (20..64).contains(&reply[0])
        {
            client.handle_packet(Instant::now(), &reply[..len]);
        }
    }
    for p in client.poll_transmits() {
        sock.send_to(&p, media).unwrap();
    }
    let keys = client.keying().unwrap().clone();
    let keys = sluice::webrtc::BrowserLegKeys::from_keying(&keys).unwrap();
    let established = Instant::now();
    // The browser's side: it protects with client_to_relay.
    let mut send =
        sluice::srtp::SrtpSession::new(sluice::crypto::AnyGcm::default(), &keys.client_to_relay)
            .unwrap();
    // SDES latches first, then the browser's stream (offered SSRC 1000)
    // reaches it.
    sdes.send_rtp(77, 0, b"hello");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    let mut seq = 0u16;
    while got < 5 {
        assert!(
            Instant::now() < deadline,
            "no browser media reached the SDES leg"
        );
        let mut p = support::rtp(1000, seq, b"from the browser");
        seq += 1;
        let len = p.len();
        p.resize(len + 32, 0);
        let n = send.protect_rtp(&mut p, len).unwrap();
        sock.send_to(&p[..n], media).unwrap();
        for mut d in sdes.receive(1, Duration::from_millis(50)) {
            let len = d.len();
            if sdes.recv.unprotect_rtp(&mut d, len).is_ok() {
                got += 1;
            }
        }
    }
    let m = metrics(api);
    assert_eq!(
        metric(
            &m,
            "sluice_webrtc_handshakes_total{outcome=\"established\"}"
        ),
        1.0
    );
    // No more consent checks: after 30 s the leg ends, counted.
    let deadline = established + Duration::from_secs(40);
    loop {
        let m = metrics(api);
        if metric(&m, "sluice_webrtc_consent_expiries_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no consent expiry counted:\n{m}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(established.elapsed() >= Duration::from_secs(29));
    sdes.drain();
    for _ in 0..5 {
        let mut p = support::rtp(1000, seq, b"after expiry");
        seq += 1;
        let len = p.len();
        p.resize(len + 32, 0);
        let n = send.protect_rtp(&mut p, len).unwrap();
        sock.send_to(&p[..n], media).unwrap();
    }
    assert!(
        sdes.receive(1, Duration::from_millis(300)).is_empty(),
        "the expired leg still forwards"
    );
    daemon.stop();
}

/// A browser stand-in that has finished ICE and DTLS with the daemon.
struct Joined {
    sock: UdpSocket,
    /// What it protects with (`client_to_relay`).
    send: sluice::srtp::SrtpSession<sluice::crypto::AnyGcm>,
    /// What it unprotects with (`relay_to_client`).
    recv: sluice::srtp::SrtpSession<sluice::crypto::AnyGcm>,
    /// The relay's certificate as the handshake presented it.
    relay_certificate: Vec<u8>,
    /// The SDP answer.
    answer: String,
}

/// Posts `body` (its fingerprint replaced by `identity`'s) to `endpoint`
/// with `token`, then runs the ICE check and the DTLS handshake.
fn join(
    daemon: &RunningDaemon,
    endpoint: &str,
    token: &str,
    body: &str,
    identity: &sluice::webrtc::proto::identity::DtlsIdentity,
) -> Joined {
    use sluice::webrtc::proto::client::DtlsClient;

    let placeholder = (0..32)
        .map(|i| format!("{i:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let body = body.replace(
        &format!("sha-256 {placeholder}"),
        &identity.fingerprint().to_string(),
    );
    let bearer = format!("Bearer {token}");
    let r = raw(
        daemon.api,
        "POST",
        endpoint,
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (ufrag, pwd) = (attr(&r.body, "a=ice-ufrag:"), attr(&r.body, "a=ice-pwd:"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = write_check(&mut buf, [5; 12], ufrag, "brws", pwd, true).unwrap();
    sock.send_to(&buf[..n], daemon.media).unwrap();
    let t0 = Instant::now();
    let mut client = DtlsClient::new(identity, t0);
    let mut reply = [0u8; 2048];
    while client.keying().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no handshake");
        assert!(!client.has_failed(), "the handshake failed");
        client.handle_timeout(Instant::now());
        for p in client.poll_transmits() {
            sock.send_to(&p, daemon.media).unwrap();
        }
        if let Ok((len, _)) = sock.recv_from(&mut reply)
            && (20..64).contains(&reply[0])
        {
            client.handle_packet(Instant::now(), &reply[..len]);
        }
    }
    for p in client.poll_transmits() {
        sock.send_to(&p, daemon.media).unwrap();
    }
    let keys = sluice::webrtc::BrowserLegKeys::from_keying(client.keying().unwrap()).unwrap();
    Joined {
        sock,
        send: sluice::srtp::SrtpSession::new(
            sluice::crypto::AnyGcm::default(),
            &keys.client_to_relay,
        )
        .unwrap(),
        recv: sluice::srtp::SrtpSession::new(
            sluice::crypto::AnyGcm::default(),
            &keys.relay_to_client,
        )
        .unwrap(),
        relay_certificate: client
            .peer_certificate()
            .expect("the relay's certificate")
            .to_vec(),
        answer: r.body,
    }
}

impl Joined {
    /// Sends one SRTP packet of `rtp` (plaintext RTP).
    fn send(&mut self, media: SocketAddr, rtp: &[u8]) {
        let mut p = rtp.to_vec();
        let len = p.len();
        p.resize(len + 32, 0);
        let n = self.send.protect_rtp(&mut p, len).unwrap();
        self.sock.send_to(&p[..n], media).unwrap();
    }
}

/// An RTP packet with a one-byte header extension carrying `mid` under
/// extension id 4 (what the offers below map the MID URI to).
fn rtp_with_mid(pt: u8, ssrc: u32, seq: u16, mid: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x90, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut elements = vec![(4 << 4) | (mid.len() as u8 - 1)];
    elements.extend_from_slice(mid.as_bytes());
    while !elements.len().is_multiple_of(4) {
        elements.push(0);
    }
    p.extend_from_slice(&[0xBE, 0xDE]);
    p.extend_from_slice(&((elements.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&elements);
    p.extend_from_slice(payload);
    p
}

fn standard_meeting(api: SocketAddr) -> String {
    let owner = json!({"account": "test", "verified": false});
    let created = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": owner})),
        None,
    );
    created.json()["id"].as_str().unwrap().to_owned()
}

fn admit_browser(api: SocketAddr, meeting: &str, name: &str) -> Value {
    let path = format!("/v1/meetings/{meeting}/participants");
    let web = http(
        api,
        "POST",
        &path,
        Some(&json!({"name": name, "transport": "webrtc"})),
        None,
    );
    assert_eq!(web.status, 201, "{}", web.text);
    web.json()["webrtc"].clone()
}

/// A WHIP offer with no `a=ssrc` (what Firefox sends, and Chrome's with
/// the lines munged out) still publishes: the relay maps the stream to
/// its m-line by the MID extension of its first authenticated packet and
/// relays it to an SDES participant like an announced one. A packet
/// whose payload type is not its m-line's codec (RTX under the media's
/// MID) never becomes a stream, and one that does not authenticate
/// teaches nothing.
#[test]
fn a_whip_offer_without_ssrc_lines_publishes_what_its_first_packets_carry() {
    use sluice::webrtc::proto::identity::DtlsIdentity;

    let daemon = RunningDaemon::start("webrtc-learn", &loopback_config(""), &[]);
    let api = daemon.api;
    let meeting = standard_meeting(api);
    let path = format!("/v1/meetings/{meeting}/participants");
    let sdes = http(api, "POST", &path, Some(&json!({"name": "s"})), None).json();
    let mut sdes = support::Endpoint::from_admission(&sdes);
    let stream = json!({"ssrc": 78, "kind": "audio", "codec": "opus", "payload_type": 111});
    let declared = http(
        api,
        "POST",
        &format!("{path}/{}/streams", sdes.id),
        Some(&stream),
        None,
    );
    assert_eq!(declared.status, 201, "{}", declared.text);
    sdes.send_rtp(78, 0, b"latch");

    let web = admit_browser(api, &meeting, "w");
    let body: String = offer("sendonly", 1, true)
        .lines()
        .filter(|l| !l.starts_with("a=ssrc"))
        .flat_map(|l| {
            let mut out = vec![format!("{l}\r\n")];
            if l.starts_with("a=mid:") {
                out.push("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n".to_owned());
            }
            out
        })
        .collect();
    assert!(!body.contains("a=ssrc"));
    let identity = DtlsIdentity::generate().unwrap();
    let mut browser = join(
        &daemon,
        web["whip"].as_str().unwrap(),
        web["token"].as_str().unwrap(),
        &body,
        &identity,
    );
    let media = daemon.media;

    // A forged packet (not under the session's key) and a repair stream
    // (payload type 97 under the video MID) first: neither is learnt.
    let forged = rtp_with_mid(111, 0x5eed, 0, "0", b"forged srtp");
    browser.sock.send_to(&forged, media).unwrap();
    for seq in 0..8 {
        browser.send(media, &rtp_with_mid(97, 0x4e7, seq, "1", b"rtx"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sdes.receive(1, Duration::from_millis(200)).is_empty(),
        "nothing learnt from a forged packet or a repair stream"
    );

    // The audio stream, announced nowhere, is learnt from its MID.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut got, mut seq) = (0, 0u16);
    while got < 5 {
        assert!(
            Instant::now() < deadline,
            "the unannounced stream never reached the SDES leg:\n{}",
            daemon.log()
        );
        browser.send(
            media,
            &rtp_with_mid(111, 0xA0D10, seq, "0", b"learnt from MID"),
        );
        seq += 1;
        for mut d in sdes.receive(1, Duration::from_millis(50)) {
            let len = d.len();
            if let Ok(n) = sdes.recv.unprotect_rtp(&mut d, len) {
                let ssrc = u32::from_be_bytes(d[8..12].try_into().unwrap());
                assert_eq!(ssrc, 0xA0D10, "only the media stream is relayed");
                assert!(d[..n].ends_with(b"learnt from MID"));
                got += 1;
            }
        }
    }
    // The m-line has its stream: another SSRC under the same MID stays out.
    sdes.drain();
    for s in 0..6 {
        browser.send(media, &rtp_with_mid(111, 0xB0B, s, "0", b"second"));
    }
    std::thread::sleep(Duration::from_millis(300));
    for mut d in sdes.drain() {
        let len = d.len();
        if sdes.recv.unprotect_rtp(&mut d, len).is_ok() {
            let ssrc = u32::from_be_bytes(d[8..12].try_into().unwrap());
            assert_ne!(ssrc, 0xB0B, "a second stream on one m-line was learnt");
        }
    }
    daemon.stop();
}

/// `[webrtc] certificate`/`private_key`: the answer's fingerprint is the
/// configured certificate's, and the DTLS handshake presents that
/// certificate; a key of another certificate is refused by
/// `check-config` with a sentence naming the keys to fix.
#[test]
fn a_configured_certificate_is_the_one_answers_and_handshakes_show() {
    use sluice::webrtc::proto::identity::{DtlsIdentity, Fingerprint};

    let dir = std::env::temp_dir().join(format!("sluice-webrtc-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut made = Vec::new();
    for name in ["a", "b"] {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.example")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        made.push((c, k, cert.der().to_vec()));
    }
    let section = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[webrtc]\ncertificate = {:?}\nprivate_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, loopback_config(&section(&made[0].0, &made[1].1))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a mismatched pair passes: {said}");
    assert!(
        said.contains("does not belong") && said.contains("[webrtc] certificate and private_key"),
        "{said}"
    );

    let (cert, key, der) = &made[0];
    let daemon = RunningDaemon::start("webrtc-pem", &loopback_config(&section(cert, key)), &[]);
    let meeting = standard_meeting(daemon.api);
    let web = admit_browser(daemon.api, &meeting, "w");
    let identity = DtlsIdentity::generate().unwrap();
    let joined = join(
        &daemon,
        web["whep"].as_str().unwrap(),
        web["token"].as_str().unwrap(),
        &offer("recvonly", 1, true),
        &identity,
    );
    let answered = Fingerprint::parse(attr(&joined.answer, "a=fingerprint:")).unwrap();
    assert!(
        answered.matches(der),
        "the answer's fingerprint is not the configured certificate's"
    );
    assert_eq!(&joined.relay_certificate, der);
    daemon.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The lock reaches WebRTC sessions (DESIGN.md "WebRTC"): a browser
/// admitted before the meeting was locked but not yet in its media is
/// refused (403 `meeting_locked`, the JSON shape, CORS) on WHIP and
/// WHEP; once unlocked it joins, and a lock set after that does not cut
/// its further sessions off.
#[test]
fn a_locked_meeting_refuses_browsers_that_have_not_joined_its_media() {
    use sluice::webrtc::proto::identity::DtlsIdentity;

    let daemon = RunningDaemon::start("webrtc-lock", &loopback_config(""), &[]);
    let api = daemon.api;
    let meeting = standard_meeting(api);
    let web = admit_browser(api, &meeting, "late");
    let lock = |locked: bool| {
        let r = http(
            api,
            "POST",
            &format!("/v1/meetings/{meeting}/lock"),
            Some(&json!({ "locked": locked })),
            None,
        );
        assert!(r.status < 300, "{}", r.text);
    };
    lock(true);
    let bearer = format!("Bearer {}", web["token"].as_str().unwrap());
    for (which, direction) in [("whip", "sendonly"), ("whep", "recvonly")] {
        let r = raw(
            api,
            "POST",
            web[which].as_str().unwrap(),
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer),
            ],
            &offer(direction, 1, true),
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "meeting_locked"),
            "{which}: {}",
            r.body
        );
        assert!(r.body.contains("locked"), "{}", r.body);
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
    }
    // A bad token is still 401, not a hint that the meeting is locked.
    let r = raw(
        api,
        "POST",
        web["whip"].as_str().unwrap(),
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", "Bearer nope"),
        ],
        &offer("sendonly", 1, true),
    );
    assert_eq!(r.status, 401);

    lock(false);
    let identity = DtlsIdentity::generate().unwrap();
    let _publishing = join(
        &daemon,
        web["whip"].as_str().unwrap(),
        web["token"].as_str().unwrap(),
        &offer("sendonly", 1, true),
        &identity,
    );
    // Joined: the leg exists once the handshake's last flight is in.
    std::thread::sleep(Duration::from_millis(300));
    lock(true);
    let r = raw(
        api,
        "POST",
        web["whep"].as_str().unwrap(),
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &offer("recvonly", 1, true),
    );
    assert_eq!(
        r.status, 201,
        "a joined browser's WHEP after the lock: {}",
        r.body
    );
    // A newcomer admitted before the lock, not joined: refused.
    lock(false);
    let other = admit_browser(api, &meeting, "other");
    lock(true);
    let r = raw(
        api,
        "POST",
        other["whip"].as_str().unwrap(),
        &[
            ("Content-Type", "application/sdp"),
            (
                "Authorization",
                &format!("Bearer {}", other["token"].as_str().unwrap()),
            ),
        ],
        &offer("sendonly", 1, true),
    );
    assert_eq!((r.status, r.code().as_str()), (403, "meeting_locked"));
    daemon.stop();
}

/// The defect of issue #9 (receive slots): a WHEP viewer's video slot
/// carries a publisher past the slot's sequence wrap (rollover counter
/// 1), then switches to a publisher whose SSRC steers it to the other
/// worker. That worker's context toward the viewer never sent the slot's
/// SSRC; the viewer (this test's own client, under the DTLS-derived key)
/// must still decrypt every packet of the new source, at the slot's
/// rollover counter, with indices that only grow (a reused one would be
/// refused as a replay or fail to authenticate). Without the slot's
/// shared send index, worker 0 seals bob's packets at rollover counter 0
/// and none decrypts. (Where the kernel refused the steering program,
/// which the daemon logs, both may share a worker: then this passes
/// without crossing workers.)
#[test]
fn a_whep_slot_switching_workers_after_a_wrap_stays_decryptable() {
    use sluice::webrtc::proto::identity::DtlsIdentity;

    // Odd and even: SSRC steering puts them on workers 1 and 0.
    const ANN: u32 = 0x0a00_0001;
    const BOB: u32 = 0x0b00_0002;
    let daemon = RunningDaemon::start("webrtc-slot-roc", &loopback_config(""), &[]);
    let api = daemon.api;
    let meeting = standard_meeting(api);
    let path = format!("/v1/meetings/{meeting}/participants");
    let mut publishers = Vec::new();
    for (name, ssrc) in [("ann", ANN), ("bob", BOB)] {
        let admitted = http(api, "POST", &path, Some(&json!({"name": name})), None).json();
        let endpoint = support::Endpoint::from_admission(&admitted);
        let stream = json!({"ssrc": ssrc, "kind": "video", "codec": "VP8", "payload_type": 96});
        let declared = http(
            api,
            "POST",
            &format!("{path}/{}/streams", endpoint.id),
            Some(&stream),
            None,
        );
        assert_eq!(declared.status, 201, "{}", declared.text);
        publishers.push(endpoint);
    }
    let [mut ann, mut bob] = <[support::Endpoint; 2]>::try_from(publishers).ok().unwrap();
    let web = admit_browser(api, &meeting, "web");
    let mut viewer = join(
        &daemon,
        web["whep"].as_str().unwrap(),
        web["token"].as_str().unwrap(),
        &offer("recvonly", 1, true),
        &DtlsIdentity::generate().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));

    // What the viewer decrypts: (SSRC, SRTP index) of each RTP packet,
    // and how many it could not.
    let mut seen: Vec<(u32, u64, u32)> = Vec::new();
    let mut failed = 0;
    fn ts(rtp: &[u8]) -> u32 {
        u32::from_be_bytes(rtp[4..8].try_into().unwrap())
    }
    fn take(
        viewer: &mut Joined,
        seen: &mut Vec<(u32, u64, u32)>,
        failed: &mut u32,
        linger: Duration,
    ) {
        let until = Instant::now() + linger;
        let mut buf = [0u8; 2048];
        viewer.sock.set_nonblocking(linger.is_zero()).unwrap();
        loop {
            match viewer.sock.recv_from(&mut buf) {
                Ok((n, _)) if !support::is_rtcp(&buf[..n]) && n >= 12 => {
                    let ssrc = u32::from_be_bytes(buf[8..12].try_into().unwrap());
                    match viewer.recv.unprotect_rtp_indexed(&mut buf, n) {
                        Ok((_, index)) => seen.push((ssrc, index, ts(&buf))),
                        Err(_) => *failed += 1,
                    }
                }
                Ok(_) => {}
                Err(_) if Instant::now() >= until => break,
                Err(_) => {}
            }
        }
    }
    // Ann fills the slot (first come) from seq 65_300: the slot wraps
    // after 236 packets, sent at 4 ms, well after the slot is filled.
    let mut seq = 65_300u16;
    for i in 0..400u16 {
        ann.send_rtp(ANN, seq, &[0xA0; 200]);
        seq = seq.wrapping_add(1);
        if i % 10 == 9 {
            bob.send_rtp(BOB, 7000 + i, &[0xB0; 200]);
        }
        std::thread::sleep(Duration::from_millis(4));
        take(&mut viewer, &mut seen, &mut failed, Duration::ZERO);
    }
    take(
        &mut viewer,
        &mut seen,
        &mut failed,
        Duration::from_millis(300),
    );
    let before = seen.len();
    let last = seen
        .last()
        .map(|&(_, index, _)| index)
        .expect("ann reached the viewer");
    assert!(
        last >> 16 == 1,
        "the slot wrapped: {last:#x} after {before} packets"
    );
    let slot = seen[0].0;

    // Ann leaves: the slot goes to bob, whose packets worker 0 handles.
    let gone = http(api, "DELETE", &format!("{path}/{}", ann.id), None, None);
    assert!((200..300).contains(&gone.status), "{}", gone.text);
    for i in 0..300u16 {
        bob.send_rtp(BOB, 8000 + i, &[0xB0; 200]);
        std::thread::sleep(Duration::from_millis(4));
        take(&mut viewer, &mut seen, &mut failed, Duration::ZERO);
    }
    take(
        &mut viewer,
        &mut seen,
        &mut failed,
        Duration::from_millis(300),
    );
    let after = &seen[before..];
    assert!(
        after.len() >= 200,
        "bob's packets reach the slot: {}",
        after.len()
    );
    assert_eq!(failed, 0, "every packet the viewer got decrypts");
    assert!(after.iter().all(|&(ssrc, _, _)| ssrc == slot), "one SSRC");
    // The viewer's timestamp of bob's last packet (seq 8299) it got.
    let last_viewed_ts = after.last().map(|&(_, _, ts)| ts);
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "indices only grow across the switch"
    );
    assert_eq!(
        after.last().unwrap().1 >> 16,
        1,
        "the rollover counter went on"
    );

    // Bob's sender report reaches the viewer as the slot's: its SSRC, an
    // RTP timestamp moved like his packets' (it names his last packet's,
    // as the viewer saw it), and the answer's CNAME.
    let last_ts = u32::from(8000u16 + 299) * 960;
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend(BOB.to_be_bytes());
    sr.extend([0x12; 8]);
    sr.extend(last_ts.to_be_bytes());
    sr.extend([0, 0, 1, 44, 0, 0, 0xEA, 0x60]);
    sr.extend([0x81, 202, 0, 3]);
    sr.extend(BOB.to_be_bytes());
    sr.extend([1, 3, b'b', b'o', b'b', 0, 0, 0]);
    let viewed_ts = last_viewed_ts.expect("bob's last packet reached the viewer");
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        assert!(
            Instant::now() < deadline,
            "no sender report reached the viewer"
        );
        bob.send_rtcp(&sr);
        let mut buf = [0u8; 2048];
        viewer.sock.set_nonblocking(false).unwrap();
        if let Ok((n, _)) = viewer.sock.recv_from(&mut buf)
            && support::is_rtcp(&buf[..n])
        {
            let n = viewer
                .recv
                .unprotect_rtcp(&mut buf, n)
                .expect("the viewer decrypts it");
            break buf[..n].to_vec();
        }
    };
    assert_eq!(report[..2], [0x80, 200], "an SR without report blocks");
    assert_eq!(report[4..8], slot.to_be_bytes());
    assert_eq!(report[8..16], [0x12; 8], "the NTP time as bob sent it");
    // His last packet's, or a few packets' later if the last were lost.
    let ahead = u32::from_be_bytes(report[16..20].try_into().unwrap()).wrapping_sub(viewed_ts);
    assert!(ahead % 960 == 0 && ahead <= 20 * 960, "{ahead}");
    assert_eq!(report[28..30], [0x81, 202]);
    assert_eq!(report[32..36], slot.to_be_bytes());
    assert!(
        report.windows(6).any(|w| w == b"sluice"),
        "the slot's CNAME"
    );
    daemon.stop();
}

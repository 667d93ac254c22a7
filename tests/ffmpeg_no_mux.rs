//! A real peer without rtcp-mux: the `ffmpeg` CLI (Debian's `ffmpeg`)
//! publishes SRTP (AES_CM_128_HMAC_SHA1_80, PCMU) to the relay, RTP from
//! one port and SRTCP sender reports from the port above, both to the
//! relay's one media port; a second `ffmpeg` receives the relayed stream
//! and decodes it; a Rust endpoint receives it too, with the SRs.
//!
//! What it shows: the publisher's RTP latch never moves to its RTCP port
//! (the relay latches exactly four addresses, whatever the SRs do), every
//! relayed packet authenticates at both receivers, the SRs from the other
//! port authenticate and reach the meeting, and ffmpeg decodes the audio.
//!
//! The ffmpeg receiver is receive-only and without rtcp-mux: its own
//! reports are plain RTCP (ffmpeg does not protect receiver reports), so
//! nothing it sends can latch it. The test latches its RTP port first with
//! one SRTCP report from that port under its key, as a signalling server
//! that knows the port would arrange; learning a receive-only, mux-less
//! peer's RTP port needs that signalling (see the report of issue 12).
//! Fails, saying what to install, when `ffmpeg` is missing (CI installs it).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::crypto::AnyGcm;
use sluice::daemon::Daemon;
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};
use support::{Endpoint, http, is_rtcp, metric};

const PROFILE: &str = "AES_CM_128_HMAC_SHA1_80";
const PUBLISHER_SSRC: u32 = 0x1234_5678;
const VIEWER_SSRC: u32 = 0x5200_0b0b;
const FFMPEG_VIEWER_SSRC: u32 = 0x5200_0c0c;

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{path}: {}", r.text);
    r.json()
}

fn latches(api: SocketAddr) -> f64 {
    metric(
        &http(api, "GET", "/metrics", None, None).text,
        "sluice_latches_total",
    )
}

fn wait_latches(api: SocketAddr, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while latches(api) < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} latches after 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two free, adjacent loopback UDP ports (an even one and the next).
fn port_pair() -> u16 {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = probe.local_addr().expect("addr").port() & !1;
        drop(probe);
        let rtp = UdpSocket::bind(("127.0.0.1", port));
        let rtcp = UdpSocket::bind(("127.0.0.1", port + 1));
        if rtp.is_ok() && rtcp.is_ok() {
            return port;
        }
    }
    panic!("no free adjacent UDP port pair on 127.0.0.1");
}

/// An RR under `ssrc`, 8 bytes: header and sender SSRC.
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut rr = vec![0x80, 201, 0, 1];
    rr.extend(ssrc.to_be_bytes());
    rr
}

fn key_of(media: &Value, field: &str) -> String {
    media[field].as_str().expect(field).to_owned()
}

fn ffmpeg() -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error"]);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn ffmpeg_without_rtcp_mux_publishes_and_receives_through_the_relay() {
    assert!(
        Command::new("ffmpeg").arg("-version").output().is_ok(),
        "this test needs the ffmpeg CLI: apt-get install ffmpeg (.ci/run installs it)"
    );
    let text = "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\n\
                workers = 2\npin_cores = false\n\n[sip]\nenabled = false\n";
    let daemon = Daemon::start(&Config::parse(text, "test.toml").expect("config")).expect("start");
    let api = daemon.control_addr();
    let relay = daemon.media_addr();
    let meeting = post(
        api,
        "/v1/meetings",
        &json!({"mode": "standard", "owner": {"account": "alice", "verified": true}}),
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let participants = format!("/v1/meetings/{meeting}/participants");
    let join = |name: &str, rtcp_ssrc: u32| {
        post(
            api,
            &participants,
            &json!({"name": name, "srtp_profile": PROFILE, "rtcp_ssrc": rtcp_ssrc}),
        )
    };
    let publisher = join("ffmpeg-publisher", PUBLISHER_SSRC);
    post(
        api,
        &format!(
            "{participants}/{}/streams",
            publisher["id"].as_str().expect("id")
        ),
        &json!({"ssrc": PUBLISHER_SSRC, "kind": "audio", "codec": "pcmu", "payload_type": 0}),
    );
    let mut viewer = Endpoint::from_admission(&join("rust-viewer", VIEWER_SSRC));
    viewer.send_rtcp(&receiver_report(VIEWER_SSRC));
    wait_latches(api, 1.0);

    // The ffmpeg viewer's RTP port, latched with one SRTCP report from it.
    let ffmpeg_viewer = join("ffmpeg-viewer", FFMPEG_VIEWER_SSRC);
    let media = &ffmpeg_viewer["media"];
    let port = port_pair();
    {
        let c2r = base64::engine::general_purpose::STANDARD
            .decode(key_of(media, "client_to_relay"))
            .expect("base64");
        let key = MasterKey::new(SrtpProfile::AesCm128HmacSha1_80, &c2r).expect("key");
        let mut session = SrtpSession::new(AnyGcm::default(), &key).expect("session");
        let rr = receiver_report(FFMPEG_VIEWER_SSRC);
        let mut buf = rr.clone();
        buf.resize(rr.len() + 64, 0);
        let n = session.protect_rtcp(&mut buf, rr.len()).expect("protect");
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind the viewer's port");
        socket.send_to(&buf[..n], relay).expect("send");
        wait_latches(api, 2.0);
    }

    let dir = std::env::temp_dir().join(format!("sluice-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sdp = dir.join("viewer.sdp");
    let wav = dir.join("viewer.wav");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sluice\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
             a=crypto:1 {PROFILE} inline:{}\r\n",
            key_of(media, "relay_to_client")
        ),
    )
    .expect("write the SDP");
    let receiver = ffmpeg()
        .args(["-protocol_whitelist", "file,udp,rtp,srtp,crypto"])
        .arg("-i")
        .arg(&sdp)
        .args(["-t", "2", "-c:a", "pcm_s16le", "-y"])
        .arg(&wav)
        .spawn()
        .expect("start the ffmpeg viewer");
    std::thread::sleep(Duration::from_millis(300));

    // The publisher: RTP from `local`, SRTCP from `local + 1`, both to the
    // relay's media port.
    let local = port_pair();
    let url = format!(
        "srtp://{}:{}?localrtpport={local}&localrtcpport={}&rtcpport={}",
        relay.ip(),
        relay.port(),
        local + 1,
        relay.port()
    );
    let sender = ffmpeg()
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000",
        ])
        .args(["-t", "11", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1"])
        .args(["-payload_type", "0", "-ssrc", &PUBLISHER_SSRC.to_string()])
        .args(["-srtp_out_suite", PROFILE, "-srtp_out_params"])
        .arg(key_of(&publisher["media"], "client_to_relay"))
        .args(["-f", "rtp", &url])
        .spawn()
        .expect("start the ffmpeg publisher");

    // The Rust viewer counts what arrives for 12 s: ffmpeg sends an SR
    // with its first packet and then every 5 s.
    let (mut rtp, mut rtcp) = (0, 0);
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        for mut datagram in viewer.receive(usize::MAX, Duration::from_millis(200)) {
            let len = datagram.len();
            if is_rtcp(&datagram) {
                viewer
                    .recv
                    .unprotect_rtcp(&mut datagram, len)
                    .expect("the relayed SR authenticates");
                assert_eq!(datagram[1], 200, "a sender report");
                rtcp += 1;
            } else {
                let n = viewer
                    .recv
                    .unprotect_rtp(&mut datagram, len)
                    .expect("the relayed RTP authenticates");
                assert!(n > 12);
                assert_eq!(&datagram[8..12], &PUBLISHER_SSRC.to_be_bytes());
                rtp += 1;
            }
        }
    }
    let finish = |child: std::process::Child, what: &str| {
        let out = child.wait_with_output().expect("wait for ffmpeg");
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    finish(sender, "the ffmpeg publisher");
    finish(receiver, "the ffmpeg viewer");
    eprintln!("rust viewer: {rtp} RTP, {rtcp} SRs");
    assert!(rtp >= 50, "only {rtp} RTP packets reached the Rust viewer");
    assert!(
        rtcp >= 3,
        "only {rtcp} SRs from the publisher's RTCP port arrived"
    );
    // Two viewers, the publisher's RTP port and its RTCP port: nothing
    // flapped between the two ports.
    assert_eq!(latches(api), 4.0);
    // ffmpeg decoded at least 1.5 s of 8 kHz 16-bit audio.
    let decoded = std::fs::metadata(&wav).map(|m| m.len()).unwrap_or(0);
    assert!(
        decoded > 24_000,
        "the ffmpeg viewer wrote only {decoded} bytes"
    );
    let _ = std::fs::remove_dir_all(Path::new(&dir));
    daemon.shutdown();
}

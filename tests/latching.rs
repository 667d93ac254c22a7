//! A webinar's join storm on 127.0.0.1: a thousand receive-only viewers,
//! admitted with an `rtcp_ssrc` each, start sending SRTCP receiver
//! reports at the same moment (and resend once a second, as RTCP senders
//! do). Each latches by one lookup of that SSRC, so all of them latch
//! within 10 s on either I/O backend, and then every one of them receives
//! the presenter's packets.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, is_rtcp, metric};

const VIEWERS: usize = 1000;
/// The bound: everyone latched within 10 s of the first report.
const LATCH_WITHIN: Duration = Duration::from_secs(10);
/// How often a viewer resends its report until it hears media.
const RESEND: Duration = Duration::from_secs(1);

fn start(io: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         io = \"{io}\"\npin_cores = false\n\n[policy]\nmax_participants_per_meeting = 2000\n\
         max_participants_per_node = 2000\n\n[sip]\nenabled = false\n"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{path}: {}", r.text);
    r.json()
}

/// One SRTCP RR from `who` under `ssrc`, about `about`.
fn send_report(who: &mut Endpoint, ssrc: u32, about: u32) {
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend(ssrc.to_be_bytes());
    rr.extend(about.to_be_bytes());
    rr.extend([0u8; 20]);
    who.send_rtcp(&rr);
}

/// The soft limit on open files raised to the hard one: a thousand
/// viewer sockets need more than the usual 1024.
fn enough_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(8192), hard).expect("setrlimit");
    }
}

fn join_storm(io: &str) {
    enough_files();
    let daemon = start(io);
    let api = daemon.control_addr();
    let meeting = post(
        api,
        "/v1/meetings",
        &json!({"mode": "e2ee", "owner": {"account": "alice", "verified": true}}),
    )["id"]
        .as_str()
        .expect("meeting id")
        .to_owned();
    let participants = format!("/v1/meetings/{meeting}/participants");
    let mut presenter = Endpoint::from_admission(&post(api, &participants, &json!({"name": "p"})));
    let video = 0x0bad_cafe;
    post(
        api,
        &format!("{participants}/{}/streams", presenter.id),
        &json!({"ssrc": video, "kind": "video", "codec": "vp8", "payload_type": 96}),
    );
    let admitting = Instant::now();
    let mut viewers: Vec<(Endpoint, u32)> = (0..VIEWERS)
        .map(|i| {
            let ssrc = 0x5200_0000 + i as u32;
            let body = post(
                api,
                &participants,
                &json!({"name": format!("v{i}"), "rtcp_ssrc": ssrc}),
            );
            assert_eq!(
                body["media"]["rtcp_ssrc"], ssrc,
                "the requested SSRC is echoed"
            );
            (Endpoint::from_admission(&body), ssrc)
        })
        .collect();
    eprintln!(
        "{io}: {VIEWERS} viewers admitted in {:?}",
        admitting.elapsed()
    );
    let latched = || {
        metric(
            &http(api, "GET", "/metrics", None, None).text,
            "sluice_latches_total",
        )
    };
    let started = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        for (viewer, ssrc) in &mut viewers {
            send_report(viewer, *ssrc, video);
        }
        let round = Instant::now();
        while round.elapsed() < RESEND {
            if latched() >= VIEWERS as f64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = latched();
        if now >= VIEWERS as f64 {
            break;
        }
        assert!(
            started.elapsed() < LATCH_WITHIN,
            "{io}: only {} of {VIEWERS} viewers latched within {LATCH_WITHIN:?}",
            now
        );
    }
    let took = started.elapsed();
    eprintln!("{io}: {VIEWERS} viewers latched in {took:?} ({rounds} report rounds)");
    assert!(took < LATCH_WITHIN);
    // No report was tried against other legs' keys: each found its leg.
    let text = http(api, "GET", "/metrics", None, None).text;
    assert_eq!(
        metric(
            &text,
            "sluice_packets_dropped_total{reason=\"auth_failed\"}"
        ),
        0.0
    );

    // Every viewer now receives the presenter's video, under its own key
    // (nothing came before it: the relay forwards no receiver report).
    let sent = presenter.send_rtp(video, 2, b"to everyone");
    assert!(!sent.is_empty());
    for (i, (viewer, _)) in viewers.iter_mut().enumerate() {
        let got = viewer.receive(1, Duration::from_secs(2));
        let mut media: Vec<Vec<u8>> = got.into_iter().filter(|d| !is_rtcp(d)).collect();
        assert_eq!(media.len(), 1, "{io}: viewer {i} got no video");
        let datagram = &mut media[0];
        let len = datagram.len();
        let n = viewer
            .recv
            .unprotect_rtp(datagram, len)
            .unwrap_or_else(|e| panic!("viewer {i} cannot decrypt: {e}"));
        assert!(
            datagram[..n].ends_with(b"to everyone"),
            "viewer {i}: {:?}",
            &datagram[..n]
        );
    }
    daemon.shutdown();
}

#[test]
fn a_thousand_receive_only_viewers_latch_within_ten_seconds() {
    join_storm("auto");
}

#[test]
fn fallback_a_thousand_receive_only_viewers_latch_within_ten_seconds() {
    join_storm("recvmmsg");
}

//! The relay end to end on 127.0.0.1: the daemon started in-process (real
//! UDP and TCP sockets, real worker threads), driven through the control
//! API, with participants that are real SRTP endpoints. Every scenario runs
//! on io_uring and again with the recvmmsg/sendmmsg fallback forced.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, is_rtcp, metric};

const WAIT: Duration = Duration::from_secs(3);

fn start(io: &str) -> Daemon {
    start_with(io, "off")
}

/// A relay whose `[crypto] gpu` is `gpu`.
fn start_with(io: &str, gpu: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nio = \"{io}\"\npin_cores = false\n\n[crypto]\ngpu = \"{gpu}\"\n\n[sip]\nenabled = false\n"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    let daemon = Daemon::start(&config).expect("daemon starts");
    assert_eq!(
        daemon.io_backend().name(),
        if io == "recvmmsg" {
            "recvmmsg"
        } else {
            "io_uring"
        }
    );
    daemon
}

fn post(api: SocketAddr, path: &str, body: &Value) -> support::Response {
    http(api, "POST", path, Some(body), None)
}

fn meeting(api: SocketAddr, mode: &str) -> String {
    let r = post(
        api,
        "/v1/meetings",
        &json!({"mode": mode, "owner": {"account": "alice", "verified": true}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().expect("meeting id").to_owned()
}

fn admit(api: SocketAddr, meeting: &str, name: &str) -> Endpoint {
    let r = post(
        api,
        &format!("/v1/meetings/{meeting}/participants"),
        &json!({"name": name}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    Endpoint::from_admission(&r.json())
}

fn publish(api: SocketAddr, meeting: &str, who: &Endpoint, ssrc: u32, kind: &str) {
    let (codec, pt) = if kind == "audio" {
        ("opus", 111)
    } else {
        ("vp8", 96)
    };
    let r = post(
        api,
        &format!("/v1/meetings/{meeting}/participants/{}/streams", who.id),
        &json!({"ssrc": ssrc, "kind": kind, "codec": codec, "payload_type": pt}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

fn metrics(api: SocketAddr) -> String {
    let r = http(api, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    r.text
}

/// Waits (bounded) until the relay has latched `n` addresses in total:
/// a worker other than the one that latched may need the address next.
fn wait_latches(api: SocketAddr, n: f64) {
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&metrics(api), "sluice_latches_total") < n {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} latches after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Decrypts every RTP datagram an endpoint received; returns (ssrc, payload).
fn decrypt_all(who: &mut Endpoint, datagrams: Vec<Vec<u8>>) -> Vec<(u32, Vec<u8>)> {
    datagrams
        .into_iter()
        .filter(|d| !is_rtcp(d))
        .map(|mut d| {
            let len = d.len();
            let n = who
                .recv
                .unprotect_rtp(&mut d, len)
                .expect("receiver decrypts with its own key");
            let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
            (ssrc, d[12..n].to_vec())
        })
        .collect()
}

fn payload(tag: u32, seq: u16, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag as usize * 7 + usize::from(seq) + i) as u8)
        .collect()
}

/// Three participants, each publishing audio and video, in one meeting.
fn three_party(io: &str, mode: &str) {
    three_party_on(start(io), io, mode).shutdown();
}

/// The three-party exchange on `daemon`, which it returns still running.
fn three_party_on(daemon: Daemon, io: &str, mode: &str) -> Daemon {
    let api = daemon.control_addr();
    let id = meeting(api, mode);
    let mut people: Vec<Endpoint> = ["ann", "bob", "cat"]
        .iter()
        .map(|n| admit(api, &id, n))
        .collect();
    for (i, p) in people.iter().enumerate() {
        let base = 0x1000 * (i as u32 + 1);
        publish(api, &id, p, base + 1, "audio");
        publish(api, &id, p, base + 2, "video");
    }
    // Latch everyone (one authenticated packet each), then drain what the
    // latching packets caused.
    for (i, p) in people.iter_mut().enumerate() {
        let base = 0x1000 * (i as u32 + 1);
        p.send_rtp(base + 1, 1, &payload(base, 1, 160));
    }
    wait_latches(api, 3.0);
    std::thread::sleep(Duration::from_millis(100));
    for p in &people {
        p.drain();
    }

    // Each sends 5 audio (160 B) and 5 video (1200 B) packets.
    let mut sent: Vec<(u32, Vec<u8>)> = Vec::new();
    for (i, p) in people.iter_mut().enumerate() {
        let base = 0x1000 * (i as u32 + 1);
        for seq in 2..7u16 {
            let audio = payload(base + 1, seq, 160);
            let video = payload(base + 2, seq, 1200);
            p.send_rtp(base + 1, seq, &audio);
            p.send_rtp(base + 2, seq, &video);
            sent.push((base + 1, audio));
            sent.push((base + 2, video));
        }
    }
    for (i, p) in people.iter_mut().enumerate() {
        let own: HashSet<u32> = [0x1000 * (i as u32 + 1) + 1, 0x1000 * (i as u32 + 1) + 2].into();
        let datagrams = p.receive(20, WAIT);
        let got = decrypt_all(p, datagrams);
        assert_eq!(
            got.len(),
            20,
            "{mode}/{io}: participant {i} got {} of 20 packets",
            got.len()
        );
        for (ssrc, bytes) in &got {
            assert!(
                !own.contains(ssrc),
                "{mode}/{io}: participant {i} received its own stream {ssrc:#x}"
            );
            assert!(
                sent.iter().any(|(s, b)| s == ssrc && b == bytes),
                "{mode}/{io}: participant {i}: payload of {ssrc:#x} is not byte-identical to what was sent"
            );
        }
    }
    // A worker counts a batch after the kernel took it, so the last count
    // may trail the receivers by a moment (longer when a CPU OpenCL
    // driver shares the cores): wait for it, bounded.
    let out_metric = format!("sluice_packets_out_total{{mode=\"{mode}\"}}");
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&metrics(api), &out_metric) < 60.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = metrics(api);
    assert!(
        metric(
            &text,
            &format!("sluice_packets_in_total{{mode=\"{mode}\"}}")
        ) >= 33.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            &format!("sluice_packets_out_total{{mode=\"{mode}\"}}")
        ) >= 60.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("sluice_legs{{mode=\"{mode}\"}}")),
        3.0
    );
    daemon
}

/// With `gpu = "always"` every fan-out is sealed by the OpenCL kernels
/// (pocl's CPU device in CI), submitted in one loop turn and sent in a
/// later one: the same packets arrive, byte-identical, on both I/O
/// backends, and the metrics count them under the GPU.
fn three_party_on_the_gpu(io: &str) {
    if !sluice::crypto::BackendKind::usable().contains(&sluice::crypto::BackendKind::Gpu) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but there is no OpenCL device for gpu = \"always\""
        );
        eprintln!("no OpenCL device: gpu = \"always\" not tested here");
        return;
    }
    let daemon = three_party_on(start_with(io, "always"), io, "e2ee");
    let text = metrics(daemon.control_addr());
    assert!(
        metric(&text, "sluice_crypto_packets_total{backend=\"gpu\"}") >= 60.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sluice_crypto_gpu_fallbacks_total"),
        0.0,
        "{text}"
    );
    assert!(
        text.contains("sluice_crypto_backend_info{backend=\"gpu\"} 1"),
        "{text}"
    );
    daemon.shutdown();
}

#[test]
fn gpu_always_relays_through_the_opencl_kernels() {
    three_party_on_the_gpu("io_uring");
}

#[test]
fn fallback_gpu_always_relays_through_the_opencl_kernels() {
    three_party_on_the_gpu("recvmmsg");
}

/// Forgery, replay and unknown SSRCs are dropped and counted; latches move
/// only for authentic, fresh packets.
fn attacks(io: &str) {
    let daemon = start(io);
    let api = daemon.control_addr();
    let id = meeting(api, "e2ee");
    let mut ann = admit(api, &id, "ann");
    let mut bob = admit(api, &id, "bob");
    publish(api, &id, &ann, 0xa1, "audio");
    publish(api, &id, &bob, 0xb1, "audio");
    ann.send_rtp(0xa1, 1, b"latch ann");
    bob.send_rtp(0xb1, 1, b"latch bob");
    wait_latches(api, 2.0);
    std::thread::sleep(Duration::from_millis(100));
    ann.drain();
    bob.drain();

    // Forged: a known SSRC with a made-up tag.
    let mut forged = support::rtp(0xa1, 2, b"forged!!");
    forged.resize(forged.len() + 16, 0xee);
    ann.send_raw(&forged);
    // Replayed: a genuine packet sent twice.
    let genuine = ann.send_rtp(0xa1, 3, b"genuine");
    ann.send_raw(&genuine);
    // Unknown SSRC.
    let mut unknown = support::rtp(0x0bad_f00d, 1, b"who am i");
    unknown.resize(unknown.len() + 16, 0);
    ann.send_raw(&unknown);

    let got = bob.receive(3, Duration::from_millis(800));
    assert_eq!(
        got.len(),
        1,
        "{io}: only the genuine packet reaches bob, once"
    );
    let text = metrics(api);
    assert_eq!(
        metric(
            &text,
            "sluice_packets_dropped_total{reason=\"auth_failed\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sluice_packets_dropped_total{reason=\"replayed\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sluice_packets_dropped_total{reason=\"unknown_ssrc\"}"
        ),
        1.0,
        "{text}"
    );

    // A bad tag from a new address does not move bob's latch ...
    let intruder = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut bad = support::rtp(0xb1, 10, b"intruder");
    bad.resize(bad.len() + 16, 0);
    intruder.send_to(&bad, bob.relay).expect("send");
    // ... nor does a replay of bob's genuine earlier packet from that address.
    let old = bob.send_rtp(0xb1, 2, b"old");
    std::thread::sleep(Duration::from_millis(100));
    intruder.send_to(&old, bob.relay).expect("send");
    std::thread::sleep(Duration::from_millis(150));
    ann.drain();
    ann.send_rtp(0xa1, 4, b"to bob");
    assert_eq!(
        bob.receive(1, WAIT).len(),
        1,
        "{io}: bob's latch must not have moved"
    );

    // A valid, fresh packet from a new address moves it.
    let moved = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    moved
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut fresh = support::rtp(0xb1, 20, b"bob moved");
    let len = fresh.len();
    fresh.resize(len + 16, 0);
    let n = bob.send.protect_rtp(&mut fresh, len).expect("protect");
    moved.send_to(&fresh[..n], bob.relay).expect("send");
    wait_latches(api, 3.0);
    ann.send_rtp(0xa1, 5, b"to bob's new address");
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + WAIT;
    let mut arrived = false;
    while !arrived && std::time::Instant::now() < deadline {
        arrived = moved
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| !is_rtcp(&buf[..n]));
    }
    assert!(
        arrived,
        "{io}: a fresh authentic packet from a new address moves the latch"
    );
    daemon.shutdown();
}

/// Policy refusals come back with the documented codes.
fn refusals(io: &str) {
    let daemon = start(io);
    let api = daemon.control_addr();
    let r = post(
        api,
        "/v1/meetings",
        &json!({"mode": "e2ee", "owner": {"account": "eve", "verified": false}}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "e2ee_requires_verified_owner"),
        "{}",
        r.text
    );

    let id = meeting(api, "standard");
    let r = post(
        api,
        &format!("/v1/meetings/{id}/lock"),
        &json!({"locked": true}),
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let r = post(
        api,
        &format!("/v1/meetings/{id}/participants"),
        &json!({"name": "late"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "meeting_locked"),
        "{}",
        r.text
    );

    let r = post(
        api,
        "/v1/meetings",
        &json!({"mode": "standard", "owner": {"account": "alice", "verified": true}, "passcode": "4242"}),
    );
    let guarded = r.json()["id"].as_str().expect("id").to_owned();
    let r = post(
        api,
        &format!("/v1/meetings/{guarded}/participants"),
        &json!({"name": "x", "passcode": "1111"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "wrong_passcode"),
        "{}",
        r.text
    );

    let e2ee = meeting(api, "e2ee");
    let r = post(
        api,
        &format!("/v1/meetings/{e2ee}/participants"),
        &json!({"name": "phone", "source": "dial-in"}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "e2ee_forbids_dial_in"),
        "{}",
        r.text
    );
    let text = metrics(api);
    assert_eq!(
        metric(&text, "sluice_api_refusals_total{code=\"wrong_passcode\"}"),
        1.0,
        "{text}"
    );
    daemon.shutdown();
}

/// Deleting a participant stops forwarding to it at once.
fn deletion(io: &str) {
    let daemon = start(io);
    let api = daemon.control_addr();
    let id = meeting(api, "standard");
    let mut ann = admit(api, &id, "ann");
    let mut bob = admit(api, &id, "bob");
    publish(api, &id, &ann, 0xa1, "audio");
    publish(api, &id, &bob, 0xb1, "audio");
    bob.send_rtp(0xb1, 1, b"latch");
    wait_latches(api, 1.0);
    ann.send_rtp(0xa1, 1, b"latch");
    assert_eq!(bob.receive(1, WAIT).len(), 1);
    let r = http(
        api,
        "DELETE",
        &format!("/v1/meetings/{id}/participants/{}", bob.id),
        None,
        None,
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    ann.send_rtp(0xa1, 2, b"after delete");
    assert!(
        bob.receive(1, Duration::from_millis(500)).is_empty(),
        "{io}: a deleted participant still receives"
    );
    daemon.shutdown();
}

#[test]
fn standard_meeting_relays_between_three_participants() {
    three_party("io_uring", "standard");
}

#[test]
fn e2ee_meeting_relays_byte_identical_payloads() {
    three_party("io_uring", "e2ee");
}

#[test]
fn forged_replayed_unknown_packets_are_dropped_and_latches_hold() {
    attacks("io_uring");
}

#[test]
fn policy_refusals_have_documented_codes() {
    refusals("io_uring");
}

#[test]
fn deleting_a_participant_stops_forwarding() {
    deletion("io_uring");
}

#[test]
fn fallback_standard_meeting() {
    three_party("recvmmsg", "standard");
}

#[test]
fn fallback_e2ee_meeting() {
    three_party("recvmmsg", "e2ee");
}

#[test]
fn fallback_attacks() {
    attacks("recvmmsg");
}

#[test]
fn fallback_refusals() {
    refusals("recvmmsg");
}

#[test]
fn fallback_deletion() {
    deletion("recvmmsg");
}

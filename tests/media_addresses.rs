//! Item 6 of #12 end to end: the relay bound to every address of a
//! multi-homed host (`0.0.0.0`, `[::]`), with `[media] advertise` naming
//! the address the API hands out, and IPv6 participants, on both I/O
//! backends. Replies must leave from the address each peer sent to:
//! loopback holds all of 127/8, so 127.0.0.2 and 127.0.0.3 are two more
//! addresses of this host, and a peer on 127.0.0.1 sending to one of them
//! gets, without the fix, replies from 127.0.0.1 (the kernel's choice).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, is_rtcp, metric};

const WAIT: Duration = Duration::from_secs(3);

fn start(io: &str, listen: &str, advertise: Option<&str>) -> Daemon {
    let advertise = advertise.map_or(String::new(), |a| format!("advertise = \"{a}\"\n"));
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"{listen}\"\n{advertise}workers = 2\nio = \"{io}\"\npin_cores = false\n\n[sip]\nenabled = false\n"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn meeting(api: SocketAddr) -> String {
    let body = json!({"mode": "e2ee", "owner": {"account": "alice", "verified": true}});
    post(api, "/v1/meetings", &body)["id"]
        .as_str()
        .expect("meeting id")
        .to_owned()
}

/// Admits `name`, checks the advertised address in the answer, and puts
/// the endpoint on a socket bound to `bind`, sending to `send_to` (one of
/// the host's addresses, at the media port).
fn join(
    api: SocketAddr,
    id: &str,
    name: &str,
    advertised: &str,
    bind: &str,
    send_to: &str,
) -> Endpoint {
    let body = post(
        api,
        &format!("/v1/meetings/{id}/participants"),
        &json!({"name": name}),
    );
    let mut who = Endpoint::from_admission(&body);
    assert_eq!(
        who.relay.ip().to_string(),
        advertised,
        "media.address: {body}"
    );
    who.socket = UdpSocket::bind(bind).expect("bind participant");
    who.socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    who.relay = SocketAddr::new(send_to.parse().expect("ip"), who.relay.port());
    who
}

fn publish(api: SocketAddr, id: &str, who: &Endpoint, ssrc: u32) {
    post(
        api,
        &format!("/v1/meetings/{id}/participants/{}/streams", who.id),
        &json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
}

/// Receives until `want` datagrams of the wanted kind arrived (bounded);
/// returns each with its source.
fn receive(who: &Endpoint, want: usize, rtcp: bool) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want && Instant::now() < deadline {
        if let Ok((n, from)) = who.socket.recv_from(&mut buf)
            && is_rtcp(&buf[..n]) == rtcp
        {
            got.push((from, buf[..n].to_vec()));
        }
    }
    got
}

fn wait_latches(api: SocketAddr, n: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = http(api, "GET", "/metrics", None, None).text;
        if metric(&text, "sluice_latches_total") >= n {
            return;
        }
        assert!(Instant::now() < deadline, "fewer than {n} latches: {text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A picture loss indication (RFC 4585 §6.3.1) from `ssrc` about `about`:
/// the relay forwards it to the publisher of `about`.
fn picture_loss(ssrc: u32, about: u32) -> Vec<u8> {
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend(ssrc.to_be_bytes());
    pli.extend(about.to_be_bytes());
    pli
}

/// Two participants, each bound at `bind_*` and sending to `to_*`: each
/// receives the other's RTP (and the publisher the receiver's RTCP) from
/// exactly the address it sent to, and decrypts it.
fn exchange(daemon: &Daemon, advertised: &str, a: (&str, &str), b: (&str, &str)) {
    let api = daemon.control_addr();
    let id = meeting(api);
    let mut ann = join(api, &id, "ann", advertised, a.0, a.1);
    let mut bob = join(api, &id, "bob", advertised, b.0, b.1);
    publish(api, &id, &ann, 0xa1);
    publish(api, &id, &bob, 0xb1);
    let before = metric(
        &http(api, "GET", "/metrics", None, None).text,
        "sluice_latches_total",
    );
    ann.send_rtp(0xa1, 1, b"latch ann");
    bob.send_rtp(0xb1, 1, b"latch bob");
    wait_latches(api, before + 2.0);
    std::thread::sleep(Duration::from_millis(50));
    ann.drain();
    bob.drain();
    for seq in 2..7u16 {
        ann.send_rtp(0xa1, seq, b"from ann");
        bob.send_rtp(0xb1, seq, b"from bob");
    }
    for (who, from_whom) in [(&mut ann, b"from bob"), (&mut bob, b"from ann")] {
        let got = receive(who, 5, false);
        assert_eq!(got.len(), 5, "{} got {} of 5", who.id, got.len());
        for (src, mut datagram) in got {
            assert_eq!(src, who.relay, "RTP to a peer leaves from where it sent");
            let len = datagram.len();
            let n = who
                .recv
                .unprotect_rtp(&mut datagram, len)
                .expect("decrypts");
            assert_eq!(&datagram[12..n], from_whom);
        }
    }
    // Bob asks Ann for a key frame: the request reaches Ann, from the
    // address Ann sent to.
    bob.send_rtcp(&picture_loss(0xb1, 0xa1));
    let got = receive(&ann, 1, true);
    assert_eq!(got.len(), 1, "Ann got Bob's request");
    assert_eq!(
        got[0].0, ann.relay,
        "RTCP to a peer leaves from where it sent"
    );
}

fn multi_homed_ipv4(io: &str) {
    let daemon = start(io, "0.0.0.0:0", Some("127.0.0.2"));
    exchange(
        &daemon,
        "127.0.0.2",
        ("127.0.0.1:0", "127.0.0.3"),
        ("127.0.0.1:0", "127.0.0.2"),
    );
    daemon.shutdown();
}

fn ipv6_only(io: &str) {
    let daemon = start(io, "[::1]:0", None);
    exchange(&daemon, "::1", ("[::1]:0", "::1"), ("[::1]:0", "::1"));
    daemon.shutdown();
}

/// `[::]`: one IPv6 participant and one IPv4 participant (reaching the
/// relay at a second IPv4 address) in one meeting.
fn dual_stack(io: &str) {
    let daemon = start(io, "[::]:0", Some("::1"));
    exchange(
        &daemon,
        "::1",
        ("[::1]:0", "::1"),
        ("127.0.0.1:0", "127.0.0.3"),
    );
    daemon.shutdown();
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $test() { super::$test("io_uring") })*
        }
        mod recvmmsg {
            $(#[test] fn $test() { super::$test("recvmmsg") })*
        }
    };
}

on_both_backends!(multi_homed_ipv4, ipv6_only, dual_stack);

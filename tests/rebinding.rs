//! NAT rebinding after a sequence wrap, on 127.0.0.1 with two workers, on
//! both I/O backends (issue #12, item 3). A publisher sends across its
//! sequence number's wrap (rollover counter 1), then its address changes
//! to a source port whose 4-tuple the kernel hashes to the *other* worker
//! (found by a probe that the SSRC steering leaves to the hash). Its
//! stream must go on: the receiver decrypts every packet under its own key,
//! with strictly increasing SRTP indices (a reused index toward it would
//! fail to authenticate or be refused as a replay), and the relay drops
//! nothing for authentication. Then the receiver rebinds too, and its
//! next report moves where the stream goes.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, is_rtcp, metric};

/// The publisher's video SSRC and the receiver's `rtcp_ssrc`: both even,
/// so both are steered to worker 0 and worker 1 stays idle for the probe.
const VIDEO: u32 = 0x0bad_cafe;
const RECEIVER_RTCP: u32 = 0x5200_0000;
/// Packets sent from each address.
const PER_ADDRESS: u16 = 600;
/// The first sequence number: the wrap comes after 136 packets.
const FIRST_SEQ: u16 = 65_400;

fn start(io: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         io = \"{io}\"\npin_cores = false\n\n[sip]\nenabled = false\n"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{path}: {}", r.text);
    r.json()
}

fn metrics(api: SocketAddr) -> String {
    http(api, "GET", "/metrics", None, None).text
}

/// Each worker's busy seconds so far: which worker handled something.
fn busy(api: SocketAddr) -> [f64; 2] {
    let text = metrics(api);
    [0, 1].map(|w| {
        metric(
            &text,
            &format!("sluice_worker_busy_seconds_total{{worker=\"{w}\"}}"),
        )
    })
}

/// The worker that handles what `act` sends (the only one whose busy time
/// grew), or `None` when it cannot be told apart.
fn worker_handling(api: SocketAddr, act: impl FnOnce()) -> Option<usize> {
    let before = busy(api);
    act();
    // Busy time is added per batch; let the batch finish.
    std::thread::sleep(Duration::from_millis(200));
    let after = busy(api);
    let grew: Vec<usize> = (0..2).filter(|&w| after[w] > before[w]).collect();
    match grew[..] {
        [w] => Some(w),
        _ => None,
    }
}

fn fresh_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    socket
}

fn send_report(who: &mut Endpoint) {
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend(RECEIVER_RTCP.to_be_bytes());
    rr.extend(VIDEO.to_be_bytes());
    rr.extend([0u8; 20]);
    who.send_rtcp(&rr);
}

/// Sends `count` packets from `seq` on, paced, and has `receiver` decrypt
/// what arrives; returns the next sequence number.
fn stream(
    publisher: &mut Endpoint,
    receiver: &mut Endpoint,
    mut seq: u16,
    count: u16,
    indices: &mut Vec<u64>,
) -> u16 {
    for i in 0..count {
        publisher.send_rtp(VIDEO, seq, &seq.to_be_bytes());
        seq = seq.wrapping_add(1);
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(2));
            take(receiver, indices, Duration::ZERO);
        }
    }
    take(receiver, indices, Duration::from_millis(300));
    seq
}

/// Decrypts every media packet `receiver` has, recording its index.
fn take(receiver: &mut Endpoint, indices: &mut Vec<u64>, linger: Duration) {
    let until = Instant::now() + linger;
    let mut buf = [0u8; 2048];
    receiver
        .socket
        .set_nonblocking(linger.is_zero())
        .expect("mode");
    loop {
        match receiver.socket.recv_from(&mut buf) {
            Ok((n, _)) if !is_rtcp(&buf[..n]) => {
                let (len, index) = receiver
                    .recv
                    .unprotect_rtp_indexed(&mut buf, n)
                    .unwrap_or_else(|e| panic!("packet {} at the receiver: {e}", indices.len()));
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                assert_eq!(&buf[12..len], &seq.to_be_bytes(), "payload");
                indices.push(index);
            }
            Ok(_) => {}
            Err(_) if Instant::now() >= until => break,
            Err(_) => {}
        }
    }
    receiver.socket.set_nonblocking(false).expect("mode");
}

fn strictly_increasing(indices: &[u64]) -> bool {
    indices.windows(2).all(|w| w[0] < w[1])
}

fn a_publisher_rebinds_to_another_workers_hash_after_a_wrap(io: &str) {
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
    let mut publisher = Endpoint::from_admission(&post(api, &participants, &json!({"name": "p"})));
    post(
        api,
        &format!("{participants}/{}/streams", publisher.id),
        &json!({"ssrc": VIDEO, "kind": "video", "codec": "vp8", "payload_type": 96}),
    );
    let mut receiver = Endpoint::from_admission(&post(
        api,
        &participants,
        &json!({"name": "r", "rtcp_ssrc": RECEIVER_RTCP}),
    ));
    send_report(&mut receiver);
    std::thread::sleep(Duration::from_millis(100));

    // Across the wrap, from the first address: everything on worker 0.
    let mut indices = Vec::new();
    let mut seq = FIRST_SEQ;
    let owner = worker_handling(api, || {
        seq = stream(
            &mut publisher,
            &mut receiver,
            seq,
            PER_ADDRESS,
            &mut indices,
        );
    });
    let owner = owner.expect("one worker handled the stream");
    assert_eq!(owner, 0, "{io}: the stream is steered by its SSRC");
    let before_move = indices.len();
    assert!(
        before_move >= usize::from(PER_ADDRESS) * 9 / 10,
        "{io}: only {before_move} of {PER_ADDRESS} arrived before the move"
    );
    assert!(
        indices.last().is_some_and(|&i| i >> 16 == 1),
        "{io}: the stream wrapped"
    );

    // A new source port that the kernel's 4-tuple hash gives worker 1.
    let moved = (0..64)
        .map(|_| fresh_socket())
        .find(|socket| {
            let probe = || {
                socket.send_to(b"x", publisher.relay).expect("probe");
            };
            worker_handling(api, probe).is_some_and(|w| w != owner)
        })
        .expect("64 source ports all hashed to the stream's worker");
    publisher.socket = moved;
    let owner = worker_handling(api, || {
        seq = stream(
            &mut publisher,
            &mut receiver,
            seq,
            PER_ADDRESS,
            &mut indices,
        );
    });
    assert_eq!(owner, Some(0), "{io}: the moved stream stays on its worker");
    let after_move = indices.len() - before_move;
    assert!(
        after_move >= usize::from(PER_ADDRESS) * 9 / 10,
        "{io}: only {after_move} of {PER_ADDRESS} arrived after the move"
    );
    assert!(strictly_increasing(&indices), "{io}: an index went back");

    // The receiver rebinds: its next report (steered by its rtcp_ssrc)
    // moves where the stream goes.
    receiver.socket = fresh_socket();
    send_report(&mut receiver);
    std::thread::sleep(Duration::from_millis(100));
    let before_receiver_move = indices.len();
    stream(
        &mut publisher,
        &mut receiver,
        seq,
        PER_ADDRESS,
        &mut indices,
    );
    let at_new_address = indices.len() - before_receiver_move;
    assert!(
        at_new_address >= usize::from(PER_ADDRESS) * 9 / 10,
        "{io}: only {at_new_address} of {PER_ADDRESS} reached the receiver's new address"
    );
    assert!(strictly_increasing(&indices), "{io}: an index went back");

    let text = metrics(api);
    assert_eq!(
        metric(
            &text,
            "sluice_packets_dropped_total{reason=\"auth_failed\"}"
        ),
        0.0,
        "{io}: the relay refused none of the moved stream"
    );
    eprintln!(
        "{io}: {} packets, indices {:#x}..={:#x}, continuous across both moves",
        indices.len(),
        indices[0],
        indices[indices.len() - 1]
    );
    daemon.shutdown();
}

#[test]
fn io_uring_a_publisher_rebinds_to_another_workers_hash_after_a_wrap() {
    a_publisher_rebinds_to_another_workers_hash_after_a_wrap("io_uring");
}

#[test]
fn recvmmsg_a_publisher_rebinds_to_another_workers_hash_after_a_wrap() {
    a_publisher_rebinds_to_another_workers_hash_after_a_wrap("recvmmsg");
}

//! What SSRC steering (`net/steer.rs`, `SO_ATTACH_REUSEPORT_CBPF`) costs
//! per packet. The program runs in the kernel's socket lookup of each
//! received datagram; on loopback that receive path runs in the sending
//! thread's context (the softirq at the end of its `sendto`), so the
//! sender's CPU time per packet (`getrusage(RUSAGE_THREAD)`, user +
//! system) holds the lookup's cost, program or not.
//!
//! One sender sends 1200-byte RTP packets of 64 SSRCs to a group of two
//! `SO_REUSEPORT` sockets on 127.0.0.1, drained by two threads; rounds
//! alternate without and with the program, each on a fresh group. The
//! SSRCs are all even, so the program, like the hash of the one 4-tuple,
//! sends everything to one socket: the two cases differ by the program
//! only, not by how many receivers are woken.
//!
//! Run: `cargo bench --bench steer_cost -- [--packets N] [--rounds N]`.
//! Under `cargo test --benches` (no `--bench` argument) it runs one small
//! round of each and fails if the program did not steer.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use socket2::{Domain, Protocol, Socket, Type};

fn group() -> (Vec<UdpSocket>, SocketAddr) {
    let mut sockets = Vec::new();
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    for _ in 0..2 {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.set_recv_buffer_size(8 << 20).expect("SO_RCVBUF");
        s.bind(&addr.into()).expect("bind");
        let s: UdpSocket = s.into();
        addr = s.local_addr().expect("local address");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        sockets.push(s);
    }
    (sockets, addr)
}

fn thread_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(tv.tv_sec()).unwrap_or(0),
            u32::try_from(tv.tv_usec()).unwrap_or(0) * 1000,
        )
    };
    t(usage.user_time()) + t(usage.system_time())
}

/// One round: (sender CPU ns per packet, packets each socket got).
fn round(steer: bool, packets: u32) -> (f64, [u64; 2]) {
    let (sockets, addr) = group();
    if steer {
        sluice::net::attach_ssrc_steering(&sockets[0], 2).expect("attach");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let drains: Vec<_> = sockets
        .into_iter()
        .zip(counts.iter().cloned())
        .map(|(s, count)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if s.recv(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                while s.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
    sender.connect(addr).expect("connect");
    let mut packet = vec![0u8; 1200];
    packet[0] = 0x80;
    packet[1] = 96;
    let started = thread_cpu();
    for i in 0..packets {
        packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        packet[8..12].copy_from_slice(&(0x1000 + 2 * (i % 64)).to_be_bytes());
        // A full socket buffer drops after the lookup: the cost was paid.
        let _ = sender.send(&packet);
    }
    let spent = thread_cpu() - started;
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for d in drains {
        d.join().expect("drain thread");
    }
    let got = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
    (spent.as_nanos() as f64 / f64::from(packets), got)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let flag = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (packets, rounds) = if bench {
        (flag("--packets", 200_000), flag("--rounds", 6))
    } else {
        (2_000, 1)
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for steer in [false, true] {
            let (ns, got) = round(steer, packets);
            println!(
                "round {r} steering {}: {ns:.0} ns of sender CPU per packet; sockets got {got:?}",
                if steer { "on " } else { "off" }
            );
            if steer {
                // Even SSRCs: all to socket 0, by the program.
                assert!(got[0] > 0 && got[1] == 0, "{got:?}");
                on.push(ns);
            } else {
                off.push(ns);
            }
        }
    }
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "median: off {off:.0} ns, on {on:.0} ns per packet; on / off = {:.3}",
        on / off
    );
}

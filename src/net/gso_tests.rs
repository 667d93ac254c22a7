//! UDP GSO through each backend's send path, on real sockets on
//! 127.0.0.1 and ::1 (bound to one address, and to every address with
//! the source chosen by `IP_PKTINFO`/`IPV6_PKTINFO`): a fan-out of video
//! frames, committed packet by packet as the relay core does, reaches
//! every receiver with every datagram at its size, in order, from the
//! right source address, in fewer messages than datagrams. Bounded: every
//! receive has a timeout, every count is fixed.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use super::gso::SendPlan;
use super::mmsg::MmsgIo;
use super::socket::bind_group;
use super::uring::{UringIo, new_ring};
use super::worker::{BatchIo, IoFeatures};
use crate::metrics::{Drop, MetricsHub, WorkerCounters};
use crate::relay::{MeetingMode, Path, Transmits};

/// Which backend to build over the socket.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Uring,
    /// io_uring naming the socket as a registered file.
    UringFixed,
    Mmsg,
}

fn with_backend<R>(
    backend: Backend,
    socket: UdpSocket,
    gso: bool,
    counters: Arc<WorkerCounters>,
    f: impl FnOnce(&mut dyn FnMut(&Transmits) -> (bool, u64)) -> R,
) -> R {
    match backend {
        Backend::Uring | Backend::UringFixed => {
            let fixed_files = matches!(backend, Backend::UringFixed);
            let features = IoFeatures {
                gso,
                multishot: false,
                fixed_files,
            };
            let mut io =
                UringIo::new(new_ring(32).unwrap(), socket, 32, features, counters).unwrap();
            assert_eq!(io.fixed_files(), fixed_files, "fixed files refused");
            f(&mut |out| {
                io.send(out).unwrap();
                io.gso_state()
            })
        }
        Backend::Mmsg => {
            let mut io = MmsgIo::new(socket, 32, gso, counters).unwrap();
            f(&mut |out| {
                io.send(out).unwrap();
                io.gso_state()
            })
        }
    }
}

fn receiver(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Two frames (1200, 1200, 1200, 431 bytes; then 1200, 77) plus one audio
/// packet of 160, each packet committed to every receiver in turn. Each
/// datagram starts with (frame, packet, receiver) and is filled with
/// its packet number.
const FRAMES: [&[usize]; 3] = [&[1200, 1200, 1200, 431], &[1200, 77], &[160]];

fn fan_out(out: &mut Transmits, receivers: &[Path]) {
    for (f, sizes) in FRAMES.iter().enumerate() {
        for (p, &len) in sizes.iter().enumerate() {
            for (r, &to) in receivers.iter().enumerate() {
                let slot = out.slot();
                slot[..len].fill(p as u8);
                slot[..3].copy_from_slice(&[f as u8, p as u8, r as u8]);
                out.commit(len, to, MeetingMode::Standard);
            }
        }
    }
}

/// What receiver `r` must get: every packet, in order.
fn expected(r: usize) -> Vec<Vec<u8>> {
    let mut want = Vec::new();
    for (f, sizes) in FRAMES.iter().enumerate() {
        for (p, &len) in sizes.iter().enumerate() {
            let mut d = vec![p as u8; len];
            d[..3].copy_from_slice(&[f as u8, p as u8, r as u8]);
            want.push(d);
        }
    }
    want
}

/// Sends the fan-out from a relay socket bound to `listen` to receivers
/// on `peer`, each told to expect replies from `src` (`None`: the bound
/// address); checks everything that arrives.
fn a_fan_out_arrives_whole_in_order_from_the_right_source(
    backend: Backend,
    listen: &str,
    peer: &str,
    src: Option<&str>,
) {
    let (mut sockets, local) = bind_group(listen.parse().unwrap(), 1, 1 << 20).unwrap();
    let socket = sockets.pop().unwrap();
    let peer: IpAddr = peer.parse().unwrap();
    let src: Option<IpAddr> = src.map(|s| s.parse().unwrap());
    let receivers: Vec<UdpSocket> = (0..3).map(|_| receiver(peer)).collect();
    let paths: Vec<Path> = receivers
        .iter()
        .map(|r| Path::new(r.local_addr().unwrap(), src))
        .collect();
    let mut out = Transmits::default();
    fan_out(&mut out, &paths);
    let datagrams = out.len();
    let mut plan = SendPlan::default();
    plan.plan(&out, true);
    // 3 receivers × (one run per frame + the audio packet alone).
    assert_eq!(plan.runs().len(), 9, "{listen}");

    let metrics = MetricsHub::new("test");
    let counters = metrics.add_worker();
    let (gso_after, retried) = with_backend(backend, socket, true, Arc::clone(&counters), |send| {
        send(&out)
    });
    // Sent as GSO runs, none refused and sent again one by one.
    assert!(gso_after, "GSO was turned off on {listen} ({backend:?})");
    assert_eq!(
        retried, 0,
        "GSO runs were refused on {listen} ({backend:?})"
    );
    let want_from = SocketAddr::new(src.unwrap_or(local.ip()), local.port());
    for (r, rx) in receivers.iter().enumerate() {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < expected(r).len() {
            let (n, from) = rx
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{listen} {backend:?} receiver {r}: {e}"));
            let from = match from {
                SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                    None => from,
                },
                v4 => v4,
            };
            assert_eq!(from, want_from, "{listen} {backend:?}");
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, expected(r), "{listen} {backend:?} receiver {r}");
        // Nothing more (no duplicate, no stray segment).
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        assert!(rx.recv_from(&mut buf).is_err(), "{listen} {backend:?}");
    }
    let text = metrics.render(&Default::default());
    assert!(
        text.contains(&format!(
            "sluice_packets_out_total{{mode=\"standard\"}} {datagrams}"
        )),
        "{text}"
    );
    assert_eq!(counters.snapshot().dropped(Drop::Other), 0);
}

fn every_address_kind(backend: Backend) {
    for (listen, peer, src) in [
        ("127.0.0.1:0", "127.0.0.1", None),
        ("0.0.0.0:0", "127.0.0.1", Some("127.0.0.2")),
        ("[::1]:0", "::1", None),
        ("[::]:0", "::1", Some("::1")),
        // Dual stack: IPv4 receivers of an IPv6 socket, source chosen.
        ("[::]:0", "127.0.0.1", Some("127.0.0.3")),
    ] {
        a_fan_out_arrives_whole_in_order_from_the_right_source(backend, listen, peer, src);
    }
}

/// A GSO run the kernel refuses (here: IPv6 destinations on an IPv4
/// socket) is sent again datagram by datagram, each failure counted once;
/// the run to a good receiver in the same batch still arrives whole.
fn a_refused_run_is_retried_one_by_one_and_each_failure_counted(backend: Backend) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = receiver("127.0.0.1".parse().unwrap());
    let bad = Path::from("[::1]:9".parse::<SocketAddr>().unwrap());
    let mut out = Transmits::default();
    fan_out(&mut out, &[bad, good.local_addr().unwrap().into()]);
    let metrics = MetricsHub::new("test");
    let counters = metrics.add_worker();
    let (gso_after, retried) = with_backend(backend, socket, true, Arc::clone(&counters), |send| {
        send(&out)
    });
    // The bad receiver gets two GSO runs (refused, then retried one by one)
    // and a lone audio packet (refused, dropped); GSO stays on.
    assert_eq!((gso_after, retried), (true, 2));
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while got.len() < expected(1).len() {
        let (n, _) = good.recv_from(&mut buf).unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, expected(1));
    let per_receiver = FRAMES.iter().map(|f| f.len()).sum::<usize>() as u64;
    assert_eq!(counters.snapshot().dropped(Drop::SendFailed), per_receiver);
    assert_eq!(counters.snapshot().dropped(Drop::Other), 0);
}

/// With GSO off (config `gso = false`), the same batch goes datagram by
/// datagram and arrives the same.
fn without_gso_the_same_batch_arrives_the_same(backend: Backend) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx = receiver("127.0.0.1".parse().unwrap());
    let mut out = Transmits::default();
    fan_out(&mut out, &[rx.local_addr().unwrap().into()]);
    let counters = Arc::new(WorkerCounters::default());
    let (active, _) = with_backend(backend, socket, false, counters, |send| send(&out));
    assert!(!active);
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while got.len() < expected(0).len() {
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, expected(0));
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $test() { super::$test(super::Backend::Uring) })*
        }
        mod recvmmsg {
            $(#[test] fn $test() { super::$test(super::Backend::Mmsg) })*
        }
        mod io_uring_fixed_files {
            $(#[test] fn $test() { super::$test(super::Backend::UringFixed) })*
        }
    };
}

on_both_backends!(
    every_address_kind,
    a_refused_run_is_retried_one_by_one_and_each_failure_counted,
    without_gso_the_same_batch_arrives_the_same,
);

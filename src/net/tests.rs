//! The data plane on 127.0.0.1 with real sockets, for both backends: every
//! test runs once on io_uring and once on recvmmsg/sendmmsg. Counts and
//! waits are bounded; a lost datagram fails a test at its deadline, it never
//! hangs it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::*;
use crate::relay::{MeetingMode, Path, RoutingSnapshot, SLOT, Transmits, empty_cell};

/// Reflects each datagram to its sender, prefixed with the worker index;
/// with `first_to`, first sends a copy there.
struct Echo {
    index: u8,
    first_to: Option<SocketAddr>,
}

impl PacketHandler for Echo {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        if len + 1 > SLOT {
            return;
        }
        for dest in self.first_to.map(Path::from).into_iter().chain([from]) {
            let slot = out.slot();
            slot[0] = self.index;
            slot[1..=len].copy_from_slice(&packet[..len]);
            out.commit(len + 1, dest, MeetingMode::E2ee);
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(5);

thread_local! {
    /// Set by the `io_uring_multishot` copies of the tests: the data plane
    /// they start receives with the multishot request (each test runs on
    /// its own thread, which starts its planes).
    static MULTISHOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by the `io_uring_fixed_files` copies: the rings name the
    /// sockets as registered files.
    static FIXED_FILES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The default options for `listen`, with this test's receive mode.
fn options(listen: &str) -> DataPlaneOptions {
    DataPlaneOptions {
        multishot: MULTISHOT.with(std::cell::Cell::get),
        fixed_files: FIXED_FILES.with(std::cell::Cell::get),
        ..DataPlaneOptions::new(listen.parse().unwrap())
    }
}

fn start(io: IoMode, workers: usize, listen: &str) -> (DataPlane, MetricsHub) {
    start_with(io, workers, listen, None)
}

fn start_with(
    io: IoMode,
    workers: usize,
    listen: &str,
    first_to: Option<SocketAddr>,
) -> (DataPlane, MetricsHub) {
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        workers,
        io,
        pin_cores: false,
        ..options(listen)
    };
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, move |index, _| Echo {
        index: index as u8,
        first_to,
    })
    .unwrap();
    (plane, metrics)
}

fn client() -> UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    // Room for every reply of the largest test, read after sending.
    socket.set_recv_buffer_size(1 << 20).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
}

/// Reads replies until `count` arrived or the deadline passed.
fn replies(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < count && Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

fn expected_backend(io: IoMode) -> IoBackend {
    match io {
        IoMode::Mmsg => IoBackend::Mmsg,
        _ => IoBackend::IoUring,
    }
}

fn a_datagram_comes_back(io: IoMode) {
    let (plane, metrics) = start(io, 1, "127.0.0.1:0");
    assert_eq!(plane.io_backend(), expected_backend(io));
    assert_eq!(plane.workers(), 1);
    assert_ne!(plane.local_addr().port(), 0);
    let c = client();
    c.send_to(b"hello", plane.local_addr()).unwrap();
    assert_eq!(replies(&c, 1), vec![b"\0hello".to_vec()]);
    let text = metrics.render(&Default::default());
    let label = format!(
        "sluice_io_backend_info{{backend=\"{}\"}} 1",
        plane.io_backend()
    );
    assert!(text.contains(&label), "{text}");
    plane.shutdown();
}

fn five_hundred_datagrams_from_two_senders_all_arrive(io: IoMode) {
    let (plane, _metrics) = start(io, 1, "127.0.0.1:0");
    let senders = [client(), client()];
    for i in 0..250u16 {
        for s in &senders {
            s.send_to(&i.to_be_bytes(), plane.local_addr()).unwrap();
        }
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for s in &senders {
        let ids: BTreeSet<u16> = replies(s, 250)
            .iter()
            .map(|r| u16::from_be_bytes([r[1], r[2]]))
            .collect();
        assert_eq!(ids, (0..250).collect(), "every datagram comes back once");
    }
    plane.shutdown();
}

/// No reordering within a stream: what one sender sends, in bursts that
/// fill the receive batch and the socket buffer, the worker handles and
/// sends back in the order it came.
fn datagrams_of_one_sender_come_back_in_order(io: IoMode) {
    let (plane, _metrics) = start(io, 1, "127.0.0.1:0");
    let c = client();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    for burst in 0..20u16 {
        for i in 0..200u16 {
            c.send_to(&(burst * 200 + i).to_be_bytes(), plane.local_addr())
                .unwrap();
        }
        // Read what came back so far, so the client's buffer never fills.
        while let Ok((n, _)) = c.recv_from(&mut buf) {
            if n == 3 {
                got.push(u16::from_be_bytes([buf[1], buf[2]]));
            }
            if got.len() == usize::from(burst + 1) * 200 {
                break;
            }
        }
    }
    let late: Vec<_> = got.windows(2).filter(|w| w[1] < w[0]).collect();
    assert!(
        late.is_empty(),
        "{} reordered, e.g. {:?}",
        late.len(),
        late.first()
    );
    assert!(got.len() > 3000, "only {} of 4000 came back", got.len());
    plane.shutdown();
}

fn every_worker_handles_some_four_tuples(io: IoMode) {
    let (plane, _metrics) = start(io, 2, "127.0.0.1:0");
    // 32 source ports: all hashing to one worker has odds 2^-31.
    let clients: Vec<UdpSocket> = (0..32).map(|_| client()).collect();
    let mut workers = BTreeSet::new();
    for c in &clients {
        c.send_to(b"x", plane.local_addr()).unwrap();
        let reply = replies(c, 1);
        assert_eq!(reply.len(), 1, "no reply within the deadline");
        workers.insert(reply[0][0]);
    }
    assert_eq!(workers, BTreeSet::from([0, 1]));
    plane.shutdown();
}

/// Steering (`steer.rs`): RTP of one SSRC reaches the same worker from
/// every source port, and so does RTCP under that SSRC as its sender,
/// while what is not RTP still spreads by 4-tuple.
fn one_ssrc_reaches_one_worker_from_every_port(io: IoMode) {
    let (plane, _metrics) = start(io, 2, "127.0.0.1:0");
    let mut hashed = BTreeSet::new();
    for ssrc in [0x0bad_cafe_u32, 0x0bad_caff] {
        let want = u8::try_from(ssrc % 2).unwrap();
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 9];
        rtp.extend(ssrc.to_be_bytes());
        rtp.extend([0u8; 16]);
        let mut rtcp = vec![0x81, 201, 0, 7];
        rtcp.extend(ssrc.to_be_bytes());
        rtcp.extend([0u8; 24]);
        // 32 source ports: by 4-tuple hash, all on one worker has odds 2^-31.
        for c in (0..32).map(|_| client()) {
            for packet in [&rtp, &rtcp] {
                c.send_to(packet, plane.local_addr()).unwrap();
                let reply = replies(&c, 1);
                assert_eq!(reply.len(), 1, "no reply within the deadline");
                assert_eq!(reply[0][0], want, "SSRC {ssrc:#x} left its worker");
            }
            c.send_to(b"x", plane.local_addr()).unwrap();
            let reply = replies(&c, 1);
            assert_eq!(reply.len(), 1, "no reply within the deadline");
            hashed.insert(reply[0][0]);
        }
    }
    assert_eq!(hashed, BTreeSet::from([0, 1]), "non-RTP goes by hash");
    plane.shutdown();
}

fn shutdown_returns_promptly(io: IoMode) {
    let (plane, _metrics) = start(io, 2, "127.0.0.1:0");
    let c = client();
    for _ in 0..20 {
        c.send_to(b"load", plane.local_addr()).unwrap();
    }
    let started = Instant::now();
    plane.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
}

fn metrics_count_sent_packets_and_latency(io: IoMode) {
    let (plane, metrics) = start(io, 1, "127.0.0.1:0");
    let c = client();
    for _ in 0..10 {
        c.send_to(b"0123456789", plane.local_addr()).unwrap();
    }
    assert_eq!(replies(&c, 10).len(), 10);
    // The counter is bumped after the send returns, so it may trail the
    // reply by a moment.
    let want = "sluice_packets_out_total{mode=\"e2ee\"} 10";
    let deadline = Instant::now() + DEADLINE;
    let mut text = metrics.render(&Default::default());
    while !text.contains(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        text = metrics.render(&Default::default());
    }
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains("sluice_bytes_out_total{mode=\"e2ee\"} 110"),
        "{text}"
    );
    assert!(
        !text.contains("sluice_relay_latency_seconds_count 0"),
        "{text}"
    );
    plane.shutdown();
}

fn a_failed_send_is_a_drop_and_the_rest_still_go(io: IoMode) {
    // An IPv6 destination on an IPv4 socket: the kernel refuses that send.
    let (plane, metrics) = start_with(io, 1, "127.0.0.1:0", Some("[::1]:9".parse().unwrap()));
    let c = client();
    c.send_to(b"x", plane.local_addr()).unwrap();
    assert_eq!(replies(&c, 1), vec![b"\0x".to_vec()]);
    let want = "sluice_packets_dropped_total{reason=\"send_failed\"} 1";
    let deadline = Instant::now() + DEADLINE;
    let mut text = metrics.render(&Default::default());
    while !text.contains(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        text = metrics.render(&Default::default());
    }
    assert!(text.contains(want), "{text}");
    plane.shutdown();
}

fn dual_stack_socket_answers_ipv4_senders(io: IoMode) {
    let (plane, _metrics) = start(io, 1, "[::]:0");
    let c = client();
    let to = SocketAddr::from(([127, 0, 0, 1], plane.local_addr().port()));
    c.send_to(b"v4", to).unwrap();
    assert_eq!(replies(&c, 1), vec![b"\0v4".to_vec()]);
    plane.shutdown();
}

fn client_at(ip: &str) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
}

/// Sends `tag` from `c` to `to` until a reply comes back (bounded);
/// returns where the reply came from.
fn reply_source(c: &UdpSocket, to: SocketAddr, tag: &[u8]) -> SocketAddr {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        c.send_to(tag, to).unwrap();
        if let Ok((n, src)) = c.recv_from(&mut buf) {
            assert_eq!(&buf[1..n], tag);
            return src;
        }
    }
    panic!("no reply to {tag:?} sent to {to}");
}

/// A host with several addresses and the relay bound to all of them:
/// every reply leaves from the address its peer sent to, though the
/// kernel's own choice for these peers (all on 127.0.0.1) would be
/// 127.0.0.1 every time. Loopback holds all of 127/8, so 127.0.0.2 and
/// 127.0.0.3 are addresses of this host without any set-up.
fn replies_leave_from_the_address_the_peer_sent_to(io: IoMode) {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (plane, _metrics) = start(io, 2, listen);
        let port = plane.local_addr().port();
        for (i, local) in ["127.0.0.2", "127.0.0.3", "127.0.0.1"].iter().enumerate() {
            let to = SocketAddr::new(local.parse().unwrap(), port);
            let c = client_at("127.0.0.1");
            assert_eq!(reply_source(&c, to, &[i as u8; 3]), to, "on {listen}");
        }
        if listen.starts_with('[') {
            let to = SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), port);
            let c = client_at("::1");
            assert_eq!(reply_source(&c, to, b"v6"), to, "on {listen}");
        }
        plane.shutdown();
    }
}

/// IPv6 only: a relay on ::1 answers IPv6 peers.
fn an_ipv6_socket_answers_ipv6_senders(io: IoMode) {
    let (plane, _metrics) = start(io, 1, "[::1]:0");
    let c = client_at("::1");
    assert_eq!(
        reply_source(&c, plane.local_addr(), b"six"),
        plane.local_addr()
    );
    plane.shutdown();
}

fn pinned_workers_run(io: IoMode) {
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        io,
        ..options("127.0.0.1:0")
    };
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, move |index, _| Echo {
        index: index as u8,
        first_to: None,
    })
    .unwrap();
    assert_eq!(plane.workers(), worker::allowed_cores().len());
    let c = client();
    c.send_to(b"p", plane.local_addr()).unwrap();
    assert_eq!(replies(&c, 1).len(), 1);
    plane.shutdown();
}

/// Test-only fault injection: replies `[worker, seen]` (how many datagrams
/// this handler instance has seen, as a u32) to each datagram, and panics
/// on one that says `panic`, as a bug in the relay core would. No
/// production handler has such a switch: the fault lives in this test.
struct Fragile {
    index: u8,
    seen: u32,
}

impl PacketHandler for Fragile {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        assert_ne!(&packet[..len], b"panic", "injected fault");
        self.seen += 1;
        let slot = out.slot();
        slot[0] = self.index;
        slot[1..5].copy_from_slice(&self.seen.to_be_bytes());
        out.commit(5, from, MeetingMode::E2ee);
    }
}

/// (worker, seen) of one reply to `hello` from `c`.
fn ask(c: &UdpSocket, to: SocketAddr) -> (u8, u32) {
    c.send_to(b"hello", to).unwrap();
    let got = replies(c, 1);
    assert_eq!(got.len(), 1, "no reply within {DEADLINE:?}");
    let r = &got[0];
    (r[0], u32::from_be_bytes([r[1], r[2], r[3], r[4]]))
}

fn a_panicking_worker_restarts_fresh_and_the_other_never_notices(io: IoMode) {
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        workers: 2,
        io,
        pin_cores: false,
        ..options("127.0.0.1:0")
    };
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, |index, _| Fragile {
        index: index as u8,
        seen: 0,
    })
    .unwrap();
    let to = plane.local_addr();
    // Find a client socket on each worker (the kernel hashes 4-tuples).
    let mut on = [None, None];
    for _ in 0..64 {
        let c = client();
        let (worker, _) = ask(&c, to);
        let entry = &mut on[usize::from(worker)];
        if entry.is_none() {
            *entry = Some(c);
        }
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(victim), Some(bystander)] = on else {
        panic!("64 client sockets all hashed to one worker");
    };
    let (victim_worker, before) = ask(&victim, to);
    let (bystander_worker, theirs) = ask(&bystander, to);
    assert!(before >= 2 && theirs >= 2);

    victim.send_to(b"panic", to).unwrap();
    // What shares the panicking datagram's batch is dropped with it.
    std::thread::sleep(Duration::from_millis(100));
    // The panicked worker comes back with a fresh handler: its count
    // starts over. The other one's state is untouched.
    let (worker, seen) = ask(&victim, to);
    assert_eq!(
        (worker, seen),
        (victim_worker, 1),
        "restarted with fresh state"
    );
    let (worker, seen) = ask(&bystander, to);
    assert_eq!(
        (worker, seen),
        (bystander_worker, theirs + 1),
        "the other worker never noticed"
    );

    let text = metrics.render(&Default::default());
    for (w, restarts) in [(victim_worker, 1), (bystander_worker, 0)] {
        let line = format!("sluice_worker_restarts_total{{worker=\"{w}\"}} {restarts}");
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }
    // It survives being hit again, and again counts it.
    victim.send_to(b"panic", to).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ask(&victim, to), (victim_worker, 1));
    let text = metrics.render(&Default::default());
    let line = format!("sluice_worker_restarts_total{{worker=\"{victim_worker}\"}} 2");
    assert!(text.contains(&line), "{text}");
    plane.shutdown();
}

/// Busy share: an idle worker reads near 0; one kept busy by a handler
/// that spins reads near 1.
fn workers_publish_their_busy_share(io: IoMode) {
    struct Spin;
    impl PacketHandler for Spin {
        fn handle_datagram(
            &mut self,
            _snapshot: &RoutingSnapshot,
            _from: Path,
            _packet: &mut [u8],
            _len: usize,
            _out: &mut Transmits,
        ) {
            let until = Instant::now() + Duration::from_millis(5);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        workers: 1,
        io,
        pin_cores: false,
        ..options("127.0.0.1:0")
    };
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, |_, _| Spin).unwrap();
    std::thread::sleep(worker::BUSY_WINDOW * 3);
    assert!(
        metrics.busiest_worker() < 0.2,
        "{}",
        metrics.busiest_worker()
    );
    // 400 datagrams of 5 ms each keep it busy for 2 s.
    let c = client();
    for _ in 0..400 {
        c.send_to(b"x", plane.local_addr()).unwrap();
    }
    // Windows end with a loop turn (here 32 × 5 ms long): wait, bounded,
    // for one that lies wholly in the busy stretch. (The share is wall
    // time; on a box shared with other work the thread is also preempted
    // between turns, which counts as idle, hence the margin.)
    let deadline = Instant::now() + Duration::from_millis(1800);
    while metrics.busiest_worker() <= 0.9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = metrics.busiest_worker();
    assert!(busy > 0.6, "{busy}");
    let text = metrics.render(&Default::default());
    assert!(
        text.contains("sluice_worker_busy_ratio{worker=\"0\"} 0.")
            || text.contains("sluice_worker_busy_ratio{worker=\"0\"} 1"),
        "{text}"
    );
    plane.shutdown();
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod io_uring {
            $(#[test] fn $test() { super::$test(super::IoMode::IoUring) })*
        }
        mod recvmmsg {
            $(#[test] fn $test() { super::$test(super::IoMode::Mmsg) })*
        }
        mod io_uring_multishot {
            $(#[test] fn $test() {
                super::MULTISHOT.with(|m| m.set(true));
                super::$test(super::IoMode::IoUring)
            })*
        }
        mod io_uring_fixed_files {
            $(#[test] fn $test() {
                super::FIXED_FILES.with(|m| m.set(true));
                super::$test(super::IoMode::IoUring)
            })*
        }
    };
}

on_both_backends!(
    a_datagram_comes_back,
    five_hundred_datagrams_from_two_senders_all_arrive,
    datagrams_of_one_sender_come_back_in_order,
    every_worker_handles_some_four_tuples,
    one_ssrc_reaches_one_worker_from_every_port,
    shutdown_returns_promptly,
    metrics_count_sent_packets_and_latency,
    a_failed_send_is_a_drop_and_the_rest_still_go,
    dual_stack_socket_answers_ipv4_senders,
    replies_leave_from_the_address_the_peer_sent_to,
    an_ipv6_socket_answers_ipv6_senders,
    pinned_workers_run,
    a_panicking_worker_restarts_fresh_and_the_other_never_notices,
    workers_publish_their_busy_share,
);

#[test]
fn auto_picks_io_uring_here() {
    let (plane, _metrics) = start(IoMode::Auto, 1, "127.0.0.1:0");
    assert_eq!(plane.io_backend(), IoBackend::IoUring);
}

#[test]
fn without_io_uring_auto_falls_back_and_io_uring_refuses_to_start() {
    let unavailable = || Err::<Vec<()>, _>(IoUringUnavailable::DisabledBySysctl);
    assert!(matches!(
        fall_back_if_allowed(IoMode::Auto, unavailable()),
        Ok(rings) if rings.is_empty()
    ));
    let refused = fall_back_if_allowed(IoMode::IoUring, unavailable()).unwrap_err();
    assert!(matches!(refused, NetError::IoUringUnavailable(_)));
    assert!(
        refused.to_string().contains("kernel.io_uring_disabled = 2"),
        "{refused}"
    );
}

#[test]
fn io_modes_parse_from_their_config_names() {
    for mode in [IoMode::Auto, IoMode::IoUring, IoMode::Mmsg] {
        assert_eq!(mode.name().parse::<IoMode>(), Ok(mode));
    }
    assert!("epoll".parse::<IoMode>().is_err());
}

#[test]
fn a_zero_receive_batch_is_refused() {
    let opts = DataPlaneOptions {
        recv_batch: 0,
        ..options("127.0.0.1:0")
    };
    let metrics = MetricsHub::new("test");
    let started = DataPlane::start(&opts, empty_cell(), &metrics, move |index, _| Echo {
        index: index as u8,
        first_to: None,
    });
    assert!(matches!(started, Err(NetError::BadRecvBatch(0))));
}

//! The loopback ceiling of plain forwarding: relayed packets per second
//! for a 1 publisher → 10 subscribers fan-out of 1200-byte packets through
//! a [`DataPlane`] with ONE worker, for each I/O backend. The handler
//! copies each datagram to the 10 subscribers with no crypto, so this is
//! the ceiling of the I/O path alone (io_uring, or plain
//! `recvmmsg`/`sendmmsg`). The second case is sluice itself: the same
//! fan-out through `RelayWorker` with AEAD_AES_256_GCM on every leg, so the
//! table reads as "SRTP relay / loopback ceiling" per backend.
//!
//! A generator thread sends to the data plane in bursts (paced with
//! `--pps N`, unpaced by default); one drain thread counts what reaches the
//! 10 sink sockets, polling without sleeping. Generator and sinks are kept
//! off the worker's core.
//!
//! Run: `cargo bench --bench relay_ceiling -- --seconds 5 [--pps N] [--gso off]
//! [--multishot on] [--fixed-files on] [--recv-batch N]`.
//! Besides rates, each row gives the worker thread's CPU time per
//! delivered datagram (from `/proc/self/task/*/schedstat`), the figure that
//! contention on a shared box disturbs least.
//! Under `cargo test --benches` (no `--bench` argument) it runs a 0.3 s
//! smoke load and fails if nothing was relayed.

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use sluice::crypto::AnyGcm;
use sluice::metrics::{MetricsHub, WorkerCounters};
use sluice::net::{DataPlane, DataPlaneOptions, IoMode, PacketHandler};
use sluice::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, Path, RelayWorker, RoutingSnapshot,
    SnapshotCell, StreamRoute, Transmits, empty_cell,
};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

const SUBSCRIBERS: usize = 10;
const PACKET: usize = 1200;
const BURST: u64 = 32;
const BUFFER: usize = 8 << 20;
/// The SSRC of the generator's RTP stream.
const PUBLISHER_SSRC: u32 = 0x5eed_0001;

/// The plain forwarding handler: every datagram to every subscriber.
struct Fanout {
    subscribers: Vec<SocketAddr>,
    counters: Arc<WorkerCounters>,
}

impl PacketHandler for Fanout {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        _from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        self.counters.received(MeetingMode::E2ee, len);
        for &dest in &self.subscribers {
            let slot = out.slot();
            slot[..len].copy_from_slice(&packet[..len]);
            out.commit(len, dest, MeetingMode::E2ee);
        }
    }
}

/// Rewrites a plain packet before it is sent (`(buffer, len) -> new len`),
/// e.g. SRTP-protects it.
type Transform = Box<dyn FnMut(&mut [u8], usize) -> usize + Send>;

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
struct Load {
    seconds: f64,
    /// Offered packets per second; `None`: as fast as the generator can.
    pps: Option<u64>,
    /// UDP GSO on the data plane's sends (`--gso off` turns it off).
    gso: bool,
    /// io_uring multishot receive (`--multishot on`).
    multishot: bool,
    /// io_uring requests name the socket as a registered file
    /// (`--fixed-files on`).
    fixed_files: bool,
    /// Datagrams received per loop turn (`--recv-batch N`, default 32).
    recv_batch: usize,
}

/// One table row.
#[derive(Debug)]
struct Row {
    case: String,
    backend: &'static str,
    offered: f64,
    handled: f64,
    delivered: f64,
    loss: f64,
    batch_latency_us: f64,
    /// The worker thread's CPU time per delivered datagram.
    cpu_us_per_packet: f64,
}

/// The subscribers: sockets that only count.
struct Sinks {
    sockets: Vec<UdpSocket>,
}

impl Sinks {
    fn bind() -> Self {
        let sockets = (0..SUBSCRIBERS)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                    .expect("udp socket");
                let _ = s.set_recv_buffer_size(BUFFER);
                s.set_nonblocking(true).expect("nonblocking");
                s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
                    .expect("bind a sink");
                s.into()
            })
            .collect();
        Self { sockets }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .map(|s| s.local_addr().expect("bound"))
            .collect()
    }

    /// Drains every sink until `stop`, adding datagrams to `count`.
    fn drain(self, stop: &AtomicBool, count: &AtomicU64) {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(32, None);
        let mut bufs = vec![[0u8; 2048]; 32];
        while !stop.load(Ordering::Relaxed) {
            let mut got = 0;
            for s in &self.sockets {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                    bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                if let Ok(r) = recvmmsg(
                    s.as_raw_fd(),
                    &mut headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    got += r.count() as u64;
                }
            }
            count.fetch_add(got, Ordering::Relaxed);
            if got == 0 {
                // Spin rather than sleep: a sleeping sink would make every
                // send of the worker pay for a cross-core wake-up, which
                // remote subscribers never cost it.
                std::thread::yield_now();
            }
        }
    }
}

/// Sends `load` to `to` from one socket; returns how many it sent.
fn generate(to: SocketAddr, load: Load, mut transform: Option<Transform>) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the generator");
    socket.connect(to).expect("connect the generator");
    let mut buf = [0u8; 2048];
    buf[0] = 0x80; // RTP version 2
    buf[1] = 96;
    buf[8..12].copy_from_slice(&PUBLISHER_SSRC.to_be_bytes());
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed().as_secs_f64() < load.seconds {
        for _ in 0..BURST {
            buf[2..4].copy_from_slice(&(sent as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&((sent * 960) as u32).to_be_bytes());
            let len = match transform.as_mut() {
                Some(t) => t(&mut buf, PACKET),
                None => PACKET,
            };
            if socket.send(&buf[..len]).is_ok() {
                sent += 1;
            }
        }
        if let Some(pps) = load.pps {
            let due = Duration::from_secs_f64(sent as f64 / pps as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    sent
}

/// A counter's value in the Prometheus text (0 if absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Runs one case: a one-worker data plane on `io` with the handler
/// `make_handler` builds, fed by the generator (through `transform`, if
/// any), drained by `sinks`.
fn run_case<H: PacketHandler>(
    case: &str,
    io: IoMode,
    load: Load,
    sinks: Sinks,
    cell: SnapshotCell,
    make_handler: impl Fn(usize, Arc<WorkerCounters>) -> H + Send + Sync + 'static,
    transform: Option<Transform>,
) -> Row {
    let metrics = MetricsHub::new("none");
    let opts = DataPlaneOptions {
        workers: 1,
        io,
        socket_buffer_bytes: BUFFER,
        gso: load.gso,
        multishot: load.multishot,
        fixed_files: load.fixed_files,
        recv_batch: load.recv_batch,
        ..DataPlaneOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let plane = DataPlane::start(&opts, cell, &metrics, make_handler).expect("start");
    let cpu_before = worker_cpu_ns();
    let to = plane.local_addr();
    let backend = plane.io_backend().name();
    let stop = AtomicBool::new(false);
    let delivered = AtomicU64::new(0);
    let offered = std::thread::scope(|scope| {
        scope.spawn(|| {
            keep_off_first_core();
            sinks.drain(&stop, &delivered);
        });
        let offered = scope
            .spawn(move || {
                keep_off_first_core();
                generate(to, load, transform)
            })
            .join()
            .expect("generator");
        // Let in-flight datagrams land before counting.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        offered
    });
    let text = metrics.render(&Default::default());
    let cpu_ns = worker_cpu_ns().saturating_sub(cpu_before);
    plane.shutdown();
    let handled = metric(&text, "sluice_packets_in_total{mode=\"e2ee\"}");
    let latency_sum = metric(&text, "sluice_relay_latency_seconds_sum");
    let latency_count = metric(&text, "sluice_relay_latency_seconds_count");
    let delivered = delivered.load(Ordering::Relaxed) as f64;
    let expected = offered as f64 * SUBSCRIBERS as f64;
    Row {
        case: case.to_owned(),
        backend,
        offered: offered as f64 / load.seconds,
        handled: handled / load.seconds,
        delivered: delivered / load.seconds,
        loss: if expected > 0.0 {
            1.0 - delivered / expected
        } else {
            0.0
        },
        batch_latency_us: latency_sum / latency_count.max(1.0) * 1e6,
        cpu_us_per_packet: cpu_ns as f64 / 1e3 / delivered.max(1.0),
    }
}

/// CPU time the data plane's worker threads (`sluice-net-*`) have run, in
/// ns (`/proc/self/task/*/schedstat`, the scheduler's own accounting; 0
/// where it is missing).
fn worker_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("sluice-net"))
        })
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Moves the calling thread to every allowed core but the first, where the
/// data plane pins its worker (if there is more than one).
fn keep_off_first_core() {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else {
        return;
    };
    let cores: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    if cores.len() < 2 {
        return;
    }
    let mut rest = CpuSet::new();
    for &c in &cores[1..] {
        let _ = rest.set(c);
    }
    let _ = sched_setaffinity(Pid::from_raw(0), &rest);
}

fn plain_fanout(io: IoMode, load: Load) -> Row {
    let sinks = Sinks::bind();
    let subscribers = sinks.addrs();
    run_case(
        "plain fan-out 1→10",
        io,
        load,
        sinks,
        empty_cell(),
        move |_, counters| Fanout {
            subscribers: subscribers.clone(),
            counters,
        },
        None,
    )
}

/// The SRTP relay itself: the same fan-out through `RelayWorker`, with
/// AEAD_AES_256_GCM on every leg (the publisher's packets authenticated
/// and decrypted, each subscriber's copy re-protected with its own key),
/// routed by a snapshot of one E2EE meeting with 11 legs.
fn srtp_fanout(io: IoMode, load: Load) -> Row {
    let sinks = Sinks::bind();
    let profile = SrtpProfile::AeadAes256Gcm;
    let key = |seed: u8| {
        let material: Vec<u8> = (0..profile.key_material_len())
            .map(|i| (i as u8) ^ seed)
            .collect();
        MasterKey::new(profile, &material).expect("material of the profile's length")
    };
    let leg = |id: u64, latch: Option<SocketAddr>| {
        let route = LegRoute {
            id: LegId(id),
            meeting: MeetingIdx(1),
            mode: MeetingMode::E2ee,
            client_to_relay: key(id as u8),
            relay_to_client: key(0x80 | id as u8),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        };
        if let Some(addr) = latch {
            route.latch.set(addr);
        }
        (LegId(id), Arc::new(route))
    };
    let mut snapshot = RoutingSnapshot {
        generation: 1,
        ..RoutingSnapshot::default()
    };
    snapshot.legs.extend(std::iter::once(leg(0, None)));
    snapshot.legs.extend(
        sinks
            .addrs()
            .into_iter()
            .enumerate()
            .map(|(i, addr)| leg(i as u64 + 1, Some(addr))),
    );
    let mut members: Vec<LegId> = snapshot.legs.keys().copied().collect();
    members.sort();
    snapshot.meetings.insert(MeetingIdx(1), Arc::new(members));
    snapshot.streams.insert(
        PUBLISHER_SSRC,
        Arc::new(StreamRoute {
            ssrc: PUBLISHER_SSRC,
            leg: LegId(0),
            kind: MediaKind::Video,
            payload_type: 96,
            highest_index: Arc::new(AtomicU64::new(0)),
        }),
    );
    let cell = empty_cell();
    cell.store(Arc::new(snapshot));
    let mut publisher = SrtpSession::new(AnyGcm::default(), &key(0)).expect("publisher session");
    let transform: Transform =
        Box::new(move |buf, len| publisher.protect_rtp(buf, len).expect("protect"));
    run_case(
        "SRTP relay 1→10 (AEAD_AES_256_GCM)",
        io,
        load,
        sinks,
        cell,
        |_, counters| RelayWorker::new(AnyGcm::default(), counters),
        Some(transform),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let load = Load {
        seconds: if full {
            value("--seconds").unwrap_or(5.0)
        } else {
            0.3
        },
        pps: value("--pps").filter(|p| *p > 0.0).map(|p| p as u64),
        gso: !args.windows(2).any(|w| w[0] == "--gso" && w[1] == "off"),
        multishot: args
            .windows(2)
            .any(|w| w[0] == "--multishot" && w[1] == "on"),
        fixed_files: args
            .windows(2)
            .any(|w| w[0] == "--fixed-files" && w[1] == "on"),
        recv_batch: value("--recv-batch").map_or(32, |n| n as usize),
    };
    // Each case runs once per backend; a case is a function building its
    // sinks, snapshot, handler and generator transform around `run_case`.
    let cases: [fn(IoMode, Load) -> Row; 2] = [plain_fanout, srtp_fanout];
    let rows: Vec<Row> = cases
        .iter()
        .flat_map(|case| [IoMode::IoUring, IoMode::Mmsg].map(|io| case(io, load)))
        .collect();

    println!(
        "{} s per row, {}-byte packets, 1 worker, {} cores, offered {}, GSO {}, multishot {}, fixed files {}, receive batch {}\n",
        load.seconds,
        PACKET,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.pps
            .map_or("unpaced".to_owned(), |p| format!("{p} pps")),
        if load.gso { "on" } else { "off" },
        if load.multishot { "on" } else { "off" },
        if load.fixed_files { "on" } else { "off" },
        load.recv_batch,
    );
    println!(
        "| case | I/O | offered pps | input handled pps | output delivered pps | loss | mean batch latency | worker CPU per delivered packet |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} % | {:.1} µs | {:.3} µs |",
            r.case,
            r.backend,
            r.offered,
            r.handled,
            r.delivered,
            r.loss * 100.0,
            r.batch_latency_us,
            r.cpu_us_per_packet
        );
    }
    if !full && rows.iter().any(|r| r.delivered == 0.0) {
        eprintln!("smoke run: a case relayed nothing");
        std::process::exit(1);
    }
}

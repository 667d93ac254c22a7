//! Items 7 and 3 of #12 together: a packet worker that panics after its
//! publisher's sequence number wrapped (rollover counter 1) is made again
//! by the supervisor, and the stream goes on through it: the receiver
//! decrypts every packet it gets with its own SRTP session, the indices
//! strictly increasing, none used twice, before the panic or after. On
//! both I/O backends, over loopback.
//!
//! The fault is injected by this test's own handler around the relay
//! core (a datagram saying `panic`); production handlers have no such
//! switch. The handler factory hands each worker its journal from an
//! [`IndexJournals`] it keeps, as the daemon's does.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use sluice::crypto::AnyGcm;
use sluice::metrics::{MetricsHub, WorkerCounters};
use sluice::net::{DataPlane, DataPlaneOptions, IoMode, PacketHandler};
use sluice::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, Path, RelayWorker, RoutingSnapshot,
    StreamRoute, Transmits, empty_cell,
};
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{IndexJournals, MasterKey, RESERVE_AHEAD, SrtpProfile, SrtpSession};

const SSRC: u32 = 0x0bad_5eed;
const PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;
/// Packets before the panic, from a sequence number 40 short of the wrap.
const BEFORE: u16 = 100;
const AFTER: u16 = 200;
const FIRST_SEQ: u16 = 0xffd8;

fn key(seed: u8) -> MasterKey {
    let material: Vec<u8> = (0..PROFILE.key_material_len())
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect();
    MasterKey::new(PROFILE, &material).expect("material of the profile's length")
}

/// The relay core, and a test-only fault: a datagram saying `panic`
/// panics, as a bug in the core would.
struct Fragile(RelayWorker<AnyGcm>);

impl PacketHandler for Fragile {
    fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        assert_ne!(&packet[..len], b"panic", "injected fault");
        self.0.handle_datagram(snapshot, from, packet, len, out);
    }
}

/// A two-leg meeting: leg 0 publishes `SSRC`, leg 1 (latched at
/// `receiver`) receives it.
fn snapshot(receiver: SocketAddr) -> RoutingSnapshot {
    let leg = |id: u64| {
        Arc::new(LegRoute {
            id: LegId(id),
            meeting: MeetingIdx(1),
            mode: MeetingMode::E2ee,
            client_to_relay: key(id as u8),
            relay_to_client: key(0x80 | id as u8),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        })
    };
    let mut snapshot = RoutingSnapshot {
        generation: 1,
        ..RoutingSnapshot::default()
    };
    let (publisher, subscriber) = (leg(0), leg(1));
    subscriber.latch.set(receiver);
    snapshot.insert_leg(publisher);
    snapshot.insert_leg(subscriber);
    snapshot
        .meetings
        .insert(MeetingIdx(1), Arc::new(vec![LegId(0), LegId(1)]));
    snapshot.streams.insert(
        SSRC,
        Arc::new(StreamRoute {
            ssrc: SSRC,
            leg: LegId(0),
            kind: MediaKind::Video,
            payload_type: 96,
            highest_index: Arc::new(AtomicU64::new(0)),
        }),
    );
    snapshot
}

/// Sends `count` packets of the stream from `seq` on, paced, and returns
/// the next sequence number.
fn publish(
    publisher: &mut SrtpSession<AnyGcm>,
    socket: &UdpSocket,
    to: SocketAddr,
    seq: u16,
    count: u16,
) -> u16 {
    let mut seq = seq;
    for _ in 0..count {
        let payload = [seq as u8; 600];
        let mut buf = vec![0u8; 700];
        let len = RtpBuilder::new(
            PayloadType::new(96).expect("a dynamic type"),
            SeqNum(seq),
            u32::from(seq) * 3000,
            Ssrc(SSRC),
        )
        .write(&payload, &mut buf)
        .expect("room");
        let n = publisher.protect_rtp(&mut buf, len).expect("protect");
        socket.send_to(&buf[..n], to).expect("send");
        seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(1));
    }
    seq
}

/// Reads what reaches the receiver until it is quiet for 500 ms: the
/// SRTP index of each packet, every one of which must decrypt.
fn receive(socket: &UdpSocket, session: &mut SrtpSession<AnyGcm>, indices: &mut Vec<u64>) {
    let mut buf = [0u8; 2048];
    let mut quiet = Instant::now();
    let end = Instant::now() + Duration::from_secs(20);
    while quiet.elapsed() < Duration::from_millis(500) && Instant::now() < end {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        quiet = Instant::now();
        let (_, index) = session
            .unprotect_rtp_indexed(&mut buf, n)
            .expect("every packet the relay sends decrypts");
        indices.push(index);
    }
}

fn restarts(metrics: &MetricsHub) -> bool {
    metrics
        .render(&Default::default())
        .contains("sluice_worker_restarts_total{worker=\"0\"} 1")
}

fn a_wrapped_stream_goes_on_through_a_restart(io: IoMode) {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // Room for a whole phase, read after it.
    socket2::SockRef::from(&receiver)
        .set_recv_buffer_size(4 << 20)
        .expect("rcvbuf");
    let cell = empty_cell();
    cell.store(Arc::new(snapshot(receiver.local_addr().expect("addr"))));
    let metrics = MetricsHub::new("test");
    let opts = DataPlaneOptions {
        workers: 1,
        io,
        pin_cores: false,
        ..DataPlaneOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let journals = IndexJournals::default();
    let plane = DataPlane::start(
        &opts,
        cell,
        &metrics,
        move |index, counters: Arc<WorkerCounters>| {
            Fragile(
                RelayWorker::new(AnyGcm::default(), counters)
                    .with_journal(journals.for_worker(index)),
            )
        },
    )
    .expect("start");
    let to = plane.local_addr();
    let publisher_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut publisher = SrtpSession::new(AnyGcm::default(), &key(0)).expect("session");
    let mut session = SrtpSession::new(AnyGcm::default(), &key(0x80 | 1)).expect("session");

    let mut indices = Vec::new();
    let seq = publish(&mut publisher, &publisher_socket, to, FIRST_SEQ, BEFORE);
    receive(&receiver, &mut session, &mut indices);
    let before = indices.len();
    assert_eq!(before, usize::from(BEFORE), "{io:?}: all before the panic");
    assert_eq!(indices.last().map(|i| i >> 16), Some(1), "wrapped");

    publisher_socket.send_to(b"panic", to).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !restarts(&metrics) {
        assert!(Instant::now() < deadline, "{io:?}: no restart counted");
        std::thread::sleep(Duration::from_millis(20));
    }

    publish(&mut publisher, &publisher_socket, to, seq, AFTER);
    receive(&receiver, &mut session, &mut indices);
    let text = metrics.render(&Default::default());
    plane.shutdown();
    let counters: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("sluice_packets_") && !l.ends_with(" 0"))
        .collect();
    let after = indices.len() - before;
    let summary = format!(
        "{io:?}: {before} before the panic, {after} of {AFTER} after, indices {:#x}..={:#x}, counters {counters:?}",
        indices.get(before).copied().unwrap_or_default(),
        indices.last().copied().unwrap_or_default()
    );
    eprintln!("restart_after_wrap: {summary}");
    // The stream went on, at ROC 1, losing at most the reservation.
    assert!(
        after >= usize::from(AFTER) - RESERVE_AHEAD as usize,
        "{summary}"
    );
    assert_eq!(indices.last().map(|i| i >> 16), Some(1), "{summary}");
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]),
        "indices not strictly increasing: {summary}"
    );
    let distinct: BTreeSet<u64> = indices.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        indices.len(),
        "an index used twice: {summary}"
    );
}

#[test]
fn a_wrapped_stream_goes_on_through_a_restart_io_uring() {
    a_wrapped_stream_goes_on_through_a_restart(IoMode::IoUring);
}

#[test]
fn a_wrapped_stream_goes_on_through_a_restart_recvmmsg() {
    a_wrapped_stream_goes_on_through_a_restart(IoMode::Mmsg);
}

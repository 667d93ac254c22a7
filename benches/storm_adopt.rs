//! What a join storm costs a packet worker per snapshot generation (#12
//! item 2): the time [`RelayWorker::handle_datagram`] takes for one
//! packet of an existing stream (a 1 → 1 meeting of its own, AES-256-GCM)
//! on a node of 10,000 storm legs in 100 meetings,
//! - `steady`: the snapshot is the one the worker already adopted;
//! - `after_1_change` / `after_100_changes`: a new generation with 1 or
//!   100 legs admitted into the storm's meetings since the last packet
//!   (what a storm publishes between two packets of a stream), which the
//!   packet's handling adopts first; as many of the oldest storm legs
//!   leave, so the node stays at 10,000 legs however long it runs (and
//!   the worker's sweep of departed legs is in the figure too).
//!
//! The difference is what the snapshot change adds to that packet's
//! latency inside the relay, with no scheduler and no sockets in it.
//!
//! Run: `cargo bench --bench storm_adopt` (full), `cargo test --benches`
//! (smoke). On a loaded box criterion's means (of samples of many
//! iterations) hold every preemption that hit a sample; `--quantiles`
//! instead times each packet on its own, 20,000 per case, and prints the
//! 10th, 50th and 99th percentile, which preemptions rarely reach.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use sluice::crypto::AnyGcm;
use sluice::metrics::WorkerCounters;
use sluice::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RelayWorker, RoutingSnapshot,
    StreamRoute, Transmits,
};
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

const STORM: u64 = 10_000;
const MEETINGS: u64 = 100;
/// The existing stream's meeting and legs (publisher, receiver); the
/// storm's legs are numbered from [`FIRST_STORM_LEG`] up, as the control
/// plane numbers admissions.
const EXISTING: MeetingIdx = MeetingIdx(1_000);
const PUBLISHER: u64 = 0;
const RECEIVER: u64 = 1;
const FIRST_STORM_LEG: u64 = 2;
const SSRC: u32 = 0x0e00_0000;

fn key(leg: u64, direction: u8) -> MasterKey {
    let material: Vec<u8> = (0..44u8)
        .map(|i| (leg as u8).wrapping_mul(31) ^ direction.wrapping_mul(101) ^ i)
        .collect();
    MasterKey::new(SrtpProfile::AeadAes256Gcm, &material).expect("valid key")
}

fn addr(leg: u64) -> SocketAddr {
    SocketAddr::from(([10, (leg >> 16) as u8, (leg >> 8) as u8, leg as u8], 40_000))
}

fn route(leg: u64, meeting: MeetingIdx) -> Arc<LegRoute> {
    Arc::new(LegRoute {
        id: LegId(leg),
        meeting,
        mode: MeetingMode::E2ee,
        client_to_relay: key(leg, 0),
        relay_to_client: key(leg, 1),
        latch: Arc::new(Latch::default()),
        next_srtcp_index: Arc::new(AtomicU32::new(0)),
        highest_srtcp_index: Arc::new(AtomicU64::new(0)),
    })
}

/// Admits storm leg `leg` (receive-only, not yet latched) as the control
/// plane does: the leg, and a new member list for its meeting.
fn join(snapshot: &mut RoutingSnapshot, leg: u64) {
    let meeting = MeetingIdx(leg % MEETINGS);
    snapshot.insert_leg(route(leg, meeting));
    let mut members = snapshot
        .meetings
        .get(&meeting)
        .map(|m| m.to_vec())
        .unwrap_or_default();
    members.push(LegId(leg));
    snapshot.meetings.insert(meeting, Arc::new(members));
}

/// Removes storm leg `leg` and its membership.
fn leave(snapshot: &mut RoutingSnapshot, leg: u64) {
    let meeting = MeetingIdx(leg % MEETINGS);
    snapshot.legs.remove(&LegId(leg));
    if let Some(members) = snapshot.meetings.get(&meeting) {
        let kept: Vec<LegId> = members
            .iter()
            .copied()
            .filter(|l| *l != LegId(leg))
            .collect();
        snapshot.meetings.insert(meeting, Arc::new(kept));
    }
}

fn node() -> RoutingSnapshot {
    let mut snapshot = RoutingSnapshot::default();
    for (leg, _) in [(PUBLISHER, 0), (RECEIVER, 1)] {
        let r = route(leg, EXISTING);
        r.latch.set(addr(leg));
        snapshot.insert_leg(r);
    }
    snapshot
        .meetings
        .insert(EXISTING, Arc::new(vec![LegId(PUBLISHER), LegId(RECEIVER)]));
    snapshot.streams.insert(
        SSRC,
        Arc::new(StreamRoute {
            ssrc: SSRC,
            leg: LegId(PUBLISHER),
            kind: MediaKind::Audio,
            payload_type: 111,
            highest_index: Arc::new(AtomicU64::new(0)),
        }),
    );
    for leg in FIRST_STORM_LEG..FIRST_STORM_LEG + STORM {
        join(&mut snapshot, leg);
    }
    snapshot.generation = 1;
    snapshot
}

fn next_packet(publisher: &mut SrtpSession<AnyGcm>, seq: &mut u16) -> (Vec<u8>, usize) {
    *seq = seq.wrapping_add(1);
    let mut buf = vec![0u8; 2048];
    let len = RtpBuilder::new(
        PayloadType::new(111).expect("7 bits"),
        SeqNum(*seq),
        u32::from(*seq) * 960,
        Ssrc(SSRC),
    )
    .write(&[0x5a; 160], &mut buf)
    .expect("fits");
    let len = publisher.protect_rtp(&mut buf, len).expect("fresh index");
    (buf, len)
}

fn storm_adopt(c: &mut Criterion) {
    let mut group = c.benchmark_group("storm_adopt/10000-legs");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for joins in [0u64, 1, 100] {
        let mut snapshot = node();
        let counters = Arc::new(WorkerCounters::default());
        let mut worker = RelayWorker::new(AnyGcm::default(), counters);
        let mut publisher = SrtpSession::new(AnyGcm::default(), &key(PUBLISHER, 0)).expect("key");
        let mut out = Transmits::with_capacity(4);
        let mut seq = 0u16;
        let (mut buf, len) = next_packet(&mut publisher, &mut seq);
        worker.handle_datagram(&snapshot, addr(PUBLISHER), &mut buf, len, &mut out);
        assert_eq!(out.len(), 1, "the receiver is sent to");
        let mut next_leg = FIRST_STORM_LEG + STORM;
        let name = match joins {
            0 => "steady".to_owned(),
            1 => "after_1_change".to_owned(),
            n => format!("after_{n}_changes"),
        };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..joins {
                        join(&mut snapshot, next_leg);
                        leave(&mut snapshot, next_leg - STORM);
                        next_leg += 1;
                    }
                    if joins > 0 {
                        snapshot.generation += 1;
                    }
                    let published = snapshot.clone();
                    let (mut buf, len) = next_packet(&mut publisher, &mut seq);
                    out.clear();
                    let started = Instant::now();
                    worker.handle_datagram(&published, addr(PUBLISHER), &mut buf, len, &mut out);
                    spent += started.elapsed();
                    black_box(out.len());
                }
                spent
            });
        });
        assert_eq!(out.len(), 1, "the receiver is still sent to");
    }
    group.finish();
}

/// The `--quantiles` form (module doc).
fn quantiles() {
    for joins in [0u64, 1, 100] {
        let mut snapshot = node();
        let mut worker = RelayWorker::new(AnyGcm::default(), Arc::new(WorkerCounters::default()));
        let mut publisher = SrtpSession::new(AnyGcm::default(), &key(PUBLISHER, 0)).expect("key");
        let mut out = Transmits::with_capacity(4);
        let mut seq = 0u16;
        let mut next_leg = FIRST_STORM_LEG + STORM;
        let mut times = Vec::with_capacity(20_000);
        for i in 0..21_000 {
            for _ in 0..joins {
                join(&mut snapshot, next_leg);
                leave(&mut snapshot, next_leg - STORM);
                next_leg += 1;
            }
            if joins > 0 {
                snapshot.generation += 1;
            }
            let published = snapshot.clone();
            let (mut buf, len) = next_packet(&mut publisher, &mut seq);
            out.clear();
            let started = Instant::now();
            worker.handle_datagram(&published, addr(PUBLISHER), &mut buf, len, &mut out);
            let took = started.elapsed();
            assert_eq!(out.len(), 1, "the receiver is sent to");
            // The first 1,000 warm up.
            if i >= 1_000 {
                times.push(took);
            }
        }
        times.sort_unstable();
        let at = |q: usize| times[times.len() * q / 100];
        println!(
            "storm_adopt/10000-legs/{joins} changes per packet: p10 {:?}, p50 {:?}, p99 {:?}",
            at(10),
            at(50),
            at(99)
        );
    }
}

criterion_group!(benches, storm_adopt);

fn main() {
    if std::env::args().any(|a| a == "--quantiles") {
        quantiles();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

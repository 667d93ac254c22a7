//! What an E2EE meeting costs the relay per packet, next to a standard
//! one: the same publisher → 10 subscribers fan-out through
//! [`RelayWorker::handle_datagram`] (hop unprotect, header rewrite, hop
//! protect for every subscriber, AEAD_AES_256_GCM), once with the legs in
//! an E2EE meeting and once in a standard meeting, audio (160-byte) and
//! video (1200-byte) payloads, in one run. The payload of an E2EE meeting
//! is SFrame ciphertext the relay forwards byte for byte; that of a
//! standard meeting is plain media it forwards the same way unless a
//! receiver needs a rendition (none here). The two must cost the same.
//!
//! Run: `cargo bench --bench e2ee_cost` (full), `cargo test --benches` (smoke).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::crypto::AnyGcm;
use sluice::metrics::WorkerCounters;
use sluice::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RelayWorker, RoutingSnapshot,
    StreamRoute, Transmits,
};
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

const SUBSCRIBERS: u64 = 10;
const SSRC: u32 = 0x5eed_0002;
const MEETING: MeetingIdx = MeetingIdx(7);
const PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;

fn key(leg: u64, direction: u8) -> MasterKey {
    let material: Vec<u8> = (0..PROFILE.key_material_len() as u8)
        .map(|i| (leg as u8).wrapping_mul(31) ^ direction.wrapping_mul(89) ^ i)
        .collect();
    MasterKey::new(PROFILE, &material).expect("valid material")
}

fn addr(leg: u64) -> SocketAddr {
    SocketAddr::from(([10, 1, (leg >> 8) as u8, leg as u8], 50_000))
}

/// Leg 0 publishes; legs 1..=SUBSCRIBERS receive; all latched; `mode`.
fn snapshot(mode: MeetingMode) -> RoutingSnapshot {
    let mut snapshot = RoutingSnapshot {
        generation: 1,
        ..RoutingSnapshot::default()
    };
    for leg in 0..=SUBSCRIBERS {
        let route = LegRoute {
            id: LegId(leg),
            meeting: MEETING,
            mode,
            client_to_relay: key(leg, 0),
            relay_to_client: key(leg, 1),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        };
        route.latch.set(addr(leg));
        snapshot.insert_leg(Arc::new(route));
        Arc::make_mut(snapshot.meetings.entry(MEETING).or_default()).push(LegId(leg));
    }
    let stream = StreamRoute {
        ssrc: SSRC,
        leg: LegId(0),
        kind: MediaKind::Video,
        payload_type: 96,
        highest_index: Arc::new(AtomicU64::new(0)),
    };
    snapshot.streams.insert(SSRC, Arc::new(stream));
    snapshot
}

fn next_packet(
    publisher: &mut SrtpSession<AnyGcm>,
    seq: &mut u16,
    payload: &[u8],
) -> (Vec<u8>, usize) {
    *seq = seq.wrapping_add(1);
    let mut buf = vec![0u8; 2048];
    let len = RtpBuilder::new(
        PayloadType::new(96).expect("7 bits"),
        SeqNum(*seq),
        u32::from(*seq) * 3000,
        Ssrc(SSRC),
    )
    .write(payload, &mut buf)
    .expect("fits");
    let len = publisher.protect_rtp(&mut buf, len).expect("fresh index");
    (buf, len)
}

fn e2ee_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("e2ee_cost/1-to-{SUBSCRIBERS}"));
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(SUBSCRIBERS));
    for size in [160usize, 1200] {
        for (name, mode) in [
            ("e2ee", MeetingMode::E2ee),
            ("standard", MeetingMode::Standard),
        ] {
            let snapshot = snapshot(mode);
            let counters = Arc::new(WorkerCounters::default());
            let mut worker = RelayWorker::new(AnyGcm::default(), counters);
            let mut publisher = SrtpSession::new(AnyGcm::default(), &key(0, 0)).expect("session");
            let mut out = Transmits::with_capacity(SUBSCRIBERS as usize);
            // SFrame ciphertext looks random; plain media does not. The
            // relay must not care either way.
            let payload: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(151)).collect();
            let mut seq = 0u16;
            let (mut buf, len) = next_packet(&mut publisher, &mut seq, &payload);
            worker.handle_datagram(&snapshot, addr(0), &mut buf, len, &mut out);
            assert_eq!(out.len() as u64, SUBSCRIBERS, "every subscriber is sent to");
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_batched_ref(
                    || next_packet(&mut publisher, &mut seq, &payload),
                    |(buf, len)| {
                        out.clear();
                        worker.handle_datagram(&snapshot, addr(0), buf, *len, &mut out);
                        black_box(out.len())
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, e2ee_cost);
criterion_main!(benches);

//! What the persistent routing snapshot (#12 item 2) costs and saves,
//! measured against the `std::collections::HashMap` snapshot it replaced,
//! at node sizes of 1,000 and 10,000 legs:
//! - `lookup`: the packet path's two lookups per received packet (stream
//!   by SSRC, then its leg by id), std vs `im` maps: the hot-path cost;
//! - `join`: publishing one more leg, as a full rebuild of the std maps
//!   (what every mutation did) vs an insert into the working copy plus
//!   the O(1) clone that is published.
//!
//! Run: `cargo bench --bench snapshot` (full), `cargo test --benches` (smoke).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::relay::{
    IdHash, Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RoutingSnapshot,
    StreamRoute,
};
use sluice::srtp::{MasterKey, SrtpProfile};

const SIZES: [u64; 2] = [1_000, 10_000];

fn leg(id: u64, key: &MasterKey) -> Arc<LegRoute> {
    Arc::new(LegRoute {
        id: LegId(id),
        meeting: MeetingIdx(id / 100),
        mode: MeetingMode::E2ee,
        client_to_relay: key.clone(),
        relay_to_client: key.clone(),
        latch: Arc::new(Latch::default()),
        next_srtcp_index: Arc::new(AtomicU32::new(0)),
        highest_srtcp_index: Arc::new(AtomicU64::new(0)),
    })
}

fn stream(id: u64) -> Arc<StreamRoute> {
    Arc::new(StreamRoute {
        ssrc: ssrc(id),
        leg: LegId(id),
        kind: MediaKind::Video,
        payload_type: 96,
        highest_index: Arc::new(AtomicU64::new(0)),
    })
}

fn ssrc(id: u64) -> u32 {
    (id as u32).wrapping_mul(0x9E37_79B1) | 1
}

/// The old snapshot's maps.
struct StdMaps {
    legs: HashMap<LegId, Arc<LegRoute>, IdHash>,
    streams: HashMap<u32, Arc<StreamRoute>>,
}

fn snapshot(c: &mut Criterion) {
    let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[7; 44]).expect("valid key");
    for n in SIZES {
        let legs: Vec<_> = (0..n).map(|i| leg(i, &key)).collect();
        let streams: Vec<_> = (0..n).map(stream).collect();
        let std_maps = StdMaps {
            legs: legs.iter().map(|l| (l.id, Arc::clone(l))).collect(),
            streams: streams.iter().map(|s| (s.ssrc, Arc::clone(s))).collect(),
        };
        let mut im_maps = RoutingSnapshot::default();
        for l in &legs {
            im_maps.insert_leg(Arc::clone(l));
        }
        for s in &streams {
            im_maps.streams.insert(s.ssrc, Arc::clone(s));
        }
        // Packets of 64 streams spread over the node, in turn.
        let probe: Vec<u32> = (0..64).map(|k| ssrc(k * n / 64)).collect();

        let mut group = c.benchmark_group("lookup");
        group.bench_function(BenchmarkId::new("std", n), |b| {
            b.iter(|| {
                for s in &probe {
                    let stream = std_maps.streams.get(black_box(s));
                    black_box(stream.and_then(|s| std_maps.legs.get(&s.leg)));
                }
            });
        });
        group.bench_function(BenchmarkId::new("im", n), |b| {
            b.iter(|| {
                for s in &probe {
                    let stream = im_maps.streams.get(black_box(s));
                    black_box(stream.and_then(|s| im_maps.legs.get(&s.leg)));
                }
            });
        });
        group.finish();

        let mut group = c.benchmark_group("join");
        let extra = leg(n, &key);
        group.bench_function(BenchmarkId::new("std_rebuild", n), |b| {
            b.iter(|| {
                let mut legs: HashMap<LegId, Arc<LegRoute>, IdHash> = HashMap::default();
                let mut streams = HashMap::new();
                for (l, s) in legs_and_streams(&std_maps) {
                    legs.insert(l.id, Arc::clone(l));
                    streams.insert(s.ssrc, Arc::clone(s));
                }
                legs.insert(extra.id, Arc::clone(&extra));
                black_box((legs, streams))
            });
        });
        group.bench_function(BenchmarkId::new("im_insert_clone", n), |b| {
            b.iter(|| {
                let mut working = im_maps.clone();
                working.insert_leg(Arc::clone(&extra));
                black_box(Arc::new(working.clone()))
            });
        });
        group.finish();
    }
}

fn legs_and_streams(maps: &StdMaps) -> impl Iterator<Item = (&Arc<LegRoute>, &Arc<StreamRoute>)> {
    maps.legs.values().zip(maps.streams.values())
}

criterion_group!(benches, snapshot);
criterion_main!(benches);

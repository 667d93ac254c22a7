//! Fan-out throughput of the relay core, sans-IO: one publisher's SRTP
//! packet handed to [`RelayWorker::handle_datagram`] (unprotect, latch
//! check, re-protect for every subscriber in one crypto batch, written
//! into the `Transmits` arena), 1 publisher → 10 subscribers,
//! AEAD_AES_256_GCM on the default backend, audio (160-byte) and video
//! (1200-byte) payloads.
//!
//! Criterion reports relayed packets per second on one core: one element
//! is one packet sent out, so one input counts as ten. Protecting the
//! publisher's input packets is set-up, outside the measurement.
//!
//! Each size runs twice: to SDES legs, and to WebRTC (WHEP) legs whose
//! receive slot carries the stream, so every copy gets the slot's SSRC
//! rewrite before it is protected, and its SRTP index claimed against the
//! slot's shared send index (`srtp::SharedSendIndex`; the per-packet work
//! a browser leg adds). The ratio of the two is the cost of a browser leg.
//! A third run sends to SDES legs that each number the codec otherwise
//! (`receive.video.codecs[].payload_type`), so every copy gets the
//! payload-type rewrite: its ratio to the first is that rewrite's cost.
//!
//! Run: `cargo bench --bench fanout` (full), `cargo test --benches` (smoke).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::crypto::AnyGcm;
use sluice::metrics::WorkerCounters;
use sluice::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, PtMap, RelayWorker,
    RoutingSnapshot, SlotEntry, SlotMap, SourceFeed, StreamRoute, Transmits,
};
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

const SUBSCRIBERS: u64 = 10;
const PAYLOADS: [usize; 2] = [160, 1200];
const SSRC: u32 = 0x5eed_0001;
const MEETING: MeetingIdx = MeetingIdx(1);
const PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;

fn key(leg: u64, direction: u8) -> MasterKey {
    let material: Vec<u8> = (0..PROFILE.key_material_len() as u8)
        .map(|i| (leg as u8).wrapping_mul(29) ^ direction.wrapping_mul(97) ^ i)
        .collect();
    MasterKey::new(PROFILE, &material).expect("valid material")
}

fn addr(leg: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, (leg >> 8) as u8, leg as u8], 50_000))
}

/// What the receiving legs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Legs {
    /// SDES legs taking the stream as it is.
    Sdes,
    /// WHEP legs, one slot each.
    Webrtc,
    /// SDES legs each wanting another payload type.
    SdesPt,
}

impl Legs {
    fn name(self) -> &'static str {
        match self {
            Self::Sdes => "sdes",
            Self::Webrtc => "webrtc",
            Self::SdesPt => "sdes-pt",
        }
    }
}

/// Leg 0 publishes one stream; legs 1..=SUBSCRIBERS receive it; all
/// latched; with `Webrtc`, each receiver is a WHEP leg with one slot;
/// with `SdesPt`, each has a payload-type map for it.
fn snapshot(legs: Legs) -> RoutingSnapshot {
    let mut snapshot = RoutingSnapshot {
        generation: 1,
        ..RoutingSnapshot::default()
    };
    for leg in 0..=SUBSCRIBERS {
        let route = LegRoute {
            id: LegId(leg),
            meeting: MEETING,
            mode: MeetingMode::E2ee,
            client_to_relay: key(leg, 0),
            relay_to_client: key(leg, 1),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        };
        route.latch.set(addr(leg));
        snapshot.legs.insert(LegId(leg), Arc::new(route));
        // Not published yet: the list may grow in place.
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
    if legs == Legs::SdesPt {
        for leg in 1..=SUBSCRIBERS {
            snapshot
                .payload_types
                .insert(LegId(leg), Arc::new(PtMap::new([(SSRC, 120)])));
        }
    }
    if legs == Legs::Webrtc {
        // A meeting with WHEP viewers: the worker records the publisher's
        // position for the slot decisions on every packet.
        snapshot
            .slot_feeds
            .insert(SSRC, Arc::new(SourceFeed::new(0)));
        for leg in 1..=SUBSCRIBERS {
            let slot = SlotEntry {
                source: SSRC,
                ssrc: 0x7000_0000 + leg as u32,
                mid: *b"1\0\0\0\0\0\0\0",
                mid_len: 1,
                source_mid_ext: 4,
                mid_ext: 4,
                // A slot that changed hands: the rewrite moves the numbers.
                seq_offset: 1000,
                ts_offset: 48_000,
            };
            snapshot.slot_sources.insert(slot.ssrc, SSRC);
            snapshot.slot_maps.insert(
                LegId(leg),
                Arc::new(SlotMap {
                    entries: vec![slot],
                    indices: vec![(slot.ssrc, Arc::default())],
                }),
            );
        }
    }
    snapshot
}

/// The publisher's next SRTP packet, in a receive-sized buffer.
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

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("fanout/1-to-{SUBSCRIBERS}"));
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(SUBSCRIBERS));
    for (size, kind) in PAYLOADS.into_iter().flat_map(|size| {
        [
            (size, Legs::Sdes),
            (size, Legs::Webrtc),
            (size, Legs::SdesPt),
        ]
    }) {
        let snapshot = snapshot(kind);
        let legs = kind.name();
        let counters = Arc::new(WorkerCounters::default());
        let mut worker = RelayWorker::new(AnyGcm::default(), counters);
        let mut publisher = SrtpSession::new(AnyGcm::default(), &key(0, 0)).expect("session");
        let mut out = Transmits::with_capacity(SUBSCRIBERS as usize);
        let payload = vec![0xa5u8; size];
        let mut seq = 0u16;

        // Make sure what is measured is a full fan-out.
        let (mut buf, len) = next_packet(&mut publisher, &mut seq, &payload);
        worker.handle_datagram(&snapshot, addr(0), &mut buf, len, &mut out);
        assert_eq!(out.len() as u64, SUBSCRIBERS, "every subscriber is sent to");

        let id = BenchmarkId::new(format!("{}/{legs}", PROFILE.name()), size);
        group.bench_function(id, |b| {
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
        debug_assert_eq!(out.len() as u64, SUBSCRIBERS);
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

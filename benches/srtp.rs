//! SRTP protect/unprotect throughput: sluice (every profile, every AES-GCM
//! backend) against libsrtp's `srtp_protect`/`srtp_unprotect` in the same
//! run, through the same FFI the interop test uses, so results read as
//! ratios. Audio (160-byte) and video (1200-byte) payloads.
//!
//! Run: `cargo bench --bench srtp` (full), `cargo test --benches` (smoke).
//! Criterion reports packets per second (one element = one packet) on one
//! core; bench/README.md records the table.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::crypto::{AnyGcm, BackendKind};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};
use sluice_libsrtp::{Direction, Profile as RefProfile, Session as RefSession};

const PAYLOADS: [usize; 2] = [160, 1200];
const HEADER: usize = 12;
const SSRC: u32 = 0x1234_5678;

/// libsrtp's name for the same profile.
fn ref_profile(profile: SrtpProfile) -> RefProfile {
    RefProfile::from_name(profile.name()).expect("libsrtp knows every profile sluice speaks")
}

fn material(profile: SrtpProfile) -> Vec<u8> {
    (0..profile.key_material_len())
        .map(|i| (i * 29 + 3) as u8)
        .collect()
}

/// An RTP packet with `payload` bytes, in a buffer with room for any tag.
fn packet(payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; HEADER + payload + sluice_libsrtp::RTCP_TRAILER_ROOM];
    p[0] = 0x80;
    p[1] = 111;
    p[8..12].copy_from_slice(&SSRC.to_be_bytes());
    for (i, b) in p[HEADER..HEADER + payload].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// Next sequence number into the header (the sender refuses to reuse an
/// index, as it must, so every protected packet needs a fresh one).
fn stamp(buf: &mut [u8], seq: &mut u16) {
    *seq = seq.wrapping_add(1);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

/// The implementations compared: each sluice backend, then libsrtp. The
/// AES-CM profiles do not use the AES-GCM backend, so one sluice entry.
fn sluice_backends(profile: SrtpProfile) -> Vec<BackendKind> {
    if profile.is_aead() {
        // The GPU backend has its own batch benchmark (benches/gpu.rs);
        // one packet per call is not what it is for.
        BackendKind::CPU.to_vec()
    } else {
        vec![BackendKind::default()]
    }
}

/// The row label of a sluice implementation: the AES-GCM backend's name
/// for the AEAD profiles, plain `sluice` for AES-CM (which uses none).
fn label(profile: SrtpProfile, kind: BackendKind) -> String {
    if profile.is_aead() {
        format!("sluice-{kind}")
    } else {
        "sluice".to_owned()
    }
}

fn protect(c: &mut Criterion) {
    for profile in SrtpProfile::ALL {
        let mut group = c.benchmark_group(format!("protect/{profile}"));
        for payload in PAYLOADS {
            group.throughput(Throughput::Elements(1));
            let template = packet(payload);
            let len = HEADER + payload;
            let key = MasterKey::new(profile, &material(profile)).expect("valid material");

            for kind in sluice_backends(profile) {
                let mut session = SrtpSession::new(AnyGcm::new(kind), &key).expect("session");
                let mut buf = template.clone();
                let mut seq = 0u16;
                group.bench_function(BenchmarkId::new(label(profile, kind), payload), |b| {
                    b.iter(|| {
                        buf[..len].copy_from_slice(&template[..len]);
                        stamp(&mut buf, &mut seq);
                        black_box(session.protect_rtp(&mut buf, len).expect("protects"))
                    });
                });
            }

            let mut reference = RefSession::new(
                ref_profile(profile),
                Direction::Outbound,
                &material(profile),
                0,
            )
            .expect("libsrtp session");
            let mut buf = template.clone();
            let mut seq = 0u16;
            group.bench_function(BenchmarkId::new("libsrtp", payload), |b| {
                b.iter(|| {
                    buf[..len].copy_from_slice(&template[..len]);
                    stamp(&mut buf, &mut seq);
                    black_box(reference.protect(&mut buf, len).expect("libsrtp protects"))
                });
            });
        }
        group.finish();
    }
}

/// Protected packets with consecutive sequence numbers, made by a sluice
/// sender in criterion's untimed setup. Each receiver gets its own sender so
/// it sees one unbroken sequence, as a real receiver does.
fn sender(key: &MasterKey, template: &[u8], len: usize) -> impl FnMut() -> (Vec<u8>, usize) {
    let mut session = SrtpSession::new(AnyGcm::default(), key).expect("session");
    let template = template.to_vec();
    let mut seq = 0u16;
    move || {
        let mut buf = template.clone();
        stamp(&mut buf, &mut seq);
        let n = session.protect_rtp(&mut buf, len).expect("protects");
        (buf, n)
    }
}

fn unprotect(c: &mut Criterion) {
    for profile in SrtpProfile::ALL {
        let mut group = c.benchmark_group(format!("unprotect/{profile}"));
        for payload in PAYLOADS {
            group.throughput(Throughput::Elements(1));
            let template = packet(payload);
            let len = HEADER + payload;
            let key = MasterKey::new(profile, &material(profile)).expect("valid material");
            for kind in sluice_backends(profile) {
                let mut session = SrtpSession::new(AnyGcm::new(kind), &key).expect("session");
                // One sender for the whole benchmark: criterion calls the
                // closure below several times, and the receiver's replay
                // window must see one unbroken sequence across them.
                let mut packets = sender(&key, &template, len);
                group.bench_function(BenchmarkId::new(label(profile, kind), payload), |b| {
                    b.iter_batched_ref(
                        &mut packets,
                        |(buf, n)| black_box(session.unprotect_rtp(buf, *n).expect("authentic")),
                        BatchSize::SmallInput,
                    );
                });
            }

            let mut reference = RefSession::new(
                ref_profile(profile),
                Direction::Inbound,
                &material(profile),
                0,
            )
            .expect("libsrtp session");
            let mut packets = sender(&key, &template, len);
            group.bench_function(BenchmarkId::new("libsrtp", payload), |b| {
                b.iter_batched_ref(
                    &mut packets,
                    |(buf, n)| {
                        black_box(reference.unprotect(buf, *n).expect("libsrtp authenticates"))
                    },
                    BatchSize::SmallInput,
                );
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = protect, unprotect
}
criterion_main!(benches);

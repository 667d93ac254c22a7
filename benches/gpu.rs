//! Seal time per fan-out batch against N (one 1200-byte payload sealed
//! for N receivers, each its own AES-256-GCM key and nonce, a 12-byte RTP
//! header as AAD): `ring` on one core and the GPU backend, in one run,
//! through the same `AeadBackend::seal_batch` the relay calls. The GPU
//! figure includes packing, upload, kernel, download and the copy back
//! into the receivers' buffers; `sluice hw --calibrate` splits the device
//! stages out.
//!
//! Run: `cargo bench --bench gpu` (full), `cargo test --benches` (smoke).
//! On a machine without an OpenCL device the GPU rows are left out and a
//! line says so (with `CI` set that is an error). bench/README.md records
//! the table. Expect a CPU OpenCL driver (pocl) to be far slower than
//! ring: it measures correctness plumbing, not a GPU.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::crypto::{AeadBackend, AnyGcm, AnyGcmKey, BackendKind, SealJob};

const SIZES: [usize; 5] = [16, 64, 256, 1024, 4096];
const PAYLOAD: usize = 1200;
const AAD: [u8; 12] = [0x80, 0x60, 0, 1, 0, 0, 0, 0, 0x5e, 0xed, 0xca, 0xfe];

fn seal_fanout(
    backend: &AnyGcm,
    keys: &[AnyGcmKey],
    bufs: &mut [Vec<u8>],
    tags: &mut [[u8; 16]],
    round: u64,
) {
    let payload = [0x5au8; PAYLOAD];
    for buf in bufs.iter_mut() {
        buf.copy_from_slice(&payload);
    }
    let mut jobs: Vec<SealJob<'_, AnyGcmKey>> = keys
        .iter()
        .zip(bufs.iter_mut())
        .zip(tags.iter_mut())
        .map(|((key, data), tag)| {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&round.to_be_bytes());
            SealJob {
                key,
                nonce,
                aad: &AAD,
                data,
                tag,
            }
        })
        .collect();
    backend.seal_batch(black_box(&mut jobs));
}

fn gpu_vs_ring(c: &mut Criterion) {
    let mut kinds = vec![BackendKind::Ring];
    if BackendKind::usable().contains(&BackendKind::Gpu) {
        kinds.push(BackendKind::Gpu);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but there is no OpenCL device for the GPU benchmark"
        );
        eprintln!("benches/gpu: no OpenCL device, measuring ring only");
    }
    let mut group = c.benchmark_group("seal_fanout_1200B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for kind in kinds {
        let backend = AnyGcm::new(kind);
        let most = SIZES[SIZES.len() - 1];
        let keys: Vec<AnyGcmKey> = (0..most)
            .map(|i| {
                let raw: Vec<u8> = (0..32).map(|b| (i * 7 + b * 13) as u8).collect();
                backend.key(&raw).expect("a 32-byte key")
            })
            .collect();
        let mut bufs = vec![vec![0u8; PAYLOAD]; most];
        let mut tags = vec![[0u8; 16]; most];
        for n in SIZES {
            group.throughput(Throughput::Elements(n as u64));
            let mut round = 0u64;
            group.bench_with_input(BenchmarkId::new(kind.name(), n), &n, |b, &n| {
                b.iter(|| {
                    round += 1;
                    seal_fanout(&backend, &keys[..n], &mut bufs[..n], &mut tags[..n], round);
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gpu_vs_ring);
criterion_main!(benches);

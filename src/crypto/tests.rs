//! Every backend against the GCM specification's known answers, and
//! against each other on batches of mixed keys and sizes.

use super::*;
use crate::test_util::unhex;

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2
/// (AES-128) and 14 (AES-256): zero key, zero IV, one zero block.
const ZERO_BLOCK_VECTORS: [(usize, &str, &str); 2] = [
    (
        16,
        "0388dace60b6a392f328c2b971b2fe78",
        "ab6e47d42cec13bdf53a67b21257bddf",
    ),
    (
        32,
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
    ),
];

fn known_answers<B: AeadBackend>(backend: &B) {
    for (key_len, cipher, tag) in ZERO_BLOCK_VECTORS {
        let key = backend.key(&vec![0; key_len]).expect("valid length");
        let mut data = [0u8; 16];
        let mut got_tag = [0u8; GCM_TAG_LEN];
        backend.seal_batch(&mut [SealJob {
            key: &key,
            nonce: [0; GCM_NONCE_LEN],
            aad: &[],
            data: &mut data,
            tag: &mut got_tag,
        }]);
        assert_eq!(
            data.to_vec(),
            unhex(cipher),
            "{} AES-{}",
            backend.name(),
            key_len * 8
        );
        assert_eq!(
            got_tag.to_vec(),
            unhex(tag),
            "{} AES-{}",
            backend.name(),
            key_len * 8
        );

        let mut open = [OpenJob {
            key: &key,
            nonce: [0; GCM_NONCE_LEN],
            aad: &[],
            data: &mut data,
            tag: &got_tag,
            authentic: false,
        }];
        backend.open_batch(&mut open);
        assert!(open[0].authentic);
        assert_eq!(data, [0u8; 16]);
    }
}

#[test]
fn every_backend_gives_the_specification_answers() {
    known_answers(&RingGcm);
    known_answers(&RustCryptoGcm);
    for kind in crate::test_util::backend_kinds() {
        known_answers(&AnyGcm::new(kind));
    }
}

#[test]
fn keys_of_other_lengths_are_refused() {
    for len in [0, 15, 17, 24, 31, 33] {
        assert_eq!(
            RingGcm.key(&vec![7; len]).err(),
            Some(CryptoError::BadKeyLength(len))
        );
        assert_eq!(
            RustCryptoGcm.key(&vec![7; len]).err(),
            Some(CryptoError::BadKeyLength(len))
        );
    }
}

/// A batch whose jobs use different keys, nonces, AAD and sizes gives the
/// same bytes on every backend, and each job opens only with its own key.
#[test]
fn backends_agree_on_a_mixed_batch() {
    let raw_keys: Vec<Vec<u8>> = (0u8..6)
        .map(|i| {
            (0..if i % 2 == 0 { 16 } else { 32 })
                .map(|b: u8| b ^ i)
                .collect()
        })
        .collect();
    let sizes = [0usize, 1, 15, 16, 17, 160, 1200];
    let mut outputs: Vec<Vec<(Vec<u8>, [u8; 16])>> = Vec::new();

    for kind in crate::test_util::backend_kinds() {
        let backend = AnyGcm::new(kind);
        let keys: Vec<_> = raw_keys
            .iter()
            .map(|k| backend.key(k).expect("valid"))
            .collect();
        let mut bufs: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 % 251) as u8).collect())
            .collect();
        let mut tags = vec![[0u8; 16]; sizes.len()];
        let aad = [0x80u8, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let mut jobs: Vec<SealJob<'_, AnyGcmKey>> = bufs
            .iter_mut()
            .zip(tags.iter_mut())
            .enumerate()
            .map(|(i, (data, tag))| SealJob {
                key: &keys[i % keys.len()],
                nonce: [i as u8; 12],
                aad: &aad[..i],
                data,
                tag,
            })
            .collect();
        backend.seal_batch(&mut jobs);
        drop(jobs);

        // Each job opens with its own key and fails with its neighbour's.
        for (i, (data, tag)) in bufs.iter().zip(&tags).enumerate() {
            for (key_index, expect) in [(i % keys.len(), true), ((i + 1) % keys.len(), false)] {
                let mut copy = data.clone();
                let mut job = [OpenJob {
                    key: &keys[key_index],
                    nonce: [i as u8; 12],
                    aad: &aad[..i],
                    data: &mut copy,
                    tag,
                    authentic: !expect,
                }];
                backend.open_batch(&mut job);
                assert_eq!(job[0].authentic, expect, "{kind} job {i} key {key_index}");
            }
        }
        outputs.push(bufs.into_iter().zip(tags).collect());
    }
    for (i, other) in outputs.iter().enumerate().skip(1) {
        assert_eq!(&outputs[0], other, "backend {i} disagrees with ring");
    }
}

#[test]
fn backend_names_round_trip() {
    for kind in crate::test_util::backend_kinds() {
        assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
    }
    assert!("openssl".parse::<BackendKind>().is_err());
}

/// A random job: key index, nonce, AAD, plaintext.
type Spec = (usize, [u8; 12], Vec<u8>, Vec<u8>);

/// xorshift64*: deterministic random test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The GPU backend when this machine has an OpenCL device (required in CI).
fn gpu_backend() -> Option<AnyGcm> {
    crate::test_util::backend_kinds()
        .contains(&BackendKind::Gpu)
        .then(|| AnyGcm::new(BackendKind::Gpu))
}

/// Random packets (keys of both sizes, random nonces, AAD of 12–72 bytes,
/// payloads of 0–1500 bytes) sealed through the GPU backend's batch
/// path: byte for byte what ring gives; each opens on the GPU; a flipped
/// tag bit, ciphertext bit or AAD bit makes it fail to open.
#[test]
fn the_gpu_backend_matches_ring_on_random_batches_and_refuses_tampering() {
    let Some(gpu) = gpu_backend() else { return };
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let raws: Vec<Vec<u8>> = (0..32)
        .map(|i| rng.bytes(if i % 2 == 0 { 16 } else { 32 }))
        .collect();
    let gpu_keys: Vec<AnyGcmKey> = raws.iter().map(|r| gpu.key(r).unwrap()).collect();
    let ring_keys: Vec<_> = raws.iter().map(|r| RingGcm.key(r).unwrap()).collect();
    let mut total = 0;
    for round in 0..40 {
        let n = [1, 13, 64, 80][round % 4];
        let specs: Vec<Spec> = (0..n)
            .map(|_| {
                let k = rng.below(raws.len());
                let nonce: [u8; 12] = rng.bytes(12).try_into().unwrap();
                let aad_len = 12 + rng.below(61);
                let aad = rng.bytes(aad_len);
                let len = rng.below(1501);
                let data = rng.bytes(len);
                (k, nonce, aad, data)
            })
            .collect();
        let mut bufs: Vec<Vec<u8>> = specs.iter().map(|s| s.3.clone()).collect();
        let mut tags = vec![[0u8; 16]; n];
        let mut jobs: Vec<SealJob<'_, AnyGcmKey>> = bufs
            .iter_mut()
            .zip(tags.iter_mut())
            .zip(&specs)
            .map(|((data, tag), (k, nonce, aad, _))| SealJob {
                key: &gpu_keys[*k],
                nonce: *nonce,
                aad,
                data,
                tag,
            })
            .collect();
        gpu.seal_batch(&mut jobs);
        drop(jobs);
        for (i, (k, nonce, aad, plain)) in specs.iter().enumerate() {
            let mut want = plain.clone();
            let mut want_tag = [0u8; 16];
            RingGcm.seal_batch(&mut [SealJob {
                key: &ring_keys[*k],
                nonce: *nonce,
                aad,
                data: &mut want,
                tag: &mut want_tag,
            }]);
            assert_eq!(bufs[i], want, "round {round} job {i}");
            assert_eq!(tags[i], want_tag, "round {round} job {i} tag");
        }
        // Open them all in one batch, every third one tampered with.
        let mut opened: Vec<Vec<u8>> = bufs.clone();
        let mut bad_tags = tags.clone();
        let mut bad_aads: Vec<Vec<u8>> = specs.iter().map(|s| s.2.clone()).collect();
        for i in (0..n).step_by(3) {
            match i % 9 {
                0 => bad_tags[i][i % 16] ^= 1,
                3 if !opened[i].is_empty() => {
                    let at = i % opened[i].len();
                    opened[i][at] ^= 0x80;
                }
                _ => bad_aads[i][0] ^= 4,
            }
        }
        let mut jobs: Vec<OpenJob<'_, AnyGcmKey>> = opened
            .iter_mut()
            .zip(&bad_tags)
            .zip(&bad_aads)
            .zip(&specs)
            .map(|(((data, tag), aad), (k, nonce, _, _))| OpenJob {
                key: &gpu_keys[*k],
                nonce: *nonce,
                aad,
                data,
                tag,
                authentic: false,
            })
            .collect();
        gpu.open_batch(&mut jobs);
        let verdicts: Vec<bool> = jobs.iter().map(|j| j.authentic).collect();
        drop(jobs);
        for (i, (_, _, _, plain)) in specs.iter().enumerate() {
            let tampered = i % 3 == 0;
            assert_eq!(verdicts[i], !tampered, "round {round} job {i}");
            if !tampered {
                assert_eq!(&opened[i], plain, "round {round} job {i} plaintext");
            }
        }
        total += n;
    }
    assert!(total >= 1500, "{total} packets");
    assert!(gpu.counters().packets(CryptoPath::Gpu) >= 2 * total as u64);
    assert_eq!(gpu.counters().gpu_fallbacks(), 0);
}

/// Under `auto`, only batches at least as large as the crossover go to
/// the GPU; smaller ones, and jobs too long for the kernels, stay on ring.
#[test]
fn auto_offload_sends_only_batches_above_the_crossover() {
    use super::calibrate::{Calibration, CalibrationPoint};
    use super::gpu::{GpuOffload, GpuPolicy, process_engine};
    if gpu_backend().is_none() {
        return;
    }
    let engine = process_engine(true).unwrap();
    let calibration = Calibration {
        payload: 1200,
        points: Vec::<CalibrationPoint>::new(),
        crossover: Some(8),
    };
    let backend = AnyGcm::with_gpu(
        BackendKind::Ring,
        std::sync::Arc::new(GpuOffload::new(engine, GpuPolicy::Auto, Some(calibration))),
    )
    .gpu_for_every_batch();
    let key = backend.key(&[5; 32]).unwrap();
    let seal = |sizes: &[usize]| {
        let mut bufs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![1; n]).collect();
        let mut tags = vec![[0u8; 16]; sizes.len()];
        let mut jobs: Vec<SealJob<'_, AnyGcmKey>> = bufs
            .iter_mut()
            .zip(tags.iter_mut())
            .enumerate()
            .map(|(i, (data, tag))| SealJob {
                key: &key,
                nonce: [i as u8; 12],
                aad: &[0; 12],
                data,
                tag,
            })
            .collect();
        backend.seal_batch(&mut jobs);
    };
    seal(&[100; 7]);
    assert_eq!(backend.counters().packets(CryptoPath::Gpu), 0);
    assert_eq!(backend.counters().packets(CryptoPath::Ring), 7);
    let mut sizes = vec![100; 8];
    sizes.push(4000); // more GHASH blocks than the kernels hold
    seal(&sizes);
    assert_eq!(backend.counters().batches(CryptoPath::Gpu), 1);
    assert_eq!(backend.counters().packets(CryptoPath::Gpu), 8);
    assert_eq!(backend.counters().packets(CryptoPath::Ring), 8);
}

/// Calibration runs on whatever device there is and reports every size.
#[test]
fn calibration_measures_every_size() {
    if gpu_backend().is_none() {
        return;
    }
    let engine = super::gpu::process_engine(true).unwrap();
    let calibration = super::calibrate::calibrate(&engine, &[16, 64], 1).unwrap();
    assert_eq!(
        calibration.points.iter().map(|p| p.n).collect::<Vec<_>>(),
        vec![16, 64]
    );
    assert!(
        calibration
            .points
            .iter()
            .all(|p| p.cpu_ns > 0 && p.gpu_ns > 0)
    );
    assert!(calibration.table().lines().count() == 3);
}

/// When the device's key table is full, new legs keep their keys on the
/// CPU: nothing fails, and their packets are sealed by ring.
#[test]
fn a_full_gpu_key_table_leaves_new_keys_on_the_cpu() {
    use super::gpu::{GpuOffload, GpuPolicy};
    if gpu_backend().is_none() {
        return;
    }
    let devices = sluice_gpu::probe().unwrap();
    let engine = sluice_gpu::Engine::open(&devices[0], 1).unwrap();
    let backend = AnyGcm::with_gpu(
        BackendKind::Ring,
        std::sync::Arc::new(GpuOffload::new(engine, GpuPolicy::Always, None)),
    )
    .gpu_for_every_batch();
    let on_gpu = backend.key(&[1; 16]).unwrap();
    let on_cpu = backend.key(&[2; 16]).unwrap();
    assert!(matches!(on_gpu, AnyGcmKey::Gpu(_)));
    assert!(matches!(on_cpu, AnyGcmKey::Ring(_)));
    let mut bufs = [vec![3u8; 100], vec![3u8; 100]];
    let mut tags = [[0u8; 16]; 2];
    let [b0, b1] = &mut bufs;
    let [t0, t1] = &mut tags;
    backend.seal_batch(&mut [
        SealJob {
            key: &on_gpu,
            nonce: [0; 12],
            aad: &[0; 12],
            data: b0,
            tag: t0,
        },
        SealJob {
            key: &on_cpu,
            nonce: [0; 12],
            aad: &[0; 12],
            data: b1,
            tag: t1,
        },
    ]);
    for (raw, (data, tag)) in [[1u8; 16], [2u8; 16]].iter().zip(bufs.iter().zip(&tags)) {
        let ring = RingGcm.key(raw).unwrap();
        let mut want = vec![3u8; 100];
        let mut want_tag = [0u8; 16];
        RingGcm.seal_batch(&mut [SealJob {
            key: &ring,
            nonce: [0; 12],
            aad: &[0; 12],
            data: &mut want,
            tag: &mut want_tag,
        }]);
        assert_eq!((data, tag), (&want, &want_tag));
    }
    assert_eq!(backend.counters().packets(CryptoPath::Gpu), 1);
    assert_eq!(backend.counters().packets(CryptoPath::Ring), 1);
}

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
    for kind in BackendKind::ALL {
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

    for kind in BackendKind::ALL {
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
    assert_eq!(outputs[0], outputs[1], "ring and aes-gcm disagree");
}

#[test]
fn backend_names_round_trip() {
    for kind in BackendKind::ALL {
        assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
    }
    assert!("openssl".parse::<BackendKind>().is_err());
}

//! SRTP/SRTCP behaviour: the RFC 7714 §16-§17 packet vectors byte for byte
//! on every backend, round trips on every profile, and the refusals
//! (forgery, replay, exhaustion, short buffers) a relay depends on.

use super::session::SrtpSession;
use super::transform::Transform;
use super::*;
use crate::crypto::{AeadBackend, AnyGcm, BackendKind};
use crate::test_util::unhex;

const RFC_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const RFC_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// "Quid pro quo".
const RFC_SALT: &str = "517569642070726f2071756f";
/// RFC 7714 §16: SSRC 5501a0b2, SEQ f17b, "Galia est omnis divisa...".
const RFC_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                       20646976 69736120 696e2070 61727465 73207472 6573";
/// RFC 7714 §17: an SR from SSRC "Mars".
const RFC_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                        4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC_RTCP_INDEX: u32 = 0x5d4;

/// A session keyed directly with session keys, as the RFC 7714 vectors are
/// (they do not exercise the KDF).
fn rfc_session(kind: BackendKind, profile: SrtpProfile) -> SrtpSession<AnyGcm> {
    let backend = AnyGcm::new(kind);
    let key = unhex(if profile == SrtpProfile::AeadAes128Gcm {
        RFC_KEY_128
    } else {
        RFC_KEY_256
    });
    let salt: [u8; 12] = unhex(RFC_SALT).try_into().unwrap();
    let transform = || Transform::Gcm {
        key: backend.key(&key).unwrap(),
        salt,
    };
    let (rtp, rtcp) = (transform(), transform());
    SrtpSession::from_transforms(backend, profile, rtp, rtcp)
}

fn protect(session: &mut SrtpSession<AnyGcm>, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    buf.resize(packet.len() + 64, 0);
    let n = session.protect_rtp(&mut buf, packet.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect(session: &mut SrtpSession<AnyGcm>, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = session.unprotect_rtp(&mut buf, packet.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn protect_rtcp(session: &mut SrtpSession<AnyGcm>, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    buf.resize(packet.len() + 64, 0);
    let n = session.protect_rtcp(&mut buf, packet.len())?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtcp(session: &mut SrtpSession<AnyGcm>, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = session.unprotect_rtcp(&mut buf, packet.len())?;
    buf.truncate(n);
    Ok(buf)
}

/// RFC 7714 §16.1.1/§16.1.2 and §16.2.1/§16.2.2.
#[test]
fn rfc7714_srtp_vectors() {
    let cases = [
        (
            SrtpProfile::AeadAes128Gcm,
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        ),
        (
            SrtpProfile::AeadAes256Gcm,
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
             9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        ),
    ];
    for kind in crate::test_util::backend_kinds() {
        for (profile, expected) in cases {
            let wire = protect(&mut rfc_session(kind, profile), &unhex(RFC_RTP)).unwrap();
            assert_eq!(wire, unhex(expected), "{kind} {profile} protect");
            let mut receiver = rfc_session(kind, profile);
            assert_eq!(
                unprotect(&mut receiver, &wire).unwrap(),
                unhex(RFC_RTP),
                "{kind} {profile}"
            );
            assert_eq!(unprotect(&mut receiver, &wire), Err(SrtpError::Replayed));
        }
    }
}

/// RFC 7714 §17.1/§17.2 (encrypted SRTCP) and §17.3/§17.4 (E=0, tag only).
#[test]
fn rfc7714_srtcp_vectors() {
    let encrypted = [
        (
            SrtpProfile::AeadAes128Gcm,
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
             c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
             45d9eade 800005d4",
        ),
        (
            SrtpProfile::AeadAes256Gcm,
            "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
             a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
             b26ac3be 800005d4",
        ),
    ];
    let tag_only = [
        (
            SrtpProfile::AeadAes128Gcm,
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
             deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790
             125f62b3 000005d4",
        ),
        (
            SrtpProfile::AeadAes256Gcm,
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
             deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393
             ed2615fe 000005d4",
        ),
    ];
    for kind in crate::test_util::backend_kinds() {
        for (profile, expected) in encrypted {
            let mut sender = rfc_session(kind, profile);
            *sender.send_rtcp.entry(0x4d61_7273).unwrap() = RFC_RTCP_INDEX;
            let wire = protect_rtcp(&mut sender, &unhex(RFC_RTCP)).unwrap();
            assert_eq!(wire, unhex(expected), "{kind} {profile} SRTCP protect");
            let mut receiver = rfc_session(kind, profile);
            assert_eq!(
                unprotect_rtcp(&mut receiver, &wire).unwrap(),
                unhex(RFC_RTCP)
            );
            assert_eq!(
                unprotect_rtcp(&mut receiver, &wire),
                Err(SrtpError::Replayed)
            );
        }
        for (profile, wire) in tag_only {
            let mut receiver = rfc_session(kind, profile);
            assert_eq!(
                unprotect_rtcp(&mut receiver, &unhex(wire)).unwrap(),
                unhex(RFC_RTCP),
                "{kind} {profile} E=0"
            );
            let mut forged = unhex(wire);
            forged[20] ^= 1; // a clear-text byte under the tag
            assert_eq!(
                unprotect_rtcp(&mut rfc_session(kind, profile), &forged),
                Err(SrtpError::AuthFailed)
            );
        }
    }
}

/// Every profile with KDF-derived keys, on every backend.
fn sessions(profile: SrtpProfile, kind: BackendKind) -> (SrtpSession<AnyGcm>, SrtpSession<AnyGcm>) {
    let material: Vec<u8> = (0..profile.key_material_len())
        .map(|i| (i * 13 + 1) as u8)
        .collect();
    let key = MasterKey::new(profile, &material).unwrap();
    (
        SrtpSession::new(AnyGcm::new(kind), &key).unwrap(),
        SrtpSession::new(AnyGcm::new(kind), &key).unwrap(),
    )
}

fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x60];
    p.extend(seq.to_be_bytes());
    p.extend(0x1234_5678u32.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(7)));
    p
}

#[test]
fn every_profile_round_trips_across_a_sequence_wrap() {
    for kind in crate::test_util::backend_kinds() {
        for profile in SrtpProfile::ALL {
            let (mut tx, mut rx) = sessions(profile, kind);
            for i in 0..20u16 {
                let seq = 65_530u16.wrapping_add(i);
                let plain = rtp(seq, 0xdead_beef, 160);
                let wire = protect(&mut tx, &plain).unwrap();
                assert_eq!(wire.len(), plain.len() + profile.rtp_tag_len());
                assert_ne!(&wire[12..plain.len()], &plain[12..], "payload is encrypted");
                assert_eq!(
                    unprotect(&mut rx, &wire).unwrap(),
                    plain,
                    "{kind} {profile} seq {seq}"
                );
            }
            assert_eq!(
                rx.received_roc(0xdead_beef),
                Some(1),
                "{profile}: ROC moved 0 -> 1"
            );
        }
    }
}

#[test]
fn every_profile_round_trips_rtcp() {
    for profile in SrtpProfile::ALL {
        let (mut tx, mut rx) = sessions(profile, BackendKind::default());
        let plain = unhex(RFC_RTCP);
        for _ in 0..3 {
            let wire = protect_rtcp(&mut tx, &plain).unwrap();
            assert_eq!(wire.len(), plain.len() + profile.rtcp_overhead());
            assert_ne!(
                &wire[8..plain.len()],
                &plain[8..],
                "{profile}: RTCP body is encrypted"
            );
            assert_eq!(unprotect_rtcp(&mut rx, &wire).unwrap(), plain, "{profile}");
            assert_eq!(
                unprotect_rtcp(&mut rx, &wire),
                Err(SrtpError::Replayed),
                "{profile}"
            );
        }
    }
}

#[test]
fn forged_and_corrupted_packets_fail_and_leave_no_state() {
    for profile in SrtpProfile::ALL {
        let (mut tx, mut rx) = sessions(profile, BackendKind::default());
        let wire = protect(&mut tx, &rtp(100, 7, 40)).unwrap();
        for flip in [2, 11, 20, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[flip] ^= 0x40;
            assert_eq!(
                unprotect(&mut rx, &bad),
                Err(SrtpError::AuthFailed),
                "{profile} byte {flip}"
            );
        }
        assert_eq!(
            rx.received_roc(7),
            None,
            "{profile}: a forgery created stream state"
        );
        // The genuine packet still goes through after the forgeries.
        assert!(unprotect(&mut rx, &wire).is_ok());
        // A packet under another key fails too.
        let (mut other, _) = sessions(SrtpProfile::AeadAes128Gcm, BackendKind::default());
        if profile == SrtpProfile::AeadAes128Gcm {
            let mut other_tx = rfc_session(BackendKind::default(), profile);
            let foreign = protect(&mut other_tx, &rtp(101, 7, 40)).unwrap();
            assert_eq!(unprotect(&mut rx, &foreign), Err(SrtpError::AuthFailed));
        }
        let _ = protect(&mut other, &rtp(1, 1, 1));
    }
}

#[test]
fn replays_and_stale_packets_are_refused() {
    let (mut tx, mut rx) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let wires: Vec<_> = (0..300u16)
        .map(|s| protect(&mut tx, &rtp(s, 9, 20)).unwrap())
        .collect();
    unprotect(&mut rx, &wires[0]).unwrap();
    unprotect(&mut rx, &wires[299]).unwrap();
    assert_eq!(unprotect(&mut rx, &wires[0]), Err(SrtpError::TooOld));
    assert_eq!(
        unprotect(&mut rx, &wires[299 - 128]),
        Err(SrtpError::TooOld)
    );
    assert!(
        unprotect(&mut rx, &wires[299 - 127]).is_ok(),
        "late, inside the window"
    );
    assert_eq!(
        unprotect(&mut rx, &wires[299 - 127]),
        Err(SrtpError::Replayed)
    );
    assert_eq!(unprotect(&mut rx, &wires[299]), Err(SrtpError::Replayed));
}

#[test]
fn the_sender_never_reuses_an_index() {
    let (mut tx, _) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    protect(&mut tx, &rtp(5, 1, 10)).unwrap();
    assert_eq!(
        protect(&mut tx, &rtp(5, 1, 10)),
        Err(SrtpError::IndexReused)
    );
    // The same sequence number on another SSRC is another nonce.
    assert!(protect(&mut tx, &rtp(5, 2, 10)).is_ok());
}

#[test]
fn buffers_and_lengths_are_checked() {
    let (mut tx, mut rx) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let plain = rtp(1, 1, 10);
    let mut tight = plain.clone();
    assert_eq!(
        tx.protect_rtp(&mut tight, plain.len()),
        Err(SrtpError::BufferTooSmall {
            needed: plain.len() + 16,
            got: plain.len()
        })
    );
    assert!(matches!(
        tx.protect_rtp(&mut tight, plain.len() + 1),
        Err(SrtpError::BufferTooSmall { .. })
    ));
    let long = rtp(1, 1, 40);
    let short = &long[..12 + 15];
    assert_eq!(
        unprotect(&mut rx, short),
        Err(SrtpError::TooShort {
            needed: 28,
            got: 27
        })
    );
    assert!(matches!(
        unprotect(&mut rx, &[0x80, 0, 0]),
        Err(SrtpError::Rtp(_))
    ));
    assert_eq!(
        unprotect_rtcp(&mut rx, &[0x80, 0xc8, 0, 1]),
        Err(SrtpError::BadRtcpHeader)
    );
    assert_eq!(
        unprotect_rtcp(&mut rx, &[0x40; 40]),
        Err(SrtpError::BadRtcpHeader)
    );
    assert_eq!(
        unprotect_rtcp(&mut rx, &unhex(RFC_RTCP)[..27]),
        Err(SrtpError::TooShort {
            needed: 28,
            got: 27
        })
    );
}

#[test]
fn stream_state_is_bounded() {
    let (tx, rx) = sessions(SrtpProfile::AesCm128HmacSha1_80, BackendKind::default());
    let (mut tx, mut rx) = (tx.with_max_streams(2), rx.with_max_streams(2));
    for ssrc in 1..=2 {
        let wire = protect(&mut tx, &rtp(1, ssrc, 10)).unwrap();
        unprotect(&mut rx, &wire).unwrap();
    }
    assert_eq!(
        protect(&mut tx, &rtp(1, 3, 10)),
        Err(SrtpError::TooManyStreams { limit: 2 })
    );
    tx.remove_stream(1);
    let wire = protect(&mut tx, &rtp(1, 3, 10)).unwrap();
    assert_eq!(
        unprotect(&mut rx, &wire),
        Err(SrtpError::TooManyStreams { limit: 2 })
    );
}

#[test]
fn srtcp_index_exhaustion_is_refused() {
    let (mut tx, _) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    *tx.send_rtcp.entry(0x4d61_7273).unwrap() = 0x7fff_ffff;
    assert!(
        protect_rtcp(&mut tx, &unhex(RFC_RTCP)).is_ok(),
        "the last index is usable"
    );
    assert_eq!(
        protect_rtcp(&mut tx, &unhex(RFC_RTCP)),
        Err(SrtpError::KeyExhausted)
    );
}

/// The batch path gives the same bytes and outcomes as one-at-a-time.
#[test]
fn batches_match_single_packet_processing() {
    for profile in SrtpProfile::ALL {
        let kind = BackendKind::default();
        let backend = AnyGcm::new(kind);
        let legs = 70; // more than one BATCH_CHUNK
        let mut singles: Vec<_> = (0..legs).map(|_| sessions(profile, kind)).collect();
        let mut batched: Vec<_> = (0..legs).map(|_| sessions(profile, kind)).collect();
        let plain = rtp(42, 0x0101_0101, 1200);

        let expected: Vec<Vec<u8>> = singles
            .iter_mut()
            .map(|(tx, _)| protect(tx, &plain).unwrap())
            .collect();
        let mut bufs: Vec<Vec<u8>> = (0..legs)
            .map(|_| {
                let mut b = plain.clone();
                b.resize(plain.len() + 16, 0);
                b
            })
            .collect();
        let mut items: Vec<BatchItem<'_, AnyGcm>> = batched
            .iter_mut()
            .zip(bufs.iter_mut())
            .map(|((tx, _), buf)| BatchItem::new(tx, buf, plain.len()))
            .collect();
        protect_rtp_batch(&backend, &mut items);
        let lens: Vec<usize> = items
            .iter()
            .map(|i| i.outcome.clone().unwrap().unwrap())
            .collect();
        drop(items);
        for ((buf, len), want) in bufs.iter_mut().zip(lens).zip(&expected) {
            buf.truncate(len);
            assert_eq!(buf, want, "{profile}");
        }

        // Unprotect in one batch, with one forged packet among them.
        bufs[3][20] ^= 1;
        let mut items: Vec<BatchItem<'_, AnyGcm>> = batched
            .iter_mut()
            .zip(bufs.iter_mut())
            .map(|((_, rx), buf)| {
                let len = buf.len();
                BatchItem::new(rx, buf, len)
            })
            .collect();
        unprotect_rtp_batch(&backend, &mut items);
        for (i, item) in items.iter().enumerate() {
            let outcome = item.outcome.clone().unwrap();
            if i == 3 {
                assert_eq!(outcome, Err(SrtpError::AuthFailed), "{profile}");
            } else {
                assert_eq!(outcome, Ok(plain.len()), "{profile} item {i}");
                assert_eq!(&item.buf[..plain.len()], &plain[..]);
            }
        }
    }
}

/// libsrtp's own reference packets (its `srtp_validate` self-test) for
/// AES_CM_128_HMAC_SHA1_80 with the RFC 3711 Appendix B.3 master key:
/// exercises the KDF, the AES-CM IV, HMAC-SHA1 and the SRTCP trailer
/// together. libsrtp numbers its first SRTCP packet 1.
#[test]
fn libsrtp_reference_packets_for_aes_cm() {
    let material = unhex("e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6");
    let key = MasterKey::new(SrtpProfile::AesCm128HmacSha1_80, &material).unwrap();
    let mut tx = SrtpSession::new(AnyGcm::default(), &key).unwrap();
    let mut rx = SrtpSession::new(AnyGcm::default(), &key).unwrap();

    let rtp_plain = unhex("800f1234decafbadcafebabe abababababababababababababababab");
    let rtp_wire =
        unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    assert_eq!(protect(&mut tx, &rtp_plain).unwrap(), rtp_wire);
    assert_eq!(unprotect(&mut rx, &rtp_wire).unwrap(), rtp_plain);

    let rtcp_plain = unhex("81c8000bcafebabe abababababababababababababababab");
    let rtcp_wire =
        unhex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
    *tx.send_rtcp.entry(0xcafe_babe).unwrap() = 1;
    assert_eq!(protect_rtcp(&mut tx, &rtcp_plain).unwrap(), rtcp_wire);
    assert_eq!(unprotect_rtcp(&mut rx, &rtcp_wire).unwrap(), rtcp_plain);
}

/// A session lost mid-stream (a packet worker's panic) and made again with
/// the same key and journal: sending goes on strictly above every index
/// the lost one may have used, across a rollover, losing at most
/// `RESERVE_AHEAD` packets, and the far end decrypts it all.
#[test]
fn a_successor_sender_never_reuses_an_index_of_a_lost_one() {
    use std::sync::Arc;
    let journal = Arc::new(IndexJournal::default());
    let (tx, mut rx) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let mut tx = tx.with_journal(Arc::clone(&journal), 7);
    let mut used = std::collections::BTreeSet::new();
    let mut seq = 0xffe0u16;
    for _ in 0..45 {
        let wire = protect(&mut tx, &rtp(seq, 0x51, 40)).unwrap();
        let mut buf = wire.clone();
        let (_, index) = rx.unprotect_rtp_indexed(&mut buf, wire.len()).unwrap();
        assert!(used.insert(index));
        seq = seq.wrapping_add(1);
    }
    assert_eq!(rx.received_roc(0x51), Some(1), "wrapped before the loss");
    let highest_before = *used.last().unwrap();
    drop(tx);
    let (fresh, _) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let mut tx = fresh.with_journal(Arc::clone(&journal), 7);
    let mut refused = 0u64;
    let mut last = highest_before;
    for _ in 0..100 {
        match protect(&mut tx, &rtp(seq, 0x51, 40)) {
            Ok(wire) => {
                let mut buf = wire.clone();
                let (_, index) = rx.unprotect_rtp_indexed(&mut buf, wire.len()).unwrap();
                assert!(index > last, "{index:#x} after {last:#x}");
                assert!(used.insert(index), "index {index:#x} used twice");
                last = index;
            }
            Err(e) => {
                assert_eq!(e, SrtpError::IndexReused);
                assert_eq!(
                    last, highest_before,
                    "refused only before the first one sent"
                );
                refused += 1;
            }
        }
        seq = seq.wrapping_add(1);
    }
    assert!(refused <= RESERVE_AHEAD, "{refused}");
    assert!(last >> 16 == 1 && last > highest_before);
    // Without the journal, a fresh sender would start over at ROC 0:
    // the index a packet at this sequence number had before the wrap.
    let (mut bare, _) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    assert!(used.contains(&0xfff0));
    assert!(
        protect(&mut bare, &rtp(0xfff0, 0x51, 40)).is_ok(),
        "a fresh sender seals under index 0xfff0 again"
    );
}

/// A receiving session made again with the journal of a lost one takes a
/// stream that wrapped up at its rollover counter (a fresh one would
/// guess 0 and fail), and refuses what the journal says was accepted.
#[test]
fn a_successor_receiver_takes_a_wrapped_stream_up_at_its_roc() {
    use std::sync::Arc;
    let journal = Arc::new(IndexJournal::default());
    let (mut tx, rx) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let mut rx = rx.with_journal(Arc::clone(&journal), 3);
    let wires: Vec<_> = (0..40u16)
        .map(|i| protect(&mut tx, &rtp(0xfff0u16.wrapping_add(i), 0x77, 30)).unwrap())
        .collect();
    for wire in &wires {
        unprotect(&mut rx, wire).unwrap();
    }
    assert_eq!(rx.received_roc(0x77), Some(1));
    drop(rx);
    // Further on in the same rollover, past a stride of the record.
    let later: Vec<_> = (40..40 + 3 * RECEIVED_STRIDE as u32)
        .map(|i| protect(&mut tx, &rtp(0xfff0u16.wrapping_add(i as u16), 0x77, 30)).unwrap())
        .collect();
    let (_, fresh) = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default());
    let mut bare = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default()).1;
    assert_eq!(
        unprotect(&mut bare, &later[0]),
        Err(SrtpError::AuthFailed),
        "a fresh session guesses ROC 0"
    );
    let mut rx = fresh.with_journal(Arc::clone(&journal), 3);
    assert_eq!(
        rx.received_roc(0x77),
        Some(1),
        "taken up at the recorded ROC"
    );
    // The record was written at the wrap (index 0x1_0000, `wires[16]`):
    // that and everything before it is refused. (What came after it, up
    // to the loss, a successor accepts again: the record trails by less
    // than a stride. A relay still never sends such a replay on under an
    // index it used: its sent side refuses those.)
    assert_eq!(unprotect(&mut rx, &wires[16]), Err(SrtpError::Replayed));
    assert_eq!(unprotect(&mut rx, &wires[0]), Err(SrtpError::Replayed));
    for wire in &later {
        unprotect(&mut rx, wire).unwrap();
    }
    // Lost again, after it went on: taken up from the newer record.
    drop(rx);
    let mut rx = sessions(SrtpProfile::AeadAes256Gcm, BackendKind::default())
        .1
        .with_journal(Arc::clone(&journal), 3);
    let next = protect(
        &mut tx,
        &rtp(
            0xfff0u16.wrapping_add(40 + 3 * RECEIVED_STRIDE as u16),
            0x77,
            30,
        ),
    )
    .unwrap();
    unprotect(&mut rx, &next).unwrap();
    assert!(unprotect(&mut rx, &later[later.len() - 1 - RECEIVED_STRIDE as usize]).is_err());
}

//! libsrtp against itself through the safe API: an outbound session protects,
//! an inbound session with the same key unprotects. This pins down the
//! libsrtp behaviours the sluice interop tests rely on.

use sluice_libsrtp::{
    Direction, LibSrtpError, Profile, RTCP_TRAILER_ROOM, RTP_TRAILER_ROOM, Session, Status,
};

const SSRC: u32 = 0xCAFE_F00D;

/// A packet buffer with the 4-byte alignment libsrtp requires.
#[repr(C, align(4))]
struct Buf([u8; 1500]);

impl Buf {
    fn with(packet: &[u8]) -> Self {
        let mut buf = Self([0; 1500]);
        buf.0[..packet.len()].copy_from_slice(packet);
        buf
    }
}

/// The master key‖salt 0, 1, 2, … for `profile`.
fn key(profile: Profile) -> Vec<u8> {
    (0..profile.master_key_and_salt_len())
        .map(|i| u8::try_from(i).unwrap())
        .collect()
}

fn pair(profile: Profile, window: u64) -> (Session, Session) {
    let k = key(profile);
    let tx = Session::new(profile, Direction::Outbound, &k, window).unwrap();
    let rx = Session::new(profile, Direction::Inbound, &k, window).unwrap();
    (tx, rx)
}

/// RTP: V=2, PT 96, `seq`, timestamp 160·seq, SSRC, then `payload_len`
/// octets of payload.
fn rtp(seq: u16, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i % 251) as u8));
    p
}

/// RTCP sender report, no report blocks: 28 octets, length field 6.
fn rtcp_sr(packet_count: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[0x11; 8]); // NTP timestamp
    p.extend_from_slice(&0x2233_4455_u32.to_be_bytes()); // RTP timestamp
    p.extend_from_slice(&packet_count.to_be_bytes());
    p.extend_from_slice(&(packet_count * 160).to_be_bytes());
    p
}

/// Where the SRTCP trailer of a `len`-octet packet sits: (offset of the
/// E‖SRTCP-index word, end of the tag). RFC 3711 §3.4 puts the word before
/// the HMAC tag; RFC 7714 §9 makes the GCM tag part of the ciphertext, so the
/// word comes last.
fn srtcp_trailer(profile: Profile, len: usize) -> (usize, usize) {
    match profile {
        Profile::AeadAes256Gcm | Profile::AeadAes128Gcm => (len - 4, len - 4),
        Profile::AesCm128HmacSha1_80 | Profile::AesCm128HmacSha1_32 => {
            (len - 4 - profile.rtcp_tag_len(), len)
        }
    }
}

fn status(result: Result<usize, LibSrtpError>) -> Status {
    result
        .unwrap_err()
        .status()
        .expect("libsrtp itself should have refused")
}

#[test]
fn rtp_round_trips_for_every_profile() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, 0);
        for (seq, payload_len) in [(1u16, 0), (2, 1), (3, 160), (4, 1200)] {
            let plain = rtp(seq, payload_len);
            let mut buf = Buf::with(&plain);
            let len = tx.protect(&mut buf.0, plain.len()).unwrap();
            assert_eq!(len, plain.len() + profile.rtp_tag_len(), "{profile:?}");
            assert_eq!(buf.0[..12], plain[..12], "{profile:?}: header stays clear");
            if payload_len > 0 {
                assert_ne!(
                    buf.0[12..plain.len()],
                    plain[12..],
                    "{profile:?}: payload encrypted"
                );
            }
            let len = rx.unprotect(&mut buf.0, len).unwrap();
            assert_eq!(buf.0[..len], plain[..], "{profile:?} seq {seq}");
        }
        assert_eq!(tx.roc(SSRC).unwrap(), 0);
        assert_eq!(rx.roc(SSRC).unwrap(), 0);
    }
}

#[test]
fn rtcp_round_trips_for_every_profile() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, 0);
        for count in 1..=3 {
            let plain = rtcp_sr(count);
            let mut buf = Buf::with(&plain);
            let len = tx.protect_rtcp(&mut buf.0, plain.len()).unwrap();
            assert_eq!(len, plain.len() + 4 + profile.rtcp_tag_len(), "{profile:?}");
            assert_eq!(
                buf.0[..8],
                plain[..8],
                "{profile:?}: first 8 octets stay clear"
            );
            let (at, _) = srtcp_trailer(profile, len);
            let e_and_index = u32::from_be_bytes(buf.0[at..at + 4].try_into().unwrap());
            assert_eq!(e_and_index >> 31, 1, "{profile:?}: E bit set");
            assert_eq!(
                e_and_index & 0x7fff_ffff,
                count,
                "{profile:?}: SRTCP index starts at 1"
            );
            let len = rx.unprotect_rtcp(&mut buf.0, len).unwrap();
            assert_eq!(buf.0[..len], plain[..], "{profile:?}");
        }
    }
}

#[test]
fn tampered_tag_fails_authentication_and_does_not_poison_the_stream() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, 0);

        let plain = rtp(7, 100);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        let good = Buf::with(&buf.0[..len]);
        buf.0[len - 1] ^= 0x01;
        let got = status(rx.unprotect(&mut buf.0, len));
        assert!(got.is_auth_fail(), "{profile:?}: RTP tamper gave {got}");
        // The failed packet must not enter the replay window.
        let mut buf = good;
        assert_eq!(rx.unprotect(&mut buf.0, len).unwrap(), plain.len());

        let plain = rtcp_sr(1);
        let mut buf = Buf::with(&plain);
        let len = tx.protect_rtcp(&mut buf.0, plain.len()).unwrap();
        let (_, tag_end) = srtcp_trailer(profile, len);
        buf.0[tag_end - 1] ^= 0x80;
        let got = status(rx.unprotect_rtcp(&mut buf.0, len));
        assert!(got.is_auth_fail(), "{profile:?}: RTCP tamper gave {got}");
    }
}

#[test]
fn replayed_packets_fail_the_replay_check() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, 0);

        let plain = rtp(1000, 50);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        let srtp = Buf::with(&buf.0[..len]);
        rx.unprotect(&mut buf.0, len).unwrap();
        let mut again = Buf::with(&srtp.0[..len]);
        assert_eq!(
            status(rx.unprotect(&mut again.0, len)),
            Status::ReplayFail,
            "{profile:?}"
        );

        let plain = rtcp_sr(1);
        let mut buf = Buf::with(&plain);
        let len = tx.protect_rtcp(&mut buf.0, plain.len()).unwrap();
        let srtcp = Buf::with(&buf.0[..len]);
        rx.unprotect_rtcp(&mut buf.0, len).unwrap();
        let mut again = Buf::with(&srtcp.0[..len]);
        let got = status(rx.unprotect_rtcp(&mut again.0, len));
        assert_eq!(got, Status::ReplayFail, "{profile:?}");
        assert!(got.is_replay());
    }
}

#[test]
fn packets_behind_the_window_are_replay_old() {
    let profile = Profile::AesCm128HmacSha1_80;
    let (mut tx, mut rx) = pair(profile, 64);
    let mut first = None;
    for seq in 1..=100u16 {
        let plain = rtp(seq, 20);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        if seq == 1 {
            first = Some((Buf::with(&buf.0[..len]), len));
        } else {
            rx.unprotect(&mut buf.0, len).unwrap();
        }
    }
    // Seq 1 was never delivered, but 99 packets later it is outside a
    // 64-packet window.
    let (mut late, len) = first.unwrap();
    let got = status(rx.unprotect(&mut late.0, len));
    assert_eq!(got, Status::ReplayOld);
    assert!(got.is_replay());
}

#[test]
fn reordering_inside_the_window_is_accepted() {
    let (mut tx, mut rx) = pair(Profile::AeadAes128Gcm, 0);
    let mut protected = Vec::new();
    for seq in 1..=10u16 {
        let plain = rtp(seq, 30);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        protected.push((Buf::with(&buf.0[..len]), len, plain));
    }
    for (mut buf, len, plain) in protected.into_iter().rev() {
        let n = rx.unprotect(&mut buf.0, len).unwrap();
        assert_eq!(buf.0[..n], plain[..]);
    }
}

#[test]
fn outbound_refuses_to_protect_an_index_twice() {
    let (mut tx, _) = pair(Profile::AesCm128HmacSha1_80, 0);
    let plain = rtp(5, 10);
    let mut buf = Buf::with(&plain);
    tx.protect(&mut buf.0, plain.len()).unwrap();
    let mut buf = Buf::with(&plain);
    assert_eq!(
        status(tx.protect(&mut buf.0, plain.len())),
        Status::ReplayFail
    );
}

#[test]
fn sequence_wrap_advances_the_roc_on_both_sides() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = pair(profile, 0);
        for seq in (65530..=65535u16).chain(0..=5) {
            let plain = rtp(seq, 64);
            let mut buf = Buf::with(&plain);
            let len = tx.protect(&mut buf.0, plain.len()).unwrap();
            let len = rx.unprotect(&mut buf.0, len).unwrap();
            assert_eq!(buf.0[..len], plain[..], "{profile:?} seq {seq}");
            let expected_roc = if seq >= 65530 { 0 } else { 1 };
            assert_eq!(tx.roc(SSRC).unwrap(), expected_roc, "{profile:?} seq {seq}");
            assert_eq!(rx.roc(SSRC).unwrap(), expected_roc, "{profile:?} seq {seq}");
        }
    }
}

#[test]
fn set_roc_is_pending_until_the_next_packet_and_must_match_on_both_sides() {
    let profile = Profile::AeadAes256Gcm;
    let (mut tx, mut rx) = pair(profile, 0);
    // Unknown SSRC: a wildcard session has no stream before the first packet.
    assert_eq!(
        tx.set_roc(SSRC, 3).unwrap_err().status(),
        Some(Status::BadParam)
    );
    assert_eq!(tx.roc(SSRC).unwrap_err().status(), Some(Status::BadParam));

    let send = |tx: &mut Session, rx: &mut Session, seq: u16| {
        let plain = rtp(seq, 40);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        rx.unprotect(&mut buf.0, len)
            .map(|n| assert_eq!(buf.0[..n], plain[..]))
    };
    send(&mut tx, &mut rx, 10).unwrap();

    tx.set_roc(SSRC, 3).unwrap();
    rx.set_roc(SSRC, 3).unwrap();
    assert_eq!(tx.roc(SSRC).unwrap(), 0, "pending, not applied yet");
    send(&mut tx, &mut rx, 11).unwrap();
    assert_eq!(tx.roc(SSRC).unwrap(), 3);
    assert_eq!(rx.roc(SSRC).unwrap(), 3);

    // Only the sender jumps: the ROC feeds the IV/tag, so the receiver fails.
    tx.set_roc(SSRC, 4).unwrap();
    let got = send(&mut tx, &mut rx, 12).unwrap_err().status().unwrap();
    assert!(got.is_auth_fail(), "{got}");
}

#[test]
fn aes_128_gcm_protect_is_deterministic() {
    // Not the RFC 7714 §16.1.1 vector: that one starts from session keys and
    // libsrtp only takes a master key. Fixed master key 0..16, salt 0..12,
    // fixed packet: two fresh sessions must produce identical bytes.
    let profile = Profile::AeadAes128Gcm;
    let plain = rtp(0x1234, 38);
    let protect_once = || {
        let (mut tx, _) = pair(profile, 0);
        let mut buf = Buf::with(&plain);
        let len = tx.protect(&mut buf.0, plain.len()).unwrap();
        buf.0[..len].to_vec()
    };
    let first = protect_once();
    assert_eq!(first.len(), plain.len() + 16);
    assert_eq!(first, protect_once());
    assert_ne!(first[12..plain.len()], plain[12..]);
}

#[test]
fn wrapper_checks_refuse_before_calling_libsrtp() {
    let profile = Profile::AesCm128HmacSha1_80;
    assert_eq!(
        Session::new(profile, Direction::Outbound, &[0; 16], 0).unwrap_err(),
        LibSrtpError::BadKeyLength {
            expected: 30,
            got: 16
        }
    );

    let (mut tx, mut rx) = pair(profile, 0);
    let plain = rtp(1, 100);
    let mut buf = Buf::with(&plain);
    let short = plain.len() + RTP_TRAILER_ROOM - 1;
    assert_eq!(
        tx.protect(&mut buf.0[..short], plain.len()).unwrap_err(),
        LibSrtpError::BufferTooSmall {
            needed: short + 1,
            got: short
        }
    );
    let short = plain.len() + RTCP_TRAILER_ROOM - 1;
    assert!(matches!(
        tx.protect_rtcp(&mut buf.0[..short], plain.len()),
        Err(LibSrtpError::BufferTooSmall { .. })
    ));
    assert!(matches!(
        rx.unprotect(&mut buf.0[..10], 11),
        Err(LibSrtpError::BufferTooSmall { .. })
    ));
    assert_eq!(
        tx.protect(&mut buf.0[1..], plain.len()).unwrap_err(),
        LibSrtpError::Misaligned
    );
}

#[test]
fn libsrtp_rejects_bad_windows_and_short_packets() {
    let profile = Profile::AesCm128HmacSha1_80;
    let k = key(profile);
    for window in [1, 63, 0x8000, u64::MAX] {
        let err = Session::new(profile, Direction::Inbound, &k, window).unwrap_err();
        assert_eq!(err.status(), Some(Status::BadParam), "window {window}");
    }
    Session::new(profile, Direction::Inbound, &k, 64).unwrap();
    Session::new(profile, Direction::Inbound, &k, 0x7fff).unwrap();

    let (mut tx, _) = pair(profile, 0);
    let mut buf = Buf::with(&rtp(1, 0));
    assert_eq!(status(tx.protect(&mut buf.0, 11)), Status::BadParam);
}

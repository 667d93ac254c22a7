//! Interoperability with libsrtp 2, the reference SRTP implementation most
//! of the industry ships: for every profile and every AES-GCM backend,
//! libsrtp protects and sluice unprotects, and sluice protects and libsrtp
//! unprotects, RTP across a sequence-number wrap (ROC 0 → 1) and SRTCP;
//! tampered and replayed packets are refused on both sides.
//!
//! Needs the system libsrtp2 (Debian: libsrtp2-dev); .ci/run installs it.

use sluice::crypto::{AnyGcm, BackendKind};
use sluice::srtp::{MasterKey, SrtpError, SrtpProfile, SrtpSession};
use sluice_libsrtp::{Direction, Profile as RefProfile, Session as RefSession};

const SSRC: u32 = 0x5eed_cafe;
/// Starts close enough to 65535 that every run crosses the wrap.
const FIRST_SEQ: u16 = 65_525;
const PACKETS: u16 = 24;

/// libsrtp's name for the same profile.
fn ref_profile(profile: SrtpProfile) -> RefProfile {
    RefProfile::from_name(profile.name()).expect("libsrtp knows every profile sluice speaks")
}

fn material(profile: SrtpProfile, seed: u8) -> Vec<u8> {
    (0..profile.key_material_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sluice_session(profile: SrtpProfile, kind: BackendKind, seed: u8) -> SrtpSession<AnyGcm> {
    let key = MasterKey::new(profile, &material(profile, seed)).expect("material length");
    SrtpSession::new(AnyGcm::new(kind), &key).expect("session")
}

fn ref_session(profile: SrtpProfile, direction: Direction, seed: u8) -> RefSession {
    RefSession::new(ref_profile(profile), direction, &material(profile, seed), 0)
        .expect("libsrtp session")
}

/// RTP packets that vary the header: plain, with two CSRCs, with a one-byte
/// header extension (RFC 8285), and with padding, so the authenticated
/// header length differs from packet to packet.
fn rtp_packet(n: u16) -> Vec<u8> {
    let seq = FIRST_SEQ.wrapping_add(n);
    let mut p = vec![0x80, 0x6f];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(n) * 960).to_be_bytes());
    p.extend(SSRC.to_be_bytes());
    match n % 4 {
        1 => {
            p[0] |= 2; // CC = 2
            p.extend([0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22]);
        }
        2 => {
            p[0] |= 0x10; // X
            // 0xBEDE, one word: id 1 len 1 (2 bytes: audio level), padding.
            p.extend([0xbe, 0xde, 0x00, 0x01, 0x10, 0x85, 0x00, 0x00]);
        }
        3 => p[0] |= 0x20, // P: padding added below
        _ => {}
    }
    let payload_len = if n.is_multiple_of(2) { 160 } else { 1200 };
    p.extend((0..payload_len).map(|i| (i as u8) ^ (n as u8)));
    if n % 4 == 3 {
        p.extend([0, 0, 0, 4]);
    }
    p
}

fn rtcp_packet(n: u8) -> Vec<u8> {
    // A receiver report with one report block, then an SDES CNAME.
    let mut p = vec![0x81, 201, 0, 7];
    p.extend(SSRC.to_be_bytes());
    p.extend([
        0x01, 0x02, 0x03, 0x04, n, 0, 0, 1, 0, 0, 0xff, 0xfe, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p.extend([0x81, 202, 0, 3]);
    p.extend(SSRC.to_be_bytes());
    p.extend([1, 4, b'b', b'o', b'b', b'!', 0, 0]);
    p
}

fn with_room(packet: &[u8]) -> Vec<u8> {
    let mut buf = packet.to_vec();
    buf.resize(packet.len() + sluice_libsrtp::RTCP_TRAILER_ROOM, 0);
    buf
}

/// Every AES-GCM backend, the GPU one included (through pocl's CPU
/// device in CI; with `CI` set a missing device fails the test).
fn aead_kinds() -> Vec<BackendKind> {
    let kinds = BackendKind::usable();
    assert!(
        kinds.contains(&BackendKind::Gpu) || std::env::var_os("CI").is_none(),
        "CI is set but the GPU backend has no OpenCL device: install pocl-opencl-icd"
    );
    kinds
}

fn cases() -> impl Iterator<Item = (SrtpProfile, BackendKind)> {
    SrtpProfile::ALL.into_iter().flat_map(|profile| {
        let kinds = if profile.is_aead() {
            aead_kinds()
        } else {
            vec![BackendKind::default()]
        };
        kinds.into_iter().map(move |kind| (profile, kind))
    })
}

#[test]
fn libsrtp_protects_sluice_unprotects() {
    for (profile, kind) in cases() {
        let mut libsrtp = ref_session(profile, Direction::Outbound, 1);
        let mut sluice = sluice_session(profile, kind, 1);
        for n in 0..PACKETS {
            let plain = rtp_packet(n);
            let mut buf = with_room(&plain);
            let len = libsrtp
                .protect(&mut buf, plain.len())
                .expect("libsrtp protects");
            assert_eq!(len, plain.len() + profile.rtp_tag_len());
            let wire = buf[..len].to_vec();

            let mut tampered = wire.clone();
            *tampered.last_mut().expect("non-empty") ^= 0x01;
            let tampered_len = tampered.len();
            assert_eq!(
                sluice.unprotect_rtp(&mut tampered, tampered_len),
                Err(SrtpError::AuthFailed),
                "{profile}/{kind}: tampered tag, packet {n}"
            );

            let got = sluice
                .unprotect_rtp(&mut buf, len)
                .unwrap_or_else(|e| panic!("{profile}/{kind} packet {n}: {e}"));
            assert_eq!(&buf[..got], &plain[..], "{profile}/{kind}: packet {n}");

            let mut replay = wire.clone();
            assert_eq!(
                sluice.unprotect_rtp(&mut replay, len),
                Err(SrtpError::Replayed),
                "{profile}/{kind}: replay {n}"
            );
        }
        assert_eq!(
            sluice.received_roc(SSRC),
            Some(1),
            "{profile}/{kind}: crossed the wrap"
        );

        for n in 0..4 {
            let plain = rtcp_packet(n);
            let mut buf = with_room(&plain);
            let len = libsrtp
                .protect_rtcp(&mut buf, plain.len())
                .expect("libsrtp protects RTCP");
            let wire = buf[..len].to_vec();
            let mut tampered = wire.clone();
            tampered[10] ^= 0x80;
            assert_eq!(
                sluice.unprotect_rtcp(&mut tampered, len),
                Err(SrtpError::AuthFailed),
                "{profile}/{kind}"
            );
            let got = sluice
                .unprotect_rtcp(&mut buf, len)
                .unwrap_or_else(|e| panic!("{profile}/{kind} RTCP {n}: {e}"));
            assert_eq!(&buf[..got], &plain[..], "{profile}/{kind}: RTCP {n}");
            let mut replay = wire;
            assert_eq!(
                sluice.unprotect_rtcp(&mut replay, len),
                Err(SrtpError::Replayed),
                "{profile}/{kind}"
            );
        }
    }
}

#[test]
fn sluice_protects_libsrtp_unprotects() {
    for (profile, kind) in cases() {
        let mut sluice = sluice_session(profile, kind, 2);
        let mut libsrtp = ref_session(profile, Direction::Inbound, 2);
        for n in 0..PACKETS {
            let plain = rtp_packet(n);
            let mut buf = with_room(&plain);
            let len = sluice
                .protect_rtp(&mut buf, plain.len())
                .expect("sluice protects");
            let wire = buf[..len].to_vec();

            let mut tampered = wire.clone();
            *tampered.last_mut().expect("non-empty") ^= 0x01;
            let err = libsrtp
                .unprotect(&mut tampered, len)
                .expect_err("libsrtp must refuse a tampered tag");
            assert!(
                err.status().is_some_and(|s| s.is_auth_fail()),
                "{profile}/{kind}: tampered packet {n}: {err}"
            );

            let got = libsrtp
                .unprotect(&mut buf, len)
                .unwrap_or_else(|e| panic!("{profile}/{kind} packet {n}: {e}"));
            assert_eq!(&buf[..got], &plain[..], "{profile}/{kind}: packet {n}");

            let mut replay = wire;
            let err = libsrtp
                .unprotect(&mut replay, len)
                .expect_err("libsrtp must refuse a replay");
            assert!(
                err.status().is_some_and(|s| s.is_replay()),
                "{profile}/{kind}: replay {n}: {err}"
            );
        }
        assert_eq!(
            libsrtp.roc(SSRC).expect("libsrtp knows the stream"),
            1,
            "{profile}/{kind}"
        );

        for n in 0..4 {
            let plain = rtcp_packet(n);
            let mut buf = with_room(&plain);
            let len = sluice
                .protect_rtcp(&mut buf, plain.len())
                .expect("sluice protects RTCP");
            let wire = buf[..len].to_vec();
            let mut tampered = wire.clone();
            tampered[10] ^= 0x80;
            let err = libsrtp
                .unprotect_rtcp(&mut tampered, len)
                .expect_err("tampered SRTCP");
            assert!(
                err.status().is_some_and(|s| s.is_auth_fail()),
                "{profile}/{kind}: {err}"
            );
            let got = libsrtp
                .unprotect_rtcp(&mut buf, len)
                .unwrap_or_else(|e| panic!("{profile}/{kind} RTCP {n}: {e}"));
            assert_eq!(&buf[..got], &plain[..], "{profile}/{kind}: RTCP {n}");
            let mut replay = wire;
            let err = libsrtp
                .unprotect_rtcp(&mut replay, len)
                .expect_err("replayed SRTCP");
            assert!(
                err.status().is_some_and(|s| s.is_replay()),
                "{profile}/{kind}: {err}"
            );
        }
    }
}

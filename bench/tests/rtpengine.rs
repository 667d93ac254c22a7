//! The rtpengine target against a real rtpengine on 127.0.0.1: SRTP from
//! each publisher reaches every other participant intact, decrypted by
//! rtpengine and encrypted again under a different key.
//!
//! Needs Debian's `rtpengine-daemon` (CI installs it); without it these
//! tests fail, they do not skip. Each test starts its own rtpengine and
//! sends 20 packets per stream and path, with 2 s receive timeouts.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sluice::crypto::RingGcm;
use sluice::rtp::{PayloadType, RtpBuilder, RtpPacket, SeqNum, Ssrc};
use sluice::srtp::{SrtpProfile, SrtpSession};
use sluice_bench::rtpengine::Rtpengine;
use sluice_bench::target::{LegPlan, MeetingSpec, StreamKind, StreamSpec, Target, TargetError};

const PACKETS: u16 = 20;

fn audio(ssrc: u32) -> StreamSpec {
    StreamSpec {
        ssrc,
        kind: StreamKind::Audio,
        payload_type: 111,
    }
}

fn video(ssrc: u32) -> StreamSpec {
    StreamSpec {
        ssrc,
        kind: StreamKind::Video,
        payload_type: 96,
    }
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// A payload that says which stream and packet it belongs to.
fn payload(stream: &StreamSpec, seq: u16) -> Vec<u8> {
    let len = match stream.kind {
        StreamKind::Audio => 160,
        StreamKind::Video => 1000,
    };
    let seed = stream.ssrc.to_be_bytes();
    (0..len)
        .map(|i| seed[i % 4] ^ (i as u8) ^ (seq as u8))
        .collect()
}

/// Admits `meeting`, has every publisher send `PACKETS` SRTP packets per
/// stream to each of its paths, and checks that every other participant
/// gets each one, intact, from the relay address its plan names.
fn relays(meeting: &MeetingSpec, engine: Rtpengine) {
    let profile = meeting.profile;
    let mut engine = engine;
    assert!(engine.pid().is_some());
    assert!(engine.sdes(), "{}", engine.describe());
    assert_eq!(
        engine.describe(),
        format!(
            "rtpengine {} userspace, SDES {profile} (re-encrypted per leg)",
            engine.version()
        )
    );

    let n = meeting.participants();
    let sockets: Vec<UdpSocket> = (0..n).map(|_| socket()).collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let plans: Vec<LegPlan> = engine.admit(meeting, &addrs).unwrap();
    assert_eq!(plans.len(), n);
    for (p, plan) in plans.iter().enumerate() {
        let publishes = p < meeting.publishers.len();
        assert_eq!(plan.sends.len(), if publishes { n - 1 } else { 0 });
        let others = meeting.publishers.len() - usize::from(publishes);
        assert_eq!(plan.receives.len(), others, "participant {p}");
    }

    // Each publisher has one key for all its calls: protect once, send the
    // same bytes to every path, as the load engine does.
    for (p, streams) in meeting.publishers.iter().enumerate() {
        let key = plans[p].sends[0].key.clone().expect("an SDES key");
        for path in &plans[p].sends {
            assert_eq!(
                path.key.as_ref().map(|k| k.as_bytes()),
                Some(key.as_bytes())
            );
        }
        let mut session = SrtpSession::new(RingGcm, &key).unwrap();
        for seq in 0..PACKETS {
            for stream in streams {
                let mut buf = [0u8; 1500];
                let pt = PayloadType::new(stream.payload_type).unwrap();
                let len = RtpBuilder::new(pt, SeqNum(seq), u32::from(seq) * 960, Ssrc(stream.ssrc))
                    .write(&payload(stream, seq), &mut buf)
                    .unwrap();
                let len = session.protect_rtp(&mut buf, len).unwrap();
                for path in &plans[p].sends {
                    sockets[p].send_to(&buf[..len], path.relay).unwrap();
                }
            }
            // Paced a little, so no socket buffer overflows on a busy box.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    let streams: HashMap<u32, StreamSpec> = meeting
        .publishers
        .iter()
        .flatten()
        .map(|s| (s.ssrc, *s))
        .collect();
    for (r, plan) in plans.iter().enumerate() {
        let mut sessions: HashMap<SocketAddr, SrtpSession<RingGcm>> = HashMap::new();
        for path in &plan.receives {
            let key = path.key.as_ref().expect("rtpengine's SDES key");
            for sender in &plans {
                for send in &sender.sends {
                    let send_key = send.key.as_ref().unwrap();
                    assert_ne!(key.as_bytes(), send_key.as_bytes(), "rtpengine re-keys");
                }
            }
            sessions.insert(path.relay, SrtpSession::new(RingGcm, key).unwrap());
        }
        let expected: usize = meeting
            .publishers
            .iter()
            .enumerate()
            .filter(|&(p, _)| p != r)
            .map(|(_, s)| s.len() * usize::from(PACKETS))
            .sum();
        let mut seen = HashMap::new();
        for _ in 0..expected {
            let mut buf = [0u8; 1500];
            let (len, from) = sockets[r]
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("participant {r}: {e} after {}", seen.len()));
            let session = sessions
                .get_mut(&from)
                .unwrap_or_else(|| panic!("participant {r}: from {from}, not a relay address"));
            let len = session.unprotect_rtp(&mut buf, len).unwrap();
            let packet = RtpPacket::parse(&buf[..len]).unwrap();
            let ssrc = packet.header().ssrc().0;
            let seq = packet.header().sequence().0;
            let stream = streams[&ssrc];
            assert_eq!(packet.header().payload_type().get(), stream.payload_type);
            assert_eq!(packet.payload(), payload(&stream, seq), "{ssrc:#x}/{seq}");
            assert!(
                seen.insert((ssrc, seq), from).is_none(),
                "duplicate {ssrc:#x}/{seq}"
            );
        }
        assert_eq!(seen.len(), expected, "participant {r}");
    }
}

fn meeting(
    profile: SrtpProfile,
    publishers: Vec<Vec<StreamSpec>>,
    subscribers: usize,
) -> MeetingSpec {
    MeetingSpec {
        index: 0,
        e2ee: false,
        profile,
        publishers,
        subscribers,
    }
}

/// A small rtpengine: the tests run side by side, each with its own.
fn small(profile: SrtpProfile) -> Rtpengine {
    started(Rtpengine::start_with_ports(profile, 512))
}

/// The engine, or a failure that reads as the sentence it carries (such
/// as which package to install).
fn started(engine: Result<Rtpengine, TargetError>) -> Rtpengine {
    engine.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn aead_aes_256_gcm_reaches_two_subscribers() {
    let profile = SrtpProfile::AeadAes256Gcm;
    // The default start, as the benchmark makes it.
    let engine = started(Rtpengine::start(profile));
    relays(&meeting(profile, vec![vec![audio(0x5eed_0001)]], 2), engine);
}

#[test]
fn aes_cm_128_hmac_sha1_80_reaches_one_subscriber() {
    let profile = SrtpProfile::AesCm128HmacSha1_80;
    relays(
        &meeting(profile, vec![vec![audio(0x5eed_0002)]], 1),
        small(profile),
    );
}

#[test]
fn two_publishers_with_audio_and_video_reach_each_other_and_a_subscriber() {
    let profile = SrtpProfile::AeadAes256Gcm;
    let publishers = vec![
        vec![audio(0x5eed_0010), video(0x5eed_0011)],
        vec![audio(0x5eed_0020)],
    ];
    relays(&meeting(profile, publishers, 1), small(profile));
}

#[test]
fn the_other_two_profiles_work_over_sdes_too() {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_32] {
        relays(
            &meeting(profile, vec![vec![audio(0x5eed_0030)]], 1),
            small(profile),
        );
    }
}

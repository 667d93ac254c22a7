//! Offers shaped like Chromium's, and what sluice makes of them.

use super::*;
use crate::identity::{DtlsIdentity, Fingerprint};

const FP: &str = "sha-256 0F:74:31:25:CB:A2:13:EC:28:6F:6D:2C:61:FF:5D:C2:BC:B9:DB:3D:98:14:8D:1A:BB:EA:33:0C:A4:60:A8:8E";

/// One m-line the way Chromium writes it (sendonly publisher by default).
fn audio(mid: &str, dir: &str, ssrc: u32) -> String {
    format!(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\n\
         c=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:Xy7q\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=ice-options:trickle\r\n\
         a=fingerprint:{FP}\r\n\
         a=setup:actpass\r\n\
         a=mid:{mid}\r\n\
         a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
         a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
         a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a={dir}\r\n\
         a=msid:- track-a\r\n\
         a=rtcp-mux\r\n\
         a=rtcp-rsize\r\n\
         a=rtpmap:111 opus/48000/2\r\n\
         a=rtcp-fb:111 transport-cc\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:63 red/48000/2\r\n\
         a=fmtp:63 111/111\r\n\
         a=rtpmap:9 G722/8000\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=ssrc:{ssrc} cname:abc\r\n\
         a=ssrc:{ssrc} msid:- track-a\r\n"
    )
}

fn video(mid: &str, dir: &str, ssrc: u32) -> String {
    format!(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n\
         c=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:Xy7q\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:{FP}\r\n\
         a=setup:actpass\r\n\
         a=mid:{mid}\r\n\
         a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a={dir}\r\n\
         a=rtcp-mux\r\n\
         a=rtcp-rsize\r\n\
         a=rtpmap:96 VP8/90000\r\n\
         a=rtcp-fb:96 goog-remb\r\n\
         a=rtcp-fb:96 transport-cc\r\n\
         a=rtcp-fb:96 ccm fir\r\n\
         a=rtcp-fb:96 nack\r\n\
         a=rtcp-fb:96 nack pli\r\n\
         a=rtpmap:97 rtx/90000\r\n\
         a=fmtp:97 apt=96\r\n\
         a=rtpmap:102 H264/90000\r\n\
         a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
         a=rtpmap:103 rtx/90000\r\n\
         a=fmtp:103 apt=102\r\n\
         a=ssrc-group:FID {ssrc} {rtx}\r\n\
         a=ssrc:{ssrc} cname:abc\r\n\
         a=ssrc:{rtx} cname:abc\r\n",
        rtx = ssrc + 1
    )
}

fn session(bundle: &str, media: &[String]) -> String {
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE {bundle}\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n{}",
        media.concat()
    )
}

fn whip_offer() -> String {
    session(
        "0 1",
        &[audio("0", "sendonly", 1111), video("1", "sendonly", 2222)],
    )
}

const RECEIVE: Purpose = Purpose::Receive {
    max_audio: 3,
    max_video: 4,
};

#[test]
fn a_chromium_publish_offer_is_read() {
    let offer = Offer::parse(&whip_offer(), Purpose::Publish).unwrap();
    assert_eq!(offer.ice_ufrag, "Xy7q");
    assert_eq!(offer.ice_pwd, "abcdefghijklmnopqrstuvwx");
    assert_eq!(offer.fingerprint, Fingerprint::parse(FP).unwrap());
    assert_eq!(offer.setup, Setup::ActPass);
    let [a, v] = &offer.media[..] else {
        panic!("two m-lines")
    };
    assert_eq!((a.kind, a.mid.as_str()), (MediaKind::Audio, "0"));
    assert_eq!(a.direction, Direction::SendOnly);
    let opus = a.codec.as_ref().unwrap();
    assert_eq!((opus.name, opus.payload_type), (CodecName::Opus, 111));
    assert!(opus.feedback.is_empty(), "transport-cc is not carried");
    assert_eq!(a.audio_level_extension, Some(1));
    assert_eq!(a.mid_extension, Some(4));
    assert_eq!(a.ssrcs, vec![1111]);
    let vp8 = v.codec.as_ref().unwrap();
    assert_eq!((vp8.name, vp8.payload_type), (CodecName::Vp8, 96));
    assert_eq!(vp8.feedback, ["goog-remb", "ccm fir", "nack", "nack pli"]);
    assert_eq!(v.audio_level_extension, None);
    assert_eq!(
        v.ssrcs,
        vec![2222],
        "the RTX SSRC of the FID group is not a stream"
    );
}

#[test]
fn h264_is_taken_only_with_packetization_mode_1() {
    let only_h264 = |fmtp: &str| {
        video("0", "sendonly", 5)
            .replace("96 97 102 103", "102")
            .replace(
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
                fmtp,
            )
    };
    let ok = Offer::parse(
        &session(
            "0",
            &[only_h264("packetization-mode=1;profile-level-id=42e01f")],
        ),
        Purpose::Publish,
    )
    .unwrap();
    assert_eq!(ok.media[0].codec.as_ref().unwrap().name, CodecName::H264);
    let err = Offer::parse(
        &session("0", &[only_h264("packetization-mode=0")]),
        Purpose::Publish,
    )
    .unwrap_err();
    assert_eq!(
        err,
        SdpError::Unacceptable(Unacceptable::NoCodec { mid: "0".into() })
    );
}

#[test]
fn offers_sluice_will_not_take_say_why() {
    let cases: Vec<(String, Purpose, Unacceptable)> = vec![
        (
            session("0", &[audio("0", "sendonly", 1), video("1", "sendonly", 2)]),
            Purpose::Publish,
            Unacceptable::NoBundle,
        ),
        (
            whip_offer().replacen("a=rtcp-mux\r\n", "", 1),
            Purpose::Publish,
            Unacceptable::NoRtcpMux { mid: "0".into() },
        ),
        (
            whip_offer().replace("a=setup:actpass", "a=setup:passive"),
            Purpose::Publish,
            Unacceptable::SetupPassive,
        ),
        (
            session(
                "0 1 2",
                &[
                    audio("0", "sendonly", 1),
                    video("1", "sendonly", 2),
                    video("2", "sendonly", 4),
                ],
            ),
            Purpose::Publish,
            Unacceptable::TooManyTracks {
                kind: "video",
                got: 2,
                max: 1,
            },
        ),
        (
            whip_offer(),
            RECEIVE,
            Unacceptable::WrongDirection {
                mid: "0".into(),
                direction: "sendonly",
                endpoint: "WHEP",
                expected: "recvonly",
            },
        ),
        (
            whip_offer().replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"),
            Purpose::Publish,
            Unacceptable::NotDtlsSrtp {
                mid: "0".into(),
                proto: "RTP/AVP".into(),
            },
        ),
        (
            session(
                "0",
                &[audio("0", "sendonly", 1).replace("opus/48000/2", "opus/48000/1")],
            ),
            Purpose::Publish,
            Unacceptable::NoCodec { mid: "0".into() },
        ),
    ];
    for (text, purpose, why) in cases {
        assert_eq!(
            Offer::parse(&text, purpose).unwrap_err(),
            SdpError::Unacceptable(why.clone()),
            "{why}"
        );
    }
    let slots: Vec<String> = (0..5)
        .map(|i| video(&i.to_string(), "recvonly", 10 + i))
        .collect();
    assert_eq!(
        Offer::parse(&session("0 1 2 3 4", &slots), RECEIVE).unwrap_err(),
        SdpError::Unacceptable(Unacceptable::TooManyTracks {
            kind: "video",
            got: 5,
            max: 4
        })
    );
}

#[test]
fn malformed_offers_are_400_material_with_a_reason() {
    for (text, says) in [
        (String::new(), "empty"),
        ("hello".to_owned(), ""),
        (
            whip_offer().replace("a=ice-ufrag:Xy7q\r\n", ""),
            "ice-ufrag",
        ),
        (
            whip_offer().replace("a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=ice-pwd:short"),
            "ice-pwd",
        ),
        (
            whip_offer().replace(&format!("a=fingerprint:{FP}\r\n"), ""),
            "fingerprint",
        ),
        (whip_offer().replace(FP, "sha-1 AB:CD"), "sha-1"),
        (whip_offer().replace("a=mid:0", "a=mid:"), "mid"),
        (
            whip_offer().replace("a=ssrc:1111 cname", "a=ssrc:x cname"),
            "ssrc",
        ),
        (
            whip_offer().replace("111 63 9 0 8", "111 abc"),
            "payload type",
        ),
        ("x".repeat(70_000), "bytes"),
    ] {
        match Offer::parse(&text, Purpose::Publish) {
            Err(SdpError::Malformed(why)) => assert!(why.contains(says), "{why:?} lacks {says:?}"),
            other => panic!("{says}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn a_data_channel_m_line_is_answered_rejected_and_left_out_of_bundle() {
    let app = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
               a=mid:2\r\na=sctp-port:5000\r\n"
        .to_owned();
    let text = session(
        "0 1 2",
        &[audio("0", "sendonly", 1), video("1", "sendonly", 2), app],
    );
    let offer = Offer::parse(&text, Purpose::Publish).unwrap();
    let id = DtlsIdentity::generate().unwrap();
    let answer = build_answer(&offer, Purpose::Publish, &params(&id, &[]));
    assert!(answer.contains("a=group:BUNDLE 0 1\r\n"), "{answer}");
    assert!(answer.contains("m=application 0 "), "{answer}");
}

fn params<'a>(id: &'a DtlsIdentity, slots: &'a [SlotSsrc]) -> AnswerParams<'a> {
    AnswerParams {
        ice_ufrag: "sluice01",
        ice_pwd: "relaypasswordrelaypassword",
        fingerprint: id.fingerprint(),
        candidates: CANDIDATES,
        session_id: 42,
        slots,
    }
}

static CANDIDATES: &[std::net::SocketAddr] = &[std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40000),
)];

#[test]
fn the_publish_answer_is_ice_lite_passive_and_mirrors_the_offer() {
    let offer = Offer::parse(&whip_offer(), Purpose::Publish).unwrap();
    let id = DtlsIdentity::generate().unwrap();
    let answer = build_answer(&offer, Purpose::Publish, &params(&id, &[]));
    for line in [
        "a=ice-lite",
        "a=group:BUNDLE 0 1",
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111",
        "m=video 40000 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 127.0.0.1",
        "a=setup:passive",
        "a=ice-ufrag:sluice01",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
        "a=end-of-candidates",
        "a=rtcp-mux",
        "a=recvonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtcp-fb:96 nack pli",
    ] {
        assert!(
            answer.contains(&format!("{line}\r\n")),
            "{line} missing in\n{answer}"
        );
    }
    assert!(answer.contains(&format!("a=fingerprint:{}\r\n", id.fingerprint())));
    assert!(!answer.contains("transport-cc"));
    assert!(
        !answer.contains("a=ssrc:"),
        "a publisher's answer declares no SSRC"
    );
    // The answer is itself valid SDP that the same parser reads back.
    let back =
        sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(answer.as_bytes())).unwrap();
    assert_eq!(back.media_descriptions.len(), 2);
}

#[test]
fn the_receive_answer_marks_slots_sendonly_with_their_ssrc() {
    let text = session(
        "0 1 2",
        &[
            audio("0", "recvonly", 1)
                .replace("a=ssrc:1 cname:abc\r\na=ssrc:1 msid:- track-a\r\n", ""),
            video("1", "recvonly", 2),
            video("2", "recvonly", 4),
        ],
    );
    let offer = Offer::parse(&text, RECEIVE).unwrap();
    let slots = [
        SlotSsrc {
            mid: "0".into(),
            ssrc: 0x5100_0000,
        },
        SlotSsrc {
            mid: "1".into(),
            ssrc: 0x5100_0001,
        },
        SlotSsrc {
            mid: "2".into(),
            ssrc: 0x5100_0002,
        },
    ];
    let id = DtlsIdentity::generate().unwrap();
    let answer = build_answer(&offer, RECEIVE, &params(&id, &slots));
    assert_eq!(answer.matches("a=sendonly\r\n").count(), 3, "{answer}");
    for slot in &slots {
        assert!(answer.contains(&format!("a=ssrc:{} cname:sluice\r\n", slot.ssrc)));
    }
    assert!(answer.contains("a=group:BUNDLE 0 1 2\r\n"));
}

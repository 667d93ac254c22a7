//! Arbitrary text as a WHIP and a WHEP offer; every offer accepted is
//! answered, and the answer must be SDP the same reader tokenises.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::sdp::{AnswerParams, Offer, Purpose, SlotSsrc, build_answer};

fn identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for purpose in [
        Purpose::Publish,
        Purpose::Receive {
            max_audio: 3,
            max_video: 4,
        },
    ] {
        let Ok(offer) = Offer::parse(text, purpose) else {
            continue;
        };
        let slots: Vec<SlotSsrc> = offer
            .media
            .iter()
            .zip(1u32..)
            .map(|(m, ssrc)| SlotSsrc {
                mid: m.mid.clone(),
                ssrc,
            })
            .collect();
        let answer = build_answer(
            &offer,
            purpose,
            &AnswerParams {
                ice_ufrag: "fuzz",
                ice_pwd: "fuzzpasswordfuzzpassword",
                fingerprint: identity().fingerprint(),
                candidates: &["127.0.0.1:4000".parse().unwrap()],
                session_id: 1,
                slots: &slots,
            },
        );
        assert!(answer.starts_with("v=0\r\n"));
    }
});

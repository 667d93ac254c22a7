//! Arbitrary bytes as STUN: the parser, every accessor, the integrity
//! check, and the ICE-lite agent answering them. A message the agent
//! answers must have verified under its password, and its response must
//! parse back and verify.

#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sluice_webrtc::ice::{IceLite, addressed_ufrag};
use sluice_webrtc::stun::StunMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = StunMessage::parse(data) {
        let _ = (m.class(), m.method(), m.transaction_id());
        let _ = (
            m.username(),
            m.priority(),
            m.use_candidate(),
            m.ice_controlling(),
        );
        let _ = m.xor_mapped_address();
        let _ = m.has_fingerprint();
        for (_, value) in m.attributes() {
            assert!(value.len() <= data.len());
        }
        let _ = m.verify_integrity(b"fuzzpasswordfuzzpassword");
    }
    let _ = addressed_ufrag(data);
    let mut ice = IceLite::new(
        "fuzz".into(),
        "fuzzpasswordfuzzpassword".into(),
        "peer".into(),
    );
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut out = [0u8; 256];
    if let Ok(answered) = ice.handle_stun(Instant::now(), from, data, &mut out) {
        StunMessage::parse(data)
            .unwrap()
            .verify_integrity(b"fuzzpasswordfuzzpassword")
            .expect("answered only after integrity verified");
        let resp = StunMessage::parse(&out[..answered.len]).expect("our response parses");
        resp.verify_integrity(b"fuzzpasswordfuzzpassword").unwrap();
        assert_eq!(resp.xor_mapped_address(), Some(from));
    }
});

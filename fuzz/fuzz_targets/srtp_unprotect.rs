//! SRTP and SRTCP unprotect on arbitrary bytes, for every profile: must
//! return an error or a plaintext length within the buffer, never panic.
//! The first byte picks the profile and the path; half the time the input
//! is first turned into a genuinely protected packet and then corrupted by
//! the rest of the input, so the fuzzer also reaches the code behind a
//! passing tag check (index estimation, replay window, decryption).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::crypto::AnyGcm;
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

fn session(profile: SrtpProfile) -> SrtpSession<AnyGcm> {
    let material: Vec<u8> = (0..profile.key_material_len()).map(|i| i as u8).collect();
    // The material length is the profile's own, so both calls succeed.
    let key = MasterKey::new(profile, &material).expect("valid length");
    SrtpSession::new(AnyGcm::default(), &key).expect("valid key")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let profile = SrtpProfile::ALL[usize::from(selector & 3)];
    let rtcp = selector & 4 != 0;
    let protect_first = selector & 8 != 0;
    let mut receiver = session(profile);
    let mut buf = rest.to_vec();
    buf.resize(rest.len() + 64, 0);
    let mut len = rest.len();

    if protect_first {
        let mut sender = session(profile);
        let protected = if rtcp {
            sender.protect_rtcp(&mut buf, len)
        } else {
            sender.protect_rtp(&mut buf, len)
        };
        if let Ok(n) = protected {
            len = n;
            // Corrupt one byte chosen by the input, if the input asks to.
            if selector & 16 != 0 && len > 0 {
                let at = usize::from(selector >> 5) * 7 % len;
                buf[at] ^= 0x5a;
            }
        }
    }
    for _ in 0..2 {
        let mut copy = buf.clone();
        let outcome = if rtcp {
            receiver.unprotect_rtcp(&mut copy, len)
        } else {
            receiver.unprotect_rtp(&mut copy, len)
        };
        if let Ok(n) = outcome {
            assert!(n <= len, "plaintext longer than the packet");
        }
    }
});

//! Arbitrary datagrams into a session whose ICE check already passed:
//! STUN and DTLS through `Session::handle_datagram`, the bytes split into
//! datagrams at every 0xFF byte pair, time stepping 10 ms per datagram.
//! Nothing may panic, and no keys may come out (the fuzzer has no
//! certificate matching the expected fingerprint).

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_webrtc::dtls::DtlsConfig;
use sluice_webrtc::identity::{DtlsIdentity, Fingerprint, HashAlgorithm};
use sluice_webrtc::session::{MAX_TRANSMIT, Session, SessionEvent, SessionParams};
use sluice_webrtc::stun::{Class, METHOD_BINDING, MessageWriter, attr};

fn identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().unwrap())
}

fn config() -> &'static DtlsConfig {
    static CONFIG: OnceLock<DtlsConfig> = OnceLock::new();
    CONFIG.get_or_init(DtlsConfig::new)
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut s = Session::new(
        config(),
        identity(),
        SessionParams {
            local_ufrag: "fuzz".into(),
            local_pwd: "fuzzpasswordfuzzpassword".into(),
            remote_ufrag: "peer".into(),
            remote_fingerprint: Fingerprint::of(HashAlgorithm::Sha256, b"no such certificate"),
        },
        t0,
    );
    let mut check = [0u8; 128];
    let len = MessageWriter::new(&mut check, Class::Request, METHOD_BINDING, [1; 12])
        .attribute(attr::USERNAME, b"fuzz:peer")
        .attribute(attr::USE_CANDIDATE, &[])
        .integrity(b"fuzzpasswordfuzzpassword")
        .fingerprint()
        .finish()
        .unwrap();
    s.handle_datagram(t0, from, &check[..len]).unwrap();
    let mut buf = [0u8; MAX_TRANSMIT];
    let mut now = t0;
    for datagram in data.split(|&b| b == 0xFF) {
        now += Duration::from_millis(10);
        let _ = s.handle_datagram(now, from, datagram);
        s.handle_timeout(now);
        while s.poll_transmit(&mut buf).is_some() {}
        while let Some(e) = s.poll_event() {
            assert!(
                !matches!(e, SessionEvent::Established(_)),
                "keys without the certificate"
            );
        }
    }
});

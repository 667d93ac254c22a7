//! The SIP edge on arbitrary bytes: a `Uas` with an allow-list, INVITE
//! rates, a per-source share and digest credentials, fed the data from an
//! allowed and a refused source, every call refused statelessly; the
//! digest parameter parser and the credentials file parser on the data.
//! Nothing may panic, and the UAS must hold nothing afterwards.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::sip::{Credentials, Event, SipLimits, Uas, UasConfig, client_authorization};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = client_authorization(&text, "pbx", "s3cret", "INVITE", "sip:1@x");
    let _ = Credentials::parse(&text);

    let local: SocketAddr = "192.0.2.10:5060".parse().expect("literal");
    let allowed: SocketAddr = "198.51.100.7:5060".parse().expect("literal");
    let refused: SocketAddr = "203.0.113.9:5060".parse().expect("literal");
    let mut uas = Uas::with_seed(UasConfig::new(local, "fuzz"), 2);
    let credentials = Credentials::parse("pbx:s3cret\n").expect("literal");
    uas.set_limits(SipLimits {
        allow: vec!["198.51.100.0/24".parse().expect("literal")],
        invite_rate: 2,
        invite_burst: 2,
        max_pending_per_source: 1,
        credentials: (data.first().copied().unwrap_or(0) & 1 == 1).then(|| Arc::new(credentials)),
        realm: "sluice".to_owned(),
    });
    let t0 = Instant::now();
    for from in [allowed, refused, allowed, allowed] {
        uas.handle_datagram(t0, from, data);
    }
    while let Some(event) = uas.poll_event() {
        if let Event::Incoming { call, .. } = event {
            uas.refuse_stateless(t0, call, 404, "Not Found", &[]);
        }
    }
    while uas.poll_transmit().is_some() {}
    while let Some(at) = uas.poll_timeout() {
        if at > t0 + Duration::from_secs(120) {
            break;
        }
        uas.handle_timeout(at);
        while uas.poll_transmit().is_some() {}
        while uas.poll_event().is_some() {}
    }
    assert_eq!(uas.active_calls(), 0);
});

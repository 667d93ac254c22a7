//! Drives the dial-out `Uac` with arbitrary bytes from the trunk: raw, and
//! spliced into a response that carries the real call's Via, Call-ID and
//! CSeq (so the bytes reach the transaction and digest code, not only the
//! matching), each chunk between NUL bytes one message (one starting 0xFF
//! also a transport error), over UDP, TCP or TLS. Then hangs up and
//! runs every timer. Nothing may panic, and the UAC must let go of the call.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::sip::{Dial, Transport, TrunkAccount, Uac, UacConfig};

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "192.0.2.10:5070".parse().expect("literal");
    let trunk: SocketAddr = "198.51.100.7:5060".parse().expect("literal");
    let transport = match data.first().map(|b| b & 3) {
        Some(1) => Transport::Tcp,
        Some(3) => Transport::Tls,
        _ => Transport::Udp,
    };
    let mut uac = Uac::new(UacConfig::new(local, transport, "fuzz"), 1);
    let t0 = Instant::now();
    let call = uac
        .dial(
            t0,
            Dial {
                to: "sip:+15551234@198.51.100.7".to_owned(),
                from: "sip:meet@192.0.2.10".to_owned(),
                display_name: None,
                next_hop: trunk,
                sdp: "v=0\r\n".to_owned(),
                account: Some(TrunkAccount {
                    user: "u".to_owned(),
                    password: "p".to_owned().into(),
                }),
                ring_timeout: Duration::from_secs(30),
            },
        )
        .expect("a dial");
    let invite = String::from_utf8(uac.poll_transmit().expect("the INVITE").payload)
        .expect("our INVITE is text");
    let (via, call_id, from) = (
        header(&invite, "Via: "),
        header(&invite, "Call-ID: "),
        header(&invite, "From: "),
    );
    for chunk in data.split(|b| *b == 0) {
        // A chunk that starts 0xFF is also a connection that could not be
        // opened, whatever state the call is in.
        if chunk.first() == Some(&0xFF) {
            uac.handle_transport_error(t0, trunk);
        }
        uac.handle_message(t0, transport, trunk, chunk);
        // The same bytes as the status line and headers of a response to
        // the INVITE (the CSeq after them, so a fuzzed one comes first).
        let mut spliced = b"SIP/2.0 ".to_vec();
        spliced.extend_from_slice(chunk);
        spliced.extend_from_slice(
            format!(
                "\r\nVia: {via}\r\nFrom: {from}\r\nTo: <sip:+15551234@198.51.100.7>;tag=f\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        uac.handle_message(t0, transport, trunk, &spliced);
        while uac.poll_transmit().is_some() {}
        while uac.poll_event().is_some() {}
    }
    uac.hangup(t0, call);
    let mut now = t0;
    let end = t0 + Duration::from_secs(600);
    while let Some(at) = uac.poll_timeout() {
        assert!(at <= end, "a timer beyond every RFC 3261 timeout");
        now = now.max(at);
        uac.handle_timeout(now);
        while uac.poll_transmit().is_some() {}
        while uac.poll_event().is_some() {}
    }
    assert_eq!(uac.calls(), 0, "every call ends and is let go");
});

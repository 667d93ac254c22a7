//! Feeds arbitrary bytes to the SIP message parser and the SDP offer
//! parser, and drives a `Uas` with them: as a datagram, then again (a
//! retransmission), then through every timer, answering whatever call it
//! raised. Nothing may panic, and the UAS must let go of what it held.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::sip::sdp::{AnswerSpec, build_answer, negotiate, parse_offer};
use sluice::sip::{Event, SipMessage, Uas, UasConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = SipMessage::parse(data) {
        assert!(msg.body.len() <= data.len());
        let _ = msg.header("Via");
    }
    if let Ok(offer) = parse_offer(data) {
        assert!(offer.port != 0);
        let _ = offer.rtcp_addr();
        if let Ok(n) = negotiate(&offer) {
            // Whatever was negotiated answers as SDP that reads back with
            // the same codec, telephone-event and rtcp-mux.
            let answer = build_answer(&AnswerSpec {
                address: "192.0.2.10".parse().expect("literal"),
                port: 30_000,
                codec: n.codec,
                telephone_event: n.telephone_event,
                telephone_events: n.telephone_events,
                telephone_event_clock: n.telephone_event_clock,
                crypto: None,
                direction: n.direction,
                session_id: 1,
                session_version: 1,
                rtcp_mux: n.rtcp_mux,
                rtcp_port: Some(30_001),
            });
            let back = parse_offer(answer.as_bytes()).expect("our answer parses");
            assert_eq!(back.codecs.first().map(|c| c.pt), Some(n.codec.pt));
            assert_eq!(back.rtcp_mux, n.rtcp_mux);
            assert_eq!(
                back.telephone_event.or(back.telephone_event_48k),
                n.telephone_event
            );
        }
    }

    let local: SocketAddr = "192.0.2.10:5060".parse().expect("literal");
    let peer: SocketAddr = "198.51.100.7:5060".parse().expect("literal");
    let mut uas = Uas::with_seed(UasConfig::new(local, "fuzz"), 1);
    let t0 = Instant::now();
    uas.handle_datagram(t0, peer, data);
    uas.handle_datagram(t0, peer, data);
    // The call logic answers every call with the lowest byte's choice.
    let pick = data.first().copied().unwrap_or(0) % 4;
    while let Some(event) = uas.poll_event() {
        match event {
            Event::Incoming { call, .. } => match pick {
                0 => uas.answer(t0, call, "v=0\r\n"),
                1 => uas.reject(t0, call, 403, "Forbidden", &[("Reason", "x")]),
                2 => uas.ringing(t0, call),
                _ => uas.hangup(t0, call),
            },
            Event::Reoffer { call, .. } => uas.answer_reinvite(t0, call, "v=0\r\n"),
            _ => {}
        }
    }
    while uas.poll_transmit().is_some() {}
    let mut now = t0;
    let end = t0 + Duration::from_secs(120);
    while let Some(at) = uas.poll_timeout() {
        assert!(at >= now, "timers never go back in time");
        if at > end {
            break;
        }
        now = at;
        uas.handle_timeout(now);
        while uas.poll_transmit().is_some() {}
        while uas.poll_event().is_some() {}
    }
    // Ringing-only calls stay up; everything else must have ended.
    if pick != 2 {
        assert_eq!(uas.active_calls(), 0);
        assert_eq!(uas.poll_timeout(), None);
    }
});

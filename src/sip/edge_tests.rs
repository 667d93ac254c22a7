//! Scenario tests for the UAS's edge ([`SipLimits`], stateless refusals,
//! token grammar), on simulated time, no sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const LOCAL: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn invite(from: &str, n: u32, extra: &str) -> Vec<u8> {
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                m=audio 6000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:5550001@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK-{n}\r\n\
From: <sip:pbx@{from}>;tag=f{n}\r\n\
To: <sip:5550001@127.0.0.1:5060>\r\n\
Call-ID: c{n}@{from}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:pbx@{from}>\r\n\
Max-Forwards: 70\r\n{extra}\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn limits() -> SipLimits {
    SipLimits {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        invite_rate: 5,
        invite_burst: 10,
        max_pending_per_source: 4,
        ..SipLimits::unlimited()
    }
}

fn uas(limits: SipLimits) -> Uas {
    let mut uas = Uas::with_seed(UasConfig::new(addr(LOCAL), "sluice-test"), 3);
    uas.set_limits(limits);
    uas
}

fn drain(uas: &mut Uas) -> Vec<String> {
    std::iter::from_fn(|| uas.poll_transmit())
        .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
        .collect()
}

fn incoming(uas: &mut Uas) -> Vec<CallId> {
    std::iter::from_fn(|| uas.poll_event())
        .filter_map(|e| match e {
            Event::Incoming { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

#[test]
fn sources_outside_the_allow_list_get_nothing() {
    let mut uas = uas(limits());
    let now = Instant::now();
    uas.handle_datagram(
        now,
        addr("192.0.2.9:5060"),
        &invite("192.0.2.9:5060", 1, ""),
    );
    assert!(drain(&mut uas).is_empty());
    assert!(incoming(&mut uas).is_empty());
    assert_eq!(uas.stats().not_allowed, 1);
    uas.handle_datagram(
        now,
        addr("127.0.0.2:5060"),
        &invite("127.0.0.2:5060", 2, ""),
    );
    assert_eq!(incoming(&mut uas).len(), 1);
}

#[test]
fn a_flood_from_one_source_leaves_room_for_another() {
    let mut uas = uas(limits());
    let t0 = Instant::now();
    let flooder = "127.0.0.2:5060";
    // 1,000 INVITEs in one second, never ACKed, all answered 200 by the
    // call logic (the worst case: a real meeting).
    let mut answered = 0;
    for n in 0..1000u32 {
        let now = t0 + Duration::from_millis(u64::from(n));
        uas.handle_datagram(now, addr(flooder), &invite(flooder, n, ""));
        for call in incoming(&mut uas) {
            uas.answer(now, call, "v=0\r\n");
            answered += 1;
        }
    }
    drain(&mut uas);
    let stats = uas.stats();
    // At most the share of unconfirmed calls is held for it...
    assert_eq!(answered, 4);
    assert_eq!(uas.active_calls(), 4);
    // ...the rest were cut by the rate (unanswered) or the share (503).
    assert_eq!(stats.rate_limited + stats.pending_limited, 996);
    assert!(stats.rate_limited > 900, "{stats:?}");
    // A caller from another source joins at once.
    let caller = "127.0.0.3:5060";
    let now = t0 + Duration::from_secs(1);
    uas.handle_datagram(now, addr(caller), &invite(caller, 5000, ""));
    let calls = incoming(&mut uas);
    assert_eq!(calls.len(), 1);
    uas.answer(now, calls[0], "v=0\r\n");
    let sent = drain(&mut uas);
    assert!(
        sent.iter().any(|m| m.starts_with("SIP/2.0 200")),
        "{sent:?}"
    );
}

#[test]
fn stateless_refusals_are_sent_once_and_keep_nothing() {
    let mut uas = uas(SipLimits::unlimited());
    let t0 = Instant::now();
    let from = "127.0.0.2:5060";
    uas.handle_datagram(t0, addr(from), &invite(from, 1, ""));
    let call = incoming(&mut uas)[0];
    uas.refuse_stateless(t0, call, 404, "Not Found", &[]);
    let sent = drain(&mut uas);
    assert!(sent[0].starts_with("SIP/2.0 100"), "{sent:?}");
    assert!(sent[1].starts_with("SIP/2.0 404 Not Found"), "{sent:?}");
    assert_eq!(sent.len(), 2);
    let ended: Vec<Event> = std::iter::from_fn(|| uas.poll_event()).collect();
    assert_eq!(
        ended,
        vec![Event::Ended {
            call,
            reason: EndReason::Rejected
        }]
    );
    assert_eq!(uas.active_calls(), 0);
    assert_eq!(uas.held(), (0, 0, 0), "no transaction, no timer");
    // No retransmission however long we wait.
    uas.handle_timeout(t0 + Duration::from_secs(60));
    assert!(drain(&mut uas).is_empty());
    assert_eq!(uas.stats().retransmissions_sent, 0);
    assert_eq!(uas.stats().stateless_refusals, 1);
}

#[test]
fn call_ids_and_tags_outside_the_grammar_get_400_and_are_not_echoed() {
    let mut uas = uas(SipLimits::unlimited());
    let now = Instant::now();
    let from = "127.0.0.2:5060";
    let good = String::from_utf8(invite(from, 1, "")).unwrap();
    for (bad, needle) in [
        (good.replace("Call-ID: c1@", "Call-ID: c\u{0}1@"), "\u{0}"),
        (
            good.replace("Call-ID: c1@", "Call-ID: c\u{1b}[2J1@"),
            "\u{1b}",
        ),
        (good.replace("Call-ID: c1@", "Call-ID: c1@@"), "c1@@"),
        (good.replace("tag=f1", "tag=f\u{1b}1"), "\u{1b}"),
        (good.replace("tag=f1", "tag=f\"1"), "f\"1"),
    ] {
        uas.handle_datagram(now, addr(from), bad.as_bytes());
        let sent = drain(&mut uas);
        assert_eq!(sent.len(), 1, "{bad:?}");
        assert!(sent[0].starts_with("SIP/2.0 400"), "{:?}", sent[0]);
        assert!(!sent[0].contains(needle), "echoed: {:?}", sent[0]);
        assert!(incoming(&mut uas).is_empty());
    }
    assert!(wire::is_call_id("a84b4c76e66710@pc33.atlanta.com"));
    assert!(wire::is_call_id(
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@[2001:db8::1]"
    ));
    assert!(!wire::is_call_id(""));
    assert!(!wire::is_call_id("a b"));
}

#[test]
fn digest_authentication_challenges_then_admits_the_trunk() {
    let credentials = Arc::new(Credentials::parse("pbx:s3cret\n").unwrap());
    let mut uas = uas(SipLimits {
        credentials: Some(credentials),
        ..SipLimits::unlimited()
    });
    let now = Instant::now();
    let from = "127.0.0.2:5060";
    uas.handle_datagram(now, addr(from), &invite(from, 1, ""));
    let sent = drain(&mut uas);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 401"), "{}", sent[0]);
    assert!(incoming(&mut uas).is_empty());
    assert_eq!(uas.held(), (0, 0, 0), "a challenge keeps no state");
    let challenge = sent[0]
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .expect("a challenge")
        .to_owned();
    let uri = "sip:5550001@127.0.0.1:5060";
    let wrong = client_authorization(&challenge, "pbx", "nope", "INVITE", uri).unwrap();
    uas.handle_datagram(
        now,
        addr(from),
        &invite(from, 2, &format!("Authorization: {wrong}\r\n")),
    );
    assert!(drain(&mut uas)[0].starts_with("SIP/2.0 401"));
    assert!(incoming(&mut uas).is_empty());
    let right = client_authorization(&challenge, "pbx", "s3cret", "INVITE", uri).unwrap();
    uas.handle_datagram(
        now,
        addr(from),
        &invite(from, 3, &format!("Authorization: {right}\r\n")),
    );
    assert_eq!(incoming(&mut uas).len(), 1);
    assert_eq!(uas.stats().auth_challenges, 2);
}

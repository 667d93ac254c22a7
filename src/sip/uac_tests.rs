//! Scenario tests of the dial-out [`Uac`] on simulated time, no sockets:
//! the test plays the trunk, reading what the UAC sends and writing the
//! trunk's responses and requests by hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::digest::{DigestAuth, Verdict};
use super::message::{SipMessage, StartLine};
use super::{
    CallId, Credentials, Dial, DialOutcome, Transport, TrunkAccount, Uac, UacConfig, UacEvent,
};

const SDP: &str = "v=0\r\no=sluice 1 1 IN IP4 127.0.0.1\r\ns=sluice\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
const FAR_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn trunk() -> SocketAddr {
    "127.0.0.2:5060".parse().unwrap()
}

fn uac(transport: Transport) -> Uac {
    Uac::new(
        UacConfig::new("127.0.0.1:5070".parse().unwrap(), transport, "sluice-test"),
        42,
    )
}

fn dial(account: Option<TrunkAccount>) -> Dial {
    Dial {
        to: "sip:+15551234@127.0.0.2".to_owned(),
        from: "sip:5550001@127.0.0.1".to_owned(),
        display_name: Some("Team meeting".to_owned()),
        next_hop: trunk(),
        sdp: SDP.to_owned(),
        account,
        ring_timeout: Duration::from_secs(30),
    }
}

/// Everything the UAC sent, as text.
fn sent(uac: &mut Uac) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(t) = uac.poll_transmit() {
        assert_eq!(t.to, trunk());
        out.push(String::from_utf8(t.payload).unwrap());
    }
    out
}

fn events(uac: &mut Uac) -> Vec<UacEvent> {
    std::iter::from_fn(|| uac.poll_event()).collect()
}

fn one(uac: &mut Uac) -> String {
    let mut all = sent(uac);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

fn start_line(msg: &str) -> &str {
    msg.lines().next().unwrap()
}

/// The trunk's response to `req`, with a To tag unless 100.
fn response(req: &str, status: u16, extra: &str, body: Option<&str>) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status} Whatever\r\n");
    for name in ["Via", "From"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name)));
    }
    let to = header(req, "To");
    if status == 100 || to.contains("tag=") {
        out.push_str(&format!("To: {to}\r\n"));
    } else {
        out.push_str(&format!("To: {to};tag=far1\r\n"));
    }
    for name in ["Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name)));
    }
    if status != 100 {
        out.push_str("Contact: <sip:gw@127.0.0.2:5060>\r\n");
    }
    out.push_str(extra);
    match body {
        Some(b) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out.into_bytes()
}

fn feed(uac: &mut Uac, now: Instant, data: &[u8]) {
    uac.handle_datagram(now, trunk(), data);
}

fn branch(msg: &str) -> &str {
    let via = header(msg, "Via");
    via.split(';')
        .find_map(|p| p.strip_prefix("branch="))
        .unwrap()
}

fn ended(call: CallId, outcome: DialOutcome, status: Option<u16>) -> UacEvent {
    UacEvent::Ended {
        call,
        outcome,
        status,
    }
}

#[test]
fn an_answered_call_is_acked_and_hung_up_with_bye() {
    let t0 = Instant::now();
    let mut uac = uac(Transport::Udp);
    let call = uac.dial(t0, dial(None)).unwrap();
    let invite = one(&mut uac);
    assert_eq!(
        start_line(&invite),
        "INVITE sip:+15551234@127.0.0.2 SIP/2.0"
    );
    assert!(header(&invite, "Via").starts_with("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK"));
    assert_eq!(header(&invite, "CSeq"), "1 INVITE");
    assert!(header(&invite, "From").starts_with("\"Team meeting\" <sip:5550001@127.0.0.1>;tag="));
    assert_eq!(header(&invite, "To"), "<sip:+15551234@127.0.0.2>");
    assert_eq!(header(&invite, "Contact"), "<sip:127.0.0.1:5070>");
    assert!(invite.ends_with(SDP));
    assert!(SipMessage::parse(invite.as_bytes()).is_ok());

    feed(&mut uac, t0, &response(&invite, 100, "", None));
    // Proceeding: Timer A no longer retransmits, Timer B no longer runs.
    uac.handle_timeout(t0 + Duration::from_secs(25));
    assert!(sent(&mut uac).is_empty());
    feed(&mut uac, t0, &response(&invite, 180, "", None));
    assert_eq!(
        events(&mut uac),
        [
            UacEvent::Provisional { call, status: 100 },
            UacEvent::Provisional { call, status: 180 }
        ]
    );

    let ok = response(
        &invite,
        200,
        "Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n",
        Some(FAR_SDP),
    );
    feed(&mut uac, t0, &ok);
    let ack = one(&mut uac);
    // §13.2.2.4: a new transaction to the remote target, the route set
    // reversed.
    assert_eq!(start_line(&ack), "ACK sip:gw@127.0.0.2:5060 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    assert_ne!(branch(&ack), branch(&invite));
    assert!(header(&ack, "To").ends_with(";tag=far1"));
    assert!(
        ack.contains("Route: <sip:p2;lr>\r\nRoute: <sip:p1;lr>\r\n"),
        "{ack}"
    );
    match events(&mut uac).as_slice() {
        [
            UacEvent::Answered {
                call: c,
                answer: Some(a),
            },
        ] => {
            assert_eq!(*c, call);
            assert_eq!(a.port, 6000);
        }
        other => panic!("{other:?}"),
    }
    // A retransmitted 2xx gets the same ACK again.
    feed(&mut uac, t0, &ok);
    assert_eq!(one(&mut uac), ack);

    uac.hangup(t0 + Duration::from_secs(5), call);
    let bye = one(&mut uac);
    assert_eq!(start_line(&bye), "BYE sip:gw@127.0.0.2:5060 SIP/2.0");
    assert_eq!(header(&bye, "CSeq"), "2 BYE");
    assert!(header(&bye, "To").ends_with(";tag=far1"));
    // Timer E retransmits the BYE until it is answered.
    uac.handle_timeout(t0 + Duration::from_millis(5600));
    assert_eq!(one(&mut uac), bye);
    feed(&mut uac, t0, &response(&bye, 200, "", None));
    assert_eq!(events(&mut uac), [ended(call, DialOutcome::Answered, None)]);
    // The call lingers 32 s for retransmissions, then is gone.
    assert_eq!(uac.calls(), 1);
    uac.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(uac.calls(), 0);
    assert_eq!(uac.poll_timeout(), None);
}

#[test]
fn timer_a_retransmits_on_udp_only_and_timer_b_ends_with_no_answer() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let mut long_ring = dial(None);
    long_ring.ring_timeout = Duration::from_secs(120);
    let call = u.dial(t0, long_ring.clone()).unwrap();
    let invite = one(&mut u);
    let mut at = t0;
    let mut interval = Duration::from_millis(500);
    for _ in 0..6 {
        at += interval;
        assert_eq!(u.poll_timeout(), Some(at));
        u.handle_timeout(at);
        assert_eq!(one(&mut u), invite);
        interval *= 2;
    }
    u.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(events(&mut u), [ended(call, DialOutcome::NoAnswer, None)]);

    let mut tcp = uac(Transport::Tcp);
    let call = tcp.dial(t0, long_ring).unwrap();
    let invite = one(&mut tcp);
    assert!(header(&invite, "Via").starts_with("SIP/2.0/TCP "));
    assert!(header(&invite, "Via").ends_with(";rport;alias"));
    assert_eq!(
        header(&invite, "Contact"),
        "<sip:127.0.0.1:5070;transport=tcp>"
    );
    tcp.handle_timeout(t0 + Duration::from_secs(4));
    assert!(
        sent(&mut tcp).is_empty(),
        "no Timer A on a reliable transport"
    );
    tcp.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(events(&mut tcp), [ended(call, DialOutcome::NoAnswer, None)]);
    // No linger on a stream.
    tcp.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(tcp.calls(), 0);
}

#[test]
fn final_refusals_are_acked_in_the_transaction_and_mapped_to_outcomes() {
    for (status, outcome) in [
        (486, DialOutcome::Busy),
        (600, DialOutcome::Busy),
        (480, DialOutcome::NoAnswer),
        (408, DialOutcome::NoAnswer),
        (503, DialOutcome::Failed),
        (404, DialOutcome::Failed),
        (302, DialOutcome::Failed),
    ] {
        let t0 = Instant::now();
        let mut u = uac(Transport::Udp);
        let call = u.dial(t0, dial(None)).unwrap();
        let invite = one(&mut u);
        let refusal = response(&invite, status, "", None);
        feed(&mut u, t0, &refusal);
        let ack = one(&mut u);
        assert_eq!(start_line(&ack), "ACK sip:+15551234@127.0.0.2 SIP/2.0");
        assert_eq!(
            branch(&ack),
            branch(&invite),
            "§17.1.1.3: the INVITE's branch"
        );
        assert_eq!(header(&ack, "CSeq"), "1 ACK");
        assert!(header(&ack, "To").ends_with(";tag=far1"));
        assert_eq!(events(&mut u), [ended(call, outcome, Some(status))]);
        // Timer D: a retransmitted final is ACKed again, no new event.
        feed(&mut u, t0, &refusal);
        assert_eq!(one(&mut u), ack);
        assert!(events(&mut u).is_empty());
    }
}

fn account() -> TrunkAccount {
    TrunkAccount {
        user: "pbx".to_owned(),
        password: Zeroizing::new("s3cret".to_owned()),
    }
}

#[test]
fn a_401_is_answered_with_sha256_digest_and_the_next_cseq() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(Some(account()))).unwrap();
    let invite = one(&mut u);
    // Our own dial-in verifier plays the trunk's side of the digest.
    let mut auth = DigestAuth::new(Some([9; 32]));
    let challenge = auth.challenge(t0, "trunk", false);
    feed(
        &mut u,
        t0,
        &response(
            &invite,
            401,
            &format!("WWW-Authenticate: {challenge}\r\n"),
            None,
        ),
    );
    let mut out = sent(&mut u);
    assert_eq!(out.len(), 2, "{out:#?}");
    let again = out.pop().unwrap();
    let ack = out.pop().unwrap();
    assert!(start_line(&ack).starts_with("ACK "));
    assert_eq!(header(&again, "CSeq"), "2 INVITE");
    assert_ne!(branch(&again), branch(&invite));
    assert_eq!(header(&again, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(header(&again, "From"), header(&invite, "From"));
    let creds = Credentials::parse("pbx:s3cret\n").unwrap();
    let value = header(&again, "Authorization");
    assert!(value.contains("nc=00000001"), "{value}");
    assert_eq!(
        auth.verify(t0, "trunk", &creds, "INVITE", Some(value)),
        Verdict::Valid
    );
    assert!(events(&mut u).is_empty());
    // The same nonce challenged again: the password is wrong, give up.
    feed(
        &mut u,
        t0,
        &response(
            &again,
            401,
            &format!("WWW-Authenticate: {challenge}\r\n"),
            None,
        ),
    );
    assert_eq!(sent(&mut u).len(), 1, "only the ACK");
    assert_eq!(
        events(&mut u),
        [ended(call, DialOutcome::Failed, Some(401))]
    );
}

#[test]
fn a_407_is_answered_with_md5_proxy_authorization_then_the_call_proceeds() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(Some(account()))).unwrap();
    let invite = one(&mut u);
    feed(
        &mut u,
        t0,
        &response(
            &invite,
            407,
            "Proxy-Authenticate: Digest realm=\"sbc\", nonce=\"abc\", qop=\"auth\"\r\n",
            None,
        ),
    );
    let again = sent(&mut u).pop().unwrap();
    let value = header(&again, "Proxy-Authorization");
    assert!(value.contains("algorithm=MD5"), "{value}");
    assert!(value.contains("uri=\"sip:+15551234@127.0.0.2\""), "{value}");
    feed(&mut u, t0, &response(&again, 200, "", Some(FAR_SDP)));
    let ack = one(&mut u);
    assert_eq!(header(&ack, "CSeq"), "2 ACK");
    assert!(
        matches!(events(&mut u).as_slice(), [UacEvent::Answered { call: c, .. }] if *c == call)
    );
    // Without an account a challenge is a failure.
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    feed(
        &mut u,
        t0,
        &response(
            &invite,
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n",
            None,
        ),
    );
    assert_eq!(
        events(&mut u),
        [ended(call, DialOutcome::Failed, Some(401))]
    );
}

#[test]
fn cancel_waits_for_a_provisional_then_the_487_is_acked() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    u.hangup(t0, call);
    assert!(
        sent(&mut u).is_empty(),
        "§9.1: no CANCEL before a provisional"
    );
    feed(&mut u, t0, &response(&invite, 180, "", None));
    let cancel = one(&mut u);
    assert_eq!(
        start_line(&cancel),
        "CANCEL sip:+15551234@127.0.0.2 SIP/2.0"
    );
    assert_eq!(branch(&cancel), branch(&invite));
    assert_eq!(header(&cancel, "CSeq"), "1 CANCEL");
    assert_eq!(header(&cancel, "To"), header(&invite, "To"));
    // Timer E until the CANCEL is answered.
    u.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(one(&mut u), cancel);
    feed(&mut u, t0, &response(&cancel, 200, "", None));
    u.handle_timeout(t0 + Duration::from_millis(1500));
    assert!(sent(&mut u).is_empty());
    feed(&mut u, t0, &response(&invite, 487, "", None));
    let ack = one(&mut u);
    assert!(start_line(&ack).starts_with("ACK "));
    assert_eq!(
        events(&mut u),
        [
            UacEvent::Provisional { call, status: 180 },
            ended(call, DialOutcome::Cancelled, Some(487))
        ]
    );
}

#[test]
fn ringing_past_the_ring_timeout_is_cancelled_as_no_answer() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Tcp);
    let mut d = dial(None);
    d.ring_timeout = Duration::from_secs(20);
    let call = u.dial(t0, d).unwrap();
    let invite = one(&mut u);
    feed(&mut u, t0, &response(&invite, 180, "", None));
    let _ = events(&mut u);
    assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_secs(20)));
    u.handle_timeout(t0 + Duration::from_secs(20));
    let cancel = one(&mut u);
    assert!(start_line(&cancel).starts_with("CANCEL "));
    feed(&mut u, t0, &response(&cancel, 200, "", None));
    feed(&mut u, t0, &response(&invite, 487, "", None));
    let _ack = one(&mut u);
    assert_eq!(
        events(&mut u),
        [ended(call, DialOutcome::NoAnswer, Some(487))]
    );
}

#[test]
fn a_2xx_racing_the_cancel_is_acked_and_hung_up() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    feed(&mut u, t0, &response(&invite, 180, "", None));
    u.hangup(t0, call);
    let _cancel = one(&mut u);
    feed(&mut u, t0, &response(&invite, 200, "", Some(FAR_SDP)));
    let out = sent(&mut u);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(start_line(&out[0]).starts_with("ACK "));
    assert!(start_line(&out[1]).starts_with("BYE "));
    feed(&mut u, t0, &response(&out[1], 200, "", None));
    assert_eq!(
        events(&mut u),
        [
            UacEvent::Provisional { call, status: 180 },
            ended(call, DialOutcome::Cancelled, None)
        ]
    );
}

#[test]
fn early_media_then_a_bye_from_the_far_end() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    feed(&mut u, t0, &response(&invite, 183, "", Some(FAR_SDP)));
    match events(&mut u).as_slice() {
        [
            UacEvent::EarlyMedia {
                call: c,
                status: 183,
                answer,
            },
        ] => {
            assert_eq!(*c, call);
            assert_eq!(answer.port, 6000);
        }
        other => panic!("{other:?}"),
    }
    feed(&mut u, t0, &response(&invite, 200, "", Some(FAR_SDP)));
    let _ack = one(&mut u);
    let _ = events(&mut u);
    let bye = format!(
        "BYE sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKfar\r\n\
         From: {};tag=far1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "To"),
        header(&invite, "From"),
        header(&invite, "Call-ID")
    );
    feed(&mut u, t0, bye.as_bytes());
    let ok = one(&mut u);
    assert_eq!(start_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), "7 BYE");
    assert_eq!(events(&mut u), [ended(call, DialOutcome::Answered, None)]);
    // A retransmitted BYE while the call lingers: 200 again, no event.
    feed(&mut u, t0, bye.as_bytes());
    assert!(start_line(&one(&mut u)).starts_with("SIP/2.0 200"));
    assert!(events(&mut u).is_empty());
    // A BYE for no call of ours.
    let stray = bye.replace(header(&invite, "Call-ID"), "nobody");
    feed(&mut u, t0, stray.as_bytes());
    assert!(start_line(&one(&mut u)).starts_with("SIP/2.0 481"));
}

#[test]
fn unwritable_dials_are_refused_and_junk_never_panics() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let mut d = dial(None);
    d.to = "sip:a@b\r\nX: y".to_owned();
    assert!(u.dial(t0, d).is_err());
    let mut d = dial(None);
    d.display_name = Some("a\"b".to_owned());
    assert!(u.dial(t0, d).is_err());
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    for junk in [
        &b""[..],
        b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnope\r\nCSeq: x\r\n\r\n",
        b"\xff\xfe",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
    ] {
        feed(&mut u, t0, junk);
    }
    let mut bad_cseq = response(&invite, 200, "", None);
    let text = String::from_utf8(bad_cseq.clone())
        .unwrap()
        .replace("1 INVITE", "9 INVITE");
    bad_cseq = text.into_bytes();
    feed(&mut u, t0, &bad_cseq);
    assert!(
        events(&mut u).is_empty(),
        "a 2xx for another CSeq is not ours"
    );
    assert!(u.malformed() >= 1);
    let _ = call;
    let _ = sent(&mut u);
    // A message from a hostile trunk with a body that is not SDP.
    feed(&mut u, t0, &response(&invite, 183, "", Some("garbage")));
    assert!(matches!(
        events(&mut u).as_slice(),
        [UacEvent::Provisional { status: 183, .. }]
    ));
    let _ = StartLine::Response {
        status: 200,
        reason: String::new(),
    };
}

#[test]
fn over_tls_the_via_says_tls_the_contact_is_sips_and_sips_needs_tls() {
    let t0 = Instant::now();
    let mut tls = uac(Transport::Tls);
    let mut to_sips = dial(None);
    to_sips.to = "sips:+15551234@trunk.example".to_owned();
    tls.dial(t0, to_sips.clone()).unwrap();
    let invite = one(&mut tls);
    assert_eq!(
        start_line(&invite),
        "INVITE sips:+15551234@trunk.example SIP/2.0"
    );
    assert!(header(&invite, "Via").starts_with("SIP/2.0/TLS 127.0.0.1:5070;branch=z9hG4bK"));
    assert!(header(&invite, "Via").ends_with(";rport;alias"));
    // RFC 5630 §3.1.3: sips:, no transport=tls.
    assert_eq!(header(&invite, "Contact"), "<sips:127.0.0.1:5070>");
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut u = uac(transport);
        assert_eq!(
            u.dial(t0, to_sips.clone()),
            Err(super::DialError::SipsNeedsTls)
        );
        assert!(sent(&mut u).is_empty());
    }
}

#[test]
fn a_connection_that_cannot_be_opened_fails_the_calls_waiting_on_it() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Tls);
    let ringing = u.dial(t0, dial(None)).unwrap();
    let ringing_invite = one(&mut u);
    feed(&mut u, t0, &response(&ringing_invite, 180, "", None));
    let answered = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    feed(&mut u, t0, &response(&invite, 200, "", Some(FAR_SDP)));
    let _ack = one(&mut u);
    let fresh = u.dial(t0, dial(None)).unwrap();
    let _ = one(&mut u);
    events(&mut u);

    // Another next hop: nothing ends.
    assert!(
        u.handle_transport_error(t0, "127.0.0.9:5061".parse().unwrap())
            .is_empty()
    );
    let mut ended_now = u.handle_transport_error(t0, trunk());
    ended_now.sort_by_key(|c| c.0);
    assert_eq!(ended_now, [ringing, fresh]);
    let mut got = events(&mut u);
    got.sort_by_key(|e| match e {
        UacEvent::Ended { call, .. } => call.0,
        _ => u64::MAX,
    });
    assert_eq!(
        got,
        [
            ended(ringing, DialOutcome::Failed, None),
            ended(fresh, DialOutcome::Failed, None)
        ]
    );
    // The established call is left; its BYE lost on a broken connection
    // ends it as answered, without waiting for Timer F.
    u.hangup(t0, answered);
    let bye = one(&mut u);
    assert!(bye.starts_with("BYE "));
    assert_eq!(u.handle_transport_error(t0, trunk()), [answered]);
    assert_eq!(
        events(&mut u),
        [ended(answered, DialOutcome::Answered, None)]
    );
    // Ended calls are not ended twice.
    assert!(u.handle_transport_error(t0, trunk()).is_empty());
}

/// A dialed call, answered and ACKed; returns the call and the INVITE.
fn answered(u: &mut Uac, t0: Instant) -> (CallId, String) {
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(u);
    feed(u, t0, &response(&invite, 200, "", Some(FAR_SDP)));
    let _ack = one(u);
    assert!(matches!(events(u).as_slice(), [UacEvent::Answered { .. }]));
    (call, invite)
}

/// The far end's re-INVITE in the dialog of `invite` (its From and To
/// swapped), with `cseq`, `branch` and an optional SDP offer.
fn far_reinvite(invite: &str, cseq: u32, branch: &str, sdp: Option<&str>) -> Vec<u8> {
    let body = sdp.unwrap_or("");
    let ctype = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "INVITE sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch={branch}\r\n\
         From: {};tag=far1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} INVITE\r\n\
         Contact: <sip:gw@127.0.0.2:5060>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        header(invite, "To"),
        header(invite, "From"),
        header(invite, "Call-ID"),
        body.len()
    )
    .into_bytes()
}

fn far_ack(invite: &str, cseq: u32) -> Vec<u8> {
    format!(
        "ACK sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKack{cseq}\r\n\
         From: {};tag=far1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        header(invite, "To"),
        header(invite, "From"),
        header(invite, "Call-ID"),
    )
    .into_bytes()
}

#[test]
fn a_far_end_reinvite_is_a_reoffer_answered_by_the_call_logic() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let (call, invite) = answered(&mut u, t0);
    let hold = FAR_SDP.replace("PCMU/8000\r\n", "PCMU/8000\r\na=sendonly\r\n");
    let reinvite = far_reinvite(&invite, 2, "z9hG4bKre2", Some(&hold));
    feed(&mut u, t0, &reinvite);
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 100 Trying");
    match events(&mut u).as_slice() {
        [UacEvent::Reoffer { call: c, offer }] => {
            assert_eq!(*c, call);
            assert!(offer.held);
        }
        other => panic!("{other:?}"),
    }
    // Its retransmission while the call logic decides: 100 again, no event.
    feed(&mut u, t0, &reinvite);
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 100 Trying");
    assert!(events(&mut u).is_empty());
    // Another INVITE overlapping it: 500 with Retry-After 0-10 (§14.2).
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 3, "z9hG4bKre3", Some(FAR_SDP)),
    );
    let refused = one(&mut u);
    assert_eq!(start_line(&refused), "SIP/2.0 500 Server Internal Error");
    let retry: u64 = header(&refused, "Retry-After").parse().unwrap();
    assert!(retry <= 10);
    assert!(events(&mut u).is_empty());

    let held = SDP.replace("sendrecv", "recvonly");
    u.answer_reinvite(t0, call, &held);
    let ok = one(&mut u);
    assert_eq!(start_line(&ok), "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), "2 INVITE");
    assert!(header(&ok, "Contact").contains("127.0.0.1:5070"));
    assert!(ok.ends_with(&held));
    // Re-sent on UDP at T1 and 2 T1 until the ACK, and to a retransmission.
    assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    u.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(one(&mut u), ok);
    u.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(one(&mut u), ok);
    // A new one before the ACK: 491 (our 2xx is not acknowledged yet).
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 4, "z9hG4bKre4", Some(FAR_SDP)),
    );
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 491 Request Pending");
    feed(&mut u, t0, &reinvite);
    assert_eq!(one(&mut u), ok);
    feed(&mut u, t0, &far_ack(&invite, 2));
    assert!(sent(&mut u).is_empty());
    u.handle_timeout(t0 + Duration::from_secs(10));
    assert!(sent(&mut u).is_empty(), "no 2xx after its ACK");

    // An older CSeq: 500 (§12.2.2).
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 2, "z9hG4bKold", Some(FAR_SDP)),
    );
    assert_eq!(
        start_line(&one(&mut u)),
        "SIP/2.0 500 Server Internal Error"
    );
    // Refused by the call logic: the refusal, and the call goes on.
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 5, "z9hG4bKre5", Some(FAR_SDP)),
    );
    let _trying = one(&mut u);
    assert!(matches!(
        events(&mut u).as_slice(),
        [UacEvent::Reoffer { .. }]
    ));
    u.reject_reinvite(t0, call, 488, "Not Acceptable Here");
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 488 Not Acceptable Here");
    // Without an offer: our SDP as it stands now (the last answer) offered.
    feed(&mut u, t0, &far_reinvite(&invite, 6, "z9hG4bKre6", None));
    let offered = one(&mut u);
    assert_eq!(start_line(&offered), "SIP/2.0 200 OK");
    assert!(offered.ends_with(&held), "{offered}");
    assert_eq!(u.local_sdp(call), Some(held.as_str()));
    assert!(events(&mut u).is_empty());
    feed(&mut u, t0, &far_ack(&invite, 6));
    // An SDP it cannot read: 488 at once.
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 7, "z9hG4bKre7", Some("v=0\r\nm=video 0 x\r\n")),
    );
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 488 Not Acceptable Here");
    assert!(events(&mut u).is_empty());
}

#[test]
fn a_reinvite_on_the_early_dialog_while_our_invite_is_pending_gets_491() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Udp);
    let _call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    feed(&mut u, t0, &response(&invite, 180, "", None));
    let _ = events(&mut u);
    feed(
        &mut u,
        t0,
        &far_reinvite(&invite, 1, "z9hG4bKearly", Some(FAR_SDP)),
    );
    assert_eq!(start_line(&one(&mut u)), "SIP/2.0 491 Request Pending");
    assert!(events(&mut u).is_empty());
}

#[test]
fn a_reinvite_2xx_over_tcp_is_not_retransmitted() {
    let t0 = Instant::now();
    let mut u = uac(Transport::Tcp);
    let call = u.dial(t0, dial(None)).unwrap();
    let invite = one(&mut u);
    u.handle_message(
        t0,
        Transport::Tcp,
        trunk(),
        &response(&invite, 200, "", Some(FAR_SDP)),
    );
    let _ack = one(&mut u);
    let _ = events(&mut u);
    let reinvite = String::from_utf8(far_reinvite(&invite, 2, "z9hG4bKt2", Some(FAR_SDP)))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    u.handle_message(t0, Transport::Tcp, trunk(), reinvite.as_bytes());
    let _trying = one(&mut u);
    let _ = events(&mut u);
    u.answer_reinvite(t0, call, SDP);
    assert!(start_line(&one(&mut u)).starts_with("SIP/2.0 200"));
    u.handle_timeout(t0 + Duration::from_secs(5));
    assert!(sent(&mut u).is_empty(), "a stream is reliable");
}

//! Scenario tests for [`Uas`]: messages as a PBX or SIPp sends them, on
//! simulated time, no sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

const LOCAL: &str = "192.0.2.10:5060";
const CALLER: &str = "198.51.100.7:5060";
const T1: Duration = Duration::from_millis(500);

const OFFER: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 198.51.100.7\r\n\
s=-\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

const ANSWER: &str = "v=0\r\no=sluice 1 1 IN IP4 192.0.2.10\r\ns=sluice\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A request from the caller (SIPp's uac scenario, more or less).
struct Req<'a> {
    method: &'a str,
    branch: &'a str,
    call_id: &'a str,
    cseq: u32,
    to_tag: Option<&'a str>,
    extra: &'a str,
    body: &'a str,
}

impl<'a> Req<'a> {
    fn new(method: &'a str, branch: &'a str) -> Self {
        Self {
            method,
            branch,
            call_id: "1-4242@198.51.100.7",
            cseq: 1,
            to_tag: None,
            extra: "",
            body: "",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let to_tag = self.to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ctype = if self.body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{m} sip:1234@192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch={b}\r\n\
From: sipp <sip:sipp@198.51.100.7:5060>;tag=4242SIPpTag001\r\n\
To: sut <sip:1234@192.0.2.10:5060>{to_tag}\r\n\
Call-ID: {c}\r\n\
CSeq: {n} {m}\r\n\
Contact: sip:sipp@198.51.100.7:5060\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
{e}{ctype}Content-Length: {len}\r\n\r\n{body}",
            m = self.method,
            b = self.branch,
            c = self.call_id,
            n = self.cseq,
            e = self.extra,
            len = self.body.len(),
            body = self.body,
        )
        .into_bytes()
    }
}

struct Sim {
    uas: Uas,
    t0: Instant,
    now: Instant,
}

impl Sim {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            uas: Uas::with_seed(UasConfig::new(addr(LOCAL), "sluice-test"), 7),
            t0: now,
            now,
        }
    }

    fn recv(&mut self, data: &[u8]) -> Vec<Transmit> {
        self.recv_from(CALLER, data)
    }

    fn recv_from(&mut self, from: &str, data: &[u8]) -> Vec<Transmit> {
        self.uas.handle_datagram(self.now, addr(from), data);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.uas.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.uas.poll_event()).collect()
    }

    /// Runs every timer up to `at`, returning what was sent and when.
    fn run_until(&mut self, at: Instant) -> Vec<(Duration, Transmit)> {
        let mut sent = Vec::new();
        while let Some(t) = self.uas.poll_timeout().filter(|t| *t <= at) {
            self.now = t;
            self.uas.handle_timeout(t);
            sent.extend(self.drain().into_iter().map(|x| (t - self.t0, x)));
        }
        self.now = at;
        sent
    }

    fn advance(&mut self, d: Duration) -> Vec<(Duration, Transmit)> {
        self.run_until(self.now + d)
    }

    /// INVITE with OFFER; returns the call and our To tag once rung.
    fn incoming(&mut self) -> CallId {
        let out = self.recv(
            &Req {
                body: OFFER,
                ..Req::new("INVITE", "z9hG4bK-inv")
            }
            .bytes(),
        );
        assert_eq!(status(&out[0]), 100);
        match self.events().as_slice() {
            [Event::Incoming { call, .. }] => *call,
            other => panic!("{other:?}"),
        }
    }

    /// A confirmed call: INVITE, 200, ACK. Returns the call and our tag.
    fn confirmed(&mut self) -> (CallId, String) {
        let call = self.incoming();
        self.uas.answer(self.now, call, ANSWER);
        let ok = self.drain();
        let tag = to_tag(&ok[0]);
        self.recv(
            &Req {
                to_tag: Some(&tag),
                ..Req::new("ACK", "z9hG4bK-ack")
            }
            .bytes(),
        );
        assert_eq!(self.events(), [Event::Confirmed { call }]);
        (call, tag)
    }
}

fn msg(t: &Transmit) -> SipMessage {
    SipMessage::parse(&t.payload).expect("we send valid SIP")
}

fn status(t: &Transmit) -> u16 {
    match msg(t).start {
        StartLine::Response { status, .. } => status,
        StartLine::Request { method, .. } => panic!("a {method} request, not a response"),
    }
}

fn statuses(ts: &[Transmit]) -> Vec<u16> {
    ts.iter().map(status).collect()
}

fn to_tag(t: &Transmit) -> String {
    let m = msg(t);
    let to = m.header("To").unwrap();
    to.split(";tag=").nth(1).unwrap().to_owned()
}

fn text(t: &Transmit) -> String {
    String::from_utf8(t.payload.clone()).unwrap()
}

#[test]
fn invite_ring_answer_ack_and_remote_bye() {
    let mut sim = Sim::new();
    let out = sim.recv(
        &Req {
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-inv")
        }
        .bytes(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(CALLER));
    let trying = msg(&out[0]);
    assert_eq!(trying.header("To"), Some("sut <sip:1234@192.0.2.10:5060>"));
    assert_eq!(trying.header("CSeq"), Some("1 INVITE"));
    let call = match sim.events().as_slice() {
        [
            Event::Incoming {
                call,
                from,
                transport: Transport::Udp,
                user,
                caller,
                offer: Some(offer),
            },
        ] => {
            assert_eq!(*from, addr(CALLER));
            assert_eq!(user, "1234");
            assert_eq!(caller, "sip:sipp@198.51.100.7:5060");
            assert_eq!(offer.port, 6000);
            assert_eq!(offer.telephone_event, Some(101));
            *call
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(sim.uas.active_calls(), 1);

    sim.uas.ringing(sim.now, call);
    let ring = sim.drain();
    assert_eq!(statuses(&ring), [180]);
    let ring_text = text(&ring[0]);
    assert!(
        ring_text.contains("Contact: <sip:192.0.2.10:5060>\r\n"),
        "{ring_text}"
    );
    let tag = to_tag(&ring[0]);

    sim.uas.answer(sim.now, call, ANSWER);
    let ok = sim.drain();
    assert_eq!(statuses(&ok), [200]);
    assert_eq!(to_tag(&ok[0]), tag, "the To tag is stable per dialog");
    let m = msg(&ok[0]);
    assert_eq!(m.body, ANSWER.as_bytes());
    assert_eq!(m.header("Content-Type"), Some("application/sdp"));
    assert_eq!(m.header("Server"), Some("sluice-test"));
    assert!(m.header("Allow").is_some());
    assert!(text(&ok[0]).contains("\r\nSupported: \r\n"));
    assert_eq!(m.header("Contact"), Some("<sip:192.0.2.10:5060>"));

    // 2xx retransmitted at T1, 2T1, 4T1, ... capped at T2, until the ACK.
    let resent = sim.advance(Duration::from_millis(11_600));
    let at: Vec<_> = resent.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(at, [500, 1500, 3500, 7500, 11500]);
    assert!(resent.iter().all(|(_, t)| t.payload == ok[0].payload));
    assert_eq!(sim.uas.stats().retransmissions_sent, 5);

    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-ack")
        }
        .bytes(),
    );
    assert_eq!(sim.events(), [Event::Confirmed { call }]);
    assert!(
        sim.advance(Duration::from_secs(60)).is_empty(),
        "ACK stops the 2xx"
    );

    let bye = Req {
        cseq: 2,
        to_tag: Some(&tag),
        ..Req::new("BYE", "z9hG4bK-bye")
    }
    .bytes();
    let out = sim.recv(&bye);
    assert_eq!(statuses(&out), [200]);
    assert_eq!(msg(&out[0]).header("CSeq"), Some("2 BYE"));
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    assert_eq!(sim.uas.active_calls(), 0);
    // A retransmitted BYE gets the same 200 from the transaction.
    assert_eq!(sim.recv(&bye), out);
    assert!(sim.events().is_empty());
    // Timer J, L and I leave nothing behind.
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.uas.held(), (0, 0, 0));
    assert_eq!(sim.uas.poll_timeout(), None);
}

#[test]
fn invite_retransmissions_get_the_last_response() {
    let mut sim = Sim::new();
    let invite = Req {
        body: OFFER,
        ..Req::new("INVITE", "z9hG4bK-inv")
    }
    .bytes();
    let call = sim.incoming();
    assert_eq!(statuses(&sim.recv(&invite)), [100]);
    sim.uas.ringing(sim.now, call);
    sim.drain();
    assert_eq!(statuses(&sim.recv(&invite)), [180]);
    sim.uas.answer(sim.now, call, ANSWER);
    let ok = sim.drain();
    let again = sim.recv(&invite);
    assert_eq!(again, ok, "INVITE after our 2xx re-sends the 2xx");
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.stats().retransmissions_absorbed, 3);
    assert_eq!(sim.uas.stats().invites, 4);
}

#[test]
fn no_ack_for_the_2xx_sends_bye_and_ends_the_call() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.answer(sim.now, call, ANSWER);
    let tag = to_tag(&sim.drain()[0]);
    let sent = sim.advance(T1 * 64);
    let (at, bye) = sent.last().unwrap();
    assert_eq!(*at, T1 * 64);
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::AckTimeout
        }]
    );
    assert_eq!(sim.uas.stats().ack_timeouts, 1);

    // The BYE: to the Contact, dialog identifiers swapped, CSeq moved on.
    assert_eq!(bye.to, addr(CALLER));
    let m = msg(bye);
    assert_eq!(
        m.start,
        StartLine::Request {
            method: Method::Bye,
            uri: "sip:sipp@198.51.100.7:5060".into()
        }
    );
    assert_eq!(
        m.header("From"),
        Some(format!("sut <sip:1234@192.0.2.10:5060>;tag={tag}").as_str())
    );
    assert_eq!(
        m.header("To"),
        Some("sipp <sip:sipp@198.51.100.7:5060>;tag=4242SIPpTag001")
    );
    assert_eq!(m.header("Call-ID"), Some("1-4242@198.51.100.7"));
    assert_eq!(m.header("CSeq"), Some("2 BYE"));
    assert_eq!(m.header("Max-Forwards"), Some("70"));
    let via = m.header("Via").unwrap();
    assert!(
        via.starts_with("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK"),
        "{via}"
    );
    let branch = via
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();

    // Its 200 ends the client transaction without a second Ended.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: 1-4242@198.51.100.7\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        m.header("From").unwrap(),
        m.header("To").unwrap()
    );
    assert!(ok.contains(branch));
    sim.recv(ok.as_bytes());
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.stats().stray_responses, 0);
    sim.advance(Duration::from_secs(64));
    assert_eq!(sim.uas.held(), (0, 0, 0));
}

#[test]
fn reject_retransmits_with_timer_g_until_ack() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.reject(
        sim.now,
        call,
        403,
        "Forbidden",
        &[("Reason", "Q.850;cause=21;text=\"E2EE meeting\"")],
    );
    let out = sim.drain();
    assert_eq!(statuses(&out), [403]);
    let t = text(&out[0]);
    assert!(
        t.contains("Reason: Q.850;cause=21;text=\"E2EE meeting\"\r\n"),
        "{t}"
    );
    let tag = to_tag(&out[0]);
    let at: Vec<_> = sim
        .advance(Duration::from_millis(8000))
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(at, [500, 1500, 3500, 7500]);
    assert!(sim.events().is_empty());

    // The ACK for a non-2xx has the INVITE's branch.
    let ack = Req {
        to_tag: Some(&tag),
        ..Req::new("ACK", "z9hG4bK-inv")
    }
    .bytes();
    assert!(sim.recv(&ack).is_empty());
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::Rejected
        }]
    );
    assert!(sim.recv(&ack).is_empty());
    assert_eq!(sim.uas.stats().retransmissions_absorbed, 1);
    // Timer I then ends the transaction.
    assert!(sim.advance(Duration::from_secs(5)).is_empty());
    assert_eq!(sim.uas.held(), (0, 0, 0));
}

#[test]
fn timer_h_ends_a_rejected_call_without_ack() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.reject(sim.now, call, 486, "Busy Here", &[]);
    sim.drain();
    let sent = sim.advance(T1 * 64);
    // G: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5.
    assert_eq!(sent.len(), 10);
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::Rejected
        }]
    );
    assert_eq!(sim.uas.stats().timer_h_timeouts, 1);
    assert_eq!(sim.uas.held(), (0, 0, 0));
}

#[test]
fn cancel_before_answer() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.ringing(sim.now, call);
    let tag = to_tag(&sim.drain()[0]);
    let cancel = Req::new("CANCEL", "z9hG4bK-inv").bytes();
    let out = sim.recv(&cancel);
    assert_eq!(statuses(&out), [200, 487]);
    assert_eq!(msg(&out[0]).header("CSeq"), Some("1 CANCEL"));
    assert_eq!(msg(&out[1]).header("CSeq"), Some("1 INVITE"));
    assert_eq!(to_tag(&out[0]), tag);
    assert_eq!(to_tag(&out[1]), tag);
    assert_eq!(sim.events(), [Event::Cancelled { call }]);
    // The call logic's late answer does nothing.
    sim.uas.answer(sim.now, call, ANSWER);
    assert!(sim.drain().is_empty());
    // A retransmitted CANCEL gets its 200 again.
    assert_eq!(statuses(&sim.recv(&cancel)), [200]);
    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-inv")
        }
        .bytes(),
    );
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::Cancelled
        }]
    );

    // CANCEL for nothing: 481.
    let out = sim.recv(&Req::new("CANCEL", "z9hG4bK-other").bytes());
    assert_eq!(statuses(&out), [481]);
    assert_eq!(sim.uas.stats().cancels, 3);
}

#[test]
fn cancel_after_the_final_answer_has_no_effect() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.answer(sim.now, call, ANSWER);
    sim.drain();
    let out = sim.recv(&Req::new("CANCEL", "z9hG4bK-inv").bytes());
    assert_eq!(statuses(&out), [200]);
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.active_calls(), 1);
}

#[test]
fn requests_outside_any_dialog_get_481() {
    let mut sim = Sim::new();
    for method in ["BYE", "INVITE", "OPTIONS"] {
        let out = sim.recv(
            &Req {
                to_tag: Some("nope"),
                ..Req::new(method, "z9hG4bK-x1")
            }
            .bytes(),
        );
        assert_eq!(statuses(&out), [481], "{method}");
        assert_eq!(to_tag(&out[0]), "nope");
    }
    assert_eq!(sim.uas.stats().no_transaction, 3);
    // ACKs are never answered.
    assert!(
        sim.recv(
            &Req {
                to_tag: Some("nope"),
                ..Req::new("ACK", "z9hG4bK-x2")
            }
            .bytes()
        )
        .is_empty()
    );
    assert_eq!(sim.uas.stats().stray_acks, 1);
}

#[test]
fn options_keepalive_with_compact_headers() {
    let mut sim = Sim::new();
    let out = sim.recv(
        b"OPTIONS sip:192.0.2.10 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bKopt1;rport\r\n\
f: <sip:sbc@10.20.30.40>;tag=sbc1\r\n\
t: <sip:192.0.2.10>\r\n\
i: keepalive-1\r\n\
CSeq: 101 OPTIONS\r\n\
Max-Forwards: 70\r\n\
l: 0\r\n\r\n",
    );
    assert_eq!(statuses(&out), [200]);
    assert_eq!(out[0].to, addr(CALLER), "rport: back to the source address");
    let m = msg(&out[0]);
    assert_eq!(m.header("Accept"), Some("application/sdp"));
    assert_eq!(m.header("Allow"), Some("INVITE"));
    assert_eq!(m.headers("Allow").count(), 5);
    assert_eq!(
        m.header("Via"),
        Some("SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bKopt1;rport=5060;received=198.51.100.7")
    );
    assert_eq!(m.header("Call-ID"), Some("keepalive-1"));
    assert!(m.header("To").unwrap().contains(";tag="));
    assert_eq!(sim.uas.stats().options, 1);
    assert_eq!(sim.uas.active_calls(), 0);

    // In a dialog, too.
    let (_, tag) = sim.confirmed();
    let out = sim.recv(
        &Req {
            cseq: 5,
            to_tag: Some(&tag),
            ..Req::new("OPTIONS", "z9hG4bK-o2")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [200]);
    assert_eq!(to_tag(&out[0]), tag);
}

#[test]
fn responses_follow_received_and_rport() {
    let mut sim = Sim::new();
    // No rport, sent-by differs from the source: received added, reply to
    // the source IP and the sent-by port.
    let req = b"OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP pbx.example.com:5070;branch=z9hG4bKr1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: r1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let out = sim.recv_from("203.0.113.5:40000", req);
    assert_eq!(out[0].to, addr("203.0.113.5:5070"));
    assert_eq!(
        msg(&out[0]).header("Via"),
        Some("SIP/2.0/UDP pbx.example.com:5070;branch=z9hG4bKr1;received=203.0.113.5")
    );
    // rport behind a NAT: the source port.
    let req = b"OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bKr2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: r2\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let out = sim.recv_from("203.0.113.5:40000", req);
    assert_eq!(out[0].to, addr("203.0.113.5:40000"));
    assert_eq!(
        msg(&out[0]).header("Via"),
        Some("SIP/2.0/UDP 10.0.0.2:5060;rport=40000;branch=z9hG4bKr2;received=203.0.113.5")
    );
}

#[test]
fn unsupported_and_unknown_methods() {
    let mut sim = Sim::new();
    for (i, method) in [
        "REGISTER",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "MESSAGE",
        "REFER",
        "INFO",
        "PRACK",
        "UPDATE",
    ]
    .into_iter()
    .enumerate()
    {
        let branch = format!("z9hG4bK-m{i}");
        let out = sim.recv(&Req::new(method, &branch).bytes());
        assert_eq!(statuses(&out), [405], "{method}");
        assert_eq!(msg(&out[0]).header("Allow"), Some("INVITE"));
    }
    let out = sim.recv(&Req::new("FROB", "z9hG4bK-frob").bytes());
    assert_eq!(statuses(&out), [501]);
    assert_eq!(sim.uas.stats().unsupported, 10);
    assert_eq!(sim.uas.stats().other_requests, 10);
}

#[test]
fn bad_requests_are_answered_400_or_dropped() {
    let mut sim = Sim::new();
    let no_cseq = b"OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n\r\n";
    let out = sim.recv(no_cseq);
    assert_eq!(statuses(&out), [400]);
    assert!(text(&out[0]).starts_with("SIP/2.0 400 Missing Mandatory Header\r\n"));
    let mismatch = String::from_utf8(Req::new("BYE", "z9hG4bK2").bytes())
        .unwrap()
        .replace("CSeq: 1 BYE", "CSeq: 1 INVITE");
    let out = sim.recv(mismatch.as_bytes());
    assert_eq!(statuses(&out), [400]);
    assert!(text(&out[0]).contains("400 CSeq Method Mismatch"));
    // Content-Length beyond the datagram: 400 for a request (§18.3).
    let short = String::from_utf8(
        Req {
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK3")
        }
        .bytes(),
    )
    .unwrap()
    .replace(
        &format!("Content-Length: {}", OFFER.len()),
        "Content-Length: 60000",
    );
    assert_eq!(statuses(&sim.recv(short.as_bytes())), [400]);
    assert_eq!(sim.uas.stats().bad_requests, 3);
    // No Via: nowhere to answer.
    assert!(
        sim.recv(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")
            .is_empty()
    );
    // Max-Forwards 0 and an unknown Require.
    let out = sim.recv(&Req::new("OPTIONS", "z9hG4bK4").bytes());
    assert_eq!(statuses(&out), [200]);
    let hops = String::from_utf8(Req::new("OPTIONS", "z9hG4bK5").bytes())
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(statuses(&sim.recv(hops.as_bytes())), [483]);
    let out = sim.recv(
        &Req {
            extra: "Require: 100rel, timer\r\n",
            ..Req::new("INVITE", "z9hG4bK6")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [420]);
    assert_eq!(msg(&out[0]).header("Unsupported"), Some("100rel"));
    assert_eq!(msg(&out[0]).headers("Unsupported").count(), 2);
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.active_calls(), 0);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut sim = Sim::new();
    let invite = Req {
        body: OFFER,
        ..Req::new("INVITE", "z9hG4bK-g")
    }
    .bytes();
    let mut before = sim.uas.stats().malformed_dropped;
    for n in 0..invite.len() {
        sim.recv(&invite[..n]);
    }
    // Every prefix that stops inside the head is dropped.
    assert!(sim.uas.stats().malformed_dropped > before);
    before = sim.uas.stats().malformed_dropped;
    let mut x: u32 = 1;
    for len in [1usize, 7, 100, 1500, 65_000, 70_000] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        sim.recv(&junk);
    }
    assert_eq!(sim.uas.stats().malformed_dropped, before + 6);
    // Keep-alive CRLFs are not malformed.
    sim.recv(b"\r\n\r\n");
    assert_eq!(sim.uas.stats().keepalives, 1);
    // Responses that match nothing.
    sim.recv(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKnothing\r\nCSeq: 1 BYE\r\n\r\n");
    assert_eq!(sim.uas.stats().stray_responses, 1);
}

#[test]
fn reinvite_hold_and_unhold() {
    let mut sim = Sim::new();
    let (call, tag) = sim.confirmed();
    let hold = OFFER.replace("a=fmtp:101 0-15\r\n", "a=fmtp:101 0-15\r\na=sendonly\r\n");
    let reinvite = Req {
        cseq: 2,
        to_tag: Some(&tag),
        body: &hold,
        ..Req::new("INVITE", "z9hG4bK-re1")
    }
    .bytes();
    let out = sim.recv(&reinvite);
    assert_eq!(statuses(&out), [100]);
    match sim.events().as_slice() {
        [Event::Reoffer { call: c, offer }] => {
            assert_eq!(*c, call);
            assert!(offer.held);
            assert_eq!(offer.direction, sdp::Direction::SendOnly);
        }
        other => panic!("{other:?}"),
    }
    let held_answer = ANSWER.replace("sendrecv", "recvonly");
    sim.uas.answer_reinvite(sim.now, call, &held_answer);
    let ok = sim.drain();
    assert_eq!(statuses(&ok), [200]);
    assert_eq!(msg(&ok[0]).body, held_answer.as_bytes());
    assert_eq!(to_tag(&ok[0]), tag);
    assert_eq!(
        sim.recv(&reinvite),
        ok,
        "re-INVITE retransmission re-sends the 2xx"
    );
    let resent = sim.advance(T1);
    assert_eq!(resent.len(), 1);
    sim.recv(
        &Req {
            cseq: 2,
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-ack2")
        }
        .bytes(),
    );
    assert!(sim.events().is_empty(), "no second Confirmed");
    assert!(sim.advance(Duration::from_secs(40)).is_empty());

    // Unhold, refused by the call logic: the call goes on.
    let unhold = Req {
        cseq: 3,
        to_tag: Some(&tag),
        body: OFFER,
        ..Req::new("INVITE", "z9hG4bK-re2")
    }
    .bytes();
    sim.recv(&unhold);
    match sim.events().as_slice() {
        [Event::Reoffer { offer, .. }] => assert!(!offer.held),
        other => panic!("{other:?}"),
    }
    sim.uas
        .reject_reinvite(sim.now, call, 488, "Not Acceptable Here");
    assert_eq!(statuses(&sim.drain()), [488]);
    sim.recv(
        &Req {
            cseq: 3,
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-re2")
        }
        .bytes(),
    );
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.active_calls(), 1);

    // A re-INVITE without SDP is offered our last SDP again.
    let out = sim.recv(
        &Req {
            cseq: 4,
            to_tag: Some(&tag),
            ..Req::new("INVITE", "z9hG4bK-re3")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [200]);
    assert_eq!(msg(&out[0]).body, held_answer.as_bytes());
    // An out-of-order one gets 500.
    let out = sim.recv(
        &Req {
            cseq: 1,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-re4")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [500]);
    // One before the ACK for our last 2xx gets 491.
    let out = sim.recv(
        &Req {
            cseq: 5,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-re5")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [491]);
}

#[test]
fn second_reinvite_while_one_is_pending_gets_500() {
    let mut sim = Sim::new();
    let (call, tag) = sim.confirmed();
    sim.recv(
        &Req {
            cseq: 2,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-a")
        }
        .bytes(),
    );
    assert!(matches!(sim.events().as_slice(), [Event::Reoffer { .. }]));
    let out = sim.recv(
        &Req {
            cseq: 3,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-b")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [500]);
    let retry: u64 = msg(&out[0])
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry <= 10, "§14.2: 0 to 10 s, not {retry}");
    // Its retransmission is absorbed by its own transaction: the same 500.
    let again = sim.recv(
        &Req {
            cseq: 3,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-b")
        }
        .bytes(),
    );
    assert_eq!(again, out);
    assert!(
        sim.events().is_empty(),
        "no Reoffer for the overlapping one"
    );
    // Remote BYE: the pending re-INVITE gets 487.
    let out = sim.recv(
        &Req {
            cseq: 4,
            to_tag: Some(&tag),
            ..Req::new("BYE", "z9hG4bK-c")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [200, 487]);
    let events = sim.events();
    assert_eq!(
        events.last(),
        Some(&Event::Ended {
            call,
            reason: EndReason::RemoteBye
        })
    );
}

#[test]
fn overlapping_invites_get_a_random_retry_after_of_0_to_10_s() {
    // §14.2 wants the value random so that both sides do not retry in
    // lockstep: over many dialogs, every value 0..=10 comes up, none above.
    let mut seen = [0u32; 11];
    for seed in 0..300 {
        let mut sim = Sim::new();
        sim.uas = Uas::with_seed(UasConfig::new(addr(LOCAL), "sluice-test"), seed);
        let (_, tag) = sim.confirmed();
        let reinvite = |cseq, branch| {
            Req {
                cseq,
                to_tag: Some(&tag),
                body: OFFER,
                ..Req::new("INVITE", branch)
            }
            .bytes()
        };
        sim.recv(&reinvite(2, "z9hG4bK-a"));
        let out = sim.recv(&reinvite(3, "z9hG4bK-b"));
        assert_eq!(statuses(&out), [500]);
        let retry: usize = msg(&out[0])
            .header("Retry-After")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        seen[retry] += 1;
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn a_reinvite_in_the_early_dialog_gets_500_with_retry_after() {
    // The initial INVITE has no final response yet (180 sent): a
    // re-INVITE on its early dialog is an overlapping INVITE (§14.2).
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.ringing(sim.now, call);
    let tag = to_tag(&sim.drain()[0]);
    let out = sim.recv(
        &Req {
            cseq: 2,
            to_tag: Some(&tag),
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-early")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [500]);
    let retry: u64 = msg(&out[0])
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry <= 10);
    assert!(sim.events().is_empty());
    // The call itself goes on: answered, ACKed, confirmed.
    sim.uas.answer(sim.now, call, ANSWER);
    assert_eq!(statuses(&sim.drain()), [200]);
    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-ack")
        }
        .bytes(),
    );
    assert_eq!(sim.events(), [Event::Confirmed { call }]);
}

#[test]
fn local_hangup_bye_with_timer_e_then_answered() {
    let mut sim = Sim::new();
    let (call, _) = sim.confirmed();
    sim.uas.hangup(sim.now, call);
    let bye = sim.drain();
    assert_eq!(bye.len(), 1);
    let m = msg(&bye[0]);
    assert_eq!(m.method(), Some(&Method::Bye));
    let at: Vec<_> = sim
        .advance(Duration::from_millis(12_000))
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(at, [500, 1500, 3500, 7500, 11500]);
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nl: 0\r\n\r\n",
        m.header("Via").unwrap(),
        m.header("From").unwrap(),
        m.header("To").unwrap(),
        m.header("Call-ID").unwrap(),
        m.header("CSeq").unwrap()
    );
    sim.recv(ok.as_bytes());
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::LocalBye
        }]
    );
    sim.recv(ok.as_bytes());
    assert_eq!(sim.uas.stats().stray_responses, 1);
    assert_eq!(sim.uas.held().1, 0);
}

#[test]
fn local_bye_timer_f() {
    let mut sim = Sim::new();
    let (call, _) = sim.confirmed();
    sim.uas.hangup(sim.now, call);
    sim.drain();
    let sent = sim.advance(T1 * 64);
    // E: 0.5, 1.5, 3.5, 7.5, then every 4 s to 31.5.
    assert_eq!(sent.len(), 10);
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::LocalBye
        }]
    );
    assert_eq!(sim.uas.stats().bye_timeouts, 1);
    assert_eq!(sim.uas.held(), (0, 0, 0));
}

#[test]
fn hangup_before_ack_waits_for_it_and_before_answer_rejects_480() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.answer(sim.now, call, ANSWER);
    let tag = to_tag(&sim.drain()[0]);
    sim.uas.hangup(sim.now, call);
    assert!(sim.drain().is_empty());
    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-ack")
        }
        .bytes(),
    );
    let out = sim.drain();
    assert!(sim.events().is_empty());
    let _ = out;
    // The BYE went out with the ACK's processing.
    assert_eq!(sim.uas.held().1, 1);

    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.hangup(sim.now, call);
    assert_eq!(statuses(&sim.drain()), [480]);
    sim.advance(T1 * 64);
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::Rejected
        }]
    );
}

#[test]
fn bye_in_the_early_dialog_ends_the_call_with_487() {
    let mut sim = Sim::new();
    let call = sim.incoming();
    sim.uas.ringing(sim.now, call);
    let tag = to_tag(&sim.drain()[0]);
    let out = sim.recv(
        &Req {
            cseq: 2,
            to_tag: Some(&tag),
            ..Req::new("BYE", "z9hG4bK-eb")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [200, 487]);
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    // The ACK for the 487 raises nothing more.
    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-inv")
        }
        .bytes(),
    );
    assert!(sim.events().is_empty());
}

#[test]
fn same_call_id_new_branch_while_pending() {
    let mut sim = Sim::new();
    sim.incoming();
    // Same CSeq through another path: a loop or merged fork.
    let out = sim.recv(
        &Req {
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-fork")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [482]);
    let out = sim.recv(
        &Req {
            cseq: 2,
            body: OFFER,
            ..Req::new("INVITE", "z9hG4bK-new")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [500]);
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.active_calls(), 1);
}

#[test]
fn rfc2543_requests_without_branch() {
    let mut sim = Sim::new();
    let invite = String::from_utf8(
        Req {
            body: OFFER,
            ..Req::new("INVITE", "x")
        }
        .bytes(),
    )
    .unwrap()
    .replace(";branch=x", "");
    assert_eq!(statuses(&sim.recv(invite.as_bytes())), [100]);
    let call = match sim.events().as_slice() {
        [Event::Incoming { call, .. }] => *call,
        other => panic!("{other:?}"),
    };
    assert_eq!(statuses(&sim.recv(invite.as_bytes())), [100]);
    sim.uas.reject(sim.now, call, 404, "Not Found", &[]);
    let tag = to_tag(&sim.drain()[0]);
    let ack = String::from_utf8(
        Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "x")
        }
        .bytes(),
    )
    .unwrap()
    .replace(";branch=x", "");
    sim.recv(ack.as_bytes());
    assert_eq!(
        sim.events(),
        [Event::Ended {
            call,
            reason: EndReason::Rejected
        }]
    );
}

#[test]
fn record_route_is_echoed_and_routes_our_bye() {
    let mut sim = Sim::new();
    let rr = "Record-Route: <sip:203.0.113.1:5060;lr>, <sip:203.0.113.2;lr>\r\n";
    let out = sim.recv(
        &Req {
            body: OFFER,
            extra: rr,
            ..Req::new("INVITE", "z9hG4bK-rr")
        }
        .bytes(),
    );
    assert!(!text(&out[0]).contains("Record-Route"), "not on 100");
    let call = match sim.events().as_slice() {
        [Event::Incoming { call, .. }] => *call,
        other => panic!("{other:?}"),
    };
    sim.uas.answer(sim.now, call, ANSWER);
    let ok = sim.drain();
    let m = msg(&ok[0]);
    assert_eq!(
        m.headers("Record-Route").collect::<Vec<_>>(),
        ["<sip:203.0.113.1:5060;lr>", "<sip:203.0.113.2;lr>"]
    );
    let tag = to_tag(&ok[0]);
    sim.recv(
        &Req {
            to_tag: Some(&tag),
            ..Req::new("ACK", "z9hG4bK-a")
        }
        .bytes(),
    );
    sim.events();
    sim.uas.hangup(sim.now, call);
    let bye = sim.drain();
    assert_eq!(bye[0].to, addr("203.0.113.1:5060"));
    let m = msg(&bye[0]);
    assert_eq!(
        m.start,
        StartLine::Request {
            method: Method::Bye,
            uri: "sip:sipp@198.51.100.7:5060".into()
        }
    );
    assert_eq!(
        m.headers("Route").collect::<Vec<_>>(),
        ["<sip:203.0.113.1:5060;lr>", "<sip:203.0.113.2;lr>"]
    );
}

#[test]
fn offers_in_the_invite() {
    let mut sim = Sim::new();
    // No body: offer None, the call logic decides.
    sim.recv(&Req::new("INVITE", "z9hG4bK-nobody").bytes());
    assert!(matches!(
        sim.events().as_slice(),
        [Event::Incoming { offer: None, .. }]
    ));
    // A body that is no usable SDP: 488 without bothering the call logic.
    let bad = OFFER.replace("m=audio", "m=video");
    let out = sim.recv(
        &Req {
            call_id: "c2",
            body: &bad,
            ..Req::new("INVITE", "z9hG4bK-bad")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [488]);
    assert!(msg(&out[0]).header("Warning").unwrap().contains("no audio"));
    // Not SDP at all: 415.
    let out = sim.recv(
        &Req {
            call_id: "c3",
            extra: "Content-Type: text/plain\r\n",
            body: "hello",
            ..Req::new("INVITE", "z9hG4bK-txt")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out[..1]), [415]);
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.stats().bad_offers, 2);
    assert_eq!(sim.uas.active_calls(), 1);
}

#[test]
fn dialog_table_is_bounded() {
    let mut sim = Sim::new();
    for i in 0..MAX_DIALOGS {
        let call_id = format!("bulk-{i}");
        let branch = format!("z9hG4bK-bulk-{i}");
        sim.recv(
            &Req {
                call_id: &call_id,
                ..Req::new("INVITE", &branch)
            }
            .bytes(),
        );
    }
    assert_eq!(sim.uas.active_calls(), MAX_DIALOGS);
    sim.events();
    let out = sim.recv(
        &Req {
            call_id: "one-too-many",
            ..Req::new("INVITE", "z9hG4bK-over")
        }
        .bytes(),
    );
    assert_eq!(statuses(&out), [503]);
    assert!(sim.events().is_empty());
    assert_eq!(sim.uas.active_calls(), MAX_DIALOGS);
}

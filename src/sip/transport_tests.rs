//! Scenario tests for SIP over TCP and TLS: a caller's byte stream cut by
//! [`StreamFramer`] and fed to [`Uas::handle_message`], as the SIP thread
//! does, on simulated time, no sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

const LOCAL: &str = "192.0.2.10:5060";
const LOCAL_TCP: &str = "192.0.2.10:5070";
const LOCAL_TLS: &str = "192.0.2.10:5061";
/// The caller's end of the connection: an ephemeral port, not the one in
/// its Via and Contact.
const PEER: &str = "198.51.100.7:41234";

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn invite(transport: &str, scheme: &str, branch: &str) -> Vec<u8> {
    format!(
        "INVITE {scheme}:1234@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/{transport} 198.51.100.7:5060;branch={branch}\r\n\
From: <sip:pbx@198.51.100.7>;tag=f1\r\n\
To: <{scheme}:1234@192.0.2.10>\r\n\
Call-ID: tcp-1@198.51.100.7\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:pbx@198.51.100.7:5060;transport=tcp>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
    .into_bytes()
}

fn ack() -> Vec<u8> {
    b"ACK sip:1234@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-ack\r\n\
From: <sip:pbx@198.51.100.7>;tag=f1\r\n\
To: <sip:1234@192.0.2.10>;tag=TAG\r\n\
Call-ID: tcp-1@198.51.100.7\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
        .to_vec()
}

struct Sim {
    uas: Uas,
    framer: StreamFramer,
    now: Instant,
    transport: Transport,
}

impl Sim {
    fn new(transport: Transport) -> Self {
        let mut cfg = UasConfig::new(addr(LOCAL), "sluice-test");
        cfg.tcp = Some(addr(LOCAL_TCP));
        cfg.tls = Some(addr(LOCAL_TLS));
        Self {
            uas: Uas::with_seed(cfg, 9),
            framer: StreamFramer::new(MAX_MESSAGE_SIZE),
            now: Instant::now(),
            transport,
        }
    }

    /// Feeds stream bytes in small pieces, as reads would deliver them;
    /// returns what the UAS sends and the pings seen.
    fn stream(&mut self, bytes: &[u8]) -> (Vec<Transmit>, usize) {
        let mut pings = 0;
        for piece in bytes.chunks(7) {
            self.framer.push(piece).unwrap();
            while let Some(frame) = self.framer.poll_frame().unwrap() {
                match frame {
                    Frame::Message(m) => {
                        self.uas
                            .handle_message(self.now, self.transport, addr(PEER), &m);
                    }
                    Frame::Ping => pings += 1,
                }
            }
        }
        (
            std::iter::from_fn(|| self.uas.poll_transmit()).collect(),
            pings,
        )
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.uas.poll_event()).collect()
    }

    /// Runs the timers for `d`; returns what they sent.
    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let until = self.now + d;
        let mut sent = Vec::new();
        while let Some(t) = self.uas.poll_timeout().filter(|t| *t <= until) {
            self.now = t;
            self.uas.handle_timeout(t);
            sent.extend(std::iter::from_fn(|| self.uas.poll_transmit()));
        }
        self.now = until;
        sent
    }
}

fn text(t: &Transmit) -> String {
    String::from_utf8(t.payload.clone()).unwrap()
}

#[test]
fn a_tcp_call_is_answered_over_its_connection_and_hung_up_over_it() {
    let mut sim = Sim::new(Transport::Tcp);
    // A keep-alive first, then the INVITE, in one stream.
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend(invite("TCP", "sip", "z9hG4bK-tcp1"));
    let (out, pings) = sim.stream(&bytes);
    assert_eq!(pings, 1);
    assert_eq!(out.len(), 1, "100 Trying");
    assert_eq!(out[0].transport, Transport::Tcp);
    // No rport in Via: still the connection's peer, not the Via port.
    assert_eq!(out[0].to, addr(PEER));
    // The Via host is the source IP: nothing to add (§18.2.1).
    assert!(text(&out[0]).contains("Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bK-tcp1\r\n"));
    let call = match sim.events().as_slice() {
        [
            Event::Incoming {
                call,
                transport: Transport::Tcp,
                from,
                ..
            },
        ] => {
            assert_eq!(*from, addr(PEER));
            *call
        }
        other => panic!("{other:?}"),
    };
    sim.uas.answer(sim.now, call, OFFER);
    let ok: Vec<Transmit> = std::iter::from_fn(|| sim.uas.poll_transmit()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].to, ok[0].transport), (addr(PEER), Transport::Tcp));
    let ok_text = text(&ok[0]);
    assert!(
        ok_text.contains("Contact: <sip:192.0.2.10:5070;transport=tcp>\r\n"),
        "{ok_text}"
    );
    let tag = ok_text
        .split("To: <sip:1234@192.0.2.10>;tag=")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .unwrap()
        .to_owned();
    let ack = String::from_utf8(ack()).unwrap().replace("TAG", &tag);
    let (out, _) = sim.stream(ack.as_bytes());
    assert!(out.is_empty());
    assert!(matches!(sim.events().as_slice(), [Event::Confirmed { .. }]));

    sim.uas.hangup(sim.now, call);
    let bye: Vec<Transmit> = std::iter::from_fn(|| sim.uas.poll_transmit()).collect();
    assert_eq!(bye.len(), 1);
    // Over the connection (its peer), Via TCP with alias (RFC 5923).
    assert_eq!((bye[0].to, bye[0].transport), (addr(PEER), Transport::Tcp));
    let bye_text = text(&bye[0]);
    assert!(bye_text.starts_with("BYE sip:pbx@198.51.100.7:5060;transport=tcp SIP/2.0\r\n"));
    assert!(bye_text.contains("Via: SIP/2.0/TCP 192.0.2.10:5070;branch="));
    assert!(bye_text.contains(";rport;alias\r\n"));
    // No Timer E on a stream: nothing is retransmitted, Timer F ends it.
    let later = sim.advance(T1_64 + Duration::from_millis(1));
    assert!(later.is_empty(), "{later:?}");
    assert!(matches!(
        sim.events().as_slice(),
        [Event::Ended {
            reason: EndReason::LocalBye,
            ..
        }]
    ));
    assert_eq!(sim.uas.held(), (0, 0, 0));
}

const T1_64: Duration = Duration::from_secs(32);

#[test]
fn a_rejection_over_tcp_is_not_retransmitted() {
    let mut sim = Sim::new(Transport::Tcp);
    sim.stream(&invite("TCP", "sip", "z9hG4bK-tcp2"));
    let Some(Event::Incoming { call, .. }) = sim.events().pop() else {
        panic!("no call");
    };
    sim.uas.reject(sim.now, call, 486, "Busy Here", &[]);
    let busy: Vec<Transmit> = std::iter::from_fn(|| sim.uas.poll_transmit()).collect();
    assert_eq!(busy.len(), 1);
    assert!(text(&busy[0]).starts_with("SIP/2.0 486 Busy Here\r\n"));
    // Timer G does not run on a reliable transport; Timer H still ends it.
    let later = sim.advance(T1_64 + Duration::from_millis(1));
    assert!(later.is_empty(), "{later:?}");
    assert!(matches!(
        sim.events().as_slice(),
        [Event::Ended {
            reason: EndReason::Rejected,
            ..
        }]
    ));
}

#[test]
fn sips_is_taken_over_tls_only() {
    let mut sim = Sim::new(Transport::Tcp);
    let (out, _) = sim.stream(&invite("TCP", "sips", "z9hG4bK-sips1"));
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("SIP/2.0 416 Unsupported URI Scheme\r\n"));
    assert!(sim.events().is_empty());

    let mut sim = Sim::new(Transport::Tls);
    sim.stream(&invite("TLS", "sips", "z9hG4bK-sips2"));
    let Some(Event::Incoming {
        call,
        transport: Transport::Tls,
        ..
    }) = sim.events().pop()
    else {
        panic!("no call over TLS");
    };
    sim.uas.answer(sim.now, call, OFFER);
    let ok: Vec<Transmit> = std::iter::from_fn(|| sim.uas.poll_transmit()).collect();
    assert_eq!(ok[0].transport, Transport::Tls);
    // RFC 5630: a sips: Contact, no transport=tls.
    assert!(text(&ok[0]).contains("Contact: <sips:192.0.2.10:5061>\r\n"));
}

#[test]
fn udp_answers_still_follow_via() {
    // The same INVITE as a datagram: no rport, so the answer goes to the
    // source IP at the Via port (§18.2.2), as before streams existed.
    let mut sim = Sim::new(Transport::Udp);
    sim.uas
        .handle_datagram(sim.now, addr(PEER), &invite("UDP", "sip", "z9hG4bK-u"));
    let out: Vec<Transmit> = std::iter::from_fn(|| sim.uas.poll_transmit()).collect();
    assert_eq!(out[0].transport, Transport::Udp);
    assert_eq!(out[0].to, addr("198.51.100.7:5060"));
}

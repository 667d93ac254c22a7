//! A browser stand-in (STUN checks + a dimpl DTLS client) against a
//! session, on simulated time, through an in-memory network.

use std::sync::Arc;
use std::time::Duration;

use dimpl::{Dtls, Output};

use super::*;
use crate::stun::{Class, METHOD_BINDING, MessageWriter, StunMessage, attr};

const L_UFRAG: &str = "relayufrag";
const L_PWD: &str = "relaypasswordrelaypassword";
const R_UFRAG: &str = "brws";

struct Browser {
    addr: SocketAddr,
    dtls: Dtls,
    txid: u8,
    keys: Option<Vec<u8>>,
}

impl Browser {
    fn new(identity: &DtlsIdentity, addr: &str, now: Instant) -> Self {
        let mut dtls = Dtls::new_12(
            Arc::new(dimpl::Config::default()),
            identity.certificate.clone(),
            now,
        );
        dtls.set_active(true);
        Self {
            addr: addr.parse().unwrap(),
            dtls,
            txid: 0,
            keys: None,
        }
    }

    fn check(&mut self, pwd: &str, use_candidate: bool) -> Vec<u8> {
        self.txid += 1;
        let mut out = vec![0u8; 256];
        let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [self.txid; 12]);
        w.attribute(attr::USERNAME, format!("{L_UFRAG}:{R_UFRAG}").as_bytes())
            .attribute(attr::ICE_CONTROLLING, &[1; 8]);
        if use_candidate {
            w.attribute(attr::USE_CANDIDATE, &[]);
        }
        let len = w.integrity(pwd.as_bytes()).fingerprint().finish().unwrap();
        out.truncate(len);
        out
    }

    fn dtls_out(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.dtls.handle_timeout(now).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2000];
        loop {
            match self.dtls.poll_output(&mut buf) {
                Output::Packet(p) => out.push(p.to_vec()),
                Output::Timeout(_) => break,
                Output::KeyingMaterial(m, _) => self.keys = Some(m.to_vec()),
                _ => {}
            }
        }
        out
    }
}

fn session(browser_id: &DtlsIdentity, now: Instant) -> Session {
    let relay = DtlsIdentity::generate().unwrap();
    Session::new(
        &DtlsConfig::new(),
        &relay,
        SessionParams {
            local_ufrag: L_UFRAG.into(),
            local_pwd: L_PWD.into(),
            remote_ufrag: R_UFRAG.into(),
            remote_fingerprint: browser_id.fingerprint().clone(),
        },
        now,
    )
}

/// Every datagram the session wants to send.
fn sent(s: &mut Session) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = [0u8; MAX_TRANSMIT];
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(&mut buf) {
        out.push((t.to, buf[..t.len].to_vec()));
    }
    out
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn check_then_handshake_yields_the_selected_address_and_keys() {
    let t0 = Instant::now();
    let id = DtlsIdentity::generate().unwrap();
    let mut b = Browser::new(&id, "127.0.0.1:50000", t0);
    let mut s = session(&id, t0);

    // ICE: a nominating check is answered, to where it came from.
    let check = b.check(L_PWD, true);
    s.handle_datagram(t0, b.addr, &check).unwrap();
    let out = sent(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, b.addr);
    let resp = StunMessage::parse(&out[0].1).unwrap();
    assert_eq!(resp.class(), Class::Success);
    assert_eq!(resp.xor_mapped_address(), Some(b.addr));
    assert!(matches!(events(&mut s)[..], [SessionEvent::Selected(a)] if a == b.addr));

    // DTLS, both ways, until the keys come out.
    let mut now = t0;
    let mut got = None;
    for _ in 0..20 {
        now += Duration::from_millis(2);
        for p in b.dtls_out(now) {
            s.handle_datagram(now, b.addr, &p).unwrap();
        }
        for (to, p) in sent(&mut s) {
            assert_eq!(to, b.addr);
            b.dtls.handle_packet(&p).unwrap();
        }
        for e in events(&mut s) {
            match e {
                SessionEvent::Established(keys) => got = Some(keys),
                other => panic!("unexpected {other:?}"),
            }
        }
        if got.is_some() {
            break;
        }
    }
    b.dtls_out(now);
    let keys = got.expect("handshake finished");
    let theirs = LegKeying::split(keys.profile, &b.keys.expect("browser keys")).unwrap();
    assert_eq!(
        keys.client_to_relay.as_bytes(),
        theirs.client_to_relay.as_bytes()
    );
    assert_eq!(
        keys.relay_to_client.as_bytes(),
        theirs.relay_to_client.as_bytes()
    );
    assert!(!s.is_handshaking());
}

#[test]
fn dtls_from_an_address_without_a_valid_check_is_dropped() {
    let t0 = Instant::now();
    let id = DtlsIdentity::generate().unwrap();
    let mut b = Browser::new(&id, "127.0.0.1:50000", t0);
    let mut s = session(&id, t0);
    let hello = b.dtls_out(t0);
    assert_eq!(
        s.handle_datagram(t0, b.addr, &hello[0]),
        Err(SessionDrop::DtlsUnvalidated)
    );
    // A forged check validates nothing either.
    let forged = b.check("not-the-password-at-all!", true);
    assert_eq!(
        s.handle_datagram(t0, b.addr, &forged),
        Err(SessionDrop::Stun(StunDrop::BadIntegrity))
    );
    assert_eq!(
        s.handle_datagram(t0, b.addr, &hello[0]),
        Err(SessionDrop::DtlsUnvalidated)
    );
    assert!(sent(&mut s).is_empty());
    assert!(events(&mut s).is_empty());
    assert_eq!(s.selected(), None);
    assert_eq!(
        s.handle_datagram(t0, b.addr, &[0x80, 0, 0, 0]),
        Err(SessionDrop::NotHandshake)
    );
}

#[test]
fn a_stalled_handshake_fails_at_its_deadline_and_consent_then_expires() {
    let t0 = Instant::now();
    let id = DtlsIdentity::generate().unwrap();
    let mut b = Browser::new(&id, "127.0.0.1:50000", t0);
    let mut s = session(&id, t0);
    let check = b.check(L_PWD, true);
    s.handle_datagram(t0, b.addr, &check).unwrap();
    let hello = b.dtls_out(t0);
    s.handle_datagram(t0, b.addr, &hello[0]).unwrap();
    sent(&mut s);
    events(&mut s);
    // The browser goes silent. Walk the session's own timers.
    let mut seen = Vec::new();
    let mut now = t0;
    while let Some(t) = s.poll_timeout() {
        assert!(t >= now, "timers never go backwards");
        now = t;
        s.handle_timeout(now);
        sent(&mut s);
        for e in events(&mut s) {
            seen.push((now - t0, format!("{e:?}")));
        }
        assert!(now - t0 <= Duration::from_secs(31), "bounded: {seen:?}");
    }
    let names: Vec<&str> = seen.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(names, ["Failed(Timeout)", "ConsentExpired"], "{seen:?}");
    assert_eq!(seen[0].0, crate::dtls::HANDSHAKE_TIMEOUT);
    assert_eq!(seen[1].0, crate::ice::CONSENT_TIMEOUT);
    assert_eq!(
        s.handle_datagram(now, b.addr, &hello[0]),
        Err(SessionDrop::DtlsAfterEnd)
    );
}

//! A browser leg keyed by a real DTLS-SRTP handshake, in a standard
//! meeting with an SDES leg, through the ordinary [`RelayWorker`]: each
//! receives the other's packet under its own keys. Simulated time, no
//! sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use sluice_webrtc::client::{DtlsClient, write_check};
use sluice_webrtc::dtls::DtlsConfig;
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::keying::LegKeying;
use sluice_webrtc::session::{MAX_TRANSMIT, Session, SessionEvent, SessionParams};

use super::*;
use crate::crypto::AnyGcm;
use crate::metrics::WorkerCounters;
use crate::relay::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RelayWorker, RoutingSnapshot,
    StreamRoute, Transmits,
};
use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use crate::srtp::SrtpSession;

const BROWSER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50_000,
));
const SDES: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50_002,
));

/// Runs ICE and DTLS between a session and a client; returns the relay's
/// keys, the browser's keys and the address ICE selected.
fn handshake() -> (LegKeying, LegKeying, SocketAddr) {
    let t0 = Instant::now();
    let relay_id = DtlsIdentity::generate().unwrap();
    let browser_id = DtlsIdentity::generate().unwrap();
    let mut session = Session::new(
        &DtlsConfig::new(),
        &relay_id,
        SessionParams {
            local_ufrag: "relay".into(),
            local_pwd: "relaypasswordrelaypassword".into(),
            remote_ufrag: "brws".into(),
            remote_fingerprint: browser_id.fingerprint().clone(),
        },
        t0,
    );
    let mut client = DtlsClient::new(&browser_id, t0);
    let mut check = [0u8; 256];
    let len = write_check(
        &mut check,
        [9; 12],
        "relay",
        "brws",
        "relaypasswordrelaypassword",
        true,
    )
    .unwrap();
    session.handle_datagram(t0, BROWSER, &check[..len]).unwrap();
    let mut buf = [0u8; MAX_TRANSMIT];
    let mut selected = None;
    let mut relay_keys = None;
    let mut now = t0;
    for _ in 0..20 {
        now += Duration::from_millis(5);
        client.handle_timeout(now);
        for p in client.poll_transmits() {
            session.handle_datagram(now, BROWSER, &p).unwrap();
        }
        while let Some(t) = session.poll_transmit(&mut buf) {
            assert_eq!(t.to, BROWSER);
            if sluice_webrtc::demux::PacketClass::of(&buf[..t.len])
                == sluice_webrtc::demux::PacketClass::Dtls
            {
                client.handle_packet(now, &buf[..t.len]);
            }
        }
        while let Some(e) = session.poll_event() {
            match e {
                SessionEvent::Selected(a) => selected = Some(a),
                SessionEvent::Established(k) => relay_keys = Some(k),
                other => panic!("unexpected {other:?}"),
            }
        }
        if relay_keys.is_some() {
            break;
        }
    }
    client.poll_transmits();
    assert_eq!(client.peer_certificate(), Some(relay_id.certificate_der()));
    (
        relay_keys.expect("handshake done"),
        client.keying().expect("client keyed").clone(),
        selected.expect("ICE nominated"),
    )
}

fn route(id: u64, c2r: MasterKey, r2c: MasterKey, latch: Option<SocketAddr>) -> Arc<LegRoute> {
    let l = Latch::default();
    if let Some(a) = latch {
        l.set(a);
    }
    Arc::new(LegRoute {
        id: LegId(id),
        meeting: MeetingIdx(1),
        mode: MeetingMode::Standard,
        client_to_relay: c2r,
        relay_to_client: r2c,
        latch: Arc::new(l),
        next_srtcp_index: Arc::new(AtomicU32::new(0)),
        highest_srtcp_index: Arc::new(AtomicU64::new(0)),
    })
}

fn stream(ssrc: u32, leg: u64) -> Arc<StreamRoute> {
    Arc::new(StreamRoute {
        ssrc,
        leg: LegId(leg),
        kind: MediaKind::Audio,
        payload_type: 111,
        highest_index: Arc::new(AtomicU64::new(0)),
    })
}

fn rtp(ssrc: u32, seq: u16, session: &mut SrtpSession<AnyGcm>) -> (Vec<u8>, Vec<u8>) {
    let mut buf = vec![0u8; 512];
    let payload = [ssrc as u8; 160];
    let len = RtpBuilder::new(
        PayloadType::new(111).unwrap(),
        SeqNum(seq),
        960 * u32::from(seq),
        Ssrc(ssrc),
    )
    .write(&payload, &mut buf)
    .unwrap();
    let plain = buf[..len].to_vec();
    let n = session.protect_rtp(&mut buf, len).unwrap();
    buf.truncate(n);
    (plain, buf)
}

fn deliver(
    worker: &mut RelayWorker<AnyGcm>,
    snapshot: &RoutingSnapshot,
    from: SocketAddr,
    datagram: &[u8],
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = datagram.to_vec();
    buf.resize(2048, 0);
    let mut out = Transmits::default();
    worker.handle_datagram(snapshot, from, &mut buf, datagram.len(), &mut out);
    out.iter().map(|t| (t.dest, t.data.to_vec())).collect()
}

#[test]
fn a_dtls_keyed_browser_leg_and_an_sdes_leg_hear_each_other_through_the_worker() {
    let (relay_side, browser_side, selected) = handshake();
    assert_eq!(selected, BROWSER);
    let leg = BrowserLegKeys::from_keying(&relay_side).unwrap();
    assert_eq!(leg.client_to_relay.profile(), SrtpProfile::AeadAes256Gcm);

    // The SDES participant's keys, as the control API would hand them out.
    let sdes_c2r = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[0x11; 44]).unwrap();
    let sdes_r2c = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[0x22; 44]).unwrap();

    let mut snapshot = RoutingSnapshot::default();
    snapshot.legs.insert(
        LegId(1),
        route(
            1,
            leg.client_to_relay.clone(),
            leg.relay_to_client,
            Some(selected),
        ),
    );
    snapshot
        .legs
        .insert(LegId(2), route(2, sdes_c2r.clone(), sdes_r2c.clone(), None));
    snapshot
        .meetings
        .insert(MeetingIdx(1), Arc::new(vec![LegId(1), LegId(2)]));
    snapshot.streams.insert(0xB0, stream(0xB0, 1));
    snapshot.streams.insert(0x5D, stream(0x5D, 2));
    snapshot.generation = 1;
    let mut worker = RelayWorker::new(AnyGcm::default(), Arc::new(WorkerCounters::default()));

    // The browser protects with its own half of the exporter split.
    let browser_c2r = MasterKey::new(
        SrtpProfile::AeadAes256Gcm,
        browser_side.client_to_relay.as_bytes(),
    )
    .unwrap();
    let browser_r2c = MasterKey::new(
        SrtpProfile::AeadAes256Gcm,
        browser_side.relay_to_client.as_bytes(),
    )
    .unwrap();
    let mut browser_tx = SrtpSession::new(AnyGcm::default(), &browser_c2r).unwrap();
    let mut browser_rx = SrtpSession::new(AnyGcm::default(), &browser_r2c).unwrap();
    let mut sdes_tx = SrtpSession::new(AnyGcm::default(), &sdes_c2r).unwrap();
    let mut sdes_rx = SrtpSession::new(AnyGcm::default(), &sdes_r2c).unwrap();

    // SDES → relay: latches the SDES leg; the browser (latched by ICE) gets it.
    let (plain, srtp) = rtp(0x5D, 1, &mut sdes_tx);
    let sent = deliver(&mut worker, &snapshot, SDES, &srtp);
    assert_eq!(sent.len(), 1, "to the browser only");
    let (to, mut pkt) = sent.into_iter().next().unwrap();
    assert_eq!(to, BROWSER);
    let n = pkt.len();
    let n = browser_rx.unprotect_rtp(&mut pkt, n).unwrap();
    assert_eq!(
        &pkt[..n],
        &plain[..],
        "the browser decrypts with its DTLS key"
    );

    // Browser → relay → SDES.
    let (plain, srtp) = rtp(0xB0, 1, &mut browser_tx);
    let sent = deliver(&mut worker, &snapshot, BROWSER, &srtp);
    assert_eq!(sent.len(), 1);
    let (to, mut pkt) = sent.into_iter().next().unwrap();
    assert_eq!(to, SDES);
    let n = pkt.len();
    let n = sdes_rx.unprotect_rtp(&mut pkt, n).unwrap();
    assert_eq!(&pkt[..n], &plain[..]);

    // A packet under a key the browser never negotiated is dropped.
    let stranger = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[0x33; 44]).unwrap();
    let mut forger = SrtpSession::new(AnyGcm::default(), &stranger).unwrap();
    let (_, forged) = rtp(0xB0, 2, &mut forger);
    assert!(deliver(&mut worker, &snapshot, BROWSER, &forged).is_empty());
}

#[test]
fn every_dtls_profile_maps_to_the_srtp_profile_of_the_same_name() {
    for p in DtlsSrtpProfile::PREFERENCE {
        let s = srtp_profile(p);
        assert_eq!(s.name(), p.name());
        assert_eq!(s.master_key_len(), p.key_len());
        assert_eq!(s.master_salt_len(), p.salt_len());
        let keying = LegKeying::split(p, &vec![7; p.material_len()]).unwrap();
        let keys = BrowserLegKeys::from_keying(&keying).unwrap();
        assert_eq!(keys.relay_to_client.profile(), s);
    }
}

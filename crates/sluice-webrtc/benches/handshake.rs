//! DTLS-SRTP handshakes per second on the relay's side.
//!
//! Each iteration is one whole browser join: a nominating ICE check and a
//! full DTLS 1.2 handshake (cookie round trip, ECDHE, ECDSA both ways,
//! the SRTP exporter) between a fresh [`Session`] and a fresh
//! [`DtlsClient`], in memory. `relay_side` times only the relay's calls
//! (`Session::new`, `handle_datagram`, `poll_transmit`, `poll_event`): the
//! client's work is excluded the way a client on another core would be, so
//! its figure is per relay core. `both_sides` times everything.
//!
//! `cargo bench -p sluice-webrtc --bench handshake`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_webrtc::client::{DtlsClient, write_check};
use sluice_webrtc::dtls::DtlsConfig;
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::session::{MAX_TRANSMIT, Session, SessionEvent, SessionParams};

const PWD: &str = "relaypasswordrelaypassword";

/// One join; returns the time spent in the relay's calls.
fn join(config: &DtlsConfig, relay: &DtlsIdentity, browser: &DtlsIdentity) -> Duration {
    let from: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let t0 = Instant::now();
    let mut relay_time = Duration::ZERO;
    let mut timed = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        relay_time += start.elapsed();
    };
    let mut session = None;
    timed(&mut || {
        session = Some(Session::new(
            config,
            relay,
            SessionParams {
                local_ufrag: "relay".into(),
                local_pwd: PWD.into(),
                remote_ufrag: "brws".into(),
                remote_fingerprint: browser.fingerprint().clone(),
            },
            t0,
        ));
    });
    let mut session = session.unwrap();
    let mut client = DtlsClient::new(browser, t0);
    let mut check = [0u8; 256];
    let len = write_check(&mut check, [3; 12], "relay", "brws", PWD, true).unwrap();
    let mut buf = vec![0u8; MAX_TRANSMIT];
    let mut replies: Vec<Vec<u8>> = Vec::new();
    timed(&mut || {
        session.handle_datagram(t0, from, &check[..len]).unwrap();
        while let Some(t) = session.poll_transmit(&mut buf) {
            replies.push(buf[..t.len].to_vec());
        }
    });
    let mut done = false;
    for round in 1..20u64 {
        let now = t0 + Duration::from_millis(round);
        client.handle_timeout(now);
        let flight = client.poll_transmits();
        for p in replies.drain(..).filter(|p| (20..=63).contains(&p[0])) {
            client.handle_packet(now, &p);
        }
        let flight: Vec<Vec<u8>> = flight.into_iter().chain(client.poll_transmits()).collect();
        timed(&mut || {
            for p in &flight {
                let _ = session.handle_datagram(now, from, p);
            }
            while let Some(t) = session.poll_transmit(&mut buf) {
                replies.push(buf[..t.len].to_vec());
            }
            while let Some(e) = session.poll_event() {
                if let SessionEvent::Established(_) = e {
                    done = true;
                }
            }
        });
        if done {
            break;
        }
    }
    assert!(done, "the handshake finished");
    relay_time
}

fn handshakes(c: &mut Criterion) {
    let config = DtlsConfig::new();
    let relay = DtlsIdentity::generate().unwrap();
    let browser = DtlsIdentity::generate().unwrap();
    let mut group = c.benchmark_group("dtls_srtp_join");
    group.sample_size(20);
    group.bench_function("relay_side", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| join(&config, &relay, &browser)).sum());
    });
    group.bench_function("both_sides", |b| {
        b.iter(|| join(&config, &relay, &browser));
    });
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);

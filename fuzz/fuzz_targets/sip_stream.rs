//! SIP over a stream on arbitrary bytes: the data cut into reads at sizes
//! taken from its first byte, framed by `StreamFramer` (Content-Length,
//! CRLF keep-alives, the size limit) and every whole message fed to a
//! `Uas` over TCP and TLS, as the SIP thread does. Nothing may panic; the
//! framer never holds more than twice its limit, and every message it
//! yields fits the limit.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::sip::{Event, Frame, StreamFramer, Transport, Uas, UasConfig};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let local: SocketAddr = "192.0.2.10:5060".parse().expect("literal");
    let peer: SocketAddr = "198.51.100.7:41000".parse().expect("literal");
    let mut cfg = UasConfig::new(local, "fuzz");
    cfg.tcp = Some(local);
    cfg.tls = Some(local);
    for transport in [Transport::Tcp, Transport::Tls] {
        // One UAS per transport: everything it sends must then go back
        // over that transport, to the connection's peer.
        let mut uas = Uas::with_seed(cfg.clone(), 3);
        let mut now = Instant::now();
        let mut framer = StreamFramer::new(LIMIT);
        'stream: for piece in data.chunks(step) {
            if framer.push(piece).is_err() {
                break;
            }
            assert!(framer.buffered() <= 2 * LIMIT);
            loop {
                match framer.poll_frame() {
                    Ok(Some(Frame::Message(m))) => {
                        assert!(m.len() <= LIMIT);
                        uas.handle_message(now, transport, peer, &m);
                    }
                    Ok(Some(Frame::Ping)) => {}
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
            while let Some(event) = uas.poll_event() {
                if let Event::Incoming { call, .. } = event {
                    uas.reject(now, call, 486, "Busy Here", &[]);
                }
            }
            while let Some(t) = uas.poll_transmit() {
                assert_eq!(t.transport, transport);
                assert_eq!(t.to, peer);
            }
        }
        // Every timer runs out; the UAS ends up holding nothing.
        for _ in 0..16 {
            now += Duration::from_secs(40);
            uas.handle_timeout(now);
            while uas.poll_event().is_some() {}
            while let Some(t) = uas.poll_transmit() {
                assert_eq!((t.transport, t.to), (transport, peer));
            }
        }
        assert_eq!(uas.active_calls(), 0);
    }
});

//! The relay's side of one DTLS-SRTP handshake (RFC 5764; RFC 8842 §5:
//! the relay answers `a=setup:passive`, so it is always the DTLS server),
//! sans-IO over [`dimpl`].
//!
//! dimpl runs the DTLS 1.2 state machine (cookie exchange, fragment
//! reassembly of ~1.4 kB browser ClientHellos, retransmission, extended
//! master secret, the `use_srtp` extension and the RFC 5764 §4.2 exporter);
//! this type adds what sluice needs around it: the peer's certificate must
//! match its offer's `a=fingerprint` before any key is released, a hard
//! handshake deadline, and one outcome per session
//! ([`DtlsEvent::Established`] with the leg's [`LegKeying`], or
//! [`DtlsEvent::Failed`] with a bounded reason).
//!
//! Drive: [`DtlsServer::handle_packet`] for each DTLS datagram of the
//! session, [`DtlsServer::handle_timeout`] when [`DtlsServer::poll_timeout`]
//! passes, and after either, [`DtlsServer::poll_transmit`] until `None`
//! and [`DtlsServer::poll_event`] until `None`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Dtls, Output};

use crate::identity::{DtlsIdentity, Fingerprint};
use crate::keying::{DtlsSrtpProfile, LegKeying};

/// How long a handshake may take from its first datagram before the
/// session is dropped. Browsers finish in a few round trips; a peer that
/// stalls (or a flood of half-open hellos) is cleaned up after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every handshake of the process.
#[derive(Debug, Clone)]
pub struct DtlsConfig {
    dimpl: Arc<dimpl::Config>,
    handshake_timeout: Duration,
}

impl DtlsConfig {
    /// The defaults: MTU 1200, the peer's certificate required, a stateless
    /// cookie round trip (a spoofed source costs the relay nothing),
    /// [`HANDSHAKE_TIMEOUT`].
    pub fn new() -> Self {
        Self::with_handshake_timeout(HANDSHAKE_TIMEOUT)
    }

    /// As [`DtlsConfig::new`] with another handshake deadline.
    pub fn with_handshake_timeout(handshake_timeout: Duration) -> Self {
        let dimpl = dimpl::Config::builder()
            .with_crypto_provider(crate::crypto::provider())
            .mtu(1200)
            .require_client_certificate(true)
            .use_server_cookie(true)
            .handshake_timeout(handshake_timeout)
            .build()
            // Every value above is within dimpl's documented bounds.
            .unwrap_or_else(|e| unreachable!("dimpl refused a fixed config: {e}"));
        Self {
            dimpl: Arc::new(dimpl),
            handshake_timeout,
        }
    }
}

impl Default for DtlsConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a handshake ended without keys. Bounded: each is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsFailure {
    /// Not finished within the handshake deadline.
    Timeout,
    /// The peer's certificate does not match its offer's `a=fingerprint`.
    FingerprintMismatch,
    /// Connected without a peer certificate or without an SRTP profile.
    Incomplete,
    /// The exporter gave a length that does not fit the profile.
    Keying,
    /// dimpl ended the connection (a fatal alert, a protocol violation).
    Protocol,
    /// The peer closed before the handshake finished.
    Closed,
}

impl DtlsFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::Incomplete => "incomplete",
            Self::Keying => "keying",
            Self::Protocol => "protocol",
            Self::Closed => "closed",
        }
    }
}

/// What a handshake tells its owner.
#[derive(Debug)]
pub enum DtlsEvent {
    /// Done and the peer is who its offer said: the leg's SRTP keys.
    Established(LegKeying),
    /// Ended without keys; drop the session.
    Failed(DtlsFailure),
    /// The peer sent close_notify after the handshake.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    Done,
}

/// The DTLS server of one WebRTC session.
pub struct DtlsServer {
    dtls: Dtls,
    expected: Fingerprint,
    deadline: Instant,
    dimpl_timeout: Option<Instant>,
    state: State,
    peer_verified: bool,
    connected: bool,
    keying: Option<LegKeying>,
    events: VecDeque<DtlsEvent>,
}

impl std::fmt::Debug for DtlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsServer")
            .field("state", &self.state)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl DtlsServer {
    /// A server for a browser whose offer carried `expected`, created at `now`.
    pub fn new(
        config: &DtlsConfig,
        identity: &DtlsIdentity,
        expected: Fingerprint,
        now: Instant,
    ) -> Self {
        Self {
            dtls: Dtls::new_12(Arc::clone(&config.dimpl), identity.certificate.clone(), now),
            expected,
            deadline: now + config.handshake_timeout,
            dimpl_timeout: None,
            state: State::Handshaking,
            peer_verified: false,
            connected: false,
            keying: None,
            events: VecDeque::new(),
        }
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }

    /// Whether the session is over (failed, timed out or closed).
    pub fn is_ended(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds one DTLS datagram received at `now`. Garbage in the DTLS
    /// range is discarded by dimpl without ending the session.
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) {
        if self.state == State::Done {
            return;
        }
        self.handle_timeout(now);
        if self.state == State::Done {
            return;
        }
        if self.dtls.handle_packet(datagram).is_err() {
            self.fail(DtlsFailure::Protocol);
        }
    }

    /// Advances time: retransmissions, and the handshake deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Done {
            return;
        }
        if self.state == State::Handshaking && now >= self.deadline {
            self.fail(DtlsFailure::Timeout);
            return;
        }
        if self.dtls.handle_timeout(now).is_err() {
            let reason = if self.state == State::Handshaking {
                DtlsFailure::Timeout
            } else {
                DtlsFailure::Protocol
            };
            self.fail(reason);
        }
    }

    /// The next datagram to send to the peer, written into `buf` (give it
    /// at least 1,500 bytes). Call until `None` after every `handle_*`.
    pub fn poll_transmit<'a>(&mut self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.state == State::Done {
            return None;
        }
        let base = buf.as_ptr() as usize;
        let mut packet = None;
        let mut cycle_done = false;
        loop {
            match self.dtls.poll_output(buf) {
                Output::Packet(p) => {
                    // dimpl writes into `buf`: keep the place, not the borrow.
                    let at = (p.as_ptr() as usize).wrapping_sub(base);
                    packet = Some((at, p.len()));
                    break;
                }
                Output::Timeout(t) => {
                    self.dimpl_timeout = Some(t);
                    cycle_done = true;
                    break;
                }
                Output::BufferTooSmall { .. } => {
                    self.fail(DtlsFailure::Protocol);
                    break;
                }
                Output::PeerCert(der) => {
                    if self.expected.matches(der) {
                        self.peer_verified = true;
                    } else {
                        self.fail(DtlsFailure::FingerprintMismatch);
                        break;
                    }
                }
                Output::KeyingMaterial(material, profile) => {
                    let profile = match profile {
                        dimpl::SrtpProfile::AEAD_AES_256_GCM => DtlsSrtpProfile::AeadAes256Gcm,
                        dimpl::SrtpProfile::AEAD_AES_128_GCM => DtlsSrtpProfile::AeadAes128Gcm,
                        _ => DtlsSrtpProfile::AesCm128HmacSha1_80,
                    };
                    match LegKeying::split(profile, &material) {
                        Ok(keys) => self.keying = Some(keys),
                        Err(_) => {
                            self.fail(DtlsFailure::Keying);
                            break;
                        }
                    }
                }
                Output::Connected => self.connected = true,
                Output::CloseNotify => {
                    let established = self.state == State::Established;
                    self.state = State::Done;
                    self.events.push_back(if established {
                        DtlsEvent::Closed
                    } else {
                        DtlsEvent::Failed(DtlsFailure::Closed)
                    });
                    break;
                }
                // Data channels are not offered; anything else is ignored.
                _ => {}
            }
        }
        // dimpl's state is consistent only at the end of a poll cycle
        // (Timeout), and it reports Connected before KeyingMaterial.
        if cycle_done {
            self.settle();
        }
        // `get` rather than indexing: should dimpl ever hand back bytes
        // outside `buf`, the datagram is dropped instead of panicking.
        packet.and_then(|(at, len)| buf.get(at..at.checked_add(len)?))
    }

    /// When [`DtlsServer::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking => Some(
                self.dimpl_timeout
                    .map_or(self.deadline, |t| t.min(self.deadline)),
            ),
            State::Established => self.dimpl_timeout,
            State::Done => None,
        }
    }

    /// The next event; drain after every call.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// Releases the keys once connected, verified and keyed, in any order
    /// dimpl reports those.
    fn settle(&mut self) {
        if self.state != State::Handshaking || !self.connected {
            return;
        }
        match (self.peer_verified, self.keying.take()) {
            (true, Some(keys)) => {
                self.state = State::Established;
                self.events.push_back(DtlsEvent::Established(keys));
            }
            // A whole poll cycle after Connected and still no verified
            // certificate or no SRTP profile: the peer did not negotiate
            // DTLS-SRTP properly, and nothing more will come.
            _ => self.fail(DtlsFailure::Incomplete),
        }
    }

    fn fail(&mut self, reason: DtlsFailure) {
        if self.state != State::Done {
            self.state = State::Done;
            self.keying = None;
            self.events.push_back(DtlsEvent::Failed(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser stand-in: a dimpl client with its own certificate.
    struct Client {
        dtls: Dtls,
        keys: Option<(dimpl::SrtpProfile, Vec<u8>)>,
        connected: bool,
    }

    impl Client {
        fn new(identity: &DtlsIdentity, mtu: usize, now: Instant) -> Self {
            let config = dimpl::Config::builder().mtu(mtu).build().unwrap();
            let mut dtls = Dtls::new_12(Arc::new(config), identity.certificate.clone(), now);
            dtls.set_active(true);
            Self {
                dtls,
                keys: None,
                connected: false,
            }
        }

        fn drain(&mut self) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 2000];
            loop {
                match self.dtls.poll_output(&mut buf) {
                    Output::Packet(p) => out.push(p.to_vec()),
                    Output::Timeout(_) => break,
                    Output::KeyingMaterial(m, p) => self.keys = Some((p, m.to_vec())),
                    Output::Connected => self.connected = true,
                    _ => {}
                }
            }
            out
        }
    }

    fn drain_server(server: &mut DtlsServer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2000];
        while let Some(p) = server.poll_transmit(&mut buf) {
            out.push(p.to_vec());
        }
        out
    }

    /// Steps client and server through a lossless network, 1 ms per hop,
    /// on simulated time. Returns the server's events, the datagram sizes
    /// the client sent, and the client.
    fn run(
        server_expects: Fingerprint,
        client_id: &DtlsIdentity,
        mtu: usize,
    ) -> (Vec<DtlsEvent>, Vec<usize>, Client) {
        let t0 = Instant::now();
        let relay = DtlsIdentity::generate().unwrap();
        let mut server = DtlsServer::new(&DtlsConfig::new(), &relay, server_expects, t0);
        let mut client = Client::new(client_id, mtu, t0);
        let mut events = Vec::new();
        let mut sizes = Vec::new();
        let mut now = t0;
        for _ in 0..50 {
            now += Duration::from_millis(1);
            client.dtls.handle_timeout(now).unwrap();
            for p in client.drain() {
                sizes.push(p.len());
                server.handle_packet(now, &p);
            }
            for p in drain_server(&mut server) {
                client.dtls.handle_packet(&p).unwrap();
            }
            while let Some(e) = server.poll_event() {
                events.push(e);
            }
            if !server.is_handshaking() && client.connected {
                break;
            }
        }
        // Let the client take the server's last flight.
        client.drain();
        (events, sizes, client)
    }

    #[test]
    fn a_handshake_yields_the_same_keys_on_both_sides_crosswise() {
        let browser = DtlsIdentity::generate().unwrap();
        let (events, _, client) = run(browser.fingerprint().clone(), &browser, 1150);
        let [DtlsEvent::Established(keys)] = &events[..] else {
            panic!("expected one Established, got {events:?}");
        };
        // dimpl prefers AES-256-GCM, as sluice does.
        assert_eq!(keys.profile, DtlsSrtpProfile::AeadAes256Gcm);
        let (profile, material) = client.keys.expect("client exported keys");
        assert_eq!(profile, dimpl::SrtpProfile::AEAD_AES_256_GCM);
        // The client's own split, by RFC 5764 §4.2, seen from its side.
        let theirs = LegKeying::split(DtlsSrtpProfile::AeadAes256Gcm, &material).unwrap();
        assert_eq!(
            keys.client_to_relay.as_bytes(),
            theirs.client_to_relay.as_bytes()
        );
        assert_eq!(
            keys.relay_to_client.as_bytes(),
            theirs.relay_to_client.as_bytes()
        );
        assert_ne!(
            keys.client_to_relay.as_bytes(),
            keys.relay_to_client.as_bytes()
        );
    }

    #[test]
    fn a_fragmented_client_hello_is_reassembled() {
        let browser = DtlsIdentity::generate().unwrap();
        // A small MTU makes the client split its flights into fragments
        // (Chrome's ~1.4 kB hellos arrive in two datagrams on some paths).
        let (events, sizes, _) = run(browser.fingerprint().clone(), &browser, 150);
        assert!(sizes.iter().all(|&s| s <= 150), "{sizes:?}");
        assert!(sizes.len() > 6, "flights were fragmented: {sizes:?}");
        assert!(
            matches!(events[..], [DtlsEvent::Established(_)]),
            "{events:?}"
        );
    }

    #[test]
    fn a_certificate_not_matching_the_offer_releases_no_keys() {
        let browser = DtlsIdentity::generate().unwrap();
        let impostor = DtlsIdentity::generate().unwrap();
        let (events, _, _) = run(browser.fingerprint().clone(), &impostor, 1150);
        assert!(
            matches!(
                events[..],
                [DtlsEvent::Failed(DtlsFailure::FingerprintMismatch)]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_handshake_that_never_finishes_fails_at_the_deadline() {
        let t0 = Instant::now();
        let relay = DtlsIdentity::generate().unwrap();
        let browser = DtlsIdentity::generate().unwrap();
        let config = DtlsConfig::with_handshake_timeout(Duration::from_secs(3));
        let mut server = DtlsServer::new(&config, &relay, browser.fingerprint().clone(), t0);
        let mut client = Client::new(&browser, 1150, t0);
        client.dtls.handle_timeout(t0).unwrap();
        // The first flight arrives; the server's answers are all lost.
        for p in client.drain() {
            server.handle_packet(t0, &p);
        }
        drain_server(&mut server);
        let mut now = t0;
        while let Some(t) = server.poll_timeout() {
            assert!(
                t <= t0 + Duration::from_secs(3),
                "deadline bounds the timer"
            );
            now = t;
            server.handle_timeout(now);
            drain_server(&mut server);
        }
        assert!(now <= t0 + Duration::from_secs(3));
        assert!(matches!(
            server.poll_event(),
            Some(DtlsEvent::Failed(DtlsFailure::Timeout))
        ));
        assert!(!server.is_handshaking());
        assert_eq!(server.poll_timeout(), None, "nothing left to wake for");
    }

    #[test]
    fn random_bytes_in_the_dtls_range_neither_panic_nor_end_the_session() {
        let t0 = Instant::now();
        let relay = DtlsIdentity::generate().unwrap();
        let browser = DtlsIdentity::generate().unwrap();
        let mut server = DtlsServer::new(
            &DtlsConfig::new(),
            &relay,
            browser.fingerprint().clone(),
            t0,
        );
        // A small xorshift, seeded: reproducible noise without a dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = [0u8; 2000];
        for i in 0..2000 {
            let len = (i % 200) + 1;
            let noise: Vec<u8> = (0..len)
                .map(|j| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if j == 0 { 20 + (x % 44) as u8 } else { x as u8 }
                })
                .collect();
            server.handle_packet(t0, &noise);
            while server.poll_transmit(&mut buf).is_some() {}
        }
        // Noise is discarded, not fatal: the real browser still gets in.
        assert!(server.is_handshaking());
        assert!(server.poll_event().is_none());
        let mut client = Client::new(&browser, 1150, t0);
        client.dtls.handle_timeout(t0).unwrap();
        for p in client.drain() {
            server.handle_packet(t0, &p);
        }
        assert!(
            server.poll_transmit(&mut buf).is_some(),
            "HelloVerifyRequest"
        );
    }
}

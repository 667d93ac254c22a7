//! A packet handler for tests of the workers themselves: it echoes each
//! datagram to its sender and panics on one that says `panic`, as a bug in
//! the relay core would. No production handler has such a switch: the
//! fault lives in the tests.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice::net::PacketHandler;
use sluice::relay::{MeetingMode, Path, RoutingSnapshot, Transmits};

/// Echoes each datagram; panics on `panic`.
pub struct FragileEcho;

impl PacketHandler for FragileEcho {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        assert_ne!(&packet[..len], b"panic", "injected fault");
        let slot = out.slot();
        slot[..len].copy_from_slice(&packet[..len]);
        out.commit(len, from, MeetingMode::E2ee);
    }
}

/// Whether `hello` sent from `c` to `to` comes back within 3 s (`c` has a
/// short read timeout).
pub fn echoes(c: &UdpSocket, to: SocketAddr) -> bool {
    c.send_to(b"hello", to).unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            return &buf[..n] == b"hello";
        }
    }
    false
}

//! Where a leg's packets come from and go to: the peer's address and the
//! local address the peer sent to. On a box bound to `0.0.0.0` or `[::]`
//! with several addresses, a reply must leave from the address the peer
//! sent to (its NAT or firewall expects that 5-tuple); the I/O layer
//! learns the local address of each datagram (`IP_PKTINFO` /
//! `IPV6_RECVPKTINFO`) and sends from it again.

use std::net::{IpAddr, SocketAddr};

/// A peer's address and, when known, the local address it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// The peer's address (IPv4 peers of a dual-stack socket as plain IPv4).
    pub remote: SocketAddr,
    /// The local address the peer sent to; `None` when the socket is bound
    /// to one address (the kernel then sends from it anyway).
    pub local: Option<IpAddr>,
}

impl Path {
    /// `remote`, reached at `local`.
    pub fn new(remote: SocketAddr, local: Option<IpAddr>) -> Self {
        Self { remote, local }
    }
}

impl From<SocketAddr> for Path {
    /// A path whose local address the kernel chooses.
    fn from(remote: SocketAddr) -> Self {
        Self {
            remote,
            local: None,
        }
    }
}

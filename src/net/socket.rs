//! The media port: one UDP socket per worker, all in one `SO_REUSEPORT`
//! group, steered by SSRC (`steer.rs`) so each stream reaches one worker
//! whatever address it comes from, and its state never crosses threads
//! (DESIGN.md, "Shared-nothing workers"); what is not RTP goes by the
//! kernel's 4-tuple hash.
//!
//! Bound to every address (`0.0.0.0`, `[::]`), each socket also asks for
//! every datagram's local address (`IP_PKTINFO`, `IPV6_RECVPKTINFO`), so
//! replies leave from the address the peer sent to (`cmsg.rs`); `[::]` is
//! dual-stack whatever `net.ipv6.bindv6only` says.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::NetError;

/// Binds `count` sockets to `listen` in one reuse-port group. The first
/// bind resolves port 0 to a real port, which the others then bind too.
/// Returns the sockets and the bound address.
pub(crate) fn bind_group(
    listen: SocketAddr,
    count: usize,
    buffer_bytes: usize,
) -> Result<(Vec<UdpSocket>, SocketAddr), NetError> {
    let first = bind_one(listen, buffer_bytes)?;
    let local = first.local_addr().map_err(|source| NetError::Socket {
        what: "getsockname",
        source,
    })?;
    warn_if_buffers_capped(&first, buffer_bytes);
    let mut sockets = Vec::with_capacity(count);
    sockets.push(first);
    for _ in 1..count {
        sockets.push(bind_one(local, buffer_bytes)?);
    }
    if let Some(first) = sockets.first()
        && let Err(error) = super::steer::attach(first, count)
    {
        tracing::warn!(
            %error,
            "cannot steer media by SSRC (SO_ATTACH_REUSEPORT_CBPF); workers are chosen by \
             4-tuple hash, and a publisher whose address changes after a sequence wrap \
             loses its stream"
        );
    }
    Ok((sockets, local))
}

fn bind_one(addr: SocketAddr, buffer_bytes: usize) -> Result<UdpSocket, NetError> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(
        |source| NetError::Socket {
            what: "socket(AF_INET*, SOCK_DGRAM)",
            source,
        },
    )?;
    socket
        .set_reuse_port(true)
        .map_err(|source| NetError::Socket {
            what: "setsockopt(SO_REUSEPORT)",
            source,
        })?;
    if addr.ip().is_unspecified() {
        want_local_addresses(&socket, addr)?;
    }
    if buffer_bytes > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max, which
        // `warn_if_buffers_capped` reports once.
        let _ = socket.set_recv_buffer_size(buffer_bytes);
        let _ = socket.set_send_buffer_size(buffer_bytes);
    }
    socket
        .bind(&addr.into())
        .map_err(|source| NetError::Bind { addr, source })?;
    Ok(socket.into())
}

/// Asks the kernel for each datagram's local address; for `[::]`, also
/// takes IPv4 (dual stack), so one listen address serves both families.
fn want_local_addresses(socket: &Socket, addr: SocketAddr) -> Result<(), NetError> {
    use nix::sys::socket::{setsockopt, sockopt};
    let (what, set) = if addr.is_ipv6() {
        socket
            .set_only_v6(false)
            .map_err(|source| NetError::Socket {
                what: "setsockopt(IPV6_V6ONLY, 0)",
                source,
            })?;
        (
            "setsockopt(IPV6_RECVPKTINFO)",
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true),
        )
    } else {
        (
            "setsockopt(IP_PKTINFO)",
            setsockopt(socket, sockopt::Ipv4PacketInfo, &true),
        )
    };
    set.map_err(|errno| NetError::Socket {
        what,
        source: errno.into(),
    })
}

/// Linux reports twice what was granted; a smaller value means the sysctl
/// limit capped the request, which loses packets in bursts.
fn warn_if_buffers_capped(socket: &UdpSocket, wanted: usize) {
    if wanted == 0 {
        return;
    }
    let socket = socket2::SockRef::from(socket);
    let recv = socket.recv_buffer_size().unwrap_or(0) / 2;
    let send = socket.send_buffer_size().unwrap_or(0) / 2;
    if recv < wanted || send < wanted {
        tracing::warn!(
            wanted,
            receive = recv,
            send,
            "socket buffers are smaller than configured; raise net.core.rmem_max and \
             net.core.wmem_max to at least the configured size"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_and_every_socket_shares_it() {
        let (sockets, local) = bind_group("127.0.0.1:0".parse().unwrap(), 3, 1 << 20).unwrap();
        assert_ne!(local.port(), 0);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), local);
        }
    }

    #[test]
    fn a_port_held_outside_the_group_is_a_bind_error() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        match bind_group(addr, 1, 0) {
            Err(NetError::Bind { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}

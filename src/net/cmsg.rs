//! The ancillary messages the data plane reads and writes: the local
//! address of a datagram (`IP_PKTINFO`, `IPV6_PKTINFO`), so that on a
//! socket bound to `0.0.0.0` or `[::]` a reply leaves from the address the
//! peer sent to (DESIGN.md, "Packet path"; `relay::Path`); and, when
//! sending, the segment size of a UDP GSO send (`UDP_SEGMENT`, `gso.rs`).
//!
//! Written here, in safe code over byte slices, rather than with nix's
//! `ControlMessageOwned`: nix parses only the control buffers of its own
//! `recvmsg`/`recvmmsg` wrappers, which own the message headers, while the
//! receive slots here are laid out once for both `recvmmsg` and io_uring
//! (msghdr.rs). The control bytes are written by the kernel, but they are
//! parsed as untrusted input all the same: any length, any content, never
//! a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Room for the control messages of one datagram, aligned as the kernel
/// aligns `cmsghdr`: one `in6_pktinfo` (40 bytes with its header) and
/// room to spare.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CmsgRoom(pub(crate) [u8; CMSG_ROOM]);

/// Bytes of [`CmsgRoom`].
pub(crate) const CMSG_ROOM: usize = 64;

impl Default for CmsgRoom {
    fn default() -> Self {
        Self([0; CMSG_ROOM])
    }
}

/// `struct cmsghdr`: `size_t cmsg_len; int cmsg_level; int cmsg_type;`,
/// its data aligned to `size_t` (Linux `CMSG_ALIGN`).
const LEN_BYTES: usize = std::mem::size_of::<usize>();
const HDR_BYTES: usize = align(LEN_BYTES + 8);
/// `struct in_pktinfo`: ifindex, spec_dst, addr (the header's destination).
const IN_PKTINFO: usize = 12;
/// `struct in6_pktinfo`: addr, ifindex.
const IN6_PKTINFO: usize = 20;

const fn align(n: usize) -> usize {
    (n + LEN_BYTES - 1) & !(LEN_BYTES - 1)
}

/// The local address the datagram whose control messages are `control`
/// was sent to, if they carry one. IPv4 addresses a dual-stack socket
/// reports as `::ffff:a.b.c.d` come back as plain IPv4.
pub(crate) fn local_address(control: &[u8]) -> Option<IpAddr> {
    let mut rest = control;
    while rest.len() >= HDR_BYTES {
        let len = usize::from_ne_bytes(rest.get(..LEN_BYTES)?.try_into().ok()?);
        let level = i32::from_ne_bytes(rest.get(LEN_BYTES..LEN_BYTES + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(rest.get(LEN_BYTES + 4..LEN_BYTES + 8)?.try_into().ok()?);
        if len < HDR_BYTES {
            return None;
        }
        let data = rest.get(HDR_BYTES..len)?;
        match (level, kind) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= IN_PKTINFO => {
                let addr: [u8; 4] = data.get(8..12)?.try_into().ok()?;
                return Some(IpAddr::V4(Ipv4Addr::from(addr)));
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= IN6_PKTINFO => {
                let addr: [u8; 16] = data.get(..16)?.try_into().ok()?;
                let ip = Ipv6Addr::from(addr);
                return Some(match ip.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(ip),
                });
            }
            _ => {}
        }
        rest = rest.get(align(len)..).unwrap_or_default();
    }
    None
}

/// Writes into `room` the control message that makes a datagram leave
/// from `src`, in the form a socket of the given family takes (a
/// dual-stack IPv6 socket takes IPv4 sources as mapped addresses);
/// returns its length (`msg_controllen`).
pub(crate) fn write_source(room: &mut CmsgRoom, src: IpAddr, v6_socket: bool) -> usize {
    let buf = &mut room.0;
    buf.fill(0);
    let (level, kind, data_len) = if v6_socket {
        let ip = match src {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        buf[HDR_BYTES..HDR_BYTES + 16].copy_from_slice(&ip.octets());
        // ipi6_ifindex stays 0: the route to the destination picks it.
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, IN6_PKTINFO)
    } else {
        let ip = match src {
            IpAddr::V4(v4) => v4,
            // An IPv6 source on an IPv4 socket cannot happen (the socket
            // never received from one); leave the choice to the kernel.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return 0,
            },
        };
        // ipi_ifindex 0, ipi_spec_dst = the source, ipi_addr unused.
        buf[HDR_BYTES + 4..HDR_BYTES + 8].copy_from_slice(&ip.octets());
        (libc::IPPROTO_IP, libc::IP_PKTINFO, IN_PKTINFO)
    };
    let len = HDR_BYTES + data_len;
    buf[..LEN_BYTES].copy_from_slice(&len.to_ne_bytes());
    buf[LEN_BYTES..LEN_BYTES + 4].copy_from_slice(&level.to_ne_bytes());
    buf[LEN_BYTES + 4..LEN_BYTES + 8].copy_from_slice(&kind.to_ne_bytes());
    align(len)
}

/// Appends to `room`, at `at` (the length of the messages already
/// written, aligned), the `UDP_SEGMENT` control message that makes the
/// kernel cut one send into datagrams of `size` bytes (`gso.rs`); returns
/// the new total length, or `at` unchanged if there is no room.
pub(crate) fn write_segment_size(room: &mut CmsgRoom, at: usize, size: u16) -> usize {
    let len = HDR_BYTES + 2;
    let Some(buf) = room.0.get_mut(at..at + align(len)) else {
        return at;
    };
    buf.fill(0);
    buf[..LEN_BYTES].copy_from_slice(&len.to_ne_bytes());
    buf[LEN_BYTES..LEN_BYTES + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    buf[LEN_BYTES + 4..LEN_BYTES + 8].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
    buf[HDR_BYTES..HDR_BYTES + 2].copy_from_slice(&size.to_ne_bytes());
    at + align(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_and_a_segment_size_fit_one_room() {
        let mut room = CmsgRoom::default();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let n = write_source(&mut room, v6, true);
        let end = write_segment_size(&mut room, n, 1200);
        // CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(u16)).
        assert_eq!(end, 40 + 24);
        assert!(end <= CMSG_ROOM);
        // The source still reads back past the second message.
        assert_eq!(local_address(&room.0[..end]), Some(v6));
        assert_eq!(
            &room.0[n + HDR_BYTES..n + HDR_BYTES + 2],
            &1200u16.to_ne_bytes()
        );
        // No room left: nothing written.
        assert_eq!(write_segment_size(&mut room, end, 1200), end);
        assert_eq!(write_segment_size(&mut room, 0, 9), 24);
    }

    #[test]
    fn the_layout_is_the_kernels() {
        assert_eq!(HDR_BYTES, std::mem::size_of::<libc::cmsghdr>());
        assert_eq!(IN_PKTINFO, std::mem::size_of::<libc::in_pktinfo>());
        assert_eq!(IN6_PKTINFO, std::mem::size_of::<libc::in6_pktinfo>());
        assert!(align(HDR_BYTES + IN6_PKTINFO) <= CMSG_ROOM);
    }

    #[test]
    fn what_is_written_for_a_source_reads_back_as_the_local_address() {
        let mut room = CmsgRoom::default();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let n = write_source(&mut room, v6, true);
        assert_eq!(local_address(&room.0[..n]), Some(v6));
        // A dual-stack socket: IPv4 as mapped, read back as plain IPv4.
        let n = write_source(&mut room, v4, true);
        assert_eq!(local_address(&room.0[..n]), Some(v4));
        // in_pktinfo's ipi_addr (what a receive reads) is left 0 when
        // sending; spec_dst carries the source.
        let n = write_source(&mut room, v4, false);
        assert_eq!(n, 32);
        assert_eq!(&room.0[HDR_BYTES + 4..HDR_BYTES + 8], &[192, 0, 2, 9]);
        assert_eq!(write_source(&mut room, v6, false), 0);
    }

    #[test]
    fn a_received_in_pktinfo_names_the_header_destination() {
        let mut room = CmsgRoom::default();
        let len = HDR_BYTES + IN_PKTINFO;
        room.0[..LEN_BYTES].copy_from_slice(&len.to_ne_bytes());
        room.0[LEN_BYTES..LEN_BYTES + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        room.0[LEN_BYTES + 4..LEN_BYTES + 8].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
        room.0[HDR_BYTES + 4..HDR_BYTES + 8].copy_from_slice(&[10, 0, 0, 1]); // spec_dst
        room.0[HDR_BYTES + 8..HDR_BYTES + 12].copy_from_slice(&[127, 0, 0, 2]); // addr
        assert_eq!(
            local_address(&room.0[..align(len)]),
            Some("127.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn other_messages_are_skipped_and_garbage_never_panics() {
        // An unrelated message first (SO_TIMESTAMP-like), then IPV6_PKTINFO.
        let mut buf = [0u8; 2 * CMSG_ROOM];
        let first = HDR_BYTES + 16;
        buf[..LEN_BYTES].copy_from_slice(&first.to_ne_bytes());
        buf[LEN_BYTES..LEN_BYTES + 4].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        let mut room = CmsgRoom::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let n = write_source(&mut room, ip, true);
        buf[align(first)..align(first) + n].copy_from_slice(&room.0[..n]);
        assert_eq!(local_address(&buf[..align(first) + n]), Some(ip));
        // Truncated, zero-length, huge-length and random control bytes.
        let whole = align(first) + HDR_BYTES + IN6_PKTINFO;
        assert_eq!(local_address(&buf[..whole - 1]), None);
        assert_eq!(local_address(&[]), None);
        assert_eq!(local_address(&[0; CMSG_ROOM]), None);
        let mut huge = [0u8; CMSG_ROOM];
        huge[..LEN_BYTES].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(local_address(&huge), None);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut junk = [0u8; CMSG_ROOM];
            for b in &mut junk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Small lengths make the walk visit many messages.
            junk[0] &= 0x3f;
            let cut = (x as usize) % (CMSG_ROOM + 1);
            let _ = local_address(&junk[..cut]);
        }
    }
}

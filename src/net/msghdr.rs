//! The message headers both backends hand the kernel: per-worker receive
//! slots (buffer, `iovec`, peer address, `mmsghdr`), allocated once, and
//! the send headers built over a [`Transmits`] arena each loop turn.
//!
//! One layout serves both backends: `recvmmsg`/`sendmmsg` take the
//! `mmsghdr` arrays whole (both backends receive with `recvmmsg`), io_uring's `SendMsg` takes one
//! `msghdr` inside them each.

// The kernel reads and writes these structures through raw pointers
// (msghdr → iovec → buffer, msghdr → sockaddr), which only `unsafe` can build
// and read back.
#![allow(unsafe_code)]

use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::ptr::NonNull;

use socket2::SockAddr;

use super::cmsg::{self, CMSG_ROOM, CmsgRoom};
use crate::relay::{Path, Transmits};

/// Room for one received datagram. RTP over a 1500-byte MTU needs at most
/// 1472; a datagram that fills the room may have been truncated and is
/// dropped.
pub(crate) const DATAGRAM_ROOM: usize = 2048;

/// A heap array whose elements never move, addressed only through raw
/// pointers to single elements: no reference ever spans the array, so the
/// kernel may write one element (a receive in flight) while the worker holds
/// `&mut` to another.
struct Fixed<T> {
    ptr: NonNull<T>,
    len: usize,
}

impl<T> Fixed<T> {
    fn new(len: usize, init: impl FnMut() -> T) -> Self {
        let boxed: Box<[T]> = std::iter::repeat_with(init).take(len).collect();
        Self {
            ptr: NonNull::from(Box::leak(boxed)).cast(),
            len,
        }
    }

    fn at(&self, i: usize) -> *mut T {
        assert!(i < self.len, "slot {i} out of {}", self.len);
        self.ptr.as_ptr().wrapping_add(i)
    }
}

impl<T> Drop for Fixed<T> {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` came from `Box::leak` of a `Box<[T]>` of exactly
        // `len` elements in `new`, and are freed only here, once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

fn zeroed<T: ZeroValid>() -> T {
    // SAFETY: `ZeroValid` is implemented only for C structs made of
    // integers and raw pointers, for which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

/// C structs for which all-zero bytes are a valid value.
trait ZeroValid {}
impl ZeroValid for libc::mmsghdr {}
impl ZeroValid for libc::msghdr {}
impl ZeroValid for libc::iovec {}
impl ZeroValid for libc::sockaddr_storage {}

/// Per-worker receive slots, allocated once.
pub(crate) struct RecvSlots {
    bufs: Fixed<[u8; DATAGRAM_ROOM]>,
    iovs: Fixed<libc::iovec>,
    names: Fixed<libc::sockaddr_storage>,
    /// Control messages: the local address a datagram was sent to, on a
    /// socket that asked for it (`socket.rs`); empty otherwise.
    ctrls: Fixed<CmsgRoom>,
    hdrs: Fixed<libc::mmsghdr>,
}

impl std::fmt::Debug for RecvSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvSlots")
            .field("slots", &self.len())
            .finish()
    }
}

impl RecvSlots {
    /// `count` slots of [`DATAGRAM_ROOM`] bytes each.
    pub(crate) fn new(count: usize) -> Self {
        Self {
            bufs: Fixed::new(count, || [0; DATAGRAM_ROOM]),
            iovs: Fixed::new(count, zeroed),
            names: Fixed::new(count, zeroed),
            ctrls: Fixed::new(count, CmsgRoom::default),
            hdrs: Fixed::new(count, zeroed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.hdrs.len
    }

    /// Points slot `i`'s header at its buffer and address room, ready for
    /// one receive, and returns it.
    ///
    /// # Safety
    /// No receive into slot `i` may be in flight. The caller hands the
    /// header to the kernel and touches the slot again only once that
    /// receive has completed.
    pub(crate) unsafe fn arm(&mut self, i: usize) -> *mut libc::mmsghdr {
        let (buf, iov, name, ctrl, hdr) = (
            self.bufs.at(i),
            self.iovs.at(i),
            self.names.at(i),
            self.ctrls.at(i),
            self.hdrs.at(i),
        );
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = name.cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.cast();
        msg.msg_controllen = CMSG_ROOM;
        // SAFETY: the five pointers address element `i` of live arrays owned
        // by `self` (bounds checked by `at`); `&mut self` and the caller's
        // promise (no receive in flight on slot `i`) mean nobody else reads
        // or writes them now.
        unsafe {
            iov.write(libc::iovec {
                iov_base: buf.cast(),
                iov_len: DATAGRAM_ROOM,
            });
            hdr.write(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        hdr
    }

    /// Arms every slot; returns the start of the `mmsghdr` array for
    /// `recvmmsg`.
    ///
    /// # Safety
    /// No receive into any slot may be in flight.
    pub(crate) unsafe fn arm_all(&mut self) -> *mut libc::mmsghdr {
        for i in 0..self.len() {
            // SAFETY: the caller's promise covers every slot.
            unsafe { self.arm(i) };
        }
        self.hdrs.at(0)
    }

    /// The byte count `recvmmsg` stored in slot `i`.
    ///
    /// # Safety
    /// No receive into slot `i` may be in flight.
    pub(crate) unsafe fn mmsg_len(&self, i: usize) -> usize {
        // SAFETY: element `i` of a live array (bounds checked by `at`); the
        // receive that wrote it has completed (caller's promise).
        unsafe { (*self.hdrs.at(i)).msg_len as usize }
    }

    /// The datagram of `len` bytes that slot `i` received, with its sender
    /// and the local address it was sent to (when the socket reports it),
    /// or `None` if it may have been truncated or came from an address
    /// family sluice does not speak. The buffer is the whole slot, so a
    /// handler may grow the packet in place.
    ///
    /// # Safety
    /// The receive into slot `i` must have completed, and no other may be
    /// in flight on it while the returned slice lives.
    pub(crate) unsafe fn datagram(&mut self, i: usize, len: usize) -> Option<(Path, &mut [u8])> {
        if len >= DATAGRAM_ROOM {
            return None;
        }
        // SAFETY: forwarded to the caller.
        let from = unsafe { self.peer(i) }?;
        // SAFETY: as for `peer`.
        let local = unsafe { self.local(i) };
        // SAFETY: element `i` of a live array (bounds checked by `at`); the
        // kernel is done with it (caller's promise) and the `&mut self`
        // borrow keeps the worker from re-arming it while the slice lives.
        let buf = unsafe { &mut *self.bufs.at(i) };
        Some((Path::new(from, local), &mut buf[..]))
    }

    /// The local address in slot `i`'s control messages, if any.
    ///
    /// # Safety
    /// No receive into slot `i` may be in flight.
    unsafe fn local(&self, i: usize) -> Option<IpAddr> {
        // SAFETY: elements `i` of live arrays, written by a completed
        // receive (caller's promise); the kernel set `msg_controllen` to
        // what it wrote, clamped to the room in case it did not.
        let control = unsafe {
            let written = (*self.hdrs.at(i)).msg_hdr.msg_controllen.min(CMSG_ROOM);
            let room: &CmsgRoom = &*self.ctrls.at(i);
            &room.0[..written]
        };
        cmsg::local_address(control)
    }

    /// # Safety
    /// No receive into slot `i` may be in flight.
    unsafe fn peer(&self, i: usize) -> Option<SocketAddr> {
        let name = self.names.at(i);
        // SAFETY: element `i` of a live array, written by a completed
        // receive (caller's promise); `sockaddr_storage` is large and aligned enough for every
        // address type, and the family field says which one the kernel wrote.
        unsafe {
            match libc::c_int::from((*name).ss_family) {
                libc::AF_INET => {
                    let sin = &*name.cast::<libc::sockaddr_in>();
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*name.cast::<libc::sockaddr_in6>();
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    let port = u16::from_be(sin6.sin6_port);
                    Some(match ip.to_ipv4_mapped() {
                        // A dual-stack socket reports IPv4 peers as
                        // ::ffff:a.b.c.d; the relay core sees plain IPv4.
                        Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                        None => SocketAddr::V6(SocketAddrV6::new(
                            ip,
                            port,
                            sin6.sin6_flowinfo,
                            sin6.sin6_scope_id,
                        )),
                    })
                }
                _ => None,
            }
        }
    }
}

/// Send headers for one batch of [`Transmits`]: rebuilt every turn, grown
/// only when a batch is larger than any before it.
#[derive(Debug, Default)]
pub(crate) struct SendHeaders {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<SockAddr>,
    /// Per datagram: the control message naming its source, and its length
    /// (0: none).
    ctrls: Vec<(CmsgRoom, usize)>,
    /// The socket is IPv6 (dual stack): IPv4 destinations are sent as
    /// IPv4-mapped IPv6 addresses.
    v6_socket: bool,
    /// The socket is bound to every address (`0.0.0.0`, `[::]`): each
    /// datagram with a [`Transmit::src`](crate::relay::Transmit::src) goes
    /// out from that address. On a socket bound to one address the kernel
    /// sends from it anyway, and no control message is built.
    choose_source: bool,
}

impl SendHeaders {
    pub(crate) fn new(v6_socket: bool, choose_source: bool, capacity: usize) -> Self {
        Self {
            hdrs: Vec::with_capacity(capacity),
            iovs: Vec::with_capacity(capacity),
            names: Vec::with_capacity(capacity),
            ctrls: Vec::with_capacity(if choose_source { capacity } else { 0 }),
            v6_socket,
            choose_source,
        }
    }

    /// Builds one header per datagram of `out` and returns how many. The
    /// headers point into `out` and `self`: the caller must have finished
    /// sending them before `out` or `self` changes again.
    pub(crate) fn load(&mut self, out: &Transmits) -> usize {
        self.hdrs.clear();
        self.iovs.clear();
        self.names.clear();
        self.ctrls.clear();
        // Addresses and iovecs first, headers second: once headers point
        // into the vectors, nothing may be pushed to them (a push could move
        // them).
        for t in out.iter() {
            let dest = match t.dest {
                SocketAddr::V4(v4) if self.v6_socket => {
                    SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
                }
                other => other,
            };
            self.names.push(SockAddr::from(dest));
            self.iovs.push(libc::iovec {
                // The kernel only reads a sent buffer; `*mut` is the C type.
                iov_base: t.data.as_ptr().cast_mut().cast(),
                iov_len: t.data.len(),
            });
            if self.choose_source {
                let mut room = CmsgRoom::default();
                let len = t
                    .src
                    .map_or(0, |src| cmsg::write_source(&mut room, src, self.v6_socket));
                self.ctrls.push((room, len));
            }
        }
        for (j, (name, iov)) in self.names.iter().zip(self.iovs.iter_mut()).enumerate() {
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = name.as_ptr().cast_mut().cast();
            msg.msg_namelen = name.len();
            msg.msg_iov = iov;
            msg.msg_iovlen = 1;
            if let Some((room, len)) = self.ctrls.get_mut(j)
                && *len > 0
            {
                msg.msg_control = room.0.as_mut_ptr().cast();
                msg.msg_controllen = *len;
            }
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        self.hdrs.len()
    }

    /// Header `j` of the last [`Self::load`], for io_uring's `SendMsg`.
    pub(crate) fn msghdr(&self, j: usize) -> *const libc::msghdr {
        &self.hdrs[j].msg_hdr
    }

    /// Headers `from..` of the last [`Self::load`], for `sendmmsg`.
    pub(crate) fn mmsghdrs_from(&mut self, from: usize) -> *mut libc::mmsghdr {
        self.hdrs[from..].as_mut_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::MeetingMode;

    #[test]
    fn send_headers_point_at_the_arena_and_map_ipv4_on_a_v6_socket() {
        let mut out = Transmits::with_capacity(2);
        out.slot()[..3].copy_from_slice(b"abc");
        out.commit(
            3,
            "127.0.0.1:5000".parse::<SocketAddr>().unwrap(),
            MeetingMode::E2ee,
        );
        let mut headers = SendHeaders::new(true, false, 0);
        assert_eq!(headers.load(&out), 1);
        let msg = headers.msghdr(0);
        // SAFETY (test): the header and what it points to live in `headers`
        // and `out`, both unchanged since `load`.
        unsafe {
            assert_eq!((*(*msg).msg_iov).iov_len, 3);
            assert_eq!(
                (*msg).msg_namelen as usize,
                mem::size_of::<libc::sockaddr_in6>()
            );
            let sin6 = &*(*msg).msg_name.cast::<libc::sockaddr_in6>();
            assert_eq!(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr).to_ipv4_mapped(),
                Some(Ipv4Addr::LOCALHOST)
            );
        }
    }

    #[test]
    fn a_full_slot_counts_as_truncated() {
        let mut slots = RecvSlots::new(1);
        // SAFETY (test): nothing is ever handed to the kernel.
        unsafe {
            slots.arm(0);
            assert!(slots.datagram(0, DATAGRAM_ROOM).is_none());
        }
    }
}

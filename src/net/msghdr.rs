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

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr::NonNull;

use socket2::SockAddr;

use super::cmsg::{self, CMSG_ROOM, CmsgRoom};
use super::gso::SendPlan;
use crate::metrics::{Drop as DropReason, WorkerCounters};
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
        // SAFETY: element `i` of a live array, written by a completed
        // receive (caller's promise).
        socket_addr(unsafe { &*self.names.at(i) })
    }
}

/// The socket address in `name`, as the relay core sees it (IPv4 peers of
/// a dual-stack socket as plain IPv4), or `None` for another family.
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let name: *const libc::sockaddr_storage = name;
    // SAFETY: `sockaddr_storage` is large and aligned enough for every
    // address type, and the family field says which one it holds.
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

/// The socket address in the raw bytes of a `sockaddr` (a multishot
/// receive's name field), as [`socket_addr`] reads it; short input is
/// zero-padded (and then names no family it accepts unless the family and
/// address fit).
pub(crate) fn socket_addr_from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let mut storage: libc::sockaddr_storage = zeroed();
    let n = bytes.len().min(mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `n` bytes fit both the source slice and the storage, which
    // is plain data; the two do not overlap (one is a local).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut storage).cast::<u8>(), n);
    }
    socket_addr(&storage)
}

/// Send headers for one batch of [`Transmits`]: rebuilt every turn, grown
/// only when a batch is larger than any before it. With GSO on, one header
/// (a *message*) may carry a run of datagrams to one destination
/// (`gso.rs`); without, every message is one datagram, in commit order.
#[derive(Debug, Default)]
pub(crate) struct SendHeaders {
    /// Per message.
    hdrs: Vec<libc::mmsghdr>,
    /// Per datagram, in send order (a message's datagrams are adjacent).
    iovs: Vec<libc::iovec>,
    /// Per message.
    names: Vec<SockAddr>,
    /// Per message: its control messages, their length (0: none), and the
    /// length of the source part alone (what a datagram sent by itself
    /// takes).
    ctrls: Vec<(CmsgRoom, usize, usize)>,
    plan: SendPlan,
    /// The socket is IPv6 (dual stack): IPv4 destinations are sent as
    /// IPv4-mapped IPv6 addresses.
    v6_socket: bool,
    /// The socket is bound to every address (`0.0.0.0`, `[::]`): each
    /// datagram with a [`Transmit::src`](crate::relay::Transmit::src) goes
    /// out from that address. On a socket bound to one address the kernel
    /// sends from it anyway, and no control message is built.
    choose_source: bool,
    /// Runs of equal-sized datagrams to one destination go as one GSO send.
    gso: bool,
    /// GSO runs the kernel refused and [`Self::recover`] sent again one by
    /// one (for tests: a GSO path that silently fell back proves nothing).
    retried_runs: u64,
}

impl SendHeaders {
    pub(crate) fn new(v6_socket: bool, choose_source: bool, gso: bool, capacity: usize) -> Self {
        Self {
            hdrs: Vec::with_capacity(capacity),
            iovs: Vec::with_capacity(capacity),
            names: Vec::with_capacity(capacity),
            ctrls: Vec::with_capacity(if choose_source || gso { capacity } else { 0 }),
            plan: SendPlan::with_capacity(if gso { capacity } else { 0 }),
            v6_socket,
            choose_source,
            gso,
            retried_runs: 0,
        }
    }

    /// Whether runs are sent with GSO.
    #[cfg(test)]
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// How many GSO runs were refused and sent again one by one.
    #[cfg(test)]
    pub(crate) fn retried_runs(&self) -> u64 {
        self.retried_runs
    }

    /// Builds the messages for `out` and returns how many. The headers
    /// point into `out` and `self`: the caller must have finished sending
    /// them before `out` or `self` changes again.
    pub(crate) fn load(&mut self, out: &Transmits) -> usize {
        self.hdrs.clear();
        self.iovs.clear();
        self.names.clear();
        self.ctrls.clear();
        self.plan.plan(out, self.gso);
        let with_ctrl = self.choose_source || self.gso;
        // Addresses, iovecs and control messages first, headers second:
        // once headers point into the vectors, nothing may be pushed to them
        // (a push could move them).
        for &run in self.plan.runs() {
            let datagrams = self.plan.datagrams(run);
            let mut first = None;
            for &i in datagrams {
                // The plan holds indices of `out` only (gso.rs builds it
                // from `out.len()`).
                let t = out.get(i as usize).expect("a planned transmit exists");
                first.get_or_insert(t);
                self.iovs.push(libc::iovec {
                    // The kernel only reads a sent buffer; `*mut` is the C type.
                    iov_base: t.data.as_ptr().cast_mut().cast(),
                    iov_len: t.data.len(),
                });
            }
            // Every run has a first datagram (gso.rs).
            let t = first.expect("a run is never empty");
            self.names.push(sock_addr(t.dest, self.v6_socket));
            if with_ctrl {
                let mut room = CmsgRoom::default();
                let source = match t.src {
                    Some(src) if self.choose_source => {
                        cmsg::write_source(&mut room, src, self.v6_socket)
                    }
                    _ => 0,
                };
                let len = if run.count > 1 {
                    cmsg::write_segment_size(&mut room, source, run.segment)
                } else {
                    source
                };
                self.ctrls.push((room, len, source));
            }
        }
        let iovs = self.iovs.as_mut_ptr();
        for (j, (name, run)) in self.names.iter().zip(self.plan.runs()).enumerate() {
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = name.as_ptr().cast_mut().cast();
            msg.msg_namelen = name.len();
            // In bounds: the iovecs of run `j` were pushed above.
            msg.msg_iov = iovs.wrapping_add(run.first as usize);
            msg.msg_iovlen = run.count as usize;
            if let Some((room, len, _)) = self.ctrls.get_mut(j)
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

    /// The indices in `out` of the datagrams message `j` carries.
    pub(crate) fn datagrams(&self, j: usize) -> &[u32] {
        self.plan
            .runs()
            .get(j)
            .map_or(&[], |&run| self.plan.datagrams(run))
    }

    /// After message `j` of the last [`Self::load`] over `out` failed with
    /// `errno`: a plain datagram is counted as dropped; a GSO run is sent
    /// again datagram by datagram, each counted on its own. `EIO` (the
    /// outgoing device cannot segment or checksum) turns GSO off for this
    /// socket, logged once; `EINVAL` (a segment larger than the route's
    /// MTU) concerns that destination only, so GSO stays on.
    pub(crate) fn recover(
        &mut self,
        fd: RawFd,
        out: &Transmits,
        j: usize,
        errno: i32,
        counters: &WorkerCounters,
    ) {
        let datagrams = self.datagrams(j);
        if datagrams.len() <= 1 {
            counters.dropped(DropReason::SendFailed);
            return;
        }
        self.retried_runs += 1;
        if errno == libc::EIO && self.gso {
            tracing::warn!(
                "UDP GSO refused by the outgoing device (EIO); this packet worker sends \
                 datagram by datagram from now on"
            );
            self.gso = false;
        }
        let name = &self.names[j];
        let (room, source) = match self.ctrls.get(j) {
            Some((room, _, source)) if *source > 0 => (Some(room), *source),
            _ => (None, 0),
        };
        for &i in self.datagrams(j) {
            let Some(t) = out.get(i as usize) else {
                continue;
            };
            let mut iov = libc::iovec {
                iov_base: t.data.as_ptr().cast_mut().cast(),
                iov_len: t.data.len(),
            };
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = name.as_ptr().cast_mut().cast();
            msg.msg_namelen = name.len();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if let Some(room) = room {
                // The kernel only reads a control buffer given to sendmsg.
                msg.msg_control = room.0.as_ptr().cast_mut().cast();
                msg.msg_controllen = source;
            }
            let sent = loop {
                // SAFETY: `msg` points at `iov`, `name`, `room` and `t.data`,
                // all borrowed for this call; sendmsg only reads them.
                let n = unsafe { libc::sendmsg(fd, &msg, 0) };
                if n >= 0 {
                    break true;
                }
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break false;
                }
            };
            if sent {
                counters.sent(t.mode, t.data.len());
            } else {
                counters.dropped(DropReason::SendFailed);
            }
        }
    }
}

/// `dest` as the socket takes it: IPv4 as mapped IPv6 on an IPv6 socket.
fn sock_addr(dest: SocketAddr, v6_socket: bool) -> SockAddr {
    SockAddr::from(match dest {
        SocketAddr::V4(v4) if v6_socket => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        other => other,
    })
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
        let mut headers = SendHeaders::new(true, false, false, 0);
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

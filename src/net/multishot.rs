//! Multishot receive for the io_uring backend (Linux ≥ 6.0): ONE
//! `IORING_OP_RECVMSG` with `IORING_RECV_MULTISHOT` stays armed on the
//! worker's socket and completes once per datagram, into buffers the
//! worker provides through a registered buffer ring
//! (`IORING_REGISTER_PBUF_RING`). Receiving then costs no syscall of its
//! own: the completions are reaped by the `io_uring_enter` that submits
//! the sends, or that waits.
//!
//! Order within a stream holds: one request per socket takes datagrams off
//! the socket queue in order and posts its completions in order (the
//! round-1 reordering came from many receive requests racing on one
//! socket, uring.rs). When the buffers run out the request ends
//! (`ENOBUFS`, no `IORING_CQE_F_MORE`); datagrams wait in the socket
//! buffer, and it is armed again once buffers are back.
//!
//! A buffer is the kernel's from the moment it is in the ring until the
//! completion naming it is reaped, then the worker's until it is put back
//! ([`MultishotRecv::recycle`], after the turn handled it). Its layout
//! is the kernel's (`struct io_uring_recvmsg_out`, then the name field, the
//! control field, the payload), parsed with the io-uring crate's
//! `RecvMsgOut`.

// The buffer ring and the buffers are memory the kernel writes while the
// worker runs; only raw pointers can share them.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::mem;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, RecvMsgOut};
use io_uring::{IoUring, cqueue, opcode};

use super::cmsg::{self, CMSG_ROOM};
use super::msghdr::{DATAGRAM_ROOM, socket_addr_from_bytes};
use super::uring::{SocketRef, on_socket};
use crate::relay::Path;

/// The buffer group the ring is registered as.
const GROUP: u16 = 0;

/// Buffers in the ring (a power of two): every datagram received but not
/// yet handled holds one.
pub(crate) const BUFFERS: u16 = 512;

/// The name field: room for an IPv6 socket address (IPv4 fits too).
const NAME_ROOM: usize = mem::size_of::<libc::sockaddr_in6>();

/// `struct io_uring_recvmsg_out`: four `u32`s.
const OUT_HEADER: usize = 16;

/// Where the payload starts in a buffer.
const PAYLOAD_AT: usize = OUT_HEADER + NAME_ROOM + CMSG_ROOM;

/// One buffer: the header, name and control fields, then a payload of
/// [`DATAGRAM_ROOM`] (a datagram filling it may have been truncated and
/// is dropped, as on the `recvmmsg` path).
const BUFFER: usize = PAYLOAD_AT + DATAGRAM_ROOM;

/// A completion waiting to be handled: its buffer and the result.
#[derive(Debug, Clone, Copy)]
struct Completion {
    bid: u16,
    result: i32,
}

/// The buffer ring, its buffers, and the one request.
pub(crate) struct MultishotRecv {
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    /// The next tail to publish (entries `tail - BUFFERS..tail` were given).
    tail: u16,
    /// The request's header: only the name and control lengths are read
    /// (they fix the buffer layout); boxed so it never moves while armed.
    msg: Box<libc::msghdr>,
    /// Whether the request is armed (its last completion had `F_MORE`).
    armed: bool,
    /// Whether the ring is still registered with the kernel.
    registered: bool,
    /// Completions reaped, in order, not yet handled.
    ready: Vec<Completion>,
}

impl std::fmt::Debug for MultishotRecv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultishotRecv")
            .field("armed", &self.armed)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl MultishotRecv {
    /// Allocates the buffers and registers the ring with `uring`; an error
    /// (a kernel before 5.19 / 6.0, or memory) means: receive the old way.
    pub(crate) fn new(uring: &IoUring) -> io::Result<Self> {
        let entries = usize::from(BUFFERS);
        // The kernel maps the ring's pages: page-aligned, whole pages.
        let page = 4096;
        let ring_layout =
            Layout::from_size_align((entries * mem::size_of::<BufRingEntry>()).max(page), page)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let bufs_layout = Layout::from_size_align(entries * BUFFER, 64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both layouts have a non-zero size.
        let (ring, bufs) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(bufs_layout)) };
        let (Some(ring), Some(bufs)) = (NonNull::new(ring.cast()), NonNull::new(bufs)) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut msg: Box<libc::msghdr> = Box::new(
            // SAFETY: all-zero bytes are a valid msghdr (integers and
            // null pointers).
            unsafe { mem::zeroed() },
        );
        msg.msg_namelen = NAME_ROOM as libc::socklen_t;
        msg.msg_controllen = CMSG_ROOM;
        let mut this = Self {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            tail: 0,
            msg,
            armed: false,
            registered: false,
            ready: Vec::with_capacity(entries),
        };
        for bid in 0..BUFFERS {
            this.provide(bid);
        }
        this.publish();
        // SAFETY: the ring lives (and stays registered) until `Drop`, which
        // unregisters it first; the kernel reads and writes only it and the
        // buffers its entries name, both owned by `this`.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.as_ptr() as u64,
                BUFFERS,
                GROUP,
                0,
            )?;
        }
        this.registered = true;
        Ok(this)
    }

    /// Writes buffer `bid` into the next ring entry (published by
    /// [`Self::publish`]).
    fn provide(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `at < BUFFERS`, inside the ring allocation; the entry is
        // not the kernel's (it has consumed every entry before the
        // published tail minus BUFFERS, and this one is past the tail).
        let entry = unsafe { &mut *self.ring.as_ptr().add(at) };
        // SAFETY: `bid < BUFFERS`: the buffer lies inside `bufs`.
        let addr = unsafe { self.bufs.as_ptr().add(usize::from(bid) * BUFFER) };
        entry.set_addr(addr as u64);
        entry.set_len(BUFFER as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the provided entries visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the `resv` field of the first entry, a u16
        // inside the ring allocation, aligned; the kernel reads it
        // concurrently, so it is written atomically with release order
        // (the entries written before it must be visible first).
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Queues the request unless it is armed; `user_data` tags its
    /// completions. Returns whether it is armed now.
    pub(crate) fn arm(&mut self, uring: &mut IoUring, socket: SocketRef, user_data: u64) -> bool {
        if self.armed {
            return true;
        }
        let msg = std::ptr::from_ref(&*self.msg);
        let entry = on_socket!(socket, t => opcode::RecvMsgMulti::new(t, msg, GROUP).build())
            .user_data(user_data);
        // SAFETY: `msg` is boxed and lives as long as `self`; the buffers
        // are the ring's (see `new`).
        if unsafe { uring.submission().push(&entry) }.is_ok() {
            self.armed = true;
        }
        self.armed
    }

    /// Notes a completion of the request.
    pub(crate) fn completed(&mut self, cqe: &cqueue::Entry) {
        if !cqueue::more(cqe.flags()) {
            self.armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
            self.ready.push(Completion {
                bid,
                result: cqe.result(),
            });
        }
    }

    /// Whether the request is armed.
    pub(crate) fn armed(&self) -> bool {
        self.armed
    }

    /// Completions waiting to be handled.
    pub(crate) fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Hands the first `max` waiting datagrams to `each`, in order, as
    /// (sender, buffer, length); `bad` is called for each one that was
    /// truncated or unreadable. Then gives their buffers back; the rest
    /// wait for the next turn (a turn stays as long as a `recvmmsg` one).
    pub(crate) fn received(
        &mut self,
        max: usize,
        mut each: impl FnMut(Path, &mut [u8], usize),
        mut bad: impl FnMut(),
    ) {
        let n = self.ready.len().min(max);
        for k in 0..n {
            let Completion { bid, result } = self.ready[k];
            if result < 0 || bid >= BUFFERS {
                bad();
                continue;
            }
            // SAFETY: the completion naming `bid` was reaped, so the kernel
            // is done with that buffer until it is provided again (after
            // this loop); `bid < BUFFERS` (checked above) puts it inside
            // `bufs`.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(
                    self.bufs.as_ptr().add(usize::from(bid) * BUFFER),
                    BUFFER,
                )
            };
            let filled = (result as usize).min(BUFFER);
            let Ok(out) = RecvMsgOut::parse(&buf[..filled], &self.msg) else {
                bad();
                continue;
            };
            let len = out.incoming_payload_len() as usize;
            let peer = socket_addr_from_bytes(out.name_data());
            let control = out.control_data();
            let local = cmsg::local_address(&control[..control.len().min(CMSG_ROOM)]);
            match peer {
                Some(peer) if !out.is_payload_truncated() && len < DATAGRAM_ROOM => {
                    each(Path::new(peer, local), &mut buf[PAYLOAD_AT..], len);
                }
                _ => bad(),
            }
        }
        self.recycle(n);
    }

    /// Gives the buffers of the first `n` waiting completions back to the
    /// kernel, handled or not (after a panic in the handler, the batch it
    /// was handling); returns how many it gave.
    pub(crate) fn recycle(&mut self, n: usize) -> usize {
        let n = n.min(self.ready.len());
        for k in 0..n {
            let bid = self.ready[k].bid;
            if bid < BUFFERS {
                self.provide(bid);
            }
        }
        self.ready.drain(..n);
        if n > 0 {
            self.publish();
        }
        n
    }

    /// Cancels the request (the caller waits for its last completion).
    pub(crate) fn cancel(&self, uring: &mut IoUring, user_data: u64, tag: u64) {
        if self.armed {
            let cancel = opcode::AsyncCancel::new(user_data).build().user_data(tag);
            // SAFETY: a cancel request points at no memory.
            let _ = unsafe { uring.submission().push(&cancel) };
        }
    }

    /// Unregisters the ring; after this (and the request's end) the
    /// memory may be freed.
    pub(crate) fn unregister(&mut self, uring: &IoUring) {
        if self.registered && !self.armed {
            self.registered = uring.submitter().unregister_buf_ring(GROUP).is_err();
        }
    }

    /// Whether the kernel may still touch the memory.
    pub(crate) fn in_use(&self) -> bool {
        self.armed || self.registered
    }
}

impl Drop for MultishotRecv {
    fn drop(&mut self) {
        if self.in_use() {
            // The owner failed to end the request or unregister the ring:
            // leaking beats freeing memory the kernel may still write.
            return;
        }
        // SAFETY: allocated in `new` with these layouts, freed only here;
        // the kernel no longer uses them (not armed, not registered).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

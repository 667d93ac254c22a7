//! The fallback backend, for hosts where io_uring is unavailable
//! (DESIGN.md, "Fallback"): one `recvmmsg` per receive batch, one `sendmmsg`
//! per send batch (per 1024 messages, the kernel's limit; a message is one
//! datagram, or a run of them to one destination with GSO, `gso.rs`). The socket has
//! a [`POLL_INTERVAL`] receive timeout so a blocked worker notices shutdown.

// recvmmsg/sendmmsg take arrays of raw message headers (see msghdr.rs).
#![allow(unsafe_code)]

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::msghdr::{RecvSlots, SendHeaders};
use super::worker::{BatchIo, FANOUT_HINT, POLL_INTERVAL};
use crate::metrics::{Drop, WorkerCounters};
use crate::relay::{Path, Transmits};

/// Most datagrams one `sendmmsg` takes (`UIO_MAXIOV`).
const SENDMMSG_MAX: usize = 1024;

/// A worker's socket driven by `recvmmsg`/`sendmmsg`.
#[derive(Debug)]
pub(crate) struct MmsgIo {
    socket: UdpSocket,
    recv: RecvSlots,
    ready: usize,
    send: SendHeaders,
    counters: Arc<WorkerCounters>,
}

impl MmsgIo {
    pub(crate) fn new(
        socket: UdpSocket,
        recv_batch: usize,
        gso: bool,
        counters: Arc<WorkerCounters>,
    ) -> io::Result<Self> {
        socket.set_read_timeout(Some(POLL_INTERVAL))?;
        let gso = gso && super::gso::supported(&socket);
        let local = socket.local_addr()?;
        let (v6, any) = (local.is_ipv6(), local.ip().is_unspecified());
        Ok(Self {
            socket,
            recv: RecvSlots::new(recv_batch),
            ready: 0,
            send: SendHeaders::new(v6, any, gso, recv_batch * FANOUT_HINT),
            counters,
        })
    }
}

impl MmsgIo {
    /// Whether this socket still sends runs with GSO, and how many runs
    /// the kernel refused so far.
    #[cfg(test)]
    pub(crate) fn gso_state(&self) -> (bool, u64) {
        (self.send.gso(), self.send.retried_runs())
    }
}

/// Whether a failed socket call is worth simply trying again.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
    )
}

impl BatchIo for MmsgIo {
    fn wait(&mut self, block: bool) -> io::Result<usize> {
        // SAFETY: receives here are synchronous; none is in flight.
        let hdrs = unsafe { self.recv.arm_all() };
        // MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram,
        // then take whatever else is already queued.
        let flags = if block {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        // SAFETY: `hdrs` starts an array of `recv.len()` headers just armed
        // over buffers owned by `self.recv`, which outlives this blocking
        // call; no other receive uses them.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs,
                self.recv.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if transient(&e) { Ok(0) } else { Err(e) };
        }
        self.ready = n as usize;
        Ok(self.ready)
    }

    fn received(&mut self, mut each: impl FnMut(Path, &mut [u8], usize)) {
        for i in 0..std::mem::take(&mut self.ready) {
            // SAFETY: `recvmmsg` returned, so no receive is in flight, and
            // it filled the first `ready` slots.
            let (len, datagram) = unsafe {
                let len = self.recv.mmsg_len(i);
                (len, self.recv.datagram(i, len))
            };
            match datagram {
                Some((from, packet)) => each(from, packet, len),
                None => self.counters.dropped(Drop::Malformed),
            }
        }
    }

    fn discard(&mut self) -> usize {
        // `received` takes the whole batch before it hands out the first
        // datagram, so nothing is pending even after a panic in the
        // handler; the next `wait` re-arms every slot.
        std::mem::take(&mut self.ready)
    }

    fn send(&mut self, out: &Transmits) -> io::Result<()> {
        let count = self.send.load(out);
        let mut at = 0;
        while at < count {
            let chunk = (count - at).min(SENDMMSG_MAX);
            // SAFETY: headers `at..at + chunk` were built by `load` over
            // `out` and `self.send`, neither of which changes during this
            // blocking call.
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    self.send.mmsghdrs_from(at),
                    chunk as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                let n = n as usize;
                for j in at..at + n {
                    for t in self
                        .send
                        .datagrams(j)
                        .iter()
                        .filter_map(|&i| out.get(i as usize))
                    {
                        self.counters.sent(t.mode, t.data.len());
                    }
                }
                at += n;
                continue;
            }
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if n < 0 && errno == libc::EINTR {
                continue;
            }
            // The first message failed (unreachable, address family, buffer
            // full, GSO refused); the rest still go.
            self.send
                .recover(self.socket.as_raw_fd(), out, at, errno, &self.counters);
            at += 1;
        }
        Ok(())
    }
}

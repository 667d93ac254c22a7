//! The io_uring backend: each worker owns one ring. Receives are one
//! `recvmmsg(MSG_DONTWAIT)` per loop turn, made on the worker's own thread;
//! only when that finds nothing does the worker arm a single `PollAdd` on
//! its socket and wait on the ring (with a [`POLL_INTERVAL`] timeout,
//! `IORING_FEAT_EXT_ARG`, so it notices shutdown). The datagrams a handler
//! produced go out as `SendMsg` entries hard-linked into one chain,
//! submitted in one `io_uring_enter`; with GSO one entry carries a run of
//! datagrams to one destination (`gso.rs`).
//!
//! Why receives are not `RecvMsg` entries armed on every slot (round 1):
//! a datagram wakes every armed receive, one takes it, and each of the
//! others, retried and finding nothing, is punted by the kernel to an
//! io-wq thread (a polled request that meets `EAGAIN` again is not polled
//! a second time). Dozens of `iou-wrk` threads then block in `recvmsg` on
//! the one socket and complete in whatever order the scheduler runs them:
//! that reordered about 0.7 % of video packets within their streams
//! (measured, sluice-bench `reordered`). One thread draining the socket in
//! order, a batch per syscall, cannot reorder; and the sends' chain keeps
//! a send that waits for socket-buffer room from being overtaken.
//!
//! This uses the `io-uring` crate directly rather than `tokio-uring`: a
//! packet worker is one thread running one loop over one socket, so an
//! async runtime per worker (its executor, task allocations, waker
//! machinery, and a driver thread-local per ring) would add work per packet
//! and buy nothing; the raw ring lets the loop choose exactly which entries
//! share one syscall.

// Queued entries carry raw pointers into the send headers, which the
// kernel reads after `push` returns; recvmmsg takes raw message headers.
#![allow(unsafe_code)]

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{IoUring, opcode, squeue, types};

use super::msghdr::{RecvSlots, SendHeaders};
use super::worker::{BatchIo, FANOUT_HINT, POLL_INTERVAL};
use crate::metrics::{Drop, WorkerCounters};
use crate::relay::{Path, Transmits};

/// `user_data` tags: the high half says what completed, the low half which
/// datagram.
const POLL: u64 = 0;
const SEND: u64 = 1 << 32;
const CANCEL: u64 = 2 << 32;
const TAG: u64 = !0xffff_ffff;

/// How many times a dropped backend waits [`POLL_INTERVAL`] for its
/// cancelled operations before it gives up.
const CANCEL_WAITS: usize = 20;

/// A ring sized for a batch of sends (larger batches are submitted in
/// several chains).
pub(crate) fn new_ring(recv_batch: usize) -> io::Result<IoUring> {
    let entries = (recv_batch * 2).clamp(256, 4096).next_power_of_two();
    IoUring::new(entries as u32)
}

/// A worker's socket driven by its own ring.
pub(crate) struct UringIo {
    ring: IoUring,
    socket: UdpSocket,
    recv: RecvSlots,
    /// Datagrams the last `recvmmsg` put in `recv`, not yet handled.
    ready: usize,
    /// Whether the readiness poll is in flight.
    poll_armed: bool,
    send: SendHeaders,
    sends_in_flight: usize,
    /// Messages of the current send batch that failed, with their errno,
    /// to recover once their chain has completed (rare: grows only then).
    failed: Vec<(usize, i32)>,
    counters: Arc<WorkerCounters>,
    wait_timeout: types::Timespec,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("socket", &self.socket)
            .field("ready", &self.ready)
            .field("poll_armed", &self.poll_armed)
            .field("sends_in_flight", &self.sends_in_flight)
            .finish_non_exhaustive()
    }
}

/// Whether a failed `io_uring_enter` is worth simply trying again (ETIME:
/// the wait's timeout expired, the normal case on an idle socket).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

impl UringIo {
    pub(crate) fn new(
        ring: IoUring,
        socket: UdpSocket,
        recv_batch: usize,
        gso: bool,
        counters: Arc<WorkerCounters>,
    ) -> io::Result<Self> {
        let gso = gso && super::gso::supported(&socket);
        let local = socket.local_addr()?;
        let (v6, any) = (local.is_ipv6(), local.ip().is_unspecified());
        Ok(Self {
            ring,
            socket,
            recv: RecvSlots::new(recv_batch),
            ready: 0,
            poll_armed: false,
            send: SendHeaders::new(v6, any, gso, recv_batch * FANOUT_HINT),
            failed: Vec::new(),
            sends_in_flight: 0,
            counters,
            wait_timeout: types::Timespec::from(POLL_INTERVAL),
        })
    }

    /// Takes what the socket holds, up to a batch, without blocking.
    fn receive_now(&mut self) -> io::Result<usize> {
        // SAFETY: receives here are synchronous; none is in flight.
        let hdrs = unsafe { self.recv.arm_all() };
        // SAFETY: `hdrs` starts an array of `recv.len()` headers just armed
        // over buffers owned by `self.recv`, which outlives this call; no
        // other receive uses them.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs,
                self.recv.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // An ICMP error queued on the socket (a peer's port was
                // closed) surfaces here once; the next call reads on.
                _ if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        self.ready = n as usize;
        Ok(self.ready)
    }

    /// Queues the readiness poll unless it is in flight.
    fn arm_poll(&mut self) -> io::Result<()> {
        if self.poll_armed {
            return Ok(());
        }
        let entry = opcode::PollAdd::new(types::Fd(self.socket.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(POLL);
        loop {
            // SAFETY: a poll request points at no memory of ours.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.poll_armed = true;
                return Ok(());
            }
            self.enter(0)?;
            self.reap(None);
        }
    }

    /// Submits what is queued and waits for `want` completions (no
    /// timeout), retrying transient failures.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        match self.ring.submitter().submit_and_wait(want) {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes every completion off the ring: the poll's is noted, sends are
    /// counted against `out` (the batch they were built from); failed ones
    /// are kept for [`Self::recover_failed`].
    fn reap(&mut self, out: Option<&Transmits>) {
        for cqe in self.ring.completion() {
            let index = (cqe.user_data() & !TAG) as usize;
            match cqe.user_data() & TAG {
                POLL => self.poll_armed = false,
                SEND => {
                    self.sends_in_flight -= 1;
                    match out {
                        Some(out) if cqe.result() >= 0 => {
                            let datagrams = self.send.datagrams(index);
                            for t in datagrams.iter().filter_map(|&i| out.get(i as usize)) {
                                self.counters.sent(t.mode, t.data.len());
                            }
                        }
                        Some(_) => self.failed.push((index, -cqe.result())),
                        None => self.counters.dropped(Drop::Other),
                    }
                }
                _ => {} // CANCEL: the cancelled operation reports itself.
            }
        }
    }

    /// Sends again, datagram by datagram, the failed messages of the chain
    /// that just completed (msghdr.rs `recover`). The datagrams of a failed
    /// GSO run may then follow the next run to the same destination, which
    /// the chain already sent: a reordering only on this error path, which
    /// for `EIO` happens once per socket (GSO is then off).
    fn recover_failed(&mut self, out: &Transmits) {
        let fd = self.socket.as_raw_fd();
        for k in 0..self.failed.len() {
            let (j, errno) = self.failed[k];
            self.send.recover(fd, out, j, errno, &self.counters);
        }
        self.failed.clear();
    }
}

impl BatchIo for UringIo {
    fn wait(&mut self, block: bool) -> io::Result<usize> {
        self.reap(None);
        let n = self.receive_now()?;
        if n > 0 || !block {
            return Ok(n);
        }
        self.arm_poll()?;
        let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
        match self.ring.submitter().submit_with_args(1, &args) {
            Err(e) if !transient(&e) => return Err(e),
            _ => {}
        }
        self.reap(None);
        self.receive_now()
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
            // The sends of a batch run as one hard-linked chain, so the
            // kernel starts each only when the one before has completed:
            // a send that meets a full socket buffer (and waits for room)
            // cannot be overtaken by the next packet of the same stream, as
            // independent requests were (round 1 measured 0.7 % of video
            // packets reordered). A hard link, unlike a plain one, does not
            // cancel the rest when one send fails. A chain must not straddle
            // two submissions, so it is cut to the room the queue has and
            // the next part waits for the previous one to complete.
            let free = {
                let sq = self.ring.submission();
                sq.capacity() - sq.len()
            };
            if free == 0 {
                self.enter(0)?;
                self.reap(Some(out));
                self.recover_failed(out);
                continue;
            }
            let end = count.min(at + free);
            for j in at..end {
                let mut entry =
                    opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), self.send.msghdr(j))
                        .build()
                        .user_data(SEND | j as u64);
                if j + 1 < end {
                    entry = entry.flags(squeue::Flags::IO_HARDLINK);
                }
                // SAFETY: the header points into `self.send` and `out`,
                // neither of which changes before every send completion is
                // reaped below.
                if unsafe { self.ring.submission().push(&entry) }.is_err() {
                    // `free` slots were checked above; unreachable, but a
                    // lost datagram beats a broken chain.
                    self.counters.dropped(Drop::Other);
                    continue;
                }
                self.sends_in_flight += 1;
            }
            // One enter submits the chain and the re-armed receives
            // together; UDP sends usually complete inline, so it rarely
            // waits.
            while self.sends_in_flight > 0 {
                self.enter(1)?;
                self.reap(Some(out));
            }
            self.recover_failed(out);
            at = end;
        }
        Ok(())
    }
}

impl UringIo {
    /// Whether this socket still sends runs with GSO, and how many runs
    /// the kernel refused so far.
    #[cfg(test)]
    pub(crate) fn gso_state(&self) -> (bool, u64) {
        (self.send.gso(), self.send.retried_runs())
    }

    /// Cancels the poll and waits (bounded) until the kernel has finished
    /// every operation; returns whether it has.
    fn settle(&mut self) -> bool {
        if self.poll_armed {
            let cancel = opcode::AsyncCancel::new(POLL).build().user_data(CANCEL);
            // SAFETY: a cancel request points at no memory.
            let _ = unsafe { self.ring.submission().push(&cancel) };
        }
        let mut waits = 0;
        while (self.poll_armed || self.sends_in_flight > 0) && waits < CANCEL_WAITS {
            let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(None);
            waits += 1;
        }
        !self.poll_armed && self.sends_in_flight == 0
    }
}

impl std::ops::Drop for UringIo {
    fn drop(&mut self) {
        // Sends in flight (only possible after a failed enter) read the
        // send headers: the kernel must be done before they are freed.
        if !self.settle() {
            tracing::error!(
                sends = self.sends_in_flight,
                "io_uring operations did not complete after cancellation"
            );
            // Leaking beats freeing memory the kernel may still read.
            let send = std::mem::replace(&mut self.send, SendHeaders::new(false, false, false, 0));
            std::mem::forget(send);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_armed_poll_is_cancelled_and_completes_before_drop() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let counters = Arc::new(WorkerCounters::default());
        let mut io = UringIo::new(new_ring(8).unwrap(), socket, 8, true, counters).unwrap();
        // Nothing to read: the wait arms the poll and times out.
        assert_eq!(io.wait(true).unwrap(), 0);
        assert!(io.poll_armed);
        assert!(io.settle());
        assert!(!io.poll_armed);
    }

    #[test]
    fn a_datagram_ends_the_wait_and_is_received() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let counters = Arc::new(WorkerCounters::default());
        let mut io = UringIo::new(new_ring(8).unwrap(), socket, 8, true, counters).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"one", to).unwrap();
        peer.send_to(b"two", to).unwrap();
        let mut deadline = 20;
        let mut got = Vec::new();
        while got.len() < 2 && deadline > 0 {
            if io.wait(true).unwrap() > 0 {
                io.received(|_, packet, len| got.push(packet[..len].to_vec()));
            }
            deadline -= 1;
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    }
}

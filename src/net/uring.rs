//! The io_uring backend: each worker owns one ring and keeps a `RecvMsg`
//! armed on every one of its receive slots. A loop turn reaps the completed
//! receives (in completion order, which is the order the kernel handed
//! out the datagrams), and after the handler has run queues one `SendMsg`
//! per outgoing datagram, hard-linked into one chain so they leave in
//! order, plus the re-armed receives, submitted together in one
//! `io_uring_enter`. Waits carry a [`POLL_INTERVAL`] timeout
//! (`IORING_FEAT_EXT_ARG`) so a worker notices shutdown.
//!
//! This uses the `io-uring` crate directly rather than `tokio-uring`: a
//! packet worker is one thread running one loop over one socket, so an
//! async runtime per worker (its executor, task allocations, waker
//! machinery, and a driver thread-local per ring) would add work per packet
//! and buy nothing; the raw ring lets the loop choose exactly which entries
//! share one syscall.

// Queued entries carry raw pointers into the receive slots and the send
// headers, which the kernel reads and writes after `push` returns.
#![allow(unsafe_code)]

use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{IoUring, opcode, squeue, types};

use super::msghdr::{RecvSlots, SendHeaders};
use super::worker::{BatchIo, POLL_INTERVAL};
use crate::metrics::{Drop, WorkerCounters};
use crate::relay::Transmits;

/// `user_data` tags: the high half says what completed, the low half which
/// slot or datagram.
const RECV: u64 = 0;
const SEND: u64 = 1 << 32;
const CANCEL: u64 = 2 << 32;
const TAG: u64 = !0xffff_ffff;

/// How many times a dropped backend waits [`POLL_INTERVAL`] for its
/// cancelled operations before it gives up and leaks the buffers.
const CANCEL_WAITS: usize = 20;

/// A ring sized for `recv_batch` armed receives plus a batch of sends
/// (larger batches are submitted in several goes).
pub(crate) fn new_ring(recv_batch: usize) -> io::Result<IoUring> {
    let entries = (recv_batch * 2).clamp(256, 4096).next_power_of_two();
    IoUring::new(entries as u32)
}

/// A worker's socket driven by its own ring.
pub(crate) struct UringIo {
    ring: IoUring,
    socket: UdpSocket,
    /// Freed in `drop` only once the kernel is done with every slot.
    recv: ManuallyDrop<RecvSlots>,
    /// Receives in flight (armed, not yet reaped).
    armed: usize,
    /// Completed receives not yet handled: (slot, result).
    ready: Vec<(usize, i32)>,
    send: SendHeaders,
    sends_in_flight: usize,
    counters: Arc<WorkerCounters>,
    wait_timeout: types::Timespec,
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("socket", &self.socket)
            .field("armed", &self.armed)
            .field("ready", &self.ready.len())
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
        counters: Arc<WorkerCounters>,
    ) -> io::Result<Self> {
        let v6 = socket.local_addr()?.is_ipv6();
        let mut io = Self {
            ring,
            socket,
            recv: ManuallyDrop::new(RecvSlots::new(recv_batch)),
            armed: 0,
            ready: Vec::with_capacity(recv_batch),
            send: SendHeaders::new(v6, recv_batch),
            sends_in_flight: 0,
            counters,
            wait_timeout: types::Timespec::from(POLL_INTERVAL),
        };
        for slot in 0..recv_batch {
            io.arm(slot)?;
        }
        Ok(io)
    }

    /// Queues a receive into `slot` (submitted with the next enter).
    fn arm(&mut self, slot: usize) -> io::Result<()> {
        // `msghdr` is the first field of the `repr(C)` `mmsghdr`.
        // SAFETY: only completed slots (reaped, or never armed) are armed.
        let msg = unsafe { self.recv.arm(slot) }.cast::<libc::msghdr>();
        let entry = opcode::RecvMsg::new(types::Fd(self.socket.as_raw_fd()), msg)
            .build()
            .user_data(RECV | slot as u64);
        // SAFETY: the header, its iovec, buffer and address room belong to
        // `self.recv`, which is not touched for `slot` until its completion
        // is reaped and is freed only after every receive has completed
        // (`Drop`).
        unsafe { self.push(&entry, None)? };
        self.armed += 1;
        Ok(())
    }

    /// Queues `entry`, first submitting (and reaping) if the queue is full.
    ///
    /// # Safety
    /// Whatever `entry` points to must stay valid and unused by the worker
    /// until its completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry, out: Option<&Transmits>) -> io::Result<()> {
        loop {
            // SAFETY: forwarded to the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.enter(0)?;
            self.reap(out);
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

    /// Takes every completion off the ring: receives go to `ready`, sends
    /// are counted against `out` (the batch they were built from).
    fn reap(&mut self, out: Option<&Transmits>) {
        for cqe in self.ring.completion() {
            let index = (cqe.user_data() & !TAG) as usize;
            match cqe.user_data() & TAG {
                RECV => {
                    self.armed -= 1;
                    self.ready.push((index, cqe.result()));
                }
                SEND => {
                    self.sends_in_flight -= 1;
                    match out.and_then(|o| o.get(index)) {
                        Some(t) if cqe.result() >= 0 => self.counters.sent(t.mode, t.data.len()),
                        _ => self.counters.dropped(Drop::Other),
                    }
                }
                _ => {} // CANCEL: the cancelled operation reports itself.
            }
        }
    }
}

impl BatchIo for UringIo {
    fn wait(&mut self, block: bool) -> io::Result<usize> {
        let result = if block && self.ready.is_empty() {
            let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submitter().submit()
        };
        match result {
            Err(e) if !transient(&e) => return Err(e),
            _ => {}
        }
        self.reap(None);
        Ok(self.ready.len())
    }

    fn received(&mut self, mut each: impl FnMut(SocketAddr, &mut [u8], usize)) {
        for k in 0..self.ready.len() {
            let (slot, result) = self.ready[k];
            // A negative result (e.g. ENOMEM) carries no datagram.
            if let Ok(len) = usize::try_from(result) {
                // SAFETY: the slot's completion was reaped and it is re-armed
                // only below, after the handler is done with it.
                match unsafe { self.recv.datagram(slot, len) } {
                    Some((from, packet)) => each(from, packet, len),
                    None => self.counters.dropped(Drop::Malformed),
                }
            }
        }
        let handled = self.ready.len();
        for k in 0..handled {
            let slot = self.ready[k].0;
            if let Err(error) = self.arm(slot) {
                // Only a failing enter on a full queue gets here; the slot
                // stays idle and the worker runs on with one fewer.
                tracing::warn!(slot, %error, "could not re-arm a receive");
            }
        }
        // Arming may have reaped more completions behind these; they stay.
        self.ready.drain(..handled);
    }

    fn discard(&mut self) -> usize {
        // A handler that panicked inside `received` left every slot of the
        // batch reaped but not re-armed, and `ready` whole.
        let pending = self.ready.len();
        for k in 0..pending {
            let slot = self.ready[k].0;
            if let Err(error) = self.arm(slot) {
                tracing::warn!(slot, %error, "could not re-arm a receive");
            }
        }
        self.ready.drain(..pending);
        pending
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
            at = end;
        }
        Ok(())
    }
}

impl UringIo {
    /// Cancels every armed receive and waits (bounded) until the kernel has
    /// finished every operation; returns whether it has.
    fn settle(&mut self) -> bool {
        for slot in 0..self.recv.len() {
            let cancel = opcode::AsyncCancel::new(RECV | slot as u64)
                .build()
                .user_data(CANCEL);
            // SAFETY: a cancel request points at no memory. A slot that is
            // not armed just yields ENOENT.
            if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                // The queue has room for two batches, so this cannot
                // happen; the wait below is bounded either way.
                break;
            }
        }
        let mut waits = 0;
        while (self.armed > 0 || self.sends_in_flight > 0) && waits < CANCEL_WAITS {
            let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(None);
            waits += 1;
        }
        self.armed == 0 && self.sends_in_flight == 0
    }
}

impl std::ops::Drop for UringIo {
    fn drop(&mut self) {
        // The kernel may still write into armed receive slots: the slots are
        // freed only once it is done with every one. (Sends in flight, only
        // possible after a failed enter, merely read.)
        self.settle();
        if self.armed == 0 {
            // SAFETY: no receive is in flight any more, so the kernel holds
            // no pointer into the slots; they are dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.recv) };
        } else {
            // Freeing memory the kernel may still write would corrupt the
            // heap; leaking it is the safe choice.
            tracing::error!(
                armed = self.armed,
                "io_uring receives did not complete after cancellation; leaking their buffers"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_receives_all_complete_before_the_slots_are_freed() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let counters = Arc::new(WorkerCounters::default());
        let mut io = UringIo::new(new_ring(8).unwrap(), socket, 8, counters).unwrap();
        // Submit the receives so that they are really in flight.
        assert_eq!(io.wait(false).unwrap(), 0);
        assert_eq!(io.armed, 8);
        assert!(io.settle());
        assert_eq!(io.armed, 0);
    }
}

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
//!
//! Fixed files (`[media] fixed_files`, off by default; bench/README.md,
//! #12): the socket is registered with the ring (`IORING_REGISTER_FILES`,
//! one slot) and every request names it by that slot (`types::Fixed`), so
//! the kernel takes no file reference per request. The `recvmmsg` calls
//! and the datagram-by-datagram recovery are plain syscalls on the
//! descriptor either way. Registered (fixed) buffers are not used: the
//! requests that read one (`SEND_ZC`'s `buf_index`, `WRITE_FIXED`) carry no
//! control messages, and every send here may need one (`UDP_SEGMENT` for
//! a GSO run, `IP_PKTINFO` for the source address), so they would undo GSO.

// Queued entries carry raw pointers into the send headers, which the
// kernel reads after `push` returns; recvmmsg takes raw message headers.
#![allow(unsafe_code)]

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{IoUring, opcode, squeue, types};

use super::msghdr::{RecvSlots, SendHeaders};
use super::multishot::MultishotRecv;
use super::worker::{BatchIo, FANOUT_HINT, IoFeatures, POLL_INTERVAL};
use crate::metrics::{Drop, WorkerCounters};
use crate::relay::{Path, Transmits};

/// `user_data` tags: the high half says what completed, the low half which
/// datagram.
const POLL: u64 = 0;
const SEND: u64 = 1 << 32;
const CANCEL: u64 = 2 << 32;
const RECV: u64 = 3 << 32;
const TAG: u64 = !0xffff_ffff;

/// The registered-file slot of the worker's socket.
const SOCKET_SLOT: u32 = 0;

/// How the ring's requests name the socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SocketRef {
    /// By descriptor.
    Fd(types::Fd),
    /// By its slot in the ring's registered files.
    Fixed(types::Fixed),
}

/// Builds `$entry` with `$target` (a [`SocketRef`]) bound to `$t`, the
/// descriptor or the fixed slot: the opcode builders take either type.
macro_rules! on_socket {
    ($target:expr, $t:ident => $entry:expr) => {
        match $target {
            SocketRef::Fd($t) => $entry,
            SocketRef::Fixed($t) => $entry,
        }
    };
}
pub(crate) use on_socket;

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
    /// The multishot receive, where asked for and the kernel has it; else
    /// receives are `recvmmsg` calls (`recv`).
    multishot: Option<MultishotRecv>,
    /// Messages of the current send batch that failed, with their errno,
    /// to recover once their chain has completed (rare: grows only then).
    failed: Vec<(usize, i32)>,
    counters: Arc<WorkerCounters>,
    wait_timeout: types::Timespec,
    /// How requests name the socket (fixed files, or the descriptor).
    target: SocketRef,
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
        features: IoFeatures,
        counters: Arc<WorkerCounters>,
    ) -> io::Result<Self> {
        let gso = features.gso && super::gso::supported(&socket);
        let multishot = if features.multishot {
            MultishotRecv::new(&ring)
                .inspect_err(|error| {
                    tracing::info!(
                        %error,
                        "io_uring multishot receive unavailable; receiving with recvmmsg"
                    );
                })
                .ok()
        } else {
            None
        };
        let local = socket.local_addr()?;
        let (v6, any) = (local.is_ipv6(), local.ip().is_unspecified());
        let fd = types::Fd(socket.as_raw_fd());
        let target = if features.fixed_files {
            match ring.submitter().register_files(&[fd.0]) {
                Ok(()) => SocketRef::Fixed(types::Fixed(SOCKET_SLOT)),
                Err(error) => {
                    tracing::info!(%error, "io_uring fixed files unavailable; naming the socket by descriptor");
                    SocketRef::Fd(fd)
                }
            }
        } else {
            SocketRef::Fd(fd)
        };
        Ok(Self {
            ring,
            socket,
            recv: RecvSlots::new(recv_batch),
            ready: 0,
            poll_armed: false,
            send: SendHeaders::new(v6, any, gso, recv_batch * FANOUT_HINT),
            multishot,
            failed: Vec::new(),
            sends_in_flight: 0,
            counters,
            wait_timeout: types::Timespec::from(POLL_INTERVAL),
            target,
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
        let entry =
            on_socket!(self.target, t => opcode::PollAdd::new(t, libc::POLLIN as u32).build())
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
                RECV => {
                    if let Some(ms) = self.multishot.as_mut() {
                        ms.completed(&cqe);
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

impl UringIo {
    /// [`BatchIo::wait`] on the multishot receive: what was reaped already
    /// (during the last sends) if anything, else arm the request if it
    /// ended and wait on the ring.
    fn wait_multishot(&mut self, block: bool) -> io::Result<usize> {
        self.reap(None);
        let target = self.target;
        let Some(ms) = self.multishot.as_mut() else {
            return Ok(0);
        };
        let batch = self.recv.len();
        if ms.ready() > 0 {
            return Ok(ms.ready().min(batch));
        }
        let queued = !ms.armed() && ms.arm(&mut self.ring, target, RECV);
        if block {
            let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
            match self.ring.submitter().submit_with_args(1, &args) {
                Err(e) if !transient(&e) => return Err(e),
                _ => {}
            }
        } else if queued {
            self.enter(0)?;
        }
        self.reap(None);
        Ok(self
            .multishot
            .as_ref()
            .map_or(0, |ms| ms.ready().min(batch)))
    }
}

impl BatchIo for UringIo {
    fn wait(&mut self, block: bool) -> io::Result<usize> {
        if self.multishot.is_some() {
            return self.wait_multishot(block);
        }
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
        if let Some(ms) = self.multishot.as_mut() {
            let counters = &self.counters;
            ms.received(self.recv.len(), each, || counters.dropped(Drop::Malformed));
            return;
        }
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
        // With multishot, the buffers of the batch go back to the kernel.
        // Without, `received` takes the whole batch before it hands out the
        // first datagram, so nothing is pending even after a panic in the
        // handler; the next `wait` re-arms every slot.
        match self.multishot.as_mut() {
            Some(ms) => ms.recycle(self.recv.len()),
            None => std::mem::take(&mut self.ready),
        }
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
                let header = self.send.msghdr(j);
                let mut entry =
                    on_socket!(self.target, t => opcode::SendMsg::new(t, header).build())
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

    /// Whether requests name the socket as a registered file.
    #[cfg(test)]
    pub(crate) fn fixed_files(&self) -> bool {
        matches!(self.target, SocketRef::Fixed(_))
    }

    /// Cancels the poll and the multishot receive and waits (bounded)
    /// until the kernel has finished every operation, then unregisters the
    /// buffer ring; returns whether the kernel is done with our memory.
    fn settle(&mut self) -> bool {
        if self.poll_armed {
            let cancel = opcode::AsyncCancel::new(POLL).build().user_data(CANCEL);
            // SAFETY: a cancel request points at no memory.
            let _ = unsafe { self.ring.submission().push(&cancel) };
        }
        if let Some(ms) = self.multishot.as_ref() {
            ms.cancel(&mut self.ring, RECV, CANCEL);
        }
        let receiving = |io: &Self| io.multishot.as_ref().is_some_and(MultishotRecv::armed);
        let mut waits = 0;
        while (self.poll_armed || self.sends_in_flight > 0 || receiving(self))
            && waits < CANCEL_WAITS
        {
            let args = types::SubmitArgs::new().timespec(&self.wait_timeout);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(None);
            waits += 1;
        }
        if let Some(ms) = self.multishot.as_mut() {
            ms.unregister(&self.ring);
        }
        !self.poll_armed
            && self.sends_in_flight == 0
            && !self.multishot.as_ref().is_some_and(MultishotRecv::in_use)
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
    use std::net::{IpAddr, SocketAddr};

    /// Receives until `count` datagrams came or the bounded waits ran out.
    fn drain(io: &mut UringIo, count: usize, got: &mut Vec<(u16, usize, Path)>) {
        let mut waits = 0;
        while got.len() < count && waits < 100 {
            if io.wait(true).unwrap() == 0 {
                waits += 1;
                continue;
            }
            io.received(|from, packet, len| {
                got.push((u16::from_be_bytes([packet[0], packet[1]]), len, from));
            });
        }
    }

    #[test]
    fn multishot_receives_in_order_with_sender_and_local_address_past_its_buffers() {
        for (listen, to_ip) in [
            ("127.0.0.1:0", "127.0.0.1"),
            ("0.0.0.0:0", "127.0.0.2"),
            ("[::]:0", "127.0.0.3"),
            ("[::]:0", "::1"),
        ] {
            let (mut sockets, local) =
                super::super::socket::bind_group(listen.parse().unwrap(), 1, 4 << 20).unwrap();
            let counters = Arc::new(WorkerCounters::default());
            let features = IoFeatures {
                gso: true,
                multishot: true,
                fixed_files: true,
            };
            let socket = sockets.pop().unwrap();
            let mut io =
                UringIo::new(new_ring(32).unwrap(), socket, 32, features, counters).unwrap();
            assert!(
                io.multishot.is_some(),
                "multishot receive refused on {listen}"
            );
            assert!(io.fixed_files(), "fixed files refused on {listen}");
            let to_ip: IpAddr = to_ip.parse().unwrap();
            let to = SocketAddr::new(to_ip, local.port());
            let peer = UdpSocket::bind(SocketAddr::new(
                if to_ip.is_ipv6() {
                    to_ip
                } else {
                    "127.0.0.1".parse().unwrap()
                },
                0,
            ))
            .unwrap();
            // More datagrams in one burst than the ring has buffers: the
            // request ends (ENOBUFS) and is armed again; nothing is lost.
            let count = usize::from(super::super::multishot::BUFFERS) * 3;
            let mut got = Vec::new();
            for burst in 0..2 {
                for i in 0..count / 2 {
                    let seq = (burst * count / 2 + i) as u16;
                    let len = 2 + usize::from(seq) % 1400;
                    let mut d = vec![0u8; len];
                    d[..2].copy_from_slice(&seq.to_be_bytes());
                    peer.send_to(&d, to).unwrap();
                }
                drain(&mut io, (burst + 1) * count / 2, &mut got);
            }
            assert_eq!(got.len(), count, "on {listen}");
            let wildcard = local.ip().is_unspecified();
            for (k, &(seq, len, from)) in got.iter().enumerate() {
                assert_eq!(usize::from(seq), k, "in order on {listen}");
                assert_eq!(len, 2 + k % 1400);
                assert_eq!(from.remote, peer.local_addr().unwrap());
                assert_eq!(from.local, wildcard.then_some(to_ip), "on {listen}");
            }
            assert!(io.settle(), "the request ends and the ring is unregistered");
        }
    }

    #[test]
    fn the_armed_poll_is_cancelled_and_completes_before_drop() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let counters = Arc::new(WorkerCounters::default());
        let mut io = UringIo::new(
            new_ring(8).unwrap(),
            socket,
            8,
            IoFeatures::default(),
            counters,
        )
        .unwrap();
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
        let mut io = UringIo::new(
            new_ring(8).unwrap(),
            socket,
            8,
            IoFeatures::default(),
            counters,
        )
        .unwrap();
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

//! The packet worker's loop, written once for both I/O backends: wait for
//! a batch of datagrams, load the routing snapshot once, hand each datagram
//! to the [`PacketHandler`], send everything it produced in one batch,
//! sample the latency, repeat until told to stop.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::IoUring;

use super::mmsg::MmsgIo;
use super::uring::UringIo;
use crate::metrics::WorkerCounters;
use crate::relay::{RoutingSnapshot, SnapshotCell, Transmits};

/// How long a worker waits for a datagram before it looks at the stop flag.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Batches a stopping worker still handles, at most, so a flood cannot hold
/// up shutdown.
const DRAIN_TURNS: usize = 8;

/// Outgoing datagrams per received one the transmit arena is first sized
/// for; it grows (once) for larger fan-outs.
const FANOUT_HINT: usize = 16;

/// What a worker does with each datagram: the relay core implements this
/// (sans-IO; it never touches a socket or the clock).
pub trait PacketHandler: Send + 'static {
    /// Handles one datagram of `len` bytes from `from`. `packet` is the
    /// whole receive buffer (at least `len` bytes, with room to grow in
    /// place); whatever should go out is committed to `out`, which the worker
    /// sends in one batch after the whole receive batch is handled.
    fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: SocketAddr,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    );

    /// Whether output is waiting on a device (GPU crypto); while so, the
    /// loop does not block on input and calls [`Self::poll_deferred`]
    /// every turn.
    fn has_deferred(&self) -> bool {
        false
    }

    /// Commits to `out` the waiting output that is ready (with `block`,
    /// all of it); returns whether some still waits.
    fn poll_deferred(&mut self, _block: bool, _out: &mut Transmits) -> bool {
        false
    }
}

/// One backend's batched socket operations.
pub(crate) trait BatchIo {
    /// Waits for datagrams, up to [`POLL_INTERVAL`] when `block`, not at all
    /// otherwise; returns how many are ready.
    fn wait(&mut self, block: bool) -> io::Result<usize>;

    /// Hands every ready datagram to `each` as (sender, buffer, length),
    /// then frees its slot for the next receive.
    fn received(&mut self, each: impl FnMut(SocketAddr, &mut [u8], usize));

    /// Sends every datagram of `out`, counting each as sent or dropped, and
    /// returns once the kernel has taken them all (so `out` may be reused).
    fn send(&mut self, out: &Transmits) -> io::Result<()>;
}

/// What a worker thread runs with, besides its backend.
pub(crate) struct WorkerContext<H> {
    pub(crate) index: usize,
    pub(crate) handler: H,
    pub(crate) cell: SnapshotCell,
    pub(crate) counters: Arc<WorkerCounters>,
    pub(crate) stop: Arc<AtomicBool>,
}

/// A worker thread's body: pins it, builds its backend over `socket` (on
/// `ring` when given, else `recvmmsg`/`sendmmsg`), runs the loop, and logs
/// why it ended if it was not asked to.
pub(crate) fn thread_main<H: PacketHandler>(
    socket: UdpSocket,
    ring: Option<IoUring>,
    recv_batch: usize,
    core: Option<usize>,
    mut ctx: WorkerContext<H>,
) {
    if let Some(core) = core {
        pin_to(core, ctx.index);
    }
    // Declared before the backend so it is dropped after it: an io_uring
    // backend waits out its in-flight operations when dropped.
    let mut out = Transmits::with_capacity(recv_batch * FANOUT_HINT);
    let counters = Arc::clone(&ctx.counters);
    let result = match ring {
        Some(ring) => UringIo::new(ring, socket, recv_batch, counters)
            .and_then(|mut io| run(&mut io, &mut ctx, &mut out)),
        None => MmsgIo::new(socket, recv_batch, counters)
            .and_then(|mut io| run(&mut io, &mut ctx, &mut out)),
    };
    if let Err(error) = result {
        tracing::error!(worker = ctx.index, %error, "packet worker stopped");
    }
}

/// Runs the loop until the stop flag is set and what was received is
/// drained, or the backend fails.
pub(crate) fn run<B: BatchIo, H: PacketHandler>(
    io: &mut B,
    ctx: &mut WorkerContext<H>,
    out: &mut Transmits,
) -> io::Result<()> {
    let mut drain_turns = 0;
    loop {
        let stopping = ctx.stop.load(Ordering::Relaxed);
        let deferred = ctx.handler.has_deferred();
        let ready = io.wait(!stopping && !deferred)?;
        if ready == 0 {
            if deferred {
                // Nothing arrived; send what the device finished. The
                // device may be a CPU driver sharing these cores: yield
                // rather than spin on it.
                if !ctx.handler.poll_deferred(stopping, out) || !out.is_empty() {
                    let sent = io.send(out);
                    out.clear();
                    sent?;
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if stopping {
                return Ok(());
            }
            continue;
        }
        turn(io, ctx, out)?;
        if stopping {
            drain_turns += 1;
            if drain_turns >= DRAIN_TURNS {
                if ctx.handler.has_deferred() {
                    ctx.handler.poll_deferred(true, out);
                    io.send(out)?;
                    out.clear();
                }
                return Ok(());
            }
        }
    }
}

/// One batch: handle every ready datagram under one snapshot, send.
fn turn<B: BatchIo, H: PacketHandler>(
    io: &mut B,
    ctx: &mut WorkerContext<H>,
    out: &mut Transmits,
) -> io::Result<()> {
    let started = Instant::now();
    let snapshot = ctx.cell.load();
    let handler = &mut ctx.handler;
    io.received(|from, packet, len| handler.handle_datagram(&snapshot, from, packet, len, out));
    if handler.has_deferred() {
        handler.poll_deferred(false, out);
    }
    let sent = io.send(out);
    out.clear();
    ctx.counters
        .latency_sample(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    sent
}

/// Pins the calling thread to `core`; failure costs only locality, so it
/// is logged, not fatal.
pub(crate) fn pin_to(core: usize, index: usize) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set
        .set(core)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    if let Err(e) = pinned {
        tracing::warn!(worker = index, core, error = %e, "could not pin the packet worker");
    }
}

/// The cores this process may run on, in order (its affinity mask).
pub(crate) fn allowed_cores() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

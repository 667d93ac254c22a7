//! The packet worker's loop, written once for both I/O backends: wait for
//! a batch of datagrams, load the routing snapshot once, hand each datagram
//! to the [`PacketHandler`], send everything it produced in one batch,
//! sample the latency, repeat until told to stop.
//!
//! Two things the loop measures or survives on the way:
//! - **Busy share.** The time from a wait's return to the next wait (the
//!   handler and the sends: work, not waiting for packets), over windows
//!   of [`BUSY_WINDOW`], published per worker
//!   ([`WorkerCounters::set_busy`]); the control plane sheds new
//!   participants above `[policy] max_worker_busy`.
//! - **Panics.** A panic in the handler (a bug: network input must never
//!   cause one) unwinds to [`supervise`], which drops the batch in hand,
//!   builds a fresh handler from the factory (so the worker's SRTP state
//!   starts over and its legs are taken up again with their next packet;
//!   latches live in the snapshot and survive, and so does what the
//!   factory keeps per worker index: the relay's SRTP index journal, from
//!   which the new handler takes its streams up without reusing an
//!   index), counts the restart and
//!   logs it once with its cause. The socket, and with it the worker's place
//!   in the `SO_REUSEPORT` group, stays, so no other worker notices.

use std::cell::RefCell;
use std::io;
use std::net::UdpSocket;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use io_uring::IoUring;

use super::mmsg::MmsgIo;
use super::uring::UringIo;
use crate::metrics::WorkerCounters;
use crate::relay::{Path, RoutingSnapshot, SnapshotCell, Transmits};

/// How long a worker waits for a datagram before it looks at the stop flag.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Batches a stopping worker still handles, at most, so a flood cannot hold
/// up shutdown.
const DRAIN_TURNS: usize = 8;

/// Outgoing datagrams per received one the transmit arena is first sized
/// for; it grows (once) for larger fan-outs.
pub(crate) const FANOUT_HINT: usize = 16;

/// How long a window of the busy share is (published when it ends; an idle
/// worker ends one at least every [`POLL_INTERVAL`] or so).
pub(crate) const BUSY_WINDOW: Duration = Duration::from_millis(100);

/// Kernel features a worker's backend uses where the kernel offers them
/// (each probed; absent ones fall back to the plain path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoFeatures {
    /// UDP GSO for runs to one destination (`gso.rs`).
    pub(crate) gso: bool,
    /// io_uring multishot receive into a buffer ring (`multishot.rs`).
    pub(crate) multishot: bool,
    /// io_uring requests name the socket as a registered file (`uring.rs`).
    pub(crate) fixed_files: bool,
}

impl Default for IoFeatures {
    fn default() -> Self {
        Self {
            gso: true,
            multishot: false,
            fixed_files: false,
        }
    }
}

/// Makes a worker's handler: at start, and again after a panic.
pub(crate) type HandlerFactory<H> = dyn Fn(usize, Arc<WorkerCounters>) -> H + Send + Sync;

/// What a worker does with each datagram: the relay core implements this
/// (sans-IO; it never touches a socket or the clock).
pub trait PacketHandler: Send + 'static {
    /// Handles one datagram of `len` bytes from `from` (the peer, and the
    /// local address it sent to when the socket is bound to every address:
    /// commit replies to that [`Path`] and they leave from it). `packet` is
    /// the whole receive buffer (at least `len` bytes, with room to grow in
    /// place); whatever should go out is committed to `out`, which the worker
    /// sends in one batch after the whole receive batch is handled.
    fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: Path,
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
    fn received(&mut self, each: impl FnMut(Path, &mut [u8], usize));

    /// Sends every datagram of `out`, counting each as sent or dropped, and
    /// returns once the kernel has taken them all (so `out` may be reused).
    fn send(&mut self, out: &Transmits) -> io::Result<()>;

    /// After a handler panicked inside [`Self::received`]: drops the
    /// datagrams of that batch not yet let go, readying their slots again;
    /// returns how many.
    fn discard(&mut self) -> usize;
}

/// What a worker thread runs with, besides its backend.
pub(crate) struct WorkerContext<H> {
    pub(crate) index: usize,
    pub(crate) handler: H,
    pub(crate) cell: SnapshotCell,
    pub(crate) counters: Arc<WorkerCounters>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Makes a fresh handler after a panic.
    pub(crate) make_handler: Arc<HandlerFactory<H>>,
}

/// A worker thread's body: pins it, builds its backend over `socket` (on
/// `ring` when given, else `recvmmsg`/`sendmmsg`; using the `features`
/// the kernel has), runs the loop, and logs
/// why it ended if it was not asked to.
pub(crate) fn thread_main<H: PacketHandler>(
    socket: UdpSocket,
    ring: Option<IoUring>,
    recv_batch: usize,
    features: IoFeatures,
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
        Some(ring) => UringIo::new(ring, socket, recv_batch, features, counters)
            .and_then(|mut io| supervise(&mut io, &mut ctx, &mut out)),
        None => MmsgIo::new(socket, recv_batch, features.gso, counters)
            .and_then(|mut io| supervise(&mut io, &mut ctx, &mut out)),
    };
    if let Err(error) = result {
        tracing::error!(worker = ctx.index, %error, "packet worker stopped");
    }
}

thread_local! {
    /// Set on a supervised worker thread: its panics are reported by
    /// [`supervise`], not by the default hook.
    static SUPERVISED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last panic on this thread happened (`file:line`).
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on supervised worker
/// threads, only notes where the panic happened, so the restart is logged
/// once, with its cause, by [`supervise`]; every other thread keeps the
/// hook it had.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if SUPERVISED.with(std::cell::Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANICKED_AT.with(|cell| *cell.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// The message a panic carried.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Runs the loop; when the handler panics, drops the batch in hand, starts
/// over with a fresh handler from `ctx.make_handler`, counts and logs it.
/// Returns when the loop ends (stop, or a backend error).
pub(crate) fn supervise<B: BatchIo, H: PacketHandler>(
    io: &mut B,
    ctx: &mut WorkerContext<H>,
    out: &mut Transmits,
) -> io::Result<()> {
    SUPERVISED.with(|s| s.set(true));
    loop {
        // The backend is consistent at every point a handler can panic
        // (`discard` below restores its slots); the handler, which may not
        // be, is replaced; `out` is cleared.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(io, ctx, out)));
        let payload = match outcome {
            Ok(result) => return result,
            Err(payload) => payload,
        };
        let dropped = io.discard();
        for _ in 0..dropped {
            ctx.counters.dropped(crate::metrics::Drop::Other);
        }
        out.clear();
        ctx.handler = (ctx.make_handler)(ctx.index, Arc::clone(&ctx.counters));
        ctx.counters.restarted();
        let at = PANICKED_AT
            .with(|cell| cell.borrow_mut().take())
            .unwrap_or_else(|| "an unknown place".to_owned());
        tracing::error!(
            worker = ctx.index,
            cause = panic_message(&*payload),
            at,
            dropped,
            "packet worker panicked (a bug); restarted with fresh state, dropping the batch it was handling"
        );
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
    let mut busy = BusyWindow::new(Instant::now());
    loop {
        let stopping = ctx.stop.load(Ordering::Relaxed);
        let deferred = ctx.handler.has_deferred();
        let ready = io.wait(!stopping && !deferred)?;
        if ready == 0 {
            busy.tick(Instant::now(), Duration::ZERO, &ctx.counters);
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
        let started = Instant::now();
        turn(io, ctx, out, started)?;
        let done = Instant::now();
        busy.tick(done, done - started, &ctx.counters);
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

/// Busy time summed over a window, published as a share when it ends.
#[derive(Debug)]
struct BusyWindow {
    since: Instant,
    busy: Duration,
}

impl BusyWindow {
    fn new(now: Instant) -> Self {
        Self {
            since: now,
            busy: Duration::ZERO,
        }
    }

    /// Adds `busy` time ending at `now`; publishes and restarts the
    /// window once it is [`BUSY_WINDOW`] long.
    fn tick(&mut self, now: Instant, busy: Duration, counters: &WorkerCounters) {
        self.busy += busy;
        let span = now.saturating_duration_since(self.since);
        if span >= BUSY_WINDOW {
            counters.set_busy(self.busy.as_secs_f64() / span.as_secs_f64());
            *self = Self::new(now);
        }
    }
}

/// One batch: handle every ready datagram under one snapshot, send.
fn turn<B: BatchIo, H: PacketHandler>(
    io: &mut B,
    ctx: &mut WorkerContext<H>,
    out: &mut Transmits,
    started: Instant,
) -> io::Result<()> {
    let snapshot = ctx.cell.load();
    let handler = &mut ctx.handler;
    io.received(|from, packet, len| handler.handle_datagram(&snapshot, from, packet, len, out));
    if handler.has_deferred() {
        handler.poll_deferred(false, out);
    }
    let sent = io.send(out);
    out.clear();
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    ctx.counters.latency_sample(nanos);
    ctx.counters.add_busy(nanos);
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

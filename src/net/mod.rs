//! The data plane's I/O shell: packet worker threads, one per core, each
//! with its own UDP socket in one `SO_REUSEPORT` group on the media port
//! and its own io_uring (or, where io_uring is unavailable, batched
//! `recvmmsg`/`sendmmsg`). See DESIGN.md, "Packet path", "Shared-nothing
//! workers" and "Fallback".
//!
//! How to drive it: [`DataPlane::start`] with the options, the snapshot
//! cell the control plane publishes to, the metrics hub, and a factory
//! making one [`PacketHandler`] (the sans-IO relay core) per worker.
//! Each worker then loops: wait for a batch of datagrams, load the routing
//! snapshot once, hand every datagram to its handler, send what the handler
//! committed to its [`Transmits`](crate::relay::Transmits) in one batch.
//! No allocation, lock or per-packet syscall on that path. [`DataPlane::shutdown`]
//! stops and joins every worker.
//!
//! Files: `socket` binds the group, `worker` is the loop (written once),
//! `uring` and `mmsg` are the two backends behind it, `msghdr` the kernel
//! message headers they share, `gso` groups a turn's datagrams into UDP
//! GSO runs for them, `multishot` is io_uring's multishot receive into a
//! registered buffer ring, `probe` finds out whether io_uring may be
//! used, `cmsg` reads and writes the local-address and segment-size
//! control messages, `steer` the BPF program that picks a stream's
//! worker by SSRC, `priority` lowers a helper thread's scheduling
//! priority, `burst` sends a media service's frame to the relay in as few
//! sends as GSO allows.

pub mod burst;
mod cmsg;
mod gso;
mod mmsg;
mod msghdr;
mod multishot;
pub mod priority;
mod probe;
mod socket;
mod steer;
mod uring;
mod worker;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub use probe::{IoUringUnavailable, probe_io_uring};
#[doc(hidden)]
pub use steer::attach as attach_ssrc_steering;
pub use worker::PacketHandler;

use crate::metrics::{MetricsHub, WorkerCounters};
use crate::relay::SnapshotCell;

/// Which I/O backend to run, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring if this host allows it, else the `recvmmsg` fallback
    /// (config `"auto"`).
    #[default]
    Auto,
    /// io_uring, or refuse to start (config `"io_uring"`).
    IoUring,
    /// The `recvmmsg`/`sendmmsg` fallback (config `"recvmmsg"`).
    Mmsg,
}

impl IoMode {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::IoUring => "io_uring",
            Self::Mmsg => "recvmmsg",
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A config value that names no [`IoMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown I/O mode {0:?}: expected \"auto\", \"io_uring\" or \"recvmmsg\"")]
pub struct UnknownIoMode(pub String);

impl FromStr for IoMode {
    type Err = UnknownIoMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Auto, Self::IoUring, Self::Mmsg]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownIoMode(s.to_owned()))
    }
}

/// The I/O backend the workers actually run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// One io_uring per worker.
    IoUring,
    /// `recvmmsg`/`sendmmsg`.
    Mmsg,
}

impl IoBackend {
    /// The metrics label and log name: `io_uring` or `recvmmsg`.
    pub fn name(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Mmsg => "recvmmsg",
        }
    }
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest receive batch accepted (receive slots are 2 KiB each).
pub const MAX_RECV_BATCH: usize = 1024;

/// How the data plane is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneOptions {
    /// The media address (port 0: any free port, see [`DataPlane::local_addr`]).
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per core this process may run on.
    pub workers: usize,
    /// Which I/O backend to use.
    pub io: IoMode,
    /// Pin worker `i` to the `i`th allowed core.
    pub pin_cores: bool,
    /// Datagrams received per batch (1 to [`MAX_RECV_BATCH`]).
    pub recv_batch: usize,
    /// `SO_RCVBUF`/`SO_SNDBUF` per socket (0: the kernel default); capped
    /// by `net.core.rmem_max`/`wmem_max`.
    pub socket_buffer_bytes: usize,
    /// Send runs of equal-sized datagrams to one destination as one UDP
    /// GSO send (`UDP_SEGMENT`) where the kernel offers it (probed per
    /// socket; a device that refuses turns it off for that socket).
    pub gso: bool,
    /// io_uring backend: receive with one multishot `RECVMSG` into a
    /// registered buffer ring (Linux ≥ 6.0; else `recvmmsg` as without).
    pub multishot: bool,
    /// io_uring backend: register each worker's socket with its ring
    /// (`IORING_REGISTER_FILES`) and name it by that index in every
    /// request, sparing the kernel a file lookup and reference per
    /// request (else by descriptor, as without).
    pub fixed_files: bool,
    /// How each worker thread is scheduled ([`priority::WorkerClass`]).
    pub worker_class: priority::WorkerClass,
}

impl DataPlaneOptions {
    /// Defaults for `listen`: a worker per core, auto I/O, pinned, batches
    /// of 32, 4 MiB socket buffers, GSO on.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            workers: 0,
            io: IoMode::Auto,
            pin_cores: true,
            recv_batch: 32,
            socket_buffer_bytes: 4 << 20,
            gso: true,
            multishot: false,
            fixed_files: false,
            worker_class: priority::WorkerClass::default(),
        }
    }
}

/// Why the data plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Binding the media port failed.
    #[error("cannot bind the media port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error from `bind`.
        #[source]
        source: std::io::Error,
    },
    /// Creating or configuring a socket failed.
    #[error("socket setup failed at {what}: {source}")]
    Socket {
        /// The call that failed.
        what: &'static str,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
    /// io_uring was required (`io = "io_uring"`) but cannot be used.
    #[error("io_uring was required but is unavailable: {0}")]
    IoUringUnavailable(#[from] IoUringUnavailable),
    /// `recv_batch` is out of range.
    #[error("recv_batch must be between 1 and {MAX_RECV_BATCH}, not {0}")]
    BadRecvBatch(usize),
    /// A worker thread could not be started.
    #[error("cannot start packet worker {index}: {source}")]
    Spawn {
        /// The worker.
        index: usize,
        /// The error from the thread builder.
        #[source]
        source: std::io::Error,
    },
}

/// The running packet workers.
#[derive(Debug)]
pub struct DataPlane {
    local_addr: SocketAddr,
    /// A clone of the first worker's socket, for the WebRTC handshake
    /// thread to answer from the media address (it only sends on it).
    spare: Option<std::net::UdpSocket>,
    backend: IoBackend,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DataPlane {
    /// Binds the media port and starts the workers; `make_handler` is
    /// called once per worker, with its index and counters, and again on
    /// that worker's thread should its handler panic (the worker restarts
    /// with the fresh handler; see `worker.rs`). Returns once
    /// every worker has its socket (datagrams that arrive before a worker
    /// runs wait in its socket buffer).
    pub fn start<H: PacketHandler>(
        opts: &DataPlaneOptions,
        cell: SnapshotCell,
        metrics: &MetricsHub,
        make_handler: impl Fn(usize, Arc<WorkerCounters>) -> H + Send + Sync + 'static,
    ) -> Result<Self, NetError> {
        if !(1..=MAX_RECV_BATCH).contains(&opts.recv_batch) {
            return Err(NetError::BadRecvBatch(opts.recv_batch));
        }
        let cores = worker::allowed_cores();
        let count = match opts.workers {
            0 => cores.len().max(1),
            n => n,
        };
        let mut rings = choose_backend(opts.io, count, opts.recv_batch)?.into_iter();
        let backend = if rings.len() > 0 {
            IoBackend::IoUring
        } else {
            IoBackend::Mmsg
        };
        let (sockets, local_addr) =
            socket::bind_group(opts.listen, count, opts.socket_buffer_bytes)?;
        let spare = sockets.first().and_then(|s| s.try_clone().ok());
        metrics.set_io_backend(backend.name());
        worker::install_panic_hook();
        let make_handler: Arc<worker::HandlerFactory<H>> = Arc::new(make_handler);
        // One handle per worker; the last worker takes the caller's.
        let cells = std::iter::repeat_n(cell, count);

        // Built before the threads: should a spawn fail, dropping it stops
        // and joins the ones already running.
        let mut plane = Self {
            local_addr,
            spare,
            backend,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(count),
        };
        for ((index, socket), cell) in sockets.into_iter().enumerate().zip(cells) {
            let counters = metrics.add_worker();
            let ctx = worker::WorkerContext {
                index,
                handler: make_handler(index, Arc::clone(&counters)),
                cell,
                counters,
                stop: Arc::clone(&plane.stop),
                make_handler: Arc::clone(&make_handler),
            };
            let ring = rings.next();
            let core = (opts.pin_cores && !cores.is_empty()).then(|| cores[index % cores.len()]);
            let recv_batch = opts.recv_batch;
            let class = opts.worker_class;
            let features = worker::IoFeatures {
                gso: opts.gso,
                multishot: opts.multishot,
                fixed_files: opts.fixed_files,
            };
            let thread = std::thread::Builder::new()
                .name(format!("sluice-net-{index}"))
                .spawn(move || {
                    class.enter();
                    worker::thread_main(socket, ring, recv_batch, features, core, ctx);
                })
                .map_err(|source| NetError::Spawn { index, source })?;
            plane.threads.push(thread);
        }
        tracing::info!(
            address = %local_addr,
            workers = count,
            io = backend.name(),
            worker_class = opts.worker_class.name(),
            "data plane started"
        );
        Ok(plane)
    }

    /// The bound media address (with the real port when `listen` had 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A socket bound to the media address that the workers do not
    /// read: sending on it leaves from the media port (the WebRTC
    /// handshake thread answers browsers with it). `None` after the first
    /// call.
    pub fn take_send_socket(&mut self) -> Option<std::net::UdpSocket> {
        self.spare.take()
    }

    /// The backend the workers run on.
    pub fn io_backend(&self) -> IoBackend {
        self.backend
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Stops every worker and joins it. Each notices within one poll
    /// interval (50 ms), handles at most a few more batches already
    /// received, and exits.
    /// Dropping a data plane does the same.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (index, thread) in self.threads.drain(..).enumerate() {
            if thread.join().is_err() {
                tracing::error!(worker = index, "packet worker panicked");
            }
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One ring per worker for io_uring (an empty list for the fallback),
/// following `mode`.
fn choose_backend(
    mode: IoMode,
    workers: usize,
    recv_batch: usize,
) -> Result<Vec<io_uring::IoUring>, NetError> {
    if mode == IoMode::Mmsg {
        return Ok(Vec::new());
    }
    let rings = probe_io_uring().and_then(|()| {
        (0..workers)
            .map(|_| {
                uring::new_ring(recv_batch)
                    .map_err(|source| probe::classify_setup_error(None, source))
            })
            .collect::<Result<Vec<_>, _>>()
    });
    fall_back_if_allowed(mode, rings)
}

/// What an io_uring failure means under `mode`: start-up fails for
/// `IoUring`; `Auto` falls back with one warning saying why.
fn fall_back_if_allowed<R>(
    mode: IoMode,
    rings: Result<Vec<R>, IoUringUnavailable>,
) -> Result<Vec<R>, NetError> {
    match (rings, mode) {
        (Ok(rings), _) => Ok(rings),
        (Err(reason), IoMode::IoUring) => Err(reason.into()),
        (Err(reason), _) => {
            tracing::warn!(
                "io_uring unavailable ({reason}); the data plane runs on recvmmsg/sendmmsg"
            );
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod gso_tests;
#[cfg(test)]
mod tests;

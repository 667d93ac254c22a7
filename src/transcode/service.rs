//! [`TranscodeService`]: the media threads the transcoder participants run
//! on (`[transcode] threads`), never a packet worker. The registry decides
//! which transcodes run and sends [`TranscodeCommand`]s; a media thread
//! owns its [`TranscoderLeg`]s, waits on their sockets with `poll(2)`
//! until the earliest deadline, and handles what arrived.
//!
//! `threads = 0` (the default): every transcode runs on a thread of its
//! own, started with it and ended with it, as the FFmpeg CLI runs one
//! process per stream. A transcode's decode + scale + encode is a few
//! milliseconds of one core per frame, so one thread serving N of them
//! makes each frame wait for the others' (a key frame's double cost
//! delays every stream on the thread), and the kernel can neither spread
//! them over idle cores nor give them more than one task's share of a
//! core that other work also wants: `sluice-bench transcode` measured a
//! single thread falling seconds behind at 60 % of its core, where as many
//! ffmpeg processes kept up (bench/README.md, issue #11 round 5).
//!
//! `threads = N`: N shared threads; a transcode is pinned to thread
//! `id % N` for its life, so its start and stop go to the same thread in
//! order.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};

use super::counters::TranscodeCounters;
use super::participant::{TranscodeJob, TranscoderLeg};
use crate::crypto::BackendKind;

/// The longest a thread sleeps before it looks at its commands again.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long an idle thread (no transcode) waits for a command.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How often the registry is asked to stop lingering transcodes.
const TICK: Duration = Duration::from_millis(250);
/// Most transcodes one thread waits on in one `poll(2)`.
const MAX_LEGS_PER_POLL: usize = 64;

/// What the registry tells a media thread.
#[derive(Debug)]
pub enum TranscodeCommand {
    /// Start this transcode.
    Start(Box<TranscodeJob>),
    /// Stop transcode `id` (its leg left the registry).
    Stop(u64),
}

/// Where the registry sends its commands: one channel per media thread
/// (or one to the thread that starts a thread per transcode).
#[derive(Debug, Clone)]
pub struct TranscodeSender {
    threads: Vec<Sender<TranscodeCommand>>,
}

impl TranscodeSender {
    /// A sender over the given channels, one per thread (for tests that
    /// stand in for the threads).
    #[must_use]
    pub const fn over(threads: Vec<Sender<TranscodeCommand>>) -> Self {
        Self { threads }
    }

    /// Sends `command` to the thread that owns (or will own) it.
    pub fn send(&self, command: TranscodeCommand) {
        let id = match &command {
            TranscodeCommand::Start(job) => job.id,
            TranscodeCommand::Stop(id) => *id,
        };
        let n = self.threads.len().max(1) as u64;
        let at = usize::try_from(id % n).unwrap_or_default();
        if let Some(thread) = self.threads.get(at) {
            // A thread that is gone has stopped with the daemon.
            let _ = thread.send(command);
        }
    }
}

/// The running media threads.
#[derive(Debug)]
pub struct TranscodeService {
    sender: TranscodeSender,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TranscodeService {
    /// Starts `threads` shared media threads (0: a thread per transcode,
    /// started by a small dispatching thread), and a timer thread calling
    /// `tick` with the time every 250 ms (the registry's linger
    /// decisions).
    pub fn start(
        threads: usize,
        backend: BackendKind,
        counters: &Arc<TranscodeCounters>,
        tick: impl Fn(Instant) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(threads.max(1));
        let mut handles = Vec::with_capacity(threads.max(1) + 1);
        if threads == 0 {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(counters));
            let handle = std::thread::Builder::new()
                .name("sluice-video-start".to_owned())
                .spawn(move || dispatch(&rx, &stop, backend, &counters))?;
            senders.push(tx);
            handles.push(handle);
        }
        for k in 0..threads {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(counters));
            let handle = std::thread::Builder::new()
                .name(format!("sluice-video-{k}"))
                .spawn(move || run(&rx, &stop, backend, &counters, Lifetime::Daemon))?;
            senders.push(tx);
            handles.push(handle);
        }
        let timer_stop = Arc::clone(&stop);
        let timer = std::thread::Builder::new()
            .name("sluice-video-tick".to_owned())
            .spawn(move || {
                while !timer_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    tick(Instant::now());
                }
            })?;
        handles.push(timer);
        if threads == 0 {
            tracing::info!("video transcoding started: a thread per transcode");
        } else {
            tracing::info!(threads, "video transcoding threads started");
        }
        Ok(Self {
            sender: TranscodeSender { threads: senders },
            stop,
            threads: handles,
        })
    }

    /// The registry's end of the commands.
    #[must_use]
    pub fn sender(&self) -> TranscodeSender {
        self.sender.clone()
    }

    /// Stops every transcode and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            join(thread);
        }
    }
}

impl Drop for TranscodeService {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// How long a media thread lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// As long as the daemon: one of `[transcode] threads` shared ones.
    Daemon,
    /// As long as its one transcode: it ends when that stops (or fails to
    /// start).
    Transcode,
}

/// `threads = 0`: starts a media thread for each transcode and hands it
/// the transcode's stop; joins them all when the daemon stops.
fn dispatch(
    inbox: &Receiver<TranscodeCommand>,
    stop: &Arc<AtomicBool>,
    backend: BackendKind,
    counters: &Arc<TranscodeCounters>,
) {
    let mut running: Vec<(u64, Sender<TranscodeCommand>, JoinHandle<()>)> = Vec::new();
    let mut ending: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match inbox.recv_timeout(IDLE_WAIT) {
            Ok(TranscodeCommand::Start(job)) => {
                let id = job.id;
                let (tx, rx) = std::sync::mpsc::channel();
                // Queued before the thread runs: its first command.
                let _ = tx.send(TranscodeCommand::Start(job));
                let (stop, counters) = (Arc::clone(stop), Arc::clone(counters));
                let spawned = std::thread::Builder::new()
                    .name(format!("sluice-video-{id}"))
                    .spawn(move || run(&rx, &stop, backend, &counters, Lifetime::Transcode));
                match spawned {
                    Ok(handle) => running.push((id, tx, handle)),
                    Err(e) => {
                        tracing::warn!(transcode = id, "transcode not started: no thread: {e}");
                    }
                }
            }
            Ok(TranscodeCommand::Stop(id)) => {
                if let Some(at) = running.iter().position(|(i, _, _)| *i == id) {
                    let (_, tx, handle) = running.swap_remove(at);
                    let _ = tx.send(TranscodeCommand::Stop(id));
                    ending.push(handle);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Threads whose transcode stopped, or never started (it ended on
        // its own), are joined as they finish.
        while let Some(at) = running.iter().position(|(_, _, h)| h.is_finished()) {
            ending.push(running.swap_remove(at).2);
        }
        let (done, left): (Vec<_>, Vec<_>) = ending.drain(..).partition(JoinHandle::is_finished);
        ending = left;
        for handle in done {
            join(handle);
        }
    }
    // Dropping the senders ends each thread's loop (a disconnected inbox
    // closes its leg), as does the stop flag.
    for (_, tx, handle) in running {
        drop(tx);
        join(handle);
    }
    for handle in ending {
        join(handle);
    }
}

fn join(handle: JoinHandle<()>) {
    if handle.join().is_err() {
        tracing::error!("a video transcoding thread panicked");
    }
}

fn run(
    inbox: &Receiver<TranscodeCommand>,
    stop: &AtomicBool,
    backend: BackendKind,
    counters: &TranscodeCounters,
    lifetime: Lifetime,
) {
    let mut legs: Vec<TranscoderLeg> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Commands first: a stop frees its encoder before the next start.
        loop {
            let command = if legs.is_empty() {
                match inbox.recv_timeout(IDLE_WAIT) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return close(legs, counters),
                }
            } else {
                match inbox.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return close(legs, counters),
                }
            };
            match command {
                TranscodeCommand::Start(job) => match TranscoderLeg::open(&job, backend) {
                    Ok(mut leg) => {
                        counters.started(leg.encoder());
                        leg.start(Instant::now(), counters);
                        legs.push(leg);
                    }
                    Err(e) => tracing::warn!(transcode = job.id, "transcode not started: {e}"),
                },
                TranscodeCommand::Stop(id) => {
                    if let Some(at) = legs.iter().position(|l| l.id() == id) {
                        counters.stopped(legs.swap_remove(at).encoder());
                    }
                }
            }
        }
        if legs.is_empty() {
            if lifetime == Lifetime::Transcode {
                return;
            }
            continue;
        }
        for leg in &mut legs {
            leg.drain_socket(Instant::now, counters);
            let now = Instant::now();
            if leg.poll_timeout().is_some_and(|at| now >= at) {
                leg.handle_timeout(now, counters);
            }
        }
        wait(&legs, Instant::now());
    }
    close(legs, counters);
}

/// Sleeps until a leg's socket is readable, its deadline, or [`MAX_WAIT`].
fn wait(legs: &[TranscoderLeg], now: Instant) {
    let due = legs
        .iter()
        .filter_map(TranscoderLeg::poll_timeout)
        .min()
        .map_or(MAX_WAIT, |at| at.saturating_duration_since(now))
        .min(MAX_WAIT);
    if due.is_zero() {
        return;
    }
    let mut fds: Vec<PollFd<'_>> = legs
        .iter()
        .take(MAX_LEGS_PER_POLL)
        .map(|l| PollFd::new(l.socket().as_fd(), PollFlags::POLLIN))
        .collect();
    // Rounded up, so a deadline a fraction of a millisecond away is not
    // busy-waited for.
    let ms = u16::try_from(due.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
    // An interrupted or failed poll only ends the wait early.
    let _ = poll(&mut fds, ms);
}

fn close(legs: Vec<TranscoderLeg>, counters: &TranscodeCounters) {
    for leg in legs {
        counters.stopped(leg.encoder());
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn job(id: u64, relay: &UdpSocket) -> Box<TranscodeJob> {
        Box::new(crate::transcode::participant::tests::vp8_job(id, relay))
    }

    /// The names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect()
    }

    /// Waits (5 s at most) until `check` holds.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let by = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < by, "{what}: {:?}", thread_names());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn by_default_each_transcode_runs_on_a_thread_of_its_own() {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let counters = Arc::new(TranscodeCounters::default());
        let service = TranscodeService::start(0, BackendKind::Ring, &counters, |_| {}).unwrap();
        let sender = service.sender();
        // Thread names hold 15 bytes: "sluice-video-" and two digits.
        let (a, b) = (41, 42);
        let named = |id: u64| {
            let name = format!("sluice-video-{id}");
            move || thread_names().contains(&name)
        };
        sender.send(TranscodeCommand::Start(job(a, &relay)));
        sender.send(TranscodeCommand::Start(job(b, &relay)));
        eventually("a thread per transcode", || named(a)() && named(b)());
        sender.send(TranscodeCommand::Stop(a));
        eventually("the stopped one's thread ends", || !named(a)());
        assert!(named(b)(), "the other runs on");
        service.shutdown();
        assert!(!named(b)(), "shutdown joins it");
    }

    #[test]
    fn shared_threads_serve_transcodes_by_id() {
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let counters = Arc::new(TranscodeCounters::default());
        let service = TranscodeService::start(2, BackendKind::Ring, &counters, |_| {}).unwrap();
        let sender = service.sender();
        sender.send(TranscodeCommand::Start(job(43, &relay)));
        // No thread of its own: the two shared ones.
        std::thread::sleep(Duration::from_millis(100));
        let names = thread_names();
        assert!(!names.iter().any(|n| n == "sluice-video-43"), "{names:?}");
        assert!(names.iter().any(|n| n == "sluice-video-1"), "{names:?}");
        service.shutdown();
    }
}

//! [`TranscodeService`]: the media threads the transcoder participants run
//! on (`[transcode] threads`), never a packet worker. The registry decides
//! which transcodes run and sends each thread [`TranscodeCommand`]s; a
//! thread owns its [`TranscoderLeg`]s, waits on their sockets with
//! `poll(2)` until the earliest deadline, and handles what arrived.
//!
//! A transcode is pinned to thread `id % threads` for its life, so its
//! start and stop go to the same thread in order.

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

/// Where the registry sends its commands: one channel per media thread.
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
    /// Starts `threads` media threads (0: one per core), and a timer
    /// thread calling `tick` with the time every 250 ms (the registry's
    /// linger decisions).
    pub fn start(
        threads: usize,
        backend: BackendKind,
        counters: &Arc<TranscodeCounters>,
        tick: impl Fn(Instant) + Send + 'static,
    ) -> std::io::Result<Self> {
        let n = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for k in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(counters));
            let handle = std::thread::Builder::new()
                .name(format!("sluice-video-{k}"))
                .spawn(move || run(&rx, &stop, backend, &counters))?;
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
        tracing::info!(threads = n, "video transcoding threads started");
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
            if thread.join().is_err() {
                tracing::error!("a video transcoding thread panicked");
            }
        }
    }
}

impl Drop for TranscodeService {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(
    inbox: &Receiver<TranscodeCommand>,
    stop: &AtomicBool,
    backend: BackendKind,
    counters: &TranscodeCounters,
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
            continue;
        }
        let now = Instant::now();
        for leg in &mut legs {
            leg.drain_socket(now, counters);
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

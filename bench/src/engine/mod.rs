//! The load engine: real SRTP endpoints on real UDP sockets. It admits
//! the scenario's meetings through the target, latches every participant
//! (an SRTCP receiver report each, resent until the relay has them all),
//! then runs a few sender threads that pace every stream on one monotonic
//! clock and a few receiver threads that count every packet from its
//! clear RTP header and decrypt and check a sample (or every one). The
//! same clock stamps sends and arrivals, so one-way latency is exact.
//! Sends and receives go in batches (`sendmmsg` with UDP GSO, `recvmmsg`
//! with UDP GRO, `batch`).
//!
//! Threads own their endpoints outright; they share only the clock's epoch
//! and two progress counters.

mod batch;
pub mod e2ee;
mod receiver;
pub mod schedule;
mod sender;
mod setup;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{Measurement, Tally};
use crate::procstat::Sampler;
use crate::scenario::Scenario;
use crate::target::{Target, TargetError};
use schedule::StreamSchedule;
use setup::{admit_all, latch_all, setup};

/// One monotonic clock for every thread of a run: nanoseconds since its
/// epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters the progress bar reads while the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Packets generated.
    pub sent: AtomicU64,
    /// Packets received and checked.
    pub received: AtomicU64,
}

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A socket or thread could not be set up.
    #[error("load generator: {0}")]
    Setup(String),
    /// The relay did not latch every participant in time.
    #[error("{target} latched only {latched} of {wanted} participants within {seconds} s")]
    Latching {
        /// The target.
        target: &'static str,
        /// Latched.
        latched: usize,
        /// Participants.
        wanted: usize,
        /// How long it was given.
        seconds: u64,
    },
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Sender threads.
    pub sender_threads: usize,
    /// Receiver threads.
    pub receiver_threads: usize,
    /// Cores generator threads are pinned to (empty: not pinned).
    pub generator_cores: Vec<usize>,
    /// How long receivers keep draining after the last send.
    pub drain: Duration,
    /// Authenticate and decrypt 1 delivery in this many (1: every one);
    /// the rest are counted from their clear RTP header only.
    pub verify_every: u32,
    /// Send a video frame's packets to each destination as one UDP GSO
    /// message (where the kernel takes it).
    pub gso: bool,
    /// Let the receivers' sockets take GRO trains whole (`UDP_GRO`).
    pub gro: bool,
}

/// Deliveries verified by default: 1 in this many.
pub const DEFAULT_VERIFY_EVERY: u32 = 16;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            sender_threads: 1,
            receiver_threads: 2,
            generator_cores: Vec::new(),
            drain: Duration::from_millis(500),
            verify_every: DEFAULT_VERIFY_EVERY,
            gso: true,
            gro: true,
        }
    }
}

/// Runs `scenario` against `target` and measures it. `progress` is
/// called about five times a second with (elapsed, total) seconds.
pub fn run(
    target: &mut dyn Target,
    scenario: &Scenario,
    options: &EngineOptions,
    progress: &mut dyn FnMut(f64, f64, &Progress),
) -> Result<Measurement, EngineError> {
    let (participants, stream_owner) = admit_all(target, scenario, options.gro)?;
    latch_all(target, &participants)?;
    let clock = Clock::new();
    let counters = Arc::new(Progress::default());
    let base = clock.now_ns() + 50_000_000;
    let ramp_ns = (scenario.ramp_seconds * 1e9) as u64;
    let steady = (
        base + ramp_ns,
        base + ramp_ns + (scenario.seconds * 1e9) as u64,
    );
    let total_streams = stream_owner.len();

    // Publishers, round-robin over sender threads; every participant's
    // socket, round-robin over receiver threads.
    let senders_n = options.sender_threads.max(1);
    let receivers_n = options.receiver_threads.max(1);
    let mut send_sets: Vec<Vec<sender::Publisher>> = (0..senders_n).map(|_| Vec::new()).collect();
    let mut receive_sets: Vec<Vec<receiver::Subscriber>> =
        (0..receivers_n).map(|_| Vec::new()).collect();
    let mut meeting_of = Vec::with_capacity(participants.len());
    let mut publishers_seen = 0;
    for (i, p) in participants.into_iter().enumerate() {
        meeting_of.push(p.meeting);
        receive_sets[i % receivers_n].push(receiver::Subscriber {
            participant: i,
            socket: Arc::clone(&p.socket),
            paths: p.plan.receives.clone(),
            e2ee: p.e2ee,
            behind_hop: p.plan.behind_hop,
        });
        if p.streams.is_empty() {
            continue;
        }
        let mut groups: Vec<(Option<sluice::srtp::MasterKey>, Vec<SocketAddr>)> = Vec::new();
        for path in p.plan.sends {
            let same = groups.iter_mut().find(|(key, _)| {
                key.as_ref().map(|k| k.as_bytes()) == path.key.as_ref().map(|k| k.as_bytes())
            });
            match same {
                Some((_, dests)) => dests.push(path.relay),
                None => groups.push((path.key, vec![path.relay])),
            }
        }
        let streams = p
            .streams
            .into_iter()
            .map(|(id, spec)| {
                let schedule =
                    StreamSchedule::new(scenario, spec.kind, id as usize, total_streams, base);
                (id, spec, schedule)
            })
            .collect();
        send_sets[publishers_seen % senders_n].push(sender::Publisher {
            socket: p.socket,
            groups,
            e2ee: p.e2ee,
            streams,
        });
        publishers_seen += 1;
    }

    let checking = receiver::Checking {
        streams: Arc::new(
            stream_owner
                .iter()
                .enumerate()
                .map(|(id, p)| (p.spec.ssrc, id as u32))
                .collect(),
        ),
        verify_every: options.verify_every.max(1),
        gro: options.gro,
    };
    let relay_sampler = target.pid().map(|pid| Sampler::start(pid.to_string()));
    let self_sampler = Sampler::start("self".into());
    let stop = Arc::new(AtomicBool::new(false));
    let cores = options.generator_cores.clone();
    let receivers: Vec<_> = receive_sets
        .into_iter()
        .map(|set| {
            let (stop, counters, cores) = (Arc::clone(&stop), Arc::clone(&counters), cores.clone());
            let checking = checking.clone();
            std::thread::Builder::new()
                .name("bench-rx".into())
                .spawn(move || {
                    crate::pin::pin_current_thread(&cores)?;
                    receiver::run(set, clock, steady, &stop, &counters, &checking)
                })
                .map_err(setup("spawn receiver"))
        })
        .collect::<Result<_, _>>()?;
    let senders: Vec<_> = send_sets
        .into_iter()
        .map(|set| {
            let (counters, cores, gso) = (Arc::clone(&counters), cores.clone(), options.gso);
            std::thread::Builder::new()
                .name("bench-tx".into())
                .spawn(move || {
                    let _ = crate::pin::pin_current_thread(&cores);
                    sender::run(set, clock, &counters, gso)
                })
                .map_err(setup("spawn sender"))
        })
        .collect::<Result<_, _>>()?;
    let total = scenario.ramp_seconds + scenario.seconds;
    while senders
        .iter()
        .any(|s: &std::thread::JoinHandle<_>| !s.is_finished())
    {
        let elapsed = (clock.now_ns().saturating_sub(base)) as f64 / 1e9;
        progress(elapsed.min(total), total, &counters);
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent: Vec<_> = senders
        .into_iter()
        .map(|s| {
            s.join()
                .map_err(|_| EngineError::Setup("a sender thread panicked".into()))
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(options.drain);
    stop.store(true, Ordering::Relaxed);
    let received: Vec<_> = receivers
        .into_iter()
        .map(|r| {
            r.join()
                .map_err(|_| EngineError::Setup("a receiver thread panicked".into()))?
                .map_err(EngineError::Setup)
        })
        .collect::<Result<_, _>>()?;
    progress(total, total, &counters);
    let relay = relay_sampler.map(Sampler::finish);
    let generator = self_sampler.finish();

    let mut tally = Tally::new(scenario, target.name(), target.describe());
    let mut sent_by_stream = vec![0u64; total_streams];
    for s in &sent {
        for &(id, n) in &s.sent {
            sent_by_stream[id as usize] = n;
        }
        tally.send_failures += s.send_failures + s.protect_failures;
        tally.late_sends += s.late;
        tally.send_calls += s.send_calls;
        tally.gso &= s.gso;
        tally.worst_late_ns = tally.worst_late_ns.max(s.worst_late_ns);
    }
    // Which participants should have received each stream: everyone else
    // in its publisher's meeting.
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, m) in meeting_of.iter().enumerate() {
        members.entry(*m).or_default().push(i);
    }
    let mut receptions: HashMap<usize, receiver::Reception> = HashMap::new();
    for r in received {
        tally.latency.merge(&r.latency);
        tally.latency.merge(&r.hop_latency);
        tally.hop_latency.merge(&r.hop_latency);
        tally.local_latency.merge(&r.latency);
        tally.steady_packets += r.steady_packets;
        tally.steady_bytes += r.steady_bytes;
        for reception in r.receptions {
            receptions.insert(reception.participant, reception);
        }
    }
    for reception in receptions.values() {
        tally.decrypt_failures += reception.decrypt_failures;
        tally.verified += reception.verified;
        tally.duplicated += reception.replayed;
        tally.foreign += reception.foreign;
    }
    let empty = crate::stats::StreamReception::default();
    for (id, published) in stream_owner.iter().enumerate() {
        let (owner, spec) = (published.publisher as usize, published.spec);
        let sent = sent_by_stream[id];
        let mut row = tally.stream_row(id as u32, sent);
        row.ssrc = spec.ssrc;
        row.kind = match spec.kind {
            crate::target::StreamKind::Audio => "audio",
            crate::target::StreamKind::Video => "video",
        };
        row.meeting = meeting_of[owner] as u64;
        // `members` was built from `meeting_of`, so every meeting is a key.
        for &member in &members[&meeting_of[owner]] {
            if member == owner {
                continue;
            }
            let got = receptions
                .get(&member)
                .and_then(|r| r.streams.get(&(id as u32)))
                .unwrap_or(&empty);
            row.add_receiver(got, sent);
        }
        tally.add_stream(row);
    }
    Ok(tally.finish(relay, generator))
}

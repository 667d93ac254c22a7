//! The load engine: real SRTP endpoints on real UDP sockets. It admits
//! the scenario's meetings through the target, latches every participant
//! (an SRTCP receiver report each, resent until the relay has them all),
//! then runs a few sender threads that pace every stream on one monotonic
//! clock and a few receiver threads that decrypt and check every packet.
//! The same clock stamps sends and arrivals, so one-way latency is exact.
//!
//! Threads own their endpoints outright; they share only the clock's epoch
//! and two progress counters.

pub mod e2ee;
mod receiver;
pub mod schedule;
mod sender;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use sluice::crypto::AnyGcm;
use sluice::rtp::Ssrc;
use sluice::rtp::rtcp::ReceiverReportBuilder;
use sluice::srtp::SrtpSession;
use socket2::{Domain, Protocol, Socket, Type};

use crate::measure::{Measurement, Tally};
use crate::procstat::Sampler;
use crate::scenario::Scenario;
use crate::target::{LegPlan, Target, TargetError};
use schedule::StreamSchedule;

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            sender_threads: 1,
            receiver_threads: 2,
            generator_cores: Vec::new(),
            drain: Duration::from_millis(500),
        }
    }
}

/// One participant of the run, before its threads take it over.
#[derive(Debug)]
struct Participant {
    meeting: usize,
    socket: Arc<UdpSocket>,
    plan: LegPlan,
    e2ee: Option<[u8; 16]>,
    /// (run-wide stream id, spec)
    streams: Vec<(u32, crate::target::StreamSpec)>,
}

fn setup(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Setup(format!("{what}: {e}"))
}

/// A non-blocking loopback UDP socket with large buffers, so bursts of
/// video frames are not dropped by the generator's own kernel queues.
fn endpoint_socket() -> Result<UdpSocket, EngineError> {
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(setup("socket"))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(1 << 20);
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .map_err(setup("bind 127.0.0.1:0"))?;
    socket
        .set_nonblocking(true)
        .map_err(setup("non-blocking"))?;
    Ok(socket.into())
}

/// Admits every meeting of `scenario` through `target`.
fn admit_all(
    target: &mut dyn Target,
    scenario: &Scenario,
) -> Result<(Vec<Participant>, Vec<u32>), EngineError> {
    let random = SystemRandom::new();
    let mut participants = Vec::new();
    let mut stream_ids = Vec::new();
    for meeting in scenario.meetings() {
        let sockets = (0..meeting.participants())
            .map(|_| endpoint_socket().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(setup("local address"))?;
        let plans = target.admit(&meeting, &addrs)?;
        if plans.len() != addrs.len() {
            return Err(EngineError::Setup(format!(
                "{} returned {} plans for {} participants",
                target.name(),
                plans.len(),
                addrs.len()
            )));
        }
        let e2ee = if meeting.e2ee {
            let mut key = [0u8; 16];
            random
                .fill(&mut key)
                .map_err(|_| EngineError::Setup("the system random source failed".into()))?;
            Some(key)
        } else {
            None
        };
        for (i, (socket, plan)) in sockets.into_iter().zip(plans).enumerate() {
            let streams = meeting
                .publishers
                .get(i)
                .into_iter()
                .flatten()
                .map(|spec| {
                    let id = stream_ids.len() as u32;
                    stream_ids.push(participants.len() as u32);
                    (id, *spec)
                })
                .collect();
            participants.push(Participant {
                meeting: meeting.index,
                socket,
                plan,
                e2ee,
                streams,
            });
        }
    }
    Ok((participants, stream_ids))
}

/// Sends each participant's SRTCP receiver report until the target says
/// all are latched (targets without latching return at once).
fn latch_all(target: &mut dyn Target, participants: &[Participant]) -> Result<(), EngineError> {
    let wanted = participants.len();
    if target.latched().is_none() {
        return Ok(());
    }
    let mut sessions = Vec::new();
    for p in participants {
        let mut mine = Vec::new();
        for path in &p.plan.sends {
            if let Some(key) = &path.key {
                let session = SrtpSession::new(AnyGcm::default(), key)
                    .map_err(|e| EngineError::Setup(format!("latching key: {e}")))?;
                mine.push((session, path.relay));
            }
        }
        sessions.push(mine);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 128];
    loop {
        for (i, (p, mine)) in participants.iter().zip(&mut sessions).enumerate() {
            // A publisher reports under its first stream's SSRC, which the
            // relay knows; a subscriber under an SSRC of its own.
            let ssrc = p
                .streams
                .first()
                .map_or(0x5200_0000 + i as u32, |(_, s)| s.ssrc);
            for (session, relay) in mine.iter_mut() {
                let report = ReceiverReportBuilder {
                    ssrc: Ssrc(ssrc),
                    report_blocks: &[],
                };
                let Ok(len) = report.write(&mut buf) else {
                    continue;
                };
                if let Ok(n) = session.protect_rtcp(&mut buf, len) {
                    let _ = p.socket.send_to(&buf[..n], *relay);
                }
            }
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            let latched = target.latched().unwrap_or(wanted);
            if latched >= wanted {
                // Drain what the reports caused (forwarded RTCP).
                std::thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EngineError::Latching {
                    target: target.name(),
                    latched,
                    wanted,
                    seconds: 20,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
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
    let (participants, stream_owner) = admit_all(target, scenario)?;
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

    let relay_sampler = target.pid().map(|pid| Sampler::start(pid.to_string()));
    let self_sampler = Sampler::start("self".into());
    let stop = Arc::new(AtomicBool::new(false));
    let cores = options.generator_cores.clone();
    let receivers: Vec<_> = receive_sets
        .into_iter()
        .map(|set| {
            let (stop, counters, cores) = (Arc::clone(&stop), Arc::clone(&counters), cores.clone());
            std::thread::Builder::new()
                .name("bench-rx".into())
                .spawn(move || {
                    crate::pin::pin_current_thread(&cores)?;
                    receiver::run(set, clock, steady, &stop, &counters)
                })
                .map_err(setup("spawn receiver"))
        })
        .collect::<Result<_, _>>()?;
    let senders: Vec<_> = send_sets
        .into_iter()
        .map(|set| {
            let (counters, cores) = (Arc::clone(&counters), cores.clone());
            std::thread::Builder::new()
                .name("bench-tx".into())
                .spawn(move || {
                    let _ = crate::pin::pin_current_thread(&cores);
                    sender::run(set, clock, &counters)
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
        tally.steady_packets += r.steady_packets;
        tally.steady_bytes += r.steady_bytes;
        for reception in r.receptions {
            receptions.insert(reception.participant, reception);
        }
    }
    for reception in receptions.values() {
        tally.decrypt_failures += reception.decrypt_failures;
        tally.duplicated += reception.replayed;
        tally.foreign += reception.foreign;
    }
    let empty = crate::stats::StreamReception::default();
    for (id, &owner) in stream_owner.iter().enumerate() {
        let owner = owner as usize;
        let sent = sent_by_stream[id];
        let mut row = tally.stream_row(id as u32, sent);
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

//! Established streams timed through the relay while something else loads
//! it (the join storm of #12, the handshake burst of #9), and the parts of
//! those benchmarks that stand for other machines.
//!
//! - [`flow`] sends one packet per stream every tick and times each from
//!   just before its `sendto` to the kernel's receive timestamp on the
//!   receiver's socket (`SO_TIMESTAMPNS`, both on `CLOCK_REALTIME`): the
//!   figure holds the relay's wake-up, its turn and the loopback delivery,
//!   not how late the timing thread itself was scheduled to read it.
//! - [`as_remote_machine`] puts a load generator's thread in `SCHED_IDLE`:
//!   the admission clients and the DTLS client stand for browsers and
//!   apps on other machines, so on this box they get only the CPU the
//!   relay and the timing thread leave idle, instead of taking a core
//!   from them at equal weight.
//! - [`pin`] confines the calling thread to some cores (the #9 setup:
//!   "handshakes on one core, the client side on the other").
//! - [`Reading`] / [`between`]: what the relay itself measured between two
//!   moments (its turn-time histogram, its workers' busy seconds) and the
//!   CPU each kind of thread of this process used (`/proc/self/task`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{Endpoint, http, is_rtcp, metric};

/// A stream that flows before, during and after the load: its publisher,
/// one receiver, the publisher's SSRC.
pub struct TimedStream {
    pub publisher: Endpoint,
    pub receiver: Endpoint,
    pub ssrc: u32,
}

/// One packet's trip: when it left (monotonic, to sort it into a phase)
/// and how long it took to reach the receiver's socket.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub sent: Instant,
    pub latency: Duration,
}

/// Sends one packet per stream every `tick` until `stop`, timing each
/// (see the module doc). A packet the receiver did not get within 200 ms
/// is counted as lost and not sampled.
pub fn flow(mut streams: Vec<TimedStream>, tick: Duration, stop: &AtomicBool) -> Vec<Sample> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    for s in &streams {
        s.receiver
            .socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        setsockopt(&s.receiver.socket, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let mut seq: u16 = 1;
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        let tick_started = Instant::now();
        for s in &mut streams {
            out.clear();
            out.extend_from_slice(&super::rtp(s.ssrc, seq, &[0u8; 160]));
            let len = out.len();
            out.resize(len + 64, 0);
            let n = s
                .publisher
                .send
                .protect_rtp(&mut out, len)
                .expect("protect");
            // Both clocks read right before the datagram leaves.
            let sent = Instant::now();
            let sent_wall = SystemTime::now();
            s.publisher
                .socket
                .send_to(&out[..n], s.publisher.relay)
                .expect("send");
            loop {
                let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<()>(
                    s.receiver.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                ) else {
                    break; // the 200 ms timeout: lost
                };
                let arrived = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmTimestampns(ts) => Some(
                            SystemTime::UNIX_EPOCH
                                + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
                        ),
                        _ => None,
                    })
                });
                let got = msg.bytes;
                let d = &buf[..got];
                if is_rtcp(d) || got < 4 || u16::from_be_bytes([d[2], d[3]]) != seq {
                    continue; // an RTCP packet, or a late one from a lost tick
                }
                let arrived = arrived.expect("the kernel's receive timestamp");
                samples.push(Sample {
                    sent,
                    latency: arrived.duration_since(sent_wall).unwrap_or_default(),
                });
                break;
            }
        }
        seq = seq.wrapping_add(1);
        if let Some(rest) = tick.checked_sub(tick_started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    samples
}

/// The latencies of the samples sent inside any of `phases`.
pub fn within(samples: &[Sample], phases: &[(Instant, Instant)]) -> Vec<Duration> {
    samples
        .iter()
        .filter(|s| phases.iter().any(|(a, b)| s.sent >= *a && s.sent <= *b))
        .map(|s| s.latency)
        .collect()
}

/// The 50th and 99th percentiles (at least 100 samples).
pub fn p50_p99(mut latencies: Vec<Duration>) -> (Duration, Duration) {
    assert!(
        latencies.len() >= 100,
        "too few samples: {}",
        latencies.len()
    );
    latencies.sort_unstable();
    (
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    )
}

/// Puts the calling thread (and the threads it spawns later) in
/// `SCHED_IDLE`, see the module doc.
pub fn as_remote_machine() {
    sluice::net::priority::Background::Idle
        .apply()
        .expect("SCHED_IDLE needs no privilege");
}

/// Confines the calling thread to `cores`.
pub fn pin(cores: &[usize]) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &c in cores {
        set.set(c).expect("a core");
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin");
}

/// Confines every thread of this process whose name passes `which` to
/// `cores` (threads they spawn later inherit it).
pub fn pin_threads(which: impl Fn(&str) -> bool, cores: &[usize]) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &c in cores {
        set.set(c).expect("a core");
    }
    for (tid, comm, _) in threads() {
        if which(&comm) {
            sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).expect("pin a thread");
        }
    }
}

/// (tid, name, CPU ticks used) of every thread of this process.
pub fn threads() -> Vec<(i32, String, u64)> {
    thread_stats()
        .into_iter()
        .map(|t| (t.tid, t.name, t.cpu_ticks))
        .collect()
}

/// One thread of this process, as `/proc/self/task/<tid>/stat` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStat {
    pub tid: i32,
    pub name: String,
    /// utime + stime (fields 14 and 15), in clock ticks.
    pub cpu_ticks: u64,
    /// The nice value (field 19).
    pub nice: i64,
    /// The real-time priority (field 40): 0 outside the real-time policies.
    pub rt_priority: i64,
    /// The scheduling policy (field 41): `SCHED_OTHER` 0, `SCHED_FIFO` 1,
    /// `SCHED_RR` 2, `SCHED_BATCH` 3, `SCHED_IDLE` 5.
    pub policy: i64,
}

/// Field `n` (1-based, as proc(5) numbers them) of a thread's `stat`,
/// from `rest`, the fields after the name's `)` (field 3 onwards).
fn stat_field<T: std::str::FromStr>(rest: &[&str], n: usize, stat: &str) -> T {
    rest.get(n - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("field {n} of {stat}"))
}

/// Every thread of this process that is still there when its `stat` is
/// read.
pub fn thread_stats() -> Vec<ThreadStat> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // "tid (comm) state ppid ...": the fields after the name's ')'
        // start at field 3.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |n| stat_field::<u64>(&rest, n, &stat);
        let number = |n| stat_field::<i64>(&rest, n, &stat);
        out.push(ThreadStat {
            tid,
            name: stat[open + 1..close].to_owned(),
            cpu_ticks: ticks(14) + ticks(15),
            nice: number(19),
            rt_priority: number(40),
            policy: number(41),
        });
    }
    out
}

/// What the relay and this process did up to one moment.
pub struct Reading {
    at: Instant,
    /// The in-relay latency histogram's cumulative bucket counts (by
    /// upper bound in seconds, `+Inf` last).
    buckets: Vec<(String, f64)>,
    /// Busy seconds per packet worker.
    busy: Vec<f64>,
    /// CPU ticks per thread name.
    cpu: std::collections::BTreeMap<String, u64>,
}

impl Reading {
    /// When it was taken.
    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn now(api: SocketAddr) -> Self {
        let text = http(api, "GET", "/metrics", None, None).text;
        let buckets = text
            .lines()
            .filter_map(|l| l.strip_prefix("sluice_relay_latency_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, count) = l.split_once("\"} ")?;
                Some((le.to_owned(), count.trim().parse().ok()?))
            })
            .collect();
        let busy = (0..)
            .map(|w| format!("sluice_worker_busy_seconds_total{{worker=\"{w}\"}}"))
            .map_while(|series| text.contains(&series).then(|| metric(&text, &series)))
            .collect();
        let mut cpu = std::collections::BTreeMap::new();
        let mut live = 0;
        for (_, comm, ticks) in threads() {
            *cpu.entry(comm).or_default() += ticks;
            live += ticks;
        }
        // The process's total holds the threads that ended (the admission
        // clients): what the live threads do not account for.
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let rest: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
            .split(' ')
            .collect();
        let total: u64 =
            rest[11].parse::<u64>().unwrap_or(0) + rest[12].parse::<u64>().unwrap_or(0);
        cpu.insert("(ended threads)".to_owned(), total.saturating_sub(live));
        Self {
            at: Instant::now(),
            buckets,
            busy,
            cpu,
        }
    }
}

/// Over the spans between pairs of readings (summed): the in-relay turn
/// time's p99 (as the bucket bound it falls in), the turns, each worker's
/// busy share, and the share of a core each kind of thread used.
pub fn between(spans: &[(&Reading, &Reading)]) -> String {
    let delta = |i: usize| -> f64 {
        spans
            .iter()
            .map(|(a, b)| {
                b.buckets.get(i).map_or(0.0, |x| x.1) - a.buckets.get(i).map_or(0.0, |x| x.1)
            })
            .sum()
    };
    let Some((first, _)) = spans.first() else {
        return "no span".to_owned();
    };
    let total = delta(first.buckets.len().saturating_sub(1));
    let p99 = (0..first.buckets.len())
        .find(|&i| delta(i) >= 0.99 * total)
        .map_or("?".to_owned(), |i| first.buckets[i].0.clone());
    let wall: f64 = spans.iter().map(|(a, b)| (b.at - a.at).as_secs_f64()).sum();
    let busy: Vec<String> = (0..first.busy.len())
        .map(|w| {
            let d: f64 = spans.iter().map(|(a, b)| b.busy[w] - a.busy[w]).sum();
            format!("{:.3}", d / wall)
        })
        .collect();
    let tick = 100.0; // USER_HZ
    let mut cpu = std::collections::BTreeMap::<&str, u64>::new();
    for (a, b) in spans {
        for (comm, t) in &b.cpu {
            *cpu.entry(comm).or_default() += t - a.cpu.get(comm).copied().unwrap_or(0).min(*t);
        }
    }
    let cpu: Vec<String> = cpu
        .iter()
        .filter(|(_, d)| **d > 0)
        .map(|(comm, d)| format!("{comm} {:.2}", *d as f64 / tick / wall))
        .collect();
    format!(
        "relay turn p99 <= {p99} s over {total} turns, worker busy {busy:?}, \
         cores used by thread [{}]",
        cpu.join(", ")
    )
}

//! A join storm on 127.0.0.1 (#12 item 2): while existing streams flow,
//! thousands of participants are admitted over the API into 100 meetings,
//! each starting to send SRTCP receiver reports (under its `rtcp_ssrc`)
//! as soon as it is admitted, and resending once a second as RTCP senders
//! do. Every join costs the control plane and the workers O(what changed),
//! so all of them are admitted and latched within 10 s, and the existing
//! streams' latency hardly moves: their p99 during the storm is compared
//! with a quiet run just before it, on the same streams.
//!
//! Where the latency goes is printed beside the ratio, to tell the relay
//! from the box: the relay's own turn time (its in-relay latency
//! histogram, receive to send of each batch, which holds any snapshot
//! work a batch did) quiet and during the storm, each packet worker's busy
//! share, and the CPU each kind of thread of this process used
//! (`/proc/self/task`). With `SLUICE_STORM_PIN=1` the relay runs one
//! packet worker pinned to core 0 and everything else of the process (the
//! API, the admission clients, the timing thread) on core 1.
//!
//! The count is `SLUICE_STORM`: 2,500 by default, what a debug build on a
//! loaded 2-core CI machine admits well within the bound; the issue's
//! 10,000 is the full form, run on a release build
//! (`SLUICE_STORM=10000 cargo test --release --test join_storm`, figures
//! in `bench/README.md`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, is_rtcp, metric};

const MEETINGS: usize = 100;
/// The issue's bound: everyone admitted and latched within 10 s.
const WITHIN: Duration = Duration::from_secs(10);
/// Admission clients working at once (`SLUICE_STORM_CLIENTS`, default 4).
fn clients() -> usize {
    std::env::var("SLUICE_STORM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}
/// Streams that flow before, during and after the storm, each in a
/// meeting of its own (publisher and one receiver).
const EXISTING: usize = 4;
/// One packet per existing stream this often.
const TICK: Duration = Duration::from_millis(5);
/// The quiet run the storm is compared with.
const QUIET: Duration = Duration::from_secs(2);

fn storm_size() -> usize {
    std::env::var("SLUICE_STORM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_500)
}

/// Whether to pin (`SLUICE_STORM_PIN=1`), see the module doc.
fn pinned() -> bool {
    std::env::var("SLUICE_STORM_PIN").is_ok_and(|v| v == "1")
}

fn start(participants: usize) -> Daemon {
    let media = if pinned() {
        "workers = 1\npin_cores = true"
    } else {
        "workers = 2\npin_cores = false"
    };
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\n{media}\n\
         \n[policy]\nmax_participants_per_meeting = {per}\n\
         max_participants_per_node = {node}\nmax_meetings = 1000\nmax_worker_busy = 1.0\n\n\
         [sip]\nenabled = false\n",
        per = participants / MEETINGS + 10,
        node = participants + 100,
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{path}: {}", r.text);
    r.json()
}

fn meeting(api: SocketAddr) -> String {
    let body = json!({"mode": "e2ee", "owner": {"account": "alice", "verified": true}});
    post(api, "/v1/meetings", &body)["id"]
        .as_str()
        .expect("meeting id")
        .to_owned()
}

/// One SRTCP RR from `who` under `ssrc`.
fn send_report(who: &mut Endpoint, ssrc: u32) {
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend(ssrc.to_be_bytes());
    rr.extend(0u32.to_be_bytes());
    rr.extend([0u8; 20]);
    who.send_rtcp(&rr);
}

fn latches(api: SocketAddr) -> f64 {
    metric(
        &http(api, "GET", "/metrics", None, None).text,
        "sluice_latches_total",
    )
}

/// The soft limit on open files raised to the hard one: one socket per
/// participant.
fn enough_files(participants: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = participants as u64 + 1024;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= want,
        "the hard limit on open files ({hard}) is below the {want} this test needs"
    );
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).expect("setrlimit");
    }
}

/// An existing stream: a publisher and a receiver in a meeting of their
/// own, both latched.
struct Existing {
    publisher: Endpoint,
    receiver: Endpoint,
    ssrc: u32,
}

fn existing(api: SocketAddr, k: usize) -> Existing {
    let participants = format!("/v1/meetings/{}/participants", meeting(api));
    let mut publisher = Endpoint::from_admission(&post(api, &participants, &json!({"name": "p"})));
    let ssrc = 0x0e00_0000 + k as u32;
    post(
        api,
        &format!("{participants}/{}/streams", publisher.id),
        &json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    publisher.send_rtp(ssrc, 0, &[0u8; 160]);
    let rtcp_ssrc = 0x0f00_0000 + k as u32;
    let body = json!({"name": "r", "rtcp_ssrc": rtcp_ssrc});
    let mut receiver = Endpoint::from_admission(&post(api, &participants, &body));
    send_report(&mut receiver, rtcp_ssrc);
    Existing {
        publisher,
        receiver,
        ssrc,
    }
}

/// Sends one packet per stream every [`TICK`] until `stop`, timing each
/// to its receiver; the latencies, with when each packet left.
fn flow(mut streams: Vec<Existing>, stop: &AtomicBool) -> Vec<(Instant, Duration)> {
    let mut samples = Vec::new();
    let mut seq: u16 = 1;
    let mut buf = [0u8; 2048];
    for s in &streams {
        s.receiver
            .socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
    }
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for s in &mut streams {
            let sent = Instant::now();
            s.publisher.send_rtp(s.ssrc, seq, &[0u8; 160]);
            // Only this packet is in flight to the receiver: the first
            // media datagram is it (a late one from a lost tick is
            // told apart by its sequence number).
            while let Ok((n, _)) = s.receiver.socket.recv_from(&mut buf) {
                let datagram = &buf[..n];
                if is_rtcp(datagram) || n < 4 {
                    continue;
                }
                if u16::from_be_bytes([datagram[2], datagram[3]]) == seq {
                    samples.push((sent, sent.elapsed()));
                    break;
                }
            }
        }
        seq = seq.wrapping_add(1);
        if let Some(rest) = TICK.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    samples
}

/// Pins every thread of this process but the packet workers to core 1
/// (threads made later inherit it from their parents).
fn pin_all_but_workers() {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(1).expect("core 1");
    for (tid, comm, _) in threads() {
        if !comm.starts_with("sluice-net-") {
            sched_setaffinity(Pid::from_raw(tid), &set).expect("pin a thread");
        }
    }
}

/// (tid, name, CPU ticks used) of every thread of this process.
fn threads() -> Vec<(i32, String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ..."; utime and stime are fields 14, 15.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = rest
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + rest
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out.push((tid, comm, ticks));
    }
    out
}

/// What the relay and this process did up to one moment.
struct Reading {
    at: Instant,
    /// The in-relay latency histogram's cumulative bucket counts (by
    /// upper bound in seconds, `+Inf` last).
    buckets: Vec<(String, f64)>,
    /// Busy seconds per packet worker.
    busy: Vec<f64>,
    /// CPU ticks per thread name.
    cpu: std::collections::BTreeMap<String, u64>,
}

fn reading(api: SocketAddr) -> Reading {
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
    let total: u64 = rest[11].parse::<u64>().unwrap_or(0) + rest[12].parse::<u64>().unwrap_or(0);
    cpu.insert("(ended threads)".to_owned(), total.saturating_sub(live));
    Reading {
        at: Instant::now(),
        buckets,
        busy,
        cpu,
    }
}

/// Between two readings: the in-relay turn time's p99 (as the bucket
/// bound it falls in), the turns, each worker's busy share, and the
/// share of a core each kind of thread used.
fn between(a: &Reading, b: &Reading) -> String {
    let total = b.buckets.last().map_or(0.0, |x| x.1) - a.buckets.last().map_or(0.0, |x| x.1);
    let p99 = a
        .buckets
        .iter()
        .zip(&b.buckets)
        .find(|((_, x), (_, y))| y - x >= 0.99 * total)
        .map_or("?".to_owned(), |((le, _), _)| le.clone());
    let wall = (b.at - a.at).as_secs_f64();
    let busy: Vec<String> = a
        .busy
        .iter()
        .zip(&b.busy)
        .map(|(x, y)| format!("{:.3}", (y - x) / wall))
        .collect();
    let tick = 100.0; // USER_HZ
    let cpu: Vec<String> = b
        .cpu
        .iter()
        .map(|(comm, t)| (comm, t - a.cpu.get(comm).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .map(|(comm, d)| format!("{comm} {:.2}", d as f64 / tick / wall))
        .collect();
    format!(
        "relay turn p99 <= {p99} s over {total} turns, worker busy {busy:?}, \
         cores used by thread [{}]",
        cpu.join(", ")
    )
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    assert!(
        latencies.len() >= 100,
        "too few samples: {}",
        latencies.len()
    );
    latencies.sort_unstable();
    latencies[latencies.len() * 99 / 100]
}

#[test]
fn a_storm_of_joins_is_admitted_and_latched_within_ten_seconds_and_existing_streams_keep_their_latency()
 {
    let storm = storm_size();
    enough_files(storm);
    let daemon = start(storm);
    let api = daemon.control_addr();
    if pinned() {
        pin_all_but_workers();
    }
    let streams: Vec<Existing> = (0..EXISTING).map(|k| existing(api, k)).collect();
    let meetings: Vec<String> = (0..MEETINGS).map(|_| meeting(api)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while latches(api) < (2 * EXISTING) as f64 {
        assert!(
            Instant::now() < deadline,
            "the existing streams did not latch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = latches(api);

    let stop = Arc::new(AtomicBool::new(false));
    let flowing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || flow(streams, &stop))
    };
    let quiet_from = reading(api);
    std::thread::sleep(QUIET);
    let storm_from = reading(api);

    // The storm: `clients()` threads admit their share, round robin over the
    // meetings, each joiner reporting at once.
    let storm_started = Instant::now();
    let meetings = Arc::new(meetings);
    let workers = clients();
    let clients: Vec<_> = (0..workers)
        .map(|c| {
            let meetings = Arc::clone(&meetings);
            std::thread::spawn(move || {
                let mut joined = Vec::new();
                for i in (c..storm).step_by(workers) {
                    let ssrc = 0x5200_0000 + i as u32;
                    let path = format!("/v1/meetings/{}/participants", meetings[i % MEETINGS]);
                    let body = json!({"name": format!("v{i}"), "rtcp_ssrc": ssrc});
                    let mut viewer = Endpoint::from_admission(&post(api, &path, &body));
                    send_report(&mut viewer, ssrc);
                    joined.push((viewer, ssrc));
                }
                joined
            })
        })
        .collect();
    let mut joined: Vec<(Endpoint, u32)> = Vec::with_capacity(storm);
    for client in clients {
        joined.extend(client.join().expect("admission client"));
    }
    let admitted = storm_started.elapsed();
    let mut last_round = Instant::now();
    let mut now = latches(api);
    while now < before + storm as f64 {
        assert!(
            storm_started.elapsed() < WITHIN,
            "only {} of {storm} joiners latched within {WITHIN:?} ({storm} admitted in {admitted:?})",
            now - before
        );
        if last_round.elapsed() >= Duration::from_secs(1) {
            for (viewer, ssrc) in &mut joined {
                send_report(viewer, *ssrc);
            }
            last_round = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
        now = latches(api);
    }
    let latched = storm_started.elapsed();
    let storm_ended = Instant::now();
    let storm_to = reading(api);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let samples = flowing.join().expect("existing streams");

    let quiet: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at < storm_started)
        .map(|(_, l)| *l)
        .collect();
    let during: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at >= storm_started && *at <= storm_ended)
        .map(|(_, l)| *l)
        .collect();
    let (quiet_n, during_n) = (quiet.len(), during.len());
    let (quiet, during) = (p99(quiet), p99(during));
    eprintln!(
        "join storm: {storm} participants in {MEETINGS} meetings admitted in {admitted:?} \
         ({:.0}/s), all latched {latched:?} after the first join; existing streams' p99 \
         {quiet:?} quiet ({quiet_n} packets), {during:?} during the storm ({during_n} packets), \
         ratio {:.2}",
        storm as f64 / admitted.as_secs_f64(),
        during.as_secs_f64() / quiet.as_secs_f64(),
    );
    eprintln!("  quiet: {}", between(&quiet_from, &storm_from));
    eprintln!("  storm: {}", between(&storm_from, &storm_to));
    assert!(latched < WITHIN);
    // No report was tried against other legs' keys: each found its leg.
    let text = http(api, "GET", "/metrics", None, None).text;
    assert_eq!(
        metric(
            &text,
            "sluice_packets_dropped_total{reason=\"auth_failed\"}"
        ),
        0.0
    );
    daemon.shutdown();
}

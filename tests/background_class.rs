//! The data plane first, on a real daemon in this process: the threads
//! that are not packet workers and can burn CPU in a burst (the control
//! API, the WebRTC handshake thread, SIP signalling) run in
//! `[media] background`, the packet workers run in `[media]
//! worker_class` (by default `SCHED_FIFO`, where this process may), and
//! the dial-in media threads keep this process's own class. Read back
//! from `/proc/self/task/*/stat` (nice is field 19, the policy field 41).

mod support;

use std::time::{Duration, Instant};

use sluice::config::Config;
use sluice::daemon::Daemon;
use sluice::net::priority::WorkerClass;
use support::timed::thread_stats;

const SCHED_OTHER: i64 = 0;
const SCHED_FIFO: i64 = 1;
const SCHED_BATCH: i64 = 3;
const SCHED_IDLE: i64 = 5;

/// (name, nice, policy) of every thread of this process.
fn threads() -> Vec<(String, i64, i64)> {
    thread_stats()
        .into_iter()
        .map(|t| (t.name, t.nice, t.policy))
        .collect()
}

fn start(background: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         pin_cores = false\n{background}\n[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n"
    );
    Daemon::start(&Config::parse(&text, "test.toml").expect("config")).expect("daemon")
}

/// Waits (2 s at most: each thread enters its class as it starts) until
/// every background thread has `(nice, policy)`, then checks that the
/// packet workers have `workers` and the dial-in media thread kept
/// `media`.
fn check(background: (i64, i64), workers: (i64, i64), media: (i64, i64)) {
    const BACKGROUND: [&str; 3] = ["sluice-control", "sluice-webrtc", "sluice-sip"];
    let deadline = Instant::now() + Duration::from_secs(2);
    let is_worker = |n: &str| n.starts_with("sluice-net-") || n.starts_with("sluice-media-");
    let seen = loop {
        let seen = threads();
        let lowered = BACKGROUND.iter().all(|name| {
            seen.iter()
                .any(|(n, nice, policy)| n == name && (*nice, *policy) == background)
        });
        // The dial-in media thread may start after the others.
        let started = seen.iter().filter(|(n, ..)| is_worker(n)).count() == 3;
        if (lowered && started) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for name in BACKGROUND {
        let found: Vec<_> = seen.iter().filter(|(n, ..)| n == name).collect();
        assert_eq!(found.len(), 1, "one {name} thread: {seen:?}");
        assert_eq!((found[0].1, found[0].2), background, "{name}: {seen:?}");
    }
    let found_workers: Vec<_> = seen.iter().filter(|(n, ..)| is_worker(n)).collect();
    assert_eq!(
        found_workers.len(),
        3,
        "2 packet workers, 1 media thread: {seen:?}"
    );
    for (name, nice, policy) in found_workers {
        if name.starts_with("sluice-net-") {
            assert_eq!((*nice, *policy), workers, "{name}: the worker class");
        } else {
            assert_eq!((*nice, *policy), media, "{name} keeps the process's class");
        }
    }
}

#[test]
fn background_threads_give_way_to_the_packet_workers_and_media_threads() {
    let own = threads()
        .into_iter()
        .map(|(_, nice, policy)| (nice, policy))
        .min()
        .expect("this thread");
    assert_eq!(own.1, SCHED_OTHER, "the test runs in the normal class");
    // Whether this process may enter SCHED_FIFO (root, CAP_SYS_NICE or
    // RLIMIT_RTPRIO), asked on a thread of its own: where it may not, the
    // workers stay in the process's class.
    let realtime = std::thread::spawn(|| WorkerClass::Realtime.apply().is_ok())
        .join()
        .expect("the probe");
    let workers = if realtime { (own.0, SCHED_FIFO) } else { own };

    // SCHED_IDLE (its nice value is left as it was).
    let daemon = start("background = \"idle\"");
    check((own.0, SCHED_IDLE), workers, own);
    daemon.shutdown();

    // The defaults: SCHED_BATCH at nice 19, realtime workers.
    let daemon = start("");
    check((19, SCHED_BATCH), workers, own);
    daemon.shutdown();

    // Normal workers keep the process's class.
    let daemon = start("worker_class = \"normal\"");
    check((19, SCHED_BATCH), own, own);
    daemon.shutdown();
}

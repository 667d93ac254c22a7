//! `[media] worker_class` reaches the packet worker threads: `realtime`
//! puts each in `SCHED_FIFO` at priority 1 where the process may (root,
//! `CAP_SYS_NICE` or `RLIMIT_RTPRIO` ≥ 1) and leaves it at normal priority
//! otherwise; a worker restarted after a panic keeps its class; `normal`
//! stays `SCHED_OTHER`. Read back from `/proc`, as an operator would.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use sluice::metrics::MetricsHub;
use sluice::net::priority::{WORKER_RT_PRIORITY, WorkerClass};
use sluice::net::{DataPlane, DataPlaneOptions, IoMode};
use sluice::relay::empty_cell;
use support::fragile::{FragileEcho, echoes};
use support::timed::thread_stats;

/// (policy, real-time priority) of every `sluice-net-*` thread of this
/// process.
fn worker_policies() -> Vec<(i32, i32)> {
    thread_stats()
        .into_iter()
        .filter(|t| t.name.starts_with("sluice-net-"))
        .map(|t| (t.policy as i32, t.rt_priority as i32))
        .collect()
}

/// [`worker_policies`] once `n` workers have named themselves (a thread
/// takes its name when it first runs, just after the spawn returns).
fn policies_of(n: usize) -> Vec<(i32, i32)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = worker_policies();
        if found.len() == n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(class: WorkerClass, metrics: &MetricsHub) -> DataPlane {
    let opts = DataPlaneOptions {
        workers: 2,
        io: IoMode::Auto,
        pin_cores: false,
        worker_class: class,
        ..DataPlaneOptions::new("127.0.0.1:0".parse().unwrap())
    };
    DataPlane::start(&opts, empty_cell(), metrics, |_, _| FragileEcho).unwrap()
}

#[test]
fn workers_run_in_their_configured_class_and_keep_it_across_a_restart() {
    // Whether this process may enter SCHED_FIFO at all, asked on a thread
    // of its own.
    let permitted = std::thread::spawn(|| WorkerClass::Realtime.apply().is_ok())
        .join()
        .unwrap();
    let want = if permitted {
        (libc::SCHED_FIFO, WORKER_RT_PRIORITY)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let metrics = MetricsHub::new("test");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let plane = start(WorkerClass::Realtime, &metrics);
    let to = plane.local_addr();
    assert!(echoes(&c, to));
    assert_eq!(policies_of(2), vec![want; 2], "permitted: {permitted}");
    for _ in 0..2 {
        c.send_to(b"panic", to).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(echoes(&c, to), "the worker answers again after the panic");
    let scrape = metrics.render(&Default::default());
    let restarts: u64 = scrape
        .lines()
        .filter(|l| l.starts_with("sluice_worker_restarts_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(restarts >= 1, "a worker was restarted: {scrape}");
    assert_eq!(
        policies_of(2),
        vec![want; 2],
        "a restarted worker keeps its class"
    );
    plane.shutdown();
    assert!(policies_of(0).is_empty(), "the workers are gone");

    let plane = start(WorkerClass::Normal, &metrics);
    assert!(echoes(&c, plane.local_addr()));
    assert_eq!(policies_of(2), vec![(libc::SCHED_OTHER, 0); 2]);
    plane.shutdown();
}
